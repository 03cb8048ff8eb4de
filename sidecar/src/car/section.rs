//! [`CarReader`] and its section iterator [`Sections`]: walks the sections of
//! a CAR (`varint length | CID | block bytes`) with positioned reads through a
//! bounded window buffer, yielding each block's CID, absolute offset and
//! length, and verifying block hashes (by default).
//!
//! Called by `scan.rs` (import, fuzzing) and by tests. Never reads past the
//! CARv2 data payload, never allocates per block and never keeps more than
//! [`WINDOW_LEN`] bytes of a file in memory.

use cid::Cid;
use cid::multihash::Multihash;

use super::header::{self, CarHeader};
use super::varint::{self, MAX_VARINT_LEN, VarintError};
use super::verify::verify_block;
use super::{CarError, MAX_BLOCK_LEN, MAX_CID_LEN, ReadAt, SHA2_256, read_exact_at};

/// Size of the read window: must hold the largest section (varint + CID +
/// [`MAX_BLOCK_LEN`]); 4 MiB also amortises `pread` calls over ~1000 small
/// blocks.
const WINDOW_LEN: usize = 4 * 1024 * 1024;
const _: () = assert!(WINDOW_LEN >= MAX_VARINT_LEN + MAX_CID_LEN + MAX_BLOCK_LEN as usize);

/// Largest multihash digest the index can hold (`Multihash<64>`).
const MAX_DIGEST_LEN: u64 = 64;

/// How to read. `Default` is the strict choice.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Verify every block against its CID's multihash. Defaults to `true`.
    pub verify_hashes: bool,
    /// Treat a zero-length section as the end of the data, as go-car's
    /// `ZeroLengthSectionAsEOF` option does (some writers pad CARv1 files with
    /// zeros). go-car rejects such padding by default and so does this reader.
    /// Defaults to `false`.
    pub zero_length_section_as_eof: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            verify_hashes: true,
            zero_length_section_as_eof: false,
        }
    }
}

/// One block of a CAR, located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockEntry {
    /// The block's CID as written in the section.
    pub cid: Cid,
    /// Absolute offset of the section (its length varint).
    pub section_offset: u64,
    /// Absolute offset of the block bytes.
    pub offset: u64,
    /// Length of the block bytes.
    pub len: u32,
}

/// An open CAR: its headers and the source to read sections from.
#[derive(Debug)]
pub struct CarReader<R> {
    src: R,
    size: u64,
    header: CarHeader,
    opts: ReadOptions,
}

impl<R: ReadAt> CarReader<R> {
    /// Opens a CAR with [`ReadOptions::default`].
    pub fn open(src: R) -> Result<Self, CarError> {
        Self::open_with(src, ReadOptions::default())
    }

    /// Parses the headers (CARv1, or CARv2 pragma + fixed header + inner CARv1
    /// header) and checks every offset against the file size.
    pub fn open_with(src: R, opts: ReadOptions) -> Result<Self, CarError> {
        let size = src.size().map_err(|e| CarError::Io {
            offset: 0,
            source: e,
        })?;
        let header = header::parse(&src, size)?;
        Ok(CarReader {
            src,
            size,
            header,
            opts,
        })
    }

    /// The parsed headers.
    pub fn header(&self) -> &CarHeader {
        &self.header
    }

    /// The file size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The underlying source.
    pub fn source(&self) -> &R {
        &self.src
    }

    /// An iterator over the sections, from the first.
    pub fn sections(&self) -> Sections<'_, R> {
        Sections {
            reader: self,
            pos: self.header.sections_start,
            window: Window::default(),
            done: false,
        }
    }

    /// Reads one block's bytes (for tests and tools; the server reads through
    /// the block index instead).
    pub fn read_block(&self, entry: &BlockEntry) -> Result<Vec<u8>, CarError> {
        let mut buf = vec![0u8; entry.len as usize];
        read_exact_at(&self.src, &mut buf, entry.offset, "block")?;
        Ok(buf)
    }
}

/// A buffer over `[start, start + data.len())` of the file.
#[derive(Default)]
struct Window {
    start: u64,
    data: Vec<u8>,
}

