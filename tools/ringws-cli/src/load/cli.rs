//! `ringws load`: the command line of the load generator.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

use crate::load::config::{parse_cpu_list, parse_duration, parse_source_addrs};
use crate::load::hist::{save_histograms, MergedHistograms};
use crate::load::output::check_replaceable;
use crate::load::report::{write_json, LoadReport};
use crate::load::{run_interruptible, Interrupt, LoadConfig, LoadError, Mode, PayloadKind};
use ringws_reactor::StartError;

/// Generate WebSocket load; report rates, latency, close codes and errors.
///
/// Modes: echo (closed loop), rate (open loop, latency from the intended
/// send time), churn (connect, message, close cycles; with --messages 0
/// connect, upgrade, close), hold (many idle connections, optional pings). Network errors are counted, never fatal;
/// every wait is bounded by --timeout and every run by a hard deadline.
///
/// SIGINT (Ctrl-C) or SIGTERM ends the run early: the window ends, replies
/// in flight are awaited, connections close, and the report of what was
/// measured is printed (and written) with exit status 130 (SIGINT) or 143
/// (SIGTERM). A second signal exits at once, with no report.
///
/// Exit status: 0 when the run measured something (its errors are in the
/// report); 3 when it measured nothing (no echo in echo and rate mode, no
/// completed cycle in churn, no open connection in hold); 2 for invalid
/// arguments; 1 when the run could not start or its results could not be
/// written; 130 or 143 when a signal ended it early.
///
/// Examples:
///   ringws load ws://10.0.0.5:9001/ -c 256 -d 30s
///   ringws load ws://10.0.0.5:9001/ --mode rate --rate 200000 -c 512 --hist-out a.hlog
///   ringws load ws://10.0.0.5:9001/ --mode churn --concurrency 64 --close-code 1001
///   ringws load ws://10.0.0.5:9001/ --mode hold -c 100000 --ramp 5000 --ping-interval 10s
///       --source-addrs 127.0.0.2-127.0.0.40
///   ringws load merge a.hlog b.hlog
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    verbatim_doc_comment
)]
pub struct LoadArgs {
    #[command(subcommand)]
    command: Option<LoadCommand>,

    /// Server URL (ws://host[:port][/path]); of a host's addresses, the
    /// first that accepts a TCP connection is loaded.
    #[arg(required = true)]
    url: Option<String>,

    /// echo: closed loop; rate: open loop at --rate msg/s; churn:
    /// connect-message-close cycles; hold: open and hold connections.
    #[arg(long, value_enum, default_value_t = ModeArg::Echo)]
    mode: ModeArg,

    /// Connections (echo, rate, hold; at most the open-file limit)
    /// [default: 64].
    #[arg(short, long)]
    connections: Option<usize>,

    /// Cycles in progress at once (churn; at most the open-file limit)
    /// [default: 16].
    #[arg(long)]
    concurrency: Option<usize>,

    /// Payload bytes per message; the first 8 carry the message's sequence
    /// number on its connection (printable ASCII), so a repeated or skipped
    /// echo is counted as an error instead of being timed.
    #[arg(short = 's', long, default_value_t = 32)]
    payload_size: usize,

    /// Send Text frames (printable ASCII payload).
    #[arg(long, conflicts_with = "binary")]
    text: bool,

    /// Send Binary frames (the default).
    #[arg(long)]
    binary: bool,

    /// Messages in flight per connection (echo, churn; all of them must fit
    /// in this machine's memory at once) [default: 1].
    #[arg(short, long)]
    pipeline: Option<usize>,

    /// Sending window (e.g. 500ms, 10s, 2m); it starts once the connections
    /// are open (churn: at once).
    #[arg(short, long, default_value = "10s", value_parser = duration)]
    duration: Duration,

    /// Messages per second in total (rate, required); cycles per second
    /// (churn, optional).
    #[arg(short, long)]
    rate: Option<f64>,

    /// Messages per churn cycle [default: 1]; 0: each cycle connects,
    /// upgrades and closes (a handshake benchmark).
    #[arg(long)]
    messages: Option<u32>,

    /// Stop churning after this many cycles (churn).
    #[arg(long)]
    cycles: Option<u64>,

    /// Code of the Close frames the generator sends.
    #[arg(long, default_value_t = 1000)]
    close_code: u16,

