//! The quota policy document: tiers, peer assignments, allow and deny
//! lists, and the per-IP-prefix budget.
//!
//! The document is TOML (or the same structure as JSON, for the admin API).
//! [`Policy::parse`] validates it whole and reports the first problem as one
//! line naming the key; nothing is applied unless everything is valid.
//! [`DEFAULT_POLICY`] is the commented default, embedded in the binary.

use std::{collections::HashMap, sync::Arc, time::Duration};

use libp2p::PeerId;
use serde::Deserialize;

use super::budget::Rate;

/// The commented default policy.
pub const DEFAULT_POLICY: &str = include_str!("default.toml");

/// A policy problem, naming the key it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quota policy key {key}: {reason}")]
pub struct PolicyError {
    pub key: String,
    pub reason: String,
}

fn err(key: impl Into<String>, reason: impl Into<String>) -> PolicyError {
    PolicyError {
        key: key.into(),
        reason: reason.into(),
    }
}

/// What happens to a want past a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Answer DONT_HAVE (1.2.0 peers; older ones get nothing).
    DontHave,
    /// Send nothing for the want.
    Drop,
    /// Close the peer's connections and refuse it for the cool-down.
    Disconnect,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::DontHave => "donthave",
            Action::Drop => "drop",
            Action::Disconnect => "disconnect",
        }
    }
}

/// One tier's budgets. Zero means unlimited for rates and daily budgets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    pub name: Arc<str>,
    pub blocks: Rate,
    pub bytes: Rate,
    pub blocks_per_day: u64,
    pub bytes_per_day: u64,
    pub max_wantlist_entries: usize,
    pub max_inbound_streams: usize,
    /// Response bytes queued for the peer and not yet written; past it new
    /// blocks are refused (the peer reads too slowly).
    pub max_inflight_bytes: u64,
    pub action: Action,
    /// Over budget continuously for this long escalates to disconnect;
    /// `None` never escalates.
    pub escalate_after: Option<Duration>,
    /// How long a disconnected peer is refused.
    pub cooldown: Duration,
}

/// The budget all peers from one IP prefix share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixBudget {
    pub ipv4_bits: u8,
    pub ipv6_bits: u8,
    pub blocks: Rate,
    pub bytes: Rate,
    pub blocks_per_day: u64,
    pub bytes_per_day: u64,
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub tiers: Vec<Tier>,
    /// Index into `tiers` for peers without an assignment.
    pub default_tier: usize,
    /// Peer → index into `tiers`.
    pub peers: HashMap<PeerId, usize>,
    pub allow: Vec<PeerId>,
    pub deny: Vec<PeerId>,
    pub prefix: PrefixBudget,
    /// Most peers whose counters are kept in memory; the least recently
    /// seen are written to the store and forgotten past it.
    pub max_tracked_peers: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    default_tier: String,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    peers: HashMap<String, String>,
    tiers: HashMap<String, RawTier>,
    prefix: RawPrefix,
    max_tracked_peers: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    blocks_per_second: u64,
    blocks_burst: u64,
    bytes_per_second: u64,
    bytes_burst: u64,
    blocks_per_day: u64,
    bytes_per_day: u64,
    max_wantlist_entries: usize,
    max_inbound_streams: usize,
    max_inflight_bytes: u64,
    policy: String,
    escalate_after: String,
    cooldown: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrefix {
    ipv4_bits: u8,
    ipv6_bits: u8,
    blocks_per_second: u64,
    blocks_burst: u64,
    bytes_per_second: u64,
    bytes_burst: u64,
    blocks_per_day: u64,
    bytes_per_day: u64,
}

impl Default for Policy {
    fn default() -> Self {
        // A unit test parses the embedded file, so this cannot fail in a build.
        Policy::parse(DEFAULT_POLICY).expect("embedded default quota policy is valid")
    }
}

impl Policy {
    /// Parses and validates a policy: TOML, or JSON when the text starts
    /// with `{`.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let raw: RawPolicy = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| err("(document)", e.to_string()))?
        } else {
            toml::from_str(text).map_err(|e| err("(document)", e.message().to_string()))?
        };
        raw.validate()
    }

    /// The tier for a peer that is not allowlisted.
    pub fn tier_of(&self, peer: &PeerId) -> usize {
        self.peers.get(peer).copied().unwrap_or(self.default_tier)
    }

    pub fn is_allowed(&self, peer: &PeerId) -> bool {
        self.allow.contains(peer)
    }

    pub fn is_denied(&self, peer: &PeerId) -> bool {
        self.deny.contains(peer)
    }
}

