//! The one choke point the Bitswap server asks before it reads a block.
//!
//! The server calls [`QuotaGate::admit`] once per response it is about to
//! prepare, after scheduling and before any block bytes are read, and obeys
//! the answer. Budgets and policies (per peer, per IP prefix, tiers) plug in
//! behind this trait; [`Unlimited`] admits everything. Implementations must be
//! cheap and must never block: they run on the server's worker tasks.

use libp2p::PeerId;

pub mod budget;
mod gate;
pub mod policy;
mod service;

pub use gate::{CounterKey, CounterSource, IpPrefix, NoCounters, PeerLimits, PeerReport, Quotas};
pub use policy::{Policy, PolicyError};
pub use service::{QuotaService, ReloadError, load_policy};

/// What the server is about to send for one want.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// The block's bytes (`size` of them).
    Block,
    /// A HAVE presence.
    Have,
    /// A DONT_HAVE presence (the block is not held).
    DontHave,
}

/// The gate's verdict for one want.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Serve as planned.
    Serve,
    /// Answer DONT_HAVE instead (Bitswap allows it for blocks a server will not give).
    DontHave,
    /// Send nothing for this want.
    Drop,
}

/// Decides, per want, whether a peer gets what it asked for.
pub trait QuotaGate: Send + Sync + 'static {
    /// Called before the server reads or sends anything for this want.
    /// `size` is the block's size in bytes.
    fn admit(&self, peer: &PeerId, response: Response, size: u32) -> Admission;

    /// Per-peer limits the server enforces itself; `None` leaves the
    /// server's configured ones.
    fn limits(&self, _peer: &PeerId) -> Option<PeerLimits> {
        None
    }

    /// Asked once per batch with the bytes already queued for the peer and
    /// not yet written. `Some` refuses the batch's blocks with that answer
    /// (a slow reader); `None` lets [`QuotaGate::admit`] decide per want.
    fn check_inflight(&self, _peer: &PeerId, _inflight_bytes: u64) -> Option<Admission> {
        None
    }
}

/// Admits everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unlimited;

impl QuotaGate for Unlimited {
    fn admit(&self, _peer: &PeerId, _response: Response, _size: u32) -> Admission {
        Admission::Serve
    }
}
