//! The reactor's core paths under every ring setup: `IORING_SETUP_DEFER_TASKRUN`
//! (what Linux 6.1+ grants by default), `COOP_TASKRUN` (Linux 5.19 to 6.0,
//! or a deployment avoiding DEFER_TASKRUN) and no optional flag. Without
//! DEFER_TASKRUN, completions are posted while the worker runs in user space
//! and task work may interrupt it, so every scenario here runs in each mode:
//! accept and multishot receive from the buffer ring, batched and partial
//! sends, a ring that runs dry, timers, cross-thread wakeups, closes and
//! cancels, stop with connections open, and the client role.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use common::*;
use ringws_reactor::{CloseCause, Config, RingMode, RingSetup};

/// Runs a scenario once per ring setup, each as its own test named after it.
macro_rules! in_every_ring_mode {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[test]
            fn auto() {
                super::$scenario(ringws_reactor::RingSetup::Auto);
            }
            #[test]
            fn coop_taskrun() {
                super::$scenario(ringws_reactor::RingSetup::CoopTaskrun);
            }
            #[test]
            fn plain() {
                super::$scenario(ringws_reactor::RingSetup::Plain);
            }
        }
    )*};
}

in_every_ring_mode!(
    workers_get_the_mode_asked_for_and_echo_many_connections,
    pipelined_writes_come_back_in_order_while_completions_keep_arriving,
    large_echoes_survive_partial_sends_and_sends_from_receive_buffers,
    a_buffer_ring_that_runs_dry_stalls_no_connection,
    a_four_entry_completion_queue_loses_no_completion,
    paused_receives_resume_with_every_byte,
    timers_fire_never_early_and_cancelled_timers_never_fire,
    commands_from_other_threads_wake_an_idle_worker_every_time,
    closes_flush_then_fin_and_terminate_resets,
    stopping_closes_every_open_connection_once,
    a_handler_connects_as_a_client,
    receive_buffer_pages_go_back_only_under_defer_taskrun,
);

/// The mode a worker gets for `setup` on the kernels ringws is tested on
/// (Linux 6.1 or later).
fn expected_mode(setup: RingSetup) -> RingMode {
    match setup {
        RingSetup::Auto => RingMode::DeferTaskrun,
        RingSetup::CoopTaskrun => RingMode::CoopTaskrun,
        RingSetup::Plain => RingMode::Plain,
    }
}

fn mode_config(setup: RingSetup, workers: usize) -> Config {
    config(workers).ring_setup(setup)
}

fn start_in(setup: RingSetup, config: Config, mode: Mode, report_data: bool) -> Server {
    let server = start_with(config.ring_setup(setup), mode, report_data);
    for info in server.handle.workers() {
        assert_eq!(info.ring_mode, expected_mode(setup), "{setup}: {info:?}");
    }
    server
}

fn workers_get_the_mode_asked_for_and_echo_many_connections(setup: RingSetup) {
    const CONNECTIONS: usize = 200;
    let server = start_in(setup, mode_config(setup, 2), Mode::Echo, false);
    let clients: Vec<TcpStream> = (0..CONNECTIONS).map(|_| connect(server.addr)).collect();
    echo_on_each_then_hang_up(&server, clients);
    let stats = server.stats();
    assert_eq!(
        stats.iter().map(|s| s.closed).sum::<u64>(),
        CONNECTIONS as u64
    );
    server.shutdown();
}

fn pipelined_writes_come_back_in_order_while_completions_keep_arriving(setup: RingSetup) {
    const MESSAGES: usize = 20_000;
    let server = start_in(setup, mode_config(setup, 1), Mode::Echo, false);
    let mut client = connect(server.addr);
    let mut writer = client.try_clone().unwrap();
    let writer = thread::spawn(move || {
        for index in 0..MESSAGES {
            writer
                .write_all(format!("{index:09}\n").as_bytes())
                .unwrap();
        }
    });
    let echoed = read_exact(&mut client, MESSAGES * 10);
    writer.join().unwrap();
    for (index, line) in echoed.chunks(10).enumerate() {
        assert_eq!(line, format!("{index:09}\n").as_bytes(), "message {index}");
    }
    server.shutdown();
}

fn large_echoes_survive_partial_sends_and_sends_from_receive_buffers(setup: RingSetup) {
    const SIZE: usize = 4 << 20;
    // A small send buffer and a client that reads only after writing it
    // all: the echo backs up, so held receive buffers, copies and partial
    // writes interleave in one queue.
    let config = mode_config(setup, 1)
        .recv_buffers(64, 32 * 1024)
        .socket_send_buffer(64 * 1024);
    let server = start_in(setup, config, Mode::EchoInPlace, false);
    let mut client = connect_small_rcvbuf(server.addr, 64 * 1024);
    let payload = pattern(SIZE, 7);
    let mut writer = client.try_clone().unwrap();
    let sent = payload.clone();
    let writer = thread::spawn(move || writer.write_all(&sent));
    writer
        .join()
        .unwrap()
        .expect("the server keeps reading while its queue grows");
    let (echoed, replies) = unframe(&mut client, SIZE);
    assert!(echoed == payload, "echo differs from payload");
    let stats = stats_when(&server, |stats| {
        stats.recv_buffers_lent == 0 && stats.bytes_sent == (SIZE + 2 * replies) as u64
    });
    assert!(stats.partial_sends > 0, "{stats:?}");
    assert!(stats.payloads_sent_in_place > 0, "{stats:?}");
    assert_eq!(stats.bytes_sent, (SIZE + 2 * replies) as u64, "{stats:?}");
    assert_eq!(stats.recv_buffers_lent, 0, "{stats:?}");
    server.shutdown();
}

