//! SIGINT or SIGTERM ends a `ringws load` run early: the window ends, the
//! connections close, and the report of what was measured is printed and
//! written, with the signal's exit status. A second signal exits at once,
//! leaving the results files of an earlier run as they were.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ringws_cli::load::LoadReport;

/// What the results files hold before the run: an earlier run's results.
const EARLIER_REPORT: &str = "earlier report\n";
const EARLIER_HISTOGRAMS: &str = "earlier histograms\n";

/// A `ringws load` child writing its stdout, stderr, `--json` and
/// `--hist-out` to files; the results files hold an earlier run's results
/// when it starts.
struct LoadChild {
    child: Child,
    args: Vec<String>,
    stdout: PathBuf,
    stderr: PathBuf,
    json: PathBuf,
    hist: PathBuf,
}

impl LoadChild {
    fn start(args: &[&str]) -> LoadChild {
        let (stdout, stderr, json, hist) = (
            temp_path("stdout"),
            temp_path("stderr"),
            temp_path("report.json"),
            temp_path("histograms.hlog"),
        );
        std::fs::write(&json, EARLIER_REPORT).unwrap();
        std::fs::write(&hist, EARLIER_HISTOGRAMS).unwrap();
        let mut all: Vec<String> = ["load"].iter().chain(args).map(|s| s.to_string()).collect();
        all.extend(["--progress".into(), "--json".into()]);
        all.push(json.to_str().unwrap().into());
        all.push("--hist-out".into());
        all.push(hist.to_str().unwrap().into());
        let child = Command::new(env!("CARGO_BIN_EXE_ringws"))
            .args(&all)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        LoadChild {
            child,
            args: all,
            stdout,
            stderr,
            json,
            hist,
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits (at most 20 s) until stderr has a line `ready` accepts.
    fn wait_for_line(&self, what: &str, ready: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.stderr().lines().any(&ready) {
            assert!(
                Instant::now() < deadline,
                "no {what} within 20 s; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a progress line with at least one echo.
    fn wait_for_echoes(&self) {
        self.wait_for_line("progress line with echoes", |line| {
            line.starts_with('[') && !line.contains(" 0 messages")
        });
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: `kill` takes any pid and signal number; the child is ours
        // and has not been waited for, so its pid is not reused.
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Waits at most `limit` for the exit; returns its status code.
    fn exit_code(&mut self, limit: Duration) -> Option<i32> {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        wait_bounded(&mut self.child, &args, limit).code()
    }

    fn report(&self) -> LoadReport {
        let text = std::fs::read_to_string(&self.json)
            .unwrap_or_else(|error| panic!("no JSON report ({error}); stderr:\n{}", self.stderr()));
        serde_json::from_str(&text).unwrap()
    }

    /// The results files' contents, once the child has exited: the report
    /// and the histograms, with no file left beside either.
    fn results_files(&self) -> (String, String) {
        assert_eq!(left_beside(&self.json), Vec::<String>::new());
        assert_eq!(left_beside(&self.hist), Vec::<String>::new());
        let read = |path: &PathBuf| std::fs::read_to_string(path).unwrap_or_default();
        (read(&self.json), read(&self.hist))
    }
}

impl Drop for LoadChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for path in [&self.stdout, &self.stderr, &self.json, &self.hist] {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[test]
fn a_signal_ends_the_window_and_reports_what_was_measured() {
    for (signal, status) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let server = ScriptedServer::start(|_| Script::Echo);
        let url = server.url();
        let mut load = LoadChild::start(&[&url, "-c", "4", "-d", "60s"]);
        load.wait_for_echoes();
        let signalled = Instant::now();
        load.signal(signal);
        assert_eq!(
            load.exit_code(Duration::from_secs(20)),
            Some(status),
            "signal {signal}; stderr:\n{}",
            load.stderr()
        );
        let report = load.report();
        let stdout = load.stdout();
        assert!(report.interrupted, "{stdout}");
        // What was measured replaced the earlier results whole.
        let (_, histograms) = load.results_files();
        assert!(histograms.contains("Tag=message,"), "{histograms}");
        assert!(
            report.window_secs > 0.0 && report.window_secs < 30.0,
            "window {} s",
            report.window_secs
        );
        assert!(report.messages.received > 0, "{stdout}");
        assert_eq!(report.messages.received, report.messages.sent, "{stdout}");
        assert_eq!(report.errors.total, 0, "{:?}", report.errors.by_kind);
        // Every connection closed with the closing handshake, as at the
        // end of a run.
        assert_eq!(report.server_close_codes.get(&1000), Some(&4), "{stdout}");
        assert!(stdout.contains("(interrupted)"), "{stdout}");
        assert!(load.stderr().contains("ringws load: interrupted;"));
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "the run ended {:?} after the signal",
            signalled.elapsed()
        );
    }
}

/// The server never echoes, so after the first SIGINT the run waits
/// (`--timeout 30s`) for replies that never come; the second exits at once,
/// and the results files still hold the earlier run's results (they were
/// emptied when the run started).
#[test]
fn a_second_signal_exits_at_once_leaving_the_results_files_as_they_were() {
    let server = ScriptedServer::start(|_| Script::WrongPongs);
    let url = server.url();
    let mut load = LoadChild::start(&[&url, "-c", "2", "-d", "60s", "--timeout", "30s"]);
    load.wait_for_line("progress line with open connections", |line| {
        line.contains(" 2 open")
    });
    load.signal(libc::SIGINT);
    load.wait_for_line("interrupt notice", |line| {
        line.starts_with("ringws load: interrupted;")
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        load.child.try_wait().unwrap().is_none(),
        "ended before the replies' timeout"
    );
    let signalled = Instant::now();
    load.signal(libc::SIGINT);
    assert_eq!(load.exit_code(Duration::from_secs(5)), Some(130));
    assert!(signalled.elapsed() < Duration::from_secs(2));
    assert_eq!(load.stdout(), "", "a report was printed");
    let (report, histograms) = load.results_files();
    assert_eq!(report, EARLIER_REPORT);
    assert_eq!(histograms, EARLIER_HISTOGRAMS);
}

/// Interrupted while the connections are still opening (`--ramp`): no
/// window, the connections that opened are closed, and the report says so.
#[test]
fn a_signal_before_the_window_reports_no_window() {
    let server = ScriptedServer::start(|_| Script::Echo);
    let url = server.url();
    let mut load = LoadChild::start(&[&url, "--mode", "hold", "-c", "40", "--ramp", "4"]);
    load.wait_for_line("progress line with an open connection", |line| {
        line.starts_with('[') && !line.contains(" 0 open")
    });
    load.signal(libc::SIGINT);
    assert_eq!(load.exit_code(Duration::from_secs(20)), Some(130));
    let report = load.report();
    let stdout = load.stdout();
    assert!(report.interrupted);
    assert_eq!(report.window_secs, 0.0);
    assert!(
        (1..40).contains(&report.connections.opened),
        "{} opened",
        report.connections.opened
    );
    assert_eq!(report.errors.total, 0, "{:?}", report.errors.by_kind);
    assert_eq!(
        report.server_close_codes.get(&1000),
        Some(&report.connections.opened),
        "{stdout}"
    );
    assert!(stdout.contains("no window (interrupted)"), "{stdout}");
}
