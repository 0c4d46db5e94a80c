//! # `ringws bench`
//!
//! One command, one table: a ringws echo server (one worker, pinned to
//! core 0) and the ringws load generator (one worker, pinned to core 1) in
//! this process, on loopback, measured workload by workload:
//!
//! 1. user-space bytes per idle connection (first: see below);
//! 2. echo throughput at 20 B, 512 B and 16 KiB, 100 connections, one
//!    message in flight each;
//! 3. pipelined echo: 512 B, 16 messages in flight per connection;
//! 4. latency (p50/p99/p99.9) at a fixed open-loop rate: half of what the
//!    512 B echo reached, so the server is far from saturated;
//! 5. churn: connect, handshake, one echo, close, as fast as 50 at a time
//!    allow.
//!
//! ## How CPU is counted
//!
//! The server's CPU time is its worker thread's run time from the thread's
//! CPU-time clock (`clock_gettime`, nanoseconds), split into user and
//! system time in the proportion of `/proc/self/task/<tid>/stat`'s tick
//! counts, read before and after each workload; the thread id comes from
//! the handler factory, which runs on the worker. The
//! generator's is its worker's `getrusage(RUSAGE_THREAD)` (the
//! [`LoadReport`]'s `cpu`). Both are divided by
//! the same count, echoed messages (one in and one out), so the two are
//! comparable: "server ns/msg" is what the server spends to receive a
//! message and send it back; "generator ns/msg" what the generator spends
//! to send one and receive (and check) its echo. System time counts: on
//! loopback the sending thread also runs the kernel's TCP receive path of
//! the other side. "msgs/s per server core" is echoed messages divided by
//! the server's CPU seconds: what one fully busy core would sustain.
//! "srv busy" is the server's CPU time over the wall time of the whole load
//! run (connecting and draining included, so slightly under the sending
//! window's share): how close the generator's one core came to keeping the
//! server's one core saturated.
//!
//! ## How idle memory is measured
//!
//! It is measured before the other workloads, whose load generator runs
//! in this process and leaves the heap fragmented: a server started after
//! them spreads its connections over pages they freed, and the figure
//! came out 1.7–2.5× what the same server holds in a process of its own.
//! A fresh server (one worker, on the server core) holds the idle
//! connections, so no earlier workload has already grown its tables; their
//! client is a separate process (`ringws load --mode hold`, pinned to the
//! client core), so this process's memory grows with the server's side
//! only. A 0.3 s warm-up on one connection (16 KiB echoes) first cycles
//! through every receive buffer the ring offers (should the ring offer
//! more while the connections open, the page each handshake is received
//! into would count). For the measurement glibc is told to give
//! freed memory back at once (`M_TRIM_THRESHOLD` 0, a fixed
//! `M_MMAP_THRESHOLD`): otherwise the top of a thread's heap, which
//! `malloc_trim` does not release, keeps whatever earlier workloads freed
//! and gives it back at some later free, during the measurement. Then the
//! allocator's free pages are returned (`malloc_trim(0)`) and the anonymous
//! resident memory is read (`/proc/self/smaps_rollup`, counted exactly from
//! the page tables; the binary's code pages faulting in do not count; the
//! server's receive-buffer page release is off, as by default, so the
//! warm-up's pages stay in the baseline instead of leaving during the
//! measurement);
//! after the server reports every connection open it is read again, and
//! once more after another trim, which shows how much of the growth is
//! freed handshake memory the allocator keeps. Growth ÷ connections is the
//! figure. Kernel socket buffers are not user-space memory and are not in
//! it.

pub mod cli;
pub mod probe;
mod table;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ringws::{Pinning, Server, ServerHandle};
use serde::{Deserialize, Serialize};

use crate::load::{self, CpuTime, LoadConfig, LoadError, LoadReport, Mode};
use crate::serve::Echo;

/// What to run. [`BenchConfig::standard`] is `ringws bench`;
/// [`BenchConfig::quick`] is `ringws bench --quick`, for tests.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchConfig {
    /// Sending window of each timed workload.
    pub duration: Duration,
    /// Connections of the echo, pipelined and latency workloads.
    pub connections: usize,
    /// Messages in flight per connection in the pipelined workload.
    pub pipeline: usize,
    /// Cycles in progress at once in the churn workload.
    pub churn_concurrency: usize,
    /// The latency workload's rate as a fraction of the 512 B echo rate.
    pub latency_rate_fraction: f64,
    /// Idle connections opened for the memory figure.
    pub idle_connections: usize,
    /// Core of the server's worker (`None`: not pinned).
    pub server_core: Option<usize>,
    /// Core of the generator's worker (`None`: not pinned).
    pub client_core: Option<usize>,
    /// The `ringws` binary that runs the idle connections' client.
    pub ringws_exe: PathBuf,
    /// Whether this is the quick variant (recorded in the report).
    pub quick: bool,
}

