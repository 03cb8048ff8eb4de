//! [`Quotas`]: the policy-driven [`QuotaGate`].
//!
//! State per tracked peer: two token buckets (blocks, bytes), a rolling-day
//! window, the peer's IP prefix, and throttling bookkeeping — about 700
//! bytes with the map entry (a unit test keeps it so). Peers from one
//! prefix also share a prefix entry of the same shape. Counts are charged
//! only when a want is served, so a throttled peer's budget recovers at the
//! configured rate.
//!
//! Everything runs under one mutex held for a few hash lookups; no I/O
//! happens under it. Day windows that changed are collected by
//! [`Quotas::take_dirty`] and written to the store by the owner (batched);
//! a returning peer's window is read back by [`Quotas::peer_connected`].

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard, RwLock},
};

use libp2p::PeerId;
use tokio::sync::mpsc;

use super::{
    Admission, QuotaGate, Response,
    budget::{Clock, DayWindow, Rate, TokenBucket},
    policy::{Action, Policy, Tier},
};
use crate::metrics::{Metrics, ThrottleLabel};

/// Throttles closer together than this belong to one violation episode;
/// an episode that lasts `escalate_after` escalates to disconnect.
const EPISODE_GAP_MS: u64 = 10_000;

/// An IPv4 or IPv6 network prefix (address masked to the policy's bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpPrefix {
    V4(u32, u8),
    V6(u128, u8),
}

impl IpPrefix {
    pub fn of(ip: IpAddr, v4_bits: u8, v6_bits: u8) -> Self {
        match ip {
            IpAddr::V4(a) => {
                let bits = v4_bits.min(32);
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                IpPrefix::V4(u32::from(a) & mask, bits)
            }
            IpAddr::V6(a) => {
                // An IPv4-mapped address is the IPv4 peer it stands for.
                if let Some(v4) = a.to_ipv4_mapped() {
                    return Self::of(IpAddr::V4(v4), v4_bits, v6_bits);
                }
                let bits = v6_bits.min(128);
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                IpPrefix::V6(u128::from(a) & mask, bits)
            }
        }
    }

    /// Store key: `4` + address + bits, or `6` + address + bits.
    pub fn key(&self) -> Vec<u8> {
        match *self {
            IpPrefix::V4(a, b) => [&[b'4'][..], &a.to_be_bytes(), &[b]].concat(),
            IpPrefix::V6(a, b) => [&[b'6'][..], &a.to_be_bytes(), &[b]].concat(),
        }
    }
}

impl std::fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            IpPrefix::V4(a, b) => write!(f, "{}/{b}", std::net::Ipv4Addr::from(a)),
            IpPrefix::V6(a, b) => write!(f, "{}/{b}", std::net::Ipv6Addr::from(a)),
        }
    }
}

/// What the store holds for a peer or prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CounterKey {
    Peer(PeerId),
    Prefix(IpPrefix),
}

impl CounterKey {
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            CounterKey::Peer(p) => [&b"p"[..], &p.to_bytes()].concat(),
            CounterKey::Prefix(p) => [&b"n"[..], &p.key()].concat(),
        }
    }
}

/// Reads persisted day windows (the store, or nothing).
pub trait CounterSource: Send + Sync + 'static {
    fn load(&self, key: &CounterKey) -> Option<DayWindow>;
}

/// No persisted counters.
pub struct NoCounters;

impl CounterSource for NoCounters {
    fn load(&self, _: &CounterKey) -> Option<DayWindow> {
        None
    }
}

/// The limits the server applies outside the gate, per peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLimits {
    pub max_wantlist_entries: usize,
    pub max_inbound_streams: usize,
}

/// A row of `GET /admin/peers`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerReport {
    pub peer: String,
    pub tier: String,
    pub allowlisted: bool,
    pub prefix: Option<String>,
    pub connections: u32,
    pub day_blocks: u64,
    pub day_bytes: u64,
    /// Remaining today; `null` when unlimited.
    pub remaining_day_blocks: Option<u64>,
    pub remaining_day_bytes: Option<u64>,
    /// Whole units in the buckets now; `null` when unlimited.
    pub available_blocks: Option<u64>,
    pub available_bytes: Option<u64>,
    pub throttled: u64,
    pub banned_for_ms: Option<u64>,
}