    /// Open connections at this many per second (echo, rate, hold;
    /// default: as fast as possible).
    #[arg(long)]
    ramp: Option<f64>,

    /// Ping each connection this often (hold).
    #[arg(long, value_parser = duration)]
    ping_interval: Option<Duration>,

    /// Source addresses to spread connections over, e.g.
    /// 127.0.0.2-127.0.0.40 or 10.0.0.1,10.0.0.2.
    #[arg(long)]
    source_addrs: Option<String>,

    /// Worker threads (default: one per core); each holds 2 descriptors,
    /// which count against the open-file limit with the connections.
    #[arg(short, long)]
    workers: Option<usize>,

    /// Pin workers to these cores, e.g. 1 or 0-3 (worker i on the i-th).
    #[arg(long)]
    cpus: Option<String>,

    /// Bound on connect+handshake, on replies after the window, and on the
    /// closing handshake (rate mode: also on sending, after the window, the
    /// messages that fell due while every connection was full; a silent
    /// server can then hold the run for 3 timeouts past the window).
    #[arg(long, default_value = "5s", value_parser = duration)]
    timeout: Duration,

    /// Most messages in flight per connection (rate) [default: 1024].
    #[arg(long)]
    max_in_flight: Option<usize>,

    /// Extra request header for the handshake ("Name: value"; repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,

    /// Print the progress line even when stderr is not a terminal.
    #[arg(long)]
    progress: bool,

    /// Print neither the progress line nor the table.
    #[arg(short, long)]
    quiet: bool,

    /// Write the report as JSON to this file ("-": stdout; the table then
    /// goes to stderr). The file is replaced once the report is complete:
    /// a run that fails or is killed leaves it as it was.
    #[arg(long, value_name = "FILE|-")]
    json: Option<String>,

    /// Save the latency histograms (HdrHistogram interval log, V2
    /// compressed) for `ringws load merge` to this file (not "-"), replaced
    /// once the run is over, as --json's.
    #[arg(long, value_name = "FILE")]
    hist_out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum LoadCommand {
    /// Merge histogram files saved with --hist-out (e.g. from several
    /// machines) and print the percentiles of the whole.
    Merge {
        /// Files written by --hist-out.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    Echo,
    Rate,
    Churn,
    Hold,
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|error| error.to_string())
}

impl LoadArgs {
    /// The run these arguments describe.
    pub fn to_config(&self) -> Result<LoadConfig, String> {
        let url = self.url.clone().ok_or("a URL is required")?;
        let mode = match self.mode {
            ModeArg::Echo => Mode::Echo,
            ModeArg::Rate => Mode::Rate,
            ModeArg::Churn => Mode::Churn,
            ModeArg::Hold => Mode::Hold,
        };
        self.check_flags_apply_to(mode)?;
        let mut config = LoadConfig::new(url, mode);
        config.connections = self.connections.unwrap_or(config.connections);
        config.concurrency = self.concurrency.unwrap_or(config.concurrency);
        config.payload_size = self.payload_size;
        config.payload_kind = if self.text {
            PayloadKind::Text
        } else {
            PayloadKind::Binary
        };
        config.pipeline = self.pipeline.unwrap_or(config.pipeline);
        config.duration = self.duration;
        config.rate = self.rate;
        config.messages_per_cycle = self.messages.unwrap_or(config.messages_per_cycle);
        config.cycles = self.cycles;
        config.close_code = self.close_code;
        config.ramp = self.ramp;
        config.ping_interval = self.ping_interval;
        if let Some(list) = &self.source_addrs {
            config.source_addrs = parse_source_addrs(list).map_err(|error| error.to_string())?;
        }
        config.workers = self.workers;
        if let Some(list) = &self.cpus {
            config.cpus = Some(parse_cpu_list(list).map_err(|error| error.to_string())?);
        }
        config.timeout = self.timeout;
        config.max_in_flight = self.max_in_flight.unwrap_or(config.max_in_flight);
        for header in &self.headers {
            let (name, value) = header
                .split_once(':')
                .ok_or_else(|| format!("header {header:?} is not \"Name: value\""))?;
            config
                .headers
                .push((name.trim().to_owned(), value.trim().to_owned()));
        }
        config.validate().map_err(|error| error.to_string())?;
        Ok(config)
    }

