//! # The ringws load generator
//!
//! [`run`] drives a WebSocket server with one load worker per core, each on
//! its own io_uring reactor (`ringws-reactor`) speaking the protocol through
//! `ringws-proto`, and returns a [`LoadReport`]: rates, latency percentiles,
//! connection outcomes, the close codes the server sent, every error counted
//! by kind, and the CPU time the workers used, so a caller (the `ringws
//! bench` harness, or a test) can compute CPU per message.
//!
//! ```no_run
//! use ringws_cli::load::{run, LoadConfig, Mode};
//!
//! let mut config = LoadConfig::new("ws://127.0.0.1:9001/", Mode::Echo);
//! config.connections = 32;
//! config.duration = std::time::Duration::from_secs(2);
//! let report = run(&config).unwrap();
//! println!("{report}");
//! let cpu_ns = report.cpu.per_message_ns;
//! ```
//!
//! ## Modes
//!
//! * [`Mode::Echo`]: closed loop, `pipeline` messages in flight per
//!   connection, latency from the actual send.
//! * [`Mode::Rate`]: open loop at `rate` messages/s in total on a 1 ms
//!   schedule; latency counts from the *intended* send time, so a server
//!   that stalls the generator is measured, not hidden (coordinated omission
//!   corrected, as wrk2 does).
//! * [`Mode::Churn`]: connect, handshake, `messages_per_cycle` messages
//!   (none: connect, upgrade, close), close with `close_code`, repeat;
//!   connect, handshake and close latency, cycles/s and the server's close
//!   codes.
//! * [`Mode::Hold`]: open connections at `ramp`/s, hold them, optionally ping.
//!
//! ## Never fatal, always bounded
//!
//! Network trouble is counted ([`ErrorKind`]), never returned as an error:
//! refused connections, refused upgrades (with the HTTP status), protocol
//! errors (by close code), unexpected closes (by code), timeouts, echo
//! mismatches, repeated and skipped echoes (each payload carries its
//! message's sequence number). Every wait has the configured timeout; every worker has a hard
//! deadline after which it aborts what is left; the coordinator stops the
//! workers if even that passes. Only setup problems (bad configuration,
//! unresolvable host, io_uring unavailable) make [`run`] fail.
//! [`run_interruptible`] also ends early, with a report of what was
//! measured, once its [`Interrupt`] is raised (`ringws load` raises it on
//! SIGINT and SIGTERM).
//!
//! ## Module map
//!
//! * `config`: [`LoadConfig`], [`Mode`], parsers for address ranges, core
//!   lists and durations.
//! * `worker`: the per-worker [`Handler`](ringws_reactor::Handler).
//! * `schedule`: constant-rate schedules on 1 ms ticks; splitting totals
//!   over workers.
//! * `frames`: masked frames written into reused buffers.
//! * `report`: tallies, [`LoadReport`], percentile summaries, the table.
//! * `hist`: saving histograms (HdrHistogram interval log, V2 compressed)
//!   and merging saved ones exactly.
//! * `output`: results files replaced whole, never left truncated or
//!   half-written.
//! * `cpu`: thread and process CPU time.
//! * `cli`: the `ringws load` command line.

pub mod cli;
pub mod config;
pub mod cpu;
mod frames;
pub mod hist;
pub mod output;
pub mod report;
mod schedule;
mod worker;

use std::fmt;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ringws_proto::handshake::{ClientHandshake, WsUrl};
use ringws_proto::Opcode;
use ringws_reactor::{CorePinning, Reactor};

pub use crate::load::config::{ConfigError, LoadConfig, Mode, PayloadKind};
pub use crate::load::cpu::CpuTime;
pub use crate::load::report::{ErrorKind, LatencyHistograms, LatencySummary, LoadReport};

use crate::load::report::{RunFacts, WorkerReport};
use crate::load::worker::{Command, LoadWorker, Plan, WindowBarrier, WorkerGauges};

/// Grace the coordinator gives workers past their own hard deadline before
/// stopping them.
const COORDINATOR_GRACE: Duration = Duration::from_secs(3);

/// How often the coordinator looks at the [`Interrupt`]: a person pressing
/// Ctrl-C sees the run wind down at once.
const INTERRUPT_POLL: Duration = Duration::from_millis(50);

