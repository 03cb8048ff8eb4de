//! The `dnsaddr` crate against a real DNS server: Knot (Debian's `knot`) on
//! loopback, serving `sidecar.test.` (see `compat_tests::dns`).
//!
//! - Resolution through hickory to that server: nested names, the peer
//!   suffix filter, other TXT records beside dnsaddr ones, a loop, a chain
//!   longer than the depth bound, a 255-byte value (kept) and a 300-byte
//!   one (Knot stores two character-strings; refused), TTL caching.
//! - Publishing by RFC 2136 + TSIG: this peer's values are added, replaced
//!   and withdrawn while another peer's values and a non-dnsaddr record stay;
//!   a wrong secret, an unknown key and no key are refused and change
//!   nothing.
//!
//! Prerequisite: `knotd` and `kdig` (`compat-tests/scripts/setup.sh`).

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use compat_tests::dns::DnsServer;
use dnsaddr::{
    HickorySource, Limits, Multiaddr, PeerId, PublishError, Publisher, RecordSet, Resolver, Tsig,
    resolve::Outcome,
};

const A: &str = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
const B: &str = "12D3KooWAt1rftMDWepeketqm6KDThSZNAjCHTtiEx4SoTFH7gB2";
const ZONE: &str = "sidecar.test.";

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn ma(s: &str) -> Result<Multiaddr> {
    s.parse().with_context(|| format!("multiaddr {s}"))
}

fn quoted(value: &str) -> String {
    format!("\"{value}\"")
}

fn strings(addrs: &[Multiaddr]) -> Vec<String> {
    addrs.iter().map(ToString::to_string).collect()
}

/// A `/dns4/<name>/tcp/1` TXT value of exactly `len` bytes.
fn value_of_len(len: usize) -> String {
    let fixed = "dnsaddr=/dns4/".len() + ".test/tcp/1".len();
    let host = "h".repeat(len - fixed);
    format!("dnsaddr=/dns4/{host}.test/tcp/1")
}

