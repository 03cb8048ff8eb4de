//! Just enough CARv1 to compare what peers export: split a CAR into its header and
//! `(cid, data)` sections, write a small CAR, and print CIDs.
//!
//! This is an independent test-side reader, written from the CARv1 spec, on purpose not
//! the sidecar's own `car` module: a bug there must not be able to hide itself here.
//! It checks structure only (varints, lengths, CID shapes); hashes are verified by the real
//! peers (Kubo and Helia refuse blocks whose hash does not match).

use std::collections::BTreeSet;

use anyhow::{Result, bail, ensure};

/// Multicodec of raw blocks.
pub const RAW: u64 = 0x55;
/// Multicodec of dag-pb blocks.
pub const DAG_PB: u64 = 0x70;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;

/// A parsed CARv1: the raw header bytes and the blocks in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Car {
    /// The dag-cbor header, as found (not decoded).
    pub header: Vec<u8>,
    /// `(binary CID, block data)` in file order.
    pub blocks: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Car {
    /// Parses a CARv1 (a CARv2 is refused: the pragma differs).
    pub fn parse(bytes: &[u8]) -> Result<Car> {
        let mut pos = 0;
        let header_len = read_varint(bytes, &mut pos)? as usize;
        ensure!(
            header_len > 0 && pos + header_len <= bytes.len(),
            "bad CAR header length {header_len}"
        );
        let header = bytes[pos..pos + header_len].to_vec();
        pos += header_len;
        let mut blocks = Vec::new();
        while pos < bytes.len() {
            let section_len = read_varint(bytes, &mut pos)? as usize;
            ensure!(
                pos + section_len <= bytes.len(),
                "CAR section at {pos} runs past the end"
            );
            let section = &bytes[pos..pos + section_len];
            let cid_len = cid_length(section)?;
            blocks.push((section[..cid_len].to_vec(), section[cid_len..].to_vec()));
            pos += section_len;
        }
        Ok(Car { header, blocks })
    }

    /// The set of binary CIDs in this CAR.
    pub fn cid_set(&self) -> BTreeSet<Vec<u8>> {
        self.blocks.iter().map(|(c, _)| c.clone()).collect()
    }

    /// Total bytes of block data.
    pub fn data_bytes(&self) -> usize {
        self.blocks.iter().map(|(_, d)| d.len()).sum()
    }
}

/// Writes a CARv1 with one root and the given blocks, in order.
pub fn write(root: &[u8], blocks: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    // dag-cbor {"roots": [CID(root)], "version": 1}; keys in dag-cbor canonical order
    // (shorter first). A CID is tag 42 over a byte string of 0x00 ++ binary CID.
    let mut header = vec![0xa2, 0x65];
    header.extend_from_slice(b"roots");
    header.push(0x81);
    header.extend_from_slice(&[0xd8, 0x2a]);
    cbor_byte_string_head(root.len() + 1, &mut header);
    header.push(0x00);
    header.extend_from_slice(root);
    header.push(0x67);
    header.extend_from_slice(b"version");
    header.push(0x01);
    let mut out = Vec::new();
    write_varint(header.len() as u64, &mut out);
    out.extend_from_slice(&header);
    for (cid, data) in blocks {
        write_varint((cid.len() + data.len()) as u64, &mut out);
        out.extend_from_slice(cid);
        out.extend_from_slice(data);
    }
    out
}

fn cbor_byte_string_head(len: usize, out: &mut Vec<u8>) {
    match len {
        0..=23 => out.push(0x40 | len as u8),
        24..=0xff => out.extend_from_slice(&[0x58, len as u8]),
        _ => {
            out.push(0x59);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
    }
}

/// Length of the binary CID at the start of `bytes` (CIDv0 = bare sha2-256 multihash).
pub fn cid_length(bytes: &[u8]) -> Result<usize> {
    if bytes.len() >= 34 && bytes[0] == 0x12 && bytes[1] == 0x20 {
        return Ok(34);
    }
    let mut pos = 0;
    let version = read_varint(bytes, &mut pos)?;
    ensure!(version == 1, "unsupported CID version {version}");
    let _codec = read_varint(bytes, &mut pos)?;
    let _hash = read_varint(bytes, &mut pos)?;
    let digest_len = read_varint(bytes, &mut pos)? as usize;
    ensure!(
        pos + digest_len <= bytes.len(),
        "CID digest runs past the section"
    );
    Ok(pos + digest_len)
}

/// Binary CIDv1 of `codec` over a sha2-256 `digest`.
pub fn cid_v1(codec: u64, digest: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(36);
    write_varint(1, &mut out);
    write_varint(codec, &mut out);
    write_varint(SHA2_256, &mut out);
    write_varint(32, &mut out);
    out.extend_from_slice(digest);
    out
}

/// The string form Kubo prints: base58btc for CIDv0, base32 lower (`b…`) for CIDv1.
pub fn cid_to_string(cid: &[u8]) -> String {
    if cid.len() == 34 && cid[0] == 0x12 && cid[1] == 0x20 {
        return base58btc(cid);
    }
    let mut s = String::from("b");
    s.push_str(&base32_lower(cid));
    s
}

/// Parses the CIDv1 string forms this harness produces (`b…`, base32 lower) back to binary.
pub fn cid_from_string(s: &str) -> Result<Vec<u8>> {
    let Some(body) = s.strip_prefix('b') else {
        bail!("only base32 (b…) CID strings are supported, got {s:?}");
    };
    let (mut buffer, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in body.bytes() {
        let v = match c {
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => bail!("bad base32 character {:?} in {s:?}", c as char),
        };
        buffer = (buffer << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    ensure!(
        cid_length(&out)? == out.len(),
        "trailing bytes in CID {s:?}"
    );
    Ok(out)
}

fn base32_lower(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn base58btc(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut digits: Vec<u8> = Vec::new(); // little-endian base-58 digits
    for &b in bytes {
        let mut carry = u32::from(b);
        for d in digits.iter_mut() {
            carry += u32::from(*d) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    std::iter::repeat_n('1', zeros)
        .chain(digits.iter().rev().map(|&d| ALPHABET[d as usize] as char))
        .collect()
}

fn read_varint(bytes: &[u8], pos: &mut usize) -> Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&b) = bytes.get(*pos) else {
            bail!("varint runs past the end at {pos}");
        };
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    bail!("varint longer than 64 bits")
}

fn write_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_parses_a_car() {
        let root = cid_v1(RAW, &[7; 32]);
        let car = write(&root, &[(root.clone(), b"hello".to_vec())]);
        let parsed = Car::parse(&car).unwrap();
        assert_eq!(parsed.blocks, vec![(root, b"hello".to_vec())]);
    }

    #[test]
    fn prints_cids_like_kubo() {
        // sha2-256("") as a raw CIDv1 and as a CIDv0 (well-known values).
        let digest: [u8; 32] = [
            0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f,
            0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b,
            0x78, 0x52, 0xb8, 0x55,
        ];
        assert_eq!(
            cid_to_string(&cid_v1(RAW, &digest)),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
        assert_eq!(
            cid_from_string("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku").unwrap(),
            cid_v1(RAW, &digest)
        );
        let mut v0 = vec![0x12, 0x20];
        v0.extend_from_slice(&digest);
        assert_eq!(
            cid_to_string(&v0),
            "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n"
        );
    }
}
