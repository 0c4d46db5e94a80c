//! The client role: [`Client::builder`] → [`ClientBuilder::start`] → a
//! [`ClientHandle`] whose [`connect`](ClientControl::connect) opens
//! `ws://` connections on the same per-core workers, handlers, [`Conn`](crate::Conn)s and
//! [`ConnHandle`](crate::ConnHandle)s as the server.
//!
//! ## Where the work happens
//!
//! `connect` runs on the caller's thread up to the point where a worker is
//! needed: it parses the URL, draws the 16-byte nonce and the 256-bit
//! masking-key seed from OS entropy, builds the upgrade request and
//! resolves the host. A lookup can block for seconds, so
//! [`connect_queued`](ClientControl::connect_queued) called on a worker
//! thread (in a callback of this client, or of any ringws server or
//! client in the process) leaves a host name to the client's resolver
//! threads (at most 4, started on demand, ending when idle or when the
//! client stops), which queue the request once it is resolved: no worker
//! ever waits for a lookup. IP literals need no lookup.
//! The request then travels through a worker's inbox (workers are picked
//! round-robin); the worker creates the socket, queues the request (it
//! leaves as soon as TCP is up), arms the handshake timeout and answers with
//! the connection's id. Everything after that happens on that worker:
//! moving on to the host's next address when a TCP connect fails (see
//! [`ClientControl::connect`]), checking the `101` (accept key,
//! subprotocol, extensions), opening the protocol state in the client role,
//! and every callback.
//!
//! ## Rules specific to the client role
//!
//! * Every frame is masked with a fresh key from the connection's ChaCha20
//!   keystream, keyed from OS entropy, so keys seen on the wire do not
//!   predict the next ones. Masking needs the payload in a buffer of ours:
//!   `send_text`/`send_binary` copy once (as on the server), `send_*_owned`
//!   masks the caller's buffer in place (no copy), and
//!   handle sends and [`PreparedMessage`](crate::PreparedMessage)s are
//!   re-encoded masked on the worker (one more copy than on a server).
//! * After the closing handshake the client waits for the server to close
//!   TCP (RFC 6455 §7.1.1), up to the close timeout, then resets the
//!   connection itself; [`ClosedInfo::kind`](crate::ClosedInfo::kind) is
//!   still [`CloseKind::Clean`](crate::CloseKind::Clean) since both Closes
//!   were exchanged.
//! * A connection that never opens ends in exactly one of: an `Err` from
//!   [`ClientControl::connect`], or
//!   [`Handler::on_connect_failed`](crate::Handler::on_connect_failed) with
//!   a [`ConnectError`] (refused, timeout, HTTP status N, bad accept key,
//!   ...). [`Handler::on_closed`](crate::Handler::on_closed) is only for
//!   connections that got `on_open`. The one exception: a host name queued
//!   from a callback whose lookup returns after the client has stopped
//!   ends without a callback (its data is dropped), as no worker is left
//!   to run one.

mod entropy;
mod lookup;
mod session;

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use ringws_proto::handshake::{
    BuildError, ClientHandshake, HeadLimits, ResponseError, UrlError, WsUrl,
};
use ringws_proto::MaskSeed;
use ringws_reactor::{Reactor, ReactorHandle, RingSetup};

use self::lookup::{LookupPool, Refused, Turn};

use crate::config::{ConfigError, Pinning, Server, ServerBuilder};
use crate::engine::{Engine, ServerShared};
use crate::error::{ServerError, ShutdownError, StartError};
use crate::handle::{Command, ConnHandle, WorkerLink};
use crate::handler::Handler;
use crate::server::{ServerControl, ShutdownReport};
use crate::stats::Stats;
use crate::{Backpressure, ConnId, WorkerId};

pub(crate) use session::{connect_failed, mask_out_frame, start_connect, Connecting};

/// Default reason of the Close 1001 a client sends to every connection on
/// shutdown.
pub const DEFAULT_CLIENT_SHUTDOWN_REASON: &str = "client shutting down";

/// Why a connection did not open. Returned by
/// [`ClientControl::connect`] for what fails before or while the worker
/// creates the socket, and passed to
/// [`Handler::on_connect_failed`](crate::Handler::on_connect_failed) for
/// what fails after.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    /// The string is not a `ws://` URL ringws can connect to (`wss://` is
    /// not supported: terminate TLS in front of ringws).
    InvalidUrl(UrlError),
    /// The host name did not resolve.
    Resolve {
        /// The host as written in the URL.
        host: String,
        /// The resolver's message.
        reason: String,
    },
    /// The upgrade request could not be built from the URL (host or path).
    InvalidRequest(BuildError),
    /// The server refused the TCP connection (`ECONNREFUSED`): nothing
    /// listens there.
    Refused,
    /// The TCP connection and the opening handshake did not complete within
    /// the [handshake timeout](ClientBuilder::handshake_timeout).
    Timeout,
    /// The server answered the upgrade with this HTTP status instead of
    /// `101`, e.g. 403 from an origin check or 503 from a server shutting
    /// down.
    Status(u16),
    /// The server's `101` is not a valid WebSocket answer: a
    /// `Sec-WebSocket-Accept` that does not match our key
    /// ([`ResponseError::AcceptMismatch`]), a subprotocol or extension we
    /// did not offer, a malformed or oversized head.
    Handshake(ResponseError),
    /// The server closed the connection before answering the upgrade.
    ClosedDuringHandshake,
    /// A socket error (`errno`) while connecting or during the handshake.
    Io {
        /// The OS error number.
        errno: i32,
    },
    /// The client is shutting down (or its worker has stopped).
    Shutdown,
    /// The host resolved to several addresses, more than one was tried, and
    /// none opened: each address tried, in order, with its error. The last
    /// entry's error ended the attempt ([`last_error`](Self::last_error));
    /// [`status`](Self::status) and [`errno`](Self::errno) read it. When
    /// only one address was tried, its error is reported by itself.
    AllAddressesFailed {
        /// The addresses tried, in the order they were tried.
        attempts: Vec<FailedAddress>,
    },
    /// [`ClientControl::connect`] was called on a worker thread of a
    /// ringws client or server (inside a callback): waiting there for a
    /// worker's answer, and for a host-name lookup, would deadlock on this
    /// client's own workers and hold up every connection of any other
    /// engine's. Use [`ClientControl::connect_queued`] there.
    OnWorkerThread,
    /// The OS could not provide entropy for the handshake nonce and the
    /// masking-key seed.
    Entropy {
        /// The OS error number.
        errno: i32,
    },
}

