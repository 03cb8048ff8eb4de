//! # Brief overview
//!
//! The pure half of the Bitswap server (1.2.0, 1.1.0, 1.0.0 and the
//! unversioned `/ipfs/bitswap`): bytes in, decisions out. No I/O, no clock,
//! no async; the glue in `server.rs` owns streams, block reads and timing.
//!
//! - [`frame`]: [`FrameDecoder`] splits a stream into length-prefixed
//!   messages (≤ 4 MiB), rejecting a bad length before buffering the body.
//! - [`wire`]: [`Protocol`] ids, [`decode_request`] → [`Request`]
//!   (wants, cancels, counted rejects), [`encode_request`] for test clients,
//!   CID [`Prefix`]es, and [`WireError`], the one error type here.
//! - [`response`]: [`ResponseBuilder`] packs blocks and HAVE/DONT_HAVE into
//!   frames ≤ 4 MiB in the shape the peer's protocol understands;
//!   [`decode_response`] reads them back.
//! - [`ledger`]: one peer's wantlist (capped) and task queue.
//! - [`engine`]: [`Engine`], fair (deficit round robin by bytes) scheduling
//!   across peers, one batch in flight per peer, and [`Counters`]. Its module
//!   docs give the glue's call order.
//! - [`pb`]: the hand-written prost messages.

pub mod engine;
pub mod frame;
pub mod ledger;
pub mod pb;
pub mod response;
pub mod server;
pub mod wire;

pub use engine::{Batch, BatchId, Counters, Engine, EngineConfig, Received};
pub use frame::{FrameDecoder, MAX_MESSAGE_SIZE, encode_frame};
pub use ledger::{Action, Outcome, Task};
pub use response::{
    MAX_BLOCK_SIZE, Presence, Response, ResponseBlock, ResponseBuilder, decode_response,
};
pub use wire::{
    Prefix, Protocol, Rejects, Request, WantEntry, WantKind, WireError, decode_request,
    encode_request,
};
