//! [`Target`] on Kubo's RPC: `name/put` + `name/get` where Kubo has them
//! (≥ 0.40: `name/put` validates the record again and refuses one older
//! than what the routing system holds), `routing/put` + `routing/get`
//! otherwise. The choice is made from `/api/v0/version` on first contact
//! unless configured.
//!
//! Kubo answers a put with success even when its DHT has no peers, and
//! says nothing about how many peers took the record. So every accepted
//! put reports the number of DHT peers Kubo knew at the time (`stats/dht`,
//! re-read at most every [`PEERS_MAX_AGE`]): 0 means the put reached
//! nobody, and the status says "unverified" rather than "published".

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::{PutReport, Target, TargetError};
use crate::{
    ipns::Name,
    kubo::{KuboClient, KuboError},
};

/// How long a `stats/dht` peer count is reused.
pub const PEERS_MAX_AGE: Duration = Duration::from_secs(30);

/// Which Kubo command puts records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMethod {
    /// `name/put` when Kubo is ≥ 0.40, else `routing/put`.
    Auto,
    NamePut,
    RoutingPut,
}

impl std::str::FromStr for PutMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(PutMethod::Auto),
            "name_put" => Ok(PutMethod::NamePut),
            "routing_put" => Ok(PutMethod::RoutingPut),
            other => Err(format!(
                "{other:?} is not one of \"auto\", \"name_put\", \"routing_put\""
            )),
        }
    }
}

/// Puts records through one Kubo node.
pub struct KuboTarget {
    client: KuboClient,
    method: PutMethod,
    allow_offline: bool,
    /// `Some(true)`: `name/put` is used (decided on first contact).
    name_put: Mutex<Option<bool>>,
    peers: Mutex<Option<(Instant, u32)>>,
}

impl KuboTarget {
    pub fn new(client: KuboClient, method: PutMethod, allow_offline: bool) -> Self {
        let decided = match method {
            PutMethod::Auto => None,
            PutMethod::NamePut => Some(true),
            PutMethod::RoutingPut => Some(false),
        };
        Self {
            client,
            method,
            allow_offline,
            name_put: Mutex::new(decided),
            peers: Mutex::new(None),
        }
    }

    /// Whether puts go through `name/put` (asks Kubo's version once).
    async fn uses_name_put(&self) -> Result<bool, TargetError> {
        if let Some(decided) = *lock(&self.name_put) {
            return Ok(decided);
        }
        let version = self.client.version().await.map_err(target_error)?;
        let use_name_put = version.has_name_put();
        tracing::info!(
            kubo = %version.version,
            method = if use_name_put { "name/put" } else { "routing/put" },
            "republishing through Kubo"
        );
        *lock(&self.name_put) = Some(use_name_put);
        Ok(use_name_put)
    }

    /// DHT peers Kubo knows (cached); `None` when Kubo would not say.
    async fn dht_peers(&self) -> Option<u32> {
        if let Some((at, n)) = *lock(&self.peers)
            && at.elapsed() < PEERS_MAX_AGE
        {
            return Some(n);
        }
        match self.client.dht_peers().await {
            Ok(p) => {
                let n = u32::try_from(p.lan + p.wan).unwrap_or(u32::MAX);
                *lock(&self.peers) = Some((Instant::now(), n));
                Some(n)
            }
            Err(e) => {
                tracing::debug!(error = %e, "stats/dht failed; put peers unknown");
                None
            }
        }
    }

    /// The configured method (for the admin view).
    pub fn method(&self) -> PutMethod {
        self.method
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Kubo's `name/put` refusal when the routing system holds a record with
/// an equal or higher sequence.
const NEWER_ON_NETWORK: &str = "existing IPNS record has sequence";

fn target_error(e: KuboError) -> TargetError {
    let message = e.to_string();
    let code = if message.contains(NEWER_ON_NETWORK) {
        "network_has_newer"
    } else {
        e.code()
    };
    TargetError {
        code,
        unreachable: e.is_unreachable(),
        message,
    }
}

impl Target for KuboTarget {
    async fn put(&self, name: &Name, record: Bytes) -> Result<PutReport, TargetError> {
        let text = name.to_string();
        if self.uses_name_put().await? {
            self.client
                .name_put(&text, &record, self.allow_offline)
                .await
                .map_err(target_error)?;
        } else {
            self.client
                .routing_put(&text, &record, self.allow_offline)
                .await
                .map_err(target_error)?;
        }
        Ok(PutReport {
            peers: self.dht_peers().await,
        })
    }

    async fn fetch(&self, name: &Name) -> Result<Option<Bytes>, TargetError> {
        let text = name.to_string();
        let got = if self.uses_name_put().await? {
            self.client.name_get(&text).await
        } else {
            self.client.routing_get(&text).await
        };
        match got {
            Ok(found) => Ok(found),
            Err(KuboError::NotFound) => Ok(None),
            Err(e) => Err(target_error(e)),
        }
    }

    async fn probe(&self) -> Result<(), TargetError> {
        self.client.version().await.map_err(target_error)?;
        Ok(())
    }
}
