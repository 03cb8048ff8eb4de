//! Tests of one peer's ledger: ordering, caps, full lists, cancels, answers.

use super::*;
use crate::bitswap::wire::SHA2_256_CODE;
use crate::bitswap::wire::WantEntry;
use crate::bitswap::wire::tests::{RAW, cid_v1};

fn config() -> LedgerConfig {
    LedgerConfig {
        max_wantlist_entries: 4,
        max_have_block_size: 1024,
        max_block_size: 2 * 1024 * 1024,
    }
}

fn cid(n: u32) -> Cid {
    cid_v1(RAW, SHA2_256_CODE, n)
}

fn want(n: u32, priority: i32, kind: WantKind, send_dont_have: bool) -> WantEntry {
    WantEntry {
        cid: cid(n),
        priority,
        kind,
        send_dont_have,
    }
}

fn req(wants: Vec<WantEntry>) -> Request {
    Request {
        wants,
        ..Default::default()
    }
}

fn drain(l: &mut Ledger) -> Vec<Task> {
    std::iter::from_fn(|| l.pop_task()).collect()
}

#[test]
fn tasks_come_out_by_priority_then_arrival() {
    let mut l = Ledger::new(config());
    let r = req(vec![
        want(1, 1, WantKind::Block, false),
        want(2, 5, WantKind::Block, false),
        want(3, 1, WantKind::Block, false),
        want(4, 5, WantKind::Block, false),
    ]);
    l.receive(&r, &[Some(10); 4]);
    let order: Vec<Cid> = drain(&mut l).into_iter().map(|t| t.cid).collect();
    assert_eq!(order, vec![cid(2), cid(4), cid(1), cid(3)]);
}

#[test]
fn wantlist_cap_ignores_new_cids_but_applies_updates() {
    let mut l = Ledger::new(config());
    let wants: Vec<WantEntry> = (0..6).map(|n| want(n, 1, WantKind::Block, false)).collect();
    let stats = l.receive(&req(wants), &[Some(10); 6]);
    assert_eq!(l.wantlist_len(), 4);
    assert_eq!(stats.over_cap, 2);
    assert_eq!(stats.queued, 4);
    assert!(l.want(&cid(4)).is_none());
    // An update of a wanted CID at the cap still applies.
    let stats = l.receive(&req(vec![want(0, 9, WantKind::Block, false)]), &[Some(10)]);
    assert_eq!(stats.over_cap, 0);
    assert_eq!(l.want(&cid(0)).unwrap().priority, 9);
    assert_eq!(l.peek_task().unwrap().cid, cid(0));
}

#[test]
fn full_wantlist_replaces_and_cancels_the_rest() {
    let mut l = Ledger::new(config());
    let wants: Vec<WantEntry> = (0..3).map(|n| want(n, 1, WantKind::Block, false)).collect();
    l.receive(&req(wants), &[Some(10); 3]);
    let full = Request {
        full: true,
        wants: vec![
            want(2, 1, WantKind::Block, false),
            want(7, 1, WantKind::Block, false),
        ],
        ..Default::default()
    };
    let stats = l.receive(&full, &[Some(10), None]);
    assert_eq!(stats.dropped_by_full, 2);
    assert_eq!(l.wantlist_len(), 2);
    assert!(l.want(&cid(0)).is_none() && l.want(&cid(1)).is_none());
    let queued: Vec<Cid> = drain(&mut l).into_iter().map(|t| t.cid).collect();
    assert_eq!(queued, vec![cid(2)], "7 is not held and wants no DONT_HAVE");
    assert!(l.want(&cid(7)).is_some(), "kept for later");
}

#[test]
fn cancel_removes_want_and_queued_task() {
    let mut l = Ledger::new(config());
    l.receive(&req(vec![want(1, 1, WantKind::Block, false)]), &[Some(10)]);
    assert_eq!(l.pending_bytes(), 10);
    let cancel = Request {
        cancels: vec![cid(1), cid(99)],
        ..Default::default()
    };
    let stats = l.receive(&cancel, &[]);
    assert_eq!(stats.cancels, 2);
    assert_eq!(l.wantlist_len(), 0);
    assert_eq!(l.queued_len(), 0);
    assert_eq!(l.pending_bytes(), 0);
    assert!(l.is_empty());
}

