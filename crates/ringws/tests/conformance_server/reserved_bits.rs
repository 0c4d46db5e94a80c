//! Reserved bits (RFC 6455 §5.2; Autobahn section 3): without a negotiated
//! extension, "if a nonzero value is received ... the receiving endpoint MUST
//! _Fail the WebSocket Connection_". ringws negotiates none, so every RSV
//! value 1–7 on every kind of frame fails with 1002, and nothing after the
//! bad frame is acted on.

use crate::support::*;

/// How a case delivers its frames.
#[derive(Clone, Copy)]
enum Delivery {
    OneWritePerFrame,
    AllInOneWrite,
    ByteByByte,
}

fn rsv_case(name: &str, bad: Frame, delivery: Delivery) {
    let server = standard();
    let path = format!("/reserved-bits/{name}");
    let mut peer = server.connect(&path);
    // A valid message first (echoed), then the bad frame, then a Ping and a
    // text that must both be ignored.
    let frames = [
        Frame::text("valid before"),
        bad,
        Frame::ping("ignored"),
        Frame::text("ignored"),
    ];
    match delivery {
        Delivery::OneWritePerFrame => peer.send_each(&frames),
        Delivery::AllInOneWrite => peer.send_together(&frames),
        Delivery::ByteByByte => {
            let bytes = peer.encode_all(&frames);
            peer.write_bytewise(&bytes);
        }
    }
    peer.expect_text("valid before");
    peer.expect_failure(1002);
    assert_eq!(server.messages(&path), [(true, b"valid before".to_vec())]);
    assert!(server.closes_received(&path).is_empty());
    server.assert_failed(&path, 1002);
}

#[test]
fn rsv1_on_a_text_frame() {
    rsv_case(
        "1-text",
        Frame::text("hello").rsv(1),
        Delivery::OneWritePerFrame,
    );
}

#[test]
fn rsv2_on_a_text_frame() {
    rsv_case(
        "2-text",
        Frame::text("hello").rsv(2),
        Delivery::AllInOneWrite,
    );
}

#[test]
fn rsv3_on_a_text_frame_written_byte_by_byte() {
    rsv_case("3-text", Frame::text("hello").rsv(3), Delivery::ByteByByte);
}

#[test]
fn rsv4_on_a_text_frame() {
    rsv_case(
        "4-text",
        Frame::text("hello").rsv(4),
        Delivery::AllInOneWrite,
    );
}

#[test]
fn rsv5_on_a_binary_frame() {
    rsv_case(
        "5-binary",
        Frame::binary(pattern_bytes(300)).rsv(5),
        Delivery::OneWritePerFrame,
    );
}

#[test]
fn rsv6_on_a_ping() {
    rsv_case(
        "6-ping",
        Frame::ping("ping").rsv(6),
        Delivery::AllInOneWrite,
    );
}

#[test]
fn rsv7_on_a_close() {
    rsv_case(
        "7-close",
        Frame::close(1000, "").rsv(7),
        Delivery::AllInOneWrite,
    );
}

#[test]
fn rsv1_on_a_pong() {
    rsv_case("1-pong", Frame::pong("pong").rsv(1), Delivery::ByteByByte);
}

#[test]
fn rsv1_on_an_empty_binary_frame() {
    rsv_case(
        "1-empty-binary",
        Frame::binary(Vec::new()).rsv(1),
        Delivery::AllInOneWrite,
    );
}

#[test]
fn rsv_on_a_continuation_fails_the_fragmented_message() {
    let server = standard();
    for rsv in 1..=7u8 {
        let path = format!("/reserved-bits/continuation/{rsv}");
        let mut peer = server.connect(&path);
        peer.send_each(&[
            Frame::text("frag").fin(false),
            Frame::continuation("ment").fin(false).rsv(rsv),
            Frame::continuation("ed"),
        ]);
        peer.expect_failure(1002);
        assert!(server.messages(&path).is_empty());
        server.assert_failed(&path, 1002);
    }
}
