//! A client for the Kubo node's RPC API (`/api/v0`), for the calls the
//! sidecar makes: version, record put/get (`name/*`, `routing/*`),
//! `name/publish`, `key/ls` and `stats/dht`.
//!
//! Kubo's RPC conventions: every call is `POST` (GET is 405); arguments go
//! in repeated `?arg=`, options by name; file arguments as a multipart
//! body. Errors are JSON `{"Message","Code","Type":"error"}` with 500 (400
//! for bad arguments); a missing or wrong `API.Authorizations` secret is
//! 403. Both `routing/get` and `name/get` on a name nobody published
//! answer 500 `{"Message":"routing: not found"}` (Kubo 0.43, DHT and
//! offline nodes alike): that is [`KuboError::NotFound`].
//!
//! Every answer is read with a bound ([`MAX_RECORD_ANSWER`],
//! [`MAX_JSON_ANSWER`]): Kubo is trusted to be Kubo, not to be small.
//!
//! Called by: the republisher (`ipns::republish::KuboTarget`) and
//! `/readyz`. Must never: retry on its own (callers own backoff), or log
//! the auth secret.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;

/// Largest `name/get` answer read (a record is at most 10 KiB).
pub const MAX_RECORD_ANSWER: usize = 64 * 1024;
/// Largest JSON / NDJSON answer read.
pub const MAX_JSON_ANSWER: usize = 1024 * 1024;
/// Kubo's message for a key the routing system has no value for.
const NOT_FOUND_MESSAGE: &str = "routing: not found";

/// Kubo's `API.Authorizations` secret in Kubo's own `AuthSecret` syntax:
/// `bearer:<token>` or `basic:<user>:<password>`.
#[derive(Clone, PartialEq, Eq)]
pub struct KuboAuth {
    /// The `Authorization` header value.
    header: String,
}

impl std::fmt::Debug for KuboAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = self.header.split(' ').next().unwrap_or("");
        write!(f, "KuboAuth({scheme} …)")
    }
}

impl std::str::FromStr for KuboAuth {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let header = if let Some(token) = s.strip_prefix("bearer:") {
            (!token.is_empty()).then(|| format!("Bearer {token}"))
        } else if let Some(user_pass) = s.strip_prefix("basic:") {
            user_pass.contains(':').then(|| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(user_pass)
                )
            })
        } else {
            None
        };
        match header {
            Some(h) if !h.chars().any(|c| c.is_control()) => Ok(Self { header: h }),
            _ => Err(
                "must be \"bearer:<token>\" or \"basic:<user>:<password>\" (Kubo's AuthSecret syntax)"
                    .into(),
            ),
        }
    }
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KuboError {
    #[error("Kubo RPC unreachable: {0}")]
    Unreachable(String),
    #[error("Kubo RPC did not answer in time")]
    Timeout,
    #[error("Kubo RPC refused the credentials (403); check [kubo] auth against API.Authorizations")]
    Denied,
    #[error("the routing system has no record for this name")]
    NotFound,
    #[error("Kubo answered {status}: {message}")]
    Api { status: u16, message: String },
    #[error("unexpected answer from Kubo: {0}")]
    Malformed(String),
}

impl KuboError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            KuboError::Unreachable(_) => "kubo_unreachable",
            KuboError::Timeout => "kubo_timeout",
            KuboError::Denied => "kubo_denied",
            KuboError::NotFound => "not_found",
            KuboError::Api { .. } => "kubo_error",
            KuboError::Malformed(_) => "kubo_malformed",
        }
    }

    /// Kubo could not be reached at all (as opposed to answering badly).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, KuboError::Unreachable(_))
    }
}

/// `/api/v0/version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KuboVersion {
    pub version: String,
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl KuboVersion {
    /// Parses `0.43.0`, `0.44.0-dev`, `v0.40.1`.
    pub fn parse(text: &str) -> Result<Self, KuboError> {
        let core = text.trim().trim_start_matches('v');
        let core = core.split(['-', '+']).next().unwrap_or("");
        let mut parts = core.split('.').map(str::parse::<u64>);
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(Ok(major)), Some(Ok(minor)), Some(Ok(patch)), None) => Ok(Self {
                version: text.trim().to_string(),
                major,
                minor,
                patch,
            }),
            _ => Err(KuboError::Malformed(format!(
                "version {text:?} is not major.minor.patch"
            ))),
        }
    }

    /// Whether Kubo has `name/put` and `name/get` (0.40 and later).
    pub fn has_name_put(&self) -> bool {
        (self.major, self.minor) >= (0, 40)
    }
}

