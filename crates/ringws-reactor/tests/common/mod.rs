//! A raw TCP test handler for the reactor, driven by commands and reporting
//! events over a channel, plus client helpers. Loopback only.

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ringws_reactor::{
    CloseCause, Config, ConnId, ConnectOptions, CorePinning, Ctx, Handler, Reactor, ReactorHandle,
    TimerKey, WorkerId, WorkerStats,
};

/// Upper bound for anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Echo every byte.
    Echo,
    /// Echo every receive through `Io::send_with_payload` (from the
    /// receive buffer when it is large enough) behind its length as a
    /// big-endian `u16`; [`unframe`] undoes it.
    EchoInPlace,
    /// Consume only complete `\n`-terminated lines and echo them.
    Lines,
    /// Consume and drop everything.
    Sink,
}

#[derive(Debug)]
pub enum Event {
    Accepted {
        conn: ConnId,
        peer: SocketAddr,
    },
    Connecting {
        conn: ConnId,
        tag: u64,
    },
    Connected {
        conn: ConnId,
        tag: u64,
    },
    Data {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    PeerEof(ConnId),
    Paused(ConnId),
    Drained(ConnId),
    Closed {
        conn: ConnId,
        tag: u64,
        cause: CloseCause,
    },
    TimerFired {
        id: u64,
        armed_at: Instant,
        after: Duration,
        fired_at: Instant,
    },
    TimerCancelled {
        id: u64,
        value_returned: bool,
    },
    Stats {
        worker: WorkerId,
        stats: WorkerStats,
    },
    Heap {
        conn: ConnId,
        bytes: Option<usize>,
    },
    ConnectRefused {
        tag: u64,
    },
}

#[derive(Debug)]
pub enum Cmd {
    Send(ConnId, Vec<u8>),
    SendThenClose(ConnId, Vec<u8>),
    SendThenCloseNow(ConnId, Vec<u8>),
    Close(ConnId),
    Terminate(ConnId),
    PauseRecv(ConnId),
    ResumeRecv(ConnId),
    /// Arm a timer with this id.
    Arm {
        id: u64,
        after: Duration,
    },
    /// Arm, then cancel at once.
    ArmAndCancel {
        id: u64,
        after: Duration,
    },
    /// Arm `slow` and `reset` for `after`, then reset `reset` to `short`.
    ArmAndReset {
        slow: u64,
        reset: u64,
        after: Duration,
        short: Duration,
    },
    Stats,
    StopAccepting,
    Heap(ConnId),
    Connect {
        addr: SocketAddr,
        source: Option<SocketAddr>,
        tag: u64,
        greeting: Vec<u8>,
    },
    Stop,
    /// Block the worker (out of `io_uring_enter`) for this long.
    Sleep(Duration),
}

pub struct ConnState {
    tag: u64,
}

pub struct TestHandler {
    worker: WorkerId,
    mode: Mode,
    events: mpsc::Sender<Event>,
    report_data: bool,
}

impl TestHandler {
    fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }
}

impl Handler for TestHandler {
    type Conn = ConnState;
    type Timer = (u64, Instant, Duration);
    type Command = Cmd;

    fn on_accept(&mut self, ctx: &mut Ctx<'_, Self>, conn: ConnId) -> Option<ConnState> {
        assert_eq!(conn.worker(), self.worker);
        // A peer that already reset has no address any more.
        let peer = ctx
            .io
            .peer_addr(conn)
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        self.emit(Event::Accepted { conn, peer });
        Some(ConnState { tag: 0 })
    }

