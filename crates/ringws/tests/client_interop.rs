//! The ringws client against foreign servers: Python `websockets` and Node
//! `ws` echo servers (tools/interop). A missing peer fails the test with
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
