//! Framing (RFC 6455 §5.1, §5.2; Autobahn section 1): single-frame text and
//! binary messages across the three length encodings, masking keys, and
//! header rules (masking, minimal lengths, the 64-bit top bit).

use crate::support::*;

/// Lengths around each boundary of the 7-bit, 16-bit and 64-bit forms.
const LENGTHS: [usize; 12] = [
    0, 1, 2, 124, 125, 126, 127, 128, 65_535, 65_536, 65_537, 300_000,
];

fn echo_each_length(opcode: u8, content: impl Fn(usize) -> Vec<u8>) {
    let server = standard();
    for len in LENGTHS {
        let path = format!("/framing/echo/{opcode}/{len}");
        let mut peer = server.connect(&path);
        let payload = content(len);
        peer.send(&Frame::new(opcode, payload.clone()));
        peer.expect_frame(opcode, &payload);
        peer.close_normally();
        assert_eq!(server.messages(&path), [(opcode == op::TEXT, payload)]);
        server.assert_closed_by_peer(&path, Some(1000), "");
    }
}

#[test]
fn text_of_every_length_form_is_echoed_exactly() {
    echo_each_length(op::TEXT, |len| mixed_text(len).into_bytes());
}

#[test]
fn binary_of_every_length_form_is_echoed_exactly() {
    echo_each_length(op::BINARY, pattern_bytes);
}

#[test]
fn a_frame_written_in_997_byte_chunks_is_echoed() {
    let server = standard();
    for (opcode, payload) in [
        (op::TEXT, mixed_text(65_536).into_bytes()),
        (op::BINARY, pattern_bytes(65_536)),
    ] {
        let path = format!("/framing/chunked-997/{opcode}");
        let mut peer = server.connect(&path);
        let bytes = peer.encode(&Frame::new(opcode, payload.clone()));
        peer.write_chunked(&bytes, &[997]);
        peer.expect_frame(opcode, &payload);
        peer.close_normally();
    }
}

#[test]
fn any_masking_key_is_accepted_including_zero() {
    let server = standard();
    let mut peer = server.connect("/framing/keys");
    let keys = [
        [0, 0, 0, 0],
        [0xFF, 0xFF, 0xFF, 0xFF],
        [0x01, 0x00, 0x00, 0x00],
        [0x00, 0x00, 0x00, 0x80],
        [0x37, 0xFA, 0x21, 0x3D],
    ];
    for (i, key) in keys.into_iter().enumerate() {
        let text = mixed_text(3 + 61 * i);
        peer.send(&Frame::text(&text).key(key));
        peer.expect_text(&text);
        let bytes = pattern_bytes(200 + i);
        peer.send(&Frame::binary(bytes.clone()).key(key));
        peer.expect_binary(&bytes);
        peer.send(&Frame::ping([i as u8; 9]).key(key));
        peer.expect_pong([i as u8; 9]);
    }
    peer.send(&Frame::close(1000, "").key([0; 4]));
    peer.expect_close_payload(&1000u16.to_be_bytes());
    peer.expect_eof();
}

#[test]
fn an_unmasked_client_frame_fails_with_1002() {
    // §5.1: "The server MUST close the connection upon receiving a frame
    // that is not masked."
    let server = standard();
    let cases = [
        ("text", Frame::text("unmasked")),
        ("binary", Frame::binary(vec![1, 2, 3])),
        ("empty-text", Frame::text("")),
        ("ping", Frame::ping("p")),
        ("close", Frame::close(1000, "")),
    ];
    for (name, frame) in cases {
        let path = format!("/framing/unmasked/{name}");
        let mut peer = server.connect(&path);
        peer.send(&Frame::text("before"));
        peer.send(&frame.unmasked());
        peer.expect_text("before");
        peer.expect_failure(1002);
        assert_eq!(server.messages(&path), [(true, b"before".to_vec())]);
        assert!(server.closes_received(&path).is_empty());
        server.assert_failed(&path, 1002);
    }
}

#[test]
fn a_non_minimal_length_fails_with_1002() {
    // §5.2: "the minimal number of bytes MUST be used to encode the length".
    let server = standard();
    let cases = [
        ("16-for-0", Frame::text("").length(Length::Extended16)),
        ("16-for-5", Frame::text("short").length(Length::Extended16)),
        (
            "16-for-125",
            Frame::binary(vec![7; 125]).length(Length::Extended16),
        ),
        (
            "64-for-200",
            Frame::binary(vec![7; 200]).length(Length::Extended64),
        ),
        (
            "64-for-65535",
            Frame::binary(vec![7; 65_535]).length(Length::Extended64),
        ),
        ("64-for-ping", Frame::ping("p").length(Length::Extended64)),
    ];
    for (name, frame) in cases {
        let path = format!("/framing/non-minimal/{name}");
        let mut peer = server.connect(&path);
        peer.send(&frame);
        peer.expect_failure(1002);
        assert!(server.messages(&path).is_empty());
        server.assert_failed(&path, 1002);
    }
}

#[test]
fn a_64_bit_length_with_its_top_bit_set_fails_with_1002() {
    // §5.2: "the most significant bit MUST be 0". Only the header is sent:
    // the length alone must condemn the frame.
    let server = standard();
    for (name, len) in [("top-only", 1u64 << 63), ("all-ones", u64::MAX)] {
        let path = format!("/framing/top-bit/{name}");
        let mut peer = server.connect(&path);
        let mut header = vec![0x82, 0x80 | 127];
        header.extend_from_slice(&len.to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        peer.write_raw(&header);
        peer.expect_failure(1002);
        server.assert_failed(&path, 1002);
    }
}

#[test]
fn a_frame_header_split_into_single_bytes_is_accepted() {
    let server = standard();
    let mut peer = server.connect("/framing/header-bytewise");
    for len in [5, 300, 70_000] {
        let payload = pattern_bytes(len);
        let bytes = peer.encode(&Frame::binary(payload.clone()));
        let header_len = bytes.len() - len;
        peer.write_bytewise(&bytes[..header_len]);
        peer.write_raw(&bytes[header_len..]);
        peer.expect_binary(&payload);
    }
    peer.close_normally();
}
