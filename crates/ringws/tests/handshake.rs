//! The HTTP side: refused upgrades get the right status over raw TCP,
//! plain HTTP on the same port, origin check, `on_upgrade`, subprotocols.

mod common;

use std::io::Write as _;
use std::time::{Duration, Instant};

use common::*;
use ringws::HttpResponse;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

fn status_of(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"))
}

/// Sends `request`, returns the status, the head and the body; checks the
/// server closes the connection after answering.
fn exchange(addr: std::net::SocketAddr, request: &str) -> (u16, String, Vec<u8>) {
    let (mut stream, head, rest) = raw_request(addr, request.as_bytes());
    let body = read_to_end(&mut stream, rest);
    (status_of(&head), head, body)
}

#[test]
fn malformed_upgrades_are_refused_with_their_status() {
    let (server, events) = start(builder().max_header_bytes(1024));
    let addr = server.local_addr();
    let base = "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    let cases: Vec<(String, u16)> = vec![
        // No key.
        (format!("{base}Sec-WebSocket-Version: 13\r\n\r\n"), 400),
        // Wrong version.
        (
            format!("{base}Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 12\r\n\r\n"),
            426,
        ),
        // Not GET.
        (upgrade_request("/", "").replacen("GET", "POST", 1), 405),
        // Garbage.
        ("\x01\x02 not http\r\n\r\n".to_owned(), 400),
        // A head over max_header_bytes.
        (
            upgrade_request("/", &format!("X-Padding: {}\r\n", "p".repeat(2000))),
            431,
        ),
    ];
    for (request, expected) in &cases {
        let (status, head, _) = exchange(addr, request);
        assert_eq!(status, *expected, "{request:?} got {head}");
        if *expected == 426 {
            assert!(head.contains("Sec-WebSocket-Version: 13"), "{head}");
        }
    }
    let stats = wait_stats(&server, |stats| stats.total.handshakes_failed.total() == 5);
    assert_eq!(stats.total.handshakes_failed.get(400), 2);
    assert_eq!(stats.total.handshakes_failed.get(426), 1);
    assert_eq!(stats.total.handshakes_failed.get(405), 1);
    assert_eq!(stats.total.handshakes_failed.get(431), 1);
    assert_eq!(stats.total.upgraded, 0);
    assert!(
        events.rx.try_recv().is_err(),
        "no callback for refused upgrades"
    );
    server.shutdown(WAIT);
}

