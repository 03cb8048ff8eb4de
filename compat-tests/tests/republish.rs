//! Republishing through Kubo on a real DHT on loopback.
//!
//! Four Kubo daemons in a [`DhtMesh`] (test profile, `Routing.Type=dht`,
//! fixed loopback ports so a node can be stopped and started again at the
//! same address), their LAN DHTs filled with each other. The sidecar
//! republishes through node A (index 0) on a 15 s interval. Records are
//! signed by js-ipns (npm `ipns`), PUT to the sidecar over its routing API.
//!
//! One test walks the whole life of stored records: they reach node D
//! (which never talks to the sidecar) and, each time every node's DHT store
//! is wiped (the record "aged out"), come back with the sidecar's next put
//! and resolve on D again; a better record put into the DHT by node C
//! is adopted and the older one never put again; Kubo A stopped for several
//! cycles (names stay due, failures shown, `/readyz` 503), then back (every
//! name caught up, exactly once); the sidecar `kill -9`ed mid-cycle and
//! restarted after every name fell due (each caught up, spread, not burst);
//! a record past its validity stops being put and is reported expired.
//!
//! A second test covers `[republish] kubo_keys`: Kubo A's own keys are
//! re-issued through `name/publish`, with the current value (also one Kubo
//! published itself meanwhile), the record's TTL and a validity only the
//! sidecar gives (Kubo A's own republisher is set to 1 h records).

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use compat_tests::dht::DhtMesh;
use compat_tests::helia::Helia;
use compat_tests::http;
use compat_tests::metrics::Metrics;
use compat_tests::sidecar::Sidecar;
use serde_json::Value;

const IPNS_RECORD: &str = "application/vnd.ipfs.ipns-record";
const TOKEN: &str = "republish-test-token-0123";
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Identity CIDs: values nobody has to fetch ("" and "a").
const VALUE_1: &str = "/ipfs/bafkqaaa";
const VALUE_2: &str = "/ipfs/bafkqaalb";
/// The sidecar's republish interval in this test.
const INTERVAL: Duration = Duration::from_secs(15);
const NODES: usize = 4;

