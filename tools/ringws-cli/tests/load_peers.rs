//! `ringws load` in every mode against foreign echo servers (Python
//! `websockets`, Node `ws`) on loopback: short runs, few connections, sane
//! and self-consistent figures, no errors.

mod common;

use std::time::Duration;

use common::*;
use ringws_cli::load::{run, LoadConfig, LoadReport, Mode};

/// A short closed loop against `kind`, checked for sane, self-consistent
/// figures, no errors and reused frame buffers.
fn echo(kind: PeerKind, payload_args: &[&str]) -> LoadReport {
    let peer = EchoPeer::start(kind, &[]);
    let url = peer.url();
    let mut args = vec![&url[..], "-c", "3", "-p", "4", "-d", "1s", "-w", "1"];
    args.extend_from_slice(payload_args);
    let outcome = load(&args);
    let report = &outcome.report;
    assert_no_errors(&outcome);
    let messages = &report.messages;
    assert!(messages.received > 0, "{}", outcome.stdout);
    // Closed loop: every message sent was echoed (and verified) before the
    // connections closed.
    assert_eq!(messages.sent, messages.received);
    assert_eq!(messages.unanswered, 0);
    assert_eq!(
        messages.payload_bytes_received,
        messages.received * report.payload_size as u64
    );
    assert!(messages.per_sec > 0.0 && messages.bytes_per_sec > 0.0);
    // The closed loop sends nothing after the window: its rates run to the
    // echoes of the messages then in flight, one round trip later.
    assert_eq!(messages.sent_after_window, 0);
    let round_trip = report.latency.message.map_or(0.0, |m| m.max_us / 1e6);
    assert!(
        report.rate_span_secs >= report.window_secs
            && report.rate_span_secs <= report.window_secs + round_trip + 0.005,
        "{}",
        outcome.stdout
    );
    // Frame buffers are reused, not allocated per message: at most two for
    // each message in flight (3 connections × 4), however long the run.
    assert!(
        messages.frame_buffers <= 2 * 3 * 4,
        "{} frame buffers for {} messages",
        messages.frame_buffers,
        messages.sent
    );
    assert!(messages.sent > 4 * 2 * 3 * 4, "{} messages", messages.sent);
    let latency = report.latency.message.expect("message latency");
    assert_eq!(latency.count, messages.received);
    assert_ordered("message", &latency);
    assert_ordered("connect", &report.latency.connect.expect("connect latency"));
    assert_ordered("handshake", &report.latency.handshake.expect("handshake"));
    assert_ordered("close", &report.latency.close.expect("close latency"));
    assert_eq!(report.connections.opened, 3);
    assert_eq!(report.connections.failed, 0);
    assert_eq!(report.server_close_codes, [(1000, 3)].into());
    assert!(report.wire.bytes_sent > messages.payload_bytes_sent);
    assert!(report.cpu.per_message_ns.is_some_and(|ns| ns > 0.0));
    assert_eq!(report.cpu.per_worker.len(), 1);
    outcome.report
}

#[test]
fn echo_against_python_websockets() {
    echo(PeerKind::Python, &["-s", "100"]);
}

#[test]
fn echo_text_against_node_ws() {
    echo(PeerKind::Node, &["-s", "3000", "--text"]);
}

/// Echoes big enough to be masked in place and sent from the buffer they
/// arrived in (one receive buffer), and echoes assembled from several,
/// which are sent on in the buffer they were assembled in: neither needs a
/// new buffer per message.
#[test]
fn large_echoes_against_python_websockets_are_sent_on_in_place_and_assembled() {
    let in_one_buffer = echo(PeerKind::Python, &["-s", "20000"]);
    assert!(
        in_one_buffer.reactor.payloads_sent_in_place > 0,
        "{:?}",
        in_one_buffer.reactor
    );
    let assembled = echo(PeerKind::Python, &["-s", "150000", "--text"]);
    assert_eq!(assembled.reactor.payloads_sent_in_place, 0);
}

fn rate(kind: PeerKind) {
    let peer = EchoPeer::start(kind, &[]);
    let url = peer.url();
    let outcome = load(&[
        &url, "--mode", "rate", "--rate", "2000", "-c", "4", "-d", "1s", "-w", "2",
    ]);
    let report = &outcome.report;
    assert_no_errors(&outcome);
    let messages = &report.messages;
    // The schedule issues `rate` messages per second of `-d`, exactly:
    // sent or (if every connection stayed full) counted as behind schedule.
    assert_eq!(
        messages.sent + messages.behind_schedule,
        2000,
        "{}",
        outcome.stdout
    );
    assert!(messages.received > 0);
    assert_eq!(messages.sent, messages.received, "{}", outcome.stdout);
    let latency = report.latency.message.expect("message latency");
    assert_eq!(latency.count, messages.received);
    assert_ordered("message", &latency);
    assert_eq!(report.connections.opened, 4);
    assert_eq!(report.server_close_codes, [(1000, 4)].into());
}

#[test]
fn rate_against_python_websockets() {
    rate(PeerKind::Python);
}

#[test]
fn rate_against_node_ws() {
    rate(PeerKind::Node);
}

