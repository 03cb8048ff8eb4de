//! The test DAG, made by a real (offline) producer Kubo from fresh random bytes.
//!
//! Layout of the root directory (CIDv1 dag-pb, built in Kubo's MFS):
//!
//! | entry | how it was added | exercises |
//! | --- | --- | --- |
//! | `big-256k.bin` | [`BIG_FILE_SIZE`] random bytes, `--cid-version=1 --raw-leaves --chunker=size-262144` | raw leaves, 256 KiB blocks, two-level tree |
//! | `big-1m.bin` | same size, other bytes, `--cid-version=0 --chunker=size-1048576` | CIDv0, dag-pb leaves, ~1 MiB blocks |
//! | `small/` | [`SMALL_FILES`] files of 0–3000 bytes, `--cid-version=1 --raw-leaves` | many tiny blocks (≤ 1 KiB answered inline), duplicates |
//!
//! Beside it, a separate "holey" directory of [`HOLES`] small files: the server gets only
//! the directory's own block ([`Fixture::holes_car`]), never its children, so a client
//! walking it is answered DONT_HAVE for each child.
//!
//! The producer's `ipfs dag export` of the root is the reference CAR ([`Fixture::dag_car`]).
//! Both CARs are what a server imports (`sidecar car import`, or `ipfs dag import` for the
//! Kubo reference server).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{Context, Result, ensure};

use crate::car;
use crate::kubo::Kubo;
use crate::tools;

/// Size of each big file: 20 MiB plus a ragged tail so the last chunk is partial.
pub const BIG_FILE_SIZE: usize = 20 * 1024 * 1024 + 12_345;
/// Number of files in `small/`.
pub const SMALL_FILES: usize = 500;
/// Largest small file (exclusive), in bytes.
pub const SMALL_FILE_MAX: usize = 3000;
/// Number of children of the holey directory the server lacks. More than 16, Kubo's
/// consecutive-DONT_HAVE limit before it prunes a peer from a session
/// (boxo `bitswap/client/internal/session/sessionwantsender.go`, `peerDontHaveLimit`).
pub const HOLES: usize = 20;

/// One file of the DAG and the bytes it must read back as.
pub struct FixtureFile {
    /// Path below the root, e.g. `small/f-007.bin`.
    pub path: String,
    /// Expected content.
    pub bytes: Vec<u8>,
}

/// A generated fixture; see the module docs.
pub struct Fixture {
    /// Seed of the random bytes (printed, so a failure can be reproduced).
    pub seed: u64,
    /// Root directory CID (string, as Kubo prints it).
    pub root: String,
    /// Every file below the root with its expected bytes (big files first).
    pub files: Vec<FixtureFile>,
    /// The producer's `ipfs dag export <root>`.
    pub dag_car: PathBuf,
    /// Bytes of [`Fixture::dag_car`].
    pub dag_car_bytes: Vec<u8>,
    /// CID of the holey directory.
    pub holes_root: String,
    /// CIDs of its children, none of which any server has.
    pub holes_children: Vec<String>,
    /// A CAR holding only the holey directory's block.
    pub holes_car: PathBuf,
}

/// A splitmix64 stream: fast, seedable, good enough for incompressible test bytes.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

