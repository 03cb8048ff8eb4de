//! CAR headers: the CARv1 varint-prefixed DAG-CBOR header, the 11-byte CARv2
//! pragma and the 40-byte CARv2 fixed header. Called by `section.rs` when a
//! reader opens a file. Never trusts a length or offset from the file before
//! checking it against the file size and the bounds in `car/mod.rs`.

use cid::Cid;

use super::varint::{self, MAX_VARINT_LEN, VarintError};
use super::{CarError, MAX_HEADER_LEN, ReadAt, cbor, read_exact_at};

/// The CARv2 pragma: a CARv1-style header `{"version": 2}` (varint 10, then
/// 10 bytes of CBOR), from the CARv2 spec.
pub const CARV2_PRAGMA: [u8; 11] = [
    0x0a, 0xa1, 0x67, 0x76, 0x65, 0x72, 0x73, 0x69, 0x6f, 0x6e, 0x02,
];

/// Length of the CARv2 fixed header that follows the pragma: characteristics
/// (16 bytes), data offset, data size and index offset (u64 LE each).
pub const CARV2_HEADER_LEN: u64 = 40;

/// Smallest legal CARv2 data offset: the pragma plus the fixed header.
const MIN_V2_DATA_OFFSET: u64 = CARV2_PRAGMA.len() as u64 + CARV2_HEADER_LEN;

/// The CARv2 fixed header, as written in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarV2Header {
    /// The 128-bit characteristics field; bit 0 of byte 0 (the leftmost bit)
    /// is "fully indexed".
    pub characteristics: [u8; 16],
    /// Absolute offset of the inner CARv1 payload.
    pub data_offset: u64,
    /// Length of the inner CARv1 payload.
    pub data_size: u64,
    /// Absolute offset of the index, 0 when there is none.
    pub index_offset: u64,
}

/// What [`super::CarReader::open`] learned from the headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarHeader {
    /// 1 or 2.
    pub version: u8,
    /// The roots of the (inner) CARv1 header.
    pub roots: Vec<Cid>,
    /// The CARv2 fixed header, for version 2.
    pub v2: Option<CarV2Header>,
    /// Absolute offset of the CARv1 payload (0 for CARv1, the data offset for
    /// CARv2). CARv2 index offsets are relative to this.
    pub payload_offset: u64,
    /// Absolute offset of the first section.
    pub sections_start: u64,
    /// Absolute offset where sections end (file size for CARv1, data offset +
    /// data size for CARv2).
    pub sections_end: u64,
}

/// Reads a varint at `offset`, not reading past `end`.
pub(crate) fn read_varint_at<R: ReadAt + ?Sized>(
    src: &R,
    offset: u64,
    end: u64,
    what: &'static str,
) -> Result<(u64, usize), CarError> {
    let avail = end.saturating_sub(offset).min(MAX_VARINT_LEN as u64) as usize;
    let mut buf = [0u8; MAX_VARINT_LEN];
    if avail == 0 {
        return Err(CarError::Truncated { offset, what });
    }
    read_exact_at(src, &mut buf[..avail], offset, what)?;
    match varint::decode(&buf[..avail]) {
        Ok(v) => Ok(v),
        Err(VarintError::Truncated) => Err(CarError::Truncated {
            offset: offset + avail as u64,
            what,
        }),
        Err(e) => Err(CarError::bad_section(offset, format!("{what}: {e}"))),
    }
}

/// Reads the varint-prefixed CBOR header at `offset`; returns it and the
/// offset just past it.
fn read_v1_header<R: ReadAt + ?Sized>(
    src: &R,
    offset: u64,
    end: u64,
) -> Result<(cbor::RawHeader, u64), CarError> {
    let (len, n) = read_varint_at(src, offset, end, "header length").map_err(|e| match e {
        CarError::BadSection { offset, reason } => CarError::BadHeader { offset, reason },
        e => e,
    })?;
    if len == 0 {
        return Err(CarError::bad_header(offset, "header length is 0"));
    }
    if len > MAX_HEADER_LEN {
        return Err(CarError::bad_header(
            offset,
            format!("header length {len} exceeds the {MAX_HEADER_LEN}-byte limit"),
        ));
    }
    let body = offset + n as u64;
    let body_end = body + len;
    if body_end > end {
        return Err(CarError::Truncated {
            offset: end,
            what: "header",
        });
    }
    let mut buf = vec![0u8; len as usize];
    read_exact_at(src, &mut buf, body, "header")?;
    let raw = cbor::decode_header(&buf).map_err(|r| CarError::bad_header(offset, r))?;
    Ok((raw, body_end))
}

