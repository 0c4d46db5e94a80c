//! Hosts with several addresses: the client tries them in order until a TCP
//! connect succeeds, on its worker, within one handshake timeout, and when
//! none opens the error lists every address tried. Names are resolved by a
//! test resolver ([`ClientBuilder::resolver`]) so that a name has several
//! loopback addresses whatever this machine's `/etc/hosts` says. Loopback
//! only; every wait is bounded.

mod client_common;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use client_common::*;
use ringws::{ClientBuilder, ConnectError};

/// The name the test resolver knows.
const HOST: &str = "dual.test";

/// A resolver answering `ips` (with the URL's port) for [`HOST`], and
/// "not found" for any other name.
fn resolving(builder: ClientBuilder, ips: &'static [&'static str]) -> ClientBuilder {
    builder.resolver(move |host, port| {
        if host != HOST {
            return Err(std::io::Error::new(
                ErrorKind::NotFound,
                "unknown test name",
            ));
        }
        Ok(ips
            .iter()
            .map(|ip| SocketAddr::new(ip.parse().unwrap(), port))
            .collect())
    })
}

/// Checks that nothing listens on `addr`, so a connect there is refused.
fn assert_refuses(addr: SocketAddr) {
    match TcpStream::connect_timeout(&addr, WAIT) {
        Err(error) if error.kind() == ErrorKind::ConnectionRefused => {}
        other => panic!("{addr} must refuse connections for this test, got {other:?}"),
    }
}

