//! The DHT rig ([`compat_tests::dht::DhtMesh`]) works on this machine: four Kubo daemons
//! on loopback carry IPNS records between each other through their LAN DHT.
//!
//! The first test, in order (one mesh for all steps; it takes 0.4–1.3 s to build here):
//!
//! 1. node A (index 0) publishes a name for a block it `block put`; node D (index 3)
//!    resolves it with `--nocache` and gets A's exact record bytes from `routing get` (D
//!    answers from the copy A's put left in D's DHT store, so this proves the put reached
//!    D, not that D searched);
//! 2. a record signed outside the mesh (by [`dht::start_outsider`]) is put with `name put`
//!    on B, and D resolves it; a higher sequence put on C wins; `name put` of the lower
//!    sequence is refused; `routing put` of it changes nothing;
//! 3. D, stopped while a newer record goes out and started again, answers `routing get`
//!    from the older copy in its own DHT store, and `name resolve --nocache` races that
//!    copy against its peers (the LAN-only rig's blind spot, see `compat_tests::dht`); a
//!    re-put of the newer record fixes D;
//! 4. A restarted keeps its RPC URL, peer ID and keys, rejoins every routing table, and
//!    publishes again;
//! 5. a record past its validity (`--lifetime`) resolves nowhere;
//! 6. with A, B and C stopped, D still resolves A's name from its own DHT store.
//!
//! A second test shows [`DhtMode::WanStub`] closing the blind spot of step 3.
//!
//! Timings go to stderr (`cargo test -p compat-tests --test dht_rig -- --nocapture`).
//! Prerequisite: `compat-tests/scripts/install-kubo.sh` (Kubo v0.43.0).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use compat_tests::dht::{self, DhtMesh, DhtMode};
use compat_tests::kubo::Kubo;
use compat_tests::tools;

/// Record validity of the long-lived names (Kubo's default is 48 h; 1 h is plenty here).
const LIFETIME: Duration = Duration::from_secs(3600);
/// Record TTL: how long a resolver may cache the answer.
const TTL: Duration = Duration::from_secs(1);
/// Validity of the record that must expire during the test.
const SHORT_LIFETIME: Duration = Duration::from_secs(5);
/// Identity CIDs of "", "a" and "ab" (the bytes are in the CID): values nobody fetches.
const THIRD_V1: &str = "/ipfs/bafkqaaa";
const THIRD_V2: &str = "/ipfs/bafkqaalb";
const THIRD_V3: &str = "/ipfs/bafkqaatbmi";
/// Resolves on a node with a stale copy, to show how often the copy wins.
const STALE_ROUNDS: u32 = 20;
const A: usize = 0;
const B: usize = 1;
const C: usize = 2;
const D: usize = 3;

/// The tests of this file run one at a time, so the timings they print are not inflated
/// by another mesh on the same two cores.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `f`, printing how long it took under `what`.
fn timed<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    let result = f();
    let outcome = if result.is_ok() { "ok" } else { "error" };
    eprintln!("[dht_rig] {what}: {:?} ({outcome})", started.elapsed());
    result
}

fn ipns_key(name: &str) -> String {
    format!("/ipns/{name}")
}

/// `node` resolves `name` (cache bypassed) to `want`.
fn expect_resolves(node: &Kubo, name: &str, want: &str, what: &str) -> Result<()> {
    let got = timed(
        &format!("{what}: name resolve --nocache on {}", node.label()),
        || node.name_resolve(name, true),
    )?;
    ensure!(
        got == want,
        "{what}: {} resolved {name} to {got}, not {want}",
        node.label()
    );
    Ok(())
}

