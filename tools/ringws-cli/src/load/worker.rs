//! The per-worker load handler: one [`LoadWorker`] per reactor worker drives
//! its share of the connections.
//!
//! ## Life of a worker
//!
//! `Idle` until the [`Command::Start`] from the coordinator, then `Running`:
//! it opens its connections (in batches, or paced by the ramp) and, once every
//! one has opened or failed, waits at the [`WindowBarrier`] until every
//! worker's opening is over, then starts the sending window, so the windows
//! of all workers are one interval (churn: the window starts at once, each
//! cycle being a connection). A worker with no connection open then has no
//! window. At the end of the window it is `Draining`: nothing new is sent,
//! connections close with the configured code as soon as their last reply is
//! in (or after the timeout), and when none is left the worker stops. A hard
//! deadline armed at the start stops it whatever is left; connections still
//! open then are aborted and counted.
//!
//! ## Per-message cost
//!
//! Receiving runs `ringws_proto::Connection::read` over the reactor's
//! borrowed buffer (server frames are unmasked, so nothing is copied for a
//! frame inside one buffer). An echo's sequence number (its first bytes, see
//! `frames`) says which message it answers: normally the oldest awaiting
//! one, whose send time is popped from the connection's FIFO; a later one
//! (the skipped are counted); or one already answered (a repeated echo,
//! counted as unexpected and never timed). The rest of the echo is checked
//! against the prebuilt payload with one `memcmp`, the latency recorded in
//! the histogram, and the next frame appended to the connection's pending
//! send buffer (see `frames`). In the closed loop an echo of at least
//! `MIN_PAYLOAD_SENT_IN_PLACE` bytes is instead compared as it is masked in
//! place into the next message, which leaves from the receive buffer it
//! arrived in, as a server's reply does: no second copy of
//! the payload. One clock read per `on_data` call covers every message in
//! it.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringws_proto::connection::FrameHead;
use ringws_proto::handshake::ClientHandshake;
use ringws_proto::{Config as WsConfig, Connection, Event, MaskSeed, Opcode, Role};
use ringws_reactor::{
    Chunk, CloseCause, ConnId, ConnectOptions, Ctx, Handler, Io, Tick, TimerKey, WorkerId,
    MIN_PAYLOAD_SENT_IN_PLACE,
};

use crate::load::config::Mode;
use crate::load::cpu::{self, CpuTime};
use crate::load::frames::{
    append_frame, classify_echo, frame_len, mask_echo_as_next_payload, read_seq, seq_len,
    seq_modulus, EchoOrder,
};
use crate::load::report::{record, ErrorKind, Tally, WorkerReport};
use crate::load::schedule::{rate_share, share, Pacer};

/// Connections started per tick when no ramp is set.
const OPEN_BATCH: u64 = 512;

/// Most owed messages one pacing call sends. After a stall the backlog can
/// exceed what the connections hold; the rest goes out on the next loop
/// turn, so echoes and the window's timers are never held up behind it.
const SENDS_PER_PACE: usize = 4096;

/// How often workers publish their counters for the progress line.
const PUBLISH_EVERY: Duration = Duration::from_millis(200);

/// How often a worker whose connections are open checks whether the others
/// are done opening: one tick, so windows start within about a millisecond
/// of each other.
const BARRIER_POLL: Duration = Duration::from_millis(1);

/// What every worker reads: the target, the payload, the settings.
#[derive(Debug)]
pub(crate) struct Plan {
    pub mode: Mode,
    pub target: SocketAddr,
    pub host: String,
    pub port: u16,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub payload: Box<[u8]>,
    pub opcode: Opcode,
    pub workers: usize,
    /// Connections (churn: concurrent cycles) in total.
    pub parallelism: u64,
    pub pipeline: usize,
    pub duration: Duration,
    pub timeout: Duration,
    pub rate: Option<f64>,
    pub ramp: Option<f64>,
    pub messages_per_cycle: u32,
    pub cycles: Option<u64>,
    pub close_code: u16,
    pub ping_interval: Option<Duration>,
    pub source_addrs: Vec<IpAddr>,
    pub max_in_flight: usize,
    pub gauges: Box<[WorkerGauges]>,
    pub barrier: WindowBarrier,
}

impl Plan {
    /// Longest a worker may run before its hard deadline: opening (ramp
    /// plus a timeout), the window, draining (rate mode: a timeout sending
    /// owed messages, then one for their replies), closing, and a second of
    /// slack.
    pub(crate) fn worker_deadline(&self, worker: usize) -> Duration {
        let units = share(self.parallelism, self.workers, worker);
        let ramp = match (self.mode, self.ramp) {
            (Mode::Churn, _) | (_, None) => Duration::ZERO,
            (_, Some(ramp)) => {
                let rate = rate_share(ramp, self.parallelism, units).max(1e-9);
                Duration::try_from_secs_f64(units as f64 / rate).unwrap_or(Duration::MAX)
            }
        };
        let timeouts = if self.mode == Mode::Rate { 4 } else { 3 };
        ramp.saturating_add(self.duration)
            .saturating_add(self.timeout.saturating_mul(timeouts))
            .saturating_add(Duration::from_secs(1))
    }
}

/// Counters a worker publishes for the progress line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct WorkerGauges {
    pub messages: AtomicU64,
    pub errors: AtomicU64,
    pub open: AtomicU64,
    pub cycles: AtomicU64,
}

/// Where the workers meet before the window (echo, rate, hold): each
/// arrives once its own connections have opened or failed, and the window
/// starts once all have, so the run's window is one interval in which every
/// connection that opened takes part, whatever the ramp or a slow
/// handshake did to one worker.
#[derive(Debug, Default)]
pub(crate) struct WindowBarrier {
    /// Workers whose opening is over.
    arrived: AtomicUsize,
    /// Connections open when their worker arrived, all workers.
    open: AtomicU64,
}

impl WindowBarrier {
    /// Records a worker's arrival with `open` connections.
    fn arrive(&self, open: u64) {
        self.open.fetch_add(open, Ordering::Relaxed);
        // Release: whoever sees every arrival sees every count.
        self.arrived.fetch_add(1, Ordering::Release);
    }

    /// The connections open in all, once all `workers` have arrived.
    fn passed(&self, workers: usize) -> Option<u64> {
        (self.arrived.load(Ordering::Acquire) >= workers).then(|| self.open.load(Ordering::Relaxed))
    }
}

/// Commands from the coordinator.
#[derive(Debug)]
pub(crate) enum Command {
    /// Begin the run.
    Start,
    /// End the run early: the window ends now (or never begins), and
    /// connections close as at the end of a run.
    Interrupt,
}

/// What a timer means when it fires.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Timer {
    /// Start the next connections.
    Open,
    /// Issue due messages (rate) or cycles (churn).
    Pace,
    /// Publish counters.
    Publish,
    /// Check whether every worker is done opening.
    Barrier,
    /// Every worker's opening is over: start the window.
    WindowStart,
    /// The sending window is over.
    WindowEnd,
    /// Replies after the window are no longer awaited.
    DrainTimeout,
    /// Abort whatever is left.
    HardDeadline,
    /// A connection's connect deadline (never cancelled; checked on firing).
    Connect(ConnId),
    /// A connection's handshake or close deadline.
    Deadline(ConnId),
    /// Ping a connection.
    Ping(ConnId),
    /// Churn: a cycle whose connect failed at once ends here, on the next
    /// tick, so that its replacement starts without recursing.
    CycleFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Idle,
    Running,
    Draining,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Handshaking,
    Open,
    /// Our Close is sent; waiting for the server's Close and TCP close.
    Closing,
    /// The server's Close came first (answered); waiting for its TCP close.
    ServerClosing,
    /// We gave up on the connection (timeout, protocol or handshake error)
    /// and are closing it.
    Failed,
}