#[test]
fn want_block_supersedes_want_have() {
    let mut l = Ledger::new(config());
    l.receive(&req(vec![want(1, 1, WantKind::Have, false)]), &[Some(5000)]);
    assert_eq!(l.peek_task().unwrap().action, Action::SendHave);
    l.receive(
        &req(vec![want(1, 2, WantKind::Block, false)]),
        &[Some(5000)],
    );
    assert_eq!(l.queued_len(), 1, "deduplicated by CID");
    assert_eq!(l.peek_task().unwrap().action, Action::SendBlock);
    // A later want-have does not downgrade it.
    l.receive(&req(vec![want(1, 3, WantKind::Have, false)]), &[Some(5000)]);
    let t = l.peek_task().unwrap();
    assert_eq!((t.action, t.priority), (Action::SendBlock, 3));
    assert_eq!(l.want(&cid(1)).unwrap().kind, WantKind::Block);
}

#[test]
fn answers_follow_size_kind_and_send_dont_have() {
    let mut l = Ledger::new(LedgerConfig {
        max_wantlist_entries: 100,
        ..config()
    });
    let r = req(vec![
        want(1, 9, WantKind::Block, false), // held -> block
        want(2, 8, WantKind::Have, false),  // small -> block
        want(3, 7, WantKind::Have, false),  // big -> HAVE
        want(4, 6, WantKind::Have, true),   // not held + sdh -> DONT_HAVE
        want(5, 5, WantKind::Block, false), // not held, no sdh -> nothing
        want(6, 4, WantKind::Block, true),  // too large to serve -> DONT_HAVE
    ]);
    l.receive(
        &r,
        &[Some(100), Some(1024), Some(1025), None, None, Some(3 << 20)],
    );
    let got: Vec<(Cid, Action)> = drain(&mut l)
        .into_iter()
        .map(|t| (t.cid, t.action))
        .collect();
    assert_eq!(
        got,
        vec![
            (cid(1), Action::SendBlock),
            (cid(2), Action::SendBlock),
            (cid(3), Action::SendHave),
            (cid(4), Action::SendDontHave),
            (cid(6), Action::SendDontHave),
        ]
    );
    assert_eq!(l.wantlist_len(), 6);
}

#[test]
fn sent_block_and_have_remove_the_want_dont_have_keeps_it() {
    let mut l = Ledger::new(config());
    let r = req(vec![
        want(1, 4, WantKind::Block, false),
        want(2, 3, WantKind::Have, false),
        want(3, 2, WantKind::Have, true),
        want(4, 1, WantKind::Block, true),
    ]);
    l.receive(&r, &[Some(10), Some(5000), None, Some(10)]);
    let tasks = drain(&mut l);
    assert_eq!(tasks.len(), 4);
    assert_eq!(l.in_flight_len(), 4);
    let stats = l.end_flight(&[
        (cid(1), Outcome::Sent),
        (cid(2), Outcome::Sent),
        (cid(3), Outcome::Sent),
        (cid(4), Outcome::SentDontHave),
    ]);
    assert_eq!(stats.blocks_sent, 1);
    assert_eq!(stats.block_bytes_sent, 10);
    assert_eq!(stats.haves_sent, 1);
    assert_eq!(stats.dont_haves_sent, 2);
    assert_eq!(stats.dont_haves_instead, 1);
    assert!(l.want(&cid(1)).is_none());
    assert!(l.want(&cid(2)).is_none());
    assert!(l.want(&cid(3)).is_some());
    assert!(l.want(&cid(4)).is_some());
    assert_eq!(l.in_flight_len(), 0);
}