fn rate(key: &str, per_second: u64, burst: u64) -> Result<Rate, PolicyError> {
    if per_second > 0 && burst == 0 {
        return Err(err(
            key,
            "burst must be greater than 0 when the rate is set",
        ));
    }
    if per_second > i64::MAX as u64 / 1000 || burst > i64::MAX as u64 / 1000 {
        return Err(err(key, "too large"));
    }
    Ok(Rate { per_second, burst })
}

fn duration(key: &str, s: &str) -> Result<Duration, PolicyError> {
    humantime::parse_duration(s)
        .map_err(|e| err(key, format!("{s:?} is not a duration like \"60s\": {e}")))
}

fn peer_id(key: &str, s: &str) -> Result<PeerId, PolicyError> {
    s.parse()
        .map_err(|e| err(key, format!("{s:?} is not a peer ID: {e}")))
}

impl RawPolicy {
    fn validate(self) -> Result<Policy, PolicyError> {
        if self.tiers.is_empty() {
            return Err(err("tiers", "at least one tier is needed"));
        }
        // Sorted, so indices (and error order) do not depend on hashing.
        let mut names: Vec<&String> = self.tiers.keys().collect();
        names.sort();
        let mut tiers = Vec::with_capacity(names.len());
        for name in &names {
            let t = &self.tiers[*name];
            let key = |k: &str| format!("tiers.{name}.{k}");
            if name.is_empty() || name.len() > 64 {
                return Err(err("tiers", "tier names are 1 to 64 characters"));
            }
            let action = match t.policy.as_str() {
                "donthave" => Action::DontHave,
                "drop" => Action::Drop,
                "disconnect" => Action::Disconnect,
                other => {
                    return Err(err(
                        key("policy"),
                        format!("{other:?} is not one of donthave, drop, disconnect"),
                    ));
                }
            };
            let escalate = duration(&key("escalate_after"), &t.escalate_after)?;
            tiers.push(Tier {
                name: Arc::from(name.as_str()),
                blocks: rate(&key("blocks_burst"), t.blocks_per_second, t.blocks_burst)?,
                bytes: rate(&key("bytes_burst"), t.bytes_per_second, t.bytes_burst)?,
                blocks_per_day: t.blocks_per_day,
                bytes_per_day: t.bytes_per_day,
                max_wantlist_entries: positive(
                    &key("max_wantlist_entries"),
                    t.max_wantlist_entries,
                )?,
                max_inbound_streams: positive(&key("max_inbound_streams"), t.max_inbound_streams)?,
                max_inflight_bytes: positive(
                    &key("max_inflight_bytes"),
                    t.max_inflight_bytes as usize,
                )? as u64,
                action,
                escalate_after: (!escalate.is_zero()).then_some(escalate),
                cooldown: duration(&key("cooldown"), &t.cooldown)?,
            });
        }
        let index = |key: &str, name: &str| {
            names
                .iter()
                .position(|n| n.as_str() == name)
                .ok_or_else(|| err(key, format!("no tier named {name:?}")))
        };
        let default_tier = index("default_tier", &self.default_tier)?;
        let mut peers = HashMap::with_capacity(self.peers.len());
        let mut assigned: Vec<(&String, &String)> = self.peers.iter().collect();
        assigned.sort();
        for (peer, tier) in assigned {
            let key = format!("peers.{peer}");
            peers.insert(peer_id(&key, peer)?, index(&key, tier)?);
        }
        let list = |name: &str, values: &[String]| -> Result<Vec<PeerId>, PolicyError> {
            values
                .iter()
                .enumerate()
                .map(|(i, s)| peer_id(&format!("{name}[{i}]"), s))
                .collect()
        };
        let allow = list("allow", &self.allow)?;
        let deny = list("deny", &self.deny)?;
        if let Some(p) = allow.iter().find(|p| deny.contains(p)) {
            return Err(err("deny", format!("{p} is on both allow and deny")));
        }
        let p = &self.prefix;
        if !(8..=32).contains(&p.ipv4_bits) {
            return Err(err("prefix.ipv4_bits", "must be between 8 and 32"));
        }
        if !(16..=128).contains(&p.ipv6_bits) {
            return Err(err("prefix.ipv6_bits", "must be between 16 and 128"));
        }
        let prefix = PrefixBudget {
            ipv4_bits: p.ipv4_bits,
            ipv6_bits: p.ipv6_bits,
            blocks: rate("prefix.blocks_burst", p.blocks_per_second, p.blocks_burst)?,
            bytes: rate("prefix.bytes_burst", p.bytes_per_second, p.bytes_burst)?,
            blocks_per_day: p.blocks_per_day,
            bytes_per_day: p.bytes_per_day,
        };
        Ok(Policy {
            tiers,
            default_tier,
            peers,
            allow,
            deny,
            prefix,
            max_tracked_peers: positive("max_tracked_peers", self.max_tracked_peers)?,
        })
    }
}

