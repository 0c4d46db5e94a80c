//! A panic in application code fails only the connection it ran for: Close
//! 1011 for an open connection, HTTP 500 for a request. The worker, its
//! other connections and its later connections go on, and every such panic
//! is counted.

mod common;

use common::*;
use ringws::{CloseKind, Initiator};

/// One worker, so the panicking connection and the others share it.
fn one_worker() -> ringws::ServerBuilder {
    builder().workers(1)
}

fn text_echo(client: &mut RawClient, text: &str) {
    client.write_frame(true, 0x1, text.as_bytes());
    let (fin, opcode, payload) = client.read_frame().expect("an echo");
    assert_eq!(
        (fin, opcode, payload.as_slice()),
        (true, 0x1, text.as_bytes())
    );
}

#[test]
fn a_panicking_callback_fails_its_connection_with_1011_and_the_worker_goes_on() {
    let (server, events) = start(one_worker());
    let mut failing = RawClient::connect(server.local_addr());
    let (failing_id, ..) = events.opened_blocking();
    let mut bystander = RawClient::connect(server.local_addr());
    events.opened_blocking();
    text_echo(&mut bystander, "before");

    failing.write_frame(true, 0x1, b"panic");
    assert_eq!(failing.read_close(), close_payload(1011, "internal error"));
    // Nothing more is read from it: the server closes TCP.
    assert!(failing.wait_eof(), "the failed connection was not closed");
    let info = events.closed_blocking(failing_id);
    assert_eq!(info.sent.map(|code| code.0), Some(1011));
    assert_eq!(info.initiator, Initiator::Local);
    assert_eq!(info.kind, CloseKind::Abnormal);

    // The worker goes on: its other connection and a new one echo.
    text_echo(&mut bystander, "after");
    let mut newcomer = RawClient::connect(server.local_addr());
    events.opened_blocking();
    text_echo(&mut newcomer, "new");
    let stats = wait_stats(&server, |stats| stats.total.handler_panics == 1);
    assert_eq!(stats.total.closes.get(1011, Initiator::Local), 1);
    assert_eq!(stats.total.open, 2);
    drop((failing, bystander, newcomer));
    server.shutdown(WAIT);
}

#[test]
fn panicking_hooks_answer_500_and_the_worker_goes_on() {
    let server_builder = one_worker()
        .origin_check(|origin| {
            assert_ne!(origin, Some("http://panic.test"), "the origin check panics");
            true
        })
        .plain_http(|request| {
            assert_ne!(request.path(), "/panic", "the plain HTTP hook panics");
            None
        });
    let (server, _events) = start(server_builder);
    let addr = server.local_addr();
    let requests = [
        upgrade_request("/panic", ""),
        upgrade_request("/", "Origin: http://panic.test\r\n"),
        "GET /panic HTTP/1.1\r\nHost: localhost\r\n\r\n".to_owned(),
    ];
    for request in &requests {
        let (_stream, head, _) = raw_request(addr, request.as_bytes());
        assert!(head.starts_with("HTTP/1.1 500"), "{request}: {head}");
    }
    let mut client = RawClient::connect(addr);
    text_echo(&mut client, "still serving");
    let stats = wait_stats(&server, |stats| stats.total.handler_panics == 3);
    assert_eq!(stats.total.handshakes_failed.get(500), 2);
    drop(client);
    server.shutdown(WAIT);
}

#[test]
fn a_panic_in_on_closed_is_counted_and_the_worker_goes_on() {
    let (server, events) = start(one_worker());
    let mut client = RawClient::connect_with(
        server.local_addr(),
        &upgrade_request("/panic-on-closed", ""),
    );
    let (id, ..) = events.opened_blocking();
    client.write_frame(true, 0x8, &close_payload(1000, ""));
    assert_eq!(client.read_close(), close_payload(1000, ""));
    assert_eq!(events.closed_blocking(id).kind, CloseKind::Clean);
    wait_stats(&server, |stats| stats.total.handler_panics == 1);
    drop(client);

    let mut next = RawClient::connect(server.local_addr());
    text_echo(&mut next, "still serving");
    drop(next);
    server.shutdown(WAIT);
}
