//! IPNS records: `ipns_records_v1`, name key → [`IpnsRow`] (metadata + the
//! record's exact bytes).
//!
//! The key is the name's peer-ID multihash bytes (what `/ipns/<key>` routing
//! keys carry), so every textual form of a name (`k51…`, `bafz…`, `12D3…`)
//! lands on the same row. One row per name: the best record seen.
//!
//! [`Store::ipns_update`] applies a batch of candidate rows in one write
//! transaction: the caller's `decide` sees the stored row (read inside the
//! same transaction, so no other writer can slip in between) and says
//! whether the candidate replaces it. One durable commit answers the whole
//! batch (group commit), so an acknowledged record survives `kill -9`.
//!
//! Must never: judge records (that is `crate::ipns`); it only stores bytes
//! and the metadata the caller extracted. A row it cannot decode (a future
//! format) reads as [`StoreError::Corrupt`], never as "absent", so a record
//! is never silently overwritten by an older one. Each stored record gets a
//! change-feed event in the same transaction (`store::events`).

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{
    Store, StoreError,
    events::{EventKind, EventLog, EventRow},
    republish::{ScheduleTables, mark_fresh},
};

pub(crate) const IPNS_RECORDS: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("ipns_records_v1");

/// First byte of every row: the row format.
const ROW_FORMAT: u8 = 1;
/// Bytes of the fixed header before the record: format, received-at,
/// sequence, validity seconds and nanoseconds, TTL, source.
const HEADER_LEN: usize = 1 + 8 + 8 + 8 + 4 + 8 + 1;

/// What the store keeps per name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpnsRow {
    /// When this sidecar accepted the record, Unix milliseconds.
    pub received_at_ms: u64,
    pub sequence: u64,
    /// End of validity (EOL), Unix seconds and nanoseconds.
    pub validity_secs: i64,
    pub validity_nanos: u32,
    /// The record's TTL in nanoseconds (0: none given).
    pub ttl_ns: u64,
    /// Where the record came from; the meaning of the codes is
    /// `crate::ipns::Source`'s.
    pub source: u8,
    /// The record exactly as received (the protobuf `IpnsEntry`).
    pub record: Vec<u8>,
}

