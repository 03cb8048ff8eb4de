//! The Bitswap wire format: protocol ids, requests, CID prefixes, errors.
//!
//! Owns: turning one message body into a typed [`Request`]
//! ([`decode_request`]), the reverse for test clients ([`encode_request`]),
//! the [`Protocol`] ids and what each can carry, the CID [`Prefix`] of 1.1.0
//! payloads, and [`WireError`], the one error type of this module tree.
//! Responses are built in [`super::response`]; framing is [`super::frame`].
//!
//! Called by: the async glue (decode each frame body from a peer), the
//! engine's callers in tests, the fuzz target `bitswap_decode`.
//!
//! Must never: do I/O, read a clock, or panic on anything a peer sent. A bad
//! entry is skipped and counted ([`Rejects`]); only a body that is not a
//! protobuf `Message` at all fails the whole message.

use bytes::Bytes;
use cid::{Cid, Version};
use prost::Message as _;

use super::frame::encode_frame;
use super::pb;

/// Multicodec code of the identity multihash (multicodec table). Wants for
/// identity CIDs are ignored: the CID already contains the block, and boxo
/// treats such a want as a broken client.
pub const IDENTITY_MH_CODE: u64 = 0x00;
/// Multicodec code of dag-pb, the only codec a CIDv0 can have (CID spec).
pub const DAG_PB_CODEC: u64 = 0x70;
/// Multicodec code of sha2-256, the only hash a CIDv0 can have (CID spec).
pub const SHA2_256_CODE: u64 = 0x12;
/// Digest length of a CIDv0's sha2-256 multihash.
pub const SHA2_256_LEN: u64 = 32;
/// Default longest CID accepted in a want, in bytes; matches the sidecar
/// config default `bitswap.max_cid_bytes` (boxo's `maxCidSize` is 168).
pub const DEFAULT_MAX_CID_BYTES: usize = 256;

/// Why bytes from the network could not be decoded, or a response could not
/// be built. The glue maps every variant to "drop this stream" (and counts
/// it); none of them is worth an answer to the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A frame length above the bound (checked before the body is read).
    #[error("frame of {len} bytes exceeds the {max} byte limit")]
    FrameTooLarge { len: u64, max: usize },
    /// A length prefix that is not a valid unsigned varint.
    #[error("bad length varint: {0}")]
    BadVarint(&'static str),
    /// The stream ended inside a frame: `expected` is the declared body
    /// length (`None` while still inside the length varint).
    #[error("stream ended inside a frame ({got} bytes of {expected:?})")]
    Truncated { expected: Option<usize>, got: usize },
    /// The body is not a protobuf `Message`.
    #[error("malformed protobuf: {0}")]
    Protobuf(String),
    /// A CID prefix in a payload block could not be decoded.
    #[error("bad CID prefix: {0}")]
    BadPrefix(&'static str),
    /// A CID in a response message could not be decoded.
    #[error("bad CID in a response")]
    BadCid,
    /// A block larger than Bitswap carries.
    #[error("block of {size} bytes exceeds the {max} byte limit")]
    BlockTooLarge { size: usize, max: usize },
}

impl From<prost::DecodeError> for WireError {
    fn from(err: prost::DecodeError) -> Self {
        WireError::Protobuf(err.to_string())
    }
}

/// A Bitswap protocol id, newest first in [`Protocol::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `/ipfs/bitswap/1.2.0`: want-have, HAVE/DONT_HAVE, pending bytes.
    V120,
    /// `/ipfs/bitswap/1.1.0`: CIDv1 via `payload` (prefix + data).
    V110,
    /// `/ipfs/bitswap/1.0.0`: raw blocks, CIDv0 only.
    V100,
    /// `/ipfs/bitswap`: the unversioned id, with 1.0.0 semantics.
    Legacy,
}

impl Protocol {
    /// Every id we speak, in order of preference (offer them in this order).
    pub const ALL: [Protocol; 4] = [
        Protocol::V120,
        Protocol::V110,
        Protocol::V100,
        Protocol::Legacy,
    ];