    /// Refuses a flag the mode would ignore: a run that silently differs
    /// from the one asked for (say `--rate` without `--mode rate`, a closed
    /// loop at full speed instead of a fixed rate) is worse than an error.
    fn check_flags_apply_to(&self, mode: Mode) -> Result<(), String> {
        use Mode::{Churn, Echo, Hold, Rate};
        let given: [(&str, bool, &[Mode]); 9] = [
            (
                "--connections",
                self.connections.is_some(),
                &[Echo, Rate, Hold],
            ),
            ("--concurrency", self.concurrency.is_some(), &[Churn]),
            ("--pipeline", self.pipeline.is_some(), &[Echo, Churn]),
            ("--rate", self.rate.is_some(), &[Rate, Churn]),
            ("--messages", self.messages.is_some(), &[Churn]),
            ("--cycles", self.cycles.is_some(), &[Churn]),
            ("--ramp", self.ramp.is_some(), &[Echo, Rate, Hold]),
            ("--ping-interval", self.ping_interval.is_some(), &[Hold]),
            ("--max-in-flight", self.max_in_flight.is_some(), &[Rate]),
        ];
        for (flag, is_given, modes) in given {
            if is_given && !modes.contains(&mode) {
                let names: Vec<&str> = modes.iter().map(|mode| mode.name()).collect();
                return Err(format!(
                    "{flag} does not apply to --mode {} (only to {})",
                    mode.name(),
                    names.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// Exit status of a run that measured nothing: scripts and CI jobs must be
/// able to tell it from one that did.
const NOTHING_MEASURED: u8 = 3;

/// Why `report` holds no measurement, if it holds none.
fn nothing_measured(report: &LoadReport) -> Option<&'static str> {
    let measured = match report.mode {
        Mode::Echo | Mode::Rate => report.messages.received > 0,
        Mode::Churn => report.cycles.is_some_and(|cycles| cycles.completed > 0),
        Mode::Hold => report.connections.opened > 0,
    };
    if measured {
        return None;
    }
    Some(match report.mode {
        _ if report.connections.opened == 0 => "no connection opened",
        Mode::Echo | Mode::Rate => "no message was echoed",
        Mode::Churn => "no cycle completed",
        Mode::Hold => "no connection opened",
    })
}

/// Descriptors a load worker holds whatever its connections: its io_uring
/// and its wakeup eventfd.
const DESCRIPTORS_PER_WORKER: u64 = 2;

/// Descriptors the process holds besides the workers' and the
/// connections': the standard streams, and a few to spare.
const DESCRIPTORS_RESERVED: u64 = 5;

/// Refuses more connections (churn: cycles at once) than the process may
/// hold descriptors for: such a run could never open them all, and its
/// workers would spend far past the run's deadline failing one connect
/// after another. The workers' own descriptors count too: more workers
/// than the limit allows failed to start (`EMFILE`, exit status 1).
fn fits_fd_limit(config: &LoadConfig, fd_limit: Option<u64>) -> Result<(), String> {
    let Some(limit) = fd_limit else {
        return Ok(());
    };
    let wanted = config.parallelism() as u64;
    let (flag, what) = match (config.mode, wanted) {
        (Mode::Churn, 1) => ("--concurrency", "cycle at once"),
        (Mode::Churn, _) => ("--concurrency", "cycles at once"),
        (_, 1) => ("--connections", "connection"),
        _ => ("--connections", "connections"),
    };
    if wanted > limit {
        return Err(format!(
            "{flag} {wanted} is more than the open-file limit ({limit}) allows: each \
             connection takes a descriptor (raise the limit with `ulimit -n`, or ask for fewer)"
        ));
    }
    let workers = config.worker_count() as u64;
    let needed = workers
        .saturating_mul(DESCRIPTORS_PER_WORKER)
        .saturating_add(wanted)
        .saturating_add(DESCRIPTORS_RESERVED);
    if needed > limit {
        return Err(format!(
            "{workers} workers (-w/--workers) and {wanted} {what} need {needed} descriptors \
             ({DESCRIPTORS_PER_WORKER} per worker, 1 per connection, {DESCRIPTORS_RESERVED} for \
             the process), more than the open-file limit ({limit}) allows (raise the limit \
             with `ulimit -n`, or ask for fewer workers)"
        ));
    }
    Ok(())
}

/// Refuses a pipeline whose first burst cannot fit in this machine's
/// memory: echo and churn build the `--pipeline` messages of every
/// connection at once, and a burst larger than memory aborts the run on a
/// failed allocation instead of reporting anything.
fn fits_memory(config: &LoadConfig, memory: Option<u64>) -> Result<(), String> {
    if !matches!(config.mode, Mode::Echo | Mode::Churn) {
        return Ok(());
    }
    // A frame's header is at most 14 bytes.
    let burst = (config.parallelism() as u128)
        .saturating_mul(config.pipeline as u128)
        .saturating_mul(config.payload_size as u128 + 14);
    match memory {
        Some(memory) if burst > u128::from(memory) => Err(format!(
            "--pipeline {} with {} {} of {}-byte messages puts {:.1} GiB in flight at once, \
             more than this machine's memory ({:.1} GiB)",
            config.pipeline,
            config.parallelism(),
            match config.mode {
                Mode::Churn => "cycles",
                _ => "connections",
            },
            config.payload_size,
            burst as f64 / f64::from(1u32 << 30),
            memory as f64 / f64::from(1u32 << 30),
        )),
        _ => Ok(()),
    }
}

/// This machine's physical memory in bytes, if it can be read.
fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf reads a system setting and touches no memory of ours.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    // SAFETY: as above.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let pages = u64::try_from(pages).ok()?;
    let page_size = u64::try_from(page_size).ok()?;
    pages.checked_mul(page_size)
}

/// Whether `a` and `b` name one file (which need not exist yet): their
/// directories resolved, their names compared.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    let resolve = |path: &std::path::Path| {
        let name = path.file_name()?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => std::path::Path::new("."),
        };
        // A file that exists may be a link: resolve it whole.
        std::fs::canonicalize(path)
            .or_else(|_| std::fs::canonicalize(dir).map(|dir| dir.join(name)))
            .ok()
    };
    a == b || matches!((resolve(a), resolve(b)), (Some(a), Some(b)) if a == b)
}

/// The files the run writes its results to, named for messages.
fn output_files(args: &LoadArgs) -> Vec<(&'static str, PathBuf)> {
    let json = args
        .json
        .as_deref()
        .filter(|target| *target != "-")
        .map(|path| ("the JSON report", PathBuf::from(path)));
    let histograms = args.hist_out.clone().map(|path| ("the histograms", path));
    json.into_iter().chain(histograms).collect()
}

/// Runs `ringws load` and returns the process exit code.
pub fn main(args: LoadArgs) -> ExitCode {
    match &args.command {
        Some(LoadCommand::Merge { files }) => merge(files),
        None => {
            // Each connection is a descriptor: 10,000 held connections are
            // far above the usual soft limit of 1024.
            let fd_limit = crate::serve::raise_fd_limit();
            load(&args, fd_limit)
        }
    }
}

fn merge(files: &[PathBuf]) -> ExitCode {
    match MergedHistograms::from_files(files) {
        Ok(merged) if merged.by_tag.is_empty() => {
            eprintln!("ringws load merge: the files hold no histogram");
            ExitCode::FAILURE
        }
        Ok(merged) => {
            let text = format!("merged {} file(s)\n{}", files.len(), merged.table());
            match print_out(&mut std::io::stdout(), &text) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("ringws load merge: cannot print the percentiles: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(error) => {
            eprintln!("ringws load merge: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Makes SIGINT and SIGTERM raise `interrupt`, and a second one exit at
/// once. Returns the exit status the first signal asks for (130 or 143; 0
/// until one arrives).
fn watch_signals(interrupt: &Interrupt) -> std::io::Result<Arc<AtomicUsize>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::flag;

    let status = Arc::new(AtomicUsize::new(0));
    for signal in [SIGINT, SIGTERM] {
        let exit_status = 128 + signal;
        // Registered first, so it sees the flag as the previous signal
        // left it: only a second signal exits.
        flag::register_conditional_shutdown(signal, exit_status, interrupt.flag())?;
        flag::register_usize(signal, status.clone(), exit_status as usize)?;
        flag::register(signal, interrupt.flag())?;
    }
    Ok(status)
}

/// Writes `text` to `out`. A reader that went away (`ringws load ... |
/// head -3` closes the pipe) ends the output quietly: that is not an
/// error, and the exit status stays the run's.
fn print_out(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}

fn load(args: &LoadArgs, fd_limit: Option<u64>) -> ExitCode {
    let config = match args
        .to_config()
        .and_then(|config| fits_fd_limit(&config, fd_limit).map(|()| config))
        .and_then(|config| fits_memory(&config, physical_memory()).map(|()| config))
    {
        Ok(config) => config,
        Err(error) => {
            eprintln!("ringws load: {error}");
            return ExitCode::from(2);
        }
    };
    // Output files are checked before the run, so that a path that cannot
    // be written fails at once instead of losing a finished run's results;
    // they are replaced only by complete results, so a run that fails or
    // is killed leaves them as they were.
    if args.hist_out.as_deref() == Some(std::path::Path::new("-")) {
        eprintln!(
            "ringws load: --hist-out takes a file name (\"-\", standard output, is only for --json)"
        );
        return ExitCode::from(2);
    }
    let outputs = output_files(args);
    if let [(_, json), (_, histograms)] = &outputs[..] {
        if same_file(json, histograms) {
            eprintln!(
                "ringws load: --json and --hist-out name the same file ({}): the histograms \
                 would overwrite the report",
                histograms.display()
            );
            return ExitCode::from(2);
        }
    }
    for (what, path) in &outputs {
        if let Err(error) = check_replaceable(path) {
            eprintln!(
                "ringws load: cannot write {what} to {}: {error}",
                path.display()
            );
            return ExitCode::from(2);
        }
    }
    let interrupt = Interrupt::new();
    let signal = match watch_signals(&interrupt) {
        Ok(signal) => signal,
        Err(error) => {
            eprintln!("ringws load: cannot install the signal handlers: {error}");
            return ExitCode::FAILURE;
        }
    };
    let show_progress = !args.quiet && (args.progress || std::io::stderr().is_terminal());
    let mut told_interrupted = false;
    let report = run_interruptible(
        &config,
        |progress| {
            // A closed stderr only loses these lines.
            if progress.interrupted && !told_interrupted {
                told_interrupted = true;
                let _ = writeln!(
                    std::io::stderr(),
                    "ringws load: interrupted; closing the connections and reporting what was \
                     measured (signal again to exit at once)"
                );
            }
            if show_progress {
                let _ = writeln!(std::io::stderr(), "{progress}");
            }
        },
        &interrupt,
    );
    let report = match report {
        Ok(report) => report,
        Err(error) => {
            eprintln!("ringws load: {error}");
            // What the arguments got wrong exits as any bad argument does.
            let bad_arguments = matches!(
                error,
                LoadError::Config(_) | LoadError::Url(_) | LoadError::Start(StartError::Config(_))
            );
            return ExitCode::from(if bad_arguments { 2 } else { 1 });
        }
    };
    let json_to_stdout = args.json.as_deref() == Some("-");
    let mut status = ExitCode::SUCCESS;
    if !args.quiet {
        let table = report.to_string();
        let printed = if json_to_stdout {
            print_out(&mut std::io::stderr(), &table)
        } else {
            print_out(&mut std::io::stdout(), &table)
        };
        if let Err(error) = printed {
            eprintln!("ringws load: cannot print the report: {error}");
            status = ExitCode::FAILURE;
        }
    }
    if let Some(reason) = nothing_measured(&report) {
        eprintln!("ringws load: nothing was measured: {reason}");
        status = ExitCode::from(NOTHING_MEASURED);
    }
    if report.interrupted {
        // The signal's status outranks the others: the run did not end as
        // asked.
        status = ExitCode::from(signal.load(Ordering::Relaxed).clamp(1, 255) as u8);
    }
    if let Some(target) = &args.json {
        if let Err(error) = write_json(target, &report) {
            eprintln!("ringws load: cannot write the JSON report: {error}");
            status = ExitCode::FAILURE;
        }
    }
    if let Some(path) = &args.hist_out {
        let window = Duration::from_secs_f64(report.window_secs.max(0.0));
        if let Err(error) = save_histograms(path, &report.histograms, window) {
            eprintln!("ringws load: cannot save the histograms: {error}");
            status = ExitCode::FAILURE;
        }
    }
    status
}
