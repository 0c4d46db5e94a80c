//! `ringws bench`: the command line of the benchmark.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::bench::{run, BenchConfig};
use crate::load::config::{parse_duration, MAX_SPAN, MAX_SPAN_DAYS};
use crate::load::output::check_replaceable;
use crate::load::report::write_json;

/// Benchmark ringws on this machine and print one table.
///
/// A ringws echo server (one worker) and the load generator (one worker)
/// run in this process, on two cores, over loopback. The table: echo
/// throughput at 20 B, 512 B and 16 KiB (100 connections), pipelined echo
/// (512 B, 16 in flight), p50/p99/p99.9 latency at half the 512 B echo
/// rate, churn cycles/s, bytes per idle connection, and the CPU per message
/// of the server and of the generator. About 20 s (`--quick`: about 4 s).
/// The idle connections are opened by a `ringws load --mode hold` child
/// process, so that only the server's memory is measured.
///
/// The JSON file is replaced only once the run is complete: a run that fails
/// or is interrupted leaves it as it was.
///
/// Exit status: 0 when the table was printed (and the JSON written); 2 for
/// invalid arguments (including settings the run cannot survive, such as
/// more idle connections than the open-file limit allows, or a --json file
/// that cannot be created); 1 when the run failed or its JSON could not be
/// written.
#[derive(Debug, Clone, Args)]
#[command(verbatim_doc_comment)]
pub struct BenchArgs {
    /// Short run (0.5 s per workload, 500 idle connections), for tests.
    #[arg(long)]
    pub quick: bool,

    /// Write the figures as JSON to this file ("-": stdout; the table then
    /// goes to stderr).
    #[arg(long, value_name = "FILE|-")]
    pub json: Option<String>,

    /// Sending window of each workload (default 3s; --quick: 500ms).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub duration: Option<Duration>,

    /// Idle connections for the memory figure (default 10000; --quick: 500).
    #[arg(long, value_name = "N")]
    pub idle_connections: Option<usize>,

    /// Core of the server's worker (default 0 on a machine with 2 cores or more).
    #[arg(long, value_name = "CORE")]
    pub server_core: Option<usize>,

    /// Core of the generator's worker (default 1 on a machine with 2 cores or more).
    #[arg(long, value_name = "CORE")]
    pub client_core: Option<usize>,

    /// Do not print progress lines on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|error| error.to_string())
}

impl BenchArgs {
    /// The run these arguments describe.
    pub fn to_config(&self) -> Result<BenchConfig, String> {
        let mut config = if self.quick {
            BenchConfig::quick()
        } else {
            BenchConfig::standard()
        };
        if let Some(duration) = self.duration {
            if duration.is_zero() {
                return Err("--duration must be positive".into());
            }
            if duration > MAX_SPAN {
                return Err(format!("--duration must be at most {MAX_SPAN_DAYS} days"));
            }
            config.duration = duration;
        }
        if let Some(count) = self.idle_connections {
            if !(1..=MAX_IDLE_CONNECTIONS).contains(&count) {
                return Err(format!(
                    "--idle-connections must be between 1 and {MAX_IDLE_CONNECTIONS}"
                ));
            }
            config.idle_connections = count;
        }
        if self.server_core.is_some() {
            config.server_core = self.server_core;
        }
        if self.client_core.is_some() {
            config.client_core = self.client_core;
        }
        // The table names the cores; a pin that cannot hold is refused
        // before anything runs.
        let cores = [
            ("--server-core", config.server_core),
            ("--client-core", config.client_core),
        ];
        for (flag, core) in cores {
            if let Some(core) = core {
                if ringws_reactor::first_unavailable_core(&[core]).is_some() {
                    return Err(format!(
                        "{flag} {core} is not a core this process may run on"
                    ));
                }
            }
        }
        Ok(config)
    }
}

/// Most idle connections the memory figure may hold.
const MAX_IDLE_CONNECTIONS: usize = 1_000_000;

/// Descriptors the bench needs besides one per idle connection (the
/// server's end in this process; the generator's end is in a child process
/// with the same limit): rings, eventfds, listeners, `/proc` files.
const SPARE_DESCRIPTORS: u64 = 256;

/// Refuses a run the open-file limit cannot hold, before anything runs:
/// otherwise it fails a minute in, when the server can no longer open
/// `/proc/self/smaps_rollup`.
fn check_fd_limit(config: &BenchConfig) -> Result<(), String> {
    let Some(limit) = crate::serve::raise_fd_limit() else {
        return Ok(());
    };
    let needed = config.idle_connections as u64 + SPARE_DESCRIPTORS;
    if needed > limit {
        return Err(format!(
            "--idle-connections {} needs about {needed} open files, but this process may open {limit} (ulimit -n)",
            config.idle_connections
        ));
    }
    Ok(())
}

/// Runs `ringws bench` and returns the process exit code.
pub fn main(args: BenchArgs) -> ExitCode {
    let config = match args.to_config().and_then(|config| {
        check_fd_limit(&config)?;
        Ok(config)
    }) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("ringws bench: {error}");
            return ExitCode::from(2);
        }
    };
    // Checked before the run, so that a path that cannot be written fails
    // at once instead of after the whole benchmark; the file itself is
    // replaced only by a complete report.
    if let Some(path) = args.json.as_deref().filter(|target| *target != "-") {
        if let Err(error) = check_replaceable(Path::new(path)) {
            eprintln!("ringws bench: cannot write the JSON report to {path}: {error}");
            return ExitCode::from(2);
        }
    }
    let quiet = args.quiet;
    let report = run(&config, |line| {
        if !quiet {
            eprintln!("ringws bench: {line}");
        }
    });
    let report = match report {
        Ok(report) => report,
        Err(error) => {
            eprintln!("ringws bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    let json_to_stdout = args.json.as_deref() == Some("-");
    if json_to_stdout {
        eprint!("{report}");
    } else {
        let mut stdout = std::io::stdout().lock();
        let _ = write!(stdout, "{report}");
        let _ = stdout.flush();
    }
    if let Some(target) = &args.json {
        if let Err(error) = write_json(target, &report) {
            eprintln!("ringws bench: cannot write the JSON report: {error}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
