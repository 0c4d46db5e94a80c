//! Per-worker pool of byte buffers for receive tails and owned sends.
//!
//! A 16 KiB echo allocates a tail (the frame straddles receive buffers) and
//! a send buffer per message. Freed at that rate, glibc hands the top of the
//! heap back to the kernel and page-faults it in again: a tenth of the
//! worker's time went to page faults before buffers were recycled here.
//! The pool is bounded in count, per-buffer capacity and total bytes, so an
//! idle worker holds at most [`MAX_POOLED_BYTES`].

/// Buffers kept at most.
const MAX_POOLED: usize = 256;
/// Larger buffers are freed rather than kept.
const MAX_POOLED_CAPACITY: usize = 1 << 20;
/// Total capacity kept at most.
pub(crate) const MAX_POOLED_BYTES: usize = 8 << 20;
/// How many of the most recently returned buffers `take` looks through for
/// one large enough before allocating.
const SEARCH_DEPTH: usize = 8;

/// Recycled, empty `Vec<u8>`s.
#[derive(Debug, Default)]
pub(crate) struct BytePool {
    free: Vec<Vec<u8>>,
    pooled_bytes: usize,
    allocated: u64,
}

impl BytePool {
    /// An empty buffer with room for at least `capacity` bytes.
    pub(crate) fn take(&mut self, capacity: usize) -> Vec<u8> {
        self.take_preferring(capacity, capacity)
    }

    /// An empty buffer with room for at least `capacity` bytes, preferably
    /// a pooled one with room for `preferred`; a fresh allocation is only
    /// `capacity` bytes.
    pub(crate) fn take_preferring(&mut self, capacity: usize, preferred: usize) -> Vec<u8> {
        let search_from = self.free.len().saturating_sub(SEARCH_DEPTH);
        let candidates = &self.free[search_from..];
        let found = candidates
            .iter()
            .rposition(|buffer| buffer.capacity() >= preferred)
            .or_else(|| {
                candidates
                    .iter()
                    .rposition(|buffer| buffer.capacity() >= capacity)
            });
        match found {
            Some(offset) => {
                let buffer = self.free.swap_remove(search_from + offset);
                self.pooled_bytes -= buffer.capacity();
                buffer
            }
            // An empty `Vec` allocates nothing, so it is not counted.
            None if capacity == 0 => Vec::new(),
            None => {
                self.allocated += 1;
                Vec::with_capacity(capacity)
            }
        }
    }

    /// Keeps `buffer` for reuse when the pool has room; frees it otherwise.
    pub(crate) fn give(&mut self, mut buffer: Vec<u8>) {
        let capacity = buffer.capacity();
        if capacity == 0
            || capacity > MAX_POOLED_CAPACITY
            || self.free.len() >= MAX_POOLED
            || self.pooled_bytes + capacity > MAX_POOLED_BYTES
        {
            return;
        }
        buffer.clear();
        self.pooled_bytes += capacity;
        self.free.push(buffer);
    }

    /// Frees every pooled buffer (a quiet worker gives its memory back).
    pub(crate) fn clear(&mut self) {
        self.free = Vec::new();
        self.pooled_bytes = 0;
    }

    /// Buffers allocated because no free one fitted.
    pub(crate) fn allocated(&self) -> u64 {
        self.allocated
    }

    /// Capacity held by pooled buffers.
    pub(crate) fn pooled_bytes(&self) -> usize {
        self.pooled_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returned_buffers_come_back_empty_with_their_capacity() {
        let mut pool = BytePool::default();
        let mut buffer = pool.take(1000);
        assert!(buffer.capacity() >= 1000);
        buffer.extend_from_slice(&[1; 700]);
        let address = buffer.as_ptr();
        let capacity = buffer.capacity();
        pool.give(buffer);
        assert_eq!(pool.pooled_bytes(), capacity);
        let again = pool.take(500);
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), address);
        assert_eq!(pool.pooled_bytes(), 0);
        assert_eq!(pool.allocated(), 1, "the second take reused the buffer");
        pool.take(500);
        assert_eq!(pool.allocated(), 2);
    }

    #[test]
    fn asking_for_any_buffer_from_an_empty_pool_allocates_nothing() {
        let mut pool = BytePool::default();
        assert_eq!(pool.take(0).capacity(), 0);
        assert_eq!(pool.allocated(), 0);
        pool.give(Vec::with_capacity(64));
        assert!(pool.take(0).capacity() >= 64, "any pooled buffer will do");
    }

    #[test]
    fn a_buffer_too_small_is_skipped_not_grown() {
        let mut pool = BytePool::default();
        pool.give(Vec::with_capacity(64));
        let big = pool.take(4096);
        assert!(big.capacity() >= 4096);
        assert_eq!(pool.free.len(), 1, "the small buffer stays pooled");
        assert!(pool.take(32).capacity() >= 32);
        assert!(pool.free.is_empty());
    }

    #[test]
    fn the_preferred_size_wins_when_pooled() {
        let mut pool = BytePool::default();
        pool.give(Vec::with_capacity(4096));
        pool.give(Vec::with_capacity(100));
        assert!(pool.take_preferring(50, 4000).capacity() >= 4000);
        assert!(pool.take_preferring(50, 4000).capacity() >= 100);
        let fresh = pool.take_preferring(50, 4000);
        assert!(fresh.capacity() >= 50 && fresh.capacity() < 4000);
    }

    #[test]
    fn the_pool_is_bounded() {
        let mut pool = BytePool::default();
        pool.give(Vec::with_capacity(MAX_POOLED_CAPACITY + 1));
        pool.give(Vec::new());
        assert_eq!(pool.pooled_bytes(), 0);
        for _ in 0..(2 * MAX_POOLED) {
            pool.give(Vec::with_capacity(16));
        }
        assert_eq!(pool.free.len(), MAX_POOLED);
        let mut pool = BytePool::default();
        for _ in 0..64 {
            pool.give(Vec::with_capacity(MAX_POOLED_CAPACITY));
        }
        assert!(pool.pooled_bytes() <= MAX_POOLED_BYTES);
        assert_eq!(pool.free.len(), MAX_POOLED_BYTES / MAX_POOLED_CAPACITY);
    }

    #[test]
    fn clear_frees_every_pooled_buffer() {
        let mut pool = BytePool::default();
        for _ in 0..4 {
            let buffer = pool.take(4096);
            pool.give(buffer);
        }
        let held: Vec<Vec<u8>> = (0..3).map(|_| pool.take(4096)).collect();
        for buffer in held {
            pool.give(buffer);
        }
        assert!(pool.pooled_bytes() >= 3 * 4096);
        let allocated = pool.allocated();
        pool.clear();
        assert_eq!(pool.pooled_bytes(), 0);
        drop(pool.take(4096));
        assert_eq!(pool.allocated(), allocated + 1, "nothing left to reuse");
    }
}
