//! Recycled read buffers for large blocks.
//!
//! Reading a 1 MiB block into a fresh `vec![0; n]` costs a memset and, once
//! glibc hands the allocation out of fresh pages, a page fault per 4 KiB:
//! together more CPU than the `pread` itself. Large blocks are therefore read
//! into buffers from this pool. A buffer goes back to the pool when the last
//! [`Bytes`] slice of it is dropped, i.e. once the block has been written to
//! the peer.
//!
//! Buffers come in power-of-two classes from [`MIN_POOLED`] to
//! [`MAX_POOLED`] bytes, are zeroed once when allocated and never again, and
//! the pool keeps at most [`IDLE_BYTES`] of idle buffers; blocks outside the
//! classes use an ordinary allocation.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Smallest pooled class; smaller blocks are cheap to allocate.
pub const MIN_POOLED: usize = 64 * 1024;

/// Largest pooled class (Bitswap's block size limit).
pub const MAX_POOLED: usize = 2 * 1024 * 1024;

/// Idle bytes the pool may hold across all classes.
pub const IDLE_BYTES: usize = 8 * 1024 * 1024;

const CLASSES: usize = (MAX_POOLED / MIN_POOLED).trailing_zeros() as usize + 1;

/// A pool of read buffers; cheap to clone.
#[derive(Clone, Default)]
pub struct BufferPool {
    inner: Arc<Mutex<Idle>>,
}

#[derive(Default)]
struct Idle {
    classes: [Vec<Vec<u8>>; CLASSES],
    bytes: usize,
}

/// A buffer on loan from the pool. Fill [`Loan::bytes_mut`] and turn it into
/// [`Bytes`] with [`Loan::freeze`].
pub struct Loan {
    buf: Vec<u8>,
    len: usize,
    pool: Option<BufferPool>,
}

fn class_of(len: usize) -> Option<usize> {
    if !(MIN_POOLED..=MAX_POOLED).contains(&len) {
        return None;
    }
    Some((len.next_power_of_two() / MIN_POOLED).trailing_zeros() as usize)
}

impl BufferPool {
    pub fn new() -> Self {
        Self::default()
    }

    /// A buffer of exactly `len` usable bytes (contents unspecified).
    pub fn take(&self, len: usize) -> Loan {
        let Some(class) = class_of(len) else {
            return Loan {
                buf: vec![0; len],
                len,
                pool: None,
            };
        };
        let reused = {
            let mut idle = self.lock();
            let buf = idle.classes[class].pop();
            if let Some(b) = &buf {
                idle.bytes -= b.len();
            }
            buf
        };
        let buf = reused.unwrap_or_else(|| vec![0; MIN_POOLED << class]);
        Loan {
            buf,
            len,
            pool: Some(self.clone()),
        }
    }

    /// Idle bytes held (for tests and metrics).
    pub fn idle_bytes(&self) -> usize {
        self.lock().bytes
    }

    fn give_back(&self, buf: Vec<u8>) {
        let Some(class) = class_of(buf.len()) else {
            return;
        };
        let mut idle = self.lock();
        if idle.bytes + buf.len() <= IDLE_BYTES {
            idle.bytes += buf.len();
            idle.classes[class].push(buf);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        // Idle is a plain free list; a panic elsewhere cannot corrupt it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Loan {
    /// The usable bytes, to be filled by the caller.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }

    /// The filled bytes as [`Bytes`]; the buffer returns to the pool when
    /// the last clone or slice is dropped.
    pub fn freeze(self) -> Bytes {
        let len = self.len;
        if self.pool.is_none() {
            let mut me = self;
            let mut buf = std::mem::take(&mut me.buf);
            buf.truncate(len);
            return Bytes::from(buf);
        }
        Bytes::from_owner(self).slice(..len)
    }
}

impl AsRef<[u8]> for Loan {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Loan {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.give_back(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_the_pooled_range() {
        assert_eq!(class_of(MIN_POOLED - 1), None);
        assert_eq!(class_of(MIN_POOLED), Some(0));
        assert_eq!(class_of(MIN_POOLED + 1), Some(1));
        assert_eq!(class_of(1024 * 1024), Some(4));
        assert_eq!(class_of(MAX_POOLED), Some(CLASSES - 1));
        assert_eq!(class_of(MAX_POOLED + 1), None);
    }

    #[test]
    fn a_buffer_returns_when_its_last_slice_drops() {
        let pool = BufferPool::new();
        let mut loan = pool.take(100_000);
        loan.bytes_mut().fill(7);
        let bytes = loan.freeze();
        assert_eq!(bytes.len(), 100_000);
        assert!(bytes.iter().all(|&b| b == 7));
        let part = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(pool.idle_bytes(), 0, "a slice still holds the buffer");
        drop(part);
        assert_eq!(pool.idle_bytes(), 128 * 1024);

        // The next loan of that class reuses it: no new allocation.
        let again = pool.take(70_000);
        assert_eq!(pool.idle_bytes(), 0);
        assert_eq!(again.buf.len(), 128 * 1024);
    }

    #[test]
    fn small_and_oversized_blocks_bypass_the_pool() {
        let pool = BufferPool::new();
        for len in [0, 10, MIN_POOLED - 1, MAX_POOLED + 1] {
            let mut loan = pool.take(len);
            assert_eq!(loan.bytes_mut().len(), len);
            assert_eq!(loan.freeze().len(), len);
        }
        assert_eq!(pool.idle_bytes(), 0);
    }

    #[test]
    fn idle_bytes_are_capped() {
        let pool = BufferPool::new();
        let loans: Vec<_> = (0..(IDLE_BYTES / MAX_POOLED + 3))
            .map(|_| pool.take(MAX_POOLED))
            .collect();
        drop(loans);
        assert_eq!(pool.idle_bytes(), IDLE_BYTES);
    }
}
