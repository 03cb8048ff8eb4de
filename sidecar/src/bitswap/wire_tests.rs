//! Tests of the wire format: protocols, requests, prefixes.

use super::*;
use cid::multihash::Multihash;

pub(crate) const RAW: u64 = 0x55;
pub(crate) const BLAKE3: u64 = 0x1e;

/// A CID with a digest derived from `n` (not a real hash of anything).
pub(crate) fn cid_v1(codec: u64, mh_code: u64, n: u32) -> Cid {
    let mut digest = [0u8; 32];
    digest[..4].copy_from_slice(&n.to_be_bytes());
    digest[31] = 0xab;
    Cid::new_v1(codec, Multihash::wrap(mh_code, &digest).unwrap())
}

pub(crate) fn cid_v0(n: u32) -> Cid {
    let mut digest = [0u8; 32];
    digest[..4].copy_from_slice(&n.to_be_bytes());
    Cid::new_v0(Multihash::wrap(SHA2_256_CODE, &digest).unwrap()).unwrap()
}

fn body(framed: &Bytes) -> Bytes {
    let mut d = super::super::FrameDecoder::new();
    let mut input = &framed[..];
    let frame = d.decode(&mut input).unwrap().unwrap();
    assert!(input.is_empty());
    frame
}

#[test]
fn protocol_strings_round_trip() {
    for p in Protocol::ALL {
        assert_eq!(Protocol::from_protocol_str(p.as_str()), Some(p));
    }
    assert_eq!(Protocol::from_protocol_str("/ipfs/bitswap/1.3.0"), None);
    assert!(Protocol::V120.supports_presences());
    assert!(!Protocol::V110.supports_presences());
    assert!(Protocol::V110.uses_payload());
    assert!(!Protocol::V100.uses_payload() && !Protocol::Legacy.uses_payload());
}

#[test]
fn request_round_trip() {
    let req = Request {
        full: true,
        wants: vec![
            WantEntry {
                cid: cid_v0(1),
                priority: 5,
                kind: WantKind::Block,
                send_dont_have: false,
            },
            WantEntry {
                cid: cid_v1(RAW, BLAKE3, 2),
                priority: -3,
                kind: WantKind::Have,
                send_dont_have: true,
            },
        ],
        cancels: vec![cid_v1(DAG_PB_CODEC, SHA2_256_CODE, 3)],
        rejects: Rejects::default(),
    };
    let decoded = decode_request(&body(&encode_request(&req)), DEFAULT_MAX_CID_BYTES).unwrap();
    assert_eq!(decoded, req);
}

#[test]
fn empty_message_is_an_empty_request() {
    assert_eq!(
        decode_request(&[], DEFAULT_MAX_CID_BYTES).unwrap(),
        Request::default()
    );
}

#[test]
fn malformed_protobuf_is_an_error() {
    // Field 1, length-delimited, length 5, but only 1 byte follows.
    assert!(matches!(
        decode_request(&[0x0a, 0x05, 0x00], DEFAULT_MAX_CID_BYTES),
        Err(WireError::Protobuf(_))
    ));
    // Wire type 7 does not exist.
    assert!(decode_request(&[0x0f], DEFAULT_MAX_CID_BYTES).is_err());
}

#[test]
fn bad_entries_are_counted_and_skipped() {
    let good = cid_v1(RAW, SHA2_256_CODE, 1);
    let identity = Cid::new_v1(RAW, Multihash::wrap(IDENTITY_MH_CODE, b"hi").unwrap());
    let mut trailing = good.to_bytes();
    trailing.push(0);
    let entry = |block: Vec<u8>, want_type: i32| pb::Entry {
        block,
        priority: 1,
        cancel: false,
        want_type,
        send_dont_have: false,
    };
    let msg = pb::Message {
        wantlist: Some(pb::Wantlist {
            entries: vec![
                entry(good.to_bytes(), 0),
                entry(vec![0xff, 0xff], 0),
                entry(trailing, 0),
                entry(vec![1u8; 300], 0),
                entry(identity.to_bytes(), 1),
                entry(good.to_bytes(), 7),
            ],
            full: false,
        }),
        ..Default::default()
    };
    let req = decode_request(&msg.encode_to_vec(), DEFAULT_MAX_CID_BYTES).unwrap();
    assert_eq!(req.wants.len(), 1);
    assert_eq!(req.wants[0].cid, good);
    assert_eq!(
        req.rejects,
        Rejects {
            bad_cid: 2,
            cid_too_long: 1,
            identity_hash: 1,
            unknown_want_type: 1
        }
    );
    assert_eq!(req.rejects.total(), 5);
}

#[test]
fn missing_want_type_means_block() {
    // A 1.0.0/1.1.0 client never writes field 4.
    let msg = pb::Message {
        wantlist: Some(pb::Wantlist {
            entries: vec![pb::Entry {
                block: cid_v0(9).to_bytes(),
                priority: 1,
                cancel: false,
                want_type: 0,
                send_dont_have: false,
            }],
            full: false,
        }),
        ..Default::default()
    };
    let bytes = msg.encode_to_vec();
    let req = decode_request(&bytes, DEFAULT_MAX_CID_BYTES).unwrap();
    assert_eq!(req.wants[0].kind, WantKind::Block);
}

fn check_prefix(cid: Cid, expected: &[u8]) {
    let p = Prefix::of(&cid);
    let bytes = p.to_bytes();
    assert_eq!(bytes, expected, "prefix of {cid}");
    let back = Prefix::from_bytes(&bytes).unwrap();
    assert_eq!(back, p);
    assert_eq!(back.to_cid(cid.hash().digest()).unwrap(), cid);
}

#[test]
fn prefix_encoding_matches_go_cid() {
    check_prefix(cid_v0(1), &[0x00, 0x70, 0x12, 0x20]);
    check_prefix(cid_v1(RAW, SHA2_256_CODE, 2), &[0x01, 0x55, 0x12, 0x20]);
    check_prefix(
        cid_v1(DAG_PB_CODEC, SHA2_256_CODE, 3),
        &[0x01, 0x70, 0x12, 0x20],
    );
    check_prefix(cid_v1(RAW, BLAKE3, 4), &[0x01, 0x55, 0x1e, 0x20]);
    // dag-cbor (0x71) with blake2b-256 (0xb220, a two-byte varint).
    check_prefix(
        cid_v1(0x71, 0xb220, 5),
        &[0x01, 0x71, 0xa0, 0xe4, 0x02, 0x20],
    );
}

#[test]
fn bad_prefixes_are_rejected() {
    assert!(Prefix::from_bytes(&[0x01, 0x55, 0x12]).is_err());
    assert!(Prefix::from_bytes(&[0x01, 0x55, 0x12, 0x20, 0x00]).is_err());
    assert!(Prefix::from_bytes(&[0x02, 0x55, 0x12, 0x20]).is_err());
    assert!(Prefix::from_bytes(&[0x00, 0x55, 0x12, 0x20]).is_err());
    let p = Prefix::from_bytes(&[0x01, 0x55, 0x12, 0x20]).unwrap();
    assert!(p.to_cid(&[0u8; 31]).is_err());
}

#[test]
fn v0_compatibility() {
    assert!(is_v0_compatible(&cid_v0(1)));
    assert!(is_v0_compatible(&cid_v1(DAG_PB_CODEC, SHA2_256_CODE, 1)));
    assert!(!is_v0_compatible(&cid_v1(RAW, SHA2_256_CODE, 1)));
    assert!(!is_v0_compatible(&cid_v1(DAG_PB_CODEC, BLAKE3, 1)));
}
