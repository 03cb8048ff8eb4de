//! Budget arithmetic: token buckets and rolling-day windows.
//!
//! Everything here is pure: time comes in as milliseconds since the Unix
//! epoch from a [`Clock`], so tests drive it with [`ManualClock`]. A clock
//! that goes backwards is treated as standing still.

/// Milliseconds in an hour, the resolution of the rolling day.
pub const HOUR_MS: u64 = 3_600_000;

/// Hours in the rolling day.
pub const DAY_SLOTS: usize = 24;

pub use crate::clock::{Clock, ManualClock, SystemClock};

/// A rate with a burst: `rate` units per second refill a bucket holding at
/// most `burst` units. A rate of 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rate {
    pub per_second: u64,
    pub burst: u64,
}

impl Rate {
    pub const UNLIMITED: Rate = Rate {
        per_second: 0,
        burst: 0,
    };

    pub fn is_unlimited(&self) -> bool {
        self.per_second == 0
    }
}

/// A token bucket. Tokens are kept in thousandths so that slow rates refill
/// smoothly at millisecond steps.
///
/// A request larger than the burst is admitted when the bucket is full and
/// leaves it in debt, so a 1 MiB block can be served under a 256 KiB burst
/// at the configured average rate rather than never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    /// Thousandths of a token; negative while in debt.
    milli: i64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket for `rate` at `now_ms`.
    pub fn full(rate: Rate, now_ms: u64) -> Self {
        Self {
            milli: (rate.burst as i64).saturating_mul(1000),
            last_ms: now_ms,
        }
    }

    fn refill(&mut self, rate: Rate, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        let cap = (rate.burst as i64).saturating_mul(1000);
        // elapsed ms × units/s = thousandths of a unit.
        let add = (elapsed as i128 * rate.per_second as i128).min(i64::MAX as i128) as i64;
        self.milli = self.milli.saturating_add(add).min(cap);
    }

    /// Whether `n` units are available now (refilling first).
    pub fn can_take(&mut self, rate: Rate, now_ms: u64, n: u64) -> bool {
        if rate.is_unlimited() {
            return true;
        }
        self.refill(rate, now_ms);
        let need = n.min(rate.burst) as i64 * 1000;
        need == 0 && self.milli >= 0 || need > 0 && self.milli >= need
    }

    /// Takes `n` units (call after [`TokenBucket::can_take`] said yes).
    pub fn take(&mut self, rate: Rate, n: u64) {
        if !rate.is_unlimited() {
            self.milli = self.milli.saturating_sub((n as i64).saturating_mul(1000));
        }
    }

    /// Whole units available now, 0 while in debt.
    pub fn available(&mut self, rate: Rate, now_ms: u64) -> u64 {
        if rate.is_unlimited() {
            return u64::MAX;
        }
        self.refill(rate, now_ms);
        (self.milli.max(0) / 1000) as u64
    }
}

/// Blocks and bytes over the last 24 hours, in hourly slots.
///
/// Size: 24 × (4 + 8) bytes of slots plus 24 bytes of bookkeeping = 312
/// bytes, the same in memory and in the store ([`DayWindow::to_bytes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayWindow {
    /// The hour (since the epoch) of the newest slot.
    hour: u64,
    blocks: [u32; DAY_SLOTS],
    bytes: [u64; DAY_SLOTS],
    total_blocks: u64,
    total_bytes: u64,
}

/// Bytes of [`DayWindow::to_bytes`].
pub const DAY_WINDOW_BYTES: usize = 8 + DAY_SLOTS * 4 + DAY_SLOTS * 8;

impl DayWindow {
    pub fn new(now_ms: u64) -> Self {
        Self {
            hour: now_ms / HOUR_MS,
            blocks: [0; DAY_SLOTS],
            bytes: [0; DAY_SLOTS],
            total_blocks: 0,
            total_bytes: 0,
        }
    }

    /// Drops the slots that fell out of the window.
    fn advance(&mut self, now_ms: u64) {
        let hour = now_ms / HOUR_MS;
        if hour <= self.hour {
            return;
        }
        if hour - self.hour >= DAY_SLOTS as u64 {
            *self = Self::new(now_ms);
            return;
        }
        for h in self.hour + 1..=hour {
            let i = (h % DAY_SLOTS as u64) as usize;
            self.total_blocks -= u64::from(self.blocks[i]);
            self.total_bytes -= self.bytes[i];
            self.blocks[i] = 0;
            self.bytes[i] = 0;
        }
        self.hour = hour;
    }

    /// Blocks and bytes counted in the 24 hours up to `now_ms`.
    pub fn totals(&mut self, now_ms: u64) -> (u64, u64) {
        self.advance(now_ms);
        (self.total_blocks, self.total_bytes)
    }

    pub fn add(&mut self, now_ms: u64, blocks: u64, bytes: u64) {
        self.advance(now_ms);
        let i = (self.hour % DAY_SLOTS as u64) as usize;
        let b = u64::from(self.blocks[i])
            .saturating_add(blocks)
            .min(u64::from(u32::MAX));
        self.total_blocks += b - u64::from(self.blocks[i]);
        self.blocks[i] = b as u32;
        self.bytes[i] = self.bytes[i].saturating_add(bytes);
        self.total_bytes = self.total_bytes.saturating_add(bytes);
    }

    /// True when nothing is counted (the window can be forgotten).
    pub fn is_empty(&mut self, now_ms: u64) -> bool {
        self.totals(now_ms) == (0, 0)
    }

