//! Per-connection send queue: chunks waiting to be written, the chunks of the
//! one `IORING_OP_SENDMSG` in flight, and the iovec array and `msghdr` that
//! operation reads.
//!
//! Layout and address stability: a [`SendQueue`] lives in a `Box` owned by
//! its connection slot, so the `msghdr` and iovecs have a stable address
//! while the operation is in flight. [`SendQueue::prepare`] moves the chunks
//! to send from `pending` into `inflight` before taking their addresses, and
//! `inflight` is not touched again until [`SendQueue::complete`]: pushes go to
//! `pending`, so an [`Chunk::Inline`] chunk (whose bytes live inside the
//! vector) never moves under the kernel.
//!
//! Frames a handler builds in place go to an open tail buffer kept beside
//! the chunk lists, which flies and comes back as a plain buffer: a reply
//! costs no [`Chunk`] and no trip through `pending` or `inflight`.
//!
//! A queue exists only while a connection has unsent bytes; an idle
//! connection owns none (the worker keeps a small pool of emptied queues).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use crate::buf_ring::BufRing;
use crate::byte_pool::BytePool;

/// Most iovecs in one `sendmsg`.
pub(crate) const MAX_IOVECS: usize = 64;

/// Bytes an [`Chunk::Inline`] chunk holds (a WebSocket frame header is at
/// most 14 bytes; a control frame with a short payload fits too).
pub const INLINE_CAPACITY: usize = 22;

/// Smallest buffer [`SendQueue::append_with`] starts: room for several
/// small frames, so the replies of one loop turn leave in one buffer.
const COALESCE_BYTES: usize = 4096;

/// Bytes to send on a connection.
///
/// * `Owned`: a buffer this connection alone sends.
/// * `Shared`: one buffer sent to many connections (a broadcast encoded
///   once); each connection holds a reference until its bytes are written.
/// * `Static`: bytes with static lifetime.
/// * `Inline`: up to [`INLINE_CAPACITY`] bytes stored in the chunk itself,
///   so a small frame header costs no allocation.
/// * `Received`: bytes inside one of the worker's receive buffers, which the
///   reactor keeps from the kernel until they are written; only the reactor
///   makes these ([`Io::send_with_payload`](crate::Io::send_with_payload)).
///   A clone is an `Owned` copy.
pub enum Chunk {
    /// An owned buffer.
    Owned(Vec<u8>),
    /// A buffer shared with other connections.
    Shared(Arc<[u8]>),
    /// Static bytes.
    Static(&'static [u8]),
    /// A few bytes kept inline; build with [`Chunk::inline`].
    Inline(InlineBytes),
    /// Bytes in a held receive buffer.
    Received(ReceivedBytes),
}

/// A range of a receive buffer that a queued send holds (see
/// [`Chunk::Received`]). Only the reactor creates one, when it takes a hold
/// on the buffer, and it releases the hold when it takes the chunk back.
pub struct ReceivedBytes {
    bid: u16,
    /// Address and length of the range; an address rather than a pointer
    /// so that chunks stay `Send` (a `Received` chunk never leaves its
    /// worker).
    addr: usize,
    len: usize,
}

impl ReceivedBytes {
    /// A range of lent buffer `bid` on which the caller has just taken a
    /// hold, so nothing writes to it until the hold is released.
    pub(crate) fn new(bid: u16, bytes: &[u8]) -> ReceivedBytes {
        ReceivedBytes {
            bid,
            addr: bytes.as_ptr() as usize,
            len: bytes.len(),
        }
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `new` took this range of lent buffer `bid` under a hold; the
        // buffer is neither offered to the kernel nor written before the hold
        // is released, and its mapping outlives the worker's send queues.
        unsafe { std::slice::from_raw_parts(self.addr as *const u8, self.len) }
    }
}

impl fmt::Debug for ReceivedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReceivedBytes(buffer {}, {} bytes)", self.bid, self.len)
    }
}

impl Clone for Chunk {
    fn clone(&self) -> Chunk {
        match self {
            Chunk::Owned(bytes) => Chunk::Owned(bytes.clone()),
            Chunk::Shared(bytes) => Chunk::Shared(Arc::clone(bytes)),
            Chunk::Static(bytes) => Chunk::Static(bytes),
            Chunk::Inline(inline) => Chunk::Inline(*inline),
            // A hold is the reactor's to take: a clone is a copy.
            Chunk::Received(range) => Chunk::Owned(range.as_slice().to_vec()),
        }
    }
}

/// Where a send queue's written or dropped chunks go: owned buffers back to
/// the byte pool, holds on receive buffers released.
pub(crate) trait TakeBack {
    fn take_back(&mut self, chunk: Chunk);
}

