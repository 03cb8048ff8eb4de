use std::{collections::HashMap, net::Ipv4Addr, time::Duration};

use super::*;
use crate::quota::budget::{HOUR_MS, ManualClock};

const T0: u64 = 1_800_000_000_000;
const KIB: u32 = 1024;

/// A policy whose default tier has only the limits a test sets.
fn open_policy() -> Policy {
    let mut p = Policy::default();
    for t in &mut p.tiers {
        t.blocks = Rate::UNLIMITED;
        t.bytes = Rate::UNLIMITED;
        t.blocks_per_day = 0;
        t.bytes_per_day = 0;
        t.escalate_after = None;
        t.action = Action::DontHave;
    }
    p.prefix.blocks = Rate::UNLIMITED;
    p.prefix.bytes = Rate::UNLIMITED;
    p.prefix.blocks_per_day = 0;
    p.prefix.bytes_per_day = 0;
    p
}

fn default_tier(p: &mut Policy) -> &mut Tier {
    let i = p.default_tier;
    &mut p.tiers[i]
}

struct Rig {
    clock: Arc<ManualClock>,
    quotas: Quotas,
    disconnects: mpsc::UnboundedReceiver<PeerId>,
}

fn rig_with(policy: Policy, source: Arc<dyn CounterSource>) -> Rig {
    let clock = Arc::new(ManualClock::new(T0));
    let (tx, rx) = mpsc::unbounded_channel();
    let quotas =
        Quotas::new(policy, clock.clone(), source, Arc::new(Metrics::new())).with_disconnects(tx);
    Rig {
        clock,
        quotas,
        disconnects: rx,
    }
}

fn rig(policy: Policy) -> Rig {
    rig_with(policy, Arc::new(NoCounters))
}

fn ip(last: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
}

/// Blocks of `size` served to `peer` until the first refusal.
fn serve_until_refused(q: &Quotas, peer: &PeerId, size: u32, max: usize) -> (usize, Admission) {
    for served in 0..max {
        match q.admit(peer, Response::Block, size) {
            Admission::Serve => {}
            other => return (served, other),
        }
    }
    (max, Admission::Serve)
}

#[test]
fn a_daily_byte_budget_serves_exactly_what_fits_then_donthave() {
    let mut p = open_policy();
    default_tier(&mut p).bytes_per_day = 10 * u64::from(KIB) + 5;
    let r = rig(p);
    let peer = PeerId::random();
    r.quotas.peer_connected(peer, ip(1));
    let (served, then) = serve_until_refused(&r.quotas, &peer, KIB, 100);
    assert_eq!(served, 10);
    assert_eq!(then, Admission::DontHave);
    // HAVE and DONT_HAVE cost no bytes: still answered.
    assert_eq!(r.quotas.admit(&peer, Response::Have, KIB), Admission::Serve);
    // The budget is a rolling day: 24 h later it is back.
    r.clock.advance_ms(24 * HOUR_MS);
    assert_eq!(serve_until_refused(&r.quotas, &peer, KIB, 100).0, 10);
}

#[test]
fn allowlisted_peers_are_never_counted() {
    let mut p = open_policy();
    default_tier(&mut p).bytes_per_day = 1;
    let vip = PeerId::random();
    p.allow.push(vip);
    let r = rig(p);
    r.quotas.peer_connected(vip, ip(1));
    assert_eq!(serve_until_refused(&r.quotas, &vip, KIB, 1000).0, 1000);
    assert!(r.quotas.report(10).iter().all(|row| row.day_bytes == 0));
}

#[test]
fn fifty_peer_ids_from_one_prefix_share_its_budget() {
    let mut p = open_policy();
    p.prefix.bytes_per_day = 100 * u64::from(KIB);
    let r = rig(p);
    let mut total = 0;
    for i in 0..50u8 {
        let peer = PeerId::random();
        // Different hosts of the same /24.
        r.quotas.peer_connected(peer, ip(i));
        total += serve_until_refused(&r.quotas, &peer, KIB, 1000).0;
    }
    assert_eq!(total, 100);
    // Another /24 has its own budget.
    let other = PeerId::random();
    r.quotas
        .peer_connected(other, Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))));
    assert_eq!(serve_until_refused(&r.quotas, &other, KIB, 1000).0, 100);
}

