//! The ringws client against foreign servers: Python `websockets` and Node
//! `ws` echo servers (tools/interop) and a tokio-tungstenite echo server. A missing peer fails the test with
//! instructions; it is never skipped.

mod client_common;

use std::time::Duration;

use client_common::*;
use ringws::{CloseCode, CloseKind, ConnectError, Initiator};

/// Echo of text, binary (1 MiB included) and a clean close with a code and
/// a reason, against the server at `url`.
fn echo_and_close(url: &str, peer: &str) {
    let (client, events) = start_client(|builder| builder.max_message_size(2 << 20));
    let big = pattern(1 << 20);
    let plan = Plan {
        tag: 1,
        greeting: Greeting::Text("hello".into()),
    };
    let id = client.connect(url, plan).expect("connect");
    let handle = opened(&events, id);
    assert_eq!(next_text(&events, id), "hello", "{peer}");
    handle.send_text("ünïcödé ✓").unwrap();
    assert_eq!(next_text(&events, id), "ünïcödé ✓", "{peer}");
    handle.send_binary(&[0, 1, 2, 255]).unwrap();
    assert_eq!(next_binary(&events, id), [0, 1, 2, 255], "{peer}");
    handle.send_binary(&big).unwrap();
    assert_eq!(next_binary(&events, id), big, "{peer}: 1 MiB binary");
    handle.send_binary_owned(big[..200_000].to_vec()).unwrap();
    assert_eq!(next_binary(&events, id), &big[..200_000], "{peer}");

    handle.close(1000, "done").unwrap();
    let info = closed(&events, id);
    assert_eq!(info.code, CloseCode::NORMAL, "{peer} echoes the code");
    assert_eq!(info.sent, Some(CloseCode::NORMAL));
    assert_eq!(info.initiator, Initiator::Local);
    assert_eq!(info.kind, CloseKind::Clean, "{peer}: {info:?}");
    let stats = client.stats().total;
    assert_eq!(stats.protocol_errors, 0, "{peer}");
    assert_eq!(
        stats.close_timeouts, 0,
        "{peer} closes TCP after the handshake"
    );
    client.shutdown(Duration::from_secs(1));
}

#[test]
fn echo_and_close_against_python_websockets() {
    let peer = python_echo_server(&[]);
    echo_and_close(&peer.url("/"), "Python websockets");
}

#[test]
fn echo_and_close_against_node_ws() {
    let peer = node_echo_server();
    echo_and_close(&peer.url("/"), "Node ws");
}

/// A tokio-tungstenite echo server on a current-thread runtime in its own
/// thread; returns its URL. The thread ends with the test process.
fn tungstenite_echo_server() -> String {
    use futures_util::{SinkExt, StreamExt};
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    while let Some(Ok(message)) = ws.next().await {
                        let echo = message.is_text() || message.is_binary();
                        if echo && ws.send(message).await.is_err() {
                            return;
                        }
                    }
                    // Close handshake done (tungstenite replied); dropping
                    // the stream closes TCP, server first.
                });
            }
        });
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("tungstenite server address");
    format!("ws://{addr}/")
}

#[test]
fn echo_and_close_against_tokio_tungstenite() {
    let url = tungstenite_echo_server();
    echo_and_close(&url, "tokio-tungstenite");
}

#[test]
fn python_refusing_the_upgrade_reports_its_status() {
    let peer = python_echo_server(&["--reject", "403"]);
    let (client, events) = start_client(|builder| builder);
    let id = client.connect(&peer.url("/"), Plan::tagged(1)).unwrap();
    let (failed_id, error) = connect_failed(&events, 1);
    assert_eq!(failed_id, Some(id));
    assert_eq!(error, ConnectError::Status(403));
    client.shutdown(Duration::from_secs(1));
}

#[test]
fn python_closing_first_is_answered_and_clean() {
    // The server closes with 4010 after echoing one message.
    let peer = python_echo_server(&["--close-after", "1", "--close-code", "4010"]);
    let (client, events) = start_client(|builder| builder);
    let id = client.connect(&peer.url("/"), Plan::tagged(1)).unwrap();
    let handle = opened(&events, id);
    handle.send_text("one").unwrap();
    assert_eq!(next_text(&events, id), "one");
    let info = closed(&events, id);
    assert_eq!(info.code, CloseCode(4010));
    assert_eq!(info.sent, Some(CloseCode(4010)), "the client echoes it");
    assert_eq!(info.initiator, Initiator::Remote);
    assert_eq!(info.kind, CloseKind::Clean);
    assert_eq!(client.stats().total.close_timeouts, 0);
    client.shutdown(Duration::from_secs(1));
}
