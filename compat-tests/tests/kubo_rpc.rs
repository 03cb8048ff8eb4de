//! The sidecar's Kubo RPC client (`sidecar::kubo::KuboClient`) against a real Kubo daemon:
//!
//! - on a `Routing.Type=dht` node with no peers, every call works: `version`, `key/ls`,
//!   `name/publish`, `name/get` and `routing/get` of that name (the same bytes), `name/put`
//!   and `routing/put` of those bytes again (a refresh), a name nobody published reads as
//!   `None`, `stats/dht` counts zero peers, and Kubo's refusals come back as `Api` errors
//!   with Kubo's message (including the "existing IPNS record has sequence" refusal the
//!   republisher recognises);
//! - on a `Routing.Type=none` node a published name still reads as `None` (that router
//!   keeps nothing) and `stats/dht` is an `Api` error, not zero peers;
//! - with `API.Authorizations` set, no or a wrong secret is `Denied` (even for `version`),
//!   the `bearer:` and `basic:` secrets are sent as Kubo expects, and a stopped Kubo is
//!   `Unreachable`.
//!
//! Prerequisite: the pinned Kubo binary (`compat-tests/scripts/setup.sh`).

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use compat_tests::kubo::{Kubo, multiaddr_to_host_port};
use compat_tests::tools;
use serde_json::{Value, json};
use sidecar::kubo::{DhtPeers, KuboAuth, KuboClient, KuboError};

/// Whole-call timeout of the client under test.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// An identity CID (the empty raw block): a value nobody has to fetch.
const VALUE: &str = "/ipfs/bafkqaaa";
/// Another identity CID (the raw block "hello").
const OTHER_VALUE: &str = "/ipfs/bafkqablimvwgy3y";
/// Kubo's defaults for `name publish` (`--lifetime`, `--ttl`).
const LIFETIME: Duration = Duration::from_secs(48 * 3600);
const TTL: Duration = Duration::from_secs(5 * 60);
/// The bearer secret configured in the auth test.
const BEARER: &str = "bearer:secret-token-123";
/// The basic secret configured in the auth test (the password holds a ':').
const BASIC: &str = "basic:alice:pa:ss";

/// Changes `$IPFS_PATH/config` of a node that is not running.
fn edit_config(kubo: &Kubo, edit: impl FnOnce(&mut Value)) -> Result<()> {
    let path = kubo.repo().join("config");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    edit(&mut config);
    std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    Ok(())
}

/// `http://host:port` of a running node, from `$IPFS_PATH/api`.
fn rpc_url(kubo: &Kubo) -> Result<String> {
    let api = std::fs::read_to_string(kubo.repo().join("api"))
        .with_context(|| format!("kubo {} has no api file", kubo.label()))?;
    Ok(format!("http://{}", multiaddr_to_host_port(api.trim())?))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn client(url: &str, auth: Option<&str>) -> Result<KuboClient> {
    let auth = auth
        .map(str::parse::<KuboAuth>)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    Ok(KuboClient::new(url, auth, CALL_TIMEOUT)?)
}

/// `result` is Kubo's `Api` refusal with `status` and a message containing `part`.
fn expect_api<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, KuboError>,
    status: u16,
    part: &str,
) -> Result<()> {
    match result {
        Err(KuboError::Api { status: s, message }) if s == status && message.contains(part) => {
            eprintln!("{what}: Kubo answered {s}: {message}");
            Ok(())
        }
        other => bail!("{what}: expected Api {{ {status}, …{part}… }}, got {other:?}"),
    }
}

