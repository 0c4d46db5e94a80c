//! The closing handshake seen from both ends, byte by byte: the half-closed
//! state (the peer's Close is visible before anything is answered or TCP
//! closes), answering after finishing one's sends, a Close that arrives
//! while a large message is on its way out, Closes that cross, nothing sent
//! after our Close, nothing delivered after the peer's, and a FIN without a
//! Close.

mod common;
mod lifecycle_common;

use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use common::{builder, close_payload, masked_frame, RawClient, WAIT};
use lifecycle_common::*;
use ringws::{CloseKind, Initiator, PreparedMessage, State};

/// Reads one byte with a short timeout: `None` if nothing arrived.
fn nothing_arrives(client: &mut RawClient, within: Duration) -> bool {
    client.stream.set_read_timeout(Some(within)).unwrap();
    let mut byte = [0u8; 1];
    let quiet = match client.stream.read(&mut byte) {
        Err(error) => matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        Ok(_) => false,
    };
    client.stream.set_read_timeout(Some(WAIT)).unwrap();
    quiet
}

/// Reads to EOF: everything the server sent after what was already parsed.
fn rest_until_eof(client: &mut RawClient) -> Vec<u8> {
    let mut rest = std::mem::take(&mut client.pending);
    let mut chunk = [0u8; 4096];
    loop {
        match client.stream.read(&mut chunk) {
            Ok(0) => return rest,
            Ok(n) => rest.extend_from_slice(&chunk[..n]),
            Err(error) => panic!("expected the server's FIN, got {error}"),
        }
    }
}

#[test]
fn the_peers_close_is_visible_half_closed_before_tcp_closes() {
    let gate = Arc::new(Gate::default());
    let (server, probed) = start_probe(builder(), OnClose::Pause(gate.clone()));
    let port = server.local_addr().port();
    let mut client = RawClient::connect(server.local_addr());
    let local = client.stream.local_addr().unwrap().port();
    let (id, _) = probed.opened();

    // Close 4001 "bye", then keep TCP open and read nothing.
    client.write_frame(true, 0x8, &close_payload(4001, "bye"));
    let seen = probed.find(|seen| match seen {
        Seen::CloseReceived {
            code,
            reason,
            state,
            socket_alive,
            ..
        } => Some((code, reason, state, socket_alive)),
        Seen::Closed { .. } => panic!("on_closed before on_close_received"),
        _ => None,
    });
    assert_eq!(
        seen,
        (Some(4001), "bye".to_owned(), State::CloseReceived, true)
    );
    // The callback is still running (held at the gate): nothing was
    // answered and both directions of TCP are open.
    assert!(
        nothing_arrives(&mut client, Duration::from_millis(200)),
        "the server answered before on_close_received returned"
    );
    let established = tcp_sockets(
        "established",
        &format!("sport = :{port} and dport = :{local}"),
    );
    assert_eq!(
        established.len(),
        1,
        "server side still open: {established:?}"
    );

    gate.open();
    // Then: the echo of the peer's code, then the server's FIN while the
    // client has neither closed nor shut down its side.
    assert_eq!(client.read_close(), 4001u16.to_be_bytes());
    assert_eq!(rest_until_eof(&mut client), b"");
    let client_side = tcp_sockets(
        "close-wait",
        &format!("sport = :{local} and dport = :{port}"),
    );
    assert_eq!(
        client_side.len(),
        1,
        "the client is in CLOSE-WAIT: the server closed TCP first"
    );
    drop(client);

    let (info, _) = probed.closed(id);
    assert_eq!(info.code.0, 4001);
    assert_eq!(info.reason, "bye");
    assert_eq!(info.sent.map(|c| c.0), Some(4001));
    assert_eq!(info.initiator, Initiator::Remote);
    assert_eq!(info.kind, CloseKind::Clean);
    let stats = server.stats();
    assert_eq!(stats.total.closes.get(4001, Initiator::Remote), 1);
    assert_eq!(closing(&server), 0);
    server.shutdown(WAIT);
}

