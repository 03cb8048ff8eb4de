//! Deterministic pseudo-random numbers and CIDs nobody holds.
//!
//! xorshift64* (Vigna): fast, seedable and good enough to pick blocks and
//! fill test data; nothing here is for cryptography. Pure: no I/O, no clock.

use cid::{Cid, multihash::Multihash};
use sidecar::car::{RAW, SHA2_256};

/// xorshift64*.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`; every seed (0 included) gives a usable,
    /// distinct stream.
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so neighbouring seeds diverge at once and
        // the state is never 0 (xorshift's fixed point).
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Self((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0; the modulo bias is negligible for the
    /// list sizes used here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    /// A CIDv1 (raw, sha2-256) with a random digest: a block no server
    /// holds. Nothing is hashed, so an abusive peer can mint millions a
    /// second without this process setting the pace.
    pub fn absent_cid(&mut self) -> Cid {
        let mut digest = [0u8; 32];
        self.fill(&mut digest);
        // 32 bytes always fit a 64-byte multihash.
        let mh = Multihash::<64>::wrap(SHA2_256, &digest).unwrap_or_default();
        Cid::new_v1(RAW, mh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_give_distinct_repeatable_streams() {
        let a: Vec<u64> = (0..4).map(|_| Rng::new(1).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]), "same seed, same value");
        let mut x = Rng::new(0);
        let mut y = Rng::new(1);
        assert_ne!(x.next_u64(), y.next_u64());
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = Rng::new(7);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            seen[r.below(10)] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn absent_cids_differ_and_look_like_raw_sha256_cids() {
        let mut r = Rng::new(3);
        let (a, b) = (r.absent_cid(), r.absent_cid());
        assert_ne!(a, b);
        assert_eq!(
            (a.codec(), a.hash().code(), a.hash().size()),
            (RAW, SHA2_256, 32)
        );
    }
}
