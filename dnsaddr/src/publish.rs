//! Publishing one peer's entries by RFC 2136 dynamic update, signed with
//! TSIG (RFC 8945).
//!
//! # Brief overview
//!
//! [`Publisher::publish`] asks the primary server (over TCP) for the zone
//! holding `_dnsaddr.<domain>` (its SOA) and for the TXT records there
//! now, then sends **one** UPDATE that deletes this peer's values that are
//! no longer wanted (each by its exact RDATA, RFC 2136 §2.5.4) and adds the
//! missing ones. Values of other peers, and TXT records that are not
//! dnsaddr entries, are never touched, so several nodes can publish under
//! one domain without coordinating. Nothing is sent when the server already
//! holds exactly the wanted set. [`Publisher::withdraw`] removes the peer's
//! values.
//!
//! A refused update (wrong key: NOTAUTH/BADSIG; no permission: REFUSED)
//! changes nothing on the server: an UPDATE is applied whole or not at all.
//!
//! Called by: the sidecar's `dnsaddr publish`. Must never: delete a value
//! that does not end with this peer's `/p2p/<id>`.

use std::{net::SocketAddr, time::Duration};

use base64::Engine as _;
use hickory_net::{
    DnsHandle, DnsMultiplexer, NetError,
    client::Client,
    proto::{
        op::{DnsRequest, Message, OpCode, Query, ResponseCode, UpdateMessage},
        rr::{
            DNSClass, Name, RData, Record, RecordType, TSigner,
            rdata::{TXT, tsig::TsigAlgorithm},
        },
    },
    runtime::TokioRuntimeProvider,
    tcp::TcpClientStream,
    xfer::FirstAnswer,
};
use multiaddr::{Multiaddr, PeerId, Protocol};

use crate::{records::RecordSet, txt};

/// Time allowed for each exchange with the server.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Allowed clock difference between us and the server, in seconds
/// (RFC 8945 §10 recommends 300).
pub const TSIG_FUDGE: u16 = 300;

/// Why an update could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(
        "TSIG key {0:?}: expected <algorithm>:<key name>:<base64 secret>, e.g. \
         hmac-sha256:sidecar:c2VjcmV0…"
    )]
    TsigSyntax(String),
    #[error("TSIG algorithm {0:?} is not one of hmac-sha256, hmac-sha384, hmac-sha512")]
    TsigAlgorithm(String),
    #[error("{name}: no zone for it on {server} (no SOA found at it or any parent)")]
    NoZone { name: String, server: SocketAddr },
    #[error("{server} refused the update: {rcode}{hint}")]
    Refused {
        server: SocketAddr,
        rcode: String,
        hint: &'static str,
    },
    /// A server refuses a wrong secret (BADSIG) or an unknown key name
    /// (BADKEY) with an unsigned answer, which is all the client sees.
    #[error(
        "{server} refused the TSIG key: its answer is not signed with it (a wrong secret \
         or an unknown key name); check the key name, algorithm and secret"
    )]
    BadKey { server: SocketAddr, detail: String },
    #[error("{server}: {detail}")]
    Exchange { server: SocketAddr, detail: String },
    #[error("{0}")]
    Domain(#[from] txt::DomainError),
}

