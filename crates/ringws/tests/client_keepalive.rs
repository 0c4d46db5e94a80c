//! Keepalive in the client role: the client's Pings and the server's Pongs,
//! the client answering the server's Pings (masked, or the server would
//! fail the connection), explicit Pings through a handle, and a dead server
//! cut off within `ping_interval + pong_timeout + close_timeout`.

mod client_common;

use std::collections::HashSet;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use client_common::*;
use ringws::{CloseCode, CloseKind, Initiator};

#[test]
fn the_client_pings_and_the_server_answers() {
    let (server, _server_events) = start_server(|builder| builder);
    let (client, events) = start_client(|builder| {
        builder
            .ping_interval(Some(Duration::from_millis(30)))
            .pong_timeout(Duration::from_secs(5))
    });
    let id = client.connect(&url(&server, "/"), Plan::tagged(1)).unwrap();
    opened(&events, id);
    let mut payloads = HashSet::new();
    while payloads.len() < 3 {
        let payload = wait_for(&events, "a keepalive pong", |event| match event {
            ClientEvent::Pong { id: on, payload } if on == id => Some(payload),
            _ => None,
        });
        assert_eq!(payload.len(), 8, "keepalive payloads are 8 bytes");
        assert!(payloads.insert(payload), "every ping payload is unique");
    }
    let stats = client.stats().total;
    assert_eq!(stats.keepalive_timeouts, 0);
    assert_eq!(stats.open, 1);
    assert_eq!(server.stats().total.protocol_errors, 0);
    client.shutdown(Duration::from_secs(1));
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn the_client_answers_the_servers_pings_and_explicit_pings() {
    let (server, server_events) =
        start_server(|builder| builder.ping_interval(Some(Duration::from_millis(30))));
    let (client, events) = start_client(|builder| builder.ping_interval(None));
    let id = client.connect(&url(&server, "/"), Plan::tagged(1)).unwrap();
    let handle = opened(&events, id);
    for _ in 0..3 {
        let payload = wait_for(&server_events, "the client's pong", |event| match event {
            ServerEvent::Pong { payload, .. } => Some(payload),
            _ => None,
        });
        assert_eq!(payload.len(), 8);
    }
    assert_eq!(server.stats().total.keepalive_timeouts, 0);

    handle.ping(b"are you there").unwrap();
    let payload = wait_for(
        &events,
        "the pong to an explicit ping",
        |event| match event {
            ClientEvent::Pong { payload, .. } if payload == b"are you there" => Some(payload),
            _ => None,
        },
    );
    assert_eq!(payload, b"are you there");
    assert_eq!(
        handle.ping(&[0; 126]),
        Err(ringws::SendError::ControlPayloadTooLong)
    );
    client.shutdown(Duration::from_secs(1));
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn a_dead_server_is_cut_off_by_keepalive_and_the_close_timeout() {
    let ping_interval = Duration::from_millis(100);
    let pong_timeout = Duration::from_millis(100);
    let close_timeout = Duration::from_millis(200);
    let (client, events) = start_client(|builder| {
        builder
            .ping_interval(Some(ping_interval))
            .pong_timeout(pong_timeout)
            .close_timeout(close_timeout)
    });
    let (done, finished) = mpsc::channel::<()>();
    // Completes the handshake, then never reads or answers again.
    let addr = raw_server(move |mut stream| {
        accept_upgrade(&mut stream);
        let _ = finished.recv_timeout(WAIT);
    });
    let id = client
        .connect(&format!("ws://{addr}/"), Plan::tagged(1))
        .unwrap();
    opened(&events, id);
    let opened_at = Instant::now();
    let info = closed(&events, id);
    let took = opened_at.elapsed();
    assert_eq!(info.sent, Some(CloseCode::INTERNAL_ERROR), "1011 sent");
    assert_eq!(info.code, CloseCode::ABNORMAL, "no Close came back");
    assert_eq!(info.initiator, Initiator::Local);
    assert_eq!(info.kind, CloseKind::Forced);
    // Timers never fire early: the earliest possible end.
    assert!(
        took >= ping_interval + pong_timeout,
        "closed after {took:?}"
    );
    let stats = client.stats().total;
    assert_eq!(stats.keepalive_timeouts, 1);
    assert_eq!(stats.close_timeouts, 1);
    let _ = done.send(());
    client.shutdown(Duration::from_secs(1));
}
