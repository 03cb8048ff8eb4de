//! Tests of [`validate`] and [`compare`] on records made by
//! [`testing::sign`]: every key type, and every way of breaking a record
//! mapped to its error code.

use std::{
    cmp::Ordering,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use libp2p::identity::Keypair;
use prost::Message;

use super::{
    testing::{self, SignOptions},
    *,
};

/// A fixed "now": 2027-01-15T08:00:00Z.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn eol() -> SystemTime {
    now() + Duration::from_secs(48 * 3600)
}

const VALUE: &[u8] = b"/ipfs/bafkqaddwgevxmmraojswg33smq";
const TTL: Duration = Duration::from_secs(300);

fn ed(seed: u8) -> Keypair {
    Keypair::ed25519_from_bytes([seed; 32]).expect("32-byte seed")
}

fn rsa() -> Keypair {
    let mut der = include_bytes!("testdata/rsa2048.pk8").to_vec();
    Keypair::rsa_from_pkcs8(&mut der).expect("test key")
}

fn name_of(k: &Keypair) -> Name {
    Name::from_public_key(&k.public())
}

fn signed(k: &Keypair, seq: u64, opts: &SignOptions) -> Bytes {
    testing::sign(k, VALUE, seq, eol(), TTL, opts).expect("signs")
}

fn entry(k: &Keypair, opts: &SignOptions) -> pb::IpnsEntry {
    testing::entry(k, VALUE, 1, eol(), TTL, opts).expect("signs")
}

fn check(k: &Keypair, e: &pb::IpnsEntry) -> Result<Record, RecordError> {
    validate(&name_of(k), &e.encode_to_vec(), now())
}

