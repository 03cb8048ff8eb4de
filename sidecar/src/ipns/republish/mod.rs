//! The republisher: keeps every stored record on the DHT by putting its
//! exact signed bytes through the Kubo node, on a durable schedule.
//!
//! # Brief overview
//!
//! The schedule lives in the store (`store::republish`): per name a row and
//! an entry in a due index. A record the name service stores is due at once
//! as *fresh*; after a successful put it is due again after
//! [`Policy::interval`] (jittered); after a failure, after a backoff. The
//! rules are pure and live in [`policy`].
//!
//! One task ([`Republisher::run`]) loops:
//! 1. apply the outcomes of finished attempts in one durable transaction;
//! 2. while Kubo is unreachable, dispatch nothing and probe it every
//!    [`PROBE_INTERVAL`]; when it answers again, catch up;
//! 3. dispatch due names up to [`Policy::concurrency`] in flight, one
//!    attempt per name at a time: fresh records first and unpaced, then
//!    re-puts, paced while catching up;
//! 4. sleep until the next due time, a finished attempt, a newly stored
//!    record, or the pacer's next slot.
//!
//! **Catching up.** At start-up and when Kubo comes back, the re-puts
//! already due (backlog `n`) are spread over [`Policy::catch_up_window`]:
//! at most `max(n / window, 1/s)` per second until none is overdue. So a
//! restart after a day down neither bursts a million puts at Kubo nor
//! lets them slip past the DHT's 48 h expiry.
//!
//! **Never backwards.** Before a re-put or a retry (not the first put of a
//! record just received) the republisher asks the network for the name
//! ([`Target::fetch`]). A valid record
//! better than the stored one is stored (source `network`) and put instead.
//!
//! **End of life.** A record whose validity has passed is not put; its row
//! becomes `expired` (the record stays, for inspection).
//!
//! A stop abandons attempts in flight: their names stay due in the store
//! and are put again after the restart, so nothing is skipped.
//!
//! Called by: `node` (with [`KuboTarget`]); tests drive it with a fake
//! [`Target`] on paused tokio time. Must never: put a record it did not
//! read from the store, or two attempts for one name at once.

use std::{
    collections::{BTreeMap, HashSet},
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, UNIX_EPOCH},
};

use bytes::Bytes;
use tokio::{task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;

use super::{
    Name,
    record::{self, compare},
    service::{NameService, Source, name_of_key},
};
use crate::{
    clock::Clock,
    metrics::Metrics,
    store::{
        Store,
        republish::{CLASS_FRESH, CLASS_REPUBLISH, DueEntry, DueScan},
    },
};

mod kubo_keys;
mod kubo_target;
pub mod policy;
#[cfg(test)]
mod tests;

pub use kubo_keys::{KeyPolicy, KeyRepublisher, KeyView, Keystore};
pub use kubo_target::{KuboTarget, PutMethod};
pub use policy::{Attempt, Outcome, Policy};

/// How often an unreachable Kubo is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// Longest sleep between looks at the schedule (so a wall-clock jump is
/// noticed; idle cost is one wake-up per minute).
pub const MAX_SLEEP: Duration = Duration::from_secs(60);
/// How often the overdue gauge is recomputed.
pub const GAUGE_INTERVAL: Duration = Duration::from_secs(15);
/// A name is counted overdue once its due time is this far behind.
pub const OVERDUE_GRACE: Duration = Duration::from_secs(60);

/// What Kubo said about a put it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PutReport {
    /// DHT peers Kubo knew when it accepted the put (`None`: unknown).
    /// Kubo reports success even with none, so 0 means "unverified".
    pub peers: Option<u32>,
}

/// Why a put, fetch or probe failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetError {
    /// Stable code (`kubo_error`, `kubo_timeout`, `kubo_denied`, …).
    pub code: &'static str,
    pub message: String,
    /// Kubo could not be reached at all (pauses every attempt).
    pub unreachable: bool,
}

/// Where records are put: Kubo's RPC in production.
pub trait Target: Send + Sync + 'static {
    /// Puts `record` for `name` to the routing system.
    fn put(
        &self,
        name: &Name,
        record: Bytes,
    ) -> impl Future<Output = Result<PutReport, TargetError>> + Send;
    /// The best record the network has for `name`, if any.
    fn fetch(&self, name: &Name)
    -> impl Future<Output = Result<Option<Bytes>, TargetError>> + Send;
    /// Whether the target answers at all.
    fn probe(&self) -> impl Future<Output = Result<(), TargetError>> + Send;
}

