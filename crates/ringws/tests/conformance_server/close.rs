//! Close handling (RFC 6455 §5.5.1, §7.1–7.4; Autobahn section 7): a Close
//! payload is empty or a 2-byte code plus a UTF-8 reason (125 bytes at
//! most); only 1000–1003, 1007–1014 and 3000–4999 may appear on the wire;
//! the Close is answered with a Close and the server closes TCP first;
//! after the peer's Close every further byte is discarded.

use crate::support::*;

/// Codes RFC 6455 §7.4 allows on the wire, sampled at every range edge.
const VALID_CODES: [u16; 18] = [
    1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3001, 3999, 4000,
    4001, 4999,
];

/// Codes that must never appear on the wire, sampled at every range edge:
/// unused (0–999), reserved or local-only (1004–1006, 1015), unassigned in
/// the protocol range (1016–2999), beyond the private range (5000+).
const INVALID_CODES: [u16; 24] = [
    0, 1, 500, 999, 1004, 1005, 1006, 1015, 1016, 1099, 1100, 1999, 2000, 2500, 2999, 5000, 5001,
    6000, 9999, 10000, 32768, 65000, 65534, 65535,
];

#[test]
fn every_valid_code_is_echoed_and_tcp_closed_by_the_server() {
    let server = standard();
    for code in VALID_CODES {
        let path = format!("/close/valid/{code}");
        let mut peer = server.connect(&path);
        peer.send(&Frame::close(code, ""));
        peer.expect_close_payload(&code.to_be_bytes());
        peer.expect_eof();
        server.assert_closed_by_peer(&path, Some(code), "");
        let info = server.closed(&path);
        assert_eq!(info.sent.map(|c| c.0), Some(code));
    }
}

#[test]
fn an_empty_close_is_answered() {
    // §5.5.1: the body is optional. §7.1.5: the status is then 1005, which
    // is never sent; ringws answers 1000 (documented on
    // `Handler::on_close_received`).
    let server = standard();
    let path = "/close/empty";
    let mut peer = server.connect(path);
    peer.send(&Frame::new(op::CLOSE, ""));
    peer.expect_close_payload(&1000u16.to_be_bytes());
    peer.expect_eof();
    server.assert_closed_by_peer(path, None, "");
}

#[test]
fn reasons_up_to_123_bytes_are_accepted_and_reported() {
    let server = standard();
    let reasons = [
        "Hello World!".to_owned(),
        "*".repeat(123),
        // 41 three-byte characters: exactly 123 bytes.
        "€".repeat(41),
        "κόσμε \u{10FFFF} 𝄞".to_owned(),
    ];
    for (i, reason) in reasons.iter().enumerate() {
        let path = format!("/close/reason/{i}");
        let mut peer = server.connect(&path);
        peer.send(&Frame::close(1000, reason));
        peer.expect_close_payload(&1000u16.to_be_bytes());
        peer.expect_eof();
        server.assert_closed_by_peer(&path, Some(1000), reason);
    }
}

#[test]
fn a_close_written_byte_by_byte_is_answered() {
    let server = standard();
    let path = "/close/bytewise";
    let mut peer = server.connect(path);
    let bytes = peer.encode(&Frame::close(4321, "slowly"));
    peer.write_bytewise(&bytes);
    peer.expect_close_payload(&4321u16.to_be_bytes());
    peer.expect_eof();
    server.assert_closed_by_peer(path, Some(4321), "slowly");
}

#[test]
fn every_invalid_code_fails_with_1002() {
    let server = standard();
    for code in INVALID_CODES {
        for reason in ["", "reason"] {
            let path = format!("/close/invalid-code/{code}/{}", reason.len());
            let mut peer = server.connect(&path);
            peer.send(&Frame::close(code, reason));
            peer.expect_failure(1002);
            assert!(server.closes_received(&path).is_empty());
            server.assert_failed(&path, 1002);
        }
    }
}

