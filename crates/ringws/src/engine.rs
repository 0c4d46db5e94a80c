//! The reactor handler that runs WebSocket on a worker: the HTTP upgrade,
//! the receive loop, timers and cross-thread commands. It wraps the
//! application's [`Handler`] and calls it with [`Conn`] references.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use ringws_proto::frame::Role;
use ringws_proto::handshake::{
    write_http_response, write_plain_response, HeadLimits, PlainRequest, RequestKind,
    ServerHandshake, UpgradeRequest,
};
use ringws_proto::Connection;
use ringws_reactor::{CloseCause, Ctx, Io, IoOp, ReactorHandle, TimerKey};

use crate::callback::{guarded, Panicked};
use crate::config::Settings;
use crate::conn::{flag, Conn, Session, Stage};
use crate::handle::{Command, OutFrame, WorkerLink};
use crate::handler::{Handler, HttpRequest, HttpResponse, Initiator, Request};
use crate::server::{ServerControl, ShutdownReport};
use crate::stats::{Gauge, WorkerCounters};
use crate::{CloseCode, CloseKind, ConnId, SendError, WorkerId};

/// State shared by every worker and every handle of one server.
pub(crate) struct ServerShared {
    pub settings: Settings,
    pub links: Box<[Arc<WorkerLink>]>,
    pub local_addr: OnceLock<SocketAddr>,
    /// Held by the shutdown procedure, so that a second caller waits for
    /// the first one's report.
    pub shutdown_running: Mutex<()>,
    /// A shutdown has begun (blocking or in the background).
    pub shutdown_begun: AtomicBool,
    /// The shutdown's report, set before the workers are told to stop.
    pub shutdown_report: OnceLock<ShutdownReport>,
    /// What the role stops when a shutdown begins, whoever starts it (the
    /// client's lookup threads).
    pub on_shutdown: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

thread_local! {
    /// On a worker thread: the address of its engine's shared state (0
    /// elsewhere), so calls that wait for the workers can refuse there
    /// instead of blocking the worker they wait for.
    static WORKER_OF: Cell<usize> = const { Cell::new(0) };
}

impl ServerShared {
    pub(crate) fn new(settings: Settings, links: Box<[Arc<WorkerLink>]>) -> ServerShared {
        ServerShared {
            settings,
            links,
            local_addr: OnceLock::new(),
            shutdown_running: Mutex::new(()),
            shutdown_begun: AtomicBool::new(false),
            shutdown_report: OnceLock::new(),
            on_shutdown: OnceLock::new(),
        }
    }

    /// Whether the calling thread is one of this engine's workers.
    pub(crate) fn on_worker_thread(self: &Arc<Self>) -> bool {
        WORKER_OF.with(Cell::get) == Arc::as_ptr(self) as usize
    }

    /// Whether the calling thread is a worker of any engine in the process
    /// (a server's or a client's): one that must not block.
    pub(crate) fn on_any_worker_thread() -> bool {
        WORKER_OF.with(Cell::get) != 0
    }

    /// Links each worker to the reactor's side of it: its inbox and its
    /// published io figures.
    pub(crate) fn attach(&self, reactor: &ReactorHandle<Command>) {
        let sides = reactor.senders().iter().zip(reactor.published_stats());
        for (link, (sender, published)) in self.links.iter().zip(sides) {
            let _ = link.sender.set(sender.clone());
            let _ = link.io.set(published.clone());
        }
        for worker in reactor.workers() {
            if let Some(link) = self.links.get(worker.id.index()) {
                let _ = link.ring_mode.set(worker.ring_mode);
            }
        }
    }
}

/// Which per-connection timer fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerKind {
    /// The next keepalive Ping, or the Pong deadline.
    Keepalive,
    /// The handshake or close deadline.
    Deadline,
    /// The handshake timeout of a client attempt (`crate::client`).
    Connect,
}

/// What the worker's timer wheel holds for a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimerValue {
    pub conn: ConnId,
    pub kind: TimerKind,
}

