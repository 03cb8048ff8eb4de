//! One peer's Bitswap state: its wantlist and the responses queued for it.
//!
//! Owns: the per-peer wantlist (CID → [`Want`], capped), the decision of what
//! answers a want given the block size the glue looked up ([`Action`]), the
//! peer's task queue (highest priority first, then arrival; one task per
//! CID), and what the peer has in flight.
//!
//! Called by: [`super::engine::Engine`] only, under the engine's lock; the
//! engine owns one `Ledger` per peer and decides *when* a peer is served.
//!
//! Must never: do I/O, read a clock, or grow past its caps. Memory is bounded
//! by `max_wantlist_entries`: every queued or in-flight task belongs to a want
//! in the wantlist, so a ledger holds at most that many wants, that many
//! queued tasks and that many in-flight tasks (see [`Ledger::MAX_BYTES_PER_ENTRY`]).

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};

use cid::Cid;

use super::wire::{Request, WantKind};
use crate::blocks::Mh;

/// Default cap on wantlist entries per peer: boxo's
/// `MaxQueuedWantlistEntriesPerPeer` (1024), also the sidecar config default.
pub const DEFAULT_MAX_WANTLIST_ENTRIES: usize = 1024;
/// Default largest block sent in answer to a want-have instead of a HAVE:
/// boxo's `maxBlockSizeReplaceHasWithBlock` (1024 bytes).
pub const DEFAULT_MAX_HAVE_BLOCK_SIZE: u32 = 1024;
/// Bytes a HAVE/DONT_HAVE adds to a message on top of the CID: field tags,
/// lengths and the type (boxo's `BlockPresenceSize` counts the same parts).
pub const PRESENCE_OVERHEAD: u64 = 4;
/// Bytes a payload block adds on top of its data: tags, lengths, a prefix.
pub const BLOCK_OVERHEAD: u64 = 16;

/// Per-peer limits and the answer policy. Built by the engine from
/// [`super::EngineConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerConfig {
    /// Most wants kept; new CIDs past it are ignored (and counted). Updates
    /// of CIDs already wanted are always applied.
    pub max_wantlist_entries: usize,
    /// A want-have for a held block of at most this many bytes is answered
    /// with the block itself (spec 1.2.0: "MAY instead respond with the block").
    pub max_have_block_size: u32,
    /// Held blocks larger than this are treated as not held.
    pub max_block_size: u32,
}

/// The current want for one CID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub priority: i32,
    /// Block if any want for this CID asked for the block (a want-block
    /// supersedes a want-have; it is never downgraded by a later want-have).
    pub kind: WantKind,
    pub send_dont_have: bool,
}

/// What the glue should send for a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Nothing held: a DONT_HAVE (only queued when the peer asked for them).
    SendDontHave,
    /// Held, want-have, block above `max_have_block_size`: a HAVE.
    SendHave,
    /// Held: the block (want-block, or want-have for a small block).
    SendBlock,
}

/// One response to prepare: what the quota gate and the block read need.
/// The peer is on the [`super::Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub cid: Cid,
    /// What the peer asked for.
    pub want: WantKind,
    /// What to send.
    pub action: Action,
    /// The block size the glue reported (`None`: not held).
    pub block_size: Option<u32>,
    pub priority: i32,
    /// Whether the peer accepts a DONT_HAVE if the glue ends up not sending
    /// the block or HAVE (quota refusal, block vanished).
    pub send_dont_have: bool,
}

impl Task {
    /// Bytes this task adds to a response; what fair scheduling charges.
    pub fn cost(&self) -> u64 {
        match (self.action, self.block_size) {
            (Action::SendBlock, Some(size)) => u64::from(size) + BLOCK_OVERHEAD,
            _ => self.cid.encoded_len() as u64 + PRESENCE_OVERHEAD,
        }
    }
}

/// What the glue did with a task; reported through
/// [`super::Engine::batch_done`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The planned block / HAVE / DONT_HAVE was written to the peer.
    Sent,
    /// The glue sent a DONT_HAVE instead (quota refused, block vanished
    /// between size lookup and read). The want is kept.
    SentDontHave,
    /// Nothing was sent (quota refused without `send_dont_have`, protocol
    /// cannot carry it, write failed). The want is kept.
    Dropped,
}

