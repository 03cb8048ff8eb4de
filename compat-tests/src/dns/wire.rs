//! Pure DNS wire helpers shared by the DoH relay, the `knotd` readiness probe and the
//! tests: a query encoder ([`encode_query`]), the fixed header ([`Header`]), the TXT
//! answer reader ([`answer_txt`]) and the zone-file/presentation TXT syntax
//! ([`txt_rdata`], [`parse_presentation_strings`]).
//!
//! Called by the parent `dns` module (which re-exports everything public here as
//! `compat_tests::dns::*`), by `dns::doh`, and by the `dns_rig` tests. Bytes and strings in,
//! values out: this module must never do I/O, spawn processes or read the clock.

use anyhow::{Result, anyhow, bail, ensure};

/// Longest TXT character-string (RFC 1035 §3.3: one length byte).
pub const MAX_CHARACTER_STRING: usize = 255;
/// DNS RR type TXT.
pub const TYPE_TXT: u16 = 16;
/// DNS RR type SOA.
pub const TYPE_SOA: u16 = 6;
/// DNS class IN.
pub const CLASS_IN: u16 = 1;
/// Size of the fixed DNS message header.
pub const HEADER_LEN: usize = 12;

/// TXT rdata in zone-file syntax: `value` cut into quoted character-strings of at most
/// [`MAX_CHARACTER_STRING`] bytes, `"` and `\` escaped, other non-printables as `\DDD`.
pub fn txt_rdata(value: &[u8]) -> String {
    if value.is_empty() {
        return "\"\"".to_owned();
    }
    let quoted: Vec<String> = value
        .chunks(MAX_CHARACTER_STRING)
        .map(|chunk| {
            let mut s = String::from("\"");
            for &b in chunk {
                match b {
                    b'"' | b'\\' => {
                        s.push('\\');
                        s.push(b as char);
                    }
                    0x20..=0x7e => s.push(b as char),
                    _ => s.push_str(&format!("\\{b:03}")),
                }
            }
            s.push('"');
            s
        })
        .collect();
    quoted.join(" ")
}

/// The character-strings of one TXT record in presentation format (`"a" "b\"c" "\255"`),
/// as `kdig` prints them, unescaped.
pub fn parse_presentation_strings(line: &str) -> Result<Vec<Vec<u8>>> {
    let bytes = line.trim().as_bytes();
    let mut strings = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        ensure!(
            bytes[i] == b'"',
            "expected a quoted string at byte {i} of {line:?}"
        );
        i += 1;
        let mut s = Vec::new();
        loop {
            match bytes.get(i) {
                None => bail!("unterminated string in {line:?}"),
                Some(b'"') => {
                    i += 1;
                    break;
                }
                Some(b'\\') => {
                    let digits = bytes
                        .get(i + 1..i + 4)
                        .filter(|d| d.iter().all(u8::is_ascii_digit));
                    if let Some(d) = digits {
                        let v = d.iter().fold(0u32, |acc, c| acc * 10 + u32::from(c - b'0'));
                        s.push(u8::try_from(v).map_err(|_| anyhow!("bad escape in {line:?}"))?);
                        i += 4;
                    } else {
                        let c = bytes
                            .get(i + 1)
                            .ok_or_else(|| anyhow!("dangling \\ in {line:?}"))?;
                        s.push(*c);
                        i += 2;
                    }
                }
                Some(&c) => {
                    s.push(c);
                    i += 1;
                }
            }
        }
        strings.push(s);
    }
    Ok(strings)
}

/// The fixed header of a DNS message (RFC 1035 §4.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Message ID.
    pub id: u16,
    /// QR, opcode, AA, TC, RD, RA, Z, rcode.
    pub flags: u16,
    /// Question count.
    pub qdcount: u16,
    /// Answer count.
    pub ancount: u16,
    /// Authority count.
    pub nscount: u16,
    /// Additional count.
    pub arcount: u16,
}

