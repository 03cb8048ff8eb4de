//! [`CarError`]: the one error type of the CAR boundary. Every variant names
//! the absolute file offset it was found at, and the CID when one was parsed,
//! so an operator can find the damage with `xxd -s`.

use cid::Cid;

/// Why a CAR file could not be read, verified or indexed.
#[derive(Debug, thiserror::Error)]
pub enum CarError {
    /// The file ended in the middle of something.
    #[error("truncated CAR: file ends at offset {offset} while reading {what}")]
    Truncated { offset: u64, what: &'static str },

    /// The first bytes are neither a CARv1 header nor the CARv2 pragma.
    #[error("not a CAR file: bad pragma at offset 0: {0}")]
    BadPragma(String),

    /// The CARv1 header (DAG-CBOR `{version, roots}`) is malformed.
    #[error("bad CAR header at offset {offset}: {reason}")]
    BadHeader { offset: u64, reason: String },

    /// The CARv2 fixed header is inconsistent (offsets past the end, overlap...).
    #[error("bad CARv2 header: {0}")]
    BadV2Header(String),

    /// A section's length prefix or CID could not be parsed.
    #[error("bad section at offset {offset}: {reason}")]
    BadSection { offset: u64, reason: String },

    /// A CID in a section (or a root) could not be parsed.
    #[error("bad CID at offset {offset}: {reason}")]
    BadCid { offset: u64, reason: String },

    /// A block is larger than [`super::MAX_BLOCK_LEN`].
    #[error("block {cid} at offset {offset} is {len} bytes, over the {max}-byte limit")]
    BlockTooLarge {
        cid: Box<Cid>,
        offset: u64,
        len: u64,
        max: u32,
    },

    /// A block's bytes do not hash to its CID.
    #[error("hash mismatch: block at offset {offset} does not match its CID {cid}")]
    HashMismatch { cid: Box<Cid>, offset: u64 },

    /// A block's CID uses a hash function this reader cannot verify. The
    /// block is refused rather than served unverified.
    #[error(
        "unsupported hash for block {cid} at offset {offset}: multihash code {code:#x}, \
         digest length {digest_len} (supported: sha2-256, sha2-512, identity)"
    )]
    UnsupportedHash {
        cid: Box<Cid>,
        offset: u64,
        code: u64,
        digest_len: u8,
    },

    /// The CARv2 index is malformed or disagrees with the data it indexes.
    #[error("bad CARv2 index: {0}")]
    BadIndex(String),

    /// The file could not be read.
    #[error("I/O error reading CAR at offset {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: std::io::Error,
    },
}

impl CarError {
    pub(crate) fn bad_header(offset: u64, reason: impl Into<String>) -> Self {
        CarError::BadHeader {
            offset,
            reason: reason.into(),
        }
    }

    pub(crate) fn bad_section(offset: u64, reason: impl Into<String>) -> Self {
        CarError::BadSection {
            offset,
            reason: reason.into(),
        }
    }

    pub(crate) fn bad_cid(offset: u64, reason: impl Into<String>) -> Self {
        CarError::BadCid {
            offset,
            reason: reason.into(),
        }
    }
}
