//! # `compare`: ringws side by side with other WebSocket engines
//!
//! ```text
//! cargo run --release -p ringws-benches --bin compare              # 4 rounds, 10-18 min
//! cargo run --release -p ringws-benches --bin compare -- --quick   # smoke run, < 1 min
//! ```
//!
//! Builds or installs every server (release builds of `ringws` and the
//! reactor's `tcp_echo`; `benches/peers` for fastwebsockets and
//! tokio-tungstenite; `npm ci` for Node `ws`; a `.venv` for Python
//! `websockets`), then runs `--rounds` rounds. In each round every server
//! takes one turn, in the same order (ringws, fastwebsockets,
//! tokio-tungstenite, Node ws, Python websockets, raw TCP echo), so slow
//! drifts in the machine's load spread over all of them. A turn starts the
//! server pinned to `--server-core` with `taskset`, on a free loopback
//! port, and drives it with the same load generator (`ringws load`, run
//! in-process through `ringws_cli::load`, one worker pinned to
//! `--client-core`):
//!
//! 1. warm-up: 20 B echoes on 10 connections (JIT, receive buffers);
//! 2. idle memory: `--idle-connections` held open (ramped), the server's
//!    `VmRSS` (`/proc/<pid>/status`) before and with them all open;
//! 3. closed-loop echo at 20 B, 512 B, 16 KiB, 100 connections, one
//!    message in flight each; pipelined echo at 512 B, 16 in flight;
//! 4. open-loop latency at `--latency-fraction` of the server's own echo
//!    512 B rate in that turn: p50/p99/p99.9 from intended send times;
//! 5. churn: connect, upgrade, one 32 B echo, close, 50 at a time.
//!
//! Around every timed workload the server process's `utime + stime`
//! (`/proc/<pid>/stat`, every thread) is read; divided by echoed messages
//! (or cycles) it is the server's CPU per message. The raw TCP echo speaks
//! no WebSocket, so it gets only the echo workloads, driven by the raw TCP
//! driver in `raw_tcp` that mirrors the WebSocket workload's bytes.
//!
//! The machine may be shared: the harness runs at nice -10 (servers and
//! generator inherit it), measures how much of the two cores other
//! processes took during each timed workload (`/proc/stat` minus the
//! server's and its own CPU time), and runs a workload once more when they
//! took over `--retry-above` (15 %), keeping the less disturbed run.
//!
//! Results: medians over rounds per server, ratios to ringws, written as
//! `compare.json` (every turn raw, the summary, the bars), `compare.md`
//! (the tables) and three SVG charts, in `docs/bench/` (or
//! `<target>/compare-quick/` for `--quick`). `--criterion` also runs the
//! criterion micro-benchmarks (`cargo bench -p ringws-benches`).

mod peers;
mod procfs;
mod raw_tcp;
mod report;
mod results;
mod stats;
mod svg;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use ringws_cli::bench::probe;

use crate::peers::ServerKind;
use crate::report::{Machine, RunRecord, SettingsRecord};
use crate::results::{bar_checks, Summary};
use crate::workloads::Settings;

