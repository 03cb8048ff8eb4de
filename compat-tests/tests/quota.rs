//! Quota acceptance against real peers: a Kubo with a daily byte budget gets exactly what
//! fits and then DONT_HAVE (seen in Kubo's own log, not after a timeout) while an
//! allowlisted Kubo fetching at the same time is unaffected; Helia is throttled the same
//! way; the day's counters survive a restart; the policy reloads (SIGHUP and
//! `PUT /admin/quotas`) without dropping connections, and an invalid one changes nothing.
//!
//! Prerequisites as for `bitswap.rs`: `compat-tests/scripts/setup.sh` and a built sidecar.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use compat_tests::fixture::{self, Fixture};
use compat_tests::helia::Helia;
use compat_tests::kubo::{self, Kubo};
use compat_tests::kubo_log::{log_events_since, observe_dont_haves};
use compat_tests::process;
use compat_tests::sidecar::Sidecar;
use serde_json::Value;

/// The throttled tier's daily byte budget: a fifth of one big fixture file.
const BUDGET: u64 = 4 * 1024 * 1024;
/// Largest block a fixture file is made of (the 256 KiB-chunked file's leaves); once a
/// want is refused, less than this (plus the file's root node) was left.
const LARGEST_LEAF: u64 = 256 * 1024;
const TOKEN: &str = "compat-admin-token-0123456789";
/// How long a DONT_HAVE may take to show up in Kubo's log (real ones take milliseconds).
const DONT_HAVE_WAIT: Duration = Duration::from_secs(30);
const HELIA_TIMEOUT: Duration = Duration::from_secs(15);

/// The built-in policy with the default tier limited to [`BUDGET`] bytes a day, never
/// escalating to disconnect, and `allowed` on the allowlist.
fn policy(sidecar: &Sidecar, allowed: &str, extra_peers: &str) -> Result<String> {
    let (ok, text) = sidecar.try_cli(&["quota", "init", "--stdout"])?;
    ensure!(ok, "sidecar quota init --stdout failed: {text}");
    let with = |text: String, from: &str, to: &str| -> Result<String> {
        ensure!(text.contains(from), "default policy has no {from:?}");
        Ok(text.replacen(from, to, 1))
    };
    // The first `bytes_per_day` is [tiers.default]'s.
    let text = with(
        text,
        "bytes_per_day = 0",
        &format!("bytes_per_day = {BUDGET}"),
    )?;
    let text = with(text, "escalate_after = \"60s\"", "escalate_after = \"0s\"")?;
    let text = with(text, "allow = []", &format!("allow = [\"{allowed}\"]"))?;
    with(text, "[peers]\n", &format!("[peers]\n{extra_peers}"))
}

fn peers(sidecar: &Sidecar) -> Result<Vec<Value>> {
    let resp = sidecar.admin("GET", "/admin/peers?limit=1000", TOKEN, None)?;
    ensure!(
        resp.status == 200,
        "GET /admin/peers → {}: {}",
        resp.status,
        resp.text()
    );
    let v: Value = serde_json::from_slice(&resp.body)?;
    Ok(v["peers"].as_array().cloned().unwrap_or_default())
}

fn row(sidecar: &Sidecar, peer: &str) -> Result<Value> {
    peers(sidecar)?
        .into_iter()
        .find(|r| r["peer"] == peer)
        .ok_or_else(|| anyhow!("/admin/peers has no row for {peer}"))
}

fn u(v: &Value, key: &str) -> Result<u64> {
    v[key]
        .as_u64()
        .ok_or_else(|| anyhow!("{key} missing or not a number in {v}"))
}

/// Runs `ipfs cat` of `path` on `client` in the background until Kubo logs at least one
/// DONT_HAVE that really came from `server_peer` (not one Kubo simulated after its
/// timeout), then stops it. Returns how long that took.
fn wait_for_real_dont_have(client: &Kubo, server_peer: &str, path: &str) -> Result<Duration> {
    let from = client.golog_lines().len();
    let started = Instant::now();
    let mut cat = client.spawn_cli("cat", &["cat", "--timeout=90s", path])?;
    let seen = process::wait_for(
        "Kubo to log a real DONT_HAVE from the sidecar",
        DONT_HAVE_WAIT,
        || {
            let obs = observe_dont_haves(&log_events_since(client, from), server_peer);
            Ok((!obs.real.is_empty()).then_some(()))
        },
    );
    let elapsed = started.elapsed();
    let _ = cat.terminate(Duration::from_secs(2));
    seen.map(|()| elapsed)
}

/// Bytes of blocks `client` received from `peer` (Kubo's ledger).
fn ledger_received(client: &Kubo, peer: &str) -> Result<u64> {
    let v = client.rpc_json("bitswap/ledger", &[("arg", peer)])?;
    v["Recv"]
        .as_u64()
        .ok_or_else(|| anyhow!("bitswap ledger has no Recv: {v}"))
}

