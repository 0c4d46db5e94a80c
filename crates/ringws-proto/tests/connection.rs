//! The connection state machine: receiving, obligations, the closing
//! handshake, limits and sending, in both roles.

mod wire;

use std::borrow::Cow;

use ringws_proto::connection::{Config, Connection, Event, State, MAX_UNCONSUMED_INPUT};
use ringws_proto::error::SendError;
use ringws_proto::frame::{Opcode, Role};
use ringws_proto::{MaskSeed, ProtocolError};
use wire::*;

const ROLES: [Role; 2] = [Role::Server, Role::Client];

fn open(role: Role) -> Connection {
    Connection::new(role, Config::default())
}

fn with_config(role: Role, config: Config) -> Connection {
    Connection::new(role, config)
}

// ---------------------------------------------------------------- receiving

#[test]
fn whole_single_frame_messages_are_borrowed_from_the_input() {
    for role in ROLES {
        let mut conn = open(role);
        let mut wire = frame_to(role, true, Opcode::Text, "héllo".as_bytes());
        wire.extend(frame_to(role, true, Opcode::Binary, &[0, 1, 2, 255]));
        let text_len = frame_to(role, true, Opcode::Text, "héllo".as_bytes()).len();

        let read = conn.read(&mut wire);
        assert_eq!(read.consumed, text_len);
        match read.event {
            Some(Event::Text(Cow::Borrowed(text))) => assert_eq!(text, "héllo"),
            other => panic!("{role:?}: expected borrowed text, got {other:?}"),
        }
        let rest_len = wire.len() - text_len;
        let read = conn.read(&mut wire[text_len..]);
        assert_eq!(read.consumed, rest_len);
        match read.event {
            Some(Event::Binary(Cow::Borrowed(bytes))) => assert_eq!(bytes, &[0, 1, 2, 255]),
            other => panic!("{role:?}: expected borrowed binary, got {other:?}"),
        }
        assert_eq!(
            conn.read(&mut []),
            ringws_proto::connection::Read {
                consumed: 0,
                event: None
            }
        );
        assert!(conn.pending_output().is_empty());
    }
}

#[test]
fn payload_is_unmasked_in_place() {
    let mut conn = open(Role::Server);
    let mut wire = frame_to(Role::Server, true, Opcode::Binary, b"abcdefgh");
    let read = conn.read(&mut wire);
    assert_eq!(
        read.event,
        Some(Event::Binary(Cow::Borrowed(&b"abcdefgh"[..])))
    );
    assert_eq!(
        &wire[6..],
        b"abcdefgh",
        "the receive buffer now holds clear bytes"
    );
}

#[test]
fn a_frame_straddling_buffers_is_assembled_and_moved_out() {
    for role in ROLES {
        let mut conn = open(role);
        let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let wire = frame_to(role, true, Opcode::Binary, &payload);
        let mut first = wire[..500].to_vec();
        let read = conn.read(&mut first);
        assert_eq!(
            read,
            ringws_proto::connection::Read {
                consumed: 500,
                event: None
            }
        );
        assert_eq!(conn.buffered_input(), 500 - (wire.len() - payload.len()));
        let mut second = wire[500..].to_vec();
        let second_len = second.len();
        let read = conn.read(&mut second);
        assert_eq!(read.consumed, second_len);
        match read.event {
            Some(Event::Binary(Cow::Owned(bytes))) => assert_eq!(bytes, payload),
            other => panic!("{role:?}: expected owned binary, got {other:?}"),
        }
        assert_eq!(
            conn.buffered_input(),
            0,
            "an idle connection keeps no receive buffer"
        );
    }
}

#[test]
fn incomplete_headers_and_control_frames_are_left_for_the_caller() {
    let mut conn = open(Role::Server);
    let ping = frame_to(Role::Server, true, Opcode::Ping, &[7; 125]);
    assert_eq!(ping.len(), MAX_UNCONSUMED_INPUT);
    for cut in 0..ping.len() {
        let mut prefix = ping[..cut].to_vec();
        let read = conn.read(&mut prefix);
        assert_eq!(read.consumed, 0, "cut at {cut}");
        assert_eq!(read.event, None);
        assert_eq!(prefix, ping[..cut], "unconsumed bytes are left untouched");
    }
    let mut whole = ping.clone();
    let read = conn.read(&mut whole);
    assert_eq!(read.consumed, ping.len());
    assert_eq!(read.event, Some(Event::Ping(&[7; 125][..])));
}

