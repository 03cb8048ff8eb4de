//! The sidecar binary under test, driven only through its CLI/HTTP contract:
//!
//! - `sidecar --data-dir D car import <file.car>…` indexes CAR files;
//! - `sidecar --data-dir D run` with `SIDECAR_P2P__LISTEN` / `SIDECAR_HTTP__LISTEN` set to
//!   loopback port 0 serves Bitswap; once listening it writes `D/http.addr` (`127.0.0.1:PORT`);
//! - `GET /healthz` gives `peer_id` and `listen_addrs` (no `/p2p` suffix), `GET /metrics`
//!   Prometheus text; SIGTERM → clean exit.
//!
//! The binary is found by [`crate::tools::sidecar_bin`]. Dropping a [`Sidecar`] SIGTERMs it
//! (then SIGKILLs after a grace period) and removes its data directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use tempfile::TempDir;

use crate::http;
use crate::metrics::Metrics;
use crate::process::{self, Daemon};
use crate::tools;

/// Time allowed from spawn to a `/healthz` answer.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for `car import` of the test fixtures.
pub const IMPORT_TIMEOUT: Duration = Duration::from_secs(120);
/// Time allowed between SIGTERM and exit before the stop counts as unclean.
pub const STOP_GRACE: Duration = Duration::from_secs(15);
/// Per-read timeout of the harness's HTTP calls to the sidecar.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// libp2p listen addresses given to the daemon: TCP and WebSocket on loopback, any port.
pub const P2P_LISTEN: &str = "/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/tcp/0/ws";
/// `SIDECAR_LOG` for the daemon unless the caller's environment sets one.
pub const DEFAULT_LOG: &str = "info";

/// What `/healthz` reported.
#[derive(Debug, Clone)]
pub struct Health {
    /// The sidecar's libp2p peer ID.
    pub peer_id: String,
    /// Listen multiaddrs without `/p2p/…`.
    pub listen_addrs: Vec<String>,
    /// The whole JSON document.
    pub raw: Value,
}

/// A sidecar process with its own data directory; see the module docs.
pub struct Sidecar {
    bin: PathBuf,
    daemon: Option<Daemon>,
    http_addr: Option<String>,
    health: Option<Health>,
    data_dir: PathBuf,
    env: Vec<(String, String)>,
    dir: TempDir,
}

