//! Bitswap acceptance: a real Kubo and a real Helia fetch a whole DAG from the server, and
//! Kubo is told DONT_HAVE for blocks the server lacks.
//!
//! Two servers run the same client checks ([`check_server`]):
//!
//! - `sidecar_serves_kubo_and_helia` — the sidecar binary after `sidecar car import` of the
//!   fixture CARs. This is the acceptance test.
//! - `kubo_reference_server_serves_kubo_and_helia` — a Kubo daemon that `ipfs dag import`ed
//!   the same CARs. It proves the harness and the expectations against a known-good server;
//!   a failure here is a harness bug.
//!
//! The fixture (≈ 41 MiB of random files, see `compat_tests::fixture`) is generated once per
//! test process ([`fixture::shared`]).
//!
//! Prerequisites: `compat-tests/scripts/setup.sh` (Kubo, Node 24, Helia) and a built sidecar
//! (`cargo build -p sidecar --bin sidecar`, or `SIDECAR_BIN=…`). Missing ones fail loudly.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use compat_tests::car::{self, Car};
use compat_tests::fixture::{self, Fixture, HOLES};
use compat_tests::helia::Helia;
use compat_tests::kubo::{self, Kubo};
use compat_tests::kubo_log::{is_msg, log_events_since, observe_dont_haves};
use compat_tests::metrics::Metrics;
use compat_tests::process;
use compat_tests::server::{BlockServer, KuboServer};
use compat_tests::sidecar::Sidecar;
use serde_json::Value;

/// Kubo prunes a peer from a session after this many consecutive DONT_HAVEs (boxo
/// `sessionwantsender.go`, `peerDontHaveLimit`); the holey directory has more children.
const KUBO_DONT_HAVE_LIMIT: usize = 16;
/// How long the DONT_HAVE observation may take. Real DONT_HAVEs arrive in milliseconds; this
/// only bounds a broken server.
const DONT_HAVE_WAIT: Duration = Duration::from_secs(20);
/// How long Kubo keeps broadcasting a want-have for an unknown CID in the negative check.
const UNKNOWN_CID_WAIT: &str = "2s";
/// Concurrent `ipfs cat` requests in stage c.
const CAT_CONCURRENCY: usize = 16;
const BLOCKS_SENT: &str = "sidecar_bitswap_blocks_sent_total";
const BLOCK_BYTES_SENT: &str = "sidecar_bitswap_block_bytes_sent_total";
const DONT_HAVES_SENT: &str = "sidecar_bitswap_dont_haves_sent_total";
const WANTS_RECEIVED: &str = "sidecar_bitswap_wants_received_total";