/// Catch-up progress, for the admin view.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CatchUp {
    /// Re-puts that were overdue when catching up started.
    pub backlog: u64,
    pub rate_per_second: f64,
    pub dispatched: u64,
    /// Unix ms.
    pub started_ms: u64,
}

/// The republisher's live state (`GET /admin/republish`, `/readyz`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StatusSnapshot {
    /// `None` until Kubo was first contacted.
    pub kubo_reachable: Option<bool>,
    pub kubo_error: Option<String>,
    pub in_flight: usize,
    pub catching_up: Option<CatchUp>,
    /// Since start.
    pub puts_ok: u64,
    pub puts_failed: u64,
    /// Failed attempts since start, by error code.
    pub failures_by_error: BTreeMap<String, u64>,
    /// Better records found on the network and adopted, since start.
    pub adopted: u64,
    /// Records found expired, since start.
    pub expired: u64,
    /// DHT peers Kubo knew at the last successful put (`None`: unknown).
    pub last_put_peers: Option<u32>,
    /// Kubo's own keys and their schedule (`None`: `kubo_keys` is off).
    pub kubo_keys: Option<Vec<KeyView>>,
}

/// Shared handle on the live state.
#[derive(Debug, Default)]
pub struct Status(Mutex<StatusSnapshot>);

