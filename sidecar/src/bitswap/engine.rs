//! The Bitswap server's decision engine: which peer is served next, and with
//! what.
//!
//! Owns: one [`Ledger`] per peer, fair scheduling across peers (deficit round
//! robin by bytes), the one-batch-in-flight-per-peer rule, and the
//! [`Counters`] behind the Bitswap metrics.
//!
//! Called by: the async glue (`bitswap/server.rs`), which keeps the engine
//! behind a `std::sync::Mutex` and never holds the lock across an await:
//! every method is a short, synchronous state change.
//!
//! Must never: do I/O, read a clock, read blocks, or decide quotas. The glue
//! looks up block sizes before [`Engine::receive`], asks the quota gate
//! between [`Engine::next_batch`] and reading a block, and reports what it
//! sent through [`Engine::batch_done`].
//!
//! # How the glue drives it
//!
//! 1. Inbound frame → `req = wire::decode_request(&body, max_cid_bytes)?`;
//!    `sizes = block_source.block_sizes(&req.want_hashes())?` (one
//!    `Option<u32>` per want, in order); `engine.receive(peer, &req, &sizes)`.
//!    When the returned `queued > 0`, wake a worker.
//! 2. Each of the `workers` loops: `engine.next_batch()` → `Some(batch)` or
//!    sleep until woken. Start a `ResponseBuilder::new(protocol)` with the
//!    protocol the peer negotiated. For each `task` in `batch.tasks`: ask the quota gate
//!    with `(batch.peer, task.cid, task.action, task.block_size)`; if allowed,
//!    [`Action::SendBlock`] reads the block and `add_block`s it,
//!    [`Action::SendHave`] / [`Action::SendDontHave`] `add_presence`. If
//!    refused (or the block vanished): add a DONT_HAVE when
//!    `task.send_dont_have`, and report [`Outcome::SentDontHave`], else
//!    [`Outcome::Dropped`]. `builder.set_pending_bytes(batch.pending_bytes)`,
//!    `finish()`, write the frames on a *new* outbound stream under
//!    `send_timeout` (no frames: open no stream). The spec allows a
//!    DONT_HAVE for a block we have but will not give.
//! 3. `engine.batch_done(&batch.peer, batch.id, &outcomes)`: [`Outcome::Sent`]
//!    only for what was written; a failed write is [`Outcome::Dropped`] for
//!    every task. Until then the peer gets no other batch, so one slow peer
//!    holds at most one worker.
//! 4. Connection closed (last one to the peer) → `engine.peer_disconnected(&peer)`.
//! 5. New blocks indexed → `engine.blocks_available(&sizes)` (optional).
//!
//! # Bounds
//!
//! Per peer: at most `max_wantlist_entries` wants, and as many queued and
//! in-flight tasks (every task belongs to a want), so at most
//! `max_wantlist_entries × Ledger::MAX_BYTES_PER_ENTRY` (1.5 MiB at the
//! default 1024). Peers: one ledger per peer with a non-empty wantlist or a
//! batch in flight; the number of peers is bounded by the libp2p connection
//! limits. A batch is at most one quantum of bytes plus one task (a peer's
//! turn always yields its first task; the overdraft is repaid on later turns).

use std::collections::{HashMap, VecDeque};

use cid::Cid;
use libp2p::PeerId;

use super::ledger::{Ledger, LedgerConfig, Outcome, Task};
use super::wire::Request;
use crate::blocks::Mh;
use crate::config::BitswapConfig;

/// Default bytes a peer may be sent per scheduling turn: 1 MiB (the sidecar
/// config default `bitswap.peer_quantum_bytes`; half a largest block, so a
/// 2 MiB block costs a peer two turns).
pub const DEFAULT_PEER_QUANTUM_BYTES: u64 = 1024 * 1024;

/// The engine's limits and policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Most wantlist entries kept per peer; new CIDs past it are ignored.
    /// Defaults to 1024 (boxo's `MaxQueuedWantlistEntriesPerPeer`).
    pub max_wantlist_entries: usize,
    /// Want-haves for held blocks up to this size get the block itself.
    /// Defaults to 1024 bytes (boxo's `maxBlockSizeReplaceHasWithBlock`).
    pub max_have_block_size: u32,
    /// Held blocks larger than this are treated as not held. Defaults to
    /// 2 MiB, the largest block Bitswap carries.
    pub max_block_size: u32,
    /// Deficit-round-robin quantum: bytes credited to a peer per turn. Must
    /// be positive. Defaults to 1 MiB.
    pub peer_quantum_bytes: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_wantlist_entries: super::ledger::DEFAULT_MAX_WANTLIST_ENTRIES,
            max_have_block_size: super::ledger::DEFAULT_MAX_HAVE_BLOCK_SIZE,
            max_block_size: super::response::MAX_BLOCK_SIZE as u32,
            peer_quantum_bytes: DEFAULT_PEER_QUANTUM_BYTES,
        }
    }
}