impl Fixture {
    /// Generates the fixture under `dir` (created if missing; must be empty or absent).
    pub fn build(dir: &Path) -> Result<Fixture> {
        let seed = std::env::var("COMPAT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| tools::unix_nanos() as u64);
        let mut rng = Rng(seed);
        let src = dir.join("src");
        std::fs::create_dir_all(src.join("small"))?;
        std::fs::create_dir_all(src.join("holes"))?;

        let mut files = Vec::new();
        for name in ["big-256k.bin", "big-1m.bin"] {
            let bytes = rng.bytes(BIG_FILE_SIZE);
            std::fs::write(src.join(name), &bytes)?;
            files.push(FixtureFile {
                path: name.to_owned(),
                bytes,
            });
        }
        for i in 0..SMALL_FILES {
            let bytes = match i {
                // Two pairs of identical files: one block per pair in the CAR. No empty
                // file: Kubo's server never sends a zero-length block (boxo decision engine:
                // `isWantBlock := blockSize != 0 && …`, it only answers HAVE), so the
                // reference server could not serve it and the comparison would be moot.
                0 | 1 => b"x".to_vec(),
                2 | 3 => b"same bytes in two files\n".to_vec(),
                _ => {
                    let len = (rng.next_u64() % SMALL_FILE_MAX as u64) as usize;
                    rng.bytes(len)
                }
            };
            let name = format!("small/f-{i:03}.bin");
            std::fs::write(src.join(&name), &bytes)?;
            files.push(FixtureFile { path: name, bytes });
        }
        for i in 0..HOLES {
            std::fs::write(src.join(format!("holes/h-{i:02}.bin")), rng.bytes(200))?;
        }

        let producer = Kubo::init("producer", &["/ip4/127.0.0.1/tcp/0"])?;
        let big_256k = producer.add(
            &src.join("big-256k.bin"),
            &["--cid-version=1", "--raw-leaves", "--chunker=size-262144"],
        )?;
        let big_1m = producer.add(
            &src.join("big-1m.bin"),
            &["--cid-version=0", "--chunker=size-1048576"],
        )?;
        let small = producer.add(
            &src.join("small"),
            &["-r", "--cid-version=1", "--raw-leaves"],
        )?;
        producer.cli(&["files", "mkdir", "--cid-version=1", "/fixture"])?;
        for (cid, name) in [
            (&big_256k, "big-256k.bin"),
            (&big_1m, "big-1m.bin"),
            (&small, "small"),
        ] {
            producer.cli(&[
                "files",
                "cp",
                &format!("/ipfs/{cid}"),
                &format!("/fixture/{name}"),
            ])?;
        }
        let root = producer.cli_str(&["files", "stat", "--hash", "/fixture"])?;

        // The producer's own reading of the big files must be what was written.
        for f in &files[..2] {
            let read = producer.cli(&["cat", &format!("/ipfs/{root}/{}", f.path)])?;
            ensure!(
                read == f.bytes,
                "producer's `ipfs cat` of {} differs from the source bytes",
                f.path
            );
        }

        let dag_car_bytes = producer.cli(&["dag", "export", &root])?;
        let dag_car = dir.join("fixture.car");
        std::fs::write(&dag_car, &dag_car_bytes)?;

        let holes_root = producer.add(
            &src.join("holes"),
            &["-r", "--cid-version=1", "--raw-leaves"],
        )?;
        let listing =
            producer.cli_str(&["ls", "--size=false", "--resolve-type=false", &holes_root])?;
        let holes_children: Vec<String> = listing
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect();
        ensure!(
            holes_children.len() == HOLES,
            "holey dir lists {} children: {listing}",
            holes_children.len()
        );
        let holes_block = producer.cli(&["block", "get", &holes_root])?;
        let holes_cid = car::cid_from_string(&holes_root).context("holey dir CID")?;
        let holes_car = dir.join("holes.car");
        std::fs::write(
            &holes_car,
            car::write(&holes_cid, &[(holes_cid.clone(), holes_block)]),
        )?;

        Ok(Fixture {
            seed,
            root,
            files,
            dag_car,
            dag_car_bytes,
            holes_root,
            holes_children,
            holes_car,
        })
    }

    /// Both CARs a server must import.
    pub fn cars(&self) -> [&Path; 2] {
        [&self.dag_car, &self.holes_car]
    }
}

static SHARED: OnceLock<Result<Fixture, String>> = OnceLock::new();

/// The fixture of this test process, built on first use into `<tmp>/compat-fixture`
/// (replaced on every run; tests pass `env!("CARGO_TARGET_TMPDIR")`). Panics with the
/// reason if it cannot be built.
pub fn shared(tmp: &Path) -> &'static Fixture {
    let result = SHARED.get_or_init(|| {
        let dir = tmp.join("compat-fixture");
        let _ = std::fs::remove_dir_all(&dir);
        let started = Instant::now();
        let f = Fixture::build(&dir).map_err(|e| format!("building the fixture: {e:#}"))?;
        eprintln!(
            "fixture: root {} ({} files, {} CAR bytes, seed {}) in {:?}",
            f.root,
            f.files.len(),
            f.dag_car_bytes.len(),
            f.seed,
            started.elapsed()
        );
        Ok(f)
    });
    match result {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    }
}
