//! The send-queue limit and its two policies, and `on_drain`.

mod common;

use common::*;
use ringws::{Backpressure, CloseCode, SendError};

#[test]
fn drop_message_refuses_sends_over_the_limit_and_drains() {
    let limit = 256 * 1024;
    let (server, events) = start(builder().max_queued_bytes(limit));
    let mut client = RawClient::connect(server.local_addr());
    let (id, _, _) = events.opened_blocking();
    // 64 x 64 KiB queued in one callback: nothing can be written meanwhile,
    // so the queue reaches the limit after 4 messages.
    client.write_frame(true, 0x1, b"flood 64 65536");
    let result = events.find_blocking(|event| match event {
        Event::SendResult { result, .. } => Some(result),
        _ => None,
    });
    assert_eq!(result, Err(SendError::Dropped));
    let stats = server.stats();
    assert_eq!(
        stats.total.dropped_messages, 1,
        "the first refusal stops the flood"
    );
    assert_eq!(stats.total.messages_out, 4);
    // The connection stays open: read the 4 messages, then it echoes.
    for _ in 0..4 {
        let (_, opcode, payload) = client.read_frame().unwrap();
        assert_eq!((opcode, payload.len()), (0x2, 65536));
    }
    events.find_blocking(|event| match event {
        Event::Drain { id: drained } if drained == id => Some(()),
        _ => None,
    });
    client.write_frame(true, 0x1, b"after");
    assert_eq!(client.read_frame().unwrap().2, b"after");
    drop(client);
    server.shutdown(WAIT);
}

#[test]
fn the_close_policy_closes_with_its_code_after_the_backlog() {
    let (server, events) = start(
        builder()
            .max_queued_bytes(100_000)
            .backpressure(Backpressure::Close(CloseCode::TRY_AGAIN_LATER)),
    );
    let mut client = RawClient::connect(server.local_addr());
    let (id, _, _) = events.opened_blocking();
    client.write_frame(true, 0x1, b"flood 10 60000");
    let result = events.find_blocking(|event| match event {
        Event::SendResult { result, .. } => Some(result),
        _ => None,
    });
    // Two messages fit (0 and 60,000 queued are under the limit); the
    // third is dropped, closing the connection, and the rest find it closing.
    assert_eq!(result, Err(SendError::Dropped));
    let mut data_frames = 0;
    let close = loop {
        let (_, opcode, payload) = client.read_frame().unwrap();
        if opcode == 0x8 {
            break payload;
        }
        data_frames += 1;
    };
    assert_eq!(data_frames, 2);
    assert_eq!(close, close_payload(1013, "send queue limit exceeded"));
    client.write_frame(true, 0x8, &close_payload(1013, ""));
    assert!(client.wait_eof());
    drop(client);
    let info = events.closed_blocking(id);
    assert_eq!(info.sent, Some(CloseCode::TRY_AGAIN_LATER));
    let stats = server.stats();
    assert_eq!(stats.total.backpressure_closes, 1);
    assert_eq!(stats.total.dropped_messages, 1);
    server.shutdown(WAIT);
}
