//! Connection lifecycle: peer FIN, graceful close, close-after-flush,
//! terminate (RST), worker stop, and startup errors.

mod common;

use std::io::{ErrorKind, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;
use ringws_reactor::{CloseCause, Config, CorePinning, Reactor, StartError};

#[test]
fn peer_fin_is_reported_and_answered_with_fin() {
    let server = start(2, Mode::Echo);
    let mut client = connect(server.addr);
    let conn = server.accepted(&client);
    write_all(&mut client, b"bye");
    assert_eq!(read_exact(&mut client, 3), b"bye");
    hang_up_and_expect_fin_back(&server, &mut client, conn);
    server.shutdown();
}

#[test]
fn graceful_close_sends_fin_after_all_queued_data() {
    const SIZE: usize = 4 * 1024 * 1024;
    let server = start(1, Mode::Echo);
    let mut client = connect(server.addr);
    let conn = server.accepted(&client);
    let payload = pattern(SIZE, 7);
    server.send(Cmd::SendThenClose(conn, payload.clone()));
    // Every queued byte arrives, then EOF.
    let (received, end) = read_to_end(&mut client);
    end.expect("FIN, not RST");
    assert_eq!(received.len(), SIZE);
    assert!(received == payload);
    // The server waits for our FIN before closing (cause Closed, not linger).
    drop(client);
    assert_eq!(server.closed(conn), CloseCause::Closed);
    server.shutdown();
}

#[test]
fn close_now_flushes_then_closes_without_waiting_for_the_peer() {
    const SIZE: usize = 1024 * 1024;
    let server = start(1, Mode::Echo);
    let mut client = connect(server.addr);
    let conn = server.accepted(&client);
    let payload = pattern(SIZE, 8);
    server.send(Cmd::SendThenCloseNow(conn, payload.clone()));
    // Closed without our FIN: the server reports it while we still hold the socket.
    assert_eq!(server.closed(conn), CloseCause::ClosedNow);
    let (received, end) = read_to_end(&mut client);
    end.expect("FIN, not RST");
    assert!(received == payload);
    server.shutdown();
}

#[test]
fn graceful_close_gives_up_after_the_linger() {
    let config = config(1).close_linger(Duration::from_millis(100));
    let server = start_with(config, Mode::Echo, false);
    let mut client = connect(server.addr);
    let conn = server.accepted(&client);
    server.send(Cmd::Close(conn));
    let (received, end) = read_to_end(&mut client);
    end.expect("FIN");
    assert!(received.is_empty());
    // We never send our FIN: the linger expires.
    assert_eq!(server.closed(conn), CloseCause::LingerExpired);
    drop(client);
    server.shutdown();
}

#[test]
fn terminate_resets_the_connection_promptly() {
    let server = start(2, Mode::Echo);
    let mut client = connect(server.addr);
    let conn = server.accepted(&client);
    write_all(&mut client, b"ping");
    assert_eq!(read_exact(&mut client, 4), b"ping");
    // Queue bytes and terminate in the same turn: they are discarded.
    server.send_to(conn.worker(), Cmd::Send(conn, vec![1; 1024]));
    server.send_to(conn.worker(), Cmd::Terminate(conn));
    assert_eq!(server.closed(conn), CloseCause::Terminated);
    let started = Instant::now();
    let (_, end) = read_to_end(&mut client);
    let error = end.expect_err("terminate resets the connection");
    assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}");
    assert!(started.elapsed() < WAIT);
    server.shutdown();
}

#[test]
fn peer_reset_closes_with_the_error() {
    let server = start(1, Mode::Echo);
    let client = connect(server.addr);
    let conn = server.accepted(&client);
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    let cause = server.closed(conn);
    assert_eq!(cause.errno(), Some(libc::ECONNRESET), "{cause:?}");
    server.shutdown();
}

#[test]
fn stopping_closes_every_connection_once() {
    let server = start(2, Mode::Echo);
    let (clients, conns) = connect_many(&server, 50);
    let sender = server.handle.senders()[0].clone();
    let closed = closed_conns(server.stop_and_collect());
    let mut expected: Vec<_> = conns
        .iter()
        .map(|&c| (c, CloseCause::WorkerStopped))
        .collect();
    expected.sort_by_key(|(conn, _)| *conn);
    assert_eq!(closed, expected);
    // The worker is gone: its inbox refuses commands.
    let refused = sender.send(Cmd::Stats).expect_err("inbox closed");
    assert!(matches!(refused.0, Cmd::Stats));
    for mut client in clients {
        let (_, end) = read_to_end(&mut client);
        end.expect("stop sends FIN");
    }
}

#[test]
fn a_handler_can_stop_its_worker() {
    let server = start(1, Mode::Echo);
    server.send(Cmd::Stop);
    let Server { handle, .. } = server;
    handle.join().expect("clean stop");
}

