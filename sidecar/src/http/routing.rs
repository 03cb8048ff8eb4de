//! Delegated Routing V1 (ipfs/specs `routing/http-routing-v1`): content and
//! peer routing answered with the sidecar itself.
//!
//! - `GET /routing/v1/providers/{cid}`: the sidecar (Schema `peer`, its
//!   advertised addresses, `transport-bitswap`) when its block index holds
//!   the CID's multihash, else an empty 200 (never 404: an empty answer is
//!   cacheable, and Kubo and Helia treat both alike). JSON, or NDJSON when
//!   the `Accept` header asks for `application/x-ndjson`.
//! - `GET /routing/v1/peers/{peer-id}`: the sidecar's own peer record; 404
//!   for any other peer (it routes nobody else).
//!
//! Called by: [`super::router`]. Must never: block a handler on the disk
//! (index lookups run on the blocking pool) or answer for peers it does not
//! know.

use std::time::{Duration, SystemTime};

use axum::{
    Router,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use cid::Cid;
use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};
use serde::Serialize;

use super::{ApiState, error::ApiError};

/// The one transport the sidecar serves blocks over, as the spec names it.
const TRANSPORT_BITSWAP: &str = "transport-bitswap";
/// NDJSON media type (spec, "Streaming").
pub(super) const NDJSON: &str = "application/x-ndjson";
/// Cache lifetime of an answer with results: 5 minutes, as boxo's server
/// (`maxAgeWithResults`); the answer changes only when a CAR is added.
const MAX_AGE_WITH_RESULTS: Duration = Duration::from_secs(300);
/// Cache lifetime of an empty answer: 15 s, as boxo's server
/// (`maxAgeWithoutResults`), so a CAR imported a moment later shows soon.
const MAX_AGE_WITHOUT_RESULTS: Duration = Duration::from_secs(15);
/// How long a cache may serve a stale answer while revalidating or when the
/// sidecar is down: 48 hours, as boxo's server.
const STALE: Duration = Duration::from_secs(48 * 3600);

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/routing/v1/providers/{cid}", get(providers))
        .route("/routing/v1/peers/{peer_id}", get(peers))
}

/// One record of the spec's Peer Schema.
#[derive(Serialize)]
struct PeerRecord {
    #[serde(rename = "Schema")]
    schema: &'static str,
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Addrs")]
    addrs: Vec<String>,
    #[serde(rename = "Protocols")]
    protocols: Vec<&'static str>,
}

/// The sidecar's own record: its advertised addresses without `/p2p/…`
/// (the spec's Addrs carry none), and Bitswap.
fn own_record(s: &ApiState) -> PeerRecord {
    let listen = s.listen_addrs.read().map(|a| a.clone()).unwrap_or_default();
    let addrs = s
        .config
        .advertised_addrs(&listen)
        .iter()
        .map(|a| without_p2p(a).to_string())
        .collect();
    PeerRecord {
        schema: "peer",
        id: s.peer_id.to_string(),
        addrs,
        protocols: vec![TRANSPORT_BITSWAP],
    }
}

fn without_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

async fn providers(
    State(s): State<ApiState>,
    Path(cid): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let cid = Cid::try_from(cid.as_str())
        .map_err(|e| ApiError::bad_request("malformed_cid", format!("not a CID: {e}")))?;
    let held = match &s.blocks {
        Some(blocks) => {
            let blocks = blocks.clone();
            let mh = *cid.hash();
            tokio::task::spawn_blocking(move || blocks.block_sizes(&[mh]))
                .await
                .map_err(|_| ApiError::internal("index lookup failed"))?
                .map_err(|e| ApiError::internal(format!("index lookup failed: {e}")))?
                .first()
                .is_some_and(Option::is_some)
        }
        None => false,
    };
    let records: Vec<PeerRecord> = if held { vec![own_record(&s)] } else { vec![] };
    Ok(list_response("Providers", &records, &headers))
}

async fn peers(
    State(s): State<ApiState>,
    Path(peer): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let peer = parse_peer_id(&peer)?;
    if peer != s.peer_id {
        return Err(ApiError::not_found(
            "peer_unknown",
            format!("this server routes only itself ({})", s.peer_id),
        ));
    }
    Ok(list_response("Peers", &[own_record(&s)], &headers))
}