impl From<&BitswapConfig> for EngineConfig {
    fn from(c: &BitswapConfig) -> Self {
        Self {
            max_wantlist_entries: c.max_wantlist_entries,
            max_have_block_size: c.max_have_block_size,
            max_block_size: c.max_block_size,
            peer_quantum_bytes: c.peer_quantum_bytes,
        }
    }
}

/// Identifies a batch, so a late [`Engine::batch_done`] for a batch of a
/// peer that disconnected and came back is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchId(u64);

/// Work for one peer: answer these tasks in one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub id: BatchId,
    pub peer: PeerId,
    /// Highest priority first.
    pub tasks: Vec<Task>,
    /// Block bytes still queued for this peer after this batch: the value
    /// for the response's `pendingBytes`.
    pub pending_bytes: u64,
}

/// What [`Engine::receive`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// Tasks queued; wake a worker when positive.
    pub queued: u64,
    /// Wants ignored because the peer's wantlist was full.
    pub over_cap: u64,
}

/// A snapshot of the engine's counters (monotonic unless marked gauge), for
/// the glue to export as Prometheus metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages passed to `receive`.
    pub messages: u64,
    /// Of those, with `full` set.
    pub full_wantlists: u64,
    pub wants_block: u64,
    pub wants_have: u64,
    pub cancels: u64,
    /// Entries ignored: CID bytes unparsable.
    pub ignored_bad_cid: u64,
    /// Entries ignored: CID longer than `max_cid_bytes`.
    pub ignored_cid_too_long: u64,
    /// Entries ignored: identity-hash CID.
    pub ignored_identity_hash: u64,
    /// Entries ignored: want type neither Block nor Have.
    pub ignored_unknown_want_type: u64,
    /// Entries ignored: the peer's wantlist was at its cap.
    pub ignored_wantlist_full: u64,
    /// Wants removed because a full wantlist left them out.
    pub dropped_by_full: u64,
    pub batches: u64,
    pub blocks_sent: u64,
    pub block_bytes_sent: u64,
    pub haves_sent: u64,
    /// All DONT_HAVEs sent, planned or instead of a block/HAVE.
    pub dont_haves_sent: u64,
    /// DONT_HAVEs sent instead of a block or HAVE (quota, vanished block).
    pub dont_haves_instead: u64,
    /// Tasks handed out but reported dropped (or not reported).
    pub tasks_dropped: u64,
    /// Gauge: peers with state.
    pub peers: u64,
    /// Gauge: wantlist entries over all peers.
    pub wantlist_entries: u64,
    /// Gauge: queued tasks over all peers.
    pub queued_tasks: u64,
}

#[derive(Debug)]
struct PeerState {
    ledger: Ledger,
    /// Bytes this peer may still be sent before yielding its turn; negative
    /// after an overdraft (a first task larger than the credit).
    deficit: i64,
    in_flight: Option<BatchId>,
    /// Whether the peer is in `Engine::ring` (possibly stale, see next_batch).
    in_ring: bool,
}

/// The fair multi-peer Bitswap engine. See the module docs for the call order.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    ledger_config: LedgerConfig,
    peers: HashMap<PeerId, PeerState>,
    /// Peers that may have work, in round-robin order. A peer appears at
    /// most once (`PeerState::in_ring`); entries whose peer lost its work
    /// (cancels) are dropped lazily by `next_batch`.
    ring: VecDeque<PeerId>,
    next_batch_id: u64,
    counters: Counters,
}

