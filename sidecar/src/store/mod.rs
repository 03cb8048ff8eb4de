//! The embedded store: one redb database file holding the block index and
//! the shard registry (and, later, other modules' tables).
//!
//! # Brief overview
//!
//! - [`Store::open`] creates or opens `<data_dir>/sidecar.redb`, checks the
//!   schema version ([`SCHEMA_VERSION`]) and refuses a newer one.
//! - [`Store::lookup`] / [`Store::lookup_many`] map a multihash to a
//!   [`BlockLocation`] (shard id, offset, length) in one read transaction.
//! - [`Store::shards`] / [`Store::shard`] read the shard registry
//!   ([`ShardMeta`]). Writes to both tables are done by `shards::import`,
//!   which owns the "one durable commit per CAR" rule.
//!
//! # Tables (names carry their version, so a future layout can live beside)
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `meta` | `&str` | `u64` (`schema_version`) |
//! | `blocks_v1` | multihash bytes | 16 bytes: shard id u32 LE, offset u64 LE, len u32 LE |
//! | `shards_v1` | shard id `u32` | [`ShardMeta`] as JSON |
//! | `shard_paths_v1` | canonical path | shard id `u32` |
//! | `quota_days_v1` | quota counter key | day window (312 bytes) |
//! | `ipns_records_v1` | IPNS name multihash | [`IpnsRow`]: metadata + record bytes |
//! | `ipns_republish_v1`, `ipns_due_v1`, `ipns_failing_v1` | see [`republish`] | the republish schedule |
//! | `kubo_keys_v1` | see `kubo_keys` | the schedule of the Kubo node's own keys |
//! | `ipns_events_v1` | see [`events`] | the change feed (updates, expiries) |
//!
//! # What survives a crash
//!
//! Every write transaction is committed with redb's default
//! `Durability::Immediate`: when `commit()` returns, the data is on disk
//! (fsync'd) and survives a crash or power loss. A transaction that has not
//! returned from `commit()` is invisible after a restart, in full. Import puts
//! a CAR's index entries and its registry row (the "indexed" mark) in the same
//! transaction, so after any crash a shard is either fully indexed or absent.
//!
//! Lookups share one read snapshot of `blocks_v1`, dropped by each commit
//! made through the store and retaken by the next lookup, so it never pins
//! pages that a commit freed.
//!
//! This module never reads CAR files and never decides what to import.

pub mod events;
mod ipns;
mod kubo_keys;
mod location;
mod quota;
pub mod republish;
mod shard_meta;

pub use ipns::IpnsRow;
pub use location::{BlockLocation, LOCATION_LEN};
pub use shard_meta::ShardMeta;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use cid::multihash::Multihash;
use redb::{
    Database, ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};

/// The schema this code writes and reads. Bump it (and add `*_v2` tables)
/// for any incompatible layout change; older binaries then refuse the file.
pub const SCHEMA_VERSION: u64 = 1;

/// File name of the database inside the data directory.
pub const DB_FILE_NAME: &str = "sidecar.redb";

/// Longest multihash key: a 9-byte code varint, a 1-byte length varint and a
/// 64-byte digest (`Multihash<64>`), rounded up.
pub const MAX_KEY_LEN: usize = 80;

pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const BLOCKS: TableDefinition<&[u8], &[u8; LOCATION_LEN]> =
    TableDefinition::new("blocks_v1");
pub(crate) const SHARDS: TableDefinition<u32, &[u8]> = TableDefinition::new("shards_v1");
pub(crate) const SHARD_PATHS: TableDefinition<&str, u32> = TableDefinition::new("shard_paths_v1");

const SCHEMA_KEY: &str = "schema_version";

