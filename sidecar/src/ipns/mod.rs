//! # Brief overview
//!
//! IPNS records: names, parsing, validation, ordering — bytes and a `now`
//! in, values out; no I/O, no clock reads, no async — and the name service
//! built on them. The republisher and watch hub (later) build on this and
//! never re-check what it checked.
//!
//! - [`name`]: [`Name`], an IPNS name (a libp2p [`PeerId`](libp2p::PeerId)),
//!   parsed from `k51…`, `bafz…`, any multibase CIDv1 libp2p-key or legacy
//!   base58 peer IDs, with or without `/ipns/`; its routing key and inline
//!   public key. [`NameError`] when a string is not a name.
//! - [`record`]: [`validate`] → [`Record`] (the exact signed bytes and the
//!   fields they sign) or [`RecordError`]; [`compare`], boxo's order of
//!   two records for one name; [`MAX_RECORD_BYTES`].
//! - [`error`]: [`RecordError`] with its stable [`RecordError::code`]s.
//! - [`testing`]: [`testing::sign`] builds spec-conformant (or deliberately
//!   broken) records, for tests, benches and fuzz seeds.
//! - `cbor`, `rfc3339`: the strict DAG-CBOR reader and the RFC 3339 time
//!   parser/formatter the record code needs.
//! - [`pb`]: the hand-written prost messages (`IpnsEntry`, libp2p `PublicKey`).
//! - [`service`]: the name service: validates puts, keeps the best record
//!   per name in the store (group commit, durable before the answer) and
//!   serves reads through a bounded cache.
//! - [`republish`]: keeps every stored record on the DHT through Kubo, on
//!   the durable schedule the store keeps.
//!
//! Sources: the IPNS record spec (ipfs/specs `src/ipns/ipns-record.md`) and
//! boxo's `ipns` package, the reference the spec defers to. Where they leave
//! room, the rule here is: never accept a record boxo (so Kubo, which puts
//! our records on the DHT) would refuse; refuse only what no implementation
//! produces. Each such choice is documented where it is made.

mod cbor;
pub mod error;
pub mod name;
pub mod pb;
pub mod record;
pub mod republish;
mod rfc3339;
pub mod service;
pub mod testing;
pub mod watch;

pub use error::{CODES, RecordError};
pub use name::{Name, NameError};
pub use record::{KeyType, MAX_RECORD_BYTES, Record, compare, validate, validate_bytes};

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod record_tests;
#[cfg(test)]
mod vectors;
