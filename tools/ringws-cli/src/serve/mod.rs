//! # `ringws serve`
//!
//! A ringws server from the command line: echo (default) or broadcast,
//! every [`ServerBuilder`] setting as a flag, Prometheus metrics on
//! `GET /metrics` on the same port (and, with `--metrics-addr`, on an
//! address of their own that stays open while the workers are full), and
//! graceful shutdown on SIGINT or
//! SIGTERM (Close 1001 with `--shutdown-reason` to every connection, then
//! termination at `--shutdown-timeout`, then a report).
//!
//! Output contract (for scripts and tests): the first line on stdout is
//! `listening on ws://ADDR:PORT`, flushed as soon as the listeners are
//! bound; after a signal, the last line on stdout is
//! `shutdown: total=N clean=N forced=N abnormal=N elapsed_ms=N`, and the
//! exit status is 0. Setup problems print `ringws serve: ...` on stderr and
//! exit with 1 (2 for invalid flags).

pub mod handlers;
pub mod metrics;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use ringws::{
    Backpressure, CloseCode, Pinning, RingSetup, Server, ServerBuilder, ServerHandle,
    ShutdownReport, StartError, Stats,
};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::load::config::{parse_cpu_list, parse_duration};
pub use crate::serve::handlers::{Broadcast, Echo};
pub use crate::serve::metrics::MetricsEndpoint;