/// Why a run could not start (problems during a run are counted instead).
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError {
    /// A setting is invalid.
    Config(ConfigError),
    /// The URL is not a `ws://` URL ringws can use.
    Url(String),
    /// The host did not resolve to an address.
    Resolve(String),
    /// The reactor could not start (io_uring unavailable, limits...).
    Start(ringws_reactor::StartError),
    /// A worker failed (io_uring_enter error or a panic).
    Worker(ringws_reactor::WorkerError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Config(error) => write!(f, "invalid settings: {error}"),
            LoadError::Url(reason) => write!(f, "invalid URL: {reason}"),
            LoadError::Resolve(reason) => write!(f, "cannot resolve the target: {reason}"),
            LoadError::Start(error) => write!(f, "cannot start the workers: {error}"),
            LoadError::Worker(error) => write!(f, "a worker failed: {error}"),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Config(error) => Some(error),
            LoadError::Start(error) => Some(error),
            LoadError::Worker(error) => Some(error),
            LoadError::Url(_) | LoadError::Resolve(_) => None,
        }
    }
}

/// Ends a run early. Raised (from any thread, or a signal handler through
/// [`Interrupt::flag`]), it makes every worker end its window at once (or
/// never begin it), await the replies in flight and close its connections
/// as at the end of a run; the report then covers what was measured and
/// says it was interrupted ([`LoadReport::interrupted`]).
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// An interrupt not raised yet.
    pub fn new() -> Interrupt {
        Interrupt::default()
    }

    /// Ends the run early (again: nothing more).
    pub fn raise(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether it was raised.
    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// The flag itself, for `signal_hook::flag::register`, which stores
    /// `true` from the signal handler.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

/// Counters during a run, for a progress line (once a second).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Time since the start.
    pub elapsed: Duration,
    /// Echoes received so far.
    pub messages: u64,
    /// Echoes per second over the last interval.
    pub messages_per_sec: f64,
    /// Connections open now.
    pub open: u64,
    /// Churn cycles completed so far.
    pub cycles: u64,
    /// Errors so far.
    pub errors: u64,
    /// The run was interrupted: the workers are closing their connections.
    pub interrupted: bool,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:>6.1}s] {}msg/s, {} messages, {} open, {} cycles, {} errors",
            self.elapsed.as_secs_f64(),
            report::si(self.messages_per_sec),
            report::thousands(self.messages),
            report::thousands(self.open),
            report::thousands(self.cycles),
            report::thousands(self.errors)
        )
    }
}

/// Runs the load described by `config` and reports what it measured.
pub fn run(config: &LoadConfig) -> Result<LoadReport, LoadError> {
    run_with_progress(config, |_| {})
}

/// [`run`], calling `progress` about once a second from the calling thread.
pub fn run_with_progress(
    config: &LoadConfig,
    progress: impl FnMut(&Progress),
) -> Result<LoadReport, LoadError> {
    run_interruptible(config, progress, &Interrupt::new())
}

