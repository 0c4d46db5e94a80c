//! Per-worker counters, written by their worker only and readable from any
//! thread ([`ServerHandle::stats`](crate::ServerHandle::stats)).
//!
//! Every counter is an `AtomicU64` with one writer (its worker), so an
//! increment is a plain load and store (no locked instruction) and readers
//! see each counter's latest value with relaxed loads. A snapshot is not
//! atomic across counters: gauges may momentarily disagree by one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::handler::{CloseKind, Initiator};
use crate::{IoStats, RingMode};

/// Statuses counted individually in [`StatusCounts`]; anything else goes to
/// the last bucket.
pub const COUNTED_STATUSES: [u16; 7] = [400, 403, 404, 405, 426, 431, 503];

/// Upper bounds (inclusive) of the close-duration histogram buckets, in
/// milliseconds; a last bucket holds everything longer.
pub const CLOSE_DURATION_BOUNDS_MS: [u64; 13] =
    [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];

/// Buckets of [`CloseCounts`]: 1000–1015 each, then 3000–3999, 4000–4999,
/// anything else.
const CLOSE_CODE_BUCKETS: usize = 19;

fn close_code_bucket(code: u16) -> usize {
    match code {
        1000..=1015 => usize::from(code - 1000),
        3000..=3999 => 16,
        4000..=4999 => 17,
        _ => 18,
    }
}

fn status_bucket(status: u16) -> usize {
    COUNTED_STATUSES
        .iter()
        .position(|&counted| counted == status)
        .unwrap_or(COUNTED_STATUSES.len())
}

/// `duration` in whole microseconds (truncated), saturating at `u64::MAX`.
fn whole_micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn duration_bucket(duration: Duration) -> usize {
    CLOSE_DURATION_BOUNDS_MS
        .iter()
        .position(|&bound| duration <= Duration::from_millis(bound))
        .unwrap_or(CLOSE_DURATION_BOUNDS_MS.len())
}

