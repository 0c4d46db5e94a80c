//! The provided buffer ring of one worker (`IORING_REGISTER_PBUF_RING`).
//!
//! Two page-aligned anonymous mappings: the ring of `entries` descriptors
//! (`struct io_uring_buf`: address, length, buffer id) that the kernel reads,
//! and the buffers themselves, `entries × buffer_size` bytes. The kernel
//! consumes descriptors from the ring's head as multishot receives complete;
//! the worker hands a buffer back by writing a descriptor at the tail and
//! publishing the new tail with a release store, which the kernel reads with
//! acquire.
//!
//! Ownership of buffer `bid` is one of: "in the ring" (the kernel may write
//! to it at any time), "lent to the worker" (between the completion that
//! names it and [`BufRing::recycle`]) or "in reserve" (never offered yet).
//! The worker only builds a slice over a buffer while it is lent. A lent
//! buffer may be *held* ([`BufRing::hold`]) by queued sends that read from
//! it (a reply sent from the bytes it answers, without a copy) and, while it
//! is being delivered, by that delivery; it goes back to the ring when the
//! last hold is released.
//!
//! Only some of the buffers are offered at first: the kernel takes them in
//! ring order, so every buffer offered is written once per lap, and a lap
//! over all of them (32 MiB by default) runs through memory no cache holds;
//! at 16 KiB messages the receive copy into cold buffers cost about a tenth
//! of the worker's time. [`BufRing::grow`] offers more of the reserve when
//! a receive finds the ring empty, so a worker with many busy connections
//! still gets every buffer it was configured with.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

pub(crate) const PAGE: usize = 4096;
/// Byte offset of the ring's tail: it overlays the `resv` field of entry 0.
const TAIL_OFFSET: usize = 14;
/// Bytes of an entry the worker writes: `addr`, `len`, `bid`; the last two
/// bytes (`resv`) are left alone because in entry 0 they are the tail.
const ENTRY_WRITTEN_BYTES: usize = 14;

/// `struct io_uring_buf` from the kernel's uapi.
#[repr(C)]
struct RawBuf {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// Largest ring the kernel accepts.
pub(crate) const MAX_ENTRIES: u16 = 32768;
/// Bytes of buffers offered at start: a lap over them stays within what a
/// core's caches can keep warm.
const INITIAL_OFFERED_BYTES: usize = 2 << 20;
/// Buffers offered at start at the least (when they are large).
const MIN_INITIAL_OFFERED: u16 = 16;

/// A page-aligned, zeroed anonymous mapping, unmapped on drop. Its pages
/// become resident only when first written, so buffers the ring has not
/// offered yet cost address space, not memory.
struct PageAlloc {
    ptr: NonNull<u8>,
    len: usize,
}

impl PageAlloc {
    fn new(size: usize) -> io::Result<Self> {
        let len = size
            .max(1)
            .checked_next_multiple_of(PAGE)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "buffer ring too large"))?;
        // SAFETY: a private anonymous mapping at an address the kernel
        // chooses; no existing memory is affected. The result is checked
        // for MAP_FAILED before use.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(raw.cast::<u8>())
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        Ok(PageAlloc { ptr, len })
    }
}