/// The engine's per-worker state, apart from the application's handler.
pub(crate) struct Worker {
    pub index: usize,
    pub control: ServerControl,
    ping_counter: u64,
    pub shutting_down: bool,
    initialized: bool,
}

impl Worker {
    pub(crate) fn settings(&self) -> &Settings {
        &self.control.shared.settings
    }

    pub(crate) fn link(&self) -> &Arc<WorkerLink> {
        &self.control.shared.links[self.index]
    }

    /// A keepalive payload unique on this server: worker index in the top
    /// 16 bits, a per-worker counter below; never 0.
    pub(crate) fn next_ping_payload(&mut self) -> u64 {
        self.ping_counter = (self.ping_counter + 1) & ((1 << 48) - 1);
        if self.ping_counter == 0 {
            self.ping_counter = 1;
        }
        ((self.index as u64) << 48) | self.ping_counter
    }

    /// On the first callback: publish every worker's inbox to the links
    /// (the reactor creates the inboxes), and the bound address.
    fn init<H: Handler>(&mut self, io: &Io<'_, Engine<H>>) {
        if self.initialized {
            return;
        }
        for (link, sender) in self.control.shared.links.iter().zip(io.inboxes()) {
            let _ = link.sender.set(sender.clone());
        }
        if let Some(addr) = io.local_addr() {
            let _ = self.control.shared.local_addr.set(addr);
        }
        self.initialized = true;
    }
}

/// The reactor handler of one worker.
pub(crate) struct Engine<H: Handler> {
    handler: H,
    worker: Worker,
}

impl<H: Handler> Engine<H> {
    /// Runs on the worker's own thread (the reactor calls the factory
    /// there), which it marks as a worker of `shared`.
    pub(crate) fn new(shared: Arc<ServerShared>, id: WorkerId, handler: H) -> Engine<H> {
        WORKER_OF.with(|worker_of| worker_of.set(Arc::as_ptr(&shared) as usize));
        Engine {
            handler,
            worker: Worker {
                index: id.index(),
                control: ServerControl { shared },
                ping_counter: 0,
                shutting_down: false,
                initialized: false,
            },
        }
    }

