//! Sidecars advertised as `/dnsaddr/nodes.sidecar.test`, end to end with real peers:
//!
//! - a real DNS server (Knot, `compat_tests::dns`) holds the zone; `sidecar dnsaddr
//!   publish` puts each sidecar's records there by RFC 2136 + TSIG, `check` then passes; a
//!   wrong TSIG key fails with a clear message and changes nothing;
//! - a real Kubo, whose `DNS.Resolvers` sends `sidecar.test.` to a DoH relay in front of that
//!   server, dials `/dnsaddr/nodes.sidecar.test/p2p/<sidecar A>` and fetches a DAG from it;
//! - a real Helia node resolves the same name through the relay (DoH GET) and fetches the DAG
//!   over WebSocket;
//! - two sidecars behind one domain: Kubo given `/dnsaddr/nodes.sidecar.test` without a peer
//!   ID reaches both; after `publish --withdraw` of B, `check` on B reports it missing and
//!   the name resolves to A only.
//!
//! Prerequisites: `compat-tests/scripts/setup.sh` (Kubo, Node 24 + Helia, Knot) and a built
//! sidecar.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use compat_tests::dns::{DnsServer, DohRelay};
use compat_tests::helia::Helia;
use compat_tests::http;
use compat_tests::kubo::{Kubo, free_loopback_ports, loopback_tcp};
use compat_tests::sidecar::Sidecar;
use serde_json::json;

const ZONE: &str = "sidecar.test.";
const DOMAIN: &str = "nodes.sidecar.test";
const TXT_NAME: &str = "_dnsaddr.nodes.sidecar.test.";

/// A small DAG made by a throwaway Kubo: (root CID, CARv1 file).
fn make_dag(dir: &Path) -> Result<(String, std::path::PathBuf)> {
    let maker = Kubo::init("dag-maker", &[])?;
    let file = dir.join("payload.bin");
    let mut bytes = vec![0u8; 600 * 1024];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in bytes.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(&file, &bytes)?;
    let root = maker.add(&file, &["--cid-version=1", "--chunker=size-65536"])?;
    let car = dir.join("dag.car");
    std::fs::write(&car, maker.cli(&["dag", "export", &root])?)?;
    Ok((root, car))
}

fn tsig_spec(server: &DnsServer) -> String {
    let t = server.tsig();
    format!("{}:{}:{}", t.algorithm, t.name, t.secret_b64)
}

