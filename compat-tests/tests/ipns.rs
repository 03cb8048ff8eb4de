//! IPNS record service against real implementations:
//!
//! - records signed by js-ipns (npm `ipns`, Ed25519 and RSA keys) are accepted over
//!   `PUT /routing/v1/ipns/{name}` and come back byte-identical from `GET`, in every name form;
//! - a tampered js-ipns record is refused with a code and leaves the stored one alone;
//! - Helia (`@helia/ipns` with the delegated routing client pointed at the sidecar) resolves
//!   a name PUT to the sidecar, and Helia publishing through the sidecar lands its record there;
//! - Kubo with `Routing.DelegatedRouters` and `Ipns.DelegatedPublishers` at the sidecar runs
//!   `ipfs name publish`: the record is in the sidecar, byte-identical to Kubo's, and a second
//!   Kubo with no peers at all resolves the name through the sidecar;
//! - the w3name-compatible API reads and writes the same records.
//!
//! Prerequisites as for `bitswap.rs`: `compat-tests/scripts/setup.sh` and a built sidecar.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use compat_tests::helia::Helia;
use compat_tests::http;
use compat_tests::kubo::Kubo;
use compat_tests::sidecar::Sidecar;
use serde_json::Value;

const IPNS_RECORD: &str = "application/vnd.ipfs.ipns-record";
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// `ipfs name publish` through a delegated publisher: Kubo's HTTP routers time out at 15 s.
const KUBO_TIMEOUT: Duration = Duration::from_secs(60);
/// An identity CID (the empty raw block): a value nobody has to fetch.
const VALUE: &str = "/ipfs/bafkqaaa";

fn put_record(addr: &str, name: &str, record: &[u8]) -> Result<http::Response> {
    http::request(
        "PUT",
        addr,
        &format!("/routing/v1/ipns/{name}"),
        Some((IPNS_RECORD, record)),
        HTTP_TIMEOUT,
    )
}

fn get_record(addr: &str, name: &str) -> Result<http::Response> {
    http::request_with_headers(
        "GET",
        addr,
        &format!("/routing/v1/ipns/{name}"),
        &[("Accept", IPNS_RECORD)],
        None,
        HTTP_TIMEOUT,
    )
}

fn json(r: &http::Response) -> Result<Value> {
    serde_json::from_slice(&r.body).with_context(|| format!("not JSON: {}", r.text()))
}

/// Signs a record with js-ipns and returns (its JSON line from ipns.mjs, the record bytes).
fn js_record(helia: &Helia, key: &str, seq: u64, file: &str) -> Result<(Value, Vec<u8>)> {
    let out = helia.scratch().join(file);
    let out_arg = out.to_string_lossy().into_owned();
    let seq = seq.to_string();
    let made = helia.ipns(&[
        "create", "--key", key, "--value", VALUE, "--seq", &seq, "--out", &out_arg,
    ])?;
    Ok((made, std::fs::read(&out)?))
}

/// Like [`js_record`] with an Ed25519 key kept in `key_file` (made on first use).
fn js_record_with_key(
    helia: &Helia,
    key_file: &str,
    seq: u64,
    file: &str,
) -> Result<(Value, Vec<u8>)> {
    let out = helia.scratch().join(file);
    let out_arg = out.to_string_lossy().into_owned();
    let seq = seq.to_string();
    let made = helia.ipns(&[
        "create",
        "--key-file",
        key_file,
        "--value",
        VALUE,
        "--seq",
        &seq,
        "--out",
        &out_arg,
    ])?;
    Ok((made, std::fs::read(&out)?))
}

fn s<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    v[key]
        .as_str()
        .with_context(|| format!("{key} missing in {v}"))
}

#[test]
fn ipns_records_from_kubo_helia_and_js_ipns() -> Result<()> {
    let mut sidecar = Sidecar::new()?;
    sidecar.start()?;
    let result = run(&mut sidecar);
    let result = result.map_err(|e| e.context(format!("sidecar log:\n{}", sidecar.logs_tail())));
    let stopped = sidecar.stop();
    result?;
    stopped
}

