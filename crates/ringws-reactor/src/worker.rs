//! The per-core event loop.
//!
//! One turn:
//!
//! 1. **wait**: submit what the previous turn queued and wait for at least
//!    one completion, at most until the wheel's next expiry (the wait's
//!    timeout argument, `IORING_FEAT_EXT_ARG`, which a worker needs to
//!    start). The worker only blocks when nothing is pending and the inbox protocol
//!    ([`crate::notify`]) agrees; otherwise it submits without waiting;
//! 2. **reap** every completion and run its callbacks;
//! 3. **timers**: fire the due timers into `on_timer`;
//! 4. **inbox**: drain commands into `on_command`;
//! 5. **end of turn**: advance closes (firing `on_closed`), re-arm receives
//!    that ran out of buffers, and submit one vectored send per dirty
//!    connection.
//!
//! Stopping aborts every connection, cancels the accept and the wakeup read,
//! and keeps turning until every operation has completed (bounded by the
//! stop timeout, but at least one turn after the aborts, so that their
//! cancellations are submitted and reaped even with a zero timeout; a
//! timeout an `Instant` cannot hold means no deadline). Only then is memory
//! the kernel could write freed; after an unclean stop the reactor side is
//! leaked rather than freed under the kernel.

use std::io;
use std::mem::ManuallyDrop;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use io_uring::types::CancelBuilder;
use io_uring::{cqueue, opcode};
use ringws_timer::Wheel;
use socket2::Socket;

use crate::buf_ring::BufRing;
use crate::byte_pool::BytePool;
use crate::clock::Clock;
use crate::config::Config;
use crate::core::BUFFER_GROUP;
use crate::core::{close_fd, Core, Delivery, Listener, Settings, TimerEntry, WorkerStats};
use crate::error::WorkerError;
use crate::error::{classify_ring_error, read_disabled_sysctl, RingUnavailable, StartError};
use crate::handler::{CloseCause, ConnId, Conns, Ctx, Handler, IoOp, StateEntry, WorkerId};
use crate::inbox::{Envelope, InboxSender, InboxShared};
use crate::io::Io;
use crate::published::PublishedStats;
use crate::ring::{self, build_ring, RingMode};
use crate::send_queue::WorkerSinks;
use crate::slot::{flag, Intent, Phase};
use crate::trim::Trimmer;
use crate::user_data::{decode, encode, OpKind, UserData};

/// Resident receive-buffer pages beyond what the last period's receives
/// wrote that make a release worth its system calls and the page faults
/// that follow it (1 MiB).
const RELEASE_MIN_SPARE_PAGES: u64 = 256;
/// Receive buffers whose pages one turn gives back: 2 MiB of the default
/// 32 KiB buffers, about 0.2 ms of `madvise` when all are resident.
const RELEASE_SLICE_BUFFERS: usize = 64;

/// Most commands taken from the inbox per turn.
const INBOX_BUDGET: usize = 4096;
/// Longest single wait while stopping (to check the stop deadline).
const STOP_POLL: Duration = Duration::from_millis(10);

/// What a running worker reports at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// The worker.
    pub id: WorkerId,
    /// The ring setup flags it got.
    pub ring_mode: RingMode,
    /// The core it is pinned to, if pinning succeeded.
    pub pinned_core: Option<usize>,
    /// Its listener's address.
    pub local_addr: Option<std::net::SocketAddr>,
}

/// Everything a worker thread starts with.
pub(crate) struct WorkerSetup<C> {
    pub id: WorkerId,
    pub inbox: Arc<InboxShared<C>>,
    pub peers: Arc<[InboxSender<C>]>,
    pub listener: Option<Socket>,
    pub core_id: Option<core_affinity::CoreId>,
    pub published: Arc<PublishedStats>,
}

