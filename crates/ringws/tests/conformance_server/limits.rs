//! Limits and large messages (RFC 6455 §10.4; Autobahn sections 9 and 10):
//! messages up to 16 MiB with the limit raised, in one frame or many,
//! written in chunks of varied sizes; a frame or message over the limit
//! fails with 1009 from its header alone, before its payload is sent.

use crate::support::*;

const MIB: usize = 1 << 20;

/// Sizes of the writes that carry a large message: odd, small, page-sized
/// and large, so frames straddle receive buffers everywhere.
const WRITES: [usize; 7] = [1, 65_536, 13, 1_000_003, 4_096, 16_385, 262_144];

#[test]
fn a_16_mib_binary_frame_is_echoed() {
    let server = large();
    let mut peer = server.connect("/limits/16mib/binary-one-frame");
    let payload = pattern_bytes(16 * MIB);
    let bytes = peer.encode(&Frame::binary(payload.clone()));
    peer.write_chunked(&bytes, &WRITES);
    peer.expect_binary(&payload);
    peer.close_normally();
}

#[test]
fn a_16_mib_text_in_fragments_of_varied_sizes_is_echoed() {
    let server = large();
    let mut peer = server.connect("/limits/16mib/text-fragmented");
    let text = mixed_text(16 * MIB);
    let frames = fragmented(
        op::TEXT,
        text.as_bytes(),
        &[MIB + 7, 3, 65_536, 2 * MIB, 125],
    );
    let bytes = peer.encode_all(&frames);
    peer.write_chunked(&bytes, &WRITES);
    peer.expect_text(&text);
    peer.close_normally();
}

#[test]
fn messages_of_1_and_4_mib_are_echoed() {
    let server = large();
    let mut peer = server.connect("/limits/1-and-4-mib");
    for len in [MIB, 4 * MIB] {
        let text = mixed_text(len);
        let bytes = peer.encode(&Frame::text(&text));
        peer.write_chunked(&bytes, &WRITES);
        peer.expect_text(&text);
        let payload = pattern_bytes(len + 1);
        let frames = fragmented(op::BINARY, &payload, &[len / 3, 1, 70_000]);
        let bytes = peer.encode_all(&frames);
        peer.write_chunked(&bytes, &WRITES[1..]);
        peer.expect_binary(&payload);
    }
    peer.close_normally();
}

#[test]
fn a_frame_announcing_more_than_16_mib_fails_with_1009_from_its_header() {
    let server = large();
    let path = "/limits/16mib/over";
    let mut peer = server.connect(path);
    let frame = Frame::binary(Vec::new());
    // The header of a 16 MiB + 1 frame, and none of its payload.
    let mut header = frame.header([9, 8, 7, 6]);
    header[1] = 0x80 | 127;
    header.splice(2..2, ((16 * MIB + 1) as u64).to_be_bytes());
    peer.write_raw(&header);
    peer.expect_failure(1009);
    assert!(server.messages(path).is_empty());
    server.assert_failed(path, 1009);
}

#[test]
fn frames_and_messages_at_the_limits_are_accepted() {
    let server = limited();
    let mut peer = server.connect("/limits/small/at-limits");
    // One frame of exactly the frame limit.
    let payload = pattern_bytes(SMALL_FRAME_LIMIT);
    peer.send(&Frame::binary(payload.clone()));
    peer.expect_binary(&payload);
    // A message of exactly the message limit in two full frames, with a
    // Ping between them (control frames do not count).
    let text = mixed_text(SMALL_MESSAGE_LIMIT);
    let (first, second) = text.as_bytes().split_at(SMALL_FRAME_LIMIT);
    peer.send_together(&[
        Frame::text(first).fin(false),
        Frame::ping(pattern_bytes(125)),
        Frame::continuation(second),
    ]);
    peer.expect_pong(pattern_bytes(125));
    peer.expect_text(&text);
    peer.close_normally();
}

#[test]
fn a_frame_over_the_frame_limit_fails_with_1009_from_its_header() {
    let server = limited();
    for (name, opcode) in [("text", op::TEXT), ("binary", op::BINARY)] {
        let path = format!("/limits/small/frame-over/{name}");
        let mut peer = server.connect(&path);
        let bytes = peer.encode(&Frame::new(opcode, pattern_bytes(SMALL_FRAME_LIMIT + 1)));
        // Header only: 2 bytes, 16-bit length, key.
        peer.write_raw(&bytes[..8]);
        peer.expect_failure(1009);
        server.assert_failed(&path, 1009);
    }
    // A continuation over the frame limit.
    let path = "/limits/small/frame-over/continuation";
    let mut peer = server.connect(path);
    peer.send(&Frame::binary(vec![1; 10]).fin(false));
    let bytes = peer.encode(&Frame::continuation(pattern_bytes(SMALL_FRAME_LIMIT + 1)));
    peer.write_raw(&bytes[..8]);
    peer.expect_failure(1009);
    server.assert_failed(path, 1009);
}

#[test]
fn a_message_over_the_message_limit_fails_with_1009_at_the_frame_that_crosses_it() {
    let server = limited();
    for (name, opcode) in [("text", op::TEXT), ("binary", op::BINARY)] {
        let path = format!("/limits/small/message-over/{name}");
        let mut peer = server.connect(&path);
        let half = mixed_text(SMALL_FRAME_LIMIT);
        peer.send_each(&[
            Frame::new(opcode, half.as_bytes()).fin(false),
            Frame::continuation(half.as_bytes()).fin(false),
        ]);
        // One more byte would cross the limit: its header alone fails it.
        let bytes = peer.encode(&Frame::continuation("x"));
        peer.write_raw(&bytes[..6]);
        peer.expect_failure(1009);
        assert!(server.messages(&path).is_empty());
        server.assert_failed(&path, 1009);
    }
}

#[test]
fn the_largest_64_bit_length_fails_with_1009_without_allocating_it() {
    // 2^63 - 1: a valid length (top bit clear) far over any limit.
    let server = standard();
    let path = "/limits/largest-length";
    let mut peer = server.connect(path);
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
    header.extend_from_slice(&[0xA1, 0xB2, 0xC3, 0xD4]);
    header.extend_from_slice(&[0; 64]);
    peer.write_raw(&header);
    peer.expect_failure(1009);
    server.assert_failed(path, 1009);
}