fn a_buffer_ring_that_runs_dry_stalls_no_connection(setup: RingSetup) {
    const CONNECTIONS: usize = 12;
    const SIZE: usize = 32 * 1024;
    let config = mode_config(setup, 1).recv_buffers(4, 256);
    let server = start_in(setup, config, Mode::Echo, false);
    echo_at_once_on_new_connections(&server, CONNECTIONS, SIZE, 10);
    let stats = server.stats()[0];
    assert!(stats.recv_enobufs > 0, "the ring ran dry: {stats:?}");
    assert_eq!(stats.bytes_sent, (CONNECTIONS * SIZE) as u64);
    server.shutdown();
}

fn a_four_entry_completion_queue_loses_no_completion(setup: RingSetup) {
    // One submission entry and four completion entries: many connections
    // busy at once can have more completions ready than the queue holds
    // (the kernel keeps the rest aside until the worker next enters it),
    // and every push beyond the first submits to make room.
    const CONNECTIONS: usize = 32;
    const SIZE: usize = 64 * 1024;
    let config = mode_config(setup, 1).ring_entries(1);
    let server = start_in(setup, config, Mode::Echo, false);
    echo_at_once_on_new_connections(&server, CONNECTIONS, SIZE, 50);
    let stats = server.stats()[0];
    assert_eq!(stats.bytes_sent, (CONNECTIONS * SIZE) as u64, "{stats:?}");
    server.shutdown();
}

fn paused_receives_resume_with_every_byte(setup: RingSetup) {
    let server = start_in(setup, mode_config(setup, 1), Mode::Echo, true);
    let mut client = connect(server.addr);
    let conn = server.accepted(&client);
    for round in 0..20u64 {
        // Pausing cancels the multishot receive; resuming arms a new one.
        server.send(Cmd::PauseRecv(conn));
        server.wait_for(|event| match event {
            Event::Paused(c) if *c == conn => Some(()),
            _ => None,
        });
        let bytes = pattern(3000, round);
        write_all(&mut client, &bytes);
        server.send(Cmd::ResumeRecv(conn));
        assert_eq!(read_exact(&mut client, bytes.len()), bytes, "round {round}");
    }
    server.shutdown();
}

fn timers_fire_never_early_and_cancelled_timers_never_fire(setup: RingSetup) {
    let server = start_in(setup, mode_config(setup, 1), Mode::Echo, false);
    let delays = [0u64, 1, 3, 7, 20, 45];
    arm_timers_and_cancel_one(&server, &delays);
    timers_fired(&server, delays.len());
    // A timer armed while the worker sleeps on another bounds the wait anew.
    server.send(Cmd::Arm {
        id: 200,
        after: Duration::from_secs(3600),
    });
    server.send(Cmd::Arm {
        id: 201,
        after: Duration::from_millis(5),
    });
    server.wait_for(|event| match event {
        Event::TimerFired { id: 201, .. } => Some(()),
        _ => None,
    });
    let events = server.stop_and_collect();
    assert!(
        !events.iter().any(|event| matches!(
            event,
            Event::TimerFired {
                id: CANCELLED_TIMER | 200,
                ..
            }
        )),
        "{events:?}"
    );
}

fn commands_from_other_threads_wake_an_idle_worker_every_time(setup: RingSetup) {
    const ROUNDS: u32 = 300;
    const BURST: usize = 5000;
    let server = start_in(setup, mode_config(setup, 1), Mode::Echo, false);
    let mut client = connect(server.addr);
    let conn = server.accepted(&client);
    // One command at a time, each waited for: the worker is asleep (or
    // going to sleep) when most of them arrive, so each needs the wakeup.
    for round in 0..ROUNDS {
        server.send(Cmd::Send(conn, round.to_le_bytes().to_vec()));
        assert_eq!(read_exact(&mut client, 4), round.to_le_bytes());
        if round % 50 == 0 {
            // A moment idle, so the worker surely sleeps first.
            thread::sleep(Duration::from_millis(2));
        }
    }
    // A burst from another thread, racing the worker's waits.
    let sender = server.handle.sender(conn.worker()).unwrap().clone();
    let producer = thread::spawn(move || {
        for index in 0..BURST {
            sender
                .send(Cmd::Send(conn, (index as u32).to_le_bytes().to_vec()))
                .unwrap();
            if index % 500 == 0 {
                thread::yield_now();
            }
        }
    });
    let received = read_exact(&mut client, BURST * 4);
    producer.join().unwrap();
    for (index, bytes) in received.chunks(4).enumerate() {
        assert_eq!(bytes, (index as u32).to_le_bytes(), "command {index}");
    }
    server.shutdown();
}