impl BenchConfig {
    /// `ringws bench`: 3 s per workload, 100 connections, 10,000 idle
    /// connections; server on core 0 and generator on core 1 when the
    /// machine has two cores or more.
    pub fn standard() -> BenchConfig {
        let two_cores = std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2;
        BenchConfig {
            duration: Duration::from_secs(3),
            connections: 100,
            pipeline: 16,
            churn_concurrency: 50,
            latency_rate_fraction: 0.5,
            idle_connections: 10_000,
            server_core: two_cores.then_some(0),
            client_core: two_cores.then_some(1),
            ringws_exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ringws")),
            quick: false,
        }
    }

    /// `ringws bench --quick`: the same workloads, 0.5 s each, 500 idle
    /// connections.
    pub fn quick() -> BenchConfig {
        BenchConfig {
            duration: Duration::from_millis(500),
            idle_connections: 500,
            quick: true,
            ..BenchConfig::standard()
        }
    }
}

/// Why the benchmark could not run.
#[derive(Debug)]
#[non_exhaustive]
pub enum BenchError {
    /// The server did not start (io_uring unavailable, ...).
    Server(String),
    /// The load generator could not run.
    Load(LoadError),
    /// The server's thread could not be found or measured, or the idle
    /// connections' client could not run.
    Measure(String),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Server(error) => write!(f, "the server did not start: {error}"),
            BenchError::Load(error) => write!(f, "the load generator failed: {error}"),
            BenchError::Measure(error) => write!(f, "measurement failed: {error}"),
        }
    }
}

impl std::error::Error for BenchError {}

/// CPU spent on a workload by one side.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CpuCost {
    /// User time, seconds.
    pub user_secs: f64,
    /// System time, seconds.
    pub system_secs: f64,
    /// The count the time is divided by (echoed messages, or cycles).
    pub count: u64,
    /// (user + system) ÷ count, nanoseconds.
    pub per_unit_ns: f64,
}

impl CpuCost {
    fn of(cpu: CpuTime, count: u64) -> CpuCost {
        CpuCost {
            user_secs: cpu.user.as_secs_f64(),
            system_secs: cpu.system.as_secs_f64(),
            count,
            per_unit_ns: if count > 0 {
                cpu.total().as_nanos() as f64 / count as f64
            } else {
                0.0
            },
        }
    }

    /// User plus system seconds.
    pub fn total_secs(&self) -> f64 {
        self.user_secs + self.system_secs
    }
}

/// A closed-loop echo workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Short name, e.g. `echo 512 B`.
    pub name: String,
    /// Payload bytes per message (binary).
    pub payload_size: usize,
    /// Connections.
    pub connections: usize,
    /// Messages in flight per connection.
    pub pipeline: usize,
    /// Echoes the generator received per second from the start of its
    /// sending window to the last echo (`LoadReport::rate_span_secs`).
    pub messages_per_sec: f64,
    /// Payload megabytes (10⁶ B) echoed per second, one direction.
    pub megabytes_per_sec: f64,
    /// Messages the server echoed per second of its CPU time.
    pub messages_per_sec_per_server_core: f64,
    /// Share of the run's wall time (connecting and draining included) the
    /// server's worker thread spent on a CPU: near 1 when the generator's
    /// one core keeps the server's one core saturated.
    #[serde(default)]
    pub server_busy: f64,
    /// The server's CPU, per echoed message.
    pub server_cpu: CpuCost,
    /// The generator's CPU, per echoed message.
    pub generator_cpu: CpuCost,
    /// Errors the generator counted (0 expected).
    pub errors: u64,
}