impl Window {
    /// Returns up to `want` bytes at `offset` (fewer only when `end` comes
    /// first), refilling from `src` when they are not buffered.
    fn get<R: ReadAt + ?Sized>(
        &mut self,
        src: &R,
        offset: u64,
        want: usize,
        end: u64,
        what: &'static str,
    ) -> Result<&[u8], CarError> {
        let want = (want as u64).min(end.saturating_sub(offset)) as usize;
        let have_from = offset.checked_sub(self.start).map(|d| d as usize);
        let buffered = match have_from {
            Some(from) if from <= self.data.len() => self.data.len() - from >= want,
            _ => false,
        };
        if !buffered {
            self.refill(src, offset, want, end, what)?;
        }
        let from = (offset - self.start) as usize;
        Ok(&self.data[from..from + want])
    }

    fn refill<R: ReadAt + ?Sized>(
        &mut self,
        src: &R,
        offset: u64,
        want: usize,
        end: u64,
        what: &'static str,
    ) -> Result<(), CarError> {
        let fill = end
            .saturating_sub(offset)
            .min(WINDOW_LEN as u64)
            .max(want as u64) as usize;
        // Keep what is already buffered past `offset` (sections are read in
        // order, so this is the common case) and read only the rest.
        let keep = match offset.checked_sub(self.start) {
            Some(from) if (from as usize) < self.data.len() => {
                let from = from as usize;
                self.data.copy_within(from.., 0);
                self.data.len() - from
            }
            _ => 0,
        }
        .min(fill);
        self.start = offset;
        self.data.resize(fill, 0);
        let r = read_exact_at(src, &mut self.data[keep..], offset + keep as u64, what);
        if r.is_err() {
            self.data.clear();
        }
        r
    }
}

/// The sections of a CAR, in file order. Yields `Err` once and then stops.
pub struct Sections<'a, R> {
    reader: &'a CarReader<R>,
    pos: u64,
    window: Window,
    done: bool,
}

impl<R: ReadAt> Sections<'_, R> {
    /// The next section and its block bytes (verified when the options say
    /// so). The bytes are only valid until the next call.
    pub fn next_with_data(&mut self) -> Option<Result<(BlockEntry, &[u8]), CarError>> {
        if self.done {
            return None;
        }
        match self.step() {
            Ok(Some((entry, range))) => {
                let data = &self.window.data[range];
                Some(Ok((entry, data)))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }

    /// Absolute offset of the next section to read (after the last one on
    /// success).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Parses the section at `self.pos`; returns the entry and where its
    /// bytes sit in the window.
    fn step(&mut self) -> Result<Option<(BlockEntry, std::ops::Range<usize>)>, CarError> {
        let r = self.reader;
        let end = r.header.sections_end;
        let pos = self.pos;
        if pos >= end {
            return Ok(None);
        }
        let head = self
            .window
            .get(&r.src, pos, MAX_VARINT_LEN, end, "section length")?;
        let (len, n) = match varint::decode(head) {
            Ok(v) => v,
            Err(VarintError::Truncated) => {
                return Err(CarError::Truncated {
                    offset: end,
                    what: "section length",
                });
            }
            Err(e) => return Err(CarError::bad_section(pos, e.to_string())),
        };
        if len == 0 {
            if r.opts.zero_length_section_as_eof {
                return Ok(None);
            }
            return Err(CarError::bad_section(
                pos,
                "zero-length section (null padding is refused, as go-car does by default)",
            ));
        }
        let cid_at = pos + n as u64;
        let cid_room = (len.min(MAX_CID_LEN as u64)) as usize;
        let cid_buf = self.window.get(&r.src, cid_at, cid_room, end, "CID")?;
        let (cid, cid_len) = match parse_cid(cid_buf) {
            Ok(v) => v,
            Err(CidError::Incomplete) if cid_buf.len() < cid_room => {
                return Err(CarError::Truncated {
                    offset: end,
                    what: "CID",
                });
            }
            Err(CidError::Incomplete) if cid_room < MAX_CID_LEN => {
                return Err(CarError::bad_cid(
                    cid_at,
                    format!("CID runs past the {len}-byte section"),
                ));
            }
            Err(CidError::Incomplete) => {
                return Err(CarError::bad_cid(
                    cid_at,
                    format!("CID longer than {MAX_CID_LEN} bytes"),
                ));
            }
            Err(CidError::Invalid(reason)) => return Err(CarError::bad_cid(cid_at, reason)),
        };
        let data_at = cid_at + cid_len as u64;
        let block_len = len - cid_len as u64;
        if block_len > u64::from(MAX_BLOCK_LEN) {
            return Err(CarError::BlockTooLarge {
                cid: Box::new(cid),
                offset: data_at,
                len: block_len,
                max: MAX_BLOCK_LEN,
            });
        }
        let section_end = data_at + block_len;
        if section_end > end {
            return Err(CarError::Truncated {
                offset: end,
                what: "block",
            });
        }
        let range = if r.opts.verify_hashes {
            let data = self
                .window
                .get(&r.src, data_at, block_len as usize, end, "block")?;
            verify_block(&cid, data, data_at)?;
            let from = (data_at - self.window.start) as usize;
            from..from + block_len as usize
        } else {
            0..0
        };
        self.pos = section_end;
        Ok(Some((
            BlockEntry {
                cid,
                section_offset: pos,
                offset: data_at,
                len: block_len as u32,
            },
            range,
        )))
    }
}

impl<R: ReadAt> Iterator for Sections<'_, R> {
    type Item = Result<BlockEntry, CarError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with_data().map(|r| r.map(|(e, _)| e))
    }
}

