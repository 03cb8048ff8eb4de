//! IPNS record validation benchmark. Prints one table.
//!
//! Signs `SIDECAR_BENCH_IPNS_VALIDATE` (default 20,000) distinct Ed25519
//! records (each its own key, V1 + V2 fields, as Kubo and js-ipns make them;
//! not timed), then on one thread: (a) `validate` of every record, (b) the
//! Ed25519 signature check alone over the same signed bytes, (c) the same
//! with the public key decoded from its 32 bytes each time, as `validate`
//! must. (c)/(a) is the share of validation spent in signature work. Best of
//! 5 passes. Target: (a) ≥ 40,000 records/s on one core.
//!
//! (d) is what the signatures would cost checked in batches of 256 with one
//! multi-scalar multiplication (the RFC 8032 cofactored group equation with
//! random 128-bit weights). The sidecar does not do this: boxo checks each
//! signature with the cofactorless equation, and a batch cannot reproduce
//! that answer for signatures whose R carries a small-order component, so a
//! batched path would accept records Kubo rejects. The row shows what that
//! trade would buy on this CPU.
//!
//! Run: `cargo bench -p sidecar --bench ipns`

use std::time::{Duration, Instant, SystemTime};

use libp2p::identity::Keypair;
use sidecar::ipns::{
    Name,
    testing::{SignOptions, sign},
    validate_bytes,
};

const PASSES: usize = 5;
const TARGET: f64 = 40_000.0;

