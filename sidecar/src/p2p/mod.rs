//! The libp2p host: TCP and WebSocket transports, TLS or noise, yamux ([`mux`]),
//! identify, ping, connection limits, and `libp2p-stream` for protocols (Bitswap) that
//! run as plain async code over streams.
//!
//! [`Host::start`] builds the swarm, binds every listen address (failing
//! clearly if one cannot be bound) and spawns the swarm's event loop. Protocol
//! code gets a [`libp2p_stream::Control`] to accept and open streams; the
//! event loop reports disconnected peers through a callback and keeps the
//! shared list of listen addresses current. Nothing here knows Bitswap.

use std::{
    collections::HashSet,
    sync::{Arc, RwLock},
    time::Duration,
};

use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, Swarm, connection_limits, identify,
    identity::Keypair,
    multiaddr::Protocol,
    noise, ping,
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, tls,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{config::P2pConfig, metrics::Metrics};

mod gatekeeper;
mod mux;
pub mod probe;

/// Largest yamux data frame the host sends.
pub const MAX_DATA_FRAME: usize = mux::SPLIT_SEND_SIZE;

pub use gatekeeper::{ConnectionPolicy, OpenDoor, ip_of};

/// The identify protocol version string Kubo and Helia send.
const IDENTIFY_PROTOCOL: &str = "/ipfs/id/1.0.0";

// Security: TLS and noise are both offered. The dialer picks: Kubo proposes
// TLS first (AES-GCM, hardware-accelerated: measurably cheaper per GiB served
// than noise's ChaCha20-Poly1305), Helia and browsers use noise.

/// How long binding all listen addresses may take before start-up fails.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Called with a peer's ID once its last connection has closed.
pub type DisconnectHook = Arc<dyn Fn(PeerId) + Send + Sync>;

/// What the host reports to, and takes orders from, the rest of the daemon.
pub struct Hooks {
    /// A peer's last connection closed.
    pub on_disconnect: DisconnectHook,
    /// Asked about every connection (refusals), told of every connection.
    pub connections: Arc<dyn ConnectionPolicy>,
    /// Peers to disconnect now (a quota's `disconnect` policy).
    pub disconnect_requests: Option<mpsc::UnboundedReceiver<PeerId>>,
}

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    #[error("building the libp2p transport: {0}")]
    Transport(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    gatekeeper: gatekeeper::Behaviour,
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    stream: libp2p_stream::Behaviour,
}