/// One address of a host that was tried and did not open, in
/// [`ConnectError::AllAddressesFailed`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailedAddress {
    /// The address connected to.
    pub addr: SocketAddr,
    /// Why it did not open (never [`ConnectError::AllAddressesFailed`]).
    pub error: ConnectError,
}

impl ConnectError {
    /// The HTTP status of a refused upgrade (of the last address tried, for
    /// [`AllAddressesFailed`](Self::AllAddressesFailed)).
    pub fn status(&self) -> Option<u16> {
        match self.last_error() {
            ConnectError::Status(status) => Some(*status),
            _ => None,
        }
    }

    /// The OS error number behind a socket or entropy error (of the last
    /// address tried, for [`AllAddressesFailed`](Self::AllAddressesFailed)).
    pub fn errno(&self) -> Option<i32> {
        match self.last_error() {
            ConnectError::Io { errno } | ConnectError::Entropy { errno } => Some(*errno),
            ConnectError::Refused => Some(libc::ECONNREFUSED),
            _ => None,
        }
    }

    /// The error that ended the attempt: for
    /// [`AllAddressesFailed`](Self::AllAddressesFailed) the last address's,
    /// otherwise `self`.
    pub fn last_error(&self) -> &ConnectError {
        match self {
            ConnectError::AllAddressesFailed { attempts } => attempts
                .last()
                .map_or(self, |attempt| attempt.error.last_error()),
            _ => self,
        }
    }

    /// The error for a failed socket operation.
    pub(crate) fn from_errno(errno: i32) -> ConnectError {
        match errno {
            libc::ECONNREFUSED => ConnectError::Refused,
            libc::ETIMEDOUT => ConnectError::Timeout,
            errno => ConnectError::Io { errno },
        }
    }

    /// The error for a failed `Io::connect` (socket creation or binding, a
    /// full or stopping worker).
    pub(crate) fn from_io(error: &io::Error) -> ConnectError {
        match error.raw_os_error() {
            Some(errno) => ConnectError::from_errno(errno),
            None => ConnectError::Shutdown,
        }
    }

    /// The error for a server answer that does not open the connection.
    pub(crate) fn from_response(error: ResponseError) -> ConnectError {
        match error.refused_status() {
            Some(status) => ConnectError::Status(status),
            None => ConnectError::Handshake(error),
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::InvalidUrl(error) => write!(f, "invalid WebSocket URL: {error}"),
            ConnectError::Resolve { host, reason } => {
                write!(f, "cannot resolve host {host:?}: {reason}")
            }
            ConnectError::InvalidRequest(error) => {
                write!(f, "cannot build the upgrade request: {error}")
            }
            ConnectError::Refused => f.write_str("connection refused"),
            ConnectError::Timeout => {
                f.write_str("the opening handshake did not complete within the handshake timeout")
            }
            ConnectError::Status(status) => {
                write!(
                    f,
                    "the server refused the upgrade with HTTP status {status}"
                )
            }
            ConnectError::Handshake(error) => write!(f, "invalid upgrade response: {error}"),
            ConnectError::ClosedDuringHandshake => {
                f.write_str("the server closed the connection before answering the upgrade")
            }
            ConnectError::Io { errno } => {
                write!(f, "socket error: {}", io::Error::from_raw_os_error(*errno))
            }
            ConnectError::Shutdown => f.write_str("the client is shutting down"),
            ConnectError::AllAddressesFailed { attempts } => {
                write!(f, "all {} addresses of the host failed", attempts.len())?;
                for (index, attempt) in attempts.iter().enumerate() {
                    let separator = if index == 0 { ": " } else { "; " };
                    write!(f, "{separator}{}: {}", attempt.addr, attempt.error)?;
                }
                Ok(())
            }
            ConnectError::OnWorkerThread => f.write_str(
                "connect() waits for a worker and cannot run on a ringws worker thread; \
                 use connect_queued() in callbacks",
            ),
            ConnectError::Entropy { errno } => write!(
                f,
                "no OS entropy for the handshake nonce and masking keys: {}",
                io::Error::from_raw_os_error(*errno)
            ),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Entry point: `Client::builder()` returns a [`ClientBuilder`].
#[derive(Debug)]
pub struct Client;

impl Client {
    /// A builder with every default (see each setter).
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }
}

/// Client settings; every setter documents its default. The settings the
/// server also has mean the same thing here and have the same defaults,
/// except the shutdown reason and the receive buffers' size (16 KiB here,
/// 32 KiB for a server). Nothing is checked until
/// [`start`](Self::start), which refuses invalid values with a typed
/// [`ConfigError`].
pub struct ClientBuilder {
    /// Carries and validates the settings shared with the server role; its
    /// address is never bound.
    shared: ServerBuilder,
    workers: usize,
    pinning: Pinning,
    recv_buffers: (u16, u32),
    ring_setup: RingSetup,
    subprotocols: Vec<String>,
    headers: Vec<(String, String)>,
    source: Option<SocketAddr>,
    resolver: Resolver,
}

/// Turns a host name and port into the addresses to try, in order.
type ResolveFn = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;

/// The resolver of host names: the system's (`getaddrinfo`) unless one was
/// set with [`ClientBuilder::resolver`].
#[derive(Clone, Default)]
struct Resolver(Option<Arc<ResolveFn>>);

impl Resolver {
    fn lookup(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        match &self.0 {
            Some(resolve) => resolve(host, port),
            None => (host, port).to_socket_addrs().map(Iterator::collect),
        }
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "custom" } else { "system" })
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("workers", &self.workers)
            .field("pinning", &self.pinning)
            .field("recv_buffers", &self.recv_buffers)
            .field("ring_setup", &self.ring_setup)
            .field("subprotocols", &self.subprotocols)
            .field("headers", &self.headers)
            .field("source", &self.source)
            .field("resolver", &self.resolver)
            .field("settings", &self.shared)
            .finish()
    }
}

