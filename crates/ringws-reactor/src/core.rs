//! The reactor side of a worker: ring, buffer ring, slab, timer wheel and the
//! per-turn work lists. [`Io`](crate::Io) exposes a safe subset to handlers;
//! the worker loop ([`crate::worker`]) drives the rest.
//!
//! ## Connection lifecycle invariants
//!
//! * A slot is released (fd closed, generation bumped, slot freed) only when
//!   no operation of its generation is in flight (`Slot::busy()` is false),
//!   so the kernel never holds a reference to a slot's send queue or fd
//!   after the slot changes hands, and the fd is closed exactly once.
//! * Closing never happens inside an [`Io`](crate::Io) call: it records an
//!   [`Intent`] and lists the slot; the worker advances closes at the end of
//!   the turn and fires `on_closed` then.
//! * The work lists (`dirty`, `starved`, `closing`) hold slot indices
//!   deduplicated by a flag on the slot; an entry whose flag is clear (the
//!   slot was released or already handled) is skipped.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::types::Fd;
use io_uring::{opcode, squeue, IoUring};
use ringws_timer::{Tick, TimerKey, Wheel};
use socket2::{SockAddr, Socket};

use crate::buf_ring::{BufRing, PAGE};
use crate::byte_pool::BytePool;
use crate::clock::Clock;
use crate::handler::{CloseCause, ConnId, Handler, IoOp, WorkerId};
use crate::inbox::{InboxSender, InboxShared};
use crate::published::{PublishedStats, PUBLISH_PERIOD};
use crate::ring::RingMode;
use crate::send_queue::{Chunk, ReceivedBytes, SendQueue, SendSpec, WorkerSinks};
use crate::slot::{flag, Intent, Phase, Slot};
use crate::user_data::{encode, OpKind};

/// The buffer group id of the worker's provided buffer ring (one per ring).
pub(crate) const BUFFER_GROUP: u16 = 0;
/// Delay before re-arming accept after a resource error (EMFILE and kin).
const ACCEPT_RETRY: Duration = Duration::from_millis(10);
/// Most emptied send queues kept for reuse.
const SEND_POOL_MAX: usize = 256;

/// What the worker's wheel holds: handler timers and the reactor's own.
pub(crate) enum TimerEntry<T> {
    /// A handler timer.
    User(T),
    /// A graceful close's wait for the peer's FIN ran out.
    Linger { slot: u32, generation: u32 },
    /// Re-arm accept after a resource error.
    AcceptRetry,
    /// See whether the receive buffers hold pages the traffic no longer
    /// needs (`Config::buffer_release_period`).
    BufferRelease,
}

