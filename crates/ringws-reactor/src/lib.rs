//! # ringws-reactor: one io_uring per core
//!
//! Accept, multishot receive from provided buffer rings, batched vectored
//! sends, fd lifecycle and the cross-core inbox with its wakeup.
//!
//! ## Why it exists
//!
//! The public `ringws` crate runs its WebSocket state machines on this
//! reactor. The reactor moves bytes and knows nothing of WebSocket: it owns
//! the sockets, the rings, the timers and the threads, and calls a
//! [`Handler`] with borrowed bytes, connection ids and a context ([`Ctx`])
//! through which the handler sends, closes, arms timers and connects.
//!
//! ## What this crate must never do
//!
//! It never lets a completion for a closed connection touch the next owner of
//! its slot or fd, and never exposes an io-uring or socket2 type to the public
//! `ringws` API. It never frees memory the kernel may still write to, never
//! offers the kernel a receive buffer a queued send still reads from, never
//! closes an fd twice, never panics on what the network or the kernel
//! reports, and never blocks its loop on anything but `io_uring_enter`.
//!
//! ## Shape
//!
//! [`Reactor::start`] spawns N workers (default: one per available core),
//! each optionally pinned to a core, each owning an `IoUring`, a provided
//! buffer ring, a slab of connections, a timing wheel (1 ms ticks) and an
//! inbox. With a listener configured, each worker has its own
//! `SO_REUSEPORT` listener with a multishot accept, so the kernel spreads
//! connections over workers. A connection lives on one worker for its whole
//! life. Other threads reach it through the worker's [`InboxSender`].
//!
//! ## Module map
//!
//! * `reactor`: [`Reactor::start`], [`ReactorHandle`], listener binding, pinning.
//! * `config`: [`Config`] (builder-style), validated at start.
//! * `worker`: the event loop (wait → reap → timers → inbox → end of turn)
//!   and the callback dispatch; stop and drain.
//! * `core`: the reactor side of a worker (ring, slab, wheel, work lists);
//!   arming, flushing and the close state machine.
//! * `io`: [`Io`], the handler-facing operations.
//! * `handler`: the [`Handler`] trait, [`Ctx`], [`Conns`], [`ConnId`],
//!   [`CloseCause`]; the borrow structure is documented there.
//! * `slot`: the per-connection reactor state (40 bytes, no heap when idle).
//! * `send_queue`: [`Chunk`] and the per-connection queue with its stable
//!   iovec array and `msghdr`.
//! * `buf_ring`: the provided buffer ring (`IORING_REGISTER_PBUF_RING`)
//!   and giving its pages back in slices.
//! * `byte_pool`: the worker's recycled byte buffers.
//! * `published`: [`PublishedStats`], a worker's stats for other threads.
//! * `trim`: the idle-priority thread that trims the allocator for a worker.
//! * `inbox` and `notify`: the cross-core queue and the sleep/wake protocol
//!   (loom-checked).
//! * `ring`: ring setup with flag fallback from the [`RingSetup`] asked
//!   for to the [`RingMode`] obtained, and waiting.
//! * `user_data`: the `user_data` bit layout (op kind, slot, generation).
//! * `clock`: instants to 1 ms ticks, rounding so timers never fire early.
//! * `error`: [`StartError`] (with errno → cause-and-fix mapping),
//!   [`WorkerError`], [`SendError`], [`ConnectError`], [`InboxClosed`].
//!
//! ## Invariants (named so the code can refer to them)
//!
//! * **Generation guard**: every submission's `user_data` carries the slot's
//!   generation; a slot is released only when none of its operations is in
//!   flight, and its generation changes on release.
//! * **One send in flight** per connection; its iovecs and `msghdr` live in
//!   the connection's boxed send queue and are not touched until it completes.
//! * **Buffers are lent, not kept**: a provided buffer is handed to
//!   `on_data` and returned to the ring right after; only an unconsumed tail
//!   is copied, into a per-connection `Vec` that exists only while a tail does.
//! * **No re-entrancy**: [`Io`] records work; callbacks it implies run after
//!   the current callback returns. `on_closed` fires exactly once per
//!   connection that had a state.
//! * **No lost wakeup**: a command pushed while the worker goes to sleep is
//!   seen (see `notify`; `RUSTFLAGS="--cfg loom" cargo test -p
//!   ringws-reactor --release loom` checks it exhaustively).

mod buf_ring;
mod byte_pool;
mod clock;
mod config;
mod core;
mod error;
mod handler;
mod inbox;
mod io;
mod notify;
mod published;
mod reactor;
mod ring;
mod send_queue;
mod slot;
mod trim;
mod user_data;
mod worker;

pub use crate::config::{
    available_cores, first_unavailable_core, recv_buffer_count_valid, recv_buffer_size_valid,
    unavailable_core_message, Config, CorePinning, ListenConfig,
};
pub use crate::core::{WorkerStats, MIN_PAYLOAD_SENT_IN_PLACE};
pub use crate::error::{
    classify_ring_error, ConnectError, InboxClosed, RingUnavailable, SendError, StartError,
    WorkerError,
};
pub use crate::handler::{CloseCause, ConnId, Conns, Ctx, Handler, IoOp, WorkerId};
pub use crate::inbox::InboxSender;
pub use crate::io::{ConnectOptions, Io};
pub use crate::published::PublishedStats;
pub use crate::reactor::{Reactor, ReactorHandle};
pub use crate::ring::{RingMode, RingSetup};
pub use crate::send_queue::{Chunk, InlineBytes, ReceivedBytes, INLINE_CAPACITY};
pub use crate::worker::WorkerInfo;
/// A point in a worker's time: milliseconds since that worker started
/// ([`Io::now`]). Each worker counts from its own start, so a tick is only
/// meaningful on the worker that read it.
pub use ringws_timer::Tick;
/// In ringws-reactor: the key of a timer armed with [`Io::arm_timer`] or
/// [`Io::arm_timer_at`]. Each worker has a wheel of its own, so **a key is
/// only valid on the worker that armed it**: given to another worker's
/// [`Io::cancel_timer`], [`Io::reset_timer`] or [`Io::timer`] it names
/// nothing, or an unrelated timer of that worker. To act on a timer from
/// another thread or worker, send a command to the worker that armed it.
pub use ringws_timer::TimerKey;
