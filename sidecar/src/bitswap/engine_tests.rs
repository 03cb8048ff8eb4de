//! Tests of the engine: fairness, the in-flight rule, answers, bounds, and a
//! wire → engine → wire round trip.

use std::collections::HashMap;

use bytes::Bytes;
use cid::Cid;
use cid::multihash::Multihash;
use libp2p::PeerId;

use super::*;
use crate::bitswap::ledger::Action;
use crate::bitswap::wire::tests::{RAW, cid_v0, cid_v1};
use crate::bitswap::wire::{SHA2_256_CODE, WantEntry, WantKind};
use crate::bitswap::{
    FrameDecoder, Presence, Protocol, ResponseBuilder, decode_request, decode_response,
    encode_request,
};

const MIB: u32 = 1024 * 1024;

fn peer(n: u8) -> PeerId {
    PeerId::from_multihash(Multihash::wrap(0, &[n; 8]).unwrap()).unwrap()
}

fn cid(n: u32) -> Cid {
    cid_v1(RAW, SHA2_256_CODE, n)
}

fn wants(range: std::ops::Range<u32>, kind: WantKind, send_dont_have: bool) -> Request {
    Request {
        wants: range
            .map(|n| WantEntry {
                cid: cid(n),
                priority: 1,
                kind,
                send_dont_have,
            })
            .collect(),
        ..Default::default()
    }
}

fn sent(batch: &Batch) -> Vec<(Cid, Outcome)> {
    batch.tasks.iter().map(|t| (t.cid, Outcome::Sent)).collect()
}

#[test]
fn greedy_peer_does_not_starve_another_even_when_it_finishes_instantly() {
    let (a, b) = (peer(1), peer(2));
    let mut e = Engine::new(EngineConfig::default());
    e.receive(
        a,
        &wants(0..1000, WantKind::Block, false),
        &[Some(MIB); 1000],
    );
    e.receive(b, &wants(5000..5001, WantKind::Block, false), &[Some(100)]);
    assert_eq!(e.wantlist_len(&a), 1000, "cap is 1024");

    let first = e.next_batch().unwrap();
    assert_eq!(first.peer, a, "A arrived first");
    assert_eq!(first.tasks.len(), 1, "one 1 MiB block per 1 MiB quantum");
    // A's write completes at once; B must still come next.
    e.batch_done(&a, first.id, &sent(&first));
    let second = e.next_batch().unwrap();
    assert_eq!(second.peer, b);
    assert_eq!(second.tasks[0].cid, cid(5000));
}

#[test]
fn a_peer_with_a_batch_in_flight_is_not_scheduled_again() {
    let (a, b) = (peer(1), peer(2));
    let mut e = Engine::new(EngineConfig::default());
    e.receive(
        a,
        &wants(0..1000, WantKind::Block, false),
        &[Some(MIB); 1000],
    );
    let first = e.next_batch().unwrap();
    assert_eq!(first.peer, a);
    assert_eq!(e.next_batch(), None, "A is busy, nobody else has work");
    assert!(!e.has_work());
    e.receive(b, &wants(5000..5001, WantKind::Block, false), &[Some(100)]);
    assert_eq!(e.next_batch().unwrap().peer, b);
    e.batch_done(&a, first.id, &sent(&first));
    let again = e.next_batch().unwrap();
    assert_eq!(again.peer, a);
    assert_eq!(again.pending_bytes, 998 * u64::from(MIB));
}

#[test]
fn batches_take_about_a_quantum_of_bytes() {
    let a = peer(1);
    let mut e = Engine::new(EngineConfig {
        peer_quantum_bytes: 100_000,
        ..EngineConfig::default()
    });
    e.receive(
        a,
        &wants(0..100, WantKind::Block, false),
        &[Some(10_000); 100],
    );
    let batch = e.next_batch().unwrap();
    let bytes: u64 = batch.tasks.iter().map(|t| t.cost()).sum();
    assert!(bytes <= 100_000, "{bytes}");
    assert_eq!(batch.tasks.len(), 9, "10 000 + overhead per task");
    assert_eq!(batch.pending_bytes, 91 * 10_000);
    assert_eq!(e.pending_bytes(&a), 91 * 10_000);
}

