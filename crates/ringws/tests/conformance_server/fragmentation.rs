//! Fragmentation (RFC 6455 §5.4; Autobahn section 5): a message may arrive
//! as a first frame and continuations; control frames may be injected
//! between fragments; control frames themselves "MUST NOT be fragmented";
//! a continuation with nothing to continue, or a new data frame inside a
//! fragmented message, fails the connection with 1002.

use std::time::Duration;

use crate::support::*;

#[test]
fn fragmented_ping_and_pong_fail_with_1002() {
    let server = standard();
    for (name, opcode) in [("ping", op::PING), ("pong", op::PONG)] {
        let path = format!("/fragmentation/control/{name}");
        let mut peer = server.connect(&path);
        peer.send_each(&[
            Frame::new(opcode, "fragment1").fin(false),
            Frame::continuation("fragment2"),
        ]);
        peer.expect_failure(1002);
        server.assert_failed(&path, 1002);
    }
}

#[test]
fn a_text_in_two_fragments_is_echoed_as_one_message() {
    let server = standard();
    for delivery in ["each", "together", "bytewise"] {
        let path = format!("/fragmentation/two/{delivery}");
        let mut peer = server.connect(&path);
        let frames = [
            Frame::text("fragment1").fin(false),
            Frame::continuation("fragment2"),
        ];
        match delivery {
            "each" => peer.send_each(&frames),
            "together" => peer.send_together(&frames),
            _ => {
                let bytes = peer.encode_all(&frames);
                peer.write_bytewise(&bytes);
            }
        }
        peer.expect_text("fragment1fragment2");
        peer.close_normally();
        assert_eq!(
            server.messages(&path),
            [(true, b"fragment1fragment2".to_vec())]
        );
    }
}

#[test]
fn control_frames_between_fragments_are_handled_at_once() {
    let server = standard();
    for delivery in ["each", "together", "bytewise"] {
        let path = format!("/fragmentation/ping-between/{delivery}");
        let mut peer = server.connect(&path);
        let frames = [
            Frame::text("fragment1").fin(false),
            Frame::ping("between"),
            Frame::pong("unsolicited"),
            Frame::continuation("fragment2").fin(false),
            Frame::ping(""),
            Frame::continuation("fragment3"),
        ];
        match delivery {
            "each" => {
                // The Pong for the first Ping arrives before the message is
                // finished: ringws answers control frames mid-message.
                peer.send_each(&frames[..2]);
                peer.expect_pong("between");
                peer.send_each(&frames[2..]);
            }
            "together" => peer.send_together(&frames),
            _ => {
                let bytes = peer.encode_all(&frames);
                peer.write_bytewise(&bytes);
            }
        }
        if delivery != "each" {
            peer.expect_pong("between");
        }
        peer.expect_pong("");
        peer.expect_text("fragment1fragment2fragment3");
        peer.close_normally();
    }
}

