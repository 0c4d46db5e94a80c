//! RFC 6455 conformance of the state machine in the client role, organised
//! like the sections of the Autobahn|Testsuite: scripted server bytes go in
//! (whole, or split over many receive buffers exactly as a caller would
//! present them), and each case checks the events, every frame the client
//! queues (masked, with varying keys, minimal lengths, RSV clear), the
//! state of the closing handshake and who closes TCP.

use std::borrow::Cow;
use std::collections::HashSet;

use ringws_proto::close::CloseError;
use ringws_proto::connection::{Config, Connection, Event, State, MAX_UNCONSUMED_INPUT};
use ringws_proto::error::SendError;
use ringws_proto::frame::{Opcode, Role};
use ringws_proto::{MaskSeed, ProtocolError};

// ------------------------------------------------------------------ harness

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// An event, owned so it can outlive the input it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
    Error(ProtocolError),
}

impl Seen {
    fn text(text: &str) -> Seen {
        Seen::Text(text.to_owned())
    }
}

/// A frame the client queued, decoded strictly and unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    fin: bool,
    opcode: u8,
    key: [u8; 4],
    payload: Vec<u8>,
}

/// The caller's side of the receive loop: input is presented, consumed
/// bytes dropped, an incomplete tail kept and presented again with more.
struct Client {
    conn: Connection,
    held: Vec<u8>,
}

impl Client {
    fn new() -> Client {
        Client::with(Config::default())
    }

    fn with(config: Config) -> Client {
        Client {
            conn: Connection::new(Role::Client, config),
            held: Vec::new(),
        }
    }

    /// One receive buffer: `bytes` after what was held back.
    fn feed(&mut self, bytes: &[u8]) -> Vec<Seen> {
        self.held.extend_from_slice(bytes);
        let mut seen = Vec::new();
        let mut pos = 0;
        loop {
            let read = self.conn.read(&mut self.held[pos..]);
            pos += read.consumed;
            let Some(event) = read.event else { break };
            seen.push(match event {
                Event::Text(text) => Seen::Text(text.into_owned()),
                Event::Binary(bytes) => Seen::Binary(bytes.into_owned()),
                Event::Ping(payload) => Seen::Ping(payload.to_vec()),
                Event::Pong(payload) => Seen::Pong(payload.to_vec()),
                Event::CloseReceived { code, reason } => {
                    Seen::Close(code.map(|code| code.0), reason.to_owned())
                }
                Event::ProtocolError(error) => Seen::Error(error),
            });
        }
        self.held.drain(..pos);
        assert!(
            self.held.len() < MAX_UNCONSUMED_INPUT,
            "{} bytes left unconsumed",
            self.held.len()
        );
        seen
    }

    /// `bytes` split into receive buffers of the given sizes (cycled).
    fn feed_in(&mut self, bytes: &[u8], sizes: &[usize]) -> Vec<Seen> {
        let mut seen = Vec::new();
        let mut rest = bytes;
        for &size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at(size.clamp(1, rest.len()));
            seen.extend(self.feed(piece));
            rest = tail;
        }
        seen
    }

    /// Takes every queued frame (see [`parse_client_frames`]).
    fn sent(&mut self) -> Vec<Sent> {
        let mut out = Vec::new();
        self.conn.take_output(&mut out);
        assert!(self.conn.pending_output().is_empty());
        parse_client_frames(&out)
    }

    /// Exactly these frames were queued, as `(opcode, payload)`, unfragmented.
    fn expect_sent(&mut self, expected: &[(u8, &[u8])]) {
        let sent: Vec<(bool, u8, Vec<u8>)> = self
            .sent()
            .into_iter()
            .map(|frame| (frame.fin, frame.opcode, frame.payload))
            .collect();
        let expected: Vec<(bool, u8, Vec<u8>)> = expected
            .iter()
            .map(|(opcode, payload)| (true, *opcode, payload.to_vec()))
            .collect();
        assert_eq!(sent, expected);
    }

    /// The connection failed with `error`: one Close with its code queued,
    /// CloseSent, TCP to be closed, and all further input ignored.
    fn expect_failed(&mut self, seen: &[Seen], error: ProtocolError) {
        assert_eq!(seen.last(), Some(&Seen::Error(error)), "events: {seen:?}");
        assert_eq!(
            seen.iter().filter(|s| matches!(s, Seen::Error(_))).count(),
            1
        );
        let sent = self.sent();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0].opcode, CLOSE);
        let payload = &sent[0].payload;
        assert_eq!(
            u16::from_be_bytes([payload[0], payload[1]]),
            error.close_code()
        );
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
        assert_eq!(self.conn.failure(), Some(error));
        assert_eq!(self.conn.state(), State::CloseSent);
        assert!(self.conn.should_close_transport());
        // Nothing more is heard or answered.
        let after = frame(PING, b"ignored");
        assert_eq!(self.feed(&after), []);
        assert!(self.sent().is_empty());
    }
}

/// How a server frame's length is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Length {
    Minimal,
    Extended16,
    Extended64,
}

