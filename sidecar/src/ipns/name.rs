//! [`Name`]: an IPNS name, i.e. the multihash of a libp2p public key (a
//! [`PeerId`] underneath), and every string form it arrives in.
//!
//! Owns: parsing names from users and peers ([`Name::parse`]), their
//! canonical string forms ([`Display`](std::fmt::Display) = `k51…` base36
//! CIDv1, [`Name::to_base32`] = `bafz…`), the binary DHT routing key
//! ([`Name::routing_key`]), and the public key inlined in identity-hashed
//! names ([`Name::inline_public_key`]).
//!
//! Accepted forms, following boxo's `NameFromString` (go-libp2p
//! `peer.Decode`): an optional `/ipns/` prefix, then either a legacy base58btc
//! peer ID (`12D3Koo…`, `Qm…`, no multibase prefix) or a CIDv1 with codec
//! `libp2p-key` (0x72) in any multibase (`k51…` base36, `bafz…` base32 as
//! Helia's delegated client sends, `z…` base58btc…). Other codecs, CIDv0 and
//! multihashes a peer ID cannot hold (not identity ≤ 42 bytes or sha2-256)
//! are refused with a [`NameError`] saying which.
//!
//! Called by: the HTTP APIs and the store (names in URLs and keys),
//! [`super::record`] (whose key must match the name). Must never: do I/O.

use std::{fmt, str::FromStr};

use cid::{Cid, multibase::Base};
use libp2p::{PeerId, identity::PublicKey};

/// The multihash type of peer IDs (digests up to 64 bytes).
pub type Multihash = libp2p::multihash::Multihash<64>;

/// The `/ipns/` namespace prefix of paths and routing keys (spec, "String
/// Representation" and "Routing Record").
pub const NAMESPACE: &str = "/ipns/";

/// Multicodec `libp2p-key`: the codec of a CID naming a public key.
pub const LIBP2P_KEY_CODEC: u64 = 0x72;

/// Multihash code `identity`: the digest is the key itself (libp2p inlines
/// keys whose protobuf encoding is ≤ 42 bytes: Ed25519, secp256k1).
pub const IDENTITY_CODE: u64 = 0x00;

/// Longest string [`Name::parse`] looks at. The longest valid name is a
/// 46-byte CID (identity multihash of a 42-byte key) in base2, 369
/// characters, plus `/ipns/`; anything longer is refused before decoding.
pub const MAX_NAME_CHARS: usize = 512;

/// At most this many characters of a bad input are echoed in an error.
const ECHO_CHARS: usize = 80;

/// An IPNS name: the multihash of a libp2p public key.
///
/// Equality, ordering and hashing are those of the binary multihash, so
/// every string form of one name compares equal.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(PeerId);

/// Why a string or routing key is not an IPNS name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty IPNS name")]
    Empty,
    #[error("IPNS name of {0} characters is longer than the {MAX_NAME_CHARS}-character limit")]
    TooLong(usize),
    #[error("{input:?} is not an IPNS name: {reason}")]
    Unparsable { input: String, reason: String },
    #[error(
        "{input:?} is a CID with codec {codec:#x}{}, not libp2p-key (0x72): \
         an IPNS name is the CIDv1 of a public key",
        codec_label(*codec)
    )]
    WrongCodec { input: String, codec: u64 },
    #[error(
        "{input:?} is a CIDv0 (dag-pb content, not a key); write the peer ID \
         as base58 (Qm…) or as a libp2p-key CIDv1 (k51…)"
    )]
    CidV0 { input: String },
    #[error(
        "{input:?} holds multihash code {code:#x} with a {len}-byte digest; a peer ID \
         is an identity multihash of ≤ 42 bytes or a sha2-256 multihash"
    )]
    UnsupportedHash {
        input: String,
        code: u64,
        len: usize,
    },
}

impl NameError {
    /// The stable machine-readable code of every name error.
    pub fn code(&self) -> &'static str {
        "invalid_name"
    }
}

fn codec_label(codec: u64) -> &'static str {
    match codec {
        0x55 => " (raw)",
        0x70 => " (dag-pb)",
        0x71 => " (dag-cbor)",
        0x0129 => " (dag-json)",
        _ => "",
    }
}

