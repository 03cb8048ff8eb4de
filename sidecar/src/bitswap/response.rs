//! Building (and, for test clients, reading) Bitswap response messages.
//!
//! Owns: [`ResponseBuilder`], which packs blocks and presences into one or
//! more framed messages of at most [`MAX_MESSAGE_SIZE`] bytes in the shape
//! the peer's [`Protocol`] understands, and [`decode_response`], its inverse.
//!
//! Called by: the async glue, once per engine batch, to turn served tasks
//! into frames for the outbound stream; tests and the raw test client decode
//! what it built.
//!
//! Must never: do I/O or read a clock; never emit a message without the
//! wantlist field (old Kubo dereferences it unconditionally).

use bytes::{BufMut, Bytes, BytesMut};
use cid::Cid;
use prost::{
    Message as _,
    encoding::{WireType, encode_key, encode_varint},
};

use super::frame::MAX_MESSAGE_SIZE;
use super::pb;
use super::wire::{Prefix, Protocol, WireError, is_v0_compatible, parse_cid};

/// Largest block Bitswap carries: 2 MiB (spec, "Block Sizes": implementations
/// MUST support blocks up to 2 MiB and SHOULD NOT send larger ones).
pub const MAX_BLOCK_SIZE: usize = 2 * 1024 * 1024;

/// Bytes of every message that are not items: the length prefix (4 bytes
/// cover 4 MiB; 5 for margin), the empty wantlist field (2 bytes: tag and a
/// zero length) and `pendingBytes` (tag plus up to 10 varint bytes, the size
/// protobuf gives a negative int32).
const FRAME_OVERHEAD: usize = 5 + 2 + 11;

/// A HAVE or a DONT_HAVE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Presence {
    Have,
    DontHave,
}

/// Packs a response for one peer into frames.
///
/// Add items in the order they should arrive; each frame keeps that order
/// within a field. [`ResponseBuilder::finish`] returns the frames, each
/// already length-prefixed and at most [`MAX_MESSAGE_SIZE`] bytes including
/// the prefix. Every frame carries an empty wantlist and the pending-bytes
/// value (1.2.0 only).
///
/// What each protocol can carry:
///
/// | item | 1.2.0 | 1.1.0 | 1.0.0 / legacy |
/// | --- | --- | --- | --- |
/// | block | `payload` (prefix + data) | `payload` | `blocks` (raw data), only for CIDs [`is_v0_compatible`] |
/// | HAVE / DONT_HAVE | `blockPresences` | dropped | dropped |
/// | pending bytes | `pendingBytes` | dropped | dropped |
///
/// A dropped item makes the `add_*` call return `Ok(false)` / `false`; the
/// glue reports that task as [`super::Outcome::Dropped`].
#[derive(Debug)]
pub struct ResponseBuilder {
    protocol: Protocol,
    /// Budget for items in one message.
    item_budget: usize,
    pending_bytes: i32,
    /// Full messages, encoded by `finish` (so `pendingBytes` can still be set).
    done: Vec<pb::Message>,
    current: pb::Message,
    current_items_len: usize,
}

impl ResponseBuilder {
    /// An empty response for a peer speaking `protocol`.
    pub fn new(protocol: Protocol) -> Self {
        Self::with_max_message_size(protocol, MAX_MESSAGE_SIZE)
    }

    /// Like [`ResponseBuilder::new`] with a smaller frame bound (for tests).
    /// Values above [`MAX_MESSAGE_SIZE`] are lowered to it; the bound must
    /// leave room for one [`MAX_BLOCK_SIZE`] block or large blocks get a
    /// frame of their own that exceeds it.
    pub fn with_max_message_size(protocol: Protocol, max: usize) -> Self {
        Self {
            protocol,
            item_budget: max.min(MAX_MESSAGE_SIZE).saturating_sub(FRAME_OVERHEAD),
            pending_bytes: 0,
            done: Vec::new(),
            current: empty_message(),
            current_items_len: 0,
        }
    }

    /// The protocol this response is for.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Sets `pendingBytes` (bytes still queued for this peer, see
    /// [`super::Engine::pending_bytes`]); saturates at `i32::MAX`. Ignored
    /// below 1.2.0. May be called at any time before `finish`.
    pub fn set_pending_bytes(&mut self, pending: u64) {
        self.pending_bytes = i32::try_from(pending).unwrap_or(i32::MAX);
    }

