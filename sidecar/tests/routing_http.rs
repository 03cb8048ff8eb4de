//! Delegated Routing V1 content and peer routing against the real daemon:
//! provider answers for held and absent CIDs (JSON and NDJSON), peer
//! records, CORS, and clear errors for bad input.

mod common;

use cid::Cid;
use common::*;
use sidecar::car::{RAW, cid_v1_sha256};

#[test]
fn providers_and_peers_answer_with_the_sidecar_itself() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let held: (Cid, Vec<u8>) = {
        let bytes = b"a block the sidecar holds".to_vec();
        (cid_v1_sha256(RAW, &bytes), bytes)
    };
    let car = write_car(dir.path(), "f.car", std::slice::from_ref(&held));
    let out = sidecar_cmd(&data, &["car", "import", car.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = Daemon::start(&data, &[]);
    let get =
        |path: &str, accept: &str| http_request(&d.http, "GET", path, &[("Accept", accept)], b"");

    // Held: the sidecar, with its addresses (no /p2p suffix) and Bitswap.
    let r = get(
        &format!("/routing/v1/providers/{}", held.0),
        "application/json",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("vary"), Some("Accept"));
    assert!(r.header("cache-control").unwrap().contains("max-age=300"));
    assert!(r.header("last-modified").is_some() && r.header("expires").is_some());
    let providers = json(&r)["Providers"].as_array().unwrap().clone();
    assert_eq!(providers.len(), 1);
    let p = &providers[0];
    assert_eq!(p["Schema"], "peer");
    assert_eq!(p["ID"], d.peer_id.to_string());
    assert_eq!(p["Protocols"], serde_json::json!(["transport-bitswap"]));
    let addrs: Vec<&str> = p["Addrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let tcp = d.tcp_addr.to_string();
    let tcp = tcp.split("/p2p/").next().unwrap();
    assert!(addrs.contains(&tcp), "{addrs:?} lacks {tcp}");
    assert!(addrs.iter().all(|a| !a.contains("/p2p/")), "{addrs:?}");

    // Blocks are indexed by multihash: the same hash under another codec is
    // held too.
    let same_hash = Cid::new_v1(0x70, *held.0.hash());
    let r = get(
        &format!("/routing/v1/providers/{same_hash}"),
        "application/json",
    );
    assert_eq!(json(&r)["Providers"].as_array().unwrap().len(), 1);

    // NDJSON on request: one record per line.
    let r = get(
        &format!("/routing/v1/providers/{}", held.0),
        "application/x-ndjson",
    );
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<serde_json::Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["ID"], d.peer_id.to_string());

    // Absent: an empty 200 with a short cache lifetime.
    let absent = cid_v1_sha256(RAW, b"nobody has this");
    let r = get(
        &format!("/routing/v1/providers/{absent}"),
        "application/json",
    );
    assert_eq!(r.status, 200);
    assert_eq!(json(&r), serde_json::json!({ "Providers": [] }));
    assert!(r.header("cache-control").unwrap().contains("max-age=15"));
    let r = get(
        &format!("/routing/v1/providers/{absent}"),
        "application/x-ndjson",
    );
    assert_eq!((r.status, r.body.len()), (200, 0));

    // A bad CID is a 400 with a machine-readable code.
    let r = get("/routing/v1/providers/not-a-cid", "application/json");
    assert_eq!(r.status, 400);
    assert_eq!(json(&r)["code"], "malformed_cid");

    // Peers: itself, in both ID forms; nobody else.
    let as_cid = Cid::new_v1(0x72, *d.peer_id.as_ref());
    for id in [d.peer_id.to_string(), as_cid.to_string()] {
        let r = get(&format!("/routing/v1/peers/{id}"), "application/json");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(json(&r)["Peers"][0]["ID"], d.peer_id.to_string());
    }
    let other = libp2p::PeerId::random();
    let r = get(&format!("/routing/v1/peers/{other}"), "application/json");
    assert_eq!(r.status, 404);
    assert_eq!(json(&r)["code"], "peer_unknown");

    // CORS preflight.
    let r = http_request(
        &d.http,
        "OPTIONS",
        "/routing/v1/ipns/k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8",
        &[
            ("Origin", "https://example.org"),
            ("Access-Control-Request-Method", "PUT"),
        ],
        b"",
    );
    assert!(r.status == 204 || r.status == 200, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(
        r.header("access-control-allow-methods")
            .unwrap()
            .contains("PUT")
    );
}