impl ClientBuilder {
    fn new() -> ClientBuilder {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let unbound = SocketAddr::from(([127, 0, 0, 1], 0));
        ClientBuilder {
            shared: Server::bind(unbound)
                .shutdown_reason(DEFAULT_CLIENT_SHUTDOWN_REASON)
                .workers(workers),
            workers,
            pinning: Pinning::Auto,
            recv_buffers: (1024, 16 * 1024),
            ring_setup: RingSetup::Auto,
            subprotocols: Vec::new(),
            headers: Vec::new(),
            source: None,
            resolver: Resolver::default(),
        }
    }

    /// Worker threads, each with its own io_uring. Default: the number of
    /// available cores.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self.shared = self.shared.workers(workers);
        self
    }

    /// Core pinning. Default: [`Pinning::Auto`].
    pub fn pinning(mut self, pinning: Pinning) -> Self {
        self.pinning = pinning.clone();
        self.shared = self.shared.pinning(pinning);
        self
    }

    /// Largest frame payload accepted from a server; larger fails the
    /// connection with 1009. Default: the max message size.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.shared = self.shared.max_frame_size(bytes);
        self
    }

    /// Largest message (all fragments) accepted from a server; larger fails
    /// the connection with 1009. Default: 1 MiB. The number of fragments is
    /// not limited, only the message's total size.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.shared = self.shared.max_message_size(bytes);
        self
    }

    /// Time from `connect` to a validated `101`, TCP connect included (the
    /// connects to every address tried, for a host with several); on
    /// expiry the attempt is aborted with [`ConnectError::Timeout`] and
    /// counted in [`WorkerStats::handshake_timeouts`](crate::WorkerStats).
    /// The host name's lookup comes before and is not counted: the time
    /// starts when the worker takes the request. Default: 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.shared = self.shared.handshake_timeout(timeout);
        self
    }

    /// Time a closing connection gets, from the first Close sent or
    /// received until TCP is gone (the client waits for the server to close
    /// TCP first); on expiry the connection is reset. Default: 5 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.shared = self.shared.close_timeout(timeout);
        self
    }

    /// Keepalive: every `interval` each open connection sends a Ping with a
    /// unique 8-byte payload; `None` disables keepalive. Default: 30 s.
    pub fn ping_interval(mut self, interval: Option<Duration>) -> Self {
        self.shared = self.shared.ping_interval(interval);
        self
    }

    /// Time the matching Pong may take before the connection is closed with
    /// 1011 "keepalive ping timeout" (then reset after the close timeout).
    /// Default: 10 s.
    pub fn pong_timeout(mut self, timeout: Duration) -> Self {
        self.shared = self.shared.pong_timeout(timeout);
        self
    }

    /// Unsent bytes a connection may have before sends are refused (the
    /// policy decides what happens then). Default: 4 MiB.
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.shared = self.shared.max_queued_bytes(bytes);
        self
    }

    /// What happens to a send over the queue limit. Default:
    /// [`Backpressure::DropMessage`].
    pub fn backpressure(mut self, policy: Backpressure) -> Self {
        self.shared = self.shared.backpressure(policy);
        self
    }

    /// Largest HTTP response head accepted from a server; larger fails the
    /// attempt with [`ResponseError::HeadTooLarge`]. Default: 8 KiB.
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.shared = self.shared.max_header_bytes(bytes);
        self
    }

    /// The reason sent with Close 1001 on shutdown (at most 123 bytes).
    /// Default: "client shutting down".
    pub fn shutdown_reason(mut self, reason: impl Into<String>) -> Self {
        self.shared = self.shared.shutdown_reason(reason);
        self
    }

    /// Most simultaneous connections per worker; a connect beyond it fails
    /// with [`ConnectError::Io`] (`EMFILE`). Default: 1,000,000.
    pub fn max_connections_per_worker(mut self, max: u32) -> Self {
        self.shared = self.shared.max_connections_per_worker(max);
        self
    }

    /// Provided receive buffers per worker: `count` (a power of two, at most
    /// 32768) of `size` bytes. Default: 1024 of 16 KiB. About 2 MiB of them
    /// are in use at first; more are offered each time the kernel finds
    /// none free, up to `count`.
    pub fn recv_buffers(mut self, count: u16, size: u32) -> Self {
        self.recv_buffers = (count, size);
        self
    }

    /// The most capable io_uring setup the workers may ask the kernel for,
    /// as [`ServerBuilder::ring_setup`](crate::ServerBuilder::ring_setup).
    /// Default: [`RingSetup::Auto`].
    pub fn ring_setup(mut self, setup: RingSetup) -> Self {
        self.ring_setup = setup;
        self
    }

    /// `SO_SNDBUF` of `bytes` on every connection's socket, as
    /// [`ServerBuilder::socket_send_buffer`](crate::ServerBuilder::socket_send_buffer).
    /// Default: unset (kernel autotuning).
    pub fn socket_send_buffer(mut self, bytes: usize) -> Self {
        self.shared = self.shared.socket_send_buffer(bytes);
        self
    }

    /// Subprotocols offered in `Sec-WebSocket-Protocol`, in order of
    /// preference; the one the server selects is [`Conn::subprotocol`](crate::Conn::subprotocol). A
    /// server selecting one not offered fails the attempt. Default: none.
    pub fn subprotocols(mut self, offered: &[&str]) -> Self {
        self.subprotocols = offered.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// A header added to every upgrade request (`Origin`,
    /// `Authorization`, ...). Headers the handshake writes itself (`Host`,
    /// `Upgrade`, `Sec-WebSocket-Key`, ...) are refused at start, and so is
    /// `Sec-WebSocket-Extensions`: ringws implements no extension, and one
    /// the server accepted would be in use from the first frame.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Binds every connection to this local address before connecting
    /// (port 0: any port), e.g. `127.0.0.2:0` to spread many connections
    /// over several loopback addresses. Only the host's addresses of the
    /// same family (IPv4 or IPv6) are tried. Default: chosen by the OS.
    pub fn source_addr(mut self, source: SocketAddr) -> Self {
        self.source = Some(source);
        self
    }

    /// Replaces the system resolver for host names (IP literals never reach
    /// it): `resolve(host, port)` returns the addresses to try, in order,
    /// and runs on the caller of `connect`, or on a resolver thread for a
    /// `connect_queued` on a worker thread (never on a ringws worker). An
    /// `Err` or an empty list fails the connect with
    /// [`ConnectError::Resolve`]. Default: the system resolver
    /// (`getaddrinfo`). Hidden: for tests that need a name with
    /// several addresses, which a machine's resolver may not have.
    #[doc(hidden)]
    pub fn resolver(
        mut self,
        resolve: impl Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
    ) -> Self {
        self.resolver = Resolver(Some(Arc::new(resolve)));
        self
    }

    /// Validates the settings and starts the workers. `factory` runs once on
    /// each worker thread to create that worker's handler; every callback
    /// of a connection runs on its worker.
    pub fn start<H, F>(self, factory: F) -> Result<ClientHandle<H::ConnData>, StartError>
    where
        H: Handler,
        H::ConnData: Send,
        F: Fn(WorkerId) -> H + Send + Sync + 'static,
    {
        let (settings, request, config) = self.validate()?;
        ClientHandle::start(settings, request, config, factory)
    }

    /// Checks every setting; produces the engine's settings, the request
    /// template and the reactor configuration (without a listener).
    fn validate(
        self,
    ) -> Result<
        (
            crate::config::Settings,
            RequestTemplate,
            ringws_reactor::Config,
        ),
        ConfigError,
    > {
        let (settings, _listening) = self.shared.validate()?;
        let offered: Vec<&str> = self.subprotocols.iter().map(String::as_str).collect();
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        ClientHandshake::new("localhost", 80, "/", [0; 16], &offered, &headers)
            .map_err(ConfigError::ClientRequest)?;
        let pinning = match self.pinning {
            Pinning::Auto => ringws_reactor::CorePinning::Auto,
            Pinning::Off => ringws_reactor::CorePinning::Off,
            Pinning::Cores(cores) => ringws_reactor::CorePinning::Cores(cores),
        };
        // Same hysteresis as the server: `on_drain` at half the limit.
        let high_water = settings.max_queued_bytes - 1;
        let low_water = (settings.max_queued_bytes / 2).min(high_water);
        let mut config = ringws_reactor::Config::new()
            .workers(self.workers)
            .pinning(pinning)
            .recv_buffers(self.recv_buffers.0, self.recv_buffers.1)
            .ring_setup(self.ring_setup)
            .send_water_marks(high_water, low_water)
            .close_linger(settings.close_timeout)
            .max_connections(settings.max_connections)
            .thread_name("ringws-client");
        if let Some(bytes) = settings.socket_send_buffer {
            config = config.socket_send_buffer(bytes);
        }
        let request = RequestTemplate {
            subprotocols: self.subprotocols,
            headers: self.headers,
            source: self.source,
            resolver: self.resolver,
            limits: HeadLimits {
                max_head_bytes: settings.max_header_bytes,
                ..HeadLimits::DEFAULT
            },
            handshake_timeout: settings.handshake_timeout,
        };
        Ok((settings, request, config))
    }
}

