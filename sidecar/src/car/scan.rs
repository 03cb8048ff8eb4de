//! [`scan`]: the one full pass over a CAR that the importer and the fuzzer
//! run. It reads the headers, walks and verifies every section, and, for a
//! CARv2 carrying an index, cross-checks that index against the sections it
//! found: every entry must point at a section start holding that multihash,
//! and every non-identity block must be indexed. A file whose index disagrees
//! with its data is corrupt or forged, and is refused.
//!
//! Never reads the file twice (the index check keeps a 16-byte fingerprint per
//! section in memory, only for CARv2 files that carry an index).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

use super::index::{self, INDEX_SORTED_CODEC, MULTIHASH_INDEX_SORTED_CODEC};
use super::section::{BlockEntry, CarReader, ReadOptions};
use super::{CarError, CarHeader, IDENTITY, ReadAt};

/// How to scan. `Default` is the strict choice.
#[derive(Debug, Clone, Copy)]
pub struct ScanOptions {
    /// How sections are read (hash verification, zero-length padding).
    pub read: ReadOptions,
    /// Cross-check a CARv2 index against the sections. Defaults to `true`.
    pub check_index: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            read: ReadOptions::default(),
            check_index: true,
        }
    }
}

/// What happened to the CARv2 index during a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexCheck {
    /// CARv1, or a CARv2 without an index.
    Absent,
    /// Present and consistent with every section.
    Verified { codec: u64, entries: u64 },
    /// Present in a codec this reader does not know; not checked (the blocks
    /// themselves are still all verified).
    UnsupportedCodec(u64),
    /// Present but not checked ([`ScanOptions::check_index`] was false).
    Skipped,
}

/// The result of a successful scan.
#[derive(Debug, Clone)]
pub struct ScanSummary {
    pub header: CarHeader,
    /// Number of sections (blocks), duplicates included.
    pub blocks: u64,
    /// Sum of block lengths.
    pub block_bytes: u64,
    /// Total file size.
    pub file_size: u64,
    pub index: IndexCheck,
}

/// Scans a whole CAR from `src`, calling `on_block` for each section in file
/// order. Stops at the first error (from the file or from `on_block`).
pub fn scan<R, E, F>(src: R, opts: &ScanOptions, mut on_block: F) -> Result<ScanSummary, E>
where
    R: ReadAt,
    E: From<CarError>,
    F: FnMut(&BlockEntry) -> Result<(), E>,
{
    let reader = CarReader::open_with(src, opts.read)?;
    let header = reader.header().clone();
    let size = reader.size();

    // Decide up front whether the index will be checked, and how keys compare.
    let mut index_check = IndexCheck::Absent;
    let mut checker = None;
    if let Some(v2) = header.v2.as_ref().filter(|v2| v2.index_offset != 0) {
        if !opts.check_index {
            index_check = IndexCheck::Skipped;
        } else {
            let (codec, _) = index::read_index_codec(reader.source(), v2.index_offset, size)?;
            match codec {
                INDEX_SORTED_CODEC | MULTIHASH_INDEX_SORTED_CODEC => {
                    checker = Some(IndexChecker::new(codec == MULTIHASH_INDEX_SORTED_CODEC));
                }
                other => index_check = IndexCheck::UnsupportedCodec(other),
            }
        }
    }

    let mut blocks = 0u64;
    let mut block_bytes = 0u64;
    for entry in reader.sections() {
        let entry = entry?;
        blocks += 1;
        block_bytes += u64::from(entry.len);
        if let Some(c) = checker.as_mut() {
            c.add_section(&entry, header.payload_offset);
        }
        on_block(&entry)?;
    }

    if let (Some(mut c), Some(v2)) = (checker, header.v2.as_ref()) {
        let mut entries = 0u64;
        let codec = index::read_index(reader.source(), v2.index_offset, size, |e| {
            entries += 1;
            c.check_entry(e.code, e.digest, e.offset)
        })?;
        c.check_coverage(header.payload_offset)?;
        index_check = IndexCheck::Verified { codec, entries };
    }

    Ok(ScanSummary {
        header,
        blocks,
        block_bytes,
        file_size: size,
        index: index_check,
    })
}

/// Remembers a keyed fingerprint of each section's multihash by section
/// offset (relative to the payload), then checks index entries against it.
/// Identity sections may be indexed (older go-car `IndexSorted` files do)
/// but need not be (go-car skips them by default).
struct IndexChecker {
    with_code: bool,
    keys: RandomState,
    /// Section offset → (fingerprint, must be indexed).
    sections: HashMap<u64, (u64, bool)>,
    covered: HashSet<u64>,
}

impl IndexChecker {
    fn new(with_code: bool) -> Self {
        IndexChecker {
            with_code,
            keys: RandomState::new(),
            sections: HashMap::new(),
            covered: HashSet::new(),
        }
    }

    fn fingerprint(&self, code: Option<u64>, digest: &[u8]) -> u64 {
        let mut h = self.keys.build_hasher();
        if self.with_code {
            code.hash(&mut h);
        }
        digest.hash(&mut h);
        h.finish()
    }

    fn add_section(&mut self, e: &BlockEntry, payload_offset: u64) {
        let mh = e.cid.hash();
        let fp = self.fingerprint(Some(mh.code()), mh.digest());
        let required = mh.code() != IDENTITY;
        self.sections
            .insert(e.section_offset - payload_offset, (fp, required));
    }

    fn check_entry(
        &mut self,
        code: Option<u64>,
        digest: &[u8],
        offset: u64,
    ) -> Result<(), CarError> {
        let fp = self.fingerprint(code, digest);
        match self.sections.get(&offset) {
            None => Err(CarError::BadIndex(format!(
                "entry for digest {} points at payload offset {offset}, where no section starts",
                hex(digest)
            ))),
            Some(&(s, _)) if s != fp => Err(CarError::BadIndex(format!(
                "entry for digest {} points at payload offset {offset}, whose section holds \
                 another block",
                hex(digest)
            ))),
            Some(_) => {
                self.covered.insert(fp);
                Ok(())
            }
        }
    }

    fn check_coverage(&self, payload_offset: u64) -> Result<(), CarError> {
        let missing = self
            .sections
            .iter()
            .filter(|(_, (fp, required))| *required && !self.covered.contains(fp))
            .map(|(off, _)| *off)
            .min();
        match missing {
            None => Ok(()),
            Some(off) => Err(CarError::BadIndex(format!(
                "block of the section at offset {} is missing from the index",
                off + payload_offset
            ))),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
