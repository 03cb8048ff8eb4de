//! Unsigned varints as multiformats define them
//! (<https://github.com/multiformats/unsigned-varint>): LEB128, at most 9
//! bytes (63 bits), minimally encoded. Pure: bytes in, values out.

/// Longest varint the multiformats spec allows (9 bytes = 63 bits).
pub const MAX_VARINT_LEN: usize = 9;

/// Why a varint could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum VarintError {
    /// The input ended before the last byte (high bit clear).
    Truncated,
    /// More than [`MAX_VARINT_LEN`] bytes.
    TooLong,
    /// A trailing zero byte (the spec requires the shortest encoding).
    NotMinimal,
}

impl std::fmt::Display for VarintError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VarintError::Truncated => "varint truncated",
            VarintError::TooLong => "varint longer than 9 bytes",
            VarintError::NotMinimal => "varint not minimally encoded",
        })
    }
}

/// Decodes a varint from the start of `buf`; returns the value and the
/// number of bytes it took.
pub fn decode(buf: &[u8]) -> Result<(u64, usize), VarintError> {
    let mut value: u64 = 0;
    for (i, &b) in buf.iter().enumerate() {
        if i >= MAX_VARINT_LEN {
            return Err(VarintError::TooLong);
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if b == 0 && i > 0 {
                return Err(VarintError::NotMinimal);
            }
            return Ok((value, i + 1));
        }
    }
    if buf.len() >= MAX_VARINT_LEN {
        Err(VarintError::TooLong)
    } else {
        Err(VarintError::Truncated)
    }
}

/// Appends the varint encoding of `value` to `out`.
pub fn encode(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let b = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_lengths() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            (1 << 63) - 1,
        ] {
            let mut out = Vec::new();
            encode(v, &mut out);
            assert_eq!(
                out.len(),
                (64 - v.max(1).leading_zeros() as usize).div_ceil(7)
            );
            assert_eq!(decode(&out), Ok((v, out.len())), "{v}");
        }
    }

    #[test]
    fn rejects_bad_encodings() {
        assert_eq!(decode(&[]), Err(VarintError::Truncated));
        assert_eq!(decode(&[0x80]), Err(VarintError::Truncated));
        assert_eq!(decode(&[0x81, 0x00]), Err(VarintError::NotMinimal));
        assert_eq!(decode(&[0xff; 10]), Err(VarintError::TooLong));
        assert_eq!(decode(&[0xff; 9]), Err(VarintError::TooLong));
    }
}