/// A counter with a single writer.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn add(&self, n: u64) {
        // One writer: load and store cannot race with another increment.
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn inc(&self) {
        self.add(1);
    }

    pub(crate) fn dec(&self) {
        self.0.store(
            self.0.load(Ordering::Relaxed).saturating_sub(1),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The connection gauges a connection moves between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gauge {
    Handshaking,
    Open,
    ClosingLocal,
    ClosingRemote,
}

/// The live counters of one worker, on their own cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct WorkerCounters {
    pub handshaking: Counter,
    pub open: Counter,
    pub closing_local: Counter,
    pub closing_remote: Counter,
    pub accepted: Counter,
    pub upgraded: Counter,
    pub handshake_timeouts: Counter,
    pub handshakes_failed: [Counter; COUNTED_STATUSES.len() + 1],
    pub plain_http_responses: Counter,
    pub messages_in: Counter,
    pub bytes_in: Counter,
    pub messages_out: Counter,
    pub bytes_out: Counter,
    pub closes_local: [Counter; CLOSE_CODE_BUCKETS],
    pub closes_remote: [Counter; CLOSE_CODE_BUCKETS],
    pub clean_closes: Counter,
    pub forced_terminations: Counter,
    pub abnormal_closes: Counter,
    pub keepalive_timeouts: Counter,
    pub close_timeouts: Counter,
    pub protocol_errors: Counter,
    pub handler_panics: Counter,
    pub dropped_messages: Counter,
    pub backpressure_closes: Counter,
    pub commands_for_gone: Counter,
    pub close_durations: [Counter; CLOSE_DURATION_BOUNDS_MS.len() + 1],
    /// Sum of the close durations, in whole microseconds.
    pub close_duration_sum_us: Counter,
    pub shutdown_total: Counter,
    pub shutdown_clean: Counter,
    pub shutdown_forced: Counter,
    pub shutdown_other: Counter,
    /// Shutdown phases this worker has carried out (see `server`).
    pub shutdown_phase: Counter,
}

impl WorkerCounters {
    pub(crate) fn gauge(&self, gauge: Gauge) -> &Counter {
        match gauge {
            Gauge::Handshaking => &self.handshaking,
            Gauge::Open => &self.open,
            Gauge::ClosingLocal => &self.closing_local,
            Gauge::ClosingRemote => &self.closing_remote,
        }
    }

    /// Moves one connection from gauge `from` to gauge `to`.
    pub(crate) fn shift(&self, from: Gauge, to: Gauge) {
        if from != to {
            self.gauge(from).dec();
            self.gauge(to).inc();
        }
    }

    pub(crate) fn handshake_failed(&self, status: u16) {
        self.handshakes_failed[status_bucket(status)].inc();
    }

    pub(crate) fn closed(&self, code: u16, initiator: Initiator, kind: CloseKind, took: Duration) {
        let bucket = close_code_bucket(code);
        match initiator {
            Initiator::Local => self.closes_local[bucket].inc(),
            Initiator::Remote => self.closes_remote[bucket].inc(),
        }
        match kind {
            CloseKind::Clean => self.clean_closes.inc(),
            CloseKind::Forced => self.forced_terminations.inc(),
            CloseKind::Abnormal => self.abnormal_closes.inc(),
        }
        self.close_durations[duration_bucket(took)].inc();
        self.close_duration_sum_us.add(whole_micros(took));
    }

    /// The counters now (`io` and `ring_mode` left empty: the reactor's
    /// figures are read elsewhere).
    pub(crate) fn snapshot(&self) -> WorkerStats {
        WorkerStats {
            handshaking: self.handshaking.get(),
            open: self.open.get(),
            closing_local: self.closing_local.get(),
            closing_remote: self.closing_remote.get(),
            accepted: self.accepted.get(),
            upgraded: self.upgraded.get(),
            handshake_timeouts: self.handshake_timeouts.get(),
            handshakes_failed: StatusCounts {
                counts: self.handshakes_failed.each_ref().map(Counter::get),
            },
            plain_http_responses: self.plain_http_responses.get(),
            messages_in: self.messages_in.get(),
            bytes_in: self.bytes_in.get(),
            messages_out: self.messages_out.get(),
            bytes_out: self.bytes_out.get(),
            closes: CloseCounts {
                local: self.closes_local.each_ref().map(Counter::get),
                remote: self.closes_remote.each_ref().map(Counter::get),
            },
            clean_closes: self.clean_closes.get(),
            forced_terminations: self.forced_terminations.get(),
            abnormal_closes: self.abnormal_closes.get(),
            keepalive_timeouts: self.keepalive_timeouts.get(),
            close_timeouts: self.close_timeouts.get(),
            protocol_errors: self.protocol_errors.get(),
            handler_panics: self.handler_panics.get(),
            dropped_messages: self.dropped_messages.get(),
            backpressure_closes: self.backpressure_closes.get(),
            commands_for_gone: self.commands_for_gone.get(),
            close_durations: DurationHistogram {
                counts: self.close_durations.each_ref().map(Counter::get),
                sum_micros: self.close_duration_sum_us.get(),
            },
            io: IoStats::default(),
            ring_mode: None,
        }
    }
}

/// Handshakes refused, by HTTP status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    counts: [u64; COUNTED_STATUSES.len() + 1],
}

impl StatusCounts {
    /// Refusals with `status`; a status not in [`COUNTED_STATUSES`] reads the
    /// shared "other" bucket.
    pub fn get(&self, status: u16) -> u64 {
        self.counts[status_bucket(status)]
    }

    /// Refusals with a status not in [`COUNTED_STATUSES`].
    pub fn other(&self) -> u64 {
        self.counts[COUNTED_STATUSES.len()]
    }

    /// All refusals.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn add(&mut self, other: &StatusCounts) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
    }
}

/// Closes by the code of the first Close frame (ours when we started the
/// close, the peer's otherwise; 1006 when no Close was exchanged) and by
/// initiator. Codes 1000–1015 are counted one by one; 3000–3999,
/// 4000–4999 and anything else share a bucket each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloseCounts {
    local: [u64; CLOSE_CODE_BUCKETS],
    remote: [u64; CLOSE_CODE_BUCKETS],
}

impl CloseCounts {
    /// Closes with `code`'s bucket started by `initiator`.
    pub fn get(&self, code: u16, initiator: Initiator) -> u64 {
        let bucket = close_code_bucket(code);
        match initiator {
            Initiator::Local => self.local[bucket],
            Initiator::Remote => self.remote[bucket],
        }
    }