/// Run a ringws WebSocket server (echo or broadcast) until SIGINT/SIGTERM.
///
/// Prints `listening on ws://ADDR:PORT` as its first line. `GET /metrics`
/// on the same port answers Prometheus text; other plain HTTP paths 404.
/// With --metrics-addr the metrics are also served there, where a scrape
/// is answered even while the workers hold --max-connections-per-worker.
/// On SIGINT or SIGTERM: Close 1001 with --shutdown-reason to every
/// connection, wait for the closing handshakes until --shutdown-timeout,
/// terminate the rest, print the report, exit 0. A second signal exits at
/// once with status 130.
///
/// Sizes take K/KiB, M/MiB, G/GiB suffixes (powers of 1024); durations take
/// ms, s, m, h (e.g. 500ms, 10s).
///
/// Examples:
///   ringws serve
///   ringws serve --addr 0.0.0.0:9001 --workers 4 --ping-interval 15s
///   ringws serve --mode broadcast --allowed-origin https://example.com
// The examples are `--help` text, printed as written.
#[allow(rustdoc::bare_urls)]
#[derive(Debug, Clone, Args)]
#[command(verbatim_doc_comment)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:9001")]
    pub addr: SocketAddr,

    /// echo: each message back to its sender; broadcast: each message to
    /// every open connection, the sender included.
    #[arg(long, value_enum, default_value_t = ServeMode::Echo)]
    pub mode: ServeMode,

    /// Worker threads, each with its own io_uring and listener (default:
    /// one per core).
    #[arg(short, long)]
    pub workers: Option<usize>,

    /// auto: pin worker i to core i when there are enough cores; off: do not
    /// pin.
    #[arg(long, value_enum, default_value_t = PinArg::Auto, conflicts_with = "cores")]
    pub pin: PinArg,

    /// Pin worker i to the i-th core of this list (wrapping), e.g. 0-3 or 2,3.
    #[arg(long, value_name = "LIST", value_parser = cpu_list)]
    pub cores: Option<CoreList>,

    /// Largest frame payload accepted; larger fails the connection with
    /// 1009 (default: --max-message-size).
    #[arg(long, value_name = "SIZE", value_parser = size)]
    pub max_frame_size: Option<usize>,

    /// Largest message (all fragments) accepted; larger fails the
    /// connection with 1009. The number of fragments is not limited, only
    /// the message's total size.
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = size)]
    pub max_message_size: usize,

    /// Time from accept to a complete upgrade request.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    pub handshake_timeout: Duration,

    /// Time a closing connection gets until its socket is gone; then it is
    /// aborted.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration)]
    pub close_timeout: Duration,

    /// Keepalive Ping interval; 0 or "none" disables keepalive.
    #[arg(long, value_name = "DURATION|none", default_value = "30s", value_parser = optional_duration)]
    pub ping_interval: OptionalDuration,

    /// Time a keepalive Pong may take before Close 1011.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    pub pong_timeout: Duration,

    /// Unsent bytes a connection may have before sends are refused.
    #[arg(long, value_name = "SIZE", default_value = "4MiB", value_parser = size)]
    pub max_queued_bytes: usize,

    /// What a connection at --max-queued-bytes gets: pause (stop reading it
    /// until its queue drains to half, so TCP slows a peer that sends
    /// faster than it reads and no echo is lost), drop (drop the messages
    /// over the limit), or close-1008/close-1013 (drop and close with that
    /// code).
    #[arg(long, value_enum, default_value_t = BackpressureArg::Pause)]
    pub backpressure: BackpressureArg,

    /// Accept upgrades whose Origin is exactly this (repeatable). Without
    /// it every origin is accepted; with it, other origins get 403, and
    /// requests without an Origin header (non-browser clients) are
    /// accepted.
    #[arg(long, value_name = "ORIGIN")]
    pub allowed_origin: Vec<String>,

    /// Supported subprotocol, in the server's order of preference
    /// (repeatable): the first one the client also offered is selected.
    #[arg(long, value_name = "NAME")]
    pub subprotocol: Vec<String>,

    /// Largest HTTP request head (answered 431 beyond; so are more than 64
    /// header fields).
    #[arg(long, value_name = "SIZE", default_value = "8KiB", value_parser = size)]
    pub max_header_bytes: usize,

    /// Most simultaneous connections per worker.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub max_connections_per_worker: u32,

    /// Serve /metrics on this address too, from a thread of its own: scrapes
    /// there take no place among the workers' connections, so they are
    /// answered while the workers are full (port 0: any free port; the
    /// address is printed on stderr).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Provided receive buffers per worker (a power of two, at most 32768);
    /// about 2 MiB of them are offered at first, more whenever they run out.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub recv_buffer_count: u16,

    /// Size of each provided receive buffer (a message that fits one with
    /// its header is read in place; a large echo is sent from it uncopied).
    #[arg(long, value_name = "SIZE", default_value = "32KiB", value_parser = size)]
    pub recv_buffer_size: usize,

    /// SO_SNDBUF for every connection's socket (the kernel doubles it and
    /// stops autotuning it); unset: the kernel autotunes.
    #[arg(long, value_name = "SIZE", value_parser = size)]
    pub socket_send_buffer: Option<usize>,

    /// How often a worker checks whether its receive buffers hold pages the
    /// traffic no longer needs, and gives them back (in slices of at most
    /// a few tenths of a ms per loop turn, once after a burst); "none" or 0
    /// keeps them.
    #[arg(long, value_name = "DURATION|none", default_value = "none", value_parser = optional_duration)]
    pub buffer_release_period: OptionalDuration,

    /// The most capable io_uring setup the workers may ask for: auto (the
    /// most capable the kernel grants: DEFER_TASKRUN from Linux 6.1),
    /// coop-taskrun (as on Linux 5.19 to 6.0) or plain (no optional flag).
    /// A kernel that refuses it gets the next less capable one. The mode
    /// each worker got is on the startup line (stderr) and in /metrics
    /// (ringws_worker_ring_mode).
    #[arg(long, value_name = "SETUP", default_value = "auto")]
    pub ring_setup: RingSetupArg,

    /// How long a graceful shutdown waits for closing handshakes before it
    /// terminates what is left.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration)]
    pub shutdown_timeout: Duration,

    /// Reason of the Close 1001 sent on shutdown (at most 123 bytes).
    #[arg(long, value_name = "TEXT", default_value = ringws::DEFAULT_SHUTDOWN_REASON)]
    pub shutdown_reason: String,
}

