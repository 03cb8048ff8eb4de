//! Length-prefixed framing of Bitswap messages on a stream.
//!
//! Owns: splitting a byte stream into message bodies ([`FrameDecoder`]) and
//! prefixing a body with its length ([`encode_frame`]). Every Bitswap message
//! on a stream is preceded by its length as a multiformats unsigned varint
//! (spec, "Bitswap 1.0.0: Protocol Format"), and is at most
//! [`MAX_MESSAGE_SIZE`] bytes.
//!
//! Called by: the async glue, once per inbound stream, with whatever bytes a
//! read returned; and by [`super::wire`] when it frames responses.
//!
//! Must never: do I/O, read a clock, or allocate more than the frame bound
//! for one frame. An oversized length or a malformed varint is an error as
//! soon as the varint is read, before any of the body is buffered.

use bytes::Bytes;

use super::wire::WireError;

/// Largest Bitswap message, length prefix excluded: 4 MiB (spec: "All
/// protocol messages MUST be less than or equal to 4MiB in size").
pub const MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// Longest unsigned varint we accept: 9 bytes carry 63 bits, the multiformats
/// unsigned-varint spec's maximum.
const MAX_VARINT_BYTES: u32 = 9;

/// Incremental decoder of length-prefixed frames.
///
/// Feed it the bytes of one stream in order, in pieces of any size; it hands
/// back each complete message body. The body buffer is allocated as the body
/// arrives (growing geometrically, capped at the declared length), so a peer
/// that declares 4 MiB and sends one byte costs one byte, not 4 MiB.
///
/// The glue's read loop:
///
/// ```
/// # use sidecar::bitswap::{FrameDecoder, WireError};
/// # fn handle(_body: bytes::Bytes) {}
/// # fn main() -> Result<(), WireError> {
/// let mut decoder = FrameDecoder::new();
/// let read: &[u8] = &[2, 0x0a, 0x00]; // bytes one `read` returned
/// let mut input = read;
/// while let Some(body) = decoder.decode(&mut input)? {
///     handle(body); // e.g. wire::decode_request(&body, max_cid_bytes)
/// }
/// // `input` is now empty; read more and repeat. At EOF:
/// decoder.finish()?;
/// # Ok(()) }
/// ```
///
/// After an error the stream is unusable (frame boundaries are lost): drop
/// the stream. Further calls keep returning the same error.
#[derive(Debug)]
pub struct FrameDecoder {
    max: usize,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Reading the length varint: value so far, bytes read so far.
    Length { value: u64, read: u32 },
    /// Reading a body of `len` bytes into `buf`.
    Body { len: usize, buf: Vec<u8> },
    /// A previous call failed; the stream is unusable.
    Failed(WireError),
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder that accepts frames up to [`MAX_MESSAGE_SIZE`].
    pub fn new() -> Self {
        Self::with_max_message_size(MAX_MESSAGE_SIZE)
    }

    /// A decoder that accepts frames up to `max` bytes (for tests, or a
    /// stricter bound). Values above [`MAX_MESSAGE_SIZE`] are lowered to it.
    pub fn with_max_message_size(max: usize) -> Self {
        Self {
            max: max.min(MAX_MESSAGE_SIZE),
            state: State::Length { value: 0, read: 0 },
        }
    }

