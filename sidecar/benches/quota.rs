//! Quota gate overhead per want: [`Quotas::admit`] with 10,000 tracked
//! peers (issue: per-peer quotas; target ≤ 1 µs per want).
//!
//! Two paths, each measured by criterion and then checked against the
//! target by a plain timed loop (best of [`CHECK_RUNS`]):
//!
//! - **serve**: the default policy (2000 blocks/s, 64 MiB/s per peer, the
//!   /24 prefix budget); wants go round robin over every peer, and the
//!   [`ManualClock`] moves 1 ms per round so buckets refill and every want
//!   is served — the bench asserts it;
//! - **throttled**: a tier of 1 block/s with a burst of 1, every peer's
//!   bucket emptied first and the clock stopped, so every want is refused
//!   with DONT_HAVE (asserted) and goes through the throttle bookkeeping
//!   and its metric.
//!
//! Peers connect from 2,500 /24 prefixes (4 peers each), so the prefix
//! budget is looked up and charged as in the daemon. Single-threaded: the
//! server's workers call `admit` under one mutex, so this is also the
//! serial cost the mutex hides.
//!
//! Exits with status 1 when a path misses the target. Run:
//! `cargo bench -p sidecar --bench quota` (criterion flags after `--`).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use libp2p::PeerId;
use sidecar::metrics::Metrics;
use sidecar::quota::budget::{ManualClock, Rate};
use sidecar::quota::{Admission, NoCounters, Policy, QuotaGate, Quotas, Response};

/// Tracked peers (the figure).
const PEERS: usize = 10_000;
/// Peers sharing one /24 prefix.
const PEERS_PER_PREFIX: usize = 4;
/// Block size charged per served want: a common chunk size.
const BLOCK: u32 = 16 * 1024;
/// Target from the issue: quota check overhead per want.
const TARGET: Duration = Duration::from_micros(1);
/// Wants per timed run of the target check, and runs (best one counts,
/// so a neighbour's compile does not decide the verdict).
const CHECK_WANTS: usize = 1_000_000;
const CHECK_RUNS: usize = 5;
/// An arbitrary fixed start time (ms since the epoch).
const T0: u64 = 1_800_000_000_000;

struct Rig {
    clock: Arc<ManualClock>,
    quotas: Quotas,
    peers: Vec<PeerId>,
}

fn rig(policy: Policy) -> Rig {
    let clock = Arc::new(ManualClock::new(T0));
    let quotas = Quotas::new(
        policy,
        clock.clone(),
        Arc::new(NoCounters),
        Arc::new(Metrics::new()),
    );
    let peers: Vec<PeerId> = (0..PEERS).map(|_| PeerId::random()).collect();
    for (i, p) in peers.iter().enumerate() {
        let net = (i / PEERS_PER_PREFIX) as u32;
        let host = (i % PEERS_PER_PREFIX) as u8 + 1;
        let ip = Ipv4Addr::new(10, (net >> 8) as u8, net as u8, host);
        quotas.peer_connected(*p, Some(IpAddr::V4(ip)));
    }
    Rig {
        clock,
        quotas,
        peers,
    }
}

/// The serve path: one want, round robin, 1 ms per round.
struct Serve {
    rig: Rig,
    next: usize,
}

impl Serve {
    fn new() -> Self {
        Self {
            rig: rig(Policy::default()),
            next: 0,
        }
    }

    fn want(&mut self) -> Admission {
        self.next += 1;
        if self.next == PEERS {
            self.next = 0;
            self.rig.clock.advance_ms(1);
        }
        self.rig
            .quotas
            .admit(&self.rig.peers[self.next], Response::Block, BLOCK)
    }
}

/// The throttled path: every bucket empty, the clock stopped.
struct Throttled {
    rig: Rig,
    next: usize,
}

impl Throttled {
    fn new() -> Self {
        let mut policy = Policy::default();
        let tier = &mut policy.tiers[policy.default_tier];
        tier.blocks = Rate {
            per_second: 1,
            burst: 1,
        };
        let rig = rig(policy);
        for p in &rig.peers {
            assert_eq!(
                rig.quotas.admit(p, Response::Block, BLOCK),
                Admission::Serve
            );
        }
        Self { rig, next: 0 }
    }

    fn want(&mut self) -> Admission {
        self.next = (self.next + 1) % PEERS;
        self.rig
            .quotas
            .admit(&self.rig.peers[self.next], Response::Block, BLOCK)
    }
}

/// Best time per want over [`CHECK_RUNS`] runs, asserting every answer.
fn per_want(mut want: impl FnMut() -> Admission, expect: Admission) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..CHECK_RUNS {
        let start = Instant::now();
        for _ in 0..CHECK_WANTS {
            let got = want();
            assert_eq!(got, expect);
        }
        best = best.min(start.elapsed() / CHECK_WANTS as u32);
    }
    best
}

fn main() {
    let mut serve = Serve::new();
    let mut throttled = Throttled::new();

    let mut c = Criterion::default().configure_from_args();
    c.bench_function("quota admit, serve path, 10k peers", |b| {
        b.iter(|| {
            let a = serve.want();
            assert_eq!(a, Admission::Serve);
            black_box(a)
        })
    });
    c.bench_function("quota admit, throttled path, 10k peers", |b| {
        b.iter(|| {
            let a = throttled.want();
            assert_eq!(a, Admission::DontHave);
            black_box(a)
        })
    });
    c.final_summary();

    let results = [
        ("serve", per_want(|| serve.want(), Admission::Serve)),
        (
            "throttled",
            per_want(|| throttled.want(), Admission::DontHave),
        ),
    ];
    let mut missed = false;
    for (path, t) in results {
        let ok = t <= TARGET;
        missed |= !ok;
        println!(
            "quota admit, {path} path, {PEERS} peers: {} ns per want (best of {CHECK_RUNS} x {CHECK_WANTS}); target <= {} ns: {}",
            t.as_nanos(),
            TARGET.as_nanos(),
            if ok { "met" } else { "MISSED" }
        );
    }
    if missed {
        std::process::exit(1);
    }
}