#[test]
fn plain_http_without_a_hook_gets_426_naming_websocket() {
    let (server, _events) = start(builder());
    let (status, head, body) = exchange(
        server.local_addr(),
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert_eq!(status, 426);
    assert!(head.contains("Upgrade: websocket"), "{head}");
    assert!(head.contains("Connection: Upgrade, close"), "{head}");
    assert!(!body.is_empty());
    server.shutdown(WAIT);
}

#[test]
fn plain_http_is_answered_by_the_hook_on_the_same_port() {
    let (server, _events) = start(builder().plain_http(|request| {
        (request.path() == "/healthz").then(|| HttpResponse::new(200, "text/plain", "ok\n"))
    }));
    let addr = server.local_addr();
    let (status, head, body) = exchange(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("Content-Type: text/plain"), "{head}");
    assert_eq!(body, b"ok\n");
    let (status, _, _) = exchange(addr, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 404);
    let stats = wait_stats(&server, |stats| stats.total.plain_http_responses == 2);
    assert_eq!(stats.total.handshakes_failed.total(), 0);
    server.shutdown(WAIT);
}

#[test]
fn the_hooks_headers_are_sent_and_a_head_request_gets_no_body() {
    let (server, _events) = start(builder().plain_http(|request| {
        let answer = match request.path() {
            "/healthz" => HttpResponse::new(200, "text/plain", "ok\n"),
            "/split" => HttpResponse::new(200, "text/plain", "x").with_header("X-A", "1\r\nX-B: 2"),
            "/framing" => {
                HttpResponse::new(200, "text/plain", "x").with_header("Content-Length", "0")
            }
            _ => return None,
        };
        Some(answer.with_header("Cache-Control", "no-store"))
    }));
    let addr = server.local_addr();
    let (status, head, body) = exchange(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((status, body.as_slice()), (200, &b"ok\n"[..]), "{head}");
    assert!(head.contains("\r\nCache-Control: no-store\r\n"), "{head}");
    let (status, head, body) = exchange(addr, "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("\r\nContent-Length: 3\r\n"), "{head}");
    assert!(body.is_empty(), "a HEAD answer carries no body: {body:?}");
    // A header that would split the response or redo its framing gets the
    // request a 500, never on the wire.
    for path in ["/split", "/framing"] {
        let (status, head, _) = exchange(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert_eq!(status, 500, "{path}: {head}");
        assert!(
            !head.contains("X-B") && !head.contains("Content-Length: 0"),
            "{head}"
        );
    }
    server.shutdown(WAIT);
}

#[test]
fn bodiless_statuses_interim_statuses_and_head_without_a_hook() {
    let (server, _events) = start(builder().plain_http(|request| {
        Some(match request.path() {
            "/204" => HttpResponse::new(204, "text/plain", "dropped"),
            "/304" => HttpResponse::new(304, "text/plain", "dropped"),
            "/101" => HttpResponse::new(101, "text/plain", ""),
            _ => HttpResponse::new(200, "text/plain", "x").with_header("content-type", "text/html"),
        })
    }));
    let addr = server.local_addr();
    let get = |path: &str| exchange(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
    for path in ["/204", "/304"] {
        let (status, head, body) = get(path);
        assert_eq!(status, path[1..].parse::<u16>().unwrap(), "{head}");
        assert!(body.is_empty(), "{path} carries no body: {body:?}");
        assert!(!head.contains("Content-Length"), "{head}");
    }
    // An interim status cannot end a connection; a second Content-Type is
    // refused rather than sent.
    for path in ["/101", "/twice"] {
        let (status, head, _) = get(path);
        assert_eq!(status, 500, "{path}: {head}");
    }
    server.shutdown(WAIT);

    // Without a hook, HEAD gets the 426's head alone.
    let (server, _events) = start(builder());
    let (status, head, body) = exchange(server.local_addr(), "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 426, "{head}");
    assert!(head.contains("Content-Length: 65"), "{head}");
    assert!(body.is_empty(), "{body:?}");
    server.shutdown(WAIT);
}

#[test]
fn a_refused_head_request_gets_the_refusals_head_alone() {
    let (server, _events) = start(builder());
    let addr = server.local_addr();
    // HEAD with the upgrade headers: 405, which a GET would get with a body.
    let (status, head, body) = exchange(addr, &upgrade_request("/", "").replacen("GET", "HEAD", 1));
    assert_eq!(status, 405, "{head}");
    assert!(head.contains("\r\nAllow: GET\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Length: "), "{head}");
    assert!(body.is_empty(), "a HEAD answer carries no body: {body:?}");
    // A HEAD refused for its syntax (after empty lines, which may precede
    // a request line) is answered without a body too.
    let (status, head, body) = exchange(addr, "\r\nHEAD / HTTP/1.1\r\nHost x\r\n\r\n");
    assert_eq!(status, 400, "{head}");
    assert!(body.is_empty(), "{body:?}");
    // The same refusals of a GET keep their bodies.
    let (status, _, body) = exchange(addr, "GET / HTTP/1.1\r\nHost x\r\n\r\n");
    assert_eq!(status, 400);
    assert!(!body.is_empty());
    server.shutdown(WAIT);
}

#[tokio::test]
async fn the_origin_check_refuses_with_403() {
    let (server, events) =
        start(builder().origin_check(|origin| origin == Some("https://good.example")));
    let addr = server.local_addr();
    let (status, _, _) = exchange(
        addr,
        &upgrade_request("/", "Origin: https://evil.example\r\n"),
    );
    assert_eq!(status, 403);
    let (status, _, _) = exchange(addr, &upgrade_request("/", ""));
    assert_eq!(status, 403, "a missing Origin is the check's call too");
    let client = RawClient::connect_with(
        addr,
        &upgrade_request("/room", "Origin: https://good.example\r\n"),
    );
    let path = events
        .find(|event| match event {
            Event::Open { path, .. } => Some(path),
            _ => None,
        })
        .await;
    assert_eq!(path, "/room");
    assert_eq!(server.stats().total.handshakes_failed.get(403), 2);
    drop(client);
    tokio::task::spawn_blocking(move || server.shutdown(WAIT))
        .await
        .unwrap();
}

#[test]
fn on_upgrade_may_refuse_with_a_status() {
    let (server, _events) = start(builder());
    let (status, _, _) = exchange(server.local_addr(), &upgrade_request("/forbidden", ""));
    assert_eq!(status, 401);
    let stats = wait_stats(&server, |stats| stats.total.handshakes_failed.total() == 1);
    assert_eq!(stats.total.handshakes_failed.other(), 1);
    server.shutdown(WAIT);
}

#[tokio::test]
async fn the_selected_subprotocol_is_announced_and_visible() {
    let (server, events) = start(builder().subprotocols(&["chat.v2", "chat.v1"]));
    let addr = server.local_addr();
    let mut request = format!("ws://{addr}/").into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("chat.v1,chat.v2"),
    );
    let (client, response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .unwrap()
        .unwrap();
    // The server's preference wins among what the client offered.
    assert_eq!(
        response.headers().get("Sec-WebSocket-Protocol").unwrap(),
        "chat.v2"
    );
    let selected = events
        .find(|event| match event {
            Event::Open { subprotocol, .. } => Some(subprotocol),
            _ => None,
        })
        .await;
    assert_eq!(selected.as_deref(), Some("chat.v2"));
    drop(client);

    // Nothing in common: no subprotocol header at all.
    let (_, head, _) = raw_request(
        addr,
        upgrade_request("/", "Sec-WebSocket-Protocol: other\r\n").as_bytes(),
    );
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(!head.contains("Sec-WebSocket-Protocol"), "{head}");
    tokio::task::spawn_blocking(move || server.shutdown(WAIT))
        .await
        .unwrap();
}

#[test]
fn a_request_split_into_single_bytes_still_upgrades() {
    let (server, events) = start(builder());
    let mut stream = std::net::TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    for byte in upgrade_request("/", "").bytes() {
        std::io::Write::write_all(&mut stream, &[byte]).unwrap();
    }
    let mut client = RawClient {
        stream,
        pending: Vec::new(),
    };
    events.opened_blocking();
    // The 101 head arrives first; skip it, then the echo.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        std::io::Read::read_exact(&mut client.stream, &mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    client.write_frame(true, 0x1, b"hi");
    assert_eq!(client.read_frame().unwrap().2, b"hi");
    drop(client);
    server.shutdown(WAIT);
}

/// The start of a TLS 1.2/1.3 ClientHello: record type 22, version 3.1, a
/// length, handshake type 1, and the start of its body. No CR or LF.
const CLIENT_HELLO: [u8; 16] = [
    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x5a, 0x9c, 0x00, 0x7f, 0x11,
];

#[test]
fn a_head_that_cannot_be_http_is_refused_before_its_first_line_ends() {
    let handshake_timeout = Duration::from_secs(5);
    let (server, _events) = start(builder().handshake_timeout(handshake_timeout));
    let addr = server.local_addr();
    let garbage: [&[u8]; 3] = [
        &CLIENT_HELLO,
        b"GET /\x00",
        b"GET / HTTP/1.1\r\nHost: a\x1b",
    ];
    for bytes in garbage {
        let started = Instant::now();
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.write_all(bytes).unwrap();
        // The line never ends and the connection stays open on our side:
        // only the byte itself can have been refused.
        let response = read_to_end(&mut stream, Vec::new());
        let elapsed = started.elapsed();
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with("HTTP/1.1 400 "), "{bytes:?}: {text}");
        assert!(
            elapsed < handshake_timeout / 5,
            "{bytes:?} answered after {elapsed:?}"
        );
    }
    let stats = wait_stats(&server, |stats| stats.total.handshakes_failed.total() == 3);
    assert_eq!(stats.total.handshakes_failed.get(400), 3);
    assert_eq!(stats.total.handshake_timeouts, 0);
    server.shutdown(WAIT);
}

#[test]
fn heads_with_obs_text_and_tabs_in_values_still_upgrade() {
    let (server, events) = start(builder());
    let addr = server.local_addr();
    let mut request = upgrade_request("/caf\u{e9}", "").into_bytes();
    // Before the blank line: obs-text (Latin-1 and raw high bytes) and HT
    // in values, which HTTP allows.
    let blank = request.len() - 2;
    request.splice(
        blank..blank,
        b"User-Agent: caf\xe9\tv\xff\x80\r\nX-Tab:\tx\t\r\n"
            .iter()
            .copied(),
    );
    // The client's first frame rides behind the head, control bytes and all.
    request.extend_from_slice(&masked_frame(true, 0x2, &[0x00, 0x16, 0x7f, 0x0b]));
    let (stream, head, rest) = raw_request(addr, &request);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut client = RawClient {
        stream,
        pending: rest,
    };
    let path = events.find_blocking(|event| match event {
        Event::Open { path, .. } => Some(path),
        _ => None,
    });
    assert_eq!(path, "/caf\u{e9}");
    assert_eq!(
        client.read_frame().unwrap(),
        (true, 0x2, vec![0x00, 0x16, 0x7f, 0x0b])
    );
    drop(client);
    server.shutdown(WAIT);
}

#[test]
fn a_head_with_more_than_64_header_fields_gets_431() {
    let (server, events) = start(builder());
    let addr = server.local_addr();
    assert_eq!(ringws::MAX_HEADER_FIELDS, 64);
    // Five fields of the upgrade itself: 59 more make 64, accepted.
    let extra = |count: usize| -> String { (0..count).map(|i| format!("X-{i}: v\r\n")).collect() };
    let client = RawClient::connect_with(addr, &upgrade_request("/", &extra(64 - 5)));
    events.opened_blocking();
    drop(client);
    // One more is refused, well within the head's byte limit.
    let request = upgrade_request("/", &extra(64 - 5 + 1));
    assert!(request.len() < 2048);
    let (status, head, body) = exchange(addr, &request);
    assert_eq!(status, 431, "{head}");
    assert_eq!(
        String::from_utf8_lossy(&body),
        "more than 64 request header fields\n"
    );
    let stats = wait_stats(&server, |stats| stats.total.handshakes_failed.total() == 1);
    assert_eq!(stats.total.handshakes_failed.get(431), 1);
    server.shutdown(WAIT);
}
