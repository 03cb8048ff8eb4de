//! Tests of [`Name`]: every accepted string form, the canonical forms, the
//! routing key, inline keys, and the errors.

use libp2p::identity::Keypair;

use super::*;

/// (key type, legacy base58 peer ID, base36 CIDv1): pairs printed by boxo
/// (`ipns/name_test.go`), so the encodings agree with Go's.
const BOXO_PAIRS: [(&str, &str, &str); 4] = [
    (
        "RSA",
        "QmRp2LvtSQtCkUWCpi92ph5MdQyRtfb9jHbkNgZzGExGuG",
        "k2k4r8kpauqq30hoj9oktej5btbgz1jeos16d3te36xd78trvak0jcor",
    ),
    (
        "Ed25519",
        "12D3KooWSzRuSFHgLsKr6jJboAPdP7xMga2YBgBspYuErxswcgvt",
        "k51qzi5uqu5dmjjgoe7s21dncepi970722cn30qlhm9qridas1c9ktkjb6ejux",
    ),
    (
        "ECDSA",
        "QmSBUTocZ9LxE53Br9PDDcPWnR1FJQRv94U96Wkt8eypAw",
        "k2k4r8ku8cnc1sl2h5xn7i07dma9abfnkqkxi4a6nd1xq0knoxe7b0y4",
    ),
    (
        "Secp256k1",
        "16Uiu2HAmUymv6JpFwNZppdKUMxGJuHsTeicXgHGKbBasu4Ruj3K1",
        "kzwfwjn5ji4puw3jc1qw4b073j74xvq21iziuqw4rem21pr7f0l4dj8i9yb978s",
    ),
];

