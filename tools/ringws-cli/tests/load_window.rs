//! The sending window is one interval for the whole run: every worker
//! starts it once every worker's connections have opened or failed, a
//! worker without an open connection adds nothing to it, and in rate mode
//! the connections that opened carry the whole `--rate`.
//!
//! Two workers and two source addresses put worker *i*'s connections on
//! the *i*-th address, which the scripted server treats as the test says.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;

/// Worker 1's address (worker 0 uses 127.0.0.1).
fn second_worker(peer: IpAddr) -> bool {
    peer == IpAddr::from([127, 0, 0, 2])
}

/// Runs `ringws load <args>` with two workers, each on its own source
/// address, against a scripted server that echoes worker 0's connections
/// and treats worker 1's as `worker_1` says.
fn load_with_worker_1(worker_1: Script, args: &[&str]) -> (ScriptedServer, Outcome) {
    let server = ScriptedServer::start(move |peer| match second_worker(peer) {
        true => worker_1,
        false => Script::Echo,
    });
    let url = server.url();
    let mut all = vec![&url[..], "-w", "2", "--source-addrs", "127.0.0.1,127.0.0.2"];
    all.extend_from_slice(args);
    let outcome = load(&all);
    (server, outcome)
}

/// The run's window is worker 0's 500 ms.
fn assert_half_second_window(outcome: &Outcome) {
    assert!(
        (0.49..0.6).contains(&outcome.report.window_secs),
        "window {} s\n{}",
        outcome.report.window_secs,
        outcome.stdout
    );
}

/// Worker 1's handshakes take 600 ms: worker 0 sends nothing until they
/// are done, so every worker's window is the same 500 ms.
#[test]
fn workers_start_their_windows_together_after_the_slowest_opening() {
    let (server, outcome) = load_with_worker_1(
        Script::DelayUpgrade(Duration::from_millis(600)),
        &["-c", "2", "-d", "500ms"],
    );
    let report = &outcome.report;
    assert_no_errors(&outcome);
    assert_eq!(report.connections.opened, 2);
    let seen = server.seen();
    let slow_upgrade = seen
        .iter()
        .find(|conn| second_worker(conn.peer))
        .and_then(|conn| conn.upgraded)
        .expect("worker 1's connection was upgraded");
    for conn in &seen {
        let first = conn.first_message.expect("every connection sent messages");
        assert!(
            first >= slow_upgrade,
            "{}: first message {:?} before worker 1's connection opened\n{}",
            conn.peer,
            slow_upgrade.duration_since(first),
            outcome.stdout
        );
    }
    assert_half_second_window(&outcome);
}

/// Worker 1's connections are refused after a second: it never has a
/// window, so the run's window is worker 0's 500 ms, not the second worker
/// 1 spent failing, and the rates are per second of it.
#[test]
fn a_worker_whose_connections_all_failed_adds_no_window() {
    let (_server, outcome) = load_with_worker_1(
        Script::Refuse(Duration::from_secs(1)),
        &["-c", "2", "-d", "500ms"],
    );
    let report = &outcome.report;
    assert_eq!(report.connections.opened, 1);
    assert_eq!(report.connections.failed, 1);
    assert_eq!(
        report.errors.by_kind.get("handshake refused: HTTP 403"),
        Some(&1)
    );
    assert_half_second_window(&outcome);
    let messages = &report.messages;
    assert!(messages.received > 0);
    // The rates run to the last echo, a round trip past that window.
    assert!(
        report.rate_span_secs >= report.window_secs
            && report.rate_span_secs < report.window_secs + 0.05,
        "rates over {} s\n{}",
        report.rate_span_secs,
        outcome.stdout
    );
    let expected = messages.received as f64 / report.rate_span_secs;
    assert!(
        (messages.per_sec - expected).abs() <= expected * 1e-9,
        "{} msg/s\n{}",
        messages.per_sec,
        outcome.stdout
    );
}

/// Rate mode with half the connections refused: the rate is split over
/// the connections that opened, so the whole `--rate` is sent.
#[test]
fn the_rate_share_of_failed_connections_goes_to_those_that_opened() {
    let (_server, outcome) = load_with_worker_1(
        Script::Refuse(Duration::ZERO),
        &["--mode", "rate", "--rate", "1000", "-c", "4", "-d", "1s"],
    );
    let report = &outcome.report;
    assert_eq!(report.connections.opened, 2, "{}", outcome.stdout);
    let messages = &report.messages;
    assert_eq!(messages.sent, 1000, "{}", outcome.stdout);
    assert_eq!(messages.received, 1000, "{}", outcome.stdout);
    assert_eq!(messages.behind_schedule, 0);
    assert!(
        (900.0..=1010.0).contains(&messages.per_sec),
        "{} msg/s\n{}",
        messages.per_sec,
        outcome.stdout
    );
}

/// Worker 1's connections are dropped halfway through the window: the
/// rest of its share can no longer be sent and is reported behind
/// schedule, with the warning, so the schedule adds up.
#[test]
fn the_rate_share_of_a_worker_that_lost_its_connections_is_behind_schedule() {
    let (_server, outcome) = load_with_worker_1(
        Script::EchoFor(Duration::from_millis(500)),
        &["--mode", "rate", "--rate", "1000", "-c", "4", "-d", "1s"],
    );
    let report = &outcome.report;
    let messages = &report.messages;
    assert_eq!(
        messages.sent + messages.behind_schedule,
        1000,
        "{}",
        outcome.stdout
    );
    // Worker 1 had about 250 of its 500 messages left.
    assert!(
        (150..=350).contains(&messages.behind_schedule),
        "{}",
        outcome.stdout
    );
    assert!(
        outcome
            .stdout
            .contains("messages due were never sent (behind schedule)"),
        "{}",
        outcome.stdout
    );
}
