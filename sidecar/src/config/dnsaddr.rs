//! `[dnsaddr]`: advertising the sidecar as `/dnsaddr/<domain>` and
//! publishing the TXT records behind it. Validated here, used by
//! `dnsaddr_command` (records, check, publish) and `node` (publish at
//! start-up, the advertised addresses).

use std::net::SocketAddr;

use dnsaddr::{Tsig, resolve::Limits};
use libp2p::{Multiaddr, multiaddr::Protocol};
use serde::Deserialize;

use super::ConfigError;

/// `[dnsaddr]`, validated.
#[derive(Debug, Clone)]
pub struct DnsaddrConfig {
    /// The domain advertised as `/dnsaddr/<domain>` (lower case, no final
    /// dot); `None` advertises addresses only.
    pub domain: Option<String>,
    /// TTL of published TXT records, seconds.
    pub ttl: u32,
    /// The zone's primary server for RFC 2136 updates.
    pub server: Option<SocketAddr>,
    /// The TSIG key updates are signed with.
    pub tsig: Option<Tsig>,
    /// Publish this sidecar's records at start-up.
    pub publish: bool,
    /// Name server for `dnsaddr check`; `None`: the system resolver.
    pub nameserver: Option<SocketAddr>,
    /// Resolution bounds for `check`.
    pub limits: Limits,
}

impl DnsaddrConfig {
    /// `/dnsaddr/<domain>`, when a domain is set.
    pub fn advertised(&self) -> Option<Multiaddr> {
        self.domain
            .as_ref()
            .map(|d| Multiaddr::empty().with(Protocol::Dnsaddr(d.clone().into())))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDnsaddr {
    domain: String,
    ttl: u32,
    server: String,
    tsig: String,
    publish: bool,
    nameserver: String,
    max_depth: usize,
    max_addrs: usize,
}

/// Longest TTL accepted: a day (moving a node should not take longer).
pub const MAX_TTL: u32 = 86_400;

impl RawDnsaddr {
    pub(super) fn validate(self) -> Result<DnsaddrConfig, ConfigError> {
        let domain = match self.domain.trim() {
            "" => None,
            d => Some(
                dnsaddr::check_domain(d)
                    .map_err(|e| ConfigError::key("dnsaddr.domain", e.to_string()))?,
            ),
        };
        if !(1..=MAX_TTL).contains(&self.ttl) {
            return Err(ConfigError::key(
                "dnsaddr.ttl",
                format!("must be between 1 and {MAX_TTL} seconds"),
            ));
        }
        let addr = |key: &str, v: &str| -> Result<Option<SocketAddr>, ConfigError> {
            match v.trim() {
                "" => Ok(None),
                s => s.parse().map(Some).map_err(|_| {
                    ConfigError::key(key, format!("{s:?} is not ip:port (e.g. 192.0.2.53:53)"))
                }),
            }
        };
        let server = addr("dnsaddr.server", &self.server)?;
        let nameserver = addr("dnsaddr.nameserver", &self.nameserver)?;
        let tsig = match self.tsig.trim() {
            "" => None,
            s => Some(Tsig::parse(s).map_err(|e| ConfigError::key("dnsaddr.tsig", e.to_string()))?),
        };
        if self.publish && (domain.is_none() || server.is_none()) {
            return Err(ConfigError::key(
                "dnsaddr.publish",
                "needs dnsaddr.domain and dnsaddr.server (and usually dnsaddr.tsig)",
            ));
        }
        if self.max_depth == 0 || self.max_addrs == 0 {
            return Err(ConfigError::key(
                "dnsaddr.max_depth",
                "max_depth and max_addrs must be at least 1",
            ));
        }
        Ok(DnsaddrConfig {
            domain,
            ttl: self.ttl,
            server,
            tsig,
            publish: self.publish,
            nameserver,
            limits: Limits {
                max_depth: self.max_depth,
                max_addrs: self.max_addrs,
                ..Limits::default()
            },
        })
    }
}