/// What every upgrade request of a client carries.
#[derive(Debug)]
struct RequestTemplate {
    subprotocols: Vec<String>,
    headers: Vec<(String, String)>,
    source: Option<SocketAddr>,
    resolver: Resolver,
    limits: HeadLimits,
    handshake_timeout: Duration,
}

/// State shared by every [`ClientControl`] of one client.
struct ClientShared {
    control: ServerControl,
    request: RequestTemplate,
    next_worker: AtomicUsize,
    /// Resolves the host names of connects queued on a worker thread.
    lookups: Arc<LookupPool>,
}

/// What a worker needs to open one connection; travels through its inbox.
pub(crate) struct ConnectRequest<D> {
    /// The addresses to try, in order, or why the host did not resolve
    /// (for a lookup done off the worker, reported by the worker).
    addrs: Result<Targets, ConnectError>,
    source: Option<SocketAddr>,
    handshake: ClientHandshake,
    mask_seed: MaskSeed,
    data: D,
    /// The blocked caller of `connect`; `None` for `connect_queued`.
    reply: Option<SyncSender<Result<ConnId, ConnectError>>>,
}

/// Opens connections and reaches the running client from any thread:
/// `Clone + Send + Sync`. `D` is the handler's
/// [`ConnData`](Handler::ConnData), handed to each connection at connect.
pub struct ClientControl<D> {
    shared: Arc<ClientShared>,
    _data: PhantomData<fn(D)>,
}

impl<D> Clone for ClientControl<D> {
    fn clone(&self) -> Self {
        ClientControl {
            shared: self.shared.clone(),
            _data: PhantomData,
        }
    }
}