/// What the server does with messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServeMode {
    /// Each message back to its sender.
    Echo,
    /// Each message to every open connection.
    Broadcast,
}

/// `--pin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PinArg {
    /// Pin worker i to core i when there are enough cores.
    Auto,
    /// Do not pin.
    Off,
}

/// `--backpressure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackpressureArg {
    /// Stop reading the connection until its queue drains.
    Pause,
    /// Drop the message; the connection stays open.
    Drop,
    /// Drop it and close with 1008 (policy violation).
    #[value(name = "close-1008")]
    Close1008,
    /// Drop it and close with 1013 (try again later).
    #[value(name = "close-1013")]
    Close1013,
}

/// `--ring-setup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RingSetupArg {
    /// The most capable setup the kernel grants.
    Auto,
    /// At most COOP_TASKRUN (no DEFER_TASKRUN).
    CoopTaskrun,
    /// No optional setup flag.
    Plain,
}

impl From<RingSetupArg> for RingSetup {
    fn from(arg: RingSetupArg) -> RingSetup {
        match arg {
            RingSetupArg::Auto => RingSetup::Auto,
            RingSetupArg::CoopTaskrun => RingSetup::CoopTaskrun,
            RingSetupArg::Plain => RingSetup::Plain,
        }
    }
}

/// A list of core ids (`--cores`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreList(pub Vec<usize>);

/// A duration or "none" (`--ping-interval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalDuration(pub Option<Duration>);

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|error| error.to_string())
}

fn optional_duration(text: &str) -> Result<OptionalDuration, String> {
    if matches!(text.trim(), "none" | "off") {
        return Ok(OptionalDuration(None));
    }
    let value = duration(text)?;
    Ok(OptionalDuration((!value.is_zero()).then_some(value)))
}

fn cpu_list(text: &str) -> Result<CoreList, String> {
    parse_cpu_list(text)
        .map(CoreList)
        .map_err(|error| error.to_string())
}

fn size(text: &str) -> Result<usize, String> {
    parse_size(text)
}

/// Parses a byte size: a whole number with an optional suffix `K`/`KiB`,
/// `M`/`MiB` or `G`/`GiB` (powers of 1024, case-insensitive) or `B`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: usize = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 512, 64KiB, 16M)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        other => return Err(format!("unknown size unit {other:?} (use K, M or G)")),
    };
    value
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("size {text:?} is out of range"))
}

impl ServeArgs {
    /// The server these arguments describe, its plain HTTP requests
    /// answered by `metrics` (attach the server to it once started).
    /// Checks the settings the builder only checks at start, so a bad flag
    /// is reported before any socket is bound.
    pub fn builder(&self, metrics: &MetricsEndpoint) -> Result<ServerBuilder, String> {
        let recv_buffer_size = u32::try_from(self.recv_buffer_size)
            .map_err(|_| "--recv-buffer-size must be below 4 GiB".to_owned())?;
        let mut builder = Server::bind(self.addr)
            .max_message_size(self.max_message_size)
            .handshake_timeout(self.handshake_timeout)
            .close_timeout(self.close_timeout)
            .ping_interval(self.ping_interval.0)
            .pong_timeout(self.pong_timeout)
            .max_queued_bytes(self.max_queued_bytes)
            .backpressure(match self.backpressure {
                BackpressureArg::Pause => Backpressure::PauseReading,
                BackpressureArg::Drop => Backpressure::DropMessage,
                BackpressureArg::Close1008 => Backpressure::Close(CloseCode::POLICY_VIOLATION),
                BackpressureArg::Close1013 => Backpressure::Close(CloseCode::TRY_AGAIN_LATER),
            })
            .max_header_bytes(self.max_header_bytes)
            .max_connections_per_worker(self.max_connections_per_worker)
            .recv_buffers(self.recv_buffer_count, recv_buffer_size)
            .buffer_release_period(self.buffer_release_period.0)
            .ring_setup(self.ring_setup.into())
            .shutdown_reason(self.shutdown_reason.clone())
            .pinning(match (&self.cores, self.pin) {
                (Some(cores), _) => Pinning::Cores(cores.0.clone()),
                (None, PinArg::Auto) => Pinning::Auto,
                (None, PinArg::Off) => Pinning::Off,
            });
        if let Some(workers) = self.workers {
            builder = builder.workers(workers);
        }
        if let Some(bytes) = self.socket_send_buffer {
            builder = builder.socket_send_buffer(bytes);
        }
        if let Some(bytes) = self.max_frame_size {
            builder = builder.max_frame_size(bytes);
        }
        if !self.allowed_origin.is_empty() {
            let allowed = self.allowed_origin.clone();
            builder = builder.origin_check(move |origin| match origin {
                Some(origin) => allowed.iter().any(|allowed| allowed == origin),
                None => true,
            });
        }
        if !self.subprotocol.is_empty() {
            let supported: Vec<&str> = self.subprotocol.iter().map(String::as_str).collect();
            builder = builder.subprotocols(&supported);
        }
        let metrics = metrics.clone();
        builder = builder.plain_http(move |request| metrics.respond(request));
        Ok(builder)
    }

