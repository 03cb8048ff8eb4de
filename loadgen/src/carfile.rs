//! The benchmark CAR: written once from a seed, read back for its CIDs.
//!
//! Owns `gen-car` (N raw blocks of S seeded random bytes, CIDv1 raw
//! sha2-256, in a CARv1) and [`read_cids`], which is how `run` learns what
//! the sidecar holds. Uses the sidecar's own CAR writer and reader. File
//! I/O only; no network.

use std::{
    fs::File,
    io::BufWriter,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use cid::Cid;
use serde::Serialize;
use sidecar::car::{CarReader, CarWriter, RAW, ReadOptions, cid_v1_sha256};

use crate::rng::Rng;

/// Largest block `gen-car` writes: what Bitswap carries (2 MiB).
pub const MAX_BLOCK_SIZE: usize = sidecar::bitswap::MAX_BLOCK_SIZE;

/// What `gen-car` wrote.
#[derive(Debug, Serialize)]
pub struct CarSummary {
    pub path: PathBuf,
    pub blocks: usize,
    pub block_size: usize,
    pub block_bytes: u64,
    pub file_bytes: u64,
    pub root: String,
}

/// Writes `blocks` raw blocks of `size` bytes from `seed` to `out`
/// (through a temporary file renamed at the end, so a cut-short run never
/// leaves a CAR that looks complete). The first block is the root.
pub fn gen_car(out: &Path, blocks: usize, size: usize, seed: u64) -> anyhow::Result<CarSummary> {
    if blocks == 0 || size == 0 || size > MAX_BLOCK_SIZE {
        bail!("need at least one block of 1 to {MAX_BLOCK_SIZE} bytes");
    }
    let mut rng = Rng::new(seed);
    let mut data = vec![0u8; size];
    rng.fill(&mut data);
    let root = cid_v1_sha256(RAW, &data);
    let tmp = out.with_extension("car.partial");
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut w = CarWriter::v1(BufWriter::with_capacity(1 << 20, file), &[root])?;
    w.write_block(&root, &data)?;
    for _ in 1..blocks {
        rng.fill(&mut data);
        w.write_block(&cid_v1_sha256(RAW, &data), &data)?;
    }
    let file = w
        .finish()?
        .into_inner()
        .map_err(|e| e.into_error())
        .context("flushing the CAR")?;
    file.sync_all()?;
    std::fs::rename(&tmp, out).with_context(|| format!("renaming to {}", out.display()))?;
    Ok(CarSummary {
        path: out.to_path_buf(),
        blocks,
        block_size: size,
        block_bytes: (blocks * size) as u64,
        file_bytes: std::fs::metadata(out)?.len(),
        root: root.to_string(),
    })
}

/// The CIDs of every block in a CAR, in file order, and their total size.
/// Hashes are not checked: the sidecar verifies them on import.
pub fn read_cids(path: &Path) -> anyhow::Result<(Vec<Cid>, u64)> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = CarReader::open_with(
        file,
        ReadOptions {
            verify_hashes: false,
            ..ReadOptions::default()
        },
    )?;
    let mut cids = Vec::new();
    let mut bytes = 0u64;
    for entry in reader.sections() {
        let entry = entry?;
        bytes += u64::from(entry.len);
        cids.push(entry.cid);
    }
    if cids.is_empty() {
        bail!("{} holds no blocks", path.display());
    }
    Ok((cids, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_car_reads_back_with_verified_blocks() {
        let dir = std::env::temp_dir().join(format!("loadgen-car-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.car");
        let summary = gen_car(&path, 5, 1000, 9).unwrap();
        assert_eq!(summary.block_bytes, 5000);
        let (cids, bytes) = read_cids(&path).unwrap();
        assert_eq!((cids.len(), bytes), (5, 5000));
        assert_eq!(cids[0].to_string(), summary.root);
        assert!(cids.iter().all(|c| c.codec() == RAW));
        // The strict reader verifies every hash.
        let reader = CarReader::open(File::open(&path).unwrap()).unwrap();
        assert_eq!(reader.sections().filter(|s| s.is_ok()).count(), 5);
        // Same seed, same file.
        let again = dir.join("u.car");
        gen_car(&again, 5, 1000, 9).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&again).unwrap()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_sizes_are_refused() {
        let p = std::env::temp_dir().join("never-written.car");
        assert!(gen_car(&p, 0, 10, 1).is_err());
        assert!(gen_car(&p, 1, MAX_BLOCK_SIZE + 1, 1).is_err());
    }
}