fn code(r: Result<Record, RecordError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

/// A record whose `data` is `data`, correctly signed (V2 only).
fn with_data(k: &Keypair, data: Vec<u8>) -> pb::IpnsEntry {
    let mut e = entry(k, &SignOptions::v2_only());
    e.data = Some(Bytes::from(data));
    testing::resign(k, &mut e).expect("signs");
    e
}

#[test]
fn every_key_type_validates_with_and_without_v1_fields() {
    for (key, kind, embeds) in [
        (ed(1), KeyType::Ed25519, false),
        (rsa(), KeyType::Rsa, true),
        (Keypair::generate_secp256k1(), KeyType::Secp256k1, false),
        (Keypair::generate_ecdsa(), KeyType::Ecdsa, true),
    ] {
        for opts in [SignOptions::default(), SignOptions::v2_only()] {
            let bytes = signed(&key, 7, &opts);
            let r = validate(&name_of(&key), &bytes, now())
                .unwrap_or_else(|e| panic!("{kind:?} v1={}: {e}", opts.v1));
            assert_eq!(r.key_type(), kind);
            assert_eq!(r.has_pub_key(), embeds, "{kind:?}");
            assert_eq!(r.value().as_ref(), VALUE);
            assert_eq!(r.value_str(), std::str::from_utf8(VALUE).ok());
            assert_eq!(r.sequence(), 7);
            assert_eq!(r.ttl(), Some(TTL));
            assert_eq!(r.validity(), eol());
            assert_eq!(r.validity_str(), "2027-01-17T08:00:00Z");
            assert_eq!(r.bytes(), &bytes);
            assert_eq!(r.name(), &name_of(&key));
        }
    }
}

#[test]
fn an_inline_key_may_also_be_sent_in_pub_key() {
    let k = ed(2);
    let opts = SignOptions {
        embed_public_key: Some(true),
        ..SignOptions::default()
    };
    let r = check(&k, &entry(&k, &opts)).expect("pubKey agrees with the name");
    assert!(r.has_pub_key());
}

#[test]
fn a_hashed_name_needs_pub_key() {
    let k = rsa();
    let opts = SignOptions {
        embed_public_key: Some(false),
        ..SignOptions::default()
    };
    let err = check(&k, &entry(&k, &opts)).expect_err("no key anywhere");
    assert_eq!(err.code(), "malformed");
    assert!(err.to_string().contains("must carry pubKey"), "{err}");
}

#[test]
fn flipped_signature_bytes_are_refused() {
    let k = ed(3);
    let good = entry(&k, &SignOptions::default());
    let sig = good.signature_v2.clone().expect("signed");
    for i in [0, sig.len() / 2, sig.len() - 1] {
        for bit in [0x01, 0x80] {
            let mut e = good.clone();
            let mut s = sig.to_vec();
            s[i] ^= bit;
            e.signature_v2 = Some(Bytes::from(s));
            let err = check(&k, &e).expect_err("tampered");
            assert_eq!(err.code(), "signature_invalid", "byte {i}");
            assert!(err.to_string().contains("Ed25519 key of k51"), "{err}");
        }
    }
    // A flipped byte in the signed data is caught the same way.
    let mut e = good.clone();
    let mut data = e.data.clone().expect("data").to_vec();
    let at = data
        .windows(VALUE.len())
        .position(|w| w == VALUE)
        .expect("value in data")
        + 7;
    data[at] ^= 0x01; // a letter of the CID: still valid CBOR
    e.data = Some(Bytes::from(data));
    assert_eq!(code(check(&k, &e)), "signature_invalid");
    // A signature of the wrong length too.
    let mut e = good;
    e.signature_v2 = Some(Bytes::from_static(b"short"));
    assert_eq!(code(check(&k, &e)), "signature_invalid");
}

#[test]
fn a_record_for_another_name_is_refused() {
    let (a, b) = (ed(4), ed(5));
    // No pubKey: verified with b's inline key, so the signature fails.
    let bytes = signed(&a, 1, &SignOptions::default());
    assert_eq!(
        code(validate(&name_of(&b), &bytes, now())),
        "signature_invalid"
    );
    // pubKey of a, name of b: the key does not hash to the name.
    let e = entry(
        &a,
        &SignOptions {
            embed_public_key: Some(true),
            ..SignOptions::default()
        },
    );
    let err = validate(&name_of(&b), &e.encode_to_vec(), now()).expect_err("mismatch");
    assert_eq!(err.code(), "name_key_mismatch");
    assert!(err.to_string().contains(&name_of(&a).to_string()), "{err}");
    // The same with hashed (RSA, ECDSA) names.
    let bytes = signed(&rsa(), 1, &SignOptions::default());
    let other = Keypair::generate_ecdsa();
    assert_eq!(
        code(validate(&name_of(&other), &bytes, now())),
        "name_key_mismatch"
    );
}

#[test]
fn expiry_is_strictly_after_now() {
    let k = ed(6);
    for (eol, want) in [
        (now() - Duration::from_secs(1), "expired"),
        (now(), "expired"),
        (now() + Duration::from_nanos(1), "ok"),
    ] {
        let bytes = testing::sign(&k, VALUE, 1, eol, TTL, &SignOptions::default()).expect("signs");
        assert_eq!(code(validate(&name_of(&k), &bytes, now())), want);
    }
    let bytes = testing::sign(&k, VALUE, 1, now(), TTL, &SignOptions::default()).expect("signs");
    let err = validate(&name_of(&k), &bytes, now()).expect_err("expired");
    assert!(
        err.to_string().contains("ended at 2027-01-15T08:00:00Z"),
        "{err}"
    );
}

#[test]
fn v1_only_records_are_refused() {
    let k = ed(7);
    let mut e = entry(&k, &SignOptions::default());
    e.data = None;
    e.signature_v2 = None;
    assert_eq!(code(check(&k, &e)), "v1_only");
    let mut e = entry(&k, &SignOptions::default());
    e.signature_v2 = Some(Bytes::new());
    assert_eq!(code(check(&k, &e)), "v1_only");
    let mut e = entry(&k, &SignOptions::v2_only());
    e.signature_v2 = None;
    let err = check(&k, &e).expect_err("unsigned");
    assert_eq!(err.code(), "malformed");
    assert!(err.to_string().contains("signatureV2"), "{err}");
    let mut e = entry(&k, &SignOptions::v2_only());
    e.data = None;
    assert_eq!(code(check(&k, &e)), "malformed");
}

#[test]
fn size_limit_is_10_kib() {
    let k = ed(8);
    let at = |pad: usize| {
        let mut v = Vec::new();
        v.push(0x59); // byte string, 2-byte length
        v.extend_from_slice(&(pad as u16).to_be_bytes());
        v.resize(3 + pad, b'x');
        let opts = SignOptions {
            extra: vec![("_pad".into(), v)],
            ..SignOptions::default()
        };
        signed(&k, 1, &opts)
    };
    let base = at(256).len();
    let exact = at(256 + MAX_RECORD_BYTES - base);
    assert_eq!(exact.len(), MAX_RECORD_BYTES);
    validate(&name_of(&k), &exact, now()).expect("exactly at the limit");
    let over = at(256 + MAX_RECORD_BYTES - base + 1);
    assert_eq!(over.len(), MAX_RECORD_BYTES + 1);
    let err = validate(&name_of(&k), &over, now()).expect_err("over");
    assert_eq!(err, RecordError::TooLarge { len: 10_241 });
    let err = validate_bytes(&name_of(&k), over, now()).expect_err("over");
    assert_eq!(err.code(), "too_large");
}

#[test]
fn broken_cbor_is_malformed_even_when_signed() {
    let k = ed(9);
    let validity = b"2027-01-17T08:00:00Z";
    let good = testing::encode_data(VALUE, validity, 1, Some(1), &[]);
    let mut indefinite = good.clone();
    indefinite[0] = 0xbf; // indefinite-length map…
    indefinite.push(0xff); // …with its break
    let mut trailing = good.clone();
    trailing.push(0x00);
    for (what, data, want) in [
        (
            "garbage",
            b"not cbor at all".to_vec(),
            "data is not DAG-CBOR",
        ),
        ("a list", vec![0x80], "not a map"),
        ("indefinite map", indefinite, "indefinite-length"),
        ("trailing byte", trailing, "after the end"),
        (
            "truncated",
            good[..good.len() - 1].to_vec(),
            "ends in the middle of an item",
        ),
    ] {
        let err = check(&k, &with_data(&k, data)).expect_err(what);
        assert_eq!(err.code(), "malformed", "{what}: {err}");
        assert!(err.to_string().contains(want), "{what}: {err}");
    }
}

#[test]
fn missing_or_mistyped_fields_are_malformed() {
    let k = ed(10);
    let v = b"2027-01-17T08:00:00Z";
    let map = |entries: Vec<(&str, Vec<u8>)>| {
        let mut e: Vec<(String, Vec<u8>)> = entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let mut out = Vec::new();
        cbor::write_map(&mut out, &mut e);
        out
    };
    let bytes = |b: &[u8]| {
        let mut o = Vec::new();
        cbor::write_bytes(&mut o, b);
        o
    };
    let text = |s: &str| {
        let mut o = Vec::new();
        cbor::write_text(&mut o, s);
        o
    };
    let uint = |n: u64| {
        let mut o = Vec::new();
        cbor::write_uint(&mut o, n);
        o
    };
    let full = |skip: &str, replace: Option<(&str, Vec<u8>)>| {
        let mut fields = vec![
            ("Value", bytes(VALUE)),
            ("Validity", bytes(v)),
            ("ValidityType", uint(0)),
            ("Sequence", uint(1)),
            ("TTL", uint(1)),
        ];
        fields.retain(|(k, _)| *k != skip);
        if let Some((key, val)) = replace {
            fields.retain(|(k, _)| *k != key);
            fields.push((key, val));
        }
        map(fields)
    };
    for (what, data, want) in [
        ("no Value", full("Value", None), "data has no Value"),
        (
            "no Validity",
            full("Validity", None),
            "data has no Validity",
        ),
        (
            "no ValidityType",
            full("ValidityType", None),
            "data has no ValidityType",
        ),
        (
            "no Sequence",
            full("Sequence", None),
            "data has no Sequence",
        ),
        (
            "text Value",
            full("", Some(("Value", text("/ipfs/x")))),
            "data[Value] is a text string",
        ),
        (
            "text Validity",
            full("", Some(("Validity", text("2027-01-17T08:00:00Z")))),
            "data[Validity] is a text string",
        ),
        (
            "bytes Sequence",
            full("", Some(("Sequence", bytes(b"1")))),
            "data[Sequence] is a byte string",
        ),
        (
            "negative Sequence",
            full("", Some(("Sequence", vec![0x20]))),
            "data[Sequence] = -1 is negative",
        ),
        (
            "huge Sequence",
            full("", Some(("Sequence", uint(1 << 63)))),
            "above 2^63-1",
        ),
        (
            "huge TTL",
            full("", Some(("TTL", uint(u64::MAX)))),
            "above 2^63-1",
        ),
        (
            "duplicate key",
            {
                // Five entries plus a second Sequence: six declared.
                let mut d = full("", None);
                d[0] += 1;
                d.extend([text("Sequence"), uint(2)].concat());
                d
            },
            "duplicate map key \"Sequence\"",
        ),
    ] {
        let err = check(&k, &with_data(&k, data)).expect_err(what);
        assert_eq!(err.code(), "malformed", "{what}: {err}");
        assert!(err.to_string().contains(want), "{what}: {err}");
    }
    // Sequence 2^63-1 is the largest boxo reads, and fine.
    let r = check(
        &k,
        &with_data(&k, full("", Some(("Sequence", uint(i64::MAX as u64))))),
    )
    .expect("max");
    assert_eq!(r.sequence(), i64::MAX as u64);
}

#[test]
fn ttl_is_optional_for_v2_only_records() {
    let k = ed(11);
    let opts = SignOptions {
        omit_ttl: true,
        ..SignOptions::v2_only()
    };
    let r = check(&k, &entry(&k, &opts)).expect("boxo accepts a record without TTL");
    assert_eq!(r.ttl(), None);
    // With V1 fields, boxo compares TTL and fails when data has none.
    let opts = SignOptions {
        omit_ttl: true,
        ..SignOptions::default()
    };
    let err = check(&k, &entry(&k, &opts)).expect_err("V1 ttl vs absent TTL");
    assert_eq!(err.code(), "v1_v2_mismatch");
    assert!(err.to_string().contains("data[TTL] is absent"), "{err}");
}

#[test]
fn extra_data_keys_are_ignored() {
    let k = ed(12);
    let opts = SignOptions {
        extra: vec![
            ("_meta".into(), vec![0x63, b'a', b'b', b'c']),
            ("_n".into(), vec![0x82, 0x01, 0xa1, 0x61, b'x', 0xf6]),
            ("Zz".into(), vec![0xfb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]),
        ],
        ..SignOptions::default()
    };
    let r = check(&k, &entry(&k, &opts)).expect("extras are ignored");
    assert_eq!(r.value().as_ref(), VALUE);
}

#[test]
fn v1_fields_must_match_the_signed_data() {
    let k = ed(13);
    type Tamper = fn(&mut pb::IpnsEntry);
    let cases: [(&str, Tamper); 6] = [
        ("value", |e| {
            e.value = Some(Bytes::from_static(b"/ipfs/other"))
        }),
        ("validity", |e| {
            e.validity = Some(Bytes::from_static(b"2099-01-01T00:00:00Z"))
        }),
        ("validityType", |e| e.validity_type = Some(1)),
        ("sequence", |e| e.sequence = Some(99)),
        ("ttl", |e| e.ttl = Some(1)),
        ("sequence", |e| e.sequence = None),
    ];
    for (field, tamper) in cases {
        let mut e = entry(&k, &SignOptions::default());
        tamper(&mut e);
        testing::resign(&k, &mut e).expect("signs"); // a valid V1 signature does not help
        let err = check(&k, &e).expect_err(field);
        assert_eq!(err.code(), "v1_v2_mismatch", "{field}: {err}");
        assert!(
            err.to_string().starts_with(&format!(
                "IPNS record V1 field disagrees with the signed data: {field} is"
            )),
            "{err}"
        );
    }
    // A stray legacy field in a V2-only record is compared too.
    let mut e = entry(&k, &SignOptions::v2_only());
    e.sequence = Some(2);
    assert_eq!(code(check(&k, &e)), "v1_v2_mismatch");
    e.sequence = Some(1);
    check(&k, &e).expect("an agreeing copy is fine");
}

#[test]
fn validity_must_be_eol_and_rfc3339() {
    let k = ed(14);
    let data = |vt: u64, validity: &[u8]| {
        let mut d = testing::encode_data(VALUE, validity, 1, Some(1), &[]);
        // ValidityType is the last entry: "ValidityType" then its value.
        let last = d.len() - 1;
        assert_eq!(d[last], 0x00);
        d.truncate(last);
        cbor::write_uint(&mut d, vt);
        d
    };
    let err = check(&k, &with_data(&k, data(1, b"2027-01-17T08:00:00Z"))).expect_err("type 1");
    assert_eq!(err.code(), "validity_invalid");
    assert!(
        err.to_string().contains("validity type 1 is not supported"),
        "{err}"
    );
    for bad in [
        &b"tomorrow"[..],
        b"2027-01-17 08:00:00Z",
        b"2027-01-17T08:00:00",
        b"\xff\xfe",
    ] {
        let err = check(&k, &with_data(&k, data(0, bad))).expect_err("bad time");
        assert_eq!(err.code(), "validity_invalid", "{err}");
    }
    // An offset is accepted (boxo converts it to UTC) and kept as signed.
    let r = check(&k, &with_data(&k, data(0, b"2027-01-17T10:00:00+02:00"))).expect("offset");
    assert_eq!(r.validity(), eol());
    assert_eq!(r.validity_str(), "2027-01-17T10:00:00+02:00");
}

#[test]
fn public_key_field_errors() {
    let k = ed(15);
    let mut e = entry(&k, &SignOptions::default());
    let unknown = pb::PublicKey {
        key_type: Some(7),
        data: Some(vec![1, 2, 3]),
    };
    e.pub_key = Some(Bytes::from(unknown.encode_to_vec()));
    let err = check(&k, &e).expect_err("type 7");
    assert_eq!(err, RecordError::KeyUnsupported { key_type: 7 });
    let broken = pb::PublicKey {
        key_type: Some(1),
        data: Some(vec![1, 2, 3]),
    };
    e.pub_key = Some(Bytes::from(broken.encode_to_vec()));
    let err = check(&k, &e).expect_err("short Ed25519 key");
    assert_eq!(err.code(), "malformed");
    assert!(err.to_string().contains("not a valid Ed25519 key"), "{err}");
    e.pub_key = Some(Bytes::from_static(b"\xff\xff"));
    assert_eq!(code(check(&k, &e)), "malformed");
    // An identity name whose digest holds no key.
    let junk = Name::from_multihash(libp2p::multihash::Multihash::wrap(0, b"nope").expect("short"))
        .expect("identity");
    let bytes = signed(&k, 1, &SignOptions::default());
    assert_eq!(code(validate(&junk, &bytes, now())), "malformed");
}

#[test]
fn protobuf_garbage_is_malformed_and_unknown_fields_are_tolerated() {
    let k = ed(16);
    for bad in [
        &b""[..],
        b"\xff",
        b"\x0a\x05ab",
        b"\x4a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
    ] {
        assert_eq!(
            code(validate(&name_of(&k), bad, now())),
            "malformed",
            "{bad:?}"
        );
    }
    // boxo (Go protobuf) skips unknown fields; so does prost.
    let mut bytes = signed(&k, 1, &SignOptions::default()).to_vec();
    bytes.extend_from_slice(&[0x9a, 0x06, 0x02, b'h', b'i']); // field 99, 2 bytes
    let r = validate(&name_of(&k), &bytes, now()).expect("unknown field");
    assert_eq!(
        r.bytes().as_ref(),
        bytes.as_slice(),
        "kept exactly as received"
    );
}

#[test]
fn every_string_form_of_the_name_validates() {
    let k = ed(17);
    let bytes = signed(&k, 1, &SignOptions::default());
    let name = name_of(&k);
    for s in [
        name.to_string(),
        name.to_base32(),
        name.peer_id().to_base58(),
        format!("/ipns/{name}"),
    ] {
        validate(&Name::parse(&s).expect("name"), &bytes, now()).expect("same name");
    }
}

#[test]
fn compare_follows_sequence_then_validity_then_bytes() {
    let k = ed(18);
    let make = |seq: u64, eol: SystemTime, value: &[u8]| {
        let b = testing::sign(&k, value, seq, eol, TTL, &SignOptions::default()).expect("signs");
        validate(&name_of(&k), &b, now()).expect("valid")
    };
    let old = make(1, eol() + Duration::from_secs(3600), VALUE);
    let new = make(2, eol(), VALUE);
    assert_eq!(
        compare(&new, &old),
        Ordering::Greater,
        "sequence beats validity"
    );
    assert!(new.is_better_than(&old));
    assert!(!old.is_better_than(&new));
    let later = make(2, eol() + Duration::from_nanos(1), VALUE);
    assert_eq!(
        compare(&later, &new),
        Ordering::Greater,
        "then later validity"
    );
    let (a, b) = (make(3, eol(), b"/ipfs/a"), make(3, eol(), b"/ipfs/b"));
    let want = a.bytes().as_ref().cmp(b.bytes().as_ref());
    assert_ne!(want, Ordering::Equal);
    assert_eq!(compare(&a, &b), want, "then the greater bytes");
    assert_eq!(compare(&a, &a.clone()), Ordering::Equal);
    assert!(!a.is_better_than(&a.clone()));
}

#[test]
fn non_utf8_values_are_kept_as_bytes() {
    let k = ed(19);
    let b =
        testing::sign(&k, b"\x01\x71\xff", 1, eol(), TTL, &SignOptions::default()).expect("signs");
    let r = validate(&name_of(&k), &b, now()).expect("boxo reads binary CIDs here");
    assert_eq!(r.value().as_ref(), b"\x01\x71\xff");
    assert_eq!(r.value_str(), None);
}
