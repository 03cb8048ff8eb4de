//! What a run measured, as the JSON `run` prints. Pure: the peers fill in
//! their counters, this module sums them and computes the fairness index
//! and latency percentiles.

use serde::Serialize;

/// Jain's fairness index of `xs`: (Σx)² / (n·Σx²). 1 when every value is
/// equal, 1/n when one value has everything; 1 for an all-zero or empty
/// input (nobody was treated differently).
pub fn jain_index(xs: &[f64]) -> f64 {
    let sum: f64 = xs.iter().sum();
    let squares: f64 = xs.iter().map(|x| x * x).sum();
    if xs.is_empty() || squares == 0.0 {
        return 1.0;
    }
    sum * sum / (xs.len() as f64 * squares)
}

/// The `q`-quantile (0..=1) of sorted values, nearest rank; 0 when empty.
pub fn quantile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One honest peer's counters. Blocks and bytes count only verified blocks
/// received inside the measurement window.
#[derive(Debug, Default, Clone, Serialize)]
pub struct HonestPeer {
    pub peer: String,
    pub source: Option<String>,
    pub blocks: u64,
    pub bytes: u64,
    /// DONT_HAVE answers (the server held every block asked for, so each
    /// one is a refusal: a quota, or a block that vanished).
    pub dont_haves: u64,
    /// Wants with no answer within the want timeout (given up, cancelled).
    pub timeouts: u64,
    /// Want streams reopened because the server reset one (seen on a
    /// write or by reading the reset), e.g. because it could not accept
    /// the stream fast enough; each reopen resends every outstanding want.
    pub stream_reopens: u64,
    /// Blocks whose recomputed CID was not one this peer had asked for
    /// (bad data, or a duplicate).
    pub unverified: u64,
    /// Want-to-block latency of the measured blocks, in microseconds
    /// (kept for the summary; not printed per peer).
    #[serde(skip)]
    pub latencies_us: Vec<u32>,
    pub error: Option<String>,
}

/// One abusive peer's counters, over the whole run (warm-up included).
#[derive(Debug, Default, Clone, Serialize)]
pub struct AbusivePeer {
    pub peer: String,
    pub source: Option<String>,
    pub mode: String,
    pub messages_sent: u64,
    pub wants_sent: u64,
    pub cancels_sent: u64,
    pub streams_opened: u64,
    pub stream_open_errors: u64,
    /// Writes that failed: the server reset or closed the stream.
    pub write_errors: u64,
    /// Streams: held streams the server closed or reset.
    pub streams_closed_by_server: u64,
    pub blocks_received: u64,
    pub bytes_received: u64,
    pub haves_received: u64,
    pub dont_haves_received: u64,
    /// The server closed the connection (a quota's disconnect, say).
    pub disconnected: bool,
    pub error: Option<String>,
}

/// Latency summary in milliseconds.
#[derive(Debug, Default, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The honest peers together.
#[derive(Debug, Default, Serialize)]
pub struct HonestSummary {
    pub peers: usize,
    pub connected: usize,
    pub blocks: u64,
    pub bytes: u64,
    pub mib_per_s: f64,
    pub blocks_per_s: f64,
    /// Jain's index over every honest peer's bytes (unconnected peers
    /// count as 0).
    pub jain_index: f64,
    pub min_peer_bytes: u64,
    pub max_peer_bytes: u64,
    pub dont_haves: u64,
    pub timeouts: u64,
    pub unverified: u64,
    pub stream_reopens: u64,
    pub latency: Latency,
}

impl HonestSummary {
    pub fn of(peers: &[HonestPeer], measured_s: f64) -> Self {
        let bytes: Vec<f64> = peers.iter().map(|p| p.bytes as f64).collect();
        let mut lat: Vec<u32> = peers
            .iter()
            .flat_map(|p| p.latencies_us.iter().copied())
            .collect();
        lat.sort_unstable();
        let ms = |q: f64| f64::from(quantile(&lat, q)) / 1000.0;
        let total_bytes: u64 = peers.iter().map(|p| p.bytes).sum();
        let total_blocks: u64 = peers.iter().map(|p| p.blocks).sum();
        let per_s = |v: f64| {
            if measured_s > 0.0 {
                v / measured_s
            } else {
                0.0
            }
        };
        HonestSummary {
            peers: peers.len(),
            connected: peers.iter().filter(|p| p.error.is_none()).count(),
            blocks: total_blocks,
            bytes: total_bytes,
            mib_per_s: per_s(total_bytes as f64 / (1024.0 * 1024.0)),
            blocks_per_s: per_s(total_blocks as f64),
            jain_index: jain_index(&bytes),
            min_peer_bytes: peers.iter().map(|p| p.bytes).min().unwrap_or(0),
            max_peer_bytes: peers.iter().map(|p| p.bytes).max().unwrap_or(0),
            dont_haves: peers.iter().map(|p| p.dont_haves).sum(),
            timeouts: peers.iter().map(|p| p.timeouts).sum(),
            unverified: peers.iter().map(|p| p.unverified).sum(),
            stream_reopens: peers.iter().map(|p| p.stream_reopens).sum(),
            latency: Latency {
                p50_ms: ms(0.50),
                p90_ms: ms(0.90),
                p99_ms: ms(0.99),
                max_ms: ms(1.0),
            },
        }
    }
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report {
    pub config: serde_json::Value,
    /// Seconds of the measurement window (after the warm-up).
    pub measured_s: f64,
    /// Seconds the peers took to connect before the start.
    pub connect_s: f64,
    pub honest: HonestSummary,
    pub abusive: Vec<AbusivePeer>,
    pub errors: Vec<String>,
    pub honest_peers: Vec<HonestPeer>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jain_index_bounds() {
        assert_eq!(jain_index(&[5.0, 5.0, 5.0, 5.0]), 1.0);
        assert!((jain_index(&[1.0, 0.0, 0.0, 0.0]) - 0.25).abs() < 1e-12);
        // Half the peers get everything: 0.5.
        assert!((jain_index(&[2.0, 2.0, 0.0, 0.0]) - 0.5).abs() < 1e-12);
        assert_eq!(jain_index(&[]), 1.0);
        assert_eq!(jain_index(&[0.0, 0.0]), 1.0);
    }

    #[test]
    fn quantiles_use_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&v, 0.0), 1);
        assert_eq!(quantile(&[], 0.5), 0);
    }

    #[test]
    fn summary_counts_unconnected_peers_as_zero() {
        let peers = vec![
            HonestPeer {
                bytes: 100,
                blocks: 1,
                latencies_us: vec![1000, 3000],
                ..Default::default()
            },
            HonestPeer {
                error: Some("dial failed".into()),
                ..Default::default()
            },
        ];
        let s = HonestSummary::of(&peers, 2.0);
        assert_eq!((s.peers, s.connected, s.bytes), (2, 1, 100));
        assert!((s.jain_index - 0.5).abs() < 1e-12);
        assert_eq!(s.blocks_per_s, 0.5);
        assert_eq!(s.latency.p50_ms, 1.0);
        assert_eq!(s.latency.max_ms, 3.0);
    }
}
