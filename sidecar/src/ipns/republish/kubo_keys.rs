//! Re-issues the Kubo node's own keystore keys (`[republish] kubo_keys`),
//! so one component owns all republishing and its schedule is durable and
//! visible.
//!
//! # Brief overview
//!
//! The sidecar holds no private key: Kubo signs. For each key in Kubo's
//! keystore (`key/ls`, `self` included) the loop ([`KeyRepublisher::run`]):
//! 1. reads the name's current record from the routing system (`name/get`:
//!    Kubo's own DHT store first, then the network), so a value published
//!    since (by Kubo or elsewhere) is the one kept alive;
//! 2. asks Kubo to sign it again (`name/publish --key=<key>`) with the
//!    same value and TTL and a validity of at least
//!    [`KeyPolicy::lifetime`] (never shorter than the record had);
//! 3. schedules the key with the same [`Policy`] as the stored names: due
//!    again after the interval (jittered), a backoff after a failure, due
//!    time kept while Kubo is unreachable.
//!
//! The rows live in the store (`kubo_keys_v1`), so a restart neither
//! forgets a key's schedule nor re-issues every key at once. A key with no
//! record anywhere (never published) has nothing to re-issue: it is looked
//! at again after an interval, with `no_record` as its last error. A key
//! removed from Kubo loses its row.
//!
//! # Living beside Kubo's own republisher
//!
//! Kubo's republisher cannot be switched off (`Ipns.RepublishPeriod` must
//! be 1 min–24 h). It re-issues, from its datastore, each key's last record
//! one minute after start and every period after, with
//! `Ipns.RecordLifetime`. Both go through the same Kubo publisher, which
//! keeps the sequence number when the value is unchanged and bumps it when
//! it changes, so the two never produce conflicting records: each re-issue
//! only extends the validity of the current value. What the sidecar adds:
//! the schedule survives restarts and Kubo outages (Kubo's restarts its
//! timer on every start), failures are retried with backoff and shown in
//! `/admin/republish`, and the validity is at least `kubo_keys_lifetime`.
//! What only Kubo can do: re-issue a record that has already dropped out
//! of the DHT (its datastore copy is not readable over the RPC).
//!
//! Keystores are small, so keys are re-issued one at a time.
//!
//! Called by: `node` (with a [`KuboClient`]); tests drive it with a fake
//! [`Keystore`] on paused tokio time. Must never: publish a value it did
//! not read from the name's current record.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::{Attempt, MAX_SLEEP, Outcome, PROBE_INTERVAL, Policy, Status, TargetError};
use crate::{
    clock::Clock,
    ipns::{Name, record},
    kubo::{KuboClient, KuboError, KuboKey},
    store::{
        Store,
        republish::{RepublishRow, RepublishState},
    },
};

/// How often the key list is read when nothing is due.
pub const KEY_LIST_INTERVAL: Duration = Duration::from_secs(300);
/// TTL given to a re-issued record that carried none (Kubo's default).
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// The error code of a key with no record to re-issue.
pub const NO_RECORD: &str = "no_record";

/// The key-specific settings; the schedule follows [`Policy`].
#[derive(Debug, Clone, PartialEq)]
pub struct KeyPolicy {
    pub schedule: Policy,
    /// Shortest validity of a re-issued record.
    pub lifetime: Duration,
    /// Pass `allow-offline` to `name/publish`.
    pub allow_offline: bool,
}

/// A Kubo keystore, seen through the RPC.
pub trait Keystore: Send + Sync + 'static {
    /// The keys (`key/ls`).
    fn keys(&self) -> impl Future<Output = Result<Vec<KuboKey>, TargetError>> + Send;
    /// The current record of `name` (`name/get`), if any.
    fn current(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Bytes>, TargetError>> + Send;
    /// Signs and publishes a record (`name/publish`).
    fn publish(&self, p: Reissue<'_>) -> impl Future<Output = Result<(), TargetError>> + Send;
}

/// What to ask Kubo to sign: `value` for its key `key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reissue<'a> {
    pub key: &'a str,
    pub value: &'a str,
    pub lifetime: Duration,
    pub ttl: Duration,
    pub allow_offline: bool,
}

