//! `ringws serve` as a child process: echo through tokio-tungstenite, a
//! Python `websockets` client and a Node `ws` client; broadcast mode; the
//! origin and subprotocol flags.

mod serve_support;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serve_support::{root, Metrics, ServeProcess, WAIT};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: &str) -> Client {
    let (client, _) = timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect in time")
        .expect("handshake");
    client
}

async fn next_message(client: &mut Client) -> Message {
    timeout(WAIT, client.next())
        .await
        .expect("a message in time")
        .expect("the connection is open")
        .expect("a valid frame")
}

/// Reads until the server closes: returns the Close frame it sent.
async fn read_until_closed(client: &mut Client) -> Option<CloseFrame<'static>> {
    let mut close = None;
    while let Ok(Some(Ok(message))) = timeout(WAIT, client.next()).await {
        if let Message::Close(frame) = message {
            close = frame.map(CloseFrame::into_owned);
        }
    }
    close
}

#[tokio::test]
async fn tokio_tungstenite_echoes_text_and_binary() {
    let server = ServeProcess::start(&["--workers", "2", "--ping-interval", "none"]);
    let mut client = connect(&server.url()).await;
    let long_text: String = "héllo wörld ".repeat(6000);
    let binary: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let messages = [
        Message::Text("hello".into()),
        Message::Binary(vec![0, 1, 2, 255]),
        Message::Text(long_text.clone()),
        Message::Binary(binary.clone()),
        Message::Binary(Vec::new()),
    ];
    for message in messages {
        client.send(message.clone()).await.unwrap();
        assert_eq!(next_message(&mut client).await, message);
    }
    client
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        })))
        .await
        .unwrap();
    let close = read_until_closed(&mut client).await.expect("a Close back");
    assert_eq!(u16::from(close.code), 1000);
}

/// How to run a foreign client; a missing one fails the test with the fix.
enum Peer {
    Python,
    Node,
}

fn run_peer_client(peer: Peer, url: &str) -> Output {
    let interop = root().join("tools/interop");
    let (mut command, what, hint) = match peer {
        Peer::Python => {
            let python = std::env::var_os("RINGWS_PYTHON")
                .map(PathBuf::from)
                .unwrap_or_else(|| root().join(".venv/bin/python"));
            let mut command = Command::new(&python);
            command.arg(interop.join("py_echo_client.py"));
            (
                command,
                format!(
                    "Python `websockets` client (RINGWS_PYTHON={})",
                    python.display()
                ),
                "install it with `python3 -m venv .venv && .venv/bin/pip install -r \
                 tools/interop/requirements.txt` (or run tools/test.sh)",
            )
        }
        Peer::Node => {
            let modules = std::env::var_os("RINGWS_NODE_PATH")
                .map(PathBuf::from)
                .unwrap_or_else(|| interop.join("node_modules"));
            let mut command = Command::new("node");
            command
                .arg(interop.join("node_echo_client.js"))
                .env("NODE_PATH", &modules);
            (
                command,
                format!("Node `ws` client (RINGWS_NODE_PATH={})", modules.display()),
                "install it with `cd tools/interop && npm ci` (or run tools/test.sh); `node` \
                 must be on PATH",
            )
        }
    };
    let mut child = command
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("the {what} cannot start: {error}; {hint}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the {what} ran past 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("ModuleNotFoundError") || stderr.contains("Cannot find module") {
        panic!("the {what} is not installed: {stderr}; {hint}");
    }
    output
}

fn assert_peer_echoed(peer: Peer) {
    let server = ServeProcess::start(&["--workers", "2"]);
    let output = run_peer_client(peer, &server.url());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client failed ({}): stdout {stdout:?}, stderr {:?}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), "OK 6");
    // The six messages really went through this server.
    let (status, _, body) = serve_support::http_get(server.addr, "/metrics");
    assert_eq!(status, 200);
    let metrics = Metrics::parse(&body);
    assert_eq!(
        metrics.get("ringws_messages_in_total", &[("worker", "total")]),
        6.0
    );
    assert_eq!(
        metrics.get("ringws_messages_out_total", &[("worker", "total")]),
        6.0
    );
}

#[test]
fn python_websockets_client_echoes_text_and_binary() {
    assert_peer_echoed(Peer::Python);
}

#[test]
fn node_ws_client_echoes_text_and_binary() {
    assert_peer_echoed(Peer::Node);
}