/// ringws side by side with fastwebsockets, tokio-tungstenite, Node ws,
/// Python websockets and a raw io_uring TCP echo, on one server core.
#[derive(Debug, Parser)]
#[command(name = "compare")]
struct Args {
    /// Rounds; every server takes one turn per round (default 4; --quick: 1).
    #[arg(long)]
    rounds: Option<usize>,
    /// Sending window of each timed workload (default 3s; --quick: 500ms).
    #[arg(long, value_parser = duration)]
    duration: Option<Duration>,
    /// A smoke run: 1 round, 0.5 s workloads, 1,000 idle connections, output
    /// to target/compare-quick (under CARGO_TARGET_DIR when set).
    #[arg(long)]
    quick: bool,
    /// Servers to run, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    servers: Option<Vec<ServerKind>>,
    /// Idle connections for the memory figure (default 10000; --quick: 1000;
    /// 0 skips it).
    #[arg(long)]
    idle_connections: Option<usize>,
    /// Idle connections opened per second.
    #[arg(long, default_value_t = 5000.0)]
    idle_ramp: f64,
    /// Latency rate as a fraction of each server's own echo 512 B rate.
    #[arg(long, default_value_t = 0.5)]
    latency_fraction: f64,
    /// Connections of the echo and latency workloads.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Runs per timed workload: one more while other processes took over
    /// --retry-above of the two cores; the least disturbed run is kept.
    #[arg(long, default_value_t = 2)]
    attempts: u32,
    /// Share of the two cores (0–1) other processes may take before a
    /// workload is run again.
    #[arg(long, default_value_t = 0.15)]
    retry_above: f64,
    /// Core every server is pinned to.
    #[arg(long, default_value_t = 0)]
    server_core: usize,
    /// Core the load generator is pinned to.
    #[arg(long, default_value_t = 1)]
    client_core: usize,
    /// Where to write compare.json, compare.md and the SVGs (default:
    /// docs/bench; --quick: target/compare-quick).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Also run the criterion micro-benchmarks (cargo bench -p ringws-benches).
    #[arg(long)]
    criterion: bool,
}

fn duration(text: &str) -> Result<Duration, String> {
    ringws_cli::load::config::parse_duration(text).map_err(|error| error.to_string())
}

