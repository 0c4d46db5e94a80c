//! The worker side of the client role: starting an attempt, reading the
//! `101`, opening the protocol state in the client role, masking frames that
//! were encoded off the worker, and reporting attempts that never opened.
//!
//! An attempt is a [`Session`] flagged [`flag::CLIENT`] in
//! [`Stage::Connecting`] until its `101` is validated; from then on it is an
//! ordinary WebSocket session and shares every lifecycle rule with the
//! server role (the few client differences check [`flag::CLIENT`]).
//!
//! When the TCP connect of an attempt at a host with several addresses
//! fails, its `on_closed` ([`connect_failed`]) moves the session to a new
//! socket for the next address instead of reporting the failure; the
//! handshake timer moves along with the deadline it had.

use std::any::Any;
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use ringws_proto::frame::{Opcode, Role};
use ringws_proto::handshake::ClientHandshake;
use ringws_proto::{Connection, MaskSeed};
use ringws_reactor::{Chunk, CloseCause, ConnectOptions, Ctx, Io, TimerKey};

use super::{ConnectError, ConnectRequest, FailedAddress, Targets};
use crate::callback::guarded;
use crate::conn::{flag, Conn, Session, Stage};
use crate::engine::{Engine, TimerKind, TimerValue, Worker};
use crate::error::SendError;
use crate::handle::OutFrame;
use crate::handler::Handler;
use crate::stats::{Gauge, WorkerCounters};
use crate::ConnId;

/// What the code that started an attempt shares with its session: the
/// session is handed to the reactor before the handshake timer can be armed
/// (the timer needs the connection's id), so the timer's key reaches the
/// session through here.
#[derive(Debug, Default)]
pub(crate) struct AttemptLink {
    timer: Cell<Option<TimerKey>>,
    /// The blocked caller stopped waiting for the id: `connect` already
    /// returned `Err(Timeout)`, which is the attempt's one report, so the
    /// attempt is aborted without a callback.
    abandoned: Cell<bool>,
}

/// A client connection before its `101` ([`Stage::Connecting`]).
pub(crate) struct Connecting {
    handshake: ClientHandshake,
    mask_seed: MaskSeed,
    link: Rc<AttemptLink>,
    /// Why the attempt failed, once known; reported when the socket is gone.
    failure: Option<ConnectError>,
    /// The address this socket connects to.
    addr: SocketAddr,
    source: Option<SocketAddr>,
    /// For a host with several addresses: what is left to try and what
    /// failed before.
    fallback: Option<Box<Fallback>>,
}

/// The other addresses of an attempt at a host with several.
struct Fallback {
    /// Addresses not tried yet, in order.
    rest: std::vec::IntoIter<SocketAddr>,
    /// Addresses tried before this socket's, with their errors.
    failed: Vec<FailedAddress>,
    /// When the handshake timeout expires, for every address together;
    /// `None` when that instant cannot be represented (a timeout such as
    /// `Duration::MAX`), which is as good as no deadline.
    deadline: Option<Instant>,
}

impl Connecting {
    /// Records `error` for this socket's address and makes the next
    /// untried address current; returns what is left of the handshake
    /// timeout. Hands `error` back when no address is left.
    fn advance(&mut self, error: ConnectError) -> Result<Duration, ConnectError> {
        let Some(fallback) = self.fallback.as_deref_mut() else {
            return Err(error);
        };
        let Some(next) = fallback.rest.next() else {
            return Err(error);
        };
        fallback.failed.push(FailedAddress {
            addr: self.addr,
            error,
        });
        self.addr = next;
        Ok(fallback.deadline.map_or(Duration::MAX, |deadline| {
            deadline.saturating_duration_since(Instant::now())
        }))
    }

    /// The error the attempt ends with, given `error` for this socket's
    /// address: alone when it is the only address tried, else after the
    /// ones tried before. A shutdown is reported as such, whatever was
    /// tried.
    fn final_error(&mut self, error: ConnectError) -> ConnectError {
        match self.fallback.take() {
            Some(fallback) if !fallback.failed.is_empty() && error != ConnectError::Shutdown => {
                let mut attempts = fallback.failed;
                attempts.push(FailedAddress {
                    addr: self.addr,
                    error,
                });
                ConnectError::AllAddressesFailed { attempts }
            }
            _ => error,
        }
    }
}

