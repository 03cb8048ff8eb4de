//! A strict, bounded DAG-CBOR reader for the IPNS `data` document, and the
//! few encoder helpers [`super::testing`] needs to build one.
//!
//! Owns: what DAG-CBOR `IpnsEntry.data` may contain. The rule is "accept
//! what boxo accepts, and nothing it refuses" (boxo decodes with
//! go-ipld-prime ≥ 0.24 `dagcbor.Decode`, whose default since ipld/go-ipld-prime#630
//! is strict), so a record stored here is never refused by Kubo:
//!
//! - the top level is a map with text keys and no duplicate keys, at any depth;
//! - definite lengths only; every integer and length head is minimal;
//! - tags: only 42 (a CID link: a byte string `0x00 ‖ binary CID`);
//! - simple values: false, true, null, and undefined (go-ipld-prime reads it
//!   as null); floats of any width, but not NaN or ±Infinity;
//! - nothing after the top-level map;
//! - nesting at most [`MAX_DEPTH`] (go-ipld-prime's default).
//!
//! Two leniencies are boxo's and kept on purpose: map keys need not be in
//! DAG-CBOR order, and 16/32-bit floats are accepted. Signatures cover the
//! bytes as sent, so nothing is ever re-encoded here. One rule is stricter
//! than boxo: text must be UTF-8 (DAG-CBOR requires it; go does not check).
//!
//! Work is linear in the input (each item costs at least one byte, no
//! recursion: nested values are walked with an explicit stack), and the
//! input is already bounded by [`super::MAX_RECORD_BYTES`].
//!
//! Called by: [`super::record`] ([`decode_map`]) and [`super::testing`]
//! (the `write_*` helpers). Must never: allocate per byte of input beyond
//! the key lists used for the duplicate check, or panic on any input.

use std::fmt;

/// Deepest nesting of maps and lists below the top-level map, as
/// go-ipld-prime's `defaultMaxDepth` (1024, counting the top level as 0).
pub const MAX_DEPTH: usize = 1024;

/// CBOR tag for IPLD links (<https://github.com/ipld/cid-cbor/>).
const CID_TAG: u64 = 42;

/// CBOR major types (RFC 8949 §3.1).
const MAJOR_UINT: u8 = 0;
const MAJOR_NEGINT: u8 = 1;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;
const MAJOR_TAG: u8 = 6;
const MAJOR_SIMPLE: u8 = 7;

/// Additional-information values of major type 7 (RFC 8949 §3.3).
const SIMPLE_FALSE: u8 = 20;
const SIMPLE_UNDEFINED: u8 = 23;
const FLOAT16: u8 = 25;
const FLOAT32: u8 = 26;
const FLOAT64: u8 = 27;
/// Additional information 31: indefinite length / "break".
const INDEFINITE: u8 = 31;

/// Why the DAG-CBOR could not be read: the byte offset in `data` and what
/// was found there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CborError {
    pub offset: usize,
    pub reason: String,
}

impl fmt::Display for CborError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte {}: {}", self.offset, self.reason)
    }
}

/// A top-level map value, as far as the IPNS fields need to see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// A byte string: its contents and their offset in the input.
    Bytes { bytes: &'a [u8], offset: usize },
    /// A non-negative integer.
    Uint(u64),
    /// A negative integer `-1 - n`, holding `n`.
    NegInt(u64),
    /// Anything else (validated, not kept); the kind, for error messages.
    Other(&'static str),
}

impl Value<'_> {
    /// The CBOR kind, for error messages ("a text string", "an unsigned integer"…).
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Bytes { .. } => "a byte string",
            Value::Uint(_) => "an unsigned integer",
            Value::NegInt(_) => "a negative integer",
            Value::Other(kind) => kind,
        }
    }
}

/// Reads `buf` as one DAG-CBOR map and returns its entries in wire order.
/// Values that are not byte strings or integers are checked (fully, to any
/// depth) and reported as [`Value::Other`].
pub fn decode_map(buf: &[u8]) -> Result<Vec<(&str, Value<'_>)>, CborError> {
    let mut d = Decoder { buf, pos: 0 };
    let (major, info, len) = d.head()?;
    if major != MAJOR_MAP {
        return Err(d.err_at(
            0,
            format!("top level is {}, not a map", kind_of(major, info)),
        ));
    }
    let mut entries = Vec::new();
    for _ in 0..len {
        let key_at = d.pos;
        let key = d.key()?;
        let value_at = d.pos;
        let (major, info, arg) = d.head()?;
        let value = match major {
            MAJOR_UINT => Value::Uint(arg),
            MAJOR_NEGINT => Value::NegInt(arg),
            MAJOR_BYTES => {
                let offset = d.pos;
                Value::Bytes {
                    bytes: d.take(arg)?,
                    offset,
                }
            }
            _ => {
                d.pos = value_at;
                d.skip_value(1)?;
                Value::Other(kind_of(major, info))
            }
        };
        entries.push((key_at, key, value));
    }
    if d.pos != buf.len() {
        return Err(d.err_at(d.pos, "bytes after the end of the map".into()));
    }
    check_duplicates(entries.iter().map(|(at, k, _)| (*at, *k)))?;
    Ok(entries.into_iter().map(|(_, k, v)| (k, v)).collect())
}