    /// All closes started by `initiator`.
    pub fn total(&self, initiator: Initiator) -> u64 {
        match initiator {
            Initiator::Local => self.local.iter().sum(),
            Initiator::Remote => self.remote.iter().sum(),
        }
    }

    fn add(&mut self, other: &CloseCounts) {
        for (mine, theirs) in self.local.iter_mut().zip(other.local) {
            *mine += theirs;
        }
        for (mine, theirs) in self.remote.iter_mut().zip(other.remote) {
            *mine += theirs;
        }
    }
}

/// Close-handshake durations (from the first Close, or the decision to
/// close, until the connection is gone) in fixed buckets, with their exact
/// sum (each duration counted in whole microseconds).
///
/// Like every counter of a snapshot, the sum and the buckets are read one
/// after the other: while closes are being recorded, they may momentarily
/// disagree by the last close.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DurationHistogram {
    counts: [u64; CLOSE_DURATION_BOUNDS_MS.len() + 1],
    /// Sum of the recorded durations, in whole microseconds.
    sum_micros: u64,
}

impl DurationHistogram {
    /// `(upper bound in ms, count)` per bucket; the last bound is `None`
    /// (longer than every bound).
    pub fn buckets(&self) -> impl Iterator<Item = (Option<u64>, u64)> + '_ {
        CLOSE_DURATION_BOUNDS_MS
            .iter()
            .map(|&bound| Some(bound))
            .chain(std::iter::once(None))
            .zip(self.counts.iter().copied())
    }

    /// Number of closes recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Sum of the recorded durations: exact to the microsecond (each
    /// duration is truncated to whole microseconds before it is added), so
    /// `sum() / count()` is the mean close duration. Prometheus exposes it
    /// as the histogram's `_sum` series, in seconds.
    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_micros)
    }

    /// Records one duration in its bucket and in the sum, as the engine
    /// does for each close; for building histograms of the same shape
    /// elsewhere (tools, tests).
    pub fn record(&mut self, duration: Duration) {
        self.counts[duration_bucket(duration)] += 1;
        self.sum_micros = self.sum_micros.wrapping_add(whole_micros(duration));
    }

    fn add(&mut self, other: &DurationHistogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        // Wraps like the counter it comes from.
        self.sum_micros = self.sum_micros.wrapping_add(other.sum_micros);
    }
}

/// One worker's counters (or their sum, in [`Stats::total`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Connections in the HTTP handshake (or being refused).
    pub handshaking: u64,
    /// Open WebSocket connections.
    pub open: u64,
    /// Connections closing, started by us.
    pub closing_local: u64,
    /// Connections closing, started by the peer.
    pub closing_remote: u64,
    /// TCP connections accepted.
    pub accepted: u64,
    /// Handshakes completed (connections opened).
    pub upgraded: u64,
    /// Connections closed because the handshake took too long.
    pub handshake_timeouts: u64,
    /// Handshakes refused, by HTTP status.
    pub handshakes_failed: StatusCounts,
    /// Plain HTTP requests answered by the `plain_http` hook.
    pub plain_http_responses: u64,
    /// Messages received.
    pub messages_in: u64,
    /// Payload bytes of messages received.
    pub bytes_in: u64,
    /// Messages queued for sending.
    pub messages_out: u64,
    /// Payload bytes of messages queued for sending.
    pub bytes_out: u64,
    /// Closes by code and initiator.
    pub closes: CloseCounts,
    /// Connections that ended with [`CloseKind::Clean`].
    pub clean_closes: u64,
    /// Connections that ended with [`CloseKind::Forced`].
    pub forced_terminations: u64,
    /// Connections that ended with [`CloseKind::Abnormal`].
    pub abnormal_closes: u64,
    /// Keepalive Pongs that did not arrive in time.
    pub keepalive_timeouts: u64,
    /// Closes that ran out of time and were aborted.
    pub close_timeouts: u64,
    /// Connections failed for a protocol violation (1002, 1007, 1009).
    pub protocol_errors: u64,
    /// Application callbacks and hooks that panicked. Each failed only the
    /// connection it ran for (Close 1011, or HTTP 500 for a request); the
    /// worker and its other connections went on.
    pub handler_panics: u64,
    /// Messages dropped by the backpressure policy.
    pub dropped_messages: u64,
    /// Connections closed by the backpressure policy.
    pub backpressure_closes: u64,
    /// Commands from handles that arrived after their connection was gone,
    /// and sends and pings that arrived after it had started closing: all
    /// dropped. A connection listed in
    /// [`broadcast_to`](crate::ServerControl::broadcast_to) counts the same
    /// way when the broadcast finds it gone or closing.
    pub commands_for_gone: u64,
    /// Close durations.
    pub close_durations: DurationHistogram,
    /// The worker's io_uring loop: bytes and operations, loop turns, and
    /// the memory its receive buffers and buffer pool hold. Published by
    /// the worker at most about a millisecond apart while it is busy, and
    /// current while it is idle.
    pub io: IoStats,
    /// The io_uring setup the worker's ring got from the kernel: the most
    /// capable one that [`ServerBuilder::ring_setup`](crate::ServerBuilder::ring_setup)
    /// allows and the kernel grants, so a server on an older kernel shows
    /// here whether it fell back. `None` in [`Stats::total`] (a sum has no
    /// mode) and for a worker that has not started.
    pub ring_mode: Option<RingMode>,
}