/// What one [`Ledger::receive`] did, for counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveStats {
    pub wants_block: u64,
    pub wants_have: u64,
    pub cancels: u64,
    /// Wants ignored because the wantlist was at its cap.
    pub over_cap: u64,
    /// Wants removed because a `full` wantlist did not list them.
    pub dropped_by_full: u64,
    /// Tasks queued (new or replacing a queued one).
    pub queued: u64,
}

/// What one [`Ledger::end_flight`] did, for counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlightStats {
    pub blocks_sent: u64,
    pub block_bytes_sent: u64,
    pub haves_sent: u64,
    pub dont_haves_sent: u64,
    /// DONT_HAVEs the glue sent instead of a block or HAVE.
    pub dont_haves_instead: u64,
    /// Tasks reported dropped, or not reported at all.
    pub dropped: u64,
}

/// One peer's wantlist and task queue.
#[derive(Debug)]
pub struct Ledger {
    config: LedgerConfig,
    wants: HashMap<Cid, Want>,
    queue: TaskQueue,
    /// Tasks handed out and not yet reported back: what was planned and
    /// the block size.
    in_flight: HashMap<Cid, (Action, Option<u32>)>,
}

impl Ledger {
    /// Upper bound of heap bytes per wantlist entry, with its queued or
    /// in-flight task: four `Cid`s of ~72 bytes in hash maps and a B-tree,
    /// each slot counted twice for their slack (a unit test checks the
    /// arithmetic). A ledger at the default cap of 1024 entries stays below
    /// 1.5 MiB; typical peers with a few dozen wants use a few tens of KiB.
    pub const MAX_BYTES_PER_ENTRY: usize = 1536;

    /// An empty ledger.
    pub fn new(config: LedgerConfig) -> Self {
        Self {
            config,
            wants: HashMap::new(),
            queue: TaskQueue::default(),
            in_flight: HashMap::new(),
        }
    }

    /// Lowers (or restores) the wantlist cap for this peer, callers pass the smaller of
    /// the engine's cap and the peer's own.
    /// Wants already held stay; new CIDs past the cap are ignored.
    pub fn set_max_wantlist_entries(&mut self, n: usize) {
        self.config.max_wantlist_entries = n;
    }

    /// Applies a request: `full` replacement, then each want in order, then
    /// cancels. `sizes[i]` is the held size of `request.wants[i]`'s block
    /// (`None`: not held; a missing index counts as not held).
    ///
    /// A want for a block not held, without `send_dont_have`, stays in the
    /// wantlist (as in boxo) without a task; [`Ledger::block_available`]
    /// queues it if the block shows up later. It leaves when cancelled,
    /// replaced by a `full` list, or the peer disconnects.
    pub fn receive(&mut self, request: &Request, sizes: &[Option<u32>]) -> ReceiveStats {
        let mut stats = ReceiveStats::default();
        if request.full {
            let keep: HashSet<&Cid> = request.wants.iter().map(|w| &w.cid).collect();
            let gone: Vec<Cid> = self
                .wants
                .keys()
                .filter(|c| !keep.contains(c))
                .copied()
                .collect();
            for cid in gone {
                self.wants.remove(&cid);
                self.queue.remove(&cid);
                stats.dropped_by_full += 1;
            }
        }
        for (i, w) in request.wants.iter().enumerate() {
            match w.kind {
                WantKind::Block => stats.wants_block += 1,
                WantKind::Have => stats.wants_have += 1,
            }
            let kind = match self.wants.get(&w.cid) {
                None if self.wants.len() >= self.config.max_wantlist_entries => {
                    stats.over_cap += 1;
                    continue;
                }
                Some(old) if old.kind == WantKind::Block => WantKind::Block,
                _ => w.kind,
            };
            let want = Want {
                priority: w.priority,
                kind,
                send_dont_have: w.send_dont_have,
            };
            self.wants.insert(w.cid, want);
            let size = sizes.get(i).copied().flatten();
            if self.plan(w.cid, want, size) {
                stats.queued += 1;
            }
        }
        for cid in &request.cancels {
            stats.cancels += 1;
            self.wants.remove(cid);
            self.queue.remove(cid);
        }
        stats
    }