/// Why the store could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be created or opened.
    #[error("opening store {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    /// The file was written by a newer sidecar.
    #[error(
        "store {path} has schema version {found}, newer than the {supported} this binary \
         supports; upgrade sidecar or point it at another data directory"
    )]
    NewerSchema {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    /// A value in the store could not be decoded.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// A redb operation failed.
    #[error("store: {0}")]
    Db(#[from] redb::Error),
}

macro_rules! via_redb_error {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
via_redb_error!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The database handle. Cheap to share behind an `Arc`; every method may be
/// called from many threads at once (redb allows concurrent readers and one
/// writer).
pub struct Store {
    db: Database,
    path: PathBuf,
    /// Bumped after every commit made through [`Store::commit`].
    generation: AtomicU64,
    /// A read snapshot of `blocks_v1` shared by all lookups until the next
    /// commit: beginning a redb read transaction per lookup costs about as
    /// much as the lookup itself (measured: 350k vs 600k lookups/s).
    blocks_snapshot: RwLock<Option<Arc<BlocksSnapshot>>>,
    /// Change-feed events kept (see [`events`]).
    event_retention: AtomicU64,
}

struct BlocksSnapshot {
    generation: u64,
    table: ReadOnlyTable<&'static [u8], &'static [u8; LOCATION_LEN]>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// Writes the multihash's binary form into `buf`; returns the used part.
pub fn mh_key<'a>(mh: &Multihash<64>, buf: &'a mut [u8; MAX_KEY_LEN]) -> &'a [u8] {
    let len = mh.encoded_len().min(MAX_KEY_LEN);
    let mut w = &mut buf[..len];
    // Writing into a slice of exactly encoded_len bytes cannot fail.
    let _ = mh.write(&mut w);
    &buf[..len]
}

impl Store {
    /// Opens (creating if needed) the database file at `path`, creates the
    /// tables and records [`SCHEMA_VERSION`] on first use, and refuses a file
    /// with a newer schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = Database::create(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        let tx = db.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            let found = meta.get(SCHEMA_KEY)?.map(|v| v.value());
            match found {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(StoreError::NewerSchema {
                        path,
                        found: v,
                        supported: SCHEMA_VERSION,
                    });
                }
                Some(_) => {}
                None => {
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
                }
            }
            tx.open_table(BLOCKS)?;
            tx.open_table(SHARDS)?;
            tx.open_table(SHARD_PATHS)?;
            tx.open_table(quota::QUOTA_DAYS)?;
            tx.open_table(ipns::IPNS_RECORDS)?;
            tx.open_table(republish::REPUBLISH)?;
            tx.open_table(republish::DUE)?;
            tx.open_table(republish::FAILING)?;
            tx.open_table(kubo_keys::KUBO_KEYS)?;
            tx.open_table(events::EVENTS)?;
        }
        tx.commit()?;
        Ok(Store {
            db,
            path,
            generation: AtomicU64::new(0),
            blocks_snapshot: RwLock::new(None),
            event_retention: AtomicU64::new(events::DEFAULT_EVENT_RETENTION),
        })
    }

    /// Commits a write transaction (durably) and makes later lookups see it.
    /// Every write to `blocks_v1` must commit through here.
    pub(crate) fn commit(&self, tx: WriteTransaction) -> Result<(), StoreError> {
        tx.commit()?;
        self.generation.fetch_add(1, Ordering::AcqRel);
        // Unpin the old snapshot now rather than at the next lookup, so redb
        // can reuse the pages this commit freed.
        if let Ok(mut guard) = self.blocks_snapshot.write() {
            *guard = None;
        }
        Ok(())
    }

    /// The current `blocks_v1` snapshot, refreshed if a commit happened since
    /// it was taken. A lookup racing a commit may see the state just before
    /// it, as if it had run a moment earlier.
    fn blocks(&self) -> Result<Arc<BlocksSnapshot>, StoreError> {
        let generation = self.generation.load(Ordering::Acquire);
        if let Ok(guard) = self.blocks_snapshot.read()
            && let Some(s) = guard.as_ref().filter(|s| s.generation == generation)
        {
            return Ok(s.clone());
        }
        let tx = self.db.begin_read()?;
        let fresh = Arc::new(BlocksSnapshot {
            generation,
            table: tx.open_table(BLOCKS)?,
        });
        if let Ok(mut guard) = self.blocks_snapshot.write() {
            let newer = guard.as_ref().is_some_and(|s| s.generation > generation);
            if !newer {
                *guard = Some(fresh.clone());
            }
        }
        Ok(fresh)
    }

    /// Opens `<data_dir>/sidecar.redb`.
    pub fn open_in_dir(data_dir: impl AsRef<Path>) -> Result<Store, StoreError> {
        Self::open(data_dir.as_ref().join(DB_FILE_NAME))
    }

    /// The database file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn db(&self) -> &Database {
        &self.db
    }

    /// Where the block with this multihash is, if indexed.
    pub fn lookup(&self, mh: &Multihash<64>) -> Result<Option<BlockLocation>, StoreError> {
        let snapshot = self.blocks()?;
        let blocks = &snapshot.table;
        let mut buf = [0u8; MAX_KEY_LEN];
        Ok(blocks
            .get(mh_key(mh, &mut buf))?
            .map(|v| BlockLocation::unpack(v.value())))
    }

    /// [`Store::lookup`] for many multihashes in one read transaction, in
    /// order.
    pub fn lookup_many(
        &self,
        mhs: &[Multihash<64>],
    ) -> Result<Vec<Option<BlockLocation>>, StoreError> {
        let snapshot = self.blocks()?;
        let blocks = &snapshot.table;
        let mut buf = [0u8; MAX_KEY_LEN];
        mhs.iter()
            .map(|mh| {
                Ok(blocks
                    .get(mh_key(mh, &mut buf))?
                    .map(|v| BlockLocation::unpack(v.value())))
            })
            .collect()
    }

    /// Number of indexed blocks (distinct multihashes).
    pub fn block_count(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(BLOCKS)?.len()?)
    }

    /// The registry row of one shard.
    pub fn shard(&self, id: u32) -> Result<Option<ShardMeta>, StoreError> {
        let tx = self.db.begin_read()?;
        let shards = tx.open_table(SHARDS)?;
        shards
            .get(id)?
            .map(|v| ShardMeta::decode(v.value()))
            .transpose()
    }

    /// The registry row of the shard at this canonical path.
    pub fn shard_by_path(&self, path: &Path) -> Result<Option<ShardMeta>, StoreError> {
        let tx = self.db.begin_read()?;
        let paths = tx.open_table(SHARD_PATHS)?;
        let Some(id) = paths.get(path_key(path)?.as_str())?.map(|v| v.value()) else {
            return Ok(None);
        };
        let shards = tx.open_table(SHARDS)?;
        shards
            .get(id)?
            .map(|v| ShardMeta::decode(v.value()))
            .transpose()
    }

    /// Every indexed shard, by id.
    pub fn shards(&self) -> Result<Vec<ShardMeta>, StoreError> {
        let tx = self.db.begin_read()?;
        let shards = tx.open_table(SHARDS)?;
        let mut out = Vec::new();
        for row in shards.iter()? {
            let (_, v) = row?;
            out.push(ShardMeta::decode(v.value())?);
        }
        Ok(out)
    }
}

