//! CAR import and block-index benchmark. Prints one table.
//!
//! Workloads (sizes can be changed through the environment):
//! - (a) a CARv2 of 1 MiB blocks, `SIDECAR_BENCH_BIG_MIB` MiB (default 256):
//!   import with hash verification and index cross-check → MB/s (target ≥ 300);
//! - (b) a CARv1 of `SIDECAR_BENCH_SMALL_BLOCKS` blocks (default 200,000) of
//!   64 B–4 KiB → blocks/s (target ≥ 50,000);
//! - (c) index lookups on the store of (b), one call per key and in
//!   `lookup_many` batches → lookups/s (target ≥ 500,000);
//! - (d) redb file size / indexed blocks → index bytes per block;
//! - (e) random `read_block` through `CarBlockSource` (warm page cache).
//!
//! Files are written to a temp dir first (not timed); imports therefore read
//! from a warm page cache: the numbers measure CPU (hashing, parsing, redb),
//! not the disk. Each import runs 3 times into a fresh store; the best and
//! median are shown. Everything is single-threaded; on a shared machine the
//! numbers drop with the load average (check `uptime`).
//!
//! Run: `cargo bench -p sidecar --bench car`

use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sidecar::blocks::car_store::CarBlockSource;
use sidecar::blocks::{BlockSource, Mh};
use sidecar::car::{CarWriter, IndexKind, RAW, cid_v1_sha256};
use sidecar::shards::import_car;
use sidecar::store::Store;

/// Import repetitions per workload (best and median reported).
const RUNS: usize = 3;
/// Lookups measured in (c).
const LOOKUPS: usize = 1_000_000;
/// Batch size for `lookup_many` in (c): a large Bitswap wantlist.
const LOOKUP_BATCH: usize = 256;
/// Random block reads measured in (e).
const READS: usize = 200_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: deterministic bytes without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// Writes a CAR of `count` blocks with sizes from `size`; returns the
/// multihashes and the file size.
fn write_car(
    path: &Path,
    v2: bool,
    count: usize,
    mut size: impl FnMut(&mut Rng) -> usize,
) -> (Vec<Mh>, u64) {
    let mut rng = Rng(0x1234_5678_9abc_def1 ^ count as u64);
    let out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let root = cid_v1_sha256(RAW, b"root");
    let mut w = if v2 {
        CarWriter::v2(out, &[root], IndexKind::MultihashSorted).unwrap()
    } else {
        CarWriter::v1(out, &[root]).unwrap()
    };
    let mut mhs = Vec::with_capacity(count);
    let mut buf = Vec::new();
    for _ in 0..count {
        let n = size(&mut rng);
        buf.resize(n, 0);
        rng.fill(&mut buf);
        let cid = cid_v1_sha256(RAW, &buf);
        w.write_block(&cid, &buf).unwrap();
        mhs.push(*cid.hash());
    }
    w.finish().unwrap();
    (mhs, std::fs::metadata(path).unwrap().len())
}

/// Imports `car` RUNS times into fresh stores; returns the durations and the
/// last store (kept for lookups).
fn time_imports(dir: &Path, name: &str, car: &Path) -> (Vec<Duration>, Store) {
    let mut times = Vec::new();
    let mut last = None;
    for run in 0..RUNS {
        let db = dir.join(format!("{name}-{run}.redb"));
        let store = Store::open(&db).unwrap();
        let t = Instant::now();
        import_car(&store, car, |_| {}).unwrap();
        times.push(t.elapsed());
        last = Some(store);
    }
    times.sort();
    (times, last.unwrap())
}

