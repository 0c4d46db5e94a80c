//! One connection: its state ([`Session`]), the reference callbacks get
//! ([`Conn`]), and the lifecycle rules (closing, keepalive, backpressure)
//! written once as methods of [`Conn`] so that callbacks, timers and
//! cross-thread commands all go through the same code.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ringws_proto::close::{validate_close, CloseCode};
use ringws_proto::frame::{Opcode, MAX_CONTROL_PAYLOAD};
use ringws_proto::handshake::ServerHandshake;
use ringws_proto::{Connection, Event, ProtocolError, State as ProtoState};
use ringws_reactor::{Chunk, Io, TimerKey};

use crate::callback::{guarded, HANDLER_PANIC_REASON};
use crate::engine::{Engine, TimerKind, TimerValue, Worker};
use crate::error::{CloseError, SendError};
use crate::handle::{head_chunk, ConnHandle, OutFrame, PreparedMessage};
use crate::handler::{CloseKind, ClosedInfo, Handler, Initiator, Message, OwnedMessage, State};
use crate::server::ServerControl;
use crate::stats::Gauge;
use crate::{Backpressure, ConnId, WorkerId};

/// Reason of the Close sent when a keepalive Pong is late.
pub(crate) const KEEPALIVE_TIMEOUT_REASON: &str = "keepalive ping timeout";
/// Reason of the Close sent by the [`Backpressure::Close`] policy.
pub(crate) const BACKPRESSURE_REASON: &str = "send queue limit exceeded";

/// Session flags (a `u16` bit set).
pub(crate) mod flag {
    /// ringws aborted the connection (terminate, close timeout, shutdown).
    pub const FORCED: u16 = 1 << 0;
    /// The peer's FIN or a socket error ended the input without a Close.
    pub const PEER_GONE: u16 = 1 << 1;
    /// TCP is being closed: nothing more is sent or read.
    pub const TCP_CLOSING: u16 = 1 << 2;
    /// The connection failed on a protocol error.
    pub const FAILED: u16 = 1 << 3;
    /// Open when shutdown began: counted in the shutdown report.
    pub const IN_SHUTDOWN: u16 = 1 << 4;
    /// Terminated at the shutdown deadline.
    pub const SHUTDOWN_FORCED: u16 = 1 << 5;
    /// Opened by this side (client role, see `crate::client`).
    pub const CLIENT: u16 = 1 << 6;
    /// Reading is paused because the send queue reached its limit while
    /// Pongs were being queued, or after a message under
    /// `Backpressure::PauseReading`; it resumes when the queue drains.
    pub const INPUT_HELD: u16 = 1 << 7;
    /// The application paused reading (`Conn::pause_reading`).
    pub const READING_PAUSED: u16 = 1 << 8;
}

/// Where a connection is.
pub(crate) enum Stage {
    /// Reading the HTTP upgrade request.
    Handshake(ServerHandshake),
    /// Refused, answered, or timed out: TCP is closing.
    Refused,
    /// Client role: connecting, or waiting for the server's `101`.
    Connecting(Box<crate::client::Connecting>),
    /// A WebSocket connection (open or closing).
    Open(Connection),
}

/// What a closing connection remembers. Allocated only once closing starts,
/// so an open connection does not pay for it.
pub(crate) struct Closing {
    pub started: Instant,
    pub initiator: Initiator,
    /// The code of our Close, once sent.
    pub sent: Option<CloseCode>,
    /// The code of the peer's Close (`None`: it carried none).
    pub received: Option<CloseCode>,
    /// The reason of the peer's Close.
    pub reason: String,
    /// Our Close was queued but still on its way (in the send queue, or
    /// unacknowledged by the peer's TCP) when the connection was cut, so the
    /// closing handshake did not complete whatever the protocol state says.
    pub close_in_transit: bool,
}

/// Everything the engine keeps per connection (next to the reactor's slot).
pub(crate) struct Session<D> {
    pub stage: Stage,
    pub data: D,
    /// Pending keepalive timer: the next Ping, or the Pong deadline while a
    /// Ping is unanswered.
    pub keepalive: Option<TimerKey>,
    /// Pending handshake or close deadline.
    pub deadline: Option<TimerKey>,
    /// Payload (as a counter) of the unanswered keepalive Ping; 0 for none.
    pub awaiting_pong: u64,
    pub closing: Option<Box<Closing>>,
    pub subprotocol: Option<Box<str>>,
    pub gauge: Gauge,
    pub flags: u16,
}

impl<D: Default> Session<D> {
    pub(crate) fn handshaking(parser: ServerHandshake) -> Session<D> {
        Session {
            stage: Stage::Handshake(parser),
            data: D::default(),
            keepalive: None,
            deadline: None,
            awaiting_pong: 0,
            closing: None,
            subprotocol: None,
            gauge: Gauge::Handshaking,
            flags: 0,
        }
    }
}