enum CidError {
    /// The buffer ended before the CID did.
    Incomplete,
    Invalid(String),
}

fn cid_varint(buf: &[u8], at: &mut usize, what: &str) -> Result<u64, CidError> {
    match varint::decode(buf.get(*at..).unwrap_or_default()) {
        Ok((v, n)) => {
            *at += n;
            Ok(v)
        }
        Err(VarintError::Truncated) => Err(CidError::Incomplete),
        Err(e) => Err(CidError::Invalid(format!("{what}: {e}"))),
    }
}

/// Parses a binary CID from the start of `buf`: CIDv0 (a bare 34-byte
/// sha2-256 multihash) or CIDv1 (`version | codec | multihash`).
fn parse_cid(buf: &[u8]) -> Result<(Cid, usize), CidError> {
    const V0_LEN: usize = 34;
    const V0_DIGEST_LEN: u8 = 32;
    if buf.first() == Some(&(SHA2_256 as u8)) {
        match buf.get(1) {
            None => return Err(CidError::Incomplete),
            Some(&V0_DIGEST_LEN) => {
                let digest = buf.get(2..V0_LEN).ok_or(CidError::Incomplete)?;
                let mh = Multihash::wrap(SHA2_256, digest)
                    .map_err(|e| CidError::Invalid(e.to_string()))?;
                let cid = Cid::new_v0(mh).map_err(|e| CidError::Invalid(e.to_string()))?;
                return Ok((cid, V0_LEN));
            }
            Some(_) => {} // falls through: version 18 is rejected below
        }
    }
    let mut at = 0;
    let version = cid_varint(buf, &mut at, "CID version")?;
    if version != 1 {
        return Err(CidError::Invalid(format!(
            "unsupported CID version {version}"
        )));
    }
    let codec = cid_varint(buf, &mut at, "CID codec")?;
    let code = cid_varint(buf, &mut at, "multihash code")?;
    let digest_len = cid_varint(buf, &mut at, "multihash length")?;
    if digest_len > MAX_DIGEST_LEN {
        return Err(CidError::Invalid(format!(
            "multihash digest of {digest_len} bytes (at most {MAX_DIGEST_LEN} supported)"
        )));
    }
    let digest = buf
        .get(at..at + digest_len as usize)
        .ok_or(CidError::Incomplete)?;
    let mh = Multihash::wrap(code, digest).map_err(|e| CidError::Invalid(e.to_string()))?;
    Ok((Cid::new_v1(codec, mh), at + digest_len as usize))
}