/// One connection's state.
#[derive(Debug)]
pub(crate) struct Peer {
    phase: Phase,
    opened: bool,
    /// An error has been counted for how this connection ends.
    errored: bool,
    /// We sent a Close.
    we_closed: bool,
    /// The server's close code (1005 for an empty Close).
    server_close: Option<u16>,
    ws: Connection,
    handshake: Option<Box<ClientHandshake>>,
    deadline: Option<TimerKey>,
    ping_timer: Option<TimerKey>,
    /// Send (rate mode: intended) times of the messages awaiting an echo,
    /// nanoseconds since the worker's epoch.
    in_flight: VecDeque<u64>,
    /// Messages sent: the next one's sequence number (its payload carries
    /// it, see `frames`), so that the last `in_flight.len()` numbers are
    /// those awaiting an echo.
    sent_seq: u64,
    /// Send times of the Pings awaiting a Pong, each Ping's payload.
    pings_out: VecDeque<u64>,
    /// Churn: messages still to send.
    remaining: u32,
    /// Rate mode: in the queue of connections with room.
    queued_with_room: bool,
    /// When the current phase began (connect, handshake or close).
    phase_started: u64,
}

impl Peer {
    fn awaiting(&self) -> usize {
        self.in_flight.len() + self.pings_out.len()
    }
}

/// The handler of one worker.
#[derive(Debug)]
pub(crate) struct LoadWorker {
    index: usize,
    plan: Arc<Plan>,
    reports: Sender<WorkerReport>,
    stage: Stage,
    epoch: Instant,
    rng: fastrand::Rng,
    tally: Tally,
    cpu_start: CpuTime,
    /// Connections (or cycles) this worker runs at once.
    units: u64,
    /// Connections with a state (connect called, `on_closed` not yet).
    alive: u64,
    open_now: u64,
    /// Initial connections not started yet.
    to_open: u64,
    /// Initial connections started but neither open nor failed.
    unresolved: u64,
    /// Every initial connection has opened or failed.
    opening_done: bool,
    /// Opening done with connections open; waiting for the other workers
    /// to start the window.
    awaiting_window: bool,
    /// Connections open when this worker arrived at the barrier.
    open_at_barrier: u64,
    started: u64,
    ramp: Option<Pacer>,
    pacer: Option<Pacer>,
    /// Rate mode: connections that can take another message, each once, in
    /// the order they got room (round robin while all have it; lazily
    /// pruned of closed ones).
    with_room: VecDeque<ConnId>,
    /// Rate mode: messages due and not sent yet, oldest first, as runs of
    /// (intended time, count).
    owed: VecDeque<(u64, u64)>,
    /// Rate mode: the pending pacing timer.
    pace_timer: Option<TimerKey>,
    /// Churn.
    cycles_limit: Option<u64>,
    cycles_started: u64,
    cycles_active: u64,
    cycles_owed: u64,
    connect_timers: Vec<Option<TimerKey>>,
    window_start: Option<u64>,
    window_end: Option<u64>,
    /// When the last echo or completed cycle was counted.
    last_counted: Option<u64>,
    reactor: ringws_reactor::WorkerStats,
}

