//! # ringws: a multi-threaded io_uring WebSocket server for Linux
//!
//! The public API of ringws: a server builder, the [`Handler`] trait,
//! connection references ([`Conn`]) and cross-thread handles
//! ([`ConnHandle`]), broadcast, stats and graceful shutdown.
//!
//! ## Why it exists
//!
//! Latency-critical backends need a WebSocket server that gets the closing
//! handshake right and shows it: the moment the peer's Close arrives
//! ([`Handler::on_close_received`], before TCP closes), a close with a
//! validated code and reason ([`Conn::close`]), a close timeout that bounds
//! every close, keepalive that gets rid of dead peers even when their send
//! buffer is full, termination from any thread, graceful shutdown with a
//! report, and per-state gauges. ringws runs one io_uring event loop per
//! core (`ringws-reactor`) and the sans-I/O protocol (`ringws-proto`) on
//! it; this crate ties them together.
//!
//! ## What this crate must never do
//!
//! It never puts an io-uring or socket2 type in a public signature, never
//! lets input from the network panic a worker (malformed input fails the
//! connection with 1002, 1007 or 1009, or the handshake with 400, 405, 426
//! or 431), never sends a data frame after its Close, never sends 1005,
//! 1006 or 1015, never truncates a close reason, never lets a closing
//! connection outlive its close timeout, never lets a panic in a callback
//! end more than that callback's connection, and never runs a callback of a
//! connection anywhere but on the worker that owns it.
//!
//! ## Example
//!
//! ```no_run
//! use ringws::{Conn, Handler, Message, Server};
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     type ConnData = ();
//!
//!     fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
//!         let _ = match message {
//!             Message::Text(text) => conn.send_text(text),
//!             Message::Binary(bytes) => conn.send_binary(bytes),
//!         };
//!     }
//! }
//!
//! let server = Server::bind("127.0.0.1:9001".parse().unwrap())
//!     .start(|_worker| Echo)
//!     .expect("server starts");
//! println!("listening on {}", server.local_addr());
//! server.join().expect("workers run");
//! ```
//!
//! ## Threads and callbacks
//!
//! [`ServerBuilder::start`] starts N workers (default: one per core), each
//! with its own `SO_REUSEPORT` listener, so the kernel spreads connections
//! over them; a connection stays on its worker for life. The factory runs
//! once per worker to create that worker's handler, so a handler needs
//! neither `Send` nor locks. Callbacks are never re-entered: what a
//! callback asks for (sends, closes) is queued and takes effect after it
//! returns; each connection's queued frames leave in one vectored send at
//! the end of the loop turn. Other threads act through [`ConnHandle`] and
//! [`ServerControl`], whose commands travel through the owning worker's
//! lock-free inbox.
//!
//! ## Connection lifecycle
//!
//! ```text
//!  accept ──► Handshaking ──(valid upgrade, on_upgrade Ok)──► Open ── on_open
//!               │  handshake timeout: TCP closed (counted)       │
//!               │  bad request: 400/403/405/426/431, TCP closed  │
//!               ▼                                                │
//!            (no callbacks)                                      │
//!                                                                │
//!   Open ──our Close (close(), shutdown 1001, keepalive 1011,    │
//!   │       backpressure, protocol error 1002/1007/1009)──► CloseSent
//!   │                                                            │ peer's Close:
//!   │                                                            │ on_close_received
//!   │ peer's Close: on_close_received (half-closed,              ▼
//!   │ State::CloseReceived; may send, may reply) ──► Closed: server closes TCP
//!   │ then our reply (echoing the code) ────────────► (flush, FIN, wait for
//!   │                                                  the peer's FIN)
//!   │ peer's FIN without Close, reset, socket error ──► TCP closed
//!   │ terminate() ──► RST at once
//!   ▼
//!  on_closed(id, data, ClosedInfo { code, reason, sent, initiator, kind,
//!                                   close_duration })   exactly once
//! ```
//!
//! The rules, each enforced with the worker's timer wheel:
//!
//! * **Handshake timeout** ([`ServerBuilder::handshake_timeout`]): a client
//!   that has not completed its upgrade request in time is disconnected and
//!   counted ([`WorkerStats::handshake_timeouts`]).
//! * **Close timeout** ([`ServerBuilder::close_timeout`], default 5 s): armed
//!   the moment ringws sends or receives the first Close or decides to
//!   close TCP, whatever the state of the send queue. If the connection is
//!   not gone when it expires, it is aborted (RST); [`ClosedInfo::kind`] is
//!   [`CloseKind::Forced`] unless both Closes had been exchanged.
//! * **Peer's Close**: [`Handler::on_close_received`] runs first (the
//!   half-closed state); unless it replied with its own [`Conn::close`],
//!   ringws replies echoing the peer's code, then closes TCP first (RFC 6455
//!   §7.1.1): flush, FIN, then wait for the peer's FIN within the close
//!   timeout. Data after the peer's Close is discarded.
//! * **Keepalive** ([`ServerBuilder::ping_interval`], default 30 s, and
//!   [`ServerBuilder::pong_timeout`], default 10 s): a Ping with a unique
//!   8-byte payload goes out `ping_interval` after the connection opened or
//!   the last keepalive Pong arrived; only the Pong echoing that payload
//!   counts. A late Pong closes the connection with 1011 "keepalive ping
//!   timeout", and the close timeout then aborts it if the Close cannot get
//!   through. A dead peer is gone within `ping_interval + pong_timeout +
//!   close_timeout`, even when its send buffer is full.
//! * **Protocol errors**: a Close with 1002, 1007 or 1009 is sent and TCP
//!   closed; [`ClosedInfo::kind`] is [`CloseKind::Abnormal`].
//! * **Peer's FIN without Close**: [`ClosedInfo`] reports 1006,
//!   [`Initiator::Remote`], [`CloseKind::Abnormal`].
//! * **terminate()** ([`Conn::terminate`], [`ConnHandle::terminate`]):
//!   queued bytes are discarded and the socket reset; on an open
//!   connection, 1006, [`Initiator::Local`], [`CloseKind::Forced`].
//! * **Backpressure**: a send is refused once the connection has
//!   [`ServerBuilder::max_queued_bytes`] unsent; the [`Backpressure`] policy
//!   drops the message ([`SendError::Dropped`], counted), also closes the
//!   connection with a chosen code, or stops reading the connection after
//!   any message that leaves its queue at the limit, so TCP slows the peer
//!   ([`Backpressure::PauseReading`]). [`Handler::on_drain`] fires when the
//!   queue is down to half the limit (reading resumes then). An
//!   application's Ping counts as a send; Pongs, keepalive Pings and Closes
//!   are never refused.
//! * **Flow control**: [`Conn::pause_reading`] stops delivering a
//!   connection's input (TCP then slows the peer) until
//!   [`Conn::resume_reading`] or, from any thread,
//!   [`ConnHandle::resume_reading`]; starting a close resumes it, since the
//!   closing handshake needs the peer's Close.
//! * **Shutdown** ([`ServerControl::shutdown`]): stop accepting, Close 1001
//!   with the configured reason to every connection on every worker, wait
//!   for the closing handshakes until the deadline, terminate the rest, stop
//!   the workers, and return a [`ShutdownReport`]. In callbacks, where that
//!   wait would stall the worker, [`ServerControl::begin_shutdown`] starts
//!   it without waiting (`shutdown` there returns
//!   [`ShutdownError::OnWorkerThread`]).
//! * **Pings** are always answered; a peer that pings and never reads is
//!   held back: at [`ServerBuilder::max_queued_bytes`] its connection stops
//!   being read until the queue drains.
//!
//! ## Client
//!
//! The client role runs on the same workers with the same [`Handler`],
//! [`Conn`], [`ConnHandle`], close rules, keepalive, backpressure, stats and
//! shutdown: [`Client::builder`] → [`ClientBuilder::start`] → a
//! [`ClientHandle`] whose [`connect`](ClientControl::connect) (any thread
//! but a ringws worker, the client's own or a server's;
//! [`connect_queued`](ClientControl::connect_queued) anywhere) returns the
//! new connection's [`ConnId`]. `on_open` follows a
//! validated `101`; an attempt that never opens ends in
//! [`Handler::on_connect_failed`] with a [`ConnectError`] (refused, timeout,
//! HTTP status, bad accept key). Client frames are masked with keys from a
//! ChaCha20 keystream keyed from OS entropy, and after the closing handshake the client waits for the
//! server to close TCP, up to the close timeout.
//!
//! ```no_run
//! use ringws::{Client, Conn, Handler, Message};
//!
//! struct Print;
//!
//! impl Handler for Print {
//!     type ConnData = ();
//!
//!     fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
//!         let _ = conn.send_text("hello");
//!     }
//!
//!     fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
//!         println!("{message:?}");
//!         let _ = conn.close(1000, "done");
//!     }
//! }
//!
//! let client = Client::builder().start(|_worker| Print).expect("client starts");
//! client.connect("ws://127.0.0.1:9001/", ()).expect("connect");
//! ```
//!
//! ## Memory
//!
//! An idle open connection owns no receive or send buffer. Its user-space
//! footprint on x86_64 with `ConnData = ()` is 292 bytes: the reactor's
//! slot (40), the engine's session (208, growing one for one with
//! `ConnData`), one pending keepalive timer in the wheel (40) and 4 bytes in
//! the liveness table that [`ConnHandle::is_open`] reads
//! (`tests/memory.rs`). The process's resident set grows by about 360 bytes
//! per idle connection, vector slack included (`cargo run --release -p
//! ringws --example idle_memory -- 8000`). Closing state is allocated only
//! when a connection starts closing; once a Pong or Close has been sent, the
//! protocol layer keeps a small control-frame buffer (at most 256 bytes).