/// The worker thread's body: set up, report readiness, run until stopped.
pub(crate) fn worker_main<H, F>(
    setup: WorkerSetup<H::Command>,
    config: &Config,
    factory: &F,
    ready: mpsc::Sender<Result<WorkerInfo, StartError>>,
) -> Result<(), WorkerError>
where
    H: Handler,
    F: Fn(WorkerId) -> H,
{
    let id = setup.id;
    let pinned_core = setup
        .core_id
        .and_then(|core| core_affinity::set_for_current(core).then_some(core.id));
    let mut core = match build_core::<H>(setup, config) {
        Ok(core) => core,
        Err(error) => {
            let _ = ready.send(Err(error));
            return Ok(());
        }
    };
    let handler = factory(id);
    let info = WorkerInfo {
        id,
        ring_mode: core.ring_mode,
        pinned_core,
        local_addr: core.listener.as_ref().map(|listener| listener.local_addr),
    };
    core.now = Instant::now();
    let _ = ready.send(Ok(info));
    drop(ready);
    let worker = Worker {
        core: ManuallyDrop::new(core),
        handler,
        states: Vec::new(),
        completions: Vec::new(),
        inbox_backlog: false,
        timer_backlog: false,
        stop_begun: false,
        stop_deadline: None,
        stop_timeout: config.stop_timeout,
        release_cursor: None,
        trim_again: false,
        trimmer: Trimmer::new(format!("{}-trim-{}", config.thread_name, id.index())),
    };
    worker.run_to_end()
}

fn build_core<H: Handler>(
    setup: WorkerSetup<H::Command>,
    config: &Config,
) -> Result<Core<H>, StartError> {
    let id = setup.id;
    let (ring, ring_mode) = build_ring(config.ring_entries, config.ring_setup)
        .map_err(|cause| StartError::Ring { worker: id, cause })?;
    let recv_buffers = |source| StartError::RecvBuffers {
        worker: id,
        count: config.buffer_count,
        size: config.buffer_size,
        source,
    };
    let bufs = BufRing::new(config.buffer_count, config.buffer_size).map_err(recv_buffers)?;
    // SAFETY: the descriptor ring lives in `bufs`, which the core owns next
    // to the ring; the core drops the ring first (field order) and an
    // unclean stop leaks both.
    let registered = unsafe {
        ring.submitter().register_buf_ring_with_flags(
            bufs.ring_addr(),
            bufs.entries(),
            BUFFER_GROUP,
            0,
        )
    };
    registered.map_err(|error| match error.raw_os_error() {
        Some(libc::EINVAL) => StartError::BufferRing {
            worker: id,
            cause: RingUnavailable::MissingFeature(
                "provided buffer rings (IORING_REGISTER_PBUF_RING)",
            ),
        },
        Some(libc::EPERM) | Some(libc::EACCES) => StartError::BufferRing {
            worker: id,
            cause: classify_ring_error(error, read_disabled_sysctl()),
        },
        // ENOMEM and the like concern the buffers, not io_uring itself.
        _ => recv_buffers(error),
    })?;
    let listener = match setup.listener {
        Some(socket) => {
            let local_addr = socket
                .local_addr()
                .ok()
                .and_then(|addr| addr.as_socket())
                .ok_or_else(|| StartError::Config("listener has no IP address".to_owned()))?;
            Some(Listener {
                socket,
                local_addr,
                armed: false,
                cancelling: false,
                accepting: true,
                retry_pending: false,
            })
        }
        None => None,
    };
    let now = Instant::now();
    let mut core = Core {
        ring,
        bufs,
        slots: Vec::new(),
        free: Vec::new(),
        live: 0,
        worker: id,
        ring_mode,
        wheel: Wheel::new(),
        clock: Clock::new(now),
        now,
        dirty: Vec::new(),
        starved: Vec::new(),
        closing: Vec::new(),
        redeliver: Vec::new(),
        close_retry: Vec::new(),
        adopted: Vec::new(),
        connect_addrs: Default::default(),
        lingers: Default::default(),
        send_pool: Vec::new(),
        byte_pool: BytePool::default(),
        listener,
        inbox: setup.inbox,
        peers: setup.peers,
        wake_buf: Box::new(0),
        wake_armed: false,
        stopping: false,
        stats: WorkerStats::default(),
        published: setup.published,
        next_publish: now,
        published_turn: None,
        settings: Settings {
            send_high_water: config.send_high_water,
            send_low_water: config.send_low_water,
            close_linger: config.close_linger,
            max_connections: config.max_connections,
            socket_send_buffer: config.socket_send_buffer,
            buffer_release_period: config.buffer_release_period,
        },
        delivery: None,
        ring_grown_this_turn: false,
        recv_pages_written: 0,
        release_check_pending: false,
    };
    core.arm_wake().map_err(|error| StartError::Ring {
        worker: id,
        cause: classify_ring_error(error, read_disabled_sysctl()),
    })?;
    core.arm_accept();
    core.ring.submit().map_err(|error| StartError::Ring {
        worker: id,
        cause: classify_ring_error(error, read_disabled_sysctl()),
    })?;
    Ok(core)
}