    /// Removes from `request` the wants [`Ledger::receive`] would ignore
    /// because the wantlist (capped at `cap`) is full, so that the glue does
    /// not look up blocks it will never answer for. Returns how many block
    /// and have wants it removed. Run on the state just before `receive`;
    /// if another message changes the wantlist in between, `receive` still
    /// enforces the cap itself.
    pub fn trim_over_cap(&self, request: &mut Request, cap: usize) -> (u64, u64) {
        let mut len = if request.full {
            let listed: HashSet<&Cid> = request.wants.iter().map(|w| &w.cid).collect();
            listed.iter().filter(|c| self.wants.contains_key(c)).count()
        } else {
            self.wants.len()
        };
        if len + request.wants.len() <= cap {
            return (0, 0); // the common case: everything fits
        }
        let mut added: HashSet<Cid> = HashSet::new();
        let (mut blocks, mut haves) = (0, 0);
        request.wants.retain(|w| {
            if self.wants.contains_key(&w.cid) || added.contains(&w.cid) {
                return true;
            }
            if len < cap {
                len += 1;
                added.insert(w.cid);
                return true;
            }
            match w.kind {
                WantKind::Block => blocks += 1,
                WantKind::Have => haves += 1,
            }
            false
        });
        (blocks, haves)
    }

    /// Queues tasks for wanted blocks that became available (e.g. a CAR was
    /// just indexed): `sizes` maps multihash → block size. Returns the number
    /// of tasks queued. Cost: one map lookup per wantlist entry.
    pub fn block_available(&mut self, sizes: &HashMap<Mh, u32>) -> u64 {
        let mut hits: Vec<(Cid, Want, u32)> = self
            .wants
            .iter()
            .filter_map(|(cid, want)| sizes.get(cid.hash()).map(|s| (*cid, *want, *s)))
            .collect();
        // Map order is arbitrary: queue by priority, then CID, so that the
        // result does not depend on hashing.
        hits.sort_by_key(|(cid, want, _)| (Reverse(want.priority), *cid));
        let mut queued = 0;
        for (cid, want, size) in hits {
            // Only upgrades: an already queued better answer stays.
            let better = match self.queue.get(&cid) {
                Some(t) => {
                    t.action
                        < self
                            .decide(want, Some(size))
                            .unwrap_or(Action::SendDontHave)
                }
                None => true,
            };
            if better && self.plan(cid, want, Some(size)) {
                queued += 1;
            }
        }
        queued
    }

    /// The action answering `want` when the block has `size` (None: not
    /// held), or `None` when nothing should be sent.
    fn decide(&self, want: Want, size: Option<u32>) -> Option<Action> {
        let held = size.filter(|s| *s <= self.config.max_block_size);
        match (want.kind, held) {
            (WantKind::Block, Some(_)) => Some(Action::SendBlock),
            (WantKind::Have, Some(s)) if s <= self.config.max_have_block_size => {
                Some(Action::SendBlock)
            }
            (WantKind::Have, Some(_)) => Some(Action::SendHave),
            (_, None) if want.send_dont_have => Some(Action::SendDontHave),
            (_, None) => None,
        }
    }

    /// Queues (or replaces, or removes) the task for `cid`. Returns whether
    /// a task was queued.
    fn plan(&mut self, cid: Cid, want: Want, size: Option<u32>) -> bool {
        let Some(action) = self.decide(want, size) else {
            self.queue.remove(&cid);
            return false;
        };
        // The same or a better answer is already on its way.
        if self.in_flight.get(&cid).is_some_and(|(a, _)| *a >= action) {
            self.queue.remove(&cid);
            return false;
        }
        self.queue.push(Task {
            cid,
            want: want.kind,
            action,
            block_size: size,
            priority: want.priority,
            send_dont_have: want.send_dont_have,
        });
        true
    }

    /// The task that [`Ledger::pop_task`] would return.
    pub fn peek_task(&self) -> Option<&Task> {
        self.queue.peek()
    }

    /// Takes the next task (highest priority, then oldest) and records it as
    /// in flight until [`Ledger::end_flight`].
    pub fn pop_task(&mut self) -> Option<Task> {
        let task = self.queue.pop()?;
        self.in_flight
            .insert(task.cid, (task.action, task.block_size));
        Some(task)
    }