#[test]
fn the_application_may_finish_sending_then_answer() {
    let (server, probed) = start_probe(
        builder(),
        OnClose::Finish {
            messages: vec![100, 300_000, 5],
            code: 4002,
            reason: "finished",
        },
    );
    let mut client = RawClient::connect(server.local_addr());
    let (id, _) = probed.opened();
    client.write_frame(true, 0x8, &close_payload(4001, "bye"));

    for len in [100, 300_000, 5] {
        let (fin, opcode, payload) = client.read_frame().expect("a data frame");
        assert!(fin);
        assert_eq!(opcode, 0x2);
        assert_eq!(payload, pattern(len), "message of {len} bytes intact");
    }
    assert_eq!(client.read_close(), close_payload(4002, "finished"));
    assert_eq!(rest_until_eof(&mut client), b"", "nothing after the Close");
    drop(client);

    // In callback order: the three sends and the close, the callback's
    // own event, then on_closed.
    let mut outcomes = Vec::new();
    let states = probed.find(|seen| match seen {
        Seen::Outcome { what, result, .. } => {
            outcomes.push(format!("{what}: {result}"));
            None
        }
        Seen::CloseReceived {
            state, state_after, ..
        } => Some((state, state_after)),
        _ => None,
    });
    assert_eq!(
        outcomes,
        [
            "finish-send: Ok(())",
            "finish-send: Ok(())",
            "finish-send: Ok(())",
            "finish-close: Ok(())"
        ]
    );
    assert_eq!(states, (State::CloseReceived, State::Closed));
    let (info, _) = probed.closed(id);
    assert_eq!(info.code.0, 4001);
    assert_eq!(info.sent.map(|c| c.0), Some(4002));
    assert_eq!(info.initiator, Initiator::Remote);
    assert_eq!(info.kind, CloseKind::Clean);
    server.shutdown(WAIT);
}

#[test]
fn a_close_arriving_while_a_large_message_is_on_the_way_out_follows_it() {
    // The API sends whole messages only (no fragmented sends), so the
    // nearest case is a Close that arrives while a large message is
    // partly written: the message is finished, then the Close answered.
    let (server, probed) = start_probe(builder(), OnClose::Return);
    let mut client = RawClient::connect(server.local_addr());
    let (id, _) = probed.opened();
    let len = 8 << 20;
    client.write_frame(true, 0x1, format!("big {len}").as_bytes());
    // Wait until the message has started to arrive, then Close.
    let mut chunk = [0u8; 4096];
    let n = client.stream.read(&mut chunk).unwrap();
    assert!(n > 0);
    client.pending.extend_from_slice(&chunk[..n]);
    client.write_frame(true, 0x8, &close_payload(1000, "stop"));

    let (_, opcode, payload) = client.read_frame().expect("the large message");
    assert_eq!(opcode, 0x2);
    assert!(payload == pattern(len), "the message arrives whole");
    assert_eq!(client.read_close(), 1000u16.to_be_bytes());
    assert_eq!(rest_until_eof(&mut client), b"");
    drop(client);

    let big = probed.outcome("big");
    assert!(big.starts_with("(Ok(()), "), "{big}");
    let state = probed.find(|seen| match seen {
        Seen::CloseReceived { state, .. } => Some(state),
        _ => None,
    });
    assert_eq!(state, State::CloseReceived);
    let (info, _) = probed.closed(id);
    assert_eq!((info.code.0, info.reason.as_str()), (1000, "stop"));
    assert_eq!(info.kind, CloseKind::Clean);
    server.shutdown(WAIT);
}

#[test]
fn closes_sent_at_once_complete_the_handshake_without_a_second_close() {
    let (server, probed) = start_probe(builder(), OnClose::Return);
    let mut client = RawClient::connect(server.local_addr());
    let (id, _) = probed.opened();
    // In one segment: a message that makes the server close, and the
    // client's own Close. The server reads its peer's Close after sending
    // its own.
    let mut both = masked_frame(true, 0x1, b"close 4000 server side");
    both.extend(masked_frame(true, 0x8, &close_payload(4100, "client side")));
    client.stream.write_all(&both).unwrap();

    assert_eq!(client.read_close(), close_payload(4000, "server side"));
    assert_eq!(rest_until_eof(&mut client), b"", "exactly one Close");
    drop(client);

    let state = probed.find(|seen| match seen {
        Seen::CloseReceived { state, .. } => Some(state),
        _ => None,
    });
    assert_eq!(state, State::Closed, "our Close was already out");
    let (info, _) = probed.closed(id);
    assert_eq!(info.code.0, 4100);
    assert_eq!(info.reason, "client side");
    assert_eq!(info.sent.map(|c| c.0), Some(4000));
    assert_eq!(info.initiator, Initiator::Local);
    assert_eq!(info.kind, CloseKind::Clean);
    server.shutdown(WAIT);
}

