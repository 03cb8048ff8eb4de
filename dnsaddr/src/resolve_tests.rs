//! The resolver against an in-memory zone (the real-server tests are in
//! `compat-tests/tests/dnsaddr.rs`), on paused tokio time for the TTLs.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

const A: &str = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
const B: &str = "12D3KooWAt1rftMDWepeketqm6KDThSZNAjCHTtiEx4SoTFH7gB2";

#[derive(Default)]
struct Zone {
    names: HashMap<String, Result<TxtAnswer, LookupError>>,
    lookups: AtomicUsize,
}

impl Zone {
    fn txt(self, domain: &str, ttl: u64, values: &[&str]) -> Self {
        let records = values.iter().map(|v| vec![v.as_bytes().to_vec()]).collect();
        self.raw(domain, ttl, records)
    }

    fn raw(mut self, domain: &str, ttl: u64, records: Vec<Vec<Vec<u8>>>) -> Self {
        self.names.insert(
            txt::txt_name(domain),
            Ok(TxtAnswer {
                records,
                ttl: Duration::from_secs(ttl),
            }),
        );
        self
    }

    fn fail(mut self, domain: &str, e: LookupError) -> Self {
        self.names.insert(txt::txt_name(domain), Err(e));
        self
    }
}

impl TxtSource for Arc<Zone> {
    async fn txt(&self, name: &str) -> Result<TxtAnswer, LookupError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.names
            .get(name)
            .cloned()
            .unwrap_or(Err(LookupError::NotFound {
                ttl: Some(Duration::from_secs(30)),
            }))
    }
}

fn ma(s: &str) -> Multiaddr {
    s.parse().unwrap()
}

fn resolver(zone: Zone, limits: Limits) -> (Resolver<Arc<Zone>>, Arc<Zone>) {
    let zone = Arc::new(zone);
    (Resolver::new(zone.clone(), limits), zone)
}

fn strings(addrs: &[Multiaddr]) -> Vec<String> {
    addrs.iter().map(|a| a.to_string()).collect()
}