    /// Runs `f` on `conn` if it is a WebSocket connection of this worker;
    /// otherwise counts a command for a connection that is gone.
    fn with_conn(
        worker: &mut Worker,
        ctx: &mut Ctx<'_, Self>,
        conn: ConnId,
        f: impl FnOnce(&mut Conn<'_, H>),
    ) {
        match ctx.conns.get_mut(conn) {
            Some(session) if session.is_websocket() => {
                let mut conn = Conn {
                    io: ctx.io.reborrow(),
                    id: conn,
                    session,
                    worker,
                };
                f(&mut conn);
            }
            _ => worker.link().counters.commands_for_gone.inc(),
        }
    }
}

/// A handle saw the connection open, but it started closing before the
/// command arrived: nothing more may be sent, so the command is dropped and
/// counted like one for a gone connection. (Backpressure refusals are
/// counted by the policy.)
fn count_if_closing<H: Handler>(conn: &Conn<'_, H>, sent: Result<(), SendError>) {
    if sent == Err(SendError::Closing) {
        conn.worker.link().counters.commands_for_gone.inc();
    }
}

/// `Content-Type` of ringws's own text answers.
const PLAIN_TEXT: &str = "text/plain; charset=utf-8";

/// An HTTP answer that ends the connection instead of upgrading it.
struct Refusal {
    status: u16,
    response: Vec<u8>,
    /// Answered by the `plain_http` hook (counted apart from failures).
    plain_http: bool,
}

impl Refusal {
    fn plain(status: u16, body: &str) -> Refusal {
        let mut response = Vec::with_capacity(128 + body.len());
        // Statuses passed here are fixed and valid.
        let _ = write_plain_response(status, PLAIN_TEXT, body.as_bytes(), &mut response);
        Refusal {
            status,
            response,
            plain_http: false,
        }
    }
}

/// What to answer a plain HTTP request with.
fn answer_plain_http(
    settings: &Settings,
    counters: &WorkerCounters,
    request: PlainRequest<'_>,
) -> Refusal {
    let head_only = request.method() == "HEAD";
    let Some(hook) = &settings.plain_http else {
        return upgrade_required(head_only);
    };
    let answer = match guarded(|| hook(&HttpRequest { inner: request })) {
        Ok(Some(answer)) => answer,
        Ok(None) => HttpResponse::new(404, PLAIN_TEXT, "not found\n"),
        Err(Panicked) => {
            counters.handler_panics.inc();
            HttpResponse::new(500, PLAIN_TEXT, "internal error\n")
        }
    };
    let mut headers = Vec::with_capacity(1 + answer.headers.len());
    headers.push(("Content-Type", &*answer.content_type));
    headers.extend(
        answer
            .headers
            .iter()
            .map(|(name, value)| (&**name, &**value)),
    );
    let mut response = Vec::with_capacity(128 + answer.body.len());
    let written = write_http_response(
        answer.status,
        &headers,
        &answer.body,
        head_only,
        &mut response,
    );
    let status = match written {
        Ok(()) => answer.status,
        Err(_) => {
            let body = b"invalid response from the plain_http hook\n";
            let headers = [("Content-Type", PLAIN_TEXT)];
            // Fixed and valid: this cannot fail.
            let _ = write_http_response(500, &headers, body, head_only, &mut response);
            500
        }
    };
    Refusal {
        status,
        response,
        plain_http: true,
    }
}

/// `426 Upgrade Required`, naming the protocol to upgrade to (RFC 7231
/// §6.5.15), for plain requests when no `plain_http` hook is set; without
/// its body for a `HEAD` request.
fn upgrade_required(head_only: bool) -> Refusal {
    let body = "this endpoint speaks WebSocket: send a WebSocket upgrade request\n";
    let mut response = format!(
        "HTTP/1.1 426 Upgrade Required\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    if !head_only {
        response.push_str(body);
    }
    Refusal {
        status: 426,
        response: response.into_bytes(),
        plain_http: false,
    }
}

/// Whether the request in `data` (perhaps refused before it was parsed
/// whole) is a `HEAD`, whose answer must not have a body. Empty lines
/// before the request line are allowed (RFC 9112 §2.2).
fn is_head_request(data: &[u8]) -> bool {
    let start = data
        .iter()
        .position(|&byte| byte != b'\r' && byte != b'\n')
        .unwrap_or(data.len());
    data[start..].starts_with(b"HEAD ")
}

/// The upgrade's answer: the 101 response and the selected subprotocol.
struct Accepted {
    response: Vec<u8>,
    subprotocol: Option<Box<str>>,
}

impl<H: Handler> Conn<'_, H> {
    /// Checks an upgrade request and builds the 101 response.
    fn accept_upgrade(
        &mut self,
        handler: &mut H,
        request: UpgradeRequest<'_>,
    ) -> Result<Accepted, Refusal> {
        if self.worker.shutting_down {
            return Err(Refusal::plain(503, "server shutting down\n"));
        }
        let settings = &self.worker.control.shared.settings;
        let counters = &self.worker.link().counters;
        let panicked = |_| {
            counters.handler_panics.inc();
            Refusal::plain(500, "internal error\n")
        };
        if let Some(check) = &settings.origin_check {
            if !guarded(|| check(request.origin())).map_err(panicked)? {
                return Err(Refusal::plain(403, "origin not allowed\n"));
            }
        }
        let selected = match &settings.subprotocol {
            Some(select) => {
                let offered: Vec<&str> = request.subprotocols().collect();
                if offered.is_empty() {
                    None
                } else {
                    guarded(|| select(&offered))
                        .map_err(panicked)?
                        .and_then(|index| offered.get(index).copied())
                }
            }
            None => None,
        };
        let data = &mut self.session.data;
        let verdict = guarded(|| handler.on_upgrade(&Request { inner: request }, data));
        if let Err(status) = verdict.map_err(panicked)? {
            let status = if (400..=599).contains(&status) {
                status
            } else {
                500
            };
            return Err(Refusal::plain(status, "upgrade refused\n"));
        }
        let mut response = Vec::with_capacity(160);
        if request
            .write_switching_protocols(selected, &[], &mut response)
            .is_err()
        {
            return Err(Refusal::plain(500, "cannot write the upgrade response\n"));
        }
        Ok(Accepted {
            response,
            subprotocol: selected.map(Box::from),
        })
    }

