//! The one composed configuration.
//!
//! Layers, later wins: the embedded defaults ([`DEFAULT_CONFIG`], also what
//! `sidecar config init` writes), the TOML file, `SIDECAR_<SECTION>__<KEY>`
//! environment variables, then `--set section.key=value` flags. The result is
//! validated as a whole before any listener binds; the first problem is
//! reported as one line naming the key.
//!
//! This module reads files and the environment only when asked to
//! ([`Config::load`]); everything else is pure.

use std::{net::SocketAddr, path::Path, time::Duration};

use libp2p::{Multiaddr, multiaddr::Protocol};
use serde::Deserialize;

mod dnsaddr;
mod watch;
pub use dnsaddr::DnsaddrConfig;
pub use watch::WatchConfig;

/// The commented default configuration, embedded in the binary.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// Prefix of environment overrides: `SIDECAR_<SECTION>__<KEY>`.
pub const ENV_PREFIX: &str = "SIDECAR_";

/// A configuration problem, always naming the key it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("config key {key}: {reason}")]
    Key { key: String, reason: String },
}

impl ConfigError {
    fn key(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Key {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub p2p: P2pConfig,
    pub http: HttpConfig,
    pub kubo: KuboConfig,
    pub bitswap: BitswapConfig,
    pub quota: QuotaConfig,
    pub republish: RepublishConfig,
    pub dnsaddr: DnsaddrConfig,
    pub watch: WatchConfig,
}

/// `[republish]`: keeping stored IPNS records on the DHT through Kubo.
#[derive(Debug, Clone)]
pub struct RepublishConfig {
    pub enabled: bool,
    pub policy: crate::ipns::republish::Policy,
    /// `auto`, `name_put` or `routing_put`.
    pub method: crate::ipns::republish::PutMethod,
    /// Pass `allow-offline` to Kubo (a Kubo without a network stores the
    /// record locally instead of failing).
    pub allow_offline: bool,
    /// Also re-issue Kubo's own keystore keys (`name/publish`).
    pub kubo_keys: bool,
    /// Shortest validity of a re-issued Kubo key record.
    pub kubo_keys_lifetime: Duration,
}

/// The longest republish interval accepted: half the DHT's 48 h record
/// expiry, so a record survives one failed cycle.
pub const MAX_REPUBLISH_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// `[quota]`: where the quota policy lives and how often counters are saved.
#[derive(Debug, Clone)]
pub struct QuotaConfig {
    /// The policy file; `None` means `<data-dir>/quotas.toml`.
    pub policy: Option<std::path::PathBuf>,
    pub flush_interval: Duration,
}

/// `[p2p]`: the libp2p host.
#[derive(Debug, Clone)]
pub struct P2pConfig {
    /// TCP and WebSocket listen multiaddrs.
    pub listen: Vec<Multiaddr>,
    /// Multiaddrs to advertise; empty means the bound listen addresses.
    pub announce: Vec<Multiaddr>,
    pub max_connections: u32,
    pub max_connections_per_peer: u32,
    pub max_pending_incoming: u32,
    pub idle_connection_timeout: Duration,
}

/// `[http]`: the HTTP API.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Bearer token for `/admin/*`; `None` turns the admin API off.
    pub admin_token: Option<String>,
    /// Record writes per second per client address (IPv6: per /64); 0 is
    /// no limit. Defaults to 10.
    pub write_rate_per_ip: u64,
    /// Writes a client may make at once before the rate applies. Defaults
    /// to 100.
    pub write_burst_per_ip: u64,
    /// Clients the write limit never applies to. Defaults to loopback.
    pub write_rate_exempt: Vec<IpNet>,
}

/// An address prefix such as `10.0.0.0/8` or `::1/128` (a bare address is
/// the whole address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: std::net::IpAddr,
    bits: u8,
}

