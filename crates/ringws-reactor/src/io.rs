//! [`Io`]: what a handler callback can do on its worker.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::IntoRawFd;
use std::time::{Duration, Instant};

use io_uring::opcode;
use io_uring::types::Fd;
use ringws_timer::{Tick, TimerKey};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::core::{Core, TimerEntry, WorkerStats};
use crate::error::{ConnectError, SendError};
use crate::handler::{CloseCause, ConnId, Handler, WorkerId};
use crate::inbox::InboxSender;
use crate::ring::RingMode;
use crate::send_queue::Chunk;
use crate::slot::{flag, Intent, Phase};
use crate::user_data::{encode, OpKind};

/// Options for [`Io::connect`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    source: Option<SocketAddr>,
}

impl ConnectOptions {
    /// Default options: no source address.
    pub fn new() -> ConnectOptions {
        ConnectOptions::default()
    }

    /// Binds the socket to `source` before connecting, e.g. `127.0.0.7:0` to
    /// spread many client connections over several loopback addresses. With
    /// port 0 the port is chosen at connect time (`IP_BIND_ADDRESS_NO_PORT`),
    /// so each source address gets its own 4-tuple space.
    pub fn source(mut self, source: SocketAddr) -> ConnectOptions {
        self.source = Some(source);
        self
    }
}

/// The reactor side of a worker as seen from a handler callback: send,
/// close, timers, connect, worker control. Never runs a callback itself.
pub struct Io<'a, H: Handler> {
    pub(crate) core: &'a mut Core<H>,
}

impl<H: Handler> fmt::Debug for Io<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Io")
            .field("worker", &self.core.worker)
            .field("connections", &self.core.live)
            .finish()
    }
}

