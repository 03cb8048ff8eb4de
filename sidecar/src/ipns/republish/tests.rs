//! The republisher on paused tokio time against a fake [`Target`]: every
//! put's time is asserted exactly, computed from [`Policy`]'s functions.

use std::{collections::HashMap, time::SystemTime};

use libp2p::identity::Keypair;

use super::*;
use crate::{
    clock::TokioClock,
    ipns::{service::store_key, testing::sign_seq},
    store::republish::RepublishState,
};

/// Unix ms at the start of every test.
const T0: u64 = 1_800_000_000_000;
const S: u64 = 1_000;

fn policy() -> Policy {
    Policy {
        interval: Duration::from_secs(100),
        jitter: 0.1,
        concurrency: 20,
        put_timeout: Duration::from_secs(10),
        retry_min: Duration::from_secs(5),
        retry_max: Duration::from_secs(40),
        catch_up_window: Duration::from_secs(30),
        check_network: true,
    }
}

#[derive(Default)]
struct FakeState {
    up: bool,
    /// (ms since T0 at the start of the put, name, bytes): puts Kubo took.
    puts: Vec<(u64, Name, Bytes)>,
    /// Attempts made while down.
    refused: u32,
    network: HashMap<Name, Bytes>,
    /// Names whose next N puts fail with an error Kubo sends.
    fail: HashMap<Name, u32>,
    delay: Duration,
    concurrent: usize,
    max_concurrent: usize,
}

struct Fake {
    s: Mutex<FakeState>,
    clock: Arc<TokioClock>,
}

impl Fake {
    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.s.lock().unwrap()
    }
}

fn down() -> TargetError {
    TargetError {
        code: "kubo_unreachable",
        message: "connection refused".into(),
        unreachable: true,
    }
}

impl Target for Arc<Fake> {
    async fn put(&self, name: &Name, record: Bytes) -> Result<PutReport, TargetError> {
        let (delay, fail) = {
            let mut s = self.lock();
            if !s.up {
                s.refused += 1;
                return Err(down());
            }
            let at = self.clock.now_ms() - T0;
            s.puts.push((at, *name, record));
            s.concurrent += 1;
            s.max_concurrent = s.max_concurrent.max(s.concurrent);
            let fail = match s.fail.get_mut(name) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            };
            (s.delay, fail)
        };
        tokio::time::sleep(delay).await;
        self.lock().concurrent -= 1;
        if fail {
            return Err(TargetError {
                code: "kubo_error",
                message: "boom".into(),
                unreachable: false,
            });
        }
        Ok(PutReport { peers: Some(3) })
    }

    async fn fetch(&self, name: &Name) -> Result<Option<Bytes>, TargetError> {
        let s = self.lock();
        if !s.up {
            return Err(down());
        }
        Ok(s.network.get(name).cloned())
    }

    async fn probe(&self) -> Result<(), TargetError> {
        if self.lock().up { Ok(()) } else { Err(down()) }
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    names: NameService,
    fake: Arc<Fake>,
    clock: Arc<TokioClock>,
    policy: Policy,
    metrics: Arc<Metrics>,
    running: Option<(CancellationToken, tokio::task::JoinHandle<()>, Arc<Status>)>,
    _writer: CancellationToken,
}

async fn rig(policy: Policy) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path().join("s.redb")).unwrap());
    let writer = CancellationToken::new();
    let (names, _) = NameService::start(store.clone(), writer.clone());
    let clock = Arc::new(TokioClock::new(T0));
    let fake = Arc::new(Fake {
        s: Mutex::new(FakeState {
            up: true,
            ..FakeState::default()
        }),
        clock: clock.clone(),
    });
    Rig {
        _dir: dir,
        store,
        names,
        fake,
        clock,
        policy,
        metrics: Arc::new(Metrics::new()),
        running: None,
        _writer: writer,
    }
}

