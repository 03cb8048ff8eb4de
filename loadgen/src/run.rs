//! `run`: connects every peer, starts them together, measures for the
//! configured window and assembles the [`Report`].
//!
//! Sequence: read the CAR's CIDs → connect all peers (each its own
//! identity and source address, at most `connect_concurrency` handshakes
//! at once) → everyone starts at one instant → `warmup` (not counted) →
//! `duration` (counted) → stop, and wait at most [`TEARDOWN`] for the
//! peers to finish.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, bail};
use libp2p::{Multiaddr, identity::Keypair};
use serde::Serialize;
use tokio::{sync::Semaphore, task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    abuse::{self, AbuseConfig},
    carfile::read_cids,
    honest::{self, HonestConfig, Window},
    net::{Node, abusive_key, server_peer_id},
    report::{AbusivePeer, HonestPeer, HonestSummary, Report},
};

/// Between the last connection and the common start: lets every task
/// reach its start line.
const START_DELAY: Duration = Duration::from_millis(500);

/// How long peers get to wind down after the stop signal; their own I/O
/// timeouts are shorter.
const TEARDOWN: Duration = Duration::from_secs(15);

/// Second octet of abusive peers' source addresses (honest peers use 1 up
/// to [`ABUSIVE_OCTET`] − 1).
const ABUSIVE_OCTET: u8 = 250;

/// Where peers dial from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sources {
    /// Each peer its own /24: honest peer i from 127.(1 + i/256).(i%256).2,
    /// abusive peer k from 127.250.k.2.
    Distinct,
    /// Whatever the kernel picks (127.0.0.1 towards a loopback target):
    /// every peer in one /24.
    Kernel,
}

/// Everything `run` needs.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    pub target: String,
    pub car: PathBuf,
    pub peers: usize,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    #[serde(serialize_with = "secs")]
    pub warmup: Duration,
    pub window: usize,
    #[serde(serialize_with = "secs")]
    pub want_timeout: Duration,
    pub abusive: usize,
    pub abuse: AbuseConfig,
    pub sources: Sources,
    pub connect_concurrency: usize,
    pub seed: u64,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The source address of honest peer `i` or abusive peer `k`.
pub fn source(sources: Sources, abusive: bool, i: usize) -> Option<IpAddr> {
    if sources == Sources::Kernel {
        return None;
    }
    let (second, third) = if abusive {
        (ABUSIVE_OCTET, i as u8)
    } else {
        (1 + (i / 256) as u8, (i % 256) as u8)
    };
    Some(IpAddr::V4(Ipv4Addr::new(127, second, third, 2)))
}

enum Role {
    Honest(usize),
    Abusive(usize),
}

