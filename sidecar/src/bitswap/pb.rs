//! The Bitswap protobuf messages, written by hand for prost (no protoc).
//!
//! Owns: the field layout of `message Message` from the Bitswap spec
//! (ipfs/specs `src/bitswap-protocol.md`, 1.0.0 through 1.2.0) and boxo's
//! `bitswap/message/pb/message.proto`. Field numbers must never change.
//!
//! Called by: [`super::wire`] only. Everything else works with the typed
//! views in `wire` ([`super::wire::Request`], [`super::wire::ResponseBuilder`]);
//! these structs are public so that tests and the raw test client can craft
//! messages a typed API would refuse to build (bad CIDs, unknown want types).
//!
//! Must never: do I/O, or hold anything but plain wire data.

use bytes::Bytes;

/// `message Message`: one Bitswap message (the body of one frame).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Message {
    /// Field 1. Always present in what we send: old Kubo crashes on a
    /// message without it (see design.md, "Facts that bite").
    #[prost(message, optional, tag = "1")]
    pub wantlist: Option<Wantlist>,
    /// Field 2, Bitswap 1.0.0 only: raw block bytes; the receiver derives a
    /// CIDv0 (dag-pb, sha2-256) from them.
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub blocks: Vec<Bytes>,
    /// Field 3, Bitswap 1.1.0+: blocks with their CID prefix.
    #[prost(message, repeated, tag = "3")]
    pub payload: Vec<Block>,
    /// Field 4, Bitswap 1.2.0: HAVE / DONT_HAVE answers.
    #[prost(message, repeated, tag = "4")]
    pub block_presences: Vec<BlockPresence>,
    /// Field 5, Bitswap 1.2.0: bytes still queued for the receiver.
    #[prost(int32, tag = "5")]
    pub pending_bytes: i32,
}

/// `message Message.Wantlist`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Wantlist {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
    /// True when `entries` is the sender's complete wantlist.
    #[prost(bool, tag = "2")]
    pub full: bool,
}

/// `message Message.Wantlist.Entry`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    /// The binary CID (a CIDv0 is its bare multihash).
    #[prost(bytes = "vec", tag = "1")]
    pub block: Vec<u8>,
    /// Higher is more urgent. The spec calls the default 1; proto3 makes an
    /// absent field 0, which is what arrives when a sender omits it.
    #[prost(int32, tag = "2")]
    pub priority: i32,
    #[prost(bool, tag = "3")]
    pub cancel: bool,
    /// A [`WantType`] value; kept as `i32` so unknown values can be counted
    /// instead of failing the whole message.
    #[prost(enumeration = "WantType", tag = "4")]
    pub want_type: i32,
    #[prost(bool, tag = "5")]
    pub send_dont_have: bool,
}

/// `enum Message.Wantlist.WantType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum WantType {
    Block = 0,
    Have = 1,
}

/// `message Message.Block` (1.1.0+ `payload` entry).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Block {
    /// The CID prefix: varints of version, codec, multihash code, digest
    /// length (see [`super::wire::Prefix`]).
    #[prost(bytes = "vec", tag = "1")]
    pub prefix: Vec<u8>,
    #[prost(bytes = "bytes", tag = "2")]
    pub data: Bytes,
}

/// `enum Message.BlockPresenceType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum BlockPresenceType {
    Have = 0,
    DontHave = 1,
}

/// `message Message.BlockPresence`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BlockPresence {
    #[prost(bytes = "vec", tag = "1")]
    pub cid: Vec<u8>,
    /// A [`BlockPresenceType`] value.
    #[prost(enumeration = "BlockPresenceType", tag = "2")]
    pub r#type: i32,
}
