//! A real Kubo node in a throwaway `IPFS_PATH`, driven through its CLI (offline steps) and
//! its RPC API (daemon steps).
//!
//! [`Kubo::init`] runs `ipfs init --profile=test` (loopback-only, no bootstrap, no MDNS,
//! AutoConf/AutoTLS off), then pins the config the tests rely on: API and gateway on
//! `127.0.0.1:0`, the given swarm addresses, and `Routing.Type=none` — these nodes find each
//! other only through explicit `swarm connect`, never through a DHT or delegated router, so
//! every block they exchange travels over the connection under test. Telemetry is switched
//! off in every process's environment (`IPFS_TELEMETRY=off`): nothing may leave the machine.
//!
//! [`Kubo::init_with`] applies the same pins, then lets the caller edit the config before it
//! is written (e.g. `Routing.Type=dht` for [`crate::dht`]). A node whose `Addresses.API` has a
//! non-zero port (see [`free_loopback_ports`]) keeps its RPC URL across [`Kubo::stop`] and
//! [`Kubo::start`] ([`Kubo::rpc_url`]); the repo, keys and DHT datastore survive a stop, so
//! [`Kubo::restart`] brings back the same peer with the same records. [`Kubo::set_env`] adds
//! environment to every later `ipfs` process; `TEST_DHT_STUB` is never inherited from the
//! test's own environment, so a stray export cannot change the DHT under test.
//!
//! Thin RPC helpers cover what DHT and IPNS tests do: `block put`, `key gen`,
//! `name publish|resolve|get|put`, `routing get|put` (file arguments go as
//! `multipart/form-data`, [`Kubo::rpc_with_file`]). An RPC error carries Kubo's `Message`.
//!
//! The daemon's go-log output goes to `<dir>/golog.jsonl` as JSON lines
//! ([`Kubo::golog_lines`]), so tests can observe what Kubo's Bitswap client saw; every run
//! appends to it. Dropping a [`Kubo`] kills its daemon and removes its directory.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::Value;
use tempfile::TempDir;

use crate::http;
use crate::process::{self, Daemon};
use crate::tools;

/// Time allowed for the daemon to write `$IPFS_PATH/api` and print "Daemon is ready".
pub const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Time allowed for one offline CLI step (init, add of tens of MiB, dag export).
pub const CLI_TIMEOUT: Duration = Duration::from_secs(120);
/// Per-read timeout of RPC calls: the longest silence tolerated while Kubo fetches over
/// Bitswap (it streams as blocks arrive, so this is not a bound on the whole transfer).
pub const RPC_TIMEOUT: Duration = Duration::from_secs(30);
/// The swarm addresses of a node that should be dialable over TCP and WebSocket.
pub const TCP_AND_WS: &[&str] = &["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0/ws"];
/// go-log levels for a client whose Bitswap session events the tests read: the session
/// logger reports every block/HAVE/DONT_HAVE it receives (debug) and peers it prunes (info);
/// the message queue reports simulated DONT_HAVEs ("timeout waiting for blocks", info).
pub const BITSWAP_CLIENT_LOG_LEVEL: &str = "error,bitswap/session=debug,bitswap/client/msgq=info";

/// Identity of a running node, from `ipfs id`.
#[derive(Debug, Clone)]
pub struct KuboId {
    /// The node's peer ID.
    pub peer_id: String,
    /// Its listen addresses, each ending in `/p2p/<peer_id>`.
    pub addresses: Vec<String>,
}

/// Multipart boundary of RPC file arguments; a body that contains it is refused.
const MULTIPART_BOUNDARY: &str = "compat-tests-kubo-rpc-boundary-5b1e0c9a";
/// Kubo's `routing.QueryEvent` type of an event that carries a value (`Extra`, base64).
const QUERY_EVENT_VALUE: u64 = 5;

