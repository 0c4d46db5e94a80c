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
    drop(failing);
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
    drop((bystander, newcomer));
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
    drop(client);
    assert_eq!(events.closed_blocking(id).kind, CloseKind::Clean);
    wait_stats(&server, |stats| stats.total.handler_panics == 1);

    let mut next = RawClient::connect(server.local_addr());
    text_echo(&mut next, "still serving");
    drop(next);
    server.shutdown(WAIT);
}

#[test]
fn a_panic_in_on_open_fails_the_connection_before_anything_is_read() {
    let (server, events) = start(one_worker());
    let mut client =
        RawClient::connect_with(server.local_addr(), &upgrade_request("/panic-on-open", ""));
    let (id, ..) = events.opened_blocking();
    client.write_frame(true, 0x1, b"never read");
    assert_eq!(client.read_close(), close_payload(1011, "internal error"));
    drop(client);
    let info = events.closed_blocking(id);
    assert_eq!(
        (info.initiator, info.kind),
        (Initiator::Local, CloseKind::Abnormal)
    );
    let stats = wait_stats(&server, |stats| stats.total.handler_panics == 1);
    assert_eq!(
        stats.total.messages_in, 0,
        "the frame after the panic was not read"
    );
    server.shutdown(WAIT);
}

/// The peer's Close came first, so the 1011 answers it: Closes crossed, yet
/// the connection failed, and is not counted clean.
#[test]
fn a_panic_in_on_close_received_answers_1011_and_is_not_clean() {
    let (server, events) = start(one_worker());
    let mut client = RawClient::connect_with(
        server.local_addr(),
        &upgrade_request("/panic-on-close-received", ""),
    );
    let (id, ..) = events.opened_blocking();
    client.write_frame(true, 0x8, &close_payload(1000, "bye"));
    assert_eq!(client.read_close(), close_payload(1011, "internal error"));
    drop(client);
    let info = events.closed_blocking(id);
    assert_eq!(info.code.0, 1000);
    assert_eq!(info.sent.map(|code| code.0), Some(1011));
    assert_eq!(
        (info.initiator, info.kind),
        (Initiator::Remote, CloseKind::Abnormal)
    );
    let stats = wait_stats(&server, |stats| stats.total.handler_panics == 1);
    assert_eq!(stats.total.clean_closes, 0);
    server.shutdown(WAIT);
}

thread_local! {
    /// Set on a worker by the factory: that worker's next
    /// `ConnData::default` panics.
    static NEXT_DEFAULT_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Connection data whose `Default` and `Drop` can panic.
struct Touchy {
    panics_on_drop: bool,
}

impl Default for Touchy {
    fn default() -> Touchy {
        assert!(
            !NEXT_DEFAULT_PANICS.with(|next| next.replace(false)),
            "ConnData::default panics"
        );
        Touchy {
            panics_on_drop: false,
        }
    }
}

impl Drop for Touchy {
    fn drop(&mut self) {
        assert!(!self.panics_on_drop, "ConnData's drop panics");
    }
}

/// A panic payload whose own `Drop` panics.
struct PayloadBomb;

impl Drop for PayloadBomb {
    fn drop(&mut self) {
        panic!("the panic payload's drop panics");
    }
}

/// Echoes text; refuses `/refused-bomb` with 403 after arming its data's
/// `Drop`; panics with a [`PayloadBomb`] on the text `bomb`.
struct TouchyEcho;

impl ringws::Handler for TouchyEcho {
    type ConnData = Touchy;

    fn on_upgrade(&mut self, request: &ringws::Request<'_>, data: &mut Touchy) -> Result<(), u16> {
        if request.path() == "/refused-bomb" {
            data.panics_on_drop = true;
            return Err(403);
        }
        Ok(())
    }

    fn on_message(&mut self, conn: &mut ringws::Conn<'_, Self>, message: ringws::Message<'_>) {
        if let ringws::Message::Text(text) = message {
            if text == "bomb" {
                std::panic::panic_any(PayloadBomb);
            }
            let _ = conn.send_text(text);
        }
    }
}

#[test]
fn panics_in_conn_data_and_in_a_panic_payloads_drop_stay_contained() {
    let server = one_worker()
        .start(|_| {
            NEXT_DEFAULT_PANICS.with(|next| next.set(true));
            TouchyEcho
        })
        .expect("server starts");
    let addr = server.local_addr();
    // `Default` panics: that connection is refused at once.
    let mut refused = std::net::TcpStream::connect(addr).unwrap();
    refused.set_read_timeout(Some(WAIT)).unwrap();
    std::io::Write::write_all(&mut refused, upgrade_request("/", "").as_bytes()).unwrap();
    assert!(read_to_end(&mut refused, Vec::new()).is_empty());
    // `Drop` panics when the refused request's data goes.
    let (stream, head, _) = raw_request(addr, upgrade_request("/refused-bomb", "").as_bytes());
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    drop(stream);
    // The payload's `Drop` panics after the callback did.
    let mut client = RawClient::connect(addr);
    client.write_frame(true, 0x1, b"bomb");
    assert_eq!(client.read_close(), close_payload(1011, "internal error"));
    drop(client);
    // The worker goes on.
    let mut next = RawClient::connect(addr);
    text_echo(&mut next, "still serving");
    wait_stats(&server, |stats| stats.total.handler_panics == 3);
    drop(next);
    server.shutdown(WAIT);
}
