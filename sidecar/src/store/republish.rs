//! The republish schedule: per name, when its record is next due at Kubo
//! and how the last attempts went.
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `ipns_republish_v1` | IPNS name key | [`RepublishRow`] |
//! | `ipns_due_v1` | class (1 byte) ‖ due ms (u64 BE) ‖ name key | `()` |
//! | `ipns_failing_v1` | IPNS name key | `()`, while the name's last attempt failed |
//!
//! `ipns_due_v1` orders every name that is waiting by class, then due time:
//! class [`CLASS_FRESH`] holds records not yet published in their current
//! version (published first, never paced), class [`CLASS_REPUBLISH`] the
//! re-puts. A row and its due entry are always written in the same
//! transaction, and the row remembers its entry (state + due time) so the
//! entry can be moved; an expired row has no entry.
//!
//! [`Store::ipns_update`](super::Store::ipns_update) calls [`mark_fresh`]
//! in the transaction that stores a better record, so a new record is due
//! at once and a queued older version is superseded without any other
//! step. The republisher reads due entries with [`Store::republish_due`]
//! and applies its outcomes in batches with [`Store::republish_update`].
//!
//! Must never: decide schedules (that is `crate::ipns::republish`); it
//! stores rows and keeps the due index consistent with them.

use redb::{
    ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
    WriteTransaction,
};

use super::{
    IpnsRow, Store, StoreError,
    events::{EventKind, EventLog, EventRow},
    ipns::IPNS_RECORDS,
};

pub(crate) const REPUBLISH: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("ipns_republish_v1");
pub(crate) const DUE: TableDefinition<&[u8], ()> = TableDefinition::new("ipns_due_v1");
pub(crate) const FAILING: TableDefinition<&[u8], ()> = TableDefinition::new("ipns_failing_v1");

/// Due-index class of records whose current version was never published.
pub const CLASS_FRESH: u8 = 0;
/// Due-index class of re-puts (and of retries of published records).
pub const CLASS_REPUBLISH: u8 = 1;

const ROW_FORMAT: u8 = 1;
/// format, state, next due, last attempt, last success, failures, peers,
/// published sequence, error length.
const HEADER_LEN: usize = 1 + 1 + 8 + 8 + 8 + 4 + 4 + 8 + 2;
/// Longest error text kept per name.
pub const MAX_ERROR_LEN: usize = 256;

/// Where a name is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RepublishState {
    /// The stored record has not been published in this version yet.
    Fresh = 0,
    /// The stored record was published; the next due time is a re-put.
    Published = 1,
    /// The record's validity has passed; it is no longer published.
    Expired = 2,
}

impl RepublishState {
    pub fn as_str(self) -> &'static str {
        match self {
            RepublishState::Fresh => "fresh",
            RepublishState::Published => "published",
            RepublishState::Expired => "expired",
        }
    }

    fn from_code(code: u8) -> Result<Self, StoreError> {
        match code {
            0 => Ok(RepublishState::Fresh),
            1 => Ok(RepublishState::Published),
            2 => Ok(RepublishState::Expired),
            other => Err(StoreError::Corrupt(format!(
                "republish row with unknown state {other}"
            ))),
        }
    }

    /// The due-index class of a row in this state; `None` for expired.
    fn class(self) -> Option<u8> {
        match self {
            RepublishState::Fresh => Some(CLASS_FRESH),
            RepublishState::Published => Some(CLASS_REPUBLISH),
            RepublishState::Expired => None,
        }
    }
}

/// The schedule of one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepublishRow {
    pub state: RepublishState,
    /// When the record is next due, Unix ms (meaningless when expired).
    pub next_due_ms: u64,
    /// 0: never.
    pub last_attempt_ms: u64,
    /// 0: never.
    pub last_success_ms: u64,
    /// Consecutive failed attempts.
    pub failures: u32,
    /// DHT peers Kubo knew at the last successful put; -1: unknown.
    pub peers: i32,
    /// Sequence of the record last published successfully.
    pub published_sequence: u64,
    /// `code: message` of the last failure (empty after a success).
    pub last_error: String,
}

