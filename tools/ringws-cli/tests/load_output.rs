//! Output formats: the JSON report carries what the table shows, and saved
//! histograms merge exactly (in the library and with `ringws load merge`).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use hdrhistogram::Histogram;
use ringws_cli::load::hist::{save_histograms, MergedHistograms};
use ringws_cli::load::LatencyHistograms;

/// The first number after `label` on the table line starting with `row`.
fn table_number(table: &str, row: &str, label: &str) -> u64 {
    let line = table
        .lines()
        .find(|line| line.trim_start().starts_with(row))
        .unwrap_or_else(|| panic!("no {row:?} row in\n{table}"));
    let before = line
        .split(label)
        .next()
        .unwrap_or_else(|| panic!("no {label:?} in {line:?}"));
    let number = before
        .split_whitespace()
        .last()
        .unwrap()
        .trim_end_matches(',')
        .replace(',', "");
    number
        .parse()
        .unwrap_or_else(|_| panic!("no number before {label:?} in {line:?}"))
}

#[test]
fn json_report_has_the_fields_of_the_table() {
    let peer = EchoPeer::start(PeerKind::Python, &[]);
    let outcome = load(&[&peer.url(), "-c", "2", "-d", "700ms", "-w", "1"]);
    let json = &outcome.json;
    for key in [
        "mode",
        "url",
        "workers",
        "payload_size",
        "elapsed_secs",
        "window_secs",
        "rate_span_secs",
        "connections",
        "messages",
        "wire",
        "latency",
        "server_close_codes",
        "errors",
        "cpu",
    ] {
        assert!(json.get(key).is_some(), "JSON report lacks {key:?}: {json}");
    }
    assert_eq!(json["mode"], "echo");
    for key in [
        "sent",
        "received",
        "per_sec",
        "bytes_per_sec",
        "unanswered",
        "sent_after_window",
    ] {
        assert!(json["messages"][key].is_number(), "messages.{key}");
    }
    for key in [
        "count",
        "min_us",
        "p50_us",
        "p90_us",
        "p99_us",
        "p99_9_us",
        "p99_99_us",
        "max_us",
    ] {
        assert!(
            json["latency"]["message"][key].is_number(),
            "latency.message.{key}"
        );
    }
    for key in ["opened", "failed"] {
        assert!(json["connections"][key].is_number(), "connections.{key}");
    }
    assert_eq!(json["errors"]["total"], 0);
    assert!(json["errors"]["by_kind"].is_object());
    assert_eq!(json["server_close_codes"]["1000"], 2);
    // The table and the JSON agree.
    let table = &outcome.stdout;
    let report = &outcome.report;
    assert_eq!(
        table_number(table, "messages", "sent"),
        report.messages.sent
    );
    assert_eq!(
        table_number(table, "messages", "echoed"),
        report.messages.received
    );
    assert_eq!(
        table_number(table, "conns", "ok"),
        report.connections.opened
    );
    assert_eq!(
        table_number(table, "conns", "failed"),
        report.connections.failed
    );
    let latency = report.latency.message.unwrap();
    let count_in_table: u64 = table
        .lines()
        .find(|line| line.trim_start().starts_with("message "))
        .and_then(|line| line.split_whitespace().nth(1))
        .map(|count| count.replace(',', "").parse().unwrap())
        .unwrap();
    assert_eq!(count_in_table, latency.count);
    assert!(table.contains("errors     none"));
}

#[test]
fn json_to_stdout_moves_the_table_to_stderr() {
    let peer = EchoPeer::start(PeerKind::Node, &[]);
    let url = peer.url();
    let (status, stdout, stderr) = ringws(&[
        "load", &url, "-c", "1", "-d", "300ms", "-w", "1", "--json", "-",
    ]);
    assert!(status.success(), "{stderr}");
    let report: ringws_cli::load::LoadReport = serde_json::from_str(&stdout).unwrap();
    assert!(report.messages.received > 0);
    assert!(stderr.contains("ringws load echo"), "{stderr}");
    let (status, stdout, stderr) =
        ringws(&["load", &url, "-c", "1", "-d", "300ms", "-w", "1", "--quiet"]);
    assert!(status.success());
    assert!(stdout.is_empty() && stderr.is_empty(), "{stdout}{stderr}");
}

fn filled(values: impl IntoIterator<Item = u64>) -> Histogram<u64> {
    let mut histogram = LatencyHistograms::default().message;
    for value in values {
        histogram.record(value).unwrap();
    }
    histogram
}

#[test]
fn saved_histograms_merge_to_the_combined_recording() {
    let first: Vec<u64> = (0..20_000u64)
        .map(|i| 15_000 + (i * 7919) % 40_000)
        .collect();
    let second: Vec<u64> = (0..5_000u64)
        .map(|i| 2_000_000 + (i * 104_729) % 9_000_000)
        .collect();
    let mut a = LatencyHistograms {
        message: filled(first.iter().copied()),
        ..LatencyHistograms::default()
    };
    a.connect = filled([40_000, 41_000]);
    let b = LatencyHistograms {
        message: filled(second.iter().copied()),
        close: filled([77_000]),
        ..LatencyHistograms::default()
    };
    let paths: Vec<PathBuf> = vec![temp_path("a.hlog"), temp_path("b.hlog")];
    save_histograms(&paths[0], &a, Duration::from_secs(1)).unwrap();
    save_histograms(&paths[1], &b, Duration::from_secs(1)).unwrap();
    let merged = MergedHistograms::from_files(&paths).unwrap();
    let combined = filled(first.iter().chain(&second).copied());
    assert_eq!(merged.by_tag["message"], combined);
    assert_eq!(merged.by_tag["connect"], a.connect);
    assert_eq!(merged.by_tag["close"], b.close);
    assert_eq!(merged.by_tag.len(), 3);
    // The same merge from the command line.
    let (status, stdout, stderr) = ringws(&[
        "load",
        "merge",
        paths[0].to_str().unwrap(),
        paths[1].to_str().unwrap(),
    ]);
    assert!(status.success(), "{stderr}");
    assert_eq!(
        merged.table(),
        stdout
            .lines()
            .skip(1)
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    );
    assert!(stdout.contains("25,000"), "{stdout}");
    for path in &paths {
        let _ = std::fs::remove_file(path);
    }
}

