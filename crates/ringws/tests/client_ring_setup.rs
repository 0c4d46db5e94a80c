//! A client asked for a less capable io_uring setup (`ring_setup`) than
//! the kernel grants, against a server asked for the same: text and binary
//! echo (one message larger than a receive buffer) and a clean close, in
//! the modes of Linux 5.19 to 6.0 (`COOP_TASKRUN`) and of no optional flag.

mod client_common;

use client_common::*;
use ringws::{CloseKind, Initiator, RingMode, RingSetup, Stats};

/// Asserts that every worker got `mode`.
fn assert_ring_mode(side: &str, stats: &Stats, mode: RingMode) {
    assert!(!stats.workers.is_empty());
    for (index, worker) in stats.workers.iter().enumerate() {
        assert_eq!(worker.ring_mode, Some(mode), "{side} worker {index}");
    }
}

fn echo_and_close(setup: RingSetup, mode: RingMode) {
    let (server, _server_events) = start_server(|builder| builder.ring_setup(setup));
    let (client, events) = start_client(|builder| builder.ring_setup(setup));
    assert_ring_mode("server", &server.stats(), mode);
    assert_ring_mode("client", &client.stats(), mode);
    let plan = Plan {
        tag: 1,
        greeting: Greeting::Text("hello".into()),
    };
    let id = client.connect(&url(&server, "/"), plan).expect("connect");
    let handle = opened(&events, id);
    assert_eq!(next_text(&events, id), "hello", "{setup}");
    let large = pattern(200_000);
    handle.send_binary(&large).unwrap();
    assert_eq!(next_binary(&events, id), large, "{setup}");
    handle.close(1000, "done").unwrap();
    let info = closed(&events, id);
    assert_eq!(
        (info.kind, info.initiator),
        (CloseKind::Clean, Initiator::Local),
        "{setup}"
    );
}

#[test]
fn client_echo_and_close_under_coop_taskrun() {
    echo_and_close(RingSetup::CoopTaskrun, RingMode::CoopTaskrun);
}

#[test]
fn client_echo_and_close_with_no_optional_ring_flag() {
    echo_and_close(RingSetup::Plain, RingMode::Plain);
}