fn file<'a>(fx: &'a Fixture, name: &str) -> Result<&'a [u8]> {
    fx.files
        .iter()
        .find(|f| f.path == name)
        .map(|f| f.bytes.as_slice())
        .ok_or_else(|| anyhow!("fixture has no {name}"))
}

#[test]
fn quotas_hold_against_kubo_and_helia() -> Result<()> {
    let fx = fixture::shared(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let mut sidecar = Sidecar::new()?;
    sidecar.car_import(&fx.cars())?;
    let mut throttled = Kubo::init("throttled", &["/ip4/127.0.0.1/tcp/0"])?;
    let mut allowed = Kubo::init("allowed", &["/ip4/127.0.0.1/tcp/0"])?;
    let throttled_id = throttled.cli_str(&["config", "Identity.PeerID"])?;
    let allowed_id = allowed.cli_str(&["config", "Identity.PeerID"])?;
    let policy_file = sidecar.data_dir().join("quotas.toml");
    let base_policy = policy(&sidecar, &allowed_id, "")?;
    std::fs::write(&policy_file, &base_policy)?;
    sidecar.set_env("SIDECAR_HTTP__ADMIN_TOKEN", TOKEN);
    sidecar.start()?;
    let result = run(
        &mut sidecar,
        fx,
        (&mut throttled, &throttled_id),
        (&mut allowed, &allowed_id),
        &base_policy,
    );
    let result = result.map_err(|e| e.context(format!("sidecar log:\n{}", sidecar.logs_tail())));
    let stopped = sidecar.stop();
    result?;
    stopped
}

fn run(
    sidecar: &mut Sidecar,
    fx: &Fixture,
    (throttled, throttled_id): (&mut Kubo, &str),
    (allowed, allowed_id): (&mut Kubo, &str),
    base_policy: &str,
) -> Result<()> {
    let server_peer = sidecar.health()?.peer_id.clone();
    let big_256k = format!("/ipfs/{}/big-256k.bin", fx.root);
    let big_1m = format!("/ipfs/{}/big-1m.bin", fx.root);

    // 1. Both Kubos fetch at once: the allowlisted one a whole 20 MiB file, the throttled
    //    one until its 4 MiB are spent.
    throttled.start(kubo::BITSWAP_CLIENT_LOG_LEVEL)?;
    allowed.start(kubo::BITSWAP_CLIENT_LOG_LEVEL)?;
    throttled.swarm_connect(&sidecar.tcp_addr()?)?;
    allowed.swarm_connect(&sidecar.tcp_addr()?)?;
    let (allowed_result, throttled_result) = std::thread::scope(|s| {
        let a = s.spawn(|| allowed.cat(&big_1m));
        let t = s.spawn(|| wait_for_real_dont_have(throttled, &server_peer, &big_256k));
        (a.join(), t.join())
    });
    let got = allowed_result
        .map_err(|_| anyhow!("allowlisted fetch panicked"))?
        .context("the allowlisted Kubo's ipfs cat")?;
    ensure!(
        got == file(fx, "big-1m.bin")?,
        "the allowlisted Kubo got different bytes for big-1m.bin"
    );
    let took = throttled_result
        .map_err(|_| anyhow!("throttled fetch panicked"))?
        .context("stage 1: the throttled Kubo must be told DONT_HAVE")?;
    let t_row = row(sidecar, throttled_id)?;
    let spent = u(&t_row, "day_bytes")?;
    let received = ledger_received(throttled, &server_peer)?;
    eprintln!(
        "stage 1: throttled Kubo got {received} bytes ({spent} counted, budget {BUDGET}), \
         DONT_HAVE after {took:?}; allowlisted Kubo got all {} bytes",
        got.len()
    );
    ensure!(t_row["tier"] == "default", "throttled peer's tier: {t_row}");
    ensure!(spent <= BUDGET, "{spent} bytes counted, over the budget");
    ensure!(
        BUDGET - spent < LARGEST_LEAF + 4096,
        "throttled with {} bytes of budget left: more blocks would have fit",
        BUDGET - spent
    );
    ensure!(
        received == spent,
        "Kubo's ledger says {received} bytes arrived, the sidecar counted {spent}"
    );
    ensure!(u(&t_row, "throttled")? > 0, "no throttled wants: {t_row}");
    let a_row = row(sidecar, allowed_id)?;
    ensure!(
        a_row["allowlisted"] == true && u(&a_row, "day_bytes")? == 0,
        "allowlisted peer was counted: {a_row}"
    );

    // 2. Helia (default tier, WebSocket) is held to the same budget: its fetch of the
    //    whole 41 MiB DAG fails and it got at most the budget.
    let before: Vec<String> = peers(sidecar)?
        .iter()
        .filter_map(|r| r["peer"].as_str().map(str::to_owned))
        .collect();
    let helia = Helia::new()?.fetch_car_within(&sidecar.ws_addr()?, &fx.root, HELIA_TIMEOUT);
    ensure!(
        helia.is_err(),
        "Helia fetched the whole DAG through a {BUDGET}-byte budget"
    );
    let h_row = peers(sidecar)?
        .into_iter()
        .find(|r| {
            r["peer"]
                .as_str()
                .is_some_and(|p| !before.iter().any(|b| b == p))
        })
        .ok_or_else(|| anyhow!("no /admin/peers row for the Helia node"))?;
    eprintln!("stage 2: Helia row {h_row}");
    ensure!(
        u(&h_row, "day_bytes")? <= BUDGET,
        "Helia over budget: {h_row}"
    );
    ensure!(
        u(&h_row, "day_bytes")? > 0 && u(&h_row, "throttled")? > 0,
        "Helia was not served and then throttled: {h_row}"
    );

    // 3. Restart: the day's counters come back; the throttled peer stays throttled.
    sidecar.stop()?;
    sidecar.start()?;
    throttled.swarm_connect(&sidecar.tcp_addr()?)?;
    let took = wait_for_real_dont_have(throttled, &server_peer, &big_256k)
        .context("stage 3: still throttled after a restart")?;
    let after_restart = u(&row(sidecar, throttled_id)?, "day_bytes")?;
    eprintln!("stage 3: after restart, {after_restart} bytes counted; DONT_HAVE after {took:?}");
    ensure!(
        after_restart == spent,
        "the restart changed the day's count from {spent} to {after_restart}"
    );

    // 4. Invalid reloads change nothing: a bad PUT is refused naming the key, and a bad
    //    file on SIGHUP is logged and ignored.
    let bad = base_policy.replacen("policy = \"donthave\"", "policy = \"tarpit\"", 1);
    let resp = sidecar.admin("PUT", "/admin/quotas", TOKEN, Some(&bad))?;
    ensure!(
        resp.status == 400 && resp.text().contains("tiers.default.policy"),
        "PUT of an invalid policy → {} {}",
        resp.status,
        resp.text()
    );
    let current = sidecar.admin("GET", "/admin/quotas", TOKEN, None)?;
    ensure!(
        current.status == 200 && current.text() == base_policy,
        "an invalid PUT changed the policy document"
    );
    let unauthorized = sidecar.admin(
        "PUT",
        "/admin/quotas",
        "wrong-token-wrong-token",
        Some(base_policy),
    )?;
    ensure!(
        unauthorized.status == 401,
        "wrong token → {}",
        unauthorized.status
    );
    let policy_file = sidecar.data_dir().join("quotas.toml");
    std::fs::write(&policy_file, &bad)?;
    sidecar.signal("HUP")?;
    process::wait_for(
        "the sidecar to reject the reload",
        Duration::from_secs(10),
        || {
            Ok(sidecar
                .logs_tail()
                .contains("reload rejected")
                .then_some(()))
        },
    )?;
    std::fs::write(&policy_file, base_policy)?;

    // 5. SIGHUP with a doubled budget: more is left at once, same connection.
    let doubled = base_policy.replacen(
        &format!("bytes_per_day = {BUDGET}"),
        &format!("bytes_per_day = {}", 2 * BUDGET),
        1,
    );
    std::fs::write(&policy_file, &doubled)?;
    sidecar.signal("HUP")?;
    process::wait_for(
        "SIGHUP to raise the budget",
        Duration::from_secs(10),
        || {
            let r = row(sidecar, throttled_id)?;
            Ok((r["remaining_day_bytes"].as_u64() == Some(2 * BUDGET - spent)).then_some(()))
        },
    )?;

    // 6. PUT moves the throttled Kubo to the unlimited tier; its fetch now completes over
    //    the connection it already has (routing is off: Kubo could not find the sidecar
    //    again if the connection had been dropped).
    let promoted = policy(
        sidecar,
        allowed_id,
        &format!("\"{throttled_id}\" = \"trusted\"\n"),
    )?;
    let resp = sidecar.admin("PUT", "/admin/quotas", TOKEN, Some(&promoted))?;
    ensure!(resp.status == 200, "PUT → {} {}", resp.status, resp.text());
    let r = row(sidecar, throttled_id)?;
    ensure!(r["tier"] == "trusted", "tier after PUT: {r}");
    let connections_before = u(&r, "connections")?;
    let got = throttled
        .cat(&big_256k)
        .context("stage 6: the promoted Kubo's ipfs cat")?;
    ensure!(
        got == file(fx, "big-256k.bin")?,
        "the promoted Kubo got different bytes for big-256k.bin"
    );
    let r = row(sidecar, throttled_id)?;
    ensure!(
        u(&r, "connections")? == connections_before && connections_before >= 1,
        "connections went from {connections_before} to {}",
        u(&r, "connections")?
    );
    ensure!(
        std::fs::read_to_string(&policy_file)? == promoted,
        "PUT did not persist the policy file"
    );
    eprintln!(
        "stage 6: promoted Kubo fetched all {} bytes on its first connection",
        got.len()
    );
    throttled.stop()?;
    allowed.stop()
}
