//! The application's side: the [`Handler`] trait and what its callbacks see.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use ringws_proto::close::CloseCode;
use ringws_proto::handshake::{PlainRequest, UpgradeRequest};

use crate::client::ConnectError;
use crate::conn::Conn;
use crate::ConnId;

/// A complete message from the peer, borrowed from the receive buffer (or
/// from the assembly buffer of a fragmented message); valid during the
/// callback only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message (valid UTF-8, checked).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(bytes) => bytes,
        }
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A complete message whose payload ringws assembled in a buffer of its own
/// (it was fragmented, or straddled receive buffers), handed to
/// [`Handler::on_owned_message`]. Taking the buffer lets a handler keep or
/// send the payload without copying it; whatever is not taken goes back to
/// the worker's buffer pool when the callback returns.
#[derive(Debug)]
pub struct OwnedMessage {
    payload: OwnedPayload,
}

#[derive(Debug)]
enum OwnedPayload {
    Text(String),
    Binary(Vec<u8>),
}

impl OwnedMessage {
    pub(crate) fn text(text: String) -> OwnedMessage {
        OwnedMessage {
            payload: OwnedPayload::Text(text),
        }
    }

    pub(crate) fn binary(bytes: Vec<u8>) -> OwnedMessage {
        OwnedMessage {
            payload: OwnedPayload::Binary(bytes),
        }
    }

    /// The message, borrowed (empty once its payload was taken).
    pub fn message(&self) -> Message<'_> {
        match &self.payload {
            OwnedPayload::Text(text) => Message::Text(text),
            OwnedPayload::Binary(bytes) => Message::Binary(bytes),
        }
    }

    /// Whether it is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self.payload, OwnedPayload::Text(_))
    }

    /// Takes a text message's payload, leaving it empty; `None` for a
    /// binary message.
    pub fn take_text(&mut self) -> Option<String> {
        match &mut self.payload {
            OwnedPayload::Text(text) => Some(std::mem::take(text)),
            OwnedPayload::Binary(_) => None,
        }
    }

    /// Takes the payload's bytes (text or binary), leaving it empty.
    pub fn take_bytes(&mut self) -> Vec<u8> {
        match &mut self.payload {
            OwnedPayload::Text(text) => std::mem::take(text).into_bytes(),
            OwnedPayload::Binary(bytes) => std::mem::take(bytes),
        }
    }

    /// What is left for the pool.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        match self.payload {
            OwnedPayload::Text(text) => text.into_bytes(),
            OwnedPayload::Binary(bytes) => bytes,
        }
    }
}

/// Where a connection is in the closing handshake (RFC 6455 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Both directions open.
    Open,
    /// Our Close was sent; waiting for the peer's.
    CloseSent,
    /// The peer's Close arrived; ours is not sent yet (only seen inside
    /// [`Handler::on_close_received`]).
    CloseReceived,
    /// Both Closes exchanged, or TCP is being torn down.
    Closed,
}

/// Who started the close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Initiator {
    /// This server: `close`, `terminate`, shutdown, keepalive timeout,
    /// protocol error, backpressure policy.
    Local,
    /// The peer: its Close, its FIN, or a reset.
    Remote,
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseKind {
    /// Close frames went both ways before TCP closed. Ours counts once
    /// the peer's TCP acknowledged it: an answer still queued (say, behind
    /// data the peer never read) or unacknowledged when the connection was
    /// reset makes the close [`Forced`](Self::Forced), or
    /// [`Abnormal`](Self::Abnormal) when a failed send ended it.
    Clean,
    /// ringws cut the connection without a completed closing handshake:
    /// `terminate()`, the close timeout, or the shutdown deadline.
    Forced,
    /// TCP ended without a completed closing handshake and without ringws
    /// forcing it: the peer's FIN or reset without a Close, a socket error,
    /// or a protocol error that failed the connection.
    Abnormal,
}