impl<H: Handler> Io<'_, H> {
    /// A shorter-lived `Io` over the same worker, for a wrapper that holds
    /// an `Io` by value alongside other borrows of the same lifetime.
    pub fn reborrow(&mut self) -> Io<'_, H> {
        Io {
            core: &mut *self.core,
        }
    }

    /// This worker.
    pub fn worker(&self) -> WorkerId {
        self.core.worker
    }

    /// The tick (milliseconds since the worker started) at the start of the
    /// current loop turn.
    pub fn now(&self) -> Tick {
        self.core.now_tick()
    }

    /// The instant the current loop turn started.
    pub fn now_instant(&self) -> Instant {
        self.core.now
    }

    /// The instant at which `tick` begins.
    pub fn instant_of(&self, tick: Tick) -> Instant {
        self.core.clock.instant_of(tick)
    }

    /// Which ring setup flags this worker got.
    pub fn ring_mode(&self) -> RingMode {
        self.core.ring_mode
    }

    /// This worker's counters.
    pub fn stats(&self) -> WorkerStats {
        self.core.stats_snapshot()
    }

    /// Connections this worker holds (including closing ones).
    pub fn connection_count(&self) -> usize {
        self.core.live
    }

    /// Receive buffers of this worker's ring that the kernel has filled and
    /// that are not back in the ring yet: the one whose bytes `on_data` is
    /// being given (during that call), and those that queued or in-flight
    /// sends still read from ([`send_with_payload`](Self::send_with_payload)
    /// sends a payload from its receive buffer). Bytes kept for later (an
    /// unconsumed tail, bytes held while paused) are copies and hold no
    /// buffer. 0 when no send holds one, outside `on_data`; at most the
    /// configured count. The same figure as
    /// [`WorkerStats::recv_buffers_lent`].
    pub fn recv_buffers_in_use(&self) -> u32 {
        self.core.bufs.lent()
    }

    // ----- sending -----

    /// Queues `chunk` on `conn`. Queued chunks leave together, in order, in
    /// one vectored send at the end of the loop turn (at most one send is in
    /// flight per connection). Returns the connection's queued bytes
    /// afterwards, for the caller's backpressure policy. Bytes queued on a
    /// connection that is still connecting are sent once it is established.
    pub fn send(&mut self, conn: ConnId, chunk: impl Into<Chunk>) -> Result<usize, SendError> {
        self.core.queue_send(conn, chunk.into())
    }

    /// Queues the bytes `build` appends to the `Vec` it is given (about
    /// `len` of them; it must only append), after what is queued already.
    /// Unlike [`send`](Self::send) with a buffer of its own, consecutive
    /// calls for one connection share one pooled buffer while it has room
    /// and has not been handed to the kernel: the replies of one loop turn
    /// leave in one buffer with one system call, and copying small frames
    /// costs no allocation. Returns the connection's unsent bytes, as
    /// `send` does.
    pub fn send_with(
        &mut self,
        conn: ConnId,
        len: usize,
        build: impl FnOnce(&mut Vec<u8>),
    ) -> Result<usize, SendError> {
        self.core.queue_send_with(conn, len, build)
    }

    /// Queues `head` followed by `payload`, copied as [`send_with`](Self::send_with)
    /// copies, with one exception that saves the copy of large replies: when
    /// `payload` lies inside the receive buffer whose bytes `on_data` is
    /// being given right now (a message received in place, echoed or
    /// forwarded to any connection of this worker), is at least
    /// [`MIN_PAYLOAD_SENT_IN_PLACE`](crate::MIN_PAYLOAD_SENT_IN_PLACE), and
    /// the target has little queued, it is sent from that buffer, which is
    /// kept from the kernel until the bytes are written. `head` (a frame
    /// header) is at most [`INLINE_CAPACITY`](crate::INLINE_CAPACITY)
    /// bytes for that, or both are copied. Returns the connection's unsent
    /// bytes, as `send` does.
    pub fn send_with_payload(
        &mut self,
        conn: ConnId,
        head: &[u8],
        payload: &[u8],
    ) -> Result<usize, SendError> {
        self.core.queue_send_with_payload(conn, head, payload)
    }

    /// An empty buffer with room for `capacity` bytes, from the worker's
    /// pool when one is free. A buffer sent as [`Chunk::Owned`] returns to
    /// the pool once written, so building each outgoing frame in one of
    /// these costs no allocation in steady state.
    pub fn take_buffer(&mut self, capacity: usize) -> Vec<u8> {
        self.core.byte_pool.take(capacity)
    }

    /// Returns a buffer to the worker's pool (kept when the pool has room,
    /// freed otherwise).
    pub fn give_buffer(&mut self, buffer: Vec<u8>) {
        self.core.byte_pool.give(buffer);
    }

    /// Capacity of the free buffers this worker's pool keeps for reuse
    /// (bounded at 8 MiB).
    pub fn pooled_buffer_bytes(&self) -> usize {
        self.core.byte_pool.pooled_bytes()
    }

    /// Unsent bytes of `conn` (queued and in flight); `None` when unknown.
    pub fn queued_bytes(&self, conn: ConnId) -> Option<usize> {
        let index = self.core.lookup(conn)?;
        Some(self.core.slots[index as usize].queued_bytes())
    }

    /// Bytes of `conn` its peer has not acknowledged: the send queue's
    /// (queued and in flight) and those the kernel still holds, unsent or
    /// unacknowledged (`SIOCOUTQ`). 0 means everything sent so far reached
    /// the peer's TCP. `None` when unknown (a gone connection, or the
    /// `ioctl` failed). One system call: for close-time decisions, not for
    /// every send.
    pub fn unacknowledged_bytes(&self, conn: ConnId) -> Option<usize> {
        let index = self.core.lookup(conn)?;
        let slot = &self.core.slots[index as usize];
        let mut in_kernel: libc::c_int = 0;
        // SAFETY: `TIOCOUTQ` (`SIOCOUTQ` for sockets) writes one `c_int`
        // through the pointer, which points to a live local; `slot.fd` is the
        // live connection's socket (or fails the call, which is handled).
        let result = unsafe { libc::ioctl(slot.fd, libc::TIOCOUTQ, &mut in_kernel) };
        if result < 0 {
            return None;
        }
        Some(slot.queued_bytes() + usize::try_from(in_kernel).unwrap_or(0))
    }

    /// Heap bytes the reactor holds for `conn` (receive tail and send queue);
    /// 0 for an idle connection. `None` when unknown.
    pub fn conn_heap_bytes(&self, conn: ConnId) -> Option<usize> {
        let index = self.core.lookup(conn)?;
        Some(self.core.slots[index as usize].heap_bytes())
    }

    // ----- closing -----

    /// Graceful close: send what is queued, then FIN (`shutdown(SHUT_WR)`),
    /// keep reading (and discarding) until the peer's FIN or the close
    /// linger, then close the socket. No more bytes can be queued and no more
    /// data is delivered. `on_closed` follows with [`CloseCause::Closed`] (or
    /// [`CloseCause::LingerExpired`]). Returns `false` for an unknown
    /// connection. A connection still connecting is aborted.
    pub fn close(&mut self, conn: ConnId) -> bool {
        self.request_close(conn, Intent::Graceful, CloseCause::Closed)
    }

    /// Send what is queued, then close the socket without waiting for the
    /// peer ([`CloseCause::ClosedNow`]).
    pub fn close_now(&mut self, conn: ConnId) -> bool {
        self.request_close(conn, Intent::AfterFlush, CloseCause::ClosedNow)
    }

    /// Abort: discard the queue, cancel everything and reset the connection
    /// (`SO_LINGER {on, 0}`, then close: the peer sees RST)
    /// ([`CloseCause::Terminated`]). Overrides an earlier close.
    pub fn terminate(&mut self, conn: ConnId) -> bool {
        self.request_close(conn, Intent::Reset, CloseCause::Terminated)
    }

    fn request_close(&mut self, conn: ConnId, intent: Intent, cause: CloseCause) -> bool {
        match self.core.lookup(conn) {
            Some(index) => {
                self.core.begin_close(index, intent, cause);
                true
            }
            None => false,
        }
    }

    /// Whether `conn` is established and not closing.
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.core
            .lookup(conn)
            .is_some_and(|index| self.core.slots[index as usize].phase == Phase::Open)
    }

    /// Stops calling `on_data` for `conn` until
    /// [`resume_recv`](Self::resume_recv). The receive is cancelled, so the
    /// kernel's socket buffer fills and TCP flow control slows the peer;
    /// bytes the receive had already taken are held (copied) and delivered
    /// first on resume.
    pub fn pause_recv(&mut self, conn: ConnId) -> bool {
        let Some(index) = self.core.lookup(conn) else {
            return false;
        };
        let slot = &mut self.core.slots[index as usize];
        slot.set(flag::RECV_PAUSED);
        if slot.has(flag::RECV_ARMED) && !slot.has(flag::RECV_CANCELLING) {
            let target = encode(OpKind::Recv, index, slot.generation);
            let generation = slot.generation;
            let entry = opcode::AsyncCancel::new(target).build().user_data(encode(
                OpKind::Cancel,
                index,
                generation,
            ));
            // SAFETY: AsyncCancel references no memory.
            if unsafe { self.core.push(&entry) }.is_ok() {
                self.core.slots[index as usize].set(flag::RECV_CANCELLING);
            }
        }
        true
    }

    /// Resumes delivering data after [`pause_recv`](Self::pause_recv): held
    /// bytes reach `on_data` at the end of the current turn, then new ones.
    pub fn resume_recv(&mut self, conn: ConnId) -> bool {
        let Some(index) = self.core.lookup(conn) else {
            return false;
        };
        let slot = &mut self.core.slots[index as usize];
        if !slot.has(flag::RECV_PAUSED) {
            return true;
        }
        slot.clear(flag::RECV_PAUSED);
        if slot.tail.is_some() {
            self.core.mark_redeliver(index);
        }
        // Re-armed at the end of the turn if no receive is in flight.
        self.core.mark_starved(index);
        true
    }

    // ----- timers -----

    /// Arms a timer due `after` from now; [`Handler::on_timer`] gets `value`
    /// at or after that instant (never early, at most about one tick late
    /// when the worker is not busy). The key is only valid on this worker
    /// (see [`TimerKey`]).
    pub fn arm_timer(&mut self, after: Duration, value: H::Timer) -> TimerKey {
        let deadline = self.core.clock.deadline_after(Instant::now(), after);
        self.core.wheel.insert(deadline, TimerEntry::User(value))
    }

    /// Arms a timer due at `deadline` (a tick of this worker, see
    /// [`now`](Self::now)). The key is only valid on this worker (see
    /// [`TimerKey`]).
    pub fn arm_timer_at(&mut self, deadline: Tick, value: H::Timer) -> TimerKey {
        self.core.wheel.insert(deadline, TimerEntry::User(value))
    }

    /// Cancels a pending timer of this worker, returning its value; `None`
    /// when it already fired or was cancelled. `key` must come from this
    /// worker: another worker's key may name an unrelated timer here.
    pub fn cancel_timer(&mut self, key: TimerKey) -> Option<H::Timer> {
        if !matches!(self.core.wheel.get(key), Some(TimerEntry::User(_))) {
            return None;
        }
        match self.core.wheel.cancel(key) {
            Some(TimerEntry::User(value)) => Some(value),
            _ => None,
        }
    }

    /// Moves a pending timer of this worker to `after` from now; `false`
    /// when it already fired or was cancelled. `key` must come from this
    /// worker, as for [`cancel_timer`](Self::cancel_timer).
    pub fn reset_timer(&mut self, key: TimerKey, after: Duration) -> bool {
        if !matches!(self.core.wheel.get(key), Some(TimerEntry::User(_))) {
            return false;
        }
        let deadline = self.core.clock.deadline_after(Instant::now(), after);
        self.core.wheel.reset(key, deadline)
    }

    /// The value of a pending timer of this worker (`key` must come from
    /// this worker, as for [`cancel_timer`](Self::cancel_timer)).
    pub fn timer(&self, key: TimerKey) -> Option<&H::Timer> {
        match self.core.wheel.get(key) {
            Some(TimerEntry::User(value)) => Some(value),
            _ => None,
        }
    }

    // ----- connecting -----

    /// Opens an outbound connection to `addr` with `state` as its handler
    /// state. Returns its id at once; [`Handler::on_connected`] follows, or
    /// [`Handler::on_closed`] with [`CloseCause::ConnectFailed`]. Fails
    /// synchronously (handing `state` back) when the socket cannot be
    /// created or bound, the worker is full or stopping. The state becomes
    /// visible in [`Conns`](crate::Conns) after the current callback.
    pub fn connect(
        &mut self,
        addr: SocketAddr,
        options: &ConnectOptions,
        state: H::Conn,
    ) -> Result<ConnId, ConnectError<H::Conn>> {
        if self.core.stopping {
            let error = io::Error::other("worker is stopping");
            return Err(ConnectError { error, state });
        }
        let send_buffer = self.core.settings.socket_send_buffer;
        let socket = match connect_socket(addr, options, send_buffer) {
            Ok(socket) => socket,
            Err(error) => return Err(ConnectError { error, state }),
        };
        let fd = socket.into_raw_fd();
        let Some(index) = self.core.alloc_slot(fd, Phase::Connecting) else {
            crate::core::close_fd(fd);
            let error = io::Error::from_raw_os_error(libc::EMFILE);
            return Err(ConnectError { error, state });
        };
        let generation = self.core.slots[index as usize].generation;
        let target = Box::new(SockAddr::from(addr));
        let entry = opcode::Connect::new(Fd(fd), target.as_ptr().cast(), target.len())
            .build()
            .user_data(encode(OpKind::Connect, index, generation));
        // SAFETY: the address lives in a Box kept in `connect_addrs` until
        // the connect completes (the slot, and so the entry, is only
        // released once CONNECT_ARMED is clear).
        if let Err(error) = unsafe { self.core.push(&entry) } {
            self.core.free_slot(index);
            return Err(ConnectError { error, state });
        }
        self.core.connect_addrs.insert(index, target);
        self.core.slots[index as usize].set(flag::CONNECT_ARMED);
        self.core.adopted.push((index, generation, state));
        Ok(ConnId::new(self.core.worker, index, generation))
    }

    // ----- addresses -----

    /// The address this worker's listener is bound to.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.core
            .listener
            .as_ref()
            .map(|listener| listener.local_addr)
    }

    /// The peer address of `conn` (`getpeername`).
    pub fn peer_addr(&self, conn: ConnId) -> io::Result<SocketAddr> {
        let index = self
            .core
            .lookup(conn)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "unknown connection"))?;
        socket_addr_of(self.core.slots[index as usize].fd, true)
    }

    /// The local address of `conn` (`getsockname`).
    pub fn conn_local_addr(&self, conn: ConnId) -> io::Result<SocketAddr> {
        let index = self
            .core
            .lookup(conn)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "unknown connection"))?;
        socket_addr_of(self.core.slots[index as usize].fd, false)
    }

    // ----- worker control -----

    /// Stops accepting new connections (graceful shutdown); the listener is
    /// closed once its accept is cancelled.
    pub fn stop_accepting(&mut self) {
        self.core.stop_accepting();
    }

    /// Stops this worker: every connection is aborted (FIN, queue
    /// discarded; `on_closed` with [`CloseCause::WorkerStopped`]), in-flight
    /// operations are awaited, then the worker thread ends. For a graceful
    /// shutdown, close connections first and stop when they are gone.
    pub fn stop(&mut self) {
        self.core.stopping = true;
    }

    /// The inbox of any worker of this reactor (for cross-core messages;
    /// `None` for a worker of another reactor).
    pub fn inbox(&self, worker: WorkerId) -> Option<&InboxSender<H::Command>> {
        self.core
            .peers
            .get(worker.index())
            .filter(|peer| peer.worker() == worker)
    }

    /// The inboxes of every worker of this reactor, indexed by
    /// [`WorkerId::index`].
    pub fn inboxes(&self) -> &[InboxSender<H::Command>] {
        &self.core.peers
    }

    /// Number of workers in the reactor.
    pub fn worker_count(&self) -> usize {
        self.core.peers.len()
    }
}

