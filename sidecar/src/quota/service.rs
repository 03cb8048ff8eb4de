//! The quota gate's life in the daemon: loading the policy file, reloading
//! it (SIGHUP, admin API), and writing counters to the store in batches.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio_util::sync::CancellationToken;

use super::{Policy, Quotas, budget::Clock, policy::DEFAULT_POLICY};
use crate::store::Store;

/// Peers idle (no connection) this long with nothing counted are forgotten.
const IDLE_FORGET: Duration = Duration::from_secs(600);

/// Why a policy could not be loaded or replaced. The running policy is
/// unchanged whenever one of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Invalid {
        path: String,
        #[source]
        source: super::PolicyError,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Owns the policy file and the gate.
pub struct QuotaService {
    pub quotas: Arc<Quotas>,
    path: PathBuf,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
}

/// Reads the policy at `path`; a missing file is the built-in policy.
pub fn load_policy(path: &Path) -> Result<Policy, ReloadError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Policy::parse(&text).map_err(|source| ReloadError::Invalid {
            path: path.display().to_string(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Policy::default()),
        Err(source) => Err(ReloadError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

impl QuotaService {
    pub fn new(
        quotas: Arc<Quotas>,
        path: PathBuf,
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            quotas,
            path,
            store,
            clock,
        }
    }

    /// The policy file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The policy document in force, as text (the file, or the built-in one).
    pub fn document(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap_or_else(|_| DEFAULT_POLICY.to_string())
    }

    /// Re-reads the policy file and applies it when valid.
    pub fn reload(&self) -> Result<(), ReloadError> {
        let policy = load_policy(&self.path)?;
        self.quotas.set_policy(policy);
        tracing::info!(path = %self.path.display(), "quota policy reloaded");
        Ok(())
    }

    /// Validates `text`, writes it to the policy file (atomically) and
    /// applies it. Invalid text changes nothing.
    pub fn replace(&self, text: &str) -> Result<(), ReloadError> {
        let policy = Policy::parse(text).map_err(|source| ReloadError::Invalid {
            path: "request body".into(),
            source,
        })?;
        write_atomically(&self.path, text.as_bytes()).map_err(|source| ReloadError::Write {
            path: self.path.clone(),
            source,
        })?;
        self.quotas.set_policy(policy);
        tracing::info!(path = %self.path.display(), "quota policy replaced through the admin API");
        Ok(())
    }

    /// Writes changed counters to the store (blocking; run off the runtime).
    pub fn flush(&self) {
        let mut windows = self.quotas.take_dirty();
        if windows.is_empty() {
            return;
        }
        let n = windows.len();
        if let Err(e) = self
            .store
            .save_quota_windows(&mut windows, self.clock.now_ms())
        {
            tracing::warn!(error = %e, windows = n, "saving quota counters failed; will retry");
            // Put them back as evicted entries so the next flush retries.
            self.quotas.requeue(windows);
        }
    }

    /// Flushes every `interval`, forgets idle peers, reloads on SIGHUP, and
    /// flushes one last time when `stop` is cancelled.
    pub async fn run(self: Arc<Self>, interval: Duration, stop: CancellationToken) {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut gc = tokio::time::interval(IDLE_FORGET / 10);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {
                    let me = self.clone();
                    let _ = tokio::task::spawn_blocking(move || me.flush()).await;
                }
                _ = gc.tick() => {
                    let forgotten = self.quotas.collect_garbage(IDLE_FORGET.as_millis() as u64);
                    if forgotten > 0 {
                        tracing::debug!(forgotten, "forgot idle quota peers");
                    }
                }
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    let me = self.clone();
                    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || me.reload()).await {
                        tracing::error!(error = %e, "quota policy reload rejected; the running policy stays");
                    }
                }
            }
        }
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || me.flush()).await;
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("toml.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}