#[test]
fn fragmented_message_with_interleaved_control_frames() {
    for role in ROLES {
        let mut conn = open(role);
        let mut wire = frame_to(role, false, Opcode::Text, b"Hello, ");
        wire.extend(frame_to(role, true, Opcode::Ping, b"p1"));
        wire.extend(frame_to(role, false, Opcode::Continuation, b"wide "));
        wire.extend(frame_to(role, true, Opcode::Pong, b"p2"));
        wire.extend(frame_to(role, true, Opcode::Continuation, b"world"));
        wire.extend(frame_to(role, true, Opcode::Binary, b"next"));
        assert_eq!(
            feed(&mut conn, &wire),
            vec![
                Got::Ping(b"p1".to_vec()),
                Got::Pong(b"p2".to_vec()),
                Got::Text("Hello, wide world".to_owned()),
                Got::Binary(b"next".to_vec()),
            ]
        );
        let sent = take_sent(&mut conn);
        assert_eq!(sent.len(), 1, "{role:?}: one Pong for one Ping");
        assert_eq!(sent[0].opcode, Opcode::Pong);
        assert_eq!(sent[0].payload, b"p1");
        assert_eq!(sent[0].masked, role == Role::Client);
    }
}

#[test]
fn empty_fragments_and_empty_messages() {
    let mut conn = open(Role::Server);
    let mut wire = frame_to(Role::Server, false, Opcode::Binary, b"");
    wire.extend(frame_to(Role::Server, false, Opcode::Continuation, b""));
    wire.extend(frame_to(Role::Server, true, Opcode::Continuation, b""));
    wire.extend(frame_to(Role::Server, true, Opcode::Text, b""));
    assert_eq!(
        feed(&mut conn, &wire),
        vec![Got::Binary(vec![]), Got::Text(String::new())]
    );
}

#[test]
fn the_number_of_fragments_is_not_limited_only_the_message_size() {
    // A message of 200,000 empty continuation frames under a 4-byte limit:
    // accepted, and nothing but the four bytes kept for it.
    const FRAGMENTS: usize = 200_000;
    let config = Config {
        max_frame_size: 4,
        max_message_size: 4,
        ..Config::default()
    };
    let mut conn = with_config(Role::Server, config);
    let empty = frame_to(Role::Server, false, Opcode::Continuation, b"");
    let mut wire = frame_to(Role::Server, false, Opcode::Text, b"");
    wire.reserve(empty.len() * FRAGMENTS + 16);
    for _ in 0..FRAGMENTS {
        wire.extend_from_slice(&empty);
    }
    wire.extend(frame_to(Role::Server, true, Opcode::Continuation, b"done"));
    let started = std::time::Instant::now();
    assert_eq!(feed(&mut conn, &wire), vec![Got::Text("done".to_owned())]);
    // Generous for a debug build on a loaded machine; a release build takes
    // about 10 ns a fragment.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(conn.pending_output().is_empty());
}

#[test]
fn code_point_split_across_fragments() {
    // "€" is E2 82 AC; "😀" is F0 9F 98 80.
    let text = "a€b😀c";
    let bytes = text.as_bytes();
    for role in ROLES {
        for split in 1..bytes.len() {
            let mut conn = open(role);
            let mut wire = frame_to(role, false, Opcode::Text, &bytes[..split]);
            wire.extend(frame_to(role, true, Opcode::Continuation, &bytes[split..]));
            assert_eq!(
                feed(&mut conn, &wire),
                vec![Got::Text(text.to_owned())],
                "split {split}"
            );
        }
    }
}

#[test]
fn code_point_split_across_buffers() {
    let text = "€😀€😀";
    for role in ROLES {
        let wire = frame_to(role, true, Opcode::Text, text.as_bytes());
        for cut in 1..wire.len() {
            let mut conn = open(role);
            assert_eq!(
                feed_split(&mut conn, &wire, &[cut]),
                vec![Got::Text(text.to_owned())],
                "{role:?} cut {cut}"
            );
        }
    }
}

#[test]
fn invalid_utf8_fails_fast_in_the_middle_of_a_frame() {
    for role in ROLES {
        let mut conn = open(role);
        let mut payload = b"valid start ".to_vec();
        payload.extend_from_slice(&[0xF8, 0x88]); // never valid
        payload.resize(4000, b'x');
        let wire = frame_to(role, true, Opcode::Text, &payload);
        // Only the first 40 bytes of a 4000-byte frame have arrived.
        let mut first = wire[..40].to_vec();
        let read = conn.read(&mut first);
        assert_eq!(
            read.event,
            Some(Event::ProtocolError(ProtocolError::InvalidUtf8))
        );
        assert_eq!(read.consumed, 40);
        let sent = take_sent(&mut conn);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent_close_code(&sent[0]), Some(1007));
        assert_eq!(conn.state(), State::CloseSent);
        assert_eq!(conn.failure(), Some(ProtocolError::InvalidUtf8));
        assert!(conn.should_close_transport());
        // The rest of the frame, and anything after it, is ignored.
        let mut rest = wire[40..].to_vec();
        rest.extend(frame_to(role, true, Opcode::Ping, b""));
        let rest_len = rest.len();
        let read = conn.read(&mut rest);
        assert_eq!((read.consumed, read.event), (rest_len, None));
        assert!(conn.pending_output().is_empty(), "no Pong, no second Close");
    }
}