#[test]
fn rate_limits_refill_over_time() {
    let mut p = open_policy();
    default_tier(&mut p).blocks = Rate {
        per_second: 100,
        burst: 10,
    };
    let r = rig(p);
    let peer = PeerId::random();
    r.quotas.peer_connected(peer, ip(1));
    assert_eq!(serve_until_refused(&r.quotas, &peer, 1, 1000).0, 10);
    r.clock.advance_ms(50); // 5 blocks at 100/s
    assert_eq!(serve_until_refused(&r.quotas, &peer, 1, 1000).0, 5);
    // Throttled wants are not charged: after 100 ms, 10 again.
    r.clock.advance_ms(100);
    assert_eq!(serve_until_refused(&r.quotas, &peer, 1, 1000).0, 10);
}

#[test]
fn the_drop_policy_sends_nothing() {
    let mut p = open_policy();
    let t = default_tier(&mut p);
    t.blocks_per_day = 1;
    t.action = Action::Drop;
    let r = rig(p);
    let peer = PeerId::random();
    assert_eq!(
        serve_until_refused(&r.quotas, &peer, 1, 10),
        (1, Admission::Drop)
    );
}

#[test]
fn sustained_abuse_escalates_to_disconnect_and_a_cooldown() {
    let mut p = open_policy();
    let t = default_tier(&mut p);
    t.blocks_per_day = 1;
    t.escalate_after = Some(Duration::from_secs(60));
    t.cooldown = Duration::from_secs(600);
    let mut r = rig(p);
    let peer = PeerId::random();
    r.quotas.peer_connected(peer, ip(1));
    assert_eq!(r.quotas.admit(&peer, Response::Block, 1), Admission::Serve);
    // Asking again every 5 s for 55 s: DONT_HAVE, no disconnect yet.
    for _ in 0..12 {
        assert_eq!(
            r.quotas.admit(&peer, Response::Block, 1),
            Admission::DontHave
        );
        r.clock.advance_ms(5_000);
    }
    assert!(r.disconnects.try_recv().is_err());
    // 60 s into the episode: disconnect.
    assert_eq!(r.quotas.admit(&peer, Response::Block, 1), Admission::Drop);
    assert_eq!(r.disconnects.try_recv().unwrap(), peer);
    assert!(r.quotas.is_refused(&peer));
    r.clock.advance_ms(599_000);
    assert!(r.quotas.is_refused(&peer));
    r.clock.advance_ms(1_000);
    assert!(!r.quotas.is_refused(&peer));
}

#[test]
fn a_pause_longer_than_the_episode_gap_starts_over() {
    let mut p = open_policy();
    let t = default_tier(&mut p);
    t.blocks_per_day = 1;
    t.escalate_after = Some(Duration::from_secs(30));
    let mut r = rig(p);
    let peer = PeerId::random();
    r.quotas.admit(&peer, Response::Block, 1);
    for _ in 0..10 {
        // A throttle every 11 s: each is a new episode.
        assert_eq!(
            r.quotas.admit(&peer, Response::Block, 1),
            Admission::DontHave
        );
        r.clock.advance_ms(EPISODE_GAP_MS + 1_000);
    }
    assert!(r.disconnects.try_recv().is_err());
}

#[test]
fn deny_list_refuses_and_reload_lifts_it() {
    let mut p = open_policy();
    let bad = PeerId::random();
    p.deny.push(bad);
    let r = rig(p.clone());
    assert!(r.quotas.is_refused(&bad));
    assert!(!r.quotas.is_refused(&PeerId::random()));
    p.deny.clear();
    r.quotas.set_policy(p);
    assert!(!r.quotas.is_refused(&bad));
}

#[test]
fn raising_a_budget_takes_effect_without_losing_counts() {
    let mut p = open_policy();
    default_tier(&mut p).blocks_per_day = 5;
    let r = rig(p.clone());
    let peer = PeerId::random();
    r.quotas.peer_connected(peer, ip(1));
    assert_eq!(serve_until_refused(&r.quotas, &peer, 1, 100).0, 5);
    default_tier(&mut p).blocks_per_day = 8;
    r.quotas.set_policy(p);
    assert_eq!(serve_until_refused(&r.quotas, &peer, 1, 100).0, 3);
    let row = &r.quotas.report(1)[0];
    assert_eq!(row.day_blocks, 8);
    assert_eq!(row.remaining_day_blocks, Some(0));
    assert_eq!(row.connections, 1);
}

/// A store stand-in: what `take_dirty` returned, by key.
#[derive(Default)]
struct Saved(Mutex<HashMap<CounterKey, DayWindow>>);

impl CounterSource for Saved {
    fn load(&self, key: &CounterKey) -> Option<DayWindow> {
        self.0.lock().unwrap().get(key).cloned()
    }
}

