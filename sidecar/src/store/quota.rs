//! Quota day counters: `quota_days_v1`, counter key → [`DayWindow`] bytes.
//!
//! Written in batches by the quota flusher; read when a peer or prefix that
//! is not in memory shows up. A value of the wrong size (a future format)
//! reads as absent rather than failing the connection.

use redb::{ReadableDatabase, TableDefinition};

use super::{Store, StoreError};
use crate::quota::{CounterKey, CounterSource, budget::DayWindow};

pub(crate) const QUOTA_DAYS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("quota_days_v1");

impl Store {
    /// The persisted window for `key`, if any.
    pub fn quota_window(&self, key: &CounterKey) -> Result<Option<DayWindow>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(QUOTA_DAYS)?;
        let k = key.to_bytes();
        Ok(table
            .get(k.as_slice())?
            .and_then(|v| DayWindow::from_bytes(v.value())))
    }

    /// Writes windows in one durable transaction; empty windows are deleted.
    pub fn save_quota_windows(
        &self,
        windows: &mut [(CounterKey, DayWindow)],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        if windows.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(QUOTA_DAYS)?;
            for (key, window) in windows.iter_mut() {
                let k = key.to_bytes();
                if window.is_empty(now_ms) {
                    table.remove(k.as_slice())?;
                } else {
                    table.insert(k.as_slice(), window.to_bytes().as_slice())?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}

impl CounterSource for Store {
    fn load(&self, key: &CounterKey) -> Option<DayWindow> {
        match self.quota_window(key) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "reading quota counters failed; starting from zero");
                None
            }
        }
    }
}