/// `sidecar dnsaddr <args…>` for `sidecar`, with the test zone's server and name server.
fn dnsaddr_cli(sidecar: &Sidecar, server: &DnsServer, args: &[&str]) -> Result<(bool, String)> {
    let addr = server.addr().to_string();
    let mut all = vec!["dnsaddr"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--domain", DOMAIN]);
    match args.first() {
        Some(&"publish") => all.extend_from_slice(&["--server", &addr]),
        Some(&"check") => all.extend_from_slice(&["--nameserver", &addr]),
        _ => {}
    }
    sidecar.try_cli(&all)
}

#[test]
fn kubo_and_helia_reach_sidecars_through_a_dnsaddr_name() -> Result<()> {
    let server = DnsServer::start(ZONE)?;
    let relay = DohRelay::start(server.addr())?;
    let scratch = tempfile::tempdir()?;
    let (root, car) = make_dag(scratch.path())?;
    let key = tsig_spec(&server);

    let mut sidecars = Vec::new();
    for _ in 0..2 {
        let mut s = Sidecar::new()?;
        s.car_import(&[&car])?;
        s.set_env("SIDECAR_DNSADDR__DOMAIN", DOMAIN);
        s.start()?;
        sidecars.push(s);
    }
    let ids: Vec<String> = sidecars
        .iter()
        .map(|s| Ok(s.health()?.peer_id.clone()))
        .collect::<Result<_>>()?;
    let a = &sidecars[0];

    // A wrong key: refused, clearly, and the zone is untouched.
    let wrong = format!(
        "{}:{}:{}",
        server.tsig_algorithm(),
        server.tsig_name(),
        "d3Jvbmc="
    );
    let (ok, out) = dnsaddr_cli(a, &server, &["publish", "--tsig-key", &wrong])?;
    ensure!(!ok, "a wrong key must fail: {out}");
    ensure!(out.contains("refused the TSIG key"), "{out}");
    ensure!(server.txt(TXT_NAME)?.is_empty(), "nothing published");

    // Each sidecar publishes its own records; check passes for each.
    for (s, id) in sidecars.iter().zip(&ids) {
        let (ok, out) = dnsaddr_cli(s, &server, &["publish", "--tsig-key", &key])?;
        ensure!(ok, "publish: {out}");
        eprintln!("[dnsaddr_dial] publish: {}", out.trim());
        let (ok, out) = dnsaddr_cli(s, &server, &["check"])?;
        eprintln!("[dnsaddr_dial] check:\n{}", out.trim());
        ensure!(ok, "check: {out}");
        ensure!(
            out.contains(&format!("/p2p/{id}  <- this sidecar")),
            "{out}"
        );
        ensure!(
            out.contains("dial ") && out.contains(": ok, identify from sidecar/"),
            "{out}"
        );
    }
    let values = server.txt(TXT_NAME)?;
    ensure!(values.len() == 4, "two addresses per sidecar: {values:?}");
    // The advertised addresses end with the name (healthz, routing answers).
    let health = a.health()?;
    let dnsaddr = format!("/dnsaddr/{DOMAIN}");
    ensure!(
        health.raw.to_string().contains(&dnsaddr),
        "announce addrs: {}",
        health.raw
    );
    let peer_record = http::get(
        a.http_addr()?,
        &format!("/routing/v1/peers/{}", ids[0]),
        Duration::from_secs(10),
    )?;
    let record: serde_json::Value = serde_json::from_slice(&peer_record.body)?;
    ensure!(
        record["Peers"][0]["Addrs"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(dnsaddr.as_str()))),
        "routing v1 peer record: {record}"
    );

    // Kubo dials /dnsaddr/…/p2p/<A> through the DoH relay and fetches the DAG from A.
    let ports = free_loopback_ports(1)?;
    let relay_url = relay.url();
    let mut kubo = Kubo::init_with("dnsaddr-client", &[&loopback_tcp(ports[0])], |c| {
        c["DNS"]["Resolvers"] = json!({ ZONE: relay_url });
        Ok(())
    })?;
    kubo.start("error")?;
    let before = relay.requests();
    kubo.swarm_connect(&format!("/dnsaddr/{DOMAIN}/p2p/{}", ids[0]))
        .context("Kubo dialling the dnsaddr name")?;
    ensure!(
        relay.requests() > before,
        "Kubo resolved through the DoH relay"
    );
    let exported = kubo.dag_export(&root)?;
    ensure!(
        exported == std::fs::read(&car)?,
        "Kubo fetched the exact DAG"
    );
    let peers = kubo.cli_str(&["swarm", "peers"])?;
    ensure!(peers.contains(&ids[0]), "{peers}");

    // Helia dials the same name over WebSocket, resolving through the relay (DoH GET).
    let helia = Helia::new()?;
    let before = relay.requests();
    let fetched = helia
        .fetch_car_dnsaddr(
            &format!("/dnsaddr/{DOMAIN}/p2p/{}", ids[0]),
            &root,
            &relay_url,
        )
        .context("Helia over /dnsaddr")?;
    ensure!(
        relay.requests() > before,
        "Helia resolved through the DoH relay"
    );
    ensure!(
        fetched.car == std::fs::read(&car)?,
        "Helia fetched the exact DAG"
    );
    let remote = fetched.stats["remote_addr"].as_str().unwrap_or_default();
    ensure!(remote.contains("/ws"), "over WebSocket: {}", fetched.stats);

    // Without a peer ID, the name reaches both sidecars.
    let out = kubo.cli_str(&["swarm", "connect", &format!("/dnsaddr/{DOMAIN}")])?;
    eprintln!("[dnsaddr_dial] swarm connect /dnsaddr/{DOMAIN}: {out}");
    let peers = kubo.cli_str(&["swarm", "peers"])?;
    for id in &ids {
        ensure!(peers.contains(id.as_str()), "{id} not reached: {peers}");
    }

    // B withdraws: check on B reports it missing, the name holds A only.
    let b = &sidecars[1];
    let (ok, out) = dnsaddr_cli(b, &server, &["publish", "--withdraw", "--tsig-key", &key])?;
    ensure!(ok, "withdraw: {out}");
    let (ok, out) = dnsaddr_cli(b, &server, &["check"])?;
    ensure!(
        !ok && out.contains("missing: no entry names this sidecar"),
        "{out}"
    );
    let values = server.txt(TXT_NAME)?;
    ensure!(
        values.len() == 2 && values.iter().all(|v| v.ends_with(&ids[0])),
        "{values:?}"
    );
    let (ok, out) = dnsaddr_cli(a, &server, &["check"])?;
    ensure!(ok, "A still passes: {out}");
    kubo.stop()?;
    Ok(())
}
