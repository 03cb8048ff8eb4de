//! CAR import: scan + verify a CAR file, then write its index entries and
//! its registry row in one durable write transaction.
//!
//! Order of work, and why:
//! 1. Scan the whole file first (hash-verifying every block, cross-checking a
//!    CARv2 index) and collect its entries in memory (~60 bytes per block).
//!    The write lock is not held during the scan, so a long import never
//!    blocks other writers of the store.
//! 2. Re-stat the file: if it changed during the scan, nothing is written.
//! 3. One write transaction: drop the entries of the previous version of the
//!    shard (re-index), insert the new entries sorted by key in batches of
//!    [`INSERT_BATCH`], write the registry row, commit (fsync).
//!
//! Any error before the commit returns leaves the store exactly as it was:
//! no partial index, ever.
//!
//! Known costs and limits:
//! - Memory during import is ~60 bytes per block of the CAR being imported.
//! - Re-indexing a changed file walks the whole `blocks_v1` table to drop the
//!   old entries (rare: only when a registered file changes).
//! - A block held by several shards is indexed once, at the location of the
//!   shard that indexed it first. If that shard is later re-indexed without
//!   the block, the block is unindexed until another shard holding it is
//!   re-imported with [`ImportOptions::force`].
//!
//! Called by the CLI (`sidecar import`) and tests; must never be called from
//! an async task without `spawn_blocking`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::ReadableTable;

use crate::car::{self, BlockEntry, CarError, IndexCheck, ScanOptions};
use crate::store::{
    BLOCKS, BlockLocation, MAX_KEY_LEN, SHARD_PATHS, SHARDS, ShardMeta, Store, StoreError, mh_key,
    path_key,
};

/// Entries inserted per batch inside the import transaction (each batch is
/// a sorted run; progress is reported between batches). 64 Ki entries is
/// ~4 MB of keys: large enough to amortise, small enough to report often.
pub const INSERT_BATCH: usize = 64 * 1024;

/// Progress is reported at least every this many bytes scanned...
const PROGRESS_BYTES: u64 = 8 * 1024 * 1024;
/// ...or every this many blocks, whichever comes first.
const PROGRESS_BLOCKS: u64 = 16 * 1024;

/// Why a CAR could not be imported. Nothing was written to the store.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be opened or stat'ed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The CAR is malformed, corrupt or has an inconsistent index.
    #[error("{path}: {source}")]
    Car {
        path: PathBuf,
        #[source]
        source: CarError,
    },
    /// The file changed (size or mtime) while it was being scanned.
    #[error("{path}: file changed while it was being imported; retry")]
    Changed { path: PathBuf },
    /// All 2^32 shard ids are taken.
    #[error("shard registry is full ({} shards)", u32::MAX)]
    TooManyShards,
    /// The store could not be read or written.
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl From<CarError> for ImportError {
    fn from(source: CarError) -> Self {
        // The path is filled in by `import_car_with`, which maps this.
        ImportError::Car {
            path: PathBuf::new(),
            source,
        }
    }
}

/// How to import.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// How to scan the CAR. Defaults to verifying every hash and the index.
    pub scan: ScanOptions,
    /// Re-index even when the registry says this exact file (path, size,
    /// mtime) is already indexed. Defaults to `false`.
    pub force: bool,
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOutcome {
    /// A new shard was indexed.
    Indexed,
    /// A known path whose file changed (or `force`) was indexed again.
    Reindexed,
    /// The registry already had this exact file; nothing was read or written.
    AlreadyIndexed,
}

/// The result of one import.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    pub shard_id: u32,
    /// Canonical path.
    pub path: PathBuf,
    pub outcome: ImportOutcome,
    /// Sections in the file (duplicates included).
    pub blocks: u64,
    /// Index entries this import wrote (blocks not already indexed from this
    /// or another shard).
    pub new_entries: u64,
    /// Sum of block lengths.
    pub block_bytes: u64,
    pub file_size: u64,
    /// What happened to a CARv2 index (`None` when already indexed).
    pub index: Option<IndexCheck>,
    pub elapsed: Duration,
}

/// Which part of the import is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportPhase {
    /// Reading and verifying the CAR.
    Scanning,
    /// Writing index entries (inside the write transaction).
    Indexing,
    /// Committing (fsync).
    Committing,
}

