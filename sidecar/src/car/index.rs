//! CARv2 indexes: `IndexSorted` (multicodec 0x0400) and
//! `MultihashIndexSorted` (0x0401), read in bounded chunks and written for
//! tests and fixtures.
//!
//! Layout (CARv2 spec, and go-car's `index` package, which defines the bytes
//! in practice), all integers little-endian:
//!
//! ```text
//! index            = varint(codec) body
//! IndexSorted      = i32 bucket_count, bucket*   (buckets ordered by width)
//! bucket           = u32 width, u64 byte_len, entry{byte_len / width}
//! entry            = digest[width - 8] u64 offset   (entries sorted by digest)
//! MultihashIndexSorted = i32 code_count, (u64 multihash_code IndexSorted)*
//! ```
//!
//! `byte_len` is the length in bytes of the bucket's entries, not a count.
//! `offset` is the offset of the section (its length varint) relative to the
//! start of the CARv1 data payload. Identity multihashes are not indexed.
//!
//! Called by `scan.rs` (cross-check on import) and `writer.rs`. Never trusts a
//! count or length before checking it against the bytes left in the file.

use super::header::read_varint_at;
use super::varint;
use super::{CarError, ReadAt, read_exact_at};

/// Multicodec of the `IndexSorted` CARv2 index (`car-index-sorted`).
pub const INDEX_SORTED_CODEC: u64 = 0x0400;
/// Multicodec of the `MultihashIndexSorted` CARv2 index
/// (`car-multihash-index-sorted`).
pub const MULTIHASH_INDEX_SORTED_CODEC: u64 = 0x0401;

/// Bytes of the offset at the end of each entry.
const OFFSET_LEN: u32 = 8;
/// Widest entry accepted: the largest digest a CID may carry here (64 bytes,
/// `Multihash<64>`) plus the offset.
const MAX_WIDTH: u32 = 64 + OFFSET_LEN;
/// Bytes of index read per `pread` when streaming entries.
const CHUNK_LEN: usize = 1024 * 1024;

/// One index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry<'a> {
    /// The multihash code, for `MultihashIndexSorted`; `None` for
    /// `IndexSorted` (which stores digests only).
    pub code: Option<u64>,
    /// The multihash digest.
    pub digest: &'a [u8],
    /// Offset of the section relative to the data payload start.
    pub offset: u64,
}

/// Reads the index codec at `index_offset` (absolute); returns the codec and
/// the offset of the body.
pub fn read_index_codec<R: ReadAt + ?Sized>(
    src: &R,
    index_offset: u64,
    end: u64,
) -> Result<(u64, u64), CarError> {
    let (codec, n) = read_varint_at(src, index_offset, end, "index codec")
        .map_err(|e| CarError::BadIndex(format!("index codec at offset {index_offset}: {e}")))?;
    Ok((codec, index_offset + n as u64))
}