    /// Adds a block. Returns `Ok(false)` when the protocol cannot carry it
    /// (1.0.0/legacy and a CID that is not dag-pb/sha2-256: the receiver
    /// would derive a different CID from the bytes).
    ///
    /// The caller vouches that `data` is the block `cid` names.
    ///
    /// # Errors
    ///
    /// [`WireError::BlockTooLarge`] above [`MAX_BLOCK_SIZE`].
    pub fn add_block(&mut self, cid: &Cid, data: Bytes) -> Result<bool, WireError> {
        if data.len() > MAX_BLOCK_SIZE {
            return Err(WireError::BlockTooLarge {
                size: data.len(),
                max: MAX_BLOCK_SIZE,
            });
        }
        if self.protocol.uses_payload() {
            let block = pb::Block {
                prefix: Prefix::of(cid).to_bytes(),
                data,
            };
            self.make_room(prost::encoding::message::encoded_len(3, &block));
            self.current.payload.push(block);
        } else {
            if !is_v0_compatible(cid) {
                return Ok(false);
            }
            self.make_room(prost::encoding::bytes::encoded_len(2, &data));
            self.current.blocks.push(data);
        }
        Ok(true)
    }

    /// Adds a HAVE or DONT_HAVE. Returns `false` (and adds nothing) below
    /// 1.2.0, which has no presences.
    pub fn add_presence(&mut self, cid: &Cid, presence: Presence) -> bool {
        if !self.protocol.supports_presences() {
            return false;
        }
        let bp = pb::BlockPresence {
            cid: cid.to_bytes(),
            r#type: match presence {
                Presence::Have => pb::BlockPresenceType::Have as i32,
                Presence::DontHave => pb::BlockPresenceType::DontHave as i32,
            },
        };
        self.make_room(prost::encoding::message::encoded_len(4, &bp));
        self.current.block_presences.push(bp);
        true
    }

    /// True when nothing has been added (finish would return no frames).
    pub fn is_empty(&self) -> bool {
        self.done.is_empty() && self.current_items_len == 0
    }

    /// The framed messages, in order, each as one contiguous buffer; empty
    /// when nothing was added. Same bytes as [`ResponseBuilder::finish_parts`].
    pub fn finish(self) -> Vec<Bytes> {
        self.finish_parts()
            .into_iter()
            .map(|f| f.to_bytes())
            .collect()
    }

    /// The framed messages, in order, as [`OutFrame`]s whose large block
    /// bodies are the caller's own buffers, not copies.
    pub fn finish_parts(mut self) -> Vec<OutFrame> {
        if self.current_items_len > 0 {
            self.flush();
        }
        let pending = if self.protocol.supports_presences() {
            self.pending_bytes
        } else {
            0
        };
        self.done
            .into_iter()
            .map(|mut msg| {
                msg.pending_bytes = pending;
                OutFrame::encode(&msg)
            })
            .collect()
    }

    /// Starts a new message if `len` more bytes of items would not fit.
    fn make_room(&mut self, len: usize) {
        if self.current_items_len > 0 && self.current_items_len + len > self.item_budget {
            self.flush();
        }
        self.current_items_len += len;
    }

    fn flush(&mut self) {
        let msg = std::mem::replace(&mut self.current, empty_message());
        self.done.push(msg);
        self.current_items_len = 0;
    }
}

/// Block bodies shorter than this are copied into the frame; longer ones
/// are written from the buffer they were read into.
const INLINE_BODY: usize = 16 * 1024;

/// One length-prefixed message as byte runs to be written in order.
///
/// The encoding is byte-for-byte what prost produces for the message
/// (fields in tag order), but a block body of [`INLINE_BODY`] bytes or more
/// is its own run, shared with the block read rather than copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutFrame {
    parts: Vec<Bytes>,
}

impl OutFrame {
    fn encode(msg: &pb::Message) -> Self {
        let mut out = FrameWriter::default();
        let body_len = msg.encoded_len();
        encode_varint(body_len as u64, &mut out.head);
        if let Some(wantlist) = &msg.wantlist {
            prost::encoding::message::encode(1, wantlist, &mut out.head);
        }
        for data in &msg.blocks {
            encode_key(2, WireType::LengthDelimited, &mut out.head);
            encode_varint(data.len() as u64, &mut out.head);
            out.body(data);
        }
        for block in &msg.payload {
            encode_key(3, WireType::LengthDelimited, &mut out.head);
            encode_varint(block.encoded_len() as u64, &mut out.head);
            if !block.prefix.is_empty() {
                prost::encoding::bytes::encode(1, &block.prefix, &mut out.head);
            }
            if !block.data.is_empty() {
                encode_key(2, WireType::LengthDelimited, &mut out.head);
                encode_varint(block.data.len() as u64, &mut out.head);
                out.body(&block.data);
            }
        }
        for bp in &msg.block_presences {
            prost::encoding::message::encode(4, bp, &mut out.head);
        }
        if msg.pending_bytes != 0 {
            prost::encoding::int32::encode(5, &msg.pending_bytes, &mut out.head);
        }
        out.finish()
    }

