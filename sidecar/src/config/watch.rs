//! `[watch]`: pushing name changes to watchers (WebSocket and SSE).
//! Validated here; used by `node` (the feed) and `http::watch`.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, duration, positive};

/// `[watch]`, validated.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Change events kept for watchers that resume (`since`,
    /// `Last-Event-ID`); older resume points get `resync`.
    pub retention: u64,
    /// Changes a watcher may fall behind before it must resync (one ring
    /// shared by all watchers).
    pub queue: usize,
    /// WebSocket ping / SSE comment interval.
    pub heartbeat: Duration,
    /// Most watch connections per client address (IPv6: per /64).
    pub max_per_ip: u32,
    /// A notification that cannot be sent in this long closes the watcher.
    pub send_timeout: Duration,
    /// Most names one `/watch` connection subscribes to.
    pub max_names: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWatch {
    retention: u64,
    queue: usize,
    heartbeat: String,
    max_per_ip: u32,
    send_timeout: String,
    max_names: usize,
}

/// Largest ring accepted: each slot holds a shared event (≤ 10 KiB).
pub const MAX_QUEUE: usize = 1 << 20;

impl RawWatch {
    pub(super) fn validate(self) -> Result<WatchConfig, ConfigError> {
        let queue = positive("watch.queue", self.queue)?;
        if queue > MAX_QUEUE {
            return Err(ConfigError::key(
                "watch.queue",
                format!("at most {MAX_QUEUE}"),
            ));
        }
        Ok(WatchConfig {
            retention: positive("watch.retention", self.retention)?,
            queue,
            heartbeat: positive(
                "watch.heartbeat",
                duration("watch.heartbeat", &self.heartbeat)?,
            )?,
            max_per_ip: positive("watch.max_per_ip", self.max_per_ip)?,
            send_timeout: positive(
                "watch.send_timeout",
                duration("watch.send_timeout", &self.send_timeout)?,
            )?,
            max_names: positive("watch.max_names", self.max_names)?,
        })
    }
}
