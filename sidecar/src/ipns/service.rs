//! The name service: validates incoming IPNS records, keeps the best one
//! per name durably, and reads them back.
//!
//! Writes go through one writer task that takes every put waiting in its
//! queue (up to [`MAX_BATCH`]) and applies them in one redb transaction
//! with one durable commit (group commit): 64 concurrent writers pay for
//! one fsync, not 64. A put is answered only after its commit is on disk,
//! so an acknowledged record survives `kill -9`.
//!
//! The decision per record, inside the write transaction (so two writers
//! can never both "win"): the same bytes as stored → unchanged (success);
//! better than stored by [`record::compare`] → stored; else refused with
//! `sequence_not_newer` (the stored record is newer or as new).
//!
//! Reads are served from a bounded cache of recently read or written
//! records ([`CACHE_BYTES`] of record bytes), filled from the store on a
//! miss and updated by the writer after each commit, so the cache never
//! holds a record older than the store's.
//!
//! Called by: the HTTP handlers (routing, w3name), the CLI, and later the
//! republisher and replica sync. Must never: store a record it did not
//! validate, or answer a put before its commit.

use std::{
    cmp::Ordering,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Name, Record, RecordError, record};
use crate::store::{
    IpnsRow, Store, StoreError,
    republish::{RepublishRow, RepublishState},
};

/// Puts queued for the writer before callers wait for room.
pub const QUEUE: usize = 4096;
/// Most puts applied in one transaction.
pub const MAX_BATCH: usize = 512;

/// Record bytes the read cache holds at most (32 MiB: about 100,000
/// typical 300-byte records). Past it, arbitrary entries are dropped.
pub const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// The read cache: store key → stored record.
#[derive(Default)]
struct Cache {
    map: std::collections::HashMap<Vec<u8>, Stored>,
    bytes: usize,
}

impl Cache {
    fn get(&self, key: &[u8]) -> Option<Stored> {
        self.map.get(key).cloned()
    }

    fn insert(&mut self, key: Vec<u8>, value: Stored) {
        let len = value.bytes.len();
        if let Some(old) = self.map.insert(key, value) {
            self.bytes -= old.bytes.len();
        }
        self.bytes += len;
        while self.bytes > CACHE_BYTES {
            let Some(victim) = self.map.keys().next().cloned() else {
                break;
            };
            if let Some(old) = self.map.remove(&victim) {
                self.bytes -= old.bytes.len();
            }
        }
    }
}

fn lock(cache: &std::sync::Mutex<Cache>) -> std::sync::MutexGuard<'_, Cache> {
    cache.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where a record came from (stored with it, shown by `sidecar ipns ls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Source {
    /// `PUT /routing/v1/ipns/{name}` (Kubo, Helia, any delegated client).
    Routing = 1,
    /// `POST /name/{key}` (w3name clients).
    W3name = 2,
    /// `sidecar ipns put`.
    Cli = 3,
    /// A sibling sidecar.
    Sync = 4,
    /// Found on the network (through Kubo) by the republisher, better than
    /// the stored one.
    Network = 5,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Routing => "routing",
            Source::W3name => "w3name",
            Source::Cli => "cli",
            Source::Sync => "sync",
            Source::Network => "network",
        }
    }

    fn from_code(code: u8) -> &'static str {
        match code {
            1 => "routing",
            2 => "w3name",
            3 => "cli",
            4 => "sync",
            5 => "network",
            _ => "unknown",
        }
    }
}

/// What a successful put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The record is now the stored one.
    Stored,
    /// The stored record has the same bytes; nothing changed.
    Unchanged,
}

/// Why a put or get failed.
#[derive(Debug, thiserror::Error)]
pub enum IpnsError {
    /// The record is invalid, or not better than the stored one
    /// ([`RecordError::SequenceNotNewer`]).
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The service is shutting down.
    #[error("the name service is shutting down")]
    Closed,
}

impl IpnsError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            IpnsError::Record(e) => e.code(),
            IpnsError::Store(_) => "store_failed",
            IpnsError::Closed => "shutting_down",
        }
    }
}

/// A stored record with its metadata (read without re-parsing the record;
/// [`Stored::parse`] decodes it when a caller needs its fields).
#[derive(Debug, Clone)]
pub struct Stored {
    pub name: Name,
    /// The record exactly as received.
    pub bytes: Bytes,
    pub sequence: u64,
    /// End of validity (EOL).
    pub validity: SystemTime,
    pub ttl: Option<Duration>,
    pub received_at: SystemTime,
    pub source: &'static str,
    /// A strong HTTP entity tag derived from the bytes (computed once, when
    /// the record is read from the store or written).
    pub etag: Arc<str>,
}

/// `"<first 16 bytes of sha2-256(record) in hex>"`.
fn etag_of(bytes: &[u8]) -> Arc<str> {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"").into()
}

/// One line of `sidecar ipns ls` / `GET /admin/ipns`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// Canonical `k51…` form.
    pub name: String,
    pub sequence: u64,
    /// The record's value (lossy UTF-8), or `(unreadable: …)`.
    pub value: String,
    /// The validity (EOL) as the record states it.
    pub validity: String,
    /// TTL in seconds, if the record has one.
    pub ttl_seconds: Option<u64>,
    pub source: String,
    /// When this sidecar accepted it, RFC 3339.
    pub received_at: String,
    /// Where its republishing stands (absent from older daemons' answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub republish: Option<RepublishSummary>,
}

/// The republish state of one name, for people and scripts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RepublishSummary {
    /// `fresh` (not yet put in this version), `published`, `expired`.
    pub state: String,
    /// RFC 3339; absent once expired.
    pub next_due: Option<String>,
    pub last_attempt: Option<String>,
    pub last_success: Option<String>,
    /// Consecutive failed attempts.
    pub failures: u32,
    pub last_error: Option<String>,
    /// What the last successful put is known to have reached: `N DHT
    /// peers`, `unverified (Kubo knew no DHT peers)`, `unknown`, or `never`.
    pub reached: String,
}