/// [`run_with_progress`] that ends early once `interrupt` is raised; the
/// progress callback is then called at once, with
/// [`Progress::interrupted`] set.
pub fn run_interruptible(
    config: &LoadConfig,
    mut progress: impl FnMut(&Progress),
    interrupt: &Interrupt,
) -> Result<LoadReport, LoadError> {
    config.validate().map_err(LoadError::Config)?;
    let plan = Arc::new(plan(config)?);
    let workers = plan.workers;
    let pinning = match &config.cpus {
        Some(cpus) => CorePinning::Cores(cpus.clone()),
        None => CorePinning::Auto,
    };
    let max_connections = plan
        .parallelism
        .div_ceil(workers as u64)
        .clamp(64, (1 << 24) - 2) as u32;
    let (recv_count, recv_size) = recv_buffers_for(config.payload_size);
    let reactor_config = ringws_reactor::Config::new()
        .workers(workers)
        .pinning(pinning)
        .recv_buffers(recv_count, recv_size)
        .close_linger(config.timeout)
        .max_connections(max_connections)
        .thread_name("ringws-load");
    let (report_tx, report_rx) = mpsc::channel::<WorkerReport>();
    let worker_plan = plan.clone();
    let handle = Reactor::start(reactor_config, move |id| {
        LoadWorker::new(id, worker_plan.clone(), report_tx.clone())
    })
    .map_err(LoadError::Start)?;

    let started = Instant::now();
    for sender in handle.senders() {
        // A worker that already stopped reports nothing; the loop below
        // notices when every report is in or the channel closes.
        let _ = sender.send(Command::Start);
    }
    let longest = (0..workers)
        .map(|worker| plan.worker_deadline(worker))
        .max()
        .unwrap_or_default();
    let hard_deadline = started + longest + COORDINATOR_GRACE;
    let mut reports = Vec::with_capacity(workers);
    let mut next_progress = started + Duration::from_secs(1);
    let mut last_messages = 0u64;
    let mut last_at = started;
    let mut stopped = false;
    let mut interrupted = false;
    while reports.len() < workers {
        let now = Instant::now();
        if now >= hard_deadline && !stopped {
            handle.stop();
            stopped = true;
        }
        let wait_until = if stopped {
            now + COORDINATOR_GRACE
        } else if interrupted {
            next_progress.min(hard_deadline)
        } else {
            next_progress.min(hard_deadline).min(now + INTERRUPT_POLL)
        };
        match report_rx.recv_timeout(wait_until.saturating_duration_since(now)) {
            Ok(report) => reports.push(report),
            Err(mpsc::RecvTimeoutError::Timeout) if stopped => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        let interrupted_now = !interrupted && interrupt.is_raised();
        if interrupted_now {
            interrupted = true;
            for sender in handle.senders() {
                // A worker that already stopped has nothing to end.
                let _ = sender.send(Command::Interrupt);
            }
        }
        if (interrupted_now || now >= next_progress) && reports.len() < workers {
            let snapshot = gauges_snapshot(&plan.gauges);
            let interval = now.duration_since(last_at).as_secs_f64().max(1e-9);
            progress(&Progress {
                elapsed: now.duration_since(started),
                messages: snapshot.messages,
                messages_per_sec: snapshot.messages.saturating_sub(last_messages) as f64 / interval,
                open: snapshot.open,
                cycles: snapshot.cycles,
                errors: snapshot.errors,
                interrupted,
            });
            last_messages = snapshot.messages;
            last_at = now;
            if now >= next_progress {
                next_progress += Duration::from_secs(1);
            }
        }
    }
    let elapsed = started.elapsed();
    handle.stop();
    handle.join().map_err(LoadError::Worker)?;
    // Reports of workers that ended while the coordinator gave up waiting.
    reports.extend(report_rx.try_iter());
    Ok(LoadReport::build(
        RunFacts {
            mode: config.mode,
            url: &config.url,
            workers,
            payload_size: config.payload_size,
            payload_kind: config.payload_kind,
            messages_per_cycle: config.messages_per_cycle,
            pinging: config.ping_interval.is_some(),
            elapsed,
            interrupted,
        },
        &reports,
    ))
}

struct GaugeSnapshot {
    messages: u64,
    errors: u64,
    open: u64,
    cycles: u64,
}

fn gauges_snapshot(gauges: &[WorkerGauges]) -> GaugeSnapshot {
    let sum = |field: fn(&WorkerGauges) -> u64| gauges.iter().map(field).sum();
    GaugeSnapshot {
        messages: sum(|g| g.messages.load(Ordering::Relaxed)),
        errors: sum(|g| g.errors.load(Ordering::Relaxed)),
        open: sum(|g| g.open.load(Ordering::Relaxed)),
        cycles: sum(|g| g.cycles.load(Ordering::Relaxed)),
    }
}

/// Resolves and checks everything the workers share.
fn plan(config: &LoadConfig) -> Result<Plan, LoadError> {
    let url = WsUrl::parse(&config.url).map_err(|error| LoadError::Url(error.to_string()))?;
    let target = resolve(url.host(), url.port(), config)?;
    let headers: Vec<(&str, &str)> = config
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    // Build one request now so a bad header or host fails the run up front
    // instead of every connection.
    ClientHandshake::for_url(&url, [0; 16], &[], &headers)
        .map_err(|error| LoadError::Config(ConfigError(error.to_string())))?;
    let workers = config.worker_count();
    let seed = fastrand::u64(..);
    Ok(Plan {
        mode: config.mode,
        target,
        host: url.host().to_owned(),
        port: url.port(),
        path: url.request_target().into_owned(),
        headers: config.headers.clone(),
        payload: frames::build_payload(config.payload_size, config.payload_kind, seed),
        opcode: match config.payload_kind {
            PayloadKind::Binary => Opcode::Binary,
            PayloadKind::Text => Opcode::Text,
        },
        workers,
        parallelism: config.parallelism() as u64,
        pipeline: config.pipeline,
        duration: config.duration,
        timeout: config.timeout,
        rate: config.rate,
        ramp: config.ramp,
        messages_per_cycle: config.messages_per_cycle,
        cycles: config.cycles,
        close_code: config.close_code,
        ping_interval: config.ping_interval,
        source_addrs: config.source_addrs.clone(),
        max_in_flight: config.max_in_flight,
        gauges: (0..workers).map(|_| WorkerGauges::default()).collect(),
        barrier: WindowBarrier::default(),
    })
}

/// The address of `host` to load: of its addresses in the family of the
/// source addresses (if any are given), the first that accepts a
/// connection ([`first_accepting`]).
fn resolve(host: &str, port: u16, config: &LoadConfig) -> Result<SocketAddr, LoadError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|error| LoadError::Resolve(format!("{host}: {error}")))?
        .collect();
    let wanted_v4 = config.source_addrs.first().map(|source| source.is_ipv4());
    let candidates: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|addr| wanted_v4.is_none_or(|v4| addr.is_ipv4() == v4))
        .collect();
    if candidates.is_empty() {
        return Err(match wanted_v4 {
            // The arguments disagree with each other: a bad argument.
            Some(v4) => {
                let family = if v4 { "IPv4" } else { "IPv6" };
                LoadError::Config(ConfigError(format!(
                    "--source-addrs are {family}, but {host} has no {family} address"
                )))
            }
            None => LoadError::Resolve(format!("{host} has no address")),
        });
    }
    Ok(first_accepting(&candidates, config.timeout))
}