fn u64_le(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Parses the headers of a CAR of `size` bytes.
pub(crate) fn parse<R: ReadAt + ?Sized>(src: &R, size: u64) -> Result<CarHeader, CarError> {
    let (first, after) = read_v1_header(src, 0, size)?;
    match first.version {
        1 => {
            let roots = first
                .roots
                .ok_or_else(|| CarError::bad_header(0, "CARv1 header has no roots"))?;
            Ok(CarHeader {
                version: 1,
                roots,
                v2: None,
                payload_offset: 0,
                sections_start: after,
                sections_end: size,
            })
        }
        2 => {
            let mut pragma = [0u8; CARV2_PRAGMA.len()];
            read_exact_at(src, &mut pragma, 0, "CARv2 pragma")?;
            if pragma != CARV2_PRAGMA || after != CARV2_PRAGMA.len() as u64 {
                return Err(CarError::BadPragma(
                    "version 2 header is not the exact CARv2 pragma".into(),
                ));
            }
            let v2 = parse_v2_header(src, size)?;
            let data_end = v2.data_offset + v2.data_size;
            let (inner, inner_after) = read_v1_header(src, v2.data_offset, data_end)?;
            if inner.version != 1 {
                return Err(CarError::bad_header(
                    v2.data_offset,
                    format!("inner CARv1 header has version {}", inner.version),
                ));
            }
            let roots = inner.roots.ok_or_else(|| {
                CarError::bad_header(v2.data_offset, "inner CARv1 header has no roots")
            })?;
            Ok(CarHeader {
                version: 2,
                roots,
                payload_offset: v2.data_offset,
                sections_start: inner_after,
                sections_end: data_end,
                v2: Some(v2),
            })
        }
        v => Err(CarError::BadPragma(format!("unsupported CAR version {v}"))),
    }
}

fn parse_v2_header<R: ReadAt + ?Sized>(src: &R, size: u64) -> Result<CarV2Header, CarError> {
    let mut buf = [0u8; CARV2_HEADER_LEN as usize];
    read_exact_at(src, &mut buf, CARV2_PRAGMA.len() as u64, "CARv2 header")?;
    let mut characteristics = [0u8; 16];
    characteristics.copy_from_slice(&buf[..16]);
    let h = CarV2Header {
        characteristics,
        data_offset: u64_le(&buf[16..24]),
        data_size: u64_le(&buf[24..32]),
        index_offset: u64_le(&buf[32..40]),
    };
    if h.data_offset < MIN_V2_DATA_OFFSET {
        return Err(CarError::BadV2Header(format!(
            "data offset {} is inside the header (minimum {MIN_V2_DATA_OFFSET})",
            h.data_offset
        )));
    }
    if h.data_size == 0 {
        return Err(CarError::BadV2Header("data size is 0".into()));
    }
    let data_end = h
        .data_offset
        .checked_add(h.data_size)
        .filter(|&e| e <= size);
    let Some(data_end) = data_end else {
        return Err(CarError::BadV2Header(format!(
            "data offset {} + data size {} runs past the end of the {size}-byte file",
            h.data_offset, h.data_size
        )));
    };
    if h.index_offset != 0 && (h.index_offset < data_end || h.index_offset >= size) {
        return Err(CarError::BadV2Header(format!(
            "index offset {} is not between the data end {data_end} and the file end {size}",
            h.index_offset
        )));
    }
    Ok(h)
}