    /// Consumes bytes from the front of `input` up to the end of the next
    /// complete frame and returns its body; returns `Ok(None)` once `input`
    /// is used up without completing a frame (the partial frame is kept).
    ///
    /// A zero-length frame yields an empty body (a valid, empty message).
    ///
    /// # Errors
    ///
    /// [`WireError::FrameTooLarge`] as soon as the length exceeds the bound;
    /// [`WireError::BadVarint`] for a non-minimal or overlong length.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Bytes>, WireError> {
        loop {
            match &mut self.state {
                State::Failed(err) => return Err(err.clone()),
                State::Length { value, read } => {
                    let Some((&byte, rest)) = input.split_first() else {
                        return Ok(None);
                    };
                    *input = rest;
                    *value |= u64::from(byte & 0x7f) << (7 * *read);
                    *read += 1;
                    let (value, read) = (*value, *read);
                    if value > self.max as u64 {
                        return Err(self.fail(WireError::FrameTooLarge {
                            len: value,
                            max: self.max,
                        }));
                    }
                    if byte & 0x80 != 0 {
                        if read >= MAX_VARINT_BYTES {
                            return Err(self.fail(WireError::BadVarint("longer than 9 bytes")));
                        }
                        continue;
                    }
                    if byte == 0 && read > 1 {
                        return Err(self.fail(WireError::BadVarint("not minimally encoded")));
                    }
                    // value <= self.max, which is a usize.
                    let len = value as usize;
                    if len == 0 {
                        self.state = State::Length { value: 0, read: 0 };
                        return Ok(Some(Bytes::new()));
                    }
                    self.state = State::Body {
                        len,
                        buf: Vec::new(),
                    };
                }
                State::Body { len, buf } => {
                    let want = *len - buf.len();
                    let take = want.min(input.len());
                    if take == 0 {
                        return Ok(None);
                    }
                    let needed = buf.len() + take;
                    if needed > buf.capacity() {
                        // Geometric growth, but never past the declared length.
                        let target = needed.max(buf.capacity() * 2).min(*len);
                        buf.reserve_exact(target - buf.len());
                    }
                    buf.extend_from_slice(&input[..take]);
                    *input = &input[take..];
                    if buf.len() == *len {
                        let body = std::mem::take(buf);
                        self.state = State::Length { value: 0, read: 0 };
                        return Ok(Some(Bytes::from(body)));
                    }
                }
            }
        }
    }

    /// Checks that the stream ended on a frame boundary. Call at EOF.
    ///
    /// # Errors
    ///
    /// [`WireError::Truncated`] when a length or body was cut short, or the
    /// error that already failed the decoder.
    pub fn finish(&self) -> Result<(), WireError> {
        match &self.state {
            State::Length { read: 0, .. } => Ok(()),
            State::Length { read, .. } => Err(WireError::Truncated {
                expected: None,
                got: *read as usize,
            }),
            State::Body { len, buf } => Err(WireError::Truncated {
                expected: Some(*len),
                got: buf.len(),
            }),
            State::Failed(err) => Err(err.clone()),
        }
    }

    /// Bytes of the current partial frame held in memory (body only).
    pub fn buffered(&self) -> usize {
        match &self.state {
            State::Body { buf, .. } => buf.len(),
            _ => 0,
        }
    }

    /// Memory reserved for the current partial frame; never above the bound.
    pub fn buffered_capacity(&self) -> usize {
        match &self.state {
            State::Body { buf, .. } => buf.capacity(),
            _ => 0,
        }
    }

    fn fail(&mut self, err: WireError) -> WireError {
        self.state = State::Failed(err.clone());
        err
    }
}