/// Latency at a fixed open-loop rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Payload bytes per message.
    pub payload_size: usize,
    /// Connections.
    pub connections: usize,
    /// The rate asked for, messages/s.
    pub rate: f64,
    /// The rate as a fraction of the 512 B echo rate.
    pub rate_fraction: f64,
    /// Echoes received per second, to the last echo: below `rate` when the
    /// server fell behind and owed messages went out after the window.
    pub achieved_per_sec: f64,
    /// Messages measured.
    pub count: u64,
    /// Latency percentiles from the intended send time, microseconds.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p99_9_us: f64,
    /// Largest.
    pub max_us: f64,
    /// The server's CPU, per echoed message.
    pub server_cpu: CpuCost,
    /// The generator's CPU, per echoed message.
    pub generator_cpu: CpuCost,
    /// Errors the generator counted (0 expected).
    pub errors: u64,
}

/// Connection churn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Churn {
    /// Cycles in progress at once.
    pub concurrency: usize,
    /// Echoes per cycle.
    pub messages_per_cycle: u32,
    /// Cycles completed.
    pub cycles: u64,
    /// Cycles per second.
    pub cycles_per_sec: f64,
    /// The server's CPU, per cycle.
    pub server_cpu: CpuCost,
    /// The generator's CPU, per cycle.
    pub generator_cpu: CpuCost,
    /// Errors the generator counted (0 expected).
    pub errors: u64,
}

/// Memory held per idle connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleMemory {
    /// Connections asked for.
    pub connections_requested: usize,
    /// Connections the server had open at the measurement.
    pub connections_open: u64,
    /// Anonymous resident bytes before the client started (after
    /// `malloc_trim`).
    pub rss_anon_before_bytes: u64,
    /// Anonymous resident bytes with the connections open.
    pub rss_anon_after_bytes: u64,
    /// Anonymous resident bytes with the connections open, after
    /// `malloc_trim`.
    pub rss_anon_after_trim_bytes: u64,
    /// (after − before) ÷ open connections.
    pub bytes_per_connection: f64,
    /// (after trim − before) ÷ open connections.
    pub bytes_per_connection_after_trim: f64,
    /// The engine's per-connection structures by their sizes (reactor
    /// slot, session, liveness cell, keepalive timer), for comparison.
    pub structural_bytes_per_connection: usize,
}

/// The machine and the conditions of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model.
    pub cpu_model: String,
    /// Cores available to this process.
    pub cpus: usize,
    /// Kernel release.
    pub kernel: String,
    /// Load averages (1, 5, 15 min) when the run started.
    pub load_average_start: Option<[f64; 3]>,
    /// Load averages when it ended.
    pub load_average_end: Option<[f64; 3]>,
    /// Start, seconds since the Unix epoch.
    pub started_unix_secs: u64,
}

/// Everything `ringws bench` measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// Where and when.
    pub machine: Machine,
    /// The server's core (`None`: not pinned).
    pub server_core: Option<usize>,
    /// The generator's core (`None`: not pinned).
    pub client_core: Option<usize>,
    /// Sending window of each timed workload, seconds.
    pub duration_secs: f64,
    /// `--quick`.
    pub quick: bool,
    /// Echo at 20 B, 512 B, 16 KiB, then pipelined 512 B.
    pub throughput: Vec<Throughput>,
    /// Latency at a fixed rate.
    pub latency: Latency,
    /// Connection churn.
    pub churn: Churn,
    /// Bytes per idle connection.
    pub idle_memory: IdleMemory,
    /// Whether the generator's CPU per message was at most the server's in
    /// every throughput workload (so the generator is no heavier than what
    /// it measures).
    pub generator_cpu_within_server: bool,
    /// Wall time of the whole run, seconds.
    pub elapsed_secs: f64,
}

/// The running server and how to read its worker's CPU.
struct BenchServer {
    server: ServerHandle,
    url: String,
    worker_tid: i32,
}

