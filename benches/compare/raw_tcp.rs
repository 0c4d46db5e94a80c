//! The raw TCP echo driver: the load for the TCP echo floor, which speaks
//! no WebSocket, so `ringws load` cannot drive it.
//!
//! It mirrors `ringws load --mode echo` as closely as bytes allow: the same
//! reactor (`ringws-reactor`: one io_uring, multishot receive from a
//! provided buffer ring, batched sends), the same core, the same number of
//! connections and messages in flight, the same window and drain. Each
//! "message" is as many bytes as the WebSocket client frame of the same
//! payload (2-byte header, extended length when needed, 4-byte masking key:
//! [`client_frame_len`]); the echo server sends the same bytes back, where
//! a WebSocket server's unmasked reply is 4 bytes shorter. A message is
//! echoed once all its bytes are back, and the bytes are compared with what
//! was sent. What the driver does not do that `ringws load` does: frame,
//! mask, parse and time each message; so its side of the loop is a little
//! cheaper, which flatters the floor, never ringws.

use std::net::SocketAddr;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringws_cli::load::cpu::{thread_cpu_time, CpuTime};
use ringws_reactor::{
    Chunk, CloseCause, Config, ConnId, ConnectOptions, CorePinning, Ctx, Handler, Reactor, TimerKey,
};

/// Bytes of a masked client frame (one fragment) carrying `payload` bytes.
pub fn client_frame_len(payload: usize) -> usize {
    let extended = match payload {
        0..=125 => 0,
        126..=65_535 => 2,
        _ => 8,
    };
    2 + extended + 4 + payload
}

/// One closed-loop run.
#[derive(Debug, Clone)]
pub struct RawEchoConfig {
    /// The echo server.
    pub target: SocketAddr,
    /// Connections.
    pub connections: usize,
    /// Bytes per message.
    pub message_len: usize,
    /// Messages in flight per connection.
    pub pipeline: usize,
    /// Sending window (after every connection opened or failed).
    pub duration: Duration,
    /// Bound on connecting and on the drain after the window.
    pub timeout: Duration,
    /// Core of the driver's worker (`None`: not pinned).
    pub core: Option<usize>,
}

/// What a run measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawEchoReport {
    /// Messages echoed in full and intact.
    pub echoes: u64,
    /// The sending window.
    pub window: Duration,
    /// The driver thread's CPU time, from start to end.
    pub cpu: CpuTime,
    /// Connections that opened.
    pub opened: u64,
    /// Connections that failed to open or closed before the drain.
    pub failed: u64,
    /// Messages whose bytes came back different.
    pub mismatches: u64,
    /// Messages still unanswered when the drain timed out.
    pub unanswered: u64,
}

impl RawEchoReport {
    /// Echoes per second of window.
    pub fn per_sec(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.echoes as f64 / secs
        } else {
            0.0
        }
    }

    /// Everything that went wrong, counted.
    pub fn errors(&self) -> u64 {
        self.failed + self.mismatches + self.unanswered
    }
}

/// Runs the load and waits (bounded) for its report.
pub fn run(config: &RawEchoConfig) -> Result<RawEchoReport, String> {
    if config.connections == 0 || config.pipeline == 0 || config.message_len == 0 {
        return Err("connections, pipeline and message length must be positive".into());
    }
    let plan = Arc::new(Plan {
        config: config.clone(),
        message: (0..config.message_len)
            .map(|i| (i.wrapping_mul(131) ^ (i >> 7)) as u8)
            .collect(),
    });
    let reactor_config = Config::new()
        .workers(1)
        .pinning(match config.core {
            Some(core) => CorePinning::Cores(vec![core]),
            None => CorePinning::Off,
        })
        .close_linger(config.timeout)
        .max_connections(config.connections.max(64) as u32)
        .thread_name("raw-echo-load");
    let (report_tx, report_rx) = mpsc::channel();
    let worker_plan = plan.clone();
    let handle = Reactor::start(reactor_config, move |_| {
        RawEchoWorker::new(worker_plan.clone(), report_tx.clone())
    })
    .map_err(|error| format!("raw TCP driver: {error}"))?;
    let started = handle
        .senders()
        .first()
        .is_some_and(|sender| sender.send(Start).is_ok());
    let limit = config.duration + config.timeout * 3 + Duration::from_secs(5);
    let report = if started {
        report_rx
            .recv_timeout(limit)
            .map_err(|_| "raw TCP driver: no report in time".to_owned())
    } else {
        Err("raw TCP driver: the worker did not start".to_owned())
    };
    handle.stop();
    handle
        .join()
        .map_err(|error| format!("raw TCP driver: {error}"))?;
    report
}

#[derive(Debug)]
struct Plan {
    config: RawEchoConfig,
    message: Arc<[u8]>,
}

/// The coordinator's one command.
#[derive(Debug)]
struct Start;