/// A running worker.
struct Worker<H: Handler> {
    /// Dropped only by a clean stop (every operation completed). If a
    /// handler callback panics, unwinding leaks the core (ring, buffers, send
    /// queues) instead of freeing memory the kernel may still write to.
    core: ManuallyDrop<Core<H>>,
    handler: H,
    /// Handler state per slot, parallel to `core.slots`.
    states: Vec<StateEntry<H::Conn>>,
    completions: Vec<(u64, i32, u32)>,
    /// The inbox budget ran out: do not block on the next wait.
    inbox_backlog: bool,
    /// The timer budget ran out: do not block on the next wait.
    timer_backlog: bool,
    /// `begin_stop` ran: connections are aborting, cancels are queued.
    stop_begun: bool,
    /// When a stop gives up waiting for operations; `None` when the stop
    /// timeout reaches past what an `Instant` can hold (no deadline).
    stop_deadline: Option<Instant>,
    stop_timeout: Duration,
    /// A buffer release in progress: the buffer id its next slice starts at.
    release_cursor: Option<usize>,
    trimmer: Trimmer,
    /// The next release check trims the heap again if no receive came.
    trim_again: bool,
}

impl<H: Handler> Worker<H> {
    fn run_to_end(mut self) -> Result<(), WorkerError> {
        let outcome = self.run();
        self.core.publish_stats();
        self.core.inbox.close();
        while self.core.inbox.pop().is_some() {}
        let clean = matches!(outcome, Ok(true));
        let Worker {
            core,
            handler,
            states,
            ..
        } = self;
        drop(handler);
        drop(states);
        if clean {
            let core = ManuallyDrop::into_inner(core);
            let _ = core.ring.submitter().unregister_buf_ring(BUFFER_GROUP);
            drop(core);
        }
        // Otherwise operations may still reference the core's memory: it is
        // leaked, never freed under the kernel.
        outcome.map(drop)
    }

    /// Turns until stopped. `Ok(true)`: every operation completed.
    fn run(&mut self) -> Result<bool, WorkerError> {
        loop {
            self.wait().map_err(|source| WorkerError::Enter {
                worker: self.core.worker,
                source,
            })?;
            self.core.now = Instant::now();
            self.core.stats.turns += 1;
            self.core.ring_grown_this_turn = false;
            self.reap();
            self.fire_timers();
            self.drain_inbox();
            self.end_turn();
            if self.core.now >= self.core.next_publish {
                self.core.publish_stats();
            }
            if self.core.stopping {
                // The turn that begins the stop queues the cancels; at least
                // one more turn submits them and reaps what they complete,
                // so a stop timeout of zero still closes the connections.
                let begun_before = self.stop_begun;
                self.begin_stop();
                if self.stop_complete() {
                    return Ok(true);
                }
                if begun_before
                    && self
                        .stop_deadline
                        .is_some_and(|deadline| Instant::now() >= deadline)
                {
                    return Ok(false);
                }
            }
        }
    }

    // ----- waiting -----

    fn has_pending_work(&self) -> bool {
        let core = &self.core;
        !core.closing.is_empty()
            || !core.redeliver.is_empty()
            || !core.close_retry.is_empty()
            || !core.dirty.is_empty()
            || !core.starved.is_empty()
            || self.inbox_backlog
            || self.timer_backlog
            || self.release_cursor.is_some()
            || (!core.wake_armed && !core.stopping)
            || (core.stopping && !self.stop_begun)
    }

    fn wait(&mut self) -> io::Result<()> {
        if self.has_pending_work() || !self.core.inbox.try_sleep() {
            return ring::submit_no_wait(&self.core.ring);
        }
        // Readers of an idle worker's stats see them as they are.
        self.core.publish_stats();
        let mut timeout = self.core.wheel.next_expiry().map(|tick| {
            self.core
                .clock
                .instant_of(tick)
                .saturating_duration_since(Instant::now())
        });
        if self.core.stopping {
            timeout = Some(timeout.map_or(STOP_POLL, |t| t.min(STOP_POLL)));
        }
        let result = ring::submit_and_wait(&self.core.ring, timeout);
        self.core.inbox.woke();
        result
    }

    // ----- callbacks -----