    /// The runs, in order.
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// Total bytes, length prefix included.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    /// True for a frame without bytes (never produced by the builder).
    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(Bytes::is_empty)
    }

    /// The frame as one contiguous buffer.
    pub fn to_bytes(&self) -> Bytes {
        match self.parts.as_slice() {
            [one] => one.clone(),
            parts => {
                let mut out = BytesMut::with_capacity(self.len());
                for p in parts {
                    out.put_slice(p);
                }
                out.freeze()
            }
        }
    }
}

#[derive(Default)]
struct FrameWriter {
    head: BytesMut,
    parts: Vec<Bytes>,
}

impl FrameWriter {
    fn body(&mut self, data: &Bytes) {
        if data.len() < INLINE_BODY {
            self.head.put_slice(data);
        } else {
            if !self.head.is_empty() {
                self.parts.push(self.head.split().freeze());
            }
            self.parts.push(data.clone());
        }
    }

    fn finish(mut self) -> OutFrame {
        if !self.head.is_empty() {
            self.parts.push(self.head.freeze());
        }
        OutFrame { parts: self.parts }
    }
}

fn empty_message() -> pb::Message {
    pb::Message {
        wantlist: Some(pb::Wantlist::default()),
        ..Default::default()
    }
}

/// A block as a response carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseBlock {
    /// The CID prefix (1.1.0+), or `None` for a 1.0.0 raw block (implicitly
    /// CIDv0: dag-pb, sha2-256).
    pub prefix: Option<Prefix>,
    pub data: Bytes,
}

/// The typed view of one response message (for test clients).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// Whether the message had the wantlist field (ours always do).
    pub has_wantlist: bool,
    pub blocks: Vec<ResponseBlock>,
    pub presences: Vec<(Cid, Presence)>,
    pub pending_bytes: i32,
}

