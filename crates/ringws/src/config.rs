//! The server builder and its validated settings.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ringws_proto::close::{validate_close, CloseCode, MAX_CLOSE_REASON_LEN};

use crate::error::StartError;
use crate::handler::{Handler, HttpRequest, HttpResponse};
use crate::server::ServerHandle;
use crate::WorkerId;
use ringws_reactor::RingSetup;

/// Default largest message (and frame) accepted from a peer: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;
/// Default time a client has to complete the opening handshake: 10 s.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a closing connection gets, from the moment ringws decides to
/// close until TCP is gone, before it is aborted: 5 s.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default keepalive ping interval: 30 s.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);
/// Default time a keepalive Pong may take: 10 s.
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(10);
/// Default per-connection send queue limit: 4 MiB.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 4 << 20;
/// Default largest HTTP request head: 8 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 8 * 1024;
/// Most header fields a request head may have: more are answered with 431.
pub const MAX_HEADER_FIELDS: usize = ringws_proto::handshake::HeadLimits::DEFAULT.max_headers;
/// Default reason of the Close 1001 sent to every connection on shutdown.
pub const DEFAULT_SHUTDOWN_REASON: &str = "server shutting down";
/// Largest `socket_send_buffer`: the kernel doubles the value in an `int`.
const MAX_SOCKET_SEND_BUFFER: usize = (i32::MAX / 2) as usize;

/// How worker threads are pinned to cores.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Pinning {
    /// Pin worker `i` to the `i`-th core when there are at least as many
    /// cores as workers; otherwise do not pin.
    #[default]
    Auto,
    /// Do not pin.
    Off,
    /// Pin worker `i` to core id `cores[i % cores.len()]`.
    Cores(Vec<usize>),
}

/// What a send does when the connection already has
/// [`max_queued_bytes`](ServerBuilder::max_queued_bytes) unsent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backpressure {
    /// Drop the message: the send returns
    /// [`SendError::Dropped`](crate::SendError::Dropped) and
    /// [`WorkerStats::dropped_messages`](crate::WorkerStats::dropped_messages)
    /// counts it. The connection stays open.
    DropMessage,
    /// Drop the message and close the connection with this code (1008
    /// policy violation or 1013 try again later are the usual choices).
    Close(CloseCode),
    /// Stop reading the connection while its queue is at the limit: the
    /// kernel's receive buffer fills and TCP slows the peer, as a blocking
    /// server would. Reading resumes when the queue has drained to half the
    /// limit ([`Handler::on_drain`](crate::Handler::on_drain) fires then).
    /// The check follows each message delivered to the handler, so a
    /// handler that answers each message with one send (an echo, a
    /// request/response protocol) never meets the limit and loses nothing;
    /// a send made while the queue is at the limit (from a handle, a
    /// broadcast, or a second send in one callback) is refused as with
    /// [`DropMessage`](Self::DropMessage). Pings and Pongs are read as the
    /// messages around them are: a Pong held behind unread data arrives
    /// late, and a pong timeout can end a peer that reads nothing.
    PauseReading,
}

