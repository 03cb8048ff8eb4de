//! Per-client-IP rate limit for the write endpoints (IPNS PUT, w3name POST).
//!
//! One token bucket per client address (IPv6 clients by /64: one host owns
//! a whole /64), refilled at `[http] write_rate_per_ip` records per second up
//! to `write_burst_per_ip`. Addresses in `write_rate_exempt` (by default
//! loopback, where Kubo and local tools sit) are never limited. Past the
//! budget a write gets 429 with `Retry-After`.
//!
//! Bounds: at most [`MAX_TRACKED`] buckets; when full, buckets that have
//! refilled completely (clients idle long enough to be back at their burst)
//! are dropped first, else the whole map is reset — a reset only ever lets
//! clients through, never blocks one wrongly.
//!
//! Called by: the IPNS and w3name write handlers. Must never: block or read
//! the disk. The clock is injected so tests can drive it.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{
    config::IpNet,
    quota::budget::{Clock, Rate, TokenBucket},
};

/// Most client addresses tracked at once (≈ 40 bytes each: under 3 MiB).
pub const MAX_TRACKED: usize = 65_536;

/// The limiter; cheap to share behind an `Arc`.
pub struct WriteLimiter {
    rate: Rate,
    exempt: Vec<IpNet>,
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

impl WriteLimiter {
    /// A limiter of `per_second` writes (burst `burst`) per client; a rate
    /// of 0 turns it off.
    pub fn new(per_second: u64, burst: u64, exempt: Vec<IpNet>, clock: Arc<dyn Clock>) -> Self {
        Self {
            rate: Rate {
                per_second,
                burst: burst.max(1),
            },
            exempt,
            clock,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one write for `client`: `Ok` to go ahead, or how long to wait.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        if self.rate.is_unlimited() || self.exempt.iter().any(|n| n.contains(&client)) {
            return Ok(());
        }
        let key = bucket_key(client);
        let now = self.clock.now_ms();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&key) {
            let rate = self.rate;
            buckets.retain(|_, b| b.available(rate, now) < rate.burst);
            if buckets.len() >= MAX_TRACKED {
                buckets.clear();
            }
        }
        let bucket = buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::full(self.rate, now));
        if bucket.can_take(self.rate, now, 1) {
            bucket.take(self.rate, 1);
            Ok(())
        } else {
            // A token refills within 1/rate ≤ 1 s; Retry-After is whole seconds.
            Err(Duration::from_secs(1))
        }
    }
}

/// IPv4 addresses count alone; IPv6 ones by their /64.
pub(crate) fn bucket_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let mut seg = v6.segments();
            seg[4..].fill(0);
            IpAddr::V6(seg.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::budget::ManualClock;

    fn limiter(clock: &Arc<ManualClock>) -> WriteLimiter {
        let exempt = vec!["127.0.0.0/8".parse().unwrap()];
        WriteLimiter::new(2, 3, exempt, clock.clone())
    }

    #[test]
    fn a_client_gets_its_burst_then_its_rate() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let l = limiter(&clock);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(l.check(a), Ok(()));
        }
        assert_eq!(l.check(a), Err(Duration::from_secs(1)));
        assert_eq!(l.check(b), Ok(()), "another client has its own bucket");
        clock.advance_ms(500); // 2/s: one write back
        assert_eq!(l.check(a), Ok(()));
        assert!(l.check(a).is_err());
    }

    #[test]
    fn exempt_nets_and_ipv6_prefixes() {
        let clock = Arc::new(ManualClock::new(0));
        let l = limiter(&clock);
        for _ in 0..100 {
            assert_eq!(l.check("127.0.0.1".parse().unwrap()), Ok(()));
        }
        // Two addresses in one /64 share a bucket.
        for i in 0..3 {
            assert_eq!(l.check(format!("2001:db8::{i}").parse().unwrap()), Ok(()));
        }
        assert!(l.check("2001:db8::ffff".parse().unwrap()).is_err());
        assert_eq!(l.check("2001:db8:0:1::1".parse().unwrap()), Ok(()));
    }

    #[test]
    fn zero_rate_is_off() {
        let clock = Arc::new(ManualClock::new(0));
        let l = WriteLimiter::new(0, 0, vec![], clock);
        for _ in 0..1000 {
            assert_eq!(l.check("192.0.2.1".parse().unwrap()), Ok(()));
        }
    }
}