/// A TSIG key: algorithm, key name and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Tsig {
    pub algorithm: String,
    pub name: String,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for Tsig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tsig")
            .field("algorithm", &self.algorithm)
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Tsig {
    /// Parses `<algorithm>:<key name>:<base64 secret>` (`nsupdate -y`'s
    /// form; the algorithm may be left out for hmac-sha256).
    pub fn parse(spec: &str) -> Result<Tsig, PublishError> {
        let parts: Vec<&str> = spec.trim().splitn(3, ':').collect();
        let (algorithm, name, secret) = match parts.as_slice() {
            [a, n, s] => (a.to_ascii_lowercase(), *n, *s),
            [n, s] => ("hmac-sha256".to_owned(), *n, *s),
            _ => return Err(PublishError::TsigSyntax(redact(spec))),
        };
        if !matches!(
            algorithm.as_str(),
            "hmac-sha256" | "hmac-sha384" | "hmac-sha512"
        ) {
            return Err(PublishError::TsigAlgorithm(algorithm));
        }
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret)
            .map_err(|_| PublishError::TsigSyntax(redact(spec)))?;
        if name.is_empty() || secret.is_empty() {
            return Err(PublishError::TsigSyntax(redact(spec)));
        }
        Ok(Tsig {
            algorithm,
            name: name.to_owned(),
            secret,
        })
    }

    fn signer(&self) -> Result<TSigner, PublishError> {
        let algorithm = match self.algorithm.as_str() {
            "hmac-sha256" => TsigAlgorithm::HmacSha256,
            "hmac-sha384" => TsigAlgorithm::HmacSha384,
            "hmac-sha512" => TsigAlgorithm::HmacSha512,
            other => return Err(PublishError::TsigAlgorithm(other.to_owned())),
        };
        let name = Name::from_ascii(&self.name)
            .map_err(|_| PublishError::TsigSyntax(format!("{}:…", self.name)))?;
        TSigner::new(self.secret.clone(), algorithm, name, TSIG_FUDGE)
            .map_err(|e| PublishError::TsigAlgorithm(e.to_string()))
    }
}

/// Shows a key spec without its secret.
fn redact(spec: &str) -> String {
    match spec.rsplit_once(':') {
        Some((head, _)) => format!("{head}:…"),
        None => "…".to_owned(),
    }
}

/// What an update changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Update {
    /// The zone updated (its SOA owner).
    pub zone: String,
    /// `_dnsaddr.<domain>.`
    pub name: String,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// This peer's values already there and wanted.
    pub kept: Vec<String>,
    /// Values of other peers (and other TXT records) left alone.
    pub others: usize,
}

impl Update {
    /// Whether the server was changed.
    pub fn changed(&self) -> bool {
        !(self.added.is_empty() && self.removed.is_empty())
    }
}

/// Sends dnsaddr updates to one primary server.
#[derive(Debug, Clone)]
pub struct Publisher {
    server: SocketAddr,
    tsig: Option<Tsig>,
    timeout: Duration,
}