#[test]
fn tiny_quantum_still_serves_large_blocks_fairly_and_quickly() {
    let (a, b) = (peer(1), peer(2));
    let mut e = Engine::new(EngineConfig {
        peer_quantum_bytes: 1,
        ..EngineConfig::default()
    });
    e.receive(
        a,
        &wants(0..10, WantKind::Block, false),
        &[Some(2 * MIB); 10],
    );
    e.receive(
        b,
        &wants(100..110, WantKind::Block, false),
        &[Some(2 * MIB); 10],
    );
    let mut order = Vec::new();
    for _ in 0..8 {
        let batch = e.next_batch().unwrap();
        assert_eq!(batch.tasks.len(), 1);
        order.push(batch.peer);
        e.batch_done(&batch.peer, batch.id, &sent(&batch));
    }
    assert_eq!(order, vec![a, b, a, b, a, b, a, b]);
}

#[test]
fn small_blocks_share_turns_by_bytes_not_by_count() {
    let (a, b) = (peer(1), peer(2));
    let mut e = Engine::new(EngineConfig {
        peer_quantum_bytes: 10_000,
        ..EngineConfig::default()
    });
    // A: 1000-byte blocks; B: 100-byte blocks. Each turn is ~10 kB.
    e.receive(
        a,
        &wants(0..200, WantKind::Block, false),
        &[Some(1000); 200],
    );
    e.receive(
        b,
        &wants(1000..1200, WantKind::Block, false),
        &[Some(100); 200],
    );
    let ba = e.next_batch().unwrap();
    let bb = e.next_batch().unwrap();
    assert_eq!((ba.peer, bb.peer), (a, b));
    assert!(ba.tasks.len() < bb.tasks.len());
    let bytes = |b: &Batch| b.tasks.iter().map(|t| t.cost()).sum::<u64>();
    assert!(bytes(&ba) <= 10_000 && bytes(&bb) <= 10_000);
    assert!(bytes(&ba) > 9_000 && bytes(&bb) > 9_000);
}

#[test]
fn dont_have_only_when_asked() {
    let a = peer(1);
    let mut e = Engine::new(EngineConfig::default());
    let mut req = wants(0..2, WantKind::Block, false);
    req.wants[1].send_dont_have = true;
    let r = e.receive(a, &req, &[None, None]);
    assert_eq!(r.queued, 1);
    let batch = e.next_batch().unwrap();
    assert_eq!(batch.tasks.len(), 1);
    assert_eq!(batch.tasks[0].cid, cid(1));
    assert_eq!(batch.tasks[0].action, Action::SendDontHave);
    e.batch_done(&a, batch.id, &sent(&batch));
    assert_eq!(e.wantlist_len(&a), 2, "both wants kept for later");
    assert_eq!(e.counters().dont_haves_sent, 1);
}

#[test]
fn want_have_for_a_small_block_gets_the_block() {
    let a = peer(1);
    let mut e = Engine::new(EngineConfig::default());
    e.receive(
        a,
        &wants(0..2, WantKind::Have, false),
        &[Some(1024), Some(1025)],
    );
    let batch = e.next_batch().unwrap();
    let actions: Vec<Action> = batch.tasks.iter().map(|t| t.action).collect();
    assert_eq!(actions, vec![Action::SendBlock, Action::SendHave]);
    e.batch_done(&a, batch.id, &sent(&batch));
    assert_eq!(
        e.wantlist_len(&a),
        0,
        "block and HAVE answered both want-haves"
    );
    let c = e.counters();
    assert_eq!(
        (c.blocks_sent, c.haves_sent, c.block_bytes_sent),
        (1, 1, 1024)
    );
    assert_eq!(c.peers, 0, "a peer with nothing left is forgotten");
}

#[test]
fn quota_refusals_keep_the_wants_and_are_counted() {
    let a = peer(1);
    let mut e = Engine::new(EngineConfig::default());
    let mut req = wants(0..2, WantKind::Block, false);
    req.wants[0].send_dont_have = true;
    e.receive(a, &req, &[Some(10), Some(10)]);
    let batch = e.next_batch().unwrap();
    // The gate refused both; the first peer accepts DONT_HAVE.
    e.batch_done(
        &a,
        batch.id,
        &[(cid(0), Outcome::SentDontHave), (cid(1), Outcome::Dropped)],
    );
    let c = e.counters();
    assert_eq!(
        (c.dont_haves_sent, c.dont_haves_instead, c.tasks_dropped),
        (1, 1, 1)
    );
    assert_eq!(c.blocks_sent, 0);
    assert_eq!(e.wantlist_len(&a), 2);
    assert_eq!(
        e.next_batch(),
        None,
        "refused tasks are not retried by themselves"
    );
}