impl<D> fmt::Debug for ClientControl<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientControl")
            .field("workers", &self.worker_count())
            .finish()
    }
}

impl<D: Send + 'static> ClientControl<D> {
    /// Opens a connection to `url` (`ws://host[:port][/path][?query]`) with
    /// `data` as its [`ConnData`](Handler::ConnData), on the next worker
    /// (round-robin). Blocks only until that worker has created the socket
    /// (microseconds), then returns the connection's id; the handshake goes
    /// on without the caller, ending in
    /// [`Handler::on_open`](crate::Handler::on_open) or
    /// [`Handler::on_connect_failed`](crate::Handler::on_connect_failed).
    ///
    /// Host names are resolved here, on the caller's thread. A host with
    /// several addresses (`localhost` as `::1` and `127.0.0.1`; only those
    /// of the source address's family when [`ClientBuilder::source_addr`]
    /// is set) has them tried in the resolver's order, as
    /// tokio-tungstenite and Python `websockets` do: when the TCP connect
    /// to one fails (refused, unreachable, ...), the worker connects to the
    /// next, without blocking anyone. Only TCP failures move on; once TCP
    /// is up, the handshake's outcome is final. The handshake timeout
    /// covers every address together. If none opens, the failure lists
    /// each address tried with its error
    /// ([`ConnectError::AllAddressesFailed`]).
    ///
    /// Each address gets its own socket and so its own id: the id returned
    /// here is the first socket's, and after a move to another address
    /// `on_open` (or `on_connect_failed`) reports the id of the socket in
    /// use then. When the host may have several addresses, match those
    /// callbacks by [`ConnData`](Handler::ConnData) rather than by id.
    ///
    /// On `Err` nothing was started and `data` is dropped; no callback
    /// follows. If the worker does not answer within the handshake timeout
    /// (held up by a long callback, say), this returns
    /// [`ConnectError::Timeout`]; an attempt the worker starts after that is
    /// aborted, and `data` dropped, on the worker. Inside callbacks, of
    /// this client or of any ringws server or client, it returns
    /// [`ConnectError::OnWorkerThread`] at once: use
    /// [`connect_queued`](Self::connect_queued) there.
    pub fn connect(&self, url: &str, data: D) -> Result<ConnId, ConnectError> {
        if ServerShared::on_any_worker_thread() {
            return Err(ConnectError::OnWorkerThread);
        }
        let (reply, answer) = mpsc::sync_channel(1);
        self.submit(url, data, Some(reply))?;
        match answer.recv_timeout(self.shared.request.handshake_timeout) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(ConnectError::Timeout),
            Err(RecvTimeoutError::Disconnected) => Err(ConnectError::Shutdown),
        }
    }

    /// [`connect`](Self::connect) without waiting for the id: usable
    /// anywhere, callbacks included, and it never blocks a worker.
    ///
    /// `Err` (nothing started, `data` dropped, no callback) covers what
    /// fails at once: the URL ([`ConnectError::InvalidUrl`]), the request
    /// built from it, OS entropy, a stopping or stopped client
    /// ([`ConnectError::Shutdown`]), and off the workers, the host's
    /// resolution ([`ConnectError::Resolve`]), which then runs on the
    /// caller's thread as for `connect`. Everything later ends in `on_open`
    /// or `on_connect_failed`, the latter with `id: None` when the attempt
    /// failed before the worker had a socket for it.
    ///
    /// On a worker thread (in a callback of this client, or of any ringws
    /// server or client in the process), a host name is resolved on a
    /// resolver thread of the client instead (a lookup can take seconds,
    /// during which the worker would serve none of its connections; IP
    /// literals need none): the call returns at once, and a name that does
    /// not resolve is reported to `on_connect_failed` with `id: None` and
    /// [`ConnectError::Resolve`]. A shutdown reports
    /// lookups not started yet as [`ConnectError::Shutdown`]; one in
    /// flight is not waited for, and if the workers have stopped when it
    /// returns, the attempt ends there without a callback (`data` is
    /// dropped on the resolver thread).
    pub fn connect_queued(&self, url: &str, data: D) -> Result<(), ConnectError> {
        self.submit(url, data, None)
    }

    fn submit(
        &self,
        url: &str,
        data: D,
        reply: Option<SyncSender<Result<ConnId, ConnectError>>>,
    ) -> Result<(), ConnectError> {
        let template = &self.shared.request;
        let url = WsUrl::parse(url).map_err(ConnectError::InvalidUrl)?;
        let (nonce, mask_seed) = draw_nonce_and_mask_seed()?;
        let mask_seed = MaskSeed::from_bytes(mask_seed);
        let offered: Vec<&str> = template.subprotocols.iter().map(String::as_str).collect();
        let headers: Vec<(&str, &str)> = template
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let handshake = ClientHandshake::for_url(&url, nonce, &offered, &headers)
            .map_err(ConnectError::InvalidRequest)?
            .with_limits(template.limits);
        let engine = &self.shared.control.shared;
        let worker = self.shared.next_worker.fetch_add(1, Ordering::Relaxed) % engine.links.len();
        let (host, port, source) = (url.host(), url.port(), template.source);
        let request = move |addrs: Result<Targets, ConnectError>| ConnectRequest {
            addrs,
            source,
            handshake,
            mask_seed,
            data,
            reply,
        };
        // A lookup may block for seconds, which on a worker would hold up
        // every connection it owns: a lookup thread resolves instead and
        // queues the connect, or its failure, to the worker.
        if host.parse::<IpAddr>().is_err() && ServerShared::on_any_worker_thread() {
            let host = host.to_owned();
            let resolver = template.resolver.clone();
            let engine = engine.clone();
            let job = Box::new(move |turn| {
                let addrs = match turn {
                    Turn::Resolve => resolve(&host, port, source, &resolver),
                    Turn::Cancelled => Err(ConnectError::Shutdown),
                };
                // A stopped worker drops the request with its data: no
                // callback can run any more.
                let _ = engine.links[worker].send(Command::Connect(Box::new(request(addrs))));
            });
            return self
                .shared
                .lookups
                .run(job)
                .map_err(|refused| match refused {
                    Refused::Stopped => ConnectError::Shutdown,
                    Refused::NoThread(error) => ConnectError::Resolve {
                        host: url.host().to_owned(),
                        reason: format!("no resolver thread could be started: {error}"),
                    },
                });
        }
        let addrs = resolve(host, port, source, &template.resolver)?;
        if engine.links[worker].send(Command::Connect(Box::new(request(Ok(addrs))))) {
            Ok(())
        } else {
            Err(ConnectError::Shutdown)
        }
    }
}

