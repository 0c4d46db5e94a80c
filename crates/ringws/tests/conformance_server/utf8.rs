//! UTF-8 handling (RFC 6455 §5.6, §8.1; Autobahn section 6): text messages
//! must be valid UTF-8 as a whole, code points may straddle fragments, and
//! invalid data fails the connection with 1007. ringws validates as bytes
//! arrive, so a message is failed at the first byte that proves it invalid:
//! the fail-fast cases send a message only up to that byte, withholding the
//! rest (of the frame and of the message), and expect the Close anyway.

use crate::support::*;

/// Valid texts at the edges of each encoding length and the surrogate gap.
const VALID: [&str; 16] = [
    "",
    "Hello-µ@ßöäüàá-UTF-8!!",
    "κόσμε",
    "\u{0000}",
    "\u{007F}",
    "\u{0080}",
    "\u{07FF}",
    "\u{0800}",
    "\u{D7FF}",
    "\u{E000}",
    "\u{FEFF}BOM",
    "\u{FFFD}",
    "\u{FFFF}",
    "\u{10000}",
    "\u{10FFFF}",
    "𝄞😀字€é",
];

#[test]
fn valid_texts_are_echoed_whole_split_and_chopped() {
    let server = standard();
    let long = mixed_text(5000);
    let texts: Vec<&str> = VALID.iter().copied().chain([long.as_str()]).collect();

    let mut whole = server.connect("/utf8/valid/whole");
    for text in &texts {
        whole.send(&Frame::text(text));
        whole.expect_text(text);
    }
    whole.close_normally();

    // One byte per fragment: every multi-byte code point straddles frames.
    let mut split = server.connect("/utf8/valid/one-byte-fragments");
    for text in &texts[..VALID.len()] {
        split.send_together(&fragmented(op::TEXT, text.as_bytes(), &[1]));
        split.expect_text(text);
    }
    let frames = fragmented(op::TEXT, long.as_bytes(), &[1, 2, 3, 5, 7]);
    split.send_together(&frames);
    split.expect_text(&long);
    split.close_normally();

    // One frame, written one byte at a time.
    let mut chopped = server.connect("/utf8/valid/chopped");
    for text in &texts[..VALID.len()] {
        let bytes = chopped.encode(&Frame::text(text));
        chopped.write_bytewise(&bytes);
        chopped.expect_text(text);
    }
    chopped.close_normally();

    let expected: Vec<(bool, Vec<u8>)> = texts
        .iter()
        .map(|text| (true, text.as_bytes().to_vec()))
        .collect();
    assert_eq!(server.messages("/utf8/valid/whole"), expected);
    assert_eq!(
        server.messages("/utf8/valid/chopped"),
        expected[..VALID.len()]
    );
}

/// An invalid sequence and the index of the byte that proves it invalid
/// (`None`: only the end of the message does, for a truncated sequence).
struct Invalid {
    name: &'static str,
    bytes: &'static [u8],
    decided_at: Option<usize>,
}

const INVALID: [Invalid; 27] = [
    Invalid {
        name: "lone-80",
        bytes: b"\x80",
        decided_at: Some(0),
    },
    Invalid {
        name: "lone-bf",
        bytes: b"\xBF",
        decided_at: Some(0),
    },
    Invalid {
        name: "two-continuations",
        bytes: b"\x80\xBF",
        decided_at: Some(0),
    },
    Invalid {
        name: "overlong-c0-80",
        bytes: b"\xC0\x80",
        decided_at: Some(0),
    },
    Invalid {
        name: "overlong-c1-bf",
        bytes: b"\xC1\xBF",
        decided_at: Some(0),
    },
    Invalid {
        name: "overlong-e0-80-80",
        bytes: b"\xE0\x80\x80",
        decided_at: Some(1),
    },
    Invalid {
        name: "overlong-e0-9f-bf",
        bytes: b"\xE0\x9F\xBF",
        decided_at: Some(1),
    },
    Invalid {
        name: "overlong-f0-80",
        bytes: b"\xF0\x80\x80\x80",
        decided_at: Some(1),
    },
    Invalid {
        name: "overlong-f0-8f",
        bytes: b"\xF0\x8F\xBF\xBF",
        decided_at: Some(1),
    },
    Invalid {
        name: "surrogate-d800",
        bytes: b"\xED\xA0\x80",
        decided_at: Some(1),
    },
    Invalid {
        name: "surrogate-db7f",
        bytes: b"\xED\xAD\xBF",
        decided_at: Some(1),
    },
    Invalid {
        name: "surrogate-dc00",
        bytes: b"\xED\xB0\x80",
        decided_at: Some(1),
    },
    Invalid {
        name: "surrogate-dfff",
        bytes: b"\xED\xBF\xBF",
        decided_at: Some(1),
    },
    Invalid {
        name: "surrogate-pair",
        bytes: b"\xED\xA0\x80\xED\xB0\x80",
        decided_at: Some(1),
    },
    Invalid {
        name: "above-10ffff",
        bytes: b"\xF4\x90\x80\x80",
        decided_at: Some(1),
    },
    Invalid {
        name: "f7",
        bytes: b"\xF7\xBF\xBF\xBF",
        decided_at: Some(0),
    },
    Invalid {
        name: "f5",
        bytes: b"\xF5\x80\x80\x80",
        decided_at: Some(0),
    },
    Invalid {
        name: "five-byte",
        bytes: b"\xF8\x88\x80\x80\x80",
        decided_at: Some(0),
    },
    Invalid {
        name: "six-byte",
        bytes: b"\xFC\x84\x80\x80\x80\x80",
        decided_at: Some(0),
    },
    Invalid {
        name: "fe",
        bytes: b"\xFE",
        decided_at: Some(0),
    },
    Invalid {
        name: "ff",
        bytes: b"\xFF",
        decided_at: Some(0),
    },
    Invalid {
        name: "cut-2-then-ascii",
        bytes: b"\xC2A",
        decided_at: Some(1),
    },
    Invalid {
        name: "cut-3-then-ascii",
        bytes: b"\xE2\x82A",
        decided_at: Some(2),
    },
    Invalid {
        name: "cut-4-then-ascii",
        bytes: b"\xF0\x9F\x98A",
        decided_at: Some(3),
    },
    Invalid {
        name: "cut-3-then-lead",
        bytes: b"\xE2\x82\xE2\x82\xAC",
        decided_at: Some(2),
    },
    Invalid {
        name: "cut-2-at-end",
        bytes: b"\xC2",
        decided_at: None,
    },
    Invalid {
        name: "cut-4-at-end",
        bytes: b"\xF0\x9F\x98",
        decided_at: None,
    },
];

