//! Reading paused and resumed by the application (`Conn::pause_reading`,
//! `ConnHandle::resume_reading`).

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use ringws::{CloseKind, Initiator};

#[test]
fn a_paused_connection_gets_nothing_until_resumed_and_then_everything_in_order() {
    let (server, events) = start(builder());
    let mut client = RawClient::connect(server.local_addr());
    let (id, _, handle) = events.opened_blocking();
    // "pause" and the two messages behind it arrive in one segment: the
    // pause takes effect between them.
    let mut burst = masked_frame(true, 0x1, b"pause");
    burst.extend(masked_frame(true, 0x1, b"first"));
    burst.extend(masked_frame(true, 0x9, b"ping"));
    burst.extend(masked_frame(true, 0x1, b"second"));
    client.stream.write_all(&burst).unwrap();
    // While paused, more arrives than the kernel's buffers hold: TCP stops
    // the writer, and nothing reaches the handler.
    let batch: Vec<u8> = masked_frame(true, 0x2, &[7; 1000]).repeat(256);
    let batches = (16 << 20) / batch.len();
    let sender = BatchWriter::spawn(&client.stream, batches, move |_| batch.clone());
    let blocked_at = sender.wait_until_stuck();
    assert!(
        blocked_at < batches,
        "TCP slowed the peer: {blocked_at} of {batches} batches written"
    );
    assert!(
        events.try_next(Duration::from_millis(200)).is_none(),
        "nothing is delivered while paused"
    );
    assert_eq!(server.stats().total.messages_in, 1, "only the pause");

    handle.resume_reading().unwrap();
    let texts: Vec<String> = (0..2)
        .map(|_| {
            events.find_blocking(|event| match event {
                Event::Text { id: from, text } if from == id => Some(text),
                _ => None,
            })
        })
        .collect();
    assert_eq!(texts, ["first", "second"]);
    // Everything sent while paused arrives too: the echoes of the two
    // texts, the Pong between them, then one echo per binary message.
    client
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (_, opcode, payload) = client.read_frame().unwrap();
    assert_eq!((opcode, payload.as_slice()), (0x1, &b"first"[..]));
    let (_, opcode, payload) = client.read_frame().unwrap();
    assert_eq!((opcode, payload.as_slice()), (0xA, &b"ping"[..]));
    let (_, opcode, payload) = client.read_frame().unwrap();
    assert_eq!((opcode, payload.as_slice()), (0x1, &b"second"[..]));
    sender.join();
    let total = batches * 256;
    let deadline = Instant::now() + WAIT;
    while server.stats().total.messages_in < 3 + total as u64 {
        assert!(Instant::now() < deadline, "every message delivered");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(client);
    server.shutdown(WAIT);
}

#[test]
fn closing_a_paused_connection_reads_the_peers_close_and_ends_clean() {
    let (server, events) = start(builder());
    let mut client = RawClient::connect(server.local_addr());
    let (id, _, handle) = events.opened_blocking();
    client.write_frame(true, 0x1, b"pause");
    // The pause is in effect once a message behind it goes undelivered.
    client.write_frame(true, 0x1, b"unread");
    assert!(events.try_next(Duration::from_millis(200)).is_none());
    handle.close(4000, "done").unwrap();
    assert_eq!(client.read_close(), close_payload(4000, "done"));
    client.write_frame(true, 0x8, &close_payload(4000, ""));
    assert!(client.wait_eof());
    drop(client);
    let info = events.closed_blocking(id);
    assert_eq!(info.kind, CloseKind::Clean);
    assert_eq!(info.initiator, Initiator::Local);
    assert_eq!(info.code.0, 4000, "the peer's Close was read");
    assert!(info.close_duration < Duration::from_secs(2), "{info:?}");
    server.shutdown(WAIT);
}

#[test]
fn pause_and_resume_on_a_closed_connection_say_it_is_gone() {
    let (server, events) = start(builder());
    let client = RawClient::connect(server.local_addr());
    let (id, _, handle) = events.opened_blocking();
    drop(client);
    events.closed_blocking(id);
    assert!(handle.pause_reading().is_err());
    assert!(handle.resume_reading().is_err());
    server.shutdown(WAIT);
}
