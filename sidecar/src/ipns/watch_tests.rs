//! The feed with a real store and name service: live order, resume from
//! the store then live without gaps or repeats, resync past the retention,
//! for a watcher a ring behind, and for an unknown resume point.

use std::time::SystemTime;

use libp2p::identity::Keypair;

use super::*;
use crate::ipns::{
    service::{NameService, Source},
    testing::sign_seq,
};

struct Rig {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    names: NameService,
    feed: Arc<Feed>,
    _stop: CancellationToken,
}

fn rig(capacity: usize) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path().join("s.redb")).unwrap());
    let stop = CancellationToken::new();
    let (names, _) = NameService::start(store.clone(), stop.clone());
    let (feed, _) = Feed::start(store.clone(), capacity, stop.clone()).unwrap();
    names.attach_feed(feed.wake());
    Rig {
        _dir: dir,
        store,
        names,
        feed,
        _stop: stop,
    }
}

impl Rig {
    async fn put(&self, key: &Keypair, seq: u64) -> Name {
        let name = Name::from_public_key(&key.public());
        let rec = sign_seq(key, seq, SystemTime::now() + Duration::from_secs(3600));
        self.names
            .put(&name, rec, Source::Routing, SystemTime::now())
            .await
            .unwrap();
        name
    }
}

async fn next_event(sub: &mut Subscription) -> Arc<Event> {
    match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
        Ok(Next::Event(e)) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

#[tokio::test]
async fn watchers_get_every_change_in_order_with_value_and_record() {
    let r = rig(64);
    let mut sub = r.feed.subscribe(None);
    let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let na = r.put(&a, 1).await;
    let nb = r.put(&b, 1).await;
    let na2 = r.put(&a, 2).await;
    let got: Vec<(u64, Name, u64)> = [
        next_event(&mut sub).await,
        next_event(&mut sub).await,
        next_event(&mut sub).await,
    ]
    .iter()
    .map(|e| (e.id, e.name, e.sequence))
    .collect();
    assert_eq!(got, [(1, na, 1), (2, nb, 1), (3, na2, 2)]);
    let e = r.feed.subscribe(Some(2)).next().await;
    let Next::Event(e) = e else { panic!("{e:?}") };
    assert_eq!(e.value.as_deref(), Some("/ipfs/bafkqaaa2"));
    let json: serde_json::Value = serde_json::from_str(e.json(true)).unwrap();
    assert_eq!(json["key"], na.to_string());
    assert_eq!(json["id"], 3);
    assert_eq!(json["kind"], "updated");
    assert!(json["record"].as_str().unwrap().len() > 100);
    assert!(serde_json::from_str::<serde_json::Value>(e.json(false)).unwrap()["record"].is_null());
}

#[tokio::test]
async fn a_resumed_watcher_gets_what_it_missed_then_live_exactly_once() {
    let r = rig(64);
    let keys: Vec<Keypair> = (0..5).map(|_| Keypair::generate_ed25519()).collect();
    for k in &keys[..4] {
        r.put(k, 1).await;
    }
    // Wait until the pump has sent them (so the resume reads the store).
    while r.feed.last() < 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut sub = r.feed.subscribe(Some(1));
    r.put(&keys[4], 1).await;
    let ids: Vec<u64> = [
        next_event(&mut sub).await.id,
        next_event(&mut sub).await.id,
        next_event(&mut sub).await.id,
        next_event(&mut sub).await.id,
    ]
    .to_vec();
    assert_eq!(ids, [2, 3, 4, 5]);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), sub.next())
            .await
            .is_err(),
        "nothing more"
    );
}

#[tokio::test]
async fn resume_points_past_the_retention_or_unknown_resync() {
    let r = rig(64);
    r.store.set_event_retention(2);
    for _ in 0..5 {
        r.put(&Keypair::generate_ed25519(), 1).await;
    }
    while r.feed.last() < 5 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(matches!(
        r.feed.subscribe(Some(1)).next().await,
        Next::Resync { .. }
    ));
    let Next::Event(e) = r.feed.subscribe(Some(3)).next().await else {
        panic!()
    };
    assert_eq!(e.id, 4);
    assert!(matches!(
        r.feed.subscribe(Some(99)).next().await,
        Next::Resync { .. }
    ));
}

#[tokio::test]
async fn a_watcher_a_ring_behind_resyncs_and_others_are_unaffected() {
    let r = rig(4);
    let mut slow = r.feed.subscribe(None);
    let mut fast = r.feed.subscribe(None);
    for i in 0..10u64 {
        r.put(&Keypair::generate_ed25519(), 1).await;
        assert_eq!(next_event(&mut fast).await.id, i + 1);
    }
    assert!(matches!(slow.next().await, Next::Resync { .. }));
}

#[tokio::test]
async fn a_single_name_watcher_rides_its_own_ring_and_resumes_within_it() {
    let r = rig(64);
    let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let name_a = Name::from_public_key(&a.public());
    let mut sub = r.feed.subscribe_name(name_a, None);
    assert_eq!(r.feed.topics().len(), 1);
    r.put(&b, 1).await;
    r.put(&a, 1).await;
    r.put(&b, 2).await;
    r.put(&a, 2).await;
    let got: Vec<(u64, u64)> = [next_event(&mut sub).await, next_event(&mut sub).await]
        .iter()
        .map(|e| {
            assert_eq!(e.name, name_a);
            (e.id, e.sequence)
        })
        .collect();
    assert_eq!(got, [(2, 1), (4, 2)]);
    // Resuming from the start reads only this name's events from the store.
    let mut again = r.feed.subscribe_name(name_a, Some(0));
    assert_eq!(next_event(&mut again).await.id, 2);
    assert_eq!(next_event(&mut again).await.id, 4);
    drop(sub);
    assert_eq!(r.feed.topics().len(), 1, "another watcher still holds it");
    drop(again);
    assert!(
        r.feed.topics().is_empty(),
        "the last watcher takes the ring"
    );
}