    fn on_connected(&mut self, _ctx: &mut Ctx<'_, Self>, conn: ConnId, state: &mut ConnState) {
        self.emit(Event::Connected {
            conn,
            tag: state.tag,
        });
    }

    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        conn: ConnId,
        _state: &mut ConnState,
        data: &mut [u8],
    ) -> usize {
        if self.report_data {
            self.emit(Event::Data {
                conn,
                bytes: data.to_vec(),
            });
        }
        match self.mode {
            Mode::Echo => {
                let _ = ctx.io.send(conn, data.to_vec());
                data.len()
            }
            Mode::EchoInPlace => {
                let head = u16::try_from(data.len())
                    .expect("receive buffers of at most 64 KiB")
                    .to_be_bytes();
                let _ = ctx.io.send_with_payload(conn, &head, data);
                data.len()
            }
            Mode::Lines => {
                let end = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                if end > 0 {
                    let _ = ctx.io.send(conn, data[..end].to_vec());
                }
                end
            }
            Mode::Sink => data.len(),
        }
    }

    fn on_peer_eof(&mut self, ctx: &mut Ctx<'_, Self>, conn: ConnId, _state: &mut ConnState) {
        self.emit(Event::PeerEof(conn));
        ctx.io.close(conn);
    }

    fn on_drained(&mut self, _ctx: &mut Ctx<'_, Self>, conn: ConnId, _state: &mut ConnState) {
        self.emit(Event::Drained(conn));
    }

    fn on_closed(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        conn: ConnId,
        state: ConnState,
        cause: CloseCause,
    ) {
        assert!(!ctx.io.is_open(conn));
        if let CloseCause::ConnectFailed { .. } = cause {
            self.emit(Event::ConnectRefused { tag: state.tag });
        }
        self.emit(Event::Closed {
            conn,
            tag: state.tag,
            cause,
        });
    }

    fn on_timer(&mut self, _ctx: &mut Ctx<'_, Self>, _key: TimerKey, value: Self::Timer) {
        let (id, armed_at, after) = value;
        self.emit(Event::TimerFired {
            id,
            armed_at,
            after,
            fired_at: Instant::now(),
        });
    }

    fn on_command(&mut self, ctx: &mut Ctx<'_, Self>, command: Cmd) {
        match command {
            Cmd::Send(conn, bytes) => {
                ctx.io.send(conn, bytes).expect("send to a live connection");
            }
            Cmd::SendThenClose(conn, bytes) => {
                ctx.io.send(conn, bytes).expect("send to a live connection");
                assert!(ctx.io.close(conn));
            }
            Cmd::SendThenCloseNow(conn, bytes) => {
                ctx.io.send(conn, bytes).expect("send to a live connection");
                assert!(ctx.io.close_now(conn));
            }
            Cmd::Close(conn) => {
                ctx.io.close(conn);
            }
            Cmd::Terminate(conn) => {
                ctx.io.terminate(conn);
            }
            Cmd::PauseRecv(conn) => {
                assert!(ctx.io.pause_recv(conn));
                self.emit(Event::Paused(conn));
            }
            Cmd::ResumeRecv(conn) => {
                assert!(ctx.io.resume_recv(conn));
            }
            Cmd::Arm { id, after } => {
                ctx.io.arm_timer(after, (id, Instant::now(), after));
            }
            Cmd::ArmAndCancel { id, after } => {
                let key = ctx.io.arm_timer(after, (id, Instant::now(), after));
                let value = ctx.io.cancel_timer(key);
                // A second cancel finds nothing.
                let again = ctx.io.cancel_timer(key);
                self.emit(Event::TimerCancelled {
                    id,
                    value_returned: value.is_some_and(|v| v.0 == id) && again.is_none(),
                });
            }
            Cmd::ArmAndReset {
                slow,
                reset,
                after,
                short,
            } => {
                ctx.io.arm_timer(after, (slow, Instant::now(), after));
                let key = ctx.io.arm_timer(after, (reset, Instant::now(), short));
                assert!(ctx.io.reset_timer(key, short));
            }
            Cmd::Stats => {
                let stats = ctx.io.stats();
                // Outside `on_data` only sends hold receive buffers: both
                // figures count them.
                assert_eq!(
                    u64::from(ctx.io.recv_buffers_in_use()),
                    stats.recv_buffers_lent
                );
                self.emit(Event::Stats {
                    worker: self.worker,
                    stats,
                });
            }
            Cmd::StopAccepting => ctx.io.stop_accepting(),
            Cmd::Heap(conn) => {
                self.emit(Event::Heap {
                    conn,
                    bytes: ctx.io.conn_heap_bytes(conn),
                });
            }
            Cmd::Connect {
                addr,
                source,
                tag,
                greeting,
            } => {
                let mut options = ConnectOptions::new();
                if let Some(source) = source {
                    options = options.source(source);
                }
                match ctx.io.connect(addr, &options, ConnState { tag }) {
                    Ok(conn) => {
                        self.emit(Event::Connecting { conn, tag });
                        if !greeting.is_empty() {
                            ctx.io.send(conn, greeting).expect("queue while connecting");
                        }
                    }
                    Err(error) => panic!("connect failed synchronously: {error}"),
                }
            }
            Cmd::Stop => ctx.io.stop(),
            Cmd::Sleep(time) => std::thread::sleep(time),
        }
    }
}

