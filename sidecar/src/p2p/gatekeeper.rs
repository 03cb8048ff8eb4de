//! Connection admission: refuses denied or cooling-down peers when their
//! connection is established (before any protocol runs), and reports every
//! connection's peer and IP address to the [`ConnectionPolicy`].

use std::{
    convert::Infallible,
    net::IpAddr,
    sync::Arc,
    task::{Context, Poll},
};

use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    multiaddr::Protocol,
    swarm::{
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm, dummy,
    },
};

/// What the host asks about, and tells of, connections.
pub trait ConnectionPolicy: Send + Sync + 'static {
    /// Whether a connection with `peer` must be closed at once.
    fn is_refused(&self, peer: &PeerId) -> bool;
    /// A connection with `peer`, from `ip` when the address has one, is up.
    fn connected(&self, peer: PeerId, ip: Option<IpAddr>);
    /// One of `peer`'s connections closed.
    fn disconnected(&self, peer: &PeerId);
}

/// Admits everyone and remembers nothing.
pub struct OpenDoor;

impl ConnectionPolicy for OpenDoor {
    fn is_refused(&self, _: &PeerId) -> bool {
        false
    }
    fn connected(&self, _: PeerId, _: Option<IpAddr>) {}
    fn disconnected(&self, _: &PeerId) {}
}

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
#[error("peer {0} is refused (deny list or cool-down)")]
pub struct Refused(PeerId);

/// The first IP address in a multiaddr.
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(a) => Some(IpAddr::V4(a)),
        Protocol::Ip6(a) => Some(IpAddr::V6(a)),
        _ => None,
    })
}

pub struct Behaviour {
    policy: Arc<dyn ConnectionPolicy>,
}

impl Behaviour {
    pub fn new(policy: Arc<dyn ConnectionPolicy>) -> Self {
        Self { policy }
    }

    fn admit(&self, peer: PeerId) -> Result<THandler<Self>, ConnectionDenied> {
        if self.policy.is_refused(&peer) {
            tracing::debug!(%peer, "refusing connection");
            return Err(ConnectionDenied::new(Refused(peer)));
        }
        Ok(dummy::ConnectionHandler)
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(peer)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(peer)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        // Counted only once every behaviour accepted the connection.
        match event {
            FromSwarm::ConnectionEstablished(c) => {
                self.policy
                    .connected(c.peer_id, ip_of(c.endpoint.get_remote_address()));
            }
            FromSwarm::ConnectionClosed(c) => self.policy.disconnected(&c.peer_id),
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
