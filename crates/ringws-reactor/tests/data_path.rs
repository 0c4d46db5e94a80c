//! Receive and send paths: many connections, large payloads, pipelining,
//! unconsumed tails, a tiny buffer ring, listeners on port 0 and IPv6.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::net::TcpStream;
use std::thread;

use common::*;
use ringws_reactor::{PublishedStats, WorkerStats};

#[test]
fn two_thousand_connections_are_spread_over_two_workers() {
    const CONNECTIONS: usize = 2000;
    let server = start(2, Mode::Echo);
    let clients: Vec<TcpStream> = (0..CONNECTIONS).map(|_| connect(server.addr)).collect();
    let accepted = echo_on_each_then_hang_up(&server, clients);
    let mut per_worker = [0usize; 2];
    for conn in &accepted {
        per_worker[conn.worker().index()] += 1;
    }
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "each worker takes a share: {per_worker:?}"
    );
    let stats = server.stats();
    assert_eq!(
        stats.iter().map(|s| s.accepted).sum::<u64>(),
        CONNECTIONS as u64
    );
    assert_eq!(
        stats.iter().map(|s| s.closed).sum::<u64>(),
        CONNECTIONS as u64
    );
    server.shutdown();
}

#[test]
fn large_payload_is_echoed_intact_through_partial_writes() {
    const SIZE: usize = 8 * 1024 * 1024;
    // A fixed 64 KiB send buffer (128 KiB after the kernel doubles it):
    // autotuned up to 4 MiB, the buffer's write-space wakeup can leave room
    // for a whole 1 MiB retry every time, and no send would be partial.
    let server = start_with(config(1).socket_send_buffer(64 * 1024), Mode::Echo, false);
    // Write everything before reading anything into a small receive buffer:
    // the echo backs up in the server's send queue (8 MiB is more than the
    // kernel buffers between the two ends), so its sends complete partially.
    let mut client = connect_small_rcvbuf(server.addr, 64 * 1024);
    let conn = server.accepted(&client);
    let payload = pattern(SIZE, 1);
    let mut writer = client.try_clone().unwrap();
    let sent = payload.clone();
    let writer = thread::spawn(move || writer.write_all(&sent).map(|_| writer));
    let _writer = writer
        .join()
        .unwrap()
        .expect("server keeps reading while its queue grows");
    let echoed = read_exact(&mut client, SIZE);
    assert!(echoed == payload, "echo differs from payload");

    // The queue went above the high-water mark and drained.
    server.wait_for(|event| match event {
        Event::Drained(c) if *c == conn => Some(()),
        _ => None,
    });
    let stats = server.stats();
    assert!(stats[0].partial_sends > 0, "{:?}", stats[0]);
    assert_eq!(stats[0].bytes_sent, SIZE as u64);
    assert_eq!(stats[0].bytes_received, SIZE as u64);
    server.shutdown();
}

#[test]
fn large_receives_are_echoed_from_their_receive_buffers_in_order() {
    const SIZE: usize = 8 * 1024 * 1024;
    // Small send buffer and a client that reads only after writing it all:
    // the echo backs up, so held payloads, copies (once over 64 KiB is
    // queued) and partial writes interleave in one queue.
    let config = config(1)
        .recv_buffers(64, 32 * 1024)
        .socket_send_buffer(64 * 1024);
    let server = start_with(config, Mode::EchoInPlace, false);
    let mut client = connect_small_rcvbuf(server.addr, 64 * 1024);
    let payload = pattern(SIZE, 7);
    let mut writer = client.try_clone().unwrap();
    let sent = payload.clone();
    let writer = thread::spawn(move || writer.write_all(&sent));
    let (echoed, replies) = unframe(&mut client, SIZE);
    writer.join().unwrap().expect("server keeps reading");
    assert!(echoed == payload, "echo differs from payload");

    let stats = stats_when(&server, |stats| stats.recv_buffers_lent == 0);
    assert!(stats.payloads_sent_in_place > 0, "{stats:?}");
    assert!(stats.partial_sends > 0, "{stats:?}");
    assert_eq!(stats.bytes_sent, (SIZE + 2 * replies) as u64);
    // Every hold was released and every buffer went back to the ring.
    assert_eq!(stats.recv_buffers_lent, 0, "{stats:?}");
    server.shutdown();
}

