//! The server side of a compat run, behind one trait so the same client checks run against
//! the sidecar and against a reference Kubo that imported the very same CAR files.
//!
//! The Kubo reference server exists to prove the harness itself (a check that fails against
//! Kubo is a harness bug, not a sidecar bug) and to show what "correct" looks like when a
//! sidecar run fails.

use std::path::Path;

use anyhow::{Result, anyhow};

use crate::kubo::{self, Kubo};
use crate::metrics::Metrics;
use crate::sidecar::Sidecar;

/// A running peer that serves the fixture's blocks over Bitswap.
pub trait BlockServer {
    /// Human-readable name for messages ("sidecar", "kubo-reference").
    fn name(&self) -> &str;
    /// Its libp2p peer ID.
    fn peer_id(&self) -> Result<String>;
    /// A plain TCP dial address ending in `/p2p/<id>`.
    fn tcp_addr(&self) -> Result<String>;
    /// A WebSocket dial address ending in `/p2p/<id>`.
    fn ws_addr(&self) -> Result<String>;
    /// Server-side metrics, if the server exposes any (the sidecar does, Kubo does not here).
    fn metrics(&self) -> Result<Option<Metrics>>;
    /// Its logs' tail, for failure messages.
    fn logs_tail(&self) -> String;
}

/// A Kubo daemon that `ipfs dag import`ed the fixture CARs and listens on TCP and `/ws`.
pub struct KuboServer {
    kubo: Kubo,
}

impl KuboServer {
    /// Imports `cars` offline (roots not pinned: the holey CAR is deliberately incomplete)
    /// and starts the daemon.
    pub fn start(cars: &[&Path]) -> Result<KuboServer> {
        let mut kubo = Kubo::init("server", kubo::TCP_AND_WS)?;
        for car in cars {
            let car = car.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
            kubo.cli(&["dag", "import", "--pin-roots=false", car])?;
        }
        kubo.start("error")?;
        Ok(KuboServer { kubo })
    }

    fn addr(&self, ws: bool) -> Result<String> {
        let id = self.kubo.id()?;
        id.addresses
            .iter()
            .find(|a| a.starts_with("/ip4/127.0.0.1/tcp/") && a.contains("/ws/") == ws)
            .cloned()
            .ok_or_else(|| {
                anyhow!(
                    "kubo server has no {} address: {:?}",
                    if ws { "ws" } else { "tcp" },
                    id.addresses
                )
            })
    }
}

impl BlockServer for KuboServer {
    fn name(&self) -> &str {
        "kubo-reference"
    }
    fn peer_id(&self) -> Result<String> {
        Ok(self.kubo.id()?.peer_id)
    }
    fn tcp_addr(&self) -> Result<String> {
        self.addr(false)
    }
    fn ws_addr(&self) -> Result<String> {
        self.addr(true)
    }
    fn metrics(&self) -> Result<Option<Metrics>> {
        Ok(None)
    }
    fn logs_tail(&self) -> String {
        self.kubo.logs_tail()
    }
}

impl BlockServer for Sidecar {
    fn name(&self) -> &str {
        "sidecar"
    }
    fn peer_id(&self) -> Result<String> {
        Ok(self.health()?.peer_id.clone())
    }
    fn tcp_addr(&self) -> Result<String> {
        Sidecar::tcp_addr(self)
    }
    fn ws_addr(&self) -> Result<String> {
        Sidecar::ws_addr(self)
    }
    fn metrics(&self) -> Result<Option<Metrics>> {
        Ok(Some(Sidecar::metrics(self)?))
    }
    fn logs_tail(&self) -> String {
        Sidecar::logs_tail(self)
    }
}
