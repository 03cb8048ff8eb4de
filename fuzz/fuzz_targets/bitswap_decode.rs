//! Fuzz target `bitswap_decode`: arbitrary bytes as a Bitswap stream.
//!
//! Feeds the input through `FrameDecoder` in pieces (the first byte picks the
//! piece size), decodes every frame with `decode_request`, and drives each
//! request through the engine and the response builder; the whole input is
//! also tried as one message body and as a response body. Checks the
//! invariants the glue relies on: no panic, frames within 4 MiB, wantlists
//! within their cap, requests that re-encode to themselves, responses that
//! decode.
#![no_main]

use std::collections::HashMap;

use bytes::Bytes;
use cid::Cid;
use libfuzzer_sys::fuzz_target;
use libp2p::PeerId;
use sidecar::bitswap::{
    Action, Engine, EngineConfig, FrameDecoder, MAX_MESSAGE_SIZE, Outcome, Presence, Protocol,
    ResponseBuilder, decode_request, decode_response, encode_request,
};

/// Smaller than the default so the cap is reached by fuzz inputs.
const CAP: usize = 64;
const MAX_CID_BYTES: usize = 256;

fuzz_target!(|data: &[u8]| {
    let peer = PeerId::from_multihash(
        libp2p::multihash::Multihash::wrap(0, b"fuzz-peer").expect("short identity digest"),
    )
    .expect("identity peer id");
    let mut engine = Engine::new(EngineConfig {
        max_wantlist_entries: CAP,
        peer_quantum_bytes: 4096,
        ..EngineConfig::default()
    });

    let (piece, stream) = match data.split_first() {
        Some((b, rest)) => (usize::from(*b % 64) + 1, rest),
        None => (1, data),
    };
    let mut decoder = FrameDecoder::new();
    'stream: for chunk in stream.chunks(piece) {
        let mut input = chunk;
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(body)) => {
                    assert!(body.len() <= MAX_MESSAGE_SIZE);
                    handle(&mut engine, peer, &body);
                }
                Ok(None) => {
                    assert!(input.is_empty());
                    break;
                }
                Err(_) => break 'stream,
            }
        }
        assert!(decoder.buffered_capacity() <= MAX_MESSAGE_SIZE);
    }
    let _ = decoder.finish();

    handle(&mut engine, peer, data);
    let _ = decode_response(Bytes::copy_from_slice(data));
    engine.peer_disconnected(&peer);
    assert_eq!(engine.counters().peers, 0);
});

/// Size the "block source" reports for a CID: derived from its digest so
/// that held, not held, small, large and too-large blocks all occur.
fn block_size(cid: &Cid) -> Option<u32> {
    let b = cid.hash().digest().last().copied().unwrap_or(0);
    match b {
        0..=63 => None,
        255 => Some(3 * 1024 * 1024),
        _ => Some(u32::from(b) * 40),
    }
}

fn handle(engine: &mut Engine, peer: PeerId, body: &[u8]) {
    let Ok(req) = decode_request(body, MAX_CID_BYTES) else {
        return;
    };
    // Decoded requests re-encode to an equal request.
    let framed = encode_request(&req);
    let mut d = FrameDecoder::new();
    let mut input = &framed[..];
    if let Ok(Some(again)) = d.decode(&mut input) {
        let back = decode_request(&again, MAX_CID_BYTES).expect("our own encoding decodes");
        assert_eq!(back.full, req.full);
        assert_eq!(back.wants, req.wants);
        assert_eq!(back.cancels, req.cancels);
    }

    let sizes: Vec<Option<u32>> = req.wants.iter().map(|w| block_size(&w.cid)).collect();
    engine.receive(peer, &req, &sizes);
    assert!(engine.wantlist_len(&peer) <= CAP);
    drain(engine);

    // The blocks that were missing show up (e.g. a CAR got indexed).
    let arrived: HashMap<_, _> = req
        .wants
        .iter()
        .filter(|w| is_missing(&w.cid))
        .map(|w| (*w.cid.hash(), 500u32))
        .collect();
    engine.blocks_available(&arrived);
    drain(engine);
}

fn is_missing(cid: &Cid) -> bool {
    block_size(cid).is_none()
}

/// Serves every batch the engine hands out, as the glue would.
fn drain(engine: &mut Engine) {
    let mut turn = 0u32;
    while let Some(batch) = engine.next_batch() {
        turn += 1;
        assert!(batch.tasks.len() <= CAP, "every task belongs to a want");
        let protocol = Protocol::ALL[turn as usize % Protocol::ALL.len()];
        let mut builder = ResponseBuilder::new(protocol);
        let mut outcomes = Vec::new();
        for (i, t) in batch.tasks.iter().enumerate() {
            let added = match t.action {
                Action::SendBlock => builder
                    .add_block(
                        &t.cid,
                        Bytes::from(vec![0u8; t.block_size.unwrap_or(0).min(4096) as usize]),
                    )
                    .expect("block within 2 MiB"),
                Action::SendHave => builder.add_presence(&t.cid, Presence::Have),
                Action::SendDontHave => builder.add_presence(&t.cid, Presence::DontHave),
            };
            let outcome = match (added, i % 3) {
                (false, _) => Outcome::Dropped,
                (true, 0) => Outcome::SentDontHave,
                (true, _) => Outcome::Sent,
            };
            outcomes.push((t.cid, outcome));
        }
        builder.set_pending_bytes(batch.pending_bytes);
        for frame in builder.finish() {
            assert!(frame.len() <= MAX_MESSAGE_SIZE);
            let mut d = FrameDecoder::new();
            let mut input = &frame[..];
            let body = d.decode(&mut input).expect("our frame").expect("complete");
            let resp = decode_response(body).expect("our response decodes");
            assert!(resp.has_wantlist);
        }
        engine.batch_done(&batch.peer, batch.id, &outcomes);
    }
}