impl RepublishRow {
    /// A record never published, due at `due_ms`.
    pub fn fresh(due_ms: u64) -> Self {
        Self {
            state: RepublishState::Fresh,
            next_due_ms: due_ms,
            last_attempt_ms: 0,
            last_success_ms: 0,
            failures: 0,
            peers: -1,
            published_sequence: 0,
            last_error: String::new(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let error = truncate(&self.last_error, MAX_ERROR_LEN);
        let mut out = Vec::with_capacity(HEADER_LEN + error.len());
        out.push(ROW_FORMAT);
        out.push(self.state as u8);
        out.extend_from_slice(&self.next_due_ms.to_le_bytes());
        out.extend_from_slice(&self.last_attempt_ms.to_le_bytes());
        out.extend_from_slice(&self.last_success_ms.to_le_bytes());
        out.extend_from_slice(&self.failures.to_le_bytes());
        out.extend_from_slice(&self.peers.to_le_bytes());
        out.extend_from_slice(&self.published_sequence.to_le_bytes());
        out.extend_from_slice(&(error.len() as u16).to_le_bytes());
        out.extend_from_slice(error.as_bytes());
        out
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, StoreError> {
        let corrupt = || {
            StoreError::Corrupt(format!(
                "republish row of {} bytes, format {:?}: not format {ROW_FORMAT}",
                b.len(),
                b.first()
            ))
        };
        if b.len() < HEADER_LEN || b[0] != ROW_FORMAT {
            return Err(corrupt());
        }
        let mut at = 2;
        let mut take = |n: usize| {
            let s = &b[at..at + n];
            at += n;
            s
        };
        let u64_of = |s: &[u8]| u64::from_le_bytes(s.try_into().unwrap_or([0; 8]));
        let u32_of = |s: &[u8]| s.try_into().map(u32::from_le_bytes).unwrap_or(0);
        let next_due_ms = u64_of(take(8));
        let last_attempt_ms = u64_of(take(8));
        let last_success_ms = u64_of(take(8));
        let failures = u32_of(take(4));
        let peers = u32_of(take(4)) as i32;
        let published_sequence = u64_of(take(8));
        let error_len = usize::from(u16::from_le_bytes([b[HEADER_LEN - 2], b[HEADER_LEN - 1]]));
        let error = b
            .get(HEADER_LEN..HEADER_LEN + error_len)
            .ok_or_else(corrupt)?;
        Ok(Self {
            state: RepublishState::from_code(b[1])?,
            next_due_ms,
            last_attempt_ms,
            last_success_ms,
            failures,
            peers,
            published_sequence,
            last_error: String::from_utf8_lossy(error).into_owned(),
        })
    }

    /// This row's key in `ipns_due_v1`, if it has one.
    fn due_key(&self, name_key: &[u8]) -> Option<Vec<u8>> {
        self.state
            .class()
            .map(|class| due_key(class, self.next_due_ms, name_key))
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn due_key(class: u8, due_ms: u64, name_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + name_key.len());
    k.push(class);
    k.extend_from_slice(&due_ms.to_be_bytes());
    k.extend_from_slice(name_key);
    k
}

/// `(class, due ms, name key)` of a due-index key.
fn split_due_key(k: &[u8]) -> Result<(u8, u64, &[u8]), StoreError> {
    if k.len() < 9 {
        return Err(StoreError::Corrupt(format!(
            "due index key of {} bytes",
            k.len()
        )));
    }
    let mut due = [0u8; 8];
    due.copy_from_slice(&k[1..9]);
    Ok((k[0], u64::from_be_bytes(due), &k[9..]))
}

/// The tables a schedule write touches, opened once per transaction.
pub(crate) struct ScheduleTables<'txn> {
    rows: Table<'txn, &'static [u8], &'static [u8]>,
    due: Table<'txn, &'static [u8], ()>,
    failing: Table<'txn, &'static [u8], ()>,
}

impl<'txn> ScheduleTables<'txn> {
    pub(crate) fn open(tx: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            rows: tx.open_table(REPUBLISH)?,
            due: tx.open_table(DUE)?,
            failing: tx.open_table(FAILING)?,
        })
    }

    fn get(&self, key: &[u8]) -> Result<Option<RepublishRow>, StoreError> {
        self.rows
            .get(key)?
            .map(|v| RepublishRow::from_bytes(v.value()))
            .transpose()
    }

    /// Replaces the row of `key` (moving its due entry and failing mark).
    fn put(
        &mut self,
        key: &[u8],
        old: Option<&RepublishRow>,
        new: &RepublishRow,
    ) -> Result<(), StoreError> {
        if let Some(old_due) = old.and_then(|o| o.due_key(key)) {
            self.due.remove(old_due.as_slice())?;
        }
        if let Some(new_due) = new.due_key(key) {
            self.due.insert(new_due.as_slice(), ())?;
        }
        if new.failures > 0 {
            self.failing.insert(key, ())?;
        } else if old.is_some_and(|o| o.failures > 0) {
            self.failing.remove(key)?;
        }
        self.rows.insert(key, new.to_bytes().as_slice())?;
        Ok(())
    }
}

/// Makes the newly stored record of `key` due at `due_ms` as fresh, keeping
/// the history of earlier versions (last success, failures, error).
pub(crate) fn mark_fresh(
    tables: &mut ScheduleTables<'_>,
    key: &[u8],
    due_ms: u64,
) -> Result<(), StoreError> {
    let old = tables.get(key)?;
    let new = match &old {
        Some(o) => RepublishRow {
            state: RepublishState::Fresh,
            next_due_ms: due_ms,
            ..o.clone()
        },
        None => RepublishRow::fresh(due_ms),
    };
    tables.put(key, old.as_ref(), &new)
}

/// A name whose record is due.
#[derive(Debug, Clone)]
pub struct DueEntry {
    pub key: Vec<u8>,
    pub row: RepublishRow,
    pub record: IpnsRow,
}

/// One pass over one class of the due index.
#[derive(Debug, Default)]
pub struct DueScan {
    /// Entries due at or before `now`, in due order (at most the limit).
    pub due: Vec<DueEntry>,
    /// The earliest due time after `now` in this class, if any.
    pub next_due_ms: Option<u64>,
}

/// What `GET /admin/republish` shows, read in one snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScheduleCounts {
    /// Names with a schedule row (any state).
    pub names: u64,
    /// Names waiting in the due index (fresh + republish).
    pub queued: u64,
    /// Of those, due now or earlier.
    pub due_now: u64,
    /// Due within the next hour (after now).
    pub due_next_hour: u64,
    /// Fresh records (never published in this version) waiting.
    pub fresh: u64,
    /// The oldest due time that has passed, Unix ms.
    pub oldest_overdue_ms: Option<u64>,
    /// Names whose last attempt failed.
    pub failing: u64,
}