impl IpNet {
    /// Whether `ip` is inside this prefix (IPv4 and IPv6 never match each other).
    pub fn contains(&self, ip: &std::net::IpAddr) -> bool {
        use std::net::IpAddr::{V4, V6};
        let (net, ip, width) = match (self.addr, ip) {
            (V4(n), V4(i)) => (u128::from(u32::from(n)), u128::from(u32::from(*i)), 32),
            (V6(n), V6(i)) => (u128::from(n), u128::from(*i), 128),
            _ => return false,
        };
        let host_bits = width - u32::from(self.bits);
        host_bits >= width || (net >> host_bits) == (ip >> host_bits)
    }
}

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address or address/bits"))?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => width,
            Some(b) => b
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= width)
                .ok_or_else(|| format!("{s:?}: prefix bits must be 0..={width}"))?,
        };
        Ok(Self { addr, bits })
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.bits)
    }
}

/// `[kubo]`: the Kubo node this sidecar stands beside.
#[derive(Debug, Clone)]
pub struct KuboConfig {
    pub rpc: String,
    /// Kubo's `API.Authorizations` secret (`bearer:<token>` or
    /// `basic:<user>:<password>`), if its RPC requires one.
    pub auth: Option<crate::kubo::KuboAuth>,
    /// Time allowed for one RPC call.
    pub timeout: Duration,
}

/// `[bitswap]`: the Bitswap server. Units are in the default file's comments.
#[derive(Debug, Clone)]
pub struct BitswapConfig {
    pub max_wantlist_entries: usize,
    pub max_cid_bytes: usize,
    pub max_block_size: u32,
    pub max_have_block_size: u32,
    pub workers: usize,
    pub peer_quantum_bytes: u64,
    pub send_timeout: Duration,
    pub max_inbound_streams_per_peer: usize,
}

// Raw, string-typed mirror of the file, so that every value can be
// validated with its key in the message.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    p2p: RawP2p,
    http: RawHttp,
    kubo: RawKubo,
    bitswap: RawBitswap,
    quota: RawQuota,
    republish: RawRepublish,
    dnsaddr: dnsaddr::RawDnsaddr,
    watch: watch::RawWatch,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepublish {
    enabled: bool,
    interval: String,
    jitter: f64,
    concurrency: usize,
    put_timeout: String,
    retry_min: String,
    retry_max: String,
    catch_up_window: String,
    check_network: bool,
    method: String,
    allow_offline: bool,
    kubo_keys: bool,
    kubo_keys_lifetime: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    policy: String,
    flush_interval: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawP2p {
    listen: Vec<String>,
    announce: Vec<String>,
    max_connections: u32,
    max_connections_per_peer: u32,
    max_pending_incoming: u32,
    idle_connection_timeout: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: String,
    admin_token: String,
    write_rate_per_ip: u64,
    write_burst_per_ip: u64,
    write_rate_exempt: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKubo {
    rpc: String,
    auth: String,
    timeout: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBitswap {
    max_wantlist_entries: usize,
    max_cid_bytes: usize,
    max_block_size: u32,
    max_have_block_size: u32,
    workers: usize,
    peer_quantum_bytes: u64,
    send_timeout: String,
    max_inbound_streams_per_peer: usize,
}

/// Bitswap carries blocks of at most 2 MiB (the libp2p message limit is 4 MiB).
const MAX_BLOCK_SIZE_LIMIT: u32 = 2 * 1024 * 1024;

impl Default for Config {
    fn default() -> Self {
        // The embedded file is checked by a unit test, so this cannot fail in a
        // released binary.
        Self::from_table(default_table(), &[]).expect("embedded default config is valid")
    }
}

fn default_table() -> toml::Table {
    DEFAULT_CONFIG
        .parse()
        .expect("embedded default config is TOML")
}

impl Config {
    /// Loads the configuration: defaults, then `file` if given (a missing
    /// file is an error), then the process environment, then `sets`
    /// (`section.key=value`).
    pub fn load(file: Option<&Path>, sets: &[String]) -> Result<Self, ConfigError> {
        let mut table = default_table();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            let file_table: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::File {
                        path: path.display().to_string(),
                        reason: e.message().to_string(),
                    })?;
            merge_file(&mut table, file_table)?;
        }
        let mut overrides = Vec::new();
        for (name, value) in std::env::vars() {
            if let Some(rest) = name.strip_prefix(ENV_PREFIX)
                && let Some((section, key)) = rest.split_once("__")
            {
                overrides.push((
                    format!("{}.{}", section.to_lowercase(), key.to_lowercase()),
                    value,
                ));
            }
        }
        for set in sets {
            let (key, value) = set
                .split_once('=')
                .ok_or_else(|| ConfigError::key(set, "--set takes section.key=value"))?;
            overrides.push((key.trim().to_string(), value.to_string()));
        }
        Self::from_table(table, &overrides)
    }

    /// Builds a configuration from a full table plus `(section.key, value)`
    /// overrides, and validates it.
    fn from_table(
        mut table: toml::Table,
        overrides: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        for (key, value) in overrides {
            apply_override(&mut table, key, value)?;
        }
        let raw: Raw = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::key("(file)", e.message().to_string()))?;
        raw.validate()
    }

    /// The addresses to advertise given the bound listen addresses: the
    /// [`Config::direct_addrs`], then `/dnsaddr/<domain>` when
    /// `[dnsaddr] domain` is set.
    pub fn advertised_addrs(&self, bound: &[Multiaddr]) -> Vec<Multiaddr> {
        let mut addrs = self.direct_addrs(bound);
        addrs.extend(self.dnsaddr.advertised());
        addrs
    }

    /// The addresses peers can dial directly (what the dnsaddr TXT records
    /// list): `[p2p] announce` when set, else the bound addresses that are
    /// not unspecified (0.0.0.0 / ::) nor port 0 (configured, not bound).
    pub fn direct_addrs(&self, bound: &[Multiaddr]) -> Vec<Multiaddr> {
        if !self.p2p.announce.is_empty() {
            return self.p2p.announce.clone();
        }
        bound
            .iter()
            .filter(|a| {
                !a.iter().any(|p| match p {
                    Protocol::Ip4(ip) => ip.is_unspecified(),
                    Protocol::Ip6(ip) => ip.is_unspecified(),
                    Protocol::Tcp(port) => port == 0,
                    _ => false,
                })
            })
            .cloned()
            .collect()
    }
}