#[test]
fn sidecar_serves_kubo_and_helia() -> Result<()> {
    let fx = fixture::shared(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
    let mut sidecar = Sidecar::new()?;
    eprintln!("sidecar binary: {}", sidecar.bin().display());
    let import_log = sidecar
        .car_import(&fx.cars())
        .context("sidecar car import of the fixture CARs")?;
    eprintln!("car import: {}", import_log.trim());
    sidecar.start()?;
    eprintln!("sidecar healthz: {}", sidecar.health()?.raw);
    let result = check_server(&sidecar, fx);
    let result =
        result.map_err(|e| e.context(format!("against the sidecar\n{}", sidecar.logs_tail())));
    // A clean SIGTERM exit is part of the contract, but report the check failure first.
    let stopped = sidecar.stop();
    result?;
    stopped
}

#[test]
fn kubo_reference_server_serves_kubo_and_helia() -> Result<()> {
    let fx = fixture::shared(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")));
    let server = KuboServer::start(&fx.cars())?;
    check_server(&server, fx).map_err(|e| {
        e.context(format!(
            "against the Kubo reference server\n{}",
            server.logs_tail()
        ))
    })
}

/// Stages c, d and e of the acceptance: Kubo over TCP, Helia over WebSocket, DONT_HAVE.
fn check_server(server: &dyn BlockServer, fx: &Fixture) -> Result<()> {
    let mut client = Kubo::init("client", &["/ip4/127.0.0.1/tcp/0"])?;
    client.start(kubo::BITSWAP_CLIENT_LOG_LEVEL)?;
    let tcp = server.tcp_addr()?;
    client.swarm_connect(&tcp)?;
    eprintln!("[{}] client kubo connected to {tcp}", server.name());

    kubo_fetches_everything(server, &client, fx)
        .context("stage c: Kubo fetches the DAG over TCP")?;
    helia_fetches_everything(server, fx)
        .context("stage d: Helia fetches the DAG over WebSocket")?;
    broadcast_want_have_gets_no_dont_have(server, &client)
        .context("stage e0: a broadcast want-have for an unknown CID")?;
    kubo_sees_dont_haves(server, &client, fx)
        .context("stage e: DONT_HAVE for blocks the server lacks")?;
    client.stop()
}

fn counter(m: &Option<Metrics>, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
    match m {
        Some(m) => m.require(name, labels),
        None => Ok(0.0),
    }
}

/// Stage c: `ipfs cat` of every file, byte-compared, then `ipfs dag export` of the root,
/// compared block set first (clear diff) and then byte for byte with the producer's export.
fn kubo_fetches_everything(server: &dyn BlockServer, client: &Kubo, fx: &Fixture) -> Result<()> {
    let before = server.metrics()?;
    let started = Instant::now();
    // Each `cat` is its own Bitswap session with a few round trips; run them concurrently
    // so 500 small files take seconds, not minutes.
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..CAT_CONCURRENCY)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    while let Some(f) = fx.files.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let got = client
                            .cat(&format!("/ipfs/{}/{}", fx.root, f.path))
                            .with_context(|| format!("ipfs cat {}", f.path))?;
                        if got != f.bytes {
                            let at = got
                                .iter()
                                .zip(&f.bytes)
                                .position(|(a, b)| a != b)
                                .unwrap_or(got.len().min(f.bytes.len()));
                            bail!(
                                "{}: got {} bytes, want {}; first difference at byte {at}",
                                f.path,
                                got.len(),
                                f.bytes.len()
                            );
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| anyhow!("a cat worker panicked"))??;
        }
        Ok(())
    })?;
    let cat_time = started.elapsed();
    let exported = client.dag_export(&fx.root)?;
    compare_cars("client kubo's dag export", &exported, &fx.dag_car_bytes)?;
    let after = server.metrics()?;
    let want = Car::parse(&fx.dag_car_bytes)?;
    eprintln!(
        "[{}] kubo: {} files ({} blocks, {} bytes) read back identical in {cat_time:?}; dag export identical",
        server.name(),
        fx.files.len(),
        want.blocks.len(),
        want.data_bytes()
    );
    if after.is_some() {
        let blocks = counter(&after, BLOCKS_SENT, &[])? - counter(&before, BLOCKS_SENT, &[])?;
        let bytes =
            counter(&after, BLOCK_BYTES_SENT, &[])? - counter(&before, BLOCK_BYTES_SENT, &[])?;
        eprintln!(
            "[{}] server counted {blocks} blocks / {bytes} bytes sent",
            server.name()
        );
        // Every block reached the client from this server (its only peer); duplicates may
        // make the counters larger, never smaller.
        ensure!(
            blocks >= want.blocks.len() as f64,
            "{BLOCKS_SENT} grew by {blocks}, fewer than the {} blocks the client received",
            want.blocks.len()
        );
        ensure!(
            bytes >= want.data_bytes() as f64,
            "{BLOCK_BYTES_SENT} grew by {bytes}, less than the {} block bytes the client received",
            want.data_bytes()
        );
    }
    Ok(())
}

/// Fails unless `got` is the same CAR as `want`: first as block sets (naming what differs),
/// then byte for byte (same header, same depth-first order).
fn compare_cars(what: &str, got: &[u8], want: &[u8]) -> Result<()> {
    let g = Car::parse(got).with_context(|| format!("{what}: not a CARv1"))?;
    let w = Car::parse(want)?;
    let (gs, ws) = (g.cid_set(), w.cid_set());
    if gs != ws {
        let missing: Vec<String> = ws
            .difference(&gs)
            .take(5)
            .map(|c| car::cid_to_string(c))
            .collect();
        let extra: Vec<String> = gs
            .difference(&ws)
            .take(5)
            .map(|c| car::cid_to_string(c))
            .collect();
        bail!(
            "{what}: block sets differ ({} vs {} blocks); missing e.g. {missing:?}, unexpected e.g. {extra:?}",
            gs.len(),
            ws.len()
        );
    }
    for (gb, wb) in g.blocks.iter().zip(&w.blocks) {
        if gb.0 == wb.0 && gb.1 != wb.1 {
            bail!(
                "{what}: block {} has different data",
                car::cid_to_string(&gb.0)
            );
        }
    }
    if got != want {
        let at = g.blocks.iter().zip(&w.blocks).position(|(a, b)| a.0 != b.0);
        bail!(
            "{what}: same blocks but not byte-identical (header equal: {}, first order difference at block {at:?})",
            g.header == w.header
        );
    }
    Ok(())
}

