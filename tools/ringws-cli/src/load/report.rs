//! What a run measured: per-worker tallies, their merge into a
//! [`LoadReport`], percentile summaries, and the human-readable table.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::ops::Range;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::load::config::{Mode, PayloadKind};
use crate::load::cpu::CpuTime;
use crate::load::output::replace_whole;

/// Largest latency a histogram holds (one hour, in nanoseconds); larger
/// values are recorded as this.
pub const HISTOGRAM_MAX_NANOS: u64 = 3_600_000_000_000;

/// Significant decimal digits the histograms keep.
pub const HISTOGRAM_PRECISION: u8 = 3;

/// An empty latency histogram in nanoseconds (1 ns to one hour, 3 digits).
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that satisfy the crate's rules.
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_NANOS, HISTOGRAM_PRECISION).unwrap()
}

/// The latency histograms of a run, in nanoseconds.
#[derive(Debug, Clone)]
pub struct LatencyHistograms {
    /// Message round trip: echo received minus send time (rate mode: minus
    /// the intended send time).
    pub message: Histogram<u64>,
    /// TCP connect: `connect` submitted to connection established.
    pub connect: Histogram<u64>,
    /// Opening handshake: request queued to the server's `101` parsed.
    pub handshake: Histogram<u64>,
    /// Closing handshake: our Close queued to the server's Close received
    /// and its TCP FIN seen.
    pub close: Histogram<u64>,
    /// Ping to Pong.
    pub ping: Histogram<u64>,
}

impl Default for LatencyHistograms {
    fn default() -> Self {
        LatencyHistograms {
            message: new_histogram(),
            connect: new_histogram(),
            handshake: new_histogram(),
            close: new_histogram(),
            ping: new_histogram(),
        }
    }
}

impl LatencyHistograms {
    /// Tag names, in the order of [`tagged`](Self::tagged).
    pub const TAGS: [&'static str; 5] = ["message", "connect", "handshake", "close", "ping"];

    /// Each histogram with its tag.
    pub fn tagged(&self) -> [(&'static str, &Histogram<u64>); 5] {
        [
            ("message", &self.message),
            ("connect", &self.connect),
            ("handshake", &self.handshake),
            ("close", &self.close),
            ("ping", &self.ping),
        ]
    }

    /// The histogram with tag `tag`, for adding to.
    pub fn by_tag_mut(&mut self, tag: &str) -> Option<&mut Histogram<u64>> {
        match tag {
            "message" => Some(&mut self.message),
            "connect" => Some(&mut self.connect),
            "handshake" => Some(&mut self.handshake),
            "close" => Some(&mut self.close),
            "ping" => Some(&mut self.ping),
            _ => None,
        }
    }

    /// Adds every count of `other` (same bounds, so exact).
    pub fn add(&mut self, other: &LatencyHistograms) {
        for (tag, histogram) in other.tagged() {
            if let Some(mine) = self.by_tag_mut(tag) {
                // Same bounds on both sides: addition cannot fail.
                let _ = mine.add(histogram);
            }
        }
    }
}

/// Records `nanos`, clamped to the histogram's range.
pub(crate) fn record(histogram: &mut Histogram<u64>, nanos: u64) {
    histogram.saturating_record(nanos.max(1));
}

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Smallest.
    pub min_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p99_9_us: f64,
    /// 99.99th percentile.
    pub p99_99_us: f64,
    /// Largest.
    pub max_us: f64,
}

impl LatencySummary {
    /// The summary of a nanosecond histogram; `None` when it is empty.
    pub fn of(histogram: &Histogram<u64>) -> Option<LatencySummary> {
        if histogram.is_empty() {
            return None;
        }
        let us = |nanos: u64| nanos as f64 / 1000.0;
        let at = |quantile: f64| us(histogram.value_at_quantile(quantile));
        Some(LatencySummary {
            count: histogram.len(),
            min_us: us(histogram.min()),
            mean_us: histogram.mean() / 1000.0,
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            p99_9_us: at(0.999),
            p99_99_us: at(0.9999),
            max_us: us(histogram.max()),
        })
    }