/// Merges a user file over the defaults, one known section at a time, so an
/// unknown section or key is named precisely.
fn merge_file(base: &mut toml::Table, file: toml::Table) -> Result<(), ConfigError> {
    for (section, value) in file {
        let Some(base_section) = base.get_mut(&section).and_then(|v| v.as_table_mut()) else {
            return Err(ConfigError::key(section, "unknown section"));
        };
        let toml::Value::Table(entries) = value else {
            return Err(ConfigError::key(section, "must be a [section] table"));
        };
        for (key, v) in entries {
            if !base_section.contains_key(&key) {
                return Err(ConfigError::key(format!("{section}.{key}"), "unknown key"));
            }
            base_section.insert(key, v);
        }
    }
    Ok(())
}

/// Applies one `section.key=value` override, coercing the text to the type
/// the default has for that key (so `8` stays a string where a string is
/// expected, and `a,b` becomes a list where a list is expected).
fn apply_override(table: &mut toml::Table, key: &str, text: &str) -> Result<(), ConfigError> {
    let (section, name) = key
        .split_once('.')
        .ok_or_else(|| ConfigError::key(key, "expected section.key"))?;
    let entries = table
        .get_mut(section)
        .and_then(|v| v.as_table_mut())
        .ok_or_else(|| ConfigError::key(key, "unknown section"))?;
    let current = entries
        .get(name)
        .ok_or_else(|| ConfigError::key(key, "unknown key"))?;
    let value = match current {
        toml::Value::String(_) => toml::Value::String(text.to_string()),
        toml::Value::Array(_) => {
            let trimmed = text.trim();
            if trimmed.starts_with('[') {
                parse_toml_value(trimmed)
                    .ok_or_else(|| ConfigError::key(key, "not a TOML array"))?
            } else {
                toml::Value::Array(
                    trimmed
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.to_string()))
                        .collect(),
                )
            }
        }
        toml::Value::Integer(_) => toml::Value::Integer(
            text.trim()
                .parse()
                .map_err(|_| ConfigError::key(key, format!("{text:?} is not an integer")))?,
        ),
        toml::Value::Boolean(_) => toml::Value::Boolean(
            text.trim()
                .parse()
                .map_err(|_| ConfigError::key(key, format!("{text:?} is not true or false")))?,
        ),
        _ => parse_toml_value(text).ok_or_else(|| ConfigError::key(key, "not a TOML value"))?,
    };
    entries.insert(name.to_string(), value);
    Ok(())
}