/// "κόσμε" + the invalid bytes + "edited" (unless the sequence must end the
/// message).
fn message_with(invalid: &Invalid) -> Vec<u8> {
    let mut message = "κόσμε".as_bytes().to_vec();
    message.extend_from_slice(invalid.bytes);
    if invalid.decided_at.is_some() {
        message.extend_from_slice(b"edited");
    }
    message
}

#[test]
fn invalid_utf8_in_a_single_frame_fails_with_1007() {
    let server = standard();
    for invalid in &INVALID {
        let path = format!("/utf8/invalid/single/{}", invalid.name);
        let mut peer = server.connect(&path);
        peer.send(&Frame::text(message_with(invalid)));
        let reason = peer.expect_failure(1007);
        assert!(!reason.is_empty());
        assert!(server.messages(&path).is_empty());
        server.assert_failed(&path, 1007);
    }
}

#[test]
fn invalid_utf8_in_one_byte_fragments_fails_with_1007() {
    let server = standard();
    for invalid in &INVALID {
        let path = format!("/utf8/invalid/fragments/{}", invalid.name);
        let mut peer = server.connect(&path);
        peer.send_together(&fragmented(op::TEXT, &message_with(invalid), &[1]));
        peer.expect_failure(1007);
        assert!(server.messages(&path).is_empty());
        server.assert_failed(&path, 1007);
    }
}

#[test]
fn invalid_utf8_after_valid_messages_fails_only_that_message() {
    let server = standard();
    let path = "/utf8/invalid/after-valid";
    let mut peer = server.connect(path);
    peer.send_together(&[
        Frame::text("valid one"),
        Frame::binary(vec![0xFF, 0xFE]),
        Frame::text(
            b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80\x65\x64\x69\x74\x65\x64",
        ),
        Frame::text("ignored"),
    ]);
    peer.expect_text("valid one");
    // Binary messages are not UTF-8 checked.
    peer.expect_binary(&[0xFF, 0xFE]);
    peer.expect_failure(1007);
    assert_eq!(
        server.messages(path),
        [(true, b"valid one".to_vec()), (false, vec![0xFF, 0xFE])]
    );
    server.assert_failed(path, 1007);
}

/// Sends `message` as frames of the given sizes, stopping right after the
/// byte at `cut` (an index into the message): the frame holding it is cut
/// short there, and nothing after it is sent. Returns how many bytes of the
/// message were withheld.
fn send_until(
    peer: &mut Peer,
    message: &[u8],
    sizes: &[usize],
    cut: usize,
    writes: &[usize],
) -> usize {
    let frames = fragmented(op::TEXT, message, sizes);
    let mut wire = Vec::new();
    let mut offset = 0;
    for frame in &frames {
        let len = frame.payload.len();
        let encoded = peer.encode(frame);
        let header_len = encoded.len() - len;
        if cut < offset + len {
            wire.extend_from_slice(&encoded[..header_len + (cut - offset) + 1]);
            break;
        }
        wire.extend_from_slice(&encoded);
        offset += len;
    }
    peer.write_chunked(&wire, writes);
    message.len() - (cut + 1)
}

