//! Generating the record set for one peer: its dialable addresses, each
//! ending in `/p2p/<peer id>`, as `dnsaddr=` TXT values under
//! `_dnsaddr.<domain>`, printed as BIND zone-file lines or JSON. Pure.

use multiaddr::{Multiaddr, PeerId, Protocol};
use serde::Serialize;

use crate::txt::{self, DomainError, TxtError};

/// TTL of generated records: short enough that moving a node takes effect
/// within minutes, long enough to spare the DNS servers.
pub const DEFAULT_TTL: u32 = 300;

/// Why an address cannot be advertised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    #[error("domain: {0}")]
    Domain(#[from] DomainError),
    #[error("{addr}: {source}")]
    Txt {
        addr: Multiaddr,
        #[source]
        source: TxtError,
    },
    /// `0.0.0.0` / `::` listen on every interface but dial none.
    #[error("{0} is an unspecified (listen-everywhere) address; announce a dialable one")]
    Unspecified(Multiaddr),
    /// The address ends in another peer's `/p2p/<id>` (peer IDs as text).
    #[error("{addr} names peer {found}, not {expected}")]
    OtherPeer {
        addr: Multiaddr,
        found: String,
        expected: String,
    },
    #[error("no addresses to advertise")]
    Empty,
}

/// The TXT records one peer puts under `_dnsaddr.<domain>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordSet {
    /// The domain, without a final dot.
    pub domain: String,
    /// `_dnsaddr.<domain>.`
    pub name: String,
    pub ttl: u32,
    pub peer: String,
    /// `dnsaddr=…` values, in the order given, duplicates removed.
    pub values: Vec<String>,
}

impl RecordSet {
    /// Builds the set for `peer` at `domain` from its addresses (with or
    /// without `/p2p/<peer>`).
    pub fn new(
        domain: &str,
        peer: PeerId,
        addrs: &[Multiaddr],
        ttl: u32,
    ) -> Result<RecordSet, GenerateError> {
        let domain = txt::check_domain(domain)?;
        let mut values: Vec<String> = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let full = with_peer(addr, peer)?;
            let value = txt::format_txt(&full).map_err(|source| GenerateError::Txt {
                addr: full.clone(),
                source,
            })?;
            if !values.contains(&value) {
                values.push(value);
            }
        }
        if values.is_empty() {
            return Err(GenerateError::Empty);
        }
        Ok(RecordSet {
            name: txt::txt_name(&domain),
            domain,
            ttl,
            peer: peer.to_string(),
            values,
        })
    }

    /// BIND zone-file lines, one per value.
    pub fn zone_lines(&self) -> Vec<String> {
        self.values
            .iter()
            .map(|v| format!("{} {} IN TXT \"{v}\"", self.name, self.ttl))
            .collect()
    }

    /// The set as pretty JSON.
    pub fn to_json(&self) -> String {
        // A struct of strings and numbers always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// `addr` ending in `/p2p/<peer>`: appended when missing, refused when it
/// names another peer or cannot be dialled.
pub fn with_peer(addr: &Multiaddr, peer: PeerId) -> Result<Multiaddr, GenerateError> {
    if addr.iter().next().is_none() {
        return Err(GenerateError::Empty);
    }
    if addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    }) {
        return Err(GenerateError::Unspecified(addr.clone()));
    }
    match addr.iter().last() {
        Some(Protocol::P2p(found)) if found == peer => Ok(addr.clone()),
        Some(Protocol::P2p(found)) => Err(GenerateError::OtherPeer {
            addr: addr.clone(),
            found: found.to_string(),
            expected: peer.to_string(),
        }),
        _ => Ok(addr.clone().with(Protocol::P2p(peer))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
            .parse()
            .unwrap()
    }

    fn ma(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_set_gets_the_peer_id_once_and_prints_as_zone_lines_and_json() {
        let p = peer();
        let addrs = [
            ma("/ip4/192.0.2.1/tcp/4001"),
            ma(&format!("/ip4/192.0.2.1/tcp/4001/p2p/{p}")),
            ma("/dns4/node.example.com/tcp/443/wss"),
        ];
        let set = RecordSet::new("Example.com.", p, &addrs, 60).unwrap();
        assert_eq!(set.name, "_dnsaddr.example.com.");
        assert_eq!(
            set.zone_lines(),
            [
                format!(
                    "_dnsaddr.example.com. 60 IN TXT \"dnsaddr=/ip4/192.0.2.1/tcp/4001/p2p/{p}\""
                ),
                format!(
                    "_dnsaddr.example.com. 60 IN TXT \
                     \"dnsaddr=/dns4/node.example.com/tcp/443/wss/p2p/{p}\""
                ),
            ]
        );
        let json: serde_json::Value = serde_json::from_str(&set.to_json()).unwrap();
        assert_eq!(json["values"].as_array().unwrap().len(), 2);
        assert_eq!(json["peer"], p.to_string());
    }

    #[test]
    fn undialable_foreign_and_oversized_addresses_are_refused() {
        let p = peer();
        assert!(matches!(
            RecordSet::new("x.test", p, &[ma("/ip4/0.0.0.0/tcp/4001")], 60),
            Err(GenerateError::Unspecified(_))
        ));
        assert!(matches!(
            RecordSet::new("x.test", p, &[ma("/ip6/::/tcp/4001")], 60),
            Err(GenerateError::Unspecified(_))
        ));
        let other: PeerId = "12D3KooWAt1rftMDWepeketqm6KDThSZNAjCHTtiEx4SoTFH7gB2"
            .parse()
            .unwrap();
        assert!(matches!(
            RecordSet::new(
                "x.test",
                p,
                &[ma(&format!("/ip4/1.2.3.4/tcp/1/p2p/{other}"))],
                60
            ),
            Err(GenerateError::OtherPeer { .. })
        ));
        let long = format!(
            "/dns4/{}.test/tcp/1",
            "a".repeat(63) + "." + &"b".repeat(63) + "." + &"c".repeat(63)
        );
        assert!(matches!(
            RecordSet::new("x.test", p, &[ma(&long)], 60),
            Err(GenerateError::Txt {
                source: TxtError::TooLong { .. },
                ..
            })
        ));
        assert_eq!(
            RecordSet::new("x.test", p, &[], 60),
            Err(GenerateError::Empty)
        );
        assert!(matches!(
            RecordSet::new("bad domain", p, &[ma("/ip4/1.2.3.4/tcp/1")], 60),
            Err(GenerateError::Domain(_))
        ));
    }
}