fn row(what: &str, value: f64, unit: &str, target: &str, note: &str) {
    println!("| {what:<44} | {value:>12.0} | {unit:<9} | {target:<8} | {note}");
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let big_mib = env_usize("SIDECAR_BENCH_BIG_MIB", 256);
    let small_blocks = env_usize("SIDECAR_BENCH_SMALL_BLOCKS", 200_000);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    eprintln!("writing fixtures in {} ...", d.display());
    let big = d.join("big.car");
    let (_, big_size) = write_car(&big, true, big_mib, |_| 1 << 20);
    let small = d.join("small.car");
    let (small_mhs, small_size) = write_car(&small, false, small_blocks, |r| {
        64 + (r.next() % (4096 - 64 + 1)) as usize
    });

    println!(
        "| {:<44} | {:>12} | {:<9} | {:<8} | note",
        "measure", "value", "unit", "target"
    );
    println!("|{:-<46}|{:-<14}|{:-<11}|{:-<10}|------", "", "", "", "");

    // (a) big blocks.
    let (times, _) = time_imports(d, "big", &big);
    let mbs = |t: Duration| big_size as f64 / 1e6 / t.as_secs_f64();
    row(
        &format!("(a) import {big_mib} MiB CARv2, 1 MiB blocks (best)"),
        mbs(times[0]),
        "MB/s",
        ">= 300",
        &format!("median {:.0} MB/s", mbs(times[RUNS / 2])),
    );

    // (b) small blocks.
    let (times, store) = time_imports(d, "small", &small);
    let bps = |t: Duration| small_blocks as f64 / t.as_secs_f64();
    row(
        &format!("(b) import {small_blocks} blocks of 64 B-4 KiB (best)"),
        bps(times[0]),
        "blocks/s",
        ">= 50000",
        &format!(
            "median {:.0} blocks/s, {:.0} MB/s, {:.1} MB file",
            bps(times[RUNS / 2]),
            small_size as f64 / 1e6 / times[0].as_secs_f64(),
            small_size as f64 / 1e6
        ),
    );

    // (c) lookups, in a random order over the whole key set.
    let mut rng = Rng(42);
    let order: Vec<Mh> = (0..LOOKUPS)
        .map(|_| small_mhs[(rng.next() % small_mhs.len() as u64) as usize])
        .collect();
    let t = Instant::now();
    let mut found = 0usize;
    for mh in &order {
        found += usize::from(store.lookup(mh).unwrap().is_some());
    }
    let single = t.elapsed();
    assert_eq!(found, LOOKUPS);
    row(
        "(c) lookup, one call per key",
        LOOKUPS as f64 / single.as_secs_f64(),
        "lookups/s",
        ">= 500000",
        "",
    );
    let t = Instant::now();
    let mut found = 0usize;
    for batch in order.chunks(LOOKUP_BATCH) {
        found += store
            .lookup_many(batch)
            .unwrap()
            .iter()
            .filter(|l| l.is_some())
            .count();
    }
    let batched = t.elapsed();
    assert_eq!(found, LOOKUPS);
    row(
        &format!("(c) lookup_many, batches of {LOOKUP_BATCH}"),
        LOOKUPS as f64 / batched.as_secs_f64(),
        "lookups/s",
        ">= 500000",
        "",
    );

    // (d) index size.
    let db_size = std::fs::metadata(store.path()).unwrap().len();
    row(
        "(d) index bytes per block (redb file / blocks)",
        db_size as f64 / small_blocks as f64,
        "bytes",
        "",
        &format!("{:.1} MB redb file", db_size as f64 / 1e6),
    );

    // (e) random block reads through the BlockSource.
    let src = CarBlockSource::new(Arc::new(store));
    let t = Instant::now();
    let mut bytes = 0usize;
    for mh in order.iter().take(READS) {
        bytes += src.read_block(mh).unwrap().map_or(0, |b| b.len());
    }
    let reads = t.elapsed();
    row(
        "(e) read_block, random small blocks",
        READS as f64 / reads.as_secs_f64(),
        "blocks/s",
        "",
        &format!("{:.0} MB/s", bytes as f64 / 1e6 / reads.as_secs_f64()),
    );
}