impl BenchServer {
    fn start(core: Option<usize>) -> Result<BenchServer, BenchError> {
        let tids = Arc::new(Mutex::new(Vec::new()));
        let factory_tids = tids.clone();
        let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
        let server = Server::bind(addr)
            .workers(1)
            .pinning(match core {
                Some(core) => Pinning::Cores(vec![core]),
                None => Pinning::Off,
            })
            .start(move |_worker| {
                // The factory runs on the worker thread itself.
                factory_tids
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(probe::current_tid());
                Echo
            })
            .map_err(|error| BenchError::Server(error.to_string()))?;
        let url = format!("ws://{}/", server.local_addr());
        // The factory may still be running on the new thread.
        let deadline = Instant::now() + Duration::from_secs(5);
        let worker_tid = loop {
            if let Some(&tid) = tids.lock().unwrap_or_else(PoisonError::into_inner).first() {
                break tid;
            }
            if Instant::now() > deadline {
                server.shutdown(Duration::ZERO);
                return Err(BenchError::Measure(
                    "the server's worker did not start".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        Ok(BenchServer {
            server,
            url,
            worker_tid,
        })
    }

    fn cpu(&self) -> Result<probe::ThreadCpuSample, BenchError> {
        probe::thread_cpu_sample(self.worker_tid).map_err(|error| {
            BenchError::Measure(format!("reading the server thread's CPU time: {error}"))
        })
    }

    fn messages_in(&self) -> u64 {
        self.server.stats().total.messages_in
    }

    /// Waits (bounded) until the previous workload's connections are gone,
    /// so workloads do not overlap.
    fn wait_idle(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.server.stats().total.connections() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// What one generator run cost on both sides.
struct Measured {
    report: LoadReport,
    server_cpu: CpuTime,
    server_messages: u64,
    /// Wall time of the whole load run the server's CPU was read across.
    wall: Duration,
}

impl BenchConfig {
    fn load_config(&self, url: &str, mode: Mode) -> LoadConfig {
        let mut config = LoadConfig::new(url, mode);
        config.workers = Some(1);
        config.cpus = self.client_core.map(|core| vec![core]);
        config.duration = self.duration;
        config.connections = self.connections;
        config
    }
}

fn measure(server: &BenchServer, config: &LoadConfig) -> Result<Measured, BenchError> {
    server.wait_idle(Duration::from_secs(5));
    let cpu_before = server.cpu()?;
    let messages_before = server.messages_in();
    let started = Instant::now();
    let report = load::run(config).map_err(BenchError::Load)?;
    let cpu_after = server.cpu()?;
    Ok(Measured {
        report,
        server_cpu: cpu_after.since(&cpu_before),
        server_messages: server.messages_in().saturating_sub(messages_before),
        wall: started.elapsed(),
    })
}

fn generator_cpu(report: &LoadReport) -> CpuTime {
    CpuTime {
        user: Duration::from_secs_f64(report.cpu.user_secs.max(0.0)),
        system: Duration::from_secs_f64(report.cpu.system_secs.max(0.0)),
    }
}

fn throughput(name: String, config: &LoadConfig, measured: &Measured) -> Throughput {
    let report = &measured.report;
    let server_secs = measured.server_cpu.total().as_secs_f64();
    Throughput {
        name,
        payload_size: config.payload_size,
        connections: config.connections,
        pipeline: config.pipeline,
        messages_per_sec: report.messages.per_sec,
        megabytes_per_sec: report.messages.bytes_per_sec / 1e6,
        messages_per_sec_per_server_core: if server_secs > 0.0 {
            measured.server_messages as f64 / server_secs
        } else {
            0.0
        },
        server_busy: server_secs / measured.wall.as_secs_f64().max(f64::MIN_POSITIVE),
        server_cpu: CpuCost::of(measured.server_cpu, measured.server_messages),
        generator_cpu: CpuCost::of(generator_cpu(report), report.messages.received),
        errors: report.errors.total,
    }
}

/// `20 B`, `512 B`, `16 KiB`.
pub fn size_name(bytes: usize) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

/// Runs every workload and reports; `progress` gets a line as each starts.
pub fn run(
    config: &BenchConfig,
    mut progress: impl FnMut(&str),
) -> Result<BenchReport, BenchError> {
    let _ = crate::serve::raise_fd_limit();
    let started = Instant::now();
    let machine_start = Machine {
        cpu_model: probe::cpu_model(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel: probe::kernel_release(),
        load_average_start: probe::load_average(),
        load_average_end: None,
        started_unix_secs: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs()),
    };
    let server = BenchServer::start(config.server_core)?;
    let result = run_workloads(config, &server, &mut progress);
    let report = server.server.shutdown(Duration::from_secs(2));
    if report.forced > 0 {
        progress(&format!(
            "note: {} connection(s) were still open at the end",
            report.forced
        ));
    }
    let (throughput, latency, churn, idle_memory) = result?;
    let generator_cpu_within_server = throughput
        .iter()
        .all(|t| t.generator_cpu.per_unit_ns <= t.server_cpu.per_unit_ns);
    Ok(BenchReport {
        machine: Machine {
            load_average_end: probe::load_average(),
            ..machine_start
        },
        server_core: config.server_core,
        client_core: config.client_core,
        duration_secs: config.duration.as_secs_f64(),
        quick: config.quick,
        throughput,
        latency,
        churn,
        idle_memory,
        generator_cpu_within_server,
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

type Workloads = (Vec<Throughput>, Latency, Churn, IdleMemory);

fn run_workloads(
    config: &BenchConfig,
    server: &BenchServer,
    progress: &mut impl FnMut(&str),
) -> Result<Workloads, BenchError> {
    let steps = 7;
    // Idle memory first, before the generator fragments this process's
    // heap (module docs, "How idle memory is measured").
    progress(&format!(
        "[1/{steps}] memory per idle connection, {} connections",
        config.idle_connections
    ));
    let idle_memory = idle_memory(config)?;
    let mut throughput_results = Vec::new();
    for (step, (payload_size, pipeline)) in
        [(20, 1), (512, 1), (16 * 1024, 1), (512, config.pipeline)]
            .into_iter()
            .enumerate()
    {
        let name = if pipeline > 1 {
            format!("pipelined {} ×{pipeline}", size_name(payload_size))
        } else {
            format!("echo {}", size_name(payload_size))
        };
        progress(&format!("[{}/{steps}] {name}", step + 2));
        let mut load_config = config.load_config(&server.url, Mode::Echo);
        load_config.payload_size = payload_size;
        load_config.pipeline = pipeline;
        let measured = measure(server, &load_config)?;
        throughput_results.push(throughput(name, &load_config, &measured));
    }

    let echo_512 = throughput_results[1].messages_per_sec;
    let rate = (echo_512 * config.latency_rate_fraction).max(100.0).round();
    progress(&format!(
        "[6/{steps}] latency at {rate:.0} msg/s ({:.0} % of echo 512 B)",
        config.latency_rate_fraction * 100.0
    ));
    let mut load_config = config.load_config(&server.url, Mode::Rate);
    load_config.payload_size = 512;
    load_config.rate = Some(rate);
    let measured = measure(server, &load_config)?;
    let message = measured.report.latency.message;
    let report = &measured.report;
    let latency = Latency {
        payload_size: 512,
        connections: load_config.connections,
        rate,
        rate_fraction: config.latency_rate_fraction,
        achieved_per_sec: report.messages.per_sec,
        count: message.map_or(0, |m| m.count),
        p50_us: message.map_or(0.0, |m| m.p50_us),
        p99_us: message.map_or(0.0, |m| m.p99_us),
        p99_9_us: message.map_or(0.0, |m| m.p99_9_us),
        max_us: message.map_or(0.0, |m| m.max_us),
        server_cpu: CpuCost::of(measured.server_cpu, measured.server_messages),
        generator_cpu: CpuCost::of(generator_cpu(report), report.messages.received),
        errors: report.errors.total,
    };

    progress(&format!(
        "[7/{steps}] churn, {} cycles at a time",
        config.churn_concurrency
    ));
    let mut load_config = config.load_config(&server.url, Mode::Churn);
    load_config.concurrency = config.churn_concurrency;
    load_config.payload_size = 32;
    let measured = measure(server, &load_config)?;
    let report = &measured.report;
    let cycles = report.cycles.as_ref().map_or(0, |c| c.completed);
    let churn = Churn {
        concurrency: config.churn_concurrency,
        messages_per_cycle: load_config.messages_per_cycle,
        cycles,
        cycles_per_sec: report.cycles.as_ref().map_or(0.0, |c| c.per_sec),
        server_cpu: CpuCost::of(measured.server_cpu, cycles),
        generator_cpu: CpuCost::of(generator_cpu(report), cycles),
        errors: report.errors.total,
    };

    Ok((throughput_results, latency, churn, idle_memory))
}

/// Kills the idle connections' client (our own child) when dropped.
struct ClientProcess(Child);

impl Drop for ClientProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn idle_memory(config: &BenchConfig) -> Result<IdleMemory, BenchError> {
    let _exact = probe::ExactAllocatorAccounting::begin();
    // A fresh server, so no earlier workload has already grown (and
    // touched) its connection tables: every idle connection pays its own way.
    let server = BenchServer::start(config.server_core)?;
    let result = measure_idle(config, &server);
    server.server.shutdown(Duration::from_secs(2));
    result
}

/// Idle connections opened per second (`ringws load --ramp`).
const IDLE_RAMP_PER_SEC: &str = "5000";

fn measure_idle(config: &BenchConfig, server: &BenchServer) -> Result<IdleMemory, BenchError> {
    let wanted = config.idle_connections;
    // Warm-up on one connection: 16 KiB echoes cycle through every receive
    // buffer the ring offers, so pages the buffers have not used yet do
    // not fault in during the measurement and count as connection memory.
    let mut warm_up = config.load_config(&server.url, Mode::Echo);
    warm_up.connections = 1;
    warm_up.pipeline = 16;
    warm_up.payload_size = 16 * 1024;
    warm_up.duration = Duration::from_millis(300);
    load::run(&warm_up).map_err(BenchError::Load)?;
    server.wait_idle(Duration::from_secs(5));
    let rss = || {
        probe::anonymous_resident_bytes()
            .map_err(|error| BenchError::Measure(format!("reading the resident set: {error}")))
    };
    probe::release_free_memory();
    let rss_before = rss()?;
    let mut command = Command::new(&config.ringws_exe);
    command.args([
        "load",
        &server.url,
        "--mode",
        "hold",
        "--connections",
        &wanted.to_string(),
        // Opened at a steady 5,000 per second, as the side-by-side
        // harness does: an unpaced burst of handshakes runs the receive
        // ring dry turn after turn, and each buffer it then offers keeps a
        // resident page that is the burst's cost, not the connections'.
        "--ramp",
        IDLE_RAMP_PER_SEC,
        "--workers",
        "1",
        "--duration",
        "120s",
        "--timeout",
        "10s",
        "--quiet",
    ]);
    if let Some(core) = config.client_core {
        command.args(["--cpus", &core.to_string()]);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| {
            BenchError::Measure(format!(
                "starting {} for the idle connections: {error}",
                config.ringws_exe.display()
            ))
        })?;
    let mut client = ClientProcess(child);
    // 5 s plus 1 ms per connection covers the ramp (0.2 ms per connection)
    // and the loopback handshakes.
    let deadline = Instant::now() + Duration::from_secs(5) + Duration::from_millis(wanted as u64);
    let mut open = 0;
    loop {
        let stats = server.server.stats().total;
        open = open.max(stats.open);
        if stats.open >= wanted as u64 || Instant::now() > deadline {
            break;
        }
        if let Ok(Some(status)) = client.0.try_wait() {
            return Err(BenchError::Measure(format!(
                "the idle connections' client exited early ({status}) with {} open",
                stats.open
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Let the last handshakes' completions settle.
    std::thread::sleep(Duration::from_millis(100));
    let open = server.server.stats().total.open.max(open);
    let rss_after = rss()?;
    probe::release_free_memory();
    let rss_after_trim = rss()?;
    drop(client);
    server.wait_idle(Duration::from_secs(10));
    if open == 0 {
        return Err(BenchError::Measure("no idle connection opened".into()));
    }
    let per_connection = |after: u64| (after as f64 - rss_before as f64) / open as f64;
    Ok(IdleMemory {
        connections_requested: wanted,
        connections_open: open,
        rss_anon_before_bytes: rss_before,
        rss_anon_after_bytes: rss_after,
        rss_anon_after_trim_bytes: rss_after_trim,
        bytes_per_connection: per_connection(rss_after),
        bytes_per_connection_after_trim: per_connection(rss_after_trim),
        structural_bytes_per_connection: ringws::memory::REACTOR_SLOT_BYTES
            + ringws::memory::session_bytes::<()>()
            + ringws::memory::LIVENESS_BYTES
            + ringws::memory::keepalive_timer_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_names() {
        assert_eq!(size_name(20), "20 B");
        assert_eq!(size_name(512), "512 B");
        assert_eq!(size_name(16 * 1024), "16 KiB");
        assert_eq!(size_name(1536), "1536 B");
    }

    #[test]
    fn cpu_cost_divides_user_plus_system() {
        let cost = CpuCost::of(
            CpuTime {
                user: Duration::from_millis(300),
                system: Duration::from_millis(700),
            },
            1_000_000,
        );
        assert_eq!(cost.per_unit_ns, 1000.0);
        assert_eq!(cost.total_secs(), 1.0);
        assert_eq!(CpuCost::of(CpuTime::default(), 0).per_unit_ns, 0.0);
    }

    #[test]
    fn quick_is_the_standard_run_shortened() {
        let standard = BenchConfig::standard();
        let quick = BenchConfig::quick();
        assert!(quick.duration < standard.duration);
        assert!(quick.idle_connections < standard.idle_connections);
        assert_eq!(quick.connections, standard.connections);
        assert_eq!(quick.pipeline, 16);
        assert!(quick.quick && !standard.quick);
    }
}