/// A map or list being walked by [`Decoder::skip_value`].
struct Frame<'a> {
    /// Items (for a map: keys and values) still to read.
    remaining: u64,
    /// For a map: its keys so far, with their offsets; `None` for a list.
    keys: Option<Vec<(usize, &'a str)>>,
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn err_at(&self, offset: usize, reason: String) -> CborError {
        CborError { offset, reason }
    }

    fn byte(&mut self) -> Result<u8, CborError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.err_at(self.pos, "data ends in the middle of an item".into()))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], CborError> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                self.err_at(
                    self.pos,
                    format!("a {n}-byte item runs past the end of the data"),
                )
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn uint_be(&mut self, n: u64) -> Result<u64, CborError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |a, &b| a << 8 | u64::from(b)))
    }

    /// Reads an item head: (major type, additional info, argument). Refuses
    /// indefinite lengths, reserved values and non-minimal arguments (floats,
    /// whose "argument" is the value, are not held to minimality).
    fn head(&mut self) -> Result<(u8, u8, u64), CborError> {
        let at = self.pos;
        let b = self.byte()?;
        let (major, info) = (b >> 5, b & 0x1f);
        let arg = match info {
            0..=23 => u64::from(info),
            24 => self.uint_be(1)?,
            25 => self.uint_be(2)?,
            26 => self.uint_be(4)?,
            27 => self.uint_be(8)?,
            INDEFINITE if major == MAJOR_SIMPLE => {
                return Err(self.err_at(
                    at,
                    "unexpected 'break' (indefinite lengths are not DAG-CBOR)".into(),
                ));
            }
            INDEFINITE => {
                return Err(self.err_at(
                    at,
                    format!("indefinite-length {} (not DAG-CBOR)", kind_of(major, info)),
                ));
            }
            _ => return Err(self.err_at(at, format!("reserved additional information {info}"))),
        };
        if major != MAJOR_SIMPLE {
            let minimal = match info {
                24 => arg >= 24,
                25 => arg > 0xff,
                26 => arg > 0xffff,
                27 => arg > 0xffff_ffff,
                _ => true,
            };
            if !minimal {
                return Err(
                    self.err_at(at, format!("{arg} is not minimally encoded (not DAG-CBOR)"))
                );
            }
        }
        Ok((major, info, arg))
    }

    /// Reads a map key: a UTF-8 text string.
    fn key(&mut self) -> Result<&'a str, CborError> {
        let at = self.pos;
        let (major, info, len) = self.head()?;
        if major != MAJOR_TEXT {
            return Err(self.err_at(
                at,
                format!("map key is {}, not a text string", kind_of(major, info)),
            ));
        }
        self.text(at, len)
    }

    fn text(&mut self, at: usize, len: u64) -> Result<&'a str, CborError> {
        std::str::from_utf8(self.take(len)?)
            .map_err(|_| self.err_at(at, "text string is not UTF-8".into()))
    }

    /// Checks one complete value (of any depth) and steps over it. `depth`
    /// is the nesting level the value sits at (top-level map values: 1).
    fn skip_value(&mut self, depth: usize) -> Result<(), CborError> {
        let mut stack: Vec<Frame<'a>> = Vec::new();
        loop {
            let expecting_key = stack
                .last()
                .is_some_and(|f| f.keys.is_some() && f.remaining % 2 == 0);
            if expecting_key {
                let at = self.pos;
                let key = self.key()?;
                if let Some(Frame {
                    remaining,
                    keys: Some(keys),
                }) = stack.last_mut()
                {
                    keys.push((at, key));
                    *remaining -= 1;
                }
                continue;
            }

            let at = self.pos;
            let (major, info, arg) = self.head()?;
            match major {
                MAJOR_UINT | MAJOR_NEGINT => {}
                MAJOR_BYTES => {
                    self.take(arg)?;
                }
                MAJOR_TEXT => {
                    self.text(at, arg)?;
                }
                MAJOR_ARRAY | MAJOR_MAP => {
                    if depth + stack.len() >= MAX_DEPTH {
                        return Err(
                            self.err_at(at, format!("nested deeper than {MAX_DEPTH} levels"))
                        );
                    }
                    let is_map = major == MAJOR_MAP;
                    let remaining = if is_map {
                        arg.checked_mul(2)
                    } else {
                        Some(arg)
                    };
                    let remaining = remaining
                        .filter(|&n| n <= (self.buf.len() - self.pos) as u64)
                        .ok_or_else(|| {
                            self.err_at(
                                at,
                                format!(
                                    "{} of {arg} entries runs past the end of the data",
                                    kind_of(major, info)
                                ),
                            )
                        })?;
                    if remaining > 0 {
                        stack.push(Frame {
                            remaining,
                            keys: is_map.then(Vec::new),
                        });
                        continue;
                    }
                }
                MAJOR_TAG => self.link(at, arg)?,
                _ => self.simple(at, info, arg)?,
            }

            // One value is complete: count it, and close finished containers.
            loop {
                let Some(top) = stack.last_mut() else {
                    return Ok(());
                };
                top.remaining -= 1;
                if top.remaining > 0 {
                    break;
                }
                if let Some(Frame {
                    keys: Some(keys), ..
                }) = stack.pop()
                {
                    check_duplicates(keys.into_iter())?;
                }
            }
        }
    }

    /// A tag: only 42 over `0x00 ‖ binary CID` is DAG-CBOR.
    fn link(&mut self, at: usize, tag: u64) -> Result<(), CborError> {
        if tag != CID_TAG {
            return Err(self.err_at(
                at,
                format!("tag {tag} (DAG-CBOR allows only tag 42, links)"),
            ));
        }
        let inner_at = self.pos;
        let (major, info, len) = self.head()?;
        if major != MAJOR_BYTES {
            return Err(self.err_at(
                inner_at,
                format!("tag 42 wraps {}, not a byte string", kind_of(major, info)),
            ));
        }
        let bytes = self.take(len)?;
        let Some((&0, mut cid)) = bytes.split_first() else {
            return Err(self.err_at(
                inner_at,
                "link does not start with the 0x00 multibase prefix".into(),
            ));
        };
        match cid::Cid::read_bytes(&mut cid) {
            Ok(_) if cid.is_empty() => Ok(()),
            Ok(_) => Err(self.err_at(inner_at, "bytes after the CID in a link".into())),
            Err(e) => Err(self.err_at(inner_at, format!("link is not a CID: {e}"))),
        }
    }

    /// Major type 7: false, true, null, undefined, finite floats.
    fn simple(&mut self, at: usize, info: u8, bits: u64) -> Result<(), CborError> {
        let finite = match info {
            SIMPLE_FALSE..=SIMPLE_UNDEFINED => return Ok(()),
            FLOAT16 => bits & 0x7c00 != 0x7c00,
            FLOAT32 => bits & 0x7f80_0000 != 0x7f80_0000,
            FLOAT64 => bits & 0x7ff0_0000_0000_0000 != 0x7ff0_0000_0000_0000,
            _ => return Err(self.err_at(at, format!("simple value {bits} (not DAG-CBOR)"))),
        };
        if finite {
            Ok(())
        } else {
            Err(self.err_at(at, "NaN or Infinity (not DAG-CBOR)".into()))
        }
    }
}

