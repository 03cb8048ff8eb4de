//! [`CarWriter`]: writes CARv1, or CARv2 with an optional index. Used by
//! tests, benchmarks and fixture generation; the daemon itself never writes
//! CARs. Writes what it is given: it does not check that blocks match their
//! CIDs (tests rely on that to build corrupt files).

use std::io::{self, Seek, SeekFrom, Write};

use cid::Cid;
use cid::multihash::Multihash;
use sha2::{Digest, Sha256};

use super::header::{CARV2_HEADER_LEN, CARV2_PRAGMA};
use super::index::{IndexKind, write_index};
use super::{IDENTITY, SHA2_256, cbor, varint};

/// The CIDv1 of `data` under `codec`, hashed with sha2-256.
pub fn cid_v1_sha256(codec: u64, data: &[u8]) -> Cid {
    Cid::new_v1(codec, sha256_mh(data))
}

/// The CIDv0 (dag-pb, sha2-256) of `data`.
pub fn cid_v0_sha256(data: &[u8]) -> Cid {
    // A CIDv0 of a 32-byte sha2-256 multihash always exists.
    Cid::new_v0(sha256_mh(data)).unwrap_or_else(|_| Cid::new_v1(super::DAG_PB, sha256_mh(data)))
}

fn sha256_mh(data: &[u8]) -> Multihash<64> {
    let digest = Sha256::digest(data);
    // 32 bytes always fit a 64-byte multihash.
    Multihash::wrap(SHA2_256, &digest).unwrap_or_default()
}

/// Writes a CAR section by section.
pub struct CarWriter<W: Write + Seek> {
    out: W,
    /// `None` for CARv1; the index to append for CARv2.
    v2_index: Option<IndexKind>,
    /// Absolute offset of the CARv1 payload (0, or the CARv2 data offset).
    payload_start: u64,
    /// Absolute offset of the next byte to write.
    pos: u64,
    /// (multihash code, digest, section offset relative to the payload).
    records: Vec<(u64, Vec<u8>, u64)>,
    scratch: Vec<u8>,
}

impl<W: Write + Seek> CarWriter<W> {
    /// Starts a CARv1 with these roots.
    pub fn v1(out: W, roots: &[Cid]) -> io::Result<Self> {
        Self::start(out, roots, None)
    }

    /// Starts a CARv2 with these roots; `index` is appended by
    /// [`CarWriter::finish`].
    pub fn v2(out: W, roots: &[Cid], index: IndexKind) -> io::Result<Self> {
        Self::start(out, roots, Some(index))
    }

    fn start(mut out: W, roots: &[Cid], v2_index: Option<IndexKind>) -> io::Result<Self> {
        let mut payload_start = 0;
        if v2_index.is_some() {
            out.write_all(&CARV2_PRAGMA)?;
            out.write_all(&[0u8; CARV2_HEADER_LEN as usize])?;
            payload_start = CARV2_PRAGMA.len() as u64 + CARV2_HEADER_LEN;
        }
        let header = cbor::encode_header(1, Some(roots));
        let mut buf = Vec::new();
        varint::encode(header.len() as u64, &mut buf);
        buf.extend_from_slice(&header);
        out.write_all(&buf)?;
        Ok(CarWriter {
            out,
            v2_index,
            payload_start,
            pos: payload_start + buf.len() as u64,
            records: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// Appends one section; returns the absolute offset of the block bytes.
    pub fn write_block(&mut self, cid: &Cid, data: &[u8]) -> io::Result<u64> {
        let section_offset = self.pos;
        self.scratch.clear();
        let cid_bytes = cid.to_bytes();
        varint::encode((cid_bytes.len() + data.len()) as u64, &mut self.scratch);
        self.scratch.extend_from_slice(&cid_bytes);
        self.out.write_all(&self.scratch)?;
        self.out.write_all(data)?;
        let data_offset = section_offset + self.scratch.len() as u64;
        self.pos = data_offset + data.len() as u64;
        // Identity multihashes are not indexed (go-car leaves them out too).
        if self.v2_index.is_some() && cid.hash().code() != IDENTITY {
            let mh = cid.hash();
            self.records.push((
                mh.code(),
                mh.digest().to_vec(),
                section_offset - self.payload_start,
            ));
        }
        Ok(data_offset)
    }

    /// Appends raw bytes to the payload (tests use it for padding and junk).
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Finishes the file (CARv2: writes the index and the fixed header) and
    /// returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        if let Some(kind) = self.v2_index {
            let data_size = self.pos - self.payload_start;
            let index = write_index(kind, &self.records);
            let index_offset = if index.is_empty() { 0 } else { self.pos };
            self.out.write_all(&index)?;
            let mut h = [0u8; CARV2_HEADER_LEN as usize];
            h[16..24].copy_from_slice(&self.payload_start.to_le_bytes());
            h[24..32].copy_from_slice(&data_size.to_le_bytes());
            h[32..40].copy_from_slice(&index_offset.to_le_bytes());
            self.out.seek(SeekFrom::Start(CARV2_PRAGMA.len() as u64))?;
            self.out.write_all(&h)?;
            self.out.seek(SeekFrom::End(0))?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}