#[test]
fn disconnect_drops_state_and_late_reports_are_ignored() {
    let a = peer(1);
    let mut e = Engine::new(EngineConfig::default());
    e.receive(a, &wants(0..3, WantKind::Block, false), &[Some(10); 3]);
    let batch = e.next_batch().unwrap();
    e.peer_disconnected(&a);
    assert_eq!(e.counters().peers, 0);
    e.receive(a, &wants(10..11, WantKind::Block, false), &[Some(10)]);
    // The old batch's report must not free the new state's scheduling.
    e.batch_done(&a, batch.id, &sent(&batch));
    assert_eq!(e.counters().blocks_sent, 0);
    let fresh = e.next_batch().unwrap();
    assert_eq!(fresh.tasks[0].cid, cid(10));
    assert_ne!(fresh.id, batch.id);
    assert_eq!(e.next_batch(), None);
}

#[test]
fn cancel_after_queueing_leaves_no_work() {
    let a = peer(1);
    let mut e = Engine::new(EngineConfig::default());
    e.receive(a, &wants(0..1, WantKind::Block, false), &[Some(10)]);
    let cancel = Request {
        cancels: vec![cid(0)],
        ..Default::default()
    };
    e.receive(a, &cancel, &[]);
    assert!(!e.has_work());
    assert_eq!(e.next_batch(), None);
    assert_eq!(e.counters().cancels, 1);
}

#[test]
fn rejects_and_cap_overflow_are_counted() {
    let a = peer(1);
    let mut e = Engine::new(EngineConfig {
        max_wantlist_entries: 10,
        ..EngineConfig::default()
    });
    let mut req = wants(0..15, WantKind::Have, false);
    req.full = true;
    req.rejects.bad_cid = 2;
    req.rejects.identity_hash = 1;
    let r = e.receive(a, &req, &[None; 15]);
    assert_eq!(r.over_cap, 5);
    let c = e.counters();
    assert_eq!(c.messages, 1);
    assert_eq!(c.full_wantlists, 1);
    assert_eq!(c.wants_have, 15);
    assert_eq!(c.ignored_wantlist_full, 5);
    assert_eq!((c.ignored_bad_cid, c.ignored_identity_hash), (2, 1));
    assert_eq!(c.wantlist_entries, 10);
}

#[test]
fn trimming_over_cap_wants_before_lookup_matches_what_receive_would_ignore() {
    let a = peer(1);
    let capped = || {
        Engine::new(EngineConfig {
            max_wantlist_entries: 10,
            ..EngineConfig::default()
        })
    };
    // Six wanted already; the next message repeats two of them, adds eight.
    let first = wants(0..6, WantKind::Have, false);
    let mut second = wants(4..14, WantKind::Block, false);
    second.wants.push(second.wants[9].clone()); // a duplicate past the cap
    second.cancels.push(cid(0)); // applied after the wants: frees nothing

    let mut untrimmed = capped();
    untrimmed.receive(a, &first, &[None; 6]);
    let plain = untrimmed.receive_capped(a, &second, &[Some(1); 11], 8);

    let mut trimmed = capped();
    trimmed.receive(a, &first, &[None; 6]);
    let mut cut = second.clone();
    assert_eq!(trimmed.trim_over_cap(&a, &mut cut, 8), plain.over_cap);
    assert_eq!(
        plain.over_cap, 7,
        "cap 8: room for 2 new CIDs; 6 more and the duplicate left out"
    );
    let kept: Vec<Cid> = cut.wants.iter().map(|w| w.cid).collect();
    assert_eq!(kept, [cid(4), cid(5), cid(6), cid(7)]);
    let rest = trimmed.receive_capped(a, &cut, &[Some(1); 4], 8);
    assert_eq!(rest.over_cap, 0);
    assert_eq!(rest.queued, plain.queued);
    assert_eq!(trimmed.wantlist_len(&a), untrimmed.wantlist_len(&a));
    assert_eq!(trimmed.counters(), untrimmed.counters());

    // A full wantlist replaces the old one: room is the whole cap.
    let mut full = wants(100..120, WantKind::Have, false);
    full.full = true;
    assert_eq!(trimmed.trim_over_cap(&a, &mut full, 8), 12);
    assert_eq!(full.wants.len(), 8);
    // A peer the engine has never seen gets the cap too.
    let mut fresh = wants(0..3, WantKind::Have, false);
    assert_eq!(trimmed.trim_over_cap(&peer(9), &mut fresh, 2), 1);
}

