//! The one place API errors become HTTP responses: a status and a JSON body
//! `{"code": "<stable machine-readable code>", "message": "<what is wrong>"}`
//! (w3name clients read `message`; scripts match on `code`).
//!
//! Called by: every routing and name handler. Must never: leak internal
//! error chains beyond their one-line message.

use std::time::Duration;

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, machine-readable (`malformed_cid`, `signature_invalid`, …).
    pub code: &'static str,
    pub message: String,
    /// Sent as `Retry-After` (whole seconds), e.g. with 429.
    pub retry_after: Option<Duration>,
    /// Sent as `Cache-Control`, e.g. on a cacheable 404.
    pub cache_control: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            cache_control: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            code: self.code,
            message: &self.message,
        };
        let mut r = (self.status, Json(body)).into_response();
        let h = r.headers_mut();
        if let Some(wait) = self.retry_after {
            h.insert(
                header::RETRY_AFTER,
                HeaderValue::from(wait.as_secs().max(1)),
            );
        }
        if let Some(v) = self
            .cache_control
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            h.insert(header::CACHE_CONTROL, v);
        }
        r
    }
}
