//! The IPNS protobuf messages, written by hand for prost (no protoc).
//!
//! Owns: the field layout of `message IpnsEntry` from the IPNS record spec
//! (ipfs/specs `src/ipns/ipns-record.md`, "Record Serialization Format";
//! boxo names it `IpnsRecord`), and of the libp2p `PublicKey` envelope
//! (libp2p/specs `peer-ids/peer-ids.md`), which [`super::record`] reads to
//! tell an unknown key type from a broken key. Field numbers must never
//! change.
//!
//! Called by: [`super::record`] (decode) and [`super::testing`] (encode).
//! The structs are public so tests and tools can craft records a typed API
//! would refuse to build.
//!
//! Must never: do I/O, or hold anything but plain wire data. Every field is
//! `optional` (proto2 presence), so "absent" and "empty" stay distinct: the
//! spec's V1/V2 consistency rules depend on which legacy fields were sent.

use bytes::Bytes;

/// `message IpnsEntry`: one signed IPNS record.
///
/// Fields 1–6 are the legacy V1 copies of what `data` holds; 7–9 are V2.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IpnsEntry {
    /// Field 1, V1: copy of `data[Value]`.
    #[prost(bytes = "bytes", optional, tag = "1")]
    pub value: Option<Bytes>,
    /// Field 2, V1: signature over `value ‖ validity ‖ "EOL"`. Never used
    /// for verification (spec, "Record Verification").
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub signature_v1: Option<Bytes>,
    /// Field 3, V1: copy of `data[ValidityType]`, a [`ValidityType`] value;
    /// kept as `i32` so an unknown value is reported, not dropped.
    #[prost(enumeration = "ValidityType", optional, tag = "3")]
    pub validity_type: Option<i32>,
    /// Field 4, V1: copy of `data[Validity]`.
    #[prost(bytes = "bytes", optional, tag = "4")]
    pub validity: Option<Bytes>,
    /// Field 5, V1: copy of `data[Sequence]`.
    #[prost(uint64, optional, tag = "5")]
    pub sequence: Option<u64>,
    /// Field 6, V1: copy of `data[TTL]` (nanoseconds).
    #[prost(uint64, optional, tag = "6")]
    pub ttl: Option<u64>,
    /// Field 7: the signer's public key as a libp2p `PublicKey` protobuf;
    /// needed when the name is a hash of the key (RSA, ECDSA).
    #[prost(bytes = "bytes", optional, tag = "7")]
    pub pub_key: Option<Bytes>,
    /// Field 8, V2 (mandatory): signature over `"ipns-signature:" ‖ data`.
    #[prost(bytes = "bytes", optional, tag = "8")]
    pub signature_v2: Option<Bytes>,
    /// Field 9, V2 (mandatory): the DAG-CBOR document.
    #[prost(bytes = "bytes", optional, tag = "9")]
    pub data: Option<Bytes>,
}

/// `enum IpnsEntry.ValidityType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ValidityType {
    /// "This record is valid until `validity`" (the only defined type).
    Eol = 0,
}

/// libp2p `message PublicKey` (proto2, both fields required there).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PublicKey {
    /// A libp2p `KeyType`: 0 RSA, 1 Ed25519, 2 Secp256k1, 3 ECDSA
    /// (see [`super::record::KeyType`]).
    #[prost(int32, optional, tag = "1")]
    pub key_type: Option<i32>,
    /// The key in the type's encoding (raw, X.509 DER, compressed point…).
    #[prost(bytes = "vec", optional, tag = "2")]
    pub data: Option<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn absent_and_empty_fields_stay_distinct() {
        let entry = IpnsEntry {
            value: Some(Bytes::new()),
            sequence: Some(0),
            ..IpnsEntry::default()
        };
        let bytes = entry.encode_to_vec();
        // Field 1 (empty bytes) and field 5 (varint 0) are both on the wire.
        assert_eq!(bytes, [0x0a, 0x00, 0x28, 0x00]);
        let back = IpnsEntry::decode(bytes.as_slice()).expect("own encoding");
        assert_eq!(back.value.as_deref(), Some(&[][..]));
        assert_eq!(back.sequence, Some(0));
        assert_eq!(back.ttl, None);
        assert_eq!(back.data, None);
    }

    #[test]
    fn field_numbers_match_the_spec() {
        let entry = IpnsEntry {
            value: Some(Bytes::from_static(b"v")),
            signature_v1: Some(Bytes::from_static(b"1")),
            validity_type: Some(ValidityType::Eol as i32),
            validity: Some(Bytes::from_static(b"t")),
            sequence: Some(5),
            ttl: Some(6),
            pub_key: Some(Bytes::from_static(b"k")),
            signature_v2: Some(Bytes::from_static(b"2")),
            data: Some(Bytes::from_static(b"d")),
        };
        let tags: Vec<u8> = {
            let b = entry.encode_to_vec();
            let mut tags = Vec::new();
            let mut i = 0;
            while i < b.len() {
                tags.push(b[i] >> 3);
                let wire = b[i] & 7;
                i += 1;
                if wire == 2 {
                    i += 1 + usize::from(b[i]);
                } else {
                    i += 1;
                }
            }
            tags
        };
        assert_eq!(tags, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }
}
