//! Name watching through the real daemon (this build's `sidecar` binary):
//! (a) RSS of `SIDECAR_BENCH_WATCHERS` (default 10,000) idle WebSocket
//!     watchers, each on its own name, and the daemon's CPU while they
//!     idle for 10 s — target ≤ 100 MB;
//! (b) latency from a PUT being acknowledged to each of 1,000 watchers of
//!     one name receiving it, over 50 PUTs — target p99 ≤ 5 ms;
//! (c) fan-out: 200 PUTs back to back to that name, notifications
//!     delivered per second;
//! (d) what polling every 5 s would cost the same watchers, in requests.
//! Prints one table. Clients run in this process on the other core.
//!
//! Run: `cargo bench -p sidecar --bench watch` (pinned: `SIDECAR_BENCH_DAEMON_CPUS=0
//! taskset -c 1 cargo bench -p sidecar --bench watch`)

use std::{
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use futures::StreamExt;
use libp2p::identity::Keypair;
use sidecar::ipns::{Name, testing::sign_seq};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

const LATENCY_WATCHERS: usize = 1_000;
const LATENCY_PUTS: u64 = 50;
const FANOUT_PUTS: u64 = 200;
const POLL_INTERVAL_S: f64 = 5.0;

struct Daemon {
    child: Child,
    http: String,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // SIDECAR_BENCH_DAEMON_CPUS=0 runs the daemon under `taskset -c 0` (run
    // the bench itself under `taskset -c 1` to keep the clients apart).
    let mut cmd = match std::env::var("SIDECAR_BENCH_DAEMON_CPUS") {
        Ok(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpus, env!("CARGO_BIN_EXE_sidecar")]);
            c
        }
        Err(_) => Command::new(env!("CARGO_BIN_EXE_sidecar")),
    };
    let child = cmd
        .arg("--data-dir")
        .arg(&data)
        .arg("run")
        .env("SIDECAR_P2P__LISTEN", "/ip4/127.0.0.1/tcp/0")
        .env("SIDECAR_HTTP__LISTEN", "127.0.0.1:0")
        .env("SIDECAR_WATCH__MAX_PER_IP", "1000000")
        .env("SIDECAR_REPUBLISH__ENABLED", "false")
        .env("SIDECAR_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let http = loop {
        if let Ok(s) = std::fs::read_to_string(data.join("http.addr")) {
            break s.trim().to_owned();
        }
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    Daemon {
        child,
        http,
        _dir: dir,
    }
}