impl TakeBack for BytePool {
    /// For queues that never hold receive buffers (tests).
    fn take_back(&mut self, chunk: Chunk) {
        debug_assert!(!matches!(chunk, Chunk::Received(_)));
        if let Chunk::Owned(buffer) = chunk {
            self.give(buffer);
        }
    }
}

/// The worker's [`TakeBack`]: its byte pool and its receive buffers (a
/// buffer still being delivered keeps a hold of its own, so releasing a
/// send's hold never recycles it early).
pub(crate) struct WorkerSinks<'a> {
    pub pool: &'a mut BytePool,
    pub bufs: &'a mut BufRing,
}

impl TakeBack for WorkerSinks<'_> {
    fn take_back(&mut self, chunk: Chunk) {
        match chunk {
            Chunk::Owned(buffer) => self.pool.give(buffer),
            Chunk::Received(range) => self.bufs.let_go(range.bid),
            Chunk::Shared(_) | Chunk::Static(_) | Chunk::Inline(_) => {}
        }
    }
}

/// Up to [`INLINE_CAPACITY`] bytes stored by value.
#[derive(Clone, Copy)]
pub struct InlineBytes {
    len: u8,
    bytes: [u8; INLINE_CAPACITY],
}

impl InlineBytes {
    fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl Chunk {
    /// An inline chunk holding a copy of `bytes`; `None` when longer than
    /// [`INLINE_CAPACITY`].
    pub fn inline(bytes: &[u8]) -> Option<Chunk> {
        if bytes.len() > INLINE_CAPACITY {
            return None;
        }
        let mut inline = InlineBytes {
            len: bytes.len() as u8,
            bytes: [0; INLINE_CAPACITY],
        };
        inline.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(Chunk::Inline(inline))
    }

    /// A copy of `bytes`: inline when it fits (a frame header always does),
    /// else an owned buffer.
    pub fn copied(bytes: &[u8]) -> Chunk {
        Chunk::inline(bytes).unwrap_or_else(|| Chunk::Owned(bytes.to_vec()))
    }

    /// The chunk's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(bytes) => bytes,
            Chunk::Shared(bytes) => bytes,
            Chunk::Static(bytes) => bytes,
            Chunk::Inline(inline) => inline.as_slice(),
            Chunk::Received(range) => range.as_slice(),
        }
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the chunk has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Chunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Chunk::Owned(_) => "Owned",
            Chunk::Shared(_) => "Shared",
            Chunk::Static(_) => "Static",
            Chunk::Inline(_) => "Inline",
            Chunk::Received(_) => "Received",
        };
        write!(f, "Chunk::{kind}({} bytes)", self.len())
    }
}

impl fmt::Debug for InlineBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InlineBytes({:?})", self.as_slice())
    }
}

impl From<Vec<u8>> for Chunk {
    fn from(bytes: Vec<u8>) -> Chunk {
        Chunk::Owned(bytes)
    }
}

impl From<Arc<[u8]>> for Chunk {
    fn from(bytes: Arc<[u8]>) -> Chunk {
        Chunk::Shared(bytes)
    }
}

impl From<&'static [u8]> for Chunk {
    fn from(bytes: &'static [u8]) -> Chunk {
        Chunk::Static(bytes)
    }
}

impl<const N: usize> From<&'static [u8; N]> for Chunk {
    fn from(bytes: &'static [u8; N]) -> Chunk {
        Chunk::Static(bytes)
    }
}

/// What [`SendQueue::prepare`] put in flight.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SendSpec {
    /// One contiguous range (`IORING_OP_SEND`).
    Single { ptr: *const u8, len: u32 },
    /// Several ranges (`IORING_OP_SENDMSG`).
    Vectored(*const libc::msghdr),
}

/// The send side of one connection.
///
/// The bytes to send are, in order: the chunks of `pending`, then `tail`.
/// The send in flight covers the chunks of `inflight`, then
/// `inflight_tail`. A reply built with [`append_with`](Self::append_with)
/// alone (the common case: one frame or a few per connection and turn)
/// lives in `tail` and flies as `inflight_tail`, so it never becomes a
/// [`Chunk`] nor passes through either chunk list.
pub(crate) struct SendQueue {
    /// Chunks not yet handed to the kernel.
    pending: VecDeque<Chunk>,
    /// Bytes of `pending.front()` already written.
    pending_offset: usize,
    /// The buffer [`append_with`](Self::append_with) appends to, after
    /// every pending chunk; empty (and unallocated) when there is none.
    tail: Vec<u8>,
    /// Chunks of the send in flight (untouched until it completes).
    inflight: Vec<Chunk>,
    /// The tail buffer of the send in flight, after its chunks; empty when
    /// the send carries none.
    inflight_tail: Vec<u8>,
    /// Bytes of the first range in flight written before the send in flight.
    inflight_offset: usize,
    /// Unsent bytes in `pending`, `tail`, `inflight` and `inflight_tail`.
    queued: usize,
    iovecs: [libc::iovec; MAX_IOVECS],
    msg: libc::msghdr,
}