/// A bad input, shortened for an error message.
fn echo(s: &str) -> String {
    match s.char_indices().nth(ECHO_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

impl Name {
    /// Parses any accepted string form (see the module doc).
    pub fn parse(s: &str) -> Result<Name, NameError> {
        if s.len() > MAX_NAME_CHARS {
            return Err(NameError::TooLong(s.len()));
        }
        let bare = s.strip_prefix(NAMESPACE).unwrap_or(s);
        if bare.is_empty() {
            return Err(NameError::Empty);
        }
        let unparsable = |reason: String| NameError::Unparsable {
            input: echo(s),
            reason,
        };

        // go-libp2p peer.Decode: "Qm…" and "1…" are bare base58btc multihashes.
        if bare.starts_with("Qm") || bare.starts_with('1') {
            let bytes = Base::Base58Btc
                .decode(bare)
                .map_err(|e| unparsable(format!("not base58btc: {e}")))?;
            let mh = Multihash::from_bytes(&bytes)
                .map_err(|e| unparsable(format!("not a multihash: {e}")))?;
            return Self::from_multihash(mh).map_err(|mh| NameError::UnsupportedHash {
                input: echo(s),
                code: mh.code(),
                len: mh.digest().len(),
            });
        }

        let (_, bytes) = cid::multibase::decode(bare)
            .map_err(|e| unparsable(format!("not a multibase string: {e}")))?;
        let mut rest = bytes.as_slice();
        let cid = Cid::read_bytes(&mut rest).map_err(|e| unparsable(format!("not a CID: {e}")))?;
        if !rest.is_empty() {
            return Err(unparsable(format!("{} bytes after the CID", rest.len())));
        }
        if cid.version() == cid::Version::V0 {
            return Err(NameError::CidV0 { input: echo(s) });
        }
        if cid.codec() != LIBP2P_KEY_CODEC {
            return Err(NameError::WrongCodec {
                input: echo(s),
                codec: cid.codec(),
            });
        }
        Self::from_multihash(*cid.hash()).map_err(|mh| NameError::UnsupportedHash {
            input: echo(s),
            code: mh.code(),
            len: mh.digest().len(),
        })
    }

    /// Parses a binary routing key, `/ipns/` followed by the multihash bytes.
    pub fn from_routing_key(key: &[u8]) -> Result<Name, NameError> {
        let unparsable = |reason: &str| NameError::Unparsable {
            input: echo(&String::from_utf8_lossy(key)),
            reason: reason.to_string(),
        };
        let mh = key
            .strip_prefix(NAMESPACE.as_bytes())
            .ok_or_else(|| unparsable("routing key does not start with /ipns/"))?;
        let mh =
            Multihash::from_bytes(mh).map_err(|_| unparsable("not a multihash after /ipns/"))?;
        Self::from_multihash(mh).map_err(|mh| NameError::UnsupportedHash {
            input: echo(&String::from_utf8_lossy(key)),
            code: mh.code(),
            len: mh.digest().len(),
        })
    }

    /// The name of a peer ID (every peer ID is a valid name).
    pub fn from_peer_id(peer: PeerId) -> Name {
        Name(peer)
    }

    /// The name of a public key.
    pub fn from_public_key(key: &PublicKey) -> Name {
        Name(key.to_peer_id())
    }

    /// The name of a multihash, or the multihash back when a peer ID cannot
    /// hold it.
    pub fn from_multihash(mh: Multihash) -> Result<Name, Multihash> {
        PeerId::from_multihash(mh).map(Name)
    }

    /// The peer ID underneath.
    pub fn peer_id(&self) -> PeerId {
        self.0
    }

    /// The multihash of the public key.
    pub fn multihash(&self) -> &Multihash {
        self.0.as_ref()
    }

    /// The name as a CIDv1 with codec libp2p-key.
    pub fn to_cid(&self) -> Cid {
        Cid::new_v1(LIBP2P_KEY_CODEC, *self.multihash())
    }

    /// The base32 form, `bafz…` (what Helia's delegated routing client sends).
    pub fn to_base32(&self) -> String {
        self.to_cid()
            .to_string_of_base(Base::Base32Lower)
            .unwrap_or_default()
    }

    /// The binary DHT key, `/ipns/` followed by the multihash bytes: what
    /// the DHT and Kubo's `routing put` use (spec, "Routing Record").
    pub fn routing_key(&self) -> Vec<u8> {
        let mut key = NAMESPACE.as_bytes().to_vec();
        key.extend_from_slice(&self.0.to_bytes());
        key
    }

    /// The public key inlined in an identity multihash, when there is one
    /// and it decodes. `None` for hashed names (RSA, ECDSA) and for
    /// identity digests that hold no key this build can read.
    pub fn inline_public_key(&self) -> Option<PublicKey> {
        self.inline_key_bytes()
            .and_then(|b| PublicKey::try_decode_protobuf(b).ok())
    }

    /// The digest of an identity-hashed name: the key's protobuf encoding.
    pub fn inline_key_bytes(&self) -> Option<&[u8]> {
        let mh = self.multihash();
        (mh.code() == IDENTITY_CODE).then(|| mh.digest())
    }
}

impl fmt::Display for Name {
    /// The canonical form: base36 CIDv1 (`k51…`), as boxo prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self
            .to_cid()
            .to_string_of_base(Base::Base36Lower)
            .map_err(|_| fmt::Error)?;
        f.write_str(&s)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

impl FromStr for Name {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Name, NameError> {
        Name::parse(s)
    }
}

impl From<PeerId> for Name {
    fn from(peer: PeerId) -> Name {
        Name(peer)
    }
}

#[cfg(test)]
#[path = "name_tests.rs"]
mod tests;
