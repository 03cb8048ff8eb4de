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
//! The daemon's go-log output goes to `<dir>/golog.jsonl` as JSON lines
//! ([`Kubo::golog_lines`]), so tests can observe what Kubo's Bitswap client saw.
//! Dropping a [`Kubo`] kills its daemon and removes its directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
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

/// One Kubo node; see the module docs.
pub struct Kubo {
    label: String,
    bin: PathBuf,
    // Field order matters: the daemon must be killed before its directory is removed.
    daemon: Option<Daemon>,
    api: Option<String>,
    repo: PathBuf,
    dir: TempDir,
}

impl Kubo {
    /// Creates a fresh repo (not started) listening on `swarm` once started.
    pub fn init(label: &str, swarm: &[&str]) -> Result<Kubo> {
        let bin = tools::kubo_bin()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("compat-kubo-{label}-"))
            .tempdir()?;
        let repo = dir.path().join("repo");
        let kubo = Kubo {
            label: label.to_owned(),
            bin,
            daemon: None,
            api: None,
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
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
        Ok(kubo)
    }

    /// The label given at init (used in process and error names).
    pub fn label(&self) -> &str {
        &self.label
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
            .env_remove("GOLOG_LOG_LEVEL");
        cmd
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
        let name = format!("kubo-{}-daemon", self.label);
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
        let api = self
            .api
            .as_deref()
            .ok_or_else(|| anyhow!("kubo {} is not started", self.label))?;
        let qs: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", http::encode_query_value(v)))
            .collect();
        let path = format!("/api/v0/{cmd}?{}", qs.join("&"));
        let resp = http::request("POST", api, &path, None, timeout)
            .with_context(|| format!("kubo {} RPC {cmd}", self.label))?;
        if resp.status != 200 {
            bail!(
                "kubo {} RPC {path} → HTTP {}: {}",
                self.label,
                resp.status,
                resp.text()
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
