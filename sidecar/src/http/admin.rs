//! `/admin/*`: quota policy, peer accounting, the stored IPNS names and
//! their republish state, behind a bearer token.
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
        .route("/admin/ipns/{name}", get(get_ipns_name))
        .route("/admin/republish", get(get_republish))
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

fn name_service(s: &ApiState) -> Result<crate::ipns::service::NameService, Refusal> {
    s.names.clone().ok_or(Refusal {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "the name service is not running",
    })
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
    let names = match name_service(&s) {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    let after = match q.after.as_deref().map(crate::ipns::Name::parse).transpose() {
        Ok(after) => after,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let limit = q.limit.unwrap_or(DEFAULT_PEER_ROWS).min(MAX_IPNS_ROWS);
    let listed = async {
        let rows = names.list(after.as_ref(), limit).await?;
        let keys: Vec<crate::ipns::Name> = rows.iter().map(|r| r.name).collect();
        let schedules = names.schedules(&keys).await?;
        Ok::<_, crate::ipns::service::IpnsError>((rows, schedules))
    };
    match listed.await {
        Ok((rows, schedules)) => {
            // Summaries decode each record again: off the runtime.
            let summaries = tokio::task::spawn_blocking(move || {
                rows.iter()
                    .zip(&schedules)
                    .map(|(r, row)| r.summary_with(row.as_ref()))
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            Json(summaries).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /admin/ipns/{name}`: one stored name with its republish state.
async fn get_ipns_name(
    State(s): State<ApiState>,
    headers: HeaderMap,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    if let Err(r) = authorize(&s, &headers) {
        return r.into_response();
    }
    let names = match name_service(&s) {
        Ok(n) => n,
        Err(r) => return r.into_response(),
    };
    let name = match crate::ipns::Name::parse(&name) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let found = async {
        let stored = names.get(&name).await?;
        let schedule = names.schedules(&[name]).await?.pop().flatten();
        Ok::<_, crate::ipns::service::IpnsError>(stored.map(|r| r.summary_with(schedule.as_ref())))
    };
    match found.await {
        Ok(Some(summary)) => Json(summary).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no record for {name}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Most failing names `GET /admin/republish` lists (and groups by error).
const FAILING_SAMPLE: usize = 10_000;
/// Failing names shown one by one.
const FAILING_SHOWN: usize = 20;

#[derive(Serialize)]
struct FailingName {
    name: String,
    failures: u32,
    last_error: String,
}

#[derive(Serialize)]
struct RepublishView {
    enabled: bool,
    interval_seconds: u64,
    concurrency: usize,
    /// The schedule in the store.
    schedule: crate::store::republish::ScheduleCounts,
    /// The oldest overdue due time, RFC 3339.
    oldest_overdue: Option<String>,
    /// Names failing now, by the code of their last error (first
    /// `FAILING_SAMPLE` failing names).
    failing_by_error: std::collections::BTreeMap<String, u64>,
    failing_names: Vec<FailingName>,
    /// The republisher's live state (absent when it is off).
    live: Option<crate::ipns::republish::StatusSnapshot>,
}

/// `GET /admin/republish`: queue depth, what is due, in flight, failures.
async fn get_republish(State(s): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&s, &headers) {
        return r.into_response();
    }
    let Some(store) = s.store.clone() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the store is not open");
    };
    let now_ms = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
    let read = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::store::StoreError>((
            store.republish_counts(now_ms)?,
            store.republish_failing(FAILING_SAMPLE)?,
        ))
    })
    .await;
    let (schedule, failing) = match read {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "reading the schedule failed",
            );
        }
    };
    let mut failing_by_error = std::collections::BTreeMap::new();
    for (_, row) in &failing {
        let code = row.last_error.split(':').next().unwrap_or("").to_string();
        *failing_by_error.entry(code).or_insert(0u64) += 1;
    }
    let failing_names = failing
        .iter()
        .take(FAILING_SHOWN)
        .map(|(key, row)| FailingName {
            name: crate::ipns::service::name_of_key(key)
                .map(|n| n.to_string())
                .unwrap_or_else(|| "(unreadable)".into()),
            failures: row.failures,
            last_error: row.last_error.clone(),
        })
        .collect();
    let r = &s.config.republish;
    Json(RepublishView {
        enabled: r.enabled,
        interval_seconds: r.policy.interval.as_secs(),
        concurrency: r.policy.concurrency,
        oldest_overdue: schedule.oldest_overdue_ms.map(|ms| {
            humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
            )
            .to_string()
        }),
        schedule,
        failing_by_error,
        failing_names,
        live: s.republish.as_ref().map(|st| st.snapshot()),
    })
    .into_response()
}