/// One Kubo node; see the module docs.
pub struct Kubo {
    label: String,
    bin: PathBuf,
    // Field order matters: the daemon must be killed before its directory is removed.
    daemon: Option<Daemon>,
    /// `host:port` of the running daemon's API (from `$IPFS_PATH/api`).
    api: Option<String>,
    /// `host:port` of the API when the config pins a port, known before any start.
    pinned_api: Option<String>,
    /// go-log levels of the last start, reused by [`Kubo::restart`].
    log_level: Option<String>,
    /// How many times the daemon was started (names each run's stdout/stderr files).
    runs: u32,
    /// Extra environment of every later `ipfs` process ([`Kubo::set_env`]).
    env: Vec<(String, String)>,
    repo: PathBuf,
    dir: TempDir,
}

impl Kubo {
    /// Creates a fresh repo (not started) listening on `swarm` once started.
    pub fn init(label: &str, swarm: &[&str]) -> Result<Kubo> {
        Kubo::init_with(label, swarm, |_| Ok(()))
    }

    /// Like [`Kubo::init`], then `edit` changes the parsed config before it is written: it
    /// sees the pins described in the module docs and may override any of them.
    pub fn init_with(
        label: &str,
        swarm: &[&str],
        edit: impl FnOnce(&mut Value) -> Result<()>,
    ) -> Result<Kubo> {
        let bin = tools::kubo_bin()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("compat-kubo-{label}-"))
            .tempdir()?;
        let repo = dir.path().join("repo");
        let mut kubo = Kubo {
            label: label.to_owned(),
            bin,
            daemon: None,
            api: None,
            pinned_api: None,
            log_level: None,
            runs: 0,
            env: Vec::new(),
            repo,
            dir,
        };
        kubo.cli(&["init", "--profile=test", "--empty-repo"])?;
        let config_path = kubo.repo.join("config");
        let mut config: Value = serde_json::from_slice(&std::fs::read(&config_path)?)
            .with_context(|| format!("parsing {}", config_path.display()))?;
        config["Addresses"]["API"] = "/ip4/127.0.0.1/tcp/0".into();
        config["Addresses"]["Gateway"] = "/ip4/127.0.0.1/tcp/0".into();
        config["Addresses"]["Swarm"] = swarm.iter().map(|s| Value::from(*s)).collect();
        config["Routing"]["Type"] = "none".into();
        edit(&mut config).with_context(|| format!("editing the config of kubo {label}"))?;
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
        if let Some(ma) = config["Addresses"]["API"].as_str() {
            let addr = multiaddr_to_host_port(ma)?;
            if !addr.ends_with(":0") {
                kubo.pinned_api = Some(addr);
            }
        }
        Ok(kubo)
    }

    /// The label given at init (used in process and error names).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// `http://host:port` of the RPC API, stable across restarts when the port is pinned.
    ///
    /// # Panics
    ///
    /// If the API port is chosen at start (`Kubo::init`) and the daemon is not running: the
    /// URL is then unknown. Pin the port with [`Kubo::init_with`] to know it up front.
    pub fn rpc_url(&self) -> String {
        match self.pinned_api.as_ref().or(self.api.as_ref()) {
            Some(addr) => format!("http://{addr}"),
            None => panic!(
                "kubo {}: the RPC port is chosen at start and the daemon is not running",
                self.label
            ),
        }
    }

    /// Whether the daemon was started and not stopped since.
    pub fn is_running(&self) -> bool {
        self.daemon.is_some()
    }

    /// `$IPFS_PATH` of this node.
    pub fn repo(&self) -> &Path {
        &self.repo
    }

    /// A scratch directory that lives as long as this node.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// An `ipfs …` command bound to this repo (it talks to the daemon when one runs).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("IPFS_PATH", &self.repo)
            .env("IPFS_TELEMETRY", "off")
            .env_remove("IPFS_HTTP_ROUTERS")
            .env_remove("TEST_DHT_STUB")
            .env_remove("GOLOG_LOG_LEVEL")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Sets `key=value` in the environment of every later `ipfs` process of this node (the
    /// daemon, restarts included, and CLI calls), e.g. `TEST_DHT_STUB=1`.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Runs `ipfs <args>` to completion and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> Result<Vec<u8>> {
        let name = format!(
            "kubo-{}-{}",
            self.label,
            args.first().copied().unwrap_or("cli")
        );
        Ok(process::run(&name, self.command(args), self.dir.path(), CLI_TIMEOUT)?.stdout)
    }

    /// Like [`Kubo::cli`], as trimmed UTF-8.
    pub fn cli_str(&self, args: &[&str]) -> Result<String> {
        Ok(String::from_utf8(self.cli(args)?)?.trim().to_owned())
    }

    /// `ipfs add -Q <flags> <path>`: the root CID.
    pub fn add(&self, path: &Path, flags: &[&str]) -> Result<String> {
        let path = path.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
        let mut args = vec!["add", "-Q"];
        args.extend_from_slice(flags);
        args.push(path);
        self.cli_str(&args)
    }

    /// Starts `ipfs daemon` with go-log at `log_level` (e.g. [`BITSWAP_CLIENT_LOG_LEVEL`])
    /// and waits until its RPC API answers.
    pub fn start(&mut self, log_level: &str) -> Result<()> {
        if self.daemon.is_some() {
            bail!("kubo {} already started", self.label);
        }
        let mut cmd = self.command(&["daemon"]);
        cmd.env("GOLOG_LOG_LEVEL", log_level)
            .env("GOLOG_LOG_FMT", "json")
            .env("GOLOG_FILE", self.golog_path());
        self.runs += 1;
        self.log_level = Some(log_level.to_owned());
        // The first run keeps the historical file names; later runs get their own files, so a
        // restart does not erase the logs of the run before it.
        let name = match self.runs {
            1 => format!("kubo-{}-daemon", self.label),
            n => format!("kubo-{}-daemon-{n}", self.label),
        };
        let mut daemon = Daemon::spawn(&name, cmd, self.dir.path())?;
        let api_file = self.repo.join("api");
        let stdout = daemon.stdout_path().to_path_buf();
        let api = process::wait_for(&format!("{name} to be ready"), DAEMON_START_TIMEOUT, || {
            daemon.ensure_running()?;
            let ready = std::fs::read_to_string(&stdout)
                .unwrap_or_default()
                .contains("Daemon is ready");
            match std::fs::read_to_string(&api_file) {
                Ok(ma) if ready => Ok(Some(multiaddr_to_host_port(ma.trim())?)),
                _ => Ok(None),
            }
        })
        .map_err(|e| anyhow!("{e}\n{}", daemon.logs_tail()))?;
        self.daemon = Some(daemon);
        self.api = Some(api);
        Ok(())
    }

    /// [`Kubo::stop`], then [`Kubo::start`] with the log levels of the last start. The repo
    /// (keys, datastore, DHT records) survives; with pinned ports (see the module docs) the
    /// node comes back at the same RPC URL and swarm address.
    pub fn restart(&mut self) -> Result<()> {
        let log_level = self
            .log_level
            .clone()
            .ok_or_else(|| anyhow!("kubo {} was never started", self.label))?;
        self.stop()?;
        self.start(&log_level)
    }

    /// Path of the daemon's JSON go-log file.
    pub fn golog_path(&self) -> PathBuf {
        self.dir.path().join("golog.jsonl")
    }

    /// Every JSON line the daemon has logged so far (unparsable lines are skipped).
    pub fn golog_lines(&self) -> Vec<Value> {
        std::fs::read_to_string(self.golog_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The daemon's stderr/stdout tail, for failure messages.
    pub fn logs_tail(&self) -> String {
        self.daemon
            .as_ref()
            .map(Daemon::logs_tail)
            .unwrap_or_else(|| format!("(kubo {} not running)", self.label))
    }

    /// Calls `POST /api/v0/<cmd>?<query>` and returns the body; an HTTP error or a streamed
    /// `X-Stream-Error` trailer becomes an error carrying Kubo's message.
    pub fn rpc(&self, cmd: &str, query: &[(&str, &str)], timeout: Duration) -> Result<Vec<u8>> {
        self.rpc_body(cmd, query, None, timeout)
    }

    /// Like [`Kubo::rpc`], with one file argument (`file`, sent as `multipart/form-data`, the
    /// way `ipfs <cmd> <file>` sends it).
    pub fn rpc_with_file(
        &self,
        cmd: &str,
        query: &[(&str, &str)],
        file: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>> {
        let body = multipart_file(file)?;
        let content_type = format!("multipart/form-data; boundary={MULTIPART_BOUNDARY}");
        self.rpc_body(cmd, query, Some((&content_type, &body)), timeout)
    }

    fn rpc_body(
        &self,
        cmd: &str,
        query: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
        timeout: Duration,
    ) -> Result<Vec<u8>> {
        let api = self
            .api
            .as_deref()
            .ok_or_else(|| anyhow!("kubo {} is not started", self.label))?;
        let qs: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", http::encode_query_value(v)))
            .collect();
        let path = format!("/api/v0/{cmd}?{}", qs.join("&"));
        let resp = http::request("POST", api, &path, body, timeout)
            .with_context(|| format!("kubo {} RPC {cmd}", self.label))?;
        if resp.status != 200 {
            // Kubo's error body is `{"Message","Code","Type":"error"}`: show the message
            // decoded (it JSON-escapes `<`, `>` and `&`), else the raw body.
            let message = serde_json::from_slice::<Value>(&resp.body)
                .ok()
                .and_then(|v| v["Message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| resp.text());
            bail!(
                "kubo {} RPC {path} → HTTP {}: {message}",
                self.label,
                resp.status
            );
        }
        if let Some(err) = resp.trailers.iter().find(|(k, _)| k == "x-stream-error") {
            bail!(
                "kubo {} RPC {path} failed mid-stream: {}",
                self.label,
                err.1
            );
        }
        Ok(resp.body)
    }

    /// Like [`Kubo::rpc`], parsed as one JSON value.
    pub fn rpc_json(&self, cmd: &str, query: &[(&str, &str)]) -> Result<Value> {
        let body = self.rpc(cmd, query, RPC_TIMEOUT)?;
        serde_json::from_slice(&body)
            .with_context(|| format!("RPC {cmd}: not JSON: {}", String::from_utf8_lossy(&body)))
    }

    /// `ipfs id` of the running daemon.
    pub fn id(&self) -> Result<KuboId> {
        let v = self.rpc_json("id", &[])?;
        let peer_id = v["ID"]
            .as_str()
            .ok_or_else(|| anyhow!("id: no ID in {v}"))?
            .to_owned();
        let addresses = v["Addresses"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok(KuboId { peer_id, addresses })
    }

    /// `ipfs swarm connect <addr>` (`addr` ends in `/p2p/<id>`).
    pub fn swarm_connect(&self, addr: &str) -> Result<()> {
        self.rpc("swarm/connect", &[("arg", addr)], Duration::from_secs(30))
            .with_context(|| format!("kubo {} swarm connect {addr}", self.label))?;
        Ok(())
    }

    /// `ipfs cat <path>` through the daemon (fetches missing blocks over Bitswap).
    pub fn cat(&self, path: &str) -> Result<Vec<u8>> {
        self.rpc("cat", &[("arg", path)], RPC_TIMEOUT)
    }

    /// `ipfs dag export <cid>` through the daemon: the CARv1 bytes.
    pub fn dag_export(&self, cid: &str) -> Result<Vec<u8>> {
        self.rpc(
            "dag/export",
            &[("arg", cid), ("progress", "false")],
            RPC_TIMEOUT,
        )
    }

    /// `ipfs bitswap stat` as JSON (`MessagesReceived`, `BlocksReceived`, …).
    pub fn bitswap_stat(&self) -> Result<Value> {
        self.rpc_json("bitswap/stat", &[])
    }

    /// `ipfs block put` of `data` (raw codec): its CID.
    pub fn block_put(&self, data: &[u8]) -> Result<String> {
        let v: Value = json_of(self.rpc_with_file("block/put", &[], data, RPC_TIMEOUT)?)?;
        str_field(&v, "Key")
    }

    /// `ipfs key gen <name>` (Ed25519): the IPNS name of the new key (`k51…`).
    pub fn key_gen(&self, name: &str) -> Result<String> {
        let v = self.rpc_json("key/gen", &[("arg", name), ("type", "ed25519")])?;
        str_field(&v, "Id")
    }

    /// `ipfs name publish --key=<key> --resolve=false --lifetime --ttl <value>`: the name.
    /// On a DHT node this returns once the record was put to the closest peers.
    pub fn name_publish(
        &self,
        key: &str,
        value: &str,
        lifetime: Duration,
        ttl: Duration,
    ) -> Result<String> {
        let (lifetime, ttl) = (go_duration(lifetime), go_duration(ttl));
        let query = [
            ("arg", value),
            ("key", key),
            ("resolve", "false"),
            ("lifetime", &lifetime),
            ("ttl", &ttl),
        ];
        let v: Value = json_of(self.rpc("name/publish", &query, RPC_TIMEOUT)?)?;
        str_field(&v, "Name")
    }

    /// `ipfs name resolve [--nocache] /ipns/<name>`: the path it points to.
    pub fn name_resolve(&self, name: &str, nocache: bool) -> Result<String> {
        let path = format!("/ipns/{name}");
        let nocache = if nocache { "true" } else { "false" };
        let query = [("arg", path.as_str()), ("nocache", nocache)];
        let v: Value = json_of(self.rpc("name/resolve", &query, RPC_TIMEOUT)?)?;
        str_field(&v, "Path")
    }

    /// `ipfs name get <name>`: the raw record bytes the node finds (Kubo v0.40+).
    pub fn name_get(&self, name: &str) -> Result<Vec<u8>> {
        self.rpc("name/get", &[("arg", name)], RPC_TIMEOUT)
    }

    /// `ipfs name put <name> <record>` (Kubo v0.40+): validates the record (signature, size,
    /// sequence above the record the node finds) and puts it into the routing system. A
    /// lower sequence fails with "existing IPNS record has sequence N >= new record sequence
    /// M, use 'ipfs name put --force' to skip this check"; identical bytes are accepted.
    pub fn name_put(&self, name: &str, record: &[u8]) -> Result<()> {
        self.rpc_with_file("name/put", &[("arg", name)], record, RPC_TIMEOUT)?;
        Ok(())
    }

    /// `ipfs name inspect <record>`: the record's `Entry` as Kubo reads it (`Value`,
    /// `Validity` RFC 3339, `Sequence`, `TTL` in ns, …).
    pub fn name_inspect(&self, record: &[u8]) -> Result<Value> {
        let body = self.rpc_with_file("name/inspect", &[("dump", "false")], record, RPC_TIMEOUT)?;
        let v: Value = json_of(body)?;
        Ok(v["Entry"].clone())
    }

    /// `ipfs routing get <key>` (e.g. `/ipns/<name>`): the value bytes.
    pub fn routing_get(&self, key: &str) -> Result<Vec<u8>> {
        let body = self.rpc("routing/get", &[("arg", key)], RPC_TIMEOUT)?;
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let event: Value = serde_json::from_slice(line).with_context(|| {
                format!("routing/get: bad line {:?}", String::from_utf8_lossy(line))
            })?;
            if event["Type"].as_u64() == Some(QUERY_EVENT_VALUE) {
                return decode_base64(event["Extra"].as_str().unwrap_or_default());
            }
        }
        bail!(
            "kubo {} routing get {key}: no value event in {}",
            self.label,
            String::from_utf8_lossy(&body)
        )
    }

    /// `ipfs routing put <key> <value>`. Kubo reports success on an online node even when no
    /// peer took the value, and for a record older than the node's own copy (its DHT store
    /// refuses it and nothing is sent): check with a get elsewhere.
    pub fn routing_put(&self, key: &str, value: &[u8]) -> Result<()> {
        self.rpc_with_file("routing/put", &[("arg", key)], value, RPC_TIMEOUT)?;
        Ok(())
    }

    /// Starts a long-running `ipfs <args>` client call as a killable process (its request
    /// is cancelled inside the daemon when the process dies).
    pub fn spawn_cli(&self, name: &str, args: &[&str]) -> Result<Daemon> {
        Daemon::spawn(
            &format!("kubo-{}-{name}", self.label),
            self.command(args),
            self.dir.path(),
        )
    }

    /// Stops the daemon with SIGTERM and checks that it exits cleanly.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut d) = self.daemon.take() {
            let status = d.terminate(Duration::from_secs(20))?;
            if !status.success() {
                bail!(
                    "kubo {} exited with {status}\n{}",
                    self.label,
                    d.logs_tail()
                );
            }
        }
        self.api = None;
        Ok(())
    }

    /// Deletes the stopped node's key-value datastore (`<repo>/datastore`, LevelDB in the
    /// default layout): its DHT records and its own published IPNS records go, as if they had
    /// aged out; keys, config and blocks stay. Kubo creates an empty one at the next start.
    pub fn wipe_datastore(&mut self) -> Result<()> {
        ensure!(
            self.daemon.is_none(),
            "kubo {}: stop the daemon before wiping its datastore",
            self.label
        );
        let dir = self.repo.join("datastore");
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))
    }
}