struct Counters {
    blocks: TokenBucket,
    bytes: TokenBucket,
    day: DayWindow,
}

impl Counters {
    fn new(now: u64, blocks: Rate, bytes: Rate, day: Option<DayWindow>) -> Self {
        Self {
            blocks: TokenBucket::full(blocks, now),
            bytes: TokenBucket::full(bytes, now),
            day: day.unwrap_or_else(|| DayWindow::new(now)),
        }
    }

    /// Why `blocks`/`bytes` more would break these limits, if they would.
    #[allow(clippy::too_many_arguments)]
    fn over(
        &mut self,
        now: u64,
        rates: (Rate, Rate),
        per_day: (u64, u64),
        blocks: u64,
        bytes: u64,
        reasons: [&'static str; 4],
    ) -> Option<&'static str> {
        let (day_blocks, day_bytes) = self.day.totals(now);
        if per_day.0 > 0 && day_blocks + blocks > per_day.0 {
            return Some(reasons[0]);
        }
        if per_day.1 > 0 && day_bytes + bytes > per_day.1 {
            return Some(reasons[1]);
        }
        if !self.blocks.can_take(rates.0, now, blocks) {
            return Some(reasons[2]);
        }
        if !self.bytes.can_take(rates.1, now, bytes) {
            return Some(reasons[3]);
        }
        None
    }

    fn charge(&mut self, now: u64, rates: (Rate, Rate), blocks: u64, bytes: u64) {
        self.blocks.take(rates.0, blocks);
        self.bytes.take(rates.1, bytes);
        self.day.add(now, blocks, bytes);
    }
}

struct PeerEntry {
    counters: Counters,
    prefix: Option<IpPrefix>,
    connections: u32,
    throttled: u64,
    episode_start: u64,
    last_throttle: u64,
    last_seen: u64,
    /// The day window changed since it was last taken for the store.
    dirty: bool,
}

impl PeerEntry {
    fn new(now: u64, tier: &Tier, day: Option<DayWindow>) -> Self {
        Self {
            counters: Counters::new(now, tier.blocks, tier.bytes, day),
            prefix: None,
            connections: 0,
            throttled: 0,
            episode_start: 0,
            last_throttle: 0,
            last_seen: now,
            dirty: false,
        }
    }
}

struct PrefixEntry {
    counters: Counters,
    peers: u32,
    dirty: bool,
}

#[derive(Default)]
struct State {
    peers: HashMap<PeerId, PeerEntry>,
    prefixes: HashMap<IpPrefix, PrefixEntry>,
    banned: HashMap<PeerId, u64>,
    /// Windows of forgotten peers, waiting to be written.
    evicted: Vec<(CounterKey, DayWindow)>,
}

/// The quota gate.
pub struct Quotas {
    clock: Arc<dyn Clock>,
    policy: RwLock<Arc<Policy>>,
    state: Mutex<State>,
    source: Arc<dyn CounterSource>,
    metrics: Arc<Metrics>,
    disconnect: Option<mpsc::UnboundedSender<PeerId>>,
}

