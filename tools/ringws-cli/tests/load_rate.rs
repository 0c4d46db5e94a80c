//! Open-loop schedules (`--mode rate`, churn with `--rate`) against
//! `ringws serve` on loopback when the server cannot keep up: the window
//! keeps its length, the generator's CPU stays bounded, lateness is
//! charged as latency, and what never went out is reported.

mod common;
mod serve_support;

use std::thread;
use std::time::Duration;

use common::*;
use serve_support::ServeProcess;

/// Far more messages per second than 1,000 connections with one message
/// in flight each can carry: what cannot be sent waits in bulk, so the
/// worker keeps reading echoes and ends the window on time, and what is
/// still owed `--timeout` later is reported behind schedule.
#[test]
fn an_unreachable_rate_keeps_the_window_and_the_cpu_bounded() {
    let outcome = rate_run("1000000", "1000", "1s", &["--timeout", "1s"], None);
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
    assert_eq!(
        messages.sent + messages.behind_schedule,
        1_000_000,
        "the window holds exactly the rate's messages, sent or owed\n{}",
        outcome.stdout
    );
    // Owed messages keep going out for `--timeout` after the window, then
    // their replies get one more.
    assert!(
        report.elapsed_secs < 4.0,
        "elapsed {} s\n{}",
        report.elapsed_secs,
        outcome.stdout
    );
    // A due message costs nothing until a connection can take it: the CPU
    // per message is that of sending and receiving one.
    let per_message = report.cpu.per_message_ns.unwrap_or(f64::MAX);
    assert!(per_message < 50_000.0, "{per_message} ns per message");
}

/// A server stopped for half a second in the middle of the window: the
/// window still lasts `-d`, every message due during the stall is sent
/// once the server is back, and its wait counts as latency.
#[test]
fn a_server_stall_is_charged_as_latency_and_the_window_holds() {
    // Opening 200 connections takes well under the 0.7 s before the stall.
    let stall = (Duration::from_millis(700), Duration::from_millis(500));
    let outcome = rate_run("20000", "200", "2s", &[], Some(stall));
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
    assert_eq!(messages.sent, 40_000, "{}", outcome.stdout);
    assert_eq!(messages.behind_schedule, 0);
    // The server caught up within the window: nothing went out after it.
    assert_eq!(messages.sent_after_window, 0, "{}", outcome.stdout);
    assert!(report.rate_span_secs - report.window_secs < 0.05);
}

/// Runs 4 connections with one message in flight each at 2,000 messages/s
/// for 2 s (plus `extra` arguments) while the server is stopped from 1.5 s
/// after the start for `stall`.
fn rate_with_a_late_stall(stall: Duration, extra: &[&str]) -> Outcome {
    rate_run(
        "2000",
        "4",
        "2s",
        extra,
        Some((Duration::from_millis(1500), stall)),
    )
}

/// Rate mode against a fresh one-worker `ringws serve`, one message in
/// flight per connection, plus `extra` arguments; with `stall` (start,
/// length), the server is stopped that long from that long after the start.
fn rate_run(
    rate: &str,
    connections: &str,
    duration: &str,
    extra: &[&str],
    stall: Option<(Duration, Duration)>,
) -> Outcome {
    let server = ServeProcess::start(&["--workers", "1"]);
    let args: Vec<String> = [
        &server.url()[..],
        "--mode",
        "rate",
        "--rate",
        rate,
        "-c",
        connections,
        "--max-in-flight",
        "1",
        "-d",
        duration,
        "-w",
        "1",
    ]
    .iter()
    .chain(extra)
    .map(|arg| arg.to_string())
    .collect();
    let run = thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        load(&args)
    });
    if let Some((after, length)) = stall {
        thread::sleep(after);
        server.signal(libc::SIGSTOP);
        thread::sleep(length);
        server.signal(libc::SIGCONT);
    }
    run.join().unwrap()
}

