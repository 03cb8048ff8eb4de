//! The wire format: `dnsaddr=<multiaddr>` TXT values at `_dnsaddr.<domain>`,
//! and the domain names they hang off. Pure: bytes in, values out, no I/O.
//!
//! A TXT record is one or more character-strings of at most 255 bytes
//! each. Resolvers disagree on what to do with a record of several (Go's
//! `net.LookupTXT` joins them, Node returns each piece as its own answer),
//! so a value must fit in one: [`parse_txt`] joins the pieces it is given
//! and refuses more than [`MAX_TXT_VALUE`] bytes, [`format_txt`] never
//! produces more.

use std::str::FromStr;

use multiaddr::{Multiaddr, Protocol};

/// What every dnsaddr TXT value starts with.
pub const PREFIX: &str = "dnsaddr=";
/// The label the TXT records live under: `_dnsaddr.<domain>`.
pub const TXT_LABEL: &str = "_dnsaddr";
/// Longest TXT value accepted or produced: one DNS character-string
/// (RFC 1035 §3.3). Longer values are split by DNS servers and rejoined
/// differently by different resolvers.
pub const MAX_TXT_VALUE: usize = 255;
/// Longest domain name, in its dotted text form without the final dot
/// (RFC 1035 §2.3.4: 255 bytes on the wire).
pub const MAX_DOMAIN_LEN: usize = 253;
/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// Why a TXT value is not a dnsaddr entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxtError {
    /// Longer than one character-string.
    #[error(
        "the value is {len} bytes; a dnsaddr TXT value must be at most {MAX_TXT_VALUE} \
         (longer ones are split into several strings and rejoined differently by Go and \
         Node resolvers)"
    )]
    TooLong { len: usize },
    #[error("the value is not UTF-8")]
    NotUtf8,
    /// Another TXT record at the same name (e.g. a verification token);
    /// resolvers skip it.
    #[error("the value does not start with {PREFIX:?}: {start:?}")]
    WrongPrefix { start: String },
    #[error("{value:?} is not a multiaddr: {reason}")]
    NotMultiaddr { value: String, reason: String },
}

/// Why a domain name cannot carry dnsaddr records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("the domain is empty")]
    Empty,
    #[error("the domain is {len} bytes; at most {MAX_DOMAIN_LEN}")]
    TooLong { len: usize },
    #[error("label {label:?} of {domain:?} is empty or longer than {MAX_LABEL_LEN} bytes")]
    BadLabel { domain: String, label: String },
    #[error(
        "{domain:?} holds {found:?}: a host name is made of letters, digits, '-' and '_' \
         separated by dots"
    )]
    BadCharacter { domain: String, found: char },
}

/// Parses one TXT record (its character-strings, joined) as a dnsaddr
/// entry.
pub fn parse_txt(strings: &[&[u8]]) -> Result<Multiaddr, TxtError> {
    let len: usize = strings.iter().map(|s| s.len()).sum();
    if len > MAX_TXT_VALUE {
        return Err(TxtError::TooLong { len });
    }
    let joined: Vec<u8> = strings.concat();
    parse_value(&joined)
}

/// Parses one TXT value (`dnsaddr=/ip4/…`).
pub fn parse_value(value: &[u8]) -> Result<Multiaddr, TxtError> {
    if value.len() > MAX_TXT_VALUE {
        return Err(TxtError::TooLong { len: value.len() });
    }
    let text = std::str::from_utf8(value).map_err(|_| TxtError::NotUtf8)?;
    let Some(rest) = text.strip_prefix(PREFIX) else {
        return Err(TxtError::WrongPrefix {
            start: text.chars().take(16).collect(),
        });
    };
    Multiaddr::from_str(rest).map_err(|e| TxtError::NotMultiaddr {
        value: rest.to_owned(),
        reason: e.to_string(),
    })
}

/// The TXT value for `addr`, refusing one that would not fit.
pub fn format_txt(addr: &Multiaddr) -> Result<String, TxtError> {
    let value = format!("{PREFIX}{addr}");
    if value.len() > MAX_TXT_VALUE {
        return Err(TxtError::TooLong { len: value.len() });
    }
    Ok(value)
}

/// Checks a domain name and returns it lower-cased, without a final dot.
/// Underscores are allowed (`_dnsaddr` labels, service names).
pub fn check_domain(domain: &str) -> Result<String, DomainError> {
    let d = domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase();
    if d.is_empty() {
        return Err(DomainError::Empty);
    }
    if d.len() > MAX_DOMAIN_LEN {
        return Err(DomainError::TooLong { len: d.len() });
    }
    for label in d.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL_LEN {
            return Err(DomainError::BadLabel {
                domain: d.clone(),
                label: label.to_owned(),
            });
        }
        if let Some(found) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(DomainError::BadCharacter { domain: d, found });
        }
    }
    Ok(d)
}

/// `_dnsaddr.<domain>`, fully qualified (with the final dot).
pub fn txt_name(domain: &str) -> String {
    format!(
        "{TXT_LABEL}.{}.",
        domain.strip_suffix('.').unwrap_or(domain)
    )
}

