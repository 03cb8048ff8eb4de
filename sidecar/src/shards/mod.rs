//! Shards: CAR files the sidecar serves blocks from, and their import into
//! the block index.
//!
//! # Brief overview
//!
//! - [`import_car`] / [`import_car_with`]: scan and verify one CAR, then index
//!   all its blocks and register the shard in ONE durable redb commit.
//! - [`import_with_progress_bar`]: the CLI helper: a progress bar on a TTY and
//!   a one-line summary per file.
//! - [`list_shards`]: the registry.
//!
//! This module decides what gets indexed; it never serves blocks (that is
//! `blocks::car_store`) and never parses CAR bytes itself (that is `car`).

mod import;
mod progress;

#[cfg(test)]
mod tests;

pub use import::{
    INSERT_BATCH, ImportError, ImportOptions, ImportOutcome, ImportPhase, ImportProgress,
    ImportSummary, import_car, import_car_with,
};
pub use progress::{
    ImportFailures, format_summary, import_each_with_progress_bar, import_with_progress_bar,
};

use crate::store::{ShardMeta, Store, StoreError};

/// Every registered shard, by id.
pub fn list_shards(store: &Store) -> Result<Vec<ShardMeta>, StoreError> {
    store.shards()
}