impl Rig {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.clock.now_ms())
    }

    /// Signs and stores a record for `key` valid until `T0 + valid_ms`.
    async fn put(&self, key: &Keypair, seq: u64, valid_ms: u64) -> (Name, Bytes) {
        let rec = self.sign(key, seq, valid_ms);
        let name = Name::from_public_key(&key.public());
        self.names
            .put(&name, rec.clone(), Source::Routing, self.now())
            .await
            .unwrap();
        (name, rec)
    }

    fn sign(&self, key: &Keypair, seq: u64, valid_ms: u64) -> Bytes {
        sign_seq(key, seq, UNIX_EPOCH + Duration::from_millis(T0 + valid_ms))
    }

    fn start(&mut self) {
        let stop = CancellationToken::new();
        let r = Republisher::new(
            self.store.clone(),
            self.names.clone(),
            self.fake.clone(),
            self.policy.clone(),
            self.clock.clone(),
            self.metrics.clone(),
        );
        let status = r.status();
        let task = tokio::spawn(r.run(stop.clone()));
        self.running = Some((stop, task, status));
    }

    async fn stop(&mut self) {
        if let Some((stop, task, _)) = self.running.take() {
            stop.cancel();
            task.await.unwrap();
        }
    }

    fn status(&self) -> StatusSnapshot {
        self.running.as_ref().unwrap().2.snapshot()
    }

    /// Put times (ms since T0) of `name`.
    fn times(&self, name: &Name) -> Vec<u64> {
        self.puts(name).into_iter().map(|(t, _)| t).collect()
    }

    fn puts(&self, name: &Name) -> Vec<(u64, Bytes)> {
        self.fake
            .lock()
            .puts
            .iter()
            .filter(|(_, n, _)| n == name)
            .map(|(t, _, b)| (*t, b.clone()))
            .collect()
    }

    fn row(&self, name: &Name) -> crate::store::republish::RepublishRow {
        self.store.republish_get(&store_key(name)).unwrap().unwrap()
    }
}

/// Put times (ms since T0) of a record first put at `first` and then every
/// cycle, up to `until`.
fn cycles(p: &Policy, name: &Name, first: u64, until: u64, validity: u64) -> Vec<u64> {
    let key = store_key(name);
    let mut out = vec![first];
    let mut t = first;
    loop {
        t = p.due_after_success(&key, T0 + t, T0 + validity) - T0;
        if t > until || t >= validity {
            return out;
        }
        out.push(t);
    }
}

async fn advance_to(ms_since_t0: u64, clock: &TokioClock) {
    let now = clock.now_ms() - T0;
    tokio::time::sleep(Duration::from_millis(ms_since_t0.saturating_sub(now))).await;
}

#[tokio::test(start_paused = true)]
async fn a_record_is_put_at_once_then_every_interval_less_its_jitter() {
    let mut rig = rig(policy()).await;
    let keys: Vec<Keypair> = (0..3).map(|_| Keypair::generate_ed25519()).collect();
    let mut names = Vec::new();
    for k in &keys {
        names.push(rig.put(k, 1, 10_000 * S).await.0);
    }
    rig.start();
    advance_to(450 * S, &rig.clock).await;
    for name in &names {
        let times = rig.times(name);
        assert_eq!(times, cycles(&rig.policy, name, 0, 450 * S, 10_000 * S));
        assert_eq!(times.len(), 5, "{times:?}");
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!((90 * S..=100 * S).contains(&gap), "{gap}");
        }
        let row = rig.row(name);
        assert_eq!(row.state, RepublishState::Published);
        assert_eq!((row.failures, row.peers, row.published_sequence), (0, 3, 1));
    }
    let s = rig.status();
    assert_eq!((s.puts_ok, s.puts_failed, s.in_flight), (15, 0, 0));
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_exponentially_with_jitter_then_recover() {
    let mut rig = rig(policy()).await;
    let key = Keypair::generate_ed25519();
    let (name, _) = rig.put(&key, 1, 10_000 * S).await;
    rig.fake.lock().fail.insert(name, 4);
    rig.start();
    advance_to(200 * S, &rig.clock).await;
    let k = store_key(&name);
    let p = &rig.policy;
    let mut expected = vec![0];
    for failures in 1..=4 {
        let last = *expected.last().unwrap();
        expected.push(p.due_after_failure(&k, failures, T0 + last, T0 + 10_000 * S) - T0);
    }
    let recovered = *expected.last().unwrap();
    expected.extend(&cycles(p, &name, recovered, 200 * S, 10_000 * S)[1..]);
    assert_eq!(rig.times(&name), expected);
    // 5 s, 10 s, 20 s, 40 s before jitter: the second half of each is random.
    let gaps: Vec<u64> = expected.windows(2).take(4).map(|w| w[1] - w[0]).collect();
    for (gap, d) in gaps.iter().zip([5, 10, 20, 40]) {
        assert!((d * S / 2..d * S).contains(gap), "{gaps:?}");
    }
    let s = rig.status();
    assert_eq!(s.failures_by_error.get("kubo_error"), Some(&4));
    assert_eq!(rig.row(&name).failures, 0);
    rig.stop().await;
}