impl IpnsRow {
    /// End of validity in Unix milliseconds (0 for a time before 1970).
    pub fn validity_ms(&self) -> u64 {
        u64::try_from(self.validity_secs).map_or(0, |s| {
            s.saturating_mul(1000) + u64::from(self.validity_nanos / 1_000_000)
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.record.len());
        out.push(ROW_FORMAT);
        out.extend_from_slice(&self.received_at_ms.to_le_bytes());
        out.extend_from_slice(&self.sequence.to_le_bytes());
        out.extend_from_slice(&self.validity_secs.to_le_bytes());
        out.extend_from_slice(&self.validity_nanos.to_le_bytes());
        out.extend_from_slice(&self.ttl_ns.to_le_bytes());
        out.push(self.source);
        out.extend_from_slice(&self.record);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StoreError> {
        if bytes.len() < HEADER_LEN || bytes[0] != ROW_FORMAT {
            return Err(StoreError::Corrupt(format!(
                "IPNS row of {} bytes, format {:?}: not format {ROW_FORMAT}",
                bytes.len(),
                bytes.first()
            )));
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            b
        };
        let mut nanos = [0u8; 4];
        nanos.copy_from_slice(&bytes[25..29]);
        Ok(Self {
            received_at_ms: u64::from_le_bytes(u64_at(1)),
            sequence: u64::from_le_bytes(u64_at(9)),
            validity_secs: i64::from_le_bytes(u64_at(17)),
            validity_nanos: u32::from_le_bytes(nanos),
            ttl_ns: u64::from_le_bytes(u64_at(29)),
            source: bytes[37],
            record: bytes[HEADER_LEN..].to_vec(),
        })
    }
}

impl Store {
    /// The stored row for a name key, if any.
    pub fn ipns_get(&self, key: &[u8]) -> Result<Option<IpnsRow>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(IPNS_RECORDS)?;
        table
            .get(key)?
            .map(|v| IpnsRow::from_bytes(v.value()))
            .transpose()
    }

    /// Applies candidates in one durable write transaction. For each
    /// `(key, row)`, `decide(key, stored, &row)` runs with the row stored
    /// for that key at that point of the batch (earlier candidates in the
    /// batch included) and returns `Ok(true)` to store the candidate,
    /// `Ok(false)` to keep what is there, or an error that is handed back
    /// for that candidate only. Returns one verdict per candidate, in
    /// order, once the commit is on disk; a store error fails the whole
    /// batch and nothing is written.
    pub fn ipns_update<E>(
        &self,
        candidates: &[(Vec<u8>, IpnsRow)],
        mut decide: impl FnMut(&[u8], Option<&IpnsRow>, &IpnsRow) -> Result<bool, E>,
    ) -> Result<Vec<Result<bool, E>>, StoreError> {
        let mut verdicts = Vec::with_capacity(candidates.len());
        let tx = self.db.begin_write()?;
        let mut wrote = false;
        {
            let mut table = tx.open_table(IPNS_RECORDS)?;
            let mut schedule = ScheduleTables::open(&tx)?;
            let mut log = EventLog::open(&tx, self.event_retention())?;
            for (key, row) in candidates {
                let stored = table
                    .get(key.as_slice())?
                    .map(|v| IpnsRow::from_bytes(v.value()))
                    .transpose()?;
                let verdict = decide(key, stored.as_ref(), row);
                if let Ok(true) = verdict {
                    table.insert(key.as_slice(), row.to_bytes().as_slice())?;
                    mark_fresh(&mut schedule, key, row.received_at_ms)?;
                    log.append(&EventRow {
                        kind: EventKind::Updated,
                        at_ms: row.received_at_ms,
                        key: key.clone(),
                        sequence: row.sequence,
                        record: row.record.clone(),
                    })?;
                    wrote = true;
                }
                verdicts.push(verdict);
            }
            log.finish()?;
        }
        if wrote {
            tx.commit()?;
        } else {
            tx.abort()?;
        }
        Ok(verdicts)
    }

    /// Up to `limit` rows in key order, starting after `after` (exclusive).
    pub fn ipns_list(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, IpnsRow)>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(IPNS_RECORDS)?;
        let range = match after {
            Some(a) => {
                table.range::<&[u8]>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))?
            }
            None => table.range::<&[u8]>(..)?,
        };
        let mut out = Vec::new();
        for entry in range.take(limit) {
            let (k, v) = entry?;
            out.push((k.value().to_vec(), IpnsRow::from_bytes(v.value())?));
        }
        Ok(out)
    }

    /// Number of names stored.
    pub fn ipns_count(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(IPNS_RECORDS)?.len()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sequence: u64, record: &[u8]) -> IpnsRow {
        IpnsRow {
            received_at_ms: 1_700_000_000_000,
            sequence,
            validity_secs: 1_900_000_000,
            validity_nanos: 123_456_789,
            ttl_ns: 60_000_000_000,
            source: 2,
            record: record.to_vec(),
        }
    }

    #[test]
    fn rows_round_trip_and_foreign_formats_are_refused() {
        let r = row(7, b"record bytes");
        assert_eq!(IpnsRow::from_bytes(&r.to_bytes()).unwrap(), r);
        let mut future = r.to_bytes();
        future[0] = 2;
        assert!(IpnsRow::from_bytes(&future).is_err());
        assert!(IpnsRow::from_bytes(&[1, 2, 3]).is_err());
    }

    #[test]
    fn a_batch_decides_against_what_is_stored_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path).unwrap();
        let higher = |_: &[u8], old: Option<&IpnsRow>, new: &IpnsRow| -> Result<bool, String> {
            match old {
                Some(o) if o.record == new.record => Ok(false),
                Some(o) if o.sequence >= new.sequence => {
                    Err(format!("not newer than {}", o.sequence))
                }
                _ => Ok(true),
            }
        };
        let batch = vec![
            (b"a".to_vec(), row(1, b"a1")),
            (b"b".to_vec(), row(5, b"b5")),
            (b"a".to_vec(), row(2, b"a2")), // sees a1 from this batch
            (b"b".to_vec(), row(4, b"b4")), // older than b5
            (b"b".to_vec(), row(5, b"b5")), // the same bytes: no-op
        ];
        let verdicts = store.ipns_update(&batch, higher).unwrap();
        assert_eq!(
            verdicts,
            vec![
                Ok(true),
                Ok(true),
                Ok(true),
                Err("not newer than 5".into()),
                Ok(false)
            ]
        );
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.ipns_get(b"a").unwrap().unwrap().record, b"a2");
        assert_eq!(store.ipns_get(b"b").unwrap().unwrap().sequence, 5);
        assert_eq!(store.ipns_get(b"c").unwrap(), None);
        assert_eq!(store.ipns_count().unwrap(), 2);
        let all = store.ipns_list(None, 10).unwrap();
        assert_eq!(
            all.iter().map(|(k, _)| k.as_slice()).collect::<Vec<_>>(),
            [b"a", b"b"]
        );
        let rest = store.ipns_list(Some(b"a"), 10).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].0, b"b");
    }
}
