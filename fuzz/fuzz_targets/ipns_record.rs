//! Fuzz target `ipns_record`: arbitrary bytes as an IPNS record and as a name.
//!
//! The input is validated as a record for a fixed Ed25519 name and for the
//! name its embedded public key (if any) makes; a record that validates must
//! have kept its exact bytes, a validity after `now`, and must re-validate
//! identically. The input is also parsed as a name string; a name that
//! parses must print in a form that parses back to itself.
#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use libp2p::identity::Keypair;
use sidecar::ipns::{Name, validate_bytes};

fuzz_target!(|data: &[u8]| {
    // A fixed "now" keeps runs reproducible: 2026-01-01.
    let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let key = Keypair::ed25519_from_bytes([7u8; 32]).expect("32-byte seed");
    let fixed = Name::from_public_key(&key.public());
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(record) = validate_bytes(&fixed, bytes.clone(), now) {
        check(&record, &fixed, data, now);
    }
    // The name of whatever key the record embeds, if the protobuf has one.
    if let Ok(entry) = <sidecar::ipns::pb::IpnsEntry as prost::Message>::decode(bytes.clone())
        && let Some(pk) = entry.pub_key.as_ref()
        && let Ok(pk) = libp2p::identity::PublicKey::try_decode_protobuf(pk)
    {
        let name = Name::from_public_key(&pk);
        if let Ok(record) = validate_bytes(&name, bytes, now) {
            check(&record, &name, data, now);
        }
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(name) = Name::parse(text)
    {
        assert_eq!(Name::parse(&name.to_string()).ok(), Some(name));
        assert_eq!(Name::parse(&name.to_base32()).ok(), Some(name));
        assert_eq!(Name::from_routing_key(&name.routing_key()).ok(), Some(name));
    }
});

fn check(record: &sidecar::ipns::Record, name: &Name, data: &[u8], now: SystemTime) {
    assert_eq!(record.bytes().as_ref(), data);
    assert_eq!(record.name(), name);
    assert!(record.validity() > now);
    let again = validate_bytes(name, record.bytes().clone(), now).expect("valid once, valid again");
    assert_eq!(again.sequence(), record.sequence());
}
