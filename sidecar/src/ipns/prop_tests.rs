//! Property test: random mutations of valid records (bit flips,
//! truncations, insertions, deletions, overwrites, splices) are never
//! accepted unless what is accepted is still signed by the name's key.
//!
//! The oracle is independent of `validate`: an accepted record is decoded
//! again with prost, and its `data` must be byte-for-byte one that the
//! name's key signed when the base records were made (forging an Ed25519,
//! secp256k1, ECDSA or RSA signature over other bytes is infeasible), with
//! `signatureV2` verifying over it. Mutations that only touch unsigned
//! parts (the V1 signature, unknown protobuf fields) may pass; they are
//! counted, not forbidden. Seeded, so a failure reproduces.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use libp2p::identity::Keypair;
use prost::Message;

use super::{
    record::SIGNATURE_V2_PREFIX,
    testing::{self, SignOptions},
    *,
};

/// Mutated records tried (each validated once).
const ITERATIONS: usize = 5_000;
/// Fixed seed of the generator.
const SEED: u64 = 0x1975_0b5e_ed00_1b17;

/// SplitMix64: a tiny, good-enough seeded generator (no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// A valid record, its name, and the `data` its key signed.
struct Base {
    key: Keypair,
    name: Name,
    bytes: Vec<u8>,
    data: Vec<u8>,
}

fn bases() -> Vec<Base> {
    let eol = now() + Duration::from_secs(3600);
    let ttl = Duration::from_secs(60);
    let mut der = include_bytes!("testdata/rsa2048.pk8").to_vec();
    let rsa = Keypair::rsa_from_pkcs8(&mut der).expect("test key");
    let extra = SignOptions {
        extra: vec![("_x".into(), vec![0x82, 0x01, 0x41, 0x00])],
        ..SignOptions::default()
    };
    let embed = SignOptions {
        embed_public_key: Some(true),
        ..SignOptions::v2_only()
    };
    let cases: Vec<(Keypair, SignOptions)> = vec![
        (
            Keypair::ed25519_from_bytes([1; 32]).expect("seed"),
            SignOptions::default(),
        ),
        (
            Keypair::ed25519_from_bytes([2; 32]).expect("seed"),
            SignOptions::v2_only(),
        ),
        (Keypair::ed25519_from_bytes([3; 32]).expect("seed"), embed),
        (Keypair::ed25519_from_bytes([4; 32]).expect("seed"), extra),
        (Keypair::generate_secp256k1(), SignOptions::default()),
        (Keypair::generate_ecdsa(), SignOptions::default()),
        (rsa, SignOptions::v2_only()),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (key, opts))| {
            let e = testing::entry(
                &key,
                b"/ipfs/bafkqaddwgevxmmraojswg33smq",
                i as u64,
                eol,
                ttl,
                &opts,
            )
            .expect("signs");
            let name = Name::from_public_key(&key.public());
            let bytes = e.encode_to_vec();
            validate(&name, &bytes, now()).expect("base records are valid");
            Base {
                data: e.data.clone().expect("data").to_vec(),
                key,
                name,
                bytes,
            }
        })
        .collect()
}

/// Applies one random mutation to `b`; `other` is material for splices.
fn mutate(rng: &mut Rng, b: &mut Vec<u8>, other: &[u8]) {
    match rng.below(7) {
        0 => {
            for _ in 0..=rng.below(4) {
                if !b.is_empty() {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
            }
        }
        1 => {
            let n = rng.below(b.len() + 1);
            b.truncate(n);
        }
        2 => {
            let at = rng.below(b.len() + 1);
            let n = 1 + rng.below(8);
            let ins: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            b.splice(at..at, ins);
        }
        3 => {
            if !b.is_empty() {
                let i = rng.below(b.len());
                b[i] = rng.byte();
            }
        }
        4 => {
            if !b.is_empty() {
                let at = rng.below(b.len());
                let n = 1 + rng.below((b.len() - at).min(16));
                b.drain(at..at + n);
            }
        }
        5 => {
            if !b.is_empty() {
                let from = rng.below(b.len());
                let n = 1 + rng.below((b.len() - from).min(32));
                let piece = b[from..from + n].to_vec();
                let at = rng.below(b.len() + 1);
                b.splice(at..at, piece);
            }
        }
        _ => {
            let cut = rng.below(b.len() + 1);
            let from = rng.below(other.len() + 1);
            b.truncate(cut);
            b.extend_from_slice(&other[from..]);
        }
    }
}

#[test]
fn mutated_records_are_accepted_only_when_still_signed() {
    let bases = bases();
    let mut rng = Rng(SEED);
    let mut outcomes: BTreeMap<&'static str, usize> = BTreeMap::new();
    for i in 0..ITERATIONS {
        let base = &bases[rng.below(bases.len())];
        let other = &bases[rng.below(bases.len())].bytes;
        let mut b = base.bytes.clone();
        for _ in 0..=rng.below(3) {
            mutate(&mut rng, &mut b, other);
        }
        match validate(&base.name, &b, now()) {
            Err(e) => *outcomes.entry(e.code()).or_default() += 1,
            Ok(r) => {
                *outcomes.entry("accepted").or_default() += 1;
                let e = pb::IpnsEntry::decode(b.as_slice()).expect("accepted bytes decode");
                let data = e.data.expect("accepted record has data");
                let sig = e.signature_v2.expect("accepted record has signatureV2");
                assert!(
                    bases
                        .iter()
                        .any(|x| x.name == base.name && x.data == data.as_ref()),
                    "iteration {i}: accepted data the key never signed: {b:02x?}"
                );
                let signed = [SIGNATURE_V2_PREFIX, &data].concat();
                assert!(base.key.public().verify(&signed, &sig), "iteration {i}");
                assert_eq!(r.bytes().as_ref(), b.as_slice());
                assert_eq!(r.name(), &base.name);
            }
        }
    }
    println!("{ITERATIONS} mutated records: {outcomes:?}");
    for code in outcomes.keys().filter(|c| **c != "accepted") {
        assert!(CODES.contains(code), "unknown code {code}");
    }
    // Both sides were exercised: some mutations only touched unsigned
    // bytes, and most broke the record.
    assert!(outcomes.get("accepted").copied().unwrap_or(0) > 0);
    assert!(outcomes.get("signature_invalid").copied().unwrap_or(0) > 0);
    assert!(outcomes.get("malformed").copied().unwrap_or(0) > 0);
}

#[test]
fn random_bytes_are_never_accepted() {
    let bases = bases();
    let mut rng = Rng(SEED ^ 1);
    for _ in 0..2_000 {
        let n = rng.below(600);
        let b: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
        let base = &bases[rng.below(bases.len())];
        assert!(validate(&base.name, &b, now()).is_err());
    }
}