impl WorkerStats {
    /// Connections in any state.
    pub fn connections(&self) -> u64 {
        self.handshaking + self.open + self.closing_local + self.closing_remote
    }

    fn add(&mut self, other: &WorkerStats) {
        self.handshaking += other.handshaking;
        self.open += other.open;
        self.closing_local += other.closing_local;
        self.closing_remote += other.closing_remote;
        self.accepted += other.accepted;
        self.upgraded += other.upgraded;
        self.handshake_timeouts += other.handshake_timeouts;
        self.handshakes_failed.add(&other.handshakes_failed);
        self.plain_http_responses += other.plain_http_responses;
        self.messages_in += other.messages_in;
        self.bytes_in += other.bytes_in;
        self.messages_out += other.messages_out;
        self.bytes_out += other.bytes_out;
        self.closes.add(&other.closes);
        self.clean_closes += other.clean_closes;
        self.forced_terminations += other.forced_terminations;
        self.abnormal_closes += other.abnormal_closes;
        self.keepalive_timeouts += other.keepalive_timeouts;
        self.close_timeouts += other.close_timeouts;
        self.protocol_errors += other.protocol_errors;
        self.handler_panics += other.handler_panics;
        self.dropped_messages += other.dropped_messages;
        self.backpressure_closes += other.backpressure_closes;
        self.commands_for_gone += other.commands_for_gone;
        self.close_durations.add(&other.close_durations);
        self.io.add(&other.io);
    }
}

/// Counters of every worker and their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Per worker, indexed by [`WorkerId::index`](crate::WorkerId::index).
    pub workers: Vec<WorkerStats>,
    /// The sum over workers.
    pub total: WorkerStats,
}

