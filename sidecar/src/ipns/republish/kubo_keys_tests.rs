//! The key republisher on paused tokio time against a fake [`Keystore`]
//! that signs the way Kubo does: same value, same sequence, the asked
//! validity and TTL.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, UNIX_EPOCH},
};

use libp2p::identity::Keypair;

use super::*;
use crate::{
    clock::TokioClock,
    ipns::testing::{SignOptions, sign},
};

const T0: u64 = 1_800_000_000_000;
const S: u64 = 1_000;

fn policy() -> KeyPolicy {
    KeyPolicy {
        schedule: Policy {
            interval: Duration::from_secs(100),
            jitter: 0.1,
            put_timeout: Duration::from_secs(10),
            retry_min: Duration::from_secs(5),
            retry_max: Duration::from_secs(40),
            ..Policy::default()
        },
        lifetime: Duration::from_secs(1_000),
        allow_offline: false,
    }
}

/// What the fake Kubo did: (ms since T0, key, value, lifetime, ttl).
type Published = (u64, String, String, Duration, Duration);

#[derive(Default)]
struct KuboState {
    up: bool,
    /// Key name → (key pair, IPNS name).
    keys: Vec<(String, Keypair, String)>,
    /// IPNS name → current record.
    records: HashMap<String, Bytes>,
    published: Vec<Published>,
    /// `publish` answers this error once.
    fail_next: Option<&'static str>,
}

struct FakeKubo {
    s: Mutex<KuboState>,
    clock: Arc<TokioClock>,
}

fn down() -> TargetError {
    TargetError {
        code: "kubo_unreachable",
        message: "connection refused".into(),
        unreachable: true,
    }
}

impl FakeKubo {
    fn lock(&self) -> std::sync::MutexGuard<'_, KuboState> {
        self.s.lock().unwrap()
    }

    fn check_up(&self) -> Result<(), TargetError> {
        if self.lock().up { Ok(()) } else { Err(down()) }
    }
}

fn signed(key: &Keypair, value: &str, seq: u64, validity_ms: u64, ttl: Duration) -> Bytes {
    let validity = UNIX_EPOCH + Duration::from_millis(validity_ms);
    sign(
        key,
        value.as_bytes(),
        seq,
        validity,
        ttl,
        &SignOptions::default(),
    )
    .unwrap()
}

impl Keystore for Arc<FakeKubo> {
    async fn keys(&self) -> Result<Vec<KuboKey>, TargetError> {
        self.check_up()?;
        Ok(self
            .lock()
            .keys
            .iter()
            .map(|(name, _, id)| KuboKey {
                name: name.clone(),
                id: id.clone(),
            })
            .collect())
    }

    async fn current(&self, name: &str) -> Result<Option<Bytes>, TargetError> {
        self.check_up()?;
        Ok(self.lock().records.get(name).cloned())
    }

    async fn publish(&self, p: Reissue<'_>) -> Result<(), TargetError> {
        let Reissue {
            key,
            value,
            lifetime,
            ttl,
            ..
        } = p;
        self.check_up()?;
        let now = self.clock.now_ms();
        let mut s = self.lock();
        if let Some(code) = s.fail_next.take() {
            return Err(TargetError {
                code,
                message: "boom".into(),
                unreachable: false,
            });
        }
        let (pair, id) = s
            .keys
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, p, id)| (p.clone(), id.clone()))
            .unwrap();
        let seq = s.records.get(&id).map_or(0, |r| {
            let name: Name = id.parse().unwrap();
            record::validate_bytes(&name, r.clone(), UNIX_EPOCH)
                .unwrap()
                .sequence()
        });
        let rec = signed(&pair, value, seq, now + ms(lifetime), ttl);
        s.records.insert(id, rec);
        s.published
            .push((now - T0, key.into(), value.into(), lifetime, ttl));
        Ok(())
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    kubo: Arc<FakeKubo>,
    clock: Arc<TokioClock>,
    status: Arc<Status>,
    running: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path().join("s.redb")).unwrap());
        let clock = Arc::new(TokioClock::new(T0));
        let kubo = Arc::new(FakeKubo {
            s: Mutex::new(KuboState {
                up: true,
                ..KuboState::default()
            }),
            clock: clock.clone(),
        });
        Rig {
            _dir: dir,
            store,
            kubo,
            clock,
            status: Arc::new(Status::default()),
            running: None,
        }
    }

    /// Adds a Kubo key; with `record`, a published record (value, sequence,
    /// validity in ms since T0, TTL).
    fn key(&self, key: &str, record: Option<(&str, u64, u64, Duration)>) -> String {
        let pair = Keypair::generate_ed25519();
        let id = Name::from_public_key(&pair.public()).to_string();
        let mut s = self.kubo.lock();
        if let Some((value, seq, valid, ttl)) = record {
            s.records
                .insert(id.clone(), signed(&pair, value, seq, T0 + valid, ttl));
        }
        s.keys.push((key.into(), pair, id.clone()));
        id
    }

    fn start(&mut self) {
        let stop = CancellationToken::new();
        let r = KeyRepublisher::new(
            self.store.clone(),
            self.kubo.clone(),
            policy(),
            self.clock.clone(),
            self.status.clone(),
        );
        self.running = Some((stop.clone(), tokio::spawn(r.run(stop))));
    }

    async fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            stop.cancel();
            task.await.unwrap();
        }
    }

    fn published(&self) -> Vec<Published> {
        self.kubo.lock().published.clone()
    }

    fn times(&self, key: &str) -> Vec<u64> {
        self.published()
            .into_iter()
            .filter(|p| p.1 == key)
            .map(|p| p.0)
            .collect()
    }

    fn row(&self, key: &str) -> RepublishRow {
        let rows = self.store.kubo_keys().unwrap();
        rows.into_iter().find(|(k, _)| k == key).unwrap().1
    }

    fn view(&self, key: &str) -> KeyView {
        let views = self.status.snapshot().kubo_keys.unwrap();
        views.into_iter().find(|v| v.key == key).unwrap()
    }

    async fn advance_to(&self, ms_since_t0: u64) {
        let now = self.clock.now_ms() - T0;
        tokio::time::sleep(Duration::from_millis(ms_since_t0.saturating_sub(now))).await;
    }
}