/// Prefixes `body` with its length as an unsigned varint.
pub fn encode_frame(body: &[u8]) -> Bytes {
    let mut out =
        Vec::with_capacity(prost::encoding::encoded_len_varint(body.len() as u64) + body.len());
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_frames(decoder: &mut FrameDecoder, mut input: &[u8]) -> Result<Vec<Bytes>, WireError> {
        let mut out = Vec::new();
        while let Some(frame) = decoder.decode(&mut input)? {
            out.push(frame);
        }
        assert!(input.is_empty(), "decode returned None with input left");
        Ok(out)
    }

    #[test]
    fn several_frames_in_one_read() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&encode_frame(b"hello"));
        stream.extend_from_slice(&encode_frame(b""));
        stream.extend_from_slice(&encode_frame(&[7u8; 300]));
        let mut d = FrameDecoder::new();
        let frames = all_frames(&mut d, &stream).unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(&frames[0][..], b"hello");
        assert!(frames[1].is_empty());
        assert_eq!(&frames[2][..], &[7u8; 300][..]);
        d.finish().unwrap();
    }

    #[test]
    fn byte_by_byte_feeding_gives_the_same_frames() {
        let mut stream = Vec::new();
        for n in [0usize, 1, 127, 128, 300, 20_000] {
            stream.extend_from_slice(&encode_frame(&vec![n as u8; n]));
        }
        let mut d = FrameDecoder::new();
        let mut frames = Vec::new();
        for byte in &stream {
            frames.extend(all_frames(&mut d, std::slice::from_ref(byte)).unwrap());
        }
        let lens: Vec<usize> = frames.iter().map(|f| f.len()).collect();
        assert_eq!(lens, vec![0, 1, 127, 128, 300, 20_000]);
        d.finish().unwrap();
    }

    #[test]
    fn oversized_length_fails_before_any_body_is_buffered() {
        let mut prefix = Vec::new();
        prost::encoding::encode_varint(MAX_MESSAGE_SIZE as u64 + 1, &mut prefix);
        let mut d = FrameDecoder::new();
        let mut input = &prefix[..];
        let err = d.decode(&mut input).unwrap_err();
        assert!(
            matches!(err, WireError::FrameTooLarge { len, .. } if len == MAX_MESSAGE_SIZE as u64 + 1)
        );
        assert_eq!(d.buffered_capacity(), 0);
        // The decoder stays failed.
        let mut more: &[u8] = &[0];
        assert!(d.decode(&mut more).is_err());
        assert!(d.finish().is_err());
    }

    #[test]
    fn exactly_the_bound_is_accepted() {
        let body = vec![1u8; MAX_MESSAGE_SIZE];
        let framed = encode_frame(&body);
        let mut d = FrameDecoder::new();
        let frames = all_frames(&mut d, &framed).unwrap();
        assert_eq!(frames[0].len(), MAX_MESSAGE_SIZE);
    }

    #[test]
    fn huge_varint_is_rejected_on_the_byte_that_overflows() {
        // After three 0xff bytes the value is 2^21 - 1 (< 4 MiB); the fourth
        // pushes it past 2^22, so decoding stops there.
        let mut d = FrameDecoder::new();
        let mut input: &[u8] = &[
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert!(matches!(
            d.decode(&mut input),
            Err(WireError::FrameTooLarge { .. })
        ));
        assert_eq!(input.len(), 7, "stopped reading at the fourth byte");
    }

    #[test]
    fn non_minimal_varint_is_rejected() {
        let mut d = FrameDecoder::new();
        let mut input: &[u8] = &[0x85, 0x00, 1, 2, 3, 4, 5];
        assert!(matches!(d.decode(&mut input), Err(WireError::BadVarint(_))));
    }

    #[test]
    fn overlong_varint_of_zero_continuations_is_rejected() {
        let mut d = FrameDecoder::with_max_message_size(usize::MAX);
        let mut input: &[u8] = &[0x80; 12];
        assert!(matches!(d.decode(&mut input), Err(WireError::BadVarint(_))));
    }

    #[test]
    fn truncated_varint_and_body_are_reported_at_eof() {
        let mut d = FrameDecoder::new();
        let mut input: &[u8] = &[0x80];
        assert_eq!(d.decode(&mut input).unwrap(), None);
        assert!(matches!(
            d.finish(),
            Err(WireError::Truncated {
                expected: None,
                got: 1
            })
        ));

        let mut d = FrameDecoder::new();
        let mut input: &[u8] = &[5, 1, 2];
        assert_eq!(d.decode(&mut input).unwrap(), None);
        assert_eq!(d.buffered(), 2);
        assert!(matches!(
            d.finish(),
            Err(WireError::Truncated {
                expected: Some(5),
                got: 2
            })
        ));
    }

    #[test]
    fn partial_large_body_reserves_little() {
        let mut d = FrameDecoder::new();
        let mut prefix = Vec::new();
        prost::encoding::encode_varint(MAX_MESSAGE_SIZE as u64, &mut prefix);
        prefix.push(9);
        let mut input = &prefix[..];
        assert_eq!(d.decode(&mut input).unwrap(), None);
        assert!(
            d.buffered_capacity() < 1024,
            "reserved {}",
            d.buffered_capacity()
        );
    }

    #[test]
    fn growth_never_exceeds_the_declared_length() {
        let len = 1_000_003usize;
        let body = vec![3u8; len];
        let framed = encode_frame(&body);
        let mut d = FrameDecoder::new();
        let mut max_cap = 0;
        let mut got = None;
        for chunk in framed.chunks(4096) {
            let mut input = chunk;
            if let Some(f) = d.decode(&mut input).unwrap() {
                got = Some(f);
            }
            max_cap = max_cap.max(d.buffered_capacity());
        }
        assert!(max_cap <= len, "capacity {max_cap} > {len}");
        assert_eq!(got.unwrap().len(), len);
    }

    #[test]
    fn garbage_never_panics_and_never_overallocates() {
        // A small deterministic generator; the fuzz target covers the rest.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200 {
            let mut data = Vec::new();
            for _ in 0..64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                data.push(x as u8);
            }
            let mut d = FrameDecoder::new();
            let mut input = &data[..];
            while let Ok(Some(_)) = d.decode(&mut input) {}
            assert!(d.buffered_capacity() <= MAX_MESSAGE_SIZE);
        }
    }
}
