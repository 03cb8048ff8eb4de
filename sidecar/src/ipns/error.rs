//! [`RecordError`]: the one error type of the IPNS record boundary.
//!
//! Every variant has a stable machine-readable [`RecordError::code`] (the
//! HTTP APIs return it; clients match on it, so the set only grows) and a
//! `Display` that says exactly what is wrong with the record, in terms of
//! its fields, for the human reading a 400 response or a log line.
//!
//! Called by: [`super::record`] (which creates them) and later the store and
//! HTTP layers (which map codes to statuses, in one place). Must never:
//! carry the whole record (errors are logged; records may be 10 KiB).

use std::time::SystemTime;

use super::{MAX_RECORD_BYTES, Name, record::KeyType};

/// Every [`RecordError::code`], for documentation and exhaustive tests.
pub const CODES: [&str; 10] = [
    "malformed",
    "too_large",
    "v1_only",
    "signature_invalid",
    "name_key_mismatch",
    "key_unsupported",
    "v1_v2_mismatch",
    "expired",
    "validity_invalid",
    "sequence_not_newer",
];

/// Why an IPNS record was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes are not a well-formed V2 record: bad protobuf, bad or
    /// missing DAG-CBOR fields, missing `data`/`signatureV2`, no way to
    /// find the public key, or a key that does not decode.
    #[error("malformed IPNS record: {0}")]
    Malformed(String),

    /// Over the spec's size limit.
    #[error("IPNS record is {len} bytes, over the {MAX_RECORD_BYTES}-byte limit of the spec")]
    TooLarge { len: usize },

    /// Only the legacy V1 signature is present; V1-only records are invalid
    /// since the V2 spec (a V1 signature does not cover sequence or TTL).
    #[error(
        "IPNS record has only a legacy V1 signature (no signatureV2 over DAG-CBOR data); \
         re-create it with a current IPNS library"
    )]
    V1Only,

    /// `signatureV2` does not verify over `"ipns-signature:" ‖ data` with the key.
    #[error("IPNS record signatureV2 does not verify with the {key_type} key of {name}")]
    SignatureInvalid { name: Box<Name>, key_type: KeyType },

    /// The record's `pubKey` is not the key the name is the hash of.
    #[error("IPNS record pubKey belongs to {key_name}, not to the name {name}")]
    NameKeyMismatch {
        name: Box<Name>,
        key_name: Box<Name>,
    },

    /// The key type is not one this build verifies.
    #[error(
        "IPNS record is signed with key type {key_type}, which is not supported (RSA, Ed25519, Secp256k1, ECDSA are)"
    )]
    KeyUnsupported { key_type: i32 },

    /// A legacy V1 protobuf field disagrees with the signed DAG-CBOR one.
    #[error("IPNS record V1 field disagrees with the signed data: {0}")]
    V1V2Mismatch(String),

    /// The validity (EOL) is not after `now`.
    #[error("IPNS record expired: its validity ended at {validity} (now is {})", fmt_time(*now))]
    Expired { validity: String, now: SystemTime },

    /// The validity type is not EOL, or the validity is not an RFC 3339 time.
    #[error("IPNS record validity is invalid: {0}")]
    ValidityInvalid(String),

    /// A record for this name with an equal or higher sequence is already
    /// held (raised by the store, not by [`super::validate`]).
    #[error(
        "IPNS record (sequence {offered}) is not better than the stored one (sequence \
         {stored}): a record replaces another only with a higher sequence, or an equal \
         sequence and a later validity"
    )]
    SequenceNotNewer { offered: u64, stored: u64 },
}

impl RecordError {
    /// The stable machine-readable code (one of [`CODES`]).
    pub fn code(&self) -> &'static str {
        match self {
            RecordError::Malformed(_) => "malformed",
            RecordError::TooLarge { .. } => "too_large",
            RecordError::V1Only => "v1_only",
            RecordError::SignatureInvalid { .. } => "signature_invalid",
            RecordError::NameKeyMismatch { .. } => "name_key_mismatch",
            RecordError::KeyUnsupported { .. } => "key_unsupported",
            RecordError::V1V2Mismatch(_) => "v1_v2_mismatch",
            RecordError::Expired { .. } => "expired",
            RecordError::ValidityInvalid(_) => "validity_invalid",
            RecordError::SequenceNotNewer { .. } => "sequence_not_newer",
        }
    }
}

/// `now` in RFC 3339, or seconds since the epoch when out of range.
fn fmt_time(t: SystemTime) -> String {
    super::rfc3339::format(t).unwrap_or_else(|| format!("{t:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_distinct() {
        let name = Name::from_peer_id(libp2p::PeerId::from_bytes(&[0, 1, 0]).expect("identity"));
        let all = [
            RecordError::Malformed("x".into()),
            RecordError::TooLarge { len: 10_241 },
            RecordError::V1Only,
            RecordError::SignatureInvalid {
                name: Box::new(name),
                key_type: KeyType::Ed25519,
            },
            RecordError::NameKeyMismatch {
                name: Box::new(name),
                key_name: Box::new(name),
            },
            RecordError::KeyUnsupported { key_type: 9 },
            RecordError::V1V2Mismatch("x".into()),
            RecordError::Expired {
                validity: "2000-01-01T00:00:00Z".into(),
                now: std::time::UNIX_EPOCH,
            },
            RecordError::ValidityInvalid("x".into()),
            RecordError::SequenceNotNewer {
                offered: 1,
                stored: 2,
            },
        ];
        let codes: Vec<&str> = all.iter().map(RecordError::code).collect();
        assert_eq!(codes, CODES);
        assert!(
            all[1]
                .to_string()
                .contains("10241 bytes, over the 10240-byte limit")
        );
        assert!(all[7].to_string().contains("now is 1970-01-01T00:00:00Z"));
    }
}