fn wait(what: &str, timeout: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if done()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

struct Rig {
    mesh: DhtMesh,
    sidecar: Sidecar,
    helia: Helia,
}

impl Rig {
    /// A js-ipns record for the key in `key` (made on first use).
    fn record(
        &self,
        key: &str,
        seq: u64,
        value: &str,
        lifetime: Duration,
    ) -> Result<(String, Vec<u8>)> {
        let key_file = self.helia.scratch().join(format!("{key}.key"));
        let out = self.helia.scratch().join(format!("{key}-{seq}.bin"));
        let made = self.helia.ipns(&[
            "create",
            "--key-file",
            &key_file.to_string_lossy(),
            "--value",
            value,
            "--seq",
            &seq.to_string(),
            "--lifetime-ms",
            &lifetime.as_millis().to_string(),
            "--ttl-ms",
            "1000",
            "--out",
            &out.to_string_lossy(),
        ])?;
        let name = made["name"].as_str().context("name")?.to_string();
        Ok((name, std::fs::read(&out)?))
    }

    fn put(&self, name: &str, record: &[u8]) -> Result<()> {
        let r = http::request(
            "PUT",
            self.sidecar.http_addr()?,
            &format!("/routing/v1/ipns/{name}"),
            Some((IPNS_RECORD, record)),
            HTTP_TIMEOUT,
        )?;
        ensure!(r.status == 200, "PUT {name}: {} {}", r.status, r.text());
        Ok(())
    }

    fn admin(&self, path: &str) -> Result<Value> {
        let r = self.sidecar.admin("GET", path, TOKEN, None)?;
        ensure!(r.status == 200, "{path}: {} {}", r.status, r.text());
        serde_json::from_slice(&r.body).with_context(|| r.text())
    }

    /// The republish part of `/admin/ipns/{name}`.
    fn schedule(&self, name: &str) -> Result<Value> {
        Ok(self.admin(&format!("/admin/ipns/{name}"))?["republish"].clone())
    }

    /// RFC 3339 time of the last successful put of `name`, if any.
    fn last_success(&self, name: &str) -> Result<Option<String>> {
        Ok(self.schedule(name)?["last_success"]
            .as_str()
            .map(str::to_owned))
    }

    fn wait_put_after(&self, name: &str, after: Option<&str>, timeout: Duration) -> Result<String> {
        let mut last = None;
        wait(&format!("a put of {name} after {after:?}"), timeout, || {
            last = self.last_success(name)?;
            Ok(last.is_some() && last.as_deref() > after)
        })
        .map_err(|e| anyhow::anyhow!("{e}\n{}", self.sidecar.logs_tail()))?;
        Ok(last.unwrap_or_default())
    }

    /// What node `i` resolves `name` to, going past its resolve cache.
    fn resolve_on(&self, i: usize, name: &str) -> Result<String> {
        self.mesh.node(i).name_resolve(name, true)
    }

    /// The record node `i` finds in the DHT for `name`.
    fn routing_get_on(&self, i: usize, name: &str) -> Result<Vec<u8>> {
        self.mesh.node(i).routing_get(&format!("/ipns/{name}"))
    }

    fn puts_ok(&self) -> Result<f64> {
        let text = http::get(self.sidecar.http_addr()?, "/metrics", HTTP_TIMEOUT)?.text();
        Ok(Metrics::parse(&text)?
            .sum("sidecar_republish_puts_total", &[("result", "ok")])
            .unwrap_or(0.0))
    }
}

fn start_sidecar(kubo_rpc: &str, extra: &[(&str, &str)]) -> Result<Sidecar> {
    let mut sidecar = Sidecar::new()?;
    for (k, v) in [
        ("SIDECAR_KUBO__RPC", kubo_rpc),
        ("SIDECAR_HTTP__ADMIN_TOKEN", TOKEN),
        ("SIDECAR_REPUBLISH__INTERVAL", "15s"),
        ("SIDECAR_REPUBLISH__JITTER", "0.1"),
        ("SIDECAR_REPUBLISH__RETRY_MIN", "1s"),
        ("SIDECAR_REPUBLISH__RETRY_MAX", "4s"),
        ("SIDECAR_REPUBLISH__CATCH_UP_WINDOW", "6s"),
        ("SIDECAR_REPUBLISH__PUT_TIMEOUT", "30s"),
    ]
    .iter()
    .chain(extra)
    {
        sidecar.set_env(k, v);
    }
    sidecar.start()?;
    Ok(sidecar)
}

#[test]
fn records_stay_on_a_real_dht_through_outages_restarts_and_better_records() -> Result<()> {
    let mesh = DhtMesh::start(NODES)?;
    let sidecar = start_sidecar(&mesh.node(0).rpc_url(), &[])?;
    let mut rig = Rig {
        mesh,
        sidecar,
        helia: Helia::new()?,
    };

    // 1. Records PUT to the sidecar reach node D through Kubo A.
    let day = Duration::from_secs(86_400);
    let mut names = Vec::new();
    for k in 0..4 {
        let (name, record) = rig.record(&format!("k{k}"), 1, VALUE_1, day)?;
        rig.put(&name, &record)?;
        names.push((name, record));
    }
    let mut first_put = Vec::new();
    for (name, record) in &names {
        first_put.push(rig.wait_put_after(name, None, Duration::from_secs(60))?);
        let s = rig.schedule(name)?;
        ensure!(s["state"] == "published", "{s}");
        let reached = s["reached"].as_str().unwrap_or_default();
        ensure!(
            reached.ends_with(" DHT peers") && reached != "0 DHT peers",
            "Kubo A knows the other nodes: {s}"
        );
        ensure!(
            rig.routing_get_on(3, name)? == *record,
            "D holds the exact bytes"
        );
        ensure!(rig.resolve_on(3, name)? == VALUE_1);
    }
    // ... and across cycles after the network has forgotten the record (every node's DHT
    // store wiped, as if the record had aged out): nobody finds it until the sidecar's next
    // put, then D resolves it from the DHT again.
    let (name, record) = names[0].clone();
    let mut cycles = 0;
    for attempt in 0..6 {
        if cycles == 3 {
            break;
        }
        let before = rig.last_success(&name)?;
        let put = rig.wait_put_after(&name, before.as_deref(), INTERVAL * 2)?;
        rig.mesh.forget_records(&[0, 1, 2, 3])?;
        let lost = rig.routing_get_on(3, &name);
        if rig.last_success(&name)?.as_deref() != Some(put.as_str()) {
            // The next cycle came while the mesh restarted: this round proves nothing.
            eprintln!("[republish] forget round {attempt} overlapped a put; again");
            continue;
        }
        ensure!(
            lost.is_err(),
            "after forgetting, D still finds the record: {:?}",
            lost.map(|b| b.len())
        );
        let again = rig.wait_put_after(&name, Some(&put), INTERVAL * 2)?;
        ensure!(
            rig.routing_get_on(3, &name)? == record,
            "cycle {cycles}: D finds the exact bytes again after the put at {again}"
        );
        ensure!(rig.resolve_on(3, &name)? == VALUE_1, "cycle {cycles}");
        cycles += 1;
    }
    ensure!(
        cycles == 3,
        "only {cycles} of 3 forget-and-put cycles were conclusive"
    );

    // 4. A better record put into the DHT by node C is adopted before the
    // next republish; the older one is never put again.
    let (name, _) = names[1].clone();
    let (_, better) = rig.record("k1", 2, VALUE_2, day)?;
    let better_file = rig.helia.scratch().join("better.bin");
    std::fs::write(&better_file, &better)?;
    rig.mesh
        .node(2)
        .cli(&["name", "put", &name, &better_file.to_string_lossy()])?;
    wait(
        "the sidecar to adopt the better record",
        INTERVAL * 3,
        || {
            let r = rig.admin(&format!("/admin/ipns/{name}"))?;
            Ok(r["sequence"] == 2 && r["source"] == "network")
        },
    )?;
    let adopted_at = rig.wait_put_after(&name, None, Duration::from_secs(1))?;
    let after = rig.wait_put_after(&name, Some(&adopted_at), INTERVAL * 2)?;
    ensure!(
        rig.schedule(&name)?["state"] == "published",
        "put again at {after}"
    );
    ensure!(
        rig.routing_get_on(3, &name)? == better,
        "the network keeps the better record"
    );
    ensure!(rig.resolve_on(3, &name)? == VALUE_2);

    // 2. Kubo A stopped for several cycles: names stay due, failures shown.
    rig.mesh.node_mut(0).stop()?;
    let down = Instant::now();
    wait("the sidecar to notice Kubo A is down", INTERVAL * 2, || {
        let r = rig.admin("/admin/republish")?;
        Ok(r["live"]["kubo_reachable"] == false)
    })?;
    let ready = http::get(rig.sidecar.http_addr()?, "/readyz", HTTP_TIMEOUT)?;
    ensure!(
        ready.status == 503,
        "/readyz while Kubo is down: {}",
        ready.text()
    );
    std::thread::sleep((INTERVAL * 3).saturating_sub(down.elapsed()));
    let r = rig.admin("/admin/republish")?;
    ensure!(
        r["schedule"]["due_now"].as_u64() == Some(names.len() as u64),
        "{r}"
    );
    ensure!(
        r["live"]["failures_by_error"]["kubo_unreachable"].as_u64() >= Some(1),
        "{r}"
    );
    ensure!(r["oldest_overdue"].is_string(), "{r}");
    let ok_before = rig.puts_ok()?;
    rig.mesh.restart(0)?;
    let back = Instant::now();
    // Back: every name put once, within the 6 s catch-up window (plus a
    // 5 s probe period), before the next cycle could start.
    wait(
        "every name to be caught up",
        Duration::from_secs(20),
        || Ok(rig.puts_ok()? >= ok_before + names.len() as f64),
    )?;
    ensure!(
        back.elapsed() < INTERVAL,
        "caught up in {:?}",
        back.elapsed()
    );
    ensure!(
        rig.puts_ok()? == ok_before + names.len() as f64,
        "each name exactly once"
    );
    ensure!(http::get(rig.sidecar.http_addr()?, "/readyz", HTTP_TIMEOUT)?.status == 200);

    // 3. kill -9 mid-cycle; restart after every name fell due: each is put
    // again, spread over the window rather than at once.
    rig.sidecar.kill()?;
    std::thread::sleep(INTERVAL + Duration::from_secs(2));
    let restart = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    rig.sidecar.start()?;
    let mut times = Vec::new();
    for (name, _) in &names {
        times.push(rig.wait_put_after(name, Some(&restart), Duration::from_secs(30))?);
    }
    times.sort();
    ensure!(
        times.first() != times.last() && spread_ms(&times)? >= 2_000,
        "catch-up puts spread over the window, not a burst: {times:?}"
    );
    for (name, _) in &names {
        ensure!(rig.resolve_on(3, name).is_ok());
    }

    // 5. A record past its validity stops being put and is reported expired.
    let (short, record) = rig.record("short", 1, VALUE_1, Duration::from_secs(25))?;
    rig.put(&short, &record)?;
    rig.wait_put_after(&short, None, Duration::from_secs(30))?;
    wait(
        "the short record to expire",
        Duration::from_secs(60),
        || Ok(rig.schedule(&short)?["state"] == "expired"),
    )?;
    let last = rig.schedule(&short)?["last_success"].clone();
    let gone = http::request_with_headers(
        "GET",
        rig.sidecar.http_addr()?,
        &format!("/routing/v1/ipns/{short}"),
        &[("Accept", IPNS_RECORD)],
        None,
        HTTP_TIMEOUT,
    )?;
    ensure!(gone.status == 404, "{}", gone.text());
    std::thread::sleep(INTERVAL);
    ensure!(
        rig.schedule(&short)?["last_success"] == last,
        "no put after expiry"
    );
    ensure!(rig.admin("/admin/republish")?["live"]["expired"].as_u64() >= Some(1));
    rig.sidecar.stop()?;
    Ok(())
}

/// Milliseconds between the first and last of sorted RFC 3339 times.
fn spread_ms(times: &[String]) -> Result<u64> {
    let at = |t: &String| humantime::parse_rfc3339(t).with_context(|| format!("time {t}"));
    let (first, last) = (
        times.first().context("empty")?,
        times.last().context("empty")?,
    );
    Ok(at(last)?
        .duration_since(at(first)?)
        .unwrap_or_default()
        .as_millis() as u64)
}

#[test]
fn kubo_keys_are_reissued_with_their_current_value_beside_kubos_republisher() -> Result<()> {
    let mut mesh = DhtMesh::start(3)?;
    // Kubo's own republisher signs with Ipns.RecordLifetime: 1 h here, so a record
    // valid for more than 47 h can only come from the sidecar (48 h by default).
    let a = mesh.node(0);
    a.cli(&["config", "Ipns.RecordLifetime", "1h"])?;
    a.cli(&["config", "Ipns.RepublishPeriod", "1h"])?;
    mesh.restart(0)?;
    let a = mesh.node(0);
    let own = a.key_gen("own")?;
    let ttl = Duration::from_secs(30);
    a.name_publish("own", VALUE_1, Duration::from_secs(600), ttl)?;
    let mut sidecar = start_sidecar(&a.rpc_url(), &[("SIDECAR_REPUBLISH__KUBO_KEYS", "true")])?;
    let key = |sidecar: &Sidecar, k: &str| -> Result<Value> {
        let r = sidecar.admin("GET", "/admin/republish", TOKEN, None)?;
        ensure!(r.status == 200, "{}", r.text());
        let v: Value = serde_json::from_slice(&r.body)?;
        let keys = v["live"]["kubo_keys"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(keys
            .into_iter()
            .find(|x| x["key"] == k)
            .unwrap_or(Value::Null))
    };
    let reissued_after = |sidecar: &Sidecar, after: Option<&str>| -> Result<String> {
        let mut last = None;
        wait("a re-issue of Kubo key own", INTERVAL * 3, || {
            last = key(sidecar, "own")?["last_success"]
                .as_str()
                .map(str::to_owned);
            Ok(last.is_some() && last.as_deref() > after)
        })
        .map_err(|e| anyhow::anyhow!("{e}\n{}", sidecar.logs_tail()))?;
        Ok(last.unwrap_or_default())
    };
    // The record D finds: its value and TTL, and how long it is still valid.
    let on_d = |mesh: &DhtMesh| -> Result<(String, u64, Duration)> {
        let record = mesh.node(2).routing_get(&format!("/ipns/{own}"))?;
        let entry = mesh.node(2).name_inspect(&record)?;
        let validity = humantime::parse_rfc3339(entry["Validity"].as_str().context("Validity")?)?;
        let left = validity
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        Ok((
            entry["Value"].as_str().unwrap_or_default().to_owned(),
            entry["TTL"].as_u64().unwrap_or_default(),
            left,
        ))
    };
    const HOURS_47: Duration = Duration::from_secs(47 * 3600);

    let first = reissued_after(&sidecar, None)?;
    let (value, ttl_ns, left) = on_d(&mesh)?;
    ensure!(value == VALUE_1, "D resolves the published value: {value}");
    ensure!(
        ttl_ns == ttl.as_nanos() as u64,
        "the TTL is kept: {ttl_ns} ns"
    );
    ensure!(left > HOURS_47, "re-issued for 48 h, {left:?} left");
    ensure!(mesh.node(2).name_resolve(&own, true)? == VALUE_1);
    let own_view = key(&sidecar, "own")?;
    ensure!(own_view["name"] == own.as_str(), "{own_view}");
    let self_view = key(&sidecar, "self")?;
    ensure!(
        self_view["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("no_record:")),
        "self was never published: {self_view}"
    );

    // Kubo publishes a new value itself (a 10 min record): the next re-issue keeps the
    // new value, never the one the sidecar re-issued before.
    mesh.node(0)
        .name_publish("own", VALUE_2, Duration::from_secs(600), ttl)?;
    let (value, _, left) = on_d(&mesh)?;
    ensure!(value == VALUE_2 && left < Duration::from_secs(3600));
    let second = reissued_after(&sidecar, Some(&first))?;
    let (value, _, left) = on_d(&mesh)?;
    ensure!(
        value == VALUE_2,
        "the re-issue at {second} keeps Kubo's new value: {value}"
    );
    ensure!(left > HOURS_47, "{left:?} left");

    // The schedule is durable: after kill -9 the key's last re-issue is still known
    // and it is not re-issued at start-up.
    let due = key(&sidecar, "own")?["next_due"]
        .as_str()
        .map(humantime::parse_rfc3339)
        .context("next_due")??;
    sidecar.kill()?;
    sidecar.start()?;
    wait("the key schedule after the restart", INTERVAL, || {
        Ok(key(&sidecar, "own")?["last_success"].as_str().is_some())
    })?;
    let after_restart = key(&sidecar, "own")?;
    if SystemTime::now() < due {
        ensure!(
            after_restart["last_success"].as_str() == Some(second.as_str()),
            "not due before {due:?}, so not re-issued at start-up: {after_restart}"
        );
    }
    ensure!(
        after_restart["next_due"]
            .as_str()
            .map(humantime::parse_rfc3339)
            .transpose()?
            >= Some(due),
        "{after_restart}"
    );
    sidecar.stop()?;
    Ok(())
}