/// An IPv6 loopback port nothing listens on (bound, then released).
fn closed_v6_port() -> u16 {
    TcpListener::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_refused_first_address_falls_back_to_the_next() {
    // The server listens on 127.0.0.1 only; the name resolves to ::1
    // first, as `localhost` does on many machines.
    let (server, server_events) = start_server(|builder| builder);
    let port = server.local_addr().port();
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    assert_refuses(v6);
    let (client, events) = start_client(|builder| resolving(builder, &["::1", "127.0.0.1"]));
    let url = format!("ws://{HOST}:{port}/fallback");

    let mut plan = Plan::tagged(1);
    plan.greeting = Greeting::Text("over IPv4".to_owned());
    let first_id = client.connect(&url, plan).expect("the attempt starts");
    let (id, peer) = wait_for(&events, "the connection to open", |event| match event {
        ClientEvent::Open {
            id, tag: 1, peer, ..
        } => Some((id, peer)),
        ClientEvent::ConnectFailed { error, .. } => panic!("connect failed: {error}"),
        _ => None,
    });
    assert_eq!(
        peer,
        Some(server.local_addr()),
        "opened on the IPv4 address"
    );
    // Documented: each address gets its own socket, so the connection
    // opens under another id than the refused first socket's.
    assert_ne!(id, first_id);
    assert_eq!(next_text(&events, id), "over IPv4");
    let (_, _, upgrade) = server_opened(&server_events);
    assert_eq!(upgrade.path, "/fallback");
    let stats = client.stats().total;
    assert_eq!((stats.upgraded, stats.open, stats.handshaking), (1, 1, 0));
    assert_eq!(stats.handshake_timeouts, 0);

    // The same from a queued connect.
    client.connect_queued(&url, Plan::tagged(2)).unwrap();
    let peer = wait_for(
        &events,
        "the queued connection to open",
        |event| match event {
            ClientEvent::Open { tag: 2, peer, .. } => Some(peer),
            ClientEvent::ConnectFailed { error, .. } => panic!("connect failed: {error}"),
            _ => None,
        },
    );
    assert_eq!(peer, Some(server.local_addr()));
    poll_until("both connections to count as open", || {
        let stats = client.stats().total;
        stats.open == 2 && stats.handshaking == 0
    });

    client
        .handle(id)
        .expect("a handle by the reported id")
        .close(1000, "")
        .unwrap();
    closed(&events, id);
    client.shutdown(Duration::from_secs(1));
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn when_every_address_refuses_the_error_lists_each_attempt() {
    let port = closed_port();
    let tried: Vec<SocketAddr> = ["[::1]", "127.0.0.1", "127.0.0.2"]
        .iter()
        .map(|ip| format!("{ip}:{port}").parse().unwrap())
        .collect();
    for &addr in &tried {
        assert_refuses(addr);
    }
    let (client, events) =
        start_client(|builder| resolving(builder, &["::1", "127.0.0.1", "::1", "127.0.0.2"]));
    let url = format!("ws://{HOST}:{port}/");

    let first_id = client
        .connect(&url, Plan::tagged(3))
        .expect("the attempt starts");
    let (failed_id, error) = connect_failed(&events, 3);
    let ConnectError::AllAddressesFailed { attempts } = &error else {
        panic!("expected every address to be listed, got {error:?}");
    };
    // In the resolver's order, the repeated ::1 tried once.
    let addrs: Vec<SocketAddr> = attempts.iter().map(|attempt| attempt.addr).collect();
    assert_eq!(addrs, tried);
    for attempt in attempts {
        assert_eq!(attempt.error, ConnectError::Refused, "{}", attempt.addr);
    }
    assert_eq!(error.last_error(), &ConnectError::Refused);
    assert_eq!(error.errno(), Some(libc::ECONNREFUSED));
    let text = error.to_string();
    for addr in &tried {
        assert!(
            text.contains(&format!("{addr}: connection refused")),
            "{text}"
        );
    }
    // Reported under the id of the last socket tried.
    assert!(failed_id.is_some_and(|id| id != first_id), "{failed_id:?}");

    // A queued connect fails the same way.
    client.connect_queued(&url, Plan::tagged(4)).unwrap();
    let (queued_id, queued_error) = connect_failed(&events, 4);
    assert!(queued_id.is_some());
    assert_eq!(queued_error, error);

    let stats = client.stats().total;
    assert_eq!(stats.connections(), 0, "no socket is left handshaking");
    assert_eq!(stats.upgraded, 0);
    assert_eq!(stats.handshake_timeouts, 0);
    client.shutdown(Duration::from_secs(1));
}

#[test]
fn one_handshake_timeout_covers_every_address() {
    let timeout = Duration::from_millis(300);
    // ::1 refuses; 127.0.0.1 accepts TCP, reads the request and never
    // answers.
    let (done, finished) = mpsc::channel::<()>();
    let silent = raw_server(move |mut stream| {
        read_head(&mut stream);
        let _ = finished.recv_timeout(WAIT);
    });
    let port = silent.port();
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    assert_refuses(v6);
    let (client, events) = start_client(|builder| {
        resolving(builder, &["::1", "127.0.0.1"]).handshake_timeout(timeout)
    });

    let started = Instant::now();
    client
        .connect(&format!("ws://{HOST}:{port}/"), Plan::tagged(5))
        .expect("the attempt starts");
    let (_, error) = connect_failed(&events, 5);
    let elapsed = started.elapsed();
    let ConnectError::AllAddressesFailed { attempts } = &error else {
        panic!("expected both addresses to be listed, got {error:?}");
    };
    let outcome: Vec<(SocketAddr, ConnectError)> = attempts
        .iter()
        .map(|attempt| (attempt.addr, attempt.error.clone()))
        .collect();
    assert_eq!(
        outcome,
        [(v6, ConnectError::Refused), (silent, ConnectError::Timeout)]
    );
    assert_eq!(error.last_error(), &ConnectError::Timeout);
    assert!(elapsed >= timeout, "timed out after {elapsed:?}");
    assert!(
        elapsed < timeout + Duration::from_secs(3),
        "took {elapsed:?}"
    );
    let stats = client.stats().total;
    assert_eq!(stats.handshake_timeouts, 1);
    assert_eq!(stats.connections(), 0);
    let _ = done.send(());
    client.shutdown(Duration::from_secs(1));
}

#[test]
fn a_handshake_timeout_too_long_to_represent_still_falls_back() {
    // `Duration::MAX` passes validation (only zero is refused); the
    // deadline shared by every address cannot be represented and means no
    // deadline, as the shutdown deadline's `Duration::MAX` does.
    let (server, _server_events) = start_server(|builder| builder);
    let port = server.local_addr().port();
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    assert_refuses(v6);
    let (client, events) = start_client(|builder| {
        resolving(builder, &["::1", "127.0.0.1"])
            .handshake_timeout(Duration::MAX)
            .workers(1)
    });
    client
        .connect(&format!("ws://{HOST}:{port}/"), Plan::tagged(1))
        .expect("the attempt starts");
    let peer = wait_for(&events, "the connection to open", |event| match event {
        ClientEvent::Open { tag: 1, peer, .. } => Some(peer),
        ClientEvent::ConnectFailed { error, .. } => panic!("connect failed: {error}"),
        _ => None,
    });
    assert_eq!(peer, Some(server.local_addr()));
    // The worker is still there for the next attempt.
    let id = client
        .connect(&format!("ws://127.0.0.1:{port}/"), Plan::tagged(2))
        .expect("the worker still runs");
    opened(&events, id);
    client.shutdown(Duration::from_secs(1));
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn a_source_address_limits_the_attempt_to_its_family() {
    // A server on each family; the resolver lists the IPv4 one first.
    let (v4_server, _v4_events) = start_server(|builder| builder);
    let (tx, v6_events) = mpsc::channel();
    let v6_server = ringws::Server::bind("[::1]:0".parse().unwrap())
        .workers(1)
        .recv_buffers(64, 16 * 1024)
        .ping_interval(None)
        .start(move |_| EchoServer { events: tx.clone() })
        .expect("the IPv6 server starts");
    let v4 = v4_server.local_addr();
    let v6 = v6_server.local_addr();
    let (client, events) = start_client(move |builder| {
        builder
            .source_addr("[::1]:0".parse().unwrap())
            .resolver(move |_, _| Ok(vec![v4, v6]))
    });

    client
        .connect(&format!("ws://{HOST}:{}/", v6.port()), Plan::tagged(6))
        .expect("the attempt starts");
    let peer = wait_for(&events, "the connection to open", |event| match event {
        ClientEvent::Open { tag: 6, peer, .. } => Some(peer),
        ClientEvent::ConnectFailed { error, .. } => panic!("connect failed: {error}"),
        _ => None,
    });
    assert_eq!(peer, Some(v6), "opened on the source's family");
    server_opened(&v6_events);

    // With the IPv6 address refusing, the attempt fails on it alone: the
    // IPv4 address (whose server would accept) is not tried, not listed.
    let refusing: SocketAddr = format!("[::1]:{}", closed_v6_port()).parse().unwrap();
    assert_refuses(refusing);
    let (client_v6, events_v6) = start_client(move |builder| {
        builder
            .source_addr("[::1]:0".parse().unwrap())
            .resolver(move |_, _| Ok(vec![v4, refusing]))
    });
    client_v6
        .connect(
            &format!("ws://{HOST}:{}/", refusing.port()),
            Plan::tagged(9),
        )
        .expect("the attempt starts");
    let (_, error) = connect_failed(&events_v6, 9);
    assert_eq!(error, ConnectError::Refused);
    assert_eq!(v4_server.stats().total.accepted, 0, "IPv4 is never tried");
    client_v6.shutdown(Duration::from_secs(1));
    client.shutdown(Duration::from_secs(1));
    v4_server.shutdown(Duration::from_secs(1));
    v6_server.shutdown(Duration::from_secs(1));
}

#[test]
fn the_system_resolver_reaches_a_server_on_localhost() {
    // Whatever order `localhost` resolves in here, the IPv4 server opens.
    let (server, _server_events) = start_server(|builder| builder);
    let (client, events) = start_client(|builder| builder);
    let port = server.local_addr().port();
    client
        .connect(&format!("ws://localhost:{port}/"), Plan::tagged(7))
        .expect("the attempt starts");
    let peer = wait_for(&events, "the connection to open", |event| match event {
        ClientEvent::Open { tag: 7, peer, .. } => Some(peer),
        ClientEvent::ConnectFailed { error, .. } => panic!("connect failed: {error}"),
        _ => None,
    });
    assert_eq!(peer, Some(server.local_addr()));
    client.shutdown(Duration::from_secs(1));
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn an_unknown_name_fails_before_any_socket() {
    let (client, events) = start_client(|builder| resolving(builder, &["127.0.0.1"]));
    match client.connect("ws://other.test:80/", Plan::tagged(8)) {
        Err(ConnectError::Resolve { host, reason }) => {
            assert_eq!(host, "other.test");
            assert!(reason.contains("unknown test name"), "{reason}");
        }
        other => panic!("expected a resolution error, got {other:?}"),
    }
    assert!(events.try_recv().is_err(), "no callback for a refused call");
    assert_eq!(client.stats().total.connections(), 0);
    client.shutdown(Duration::from_secs(1));
}
