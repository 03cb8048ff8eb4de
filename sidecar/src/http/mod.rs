//! The HTTP API: health (`/healthz`: the process runs; `/readyz`: it can
//! reach the Kubo RPC it needs), metrics, Delegated Routing V1 ([`routing`], and
//! IPNS in [`ipns`] with the w3name-compatible API) and the admin API
//! ([`admin`]). Every response carries the CORS headers the
//! routing spec requires (`Access-Control-Allow-Origin: *`), and `OPTIONS`
//! preflights are answered for every path.
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
    extract::{Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use libp2p::{Multiaddr, PeerId};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::{config::Config, metrics::Metrics};

mod admin;
pub mod client;
pub mod error;
pub mod ipns;
pub mod rate_limit;
mod routing;
pub mod watch;

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
    /// The block index, for provider answers; `None` answers every CID
    /// with no providers.
    pub blocks: Option<Arc<dyn crate::blocks::BlockSource>>,
    /// The IPNS name service; `None` answers the name APIs with 501.
    pub names: Option<crate::ipns::service::NameService>,
    /// Per-client rate limit of record writes.
    pub write_limiter: Arc<rate_limit::WriteLimiter>,
    /// The store, for the admin views that read it directly.
    pub store: Option<Arc<crate::store::Store>>,
    /// The republisher's live state; `None` when it is off.
    pub republish: Option<Arc<crate::ipns::republish::Status>>,
    /// The Kubo RPC, for `/readyz`; `None` when nothing uses Kubo.
    pub kubo: Option<crate::kubo::KuboClient>,
    /// The change feed and its limits; `None` answers the watch APIs with 501.
    pub watch: Option<watch::WatchState>,
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
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(admin::routes())
        .merge(routing::routes())
        .merge(ipns::routes())
        .route("/name/{key}/watch", get(watch::name_watch))
        .route("/name/{key}/events", get(watch::name_events))
        .route("/watch", get(watch::multi_watch))
        .route("/events", get(watch::list_events))
        .with_state(state)
        .layer(middleware::from_fn(cors))
}

/// Methods the API answers, for CORS preflights.
const CORS_METHODS: &str = "GET, PUT, POST, OPTIONS";
/// Request headers browsers may send (preflight `Access-Control-Allow-Headers`).
const CORS_HEADERS: &str = "Content-Type, Accept, Authorization, If-None-Match, Last-Event-ID";
/// How long a browser may cache a preflight: 1 day.
const CORS_MAX_AGE: &str = "86400";

/// Answers CORS preflights and marks every response readable by any origin
/// (routing spec, "CORS and Web Browsers").
async fn cors(request: Request, next: Next) -> Response {
    let mut response = if request.method() == Method::OPTIONS {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(CORS_METHODS),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(CORS_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(CORS_MAX_AGE),
        );
        r
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Etag, Cache-Control, Expires, Last-Modified, Content-Type"),
    );
    response
}

/// Serves `router(state)` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    // Without TCP_NODELAY a watcher's next notification waits for the ACK of
    // the previous one, which the client delays (up to 40 ms on Linux).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
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

/// How long `/readyz` waits for Kubo.
const READY_KUBO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    /// `reachable`, `unreachable: <error>`, or `not used`.
    kubo: String,
    kubo_rpc: Option<String>,
}

/// `GET /readyz`: 200 when the sidecar can do its work, 503 (with the
/// reason) when the Kubo RPC it republishes through does not answer.
async fn readyz(State(s): State<ApiState>) -> Response {
    let Some(kubo) = s.kubo.clone() else {
        return Json(Readiness {
            status: "ready",
            kubo: "not used".into(),
            kubo_rpc: None,
        })
        .into_response();
    };
    let probe = tokio::time::timeout(READY_KUBO_TIMEOUT, kubo.version()).await;
    let (status, code, state) = match probe {
        Ok(Ok(v)) => (
            "ready",
            StatusCode::OK,
            format!("reachable (Kubo {})", v.version),
        ),
        // Kubo answered but refused (wrong `kubo.auth`, …): say so, not
        // "unreachable".
        Ok(Err(e)) => (
            "not_ready",
            StatusCode::SERVICE_UNAVAILABLE,
            if e.is_unreachable() {
                format!("unreachable: {e}")
            } else {
                format!("answers with an error: {e}")
            },
        ),
        Err(_) => (
            "not_ready",
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "unreachable: no answer within {} s",
                READY_KUBO_TIMEOUT.as_secs()
            ),
        ),
    };
    (
        code,
        Json(Readiness {
            status,
            kubo: state,
            kubo_rpc: Some(kubo.url().to_string()),
        }),
    )
        .into_response()
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