    /// The percentiles in order: min, p50, p90, p99, p99.9, p99.99, max.
    pub fn ordered(&self) -> [f64; 7] {
        [
            self.min_us,
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p99_9_us,
            self.p99_99_us,
            self.max_us,
        ]
    }
}

/// Why something in a run went wrong. Errors are counted, never fatal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The server refused the TCP connection (`ECONNREFUSED`).
    ConnectRefused,
    /// Connecting failed otherwise (errno), including binding the source
    /// address.
    ConnectFailed {
        /// The errno.
        errno: i32,
    },
    /// No TCP connection within the timeout.
    ConnectTimeout,
    /// The server answered the upgrade with this HTTP status instead of 101.
    HandshakeRefused {
        /// The HTTP status.
        status: u16,
    },
    /// The server's answer was not a valid `101` for our request.
    HandshakeInvalid {
        /// What was wrong with it.
        reason: String,
    },
    /// No complete answer to the upgrade within the timeout.
    HandshakeTimeout,
    /// The server closed the connection before answering the upgrade.
    HandshakeClosed,
    /// The server broke the protocol; we failed the connection with this
    /// close code (1002, 1007, 1009).
    Protocol {
        /// The close code we sent.
        close_code: u16,
    },
    /// The server closed an open connection that we had not asked to close:
    /// its Close code, or 1006 for a connection dropped without a Close.
    UnexpectedClose {
        /// The server's close code.
        code: u16,
    },
    /// A socket operation on an open connection failed (errno).
    Socket {
        /// The errno.
        errno: i32,
    },
    /// An echo did not match the message sent (length, type or bytes).
    EchoMismatch,
    /// A data message that answers no message awaiting its echo: another
    /// copy of an echo already received (its sequence number says so), or
    /// any message when none is awaited. It is not timed.
    UnexpectedMessage,
    /// A message whose echo was skipped: the echo of a later one came
    /// first (also counted in `messages.unanswered`).
    EchoSkipped,
    /// Messages still unanswered a timeout after sending stopped.
    ReplyTimeout,
    /// Pings still without their Pong a timeout after the window.
    PingTimeout,
    /// Messages unanswered when their connection closed.
    Unanswered,
    /// Our Close got no Close and TCP close from the server in time.
    CloseTimeout,
    /// The server closed TCP without answering our Close (1006).
    CloseNotAnswered,
    /// Connections still open at the global deadline, aborted.
    AbortedAtDeadline,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let os = |errno: i32| std::io::Error::from_raw_os_error(errno);
        match self {
            ErrorKind::ConnectRefused => f.write_str("connect: connection refused"),
            ErrorKind::ConnectFailed { errno } => write!(f, "connect: {}", os(*errno)),
            ErrorKind::ConnectTimeout => f.write_str("connect: timeout"),
            ErrorKind::HandshakeRefused { status } => {
                write!(f, "handshake refused: HTTP {status}")
            }
            ErrorKind::HandshakeInvalid { reason } => write!(f, "handshake: {reason}"),
            ErrorKind::HandshakeTimeout => f.write_str("handshake: timeout"),
            ErrorKind::HandshakeClosed => f.write_str("handshake: connection closed by server"),
            ErrorKind::Protocol { close_code } => {
                write!(f, "protocol error: failed with close {close_code}")
            }
            ErrorKind::UnexpectedClose { code } => write!(f, "unexpected close: {code}"),
            ErrorKind::Socket { errno } => write!(f, "socket: {}", os(*errno)),
            ErrorKind::EchoMismatch => f.write_str("echo mismatch"),
            ErrorKind::UnexpectedMessage => f.write_str("unexpected message"),
            ErrorKind::EchoSkipped => f.write_str("echo skipped (a later message's came first)"),
            ErrorKind::ReplyTimeout => f.write_str("timeout: message unanswered"),
            ErrorKind::PingTimeout => f.write_str("timeout: ping unanswered"),
            ErrorKind::Unanswered => f.write_str("message lost with its connection"),
            ErrorKind::CloseTimeout => f.write_str("close: timeout"),
            ErrorKind::CloseNotAnswered => f.write_str("close: no Close from server (1006)"),
            ErrorKind::AbortedAtDeadline => f.write_str("aborted at deadline"),
        }
    }
}

/// What one worker counted. Merged with [`Tally::merge`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    pub messages_sent: u64,
    pub messages_received: u64,
    pub payload_bytes_sent: u64,
    pub payload_bytes_received: u64,
    pub unanswered: u64,
    pub behind_schedule: u64,
    pub sent_after_window: u64,
    pub cycles_behind_schedule: u64,
    pub connections_attempted: u64,
    pub connections_opened: u64,
    pub connections_failed: u64,
    pub peak_open: u64,
    pub cycles: u64,
    pub pings_sent: u64,
    pub pongs_received: u64,
    pub close_codes: BTreeMap<u16, u64>,
    pub errors: BTreeMap<ErrorKind, u64>,
    pub histograms: LatencyHistograms,
}

impl Tally {
    pub(crate) fn error(&mut self, kind: ErrorKind, count: u64) {
        if count > 0 {
            *self.errors.entry(kind).or_default() += count;
        }
    }

    pub(crate) fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub(crate) fn merge(&mut self, other: &Tally) {
        self.messages_sent += other.messages_sent;
        self.messages_received += other.messages_received;
        self.payload_bytes_sent += other.payload_bytes_sent;
        self.payload_bytes_received += other.payload_bytes_received;
        self.unanswered += other.unanswered;
        self.behind_schedule += other.behind_schedule;
        self.sent_after_window += other.sent_after_window;
        self.cycles_behind_schedule += other.cycles_behind_schedule;
        self.connections_attempted += other.connections_attempted;
        self.connections_opened += other.connections_opened;
        self.connections_failed += other.connections_failed;
        self.peak_open += other.peak_open;
        self.cycles += other.cycles;
        self.pings_sent += other.pings_sent;
        self.pongs_received += other.pongs_received;
        for (code, count) in &other.close_codes {
            *self.close_codes.entry(*code).or_default() += count;
        }
        for (kind, count) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += count;
        }
        self.histograms.add(&other.histograms);
    }
}

/// What a worker hands back when it ends.
#[derive(Debug, Clone, Default)]
pub(crate) struct WorkerReport {
    pub tally: Tally,
    pub cpu: CpuTime,
    pub reactor: ringws_reactor::WorkerStats,
    /// The worker's sending window; `None` if it never had one (no
    /// connection open when the window started).
    pub window: Option<Range<Instant>>,
    /// When it counted its last echo or completed cycle.
    pub last_counted: Option<Instant>,
    pub frame_buffers: u64,
}

/// Connection outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionFigures {
    /// Connections started.
    pub attempted: u64,
    /// Connections whose opening handshake completed.
    pub opened: u64,
    /// Connections that failed before opening (refused, timed out, handshake
    /// refused...).
    pub failed: u64,
    /// Most connections open at once (sum of the workers' peaks).
    pub peak_open: u64,
}

/// Message counts and rates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MessageFigures {
    /// Messages sent.
    pub sent: u64,
    /// Echoes received that matched what was sent.
    pub received: u64,
    /// `received` per second of the report's `rate_span_secs`.
    pub per_sec: f64,
    /// Payload bytes sent.
    pub payload_bytes_sent: u64,
    /// Payload bytes of matching echoes.
    pub payload_bytes_received: u64,
    /// `payload_bytes_received` per second of the report's
    /// `rate_span_secs`.
    pub bytes_per_sec: f64,
    /// Messages sent that got no echo, or whose echo was skipped (also
    /// counted as errors).
    pub unanswered: u64,
    /// Rate mode: messages due that were never sent: every connection had
    /// `max_in_flight` messages outstanding until `timeout` after the
    /// window. Their latency is unknown, so `latency.message` leaves them
    /// out.
    pub behind_schedule: u64,
    /// Rate mode: messages due in the window that were sent after it,
    /// during the drain, because every connection still had
    /// `max_in_flight` outstanding (the server fell behind). They are in
    /// `sent`, their echoes in `received`, and the rates run to the last
    /// echo (`rate_span_secs`), so they do not claim a rate the server
    /// never reached.
    #[serde(default)]
    pub sent_after_window: u64,
    /// Buffers the workers' reactors allocated for outgoing frames (and
    /// receive tails): about the most send buffers in flight at once. It
    /// stays flat however many messages are sent (buffers are recycled, not
    /// allocated per message).
    pub frame_buffers: u64,
}

