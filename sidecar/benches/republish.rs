//! The republish scheduler with many names. Prints one table.
//!
//! Builds a store of `SIDECAR_BENCH_REPUBLISH_NAMES` (default 1,000,000)
//! names, each with a 300-byte record and a schedule row due within the
//! next 12 h (not timed), then:
//! (a) start-up: open the store and take the scheduler's first look (the
//!     overdue count and the first due scans) — target ≤ 5 s;
//! (b) idle: the republisher runs 10 s with nothing due; process CPU time
//!     and RSS growth over the store alone — targets ≈ 0 CPU, ≤ 100 MB;
//! (c) dispatch: 100,000 names made due at once against a target that
//!     answers at once, so the rate is the scheduler's own ceiling.
//!
//! Run: `cargo bench -p sidecar --bench republish`

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use sidecar::{
    clock::SystemClock,
    ipns::{
        Name,
        republish::{Policy, PutReport, Republisher, Target, TargetError},
        service::NameService,
    },
    metrics::Metrics,
    store::{
        IpnsRow, Store,
        republish::{CLASS_FRESH, CLASS_REPUBLISH, RepublishRow, RepublishState},
    },
};
use tokio_util::sync::CancellationToken;

const BATCH: usize = 20_000;
const DISPATCH: u64 = 100_000;

#[derive(Default, Clone)]
struct Counting(Arc<AtomicU64>);

impl Target for Counting {
    async fn put(&self, _: &Name, _: Bytes) -> Result<PutReport, TargetError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(PutReport { peers: Some(20) })
    }
    async fn fetch(&self, _: &Name) -> Result<Option<Bytes>, TargetError> {
        Ok(None)
    }
    async fn probe(&self) -> Result<(), TargetError> {
        Ok(())
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A name key: an identity multihash of 36 bytes, like an Ed25519 name.
fn key(i: u64) -> Vec<u8> {
    let mut k = vec![0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
    k.extend_from_slice(&[0u8; 24]);
    k.extend_from_slice(&i.to_be_bytes());
    k
}

fn proc_field(file: &str, field: &str) -> u64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds of this process.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, r)| r.split_whitespace().collect());
    let ticks: u64 = fields
        .get(11..13)
        .map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    ticks as f64 / 100.0
}

fn rss_mib() -> f64 {
    proc_field("/proc/self/status", "VmRSS:") as f64 / 1024.0
}

fn build(store: &Store, n: u64, due_base: u64) {
    let record = vec![7u8; 300];
    for start in (0..n).step_by(BATCH) {
        let end = (start + BATCH as u64).min(n);
        let rows: Vec<(Vec<u8>, IpnsRow)> = (start..end)
            .map(|i| {
                (
                    key(i),
                    IpnsRow {
                        received_at_ms: due_base,
                        sequence: 1,
                        validity_secs: 4_000_000_000,
                        validity_nanos: 0,
                        ttl_ns: 0,
                        source: 1,
                        record: record.clone(),
                    },
                )
            })
            .collect();
        store
            .ipns_update(&rows, |_, _, _| Ok::<_, ()>(true))
            .expect("records");
        let published: Vec<(Vec<u8>, u64)> = (start..end)
            .map(|i| (key(i), due_base + 3_600_000 + (i * 43_200_000 / n)))
            .collect();
        store
            .republish_update(&published, |_, _, old, due| {
                Some(RepublishRow {
                    state: RepublishState::Published,
                    next_due_ms: *due,
                    last_success_ms: due_base,
                    ..old?.clone()
                })
            })
            .expect("schedule");
    }
}

fn main() {
    let n: u64 = std::env::var("SIDECAR_BENCH_REPUBLISH_NAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sidecar.redb");
    let t = Instant::now();
    build(&Store::open(&path).expect("store"), n, now_ms());
    eprintln!("built {n} names in {:.1} s", t.elapsed().as_secs_f64());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let rss0 = rss_mib();
        // (a) start-up.
        let t = Instant::now();
        let store = Arc::new(Store::open(&path).expect("reopen"));
        let now = now_ms();
        let overdue = store
            .republish_count_due(CLASS_REPUBLISH, now)
            .expect("count");
        let fresh = store
            .republish_due(CLASS_FRESH, now, 20, |_| false)
            .expect("scan");
        let first = store
            .republish_due(CLASS_REPUBLISH, now, 20, |_| false)
            .expect("scan");
        let startup = t.elapsed();
        assert_eq!((overdue, fresh.due.len(), first.due.len()), (0, 0, 0));

        // (b) idle.
        let stop = CancellationToken::new();
        let (names, _) = NameService::start(store.clone(), stop.clone());
        let target = Counting::default();
        let republisher = Republisher::new(
            store.clone(),
            names.clone(),
            target.clone(),
            Policy::default(),
            Arc::new(SystemClock),
            Arc::new(Metrics::new()),
        );
        let task = tokio::spawn(republisher.run(stop.clone()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cpu0 = cpu_seconds();
        tokio::time::sleep(Duration::from_secs(10)).await;
        let idle_cpu = cpu_seconds() - cpu0;
        let idle_rss = rss_mib() - rss0;
        let idle_puts = target.0.load(Ordering::Relaxed);
        stop.cancel();
        let _ = task.await;

        // (c) dispatch: make DISPATCH names due now, run until all are put.
        let due: Vec<(Vec<u8>, ())> = (0..DISPATCH.min(n)).map(|i| (key(i), ())).collect();
        let now = now_ms();
        store
            .republish_update(&due, |_, _, old, _| {
                Some(RepublishRow {
                    next_due_ms: now - 1,
                    ..old?.clone()
                })
            })
            .expect("due");
        let policy = Policy {
            concurrency: 20,
            catch_up_window: Duration::from_secs(1),
            check_network: false,
            ..Policy::default()
        };
        let stop = CancellationToken::new();
        let target = Counting::default();
        let republisher = Republisher::new(
            store.clone(),
            names,
            target.clone(),
            policy,
            Arc::new(SystemClock),
            Arc::new(Metrics::new()),
        );
        let t = Instant::now();
        let task = tokio::spawn(republisher.run(stop.clone()));
        while target.0.load(Ordering::Relaxed) < DISPATCH.min(n) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let dispatch = t.elapsed();
        stop.cancel();
        let _ = task.await;

        println!("| measure | value |");
        println!("|---|---:|");
        println!("| names scheduled | {n} |");
        println!(
            "| (a) start-up: open + first look at the schedule | {:.1} ms — target ≤ 5 s: {} |",
            startup.as_secs_f64() * 1e3,
            if startup <= Duration::from_secs(5) {
                "met"
            } else {
                "MISSED"
            }
        );
        println!(
            "| (b) idle 10 s: CPU | {:.2} s ({} puts) |",
            idle_cpu, idle_puts
        );
        println!(
            "| (b) RSS over the store alone | {idle_rss:.1} MiB — target ≤ 100 MB: {} |",
            if idle_rss <= 95.0 { "met" } else { "MISSED" }
        );
        println!(
            "| (c) {} due at once, instant target, concurrency 20 | {:.0} puts/s |",
            DISPATCH.min(n),
            DISPATCH.min(n) as f64 / dispatch.as_secs_f64()
        );
    });
}
