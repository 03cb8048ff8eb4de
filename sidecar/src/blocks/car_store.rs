//! [`CarBlockSource`]: the [`BlockSource`] that serves blocks straight out of
//! indexed CAR files: index lookup in the [`Store`], then one positioned read
//! (`pread`) of exactly the block's bytes from the shard file.
//!
//! Called by the Bitswap engine and the HTTP API from many threads at once
//! (on the blocking pool). Open shard files are kept in a small LRU of
//! [`DEFAULT_MAX_OPEN_SHARDS`] handles shared by all readers (`pread` needs no
//! seek, so one handle serves any number of concurrent reads).
//!
//! A handle is opened only if the file's size and mtime still match the
//! registry; a shard changed since it was indexed is an error, never a source
//! of wrong bytes. This module never writes to the store and never decides
//! whether a peer may have a block.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use cid::Cid;

use super::{BlockError, BlockSource, Mh, pool::BufferPool};
use crate::car::{self, HashCheck};
use crate::store::{Store, StoreError};

/// Open shard files kept at most. 256 stays far below a default `ulimit -n`
/// of 1024 while covering the hot set of a typical deployment; at the bound
/// the least recently used handle is closed.
pub const DEFAULT_MAX_OPEN_SHARDS: usize = 256;

impl From<StoreError> for BlockError {
    fn from(e: StoreError) -> Self {
        BlockError::Index(e.to_string())
    }
}

struct Handle {
    file: Arc<File>,
    path: Arc<str>,
    last_used: u64,
}

#[derive(Default)]
struct Handles {
    open: HashMap<u32, Handle>,
    clock: u64,
}

/// Blocks from indexed CAR files.
pub struct CarBlockSource {
    store: Arc<Store>,
    handles: Mutex<Handles>,
    max_open: usize,
    verify_on_read: bool,
    buffers: BufferPool,
}

impl CarBlockSource {
    /// A source over `store` with [`DEFAULT_MAX_OPEN_SHARDS`] and no
    /// re-verification on read.
    pub fn new(store: Arc<Store>) -> Self {
        CarBlockSource {
            store,
            handles: Mutex::new(Handles::default()),
            max_open: DEFAULT_MAX_OPEN_SHARDS,
            verify_on_read: false,
            buffers: BufferPool::new(),
        }
    }

    /// Keep at most `n` (at least 1) shard files open. Defaults to
    /// [`DEFAULT_MAX_OPEN_SHARDS`].
    pub fn with_max_open_shards(mut self, n: usize) -> Self {
        self.max_open = n.max(1);
        self
    }

    /// Re-hash every block read before returning it (costs ~1 ms per MiB).
    /// Blocks were verified at import and files are checked for changes when
    /// opened, and Bitswap peers verify what they receive, so this defaults
    /// to `false`.
    pub fn with_verify_on_read(mut self, verify: bool) -> Self {
        self.verify_on_read = verify;
        self
    }

    /// Closes the cached handle of a shard (after it was removed or
    /// re-indexed).
    pub fn forget_shard(&self, shard: u32) {
        if let Ok(mut h) = self.handles.lock() {
            h.open.remove(&shard);
        }
    }

    /// Number of shard files currently open.
    pub fn open_shards(&self) -> usize {
        self.handles.lock().map(|h| h.open.len()).unwrap_or(0)
    }

    fn handle(&self, shard: u32) -> Result<(Arc<File>, Arc<str>), BlockError> {
        {
            let mut h = self.handles.lock().map_err(|_| poisoned())?;
            h.clock += 1;
            let now = h.clock;
            if let Some(e) = h.open.get_mut(&shard) {
                e.last_used = now;
                return Ok((e.file.clone(), e.path.clone()));
            }
        }
        // Open outside the lock: a slow disk must not stall other readers.
        let meta = self
            .store
            .shard(shard)?
            .ok_or_else(|| BlockError::Index(format!("index points at unknown shard {shard}")))?;
        let shard_err = |source| BlockError::Shard {
            shard: meta.path.clone(),
            source,
        };
        let file = File::open(&meta.path).map_err(shard_err)?;
        let md = file.metadata().map_err(shard_err)?;
        let mtime = md.modified().map_err(shard_err)?;
        let nanos = match mtime.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        };
        if md.len() != meta.file_size || nanos != meta.mtime_unix_nanos {
            return Err(shard_err(io::Error::other(
                "shard file changed since it was indexed; re-import it",
            )));
        }
        let file = Arc::new(file);
        let path: Arc<str> = meta.path.into();
        let mut h = self.handles.lock().map_err(|_| poisoned())?;
        let full = h.open.len() >= self.max_open && !h.open.contains_key(&shard);
        let lru = h
            .open
            .iter()
            .min_by_key(|(_, e)| e.last_used)
            .map(|(k, _)| *k);
        if let (true, Some(lru)) = (full, lru) {
            h.open.remove(&lru);
        }
        let now = h.clock;
        let e = h.open.entry(shard).or_insert(Handle {
            file,
            path,
            last_used: now,
        });
        Ok((e.file.clone(), e.path.clone()))
    }
}

fn poisoned() -> BlockError {
    BlockError::Index("shard handle cache lock poisoned".into())
}

impl BlockSource for CarBlockSource {
    fn block_size(&self, mh: &Mh) -> Result<Option<u32>, BlockError> {
        Ok(self.store.lookup(mh)?.map(|l| l.len))
    }

    fn block_sizes(&self, mhs: &[Mh]) -> Result<Vec<Option<u32>>, BlockError> {
        Ok(self
            .store
            .lookup_many(mhs)?
            .into_iter()
            .map(|l| l.map(|l| l.len))
            .collect())
    }

    fn read_block(&self, mh: &Mh) -> Result<Option<Bytes>, BlockError> {
        let Some(loc) = self.store.lookup(mh)? else {
            return Ok(None);
        };
        let (file, path) = self.handle(loc.shard)?;
        let mut loan = self.buffers.take(loc.len as usize);
        let buf = loan.bytes_mut();
        file.read_exact_at(buf, loc.offset)
            .map_err(|source| BlockError::Shard {
                shard: path.to_string(),
                source,
            })?;
        if self.verify_on_read {
            // The codec does not matter for hashing; raw is a placeholder.
            if car::check_block(&Cid::new_v1(car::RAW, *mh), buf) != HashCheck::Ok {
                return Err(BlockError::Shard {
                    shard: path.to_string(),
                    source: io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "block at offset {} does not match its multihash",
                            loc.offset
                        ),
                    ),
                });
            }
        }
        Ok(Some(loan.freeze()))
    }
}