#[test]
fn fail_fast_fragment_with_the_invalid_sequence_and_the_rest_withheld() {
    let server = standard();
    // "κόσμε" | invalid | "edited" as three fragments; the third is never
    // sent.
    let path = "/utf8/fail-fast/three-fragments";
    let mut peer = server.connect(path);
    peer.send_each(&[
        Frame::text("κόσμε").fin(false),
        Frame::continuation(b"\xF4\x90\x80\x80").fin(false),
    ]);
    peer.expect_failure(1007);
    server.assert_failed(path, 1007);

    // The code point split over two fragments: the second one decides.
    let path = "/utf8/fail-fast/split-code-point";
    let mut peer = server.connect(path);
    peer.send_each(&[
        Frame::text("κόσμε").fin(false),
        Frame::continuation(b"\xF4").fin(false),
        Frame::continuation(b"\x90").fin(false),
    ]);
    peer.expect_failure(1007);
    server.assert_failed(path, 1007);
}

#[test]
fn fail_fast_inside_one_frame_before_its_payload_ends() {
    let server = standard();
    for invalid in INVALID.iter().filter(|i| i.decided_at.is_some()) {
        let path = format!("/utf8/fail-fast/in-frame/{}", invalid.name);
        let mut peer = server.connect(&path);
        let message = message_with(invalid);
        let cut = "κόσμε".len() + invalid.decided_at.unwrap();
        let withheld = send_until(&mut peer, &message, &[message.len()], cut, &[usize::MAX]);
        assert!(withheld > 0);
        peer.expect_failure(1007);
        assert!(server.messages(&path).is_empty());
        server.assert_failed(&path, 1007);
    }
}

#[test]
fn fail_fast_in_a_large_message_over_many_frames_and_buffers() {
    let server = standard();
    // ~300 KB of multi-byte text in frames of varied sizes (so the message
    // spans many receive buffers and frames straddle them); the invalid
    // sequence sits deep inside, in the middle of a frame.
    let prefix = mixed_text(200_003);
    let suffix = mixed_text(100_000);
    let sizes = [9_973, 1, 16_384, 70_001, 3, 40_000];
    for name in [
        "ff",
        "lone-80",
        "surrogate-d800",
        "overlong-e0-80-80",
        "above-10ffff",
        "cut-3-then-ascii",
    ] {
        let invalid = INVALID.iter().find(|i| i.name == name).unwrap();
        for (delivery, writes) in [
            ("big-writes", &[65_536usize][..]),
            ("odd-writes", &[1, 4095, 16_385, 7][..]),
        ] {
            let path = format!("/utf8/fail-fast/large/{name}/{delivery}");
            let mut peer = server.connect(&path);
            let mut message = prefix.as_bytes().to_vec();
            message.extend_from_slice(invalid.bytes);
            message.extend_from_slice(suffix.as_bytes());
            let cut = prefix.len() + invalid.decided_at.unwrap();
            let withheld = send_until(&mut peer, &message, &sizes, cut, writes);
            assert!(withheld >= 100_000);
            peer.expect_failure(1007);
            assert!(server.messages(&path).is_empty());
            server.assert_failed(&path, 1007);
        }
    }
}

#[test]
fn fail_fast_in_one_large_frame() {
    let server = standard();
    let prefix = mixed_text(150_000);
    let mut message = prefix.as_bytes().to_vec();
    message.extend_from_slice(b"\xED\xBF\xBF");
    message.extend_from_slice(mixed_text(50_000).as_bytes());
    let path = "/utf8/fail-fast/one-large-frame";
    let mut peer = server.connect(path);
    let withheld = send_until(
        &mut peer,
        &message,
        &[message.len()],
        prefix.len() + 1,
        &[8_192, 3],
    );
    assert!(withheld > 50_000);
    peer.expect_failure(1007);
    server.assert_failed(path, 1007);
}

#[test]
fn a_control_frame_between_the_halves_of_a_code_point_keeps_the_utf8_state() {
    let server = standard();
    // "κ" (CE BA) split over two fragments with a Ping between: valid.
    let path = "/utf8/split-around-ping/valid";
    let mut peer = server.connect(path);
    peer.send_together(&[
        Frame::text(b"\xCE").fin(false),
        Frame::ping("mid"),
        Frame::continuation(b"\xBA"),
    ]);
    peer.expect_pong("mid");
    peer.expect_text("κ");
    peer.close_normally();

    // CE then 'A': the Ping is answered, then the text fails with 1007 at
    // the 'A', with the final fragment withheld.
    let path = "/utf8/split-around-ping/invalid";
    let mut peer = server.connect(path);
    peer.send_together(&[
        Frame::text(b"\xCE").fin(false),
        Frame::ping("mid"),
        Frame::continuation(b"A").fin(false),
    ]);
    peer.expect_pong("mid");
    peer.expect_failure(1007);
    assert!(server.messages(path).is_empty());
    server.assert_failed(path, 1007);
}