/// Streams every entry of the index at absolute `index_offset` (the file
/// ends at `end`) to `on_entry`; returns the index codec. Unknown codecs are
/// a [`CarError::BadIndex`].
pub fn read_index<R, F>(
    src: &R,
    index_offset: u64,
    end: u64,
    mut on_entry: F,
) -> Result<u64, CarError>
where
    R: ReadAt + ?Sized,
    F: FnMut(IndexEntry<'_>) -> Result<(), CarError>,
{
    let (codec, mut pos) = read_index_codec(src, index_offset, end)?;
    let mut chunk = Vec::new();
    match codec {
        INDEX_SORTED_CODEC => {
            read_sorted(src, &mut pos, end, None, &mut chunk, &mut on_entry)?;
        }
        MULTIHASH_INDEX_SORTED_CODEC => {
            let count = read_count(src, &mut pos, end, 8 + 4, "multihash code count")?;
            let mut last_code = None;
            for _ in 0..count {
                let code = read_u64(src, &mut pos, end, "multihash code")?;
                if last_code.is_some_and(|c| c >= code) {
                    return Err(CarError::BadIndex(format!(
                        "multihash codes not in ascending order at offset {}",
                        pos - 8
                    )));
                }
                last_code = Some(code);
                read_sorted(src, &mut pos, end, Some(code), &mut chunk, &mut on_entry)?;
            }
        }
        other => {
            return Err(CarError::BadIndex(format!(
                "unsupported index codec {other:#x} at offset {index_offset}"
            )));
        }
    }
    Ok(codec)
}

fn read_fixed<const N: usize, R: ReadAt + ?Sized>(
    src: &R,
    pos: &mut u64,
    end: u64,
    what: &'static str,
) -> Result<[u8; N], CarError> {
    if end.saturating_sub(*pos) < N as u64 {
        return Err(CarError::BadIndex(format!(
            "{what} at offset {} runs past the end of the file",
            *pos
        )));
    }
    let mut b = [0u8; N];
    read_exact_at(src, &mut b, *pos, what)?;
    *pos += N as u64;
    Ok(b)
}

fn read_u64<R: ReadAt + ?Sized>(
    src: &R,
    pos: &mut u64,
    end: u64,
    what: &'static str,
) -> Result<u64, CarError> {
    Ok(u64::from_le_bytes(read_fixed::<8, _>(src, pos, end, what)?))
}

/// Reads an i32 count and checks it against the bytes left (each item takes
/// at least `min_item_len` bytes).
fn read_count<R: ReadAt + ?Sized>(
    src: &R,
    pos: &mut u64,
    end: u64,
    min_item_len: u64,
    what: &'static str,
) -> Result<u64, CarError> {
    let at = *pos;
    let count = i32::from_le_bytes(read_fixed::<4, _>(src, pos, end, what)?);
    let count = u64::try_from(count)
        .map_err(|_| CarError::BadIndex(format!("negative {what} {count} at offset {at}")))?;
    if count.saturating_mul(min_item_len) > end - *pos {
        return Err(CarError::BadIndex(format!(
            "{what} {count} at offset {at} does not fit in the rest of the file"
        )));
    }
    Ok(count)
}

/// Reads one `IndexSorted` body (buckets of fixed-width entries).
fn read_sorted<R, F>(
    src: &R,
    pos: &mut u64,
    end: u64,
    code: Option<u64>,
    chunk: &mut Vec<u8>,
    on_entry: &mut F,
) -> Result<(), CarError>
where
    R: ReadAt + ?Sized,
    F: FnMut(IndexEntry<'_>) -> Result<(), CarError>,
{
    let buckets = read_count(src, pos, end, 4 + 8, "bucket count")?;
    for _ in 0..buckets {
        let at = *pos;
        let width = u32::from_le_bytes(read_fixed::<4, _>(src, pos, end, "bucket width")?);
        let byte_len = read_u64(src, pos, end, "bucket length")?;
        if !(OFFSET_LEN + 1..=MAX_WIDTH).contains(&width) {
            return Err(CarError::BadIndex(format!(
                "bucket at offset {at}: entry width {width} outside {}..={MAX_WIDTH}",
                OFFSET_LEN + 1
            )));
        }
        if byte_len % u64::from(width) != 0 {
            return Err(CarError::BadIndex(format!(
                "bucket at offset {at}: length {byte_len} is not a multiple of width {width}"
            )));
        }
        if byte_len > end - *pos {
            return Err(CarError::BadIndex(format!(
                "bucket at offset {at}: {byte_len} bytes of entries run past the end of the file"
            )));
        }
        let width = width as usize;
        let digest_len = width - OFFSET_LEN as usize;
        let per_chunk = (CHUNK_LEN / width).max(1) * width;
        let mut left = byte_len;
        // The previous entry's digest, to check the sort order across chunks.
        let mut prev: Vec<u8> = Vec::with_capacity(digest_len);
        let mut first = true;
        while left > 0 {
            let n = (per_chunk as u64).min(left) as usize;
            chunk.resize(n, 0);
            read_exact_at(src, chunk, *pos, "index entries")?;
            for (i, e) in chunk.chunks_exact(width).enumerate() {
                let (digest, off) = e.split_at(digest_len);
                let mut o = [0u8; 8];
                o.copy_from_slice(off);
                if !first && prev.as_slice() > digest {
                    return Err(CarError::BadIndex(format!(
                        "entries not sorted by digest at offset {}",
                        *pos + (i * width) as u64
                    )));
                }
                first = false;
                on_entry(IndexEntry {
                    code,
                    digest,
                    offset: u64::from_le_bytes(o),
                })?;
                prev.clear();
                prev.extend_from_slice(digest);
            }
            *pos += n as u64;
            left -= n as u64;
        }
    }
    Ok(())
}

/// Which index [`write_index`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    /// No index (a CARv2 with index offset 0).
    None,
    /// `IndexSorted` (0x0400): digests only.
    Sorted,
    /// `MultihashIndexSorted` (0x0401): digests grouped by multihash code.
    MultihashSorted,
}

/// Serialises an index (codec varint + body) over `records` of
/// `(multihash code, digest, section offset relative to the payload)`.
/// All records are written (the CAR writer leaves identity multihashes out,
/// as go-car does).
pub fn write_index(kind: IndexKind, records: &[(u64, Vec<u8>, u64)]) -> Vec<u8> {
    let mut recs: Vec<&(u64, Vec<u8>, u64)> = records.iter().collect();
    let mut out = Vec::new();
    match kind {
        IndexKind::None => {}
        IndexKind::Sorted => {
            varint::encode(INDEX_SORTED_CODEC, &mut out);
            recs.sort_by(|a, b| (a.1.len(), &a.1).cmp(&(b.1.len(), &b.1)));
            write_sorted(&recs, &mut out);
        }
        IndexKind::MultihashSorted => {
            varint::encode(MULTIHASH_INDEX_SORTED_CODEC, &mut out);
            recs.sort_by(|a, b| (a.0, a.1.len(), &a.1).cmp(&(b.0, b.1.len(), &b.1)));
            let groups: Vec<&[&(u64, Vec<u8>, u64)]> = recs.chunk_by(|a, b| a.0 == b.0).collect();
            out.extend_from_slice(&(groups.len() as i32).to_le_bytes());
            for g in groups {
                out.extend_from_slice(&g[0].0.to_le_bytes());
                write_sorted(g, &mut out);
            }
        }
    }
    out
}

/// Writes buckets for records already sorted by (digest length, digest).
fn write_sorted(recs: &[&(u64, Vec<u8>, u64)], out: &mut Vec<u8>) {
    let buckets: Vec<_> = recs.chunk_by(|a, b| a.1.len() == b.1.len()).collect();
    out.extend_from_slice(&(buckets.len() as i32).to_le_bytes());
    for b in buckets {
        let width = b[0].1.len() as u32 + OFFSET_LEN;
        out.extend_from_slice(&width.to_le_bytes());
        out.extend_from_slice(&(u64::from(width) * b.len() as u64).to_le_bytes());
        for r in b {
            out.extend_from_slice(&r.1);
            out.extend_from_slice(&r.2.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Entries = Vec<(Option<u64>, Vec<u8>, u64)>;

    fn collect(bytes: &[u8]) -> Result<(u64, Entries), CarError> {
        let mut v = Vec::new();
        let codec = read_index(bytes, 0, bytes.len() as u64, |e| {
            v.push((e.code, e.digest.to_vec(), e.offset));
            Ok(())
        })?;
        Ok((codec, v))
    }

    fn records() -> Vec<(u64, Vec<u8>, u64)> {
        vec![
            (0x12, vec![3; 32], 100),
            (0x12, vec![1; 32], 59),
            (0x13, vec![2; 64], 200),
            (crate::car::IDENTITY, vec![9; 5], 300),
        ]
    }

    #[test]
    fn multihash_sorted_round_trip() {
        let bytes = write_index(IndexKind::MultihashSorted, &records()[..3]);
        let (codec, got) = collect(&bytes).unwrap();
        assert_eq!(codec, MULTIHASH_INDEX_SORTED_CODEC);
        assert_eq!(
            got,
            vec![
                (Some(0x12), vec![1; 32], 59),
                (Some(0x12), vec![3; 32], 100),
                (Some(0x13), vec![2; 64], 200),
            ]
        );
    }

    #[test]
    fn index_sorted_layout_uses_byte_lengths() {
        let bytes = write_index(IndexKind::Sorted, &records()[..2]);
        // codec 0x0400 = varint [0x80, 0x08]; 1 bucket; width 40; 80 bytes.
        assert_eq!(&bytes[..2], &[0x80, 0x08]);
        assert_eq!(&bytes[2..6], &1i32.to_le_bytes());
        assert_eq!(&bytes[6..10], &40u32.to_le_bytes());
        assert_eq!(&bytes[10..18], &80u64.to_le_bytes());
        let (_, got) = collect(&bytes).unwrap();
        assert_eq!(got, vec![(None, vec![1; 32], 59), (None, vec![3; 32], 100)]);
    }

    #[test]
    fn malformed_indexes_are_bad_index_errors() {
        let good = write_index(IndexKind::MultihashSorted, &records());
        for len in 0..good.len() {
            assert!(collect(&good[..len]).is_err(), "prefix {len}");
        }
        let mut unsorted = write_index(IndexKind::Sorted, &records()[..2]);
        unsorted.swap(18, 18 + 40); // first digest byte of the two entries
        assert!(matches!(collect(&unsorted), Err(CarError::BadIndex(m)) if m.contains("sorted")));
        let mut bad_width = write_index(IndexKind::Sorted, &records()[..2]);
        bad_width[6..10].copy_from_slice(&3u32.to_le_bytes());
        assert!(matches!(collect(&bad_width), Err(CarError::BadIndex(m)) if m.contains("width")));
        let mut huge = write_index(IndexKind::Sorted, &records()[..2]);
        huge[2..6].copy_from_slice(&i32::MAX.to_le_bytes());
        assert!(matches!(collect(&huge), Err(CarError::BadIndex(_))));
        let mut unknown = Vec::new();
        varint::encode(0x0402, &mut unknown);
        assert!(matches!(collect(&unknown), Err(CarError::BadIndex(m)) if m.contains("0x402")));
    }
}
