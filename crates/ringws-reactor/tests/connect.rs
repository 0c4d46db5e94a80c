//! Outbound connections from a handler: the client role on the same reactor
//! type, source-address binding, and connect failures.

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::*;
use ringws_reactor::CloseCause;

fn client_reactor() -> Server {
    start_with(client_config(), Mode::Sink, true)
}

#[test]
fn handler_connects_and_exchanges_bytes_with_a_server() {
    const CONNECTIONS: u64 = 8;
    let server = start(2, Mode::Echo);
    let client = client_reactor();
    // Spread over 127.0.0.2..=127.0.0.5 as a load generator would.
    let connected = connect_and_echo_greetings(&client, server.addr, CONNECTIONS, |tag| {
        Some(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (tag % 4) as u8)),
            0,
        ))
    });
    // The server saw the chosen source addresses.
    let mut sources = HashSet::new();
    for _ in 0..CONNECTIONS {
        let peer = server.wait_for(|event| match event {
            Event::Accepted { peer, .. } => Some(*peer),
            _ => None,
        });
        sources.insert(peer.ip());
    }
    let expected: HashSet<IpAddr> = (2..6)
        .map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .collect();
    assert_eq!(sources, expected);
    // Closing from the client side ends both ends cleanly.
    close_each(&client, &connected);
    let stats = client.stats();
    assert_eq!(stats[0].connected, CONNECTIONS);
    client.shutdown();
    server.shutdown();
}

#[test]
fn refused_connect_reports_connect_failed() {
    let client = client_reactor();
    client.send(Cmd::Connect {
        addr: unused_loopback_addr(),
        source: None,
        tag: 42,
        greeting: b"never sent".to_vec(),
    });
    let tag = client.wait_for(|event| match event {
        Event::ConnectRefused { tag } => Some(*tag),
        _ => None,
    });
    assert_eq!(tag, 42);
    assert_connect_refused(&client, 42);
    assert_eq!(client.stats()[0].connect_failed, 1);
    client.shutdown();
}

#[test]
fn terminating_a_connection_still_connecting_cancels_the_connect() {
    // A listener whose accept queue is full drops SYNs, so a connect to it
    // stays in progress.
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let fillers: Vec<_> = (0..4)
        .map(|_| {
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            socket.set_nonblocking(true).unwrap();
            let _ = socket.connect(&addr.into());
            socket
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let client = client_reactor();
    client.send(Cmd::Connect {
        addr,
        source: None,
        tag: 9,
        greeting: b"queued".to_vec(),
    });
    let conn = client.wait_for(|event| match event {
        Event::Connecting { conn, tag: 9 } => Some(*conn),
        _ => None,
    });
    client.send(Cmd::Terminate(conn));
    assert_eq!(client.closed(conn), CloseCause::Terminated);
    let events = client.stop_and_collect();
    assert!(
        !events
            .iter()
            .any(|event| matches!(event, Event::Connected { conn: c, .. } if *c == conn)),
        "a terminated connect must not report connected"
    );
    drop(fillers);
}

#[test]
fn terminating_an_outbound_connection_resets_it_and_closes_it_once() {
    let server = start(1, Mode::Echo);
    let client = client_reactor();
    client.send(Cmd::Connect {
        addr: server.addr,
        source: None,
        tag: 7,
        greeting: Vec::new(),
    });
    // Terminate right after it connects; either way on_closed fires once.
    let conn = client.wait_for(|event| match event {
        Event::Connected { conn, .. } => Some(*conn),
        _ => None,
    });
    client.send(Cmd::Terminate(conn));
    assert_eq!(client.closed(conn), CloseCause::Terminated);
    let server_side = server.wait_for(|event| match event {
        Event::Accepted { conn, .. } => Some(*conn),
        _ => None,
    });
    let cause = server.closed(server_side);
    assert_eq!(cause.errno(), Some(libc::ECONNRESET), "{cause:?}");
    let events = client.stop_and_collect();
    let extra_closes = events
        .iter()
        .filter(|event| matches!(event, Event::Closed { conn: c, .. } if *c == conn))
        .count();
    assert_eq!(extra_closes, 0, "on_closed fired more than once");
    server.shutdown();
}