/// Decodes one response body (a frame without its length prefix).
///
/// # Errors
///
/// [`WireError::Protobuf`] for a malformed message or an unknown presence
/// type, [`WireError::BadPrefix`] / [`WireError::BadCid`] for bad CID parts.
pub fn decode_response(body: Bytes) -> Result<Response, WireError> {
    let msg = pb::Message::decode(body)?;
    let mut out = Response {
        has_wantlist: msg.wantlist.is_some(),
        pending_bytes: msg.pending_bytes,
        ..Default::default()
    };
    for data in msg.blocks {
        out.blocks.push(ResponseBlock { prefix: None, data });
    }
    for block in msg.payload {
        out.blocks.push(ResponseBlock {
            prefix: Some(Prefix::from_bytes(&block.prefix)?),
            data: block.data,
        });
    }
    for bp in msg.block_presences {
        let cid = parse_cid(&bp.cid).ok_or(WireError::BadCid)?;
        let presence = match pb::BlockPresenceType::try_from(bp.r#type) {
            Ok(pb::BlockPresenceType::Have) => Presence::Have,
            Ok(pb::BlockPresenceType::DontHave) => Presence::DontHave,
            Err(_) => return Err(WireError::Protobuf("unknown block presence type".into())),
        };
        out.presences.push((cid, presence));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitswap::FrameDecoder;
    use crate::bitswap::wire::tests::{BLAKE3, RAW, cid_v0, cid_v1};
    use crate::bitswap::wire::{DAG_PB_CODEC, SHA2_256_CODE};

    const MIB: usize = 1024 * 1024;

    fn bodies(frames: &[Bytes]) -> Vec<Bytes> {
        frames
            .iter()
            .map(|f| {
                assert!(f.len() <= MAX_MESSAGE_SIZE, "frame of {} bytes", f.len());
                let mut d = FrameDecoder::new();
                let mut input = &f[..];
                let body = d.decode(&mut input).unwrap().unwrap();
                assert!(input.is_empty(), "one message per frame");
                body
            })
            .collect()
    }

    fn decode_all(frames: &[Bytes]) -> Vec<Response> {
        bodies(frames)
            .into_iter()
            .map(|b| decode_response(b).unwrap())
            .collect()
    }

    #[test]
    fn payload_round_trip_rebuilds_the_cids() {
        let cids = [
            cid_v0(1),
            cid_v1(RAW, SHA2_256_CODE, 2),
            cid_v1(DAG_PB_CODEC, SHA2_256_CODE, 3),
            cid_v1(RAW, BLAKE3, 4),
        ];
        let mut b = ResponseBuilder::new(Protocol::V120);
        for (i, c) in cids.iter().enumerate() {
            assert!(b.add_block(c, Bytes::from(vec![i as u8; 10])).unwrap());
        }
        assert!(b.add_presence(&cids[0], Presence::Have));
        assert!(b.add_presence(&cids[1], Presence::DontHave));
        b.set_pending_bytes(12345);
        let msgs = decode_all(&b.finish());
        assert_eq!(msgs.len(), 1);
        let m = &msgs[0];
        assert!(m.has_wantlist);
        assert_eq!(m.pending_bytes, 12345);
        assert_eq!(m.blocks.len(), 4);
        for (i, (blk, c)) in m.blocks.iter().zip(&cids).enumerate() {
            let prefix = blk.prefix.unwrap();
            assert_eq!(prefix.to_cid(c.hash().digest()).unwrap(), *c);
            assert_eq!(blk.data, Bytes::from(vec![i as u8; 10]));
        }
        assert_eq!(
            m.presences,
            vec![(cids[0], Presence::Have), (cids[1], Presence::DontHave)]
        );
    }

    #[test]
    fn wantlist_field_is_always_encoded() {
        for p in Protocol::ALL {
            let mut b = ResponseBuilder::new(p);
            b.add_block(&cid_v0(1), Bytes::from_static(b"x")).unwrap();
            let body = bodies(&b.finish()).remove(0);
            // Field 1, length-delimited (0x0a), length 0: the empty wantlist.
            assert!(body.windows(2).any(|w| w == [0x0a, 0x00]), "{p}: {body:?}");
            assert!(decode_response(body).unwrap().has_wantlist);
        }
    }

    #[test]
    fn five_one_mib_blocks_split_into_two_frames() {
        let mut b = ResponseBuilder::new(Protocol::V120);
        for i in 0..5 {
            b.add_block(&cid_v1(RAW, SHA2_256_CODE, i), Bytes::from(vec![0u8; MIB]))
                .unwrap();
        }
        b.add_presence(&cid_v0(99), Presence::Have);
        let frames = b.finish();
        assert_eq!(frames.len(), 2);
        let msgs = decode_all(&frames);
        assert_eq!(msgs[0].blocks.len() + msgs[1].blocks.len(), 5);
        assert!(msgs[0].blocks.len() <= 3);
        assert_eq!(msgs[1].presences.len(), 1);
        assert!(msgs.iter().all(|m| m.has_wantlist));
    }

    #[test]
    fn max_size_blocks_always_fit_one_per_frame_at_least() {
        let mut b = ResponseBuilder::new(Protocol::V110);
        for i in 0..3 {
            b.add_block(
                &cid_v1(RAW, SHA2_256_CODE, i),
                Bytes::from(vec![1u8; MAX_BLOCK_SIZE]),
            )
            .unwrap();
        }
        let frames = b.finish();
        // Two 2 MiB blocks plus overhead exceed 4 MiB, so one per frame.
        assert_eq!(frames.len(), 3);
        assert_eq!(
            decode_all(&frames)
                .iter()
                .map(|m| m.blocks.len())
                .sum::<usize>(),
            3
        );
    }

    #[test]
    fn many_presences_split_near_the_bound() {
        let max = 64 * 1024;
        let mut b = ResponseBuilder::with_max_message_size(Protocol::V120, max);
        for i in 0..10_000 {
            assert!(b.add_presence(&cid_v1(RAW, SHA2_256_CODE, i), Presence::DontHave));
        }
        b.set_pending_bytes(u64::MAX);
        let frames = b.finish();
        assert!(frames.len() > 1);
        for (i, f) in frames.iter().enumerate() {
            assert!(f.len() <= max, "{} > {max}", f.len());
            // Each frame but the last is nearly full (no degenerate splitting).
            if i + 1 < frames.len() {
                assert!(f.len() > max - 100, "frame {i}: {}", f.len());
            }
        }
        let msgs = decode_all(&frames);
        assert_eq!(
            msgs.iter().map(|m| m.presences.len()).sum::<usize>(),
            10_000
        );
        assert!(msgs.iter().all(|m| m.pending_bytes == i32::MAX));
    }

    #[test]
    fn oversized_block_is_an_error() {
        let mut b = ResponseBuilder::new(Protocol::V120);
        let err = b
            .add_block(&cid_v0(1), Bytes::from(vec![0u8; MAX_BLOCK_SIZE + 1]))
            .unwrap_err();
        assert!(matches!(err, WireError::BlockTooLarge { .. }));
        assert!(b.is_empty());
        assert!(b.finish().is_empty());
    }

    #[test]
    fn legacy_protocols_use_the_blocks_field_and_drop_what_they_cannot_carry() {
        for p in [Protocol::V100, Protocol::Legacy] {
            let mut b = ResponseBuilder::new(p);
            assert!(b.add_block(&cid_v0(1), Bytes::from_static(b"v0")).unwrap());
            assert!(
                b.add_block(
                    &cid_v1(DAG_PB_CODEC, SHA2_256_CODE, 2),
                    Bytes::from_static(b"v1pb")
                )
                .unwrap()
            );
            assert!(
                !b.add_block(&cid_v1(RAW, SHA2_256_CODE, 3), Bytes::from_static(b"raw"))
                    .unwrap()
            );
            assert!(!b.add_presence(&cid_v0(1), Presence::Have));
            b.set_pending_bytes(7);
            let msgs = decode_all(&b.finish());
            assert_eq!(msgs.len(), 1);
            let data: Vec<&[u8]> = msgs[0].blocks.iter().map(|b| &b.data[..]).collect();
            assert_eq!(data, vec![&b"v0"[..], &b"v1pb"[..]]);
            assert!(msgs[0].blocks.iter().all(|b| b.prefix.is_none()));
            assert!(msgs[0].presences.is_empty());
            assert_eq!(msgs[0].pending_bytes, 0);
        }
    }

    #[test]
    fn v110_drops_presences_but_uses_payload() {
        let mut b = ResponseBuilder::new(Protocol::V110);
        assert!(!b.add_presence(&cid_v0(1), Presence::DontHave));
        assert!(b.is_empty());
        assert!(
            b.add_block(&cid_v1(RAW, BLAKE3, 1), Bytes::from_static(b"x"))
                .unwrap()
        );
        let msgs = decode_all(&b.finish());
        assert!(msgs[0].blocks[0].prefix.is_some());
    }

    #[test]
    fn gathered_frames_are_prosts_bytes_and_share_large_bodies() {
        let sizes = [0, 1, 100, INLINE_BODY - 1, INLINE_BODY, 300_000, MIB];
        for p in Protocol::ALL {
            let mut b = ResponseBuilder::new(p);
            let mut bodies = Vec::new();
            for (i, n) in sizes.iter().enumerate() {
                let data = Bytes::from(vec![i as u8 + 1; *n]);
                b.add_block(&cid_v0(i as u32), data.clone()).unwrap();
                bodies.push(data);
            }
            b.add_presence(&cid_v0(99), Presence::DontHave);
            b.set_pending_bytes(7_000_000);
            let msgs = b.done.clone();
            let mut current = b.current.clone();
            let pending = if p.supports_presences() { 7_000_000 } else { 0 };
            current.pending_bytes = pending;
            let frames = b.finish_parts();
            let mut expected: Vec<pb::Message> = msgs;
            expected.push(current);
            assert_eq!(frames.len(), expected.len(), "{p}");
            for (frame, mut msg) in frames.iter().zip(expected) {
                msg.pending_bytes = pending;
                let prost_bytes = crate::bitswap::encode_frame(&msg.encode_to_vec());
                assert_eq!(frame.to_bytes(), prost_bytes, "{p}");
                assert_eq!(frame.len(), prost_bytes.len());
            }
            // Every body of INLINE_BODY bytes or more is a run of its own that
            // points into the caller's buffer.
            let runs: Vec<*const u8> = frames
                .iter()
                .flat_map(|f| f.parts().iter().map(|r| r.as_ptr()))
                .collect();
            for data in bodies.iter().filter(|d| d.len() >= INLINE_BODY) {
                assert!(
                    runs.contains(&data.as_ptr()),
                    "{p}: a large body was copied"
                );
            }
        }
    }
}
