//! CAR (Content Addressable aRchive) reading and writing: CARv1, CARv2 and the
//! CARv2 `IndexSorted` / `MultihashIndexSorted` indexes.
//!
//! # Brief overview
//!
//! - [`CarReader`] opens a CAR through any [`ReadAt`] source (a [`std::fs::File`]
//!   or bytes in memory), parses the header and hands out [`Sections`], an
//!   iterator of [`BlockEntry`] (CID, absolute offset and length of the block
//!   bytes), verifying each block's hash as it goes.
//! - [`scan`] is the one full pass the importer (and the fuzzer) runs: header,
//!   every section, every hash, and the CARv2 index cross-checked against the
//!   sections when one is present.
//! - [`CarWriter`] writes CARv1 and CARv2 (with a `MultihashIndexSorted` or
//!   `IndexSorted` index); tests, benches and fixture generation use it.
//!
//! Formats: <https://ipld.io/specs/transport/car/carv1/> and
//! <https://ipld.io/specs/transport/car/carv2/>.
//!
//! This module is pure reading and writing: it never touches the block index
//! (redb), never loads a whole file into memory (reads are positioned and
//! bounded by the constants below) and never panics on file contents: every
//! malformed input is a [`CarError`] naming the offset (and the CID when known).

mod cbor;
mod error;
mod header;
mod index;
mod scan;
mod section;
mod varint;
mod verify;
mod writer;

#[cfg(test)]
mod tests;

pub use error::CarError;
pub use header::{CARV2_HEADER_LEN, CARV2_PRAGMA, CarHeader, CarV2Header};
pub use index::{
    INDEX_SORTED_CODEC, IndexEntry, IndexKind, MULTIHASH_INDEX_SORTED_CODEC, read_index,
    read_index_codec, write_index,
};
pub use scan::{IndexCheck, ScanOptions, ScanSummary, scan};
pub use section::{BlockEntry, CarReader, ReadOptions, Sections};
pub use verify::{HashCheck, check_block, verify_block};
pub use writer::{CarWriter, cid_v0_sha256, cid_v1_sha256};

use std::io;

/// Largest block the reader accepts, in bytes. 2 MiB is the Bitswap block
/// limit Kubo enforces (`--chunker` maxima, `BlockSizeLimit`) and go-car's
/// default maximum section size; a larger block could never be served anyway.
pub const MAX_BLOCK_LEN: u32 = 2 * 1024 * 1024;

/// Largest encoded CID the reader accepts, in bytes. CIDs in practice are
/// 34–70 bytes; 256 leaves room for 64-byte digests and long codecs while
/// bounding the work per section.
pub const MAX_CID_LEN: usize = 256;

/// Largest CARv1 header (the DAG-CBOR `{version, roots}` map), in bytes. Real
/// headers are well under 1 KiB; 1 MiB fits ~25,000 CIDv1 roots. go-car allows
/// 32 MiB, which only matters for pathological files.
pub const MAX_HEADER_LEN: u64 = 1024 * 1024;

/// Largest number of roots accepted in a header (same reasoning as
/// [`MAX_HEADER_LEN`]).
pub const MAX_ROOTS: usize = 65_536;

/// Multicodec of DAG-PB, the codec every CIDv0 implies.
pub const DAG_PB: u64 = 0x70;
/// Multicodec of raw bytes.
pub const RAW: u64 = 0x55;
/// Multicodec of DAG-CBOR.
pub const DAG_CBOR: u64 = 0x71;

/// Multihash code of the identity "hash" (the digest is the data itself).
pub const IDENTITY: u64 = 0x00;
/// Multihash code of SHA2-256.
pub const SHA2_256: u64 = 0x12;
/// Multihash code of SHA2-512.
pub const SHA2_512: u64 = 0x13;

/// A source of bytes read at explicit offsets, so one open file can be read by
/// many readers without a shared cursor. Implemented for [`std::fs::File`]
/// (`pread`) and for byte slices (tests and the fuzzer).
pub trait ReadAt {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read
    /// (0 only at or past the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Total size in bytes.
    fn size(&self) -> io::Result<u64>;
}

impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        let Some(rest) = self.get(start..) else {
            return Ok(0);
        };
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

impl ReadAt for Vec<u8> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.as_slice().read_at(buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        (**self).read_at(buf, offset)
    }

    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }
}

/// Reads exactly `buf.len()` bytes at `offset` or fails with
/// [`CarError::Truncated`] naming the offset and what was being read.
pub(crate) fn read_exact_at<R: ReadAt + ?Sized>(
    src: &R,
    buf: &mut [u8],
    offset: u64,
    what: &'static str,
) -> Result<(), CarError> {
    let mut done = 0;
    while done < buf.len() {
        let at = offset + done as u64;
        match src.read_at(&mut buf[done..], at) {
            Ok(0) => {
                return Err(CarError::Truncated { offset: at, what });
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(CarError::Io {
                    offset: at,
                    source: e,
                });
            }
        }
    }
    Ok(())
}
