//! Errors are counted and summarised, never fatal, and every run ends in
//! bounded time: refused connections, refused upgrades, unexpected closes,
//! corrupted echoes and silent servers.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;

/// A port nothing listens on.
fn closed_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// A run that opened no connection shows no made-up window and exits
/// (status 3) saying why nothing was measured.
fn assert_no_window_and_nothing_measured(outcome: &Outcome) {
    assert_eq!(outcome.report.window_secs, 0.0, "{}", outcome.stdout);
    assert!(
        outcome.stdout.contains("no window (no connection opened)"),
        "{}",
        outcome.stdout
    );
    assert!(
        outcome
            .stderr
            .contains("nothing was measured: no connection opened"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn connection_refused_is_counted() {
    let url = format!("ws://127.0.0.1:{}/", closed_port());
    let outcome = load_measuring_nothing(&[&url, "-c", "5", "-d", "1s", "-w", "2"]);
    let report = &outcome.report;
    assert_eq!(report.connections.attempted, 5);
    assert_eq!(report.connections.failed, 5);
    assert_eq!(report.connections.opened, 0);
    assert_eq!(report.errors.total, 5);
    assert_eq!(
        report.errors.by_kind.get("connect: connection refused"),
        Some(&5),
        "{:?}",
        report.errors.by_kind
    );
    assert!(outcome.stdout.contains("connect: connection refused"));
    assert_eq!(report.messages.sent, 0);
    assert!(report.latency.message.is_none());
    // No connection opened, so no worker had a window: no made-up one.
    assert_no_window_and_nothing_measured(&outcome);
    assert_eq!(report.messages.per_sec, 0.0);
}

#[test]
fn churn_against_a_closed_port_counts_every_attempt_and_ends() {
    let url = format!("ws://127.0.0.1:{}/", closed_port());
    let outcome = load_measuring_nothing(&[
        &url,
        "--mode",
        "churn",
        "--concurrency",
        "2",
        "--cycles",
        "10",
        "-d",
        "5s",
        "-w",
        "1",
    ]);
    let report = &outcome.report;
    assert_eq!(report.cycles.unwrap().completed, 0);
    assert_eq!(
        report.connections.attempted, 10,
        "the cycle limit bounds attempts"
    );
    assert_eq!(
        report.errors.by_kind.get("connect: connection refused"),
        Some(&10)
    );
    assert!(
        report.elapsed_secs < 4.0,
        "stops once the cycles are used up"
    );
    // Reported as an echo run that opened nothing: no window, no rates
    // (it showed a window and rates of 0.00).
    assert_no_window_and_nothing_measured(&outcome);
    assert_eq!(report.rate_span_secs, 0.0);
    assert!(
        outcome
            .stdout
            .contains("  cycles     0 completed: rates not measured\n"),
        "{}",
        outcome.stdout
    );
}

#[test]
fn refused_upgrade_is_counted_with_its_status() {
    let peer = EchoPeer::start(PeerKind::Python, &["--reject", "403"]);
    let outcome = load_measuring_nothing(&[&peer.url(), "-c", "3", "-d", "1s", "-w", "1"]);
    let report = &outcome.report;
    assert_eq!(report.connections.failed, 3);
    assert_eq!(
        report.errors.by_kind.get("handshake refused: HTTP 403"),
        Some(&3),
        "{:?}",
        report.errors.by_kind
    );
    assert!(report.latency.handshake.is_none());
}

#[test]
fn unexpected_close_is_counted_by_code() {
    let peer = EchoPeer::start(
        PeerKind::Python,
        &["--close-after", "5", "--close-code", "4000"],
    );
    let outcome = load(&[&peer.url(), "-c", "3", "-d", "1s", "-w", "1"]);
    let report = &outcome.report;
    assert_eq!(report.connections.opened, 3);
    assert_eq!(report.server_close_codes, [(4000, 3)].into());
    assert_eq!(
        report.errors.by_kind.get("unexpected close: 4000"),
        Some(&3),
        "{:?}",
        report.errors.by_kind
    );
    // Each connection got its 5 echoes before the server closed it.
    assert_eq!(report.messages.received, 15);
    assert_eq!(
        report.messages.unanswered,
        report.messages.sent - report.messages.received
    );
}

/// Small echoes are compared; large ones are compared as they are masked
/// in place into the next message, which must then carry the payload, not
/// the corrupted echo (the peer flips the first byte back otherwise).
#[test]
fn corrupted_echoes_are_mismatches_not_messages() {
    for size in ["64", "20000"] {
        corrupted_echoes_of(size);
    }
}

fn corrupted_echoes_of(size: &str) {
    let peer = EchoPeer::start(PeerKind::Python, &["--corrupt"]);
    let outcome =
        load_measuring_nothing(&[&peer.url(), "-c", "2", "-d", "500ms", "-w", "1", "-s", size]);
    let report = &outcome.report;
    assert_eq!(
        report.messages.received, 0,
        "no corrupted echo counts as received"
    );
    let mismatches = report
        .errors
        .by_kind
        .get("echo mismatch")
        .copied()
        .unwrap_or(0);
    assert!(mismatches > 0, "{:?}", report.errors.by_kind);
    assert_eq!(mismatches, report.messages.sent);
    assert!(report.latency.message.is_none());
}

/// Each echo names the message it answers (its sequence number), so a
/// second copy of an echo is counted as an unexpected message, never timed
/// as the echo of the next message (which timed it from a send made in the
/// same instant, and in the closed loop sent a message for each copy).
#[test]
fn a_second_copy_of_each_echo_is_an_unexpected_message_not_an_echo() {
    let server = ScriptedServer::start(|_| Script::EchoTwice);
    let url = server.url();
    for text in [false, true] {
        let mut args = vec![url.as_str(), "-c", "2", "-w", "1", "-d", "400ms"];
        if text {
            args.push("--text");
        }
        let outcome = load(&args);
        let report = &outcome.report;
        let messages = &report.messages;
        assert!(messages.received > 0, "{}", outcome.stdout);
        // One message per echo, not one per copy.
        assert_eq!(messages.received, messages.sent, "{}", outcome.stdout);
        assert_eq!(messages.unanswered, 0, "{}", outcome.stdout);
        assert_eq!(
            report.errors.by_kind.get("unexpected message"),
            Some(&messages.received),
            "{:?}",
            report.errors.by_kind
        );
        assert_eq!(report.errors.total, messages.received);
        let latency = report.latency.message.unwrap();
        assert_eq!(latency.count, messages.received);
        // A copy read with the echo it repeats, matched against the message
        // sent on that echo, was timed at 0 (recorded as the floor, 1 ns):
        // no echo can come back the instant its message leaves.
        assert!(latency.min_us > 0.001, "{}", outcome.stdout);
        assert!(
            outcome.stdout.contains("unexpected message"),
            "{}",
            outcome.stdout
        );
    }
}

/// An echo that comes before that of an older message counts the older
/// one as skipped at once, instead of being timed from the older one's
/// send and leaving the last message to time out.
#[test]
fn an_echo_that_skips_an_older_one_is_counted_at_once() {
    let server = ScriptedServer::start(|_| Script::SkipFirstEcho);
    let url = server.url();
    let started = Instant::now();
    let outcome = load(&[
        &url,
        "-c",
        "2",
        "-w",
        "1",
        "-d",
        "400ms",
        "-p",
        "2",
        "--timeout",
        "20s",
    ]);
    let report = &outcome.report;
    let skipped = "echo skipped (a later message's came first)";
    assert_eq!(
        report.errors.by_kind.get(skipped),
        Some(&2),
        "one per connection: {:?}",
        report.errors.by_kind
    );
    assert_eq!(report.errors.total, 2, "{:?}", report.errors.by_kind);
    assert_eq!(report.messages.unanswered, 2);
    assert_eq!(report.messages.received, report.messages.sent - 2);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "no message was left to time out"
    );
}

#[test]
fn silent_server_times_out_the_handshake_within_the_bound() {
    // The kernel completes TCP handshakes into the backlog; nobody answers
    // the upgrade.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let started = Instant::now();
    let outcome =
        load_measuring_nothing(&[&url, "-c", "3", "-d", "1s", "-w", "1", "--timeout", "300ms"]);
    let report = &outcome.report;
    assert_eq!(report.connections.failed, 3);
    assert_eq!(report.errors.by_kind.get("handshake: timeout"), Some(&3));
    assert!(report.latency.connect.is_some());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by the timeout"
    );
    drop(listener);
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let (status, _, stderr) = ringws(&["load", "ws://127.0.0.1:1/", "--mode", "rate"]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("--rate"), "{stderr}");
    let (status, _, stderr) = ringws(&["load", "wss://127.0.0.1:1/", "-d", "1s"]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("TLS"), "{stderr}");
    let (status, _, stderr) = ringws(&[
        "load",
        "ws://127.0.0.1:1/",
        "--source-addrs",
        "127.0.0.9-127.0.0.2",
    ]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("ends before it starts"), "{stderr}");
}

/// A flag the mode would ignore is refused rather than run a different
/// load than the one asked for: `--rate` without `--mode rate` would be a
/// closed loop at full speed.
#[test]
fn flags_the_mode_would_ignore_are_refused() {
    let cases: [(&[&str], &str); 4] = [
        (&["--rate", "100"], "--rate does not apply to --mode echo"),
        (
            &["--mode", "churn", "-c", "5"],
            "--connections does not apply to --mode churn",
        ),
        (
            &["--ping-interval", "1s"],
            "--ping-interval does not apply to --mode echo",
        ),
        (
            &["--mode", "hold", "--cycles", "3"],
            "--cycles does not apply to --mode hold",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["load", "ws://127.0.0.1:1/", "-d", "1s"];
        args.extend_from_slice(extra);
        let (status, _, stderr) = ringws(&args);
        assert_eq!(status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    }
}

/// A results file that cannot be written fails before the run, not after
/// it (which would lose the results).
#[test]
fn an_unwritable_results_file_fails_before_the_run() {
    for flag in ["--json", "--hist-out"] {
        let started = Instant::now();
        let (status, _, stderr) = ringws(&[
            "load",
            "ws://127.0.0.1:1/",
            "-d",
            "30s",
            "-q",
            flag,
            "/nonexistent-ringws-dir/out",
        ]);
        assert_eq!(status.code(), Some(2), "{flag}: {stderr}");
        assert!(stderr.contains("/nonexistent-ringws-dir/out"), "{stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{flag}: ran first"
        );
    }
}

#[test]
fn pins_to_cores_the_process_may_not_use_are_refused_as_bad_arguments() {
    // A pin that cannot hold would leave server and generator sharing a
    // core while the output names two.
    let cases: [&[&str]; 4] = [
        &["serve", "--addr", "127.0.0.1:0", "--cores", "100000"],
        &["bench", "--quick", "--server-core", "100000"],
        &["bench", "--quick", "--client-core", "100000"],
        &[
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--recv-buffer-count",
            "1000",
        ],
    ];
    for args in cases {
        let (status, _, stderr) = ringws(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        let expected = if args.contains(&"--recv-buffer-count") {
            "power of two"
        } else {
            "100000"
        };
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("io_uring"), "{args:?}: {stderr}");
    }
    let (status, _, stderr) =
        ringws(&["load", "ws://127.0.0.1:1/", "-d", "1s", "--cpus", "100000"]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("100000"), "{stderr}");
}

#[test]
fn pongs_that_do_not_carry_the_pings_payload_answer_nothing() {
    let server = ScriptedServer::start(|_| Script::WrongPongs);
    let url = server.url();
    let outcome = load(&[
        &url,
        "--mode",
        "hold",
        "-c",
        "2",
        "-w",
        "1",
        "-d",
        "600ms",
        "--ping-interval",
        "100ms",
        "--timeout",
        "300ms",
    ]);
    let report = &outcome.report;
    let pings = report.pings.expect("pings were sent");
    assert!(pings.sent >= 6, "{pings:?}");
    assert_eq!(pings.answered, 0, "{pings:?}");
    assert!(report.latency.ping.is_none(), "no made-up ping latency");
    // Unanswered Pings are their own kind: no message was sent.
    assert_eq!(
        report.errors.by_kind.get("timeout: ping unanswered"),
        Some(&pings.sent),
        "{:?}",
        report.errors.by_kind
    );
    assert_eq!(
        report.errors.total, pings.sent,
        "{:?}",
        report.errors.by_kind
    );
    assert_eq!(report.messages.unanswered, 0);
}

/// More connections (or churn cycles at once) than the process may hold
/// descriptors for are refused before the run: such a run could never
/// open them, and trying (one failed connect after another) outlasted the
/// run's hard deadline by far.
#[test]
fn more_connections_than_descriptors_are_refused() {
    let url = format!("ws://127.0.0.1:{}/", closed_port());
    let cases: [(&[&str], &str); 2] = [
        (&["-c", "100000000000"], "--connections 100000000000"),
        (
            &[
                "--mode",
                "churn",
                "--concurrency",
                "100000000000",
                "--cycles",
                "1",
            ],
            "--concurrency 100000000000",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["load", &url, "-d", "300ms", "-w", "1", "-q"];
        args.extend_from_slice(extra);
        let started = Instant::now();
        let (status, _, stderr) = ringws(&args);
        assert_eq!(status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
        assert!(stderr.contains("open-file limit"), "{extra:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{extra:?}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{extra:?} took {:?}",
            started.elapsed()
        );
    }
}

/// A ramp so slow that opening the connections would take longer than the
/// longest run allowed is refused: the run would have no deadline worth the
/// name (it waited for the connections until it was killed).
#[test]
fn a_ramp_slower_than_the_longest_run_is_refused() {
    let url = format!("ws://127.0.0.1:{}/", closed_port());
    let started = Instant::now();
    let (status, _, stderr) = ringws(&[
        "load", &url, "-c", "2", "-w", "1", "-d", "300ms", "--ramp", "1e-300",
    ]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--ramp"), "{stderr}");
    assert!(stderr.contains("365 days"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10), "{stderr}");
}

/// `--json` and `--hist-out` naming one file would leave only the
/// histograms in it (the report silently lost): refused before the run.
#[test]
fn one_file_for_the_report_and_the_histograms_is_refused() {
    let path = temp_path("same-output");
    let path = path.to_str().unwrap();
    // The same file under another spelling counts too.
    let dir = std::path::Path::new(path).parent().unwrap();
    let other = format!(
        "{}/./{}",
        dir.display(),
        std::path::Path::new(path)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
    );
    for (json, hist) in [(path, path), (path, other.as_str())] {
        let (status, _, stderr) = ringws(&[
            "load",
            "ws://127.0.0.1:1/",
            "-d",
            "30s",
            "-q",
            "--json",
            json,
            "--hist-out",
            hist,
        ]);
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("--json and --hist-out"), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    let _ = std::fs::remove_file(path);
}

/// Source addresses of the other family than the target's are a mistake in
/// the arguments (exit 2, like any other), not a failure to start.
#[test]
fn source_addresses_of_the_wrong_family_are_bad_arguments() {
    let cases = [
        ("ws://127.0.0.1:1/", "::1", "IPv6"),
        ("ws://[::1]:1/", "127.0.0.2", "IPv4"),
    ];
    for (url, sources, family) in cases {
        let (status, _, stderr) =
            ringws(&["load", url, "--source-addrs", sources, "-d", "1s", "-q"]);
        assert_eq!(status.code(), Some(2), "{url} {sources}: {stderr}");
        assert!(stderr.contains("--source-addrs"), "{stderr}");
        assert!(stderr.contains(family), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

/// A run that fails to start (here: the target has no address of the
/// source addresses' family, found only once the run resolves it) leaves
/// the results files of an earlier run as they were: they were deleted.
#[test]
fn a_run_that_fails_to_start_leaves_the_results_files_as_they_were() {
    let (json, hist) = (temp_path("earlier.json"), temp_path("earlier.hlog"));
    std::fs::write(&json, "earlier report\n").unwrap();
    std::fs::write(&hist, "earlier histograms\n").unwrap();
    let (status, _, stderr) = ringws(&[
        "load",
        "ws://127.0.0.1:1/",
        "--source-addrs",
        "::1",
        "-d",
        "1s",
        "-q",
        "--json",
        json.to_str().unwrap(),
        "--hist-out",
        hist.to_str().unwrap(),
    ]);
    let json_after = std::fs::read_to_string(&json);
    let hist_after = std::fs::read_to_string(&hist);
    let _ = std::fs::remove_file(&json);
    let _ = std::fs::remove_file(&hist);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--source-addrs"), "{stderr}");
    assert_eq!(json_after.ok().as_deref(), Some("earlier report\n"));
    assert_eq!(hist_after.ok().as_deref(), Some("earlier histograms\n"));
    assert_eq!(left_beside(&json), Vec::<String>::new());
    assert_eq!(left_beside(&hist), Vec::<String>::new());
}

/// A pipeline whose messages in flight cannot fit in memory is refused up
/// front: the generator builds every message of the first burst at once, and
/// such a run aborted on a failed allocation (or drove the machine into
/// swap) instead of reporting anything.
#[test]
fn a_pipeline_larger_than_memory_is_refused() {
    let url = format!("ws://127.0.0.1:{}/", closed_port());
    let cases: [&[&str]; 2] = [
        &["-c", "1", "-p", "1000000000000"],
        &[
            "--mode",
            "churn",
            "--concurrency",
            "4",
            "-p",
            "100000000",
            "-s",
            "16777216",
        ],
    ];
    for extra in cases {
        let mut args = vec!["load", &url, "-d", "300ms", "-w", "1", "-q"];
        args.extend_from_slice(extra);
        let (status, _, stderr) = ringws(&args);
        assert_eq!(status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains("--pipeline"), "{extra:?}: {stderr}");
        assert!(stderr.contains("memory"), "{extra:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{extra:?}: {stderr}");
    }
}

/// `--json -` means stdout, so `--hist-out -` must not quietly write a file
/// named `-` in the working directory: it is refused.
#[test]
fn histograms_to_a_dash_are_refused() {
    let dir = temp_path("dash-dir");
    std::fs::create_dir(&dir).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ringws"))
        .args([
            "load",
            "ws://127.0.0.1:1/",
            "-d",
            "30s",
            "-q",
            "--hist-out",
            "-",
        ])
        .current_dir(&dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--hist-out"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let written = dir.join("-").exists();
    let _ = std::fs::remove_file(dir.join("-"));
    let _ = std::fs::remove_dir(&dir);
    assert!(!written, "a file named - was written");
}

/// More workers than the open-file limit leaves room for (each holds an
/// io_uring and an eventfd) are refused before the run, in one line and
/// with exit status 2, instead of failing to start with `EMFILE` (status
/// 1).
#[test]
fn more_workers_than_descriptors_are_refused() {
    use std::os::unix::process::CommandExt;

    const LIMIT: libc::rlim_t = 256;
    let url = format!("ws://127.0.0.1:{}/", closed_port());
    // `ringws load -w <workers>` with at most LIMIT descriptors.
    let run = |workers: &str| {
        let args = ["load", &url, "-c", "1", "-w", workers, "-d", "300ms", "-q"];
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ringws"));
        command.args(args).stdin(std::process::Stdio::null());
        let limit_descriptors = || {
            let limit = libc::rlimit {
                rlim_cur: LIMIT,
                rlim_max: LIMIT,
            };
            // SAFETY: `limit` is a valid `rlimit`, read by the call only.
            match unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        };
        // SAFETY: the hook runs in the child between fork and exec and only
        // calls setrlimit, which is async-signal-safe, on a local.
        unsafe {
            command.pre_exec(limit_descriptors);
        }
        let mut child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        let status = wait_bounded(&mut child, &args, Duration::from_secs(30));
        (status, stderr)
    };
    for workers in ["126", "200"] {
        let started = Instant::now();
        let (status, stderr) = run(workers);
        assert_eq!(status.code(), Some(2), "-w {workers}: {stderr}");
        assert!(
            stderr.contains(&format!("{workers} workers (-w/--workers)")),
            "{stderr}"
        );
        assert!(stderr.contains("open-file limit (256)"), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(started.elapsed() < Duration::from_secs(10), "{stderr}");
    }
    // Workers the limit leaves room for start (and find the port closed).
    let (status, stderr) = run("4");
    assert_eq!(status.code(), Some(3), "{stderr}");
}