/// A client that writes far more than it reads: the server stops reading it
/// while its send queue is full (TCP slows the client) and so echoes every
/// message, in order, once the client reads.
#[tokio::test]
async fn a_client_that_writes_before_it_reads_gets_every_echo() {
    let server = ServeProcess::start(&[
        "--workers",
        "1",
        "--ping-interval",
        "none",
        "--max-queued-bytes",
        "64KiB",
    ]);
    let (mut sink, mut stream) = connect(&server.url()).await.split();
    // 32 MiB: more than the kernel's buffers on both sides take in.
    let (count, len) = (4096usize, 8192usize);
    let writer = tokio::spawn(async move {
        for n in 0..count {
            let mut payload = vec![(n % 251) as u8; len];
            payload[..8].copy_from_slice(&(n as u64).to_be_bytes());
            sink.send(Message::Binary(payload)).await.unwrap();
        }
        sink
    });
    // The writer runs ahead until TCP stops it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!writer.is_finished(), "TCP slowed the writer");
    for n in 0..count {
        match timeout(WAIT, stream.next()).await {
            Ok(Some(Ok(Message::Binary(payload)))) => {
                assert_eq!(payload.len(), len, "echo {n}");
                assert_eq!(payload[..8], (n as u64).to_be_bytes(), "echo {n}");
            }
            other => panic!("echo {n}: {other:?}"),
        }
    }
    let mut sink = timeout(WAIT, writer).await.unwrap().unwrap();
    sink.send(Message::Close(None)).await.unwrap();
}

#[tokio::test]
async fn broadcast_mode_sends_every_message_to_every_connection() {
    let server = ServeProcess::start(&["--mode", "broadcast", "--workers", "2"]);
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect(&server.url()).await);
    }
    // Every connection is open on the server before the first broadcast.
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, _, body) = serve_support::http_get(server.addr, "/metrics");
        let open = Metrics::parse(&body).get(
            "ringws_connections",
            &[("worker", "total"), ("state", "open")],
        );
        if open == 3.0 {
            break;
        }
        assert!(Instant::now() < deadline, "{open} connections open");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    clients[1]
        .send(Message::Text("to everyone".into()))
        .await
        .unwrap();
    clients[2]
        .send(Message::Binary(vec![7; 300]))
        .await
        .unwrap();
    for client in &mut clients {
        let mut got = vec![next_message(client).await, next_message(client).await];
        got.sort_by_key(|message| message.is_binary());
        assert_eq!(
            got,
            [
                Message::Text("to everyone".into()),
                Message::Binary(vec![7; 300])
            ]
        );
    }
}

#[tokio::test]
async fn origin_and_subprotocol_flags_are_applied() {
    let server = ServeProcess::start(&[
        "--workers",
        "1",
        "--allowed-origin",
        "https://good.example",
        "--subprotocol",
        "chat.v2",
        "--subprotocol",
        "chat.v1",
    ]);
    let request = |origin: Option<&str>, protocols: &str| {
        let mut request = server.url().into_client_request().unwrap();
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("Origin", HeaderValue::from_str(origin).unwrap());
        }
        if !protocols.is_empty() {
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_str(protocols).unwrap(),
            );
        }
        request
    };
    // A foreign origin is refused with 403.
    let refused = timeout(
        WAIT,
        tokio_tungstenite::connect_async(request(Some("https://evil.example"), "")),
    )
    .await
    .unwrap();
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected a 403, got {other:?}"),
    }
    // The allowed origin gets the server's preferred subprotocol among
    // those offered (the server prefers chat.v2 to chat.v1).
    let (_, response) = timeout(
        WAIT,
        tokio_tungstenite::connect_async(request(Some("https://good.example"), "chat.v1,chat.v2")),
    )
    .await
    .unwrap()
    .expect("the allowed origin is accepted");
    assert_eq!(
        response.headers().get("Sec-WebSocket-Protocol").unwrap(),
        "chat.v2"
    );
    // No Origin header (a non-browser client) is accepted, and an
    // unsupported subprotocol selects none (raw request: tungstenite
    // refuses a response without the protocol it offered).
    let head = raw_upgrade(server.addr, "Sec-WebSocket-Protocol: other\r\n");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("sec-websocket-protocol"),
        "{head}"
    );
}

/// Sends an upgrade request with `extra` headers and returns the response
/// head.
fn raw_upgrade(addr: std::net::SocketAddr, extra: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}