#[test]
fn blocks_that_appear_later_are_served() {
    let (a, b) = (peer(1), peer(2));
    let mut e = Engine::new(EngineConfig::default());
    e.receive(a, &wants(0..2, WantKind::Block, false), &[None, None]);
    e.receive(b, &wants(1..2, WantKind::Have, false), &[None]);
    assert_eq!(e.next_batch(), None);
    let sizes: HashMap<_, _> = [(*cid(1).hash(), 5000u32)].into_iter().collect();
    assert_eq!(e.blocks_available(&sizes), 2);
    let mut got = Vec::new();
    while let Some(batch) = e.next_batch() {
        got.extend(batch.tasks.iter().map(|t| (batch.peer, t.cid, t.action)));
    }
    got.sort_by_key(|(p, ..)| *p == b);
    assert_eq!(
        got,
        vec![
            (a, cid(1), Action::SendBlock),
            (b, cid(1), Action::SendHave)
        ]
    );
}

#[test]
fn from_bitswap_config_copies_the_fields() {
    let cfg = crate::config::Config::default().bitswap;
    let e = EngineConfig::from(&cfg);
    assert_eq!(e.max_wantlist_entries, cfg.max_wantlist_entries);
    assert_eq!(e.max_have_block_size, cfg.max_have_block_size);
    assert_eq!(e.max_block_size, cfg.max_block_size);
    assert_eq!(e.peer_quantum_bytes, cfg.peer_quantum_bytes);
    assert_eq!(
        e,
        EngineConfig::default(),
        "defaults agree with default.toml"
    );
}

/// A 1.2.0 client asks; the engine plans; the builder answers; the client
/// reads HAVE, DONT_HAVE and the block with a prefix that rebuilds its CID.
#[test]
fn wire_to_engine_to_wire() {
    let a = peer(1);
    let held_v0 = cid_v0(1);
    let held_big = cid(2);
    let missing = cid(3);
    let req = Request {
        wants: vec![
            WantEntry {
                cid: held_v0,
                priority: 3,
                kind: WantKind::Block,
                send_dont_have: true,
            },
            WantEntry {
                cid: held_big,
                priority: 2,
                kind: WantKind::Have,
                send_dont_have: true,
            },
            WantEntry {
                cid: missing,
                priority: 1,
                kind: WantKind::Have,
                send_dont_have: true,
            },
        ],
        ..Default::default()
    };
    let framed = encode_request(&req);
    let mut dec = FrameDecoder::new();
    let mut input = &framed[..];
    let body = dec.decode(&mut input).unwrap().unwrap();
    let decoded = decode_request(&body, 256).unwrap();

    let mut e = Engine::new(EngineConfig::default());
    e.receive(a, &decoded, &[Some(3), Some(50_000), None]);
    let batch = e.next_batch().unwrap();
    let mut builder = ResponseBuilder::new(Protocol::V120);
    let mut outcomes = Vec::new();
    for t in &batch.tasks {
        let ok = match t.action {
            Action::SendBlock => builder
                .add_block(&t.cid, Bytes::from_static(b"abc"))
                .unwrap(),
            Action::SendHave => builder.add_presence(&t.cid, Presence::Have),
            Action::SendDontHave => builder.add_presence(&t.cid, Presence::DontHave),
        };
        outcomes.push((t.cid, if ok { Outcome::Sent } else { Outcome::Dropped }));
    }
    builder.set_pending_bytes(batch.pending_bytes);
    let frames = builder.finish();
    assert_eq!(frames.len(), 1);
    e.batch_done(&a, batch.id, &outcomes);

    let mut dec = FrameDecoder::new();
    let mut input = &frames[0][..];
    let resp = decode_response(dec.decode(&mut input).unwrap().unwrap()).unwrap();
    assert!(resp.has_wantlist);
    assert_eq!(resp.blocks.len(), 1);
    let prefix = resp.blocks[0].prefix.unwrap();
    assert_eq!(prefix.to_cid(held_v0.hash().digest()).unwrap(), held_v0);
    assert_eq!(
        resp.presences,
        vec![(held_big, Presence::Have), (missing, Presence::DontHave)]
    );
    assert_eq!(e.wantlist_len(&a), 1, "only the DONT_HAVE'd want remains");
}
