//! IPNS record validation benchmark. Prints one table.
//!
//! Signs `SIDECAR_BENCH_IPNS_VALIDATE` (default 20,000) distinct Ed25519
//! records (each its own key, V1 + V2 fields, as Kubo and js-ipns make them;
//! not timed), then on one thread: (a) `validate` of every record, (b) the
//! Ed25519 signature check alone over the same signed bytes. (b)/(a) is the
//! share of validation spent in signature verification. Best of 5 passes.
//! Target: (a) ≥ 40,000 records/s on one core.
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
        "| share of (a) in signature verification | {:.0} % |",
        100.0 * verify.as_secs_f64() / validate.as_secs_f64()
    );
}