#[test]
fn resolution_through_a_real_server_follows_filters_and_stops_at_its_bounds() -> Result<()> {
    let v255 = value_of_len(255);
    let v300 = value_of_len(300);
    let mut records: Vec<(String, u32, &str, String)> = vec![
        (
            "_dnsaddr.top".into(),
            60,
            "TXT",
            quoted("dnsaddr=/dnsaddr/eu.sidecar.test"),
        ),
        (
            "_dnsaddr.top".into(),
            60,
            "TXT",
            quoted(&format!("dnsaddr=/ip4/192.0.2.1/tcp/4001/p2p/{A}")),
        ),
        (
            "_dnsaddr.top".into(),
            60,
            "TXT",
            quoted(&format!("dnsaddr=/ip4/192.0.2.2/tcp/4001/p2p/{B}")),
        ),
        ("_dnsaddr.top".into(), 60, "TXT", quoted("v=spf1 -all")),
        (
            "_dnsaddr.eu".into(),
            30,
            "TXT",
            quoted(&format!("dnsaddr=/ip4/198.51.100.1/tcp/4001/ws/p2p/{A}")),
        ),
        (
            "_dnsaddr.loop1".into(),
            60,
            "TXT",
            quoted("dnsaddr=/dnsaddr/loop2.sidecar.test"),
        ),
        (
            "_dnsaddr.loop2".into(),
            60,
            "TXT",
            quoted("dnsaddr=/dnsaddr/loop1.sidecar.test"),
        ),
        (
            "_dnsaddr.loop2".into(),
            60,
            "TXT",
            quoted("dnsaddr=/ip4/192.0.2.3/tcp/1"),
        ),
        ("_dnsaddr.big".into(), 60, "TXT", quoted(&v255)),
        ("_dnsaddr.big".into(), 60, "TXT", quoted(&v300)),
    ];
    for i in 0..6 {
        records.push((
            format!("_dnsaddr.c{i}"),
            60,
            "TXT",
            quoted(&format!("dnsaddr=/dnsaddr/c{}.sidecar.test", i + 1)),
        ));
        records.push((
            format!("_dnsaddr.c{i}"),
            60,
            "TXT",
            quoted(&format!("dnsaddr=/ip4/192.0.2.{}/tcp/1", 10 + i)),
        ));
    }
    let refs: Vec<(&str, u32, &str, &str)> = records
        .iter()
        .map(|(o, t, k, v)| (o.as_str(), *t, *k, v.as_str()))
        .collect();
    let server = DnsServer::start_with(ZONE, &refs)?;
    // Knot keeps the 300-byte value as two character-strings.
    ensure!(
        server
            .kdig(&["TXT", "_dnsaddr.big.sidecar.test.", "+short"])?
            .contains("\" \"")
    );

    let rt = runtime()?;
    rt.block_on(async {
        let resolver = Resolver::new(HickorySource::nameserver(server.addr())?, Limits::default());

        let cold = Instant::now();
        let all = resolver.resolve(&ma("/dnsaddr/top.sidecar.test")?).await?;
        let cold = cold.elapsed();
        ensure!(
            strings(&all.addrs)
                == [
                    format!("/ip4/198.51.100.1/tcp/4001/ws/p2p/{A}"),
                    format!("/ip4/192.0.2.1/tcp/4001/p2p/{A}"),
                    format!("/ip4/192.0.2.2/tcp/4001/p2p/{B}"),
                ],
            "{:#?}",
            all.tree
        );
        ensure!(
            all.tree.ttl_seconds == Some(60),
            "{:?}",
            all.tree.ttl_seconds
        );
        ensure!(
            all.tree
                .entries
                .iter()
                .any(|e| matches!(e.outcome, Outcome::Invalid { .. }) && e.value == "v=spf1 -all")
        );

        let only_b = resolver
            .resolve(&ma(&format!("/dnsaddr/top.sidecar.test/p2p/{B}"))?)
            .await?;
        ensure!(strings(&only_b.addrs) == [format!("/ip4/192.0.2.2/tcp/4001/p2p/{B}")]);

        let looped = resolver
            .resolve(&ma("/dnsaddr/loop1.sidecar.test")?)
            .await?;
        ensure!(strings(&looped.addrs) == ["/ip4/192.0.2.3/tcp/1"]);
        let Outcome::Nested { tree } = &looped.tree.entries[0].outcome else {
            anyhow::bail!("{:#?}", looped.tree)
        };
        ensure!(tree.entries.iter().any(|e| matches!(
            &e.outcome,
            Outcome::Cycle { domain } if domain == "loop1.sidecar.test"
        )));

        let chain = resolver.resolve(&ma("/dnsaddr/c0.sidecar.test")?).await?;
        ensure!(chain.truncated && chain.addrs.len() == dnsaddr::resolve::DEFAULT_MAX_DEPTH);

        let big = resolver.resolve(&ma("/dnsaddr/big.sidecar.test")?).await?;
        ensure!(strings(&big.addrs) == [v255["dnsaddr=".len()..].to_string()]);
        ensure!(big.tree.entries.iter().any(|e| matches!(
            &e.outcome,
            Outcome::Invalid { error } if error.contains("is 300 bytes")
        )));

        // Warm: served from the cache for the records' TTL.
        let top = ma("/dnsaddr/top.sidecar.test")?;
        let warm = Instant::now();
        for _ in 0..1000 {
            resolver.resolve(&top).await?;
        }
        let warm = warm.elapsed() / 1000;
        eprintln!("[dnsaddr] cold 2-level resolution {cold:?}, warm {warm:?} per lookup");
        Ok(())
    })
}