#[derive(Debug)]
enum Timer {
    WindowStart,
    WindowEnd,
    DrainDeadline,
    HardDeadline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Idle,
    Connecting,
    Window,
    Draining,
    Done,
}

#[derive(Debug, Default)]
struct Conn {
    connected: bool,
    in_flight: usize,
    /// Bytes of the current echo already received.
    offset: usize,
}

struct RawEchoWorker {
    plan: Arc<Plan>,
    report_tx: Sender<RawEchoReport>,
    stage: Stage,
    connecting: usize,
    live: usize,
    window_started: Option<Instant>,
    cpu_start: CpuTime,
    report: RawEchoReport,
}

impl RawEchoWorker {
    fn new(plan: Arc<Plan>, report_tx: Sender<RawEchoReport>) -> RawEchoWorker {
        RawEchoWorker {
            plan,
            report_tx,
            stage: Stage::Idle,
            connecting: 0,
            live: 0,
            window_started: None,
            cpu_start: CpuTime::default(),
            report: RawEchoReport::default(),
        }
    }

    fn send(&self, ctx: &mut Ctx<'_, Self>, conn: ConnId, state: &mut Conn) {
        if ctx
            .io
            .send(conn, Chunk::Shared(self.plan.message.clone()))
            .is_ok()
        {
            state.in_flight += 1;
        }
    }

    fn connected_or_failed(&mut self, ctx: &mut Ctx<'_, Self>) {
        self.connecting = self.connecting.saturating_sub(1);
        if self.connecting == 0 && self.stage == Stage::Connecting {
            // From a timer, no connection's state is lent out, so the window
            // can start on every connection at once.
            ctx.io.arm_timer(Duration::ZERO, Timer::WindowStart);
        }
    }

    fn finish_if_done(&mut self, ctx: &mut Ctx<'_, Self>) {
        if self.live == 0 && matches!(self.stage, Stage::Draining | Stage::Connecting) {
            self.stage = Stage::Done;
            if self.report.window.is_zero() {
                if let Some(started) = self.window_started {
                    self.report.window = started.elapsed();
                }
            }
            self.report.cpu = thread_cpu_time().unwrap_or_default().since(self.cpu_start);
            let _ = self.report_tx.send(self.report.clone());
            ctx.io.stop();
        }
    }

    fn abort_all(&mut self, ctx: &mut Ctx<'_, Self>) {
        let mut unanswered = 0;
        for (conn, state) in ctx.conns.iter_mut() {
            unanswered += state.in_flight as u64;
            state.in_flight = 0;
            ctx.io.terminate(conn);
        }
        self.report.unanswered += unanswered;
    }
}

impl Handler for RawEchoWorker {
    type Conn = Conn;
    type Timer = Timer;
    type Command = Start;

    fn on_accept(&mut self, _ctx: &mut Ctx<'_, Self>, _conn: ConnId) -> Option<Conn> {
        None
    }

    fn on_command(&mut self, ctx: &mut Ctx<'_, Self>, _command: Start) {
        if self.stage != Stage::Idle {
            return;
        }
        self.cpu_start = thread_cpu_time().unwrap_or_default();
        let config = &self.plan.config;
        ctx.io.arm_timer(
            config.duration + config.timeout * 3 + Duration::from_secs(1),
            Timer::HardDeadline,
        );
        self.stage = Stage::Connecting;
        for _ in 0..config.connections {
            match ctx
                .io
                .connect(config.target, &ConnectOptions::new(), Conn::default())
            {
                Ok(_) => {
                    self.connecting += 1;
                    self.live += 1;
                }
                Err(_) => self.report.failed += 1,
            }
        }
        if self.connecting == 0 {
            self.finish_if_done(ctx);
        }
    }

