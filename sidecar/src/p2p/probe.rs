//! Dialling one address and running identify on it, from a throwaway host
//! with an ephemeral key: how `sidecar dnsaddr check` tells "listed" from
//! "dialable". The dial fails when the address's `/p2p/<id>` is not the
//! peer that answers (the security handshake checks it).
//!
//! Called by: `dnsaddr_command`. Must never: keep the connection or the
//! key (each probe is a new host, dropped at the end).

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::{Multiaddr, PeerId, identify, noise, swarm::SwarmEvent, tcp, tls};

use super::{IDENTIFY_PROTOCOL, mux};

/// What a successful probe learnt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Probe {
    pub peer: String,
    pub agent: String,
    /// Until identify came back.
    pub millis: u64,
    pub protocols: Vec<String>,
}

/// Dials `addr` and waits for the peer's identify, within `timeout`.
pub async fn probe(addr: Multiaddr, timeout: Duration) -> Result<Probe, String> {
    let started = Instant::now();
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            (tls::Config::new, noise::Config::new),
            mux::Upgrade::new,
        )
        .map_err(|e| e.to_string())?
        .with_dns()
        .map_err(|e| e.to_string())?
        .with_websocket((tls::Config::new, noise::Config::new), mux::Upgrade::new)
        .await
        .map_err(|e| e.to_string())?
        .with_behaviour(|key| {
            identify::Behaviour::new(identify::Config::new(
                IDENTIFY_PROTOCOL.to_string(),
                key.public(),
            ))
        })
        .map_err(|e| e.to_string())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(timeout))
        .build();
    swarm.dial(addr.clone()).map_err(|e| e.to_string())?;
    let wait = async {
        let mut connected: Option<PeerId> = None;
        while let Some(event) = swarm.next().await {
            match event {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => connected = Some(peer_id),
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    return Err(one_line(&error.to_string()));
                }
                SwarmEvent::Behaviour(identify::Event::Received { peer_id, info, .. })
                    if Some(peer_id) == connected =>
                {
                    return Ok(Probe {
                        peer: peer_id.to_string(),
                        agent: info.agent_version,
                        millis: started.elapsed().as_millis() as u64,
                        protocols: info.protocols.iter().map(ToString::to_string).collect(),
                    });
                }
                SwarmEvent::Behaviour(identify::Event::Error { error, .. }) => {
                    return Err(format!("identify failed: {error}"));
                }
                _ => {}
            }
        }
        Err("the host stopped".to_owned())
    };
    tokio::time::timeout(timeout, wait)
        .await
        .unwrap_or_else(|_| Err(format!("no identify within {timeout:?}")))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
