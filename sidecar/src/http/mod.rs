//! The HTTP API: health, metrics and the admin API ([`admin`]); routing
//! and name APIs join later.
//!
//! [`serve`] takes an already-bound listener and a shutdown token, so tests
//! and the daemon choose the port (0 works) and the teardown. Handlers only
//! read shared state; they never block on the network or the disk.

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::Instant,
};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use libp2p::{Multiaddr, PeerId};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::{config::Config, metrics::Metrics};

mod admin;

/// What the handlers read.
#[derive(Clone)]
pub struct ApiState {
    pub peer_id: PeerId,
    pub listen_addrs: Arc<RwLock<Vec<Multiaddr>>>,
    pub config: Arc<Config>,
    pub http_addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    pub started: Instant,
    /// The quota service, for `/admin/*`.
    pub quotas: Option<Arc<crate::quota::QuotaService>>,
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    peer_id: String,
    listen_addrs: Vec<String>,
    announce_addrs: Vec<String>,
    http_addr: String,
    uptime_seconds: u64,
}

/// The router with every endpoint.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(admin::routes())
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn healthz(State(s): State<ApiState>) -> impl IntoResponse {
    let listen = s.listen_addrs.read().map(|a| a.clone()).unwrap_or_default();
    let announce = s.config.advertised_addrs(&listen);
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        peer_id: s.peer_id.to_string(),
        listen_addrs: listen.iter().map(ToString::to_string).collect(),
        announce_addrs: announce.iter().map(ToString::to_string).collect(),
        http_addr: s.http_addr.to_string(),
        uptime_seconds: s.started.elapsed().as_secs(),
    })
}

async fn metrics(State(s): State<ApiState>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}
