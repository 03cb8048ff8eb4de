//! The real `sidecar` binary serving Bitswap to a raw libp2p client: every
//! protocol version's response shape, DONT_HAVE rules, the wantlist cap, and
//! bad input (garbage, oversized and malformed frames) closing only the
//! offending stream while the daemon keeps serving others.

mod common;

use std::time::Duration;

use bytes::Bytes;
use cid::Cid;
use common::*;
use sidecar::{
    bitswap::{Presence, Protocol, Request, ResponseBlock, WantEntry, WantKind, encode_request},
    car::{cid_v0_sha256, cid_v1_sha256},
};

const RAW: u64 = 0x55;

struct Fixture {
    _dir: tempfile::TempDir,
    daemon: Daemon,
    small: (Cid, Vec<u8>),
    big: (Cid, Vec<u8>),
    v0: (Cid, Vec<u8>),
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let small_data = b"a small block, served in place of HAVE".to_vec();
    let big_data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let v0_data = b"\x0a\x02\x08\x01".to_vec(); // a dag-pb empty-ish node
    let small = (cid_v1_sha256(RAW, &small_data), small_data);
    let big = (cid_v1_sha256(RAW, &big_data), big_data);
    let v0 = (cid_v0_sha256(&v0_data), v0_data);
    let car = write_car(
        dir.path(),
        "f.car",
        &[small.clone(), big.clone(), v0.clone()],
    );
    let out = sidecar_cmd(
        &dir.path().join("data"),
        &["car", "import", car.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let daemon = Daemon::start(&dir.path().join("data"), &[]);
    Fixture {
        _dir: dir,
        daemon,
        small,
        big,
        v0,
    }
}

fn want(cid: &Cid, kind: WantKind, send_dont_have: bool) -> WantEntry {
    WantEntry {
        cid: *cid,
        priority: 1,
        kind,
        send_dont_have,
    }
}

fn request(wants: Vec<WantEntry>) -> Bytes {
    encode_request(&Request {
        full: false,
        wants,
        ..Default::default()
    })
}

fn missing_cid(n: u32) -> Cid {
    cid_v1_sha256(RAW, format!("not held {n}").as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_2_answers_haves_blocks_and_dont_haves() {
    let f = fixture();
    let client = RawClient::connect(&f.daemon.tcp_addr).await;
    let mut replies = client.accept(Protocol::V120.as_str());
    let mut s = client.open(f.daemon.peer_id, Protocol::V120.as_str()).await;
    let missing_quiet = missing_cid(1);
    let missing_loud = missing_cid(2);
    send_raw(
        &mut s,
        &request(vec![
            want(&f.small.0, WantKind::Have, true),
            want(&f.big.0, WantKind::Have, true),
            want(&missing_quiet, WantKind::Have, false),
            want(&missing_loud, WantKind::Block, true),
        ]),
    )
    .await;
    let got = replies
        .collect(WAIT, |rs| {
            let presences: usize = rs.iter().map(|r| r.presences.len()).sum();
            let blocks: usize = rs.iter().map(|r| r.blocks.len()).sum();
            presences >= 2 && blocks >= 1
        })
        .await;
    assert!(
        got.iter().all(|r| r.has_wantlist),
        "every response carries the wantlist field"
    );
    let blocks: Vec<_> = got.iter().flat_map(|r| r.blocks.clone()).collect();
    let presences: Vec<_> = got.iter().flat_map(|r| r.presences.clone()).collect();
    // want-have for a block ≤ 1024 bytes: the block itself, with a CIDv1 prefix.
    assert_eq!(blocks.len(), 1);
    let b = &blocks[0];
    assert_eq!(
        b.prefix.as_ref().unwrap().to_cid(&sha256(&b.data)).unwrap(),
        f.small.0
    );
    assert_eq!(b.data.as_ref(), f.small.1.as_slice());
    assert!(
        presences.contains(&(f.big.0, Presence::Have)),
        "{presences:?}"
    );
    assert!(
        presences.contains(&(missing_loud, Presence::DontHave)),
        "{presences:?}"
    );
    assert!(
        !presences.iter().any(|(c, _)| *c == missing_quiet),
        "no DONT_HAVE without sendDontHave: {presences:?}"
    );

    // want-block for the big block: the block.
    let b = want_block(&mut s, &mut replies, &f.big.0, "big block sent").await;
    assert_eq!(b.data.as_ref(), f.big.1.as_slice());
    assert!(f.daemon.metric("sidecar_bitswap_dont_haves_sent_total") >= 1.0);
    assert!(f.daemon.metric("sidecar_bitswap_blocks_sent_total") >= 2.0);
}

/// Sends a want-block for `cid` on `stream` and returns the first block the
/// server sends back on its reply streams.
async fn want_block(
    stream: &mut libp2p::Stream,
    replies: &mut Replies,
    cid: &Cid,
    what: &str,
) -> ResponseBlock {
    send_raw(stream, &request(vec![want(cid, WantKind::Block, false)])).await;
    let got = replies
        .collect(WAIT, |rs| rs.iter().any(|r| !r.blocks.is_empty()))
        .await;
    got.iter()
        .flat_map(|r| r.blocks.clone())
        .next()
        .unwrap_or_else(|| panic!("{what}: no block sent"))
}

fn sha256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_protocols_get_their_own_response_shape() {
    let f = fixture();
    // 1.1.0: blocks in `payload` with a prefix; presences cannot be carried.
    let client = RawClient::connect(&f.daemon.tcp_addr).await;
    let mut replies = client.accept(Protocol::V110.as_str());
    let mut s = client.open(f.daemon.peer_id, Protocol::V110.as_str()).await;
    let b = want_block(&mut s, &mut replies, &f.big.0, "1.1.0 block").await;
    assert!(b.prefix.is_some());
    assert_eq!(b.data.as_ref(), f.big.1.as_slice());

    // 1.0.0 and the unversioned id: the legacy `blocks` field, CIDv0 content.
    for protocol in [Protocol::V100, Protocol::Legacy] {
        let client = RawClient::connect(&f.daemon.tcp_addr).await;
        let mut replies = client.accept(protocol.as_str());
        let mut s = client.open(f.daemon.peer_id, protocol.as_str()).await;
        let b = want_block(&mut s, &mut replies, &f.v0.0, protocol.as_str()).await;
        assert!(b.prefix.is_none(), "{protocol}: legacy blocks field");
        assert_eq!(b.data.as_ref(), f.v0.1.as_slice());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wantlist_is_capped_per_peer() {
    let f = fixture();
    let client = RawClient::connect(&f.daemon.tcp_addr).await;
    let _replies = client.accept(Protocol::V120.as_str());
    let mut s = client.open(f.daemon.peer_id, Protocol::V120.as_str()).await;
    // 1100 distinct wants for blocks not held, without sendDontHave: the
    // default cap keeps 1024 and ignores 76.
    let wants: Vec<_> = (0..1100)
        .map(|i| want(&missing_cid(i), WantKind::Have, false))
        .collect();
    send_raw(&mut s, &request(wants)).await;
    let series = "sidecar_bitswap_rejected_total{reason=\"wantlist_full\"}";
    let deadline = std::time::Instant::now() + WAIT;
    while f.daemon.metric(series) < 76.0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(f.daemon.metric(series), 76.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_only_their_stream() {
    let mut f = fixture();
    let oversized = {
        // A length prefix of 5 MiB, over the 4 MiB message limit.
        let mut v = Vec::new();
        let mut n: u64 = 5 * 1024 * 1024;
        while n >= 0x80 {
            v.push((n as u8) | 0x80);
            n >>= 7;
        }
        v.push(n as u8);
        v.extend_from_slice(&[0u8; 64]);
        v
    };
    let malformed = {
        // A well-framed body that is not a Bitswap protobuf (field 1, wire type
        // 2, with a length running past the end).
        let body = [0x0a, 0x7f, 0x01, 0x02];
        let mut v = vec![body.len() as u8];
        v.extend_from_slice(&body);
        v
    };
    let garbage: Vec<u8> = vec![0xff; 32]; // an overlong varint
    let cases: [(&str, Vec<u8>); 3] = [
        ("oversized", oversized),
        ("malformed", malformed),
        ("garbage", garbage),
    ];
    for (name, bytes) in cases {
        let client = RawClient::connect(&f.daemon.tcp_addr).await;
        let mut s = client.open(f.daemon.peer_id, Protocol::V120.as_str()).await;
        send_raw(&mut s, &bytes).await;
        assert!(
            closed_by_peer(&mut s).await,
            "{name}: stream not closed by the server"
        );
        assert!(f.daemon.is_running(), "{name}: daemon died");
    }
    assert!(
        f.daemon
            .metric("sidecar_bitswap_rejected_total{reason=\"bad_frame\"}")
            >= 2.0
    );
    assert!(
        f.daemon
            .metric("sidecar_bitswap_rejected_total{reason=\"malformed_message\"}")
            >= 1.0
    );

    // A well-behaved peer is served as before.
    let client = RawClient::connect(&f.daemon.tcp_addr).await;
    let mut replies = client.accept(Protocol::V120.as_str());
    let mut s = client.open(f.daemon.peer_id, Protocol::V120.as_str()).await;
    let b = want_block(&mut s, &mut replies, &f.big.0, "after bad peers").await;
    assert_eq!(b.data.as_ref(), f.big.1.as_slice());
}
