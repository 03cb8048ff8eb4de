//! Prometheus metrics: one registry, the handles every subsystem updates.
//!
//! Subsystems get a clone of the `Arc<Metrics>` and bump counters; the HTTP
//! module encodes the registry in the Prometheus text format. Nothing here
//! does I/O.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
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
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sidecar");
        let m = Self {
            connections: Gauge::default(),
            bitswap_streams: Family::default(),
            bitswap_messages_received: Family::default(),
            bitswap_messages_sent: Family::default(),
            bitswap_wants_received: Family::default(),
            bitswap_rejected: Family::default(),
            bitswap_blocks_sent: Counter::default(),
            bitswap_block_bytes_sent: Counter::default(),
            bitswap_haves_sent: Counter::default(),
            bitswap_dont_haves_sent: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "p2p_connections",
            "Established libp2p connections",
            m.connections.clone(),
        );
        registry.register(
            "bitswap_streams",
            "Inbound Bitswap streams by protocol",
            m.bitswap_streams.clone(),
        );
        registry.register(
            "bitswap_messages_received",
            "Bitswap messages received by protocol",
            m.bitswap_messages_received.clone(),
        );
        registry.register(
            "bitswap_messages_sent",
            "Bitswap messages sent by protocol",
            m.bitswap_messages_sent.clone(),
        );
        registry.register(
            "bitswap_wants_received",
            "Wantlist entries received by kind",
            m.bitswap_wants_received.clone(),
        );
        registry.register(
            "bitswap_rejected",
            "Wantlist entries, messages or streams refused, by reason",
            m.bitswap_rejected.clone(),
        );
        registry.register(
            "bitswap_blocks_sent",
            "Blocks sent",
            m.bitswap_blocks_sent.clone(),
        );
        registry.register(
            "bitswap_block_bytes_sent",
            "Bytes of block data sent",
            m.bitswap_block_bytes_sent.clone(),
        );
        registry.register(
            "bitswap_haves_sent",
            "HAVE presences sent",
            m.bitswap_haves_sent.clone(),
        );
        registry.register(
            "bitswap_dont_haves_sent",
            "DONT_HAVE presences sent",
            m.bitswap_dont_haves_sent.clone(),
        );
        Self { registry, ..m }
    }

    /// The registry in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