impl LoadWorker {
    pub(crate) fn new(id: WorkerId, plan: Arc<Plan>, reports: Sender<WorkerReport>) -> Self {
        let index = id.index();
        let units = share(plan.parallelism, plan.workers, index);
        let active_workers = plan.parallelism.min(plan.workers as u64) as usize;
        // --cycles bounds churn only.
        let churn_cycles = plan.cycles.filter(|_| plan.mode == Mode::Churn);
        let cycles_limit = churn_cycles.map(|cycles| match units {
            0 => 0,
            _ => share(cycles, active_workers, index),
        });
        LoadWorker {
            index,
            reports,
            stage: Stage::Idle,
            epoch: Instant::now(),
            rng: fastrand::Rng::new(),
            tally: Tally::default(),
            cpu_start: CpuTime::default(),
            units,
            alive: 0,
            open_now: 0,
            to_open: 0,
            unresolved: 0,
            opening_done: false,
            awaiting_window: false,
            open_at_barrier: 0,
            started: 0,
            ramp: None,
            pacer: None,
            with_room: VecDeque::new(),
            owed: VecDeque::new(),
            pace_timer: None,
            cycles_limit,
            cycles_started: 0,
            cycles_active: 0,
            cycles_owed: 0,
            connect_timers: Vec::new(),
            window_start: None,
            window_end: None,
            last_counted: None,
            reactor: ringws_reactor::WorkerStats::default(),
            plan,
        }
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn ns_of_tick(&self, io: &Io<'_, Self>, tick: Tick) -> u64 {
        io.instant_of(tick)
            .saturating_duration_since(self.epoch)
            .as_nanos() as u64
    }

    fn gauges(&self) -> &WorkerGauges {
        &self.plan.gauges[self.index]
    }

    // ----- run stages -----

    fn start(&mut self, io: &mut Io<'_, Self>) {
        if self.stage != Stage::Idle {
            return;
        }
        self.stage = Stage::Running;
        self.epoch = Instant::now();
        self.cpu_start = cpu::thread_cpu_time().unwrap_or_default();
        let deadline = self.plan.worker_deadline(self.index);
        io.arm_timer(deadline, Timer::HardDeadline);
        io.arm_timer(PUBLISH_EVERY, Timer::Publish);
        // A churn worker whose share of --cycles is none has nothing to do
        // either. Neither has a window.
        if self.units == 0 || self.cycles_limit == Some(0) {
            if self.plan.mode != Mode::Churn {
                self.plan.barrier.arrive(0);
            }
            self.finish(io);
            return;
        }
        match self.plan.mode {
            Mode::Churn => {
                self.window_start = Some(0);
                io.arm_timer(self.plan.duration, Timer::WindowEnd);
                match self.plan.rate {
                    Some(rate) => {
                        let rate = rate_share(rate, self.plan.parallelism, self.units);
                        // From the next tick boundary, so no intended time
                        // lies in the past.
                        let pacer = Pacer::new(io.now() + 1, rate).lasting(self.plan.duration);
                        self.pacer = Some(pacer);
                        self.pace(io);
                    }
                    None => {
                        for _ in 0..self.units {
                            self.start_cycle(io);
                        }
                    }
                }
            }
            Mode::Echo | Mode::Rate | Mode::Hold => {
                self.to_open = self.units;
                if let Some(ramp) = self.plan.ramp {
                    let rate = rate_share(ramp, self.plan.parallelism, self.units);
                    self.ramp = Some(Pacer::new(io.now(), rate));
                }
                self.open_more(io);
            }
        }
    }

    /// Starts the initial connections that are due.
    fn open_more(&mut self, io: &mut Io<'_, Self>) {
        if self.stage != Stage::Running {
            self.to_open = 0;
            return;
        }
        let now = io.now();
        let mut batch = 0;
        while self.to_open > 0 {
            let due = match &mut self.ramp {
                Some(ramp) => ramp.next_due(now).is_some(),
                None => batch < OPEN_BATCH,
            };
            if !due {
                break;
            }
            batch += 1;
            self.to_open -= 1;
            self.unresolved += 1;
            self.connect(io);
        }
        if self.to_open > 0 {
            let next = self.ramp.as_ref().map_or(now + 1, Pacer::next_tick);
            io.arm_timer_at(next, Timer::Open);
        }
        self.check_opening_done(io);
    }

    /// Arrives at the barrier once every initial connection has opened or
    /// failed.
    fn check_opening_done(&mut self, io: &mut Io<'_, Self>) {
        if self.plan.mode == Mode::Churn
            || self.opening_done
            || self.stage != Stage::Running
            || self.to_open > 0
            || self.unresolved > 0
        {
            return;
        }
        self.opening_done = true;
        let open = self.open_now;
        self.plan.barrier.arrive(open);
        if open == 0 {
            // No window here: the worker ends once its failed connections
            // are closed.
            self.check_done(io);
            return;
        }
        self.open_at_barrier = open;
        self.awaiting_window = true;
        if self.plan.barrier.passed(self.plan.workers).is_some() {
            // The window's first sends touch every connection, which a
            // connection callback cannot reach: do it from a timer.
            io.arm_timer(Duration::ZERO, Timer::WindowStart);
        } else {
            io.arm_timer(BARRIER_POLL, Timer::Barrier);
        }
    }

    fn barrier_check(&mut self, ctx: &mut Ctx<'_, Self>) {
        if !self.awaiting_window || self.stage != Stage::Running {
            return;
        }
        if self.plan.barrier.passed(self.plan.workers).is_some() {
            self.window_started(ctx);
        } else {
            ctx.io.arm_timer(BARRIER_POLL, Timer::Barrier);
        }
    }

    fn window_started(&mut self, ctx: &mut Ctx<'_, Self>) {
        if !self.awaiting_window || self.stage != Stage::Running {
            return;
        }
        self.awaiting_window = false;
        // Rate mode: the connections open at the barrier share the rate,
        // so that of a worker whose connections all failed is not lost.
        let rate = rate_share(
            self.plan.rate.unwrap_or(1.0),
            self.plan
                .barrier
                .passed(self.plan.workers)
                .unwrap_or(self.open_at_barrier),
            self.open_at_barrier,
        );
        if self.open_now == 0 {
            // Every connection closed while the other workers were opening:
            // no window, and the share of the rate is never sent.
            if self.plan.mode == Mode::Rate {
                let pacer = Pacer::new(ctx.io.now() + 1, rate).lasting(self.plan.duration);
                self.tally.behind_schedule += pacer.remaining();
            }
            self.check_done(&mut ctx.io);
            return;
        }
        let now = self.now_ns();
        self.window_start = Some(now);
        ctx.io.arm_timer(self.plan.duration, Timer::WindowEnd);
        match self.plan.mode {
            Mode::Echo => {
                let pipeline = self.plan.pipeline;
                for (id, peer) in ctx.conns.iter_mut() {
                    if peer.phase == Phase::Open {
                        for _ in 0..pipeline {
                            self.send_message(&mut ctx.io, id, peer, now);
                        }
                    }
                }
            }
            Mode::Rate => {
                // From the next tick boundary, so no intended time lies in
                // the past.
                let pacer = Pacer::new(ctx.io.now() + 1, rate).lasting(self.plan.duration);
                self.pacer = Some(pacer);
                self.pace_messages(ctx);
            }
            Mode::Hold | Mode::Churn => {}
        }
    }

    fn end_window(&mut self, ctx: &mut Ctx<'_, Self>) {
        if self.stage != Stage::Running {
            return;
        }
        // Issue what fell due since the last pacing timer, so the schedule
        // covers the whole window.
        match self.plan.mode {
            Mode::Rate => self.pace_messages(ctx),
            Mode::Churn => self.pace(&mut ctx.io),
            Mode::Echo | Mode::Hold => {}
        }
        self.stage = Stage::Draining;
        self.window_end = Some(self.now_ns());
        self.to_open = 0;
        self.pacer = None;
        // Cycles due that found no free slot never start; those past a
        // --cycles limit were never going to.
        let startable = self
            .cycles_limit
            .map_or(u64::MAX, |limit| limit.saturating_sub(self.cycles_started));
        self.tally.cycles_behind_schedule += self.cycles_owed.min(startable);
        self.cycles_owed = 0;
        // Owed messages still go out as connections get room, stamped with
        // their intended times, so a stall at the end of the window shows
        // in the latency; a connection closes once it is idle and nothing
        // is owed.
        if self.owed.is_empty() && self.plan.mode != Mode::Churn {
            self.close_idle(ctx);
        }
        ctx.io.arm_timer(self.plan.timeout, Timer::DrainTimeout);
        self.check_done(&mut ctx.io);
    }

    /// The run was interrupted: a window in progress ends now, as at its
    /// planned end; a worker still opening (or waiting for the others to)
    /// has no window and closes what opened.
    fn interrupt(&mut self, ctx: &mut Ctx<'_, Self>) {
        match self.stage {
            Stage::Idle => self.finish(&mut ctx.io),
            Stage::Running if self.window_start.is_some() => self.end_window(ctx),
            Stage::Running => {
                self.stage = Stage::Draining;
                self.awaiting_window = false;
                self.to_open = 0;
                self.ramp = None;
                // Connections still handshaking close once they open.
                let now = self.now_ns();
                for (id, peer) in ctx.conns.iter_mut() {
                    if peer.phase == Phase::Open {
                        self.begin_close(&mut ctx.io, id, peer, now);
                    }
                }
                self.check_done(&mut ctx.io);
            }
            Stage::Draining | Stage::Done => {}
        }
    }

    fn drain_timeout(&mut self, ctx: &mut Ctx<'_, Self>) {
        if !self.owed.is_empty() {
            // Stop sending what is still owed; the replies to what was sent
            // last get a timeout of their own.
            self.give_up_owed();
            self.close_idle(ctx);
            ctx.io.arm_timer(self.plan.timeout, Timer::DrainTimeout);
            return;
        }
        let now = self.now_ns();
        for (id, peer) in ctx.conns.iter_mut() {
            if peer.phase == Phase::Open {
                let unanswered = peer.in_flight.len() as u64;
                self.tally.error(ErrorKind::ReplyTimeout, unanswered);
                self.tally
                    .error(ErrorKind::PingTimeout, peer.pings_out.len() as u64);
                self.tally.unanswered += unanswered;
                peer.in_flight.clear();
                peer.pings_out.clear();
                self.begin_close(&mut ctx.io, id, peer, now);
            }
        }
    }

    /// Draining: closes every open connection that awaits no reply.
    fn close_idle(&mut self, ctx: &mut Ctx<'_, Self>) {
        let now = self.now_ns();
        for (id, peer) in ctx.conns.iter_mut() {
            if peer.phase == Phase::Open && peer.awaiting() == 0 {
                self.begin_close(&mut ctx.io, id, peer, now);
            }
        }
    }

    /// Stops the worker once nothing is left to wait for.
    fn check_done(&mut self, io: &mut Io<'_, Self>) {
        if self.alive > 0 {
            return;
        }
        let churn_limit_reached = self.plan.mode == Mode::Churn
            && self
                .cycles_limit
                .is_some_and(|limit| self.cycles_started >= limit);
        // A worker waiting for the window goes on waiting: the window's
        // start accounts for what it can no longer send.
        let opened_and_lost =
            self.plan.mode != Mode::Churn && self.opening_done && !self.awaiting_window;
        if self.stage == Stage::Draining
            || (self.stage == Stage::Running && (churn_limit_reached || opened_and_lost))
        {
            self.finish(io);
        }
    }

    fn finish(&mut self, io: &mut Io<'_, Self>) {
        if self.stage == Stage::Done {
            return;
        }
        if self.window_start.is_some() && self.window_end.is_none() {
            self.window_end = Some(self.now_ns());
        }
        self.give_up_owed();
        if let (Mode::Rate, Some(pacer)) = (self.plan.mode, self.pacer.take()) {
            // The window ended early (every connection lost, or the hard
            // deadline): the rest of the schedule is never sent.
            self.tally.behind_schedule += pacer.remaining();
        }
        self.stage = Stage::Done;
        self.reactor = io.stats();
        self.publish();
        io.stop();
    }

    fn publish(&self) {
        let gauges = self.gauges();
        gauges
            .messages
            .store(self.tally.messages_received, Ordering::Relaxed);
        gauges
            .errors
            .store(self.tally.error_count(), Ordering::Relaxed);
        gauges.open.store(self.open_now, Ordering::Relaxed);
        gauges.cycles.store(self.tally.cycles, Ordering::Relaxed);
    }

    // ----- connections -----

    /// Starts one connection; `false` when it failed at once (counted).
    fn connect(&mut self, io: &mut Io<'_, Self>) -> bool {
        let plan = &self.plan;
        let global = self.started * plan.workers as u64 + self.index as u64;
        self.started += 1;
        self.tally.connections_attempted += 1;
        let options = match plan.source_addrs.len() {
            0 => ConnectOptions::new(),
            len => ConnectOptions::new().source(SocketAddr::new(
                plan.source_addrs[(global % len as u64) as usize],
                0,
            )),
        };
        let headers: Vec<(&str, &str)> = plan
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let nonce = self.rng.u128(..).to_le_bytes();
        let handshake =
            match ClientHandshake::new(&plan.host, plan.port, &plan.path, nonce, &[], &headers) {
                Ok(handshake) => handshake,
                Err(error) => {
                    // The coordinator built one before starting, so this
                    // cannot happen; count it rather than panic.
                    self.tally.error(
                        ErrorKind::HandshakeInvalid {
                            reason: error.to_string(),
                        },
                        1,
                    );
                    self.connect_failed_at_once(io);
                    return false;
                }
            };
        let peer = Peer {
            phase: Phase::Connecting,
            opened: false,
            errored: false,
            we_closed: false,
            server_close: None,
            ws: Connection::new(
                Role::Client,
                WsConfig {
                    mask_seed: {
                        // A load generator needs varied keys, not secret ones.
                        let mut seed = [0u8; 32];
                        self.rng.fill(&mut seed);
                        MaskSeed::from_bytes(seed)
                    },
                    ..WsConfig::default()
                },
            ),
            handshake: Some(Box::new(handshake)),
            deadline: None,
            ping_timer: None,
            in_flight: VecDeque::new(),
            sent_seq: 0,
            pings_out: VecDeque::new(),
            remaining: plan.messages_per_cycle,
            queued_with_room: false,
            phase_started: self.now_ns(),
        };
        let target = plan.target;
        match io.connect(target, &options, peer) {
            Ok(id) => {
                self.alive += 1;
                let key = io.arm_timer(self.plan.timeout, Timer::Connect(id));
                let slot = id.slot() as usize;
                if self.connect_timers.len() <= slot {
                    self.connect_timers.resize(slot + 1, None);
                }
                self.connect_timers[slot] = Some(key);
                true
            }
            Err(error) => {
                let kind = match error.error.raw_os_error() {
                    Some(libc::ECONNREFUSED) => ErrorKind::ConnectRefused,
                    Some(errno) => ErrorKind::ConnectFailed { errno },
                    None => ErrorKind::ConnectFailed { errno: 0 },
                };
                self.tally.error(kind, 1);
                self.connect_failed_at_once(io);
                false
            }
        }
    }

    fn connect_failed_at_once(&mut self, io: &mut Io<'_, Self>) {
        self.tally.connections_failed += 1;
        match self.plan.mode {
            // The slot is handed on like that of any failed cycle.
            Mode::Churn => {
                io.arm_timer(Duration::from_millis(1), Timer::CycleFailed);
            }
            _ => self.unresolved = self.unresolved.saturating_sub(1),
        }
    }

    fn take_connect_timer(&mut self, io: &mut Io<'_, Self>, conn: ConnId) {
        if let Some(key) = self
            .connect_timers
            .get_mut(conn.slot() as usize)
            .and_then(Option::take)
        {
            io.cancel_timer(key);
        }
    }

    /// A connection failed before opening, with `kind` (if not yet counted).
    fn fail_before_open(
        &mut self,
        io: &mut Io<'_, Self>,
        peer: &mut Peer,
        kind: Option<ErrorKind>,
    ) {
        if matches!(peer.phase, Phase::Connecting | Phase::Handshaking) {
            if let Some(kind) = kind {
                if !peer.errored {
                    self.tally.error(kind, 1);
                }
            }
            peer.errored = true;
            peer.phase = Phase::Failed;
            self.tally.connections_failed += 1;
            if let Some(key) = peer.deadline.take() {
                io.cancel_timer(key);
            }
            if self.plan.mode != Mode::Churn {
                self.unresolved = self.unresolved.saturating_sub(1);
                self.check_opening_done(io);
            }
        }
    }

    fn handshake_done(&mut self, io: &mut Io<'_, Self>, conn: ConnId, peer: &mut Peer, now: u64) {
        if let Some(key) = peer.deadline.take() {
            io.cancel_timer(key);
        }
        record(
            &mut self.tally.histograms.handshake,
            now.saturating_sub(peer.phase_started),
        );
        peer.handshake = None;
        peer.phase = Phase::Open;
        peer.opened = true;
        self.tally.connections_opened += 1;
        self.open_now += 1;
        self.tally.peak_open = self.tally.peak_open.max(self.open_now);
        match self.plan.mode {
            Mode::Churn => {
                if self.stage == Stage::Done {
                    return;
                }
                let first = (self.plan.pipeline as u32).min(peer.remaining);
                for _ in 0..first {
                    self.send_message(io, conn, peer, now);
                }
                if peer.remaining == 0 && peer.awaiting() == 0 {
                    self.begin_close(io, conn, peer, now);
                }
            }
            Mode::Echo | Mode::Rate | Mode::Hold => {
                self.unresolved = self.unresolved.saturating_sub(1);
                if self.stage != Stage::Running {
                    self.begin_close(io, conn, peer, now);
                    return;
                }
                if self.plan.mode == Mode::Rate {
                    self.note_room(conn, peer);
                }
                if let (Mode::Hold, Some(interval)) = (self.plan.mode, self.plan.ping_interval) {
                    // Spread the first pings over one interval.
                    let offset = interval.mul_f64(self.rng.f64());
                    peer.ping_timer = Some(io.arm_timer(offset, Timer::Ping(conn)));
                }
                self.check_opening_done(io);
            }
        }
    }

    /// Leaves the `Open` phase for `phase`.
    fn leave_open(&mut self, io: &mut Io<'_, Self>, peer: &mut Peer, phase: Phase) {
        if peer.phase == Phase::Open {
            self.open_now = self.open_now.saturating_sub(1);
            if let Some(key) = peer.ping_timer.take() {
                io.cancel_timer(key);
            }
        }
        peer.phase = phase;
    }

    /// Starts our closing handshake (or abandons a connection not open yet).
    fn begin_close(&mut self, io: &mut Io<'_, Self>, conn: ConnId, peer: &mut Peer, now: u64) {
        match peer.phase {
            Phase::Connecting | Phase::Handshaking => {
                peer.phase = Phase::Failed;
                io.close_now(conn);
            }
            Phase::Open => {
                self.leave_open(io, peer, Phase::Closing);
                if peer.ws.close(self.plan.close_code, "").is_ok() {
                    peer.we_closed = true;
                }
                flush_control(io, conn, &mut peer.ws);
                peer.phase_started = now;
                if let Some(key) = peer.deadline.take() {
                    io.cancel_timer(key);
                }
                peer.deadline = Some(io.arm_timer(self.plan.timeout, Timer::Deadline(conn)));
            }
            Phase::Closing | Phase::ServerClosing | Phase::Failed => {}
        }
    }

    // ----- messages -----

    /// Sends one message stamped `stamp`; `false` if the connection cannot
    /// send any more.
    fn send_message(
        &mut self,
        io: &mut Io<'_, Self>,
        conn: ConnId,
        peer: &mut Peer,
        stamp: u64,
    ) -> bool {
        let Some(head) = self.next_frame_head(io, conn, peer) else {
            return false;
        };
        let payload = &self.plan.payload;
        let len = frame_len(&head, payload.len());
        let seq = peer.sent_seq;
        let queued = io.send_with(conn, len, |out| append_frame(out, &head, payload, seq));
        if queued.is_err() {
            return false;
        }
        self.count_sent(peer, stamp);
        true
    }

    /// Sends the next message stamped `stamp` from `echo`, the echo just
    /// received (payload-sized), masked in place while it is compared with
    /// the payload. It leaves from where it is: a large echo in its receive
    /// buffer (`Io::send_with_payload`), an assembled one as its own buffer
    /// (back to the pool once written). Returns whether the echo matched
    /// the payload past its sequence number (which the caller checked).
    fn send_next_from_echo(
        &mut self,
        io: &mut Io<'_, Self>,
        conn: ConnId,
        peer: &mut Peer,
        stamp: u64,
        mut echo: Received<'_>,
    ) -> bool {
        let Some(head) = self.next_frame_head(io, conn, peer) else {
            let numbered = seq_len(self.plan.payload.len());
            let matched = echo.bytes()[numbered..] == self.plan.payload[numbered..];
            echo.recycle(io);
            return matched;
        };
        let matched =
            mask_echo_as_next_payload(&head, echo.bytes_mut(), &self.plan.payload, peer.sent_seq);
        let queued = match echo {
            Received::InPlace(bytes) => io.send_with_payload(conn, head.as_bytes(), bytes),
            Received::Assembled(bytes) => io
                .send(conn, Chunk::copied(head.as_bytes()))
                .and_then(|_| io.send(conn, Chunk::Owned(bytes))),
        };
        if queued.is_ok() {
            self.count_sent(peer, stamp);
        }
        matched
    }

    /// The header of the next message's frame (with a fresh mask key),
    /// after the control frames queued before it; `None` once the
    /// connection may send no more data.
    fn next_frame_head(
        &self,
        io: &mut Io<'_, Self>,
        conn: ConnId,
        peer: &mut Peer,
    ) -> Option<FrameHead> {
        let head = peer
            .ws
            .data_frame_head(self.plan.opcode, self.plan.payload.len(), true)
            .ok()?;
        flush_control(io, conn, &mut peer.ws);
        Some(head)
    }

    fn count_sent(&mut self, peer: &mut Peer, stamp: u64) {
        peer.in_flight.push_back(stamp);
        peer.sent_seq += 1;
        peer.remaining = peer.remaining.saturating_sub(1);
        self.tally.messages_sent += 1;
        self.tally.payload_bytes_sent += self.plan.payload.len() as u64;
    }

    fn on_message(
        &mut self,
        io: &mut Io<'_, Self>,
        conn: ConnId,
        peer: &mut Peer,
        opcode: Opcode,
        received: Received<'_>,
        now: u64,
    ) {
        let payload_len = self.plan.payload.len();
        let numbered = seq_len(payload_len);
        let seq = received.bytes().get(..numbered).and_then(read_seq);
        let order = classify_echo(
            seq,
            peer.sent_seq,
            peer.in_flight.len(),
            seq_modulus(numbered),
        );
        let sent = match order {
            // A second copy of an echo answers nothing: matched against the
            // oldest message, it would be timed from that message's send.
            EchoOrder::Repeated => None,
            EchoOrder::Skipping(skipped) => {
                peer.in_flight.drain(..skipped);
                self.tally.unanswered += skipped as u64;
                self.tally.error(ErrorKind::EchoSkipped, skipped as u64);
                peer.in_flight.pop_front()
            }
            // A number that is none of ours is the oldest's echo altered,
            // as a server that corrupts echoes sends them.
            EchoOrder::Oldest | EchoOrder::Unknown => peer.in_flight.pop_front(),
        };
        let Some(sent) = sent else {
            self.tally.error(ErrorKind::UnexpectedMessage, 1);
            received.recycle(io);
            return;
        };
        let len = received.bytes().len();
        let comparable = opcode == self.plan.opcode && len == payload_len;
        // The closed loop sends its next message from a large echo, checking
        // it on the way; a small one costs less compared and copied.
        let echo_sends_next = comparable
            && len >= MIN_PAYLOAD_SENT_IN_PLACE
            && peer.phase == Phase::Open
            && (self.plan.mode, self.stage) == (Mode::Echo, Stage::Running);
        let content_matched = if echo_sends_next {
            self.send_next_from_echo(io, conn, peer, now, received)
        } else {
            let matched =
                comparable && received.bytes()[numbered..] == self.plan.payload[numbered..];
            received.recycle(io);
            matched
        };
        if content_matched && order != EchoOrder::Unknown {
            self.last_counted = Some(now);
            self.tally.messages_received += 1;
            self.tally.payload_bytes_received += len as u64;
            record(&mut self.tally.histograms.message, now.saturating_sub(sent));
        } else {
            self.tally.error(ErrorKind::EchoMismatch, 1);
        }
        if peer.phase != Phase::Open {
            return;
        }
        match (self.plan.mode, self.stage) {
            // Back to `pipeline` in flight: one message for this echo (none
            // if it was sent on from the echo), more for skipped ones.
            (Mode::Echo, Stage::Running) => {
                while peer.in_flight.len() < self.plan.pipeline
                    && self.send_message(io, conn, peer, now)
                {}
            }
            (Mode::Rate, Stage::Running) => {
                self.send_owed_on(io, conn, peer);
                self.note_room(conn, peer);
            }
            (Mode::Rate, Stage::Draining) if !self.owed.is_empty() => {
                self.send_owed_on(io, conn, peer);
                if peer.awaiting() == 0 {
                    self.begin_close(io, conn, peer, now);
                }
            }
            (Mode::Churn, Stage::Running | Stage::Draining) if peer.remaining > 0 => {
                while peer.remaining > 0
                    && peer.in_flight.len() < self.plan.pipeline
                    && self.send_message(io, conn, peer, now)
                {}
            }
            (Mode::Churn, _) | (_, Stage::Draining) if peer.awaiting() == 0 => {
                self.begin_close(io, conn, peer, now);
            }
            _ => {}
        }
    }

    fn on_pong(
        &mut self,
        io: &mut Io<'_, Self>,
        conn: ConnId,
        peer: &mut Peer,
        payload: &[u8],
        now: u64,
    ) {
        // Only a Pong that carries one of our Pings' payloads answers it
        // (RFC 6455 §5.5.3); any other is unsolicited (allowed) and says
        // nothing about latency. A server may answer only the latest of
        // several Pings: the earlier ones are then answered too.
        let Ok(stamp) = <[u8; 8]>::try_from(payload) else {
            return;
        };
        let stamp = u64::from_be_bytes(stamp);
        let Some(index) = peer.pings_out.iter().position(|&sent| sent == stamp) else {
            return;
        };
        peer.pings_out.drain(..=index);
        self.tally.pongs_received += 1;
        record(&mut self.tally.histograms.ping, now.saturating_sub(stamp));
        if self.stage == Stage::Draining && peer.phase == Phase::Open && peer.awaiting() == 0 {
            self.begin_close(io, conn, peer, now);
        }
    }

    fn ping(&mut self, io: &mut Io<'_, Self>, conn: ConnId, peer: &mut Peer) {
        peer.ping_timer = None;
        let (Phase::Open, Stage::Running, Some(interval)) =
            (peer.phase, self.stage, self.plan.ping_interval)
        else {
            return;
        };
        let now = self.now_ns();
        if peer.ws.ping(&now.to_be_bytes()).is_ok() {
            flush_control(io, conn, &mut peer.ws);
            peer.pings_out.push_back(now);
            self.tally.pings_sent += 1;
        }
        peer.ping_timer = Some(io.arm_timer(interval, Timer::Ping(conn)));
    }

    /// Marks the oldest owed message sent; its intended time.
    fn take_owed(&mut self) -> Option<u64> {
        let front = self.owed.front_mut()?;
        let intended = front.0;
        front.1 -= 1;
        if front.1 == 0 {
            self.owed.pop_front();
        }
        if self.stage == Stage::Draining {
            self.tally.sent_after_window += 1;
        }
        Some(intended)
    }

    fn owe(&mut self, intended: u64, count: u64) {
        match self.owed.back_mut() {
            Some((time, owed)) if *time == intended => *owed += count,
            _ => self.owed.push_back((intended, count)),
        }
    }

    /// Rate mode: owes every message now due, in bulk with its intended
    /// time, then sends owed messages, oldest first, while connections have
    /// room. A message costs nothing until a connection can take it, so a
    /// stalled server does not stall the schedule, and the lateness of what
    /// is sent late still counts as latency.
    fn pace_messages(&mut self, ctx: &mut Ctx<'_, Self>) {
        let now_tick = ctx.io.now();
        if let Some(mut pacer) = self.pacer.take() {
            for (tick, count) in pacer.take_due(now_tick) {
                let intended = self.ns_of_tick(&ctx.io, tick);
                self.owe(intended, count);
            }
            self.pacer = Some(pacer);
        }
        let caught_up = self.send_owed(ctx);
        if self.stage == Stage::Draining && self.owed.is_empty() {
            self.close_idle_with_room(ctx);
        }
        // One pacing timer at a time, whoever called.
        if let Some(key) = self.pace_timer.take() {
            ctx.io.cancel_timer(key);
        }
        let next = if caught_up {
            self.pacer.as_ref().and_then(Pacer::upcoming)
        } else {
            Some(now_tick)
        };
        self.pace_timer = next.map(|tick| ctx.io.arm_timer_at(tick, Timer::Pace));
    }

    /// Sends up to [`SENDS_PER_PACE`] owed messages; `false` when it
    /// stopped there with messages owed and connections with room.
    fn send_owed(&mut self, ctx: &mut Ctx<'_, Self>) -> bool {
        for _ in 0..SENDS_PER_PACE {
            let Some(&(intended, _)) = self.owed.front() else {
                return true;
            };
            if !self.dispatch(ctx, intended) {
                return true;
            }
            self.take_owed();
        }
        self.owed.is_empty() || self.with_room.is_empty()
    }

    /// Draining: closes the idle connections left waiting for owed
    /// messages once none is owed.
    fn close_idle_with_room(&mut self, ctx: &mut Ctx<'_, Self>) {
        let now = self.now_ns();
        while let Some(id) = self.with_room.pop_front() {
            if let Some(peer) = ctx.conns.get_mut(id) {
                peer.queued_with_room = false;
                if peer.phase == Phase::Open && peer.awaiting() == 0 {
                    self.begin_close(&mut ctx.io, id, peer, now);
                }
            }
        }
    }

    /// Counts the messages still owed as never sent (behind schedule).
    fn give_up_owed(&mut self) {
        let owed: u64 = self.owed.drain(..).map(|(_, count)| count).sum();
        self.tally.behind_schedule += owed;
    }

    /// Sends the oldest owed message on `conn`, which just got room.
    fn send_owed_on(&mut self, io: &mut Io<'_, Self>, conn: ConnId, peer: &mut Peer) {
        if let Some(&(intended, _)) = self.owed.front() {
            if self.send_message(io, conn, peer, intended) {
                self.take_owed();
            }
        }
    }

    /// Queues `conn` for the pacer if it is open and has room.
    fn note_room(&mut self, conn: ConnId, peer: &mut Peer) {
        if !peer.queued_with_room
            && peer.phase == Phase::Open
            && peer.in_flight.len() < self.plan.max_in_flight
        {
            peer.queued_with_room = true;
            self.with_room.push_back(conn);
        }
    }

    /// Sends one message stamped `intended` on the connection that has had
    /// room longest; `false` when none has.
    fn dispatch(&mut self, ctx: &mut Ctx<'_, Self>, intended: u64) -> bool {
        while let Some(id) = self.with_room.pop_front() {
            let Some(peer) = ctx.conns.get_mut(id) else {
                continue;
            };
            peer.queued_with_room = false;
            if peer.phase != Phase::Open || peer.in_flight.len() >= self.plan.max_in_flight {
                continue;
            }
            if self.send_message(&mut ctx.io, id, peer, intended) {
                self.note_room(id, peer);
                return true;
            }
        }
        false
    }

    // ----- churn -----

    fn start_cycle(&mut self, io: &mut Io<'_, Self>) {
        if self.stage != Stage::Running
            || self
                .cycles_limit
                .is_some_and(|limit| self.cycles_started >= limit)
        {
            return;
        }
        self.cycles_started += 1;
        self.cycles_active += 1;
        self.connect(io);
    }

    /// Churn: starts the cycles due on the rate schedule (those beyond the
    /// concurrency wait for a free slot).
    fn pace(&mut self, io: &mut Io<'_, Self>) {
        let Some(mut pacer) = self.pacer.take() else {
            return;
        };
        for (_, count) in pacer.take_due(io.now()) {
            self.cycles_owed += count;
        }
        while self.cycles_owed > 0
            && self.cycles_active < self.units
            && self.stage == Stage::Running
        {
            self.cycles_owed -= 1;
            self.start_cycle(io);
        }
        if let Some(next) = pacer.upcoming() {
            io.arm_timer_at(next, Timer::Pace);
        }
        self.pacer = Some(pacer);
    }

    fn cycle_ended(&mut self, io: &mut Io<'_, Self>, clean: bool) {
        self.cycles_active = self.cycles_active.saturating_sub(1);
        if clean {
            self.tally.cycles += 1;
            self.last_counted = Some(self.now_ns());
        }
        if self.stage != Stage::Running {
            return;
        }
        if self.pacer.is_some() {
            if self.cycles_owed > 0 {
                self.cycles_owed -= 1;
                self.start_cycle(io);
            }
        } else {
            self.start_cycle(io);
        }
    }

    // ----- timers -----

    fn connection_timer(&mut self, ctx: &mut Ctx<'_, Self>, conn: ConnId, connect_phase: bool) {
        let Some(peer) = ctx.conns.get_mut(conn) else {
            return;
        };
        let io = &mut ctx.io;
        match peer.phase {
            Phase::Connecting if connect_phase => {
                if let Some(slot) = self.connect_timers.get_mut(conn.slot() as usize) {
                    *slot = None;
                }
                self.fail_before_open(io, peer, Some(ErrorKind::ConnectTimeout));
                io.terminate(conn);
            }
            Phase::Handshaking if !connect_phase => {
                peer.deadline = None;
                self.fail_before_open(io, peer, Some(ErrorKind::HandshakeTimeout));
                io.terminate(conn);
            }
            Phase::Closing | Phase::ServerClosing if !connect_phase => {
                peer.deadline = None;
                if !peer.errored {
                    self.tally.error(ErrorKind::CloseTimeout, 1);
                    peer.errored = true;
                }
                peer.phase = Phase::Failed;
                io.close_now(conn);
            }
            _ => {}
        }
    }

    /// Reads frames from `data[pos..]` into events until it runs out.
    fn read_events(
        &mut self,
        io: &mut Io<'_, Self>,
        conn: ConnId,
        peer: &mut Peer,
        data: &mut [u8],
        mut pos: usize,
        now: u64,
    ) -> usize {
        let data_addresses = data.as_ptr_range();
        let data_addresses = data_addresses.start as usize..data_addresses.end as usize;
        while pos < data.len() {
            let read = peer.ws.read(&mut data[pos..]);
            pos += read.consumed;
            let Some(event) = read.event else {
                break;
            };
            match event {
                Event::Binary(bytes) => {
                    let received = Payload::new(bytes, data_addresses.clone()).received(data);
                    self.on_message(io, conn, peer, Opcode::Binary, received, now);
                }
                Event::Text(text) => {
                    let bytes = match text {
                        Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
                        Cow::Owned(text) => Cow::Owned(text.into_bytes()),
                    };
                    let received = Payload::new(bytes, data_addresses.clone()).received(data);
                    self.on_message(io, conn, peer, Opcode::Text, received, now);
                }
                // The Pong is queued by the state machine and flushed below.
                Event::Ping(_) => {}
                Event::Pong(payload) => self.on_pong(io, conn, peer, payload, now),
                Event::CloseReceived { code, .. } => {
                    let code = code.map_or(1005, |code| code.as_u16());
                    peer.server_close = Some(code);
                    if peer.phase == Phase::Open {
                        if !peer.errored {
                            self.tally.error(ErrorKind::UnexpectedClose { code }, 1);
                            peer.errored = true;
                        }
                        self.leave_open(io, peer, Phase::ServerClosing);
                        if let Some(key) = peer.deadline.take() {
                            io.cancel_timer(key);
                        }
                        peer.deadline =
                            Some(io.arm_timer(self.plan.timeout, Timer::Deadline(conn)));
                    }
                }
                Event::ProtocolError(error) => {
                    if !peer.errored {
                        self.tally.error(
                            ErrorKind::Protocol {
                                close_code: error.close_code(),
                            },
                            1,
                        );
                        peer.errored = true;
                    }
                    self.leave_open(io, peer, Phase::Failed);
                    flush_control(io, conn, &mut peer.ws);
                    io.close_now(conn);
                    return data.len();
                }
            }
        }
        flush_control(io, conn, &mut peer.ws);
        pos
    }
}

/// Where a received message's payload is, without borrowing the receive
/// buffer, so that it can be handed on mutably.
enum Payload {
    /// These bytes of the buffer given to `on_data`.
    InPlace(Range<usize>),
    /// A message assembled from several frames or buffers.
    Assembled(Vec<u8>),
}

impl Payload {
    /// `bytes` as the protocol returned them: borrowed from the receive
    /// buffer `data` (passed as its address range, which `bytes` borrows),
    /// or owned.
    fn new(bytes: Cow<'_, [u8]>, data: Range<usize>) -> Self {
        match bytes {
            Cow::Borrowed(bytes) => {
                let start = bytes.as_ptr() as usize;
                match start.checked_sub(data.start) {
                    Some(offset) if start + bytes.len() <= data.end => {
                        Payload::InPlace(offset..offset + bytes.len())
                    }
                    // An empty payload need not point into the buffer.
                    _ => Payload::Assembled(bytes.to_vec()),
                }
            }
            Cow::Owned(bytes) => Payload::Assembled(bytes),
        }
    }