#[test]
fn publish_replaces_only_this_peers_values_and_a_wrong_key_changes_nothing() -> Result<()> {
    let server = DnsServer::start_with(
        ZONE,
        &[
            (
                "_dnsaddr.pub",
                60,
                "TXT",
                &quoted(&format!("dnsaddr=/ip4/192.0.2.2/tcp/4001/p2p/{B}")),
            ),
            ("_dnsaddr.pub", 60, "TXT", &quoted("v=spf1 -all")),
        ],
    )?;
    let name = "_dnsaddr.pub.sidecar.test.";
    let key = server.tsig();
    let good = Tsig::parse(&format!(
        "{}:{}:{}",
        key.algorithm, key.name, key.secret_b64
    ))?;
    let peer: PeerId = A.parse()?;
    let set = |addrs: &[&str]| -> Result<RecordSet> {
        let addrs: Vec<Multiaddr> = addrs.iter().map(|a| ma(a)).collect::<Result<_>>()?;
        Ok(RecordSet::new("pub.sidecar.test", peer, &addrs, 5)?)
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let b_value = format!("dnsaddr=/ip4/192.0.2.2/tcp/4001/p2p/{B}");
    let rt = runtime()?;
    rt.block_on(async {
        let publisher = Publisher::new(server.addr(), Some(good.clone()));
        let first = set(&["/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/tcp/4002/ws"])?;
        let u = publisher.publish(&first).await?;
        ensure!(
            u.zone == ZONE && u.added.len() == 2 && u.others == 2,
            "{u:?}"
        );
        let mut want = first.values.clone();
        want.extend([b_value.clone(), "v=spf1 -all".to_owned()]);
        ensure!(sorted(server.txt(name)?) == sorted(want.clone()));

        // One address moves: one value replaced, the other kept.
        let second = set(&["/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/tcp/4003/ws"])?;
        let u = publisher.publish(&second).await?;
        ensure!(
            u.added.len() == 1 && u.removed.len() == 1 && u.kept.len() == 1,
            "{u:?}"
        );
        let mut want = second.values.clone();
        want.extend([b_value.clone(), "v=spf1 -all".to_owned()]);
        ensure!(sorted(server.txt(name)?) == sorted(want.clone()));
        ensure!(!publisher.publish(&second).await?.changed());

        // Wrong secret, unknown key, no key: refused, nothing changed.
        let third = set(&["/ip4/127.0.0.1/tcp/4009"])?;
        let wrong = Tsig {
            secret: b"not the secret".to_vec(),
            ..good.clone()
        };
        let unknown = Tsig {
            name: "nobody".into(),
            ..good.clone()
        };
        for (what, tsig) in [
            ("wrong secret", Some(wrong)),
            ("unknown key", Some(unknown)),
            ("no key", None),
        ] {
            let err = Publisher::new(server.addr(), tsig)
                .publish(&third)
                .await
                .err()
                .with_context(|| format!("{what}: the update must be refused"))?;
            eprintln!("[dnsaddr] {what}: {err}");
            ensure!(
                matches!(
                    err,
                    PublishError::BadKey { .. } | PublishError::Refused { .. }
                ),
                "{what}: {err:?}"
            );
            ensure!(
                sorted(server.txt(name)?) == sorted(want.clone()),
                "{what} changed the zone"
            );
        }

        // Resolved through the server: this peer's addresses only.
        let resolver = Resolver::new(HickorySource::nameserver(server.addr())?, Limits::default());
        let found = resolver
            .resolve(&ma(&format!("/dnsaddr/pub.sidecar.test/p2p/{A}"))?)
            .await?;
        ensure!(
            sorted(strings(&found.addrs))
                == sorted(
                    second
                        .values
                        .iter()
                        .map(|v| v["dnsaddr=".len()..].to_string())
                        .collect()
                )
        );

        // Withdrawn: the other peer's value and the SPF record stay.
        let u = publisher.withdraw("pub.sidecar.test", peer).await?;
        ensure!(u.removed.len() == 2 && u.added.is_empty(), "{u:?}");
        ensure!(sorted(server.txt(name)?) == sorted(vec![b_value.clone(), "v=spf1 -all".into()]));

        // Ten entries in one update, timed.
        let ten: Vec<String> = (0..10)
            .map(|i| format!("/ip4/127.0.0.1/tcp/{}", 5000 + i))
            .collect();
        let ten_refs: Vec<&str> = ten.iter().map(String::as_str).collect();
        let started = Instant::now();
        let u = publisher.publish(&set(&ten_refs)?).await?;
        eprintln!("[dnsaddr] publish of 10 entries: {:?}", started.elapsed());
        ensure!(u.added.len() == 10);
        ensure!(server.txt(name)?.len() == 12);
        Ok::<_, anyhow::Error>(())
    })
}