/// The registry key of a path: paths must be UTF-8 to be stored.
pub(crate) fn path_key(path: &Path) -> Result<String, StoreError> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| StoreError::Corrupt(format!("path {} is not UTF-8", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_schema_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE_NAME);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.block_count().unwrap(), 0);
        assert!(store.shards().unwrap().is_empty());
        drop(store);
        let store = Store::open(&path).unwrap();
        let tx = store.db().begin_read().unwrap();
        let meta = tx.open_table(META).unwrap();
        assert_eq!(
            meta.get(SCHEMA_KEY).unwrap().unwrap().value(),
            SCHEMA_VERSION
        );
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE_NAME);
        {
            let store = Store::open(&path).unwrap();
            let tx = store.db().begin_write().unwrap();
            tx.open_table(META)
                .unwrap()
                .insert(SCHEMA_KEY, SCHEMA_VERSION + 1)
                .unwrap();
            tx.commit().unwrap();
        }
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(
            err,
            StoreError::NewerSchema {
                found: 2,
                supported: 1,
                ..
            }
        ));
        assert!(err.to_string().contains("schema version 2"));
    }

    #[test]
    fn mh_key_is_the_binary_multihash() {
        let mh = Multihash::<64>::wrap(0x12, &[7u8; 32]).unwrap();
        let mut buf = [0u8; MAX_KEY_LEN];
        assert_eq!(mh_key(&mh, &mut buf), mh.to_bytes().as_slice());
    }
}