/// A connect's `Sec-WebSocket-Key` nonce (16 bytes) and masking-key seed
/// (32 bytes: the whole 256-bit key of the connection's ChaCha20 keystream),
/// from one draw of OS entropy.
fn draw_nonce_and_mask_seed() -> Result<([u8; 16], [u8; 32]), ConnectError> {
    let mut random = [0u8; 16 + 32];
    entropy::fill(&mut random).map_err(|error| ConnectError::Entropy {
        errno: error.raw_os_error().unwrap_or(libc::EIO),
    })?;
    let (nonce, seed) = random.split_at(16);
    Ok((
        nonce.try_into().expect("16 bytes"),
        seed.try_into().expect("32 bytes"),
    ))
}

impl<D> ClientControl<D> {
    /// Number of workers.
    pub fn worker_count(&self) -> usize {
        self.shared.control.worker_count()
    }

    /// Counters of every worker and their sum. Connections being set up
    /// count as `handshaking`; opened ones as `upgraded`; refusals by
    /// status in `handshakes_failed`.
    pub fn stats(&self) -> Stats {
        self.shared.control.stats()
    }

    /// A handle to connection `id` (valid once it has opened).
    pub fn handle(&self, id: ConnId) -> Option<ConnHandle> {
        self.shared.control.handle(id)
    }

    /// The engine-level control (broadcast, handles, stats, shutdown) that
    /// callbacks reach as [`Conn::server`](crate::Conn::server).
    pub fn engine(&self) -> &ServerControl {
        &self.shared.control
    }

    /// Graceful shutdown: stop taking connects, abort attempts still in
    /// their handshake (reported to `on_connect_failed` with
    /// [`ConnectError::Shutdown`]), send Close 1001 with the configured
    /// reason on every open connection, wait for the closing handshakes
    /// until `deadline`, reset the rest, then stop the workers (see
    /// [`ServerControl::shutdown`]). Join with [`ClientHandle::join`].
    ///
    /// It waits for the workers, so it refuses to run on one of them
    /// ([`ShutdownError::OnWorkerThread`]): in callbacks use
    /// [`begin_shutdown`](Self::begin_shutdown).
    pub fn shutdown(&self, deadline: Duration) -> Result<ShutdownReport, ShutdownError> {
        self.shared.control.shutdown(deadline)
    }

    /// [`shutdown`](Self::shutdown) on a thread of its own, without
    /// waiting: usable anywhere, callbacks included (see
    /// [`ServerControl::begin_shutdown`]).
    pub fn begin_shutdown(&self, deadline: Duration) -> bool {
        self.shared.control.begin_shutdown(deadline)
    }
}

/// The addresses an attempt tries, in order: never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Targets {
    pub first: SocketAddr,
    /// Tried one after the other when the TCP connect to the previous fails.
    pub rest: Vec<SocketAddr>,
}

/// Resolves `host` (an IP literal is taken as is) into the addresses to
/// try: the resolver's, in its order, without repeats, and only those of
/// `source`'s family when there is a source address. With none of that
/// family, the first address is kept so the connect fails with the
/// socket's own error, as it would with a single address.
fn resolve(
    host: &str,
    port: u16,
    source: Option<SocketAddr>,
    resolver: &Resolver,
) -> Result<Targets, ConnectError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Targets {
            first: SocketAddr::new(ip, port),
            rest: Vec::new(),
        });
    }
    let failure = |reason: String| ConnectError::Resolve {
        host: host.to_owned(),
        reason,
    };
    let resolved = resolver
        .lookup(host, port)
        .map_err(|error| failure(error.to_string()))?;
    let Some(&fallback) = resolved.first() else {
        return Err(failure("no addresses".to_owned()));
    };
    let mut addrs: Vec<SocketAddr> = Vec::with_capacity(resolved.len());
    for addr in resolved {
        let same_family = source.is_none_or(|source| source.is_ipv4() == addr.is_ipv4());
        if same_family && !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        addrs.push(fallback);
    }
    let first = addrs.remove(0);
    Ok(Targets { first, rest: addrs })
}

/// A running client. Dropping it leaves the workers running (detached);
/// stop it with [`shutdown`](Self::shutdown).
pub struct ClientHandle<D> {
    control: ClientControl<D>,
    reactor: ReactorHandle<Command>,
}

impl<D> fmt::Debug for ClientHandle<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientHandle")
            .field("workers", &self.control.worker_count())
            .finish()
    }
}