/// Bytes on the wire, headers and control frames included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireFigures {
    /// Bytes written to sockets.
    pub bytes_sent: u64,
    /// Bytes read from sockets.
    pub bytes_received: u64,
}

/// What the workers' reactors did, summed: how many loop turns and
/// submissions the load cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactorFigures {
    /// Event-loop turns (each one `io_uring_enter` at most).
    pub turns: u64,
    /// `sendmsg` operations submitted (each carries every frame queued on
    /// its connection during a turn).
    pub sends: u64,
    /// Sends the kernel took only in part.
    pub partial_sends: u64,
    /// Multishot receives armed.
    pub recv_arms: u64,
    /// Receives stopped because the provided buffer ring ran dry.
    pub recv_enobufs: u64,
    /// Messages sent on from the receive buffer their echo arrived in
    /// (masked in place, not copied).
    #[serde(default)]
    pub payloads_sent_in_place: u64,
}

/// Churn cycles.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CycleFigures {
    /// Cycles that connected, exchanged every message and closed cleanly.
    pub completed: u64,
    /// `completed` per second of the report's `rate_span_secs`.
    pub per_sec: f64,
    /// With `--rate`: cycles due that never started because `--concurrency`
    /// cycles were still running when the window ended.
    #[serde(default)]
    pub behind_schedule: u64,
    /// Messages each cycle exchanges (`--messages`); 0: a cycle connects,
    /// upgrades and closes. `None` in a report written before it was
    /// recorded.
    #[serde(default)]
    pub messages_per_cycle: Option<u32>,
}

/// Pings sent and answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingFigures {
    /// Pings sent.
    pub sent: u64,
    /// Pongs received that answered one of our Pings.
    pub answered: u64,
}

/// Latency summaries; `None` where nothing was measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencyFigures {
    /// Message round trip.
    pub message: Option<LatencySummary>,
    /// TCP connect.
    pub connect: Option<LatencySummary>,
    /// Opening handshake.
    pub handshake: Option<LatencySummary>,
    /// Closing handshake (to the server's TCP close).
    pub close: Option<LatencySummary>,
    /// Ping to Pong.
    pub ping: Option<LatencySummary>,
}

impl LatencyFigures {
    /// Summaries of every histogram.
    pub fn of(histograms: &LatencyHistograms) -> LatencyFigures {
        LatencyFigures {
            message: LatencySummary::of(&histograms.message),
            connect: LatencySummary::of(&histograms.connect),
            handshake: LatencySummary::of(&histograms.handshake),
            close: LatencySummary::of(&histograms.close),
            ping: LatencySummary::of(&histograms.ping),
        }
    }

    /// Each summary with its name.
    pub fn named(&self) -> [(&'static str, Option<LatencySummary>); 5] {
        [
            ("message", self.message),
            ("connect", self.connect),
            ("handshake", self.handshake),
            ("close", self.close),
            ("ping", self.ping),
        ]
    }
}

/// Error counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFigures {
    /// All errors.
    pub total: u64,
    /// Count per kind, keyed by the kind's description.
    pub by_kind: BTreeMap<String, u64>,
}

/// CPU time the generator's workers used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuFigures {
    /// User time, all workers.
    pub user_secs: f64,
    /// System time, all workers.
    pub system_secs: f64,
    /// (user + system) / messages (sent + received, pings and pongs
    /// included); `None` without messages.
    pub per_message_ns: Option<f64>,
    /// Churn: (user + system) / completed cycles; `None` without cycles.
    pub per_cycle_ns: Option<f64>,
    /// User and system seconds of each worker.
    pub per_worker: Vec<[f64; 2]>,
}

/// Everything a run measured. Serialized as the `--json` output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadReport {
    /// The mode.
    pub mode: Mode,
    /// The target.
    pub url: String,
    /// Worker threads.
    pub workers: usize,
    /// Payload bytes per message.
    pub payload_size: usize,
    /// Text or Binary.
    pub payload_kind: PayloadKind,
    /// Wall time of the whole run, connecting and closing included.
    pub elapsed_secs: f64,
    /// The run was interrupted ([`Interrupt`](crate::load::Interrupt),
    /// SIGINT or SIGTERM to `ringws load`): the window ended early, or
    /// never began, and every figure covers what was measured until then.
    #[serde(default)]
    pub interrupted: bool,
    /// The sending window rates are computed over: from the first worker's
    /// window start to the last one's end (they start together once every
    /// worker's connections have opened or failed). 0 when no worker had a
    /// window, or no connection opened (churn: every connect of every
    /// cycle failed), and then every rate is 0.
    pub window_secs: f64,
    /// What every rate is per second of: from the window's start to the
    /// last echo (churn: completed cycle) counted, and never less than
    /// `window_secs`. Longer than the window when echoes came in late, as
    /// when rate mode sent owed messages after the window
    /// (`messages.sent_after_window`); the closed loop's drain is one round
    /// trip. 0 without a window.
    #[serde(default)]
    pub rate_span_secs: f64,
    /// Connection outcomes.
    pub connections: ConnectionFigures,
    /// Message counts and rates.
    pub messages: MessageFigures,
    /// Bytes on the wire.
    pub wire: WireFigures,
    /// Reactor counters.
    pub reactor: ReactorFigures,
    /// Churn cycles (churn mode).
    pub cycles: Option<CycleFigures>,
    /// Pings (when pinging).
    pub pings: Option<PingFigures>,
    /// Latency summaries.
    pub latency: LatencyFigures,
    /// Close codes the server sent, per code; 1005 for an empty Close, 1006
    /// for a connection that ended without one.
    pub server_close_codes: BTreeMap<u16, u64>,
    /// Errors.
    pub errors: ErrorFigures,
    /// Generator CPU time.
    pub cpu: CpuFigures,
    /// The histograms behind `latency` (not serialized; save them with
    /// [`save_histograms`](crate::load::hist::save_histograms)).
    #[serde(skip)]
    pub histograms: LatencyHistograms,
}