/// Progress of one import, passed to the progress callback.
#[derive(Debug, Clone, Copy)]
pub struct ImportProgress {
    pub phase: ImportPhase,
    /// Bytes of the file scanned so far.
    pub bytes_done: u64,
    /// File size.
    pub bytes_total: u64,
    /// Blocks scanned so far (Scanning) or entries written (Indexing).
    pub blocks: u64,
}

/// [`import_car_with`] with default options.
pub fn import_car(
    store: &Store,
    path: impl AsRef<Path>,
    progress: impl FnMut(&ImportProgress),
) -> Result<ImportSummary, ImportError> {
    import_car_with(store, path, &ImportOptions::default(), progress)
}

/// The identity of a file version: size and mtime.
fn file_identity(file: &File, path: &Path) -> Result<(u64, i128), ImportError> {
    let md = file.metadata().map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mtime = md.modified().map_err(|source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let nanos = match mtime.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    Ok((md.len(), nanos))
}

/// Index entries collected during the scan: keys in one arena, no
/// allocation per block.
#[derive(Default)]
struct Pending {
    keys: Vec<u8>,
    items: Vec<PendingItem>,
}

struct PendingItem {
    key_start: usize,
    key_len: u8,
    offset: u64,
    len: u32,
}

impl Pending {
    fn push(&mut self, e: &BlockEntry) {
        let mut buf = [0u8; MAX_KEY_LEN];
        let key = mh_key(e.cid.hash(), &mut buf);
        self.items.push(PendingItem {
            key_start: self.keys.len(),
            key_len: key.len() as u8,
            offset: e.offset,
            len: e.len,
        });
        self.keys.extend_from_slice(key);
    }

    fn key(&self, i: &PendingItem) -> &[u8] {
        &self.keys[i.key_start..i.key_start + usize::from(i.key_len)]
    }
}

/// Imports one CAR file. See the module doc for the guarantees.
pub fn import_car_with(
    store: &Store,
    path: impl AsRef<Path>,
    opts: &ImportOptions,
    mut progress: impl FnMut(&ImportProgress),
) -> Result<ImportSummary, ImportError> {
    let started = Instant::now();
    let given = path.as_ref();
    let io_err = |source| ImportError::Io {
        path: given.to_path_buf(),
        source,
    };
    let path = given.canonicalize().map_err(io_err)?;
    let file = File::open(&path).map_err(io_err)?;
    let (size, mtime) = file_identity(&file, &path)?;
    let key = path_key(&path)?;

    let existing = store.shard_by_path(&path)?;
    if let Some(meta) = existing
        .as_ref()
        .filter(|m| !opts.force && same_file(m, size, mtime))
    {
        return Ok(already_indexed(meta, path, started));
    }

    // 1. Scan and verify, collecting entries.
    let mut pending = Pending::default();
    let mut next_report = (PROGRESS_BYTES, PROGRESS_BLOCKS);
    let with_path = |e: ImportError| match e {
        ImportError::Car { source, .. } => ImportError::Car {
            path: path.clone(),
            source,
        },
        e => e,
    };
    let summary = car::scan(&file, &opts.scan, |e: &BlockEntry| {
        pending.push(e);
        let blocks = pending.items.len() as u64;
        if e.offset >= next_report.0 || blocks >= next_report.1 {
            next_report = (e.offset + PROGRESS_BYTES, blocks + PROGRESS_BLOCKS);
            progress(&ImportProgress {
                phase: ImportPhase::Scanning,
                bytes_done: e.offset + u64::from(e.len),
                bytes_total: size,
                blocks,
            });
        }
        Ok::<_, ImportError>(())
    })
    .map_err(with_path)?;
    progress(&ImportProgress {
        phase: ImportPhase::Scanning,
        bytes_done: size,
        bytes_total: size,
        blocks: summary.blocks,
    });

    // 2. The file must not have changed under us.
    if file_identity(&file, &path)? != (size, mtime) {
        return Err(ImportError::Changed { path });
    }

    // Sort by key, then by file order, so duplicates keep their first copy.
    let Pending { keys, mut items } = pending;
    items.sort_unstable_by(|a, b| {
        let ka = &keys[a.key_start..a.key_start + usize::from(a.key_len)];
        let kb = &keys[b.key_start..b.key_start + usize::from(b.key_len)];
        ka.cmp(kb).then(a.offset.cmp(&b.offset))
    });
    let pending = Pending { keys, items };

    // 3. One write transaction, one durable commit.
    let tx = store.db().begin_write().map_err(StoreError::from)?;
    let (shard_id, outcome, new_entries) = {
        let mut shards = tx.open_table(SHARDS).map_err(StoreError::from)?;
        let mut paths = tx.open_table(SHARD_PATHS).map_err(StoreError::from)?;
        let mut blocks = tx.open_table(BLOCKS).map_err(StoreError::from)?;

        // Re-read the registry inside the transaction: another import of the
        // same file may have committed since the check above.
        let old_id = paths
            .get(key.as_str())
            .map_err(StoreError::from)?
            .map(|v| v.value());
        if let Some(id) = old_id {
            let meta = shards
                .get(id)
                .map_err(StoreError::from)?
                .map(|v| ShardMeta::decode(v.value()))
                .transpose()?;
            if let Some(meta) = meta.filter(|m| !opts.force && same_file(m, size, mtime)) {
                return Ok(already_indexed(&meta, path, started));
            }
        }
        let (shard_id, outcome) = match old_id {
            Some(id) => {
                // Re-index: drop every entry pointing at the old version.
                blocks
                    .retain(|_, v| BlockLocation::unpack(v).shard != id)
                    .map_err(StoreError::from)?;
                (id, ImportOutcome::Reindexed)
            }
            None => {
                let last = shards
                    .last()
                    .map_err(StoreError::from)?
                    .map(|(k, _)| k.value());
                let id = match last {
                    None => 0,
                    Some(l) => l.checked_add(1).ok_or(ImportError::TooManyShards)?,
                };
                (id, ImportOutcome::Indexed)
            }
        };

        let mut written = 0u64;
        let mut prev_key: Option<&[u8]> = None;
        for (batch_no, batch) in pending.items.chunks(INSERT_BATCH).enumerate() {
            for item in batch {
                let k = pending.key(item);
                if prev_key == Some(k) {
                    continue; // a duplicate block in this CAR
                }
                prev_key = Some(k);
                let loc = BlockLocation {
                    shard: shard_id,
                    offset: item.offset,
                    len: item.len,
                }
                .pack();
                let old = blocks
                    .insert(k, &loc)
                    .map_err(StoreError::from)?
                    .map(|v| BlockLocation::unpack(v.value()));
                match old {
                    // Already served from another shard: keep that location.
                    Some(o) if o.shard != shard_id => {
                        blocks.insert(k, &o.pack()).map_err(StoreError::from)?;
                    }
                    _ => written += 1,
                }
            }
            progress(&ImportProgress {
                phase: ImportPhase::Indexing,
                bytes_done: size,
                bytes_total: size,
                blocks: ((batch_no + 1) * INSERT_BATCH).min(pending.items.len()) as u64,
            });
        }

        let meta = ShardMeta {
            id: shard_id,
            path: key.clone(),
            file_size: size,
            mtime_unix_nanos: mtime,
            car_version: summary.header.version,
            roots: summary.header.roots.iter().map(|c| c.to_string()).collect(),
            blocks: summary.blocks,
            block_bytes: summary.block_bytes,
            indexed_at_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        shards
            .insert(shard_id, meta.encode().as_slice())
            .map_err(StoreError::from)?;
        paths
            .insert(key.as_str(), shard_id)
            .map_err(StoreError::from)?;
        (shard_id, outcome, written)
    };
    progress(&ImportProgress {
        phase: ImportPhase::Committing,
        bytes_done: size,
        bytes_total: size,
        blocks: summary.blocks,
    });
    store.commit(tx)?;

    Ok(ImportSummary {
        shard_id,
        path,
        outcome,
        blocks: summary.blocks,
        new_entries,
        block_bytes: summary.block_bytes,
        file_size: size,
        index: Some(summary.index),
        elapsed: started.elapsed(),
    })
}

fn same_file(meta: &ShardMeta, size: u64, mtime: i128) -> bool {
    meta.file_size == size && meta.mtime_unix_nanos == mtime
}

fn already_indexed(meta: &ShardMeta, path: PathBuf, started: Instant) -> ImportSummary {
    ImportSummary {
        shard_id: meta.id,
        path,
        outcome: ImportOutcome::AlreadyIndexed,
        blocks: meta.blocks,
        new_entries: 0,
        block_bytes: meta.block_bytes,
        file_size: meta.file_size,
        index: None,
        elapsed: started.elapsed(),
    }
}
