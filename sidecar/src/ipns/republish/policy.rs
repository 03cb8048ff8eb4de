//! The republish policy: pure functions from an attempt's outcome to the
//! name's next schedule row. No I/O, no clock: time comes in as Unix ms.
//!
//! - After a success the record is due again after `interval`, minus up to
//!   `jitter × interval` (so names published together drift apart and a
//!   million of them never come due at once), and never later than the
//!   record's validity (the name is then looked at when it expires).
//! - After a failure Kubo answered (an error, a timeout) the name is
//!   retried after an exponential backoff with "equal jitter": a delay `d =
//!   retry_min × 2^(failures−1)` capped at `retry_max`, of which the second
//!   half is random.
//! - After Kubo could not be reached at all the due time stays: the
//!   republisher stops dispatching until Kubo answers again, then catches
//!   up (see `super`), so an outage never pushes names further out.
//!
//! Jitter is a deterministic hash of the name key and the time, so tests
//! can state exact due times.

use std::time::Duration;

use crate::store::republish::{RepublishRow, RepublishState};

/// The republish settings (`[republish]` in the configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// How often a published record is put again.
    pub interval: Duration,
    /// Fraction of `interval` by which a re-put may come early (0–0.5).
    pub jitter: f64,
    /// Most puts in flight at once.
    pub concurrency: usize,
    /// Time allowed for one put (and for the network check before it).
    pub put_timeout: Duration,
    /// First retry delay after a failure.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Re-puts found overdue after downtime are spread over at most this
    /// long (at no less than one per second).
    pub catch_up_window: Duration,
    /// Ask the network for a better record before each re-put.
    pub check_network: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(12 * 3600),
            jitter: 0.1,
            concurrency: 20,
            put_timeout: Duration::from_secs(60),
            retry_min: Duration::from_secs(30),
            retry_max: Duration::from_secs(30 * 60),
            catch_up_window: Duration::from_secs(3600),
            check_network: true,
        }
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Kubo accepted the record; `peers`: DHT peers Kubo knew (`None`:
    /// unknown).
    Published { peers: Option<u32> },
    /// Kubo answered with an error or did not answer in time.
    Failed { code: &'static str, message: String },
    /// Kubo could not be reached.
    Unreachable { message: String },
    /// The record's validity had passed.
    Expired,
}

/// An attempt for the record with bytes `attempted`, finished at `at_ms`.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub attempted: bytes::Bytes,
    pub sequence: u64,
    pub at_ms: u64,
    pub attempt: Attempt,
}