impl Quotas {
    pub fn new(
        policy: Policy,
        clock: Arc<dyn Clock>,
        source: Arc<dyn CounterSource>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            clock,
            policy: RwLock::new(Arc::new(policy)),
            state: Mutex::new(State::default()),
            source,
            metrics,
            disconnect: None,
        }
    }

    /// Where to send peers the gate wants disconnected.
    pub fn with_disconnects(mut self, tx: mpsc::UnboundedSender<PeerId>) -> Self {
        self.disconnect = Some(tx);
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Plain counters: after a panic elsewhere they are still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the policy; counters and connections are kept.
    pub fn set_policy(&self, policy: Policy) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
        // Lifting a ban is part of a reload: a peer moved off the deny list
        // or to a tier without disconnects may come back at once.
        let policy = self.policy();
        self.state().banned.retain(|p, _| !policy.is_allowed(p));
    }

    /// Whether a connection from `peer` must be refused (deny list or a
    /// running cool-down).
    pub fn is_refused(&self, peer: &PeerId) -> bool {
        let policy = self.policy();
        if policy.is_denied(peer) {
            return true;
        }
        let now = self.clock.now_ms();
        let mut state = self.state();
        match state.banned.get(peer) {
            Some(&until) if until > now => true,
            Some(_) => {
                state.banned.remove(peer);
                false
            }
            None => false,
        }
    }

    /// A connection to `peer` from `ip` was established. Reads the peer's
    /// and prefix's persisted windows when they are not in memory (a short
    /// store read; call from where that is acceptable).
    pub fn peer_connected(&self, peer: PeerId, ip: Option<IpAddr>) {
        let policy = self.policy();
        let now = self.clock.now_ms();
        let prefix =
            ip.map(|ip| IpPrefix::of(ip, policy.prefix.ipv4_bits, policy.prefix.ipv6_bits));
        let tier = &policy.tiers[policy.tier_of(&peer)];
        let need_peer = !self.state().peers.contains_key(&peer);
        let peer_day = need_peer
            .then(|| self.source.load(&CounterKey::Peer(peer)))
            .flatten();
        let need_prefix = prefix.is_some_and(|p| !self.state().prefixes.contains_key(&p));
        let prefix_day = match prefix {
            Some(p) if need_prefix => self.source.load(&CounterKey::Prefix(p)),
            _ => None,
        };
        let mut state = self.state();
        let entry = state
            .peers
            .entry(peer)
            .or_insert_with(|| PeerEntry::new(now, tier, peer_day));
        entry.connections += 1;
        entry.last_seen = now;
        let old = entry.prefix;
        if entry.connections == 1 || old.is_none() {
            entry.prefix = prefix;
        }
        let new = entry.prefix;
        if old != new {
            if let Some(o) = old
                && let Some(pe) = state.prefixes.get_mut(&o)
            {
                pe.peers = pe.peers.saturating_sub(1);
            }
            if let Some(p) = new {
                let budget = &policy.prefix;
                state
                    .prefixes
                    .entry(p)
                    .or_insert_with(|| PrefixEntry {
                        counters: Counters::new(now, budget.blocks, budget.bytes, prefix_day),
                        peers: 0,
                        dirty: false,
                    })
                    .peers += 1;
            }
        }
        let tracked = state.peers.len();
        if tracked > policy.max_tracked_peers {
            evict(&mut state, policy.max_tracked_peers);
        }
        self.metrics
            .quota_tracked_peers
            .set(state.peers.len() as i64);
    }

    /// A connection to `peer` closed.
    pub fn peer_disconnected(&self, peer: &PeerId) {
        let now = self.clock.now_ms();
        let mut state = self.state();
        if let Some(e) = state.peers.get_mut(peer) {
            e.connections = e.connections.saturating_sub(1);
            e.last_seen = now;
        }
    }

    /// Day windows changed since the last call, for the store (the
    /// windows of forgotten peers included).
    pub fn take_dirty(&self) -> Vec<(CounterKey, DayWindow)> {
        let now = self.clock.now_ms();
        let mut state = self.state();
        let mut out = std::mem::take(&mut state.evicted);
        for (peer, e) in state.peers.iter_mut().filter(|(_, e)| e.dirty) {
            e.dirty = false;
            e.counters.day.totals(now);
            out.push((CounterKey::Peer(*peer), e.counters.day.clone()));
        }
        for (prefix, e) in state.prefixes.iter_mut().filter(|(_, e)| e.dirty) {
            e.dirty = false;
            e.counters.day.totals(now);
            out.push((CounterKey::Prefix(*prefix), e.counters.day.clone()));
        }
        out
    }

    /// Hands windows back after a failed store write, for the next flush.
    pub fn requeue(&self, windows: Vec<(CounterKey, DayWindow)>) {
        self.state().evicted.extend(windows);
    }

    /// Forgets idle peers with nothing counted, unused prefixes and expired
    /// bans. Returns how many peers were forgotten.
    pub fn collect_garbage(&self, idle_ms: u64) -> usize {
        let now = self.clock.now_ms();
        let mut state = self.state();
        let before = state.peers.len();
        let mut gone_prefixes = Vec::new();
        state.peers.retain(|_, e| {
            let keep = e.connections > 0
                || now.saturating_sub(e.last_seen) < idle_ms
                || !e.counters.day.is_empty(now);
            if !keep && let Some(p) = e.prefix {
                gone_prefixes.push(p);
            }
            keep
        });
        for p in gone_prefixes {
            if let Some(pe) = state.prefixes.get_mut(&p) {
                pe.peers = pe.peers.saturating_sub(1);
            }
        }
        state
            .prefixes
            .retain(|_, pe| pe.peers > 0 || !pe.counters.day.is_empty(now));
        state.banned.retain(|_, until| *until > now);
        let forgotten = before - state.peers.len();
        self.metrics
            .quota_tracked_peers
            .set(state.peers.len() as i64);
        forgotten
    }

    /// Tracked peers, most bytes today first, at most `limit`.
    pub fn report(&self, limit: usize) -> Vec<PeerReport> {
        let policy = self.policy();
        let now = self.clock.now_ms();
        let mut state = self.state();
        let banned = state.banned.clone();
        let mut rows: Vec<PeerReport> = state
            .peers
            .iter_mut()
            .map(|(peer, e)| {
                let tier = &policy.tiers[policy.tier_of(peer)];
                let (day_blocks, day_bytes) = e.counters.day.totals(now);
                let remaining =
                    |limit: u64, used: u64| (limit > 0).then(|| limit.saturating_sub(used));
                let available =
                    |b: &mut TokenBucket, r: Rate| (!r.is_unlimited()).then(|| b.available(r, now));
                PeerReport {
                    peer: peer.to_string(),
                    tier: tier.name.to_string(),
                    allowlisted: policy.is_allowed(peer),
                    prefix: e.prefix.map(|p| p.to_string()),
                    connections: e.connections,
                    day_blocks,
                    day_bytes,
                    remaining_day_blocks: remaining(tier.blocks_per_day, day_blocks),
                    remaining_day_bytes: remaining(tier.bytes_per_day, day_bytes),
                    available_blocks: available(&mut e.counters.blocks, tier.blocks),
                    available_bytes: available(&mut e.counters.bytes, tier.bytes),
                    throttled: e.throttled,
                    banned_for_ms: banned.get(peer).filter(|u| **u > now).map(|u| u - now),
                }
            })
            .collect();
        rows.sort_by(|a, b| b.day_bytes.cmp(&a.day_bytes).then(a.peer.cmp(&b.peer)));
        rows.truncate(limit);
        rows
    }

    fn throttle(
        &self,
        state: &mut State,
        peer: &PeerId,
        tier: &Tier,
        now: u64,
        reason: &'static str,
    ) -> Action {
        let Some(e) = state.peers.get_mut(peer) else {
            return tier.action;
        };
        e.throttled += 1;
        if now.saturating_sub(e.last_throttle) > EPISODE_GAP_MS {
            e.episode_start = now;
        }
        e.last_throttle = now;
        let mut action = tier.action;
        if let Some(after) = tier.escalate_after
            && now.saturating_sub(e.episode_start) >= after.as_millis() as u64
        {
            action = Action::Disconnect;
        }
        if action == Action::Disconnect {
            e.episode_start = now;
            state
                .banned
                .insert(*peer, now.saturating_add(tier.cooldown.as_millis() as u64));
            if let Some(tx) = &self.disconnect {
                let _ = tx.send(*peer);
            }
        }
        self.metrics
            .quota_throttled
            .get_or_create(&ThrottleLabel {
                tier: tier.name.to_string(),
                action: action.as_str(),
                reason,
            })
            .inc();
        tracing::debug!(%peer, tier = %tier.name, reason, action = action.as_str(), "want throttled");
        action
    }
}