impl<D> Session<D> {
    pub(crate) fn has(&self, bits: u16) -> bool {
        self.flags & bits != 0
    }

    pub(crate) fn set(&mut self, bits: u16) {
        self.flags |= bits;
    }

    pub(crate) fn clear(&mut self, bits: u16) {
        self.flags &= !bits;
    }

    pub(crate) fn proto(&self) -> Option<&Connection> {
        match &self.stage {
            Stage::Open(proto) => Some(proto),
            Stage::Handshake(_) | Stage::Refused | Stage::Connecting(_) => None,
        }
    }

    /// Our Close, if queued, will never reach the peer (see
    /// [`Closing::close_in_transit`]).
    pub(crate) fn mark_close_in_transit(&mut self) {
        let close_queued = self.proto().is_some_and(Connection::close_sent);
        if let Some(closing) = self.closing.as_mut().filter(|_| close_queued) {
            closing.close_in_transit = true;
        }
    }

    /// Both Closes went across: ours queued and acknowledged as far as we
    /// know, the peer's received.
    pub(crate) fn closing_handshake_complete(&self) -> bool {
        let in_transit = self
            .closing
            .as_ref()
            .is_some_and(|closing| closing.close_in_transit);
        !in_transit
            && self
                .proto()
                .is_some_and(|proto| proto.close_sent() && proto.close_received())
    }

    pub(crate) fn proto_mut(&mut self) -> Option<&mut Connection> {
        match &mut self.stage {
            Stage::Open(proto) => Some(proto),
            Stage::Handshake(_) | Stage::Refused | Stage::Connecting(_) => None,
        }
    }

    pub(crate) fn is_websocket(&self) -> bool {
        matches!(self.stage, Stage::Open(_))
    }

    /// The public state of a WebSocket connection.
    pub(crate) fn state(&self) -> State {
        if self.has(flag::TCP_CLOSING) {
            return State::Closed;
        }
        match self.proto().map(Connection::state) {
            Some(ProtoState::Open) => State::Open,
            Some(ProtoState::CloseSent) => State::CloseSent,
            Some(ProtoState::CloseReceived) => State::CloseReceived,
            Some(ProtoState::Closed) | None => State::Closed,
        }
    }

    /// The final report, from what the session saw.
    pub(crate) fn closed_info(&mut self, socket_error: bool, now: Instant) -> ClosedInfo {
        let handshake_complete = self.closing_handshake_complete();
        let received_close = self.proto().is_some_and(Connection::close_received);
        let closing = self.closing.take();
        let code = match (&closing, received_close) {
            (Some(closing), true) => closing.received.unwrap_or(CloseCode::NO_STATUS_RECEIVED),
            _ => CloseCode::ABNORMAL,
        };
        let peer_gone = self.has(flag::PEER_GONE) || socket_error;
        // A connection ringws failed (protocol error, panicking callback) is
        // abnormal even when Closes then crossed.
        let kind = if handshake_complete && !self.has(flag::FAILED) {
            CloseKind::Clean
        } else if self.has(flag::FAILED) || peer_gone {
            CloseKind::Abnormal
        } else if self.has(flag::FORCED) {
            CloseKind::Forced
        } else {
            CloseKind::Abnormal
        };
        let initiator = match &closing {
            Some(closing) => closing.initiator,
            None if self.has(flag::FORCED) => Initiator::Local,
            None => Initiator::Remote,
        };
        let close_duration = closing.as_ref().map_or(Duration::ZERO, |closing| {
            now.saturating_duration_since(closing.started)
        });
        let (sent, reason) = match closing {
            Some(closing) => (
                closing.sent,
                if received_close {
                    closing.reason
                } else {
                    String::new()
                },
            ),
            None => (None, String::new()),
        };
        ClosedInfo {
            code,
            reason,
            sent,
            initiator,
            kind,
            close_duration,
        }
    }
}

/// A connection, as seen from inside a [`Handler`] callback on its own
/// worker. Everything it does is queued and takes effect after the
/// callback returns (sends leave at the end of the loop turn, in one
/// vectored send per connection).
pub struct Conn<'a, H: Handler> {
    pub(crate) io: Io<'a, Engine<H>>,
    pub(crate) id: ConnId,
    pub(crate) session: &'a mut Session<H::ConnData>,
    pub(crate) worker: &'a mut Worker,
}

impl<H: Handler> fmt::Debug for Conn<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("id", &self.id)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl<'a, H: Handler> Conn<'a, H> {
    // ----- public API -----

    /// The connection's id (stable for its whole life, never reused).
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The worker that owns the connection.
    pub fn worker(&self) -> WorkerId {
        self.id.worker()
    }

    /// A handle for reaching this connection from any thread.
    pub fn handle(&self) -> ConnHandle {
        ConnHandle::new(self.id, self.worker.link().clone())
    }

    /// The server: broadcast, stats, handles of other connections.
    pub fn server(&self) -> &ServerControl {
        &self.worker.control
    }