/// One worker's io_uring loop: counters (never reset) of connections,
/// bytes, operations and loop turns, and gauges of the memory its receive
/// buffers and byte pool hold. The worker reads them with
/// [`Io::stats`](crate::Io::stats); other threads read what it published
/// ([`PublishedStats`](crate::PublishedStats)), which `ringws` shows as
/// `WorkerStats::io` and `ringws serve` in `/metrics`.
///
/// The connection counters add up: every socket the listener hands the
/// worker counts in `accepted`, and either in `refused` (closed at once,
/// never opened) or as an opened connection, so `accepted - refused` is the
/// number of connections opened by accepting. Each opened connection, and
/// each connection [`Io::connect`](crate::Io::connect) started, counts in
/// `closed` once it is released; the worker holds the rest
/// ([`Io::connection_count`](crate::Io::connection_count)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Sockets the listener's accept handed to the worker, refused ones
    /// included (`accepted - refused` connections were opened).
    pub accepted: u64,
    /// Accepted sockets closed at once, without a callback after
    /// `on_accept`: the worker held
    /// [`Config::max_connections`](crate::Config::max_connections)
    /// connections, [`Handler::on_accept`](crate::Handler::on_accept)
    /// returned `None`, or the worker had stopped accepting.
    pub refused: u64,
    /// Accept completions with an error.
    pub accept_errors: u64,
    /// Outbound connections established.
    pub connected: u64,
    /// Outbound connects that failed.
    pub connect_failed: u64,
    /// Connections released (fd closed, `on_closed` reported): opened by
    /// accepting, or started by `Io::connect` (established or not). Refused
    /// sockets do not count.
    pub closed: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Multishot receives submitted (first arm and re-arms).
    pub recv_arms: u64,
    /// Receives that ended because the buffer ring was empty (`ENOBUFS`).
    pub recv_enobufs: u64,
    /// `sendmsg` operations submitted.
    pub sends: u64,
    /// Sends that wrote fewer bytes than offered.
    pub partial_sends: u64,
    /// Commands received through the inbox.
    pub commands: u64,
    /// Handler timers fired.
    pub timers_fired: u64,
    /// Loop turns.
    pub turns: u64,
    /// Buffers the worker's byte pool allocated because none of its free
    /// ones fit (send buffers built by `Io::send_with` and `Io::take_buffer`,
    /// receive tails). Flat in steady state: buffers are recycled.
    pub buffers_allocated: u64,
    /// Receive buffers offered to the kernel so far: a few at start, more
    /// each time the ring ran dry, up to the configured count.
    pub recv_buffers_offered: u64,
    /// Payloads sent from the receive buffer they arrived in
    /// (`Io::send_with_payload`), uncopied.
    pub payloads_sent_in_place: u64,
    /// Receive buffers lent to the worker now (filled by the kernel, not
    /// back in the ring): being delivered to `on_data`, or read by queued
    /// or in-flight sends. 0 when the worker is idle and its queues are
    /// empty. See [`Io::recv_buffers_in_use`](crate::Io::recv_buffers_in_use).
    pub recv_buffers_lent: u64,
    /// Resident pages of the receive buffers at the last release check
    /// (`Config::buffer_release_period`).
    pub recv_pages_resident: u64,
    /// Bytes of receive buffer pages given back to the kernel, in all.
    pub recv_bytes_released: u64,
    /// Capacity of the buffers the worker's byte pool keeps for reuse (at
    /// most 8 MiB); emptied when the receive buffers' pages go back.
    pub pooled_bytes: u64,
}

/// The worker's listener.
pub(crate) struct Listener {
    pub socket: Socket,
    pub local_addr: SocketAddr,
    /// A multishot accept is in flight.
    pub armed: bool,
    /// An AsyncCancel for it was submitted.
    pub cancelling: bool,
    /// `false` after `stop_accepting`.
    pub accepting: bool,
    /// An [`TimerEntry::AcceptRetry`] is pending.
    pub retry_pending: bool,
}

/// Settings the core consults on the hot path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub send_high_water: usize,
    pub send_low_water: usize,
    pub close_linger: Duration,
    pub max_connections: u32,
    /// `SO_SNDBUF` for accepted and connected sockets; `None` leaves the
    /// kernel's autotuning on.
    pub socket_send_buffer: Option<usize>,
    pub buffer_release_period: Option<Duration>,
}

/// The receive buffer being handed to `on_data`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delivery {
    pub bid: u16,
    /// Address and length of the bytes delivered from it.
    pub addr: usize,
    pub len: usize,
}

/// Smallest payload [`Io::send_with_payload`](crate::Io::send_with_payload)
/// sends from its receive buffer rather than copies: below this a copy into
/// the turn's shared send buffer is cheaper than a hold and an iovec of its
/// own.
pub const MIN_PAYLOAD_SENT_IN_PLACE: usize = 4096;
/// A connection with more than this queued gets copies, not holds, so a
/// peer that does not read keeps at most a few receive buffers from the
/// kernel.
const HOLD_MAX_QUEUED: usize = 64 << 10;