#[test]
fn held_receive_buffers_go_back_to_the_ring_when_their_connection_ends() {
    let config = config(1)
        .recv_buffers(64, 32 * 1024)
        .socket_send_buffer(4 * 1024);
    let server = start_with(config, Mode::EchoInPlace, false);
    // A peer that writes and never reads: the replies stall in the
    // server's queue, the first of them still holding its receive buffer.
    let mut client = connect_small_rcvbuf(server.addr, 4 * 1024);
    let conn = server.accepted(&client);
    write_all(&mut client, &pattern(512 * 1024, 3));
    let stats = stats_when(&server, |stats| stats.recv_buffers_lent > 0);
    assert!(stats.payloads_sent_in_place > 0, "{stats:?}");
    // Read in `on_command`, outside `on_data`: `Io::recv_buffers_in_use`
    // counts the buffers queued sends hold too (the stats command checks
    // that it equals `recv_buffers_lent`).
    assert!(stats.recv_buffers_lent > 0, "{stats:?}");
    server.send(Cmd::Terminate(conn));
    server.closed(conn);
    let stats = stats_when(&server, |stats| stats.recv_buffers_lent == 0);
    assert_eq!(stats.recv_buffers_lent, 0, "{stats:?}");
    // The ring still serves: a new connection echoes.
    let mut next = connect(server.addr);
    write_all(&mut next, &pattern(20_000, 4));
    let (echoed, _) = unframe(&mut next, 20_000);
    assert!(echoed == pattern(20_000, 4));
    server.shutdown();
}

#[test]
fn pipelined_small_writes_come_back_in_order() {
    const MESSAGES: usize = 20_000;
    let server = start(2, Mode::Echo);
    let mut client = connect(server.addr);
    let mut writer = client.try_clone().unwrap();
    let writer = thread::spawn(move || {
        for index in 0..MESSAGES {
            let message = format!("{index:09}\n");
            writer.write_all(message.as_bytes()).unwrap();
        }
    });
    let echoed = read_exact(&mut client, MESSAGES * 10);
    writer.join().unwrap();
    for (index, line) in echoed.chunks(10).enumerate() {
        assert_eq!(line, format!("{index:09}\n").as_bytes(), "message {index}");
    }
    server.shutdown();
}

fn next_data(server: &Server, conn: ringws_reactor::ConnId) -> Vec<u8> {
    server.wait_for(|event| match event {
        Event::Data { conn: c, bytes } if *c == conn => Some(bytes.clone()),
        _ => None,
    })
}

#[test]
fn unconsumed_tail_is_presented_again_and_freed_when_consumed() {
    let server = start_with(config(1), Mode::Lines, true);
    let mut client = connect(server.addr);
    let conn = server.accepted(&client);

    write_all(&mut client, b"hel");
    assert_eq!(next_data(&server, conn), b"hel");
    // The tail is kept while the line is incomplete.
    server.send(Cmd::Heap(conn));
    let held = server.wait_for(|event| match event {
        Event::Heap { conn: c, bytes } if *c == conn => Some(*bytes),
        _ => None,
    });
    assert!(held.is_some_and(|bytes| bytes >= 3), "{held:?}");

    write_all(&mut client, b"lo\nwor");
    assert_eq!(next_data(&server, conn), b"hello\nwor");
    write_all(&mut client, b"ld\n");
    assert_eq!(next_data(&server, conn), b"world\n");
    assert_eq!(read_exact(&mut client, 12), b"hello\nworld\n");

    // Idle again: the connection owns no heap buffer.
    server.send(Cmd::Heap(conn));
    let held = server.wait_for(|event| match event {
        Event::Heap { conn: c, bytes } if *c == conn => Some(*bytes),
        _ => None,
    });
    assert_eq!(held, Some(0));
    server.shutdown();
}

#[test]
fn tiny_buffer_ring_never_stalls_busy_connections() {
    const CONNECTIONS: usize = 24;
    const SIZE: usize = 64 * 1024;
    let config = config(1).recv_buffers(4, 256);
    let server = start_with(config, Mode::Echo, false);
    echo_at_once_on_new_connections(&server, CONNECTIONS, SIZE, 10);
    let stats = server.stats();
    assert!(
        stats[0].recv_enobufs > 0,
        "the ring ran dry at least once: {:?}",
        stats[0]
    );
    assert_eq!(stats[0].bytes_sent, (CONNECTIONS * SIZE) as u64);
    server.shutdown();
}