/// A peer ID as the spec allows: a CIDv1 with the libp2p-key codec (any
/// multibase), or a base58btc multihash.
fn parse_peer_id(text: &str) -> Result<PeerId, ApiError> {
    const LIBP2P_KEY: u64 = 0x72;
    if let Ok(peer) = text.parse::<PeerId>() {
        return Ok(peer);
    }
    let bad = |why: String| ApiError::bad_request("malformed_peer_id", why);
    let cid = Cid::try_from(text).map_err(|e| bad(format!("not a peer ID: {e}")))?;
    if cid.codec() != LIBP2P_KEY {
        return Err(bad(format!(
            "CID codec 0x{:x} is not libp2p-key (0x72)",
            cid.codec()
        )));
    }
    PeerId::from_multihash(*cid.hash()).map_err(|_| bad("multihash is not a peer ID".to_string()))
}

/// Whether the client asked for NDJSON (spec: only then may the server stream).
pub(super) fn wants_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.split(';').next().is_some_and(|t| t.trim() == NDJSON))
}

/// `{"<field>": [records]}` as JSON, or one record per line as NDJSON, with
/// the caching headers boxo's server sends.
fn list_response<T: Serialize>(field: &str, records: &[T], headers: &HeaderMap) -> Response {
    let ndjson = wants_ndjson(headers);
    let body = if ndjson {
        let mut out = Vec::new();
        for r in records {
            // Serializing these plain structs cannot fail.
            if let Ok(line) = serde_json::to_vec(r) {
                out.extend_from_slice(&line);
                out.push(b'\n');
            }
        }
        out
    } else {
        serde_json::to_vec(&serde_json::json!({ field: records })).unwrap_or_default()
    };
    let max_age = if records.is_empty() {
        MAX_AGE_WITHOUT_RESULTS
    } else {
        MAX_AGE_WITH_RESULTS
    };
    let now = SystemTime::now();
    let mut response = (StatusCode::OK, Body::from(body)).into_response();
    let h = response.headers_mut();
    let content_type = if ndjson { NDJSON } else { "application/json" };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    set(h, header::CACHE_CONTROL, cache_control(max_age, STALE));
    set(h, header::LAST_MODIFIED, httpdate::fmt_http_date(now));
    set(h, header::EXPIRES, httpdate::fmt_http_date(now + max_age));
    response
}

/// `public, max-age=…, stale-while-revalidate=…, stale-if-error=…`.
pub(super) fn cache_control(max_age: Duration, stale: Duration) -> String {
    format!(
        "public, max-age={}, stale-while-revalidate={}, stale-if-error={}",
        max_age.as_secs(),
        stale.as_secs(),
        stale.as_secs()
    )
}

pub(super) fn set(h: &mut HeaderMap, name: header::HeaderName, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_is_chosen_only_when_asked_for() {
        let mut h = HeaderMap::new();
        assert!(!wants_ndjson(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!wants_ndjson(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, application/x-ndjson;q=0.9"),
        );
        assert!(wants_ndjson(&h));
    }

    #[test]
    fn peer_ids_parse_in_both_spec_forms() {
        let peer = PeerId::random();
        let cid = Cid::new_v1(0x72, *peer.as_ref());
        assert_eq!(parse_peer_id(&peer.to_string()).unwrap(), peer);
        assert_eq!(parse_peer_id(&cid.to_string()).unwrap(), peer);
        let raw = Cid::new_v1(0x55, *peer.as_ref());
        let err = parse_peer_id(&raw.to_string()).unwrap_err();
        assert_eq!(err.code, "malformed_peer_id");
        assert!(parse_peer_id("not-a-peer").is_err());
    }

    #[test]
    fn addresses_lose_their_p2p_suffix() {
        let peer = PeerId::random();
        let a: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}")
            .parse()
            .unwrap();
        assert_eq!(without_p2p(&a).to_string(), "/ip4/127.0.0.1/tcp/4001");
    }
}