/// A server frame: unmasked unless `mask` is given.
fn server_frame(
    fin: bool,
    rsv: u8,
    opcode: u8,
    payload: &[u8],
    length: Length,
    mask: Option<[u8; 4]>,
) -> Vec<u8> {
    let mut bytes = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    let length = match length {
        Length::Minimal if len < 126 => None,
        Length::Minimal if len <= 0xFFFF => Some(Length::Extended16),
        Length::Minimal => Some(Length::Extended64),
        other => Some(other),
    };
    match length {
        None => bytes.push(mask_bit | len as u8),
        Some(Length::Extended16) => {
            bytes.push(mask_bit | 126);
            bytes.extend_from_slice(&(len as u16).to_be_bytes());
        }
        Some(_) => {
            bytes.push(mask_bit | 127);
            bytes.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    let start = bytes.len() + if mask.is_some() { 4 } else { 0 };
    if let Some(key) = mask {
        bytes.extend_from_slice(&key);
    }
    bytes.extend_from_slice(payload);
    if let Some(key) = mask {
        for (i, byte) in bytes[start..].iter_mut().enumerate() {
            *byte ^= key[i % 4];
        }
    }
    bytes
}

/// An unfragmented, unmasked server frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    server_frame(true, 0, opcode, payload, Length::Minimal, None)
}

fn fragment(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    server_frame(fin, 0, opcode, payload, Length::Minimal, None)
}

fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    frame(CLOSE, &payload)
}

/// `payload` as a fragmented message with pieces of the given sizes (cycled).
fn fragmented(opcode: u8, payload: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut parts = Vec::new();
    let mut rest = payload;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at(size.clamp(1, rest.len()));
        parts.push(piece);
        rest = tail;
    }
    if parts.is_empty() {
        parts.push(&[]);
    }
    let last = parts.len() - 1;
    parts
        .iter()
        .enumerate()
        .flat_map(|(i, part)| fragment(i == last, if i == 0 { opcode } else { CONTINUATION }, part))
        .collect()
}

fn concat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

fn mixed_text(len: usize) -> String {
    let pattern = ['a', 'é', '€', '𝄞', ' ', 'ß', '字', '😀', 'z'];
    let mut text = String::with_capacity(len);
    for c in pattern.iter().cycle() {
        if text.len() == len {
            break;
        }
        text.push(if text.len() + c.len_utf8() > len {
            'x'
        } else {
            *c
        });
    }
    text
}

fn pattern_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 131 + i / 251) as u8).collect()
}

/// Receive-buffer sizes that split frames everywhere.
const BUFFERS: [usize; 6] = [1, 7, 2, 4096, 3, 16_384];

// ------------------------------------------------------------------ framing

mod framing {
    use super::*;

    const LENGTHS: [usize; 11] = [0, 1, 125, 126, 127, 65_535, 65_536, 65_537, 1, 0, 300_000];

    #[test]
    fn server_messages_of_every_length_form_arrive_whole_and_split() {
        for buffers in [&[usize::MAX][..], &BUFFERS[..]] {
            let mut client = Client::new();
            for len in LENGTHS {
                let text = mixed_text(len);
                let bytes = pattern_bytes(len);
                let wire = concat(&[frame(TEXT, text.as_bytes()), frame(BINARY, &bytes)]);
                assert_eq!(
                    client.feed_in(&wire, buffers),
                    [Seen::Text(text), Seen::Binary(bytes)]
                );
            }
            assert!(client.sent().is_empty());
            assert_eq!(client.conn.state(), State::Open);
        }
    }

    #[test]
    fn a_masked_server_frame_fails_with_1002() {
        // §5.1: "A client MUST close a connection if it detects a masked
        // frame."
        for (opcode, payload) in [
            (TEXT, &b"masked"[..]),
            (BINARY, &[][..]),
            (PING, &b"p"[..]),
            (CLOSE, &[0x03, 0xE8][..]),
        ] {
            let mut client = Client::new();
            let wire = concat(&[
                frame(TEXT, b"before"),
                server_frame(
                    true,
                    0,
                    opcode,
                    payload,
                    Length::Minimal,
                    Some([1, 2, 3, 4]),
                ),
                frame(TEXT, b"after"),
            ]);
            let seen = client.feed(&wire);
            assert_eq!(seen[0], Seen::text("before"));
            assert_eq!(seen.len(), 2);
            client.expect_failed(&seen, ProtocolError::MaskedServerFrame);
        }
    }

    #[test]
    fn a_non_minimal_length_fails_with_1002() {
        for (payload_len, length) in [
            (0, Length::Extended16),
            (125, Length::Extended16),
            (200, Length::Extended64),
            (65_535, Length::Extended64),
        ] {
            let mut client = Client::new();
            let wire = server_frame(true, 0, BINARY, &vec![0; payload_len], length, None);
            let seen = client.feed_in(&wire, &BUFFERS);
            client.expect_failed(&seen, ProtocolError::NonMinimalLength);
        }
    }

    #[test]
    fn a_64_bit_length_with_the_top_bit_set_fails_with_1002() {
        let mut client = Client::new();
        let mut header = vec![0x82, 127];
        header.extend_from_slice(&(1u64 << 63 | 5).to_be_bytes());
        // Only the header, one byte at a time: the first length byte decides.
        let seen = client.feed_in(&header, &[1]);
        client.expect_failed(&seen, ProtocolError::LengthTopBitSet);
    }