/// A uniform number in [0, 1) from a name key and a time.
pub fn jitter_unit(key: &[u8], at_ms: u64) -> f64 {
    // FNV-1a over the key, then splitmix64 with the time.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = h ^ at_ms.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Policy {
    /// When a record published at `at_ms` is due again.
    pub fn due_after_success(&self, key: &[u8], at_ms: u64, validity_ms: u64) -> u64 {
        let interval = ms(self.interval);
        let early = (interval as f64 * self.jitter * jitter_unit(key, at_ms)) as u64;
        at_ms
            .saturating_add(interval - early.min(interval))
            .min(validity_ms)
    }

    /// The retry delay after the `failures`-th consecutive failure
    /// (1-based), before jitter.
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(32);
        self.retry_min
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.retry_max)
    }

    /// When a name that failed for the `failures`-th time at `at_ms` is
    /// retried.
    pub fn due_after_failure(
        &self,
        key: &[u8],
        failures: u32,
        at_ms: u64,
        validity_ms: u64,
    ) -> u64 {
        let d = ms(self.backoff(failures));
        let half = d / 2;
        let random = (half as f64 * jitter_unit(key, at_ms)) as u64;
        at_ms.saturating_add(d - half + random).min(validity_ms)
    }

    /// The row to store after `outcome`, given the stored record's bytes,
    /// sequence and validity and the stored row; `None` leaves the name
    /// alone.
    pub fn next_row(
        &self,
        key: &[u8],
        stored: Option<(&[u8], u64)>,
        old: Option<&RepublishRow>,
        outcome: &Outcome,
    ) -> Option<RepublishRow> {
        let (stored_bytes, validity_ms) = stored?;
        let old = old?.clone();
        let now = outcome.at_ms;
        if stored_bytes != outcome.attempted.as_ref() {
            // A newer record arrived meanwhile: it is already due as fresh;
            // only note the attempt.
            return Some(RepublishRow {
                last_attempt_ms: now,
                ..old
            });
        }
        Some(match &outcome.attempt {
            Attempt::Published { peers } => RepublishRow {
                state: RepublishState::Published,
                next_due_ms: self.due_after_success(key, now, validity_ms),
                last_attempt_ms: now,
                last_success_ms: now,
                failures: 0,
                peers: peers.map_or(-1, |p| i32::try_from(p).unwrap_or(i32::MAX)),
                published_sequence: outcome.sequence,
                last_error: String::new(),
            },
            Attempt::Failed { code, message } => {
                let failures = old.failures.saturating_add(1);
                RepublishRow {
                    next_due_ms: self.due_after_failure(key, failures, now, validity_ms),
                    last_attempt_ms: now,
                    failures,
                    last_error: format!("{code}: {message}"),
                    ..old
                }
            }
            Attempt::Unreachable { message } => RepublishRow {
                last_attempt_ms: now,
                failures: old.failures.saturating_add(1),
                last_error: format!("kubo_unreachable: {message}"),
                ..old
            },
            Attempt::Expired => RepublishRow {
                state: RepublishState::Expired,
                last_attempt_ms: now,
                ..old
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3_600_000;

    fn policy() -> Policy {
        Policy {
            interval: Duration::from_secs(12 * 3600),
            jitter: 0.1,
            retry_min: Duration::from_secs(30),
            retry_max: Duration::from_secs(600),
            ..Policy::default()
        }
    }

    fn outcome(bytes: &'static [u8], at_ms: u64, attempt: Attempt) -> Outcome {
        Outcome {
            attempted: bytes::Bytes::from_static(bytes),
            sequence: 3,
            at_ms,
            attempt,
        }
    }

    #[test]
    fn jitter_is_uniform_enough_and_deterministic() {
        let n = 100_000u64;
        let mut buckets = [0u32; 10];
        for i in 0..n {
            let u = jitter_unit(&i.to_be_bytes(), 1_700_000_000_000);
            assert!((0.0..1.0).contains(&u));
            buckets[(u * 10.0) as usize] += 1;
        }
        for b in buckets {
            assert!((9_500..10_500).contains(&b), "{buckets:?}");
        }
        assert_eq!(jitter_unit(b"k", 5), jitter_unit(b"k", 5));
        assert_ne!(jitter_unit(b"k", 5), jitter_unit(b"k", 6));
    }

    #[test]
    fn success_due_is_within_the_jitter_band_and_capped_by_validity() {
        let p = policy();
        let at = 1_000 * H;
        for i in 0..1_000u32 {
            let key = i.to_be_bytes();
            let due = p.due_after_success(&key, at, u64::MAX);
            let expected = at + 12 * H - (12.0 * H as f64 * 0.1 * jitter_unit(&key, at)) as u64;
            assert_eq!(due, expected);
            assert!(due > at + 12 * H - 12 * H / 10 && due <= at + 12 * H);
        }
        assert_eq!(p.due_after_success(b"k", at, at + H), at + H);
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let p = policy();
        let secs: Vec<u64> = (1..=7).map(|f| p.backoff(f).as_secs()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 600, 600]);
        assert_eq!(p.backoff(u32::MAX).as_secs(), 600);
        for f in 1..=7 {
            let d = p.backoff(f).as_millis() as u64;
            let due = p.due_after_failure(b"key", f, 0, u64::MAX);
            assert!(due >= d - d / 2 && due < d, "{f}: {due} vs {d}");
        }
    }

    #[test]
    fn outcomes_become_rows() {
        let p = policy();
        let fresh = RepublishRow::fresh(5);
        let at = 10 * H;
        let validity = 100 * H;
        let ok = p
            .next_row(
                b"k",
                Some((b"rec", validity)),
                Some(&fresh),
                &outcome(b"rec", at, Attempt::Published { peers: Some(3) }),
            )
            .unwrap();
        assert_eq!(ok.state, RepublishState::Published);
        assert_eq!(ok.next_due_ms, p.due_after_success(b"k", at, validity));
        assert_eq!((ok.failures, ok.peers, ok.published_sequence), (0, 3, 3));

        let failed = p
            .next_row(
                b"k",
                Some((b"rec", validity)),
                Some(&ok),
                &outcome(
                    b"rec",
                    at,
                    Attempt::Failed {
                        code: "kubo_error",
                        message: "boom".into(),
                    },
                ),
            )
            .unwrap();
        assert_eq!(failed.failures, 1);
        assert_eq!(failed.state, RepublishState::Published);
        assert_eq!(failed.last_error, "kubo_error: boom");
        assert_eq!(
            failed.next_due_ms,
            p.due_after_failure(b"k", 1, at, validity)
        );

        let down = p
            .next_row(
                b"k",
                Some((b"rec", validity)),
                Some(&failed),
                &outcome(
                    b"rec",
                    at + 1,
                    Attempt::Unreachable {
                        message: "refused".into(),
                    },
                ),
            )
            .unwrap();
        assert_eq!(
            down.next_due_ms, failed.next_due_ms,
            "an outage keeps the due time"
        );
        assert_eq!(down.failures, 2);

        let superseded = p
            .next_row(
                b"k",
                Some((b"newer", validity)),
                Some(&fresh),
                &outcome(b"rec", at, Attempt::Published { peers: None }),
            )
            .unwrap();
        assert_eq!(
            superseded,
            RepublishRow {
                last_attempt_ms: at,
                ..fresh.clone()
            }
        );

        let expired = p
            .next_row(
                b"k",
                Some((b"rec", at)),
                Some(&ok),
                &outcome(b"rec", at, Attempt::Expired),
            )
            .unwrap();
        assert_eq!(expired.state, RepublishState::Expired);
        assert!(
            p.next_row(
                b"k",
                None,
                Some(&ok),
                &outcome(b"rec", at, Attempt::Expired)
            )
            .is_none()
        );
    }
}