    /// The libp2p protocol string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::V120 => "/ipfs/bitswap/1.2.0",
            Protocol::V110 => "/ipfs/bitswap/1.1.0",
            Protocol::V100 => "/ipfs/bitswap/1.0.0",
            Protocol::Legacy => "/ipfs/bitswap",
        }
    }

    /// The protocol with this libp2p protocol string, if we speak it.
    pub fn from_protocol_str(s: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether HAVE / DONT_HAVE presences and `pendingBytes` can be sent
    /// (1.2.0 only). Presences for older peers are dropped by the builder.
    pub const fn supports_presences(self) -> bool {
        matches!(self, Protocol::V120)
    }

    /// Whether blocks go in `payload` with a CID prefix (1.1.0+) rather than
    /// in the 1.0.0 `blocks` field as raw bytes.
    pub const fn uses_payload(self) -> bool {
        matches!(self, Protocol::V120 | Protocol::V110)
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a want asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WantKind {
    /// "Send me the block" (1.0.0+; the default when the field is absent).
    Block,
    /// "Tell me whether you have it" (1.2.0).
    Have,
}

/// One want from a peer's wantlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantEntry {
    pub cid: Cid,
    /// Higher is served first.
    pub priority: i32,
    pub kind: WantKind,
    /// The peer asked to hear DONT_HAVE when we do not have (or will not
    /// give) the block.
    pub send_dont_have: bool,
}

/// Entries of one message that were skipped, by reason. Each skipped entry
/// is ignored as if it were absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejects {
    /// The `block` bytes are not a CID (or have bytes after one).
    pub bad_cid: u32,
    /// The CID is longer than the `max_cid_bytes` cap.
    pub cid_too_long: u32,
    /// The CID uses the identity multihash.
    pub identity_hash: u32,
    /// A want whose `wantType` is neither Block nor Have.
    pub unknown_want_type: u32,
}

impl Rejects {
    /// All skipped entries.
    pub fn total(&self) -> u32 {
        self.bad_cid + self.cid_too_long + self.identity_hash + self.unknown_want_type
    }
}

/// The typed view of one inbound message's wantlist. Blocks and presences a
/// peer sends us are ignored: this sidecar only serves.
///
/// Order of application (as in boxo): `full` first, then `wants` in order
/// (a later want for the same CID wins), then `cancels`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// The wantlist is the peer's complete list: anything not in `wants`
    /// is cancelled.
    pub full: bool,
    pub wants: Vec<WantEntry>,
    pub cancels: Vec<Cid>,
    pub rejects: Rejects,
}

impl Request {
    /// The multihashes of `wants`, in order: what the glue looks up in the
    /// block source to produce the `sizes` for [`super::Engine::receive`].
    pub fn want_hashes(&self) -> Vec<crate::blocks::Mh> {
        self.wants.iter().map(|w| *w.cid.hash()).collect()
    }
}

/// Decodes one message body (a frame from [`super::FrameDecoder`]) into a
/// [`Request`]. A message without a wantlist is a valid, empty request.
///
/// Transient memory is proportional to the body (at most 4 MiB of input,
/// a few tens of bytes per entry); the ledger then keeps at most
/// `max_wantlist_entries` of them.
///
/// # Errors
///
/// [`WireError::Protobuf`] when the body is not a protobuf `Message`.
pub fn decode_request(body: &[u8], max_cid_bytes: usize) -> Result<Request, WireError> {
    let msg = pb::Message::decode(body)?;
    let mut req = Request::default();
    let Some(wantlist) = msg.wantlist else {
        return Ok(req);
    };
    req.full = wantlist.full;
    for entry in wantlist.entries {
        if entry.block.len() > max_cid_bytes {
            req.rejects.cid_too_long += 1;
            continue;
        }
        let Some(cid) = parse_cid(&entry.block) else {
            req.rejects.bad_cid += 1;
            continue;
        };
        if cid.hash().code() == IDENTITY_MH_CODE {
            req.rejects.identity_hash += 1;
            continue;
        }
        if entry.cancel {
            req.cancels.push(cid);
            continue;
        }
        let kind = match pb::WantType::try_from(entry.want_type) {
            Ok(pb::WantType::Block) => WantKind::Block,
            Ok(pb::WantType::Have) => WantKind::Have,
            Err(_) => {
                req.rejects.unknown_want_type += 1;
                continue;
            }
        };
        req.wants.push(WantEntry {
            cid,
            priority: entry.priority,
            kind,
            send_dont_have: entry.send_dont_have,
        });
    }
    Ok(req)
}

/// A binary CID with nothing after it, or `None`.
pub(crate) fn parse_cid(bytes: &[u8]) -> Option<Cid> {
    let mut rest = bytes;
    let cid = Cid::read_bytes(&mut rest).ok()?;
    rest.is_empty().then_some(cid)
}