fn positive(key: &str, v: usize) -> Result<usize, PolicyError> {
    if v > 0 {
        Ok(v)
    } else {
        Err(err(key, "must be greater than 0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
    const B: &str = "12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq";

    fn with(extra: &str) -> String {
        format!("{DEFAULT_POLICY}\n{extra}")
    }

    #[test]
    fn embedded_default_is_valid() {
        let p = Policy::default();
        assert_eq!(p.tiers[p.default_tier].name.as_ref(), "default");
        assert!(p.allow.is_empty() && p.deny.is_empty());
    }

    #[test]
    fn peers_get_their_tier_and_others_the_default() {
        let text = DEFAULT_POLICY.replace("[peers]", &format!("[peers]\n\"{A}\" = \"trusted\""));
        let p = Policy::parse(&text).unwrap();
        let a: PeerId = A.parse().unwrap();
        let b: PeerId = B.parse().unwrap();
        assert_eq!(p.tiers[p.tier_of(&a)].name.as_ref(), "trusted");
        assert_eq!(p.tier_of(&b), p.default_tier);
    }

    #[test]
    fn problems_name_their_key() {
        let cases = [
            (
                DEFAULT_POLICY.replacen("policy = \"donthave\"", "policy = \"tarpit\"", 1),
                "tiers.default.policy",
            ),
            (
                DEFAULT_POLICY.replace("default_tier = \"default\"", "default_tier = \"gold\""),
                "default_tier",
            ),
            (
                DEFAULT_POLICY.replace("[peers]", "[peers]\n\"not-a-peer\" = \"default\""),
                "peers.not-a-peer",
            ),
            (
                DEFAULT_POLICY.replace("[peers]", &format!("[peers]\n\"{A}\" = \"gold\"")),
                &format!("peers.{A}"),
            ),
            (
                DEFAULT_POLICY.replace("ipv4_bits = 24", "ipv4_bits = 40"),
                "prefix.ipv4_bits",
            ),
            (
                DEFAULT_POLICY.replacen("escalate_after = \"60s\"", "escalate_after = \"soon\"", 1),
                "tiers.default.escalate_after",
            ),
            (
                DEFAULT_POLICY.replacen("blocks_per_second = 0", "blocks_per_second = 10", 1),
                "tiers.default.blocks_burst",
            ),
            (with("allow = [1]"), "(document)"),
        ];
        for (text, key) in cases {
            let e = Policy::parse(&text).unwrap_err();
            assert_eq!(e.key, *key, "{e}");
        }
    }

    #[test]
    fn a_peer_on_both_lists_is_refused() {
        let text = DEFAULT_POLICY
            .replace("allow = []", &format!("allow = [\"{A}\"]"))
            .replace("deny = []", &format!("deny = [\"{A}\"]"));
        assert_eq!(Policy::parse(&text).unwrap_err().key, "deny");
    }

    #[test]
    fn json_documents_are_accepted() {
        let toml_value: toml::Value = toml::from_str(DEFAULT_POLICY).unwrap();
        let json = serde_json::to_string(&toml_value).unwrap();
        assert_eq!(Policy::parse(&json).unwrap(), Policy::default());
    }
}
