//! Real clients of the sidecar's name-watch endpoints: a Node.js WebSocket client (Node 24's
//! built-in `WebSocket`, `js/watch.mjs`) on `/name/{key}/watch`, and `EventSource` in
//! headless Chromium (Debian's `chromium`) on `/name/{key}/events`, from a page on another
//! origin (so CORS is exercised). Records are signed by js-ipns (`js/ipns.mjs`) and PUT over
//! the routing API; each client must see the changes, in order, with the right values.
//!
//! Prerequisites: `compat-tests/scripts/setup.sh` (Node 24 + npm packages, chromium) and a
//! built sidecar.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use compat_tests::browser::{Chromium, PageServer};
use compat_tests::helia::Helia;
use compat_tests::http;
use compat_tests::sidecar::Sidecar;
use compat_tests::tools;
use serde_json::Value;

const IPNS_RECORD: &str = "application/vnd.ipfs.ipns-record";
const TIMEOUT: Duration = Duration::from_secs(60);

/// A js-ipns record for the key in `<scratch>/k.key`: (name, bytes).
fn record(helia: &Helia, seq: u64) -> Result<(String, Vec<u8>)> {
    let key_file = helia.scratch().join("k.key");
    let out = helia.scratch().join(format!("r{seq}.bin"));
    let made = helia.ipns(&[
        "create",
        "--key-file",
        &key_file.to_string_lossy(),
        "--value",
        &value(seq),
        "--seq",
        &seq.to_string(),
        "--lifetime-ms",
        "86400000",
        "--ttl-ms",
        "1000",
        "--out",
        &out.to_string_lossy(),
    ])?;
    let name = made["name"].as_str().context("name")?.to_owned();
    Ok((name, std::fs::read(&out)?))
}

/// Identity CIDs of "", "a", "b", … : values nobody has to fetch.
fn value(seq: u64) -> String {
    [
        "/ipfs/bafkqaaa",
        "/ipfs/bafkqaalb",
        "/ipfs/bafkqaalc",
        "/ipfs/bafkqaald",
    ][seq as usize % 4]
        .to_owned()
}

fn put(sidecar: &Sidecar, name: &str, record: &[u8]) -> Result<()> {
    let r = http::request(
        "PUT",
        sidecar.http_addr()?,
        &format!("/routing/v1/ipns/{name}"),
        Some((IPNS_RECORD, record)),
        TIMEOUT,
    )?;
    ensure!(r.status == 200, "PUT: {} {}", r.status, r.text());
    Ok(())
}

#[test]
fn node_websocket_and_chromium_eventsource_receive_changes() -> Result<()> {
    let mut sidecar = Sidecar::new()?;
    sidecar.start()?;
    let helia = Helia::new()?;
    let records: Vec<(String, Vec<u8>)> =
        (1..=3).map(|s| record(&helia, s)).collect::<Result<_>>()?;
    let name = records[0].0.clone();

    // Node: a WebSocket watcher gets both updates, in order, with the records.
    let mut node = Command::new(tools::node_bin()?)
        .arg(tools::js_dir().join("watch.mjs"))
        .args([
            "--url",
            &format!("ws://{}/name/{name}/watch", sidecar.http_addr()?),
            "--count",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting node watch.mjs")?;
    let stderr = node.stderr.take().context("stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(TIMEOUT).context("watch.mjs said nothing")?;
    ensure!(first == "open", "watch.mjs: {first}");
    put(&sidecar, &name, &records[0].1)?;
    put(&sidecar, &name, &records[1].1)?;
    let out = node.wait_with_output()?;
    ensure!(
        out.status.success(),
        "watch.mjs failed: {:?}",
        rx.try_iter().collect::<Vec<_>>()
    );
    let messages: Vec<Value> = String::from_utf8(out.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    ensure!(messages.len() == 2, "{messages:?}");
    for (m, (seq, (_, bytes))) in messages.iter().zip((1u64..).zip(&records)) {
        ensure!(
            m["key"] == name.as_str() && m["value"] == value(seq).as_str(),
            "{m}"
        );
        ensure!(m["sequence"] == seq, "{m}");
        let record = base64::engine::general_purpose::STANDARD
            .decode(m["record"].as_str().context("record")?)?;
        ensure!(record == *bytes, "the exact record bytes");
    }

    // Chromium: EventSource from another origin gets the next update.
    let page = format!(
        r#"<!doctype html><title>watch</title><script>
const report = (path, body) => fetch(path, {{ method: 'POST', body }});
const es = new EventSource('http://{addr}/name/{name}/events');
es.onopen = () => report('/report/open', '');
es.onerror = () => report('/report/error', String(es.readyState));
es.addEventListener('updated', (e) => report('/report/event?id=' + e.lastEventId, e.data));
</script>"#,
        addr = sidecar.http_addr()?,
    );
    let server = PageServer::start(page)?;
    let _browser = Chromium::open(&server.url())?;
    server
        .wait_report("/report/open", TIMEOUT)
        .with_context(|| {
            format!(
                "the page's EventSource never opened: {:?}",
                server.reports()
            )
        })?;
    put(&sidecar, &name, &records[2].1)?;
    let event = server.wait_report("/report/event", TIMEOUT)?;
    let data: Value = serde_json::from_str(&event.body)?;
    ensure!(event.path == "/report/event?id=3", "{event:?}");
    ensure!(
        data["value"] == value(3).as_str() && data["key"] == name.as_str(),
        "{data}"
    );
    if server.reports().iter().any(|r| r.path == "/report/error") {
        bail!("the EventSource reported an error: {:?}", server.reports());
    }
    sidecar.stop()?;
    Ok(())
}