impl Drop for PageAlloc {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` describe a mapping made by `mmap` in
        // `new`, unmapped exactly once, here; nothing borrows it any more.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One worker's provided buffer ring.
pub(crate) struct BufRing {
    ring: PageAlloc,
    buffers: PageAlloc,
    entries: u16,
    buffer_size: u32,
    /// The tail as last published (the kernel only reads it).
    tail: u16,
    /// Buffers currently lent to the worker (for stats and tests).
    lent: u32,
    /// Buffers in the ring or lent: offered to the kernel so far.
    offered: u16,
    /// Buffer ids not offered yet; the next to offer is last.
    reserve: Vec<u16>,
    /// Per buffer: its delivery to `on_data`, if going on, and the queued
    /// sends that read from it.
    holds: Vec<u16>,
    /// Buffers with at least one hold.
    held: u32,
    /// Per buffer: lent to the worker (between `take` and `recycle`).
    lent_ids: Vec<bool>,
    /// `mincore`'s answer for the offered buffers, one byte per page.
    residency: Vec<u8>,
}

impl BufRing {
    /// Allocates the ring and its buffers and offers the first of them (see
    /// the module docs); the rest wait in reserve for [`grow`](Self::grow).
    /// `entries` must be a power of two in `1..=32768`.
    pub(crate) fn new(entries: u16, buffer_size: u32) -> io::Result<Self> {
        if !entries.is_power_of_two() || entries > MAX_ENTRIES || buffer_size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer count must be a power of two up to 32768 and buffer size non-zero",
            ));
        }
        let ring = PageAlloc::new(usize::from(entries) * std::mem::size_of::<RawBuf>())?;
        let total = usize::from(entries)
            .checked_mul(buffer_size as usize)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "buffer ring too large"))?;
        let buffers = PageAlloc::new(total)?;
        let initial = (INITIAL_OFFERED_BYTES / buffer_size as usize)
            .max(usize::from(MIN_INITIAL_OFFERED))
            .min(usize::from(entries));
        let initial = u16::try_from(initial).unwrap_or(entries);
        let mut this = BufRing {
            ring,
            buffers,
            entries,
            buffer_size,
            tail: 0,
            lent: 0,
            offered: 0,
            reserve: (0..entries).rev().collect(),
            holds: vec![0; usize::from(entries)],
            held: 0,
            lent_ids: vec![false; usize::from(entries)],
            residency: Vec::new(),
        };
        this.offer(initial);
        Ok(this)
    }

    /// The ring ran dry: offers as many more buffers as are offered now
    /// (fewer when the reserve runs out). Returns how many were added.
    pub(crate) fn grow(&mut self) -> u16 {
        self.offer(self.offered)
    }

    /// Buffers offered to the kernel so far (in the ring or lent).
    pub(crate) fn offered(&self) -> u16 {
        self.offered
    }

    /// Moves up to `count` buffers from the reserve into the ring.
    fn offer(&mut self, count: u16) -> u16 {
        let count = count.min(self.reserve.len() as u16);
        for _ in 0..count {
            if let Some(bid) = self.reserve.pop() {
                self.write_entry(bid);
            }
        }
        self.offered += count;
        if count > 0 {
            self.publish();
        }
        count
    }

    /// Address of the descriptor ring, for `register_buf_ring_with_flags`.
    pub(crate) fn ring_addr(&self) -> u64 {
        self.ring.ptr.as_ptr() as u64
    }

    pub(crate) fn entries(&self) -> u16 {
        self.entries
    }

    pub(crate) fn buffer_size(&self) -> u32 {
        self.buffer_size
    }

    /// Buffers currently lent to the worker.
    pub(crate) fn lent(&self) -> u32 {
        self.lent
    }

    /// Records that the kernel handed `bid` to the worker and returns a
    /// pointer to its first byte, or `None` for an id outside the ring.
    pub(crate) fn take(&mut self, bid: u16) -> Option<*mut u8> {
        if bid >= self.entries {
            return None;
        }
        self.lent += 1;
        self.lent_ids[usize::from(bid)] = true;
        Some(self.buffer_ptr(bid))
    }

    /// Pages of the offered buffers that are resident (`mincore`).
    pub(crate) fn resident_pages(&mut self) -> io::Result<usize> {
        let len = self.offered_bytes();
        self.residency.resize(len.div_ceil(PAGE), 0);
        // SAFETY: the range starts at the page-aligned base of the buffers
        // mapping and lies inside it (offered ≤ entries); `residency` has one
        // byte per page of it, as `mincore` writes.
        let result = unsafe {
            libc::mincore(
                self.buffers.ptr.as_ptr().cast(),
                len,
                self.residency.as_mut_ptr(),
            )
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(self.residency.iter().filter(|&&page| page & 1 != 0).count())
    }

    /// Bytes of the buffers offered so far: ids `0..offered` (the reserve
    /// hands them out in order).
    fn offered_bytes(&self) -> usize {
        usize::from(self.offered) * self.buffer_size as usize
    }

    /// Gives back to the kernel (`MADV_DONTNEED`) the pages of the offered
    /// buffers from id `from` on that are in the ring (not lent), covering
    /// about `max_buffers` buffers: they read as zeroes and become resident
    /// again when a receive next writes them. Pages shared with a lent
    /// buffer are kept. Returns the bytes given back and the id to go on
    /// from, or `None` when the offered buffers are done. Slices end where a
    /// buffer starts on a page boundary, so no page is split between two.
    ///
    /// # Safety
    ///
    /// No receive may be writing into a buffer in the ring while this runs,
    /// and none may have completed into one whose completion the worker has
    /// not reaped yet: the kernel would have written bytes the worker has
    /// still to read, and they would be zeroed.
    pub(crate) unsafe fn release_ring_pages(
        &mut self,
        from: usize,
        max_buffers: usize,
    ) -> (usize, Option<usize>) {
        let size = self.buffer_size as usize;
        let base = self.buffers.ptr.as_ptr() as usize;
        let offered = usize::from(self.offered);
        let mut end = from.saturating_add(max_buffers.max(1)).min(offered);
        while end < offered && !(end * size).is_multiple_of(PAGE) {
            end += 1;
        }
        let mut released = 0;
        let mut bid = from;
        while bid < end {
            if self.lent_ids[bid] {
                bid += 1;
                continue;
            }
            let run_start = bid;
            while bid < end && !self.lent_ids[bid] {
                bid += 1;
            }
            // Whole pages inside the run only.
            let start = (base + run_start * size).next_multiple_of(PAGE);
            let run_end = (base + bid * size) / PAGE * PAGE;
            if run_end > start {
                // Anonymous private pages given back read as zeroes.
                // SAFETY: a page-aligned range inside the buffers mapping,
                // of ring buffers no receive writes or has written unread.
                let result = unsafe {
                    libc::madvise(
                        start as *mut libc::c_void,
                        run_end - start,
                        libc::MADV_DONTNEED,
                    )
                };
                if result == 0 {
                    released += run_end - start;
                }
            }
        }
        (released, (end < offered).then_some(end))
    }

    fn buffer_ptr(&self, bid: u16) -> *mut u8 {
        // In bounds: bid < entries and the allocation holds entries × size bytes.
        self.buffers
            .ptr
            .as_ptr()
            .wrapping_add(usize::from(bid) * self.buffer_size as usize)
    }

    /// Records one more reader of lent buffer `bid` (its delivery, or a
    /// queued send); it is not recycled while held (see
    /// [`release`](Self::release)).
    pub(crate) fn hold(&mut self, bid: u16) {
        let holds = &mut self.holds[usize::from(bid)];
        if *holds == 0 {
            self.held += 1;
        }
        *holds += 1;
    }

    /// Drops one hold on `bid`; returns whether none is left, in which case
    /// the caller recycles it.
    pub(crate) fn release(&mut self, bid: u16) -> bool {
        let holds = &mut self.holds[usize::from(bid)];
        debug_assert!(*holds > 0, "released a buffer that was not held");
        *holds = holds.saturating_sub(1);
        if *holds == 0 {
            self.held = self.held.saturating_sub(1);
            return true;
        }
        false
    }

    /// Drops one hold on `bid` and, when it was the last, hands the buffer
    /// back to the kernel: what every holder does when it is done.
    pub(crate) fn let_go(&mut self, bid: u16) {
        if self.release(bid) {
            self.recycle(bid);
        }
    }

    /// Whether `bid` can take one more hold (a payload relayed to very many
    /// connections is copied once its count is full).
    pub(crate) fn can_hold(&self, bid: u16) -> bool {
        self.holds
            .get(usize::from(bid))
            .is_some_and(|&holds| holds < u16::MAX)
    }

    /// Whether a delivery or queued sends still read from `bid`.
    pub(crate) fn is_held(&self, bid: u16) -> bool {
        self.holds
            .get(usize::from(bid))
            .is_some_and(|&holds| holds > 0)
    }

    /// Buffers held (by a delivery or queued sends).
    pub(crate) fn held(&self) -> u32 {
        self.held
    }

    /// Hands buffer `bid` back to the kernel. The caller must no longer use
    /// any slice over it, and no send may hold it.
    pub(crate) fn recycle(&mut self, bid: u16) {
        debug_assert!(bid < self.entries);
        debug_assert!(!self.is_held(bid), "recycled a held buffer");
        self.lent = self.lent.saturating_sub(1);
        self.lent_ids[usize::from(bid)] = false;
        self.write_entry(bid);
        self.publish();
    }

    /// Writes the descriptor for `bid` at the current tail and advances the
    /// local tail (not yet visible to the kernel).
    fn write_entry(&mut self, bid: u16) {
        let index = usize::from(self.tail & (self.entries - 1));
        let entry = RawBuf {
            addr: self.buffer_ptr(bid) as u64,
            len: self.buffer_size,
            bid,
            resv: 0,
        };
        let destination = self
            .ring
            .ptr
            .as_ptr()
            .wrapping_add(index * std::mem::size_of::<RawBuf>());
        // Entry 0 overlays the ring's tail: only its first 14 bytes are ours.
        // SAFETY: entry `index` lies in the ring allocation, between the
        // published tail and the head, so the kernel is not reading it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&entry as *const RawBuf).cast::<u8>(),
                destination,
                ENTRY_WRITTEN_BYTES,
            )
        };
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every written descriptor visible to the kernel.
    fn publish(&self) {
        let tail_ptr = self
            .ring
            .ptr
            .as_ptr()
            .wrapping_add(TAIL_OFFSET)
            .cast::<AtomicU16>();
        // SAFETY: the tail is a naturally aligned u16 inside the ring
        // allocation, which lives as long as `self`; the kernel only reads it
        // and the worker is its only writer, through atomics.
        let tail = unsafe { &*tail_ptr };
        tail.store(self.tail, Ordering::Release);
    }

    #[cfg(test)]
    fn read_entry(&self, index: usize) -> (u64, u32, u16) {
        let mut entry = RawBuf {
            addr: 0,
            len: 0,
            bid: 0,
            resv: 0,
        };
        let source = self
            .ring
            .ptr
            .as_ptr()
            .wrapping_add(index * std::mem::size_of::<RawBuf>());
        // SAFETY: reads one whole entry inside the ring allocation into a local.
        unsafe {
            std::ptr::copy_nonoverlapping(
                source,
                (&mut entry as *mut RawBuf).cast::<u8>(),
                std::mem::size_of::<RawBuf>(),
            )
        };
        let _ = entry.resv;
        (entry.addr, entry.len, entry.bid)
    }

    #[cfg(test)]
    fn published_tail(&self) -> u16 {
        let tail_ptr = self
            .ring
            .ptr
            .as_ptr()
            .wrapping_add(TAIL_OFFSET)
            .cast::<AtomicU16>();
        // SAFETY: as in `publish`.
        let tail = unsafe { &*tail_ptr };
        tail.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ring_offers_a_few_buffers_and_grows_to_all_of_them() {
        // 16 KiB buffers: 2 MiB offered at first, 128 of 1024.
        let mut ring = BufRing::new(1024, 16 << 10).unwrap();
        assert_eq!((ring.offered(), ring.published_tail()), (128, 128));
        assert_eq!(ring.read_entry(127).2, 127);
        // Each time the ring runs dry the offer doubles, up to every buffer.
        assert_eq!(ring.grow(), 128);
        assert_eq!(ring.grow(), 256);
        assert_eq!(ring.grow(), 512);
        assert_eq!(ring.grow(), 0);
        assert_eq!((ring.offered(), ring.published_tail()), (1024, 1024));
        // Every id offered exactly once.
        let mut ids: Vec<u16> = (0..1024).map(|index| ring.read_entry(index).2).collect();
        ids.sort_unstable();
        assert!(ids.iter().copied().eq(0..1024));
        // Large buffers: at least 16 at first; a small ring: all of it.
        assert_eq!(BufRing::new(1024, 1 << 20).unwrap().offered(), 16);
        assert_eq!(BufRing::new(8, 16 << 10).unwrap().offered(), 8);
    }

    #[test]
    fn new_ring_offers_every_buffer_of_a_small_ring() {
        let ring = BufRing::new(8, 256).unwrap();
        assert_eq!(ring.published_tail(), 8);
        assert_eq!(ring.ring_addr() % PAGE as u64, 0);
        let base = ring.buffer_ptr(0) as u64;
        assert_eq!(base % PAGE as u64, 0);
        for index in 0..8 {
            let (addr, len, bid) = ring.read_entry(index);
            assert_eq!(bid as usize, index);
            assert_eq!(len, 256);
            assert_eq!(addr, base + 256 * index as u64);
        }
    }

    #[test]
    fn recycle_appends_at_the_tail_and_wraps() {
        let mut ring = BufRing::new(4, 64).unwrap();
        let base = ring.buffer_ptr(0) as u64;
        // The kernel consumed buffers 2 and 0; hand them back in that order.
        assert!(ring.take(2).is_some());
        assert!(ring.take(0).is_some());
        assert_eq!(ring.lent(), 2);
        ring.recycle(2);
        ring.recycle(0);
        assert_eq!(ring.lent(), 0);
        assert_eq!(ring.published_tail(), 6);
        // Tail 4 and 5 wrap to entries 0 and 1.
        assert_eq!(ring.read_entry(0), (base + 2 * 64, 64, 2));
        assert_eq!(ring.read_entry(1), (base, 64, 0));
        // Entry 0's descriptor write left the tail intact.
        assert_eq!(ring.published_tail(), 6);
    }

    #[test]
    fn tail_wraps_around_u16() {
        let mut ring = BufRing::new(2, 16).unwrap();
        for _ in 0..70_000u32 {
            assert!(ring.take(1).is_some());
            ring.recycle(1);
        }
        assert_eq!(ring.published_tail(), (2u32 + 70_000) as u16);
    }

    #[test]
    fn holds_count_per_buffer() {
        let mut ring = BufRing::new(4, 64).unwrap();
        assert!(ring.take(1).is_some());
        ring.hold(1);
        ring.hold(1);
        assert!(ring.is_held(1) && !ring.is_held(0));
        assert_eq!(ring.held(), 1);
        assert!(!ring.release(1));
        assert!(ring.release(1));
        assert_eq!(ring.held(), 0);
        // The count never wraps: a full one refuses more holds.
        for _ in 0..u16::MAX {
            ring.hold(1);
        }
        assert!(!ring.can_hold(1) && ring.can_hold(0));
        for _ in 0..u16::MAX {
            ring.release(1);
        }
        ring.recycle(1);
        assert_eq!(ring.lent(), 0);
    }

    #[test]
    fn ring_pages_go_back_to_the_kernel_and_lent_ones_stay() {
        // 8 buffers of 6 KiB: buffer boundaries fall inside pages.
        let mut ring = BufRing::new(8, 6 << 10).unwrap();
        assert_eq!(ring.resident_pages().unwrap(), 0);
        for bid in 0..8 {
            let buffer = ring.take(bid).unwrap();
            // SAFETY: buffer `bid` is lent (taken) and 6 KiB long.
            unsafe { std::ptr::write_bytes(buffer, 0xA5, 6 << 10) };
        }
        // 48 KiB: 12 pages, all written.
        assert_eq!(ring.resident_pages().unwrap(), 12);
        // Buffers 2 and 3 stay lent (12 KiB from 12 KiB to 24 KiB: pages 3–5).
        for bid in [0, 1, 4, 5, 6, 7] {
            ring.recycle(bid);
        }
        // SAFETY: no kernel is attached to this ring.
        let released = unsafe { ring.release_ring_pages(0, usize::MAX) };
        // Pages 0–2 (buffers 0, 1) and 6–11 (buffers 4–7) go back.
        assert_eq!(released, (9 * PAGE, None));
        assert_eq!(ring.resident_pages().unwrap(), 3);
        let lent = ring.buffer_ptr(2);
        // SAFETY: buffers 2 and 3 are lent: 12 KiB from `lent`.
        let bytes = unsafe { std::slice::from_raw_parts(lent, 12 << 10) };
        assert!(bytes.iter().all(|&b| b == 0xA5), "a lent buffer lost bytes");
        // A released buffer is resident again once written, and reads as
        // zeroes (read after counting: reading maps pages too).
        let buffer = ring.take(7).unwrap();
        // SAFETY: buffer 7 is lent again and 6 KiB long.
        let bytes = unsafe { std::slice::from_raw_parts_mut(buffer, 6 << 10) };
        bytes[0] = 1;
        assert_eq!(ring.resident_pages().unwrap(), 4);
        assert!(bytes[1..].iter().all(|&b| b == 0));
    }

    #[test]
    fn ring_pages_go_back_in_slices_that_split_no_page() {
        // 16 buffers of 6 KiB (24 pages); buffer 5 stays lent.
        let mut ring = BufRing::new(16, 6 << 10).unwrap();
        for bid in 0..16 {
            let buffer = ring.take(bid).unwrap();
            // SAFETY: buffer `bid` is lent (taken) and 6 KiB long.
            unsafe { std::ptr::write_bytes(buffer, 0x5A, 6 << 10) };
            if bid != 5 {
                ring.recycle(bid);
            }
        }
        assert_eq!(ring.resident_pages().unwrap(), 24);
        let mut slices = Vec::new();
        let mut from = Some(0);
        while let Some(start) = from {
            // SAFETY: no kernel is attached to this ring.
            let (released, next) = unsafe { ring.release_ring_pages(start, 3) };
            slices.push((start, released / PAGE));
            from = next;
        }
        // Three buffers asked for, four taken: buffer 3 ends mid-page, so
        // each slice runs on to the next buffer starting on a page boundary.
        // Buffer 5 (bytes 30–36 KiB: pages 7 and 8) and the pages it shares
        // are kept; every other page goes back.
        assert_eq!(slices, [(0, 6), (4, 4), (8, 6), (12, 6)]);
        assert_eq!(ring.resident_pages().unwrap(), 2);
        let lent = ring.buffer_ptr(5);
        // SAFETY: buffer 5 is lent: 6 KiB from `lent`.
        let bytes = unsafe { std::slice::from_raw_parts(lent, 6 << 10) };
        assert!(
            bytes.iter().all(|&b| b == 0x5A),
            "the lent buffer lost bytes"
        );
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(BufRing::new(3, 16).is_err());
        assert!(BufRing::new(0, 16).is_err());
        assert!(BufRing::new(4, 0).is_err());
        let mut ring = BufRing::new(4, 16).unwrap();
        assert!(ring.take(4).is_none());
    }
}