    #[test]
    fn client_frames_are_masked_with_keys_that_vary() {
        let mut client = Client::with(Config {
            mask_seed: MaskSeed::from_bytes([0x5E; 32]),
            ..Config::default()
        });
        let mut expected = Vec::new();
        for i in 0..200usize {
            let len = [0, 1, 125, 126, 65_535, 65_536, 3, 9][i % 8];
            match i % 4 {
                0 => {
                    let text = mixed_text(len);
                    client.conn.send_text(&text).unwrap();
                    expected.push((TEXT, text.into_bytes()));
                }
                1 => {
                    let bytes = pattern_bytes(len);
                    client.conn.send_binary(&bytes).unwrap();
                    expected.push((BINARY, bytes));
                }
                2 => {
                    client.conn.ping(&[i as u8; 4]).unwrap();
                    expected.push((PING, vec![i as u8; 4]));
                }
                _ => {
                    client.conn.pong(&[]).unwrap();
                    expected.push((PONG, Vec::new()));
                }
            }
        }
        let sent = client.sent();
        let got: Vec<(u8, Vec<u8>)> = sent
            .iter()
            .map(|frame| (frame.opcode, frame.payload.clone()))
            .collect();
        assert_eq!(got, expected);
        assert!(sent.iter().all(|frame| frame.fin));
        let keys: HashSet<[u8; 4]> = sent.iter().map(|frame| frame.key).collect();
        assert_eq!(keys.len(), sent.len(), "every frame gets a fresh key");
        assert!(!keys.contains(&[0; 4]));
    }

    /// The keys of `count` frames of every kind a client sends, in order.
    fn keys_of_sent_frames(seed: MaskSeed, count: usize) -> Vec<[u8; 4]> {
        let mut client = Client::with(Config {
            mask_seed: seed,
            ..Config::default()
        });
        for i in 0..count {
            match i % 4 {
                0 => client.conn.send_binary(b"x").unwrap(),
                1 => client.conn.send_text("y").unwrap(),
                2 => client.conn.ping(b"p").unwrap(),
                _ => {
                    // The automatic Pong is masked from the same keys.
                    let ping = server_frame(true, 0, PING, b"q", Length::Minimal, None);
                    assert_eq!(client.feed(&ping), vec![Seen::Ping(b"q".to_vec())]);
                }
            }
        }
        let keys: Vec<[u8; 4]> = client.sent().into_iter().map(|frame| frame.key).collect();
        assert_eq!(keys.len(), count);
        keys
    }

    #[test]
    fn the_mask_seed_decides_the_key_sequence() {
        let seed = |byte: u8| MaskSeed::from_bytes([byte; 32]);
        assert_eq!(
            keys_of_sent_frames(seed(1), 16),
            keys_of_sent_frames(seed(1), 16)
        );
        assert_ne!(
            keys_of_sent_frames(seed(1), 16),
            keys_of_sent_frames(seed(2), 16)
        );
        assert_ne!(
            keys_of_sent_frames(seed(0), 16),
            keys_of_sent_frames(seed(1), 16)
        );
        // Seeds that differ in one bit of the last byte give unrelated keys.
        let mut last_bit = [1; 32];
        last_bit[31] ^= 0x80;
        let (one, other) = (
            keys_of_sent_frames(seed(1), 16),
            keys_of_sent_frames(MaskSeed::from_bytes(last_bit), 16),
        );
        assert!(one.iter().zip(&other).all(|(a, b)| a != b));
    }

    #[test]
    fn masking_keys_are_the_chacha20_keystream_of_the_seed() {
        // Known answer, independent of any implementation: the ChaCha20
        // keystream for an all-zero key and nonce, block 0 (RFC 8439
        // appendix A.1, test vector #1).
        let zero_key_block: [u8; 64] = [
            0x76, 0xb8, 0xe0, 0xad, 0xa0, 0xf1, 0x3d, 0x90, 0x40, 0x5d, 0x6a, 0xe5, 0x53, 0x86,
            0xbd, 0x28, 0xbd, 0xd2, 0x19, 0xb8, 0xa0, 0x8d, 0xed, 0x1a, 0xa8, 0x36, 0xef, 0xcc,
            0x8b, 0x77, 0x0d, 0xc7, 0xda, 0x41, 0x59, 0x7c, 0x51, 0x57, 0x48, 0x8d, 0x77, 0x24,
            0xe0, 0x3f, 0xb8, 0xd8, 0x4a, 0x37, 0x6a, 0x43, 0xb8, 0xf4, 0x15, 0x18, 0xa1, 0x1c,
            0xc3, 0x87, 0xb6, 0x69, 0xb2, 0xee, 0x65, 0x86,
        ];
        let keys = keys_of_sent_frames(MaskSeed::default(), 16);
        assert_eq!(keys.concat(), zero_key_block);

        // Any seed: the crate's own ChaCha20 output, over enough keys to
        // refill the 256-byte keystream buffer several times.
        use chacha20::rand_core::{Rng, SeedableRng};
        let seed: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(73) ^ 0xA5);
        let mut keystream = vec![0u8; 4 * 300];
        chacha20::ChaCha20Rng::from_seed(seed).fill_bytes(&mut keystream);
        let keys = keys_of_sent_frames(MaskSeed::from_bytes(seed), 300);
        assert_eq!(keys.concat(), keystream);
    }

    #[test]
    fn a_zero_copy_frame_matches_the_copied_frame() {
        let mut client = Client::new();
        let payload = pattern_bytes(70_000);
        let head = client
            .conn
            .data_frame_head(Opcode::Binary, payload.len(), true)
            .unwrap();
        let mut wire = head.as_bytes().to_vec();
        let mut body = payload.clone();
        // Masked in two pieces, as from two buffers.
        let (first, second) = body.split_at_mut(12_345);
        head.mask_payload(first, 0);
        head.mask_payload(second, 12_345);
        wire.extend_from_slice(&body);
        let zero_copy = parse_client_frames(&wire);
        client.conn.send_binary(&payload).unwrap();
        let copied = client.sent();
        assert_eq!(zero_copy.len(), 1);
        assert_eq!(copied.len(), 1);
        assert_eq!(Some(zero_copy[0].key), head.mask());
        assert_ne!(zero_copy[0].key, copied[0].key);
        for frame in [&zero_copy[0], &copied[0]] {
            assert_eq!((frame.fin, frame.opcode), (true, BINARY));
            assert_eq!(frame.payload, payload);
        }
    }
}