/// Stage d: Helia dials the `/ws` address and fetches the DAG over Bitswap 1.2.0.
fn helia_fetches_everything(server: &dyn BlockServer, fx: &Fixture) -> Result<()> {
    let ws = server.ws_addr()?;
    let helia = Helia::new()?;
    let fetch = helia.fetch_car(&ws, &fx.root)?;
    eprintln!("[{}] helia over {ws}: {}", server.name(), fetch.stats);
    let remote = fetch.stats["remote_addr"].as_str().unwrap_or_default();
    ensure!(
        remote.contains("/ws"),
        "Helia's connection is not WebSocket: {remote}"
    );
    let protocols: Vec<&str> = fetch.stats["protocols"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    ensure!(
        protocols.contains(&"/ipfs/bitswap/1.2.0"),
        "server did not advertise /ipfs/bitswap/1.2.0 to Helia: {protocols:?}"
    );
    compare_cars("Helia's CAR", &fetch.car, &fx.dag_car_bytes)
}

/// A raw CIDv1 nobody has: sha2-256-shaped random digest.
fn unknown_cid() -> String {
    let mut digest = [0u8; 32];
    let mut x = compat_tests::tools::unix_nanos() as u64 | 1;
    for b in digest.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    car::cid_to_string(&car::cid_v1(car::RAW, &digest))
}

/// Session events Kubo logged after line `from` ("Bitswap <- DONT_HAVE", pruning, …).
/// Stage e0: `ipfs block get` of an unknown CID. Kubo's session *broadcasts* it as a
/// want-have with `sendDontHave=false` (boxo `messagequeue.go`: broadcast entries are added
/// with `sendDontHave` false), so a spec-following server must stay silent — the spec allows
/// DONT_HAVE only when asked. The sidecar must count the want-have and send no DONT_HAVE.
fn broadcast_want_have_gets_no_dont_have(server: &dyn BlockServer, client: &Kubo) -> Result<()> {
    let cid = unknown_cid();
    let before = server.metrics()?;
    let log_from = client.golog_lines().len();
    let out = process::run(
        "kubo-client-block-get",
        client.command(&[
            "block",
            "get",
            &format!("--timeout={UNKNOWN_CID_WAIT}"),
            &cid,
        ]),
        client.scratch(),
        Duration::from_secs(30),
    );
    ensure!(
        out.is_err(),
        "ipfs block get of the unknown CID {cid} succeeded"
    );
    let after = server.metrics()?;
    let peer = server.peer_id()?;
    let dont_haves: Vec<Value> = log_events_since(client, log_from)
        .into_iter()
        .filter(|v| is_msg(v, "Bitswap <- DONT_HAVE") && v["from"] == peer.as_str())
        .collect();
    ensure!(
        dont_haves.is_empty(),
        "server sent DONT_HAVE to a broadcast want-have (sendDontHave=false): {dont_haves:?}"
    );
    if after.is_some() {
        let haves = counter(&after, WANTS_RECEIVED, &[("kind", "have")])?
            - counter(&before, WANTS_RECEIVED, &[("kind", "have")])?;
        let sent = counter(&after, DONT_HAVES_SENT, &[])? - counter(&before, DONT_HAVES_SENT, &[])?;
        eprintln!(
            "[{}] unknown CID: {haves} want-haves received, {sent} DONT_HAVEs sent",
            server.name()
        );
        ensure!(
            haves >= 1.0,
            "{WANTS_RECEIVED}{{kind=\"have\"}} did not grow for Kubo's broadcast want-have of {cid}"
        );
        ensure!(
            sent == 0.0,
            "{DONT_HAVES_SENT} grew by {sent} although Kubo did not ask for DONT_HAVE"
        );
    }
    Ok(())
}

/// Stage e: Kubo walks the holey directory. The server sends the directory block (which puts
/// it into Kubo's session), then Kubo asks it for each child with `sendDontHave=true`, and a
/// correct server answers DONT_HAVE for each.
///
/// Observation on Kubo's side, without waiting for any request timeout: the client daemon
/// runs with `GOLOG_LOG_LEVEL=bitswap/session=debug,bitswap/client/msgq=info` and JSON logs.
/// boxo's session logs `"Bitswap <- DONT_HAVE"` with `from` and `cid` for every DONT_HAVE it
/// receives (`session.go`, `logReceiveFrom`), and after `peerDontHaveLimit` (16) consecutive
/// ones `"peer <id> sent too many dont haves, removing from session"`
/// (`sessionwantsender.go`). The same session line is also logged for a DONT_HAVE that Kubo
/// *simulates* when a want-block gets no answer in time — on loopback that timeout is
/// boxo's 50 ms minimum (`donthavetimeoutmgr.go`), so it can fire before a real answer
/// arrives — and each simulation is announced by the message queue as
/// `"Bitswap: timeout waiting for blocks"` with its CIDs (`messagequeue.go`). The check
/// therefore counts, per CID, session DONT_HAVE lines minus simulations, and requires
/// DONT_HAVEs that really came over the wire for at least 16 children. `bitswap stat`'s
/// `MessagesReceived` (real incoming messages only) must grow too, and on the sidecar
/// `sidecar_bitswap_dont_haves_sent_total` must grow by at least as many.
fn kubo_sees_dont_haves(server: &dyn BlockServer, client: &Kubo, fx: &Fixture) -> Result<()> {
    let peer = server.peer_id()?;
    let before = server.metrics()?;
    let messages_before = client.bitswap_stat()?["MessagesReceived"]
        .as_u64()
        .unwrap_or(0);
    let log_from = client.golog_lines().len();
    let started = Instant::now();
    let mut refs = client.spawn_cli("refs", &["refs", "-r", "--timeout=60s", &fx.holes_root])?;
    let waited = process::wait_for(
        "Kubo to log real DONT_HAVEs from the server",
        DONT_HAVE_WAIT,
        || {
            let obs = observe_dont_haves(&log_events_since(client, log_from), &peer);
            Ok((obs.real.len() >= KUBO_DONT_HAVE_LIMIT).then_some(obs))
        },
    );
    let elapsed = started.elapsed();
    let _ = refs.terminate(Duration::from_secs(2));
    let obs = waited.map_err(|e| {
        let relevant: Vec<String> = log_events_since(client, log_from)
            .iter()
            .filter(|v| !is_msg(v, "broadcastWantHaves"))
            .take(40)
            .map(Value::to_string)
            .collect();
        e.context(format!(
            "Kubo's bitswap log since the request:\n{}",
            relevant.join("\n")
        ))
    })?;
    let children: BTreeSet<&str> = fx.holes_children.iter().map(String::as_str).collect();
    let strangers: Vec<&String> = obs
        .real
        .keys()
        .filter(|c| !children.contains(c.as_str()))
        .collect();
    ensure!(
        strangers.is_empty(),
        "DONT_HAVE for CIDs outside the holey directory: {strangers:?}"
    );
    let messages_after = client.bitswap_stat()?["MessagesReceived"]
        .as_u64()
        .unwrap_or(0);
    ensure!(
        messages_after > messages_before,
        "Kubo's bitswap MessagesReceived did not grow"
    );
    eprintln!(
        "[{}] kubo received DONT_HAVE for {} of {HOLES} missing children in {elapsed:?} \
         ({} simulated after its 50 ms timeout as well; peer pruned from the session: {})",
        server.name(),
        obs.real.len(),
        obs.simulated,
        obs.pruned
    );
    let after = server.metrics()?;
    if after.is_some() {
        let sent = counter(&after, DONT_HAVES_SENT, &[])? - counter(&before, DONT_HAVES_SENT, &[])?;
        eprintln!("[{}] server counted {sent} DONT_HAVEs sent", server.name());
        ensure!(
            sent >= obs.real.len() as f64,
            "{DONT_HAVES_SENT} grew by {sent}, fewer than the {} DONT_HAVEs Kubo received",
            obs.real.len()
        );
    }
    Ok(())
}
