//! Typed errors of the public API.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use ringws_proto::close::MAX_CLOSE_REASON_LEN;

use crate::config::ConfigError;

/// Why [`ServerBuilder::start`](crate::ServerBuilder::start) or
/// [`ClientBuilder::start`](crate::ClientBuilder::start) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// A setting was refused.
    Config(ConfigError),
    /// The listening address could not be bound.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
    /// The engine could not start (io_uring unavailable, thread spawn
    /// failure, ...); the message names the cause and the fix.
    Engine(Box<dyn std::error::Error + Send + Sync>),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(error) => write!(f, "invalid configuration: {error}"),
            StartError::Bind { addr, source } => write!(f, "binding {addr} failed: {source}"),
            StartError::Engine(error) => write!(f, "starting the engine failed: {error}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Config(error) => Some(error),
            StartError::Bind { source, .. } => Some(source),
            StartError::Engine(error) => Some(&**error),
        }
    }
}

impl From<ConfigError> for StartError {
    fn from(error: ConfigError) -> Self {
        StartError::Config(error)
    }
}

impl From<ringws_reactor::StartError> for StartError {
    fn from(error: ringws_reactor::StartError) -> Self {
        match error {
            ringws_reactor::StartError::Listen { addr, source } => {
                StartError::Bind { addr, source }
            }
            other => StartError::Engine(Box::new(other)),
        }
    }
}

/// Why a message or Ping was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SendError {
    /// The connection no longer exists (closed, or the id is stale).
    Gone,
    /// Our Close was sent (or the connection is being torn down): no data
    /// frame may follow it.
    Closing,
    /// The send queue is over its limit: the message was dropped (and, under
    /// [`Backpressure::Close`](crate::Backpressure::Close), the connection
    /// is now closing).
    Dropped,
    /// A Ping payload over 125 bytes.
    ControlPayloadTooLong,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Gone => f.write_str("the connection is gone"),
            SendError::Closing => f.write_str("the connection is closing; nothing more is sent"),
            SendError::Dropped => f.write_str("send queue over its limit; message dropped"),
            SendError::ControlPayloadTooLong => f.write_str("ping payload over 125 bytes"),
        }
    }
}

impl std::error::Error for SendError {}

/// Why a close request was refused. Nothing is sent when this is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseError {
    /// The code may not be sent: only 1000–1003, 1007–1014 and 3000–4999
    /// may (so 999, 1004, 1005, 1006, 1015, 1016, 2999 and 5000 fail).
    InvalidCode(u16),
    /// The reason has this many bytes, more than the 123 a Close can carry.
    /// Reasons are never truncated.
    ReasonTooLong(usize),
    /// The reason is not valid UTF-8.
    ReasonNotUtf8,
    /// The connection no longer exists (handles only).
    Gone,
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseError::InvalidCode(code) => write!(
                f,
                "close code {code} may not be sent (allowed: 1000-1003, 1007-1014, 3000-4999)"
            ),
            CloseError::ReasonTooLong(len) => write!(
                f,
                "close reason of {len} bytes exceeds the maximum of {MAX_CLOSE_REASON_LEN}"
            ),
            CloseError::ReasonNotUtf8 => f.write_str("close reason is not valid UTF-8"),
            CloseError::Gone => f.write_str("the connection is gone"),
        }
    }
}

impl std::error::Error for CloseError {}

impl From<ringws_proto::close::CloseError> for CloseError {
    fn from(error: ringws_proto::close::CloseError) -> Self {
        match error {
            ringws_proto::close::CloseError::InvalidCode(code) => CloseError::InvalidCode(code),
            ringws_proto::close::CloseError::ReasonTooLong(len) => CloseError::ReasonTooLong(len),
            ringws_proto::close::CloseError::ReasonNotUtf8 => CloseError::ReasonNotUtf8,
        }
    }
}

/// The connection a [`ConnHandle`](crate::ConnHandle) names no longer exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gone;

impl fmt::Display for Gone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the connection is gone")
    }
}

impl std::error::Error for Gone {}

/// Why the server's workers ended other than by a requested stop.
#[derive(Debug)]
pub struct ServerError(pub(crate) ringws_reactor::WorkerError);

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}

/// Why [`ServerControl::shutdown`](crate::ServerControl::shutdown) refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownError {
    /// Called on one of the engine's own worker threads (inside a
    /// callback): waiting there for the workers would stall the worker it
    /// waits for. Use
    /// [`ServerControl::begin_shutdown`](crate::ServerControl::begin_shutdown).
    OnWorkerThread,
}

impl fmt::Display for ShutdownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShutdownError::OnWorkerThread => f.write_str(
                "shutdown() waits for the workers and cannot run on one of them; \
                 use begin_shutdown() in callbacks",
            ),
        }
    }
}

impl std::error::Error for ShutdownError {}