mod callback;
mod client;
mod config;
mod conn;
mod engine;
mod error;
mod handle;
mod handler;
mod server;
mod stats;

pub use crate::client::{
    Client, ClientBuilder, ClientControl, ClientHandle, ConnectError, FailedAddress,
    DEFAULT_CLIENT_SHUTDOWN_REASON,
};
pub use crate::config::{
    Backpressure, ConfigError, Pinning, Server, ServerBuilder, DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_QUEUED_BYTES, DEFAULT_PING_INTERVAL, DEFAULT_PONG_TIMEOUT, DEFAULT_SHUTDOWN_REASON,
    MAX_HEADER_FIELDS,
};
pub use crate::conn::Conn;
pub use crate::error::{CloseError, Gone, SendError, ServerError, ShutdownError, StartError};
pub use crate::handle::{ConnHandle, PreparedMessage};
pub use crate::handler::{
    CloseKind, ClosedInfo, Handler, HttpRequest, HttpResponse, Initiator, Message, OwnedMessage,
    Request, State,
};
pub use crate::server::{ServerControl, ServerHandle, ShutdownReport};
pub use crate::stats::{
    CloseCounts, DurationHistogram, Stats, StatusCounts, WorkerStats, CLOSE_DURATION_BOUNDS_MS,
    COUNTED_STATUSES,
};
pub use ringws_proto::close::CloseCode;
pub use ringws_proto::handshake::{BuildError, ResponseError, UrlError};
pub use ringws_reactor::{ConnId, WorkerId, WorkerStats as IoStats};
pub use ringws_reactor::{RingMode, RingSetup};