/// When `key` is due again after a re-issue at `at` (ms since T0).
fn next(key: &str, at: u64) -> u64 {
    policy()
        .schedule
        .due_after_success(key.as_bytes(), T0 + at, u64::MAX)
        - T0
}

#[tokio::test(start_paused = true)]
async fn keys_are_reissued_every_interval_with_their_value_ttl_and_a_longer_validity() {
    let mut rig = Rig::new();
    let ttl = Duration::from_secs(30);
    rig.key("site", Some(("/ipfs/bafkqaaa", 7, 3_600 * S, ttl)));
    rig.key("short", Some(("/ipfs/bafkqaalb", 2, 10 * S, ttl)));
    rig.start();
    let second = next("site", 0);
    rig.advance_to(second + 1).await;
    assert_eq!(rig.times("site"), [0, second]);
    let published = rig.published();
    // The record still had an hour: its validity is kept, not shortened.
    let site: Vec<&Published> = published.iter().filter(|p| p.1 == "site").collect();
    assert_eq!(site[0].2, "/ipfs/bafkqaaa");
    assert_eq!(site[0].3, Duration::from_secs(3_600));
    assert_eq!(site[0].4, ttl);
    assert_eq!(
        site[1].3,
        Duration::from_secs(3_600) - Duration::from_millis(second)
    );
    // A record about to expire gets the configured lifetime.
    let short: Vec<&Published> = published.iter().filter(|p| p.1 == "short").collect();
    assert_eq!(short[0].0, 0);
    assert_eq!(short[0].3, Duration::from_secs(1_000));
    let row = rig.row("site");
    assert_eq!(row.state, RepublishState::Published);
    assert_eq!(row.last_success_ms, T0 + second);
    assert_eq!(row.next_due_ms, T0 + next("site", second));
    assert_eq!(row.published_sequence, 7);
    let view = rig.view("site");
    assert_eq!(view.state, "published");
    assert_eq!(view.last_error, None);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_key_never_published_waits_an_interval_and_says_why() {
    let mut rig = Rig::new();
    rig.key("self", None);
    rig.start();
    rig.advance_to(S).await;
    assert!(rig.published().is_empty());
    let row = rig.row("self");
    assert_eq!(row.failures, 0);
    assert_eq!(row.next_due_ms, T0 + next("self", 0));
    assert!(
        row.last_error.starts_with("no_record:"),
        "{}",
        row.last_error
    );
    assert!(rig.view("self").last_error.unwrap().contains("--key=self"));
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_schedule_survives_a_restart_and_removed_keys_go() {
    let mut rig = Rig::new();
    let ttl = Duration::from_secs(1);
    rig.key("a", Some(("/ipfs/bafkqaaa", 1, 5_000 * S, ttl)));
    rig.key("b", Some(("/ipfs/bafkqaaa", 1, 5_000 * S, ttl)));
    rig.start();
    rig.advance_to(10 * S).await;
    rig.stop().await;
    assert_eq!(rig.times("a"), [0]);
    // Down for a while, not long enough for "a" to fall due: nothing at
    // start-up, then "a" exactly at its stored due time.
    rig.kubo.lock().keys.retain(|(k, _, _)| k != "b");
    rig.advance_to(50 * S).await;
    rig.start();
    let due = next("a", 0);
    rig.advance_to(due + 1).await;
    assert_eq!(rig.times("a"), [0, due]);
    assert_eq!(rig.times("b"), [0]);
    let keys: Vec<String> = rig
        .store
        .kubo_keys()
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["a"]);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn kubo_down_keeps_keys_due_and_a_failure_backs_off() {
    let mut rig = Rig::new();
    let ttl = Duration::from_secs(1);
    rig.key("a", Some(("/ipfs/bafkqaaa", 1, 5_000 * S, ttl)));
    rig.kubo.lock().up = false;
    rig.start();
    rig.advance_to(12 * S).await;
    assert!(rig.published().is_empty());
    rig.kubo.lock().up = true;
    // Probed every 5 s: at 15 s Kubo answers and the key goes at once.
    rig.advance_to(16 * S).await;
    assert_eq!(rig.times("a"), [15 * S]);
    // A failed re-issue is retried after the first backoff step, not an
    // interval later.
    let due = next("a", 15 * S);
    let retry = policy()
        .schedule
        .due_after_failure(b"a", 1, T0 + due, u64::MAX)
        - T0;
    assert!(retry - due < 5 * S, "{due} {retry}");
    rig.kubo.lock().fail_next = Some("kubo_error");
    rig.advance_to(retry + 1).await;
    assert_eq!(rig.times("a"), [15 * S, retry]);
    assert_eq!(rig.row("a").failures, 0);
    rig.stop().await;
}