/// Forgets the least recently seen disconnected peers until an eighth of
/// the cap is free; their windows are queued for the store.
fn evict(state: &mut State, cap: usize) {
    let target = cap - cap / 8;
    let mut idle: Vec<(u64, PeerId)> = state
        .peers
        .iter()
        .filter(|(_, e)| e.connections == 0)
        .map(|(p, e)| (e.last_seen, *p))
        .collect();
    idle.sort_unstable();
    for (_, peer) in idle
        .into_iter()
        .take(state.peers.len().saturating_sub(target))
    {
        if let Some(e) = state.peers.remove(&peer) {
            state.evicted.push((CounterKey::Peer(peer), e.counters.day));
            if let Some(p) = e.prefix
                && let Some(pe) = state.prefixes.get_mut(&p)
            {
                pe.peers = pe.peers.saturating_sub(1);
            }
        }
    }
}

impl QuotaGate for Quotas {
    fn check_inflight(&self, peer: &PeerId, inflight_bytes: u64) -> Option<Admission> {
        let policy = self.policy();
        if policy.is_allowed(peer) {
            return None;
        }
        let tier = &policy.tiers[policy.tier_of(peer)];
        if inflight_bytes < tier.max_inflight_bytes {
            return None;
        }
        let now = self.clock.now_ms();
        let mut state = self.state();
        Some(
            match self.throttle(&mut state, peer, tier, now, "inflight_bytes") {
                Action::DontHave => Admission::DontHave,
                Action::Drop | Action::Disconnect => Admission::Drop,
            },
        )
    }

