//! The IPNS record service through the real daemon: Delegated Routing V1
//! GET/PUT with their status codes and caching headers, the w3name API,
//! refusals that leave the stored record alone, the write rate limit, the
//! CLI, and durability across `kill -9`.

mod common;

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use common::*;
use libp2p::identity::Keypair;
use sidecar::ipns::{
    Name,
    testing::{SignOptions, sign},
};

const IPNS: &str = "application/vnd.ipfs.ipns-record";
const DAY: Duration = Duration::from_secs(86_400);

fn record(key: &Keypair, value: &str, seq: u64, ttl: Duration) -> Bytes {
    sign(
        key,
        value.as_bytes(),
        seq,
        SystemTime::now() + DAY,
        ttl,
        &SignOptions::default(),
    )
    .unwrap()
}

fn put(d: &Daemon, name: &str, body: &[u8]) -> HttpResponse {
    http_request(
        &d.http,
        "PUT",
        &format!("/routing/v1/ipns/{name}"),
        &[("Content-Type", IPNS)],
        body,
    )
}

fn get(d: &Daemon, name: &str) -> HttpResponse {
    http_request(
        &d.http,
        "GET",
        &format!("/routing/v1/ipns/{name}"),
        &[("Accept", IPNS)],
        b"",
    )
}