/// Refuses a map with a repeated key (go-ipld-prime's strict default).
fn check_duplicates<'a>(keys: impl Iterator<Item = (usize, &'a str)>) -> Result<(), CborError> {
    let mut keys: Vec<(usize, &str)> = keys.collect();
    keys.sort_unstable_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(&b.0)));
    match keys.windows(2).find(|w| w[0].1 == w[1].1) {
        Some(w) => Err(CborError {
            offset: w[1].0,
            reason: format!("duplicate map key {:?}", w[1].1),
        }),
        None => Ok(()),
    }
}

fn kind_of(major: u8, info: u8) -> &'static str {
    match (major, info) {
        (MAJOR_UINT, _) => "an unsigned integer",
        (MAJOR_NEGINT, _) => "a negative integer",
        (MAJOR_BYTES, _) => "a byte string",
        (MAJOR_TEXT, _) => "a text string",
        (MAJOR_ARRAY, _) => "a list",
        (MAJOR_MAP, _) => "a map",
        (MAJOR_TAG, _) => "a tagged value",
        (_, SIMPLE_FALSE | 21) => "a boolean",
        (_, 22 | SIMPLE_UNDEFINED) => "null",
        (_, FLOAT16..=FLOAT64) => "a float",
        _ => "a simple value",
    }
}

/// Appends a minimal CBOR head (DAG-CBOR canonical form).
pub fn write_head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    match arg {
        0..=23 => out.push(m | arg as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, arg as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(arg as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(arg as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&arg.to_be_bytes());
        }
    }
}

/// Appends a byte string.
pub fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_head(out, MAJOR_BYTES, b.len() as u64);
    out.extend_from_slice(b);
}

/// Appends a text string.
pub fn write_text(out: &mut Vec<u8>, s: &str) {
    write_head(out, MAJOR_TEXT, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Appends an unsigned integer.
pub fn write_uint(out: &mut Vec<u8>, n: u64) {
    write_head(out, MAJOR_UINT, n);
}

/// Appends a map of already-encoded values, keys sorted in DAG-CBOR order
/// (shorter first, then bytewise).
pub fn write_map(out: &mut Vec<u8>, entries: &mut [(String, Vec<u8>)]) {
    entries.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(&b.0)));
    write_head(out, MAJOR_MAP, entries.len() as u64);
    for (k, v) in entries.iter() {
        write_text(out, k);
        out.extend_from_slice(v);
    }
}

#[cfg(test)]
#[path = "cbor_tests.rs"]
mod tests;