#[test]
fn invalid_utf8_in_a_fragment_fails_before_the_message_ends() {
    let mut conn = open(Role::Server);
    let mut wire = frame_to(Role::Server, false, Opcode::Text, b"ok");
    wire.extend(frame_to(
        Role::Server,
        false,
        Opcode::Continuation,
        &[0xED, 0xA0, 0x80],
    ));
    assert_eq!(
        feed(&mut conn, &wire),
        vec![Got::Error(ProtocolError::InvalidUtf8)]
    );
}

#[test]
fn text_ending_inside_a_code_point_fails_with_1007() {
    let mut conn = open(Role::Client);
    let mut wire = frame_to(Role::Client, false, Opcode::Text, b"ok");
    wire.extend(frame_to(
        Role::Client,
        true,
        Opcode::Continuation,
        &[0xE2, 0x82],
    ));
    assert_eq!(
        feed(&mut conn, &wire),
        vec![Got::Error(ProtocolError::InvalidUtf8)]
    );
    assert_eq!(sent_close_code(&take_sent(&mut conn)[0]), Some(1007));
}

#[test]
fn oversize_frame_fails_with_1009_from_its_header() {
    for role in ROLES {
        let config = Config {
            max_frame_size: 100,
            ..Config::default()
        };
        let mut conn = with_config(role, config);
        let wire = frame_to(role, true, Opcode::Binary, &[0; 101]);
        // The header alone is enough to refuse it.
        let header_len = wire.len() - 101;
        let mut header = wire[..header_len].to_vec();
        let read = conn.read(&mut header);
        assert_eq!(
            read.event,
            Some(Event::ProtocolError(ProtocolError::FrameTooLarge))
        );
        assert_eq!(sent_close_code(&take_sent(&mut conn)[0]), Some(1009));
        assert_eq!(conn.buffered_input(), 0);
    }
}

#[test]
fn oversize_message_fails_with_1009() {
    for role in ROLES {
        let config = Config {
            max_frame_size: 100,
            max_message_size: 250,
            ..Config::default()
        };
        let mut conn = with_config(role, config.clone());
        let mut wire = frame_to(role, false, Opcode::Binary, &[1; 100]);
        wire.extend(frame_to(role, false, Opcode::Continuation, &[2; 100]));
        wire.extend(frame_to(role, true, Opcode::Continuation, &[3; 51]));
        assert_eq!(
            feed(&mut conn, &wire),
            vec![Got::Error(ProtocolError::MessageTooLarge)]
        );
        assert_eq!(sent_close_code(&take_sent(&mut conn)[0]), Some(1009));

        // Exactly at the limit is fine.
        let mut conn = with_config(role, config);
        let mut wire = frame_to(role, false, Opcode::Binary, &[1; 100]);
        wire.extend(frame_to(role, false, Opcode::Continuation, &[2; 100]));
        wire.extend(frame_to(role, true, Opcode::Continuation, &[3; 50]));
        let events = feed(&mut conn, &wire);
        assert!(matches!(&events[..], [Got::Binary(b)] if b.len() == 250));
    }
}

#[test]
fn sequencing_errors_fail_with_1002() {
    for role in ROLES {
        let mut conn = open(role);
        let wire = frame_to(role, true, Opcode::Continuation, b"orphan");
        assert_eq!(
            feed(&mut conn, &wire),
            vec![Got::Error(ProtocolError::UnexpectedContinuation)]
        );
        assert_eq!(sent_close_code(&take_sent(&mut conn)[0]), Some(1002));

        let mut conn = open(role);
        let mut wire = frame_to(role, false, Opcode::Text, b"first");
        wire.extend(frame_to(role, true, Opcode::Binary, b"second"));
        assert_eq!(
            feed(&mut conn, &wire),
            vec![Got::Error(ProtocolError::ExpectedContinuation)]
        );
        assert_eq!(sent_close_code(&take_sent(&mut conn)[0]), Some(1002));
    }
}