impl Sidecar {
    /// A sidecar with a fresh, empty data directory (not started).
    pub fn new() -> Result<Sidecar> {
        let bin = tools::sidecar_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("compat-sidecar-")
            .tempdir()?;
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir)?;
        Ok(Sidecar {
            bin,
            daemon: None,
            http_addr: None,
            health: None,
            data_dir,
            env: Vec::new(),
            dir,
        })
    }

    /// The data directory (identity, store, `quotas.toml`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Sets an environment variable for every later start (e.g.
    /// `SIDECAR_HTTP__ADMIN_TOKEN`).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Sends `SIG<sig>` to the running daemon.
    pub fn signal(&self, sig: &str) -> Result<()> {
        self.daemon
            .as_ref()
            .ok_or_else(|| anyhow!("sidecar not started"))?
            .signal(sig)
    }

    /// An `/admin/*` request with the bearer `token`; any status is returned.
    pub fn admin(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&str>,
    ) -> Result<http::Response> {
        let auth = format!("Bearer {token}");
        http::request_with_headers(
            method,
            self.http_addr()?,
            path,
            &[("Authorization", &auth)],
            body.map(|b| ("application/toml", b.as_bytes())),
            HTTP_TIMEOUT,
        )
    }

    /// The binary in use.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--data-dir").arg(&self.data_dir).args(args);
        if std::env::var_os("SIDECAR_LOG").is_none() {
            cmd.env("SIDECAR_LOG", DEFAULT_LOG);
        }
        cmd
    }

    /// `sidecar car import <cars>…`; fails with the sidecar's stderr on a non-zero exit.
    pub fn car_import(&self, cars: &[&Path]) -> Result<String> {
        let mut cmd = self.command(&["car", "import"]);
        cmd.args(cars);
        let out = process::run("sidecar-car-import", cmd, self.dir.path(), IMPORT_TIMEOUT)?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            out.stderr
        ))
    }

    /// Runs `sidecar <args>` to completion, returning `(success, stdout+stderr)` without
    /// failing on a non-zero exit (for negative tests).
    pub fn try_cli(&self, args: &[&str]) -> Result<(bool, String)> {
        match process::run(
            "sidecar-cli",
            self.command(args),
            self.dir.path(),
            IMPORT_TIMEOUT,
        ) {
            Ok(out) => Ok((
                true,
                format!("{}{}", String::from_utf8_lossy(&out.stdout), out.stderr),
            )),
            Err(e) => Ok((false, format!("{e:#}"))),
        }
    }

    /// Starts `sidecar run` on loopback port 0 and waits for `http.addr` and `/healthz`.
    pub fn start(&mut self) -> Result<()> {
        if self.daemon.is_some() {
            bail!("sidecar already started");
        }
        let mut cmd = self.command(&["run"]);
        cmd.env("SIDECAR_P2P__LISTEN", P2P_LISTEN)
            .env("SIDECAR_HTTP__LISTEN", "127.0.0.1:0");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut daemon = Daemon::spawn("sidecar-run", cmd, self.dir.path())?;
        let addr_file = self.data_dir.join("http.addr");
        let result = process::wait_for(
            "the sidecar's http.addr and /healthz",
            START_TIMEOUT,
            || {
                daemon.ensure_running()?;
                let Ok(addr) = std::fs::read_to_string(&addr_file) else {
                    return Ok(None);
                };
                let addr = addr.trim().to_owned();
                if addr.is_empty() {
                    return Ok(None); // the contract says atomic, but be lenient while polling
                }
                match http::get(&addr, "/healthz", HTTP_TIMEOUT) {
                    Ok(resp) if resp.status == 200 => Ok(Some((addr, resp))),
                    _ => Ok(None),
                }
            },
        );
        let (addr, resp) = result.map_err(|e| anyhow!("{e}\n{}", daemon.logs_tail()))?;
        let health =
            parse_health(&resp.body).map_err(|e| anyhow!("{e:#}\n{}", daemon.logs_tail()))?;
        self.daemon = Some(daemon);
        self.http_addr = Some(addr);
        self.health = Some(health);
        Ok(())
    }

    /// What `/healthz` said at start.
    pub fn health(&self) -> Result<&Health> {
        self.health
            .as_ref()
            .ok_or_else(|| anyhow!("sidecar not started"))
    }

    /// `127.0.0.1:PORT` of the HTTP API.
    pub fn http_addr(&self) -> Result<&str> {
        self.http_addr
            .as_deref()
            .ok_or_else(|| anyhow!("sidecar not started"))
    }

    /// The first listen address matching `pred`, with `/p2p/<peer id>` appended.
    fn dial_addr(&self, what: &str, pred: impl Fn(&str) -> bool) -> Result<String> {
        let h = self.health()?;
        let addr = h.listen_addrs.iter().find(|a| pred(a)).ok_or_else(|| {
            anyhow!(
                "sidecar /healthz lists no {what} address: {:?}",
                h.listen_addrs
            )
        })?;
        Ok(format!("{addr}/p2p/{}", h.peer_id))
    }

    /// The plain TCP address (`/ip4/127.0.0.1/tcp/N/p2p/<id>`).
    pub fn tcp_addr(&self) -> Result<String> {
        self.dial_addr("plain TCP", |a| {
            a.starts_with("/ip4/127.0.0.1/tcp/") && a.split('/').count() == 5
        })
    }

    /// The WebSocket address (`/ip4/127.0.0.1/tcp/N/ws/p2p/<id>`).
    pub fn ws_addr(&self) -> Result<String> {
        self.dial_addr("WebSocket", |a| {
            a.starts_with("/ip4/127.0.0.1/tcp/") && a.ends_with("/ws")
        })
    }

    /// Scrapes `/metrics`.
    pub fn metrics(&self) -> Result<Metrics> {
        let resp = http::get(self.http_addr()?, "/metrics", HTTP_TIMEOUT)?;
        if resp.status != 200 {
            bail!("GET /metrics → HTTP {}: {}", resp.status, resp.text());
        }
        Metrics::parse(&resp.text())
    }

    /// The daemon's log tail, for failure messages.
    pub fn logs_tail(&self) -> String {
        self.daemon
            .as_ref()
            .map(Daemon::logs_tail)
            .unwrap_or_else(|| "(sidecar not running)".to_owned())
    }

    /// Fails with the log tail if the daemon has died.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.daemon.as_mut() {
            Some(d) => d.ensure_running(),
            None => bail!("sidecar not started"),
        }
    }

    /// `kill -9`: no shutdown code runs. The data directory stays.
    pub fn kill(&mut self) -> Result<()> {
        let Some(mut d) = self.daemon.take() else {
            bail!("sidecar not started");
        };
        d.signal("KILL")?;
        let status = d.terminate(STOP_GRACE)?;
        if status.success() {
            bail!("sidecar exited cleanly despite SIGKILL");
        }
        self.http_addr = None;
        Ok(())
    }

    /// SIGTERM, and require a clean (zero) exit within [`STOP_GRACE`].
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut d) = self.daemon.take() else {
            bail!("sidecar not started");
        };
        let status = d.terminate(STOP_GRACE)?;
        if !status.success() {
            bail!(
                "sidecar exited with {status} after SIGTERM\n{}",
                d.logs_tail()
            );
        }
        Ok(())
    }
}

fn parse_health(body: &[u8]) -> Result<Health> {
    let raw: Value = serde_json::from_slice(body)
        .with_context(|| format!("/healthz is not JSON: {}", String::from_utf8_lossy(body)))?;
    let peer_id = raw["peer_id"]
        .as_str()
        .ok_or_else(|| anyhow!("/healthz has no peer_id: {raw}"))?
        .to_owned();
    let listen_addrs = raw["listen_addrs"]
        .as_array()
        .ok_or_else(|| anyhow!("/healthz has no listen_addrs: {raw}"))?
        .iter()
        .map(|a| {
            a.as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("non-string listen addr {a}"))
        })
        .collect::<Result<_>>()?;
    Ok(Health {
        peer_id,
        listen_addrs,
        raw,
    })
}