/// `n` distinct TCP ports free on 127.0.0.1 right now, for configs that must pin ports.
///
/// The listeners that found them are all held until every port is chosen (so the ports are
/// distinct) and then closed: another process may still grab one before Kubo binds it. Ports
/// come from the kernel's ephemeral range.
pub fn free_loopback_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("binding 127.0.0.1:0")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// `/ip4/127.0.0.1/tcp/<port>`.
pub fn loopback_tcp(port: u16) -> String {
    format!("/ip4/127.0.0.1/tcp/{port}")
}

/// A Go `time.ParseDuration` string (`"1500ms"`).
fn go_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

fn json_of(body: Vec<u8>) -> Result<Value> {
    serde_json::from_slice(&body)
        .with_context(|| format!("not JSON: {}", String::from_utf8_lossy(&body)))
}

fn str_field(v: &Value, key: &str) -> Result<String> {
    v[key]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no {key} in {v}"))
}

/// One `file` part holding `data`, as the Kubo RPC expects file arguments.
fn multipart_file(data: &[u8]) -> Result<Vec<u8>> {
    if data
        .windows(MULTIPART_BOUNDARY.len())
        .any(|w| w == MULTIPART_BOUNDARY.as_bytes())
    {
        bail!("the file contains the multipart boundary");
    }
    let mut body = format!(
        "--{MULTIPART_BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"file\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{MULTIPART_BOUNDARY}--\r\n").as_bytes());
    Ok(body)
}

/// Standard base64 (RFC 4648, padding optional), as Kubo puts record bytes in `Extra`.
fn decode_base64(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        let sextet = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => bail!("not base64: byte {c:#04x} in {text:?}"),
        };
        acc = (acc << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// `/ip4/127.0.0.1/tcp/5001` → `127.0.0.1:5001`.
pub fn multiaddr_to_host_port(ma: &str) -> Result<String> {
    let parts: Vec<&str> = ma.split('/').collect();
    match parts.as_slice() {
        ["", "ip4", host, "tcp", port, ..] => Ok(format!("{host}:{port}")),
        ["", "ip6", host, "tcp", port, ..] => Ok(format!("[{host}]:{port}")),
        _ => bail!("unsupported API multiaddr {ma:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_base64_with_and_without_padding() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("AAEC/w==").unwrap(), [0, 1, 2, 255]);
        assert!(decode_base64("a-b").is_err());
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_loopback_ports(8).unwrap();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 8, "{ports:?}");
    }

    #[test]
    fn multipart_wraps_one_file_part() {
        let body = String::from_utf8(multipart_file(b"abc").unwrap()).unwrap();
        assert!(body.contains("name=\"file\""), "{body}");
        assert!(body.ends_with(&format!("\r\nabc\r\n--{MULTIPART_BOUNDARY}--\r\n")));
        assert!(multipart_file(MULTIPART_BOUNDARY.as_bytes()).is_err());
    }
}