#[test]
fn startup_errors_are_typed() {
    let invalid = Reactor::start(Config::new().workers(0), |_| -> common::TestHandler {
        unreachable!("no worker starts")
    });
    assert!(matches!(invalid, Err(StartError::Config(_))));

    // A port held by a socket without SO_REUSEPORT cannot be shared.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap();
    let config = Config::new()
        .workers(1)
        .pinning(CorePinning::Off)
        .listen(addr);
    match Reactor::start(config, |_| -> common::TestHandler {
        unreachable!("bind fails first")
    }) {
        Err(StartError::Listen {
            addr: failed,
            source,
        }) => {
            assert_eq!(failed, addr);
            assert_eq!(source.kind(), ErrorKind::AddrInUse);
        }
        other => panic!("expected a listen error, got {other:?}"),
    }
}

#[test]
fn every_ring_size_the_config_accepts_starts_and_echoes() {
    // The completion queue is four times the ring, capped at the kernel's
    // limit, so the largest rings start too.
    for entries in [1, 16384, 16385, 32768] {
        let config = Config::new()
            .workers(1)
            .pinning(CorePinning::Off)
            .ring_entries(entries)
            .listen("127.0.0.1:0".parse().unwrap());
        let server = start_with(config, Mode::Echo, false);
        let mut client = connect(server.addr);
        write_all(&mut client, b"ring");
        assert_eq!(read_exact(&mut client, 4), b"ring", "{entries} entries");
        server.shutdown();
    }
}

#[test]
fn workers_report_their_ring_mode() {
    let server = start(2, Mode::Echo);
    for info in server.handle.workers() {
        // Linux 6.1+ grants SINGLE_ISSUER | DEFER_TASKRUN.
        assert_eq!(info.ring_mode, ringws_reactor::RingMode::DeferTaskrun);
    }
    let mut client = connect(server.addr);
    client.write_all(b"x").unwrap();
    assert_eq!(read_exact(&mut client, 1), b"x");
    server.shutdown();
}

#[test]
fn stop_accepting_refuses_new_connections_and_keeps_existing_ones() {
    let server = start(1, Mode::Echo);
    let mut existing = connect(server.addr);
    server.accepted(&existing);
    server.send(Cmd::StopAccepting);
    // Once the listener is closed, connects are refused (bounded retries).
    let deadline = Instant::now() + WAIT;
    loop {
        match std::net::TcpStream::connect(server.addr) {
            Err(error) if error.kind() == ErrorKind::ConnectionRefused => break,
            Ok(_) | Err(_) => {
                assert!(Instant::now() < deadline, "listener still open");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    write_all(&mut existing, b"still here");
    assert_eq!(read_exact(&mut existing, 10), b"still here");
    server.shutdown();
}

#[test]
fn graceful_close_completes_while_the_peer_keeps_writing() {
    // Both sides send more than the kernel buffers between them hold, and the
    // peer reads only after writing everything: unless the closing side
    // keeps reading (and discarding), both ends block forever.
    const SIZE: usize = 8 * 1024 * 1024;
    let server = start(1, Mode::Echo);
    let mut client = connect_small_rcvbuf(server.addr, 64 * 1024);
    let conn = server.accepted(&client);
    // Paused: the connection reads nothing until the close starts.
    server.send(Cmd::PauseRecv(conn));
    server.wait_for(|event| match event {
        Event::Paused(c) if *c == conn => Some(()),
        _ => None,
    });
    let payload = pattern(SIZE, 4);
    server.send(Cmd::SendThenClose(conn, payload.clone()));
    client
        .write_all(&pattern(SIZE, 3))
        .expect("the closing side drains our writes");
    let (received, end) = read_to_end(&mut client);
    end.expect("FIN after the queued bytes");
    assert!(received == payload);
    drop(client);
    assert_eq!(server.closed(conn), CloseCause::Closed);
    server.shutdown();
}

#[test]
fn a_stop_timeout_too_large_for_a_deadline_means_no_deadline() {
    for timeout in [Duration::MAX, Duration::from_secs(u64::MAX / 2)] {
        let server = start_with(config(2).stop_timeout(timeout), Mode::Echo, false);
        let (_clients, mut conns) = connect_many(&server, 4);
        conns.sort();
        // A panicking worker would fail the join in `stop_and_collect`.
        let closed = closed_conns(server.stop_and_collect());
        let expected: Vec<_> = conns
            .iter()
            .map(|&conn| (conn, CloseCause::WorkerStopped))
            .collect();
        assert_eq!(closed, expected, "{timeout:?}");
    }
}

#[test]
fn a_zero_stop_timeout_still_reports_every_connection_closed() {
    let server = start_with(config(2).stop_timeout(Duration::ZERO), Mode::Echo, false);
    let (clients, mut conns) = connect_many(&server, 40);
    conns.sort();
    stop_with_sends_and_closes_under_way(server, &conns, "zero stop timeout");
    drop(clients);
}
