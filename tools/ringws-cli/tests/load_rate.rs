//! Open-loop (`--mode rate`) schedules against `ringws serve` on loopback
//! when the server cannot keep up: the window keeps its length, the
//! generator's CPU stays bounded, and lateness is charged as latency.

mod common;
mod serve_support;

use std::thread;
use std::time::Duration;

use common::*;
use serve_support::ServeProcess;

/// Far more messages per second than 1,000 connections with one message
/// in flight each can carry: what cannot be sent waits in bulk, so the
/// worker keeps reading echoes and ends the window on time.
#[test]
fn an_unreachable_rate_keeps_the_window_and_the_cpu_bounded() {
    let server = ServeProcess::start(&["--workers", "1"]);
    let outcome = load(&[
        &server.url(),
        "--mode",
        "rate",
        "--rate",
        "1000000",
        "-c",
        "1000",
        "--max-in-flight",
        "1",
        "-d",
        "1s",
        "-w",
        "1",
    ]);
    let report = &outcome.report;
    assert_no_errors(&outcome);
    assert!(
        report.window_secs < 1.25,
        "window {} s\n{}",
        report.window_secs,
        outcome.stdout
    );
    let messages = &report.messages;
    assert_eq!(messages.sent, messages.received, "{}", outcome.stdout);
    assert!(
        messages.received > 20_000,
        "the connections kept carrying echoes\n{}",
        outcome.stdout
    );
    let scheduled = messages.sent + messages.behind_schedule;
    assert!(
        scheduled.abs_diff(1_000_000) <= 1_000,
        "{scheduled} scheduled\n{}",
        outcome.stdout
    );
    assert!(
        report.cpu.user_secs < 1.0,
        "user CPU {} s\n{}",
        report.cpu.user_secs,
        outcome.stdout
    );
}

/// A server stopped for half a second in the middle of the window: the
/// window still lasts `-d`, every message due during the stall is sent
/// once the server is back, and its wait counts as latency.
#[test]
fn a_server_stall_is_charged_as_latency_and_the_window_holds() {
    let server = ServeProcess::start(&["--workers", "1"]);
    let url = server.url();
    let run = thread::spawn(move || {
        load(&[
            &url,
            "--mode",
            "rate",
            "--rate",
            "20000",
            "-c",
            "200",
            "--max-in-flight",
            "1",
            "-d",
            "2s",
            "-w",
            "1",
        ])
    });
    // Opening 200 connections takes well under the 0.7 s before the stall.
    thread::sleep(Duration::from_millis(700));
    server.signal(libc::SIGSTOP);
    thread::sleep(Duration::from_millis(500));
    server.signal(libc::SIGCONT);
    let outcome = run.join().unwrap();
    let report = &outcome.report;
    assert_no_errors(&outcome);
    assert!(
        (1.95..2.3).contains(&report.window_secs),
        "window {} s\n{}",
        report.window_secs,
        outcome.stdout
    );
    let messages = &report.messages;
    assert_eq!(messages.sent, messages.received, "{}", outcome.stdout);
    let latency = report.latency.message.expect("message latency");
    assert_eq!(latency.count, messages.received);
    assert!(
        latency.max_us >= 400_000.0,
        "the stall is charged to the messages due during it\n{}",
        outcome.stdout
    );
    let scheduled = messages.sent + messages.behind_schedule;
    assert!(
        scheduled.abs_diff(40_000) <= 100,
        "{scheduled} scheduled\n{}",
        outcome.stdout
    );
}