    /// The application's per-connection state.
    pub fn data(&self) -> &H::ConnData {
        &self.session.data
    }

    /// Mutable access to the application's per-connection state.
    pub fn data_mut(&mut self) -> &mut H::ConnData {
        &mut self.session.data
    }

    /// Where the closing handshake stands.
    pub fn state(&self) -> State {
        self.session.state()
    }

    /// Stops reading this connection until
    /// [`resume_reading`](Self::resume_reading): no further message, Ping,
    /// Pong or Close of the peer's is delivered, bytes already received wait, and once the
    /// kernel's receive buffer is full TCP slows the peer. Takes effect when
    /// the current callback returns. For flow control the application
    /// drives (work handed to another thread, a slow downstream); see
    /// [`ConnHandle::resume_reading`](crate::ConnHandle::resume_reading) to
    /// resume from elsewhere. Timers go on: a peer whose Pong waits behind
    /// unread data can meet the pong timeout. Starting a close resumes
    /// reading, as the closing handshake needs the peer's Close. Does
    /// nothing on a connection that is not open.
    pub fn pause_reading(&mut self) {
        if self.session.proto().is_none() || self.session.has(flag::TCP_CLOSING) {
            return;
        }
        if !self.session.has(flag::READING_PAUSED) {
            self.session.set(flag::READING_PAUSED);
            if !self.session.has(flag::INPUT_HELD) {
                self.io.pause_recv(self.id);
            }
        }
    }

    /// Resumes reading after [`pause_reading`](Self::pause_reading): what
    /// arrived meanwhile is delivered first. Reading stays stopped while
    /// the backpressure rules hold it (a full send queue, see
    /// [`Backpressure`]).
    pub fn resume_reading(&mut self) {
        if self.session.has(flag::READING_PAUSED) {
            self.session.clear(flag::READING_PAUSED);
            if !self.session.has(flag::INPUT_HELD) && !self.session.has(flag::TCP_CLOSING) {
                self.io.resume_recv(self.id);
            }
        }
    }

    /// Whether the application paused reading (see
    /// [`pause_reading`](Self::pause_reading)).
    pub fn is_reading_paused(&self) -> bool {
        self.session.has(flag::READING_PAUSED)
    }

    /// Bytes queued and not yet written to the socket.
    pub fn queued_bytes(&self) -> usize {
        self.io.queued_bytes(self.id).unwrap_or(0)
    }