impl Engine {
    /// An engine with no peers. A zero `peer_quantum_bytes` is raised to 1.
    pub fn new(config: EngineConfig) -> Self {
        let config = EngineConfig {
            peer_quantum_bytes: config.peer_quantum_bytes.max(1),
            ..config
        };
        Self {
            ledger_config: LedgerConfig {
                max_wantlist_entries: config.max_wantlist_entries,
                max_have_block_size: config.max_have_block_size,
                max_block_size: config.max_block_size,
            },
            config,
            peers: HashMap::new(),
            ring: VecDeque::new(),
            next_batch_id: 0,
            counters: Counters::default(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Applies one decoded message from `peer`. `sizes[i]` is the size of
    /// the block `request.wants[i]` names, `None` when not held (a shorter
    /// slice counts the rest as not held). See [`Ledger::receive`] for the
    /// wantlist rules.
    pub fn receive(&mut self, peer: PeerId, request: &Request, sizes: &[Option<u32>]) -> Received {
        self.receive_capped(peer, request, sizes, usize::MAX)
    }

    /// [`Engine::receive`] with a per-peer wantlist cap (a quota tier's),
    /// applied when lower than the engine's.
    pub fn receive_capped(
        &mut self,
        peer: PeerId,
        request: &Request,
        sizes: &[Option<u32>],
        max_wantlist_entries: usize,
    ) -> Received {
        let c = &mut self.counters;
        c.messages += 1;
        c.full_wantlists += u64::from(request.full);
        c.ignored_bad_cid += u64::from(request.rejects.bad_cid);
        c.ignored_cid_too_long += u64::from(request.rejects.cid_too_long);
        c.ignored_identity_hash += u64::from(request.rejects.identity_hash);
        c.ignored_unknown_want_type += u64::from(request.rejects.unknown_want_type);

        let ledger_config = self.ledger_config;
        let state = self.peers.entry(peer).or_insert_with(|| PeerState {
            ledger: Ledger::new(ledger_config),
            deficit: 0,
            in_flight: None,
            in_ring: false,
        });
        state
            .ledger
            .set_max_wantlist_entries(max_wantlist_entries.min(ledger_config.max_wantlist_entries));
        let stats = state.ledger.receive(request, sizes);
        let c = &mut self.counters;
        c.wants_block += stats.wants_block;
        c.wants_have += stats.wants_have;
        c.cancels += stats.cancels;
        c.ignored_wantlist_full += stats.over_cap;
        c.dropped_by_full += stats.dropped_by_full;
        self.settle(peer);
        Received {
            queued: stats.queued,
            over_cap: stats.over_cap,
        }
    }

    /// Removes from `request` the wants that `peer`'s wantlist, capped at
    /// `max_wantlist_entries` (or the engine's cap, if lower), has no room
    /// for, and counts them as ignored. Call before looking up block sizes,
    /// so that a peer flooding past its cap costs no index lookups. Returns
    /// the number removed.
    pub fn trim_over_cap(
        &mut self,
        peer: &PeerId,
        request: &mut Request,
        max_wantlist_entries: usize,
    ) -> u64 {
        let cap = max_wantlist_entries.min(self.ledger_config.max_wantlist_entries);
        let (blocks, haves) = match self.peers.get(peer) {
            Some(state) => state.ledger.trim_over_cap(request, cap),
            None => Ledger::new(self.ledger_config).trim_over_cap(request, cap),
        };
        let c = &mut self.counters;
        c.wants_block += blocks;
        c.wants_have += haves;
        c.ignored_wantlist_full += blocks + haves;
        blocks + haves
    }

    /// Queues answers for wants of blocks that just became available
    /// (multihash → size), for every peer. Returns the tasks queued. Cost:
    /// one lookup per wantlist entry of every peer; call it once per batch
    /// of new blocks (e.g. per indexed CAR), not per block.
    pub fn blocks_available(&mut self, sizes: &HashMap<Mh, u32>) -> u64 {
        let mut queued = 0;
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in peers {
            if let Some(state) = self.peers.get_mut(&peer) {
                queued += state.ledger.block_available(sizes);
            }
            self.settle(peer);
        }
        queued
    }

    /// The next peer's batch under deficit round robin, or `None` when no
    /// peer without a batch in flight has queued tasks.
    ///
    /// Each turn credits the peer `peer_quantum_bytes`; it then gets its
    /// highest-priority tasks while their cost ([`Task::cost`]) fits the
    /// credit — and always at least one task. Leftover credit carries over
    /// while the peer still has tasks; an overdraft is repaid by skipping
    /// turns. The peer then has a batch in flight and is skipped until
    /// [`Engine::batch_done`].
    pub fn next_batch(&mut self) -> Option<Batch> {
        let quantum = i64::try_from(self.config.peer_quantum_bytes).unwrap_or(i64::MAX);
        loop {
            for _ in 0..self.ring.len() {
                let peer = self.ring.pop_front()?;
                let Some(state) = self.peers.get_mut(&peer) else {
                    continue;
                };
                if state.in_flight.is_some() || state.ledger.queued_len() == 0 {
                    state.in_ring = false;
                    continue;
                }
                state.deficit = state.deficit.saturating_add(quantum);
                if state.deficit > 0 {
                    state.in_ring = false;
                    return Some(self.serve(peer));
                }
                self.ring.push_back(peer);
            }
            if self.ring.is_empty() {
                return None;
            }
            // A whole pass and every ready peer is still repaying an
            // overdraft: skip ahead the rounds until the first one can be
            // served, instead of looping round by round.
            let rounds = self
                .ring
                .iter()
                .filter_map(|p| self.peers.get(p))
                .map(|s| s.deficit.saturating_neg().max(0) / quantum)
                .min()
                .unwrap_or(0);
            let credit = rounds.saturating_mul(quantum);
            for p in &self.ring {
                if let Some(s) = self.peers.get_mut(p) {
                    s.deficit = s.deficit.saturating_add(credit);
                }
            }
        }
    }

    fn serve(&mut self, peer: PeerId) -> Batch {
        let id = BatchId(self.next_batch_id);
        self.next_batch_id += 1;
        self.counters.batches += 1;
        let mut tasks = Vec::new();
        let mut pending_bytes = 0;
        if let Some(state) = self.peers.get_mut(&peer) {
            while let Some(next) = state.ledger.peek_task() {
                let cost = i64::try_from(next.cost()).unwrap_or(i64::MAX);
                if !tasks.is_empty() && cost > state.deficit {
                    break;
                }
                let Some(task) = state.ledger.pop_task() else {
                    break;
                };
                state.deficit = state.deficit.saturating_sub(cost);
                tasks.push(task);
            }
            if state.ledger.queued_len() == 0 {
                // An idle peer keeps no credit (it would burst later), but
                // keeps its debt.
                state.deficit = state.deficit.min(0);
            }
            state.in_flight = Some(id);
            pending_bytes = state.ledger.pending_bytes();
        }
        Batch {
            id,
            peer,
            tasks,
            pending_bytes,
        }
    }

    /// Reports what happened to a batch's tasks (any task not listed counts
    /// as [`Outcome::Dropped`]) and makes the peer schedulable again. A
    /// report for a batch that is not the peer's current one (the peer
    /// disconnected meanwhile) is ignored.
    pub fn batch_done(&mut self, peer: &PeerId, id: BatchId, outcomes: &[(Cid, Outcome)]) {
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        if state.in_flight != Some(id) {
            return;
        }
        state.in_flight = None;
        let stats = state.ledger.end_flight(outcomes);
        let c = &mut self.counters;
        c.blocks_sent += stats.blocks_sent;
        c.block_bytes_sent += stats.block_bytes_sent;
        c.haves_sent += stats.haves_sent;
        c.dont_haves_sent += stats.dont_haves_sent;
        c.dont_haves_instead += stats.dont_haves_instead;
        c.tasks_dropped += stats.dropped;
        self.settle(*peer);
    }

    /// Block bytes queued for `peer` (not counting a batch in flight).
    pub fn pending_bytes(&self, peer: &PeerId) -> u64 {
        self.peers.get(peer).map_or(0, |s| s.ledger.pending_bytes())
    }

    /// Entries in `peer`'s wantlist.
    pub fn wantlist_len(&self, peer: &PeerId) -> usize {
        self.peers.get(peer).map_or(0, |s| s.ledger.wantlist_len())
    }

    /// Forgets everything about `peer`: wantlist, queue, credit. A batch
    /// still in flight is reported to nobody (its `batch_done` is ignored).
    pub fn peer_disconnected(&mut self, peer: &PeerId) {
        if self.peers.remove(peer).is_some() {
            self.ring.retain(|p| p != peer);
        }
    }

    /// Whether some peer could be given a batch now.
    pub fn has_work(&self) -> bool {
        self.ring.iter().any(|p| {
            self.peers
                .get(p)
                .is_some_and(|s| s.in_flight.is_none() && s.ledger.queued_len() > 0)
        })
    }

    /// A snapshot of the counters. Gauges cost one pass over the peers.
    pub fn counters(&self) -> Counters {
        let mut c = self.counters;
        c.peers = self.peers.len() as u64;
        c.wantlist_entries = self
            .peers
            .values()
            .map(|s| s.ledger.wantlist_len() as u64)
            .sum();
        c.queued_tasks = self
            .peers
            .values()
            .map(|s| s.ledger.queued_len() as u64)
            .sum();
        c
    }

    /// After a change to `peer`: put it in the ring if it has work, or
    /// forget it if it holds nothing.
    fn settle(&mut self, peer: PeerId) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        if state.in_flight.is_none() && state.ledger.is_empty() && state.deficit >= 0 {
            self.peers.remove(&peer);
            return;
        }
        if state.in_flight.is_none() && state.ledger.queued_len() > 0 && !state.in_ring {
            state.in_ring = true;
            self.ring.push_back(peer);
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
