//! The real daemon under quota policies, driven by raw libp2p clients: many
//! peer IDs from one address share their prefix's budget, and abusive peers
//! (huge wantlists, thousands of streams, want floods for absent CIDs) are
//! capped with bounded memory while an honest peer keeps being served.

mod common;

use std::{path::Path, time::Duration};

use bytes::Bytes;
use cid::Cid;
use common::*;
use futures::{AsyncReadExt, AsyncWriteExt};
use sidecar::{
    bitswap::{Presence, Protocol, Request, WantEntry, WantKind, encode_request},
    car::cid_v1_sha256,
    quota::policy::DEFAULT_POLICY,
};

const RAW: u64 = 0x55;
const BLOCK: usize = 10_000;

/// The built-in policy with every limit of the default tier and the prefix
/// lifted, then `edit` applied.
fn write_policy(data_dir: &Path, edit: impl FnOnce(&mut toml::Table)) {
    let mut t: toml::Table = DEFAULT_POLICY.parse().unwrap();
    let open = |section: &mut toml::Table| {
        for key in [
            "blocks_per_second",
            "blocks_burst",
            "bytes_per_second",
            "bytes_burst",
            "blocks_per_day",
            "bytes_per_day",
        ] {
            section.insert(key.into(), toml::Value::Integer(0));
        }
    };
    open(t["tiers"]["default"].as_table_mut().unwrap());
    open(t["prefix"].as_table_mut().unwrap());
    edit(&mut t);
    std::fs::create_dir_all(data_dir).unwrap();
    std::fs::write(data_dir.join("quotas.toml"), toml::to_string(&t).unwrap()).unwrap();
}

fn set(t: &mut toml::Table, path: &[&str], value: impl Into<toml::Value>) {
    let (last, parents) = path.split_last().unwrap();
    let mut at = t;
    for p in parents {
        at = at[*p].as_table_mut().unwrap();
    }
    at.insert((*last).into(), value.into());
}

struct Served {
    _dir: tempfile::TempDir,
    daemon: Daemon,
    blocks: Vec<(Cid, Vec<u8>)>,
}