/// Decodes client frames strictly, checking what every client frame must
/// be: masked (§5.3), RSV clear, its length in the minimal form (§5.2).
fn parse_client_frames(bytes: &[u8]) -> Vec<Sent> {
    let mut frames = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        assert!(rest.len() >= 2, "truncated frame header");
        let (first, second) = (rest[0], rest[1]);
        assert_eq!(first & 0x70, 0, "RSV bits set on a client frame");
        assert_eq!(second & 0x80, 0x80, "client frame is not masked");
        let (len, mut at) = match second & 0x7F {
            126 => {
                let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
                assert!(len >= 126, "non-minimal 16-bit length {len}");
                (len, 4)
            }
            127 => {
                let mut be = [0u8; 8];
                be.copy_from_slice(&rest[2..10]);
                let len = u64::from_be_bytes(be);
                assert!(len > 0xFFFF, "non-minimal 64-bit length {len}");
                (usize::try_from(len).unwrap(), 10)
            }
            len => (usize::from(len), 2),
        };
        let key = [rest[at], rest[at + 1], rest[at + 2], rest[at + 3]];
        at += 4;
        let payload = rest[at..at + len]
            .iter()
            .enumerate()
            .map(|(i, byte)| byte ^ key[i % 4])
            .collect();
        frames.push(Sent {
            fin: first & 0x80 != 0,
            opcode: first & 0x0F,
            key,
            payload,
        });
        rest = &rest[at + len..];
    }
    frames
}

// -------------------------------------------------------------------- pings

mod pings {
    use super::*;

    #[test]
    fn server_pings_up_to_125_bytes_get_masked_identical_pongs() {
        let mut client = Client::new();
        for payload in [Vec::new(), b"Hello, world!".to_vec(), pattern_bytes(125)] {
            for buffers in [&[usize::MAX][..], &[1][..]] {
                let seen = client.feed_in(&frame(PING, &payload), buffers);
                assert_eq!(seen, [Seen::Ping(payload.clone())]);
                client.expect_sent(&[(PONG, &payload)]);
            }
        }
    }

    #[test]
    fn a_126_byte_ping_fails_with_1002_from_its_header() {
        let mut client = Client::new();
        let wire = frame(PING, &pattern_bytes(126));
        let seen = client.feed(&wire[..2]);
        client.expect_failed(&seen, ProtocolError::ControlFrameTooLong);
    }

    #[test]
    fn unsolicited_pongs_are_reported_and_not_answered() {
        let mut client = Client::new();
        let wire = concat(&[
            frame(PONG, b""),
            frame(PONG, b"unsolicited"),
            frame(PING, b"x"),
        ]);
        assert_eq!(
            client.feed(&wire),
            [
                Seen::Pong(Vec::new()),
                Seen::Pong(b"unsolicited".to_vec()),
                Seen::Ping(b"x".to_vec())
            ]
        );
        client.expect_sent(&[(PONG, b"x")]);
    }

    #[test]
    fn pings_are_answered_in_order_between_messages() {
        let mut client = Client::new();
        let wire = concat(&[
            frame(TEXT, b"one"),
            frame(PING, b"p1"),
            frame(BINARY, &pattern_bytes(70_000)),
            frame(PING, b"p2"),
        ]);
        assert_eq!(
            client.feed_in(&wire, &BUFFERS),
            [
                Seen::text("one"),
                Seen::Ping(b"p1".to_vec()),
                Seen::Binary(pattern_bytes(70_000)),
                Seen::Ping(b"p2".to_vec())
            ]
        );
        client.expect_sent(&[(PONG, b"p1"), (PONG, b"p2")]);
    }

    #[test]
    fn without_auto_pong_pings_are_only_reported() {
        let mut client = Client::with(Config {
            auto_pong: false,
            ..Config::default()
        });
        assert_eq!(
            client.feed(&frame(PING, b"quiet")),
            [Seen::Ping(b"quiet".to_vec())]
        );
        assert!(client.sent().is_empty());
    }

    #[test]
    fn after_our_close_pings_are_not_answered() {
        // §5.5.1: after sending a Close, an endpoint sends no further frames.
        let mut client = Client::new();
        client.conn.close(1000, "").unwrap();
        client.expect_sent(&[(CLOSE, &1000u16.to_be_bytes())]);
        assert_eq!(
            client.feed(&frame(PING, b"late")),
            [Seen::Ping(b"late".to_vec())]
        );
        assert!(client.sent().is_empty());
        assert_eq!(client.conn.ping(b"x"), Err(SendError::Closing));
        assert_eq!(client.conn.pong(b"x"), Err(SendError::Closing));
    }
}

// ------------------------------------------------------- reserved bits, opcodes

mod reserved {
    use super::*;