pub struct Server {
    pub handle: ReactorHandle<Cmd>,
    pub events: mpsc::Receiver<Event>,
    /// Events received but not yet matched by `wait_for`.
    pub backlog: RefCell<VecDeque<Event>>,
    pub addr: SocketAddr,
}

pub fn config(workers: usize) -> Config {
    Config::new()
        .workers(workers)
        .pinning(CorePinning::Off)
        .listen("127.0.0.1:0".parse().unwrap())
        .recv_buffers(256, 16 * 1024)
        .ring_entries(512)
        .close_linger(Duration::from_secs(5))
}

pub fn start_with(config: Config, mode: Mode, report_data: bool) -> Server {
    let (tx, events) = mpsc::channel();
    let handle = Reactor::start(config, move |worker| TestHandler {
        worker,
        mode,
        events: tx.clone(),
        report_data,
    })
    .expect("reactor starts");
    let addr = handle
        .local_addr()
        .unwrap_or_else(|| "127.0.0.1:9".parse().unwrap());
    Server {
        handle,
        events,
        backlog: RefCell::new(VecDeque::new()),
        addr,
    }
}

pub fn start(workers: usize, mode: Mode) -> Server {
    start_with(config(workers), mode, false)
}

impl Server {
    /// Waits for the first event matching `pick`; events that do not
    /// match stay queued for later calls.
    pub fn wait_for<T>(&self, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
        {
            let mut backlog = self.backlog.borrow_mut();
            for index in 0..backlog.len() {
                if let Some(value) = pick(&backlog[index]) {
                    backlog.remove(index);
                    return value;
                }
            }
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => match pick(&event) {
                    Some(value) => return value,
                    None => self.backlog.borrow_mut().push_back(event),
                },
                Err(error) => panic!("no matching event within {WAIT:?}: {error}"),
            }
        }
    }

    /// Stops the workers, waits for them, and returns every event not yet
    /// matched.
    pub fn stop_and_collect(self) -> Vec<Event> {
        self.handle.stop();
        self.handle.join().expect("workers exit cleanly");
        let mut events: Vec<Event> = self.backlog.into_inner().into();
        events.extend(self.events.try_iter());
        events
    }

    /// The server-side id of the connection whose peer is `client`.
    pub fn accepted(&self, client: &TcpStream) -> ConnId {
        let local = client.local_addr().unwrap();
        self.wait_for(|event| match event {
            Event::Accepted { conn, peer } if *peer == local => Some(*conn),
            _ => None,
        })
    }

    pub fn closed(&self, conn: ConnId) -> CloseCause {
        self.wait_for(|event| match event {
            Event::Closed { conn: c, cause, .. } if *c == conn => Some(*cause),
            _ => None,
        })
    }

    pub fn send(&self, command: Cmd) {
        self.handle.senders()[0]
            .send(command)
            .expect("worker alive");
    }

    pub fn send_to(&self, worker: WorkerId, command: Cmd) {
        self.handle
            .sender(worker)
            .unwrap()
            .send(command)
            .expect("worker alive");
    }

    /// Stats of every worker.
    pub fn stats(&self) -> Vec<WorkerStats> {
        let workers = self.handle.senders().len();
        for sender in self.handle.senders() {
            sender.send(Cmd::Stats).unwrap();
        }
        let mut all = vec![None; workers];
        while all.iter().any(Option::is_none) {
            let (worker, stats) = self.wait_for(|event| match event {
                Event::Stats { worker, stats } => Some((*worker, *stats)),
                _ => None,
            });
            all[worker.index()] = Some(stats);
        }
        all.into_iter().flatten().collect()
    }

    pub fn shutdown(self) {
        self.handle.stop();
        self.handle.join().expect("workers exit cleanly");
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the reactor");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

/// A client whose receive buffer is small, so echoes back up quickly.
pub fn connect_small_rcvbuf(addr: SocketAddr, rcvbuf: usize) -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    socket.set_recv_buffer_size(rcvbuf).unwrap();
    socket
        .connect(&addr.into())
        .expect("connect to the reactor");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

pub fn read_exact(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).expect("read echoed bytes");
    buf
}

