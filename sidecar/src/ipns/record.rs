//! IPNS record validation and ordering: [`validate`] turns untrusted bytes
//! into a [`Record`] or a [`RecordError`]; [`compare`] says which of two
//! records for one name is better.
//!
//! Owns: the spec's "Record Verification" (ipfs/specs
//! `src/ipns/ipns-record.md`) and boxo's `ipns.Validate`/`compare`, and
//! every choice where they leave room (each is written where it is made).
//! The checks run cheapest first and stop at the first failure:
//!
//! 1. size ≤ [`MAX_RECORD_BYTES`] (before parsing) → `too_large`;
//! 2. `IpnsEntry` protobuf → `malformed`;
//! 3. non-empty `signatureV2` and `data` → `v1_only` when only a V1
//!    signature is there, else `malformed`;
//! 4. the public key: from `pubKey` when sent (it must hash to the name →
//!    `name_key_mismatch`; this also makes it agree with an inline key),
//!    else from the name's identity multihash; unknown key type →
//!    `key_unsupported`; no key anywhere or a broken one → `malformed`;
//! 5. `data`: strict DAG-CBOR ([`super::cbor`]) with `Value` (bytes),
//!    `Validity` (bytes), `ValidityType` (int), `Sequence` (int), `TTL`
//!    (int, optional: boxo accepts records without it); other keys are
//!    ignored, as the spec requires → `malformed`;
//! 6. `signatureV2` over `"ipns-signature:" ‖ data` → `signature_invalid`;
//! 7. legacy V1 fields against `data` → `v1_v2_mismatch`;
//! 8. `ValidityType` 0 (EOL) and an RFC 3339 `Validity` → `validity_invalid`;
//! 9. validity after `now` → `expired`.
//!
//! Called by: the store, the HTTP PUT handlers and replica sync, with the
//! exact bytes they received. Must never: do I/O or read the clock (`now`
//! is a parameter), re-encode a record (the signed bytes are kept as they
//! came and republished unchanged), or panic on any input.

use std::{
    cmp::Ordering,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use libp2p::identity::PublicKey;
use prost::Message;

use super::{
    Name, RecordError,
    cbor::{self, Value},
    pb, rfc3339,
};

/// Largest serialized `IpnsEntry` accepted: the spec's "Record Size Limit"
/// (10 KiB; boxo `MaxRecordSize`).
pub const MAX_RECORD_BYTES: usize = 10 * 1024;

/// What `signatureV2` signs before `data` (spec, "Record Creation" step 5).
pub const SIGNATURE_V2_PREFIX: &[u8] = b"ipns-signature:";

/// Largest integer accepted in `data`: boxo reads integers with
/// go-ipld-prime's `AsInt` (int64), which fails above this.
const MAX_CBOR_INT: u64 = i64::MAX as u64;

/// At most this many bytes of a field are quoted in an error message.
const ECHO_BYTES: usize = 64;

/// The DAG-CBOR keys of `data` (spec, "Record Fields").
const KEY_VALUE: &str = "Value";
const KEY_VALIDITY: &str = "Validity";
const KEY_VALIDITY_TYPE: &str = "ValidityType";
const KEY_SEQUENCE: &str = "Sequence";
const KEY_TTL: &str = "TTL";

/// The type of key that signed a record: the libp2p `KeyType`s, all of
/// which this build verifies (spec, "Key Types": Ed25519 MUST, RSA SHOULD,
/// Secp256k1 and ECDSA MAY).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    Rsa,
    Ed25519,
    Secp256k1,
    Ecdsa,
}

impl KeyType {
    /// From the libp2p `PublicKey.Type` number, when known.
    pub fn from_protobuf(n: i32) -> Option<KeyType> {
        match n {
            0 => Some(KeyType::Rsa),
            1 => Some(KeyType::Ed25519),
            2 => Some(KeyType::Secp256k1),
            3 => Some(KeyType::Ecdsa),
            _ => None,
        }
    }

    /// The name the libp2p spec uses.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Rsa => "RSA",
            KeyType::Ed25519 => "Ed25519",
            KeyType::Secp256k1 => "Secp256k1",
            KeyType::Ecdsa => "ECDSA",
        }
    }
}