impl Status {
    pub fn snapshot(&self) -> StatusSnapshot {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatusSnapshot> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Paces re-puts while catching up: one per `spacing_us` from `start_ms`
/// (integer arithmetic, so the slots are exact).
#[derive(Debug, Clone)]
struct Pacer {
    start_ms: u64,
    spacing_us: u64,
    dispatched: u64,
}

impl Pacer {
    /// How many more may go now.
    fn allowance(&self, now_ms: u64) -> u64 {
        let earned =
            now_ms.saturating_sub(self.start_ms).saturating_mul(1000) / self.spacing_us + 1;
        earned.saturating_sub(self.dispatched)
    }

    /// When the next one may go.
    fn next_ms(&self) -> u64 {
        self.start_ms
            + self
                .dispatched
                .saturating_mul(self.spacing_us)
                .div_ceil(1000)
    }
}

/// A finished attempt.
struct Done {
    key: Vec<u8>,
    outcome: Outcome,
    /// Time spent in the put itself (`None`: no put was made).
    put_latency: Option<Duration>,
    adopted: bool,
}

/// What an attempt needs, shared by all attempts.
struct Ctx<T> {
    store: Arc<Store>,
    names: NameService,
    target: T,
    policy: Policy,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    status: Arc<Status>,
}

/// The republisher; see the module docs.
pub struct Republisher<T> {
    ctx: Arc<Ctx<T>>,
}

impl<T: Target> Republisher<T> {
    pub fn new(
        store: Arc<Store>,
        names: NameService,
        target: T,
        policy: Policy,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            ctx: Arc::new(Ctx {
                store,
                names,
                target,
                policy,
                clock,
                metrics,
                status: Arc::new(Status::default()),
            }),
        }
    }

    /// The live state, shared with the HTTP API.
    pub fn status(&self) -> Arc<Status> {
        self.ctx.status.clone()
    }

    /// Runs until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let ctx = self.ctx;
        let changed = ctx.names.changed();
        let mut jobs: JoinSet<Done> = JoinSet::new();
        let mut in_flight: HashSet<Vec<u8>> = HashSet::new();
        let mut finished: Vec<Done> = Vec::new();
        let mut pacer = ctx.catch_up().await;
        // Some: Kubo is unreachable; probe it then.
        let mut probe_at: Option<Instant> = None;
        let mut gauge_at = Instant::now();
        loop {
            while let Some(done) = jobs.try_join_next() {
                finished.extend(done.ok());
            }
            if !finished.is_empty() {
                let batch = std::mem::take(&mut finished);
                let lost = batch.iter().find_map(|d| match &d.outcome.attempt {
                    Attempt::Unreachable { message } => Some(message.clone()),
                    _ => None,
                });
                ctx.apply(&batch).await;
                for d in &batch {
                    in_flight.remove(&d.key);
                }
                if let Some(message) = lost
                    && probe_at.is_none()
                {
                    tracing::warn!(error = %message, "Kubo is unreachable; republishing paused");
                    ctx.set_reachable(false, Some(message));
                    probe_at = Some(Instant::now() + PROBE_INTERVAL);
                }
            }
            if let Some(at) = probe_at
                && Instant::now() >= at
            {
                match tokio::time::timeout(ctx.policy.put_timeout, ctx.target.probe()).await {
                    Ok(Ok(())) => {
                        tracing::info!("Kubo answers again; republishing resumes");
                        ctx.set_reachable(true, None);
                        probe_at = None;
                        pacer = ctx.catch_up().await;
                    }
                    Ok(Err(e)) => {
                        ctx.set_reachable(false, Some(e.message));
                        probe_at = Some(Instant::now() + PROBE_INTERVAL);
                    }
                    Err(_) => probe_at = Some(Instant::now() + PROBE_INTERVAL),
                }
            }
            let wake_ms = if probe_at.is_none() {
                ctx.dispatch(&mut jobs, &mut in_flight, &mut pacer).await
            } else {
                None
            };
            if Instant::now() >= gauge_at {
                ctx.update_gauges().await;
                gauge_at = Instant::now() + GAUGE_INTERVAL;
            }
            ctx.status.lock().in_flight = in_flight.len();
            ctx.metrics.republish_in_flight.set(in_flight.len() as i64);

            let mut sleep = MAX_SLEEP.min(gauge_at.saturating_duration_since(Instant::now()));
            if let Some(ms) = wake_ms {
                sleep = sleep.min(Duration::from_millis(ms.saturating_sub(ctx.clock.now_ms())));
            }
            if let Some(at) = probe_at {
                sleep = sleep.min(at.saturating_duration_since(Instant::now()));
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                done = jobs.join_next(), if !jobs.is_empty() => {
                    if let Some(Ok(done)) = done {
                        finished.push(done);
                    }
                }
                _ = changed.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
        // Attempts still running are abandoned; their names stay due.
        jobs.abort_all();
        while let Some(done) = jobs.join_next().await {
            finished.extend(done.ok());
        }
        if !finished.is_empty() {
            ctx.apply(&finished).await;
        }
    }
}

impl<T: Target> Ctx<T> {
    /// Starts pacing if re-puts are already overdue.
    async fn catch_up(&self) -> Option<Pacer> {
        let now = self.clock.now_ms();
        let store = self.store.clone();
        let backlog =
            tokio::task::spawn_blocking(move || store.republish_count_due(CLASS_REPUBLISH, now))
                .await
                .ok()
                .and_then(|r| {
                    r.map_err(
                        |e| tracing::error!(error = %e, "reading the republish schedule failed"),
                    )
                    .ok()
                })
                .unwrap_or(0);
        let mut status = self.status.lock();
        if backlog == 0 {
            status.catching_up = None;
            return None;
        }
        let window = self.policy.catch_up_window.as_secs_f64().max(0.001);
        let rate = (backlog as f64 / window).max(1.0);
        tracing::info!(
            backlog,
            rate_per_second = rate,
            "catching up on overdue republishes"
        );
        status.catching_up = Some(CatchUp {
            backlog,
            rate_per_second: rate,
            dispatched: 0,
            started_ms: now,
        });
        Some(Pacer {
            start_ms: now,
            spacing_us: ((1e6 / rate) as u64).max(1),
            dispatched: 0,
        })
    }

    /// Starts attempts for what is due; returns when to look again (Unix
    /// ms), if anything is scheduled later.
    async fn dispatch(
        self: &Arc<Self>,
        jobs: &mut JoinSet<Done>,
        in_flight: &mut HashSet<Vec<u8>>,
        pacer: &mut Option<Pacer>,
    ) -> Option<u64> {
        let now = self.clock.now_ms();
        let mut free = self.policy.concurrency.saturating_sub(in_flight.len());
        if free == 0 {
            return None;
        }
        let fresh = self.scan(CLASS_FRESH, now, free, in_flight).await;
        let mut wake = fresh.next_due_ms;
        free -= fresh.due.len();
        for entry in fresh.due {
            self.spawn(jobs, in_flight, entry, false);
        }
        if free == 0 {
            return wake;
        }
        let allowed = pacer
            .as_ref()
            .map_or(free as u64, |p| p.allowance(now).min(free as u64));
        if allowed > 0 {
            let scan = self
                .scan(CLASS_REPUBLISH, now, allowed as usize, in_flight)
                .await;
            wake = min_some(wake, scan.next_due_ms);
            if let Some(p) = pacer.as_mut() {
                if scan.due.is_empty() {
                    tracing::info!(dispatched = p.dispatched, "caught up");
                    *pacer = None;
                    self.status.lock().catching_up = None;
                } else {
                    p.dispatched += scan.due.len() as u64;
                    if let Some(c) = self.status.lock().catching_up.as_mut() {
                        c.dispatched = p.dispatched;
                    }
                }
            }
            for entry in scan.due {
                self.spawn(jobs, in_flight, entry, true);
            }
        }
        if let Some(p) = pacer {
            wake = min_some(wake, Some(p.next_ms()));
        }
        wake
    }

    async fn scan(
        &self,
        class: u8,
        now: u64,
        limit: usize,
        in_flight: &HashSet<Vec<u8>>,
    ) -> DueScan {
        let store = self.store.clone();
        let skip = in_flight.clone();
        let read = tokio::task::spawn_blocking(move || {
            store.republish_due(class, now, limit, |k| skip.contains(k))
        })
        .await;
        match read {
            Ok(Ok(scan)) => scan,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reading the republish schedule failed");
                DueScan::default()
            }
            Err(_) => DueScan::default(),
        }
    }

    fn spawn(
        self: &Arc<Self>,
        jobs: &mut JoinSet<Done>,
        in_flight: &mut HashSet<Vec<u8>>,
        entry: DueEntry,
        republish: bool,
    ) {
        in_flight.insert(entry.key.clone());
        let ctx = self.clone();
        jobs.spawn(async move { ctx.attempt(entry, republish).await });
    }

    /// One attempt for one name.
    async fn attempt(&self, entry: DueEntry, republish: bool) -> Done {
        let now = self.clock.now_ms();
        let validity_ms = entry.record.validity_ms();
        let mut bytes = Bytes::from(entry.record.record);
        let mut sequence = entry.record.sequence;
        let done = |bytes, sequence, attempt, put_latency, adopted| Done {
            key: entry.key.clone(),
            outcome: Outcome {
                attempted: bytes,
                sequence,
                at_ms: self.clock.now_ms(),
                attempt,
            },
            put_latency,
            adopted,
        };
        if validity_ms <= now {
            return done(bytes, sequence, Attempt::Expired, None, false);
        }
        let Some(name) = name_of_key(&entry.key) else {
            let attempt = Attempt::Failed {
                code: "malformed",
                message: "the stored name key is not a name".into(),
            };
            return done(bytes, sequence, attempt, None, false);
        };
        let mut adopted = false;
        // Re-puts and retries (the network may have refused ours as older)
        // look first; a record just received does not.
        if (republish || entry.row.failures > 0) && self.policy.check_network {
            let fetched = tokio::time::timeout(self.policy.put_timeout, self.target.fetch(&name));
            match fetched.await {
                Ok(Ok(Some(remote))) if remote != bytes => {
                    if let Some((b, s)) = self.adopt(&name, remote, &bytes, now).await {
                        (bytes, sequence, adopted) = (b, s, true);
                    }
                }
                Ok(Err(e)) if e.unreachable => {
                    let attempt = Attempt::Unreachable { message: e.message };
                    return done(bytes, sequence, attempt, None, false);
                }
                Ok(Err(e)) => {
                    tracing::debug!(%name, code = e.code, error = %e.message,
                        "network check failed; putting the stored record");
                }
                Ok(Ok(_)) => {}
                Err(_) => tracing::debug!(%name, "network check timed out"),
            }
        }
        let started = Instant::now();
        let put = tokio::time::timeout(
            self.policy.put_timeout,
            self.target.put(&name, bytes.clone()),
        );
        let attempt = match put.await {
            Ok(Ok(report)) => Attempt::Published {
                peers: report.peers,
            },
            Ok(Err(e)) if e.unreachable => Attempt::Unreachable { message: e.message },
            Ok(Err(e)) => Attempt::Failed {
                code: e.code,
                message: e.message,
            },
            Err(_) => Attempt::Failed {
                code: "kubo_timeout",
                message: format!(
                    "no answer within {}",
                    humantime::format_duration(self.policy.put_timeout)
                ),
            },
        };
        done(bytes, sequence, attempt, Some(started.elapsed()), adopted)
    }

    /// Stores `remote` if it is a valid record for `name` better than
    /// `ours`; returns its bytes and sequence when it is now the stored one.
    async fn adopt(
        &self,
        name: &Name,
        remote: Bytes,
        ours: &Bytes,
        now_ms: u64,
    ) -> Option<(Bytes, u64)> {
        let now = UNIX_EPOCH + Duration::from_millis(now_ms);
        let theirs = match record::validate_bytes(name, remote.clone(), now) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%name, code = e.code(), "the network's record is not valid; ignored");
                return None;
            }
        };
        let mine = record::validate_bytes(name, ours.clone(), UNIX_EPOCH).ok()?;
        if compare(&theirs, &mine) != std::cmp::Ordering::Greater {
            return None;
        }
        match self
            .names
            .put(name, remote.clone(), Source::Network, now)
            .await
        {
            Ok(_) => {
                tracing::info!(%name, sequence = theirs.sequence(),
                    ours = mine.sequence(), "adopted a better record from the network");
                Some((remote, theirs.sequence()))
            }
            Err(e) => {
                tracing::debug!(%name, code = e.code(), "not adopting the network's record");
                None
            }
        }
    }

    /// Writes the outcomes and counts them.
    async fn apply(&self, batch: &[Done]) {
        let outcomes: Vec<(Vec<u8>, Outcome)> = batch
            .iter()
            .map(|d| (d.key.clone(), d.outcome.clone()))
            .collect();
        let store = self.store.clone();
        let policy = self.policy.clone();
        let written = tokio::task::spawn_blocking(move || {
            store.republish_update(&outcomes, |key, record, old, outcome| {
                let stored = record.map(|r| (r.record.as_slice(), r.validity_ms()));
                policy.next_row(key, stored, old, outcome)
            })
        })
        .await;
        match written {
            Ok(Ok(())) => {
                if batch
                    .iter()
                    .any(|d| matches!(d.outcome.attempt, Attempt::Expired))
                {
                    self.names.wake_feed();
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "writing the republish schedule failed"),
            Err(_) => tracing::error!("writing the republish schedule was cancelled"),
        }
        let mut status = self.status.lock();
        let m = &self.metrics;
        for d in batch {
            let name = KeyName(&d.key);
            if let Some(latency) = d.put_latency {
                m.republish_put_seconds.observe(latency.as_secs_f64());
            }
            if d.adopted {
                status.adopted += 1;
                m.republish_adopted.inc();
            }
            match &d.outcome.attempt {
                Attempt::Published { peers } => {
                    status.puts_ok += 1;
                    status.last_put_peers = *peers;
                    status.kubo_reachable = Some(true);
                    m.republish_puts.get_or_create(&result("ok")).inc();
                    tracing::debug!(%name, sequence = d.outcome.sequence, ?peers, "put");
                }
                Attempt::Failed { code, message } => {
                    status.puts_failed += 1;
                    *status
                        .failures_by_error
                        .entry((*code).to_string())
                        .or_default() += 1;
                    m.republish_puts.get_or_create(&result("failed")).inc();
                    m.republish_failures.get_or_create(&reason(code)).inc();
                    tracing::info!(%name, code, error = %message, "put failed; will retry");
                }
                Attempt::Unreachable { .. } => {
                    status.puts_failed += 1;
                    *status
                        .failures_by_error
                        .entry("kubo_unreachable".into())
                        .or_default() += 1;
                    m.republish_puts.get_or_create(&result("failed")).inc();
                    m.republish_failures
                        .get_or_create(&reason("kubo_unreachable"))
                        .inc();
                }
                Attempt::Expired => {
                    status.expired += 1;
                    m.republish_expired.inc();
                    tracing::info!(%name, sequence = d.outcome.sequence,
                        "record expired; no longer republished");
                }
            }
        }
    }

    fn set_reachable(&self, reachable: bool, error: Option<String>) {
        let mut status = self.status.lock();
        status.kubo_reachable = Some(reachable);
        status.kubo_error = error;
        self.metrics.kubo_up.set(i64::from(reachable));
    }

    /// Recomputes the overdue gauge.
    async fn update_gauges(&self) {
        let before = self
            .clock
            .now_ms()
            .saturating_sub(OVERDUE_GRACE.as_millis() as u64);
        let store = self.store.clone();
        let counted = tokio::task::spawn_blocking(move || {
            Ok::<_, crate::store::StoreError>(
                store.republish_count_due(CLASS_FRESH, before)?
                    + store.republish_count_due(CLASS_REPUBLISH, before)?,
            )
        })
        .await;
        if let Ok(Ok(n)) = counted {
            self.metrics.republish_overdue.set(n as i64);
        }
    }
}

/// A name key shown as its name, formatted only when a log line is
/// actually written (the outcome loop runs for every put).
struct KeyName<'a>(&'a [u8]);

impl std::fmt::Display for KeyName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match name_of_key(self.0) {
            Some(n) => n.fmt(f),
            None => f.write_str("(unreadable name key)"),
        }
    }
}

fn min_some(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn result(result: &'static str) -> crate::metrics::ResultLabel {
    crate::metrics::ResultLabel { result }
}

fn reason(reason: &'static str) -> crate::metrics::ReasonLabel {
    crate::metrics::ReasonLabel { reason }
}