fn parse_toml_value(text: &str) -> Option<toml::Value> {
    let mut t: toml::Table = format!("v = {text}").parse().ok()?;
    t.remove("v")
}

fn multiaddrs(key: &str, values: &[String]) -> Result<Vec<Multiaddr>, ConfigError> {
    values
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse::<Multiaddr>().map_err(|e| {
                ConfigError::key(
                    format!("{key}[{i}]"),
                    format!("{s:?} is not a multiaddr: {e}"),
                )
            })
        })
        .collect()
}

fn duration(key: &str, s: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(s)
        .map_err(|e| ConfigError::key(key, format!("{s:?} is not a duration like \"30s\": {e}")))
}

fn positive<T: PartialOrd + Default + Copy>(key: &str, v: T) -> Result<T, ConfigError> {
    if v > T::default() {
        Ok(v)
    } else {
        Err(ConfigError::key(key, "must be greater than 0"))
    }
}

/// An empty token disables the admin API; a set one must be long enough
/// not to be guessed.
fn admin_token(token: &str) -> Result<Option<String>, ConfigError> {
    if token.is_empty() {
        return Ok(None);
    }
    if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::key(
            "http.admin_token",
            "must be at least 16 characters without spaces (or empty to disable /admin)",
        ));
    }
    Ok(Some(token.to_string()))
}

/// A listen address must be `/ip4|ip6/…/tcp/N` optionally followed by `/ws`.
fn check_listen(key: &str, addr: &Multiaddr) -> Result<(), ConfigError> {
    let mut it = addr.iter();
    let ip_ok = matches!(it.next(), Some(Protocol::Ip4(_) | Protocol::Ip6(_)));
    let tcp_ok = matches!(it.next(), Some(Protocol::Tcp(_)));
    let rest: Vec<_> = it.collect();
    let rest_ok = rest.is_empty() || matches!(rest.as_slice(), [Protocol::Ws(_)]);
    if ip_ok && tcp_ok && rest_ok {
        Ok(())
    } else {
        Err(ConfigError::key(
            key,
            format!("{addr} is not a TCP (/ip4/…/tcp/N) or WebSocket (…/tcp/N/ws) listen address"),
        ))
    }
}

impl RawRepublish {
    fn validate(self) -> Result<RepublishConfig, ConfigError> {
        let d = |key: &str, v: &str| {
            let k = format!("republish.{key}");
            positive(&k, duration(&k, v)?)
        };
        let interval = d("interval", &self.interval)?;
        if interval > MAX_REPUBLISH_INTERVAL {
            return Err(ConfigError::key(
                "republish.interval",
                format!(
                    "{} is too close to the DHT's 48 h record expiry; at most {}",
                    self.interval,
                    humantime::format_duration(MAX_REPUBLISH_INTERVAL)
                ),
            ));
        }
        if !(0.0..=0.5).contains(&self.jitter) {
            return Err(ConfigError::key(
                "republish.jitter",
                "must be between 0 and 0.5",
            ));
        }
        let retry_min = d("retry_min", &self.retry_min)?;
        let retry_max = d("retry_max", &self.retry_max)?;
        if retry_max < retry_min {
            return Err(ConfigError::key(
                "republish.retry_max",
                "must not be shorter than republish.retry_min",
            ));
        }
        let kubo_keys_lifetime = d("kubo_keys_lifetime", &self.kubo_keys_lifetime)?;
        if kubo_keys_lifetime <= interval {
            return Err(ConfigError::key(
                "republish.kubo_keys_lifetime",
                format!(
                    "{} must be longer than republish.interval ({}), or re-issued records \
                     expire before they are re-issued again",
                    self.kubo_keys_lifetime, self.interval
                ),
            ));
        }
        Ok(RepublishConfig {
            enabled: self.enabled,
            policy: crate::ipns::republish::Policy {
                interval,
                jitter: self.jitter,
                concurrency: positive("republish.concurrency", self.concurrency)?,
                put_timeout: d("put_timeout", &self.put_timeout)?,
                retry_min,
                retry_max,
                catch_up_window: d("catch_up_window", &self.catch_up_window)?,
                check_network: self.check_network,
            },
            method: self
                .method
                .parse()
                .map_err(|e: String| ConfigError::key("republish.method", e))?,
            allow_offline: self.allow_offline,
            kubo_keys: self.kubo_keys,
            kubo_keys_lifetime,
        })
    }
}

