//! dnsaddr figures against a real DNS server (Knot on loopback, `compat_tests::dns`):
//! warm-cache resolution per lookup, cold resolution of a 3-level chain (`/dnsaddr/l0` →
//! `l1` → `l2`, the cache cleared before each), and an RFC 2136 + TSIG publish of 10
//! entries (each run replaces the previous 10 with 10 new ones: 10 deletes + 10 adds in one
//! update). Prints a Markdown table.
//!
//! ```sh
//! cargo run --release -p compat-tests --example dnsaddr_bench [-- ROUNDS]
//! ```

use std::time::{Duration, Instant};

use anyhow::Result;
use compat_tests::dns::DnsServer;
use dnsaddr::{HickorySource, Limits, Multiaddr, PeerId, Publisher, RecordSet, Resolver, Tsig};

const PEER: &str = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn row(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "| {what} | {} | {:?} | {:?} | {:?} |",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples[samples.len() - 1]
    );
}

fn main() -> Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(200);
    let chain: Vec<(String, u32, &str, String)> = vec![
        (
            "_dnsaddr.l0".into(),
            300,
            "TXT",
            "\"dnsaddr=/dnsaddr/l1.sidecar.test\"".into(),
        ),
        (
            "_dnsaddr.l1".into(),
            300,
            "TXT",
            "\"dnsaddr=/dnsaddr/l2.sidecar.test\"".into(),
        ),
        (
            "_dnsaddr.l2".into(),
            300,
            "TXT",
            format!("\"dnsaddr=/ip4/192.0.2.1/tcp/4001/p2p/{PEER}\""),
        ),
        (
            "_dnsaddr.l2".into(),
            300,
            "TXT",
            format!("\"dnsaddr=/ip4/192.0.2.1/tcp/4002/ws/p2p/{PEER}\""),
        ),
    ];
    let refs: Vec<(&str, u32, &str, &str)> = chain
        .iter()
        .map(|(o, t, k, v)| (o.as_str(), *t, *k, v.as_str()))
        .collect();
    let server = DnsServer::start_with("sidecar.test.", &refs)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let top: Multiaddr = format!("/dnsaddr/l0.sidecar.test/p2p/{PEER}").parse()?;
    let resolver = Resolver::new(HickorySource::nameserver(server.addr())?, Limits::default());
    let key = server.tsig();
    let tsig = Tsig::parse(&format!(
        "{}:{}:{}",
        key.algorithm, key.name, key.secret_b64
    ))?;
    let publisher = Publisher::new(server.addr(), Some(tsig));
    let peer: PeerId = PEER.parse()?;

    let (cold, warm, publish) = rt.block_on(async {
        let mut cold = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            resolver.clear_cache();
            let t = Instant::now();
            let r = resolver.resolve(&top).await?;
            cold.push(t.elapsed());
            anyhow::ensure!(r.addrs.len() == 2, "{:?}", r.tree);
        }
        // Warm: batches of 10,000 lookups, per-lookup time of each batch.
        let mut warm = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            for _ in 0..10_000 {
                std::hint::black_box(resolver.resolve(&top).await?);
            }
            warm.push(t.elapsed() / 10_000);
        }
        let mut publish = Vec::new();
        for round in 0..rounds.min(50) {
            let addrs: Vec<Multiaddr> = (0..10)
                .map(|i| format!("/ip4/127.0.0.1/tcp/{}", 10_000 + round * 10 + i).parse())
                .collect::<Result<_, _>>()?;
            let set = RecordSet::new("pub.sidecar.test", peer, &addrs, 300)?;
            let t = Instant::now();
            let u = publisher.publish(&set).await?;
            publish.push(t.elapsed());
            anyhow::ensure!(u.added.len() == 10, "{u:?}");
        }
        Ok::<_, anyhow::Error>((cold, warm, publish))
    })?;
    println!("| measurement | runs | median | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    row("warm-cache resolution, per lookup", warm);
    row("cold resolution, 3-level chain (3 TXT lookups)", cold);
    row("publish 10 entries (RFC 2136 + TSIG, replaces 10)", publish);
    Ok(())
}
