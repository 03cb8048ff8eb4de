//! Pushing name changes to watchers: the live side of the change feed.
//!
//! # Brief overview
//!
//! Every change is numbered and stored by the store in the transaction that
//! makes it (`store::events`). [`Feed`] runs one pump task: woken after each
//! commit ([`Feed::wake`]; also every [`PUMP_TICK`] as a safety net), it
//! reads the events it has not sent yet, in number order, turns each into
//! an [`Event`] once (name, value, record, JSON) and broadcasts it on a
//! bounded ring ([`tokio::sync::broadcast`], [`Feed::capacity`] events)
//! shared by the watchers of every name or of name sets, and on the small
//! ring of its name ([`TOPIC_CAPACITY`]) when that name has single-name
//! watchers: an event wakes its own watchers, not every idle one.
//!
//! A watcher [`Feed::subscribe`]s with an optional resume point (the last
//! event number it saw): it first gets the stored events after that point
//! (read page by page from the store), then the live ones, each exactly once
//! and in order. A resume point older than the retention, or a watcher that
//! falls more than a ring behind (it does not read), gets
//! [`Next::Resync`]: re-read the names, then watch again. Memory per watcher
//! is one ring cursor and one page; the ring is shared.
//!
//! Called by: `http::watch` (WebSocket and SSE) and `node` (start). Must
//! never: deliver an event twice or out of order to one watcher, or hold an
//! unbounded queue for one.

use std::{
    collections::VecDeque,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, UNIX_EPOCH},
};

use base64::Engine as _;
use bytes::Bytes;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use super::{Name, record, service::name_of_key};
use crate::store::{
    Store, StoreError,
    events::{EventKind, EventRow},
};

/// How often the pump looks for events even without a wake-up.
pub const PUMP_TICK: Duration = Duration::from_secs(1);
/// Events read from the store at a time.
pub const PAGE: usize = 256;
/// Changes of one name a single-name watcher may fall behind (its ring is
/// allocated per watched name, so it is small).
pub const TOPIC_CAPACITY: usize = 16;

/// Resync reason: the resume point is older than the events kept.
pub const RESYNC_RETENTION: &str = "retention";
/// Resync reason: the watcher fell more than a queue behind.
pub const RESYNC_SLOW: &str = "slow";
/// Resync reason: the resume point is newer than any event here.
pub const RESYNC_UNKNOWN: &str = "unknown_resume_point";

/// A sentence for a resync reason.
pub fn resync_message(reason: &str) -> &'static str {
    match reason {
        RESYNC_RETENTION => "the resume point is older than the events kept: re-read the names",
        RESYNC_SLOW => "too slow: more changes than the watch queue holds: re-read the names",
        RESYNC_UNKNOWN => "the resume point is newer than any event here: re-read the names",
        _ => "re-read the names",
    }
}

/// One change, ready to send.
#[derive(Debug)]
pub struct Event {
    pub id: u64,
    pub kind: EventKind,
    pub name: Name,
    pub sequence: u64,
    /// The record's value (`/ipfs/…`), when it is UTF-8.
    pub value: Option<String>,
    pub record: Bytes,
    pub at_ms: u64,
    json_full: OnceLock<Bytes>,
    json_bare: OnceLock<Bytes>,
}

impl Event {
    fn from_row(id: u64, row: EventRow) -> Option<Event> {
        let name = name_of_key(&row.key)?;
        let record = Bytes::from(row.record);
        let value = record::validate_bytes(&name, record.clone(), UNIX_EPOCH)
            .ok()
            .and_then(|r| r.value_str().map(str::to_owned));
        Some(Event {
            id,
            kind: row.kind,
            name,
            sequence: row.sequence,
            value,
            record,
            at_ms: row.at_ms,
            json_full: OnceLock::new(),
            json_bare: OnceLock::new(),
        })
    }

    /// The notification as JSON, w3name's `{"key","value","record"}` plus
    /// `id`, `kind` and `sequence`; `record` (base64) only when asked for.
    /// Built once per event and shared by every watcher.
    pub fn json(&self, with_record: bool) -> &str {
        // Built from a `String`, so always UTF-8.
        std::str::from_utf8(self.json_bytes(with_record)).unwrap_or_default()
    }

