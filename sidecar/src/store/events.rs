//! The change feed: every stored better record and every expiry, numbered.
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `ipns_events_v1` | event number (`u64`) | [`EventRow`] |
//! | `meta` | `"ipns_events_next"` | the next event number |
//!
//! Numbers start at 1, only grow, and survive restarts (the next number is
//! kept in `meta`, so pruning every event never reuses one). An event is
//! appended in the same write transaction as the change it reports
//! ([`Store::ipns_update`](super::Store::ipns_update) for stored records,
//! [`Store::republish_update`](super::Store::republish_update) for
//! expiries), so an acknowledged change always has its event and an event
//! never describes a change that was rolled back. Each append prunes the
//! oldest events beyond the retention ([`Store::set_event_retention`]).
//!
//! Must never: decide what a change is (callers say), or renumber.

use std::sync::atomic::Ordering;

use redb::{ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction};

use super::{META, Store, StoreError};

pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("ipns_events_v1");
const NEXT_KEY: &str = "ipns_events_next";
const ROW_FORMAT: u8 = 1;
/// format, kind, at, sequence, key length.
const HEADER_LEN: usize = 1 + 1 + 8 + 8 + 1;
/// Events kept when nobody says otherwise.
pub const DEFAULT_EVENT_RETENTION: u64 = 100_000;

/// What happened to a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EventKind {
    /// A better record was stored.
    Updated = 1,
    /// The stored record's validity passed.
    Expired = 2,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Updated => "updated",
            EventKind::Expired => "expired",
        }
    }
}

/// One change, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub kind: EventKind,
    /// When the change was made, Unix ms.
    pub at_ms: u64,
    /// The name key (see `store::ipns`).
    pub key: Vec<u8>,
    pub sequence: u64,
    /// The record's bytes (the new one, or the one that expired).
    pub record: Vec<u8>,
}

impl EventRow {
    pub fn to_bytes(&self) -> Vec<u8> {
        let key_len = self.key.len().min(usize::from(u8::MAX));
        let mut out = Vec::with_capacity(HEADER_LEN + key_len + self.record.len());
        out.push(ROW_FORMAT);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.at_ms.to_le_bytes());
        out.extend_from_slice(&self.sequence.to_le_bytes());
        out.push(key_len as u8);
        out.extend_from_slice(&self.key[..key_len]);
        out.extend_from_slice(&self.record);
        out
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, StoreError> {
        let corrupt = || StoreError::Corrupt(format!("event row of {} bytes", b.len()));
        if b.len() < HEADER_LEN || b[0] != ROW_FORMAT {
            return Err(corrupt());
        }
        let kind = match b[1] {
            1 => EventKind::Updated,
            2 => EventKind::Expired,
            _ => return Err(corrupt()),
        };
        let u64_at = |i: usize| {
            b.get(i..i + 8)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_le_bytes)
        };
        let at_ms = u64_at(2).ok_or_else(corrupt)?;
        let sequence = u64_at(10).ok_or_else(corrupt)?;
        let key_len = usize::from(b[18]);
        let key = b
            .get(HEADER_LEN..HEADER_LEN + key_len)
            .ok_or_else(corrupt)?;
        Ok(Self {
            kind,
            at_ms,
            sequence,
            key: key.to_vec(),
            record: b[HEADER_LEN + key_len..].to_vec(),
        })
    }
}

/// Appends events inside a write transaction; [`EventLog::finish`] saves
/// the next number and prunes.
pub(crate) struct EventLog<'txn> {
    events: Table<'txn, u64, &'static [u8]>,
    meta: Table<'txn, &'static str, u64>,
    next: u64,
    retention: u64,
    appended: bool,
}

impl<'txn> EventLog<'txn> {
    pub(crate) fn open(tx: &'txn WriteTransaction, retention: u64) -> Result<Self, StoreError> {
        let meta = tx.open_table(META)?;
        let next = meta.get(NEXT_KEY)?.map_or(1, |v| v.value());
        Ok(Self {
            events: tx.open_table(EVENTS)?,
            meta,
            next,
            retention,
            appended: false,
        })
    }