impl std::fmt::Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated IPNS record: the exact bytes received, and the signed
/// fields read from its DAG-CBOR `data`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    name: Name,
    bytes: Bytes,
    value: Bytes,
    validity: SystemTime,
    validity_str: String,
    sequence: u64,
    ttl: Option<Duration>,
    has_pub_key: bool,
    key_type: KeyType,
}

impl Record {
    /// The name the record was validated against.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// The serialized `IpnsEntry` exactly as received: what to store and
    /// republish (never re-encode it; the signature covers `data` only,
    /// but peers compare whole records byte for byte).
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The signed `data[Value]`, normally a content path (`/ipfs/…`,
    /// `/ipns/…`); boxo also reads a binary CID here.
    pub fn value(&self) -> &Bytes {
        &self.value
    }

    /// [`Self::value`] as text, when it is UTF-8.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }

    /// End of validity (EOL), to the nanosecond.
    pub fn validity(&self) -> SystemTime {
        self.validity
    }

    /// `data[Validity]` as signed (RFC 3339).
    pub fn validity_str(&self) -> &str {
        &self.validity_str
    }

    /// `data[Sequence]`.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// `data[TTL]`, the cache hint; `None` when the record has no TTL.
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }

    /// Whether the record carries its public key (`pubKey`).
    pub fn has_pub_key(&self) -> bool {
        self.has_pub_key
    }

    /// The type of the key that signed it.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// Whether `self` should replace `other` (see [`compare`]).
    pub fn is_better_than(&self, other: &Record) -> bool {
        compare(self, other) == Ordering::Greater
    }
}

/// Orders two records of one name; `Greater` means `a` is better. This is
/// boxo's order (`ipns.compare`, then `selectRecord`'s tie-break):
///
/// 1. a record with `signatureV2` beats one without: moot here, every
///    [`Record`] has one (V1-only records are refused);
/// 2. higher `Sequence`;
/// 3. later `Validity` (compared as instants, to the nanosecond);
/// 4. the serialized records compared bytewise, the greater wins, so that
///    every node picks the same record. `Equal` only for identical bytes.
pub fn compare(a: &Record, b: &Record) -> Ordering {
    a.sequence
        .cmp(&b.sequence)
        .then(a.validity.cmp(&b.validity))
        .then_with(|| a.bytes.as_ref().cmp(b.bytes.as_ref()))
}

/// Validates `bytes` as a record for `name` at time `now` (see the module
/// doc for the checks, in order). Copies `bytes` once, after the size check.
pub fn validate(name: &Name, bytes: &[u8], now: SystemTime) -> Result<Record, RecordError> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(RecordError::TooLarge { len: bytes.len() });
    }
    validate_bytes(name, Bytes::copy_from_slice(bytes), now)
}

/// [`validate`] without the copy: the record keeps (slices of) `bytes`.
pub fn validate_bytes(name: &Name, bytes: Bytes, now: SystemTime) -> Result<Record, RecordError> {
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(RecordError::TooLarge { len: bytes.len() });
    }
    let entry = pb::IpnsEntry::decode(bytes.clone())
        .map_err(|e| malformed(format!("not an IpnsEntry protobuf: {e}")))?;

    let (data, sig2) = match (non_empty(&entry.data), non_empty(&entry.signature_v2)) {
        (Some(data), Some(sig2)) => (data, sig2),
        (_, None) if non_empty(&entry.signature_v1).is_some() => return Err(RecordError::V1Only),
        (None, _) => {
            return Err(malformed(
                "no data (field 9): a V2 record signs its fields as DAG-CBOR".into(),
            ));
        }
        (Some(_), None) => return Err(malformed("no signatureV2 (field 8)".into())),
    };

    let pub_key = non_empty(&entry.pub_key);
    let (key, key_type) = signing_key(name, pub_key)?;
    let fields = Fields::read(data)?;

    let mut signed = Vec::with_capacity(SIGNATURE_V2_PREFIX.len() + data.len());
    signed.extend_from_slice(SIGNATURE_V2_PREFIX);
    signed.extend_from_slice(data);
    if !key.verify(&signed, sig2) {
        return Err(RecordError::SignatureInvalid {
            name: Box::new(*name),
            key_type,
        });
    }

    check_v1_fields(&entry, &fields)?;

    if fields.validity_type != 0 {
        return Err(RecordError::ValidityInvalid(format!(
            "validity type {} is not supported (only 0, EOL, is defined)",
            fields.validity_type
        )));
    }
    let validity_str = std::str::from_utf8(fields.validity).map_err(|_| {
        RecordError::ValidityInvalid(format!("{} is not text", echo(fields.validity)))
    })?;
    let validity = rfc3339::parse(validity_str).map_err(|why| {
        RecordError::ValidityInvalid(format!(
            "{} is not an RFC 3339 time: {why}",
            echo(fields.validity)
        ))
    })?;
    // Spec: the EOL must be "bigger than the current time" (boxo lets
    // validity == now through; at nanosecond precision this never matters).
    if validity <= now {
        return Err(RecordError::Expired {
            validity: validity_str.to_string(),
            now,
        });
    }

    Ok(Record {
        name: *name,
        value: data.slice(fields.value_offset..fields.value_offset + fields.value.len()),
        validity,
        validity_str: validity_str.to_string(),
        sequence: fields.sequence,
        ttl: fields.ttl.map(Duration::from_nanos),
        has_pub_key: pub_key.is_some(),
        key_type,
        bytes,
    })
}

