//! The schedule of the Kubo node's own keys (`[republish] kubo_keys`): per
//! Kubo key name, a [`RepublishRow`] (the same row the IPNS names use).
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `kubo_keys_v1` | Kubo key name (`self`, …) | [`RepublishRow`] |
//!
//! A Kubo keystore holds a handful of keys, so the table is read whole and
//! needs no due index. Written by `crate::ipns::republish::kubo_keys` only.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{Store, StoreError, republish::RepublishRow};

pub(crate) const KUBO_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("kubo_keys_v1");

impl Store {
    /// Every Kubo key's row, in key-name order.
    pub fn kubo_keys(&self) -> Result<Vec<(String, RepublishRow)>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(KUBO_KEYS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.push((k.value().to_owned(), RepublishRow::from_bytes(v.value())?));
        }
        Ok(out)
    }

    /// Writes `rows` and deletes the keys in `removed`, in one durable
    /// transaction.
    pub fn kubo_keys_update(
        &self,
        rows: &[(String, RepublishRow)],
        removed: &[String],
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(KUBO_KEYS)?;
            for (key, row) in rows {
                table.insert(key.as_str(), row.to_bytes().as_slice())?;
            }
            for key in removed {
                table.remove(key.as_str())?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::republish::RepublishState;

    #[test]
    fn rows_survive_a_reopen_and_removed_keys_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path).unwrap();
        assert!(store.kubo_keys().unwrap().is_empty());
        let published = RepublishRow {
            state: RepublishState::Published,
            last_success_ms: 7,
            ..RepublishRow::fresh(42)
        };
        let rows = vec![
            ("self".to_owned(), RepublishRow::fresh(1)),
            ("site".to_owned(), published.clone()),
        ];
        store.kubo_keys_update(&rows, &[]).unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.kubo_keys().unwrap(), rows);
        store.kubo_keys_update(&[], &["self".to_owned()]).unwrap();
        assert_eq!(
            store.kubo_keys().unwrap(),
            vec![("site".to_owned(), published)]
        );
    }
}
