//! Miscellaneous wire behaviour: many messages back to back in one write
//! (answered in order), and the same frames split at every byte boundary
//! between two writes (TCP is a byte stream: a frame may arrive in any
//! pieces).

use std::time::Duration;

use crate::support::*;

#[test]
fn a_hundred_messages_in_one_write_are_answered_in_order() {
    let server = standard();
    let mut peer = server.connect("/misc/back-to-back");
    let mut frames = Vec::new();
    let mut expected = Vec::new();
    for i in 0..100usize {
        match i % 4 {
            0 => {
                let text = mixed_text(i * 37);
                frames.push(Frame::text(&text));
                expected.push((op::TEXT, text.into_bytes()));
            }
            1 => {
                let bytes = pattern_bytes(i * 1013);
                frames.push(Frame::binary(bytes.clone()));
                expected.push((op::BINARY, bytes));
            }
            2 => {
                let payload = vec![i as u8; i % 126];
                frames.push(Frame::ping(&payload));
                expected.push((op::PONG, payload));
            }
            _ => {
                let text = mixed_text(i);
                frames.extend(fragmented(op::TEXT, text.as_bytes(), &[1, 7, 2]));
                expected.push((op::TEXT, text.into_bytes()));
            }
        }
    }
    peer.send_together(&frames);
    for (opcode, payload) in &expected {
        peer.expect_frame(*opcode, payload);
    }
    peer.close_normally();
    assert_eq!(server.messages("/misc/back-to-back").len(), 75);
}

#[test]
fn frames_split_at_every_byte_boundary_are_reassembled() {
    let server = standard();
    let mut peer = server.connect("/misc/every-split");
    let text = mixed_text(130);
    let frames = [
        Frame::text(&text),
        Frame::ping("split"),
        Frame::binary(vec![1, 2, 3]),
        Frame::text("").fin(false),
        Frame::continuation("é".as_bytes()),
    ];
    let bytes = peer.encode_all(&frames);
    for split in 1..bytes.len() {
        peer.write_raw(&bytes[..split]);
        // Give the server time to receive the first piece on its own.
        std::thread::sleep(Duration::from_micros(300));
        peer.write_raw(&bytes[split..]);
        peer.expect_text(&text);
        peer.expect_pong("split");
        peer.expect_binary(&[1, 2, 3]);
        peer.expect_text("é");
    }
    peer.close_normally();
}

#[test]
fn a_frame_with_a_64_bit_length_split_inside_its_header_and_payload() {
    let server = standard();
    let mut peer = server.connect("/misc/split-64");
    let payload = pattern_bytes(70_000);
    let bytes = peer.encode(&Frame::binary(payload.clone()));
    let splits = (1..=14).chain([15, 16, 17, 16_383, 16_384, 16_385, 40_000, bytes.len() - 1]);
    for split in splits {
        peer.write_raw(&bytes[..split]);
        std::thread::sleep(Duration::from_micros(300));
        peer.write_raw(&bytes[split..]);
        peer.expect_binary(&payload);
    }
    peer.close_normally();
}

#[test]
fn a_quiet_connection_gets_no_unsolicited_frames() {
    // Keepalive is off on the test servers: nothing may arrive unasked.
    let server = standard();
    let mut peer = server.connect("/misc/quiet");
    peer.send(&Frame::text("hello"));
    peer.expect_text("hello");
    peer.expect_silence(Duration::from_millis(100));
    peer.close_normally();
}