    /// The peer's address (`None` if the socket is already gone).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.io.peer_addr(self.id).ok()
    }

    /// The subprotocol selected during the handshake.
    pub fn subprotocol(&self) -> Option<&str> {
        self.session.subprotocol.as_deref()
    }

    /// Queues a text message (copied once, header and payload into one buffer).
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.send_copied(Opcode::Text, text.as_bytes())
    }

    /// Queues a binary message (copied once, header and payload into one buffer).
    pub fn send_binary(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        self.send_copied(Opcode::Binary, bytes)
    }

    /// Queues a text message without copying it: header and payload go out
    /// as two chunks of one vectored send.
    pub fn send_text_owned(&mut self, text: String) -> Result<(), SendError> {
        self.send_owned(Opcode::Text, text.into_bytes())
    }

    /// Queues a binary message without copying it.
    pub fn send_binary_owned(&mut self, bytes: Vec<u8>) -> Result<(), SendError> {
        self.send_owned(Opcode::Binary, bytes)
    }

    /// Queues a prepared message (shared with other connections, not copied).
    pub fn send_prepared(&mut self, message: &PreparedMessage) -> Result<(), SendError> {
        self.send_frame(OutFrame::Prepared(message.clone()))
    }

    /// Sends `message` to every open connection of the server, this one
    /// included, through every worker's inbox (encoded once). It reaches
    /// this connection after whatever this callback queues on it directly:
    /// `send_text("a")`, `broadcast(b)`, `send_text("c")` arrive as a, c,
    /// b.
    pub fn broadcast(&self, message: &PreparedMessage) {
        self.worker.control.broadcast(message);
    }

    /// Queues a Ping (at most 125 bytes of payload). At the send queue's
    /// limit it is refused like a message ([`SendError::Dropped`], counted,
    /// and the [`Backpressure`] policy applies), so pinging a peer that
    /// reads nothing cannot grow the queue without bound. The Pongs ringws
    /// answers with, its keepalive Pings and Closes are never refused.
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlPayloadTooLong);
        }
        self.writable()?;
        self.admit()?;
        let proto = self.session.proto_mut().ok_or(SendError::Closing)?;
        proto.ping(payload).map_err(|_| SendError::Closing)?;
        self.flush_proto();
        Ok(())
    }

    /// Starts the closing handshake: validates `code` and `reason` (a code
    /// that may be sent, a UTF-8 reason of at most 123 bytes, never
    /// truncated), sends Close and arms the close timeout. On error nothing
    /// is sent. On a connection already closing it does nothing.
    pub fn close(&mut self, code: u16, reason: &str) -> Result<(), CloseError> {
        self.close_bytes(code, reason.as_bytes())
    }

    /// [`close`](Self::close) with a reason given as bytes, refused with
    /// [`CloseError::ReasonNotUtf8`] unless it is UTF-8.
    pub fn close_bytes(&mut self, code: u16, reason: &[u8]) -> Result<(), CloseError> {
        validate_close(code, reason)?;
        let reason = std::str::from_utf8(reason).map_err(|_| CloseError::ReasonNotUtf8)?;
        self.start_close(code, reason);
        Ok(())
    }

    /// Closes the socket at once without a Close frame (RST); queued bytes
    /// are discarded. `on_closed` reports 1006, local, forced; once the
    /// peer's Close has arrived (inside `on_close_received`), the peer's
    /// code, remote, forced.
    pub fn terminate(&mut self) {
        self.session.set(flag::FORCED | flag::TCP_CLOSING);
        self.begin_closing(Initiator::Local);
        self.cut();
    }

    /// Resets the connection, first noting whether our Close is still on
    /// its way: the reset discards it, so it never completes the closing
    /// handshake.
    fn cut(&mut self) {
        self.note_close_in_transit();
        self.io.terminate(self.id);
    }

    /// Notes whether our Close, if queued, is still on its way: in the
    /// send queue, or unacknowledged by the peer's TCP.
    fn note_close_in_transit(&mut self) {
        let close_queued = self.session.proto().is_some_and(Connection::close_sent);
        if close_queued && self.io.unacknowledged_bytes(self.id) != Some(0) {
            self.session.mark_close_in_transit();
        }
    }

    // ----- sending -----

    /// Checks that a data frame may be queued.
    fn writable(&self) -> Result<(), SendError> {
        if self.session.has(flag::TCP_CLOSING) {
            return Err(SendError::Closing);
        }
        match self.session.proto() {
            Some(proto) if !proto.close_sent() => Ok(()),
            _ => Err(SendError::Closing),
        }
    }

    /// Applies the backpressure policy: `Err(Dropped)` when the queue is at
    /// its limit.
    fn admit(&mut self) -> Result<(), SendError> {
        let settings = self.worker.settings();
        let limit = settings.max_queued_bytes;
        let policy = settings.backpressure;
        if self.queued_bytes() < limit {
            return Ok(());
        }
        let counters = &self.worker.link().counters;
        counters.dropped_messages.inc();
        if let Backpressure::Close(code) = policy {
            counters.backpressure_closes.inc();
            self.start_close(code.0, BACKPRESSURE_REASON);
        }
        Err(SendError::Dropped)
    }

    fn count_in(&self, payload_len: usize) {
        let counters = &self.worker.link().counters;
        counters.messages_in.inc();
        counters.bytes_in.add(payload_len as u64);
    }

    fn count_out(&self, payload_len: usize) {
        let counters = &self.worker.link().counters;
        counters.messages_out.inc();
        counters.bytes_out.add(payload_len as u64);
    }

    fn send_copied(&mut self, opcode: Opcode, payload: &[u8]) -> Result<(), SendError> {
        self.writable()?;
        self.admit()?;
        let proto = self.session.proto_mut().ok_or(SendError::Closing)?;
        let frame_head = proto
            .data_frame_head(opcode, payload.len(), true)
            .map_err(|_| SendError::Closing)?;
        let head = frame_head.as_bytes();
        let queued = if frame_head.mask().is_none() {
            // Server role: a large payload still in the receive buffer it
            // arrived in (an echo, a relay) is sent from there, uncopied;
            // anything else is copied as below.
            self.io.send_with_payload(self.id, head, payload)
        } else {
            // Appended to the frames queued before it in this turn, so a
            // burst of replies leaves in one buffer; `append_payload` masks
            // as it copies (client role).
            self.io
                .send_with(self.id, head.len() + payload.len(), |bytes| {
                    bytes.extend_from_slice(head);
                    frame_head.append_payload(bytes, payload);
                })
        };
        queued.map_err(|_| SendError::Closing)?;
        self.count_out(payload.len());
        Ok(())
    }

    fn send_owned(&mut self, opcode: Opcode, payload: Vec<u8>) -> Result<(), SendError> {
        self.send_frame(OutFrame::Split {
            head: head_chunk(opcode, payload.len()),
            payload,
        })
    }

    /// Queues a frame built off the worker (handles, broadcast, owned sends).
    pub(crate) fn send_frame(&mut self, frame: OutFrame) -> Result<(), SendError> {
        self.writable()?;
        self.admit()?;
        let frame = crate::client::mask_out_frame(self.session, frame)?;
        let payload_len = frame.payload_len();
        let sent = match frame {
            OutFrame::Whole { bytes, .. } => self.io.send(self.id, bytes),
            OutFrame::Split { head, payload } => self
                .io
                .send(self.id, head)
                .and_then(|_| self.io.send(self.id, payload)),
            OutFrame::Prepared(message) => self.io.send(self.id, message.into_chunk()),
        };
        sent.map_err(|_| SendError::Closing)?;
        self.count_out(payload_len);
        Ok(())
    }

    /// Moves the protocol's own output (Pongs, Closes) to the send queue.
    /// Called after every protocol call, so that frames leave in the order
    /// they were produced.
    pub(crate) fn flush_proto(&mut self) {
        let Some(proto) = self.session.proto_mut() else {
            return;
        };
        let output = proto.pending_output();
        if output.is_empty() {
            return;
        }
        let len = output.len();
        let chunk = Chunk::copied(output);
        // Refused only when TCP is already closing: nothing can go out then.
        let _ = self.io.send(self.id, chunk);
        proto.consume_output(len);
    }

    // ----- closing -----

    /// Records that closing started (once) and moves the gauges; stops the
    /// keepalive and arms the close timeout, which runs from this moment
    /// whatever the state of the send queue.
    fn begin_closing(&mut self, initiator: Initiator) {
        if self.session.closing.is_some() {
            return;
        }
        self.session.closing = Some(Box::new(Closing {
            started: Instant::now(),
            initiator,
            sent: None,
            received: None,
            reason: String::new(),
            close_in_transit: false,
        }));
        let to = match initiator {
            Initiator::Local => Gauge::ClosingLocal,
            Initiator::Remote => Gauge::ClosingRemote,
        };
        let counters = &self.worker.link().counters;
        counters.shift(self.session.gauge, to);
        self.session.gauge = to;
        if let Some(key) = self.session.keepalive.take() {
            self.io.cancel_timer(key);
        }
        self.session.awaiting_pong = 0;
        self.arm_deadline(self.worker.settings().close_timeout);
    }

    /// Replaces the deadline timer.
    pub(crate) fn arm_deadline(&mut self, after: Duration) {
        if let Some(key) = self.session.deadline.take() {
            self.io.cancel_timer(key);
        }
        let value = TimerValue {
            conn: self.id,
            kind: TimerKind::Deadline,
        };
        self.session.deadline = Some(self.io.arm_timer(after, value));
    }

    /// Sends our Close (code and reason already validated) unless one was
    /// sent or TCP is closing.
    pub(crate) fn start_close(&mut self, code: u16, reason: &str) {
        if self.session.has(flag::TCP_CLOSING) {
            return;
        }
        let Some(proto) = self.session.proto_mut() else {
            return;
        };
        if proto.close_sent() || proto.close(code, reason).is_err() {
            return;
        }
        self.flush_proto();
        self.begin_closing(Initiator::Local);
        if let Some(closing) = self.session.closing.as_mut() {
            closing.sent = Some(CloseCode(code));
        }
        // The closing handshake needs the peer's Close read.
        self.resume_reading();
    }

    /// Closes TCP gracefully (flush, FIN, wait for the peer's FIN), bounded
    /// by the close timeout.
    pub(crate) fn close_tcp(&mut self, initiator: Initiator) {
        if self.session.has(flag::TCP_CLOSING) {
            return;
        }
        self.begin_closing(initiator);
        self.session.set(flag::TCP_CLOSING);
        self.io.close(self.id);
    }

    /// The peer's Close arrived (see [`Handler::on_close_received`]).
    fn close_received(&mut self, handler: &mut H, code: Option<CloseCode>, reason: &str) {
        self.begin_closing(Initiator::Remote);
        if let Some(closing) = self.session.closing.as_mut() {
            closing.received = code;
            closing.reason = reason.to_owned();
        }
        self.call(handler, |handler, conn| {
            handler.on_close_received(conn, code, reason);
        });
        let waiting_for_reply = self
            .session
            .proto()
            .is_some_and(|proto| proto.state() == ProtoState::CloseReceived);
        if waiting_for_reply {
            // Echo the peer's code; a codeless Close gets 1000, since an
            // empty reply cannot be asked of the protocol layer.
            let echo = code.map_or(CloseCode::NORMAL.0, |code| code.0);
            self.start_close(echo, "");
        }
        // The server closes TCP first; a client waits for it (peer_eof),
        // bounded by the close timeout.
        if !self.session.has(flag::CLIENT) {
            self.close_tcp(Initiator::Remote);
        }
    }

    /// Runs an application callback of this connection. A panic in it
    /// fails the connection with 1011 (see `crate::callback`): nothing more
    /// is read, and the handler hears of it once more, in `on_closed`.
    pub(crate) fn call(&mut self, handler: &mut H, callback: impl FnOnce(&mut H, &mut Self)) {
        if guarded(|| callback(handler, self)).is_err() {
            self.fail_after_panic();
        }
    }

    fn fail_after_panic(&mut self) {
        self.worker.link().counters.handler_panics.inc();
        if self.session.has(flag::TCP_CLOSING) {
            return;
        }
        if !self.session.is_websocket() {
            self.session.set(flag::TCP_CLOSING | flag::FORCED);
            self.io.terminate(self.id);
            return;
        }
        self.session.set(flag::FAILED);
        self.start_close(CloseCode::INTERNAL_ERROR.0, HANDLER_PANIC_REASON);
        self.close_tcp(Initiator::Local);
    }

    fn protocol_error(&mut self, error: ProtocolError) {
        self.worker.link().counters.protocol_errors.inc();
        self.session.set(flag::FAILED);
        // The protocol layer queued its Close with the error's code.
        self.flush_proto();
        self.begin_closing(Initiator::Local);
        if let Some(closing) = self.session.closing.as_mut() {
            closing.sent.get_or_insert(CloseCode(error.close_code()));
        }
        self.close_tcp(Initiator::Local);
    }

    /// The peer's FIN arrived.
    pub(crate) fn peer_eof(&mut self) {
        if !self.session.is_websocket() {
            self.session.set(flag::TCP_CLOSING);
            self.io.close_now(self.id);
            return;
        }
        let received = self.session.proto().is_some_and(Connection::close_received);
        if !received {
            self.session.set(flag::PEER_GONE);
        }
        self.close_tcp(Initiator::Remote);
    }

    /// The handshake or close deadline expired.
    pub(crate) fn deadline_due(&mut self) {
        if !self.session.is_websocket() {
            if matches!(self.session.stage, Stage::Handshake(_)) {
                self.worker.link().counters.handshake_timeouts.inc();
            } else {
                self.worker.link().counters.close_timeouts.inc();
            }
            self.session.stage = Stage::Refused;
            self.session.set(flag::TCP_CLOSING | flag::FORCED);
            self.io.terminate(self.id);
            return;
        }
        self.worker.link().counters.close_timeouts.inc();
        self.session.set(flag::FORCED | flag::TCP_CLOSING);
        self.cut();
    }

    // ----- keepalive -----

    /// Arms the next keepalive Ping, if keepalive is on.
    pub(crate) fn schedule_ping(&mut self) {
        let Some(interval) = self.worker.settings().ping_interval else {
            return;
        };
        self.arm_keepalive(interval);
    }

    fn arm_keepalive(&mut self, after: Duration) {
        if let Some(key) = self.session.keepalive.take() {
            self.io.cancel_timer(key);
        }
        let value = TimerValue {
            conn: self.id,
            kind: TimerKind::Keepalive,
        };
        self.session.keepalive = Some(self.io.arm_timer(after, value));
    }

    /// The keepalive timer fired: send the next Ping, or give up on the
    /// unanswered one.
    pub(crate) fn keepalive_due(&mut self) {
        if self.session.closing.is_some() || self.session.has(flag::TCP_CLOSING) {
            return;
        }
        if self.session.awaiting_pong != 0 {
            self.worker.link().counters.keepalive_timeouts.inc();
            self.start_close(CloseCode::INTERNAL_ERROR.0, KEEPALIVE_TIMEOUT_REASON);
            return;
        }
        let payload = self.worker.next_ping_payload();
        let Some(proto) = self.session.proto_mut() else {
            return;
        };
        if proto.ping(&payload.to_be_bytes()).is_err() {
            return;
        }
        self.flush_proto();
        self.session.awaiting_pong = payload;
        let timeout = self.worker.settings().pong_timeout;
        self.arm_keepalive(timeout);
    }

    /// A Pong arrived: only the one answering our outstanding Ping counts.
    fn pong_received(&mut self, payload: &[u8]) {
        let expected = self.session.awaiting_pong;
        if expected != 0 && payload == expected.to_be_bytes() {
            self.session.awaiting_pong = 0;
            self.schedule_ping();
        }
    }

    // ----- receiving -----

    /// Feeds `data` to the protocol, handing each event to the handler.
    /// Returns the bytes consumed; the rest (an incomplete frame) is kept by
    /// the reactor and presented again with the next bytes.
    pub(crate) fn read_frames(&mut self, handler: &mut H, data: &mut [u8]) -> usize {
        // A frame that straddles receive buffers is assembled into a buffer
        // from the worker's pool, and the message's buffer goes back there
        // after `on_message`: no allocation per such message, and an idle
        // connection still owns none.
        if let Some(proto) = self.session.proto_mut() {
            let spare = self.io.take_buffer(0);
            if spare.capacity() > 0 {
                if let Some(unused) = proto.lend_buffer(spare) {
                    self.io.give_buffer(unused);
                }
            }
        }
        let consumed = self.read_frames_lent(handler, data);
        if let Some(spare) = self.session.proto_mut().and_then(|p| p.reclaim_buffer()) {
            self.io.give_buffer(spare);
        }
        consumed
    }

    fn read_frames_lent(&mut self, handler: &mut H, data: &mut [u8]) -> usize {
        let mut pos = 0;
        loop {
            if self.session.has(flag::TCP_CLOSING) {
                return data.len();
            }
            if self.session.has(flag::READING_PAUSED) {
                // The rest waits in the reactor until `resume_reading`.
                return pos;
            }
            let Some(proto) = self.session.proto_mut() else {
                return data.len();
            };
            let read = proto.read(&mut data[pos..]);
            pos += read.consumed;
            self.flush_proto();
            let Some(event) = read.event else {
                return pos;
            };
            match event {
                Event::Text(text) => {
                    self.count_in(text.len());
                    match text {
                        Cow::Borrowed(text) => self.call(handler, |handler, conn| {
                            handler.on_message(conn, Message::Text(text));
                        }),
                        Cow::Owned(text) => self.deliver_owned(handler, OwnedMessage::text(text)),
                    }
                    if self.pause_reading_when_full() {
                        return pos;
                    }
                }
                Event::Binary(bytes) => {
                    self.count_in(bytes.len());
                    match bytes {
                        Cow::Borrowed(bytes) => self.call(handler, |handler, conn| {
                            handler.on_message(conn, Message::Binary(bytes));
                        }),
                        Cow::Owned(bytes) => {
                            self.deliver_owned(handler, OwnedMessage::binary(bytes));
                        }
                    }
                    if self.pause_reading_when_full() {
                        return pos;
                    }
                }
                Event::Ping(payload) => {
                    self.call(handler, |handler, conn| handler.on_ping(conn, payload));
                    if self.hold_input_when_full() {
                        return pos;
                    }
                }
                Event::Pong(payload) => {
                    self.pong_received(payload);
                    self.call(handler, |handler, conn| handler.on_pong(conn, payload));
                }
                Event::CloseReceived { code, reason } => {
                    self.close_received(handler, code, reason);
                }
                Event::ProtocolError(error) => self.protocol_error(error),
            }
        }
    }

    /// Every Ping is answered with a Pong that bypasses the backpressure
    /// policy, so a peer that sends Pings and reads nothing would grow the
    /// send queue without bound. At the queue's limit, reading stops
    /// (the kernel's buffer fills and TCP slows the peer) until the queue
    /// drains to its low-water mark; the unread bytes wait in the reactor.
    fn hold_input_when_full(&mut self) -> bool {
        if self.queued_bytes() < self.worker.settings().max_queued_bytes {
            return false;
        }
        if !self.session.has(flag::INPUT_HELD | flag::READING_PAUSED) {
            self.io.pause_recv(self.id);
        }
        self.session.set(flag::INPUT_HELD);
        true
    }

    /// [`Backpressure::PauseReading`]: after a message, reading stops while
    /// the queue is at its limit, so the next message waits for the queue
    /// to drain instead of finding it full.
    fn pause_reading_when_full(&mut self) -> bool {
        self.worker.settings().backpressure == Backpressure::PauseReading
            && !self.session.has(flag::TCP_CLOSING)
            && self.hold_input_when_full()
    }

    /// Reading resumes once the queue that held it has drained.
    pub(crate) fn release_input(&mut self) {
        if self.session.has(flag::INPUT_HELD) {
            self.session.clear(flag::INPUT_HELD);
            if !self.session.has(flag::READING_PAUSED) {
                self.io.resume_recv(self.id);
            }
        }
    }

    /// Hands an assembled message to the handler; the buffer goes back to
    /// the pool unless the handler took it.
    fn deliver_owned(&mut self, handler: &mut H, mut message: OwnedMessage) {
        self.call(handler, |handler, conn| {
            handler.on_owned_message(conn, &mut message);
        });
        let left = message.into_bytes();
        if left.capacity() > 0 {
            self.io.give_buffer(left);
        }
    }

    /// Marks `self` as the subject of a shutdown.
    pub(crate) fn shutdown(&mut self, reason: &str) {
        if !self.session.is_websocket() {
            if !self.session.has(flag::TCP_CLOSING) {
                self.session.stage = Stage::Refused;
                self.session.set(flag::TCP_CLOSING);
                self.io.close_now(self.id);
            }
            return;
        }
        self.session.set(flag::IN_SHUTDOWN);
        self.worker.link().counters.shutdown_total.inc();
        self.start_close(CloseCode::GOING_AWAY.0, reason);
    }

    /// Terminates `self` at the shutdown deadline. A connection whose
    /// closing handshake is complete was only waiting for the peer's FIN:
    /// cutting that wait does not make it forced (its `on_closed` reports
    /// it clean, and so does the shutdown report).
    pub(crate) fn shutdown_deadline(&mut self) {
        // `terminate` notes whether our Close was still on its way, which
        // decides whether the handshake completed; `on_closed` comes later.
        self.terminate();
        let handshake_complete = self.session.closing_handshake_complete();
        if self.session.has(flag::IN_SHUTDOWN)
            && !self.session.has(flag::SHUTDOWN_FORCED)
            && !handshake_complete
        {
            self.session.set(flag::SHUTDOWN_FORCED);
            self.worker.link().counters.shutdown_forced.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringws_proto::frame::Role;
    use ringws_proto::handshake::HeadLimits;

    fn open_session() -> Session<()> {
        let mut session = Session::handshaking(ServerHandshake::new(HeadLimits::DEFAULT));
        session.stage = Stage::Open(Connection::new(
            Role::Server,
            ringws_proto::Config {
                auto_close_reply: false,
                ..ringws_proto::Config::default()
            },
        ));
        session
    }

    /// A masked client Close frame.
    fn client_close(code: u16, reason: &str) -> Vec<u8> {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        let mask = [1, 2, 3, 4];
        let mut frame = vec![0x88, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    fn closing(initiator: Initiator, sent: Option<u16>) -> Option<Box<Closing>> {
        Some(Box::new(Closing {
            started: Instant::now(),
            initiator,
            sent: sent.map(CloseCode),
            received: None,
            reason: String::new(),
            close_in_transit: false,
        }))
    }

    #[test]
    fn a_completed_handshake_is_clean_with_the_received_code() {
        let mut session = open_session();
        let proto = session.proto_mut().unwrap();
        proto.close(1001, "bye").unwrap();
        let mut frame = client_close(1001, "ok");
        let read = proto.read(&mut frame);
        assert!(matches!(read.event, Some(Event::CloseReceived { .. })));
        session.closing = closing(Initiator::Local, Some(1001));
        if let Some(closing) = session.closing.as_mut() {
            closing.received = Some(CloseCode(1001));
            closing.reason = "ok".to_owned();
        }
        // Even when the close timeout then aborted the TCP linger.
        session.set(flag::FORCED);
        let info = session.closed_info(false, Instant::now());
        assert_eq!(info.code, CloseCode(1001));
        assert_eq!(info.reason, "ok");
        assert_eq!(info.sent, Some(CloseCode(1001)));
        assert_eq!(info.initiator, Initiator::Local);
        assert_eq!(info.kind, CloseKind::Clean);
    }

    #[test]
    fn a_received_close_whose_answer_never_left_is_not_clean() {
        let mut session = open_session();
        let proto = session.proto_mut().unwrap();
        let mut frame = client_close(1000, "");
        proto.read(&mut frame);
        proto.close(1000, "").unwrap();
        session.closing = closing(Initiator::Remote, Some(1000));
        if let Some(closing) = session.closing.as_mut() {
            closing.received = Some(CloseCode(1000));
        }
        assert!(session.closing_handshake_complete());
        // The answer sat behind queued data when the close timeout cut it.
        session.mark_close_in_transit();
        assert!(!session.closing_handshake_complete());
        session.set(flag::FORCED);
        let info = session.closed_info(false, Instant::now());
        assert_eq!(info.code, CloseCode(1000));
        assert_eq!(info.sent, Some(CloseCode(1000)));
        assert_eq!(info.kind, CloseKind::Forced);
    }

    #[test]
    fn terminate_without_close_is_forced_1006_local() {
        let mut session = open_session();
        session.set(flag::FORCED);
        let info = session.closed_info(false, Instant::now());
        assert_eq!(info.code, CloseCode::ABNORMAL);
        assert_eq!(info.initiator, Initiator::Local);
        assert_eq!(info.kind, CloseKind::Forced);
        assert_eq!(info.close_duration, Duration::ZERO);
    }

    #[test]
    fn a_vanished_peer_is_abnormal_even_if_we_then_force() {
        let mut session = open_session();
        session.set(flag::PEER_GONE | flag::FORCED);
        session.closing = closing(Initiator::Remote, None);
        let info = session.closed_info(false, Instant::now());
        assert_eq!(info.code, CloseCode::ABNORMAL);
        assert_eq!(info.initiator, Initiator::Remote);
        assert_eq!(info.kind, CloseKind::Abnormal);
        // A socket error counts as the peer going away too.
        let mut session = open_session();
        let info = session.closed_info(true, Instant::now());
        assert_eq!(info.kind, CloseKind::Abnormal);
    }

    #[test]
    fn an_unanswered_close_is_forced_and_reports_what_we_sent() {
        let mut session = open_session();
        session.proto_mut().unwrap().close(4000, "x").unwrap();
        session.closing = closing(Initiator::Local, Some(4000));
        session.set(flag::FORCED);
        let info = session.closed_info(false, Instant::now());
        assert_eq!(info.code, CloseCode::ABNORMAL);
        assert_eq!(info.sent, Some(CloseCode(4000)));
        assert_eq!(info.kind, CloseKind::Forced);
        assert_eq!(session.state(), State::CloseSent);
    }
}