fn malformed(why: String) -> RecordError {
    RecordError::Malformed(why)
}

/// A protobuf bytes field when present and not empty (boxo tests `len > 0`).
fn non_empty(field: &Option<Bytes>) -> Option<&Bytes> {
    field.as_ref().filter(|b| !b.is_empty())
}

/// Bytes quoted for an error message: escaped, at most [`ECHO_BYTES`].
fn echo(b: &[u8]) -> String {
    let cut = &b[..b.len().min(ECHO_BYTES)];
    let more = if b.len() > ECHO_BYTES { "…" } else { "" };
    format!("\"{}\"{more}", cut.escape_ascii())
}

/// The key that must have signed the record (step 4 of the module doc).
fn signing_key(name: &Name, pub_key: Option<&Bytes>) -> Result<(PublicKey, KeyType), RecordError> {
    if let Some(bytes) = pub_key {
        let (key, kind) = decode_key(bytes, "pubKey")?;
        let key_name = Name::from_public_key(&key);
        if key_name != *name {
            return Err(RecordError::NameKeyMismatch {
                name: Box::new(*name),
                key_name: Box::new(key_name),
            });
        }
        return Ok((key, kind));
    }
    match name.inline_key_bytes() {
        Some(inline) => decode_key(inline, "the key inlined in the name"),
        None => Err(malformed(format!(
            "no pubKey (field 7), and the name {name} is a hash of its key, not the key: \
             records for such names must carry pubKey"
        ))),
    }
}

/// Decodes a libp2p `PublicKey` protobuf, telling an unknown key type
/// (`key_unsupported`) from a broken key (`malformed`).
fn decode_key(bytes: &[u8], what: &str) -> Result<(PublicKey, KeyType), RecordError> {
    let envelope = pb::PublicKey::decode(bytes)
        .map_err(|e| malformed(format!("{what} is not a libp2p PublicKey protobuf: {e}")))?;
    let Some(key_type) = envelope.key_type else {
        return Err(malformed(format!("{what} has no key type")));
    };
    let Some(kind) = KeyType::from_protobuf(key_type) else {
        return Err(RecordError::KeyUnsupported { key_type });
    };
    let key = PublicKey::try_decode_protobuf(bytes)
        .map_err(|e| malformed(format!("{what} is not a valid {kind} key: {e}")))?;
    Ok((key, kind))
}

/// The IPNS fields of `data`, typed.
struct Fields<'a> {
    value: &'a [u8],
    /// Where `value` starts in `data`.
    value_offset: usize,
    validity: &'a [u8],
    validity_type: i128,
    sequence: u64,
    ttl: Option<u64>,
}