#[test]
fn closes_crossing_on_the_wire_complete_the_handshake() {
    let (server, probed) = start_probe(builder(), OnClose::Return);
    let mut client = RawClient::connect(server.local_addr());
    let (id, handle) = probed.opened();
    // The server closes from another thread; the client, not having read
    // it, sends its own Close.
    std::thread::spawn(move || handle.close(4200, "from a handle"))
        .join()
        .unwrap()
        .unwrap();
    // The handle only queues the close for the worker: wait (without
    // reading) until the server's Close is on the wire, or the client's
    // could reach the worker first and be answered instead.
    let mut first = [0u8; 1];
    assert_eq!(client.stream.peek(&mut first).unwrap(), 1);
    client.write_frame(true, 0x8, &close_payload(4300, "crossed"));
    assert_eq!(client.read_close(), close_payload(4200, "from a handle"));
    assert_eq!(rest_until_eof(&mut client), b"", "exactly one Close");
    drop(client);
    let (info, _) = probed.closed(id);
    assert_eq!((info.code.0, info.sent.map(|c| c.0)), (4300, Some(4200)));
    assert_eq!(info.initiator, Initiator::Local);
    assert_eq!(info.kind, CloseKind::Clean);
    server.shutdown(WAIT);
}

#[test]
fn nothing_is_sent_after_our_close() {
    let (server, probed) = start_probe(builder(), OnClose::Return);
    let mut client = RawClient::connect(server.local_addr());
    let (id, handle) = probed.opened();
    client.write_frame(true, 0x1, b"close-then-send");
    assert_eq!(
        probed.outcome("after-close"),
        "(Ok(()), Err(Closing), Err(Closing), Err(Closing))"
    );
    // From other threads too: accepted by the handle (the connection still
    // exists) and dropped by the worker.
    let late = handle.clone();
    let sent = std::thread::spawn(move || {
        (
            late.send_text("late"),
            late.send_binary_owned(vec![1; 70_000]),
            late.ping(b"late"),
        )
    })
    .join()
    .unwrap();
    assert_eq!(sent, (Ok(()), Ok(()), Ok(())));
    server.broadcast(&PreparedMessage::text("broadcast"));
    // Give the worker time to run those commands before the handshake
    // completes (ordering only; nothing is timed).
    std::thread::sleep(Duration::from_millis(100));

    assert_eq!(client.read_close(), close_payload(1000, "done"));
    // The client may still send data before its Close; it is delivered.
    client.write_frame(true, 0x1, b"still delivered");
    client.write_frame(true, 0x8, &close_payload(1000, ""));
    assert_eq!(
        rest_until_eof(&mut client),
        b"",
        "no frame of any kind after our Close"
    );
    drop(client);
    let (info, _) = probed.closed(id);
    assert_eq!(info.kind, CloseKind::Clean);
    let stats = server.stats();
    assert_eq!(stats.total.messages_out, 0, "nothing was queued");
    assert_eq!(
        stats.total.messages_in, 2,
        "the command and the late message"
    );
    server.shutdown(WAIT);
}

#[test]
fn input_after_the_peers_close_is_discarded_even_if_malformed() {
    let (server, probed) = start_probe(builder(), OnClose::Return);
    let mut client = RawClient::connect(server.local_addr());
    let (id, _) = probed.opened();
    let mut burst = masked_frame(true, 0x8, &close_payload(1000, ""));
    burst.extend(masked_frame(true, 0x1, b"ignored"));
    burst.extend(masked_frame(true, 0x2, &vec![7; 200_000]));
    // A reserved opcode: a protocol error if it were read.
    burst.extend(masked_frame(true, 0x3, b"bad"));
    client.stream.write_all(&burst).unwrap();
    assert_eq!(client.read_close(), 1000u16.to_be_bytes());
    assert_eq!(rest_until_eof(&mut client), b"");
    drop(client);
    let (info, _) = probed.closed(id);
    assert_eq!(info.kind, CloseKind::Clean);
    let delivered = probed
        .drain()
        .into_iter()
        .filter(|seen| matches!(seen, Seen::Message { .. }))
        .count();
    assert_eq!(delivered, 0);
    let stats = server.stats();
    assert_eq!(stats.total.messages_in, 0);
    assert_eq!(stats.total.protocol_errors, 0);
    server.shutdown(WAIT);
}

#[test]
fn a_fin_instead_of_the_answer_to_our_close_is_abnormal() {
    // (A FIN on an open connection is covered in close.rs.)
    let (server, probed) = start_probe(builder(), OnClose::Return);
    let mut client = RawClient::connect(server.local_addr());
    let (id, _) = probed.opened();
    client.write_frame(true, 0x1, b"close 1001 leaving");
    assert_eq!(client.read_close(), close_payload(1001, "leaving"));
    client.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(rest_until_eof(&mut client), b"");
    let (info, _) = probed.closed(id);
    assert_eq!(info.code.0, 1006, "no Close received");
    assert_eq!(info.sent.map(|c| c.0), Some(1001));
    assert_eq!(info.initiator, Initiator::Local);
    assert_eq!(info.kind, CloseKind::Abnormal);
    assert_eq!(server.stats().total.abnormal_closes, 1);
    drop(client);
    server.shutdown(WAIT);
}