fn run(sidecar: &mut Sidecar) -> Result<()> {
    let addr = sidecar.http_addr()?.to_string();
    let url = format!("http://{addr}");
    let helia = Helia::new()?;

    // 1. js-ipns, Ed25519 and RSA: accepted, and byte-identical back in every name form.
    for key in ["ed25519", "rsa"] {
        let (made, record) = js_record(&helia, key, 5, &format!("{key}.bin"))?;
        let (k51, bafz) = (s(&made, "name")?, s(&made, "name_base32")?);
        let r = put_record(&addr, k51, &record)?;
        ensure!(
            r.status == 200,
            "PUT js-ipns {key} → {}: {}",
            r.status,
            r.text()
        );
        for name in [k51, bafz] {
            let r = get_record(&addr, name)?;
            ensure!(r.status == 200, "GET {name} → {}: {}", r.status, r.text());
            ensure!(
                r.header("content-type") == Some(IPNS_RECORD),
                "{:?}",
                r.headers
            );
            ensure!(r.body == record, "{key}: the record came back changed");
            ensure!(r.header("etag").is_some(), "no Etag");
            ensure!(
                r.header("cache-control")
                    .is_some_and(|c| c.contains("max-age=")),
                "Cache-Control: {:?}",
                r.header("cache-control")
            );
        }
        // The same bytes again: a no-op success.
        let r = put_record(&addr, bafz, &record)?;
        ensure!(r.status == 200, "re-PUT → {}: {}", r.status, r.text());

        // A tampered record is refused with a code and changes nothing.
        let mut tampered = record.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 0x01;
        let r = put_record(&addr, k51, &tampered)?;
        ensure!(
            r.status == 400,
            "tampered {key} record → {}: {}",
            r.status,
            r.text()
        );
        let code = json(&r)?["code"].as_str().unwrap_or_default().to_string();
        ensure!(
            ["signature_invalid", "malformed"].contains(&code.as_str()),
            "tampered {key} record refused with {code:?}: {}",
            r.text()
        );
        ensure!(
            get_record(&addr, k51)?.body == record,
            "a refused PUT changed the record"
        );

        // The w3name API serves the same record.
        let r = http::get(&addr, &format!("/name/{k51}"), HTTP_TIMEOUT)?;
        ensure!(r.status == 200, "w3name GET → {}: {}", r.status, r.text());
        let w = json(&r)?;
        ensure!(w["value"] == VALUE, "w3name value: {w}");
    }

    // Records of one key: an older sequence is refused (409), a newer one replaces.
    let key_file = helia
        .scratch()
        .join("seq.key")
        .to_string_lossy()
        .into_owned();
    let (made, seq5) = js_record_with_key(&helia, &key_file, 5, "seq5.bin")?;
    let name = s(&made, "name")?.to_string();
    ensure!(put_record(&addr, &name, &seq5)?.status == 200, "PUT seq 5");
    let (_, seq3) = js_record_with_key(&helia, &key_file, 3, "seq3.bin")?;
    let r = put_record(&addr, &name, &seq3)?;
    ensure!(r.status == 409, "older record → {}: {}", r.status, r.text());
    ensure!(json(&r)?["code"] == "sequence_not_newer", "{}", r.text());
    ensure!(
        get_record(&addr, &name)?.body == seq5,
        "an older record replaced a newer one"
    );
    let (_, seq6) = js_record_with_key(&helia, &key_file, 6, "seq6.bin")?;
    ensure!(put_record(&addr, &name, &seq6)?.status == 200, "PUT seq 6");
    ensure!(
        get_record(&addr, &name)?.body == seq6,
        "the newer record did not replace"
    );

    // 2. Helia resolves a js-ipns name through the sidecar (its client asks for bafz…).
    let (made, record) = js_record(&helia, "ed25519", 1, "helia-resolve.bin")?;
    let name = s(&made, "name")?;
    ensure!(
        put_record(&addr, name, &record)?.status == 200,
        "PUT for Helia"
    );
    let resolved = helia.ipns(&["resolve", "--router", &url, "--name", name])?;
    ensure!(resolved["value"] == VALUE, "Helia resolved {resolved}");

    // 3. Helia publishes through the sidecar; the record lands there.
    let published = helia.ipns(&["publish", "--router", &url, "--value", VALUE])?;
    let name = s(&published, "name")?;
    let r = get_record(&addr, name)?;
    ensure!(
        r.status == 200,
        "Helia's record is not in the sidecar: {}",
        r.text()
    );

    // 4. Kubo publishes through the sidecar and another Kubo resolves through it.
    let mut publisher = delegated_kubo("publisher", &url)?;
    let mut resolver = delegated_kubo("resolver", &url)?;
    publisher.start("error")?;
    resolver.start("error")?;
    let publisher_id = publisher.cli_str(&["config", "Identity.PeerID"])?;
    let out = publisher.rpc_json(
        "name/publish",
        &[
            ("arg", VALUE),
            ("resolve", "false"),
            ("ipns-base", "base36"),
        ],
    )?;
    let kubo_name = s(&out, "Name")?.to_string();
    let r = get_record(&addr, &kubo_name)?;
    ensure!(
        r.status == 200,
        "Kubo's record is not in the sidecar: {}",
        r.text()
    );
    // Only the publisher holds the key its name is made of, so a record that validates
    // for that name was signed by this Kubo; the sidecar stores the bytes it was sent.
    // `name get` (Kubo validates what it returns; offline it finds nothing of its own)
    // hands the same bytes back.
    let keys = publisher.cli_str(&["key", "list", "-l", "--ipns-base", "base36"])?;
    let key_name = keys
        .lines()
        .find_map(|l| l.strip_suffix(" self"))
        .with_context(|| format!("no self key in {keys:?}"))?
        .trim()
        .to_string();
    ensure!(
        kubo_name == key_name,
        "Kubo published {kubo_name}, its key is {key_name}"
    );
    let from_kubo = publisher.rpc("name/get", &[("arg", &kubo_name)], KUBO_TIMEOUT)?;
    ensure!(
        r.body == from_kubo,
        "the sidecar's copy differs from Kubo's record"
    );
    let resolved = resolver.rpc_json("name/resolve", &[("arg", &format!("/ipns/{kubo_name}"))])?;
    ensure!(
        resolved["Path"] == VALUE,
        "Kubo resolved /ipns/{kubo_name} (publisher {publisher_id}) to {resolved}"
    );
    publisher.stop()?;
    resolver.stop()?;
    Ok(())
}

/// A Kubo node whose only router and IPNS publisher is the sidecar: `Routing.Type`
/// `delegated`, no DHT, no bootstrap peers, no providing.
fn delegated_kubo(label: &str, url: &str) -> Result<Kubo> {
    let kubo = Kubo::init(label, &["/ip4/127.0.0.1/tcp/0"])?;
    let routers = serde_json::to_string(&[url])?;
    kubo.cli(&["config", "Routing.Type", "delegated"])?;
    // Delegated routing cannot announce content (Kubo refuses to start otherwise).
    kubo.cli(&["config", "--json", "Provide.Enabled", "false"])?;
    kubo.cli(&["config", "--json", "Routing.DelegatedRouters", &routers])?;
    kubo.cli(&["config", "--json", "Ipns.DelegatedPublishers", &routers])?;
    Ok(kubo)
}