#[test]
fn runs_saved_with_hist_out_merge_exactly() {
    let peer = EchoPeer::start(PeerKind::Python, &[]);
    let url = peer.url();
    let paths = [temp_path("run1.hlog"), temp_path("run2.hlog")];
    let mut reports = Vec::new();
    for path in &paths {
        let outcome = load(&[
            &url,
            "-c",
            "2",
            "-d",
            "400ms",
            "-w",
            "1",
            "--hist-out",
            path.to_str().unwrap(),
        ]);
        assert_no_errors(&outcome);
        reports.push(outcome.report);
    }
    let merged = MergedHistograms::from_files(&paths).unwrap();
    let message = &merged.by_tag["message"];
    let received: u64 = reports.iter().map(|report| report.messages.received).sum();
    assert_eq!(message.len(), received);
    let max_us = reports
        .iter()
        .map(|report| report.latency.message.unwrap().max_us)
        .fold(0.0, f64::max);
    assert_eq!(message.max() as f64 / 1000.0, max_us);
    assert_eq!(merged.by_tag["connect"].len(), 4);
    let (status, stdout, _) = ringws(&[
        "load",
        "merge",
        paths[0].to_str().unwrap(),
        paths[1].to_str().unwrap(),
    ]);
    assert!(status.success());
    assert!(stdout.contains("merged 2 file(s)"), "{stdout}");
    for path in &paths {
        let _ = std::fs::remove_file(path);
    }
}

/// Runs `ringws args` with its standard output a pipe whose reader is
/// already gone (as after `| head -3`); its exit status and stderr.
fn with_stdout_closed(args: &[&str]) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    use std::process::{Command, Stdio};

    let mut child = Command::new(env!("CARGO_BIN_EXE_ringws"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = wait_bounded(&mut child, args, Duration::from_secs(30));
    (status, reader.join().unwrap())
}

/// A reader that stops early closes the pipe: the rest of the table (or
/// of the merged percentiles) is dropped quietly, no panic, and the exit
/// status is the run's own.
#[test]
fn a_closed_stdout_ends_the_output_quietly() {
    // A port nothing listens on: the run ends at once, with a table.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}/");
    let (status, stderr) = with_stdout_closed(&["load", &url, "-c", "1", "-d", "1s", "-w", "1"]);
    // The run's own status (nothing measured), and only its reason on stderr.
    assert_eq!(status.code(), Some(3), "{status}: {stderr}");
    assert_eq!(
        stderr.trim(),
        "ringws load: nothing was measured: no connection opened"
    );
    let path = temp_path("closed-stdout.hlog");
    let histograms = LatencyHistograms {
        message: filled([10_000, 20_000]),
        ..LatencyHistograms::default()
    };
    save_histograms(&path, &histograms, Duration::from_secs(1)).unwrap();
    let (status, stderr) = with_stdout_closed(&["load", "merge", path.to_str().unwrap()]);
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let _ = std::fs::remove_file(path);
}

#[test]
fn merge_rejects_files_that_are_not_histogram_logs() {
    let path = temp_path("junk.hlog");
    std::fs::write(&path, "Tag=message,0,1,2,@@@\n").unwrap();
    let (status, _, stderr) = ringws(&["load", "merge", path.to_str().unwrap()]);
    assert!(!status.success());
    assert!(
        stderr.contains("not an HdrHistogram interval log"),
        "{stderr}"
    );
    let _ = std::fs::remove_file(path);
}

/// `--messages 0` makes each churn cycle connect, upgrade and close, and
/// the report says so (the JSON's `cycles.messages_per_cycle`, the table's
/// messages row) instead of showing message rates of zero.
#[test]
fn churn_without_messages_reports_connect_upgrade_close_cycles() {
    let server = ScriptedServer::start(|_| Script::Echo);
    let url = server.url();
    let outcome = load(&[
        &url,
        "--mode",
        "churn",
        "--messages",
        "0",
        "--concurrency",
        "2",
        "--cycles",
        "20",
        "-w",
        "1",
        "-d",
        "10s",
    ]);
    assert_no_errors(&outcome);
    let report = &outcome.report;
    let cycles = report.cycles.expect("churn reports cycles");
    assert_eq!(cycles.completed, 20);
    assert_eq!(cycles.messages_per_cycle, Some(0));
    assert_eq!(outcome.json["cycles"]["messages_per_cycle"], 0);
    assert_eq!(report.messages.sent, 0);
    let seen = server.seen();
    assert_eq!(seen.len(), 20);
    assert!(seen
        .iter()
        .all(|conn| conn.upgraded.is_some() && conn.first_message.is_none()));
    let table = &outcome.stdout;
    assert!(
        table.contains("messages   none: each cycle connects, upgrades and closes"),
        "{table}"
    );
    assert!(!table.contains("msg/s"), "{table}");
    assert!(!table.contains("-byte"), "{table}");
}