#[test]
fn dht_rig_carries_ipns_records_between_real_kubo_nodes() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut mesh = timed("DhtMesh::start(4)", || DhtMesh::start(4))?;
    for i in 0..mesh.len() {
        let tables = dht::routing_tables(mesh.node(i))?;
        ensure!(tables.lan.len() == 3, "node {i}: {tables:?}");
        ensure!(
            tables.wan.is_empty(),
            "loopback peers stay out of the WAN DHT: {tables:?}"
        );
    }
    let result = run(&mut mesh);
    let result = result.map_err(|e| anyhow!("{e:#}\n--- mesh logs ---\n{}", mesh.logs_tails()));
    result?;
    timed("DhtMesh::stop", || mesh.stop())
}

fn run(mesh: &mut DhtMesh) -> Result<()> {
    // 1. A publishes, D resolves and gets A's exact bytes.
    let cid = mesh
        .node(A)
        .block_put(format!("dht rig block {}", tools::unix_nanos()).as_bytes())?;
    let value = format!("/ipfs/{cid}");
    let key_name = mesh.node(A).key_gen("rig")?;
    let name = timed("1. name publish on A", || {
        mesh.node(A).name_publish("rig", &value, LIFETIME, TTL)
    })?;
    ensure!(name == key_name, "published {name}, key is {key_name}");
    for round in 1..=3 {
        expect_resolves(mesh.node(D), &name, &value, &format!("1. round {round}"))?;
    }
    let published = mesh.node(A).name_get(&name)?;
    let on_d = timed("1. routing get on D", || {
        mesh.node(D).routing_get(&ipns_key(&name))
    })?;
    ensure!(
        !published.is_empty() && on_d == published,
        "D holds A's exact record"
    );
    expect_resolves(mesh.node(B), &name, &value, "1.")?;
    expect_resolves(mesh.node(C), &name, &value, "1.")?;

    // 2. A record signed outside the mesh, put by B; a higher sequence wins; a lower one is
    // refused by `name put` and ignored by the DHT.
    let outsider = dht::start_outsider("outsider")?;
    let third = outsider.key_gen("third")?;
    outsider.name_publish("third", THIRD_V1, LIFETIME, TTL)?;
    let seq0 = outsider.name_get(&third)?;
    let unknown = timed("2. name resolve --nocache on D of an unknown name", || {
        mesh.node(D).name_resolve(&third, true)
    });
    ensure!(
        unknown.is_err(),
        "the mesh cannot know {third} yet: {unknown:?}"
    );
    timed("2. name put on B (seq 0)", || {
        mesh.node(B).name_put(&third, &seq0)
    })?;
    expect_resolves(mesh.node(D), &third, THIRD_V1, "2. seq 0")?;
    ensure!(mesh.node(D).routing_get(&ipns_key(&third))? == seq0);

    outsider.name_publish("third", THIRD_V2, LIFETIME, TTL)?;
    let seq1 = outsider.name_get(&third)?;
    timed("2. name put on C (seq 1)", || {
        mesh.node(C).name_put(&third, &seq1)
    })?;
    expect_resolves(mesh.node(D), &third, THIRD_V2, "2. seq 1")?;
    timed("2. name put on B of the same bytes (refresh)", || {
        mesh.node(B).name_put(&third, &seq1)
    })?;
    timed("2. routing put on C of the same bytes (refresh)", || {
        mesh.node(C).routing_put(&ipns_key(&third), &seq1)
    })?;
    let refused = mesh
        .node(B)
        .name_put(&third, &seq0)
        .err()
        .context("name put of seq 0 over seq 1 must be refused")?;
    eprintln!("[dht_rig] 2. name put of seq 0 over seq 1 refused: {refused:#}");
    ensure!(
        format!("{refused:#}").contains(
            "existing IPNS record has sequence 1 >= new record sequence 0, \
             use 'ipfs name put --force' to skip this check"
        ),
        "unexpected refusal: {refused:#}"
    );
    let stale_put = timed("2. routing put on B of the older record", || {
        mesh.node(B).routing_put(&ipns_key(&third), &seq0)
    });
    eprintln!("[dht_rig] 2. routing put of seq 0 over seq 1 reported: {stale_put:?}");
    ensure!(stale_put.is_ok(), "Kubo swallows the DHT's refusal");
    expect_resolves(mesh.node(D), &third, THIRD_V2, "2. after the stale put")?;
    ensure!(mesh.node(D).routing_get(&ipns_key(&third))? == seq1);

    // 3. D misses an update while down; its own copy then shadows the network.
    mesh.node_mut(D).stop()?;
    outsider.name_publish("third", THIRD_V3, LIFETIME, TTL)?;
    let seq2 = outsider.name_get(&third)?;
    timed("3. name put on B (seq 2) while D is down", || {
        mesh.node(B).name_put(&third, &seq2)
    })?;
    timed("3. start D", || mesh.node_mut(D).start(dht::MESH_LOG_LEVEL))?;
    timed("3. reconnect D", || mesh.reconnect(D))?;
    for i in [A, B, C] {
        ensure!(
            mesh.node(i).routing_get(&ipns_key(&third))? == seq2,
            "node {i} has seq 2"
        );
    }
    // `routing get` on D mostly answers from D's copy: the dual DHT's WAN half returns the
    // local copy at once and cancels the LAN query, unless the LAN answer wins the race
    // (seen about once in a few hundred gets on a loaded 2-core machine).
    let (mut stale, mut fresh) = (0, 0);
    for _ in 0..STALE_ROUNDS {
        let on_d = mesh.node(D).routing_get(&ipns_key(&third))?;
        if on_d == seq1 {
            stale += 1;
        } else if on_d == seq2 {
            fresh += 1;
        } else {
            anyhow::bail!("D's routing get returned neither seq 1 nor seq 2");
        }
    }
    eprintln!(
        "[dht_rig] 3. {STALE_ROUNDS} × routing get on D holding seq 1 while the network has \
         seq 2: {stale} stale, {fresh} fresh"
    );
    ensure!(
        stale > 0,
        "D's own stale copy never shadowed the network in {STALE_ROUNDS} gets"
    );
    // `name resolve --nocache` races D's copy against the peers' answers.
    let (mut stale, mut fresh) = (0, 0);
    let started = Instant::now();
    for _ in 0..STALE_ROUNDS {
        match mesh.node(D).name_resolve(&third, true)?.as_str() {
            THIRD_V2 => stale += 1,
            THIRD_V3 => fresh += 1,
            other => anyhow::bail!("D resolved {third} to {other}"),
        }
    }
    eprintln!(
        "[dht_rig] 3. {STALE_ROUNDS} × name resolve --nocache on D holding seq 1 while the \
         network has seq 2: {stale} stale, {fresh} fresh ({:?} each)",
        started.elapsed() / STALE_ROUNDS
    );
    timed("3. name put on C of seq 2 again (refresh)", || {
        mesh.node(C).name_put(&third, &seq2)
    })?;
    expect_resolves(mesh.node(D), &third, THIRD_V3, "3. after the refresh")?;
    ensure!(mesh.node(D).routing_get(&ipns_key(&third))? == seq2);

    // 4. A restarted: same URL, peer ID and keys; back in every routing table.
    let (url, peer) = (mesh.node(A).rpc_url(), mesh.peer_id(A).to_owned());
    timed("4. restart A + reconnect (stop, start, re-mesh)", || {
        mesh.restart(A)
    })?;
    ensure!(mesh.node(A).rpc_url() == url, "A's RPC URL moved");
    ensure!(mesh.node(A).id()?.peer_id == peer, "A's peer ID changed");
    for i in [B, C, D] {
        ensure!(
            dht::routing_tables(mesh.node(i))?.lan.contains(&peer),
            "node {i} lacks A"
        );
    }
    expect_resolves(mesh.node(A), &third, THIRD_V3, "4. after the restart")?;
    let cid2 = mesh.node(A).block_put(b"dht rig block after the restart")?;
    let value2 = format!("/ipfs/{cid2}");
    let again = timed("4. name publish on A after its restart", || {
        mesh.node(A).name_publish("rig", &value2, LIFETIME, TTL)
    })?;
    ensure!(again == name, "A's key survived the restart");
    expect_resolves(mesh.node(D), &name, &value2, "4. new value")?;

    // 5. A record past its validity resolves nowhere, although every node stored it.
    mesh.node(A).key_gen("short")?;
    let short = mesh
        .node(A)
        .name_publish("short", &value, SHORT_LIFETIME, TTL)?;
    let published_at = Instant::now();
    expect_resolves(mesh.node(D), &short, &value, "5. before expiry")?;
    std::thread::sleep(
        (SHORT_LIFETIME + Duration::from_secs(1)).saturating_sub(published_at.elapsed()),
    );
    let expired = timed("5. name resolve --nocache on D after expiry", || {
        mesh.node(D).name_resolve(&short, true)
    });
    eprintln!("[dht_rig] 5. resolving an expired record: {expired:?}");
    ensure!(expired.is_err(), "an expired record must not resolve");
    let expired_get = mesh.node(D).routing_get(&ipns_key(&short));
    eprintln!(
        "[dht_rig] 5. routing get of an expired record: {:?}",
        expired_get.as_ref().map(Vec::len)
    );
    ensure!(
        expired_get.is_err(),
        "routing get of an expired record must fail"
    );

    // 6. D alone still resolves A's name: the answer comes from D's own DHT store.
    for i in [A, B, C] {
        mesh.node_mut(i).stop()?;
    }
    expect_resolves(mesh.node(D), &name, &value2, "6. D alone")?;
    Ok(())
}