/// Runs a [`ConnectRequest`] on its worker (from `Command::Connect`).
pub(crate) fn start_connect<H: Handler>(
    handler: &mut H,
    worker: &mut Worker,
    ctx: &mut Ctx<'_, Engine<H>>,
    request: Box<dyn Any + Send>,
) {
    // A client's requests carry its handler's `ConnData`, so this holds.
    let Ok(request) = request.downcast::<ConnectRequest<H::ConnData>>() else {
        worker.link().counters.commands_for_gone.inc();
        return;
    };
    let ConnectRequest {
        addrs,
        source,
        handshake,
        mask_seed,
        data,
        reply,
    } = *request;
    let counters = &worker.link().counters;
    if worker.shutting_down {
        report_unstarted(handler, counters, reply, data, ConnectError::Shutdown);
        return;
    }
    let Targets { first, rest } = match addrs {
        Ok(targets) => targets,
        // The host, resolved off the worker, did not resolve.
        Err(failure) => {
            report_unstarted(handler, counters, reply, data, failure);
            return;
        }
    };
    let timeout = worker.settings().handshake_timeout;
    let fallback = (!rest.is_empty()).then(|| {
        Box::new(Fallback {
            rest: rest.into_iter(),
            failed: Vec::new(),
            deadline: Instant::now().checked_add(timeout),
        })
    });
    let link = Rc::new(AttemptLink::default());
    let session = Session {
        stage: Stage::Connecting(Box::new(Connecting {
            handshake,
            mask_seed,
            link: link.clone(),
            failure: None,
            addr: first,
            source,
            fallback,
        })),
        data,
        keepalive: None,
        deadline: None,
        awaiting_pong: 0,
        closing: None,
        subprotocol: None,
        gauge: Gauge::Handshaking,
        flags: flag::CLIENT,
    };
    let id = match launch(&mut ctx.io, &worker.link().counters, session, timeout) {
        Ok(id) => id,
        Err((data, failure)) => {
            report_unstarted(handler, &worker.link().counters, reply, data, failure);
            return;
        }
    };
    if let Some(reply) = reply {
        if reply.send(Ok(id)).is_err() {
            link.abandoned.set(true);
            ctx.io.terminate(id);
        }
    }
}

/// Opens a socket for `session` (in [`Stage::Connecting`]) to its current
/// address, moving on to the next address while a socket cannot even be
/// created (e.g. no IPv6); then queues the upgrade request and arms the
/// handshake timer due `timeout` from now. On failure returns the
/// connection's data and the attempt's final error.
fn launch<H: Handler>(
    io: &mut Io<'_, Engine<H>>,
    counters: &WorkerCounters,
    mut session: Session<H::ConnData>,
    timeout: Duration,
) -> Result<ConnId, (H::ConnData, ConnectError)> {
    loop {
        let Stage::Connecting(connecting) = &session.stage else {
            return Err((session.data, ConnectError::Shutdown));
        };
        let addr = connecting.addr;
        let options = match connecting.source {
            Some(source) => ConnectOptions::new().source(source),
            None => ConnectOptions::new(),
        };
        let request_bytes = Chunk::Owned(connecting.handshake.request().to_vec());
        let link = connecting.link.clone();
        match io.connect(addr, &options, session) {
            Ok(id) => {
                counters.handshaking.inc();
                // Queued while connecting: it leaves as soon as TCP is up.
                let _ = io.send(id, request_bytes);
                let value = TimerValue {
                    conn: id,
                    kind: TimerKind::Connect,
                };
                link.timer.set(Some(io.arm_timer(timeout, value)));
                return Ok(id);
            }
            Err(refused) => {
                session = refused.state;
                let error = ConnectError::from_io(&refused.error);
                let Stage::Connecting(connecting) = &mut session.stage else {
                    return Err((session.data, error));
                };
                // A stopping worker takes no socket for any address.
                let next = match error {
                    ConnectError::Shutdown => Err(error),
                    error => connecting.advance(error),
                };
                // A socket refused here took no time: the next keeps `timeout`.
                if let Err(error) = next {
                    let error = connecting.final_error(error);
                    return Err((session.data, error));
                }
            }
        }
    }
}

/// Reports an attempt that failed before it had a connection id.
fn report_unstarted<H: Handler>(
    handler: &mut H,
    counters: &WorkerCounters,
    reply: Option<SyncSender<Result<ConnId, ConnectError>>>,
    data: H::ConnData,
    error: ConnectError,
) {
    match reply {
        // The caller of `connect` gets the error; `data` is dropped (its
        // `Drop` is the application's).
        Some(reply) => {
            let _ = reply.send(Err(error));
            if guarded(move || drop(data)).is_err() {
                counters.handler_panics.inc();
            }
        }
        None => tell_connect_failed(handler, counters, None, data, &error),
    }
}