impl SendQueue {
    pub(crate) fn new() -> Box<SendQueue> {
        Box::new(SendQueue {
            pending: VecDeque::new(),
            pending_offset: 0,
            tail: Vec::new(),
            inflight: Vec::new(),
            inflight_tail: Vec::new(),
            inflight_offset: 0,
            queued: 0,
            iovecs: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MAX_IOVECS],
            // SAFETY: msghdr is a plain C struct for which all-zero bytes are
            // valid (null pointers, zero lengths).
            msg: unsafe { std::mem::zeroed() },
        })
    }

    /// Unsent bytes.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Moves a non-empty tail to the end of `pending`: something is about
    /// to be queued after it, or it cannot fly as the tail.
    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            let tail = std::mem::take(&mut self.tail);
            self.pending.push_back(Chunk::Owned(tail));
        }
    }

    /// Appends a chunk; empty chunks are dropped.
    pub(crate) fn push(&mut self, chunk: Chunk) {
        let len = chunk.len();
        if len == 0 {
            return;
        }
        self.queued += len;
        self.seal_tail();
        self.pending.push_back(chunk);
    }

    /// Appends the bytes `build` writes (at most about `len`) to the tail
    /// buffer when it has room for `len` more, else to a new buffer from
    /// `pool`, which becomes the tail: frames queued in one loop turn then
    /// leave in one buffer, one iovec, and cost no allocation each. The
    /// tail is never a buffer in flight, nor followed by another chunk.
    /// `build` must only append. Returns the bytes appended.
    pub(crate) fn append_with(
        &mut self,
        len: usize,
        pool: &mut BytePool,
        build: impl FnOnce(&mut Vec<u8>),
    ) -> usize {
        if self.tail.is_empty() || self.tail.capacity() - self.tail.len() < len {
            let mut buffer = pool.take(len.max(COALESCE_BYTES));
            build(&mut buffer);
            let appended = buffer.len();
            if appended == 0 {
                pool.give(buffer);
                return 0;
            }
            self.seal_tail();
            self.tail = buffer;
            self.queued += appended;
            return appended;
        }
        let before = self.tail.len();
        build(&mut self.tail);
        let appended = self.tail.len().saturating_sub(before);
        self.queued += appended;
        appended
    }

    /// Heap bytes this queue holds beyond its own box (for memory gauges).
    pub(crate) fn heap_bytes(&self) -> usize {
        std::mem::size_of::<SendQueue>()
            + self.pending.capacity() * std::mem::size_of::<Chunk>()
            + self.inflight.capacity() * std::mem::size_of::<Chunk>()
    }

    /// Moves up to [`MAX_IOVECS`] ranges into flight and describes them, or
    /// returns `None` when nothing is pending. The pointers stay valid, and
    /// the memory they describe unchanged, until
    /// [`complete`](Self::complete) or [`clear`](Self::clear).
    pub(crate) fn prepare(&mut self) -> Option<SendSpec> {
        debug_assert!(
            self.inflight.is_empty() && self.inflight_tail.is_empty(),
            "one send in flight at a time"
        );
        if self.pending.is_empty() && self.tail.is_empty() {
            return None;
        }
        // Without pending chunks (the common case) no chunk list is touched.
        let mut ranges = 0;
        if !self.pending.is_empty() {
            ranges = self.pending.len().min(MAX_IOVECS);
            self.inflight.extend(self.pending.drain(..ranges));
            self.inflight_offset = std::mem::take(&mut self.pending_offset);
            for (index, chunk) in self.inflight.iter().enumerate() {
                let bytes = chunk.as_bytes();
                let skip = if index == 0 { self.inflight_offset } else { 0 };
                let rest = &bytes[skip..];
                self.iovecs[index] = libc::iovec {
                    iov_base: rest.as_ptr() as *mut libc::c_void,
                    iov_len: rest.len(),
                };
            }
        }
        if self.pending.is_empty() && !self.tail.is_empty() && ranges < MAX_IOVECS {
            self.inflight_tail = std::mem::take(&mut self.tail);
            self.iovecs[ranges] = libc::iovec {
                iov_base: self.inflight_tail.as_ptr() as *mut libc::c_void,
                iov_len: self.inflight_tail.len(),
            };
            ranges += 1;
        }
        if ranges == 1 {
            // One buffer: a plain send spares the kernel the msghdr copy.
            let iov = self.iovecs[0];
            if let Ok(len) = u32::try_from(iov.iov_len) {
                return Some(SendSpec::Single {
                    ptr: iov.iov_base as *const u8,
                    len,
                });
            }
        }
        Some(self.vectored(ranges))
    }

    /// Points the `msghdr` at the first `ranges` iovecs.
    fn vectored(&mut self, ranges: usize) -> SendSpec {
        self.msg.msg_iov = self.iovecs.as_mut_ptr();
        self.msg.msg_iovlen = ranges;
        SendSpec::Vectored(&self.msg)
    }

    /// Bytes described by the send in flight.
    fn inflight_bytes(&self) -> usize {
        let ranges = self.inflight.len() + usize::from(!self.inflight_tail.is_empty());
        self.iovecs[..ranges].iter().map(|iov| iov.iov_len).sum()
    }

    /// Accounts for a completed send of `written` bytes: hands fully written
    /// chunks and buffers to `sink` and puts the rest back at the front of
    /// `pending`. Returns whether the write was partial.
    pub(crate) fn complete(&mut self, written: usize, sink: &mut impl TakeBack) -> bool {
        let requested = self.inflight_bytes();
        let written = written.min(requested);
        self.queued -= written;
        let mut left = written + self.inflight_offset;
        let mut consumed = 0;
        for chunk in &self.inflight {
            let len = chunk.len();
            if left >= len {
                left -= len;
                consumed += 1;
            } else {
                break;
            }
        }
        // Put the unsent ranges back in order, before anything queued since
        // (which is all in `pending` and `tail`, after them): the tail's rest
        // first, so the chunks' rests go in front of it.
        if !self.inflight_tail.is_empty() {
            let tail = Chunk::Owned(std::mem::take(&mut self.inflight_tail));
            if written == requested {
                sink.take_back(tail);
            } else {
                self.pending.push_front(tail);
            }
        }
        let mut rest = self.inflight.drain(consumed..);
        for chunk in rest.by_ref().rev() {
            self.pending.push_front(chunk);
        }
        drop(rest);
        for chunk in self.inflight.drain(..) {
            sink.take_back(chunk);
        }
        self.pending_offset = if written == requested { 0 } else { left };
        self.inflight_offset = 0;
        written < requested
    }

    /// Hands every chunk and buffer to `sink` (no send may be in flight)
    /// and keeps the allocations for reuse, shrinking oversized ones.
    pub(crate) fn clear(&mut self, sink: &mut impl TakeBack) {
        for chunk in self.pending.drain(..).chain(self.inflight.drain(..)) {
            sink.take_back(chunk);
        }
        if self.tail.capacity() > 0 {
            sink.take_back(Chunk::Owned(std::mem::take(&mut self.tail)));
        }
        if self.inflight_tail.capacity() > 0 {
            sink.take_back(Chunk::Owned(std::mem::take(&mut self.inflight_tail)));
        }
        self.pending_offset = 0;
        self.inflight_offset = 0;
        self.queued = 0;
        self.msg.msg_iov = std::ptr::null_mut();
        self.msg.msg_iovlen = 0;
        if self.pending.capacity() > 4 * MAX_IOVECS {
            self.pending.shrink_to(MAX_IOVECS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ranges (address, length) `spec` describes.
    pub(super) fn spec_ranges(queue: &SendQueue, spec: SendSpec) -> Vec<(*const u8, usize)> {
        match spec {
            SendSpec::Single { ptr, len } => vec![(ptr, len as usize)],
            SendSpec::Vectored(msg) => {
                assert!(std::ptr::eq(msg, &queue.msg));
                queue.iovecs[..queue.msg.msg_iovlen]
                    .iter()
                    .map(|iov| (iov.iov_base as *const u8, iov.iov_len))
                    .collect()
            }
        }
    }

    /// The bytes `spec` describes.
    fn iov_bytes(queue: &SendQueue, spec: SendSpec) -> Vec<u8> {
        let ranges = spec_ranges(queue, spec);
        let mut out = Vec::new();
        for (ptr, len) in ranges {
            // SAFETY: the range points into a chunk in `inflight`, alive and
            // unchanged while `queue` is borrowed.
            let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
            out.extend_from_slice(bytes);
        }
        out
    }

    #[test]
    fn chunk_kinds_expose_their_bytes() {
        let shared: Arc<[u8]> = Arc::from(&b"shared"[..]);
        assert_eq!(Chunk::from(b"abc".to_vec()).as_bytes(), b"abc");
        assert_eq!(Chunk::from(shared).as_bytes(), b"shared");
        assert_eq!(Chunk::from(b"static").as_bytes(), b"static");
        assert_eq!(Chunk::inline(b"\x81\x05").unwrap().as_bytes(), b"\x81\x05");
        assert!(Chunk::inline(&[0; INLINE_CAPACITY]).is_some());
        assert!(Chunk::inline(&[0; INLINE_CAPACITY + 1]).is_none());
        assert!(matches!(Chunk::copied(b"\x81\x05"), Chunk::Inline(_)));
        let long = [7; INLINE_CAPACITY + 1];
        let copied = Chunk::copied(&long);
        assert!(matches!(copied, Chunk::Owned(_)));
        assert_eq!(copied.as_bytes(), long);
    }

    #[test]
    fn a_received_chunk_is_sent_from_its_buffer_and_released_once_written() {
        let mut bufs = BufRing::new(4, 64).unwrap();
        let mut pool = BytePool::default();
        let ptr = bufs.take(2).unwrap();
        // SAFETY: the test plays the kernel: buffer 2 (64 bytes) is lent.
        let buffer = unsafe { std::slice::from_raw_parts_mut(ptr, 64) };
        buffer[..10].copy_from_slice(b"0123456789");
        bufs.hold(2);
        let mut queue = SendQueue::new();
        queue.push(Chunk::inline(b"<").unwrap());
        queue.push(Chunk::Received(ReceivedBytes::new(2, &buffer[..10])));
        // A clone never shares the hold: it is a copy.
        let copy = queue.pending.back().unwrap().clone();
        assert!(matches!(&copy, Chunk::Owned(bytes) if bytes == b"0123456789"));
        let spec = queue.prepare().unwrap();
        assert_eq!(iov_bytes(&queue, spec), b"<0123456789");
        let mut sinks = WorkerSinks {
            pool: &mut pool,
            bufs: &mut bufs,
        };
        // Partly written: still held.
        assert!(queue.complete(5, &mut sinks));
        assert!(sinks.bufs.is_held(2));
        let spec = queue.prepare().unwrap();
        assert_eq!(iov_bytes(&queue, spec), b"456789");
        // Written: released and back in the ring.
        assert!(!queue.complete(6, &mut sinks));
        assert!(!sinks.bufs.is_held(2));
        assert_eq!(sinks.bufs.lent(), 0);
    }

    #[test]
    fn clearing_releases_holds_but_leaves_the_buffer_being_delivered_lent() {
        let mut bufs = BufRing::new(4, 64).unwrap();
        let mut pool = BytePool::default();
        let ptr = bufs.take(1).unwrap();
        // SAFETY: buffer 1 (64 bytes) is lent; nothing else uses it.
        let buffer = unsafe { std::slice::from_raw_parts(ptr, 64) };
        // The delivery's own hold, then two sends'.
        bufs.hold(1);
        let mut queue = SendQueue::new();
        for _ in 0..2 {
            bufs.hold(1);
            queue.push(Chunk::Received(ReceivedBytes::new(1, &buffer[..8])));
        }
        queue.clear(&mut WorkerSinks {
            pool: &mut pool,
            bufs: &mut bufs,
        });
        // The delivery recycles it once it is over, not the release: the
        // sends' holds are gone and the buffer is still lent.
        assert!(bufs.release(1));
        assert!(!bufs.is_held(1));
        assert_eq!(bufs.lent(), 1);
        assert!(queue.is_empty());
    }

    #[test]
    fn header_and_payload_leave_in_one_vectored_send() {
        let mut queue = SendQueue::new();
        let mut pool = BytePool::default();
        let payload: Arc<[u8]> = Arc::from(vec![7u8; 100]);
        queue.push(Chunk::inline(&[0x82, 100]).unwrap());
        queue.push(Chunk::Shared(payload));
        queue.push(Chunk::Owned(Vec::new()));
        assert_eq!(queue.queued(), 102);
        let msg = queue.prepare().unwrap();
        assert_eq!(queue.msg.msg_iovlen, 2);
        let mut expected = vec![0x82, 100];
        expected.extend_from_slice(&[7; 100]);
        assert_eq!(iov_bytes(&queue, msg), expected);
        assert!(!queue.complete(102, &mut pool));
        assert!(queue.is_empty());
        assert!(queue.prepare().is_none());
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        let mut queue = SendQueue::new();
        let mut pool = BytePool::default();
        queue.push(Chunk::from(b"hello ".to_vec()));
        queue.push(Chunk::from(b"world".to_vec()));
        queue.push(Chunk::from(b"!".to_vec()));
        let msg = queue.prepare().unwrap();
        assert_eq!(iov_bytes(&queue, msg), b"hello world!");
        // A chunk pushed while in flight goes behind the unsent rest.
        queue.push(Chunk::from(b"?".to_vec()));
        assert!(queue.complete(8, &mut pool));
        assert_eq!(queue.queued(), 5);
        let msg = queue.prepare().unwrap();
        assert_eq!(iov_bytes(&queue, msg), b"rld!?");
        assert!(queue.complete(1, &mut pool));
        let msg = queue.prepare().unwrap();
        assert_eq!(iov_bytes(&queue, msg), b"ld!?");
        assert!(!queue.complete(4, &mut pool));
        assert!(queue.is_empty());
    }

    #[test]
    fn zero_byte_completion_changes_nothing() {
        let mut queue = SendQueue::new();
        let mut pool = BytePool::default();
        queue.push(Chunk::from(b"abc".to_vec()));
        queue.prepare().unwrap();
        assert!(queue.complete(0, &mut pool));
        let msg = queue.prepare().unwrap();
        assert_eq!(iov_bytes(&queue, msg), b"abc");
    }

    #[test]
    fn long_queues_are_sent_in_batches_of_max_iovecs() {
        let mut queue = SendQueue::new();
        let mut pool = BytePool::default();
        for i in 0..(MAX_IOVECS + 10) {
            queue.push(Chunk::from(vec![i as u8; 3]));
        }
        let msg = queue.prepare().unwrap();
        assert_eq!(queue.msg.msg_iovlen, MAX_IOVECS);
        assert_eq!(iov_bytes(&queue, msg).len(), 3 * MAX_IOVECS);
        assert!(!queue.complete(3 * MAX_IOVECS, &mut pool));
        let msg = queue.prepare().unwrap();
        let rest = iov_bytes(&queue, msg);
        assert_eq!(rest.len(), 30);
        assert_eq!(rest[0], MAX_IOVECS as u8);
        // "Partial" refers to the send in flight, not the whole queue.
        assert!(!queue.complete(30, &mut pool));
        assert!(queue.is_empty());
    }

    #[test]
    fn completion_larger_than_requested_is_clamped() {
        let mut queue = SendQueue::new();
        let mut pool = BytePool::default();
        queue.push(Chunk::from(b"ab".to_vec()));
        queue.prepare().unwrap();
        assert!(!queue.complete(10, &mut pool));
        assert_eq!(queue.queued(), 0);
    }

    #[test]
    fn clear_empties_and_keeps_the_box_reusable() {
        let mut queue = SendQueue::new();
        let mut pool = BytePool::default();
        queue.push(Chunk::from(b"abc".to_vec()));
        queue.clear(&mut pool);
        assert!(queue.is_empty());
        assert!(queue.prepare().is_none());
        queue.push(Chunk::from(b"d".to_vec()));
        let msg = queue.prepare().unwrap();
        assert_eq!(iov_bytes(&queue, msg), b"d");
    }
}

#[cfg(test)]
mod pool_tests {
    use super::*;

    #[test]
    fn written_owned_buffers_return_to_the_pool() {
        let mut queue = SendQueue::new();
        let mut pool = BytePool::default();
        queue.push(Chunk::from(vec![1u8; 300]));
        queue.push(Chunk::inline(b"ab").unwrap());
        queue.push(Chunk::from(vec![2u8; 500]));
        queue.prepare().unwrap();
        // The first owned buffer and the inline chunk were written.
        assert!(queue.complete(302, &mut pool));
        assert!(pool.pooled_bytes() >= 300);
        let before = pool.pooled_bytes();
        queue.clear(&mut pool);
        assert!(pool.pooled_bytes() >= before + 500);
    }

    #[test]
    fn a_single_chunk_is_a_plain_send() {
        let mut queue = SendQueue::new();
        let mut pool = BytePool::default();
        queue.push(Chunk::from(b"hello".to_vec()));
        match queue.prepare().unwrap() {
            SendSpec::Single { len, .. } => assert_eq!(len, 5),
            SendSpec::Vectored(_) => panic!("one chunk should be a plain send"),
        }
        assert!(queue.complete(2, &mut pool));
        // The unsent rest of the chunk is again one range.
        match queue.prepare().unwrap() {
            SendSpec::Single { ptr, len } => {
                // SAFETY: the range points into the chunk in flight.
                let rest = unsafe { std::slice::from_raw_parts(ptr, len as usize) };
                assert_eq!(rest, b"llo");
            }
            SendSpec::Vectored(_) => panic!("one chunk should be a plain send"),
        }
        assert!(!queue.complete(3, &mut pool));
        assert!(queue.is_empty());
    }

    /// Chunks and buffers waiting to be sent (none in flight).
    fn queued_buffers(queue: &SendQueue) -> usize {
        queue.pending.len() + usize::from(!queue.tail.is_empty())
    }

    /// Everything `queue` would send, in order, sending it all.
    fn drain_all(queue: &mut SendQueue, pool: &mut BytePool) -> (Vec<u8>, usize) {
        let mut sent = Vec::new();
        let mut sends = 0;
        while let Some(spec) = queue.prepare() {
            let ranges = super::tests::spec_ranges(queue, spec);
            let mut written = 0;
            for (ptr, len) in ranges {
                // SAFETY: the range points into a chunk in flight, alive and
                // unchanged until `complete`.
                sent.extend_from_slice(unsafe { std::slice::from_raw_parts(ptr, len) });
                written += len;
            }
            sends += 1;
            queue.complete(written, pool);
        }
        (sent, sends)
    }

    #[test]
    fn frames_appended_in_one_turn_share_one_buffer() {
        let mut queue = SendQueue::new();
        let mut pool = BytePool::default();
        for byte in 0..16u8 {
            let appended = queue.append_with(520, &mut pool, |buffer| {
                buffer.extend_from_slice(&[byte; 520]);
            });
            assert_eq!(appended, 520);
        }
        assert_eq!(queue.queued(), 16 * 520);
        // 4 KiB buffers hold 7 frames each: three buffers, not sixteen.
        assert_eq!(queued_buffers(&queue), 3);
        let (sent, sends) = drain_all(&mut queue, &mut pool);
        let expected: Vec<u8> = (0..16u8).flat_map(|byte| [byte; 520]).collect();
        assert_eq!(sent, expected);
        assert_eq!(sends, 1);
        assert!(queue.is_empty());
        assert!(pool.pooled_bytes() >= 3 * COALESCE_BYTES);
    }

    #[test]
    fn nothing_is_appended_to_a_buffer_in_flight_or_after_another_chunk() {
        let mut queue = SendQueue::new();
        let mut pool = BytePool::default();
        queue.append_with(3, &mut pool, |buffer| buffer.extend_from_slice(b"one"));
        let in_flight = queue.prepare().unwrap();
        let SendSpec::Single { ptr, len } = in_flight else {
            panic!("one chunk should be a plain send");
        };
        // Queued while the first buffer is in flight: a new buffer.
        queue.append_with(3, &mut pool, |buffer| buffer.extend_from_slice(b"two"));
        // SAFETY: the range points into the chunk in flight.
        let flying = unsafe { std::slice::from_raw_parts(ptr, len as usize) };
        assert_eq!(flying, b"one");
        // A partial write puts the rest of "one" back in front of "two".
        assert!(queue.complete(1, &mut pool));
        // A chunk pushed by itself closes the tail: "four" gets a new buffer.
        queue.push(Chunk::from(b"three".to_vec()));
        queue.append_with(4, &mut pool, |buffer| buffer.extend_from_slice(b"four"));
        queue.append_with(4, &mut pool, |buffer| buffer.extend_from_slice(b"five"));
        assert_eq!(queued_buffers(&queue), 4);
        let (sent, _) = drain_all(&mut queue, &mut pool);
        assert_eq!(sent, b"netwothreefourfive");
    }

    #[test]
    fn the_tail_waits_when_the_chunks_before_it_fill_a_send() {
        // Exactly a send's worth of chunks before the tail, and more.
        for extra in [0u8, 6] {
            let mut queue = SendQueue::new();
            let mut pool = BytePool::default();
            let chunks = MAX_IOVECS as u8 + extra;
            for byte in 0..chunks {
                queue.push(Chunk::Owned(vec![byte; 3]));
            }
            queue.append_with(4, &mut pool, |buffer| buffer.extend_from_slice(b"tail"));
            let first = queue.prepare().unwrap();
            assert!(matches!(first, SendSpec::Vectored(_)));
            assert_eq!(queue.msg.msg_iovlen, MAX_IOVECS);
            assert!(queue.inflight_tail.is_empty());
            // Still open: appended to while the chunks fly.
            queue.append_with(4, &mut pool, |buffer| buffer.extend_from_slice(b"more"));
            assert_eq!(queue.tail, b"tailmore");
            queue.complete(3 * MAX_IOVECS, &mut pool);
            let (sent, sends) = drain_all(&mut queue, &mut pool);
            let mut expected: Vec<u8> = (MAX_IOVECS as u8..chunks)
                .flat_map(|byte| [byte; 3])
                .collect();
            expected.extend_from_slice(b"tailmore");
            assert_eq!(sent, expected);
            assert_eq!(sends, 1);
        }
    }

    #[test]
    fn a_frame_larger_than_the_room_left_starts_a_new_buffer() {
        let mut queue = SendQueue::new();
        let mut pool = BytePool::default();
        queue.append_with(100, &mut pool, |buffer| buffer.resize(100, 1));
        queue.append_with(20_000, &mut pool, |buffer| {
            buffer.extend(std::iter::repeat_n(2u8, 20_000));
        });
        assert_eq!(queued_buffers(&queue), 2);
        // An empty build queues nothing.
        assert_eq!(queue.append_with(0, &mut pool, |_| {}), 0);
        assert_eq!(queue.queued(), 20_100);
        let (sent, _) = drain_all(&mut queue, &mut pool);
        assert_eq!(sent.len(), 20_100);
        assert!(sent[..100].iter().all(|&byte| byte == 1));
        assert!(sent[100..].iter().all(|&byte| byte == 2));
    }
}

#[cfg(test)]
mod model_tests {
    use super::*;
    use proptest::prelude::*;

    /// One step of a connection's sending life.
    #[derive(Debug, Clone)]
    enum Step {
        /// Queue bytes as a chunk of the given kind (0 owned, 1 shared,
        /// 2 inline when they fit).
        Push(u8, Vec<u8>),
        /// Queue bytes through `append_with`, announcing `extra` more than
        /// it writes.
        Append(Vec<u8>, usize),
        /// Start a send if none is in flight.
        Prepare,
        /// Complete the send in flight having written `permille` of it
        /// (above 1000: more than asked, which is clamped).
        Complete(u16),
    }

    fn step() -> impl Strategy<Value = Step> {
        let bytes = prop::collection::vec(any::<u8>(), 0..300);
        prop_oneof![
            (0u8..3, bytes.clone()).prop_map(|(kind, bytes)| Step::Push(kind, bytes)),
            (bytes, 0usize..5000).prop_map(|(bytes, extra)| Step::Append(bytes, extra)),
            Just(Step::Prepare),
            (0u16..1100).prop_map(Step::Complete),
        ]
    }

    /// The ranges `spec` describes, copied.
    fn ranges(queue: &SendQueue, spec: SendSpec) -> Vec<Vec<u8>> {
        super::tests::spec_ranges(queue, spec)
            .into_iter()
            // SAFETY: each range points into a chunk or buffer in flight,
            // alive and unchanged until `complete`.
            .map(|(ptr, len)| unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec())
            .collect()
    }

    proptest! {
        /// Whatever is queued, in whatever order with sends of any size
        /// in between, the bytes written are the bytes queued, in order;
        /// the memory in flight never changes until its send completes; the
        /// unsent count is exact; and every owned buffer written goes back.
        #[test]
        fn written_bytes_are_the_queued_bytes_in_order(
            steps in prop::collection::vec(step(), 1..160),
        ) {
            let mut queue = SendQueue::new();
            let mut pool = BytePool::default();
            let mut expected = Vec::new();
            let mut written = Vec::new();
            let mut flying: Option<(SendSpec, Vec<Vec<u8>>)> = None;
            for step in steps {
                match step {
                    Step::Push(kind, bytes) => {
                        expected.extend_from_slice(&bytes);
                        let chunk = match kind {
                            0 => Chunk::Owned(bytes),
                            1 => Chunk::Shared(Arc::from(bytes)),
                            _ => Chunk::copied(&bytes),
                        };
                        queue.push(chunk);
                    }
                    Step::Append(bytes, extra) => {
                        expected.extend_from_slice(&bytes);
                        let appended = queue.append_with(bytes.len() + extra, &mut pool, |out| {
                            out.extend_from_slice(&bytes)
                        });
                        prop_assert_eq!(appended, bytes.len());
                    }
                    Step::Prepare => {
                        if flying.is_none() {
                            if let Some(spec) = queue.prepare() {
                                let copied = ranges(&queue, spec);
                                prop_assert!(copied.len() <= MAX_IOVECS);
                                prop_assert!(copied.iter().all(|range| !range.is_empty()));
                                flying = Some((spec, copied));
                            }
                        }
                    }
                    Step::Complete(permille) => {
                        if let Some((spec, copied)) = flying.take() {
                            prop_assert_eq!(&ranges(&queue, spec), &copied);
                            let requested: usize = copied.iter().map(Vec::len).sum();
                            let count = requested * usize::from(permille) / 1000;
                            let all: Vec<u8> = copied.concat();
                            written.extend_from_slice(&all[..count.min(requested)]);
                            let partial = queue.complete(count, &mut pool);
                            prop_assert_eq!(partial, count < requested);
                        }
                    }
                }
                prop_assert_eq!(queue.queued(), expected.len() - written.len());
            }
            if let Some((spec, copied)) = flying.take() {
                prop_assert_eq!(&ranges(&queue, spec), &copied);
                let requested: usize = copied.iter().map(Vec::len).sum();
                written.extend_from_slice(&copied.concat());
                prop_assert!(!queue.complete(requested, &mut pool));
            }
            // Each send of the drain writes a range at least: bounded.
            let mut sends = 0;
            while let Some(spec) = queue.prepare() {
                sends += 1;
                prop_assert!(sends <= 1000, "the queue never drains");
                let copied = ranges(&queue, spec);
                let requested: usize = copied.iter().map(Vec::len).sum();
                written.extend_from_slice(&copied.concat());
                prop_assert!(!queue.complete(requested, &mut pool));
            }
            prop_assert_eq!(&written, &expected);
            prop_assert!(queue.is_empty());
            prop_assert!(queue.pending.is_empty() && queue.tail.is_empty());
            prop_assert!(queue.inflight.is_empty() && queue.inflight_tail.is_empty());
        }
    }
}