/// A stall over the end of the window: the messages owed when it ends are
/// sent once the server is back, stamped with their intended times, so the
/// stall shows in the percentiles. The server did not carry the rate: the
/// rates run to the last echo, and a warning says how many messages went
/// out after the window.
#[test]
fn messages_owed_at_the_end_of_the_window_are_sent_and_measured() {
    let outcome = rate_with_a_late_stall(Duration::from_millis(1000), &[]);
    let report = &outcome.report;
    assert_no_errors(&outcome);
    let messages = &report.messages;
    assert_eq!(messages.sent, 4000, "{}", outcome.stdout);
    assert_eq!(messages.behind_schedule, 0);
    assert_eq!(messages.received, messages.sent);
    let latency = report.latency.message.expect("message latency");
    assert_eq!(latency.count, 4000);
    // About a quarter of the messages fell due during the stall.
    assert!(
        latency.p90_us >= 100_000.0,
        "the stall shows in the percentiles\n{}",
        outcome.stdout
    );
    // Those due from the stall to the end of the window (about 1,000)
    // went out after it, once the server was back half a second later.
    assert!(
        messages.sent_after_window > 400 && messages.sent_after_window < 2000,
        "{}",
        outcome.stdout
    );
    assert_eq!(
        outcome.json["messages"]["sent_after_window"],
        messages.sent_after_window
    );
    assert!(
        report.rate_span_secs >= report.window_secs + 0.2,
        "rates over {} s, window {} s\n{}",
        report.rate_span_secs,
        report.window_secs,
        outcome.stdout
    );
    let honest = messages.received as f64 / report.rate_span_secs;
    assert!(
        (messages.per_sec - honest).abs() <= honest * 1e-9 && messages.per_sec < 1900.0,
        "{} msg/s, not the 2,000 msg/s the server did not carry\n{}",
        messages.per_sec,
        outcome.stdout
    );
    assert!(
        warns(&outcome, messages.sent_after_window, "were sent after it"),
        "{}",
        outcome.stdout
    );
    assert!(!outcome.stdout.contains("never sent"), "{}", outcome.stdout);
}

/// A stall that outlasts `--timeout` after the window: what is still owed
/// then is reported behind schedule, in the JSON and as a warning under the
/// percentiles.
#[test]
fn messages_still_owed_when_the_drain_times_out_are_behind_schedule() {
    let outcome = rate_with_a_late_stall(Duration::from_millis(1800), &["--timeout", "500ms"]);
    let report = &outcome.report;
    let messages = &report.messages;
    assert!(messages.behind_schedule > 200, "{}", outcome.stdout);
    assert_eq!(
        messages.sent + messages.behind_schedule,
        4000,
        "{}",
        outcome.stdout
    );
    let latency = report.latency.message.expect("message latency");
    assert_eq!(latency.count, messages.received);
    assert_eq!(
        report.errors.by_kind.get("timeout: message unanswered"),
        Some(&(messages.sent - messages.received)),
        "{:?}",
        report.errors.by_kind
    );
    assert!(
        warns(
            &outcome,
            messages.behind_schedule,
            "never sent (behind schedule)"
        ),
        "{}",
        outcome.stdout
    );
}

/// Whether the table has a warning line giving `count` messages and `text`.
fn warns(outcome: &Outcome, count: u64, text: &str) -> bool {
    let count = count.to_string();
    outcome.stdout.lines().any(|line| {
        line.starts_with("  warning ")
            && line.replace(',', "").contains(&count)
            && line.contains(text)
    })
}

fn churn_at(rate: &str) -> Outcome {
    let server = ServeProcess::start(&["--workers", "1"]);
    load(&[
        &server.url(),
        "--mode",
        "churn",
        "--rate",
        rate,
        "--concurrency",
        "2",
        "-d",
        "1s",
        "-w",
        "1",
    ])
}

/// Two cycles at a time cannot keep up with 100,000 cycles/s: the cycles
/// that never started are reported, and with those started they make up
/// the schedule exactly.
#[test]
fn churn_cycles_that_never_started_are_behind_schedule() {
    let outcome = churn_at("100000");
    let report = &outcome.report;
    assert_no_errors(&outcome);
    let cycles = report.cycles.expect("churn figures");
    assert!(cycles.completed > 0);
    assert!(cycles.behind_schedule > 50_000, "{}", outcome.stdout);
    assert_eq!(
        report.connections.attempted + cycles.behind_schedule,
        100_000,
        "{}",
        outcome.stdout
    );
    assert_eq!(
        outcome.json["cycles"]["behind_schedule"],
        cycles.behind_schedule
    );
    let line = format!("{} never started (behind schedule)", cycles.behind_schedule);
    assert!(
        outcome
            .stdout
            .lines()
            .any(|row| row.replace(',', "").trim_start() == line),
        "{}",
        outcome.stdout
    );
}

/// A rate two cycles at a time can carry: every cycle due starts, exactly
/// `rate × d` of them.
#[test]
fn churn_at_a_reachable_rate_starts_every_cycle_due() {
    let outcome = churn_at("50");
    let report = &outcome.report;
    assert_no_errors(&outcome);
    let cycles = report.cycles.expect("churn figures");
    assert_eq!(cycles.behind_schedule, 0);
    assert_eq!(report.connections.attempted, 50);
    assert_eq!(cycles.completed, 50);
    assert!(
        !outcome.stdout.contains("behind schedule"),
        "{}",
        outcome.stdout
    );
}