fn workspace_root() -> PathBuf {
    // This package is `benches/` in the workspace.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// Raises the harness's scheduling priority to nice -10 (inherited by the
/// servers it starts and the load generator's threads), so background jobs
/// at normal priority on this shared machine take CPU time from the
/// measurement less. Without the privilege it stays as it is, with a note.
fn raise_priority() -> Option<i32> {
    const NICE: i32 = -10;
    // SAFETY: setpriority has no memory preconditions; `0` is this process.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, NICE) };
    if result == 0 {
        Some(NICE)
    } else {
        eprintln!(
            "compare: cannot raise the priority to nice {NICE} ({}); running at the default",
            std::io::Error::last_os_error()
        );
        None
    }
}

/// Pins the calling process (and the threads it starts from now on) to
/// `core`, so the harness's own threads stay off the server's core.
fn pin_self(core: usize) {
    // SAFETY: an all-zero cpu_set_t is a valid, empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit inside `set`; `core` is bounds-checked
    // by the macro's implementation in the libc crate.
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: `set` is a live cpu_set_t of the size passed.
    let result = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if result != 0 {
        eprintln!(
            "compare: cannot pin the harness to core {core}: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let quick = args.quick;
    // Four rounds: a closed loop on this kind of machine lands in one of two
    // regimes run by run (see docs/benchmarks.md), so more rounds than the
    // usual three, and still at most about 18 minutes on 2 cores when every
    // workload has to run twice.
    let rounds = args.rounds.unwrap_or(if quick { 1 } else { 4 }).max(1);
    let settings = Settings {
        duration: args.duration.unwrap_or(if quick {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(3)
        }),
        connections: args.connections.max(1),
        churn_concurrency: 50,
        latency_fraction: args.latency_fraction,
        idle_connections: args
            .idle_connections
            .unwrap_or(if quick { 1000 } else { 10_000 }),
        idle_ramp: args.idle_ramp.max(1.0),
        idle_hold: if quick {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(4)
        },
        warm_up: if quick {
            Duration::from_millis(200)
        } else {
            Duration::from_millis(500)
        },
        settle: Duration::from_millis(200),
        timeout: Duration::from_secs(5),
        retry_above: args.retry_above,
        max_attempts: args.attempts.max(1),
        server_core: args.server_core,
        client_core: args.client_core,
    };
    let servers: Vec<ServerKind> = match &args.servers {
        Some(list) => ServerKind::ALL
            .into_iter()
            .filter(|kind| list.contains(kind))
            .collect(),
        None => ServerKind::ALL.to_vec(),
    };
    let root = workspace_root();
    let out_dir = args.out_dir.clone().unwrap_or_else(|| {
        if quick {
            target_dir(&root).join("compare-quick")
        } else {
            root.join("docs/bench")
        }
    });

    let tools = match peers::prepare(&root, &servers) {
        Ok(tools) => tools,
        Err(error) => {
            eprintln!("compare: {error}");
            return ExitCode::FAILURE;
        }
    };
    let versions = peers::versions(&tools);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    ringws_cli::serve::raise_fd_limit();
    let nice = raise_priority();
    pin_self(settings.client_core);

    let args_given: Vec<String> = std::env::args().skip(1).collect();
    let command = if args_given.is_empty() {
        "cargo run --release -p ringws-benches --bin compare".to_owned()
    } else {
        format!(
            "cargo run --release -p ringws-benches --bin compare -- {}",
            args_given.join(" ")
        )
    };
    let started_unix_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let machine_start = Machine {
        cpu_model: probe::cpu_model(),
        cpus,
        kernel: probe::kernel_release(),
        load_average_start: probe::load_average(),
        load_average_end: None,
    };
    let started = Instant::now();
    let mut turns = Vec::new();
    for round in 1..=rounds {
        for &server in &servers {
            eprintln!(
                "compare: round {round}/{rounds}: {} (load average {})",
                server.label(),
                probe::load_average().map_or("unknown".to_owned(), |l| format!("{:.2}", l[0]))
            );
            let mut progress = |step: &str| eprintln!("compare:   {step}");
            let turn = workloads::run_turn(server, &tools, &settings, round, &mut progress);
            for failure in &turn.failures {
                eprintln!("compare:   FAILED {failure}");
            }
            turns.push(turn);
        }
    }
    let elapsed_secs = started.elapsed().as_secs_f64();
    let summary = Summary::of(&turns, &servers);
    let bars = bar_checks(&summary, &turns, &servers);
    let record = RunRecord {
        command,
        started_utc: probe::utc_date(started_unix_secs),
        started_unix_secs,
        elapsed_secs,
        machine: Machine {
            load_average_end: probe::load_average(),
            ..machine_start
        },
        settings: SettingsRecord {
            rounds,
            duration_secs: settings.duration.as_secs_f64(),
            connections: settings.connections,
            churn_concurrency: settings.churn_concurrency,
            latency_fraction: settings.latency_fraction,
            idle_connections: settings.idle_connections,
            idle_ramp: settings.idle_ramp,
            server_core: settings.server_core,
            client_core: settings.client_core,
            max_attempts: settings.max_attempts,
            retry_above: settings.retry_above,
            nice,
            quick,
        },
        versions,
        servers,
        turns,
        summary,
        bars,
    };
    let markdown = report::markdown(&record);
    println!("{markdown}");
    if let Err(error) = write_outputs(&out_dir, &record, &markdown) {
        eprintln!("compare: writing {}: {error}", out_dir.display());
        return ExitCode::FAILURE;
    }
    if args.criterion {
        eprintln!("compare: criterion micro-benchmarks (cargo bench -p ringws-benches)");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(&root)
            .args(["bench", "-p", "ringws-benches"])
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("compare: cargo bench failed");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn write_outputs(out_dir: &Path, record: &RunRecord, markdown: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(out_dir)?;
    let json = serde_json::to_string_pretty(record).map_err(std::io::Error::other)?;
    std::fs::write(out_dir.join("compare.json"), json + "\n")?;
    std::fs::write(out_dir.join("compare.md"), markdown)?;
    for (name, svg) in report::charts(record) {
        std::fs::write(out_dir.join(name), svg)?;
    }
    eprintln!(
        "compare: wrote compare.json, compare.md and 3 SVG charts to {}",
        out_dir.display()
    );
    Ok(())
}