/// Answers a plain (non-upgrade) HTTP request; `None` answers 404.
pub(crate) type PlainHttpFn = dyn Fn(&HttpRequest<'_>) -> Option<HttpResponse> + Send + Sync;
/// Decides whether an `Origin` (or its absence) is allowed.
pub(crate) type OriginFn = dyn Fn(Option<&str>) -> bool + Send + Sync;
/// Picks one of the offered subprotocols by index.
pub(crate) type SubprotocolFn = dyn Fn(&[&str]) -> Option<usize> + Send + Sync;

/// Why a [`ServerBuilder`] setting was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `workers(0)`, or more than 65535.
    Workers(usize),
    /// `Pinning::Cores` with an empty list.
    EmptyCoreList,
    /// `Pinning::Cores` names a core outside the process's affinity mask
    /// (the pin could not hold).
    UnavailableCore(usize),
    /// `recv_buffers` with a count that is not a power of two up to 32768,
    /// or a size outside 1 byte to 1 GiB.
    RecvBuffers {
        /// The count asked for.
        count: u16,
        /// The size asked for.
        size: u32,
    },
    /// `max_frame_size(0)`.
    ZeroMaxFrameSize,
    /// `max_message_size(0)`.
    ZeroMaxMessageSize,
    /// A zero handshake timeout.
    ZeroHandshakeTimeout,
    /// A zero close timeout.
    ZeroCloseTimeout,
    /// `ping_interval(Some(0))`.
    ZeroPingInterval,
    /// A zero pong timeout while keepalive is on.
    ZeroPongTimeout,
    /// `max_queued_bytes(0)`.
    ZeroMaxQueuedBytes,
    /// `Backpressure::Close` with a code that may not be sent.
    BackpressureCode(u16),
    /// `max_header_bytes(0)`.
    ZeroMaxHeaderBytes,
    /// `max_connections_per_worker(0)` (or one the engine cannot index).
    MaxConnections(u32),
    /// A shutdown reason longer than 123 bytes.
    ShutdownReasonTooLong(usize),
    /// `socket_send_buffer` of 0 bytes, or 1 GiB or more.
    SocketSendBuffer(usize),
    /// `buffer_release_period(Some(0))`.
    ZeroBufferReleasePeriod,
    /// A client's subprotocol or extra header cannot go in an upgrade
    /// request (not a token, a control character, a header the handshake
    /// writes itself).
    ClientRequest(ringws_proto::handshake::BuildError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Workers(n) => write!(f, "workers must be between 1 and 65535, got {n}"),
            ConfigError::EmptyCoreList => f.write_str("core pinning list is empty"),
            ConfigError::UnavailableCore(core) => {
                f.write_str(&ringws_reactor::unavailable_core_message(*core))
            }
            ConfigError::RecvBuffers { count, size } => write!(
                f,
                "receive buffers must be a power of two up to 32768 of 1 byte to 1 GiB, \
                 got {count} of {size} bytes"
            ),
            ConfigError::ZeroMaxFrameSize => f.write_str("max frame size must be at least 1"),
            ConfigError::ZeroMaxMessageSize => f.write_str("max message size must be at least 1"),
            ConfigError::ZeroHandshakeTimeout => f.write_str("handshake timeout must not be 0"),
            ConfigError::ZeroCloseTimeout => f.write_str("close timeout must not be 0"),
            ConfigError::ZeroPingInterval => {
                f.write_str("ping interval must not be 0 (use None to disable keepalive)")
            }
            ConfigError::ZeroPongTimeout => f.write_str("pong timeout must not be 0"),
            ConfigError::ZeroMaxQueuedBytes => f.write_str("max queued bytes must be at least 1"),
            ConfigError::BackpressureCode(code) => {
                write!(f, "backpressure close code {code} may not be sent")
            }
            ConfigError::ZeroMaxHeaderBytes => f.write_str("max header bytes must be at least 1"),
            ConfigError::MaxConnections(n) => {
                write!(
                    f,
                    "max connections per worker must be between 1 and 2^24 - 2, got {n}"
                )
            }
            ConfigError::ShutdownReasonTooLong(len) => write!(
                f,
                "shutdown reason of {len} bytes exceeds the maximum of {MAX_CLOSE_REASON_LEN}"
            ),
            ConfigError::SocketSendBuffer(bytes) => write!(
                f,
                "socket send buffer must be between 1 byte and 1 GiB - 1, got {bytes}"
            ),
            ConfigError::ZeroBufferReleasePeriod => {
                f.write_str("buffer release period must not be 0 (use None to keep every page)")
            }
            ConfigError::ClientRequest(error) => write!(f, "invalid client request: {error}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Validated settings every worker reads.
pub(crate) struct Settings {
    pub max_frame_size: usize,
    pub max_message_size: usize,
    pub handshake_timeout: Duration,
    pub close_timeout: Duration,
    pub ping_interval: Option<Duration>,
    pub pong_timeout: Duration,
    pub max_queued_bytes: usize,
    pub backpressure: Backpressure,
    pub max_header_bytes: usize,
    pub shutdown_reason: String,
    pub max_connections: u32,
    pub socket_send_buffer: Option<usize>,
    pub origin_check: Option<Arc<OriginFn>>,
    pub subprotocol: Option<Arc<SubprotocolFn>>,
    pub plain_http: Option<Arc<PlainHttpFn>>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("max_frame_size", &self.max_frame_size)
            .field("max_message_size", &self.max_message_size)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("close_timeout", &self.close_timeout)
            .field("ping_interval", &self.ping_interval)
            .field("pong_timeout", &self.pong_timeout)
            .field("max_queued_bytes", &self.max_queued_bytes)
            .field("backpressure", &self.backpressure)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("shutdown_reason", &self.shutdown_reason)
            .field("max_connections", &self.max_connections)
            .field("origin_check", &self.origin_check.is_some())
            .field("subprotocol", &self.subprotocol.is_some())
            .field("plain_http", &self.plain_http.is_some())
            .finish()
    }
}

/// Entry point: `Server::bind(addr)` returns a [`ServerBuilder`].
#[derive(Debug)]
pub struct Server;

impl Server {
    /// A builder for a server listening on `addr` (port 0 picks a free port;
    /// [`ServerHandle::local_addr`] reports it).
    pub fn bind(addr: SocketAddr) -> ServerBuilder {
        ServerBuilder::new(addr)
    }
}

/// Server settings; every setter documents its default. Nothing is checked
/// until [`start`](Self::start), which refuses invalid values with a typed
/// [`ConfigError`].
pub struct ServerBuilder {
    addr: SocketAddr,
    workers: usize,
    pinning: Pinning,
    max_frame_size: Option<usize>,
    max_message_size: usize,
    handshake_timeout: Duration,
    close_timeout: Duration,
    ping_interval: Option<Duration>,
    pong_timeout: Duration,
    max_queued_bytes: usize,
    backpressure: Backpressure,
    max_header_bytes: usize,
    shutdown_reason: String,
    max_connections: u32,
    recv_buffers: (u16, u32),
    socket_send_buffer: Option<usize>,
    buffer_release_period: Option<Duration>,
    ring_setup: RingSetup,
    origin_check: Option<Arc<OriginFn>>,
    subprotocol: Option<Arc<SubprotocolFn>>,
    plain_http: Option<Arc<PlainHttpFn>>,
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("addr", &self.addr)
            .field("workers", &self.workers)
            .field("pinning", &self.pinning)
            .field("max_frame_size", &self.max_frame_size)
            .field("max_message_size", &self.max_message_size)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("close_timeout", &self.close_timeout)
            .field("ping_interval", &self.ping_interval)
            .field("pong_timeout", &self.pong_timeout)
            .field("max_queued_bytes", &self.max_queued_bytes)
            .field("backpressure", &self.backpressure)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("shutdown_reason", &self.shutdown_reason)
            .field("ring_setup", &self.ring_setup)
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    fn new(addr: SocketAddr) -> ServerBuilder {
        ServerBuilder {
            addr,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pinning: Pinning::Auto,
            max_frame_size: None,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            ping_interval: Some(DEFAULT_PING_INTERVAL),
            pong_timeout: DEFAULT_PONG_TIMEOUT,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            backpressure: Backpressure::DropMessage,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            shutdown_reason: DEFAULT_SHUTDOWN_REASON.to_owned(),
            max_connections: 1_000_000,
            recv_buffers: (1024, 32 * 1024),
            socket_send_buffer: None,
            buffer_release_period: None,
            ring_setup: RingSetup::Auto,
            origin_check: None,
            subprotocol: None,
            plain_http: None,
        }
    }

    /// Worker threads, each with its own io_uring and listener. Default: the
    /// number of available cores.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Core pinning. Default: [`Pinning::Auto`].
    pub fn pinning(mut self, pinning: Pinning) -> Self {
        self.pinning = pinning;
        self
    }

    /// Largest frame payload accepted from a peer; larger fails the
    /// connection with 1009. Default: the max message size.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = Some(bytes);
        self
    }

    /// Largest message (all fragments) accepted from a peer; larger fails
    /// the connection with 1009. Default: 1 MiB.
    ///
    /// Only the total payload of a message is limited, not the number of
    /// fragments it comes in: a message of a million empty continuation
    /// frames is accepted. That costs no memory (an empty fragment adds
    /// nothing to the message being assembled) and little time, since its
    /// header is all there is to read: six bytes of a masked frame each (a
    /// million of them, 6 MB, took a worker about 10 ms of CPU on
    /// loopback), so a peer gets no more work out of a worker than it pays
    /// for in bytes sent.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Time from accept to a complete upgrade request; on expiry TCP is
    /// closed and [`WorkerStats::handshake_timeouts`](crate::WorkerStats)
    /// counts it. Default: 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Time a closing connection gets, from the moment ringws sends or
    /// receives the first Close (or decides to close TCP) until the socket
    /// is gone; on expiry the connection is aborted and reported as
    /// [`CloseKind::Forced`](crate::CloseKind::Forced) unless the closing
    /// handshake had completed. Default: 5 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Keepalive: every `interval` each open connection is sent a Ping with
    /// a unique 8-byte payload; `None` disables keepalive. Default: 30 s.
    pub fn ping_interval(mut self, interval: Option<Duration>) -> Self {
        self.ping_interval = interval;
        self
    }

    /// Time the matching Pong may take before the connection is closed with
    /// 1011 "keepalive ping timeout" (then aborted after the close timeout).
    /// Default: 10 s.
    pub fn pong_timeout(mut self, timeout: Duration) -> Self {
        self.pong_timeout = timeout;
        self
    }

    /// Unsent bytes a connection may have before sends are refused (the
    /// policy decides what happens then). A message is accepted while fewer
    /// than this many bytes are queued. Pongs are never refused; instead,
    /// when a Ping arrives with the queue at this limit, ringws stops
    /// reading that connection until the queue drains to half of it, so a
    /// peer that pings and never reads is slowed by TCP rather than growing
    /// the queue. Default: 4 MiB.
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.max_queued_bytes = bytes;
        self
    }

    /// What happens to a send over the queue limit. Default:
    /// [`Backpressure::DropMessage`].
    pub fn backpressure(mut self, policy: Backpressure) -> Self {
        self.backpressure = policy;
        self
    }

    /// Largest HTTP request head (request line and headers); larger is
    /// answered with 431. Default: 8 KiB.
    ///
    /// The number of header fields is capped too, at
    /// [`MAX_HEADER_FIELDS`] (64, not configurable): a head with more is
    /// answered with 431 Request Header Fields Too Large, however few bytes
    /// it takes. A head that cannot be HTTP at all (a byte no request head
    /// may hold, such as a TLS ClientHello's first) is answered with 400 as
    /// soon as that byte arrives.
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes;
        self
    }

    /// The reason sent with Close 1001 on shutdown (at most 123 bytes).
    /// Default: "server shutting down".
    pub fn shutdown_reason(mut self, reason: impl Into<String>) -> Self {
        self.shutdown_reason = reason.into();
        self
    }

    /// Most simultaneous connections per worker; more are refused at
    /// accept. Default: 1,000,000.
    pub fn max_connections_per_worker(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// Provided receive buffers per worker: `count` (a power of two, at most
    /// 32768) of `size` bytes. Default: 1024 of 32 KiB, so a 16 KiB message
    /// with its header arrives in one buffer, is handed to the handler in
    /// place, and an echo of it is sent from there without a copy. About
    /// 2 MiB of them are in use at first; more are offered each time the
    /// kernel finds none free, up to `count`; the rest are address space,
    /// not memory.
    pub fn recv_buffers(mut self, count: u16, size: u32) -> Self {
        self.recv_buffers = (count, size);
        self
    }

    /// `SO_SNDBUF` of `bytes` (1 byte to 1 GiB − 1) on every connection's
    /// socket; the kernel doubles it and stops autotuning that socket.
    /// Default: unset, the kernel autotunes up to `net.ipv4.tcp_wmem`'s
    /// maximum. A small buffer bounds what a slow reader pins in kernel
    /// memory; the rest waits in ringws's send queue, where
    /// [`max_queued_bytes`](Self::max_queued_bytes) and backpressure see it.
    pub fn socket_send_buffer(mut self, bytes: usize) -> Self {
        self.socket_send_buffer = Some(bytes);
        self
    }

    /// How often a worker that received anything checks whether its receive
    /// buffers hold more resident pages than that period's receives wrote;
    /// if so (by 1 MiB or more), the pages of the buffers not in use go back
    /// to the kernel and are faulted in again when next written, and the
    /// worker's pool of frame and send buffers is freed (with glibc, the
    /// allocator's free pages are returned too). A burst can
    /// make a worker's whole ring resident
    /// ([`recv_buffers`](Self::recv_buffers), 32 MiB by default); this
    /// lets a quiet server shrink back. The pages go back 64 buffers per
    /// turn of the worker's loop (at most 0.28 ms a turn measured on a
    /// 2-core VM, 8 turns for 16 MiB), a release stops when traffic
    /// resumes, and the allocator is trimmed on an idle-priority thread
    /// rather than in the loop. Off by default (`None`: every page kept),
    /// since a message arriving during a slice waits for it and the next
    /// burst faults the pages in again; 5 s is a reasonable period.
    /// Needs Linux 6.1 (`IORING_SETUP_DEFER_TASKRUN`); older kernels keep
    /// every page.
    pub fn buffer_release_period(mut self, period: Option<Duration>) -> Self {
        self.buffer_release_period = period;
        self
    }

    /// The most capable io_uring setup the workers may ask the kernel for.
    /// Default: [`RingSetup::Auto`], the most capable it grants
    /// (`IORING_SETUP_DEFER_TASKRUN` from Linux 6.1, where completions are
    /// processed only while a worker waits). [`RingSetup::CoopTaskrun`]
    /// avoids DEFER_TASKRUN and runs as on Linux 5.19 to 6.0 (receive
    /// buffer pages are then never given back, see
    /// [`buffer_release_period`](Self::buffer_release_period));
    /// [`RingSetup::Plain`] asks for no optional flag. A kernel that refuses
    /// the setup asked for gets the next less capable one; each worker's
    /// [`WorkerStats::ring_mode`](crate::WorkerStats::ring_mode) says which
    /// it got.
    pub fn ring_setup(mut self, setup: RingSetup) -> Self {
        self.ring_setup = setup;
        self
    }

    /// Accepts or refuses an upgrade by its `Origin` header (`None` when the
    /// client sent none); refused upgrades are answered 403. Runs on the
    /// accepting worker. Default: every origin is accepted.
    pub fn origin_check(
        mut self,
        check: impl Fn(Option<&str>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.origin_check = Some(Arc::new(check));
        self
    }

    /// Picks a subprotocol from those the client offered (in its order of
    /// preference), by index; `None` selects none. An out-of-range index
    /// selects none. Default: none is selected.
    pub fn select_subprotocol(
        mut self,
        select: impl Fn(&[&str]) -> Option<usize> + Send + Sync + 'static,
    ) -> Self {
        self.subprotocol = Some(Arc::new(select));
        self
    }

    /// Supports these subprotocols, in the server's order of preference: the
    /// first one the client offered is selected.
    pub fn subprotocols(self, supported: &[&str]) -> Self {
        let supported: Vec<String> = supported.iter().map(|s| (*s).to_owned()).collect();
        self.select_subprotocol(move |offered| {
            supported
                .iter()
                .find_map(|wanted| offered.iter().position(|offer| offer == wanted))
        })
    }

    /// Answers plain (non-upgrade) HTTP requests on the same port, e.g.
    /// `/healthz` or `/metrics`; `None` answers 404. Without this hook plain
    /// requests are answered 426 Upgrade Required. The connection is closed
    /// after the response.
    pub fn plain_http(
        mut self,
        respond: impl Fn(&HttpRequest<'_>) -> Option<HttpResponse> + Send + Sync + 'static,
    ) -> Self {
        self.plain_http = Some(Arc::new(respond));
        self
    }

    /// Validates the settings, binds the listeners and starts the workers.
    /// `factory` runs once on each worker thread to create that worker's
    /// handler; every callback of a connection runs on its worker.
    pub fn start<H, F>(self, factory: F) -> Result<ServerHandle, StartError>
    where
        H: Handler,
        F: Fn(WorkerId) -> H + Send + Sync + 'static,
    {
        let (settings, reactor) = self.validate()?;
        ServerHandle::start(settings, reactor, factory)
    }

    /// Checks every setting and produces the engine's settings and the
    /// reactor configuration.
    pub(crate) fn validate(self) -> Result<(Settings, ringws_reactor::Config), ConfigError> {
        if self.workers == 0 || self.workers > usize::from(u16::MAX) {
            return Err(ConfigError::Workers(self.workers));
        }
        if let Pinning::Cores(cores) = &self.pinning {
            if cores.is_empty() {
                return Err(ConfigError::EmptyCoreList);
            }
            if let Some(core) = ringws_reactor::first_unavailable_core(cores) {
                return Err(ConfigError::UnavailableCore(core));
            }
        }
        let (count, size) = self.recv_buffers;
        if !ringws_reactor::recv_buffer_count_valid(count)
            || !ringws_reactor::recv_buffer_size_valid(size)
        {
            return Err(ConfigError::RecvBuffers { count, size });
        }
        if self.max_message_size == 0 {
            return Err(ConfigError::ZeroMaxMessageSize);
        }
        let max_frame_size = self.max_frame_size.unwrap_or(self.max_message_size);
        if max_frame_size == 0 {
            return Err(ConfigError::ZeroMaxFrameSize);
        }
        if self.handshake_timeout.is_zero() {
            return Err(ConfigError::ZeroHandshakeTimeout);
        }
        if self.close_timeout.is_zero() {
            return Err(ConfigError::ZeroCloseTimeout);
        }
        if self
            .ping_interval
            .is_some_and(|interval| interval.is_zero())
        {
            return Err(ConfigError::ZeroPingInterval);
        }
        if self.ping_interval.is_some() && self.pong_timeout.is_zero() {
            return Err(ConfigError::ZeroPongTimeout);
        }
        if self.max_queued_bytes == 0 {
            return Err(ConfigError::ZeroMaxQueuedBytes);
        }
        if let Backpressure::Close(code) = self.backpressure {
            if !code.is_valid_on_wire() {
                return Err(ConfigError::BackpressureCode(code.0));
            }
        }
        if self.max_header_bytes == 0 {
            return Err(ConfigError::ZeroMaxHeaderBytes);
        }
        if self.max_connections == 0 || self.max_connections >= (1 << 24) - 1 {
            return Err(ConfigError::MaxConnections(self.max_connections));
        }
        if let Some(bytes) = self.socket_send_buffer {
            if bytes == 0 || bytes > MAX_SOCKET_SEND_BUFFER {
                return Err(ConfigError::SocketSendBuffer(bytes));
            }
        }
        if self.buffer_release_period == Some(Duration::ZERO) {
            return Err(ConfigError::ZeroBufferReleasePeriod);
        }
        if validate_close(CloseCode::GOING_AWAY.0, self.shutdown_reason.as_bytes()).is_err() {
            return Err(ConfigError::ShutdownReasonTooLong(
                self.shutdown_reason.len(),
            ));
        }
        let pinning = match self.pinning {
            Pinning::Auto => ringws_reactor::CorePinning::Auto,
            Pinning::Off => ringws_reactor::CorePinning::Off,
            Pinning::Cores(cores) => ringws_reactor::CorePinning::Cores(cores),
        };
        // `on_drain` fires once a connection that reached the limit is down
        // to half of it (hysteresis, so it does not fire on every send).
        let high_water = self.max_queued_bytes - 1;
        let low_water = (self.max_queued_bytes / 2).min(high_water);
        let mut reactor = ringws_reactor::Config::new()
            .workers(self.workers)
            .pinning(pinning)
            .listen(self.addr)
            .recv_buffers(self.recv_buffers.0, self.recv_buffers.1)
            .send_water_marks(high_water, low_water)
            .close_linger(self.close_timeout)
            .max_connections(self.max_connections)
            .buffer_release_period(self.buffer_release_period)
            .ring_setup(self.ring_setup)
            .thread_name("ringws");
        if let Some(bytes) = self.socket_send_buffer {
            reactor = reactor.socket_send_buffer(bytes);
        }
        let settings = Settings {
            max_frame_size,
            max_message_size: self.max_message_size,
            handshake_timeout: self.handshake_timeout,
            close_timeout: self.close_timeout,
            ping_interval: self.ping_interval,
            pong_timeout: self.pong_timeout,
            max_queued_bytes: self.max_queued_bytes,
            backpressure: self.backpressure,
            max_header_bytes: self.max_header_bytes,
            shutdown_reason: self.shutdown_reason,
            max_connections: self.max_connections,
            socket_send_buffer: self.socket_send_buffer,
            origin_check: self.origin_check,
            subprotocol: self.subprotocol,
            plain_http: self.plain_http,
        };
        Ok((settings, reactor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> ServerBuilder {
        Server::bind("127.0.0.1:0".parse().unwrap())
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let (settings, reactor) = builder().validate().unwrap();
        assert_eq!(settings.close_timeout, Duration::from_secs(5));
        assert_eq!(settings.ping_interval, Some(Duration::from_secs(30)));
        assert_eq!(settings.pong_timeout, Duration::from_secs(10));
        assert_eq!(settings.max_frame_size, settings.max_message_size);
        assert!(reactor.listen_config().is_some());
        assert_eq!(reactor.requested_ring_setup(), RingSetup::Auto);
    }

    #[test]
    fn the_ring_setup_reaches_the_reactor() {
        for setup in [RingSetup::Auto, RingSetup::CoopTaskrun, RingSetup::Plain] {
            let (_, reactor) = builder().ring_setup(setup).validate().unwrap();
            assert_eq!(reactor.requested_ring_setup(), setup);
        }
    }

    #[test]
    fn invalid_settings_are_typed_errors() {
        let cases: Vec<(ServerBuilder, ConfigError)> = vec![
            (builder().workers(0), ConfigError::Workers(0)),
            (
                builder().pinning(Pinning::Cores(vec![])),
                ConfigError::EmptyCoreList,
            ),
            (
                builder().pinning(Pinning::Cores(vec![0, 100_000])),
                ConfigError::UnavailableCore(100_000),
            ),
            (
                builder().recv_buffers(1000, 4096),
                ConfigError::RecvBuffers {
                    count: 1000,
                    size: 4096,
                },
            ),
            (
                builder().recv_buffers(0, 4096),
                ConfigError::RecvBuffers {
                    count: 0,
                    size: 4096,
                },
            ),
            (
                builder().recv_buffers(1024, 0),
                ConfigError::RecvBuffers {
                    count: 1024,
                    size: 0,
                },
            ),
            (builder().max_frame_size(0), ConfigError::ZeroMaxFrameSize),
            (
                builder().max_message_size(0),
                ConfigError::ZeroMaxMessageSize,
            ),
            (
                builder().handshake_timeout(Duration::ZERO),
                ConfigError::ZeroHandshakeTimeout,
            ),
            (
                builder().close_timeout(Duration::ZERO),
                ConfigError::ZeroCloseTimeout,
            ),
            (
                builder().ping_interval(Some(Duration::ZERO)),
                ConfigError::ZeroPingInterval,
            ),
            (
                builder().pong_timeout(Duration::ZERO),
                ConfigError::ZeroPongTimeout,
            ),
            (
                builder().max_queued_bytes(0),
                ConfigError::ZeroMaxQueuedBytes,
            ),
            (
                builder().backpressure(Backpressure::Close(CloseCode(1006))),
                ConfigError::BackpressureCode(1006),
            ),
            (
                builder().max_header_bytes(0),
                ConfigError::ZeroMaxHeaderBytes,
            ),
            (
                builder().max_connections_per_worker(0),
                ConfigError::MaxConnections(0),
            ),
            (
                builder().shutdown_reason("x".repeat(124)),
                ConfigError::ShutdownReasonTooLong(124),
            ),
            (
                builder().socket_send_buffer(0),
                ConfigError::SocketSendBuffer(0),
            ),
            (
                builder().socket_send_buffer(1 << 30),
                ConfigError::SocketSendBuffer(1 << 30),
            ),
            (
                builder().buffer_release_period(Some(Duration::ZERO)),
                ConfigError::ZeroBufferReleasePeriod,
            ),
        ];
        for (builder, expected) in cases {
            assert_eq!(builder.validate().unwrap_err(), expected);
        }
    }

    #[test]
    fn keepalive_off_ignores_the_pong_timeout() {
        assert!(builder()
            .ping_interval(None)
            .pong_timeout(Duration::ZERO)
            .validate()
            .is_ok());
    }

    #[test]
    fn a_123_byte_shutdown_reason_is_accepted() {
        assert!(builder()
            .shutdown_reason("r".repeat(123))
            .validate()
            .is_ok());
    }
}