/// What the report needs to know about the run besides the tallies.
pub(crate) struct RunFacts<'a> {
    pub mode: Mode,
    pub url: &'a str,
    pub workers: usize,
    pub payload_size: usize,
    pub payload_kind: PayloadKind,
    /// Churn: messages per cycle.
    pub messages_per_cycle: u32,
    pub pinging: bool,
    pub elapsed: Duration,
    pub interrupted: bool,
}

impl LoadReport {
    pub(crate) fn build(facts: RunFacts<'_>, workers: &[WorkerReport]) -> LoadReport {
        let mut tally = Tally::default();
        let mut wire = WireFigures {
            bytes_sent: 0,
            bytes_received: 0,
        };
        let mut reactor = ReactorFigures {
            turns: 0,
            sends: 0,
            partial_sends: 0,
            recv_arms: 0,
            recv_enobufs: 0,
            payloads_sent_in_place: 0,
        };
        let mut cpu = CpuTime::default();
        let mut window: Option<Range<Instant>> = None;
        let mut last_counted: Option<Instant> = None;
        let mut frame_buffers = 0;
        for worker in workers {
            frame_buffers += worker.frame_buffers;
            tally.merge(&worker.tally);
            let stats = &worker.reactor;
            wire.bytes_sent += stats.bytes_sent;
            wire.bytes_received += stats.bytes_received;
            reactor.turns += stats.turns;
            reactor.sends += stats.sends;
            reactor.partial_sends += stats.partial_sends;
            reactor.recv_arms += stats.recv_arms;
            reactor.recv_enobufs += stats.recv_enobufs;
            reactor.payloads_sent_in_place += stats.payloads_sent_in_place;
            cpu = cpu + worker.cpu;
            last_counted = last_counted.max(worker.last_counted);
            if let Some(mine) = &worker.window {
                window = Some(match window {
                    Some(run) => run.start.min(mine.start)..run.end.max(mine.end),
                    None => mine.clone(),
                });
            }
        }
        // A churn worker's window starts at once, whether or not its
        // connects succeed; with none opened anywhere it measured nothing,
        // as an echo run with none opened, which never has a window.
        if tally.connections_opened == 0 {
            window = None;
        }
        let secs_from =
            |start: Instant, end: Instant| end.saturating_duration_since(start).as_secs_f64();
        let window_secs = window
            .as_ref()
            .map_or(0.0, |window| secs_from(window.start, window.end));
        // Echoes counted after the window still count: the rates run to
        // the last of them, so they are rates the server reached.
        let rate_span_secs = window.as_ref().map_or(0.0, |window| {
            secs_from(
                window.start,
                window.end.max(last_counted.unwrap_or(window.end)),
            )
        });
        let per_sec = |count: u64, secs: f64| {
            if secs > 0.0 {
                count as f64 / secs
            } else {
                0.0
            }
        };
        let message_events =
            tally.messages_sent + tally.messages_received + tally.pings_sent + tally.pongs_received;
        let per_message_ns =
            (message_events > 0).then(|| cpu.total().as_nanos() as f64 / message_events as f64);
        let elapsed_secs = facts.elapsed.as_secs_f64();
        LoadReport {
            mode: facts.mode,
            url: facts.url.to_owned(),
            workers: facts.workers,
            payload_size: facts.payload_size,
            payload_kind: facts.payload_kind,
            elapsed_secs,
            interrupted: facts.interrupted,
            window_secs,
            rate_span_secs,
            connections: ConnectionFigures {
                attempted: tally.connections_attempted,
                opened: tally.connections_opened,
                failed: tally.connections_failed,
                peak_open: tally.peak_open,
            },
            messages: MessageFigures {
                sent: tally.messages_sent,
                received: tally.messages_received,
                per_sec: per_sec(tally.messages_received, rate_span_secs),
                payload_bytes_sent: tally.payload_bytes_sent,
                payload_bytes_received: tally.payload_bytes_received,
                bytes_per_sec: per_sec(tally.payload_bytes_received, rate_span_secs),
                unanswered: tally.unanswered,
                behind_schedule: tally.behind_schedule,
                sent_after_window: tally.sent_after_window,
                frame_buffers,
            },
            wire,
            reactor,
            cycles: (facts.mode == Mode::Churn).then(|| CycleFigures {
                completed: tally.cycles,
                per_sec: per_sec(tally.cycles, rate_span_secs),
                behind_schedule: tally.cycles_behind_schedule,
                messages_per_cycle: Some(facts.messages_per_cycle),
            }),
            pings: facts.pinging.then_some(PingFigures {
                sent: tally.pings_sent,
                answered: tally.pongs_received,
            }),
            latency: LatencyFigures::of(&tally.histograms),
            server_close_codes: tally.close_codes.clone(),
            errors: ErrorFigures {
                total: tally.error_count(),
                by_kind: tally
                    .errors
                    .iter()
                    .map(|(kind, count)| (kind.to_string(), *count))
                    .collect(),
            },
            cpu: CpuFigures {
                user_secs: cpu.user.as_secs_f64(),
                system_secs: cpu.system.as_secs_f64(),
                per_message_ns,
                per_cycle_ns: (facts.mode == Mode::Churn && tally.cycles > 0)
                    .then(|| cpu.total().as_nanos() as f64 / tally.cycles as f64),
                per_worker: workers
                    .iter()
                    .map(|worker| {
                        [
                            worker.cpu.user.as_secs_f64(),
                            worker.cpu.system.as_secs_f64(),
                        ]
                    })
                    .collect(),
            },
            histograms: tally.histograms,
        }
    }
}