    /// The bytes, mutably: in `data` (the receive buffer), or the buffer
    /// they were assembled in.
    fn received(self, data: &mut [u8]) -> Received<'_> {
        match self {
            Payload::InPlace(range) => Received::InPlace(&mut data[range]),
            Payload::Assembled(bytes) => Received::Assembled(bytes),
        }
    }
}

/// A received message's bytes as [`LoadWorker::on_message`] gets them,
/// mutable so that an echo can become the next message in place.
enum Received<'a> {
    /// In the receive buffer being delivered.
    InPlace(&'a mut [u8]),
    /// In a pooled buffer it was assembled in; whoever ends up with it
    /// returns it to the pool (or sends it, which does).
    Assembled(Vec<u8>),
}

impl Received<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Received::InPlace(bytes) => bytes,
            Received::Assembled(bytes) => bytes,
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Received::InPlace(bytes) => bytes,
            Received::Assembled(bytes) => bytes,
        }
    }

    /// Done with: an assembled buffer goes back to the pool.
    fn recycle(self, io: &mut Io<'_, LoadWorker>) {
        if let Received::Assembled(bytes) = self {
            io.give_buffer(bytes);
        }
    }
}

/// Sends the control frames the protocol state machine queued (Pong, Close
/// replies, our Close) ahead of anything else.
fn flush_control(io: &mut Io<'_, LoadWorker>, conn: ConnId, ws: &mut Connection) {
    let pending = ws.pending_output();
    if pending.is_empty() {
        return;
    }
    let len = pending.len();
    let chunk = Chunk::inline(pending).unwrap_or_else(|| Chunk::Owned(pending.to_vec()));
    let _ = io.send(conn, chunk);
    ws.consume_output(len);
}

