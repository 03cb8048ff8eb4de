//! [`BlockLocation`]: where a block's bytes are, packed into the fixed
//! 16-byte value of the `blocks_v1` table. Pure.

/// Bytes of a packed location: shard id u32, offset u64, length u32.
pub const LOCATION_LEN: usize = 16;

/// Where one block's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockLocation {
    /// Shard (CAR file) id in the registry.
    pub shard: u32,
    /// Absolute offset of the block bytes in the shard file.
    pub offset: u64,
    /// Length of the block bytes.
    pub len: u32,
}

impl BlockLocation {
    /// Packs as shard id u32 LE, offset u64 LE, len u32 LE.
    pub fn pack(&self) -> [u8; LOCATION_LEN] {
        let mut b = [0u8; LOCATION_LEN];
        b[..4].copy_from_slice(&self.shard.to_le_bytes());
        b[4..12].copy_from_slice(&self.offset.to_le_bytes());
        b[12..].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    /// The inverse of [`BlockLocation::pack`].
    pub fn unpack(b: &[u8; LOCATION_LEN]) -> Self {
        let (s, rest) = b.split_at(4);
        let (o, l) = rest.split_at(8);
        let mut s4 = [0u8; 4];
        let mut o8 = [0u8; 8];
        let mut l4 = [0u8; 4];
        s4.copy_from_slice(s);
        o8.copy_from_slice(o);
        l4.copy_from_slice(l);
        BlockLocation {
            shard: u32::from_le_bytes(s4),
            offset: u64::from_le_bytes(o8),
            len: u32::from_le_bytes(l4),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trips() {
        let l = BlockLocation {
            shard: 0xdead_beef,
            offset: 0x0102_0304_0506_0708,
            len: 2 * 1024 * 1024,
        };
        assert_eq!(BlockLocation::unpack(&l.pack()), l);
    }
}
