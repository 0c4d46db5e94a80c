//! Pings and Pongs (RFC 6455 §5.5.2, §5.5.3; Autobahn section 2): a Ping is
//! answered by a Pong with the same payload "as soon as is practical"; a
//! control payload is at most 125 bytes; an unsolicited Pong is ignored.

use crate::support::*;

#[test]
fn pings_of_any_content_up_to_125_bytes_get_identical_pongs() {
    let server = standard();
    let payloads: [(&str, Vec<u8>); 5] = [
        ("empty", Vec::new()),
        ("text", b"Hello, world!".to_vec()),
        (
            "binary",
            vec![0x00, 0xFF, 0xFE, 0xFD, 0xFC, 0xFB, 0x00, 0xFF],
        ),
        ("125", pattern_bytes(125)),
        ("124", vec![0xFE; 124]),
    ];
    for (name, payload) in payloads {
        let path = format!("/pings/echo/{name}");
        let mut peer = server.connect(&path);
        peer.send(&Frame::ping(&payload));
        peer.expect_pong(&payload);
        peer.close_normally();
        assert!(server.messages(&path).is_empty());
        server.assert_closed_by_peer(&path, Some(1000), "");
    }
}

#[test]
fn a_ping_of_126_bytes_fails_with_1002_and_gets_no_pong() {
    let server = standard();
    // The whole frame (16-bit length form), and then only its header: the
    // header alone condemns it.
    for (name, header_only) in [("whole", false), ("header-only", true)] {
        let path = format!("/pings/126/{name}");
        let mut peer = server.connect(&path);
        let bytes = peer.encode(&Frame::ping(pattern_bytes(126)));
        let sent = if header_only { &bytes[..4] } else { &bytes[..] };
        peer.write_raw(sent);
        peer.expect_failure(1002);
        server.assert_failed(&path, 1002);
    }
}

#[test]
fn a_125_byte_ping_written_byte_by_byte_gets_its_pong() {
    let server = standard();
    let mut peer = server.connect("/pings/bytewise");
    let payload = pattern_bytes(125);
    let bytes = peer.encode(&Frame::ping(&payload));
    peer.write_bytewise(&bytes);
    peer.expect_pong(&payload);
    peer.close_normally();
}

#[test]
fn unsolicited_pongs_are_ignored() {
    let server = standard();
    let mut peer = server.connect("/pings/unsolicited");
    peer.send(&Frame::pong(""));
    peer.send(&Frame::pong("unsolicited pong payload"));
    peer.send(&Frame::pong(pattern_bytes(125)));
    // The first frame back is the echo: no frame answered the Pongs.
    peer.send(&Frame::text("after pongs"));
    peer.expect_text("after pongs");
    // A Pong then a Ping: one Pong back, carrying the Ping's payload.
    peer.send_together(&[Frame::pong("unsolicited"), Frame::ping("solicited")]);
    peer.expect_pong("solicited");
    peer.close_normally();
}

#[test]
fn ten_pings_in_one_write_get_ten_pongs_in_order() {
    let server = standard();
    let mut peer = server.connect("/pings/ten");
    let frames: Vec<Frame> = (0..10u8)
        .map(|i| Frame::ping(vec![i; usize::from(i) * 12]))
        .collect();
    peer.send_together(&frames);
    for i in 0..10u8 {
        peer.expect_pong(vec![i; usize::from(i) * 12]);
    }
    // The same, written in chunks of 1 and 3 bytes.
    let bytes = peer.encode_all(&frames);
    peer.write_chunked(&bytes, &[1, 3]);
    for i in 0..10u8 {
        peer.expect_pong(vec![i; usize::from(i) * 12]);
    }
    peer.close_normally();
}

#[test]
fn pings_interleaved_with_messages_are_answered_in_order() {
    let server = standard();
    let mut peer = server.connect("/pings/interleaved");
    let big = pattern_bytes(100_000);
    peer.send_together(&[
        Frame::text("one"),
        Frame::ping("p1"),
        Frame::binary(big.clone()),
        Frame::ping("p2"),
        Frame::text("two"),
        Frame::ping("p3"),
    ]);
    peer.expect_text("one");
    peer.expect_pong("p1");
    peer.expect_binary(&big);
    peer.expect_pong("p2");
    peer.expect_text("two");
    peer.expect_pong("p3");
    // A Ping then a Close in one write: the Pong, then the Close echo.
    peer.send_together(&[Frame::ping("last"), Frame::close(1000, "")]);
    peer.expect_pong("last");
    peer.expect_close_payload(&1000u16.to_be_bytes());
    peer.expect_eof();
}

#[test]
fn a_thousand_125_byte_pings_in_one_write_get_a_thousand_pongs() {
    let server = standard();
    let mut peer = server.connect("/pings/thousand");
    let frames: Vec<Frame> = (0..1000u32)
        .map(|i| Frame::ping(&i.to_be_bytes().repeat(32)[..125]))
        .collect();
    peer.send_together(&frames);
    for i in 0..1000u32 {
        peer.expect_pong(&i.to_be_bytes().repeat(32)[..125]);
    }
    peer.close_normally();
}