impl Handler for LoadWorker {
    type Conn = Peer;
    type Timer = Timer;
    type Command = Command;

    fn on_accept(&mut self, _ctx: &mut Ctx<'_, Self>, _conn: ConnId) -> Option<Peer> {
        // Workers have no listener; refuse anything all the same.
        None
    }

    fn on_connected(&mut self, ctx: &mut Ctx<'_, Self>, conn: ConnId, peer: &mut Peer) {
        self.take_connect_timer(&mut ctx.io, conn);
        let now = self.now_ns();
        record(
            &mut self.tally.histograms.connect,
            now.saturating_sub(peer.phase_started),
        );
        let Some(handshake) = &peer.handshake else {
            return;
        };
        let _ = ctx.io.send(conn, handshake.request().to_vec());
        peer.phase = Phase::Handshaking;
        peer.phase_started = now;
        peer.deadline = Some(ctx.io.arm_timer(self.plan.timeout, Timer::Deadline(conn)));
    }

    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        conn: ConnId,
        peer: &mut Peer,
        data: &mut [u8],
    ) -> usize {
        let now = self.now_ns();
        let io = &mut ctx.io;
        let mut pos = 0;
        if peer.phase == Phase::Handshaking {
            let Some(handshake) = peer.handshake.as_mut() else {
                return data.len();
            };
            match handshake.parse_response(data) {
                Ok(None) => return 0,
                Ok(Some(response)) => {
                    pos = response.head_len;
                    self.handshake_done(io, conn, peer, now);
                }
                Err(error) => {
                    let kind = match error.refused_status() {
                        Some(status) => ErrorKind::HandshakeRefused { status },
                        None => ErrorKind::HandshakeInvalid {
                            reason: error.to_string(),
                        },
                    };
                    self.fail_before_open(io, peer, Some(kind));
                    io.close_now(conn);
                    return data.len();
                }
            }
        }
        if !matches!(
            peer.phase,
            Phase::Open | Phase::Closing | Phase::ServerClosing
        ) {
            return data.len();
        }
        // Echoes that straddle receive buffers are assembled in a pooled
        // buffer, which goes back to the pool after the check.
        let spare = io.take_buffer(0);
        if spare.capacity() > 0 {
            if let Some(unused) = peer.ws.lend_buffer(spare) {
                io.give_buffer(unused);
            }
        }
        let consumed = self.read_events(io, conn, peer, data, pos, now);
        if let Some(spare) = peer.ws.reclaim_buffer() {
            io.give_buffer(spare);
        }
        consumed
    }

    fn on_peer_eof(&mut self, ctx: &mut Ctx<'_, Self>, conn: ConnId, peer: &mut Peer) {
        let now = self.now_ns();
        let io = &mut ctx.io;
        match peer.phase {
            Phase::Connecting | Phase::Handshaking => {
                self.fail_before_open(io, peer, Some(ErrorKind::HandshakeClosed));
            }
            Phase::Open => {
                if !peer.errored {
                    self.tally
                        .error(ErrorKind::UnexpectedClose { code: 1006 }, 1);
                    peer.errored = true;
                }
                self.leave_open(io, peer, Phase::Failed);
            }
            Phase::Closing => {
                if peer.ws.close_received() {
                    record(
                        &mut self.tally.histograms.close,
                        now.saturating_sub(peer.phase_started),
                    );
                } else if !peer.errored {
                    self.tally.error(ErrorKind::CloseNotAnswered, 1);
                    peer.errored = true;
                }
            }
            Phase::ServerClosing | Phase::Failed => {}
        }
        if let Some(key) = peer.deadline.take() {
            io.cancel_timer(key);
        }
        io.close(conn);
    }

    fn on_closed(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        conn: ConnId,
        mut peer: Peer,
        cause: CloseCause,
    ) {
        let io = &mut ctx.io;
        self.alive = self.alive.saturating_sub(1);
        self.take_connect_timer(io, conn);
        if let Some(key) = peer.deadline.take() {
            io.cancel_timer(key);
        }
        let stopped = matches!(cause, CloseCause::WorkerStopped);
        match peer.phase {
            Phase::Connecting => {
                let kind = match cause {
                    CloseCause::ConnectFailed {
                        errno: libc::ECONNREFUSED,
                    } => ErrorKind::ConnectRefused,
                    CloseCause::ConnectFailed { errno } | CloseCause::Error { errno, .. } => {
                        ErrorKind::ConnectFailed { errno }
                    }
                    _ if stopped => ErrorKind::AbortedAtDeadline,
                    _ => ErrorKind::ConnectTimeout,
                };
                self.fail_before_open(io, &mut peer, Some(kind));
            }
            Phase::Handshaking => {
                let kind = match cause {
                    _ if stopped => ErrorKind::AbortedAtDeadline,
                    CloseCause::Error { errno, .. } => ErrorKind::Socket { errno },
                    _ => ErrorKind::HandshakeClosed,
                };
                self.fail_before_open(io, &mut peer, Some(kind));
            }
            Phase::Open | Phase::Closing | Phase::ServerClosing | Phase::Failed => {
                self.leave_open(io, &mut peer, Phase::Failed);
                if !peer.errored {
                    let kind = match cause {
                        _ if stopped => Some(ErrorKind::AbortedAtDeadline),
                        CloseCause::Error { errno, .. } => Some(ErrorKind::Socket { errno }),
                        _ => None,
                    };
                    if let Some(kind) = kind {
                        self.tally.error(kind, 1);
                        peer.errored = true;
                    }
                }
            }
        }
        if peer.opened {
            *self
                .tally
                .close_codes
                .entry(peer.server_close.unwrap_or(1006))
                .or_default() += 1;
        }
        let lost = peer.in_flight.len() as u64;
        if lost > 0 {
            self.tally.unanswered += lost;
            self.tally.error(ErrorKind::Unanswered, lost);
        }
        if self.plan.mode == Mode::Churn {
            let clean =
                peer.opened && peer.we_closed && peer.server_close.is_some() && !peer.errored;
            self.cycle_ended(io, clean);
        }
        self.check_done(io);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, _key: TimerKey, timer: Timer) {
        match timer {
            Timer::Open => self.open_more(&mut ctx.io),
            Timer::Pace => match self.plan.mode {
                Mode::Rate => self.pace_messages(ctx),
                _ => self.pace(&mut ctx.io),
            },
            Timer::Publish => {
                self.publish();
                if self.stage != Stage::Done {
                    ctx.io.arm_timer(PUBLISH_EVERY, Timer::Publish);
                }
            }
            Timer::Barrier => self.barrier_check(ctx),
            Timer::WindowStart => self.window_started(ctx),
            Timer::WindowEnd => self.end_window(ctx),
            Timer::DrainTimeout => self.drain_timeout(ctx),
            Timer::HardDeadline => self.finish(&mut ctx.io),
            Timer::Connect(conn) => self.connection_timer(ctx, conn, true),
            Timer::Deadline(conn) => self.connection_timer(ctx, conn, false),
            Timer::Ping(conn) => {
                if let Some(peer) = ctx.conns.get_mut(conn) {
                    self.ping(&mut ctx.io, conn, peer);
                }
            }
            Timer::CycleFailed => {
                self.cycle_ended(&mut ctx.io, false);
                self.check_done(&mut ctx.io);
            }
        }
    }

    fn on_command(&mut self, ctx: &mut Ctx<'_, Self>, command: Command) {
        match command {
            Command::Start => self.start(&mut ctx.io),
            Command::Interrupt => self.interrupt(ctx),
        }
    }
}

impl Drop for LoadWorker {
    fn drop(&mut self) {
        let cpu = cpu::thread_cpu_time()
            .unwrap_or_default()
            .since(self.cpu_start);
        let window = self.window_start.map(|start| {
            let end = self.window_end.unwrap_or_else(|| self.now_ns()).max(start);
            start..end
        });
        let at = |nanos: u64| self.epoch + Duration::from_nanos(nanos);
        self.publish();
        let report = WorkerReport {
            tally: std::mem::take(&mut self.tally),
            cpu: if self.stage == Stage::Idle {
                CpuTime::default()
            } else {
                cpu
            },
            reactor: self.reactor,
            window: window.map(|window| at(window.start)..at(window.end)),
            last_counted: self.last_counted.map(at),
            frame_buffers: self.reactor.buffers_allocated,
        };
        let _ = self.reports.send(report);
    }
}