/// The final report on a connection, passed to [`Handler::on_closed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedInfo {
    /// The code of the peer's Close; 1005 when its Close carried none;
    /// 1006 when no Close was received (RFC 6455 §7.1.5).
    pub code: CloseCode,
    /// The reason of the peer's Close (empty when none was received).
    pub reason: String,
    /// The code of the Close we sent (queued), if we sent one; whether it
    /// arrived shows in `kind`.
    pub sent: Option<CloseCode>,
    /// Who started the close.
    pub initiator: Initiator,
    /// How it ended.
    pub kind: CloseKind,
    /// From the first Close (sent or received), or the decision to close
    /// TCP, until the connection was gone; zero when it ended abruptly.
    pub close_duration: Duration,
}

/// A WebSocket upgrade request, shown to [`Handler::on_upgrade`].
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub(crate) inner: UpgradeRequest<'a>,
}

impl<'a> Request<'a> {
    /// The request target, query included, e.g. `/chat?room=1`.
    pub fn path(&self) -> &'a str {
        self.inner.path()
    }

    /// The `Host` header.
    pub fn host(&self) -> &'a str {
        self.inner.host()
    }

    /// The `Origin` header, if any.
    pub fn origin(&self) -> Option<&'a str> {
        self.inner.origin()
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.inner.headers().get(name)
    }

    /// The subprotocols the client offered, in its order of preference.
    pub fn subprotocols(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.inner.subprotocols()
    }
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("path", &self.path())
            .field("host", &self.host())
            .field("origin", &self.origin())
            .finish_non_exhaustive()
    }
}

/// A plain (non-upgrade) HTTP request, shown to the
/// [`plain_http`](crate::ServerBuilder::plain_http) hook.
#[derive(Clone, Copy)]
pub struct HttpRequest<'a> {
    pub(crate) inner: PlainRequest<'a>,
}

impl<'a> HttpRequest<'a> {
    /// The method, e.g. `GET`.
    pub fn method(&self) -> &'a str {
        self.inner.method()
    }

    /// The request target, e.g. `/metrics`.
    pub fn path(&self) -> &'a str {
        self.inner.path()
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.inner.headers().get(name)
    }
}

impl fmt::Debug for HttpRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method())
            .field("path", &self.path())
            .finish_non_exhaustive()
    }
}

