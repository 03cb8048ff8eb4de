//! Interop harness: proves the sidecar against a REAL Kubo daemon and a REAL Helia node.
//!
//! # Brief overview
//!
//! - [`kubo::Kubo`] — a Kubo node (built by `scripts/install-kubo.sh`) in a throwaway repo:
//!   offline CLI steps, daemon start, RPC (`swarm connect`, `cat`, `dag export`, `id`,
//!   `bitswap stat`) and its JSON go-log ([`kubo_log`] reads DONT_HAVEs out of it).
//! - [`sidecar::Sidecar`] — the sidecar binary: `car import`, `run` on loopback port 0,
//!   `/healthz`, `/metrics`, `/admin/*`, signals.
//! - [`helia::Helia`] — Helia 7 on Node 24 running `js/fetch.mjs` to fetch a DAG over
//!   Bitswap 1.2.0 into a CAR.
//! - [`fixture::Fixture`] — the random test DAG and its reference CAR, made by a producer
//!   Kubo.
//! - [`server::BlockServer`] — the serving side (sidecar, or a reference Kubo importing the
//!   same CARs), so one set of client checks runs against both.
//! - [`car`], [`metrics`], [`http`] — small independent readers the checks rely on.
//!
//! Every child process runs in its own process group and dies with its handle
//! ([`process::Daemon`]); waits are bounded and report the child's stderr tail. Missing
//! tools fail the test with the command that installs them (`scripts/setup.sh`): nothing is
//! ever skipped.

pub mod browser;
pub mod car;
pub mod dht;
pub mod dns;
pub mod fixture;
pub mod helia;
pub mod http;
pub mod kubo;
pub mod kubo_log;
pub mod metrics;
pub mod process;
pub mod server;
pub mod sidecar;
pub mod tools;