#[test]
fn receive_buffers_are_offered_a_few_at_first_and_doubled_when_the_ring_runs_dry() {
    // 128 KiB buffers: 16 offered at start (2 MiB), of 256.
    const CONNECTIONS: usize = 48;
    let server = start_with(config(1).recv_buffers(256, 128 << 10), Mode::Echo, true);
    assert_eq!(server.stats()[0].recv_buffers_offered, 16);
    let mut clients: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let client = connect(server.addr);
            let conn = server.accepted(&client);
            (client, conn)
        })
        .collect();
    // Every connection's receive paused with data waiting, then resumed at
    // once: more receives complete in one turn than buffers are offered.
    // The resumes may spread over turns, so rounds repeat (bounded) until
    // the ring has run dry.
    for round in 0..10u64 {
        for (_, conn) in &clients {
            server.send(Cmd::PauseRecv(*conn));
            server.wait_for(|event| match event {
                Event::Paused(c) if c == conn => Some(()),
                _ => None,
            });
        }
        for (index, (client, _)) in clients.iter_mut().enumerate() {
            write_all(client, &pattern(1024, round * 100 + index as u64));
        }
        for (_, conn) in &clients {
            server.send(Cmd::ResumeRecv(*conn));
        }
        for (index, (client, _)) in clients.iter_mut().enumerate() {
            assert_eq!(
                read_exact(client, 1024),
                pattern(1024, round * 100 + index as u64)
            );
        }
        if server.stats()[0].recv_enobufs > 0 {
            break;
        }
    }
    let stats = server.stats();
    let dry = stats[0].recv_enobufs;
    assert!(
        dry > 0,
        "48 resumed receives drained 16 buffers: {:?}",
        stats[0]
    );
    // Each turn in which the ring ran dry doubled the offer once (several
    // receives finding it empty in one turn count once), up to all 256.
    let offered = stats[0].recv_buffers_offered;
    assert!(
        offered.is_power_of_two() && offered > 16 && offered <= (16u64 << dry.min(4)).min(256),
        "{:?}",
        stats[0]
    );
    server.shutdown();
}

#[test]
fn port_zero_is_shared_by_every_worker() {
    let server = start(3, Mode::Echo);
    assert_ne!(server.addr.port(), 0);
    let infos = server.handle.workers();
    assert_eq!(infos.len(), 3);
    assert!(
        infos
            .iter()
            .all(|info| info.local_addr == Some(server.addr)),
        "{infos:?}"
    );
    let mut workers = HashSet::new();
    for index in 0..90u32 {
        let mut client = connect(server.addr);
        write_all(&mut client, &index.to_le_bytes());
        assert_eq!(read_exact(&mut client, 4), index.to_le_bytes());
        workers.insert(server.accepted(&client).worker());
    }
    assert!(
        workers.len() >= 2,
        "connections reached {} worker(s)",
        workers.len()
    );
    server.shutdown();
}

#[test]
fn ipv6_loopback_listener_echoes() {
    let Ok(probe) = std::net::TcpListener::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    };
    drop(probe);
    let config = config(2).listen("[::1]:0".parse().unwrap());
    let server = start_with(config, Mode::Echo, false);
    assert!(server.addr.is_ipv6());
    let mut client = connect(server.addr);
    write_all(&mut client, b"six");
    assert_eq!(read_exact(&mut client, 3), b"six");
    server.shutdown();
}

#[test]
fn paused_connections_receive_nothing_until_resumed() {
    let server = start_with(config(1), Mode::Echo, true);
    let mut client = connect(server.addr);
    let conn = server.accepted(&client);
    server.send(Cmd::PauseRecv(conn));
    server.wait_for(|event| match event {
        Event::Paused(c) if *c == conn => Some(()),
        _ => None,
    });
    write_all(&mut client, b"held back");
    // Bounded negative check: nothing is delivered while paused.
    let early = server
        .events
        .recv_timeout(std::time::Duration::from_millis(100))
        .ok();
    assert!(
        !matches!(early, Some(Event::Data { .. })),
        "data delivered while paused: {early:?}"
    );
    server.send(Cmd::ResumeRecv(conn));
    let mut delivered = Vec::new();
    while delivered.len() < 9 {
        delivered.extend(next_data(&server, conn));
    }
    assert_eq!(delivered, b"held back");
    assert_eq!(read_exact(&mut client, 9), b"held back");
    server.shutdown();
}

/// Echoes `size` bytes on each of `clients` at once, each from its own
/// writer thread, and checks every echo.
fn echo_burst(clients: &[TcpStream], size: usize, seed: u64) {
    let checks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(index, client)| {
            EchoCheck::start(
                client.try_clone().unwrap(),
                pattern(size, seed + index as u64),
            )
        })
        .collect();
    for check in checks {
        check.assert_echoed();
    }
}