    #[test]
    fn every_rsv_value_on_every_frame_kind_fails_with_1002() {
        for rsv in 1..=7u8 {
            for opcode in [TEXT, BINARY, PING, PONG, CLOSE] {
                let mut client = Client::new();
                let wire = concat(&[
                    frame(TEXT, b"before"),
                    server_frame(true, rsv, opcode, b"", Length::Minimal, None),
                    frame(TEXT, b"after"),
                ]);
                let seen = client.feed(&wire);
                assert_eq!(seen[0], Seen::text("before"));
                client.expect_failed(&seen, ProtocolError::ReservedBits);
            }
            // On a continuation.
            let mut client = Client::new();
            let wire = concat(&[
                fragment(false, TEXT, b"frag"),
                server_frame(true, rsv, CONTINUATION, b"ment", Length::Minimal, None),
            ]);
            let seen = client.feed_in(&wire, &[1]);
            client.expect_failed(&seen, ProtocolError::ReservedBits);
        }
    }

    #[test]
    fn every_reserved_opcode_fails_with_1002() {
        for opcode in (0x3..=0x7).chain(0xB..=0xF) {
            for payload in [&b""[..], b"reserved"] {
                let mut client = Client::new();
                let wire = concat(&[
                    frame(TEXT, b"before"),
                    frame(opcode, payload),
                    frame(PING, b""),
                ]);
                let seen = client.feed(&wire);
                assert_eq!(seen[0], Seen::text("before"));
                client.expect_failed(&seen, ProtocolError::ReservedOpcode(opcode));
            }
        }
    }
}

// ------------------------------------------------------------ fragmentation

mod fragmentation {
    use super::*;

    #[test]
    fn fragmented_messages_with_control_frames_between_are_assembled() {
        let wire = concat(&[
            fragment(false, TEXT, "frag".as_bytes()),
            frame(PING, b"between"),
            fragment(false, CONTINUATION, b""),
            frame(PONG, b"pong"),
            fragment(true, CONTINUATION, "ménted".as_bytes()),
            fragment(false, BINARY, &[1, 2]),
            fragment(true, CONTINUATION, &[3]),
        ]);
        for buffers in [&[usize::MAX][..], &BUFFERS[..], &[1][..]] {
            let mut client = Client::new();
            assert_eq!(
                client.feed_in(&wire, buffers),
                [
                    Seen::Ping(b"between".to_vec()),
                    Seen::Pong(b"pong".to_vec()),
                    Seen::text("fragménted"),
                    Seen::Binary(vec![1, 2, 3])
                ]
            );
            client.expect_sent(&[(PONG, b"between")]);
        }
    }

    #[test]
    fn a_pong_is_queued_before_the_fragmented_message_completes() {
        let mut client = Client::new();
        assert_eq!(client.feed(&fragment(false, TEXT, b"part")), []);
        assert_eq!(
            client.feed(&frame(PING, b"now")),
            [Seen::Ping(b"now".to_vec())]
        );
        client.expect_sent(&[(PONG, b"now")]);
        assert_eq!(
            client.feed(&fragment(true, CONTINUATION, b"s")),
            [Seen::text("parts")]
        );
    }

    #[test]
    fn fragmented_control_frames_fail_with_1002() {
        for opcode in [PING, PONG, CLOSE] {
            let mut client = Client::new();
            let wire = concat(&[
                fragment(false, opcode, b"f1"),
                fragment(true, CONTINUATION, b"f2"),
            ]);
            let seen = client.feed(&wire);
            client.expect_failed(&seen, ProtocolError::FragmentedControlFrame);
        }
    }

    #[test]
    fn a_continuation_without_a_message_fails_with_1002() {
        for wire in [
            fragment(true, CONTINUATION, b"orphan"),
            fragment(false, CONTINUATION, b"orphan"),
            concat(&[frame(TEXT, b"done"), fragment(true, CONTINUATION, b"more")]),
        ] {
            let mut client = Client::new();
            let seen = client.feed(&wire);
            client.expect_failed(&seen, ProtocolError::UnexpectedContinuation);
        }
    }

    #[test]
    fn a_new_data_frame_inside_a_fragmented_message_fails_with_1002() {
        for (first, intruder) in [
            (TEXT, TEXT),
            (TEXT, BINARY),
            (BINARY, TEXT),
            (BINARY, BINARY),
        ] {
            for intruder_fin in [true, false] {
                let mut client = Client::new();
                let wire = concat(&[
                    fragment(false, first, b"fragment1"),
                    fragment(intruder_fin, intruder, b"fragment2"),
                ]);
                let seen = client.feed(&wire);
                assert_eq!(seen.len(), 1);
                client.expect_failed(&seen, ProtocolError::ExpectedContinuation);
            }
        }
    }
}

// -------------------------------------------------------------------- UTF-8

mod utf8 {
    use super::*;

    #[test]
    fn valid_texts_split_at_every_byte_boundary_arrive_whole() {
        let text =
            "κόσμε \u{0080}\u{07FF}\u{0800}\u{D7FF}\u{E000}\u{FFFD}\u{FFFF}\u{10000}\u{10FFFF} 𝄞😀";
        let single = frame(TEXT, text.as_bytes());
        let one_byte_fragments = fragmented(TEXT, text.as_bytes(), &[1]);
        for wire in [single, one_byte_fragments] {
            for split in 0..=wire.len() {
                let mut client = Client::new();
                let mut seen = client.feed(&wire[..split]);
                seen.extend(client.feed(&wire[split..]));
                assert_eq!(seen, [Seen::text(text)], "split at {split}");
            }
        }
    }