#[test]
fn wan_stub_mode_resolves_the_network_best_over_a_stale_local_copy() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut mesh = timed("WanStub: DhtMesh::start_with(4)", || {
        DhtMesh::start_with(4, DhtMode::WanStub)
    })?;
    let result = stale_copy_in_wan_stub_mode(&mut mesh);
    let result = result.map_err(|e| anyhow!("{e:#}\n--- mesh logs ---\n{}", mesh.logs_tails()));
    result?;
    mesh.stop()
}

fn stale_copy_in_wan_stub_mode(mesh: &mut DhtMesh) -> Result<()> {
    for i in 0..mesh.len() {
        let tables = dht::routing_tables(mesh.node(i))?;
        ensure!(tables.wan.len() == 3, "node {i}: {tables:?}");
    }
    let outsider = dht::start_outsider("outsider")?;
    let name = outsider.key_gen("w")?;
    outsider.name_publish("w", THIRD_V1, LIFETIME, TTL)?;
    let seq0 = outsider.name_get(&name)?;
    timed("WanStub: name put on B (seq 0)", || {
        mesh.node(B).name_put(&name, &seq0)
    })?;
    expect_resolves(mesh.node(D), &name, THIRD_V1, "WanStub: seq 0")?;
    let on_d = timed("WanStub: routing get on D", || {
        mesh.node(D).routing_get(&ipns_key(&name))
    })?;
    ensure!(on_d == seq0);

    mesh.node_mut(D).stop()?;
    outsider.name_publish("w", THIRD_V2, LIFETIME, TTL)?;
    let seq1 = outsider.name_get(&name)?;
    mesh.node(B).name_put(&name, &seq1)?;
    mesh.node_mut(D).start(dht::MESH_LOG_LEVEL)?;
    timed("WanStub: reconnect D", || mesh.reconnect(D))?;
    // D still holds seq 0, but a get now runs a full lookup and picks the best.
    expect_resolves(mesh.node(D), &name, THIRD_V2, "WanStub: D held seq 0")?;
    let on_d = timed("WanStub: routing get on D (held seq 0)", || {
        mesh.node(D).routing_get(&ipns_key(&name))
    })?;
    ensure!(on_d == seq1, "routing get on D returns the network's seq 1");
    Ok(())
}
