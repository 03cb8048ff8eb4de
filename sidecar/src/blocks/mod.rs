//! Where block bytes come from.
//!
//! [`BlockSource`] is the one interface the Bitswap engine and the HTTP API
//! use to ask "do we have this block, how big is it, give me its bytes". It is
//! keyed by multihash, not CID: a block is the same bytes whatever codec a CID
//! wraps it in. Implementations are synchronous and may block on disk; async
//! callers run them on the blocking pool.
//!
//! This module must never decide *whether* to serve a block to a peer: that is
//! the quota module's job.

pub mod car_store;
pub mod pool;

use bytes::Bytes;
use cid::multihash::Multihash;

/// A multihash as the index stores it (64-byte digests at most).
pub type Mh = Multihash<64>;

/// Why a block source could not answer. "Not held" is not an error: it is `Ok(None)`.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The index could not be read.
    #[error("block index: {0}")]
    Index(String),
    /// The shard file holding the block could not be read.
    #[error("reading shard {shard}: {source}")]
    Shard {
        shard: String,
        #[source]
        source: std::io::Error,
    },
}

/// A store of blocks addressed by multihash.
pub trait BlockSource: Send + Sync + 'static {
    /// The size in bytes of the block with this multihash, or `None` when not
    /// held. Must be cheap: an index lookup, no block read.
    fn block_size(&self, mh: &Mh) -> Result<Option<u32>, BlockError>;

    /// Sizes for many multihashes at once, in order. Implementations should
    /// override this to share one index transaction across the batch.
    fn block_sizes(&self, mhs: &[Mh]) -> Result<Vec<Option<u32>>, BlockError> {
        mhs.iter().map(|mh| self.block_size(mh)).collect()
    }

    /// The block's bytes, or `None` when not held.
    fn read_block(&self, mh: &Mh) -> Result<Option<Bytes>, BlockError>;
}