#[test]
fn every_call_works_on_a_dht_node_without_peers() -> Result<()> {
    let mut kubo = Kubo::init("rpc", &["/ip4/127.0.0.1/tcp/0"])?;
    edit_config(&kubo, |c| c["Routing"]["Type"] = "dht".into())?;
    kubo.start("error")?;
    let rt = runtime()?;
    let kc = client(&rpc_url(&kubo)?, None)?;

    let version = rt.block_on(kc.version())?;
    ensure!(version.has_name_put(), "{version:?} has no name/put");
    if std::env::var_os(tools::ENV_KUBO_BIN).is_none() {
        ensure!(
            format!("v{}", version.version) == tools::KUBO_VERSION,
            "{version:?} is not the pinned {}",
            tools::KUBO_VERSION
        );
    }

    let keys = rt.block_on(kc.key_list())?;
    let own = keys
        .iter()
        .find(|k| k.name == "self")
        .with_context(|| format!("no self key in {keys:?}"))?;
    ensure!(own.id.starts_with("k51"), "{own:?}");

    let name = rt.block_on(kc.name_publish("self", VALUE, LIFETIME, TTL, true))?;
    ensure!(name == own.id, "published {name}, self is {}", own.id);

    let record = rt
        .block_on(kc.name_get(&name))?
        .context("name/get: no record right after name/publish")?;
    let routed = rt
        .block_on(kc.routing_get(&name))?
        .context("routing/get: no record right after name/publish")?;
    ensure!(routed == record, "routing/get and name/get disagree");
    let prefixed = rt.block_on(kc.name_get(&format!("/ipns/{name}")))?;
    ensure!(
        prefixed.as_ref() == Some(&record),
        "name/get of /ipns/<name> differs"
    );

    // A refresh: the identical bytes are accepted by both puts and change nothing.
    rt.block_on(kc.name_put(&name, &record, true))?;
    rt.block_on(kc.routing_put(&name, &record, true))?;
    ensure!(rt.block_on(kc.name_get(&name))?.as_ref() == Some(&record));

    // A key that never published: nothing to find, by either command.
    let unpublished = kubo.cli_str(&["key", "gen", "never-published"])?;
    ensure!(rt.block_on(kc.name_get(&unpublished))?.is_none());
    ensure!(rt.block_on(kc.routing_get(&unpublished))?.is_none());
    let keys = rt.block_on(kc.key_list())?;
    ensure!(
        keys.iter()
            .any(|k| k.name == "never-published" && k.id == unpublished),
        "{keys:?}"
    );

    ensure!(rt.block_on(kc.dht_peers())? == DhtPeers { lan: 0, wan: 0 });

    // Kubo's refusals keep Kubo's words.
    expect_api(
        "name/put of garbage",
        rt.block_on(kc.name_put(&name, b"not a record", true)),
        500,
        "invalid IPNS record",
    )?;
    expect_api(
        "name/put under another name",
        rt.block_on(kc.name_put(&unpublished, &record, true)),
        500,
        "signature",
    )?;
    expect_api(
        "name/get of a bad name",
        rt.block_on(kc.name_get("not-a-name")),
        500,
        "peer ID",
    )?;
    expect_api(
        "name/publish with an unknown key",
        rt.block_on(kc.name_publish("no-such-key", VALUE, LIFETIME, TTL, true)),
        500,
        "no key",
    )?;

    // Publishing another value raises the sequence: the older record is now refused by
    // name/put with the message the republisher recognises.
    let again = rt.block_on(kc.name_publish("self", OTHER_VALUE, LIFETIME, TTL, true))?;
    ensure!(again == name);
    let newer = rt
        .block_on(kc.name_get(&name))?
        .context("no newer record")?;
    ensure!(
        newer != record,
        "a second publish did not change the record"
    );
    expect_api(
        "name/put of an older record",
        rt.block_on(kc.name_put(&name, &record, true)),
        500,
        "existing IPNS record has sequence 1 >= new record sequence 0",
    )?;
    ensure!(rt.block_on(kc.routing_get(&name))?.as_ref() == Some(&newer));

    kubo.stop()
}

#[test]
fn a_routing_none_node_finds_nothing_and_has_no_dht() -> Result<()> {
    let mut kubo = Kubo::init("rpc-none", &["/ip4/127.0.0.1/tcp/0"])?;
    kubo.start("error")?;
    let rt = runtime()?;
    let kc = client(&rpc_url(&kubo)?, None)?;

    let name = rt.block_on(kc.name_publish("self", VALUE, LIFETIME, TTL, true))?;
    // The "none" router stores nothing, so even Kubo's own name is "routing: not found".
    ensure!(rt.block_on(kc.name_get(&name))?.is_none());
    ensure!(rt.block_on(kc.routing_get(&name))?.is_none());
    expect_api(
        "stats/dht without a DHT",
        rt.block_on(kc.dht_peers()),
        500,
        "routing service is not a DHT",
    )?;
    kubo.stop()
}

#[test]
fn auth_is_sent_as_kubo_expects_and_a_stopped_kubo_is_unreachable() -> Result<()> {
    let mut kubo = Kubo::init("rpc-auth", &["/ip4/127.0.0.1/tcp/0"])?;
    edit_config(&kubo, |c| {
        c["API"]["Authorizations"] = json!({
            "t": {"AuthSecret": BEARER, "AllowedPaths": ["/api/v0"]},
            "u": {"AuthSecret": BASIC, "AllowedPaths": ["/api/v0/version", "/api/v0/key"]},
        });
    })?;
    kubo.start("error")?;
    let rt = runtime()?;
    let url = rpc_url(&kubo)?;

    for auth in [None, Some("bearer:wrong-token"), Some("basic:alice:wrong")] {
        let kc = client(&url, auth)?;
        for (call, result) in [
            ("version", rt.block_on(kc.version()).map(drop)),
            ("key/ls", rt.block_on(kc.key_list()).map(drop)),
        ] {
            ensure!(
                result == Err(KuboError::Denied),
                "{call} with {auth:?}: {result:?}"
            );
        }
    }

    let bearer = client(&url, Some(BEARER))?;
    ensure!(rt.block_on(bearer.version())?.has_name_put());
    ensure!(
        rt.block_on(bearer.key_list())?
            .iter()
            .any(|k| k.name == "self")
    );
    // Past the auth check, Kubo itself answers (this node has no DHT).
    expect_api(
        "stats/dht with the bearer secret",
        rt.block_on(bearer.dht_peers()),
        500,
        "not a DHT",
    )?;

    // The basic secret works only on its allowed paths.
    let basic = client(&url, Some(BASIC))?;
    rt.block_on(basic.version())?;
    ensure!(!rt.block_on(basic.key_list())?.is_empty());
    ensure!(rt.block_on(basic.dht_peers()) == Err(KuboError::Denied));

    kubo.stop()?;
    for result in [
        rt.block_on(bearer.version()).map(drop),
        rt.block_on(bearer.key_list()).map(drop),
    ] {
        let e = result.err().context("a stopped Kubo answered")?;
        ensure!(
            e.is_unreachable() && e.code() == "kubo_unreachable",
            "{e:?}"
        );
        eprintln!("stopped Kubo: {e}");
    }
    Ok(())
}
