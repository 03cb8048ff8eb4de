//! [`ShardMeta`]: one row of the shard registry (`shards_v1`), stored as JSON
//! so fields can be added without a new table. Pure encode/decode.

use serde::{Deserialize, Serialize};

use super::StoreError;

/// What the registry knows about an indexed CAR file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    /// Registry id, referenced by every [`super::BlockLocation`].
    pub id: u32,
    /// Canonical (absolute, symlink-free) path of the CAR file.
    pub path: String,
    /// File size in bytes when indexed.
    pub file_size: u64,
    /// Modification time when indexed, nanoseconds since the Unix epoch.
    pub mtime_unix_nanos: i128,
    /// CAR version (1 or 2).
    pub car_version: u8,
    /// Root CIDs from the header, as strings.
    pub roots: Vec<String>,
    /// Sections (blocks) in the file, duplicates included.
    pub blocks: u64,
    /// Sum of block lengths.
    pub block_bytes: u64,
    /// When the index commit was made, seconds since the Unix epoch.
    pub indexed_at_unix: u64,
}

impl ShardMeta {
    pub(crate) fn encode(&self) -> Vec<u8> {
        // Serialising plain strings and integers to JSON cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        serde_json::from_slice(bytes)
            .map_err(|e| StoreError::Corrupt(format!("shard registry row: {e}")))
    }
}