/// Splits `/dnsaddr/<domain>/<rest…>` into the domain and the trailing
/// components; `None` when `addr` does not start with `/dnsaddr`.
pub fn split_dnsaddr(addr: &Multiaddr) -> Option<(String, Vec<Protocol<'static>>)> {
    let mut it = addr.iter();
    match it.next() {
        Some(Protocol::Dnsaddr(domain)) => Some((
            domain.into_owned(),
            it.map(|p| p.acquire()).collect::<Vec<_>>(),
        )),
        _ => None,
    }
}

/// Whether `addr` ends with the components `suffix` (component by
/// component, not as text: `/p2p/QmA` is not a suffix of `/p2p/QmAB`).
pub fn ends_with(addr: &Multiaddr, suffix: &[Protocol<'_>]) -> bool {
    let parts: Vec<Protocol<'_>> = addr.iter().collect();
    parts.len() >= suffix.len() && parts[parts.len() - suffix.len()..] == *suffix
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";

    fn ma(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn values_parse_and_format_back() {
        let addr = ma(&format!("/ip4/192.0.2.1/tcp/4001/p2p/{PEER}"));
        let value = format_txt(&addr).unwrap();
        assert_eq!(value, format!("dnsaddr=/ip4/192.0.2.1/tcp/4001/p2p/{PEER}"));
        assert_eq!(parse_value(value.as_bytes()).unwrap(), addr);
        let (a, b) = value.as_bytes().split_at(20);
        assert_eq!(parse_txt(&[a, b]).unwrap(), addr);
        let nested = ma("/dnsaddr/eu.example.com");
        assert_eq!(
            parse_value(b"dnsaddr=/dnsaddr/eu.example.com").unwrap(),
            nested
        );
    }

    #[test]
    fn bad_values_get_precise_errors() {
        assert_eq!(
            parse_value(b"google-site-verification=abc"),
            Err(TxtError::WrongPrefix {
                start: "google-site-veri".into()
            })
        );
        assert_eq!(parse_value(b"dnsaddr\xff"), Err(TxtError::NotUtf8));
        let err = parse_value(b"dnsaddr=/ip4/300.0.0.1/tcp/1").unwrap_err();
        assert!(
            matches!(&err, TxtError::NotMultiaddr { value, .. } if value == "/ip4/300.0.0.1/tcp/1"),
            "{err}"
        );
        assert!(matches!(
            parse_value(b"dnsaddr=ip4/1.2.3.4"),
            Err(TxtError::NotMultiaddr { .. })
        ));
    }

    #[test]
    fn the_255_byte_bound_holds_both_ways() {
        // "dnsaddr=" (8) + "/dnsaddr/" (9) + a domain made to land exactly on 255.
        let domain_len = MAX_TXT_VALUE - 8 - 9;
        let labels: Vec<String> = (0..4).map(|_| "a".repeat(59)).collect();
        let mut domain = labels.join(".");
        domain.truncate(domain_len);
        assert_eq!(domain.len(), 238);
        let fits = ma(&format!("/dnsaddr/{domain}"));
        let value = format_txt(&fits).unwrap();
        assert_eq!(value.len(), 255);
        assert_eq!(parse_value(value.as_bytes()).unwrap(), fits);
        let over = ma(&format!("/dnsaddr/{domain}/p2p/{PEER}"));
        let len = 8 + over.to_string().len();
        assert_eq!(format_txt(&over), Err(TxtError::TooLong { len }));
        let long = format!("dnsaddr={over}");
        assert_eq!(
            parse_value(long.as_bytes()),
            Err(TxtError::TooLong { len: long.len() })
        );
        let (a, b) = long.as_bytes().split_at(200);
        assert_eq!(
            parse_txt(&[a, b]),
            Err(TxtError::TooLong { len: long.len() })
        );
    }

    #[test]
    fn domains_are_checked_and_normalised() {
        assert_eq!(check_domain("Example.COM.").unwrap(), "example.com");
        assert_eq!(
            check_domain("_dnsaddr.a-b.test").unwrap(),
            "_dnsaddr.a-b.test"
        );
        assert_eq!(check_domain(""), Err(DomainError::Empty));
        assert!(matches!(
            check_domain("a..b"),
            Err(DomainError::BadLabel { .. })
        ));
        assert!(matches!(
            check_domain(&"x".repeat(64)),
            Err(DomainError::BadLabel { .. })
        ));
        assert!(matches!(
            check_domain("a b.test"),
            Err(DomainError::BadCharacter { found: ' ', .. })
        ));
        let long = vec!["a".repeat(60); 5].join(".");
        assert_eq!(check_domain(&long), Err(DomainError::TooLong { len: 304 }));
        assert_eq!(txt_name("example.com"), "_dnsaddr.example.com.");
        assert_eq!(txt_name("example.com."), "_dnsaddr.example.com.");
    }

    #[test]
    fn suffixes_match_whole_components() {
        let addr = ma(&format!("/ip4/192.0.2.1/tcp/4001/p2p/{PEER}"));
        let (domain, rest) = split_dnsaddr(&ma(&format!("/dnsaddr/x.test/p2p/{PEER}"))).unwrap();
        assert_eq!(domain, "x.test");
        assert!(ends_with(&addr, &rest));
        assert!(ends_with(&addr, &[]));
        let other = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTM";
        let (_, rest) = split_dnsaddr(&ma(&format!("/dnsaddr/x.test/p2p/{other}"))).unwrap();
        assert!(!ends_with(&addr, &rest));
        assert!(split_dnsaddr(&addr).is_none());
    }
}
