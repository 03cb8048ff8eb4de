//! `sidecar-loadgen ipns`: HTTP load on the IPNS record API.
//!
//! Signs `records` distinct Ed25519 records (each its own key and name,
//! with the sidecar's record helper; not timed), then `clients` keep-alive
//! HTTP/1.1 connections PUT them all to `/routing/v1/ipns/{name}` as fast
//! as the server answers, then GET them back for `get_duration`, and
//! prints a JSON [`IpnsReport`]: rates, p50/p99 latency, non-2xx answers.
//!
//! The HTTP client is a minimal one written here (request line, headers,
//! `Content-Length` body) so that the client costs little next to the
//! server on a shared machine.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, bail};
use bytes::Bytes;
use libp2p::identity::Keypair;
use serde::Serialize;
use sidecar::ipns::{
    Name,
    testing::{SignOptions, sign},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

const IPNS: &str = "application/vnd.ipfs.ipns-record";

/// What the run measured.
#[derive(Debug, Serialize)]
pub struct IpnsReport {
    pub records: usize,
    pub clients: usize,
    pub sign_seconds: f64,
    pub put_per_second: f64,
    pub put_p50_ms: f64,
    pub put_p99_ms: f64,
    pub put_errors: u64,
    pub get_requests: u64,
    pub get_per_second: f64,
    pub get_p50_ms: f64,
    pub get_p99_ms: f64,
    pub get_errors: u64,
}

/// One keep-alive connection.
struct Conn {
    stream: BufReader<TcpStream>,
    host: String,
}

impl Conn {
    async fn open(addr: &str) -> anyhow::Result<Conn> {
        let s = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            stream: BufReader::new(s),
            host: addr.to_string(),
        })
    }

    /// Sends one request and reads the response; returns its status.
    async fn call(
        &mut self,
        method: &str,
        path: &str,
        header: &str,
        body: &[u8],
    ) -> anyhow::Result<u16> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{header}\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let w = self.stream.get_mut();
        w.write_all(head.as_bytes()).await?;
        w.write_all(body).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut length = 0usize;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                bail!("connection closed in the headers");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((n, v)) = l.split_once(':')
                && n.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().context("content-length")?;
            }
        }
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).await?;
        Ok(status)
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// Runs the load; `addr` is the sidecar's HTTP `host:port`.
pub async fn run(
    addr: String,
    records: usize,
    clients: usize,
    get_duration: Duration,
) -> anyhow::Result<IpnsReport> {
    let signing = Instant::now();
    let made: Vec<(String, Bytes)> = tokio::task::spawn_blocking(move || {
        (0..records)
            .map(|i| {
                let key = Keypair::generate_ed25519();
                let name = Name::from_public_key(&key.public()).to_string();
                let value = format!("/ipfs/bafkqaaa/{i}");
                let validity = SystemTime::now() + Duration::from_secs(86_400);
                let rec = sign(
                    &key,
                    value.as_bytes(),
                    1,
                    validity,
                    Duration::from_secs(300),
                    &SignOptions::default(),
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?;
                Ok((name, rec))
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })
    .await??;
    let sign_seconds = signing.elapsed().as_secs_f64();
    let made = Arc::new(made);

    // PUT every record once.
    let next = Arc::new(AtomicUsize::new(0));
    let put_errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (made, next, errors, addr) =
            (made.clone(), next.clone(), put_errors.clone(), addr.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&addr).await?;
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Relaxed);
                let Some((name, rec)) = made.get(i) else {
                    break;
                };
                let t = Instant::now();
                let status = conn
                    .call(
                        "PUT",
                        &format!("/routing/v1/ipns/{name}"),
                        &format!("Content-Type: {IPNS}"),
                        rec,
                    )
                    .await?;
                lat.push(t.elapsed().as_micros() as u32);
                if status != 200 {
                    errors.fetch_add(1, Relaxed);
                }
            }
            anyhow::Ok(lat)
        }));
    }
    let mut put_lat = Vec::new();
    for t in tasks {
        put_lat.extend(t.await??);
    }
    let put_time = started.elapsed().as_secs_f64();
    put_lat.sort_unstable();

    // GET them back, round robin, for `get_duration`.
    let stop = Arc::new(AtomicBool::new(false));
    let get_errors = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (made, next, errors, addr, stop) = (
            made.clone(),
            next.clone(),
            get_errors.clone(),
            addr.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&addr).await?;
            let mut lat = Vec::new();
            while !stop.load(Relaxed) {
                let i = next.fetch_add(1, Relaxed) % made.len();
                let t = Instant::now();
                let status = conn
                    .call(
                        "GET",
                        &format!("/routing/v1/ipns/{}", made[i].0),
                        &format!("Accept: {IPNS}"),
                        b"",
                    )
                    .await?;
                lat.push(t.elapsed().as_micros() as u32);
                if status != 200 {
                    errors.fetch_add(1, Relaxed);
                }
            }
            anyhow::Ok(lat)
        }));
    }
    tokio::time::sleep(get_duration).await;
    stop.store(true, Relaxed);
    let mut get_lat = Vec::new();
    for t in tasks {
        get_lat.extend(t.await??);
    }
    let get_time = started.elapsed().as_secs_f64();
    get_lat.sort_unstable();

    Ok(IpnsReport {
        records,
        clients,
        sign_seconds,
        put_per_second: put_lat.len() as f64 / put_time,
        put_p50_ms: percentile(&put_lat, 0.5),
        put_p99_ms: percentile(&put_lat, 0.99),
        put_errors: put_errors.load(Relaxed),
        get_requests: get_lat.len() as u64,
        get_per_second: get_lat.len() as f64 / get_time,
        get_p50_ms: percentile(&get_lat, 0.5),
        get_p99_ms: percentile(&get_lat, 0.99),
        get_errors: get_errors.load(Relaxed),
    })
}