    /// Fixed-size little-endian encoding for the store.
    pub fn to_bytes(&self) -> [u8; DAY_WINDOW_BYTES] {
        let mut out = [0u8; DAY_WINDOW_BYTES];
        out[..8].copy_from_slice(&self.hour.to_le_bytes());
        for i in 0..DAY_SLOTS {
            out[8 + i * 4..12 + i * 4].copy_from_slice(&self.blocks[i].to_le_bytes());
            let o = 8 + DAY_SLOTS * 4 + i * 8;
            out[o..o + 8].copy_from_slice(&self.bytes[i].to_le_bytes());
        }
        out
    }

    /// Decodes [`DayWindow::to_bytes`]; `None` for a value of the wrong size.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != DAY_WINDOW_BYTES {
            return None;
        }
        let mut w = Self {
            hour: u64::from_le_bytes(b[..8].try_into().ok()?),
            blocks: [0; DAY_SLOTS],
            bytes: [0; DAY_SLOTS],
            total_blocks: 0,
            total_bytes: 0,
        };
        for i in 0..DAY_SLOTS {
            w.blocks[i] = u32::from_le_bytes(b[8 + i * 4..12 + i * 4].try_into().ok()?);
            let o = 8 + DAY_SLOTS * 4 + i * 8;
            w.bytes[i] = u64::from_le_bytes(b[o..o + 8].try_into().ok()?);
            w.total_blocks += u64::from(w.blocks[i]);
            w.total_bytes = w.total_bytes.saturating_add(w.bytes[i]);
        }
        Some(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let rate = Rate {
            per_second: 10,
            burst: 20,
        };
        let mut b = TokenBucket::full(rate, T0);
        let mut served = 0;
        while b.can_take(rate, T0, 1) {
            b.take(rate, 1);
            served += 1;
        }
        assert_eq!(served, 20, "the burst");
        // 100 ms refill one token at 10/s.
        assert!(!b.can_take(rate, T0 + 99, 1));
        assert!(b.can_take(rate, T0 + 100, 1));
        b.take(rate, 1);
        // Over 10 s exactly 100 more, never more than the burst at once.
        let mut t = T0 + 100;
        let mut later = 0;
        while t < T0 + 10_100 {
            t += 1;
            while b.can_take(rate, t, 1) {
                b.take(rate, 1);
                later += 1;
            }
        }
        assert_eq!(later, 100);
        assert_eq!(
            b.available(rate, T0 + 1_000_000),
            20,
            "refill stops at the burst"
        );
    }

    #[test]
    fn a_request_above_the_burst_goes_into_debt() {
        let rate = Rate {
            per_second: 1000,
            burst: 100,
        };
        let mut b = TokenBucket::full(rate, T0);
        assert!(
            b.can_take(rate, T0, 1000),
            "full bucket admits one big request"
        );
        b.take(rate, 1000);
        assert_eq!(b.available(rate, T0), 0);
        // 900 units of debt take 0.9 s to repay, then 0.1 s more for 100.
        assert!(!b.can_take(rate, T0 + 950, 100));
        assert!(b.can_take(rate, T0 + 1000, 100));
    }

    #[test]
    fn unlimited_rate_always_admits() {
        let mut b = TokenBucket::full(Rate::UNLIMITED, T0);
        for _ in 0..1000 {
            assert!(b.can_take(Rate::UNLIMITED, T0, u64::MAX));
            b.take(Rate::UNLIMITED, u64::MAX);
        }
    }

    #[test]
    fn clock_going_backwards_refills_nothing() {
        let rate = Rate {
            per_second: 1,
            burst: 1,
        };
        let mut b = TokenBucket::full(rate, T0);
        b.take(rate, 1);
        assert!(!b.can_take(rate, T0 - 60_000, 1));
        assert!(!b.can_take(rate, T0 + 999, 1));
        assert!(b.can_take(rate, T0 + 1000, 1));
    }

    #[test]
    fn day_window_forgets_hour_by_hour() {
        let mut w = DayWindow::new(T0);
        w.add(T0, 1, 100);
        w.add(T0 + 5 * HOUR_MS, 2, 200);
        assert_eq!(w.totals(T0 + 5 * HOUR_MS), (3, 300));
        // 24 h after the first hour started, its slot is gone.
        let first_hour_start = T0 / HOUR_MS * HOUR_MS;
        assert_eq!(w.totals(first_hour_start + 24 * HOUR_MS - 1), (3, 300));
        assert_eq!(w.totals(first_hour_start + 24 * HOUR_MS), (2, 200));
        assert_eq!(w.totals(first_hour_start + 29 * HOUR_MS), (0, 0));
        assert!(w.is_empty(first_hour_start + 29 * HOUR_MS));
        // A long gap resets everything.
        w.add(T0 + 100 * HOUR_MS, 7, 7);
        assert_eq!(w.totals(T0 + 100 * HOUR_MS), (7, 7));
    }

    #[test]
    fn day_window_round_trips_through_bytes() {
        let mut w = DayWindow::new(T0);
        for h in 0..30 {
            w.add(T0 + h * HOUR_MS, h, h * 1000);
        }
        let bytes = w.to_bytes();
        let mut back = DayWindow::from_bytes(&bytes).unwrap();
        assert_eq!(back, w);
        let now = T0 + 29 * HOUR_MS;
        assert_eq!(back.totals(now), w.totals(now));
        assert!(DayWindow::from_bytes(&bytes[1..]).is_none());
    }
}