    /// Applies what happened to the in-flight tasks and clears them. After a
    /// block is sent its want is removed (whatever its kind); after a HAVE is
    /// sent a want-have is removed (a want-block stays, as in boxo). Any
    /// in-flight task missing from `outcomes` counts as dropped.
    pub fn end_flight(&mut self, outcomes: &[(Cid, Outcome)]) -> FlightStats {
        let mut stats = FlightStats::default();
        for (cid, outcome) in outcomes {
            let Some((action, block_size)) = self.in_flight.remove(cid) else {
                continue;
            };
            match (outcome, action) {
                (Outcome::Sent, Action::SendBlock) => {
                    stats.blocks_sent += 1;
                    stats.block_bytes_sent += u64::from(block_size.unwrap_or(0));
                    self.wants.remove(cid);
                    self.queue.remove(cid);
                }
                (Outcome::Sent, Action::SendHave) => {
                    stats.haves_sent += 1;
                    if self
                        .wants
                        .get(cid)
                        .is_some_and(|w| w.kind == WantKind::Have)
                    {
                        self.wants.remove(cid);
                        self.queue.remove(cid);
                    }
                }
                (Outcome::Sent, Action::SendDontHave) => stats.dont_haves_sent += 1,
                (Outcome::SentDontHave, _) => {
                    stats.dont_haves_sent += 1;
                    stats.dont_haves_instead += 1;
                }
                (Outcome::Dropped, _) => stats.dropped += 1,
            }
        }
        stats.dropped += self.in_flight.len() as u64;
        self.in_flight.clear();
        stats
    }

    /// Sum of the sizes of queued block tasks: the `pendingBytes` value.
    pub fn pending_bytes(&self) -> u64 {
        self.queue.block_bytes
    }

    /// Entries in the wantlist.
    pub fn wantlist_len(&self) -> usize {
        self.wants.len()
    }

    /// Tasks queued (not in flight).
    pub fn queued_len(&self) -> usize {
        self.queue.len()
    }

    /// Tasks in flight.
    pub fn in_flight_len(&self) -> usize {
        self.in_flight.len()
    }

    /// The current want for `cid`.
    pub fn want(&self, cid: &Cid) -> Option<&Want> {
        self.wants.get(cid)
    }

    /// True when the ledger holds nothing (the engine may forget the peer).
    pub fn is_empty(&self) -> bool {
        self.wants.is_empty() && self.queue.len() == 0 && self.in_flight.is_empty()
    }
}

/// Queued tasks ordered by (priority desc, arrival asc), at most one per CID.
#[derive(Debug, Default)]
struct TaskQueue {
    order: BTreeMap<(Reverse<i32>, u64), Cid>,
    tasks: HashMap<Cid, ((Reverse<i32>, u64), Task)>,
    next_seq: u64,
    /// Sum of block sizes of queued `SendBlock` tasks.
    block_bytes: u64,
}

impl TaskQueue {
    fn len(&self) -> usize {
        self.tasks.len()
    }

    fn get(&self, cid: &Cid) -> Option<&Task> {
        self.tasks.get(cid).map(|(_, t)| t)
    }

    /// Queues `task`, replacing (and moving to the back of its priority) any
    /// queued task for the same CID.
    fn push(&mut self, task: Task) {
        self.remove(&task.cid);
        let key = (Reverse(task.priority), self.next_seq);
        self.next_seq += 1;
        self.block_bytes += block_bytes(&task);
        self.order.insert(key, task.cid);
        self.tasks.insert(task.cid, (key, task));
    }

    fn remove(&mut self, cid: &Cid) -> Option<Task> {
        let (key, task) = self.tasks.remove(cid)?;
        self.order.remove(&key);
        self.block_bytes -= block_bytes(&task);
        Some(task)
    }

    fn peek(&self) -> Option<&Task> {
        let (_, cid) = self.order.first_key_value()?;
        self.get(cid)
    }

    fn pop(&mut self) -> Option<Task> {
        let (_, cid) = self.order.first_key_value()?;
        let cid = *cid;
        self.remove(&cid)
    }
}

fn block_bytes(task: &Task) -> u64 {
    match (task.action, task.block_size) {
        (Action::SendBlock, Some(size)) => u64::from(size),
        _ => 0,
    }
}

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;
