//! One server's turn: start it pinned to the server core, drive every
//! workload with the same load generator pinned to the client core, read
//! the server process's CPU time and memory around each, stop it.

use std::time::{Duration, Instant};

use ringws_cli::load::cpu::process_cpu_time;
use ringws_cli::load::{self, LoadConfig, LoadReport, Mode};

use crate::peers::{ServerKind, ServerProcess, Toolchain};
use crate::procfs::{self, ProcessCpu};
use crate::raw_tcp::{self, RawEchoConfig};
use crate::results::{Churn, EchoWorkload, Idle, Latency, Throughput, Turn, ECHO_WORKLOADS};

/// How every turn runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Sending window of each timed workload.
    pub duration: Duration,
    /// Connections of the echo and latency workloads.
    pub connections: usize,
    /// Cycles in progress at once in the churn workload.
    pub churn_concurrency: usize,
    /// The latency workload's rate as a fraction of the server's own echo
    /// 512 B rate in the same turn.
    pub latency_fraction: f64,
    /// Idle connections for the memory reading (0: skip).
    pub idle_connections: usize,
    /// Idle connections opened per second.
    pub idle_ramp: f64,
    /// How long the idle connections stay open once all are up.
    pub idle_hold: Duration,
    /// Warm-up before the first measurement (JIT, buffers, heaps).
    pub warm_up: Duration,
    /// Pause between workloads, so closing connections do not overlap the
    /// next measurement.
    pub settle: Duration,
    /// Bound on connecting, replies after the window, and closing.
    pub timeout: Duration,
    /// A timed workload during which other processes used more than this
    /// share of the two cores (0–1) is run again, up to `max_attempts`
    /// times in all; the least disturbed attempt is kept.
    pub retry_above: f64,
    /// Attempts per timed workload (1: never run again).
    pub max_attempts: u32,
    /// Core of the server process.
    pub server_core: usize,
    /// Core of the load generator's worker.
    pub client_core: usize,
}

fn load_config(settings: &Settings, url: &str, mode: Mode) -> LoadConfig {
    let mut config = LoadConfig::new(url, mode);
    config.workers = Some(1);
    config.cpus = Some(vec![settings.client_core]);
    config.duration = settings.duration;
    config.connections = settings.connections;
    config.timeout = settings.timeout;
    config
}

/// What a workload cost the server, and how busy other processes kept
/// the two cores meanwhile.
#[derive(Debug, Clone, Copy)]
struct Costs {
    server: ProcessCpu,
    /// Share of the two cores' time (0–1) spent running tasks that were
    /// neither the server nor this harness (other people's jobs).
    foreign_share: f64,
}

/// Runs `work` and returns its result with the server's CPU time spent
/// meanwhile and the other processes' share of the two cores; fails if the
/// server died.
fn with_server_cpu<T>(
    server: &mut ServerProcess,
    settings: &Settings,
    work: impl FnOnce() -> Result<T, String>,
) -> Result<(T, Costs), String> {
    let cores = [settings.server_core, settings.client_core];
    let read = |pid| procfs::process_cpu(pid).map_err(|e| format!("server CPU: {e}"));
    let machine = || procfs::cpus_task_time(&cores).unwrap_or_default();
    let own = || process_cpu_time().unwrap_or_default().total();
    let (machine_before, own_before) = (machine(), own());
    let started = Instant::now();
    let before = read(server.pid)?;
    let result = work()?;
    let after = read(server.pid)?;
    let wall = started.elapsed();
    let (machine_after, own_after) = (machine(), own());
    server.check_running()?;
    let server_cpu = after.since(before);
    let ours = server_cpu.total() + own_after.saturating_sub(own_before);
    let foreign = machine_after
        .saturating_sub(machine_before)
        .saturating_sub(ours);
    let capacity = wall.as_secs_f64() * cores.len() as f64;
    Ok((
        result,
        Costs {
            server: server_cpu,
            foreign_share: if capacity > 0.0 {
                (foreign.as_secs_f64() / capacity).min(1.0)
            } else {
                0.0
            },
        },
    ))
}