impl<D: Send + 'static> ClientHandle<D> {
    fn start<H, F>(
        settings: crate::config::Settings,
        request: RequestTemplate,
        config: ringws_reactor::Config,
        factory: F,
    ) -> Result<ClientHandle<D>, StartError>
    where
        H: Handler<ConnData = D>,
        F: Fn(WorkerId) -> H + Send + Sync + 'static,
    {
        let links = (0..config.worker_count())
            .map(|index| Arc::new(WorkerLink::new(index, settings.max_connections)))
            .collect();
        let engine = Arc::new(ServerShared::new(settings, links));
        let for_workers = engine.clone();
        let reactor = Reactor::start(config, move |id| {
            Engine::new(for_workers.clone(), id, factory(id))
        })?;
        engine.attach(&reactor);
        let lookups = Arc::new(LookupPool::default());
        let stop_lookups = lookups.clone();
        let _ = engine
            .on_shutdown
            .set(Box::new(move || stop_lookups.stop()));
        let shared = Arc::new(ClientShared {
            control: ServerControl { shared: engine },
            request,
            next_worker: AtomicUsize::new(0),
            lookups,
        });
        Ok(ClientHandle {
            control: ClientControl {
                shared,
                _data: PhantomData,
            },
            reactor,
        })
    }

    /// See [`ClientControl::connect`].
    pub fn connect(&self, url: &str, data: D) -> Result<ConnId, ConnectError> {
        self.control.connect(url, data)
    }

    /// See [`ClientControl::connect_queued`].
    pub fn connect_queued(&self, url: &str, data: D) -> Result<(), ConnectError> {
        self.control.connect_queued(url, data)
    }
}

impl<D> ClientHandle<D> {
    /// A cloneable controller for other threads and for handlers.
    pub fn control(&self) -> ClientControl<D> {
        self.control.clone()
    }

    /// Counters of every worker and their sum.
    pub fn stats(&self) -> Stats {
        self.control.stats()
    }

    /// A handle to connection `id` (valid once it has opened).
    pub fn handle(&self, id: ConnId) -> Option<ConnHandle> {
        self.control.handle(id)
    }

    /// Graceful shutdown (see [`ClientControl::shutdown`]), then waits for
    /// the worker threads to end. For threads other than the workers: a
    /// callback uses [`ClientControl::begin_shutdown`].
    ///
    /// # Panics
    ///
    /// On a worker thread of this client, which it would wait for: at once,
    /// saying so (inside a callback the panic is contained like any other,
    /// and fails that connection with 1011).
    pub fn shutdown(self, deadline: Duration) -> ShutdownReport {
        assert!(
            !self.control.shared.control.shared.on_worker_thread(),
            "ClientHandle::shutdown on a worker thread of its own client would wait for \
             itself; a callback uses ClientControl::begin_shutdown"
        );
        let report = self.control.shared.control.shared.run_shutdown(deadline);
        let _ = self.reactor.join();
        report
    }