#[test]
fn five_fragments_with_pings_and_pauses_between() {
    let server = standard();
    let mut peer = server.connect("/fragmentation/five-paused");
    for i in 0..5 {
        let opcode = if i == 0 { op::TEXT } else { op::CONTINUATION };
        peer.send(&Frame::new(opcode, format!("fragment{i}")).fin(i == 4));
        if i < 4 {
            peer.send(&Frame::ping(format!("pong{i}")));
            peer.expect_pong(format!("pong{i}"));
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    peer.expect_text("fragment0fragment1fragment2fragment3fragment4");
    peer.close_normally();
}

#[test]
fn binary_in_hundreds_of_fragments_of_varied_sizes_is_echoed() {
    let server = standard();
    let mut peer = server.connect("/fragmentation/hundreds");
    let payload = pattern_bytes(250_000);
    let frames = fragmented(op::BINARY, &payload, &[1, 0, 17, 4096, 125, 126, 3, 2000]);
    assert!(frames.len() >= 300);
    assert!(frames.iter().any(|frame| frame.payload.is_empty()));
    let bytes = peer.encode_all(&frames);
    peer.write_chunked(&bytes, &[65_536, 7, 1500, 16_384, 1]);
    peer.expect_binary(&payload);
    peer.close_normally();
}

#[test]
fn empty_fragments_are_part_of_the_message() {
    let server = standard();
    let mut peer = server.connect("/fragmentation/empty");
    // Empty first, middle and last fragments.
    peer.send_together(&[
        Frame::text("").fin(false),
        Frame::continuation("a").fin(false),
        Frame::continuation("").fin(false),
        Frame::continuation("b").fin(false),
        Frame::continuation(""),
    ]);
    peer.expect_text("ab");
    // A message of only empty fragments is an empty message.
    peer.send_together(&[
        Frame::binary(Vec::new()).fin(false),
        Frame::continuation(""),
    ]);
    peer.expect_binary(&[]);
    peer.close_normally();
}

#[test]
fn a_continuation_without_a_message_fails_with_1002() {
    let server = standard();
    let cases: [(&str, Vec<Frame>, &[&str]); 5] = [
        (
            "fin",
            vec![Frame::continuation("fragment1"), Frame::text("ignored")],
            &[],
        ),
        (
            "no-fin",
            vec![
                Frame::continuation("fragment1").fin(false),
                Frame::text("ignored"),
            ],
            &[],
        ),
        (
            "empty",
            vec![Frame::continuation(""), Frame::text("ignored")],
            &[],
        ),
        (
            "after-a-message",
            vec![
                Frame::text("whole"),
                Frame::continuation("more"),
                Frame::text("ignored"),
            ],
            &["whole"],
        ),
        (
            "after-a-fragmented-message",
            vec![
                Frame::text("frag").fin(false),
                Frame::continuation("mented"),
                Frame::continuation("one too many").fin(false),
                Frame::continuation("ignored"),
            ],
            &["fragmented"],
        ),
    ];
    for (name, frames, echoed) in cases {
        for together in [false, true] {
            let path = format!("/fragmentation/orphan/{name}/{together}");
            let mut peer = server.connect(&path);
            if together {
                peer.send_together(&frames);
            } else {
                peer.send_each(&frames);
            }
            for text in echoed {
                peer.expect_text(text);
            }
            peer.expect_failure(1002);
            let delivered: Vec<(bool, Vec<u8>)> = echoed
                .iter()
                .map(|text| (true, text.as_bytes().to_vec()))
                .collect();
            assert_eq!(server.messages(&path), delivered);
            server.assert_failed(&path, 1002);
        }
    }
}

#[test]
fn a_new_data_frame_inside_a_fragmented_message_fails_with_1002() {
    let server = standard();
    let cases = [
        ("text-in-text", op::TEXT, Frame::text("fragment2")),
        ("text-no-fin-in-text", op::TEXT, Frame::text("x").fin(false)),
        ("binary-in-text", op::TEXT, Frame::binary(vec![1])),
        ("text-in-binary", op::BINARY, Frame::text("fragment2")),
        (
            "binary-in-binary",
            op::BINARY,
            Frame::binary(vec![2]).fin(false),
        ),
    ];
    for (name, first, intruder) in cases {
        let path = format!("/fragmentation/intruder/{name}");
        let mut peer = server.connect(&path);
        peer.send_each(&[
            Frame::new(first, "fragment1").fin(false),
            Frame::ping("answered"),
        ]);
        peer.expect_pong("answered");
        peer.send_each(&[intruder, Frame::continuation("ignored")]);
        peer.expect_failure(1002);
        assert!(server.messages(&path).is_empty());
        server.assert_failed(&path, 1002);
    }
}

#[test]
fn a_close_between_fragments_ends_the_connection_and_drops_the_message() {
    // Control frames may come between fragments (§5.4), Close included; the
    // unfinished message is never delivered.
    let server = standard();
    let path = "/fragmentation/close-between";
    let mut peer = server.connect(path);
    peer.send_together(&[
        Frame::text("never").fin(false),
        Frame::close(1001, "leaving"),
        Frame::continuation(" finished"),
    ]);
    peer.expect_close_payload(&1001u16.to_be_bytes());
    peer.expect_eof();
    assert!(server.messages(path).is_empty());
    server.assert_closed_by_peer(path, Some(1001), "leaving");
}