    /// Sends the refusal and closes TCP gracefully, bounded by the close
    /// timeout.
    fn refuse(&mut self, refusal: Refusal) {
        let counters = &self.worker.link().counters;
        if refusal.plain_http {
            counters.plain_http_responses.inc();
        } else {
            counters.handshake_failed(refusal.status);
        }
        let _ = self.io.send(self.id, refusal.response);
        self.session.stage = Stage::Refused;
        self.session.set(flag::TCP_CLOSING);
        let close_timeout = self.worker.settings().close_timeout;
        self.arm_deadline(close_timeout);
        self.io.close(self.id);
    }

    /// Completes the handshake: 101 out, protocol state in, keepalive on.
    fn open(&mut self, accepted: Accepted) {
        let _ = self.io.send(self.id, accepted.response);
        let settings = self.worker.settings();
        let config = ringws_proto::Config {
            max_frame_size: settings.max_frame_size,
            max_message_size: settings.max_message_size,
            // The application sees the peer's Close before we answer it.
            auto_close_reply: false,
            ..ringws_proto::Config::default()
        };
        self.session.stage = Stage::Open(Connection::new(Role::Server, config));
        self.session.subprotocol = accepted.subprotocol;
        if let Some(key) = self.session.deadline.take() {
            self.io.cancel_timer(key);
        }
        let link = self.worker.link();
        link.counters.upgraded.inc();
        link.counters.shift(self.session.gauge, Gauge::Open);
        link.live.mark_open(self.id);
        self.session.gauge = Gauge::Open;
        self.schedule_ping();
    }

    /// The handshake stage of `on_data`: parse what arrived so far (the
    /// reactor accumulates it while we return 0), then refuse or open, and
    /// hand any frames pipelined after the request head to the WebSocket
    /// stage in the same call.
    fn handshake(&mut self, handler: &mut H, data: &mut [u8]) -> usize {
        let Stage::Handshake(parser) = &mut self.session.stage else {
            return data.len();
        };
        let parsed = match parser.parse(data) {
            Ok(None) => return 0,
            Ok(Some(parsed)) => parsed,
            Err(error) => {
                let mut response = Vec::with_capacity(192);
                match is_head_request(data) {
                    true => error.write_head_response(&mut response),
                    false => error.write_response(&mut response),
                }
                self.refuse(Refusal {
                    status: error.status(),
                    response,
                    plain_http: false,
                });
                return data.len();
            }
        };
        let head_len = parsed.head_len;
        let outcome = match parsed.kind {
            RequestKind::PlainHttp(request) => Err(answer_plain_http(
                &self.worker.control.shared.settings,
                &self.worker.link().counters,
                request,
            )),
            RequestKind::Upgrade(request) => self.accept_upgrade(handler, request),
        };
        match outcome {
            Err(refusal) => {
                self.refuse(refusal);
                data.len()
            }
            Ok(accepted) => {
                self.open(accepted);
                self.call(handler, |handler, conn| handler.on_open(conn));
                let pipelined = self.read_frames(handler, &mut data[head_len..]);
                head_len + pipelined
            }
        }
    }
}

impl<H: Handler> ringws_reactor::Handler for Engine<H> {
    type Conn = Session<H::ConnData>;
    type Timer = TimerValue;
    type Command = Command;