#[test]
fn masking_must_match_the_role() {
    let mut server = open(Role::Server);
    let unmasked = raw_frame(true, Opcode::Text, b"hi", None);
    assert_eq!(
        feed(&mut server, &unmasked),
        vec![Got::Error(ProtocolError::UnmaskedClientFrame)]
    );
    assert_eq!(sent_close_code(&take_sent(&mut server)[0]), Some(1002));

    let mut client = open(Role::Client);
    let masked = raw_frame(true, Opcode::Text, b"hi", Some(KEY));
    assert_eq!(
        feed(&mut client, &masked),
        vec![Got::Error(ProtocolError::MaskedServerFrame)]
    );
    let sent = take_sent(&mut client);
    assert_eq!(sent_close_code(&sent[0]), Some(1002));
    assert!(sent[0].masked, "a client masks its Close too");
}

#[test]
fn header_errors_carry_1002() {
    let cases: [(Vec<u8>, ProtocolError); 4] = [
        (
            vec![0x83, 0x80, 0, 0, 0, 0],
            ProtocolError::ReservedOpcode(3),
        ),
        (vec![0xC1, 0x80, 0, 0, 0, 0], ProtocolError::ReservedBits),
        (
            vec![0x09, 0x80, 0, 0, 0, 0],
            ProtocolError::FragmentedControlFrame,
        ),
        (
            vec![0x89, 0xFE, 0, 126, 0, 0, 0, 0],
            ProtocolError::ControlFrameTooLong,
        ),
    ];
    for (wire, expected) in cases {
        let mut conn = open(Role::Server);
        assert_eq!(feed(&mut conn, &wire), vec![Got::Error(expected)]);
        let sent = take_sent(&mut conn);
        assert_eq!(sent_close_code(&sent[0]), Some(1002));
        // The Close names the problem, within the 123-byte reason limit.
        assert_eq!(
            std::str::from_utf8(&sent[0].payload[2..]).unwrap(),
            expected.to_string()
        );
    }
}

// ---------------------------------------------------------------- obligations

#[test]
fn ping_is_answered_with_an_echoing_pong() {
    for role in ROLES {
        let mut conn = open(role);
        let wire = frame_to(role, true, Opcode::Ping, b"are you there?");
        assert_eq!(
            feed(&mut conn, &wire),
            vec![Got::Ping(b"are you there?".to_vec())]
        );
        let sent = take_sent(&mut conn);
        assert_eq!(
            sent,
            vec![Sent {
                fin: true,
                opcode: Opcode::Pong,
                masked: role == Role::Client,
                payload: b"are you there?".to_vec()
            }]
        );
    }
}

#[test]
fn auto_pong_can_be_turned_off() {
    let config = Config {
        auto_pong: false,
        ..Config::default()
    };
    let mut conn = with_config(Role::Server, config);
    let wire = frame_to(Role::Server, true, Opcode::Ping, b"x");
    assert_eq!(feed(&mut conn, &wire), vec![Got::Ping(b"x".to_vec())]);
    assert!(conn.pending_output().is_empty());
    conn.pong(b"x").unwrap();
    assert_eq!(take_sent(&mut conn)[0].opcode, Opcode::Pong);
}

// ---------------------------------------------------------------- closing

#[test]
fn peer_close_is_echoed_and_completes_the_handshake() {
    for role in ROLES {
        let mut conn = open(role);
        let wire = frame_to(role, true, Opcode::Close, &close_payload(1001, "going"));
        assert_eq!(
            feed(&mut conn, &wire),
            vec![Got::Close(Some(1001), "going".to_owned())]
        );
        assert_eq!(conn.state(), State::Closed);
        let sent = take_sent(&mut conn);
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0].payload,
            1001u16.to_be_bytes(),
            "code echoed, no reason"
        );
        // The server closes TCP first; the client waits for it.
        assert_eq!(conn.should_close_transport(), role == Role::Server);
    }
}

#[test]
fn empty_close_gets_an_empty_close() {
    for role in ROLES {
        let mut conn = open(role);
        let wire = frame_to(role, true, Opcode::Close, b"");
        assert_eq!(
            feed(&mut conn, &wire),
            vec![Got::Close(None, String::new())]
        );
        let sent = take_sent(&mut conn);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].opcode, Opcode::Close);
        assert!(sent[0].payload.is_empty(), "1005 is never sent");
        assert_eq!(conn.state(), State::Closed);
    }
}