impl RepublishSummary {
    pub fn of(row: &RepublishRow) -> Self {
        let time = |ms: u64| {
            (ms > 0).then(|| {
                humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
            })
        };
        let reached = if row.last_success_ms == 0 {
            "never".to_string()
        } else {
            match row.peers {
                p if p < 0 => "unknown".to_string(),
                0 => "unverified (Kubo knew no DHT peers)".to_string(),
                p => format!("{p} DHT peers"),
            }
        };
        Self {
            state: row.state.as_str().to_string(),
            next_due: (row.state != RepublishState::Expired)
                .then(|| time(row.next_due_ms))
                .flatten(),
            last_attempt: time(row.last_attempt_ms),
            last_success: time(row.last_success_ms),
            failures: row.failures,
            last_error: (!row.last_error.is_empty()).then(|| row.last_error.clone()),
            reached,
        }
    }
}

impl Stored {
    /// The listing line for this record (parses it once).
    pub fn summary(&self) -> Summary {
        let (value, validity) = match self.parse() {
            Ok(r) => (
                String::from_utf8_lossy(r.value()).into_owned(),
                r.validity_str().to_string(),
            ),
            Err(e) => (
                format!("(unreadable: {})", e.code()),
                humantime::format_rfc3339_nanos(self.validity).to_string(),
            ),
        };
        Summary {
            name: self.name.to_string(),
            sequence: self.sequence,
            value,
            validity,
            ttl_seconds: self.ttl.map(|t| t.as_secs()),
            source: self.source.to_string(),
            received_at: humantime::format_rfc3339_millis(self.received_at).to_string(),
            republish: None,
        }
    }

    /// [`Stored::summary`] with the name's republish state.
    pub fn summary_with(&self, schedule: Option<&RepublishRow>) -> Summary {
        Summary {
            republish: schedule.map(RepublishSummary::of),
            ..self.summary()
        }
    }

    /// The record's fields (value, validity text, …), decoded without
    /// checking the signature again: it was verified before it was stored.
    pub fn parse(&self) -> Result<Record, RecordError> {
        // Validating at the epoch checks everything but expiry (the record
        // may have expired since).
        record::validate_bytes(&self.name, self.bytes.clone(), UNIX_EPOCH)
    }
}

struct Put {
    name: Name,
    key: Vec<u8>,
    row: IpnsRow,
    reply: oneshot::Sender<Result<PutOutcome, IpnsError>>,
}

/// The service handle; cheap to clone.
#[derive(Clone)]
pub struct NameService {
    store: Arc<Store>,
    queue: mpsc::Sender<Put>,
    cache: Arc<std::sync::Mutex<Cache>>,
    changed: Arc<tokio::sync::Notify>,
    /// Woken after each commit that added change-feed events.
    feed: Arc<std::sync::OnceLock<Arc<tokio::sync::Notify>>>,
}