    fn on_accept(&mut self, ctx: &mut Ctx<'_, Self>, conn: ConnId) -> Option<Self::Conn> {
        self.worker.init(&ctx.io);
        if self.worker.shutting_down {
            return None;
        }
        let settings = self.worker.settings();
        let limits = HeadLimits {
            max_head_bytes: settings.max_header_bytes,
            max_headers: crate::MAX_HEADER_FIELDS,
        };
        // `ConnData::default` is the application's: a panic in it refuses
        // the connection (closed at once) and nothing else.
        let Ok(mut session) = guarded(|| Session::handshaking(ServerHandshake::new(limits))) else {
            self.worker.link().counters.handler_panics.inc();
            return None;
        };
        let value = TimerValue {
            conn,
            kind: TimerKind::Deadline,
        };
        session.deadline = Some(ctx.io.arm_timer(settings.handshake_timeout, value));
        let counters = &self.worker.link().counters;
        counters.accepted.inc();
        counters.handshaking.inc();
        Some(session)
    }

    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        session: &mut Self::Conn,
        data: &mut [u8],
    ) -> usize {
        let mut conn = Conn {
            io: ctx.io.reborrow(),
            id,
            session,
            worker: &mut self.worker,
        };
        match conn.session.stage {
            Stage::Handshake(_) => conn.handshake(&mut self.handler, data),
            Stage::Open(_) => conn.read_frames(&mut self.handler, data),
            Stage::Connecting(_) => conn.client_handshake(&mut self.handler, data),
            Stage::Refused => data.len(),
        }
    }

    fn on_peer_eof(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, session: &mut Self::Conn) {
        let mut conn = Conn {
            io: ctx.io.reborrow(),
            id,
            session,
            worker: &mut self.worker,
        };
        conn.peer_eof();
    }

    fn on_drained(&mut self, ctx: &mut Ctx<'_, Self>, id: ConnId, session: &mut Self::Conn) {
        if !session.is_websocket() || session.has(flag::TCP_CLOSING) {
            return;
        }
        let mut conn = Conn {
            io: ctx.io.reborrow(),
            id,
            session,
            worker: &mut self.worker,
        };
        conn.release_input();
        conn.call(&mut self.handler, |handler, conn| handler.on_drain(conn));
    }

    fn on_closed(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        id: ConnId,
        mut session: Self::Conn,
        cause: CloseCause,
    ) {
        if let Some(key) = session.keepalive.take() {
            ctx.io.cancel_timer(key);
        }
        if let Some(key) = session.deadline.take() {
            ctx.io.cancel_timer(key);
        }
        let link = self.worker.link();
        link.counters.gauge(session.gauge).dec();
        if !session.is_websocket() {
            if session.has(flag::CLIENT) {
                crate::client::connect_failed(
                    &mut self.handler,
                    &mut ctx.io,
                    &link.counters,
                    id,
                    session,
                    cause,
                );
            } else if guarded(move || drop(session)).is_err() {
                // The `ConnData` of a request that never opened: its `Drop`
                // is the application's.
                link.counters.handler_panics.inc();
            }
            return;
        }
        link.live.mark_gone(id);
        if cause == CloseCause::WorkerStopped {
            session.set(flag::FORCED);
        }
        let socket_error = matches!(cause, CloseCause::Error { .. });
        // Nothing is sent after our Close, so a send that failed carried it
        // or bytes queued before it: it never arrived.
        if matches!(cause, CloseCause::Error { op: IoOp::Send, .. }) {
            session.mark_close_in_transit();
        }
        let info = session.closed_info(socket_error, Instant::now());
        // Closes are counted by the code of the first Close frame.
        let first_code = match info.initiator {
            Initiator::Local => info.sent.unwrap_or(CloseCode::ABNORMAL),
            Initiator::Remote => info.code,
        };
        link.counters
            .closed(first_code.0, info.initiator, info.kind, info.close_duration);
        // A connection the shutdown deadline cut is already counted forced;
        // one that the close timeout cut first is forced all the same.
        if session.has(flag::IN_SHUTDOWN) && !session.has(flag::SHUTDOWN_FORCED) {
            match info.kind {
                CloseKind::Clean => link.counters.shutdown_clean.inc(),
                CloseKind::Forced => link.counters.shutdown_forced.inc(),
                CloseKind::Abnormal => link.counters.shutdown_other.inc(),
            }
        }
        let handler = &mut self.handler;
        if guarded(|| handler.on_closed(id, session.data, &info)).is_err() {
            link.counters.handler_panics.inc();
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, key: TimerKey, value: TimerValue) {
        self.worker.init(&ctx.io);
        let Some(session) = ctx.conns.get_mut(value.conn) else {
            return;
        };
        let mut conn = Conn {
            io: ctx.io.reborrow(),
            id: value.conn,
            session,
            worker: &mut self.worker,
        };
        match value.kind {
            TimerKind::Keepalive if conn.session.keepalive == Some(key) => {
                conn.session.keepalive = None;
                conn.keepalive_due();
            }
            TimerKind::Deadline if conn.session.deadline == Some(key) => {
                conn.session.deadline = None;
                conn.deadline_due();
            }
            TimerKind::Connect => conn.connect_timer_due(key),
            TimerKind::Keepalive | TimerKind::Deadline => {}
        }
    }

    fn on_command(&mut self, ctx: &mut Ctx<'_, Self>, command: Command) {
        self.worker.init(&ctx.io);
        let worker = &mut self.worker;
        match command {
            Command::Send { conn, frame } => Self::with_conn(worker, ctx, conn, |conn| {
                let sent = conn.send_frame(frame);
                count_if_closing(conn, sent);
            }),
            Command::Ping { conn, payload } => Self::with_conn(worker, ctx, conn, |conn| {
                let sent = conn.ping(&payload);
                count_if_closing(conn, sent);
            }),
            Command::Close { conn, code, reason } => {
                Self::with_conn(worker, ctx, conn, |conn| conn.start_close(code, &reason))
            }
            Command::Terminate { conn } => {
                Self::with_conn(worker, ctx, conn, |conn| conn.terminate())
            }
            Command::PauseReading { conn } => {
                Self::with_conn(worker, ctx, conn, |conn| conn.pause_reading())
            }
            Command::ResumeReading { conn } => {
                Self::with_conn(worker, ctx, conn, |conn| conn.resume_reading())
            }
            Command::Broadcast { message, targets } => match targets {
                None => {
                    for (id, session) in ctx.conns.iter_mut() {
                        if !session.is_websocket() {
                            continue;
                        }
                        let mut conn = Conn {
                            io: ctx.io.reborrow(),
                            id,
                            session,
                            worker: &mut *worker,
                        };
                        let _ = conn.send_frame(OutFrame::Prepared(message.clone()));
                    }
                }
                // A listed connection is accounted for as a send through its
                // handle would be: gone or closing, it counts as a command
                // for a gone connection.
                Some(targets) => {
                    for id in targets {
                        Self::with_conn(worker, ctx, id, |conn| {
                            let sent = conn.send_frame(OutFrame::Prepared(message.clone()));
                            count_if_closing(conn, sent);
                        });
                    }
                }
            },
            Command::Shutdown => {
                worker.shutting_down = true;
                ctx.io.stop_accepting();
                let shared = worker.control.shared.clone();
                let reason = &shared.settings.shutdown_reason;
                for (id, session) in ctx.conns.iter_mut() {
                    let mut conn = Conn {
                        io: ctx.io.reborrow(),
                        id,
                        session,
                        worker: &mut *worker,
                    };
                    conn.shutdown(reason);
                }
                worker.link().counters.shutdown_phase.inc();
            }
            Command::TerminateAll => {
                for (id, session) in ctx.conns.iter_mut() {
                    if session.is_websocket() {
                        let mut conn = Conn {
                            io: ctx.io.reborrow(),
                            id,
                            session,
                            worker: &mut *worker,
                        };
                        conn.shutdown_deadline();
                    } else {
                        session.set(flag::TCP_CLOSING | flag::FORCED);
                        ctx.io.terminate(id);
                    }
                }
                worker.link().counters.shutdown_phase.inc();
            }
            Command::Connect(request) => {
                crate::client::start_connect(&mut self.handler, worker, ctx, request)
            }
            Command::Stop => {
                ctx.io.stop();
                worker.link().counters.shutdown_phase.inc();
            }
        }
    }
}