#[test]
fn without_auto_reply_the_application_answers_the_close() {
    let config = Config {
        auto_close_reply: false,
        ..Config::default()
    };
    let mut conn = with_config(Role::Server, config);
    let wire = frame_to(Role::Server, true, Opcode::Close, &close_payload(1000, ""));
    assert_eq!(
        feed(&mut conn, &wire),
        vec![Got::Close(Some(1000), String::new())]
    );
    assert_eq!(conn.state(), State::CloseReceived);
    assert!(conn.pending_output().is_empty());
    assert!(!conn.should_close_transport());
    // Data may still be sent before our Close (e.g. to finish a message).
    conn.send_text("last words").unwrap();
    conn.close(1000, "done").unwrap();
    assert_eq!(conn.state(), State::Closed);
    assert!(conn.should_close_transport());
    let sent = take_sent(&mut conn);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].opcode, Opcode::Text);
    assert_eq!(sent[1].payload, close_payload(1000, "done"));
    assert_eq!(conn.send_text("more"), Err(SendError::Closing));
}

#[test]
fn data_after_the_peers_close_is_discarded() {
    let config = Config {
        auto_close_reply: false,
        ..Config::default()
    };
    for auto in [true, false] {
        let config = Config {
            auto_close_reply: auto,
            ..config.clone()
        };
        let mut conn = with_config(Role::Server, config);
        let mut wire = frame_to(Role::Server, true, Opcode::Close, &close_payload(1000, ""));
        wire.extend(frame_to(Role::Server, true, Opcode::Text, b"too late"));
        wire.extend(frame_to(Role::Server, true, Opcode::Ping, b""));
        wire.extend([0xFF, 0xFF, 0xFF]); // even garbage
        assert_eq!(
            feed(&mut conn, &wire),
            vec![Got::Close(Some(1000), String::new())]
        );
        let sent = take_sent(&mut conn);
        assert_eq!(
            sent.len(),
            usize::from(auto),
            "only the Close reply, no Pong"
        );
    }
}

#[test]
fn our_close_then_theirs_completes_without_a_second_close() {
    for role in ROLES {
        let mut conn = open(role);
        conn.close(1000, "bye").unwrap();
        assert_eq!(conn.state(), State::CloseSent);
        let sent = take_sent(&mut conn);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].payload, close_payload(1000, "bye"));
        assert!(!conn.should_close_transport());

        // Data still arrives until the peer's Close, and is delivered.
        let mut wire = frame_to(role, true, Opcode::Text, b"in flight");
        wire.extend(frame_to(role, true, Opcode::Ping, b"no answer"));
        wire.extend(frame_to(
            role,
            true,
            Opcode::Close,
            &close_payload(1000, ""),
        ));
        assert_eq!(
            feed(&mut conn, &wire),
            vec![
                Got::Text("in flight".to_owned()),
                Got::Ping(b"no answer".to_vec()),
                Got::Close(Some(1000), String::new()),
            ]
        );
        assert_eq!(conn.state(), State::Closed);
        assert!(
            conn.pending_output().is_empty(),
            "no Pong and no second Close after ours"
        );
        assert_eq!(conn.should_close_transport(), role == Role::Server);
    }
}

#[test]
fn simultaneous_closes_complete_the_handshake() {
    // Both ends send Close at once; each receives the other's as an answer.
    let mut server = open(Role::Server);
    let mut client = open(Role::Client);
    server.close(1001, "server leaving").unwrap();
    client.close(1000, "client leaving").unwrap();
    let mut to_client = Vec::new();
    server.take_output(&mut to_client);
    let mut to_server = Vec::new();
    client.take_output(&mut to_server);
    assert_eq!(
        feed(&mut server, &to_server),
        vec![Got::Close(Some(1000), "client leaving".to_owned())]
    );
    assert_eq!(
        feed(&mut client, &to_client),
        vec![Got::Close(Some(1001), "server leaving".to_owned())]
    );
    for conn in [&server, &client] {
        assert_eq!(conn.state(), State::Closed);
        assert!(conn.pending_output().is_empty());
    }
    assert!(server.should_close_transport());
    assert!(!client.should_close_transport());
}

#[test]
fn nothing_is_sent_after_our_close() {
    let mut conn = open(Role::Client);
    conn.send_frame(Opcode::Text, b"par", false).unwrap();
    conn.close(1000, "").unwrap();
    assert_eq!(conn.send_text("x"), Err(SendError::Closing));
    assert_eq!(conn.send_binary(b"x"), Err(SendError::Closing));
    assert_eq!(
        conn.send_frame(Opcode::Continuation, b"tial", true),
        Err(SendError::Closing)
    );
    assert_eq!(
        conn.data_frame_head(Opcode::Binary, 10, true),
        Err(SendError::Closing)
    );
    assert_eq!(conn.ping(b""), Err(SendError::Closing));
    assert_eq!(conn.pong(b""), Err(SendError::Closing));
    assert_eq!(conn.close(1000, ""), Err(SendError::Closing));
    let sent = take_sent(&mut conn);
    assert_eq!(
        sent.iter().map(|f| f.opcode).collect::<Vec<_>>(),
        [Opcode::Text, Opcode::Close]
    );
}