/// Of a host's `addrs` (in the resolver's order), the first that accepts
/// a TCP connection within `timeout`, tried in order as clients do, so
/// that `localhost` resolving to `::1` first still reaches a server on
/// `127.0.0.1` only; every connection of the run then goes there. The
/// probe is closed at once. A lone address is not probed, and when none
/// accepts the first is used, so that the run counts its refusals.
///
/// # Panics
///
/// If `addrs` is empty.
fn first_accepting(addrs: &[SocketAddr], timeout: Duration) -> SocketAddr {
    if let [only] = addrs {
        return *only;
    }
    addrs
        .iter()
        .copied()
        .find(|addr| TcpStream::connect_timeout(addr, timeout).is_ok())
        .unwrap_or(addrs[0])
}

/// Receive buffers (count, size) for echoes of `payload_size` bytes: large
/// enough that one echoed frame fits in one buffer (a frame straddling two
/// is copied into a tail before it is compared), from the reactor's default
/// 16 KiB up to 128 KiB, with the default 16 MiB per worker in total.
fn recv_buffers_for(payload_size: usize) -> (u16, u32) {
    const TOTAL: usize = 16 << 20;
    let frame = payload_size.saturating_add(ringws_proto::frame::MAX_HEADER_LEN);
    let size = frame
        .checked_next_power_of_two()
        .unwrap_or(usize::MAX)
        .clamp(16 << 10, 128 << 10);
    ((TOTAL / size) as u16, size as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host that resolves to `::1` first while the server listens on
    /// `127.0.0.1` only was loaded at `::1`, every connection refused.
    #[test]
    fn a_host_whose_first_address_refuses_is_loaded_at_the_next() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let v4 = listener.local_addr().unwrap();
        let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, v4.port()));
        let timeout = Duration::from_secs(5);
        assert_eq!(first_accepting(&[v6, v4], timeout), v4);
        assert_eq!(first_accepting(&[v4, v6], timeout), v4);
        assert_eq!(first_accepting(&[v6], timeout), v6, "a lone address");
        drop(listener);
        assert_eq!(
            first_accepting(&[v6, v4], timeout),
            v6,
            "none accepts: the first, whose refusals the run counts"
        );
    }

    #[test]
    fn receive_buffers_hold_a_whole_echo_within_the_default_total() {
        assert_eq!(recv_buffers_for(20), (1024, 16 << 10));
        assert_eq!(recv_buffers_for(16 << 10), (512, 32 << 10));
        assert_eq!(recv_buffers_for(100_000), (128, 128 << 10));
        assert_eq!(recv_buffers_for(usize::MAX), (128, 128 << 10));
        for payload in [0, 512, 16_370, 16_384, 40_000, 65_536, 100_000] {
            let (count, size) = recv_buffers_for(payload);
            assert!(count.is_power_of_two());
            assert_eq!(usize::from(count) * size as usize, 16 << 20);
            assert!(payload + 14 <= size as usize || size == 128 << 10);
        }
    }
}