    fn limits(&self, peer: &PeerId) -> Option<PeerLimits> {
        let policy = self.policy();
        if policy.is_allowed(peer) {
            return None;
        }
        let tier = &policy.tiers[policy.tier_of(peer)];
        Some(PeerLimits {
            max_wantlist_entries: tier.max_wantlist_entries,
            max_inbound_streams: tier.max_inbound_streams,
        })
    }

    fn admit(&self, peer: &PeerId, response: Response, size: u32) -> Admission {
        let policy = self.policy();
        if policy.is_allowed(peer) {
            return Admission::Serve;
        }
        let tier = &policy.tiers[policy.tier_of(peer)];
        let (blocks, bytes) = match response {
            Response::Block => (1, u64::from(size)),
            Response::Have | Response::DontHave => (1, 0),
        };
        let now = self.clock.now_ms();
        let mut state = self.state();
        let state = &mut *state;
        let entry = state
            .peers
            .entry(*peer)
            .or_insert_with(|| PeerEntry::new(now, tier, None));
        entry.last_seen = now;
        let prefix_key = entry.prefix;
        let peer_rates = (tier.blocks, tier.bytes);
        let mut reason = entry.counters.over(
            now,
            peer_rates,
            (tier.blocks_per_day, tier.bytes_per_day),
            blocks,
            bytes,
            ["day_blocks", "day_bytes", "rate_blocks", "rate_bytes"],
        );
        let pb = &policy.prefix;
        let prefix_rates = (pb.blocks, pb.bytes);
        if reason.is_none()
            && let Some(p) = prefix_key
            && let Some(pe) = state.prefixes.get_mut(&p)
        {
            reason = pe.counters.over(
                now,
                prefix_rates,
                (pb.blocks_per_day, pb.bytes_per_day),
                blocks,
                bytes,
                [
                    "prefix_day_blocks",
                    "prefix_day_bytes",
                    "prefix_rate_blocks",
                    "prefix_rate_bytes",
                ],
            );
        }
        if let Some(reason) = reason {
            return match self.throttle(state, peer, tier, now, reason) {
                Action::DontHave => Admission::DontHave,
                Action::Drop | Action::Disconnect => Admission::Drop,
            };
        }
        if let Some(e) = state.peers.get_mut(peer) {
            e.counters.charge(now, peer_rates, blocks, bytes);
            e.dirty = true;
        }
        if let Some(p) = prefix_key
            && let Some(pe) = state.prefixes.get_mut(&p)
        {
            pe.counters.charge(now, prefix_rates, blocks, bytes);
            pe.dirty = true;
        }
        Admission::Serve
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;

impl crate::p2p::ConnectionPolicy for Quotas {
    fn is_refused(&self, peer: &PeerId) -> bool {
        Quotas::is_refused(self, peer)
    }

    fn connected(&self, peer: PeerId, ip: Option<IpAddr>) {
        self.peer_connected(peer, ip);
    }

    fn disconnected(&self, peer: &PeerId) {
        self.peer_disconnected(peer);
    }
}