    /// [`Event::json`] as shared bytes: each watcher's frame references
    /// them instead of copying.
    pub fn json_bytes(&self, with_record: bool) -> &Bytes {
        let cell = if with_record {
            &self.json_full
        } else {
            &self.json_bare
        };
        cell.get_or_init(|| {
            let mut v = serde_json::json!({
                "id": self.id,
                "kind": self.kind.as_str(),
                "key": self.name.to_string(),
                "value": self.value,
                "sequence": self.sequence,
            });
            if with_record {
                v["record"] = base64::engine::general_purpose::STANDARD
                    .encode(&self.record)
                    .into();
            }
            Bytes::from(v.to_string())
        })
    }
}

/// What a subscription yields.
#[derive(Debug, Clone)]
pub enum Next {
    Event(Arc<Event>),
    /// Changes were lost to this watcher: re-read the names and watch
    /// again. `reason` is [`RESYNC_RETENTION`], [`RESYNC_SLOW`] or
    /// [`RESYNC_UNKNOWN`].
    Resync {
        reason: &'static str,
    },
    /// The feed stopped.
    Closed,
}

/// The change feed; see the module docs.
pub struct Feed {
    store: Arc<Store>,
    /// Every event: for watchers of every name or of a set of names.
    tx: broadcast::Sender<Arc<Event>>,
    /// One small ring per name that has single-name watchers, so an event
    /// wakes only the watchers of its name, not every idle watcher.
    topics: std::sync::Mutex<std::collections::HashMap<Name, broadcast::Sender<Arc<Event>>>>,
    /// The last event broadcast.
    last: AtomicU64,
    wake: Arc<Notify>,
    capacity: usize,
}

impl Feed {
    /// Starts the pump; it stops when `stop` is cancelled. `capacity`:
    /// events a watcher may fall behind before it must resync.
    pub fn start(
        store: Arc<Store>,
        capacity: usize,
        stop: CancellationToken,
    ) -> Result<(Arc<Feed>, tokio::task::JoinHandle<()>), StoreError> {
        let next = store.events_after(u64::MAX, 0)?.next;
        let (tx, _) = broadcast::channel(capacity.max(1));
        let feed = Arc::new(Feed {
            store,
            tx,
            topics: std::sync::Mutex::new(std::collections::HashMap::new()),
            last: AtomicU64::new(next.saturating_sub(1)),
            wake: Arc::new(Notify::new()),
            capacity: capacity.max(1),
        });
        let task = tokio::spawn(feed.clone().pump(stop));
        Ok((feed, task))
    }

    /// Wakes the pump: call after a commit that may have added events.
    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Events a watcher may fall behind.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The last event number sent to watchers (0: none yet).
    pub fn last(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }

    /// Current watchers.
    pub fn watchers(&self) -> usize {
        self.tx.receiver_count()
    }