fn main() {
    let n: usize = std::env::var("SIDECAR_BENCH_IPNS_VALIDATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let now = SystemTime::now();
    let validity = now + Duration::from_secs(86_400);
    let records: Vec<(Name, Keypair, bytes::Bytes)> = (0..n)
        .map(|i| {
            let key = Keypair::generate_ed25519();
            let value =
                format!("/ipfs/bafkreiem4twkqzsq2aj4shbycd4yvoj2cx72vezicletlhi7dijjciq{i:05}");
            let rec = sign(
                &key,
                value.as_bytes(),
                i as u64,
                validity,
                Duration::from_secs(300),
                &SignOptions::default(),
            )
            .expect("sign");
            (Name::from_public_key(&key.public()), key, rec)
        })
        .collect();
    // What the V2 signature covers, for (b).
    let signed: Vec<(libp2p::identity::PublicKey, Vec<u8>, Vec<u8>)> = records
        .iter()
        .map(|(name, key, rec)| {
            let r = validate_bytes(name, rec.clone(), now).expect("valid");
            let entry: sidecar::ipns::pb::IpnsEntry =
                prost::Message::decode(r.bytes().clone()).expect("protobuf");
            let mut msg = b"ipns-signature:".to_vec();
            msg.extend_from_slice(entry.data.as_deref().expect("data"));
            (key.public(), msg, entry.signature_v2.expect("sig").to_vec())
        })
        .collect();

    let best = |f: &dyn Fn() -> usize| {
        (0..PASSES)
            .map(|_| {
                let t = Instant::now();
                assert_eq!(f(), n);
                t.elapsed()
            })
            .min()
            .expect("passes")
    };
    let validate = best(&|| {
        records
            .iter()
            .filter(|(name, _, rec)| validate_bytes(name, rec.clone(), now).is_ok())
            .count()
    });
    let verify = best(&|| signed.iter().filter(|(k, m, s)| k.verify(m, s)).count());
    let raw: Vec<([u8; 32], &[u8], &[u8])> = signed
        .iter()
        .map(|(k, m, s)| {
            let k = k.clone().try_into_ed25519().expect("ed25519").to_bytes();
            (k, m.as_slice(), s.as_slice())
        })
        .collect();
    let decode_verify = best(&|| {
        raw.iter()
            .filter(|(k, m, s)| {
                libp2p::identity::ed25519::PublicKey::try_from_bytes(k)
                    .is_ok_and(|k| k.verify(m, s))
            })
            .count()
    });
    let batched = best(&|| {
        raw.chunks(BATCH)
            .filter(|c| batch::verify(c))
            .map(<[_]>::len)
            .sum()
    });
    let rate = n as f64 / validate.as_secs_f64();
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| records (distinct Ed25519 names, V1+V2) | {n} |");
    println!(
        "| (a) `validate`, one thread | {rate:.0} records/s ({:.1} µs each) — target ≥ {TARGET:.0}: {} |",
        validate.as_secs_f64() * 1e6 / n as f64,
        if rate >= TARGET { "met" } else { "MISSED" }
    );
    println!(
        "| (b) Ed25519 verify alone | {:.0} /s ({:.1} µs each) |",
        n as f64 / verify.as_secs_f64(),
        verify.as_secs_f64() * 1e6 / n as f64
    );
    println!(
        "| (c) key decode + Ed25519 verify | {:.0} /s ({:.1} µs each) |",
        n as f64 / decode_verify.as_secs_f64(),
        decode_verify.as_secs_f64() * 1e6 / n as f64
    );
    println!(
        "| share of (a) in signature work, (c)/(a) | {:.0} % |",
        100.0 * decode_verify.as_secs_f64() / validate.as_secs_f64()
    );
    println!(
        "| (d) batches of {BATCH}, cofactored equation (not used) | {:.0} /s ({:.1} µs each) |",
        n as f64 / batched.as_secs_f64(),
        batched.as_secs_f64() * 1e6 / n as f64
    );
}

const BATCH: usize = 256;

/// Batched Ed25519 verification, for row (d) only.
mod batch {
    use curve25519_dalek::{
        constants::ED25519_BASEPOINT_POINT,
        edwards::{CompressedEdwardsY, EdwardsPoint},
        scalar::Scalar,
        traits::{IsIdentity, VartimeMultiscalarMul},
    };
    use sha2::{Digest, Sha512};

    /// Whether `[8](Σ zᵢRᵢ + Σ zᵢkᵢAᵢ − (Σ zᵢsᵢ)B)` is the identity.
    pub fn verify(items: &[([u8; 32], &[u8], &[u8])]) -> bool {
        let mut weights = Weights::new();
        let mut scalars = Vec::with_capacity(2 * items.len() + 1);
        let mut points = Vec::with_capacity(2 * items.len() + 1);
        let mut base = Scalar::ZERO;
        for (key, msg, sig) in items {
            let (Ok(r), Ok(s)) = (
                <[u8; 32]>::try_from(&sig[..32]),
                <[u8; 32]>::try_from(&sig[32..]),
            ) else {
                return false;
            };
            let (Some(a), Some(r_point), Some(s)) = (
                CompressedEdwardsY(*key).decompress(),
                CompressedEdwardsY(r).decompress(),
                Option::<Scalar>::from(Scalar::from_canonical_bytes(s)),
            ) else {
                return false;
            };
            let hash: [u8; 64] = Sha512::new()
                .chain_update(r)
                .chain_update(key)
                .chain_update(msg)
                .finalize()
                .into();
            let k = Scalar::from_bytes_mod_order_wide(&hash);
            let z = Scalar::from(weights.next());
            base += z * s;
            scalars.extend([z, z * k]);
            points.extend([r_point, a]);
        }
        scalars.push(-base);
        points.push(ED25519_BASEPOINT_POINT);
        EdwardsPoint::vartime_multiscalar_mul(scalars, points)
            .mul_by_cofactor()
            .is_identity()
    }

    /// 128-bit weights (splitmix64; speed is what this row measures).
    struct Weights(u64);

    impl Weights {
        fn new() -> Weights {
            let seed = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            Weights(seed)
        }

        fn next(&mut self) -> u128 {
            let mut half = || {
                self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = self.0;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            };
            (u128::from(half()) << 64) | u128::from(half())
        }
    }
}