impl Publisher {
    /// Updates go to `server` (the zone's primary), signed with `tsig`
    /// when given.
    pub fn new(server: SocketAddr, tsig: Option<Tsig>) -> Self {
        Self {
            server,
            tsig,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Time allowed for each exchange. Defaults to [`DEFAULT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Makes the server hold exactly `set`'s values for its peer; see the
    /// module docs.
    pub async fn publish(&self, set: &RecordSet) -> Result<Update, PublishError> {
        let peer = parse_peer(&set.peer)?;
        self.apply(&set.domain, peer, &set.values, set.ttl).await
    }

    /// Removes every value of `peer` under `_dnsaddr.<domain>`.
    pub async fn withdraw(&self, domain: &str, peer: PeerId) -> Result<Update, PublishError> {
        self.apply(domain, peer, &[], 0).await
    }

    async fn apply(
        &self,
        domain: &str,
        peer: PeerId,
        wanted: &[String],
        ttl: u32,
    ) -> Result<Update, PublishError> {
        let domain = txt::check_domain(domain)?;
        let name_text = txt::txt_name(&domain);
        let name = self.name(&name_text)?;
        // Queries are not signed: only the update needs the key.
        let plain = self.client(None).await?;
        let zone = self.find_zone(&plain, &name).await?;
        let current = self.txt_values(&plain, &name).await?;
        let ours = |v: &String| {
            txt::parse_value(v.as_bytes())
                .map(|a| ends_with_peer(&a, peer))
                .unwrap_or(false)
        };
        let mut update = Update {
            zone: zone.to_ascii(),
            name: name_text,
            added: wanted
                .iter()
                .filter(|v| !current.contains(v))
                .cloned()
                .collect(),
            removed: current
                .iter()
                .filter(|v| ours(v) && !wanted.contains(v))
                .cloned()
                .collect(),
            kept: current
                .iter()
                .filter(|v| ours(v) && wanted.contains(v))
                .cloned()
                .collect(),
            others: current.iter().filter(|v| !ours(v)).count(),
        };
        update.added.dedup();
        if !update.changed() {
            return Ok(update);
        }
        let mut message = Message::query();
        message.metadata.op_code = OpCode::Update;
        message.metadata.recursion_desired = false;
        let mut zone_q = Query::new();
        zone_q
            .set_name(zone)
            .set_query_class(DNSClass::IN)
            .set_query_type(RecordType::SOA);
        message.add_zone(zone_q);
        for value in &update.removed {
            let mut r = Record::from_rdata(name.clone(), 0, RData::TXT(txt_rdata(value)));
            r.dns_class = DNSClass::NONE;
            message.add_update(r);
        }
        for value in &update.added {
            message.add_update(Record::from_rdata(
                name.clone(),
                ttl,
                RData::TXT(txt_rdata(value)),
            ));
        }
        let signed = self.client(self.tsig.as_ref()).await?;
        let answer = signed
            .send(DnsRequest::from(message))
            .first_answer()
            .await
            .map_err(|e| self.exchange_error(e))?;
        let rcode = answer.metadata.response_code;
        if rcode != ResponseCode::NoError {
            return Err(self.refused(rcode));
        }
        Ok(update)
    }

    fn name(&self, text: &str) -> Result<Name, PublishError> {
        Name::from_ascii(text).map_err(|e| PublishError::Exchange {
            server: self.server,
            detail: format!("{text:?} is not a DNS name: {e}"),
        })
    }

    /// A client on a fresh TCP connection, signing with `tsig`.
    async fn client(
        &self,
        tsig: Option<&Tsig>,
    ) -> Result<Client<TokioRuntimeProvider>, PublishError> {
        let (connect, handle) = TcpClientStream::new(
            self.server,
            None,
            Some(self.timeout),
            TokioRuntimeProvider::new(),
        );
        let stream = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| PublishError::Exchange {
                server: self.server,
                detail: "connecting timed out".into(),
            })?
            .map_err(|e| PublishError::Exchange {
                server: self.server,
                detail: format!("cannot connect: {e}"),
            })?;
        let mut mux = DnsMultiplexer::new(stream, handle).with_timeout(self.timeout);
        if let Some(t) = tsig {
            mux = mux.with_signer(t.signer()?);
        }
        let (client, background) = Client::<TokioRuntimeProvider>::from_sender(mux);
        tokio::spawn(background);
        Ok(client)
    }

    /// The zone `name` belongs to: the closest enclosing name with an SOA.
    async fn find_zone(
        &self,
        client: &Client<TokioRuntimeProvider>,
        name: &Name,
    ) -> Result<Name, PublishError> {
        let mut candidate = name.clone();
        loop {
            let answer = self.query(client, &candidate, RecordType::SOA).await?;
            if answer
                .answers
                .iter()
                .any(|r| r.record_type() == RecordType::SOA && r.name == candidate)
            {
                return Ok(candidate);
            }
            if let Some(soa) = answer
                .authorities
                .iter()
                .find(|r| r.record_type() == RecordType::SOA)
            {
                return Ok(soa.name.clone());
            }
            if candidate.is_root() || candidate.num_labels() == 0 {
                return Err(PublishError::NoZone {
                    name: name.to_ascii(),
                    server: self.server,
                });
            }
            candidate = candidate.base_name();
        }
    }

    /// The TXT values at `name` on the server (each record's strings
    /// joined, lossy UTF-8).
    async fn txt_values(
        &self,
        client: &Client<TokioRuntimeProvider>,
        name: &Name,
    ) -> Result<Vec<String>, PublishError> {
        let answer = self.query(client, name, RecordType::TXT).await?;
        Ok(answer
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(t) => Some(String::from_utf8_lossy(&t.txt_data.concat()).into_owned()),
                _ => None,
            })
            .collect())
    }

    async fn query(
        &self,
        client: &Client<TokioRuntimeProvider>,
        name: &Name,
        rtype: RecordType,
    ) -> Result<Message, PublishError> {
        let mut message = Message::query();
        message.metadata.recursion_desired = false;
        let mut q = Query::new();
        q.set_name(name.clone())
            .set_query_class(DNSClass::IN)
            .set_query_type(rtype);
        message.add_query(q);
        match client.send(DnsRequest::from(message)).first_answer().await {
            Ok(r) => Ok(r.into_message()),
            // NXDOMAIN and empty answers come back as errors; the
            // authority section is then what matters.
            Err(NetError::Dns(hickory_net::DnsError::NoRecordsFound(n))) => {
                let mut m = Message::query();
                if let Some(soa) = n.soa {
                    m.authorities.push(soa.into_record_of_rdata());
                }
                Ok(m)
            }
            Err(e) => Err(self.exchange_error(e)),
        }
    }

    fn exchange_error(&self, e: NetError) -> PublishError {
        let detail = e.to_string();
        match e {
            NetError::Dns(hickory_net::DnsError::ResponseCode(rcode)) => self.refused(rcode),
            _ if self.tsig.is_some() && detail.to_ascii_lowercase().contains("tsig") => {
                PublishError::BadKey {
                    server: self.server,
                    detail,
                }
            }
            _ => PublishError::Exchange {
                server: self.server,
                detail,
            },
        }
    }

    fn refused(&self, rcode: ResponseCode) -> PublishError {
        let hint = match rcode {
            ResponseCode::NotAuth => {
                " (the server does not accept this key for the zone: check the TSIG key \
                 and the zone's update ACL)"
            }
            ResponseCode::Refused => " (updates are not allowed for this client or zone)",
            ResponseCode::NotZone => " (the name is not in the zone the server answered for)",
            _ => "",
        };
        PublishError::Refused {
            server: self.server,
            rcode: rcode.to_string(),
            hint,
        }
    }
}

fn txt_rdata(value: &str) -> TXT {
    TXT::from_bytes(vec![value.as_bytes()])
}

fn parse_peer(text: &str) -> Result<PeerId, PublishError> {
    text.parse().map_err(|_| PublishError::Exchange {
        server: SocketAddr::from(([0, 0, 0, 0], 0)),
        detail: format!("{text:?} is not a peer ID"),
    })
}

fn ends_with_peer(addr: &Multiaddr, peer: PeerId) -> bool {
    matches!(addr.iter().last(), Some(Protocol::P2p(p)) if p == peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsig_specs_parse_and_never_show_their_secret() {
        let t = Tsig::parse("hmac-sha256:sidecar-key:c2VjcmV0").unwrap();
        assert_eq!(t.name, "sidecar-key");
        assert_eq!(t.secret, b"secret");
        assert!(!format!("{t:?}").contains("c2VjcmV0"));
        assert_eq!(Tsig::parse("k:c2VjcmV0").unwrap().algorithm, "hmac-sha256");
        assert!(matches!(
            Tsig::parse("hmac-md5:k:c2VjcmV0"),
            Err(PublishError::TsigAlgorithm(_))
        ));
        let err = Tsig::parse("hmac-sha256:k:not base64!").unwrap_err();
        assert!(!err.to_string().contains("not base64"), "{err}");
        assert!(matches!(
            Tsig::parse("nocolon"),
            Err(PublishError::TsigSyntax(_))
        ));
        assert!(t.signer().is_ok());
    }

    #[test]
    fn only_values_ending_in_the_peer_are_ours() {
        let p: PeerId = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
            .parse()
            .unwrap();
        let mine: Multiaddr = format!("/ip4/1.2.3.4/tcp/1/p2p/{p}").parse().unwrap();
        let relay: Multiaddr = format!("/ip4/1.2.3.4/tcp/1/p2p/{p}/p2p-circuit")
            .parse()
            .unwrap();
        assert!(ends_with_peer(&mine, p));
        assert!(!ends_with_peer(&relay, p));
        assert!(!ends_with_peer(&"/dnsaddr/x.test".parse().unwrap(), p));
    }
}