impl Header {
    /// The header of `msg`, or `None` if it is shorter than [`HEADER_LEN`].
    pub fn parse(msg: &[u8]) -> Option<Header> {
        let word = |i: usize| Some(u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]));
        Some(Header {
            id: word(0)?,
            flags: word(2)?,
            qdcount: word(4)?,
            ancount: word(6)?,
            nscount: word(8)?,
            arcount: word(10)?,
        })
    }

    /// QR: this is a response.
    pub fn is_response(&self) -> bool {
        self.flags & 0x8000 != 0
    }

    /// The opcode (0 = QUERY, 5 = UPDATE).
    pub fn opcode(&self) -> u16 {
        (self.flags >> 11) & 0xf
    }

    /// AA: the answer is authoritative.
    pub fn authoritative(&self) -> bool {
        self.flags & 0x0400 != 0
    }

    /// TC: the answer was truncated to fit the transport.
    pub fn truncated(&self) -> bool {
        self.flags & 0x0200 != 0
    }

    /// The 4-bit rcode (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED).
    pub fn rcode(&self) -> u16 {
        self.flags & 0xf
    }
}

/// A standard query (RD set, one question of class IN, no EDNS) for `name` (absolute; the
/// trailing dot is optional) and `qtype`.
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>> {
    let mut msg = Vec::with_capacity(HEADER_LEN + name.len() + 6);
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    msg.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QDCOUNT=1, others 0
    let bare = name.trim_end_matches('.');
    if !bare.is_empty() {
        for label in bare.split('.') {
            let len = u8::try_from(label.len())
                .ok()
                .filter(|l| (1..=63).contains(l))
                .ok_or_else(|| anyhow!("bad label {label:?} in {name:?}"))?;
            msg.push(len);
            msg.extend_from_slice(label.as_bytes());
        }
    }
    msg.push(0);
    ensure!(msg.len() - HEADER_LEN <= 255, "name too long: {name:?}");
    msg.extend_from_slice(&qtype.to_be_bytes());
    msg.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(msg)
}

/// Offset just past the (possibly compressed) name at `pos`, or `None` if it runs off `msg`.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)?;
        match len {
            0 => return Some(pos + 1),
            l if l & 0xc0 == 0xc0 => return msg.get(pos + 1).map(|_| pos + 2),
            l if l & 0xc0 == 0 => pos += 1 + usize::from(l),
            _ => return None,
        }
    }
}

/// Offset just past the question section of a one-question `msg`, or `None`.
pub(super) fn question_end(msg: &[u8]) -> Option<usize> {
    let end = skip_name(msg, HEADER_LEN)? + 4;
    (end <= msg.len()).then_some(end)
}

/// Every TXT record in the answer section of `msg`, each as its character-strings.
pub fn answer_txt(msg: &[u8]) -> Result<Vec<Vec<Vec<u8>>>> {
    let h = Header::parse(msg).ok_or_else(|| anyhow!("message shorter than a header"))?;
    let mut pos = HEADER_LEN;
    for _ in 0..h.qdcount {
        pos = skip_name(msg, pos).ok_or_else(|| anyhow!("bad question name"))? + 4;
    }
    let mut records = Vec::new();
    for _ in 0..h.ancount {
        pos = skip_name(msg, pos).ok_or_else(|| anyhow!("bad answer name"))?;
        let fixed = msg
            .get(pos..pos + 10)
            .ok_or_else(|| anyhow!("answer runs off the message"))?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        pos += 10;
        let rdata = msg
            .get(pos..pos + rdlen)
            .ok_or_else(|| anyhow!("rdata runs off the message"))?;
        pos += rdlen;
        if rtype != TYPE_TXT {
            continue;
        }
        let mut strings = Vec::new();
        let mut i = 0;
        while i < rdata.len() {
            let len = usize::from(rdata[i]);
            let s = rdata
                .get(i + 1..i + 1 + len)
                .ok_or_else(|| anyhow!("character-string runs off the rdata"))?;
            strings.push(s.to_vec());
            i += 1 + len;
        }
        records.push(strings);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_rdata_splits_at_255_and_escapes() {
        assert_eq!(txt_rdata(b"a\"b\\c\n"), r#""a\"b\\c\010""#);
        let long = vec![b'x'; 300];
        let rdata = txt_rdata(&long);
        let strings = parse_presentation_strings(&rdata).unwrap();
        assert_eq!(strings.iter().map(Vec::len).collect::<Vec<_>>(), [255, 45]);
        assert_eq!(strings.concat(), long);
    }

    #[test]
    fn query_round_trips_through_the_header_parser() {
        let q = encode_query(0x1234, "_dnsaddr.a.sidecar.test.", TYPE_TXT).unwrap();
        let h = Header::parse(&q).unwrap();
        assert_eq!((h.id, h.flags, h.qdcount), (0x1234, 0x0100, 1));
        assert_eq!(question_end(&q), Some(q.len()));
        assert!(encode_query(1, "a..b", TYPE_TXT).is_err());
    }
}