    #[test]
    fn a_control_frame_between_the_halves_of_a_code_point_keeps_the_utf8_state() {
        let mut client = Client::new();
        let wire = concat(&[
            fragment(false, TEXT, b"\xCE"),
            frame(PING, b"mid"),
            fragment(true, CONTINUATION, b"\xBA"),
        ]);
        assert_eq!(
            client.feed_in(&wire, &[1]),
            [Seen::Ping(b"mid".to_vec()), Seen::text("κ")]
        );
        client.expect_sent(&[(PONG, b"mid")]);

        let mut client = Client::new();
        let start = concat(&[fragment(false, TEXT, b"\xCE"), frame(PING, b"mid")]);
        assert_eq!(client.feed(&start), [Seen::Ping(b"mid".to_vec())]);
        client.expect_sent(&[(PONG, b"mid")]);
        let seen = client.feed(&fragment(false, CONTINUATION, b"A"));
        client.expect_failed(&seen, ProtocolError::InvalidUtf8);
    }

    /// Invalid sequences and the index of the byte that proves them invalid.
    const INVALID: [(&[u8], usize); 12] = [
        (b"\x80", 0),
        (b"\xC0\x80", 0),
        (b"\xC1\xBF", 0),
        (b"\xE0\x80\x80", 1),
        (b"\xE0\x9F\xBF", 1),
        (b"\xED\xA0\x80", 1),
        (b"\xED\xBF\xBF", 1),
        (b"\xF0\x8F\xBF\xBF", 1),
        (b"\xF4\x90\x80\x80", 1),
        (b"\xF5\x80\x80\x80", 0),
        (b"\xFF", 0),
        (b"\xE2\x82A", 2),
    ];

    fn message_with(invalid: &[u8]) -> Vec<u8> {
        let mut message = "κόσμε".as_bytes().to_vec();
        message.extend_from_slice(invalid);
        message.extend_from_slice(b"edited");
        message
    }

    #[test]
    fn invalid_utf8_fails_with_1007_whole_or_fragmented() {
        for (invalid, _) in INVALID {
            let message = message_with(invalid);
            for wire in [frame(TEXT, &message), fragmented(TEXT, &message, &[1, 2])] {
                let mut client = Client::new();
                let seen = client.feed(&wire);
                client.expect_failed(&seen, ProtocolError::InvalidUtf8);
            }
        }
        // A truncated sequence at the very end of the message.
        for truncated in [&b"\xC2"[..], b"\xE2\x82", b"\xF0\x9F\x98"] {
            let mut message = b"ok ".to_vec();
            message.extend_from_slice(truncated);
            let mut client = Client::new();
            let seen = client.feed(&fragmented(TEXT, &message, &[2]));
            client.expect_failed(&seen, ProtocolError::InvalidUtf8);
        }
    }

    #[test]
    fn fail_fast_in_the_buffer_that_holds_the_deciding_byte() {
        // A long message in frames of varied sizes, fed in receive buffers
        // of varied sizes: no event until the buffer holding the deciding
        // byte, the error in that buffer, although the frame and the
        // message are far from finished.
        let prefix = mixed_text(100_001);
        for (invalid, decided_at) in INVALID {
            let mut message = prefix.as_bytes().to_vec();
            message.extend_from_slice(invalid);
            message.extend_from_slice(mixed_text(50_000).as_bytes());
            let deciding = prefix.len() + decided_at;
            for (frames, buffers) in [
                (&[message.len()][..], &[4096usize][..]),
                (&[9_973, 1, 16_384, 3][..], &[1000, 1, 16_384][..]),
            ] {
                let wire = fragmented(TEXT, &message, frames);
                let mut client = Client::new();
                let mut wire_pos = 0;
                let mut payload_seen = 0;
                let mut failed_in = None;
                for &size in buffers.iter().cycle() {
                    if wire_pos == wire.len() {
                        break;
                    }
                    let end = (wire_pos + size).min(wire.len());
                    let seen = client.feed(&wire[wire_pos..end]);
                    let before = payload_seen;
                    payload_seen += payload_bytes_in(&wire, wire_pos, end);
                    wire_pos = end;
                    if !seen.is_empty() {
                        client.expect_failed(&seen, ProtocolError::InvalidUtf8);
                        failed_in = Some(before..payload_seen);
                        break;
                    }
                }
                let failed_in = failed_in.expect("the invalid text fails");
                assert!(
                    failed_in.contains(&deciding),
                    "failed in the buffer holding payload bytes {failed_in:?}; \
                     the deciding byte is at {deciding}"
                );
                assert!(wire_pos < wire.len(), "the message was not finished");
            }
        }
    }

    /// How many payload bytes `wire[start..end]` holds (headers excluded),
    /// for a wire of unmasked frames.
    fn payload_bytes_in(wire: &[u8], start: usize, end: usize) -> usize {
        let mut count = 0;
        let mut pos = 0;
        while pos < wire.len() && pos < end {
            let (len, header) = match wire[pos + 1] & 0x7F {
                126 => (
                    usize::from(u16::from_be_bytes([wire[pos + 2], wire[pos + 3]])),
                    4,
                ),
                127 => {
                    let mut be = [0u8; 8];
                    be.copy_from_slice(&wire[pos + 2..pos + 10]);
                    (usize::try_from(u64::from_be_bytes(be)).unwrap(), 10)
                }
                len => (usize::from(len), 2),
            };
            let payload = pos + header..pos + header + len;
            let overlap_start = payload.start.max(start);
            let overlap_end = payload.end.min(end);
            count += overlap_end.saturating_sub(overlap_start);
            pos = payload.end;
        }
        count
    }