fn closes_flush_then_fin_and_terminate_resets(setup: RingSetup) {
    const SIZE: usize = 1 << 20;
    let server = start_in(setup, mode_config(setup, 1), Mode::Echo, false);

    // Graceful: every queued byte, then FIN; closed when our FIN comes.
    let mut client = connect(server.addr);
    let conn = server.accepted(&client);
    let payload = pattern(SIZE, 1);
    server.send(Cmd::SendThenClose(conn, payload.clone()));
    let (received, end) = read_to_end(&mut client);
    end.expect("FIN, not RST");
    assert!(received == payload, "queued bytes lost before the FIN");
    drop(client);
    assert_eq!(server.closed(conn), CloseCause::Closed);

    // Immediate: flushed, closed without waiting for the peer.
    let mut client = connect(server.addr);
    let conn = server.accepted(&client);
    server.send(Cmd::SendThenCloseNow(conn, payload.clone()));
    assert_eq!(server.closed(conn), CloseCause::ClosedNow);
    let (received, end) = read_to_end(&mut client);
    end.expect("FIN, not RST");
    assert!(received == payload);

    // Peer FIN: reported, answered with FIN.
    let mut client = connect(server.addr);
    let conn = server.accepted(&client);
    hang_up_and_expect_fin_back(&server, &mut client, conn);

    // Terminate with bytes queued: the receive and send are cancelled, the
    // peer gets a reset.
    let mut client = connect_small_rcvbuf(server.addr, 4096);
    let conn = server.accepted(&client);
    server.send(Cmd::Send(conn, vec![1; SIZE]));
    server.send(Cmd::Terminate(conn));
    assert_eq!(server.closed(conn), CloseCause::Terminated);
    let (_, end) = read_to_end(&mut client);
    let error = end.expect_err("terminate resets the connection");
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}");

    // The worker still serves.
    let mut client = connect(server.addr);
    write_all(&mut client, b"after");
    assert_eq!(read_exact(&mut client, 5), b"after");
    server.shutdown();
}

fn stopping_closes_every_open_connection_once(setup: RingSetup) {
    for stop_timeout in [Duration::from_secs(2), Duration::ZERO] {
        let config = mode_config(setup, 2).stop_timeout(stop_timeout);
        let server = start_in(setup, config, Mode::Echo, false);
        let (clients, mut conns) = connect_many(&server, 40);
        conns.sort();
        stop_with_sends_and_closes_under_way(server, &conns, &format!("{stop_timeout:?}"));
        drop(clients);
    }
}

fn a_handler_connects_as_a_client(setup: RingSetup) {
    const CONNECTIONS: u64 = 8;
    let server = start_in(setup, mode_config(setup, 1), Mode::Echo, false);
    let client = start_in(setup, client_config(), Mode::Sink, true);
    let connected = connect_and_echo_greetings(&client, server.addr, CONNECTIONS, |_| None);
    close_each(&client, &connected);
    // A refused connect reports its errno.
    client.send(Cmd::Connect {
        addr: unused_loopback_addr(),
        source: None,
        tag: 42,
        greeting: Vec::new(),
    });
    assert_connect_refused(&client, 42);
    let stats = client.stats()[0];
    assert_eq!((stats.connected, stats.connect_failed), (CONNECTIONS, 1));
    client.shutdown();
    server.shutdown();
}

fn receive_buffer_pages_go_back_only_under_defer_taskrun(setup: RingSetup) {
    const SIZE: usize = 256 * 1024;
    let period = Duration::from_millis(50);
    let config = mode_config(setup, 1)
        .recv_buffers(256, 32 << 10)
        .buffer_release_period(Some(period));
    let server = start_in(setup, config, Mode::Echo, false);
    let mut clients: Vec<_> = (0..16).map(|_| connect(server.addr)).collect();
    let burst = |clients: &mut [TcpStream], seed: u64| {
        for (index, client) in clients.iter_mut().enumerate() {
            let payload = pattern(SIZE, seed + index as u64);
            let mut writer = client.try_clone().unwrap();
            let sent = payload.clone();
            let writer = thread::spawn(move || writer.write_all(&sent).unwrap());
            assert!(read_exact(client, SIZE) == payload, "echo differs");
            writer.join().unwrap();
        }
    };
    burst(&mut clients, 1);
    let stats = if expected_mode(setup) == RingMode::DeferTaskrun {
        // The check after the burst gives the pages back.
        stats_when(&server, |stats| stats.recv_bytes_released > 0)
    } else {
        // Receives may write buffers at any moment: pages stay (bounded
        // negative check over several periods).
        thread::sleep(period * 6);
        server.stats()[0]
    };
    assert_eq!(
        stats.recv_bytes_released > 0,
        expected_mode(setup) == RingMode::DeferTaskrun,
        "{setup}: {stats:?}"
    );
    // Either way, the buffers receive as before.
    burst(&mut clients, 100);
    server.shutdown();
}