/// A key in Kubo's keystore.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct KuboKey {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Id")]
    pub id: String,
}

/// Peers in Kubo's DHT routing tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DhtPeers {
    pub lan: usize,
    pub wan: usize,
}

/// The client; cheap to clone.
#[derive(Clone)]
pub struct KuboClient {
    http: reqwest::Client,
    base: String,
    auth: Option<KuboAuth>,
}

impl std::fmt::Debug for KuboClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KuboClient")
            .field("base", &self.base)
            .field("auth", &self.auth)
            .finish()
    }
}

impl KuboClient {
    /// A client for the RPC at `rpc_url` (`http://host:port`), each call
    /// bounded by `timeout`.
    pub fn new(
        rpc_url: &str,
        auth: Option<KuboAuth>,
        timeout: Duration,
    ) -> Result<Self, KuboError> {
        let base = rpc_url.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            return Err(KuboError::Malformed(format!(
                "{base:?}: only http:// RPC URLs are supported (Kubo's RPC is plain HTTP; put TLS in front of the sidecar, not between it and Kubo)"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| KuboError::Malformed(format!("HTTP client: {e}")))?;
        Ok(Self { http, base, auth })
    }

    /// The RPC base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn post(&self, command: &str, query: &[(&str, &str)]) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .post(format!("{}/api/v0/{command}", self.base))
            .query(query);
        if let Some(a) = &self.auth {
            r = r.header(reqwest::header::AUTHORIZATION, &a.header);
        }
        r
    }

    /// Sends `request` and reads a successful answer of at most `max` bytes.
    async fn call(&self, request: reqwest::RequestBuilder, max: usize) -> Result<Bytes, KuboError> {
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let body = read_bounded(response, max).await?;
        if status.is_success() {
            return Ok(body);
        }
        if status == reqwest::StatusCode::FORBIDDEN {
            return Err(KuboError::Denied);
        }
        #[derive(Deserialize)]
        struct ErrorBody {
            #[serde(rename = "Message")]
            message: String,
        }
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .map(|e| e.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
        if message == NOT_FOUND_MESSAGE {
            return Err(KuboError::NotFound);
        }
        Err(KuboError::Api {
            status: status.as_u16(),
            message,
        })
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        command: &str,
        query: &[(&str, &str)],
    ) -> Result<T, KuboError> {
        let body = self
            .call(self.post(command, query), MAX_JSON_ANSWER)
            .await?;
        serde_json::from_slice(&body).map_err(|e| KuboError::Malformed(format!("{command}: {e}")))
    }

    /// `version`.
    pub async fn version(&self) -> Result<KuboVersion, KuboError> {
        #[derive(Deserialize)]
        struct V {
            #[serde(rename = "Version")]
            version: String,
        }
        let v: V = self.json("version", &[]).await?;
        KuboVersion::parse(&v.version)
    }

    /// `name/put` (Kubo ≥ 0.40): Kubo validates the record and refuses one
    /// with a sequence not higher than the routing system's (identical
    /// bytes are accepted).
    pub async fn name_put(
        &self,
        name: &str,
        record: &[u8],
        allow_offline: bool,
    ) -> Result<(), KuboError> {
        let offline = if allow_offline { "true" } else { "false" };
        let request = self
            .post("name/put", &[("arg", name), ("allow-offline", offline)])
            .multipart(file_form("record", record));
        self.call(request, MAX_JSON_ANSWER).await.map(drop)
    }

    /// `routing/put /ipns/<name>`. Kubo reports success even when no DHT
    /// peer took the record.
    pub async fn routing_put(
        &self,
        name: &str,
        record: &[u8],
        allow_offline: bool,
    ) -> Result<(), KuboError> {
        let key = format!("/ipns/{name}");
        let offline = if allow_offline { "true" } else { "false" };
        let request = self
            .post("routing/put", &[("arg", &key), ("allow-offline", offline)])
            .multipart(file_form("value-file", record));
        self.call(request, MAX_JSON_ANSWER).await.map(drop)
    }

    /// `name/get`: the best record the routing system has, raw.
    pub async fn name_get(&self, name: &str) -> Result<Option<Bytes>, KuboError> {
        match self
            .call(self.post("name/get", &[("arg", name)]), MAX_RECORD_ANSWER)
            .await
        {
            Ok(b) => Ok(Some(b)),
            Err(KuboError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `routing/get /ipns/<name>`: NDJSON events, the record base64 in the
    /// `Extra` of the value event.
    pub async fn routing_get(&self, name: &str) -> Result<Option<Bytes>, KuboError> {
        let key = format!("/ipns/{name}");
        match self
            .call(self.post("routing/get", &[("arg", &key)]), MAX_JSON_ANSWER)
            .await
        {
            Ok(body) => parse_routing_get(&body).map(Some),
            Err(KuboError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `name/publish --key=<key> --resolve=false <value>`: Kubo signs a new
    /// record; returns the name it published.
    pub async fn name_publish(
        &self,
        key: &str,
        value: &str,
        lifetime: Duration,
        ttl: Duration,
        allow_offline: bool,
    ) -> Result<String, KuboError> {
        #[derive(Deserialize)]
        struct Published {
            #[serde(rename = "Name")]
            name: String,
        }
        let lifetime = format!("{}s", lifetime.as_secs().max(1));
        let ttl = format!("{}ms", ttl.as_millis());
        let offline = if allow_offline { "true" } else { "false" };
        let p: Published = self
            .json(
                "name/publish",
                &[
                    ("arg", value),
                    ("key", key),
                    ("resolve", "false"),
                    ("lifetime", &lifetime),
                    ("ttl", &ttl),
                    ("allow-offline", offline),
                ],
            )
            .await?;
        Ok(p.name)
    }

    /// `key/ls`.
    pub async fn key_list(&self) -> Result<Vec<KuboKey>, KuboError> {
        #[derive(Deserialize)]
        struct Keys {
            #[serde(rename = "Keys")]
            keys: Option<Vec<KuboKey>>,
        }
        let k: Keys = self.json("key/ls", &[]).await?;
        Ok(k.keys.unwrap_or_default())
    }

    /// `stats/dht`: peers in the LAN and WAN routing tables.
    pub async fn dht_peers(&self) -> Result<DhtPeers, KuboError> {
        let body = self
            .call(self.post("stats/dht", &[]), MAX_JSON_ANSWER)
            .await?;
        parse_dht_stats(&body)
    }
}

fn file_form(field: &'static str, bytes: &[u8]) -> reqwest::multipart::Form {
    let part = reqwest::multipart::Part::bytes(bytes.to_vec())
        .file_name(field)
        .mime_str("application/octet-stream")
        .expect("a constant media type");
    reqwest::multipart::Form::new().part(field, part)
}

fn transport_error(e: reqwest::Error) -> KuboError {
    if e.is_timeout() {
        KuboError::Timeout
    } else if e.is_connect() || e.is_request() {
        KuboError::Unreachable(root_cause(&e))
    } else {
        KuboError::Malformed(root_cause(&e))
    }
}

/// The innermost error's text ("connection refused", not reqwest's
/// wrapper).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

async fn read_bounded(mut response: reqwest::Response, max: usize) -> Result<Bytes, KuboError> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > max {
                    return Err(KuboError::Malformed(format!(
                        "answer longer than {max} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(Bytes::from(body)),
            Err(e) if e.is_timeout() => return Err(KuboError::Timeout),
            Err(e) => return Err(KuboError::Unreachable(root_cause(&e))),
        }
    }
}

/// The record in a `routing/get` answer: the `Extra` (base64) of the event
/// of type 5 (value).
fn parse_routing_get(body: &[u8]) -> Result<Bytes, KuboError> {
    #[derive(Deserialize)]
    struct Event {
        #[serde(rename = "Type")]
        kind: i64,
        #[serde(rename = "Extra", default)]
        extra: String,
    }
    /// `routing.Value` in go-libp2p's query events.
    const VALUE: i64 = 5;
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let event: Event = serde_json::from_slice(line)
            .map_err(|e| KuboError::Malformed(format!("routing/get event: {e}")))?;
        if event.kind == VALUE {
            return base64::engine::general_purpose::STANDARD
                .decode(event.extra.as_bytes())
                .map(Bytes::from)
                .map_err(|e| KuboError::Malformed(format!("routing/get value: {e}")));
        }
    }
    Err(KuboError::Malformed(
        "routing/get answered without a value".into(),
    ))
}

/// Peer counts from `stats/dht` NDJSON (one object per DHT).
fn parse_dht_stats(body: &[u8]) -> Result<DhtPeers, KuboError> {
    #[derive(Deserialize)]
    struct Bucket {
        #[serde(rename = "Peers", default)]
        peers: Option<Vec<serde_json::Value>>,
    }
    #[derive(Deserialize)]
    struct Dht {
        #[serde(rename = "Name")]
        name: String,
        #[serde(rename = "Buckets", default)]
        buckets: Option<Vec<Bucket>>,
    }
    let mut peers = DhtPeers::default();
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let dht: Dht = serde_json::from_slice(line)
            .map_err(|e| KuboError::Malformed(format!("stats/dht: {e}")))?;
        let n: usize = dht
            .buckets
            .unwrap_or_default()
            .iter()
            .map(|b| b.peers.as_ref().map_or(0, Vec::len))
            .sum();
        match dht.name.as_str() {
            "lan" => peers.lan += n,
            _ => peers.wan += n,
        }
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_takes_kubos_syntax_and_never_prints_the_secret() {
        let a: KuboAuth = "bearer:s3cret-token".parse().unwrap();
        assert_eq!(a.header, "Bearer s3cret-token");
        assert!(!format!("{a:?}").contains("s3cret"));
        let b: KuboAuth = "basic:alice:pa:ss".parse().unwrap();
        assert_eq!(b.header, "Basic YWxpY2U6cGE6c3M=");
        assert!(!format!("{b:?}").contains("YWxp"));
        for bad in [
            "s3cret",
            "bearer:",
            "basic:alice",
            "Bearer x",
            "bearer:a\nb",
        ] {
            assert!(bad.parse::<KuboAuth>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn versions_parse_and_gate_name_put() {
        let v = KuboVersion::parse("0.43.0").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (0, 43, 0));
        assert!(v.has_name_put());
        assert!(KuboVersion::parse("0.44.0-dev").unwrap().has_name_put());
        assert!(!KuboVersion::parse("v0.39.2").unwrap().has_name_put());
        for bad in ["", "0.43", "zero.1.2", "0.43.0.1"] {
            assert!(KuboVersion::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn routing_get_answers_parse() {
        // Kubo 0.43's answer shape (record shortened).
        let body = b"{\"Extra\":\"CgRhYmNk\",\"ID\":\"\",\"Responses\":null,\"Type\":5}\n";
        assert_eq!(
            parse_routing_get(body).unwrap(),
            Bytes::from_static(b"\n\x04abcd")
        );
        assert!(parse_routing_get(b"{\"Type\":1,\"ID\":\"x\"}\n").is_err());
        assert!(parse_routing_get(b"not json\n").is_err());
        assert!(parse_routing_get(b"{\"Type\":5,\"Extra\":\"***\"}").is_err());
    }

    #[test]
    fn dht_stats_count_peers_per_table() {
        let empty = b"{\"Name\":\"wan\",\"Buckets\":[]}\n{\"Name\":\"lan\",\"Buckets\":[]}\n";
        assert_eq!(parse_dht_stats(empty).unwrap(), DhtPeers::default());
        let three = b"{\"Name\":\"wan\",\"Buckets\":null}\n{\"Name\":\"lan\",\"Buckets\":[{\"LastRefresh\":\"x\",\"Peers\":[{\"ID\":\"a\"},{\"ID\":\"b\"}]},{\"Peers\":[{\"ID\":\"c\"}]}]}\n";
        assert_eq!(parse_dht_stats(three).unwrap(), DhtPeers { lan: 3, wan: 0 });
        assert!(parse_dht_stats(b"{").is_err());
    }

    /// A one-shot HTTP server answering every request with `status` and
    /// `body`.
    async fn canned(status: u16, body: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn errors_map_to_kinds() {
        let client = |url: String| KuboClient::new(&url, None, Duration::from_secs(5)).unwrap();
        let nf = client(
            canned(
                500,
                r#"{"Message":"routing: not found","Code":0,"Type":"error"}"#,
            )
            .await,
        );
        assert_eq!(nf.name_get("k51x").await.unwrap(), None);
        assert_eq!(nf.routing_get("k51x").await.unwrap(), None);
        let bad = client(canned(500, r#"{"Message":"boom","Code":0,"Type":"error"}"#).await);
        assert_eq!(
            bad.name_put("k51x", b"r", false).await.unwrap_err(),
            KuboError::Api {
                status: 500,
                message: "boom".into()
            }
        );
        let denied = client(canned(403, "403 - Forbidden").await);
        assert_eq!(denied.version().await.unwrap_err(), KuboError::Denied);
        let garbage = client(canned(200, "{}").await);
        assert!(matches!(
            garbage.version().await.unwrap_err(),
            KuboError::Malformed(_)
        ));
        // Nothing listens on port 1.
        let down = client("http://127.0.0.1:1".into());
        let e = down.version().await.unwrap_err();
        assert!(e.is_unreachable(), "{e:?}");
        assert_eq!(e.code(), "kubo_unreachable");
        assert!(KuboClient::new("https://x", None, Duration::from_secs(1)).is_err());
    }
}