    /// Waits until the workers end: after a shutdown through a
    /// [`ClientControl`], or when a worker fails.
    pub fn join(self) -> Result<(), ServerError> {
        let joined = self.reactor.join().map_err(ServerError);
        // Workers that failed stopped without a shutdown.
        self.control.shared.lookups.stop();
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_setup_reaches_the_reactor() {
        for setup in [RingSetup::Auto, RingSetup::CoopTaskrun, RingSetup::Plain] {
            let (_, _, reactor) = ClientBuilder::new().ring_setup(setup).validate().unwrap();
            assert_eq!(reactor.requested_ring_setup(), setup);
        }
    }

    #[test]
    fn controls_are_shareable() {
        fn assert_send_sync_clone<T: Send + Sync + Clone>() {}
        assert_send_sync_clone::<ClientControl<std::rc::Rc<u8>>>();
    }

    #[test]
    fn every_connect_draws_a_fresh_nonce_and_a_full_256_bit_mask_seed() {
        let (nonce, seed) = draw_nonce_and_mask_seed().unwrap();
        let (other_nonce, other_seed) = draw_nonce_and_mask_seed().unwrap();
        assert_ne!(nonce, other_nonce);
        // Every 64-bit lane of the seed is drawn anew (a seed padded out
        // from fewer random bytes would repeat a lane); a chance repeat of
        // a lane has probability 2^-64.
        for (lane, other_lane) in seed.chunks(8).zip(other_seed.chunks(8)) {
            assert_ne!(lane, other_lane, "{seed:?} and {other_seed:?}");
        }
        assert!(!seed.windows(16).any(|window| window == nonce));
    }

    #[test]
    fn socket_errors_map_to_clear_kinds() {
        assert_eq!(
            ConnectError::from_errno(libc::ECONNREFUSED),
            ConnectError::Refused
        );
        assert_eq!(
            ConnectError::from_errno(libc::ETIMEDOUT),
            ConnectError::Timeout
        );
        assert_eq!(
            ConnectError::from_errno(libc::ENETUNREACH).errno(),
            Some(libc::ENETUNREACH)
        );
        let stopping = io::Error::other("worker is stopping");
        assert_eq!(ConnectError::from_io(&stopping), ConnectError::Shutdown);
    }

    #[test]
    fn refusals_carry_their_status() {
        let refused = ConnectError::from_response(ResponseError::Refused { status: 403 });
        assert_eq!(refused, ConnectError::Status(403));
        assert_eq!(refused.status(), Some(403));
        assert!(refused.to_string().contains("403"));
        let mismatch = ConnectError::from_response(ResponseError::AcceptMismatch);
        assert_eq!(
            mismatch,
            ConnectError::Handshake(ResponseError::AcceptMismatch)
        );
        assert_eq!(mismatch.status(), None);
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    /// A resolver answering `addrs` (with `port`) for any name.
    fn fixed(addrs: &'static [&'static str]) -> Resolver {
        Resolver(Some(Arc::new(move |_host: &str, port: u16| {
            Ok(addrs
                .iter()
                .map(|ip| SocketAddr::new(ip.parse().unwrap(), port))
                .collect())
        })))
    }

    #[test]
    fn ip_literals_skip_the_resolver() {
        let failing = Resolver(Some(Arc::new(|_: &str, _: u16| {
            Err(io::Error::other("must not be asked"))
        })));
        assert_eq!(
            resolve("127.0.0.1", 9001, None, &failing).unwrap(),
            Targets {
                first: addr("127.0.0.1:9001"),
                rest: Vec::new()
            }
        );
        assert_eq!(
            resolve("::1", 80, None, &failing).unwrap().first,
            addr("[::1]:80")
        );
    }

    #[test]
    fn every_resolved_address_is_kept_in_order_without_repeats() {
        let resolver = fixed(&["::1", "127.0.0.1", "::1", "127.0.0.2"]);
        assert_eq!(
            resolve("dual.test", 8080, None, &resolver).unwrap(),
            Targets {
                first: addr("[::1]:8080"),
                rest: vec![addr("127.0.0.1:8080"), addr("127.0.0.2:8080")],
            }
        );
    }

    #[test]
    fn a_source_address_keeps_only_its_family() {
        let resolver = fixed(&["::1", "127.0.0.1", "127.0.0.2"]);
        let v4 = Some(addr("127.0.0.1:0"));
        assert_eq!(
            resolve("dual.test", 80, v4, &resolver).unwrap(),
            Targets {
                first: addr("127.0.0.1:80"),
                rest: vec![addr("127.0.0.2:80")],
            }
        );
        let v6 = Some(addr("[::1]:0"));
        assert_eq!(
            resolve("dual.test", 80, v6, &resolver).unwrap(),
            Targets {
                first: addr("[::1]:80"),
                rest: Vec::new(),
            }
        );
        // None of the family: the first address, whose connect then fails
        // with the socket's error.
        let v4_only = fixed(&["127.0.0.3", "127.0.0.4"]);
        assert_eq!(
            resolve("v4.test", 80, v6, &v4_only).unwrap(),
            Targets {
                first: addr("127.0.0.3:80"),
                rest: Vec::new(),
            }
        );
    }

    #[test]
    fn resolver_errors_and_empty_answers_are_resolve_errors() {
        let failing = Resolver(Some(Arc::new(|_: &str, _: u16| {
            Err(io::Error::other("no such name"))
        })));
        assert_eq!(
            resolve("gone.test", 80, None, &failing),
            Err(ConnectError::Resolve {
                host: "gone.test".to_owned(),
                reason: "no such name".to_owned()
            })
        );
        assert_eq!(
            resolve("empty.test", 80, None, &fixed(&[])),
            Err(ConnectError::Resolve {
                host: "empty.test".to_owned(),
                reason: "no addresses".to_owned()
            })
        );
    }

    #[test]
    fn failures_at_every_address_list_them_and_expose_the_last() {
        let error = ConnectError::AllAddressesFailed {
            attempts: vec![
                FailedAddress {
                    addr: addr("[::1]:8080"),
                    error: ConnectError::Refused,
                },
                FailedAddress {
                    addr: addr("127.0.0.1:8080"),
                    error: ConnectError::Status(503),
                },
            ],
        };
        assert_eq!(error.last_error(), &ConnectError::Status(503));
        assert_eq!(error.status(), Some(503));
        assert_eq!(error.errno(), None);
        assert_eq!(
            error.to_string(),
            "all 2 addresses of the host failed: [::1]:8080: connection refused; \
             127.0.0.1:8080: the server refused the upgrade with HTTP status 503"
        );
        let refused = ConnectError::AllAddressesFailed {
            attempts: vec![
                FailedAddress {
                    addr: addr("[::1]:1"),
                    error: ConnectError::Io {
                        errno: libc::ENETUNREACH,
                    },
                },
                FailedAddress {
                    addr: addr("127.0.0.1:1"),
                    error: ConnectError::Refused,
                },
            ],
        };
        assert_eq!(refused.errno(), Some(libc::ECONNREFUSED));
        assert_eq!(ConnectError::Refused.last_error(), &ConnectError::Refused);
    }

    #[test]
    fn invalid_client_settings_are_refused_at_start() {
        let cases = [
            (
                Client::builder().header("Host", "example.com"),
                "reserved header",
            ),
            (
                Client::builder().header("Sec-WebSocket-Extensions", "permessage-deflate"),
                "an extension offer (none is implemented)",
            ),
            (
                Client::builder().header("X-Bad", "a\r\nb"),
                "CRLF in a value",
            ),
            (
                Client::builder().subprotocols(&["chat", "has space"]),
                "non-token subprotocol",
            ),
        ];
        for (builder, what) in cases {
            match builder.validate() {
                Err(ConfigError::ClientRequest(_)) => {}
                other => panic!("{what}: expected ClientRequest, got {:?}", other.err()),
            }
        }
        assert_eq!(
            Client::builder().workers(0).validate().err(),
            Some(ConfigError::Workers(0))
        );
        assert_eq!(
            Client::builder()
                .close_timeout(Duration::ZERO)
                .validate()
                .err(),
            Some(ConfigError::ZeroCloseTimeout)
        );
    }

    #[test]
    fn a_refused_client_setting_is_not_called_a_server_setting() {
        struct Silent;
        impl Handler for Silent {
            type ConnData = ();
            fn on_message(&mut self, _: &mut crate::Conn<'_, Self>, _: crate::Message<'_>) {}
        }
        let error = Client::builder().workers(0).start(|_| Silent).unwrap_err();
        assert!(matches!(error, StartError::Config(ConfigError::Workers(0))));
        let message = error.to_string();
        assert!(!message.contains("server"), "{message}");
    }

    #[test]
    fn defaults_match_the_server_except_the_shutdown_reason() {
        let (settings, request, config) = Client::builder().validate().unwrap();
        assert_eq!(settings.shutdown_reason, DEFAULT_CLIENT_SHUTDOWN_REASON);
        assert_eq!(settings.close_timeout, crate::DEFAULT_CLOSE_TIMEOUT);
        assert_eq!(settings.ping_interval, Some(crate::DEFAULT_PING_INTERVAL));
        assert_eq!(request.handshake_timeout, crate::DEFAULT_HANDSHAKE_TIMEOUT);
        assert!(config.listen_config().is_none(), "a client never listens");
    }
}
