//! One load-generator peer's libp2p node: its own identity and swarm,
//! TCP dialled from a chosen source address, noise, yamux, and
//! `libp2p-stream` for Bitswap streams.
//!
//! Why a transport of its own: the sidecar's quota policy aggregates peers
//! per IPv4 /24, so simulated peers must arrive from distinct addresses.
//! `libp2p::tcp` can reuse a listening *port* for dials, but it binds the
//! dialling socket to the unspecified address, so the kernel picks the
//! source IP (127.0.0.1 towards 127.0.0.1). [`SourceBoundTcp`] binds each
//! dial to `source:0` first; on Linux every 127.0.0.0/8 address is local,
//! so 127.A.B.C works without any setup.
//!
//! Owns: dialling one server and driving the swarm in a background task
//! until [`Node`] is dropped. Knows nothing about Bitswap messages.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use anyhow::{Context as _, anyhow};
use futures::{FutureExt, StreamExt, future::BoxFuture};
use libp2p::{
    Multiaddr, PeerId, Swarm, Transport,
    core::{
        transport::{DialOpts, ListenerId, TransportError, TransportEvent},
        upgrade::Version,
    },
    identity::Keypair,
    multiaddr::Protocol,
    noise,
    swarm::SwarmEvent,
    yamux,
};
use tokio_util::sync::CancellationToken;

/// Bound on the TCP connect plus the noise and yamux handshakes.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// A connection with no open stream is closed after this long; peers keep
/// their streams open for the whole run, so this only reaps the dead.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// TCP that dials from a fixed source address (any port) and never listens.
#[derive(Debug, Clone, Copy)]
pub struct SourceBoundTcp {
    source: Option<IpAddr>,
}

impl SourceBoundTcp {
    /// Dials from `source` (port chosen by the kernel), or from whatever
    /// address the kernel picks when `None`.
    pub fn new(source: Option<IpAddr>) -> Self {
        Self { source }
    }
}

/// `/ip4|ip6/…/tcp/…`, optionally followed by `/p2p/…`.
fn socket_addr(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut it = addr.iter();
    let ip = match it.next()? {
        Protocol::Ip4(a) => IpAddr::V4(a),
        Protocol::Ip6(a) => IpAddr::V6(a),
        _ => return None,
    };
    let Protocol::Tcp(port) = it.next()? else {
        return None;
    };
    match it.next() {
        None | Some(Protocol::P2p(_)) => Some(SocketAddr::new(ip, port)),
        Some(_) => None,
    }
}

impl Transport for SourceBoundTcp {
    type Output = libp2p::tcp::tokio::TcpStream;
    type Error = io::Error;
    type ListenerUpgrade = futures::future::Pending<io::Result<Self::Output>>;
    type Dial = BoxFuture<'static, io::Result<Self::Output>>;

    fn listen_on(
        &mut self,
        _id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        Err(TransportError::MultiaddrNotSupported(addr))
    }