/// `1234567` → `1,234,567`.
pub(crate) fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        // A comma goes before every digit with a multiple of 3 digits after it.
        if index > 0 && index % 3 == digits.len() % 3 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A rate with a unit prefix: `1.23 M`.
pub(crate) fn si(value: f64) -> String {
    let (scaled, prefix) = if value >= 1e9 {
        (value / 1e9, "G")
    } else if value >= 1e6 {
        (value / 1e6, "M")
    } else if value >= 1e3 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    format!("{scaled:.2} {prefix}")
}

/// A span in seconds with a unit that keeps at least two significant
/// digits: a churn run of one cycle has a window of a millisecond, which
/// `0.00 s` beside its rates hid.
pub(crate) fn span(secs: f64) -> String {
    if secs >= 0.1 || secs == 0.0 {
        format!("{secs:.2} s")
    } else if secs >= 1e-3 {
        format!("{:.2} ms", secs * 1e3)
    } else {
        format!("{:.1} µs", secs * 1e6)
    }
}

/// A latency in microseconds, shown with a unit that keeps it short.
pub(crate) fn latency(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2}s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2}ms", us / 1e3)
    } else {
        format!("{us:.1}µs")
    }
}

/// Writes the percentile table of `rows`.
pub(crate) fn write_latency_table(
    f: &mut impl fmt::Write,
    rows: &[(&str, LatencySummary)],
) -> fmt::Result {
    writeln!(
        f,
        "  {:<10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "latency", "count", "min", "p50", "p90", "p99", "p99.9", "p99.99", "max"
    )?;
    for (name, summary) in rows {
        write!(f, "  {:<10} {:>10}", name, thousands(summary.count))?;
        for value in summary.ordered() {
            write!(f, " {:>9}", latency(value))?;
        }
        writeln!(f)?;
    }
    Ok(())
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let measured = self.window_secs > 0.0;
        // A report read from JSON written before `rate_span_secs` has 0.
        let span_secs = self.rate_span_secs.max(self.window_secs);
        let window = span(self.window_secs);
        let rates_over = span(span_secs);
        let window = match (measured, self.interrupted) {
            (true, _) if rates_over != window => {
                format!("window {window}, rates over {rates_over}")
            }
            (true, _) => format!("window {window}"),
            (false, true) => "no window".to_owned(),
            (false, false) if self.connections.opened > 0 => {
                "no window (every connection closed before it)".to_owned()
            }
            (false, false) => "no window (no connection opened)".to_owned(),
        };
        let window = match self.interrupted {
            true => format!("{window} (interrupted)"),
            false => window,
        };
        let without_messages = self
            .cycles
            .is_some_and(|cycles| cycles.messages_per_cycle == Some(0));
        let payload = match (without_messages, self.payload_kind) {
            (true, _) => "no messages".to_owned(),
            (false, PayloadKind::Binary) => format!("{}-byte binary payload", self.payload_size),
            (false, PayloadKind::Text) => format!("{}-byte text payload", self.payload_size),
        };
        writeln!(
            f,
            "ringws load {} {}: {} workers, {payload}, {window}, elapsed {}",
            self.mode,
            self.url,
            self.workers,
            span(self.elapsed_secs)
        )?;
        let messages = &self.messages;
        if without_messages {
            writeln!(
                f,
                "  messages   none: each cycle connects, upgrades and closes (--messages 0)"
            )?;
        } else {
            write!(
                f,
                "  messages   {} sent, {} echoed: ",
                thousands(messages.sent),
                thousands(messages.received),
            )?;
            if measured {
                writeln!(
                    f,
                    "{}msg/s, {}B/s payload ({}B/s in, {}B/s out on the wire)",
                    si(messages.per_sec),
                    si(messages.bytes_per_sec),
                    si(self.wire.bytes_received as f64 / span_secs),
                    si(self.wire.bytes_sent as f64 / span_secs),
                )?;
            } else {
                writeln!(f, "rates not measured")?;
            }
        }
        if messages.unanswered > 0 {
            writeln!(
                f,
                "             {} unanswered",
                thousands(messages.unanswered)
            )?;
        }
        if let Some(cycles) = &self.cycles {
            write!(
                f,
                "  cycles     {} completed: ",
                thousands(cycles.completed)
            )?;
            if measured {
                writeln!(f, "{}cycles/s", si(cycles.per_sec))?;
            } else {
                writeln!(f, "rates not measured")?;
            }
            if cycles.behind_schedule > 0 {
                writeln!(
                    f,
                    "             {} never started (behind schedule)",
                    thousands(cycles.behind_schedule)
                )?;
            }
        }
        if let Some(pings) = &self.pings {
            writeln!(
                f,
                "  pings      {} sent, {} answered",
                thousands(pings.sent),
                thousands(pings.answered)
            )?;
        }
        let rows: Vec<(&str, LatencySummary)> = self
            .latency
            .named()
            .into_iter()
            .filter_map(|(name, summary)| summary.map(|summary| (name, summary)))
            .collect();
        if !rows.is_empty() {
            write_latency_table(f, &rows)?;
        }
        if messages.sent_after_window > 0 {
            writeln!(
                f,
                "  warning    {} messages due in the window were sent after it (connections at \
                 --max-in-flight): rates are per second of the {} to the last echo",
                thousands(messages.sent_after_window),
                span(span_secs)
            )?;
        }
        if messages.behind_schedule > 0 {
            writeln!(
                f,
                "  warning    {} messages due were never sent (behind schedule): \
                 the message latency leaves them out",
                thousands(messages.behind_schedule)
            )?;
        }
        let connections = &self.connections;
        writeln!(
            f,
            "  conns      {} ok, {} failed of {} attempted (peak {} open)",
            thousands(connections.opened),
            thousands(connections.failed),
            thousands(connections.attempted),
            thousands(connections.peak_open)
        )?;
        if !self.server_close_codes.is_empty() {
            let codes: Vec<String> = self
                .server_close_codes
                .iter()
                .map(|(code, count)| {
                    let count = thousands(*count);
                    match code {
                        1005 => format!("a Close without a code (1005) ×{count}"),
                        1006 => format!("no Close (1006) ×{count}"),
                        code => format!("{code} ×{count}"),
                    }
                })
                .collect();
            writeln!(f, "  closes     server sent {}", codes.join(", "))?;
        }
        let reactor = &self.reactor;
        writeln!(
            f,
            "  reactor    {} turns, {} sends ({} partial), {} receives armed ({} out of buffers), \
             {} payloads sent from their receive buffers",
            thousands(reactor.turns),
            thousands(reactor.sends),
            thousands(reactor.partial_sends),
            thousands(reactor.recv_arms),
            thousands(reactor.recv_enobufs),
            thousands(reactor.payloads_sent_in_place)
        )?;
        let cpu = &self.cpu;
        write!(
            f,
            "  cpu        user {:.3} s, sys {:.3} s",
            cpu.user_secs, cpu.system_secs
        )?;
        if let Some(ns) = cpu.per_message_ns {
            let what = match self.pings {
                Some(_) => "message, ping or pong",
                None => "message",
            };
            write!(f, ", {ns:.0} ns per {what} sent or received")?;
        }
        if let Some(ns) = cpu.per_cycle_ns {
            write!(f, ", {:.1} µs per cycle", ns / 1000.0)?;
        }
        writeln!(f)?;
        if self.errors.total == 0 {
            writeln!(f, "  errors     none")?;
        } else {
            writeln!(f, "  errors     {}", thousands(self.errors.total))?;
            for (kind, count) in &self.errors.by_kind {
                writeln!(f, "             {:>10}  {kind}", thousands(*count))?;
            }
        }
        Ok(())
    }
}