    async fn pump(self: Arc<Self>, stop: CancellationToken) {
        loop {
            loop {
                let after = self.last();
                let store = self.store.clone();
                let page =
                    tokio::task::spawn_blocking(move || store.events_after(after, PAGE)).await;
                let page = match page {
                    Ok(Ok(p)) => p,
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "reading the change feed failed");
                        break;
                    }
                    Err(_) => break,
                };
                let full = page.events.len() == PAGE;
                for (id, row) in page.events {
                    if let Some(event) = Event::from_row(id, row) {
                        let event = Arc::new(event);
                        // No receiver is not an error: nobody watches.
                        if let Some(topic) = self.topics().get(&event.name) {
                            let _ = topic.send(event.clone());
                        }
                        let _ = self.tx.send(event);
                    }
                    self.last.store(id, Ordering::Release);
                }
                if !full {
                    break;
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(PUMP_TICK) => {}
            }
        }
    }

    fn topics(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<Name, broadcast::Sender<Arc<Event>>>>
    {
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new watcher of every event (it filters), resuming after event
    /// `since` when given; see the module docs.
    pub fn subscribe(self: &Arc<Self>, since: Option<u64>) -> Subscription {
        self.subscribe_to(None, since)
    }

    /// A new watcher of `name`'s events only (on its own ring of
    /// [`TOPIC_CAPACITY`]), resuming after event `since` when given.
    pub fn subscribe_name(self: &Arc<Self>, name: Name, since: Option<u64>) -> Subscription {
        self.subscribe_to(Some(name), since)
    }

    fn subscribe_to(self: &Arc<Self>, topic: Option<Name>, since: Option<u64>) -> Subscription {
        // Subscribe first, then read `last`: every event after `last` is in
        // the ring, and the ones up to `last` come from the store.
        let rx = match topic {
            None => self.tx.subscribe(),
            Some(name) => self
                .topics()
                .entry(name)
                .or_insert_with(|| broadcast::channel(TOPIC_CAPACITY.min(self.capacity)).0)
                .subscribe(),
        };
        let live_after = self.last();
        let unknown = since.is_some_and(|s| s > live_after);
        Subscription {
            feed: self.clone(),
            topic,
            rx,
            cursor: since.unwrap_or(live_after).min(live_after),
            live_after,
            backlog: VecDeque::new(),
            resync: unknown.then_some(RESYNC_UNKNOWN),
        }
    }
}

/// One watcher's position in the feed.
pub struct Subscription {
    feed: Arc<Feed>,
    /// The name this watcher's ring is for (`None`: every event).
    topic: Option<Name>,
    rx: broadcast::Receiver<Arc<Event>>,
    /// The last event delivered (or skipped) to this watcher.
    cursor: u64,
    /// Events up to this number come from the store, later ones live.
    live_after: u64,
    backlog: VecDeque<Arc<Event>>,
    /// Set when the watcher must resync before anything else.
    resync: Option<&'static str>,
}

impl Subscription {
    /// The last event number this watcher has been given.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The next change, in order.
    pub async fn next(&mut self) -> Next {
        if let Some(reason) = self.resync.take() {
            return Next::Resync { reason };
        }
        loop {
            if let Some(e) = self.backlog.pop_front() {
                self.cursor = e.id;
                return Next::Event(e);
            }
            if self.cursor < self.live_after {
                match self.read_page().await {
                    Ok(true) => continue,
                    Ok(false) => {
                        return Next::Resync {
                            reason: RESYNC_RETENTION,
                        };
                    }
                    Err(_) => return Next::Closed,
                }
            }
            match self.rx.recv().await {
                Ok(e) if e.id <= self.cursor => continue,
                Ok(e) => {
                    self.cursor = e.id;
                    return Next::Event(e);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    return Next::Resync {
                        reason: RESYNC_SLOW,
                    };
                }
                Err(broadcast::error::RecvError::Closed) => return Next::Closed,
            }
        }
    }

    /// Reads the next page of stored events; `Ok(false)` when the resume
    /// point is no longer kept.
    async fn read_page(&mut self) -> Result<bool, StoreError> {
        let store = self.feed.store.clone();
        let after = self.cursor;
        let page = tokio::task::spawn_blocking(move || store.events_after(after, PAGE))
            .await
            .map_err(|_| StoreError::Corrupt("reading the change feed was cancelled".into()))??;
        if after.saturating_add(1) < page.oldest {
            return Ok(false);
        }
        let mut any = false;
        for (id, row) in page.events {
            if id > self.live_after {
                break;
            }
            any = true;
            match Event::from_row(id, row) {
                Some(e) if self.topic.is_none_or(|t| t == e.name) => {
                    self.backlog.push_back(Arc::new(e))
                }
                _ => self.cursor = id,
            }
        }
        if !any {
            // Nothing more stored up to the live point (pruned meanwhile):
            // continue live.
            self.cursor = self.live_after;
        }
        Ok(true)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // The last watcher of a name takes its ring with it.
        if let Some(name) = self.topic {
            let mut topics = self.feed.topics();
            if topics.get(&name).is_some_and(|tx| tx.receiver_count() <= 1) {
                topics.remove(&name);
            }
        }
    }
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