#[test]
fn have_sent_keeps_an_upgraded_want_block() {
    let mut l = Ledger::new(config());
    l.receive(&req(vec![want(1, 1, WantKind::Have, false)]), &[Some(5000)]);
    let t = l.pop_task().unwrap();
    assert_eq!(t.action, Action::SendHave);
    // While the HAVE is in flight, the peer asks for the block.
    let stats = l.receive(
        &req(vec![want(1, 1, WantKind::Block, false)]),
        &[Some(5000)],
    );
    assert_eq!(stats.queued, 1, "an upgrade over the in-flight HAVE");
    l.end_flight(&[(cid(1), Outcome::Sent)]);
    assert_eq!(l.want(&cid(1)).unwrap().kind, WantKind::Block);
    assert_eq!(l.peek_task().unwrap().action, Action::SendBlock);
}

#[test]
fn rewant_of_an_in_flight_block_is_not_queued_twice() {
    let mut l = Ledger::new(config());
    l.receive(&req(vec![want(1, 1, WantKind::Block, false)]), &[Some(10)]);
    l.pop_task().unwrap();
    let stats = l.receive(&req(vec![want(1, 1, WantKind::Block, false)]), &[Some(10)]);
    assert_eq!(stats.queued, 0);
    assert_eq!(l.queued_len(), 0);
}

#[test]
fn unreported_and_dropped_tasks_keep_their_wants() {
    let mut l = Ledger::new(config());
    l.receive(
        &req(vec![
            want(1, 1, WantKind::Block, false),
            want(2, 1, WantKind::Block, false),
        ]),
        &[Some(10), Some(10)],
    );
    drain(&mut l);
    let stats = l.end_flight(&[(cid(1), Outcome::Dropped)]);
    assert_eq!(stats.dropped, 2);
    assert_eq!(l.wantlist_len(), 2);
    assert_eq!(l.queued_len(), 0, "not retried until asked again");
}

#[test]
fn block_available_queues_kept_wants() {
    let mut l = Ledger::new(config());
    l.receive(
        &req(vec![
            want(1, 1, WantKind::Block, false),
            want(2, 1, WantKind::Have, false),
        ]),
        &[None, None],
    );
    assert_eq!(l.queued_len(), 0);
    let sizes: HashMap<Mh, u32> = [
        (*cid(1).hash(), 10),
        (*cid(2).hash(), 5000),
        (*cid(9).hash(), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(l.block_available(&sizes), 2);
    let got: Vec<(Cid, Action)> = drain(&mut l)
        .into_iter()
        .map(|t| (t.cid, t.action))
        .collect();
    assert_eq!(
        got,
        vec![(cid(1), Action::SendBlock), (cid(2), Action::SendHave)]
    );
}

#[test]
fn pending_bytes_counts_only_queued_blocks() {
    let mut l = Ledger::new(config());
    l.receive(
        &req(vec![
            want(1, 3, WantKind::Block, false),
            want(2, 2, WantKind::Have, false),
            want(3, 1, WantKind::Block, false),
        ]),
        &[Some(100), Some(5000), Some(300)],
    );
    assert_eq!(l.pending_bytes(), 400);
    l.pop_task();
    assert_eq!(l.pending_bytes(), 300);
}

/// Backs the bound in `Ledger::MAX_BYTES_PER_ENTRY`: per entry, one want map
/// slot, one task-queue key and map slot, one in-flight slot, each allowed
/// twice its size for hash-map and B-tree slack.
#[test]
fn per_entry_memory_stays_under_the_documented_bound() {
    use std::mem::size_of;
    let want_slot = size_of::<(Cid, Want)>() + 1;
    let order_slot = size_of::<((std::cmp::Reverse<i32>, u64), Cid)>();
    let task_slot = size_of::<(Cid, ((std::cmp::Reverse<i32>, u64), Task))>() + 1;
    let flight_slot = size_of::<(Cid, (Action, Option<u32>))>() + 1;
    let worst = 2 * (want_slot + order_slot + task_slot + flight_slot);
    assert!(
        worst <= Ledger::MAX_BYTES_PER_ENTRY,
        "{worst} > {}",
        Ledger::MAX_BYTES_PER_ENTRY
    );
}
