//! A tiny, bounded DAG-CBOR decoder and encoder for exactly one value: the CAR
//! header map `{"version": uint, "roots": [CID...]}` (CIDs are tag 42 over a
//! byte string holding `0x00` followed by the binary CID). Anything else
//! (floats, indefinite lengths, unknown keys, nesting) is rejected, so the
//! work per header is linear in its (bounded) length.
//!
//! Called by `header.rs` only. Pure: bytes in, values out; no I/O.

use cid::Cid;

use super::MAX_ROOTS;

/// CBOR tag for IPLD links (<https://github.com/ipld/cid-cbor/>).
const CID_TAG: u64 = 42;

/// CBOR major types used here (RFC 8949 §3.1).
const MAJOR_UINT: u8 = 0;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;
const MAJOR_TAG: u8 = 6;

/// The decoded header. `roots` is `None` when the key is absent (the CARv2
/// pragma is `{"version": 2}` alone).
#[derive(Debug, PartialEq, Eq)]
pub struct RawHeader {
    pub version: u64,
    pub roots: Option<Vec<Cid>>,
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| format!("CBOR ends at byte {}", self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        let n = usize::try_from(n).map_err(|_| "CBOR length too large".to_string())?;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("CBOR item of {n} bytes runs past the header end"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Reads an item head: (major type, argument). Rejects indefinite lengths.
    fn head(&mut self) -> Result<(u8, u64), String> {
        let b = self.byte()?;
        let major = b >> 5;
        let info = b & 0x1f;
        let arg = match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.byte()?),
            25 => {
                let s = self.take(2)?;
                u64::from(u16::from_be_bytes([s[0], s[1]]))
            }
            26 => {
                let s = self.take(4)?;
                u64::from(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
            }
            27 => {
                let s = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                u64::from_be_bytes(a)
            }
            _ => return Err(format!("unsupported CBOR additional info {info}")),
        };
        Ok((major, arg))
    }

    fn expect(&mut self, want: u8, what: &str) -> Result<u64, String> {
        let (major, arg) = self.head()?;
        if major != want {
            return Err(format!("expected {what}, found CBOR major type {major}"));
        }
        Ok(arg)
    }
}

/// Decodes the header map from exactly `buf` (trailing bytes are an error).
pub fn decode_header(buf: &[u8]) -> Result<RawHeader, String> {
    let mut d = Decoder { buf, pos: 0 };
    let entries = d.expect(MAJOR_MAP, "a map")?;
    if entries > 2 {
        return Err(format!(
            "header map has {entries} entries, expected at most 2"
        ));
    }
    let mut version = None;
    let mut roots = None;
    for _ in 0..entries {
        let klen = d.expect(MAJOR_TEXT, "a text key")?;
        let key = d.take(klen)?;
        match key {
            b"version" if version.is_none() => {
                version = Some(d.expect(MAJOR_UINT, "an unsigned version")?);
            }
            b"roots" if roots.is_none() => {
                let n = d.expect(MAJOR_ARRAY, "an array of roots")?;
                if n > MAX_ROOTS as u64 {
                    return Err(format!("{n} roots, over the limit of {MAX_ROOTS}"));
                }
                // Each root takes at least 4 bytes, so `n` is bounded by the
                // header length too; never trust it for a big allocation.
                let mut list = Vec::with_capacity((n as usize).min(buf.len() / 4));
                for i in 0..n {
                    let tag = d.expect(MAJOR_TAG, "a tagged CID")?;
                    if tag != CID_TAG {
                        return Err(format!("root {i}: tag {tag}, expected {CID_TAG}"));
                    }
                    let blen = d.expect(MAJOR_BYTES, "CID bytes")?;
                    let bytes = d.take(blen)?;
                    let Some((&0, cid_bytes)) = bytes.split_first() else {
                        return Err(format!("root {i}: CID bytes lack the 0x00 prefix"));
                    };
                    let cid =
                        Cid::try_from(cid_bytes).map_err(|e| format!("root {i}: bad CID: {e}"))?;
                    list.push(cid);
                }
                roots = Some(list);
            }
            _ => {
                return Err(format!(
                    "unexpected or repeated header key {:?}",
                    String::from_utf8_lossy(key)
                ));
            }
        }
    }
    if d.pos != buf.len() {
        return Err(format!(
            "{} trailing bytes after the header map",
            buf.len() - d.pos
        ));
    }
    let version = version.ok_or("header has no version")?;
    Ok(RawHeader { version, roots })
}

fn put_head(major: u8, arg: u64, out: &mut Vec<u8>) {
    let m = major << 5;
    if arg < 24 {
        out.push(m | arg as u8);
    } else if let Ok(a) = u8::try_from(arg) {
        out.extend_from_slice(&[m | 24, a]);
    } else if let Ok(a) = u16::try_from(arg) {
        out.push(m | 25);
        out.extend_from_slice(&a.to_be_bytes());
    } else if let Ok(a) = u32::try_from(arg) {
        out.push(m | 26);
        out.extend_from_slice(&a.to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&arg.to_be_bytes());
    }
}

/// Encodes a header map in DAG-CBOR canonical key order (shorter keys first:
/// "roots" before "version"). `roots: None` writes `{"version": v}` alone.
pub fn encode_header(version: u64, roots: Option<&[Cid]>) -> Vec<u8> {
    let mut out = Vec::new();
    put_head(MAJOR_MAP, if roots.is_some() { 2 } else { 1 }, &mut out);
    if let Some(roots) = roots {
        put_head(MAJOR_TEXT, 5, &mut out);
        out.extend_from_slice(b"roots");
        put_head(MAJOR_ARRAY, roots.len() as u64, &mut out);
        for r in roots {
            let bytes = r.to_bytes();
            put_head(MAJOR_TAG, CID_TAG, &mut out);
            put_head(MAJOR_BYTES, bytes.len() as u64 + 1, &mut out);
            out.push(0);
            out.extend_from_slice(&bytes);
        }
    }
    put_head(MAJOR_TEXT, 7, &mut out);
    out.extend_from_slice(b"version");
    put_head(MAJOR_UINT, version, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::car::{RAW, cid_v1_sha256};

    #[test]
    fn header_round_trips() {
        let roots = vec![cid_v1_sha256(RAW, b"a"), cid_v1_sha256(RAW, b"b")];
        let enc = encode_header(1, Some(&roots));
        let dec = decode_header(&enc).unwrap();
        assert_eq!(
            dec,
            RawHeader {
                version: 1,
                roots: Some(roots)
            }
        );
    }

    #[test]
    fn pragma_matches_the_spec_bytes() {
        // CARv2 spec: the pragma is 0x0a (length 10) then these 10 bytes.
        let enc = encode_header(2, None);
        assert_eq!(
            enc,
            [0xa1, 0x67, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x02]
        );
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        let good = encode_header(1, Some(&[cid_v1_sha256(RAW, b"a")]));
        for len in 0..good.len() {
            assert!(decode_header(&good[..len]).is_err(), "prefix {len}");
        }
        assert!(decode_header(&[0xbf]).is_err()); // indefinite map
        assert!(decode_header(&[0xa1, 0x61, 0x78, 0x01]).is_err()); // unknown key
        // A huge array length must not allocate.
        let mut huge = vec![0xa1, 0x65];
        huge.extend_from_slice(b"roots");
        huge.extend_from_slice(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(decode_header(&huge).is_err());
    }
}