    pub(crate) fn append(&mut self, row: &EventRow) -> Result<u64, StoreError> {
        let id = self.next;
        self.events.insert(id, row.to_bytes().as_slice())?;
        self.next += 1;
        self.appended = true;
        Ok(id)
    }

    pub(crate) fn finish(mut self) -> Result<(), StoreError> {
        if !self.appended {
            return Ok(());
        }
        self.meta.insert(NEXT_KEY, self.next)?;
        let keep_from = self.next.saturating_sub(self.retention.max(1));
        loop {
            let first = self.events.first()?.map(|(k, _)| k.value());
            match first {
                Some(id) if id < keep_from => {
                    self.events.remove(id)?;
                }
                _ => break,
            }
        }
        Ok(())
    }
}

/// A page of the feed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventPage {
    pub events: Vec<(u64, EventRow)>,
    /// The oldest event still kept (`next` when none is).
    pub oldest: u64,
    /// The number the next event will get.
    pub next: u64,
}

impl Store {
    /// Events kept (at least 1). Takes effect at the next append.
    pub fn set_event_retention(&self, events: u64) {
        self.event_retention.store(events.max(1), Ordering::Relaxed);
    }

    pub(crate) fn event_retention(&self) -> u64 {
        self.event_retention.load(Ordering::Relaxed)
    }

    /// Up to `limit` events numbered above `after`, in order, with the
    /// feed's bounds.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<EventPage, StoreError> {
        let tx = self.db.begin_read()?;
        let events = tx.open_table(EVENTS)?;
        let next = tx.open_table(META)?.get(NEXT_KEY)?.map_or(1, |v| v.value());
        let oldest = events.first()?.map_or(next, |(k, _)| k.value());
        let mut page = EventPage {
            events: Vec::new(),
            oldest,
            next,
        };
        for entry in events.range(after.saturating_add(1)..)?.take(limit) {
            let (k, v) = entry?;
            page.events
                .push((k.value(), EventRow::from_bytes(v.value())?));
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: u64) -> EventRow {
        EventRow {
            kind: EventKind::Updated,
            at_ms: 1_000 + seq,
            key: vec![0, 36, 8, 1],
            sequence: seq,
            record: vec![seq as u8; 20],
        }
    }

    #[test]
    fn rows_round_trip_and_bad_ones_are_refused() {
        let r = row(7);
        assert_eq!(EventRow::from_bytes(&r.to_bytes()).unwrap(), r);
        let mut bytes = r.to_bytes();
        bytes[1] = 9;
        assert!(EventRow::from_bytes(&bytes).is_err());
        assert!(EventRow::from_bytes(&[1, 1, 0]).is_err());
        let mut short = r.to_bytes();
        short.truncate(HEADER_LEN + 2);
        assert!(EventRow::from_bytes(&short).is_err());
    }

    #[test]
    fn numbers_grow_across_reopens_and_pruning_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let append = |store: &Store, n: u64| {
            let tx = store.db.begin_write().unwrap();
            {
                let mut log = EventLog::open(&tx, store.event_retention()).unwrap();
                for i in 0..n {
                    log.append(&row(i)).unwrap();
                }
                log.finish().unwrap();
            }
            tx.commit().unwrap();
        };
        let store = Store::open(&path).unwrap();
        let empty = store.events_after(0, 10).unwrap();
        assert_eq!((empty.oldest, empty.next), (1, 1));
        store.set_event_retention(5);
        append(&store, 3);
        drop(store);
        let store = Store::open(&path).unwrap();
        store.set_event_retention(5);
        append(&store, 4);
        let page = store.events_after(0, 100).unwrap();
        let ids: Vec<u64> = page.events.iter().map(|(i, _)| *i).collect();
        assert_eq!(ids, [3, 4, 5, 6, 7]);
        assert_eq!((page.oldest, page.next), (3, 8));
        let later = store.events_after(5, 1).unwrap();
        assert_eq!(later.events[0].0, 6);
        assert_eq!(later.events[0].1, row(2));
    }
}