/// A running libp2p host.
pub struct Host {
    /// This node's peer ID.
    pub peer_id: PeerId,
    /// Opens and accepts streams by protocol.
    pub control: libp2p_stream::Control,
    listen_addrs: Arc<RwLock<Vec<Multiaddr>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Host {
    /// Builds the swarm, binds `config.listen`, advertises `config.announce`
    /// and spawns the event loop, which stops when `shutdown` is cancelled.
    pub async fn start(
        keypair: Keypair,
        config: &P2pConfig,
        metrics: Arc<Metrics>,
        hooks: Hooks,
        shutdown: CancellationToken,
    ) -> Result<Self, P2pError> {
        let peer_id = keypair.public().to_peer_id();
        let mut swarm = build_swarm(keypair, config, hooks.connections.clone()).await?;
        let control = swarm.behaviour().stream.new_control();
        for addr in &config.announce {
            swarm.add_external_address(addr.clone());
        }
        let bound = bind(&mut swarm, &config.listen).await?;
        tracing::info!(%peer_id, addrs = ?bound, "libp2p host listening");
        let listen_addrs = Arc::new(RwLock::new(bound));
        let task = tokio::spawn(event_loop(
            swarm,
            listen_addrs.clone(),
            metrics,
            hooks,
            shutdown,
        ));
        Ok(Self {
            peer_id,
            control,
            listen_addrs,
            task,
        })
    }

    /// The addresses currently bound (never with a `/p2p` suffix).
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.listen_addrs
            .read()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    /// A shared, always-current view of the bound addresses.
    pub fn listen_addrs_handle(&self) -> Arc<RwLock<Vec<Multiaddr>>> {
        self.listen_addrs.clone()
    }

    /// Waits for the event loop to finish (after shutdown was cancelled).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

async fn build_swarm(
    keypair: Keypair,
    config: &P2pConfig,
    connections: Arc<dyn ConnectionPolicy>,
) -> Result<Swarm<Behaviour>, P2pError> {
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(config.max_connections))
        .with_max_established_per_peer(Some(config.max_connections_per_peer))
        .with_max_pending_incoming(Some(config.max_pending_incoming));
    let idle = config.idle_connection_timeout;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            (tls::Config::new, noise::Config::new),
            mux::Upgrade::new,
        )
        .map_err(|e| P2pError::Transport(e.to_string()))?
        .with_dns()
        .map_err(|e| P2pError::Transport(e.to_string()))?
        .with_websocket((tls::Config::new, noise::Config::new), mux::Upgrade::new)
        .await
        .map_err(|e| P2pError::Transport(e.to_string()))?
        .with_behaviour(|key| Behaviour {
            gatekeeper: gatekeeper::Behaviour::new(connections),
            limits: connection_limits::Behaviour::new(limits),
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.to_string(), key.public())
                    .with_agent_version(format!("sidecar/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::default(),
            stream: libp2p_stream::Behaviour::new(),
        })
        .map_err(|e| P2pError::Transport(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}

/// Listens on every address and waits until each listener reports at least
/// one bound address (so port 0 resolves to the real port).
async fn bind(
    swarm: &mut Swarm<Behaviour>,
    addrs: &[Multiaddr],
) -> Result<Vec<Multiaddr>, P2pError> {
    let mut pending = HashSet::new();
    let mut requested = Vec::new();
    for addr in addrs {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| P2pError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        pending.insert(id);
        requested.push((id, addr.clone()));
    }
    let addr_of = |id| {
        requested
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(Multiaddr::empty)
    };
    let mut bound = Vec::new();
    let deadline = tokio::time::sleep(LISTEN_TIMEOUT);
    tokio::pin!(deadline);
    while !pending.is_empty() {
        tokio::select! {
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { listener_id, address } => {
                    pending.remove(&listener_id);
                    bound.push(address);
                }
                SwarmEvent::ListenerError { listener_id, error } => {
                    return Err(P2pError::Listen { addr: addr_of(listener_id), reason: error.to_string() });
                }
                SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                    let reason = match reason {
                        Ok(()) => "listener closed".to_string(),
                        Err(e) => e.to_string(),
                    };
                    return Err(P2pError::Listen { addr: addr_of(listener_id), reason });
                }
                _ => {}
            },
            _ = &mut deadline => {
                let id = pending.iter().next().copied();
                return Err(P2pError::Listen {
                    addr: id.map(addr_of).unwrap_or_else(Multiaddr::empty),
                    reason: "timed out waiting for the listener".into(),
                });
            }
        }
    }
    Ok(bound)
}

async fn event_loop(
    mut swarm: Swarm<Behaviour>,
    listen_addrs: Arc<RwLock<Vec<Multiaddr>>>,
    metrics: Arc<Metrics>,
    hooks: Hooks,
    shutdown: CancellationToken,
) {
    let Hooks {
        on_disconnect,
        mut disconnect_requests,
        ..
    } = hooks;
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(peer) = async {
                match disconnect_requests.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                tracing::debug!(%peer, "disconnecting peer");
                let _ = swarm.disconnect_peer_id(peer);
                continue;
            }
            event = swarm.select_next_some() => event,
        };
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                metrics.connections.inc();
                tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connection established");
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                metrics.connections.dec();
                tracing::debug!(peer = %peer_id, ?cause, "connection closed");
                if num_established == 0 {
                    on_disconnect(peer_id);
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                if let Ok(mut addrs) = listen_addrs.write()
                    && !addrs.contains(&address)
                {
                    addrs.push(address);
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                if let Ok(mut addrs) = listen_addrs.write() {
                    addrs.retain(|a| a != &address);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                tracing::debug!(peer = %peer_id, agent = %info.agent_version, "identified");
            }
            SwarmEvent::IncomingConnectionError {
                error,
                send_back_addr,
                ..
            } => {
                tracing::debug!(addr = %send_back_addr, %error, "incoming connection failed");
            }
            _ => {}
        }
    }
    tracing::debug!("libp2p event loop stopped");
}

/// `addr` with `/p2p/<peer>` appended, the form peers dial.
pub fn with_peer(addr: &Multiaddr, peer: PeerId) -> Multiaddr {
    if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        addr.clone()
    } else {
        addr.clone().with(Protocol::P2p(peer))
    }
}
