//! A client for the Kubo node's RPC API (`/api/v0`), for the few calls
//! the sidecar makes.
//!
//! # Brief overview
//!
//! - [`KuboClient`]: `version`, record put/get (`name/put`, `name/get`,
//!   `routing/put`, `routing/get`), `name/publish`, `key/ls`, `stats/dht`.
//!   Cheap to clone; one connection pool per client.
//! - [`KuboAuth`]: the `API.Authorizations` secret, in Kubo's syntax.
//! - [`KuboError`]: one error enum for the whole boundary, with a stable
//!   [`KuboError::code`].
//! - [`KuboVersion`], [`KuboKey`], [`DhtPeers`]: what the answers mean.
//!
//! Layers run one way: `wire` (answer bytes → values, pure) and `error`
//! (status + body → [`KuboError`], pure) under this file's HTTP glue.
//!
//! # Kubo's RPC, as this client relies on it (checked on Kubo 0.43.0)
//!
//! Every call is `POST` (GET is 405). Arguments go in repeated `?arg=`,
//! options by name; file arguments in a multipart body. Errors are
//! `{"Message","Code","Type":"error"}` with 500, plain text with 400 for a
//! missing argument, `404 page not found` for an unknown command, and a
//! plain-text 403 when `API.Authorizations` is set and the header does
//! not match (also for `version`). An error after a 200 has started
//! streaming arrives in the `X-Stream-Error` trailer; it is read too.
//! "No record" is `500 routing: not found` (see
//! [`error::NOT_FOUND_MESSAGE`] for where it was measured); the `*_get`
//! calls turn it into `Ok(None)`.
//!
//! # Bounds
//!
//! Every call is bounded by the client's timeout (connect, send and the
//! whole answer). Every answer is read to a limit: a record answer to
//! [`wire::MAX_RECORD_SIZE`], JSON and NDJSON to [`MAX_JSON_ANSWER`]; past
//! the limit the call fails with [`KuboError::Malformed`] and the
//! connection is dropped. Error bodies are cut at [`MAX_ERROR_ANSWER`].
//! Kubo is trusted to be Kubo, not to be small.
//!
//! Called by: the republisher (`ipns::republish::KuboTarget`) and
//! `/readyz`. Must never: retry on its own (callers own backoff and
//! concurrency), log or print the auth secret, or speak anything but
//! plain `http://` (no TLS client is built in).

mod auth;
pub mod error;
pub mod wire;

#[cfg(test)]
mod tests;

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

// `http_body::Body`, re-exported by axum: reading frames one by one is the
// only way to see Kubo's `X-Stream-Error` trailer through reqwest.
use axum::body::HttpBody;
use bytes::{Bytes, BytesMut};
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH};

pub use auth::KuboAuth;
pub use error::KuboError;
pub use wire::{DhtPeers, KuboKey, KuboVersion};

/// Largest JSON / NDJSON answer read (`key/ls`, `stats/dht`,
/// `routing/get`, …): far above any real answer (a `stats/dht` line per
/// peer is ~250 bytes).
pub const MAX_JSON_ANSWER: usize = 1024 * 1024;
/// Largest part of an error body read; the rest is ignored.
pub const MAX_ERROR_ANSWER: usize = 16 * 1024;
/// Upper bound on the TCP connect time, within the call timeout: Kubo's
/// RPC is normally on loopback, where a connect is instant or refused.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections kept open to Kubo (the republisher's concurrency is
/// of this order).
pub const MAX_IDLE_CONNECTIONS: usize = 64;
/// Kubo's name for the trailer that carries a late error.
const STREAM_ERROR_TRAILER: &str = "x-stream-error";

/// A Kubo RPC client; cheap to clone (the pool and settings are shared).
#[derive(Clone)]
pub struct KuboClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// `http://host:port`, no trailing slash.
    base: String,
    auth: Option<KuboAuth>,
}

impl std::fmt::Debug for KuboClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KuboClient")
            .field("url", &self.inner.base)
            .field("auth", &self.inner.auth)
            .finish()
    }
}