/// The reactor side of a worker. Field order matters for drop: the ring is
/// dropped first, before the memory its operations reference.
pub(crate) struct Core<H: Handler> {
    pub ring: IoUring,
    pub bufs: BufRing,
    pub slots: Vec<Slot>,
    pub free: Vec<u32>,
    /// Slots not free.
    pub live: usize,
    pub worker: WorkerId,
    pub ring_mode: RingMode,
    pub wheel: Wheel<TimerEntry<H::Timer>>,
    pub clock: Clock,
    /// The instant the current turn started.
    pub now: Instant,
    pub dirty: Vec<u32>,
    pub starved: Vec<u32>,
    pub closing: Vec<u32>,
    /// Resumed connections whose held bytes await delivery.
    pub redeliver: Vec<u32>,
    /// Closes whose cancel could not be submitted; retried next turn.
    pub close_retry: Vec<u32>,
    /// States of connections created by `Io::connect` during a callback,
    /// moved into the state vector when the callback returns.
    pub adopted: Vec<(u32, u32, H::Conn)>,
    /// Destination addresses of connects in flight (read by the kernel).
    pub connect_addrs: HashMap<u32, Box<SockAddr>>,
    /// Linger timers of graceful closes waiting for the peer's FIN.
    pub lingers: HashMap<u32, TimerKey>,
    /// Boxed because a queue's `msghdr` and iovecs must keep their address
    /// when the queue moves between the pool and a slot.
    #[allow(clippy::vec_box)]
    pub send_pool: Vec<Box<SendQueue>>,
    /// Recycled buffers for receive tails and owned sends.
    pub byte_pool: BytePool,
    pub listener: Option<Listener>,
    pub inbox: Arc<InboxShared<H::Command>>,
    pub peers: Arc<[InboxSender<H::Command>]>,
    /// Target of the eventfd read (read by the kernel).
    pub wake_buf: Box<u64>,
    pub wake_armed: bool,
    pub stopping: bool,
    pub stats: WorkerStats,
    /// Where other threads read `stats` (see [`crate::published`]).
    pub published: Arc<PublishedStats>,
    /// The busy worker publishes again once a turn starts after this.
    pub next_publish: Instant,
    /// The turn count at the last publish.
    pub published_turn: Option<u64>,
    pub settings: Settings,
    /// Set while a receive buffer's bytes are in `on_data`.
    pub delivery: Option<Delivery>,
    /// The buffer ring grew in this turn: the other receives that found it
    /// empty in the same turn ran dry together and do not double it again.
    pub ring_grown_this_turn: bool,
    /// Pages that receives wrote since the last release check (a receive of
    /// `n` bytes writes `n / 4096` pages, rounded up).
    pub recv_pages_written: u64,
    /// A [`TimerEntry::BufferRelease`] is pending.
    pub release_check_pending: bool,
}

/// Closes a descriptor, ignoring errors (there is nothing left to do with it).
pub(crate) fn close_fd(fd: RawFd) {
    // SAFETY: the caller owns `fd` and never uses it again.
    unsafe { libc::close(fd) };
}

/// Sets `SO_LINGER {on, 0}` so that `close` sends RST.
fn set_linger_zero(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: passes a pointer to a live local `linger` and its exact size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
}

impl<H: Handler> Core<H> {
    /// The worker's counters with the figures kept elsewhere (pool, ring)
    /// filled in.
    pub(crate) fn stats_snapshot(&self) -> WorkerStats {
        WorkerStats {
            buffers_allocated: self.byte_pool.allocated(),
            recv_buffers_offered: u64::from(self.bufs.offered()),
            recv_buffers_lent: u64::from(self.bufs.lent()),
            pooled_bytes: self.byte_pool.pooled_bytes() as u64,
            ..self.stats
        }
    }

    /// Copies the counters to where other threads read them, unless no
    /// turn has run since they were last copied.
    pub(crate) fn publish_stats(&mut self) {
        if self.published_turn == Some(self.stats.turns) {
            return;
        }
        self.published.publish(&self.stats_snapshot());
        self.published_turn = Some(self.stats.turns);
        self.next_publish = self.now + PUBLISH_PERIOD;
    }

    // ----- slab -----

    pub(crate) fn conn_id(&self, slot: u32) -> ConnId {
        ConnId::new(self.worker, slot, self.slots[slot as usize].generation)
    }

    /// The slot of a live connection of this worker.
    pub(crate) fn lookup(&self, conn: ConnId) -> Option<u32> {
        if conn.worker() != self.worker {
            return None;
        }
        let slot = self.slots.get(conn.slot() as usize)?;
        (slot.generation == conn.generation() && slot.phase != Phase::Free).then_some(conn.slot())
    }