/// A one-worker echo server with 256 receive buffers of 32 KiB (64 offered
/// at first) releasing every `period`, and `connections` clients.
fn echo_server_releasing(
    period: Option<std::time::Duration>,
    connections: usize,
) -> (Server, Vec<TcpStream>) {
    echo_server_releasing_with(period, connections, 256, 32 << 10)
}

/// [`echo_server_releasing`] with `count` receive buffers of `size` bytes.
fn echo_server_releasing_with(
    period: Option<std::time::Duration>,
    connections: usize,
    count: u16,
    size: u32,
) -> (Server, Vec<TcpStream>) {
    let config = config(1)
        .recv_buffers(count, size)
        .buffer_release_period(period);
    let server = start_with(config, Mode::Echo, false);
    let clients = (0..connections).map(|_| connect(server.addr)).collect();
    (server, clients)
}

#[test]
fn a_quiet_worker_gives_its_receive_buffer_pages_back() {
    const SIZE: usize = 256 * 1024;
    let period = std::time::Duration::from_millis(200);
    let (server, clients) = echo_server_releasing(Some(period), 32);
    // A burst writes the offered buffers (2 MiB).
    echo_burst(&clients, SIZE, 1);
    // The check after the burst finds the pages resident and unwritten
    // since, and gives them back (bounded wait).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let released = loop {
        let stats = server.stats()[0];
        if stats.recv_bytes_released > 0 && stats.recv_pages_resident == 0 {
            break stats;
        }
        assert!(std::time::Instant::now() < deadline, "{stats:?}");
        thread::sleep(period / 4);
    };
    assert_eq!(released.recv_buffers_lent, 0);
    assert_eq!(released.recv_pages_resident, 0, "{released:?}");
    assert_eq!(released.pooled_bytes, 0, "{released:?}");
    assert!(
        released.recv_bytes_released >= 1 << 20,
        "more than the release threshold went back: {released:?}"
    );
    // Buffers given back receive as before.
    echo_burst(&clients, SIZE, 100);
    server.shutdown();
}

#[test]
fn a_release_gives_back_every_offered_buffer_over_several_turns() {
    // 4 KiB buffers: the first offer (2 MiB) is 512 of them, which one
    // turn gives back 64 at a time.
    let period = std::time::Duration::from_millis(100);
    let (server, clients) = echo_server_releasing_with(Some(period), 32, 1024, 4 << 10);
    echo_burst(&clients, 256 * 1024, 1);
    let stats = stats_when(&server, |stats| {
        stats.recv_bytes_released > 0 && stats.recv_pages_resident == 0
    });
    assert!(stats.recv_buffers_offered >= 512, "{stats:?}");
    assert_eq!(
        stats.recv_bytes_released,
        stats.recv_buffers_offered * 4096,
        "every slice ran: {stats:?}"
    );
    assert_eq!(stats.recv_pages_resident, 0, "{stats:?}");
    echo_burst(&clients, 256 * 1024, 2);
    server.shutdown();
}

#[test]
fn traffic_between_the_slices_of_a_release_loses_no_bytes() {
    let period = std::time::Duration::from_millis(5);
    let (server, clients) = echo_server_releasing_with(Some(period), 8, 1024, 4 << 10);
    // Bursts at uneven intervals around the period: some land while a
    // release is part way through the ring, which then stops; every echo
    // is checked.
    for round in 0..60u64 {
        echo_burst(&clients, 96 * 1024, round * 100);
        thread::sleep(std::time::Duration::from_micros(round % 7 * 1500));
    }
    let stats = server.stats()[0];
    assert!(stats.recv_bytes_released > 0, "{stats:?}");
    server.shutdown();
}

#[test]
fn receive_buffer_pages_stay_when_releasing_is_off() {
    let (server, clients) = echo_server_releasing(None, 32);
    echo_burst(&clients, 256 * 1024, 1);
    thread::sleep(std::time::Duration::from_millis(300));
    let stats = server.stats()[0];
    assert_eq!(stats.recv_bytes_released, 0, "{stats:?}");
    assert!(
        stats.pooled_bytes > 0,
        "the burst's buffers stay pooled: {stats:?}"
    );
    server.shutdown();
}

