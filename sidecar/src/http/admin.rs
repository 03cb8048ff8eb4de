//! `/admin/*`: quota policy, peer accounting and the list of stored IPNS
//! names, behind a bearer token.
//!
//! Off unless `[http] admin_token` is set. `PUT /admin/quotas` validates the
//! whole document before anything changes; a rejected one leaves the
//! running policy and the file alone.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, Serialize};

use super::ApiState;

/// Largest policy document accepted.
const MAX_POLICY_BYTES: usize = 1024 * 1024;

/// Rows `GET /admin/peers` returns unless `?limit=` says otherwise.
const DEFAULT_PEER_ROWS: usize = 100;

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            error: message.into(),
        }),
    )
        .into_response()
}

/// A refused admin request, turned into its response at the edge.
struct Refusal {
    status: StatusCode,
    message: &'static str,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        if self.status == StatusCode::UNAUTHORIZED {
            return (
                self.status,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(ErrorBody {
                    error: self.message.into(),
                }),
            )
                .into_response();
        }
        error(self.status, self.message)
    }
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/admin/quotas", get(get_quotas).put(put_quotas))
        .route("/admin/peers", get(get_peers))
        .route("/admin/ipns", get(get_ipns))
        .layer(DefaultBodyLimit::max(MAX_POLICY_BYTES))
}

/// `Ok` when the request carries the configured token.
fn authorize(s: &ApiState, headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(token) = s.config.http.admin_token.as_deref() else {
        return Err(Refusal {
            status: StatusCode::NOT_FOUND,
            message: "the admin API is off; set [http] admin_token to enable it",
        });
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
        return Err(Refusal {
            status: StatusCode::UNAUTHORIZED,
            message: "missing or wrong bearer token",
        });
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn service(s: &ApiState) -> Result<&crate::quota::QuotaService, Refusal> {
    s.quotas.as_deref().ok_or(Refusal {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "quotas are not running",
    })
}

async fn get_quotas(State(s): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&s, &headers) {
        return r.into_response();
    }
    match service(&s) {
        Ok(q) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/toml; charset=utf-8")],
            q.document(),
        )
            .into_response(),
        Err(r) => r.into_response(),
    }
}

#[derive(Serialize)]
struct Applied {
    status: &'static str,
    path: String,
}

async fn put_quotas(State(s): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorize(&s, &headers) {
        return r.into_response();
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(StatusCode::BAD_REQUEST, "the policy must be UTF-8 text");
    };
    let Some(q) = s.quotas.clone() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "quotas are not running");
    };
    let text = text.to_string();
    let path = q.path().display().to_string();
    match tokio::task::spawn_blocking(move || q.replace(&text)).await {
        Ok(Ok(())) => Json(Applied {
            status: "applied",
            path,
        })
        .into_response(),
        Ok(Err(e @ crate::quota::ReloadError::Invalid { .. })) => {
            error(StatusCode::BAD_REQUEST, e.to_string())
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "policy update task failed",
        ),
    }
}

#[derive(Deserialize)]
struct PeersQuery {
    limit: Option<usize>,
}

#[derive(Serialize)]
struct Peers {
    peers: Vec<crate::quota::PeerReport>,
}

async fn get_peers(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<PeersQuery>,
) -> Response {
    if let Err(r) = authorize(&s, &headers) {
        return r.into_response();
    }
    match service(&s) {
        Ok(svc) => Json(Peers {
            peers: svc
                .quotas
                .report(q.limit.unwrap_or(DEFAULT_PEER_ROWS).min(10_000)),
        })
        .into_response(),
        Err(r) => r.into_response(),
    }
}

#[derive(Deserialize)]
struct IpnsQuery {
    /// Start after this name (the last one of the previous page).
    after: Option<String>,
    limit: Option<usize>,
}

/// Most names one `GET /admin/ipns` returns.
const MAX_IPNS_ROWS: usize = 10_000;

/// `GET /admin/ipns?after=<name>&limit=N`: stored names in key order, as a
/// JSON array of `Summary` rows (what `sidecar ipns ls` prints).
async fn get_ipns(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<IpnsQuery>,
) -> Response {
    if let Err(r) = authorize(&s, &headers) {
        return r.into_response();
    }
    let Some(names) = s.names.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the name service is not running",
        );
    };
    let after = match q.after.as_deref().map(crate::ipns::Name::parse).transpose() {
        Ok(after) => after,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let limit = q.limit.unwrap_or(DEFAULT_PEER_ROWS).min(MAX_IPNS_ROWS);
    match names.list(after.as_ref(), limit).await {
        Ok(rows) => {
            // Summaries re-verify each record's signature: off the runtime.
            let summaries = tokio::task::spawn_blocking(move || {
                rows.iter()
                    .map(crate::ipns::service::Stored::summary)
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            Json(summaries).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