#[test]
fn counters_written_out_are_read_back_by_a_new_gate() {
    let mut p = open_policy();
    default_tier(&mut p).blocks_per_day = 4;
    p.prefix.blocks_per_day = 6;
    let saved = Arc::new(Saved::default());
    let first = rig_with(p.clone(), saved.clone());
    let peer = PeerId::random();
    first.quotas.peer_connected(peer, ip(1));
    assert_eq!(serve_until_refused(&first.quotas, &peer, 1, 100).0, 4);
    for (k, w) in first.quotas.take_dirty() {
        saved.0.lock().unwrap().insert(k, w);
    }
    assert!(
        first.quotas.take_dirty().is_empty(),
        "nothing changed since"
    );

    // "Restart": a fresh gate over the same saved windows.
    let second = rig_with(p, saved.clone());
    second.quotas.peer_connected(peer, ip(1));
    assert_eq!(
        second.quotas.admit(&peer, Response::Block, 1),
        Admission::DontHave
    );
    // The prefix remembers its 4 too: a new peer there gets the last 2.
    let sibling = PeerId::random();
    second.quotas.peer_connected(sibling, ip(2));
    assert_eq!(serve_until_refused(&second.quotas, &sibling, 1, 100).0, 2);
}

#[test]
fn memory_is_bounded_by_max_tracked_peers() {
    let mut p = open_policy();
    p.max_tracked_peers = 64;
    let r = rig(p);
    for i in 0..1000u32 {
        let peer = PeerId::random();
        r.quotas.peer_connected(peer, ip((i % 250) as u8));
        r.quotas.admit(&peer, Response::Block, 1);
        r.quotas.peer_disconnected(&peer);
        assert!(r.quotas.state().peers.len() <= 64);
    }
    // Forgotten peers' windows go to the store, not nowhere.
    let written = r.quotas.take_dirty();
    let peers = written
        .iter()
        .filter(|(k, _)| matches!(k, CounterKey::Peer(_)))
        .count();
    assert_eq!(peers, 1000);
}

#[test]
fn garbage_collection_forgets_idle_peers_with_nothing_counted() {
    let r = rig(open_policy());
    let idle = PeerId::random();
    let busy = PeerId::random();
    r.quotas.peer_connected(idle, ip(1));
    r.quotas.peer_disconnected(&idle);
    r.quotas.peer_connected(busy, ip(2));
    r.quotas.admit(&busy, Response::Block, 1);
    r.quotas.peer_disconnected(&busy);
    r.clock.advance_ms(60_000);
    assert_eq!(r.quotas.collect_garbage(30_000), 1, "only the idle one");
    r.clock.advance_ms(25 * HOUR_MS);
    assert_eq!(r.quotas.collect_garbage(30_000), 1, "then the busy one");
}

#[test]
fn prefixes_mask_addresses() {
    let v4 = IpPrefix::of(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)), 24, 64);
    assert_eq!(v4.to_string(), "10.1.2.0/24");
    let v6 = IpPrefix::of("2001:db8:1:2:3:4:5:6".parse().unwrap(), 24, 64);
    assert_eq!(v6.to_string(), "2001:db8:1:2::/64");
    let mapped = IpPrefix::of("::ffff:10.1.2.200".parse().unwrap(), 24, 64);
    assert_eq!(mapped, v4);
}

#[test]
fn a_tracked_peer_costs_at_most_700_bytes() {
    // The figure the default policy documents for max_tracked_peers: the
    // map's key and value plus a control byte, at the worst load factor
    // (7/8) of the hash table.
    let slot = std::mem::size_of::<(PeerId, PeerEntry)>() + 1;
    assert!(slot * 8 / 7 <= 700, "{slot} bytes per slot");
}

#[test]
fn a_slow_reader_is_refused_past_its_inflight_bytes() {
    let mut p = open_policy();
    default_tier(&mut p).max_inflight_bytes = 1000;
    let vip = PeerId::random();
    p.allow.push(vip);
    let r = rig(p);
    let peer = PeerId::random();
    r.quotas.peer_connected(peer, ip(1));
    assert_eq!(r.quotas.check_inflight(&peer, 999), None);
    assert_eq!(
        r.quotas.check_inflight(&peer, 1000),
        Some(Admission::DontHave)
    );
    assert_eq!(r.quotas.report(10)[0].throttled, 1);
    assert_eq!(r.quotas.check_inflight(&vip, u64::MAX), None);
}