pub async fn run(config: RunConfig) -> anyhow::Result<Report> {
    if config.sources == Sources::Distinct
        && (config.peers > (usize::from(ABUSIVE_OCTET) - 1) * 256 || config.abusive > 256)
    {
        bail!("too many peers for distinct /24 source prefixes");
    }
    let target: Multiaddr = config.target.parse().context("--target")?;
    let server = server_peer_id(&target)?;
    let (cids, _) = read_cids(&config.car)?;
    let cids = Arc::new(cids);
    let honest_config = HonestConfig {
        window: config.window.clamp(1, cids.len()),
        want_timeout: config.want_timeout,
    };

    // Connect everyone first, so the measurement sees a steady population.
    let connect_start = Instant::now();
    let limit = Arc::new(Semaphore::new(config.connect_concurrency.max(1)));
    let mut dials = JoinSet::new();
    let roles = (0..config.peers)
        .map(Role::Honest)
        .chain((0..config.abusive).map(Role::Abusive));
    for role in roles {
        let (abusive, i) = match role {
            Role::Honest(i) => (false, i),
            Role::Abusive(k) => (true, k),
        };
        let src = source(config.sources, abusive, i);
        let key = if abusive {
            abusive_key(config.seed, i)
        } else {
            Keypair::generate_ed25519()
        };
        let limit = limit.clone();
        let target = target.clone();
        dials.spawn(async move {
            let _permit = limit.acquire_owned().await;
            (
                abusive,
                i,
                src,
                Node::connect(&target, server, src, key).await,
            )
        });
    }
    let mut honest_nodes: Vec<(Option<IpAddr>, anyhow::Result<Node>)> = Vec::new();
    let mut abusive_nodes: Vec<(Option<IpAddr>, anyhow::Result<Node>)> = Vec::new();
    honest_nodes.resize_with(config.peers, || (None, Err(anyhow::anyhow!("not dialled"))));
    abusive_nodes.resize_with(config.abusive, || {
        (None, Err(anyhow::anyhow!("not dialled")))
    });
    while let Some(joined) = dials.join_next().await {
        let (abusive, i, src, node) = joined.context("dial task")?;
        let slot = if abusive {
            &mut abusive_nodes[i]
        } else {
            &mut honest_nodes[i]
        };
        *slot = (src, node);
    }
    let connect_s = connect_start.elapsed().as_secs_f64();

    let begin = Instant::now() + START_DELAY;
    let window = Window {
        start: begin + config.warmup,
        end: begin + config.warmup + config.duration,
    };
    let stop = CancellationToken::new();
    let mut errors = Vec::new();

    let mut honest_tasks = JoinSet::new();
    for (i, (src, node)) in honest_nodes.into_iter().enumerate() {
        let mut report = HonestPeer {
            source: src.map(|s| s.to_string()),
            ..HonestPeer::default()
        };
        let node = match node {
            Ok(node) => node,
            Err(e) => {
                report.error = Some(format!("connect: {e:#}"));
                errors.push(format!("honest peer {i}: connect: {e:#}"));
                honest_tasks.spawn(async move { (i, report) });
                continue;
            }
        };
        report.peer = node.peer_id.to_string();
        let (cids, stop) = (cids.clone(), stop.clone());
        let seed = config.seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
        honest_tasks.spawn(async move {
            honest::run(
                node,
                server,
                cids,
                honest_config,
                seed,
                begin,
                window,
                stop,
                &mut report,
            )
            .await;
            (i, report)
        });
    }
    let mut abusive_tasks = JoinSet::new();
    for (k, (src, node)) in abusive_nodes.into_iter().enumerate() {
        let mut report = AbusivePeer {
            source: src.map(|s| s.to_string()),
            ..AbusivePeer::default()
        };
        let node = match node {
            Ok(node) => node,
            Err(e) => {
                report.error = Some(format!("connect: {e:#}"));
                errors.push(format!("abusive peer {k}: connect: {e:#}"));
                abusive_tasks.spawn(async move { (k, report) });
                continue;
            }
        };
        report.peer = node.peer_id.to_string();
        let (cids, stop, abuse) = (cids.clone(), stop.clone(), config.abuse);
        let seed = config.seed ^ 0xabad_1dea ^ ((k as u64) << 40);
        abusive_tasks.spawn(async move {
            tokio::time::sleep_until(begin).await;
            abuse::run(node, server, cids, abuse, seed, stop, &mut report).await;
            (k, report)
        });
    }

    tokio::time::sleep_until(window.end).await;
    stop.cancel();
    let deadline = Instant::now() + TEARDOWN;
    let mut honest_peers = vec![HonestPeer::default(); config.peers];
    let mut done = vec![false; config.peers];
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, honest_tasks.join_next()).await {
        match joined {
            Ok((i, r)) => {
                if let Some(e) = &r.error {
                    errors.push(format!("honest peer {i}: {e}"));
                }
                honest_peers[i] = r;
                done[i] = true;
            }
            Err(e) => errors.push(format!("honest peer task: {e}")),
        }
    }
    for (i, _) in done.iter().enumerate().filter(|(_, d)| !**d) {
        errors.push(format!("honest peer {i} did not stop within {TEARDOWN:?}"));
        honest_peers[i].error = Some("did not stop".into());
    }
    honest_tasks.abort_all();
    let mut abusive = vec![AbusivePeer::default(); config.abusive];
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, abusive_tasks.join_next()).await
    {
        match joined {
            Ok((k, r)) => {
                if let Some(e) = &r.error {
                    errors.push(format!("abusive peer {k}: {e}"));
                }
                abusive[k] = r;
            }
            Err(e) => errors.push(format!("abusive peer task: {e}")),
        }
    }
    abusive_tasks.abort_all();

    let measured_s = config.duration.as_secs_f64();
    Ok(Report {
        config: serde_json::to_value(&config)?,
        measured_s,
        connect_s,
        honest: HonestSummary::of(&honest_peers, measured_s),
        abusive,
        errors,
        honest_peers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        abuse::{AbuseConfig, Mode},
        carfile::gen_car,
    };

    /// A port that was free a moment ago.
    fn free_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    /// The whole path against a real sidecar (in process, default quota
    /// policy): every honest peer gets verified blocks, the flood gets
    /// DONT_HAVEs, nothing fails.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn honest_peers_and_a_flood_against_a_real_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let car = dir.path().join("t.car");
        gen_car(&car, 256, 4096, 5).unwrap();
        let data = dir.path().join("data");
        {
            let store = sidecar::node::open_store(&data).unwrap();
            sidecar::shards::import_car(&store, &car, |_| {}).unwrap();
        }
        let server_id = sidecar::identity::load_or_create(&data)
            .unwrap()
            .public()
            .to_peer_id();
        let port = free_port();
        let sets = [
            format!("p2p.listen=/ip4/127.0.0.1/tcp/{port}"),
            "http.listen=127.0.0.1:0".to_string(),
        ];
        let config = sidecar::config::Config::load(None, &sets).unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(sidecar::node::run(config, data.clone(), shutdown.clone()));
        let up = Instant::now() + Duration::from_secs(20);
        while !data.join("http.addr").exists() {
            assert!(Instant::now() < up, "the sidecar did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let report = run(RunConfig {
            target: format!("/ip4/127.0.0.1/tcp/{port}/p2p/{server_id}"),
            car,
            peers: 4,
            duration: Duration::from_secs(2),
            warmup: Duration::from_millis(500),
            window: 8,
            want_timeout: Duration::from_secs(5),
            abusive: 1,
            abuse: AbuseConfig {
                mode: Mode::Flood,
                present: false,
                batch: 64,
                streams: 2,
                wantlist_entries: 1000,
                max_streams: 100,
            },
            sources: Sources::Distinct,
            connect_concurrency: 8,
            seed: 3,
        })
        .await
        .unwrap();
        shutdown.cancel();
        let _ = server.await;

        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.honest.connected, 4);
        for p in &report.honest_peers {
            assert!(p.blocks > 0 && p.bytes == p.blocks * 4096, "{p:?}");
            assert!(p.source.as_deref().unwrap().starts_with("127.1."));
        }
        assert_eq!(report.honest.unverified, 0);
        assert!(report.honest.jain_index > 0.5);
        let abuser = &report.abusive[0];
        assert!(
            abuser.wants_sent > 0 && abuser.dont_haves_received > 0,
            "{abuser:?}"
        );
        assert_eq!(abuser.blocks_received, 0);
    }

    #[test]
    fn distinct_sources_never_share_a_slash_24() {
        let mut prefixes = std::collections::HashSet::new();
        for i in 0..1000 {
            let Some(IpAddr::V4(a)) = source(Sources::Distinct, false, i) else {
                panic!("an IPv4 source");
            };
            assert!(a.is_loopback());
            assert!(prefixes.insert(u32::from(a) >> 8), "peer {i} shares a /24");
        }
        for k in 0..256 {
            let Some(IpAddr::V4(a)) = source(Sources::Distinct, true, k) else {
                panic!("an IPv4 source");
            };
            assert!(
                prefixes.insert(u32::from(a) >> 8),
                "abuser {k} shares a /24"
            );
        }
        assert_eq!(source(Sources::Kernel, false, 3), None);
    }
}