    fn on_connected(&mut self, ctx: &mut Ctx<'_, Self>, _conn: ConnId, state: &mut Conn) {
        state.connected = true;
        self.report.opened += 1;
        self.connected_or_failed(ctx);
    }

    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        conn: ConnId,
        state: &mut Conn,
        data: &mut [u8],
    ) -> usize {
        let message = &self.plan.message;
        let mut rest: &[u8] = data;
        let mut echoed = 0u64;
        while !rest.is_empty() {
            let take = (message.len() - state.offset).min(rest.len());
            let (part, tail) = rest.split_at(take);
            if part != &message[state.offset..state.offset + take] {
                self.report.mismatches += 1;
            }
            rest = tail;
            state.offset += take;
            if state.offset == message.len() {
                state.offset = 0;
                state.in_flight = state.in_flight.saturating_sub(1);
                echoed += 1;
            }
        }
        self.report.echoes += echoed;
        match self.stage {
            Stage::Window => {
                for _ in 0..echoed {
                    self.send(ctx, conn, state);
                }
            }
            Stage::Draining if state.in_flight == 0 => {
                ctx.io.close(conn);
            }
            _ => {}
        }
        data.len()
    }

    fn on_closed(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        _conn: ConnId,
        state: Conn,
        cause: CloseCause,
    ) {
        self.live = self.live.saturating_sub(1);
        if !state.connected {
            self.report.failed += 1;
            self.connected_or_failed(ctx);
        } else if self.stage == Stage::Window || cause.errno().is_some() {
            self.report.failed += 1;
            self.report.unanswered += state.in_flight as u64;
        }
        self.finish_if_done(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, _key: TimerKey, timer: Timer) {
        match timer {
            Timer::WindowStart if self.stage == Stage::Connecting => {
                self.stage = Stage::Window;
                self.window_started = Some(Instant::now());
                ctx.io
                    .arm_timer(self.plan.config.duration, Timer::WindowEnd);
                let pipeline = self.plan.config.pipeline;
                let mut conns: Vec<ConnId> = Vec::new();
                for (conn, state) in ctx.conns.iter_mut() {
                    if state.connected {
                        conns.push(conn);
                    }
                }
                for conn in conns {
                    for _ in 0..pipeline {
                        if ctx
                            .io
                            .send(conn, Chunk::Shared(self.plan.message.clone()))
                            .is_ok()
                        {
                            if let Some(state) = ctx.conns.get_mut(conn) {
                                state.in_flight += 1;
                            }
                        }
                    }
                }
                self.finish_if_done(ctx);
            }
            Timer::WindowEnd if self.stage == Stage::Window => {
                self.stage = Stage::Draining;
                if let Some(started) = self.window_started {
                    self.report.window = started.elapsed();
                }
                for (conn, state) in ctx.conns.iter_mut() {
                    if state.in_flight == 0 {
                        ctx.io.close(conn);
                    }
                }
                ctx.io
                    .arm_timer(self.plan.config.timeout, Timer::DrainDeadline);
                self.finish_if_done(ctx);
            }
            Timer::DrainDeadline if self.stage == Stage::Draining => self.abort_all(ctx),
            Timer::HardDeadline if self.stage != Stage::Done => {
                self.stage = Stage::Draining;
                self.abort_all(ctx);
                self.finish_if_done(ctx);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback TCP echo on the reactor, as the `tcp_echo` example runs.
    struct Echo;

    impl Handler for Echo {
        type Conn = ();
        type Timer = ();
        type Command = ();

        fn on_accept(&mut self, _ctx: &mut Ctx<'_, Self>, _conn: ConnId) -> Option<()> {
            Some(())
        }

        fn on_data(
            &mut self,
            ctx: &mut Ctx<'_, Self>,
            conn: ConnId,
            _: &mut (),
            data: &mut [u8],
        ) -> usize {
            let _ = ctx.io.send(conn, data.to_vec());
            data.len()
        }
    }

    #[test]
    fn drives_an_echo_server_and_counts_whole_intact_echoes() {
        let server = Reactor::start(
            Config::new()
                .workers(1)
                .pinning(CorePinning::Off)
                .listen(SocketAddr::from(([127, 0, 0, 1], 0))),
            |_| Echo,
        )
        .unwrap();
        let target = server.local_addr().unwrap();
        // A small message, and one larger than a receive buffer (16 KiB)
        // so echoes arrive in pieces.
        for (message_len, pipeline) in [(client_frame_len(20), 1), (client_frame_len(40_000), 3)] {
            let report = run(&RawEchoConfig {
                target,
                connections: 4,
                message_len,
                pipeline,
                duration: Duration::from_millis(200),
                timeout: Duration::from_secs(5),
                core: None,
            })
            .unwrap();
            assert_eq!(report.opened, 4, "{report:?}");
            assert_eq!(report.errors(), 0, "{report:?}");
            assert!(report.echoes >= 4, "{report:?}");
            assert!(report.window >= Duration::from_millis(200), "{report:?}");
            assert!(report.per_sec() > 0.0);
        }
        server.stop();
        server.join().unwrap();
    }

    #[test]
    fn a_refused_target_is_counted_not_fatal() {
        // Bind a port and close it again, so nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let report = run(&RawEchoConfig {
            target: port,
            connections: 3,
            message_len: 26,
            pipeline: 1,
            duration: Duration::from_millis(100),
            timeout: Duration::from_secs(2),
            core: None,
        })
        .unwrap();
        assert_eq!(report.opened, 0);
        assert_eq!(report.failed, 3);
        assert_eq!(report.echoes, 0);
    }

    #[test]
    fn frame_lengths_follow_the_websocket_header_sizes() {
        assert_eq!(client_frame_len(20), 26);
        assert_eq!(client_frame_len(125), 131);
        assert_eq!(client_frame_len(126), 134);
        assert_eq!(client_frame_len(512), 520);
        assert_eq!(client_frame_len(16 * 1024), 16_392);
        assert_eq!(client_frame_len(65_536), 65_550);
    }
}