pub fn write_all(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).expect("write to the reactor");
}

/// Deterministic test bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Reads until EOF or error; returns the bytes and how it ended.
pub fn read_to_end(stream: &mut TcpStream) -> (Vec<u8>, std::io::Result<()>) {
    let mut out = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (out, Ok(())),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(error) => return (out, Err(error)),
        }
    }
}

/// Reads `Mode::EchoInPlace` replies (a `u16` length, then that many bytes)
/// until `len` payload bytes have arrived; returns them joined and how many
/// replies carried them.
pub fn unframe(stream: &mut TcpStream, len: usize) -> (Vec<u8>, usize) {
    let mut payload = Vec::with_capacity(len);
    let mut replies = 0;
    while payload.len() < len {
        let head = read_exact(stream, 2);
        let size = usize::from(u16::from_be_bytes([head[0], head[1]]));
        assert!(size > 0, "an empty reply");
        payload.extend_from_slice(&read_exact(stream, size));
        replies += 1;
    }
    (payload, replies)
}

/// Polls worker 0's stats until `done` holds or the test's wait runs out (a
/// send's completion may be reaped just after its bytes reached the peer).
pub fn stats_when(server: &Server, done: impl Fn(&WorkerStats) -> bool) -> WorkerStats {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = server.stats()[0];
        if done(&stats) || Instant::now() > deadline {
            return stats;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Echoes each client's index (a `u64`) on it and checks that every
/// connection got an id of its own; then every client hangs up and each
/// connection must close gracefully, exactly once. Returns the ids.
pub fn echo_on_each_then_hang_up(server: &Server, mut clients: Vec<TcpStream>) -> HashSet<ConnId> {
    for (index, client) in clients.iter_mut().enumerate() {
        write_all(client, &(index as u64).to_le_bytes());
    }
    for (index, client) in clients.iter_mut().enumerate() {
        assert_eq!(read_exact(client, 8), (index as u64).to_le_bytes());
    }
    let mut accepted = HashSet::new();
    while accepted.len() < clients.len() {
        let conn = server.wait_for(|event| match event {
            Event::Accepted { conn, .. } => Some(*conn),
            _ => None,
        });
        assert!(
            accepted.insert(conn),
            "connection id handed out twice: {conn:?}"
        );
    }
    drop(clients);
    let mut closed = HashSet::new();
    while closed.len() < accepted.len() {
        let (conn, cause) = server.wait_for(|event| match event {
            Event::Closed { conn, cause, .. } => Some((*conn, *cause)),
            _ => None,
        });
        assert!(accepted.contains(&conn));
        assert!(closed.insert(conn), "on_closed fired twice for {conn:?}");
        assert_eq!(cause, CloseCause::Closed);
    }
    accepted
}

/// An echo under way on one connection: one thread writes the payload
/// while another reads the echo back, so neither side's buffers fill up.
pub struct EchoCheck {
    writer: JoinHandle<()>,
    reader: JoinHandle<bool>,
}

impl EchoCheck {
    /// Writes `payload` on a clone of `client` and reads the echo on `client`.
    pub fn start(mut client: TcpStream, payload: Vec<u8>) -> Self {
        let mut writer = client.try_clone().unwrap();
        let sent = payload.clone();
        let writer = thread::spawn(move || writer.write_all(&sent).unwrap());
        let reader = thread::spawn(move || read_exact(&mut client, payload.len()) == payload);
        EchoCheck { writer, reader }
    }

    pub fn assert_echoed(self) {
        self.writer.join().unwrap();
        assert!(self.reader.join().unwrap(), "echo differs");
    }
}

/// Opens `connections` clients, each starting to echo `size` bytes
/// (`pattern(size, seed + index)`) as soon as it connects, and checks
/// every echo.
pub fn echo_at_once_on_new_connections(
    server: &Server,
    connections: usize,
    size: usize,
    seed: u64,
) {
    let checks: Vec<_> = (0..connections)
        .map(|index| EchoCheck::start(connect(server.addr), pattern(size, seed + index as u64)))
        .collect();
    for check in checks {
        check.assert_echoed();
    }
}

/// The id of the timer [`arm_timers_and_cancel_one`] cancels.
pub const CANCELLED_TIMER: u64 = 100;

/// Arms a timer for each of `delays_ms` (ids 0, 1, …), then one more
/// ([`CANCELLED_TIMER`], for 10 ms) that is cancelled at once.
pub fn arm_timers_and_cancel_one(server: &Server, delays_ms: &[u64]) {
    for (id, &ms) in delays_ms.iter().enumerate() {
        server.send(Cmd::Arm {
            id: id as u64,
            after: Duration::from_millis(ms),
        });
    }
    server.send(Cmd::ArmAndCancel {
        id: CANCELLED_TIMER,
        after: Duration::from_millis(10),
    });
}

/// Waits until `count` timers have fired, checking that none fired early,
/// twice, or after being cancelled. Returns when each fired, by id.
pub fn timers_fired(server: &Server, count: usize) -> HashMap<u64, Instant> {
    let mut fired = HashMap::new();
    while fired.len() < count {
        let (id, armed_at, after, fired_at) = server.wait_for(|event| match event {
            Event::TimerFired {
                id,
                armed_at,
                after,
                fired_at,
            } => Some((*id, *armed_at, *after, *fired_at)),
            _ => None,
        });
        assert_ne!(id, CANCELLED_TIMER, "a cancelled timer fired");
        assert!(
            fired_at.duration_since(armed_at) >= after,
            "timer {id} fired after {:?}, armed for {after:?}",
            fired_at.duration_since(armed_at)
        );
        assert!(
            fired.insert(id, fired_at).is_none(),
            "timer {id} fired twice"
        );
    }
    fired
}

/// A one-worker reactor with no listener, for the client role.
pub fn client_config() -> Config {
    Config::new()
        .workers(1)
        .pinning(CorePinning::Off)
        .recv_buffers(64, 4096)
        .ring_entries(256)
}

/// Has `client` connect `count` times to `addr` (connection `tag` bound to
/// `source(tag)`), queuing the greeting `hello {tag}` while it connects;
/// waits until every connection is up and its greeting has come back.
pub fn connect_and_echo_greetings(
    client: &Server,
    addr: SocketAddr,
    count: u64,
    source: impl Fn(u64) -> Option<SocketAddr>,
) -> HashSet<ConnId> {
    for tag in 0..count {
        client.send(Cmd::Connect {
            addr,
            source: source(tag),
            tag,
            greeting: format!("hello {tag}").into_bytes(),
        });
    }
    let mut connected = HashSet::new();
    while connected.len() < count as usize {
        let (conn, tag) = client.wait_for(|event| match event {
            Event::Connected { conn, tag } => Some((*conn, *tag)),
            _ => None,
        });
        assert!(connected.insert(conn));
        // The greeting queued while connecting comes back.
        let expected = format!("hello {tag}").into_bytes();
        let mut echoed = Vec::new();
        while echoed.len() < expected.len() {
            echoed.extend(client.wait_for(|event| match event {
                Event::Data { conn: c, bytes } if *c == conn => Some(bytes.clone()),
                _ => None,
            }));
        }
        assert_eq!(echoed, expected);
    }
    connected
}

/// Closes each of `conns` and checks each closes gracefully.
pub fn close_each(server: &Server, conns: &HashSet<ConnId>) {
    for conn in conns {
        server.send(Cmd::Close(*conn));
    }
    for conn in conns {
        assert_eq!(server.closed(*conn), CloseCause::Closed);
    }
}

/// A loopback address nobody listens on: a port bound, read and closed.
pub fn unused_loopback_addr() -> SocketAddr {
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Waits for the connect tagged `tag` to close and checks it was refused.
pub fn assert_connect_refused(client: &Server, tag: u64) {
    let cause = client.wait_for(|event| match event {
        Event::Closed { tag: t, cause, .. } if *t == tag => Some(*cause),
        _ => None,
    });
    assert_eq!(
        cause,
        CloseCause::ConnectFailed {
            errno: libc::ECONNREFUSED
        }
    );
}

/// `client` sends FIN: the handler sees it and closes gracefully, so the
/// client reads a clean EOF (not a reset) and the close cause is `Closed`.
pub fn hang_up_and_expect_fin_back(server: &Server, client: &mut TcpStream, conn: ConnId) {
    client.shutdown(Shutdown::Write).unwrap();
    server.wait_for(|event| match event {
        Event::PeerEof(c) if *c == conn => Some(()),
        _ => None,
    });
    let (rest, end) = read_to_end(client);
    assert!(rest.is_empty());
    end.expect("clean EOF");
    assert_eq!(server.closed(conn), CloseCause::Closed);
}

/// Connects `count` clients and returns them with their server-side ids.
pub fn connect_many(server: &Server, count: usize) -> (Vec<TcpStream>, Vec<ConnId>) {
    let clients: Vec<_> = (0..count).map(|_| connect(server.addr)).collect();
    let conns = clients
        .iter()
        .map(|client| server.accepted(client))
        .collect();
    (clients, conns)
}

/// The connections `events` report closed, sorted.
pub fn closed_conns(events: Vec<Event>) -> Vec<(ConnId, CloseCause)> {
    let mut closed: Vec<_> = events
        .into_iter()
        .filter_map(|event| match event {
            Event::Closed { conn, cause, .. } => Some((conn, cause)),
            _ => None,
        })
        .collect();
    closed.sort_by_key(|(conn, _)| *conn);
    closed
}

/// Stops `server` while some of `conns` (sorted) have bytes queued or a
/// close under way; each must get `on_closed` exactly once, stopped or
/// closed. `context` names the case in failures.
pub fn stop_with_sends_and_closes_under_way(server: Server, conns: &[ConnId], context: &str) {
    for (index, &conn) in conns.iter().enumerate() {
        match index % 4 {
            0 => server.send_to(conn.worker(), Cmd::Send(conn, vec![7; 64 * 1024])),
            1 => server.send_to(conn.worker(), Cmd::Close(conn)),
            _ => {}
        }
    }
    let closed = closed_conns(server.stop_and_collect());
    let ids: Vec<ConnId> = closed.iter().map(|(conn, _)| *conn).collect();
    assert_eq!(ids, conns, "{context}: each on_closed exactly once");
    for (conn, cause) in closed {
        assert!(
            matches!(cause, CloseCause::WorkerStopped | CloseCause::Closed),
            "{conn:?}: {cause:?}"
        );
    }
}