#[test]
fn close_arguments_are_validated_and_nothing_is_sent_on_error() {
    for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX] {
        let mut conn = open(Role::Server);
        assert!(
            matches!(conn.close(code, ""), Err(SendError::InvalidClose(_))),
            "{code}"
        );
        assert_eq!(conn.state(), State::Open);
        assert!(conn.pending_output().is_empty());
    }
    let mut conn = open(Role::Server);
    let too_long = "r".repeat(124);
    assert!(matches!(
        conn.close(1000, &too_long),
        Err(SendError::InvalidClose(_))
    ));
    assert_eq!(conn.state(), State::Open);
    let longest = "é".repeat(61) + "r"; // 123 bytes
    conn.close(4000, &longest).unwrap();
    let sent = take_sent(&mut conn);
    assert_eq!(
        sent[0].payload,
        close_payload(4000, &longest),
        "never truncated"
    );
    assert_eq!(sent[0].payload.len(), 125);
}

#[test]
fn invalid_close_frames_from_the_peer() {
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (vec![0x03], 1002),              // one byte
        (close_payload(1005, ""), 1002), // never on the wire
        (close_payload(1006, ""), 1002),
        (close_payload(1015, ""), 1002),
        (close_payload(999, ""), 1002),
        (close_payload(2000, ""), 1002),
        (close_payload(5000, ""), 1002),
        ([0x03, 0xE8, 0xC0, 0xAF].to_vec(), 1007), // 1000 + invalid UTF-8
    ];
    for (payload, code) in cases {
        for role in ROLES {
            let mut conn = open(role);
            let events = feed(&mut conn, &frame_to(role, true, Opcode::Close, &payload));
            match &events[..] {
                [Got::Error(err)] => assert_eq!(err.close_code(), code, "{payload:02x?}"),
                other => panic!("{payload:02x?}: {other:?}"),
            }
            let sent = take_sent(&mut conn);
            assert_eq!(sent.len(), 1);
            assert_eq!(sent_close_code(&sent[0]), Some(code));
            assert_eq!(conn.state(), State::CloseSent);
        }
    }
}

#[test]
fn valid_peer_close_codes_are_accepted() {
    for code in [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999,
    ] {
        let mut conn = open(Role::Server);
        let wire = frame_to(Role::Server, true, Opcode::Close, &close_payload(code, "r"));
        assert_eq!(
            feed(&mut conn, &wire),
            vec![Got::Close(Some(code), "r".to_owned())]
        );
        assert_eq!(sent_close_code(&take_sent(&mut conn)[0]), Some(code));
    }
}

#[test]
fn a_protocol_error_after_our_close_sends_no_second_close() {
    let mut conn = open(Role::Server);
    conn.close(1000, "").unwrap();
    conn.take_output(&mut Vec::new());
    let wire = raw_frame(true, Opcode::Text, b"unmasked", None);
    assert_eq!(
        feed(&mut conn, &wire),
        vec![Got::Error(ProtocolError::UnmaskedClientFrame)]
    );
    assert!(conn.pending_output().is_empty());
    assert_eq!(conn.state(), State::CloseSent);
    assert!(conn.should_close_transport());
}

#[test]
fn states_only_move_forward() {
    let mut conn = open(Role::Server);
    assert_eq!(conn.state(), State::Open);
    conn.close(1000, "").unwrap();
    assert_eq!(conn.state(), State::CloseSent);
    let wire = frame_to(Role::Server, true, Opcode::Close, b"");
    feed(&mut conn, &wire);
    assert_eq!(conn.state(), State::Closed);
    feed(&mut conn, &frame_to(Role::Server, true, Opcode::Close, b""));
    assert_eq!(conn.state(), State::Closed);
    assert!(State::Open < State::CloseSent && State::CloseSent < State::Closed);
    assert!(State::Open < State::CloseReceived && State::CloseReceived < State::Closed);
}

// ---------------------------------------------------------------- sending