fn target_error(e: KuboError) -> TargetError {
    TargetError {
        code: e.code(),
        unreachable: e.is_unreachable(),
        message: e.to_string(),
    }
}

impl Keystore for KuboClient {
    async fn keys(&self) -> Result<Vec<KuboKey>, TargetError> {
        self.key_list().await.map_err(target_error)
    }

    async fn current(&self, name: &str) -> Result<Option<Bytes>, TargetError> {
        match self.name_get(name).await {
            Ok(found) => Ok(found),
            Err(KuboError::NotFound) => Ok(None),
            Err(e) => Err(target_error(e)),
        }
    }

    async fn publish(&self, p: Reissue<'_>) -> Result<(), TargetError> {
        self.name_publish(p.key, p.value, p.lifetime, p.ttl, p.allow_offline)
            .await
            .map(drop)
            .map_err(target_error)
    }
}

/// One key as `GET /admin/republish` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KeyView {
    /// The key's name in Kubo.
    pub key: String,
    /// The IPNS name it signs for.
    pub name: String,
    pub state: &'static str,
    /// RFC 3339.
    pub next_due: String,
    pub last_success: Option<String>,
    pub failures: u32,
    pub last_error: Option<String>,
    /// Sequence of the record last re-issued.
    pub sequence: u64,
}

/// A key's outcome, before it becomes a row.
struct KeyOutcome {
    attempt: Attempt,
    sequence: u64,
    /// Validity of the record Kubo signed (Unix ms); 0 when none was.
    validity_ms: u64,
}

/// The key republisher; see the module docs.
pub struct KeyRepublisher<K> {
    store: Arc<Store>,
    keystore: K,
    policy: KeyPolicy,
    clock: Arc<dyn Clock>,
    status: Arc<Status>,
}

impl<K: Keystore> KeyRepublisher<K> {
    /// `status` is the republisher's, so the admin view shows both.
    pub fn new(
        store: Arc<Store>,
        keystore: K,
        policy: KeyPolicy,
        clock: Arc<dyn Clock>,
        status: Arc<Status>,
    ) -> Self {
        Self {
            store,
            keystore,
            policy,
            clock,
            status,
        }
    }