    /// Binds and starts the server (echo or broadcast) and attaches it to
    /// `metrics`.
    pub fn start(&self, metrics: &MetricsEndpoint) -> Result<ServerHandle, ServeError> {
        let builder = self.builder(metrics).map_err(ServeError::Settings)?;
        let started = match self.mode {
            ServeMode::Echo => builder.start(|_worker| Echo),
            ServeMode::Broadcast => builder.start(|_worker| Broadcast),
        };
        let server = started.map_err(|error| match error {
            StartError::Config(error) => ServeError::Settings(error.to_string()),
            other => ServeError::Start(start_error_message(&other)),
        })?;
        metrics.attach(server.control());
        Ok(server)
    }
}

/// Why `ringws serve` could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServeError {
    /// A flag's value was refused (exit status 2).
    Settings(String),
    /// The server could not start: address in use, io_uring unavailable...
    /// (exit status 1).
    Start(String),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Settings(message) => write!(f, "invalid settings: {message}"),
            ServeError::Start(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ServeError {}

/// A start error with what to do about it.
fn start_error_message(error: &StartError) -> String {
    match error {
        StartError::Bind { addr, source } if source.kind() == std::io::ErrorKind::AddrInUse => {
            format!(
                "cannot listen on {addr}: the address is in use (pick another --addr, or port 0 \
                 for any free port)"
            )
        }
        StartError::Engine(_) => format!(
            "{error} (ringws needs io_uring: Linux 6.x with sysctl kernel.io_uring_disabled = 0, \
             and a seccomp profile that allows io_uring_setup)"
        ),
        other => other.to_string(),
    }
}

/// The io_uring mode the workers' rings got, for the startup line:
/// `io_uring MODE` when every worker got the same, else each worker's
/// (`io_uring worker 0 MODE, worker 1 MODE`).
pub fn ring_modes(stats: &Stats) -> String {
    let modes: Vec<String> = stats
        .workers
        .iter()
        .map(|worker| {
            worker
                .ring_mode
                .map_or("unknown".to_owned(), |mode| mode.to_string())
        })
        .collect();
    match modes.split_first() {
        Some((first, rest)) if rest.iter().all(|mode| mode == first) => {
            format!("io_uring {first}")
        }
        _ => {
            let each: Vec<String> = modes
                .iter()
                .enumerate()
                .map(|(index, mode)| format!("worker {index} {mode}"))
                .collect();
            format!("io_uring {}", each.join(", "))
        }
    }
}

/// The last line `ringws serve` prints.
pub fn report_line(report: &ShutdownReport) -> String {
    format!(
        "shutdown: total={} clean={} forced={} abnormal={} elapsed_ms={}",
        report.total,
        report.clean,
        report.forced,
        report.abnormal,
        report.elapsed.as_millis()
    )
}

/// Raises the soft open-file limit to the hard limit: each connection is a
/// file descriptor, and the usual soft limit (1024) is far below what a
/// server holds. Failure leaves the limit as it was. Returns the soft limit
/// now in force (`None` when it cannot be read).
pub fn raise_fd_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a live, writable `rlimit` for the call's duration.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid `rlimit` read by the call only.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Some(limit.rlim_cur)
}