/// Encodes `req` as one framed message (length prefix included), as a
/// client would send it: wants, then cancels (`rejects` is ignored).
/// Used by tests and the raw test client.
pub fn encode_request(req: &Request) -> Bytes {
    let mut entries = Vec::with_capacity(req.wants.len() + req.cancels.len());
    for w in &req.wants {
        entries.push(pb::Entry {
            block: w.cid.to_bytes(),
            priority: w.priority,
            cancel: false,
            want_type: match w.kind {
                WantKind::Block => pb::WantType::Block as i32,
                WantKind::Have => pb::WantType::Have as i32,
            },
            send_dont_have: w.send_dont_have,
        });
    }
    for c in &req.cancels {
        entries.push(pb::Entry {
            block: c.to_bytes(),
            priority: 0,
            cancel: true,
            want_type: pb::WantType::Block as i32,
            send_dont_have: false,
        });
    }
    let msg = pb::Message {
        wantlist: Some(pb::Wantlist {
            entries,
            full: req.full,
        }),
        ..Default::default()
    };
    encode_frame(&msg.encode_to_vec())
}

/// The metadata of a CID without its digest, as 1.1.0+ `payload` blocks
/// carry it: the receiver hashes the data with `mh_code`/`mh_len` and
/// rebuilds the CID. Encoded as four unsigned varints — version, codec,
/// multihash code, digest length — exactly as go-cid's `Prefix.Bytes()`;
/// a CIDv0 is written as version 0, codec dag-pb (0x70), sha2-256 (0x12),
/// length 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    pub version: Version,
    pub codec: u64,
    pub mh_code: u64,
    pub mh_len: u64,
}

impl Prefix {
    /// The prefix of `cid`.
    pub fn of(cid: &Cid) -> Prefix {
        Prefix {
            version: cid.version(),
            codec: cid.codec(),
            mh_code: cid.hash().code(),
            mh_len: u64::from(cid.hash().size()),
        }
    }

    /// The wire bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        for v in [
            u64::from(self.version),
            self.codec,
            self.mh_code,
            self.mh_len,
        ] {
            prost::encoding::encode_varint(v, &mut out);
        }
        out
    }

    /// Parses wire bytes (nothing may follow the four varints).
    ///
    /// # Errors
    ///
    /// [`WireError::BadPrefix`] for a truncated varint, an unknown version,
    /// trailing bytes, or a version-0 prefix that is not dag-pb/sha2-256/32.
    pub fn from_bytes(bytes: &[u8]) -> Result<Prefix, WireError> {
        let mut buf = bytes;
        let mut fields = [0u64; 4];
        for f in &mut fields {
            *f = prost::encoding::decode_varint(&mut buf)
                .map_err(|_| WireError::BadPrefix("bad varint"))?;
        }
        if !buf.is_empty() {
            return Err(WireError::BadPrefix("trailing bytes"));
        }
        let version = Version::try_from(fields[0])
            .map_err(|_| WireError::BadPrefix("unknown CID version"))?;
        let p = Prefix {
            version,
            codec: fields[1],
            mh_code: fields[2],
            mh_len: fields[3],
        };
        if version == Version::V0
            && (p.codec != DAG_PB_CODEC || p.mh_code != SHA2_256_CODE || p.mh_len != SHA2_256_LEN)
        {
            return Err(WireError::BadPrefix(
                "CIDv0 must be dag-pb, sha2-256, 32 bytes",
            ));
        }
        Ok(p)
    }

    /// The CID this prefix names for a block whose digest is `digest`
    /// (the receiver computes the digest by hashing the data).
    ///
    /// # Errors
    ///
    /// [`WireError::BadPrefix`] when the digest length does not match or the
    /// digest is too long for a [`Cid`].
    pub fn to_cid(&self, digest: &[u8]) -> Result<Cid, WireError> {
        if digest.len() as u64 != self.mh_len {
            return Err(WireError::BadPrefix("digest length differs from prefix"));
        }
        let mh = cid::multihash::Multihash::<64>::wrap(self.mh_code, digest)
            .map_err(|_| WireError::BadPrefix("digest too long"))?;
        Cid::new(self.version, self.codec, mh).map_err(|_| WireError::BadPrefix("invalid CID"))
    }
}

/// Whether a 1.0.0 peer can receive this block: 1.0.0 `blocks` carry raw
/// bytes and the receiver derives a CIDv0 (dag-pb, sha2-256) from them, so
/// only CIDs with that codec and hash (v0, or v1 with the same parts) work.
pub fn is_v0_compatible(cid: &Cid) -> bool {
    cid.codec() == DAG_PB_CODEC
        && cid.hash().code() == SHA2_256_CODE
        && u64::from(cid.hash().size()) == SHA2_256_LEN
}

#[cfg(test)]
#[path = "wire_tests.rs"]
pub(crate) mod tests;