impl NameService {
    /// Starts the writer task; it stops when `stop` is cancelled and the
    /// queued puts are applied.
    pub fn start(
        store: Arc<Store>,
        stop: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let cache = Arc::new(std::sync::Mutex::new(Cache::default()));
        let changed = Arc::new(tokio::sync::Notify::new());
        let feed = Arc::new(std::sync::OnceLock::new());
        let task = tokio::spawn(writer(
            store.clone(),
            rx,
            cache.clone(),
            Wakes {
                republisher: changed.clone(),
                feed: feed.clone(),
            },
            stop,
        ));
        (
            Self {
                store,
                queue: tx,
                cache,
                changed,
                feed,
            },
            task,
        )
    }

    /// Wakes `feed` (the change feed's pump) after every commit that stored
    /// a record; [`NameService::wake_feed`] wakes it for other writers.
    pub fn attach_feed(&self, feed: Arc<tokio::sync::Notify>) {
        let _ = self.feed.set(feed);
    }

    /// Wakes the change feed (after a commit elsewhere added events, e.g.
    /// an expiry).
    pub fn wake_feed(&self) {
        if let Some(f) = self.feed.get() {
            f.notify_one();
        }
    }

    /// Notified after each commit that stored at least one record (the
    /// republisher waits on it for fresh records).
    pub fn changed(&self) -> Arc<tokio::sync::Notify> {
        self.changed.clone()
    }

    /// Validates `bytes` as a record for `name` at `now` and stores it if it
    /// is better than the stored one. Answers after the commit is durable.
    pub async fn put(
        &self,
        name: &Name,
        bytes: Bytes,
        source: Source,
        now: SystemTime,
    ) -> Result<PutOutcome, IpnsError> {
        let record = record::validate_bytes(name, bytes.clone(), now)?;
        let (validity_secs, validity_nanos) = unix_secs_nanos(record.validity());
        let row = IpnsRow {
            received_at_ms: unix_ms(now),
            sequence: record.sequence(),
            validity_secs,
            validity_nanos,
            ttl_ns: record
                .ttl()
                .map_or(0, |t| u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)),
            source: source as u8,
            record: bytes.to_vec(),
        };
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Put {
                name: *name,
                key: store_key(name),
                row,
                reply,
            })
            .await
            .map_err(|_| IpnsError::Closed)?;
        answer.await.map_err(|_| IpnsError::Closed)?
    }

    /// The stored record for `name`, if any — even an expired one (callers
    /// decide; see [`Stored::record`]'s validity).
    pub async fn get(&self, name: &Name) -> Result<Option<Stored>, IpnsError> {
        let key = store_key(name);
        if let Some(hit) = lock(&self.cache).get(&key) {
            return Ok(Some(hit));
        }
        let store = self.store.clone();
        let read_key = key.clone();
        let row = tokio::task::spawn_blocking(move || store.ipns_get(&read_key))
            .await
            .map_err(|_| IpnsError::Closed)??;
        let found = row.map(|row| stored(*name, row));
        if let Some(f) = &found {
            // A put committed meanwhile has already updated the cache with
            // a newer record: never overwrite it with this older read.
            let mut cache = lock(&self.cache);
            if cache.get(&key).is_none() {
                cache.insert(key, f.clone());
            }
        }
        Ok(found)
    }

    /// The republish schedule rows of `names`, in order.
    pub async fn schedules(&self, names: &[Name]) -> Result<Vec<Option<RepublishRow>>, IpnsError> {
        let store = self.store.clone();
        let keys: Vec<Vec<u8>> = names.iter().map(store_key).collect();
        Ok(tokio::task::spawn_blocking(move || {
            keys.iter()
                .map(|k| store.republish_get(k))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|_| IpnsError::Closed)??)
    }

    /// Up to `limit` stored records after `after` (by name key order).
    pub async fn list(&self, after: Option<&Name>, limit: usize) -> Result<Vec<Stored>, IpnsError> {
        let store = self.store.clone();
        let after = after.map(store_key);
        let rows = tokio::task::spawn_blocking(move || store.ipns_list(after.as_deref(), limit))
            .await
            .map_err(|_| IpnsError::Closed)??;
        Ok(rows
            .into_iter()
            .filter_map(|(key, row)| name_of_key(&key).map(|n| stored(n, row)))
            .collect())
    }
}