/// Publishes `n` fresh records at t = 0 and returns their names.
async fn published(rig: &mut Rig, n: usize) -> Vec<Name> {
    let mut names = Vec::new();
    for _ in 0..n {
        names.push(rig.put(&Keypair::generate_ed25519(), 1, 10_000 * S).await.0);
    }
    rig.start();
    advance_to(S, &rig.clock).await;
    for name in &names {
        assert_eq!(rig.times(name), [0]);
    }
    names
}

/// The catch-up puts after `from`: one per name, exactly one per second
/// (30 overdue over a 30 s window) starting at `start`.
fn assert_caught_up(rig: &Rig, names: &[Name], from: u64, start: u64) {
    let mut after: Vec<(u64, Name)> = rig
        .fake
        .lock()
        .puts
        .iter()
        .filter(|(t, _, _)| *t >= from && *t < start + 40 * S)
        .map(|(t, n, _)| (*t, *n))
        .collect();
    after.sort();
    let times: Vec<u64> = after.iter().map(|(t, _)| *t).collect();
    let expected: Vec<u64> = (0..names.len() as u64).map(|k| start + k * S).collect();
    assert_eq!(times, expected);
    let mut seen: Vec<Name> = after.iter().map(|(_, n)| *n).collect();
    seen.sort_by_key(|n| n.to_string());
    seen.dedup();
    assert_eq!(seen.len(), names.len(), "every name exactly once");
}