/// Sizes of the per-connection state, for memory accounting (see the
/// crate docs). Not part of the stable API.
#[doc(hidden)]
pub mod memory {
    /// Bytes the engine keeps per connection slot for `ConnData = D`: the
    /// session next to the reactor's slot generation, as the reactor stores
    /// it.
    pub fn session_bytes<D>() -> usize {
        #[allow(dead_code)]
        struct Entry<D> {
            generation: u32,
            session: Option<crate::conn::Session<D>>,
        }
        std::mem::size_of::<Entry<D>>()
    }

    /// Bytes of the liveness table per connection slot.
    pub const LIVENESS_BYTES: usize = std::mem::size_of::<std::sync::atomic::AtomicU32>();

    /// Bytes of the reactor's slot per connection (its own test keeps it at
    /// this size).
    pub const REACTOR_SLOT_BYTES: usize = 40;

    /// Bytes of one pending keepalive timer in the worker's wheel: an entry
    /// of the wheel's slab holding the reactor's timer value around the
    /// engine's. Mirrors their layout (generation, list, links, deadline,
    /// value), so it is an estimate that tracks the value's size.
    pub fn keepalive_timer_bytes() -> usize {
        #[allow(dead_code)]
        enum ReactorTimer {
            User(crate::engine::TimerValue),
            Linger { slot: u32, generation: u32 },
            AcceptRetry,
        }
        #[allow(dead_code)]
        enum WheelEntry {
            Pending {
                generation: u32,
                list: u16,
                prev: u32,
                next: u32,
                deadline: u64,
                value: ReactorTimer,
            },
            Vacant {
                generation: u32,
                next_free: u32,
            },
        }
        std::mem::size_of::<WheelEntry>()
    }
}