/// [`Handler::on_connect_failed`], with a panic in it caught and counted
/// (see `crate::callback`).
fn tell_connect_failed<H: Handler>(
    handler: &mut H,
    counters: &WorkerCounters,
    id: Option<ConnId>,
    data: H::ConnData,
    error: &ConnectError,
) {
    if guarded(|| handler.on_connect_failed(id, data, error)).is_err() {
        counters.handler_panics.inc();
    }
}

/// `on_closed` of a client session that never opened: moves on to the
/// host's next address when the TCP connect failed and one is left,
/// otherwise tells the handler why the attempt failed (unless its caller
/// already got an `Err`).
pub(crate) fn connect_failed<H: Handler>(
    handler: &mut H,
    io: &mut Io<'_, Engine<H>>,
    counters: &WorkerCounters,
    id: ConnId,
    mut session: Session<H::ConnData>,
    cause: CloseCause,
) {
    let error = match &mut session.stage {
        Stage::Connecting(connecting) => {
            if let Some(key) = connecting.link.timer.take() {
                io.cancel_timer(key);
            }
            if connecting.link.abandoned.get() {
                // `data` is dropped, as `connect` documents for an `Err`
                // (its `Drop` is the application's).
                let data = session.data;
                if guarded(move || drop(data)).is_err() {
                    counters.handler_panics.inc();
                }
                return;
            }
            match connecting.failure.take() {
                Some(failure) => connecting.final_error(failure),
                // Only a failed TCP connect moves on: once TCP was up, the
                // server's answer (or silence) is the outcome.
                None if matches!(cause, CloseCause::ConnectFailed { .. }) => {
                    match connecting.advance(failure_of(cause)) {
                        Ok(left) => {
                            // Past the deadline the timer fires at once and
                            // ends the attempt with a timeout on this
                            // address, as a late connect would.
                            let started = launch(io, counters, session, left);
                            if let Err((data, error)) = started {
                                // No socket could be created for the
                                // remaining addresses: the last socket that
                                // had an id reports the failure.
                                tell_connect_failed(handler, counters, Some(id), data, &error);
                            }
                            return;
                        }
                        Err(error) => connecting.final_error(error),
                    }
                }
                None => connecting.final_error(failure_of(cause)),
            }
        }
        // Only a shutdown moves an attempt out of `Connecting` without
        // opening it.
        Stage::Refused | Stage::Handshake(_) | Stage::Open(_) => ConnectError::Shutdown,
    };
    tell_connect_failed(handler, counters, Some(id), session.data, &error);
}

/// Why an attempt ended, from how its socket closed.
fn failure_of(cause: CloseCause) -> ConnectError {
    match cause {
        CloseCause::ConnectFailed { errno } | CloseCause::Error { errno, .. } => {
            ConnectError::from_errno(errno)
        }
        // The server's FIN before its answer (closed in `peer_eof`).
        CloseCause::Closed | CloseCause::ClosedNow | CloseCause::LingerExpired => {
            ConnectError::ClosedDuringHandshake
        }
        _ => ConnectError::Shutdown,
    }
}

/// Re-encodes a frame built off the worker (handles, broadcast, owned
/// sends: unmasked, in the server's format) for a client session, masked
/// with the session's next key. Server sessions get the frame back as is.
pub(crate) fn mask_out_frame<D>(
    session: &mut Session<D>,
    frame: OutFrame,
) -> Result<OutFrame, SendError> {
    if !session.has(flag::CLIENT) {
        return Ok(frame);
    }
    let proto = session.proto_mut().ok_or(SendError::Closing)?;
    match frame {
        // The payload is ours: mask it in place, no copy.
        OutFrame::Split { head, mut payload } => {
            let frame_head = proto
                .data_frame_head(opcode_of(head.as_bytes()), payload.len(), true)
                .map_err(|_| SendError::Closing)?;
            frame_head.mask_payload(&mut payload, 0);
            let head = Chunk::copied(frame_head.as_bytes());
            Ok(OutFrame::Split { head, payload })
        }
        OutFrame::Whole { bytes, payload_len } => masked_copy(proto, &bytes, payload_len),
        // Shared with other connections: each gets its own masked copy.
        OutFrame::Prepared(message) => masked_copy(proto, message.frame_bytes(), message.len()),
    }
}

