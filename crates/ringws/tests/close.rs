//! The closing handshake from both sides, close validation, terminate,
//! the close timeout, keepalive and the handshake timeout, observed from a
//! raw TCP client (byte-exact) and through the handler's events.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ringws::{CloseError, CloseKind, Initiator, State};

#[test]
fn close_with_code_and_reason_arrives_byte_exact() {
    let (server, events) = start(builder());
    let mut client = RawClient::connect(server.local_addr());
    let (id, _, _) = events.opened_blocking();
    let reason = "bye now — ünïcödé";
    client.write_frame(true, 0x1, format!("close 4000 {reason}").as_bytes());
    let payload = client.read_close();
    assert_eq!(payload, close_payload(4000, reason));
    // Echo it, as a client does; the server then closes TCP first.
    client.write_frame(true, 0x8, &close_payload(4000, ""));
    assert!(client.wait_eof());
    drop(client);
    let info = events.closed_blocking(id);
    assert_eq!(info.code.0, 4000);
    assert_eq!(info.sent.map(|c| c.0), Some(4000));
    assert_eq!(info.initiator, Initiator::Local);
    assert_eq!(info.kind, CloseKind::Clean);
    assert!(info.close_duration < WAIT);
    let stats = server.stats();
    assert_eq!(stats.total.closes.get(4000, Initiator::Local), 1);
    assert_eq!(stats.total.clean_closes, 1);
    server.shutdown(WAIT);
}

#[test]
fn a_123_byte_reason_is_sent_whole() {
    let (server, events) = start(builder());
    let mut client = RawClient::connect(server.local_addr());
    let (id, _, _) = events.opened_blocking();
    let reason = "r".repeat(123);
    client.write_frame(true, 0x1, format!("close 1000 {reason}").as_bytes());
    assert_eq!(client.read_close(), close_payload(1000, &reason));
    drop(client);
    events.closed_blocking(id);
    server.shutdown(WAIT);
}

#[test]
fn invalid_closes_are_refused_and_send_nothing() {
    let (server, events) = start(builder());
    let mut client = RawClient::connect(server.local_addr());
    let (id, _, handle) = events.opened_blocking();
    for code in [999u16, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        client.write_frame(true, 0x1, format!("close {code} x").as_bytes());
        let result = events.find_blocking(|event| match event {
            Event::CloseResult { result, .. } => Some(result),
            _ => None,
        });
        assert_eq!(result, Err(CloseError::InvalidCode(code)));
        assert_eq!(handle.close(code, ""), Err(CloseError::InvalidCode(code)));
    }
    let long = "x".repeat(124);
    client.write_frame(true, 0x1, format!("close 1000 {long}").as_bytes());
    let result = events.find_blocking(|event| match event {
        Event::CloseResult { result, .. } => Some(result),
        _ => None,
    });
    assert_eq!(result, Err(CloseError::ReasonTooLong(124)));
    assert_eq!(
        handle.close(1000, &long),
        Err(CloseError::ReasonTooLong(124))
    );
    // Non-UTF-8 reason bytes.
    client.write_frame(true, 0x1, b"closebytes 1000 c328");
    let result = events.find_blocking(|event| match event {
        Event::CloseResult { result, .. } => Some(result),
        _ => None,
    });
    assert_eq!(result, Err(CloseError::ReasonNotUtf8));
    assert_eq!(
        handle.close_bytes(1000, &[0xFF]),
        Err(CloseError::ReasonNotUtf8)
    );
    // Nothing was sent: the next frame is the echo of this message.
    client.write_frame(true, 0x1, b"still open");
    let (_, opcode, payload) = client.read_frame().unwrap();
    assert_eq!((opcode, payload.as_slice()), (0x1, &b"still open"[..]));
    assert!(handle.is_open());
    drop(client);
    let info = events.closed_blocking(id);
    assert_eq!(info.sent, None);
    server.shutdown(WAIT);
}