impl Raw {
    fn validate(self) -> Result<Config, ConfigError> {
        let listen = multiaddrs("p2p.listen", &self.p2p.listen)?;
        for (i, a) in listen.iter().enumerate() {
            check_listen(&format!("p2p.listen[{i}]"), a)?;
        }
        let announce = multiaddrs("p2p.announce", &self.p2p.announce)?;
        let http_listen = self.http.listen.parse::<SocketAddr>().map_err(|_| {
            ConfigError::key(
                "http.listen",
                format!("{:?} is not host:port", self.http.listen),
            )
        })?;
        let rpc = crate::kubo::check_url(&self.kubo.rpc)
            .map_err(|e| ConfigError::key("kubo.rpc", e.to_string()))?;
        let kubo = KuboConfig {
            rpc,
            auth: if self.kubo.auth.is_empty() {
                None
            } else {
                Some(
                    self.kubo
                        .auth
                        .parse()
                        .map_err(|e: String| ConfigError::key("kubo.auth", e))?,
                )
            },
            timeout: positive(
                "kubo.timeout",
                duration("kubo.timeout", &self.kubo.timeout)?,
            )?,
        };
        let republish = self.republish.validate()?;
        let b = self.bitswap;
        let max_block_size = positive("bitswap.max_block_size", b.max_block_size)?;
        if max_block_size > MAX_BLOCK_SIZE_LIMIT {
            return Err(ConfigError::key(
                "bitswap.max_block_size",
                format!("{max_block_size} is over the Bitswap limit of {MAX_BLOCK_SIZE_LIMIT}"),
            ));
        }
        if b.max_have_block_size > max_block_size {
            return Err(ConfigError::key(
                "bitswap.max_have_block_size",
                "must not exceed bitswap.max_block_size",
            ));
        }
        if b.max_cid_bytes < 34 {
            return Err(ConfigError::key(
                "bitswap.max_cid_bytes",
                "must be at least 34 (a CIDv0 is 34 bytes)",
            ));
        }
        Ok(Config {
            p2p: P2pConfig {
                listen,
                announce,
                max_connections: positive("p2p.max_connections", self.p2p.max_connections)?,
                max_connections_per_peer: positive(
                    "p2p.max_connections_per_peer",
                    self.p2p.max_connections_per_peer,
                )?,
                max_pending_incoming: positive(
                    "p2p.max_pending_incoming",
                    self.p2p.max_pending_incoming,
                )?,
                idle_connection_timeout: duration(
                    "p2p.idle_connection_timeout",
                    &self.p2p.idle_connection_timeout,
                )?,
            },
            http: HttpConfig {
                listen: http_listen,
                admin_token: admin_token(&self.http.admin_token)?,
                write_rate_per_ip: self.http.write_rate_per_ip,
                write_burst_per_ip: self.http.write_burst_per_ip,
                write_rate_exempt: self
                    .http
                    .write_rate_exempt
                    .iter()
                    .map(|n| {
                        n.parse()
                            .map_err(|e: String| ConfigError::key("http.write_rate_exempt", &e))
                    })
                    .collect::<Result<_, _>>()?,
            },
            quota: QuotaConfig {
                policy: (!self.quota.policy.is_empty())
                    .then(|| std::path::PathBuf::from(&self.quota.policy)),
                flush_interval: positive(
                    "quota.flush_interval",
                    duration("quota.flush_interval", &self.quota.flush_interval)?,
                )?,
            },
            kubo,
            republish,
            dnsaddr: self.dnsaddr.validate()?,
            watch: self.watch.validate()?,
            bitswap: BitswapConfig {
                max_wantlist_entries: positive(
                    "bitswap.max_wantlist_entries",
                    b.max_wantlist_entries,
                )?,
                max_cid_bytes: b.max_cid_bytes,
                max_block_size,
                max_have_block_size: b.max_have_block_size,
                workers: positive("bitswap.workers", b.workers)?,
                peer_quantum_bytes: positive("bitswap.peer_quantum_bytes", b.peer_quantum_bytes)?,
                send_timeout: duration("bitswap.send_timeout", &b.send_timeout)?,
                max_inbound_streams_per_peer: positive(
                    "bitswap.max_inbound_streams_per_peer",
                    b.max_inbound_streams_per_peer,
                )?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(overrides: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let o: Vec<(String, String)> = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_table(default_table(), &o)
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = with(&[]).unwrap();
        assert_eq!(c.bitswap.max_wantlist_entries, 1024);
        assert_eq!(c.p2p.listen.len(), 2);
        assert_eq!(
            c.republish.policy,
            crate::ipns::republish::Policy::default()
        );
        assert!(c.republish.enabled && c.kubo.auth.is_none());
    }

    #[test]
    fn republish_intervals_in_seconds_work_for_tests() {
        let c = with(&[("republish.interval", "3s"), ("republish.jitter", "0")]).unwrap();
        assert_eq!(c.republish.policy.interval, Duration::from_secs(3));
        let c = with(&[("kubo.auth", "bearer:secret-token")]).unwrap();
        assert!(c.kubo.auth.is_some());
    }

    #[test]
    fn overrides_coerce_to_the_default_type() {
        let c = with(&[
            ("http.listen", "127.0.0.1:0"),
            (
                "p2p.listen",
                "/ip4/127.0.0.1/tcp/0, /ip4/127.0.0.1/tcp/0/ws",
            ),
            ("bitswap.workers", "3"),
        ])
        .unwrap();
        assert_eq!(c.http.listen.port(), 0);
        assert_eq!(c.p2p.listen.len(), 2);
        assert_eq!(c.bitswap.workers, 3);
        let c = with(&[("p2p.announce", r#"["/dns4/example.com/tcp/4010"]"#)]).unwrap();
        assert_eq!(c.p2p.announce.len(), 1);
    }

    #[test]
    fn ip_nets_parse_and_match() {
        let c = with(&[]).unwrap();
        let exempt = &c.http.write_rate_exempt;
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert!(exempt.iter().any(|n| n.contains(&ip("127.3.4.5"))));
        assert!(exempt.iter().any(|n| n.contains(&ip("::1"))));
        assert!(!exempt.iter().any(|n| n.contains(&ip("10.0.0.1"))));
        let net: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(&ip("10.1.200.3")) && !net.contains(&ip("10.2.0.1")));
        assert!(!net.contains(&ip("::ffff:10.1.0.1")), "families never mix");
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(&ip("203.0.113.9")));
        let one: IpNet = "2001:db8::1".parse().unwrap();
        assert_eq!(one.to_string(), "2001:db8::1/128");
        assert!(one.contains(&ip("2001:db8::1")) && !one.contains(&ip("2001:db8::2")));
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("http.listen", "nonsense", "http.listen"),
            ("p2p.listen", "/ip4/1.2.3.4/udp/5", "p2p.listen[0]"),
            ("p2p.listen", "garbage", "p2p.listen[0]"),
            ("bitswap.workers", "0", "bitswap.workers"),
            ("bitswap.workers", "many", "bitswap.workers"),
            (
                "bitswap.max_block_size",
                "99999999",
                "bitswap.max_block_size",
            ),
            ("kubo.rpc", "ftp://x", "kubo.rpc"),
            ("kubo.rpc", "https://kubo.example:5001", "kubo.rpc"),
            ("kubo.rpc", "http://user:pw@127.0.0.1:5001", "kubo.rpc"),
            (
                "http.write_rate_exempt",
                "10.0.0.0/33",
                "http.write_rate_exempt",
            ),
            (
                "http.write_rate_exempt",
                "localhost",
                "http.write_rate_exempt",
            ),
            ("bitswap.send_timeout", "soon", "bitswap.send_timeout"),
            ("republish.interval", "47h", "republish.interval"),
            ("republish.interval", "0s", "republish.interval"),
            ("republish.jitter", "0.9", "republish.jitter"),
            ("republish.retry_max", "1s", "republish.retry_max"),
            ("republish.method", "dht", "republish.method"),
            ("republish.concurrency", "0", "republish.concurrency"),
            ("kubo.auth", "token", "kubo.auth"),
            ("republish.kubo_keys", "yes", "republish.kubo_keys"),
            ("dnsaddr.domain", "bad domain", "dnsaddr.domain"),
            ("dnsaddr.ttl", "0", "dnsaddr.ttl"),
            ("dnsaddr.server", "ns.example.com", "dnsaddr.server"),
            ("dnsaddr.tsig", "hmac-md5:k:c2VjcmV0", "dnsaddr.tsig"),
            ("dnsaddr.publish", "true", "dnsaddr.publish"),
            ("dnsaddr.max_depth", "0", "dnsaddr.max_depth"),
            ("watch.queue", "0", "watch.queue"),
            ("watch.heartbeat", "often", "watch.heartbeat"),
            ("watch.max_per_ip", "0", "watch.max_per_ip"),
            (
                "republish.kubo_keys_lifetime",
                "12h",
                "republish.kubo_keys_lifetime",
            ),
            ("kubo.timeout", "never", "kubo.timeout"),
            ("nosuch.key", "1", "nosuch.key"),
            ("p2p.nosuch", "1", "p2p.nosuch"),
        ];
        for (key, value, named) in cases {
            let err = with(&[(key, value)]).unwrap_err().to_string();
            assert!(err.contains(named), "{key}={value}: {err}");
        }
    }

    #[test]
    fn file_with_unknown_key_is_named() {
        let mut base = default_table();
        let file: toml::Table = "[http]\nlistn = \"x\"\n".parse().unwrap();
        let err = merge_file(&mut base, file).unwrap_err().to_string();
        assert!(err.contains("http.listn"), "{err}");
    }

    #[test]
    fn a_dnsaddr_domain_is_advertised_after_the_direct_addresses() {
        let bound: Vec<Multiaddr> = vec!["/ip4/127.0.0.1/tcp/4010".parse().unwrap()];
        let c = with(&[("dnsaddr.domain", "Sidecar.Example.com.")]).unwrap();
        assert_eq!(c.dnsaddr.domain.as_deref(), Some("sidecar.example.com"));
        assert_eq!(c.direct_addrs(&bound), bound);
        let advertised: Vec<String> = c
            .advertised_addrs(&bound)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            advertised,
            ["/ip4/127.0.0.1/tcp/4010", "/dnsaddr/sidecar.example.com"]
        );
        let plain = with(&[]).unwrap();
        assert_eq!(plain.advertised_addrs(&bound), bound);
    }

    #[test]
    fn unspecified_listen_addresses_are_never_advertised() {
        let c = with(&[]).unwrap();
        let bound: Vec<Multiaddr> = vec![
            "/ip4/0.0.0.0/tcp/4010".parse().unwrap(),
            "/ip4/192.0.2.1/tcp/4010".parse().unwrap(),
        ];
        assert_eq!(c.advertised_addrs(&bound), vec![bound[1].clone()]);
    }
}