#[test]
fn pages_given_back_between_receives_lose_no_bytes() {
    const SIZE: usize = 40 * 1024;
    let period = std::time::Duration::from_millis(20);
    let (server, clients) = echo_server_releasing(Some(period), 8);
    // Bursts with pauses longer than a period between them: releases fall
    // between receives, and later receives write pages given back.
    let mut first_release = None;
    for round in 0..40u64 {
        echo_burst(&clients, SIZE, round * 100);
        thread::sleep(period * 2);
        if first_release.is_none() && server.stats()[0].recv_bytes_released > 0 {
            first_release = Some(round);
        }
        if first_release.is_some_and(|first| round >= first + 5) {
            break;
        }
    }
    assert!(
        first_release.is_some_and(|first| first < 35),
        "{first_release:?}"
    );
    let stats = server.stats()[0];
    assert!(stats.recv_bytes_released > 0, "{stats:?}");
    server.shutdown();
}

#[test]
fn pages_of_buffers_held_by_queued_replies_are_kept() {
    // Twice the ring (64 × 32 KiB): every buffer gets written.
    const SIZE: usize = 4 << 20;
    let config = config(1)
        .recv_buffers(64, 32 * 1024)
        .socket_send_buffer(4 * 1024)
        .buffer_release_period(Some(std::time::Duration::from_millis(20)));
    let server = start_with(config, Mode::EchoInPlace, false);
    // A peer that writes and does not read yet: replies stall in the
    // server's queue, holding the receive buffers they are sent from,
    // while the buffers in the ring are given back around them.
    let mut client = connect_small_rcvbuf(server.addr, 4 * 1024);
    let mut writer = client.try_clone().unwrap();
    let sent = pattern(SIZE, 7);
    let payload = sent.clone();
    let writer = thread::spawn(move || writer.write_all(&payload).unwrap());
    let stats = stats_when(&server, |stats| {
        stats.recv_buffers_lent > 0 && stats.recv_bytes_released > 0
    });
    assert!(stats.recv_buffers_lent > 0, "{stats:?}");
    assert!(stats.recv_bytes_released > 0, "{stats:?}");
    assert!(stats.payloads_sent_in_place > 0, "{stats:?}");
    // Every reply carries the bytes it answers.
    let (echoed, _) = unframe(&mut client, SIZE);
    writer.join().unwrap();
    assert!(echoed == sent, "a held buffer lost bytes");
    server.shutdown();
}

/// Polls `published` until `done` holds or the test's wait runs out.
fn published_until(published: &PublishedStats, done: impl Fn(&WorkerStats) -> bool) -> WorkerStats {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let stats = published.snapshot();
        if done(&stats) || std::time::Instant::now() >= deadline {
            return stats;
        }
        thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn other_threads_read_stats_the_workers_published() {
    let server = start(2, Mode::Echo);
    let published = server.handle.published_stats().to_vec();
    assert_eq!(published.len(), 2);
    let mut clients: Vec<TcpStream> = (0..8).map(|_| connect(server.addr)).collect();
    for (index, client) in clients.iter_mut().enumerate() {
        write_all(client, &[index as u8; 1000]);
        assert_eq!(read_exact(client, 1000), [index as u8; 1000]);
    }

    // Idle workers publish before they sleep: what a thread reads without
    // asking matches what the worker reports when asked, that command's
    // own turn included (a later turn, such as re-arming the wakeup read,
    // may have followed it).
    let asked = server.stats();
    let same_but_turns = |read: &WorkerStats, asked: &WorkerStats| {
        let mut read_as_of_asked = *read;
        read_as_of_asked.turns = asked.turns;
        read.turns >= asked.turns && read_as_of_asked == *asked
    };
    for (worker, stats) in asked.iter().enumerate() {
        let read = published_until(&published[worker], |read| same_but_turns(read, stats));
        assert!(
            same_but_turns(&read, stats),
            "worker {worker} published {read:?}, reported {stats:?}"
        );
    }
    let mut total = asked[0];
    total.add(&asked[1]);
    assert_eq!(total.accepted, 8);
    assert_eq!(total.bytes_received, 8000);
    assert_eq!(total.bytes_sent, 8000);
    assert_eq!(total.recv_buffers_lent, 0, "idle workers lend no buffer");

    // After the workers stop, the last figures stay readable.
    drop(clients);
    for _ in 0..8 {
        server.wait_for(|event| matches!(event, Event::Closed { .. }).then_some(()));
    }
    server.shutdown();
    let closed: u64 = published.iter().map(|p| p.snapshot().closed).sum();
    assert_eq!(closed, 8, "the final publish counts every close");
}