fn parse(s: &str) -> Name {
    Name::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn legacy_peer_ids_and_base36_agree_with_boxo() {
    for (kind, b58, b36) in BOXO_PAIRS {
        let from_b58 = parse(b58);
        let from_b36 = parse(b36);
        assert_eq!(from_b58, from_b36, "{kind}");
        assert_eq!(from_b58.to_string(), b36, "{kind}: Display is base36");
        assert_eq!(from_b58.peer_id().to_base58(), b58, "{kind}");
        assert_eq!(parse(&format!("/ipns/{b58}")), from_b58, "{kind}");
        assert_eq!(parse(&format!("/ipns/{b36}")), from_b58, "{kind}");
    }
}

#[test]
fn every_multibase_of_the_cid_is_accepted() {
    let name = parse(BOXO_PAIRS[1].2);
    let cid = name.to_cid();
    for base in [
        Base::Base32Lower,
        Base::Base32Upper,
        Base::Base36Lower,
        Base::Base36Upper,
        Base::Base58Btc,
        Base::Base64,
        Base::Base64Url,
        Base::Base16Lower,
        Base::Base2,
    ] {
        let s = cid.to_string_of_base(base).expect("encodes");
        assert!(s.len() + NAMESPACE.len() <= MAX_NAME_CHARS, "{base:?}");
        assert_eq!(parse(&s), name, "{base:?}: {s}");
    }
    let b32 = name.to_base32();
    assert!(b32.starts_with("bafz"), "{b32}");
    assert_eq!(parse(&b32), name);
}

#[test]
fn names_of_generated_keys_round_trip_in_every_form() {
    for key in [
        Keypair::ed25519_from_bytes([7u8; 32]).expect("seed"),
        Keypair::generate_secp256k1(),
        Keypair::generate_ecdsa(),
    ] {
        let name = Name::from_public_key(&key.public());
        assert_eq!(parse(&name.to_string()), name);
        assert_eq!(parse(&name.to_base32()), name);
        assert_eq!(parse(&name.peer_id().to_base58()), name);
        assert_eq!(Name::from_routing_key(&name.routing_key()), Ok(name));
    }
}

#[test]
fn routing_key_is_namespace_then_multihash() {
    let name = parse(BOXO_PAIRS[1].1);
    let key = name.routing_key();
    assert_eq!(&key[..6], b"/ipns/");
    assert_eq!(&key[6..], name.multihash().to_bytes().as_slice());
    // Identity multihash of the 36-byte Ed25519 key protobuf.
    assert_eq!(&key[6..8], &[0x00, 36]);
    assert!(Name::from_routing_key(&key[1..]).is_err());
    assert!(Name::from_routing_key(b"/ipns/").is_err());
}

#[test]
fn inline_public_key_only_for_identity_names() {
    let ed = Keypair::ed25519_from_bytes([9u8; 32]).expect("seed");
    let name = Name::from_public_key(&ed.public());
    assert_eq!(name.inline_public_key(), Some(ed.public()));

    let secp = Keypair::generate_secp256k1();
    let name = Name::from_public_key(&secp.public());
    assert_eq!(name.inline_public_key(), Some(secp.public()));

    let ecdsa = Keypair::generate_ecdsa();
    let name = Name::from_public_key(&ecdsa.public());
    assert_eq!(
        name.multihash().code(),
        0x12,
        "ECDSA keys are too big to inline"
    );
    assert_eq!(name.inline_public_key(), None);

    // An identity multihash that holds no key is a valid peer ID but has
    // no inline key.
    let junk = Name::from_multihash(Multihash::wrap(IDENTITY_CODE, b"not a key").expect("short"))
        .expect("identity peer id");
    assert_eq!(junk.inline_public_key(), None);
    assert_eq!(junk.inline_key_bytes(), Some(&b"not a key"[..]));
}

#[test]
fn refuses_other_codecs_and_garbage_with_a_reason() {
    let name = parse(BOXO_PAIRS[1].2);
    let as_codec = |codec| {
        Cid::new_v1(codec, *name.multihash())
            .to_string_of_base(Base::Base32Lower)
            .expect("encodes")
    };
    let err = Name::parse(&as_codec(0x70)).expect_err("dag-pb");
    assert!(
        matches!(err, NameError::WrongCodec { codec: 0x70, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("dag-pb"), "{err}");
    assert!(err.to_string().contains("libp2p-key (0x72)"), "{err}");
    assert!(matches!(
        Name::parse(&as_codec(0x55)),
        Err(NameError::WrongCodec { codec: 0x55, .. })
    ));

    // A CIDv0 string is a Qm… base58 multihash: it parses as a legacy peer
    // ID (sha2-256), which is what go-libp2p does too. Prefixed with a
    // multibase it is a CIDv0 and refused.
    let v0 = "QmPZ9gcCEpqKTo6aq61g2nXGUhM4iCL3ewB6LDXZCtioEB";
    assert!(Name::parse(v0).is_ok());
    let err = Name::parse(&format!("z{v0}")).expect_err("CIDv0 in multibase");
    assert!(matches!(err, NameError::CidV0 { .. }), "{err}");

    // A CIDv1 libp2p-key over sha2-512 cannot be a peer ID.
    let sha512 = Multihash::wrap(0x13, &[1u8; 64]).expect("64 bytes");
    let s = Cid::new_v1(LIBP2P_KEY_CODEC, sha512).to_string();
    let err = Name::parse(&s).expect_err("sha2-512");
    assert!(
        matches!(
            err,
            NameError::UnsupportedHash {
                code: 0x13,
                len: 64,
                ..
            }
        ),
        "{err}"
    );

    for bad in [
        "",
        "/ipns/",
        "example.com",
        "k51qzi5uqu5dmjjgoe7s21dncepi970722cn30qlhm9qridas1c9ktkjb6ejuX!",
        "12D3KooWSzRuSFHgLsKr6jJboAPdP7xMga2YBgBspYuErxswcgv0",
        "Qm",
        "/ipfs/bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
        " k51qzi5uqu5dmjjgoe7s21dncepi970722cn30qlhm9qridas1c9ktkjb6ejux",
        "ipns/k51qzi5uqu5dmjjgoe7s21dncepi970722cn30qlhm9qridas1c9ktkjb6ejux",
    ] {
        let err = Name::parse(bad).expect_err(bad);
        assert_eq!(err.code(), "invalid_name");
        assert!(!err.to_string().is_empty());
    }
    assert_eq!(Name::parse(""), Err(NameError::Empty));
    let long = "k".repeat(MAX_NAME_CHARS + 1);
    assert_eq!(
        Name::parse(&long),
        Err(NameError::TooLong(MAX_NAME_CHARS + 1))
    );
    // Errors echo a bounded prefix of the input.
    let err = Name::parse(&"z".repeat(400))
        .expect_err("garbage")
        .to_string();
    assert!(err.len() < 300, "{err}");
}

#[test]
fn equal_names_hash_equal_whatever_the_input_form() {
    use std::collections::HashSet;
    let (_, b58, b36) = BOXO_PAIRS[0];
    let set: HashSet<Name> = [parse(b58), parse(b36), parse(&parse(b36).to_base32())]
        .into_iter()
        .collect();
    assert_eq!(set.len(), 1);
    assert_eq!(format!("{:?}", parse(b58)), format!("Name({b36})"));
}
