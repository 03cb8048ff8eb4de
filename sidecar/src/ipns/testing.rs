//! Creating signed IPNS records, for tests, benches, fuzz seeds and load
//! generators, with knobs that also produce records the validator must
//! refuse.
//!
//! Always compiled (not behind `cfg(test)` or a feature) on purpose: the
//! criterion bench, the fuzz crate, `compat-tests` and `loadgen` are
//! separate crates that cannot see `cfg(test)` code, and a feature would
//! have to be switched on in each of them; the module is small, pure, and
//! nothing in the daemon's request paths calls it.
//!
//! What [`sign`] makes follows the spec's "Record Creation" (with legacy
//! signatureV1 when [`SignOptions::v1`] is set, as boxo does by default):
//! canonical DAG-CBOR `data` (keys sorted length-first), `signatureV2` over
//! `"ipns-signature:" ‖ data`, V1 copies and `signatureV1` over
//! `value ‖ validity ‖ "EOL"`, and `pubKey` only when the name cannot
//! inline the key (boxo's `needToEmbedPublicKey`).
//!
//! Called by: tests in this module tree, `benches/ipns.rs`, the fuzz
//! target. Must never: be used to publish a user's name (it has no
//! sequence bookkeeping and will happily build invalid records).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use libp2p::identity::{Keypair, SigningError};
use prost::Message;

use super::{Name, cbor, pb, record::SIGNATURE_V2_PREFIX, rfc3339};

/// The V1 signature's validity-type suffix: Go prints the EOL enum by name.
const V1_VALIDITY_TYPE: &[u8] = b"EOL";

/// Knobs for [`sign`] and [`entry`].
#[derive(Clone, Debug)]
pub struct SignOptions {
    /// Include the legacy V1 fields and `signatureV1`. Defaults to `true`
    /// (boxo's default, for old resolvers).
    pub v1: bool,
    /// Put the public key in `pubKey`: `Some(true)` always, `Some(false)`
    /// never (invalid for hashed names), `None` only when the name cannot
    /// inline it (RSA, ECDSA). Defaults to `None`.
    pub embed_public_key: Option<bool>,
    /// Extra `data` entries: key and an already-encoded DAG-CBOR value.
    /// Defaults to none.
    pub extra: Vec<(String, Vec<u8>)>,
    /// Leave `TTL` out of `data` (and of the V1 fields). Defaults to `false`.
    pub omit_ttl: bool,
}

impl Default for SignOptions {
    fn default() -> Self {
        Self {
            v1: true,
            embed_public_key: None,
            extra: Vec::new(),
            omit_ttl: false,
        }
    }
}

impl SignOptions {
    /// A V2-only record (no legacy fields), otherwise defaults.
    pub fn v2_only() -> Self {
        Self {
            v1: false,
            ..Self::default()
        }
    }
}

/// Why a record could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("signing failed: {0}")]
    Signing(#[from] SigningError),
    #[error("validity {0:?} is outside the years 0000-9999 RFC 3339 can write")]
    ValidityRange(SystemTime),
}

/// A serialized, signed record (see the module doc and [`SignOptions`]).
pub fn sign(
    keypair: &Keypair,
    value: &[u8],
    seq: u64,
    validity: SystemTime,
    ttl: Duration,
    opts: &SignOptions,
) -> Result<Bytes, SignError> {
    Ok(Bytes::from(
        entry(keypair, value, seq, validity, ttl, opts)?.encode_to_vec(),
    ))
}

/// A record with value `/ipfs/bafkqaaa<seq>` (a different value per
/// sequence), a TTL of 1 s and the default options: what most tests need.
pub fn sign_seq(keypair: &Keypair, seq: u64, validity: SystemTime) -> Bytes {
    let value = format!("/ipfs/bafkqaaa{seq}");
    sign(
        keypair,
        value.as_bytes(),
        seq,
        validity,
        Duration::from_secs(1),
        &SignOptions::default(),
    )
    .expect("an Ed25519 or RSA key signs any record in range")
}

