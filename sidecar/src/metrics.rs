//! Prometheus metrics: one registry, the handles every subsystem updates.
//!
//! Subsystems get a clone of the `Arc<Metrics>` and bump counters; the HTTP
//! module encodes the registry in the Prometheus text format. Nothing here
//! does I/O.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// Label: the Bitswap protocol ID a stream or message used.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabel {
    pub protocol: &'static str,
}

/// Label: a want's kind (`block`, `have`) or `cancel`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// Label: why something was refused or ignored.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// Label: how an operation ended (`ok`, `failed`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// Labels of a throttled want: the peer's tier, what was done, and which
/// budget ran out.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThrottleLabel {
    pub tier: String,
    pub action: &'static str,
    pub reason: &'static str,
}

/// Every metric the sidecar exports.
pub struct Metrics {
    registry: Registry,
    /// Established libp2p connections.
    pub connections: Gauge,
    /// Inbound Bitswap streams accepted, by protocol.
    pub bitswap_streams: Family<ProtocolLabel, Counter>,
    /// Bitswap messages received, by protocol.
    pub bitswap_messages_received: Family<ProtocolLabel, Counter>,
    /// Bitswap messages sent, by protocol.
    pub bitswap_messages_sent: Family<ProtocolLabel, Counter>,
    /// Wantlist entries received, by kind.
    pub bitswap_wants_received: Family<KindLabel, Counter>,
    /// Wantlist entries or streams refused, by reason.
    pub bitswap_rejected: Family<ReasonLabel, Counter>,
    /// Blocks sent.
    pub bitswap_blocks_sent: Counter,
    /// Bytes of block data sent.
    pub bitswap_block_bytes_sent: Counter,
    /// HAVE presences sent.
    pub bitswap_haves_sent: Counter,
    /// DONT_HAVE presences sent.
    pub bitswap_dont_haves_sent: Counter,
    /// Milliseconds inbound streams were left unread because their peer
    /// kept sending wants past its wantlist cap.
    pub bitswap_ingest_paused_ms: Counter,
    /// Wants throttled by the quota gate, by tier, action and reason.
    pub quota_throttled: Family<ThrottleLabel, Counter>,
    /// Peers whose quota counters are held in memory.
    pub quota_tracked_peers: Gauge,
    /// IPNS record puts to Kubo, by result.
    pub republish_puts: Family<ResultLabel, Counter>,
    /// Failed IPNS record puts, by error code.
    pub republish_failures: Family<ReasonLabel, Counter>,
    /// Time of one put through Kubo.
    pub republish_put_seconds: Histogram,
    /// Names due more than a minute ago and not yet put.
    pub republish_overdue: Gauge,
    /// Puts in flight.
    pub republish_in_flight: Gauge,
    /// Records found expired (no longer republished).
    pub republish_expired: Counter,
    /// Better records found on the network and adopted.
    pub republish_adopted: Counter,
    /// 1 while the Kubo RPC answers, 0 while it does not.
    pub kubo_up: Gauge,
    /// Open watch connections (WebSocket and SSE).
    pub watch_connections: Gauge,
    /// Change notifications sent to watchers.
    pub watch_notifications: Counter,
    /// Watchers told to resync (resume point lost, or too slow), by reason.
    pub watch_resyncs: Family<ReasonLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("sidecar");
        let reg = &mut r;
        Self {
            connections: metric(reg, "p2p_connections", "Established libp2p connections"),
            bitswap_streams: metric(
                reg,
                "bitswap_streams",
                "Inbound Bitswap streams by protocol",
            ),
            bitswap_messages_received: metric(
                reg,
                "bitswap_messages_received",
                "Bitswap messages received by protocol",
            ),
            bitswap_messages_sent: metric(
                reg,
                "bitswap_messages_sent",
                "Bitswap messages sent by protocol",
            ),
            bitswap_wants_received: metric(
                reg,
                "bitswap_wants_received",
                "Wantlist entries received by kind",
            ),
            bitswap_rejected: metric(
                reg,
                "bitswap_rejected",
                "Wantlist entries, messages or streams refused, by reason",
            ),
            bitswap_blocks_sent: metric(reg, "bitswap_blocks_sent", "Blocks sent"),
            bitswap_block_bytes_sent: metric(
                reg,
                "bitswap_block_bytes_sent",
                "Bytes of block data sent",
            ),
            bitswap_haves_sent: metric(reg, "bitswap_haves_sent", "HAVE presences sent"),
            bitswap_dont_haves_sent: metric(
                reg,
                "bitswap_dont_haves_sent",
                "DONT_HAVE presences sent",
            ),
            bitswap_ingest_paused_ms: metric(
                reg,
                "bitswap_ingest_paused_ms",
                "Milliseconds inbound streams were left unread because their peer sent wants past its wantlist cap",
            ),
            quota_throttled: metric(
                reg,
                "quota_throttled_wants",
                "Wants throttled by the quota gate, by tier, action and reason",
            ),
            quota_tracked_peers: metric(
                reg,
                "quota_tracked_peers",
                "Peers whose quota counters are held in memory",
            ),
            republish_puts: metric(reg, "republish_puts", "IPNS record puts to Kubo by result"),
            republish_failures: metric(
                reg,
                "republish_failures",
                "Failed IPNS record puts by error code",
            ),
            republish_put_seconds: {
                // 5 ms to ~80 s.
                let h = Histogram::new(exponential_buckets(0.005, 2.0, 15));
                reg.register(
                    "republish_put_seconds",
                    "Time of one IPNS record put through Kubo",
                    h.clone(),
                );
                h
            },
            republish_overdue: metric(
                reg,
                "republish_overdue",
                "IPNS names due more than a minute ago and not yet put",
            ),
            republish_in_flight: metric(reg, "republish_in_flight", "IPNS record puts in flight"),
            republish_expired: metric(
                reg,
                "republish_expired",
                "IPNS records found expired and no longer republished",
            ),
            republish_adopted: metric(
                reg,
                "republish_adopted",
                "Better IPNS records found on the network and adopted",
            ),
            kubo_up: metric(
                reg,
                "kubo_up",
                "1 while the Kubo RPC answers, 0 while it does not",
            ),
            watch_connections: metric(
                reg,
                "watch_connections",
                "Open name-watch connections (WebSocket and SSE)",
            ),
            watch_notifications: metric(
                reg,
                "watch_notifications",
                "Name-change notifications sent to watchers",
            ),
            watch_resyncs: metric(reg, "watch_resyncs", "Watchers told to resync, by reason"),
            registry: r,
        }
    }

    /// The registry in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Creates a metric and registers it under `name`.
fn metric<M: Default + Clone + prometheus_client::registry::Metric>(
    registry: &mut Registry,
    name: &str,
    help: &str,
) -> M {
    let m = M::default();
    registry.register(name, help, m.clone());
    m
}