/// Creates a non-blocking TCP socket for `addr`, `TCP_NODELAY`, the
/// configured `SO_SNDBUF` if any, optionally bound to a source address.
fn connect_socket(
    addr: SocketAddr,
    options: &ConnectOptions,
    send_buffer: Option<usize>,
) -> io::Result<Socket> {
    // Non-blocking from `socket` itself: no `fcntl` pair per connection,
    // which a churning client pays on every cycle.
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    socket.set_tcp_nodelay(true)?;
    if let Some(bytes) = send_buffer {
        socket.set_send_buffer_size(bytes)?;
    }
    if let Some(source) = options.source {
        if source.port() == 0 && source.is_ipv4() {
            let one: libc::c_int = 1;
            // SAFETY: passes a pointer to a live local int and its exact size
            // for a socket we own. Best effort: without it, bind picks the
            // port early, which only narrows the port space.
            unsafe {
                libc::setsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&socket),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
        }
        socket.bind(&SockAddr::from(source))?;
    }
    Ok(socket)
}

/// `getpeername`/`getsockname` of a raw fd.
fn socket_addr_of(fd: std::os::fd::RawFd, peer: bool) -> io::Result<SocketAddr> {
    // SAFETY: `fd` belongs to a live slot, so it stays open for this call.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let socket = socket2::SockRef::from(&borrowed);
    let addr = if peer {
        socket.peer_addr()?
    } else {
        socket.local_addr()?
    };
    addr.as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket"))
}