#[test]
fn peer_close_is_reported_half_closed_then_echoed_and_tcp_closed_by_the_server() {
    let (server, events) = start(builder());
    let mut client = RawClient::connect(server.local_addr());
    let (id, _, _) = events.opened_blocking();
    client.write_frame(true, 0x8, &close_payload(4321, "client leaving"));
    // Data after the Close is discarded.
    client.write_frame(true, 0x1, b"ignored");
    let (code, reason, state) = events.find_blocking(|event| match event {
        Event::CloseReceived {
            code,
            reason,
            state,
            ..
        } => Some((code, reason, state)),
        Event::Closed { .. } => panic!("on_closed before on_close_received"),
        Event::Text { .. } => panic!("data after the peer's Close was delivered"),
        _ => None,
    });
    assert_eq!(
        (code, reason.as_str(), state),
        (Some(4321), "client leaving", State::CloseReceived)
    );
    assert_eq!(client.read_close(), 4321u16.to_be_bytes());
    // The server closes TCP without waiting for the client to.
    assert!(client.wait_eof());
    drop(client);
    let info = events.closed_blocking(id);
    assert_eq!(info.code.0, 4321);
    assert_eq!(info.reason, "client leaving");
    assert_eq!(info.sent.map(|c| c.0), Some(4321));
    assert_eq!(info.initiator, Initiator::Remote);
    assert_eq!(info.kind, CloseKind::Clean);
    assert_eq!(server.stats().total.closes.get(4321, Initiator::Remote), 1);
    server.shutdown(WAIT);
}

#[test]
fn the_handler_may_reply_to_a_close_with_its_own_code() {
    let (server, events) = start(builder());
    let mut client = RawClient::connect(server.local_addr());
    let (id, _, _) = events.opened_blocking();
    client.write_frame(true, 0x1, b"reply-on-close 4001");
    client.write_frame(true, 0x8, &close_payload(1000, ""));
    assert_eq!(client.read_close(), close_payload(4001, "custom reply"));
    assert!(client.wait_eof());
    drop(client);
    let info = events.closed_blocking(id);
    assert_eq!(info.code.0, 1000);
    assert_eq!(info.sent.map(|c| c.0), Some(4001));
    assert_eq!(info.kind, CloseKind::Clean);
    server.shutdown(WAIT);
}

#[test]
fn an_empty_close_is_reported_as_1005() {
    let (server, events) = start(builder());
    let mut client = RawClient::connect(server.local_addr());
    let (id, _, _) = events.opened_blocking();
    client.write_frame(true, 0x8, b"");
    assert_eq!(client.read_close(), 1000u16.to_be_bytes());
    drop(client);
    let info = events.closed_blocking(id);
    assert_eq!(info.code.0, 1005);
    assert_eq!(info.initiator, Initiator::Remote);
    assert_eq!(info.kind, CloseKind::Clean);
    server.shutdown(WAIT);
}

#[test]
fn a_peer_fin_without_close_is_abnormal_1006() {
    let (server, events) = start(builder());
    let client = RawClient::connect(server.local_addr());
    let (id, _, _) = events.opened_blocking();
    client.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let info = events.closed_blocking(id);
    assert_eq!(info.code.0, 1006);
    assert_eq!(info.initiator, Initiator::Remote);
    assert_eq!(info.kind, CloseKind::Abnormal);
    assert_eq!(info.sent, None);
    drop(client);
    server.shutdown(WAIT);
}

#[test]
fn terminate_resets_at_once_without_a_close_frame() {
    let (server, events) = start(builder());
    let mut client = RawClient::connect(server.local_addr());
    let (id, _, _) = events.opened_blocking();
    client.write_frame(true, 0x1, b"terminate");
    assert!(client.read_frame().is_none(), "no frame before the reset");
    let info = events.closed_blocking(id);
    assert_eq!(info.code.0, 1006);
    assert_eq!(info.initiator, Initiator::Local);
    assert_eq!(info.kind, CloseKind::Forced);
    assert_eq!(server.stats().total.forced_terminations, 1);
    server.shutdown(WAIT);
}