impl KuboClient {
    /// A client for the RPC at `rpc_url` (`http://host:port`; a trailing
    /// `/` or `/api/v0` is dropped). `timeout` bounds each whole call,
    /// answer included; the connect within it is bounded by
    /// [`CONNECT_TIMEOUT`].
    ///
    /// Fails with [`KuboError::Malformed`] for anything but a plain
    /// `http://` URL without credentials, query or fragment: `https://`
    /// is refused because this build has no TLS client.
    pub fn new(
        rpc_url: &str,
        auth: Option<KuboAuth>,
        timeout: Duration,
    ) -> Result<Self, KuboError> {
        let base = check_url(rpc_url)?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(CONNECT_TIMEOUT))
            .pool_max_idle_per_host(MAX_IDLE_CONNECTIONS)
            .user_agent(concat!("sidecar/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| KuboError::Malformed(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner { http, base, auth }),
        })
    }

    /// The RPC base URL (`http://host:port`).
    pub fn url(&self) -> &str {
        &self.inner.base
    }

    /// `version`: which Kubo this is (and so which commands exist).
    pub async fn version(&self) -> Result<KuboVersion, KuboError> {
        let body = self.call("version", &[], None, MAX_JSON_ANSWER).await?;
        wire::version(&body)
    }

    /// `name/put` (Kubo ≥ 0.40): Kubo validates the record (size,
    /// signature, that it is for `name`) and refuses one whose sequence is
    /// lower than the one the routing system holds; identical bytes are
    /// accepted (a refresh). `allow_offline` lets an offline node store it
    /// locally.
    pub async fn name_put(
        &self,
        name: &str,
        record: &[u8],
        allow_offline: bool,
    ) -> Result<(), KuboError> {
        let query = [("arg", bare(name)), ("allow-offline", flag(allow_offline))];
        let file = Some(("record", record));
        self.call("name/put", &query, file, MAX_JSON_ANSWER).await?;
        Ok(())
    }

    /// `routing/put /ipns/<name>`. On an online node Kubo reports success
    /// even when no DHT peer took the record, and does not compare
    /// sequence numbers: success is not proof of publication.
    pub async fn routing_put(
        &self,
        name: &str,
        record: &[u8],
        allow_offline: bool,
    ) -> Result<(), KuboError> {
        let key = ipns_key(name);
        let query = [
            ("arg", key.as_str()),
            ("allow-offline", flag(allow_offline)),
        ];
        let file = Some(("value-file", record));
        self.call("routing/put", &query, file, MAX_JSON_ANSWER)
            .await?;
        Ok(())
    }

    /// `name/get` (Kubo ≥ 0.40): the best record the routing system has,
    /// raw; `None` when it has none.
    pub async fn name_get(&self, name: &str) -> Result<Option<Bytes>, KuboError> {
        let query = [("arg", bare(name))];
        match self
            .call("name/get", &query, None, wire::MAX_RECORD_SIZE)
            .await
        {
            Ok(record) => wire::check_record("name/get", &record).map(|()| Some(record)),
            Err(KuboError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `routing/get /ipns/<name>`: the record from the value event of the
    /// NDJSON answer; `None` when the routing system has none.
    pub async fn routing_get(&self, name: &str) -> Result<Option<Bytes>, KuboError> {
        let key = ipns_key(name);
        let query = [("arg", key.as_str())];
        match self
            .call("routing/get", &query, None, MAX_JSON_ANSWER)
            .await
        {
            Ok(body) => wire::routing_get_record(&body).map(|r| Some(Bytes::from(r))),
            Err(KuboError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `name/publish --key=<key> --resolve=false <value>`: Kubo signs a new
    /// record for its key `key` (a key name such as `self`) pointing at
    /// `value` (`/ipfs/<cid>`) and puts it; returns the name it published.
    pub async fn name_publish(
        &self,
        key: &str,
        value: &str,
        lifetime: Duration,
        ttl: Duration,
        allow_offline: bool,
    ) -> Result<String, KuboError> {
        let (lifetime, ttl) = (go_duration(lifetime), go_duration(ttl));
        let query = [
            ("arg", value),
            ("key", key),
            ("resolve", "false"),
            ("lifetime", lifetime.as_str()),
            ("ttl", ttl.as_str()),
            ("allow-offline", flag(allow_offline)),
        ];
        let body = self
            .call("name/publish", &query, None, MAX_JSON_ANSWER)
            .await?;
        wire::published_name(&body)
    }

    /// `key/ls` (Kubo ≥ 0.40), or `key/list` when Kubo answers 404.
    pub async fn key_list(&self) -> Result<Vec<KuboKey>, KuboError> {
        match self.call("key/ls", &[], None, MAX_JSON_ANSWER).await {
            Ok(body) => wire::keys("key/ls", &body),
            Err(KuboError::Api { status: 404, .. }) => {
                let body = self.call("key/list", &[], None, MAX_JSON_ANSWER).await?;
                wire::keys("key/list", &body)
            }
            Err(e) => Err(e),
        }
    }

    /// `stats/dht`: peers in the LAN and WAN routing tables. A node
    /// without a DHT (`Routing.Type=none`, delegated-only) answers
    /// `KuboError::Api { status: 500, message: "routing service is not a
    /// DHT" }`.
    pub async fn dht_peers(&self) -> Result<DhtPeers, KuboError> {
        let body = self.call("stats/dht", &[], None, MAX_JSON_ANSWER).await?;
        wire::dht_peers(&body)
    }

    /// POSTs `/api/v0/<command>?<query>` (with `file` as a multipart file
    /// argument) and returns a successful answer of at most `max` bytes.
    async fn call(
        &self,
        command: &str,
        query: &[(&str, &str)],
        file: Option<(&'static str, &[u8])>,
        max: usize,
    ) -> Result<Bytes, KuboError> {
        let url = format!("{}/api/v0/{command}", self.inner.base);
        let mut request = self.inner.http.post(url).query(query);
        if let Some(auth) = &self.inner.auth {
            request = request.header(AUTHORIZATION, auth.header().clone());
        }
        if let Some((field, bytes)) = file {
            // Kubo takes any multipart part with a file name as the file
            // argument; the field name is not checked.
            let part = reqwest::multipart::Part::bytes(bytes.to_vec()).file_name(field);
            request = request.multipart(reqwest::multipart::Form::new().part(field, part));
        }
        let response = request.send().await.map_err(send_error)?;
        let status = response.status();
        if !status.is_success() {
            let (body, _) = read_body(command, response, MAX_ERROR_ANSWER, Overflow::Cut).await?;
            return Err(error::from_status(status.as_u16(), &body));
        }
        match read_body(command, response, max, Overflow::Fail).await? {
            (_, Some(late_error)) => Err(error::from_message(status.as_u16(), &late_error)),
            (body, None) => Ok(body),
        }
    }
}

/// What [`read_body`] does with an answer longer than its limit.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Overflow {
    /// Fail with [`KuboError::Malformed`].
    Fail,
    /// Keep the first bytes and stop reading.
    Cut,
}

/// Reads at most `max` bytes of `response`, and Kubo's late error from the
/// `X-Stream-Error` trailer if one came.
async fn read_body(
    command: &str,
    response: reqwest::Response,
    max: usize,
    overflow: Overflow,
) -> Result<(Bytes, Option<String>), KuboError> {
    let too_long = || KuboError::malformed(command, format_args!("longer than {max} bytes"));
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if overflow == Overflow::Fail && declared.is_some_and(|n| n > max as u64) {
        return Err(too_long());
    }
    let mut body: reqwest::Body = axum::http::Response::from(response).into_body();
    let mut buf = BytesMut::new();
    let mut late_error = None;
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(body_error)?;
        match frame.into_data() {
            Ok(chunk) => {
                let room = max - buf.len();
                if chunk.len() > room {
                    if overflow == Overflow::Fail {
                        return Err(too_long());
                    }
                    buf.extend_from_slice(&chunk[..room]);
                    break;
                }
                buf.extend_from_slice(&chunk);
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers()
                    && let Some(value) = trailers.get(STREAM_ERROR_TRAILER)
                    && !value.as_bytes().trim_ascii().is_empty()
                {
                    late_error = Some(String::from_utf8_lossy(value.as_bytes()).into_owned());
                }
            }
        }
    }
    Ok((buf.freeze(), late_error))
}

/// Refuses anything but a plain `http://host[:port]` URL; returns it
/// normalized (no trailing `/` or `/api/v0`). The configuration checks
/// `kubo.rpc` with it, so a bad URL stops the sidecar at start-up.
pub fn check_url(rpc_url: &str) -> Result<String, KuboError> {
    // The URL itself is not repeated: callers name it, and it could hold
    // credentials.
    let invalid = |why: &str| KuboError::Malformed(format!("invalid Kubo RPC URL: {why}"));
    let trimmed = rpc_url.trim_end_matches('/');
    let trimmed = trimmed.strip_suffix("/api/v0").unwrap_or(trimmed);
    let url = reqwest::Url::parse(trimmed).map_err(|e| invalid(&e.to_string()))?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(invalid(
                "https is not supported (this build has no TLS client; Kubo's RPC is plain \
                 HTTP — reach a remote one through a local tunnel)",
            ));
        }
        other => return Err(invalid(&format!("scheme {other:?} is not http"))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("credentials belong in kubo.auth, not in the URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a query or fragment is not allowed"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

fn send_error(e: reqwest::Error) -> KuboError {
    // A connect that timed out is "unreachable", not a slow answer.
    if e.is_connect() {
        KuboError::Unreachable(root_cause(&e))
    } else if e.is_timeout() {
        KuboError::Timeout
    } else if e.is_builder() {
        KuboError::Malformed(format!("cannot build the request: {}", root_cause(&e)))
    } else {
        // Kubo closed or reset the connection before answering.
        KuboError::Unreachable(root_cause(&e))
    }
}

fn body_error(e: reqwest::Error) -> KuboError {
    if e.is_timeout() {
        KuboError::Timeout
    } else {
        KuboError::Unreachable(format!("answer broken off: {}", root_cause(&e)))
    }
}

/// The innermost error's text ("Connection refused (os error 111)", not
/// reqwest's wrapper).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// `name` without `/ipns/` (what `name/put` and `name/get` take).
fn bare(name: &str) -> &str {
    name.strip_prefix("/ipns/").unwrap_or(name)
}

/// `/ipns/<name>` (the routing key `routing/put` and `routing/get` take).
fn ipns_key(name: &str) -> String {
    format!("/ipns/{}", bare(name))
}

fn flag(on: bool) -> &'static str {
    if on { "true" } else { "false" }
}

/// A duration as Go's `time.ParseDuration` reads it, in whole
/// milliseconds (Kubo's records carry no finer time).
fn go_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}
