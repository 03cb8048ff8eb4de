//! IPNS record store benchmark: 1M names in `ipns_records_v1`. Prints one
//! table: write rate (batches of 512, one durable commit each, as the name
//! service's group commit makes them), disk bytes per record, open time of
//! the full store, random `ipns_get` rate, and the process RSS.
//!
//! Records are 300 pseudo-random bytes (the size of an Ed25519 IPNS record with a
//! V1 and a V2 signature and a CIDv1 value) under 38-byte keys (an Ed25519
//! name's multihash): the store never looks inside a record, so signing a
//! million real ones would only measure ed25519. `SIDECAR_BENCH_IPNS_RECORDS`
//! changes the count.
//!
//! Run: `cargo bench -p sidecar --bench ipns_store`

use std::time::Instant;

use sidecar::store::{IpnsRow, Store};

/// Records per write transaction (the name service's `MAX_BATCH`).
const BATCH: usize = 512;
/// Bytes of one record.
const RECORD_BYTES: usize = 300;
/// Random reads measured.
const READS: usize = 200_000;

/// `RECORD_BYTES` pseudo-random bytes for record `j`: sha2-256 of the
/// counter, chained.
fn record_bytes(j: u64) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut out = Vec::with_capacity(RECORD_BYTES + 32);
    let mut block = Sha256::digest(j.to_le_bytes());
    while out.len() < RECORD_BYTES {
        out.extend_from_slice(&block);
        block = Sha256::digest(block);
    }
    out.truncate(RECORD_BYTES);
    out
}

/// An Ed25519-name-shaped key: identity multihash header + 36 bytes.
fn key(i: u64) -> Vec<u8> {
    let mut k = vec![0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
    k.extend_from_slice(&i.to_be_bytes());
    k.resize(38, 0xab);
    k
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n: u64 = std::env::var("SIDECAR_BENCH_IPNS_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ipns.redb");
    let store = Store::open(&path).expect("open store");
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let batch: Vec<(Vec<u8>, IpnsRow)> = (i..(i + BATCH as u64).min(n))
            .map(|j| {
                let record = record_bytes(j);
                let row = IpnsRow {
                    received_at_ms: 1_800_000_000_000,
                    sequence: j,
                    validity_secs: 1_900_000_000,
                    validity_nanos: 0,
                    ttl_ns: 300_000_000_000,
                    source: 1,
                    record,
                };
                (key(j), row)
            })
            .collect();
        let verdicts = store
            .ipns_update(&batch, |_, old, _| Ok::<bool, ()>(old.is_none()))
            .expect("write batch");
        assert!(verdicts.iter().all(|v| *v == Ok(true)));
        i += batch.len() as u64;
    }
    let write = started.elapsed();
    drop(store);
    let disk = std::fs::metadata(&path).expect("file").len();

    let rss_before_open = rss_kib();
    let opened = Instant::now();
    let store = Store::open(&path).expect("reopen");
    let open = opened.elapsed();
    assert_eq!(store.ipns_count().unwrap(), n);
    let read_start = Instant::now();
    for r in 0..READS as u64 {
        // A multiplicative step visits keys in a scattered order.
        let j = r.wrapping_mul(0x9e37_79b9_7f4a_7c15) % n;
        let row = store.ipns_get(&key(j)).unwrap().expect("stored");
        assert_eq!(row.sequence, j);
    }
    let reads = read_start.elapsed();
    let rss = rss_kib();

    println!("| measure | value |");
    println!("|---|---:|");
    println!("| records | {n} |");
    println!(
        "| write, batches of {BATCH} (one durable commit each) | {:.0} records/s ({:.1} s) |",
        n as f64 / write.as_secs_f64(),
        write.as_secs_f64()
    );
    println!(
        "| disk bytes per record ({RECORD_BYTES} B record + 38 B key) | {:.0} |",
        disk as f64 / n as f64
    );
    println!(
        "| open of the full store | {:.1} ms |",
        open.as_secs_f64() * 1e3
    );
    println!(
        "| random `ipns_get`, one read transaction each | {:.0} /s |",
        READS as f64 / reads.as_secs_f64()
    );
    println!(
        "| process RSS after the reads (before reopening: {} MiB) | {} MiB |",
        rss_before_open / 1024,
        rss / 1024
    );
}