fn churn(kind: PeerKind) {
    let peer = EchoPeer::start(kind, &[]);
    let url = peer.url();
    let outcome = load(&[
        &url,
        "--mode",
        "churn",
        "--concurrency",
        "2",
        "--messages",
        "2",
        "--close-code",
        "1001",
        "-d",
        "1s",
        "-w",
        "1",
    ]);
    let report = &outcome.report;
    assert_no_errors(&outcome);
    let cycles = report.cycles.expect("churn figures");
    assert!(cycles.completed > 0 && cycles.per_sec > 0.0);
    // Every cycle: one connection, two echoes, our 1001 answered with 1001.
    assert_eq!(report.connections.opened, cycles.completed);
    assert_eq!(report.messages.received, 2 * cycles.completed);
    assert_eq!(report.server_close_codes, [(1001, cycles.completed)].into());
    for (name, summary) in [
        ("connect", report.latency.connect),
        ("handshake", report.latency.handshake),
        ("close", report.latency.close),
    ] {
        let summary = summary.unwrap_or_else(|| panic!("{name} latency"));
        assert_eq!(summary.count, cycles.completed, "{name}");
        assert_ordered(name, &summary);
    }
    assert!(report.connections.peak_open <= 2);
    assert!(report.cpu.per_cycle_ns.is_some_and(|ns| ns > 0.0));
}

#[test]
fn churn_against_python_websockets() {
    churn(PeerKind::Python);
}

#[test]
fn churn_against_node_ws() {
    churn(PeerKind::Node);
}

/// `--cycles` below the number of workers leaves some worker without a
/// cycle: it has nothing to do and ends at once, so the run ends when the
/// cycles are done, not when `-d` runs out (with or without `--rate`).
#[test]
fn churn_with_fewer_cycles_than_workers_ends_when_they_are_done() {
    let peer = EchoPeer::start(PeerKind::Node, &[]);
    let url = peer.url();
    for rate in [None, Some("100")] {
        let mut args = vec![
            &url[..],
            "--mode",
            "churn",
            "--concurrency",
            "4",
            "--cycles",
            "1",
            "-d",
            "3s",
            "-w",
            "2",
        ];
        if let Some(rate) = rate {
            args.extend_from_slice(&["--rate", rate]);
        }
        let outcome = load(&args);
        let report = &outcome.report;
        assert_no_errors(&outcome);
        assert_eq!(report.cycles.expect("churn figures").completed, 1);
        assert_eq!(report.connections.attempted, 1);
        assert!(
            report.elapsed_secs < 1.5,
            "rate {rate:?}: elapsed {} s\n{}",
            report.elapsed_secs,
            outcome.stdout
        );
    }
}

fn hold(kind: PeerKind, extra: &[&str]) {
    let peer = EchoPeer::start(kind, &[]);
    let url = peer.url();
    let mut args = vec![
        &url[..],
        "--mode",
        "hold",
        "-c",
        "6",
        "--ramp",
        "60",
        "--ping-interval",
        "100ms",
        "-d",
        "1s",
        "-w",
        "2",
    ];
    args.extend_from_slice(extra);
    let outcome = load(&args);
    let report = &outcome.report;
    assert_no_errors(&outcome);
    assert_eq!(report.connections.opened, 6);
    assert_eq!(report.connections.peak_open, 6);
    let pings = report.pings.expect("ping figures");
    assert!(pings.sent >= 6, "{pings:?}");
    assert_eq!(pings.answered, pings.sent);
    let rtt = report.latency.ping.expect("ping latency");
    assert_eq!(rtt.count, pings.answered);
    assert_ordered("ping", &rtt);
    assert_eq!(report.messages.sent, 0);
    assert_eq!(report.server_close_codes, [(1000, 6)].into());
    // Ramping 6 connections at 60/s takes about 0.1 s before the 1 s hold.
    assert!(report.elapsed_secs >= 1.05, "{}", report.elapsed_secs);
}

#[test]
fn hold_against_python_websockets_over_source_addresses() {
    hold(PeerKind::Python, &["--source-addrs", "127.0.0.2-127.0.0.4"]);
}

#[test]
fn hold_against_node_ws() {
    hold(PeerKind::Node, &[]);
}

/// The library entry point a benchmark harness uses in-process: CPU time
/// per worker and per message come back with the figures.
#[test]
fn library_run_reports_cpu_per_message() {
    let peer = EchoPeer::start(PeerKind::Node, &[]);
    let mut config = LoadConfig::new(peer.url(), Mode::Echo);
    config.connections = 2;
    config.pipeline = 8;
    config.duration = Duration::from_millis(700);
    config.workers = Some(2);
    let report = run(&config).unwrap();
    assert_eq!(report.errors.total, 0, "{report}");
    assert!(report.messages.received > 0);
    assert_eq!(report.cpu.per_worker.len(), 2);
    let total: f64 = report.cpu.per_worker.iter().flatten().sum();
    assert!(total > 0.0);
    let expected = total * 1e9 / (2 * report.messages.received) as f64;
    let per_message = report.cpu.per_message_ns.unwrap();
    assert!(
        (per_message - expected).abs() <= expected * 1e-6,
        "{per_message} vs {expected}"
    );
    // The histogram behind the summary is handed out too.
    assert_eq!(report.histograms.message.len(), report.messages.received);
}