    #[test]
    fn fail_fast_with_the_rest_of_the_frame_withheld() {
        for (invalid, decided_at) in INVALID {
            let message = message_with(invalid);
            let wire = frame(TEXT, &message);
            let header = wire.len() - message.len();
            let deciding = header + "κόσμε".len() + decided_at;
            let mut client = Client::new();
            assert_eq!(
                client.feed(&wire[..deciding]),
                [],
                "before the deciding byte"
            );
            let seen = client.feed(&wire[deciding..=deciding]);
            client.expect_failed(&seen, ProtocolError::InvalidUtf8);
        }
    }
}

// ------------------------------------------------------------------- limits

mod limits {
    use super::*;

    const LIMIT: usize = 10_000;

    fn limited() -> Client {
        Client::with(Config {
            max_frame_size: LIMIT,
            max_message_size: 2 * LIMIT,
            ..Config::default()
        })
    }

    #[test]
    fn frames_and_messages_at_the_limits_are_accepted() {
        let mut client = limited();
        let bytes = pattern_bytes(LIMIT);
        let text = mixed_text(2 * LIMIT);
        let wire = concat(&[
            frame(BINARY, &bytes),
            fragmented(TEXT, text.as_bytes(), &[LIMIT]),
        ]);
        assert_eq!(
            client.feed_in(&wire, &BUFFERS),
            [Seen::Binary(bytes), Seen::Text(text)]
        );
    }

    #[test]
    fn over_the_frame_limit_fails_with_1009_from_the_header() {
        let mut client = limited();
        let wire = frame(BINARY, &pattern_bytes(LIMIT + 1));
        let seen = client.feed(&wire[..4]);
        client.expect_failed(&seen, ProtocolError::FrameTooLarge);
    }

    #[test]
    fn over_the_message_limit_fails_with_1009_at_the_crossing_header() {
        let mut client = limited();
        let first = fragment(false, TEXT, mixed_text(LIMIT).as_bytes());
        let second = fragment(false, CONTINUATION, mixed_text(LIMIT).as_bytes());
        assert_eq!(client.feed_in(&concat(&[first, second]), &BUFFERS), []);
        let third = fragment(true, CONTINUATION, b"x");
        let seen = client.feed(&third[..2]);
        client.expect_failed(&seen, ProtocolError::MessageTooLarge);
    }

    #[test]
    fn the_largest_64_bit_length_fails_with_1009() {
        let mut client = Client::new();
        let mut header = vec![0x82, 127];
        header.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
        let seen = client.feed(&header);
        client.expect_failed(&seen, ProtocolError::FrameTooLarge);
    }

    #[test]
    fn the_default_limit_takes_16_mib_and_refuses_one_byte_more() {
        let mut client = Client::new();
        let payload = pattern_bytes(16 << 20);
        let wire = frame(BINARY, &payload);
        assert_eq!(
            client.feed_in(&wire, &[65_536, 1, 16_384]),
            [Seen::Binary(payload)]
        );
        let mut header = vec![0x82, 127];
        header.extend_from_slice(&((16u64 << 20) + 1).to_be_bytes());
        let seen = client.feed(&header);
        client.expect_failed(&seen, ProtocolError::FrameTooLarge);
    }
}

// -------------------------------------------------------------------- close

mod close {
    use super::*;

    const VALID_CODES: [u16; 16] = [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000,
        4999,
    ];
    const INVALID_CODES: [u16; 14] = [
        0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 10_000, 65_534, 65_535,
    ];

    #[test]
    fn a_server_close_with_a_valid_code_is_echoed_and_the_server_closes_tcp() {
        for code in VALID_CODES {
            let mut client = Client::new();
            let seen = client.feed(&close_frame(code, "bye".as_bytes()));
            assert_eq!(seen, [Seen::Close(Some(code), "bye".to_owned())]);
            client.expect_sent(&[(CLOSE, &code.to_be_bytes())]);
            assert_eq!(client.conn.state(), State::Closed);
            // §7.1.1: the server closes TCP first; the client waits.
            assert!(!client.conn.should_close_transport());
            assert_eq!(client.conn.send_text("late"), Err(SendError::Closing));
        }
    }

    #[test]
    fn an_empty_server_close_is_answered_with_an_empty_close() {
        let mut client = Client::new();
        assert_eq!(
            client.feed(&frame(CLOSE, b"")),
            [Seen::Close(None, String::new())]
        );
        client.expect_sent(&[(CLOSE, b"")]);
        assert_eq!(client.conn.state(), State::Closed);
    }

    #[test]
    fn invalid_server_closes_fail_the_connection() {
        for code in INVALID_CODES {
            let mut client = Client::new();
            let seen = client.feed(&close_frame(code, b""));
            client.expect_failed(&seen, ProtocolError::InvalidCloseCode(code));
        }
        let mut client = Client::new();
        let seen = client.feed(&frame(CLOSE, &[0x03]));
        client.expect_failed(&seen, ProtocolError::ClosePayloadTooShort);

        let mut client = Client::new();
        let seen = client.feed(&close_frame(1000, &[b'r'; 124]));
        client.expect_failed(&seen, ProtocolError::ControlFrameTooLong);

        for reason in [&b"\xED\xA0\x80"[..], b"abc\x80", b"cut \xE2\x82", b"\xFF"] {
            let mut client = Client::new();
            let seen = client.feed(&close_frame(1000, reason));
            client.expect_failed(&seen, ProtocolError::InvalidUtf8);
        }
    }

    #[test]
    fn data_after_the_server_close_is_discarded() {
        let mut client = Client::new();
        let wire = concat(&[
            frame(TEXT, b"before"),
            close_frame(1001, b"going away"),
            frame(TEXT, b"after"),
            frame(PING, b"after"),
            vec![0xFF; 16],
        ]);
        assert_eq!(
            client.feed_in(&wire, &BUFFERS),
            [
                Seen::text("before"),
                Seen::Close(Some(1001), "going away".to_owned())
            ]
        );
        client.expect_sent(&[(CLOSE, &1001u16.to_be_bytes())]);
    }