impl<'a> Fields<'a> {
    fn read(data: &'a [u8]) -> Result<Fields<'a>, RecordError> {
        let entries =
            cbor::decode_map(data).map_err(|e| malformed(format!("data is not DAG-CBOR: {e}")))?;
        let get = |key: &str| entries.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let missing = |key: &str| malformed(format!("data has no {key}"));

        let (value, validity) = match (get(KEY_VALUE), get(KEY_VALIDITY)) {
            (Some(v), Some(t)) => (bytes_field(KEY_VALUE, v)?, bytes_field(KEY_VALIDITY, t)?),
            (None, _) => return Err(missing(KEY_VALUE)),
            (_, None) => return Err(missing(KEY_VALIDITY)),
        };
        let validity_type = match get(KEY_VALIDITY_TYPE) {
            Some(Value::Uint(n)) => i128::from(n),
            Some(Value::NegInt(n)) => -1 - i128::from(n),
            Some(other) => return Err(wrong_kind(KEY_VALIDITY_TYPE, other, "an integer")),
            None => return Err(missing(KEY_VALIDITY_TYPE)),
        };
        let sequence = get(KEY_SEQUENCE)
            .ok_or_else(|| missing(KEY_SEQUENCE))
            .and_then(|v| uint_field(KEY_SEQUENCE, v))?;
        let ttl = get(KEY_TTL).map(|v| uint_field(KEY_TTL, v)).transpose()?;
        Ok(Fields {
            value: value.0,
            value_offset: value.1,
            validity: validity.0,
            validity_type,
            sequence,
            ttl,
        })
    }
}

fn wrong_kind(key: &str, v: Value<'_>, want: &str) -> RecordError {
    malformed(format!("data[{key}] is {}, not {want}", v.kind()))
}

/// A byte-string field: (contents, offset in `data`).
fn bytes_field<'a>(key: &str, v: Value<'a>) -> Result<(&'a [u8], usize), RecordError> {
    match v {
        Value::Bytes { bytes, offset } => Ok((bytes, offset)),
        other => Err(wrong_kind(key, other, "a byte string")),
    }
}

/// A non-negative integer field that boxo can read (≤ [`MAX_CBOR_INT`]).
fn uint_field(key: &str, v: Value<'_>) -> Result<u64, RecordError> {
    match v {
        Value::Uint(n) if n <= MAX_CBOR_INT => Ok(n),
        Value::Uint(n) => Err(malformed(format!(
            "data[{key}] = {n} is above 2^63-1, the largest integer boxo (Kubo) reads"
        ))),
        Value::NegInt(n) => Err(malformed(format!(
            "data[{key}] = -{} is negative",
            u128::from(n) + 1
        ))),
        other => Err(wrong_kind(key, other, "an unsigned integer")),
    }
}

/// Step 7: legacy V1 protobuf fields must match the signed `data`.
///
/// boxo's rule: when `signatureV1` or `value` is non-empty, all five legacy
/// fields are compared, an absent one counting as its protobuf default
/// (empty, 0), and an absent `data[TTL]` fails. Added here: a legacy field
/// that is present is compared even without those two (no honest publisher
/// sends a V1 copy that contradicts the signed data, and only signed data
/// is ever used).
fn check_v1_fields(entry: &pb::IpnsEntry, f: &Fields<'_>) -> Result<(), RecordError> {
    let all = non_empty(&entry.signature_v1).is_some() || non_empty(&entry.value).is_some();
    let mismatch = |field: &str, key: &str, v1: String, v2: String| {
        Err(RecordError::V1V2Mismatch(format!(
            "{field} is {v1} but data[{key}] is {v2}"
        )))
    };

    if all || entry.value.is_some() {
        let v1 = entry.value.as_deref().unwrap_or_default();
        if v1 != f.value {
            return mismatch("value", KEY_VALUE, echo(v1), echo(f.value));
        }
    }
    if all || entry.validity.is_some() {
        let v1 = entry.validity.as_deref().unwrap_or_default();
        if v1 != f.validity {
            return mismatch("validity", KEY_VALIDITY, echo(v1), echo(f.validity));
        }
    }
    if all || entry.validity_type.is_some() {
        let v1 = entry.validity_type.unwrap_or(0);
        if i128::from(v1) != f.validity_type {
            return mismatch(
                "validityType",
                KEY_VALIDITY_TYPE,
                v1.to_string(),
                f.validity_type.to_string(),
            );
        }
    }
    if all || entry.sequence.is_some() {
        let v1 = entry.sequence.unwrap_or(0);
        if v1 != f.sequence {
            return mismatch(
                "sequence",
                KEY_SEQUENCE,
                v1.to_string(),
                f.sequence.to_string(),
            );
        }
    }
    if all || entry.ttl.is_some() {
        let v1 = entry.ttl.unwrap_or(0);
        match f.ttl {
            Some(v2) if v2 == v1 => {}
            Some(v2) => return mismatch("ttl", KEY_TTL, v1.to_string(), v2.to_string()),
            None => return mismatch("ttl", KEY_TTL, v1.to_string(), "absent".into()),
        }
    }
    Ok(())
}