/// A daemon serving `n` blocks of [`BLOCK`] bytes under a policy `edit`ed
/// from the open one.
fn serve(n: u32, edit: impl FnOnce(&mut toml::Table)) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let blocks: Vec<(Cid, Vec<u8>)> = (0..n)
        .map(|i| {
            let bytes: Vec<u8> = (0..BLOCK).map(|j| (i as usize * 7 + j) as u8).collect();
            (cid_v1_sha256(RAW, &bytes), bytes)
        })
        .collect();
    let car = write_car(dir.path(), "f.car", &blocks);
    let out = sidecar_cmd(&data, &["car", "import", car.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    write_policy(&data, edit);
    let daemon = Daemon::start(&data, &[]);
    Served {
        _dir: dir,
        daemon,
        blocks,
    }
}

fn want(cid: &Cid, kind: WantKind) -> WantEntry {
    WantEntry {
        cid: *cid,
        priority: 1,
        kind,
        send_dont_have: true,
    }
}

fn request(wants: Vec<WantEntry>) -> Bytes {
    encode_request(&Request {
        full: false,
        wants,
        ..Default::default()
    })
}

fn absent(n: u32) -> Cid {
    cid_v1_sha256(RAW, format!("absent {n}").as_bytes())
}

/// What a fresh peer gets for one want-block: `Some(true)` the block,
/// `Some(false)` DONT_HAVE, `None` nothing in time.
async fn ask_once(d: &Daemon, cid: &Cid) -> Option<bool> {
    let client = RawClient::connect(&d.tcp_addr).await;
    let mut replies = client.accept(Protocol::V120.as_str());
    let mut s = client.open(d.peer_id, Protocol::V120.as_str()).await;
    send_raw(&mut s, &request(vec![want(cid, WantKind::Block)])).await;
    let got = replies
        .collect(WAIT, |rs| {
            rs.iter()
                .any(|r| !r.blocks.is_empty() || !r.presences.is_empty())
        })
        .await;
    got.iter().find_map(|r| {
        if !r.blocks.is_empty() {
            Some(true)
        } else if r
            .presences
            .iter()
            .any(|(c, p)| c == cid && *p == Presence::DontHave)
        {
            Some(false)
        } else {
            None
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_peer_ids_from_one_address_share_the_prefix_budget() {
    // Ten blocks a day for all of 127.0.0.0/24 together.
    let f = serve(50, |t| {
        set(t, &["prefix", "bytes_per_day"], (10 * BLOCK) as i64);
    });
    let mut served = 0;
    let mut refused = 0;
    for (i, (cid, _)) in f.blocks.iter().enumerate() {
        match ask_once(&f.daemon, cid).await {
            Some(true) => served += 1,
            Some(false) => refused += 1,
            None => panic!("peer {i} got no answer"),
        }
    }
    assert_eq!(served, 10, "fifty fresh peer IDs got {served} blocks");
    assert_eq!(refused, 40);
    assert!(
        f.daemon.metric(
            "sidecar_quota_throttled_wants_total{tier=\"default\",action=\"donthave\",reason=\"prefix_day_bytes\"}"
        ) >= 40.0
    );
}

fn rss_kib(d: &Daemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abusive_peers_are_capped_and_honest_peers_still_served() {
    // 500 answers a second per peer, burst 500.
    let mut f = serve(4, |t| {
        set(t, &["tiers", "default", "blocks_per_second"], 500);
        set(t, &["tiers", "default", "blocks_burst"], 500);
    });
    let d = &f.daemon;
    let rss_before = rss_kib(d);

    // 1. A 100,000-entry wantlist (four messages under the 4 MiB limit):
    //    1024 entries are kept, the rest ignored.
    let hoarder = RawClient::connect(&d.tcp_addr).await;
    let _hoarder_replies = hoarder.accept(Protocol::V120.as_str());
    let mut s = hoarder.open(d.peer_id, Protocol::V120.as_str()).await;
    for chunk in 0..4u32 {
        let wants = (0..25_000)
            .map(|i| WantEntry {
                send_dont_have: false,
                ..want(&absent(chunk * 25_000 + i), WantKind::Have)
            })
            .collect();
        send_raw(&mut s, &request(wants)).await;
    }
    let full = "sidecar_bitswap_rejected_total{reason=\"wantlist_full\"}";
    wait_until(|| d.metric(full) >= (100_000 - 1024) as f64).await;
    assert_eq!(d.metric(full), (100_000 - 1024) as f64);
    // The refused entries were never looked up, and each paid 20 µs of
    // silence on the hoarder's streams: ≈ 0.5 s after each of the first
    // three messages (the fourth one's pause is due before its next read).
    let paused = d.metric("sidecar_bitswap_ingest_paused_ms_total");
    assert!(paused >= 1000.0, "streams paused for only {paused} ms");

    // 2. A thousand streams from one peer: past the cap they are reset.
    let streamer = RawClient::connect(&d.tcp_addr).await;
    let mut open = Vec::new();
    for _ in 0..1000 {
        match tokio::time::timeout(
            Duration::from_secs(5),
            streamer.control.clone().open_stream(
                d.peer_id,
                libp2p::StreamProtocol::new(Protocol::V120.as_str()),
            ),
        )
        .await
        {
            Ok(Ok(st)) => open.push(st),
            _ => break,
        }
    }
    let streams = "sidecar_bitswap_rejected_total{reason=\"too_many_streams\"}";
    assert!(
        open.len() > 32,
        "only {} streams could be opened",
        open.len()
    );
    wait_until(|| d.metric(streams) > 0.0).await;
    // Every stream past the cap is reset (by the server's cap, or earlier by
    // the stream layer's accept backlog); at most 32 stay open.
    let still_open = futures::future::join_all(open.iter_mut().map(|st| async move {
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), st.read(&mut buf)).await;
        read.is_err()
    }))
    .await
    .into_iter()
    .filter(|open| *open)
    .count();
    eprintln!(
        "{} streams opened, {} reset by the quota cap, {still_open} still open",
        open.len(),
        d.metric(streams)
    );
    assert!(still_open <= 32, "{still_open} streams stayed open");

    // 3. A flood of want-blocks for absent CIDs, with sendDontHave: every
    //    answer is charged, so past the burst the flood is throttled.
    let flooder = RawClient::connect(&d.tcp_addr).await;
    let _flood_replies = flooder.accept(Protocol::V120.as_str());
    let mut s = flooder.open(d.peer_id, Protocol::V120.as_str()).await;
    for round in 0..20u32 {
        let wants = (0..1000)
            .map(|i| want(&absent(1_000_000 + round * 1000 + i), WantKind::Block))
            .collect();
        send_raw(&mut s, &request(wants)).await;
    }
    let throttled = "sidecar_quota_throttled_wants_total{tier=\"default\",action=\"donthave\",reason=\"rate_blocks\"}";
    wait_until(|| d.metric(throttled) > 0.0).await;
    eprintln!(
        "flood: {} wants throttled, {} DONT_HAVEs sent",
        d.metric(throttled),
        d.metric("sidecar_bitswap_dont_haves_sent_total")
    );

    // 4. Meanwhile an honest peer is served, and memory stayed bounded.
    assert_eq!(ask_once(d, &f.blocks[0].0).await, Some(true));
    let rss_after = rss_kib(d);
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert!(f.daemon.is_running());
    drop(open);
}

async fn wait_until(cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_read_gets_no_more_queued() {
    // 1000 blocks of 10 kB; at most 64 KiB queued for a peer that stalls.
    let f = serve(1000, |t| {
        set(t, &["tiers", "default", "max_inflight_bytes"], 64 * 1024);
    });
    let d = &f.daemon;
    let slow = RawClient::connect(&d.tcp_addr).await;
    // Accept the server's reply stream but never read it.
    let mut incoming = slow
        .control
        .clone()
        .accept(libp2p::StreamProtocol::new(Protocol::V120.as_str()))
        .unwrap();
    let mut s = slow.open(d.peer_id, Protocol::V120.as_str()).await;
    for chunk in f.blocks.chunks(10) {
        let wants = chunk
            .iter()
            .map(|(c, _)| want(c, WantKind::Block))
            .collect();
        send_raw(&mut s, &request(wants)).await;
    }
    let held = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut incoming))
        .await
        .expect("the server opened its reply stream");
    let refused = "sidecar_quota_throttled_wants_total{tier=\"default\",action=\"donthave\",reason=\"inflight_bytes\"}";
    wait_until(|| d.metric(refused) > 0.0).await;
    // Of the 10 MB asked for, no more than the stream window (256 KiB) and
    // the writer queue (4 frames of at most one 1 MiB scheduling quantum
    // each, plus the batch in hand) left the server: the rest was refused.
    let sent = d.metric("sidecar_bitswap_block_bytes_sent_total");
    eprintln!("{sent} bytes queued for a peer that reads nothing");
    assert!(
        sent < 7_000_000.0,
        "{sent} bytes queued for a peer that reads nothing"
    );
    // Others are served meanwhile.
    assert_eq!(ask_once(d, &f.blocks[999].0).await, Some(true));
    drop(held);
}

/// Whether a peer that connected can still get a block: `false` when the
/// server refused or closed its connection.
async fn served_on(client: &RawClient, replies: &mut Replies, d: &Daemon, cid: &Cid) -> bool {
    let opened = tokio::time::timeout(
        WAIT,
        client.control.clone().open_stream(
            d.peer_id,
            libp2p::StreamProtocol::new(Protocol::V120.as_str()),
        ),
    )
    .await;
    let Ok(Ok(mut s)) = opened else { return false };
    if s.write_all(&request(vec![want(cid, WantKind::Block)]))
        .await
        .is_err()
    {
        return false;
    }
    let got = replies
        .collect(Duration::from_secs(3), |rs| {
            rs.iter().any(|r| !r.blocks.is_empty())
        })
        .await;
    got.iter().any(|r| !r.blocks.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_and_disconnected_peers_are_refused_at_connection() {
    let denied = libp2p::identity::Keypair::generate_ed25519();
    let abuser = libp2p::identity::Keypair::generate_ed25519();
    let denied_id = denied.public().to_peer_id().to_string();
    // Two blocks a day, then disconnect and ten minutes of refusal.
    let f = serve(4, |t| {
        t.insert("deny".into(), toml::Value::Array(vec![denied_id.into()]));
        set(t, &["tiers", "default", "blocks_per_day"], 2);
        set(t, &["tiers", "default", "policy"], "disconnect");
    });
    let d = &f.daemon;

    let client = RawClient::connect_as(denied, &d.tcp_addr).await;
    let mut replies = client.accept(Protocol::V120.as_str());
    assert!(
        !served_on(&client, &mut replies, d, &f.blocks[0].0).await,
        "a denied peer was served"
    );

    let client = RawClient::connect_as(abuser.clone(), &d.tcp_addr).await;
    let mut replies = client.accept(Protocol::V120.as_str());
    assert!(served_on(&client, &mut replies, d, &f.blocks[0].0).await);
    assert!(served_on(&client, &mut replies, d, &f.blocks[1].0).await);
    // The third block is over budget: the connection is closed...
    assert!(!served_on(&client, &mut replies, d, &f.blocks[2].0).await);
    wait_until(|| {
        d.metric("sidecar_quota_throttled_wants_total{tier=\"default\",action=\"disconnect\",reason=\"day_blocks\"}") >= 1.0
    })
    .await;
    // ...and a new one from the same peer is refused during the cool-down.
    let again = RawClient::connect_as(abuser, &d.tcp_addr).await;
    let mut replies = again.accept(Protocol::V120.as_str());
    assert!(
        !served_on(&again, &mut replies, d, &f.blocks[3].0).await,
        "served during the cool-down"
    );
    // Another peer is not affected.
    assert_eq!(ask_once(d, &f.blocks[3].0).await, Some(true));
}