/// The answer to a plain HTTP request. Sent with `Connection: close` and a
/// `Content-Length`; the connection closes after it. The answer to a `HEAD`
/// request is sent without its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code (200–599; anything else is answered 500). A 204 or 304
    /// is sent without a body.
    pub status: u16,
    /// `Content-Type` value.
    pub content_type: Cow<'static, str>,
    /// More headers, say `Allow` beside a 405 (RFC 9110 §15.5.6). A name
    /// that is not a token, a value with a control character, one of
    /// `Connection`, `Content-Length`, `Transfer-Encoding` and `Upgrade`
    /// (written by ringws or not allowed), or a `Content-Type` (that is
    /// [`content_type`](Self::content_type)) gets the request a 500 instead.
    pub headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A response with this status, content type and body.
    pub fn new(
        status: u16,
        content_type: impl Into<Cow<'static, str>>,
        body: impl Into<Vec<u8>>,
    ) -> HttpResponse {
        HttpResponse {
            status,
            content_type: content_type.into(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// This response with one more header.
    pub fn with_header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> HttpResponse {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// The application's event handler. One instance per worker, created on the
/// worker's thread by the factory passed to
/// [`ServerBuilder::start`](crate::ServerBuilder::start); it need not be
/// `Send`. Every callback of a connection runs on the core that owns it, and
/// callbacks are never re-entered: whatever a callback asks for (sends,
/// closes) takes effect after it returns.
///
/// Per-connection application state lives in [`ConnData`](Self::ConnData),
/// created with `Default` when the connection is accepted (a client
/// connection's is passed to
/// [`ClientControl::connect`](crate::ClientControl::connect)), reachable with
/// [`Conn::data_mut`], and handed back by value to
/// [`on_closed`](Self::on_closed).
///
/// # Panics in callbacks
///
/// A callback that panics fails only the connection it ran for: the peer
/// gets Close 1011 ("internal error") and TCP is closed, nothing more is
/// read from it, and [`on_closed`](Self::on_closed) follows with
/// [`CloseKind::Abnormal`]. A panic in [`on_upgrade`](Self::on_upgrade), or
/// in the origin check, subprotocol selection or `plain_http` hook, answers
/// that request 500. The worker and its other connections go on, and
/// [`WorkerStats::handler_panics`](crate::WorkerStats::handler_panics)
/// counts each panic. The handler itself is called again afterwards, so
/// state it shares between connections must stay usable after a panic
/// (or build with `panic = "abort"`, which ends the process instead).
pub trait Handler: Sized + 'static {
    /// Per-connection application state.
    type ConnData: Default + 'static;

    /// A valid upgrade request arrived (after the origin check). Return
    /// `Err(status)` to refuse it with that HTTP status (e.g. 401, 404; a
    /// status outside 400–599 is answered 500); `data` may be filled from
    /// the request (say, the room in the path).
    fn on_upgrade(&mut self, request: &Request<'_>, data: &mut Self::ConnData) -> Result<(), u16> {
        let _ = (request, data);
        Ok(())
    }

    /// The handshake completed: the connection is open.
    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        let _ = conn;
    }

    /// A complete message arrived.
    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>);

    /// A complete message arrived that ringws assembled in a buffer of its
    /// own (fragmented, or straddling receive buffers: in practice the
    /// large ones). Override it to take the buffer instead of copying the
    /// payload, e.g. to echo or forward it with
    /// [`Conn::send_binary_owned`] or [`ConnHandle::send_binary_owned`](crate::ConnHandle::send_binary_owned);
    /// a buffer sent that way returns to the pool once written. By default
    /// it calls [`on_message`](Self::on_message) with the borrowed message.
    fn on_owned_message(&mut self, conn: &mut Conn<'_, Self>, message: &mut OwnedMessage) {
        self.on_message(conn, message.message());
    }

    /// The peer's Close arrived: `code` is `None` when it carried none. If
    /// we had not sent a Close yet (the half-closed state, [`State::CloseReceived`]),
    /// the callback may still send messages and may reply with its own
    /// [`Conn::close`]; when it returns without doing so, ringws replies
    /// echoing the peer's code (1000 for a codeless Close). TCP closes after.
    fn on_close_received(
        &mut self,
        conn: &mut Conn<'_, Self>,
        code: Option<CloseCode>,
        reason: &str,
    ) {
        let _ = (conn, code, reason);
    }

    /// The connection is gone. Fires exactly once for every connection that
    /// got [`on_open`](Self::on_open); `id` is stale from now on.
    fn on_closed(&mut self, id: ConnId, data: Self::ConnData, info: &ClosedInfo) {
        let _ = (id, data, info);
    }

    /// A client connection ([`ClientControl::connect`](crate::ClientControl::connect))
    /// did not open: the TCP connect or the opening handshake failed
    /// ([`ConnectError::Refused`], [`ConnectError::Timeout`],
    /// [`ConnectError::Status`] with the server's HTTP status,
    /// [`ConnectError::Handshake`] for a bad accept key, ...). Fires exactly
    /// once for every attempt that got an id and never reached
    /// [`on_open`](Self::on_open) (not for one whose `connect` returned an
    /// `Err`: that was its report), and for attempts queued with
    /// [`connect_queued`](crate::ClientControl::connect_queued) that failed
    /// before getting one (`id` is then `None`), such as a host name queued
    /// from a callback that did not resolve ([`ConnectError::Resolve`]). `data` is the value given
    /// to `connect`. For a host with several addresses, `id` is that of the
    /// last socket tried (not always the id `connect` returned) and `error`
    /// is [`ConnectError::AllAddressesFailed`] when more than one was tried.
    fn on_connect_failed(
        &mut self,
        id: Option<ConnId>,
        data: Self::ConnData,
        error: &ConnectError,
    ) {
        let _ = (id, data, error);
    }

    /// A Ping arrived (the Pong is already queued).
    fn on_ping(&mut self, conn: &mut Conn<'_, Self>, payload: &[u8]) {
        let _ = (conn, payload);
    }

    /// A Pong arrived (keepalive Pongs included).
    fn on_pong(&mut self, conn: &mut Conn<'_, Self>, payload: &[u8]) {
        let _ = (conn, payload);
    }

    /// The connection's send queue, after reaching
    /// [`max_queued_bytes`](crate::ServerBuilder::max_queued_bytes), fell to
    /// half of it: a good moment to resume sending.
    fn on_drain(&mut self, conn: &mut Conn<'_, Self>) {
        let _ = conn;
    }
}