impl Stats {
    /// Every worker's counters, its published io figures and its ring mode.
    pub(crate) fn collect<'a>(
        workers: impl Iterator<Item = (&'a WorkerCounters, IoStats, Option<RingMode>)>,
    ) -> Stats {
        let workers: Vec<WorkerStats> = workers
            .map(|(counters, io, ring_mode)| WorkerStats {
                io,
                ring_mode,
                ..counters.snapshot()
            })
            .collect();
        let mut total = WorkerStats::default();
        for worker in &workers {
            total.add(worker);
        }
        Stats { workers, total }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_map_to_buckets() {
        let table = [
            (1000, 0),
            (1001, 1),
            (1006, 6),
            (1015, 15),
            (3000, 16),
            (3999, 16),
            (4000, 17),
            (4999, 17),
            (1016, 18),
            (2999, 18),
            (5000, 18),
        ];
        for (code, bucket) in table {
            assert_eq!(close_code_bucket(code), bucket, "code {code}");
        }
    }

    #[test]
    fn durations_map_to_inclusive_buckets() {
        assert_eq!(duration_bucket(Duration::ZERO), 0);
        assert_eq!(duration_bucket(Duration::from_millis(1)), 0);
        assert_eq!(duration_bucket(Duration::from_micros(1500)), 1);
        assert_eq!(duration_bucket(Duration::from_millis(10_000)), 12);
        assert_eq!(duration_bucket(Duration::from_millis(10_001)), 13);
    }

    #[test]
    fn counters_roll_up_into_a_total() {
        let a = WorkerCounters::default();
        let b = WorkerCounters::default();
        a.open.inc();
        a.open.inc();
        b.open.inc();
        a.shift(Gauge::Open, Gauge::ClosingRemote);
        a.handshake_failed(426);
        b.handshake_failed(418);
        a.closed(
            1001,
            Initiator::Local,
            CloseKind::Clean,
            Duration::from_millis(3),
        );
        b.closed(1006, Initiator::Remote, CloseKind::Abnormal, Duration::ZERO);
        let mut io_a = IoStats::default();
        io_a.bytes_received = 10;
        io_a.recv_buffers_lent = 1;
        let mut io_b = IoStats::default();
        io_b.bytes_received = 5;
        let stats = Stats::collect(
            [
                (&a, io_a, Some(RingMode::DeferTaskrun)),
                (&b, io_b, Some(RingMode::Plain)),
            ]
            .into_iter(),
        );
        assert_eq!(stats.workers[0].io, io_a);
        // Each worker keeps its own ring mode; a sum has none.
        assert_eq!(stats.workers[0].ring_mode, Some(RingMode::DeferTaskrun));
        assert_eq!(stats.workers[1].ring_mode, Some(RingMode::Plain));
        assert_eq!(stats.total.ring_mode, None);
        assert_eq!(stats.total.io.bytes_received, 15);
        assert_eq!(stats.total.io.recv_buffers_lent, 1);
        assert_eq!(stats.workers.len(), 2);
        assert_eq!(stats.total.open, 2);
        assert_eq!(stats.total.closing_remote, 1);
        assert_eq!(stats.total.handshakes_failed.get(426), 1);
        assert_eq!(stats.total.handshakes_failed.other(), 1);
        assert_eq!(stats.total.handshakes_failed.total(), 2);
        assert_eq!(stats.total.closes.get(1001, Initiator::Local), 1);
        assert_eq!(stats.total.closes.get(1006, Initiator::Remote), 1);
        assert_eq!(stats.total.clean_closes, 1);
        assert_eq!(stats.total.abnormal_closes, 1);
        assert_eq!(stats.total.close_durations.count(), 2);
        let buckets: Vec<_> = stats.total.close_durations.buckets().collect();
        assert_eq!(buckets[0], (Some(1), 1));
        assert_eq!(buckets[2], (Some(5), 1));
        assert_eq!(buckets.last(), Some(&(None, 0)));
        assert_eq!(
            stats.workers[0].close_durations.sum(),
            Duration::from_millis(3)
        );
        assert_eq!(stats.workers[1].close_durations.sum(), Duration::ZERO);
        assert_eq!(stats.total.close_durations.sum(), Duration::from_millis(3));
    }

    #[test]
    fn the_duration_sum_is_exact_to_the_microsecond() {
        let counters = WorkerCounters::default();
        let durations = [
            Duration::from_nanos(999),
            Duration::from_micros(1500),
            Duration::new(2, 123_456_789),
            Duration::from_secs(30),
        ];
        let mut recorded = DurationHistogram::default();
        for &took in &durations {
            counters.closed(1000, Initiator::Remote, CloseKind::Clean, took);
            recorded.record(took);
        }
        let snapshot = counters.snapshot().close_durations;
        // 0 + 1_500 + 2_123_456 + 30_000_000 microseconds: sub-microsecond
        // parts are dropped per close, never rounded up.
        assert_eq!(snapshot.sum(), Duration::from_micros(32_124_956));
        assert_eq!(snapshot.count(), 4);
        assert_eq!(
            recorded, snapshot,
            "record() matches the engine's bookkeeping"
        );
        let mut merged = snapshot;
        merged.add(&recorded);
        assert_eq!(merged.sum(), Duration::from_micros(2 * 32_124_956));
        assert_eq!(merged.count(), 8);
    }
}