    /// Takes a free slot for `fd`; `None` when the worker is full.
    pub(crate) fn alloc_slot(&mut self, fd: RawFd, phase: Phase) -> Option<u32> {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                if self.slots.len() >= self.settings.max_connections as usize {
                    return None;
                }
                self.slots.push(Slot::free());
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.fd = fd;
        slot.flags = 0;
        slot.phase = phase;
        slot.intent = Intent::None;
        slot.cause = CloseCause::Closed;
        self.live += 1;
        Some(index)
    }

    /// Frees a slot whose operations have all completed: closes the fd,
    /// drops its buffers and bumps the generation. Returns the id it had
    /// and the close cause.
    pub(crate) fn free_slot(&mut self, index: u32) -> (ConnId, CloseCause) {
        let id = self.conn_id(index);
        let slot = &mut self.slots[index as usize];
        debug_assert!(!slot.busy(), "released a slot with operations in flight");
        if slot.fd >= 0 {
            close_fd(slot.fd);
            slot.fd = -1;
        }
        let cause = slot.cause;
        if let Some(tail) = slot.tail.take() {
            self.byte_pool.give(*tail);
        }
        let queue = slot.send.take();
        slot.generation = slot.generation.wrapping_add(1);
        slot.phase = Phase::Free;
        slot.flags = 0;
        slot.intent = Intent::None;
        if let Some(queue) = queue {
            self.retire_send_queue(queue);
        }
        self.connect_addrs.remove(&index);
        self.free.push(index);
        self.live -= 1;
        (id, cause)
    }

    // ----- submission -----

    /// Pushes one entry, submitting to make room when the queue is full.
    ///
    /// That submission is never refused for a full completion queue, so a
    /// burst of completions cannot fail a connection here: since Linux 5.13
    /// (kernel commit "io_uring: don't fail submit with overflow backlog")
    /// the kernel takes submissions while completions wait in its overflow
    /// list (`IORING_FEAT_NODROP`), and `io_uring_enter` returns how many
    /// entries it took whenever it took any, which it does from a full
    /// queue (an entry that fails is taken too and completes with its
    /// error). `EBUSY` for an overflow it cannot flush comes only from a
    /// wait for completions, which `submit` does not ask for and the
    /// worker's wait tolerates (`ring::tolerate`); a worker needs Linux 5.19
    /// anyway (provided buffer rings). What is left is a real failure: no
    /// memory for the request (`EAGAIN`) or an unusable ring. As each
    /// submit frees a place, the second push succeeds; the bound only
    /// guards against a kernel that breaks that.
    ///
    /// # Safety
    ///
    /// Every buffer, iovec, `msghdr`, address or timespec the entry points to
    /// must stay valid and unmoved until the operation's completion has been
    /// reaped.
    pub(crate) unsafe fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        for _ in 0..3 {
            // SAFETY: the caller guarantees the entry's memory outlives the
            // operation.
            let pushed = unsafe { self.ring.submission().push(entry) };
            if pushed.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
        Err(io::Error::from_raw_os_error(libc::EBUSY))
    }