/// The name a store key belongs to.
pub fn name_of_key(key: &[u8]) -> Option<Name> {
    let mh = cid::multihash::Multihash::from_bytes(key).ok()?;
    Name::from_multihash(mh).ok()
}

fn stored(name: Name, row: IpnsRow) -> Stored {
    let validity = if row.validity_secs >= 0 {
        UNIX_EPOCH + Duration::new(row.validity_secs.unsigned_abs(), row.validity_nanos)
    } else {
        UNIX_EPOCH - Duration::new(row.validity_secs.unsigned_abs(), row.validity_nanos)
    };
    Stored {
        name,
        etag: etag_of(&row.record),
        bytes: Bytes::from(row.record),
        sequence: row.sequence,
        validity,
        ttl: (row.ttl_ns > 0).then(|| Duration::from_nanos(row.ttl_ns)),
        received_at: UNIX_EPOCH + Duration::from_millis(row.received_at_ms),
        source: Source::from_code(row.source),
    }
}

/// The store key of a name: its peer-ID multihash bytes (the routing key
/// without `/ipns/`).
pub fn store_key(name: &Name) -> Vec<u8> {
    name.multihash().to_bytes()
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn unix_secs_nanos(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d = e.duration();
            (
                -i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                d.subsec_nanos(),
            )
        }
    }
}

/// Whether `new` replaces `old` (rows of the same name), in the order of
/// [`record::compare`] (sequence, then validity, then the records' bytes),
/// applied to the stored metadata so the stored record need not be parsed.
fn decide(old: Option<&IpnsRow>, new: &IpnsRow) -> Result<bool, IpnsError> {
    let Some(old) = old else { return Ok(true) };
    if old.record == new.record {
        return Ok(false);
    }
    let order = new
        .sequence
        .cmp(&old.sequence)
        .then((new.validity_secs, new.validity_nanos).cmp(&(old.validity_secs, old.validity_nanos)))
        .then_with(|| new.record.as_slice().cmp(old.record.as_slice()));
    if order == Ordering::Greater {
        Ok(true)
    } else {
        Err(IpnsError::Record(RecordError::SequenceNotNewer {
            stored: old.sequence,
            offered: new.sequence,
        }))
    }
}

/// Who hears of a commit that stored records.
struct Wakes {
    republisher: Arc<tokio::sync::Notify>,
    feed: Arc<std::sync::OnceLock<Arc<tokio::sync::Notify>>>,
}

async fn writer(
    store: Arc<Store>,
    mut rx: mpsc::Receiver<Put>,
    cache: Arc<std::sync::Mutex<Cache>>,
    wakes: Wakes,
    stop: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            biased;
            put = rx.recv() => put,
            _ = stop.cancelled() => { rx.close(); rx.recv().await }
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let names: Vec<Name> = batch.iter().map(|p| p.name).collect();
        let (candidates, replies): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|p| ((p.key, p.row), p.reply)).unzip();
        let store = store.clone();
        let applied = tokio::task::spawn_blocking(move || {
            let verdicts = store.ipns_update(&candidates, |_, old, new| decide(old, new));
            (candidates, verdicts)
        })
        .await;
        match applied {
            Ok((candidates, Ok(verdicts))) => {
                {
                    let mut cache = lock(&cache);
                    for (((key, row), name), verdict) in
                        candidates.into_iter().zip(&names).zip(&verdicts)
                    {
                        if let Ok(true) = verdict {
                            cache.insert(key, stored(*name, row));
                        }
                    }
                }
                if verdicts.iter().any(|v| matches!(v, Ok(true))) {
                    wakes.republisher.notify_one();
                    if let Some(f) = wakes.feed.get() {
                        f.notify_one();
                    }
                }
                for (reply, verdict) in replies.into_iter().zip(verdicts) {
                    let outcome = verdict.map(|stored| {
                        if stored {
                            PutOutcome::Stored
                        } else {
                            PutOutcome::Unchanged
                        }
                    });
                    let _ = reply.send(outcome);
                }
            }
            Ok((_, Err(e))) => {
                tracing::error!(error = %e, "writing IPNS records failed");
                let message = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(IpnsError::Store(StoreError::Corrupt(message.clone()))));
                }
            }
            Err(_) => {
                for reply in replies {
                    let _ = reply.send(Err(IpnsError::Closed));
                }
            }
        }
    }
}