#[test]
fn server_frames_are_unmasked_and_client_frames_masked_with_fresh_keys() {
    let mut server = open(Role::Server);
    server.send_binary(&[9; 300]).unwrap();
    let mut out = Vec::new();
    server.take_output(&mut out);
    assert_eq!(&out[..4], &[0x82, 126, 0x01, 0x2C]);
    assert_eq!(&out[4..], &[9; 300]);

    let config = Config {
        mask_seed: MaskSeed::from_bytes([42; 32]),
        ..Config::default()
    };
    let mut client = with_config(Role::Client, config.clone());
    let mut keys = Vec::new();
    for _ in 0..16 {
        let head = client.data_frame_head(Opcode::Binary, 4, true).unwrap();
        keys.push(head.mask().unwrap());
    }
    let mut distinct = keys.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), keys.len(), "a fresh key per frame");
    // The same seed gives the same keys (no hidden OS randomness).
    let mut again = with_config(Role::Client, config);
    let first = again
        .data_frame_head(Opcode::Binary, 4, true)
        .unwrap()
        .mask()
        .unwrap();
    assert_eq!(first, keys[0]);
    let other_seed = Config {
        mask_seed: MaskSeed::from_bytes([43; 32]),
        ..Config::default()
    };
    let mut other = with_config(Role::Client, other_seed);
    assert_ne!(
        other
            .data_frame_head(Opcode::Binary, 4, true)
            .unwrap()
            .mask()
            .unwrap(),
        keys[0]
    );
}

/// The key of the client's next data frame.
fn next_key(client: &mut Connection) -> [u8; 4] {
    client
        .data_frame_head(Opcode::Binary, 1, true)
        .unwrap()
        .mask()
        .unwrap()
}

#[test]
fn a_cloned_client_goes_on_with_the_same_keys() {
    let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
    let mut client = with_config(
        Role::Client,
        Config {
            mask_seed: MaskSeed::from_bytes(seed),
            ..Config::default()
        },
    );
    // Clone at the start, inside, at the end of and just past the 64 keys
    // the generator makes at a time.
    let mut drawn = 0;
    for clone_at in [0, 1, 63, 64, 65, 130] {
        while drawn < clone_at {
            next_key(&mut client);
            drawn += 1;
        }
        let mut copy = client.clone();
        let original: Vec<[u8; 4]> = (0..70).map(|_| next_key(&mut client)).collect();
        let cloned: Vec<[u8; 4]> = (0..70).map(|_| next_key(&mut copy)).collect();
        assert_eq!(original, cloned, "cloned after {clone_at} keys");
        drawn += 70;
    }
}

#[test]
fn debug_output_does_not_show_the_mask_seed() {
    let config = Config {
        mask_seed: MaskSeed::from_bytes([0xAB; 32]),
        ..Config::default()
    };
    let client = with_config(Role::Client, config.clone());
    for shown in [format!("{config:?}"), format!("{client:?}")] {
        assert!(shown.contains("mask"), "{shown}");
        // 0xAB is 171: the bytes would show as `[171, 171, ...]`.
        assert!(!shown.contains("171"), "{shown}");
    }
}

#[test]
fn frame_head_lets_the_caller_send_its_own_payload() {
    let mut client = open(Role::Client);
    let mut server = open(Role::Server);
    let mut payload = b"zero-copy payload".to_vec();
    let head = client
        .data_frame_head(Opcode::Binary, payload.len(), true)
        .unwrap();
    head.mask_payload(&mut payload, 0);
    assert_ne!(payload, b"zero-copy payload");
    let mut wire = head.as_bytes().to_vec();
    wire.extend_from_slice(&payload);
    assert_eq!(
        feed(&mut server, &wire),
        vec![Got::Binary(b"zero-copy payload".to_vec())]
    );
}

#[test]
fn mask_payload_works_piece_by_piece() {
    let mut client = open(Role::Client);
    let clear = b"split across two buffers".to_vec();
    let head = client
        .data_frame_head(Opcode::Text, clear.len(), true)
        .unwrap();
    let (mut a, mut b) = (clear[..7].to_vec(), clear[7..].to_vec());
    head.mask_payload(&mut a, 0);
    head.mask_payload(&mut b, 7);
    let mut wire = head.as_bytes().to_vec();
    wire.extend(a);
    wire.extend(b);
    let mut server = open(Role::Server);
    assert_eq!(
        feed(&mut server, &wire),
        vec![Got::Text("split across two buffers".to_owned())]
    );
}

