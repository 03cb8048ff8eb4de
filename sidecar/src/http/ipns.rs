//! IPNS over HTTP: Delegated Routing V1 (`GET`/`PUT /routing/v1/ipns/{name}`,
//! `application/vnd.ipfs.ipns-record`) and the w3name-compatible API
//! (`GET`/`POST /name/{key}`, JSON with base64 records).
//!
//! Status codes: 200 (found, stored, or the same record again), 202 for a
//! w3name POST (as w3name answers), 400 for an invalid record or name, 404
//! when nothing is stored (or it has expired), 406 for a wrong
//! `Accept`/`Content-Type`, 409 when the stored record is newer, 413 past
//! the 10 KiB record limit, 429 past the client's write rate. Errors carry
//! `{code, message}` (see [`super::error`]).
//!
//! Called by: [`super::router`]. Must never: answer a PUT before the record
//! is durable (the name service only replies after its commit).

use std::{
    net::SocketAddr,
    time::{Duration, SystemTime},
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{ConnectInfo, DefaultBodyLimit, Path, State, rejection::BytesRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use base64::Engine as _;
use serde::Serialize;

use super::{
    ApiState,
    error::ApiError,
    routing::{cache_control, set},
};
use crate::ipns::{
    Name,
    record::MAX_RECORD_BYTES,
    service::{IpnsError, NameService, Source, Stored},
};

/// The IPNS record media type (IANA `application/vnd.ipfs.ipns-record`).
pub const IPNS_RECORD: &str = "application/vnd.ipfs.ipns-record";
/// Cache lifetime when a record has no TTL, and for 404s (routing spec:
/// "SHOULD default to `max-age=60`").
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(60);
/// Request bodies larger than this are refused before they are read whole:
/// a record is at most 10 KiB, base64 (w3name) makes it 4/3 larger.
const MAX_BODY: usize = MAX_RECORD_BYTES * 4 / 3 + 64;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/routing/v1/ipns/{name}", get(routing_get).put(routing_put))
        .route("/name/{key}", get(w3name_get).post(w3name_post))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

fn service(s: &ApiState) -> Result<&NameService, ApiError> {
    s.names.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "ipns_disabled",
            "this sidecar does not keep IPNS records",
        )
    })
}

fn parse_name(text: &str) -> Result<Name, ApiError> {
    Name::parse(text).map_err(|e| ApiError::bad_request("invalid_name", e.to_string()))
}

/// The status a name-service error is answered with.
fn name_error(e: IpnsError) -> ApiError {
    use crate::ipns::RecordError;
    let status = match &e {
        IpnsError::Record(RecordError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
        IpnsError::Record(RecordError::SequenceNotNewer { .. }) => StatusCode::CONFLICT,
        IpnsError::Record(_) => StatusCode::BAD_REQUEST,
        IpnsError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        IpnsError::Closed => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError::new(status, e.code(), e.to_string())
}

/// Whether a header lists `media` (parameters and quality ignored).
fn lists(headers: &HeaderMap, name: header::HeaderName, media: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(media))
        })
}

/// A body the server would not read whole: past [`MAX_BODY`] (413), or cut off.
fn too_large(e: BytesRejection) -> ApiError {
    ApiError::new(
        e.status(),
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "malformed"
        },
        format!("{e}; a record is at most {MAX_RECORD_BYTES} bytes"),
    )
}

fn check_rate(s: &ApiState, client: SocketAddr) -> Result<(), ApiError> {
    s.write_limiter.check(client.ip()).map_err(|wait| {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "too many record writes from {}; retry after {} s",
                client.ip(),
                wait.as_secs()
            ),
        );
        e.retry_after = Some(wait);
        e
    })
}

/// A stored record that is still valid at `now`, else 404.
async fn current(s: &ApiState, name: &Name, now: SystemTime) -> Result<Stored, ApiError> {
    let stored = service(s)?
        .get(name)
        .await
        .map_err(name_error)?
        .ok_or_else(|| ApiError::not_found("not_found", format!("no record for {name}")))?;
    if stored.validity <= now {
        return Err(ApiError::not_found(
            "expired",
            format!("the record for {name} has expired"),
        ));
    }
    Ok(stored)
}

async fn routing_get(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !lists(&headers, header::ACCEPT, IPNS_RECORD) {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            format!("retry with Accept: {IPNS_RECORD}"),
        ));
    }
    let name = parse_name(&name)?;
    let now = SystemTime::now();
    let stored = match current(&s, &name, now).await {
        Ok(stored) => stored,
        Err(mut e) => {
            if e.status == StatusCode::NOT_FOUND {
                e.cache_control = Some(cache_control(DEFAULT_MAX_AGE, Duration::ZERO));
            }
            return Err(e);
        }
    };
    let etag = stored.etag.to_string();
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        set(r.headers_mut(), header::ETAG, etag);
        return Ok(r);
    }
    let remaining = stored.validity.duration_since(now).unwrap_or_default();
    let max_age = stored
        .ttl
        .filter(|t| !t.is_zero())
        .unwrap_or(DEFAULT_MAX_AGE)
        .min(remaining);
    let mut r = (StatusCode::OK, Body::from(stored.bytes.clone())).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(IPNS_RECORD));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    set(h, header::ETAG, etag);
    // A cache may serve the record stale while it is still valid.
    set(h, header::CACHE_CONTROL, cache_control(max_age, remaining));
    set(h, header::EXPIRES, httpdate::fmt_http_date(now + max_age));
    set(
        h,
        header::LAST_MODIFIED,
        httpdate::fmt_http_date(stored.received_at),
    );
    Ok(r)
}

async fn routing_put(
    State(s): State<ApiState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(too_large)?;
    if !lists(&headers, header::CONTENT_TYPE, IPNS_RECORD) {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            format!("retry with Content-Type: {IPNS_RECORD}"),
        ));
    }
    let name = parse_name(&name)?;
    check_rate(&s, client)?;
    service(&s)?
        .put(&name, body, Source::Routing, SystemTime::now())
        .await
        .map_err(name_error)?;
    Ok(StatusCode::OK.into_response())
}

#[derive(Serialize)]
struct W3nameRecord {
    value: String,
    record: String,
}

async fn w3name_get(
    State(s): State<ApiState>,
    Path(key): Path<String>,
) -> Result<Json<W3nameRecord>, ApiError> {
    let name = parse_name(&key)?;
    let stored = current(&s, &name, SystemTime::now()).await?;
    let record = stored
        .parse()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(W3nameRecord {
        value: String::from_utf8_lossy(record.value()).into_owned(),
        record: base64::engine::general_purpose::STANDARD.encode(&stored.bytes),
    }))
}

async fn w3name_post(
    State(s): State<ApiState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(too_large)?;
    let name = parse_name(&key)?;
    check_rate(&s, client)?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("malformed", "the body is not base64 text"))?;
    let record = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| ApiError::bad_request("malformed", format!("the body is not base64: {e}")))?;
    service(&s)?
        .put(&name, record.into(), Source::W3name, SystemTime::now())
        .await
        .map_err(name_error)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "id": name.to_string() })),
    )
        .into_response())
}
