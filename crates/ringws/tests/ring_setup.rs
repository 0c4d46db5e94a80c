//! A server asked for a less capable io_uring setup (`ring_setup`) than
//! the kernel grants echoes, closes and shuts down as with the default: the
//! modes of Linux 5.19 to 6.0 (`COOP_TASKRUN`) and of no optional flag,
//! observed from a raw TCP client. Every worker reports the mode it got in
//! its stats.

mod common;

use common::*;
use ringws::{CloseKind, Initiator, RingMode, RingSetup, ServerHandle};

/// The mode each setup gets on the test machines' kernels (Linux 6.1 or
/// later, io_uring enabled): the most capable it allows.
fn expected_mode(setup: RingSetup) -> RingMode {
    match setup {
        RingSetup::Auto => RingMode::DeferTaskrun,
        RingSetup::CoopTaskrun => RingMode::CoopTaskrun,
        RingSetup::Plain => RingMode::Plain,
    }
}

/// Asserts that every worker of `server` reports the mode `setup` gets.
fn assert_ring_modes(server: &ServerHandle, setup: RingSetup) {
    let stats = server.stats();
    assert_eq!(stats.workers.len(), 2);
    for (index, worker) in stats.workers.iter().enumerate() {
        assert_eq!(
            worker.ring_mode,
            Some(expected_mode(setup)),
            "{setup}: worker {index}"
        );
    }
    assert_eq!(stats.total.ring_mode, None, "a sum has no mode");
}

fn echo_close_and_shutdown(setup: RingSetup) {
    let (server, events) = start(builder().ring_setup(setup));
    assert_ring_modes(&server, setup);
    let mut client = RawClient::connect(server.local_addr());
    let (id, _, _) = events.opened_blocking();
    client.write_frame(true, 0x1, b"hello");
    assert_eq!(client.read_frame(), Some((true, 0x1, b"hello".to_vec())));
    // Larger than a receive buffer, so it is assembled from several.
    let large: Vec<u8> = (0..200_000).map(|i| (i * 31 % 251) as u8).collect();
    client.write_frame(true, 0x2, &large);
    assert_eq!(client.read_frame(), Some((true, 0x2, large)));

    // The client closes: the server echoes the code and closes TCP first.
    client.write_frame(true, 0x8, &close_payload(1000, "done"));
    assert_eq!(client.read_close(), close_payload(1000, ""));
    assert!(client.wait_eof());
    // Our FIN ends the server's wait for it.
    drop(client);
    let info = events.closed_blocking(id);
    assert_eq!(
        (info.kind, info.initiator),
        (CloseKind::Clean, Initiator::Remote)
    );

    // Shutdown with a connection open: Close 1001, answered, then EOF.
    let mut open = RawClient::connect(server.local_addr());
    events.opened_blocking();
    let shutdown = std::thread::spawn(move || server.shutdown(WAIT));
    let close = open.read_close();
    assert_eq!(close[..2], 1001u16.to_be_bytes());
    open.write_frame(true, 0x8, &close[..2]);
    assert!(open.wait_eof());
    drop(open);
    let report = shutdown.join().unwrap();
    assert_eq!(
        (report.total, report.clean, report.forced),
        (1, 1, 0),
        "{setup}"
    );
}

#[test]
fn echo_close_and_shutdown_under_coop_taskrun() {
    echo_close_and_shutdown(RingSetup::CoopTaskrun);
}

#[test]
fn echo_close_and_shutdown_with_no_optional_ring_flag() {
    echo_close_and_shutdown(RingSetup::Plain);
}

#[test]
fn workers_report_the_ring_mode_each_setup_gets() {
    for setup in [RingSetup::Auto, RingSetup::CoopTaskrun, RingSetup::Plain] {
        let (server, _events) = start(builder().ring_setup(setup));
        assert_ring_modes(&server, setup);
        server.shutdown(WAIT);
    }
}
