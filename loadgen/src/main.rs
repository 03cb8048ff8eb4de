//! # Brief overview
//!
//! `sidecar-loadgen`: a Bitswap load generator for the sidecar, written
//! against the sidecar's own wire code so it can run hundreds of peers in
//! one process (Kubo cannot). This file only parses the command line.
//!
//! - `gen-car` ([`carfile`]): a CAR of N seeded random raw blocks.
//! - `run` ([`run`]): N honest peers ([`honest`]) fetching random blocks of
//!   that CAR with `window` wants in flight, plus K abusive peers
//!   ([`abuse`]); each peer is its own identity and swarm ([`net`]) dialling
//!   from its own loopback /24. Prints a JSON [`report::Report`].
//!
//! - `ipns` ([`ipns_http`]): HTTP load on the IPNS record API: distinct
//!   signed records PUT by many keep-alive clients, then read back.
//!
//! [`client`] holds the Bitswap plumbing both kinds of peer share.

mod abuse;
mod carfile;
mod client;
mod honest;
mod ipns_http;
mod net;
mod report;
mod rng;
mod run;

use std::{path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "sidecar-loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// PUT distinct signed IPNS records over HTTP with many clients, then GET
    /// them back; prints a JSON report.
    Ipns {
        /// The sidecar's HTTP address, host:port.
        #[arg(long)]
        target: String,
        /// Distinct records (each its own Ed25519 name).
        #[arg(long, default_value_t = 20_000)]
        records: usize,
        /// Concurrent keep-alive connections.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// How long to GET records back.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        get_duration: Duration,
    },
    /// Write a CARv1 of N random raw blocks (CIDv1, raw, sha2-256); prints a JSON summary.
    GenCar {
        /// Number of blocks.
        #[arg(long)]
        blocks: usize,
        /// Bytes per block (at most 2 MiB).
        #[arg(long)]
        size: usize,
        /// Seed of the block contents.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Fetch from a sidecar with many honest peers (and abusive ones); prints a JSON report.
    Run(RunArgs),
    /// Print the peer IDs `run --seed S` gives its abusive peers (for allow lists and tiers).
    AbusiveIds {
        /// The `run --seed`.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How many (`run --abusive`).
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The server's TCP multiaddr with its /p2p/<peer id>.
    #[arg(long)]
    target: String,
    /// The CAR the server imported (its CIDs are what honest peers ask for).
    #[arg(long)]
    car: PathBuf,
    /// Honest peers.
    #[arg(long, default_value_t = 200)]
    peers: usize,
    /// Measurement window (after the warm-up).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Time after the common start that is not counted.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Want-blocks each honest peer keeps in flight.
    #[arg(long, default_value_t = 32)]
    window: usize,
    /// An honest want unanswered this long is cancelled and replaced.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    want_timeout: Duration,
    /// Abusive peers.
    #[arg(long, default_value_t = 0)]
    abusive: usize,
    /// What the abusive peers do.
    #[arg(long, value_enum, default_value = "flood")]
    abuse: abuse::Mode,
    /// Abusive peers want blocks the server holds (greedy download)
    /// instead of random absent ones.
    #[arg(long)]
    abuse_present: bool,
    /// flood: wants per message.
    #[arg(long, default_value_t = 256)]
    abuse_batch: usize,
    /// flood and wantlist: parallel writer streams (default 4);
    /// streams: parallel openers (default 64).
    #[arg(long)]
    abuse_streams: Option<usize>,
    /// wantlist: entries per full wantlist.
    #[arg(long, default_value_t = 100_000)]
    wantlist_entries: usize,
    /// streams: most streams held open at once.
    #[arg(long, default_value_t = 10_000)]
    max_streams: usize,
    /// Source addresses: `distinct` gives every peer its own loopback /24.
    #[arg(long, value_enum, default_value = "distinct")]
    sources: run::Sources,
    /// Connection handshakes in progress at once.
    #[arg(long, default_value_t = 32)]
    connect_concurrency: usize,
    /// Seed for block choice, abusive CIDs and abusive identities.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Runtime worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::GenCar {
            blocks,
            size,
            seed,
            out,
        } => {
            let summary = carfile::gen_car(&out, blocks, size, seed)?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
        Command::Ipns {
            target,
            records,
            clients,
            get_duration,
        } => {
            let report = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(ipns_http::run(
                    target,
                    records.max(1),
                    clients.max(1),
                    get_duration,
                ))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::AbusiveIds { seed, count } => {
            let ids: Vec<String> = (0..count)
                .map(|k| net::abusive_key(seed, k).public().to_peer_id().to_string())
                .collect();
            println!("{}", serde_json::to_string_pretty(&ids)?);
        }
        Command::Run(args) => {
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = args.threads {
                runtime.worker_threads(n.max(1));
            }
            let streams = args.abuse_streams.unwrap_or(match args.abuse {
                abuse::Mode::Streams => 64,
                _ => 4,
            });
            let config = run::RunConfig {
                target: args.target,
                car: args.car,
                peers: args.peers,
                duration: args.duration,
                warmup: args.warmup,
                window: args.window,
                want_timeout: args.want_timeout,
                abusive: args.abusive,
                abuse: abuse::AbuseConfig {
                    mode: args.abuse,
                    present: args.abuse_present,
                    batch: args.abuse_batch,
                    streams,
                    wantlist_entries: args.wantlist_entries,
                    max_streams: args.max_streams,
                },
                sources: args.sources,
                connect_concurrency: args.connect_concurrency,
                seed: args.seed,
            };
            let report = runtime.enable_all().build()?.block_on(run::run(config))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(())
}