/// [`sign`], returning the protobuf so that a test can tamper with it and
/// encode it itself (or re-sign it with [`resign`]).
pub fn entry(
    keypair: &Keypair,
    value: &[u8],
    seq: u64,
    validity: SystemTime,
    ttl: Duration,
    opts: &SignOptions,
) -> Result<pb::IpnsEntry, SignError> {
    let validity = rfc3339::format(validity).ok_or(SignError::ValidityRange(validity))?;
    let ttl_nanos = u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX);
    let ttl = (!opts.omit_ttl).then_some(ttl_nanos);
    let data = encode_data(value, validity.as_bytes(), seq, ttl, &opts.extra);

    let mut e = pb::IpnsEntry::default();
    if opts.v1 {
        e.value = Some(Bytes::copy_from_slice(value));
        e.validity = Some(Bytes::from(validity.into_bytes()));
        e.validity_type = Some(pb::ValidityType::Eol as i32);
        e.sequence = Some(seq);
        e.ttl = ttl;
    }
    let name = Name::from_public_key(&keypair.public());
    if opts
        .embed_public_key
        .unwrap_or(name.inline_key_bytes().is_none())
    {
        e.pub_key = Some(Bytes::from(keypair.public().encode_protobuf()));
    }
    e.data = Some(Bytes::from(data));
    resign(keypair, &mut e)?;
    Ok(e)
}

/// (Re)computes `signatureV2` over `e.data`, and `signatureV1` when `e` has
/// a V1 `value`.
pub fn resign(keypair: &Keypair, e: &mut pb::IpnsEntry) -> Result<(), SigningError> {
    let data = e.data.clone().unwrap_or_default();
    e.signature_v2 = Some(Bytes::from(sign_v2(keypair, &data)?));
    if let Some(value) = &e.value {
        let validity = e.validity.clone().unwrap_or_default();
        e.signature_v1 = Some(Bytes::from(sign_v1(keypair, value, &validity)?));
    }
    Ok(())
}

/// The V2 signature of `data`.
pub fn sign_v2(keypair: &Keypair, data: &[u8]) -> Result<Vec<u8>, SigningError> {
    keypair.sign(&[SIGNATURE_V2_PREFIX, data].concat())
}

/// The legacy V1 signature: over `value ‖ validity ‖ "EOL"`.
pub fn sign_v1(keypair: &Keypair, value: &[u8], validity: &[u8]) -> Result<Vec<u8>, SigningError> {
    keypair.sign(&[value, validity, V1_VALIDITY_TYPE].concat())
}

/// Canonical DAG-CBOR `data` with the five spec fields (`TTL` only when
/// given) plus `extra` entries, keys in DAG-CBOR order.
pub fn encode_data(
    value: &[u8],
    validity: &[u8],
    seq: u64,
    ttl: Option<u64>,
    extra: &[(String, Vec<u8>)],
) -> Vec<u8> {
    let encoded = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = Vec::new();
        f(&mut v);
        v
    };
    let mut entries = vec![
        (
            "Value".to_string(),
            encoded(&|v| cbor::write_bytes(v, value)),
        ),
        (
            "Validity".to_string(),
            encoded(&|v| cbor::write_bytes(v, validity)),
        ),
        (
            "ValidityType".to_string(),
            encoded(&|v| cbor::write_uint(v, 0)),
        ),
        (
            "Sequence".to_string(),
            encoded(&|v| cbor::write_uint(v, seq)),
        ),
    ];
    if let Some(ttl) = ttl {
        entries.push(("TTL".to_string(), encoded(&|v| cbor::write_uint(v, ttl))));
    }
    entries.extend(extra.iter().cloned());
    let mut out = Vec::new();
    cbor::write_map(&mut out, &mut entries);
    out
}