#[test]
fn an_unanswered_close_is_aborted_after_the_close_timeout() {
    let close_timeout = Duration::from_millis(300);
    let (server, events) = start(builder().close_timeout(close_timeout));
    let mut client = RawClient::connect(server.local_addr());
    let (id, _, _) = events.opened_blocking();
    client.write_frame(true, 0x1, b"close 1000 done");
    let sent_at = Instant::now();
    assert_eq!(client.read_close(), close_payload(1000, "done"));
    // Never answer; the server must give up on its own.
    assert!(client.wait_eof());
    let info = events.closed_blocking(id);
    let waited = sent_at.elapsed();
    assert!(
        waited >= close_timeout - Duration::from_millis(50),
        "{waited:?}"
    );
    assert_eq!(info.code.0, 1006);
    assert_eq!(info.sent.map(|c| c.0), Some(1000));
    assert_eq!(info.initiator, Initiator::Local);
    assert_eq!(info.kind, CloseKind::Forced);
    assert!(
        info.close_duration >= close_timeout,
        "{:?}",
        info.close_duration
    );
    let stats = server.stats();
    assert_eq!(stats.total.close_timeouts, 1);
    assert_eq!(stats.total.closes.get(1000, Initiator::Local), 1);
    drop(client);
    server.shutdown(WAIT);
}

fn keepalive_builder() -> ringws::ServerBuilder {
    builder()
        .ping_interval(Some(Duration::from_millis(100)))
        .pong_timeout(Duration::from_millis(150))
        .close_timeout(Duration::from_millis(200))
}

#[test]
fn a_silent_peer_gets_pinged_then_closed_1011_then_aborted() {
    let (server, events) = start(keepalive_builder());
    let opened_at = Instant::now();
    let mut client = RawClient::connect(server.local_addr());
    let (id, _, _) = events.opened_blocking();
    let (_, opcode, payload) = client.read_frame().unwrap();
    assert_eq!(opcode, 0x9, "a keepalive Ping");
    assert_eq!(payload.len(), 8);
    assert_eq!(
        client.read_close(),
        close_payload(1011, "keepalive ping timeout")
    );
    assert!(client.wait_eof());
    let info = events.closed_blocking(id);
    let gone_after = opened_at.elapsed();
    assert!(
        gone_after >= Duration::from_millis(100 + 150 + 200 - 30),
        "{gone_after:?}"
    );
    assert!(gone_after < WAIT);
    assert_eq!(info.sent.map(|c| c.0), Some(1011));
    assert_eq!(info.kind, CloseKind::Forced);
    let stats = server.stats();
    assert_eq!(stats.total.keepalive_timeouts, 1);
    assert_eq!(stats.total.close_timeouts, 1);
    drop(client);
    server.shutdown(WAIT);
}

#[test]
fn only_the_matching_pong_keeps_a_connection_alive() {
    let (server, events) = start(keepalive_builder());
    let mut client = RawClient::connect(server.local_addr());
    let (id, _, _) = events.opened_blocking();
    let mut payloads = Vec::new();
    for _ in 0..4 {
        let (_, opcode, payload) = client.read_frame().unwrap();
        assert_eq!(opcode, 0x9);
        client.write_frame(true, 0xA, &payload);
        payloads.push(payload);
    }
    payloads.dedup();
    assert_eq!(payloads.len(), 4, "every keepalive Ping is unique");
    // Now answer with the wrong payload: it does not count.
    let (_, opcode, payload) = client.read_frame().unwrap();
    assert_eq!(opcode, 0x9);
    let mut wrong = payload.clone();
    wrong[7] ^= 0xFF;
    client.write_frame(true, 0xA, &wrong);
    assert_eq!(
        client.read_close(),
        close_payload(1011, "keepalive ping timeout")
    );
    let pongs = events
        .rx
        .try_iter()
        .filter(|event| matches!(event, Event::Pong { .. }))
        .count();
    assert!(pongs >= 4, "every Pong reaches on_pong ({pongs})");
    drop(client);
    events.closed_blocking(id);
    server.shutdown(WAIT);
}

