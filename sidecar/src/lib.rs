//! # Brief overview
//!
//! `sidecar` is a daemon that runs beside a Kubo node. This crate is its
//! library; the `sidecar` binary only parses the command line and calls in.
//!
//! - [`config`]: the one composed [`config::Config`] (TOML file, env, flags),
//!   validated before anything binds.
//! - [`car`]: CARv1/CARv2 reading (pure, positioned reads) and CARv2 indexes.
//! - [`store`]: the embedded redb store: the block index and shard registry.
//! - [`shards`]: CAR import: verify, index in sorted batches, one commit per CAR.
//! - [`blocks`]: the [`blocks::BlockSource`] trait and the CAR-backed source.
//! - [`bitswap`]: the Bitswap 1.0/1.1/1.2 wire format, ledger, engine and server.
//! - [`quota`]: the single choke point the Bitswap engine asks before serving.
//! - [`p2p`]: the libp2p host (TCP, WebSocket, noise, yamux, identify, ping).
//! - [`http`]: health, metrics and (later) the routing and name APIs.

pub mod bitswap;
pub mod blocks;
pub mod car;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dnsaddr_command;
pub mod http;
pub mod identity;
pub mod ipns;
pub mod ipns_command;
pub mod kubo;
pub mod metrics;
pub mod node;
pub mod p2p;
pub mod quota;
pub mod shards;
pub mod store;
pub mod watch_command;
