//! Closing from the client role: close with a code and reason in both
//! directions, terminate on either side, the client waiting for the server
//! to close TCP (bounded by the close timeout), client shutdown, and a
//! misbehaving server failed with the matching code.

mod client_common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use client_common::*;
use ringws::{CloseCode, CloseError, CloseKind, ConnectError, Initiator, State};

#[test]
fn the_client_closes_with_a_code_and_a_reason() {
    let (server, server_events) = start_server(|builder| builder);
    let (client, events) = start_client(|builder| builder);
    let id = client.connect(&url(&server, "/"), Plan::tagged(1)).unwrap();
    let handle = opened(&events, id);
    let (server_id, _, _) = server_opened(&server_events);

    // Invalid closes are refused and send nothing.
    assert_eq!(handle.close(1005, ""), Err(CloseError::InvalidCode(1005)));
    assert_eq!(
        handle.close(1000, &"x".repeat(124)),
        Err(CloseError::ReasonTooLong(124))
    );
    handle.send_text("still open").unwrap();
    assert_eq!(next_text(&events, id), "still open");

    handle.close(4001, "client bye").unwrap();
    let (code, reason) = wait_for(
        &server_events,
        "the server's close_received",
        |event| match event {
            ServerEvent::CloseReceived { code, reason, .. } => Some((code, reason)),
            _ => None,
        },
    );
    assert_eq!((code, reason.as_str()), (Some(4001), "client bye"));
    let (code, state) = wait_for(
        &events,
        "the client's close_received",
        |event| match event {
            ClientEvent::CloseReceived { code, state, .. } => Some((code, state)),
            _ => None,
        },
    );
    assert_eq!(code, Some(4001), "the server echoes the code");
    assert_eq!(state, State::Closed, "our Close was already sent");

    let info = closed(&events, id);
    assert_eq!(info.code, CloseCode(4001));
    assert_eq!(info.sent, Some(CloseCode(4001)));
    assert_eq!(info.initiator, Initiator::Local);
    assert_eq!(info.kind, CloseKind::Clean);
    let server_info = server_closed(&server_events, server_id);
    assert_eq!(server_info.code, CloseCode(4001));
    assert_eq!(server_info.reason, "client bye");
    assert_eq!(server_info.initiator, Initiator::Remote);
    assert_eq!(server_info.kind, CloseKind::Clean);
    // The server closed TCP first and the client followed: no timeout.
    assert_eq!(client.stats().total.close_timeouts, 0);
    assert_eq!(handle.send_text("late"), Err(ringws::SendError::Gone));
    client.shutdown(Duration::from_secs(1));
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn the_server_closes_with_a_code_and_a_reason() {
    let (server, server_events) = start_server(|builder| builder);
    let (client, events) = start_client(|builder| builder);
    let id = client.connect(&url(&server, "/"), Plan::tagged(1)).unwrap();
    opened(&events, id);
    let (server_id, server_handle, _) = server_opened(&server_events);

    server_handle.close(4002, "server bye").unwrap();
    let (code, reason, state) = wait_for(
        &events,
        "the client's close_received",
        |event| match event {
            ClientEvent::CloseReceived {
                code,
                reason,
                state,
                ..
            } => Some((code, reason, state)),
            _ => None,
        },
    );
    assert_eq!(code, Some(4002));
    assert_eq!(reason, "server bye");
    assert_eq!(
        state,
        State::CloseReceived,
        "half-closed: ours not sent yet"
    );

    let info = closed(&events, id);
    assert_eq!(info.code, CloseCode(4002));
    assert_eq!(info.reason, "server bye");
    assert_eq!(
        info.sent,
        Some(CloseCode(4002)),
        "the client echoes the code"
    );
    assert_eq!(info.initiator, Initiator::Remote);
    assert_eq!(info.kind, CloseKind::Clean);
    let server_info = server_closed(&server_events, server_id);
    assert_eq!(server_info.code, CloseCode(4002));
    assert_eq!(server_info.initiator, Initiator::Local);
    assert_eq!(server_info.kind, CloseKind::Clean);
    assert_eq!(client.stats().total.close_timeouts, 0);
    client.shutdown(Duration::from_secs(1));
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn terminate_on_either_side() {
    let (server, server_events) = start_server(|builder| builder);
    let (client, events) = start_client(|builder| builder);

    // The client terminates.
    let id = client.connect(&url(&server, "/"), Plan::tagged(1)).unwrap();
    let handle = opened(&events, id);
    let (server_id, _, _) = server_opened(&server_events);
    handle.terminate().unwrap();
    let info = closed(&events, id);
    assert_eq!(info.code, CloseCode::ABNORMAL);
    assert_eq!(info.sent, None);
    assert_eq!(info.initiator, Initiator::Local);
    assert_eq!(info.kind, CloseKind::Forced);
    let server_info = server_closed(&server_events, server_id);
    assert_eq!(server_info.code, CloseCode::ABNORMAL);
    assert_eq!(server_info.initiator, Initiator::Remote);
    assert_eq!(server_info.kind, CloseKind::Abnormal);

    // The server terminates.
    let id = client.connect(&url(&server, "/"), Plan::tagged(2)).unwrap();
    opened(&events, id);
    let (_, server_handle, _) = server_opened(&server_events);
    server_handle.terminate().unwrap();
    let info = closed(&events, id);
    assert_eq!(info.code, CloseCode::ABNORMAL);
    assert_eq!(info.initiator, Initiator::Remote);
    assert_eq!(info.kind, CloseKind::Abnormal);
    client.shutdown(Duration::from_secs(1));
    server.shutdown(Duration::from_secs(1));
}

/// A raw server that completes the handshake, answers the client's Close
/// and then either closes TCP at once or keeps it open; reports how long
/// after its Close the client's side of TCP ended.
fn closing_server(server_closes_tcp: bool) -> (std::net::SocketAddr, mpsc::Receiver<Duration>) {
    let (tx, rx) = mpsc::channel();
    let addr = raw_server(move |mut stream| {
        accept_upgrade(&mut stream);
        let (opcode, payload) = read_client_frame(&mut stream);
        assert_eq!(opcode, 0x8, "the client's Close");
        assert_eq!(&payload[..2], &4001u16.to_be_bytes());
        stream.write_all(&[0x88, 0x02, 0x0F, 0xA1]).unwrap();
        let replied = Instant::now();
        if server_closes_tcp {
            let _ = stream.shutdown(Shutdown::Write);
        }
        // Until the client's FIN or reset.
        let mut sink = [0u8; 64];
        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
        let _ = tx.send(replied.elapsed());
    });
    (addr, rx)
}

#[test]
fn the_client_waits_for_the_server_to_close_tcp_up_to_the_close_timeout() {
    let close_timeout = Duration::from_millis(300);
    let (client, events) = start_client(|builder| builder.close_timeout(close_timeout));
    let (addr, client_gone) = closing_server(false);
    let id = client
        .connect(&format!("ws://{addr}/"), Plan::tagged(1))
        .unwrap();
    let handle = opened(&events, id);
    handle.close(4001, "bye").unwrap();
    let info = closed(&events, id);
    assert_eq!(info.kind, CloseKind::Clean, "both Closes were exchanged");
    assert_eq!(info.code, CloseCode(4001));
    let waited = client_gone.recv_timeout(WAIT).expect("the client ends TCP");
    // The close timeout runs from the client's Close, sent just before the
    // server's reply: allow for that head start, but the client must not
    // have closed TCP right after the closing handshake.
    assert!(
        waited >= close_timeout / 2,
        "the client closed TCP {waited:?} after the handshake"
    );
    assert_eq!(client.stats().total.close_timeouts, 1);
    client.shutdown(Duration::from_secs(1));
}

#[test]
fn the_client_follows_when_the_server_closes_tcp() {
    let (client, events) = start_client(|builder| builder.close_timeout(Duration::from_secs(5)));
    let (addr, client_gone) = closing_server(true);
    let id = client
        .connect(&format!("ws://{addr}/"), Plan::tagged(1))
        .unwrap();
    let handle = opened(&events, id);
    handle.close(4001, "bye").unwrap();
    let info = closed(&events, id);
    assert_eq!(info.kind, CloseKind::Clean);
    client_gone.recv_timeout(WAIT).expect("the client ends TCP");
    assert_eq!(
        client.stats().total.close_timeouts,
        0,
        "the server's FIN, not the close timeout, ended the connection"
    );
    client.shutdown(Duration::from_secs(1));
}

#[test]
fn client_shutdown_closes_every_connection_with_1001() {
    let (server, server_events) = start_server(|builder| builder);
    let (client, events) = start_client(|builder| builder);
    let control = client.control();
    for tag in 0..3 {
        let id = client
            .connect(&url(&server, "/"), Plan::tagged(tag))
            .unwrap();
        opened(&events, id);
    }
    let report = client.shutdown(Duration::from_secs(2));
    assert_eq!(report.total, 3);
    assert_eq!(report.clean, 3, "{report:?}");
    let mut seen = 0;
    while seen < 3 {
        if let ServerEvent::CloseReceived { code, reason, .. } =
            server_events.recv_timeout(WAIT).expect("server events")
        {
            assert_eq!(code, Some(1001));
            assert_eq!(reason, ringws::DEFAULT_CLIENT_SHUTDOWN_REASON);
            seen += 1;
        }
    }
    assert_eq!(
        control.connect(&url(&server, "/"), Plan::tagged(9)),
        Err(ConnectError::Shutdown)
    );
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn a_misbehaving_server_is_failed_with_the_matching_close_code() {
    let max_message_size = 100;
    let masked_text = vec![0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
    let reserved_bit = vec![0xC1, 0x02, b'h', b'i'];
    let invalid_utf8 = vec![0x81, 0x02, 0xFF, 0xFE];
    let mut oversized = vec![0x82, 126];
    oversized.extend_from_slice(&200u16.to_be_bytes());
    oversized.extend_from_slice(&pattern(200));
    let cases = [
        ("a masked frame", masked_text, CloseCode::PROTOCOL_ERROR),
        ("a reserved bit", reserved_bit, CloseCode::PROTOCOL_ERROR),
        ("invalid UTF-8", invalid_utf8, CloseCode::INVALID_PAYLOAD),
        (
            "an oversized message",
            oversized,
            CloseCode::MESSAGE_TOO_BIG,
        ),
    ];
    let (client, events) = start_client(|builder| builder.max_message_size(max_message_size));
    for (tag, (what, bytes, expected)) in (0u32..).zip(cases) {
        let (tx, seen) = mpsc::channel();
        let addr = raw_server(move |mut stream| {
            accept_upgrade(&mut stream);
            stream.write_all(&bytes).unwrap();
            let close = read_client_frame(&mut stream);
            // The client fails the connection: it closes TCP without
            // waiting for an answer.
            let mut rest = Vec::new();
            let ended = stream.read_to_end(&mut rest).is_ok();
            let _ = tx.send((close, ended));
        });
        let id = client
            .connect(&format!("ws://{addr}/"), Plan::tagged(tag))
            .unwrap();
        opened(&events, id);
        let info = closed(&events, id);
        assert_eq!(info.sent, Some(expected), "{what}");
        assert_eq!(info.code, CloseCode::ABNORMAL, "{what}: no Close came back");
        assert_eq!(
            (info.initiator, info.kind),
            (Initiator::Local, CloseKind::Abnormal),
            "{what}"
        );
        let ((opcode, payload), ended) = seen.recv_timeout(WAIT).expect("the server's report");
        assert_eq!(opcode, 0x8, "{what}: a Close");
        assert_eq!(payload[..2], expected.0.to_be_bytes(), "{what}");
        assert!(ended, "{what}: the client closed TCP");
    }
    assert_eq!(client.stats().total.protocol_errors, 4);
    client.shutdown(Duration::from_secs(1));
}

#[test]
fn a_server_dropping_tcp_without_a_close_is_abnormal() {
    let (client, events) = start_client(|builder| builder);
    let addr = raw_server(|mut stream| {
        accept_upgrade(&mut stream);
        stream.write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
    });
    let id = client
        .connect(&format!("ws://{addr}/"), Plan::tagged(1))
        .unwrap();
    opened(&events, id);
    assert_eq!(next_text(&events, id), "hi");
    let info = closed(&events, id);
    assert_eq!(info.code, CloseCode::ABNORMAL);
    assert_eq!(info.sent, None);
    assert_eq!(
        (info.initiator, info.kind),
        (Initiator::Remote, CloseKind::Abnormal)
    );
    client.shutdown(Duration::from_secs(1));
}