/// A measurement that knows how disturbed it was.
trait Sample {
    fn foreign_share(&self) -> f64;
    fn set_attempts(&mut self, attempts: u32);
}

macro_rules! sample {
    ($($kind:ty),*) => {$(
        impl Sample for $kind {
            fn foreign_share(&self) -> f64 {
                self.foreign_cpu_share
            }
            fn set_attempts(&mut self, attempts: u32) {
                self.attempts = attempts;
            }
        }
    )*};
}

sample!(Throughput, Latency, Churn);

/// Runs a timed workload; while other processes took more than
/// `retry_above` of the two cores, runs it again (at most `max_attempts`
/// in all) and keeps the least disturbed attempt. The choice depends only
/// on the other processes' CPU time, never on the result.
fn least_disturbed<S: Sample>(
    settings: &Settings,
    progress: &mut dyn FnMut(&str),
    mut run: impl FnMut() -> Result<S, String>,
) -> Result<S, String> {
    let mut best = run()?;
    let mut attempts = 1;
    while attempts < settings.max_attempts && best.foreign_share() > settings.retry_above {
        progress(&format!(
            "  other processes took {:.0} % of the two cores: once more",
            best.foreign_share() * 100.0
        ));
        std::thread::sleep(settings.settle);
        attempts += 1;
        match run() {
            Ok(next) if next.foreign_share() < best.foreign_share() => best = next,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    best.set_attempts(attempts);
    Ok(best)
}

/// A progress line with a workload's headline figures.
fn echo_line(result: &Throughput) -> String {
    format!(
        "  {:.1} k msg/s, server {:.0} ns/msg, other processes {:.0} % of the two cores",
        result.messages_per_sec / 1e3,
        result.server_cpu_per_message_ns,
        result.foreign_cpu_share * 100.0
    )
}

fn run_load(config: &LoadConfig) -> Result<LoadReport, String> {
    load::run(config).map_err(|error| error.to_string())
}

fn per(total: Duration, count: u64) -> f64 {
    if count > 0 {
        total.as_nanos() as f64 / count as f64
    } else {
        0.0
    }
}

fn client_cpu(report: &LoadReport) -> Duration {
    Duration::from_secs_f64((report.cpu.user_secs + report.cpu.system_secs).max(0.0))
}

/// Runs one turn of `kind`; problems are recorded in the turn, not fatal.
pub fn run_turn(
    kind: ServerKind,
    tools: &Toolchain,
    settings: &Settings,
    round: usize,
    progress: &mut dyn FnMut(&str),
) -> Turn {
    let mut turn = Turn::new(kind, round);
    let mut server = match ServerProcess::start(kind, tools, settings.server_core) {
        Ok(server) => server,
        Err(error) => {
            turn.failures.push(format!("start: {error}"));
            return turn;
        }
    };
    if kind.speaks_websocket() {
        websocket_turn(&mut server, settings, &mut turn, progress);
    } else {
        raw_turn(&mut server, settings, &mut turn, progress);
    }
    drop(server);
    turn
}

fn websocket_turn(
    server: &mut ServerProcess,
    settings: &Settings,
    turn: &mut Turn,
    progress: &mut dyn FnMut(&str),
) {
    let url = server.url();
    // Warm-up: small echoes on 10 connections let a JIT (Node) compile the
    // echo path and cycle ringws's receive buffers before anything counts,
    // while leaving little freed heap behind for the idle connections to
    // reuse (large messages would, and hide their memory).
    let mut warm_up = load_config(settings, &url, Mode::Echo);
    warm_up.connections = 10;
    warm_up.payload_size = 20;
    warm_up.duration = settings.warm_up;
    if let Err(error) = run_load(&warm_up) {
        turn.failures.push(format!("warm-up: {error}"));
        return;
    }
    std::thread::sleep(settings.settle * 2);

    if settings.idle_connections > 0 {
        progress(&format!("idle, {} connections", settings.idle_connections));
        match idle(server, settings, &url) {
            Ok(idle) => turn.idle = Some(idle),
            Err(error) => turn.failures.push(format!("idle: {error}")),
        }
        std::thread::sleep(settings.settle);
    }

    for workload in ECHO_WORKLOADS {
        progress(workload.label);
        let attempt = least_disturbed(settings, progress, || {
            echo(server, settings, &url, workload)
        });
        match attempt {
            Ok(result) => {
                progress(&echo_line(&result));
                turn.throughput.push(result);
            }
            Err(error) => turn.failures.push(format!("{}: {error}", workload.key)),
        }
        std::thread::sleep(settings.settle);
    }

    if let Some(echo_512) = turn.echo("echo-512").filter(|t| t.messages_per_sec > 0.0) {
        let rate = (echo_512.messages_per_sec * settings.latency_fraction)
            .max(100.0)
            .round();
        progress(&format!("latency at {rate:.0} msg/s"));
        let attempt = least_disturbed(settings, progress, || latency(server, settings, &url, rate));
        match attempt {
            Ok(result) => turn.latency = Some(result),
            Err(error) => turn.failures.push(format!("latency: {error}")),
        }
        std::thread::sleep(settings.settle);
    }

    progress("churn");
    let attempt = least_disturbed(settings, progress, || churn(server, settings, &url));
    match attempt {
        Ok(result) => turn.churn = Some(result),
        Err(error) => turn.failures.push(format!("churn: {error}")),
    }
}

fn echo(
    server: &mut ServerProcess,
    settings: &Settings,
    url: &str,
    workload: EchoWorkload,
) -> Result<Throughput, String> {
    let mut config = load_config(settings, url, Mode::Echo);
    config.payload_size = workload.payload;
    config.pipeline = workload.pipeline;
    let (report, costs) = with_server_cpu(server, settings, || run_load(&config))?;
    let echoes = report.messages.received;
    Ok(Throughput {
        workload: workload.key.to_owned(),
        payload_size: workload.payload,
        pipeline: workload.pipeline,
        connections: config.connections,
        messages_per_sec: report.messages.per_sec,
        echoes,
        server_user_secs: costs.server.user.as_secs_f64(),
        server_system_secs: costs.server.system.as_secs_f64(),
        server_cpu_per_message_ns: per(costs.server.total(), echoes),
        client_cpu_per_message_ns: per(client_cpu(&report), echoes),
        errors: report.errors.total,
        foreign_cpu_share: costs.foreign_share,
        attempts: 1,
    })
}

fn latency(
    server: &mut ServerProcess,
    settings: &Settings,
    url: &str,
    rate: f64,
) -> Result<Latency, String> {
    let mut config = load_config(settings, url, Mode::Rate);
    config.payload_size = 512;
    config.rate = Some(rate);
    let (report, costs) = with_server_cpu(server, settings, || run_load(&config))?;
    let message = report.latency.message;
    Ok(Latency {
        rate,
        rate_fraction: settings.latency_fraction,
        achieved_per_sec: report.messages.per_sec,
        count: message.map_or(0, |m| m.count),
        p50_us: message.map_or(0.0, |m| m.p50_us),
        p99_us: message.map_or(0.0, |m| m.p99_us),
        p99_9_us: message.map_or(0.0, |m| m.p99_9_us),
        max_us: message.map_or(0.0, |m| m.max_us),
        server_cpu_per_message_ns: per(costs.server.total(), report.messages.received),
        behind_schedule: report.messages.behind_schedule,
        errors: report.errors.total,
        foreign_cpu_share: costs.foreign_share,
        attempts: 1,
    })
}

fn churn(server: &mut ServerProcess, settings: &Settings, url: &str) -> Result<Churn, String> {
    let mut config = load_config(settings, url, Mode::Churn);
    config.concurrency = settings.churn_concurrency;
    config.payload_size = 32;
    let (report, costs) = with_server_cpu(server, settings, || run_load(&config))?;
    let cycles = report.cycles.as_ref().map_or(0, |c| c.completed);
    Ok(Churn {
        concurrency: settings.churn_concurrency,
        cycles,
        cycles_per_sec: report.cycles.as_ref().map_or(0.0, |c| c.per_sec),
        server_cpu_per_cycle_us: per(costs.server.total(), cycles) / 1000.0,
        errors: report.errors.total,
        foreign_cpu_share: costs.foreign_share,
        attempts: 1,
    })
}

/// Opens the idle connections (`ringws load --mode hold`, ramped) and reads
/// the server's resident memory once they are all open (or, if some fail,
/// once the count stops growing after the ramp).
fn idle(server: &mut ServerProcess, settings: &Settings, url: &str) -> Result<Idle, String> {
    let wanted = settings.idle_connections;
    let read = |pid| procfs::resident(pid).map_err(|e| format!("server memory: {e}"));
    let before = read(server.pid)?;
    let mut config = load_config(settings, url, Mode::Hold);
    config.connections = wanted;
    config.ramp = Some(settings.idle_ramp);
    config.duration = settings.idle_hold;
    config.timeout = settings.timeout.max(Duration::from_secs(15));
    let ramp_time = Duration::from_secs_f64(wanted as f64 / settings.idle_ramp);
    let pid = server.pid;
    let started = Instant::now();
    let mut reading: Option<Result<(procfs::Resident, u64), String>> = None;
    let mut last_open = 0;
    load::run_with_progress(&config, |p| {
        if reading.is_some() {
            return;
        }
        let all_open = p.open as usize >= wanted;
        let stalled = started.elapsed() > ramp_time + Duration::from_secs(2)
            && p.open > 0
            && p.open == last_open;
        last_open = p.open;
        if all_open || stalled {
            // Let the last handshakes' allocations settle.
            std::thread::sleep(Duration::from_millis(300));
            reading = Some(read(pid).map(|after| (after, p.open)));
        }
    })
    .map_err(|error| error.to_string())?;
    server.check_running()?;
    let (after, open) = reading.ok_or("the connections did not open in time")??;
    let per_connection = |after: u64, before: u64| (after as f64 - before as f64) / open as f64;
    Ok(Idle {
        requested: wanted,
        open,
        vm_rss_before: before.vm_rss,
        vm_rss_after: after.vm_rss,
        rss_anon_before: before.rss_anon,
        rss_anon_after: after.rss_anon,
        bytes_per_connection: per_connection(after.vm_rss, before.vm_rss),
        anon_bytes_per_connection: per_connection(after.rss_anon, before.rss_anon),
    })
}

fn raw_turn(
    server: &mut ServerProcess,
    settings: &Settings,
    turn: &mut Turn,
    progress: &mut dyn FnMut(&str),
) {
    for workload in ECHO_WORKLOADS {
        progress(workload.label);
        let attempt = least_disturbed(settings, progress, || raw_echo(server, settings, workload));
        match attempt {
            Ok(result) => {
                progress(&echo_line(&result));
                turn.throughput.push(result);
            }
            Err(error) => turn.failures.push(format!("{}: {error}", workload.key)),
        }
        std::thread::sleep(settings.settle);
    }
}

fn raw_echo(
    server: &mut ServerProcess,
    settings: &Settings,
    workload: EchoWorkload,
) -> Result<Throughput, String> {
    let config = RawEchoConfig {
        target: server.addr(),
        connections: settings.connections,
        message_len: raw_tcp::client_frame_len(workload.payload),
        pipeline: workload.pipeline,
        duration: settings.duration,
        timeout: settings.timeout,
        core: Some(settings.client_core),
    };
    let (report, costs) = with_server_cpu(server, settings, || raw_tcp::run(&config))?;
    Ok(Throughput {
        workload: workload.key.to_owned(),
        payload_size: workload.payload,
        pipeline: workload.pipeline,
        connections: settings.connections,
        messages_per_sec: report.per_sec(),
        echoes: report.echoes,
        server_user_secs: costs.server.user.as_secs_f64(),
        server_system_secs: costs.server.system.as_secs_f64(),
        server_cpu_per_message_ns: per(costs.server.total(), report.echoes),
        client_cpu_per_message_ns: per(report.cpu.total(), report.echoes),
        errors: report.errors(),
        foreign_cpu_share: costs.foreign_share,
        attempts: 1,
    })
}