    /// Runs `f` with the handler, a context, and the state of `lent` (split
    /// off the state vector), then adopts states created by `Io::connect`.
    fn with_ctx<R>(
        &mut self,
        lent: Option<u32>,
        f: impl FnOnce(&mut H, &mut Ctx<'_, H>, Option<&mut H::Conn>) -> R,
    ) -> R {
        let (conns, current) = Conns::split(self.core.worker, &mut self.states, lent);
        let mut ctx = Ctx {
            io: Io {
                core: &mut self.core,
            },
            conns,
        };
        let result = f(&mut self.handler, &mut ctx, current);
        if !self.core.adopted.is_empty() {
            for (index, generation, state) in self.core.adopted.drain(..) {
                store_state(&mut self.states, index, generation, state);
            }
        }
        result
    }

    fn conn_callback(
        &mut self,
        index: u32,
        f: impl FnOnce(&mut H, &mut Ctx<'_, H>, ConnId, &mut H::Conn),
    ) {
        let id = self.core.conn_id(index);
        self.with_ctx(Some(index), |handler, ctx, state| {
            if let Some(state) = state {
                f(handler, ctx, id, state);
            }
        });
    }

    // ----- completions -----

    fn reap(&mut self) {
        let mut completions = std::mem::take(&mut self.completions);
        completions.clear();
        completions.extend(
            self.core
                .ring
                .completion()
                .map(|cqe| (cqe.user_data(), cqe.result(), cqe.flags())),
        );
        for &(user_data, result, flags) in &completions {
            self.complete(user_data, result, flags);
        }
        self.completions = completions;
    }

    fn complete(&mut self, user_data: u64, result: i32, flags: u32) {
        let Some(op) = decode(user_data) else { return };
        match op.kind {
            OpKind::Accept => self.on_accept_completion(result, flags),
            OpKind::Recv => self.on_recv_completion(op, result, flags),
            OpKind::Send => self.on_send_completion(op, result),
            OpKind::Connect => self.on_connect_completion(op, result),
            OpKind::Cancel => {}
            OpKind::Wake => self.core.wake_armed = false,
        }
    }

    /// The slot a completion belongs to, if it is still that connection's.
    fn slot_of(&self, op: UserData) -> Option<u32> {
        let slot = self.core.slots.get(op.slot as usize)?;
        (slot.generation == op.generation && slot.phase != Phase::Free).then_some(op.slot)
    }

    fn on_accept_completion(&mut self, result: i32, flags: u32) {
        let more = cqueue::more(flags);
        if !more {
            if let Some(listener) = &mut self.core.listener {
                listener.armed = false;
                listener.cancelling = false;
            }
        }
        if result >= 0 {
            let accepting = self.core.listener.as_ref().is_some_and(|l| l.accepting);
            if accepting && !self.core.stopping {
                self.accepted(result);
            } else {
                // Accepted before the accept's cancel took effect.
                self.core.stats.accepted += 1;
                self.core.stats.refused += 1;
                close_fd(result);
            }
        } else if result != -libc::ECANCELED {
            self.core.stats.accept_errors += 1;
            if !more {
                // EMFILE and kin: retry after a pause instead of spinning.
                self.core.schedule_accept_retry();
            }
        }
        if !more {
            let accepting = self.core.listener.as_ref().is_some_and(|l| l.accepting);
            if accepting && !self.core.stopping {
                self.core.arm_accept();
            } else {
                self.core.listener = None;
            }
        }
    }

    fn accepted(&mut self, fd: i32) {
        // Socket options come from the listener (see `bind_listeners`).
        self.core.stats.accepted += 1;
        let Some(index) = self.core.alloc_slot(fd, Phase::Open) else {
            // The worker is full.
            close_fd(fd);
            self.core.stats.refused += 1;
            return;
        };
        let id = self.core.conn_id(index);
        let state = self.with_ctx(None, |handler, ctx, _| handler.on_accept(ctx, id));
        let Some(state) = state else {
            // Refused: nothing was submitted for the slot yet.
            self.core.stats.refused += 1;
            self.core.free_slot(index);
            return;
        };
        store_state(&mut self.states, index, id.generation(), state);
        if self.core.slots[index as usize].phase == Phase::Open {
            if let Err(error) = self.core.arm_recv(index) {
                self.core.fail(index, IoOp::Submit, &error);
            }
        }
    }

    fn return_buffer(&mut self, flags: u32) {
        if let Some(bid) = cqueue::buffer_select(flags) {
            if self.core.bufs.take(bid).is_some() {
                self.core.bufs.recycle(bid);
            }
        }
    }

    fn on_recv_completion(&mut self, op: UserData, result: i32, flags: u32) {
        let Some(index) = self.slot_of(op) else {
            self.return_buffer(flags);
            return;
        };
        let more = cqueue::more(flags);
        if !more {
            self.core.slots[index as usize].clear(flag::RECV_ARMED | flag::RECV_CANCELLING);
        }
        if result > 0 {
            self.core.stats.bytes_received += result as u64;
            self.core.note_pages_written(result as usize);
            match cqueue::buffer_select(flags) {
                Some(bid) => self.deliver(index, bid, result as usize),
                None => self
                    .core
                    .fail(index, IoOp::Recv, &io::Error::from_raw_os_error(libc::EIO)),
            }
        } else if result == 0 {
            self.return_buffer(flags);
            self.core.slots[index as usize].set(flag::PEER_EOF);
            if self.core.slots[index as usize].phase == Phase::Open {
                self.conn_callback(index, |handler, ctx, id, state| {
                    handler.on_peer_eof(ctx, id, state)
                });
            }
        } else {
            self.return_buffer(flags);
            match -result {
                libc::ENOBUFS => {
                    self.core.stats.recv_enobufs += 1;
                    // Once per turn: a burst of receives that found the
                    // ring empty together is one shortage, not one each
                    // (doubling per receive offered every buffer at once
                    // and left them all resident).
                    if !self.core.ring_grown_this_turn {
                        self.core.bufs.grow();
                        self.core.ring_grown_this_turn = true;
                    }
                }
                libc::ECANCELED => {}
                errno => {
                    let error = io::Error::from_raw_os_error(errno);
                    self.core.fail(index, IoOp::Recv, &error);
                }
            }
        }
        if !more {
            // The multishot ended: re-arm at the end of the turn, once this
            // turn's buffers are back in the ring.
            match self.core.slots[index as usize].phase {
                Phase::Closing => self.core.mark_closing(index),
                _ => self.core.mark_starved(index),
            }
        }
    }

    /// Hands `len` bytes of buffer `bid` (after any tail) to `on_data`.
    fn deliver(&mut self, index: u32, bid: u16, len: usize) {
        let Some(buffer) = self.core.bufs.take(bid) else {
            return;
        };
        let len = len.min(self.core.bufs.buffer_size() as usize);
        if self.core.slots[index as usize].phase != Phase::Open {
            // Closing: input is discarded.
            self.core.bufs.recycle(bid);
            return;
        }
        if self.core.slots[index as usize].has(flag::RECV_PAUSED) {
            // Paused: hold the bytes until resume.
            // SAFETY: the kernel lent buffer `bid` (named by this
            // completion); it holds `len` initialized bytes and is handed
            // back right after this copy.
            let fresh = unsafe { std::slice::from_raw_parts(buffer, len) };
            let core = &mut *self.core;
            let pool = &mut core.byte_pool;
            let slot = &mut core.slots[index as usize];
            slot.tail
                .get_or_insert_with(|| Box::new(pool.take(len)))
                .extend_from_slice(fresh);
            self.core.bufs.recycle(bid);
            return;
        }
        match self.core.slots[index as usize].tail.take() {
            Some(mut tail) => {
                // SAFETY: the kernel lent buffer `bid` (named by this
                // completion); it holds `len` initialized bytes and is not
                // handed back before this shared borrow ends.
                let fresh = unsafe { std::slice::from_raw_parts(buffer, len) };
                tail.extend_from_slice(fresh);
                self.core.bufs.recycle(bid);
                let data: &mut [u8] = &mut tail;
                let consumed = self.on_data(index, data);
                if consumed < tail.len() && self.core.slots[index as usize].phase == Phase::Open {
                    tail.drain(..consumed);
                    self.core.slots[index as usize].tail = Some(tail);
                } else {
                    self.core.byte_pool.give(*tail);
                }
            }
            None => {
                // Buffer `bid` goes back to the ring only after this borrow
                // ends and no queued send holds it any more.
                // SAFETY: the kernel lent `bid` with `len` initialized bytes.
                // Nothing else writes to it: sends that hold it only read
                // bytes the handler has finished with.
                let data = unsafe { std::slice::from_raw_parts_mut(buffer, len) };
                // The delivery holds the buffer like a send would: the
                // last of them to let go recycles it.
                self.core.bufs.hold(bid);
                self.core.delivery = Some(Delivery {
                    bid,
                    addr: buffer as usize,
                    len,
                });
                let consumed = self.on_data(index, data);
                self.core.delivery = None;
                if consumed < len && self.core.slots[index as usize].phase == Phase::Open {
                    let rest = &data[consumed..];
                    // A pooled buffer with room for the next receive buffer
                    // completes a straddling frame without reallocating; a
                    // fresh one is exactly `rest`, so a stalled peer cannot
                    // make a connection hold more than it sent beyond the
                    // pool's bound.
                    let next = self.core.bufs.buffer_size() as usize;
                    let mut tail = self
                        .core
                        .byte_pool
                        .take_preferring(rest.len(), rest.len() + next);
                    tail.extend_from_slice(rest);
                    self.core.slots[index as usize].tail = Some(Box::new(tail));
                }
                self.core.bufs.let_go(bid);
            }
        }
    }

    fn on_data(&mut self, index: u32, data: &mut [u8]) -> usize {
        let id = self.core.conn_id(index);
        let len = data.len();
        self.with_ctx(Some(index), |handler, ctx, state| match state {
            Some(state) => handler.on_data(ctx, id, state, data).min(len),
            None => len,
        })
    }

    fn on_send_completion(&mut self, op: UserData, result: i32) {
        let Some(index) = self.slot_of(op) else {
            return;
        };
        self.core.slots[index as usize].clear(flag::SEND_ARMED | flag::SEND_CANCELLING);
        if result >= 0 {
            self.core.stats.bytes_sent += result as u64;
            let core = &mut *self.core;
            if let Some(queue) = core.slots[index as usize].send.as_mut() {
                let mut sinks = WorkerSinks {
                    pool: &mut core.byte_pool,
                    bufs: &mut core.bufs,
                };
                if queue.complete(result as usize, &mut sinks) {
                    self.core.stats.partial_sends += 1;
                }
            }
        } else if result != -libc::ECANCELED {
            let error = io::Error::from_raw_os_error(-result);
            self.core.fail(index, IoOp::Send, &error);
        }
        let slot = &self.core.slots[index as usize];
        let queued = slot.queued_bytes();
        match slot.phase {
            Phase::Open => {
                if queued > 0 {
                    self.core.mark_dirty(index);
                } else {
                    self.core.recycle_send_queue(index);
                }
                let low_water = self.core.settings.send_low_water;
                let slot = &mut self.core.slots[index as usize];
                if slot.has(flag::ABOVE_HIGH_WATER) && queued <= low_water {
                    slot.clear(flag::ABOVE_HIGH_WATER);
                    self.conn_callback(index, |handler, ctx, id, state| {
                        handler.on_drained(ctx, id, state)
                    });
                }
            }
            Phase::Closing => {
                if queued > 0 {
                    self.core.mark_dirty(index);
                }
                self.core.mark_closing(index);
            }
            Phase::Free | Phase::Connecting => {}
        }
    }

    fn on_connect_completion(&mut self, op: UserData, result: i32) {
        let Some(index) = self.slot_of(op) else {
            return;
        };
        self.core.slots[index as usize].clear(flag::CONNECT_ARMED | flag::CONNECT_CANCELLING);
        self.core.connect_addrs.remove(&index);
        if self.core.slots[index as usize].phase == Phase::Closing {
            self.core.mark_closing(index);
            return;
        }
        if result < 0 {
            self.core.stats.connect_failed += 1;
            let cause = CloseCause::ConnectFailed { errno: -result };
            self.core.begin_close(index, Intent::Abort, cause);
            return;
        }
        self.core.stats.connected += 1;
        self.core.slots[index as usize].phase = Phase::Open;
        if let Err(error) = self.core.arm_recv(index) {
            self.core.fail(index, IoOp::Submit, &error);
            return;
        }
        if self.core.slots[index as usize].queued_bytes() > 0 {
            self.core.mark_dirty(index);
        }
        self.conn_callback(index, |handler, ctx, id, state| {
            handler.on_connected(ctx, id, state)
        });
    }

    // ----- timers and inbox -----

    fn fire_timers(&mut self) {
        let now = self.core.now_tick();
        // Timers armed while draining wait for the next turn, so a handler
        // re-arming a due timer cannot keep this loop going.
        let mut budget = self.core.wheel.len();
        self.timer_backlog = false;
        while budget > 0 {
            let Some((key, entry)) = self.core.wheel.poll(now) else {
                return;
            };
            budget -= 1;
            match entry {
                TimerEntry::User(value) => {
                    self.core.stats.timers_fired += 1;
                    self.with_ctx(None, |handler, ctx, _| handler.on_timer(ctx, key, value));
                }
                TimerEntry::Linger { slot, generation } => {
                    self.core.lingers.remove(&slot);
                    if let Some(entry) = self.core.slots.get_mut(slot as usize) {
                        if entry.generation == generation && entry.phase == Phase::Closing {
                            entry.set(flag::LINGER_EXPIRED);
                            if entry.intent == Intent::Graceful {
                                entry.cause = CloseCause::LingerExpired;
                            }
                            self.core.mark_closing(slot);
                        }
                    }
                }
                TimerEntry::AcceptRetry => {
                    if let Some(listener) = &mut self.core.listener {
                        listener.retry_pending = false;
                    }
                    self.core.arm_accept();
                }
                TimerEntry::BufferRelease => self.check_buffer_release(),
            }
        }
        self.timer_backlog = self
            .core
            .wheel
            .next_expiry()
            .is_some_and(|tick| tick <= now);
    }

    fn drain_inbox(&mut self) {
        self.inbox_backlog = false;
        for _ in 0..INBOX_BUDGET {
            match self.core.inbox.pop() {
                Some(Envelope::Command(command)) => {
                    self.core.stats.commands += 1;
                    self.with_ctx(None, |handler, ctx, _| handler.on_command(ctx, command));
                }
                Some(Envelope::Stop) => self.core.stopping = true,
                None => return,
            }
        }
        self.inbox_backlog = true;
    }

    // ----- end of turn -----

    /// Starts giving the receive buffers' pages back to the kernel when
    /// they hold more than the last period's receives wrote: after a burst
    /// has made the ring grow, a quiet worker need not keep it resident.
    /// Checks again after a period with traffic, so the check after the last
    /// of it runs.
    fn check_buffer_release(&mut self) {
        self.core.release_check_pending = false;
        let written = std::mem::take(&mut self.core.recv_pages_written);
        if std::mem::take(&mut self.trim_again) && written == 0 {
            self.trimmer.trim();
        }
        let Ok(resident) = self.core.bufs.resident_pages() else {
            return;
        };
        self.core.stats.recv_pages_resident = resident as u64;
        let spare = (resident as u64).saturating_sub(written);
        if spare >= RELEASE_MIN_SPARE_PAGES && self.ring_buffers_unwritten() {
            // The byte pool's buffers (frames assembled from several receive
            // buffers, copied replies) go too: with messages larger than a
            // receive buffer they held as much as the ring.
            self.core.byte_pool.clear();
            // The end of this turn gives back the first slice.
            self.release_cursor = Some(0);
        } else if written > 0 {
            self.core.arm_release_check();
        }
    }

    /// Whether no receive can be writing a buffer in the ring, or have
    /// written one whose completion is unread. Under DEFER_TASKRUN receives
    /// write buffers only inside this thread's `io_uring_enter` (sockets'
    /// receives never go to io-wq), and none runs until the next one; with
    /// the completion queue empty every buffer written so far has been
    /// reaped (lent, or recycled after its bytes were read). Completions
    /// the kernel kept aside when the queue was full (`IORING_SQ_CQ_OVERFLOW`)
    /// are unread too, though the queue itself looks empty.
    fn ring_buffers_unwritten(&mut self) -> bool {
        self.core.ring_mode == RingMode::DeferTaskrun
            && self.core.ring.completion().is_empty()
            && !self.core.ring.submission().cq_overflow()
    }

    /// Gives back the next slice of the ring's pages, one slice per turn so
    /// that completions arriving meanwhile wait for a slice, not the whole
    /// ring. Traffic that resumes ends the release (its buffers are needed
    /// again); the last slice hands the allocator's free pages back too.
    fn continue_buffer_release(&mut self) {
        let Some(from) = self.release_cursor.take() else {
            return;
        };
        if self.core.recv_pages_written > 0 || !self.ring_buffers_unwritten() {
            self.core.arm_release_check();
            return;
        }
        // SAFETY: checked just above: no receive writes, or has written unread, a ring buffer.
        let (released, next) = unsafe {
            self.core
                .bufs
                .release_ring_pages(from, RELEASE_SLICE_BUFFERS)
        };
        self.core.stats.recv_bytes_released += released as u64;
        self.release_cursor = next;
        if next.is_none() {
            self.trimmer.trim();
            if let Ok(resident) = self.core.bufs.resident_pages() {
                self.core.stats.recv_pages_resident = resident as u64;
            }
            // Connections that finish closing after this free their memory
            // later: trim once more a period on if the worker stays quiet.
            self.trim_again = true;
            self.core.arm_release_check();
        }
    }

    fn end_turn(&mut self) {
        self.continue_buffer_release();
        self.redeliver();
        self.process_closing();
        self.core.rearm_starved();
        self.core.flush();
        if !self.core.wake_armed && !self.core.stopping {
            // On failure the next turn does not block and tries again.
            let _ = self.core.arm_wake();
        }
    }

    /// Hands the bytes held while paused to `on_data` after a resume.
    fn redeliver(&mut self) {
        while let Some(index) = self.core.redeliver.pop() {
            let slot = &mut self.core.slots[index as usize];
            if !slot.has(flag::REDELIVER) {
                continue;
            }
            slot.clear(flag::REDELIVER);
            if slot.phase != Phase::Open || slot.has(flag::RECV_PAUSED) {
                continue;
            }
            let Some(mut tail) = slot.tail.take() else {
                continue;
            };
            let data: &mut [u8] = &mut tail;
            let consumed = self.on_data(index, data);
            if consumed < tail.len() && self.core.slots[index as usize].phase == Phase::Open {
                tail.drain(..consumed);
                self.core.slots[index as usize].tail = Some(tail);
            } else {
                self.core.byte_pool.give(*tail);
            }
        }
    }

    fn process_closing(&mut self) {
        let retry = std::mem::take(&mut self.core.close_retry);
        for index in retry {
            if self.core.slots[index as usize].phase == Phase::Closing {
                self.core.mark_closing(index);
            }
        }
        while let Some(index) = self.core.closing.pop() {
            let slot = &mut self.core.slots[index as usize];
            if !slot.has(flag::CLOSE_LISTED) {
                continue;
            }
            slot.clear(flag::CLOSE_LISTED);
            if self.core.advance_close(index) {
                self.release(index);
            }
        }
    }

    /// Releases a slot with nothing in flight and reports `on_closed`.
    fn release(&mut self, index: u32) {
        if let Some(key) = self.core.lingers.remove(&index) {
            self.core.wheel.cancel(key);
        }
        let (id, cause) = self.core.free_slot(index);
        self.core.stats.closed += 1;
        let state = self
            .states
            .get_mut(index as usize)
            .filter(|entry| entry.generation == id.generation())
            .and_then(|entry| entry.state.take());
        if let Some(state) = state {
            self.with_ctx(None, |handler, ctx, _| {
                handler.on_closed(ctx, id, state, cause)
            });
        }
    }

    // ----- stopping -----

    fn begin_stop(&mut self) {
        if self.stop_begun {
            return;
        }
        self.stop_begun = true;
        // A timeout too large for an `Instant` means no deadline.
        self.stop_deadline = Instant::now().checked_add(self.stop_timeout);
        self.core.inbox.close();
        self.core.stop_accepting();
        for index in 0..self.core.slots.len() as u32 {
            if self.core.slots[index as usize].phase != Phase::Free {
                self.core
                    .begin_close(index, Intent::Abort, CloseCause::WorkerStopped);
            }
        }
        if self.core.wake_armed {
            let target = encode(OpKind::Wake, 0, 0);
            let entry = opcode::AsyncCancel2::new(CancelBuilder::user_data(target).all())
                .build()
                .user_data(encode(OpKind::Cancel, 0, 0));
            // SAFETY: AsyncCancel references no memory.
            let _ = unsafe { self.core.push(&entry) };
        }
        // Queue the connections' cancels now (releasing those with nothing
        // in flight), so the next turn's wait submits them.
        self.process_closing();
    }

    fn stop_complete(&self) -> bool {
        self.core.live == 0 && self.core.listener.is_none() && !self.core.wake_armed
    }
}

/// Stores the handler state of a slot, growing the vector as needed.
fn store_state<C>(states: &mut Vec<StateEntry<C>>, index: u32, generation: u32, state: C) {
    let index = index as usize;
    if states.len() <= index {
        states.resize_with(index + 1, || StateEntry {
            generation: 0,
            state: None,
        });
    }
    states[index] = StateEntry {
        generation,
        state: Some(state),
    };
}