    fn push_cancel(&mut self, target: u64, slot: u32, generation: u32) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(target).build().user_data(encode(
            OpKind::Cancel,
            slot,
            generation,
        ));
        // SAFETY: AsyncCancel references no memory.
        unsafe { self.push(&entry) }
    }

    /// Arms the eventfd read that wakes a sleeping worker.
    pub(crate) fn arm_wake(&mut self) -> io::Result<()> {
        let buf: *mut u64 = &mut *self.wake_buf;
        let entry = opcode::Read::new(Fd(self.inbox.eventfd()), buf.cast(), 8)
            .build()
            .user_data(encode(OpKind::Wake, 0, 0));
        // SAFETY: `wake_buf` is a Box owned by the core, never replaced, and
        // the core outlives every wake read (the worker waits for it or leaks
        // the core on an unclean stop).
        unsafe { self.push(&entry) }?;
        self.wake_armed = true;
        Ok(())
    }

    /// Arms the multishot accept, or schedules a retry when that fails.
    pub(crate) fn arm_accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        if listener.armed || !listener.accepting || listener.retry_pending {
            return;
        }
        let entry = opcode::AcceptMulti::new(Fd(listener.socket.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(encode(OpKind::Accept, 0, 0));
        // SAFETY: multishot accept without an address buffer references no memory.
        let pushed = unsafe { self.push(&entry) };
        if pushed.is_ok() {
            if let Some(listener) = &mut self.listener {
                listener.armed = true;
            }
        } else {
            self.schedule_accept_retry();
        }
    }

    pub(crate) fn schedule_accept_retry(&mut self) {
        let deadline = self.clock.deadline_after(Instant::now(), ACCEPT_RETRY);
        if let Some(listener) = &mut self.listener {
            if !listener.retry_pending {
                listener.retry_pending = true;
                self.wheel.insert(deadline, TimerEntry::AcceptRetry);
            }
        }
    }

    /// Stops accepting: cancels the accept; the listener closes when it is done.
    pub(crate) fn stop_accepting(&mut self) {
        let Some(listener) = &mut self.listener else {
            return;
        };
        listener.accepting = false;
        if listener.armed {
            if !listener.cancelling {
                let target = encode(OpKind::Accept, 0, 0);
                if self.push_cancel(target, 0, 0).is_ok() {
                    if let Some(listener) = &mut self.listener {
                        listener.cancelling = true;
                    }
                }
            }
        } else {
            self.listener = None;
        }
    }

    /// Arms the multishot recv of a slot.
    pub(crate) fn arm_recv(&mut self, index: u32) -> io::Result<()> {
        let slot = &self.slots[index as usize];
        let entry = opcode::RecvMulti::new(Fd(slot.fd), BUFFER_GROUP)
            .build()
            .user_data(encode(OpKind::Recv, index, slot.generation));
        // SAFETY: a multishot recv with buffer selection references only the
        // registered buffer ring, which lives as long as the ring.
        unsafe { self.push(&entry) }?;
        self.slots[index as usize].set(flag::RECV_ARMED);
        self.stats.recv_arms += 1;
        Ok(())
    }

    /// Cancels every operation of the slot not yet being cancelled.
    fn cancel_ops(&mut self, index: u32) {
        let (flags, generation) = {
            let slot = &self.slots[index as usize];
            (slot.flags, slot.generation)
        };
        let ops = [
            (flag::RECV_ARMED, flag::RECV_CANCELLING, OpKind::Recv),
            (flag::SEND_ARMED, flag::SEND_CANCELLING, OpKind::Send),
            (
                flag::CONNECT_ARMED,
                flag::CONNECT_CANCELLING,
                OpKind::Connect,
            ),
        ];
        for (armed, cancelling, kind) in ops {
            if flags & armed != 0 && flags & cancelling == 0 {
                if self
                    .push_cancel(encode(kind, index, generation), index, generation)
                    .is_ok()
                {
                    self.slots[index as usize].set(cancelling);
                } else {
                    self.close_retry.push(index);
                }
            }
        }
    }

    // ----- work lists -----

    pub(crate) fn mark_dirty(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        if !slot.has(flag::DIRTY) {
            slot.set(flag::DIRTY);
            self.dirty.push(index);
        }
    }

    pub(crate) fn mark_starved(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        if !slot.has(flag::STARVED) {
            slot.set(flag::STARVED);
            self.starved.push(index);
        }
    }

    pub(crate) fn mark_redeliver(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        if !slot.has(flag::REDELIVER) {
            slot.set(flag::REDELIVER);
            self.redeliver.push(index);
        }
    }

    pub(crate) fn mark_closing(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        if !slot.has(flag::CLOSE_LISTED) {
            slot.set(flag::CLOSE_LISTED);
            self.closing.push(index);
        }
    }

    /// Whether the slot should have a recv armed.
    pub(crate) fn wants_recv(&self, index: u32) -> bool {
        let slot = &self.slots[index as usize];
        if slot.has(flag::PEER_EOF) || slot.fd < 0 {
            return false;
        }
        match slot.phase {
            Phase::Open => !slot.has(flag::RECV_PAUSED),
            // A closing connection keeps reading (and discarding) while it
            // flushes, and a graceful close until the peer's FIN.
            Phase::Closing => match slot.intent {
                Intent::Graceful => !slot.has(flag::LINGER_EXPIRED),
                Intent::AfterFlush => slot.sending(),
                Intent::None | Intent::Abort | Intent::Reset => false,
            },
            Phase::Free | Phase::Connecting => false,
        }
    }

    /// Re-arms the receives that ended (buffer ring empty, or multishot
    /// terminated). Runs after the turn's buffers went back to the ring.
    pub(crate) fn rearm_starved(&mut self) {
        let mut starved = std::mem::take(&mut self.starved);
        for index in starved.drain(..) {
            let slot = &mut self.slots[index as usize];
            if !slot.has(flag::STARVED) {
                continue;
            }
            slot.clear(flag::STARVED);
            if slot.has(flag::RECV_ARMED) || !self.wants_recv(index) {
                continue;
            }
            if let Err(error) = self.arm_recv(index) {
                self.fail(index, IoOp::Submit, &error);
            }
        }
        self.starved = starved;
    }

    /// Submits one sendmsg for every dirty connection with bytes queued and
    /// no send in flight.
    pub(crate) fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for index in dirty.drain(..) {
            let slot = &mut self.slots[index as usize];
            if !slot.has(flag::DIRTY) {
                continue;
            }
            slot.clear(flag::DIRTY);
            let may_send = match slot.phase {
                Phase::Open => true,
                Phase::Closing => matches!(slot.intent, Intent::Graceful | Intent::AfterFlush),
                Phase::Free | Phase::Connecting => false,
            };
            if !may_send || slot.has(flag::SEND_ARMED) || slot.fd < 0 {
                continue;
            }
            let fd = slot.fd;
            let generation = slot.generation;
            let Some(queue) = slot.send.as_mut() else {
                continue;
            };
            let Some(spec) = queue.prepare() else {
                continue;
            };
            let entry = match spec {
                SendSpec::Single { ptr, len } => opcode::Send::new(Fd(fd), ptr, len)
                    .flags(libc::MSG_NOSIGNAL)
                    .build(),
                SendSpec::Vectored(msg) => opcode::SendMsg::new(Fd(fd), msg)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build(),
            }
            .user_data(encode(OpKind::Send, index, generation));
            // The range, or `msg` and its iovecs, live in the slot's boxed
            // send queue and point into chunks held in its `inflight` list.
            // SAFETY: neither moves until the send completes (SEND_ARMED), and
            // a slot is never released while SEND_ARMED.
            match unsafe { self.push(&entry) } {
                Ok(()) => {
                    self.slots[index as usize].set(flag::SEND_ARMED);
                    self.stats.sends += 1;
                }
                Err(error) => {
                    if let Some(queue) = self.slots[index as usize].send.as_mut() {
                        queue.complete(
                            0,
                            &mut WorkerSinks {
                                pool: &mut self.byte_pool,
                                bufs: &mut self.bufs,
                            },
                        );
                    }
                    self.fail(index, IoOp::Submit, &error);
                }
            }
        }
        self.dirty = dirty;
    }

    // ----- sending -----

    /// Queues `chunk` on a live connection.
    pub(crate) fn queue_send(
        &mut self,
        conn: ConnId,
        chunk: Chunk,
    ) -> Result<usize, crate::SendError> {
        self.queue_with(conn, |queue, _| queue.push(chunk))
    }

    /// Like [`queue_send`](Self::queue_send) for bytes `build` appends,
    /// coalesced with the frames queued before them in this turn
    /// ([`SendQueue::append_with`]).
    pub(crate) fn queue_send_with(
        &mut self,
        conn: ConnId,
        len: usize,
        build: impl FnOnce(&mut Vec<u8>),
    ) -> Result<usize, crate::SendError> {
        self.queue_with(conn, |queue, pool| {
            queue.append_with(len, pool, build);
        })
    }

    /// Queues `head` then `payload`: `payload` straight from the receive
    /// buffer being delivered when it lies there and [`holdable`] allows,
    /// else both copied like [`queue_send_with`](Self::queue_send_with).
    ///
    /// [`holdable`]: Self::holdable
    pub(crate) fn queue_send_with_payload(
        &mut self,
        conn: ConnId,
        head: &[u8],
        payload: &[u8],
    ) -> Result<usize, crate::SendError> {
        if let (Some(bid), Some(head)) = (self.holdable(conn, payload), Chunk::inline(head)) {
            let received = Chunk::Received(ReceivedBytes::new(bid, payload));
            let queued = self.queue_with(conn, |queue, _| {
                queue.push(head);
                queue.push(received);
            })?;
            // The chunk is queued (`queue_with` runs `add` only on success).
            self.bufs.hold(bid);
            self.stats.payloads_sent_in_place += 1;
            return Ok(queued);
        }
        self.queue_send_with(conn, head.len() + payload.len(), |bytes| {
            bytes.extend_from_slice(head);
            bytes.extend_from_slice(payload);
        })
    }

    /// The receive buffer `payload` may be sent from: the one being
    /// delivered, when `payload` lies inside it, is large enough to be worth
    /// a hold, `conn` has little queued, and a quarter of the buffers at
    /// most are held, the one being delivered included (the rest stay free
    /// for receiving).
    fn holdable(&self, conn: ConnId, payload: &[u8]) -> Option<u16> {
        let delivery = self.delivery?;
        let start = payload.as_ptr() as usize;
        let inside = start >= delivery.addr
            && start.checked_add(payload.len())? <= delivery.addr + delivery.len;
        if !inside || payload.len() < MIN_PAYLOAD_SENT_IN_PLACE {
            return None;
        }
        if self.bufs.held() >= u32::from(self.bufs.entries()) / 4
            || !self.bufs.can_hold(delivery.bid)
        {
            return None;
        }
        let index = self.lookup(conn)?;
        if self.slots[index as usize].queued_bytes() > HOLD_MAX_QUEUED {
            return None;
        }
        Some(delivery.bid)
    }

    /// Runs `add` on `conn`'s send queue (taking one from the pool when it
    /// has none), then marks the connection for sending.
    fn queue_with(
        &mut self,
        conn: ConnId,
        add: impl FnOnce(&mut SendQueue, &mut BytePool),
    ) -> Result<usize, crate::SendError> {
        let index = match self.lookup(conn) {
            Some(index) => index,
            None => return Err(crate::SendError::UnknownConnection),
        };
        if self.slots[index as usize].phase == Phase::Closing {
            return Err(crate::SendError::Closing);
        }
        let high_water = self.settings.send_high_water;
        let pooled = &mut self.send_pool;
        let slot = &mut self.slots[index as usize];
        let queue = slot
            .send
            .get_or_insert_with(|| pooled.pop().unwrap_or_else(SendQueue::new));
        add(queue, &mut self.byte_pool);
        let queued = queue.queued();
        if queued > high_water {
            slot.set(flag::ABOVE_HIGH_WATER);
        }
        if queued > 0 && slot.phase == Phase::Open {
            self.mark_dirty(index);
        }
        Ok(queued)
    }

    /// Returns an emptied send queue to the pool.
    pub(crate) fn recycle_send_queue(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        if slot.has(flag::SEND_ARMED) {
            return;
        }
        if let Some(queue) = &slot.send {
            if !queue.is_empty() {
                return;
            }
        }
        if let Some(queue) = slot.send.take() {
            self.retire_send_queue(queue);
        }
    }

    /// Empties a queue taken from its slot (its chunks taken back) and keeps
    /// it for reuse while the pool has room.
    fn retire_send_queue(&mut self, mut queue: Box<SendQueue>) {
        queue.clear(&mut WorkerSinks {
            pool: &mut self.byte_pool,
            bufs: &mut self.bufs,
        });
        if self.send_pool.len() < SEND_POOL_MAX {
            self.send_pool.push(queue);
        }
    }

    // ----- closing -----

    /// Requests a close; a stronger intent replaces a weaker one.
    pub(crate) fn begin_close(&mut self, index: u32, intent: Intent, cause: CloseCause) {
        let slot = &mut self.slots[index as usize];
        if slot.phase == Phase::Free {
            return;
        }
        // A connection that is not established has nothing to flush.
        let intent = if slot.phase == Phase::Connecting || slot.has(flag::CONNECT_ARMED) {
            intent.max(Intent::Abort)
        } else {
            intent
        };
        if intent <= slot.intent {
            return;
        }
        slot.intent = intent;
        slot.cause = cause;
        slot.phase = Phase::Closing;
        self.mark_closing(index);
    }

    /// A socket operation failed: abort the connection with that cause.
    pub(crate) fn fail(&mut self, index: u32, op: IoOp, error: &io::Error) {
        let errno = error.raw_os_error().unwrap_or(libc::EIO);
        self.begin_close(index, Intent::Abort, CloseCause::Error { op, errno });
    }

    /// Moves a closing connection forward. Returns `true` when it is ready
    /// to be released (nothing in flight, nothing left to do).
    pub(crate) fn advance_close(&mut self, index: u32) -> bool {
        let slot = &mut self.slots[index as usize];
        if slot.phase != Phase::Closing {
            return false;
        }
        match slot.intent {
            Intent::None => return false,
            Intent::Reset | Intent::Abort => {
                if slot.intent == Intent::Reset && !slot.has(flag::RESET_ARMED) && slot.fd >= 0 {
                    set_linger_zero(slot.fd);
                    slot.set(flag::RESET_ARMED);
                }
                self.cancel_ops(index);
            }
            Intent::Graceful | Intent::AfterFlush => {
                // Keep reading (and discarding) while flushing, so a peer
                // blocked writing to us cannot stall our flush, and after
                // the FIN of a graceful close to see the peer's FIN.
                if self.wants_recv(index) && !self.slots[index as usize].has(flag::RECV_ARMED) {
                    if let Err(error) = self.arm_recv(index) {
                        self.fail(index, IoOp::Submit, &error);
                        return false;
                    }
                }
                let slot = &mut self.slots[index as usize];
                if slot.sending() {
                    // The send completion lists the slot again.
                    if !slot.has(flag::SEND_ARMED) {
                        self.mark_dirty(index);
                    }
                    return false;
                }
                if slot.intent == Intent::Graceful && !slot.has(flag::WRITE_SHUT) && slot.fd >= 0 {
                    // SAFETY: shutdown on a socket this slot owns.
                    unsafe { libc::shutdown(slot.fd, libc::SHUT_WR) };
                    slot.set(flag::WRITE_SHUT);
                    if !slot.has(flag::PEER_EOF) {
                        let generation = slot.generation;
                        let deadline = self
                            .clock
                            .deadline_after(Instant::now(), self.settings.close_linger);
                        let linger = TimerEntry::Linger {
                            slot: index,
                            generation,
                        };
                        let key = self.wheel.insert(deadline, linger);
                        self.lingers.insert(index, key);
                    }
                }
                if self.wants_recv(index) {
                    // Wait for the FIN: the recv completion or the linger
                    // timer lists the slot again.
                    if !self.slots[index as usize].has(flag::RECV_ARMED) {
                        if let Err(error) = self.arm_recv(index) {
                            self.fail(index, IoOp::Submit, &error);
                        }
                    }
                    return false;
                }
                self.cancel_ops(index);
            }
        }
        !self.slots[index as usize].busy()
    }

    // ----- timers -----

    /// Counts the pages a receive of `len` bytes wrote into its buffer and
    /// makes sure a release check follows (nothing when releasing is off).
    pub(crate) fn note_pages_written(&mut self, len: usize) {
        if self.settings.buffer_release_period.is_none() {
            return;
        }
        self.recv_pages_written += len.div_ceil(PAGE) as u64;
        self.arm_release_check();
    }

    /// Arms the next [`TimerEntry::BufferRelease`] one period from now
    /// (nothing when releasing is off or one is pending already).
    pub(crate) fn arm_release_check(&mut self) {
        let Some(period) = self.settings.buffer_release_period else {
            return;
        };
        if self.release_check_pending {
            return;
        }
        let deadline = self.clock.deadline_after(self.now, period);
        self.wheel.insert(deadline, TimerEntry::BufferRelease);
        self.release_check_pending = true;
    }

    pub(crate) fn now_tick(&self) -> Tick {
        self.clock.tick_at(self.now)
    }
}