    #[test]
    fn a_client_close_waits_for_the_server_close_and_still_receives_data() {
        let mut client = Client::new();
        client.conn.close(1000, "done").unwrap();
        client.expect_sent(&[(CLOSE, b"\x03\xE8done")]);
        assert_eq!(client.conn.state(), State::CloseSent);
        assert!(!client.conn.should_close_transport());
        // §7.1.2: the server may still send data until its Close.
        let wire = concat(&[
            frame(TEXT, b"in flight"),
            fragment(false, BINARY, &[1]),
            fragment(true, CONTINUATION, &[2]),
            close_frame(1000, b""),
        ]);
        assert_eq!(
            client.feed_in(&wire, &[3]),
            [
                Seen::text("in flight"),
                Seen::Binary(vec![1, 2]),
                Seen::Close(Some(1000), String::new())
            ]
        );
        // No second Close, and the server is the one to close TCP.
        assert!(client.sent().is_empty());
        assert_eq!(client.conn.state(), State::Closed);
        assert!(!client.conn.should_close_transport());
        assert_eq!(client.conn.close(1000, ""), Err(SendError::Closing));
    }

    #[test]
    fn a_server_close_crossing_ours_completes_the_handshake() {
        let mut client = Client::new();
        client.conn.close(4000, "mine").unwrap();
        assert_eq!(
            client.feed(&close_frame(1001, b"theirs")),
            [Seen::Close(Some(1001), "theirs".to_owned())]
        );
        client.expect_sent(&[(CLOSE, b"\x0F\xA0mine")]);
        assert_eq!(client.conn.state(), State::Closed);
    }

    #[test]
    fn without_auto_reply_the_application_answers_the_close() {
        let mut client = Client::with(Config {
            auto_close_reply: false,
            ..Config::default()
        });
        assert_eq!(
            client.feed(&close_frame(1001, b"")),
            [Seen::Close(Some(1001), String::new())]
        );
        assert_eq!(client.conn.state(), State::CloseReceived);
        assert!(client.sent().is_empty());
        // Half-closed: the client may still send, then closes.
        client.conn.send_text("last words").unwrap();
        client.conn.close(1000, "ok").unwrap();
        client.expect_sent(&[(TEXT, b"last words"), (CLOSE, b"\x03\xE8ok")]);
        assert_eq!(client.conn.state(), State::Closed);
        assert!(!client.conn.should_close_transport());
    }

    #[test]
    fn an_application_close_is_validated_and_never_truncated() {
        let mut client = Client::new();
        for code in INVALID_CODES {
            assert_eq!(
                client.conn.close(code, ""),
                Err(SendError::InvalidClose(CloseError::InvalidCode(code)))
            );
        }
        let long = "r".repeat(124);
        assert_eq!(
            client.conn.close(1000, &long),
            Err(SendError::InvalidClose(CloseError::ReasonTooLong(124)))
        );
        assert!(client.sent().is_empty());
        assert_eq!(client.conn.state(), State::Open);
        let longest = "€".repeat(41);
        client.conn.close(4999, &longest).unwrap();
        let mut expected = 4999u16.to_be_bytes().to_vec();
        expected.extend_from_slice(longest.as_bytes());
        client.expect_sent(&[(CLOSE, &expected)]);
    }
}

// --------------------------------------------------------------------- misc

mod misc {
    use super::*;

    #[test]
    fn a_scripted_exchange_split_at_every_byte_boundary_gives_the_same_events() {
        let wire = concat(&[
            frame(TEXT, mixed_text(130).as_bytes()),
            frame(PING, b"split"),
            fragment(false, BINARY, &[1, 2]),
            frame(PONG, b""),
            fragment(true, CONTINUATION, &[3]),
            frame(BINARY, &pattern_bytes(300)),
            close_frame(1000, "fin".as_bytes()),
        ]);
        let expected = [
            Seen::Text(mixed_text(130)),
            Seen::Ping(b"split".to_vec()),
            Seen::Pong(Vec::new()),
            Seen::Binary(vec![1, 2, 3]),
            Seen::Binary(pattern_bytes(300)),
            Seen::Close(Some(1000), "fin".to_owned()),
        ];
        for split in 0..=wire.len() {
            let mut client = Client::new();
            let mut seen = client.feed(&wire[..split]);
            seen.extend(client.feed(&wire[split..]));
            assert_eq!(seen, expected, "split at {split}");
            client.expect_sent(&[(PONG, b"split"), (CLOSE, &1000u16.to_be_bytes())]);
        }
    }

    #[test]
    fn borrowed_and_owned_deliveries_carry_the_same_bytes() {
        // A whole frame in one buffer is lent from it; the same frame split
        // over buffers is assembled and moved out. Both must read the same.
        let text = mixed_text(1000);
        let wire = frame(TEXT, text.as_bytes());
        let mut conn = Connection::new(Role::Client, Config::default());
        let mut whole = wire.clone();
        match conn.read(&mut whole).event {
            Some(Event::Text(Cow::Borrowed(got))) => assert_eq!(got, text),
            other => panic!("expected a borrowed text, got {other:?}"),
        }
        let mut client = Client::new();
        assert_eq!(client.feed_in(&wire, &[500]), [Seen::Text(text)]);
    }
}