#[test]
fn a_dead_peer_with_a_full_send_buffer_is_gone_within_the_keepalive_bound() {
    let interval = Duration::from_millis(150);
    let pong_timeout = Duration::from_millis(150);
    let close_timeout = Duration::from_millis(200);
    let (server, events) = start(
        builder()
            .ping_interval(Some(interval))
            .pong_timeout(pong_timeout)
            .close_timeout(close_timeout)
            .max_queued_bytes(64 << 20),
    );
    let mut client = RawClient::connect(server.local_addr());
    let (id, _, _) = events.opened_blocking();
    // 32 MiB queued at once, far more than the socket buffers hold; the
    // client then reads nothing, like a peer that vanished. The keepalive
    // interval counts from this request, the last frame the server reads
    // (queueing the flood can take a while on a busy machine).
    let flooded_at = Instant::now();
    client.write_frame(true, 0x1, b"flood 32 1048576");
    let result = events.find_blocking(|event| match event {
        Event::SendResult { result, .. } => Some(result),
        _ => None,
    });
    assert_eq!(result, Ok(()));
    let info = events.closed_blocking(id);
    let gone_after = flooded_at.elapsed();
    let bound = interval + pong_timeout + close_timeout;
    assert!(
        gone_after >= bound - Duration::from_millis(50),
        "{gone_after:?}"
    );
    assert!(
        gone_after < bound + Duration::from_secs(2),
        "{gone_after:?}"
    );
    assert_eq!(info.sent.map(|c| c.0), Some(1011));
    assert_eq!(info.kind, CloseKind::Forced);
    drop(client);
    server.shutdown(WAIT);
}

#[test]
fn a_slow_handshake_is_cut_and_counted() {
    let (server, _events) = start(builder().handshake_timeout(Duration::from_millis(200)));
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    std::io::Write::write_all(&mut stream, b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let rest = read_to_end(&mut stream, Vec::new());
    assert!(rest.is_empty(), "no response to an unfinished request");
    assert!(started.elapsed() >= Duration::from_millis(150));
    let stats = wait_stats(&server, |stats| stats.total.handshaking == 0);
    assert_eq!(stats.total.handshake_timeouts, 1);
    assert_eq!(stats.total.upgraded, 0);
    server.shutdown(WAIT);
}

#[test]
fn gauges_follow_connections_through_their_states() {
    let (server, events) = start(builder().close_timeout(Duration::from_secs(5)));
    let mut open = RawClient::connect(server.local_addr());
    let mut closing_local = RawClient::connect(server.local_addr());
    events.opened_blocking();
    let (local_id, _, _) = events.opened_blocking();
    let half_open = std::net::TcpStream::connect(server.local_addr()).unwrap();
    wait_stats(&server, |stats| {
        stats.total.open == 2 && stats.total.handshaking == 1 && stats.total.accepted == 3
    });
    closing_local.write_frame(true, 0x1, b"close 1000 bye");
    assert_eq!(closing_local.read_close(), close_payload(1000, "bye"));
    let stats = wait_stats(&server, |stats| stats.total.closing_local == 1);
    assert_eq!(stats.total.open, 1);
    open.write_frame(true, 0x8, &close_payload(1000, ""));
    assert!(open.wait_eof());
    drop(open);
    drop(closing_local);
    drop(half_open);
    events.closed_blocking(local_id);
    let stats = wait_stats(&server, |stats| stats.total.connections() == 0);
    assert_eq!(stats.total.upgraded, 2);
    server.shutdown(WAIT);
}