#[test]
fn a_one_byte_close_payload_fails_with_1002() {
    let server = standard();
    for byte in [0x03, 0xE8, 0x00] {
        let path = format!("/close/one-byte/{byte}");
        let mut peer = server.connect(&path);
        peer.send(&Frame::new(op::CLOSE, [byte]));
        peer.expect_failure(1002);
        server.assert_failed(&path, 1002);
    }
}

#[test]
fn a_close_payload_over_125_bytes_fails_with_1002() {
    let server = standard();
    for (name, reason_len, header_only) in [
        ("126", 124, false),
        ("126-header", 124, true),
        ("200", 198, false),
    ] {
        let path = format!("/close/too-long/{name}");
        let mut peer = server.connect(&path);
        let bytes = peer.encode(&Frame::close(1000, "r".repeat(reason_len)));
        peer.write_raw(if header_only { &bytes[..4] } else { &bytes });
        peer.expect_failure(1002);
        server.assert_failed(&path, 1002);
    }
}

#[test]
fn an_invalid_utf8_reason_fails_with_1007() {
    let server = standard();
    let reasons: [(&str, &[u8]); 5] = [
        (
            "surrogate",
            b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80\x65\x64\x69\x74\x65\x64",
        ),
        ("lone-continuation", b"abc\x80"),
        ("truncated", b"cut \xE2\x82"),
        ("overlong", b"\xC0\xAF"),
        ("ff", b"\xFF"),
    ];
    for (name, reason) in reasons {
        let path = format!("/close/bad-reason/{name}");
        let mut peer = server.connect(&path);
        peer.send(&Frame::close(1000, reason));
        peer.expect_failure(1007);
        assert!(server.closes_received(&path).is_empty());
        server.assert_failed(&path, 1007);
    }
}

#[test]
fn data_after_the_close_is_discarded() {
    let server = standard();
    // In the same write as the Close: a text, a Ping, a binary, a second
    // Close and garbage. None of it is answered or delivered.
    let path = "/close/data-after";
    let mut peer = server.connect(path);
    let mut bytes = peer.encode_all(&[
        Frame::close(1000, "bye"),
        Frame::text("after close"),
        Frame::ping("after close"),
        Frame::binary(pattern_bytes(70_000)),
        Frame::close(3000, "second"),
    ]);
    bytes.extend_from_slice(&[0xFF; 32]);
    peer.write_raw(&bytes);
    peer.expect_close_payload(&1000u16.to_be_bytes());
    peer.expect_eof();
    assert!(server.messages(path).is_empty());
    server.assert_closed_by_peer(path, Some(1000), "bye");
}

#[test]
fn messages_before_the_close_are_echoed_first() {
    let server = standard();
    let path = "/close/messages-before";
    let mut peer = server.connect(path);
    peer.send_together(&[
        Frame::text("first"),
        Frame::binary(pattern_bytes(1000)),
        Frame::ping("p"),
        Frame::close(1001, "going"),
    ]);
    peer.expect_text("first");
    peer.expect_binary(&pattern_bytes(1000));
    peer.expect_pong("p");
    peer.expect_close_payload(&1001u16.to_be_bytes());
    peer.expect_eof();
    assert_eq!(server.messages(path).len(), 2);
    server.assert_closed_by_peer(path, Some(1001), "going");
}

#[test]
fn a_close_followed_by_the_peers_fin_is_still_answered() {
    // The client sends its Close and at once shuts down its sending side:
    // ringws still answers the Close, then closes TCP.
    let server = standard();
    let path = "/close/then-fin";
    let mut peer = server.connect(path);
    peer.send(&Frame::close(1000, "and fin"));
    peer.shutdown_write();
    peer.expect_close_payload(&1000u16.to_be_bytes());
    peer.expect_eof();
    server.assert_closed_by_peer(path, Some(1000), "and fin");
}