#[tokio::test(start_paused = true)]
async fn an_outage_keeps_names_due_and_recovery_catches_up_spread_over_the_window() {
    let mut rig = rig(policy()).await;
    let names = published(&mut rig, 30).await;
    advance_to(50 * S, &rig.clock).await;
    rig.fake.lock().up = false;
    advance_to(400 * S, &rig.clock).await;
    let s = rig.status();
    assert_eq!(s.kubo_reachable, Some(false));
    assert!(s.failures_by_error["kubo_unreachable"] >= 1, "{s:?}");
    let counts = rig.store.republish_counts(rig.clock.now_ms()).unwrap();
    assert_eq!(
        (counts.due_now, counts.queued),
        (30, 30),
        "every name stays due"
    );
    assert!(counts.failing >= 1);
    let refused = rig.fake.lock().refused;
    assert!(
        refused <= 20,
        "attempts stop once Kubo is found down: {refused}"
    );

    rig.fake.lock().up = true;
    // Probes run every 5 s from the first failure; the first one after
    // 400 s finds Kubo back and starts the catch-up.
    advance_to(500 * S, &rig.clock).await;
    let first = rig
        .fake
        .lock()
        .puts
        .iter()
        .map(|(t, _, _)| *t)
        .find(|t| *t >= 400 * S)
        .unwrap();
    assert!((400 * S..405 * S).contains(&first), "{first}");
    assert_caught_up(&rig, &names, 400 * S, first);
    let s = rig.status();
    assert_eq!(s.kubo_reachable, Some(true));
    assert!(s.catching_up.is_none());
    assert_eq!(
        rig.store
            .republish_counts(rig.clock.now_ms())
            .unwrap()
            .failing,
        0
    );
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_resumes_the_schedule_without_a_burst_or_a_skip() {
    let mut rig = rig(policy()).await;
    let names = published(&mut rig, 30).await;
    rig.stop().await;
    // Down for five intervals: every name is overdue at the restart.
    advance_to(500 * S, &rig.clock).await;
    assert_eq!(rig.fake.lock().puts.len(), 30);
    rig.start();
    advance_to(560 * S, &rig.clock).await;
    assert_caught_up(&rig, &names, 500 * S, 500 * S);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_better_record_on_the_network_is_adopted_and_the_older_never_put_again() {
    let mut rig = rig(policy()).await;
    let key = Keypair::generate_ed25519();
    let other = Keypair::generate_ed25519();
    let (name, first) = rig.put(&key, 2, 10_000 * S).await;
    let (other_name, other_rec) = rig.put(&other, 2, 10_000 * S).await;
    rig.start();
    advance_to(20 * S, &rig.clock).await;
    let better = rig.sign(&key, 5, 10_000 * S);
    let worse = rig.sign(&other, 1, 10_000 * S);
    rig.fake.lock().network.insert(name, better.clone());
    rig.fake.lock().network.insert(other_name, worse);
    advance_to(400 * S, &rig.clock).await;

    let puts = rig.puts(&name);
    assert_eq!(puts[0], (0, first));
    assert!(puts.len() >= 4);
    assert!(
        puts[1..].iter().all(|(_, b)| *b == better),
        "only the adopted record after"
    );
    let stored = rig.names.get(&name).await.unwrap().unwrap();
    assert_eq!((stored.sequence, stored.source), (5, "network"));
    assert_eq!(stored.bytes, better);
    assert!(rig.puts(&other_name).iter().all(|(_, b)| *b == other_rec));
    assert_eq!(rig.status().adopted, 1);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_expired_record_is_no_longer_put() {
    let mut rig = rig(policy()).await;
    let key = Keypair::generate_ed25519();
    let (name, _) = rig.put(&key, 1, 150 * S).await;
    rig.start();
    advance_to(600 * S, &rig.clock).await;
    let times = rig.times(&name);
    assert_eq!(times, cycles(&rig.policy, &name, 0, 600 * S, 150 * S));
    assert_eq!(times.len(), 2);
    let row = rig.row(&name);
    assert_eq!(row.state, RepublishState::Expired);
    assert_eq!(
        row.last_attempt_ms,
        T0 + 150 * S,
        "looked at exactly at its end of life"
    );
    assert_eq!(rig.status().expired, 1);
    let counts = rig.store.republish_counts(rig.clock.now_ms()).unwrap();
    assert_eq!((counts.names, counts.queued), (1, 0));
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_newer_record_supersedes_one_in_flight() {
    let mut rig = rig(policy()).await;
    rig.fake.lock().delay = Duration::from_secs(2);
    let key = Keypair::generate_ed25519();
    let (name, older) = rig.put(&key, 1, 10_000 * S).await;
    rig.start();
    advance_to(S, &rig.clock).await;
    let (_, newer) = rig.put(&key, 2, 10_000 * S).await;
    advance_to(150 * S, &rig.clock).await;
    let puts = rig.puts(&name);
    assert_eq!(puts[0], (0, older));
    assert_eq!(puts[1], (2 * S, newer.clone()), "the newer one right after");
    // Then on the newer one's cycle: each put takes 2 s, and the next is
    // due an interval (less jitter) after the last one finished.
    let k = store_key(&name);
    let mut expected = vec![2 * S];
    let mut finished = 4 * S;
    loop {
        let t = rig
            .policy
            .due_after_success(&k, T0 + finished, T0 + 10_000 * S)
            - T0;
        if t > 150 * S {
            break;
        }
        expected.push(t);
        finished = t + 2 * S;
    }
    assert_eq!(rig.times(&name)[1..], expected[..]);
    assert!(puts[1..].iter().all(|(_, b)| *b == newer));
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_bounded() {
    let mut rig = rig(policy()).await;
    rig.fake.lock().delay = Duration::from_secs(1);
    let mut names = Vec::new();
    for _ in 0..100 {
        names.push(rig.put(&Keypair::generate_ed25519(), 1, 10_000 * S).await.0);
    }
    rig.start();
    advance_to(10 * S, &rig.clock).await;
    let fake = rig.fake.lock();
    assert_eq!(fake.max_concurrent, 20);
    let mut per_second = [0u32; 5];
    for (t, _, _) in &fake.puts {
        per_second[(*t / S) as usize] += 1;
    }
    assert_eq!(per_second, [20; 5]);
}