/// A masked copy of the unmasked frame `frame` whose last `payload_len`
/// bytes are the payload.
fn masked_copy(
    proto: &mut Connection,
    frame: &[u8],
    payload_len: usize,
) -> Result<OutFrame, SendError> {
    let payload = &frame[frame.len().saturating_sub(payload_len)..];
    let frame_head = proto
        .data_frame_head(opcode_of(frame), payload.len(), true)
        .map_err(|_| SendError::Closing)?;
    let head = frame_head.as_bytes();
    let mut bytes = Vec::with_capacity(head.len() + payload.len());
    bytes.extend_from_slice(head);
    bytes.extend_from_slice(payload);
    frame_head.mask_payload(&mut bytes[head.len()..], 0);
    Ok(OutFrame::Whole {
        bytes,
        payload_len: payload.len(),
    })
}

/// The data opcode of a frame encoded off the worker (always text or
/// binary).
fn opcode_of(frame: &[u8]) -> Opcode {
    match frame.first().map(|first| first & 0x0F) {
        Some(0x1) => Opcode::Text,
        _ => Opcode::Binary,
    }
}

impl<H: Handler> Conn<'_, H> {
    /// The `on_data` of a client session in [`Stage::Connecting`]: wait for
    /// the whole response head (the reactor accumulates it while this
    /// returns 0), then fail the attempt or open the connection, and hand
    /// any frames that came with the `101` to the WebSocket stage.
    pub(crate) fn client_handshake(&mut self, handler: &mut H, data: &mut [u8]) -> usize {
        if self.session.has(flag::TCP_CLOSING) {
            return data.len();
        }
        let Stage::Connecting(connecting) = &mut self.session.stage else {
            return data.len();
        };
        let parsed = match connecting.handshake.parse_response(data) {
            Ok(None) => return 0,
            Ok(Some(response)) => Ok((response.head_len, response.subprotocol().map(Box::from))),
            Err(error) => Err(error),
        };
        match parsed {
            Err(error) => {
                let error = ConnectError::from_response(error);
                if let Some(status) = error.status() {
                    self.worker.link().counters.handshake_failed(status);
                }
                self.fail_attempt(error, false);
                data.len()
            }
            Ok((head_len, subprotocol)) => {
                self.open_client(subprotocol);
                self.call(handler, |handler, conn| handler.on_open(conn));
                head_len + self.read_frames(handler, &mut data[head_len..])
            }
        }
    }

    /// The handshake timeout of an attempt fired.
    pub(crate) fn connect_timer_due(&mut self, key: TimerKey) {
        let Stage::Connecting(connecting) = &mut self.session.stage else {
            return;
        };
        if connecting.link.timer.get() != Some(key) {
            return;
        }
        connecting.link.timer.set(None);
        if self.session.has(flag::TCP_CLOSING) {
            return;
        }
        self.worker.link().counters.handshake_timeouts.inc();
        self.fail_attempt(ConnectError::Timeout, true);
    }

    /// Records why the attempt failed (the first reason wins) and closes
    /// the socket: at once when `abort`, else after flushing.
    fn fail_attempt(&mut self, error: ConnectError, abort: bool) {
        if let Stage::Connecting(connecting) = &mut self.session.stage {
            connecting.failure.get_or_insert(error);
        }
        if abort {
            self.session.set(flag::TCP_CLOSING | flag::FORCED);
            self.io.terminate(self.id);
        } else {
            self.session.set(flag::TCP_CLOSING);
            self.io.close_now(self.id);
        }
    }

    /// The `101` is valid: protocol state in the client role, keepalive on.
    fn open_client(&mut self, subprotocol: Option<Box<str>>) {
        let stage = std::mem::replace(&mut self.session.stage, Stage::Refused);
        let Stage::Connecting(connecting) = stage else {
            self.session.stage = stage;
            return;
        };
        if let Some(key) = connecting.link.timer.take() {
            self.io.cancel_timer(key);
        }
        let settings = self.worker.settings();
        let config = ringws_proto::Config {
            max_frame_size: settings.max_frame_size,
            max_message_size: settings.max_message_size,
            mask_seed: connecting.mask_seed,
            // The application sees the server's Close before we answer it.
            auto_close_reply: false,
            ..ringws_proto::Config::default()
        };
        self.session.stage = Stage::Open(Connection::new(Role::Client, config));
        self.session.subprotocol = subprotocol;
        let link = self.worker.link();
        link.counters.upgraded.inc();
        link.counters.shift(self.session.gauge, Gauge::Open);
        link.live.mark_open(self.id);
        self.session.gauge = Gauge::Open;
        self.schedule_ping();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handle::{encode_frame, head_chunk, PreparedMessage};
    use ringws_proto::frame::{decode_header, Decoded};
    use ringws_proto::handshake::HeadLimits;
    use ringws_proto::handshake::ServerHandshake;
    use ringws_proto::Event;

    fn session(role: Role) -> Session<()> {
        let mut session = Session::handshaking(ServerHandshake::new(HeadLimits::DEFAULT));
        session.stage = Stage::Open(Connection::new(
            role,
            ringws_proto::Config {
                mask_seed: ringws_proto::MaskSeed::from_bytes([0x5e; 32]),
                ..ringws_proto::Config::default()
            },
        ));
        if role == Role::Client {
            session.set(flag::CLIENT);
        }
        session
    }

    /// Concatenates the frame's chunks as they would go on the wire.
    fn wire(frame: &OutFrame) -> Vec<u8> {
        match frame {
            OutFrame::Whole { bytes, .. } => bytes.clone(),
            OutFrame::Split { head, payload } => [head.as_bytes(), payload].concat(),
            OutFrame::Prepared(message) => message.frame_bytes().to_vec(),
        }
    }

    /// What a server makes of `bytes`: exactly one message.
    fn server_reads(bytes: &mut [u8]) -> Vec<u8> {
        let mut server = Connection::new(Role::Server, ringws_proto::Config::default());
        let len = bytes.len();
        let read = server.read(bytes);
        assert_eq!(read.consumed, len, "one whole frame");
        match read.event {
            Some(Event::Text(text)) => text.as_bytes().to_vec(),
            Some(Event::Binary(bytes)) => bytes.to_vec(),
            other => panic!("expected a data message, got {other:?}"),
        }
    }

    #[test]
    fn client_frames_are_masked_and_decode_to_the_payload() {
        let payload: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        let frames = [
            OutFrame::Whole {
                bytes: encode_frame(Opcode::Binary, &payload),
                payload_len: payload.len(),
            },
            OutFrame::Split {
                head: head_chunk(Opcode::Binary, payload.len()),
                payload: payload.clone(),
            },
            OutFrame::Prepared(PreparedMessage::binary(&payload)),
        ];
        let mut client = session(Role::Client);
        let mut keys = Vec::new();
        for frame in frames {
            let masked = mask_out_frame(&mut client, frame).unwrap();
            assert_eq!(masked.payload_len(), payload.len());
            let mut bytes = wire(&masked);
            let Ok(Decoded::Complete { header, .. }) = decode_header(&bytes, Role::Server, 0)
            else {
                panic!("a server accepts the header of a client frame");
            };
            let key = header.mask.expect("client frames are masked");
            keys.push(key);
            assert_ne!(&bytes[bytes.len() - payload.len()..], &payload[..]);
            assert_eq!(server_reads(&mut bytes), payload);
        }
        keys.dedup();
        assert_eq!(keys.len(), 3, "every frame gets a fresh key");
    }

    #[test]
    fn text_stays_text_and_server_frames_pass_unchanged() {
        let mut client = session(Role::Client);
        let text = OutFrame::Whole {
            bytes: encode_frame(Opcode::Text, b"hello"),
            payload_len: 5,
        };
        let mut bytes = wire(&mask_out_frame(&mut client, text).unwrap());
        assert_eq!(bytes[0], 0x81);
        assert_eq!(server_reads(&mut bytes), b"hello");

        let mut server = session(Role::Server);
        let frame = OutFrame::Whole {
            bytes: encode_frame(Opcode::Text, b"hi"),
            payload_len: 2,
        };
        assert_eq!(
            wire(&mask_out_frame(&mut server, frame).unwrap()),
            b"\x81\x02hi"
        );
    }

    #[test]
    fn nothing_is_masked_after_our_close() {
        let mut client = session(Role::Client);
        client.proto_mut().unwrap().close(1000, "").unwrap();
        let frame = OutFrame::Whole {
            bytes: encode_frame(Opcode::Text, b"late"),
            payload_len: 4,
        };
        assert_eq!(
            mask_out_frame(&mut client, frame).err(),
            Some(SendError::Closing)
        );
    }

    #[test]
    fn close_causes_map_to_connect_errors() {
        assert_eq!(
            failure_of(CloseCause::ConnectFailed {
                errno: libc::ECONNREFUSED
            }),
            ConnectError::Refused
        );
        assert_eq!(
            failure_of(CloseCause::ClosedNow),
            ConnectError::ClosedDuringHandshake
        );
        assert_eq!(
            failure_of(CloseCause::WorkerStopped),
            ConnectError::Shutdown
        );
        assert_eq!(
            failure_of(CloseCause::Error {
                op: ringws_reactor::IoOp::Recv,
                errno: libc::ECONNRESET
            }),
            ConnectError::Io {
                errno: libc::ECONNRESET
            }
        );
    }
}