impl Store {
    /// Up to `limit` entries of `class` due at or before `now_ms`, skipping
    /// names for which `skip` says true (in flight), and the next due time
    /// after `now_ms`. Entries whose record row is missing are dropped from
    /// the result (never happens: a row is only written with its record).
    pub fn republish_due(
        &self,
        class: u8,
        now_ms: u64,
        limit: usize,
        skip: impl Fn(&[u8]) -> bool,
    ) -> Result<DueScan, StoreError> {
        let tx = self.db.begin_read()?;
        let due = tx.open_table(DUE)?;
        let rows = tx.open_table(REPUBLISH)?;
        let records = tx.open_table(IPNS_RECORDS)?;
        let mut scan = DueScan::default();
        let start = [class];
        let end = [class + 1];
        for entry in due.range::<&[u8]>(&start[..]..&end[..])? {
            let (k, _) = entry?;
            let (_, due_ms, name_key) = split_due_key(k.value())?;
            if due_ms > now_ms {
                scan.next_due_ms = Some(due_ms);
                break;
            }
            if scan.due.len() >= limit {
                break;
            }
            if skip(name_key) {
                continue;
            }
            let Some(row) = rows.get(name_key)? else {
                continue;
            };
            let Some(record) = records.get(name_key)? else {
                continue;
            };
            scan.due.push(DueEntry {
                key: name_key.to_vec(),
                row: RepublishRow::from_bytes(row.value())?,
                record: IpnsRow::from_bytes(record.value())?,
            });
        }
        Ok(scan)
    }

    /// Entries of `class` due at or before `now_ms`.
    pub fn republish_count_due(&self, class: u8, now_ms: u64) -> Result<u64, StoreError> {
        let tx = self.db.begin_read()?;
        let due = tx.open_table(DUE)?;
        let start = [class];
        let end = due_key(class, now_ms.saturating_add(1), &[]);
        Ok(due.range::<&[u8]>(&start[..]..end.as_slice())?.count() as u64)
    }

    /// The schedule row of a name key.
    pub fn republish_get(&self, key: &[u8]) -> Result<Option<RepublishRow>, StoreError> {
        let tx = self.db.begin_read()?;
        let rows = tx.open_table(REPUBLISH)?;
        rows.get(key)?
            .map(|v| RepublishRow::from_bytes(v.value()))
            .transpose()
    }