    /// Runs until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let mut rows: BTreeMap<String, RepublishRow> = match self.read_rows().await {
            Some(rows) => rows.into_iter().collect(),
            None => BTreeMap::new(),
        };
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let mut listed_at: Option<tokio::time::Instant> = None;
        loop {
            let now = self.clock.now_ms();
            let due_now = rows.values().any(|r| r.next_due_ms <= now);
            let list_stale = listed_at.is_none_or(|at| at.elapsed() >= KEY_LIST_INTERVAL);
            let mut sleep = MAX_SLEEP;
            if due_now || list_stale {
                match self.sync_keys(&mut rows, &mut names).await {
                    Ok(()) => {
                        listed_at = Some(tokio::time::Instant::now());
                        if self.reissue_due(&mut rows, &names, &stop).await.is_err() {
                            sleep = PROBE_INTERVAL;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(code = e.code, error = %e.message, "key/ls failed");
                        sleep = PROBE_INTERVAL;
                    }
                }
                self.show(&rows, &names);
            }
            let now = self.clock.now_ms();
            if let Some(next) = rows.values().map(|r| r.next_due_ms).min() {
                sleep = sleep.min(Duration::from_millis(next.saturating_sub(now)));
            }
            if let Some(at) = listed_at {
                sleep = sleep.min(
                    (at + KEY_LIST_INTERVAL).saturating_duration_since(tokio::time::Instant::now()),
                );
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    async fn read_rows(&self) -> Option<Vec<(String, RepublishRow)>> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.kubo_keys()).await {
            Ok(Ok(rows)) => Some(rows),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reading the Kubo key schedule failed");
                None
            }
            Err(_) => None,
        }
    }

    async fn write_rows(&self, rows: Vec<(String, RepublishRow)>, removed: Vec<String>) {
        if rows.is_empty() && removed.is_empty() {
            return;
        }
        let store = self.store.clone();
        let written =
            tokio::task::spawn_blocking(move || store.kubo_keys_update(&rows, &removed)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "writing the Kubo key schedule failed"),
            Err(_) => tracing::error!("writing the Kubo key schedule was cancelled"),
        }
    }

    /// Reads Kubo's key list: new keys get a row due now, removed keys lose
    /// theirs.
    async fn sync_keys(
        &self,
        rows: &mut BTreeMap<String, RepublishRow>,
        names: &mut BTreeMap<String, String>,
    ) -> Result<(), TargetError> {
        let listed = tokio::time::timeout(self.policy.schedule.put_timeout, self.keystore.keys())
            .await
            .map_err(|_| TargetError {
                code: "kubo_timeout",
                message: "key/ls did not answer".into(),
                unreachable: false,
            })??;
        let now = self.clock.now_ms();
        *names = listed.into_iter().map(|k| (k.name, k.id)).collect();
        let added: Vec<(String, RepublishRow)> = names
            .keys()
            .filter(|k| !rows.contains_key(*k))
            .map(|k| (k.clone(), RepublishRow::fresh(now)))
            .collect();
        let removed: Vec<String> = rows
            .keys()
            .filter(|k| !names.contains_key(*k))
            .cloned()
            .collect();
        for k in &removed {
            rows.remove(k);
            tracing::info!(key = %k, "Kubo key removed; no longer re-issued");
        }
        rows.extend(added.iter().cloned());
        self.write_rows(added, removed).await;
        Ok(())
    }

    /// Re-issues every due key, one at a time. `Err` when Kubo became
    /// unreachable (the rest stay due).
    async fn reissue_due(
        &self,
        rows: &mut BTreeMap<String, RepublishRow>,
        names: &BTreeMap<String, String>,
        stop: &CancellationToken,
    ) -> Result<(), ()> {
        let now = self.clock.now_ms();
        let mut due: Vec<(u64, String)> = rows
            .iter()
            .filter(|(_, r)| r.next_due_ms <= now)
            .map(|(k, r)| (r.next_due_ms, k.clone()))
            .collect();
        due.sort();
        for (_, key) in due {
            let Some(name) = names.get(&key) else {
                continue;
            };
            let outcome = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                o = self.reissue(&key, name) => o,
            };
            let unreachable = matches!(outcome.attempt, Attempt::Unreachable { .. });
            let Some(old) = rows.get(&key) else {
                continue;
            };
            let row = self.next_row(&key, old, &outcome);
            self.log(&key, name, &outcome);
            self.write_rows(vec![(key.clone(), row.clone())], Vec::new())
                .await;
            rows.insert(key, row);
            if unreachable {
                return Err(());
            }
        }
        Ok(())
    }

    /// One re-issue of `key` (IPNS name `name`).
    async fn reissue(&self, key: &str, name: &str) -> KeyOutcome {
        let failed = |code: &'static str, message: String| KeyOutcome {
            attempt: Attempt::Failed { code, message },
            sequence: 0,
            validity_ms: 0,
        };
        let from_error = |e: TargetError| KeyOutcome {
            attempt: if e.unreachable {
                Attempt::Unreachable { message: e.message }
            } else {
                Attempt::Failed {
                    code: e.code,
                    message: e.message,
                }
            },
            sequence: 0,
            validity_ms: 0,
        };
        let timeout = self.policy.schedule.put_timeout;
        let parsed: Name = match name.parse() {
            Ok(n) => n,
            Err(e) => return failed("malformed", format!("Kubo's key id {name:?}: {e}")),
        };
        let current = match tokio::time::timeout(timeout, self.keystore.current(name)).await {
            Ok(Ok(Some(bytes))) => bytes,
            Ok(Ok(None)) => {
                return failed(
                    NO_RECORD,
                    format!(
                        "no record for {name} in the routing system; publish it once with \
                         `ipfs name publish --key={key}`"
                    ),
                );
            }
            Ok(Err(e)) => return from_error(e),
            Err(_) => return failed("kubo_timeout", "name/get did not answer".into()),
        };
        // Any validity: an expired record's value is still the one to keep.
        let rec = match record::validate_bytes(&parsed, current, UNIX_EPOCH) {
            Ok(r) => r,
            Err(e) => {
                return failed(
                    "bad_record",
                    format!("the routing system's record is not valid: {e}"),
                );
            }
        };
        let Some(value) = rec.value_str() else {
            return failed("bad_record", "the record's value is not UTF-8".into());
        };
        let now = self.clock.now_ms();
        let left = ms_since_epoch(rec.validity()).saturating_sub(now);
        let lifetime = self.policy.lifetime.max(Duration::from_millis(left));
        let ttl = rec.ttl().unwrap_or(DEFAULT_TTL).min(lifetime);
        let published = self.keystore.publish(Reissue {
            key,
            value,
            lifetime,
            ttl,
            allow_offline: self.policy.allow_offline,
        });
        match tokio::time::timeout(timeout, published).await {
            Ok(Ok(())) => KeyOutcome {
                attempt: Attempt::Published { peers: None },
                sequence: rec.sequence(),
                validity_ms: self.clock.now_ms().saturating_add(ms(lifetime)),
            },
            Ok(Err(e)) => from_error(e),
            Err(_) => failed("kubo_timeout", "name/publish did not answer".into()),
        }
    }

    /// The row after `outcome`: the stored names' rules, except that a key
    /// with nothing to re-issue waits an interval rather than backing off.
    fn next_row(&self, key: &str, old: &RepublishRow, outcome: &KeyOutcome) -> RepublishRow {
        let at_ms = self.clock.now_ms();
        let out = Outcome {
            attempted: Bytes::new(),
            sequence: outcome.sequence,
            at_ms,
            attempt: outcome.attempt.clone(),
        };
        let validity = match outcome.attempt {
            Attempt::Published { .. } => outcome.validity_ms,
            _ => u64::MAX,
        };
        let policy = &self.policy.schedule;
        let mut row = policy
            .next_row(key.as_bytes(), Some((&[], validity)), Some(old), &out)
            .unwrap_or_else(|| old.clone());
        if let Attempt::Failed {
            code: NO_RECORD, ..
        } = outcome.attempt
        {
            row.failures = 0;
            row.next_due_ms = policy.due_after_success(key.as_bytes(), at_ms, u64::MAX);
        }
        if let Attempt::Published { .. } = outcome.attempt {
            row.state = RepublishState::Published;
        }
        row
    }

    fn log(&self, key: &str, name: &str, outcome: &KeyOutcome) {
        match &outcome.attempt {
            Attempt::Published { .. } => {
                tracing::info!(key, %name, sequence = outcome.sequence, "re-issued Kubo key");
            }
            Attempt::Failed { code, message } => {
                tracing::info!(key, %name, code, error = %message, "re-issuing Kubo key failed");
            }
            Attempt::Unreachable { message } => {
                tracing::debug!(key, error = %message, "Kubo unreachable; key stays due");
            }
            Attempt::Expired => {}
        }
    }

    /// Publishes the keys' rows to the admin view.
    fn show(&self, rows: &BTreeMap<String, RepublishRow>, names: &BTreeMap<String, String>) {
        let views = rows
            .iter()
            .map(|(key, row)| KeyView {
                key: key.clone(),
                name: names.get(key).cloned().unwrap_or_default(),
                state: row.state.as_str(),
                next_due: rfc3339(row.next_due_ms),
                last_success: (row.last_success_ms > 0).then(|| rfc3339(row.last_success_ms)),
                failures: row.failures,
                last_error: (!row.last_error.is_empty()).then(|| row.last_error.clone()),
                sequence: row.published_sequence,
            })
            .collect();
        self.status.lock().kubo_keys = Some(views);
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn ms_since_epoch(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, ms)
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
#[path = "kubo_keys_tests.rs"]
mod tests;