#[test]
fn records_are_validated_kept_served_and_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data, &[]);
    let key = Keypair::generate_ed25519();
    let name = Name::from_public_key(&key.public());
    let (k51, bafz, b58) = (
        name.to_string(),
        name.to_base32(),
        name.peer_id().to_string(),
    );
    let first = record(&key, "/ipfs/bafkqaaa", 5, Duration::from_secs(300));

    // Nothing yet: 404, cacheable for 60 s.
    let r = get(&d, &k51);
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(json(&r)["code"], "not_found");
    assert!(r.header("cache-control").unwrap().contains("max-age=60"));

    // PUT, then the same bytes back in every name form, with caching headers.
    let r = put(&d, &bafz, &first);
    assert_eq!(r.status, 200, "{}", r.text());
    for n in [&k51, &bafz, &b58] {
        let r = get(&d, n);
        assert_eq!(r.status, 200, "{n}: {}", r.text());
        assert_eq!(r.body, first.as_ref());
        assert_eq!(r.header("content-type"), Some(IPNS));
        assert!(
            r.header("cache-control").unwrap().contains("max-age=300"),
            "{:?}",
            r.headers
        );
        assert_eq!(r.header("vary"), Some("Accept"));
        assert!(r.header("last-modified").is_some() && r.header("expires").is_some());
    }
    let etag = get(&d, &k51).header("etag").unwrap().to_string();
    let r = http_request(
        &d.http,
        "GET",
        &format!("/routing/v1/ipns/{k51}"),
        &[("Accept", IPNS), ("If-None-Match", &etag)],
        b"",
    );
    assert_eq!(r.status, 304);

    // Wrong media types: 406 with the type to use.
    let r = http_request(
        &d.http,
        "GET",
        &format!("/routing/v1/ipns/{k51}"),
        &[("Accept", "application/json")],
        b"",
    );
    assert_eq!(r.status, 406);
    assert!(json(&r)["message"].as_str().unwrap().contains(IPNS));
    let r = http_request(
        &d.http,
        "PUT",
        &format!("/routing/v1/ipns/{k51}"),
        &[("Content-Type", "application/octet-stream")],
        &first,
    );
    assert_eq!(r.status, 406);

    // The same bytes again: success, nothing changes.
    assert_eq!(put(&d, &k51, &first).status, 200);

    // Refusals, each with its code, none changing the stored record.
    let older = record(&key, "/ipfs/older", 4, Duration::from_secs(300));
    let flipped = {
        use prost::Message;
        let mut e = sidecar::ipns::pb::IpnsEntry::decode(first.clone()).unwrap();
        let mut sig = e.signature_v2.unwrap().to_vec();
        sig[7] ^= 0x40;
        e.signature_v2 = Some(sig.into());
        e.encode_to_vec()
    };
    let other = Keypair::generate_ed25519();
    let other_name = Name::from_public_key(&other.public());
    let expired = sign(
        &key,
        b"/ipfs/late",
        9,
        SystemTime::now() - Duration::from_secs(1),
        Duration::from_secs(1),
        &SignOptions::default(),
    )
    .unwrap();
    let cases: [(&str, &[u8], u16, &str); 6] = [
        (&k51, &older, 409, "sequence_not_newer"),
        (&k51, &flipped, 400, "signature_invalid"),
        (&other_name.to_string(), &first, 400, "signature_invalid"),
        (&k51, &expired, 400, "expired"),
        (&k51, b"\x0a\x03abc", 400, "malformed"),
        (&k51, &vec![0u8; 11 * 1024], 413, "too_large"),
    ];
    // Past what the server reads at all (a base64 w3name record's worth).
    let r = put(&d, &k51, &vec![0u8; 64 * 1024]);
    assert_eq!(
        (r.status, json(&r)["code"].as_str().unwrap()),
        (413, "too_large"),
        "{}",
        r.text()
    );
    for (n, body, status, code) in cases {
        let r = put(&d, n, body);
        assert_eq!(
            (r.status, json(&r)["code"].as_str().unwrap()),
            (status, code),
            "{}",
            r.text()
        );
    }
    assert_eq!(
        get(&d, &k51).body,
        first.as_ref(),
        "a refusal changed the record"
    );
    let r = put(&d, "not-a-name", &first);
    assert_eq!(
        (r.status, json(&r)["code"].as_str().unwrap()),
        (400, "invalid_name")
    );

    // w3name: GET gives value + base64 record; POST takes base64 and answers 202.
    let r = http_request(&d.http, "GET", &format!("/name/{k51}"), &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let w = json(&r);
    assert_eq!(w["value"], "/ipfs/bafkqaaa");
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(
        b64.decode(w["record"].as_str().unwrap()).unwrap(),
        first.as_ref()
    );
    let newer = record(&key, "/ipfs/bafkqaaa/newer", 6, Duration::ZERO);
    let r = http_request(
        &d.http,
        "POST",
        &format!("/name/{k51}"),
        &[],
        b64.encode(&newer).as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(json(&r)["id"], k51);
    let r = http_request(&d.http, "GET", &format!("/name/{k51}"), &[], b"");
    assert_eq!(json(&r)["value"], "/ipfs/bafkqaaa/newer");
    let r = http_request(&d.http, "POST", &format!("/name/{k51}"), &[], b"%%%");
    assert_eq!(
        (r.status, json(&r)["code"].as_str().unwrap()),
        (400, "malformed")
    );
    // No TTL: the default 60 s.
    assert!(
        get(&d, &k51)
            .header("cache-control")
            .unwrap()
            .contains("max-age=60")
    );

    // kill -9 right after a PUT answered 200: the record is there after restart.
    let last = record(&key, "/ipfs/bafkqaaa/last", 7, Duration::from_secs(60));
    assert_eq!(put(&d, &k51, &last).status, 200);
    d.kill9();
    let d = Daemon::start(&data, &[]);
    assert_eq!(get(&d, &k51).body, last.as_ref());
    drop(d);

    // The CLI without a daemon: get, ls, put, inspect.
    let out = sidecar_cmd(&data, &["ipns", "get", &bafz]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("/ipfs/bafkqaaa/last") && text.contains("sequence:    7"),
        "{text}"
    );
    let file = dir.path().join("seq8.bin");
    std::fs::write(&file, record(&key, "/ipfs/bafkqaaa/cli", 8, DAY)).unwrap();
    let out = sidecar_cmd(&data, &["ipns", "put", &k51, file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sidecar_cmd(&data, &["ipns", "ls", "--json"]);
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (line["name"].as_str().unwrap(), line["sequence"].as_u64()),
        (k51.as_str(), Some(8))
    );
    assert_eq!(line["source"], "cli");
    let out = sidecar_cmd(
        &data,
        &["ipns", "inspect", file.to_str().unwrap(), "--name", &k51],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("verdict:     valid"));
    std::fs::write(&file, &flipped).unwrap();
    let out = sidecar_cmd(
        &data,
        &["ipns", "inspect", file.to_str().unwrap(), "--name", &k51],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("invalid (signature_invalid)"));
}

#[test]
fn writes_past_a_clients_rate_get_429_and_reads_do_not() {
    let dir = tempfile::tempdir().unwrap();
    // Loopback is exempt by default: take the exemption away.
    let d = Daemon::start(
        &dir.path().join("data"),
        &[
            ("SIDECAR_HTTP__WRITE_RATE_EXEMPT", ""),
            ("SIDECAR_HTTP__WRITE_RATE_PER_IP", "1"),
            ("SIDECAR_HTTP__WRITE_BURST_PER_IP", "3"),
        ],
    );
    let key = Keypair::generate_ed25519();
    let name = Name::from_public_key(&key.public()).to_string();
    let statuses: Vec<u16> = (1..=5)
        .map(|seq| put(&d, &name, &record(&key, "/ipfs/bafkqaaa", seq, DAY)).status)
        .collect();
    assert_eq!(&statuses[..3], &[200, 200, 200]);
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    let r = put(&d, &name, &record(&key, "/ipfs/bafkqaaa", 9, DAY));
    assert_eq!(r.status, 429);
    assert_eq!(json(&r)["code"], "rate_limited");
    assert!(r.header("retry-after").is_some());
    assert_eq!(get(&d, &name).status, 200, "reads are never limited");
}
