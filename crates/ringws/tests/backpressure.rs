//! The send-queue limit and its policies, and `on_drain`.

mod common;

use common::*;
use ringws::{Backpressure, CloseCode, ConnId, SendError, ServerBuilder, ServerHandle};

/// A server started from `builder` and one raw client, whose `command`
/// makes the server's callback send until the queue limit refuses a send
/// (asserted: `SendError::Dropped`).
fn refused_in_one_callback(
    builder: ServerBuilder,
    command: &[u8],
) -> (ServerHandle, Events, RawClient, ConnId) {
    let (server, events) = start(builder);
    let mut client = RawClient::connect(server.local_addr());
    let (id, _, _) = events.opened_blocking();
    client.write_frame(true, 0x1, command);
    let result = events.find_blocking(|event| match event {
        Event::SendResult { result, .. } => Some(result),
        _ => None,
    });
    assert_eq!(result, Err(SendError::Dropped));
    (server, events, client, id)
}

#[test]
fn drop_message_refuses_sends_over_the_limit_and_drains() {
    let limit = 256 * 1024;
    // 64 x 64 KiB queued in one callback: nothing can be written meanwhile,
    // so the queue reaches the limit after 4 messages.
    let (server, events, mut client, id) =
        refused_in_one_callback(builder().max_queued_bytes(limit), b"flood 64 65536");
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
fn an_applications_pings_meet_the_queue_limit_like_messages() {
    let limit = 256 * 1024;
    // 10,000 Pings of 127 bytes in one callback: nothing is written
    // meanwhile, so the queue reaches the limit after 2,065 of them.
    let (server, events, mut client, id) =
        refused_in_one_callback(builder().max_queued_bytes(limit), b"pings 10000");
    assert_eq!(server.stats().total.dropped_messages, 1);
    // The connection stays open: the Pings that fitted arrive, then the
    // echo of the next message.
    let admitted = limit.div_ceil(127);
    for n in 0..admitted {
        let (_, opcode, payload) = client.read_frame().unwrap();
        assert_eq!((opcode, payload.len()), (0x9, 125), "ping {n}");
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
    // Two messages fit (0 and 60,000 queued are under the limit); the
    // third is dropped, closing the connection, and the rest find it closing.
    let (server, events, mut client, id) = refused_in_one_callback(
        builder()
            .max_queued_bytes(100_000)
            .backpressure(Backpressure::Close(CloseCode::TRY_AGAIN_LATER)),
        b"flood 10 60000",
    );
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

/// Echoes, and records the largest send queue seen when a Ping arrives.
struct PingWatch {
    peak_queued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ringws::Handler for PingWatch {
    type ConnData = ();
    fn on_message(&mut self, conn: &mut ringws::Conn<'_, Self>, message: ringws::Message<'_>) {
        let _ = conn.send_binary(message.as_bytes());
    }
    fn on_ping(&mut self, conn: &mut ringws::Conn<'_, Self>, _payload: &[u8]) {
        self.peak_queued
            .fetch_max(conn.queued_bytes(), std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn a_peer_that_pings_and_never_reads_is_held_back_at_the_queue_limit() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    let limit = 64 * 1024;
    let peak_queued = Arc::new(AtomicUsize::new(0));
    let seen = peak_queued.clone();
    let server = builder()
        .max_queued_bytes(limit)
        .socket_send_buffer(4096)
        .start(move |_| PingWatch {
            peak_queued: seen.clone(),
        })
        .unwrap();
    let mut client = RawClient::connect(server.local_addr());
    // 16 MiB of Pings, more than the kernel's buffers on both sides hold:
    // without a bound the server would queue 16 MiB of Pongs.
    let ping = masked_frame(true, 0x9, &[0x55; 125]);
    let pings_per_batch = 1000;
    let batches = (16 << 20) / (ping.len() * pings_per_batch);
    let batch: Vec<u8> = ping.repeat(pings_per_batch);
    let pinger = BatchWriter::spawn(&client.stream, batches, move |_| batch.clone());
    // Wait until the writer is stuck (TCP pushed back) or done, bounded.
    let blocked_at = pinger.wait_until_stuck();
    let peak = peak_queued.load(Ordering::Relaxed);
    // One Pong (127 bytes) may land past the limit before reading stops.
    assert!(
        peak < limit + 128,
        "send queue peaked at {peak} bytes, limit {limit}"
    );
    assert!(
        blocked_at < batches,
        "TCP slowed the peer: {blocked_at} of {batches} batches written"
    );
    // Once the peer reads, every Ping gets its Pong, in order, and the
    // connection goes on.
    client
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for n in 0..batches * pings_per_batch {
        let (_, opcode, payload) = client.read_frame().expect("a Pong");
        assert_eq!((opcode, payload.len()), (0xA, 125), "frame {n}");
    }
    pinger.join();
    client.write_frame(true, 0x2, b"after");
    assert_eq!(client.read_frame().unwrap().2, b"after");
    drop(client);
    server.shutdown(WAIT);
}

/// Echoes each message once, and records the largest send queue seen after
/// a send and every send that was refused.
struct QueueWatch {
    peak_queued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ringws::Handler for QueueWatch {
    type ConnData = ();
    fn on_message(&mut self, conn: &mut ringws::Conn<'_, Self>, message: ringws::Message<'_>) {
        use std::sync::atomic::Ordering;
        if conn.send_binary(message.as_bytes()).is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        self.peak_queued
            .fetch_max(conn.queued_bytes(), Ordering::Relaxed);
    }
}

#[test]
fn pause_reading_slows_a_peer_that_never_reads_and_loses_no_echo() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    let limit = 64 * 1024;
    let message_len = 1000;
    let peak_queued = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let (peak, refusals) = (peak_queued.clone(), refused.clone());
    let server = builder()
        .max_queued_bytes(limit)
        .backpressure(Backpressure::PauseReading)
        .start(move |_| QueueWatch {
            peak_queued: peak.clone(),
            refused: refusals.clone(),
        })
        .unwrap();
    let mut client = RawClient::connect(server.local_addr());
    // 16 MiB of numbered messages, more than the kernel's buffers on both
    // sides hold: a server that went on reading would have to queue or
    // drop most of the echoes.
    let messages = (16 << 20) / message_len;
    let per_batch = 256;
    let batches = messages / per_batch;
    let frame_of = move |n: usize| {
        let mut payload = vec![(n % 251) as u8; message_len];
        payload[..8].copy_from_slice(&(n as u64).to_be_bytes());
        masked_frame(true, 0x2, &payload)
    };
    let sender = BatchWriter::spawn(&client.stream, batches, move |batch| {
        (batch * per_batch..(batch + 1) * per_batch)
            .flat_map(frame_of)
            .collect()
    });
    // Wait until the sender is stuck (TCP pushed back) or done, bounded.
    let blocked_at = sender.wait_until_stuck();
    assert!(
        blocked_at < batches,
        "TCP slowed the peer: {blocked_at} of {batches} batches written"
    );
    // One echo (its frame header included) may land past the limit before
    // reading stops.
    let peak = peak_queued.load(Ordering::Relaxed);
    assert!(
        peak < limit + message_len + 8,
        "send queue peaked at {peak} bytes, limit {limit}"
    );
    // Once the peer reads, every message comes back, in order, and none was
    // refused on the way.
    client
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for n in 0..batches * per_batch {
        let (_, opcode, payload) = client.read_frame().expect("an echo");
        assert_eq!((opcode, payload.len()), (0x2, message_len), "echo {n}");
        assert_eq!(payload[..8], (n as u64).to_be_bytes(), "echo {n}");
    }
    sender.join();
    assert_eq!(refused.load(Ordering::Relaxed), 0);
    let stats = server.stats();
    assert_eq!(stats.total.dropped_messages, 0);
    assert_eq!(stats.total.messages_out, (batches * per_batch) as u64);
    client.write_frame(true, 0x2, b"after");
    assert_eq!(client.read_frame().unwrap().2, b"after");
    drop(client);
    server.shutdown(WAIT);
}