#[tokio::test(start_paused = true)]
async fn nested_names_resolve_and_the_peer_suffix_filters_whole_components() {
    let zone = Zone::default()
        .txt(
            "example.test",
            300,
            &[
                "dnsaddr=/dnsaddr/eu.example.test",
                &format!("dnsaddr=/ip4/192.0.2.1/tcp/4001/p2p/{A}"),
                &format!("dnsaddr=/ip4/192.0.2.2/tcp/4001/p2p/{B}"),
                "google-site-verification=xyz",
            ],
        )
        .txt(
            "eu.example.test",
            60,
            &[
                &format!("dnsaddr=/ip4/198.51.100.1/tcp/4001/ws/p2p/{A}"),
                &format!("dnsaddr=/dnsaddr/b.example.test/p2p/{B}"),
            ],
        );
    let (r, zone) = resolver(zone, Limits::default());
    let all = r.resolve(&ma("/dnsaddr/example.test")).await.unwrap();
    assert_eq!(
        strings(&all.addrs),
        [
            format!("/ip4/198.51.100.1/tcp/4001/ws/p2p/{A}"),
            format!("/ip4/192.0.2.1/tcp/4001/p2p/{A}"),
            format!("/ip4/192.0.2.2/tcp/4001/p2p/{B}"),
        ]
    );
    // b.example.test is followed (no suffix asked) and does not exist.
    assert_eq!(zone.lookups.load(Ordering::SeqCst), 3);
    assert!(!all.truncated);

    let only_a = r
        .resolve(&ma(&format!("/dnsaddr/example.test/p2p/{A}")))
        .await
        .unwrap();
    assert_eq!(
        strings(&only_a.addrs),
        [
            format!("/ip4/198.51.100.1/tcp/4001/ws/p2p/{A}"),
            format!("/ip4/192.0.2.1/tcp/4001/p2p/{A}"),
        ]
    );
    let entries = &only_a.tree.entries;
    assert!(matches!(entries[2].outcome, Outcome::Filtered { .. }));
    assert!(matches!(entries[3].outcome, Outcome::Invalid { .. }));
    let Outcome::Nested { tree } = &entries[0].outcome else {
        panic!("{entries:?}")
    };
    assert!(matches!(
        tree.entries[1].outcome,
        Outcome::NotFollowed { .. }
    ));
    // Served from the TXT cache: no new lookups.
    assert_eq!(zone.lookups.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn loops_and_long_chains_stop_at_their_bounds() {
    let zone = Zone::default()
        .txt("a.test", 60, &["dnsaddr=/dnsaddr/b.test"])
        .txt(
            "b.test",
            60,
            &["dnsaddr=/dnsaddr/a.test", "dnsaddr=/ip4/192.0.2.9/tcp/1"],
        );
    let (r, _) = resolver(zone, Limits::default());
    let res = r.resolve(&ma("/dnsaddr/a.test")).await.unwrap();
    assert_eq!(strings(&res.addrs), ["/ip4/192.0.2.9/tcp/1"]);
    let Outcome::Nested { tree } = &res.tree.entries[0].outcome else {
        panic!()
    };
    assert_eq!(
        tree.entries[0].outcome,
        Outcome::Cycle {
            domain: "a.test".into()
        }
    );

    let mut zone = Zone::default();
    for i in 0..6 {
        zone = zone.txt(
            &format!("l{i}.test"),
            60,
            &[
                &format!("dnsaddr=/dnsaddr/l{}.test", i + 1),
                &format!("dnsaddr=/ip4/192.0.2.{i}/tcp/1"),
            ],
        );
    }
    let (r, zone) = resolver(zone, Limits::default());
    let res = r.resolve(&ma("/dnsaddr/l0.test")).await.unwrap();
    assert_eq!(res.addrs.len(), DEFAULT_MAX_DEPTH);
    assert!(res.truncated);
    assert_eq!(zone.lookups.load(Ordering::SeqCst), DEFAULT_MAX_DEPTH);
    let mut t = &res.tree;
    for _ in 1..DEFAULT_MAX_DEPTH {
        let Outcome::Nested { tree } = &t.entries[0].outcome else {
            panic!()
        };
        t = tree;
    }
    assert_eq!(
        t.entries[0].outcome,
        Outcome::TooDeep {
            domain: "l4.test".into(),
            depth: 5
        }
    );
}

#[tokio::test(start_paused = true)]
async fn address_and_lookup_counts_are_bounded() {
    /// A zone where `top.test` holds ten values made by `value`.
    fn ten(value: impl Fn(usize) -> String) -> Zone {
        let values: Vec<String> = (0..10).map(value).collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        Zone::default().txt("top.test", 60, &refs)
    }
    let top = ma("/dnsaddr/top.test");

    let limits = Limits {
        max_addrs: 4,
        ..Limits::default()
    };
    let (r, _) = resolver(ten(|i| format!("dnsaddr=/ip4/192.0.2.{i}/tcp/1")), limits);
    let res = r.resolve(&top).await.unwrap();
    assert_eq!(res.addrs.len(), 4);
    assert!(res.truncated);
    assert_eq!(res.tree.entries[4].outcome, Outcome::OverLimit);

    let limits = Limits {
        max_lookups: 3,
        ..Limits::default()
    };
    let (r, zone) = resolver(ten(|i| format!("dnsaddr=/dnsaddr/n{i}.test")), limits);
    let res = r.resolve(&top).await.unwrap();
    assert!(res.truncated);
    assert_eq!(zone.lookups.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn values_over_255_bytes_and_split_records_are_refused_one_by_one() {
    let long = format!("dnsaddr=/dns4/{}.test/tcp/1", "a".repeat(250));
    let split_ok = format!("dnsaddr=/ip4/192.0.2.1/tcp/4001/p2p/{A}");
    let (x, y) = split_ok.as_bytes().split_at(10);
    let zone = Zone::default().raw(
        "big.test",
        60,
        vec![
            vec![
                long.as_bytes()[..255].to_vec(),
                long.as_bytes()[255..].to_vec(),
            ],
            vec![x.to_vec(), y.to_vec()],
        ],
    );
    let (r, _) = resolver(zone, Limits::default());
    let res = r.resolve(&ma("/dnsaddr/big.test")).await.unwrap();
    assert_eq!(strings(&res.addrs), [split_ok[8..].to_string()]);
    let Outcome::Invalid { error } = &res.tree.entries[0].outcome else {
        panic!("{:?}", res.tree)
    };
    assert!(
        error.contains(&format!("is {} bytes", long.len())),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn answers_are_cached_for_their_ttl_and_failures_are_not() {
    let zone = Zone::default()
        .txt("t.test", 60, &["dnsaddr=/dnsaddr/u.test"])
        .txt("u.test", 10, &["dnsaddr=/ip4/192.0.2.1/tcp/1"]);
    let (r, zone) = resolver(zone, Limits::default());
    let addr = ma("/dnsaddr/t.test");
    let first = r.resolve(&addr).await.unwrap();
    assert_eq!(zone.lookups.load(Ordering::SeqCst), 2);
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(Arc::ptr_eq(&first, &r.resolve(&addr).await.unwrap()));
    assert_eq!(zone.lookups.load(Ordering::SeqCst), 2);
    // The whole answer expires with its shortest TTL; t.test's TXT stays.
    tokio::time::advance(Duration::from_secs(2)).await;
    let again = r.resolve(&addr).await.unwrap();
    assert_eq!(again.addrs, first.addrs);
    assert_eq!(zone.lookups.load(Ordering::SeqCst), 3);

    let zone = Zone::default().fail("down.test", LookupError::Failed("timed out".into()));
    let (r, zone) = resolver(zone, Limits::default());
    let addr = ma("/dnsaddr/down.test");
    let res = r.resolve(&addr).await.unwrap();
    assert_eq!(res.tree.error.as_deref(), Some("lookup failed: timed out"));
    r.resolve(&addr).await.unwrap();
    assert_eq!(zone.lookups.load(Ordering::SeqCst), 2);

    // A missing name is remembered for its negative TTL (30 s here).
    let (r, zone) = resolver(Zone::default(), Limits::default());
    let addr = ma("/dnsaddr/none.test");
    assert!(r.resolve(&addr).await.unwrap().addrs.is_empty());
    tokio::time::advance(Duration::from_secs(29)).await;
    r.resolve(&addr).await.unwrap();
    assert_eq!(zone.lookups.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    r.resolve(&addr).await.unwrap();
    assert_eq!(zone.lookups.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn non_dnsaddr_input_is_an_error() {
    let (r, _) = resolver(Zone::default(), Limits::default());
    assert!(matches!(
        r.resolve(&ma("/ip4/1.2.3.4/tcp/1")).await,
        Err(ResolveError::NotDnsaddr(_))
    ));
}
