//! Signals and start-up errors of `ringws serve`: SIGTERM and SIGINT start
//! a graceful shutdown (Close 1001 with the configured reason, a deadline,
//! a report, exit 0); start-up errors exit non-zero with a clear message.

mod serve_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serve_support::{ServeProcess, WAIT};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

/// `key=value` fields of the `shutdown:` report line.
fn report_field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(&format!("{key}=")))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

#[tokio::test]
async fn sigterm_sends_close_1001_with_the_reason_and_exits_0_with_a_report() {
    let server = ServeProcess::start(&[
        "--workers",
        "2",
        "--shutdown-reason",
        "maintenance window",
        "--shutdown-timeout",
        "10s",
    ]);
    let (mut client, _) = timeout(WAIT, tokio_tungstenite::connect_async(server.url()))
        .await
        .unwrap()
        .unwrap();
    // One echo, so the connection is surely open on the server.
    client.send(Message::Text("ping".into())).await.unwrap();
    let echoed = timeout(WAIT, client.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Message::Text("ping".into()));

    server.signal(libc::SIGTERM);
    let close = timeout(WAIT, client.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Message::Close(Some(frame)) = close else {
        panic!("expected a Close, got {close:?}");
    };
    assert_eq!(u16::from(frame.code), 1001);
    assert_eq!(frame.reason, "maintenance window");
    // Reading on sends the client's reply and sees the server close TCP;
    // dropping the client closes ours, which the server waits for.
    while let Ok(Some(Ok(_))) = timeout(WAIT, client.next()).await {}
    drop(client);

    let exit = server.wait_exit(WAIT);
    assert!(exit.status.success(), "{:?}: {}", exit.status, exit.stderr);
    let report = exit.stdout.last().expect("a report line");
    assert!(report.starts_with("shutdown: "), "{report}");
    assert_eq!(report_field(report, "total"), 1, "{report}");
    assert_eq!(report_field(report, "clean"), 1, "{report}");
    assert_eq!(report_field(report, "forced"), 0, "{report}");
    assert_eq!(report_field(report, "abnormal"), 0, "{report}");
    assert!(exit.stderr.contains("SIGTERM"), "{}", exit.stderr);
    assert!(!exit.stderr.contains("panicked"), "{}", exit.stderr);
}

/// A handshake by hand, so the client can then ignore the server's Close.
fn raw_websocket(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "the server hung up");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    stream
}

#[test]
fn sigint_terminates_a_peer_that_ignores_the_close_at_the_deadline() {
    let server = ServeProcess::start(&[
        "--workers",
        "1",
        "--shutdown-timeout",
        "300ms",
        // Longer than the shutdown deadline, so the deadline decides.
        "--close-timeout",
        "10s",
    ]);
    let mut silent = raw_websocket(server.addr);
    // Wait until the server counts it open (the report counts it then).
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, _, body) = serve_support::http_get(server.addr, "/metrics");
        let open = serve_support::Metrics::parse(&body).get(
            "ringws_connections",
            &[("worker", "total"), ("state", "open")],
        );
        if open == 1.0 {
            break;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    server.signal(libc::SIGINT);
    // The Close arrives: opcode 8, code 1001, the default reason.
    let mut frame = [0u8; 4];
    silent.read_exact(&mut frame).unwrap();
    assert_eq!(frame[0], 0x88);
    let payload_len = usize::from(frame[1]);
    assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), 1001);
    let mut reason = vec![0u8; payload_len - 2];
    silent.read_exact(&mut reason).unwrap();
    assert_eq!(reason, b"server shutting down");
    // No reply: the deadline terminates the connection.
    let exit = server.wait_exit(WAIT);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(exit.status.success(), "{:?}: {}", exit.status, exit.stderr);
    let report = exit.stdout.last().expect("a report line");
    assert_eq!(report_field(report, "total"), 1, "{report}");
    assert_eq!(report_field(report, "clean"), 0, "{report}");
    assert_eq!(report_field(report, "forced"), 1, "{report}");
    assert!(exit.stderr.contains("SIGINT"), "{}", exit.stderr);
}

#[test]
fn an_idle_server_exits_0_on_sigterm() {
    let server = ServeProcess::start(&["--workers", "2"]);
    server.signal(libc::SIGTERM);
    let exit = server.wait_exit(WAIT);
    assert!(exit.status.success(), "{:?}: {}", exit.status, exit.stderr);
    let report = exit.stdout.last().expect("a report line");
    assert_eq!(report_field(report, "total"), 0, "{report}");
}

/// Runs `ringws serve <args>` expecting it to fail at start-up.
fn failed_start(args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringws"))
        .arg("serve")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ringws serve {args:?} kept running");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn an_address_in_use_is_a_clear_error_not_a_panic() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stdout, stderr) = failed_start(&["--addr", &addr]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("in use"), "{stderr}");
    assert!(stderr.contains(&addr), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn invalid_settings_exit_2_with_the_reason() {
    let long_reason = "r".repeat(124);
    let cases: [(&[&str], &str); 4] = [
        (&["--shutdown-reason", &long_reason], "123"),
        (&["--workers", "0"], "workers"),
        (&["--backpressure", "close-1006"], "close-1006"),
        (&["--socket-send-buffer", "0"], "socket send buffer"),
    ];
    for (args, word) in cases {
        let mut full = vec!["--addr", "127.0.0.1:0"];
        full.extend_from_slice(args);
        let (code, _, stderr) = failed_start(&full);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(word), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