/// Writes a line to stdout and flushes it; a closed stdout is not an error
/// worth dying for.
fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// Runs `ringws serve` and returns the process exit code.
pub fn main(args: ServeArgs) -> ExitCode {
    let _ = raise_fd_limit();
    // Registered before the workers start, so a signal during start-up is
    // not lost (it is handled once the server runs).
    let signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("ringws serve: cannot install the signal handlers: {error}");
            return ExitCode::FAILURE;
        }
    };
    let metrics = MetricsEndpoint::new();
    // Bound before the server starts, so an address in use fails the start.
    let metrics_listener = match args.metrics_addr {
        None => None,
        Some(addr) => match std::net::TcpListener::bind(addr) {
            Ok(listener) => Some(listener),
            Err(error) => {
                eprintln!("ringws serve: cannot listen for metrics on {addr}: {error}");
                return ExitCode::FAILURE;
            }
        },
    };
    let metrics_apart = metrics_listener
        .as_ref()
        .and_then(|listener| listener.local_addr().ok());
    if let Some(listener) = metrics_listener {
        if let Err(error) = metrics::serve_apart(listener, metrics.clone()) {
            eprintln!("ringws serve: cannot start the metrics listener: {error}");
            return ExitCode::FAILURE;
        }
    }
    let server = match args.start(&metrics) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("ringws serve: {error}");
            return match error {
                ServeError::Settings(_) => ExitCode::from(2),
                ServeError::Start(_) => ExitCode::FAILURE,
            };
        }
    };
    say(&format!("listening on ws://{}", server.local_addr()));
    let also = match metrics_apart {
        Some(addr) => format!(" and http://{addr}{}", metrics::PATH),
        None => String::new(),
    };
    eprintln!(
        "ringws serve: {} mode, {} worker(s) ({}); metrics at http://{}{}{also}; SIGINT or \
         SIGTERM shuts down (deadline {:?})",
        match args.mode {
            ServeMode::Echo => "echo",
            ServeMode::Broadcast => "broadcast",
        },
        server.control().worker_count(),
        ring_modes(&server.stats()),
        server.local_addr(),
        metrics::PATH,
        args.shutdown_timeout,
    );

    let control = server.control();
    let signal_handle = signals.handle();
    let deadline = args.shutdown_timeout;
    let (report_tx, report_rx) = mpsc::channel::<ShutdownReport>();
    let watcher = std::thread::Builder::new()
        .name("ringws-signals".into())
        .spawn(move || {
            let mut signals = signals;
            let mut pending = signals.forever();
            let Some(signal) = pending.next() else {
                return;
            };
            eprintln!(
                "ringws serve: {} received, shutting down (deadline {deadline:?})",
                signal_name(signal)
            );
            // The shutdown blocks, so it runs on its own thread while this
            // one waits for a second signal, which exits at once.
            let shutdown = move || {
                // Never refused here: this is not a worker thread.
                if let Ok(report) = control.shutdown(deadline) {
                    let _ = report_tx.send(report);
                }
            };
            let spawned = std::thread::Builder::new()
                .name("ringws-shutdown".into())
                .spawn(shutdown.clone());
            if spawned.is_err() {
                shutdown();
                return;
            }
            if let Some(signal) = pending.next() {
                eprintln!(
                    "ringws serve: second {}: exiting without waiting",
                    signal_name(signal)
                );
                std::process::exit(130);
            }
        });
    if let Err(error) = watcher {
        eprintln!("ringws serve: cannot start the signal thread: {error}");
        let _ = server.control().shutdown(Duration::ZERO);
        let _ = server.join();
        return ExitCode::FAILURE;
    }
    let joined = server.join();
    // Ends the watcher's wait when the workers stopped without a signal.
    signal_handle.close();
    match joined {
        Err(error) => {
            eprintln!("ringws serve: a worker failed: {error}");
            ExitCode::FAILURE
        }
        Ok(()) => match report_rx.recv() {
            Ok(report) => {
                say(&report_line(&report));
                ExitCode::SUCCESS
            }
            Err(_) => {
                eprintln!("ringws serve: the workers stopped without a shutdown");
                ExitCode::FAILURE
            }
        },
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
            .map(|cli| cli.serve)
    }

    #[test]
    fn the_startup_line_names_the_ring_modes_the_workers_got() {
        let worker = |mode| {
            let mut stats = ringws::WorkerStats::default();
            stats.ring_mode = mode;
            stats
        };
        let stats = |modes: &[Option<ringws::RingMode>]| Stats {
            workers: modes.iter().map(|&mode| worker(mode)).collect(),
            total: ringws::WorkerStats::default(),
        };
        use ringws::RingMode::{CoopTaskrun, DeferTaskrun, Plain};
        assert_eq!(
            ring_modes(&stats(&[Some(DeferTaskrun), Some(DeferTaskrun)])),
            "io_uring single_issuer+defer_taskrun"
        );
        assert_eq!(ring_modes(&stats(&[Some(Plain)])), "io_uring plain");
        assert_eq!(
            ring_modes(&stats(&[Some(CoopTaskrun), Some(Plain), None])),
            "io_uring worker 0 coop_taskrun, worker 1 plain, worker 2 unknown"
        );
    }

    #[test]
    fn defaults_match_the_library_defaults() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.addr, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(args.max_message_size, ringws::DEFAULT_MAX_MESSAGE_SIZE);
        assert_eq!(args.handshake_timeout, ringws::DEFAULT_HANDSHAKE_TIMEOUT);
        assert_eq!(args.close_timeout, ringws::DEFAULT_CLOSE_TIMEOUT);
        assert_eq!(
            args.ping_interval,
            OptionalDuration(Some(ringws::DEFAULT_PING_INTERVAL))
        );
        assert_eq!(args.pong_timeout, ringws::DEFAULT_PONG_TIMEOUT);
        assert_eq!(args.max_queued_bytes, ringws::DEFAULT_MAX_QUEUED_BYTES);
        assert_eq!(args.max_header_bytes, ringws::DEFAULT_MAX_HEADER_BYTES);
        assert_eq!(args.shutdown_reason, ringws::DEFAULT_SHUTDOWN_REASON);
        assert_eq!(args.buffer_release_period, OptionalDuration(None));
        assert_eq!(RingSetup::from(args.ring_setup), RingSetup::default());
        assert_eq!(args.mode, ServeMode::Echo);
        assert_eq!(args.backpressure, BackpressureArg::Pause);
    }

    #[test]
    fn every_flag_parses() {
        let args = parse(&[
            "--addr",
            "127.0.0.1:0",
            "--mode",
            "broadcast",
            "--workers",
            "2",
            "--cores",
            "0-1",
            "--max-frame-size",
            "64K",
            "--max-message-size",
            "2MiB",
            "--handshake-timeout",
            "3s",
            "--close-timeout",
            "500ms",
            "--ping-interval",
            "none",
            "--pong-timeout",
            "2s",
            "--max-queued-bytes",
            "1m",
            "--backpressure",
            "close-1013",
            "--allowed-origin",
            "https://a.example",
            "--allowed-origin",
            "https://b.example",
            "--subprotocol",
            "chat.v2",
            "--subprotocol",
            "chat.v1",
            "--shutdown-timeout",
            "1s",
            "--shutdown-reason",
            "maintenance",
            "--buffer-release-period",
            "5s",
            "--ring-setup",
            "coop-taskrun",
        ])
        .unwrap();
        assert_eq!(args.ring_setup, RingSetupArg::CoopTaskrun);
        assert_eq!(
            args.buffer_release_period,
            OptionalDuration(Some(Duration::from_secs(5)))
        );
        assert_eq!(args.mode, ServeMode::Broadcast);
        assert_eq!(args.workers, Some(2));
        assert_eq!(args.cores, Some(CoreList(vec![0, 1])));
        assert_eq!(args.max_frame_size, Some(64 * 1024));
        assert_eq!(args.max_message_size, 2 << 20);
        assert_eq!(args.close_timeout, Duration::from_millis(500));
        assert_eq!(args.ping_interval, OptionalDuration(None));
        assert_eq!(args.max_queued_bytes, 1 << 20);
        assert_eq!(args.backpressure, BackpressureArg::Close1013);
        assert_eq!(args.allowed_origin.len(), 2);
        assert_eq!(args.subprotocol, ["chat.v2", "chat.v1"]);
        assert_eq!(args.shutdown_timeout, Duration::from_secs(1));
        assert_eq!(args.shutdown_reason, "maintenance");
        assert!(args.builder(&MetricsEndpoint::new()).is_ok());
    }

    #[test]
    fn the_ring_setup_flag_reaches_the_builder() {
        for (flag, setup) in [
            ("auto", RingSetup::Auto),
            ("coop-taskrun", RingSetup::CoopTaskrun),
            ("plain", RingSetup::Plain),
        ] {
            let args = parse(&["--ring-setup", flag]).unwrap();
            let builder = args.builder(&MetricsEndpoint::new()).unwrap();
            let shown = format!("{builder:?}");
            assert!(shown.contains(&format!("ring_setup: {setup:?}")), "{shown}");
        }
        assert!(parse(&["--ring-setup", "defer"]).is_err());
    }

    #[test]
    fn ping_interval_zero_disables_keepalive() {
        let args = parse(&["--ping-interval", "0"]).unwrap();
        assert_eq!(args.ping_interval, OptionalDuration(None));
        let args = parse(&["--ping-interval", "15s"]).unwrap();
        assert_eq!(
            args.ping_interval,
            OptionalDuration(Some(Duration::from_secs(15)))
        );
    }

    #[test]
    fn bad_flags_are_refused_by_the_parser() {
        assert!(parse(&["--backpressure", "close-1006"]).is_err());
        assert!(parse(&["--pin", "off", "--cores", "0"]).is_err());
        assert!(parse(&["--max-message-size", "12 parsecs"]).is_err());
        assert!(parse(&["--addr", "localhost"]).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("16KiB").unwrap(), 16 * 1024);
        assert_eq!(parse_size("16k").unwrap(), 16 * 1024);
        assert_eq!(parse_size("3 M").unwrap(), 3 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("7B").unwrap(), 7);
        assert!(parse_size("").is_err());
        assert!(parse_size("1.5M").is_err());
        assert!(parse_size("4T").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn start_errors_are_classified_with_clear_messages() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let args = parse(&["--addr", &format!("127.0.0.1:{port}"), "--workers", "1"]).unwrap();
        let error = args.start(&MetricsEndpoint::new()).unwrap_err();
        assert!(
            matches!(&error, ServeError::Start(message) if message.contains("in use")),
            "{error}"
        );
        let args = parse(&["--addr", "127.0.0.1:0", "--workers", "0"]).unwrap();
        let error = args.start(&MetricsEndpoint::new()).unwrap_err();
        assert!(
            matches!(&error, ServeError::Settings(message) if message.contains("workers")),
            "{error}"
        );
    }

    #[test]
    fn the_report_line_is_key_value() {
        let report = ShutdownReport::default();
        assert_eq!(
            report_line(&report),
            "shutdown: total=0 clean=0 forced=0 abnormal=0 elapsed_ms=0"
        );
    }
}