#[test]
fn fragmented_sending_is_sequenced() {
    let mut conn = open(Role::Server);
    assert_eq!(
        conn.send_frame(Opcode::Continuation, b"x", true),
        Err(SendError::NoMessageInProgress)
    );
    assert_eq!(
        conn.send_frame(Opcode::Ping, b"x", true),
        Err(SendError::NotADataOpcode)
    );
    conn.send_frame(Opcode::Text, &"€".as_bytes()[..1], false)
        .unwrap();
    assert_eq!(conn.send_text("new"), Err(SendError::MessageInProgress));
    assert_eq!(
        conn.send_frame(Opcode::Binary, b"", true),
        Err(SendError::MessageInProgress)
    );
    conn.ping(b"between").unwrap();
    conn.send_frame(Opcode::Continuation, &"€".as_bytes()[1..], true)
        .unwrap();
    conn.send_text("after").unwrap();

    let mut wire = Vec::new();
    conn.take_output(&mut wire);
    let mut client = open(Role::Client);
    assert_eq!(
        feed(&mut client, &wire),
        vec![
            Got::Ping(b"between".to_vec()),
            Got::Text("€".to_owned()),
            Got::Text("after".to_owned())
        ]
    );
}

#[test]
fn a_frame_head_for_a_length_no_header_can_carry_is_refused() {
    // The 64-bit length field holds at most 2^63 - 1 (RFC 6455 §5.2).
    let largest = (u64::MAX >> 1) as usize;
    for role in ROLES {
        for too_long in [largest + 1, usize::MAX] {
            let mut conn = open(role);
            assert_eq!(
                conn.data_frame_head(Opcode::Binary, too_long, false),
                Err(SendError::PayloadTooLong)
            );
            // Nothing changed: no message was started.
            assert_eq!(
                conn.send_frame(Opcode::Continuation, b"x", true),
                Err(SendError::NoMessageInProgress)
            );
        }
        let mut conn = open(role);
        let head = conn.data_frame_head(Opcode::Binary, largest, true).unwrap();
        let bytes = head.as_bytes();
        assert_eq!(bytes[1] & 0x7F, 127, "64-bit length form");
        assert_eq!(bytes[2..10], (largest as u64).to_be_bytes());
    }
}

#[test]
fn control_payloads_over_125_bytes_are_refused() {
    let mut conn = open(Role::Client);
    assert_eq!(conn.ping(&[0; 126]), Err(SendError::ControlPayloadTooLong));
    assert_eq!(conn.pong(&[0; 126]), Err(SendError::ControlPayloadTooLong));
    assert!(conn.pending_output().is_empty());
    conn.ping(&[0; 125]).unwrap();
    assert_eq!(take_sent(&mut conn)[0].payload.len(), 125);
}

#[test]
fn output_is_consumed_in_pieces() {
    let mut conn = open(Role::Server);
    conn.send_text("abc").unwrap();
    conn.send_text("def").unwrap();
    let all = conn.pending_output().to_vec();
    assert_eq!(all.len(), 10);
    conn.consume_output(3);
    assert_eq!(conn.pending_output(), &all[3..]);
    conn.consume_output(100);
    assert!(conn.pending_output().is_empty());
    conn.send_binary(&[1]).unwrap();
    assert_eq!(conn.pending_output(), &[0x82, 1, 1]);
}

#[test]
fn consuming_more_than_is_pending_after_a_partial_send_empties_the_queue() {
    let mut conn = open(Role::Server);
    conn.send_text("abc").unwrap();
    conn.consume_output(1);
    // "Everything": no overflow, and the byte already sent is not offered again.
    conn.consume_output(usize::MAX);
    assert!(conn.pending_output().is_empty());
    conn.send_binary(&[1]).unwrap();
    assert_eq!(conn.pending_output(), &[0x82, 1, 1]);
}

#[test]
fn a_client_and_a_server_talk() {
    let mut client = with_config(
        Role::Client,
        Config {
            mask_seed: MaskSeed::from_bytes([7; 32]),
            ..Config::default()
        },
    );
    let mut server = open(Role::Server);
    client.send_text("hello").unwrap();
    client.send_binary(&[0xFF; 70_000]).unwrap();
    client.ping(b"hb").unwrap();
    let mut wire = Vec::new();
    client.take_output(&mut wire);
    let events = feed_split(&mut server, &wire, &[3, 100, 4096, 65_536]);
    assert_eq!(events.len(), 3);
    assert_eq!(events[0], Got::Text("hello".to_owned()));
    assert_eq!(events[1], Got::Binary(vec![0xFF; 70_000]));
    assert_eq!(events[2], Got::Ping(b"hb".to_vec()));
    let mut reply = Vec::new();
    server.take_output(&mut reply);
    assert_eq!(feed(&mut client, &reply), vec![Got::Pong(b"hb".to_vec())]);
}