    /// Applies republish outcomes in one durable transaction. For each
    /// `(key, outcome)`, `decide(key, stored record, stored row, outcome)`
    /// returns the row to write, or `None` to leave the name alone (its
    /// record or row is gone). The due index and failing marks follow.
    pub fn republish_update<T>(
        &self,
        outcomes: &[(Vec<u8>, T)],
        mut decide: impl FnMut(
            &[u8],
            Option<&IpnsRow>,
            Option<&RepublishRow>,
            &T,
        ) -> Option<RepublishRow>,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let records = tx.open_table(IPNS_RECORDS)?;
            let mut tables = ScheduleTables::open(&tx)?;
            let mut log = EventLog::open(&tx, self.event_retention())?;
            for (key, outcome) in outcomes {
                let record = records
                    .get(key.as_slice())?
                    .map(|v| IpnsRow::from_bytes(v.value()))
                    .transpose()?;
                let old = tables.get(key)?;
                if let Some(new) = decide(key, record.as_ref(), old.as_ref(), outcome) {
                    let expires = new.state == RepublishState::Expired
                        && old
                            .as_ref()
                            .is_none_or(|o| o.state != RepublishState::Expired);
                    if let (true, Some(r)) = (expires, &record) {
                        log.append(&EventRow {
                            kind: EventKind::Expired,
                            at_ms: new.last_attempt_ms,
                            key: key.clone(),
                            sequence: r.sequence,
                            record: r.record.clone(),
                        })?;
                    }
                    tables.put(key, old.as_ref(), &new)?;
                }
            }
            log.finish()?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Up to `limit` names whose last attempt failed, with their rows.
    pub fn republish_failing(
        &self,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, RepublishRow)>, StoreError> {
        let tx = self.db.begin_read()?;
        let failing = tx.open_table(FAILING)?;
        let rows = tx.open_table(REPUBLISH)?;
        let mut out = Vec::new();
        for entry in failing.iter()?.take(limit) {
            let (k, _) = entry?;
            if let Some(row) = rows.get(k.value())? {
                out.push((k.value().to_vec(), RepublishRow::from_bytes(row.value())?));
            }
        }
        Ok(out)
    }

    /// Counts for the admin view, at `now_ms`.
    pub fn republish_counts(&self, now_ms: u64) -> Result<ScheduleCounts, StoreError> {
        let tx = self.db.begin_read()?;
        let due = tx.open_table(DUE)?;
        let rows = tx.open_table(REPUBLISH)?;
        let failing = tx.open_table(FAILING)?;
        let mut c = ScheduleCounts {
            names: rows.len()?,
            queued: due.len()?,
            failing: failing.len()?,
            ..ScheduleCounts::default()
        };
        let hour_later = now_ms.saturating_add(3_600_000);
        for class in [CLASS_FRESH, CLASS_REPUBLISH] {
            let start = [class];
            let now_end = due_key(class, now_ms.saturating_add(1), &[]);
            let hour_end = due_key(class, hour_later.saturating_add(1), &[]);
            let overdue = due.range::<&[u8]>(&start[..]..now_end.as_slice())?;
            let mut first = None;
            let mut n = 0;
            for entry in overdue {
                let (k, _) = entry?;
                if first.is_none() {
                    first = Some(split_due_key(k.value())?.1);
                }
                n += 1;
            }
            c.due_now += n;
            c.oldest_overdue_ms = match (c.oldest_overdue_ms, first) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            c.due_next_hour += due
                .range::<&[u8]>(now_end.as_slice()..hour_end.as_slice())?
                .count() as u64;
            if class == CLASS_FRESH {
                let end = [CLASS_FRESH + 1];
                c.fresh = due.range::<&[u8]>(&start[..]..&end[..])?.count() as u64;
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sequence: u64) -> IpnsRow {
        IpnsRow {
            received_at_ms: 1_000,
            sequence,
            validity_secs: 1_900_000_000,
            validity_nanos: 0,
            ttl_ns: 0,
            source: 1,
            record: format!("record {sequence}").into_bytes(),
        }
    }

    #[test]
    fn a_fresh_store_has_an_empty_schedule() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.redb")).unwrap();
        let scan = store
            .republish_due(CLASS_REPUBLISH, u64::MAX - 1, 10, |_| false)
            .unwrap();
        assert!(scan.due.is_empty() && scan.next_due_ms.is_none());
        assert_eq!(store.republish_count_due(CLASS_FRESH, 1).unwrap(), 0);
        assert_eq!(
            store.republish_counts(1).unwrap(),
            ScheduleCounts::default()
        );
        assert!(store.republish_failing(10).unwrap().is_empty());
    }

    #[test]
    fn rows_round_trip_and_long_errors_are_cut_on_a_char_boundary() {
        let mut r = RepublishRow::fresh(42);
        r.failures = 3;
        r.peers = 7;
        r.last_error = "é".repeat(200);
        let back = RepublishRow::from_bytes(&r.to_bytes()).unwrap();
        assert_eq!(back.failures, 3);
        assert_eq!(back.peers, 7);
        assert_eq!(back.last_error.len(), 256);
        assert!(back.last_error.chars().all(|c| c == 'é'));
        let mut bad = r.to_bytes();
        bad[1] = 9;
        assert!(RepublishRow::from_bytes(&bad).is_err());
        assert!(RepublishRow::from_bytes(&bad[..10]).is_err());
        let mut short = r.to_bytes();
        short.truncate(HEADER_LEN + 3);
        assert!(RepublishRow::from_bytes(&short).is_err());
    }

    #[test]
    fn storing_a_record_makes_it_due_and_outcomes_move_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.redb")).unwrap();
        let always = |_: &[u8], _: Option<&IpnsRow>, _: &IpnsRow| Ok::<_, ()>(true);
        store
            .ipns_update(
                &[(b"a".to_vec(), record(1)), (b"b".to_vec(), record(1))],
                always,
            )
            .unwrap();
        let scan = store
            .republish_due(CLASS_FRESH, 1_000, 10, |_| false)
            .unwrap();
        assert_eq!(scan.due.len(), 2);
        assert_eq!(scan.due[0].row, RepublishRow::fresh(1_000));
        let skipped = store
            .republish_due(CLASS_FRESH, 1_000, 10, |k| k == b"a")
            .unwrap();
        assert_eq!(skipped.due.len(), 1);
        assert_eq!(skipped.due[0].key, b"b");
        assert_eq!(
            store
                .republish_due(CLASS_FRESH, 999, 10, |_| false)
                .unwrap()
                .next_due_ms,
            Some(1_000)
        );

        // "a" published, due again at 50_000; "b" failed, retried at 5_000.
        let outcomes = vec![(b"a".to_vec(), true), (b"b".to_vec(), false)];
        store
            .republish_update(&outcomes, |_, rec, old, ok| {
                let old = old.unwrap().clone();
                Some(if *ok {
                    RepublishRow {
                        state: RepublishState::Published,
                        next_due_ms: 50_000,
                        last_success_ms: 1_000,
                        published_sequence: rec.unwrap().sequence,
                        ..old
                    }
                } else {
                    RepublishRow {
                        next_due_ms: 5_000,
                        failures: old.failures + 1,
                        last_error: "kubo_error: boom".into(),
                        ..old
                    }
                })
            })
            .unwrap();
        assert!(
            store
                .republish_due(CLASS_FRESH, 1_000, 10, |_| false)
                .unwrap()
                .due
                .is_empty()
        );
        let c = store.republish_counts(1_000).unwrap();
        assert_eq!(
            c,
            ScheduleCounts {
                names: 2,
                queued: 2,
                due_now: 0,
                due_next_hour: 2,
                fresh: 1,
                oldest_overdue_ms: None,
                failing: 1,
            }
        );
        assert_eq!(store.republish_failing(10).unwrap()[0].0, b"b");
        let later = store
            .republish_due(CLASS_REPUBLISH, 60_000, 10, |_| false)
            .unwrap();
        assert_eq!(later.due.len(), 1);
        assert_eq!(later.due[0].row.published_sequence, 1);
        assert_eq!(
            store.republish_count_due(CLASS_REPUBLISH, 60_000).unwrap(),
            1
        );
        assert_eq!(
            store.republish_count_due(CLASS_REPUBLISH, 49_999).unwrap(),
            0
        );

        // A newer "a" supersedes its queued re-put: fresh again, due now,
        // history kept.
        let mut newer = record(2);
        newer.received_at_ms = 2_000;
        store
            .ipns_update(&[(b"a".to_vec(), newer)], always)
            .unwrap();
        let row = store.republish_get(b"a").unwrap().unwrap();
        assert_eq!(row.state, RepublishState::Fresh);
        assert_eq!(row.next_due_ms, 2_000);
        assert_eq!(row.last_success_ms, 1_000);
        assert_eq!(
            store
                .republish_count_due(CLASS_REPUBLISH, u64::MAX - 1)
                .unwrap(),
            0
        );
        let c = store.republish_counts(2_000).unwrap();
        assert_eq!((c.queued, c.fresh, c.due_now), (2, 2, 1));
        assert_eq!(c.oldest_overdue_ms, Some(2_000));
    }
}