/// (VmRSS KiB, utime+stime seconds) of a process.
fn usage(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    (rss, ticks / 100.0)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(http: &str, path: &str) -> Ws {
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    tokio_tungstenite::connect_async_with_config(format!("ws://{http}{path}"), Some(config), true)
        .await
        .unwrap()
        .0
}

fn put(http: &str, key: &Keypair, seq: u64) -> Instant {
    let name = Name::from_public_key(&key.public());
    let record = sign_seq(key, seq, SystemTime::now() + Duration::from_secs(86_400));
    let r = sidecar::http::client::request(
        http,
        "PUT",
        &format!("/routing/v1/ipns/{name}"),
        &[("Content-Type", "application/vnd.ipfs.ipns-record")],
        &record,
        Duration::from_secs(30),
    )
    .unwrap();
    let acked = Instant::now();
    assert_eq!(r.status, 200, "{}", r.text());
    acked
}

/// The `"sequence":N` field of a notification.
fn sequence_of(text: &str) -> Option<u64> {
    let rest = &text[text.find("\"sequence\":")? + 11..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let idle: usize = std::env::var("SIDECAR_BENCH_WATCHERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let d = start();
    let pid = d.child.id();
    std::thread::sleep(Duration::from_secs(1));
    let (rss0, _) = usage(pid);

    // (a) idle watchers, each on its own name.
    let http = Arc::new(d.http.clone());
    let opened = Instant::now();
    let idle_sockets = rt.block_on(async {
        let gate = Arc::new(Semaphore::new(256));
        let mut tasks = Vec::with_capacity(idle);
        for _ in 0..idle {
            let (gate, http) = (gate.clone(), http.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire().await.unwrap();
                let name = Name::from_public_key(&Keypair::generate_ed25519().public());
                connect(&http, &format!("/name/{name}/watch")).await
            }));
        }
        let mut sockets = Vec::with_capacity(idle);
        for t in tasks {
            sockets.push(t.await.unwrap());
        }
        sockets
    });
    let open_s = opened.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let (rss1, cpu1) = usage(pid);
    std::thread::sleep(Duration::from_secs(10));
    let (rss2, cpu2) = usage(pid);

    // (b) latency across 1,000 watchers of one name. Each watcher notes
    // when it received which sequence; the main thread waits on a counter.
    let key = Keypair::generate_ed25519();
    let name = Name::from_public_key(&key.public());
    let receipts: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let watchers = rt.block_on(async {
        let mut handles = Vec::new();
        for _ in 0..LATENCY_WATCHERS {
            let mut ws = connect(&http, &format!("/name/{name}/watch")).await;
            let (receipts, count) = (receipts.clone(), count.clone());
            handles.push(tokio::spawn(async move {
                while let Some(Ok(m)) = ws.next().await {
                    if let Message::Text(t) = m {
                        let now = Instant::now();
                        // A scan, not a JSON parse: the client's own cost
                        // shares the two cores with the daemon.
                        if let Some(seq) = sequence_of(&t) {
                            receipts.lock().unwrap().push((seq, now));
                            count.fetch_add(1, Ordering::Release);
                        }
                    }
                }
            }));
        }
        handles
    });
    let wait_for = |n: usize, timeout: Duration| {
        let deadline = Instant::now() + timeout;
        while count.load(Ordering::Acquire) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
    };
    let mut latencies = Vec::new();
    let mut early = 0u64;
    for seq in 1..=LATENCY_PUTS {
        let acked = put(&d.http, &key, seq);
        wait_for(seq as usize * LATENCY_WATCHERS, Duration::from_secs(10));
        for (_, t) in std::mem::take(&mut *receipts.lock().unwrap()) {
            match t.checked_duration_since(acked) {
                Some(l) => latencies.push(l),
                None => {
                    early += 1;
                    latencies.push(Duration::ZERO);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    latencies.sort();

    // (c) fan-out: PUTs back to back.
    let before = count.load(Ordering::Acquire);
    let first = LATENCY_PUTS + 1;
    let (_, cpu_before) = usage(pid);
    let started = Instant::now();
    for seq in first..first + FANOUT_PUTS {
        put(&d.http, &key, seq);
    }
    let expected = FANOUT_PUTS as usize * LATENCY_WATCHERS;
    wait_for(before + expected, Duration::from_secs(60));
    let fanout_s = started.elapsed().as_secs_f64();
    let delivered = count.load(Ordering::Acquire) - before;
    let (_, cpu_after) = usage(pid);
    let cpu_per_notification_us = (cpu_after - cpu_before) * 1e6 / delivered.max(1) as f64;
    for w in watchers {
        w.abort();
    }
    drop(idle_sockets);

    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("| measurement | result | target |");
    println!("|---|---:|---|");
    println!("| idle watchers opened | {idle} in {open_s:.1} s | |");
    println!(
        "| RSS: daemon alone → with {idle} idle watchers | {:.1} → {:.1} MiB (+{:.1} MiB, {:.1} KiB each) | ≤ +100 MB |",
        mib(rss0),
        mib(rss1),
        mib(rss1.saturating_sub(rss0)),
        rss1.saturating_sub(rss0) as f64 / idle as f64
    );
    println!(
        "| daemon CPU while {idle} watchers idle 10 s | {:.2} s (RSS {:.1} MiB after) | ≈ 0 |",
        cpu2 - cpu1,
        mib(rss2)
    );
    println!(
        "| latency PUT acknowledged → delivered, {LATENCY_WATCHERS} watchers × {LATENCY_PUTS} PUTs | p50 {:?}, p99 {:?}, max {:?} ({} samples, {early} delivered before the PUT's answer arrived) | p99 ≤ 5 ms |",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
        latencies.len()
    );
    println!(
        "| fan-out: {FANOUT_PUTS} PUTs back to back × {LATENCY_WATCHERS} watchers | {delivered} of {expected} delivered in {fanout_s:.2} s = {:.0} notifications/s; daemon CPU {cpu_per_notification_us:.1} µs per notification | reported |",
        delivered as f64 / fanout_s.max(1e-9)
    );
    println!(
        "| polling instead: {idle} watchers every {POLL_INTERVAL_S} s | {:.0} GET/s forever, changes seen {:.1} s late on average | push: 0 requests when idle |",
        idle as f64 / POLL_INTERVAL_S,
        POLL_INTERVAL_S / 2.0
    );
}