    fn remove_listener(&mut self, _id: ListenerId) -> bool {
        false
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        _opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let Some(dest) = socket_addr(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let source = self.source;
        Ok(async move {
            let socket = if dest.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.set_nodelay(true)?;
            if let Some(ip) = source {
                socket.bind(SocketAddr::new(ip, 0))?;
            }
            Ok(libp2p::tcp::tokio::TcpStream(socket.connect(dest).await?))
        }
        .boxed())
    }

    fn poll(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Poll::Pending
    }
}

/// A connected node: its identity, a stream control, and a token that is
/// cancelled when its connection to the server closes.
pub struct Node {
    pub peer_id: PeerId,
    pub control: libp2p_stream::Control,
    /// Cancelled once the last connection to the server has closed.
    pub closed: CancellationToken,
    /// Why it closed, once it has.
    cause: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The fixed identity of abusive peer `index` under `seed`, so a policy
/// can name it (allow list, tier) before the run: an ed25519 key whose
/// secret is sha2-256 of a label, the seed and the index.
pub fn abusive_key(seed: u64, index: usize) -> Keypair {
    use sha2::{Digest, Sha256};
    let mut secret: [u8; 32] = Sha256::new()
        .chain_update(b"sidecar-loadgen abusive peer")
        .chain_update(seed.to_le_bytes())
        .chain_update((index as u64).to_le_bytes())
        .finalize()
        .into();
    // Any 32 bytes are a valid ed25519 secret key.
    Keypair::ed25519_from_bytes(&mut secret).unwrap_or_else(|_| Keypair::generate_ed25519())
}

/// The server's peer ID from the `/p2p/…` suffix of its address.
pub fn server_peer_id(addr: &Multiaddr) -> anyhow::Result<PeerId> {
    addr.iter()
        .find_map(|p| match p {
            Protocol::P2p(id) => Some(id),
            _ => None,
        })
        .ok_or_else(|| anyhow!("{addr} has no /p2p/<peer id> suffix"))
}

impl Node {
    /// Why the connection closed, when it has (for error reports).
    pub fn close_cause(&self) -> Option<String> {
        self.cause.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Connects to `server` at `addr` from `source` as `key`. Fails when
    /// the connection is not up within [`HANDSHAKE_TIMEOUT`].
    pub async fn connect(
        addr: &Multiaddr,
        server: PeerId,
        source: Option<IpAddr>,
        key: Keypair,
    ) -> anyhow::Result<Node> {
        let peer_id = key.public().to_peer_id();
        let transport = SourceBoundTcp::new(source)
            .upgrade(Version::V1)
            .authenticate(noise::Config::new(&key).context("noise keys")?)
            .multiplex(yamux::Config::default())
            .timeout(HANDSHAKE_TIMEOUT)
            .boxed();
        let mut swarm = Swarm::new(
            transport,
            libp2p_stream::Behaviour::new(),
            peer_id,
            libp2p::swarm::Config::with_tokio_executor().with_idle_connection_timeout(IDLE_TIMEOUT),
        );
        let control = swarm.behaviour().new_control();
        swarm.dial(addr.clone()).context("dial")?;
        let up = tokio::time::timeout(HANDSHAKE_TIMEOUT + Duration::from_secs(1), async {
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::ConnectionEstablished { peer_id: p, .. } if p == server => {
                        return Ok(());
                    }
                    SwarmEvent::OutgoingConnectionError { error, .. } => {
                        return Err(anyhow!("dial failed: {error}"));
                    }
                    _ => {}
                }
            }
        })
        .await;
        match up {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(anyhow!("connection not up within {HANDSHAKE_TIMEOUT:?}")),
        }
        let closed = CancellationToken::new();
        let cause = Arc::new(Mutex::new(None));
        let (on_close, why) = (closed.clone(), cause.clone());
        let task = tokio::spawn(async move {
            loop {
                let ev = swarm.select_next_some().await;
                if let SwarmEvent::ConnectionClosed {
                    peer_id: p,
                    num_established: 0,
                    cause,
                    ..
                } = ev
                    && p == server
                {
                    *why.lock().unwrap_or_else(|p| p.into_inner()) = Some(match cause {
                        Some(e) => e.to_string(),
                        None => "closed without an error".into(),
                    });
                    on_close.cancel();
                }
            }
        });
        Ok(Node {
            peer_id,
            control,
            closed,
            cause,
            task,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addr_takes_ip_tcp_and_an_optional_peer() {
        let id = PeerId::random();
        let a: Multiaddr = format!("/ip4/127.0.0.1/tcp/4010/p2p/{id}").parse().unwrap();
        assert_eq!(socket_addr(&a), Some("127.0.0.1:4010".parse().unwrap()));
        let b: Multiaddr = "/ip6/::1/tcp/5".parse().unwrap();
        assert_eq!(socket_addr(&b), Some("[::1]:5".parse().unwrap()));
        let ws: Multiaddr = "/ip4/127.0.0.1/tcp/4011/ws".parse().unwrap();
        assert_eq!(socket_addr(&ws), None);
        assert_eq!(server_peer_id(&a).unwrap(), id);
        assert!(server_peer_id(&b).is_err());
    }

    #[test]
    fn abusive_identities_are_fixed_per_seed_and_index() {
        let id = |s, i| abusive_key(s, i).public().to_peer_id();
        assert_eq!(id(1, 0), id(1, 0));
        assert_ne!(id(1, 0), id(1, 1));
        assert_ne!(id(1, 0), id(2, 0));
    }

    /// The point of this transport: the server sees the chosen source IP.
    #[tokio::test]
    async fn dials_come_from_the_chosen_source_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let source: IpAddr = "127.3.4.5".parse().unwrap();
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
        let opts = DialOpts {
            role: libp2p::core::Endpoint::Dialer,
            port_use: libp2p::core::transport::PortUse::New,
        };
        let dial = SourceBoundTcp::new(Some(source)).dial(addr, opts).unwrap();
        let (accepted, dialled) = tokio::join!(listener.accept(), dial);
        dialled.unwrap();
        assert_eq!(accepted.unwrap().1.ip(), source);
    }
}