/// Writes `report` as pretty JSON to `target`: a file, replaced whole once
/// the JSON is complete ([`replace_whole`]), or standard output for `-`.
pub fn write_json(target: &str, report: &impl Serialize) -> Result<(), String> {
    let json = serde_json::to_string_pretty(report).map_err(|error| error.to_string())?;
    if target == "-" {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{json}").map_err(|error| error.to_string())
    } else {
        replace_whole(std::path::Path::new(target), (json + "\n").as_bytes())
            .map_err(|error| format!("{target}: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(values: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut histogram = new_histogram();
        for value in values {
            record(&mut histogram, value);
        }
        histogram
    }

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        // 1..=100_000 µs, in nanoseconds.
        let histogram = filled((1..=100_000u64).map(|us| us * 1000));
        let summary = LatencySummary::of(&histogram).unwrap();
        assert_eq!(summary.count, 100_000);
        let near = |actual: f64, expected: f64| {
            // Three significant digits: within 0.1 % (plus rounding).
            assert!(
                (actual - expected).abs() <= expected * 0.001 + 0.001,
                "{actual} vs {expected}"
            );
        };
        near(summary.min_us, 1.0);
        near(summary.p50_us, 50_000.0);
        near(summary.p90_us, 90_000.0);
        near(summary.p99_us, 99_000.0);
        near(summary.p99_9_us, 99_900.0);
        near(summary.p99_99_us, 99_990.0);
        near(summary.max_us, 100_000.0);
        near(summary.mean_us, 50_000.5);
        let ordered = summary.ordered();
        assert!(
            ordered.windows(2).all(|pair| pair[0] <= pair[1]),
            "{ordered:?}"
        );
    }

    #[test]
    fn empty_histograms_have_no_summary_and_large_values_saturate() {
        assert!(LatencySummary::of(&new_histogram()).is_none());
        let histogram = filled([0, u64::MAX]);
        let summary = LatencySummary::of(&histogram).unwrap();
        assert_eq!(summary.count, 2);
        assert!(summary.min_us > 0.0 && summary.min_us < 0.01);
        assert!(summary.max_us >= (HISTOGRAM_MAX_NANOS / 1000) as f64);
    }

    #[test]
    fn merged_worker_histograms_equal_one_recording_of_everything() {
        let values_a: Vec<u64> = (0..5000u64).map(|i| 20_000 + i * 37 % 9000).collect();
        let values_b: Vec<u64> = (0..3000u64)
            .map(|i| 1_000_000 + i * 7919 % 500_000)
            .collect();
        let mut a = LatencyHistograms::default();
        let mut b = LatencyHistograms::default();
        let mut all = LatencyHistograms::default();
        for &value in &values_a {
            record(&mut a.message, value);
            record(&mut all.message, value);
        }
        for &value in &values_b {
            record(&mut b.message, value);
            record(&mut b.connect, value);
            record(&mut all.message, value);
            record(&mut all.connect, value);
        }
        a.add(&b);
        for (tag, histogram) in a.tagged() {
            let expected = all.by_tag_mut(tag).unwrap();
            assert_eq!(histogram, &*expected, "{tag}");
        }
        let merged = LatencySummary::of(&a.message).unwrap();
        assert_eq!(merged, LatencySummary::of(&all.message).unwrap());
        // 5000 of 8000 samples are below 30 µs: the median is among them,
        // p90 among the slow ones.
        assert!(merged.p50_us < 30.0 && merged.p90_us > 1000.0, "{merged:?}");
    }

    #[test]
    fn tallies_merge_counts_codes_and_errors() {
        let mut a = Tally {
            messages_sent: 3,
            ..Tally::default()
        };
        a.close_codes.insert(1000, 2);
        a.error(ErrorKind::ConnectRefused, 1);
        a.error(ErrorKind::EchoMismatch, 0);
        let mut b = Tally {
            messages_sent: 4,
            ..Tally::default()
        };
        b.close_codes.insert(1000, 1);
        b.close_codes.insert(1006, 5);
        b.error(ErrorKind::ConnectRefused, 2);
        a.merge(&b);
        assert_eq!(a.messages_sent, 7);
        assert_eq!(a.close_codes, BTreeMap::from([(1000, 3), (1006, 5)]));
        assert_eq!(a.errors, BTreeMap::from([(ErrorKind::ConnectRefused, 3)]));
        assert_eq!(a.error_count(), 3);
    }

    /// The facts of a 4 s run of `workers` in `mode`.
    fn facts(mode: Mode, workers: usize) -> RunFacts<'static> {
        RunFacts {
            mode,
            url: "ws://127.0.0.1:1/",
            workers,
            payload_size: 32,
            payload_kind: PayloadKind::Binary,
            messages_per_cycle: 1,
            pinging: false,
            elapsed: Duration::from_secs(4),
            interrupted: false,
        }
    }

    /// A window from `from` to `to` seconds after `origin`.
    fn secs(origin: Instant, from: f64, to: f64) -> Option<Range<Instant>> {
        Some(origin + Duration::from_secs_f64(from)..origin + Duration::from_secs_f64(to))
    }

    /// One worker's `tally` over a 3 s window of a 4 s run in `mode`.
    fn report_of(mode: Mode, tally: Tally) -> LoadReport {
        let worker = WorkerReport {
            tally,
            window: secs(Instant::now(), 0.5, 3.5),
            ..WorkerReport::default()
        };
        LoadReport::build(facts(mode, 1), &[worker])
    }

    /// `received` echoes on one connection.
    fn echoes(received: u64) -> Tally {
        Tally {
            connections_attempted: 1,
            connections_opened: 1,
            messages_sent: received,
            messages_received: received,
            ..Tally::default()
        }
    }

    #[test]
    fn the_window_spans_the_workers_windows_and_ignores_workers_without_one() {
        let origin = Instant::now();
        let workers = [
            WorkerReport {
                tally: echoes(1000),
                window: secs(origin, 1.0, 2.0),
                ..WorkerReport::default()
            },
            WorkerReport {
                tally: echoes(1000),
                window: secs(origin, 1.001, 2.002),
                ..WorkerReport::default()
            },
            // Its connections all failed: it adds messages to nothing.
            WorkerReport {
                window: None,
                ..WorkerReport::default()
            },
        ];
        let report = LoadReport::build(facts(Mode::Echo, 3), &workers);
        assert!((report.window_secs - 1.002).abs() < 1e-9, "{report}");
        assert!((report.messages.per_sec - 2000.0 / 1.002).abs() < 1e-6);
        assert!(report.to_string().contains("window 1.00 s,"), "{report}");
    }

    /// A window shorter than the table's 0.01 s showed as `window 0.00 s`
    /// beside its rates.
    #[test]
    fn a_short_window_is_shown_with_its_figures() {
        let origin = Instant::now();
        let worker = WorkerReport {
            tally: Tally {
                cycles: 1,
                ..echoes(1)
            },
            window: secs(origin, 0.0, 0.00123),
            ..WorkerReport::default()
        };
        let facts = RunFacts {
            elapsed: Duration::from_micros(2_500),
            ..facts(Mode::Churn, 1)
        };
        let table = LoadReport::build(facts, &[worker]).to_string();
        assert!(
            table.contains(", window 1.23 ms, elapsed 2.50 ms\n"),
            "{table}"
        );
        let cases = [
            (0.0, "0.00 s"),
            (0.000_000_5, "0.5 µs"),
            (0.000_123_4, "123.4 µs"),
            (0.009_9, "9.90 ms"),
            (0.099_99, "99.99 ms"),
            (0.1, "0.10 s"),
            (3.0, "3.00 s"),
        ];
        for (secs, shown) in cases {
            assert_eq!(span(secs), shown, "{secs}");
        }
    }

    #[test]
    fn echoes_counted_after_the_window_stretch_the_rates_to_the_last_one() {
        let origin = Instant::now();
        let late = WorkerReport {
            tally: Tally {
                sent_after_window: 1000,
                ..echoes(3000)
            },
            window: secs(origin, 0.0, 2.0),
            last_counted: Some(origin + Duration::from_millis(2500)),
            ..WorkerReport::default()
        };
        // Its last echo came within the window: the span is never shorter.
        let on_time = WorkerReport {
            tally: echoes(1000),
            window: secs(origin, 0.0, 2.0),
            last_counted: Some(origin + Duration::from_millis(1900)),
            ..WorkerReport::default()
        };
        let report = LoadReport::build(facts(Mode::Rate, 2), &[late, on_time.clone()]);
        assert!((report.window_secs - 2.0).abs() < 1e-9);
        assert!((report.rate_span_secs - 2.5).abs() < 1e-9);
        assert!((report.messages.per_sec - 1600.0).abs() < 1e-6);
        assert_eq!(report.messages.sent_after_window, 1000);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["messages"]["sent_after_window"], 1000);
        assert_eq!(json["rate_span_secs"], 2.5);
        let table = report.to_string();
        assert!(
            table.contains(", window 2.00 s, rates over 2.50 s, elapsed 4.00 s"),
            "{table}"
        );
        assert!(
            table.contains(
                "\n  warning    1,000 messages due in the window were sent after it \
                 (connections at --max-in-flight): rates are per second of the 2.50 s to \
                 the last echo\n"
            ),
            "{table}"
        );
        let report = LoadReport::build(facts(Mode::Rate, 1), &[on_time]);
        assert_eq!(report.rate_span_secs, report.window_secs);
        let table = report.to_string();
        assert!(!table.contains("rates over") && !table.contains("warning"));
    }

    /// A hold run sends pings, not messages: its CPU figure must not read
    /// as a cost per message when no message was sent.
    #[test]
    fn the_cpu_figure_of_a_pinging_run_counts_pings_and_pongs_by_name() {
        let mut worker = WorkerReport::default();
        worker.tally.connections_attempted = 1;
        worker.tally.connections_opened = 1;
        worker.tally.pings_sent = 2;
        worker.tally.pongs_received = 2;
        worker.cpu = CpuTime {
            user: Duration::from_micros(40),
            system: Duration::ZERO,
        };
        let facts = RunFacts {
            pinging: true,
            ..facts(Mode::Hold, 1)
        };
        let table = LoadReport::build(facts, &[worker]).to_string();
        assert!(
            table.contains(", 10000 ns per message, ping or pong sent or received\n"),
            "{table}"
        );
    }

    /// 1005 and 1006 never travel on the wire: the table names what they
    /// stand for instead of claiming the server sent them.
    #[test]
    fn codes_that_are_never_sent_are_named_for_what_happened() {
        let mut worker = WorkerReport::default();
        worker.tally.connections_attempted = 4;
        worker.tally.connections_opened = 4;
        worker.tally.close_codes.insert(1000, 2);
        worker.tally.close_codes.insert(1005, 1);
        worker.tally.close_codes.insert(1006, 1);
        let report = LoadReport::build(facts(Mode::Echo, 1), &[worker]);
        let table = report.to_string();
        assert!(
            table.contains(
                "  closes     server sent 1000 ×2, a Close without a code (1005) ×1, \
                 no Close (1006) ×1\n"
            ),
            "{table}"
        );
    }

    /// Connections that opened but were all closed by the server before the
    /// window was due leave no window: the table must not claim that no
    /// connection opened.
    #[test]
    fn a_window_lost_to_closed_connections_is_not_blamed_on_opening() {
        let mut worker = WorkerReport::default();
        worker.tally.connections_attempted = 2;
        worker.tally.connections_opened = 2;
        let report = LoadReport::build(facts(Mode::Echo, 1), &[worker]);
        assert_eq!(report.window_secs, 0.0);
        let table = report.to_string();
        assert!(!table.contains("no connection opened"), "{table}");
        assert!(
            table.contains(", no window (every connection closed before it), elapsed 4.00 s"),
            "{table}"
        );
    }

    #[test]
    fn without_a_window_no_rate_is_made_up() {
        let workers = [WorkerReport::default(), WorkerReport::default()];
        let report = LoadReport::build(facts(Mode::Echo, 2), &workers);
        assert_eq!(report.window_secs, 0.0);
        assert_eq!(report.messages.per_sec, 0.0);
        assert_eq!(report.messages.bytes_per_sec, 0.0);
        let table = report.to_string();
        assert!(
            table.contains(", no window (no connection opened), elapsed 4.00 s"),
            "{table}"
        );
        assert!(
            table.contains("  messages   0 sent, 0 echoed: rates not measured\n"),
            "{table}"
        );
    }

    /// A churn worker's window starts at once; when every connect failed
    /// it measured nothing, and the report says so as an echo run's does
    /// (it showed the window and rates of 0.00).
    #[test]
    fn churn_with_no_connection_opened_has_no_window_and_no_rates() {
        let worker = WorkerReport {
            tally: Tally {
                connections_attempted: 10,
                connections_failed: 10,
                ..Tally::default()
            },
            window: secs(Instant::now(), 0.0, 1.0),
            ..WorkerReport::default()
        };
        let report = LoadReport::build(facts(Mode::Churn, 1), &[worker]);
        assert_eq!(report.window_secs, 0.0);
        assert_eq!(report.rate_span_secs, 0.0);
        assert_eq!(report.cycles.unwrap().per_sec, 0.0);
        let table = report.to_string();
        assert!(
            table.contains(", no window (no connection opened), elapsed 4.00 s"),
            "{table}"
        );
        assert!(
            table.contains("  messages   0 sent, 0 echoed: rates not measured\n"),
            "{table}"
        );
        assert!(
            table.contains("  cycles     0 completed: rates not measured\n"),
            "{table}"
        );
        assert!(!table.contains("/s"), "{table}");
    }

    #[test]
    fn messages_behind_schedule_are_a_warning_under_the_percentiles() {
        let mut tally = Tally {
            messages_sent: 5004,
            messages_received: 5004,
            behind_schedule: 996,
            ..Tally::default()
        };
        for latency in 0..5004u64 {
            record(&mut tally.histograms.message, 20_000 + latency);
        }
        let report = report_of(Mode::Rate, tally);
        assert_eq!(report.messages.behind_schedule, 996);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["messages"]["behind_schedule"], 996);
        let table = report.to_string();
        let lines: Vec<&str> = table.lines().collect();
        let message_row = lines
            .iter()
            .position(|line| line.trim_start().starts_with("message "))
            .unwrap();
        assert_eq!(
            lines[message_row + 1],
            "  warning    996 messages due were never sent (behind schedule): \
             the message latency leaves them out",
            "{table}"
        );
        let on_time = report_of(
            Mode::Rate,
            Tally {
                messages_sent: 10,
                messages_received: 10,
                ..Tally::default()
            },
        );
        assert!(!on_time.to_string().contains("warning"));
    }

    #[test]
    fn cycles_behind_schedule_are_reported() {
        let tally = Tally {
            cycles: 27_134,
            cycles_behind_schedule: 72_866,
            ..Tally::default()
        };
        let report = report_of(Mode::Churn, tally);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["cycles"]["behind_schedule"], 72_866);
        let table = report.to_string();
        let lines: Vec<&str> = table.lines().collect();
        let cycles_row = lines
            .iter()
            .position(|line| line.starts_with("  cycles "))
            .unwrap();
        assert_eq!(
            lines[cycles_row + 1],
            "             72,866 never started (behind schedule)",
            "{table}"
        );
    }

    #[test]
    fn number_formatting() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(si(1_500_000.0), "1.50 M");
        assert_eq!(latency(12.34), "12.3µs");
        assert_eq!(latency(2500.0), "2.50ms");
    }
}
