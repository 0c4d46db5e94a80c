//! Received bytes interleaved with API calls (send, fragments, ping, pong,
//! close, partial flushes) on one `Connection`, while a peer `Connection` of
//! the other role reads everything it sends.
//!
//! Invariants checked after every step:
//! - states only move forward (Open → CloseSent/CloseReceived → Closed), and
//!   a failure, once recorded, never changes;
//! - after our Close every send fails with `SendError::Closing`;
//! - every protocol error carries 1002, 1007 or 1009, and at most one occurs;
//! - our output is a valid frame stream: nothing at all follows our Close, and
//!   the peer never finds a protocol error in it;
//! - the peer receives exactly the messages whose sends succeeded.
//!
//! Input layout: byte 0 flags (bit 0 client role, bit 1 no auto Close reply,
//! bit 2 no auto Pong, bit 3 small limits), then operations, each a tag byte
//! followed by its arguments; a length byte `n` is followed by `n` bytes.
//!
//! | tag % 9 | operation                                                 |
//! |---------|-----------------------------------------------------------|
//! | 0       | receive `n` bytes                                         |
//! | 1       | send_text (bytes made UTF-8 lossily)                      |
//! | 2       | send_binary                                               |
//! | 3       | send_frame: opcode byte (%3: text, binary, continuation), |
//! |         | fin byte (bit 0), then `n` bytes (made UTF-8)             |
//! | 4       | ping                                                      |
//! | 5       | pong                                                      |
//! | 6       | close: 2-byte code (big-endian), reason (UTF-8 lossily)   |
//! | 7       | flush the first `k` pending bytes (one byte `k`)          |
//! | 8       | flush everything                                          |
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringws_proto::connection::{Config, Connection, Event, State};
use ringws_proto::error::SendError;
use ringws_proto::frame::{Opcode, Role};
use ringws_proto::MaskSeed;

/// Reads the operation bytes; running out of input ends the run.
struct Ops<'a>(&'a [u8]);

impl<'a> Ops<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::from(self.byte()?).min(self.0.len());
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(taken)
    }
}

fn rank(state: State) -> u8 {
    match state {
        State::Open => 0,
        State::CloseSent | State::CloseReceived => 1,
        State::Closed => 2,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Message {
    Text(String),
    Binary(Vec<u8>),
}

/// The other end: reads our output and records the messages it gets.
struct Peer {
    connection: Connection,
    carried: Vec<u8>,
    messages: Vec<Message>,
    saw_close: bool,
}

impl Peer {
    fn receive(&mut self, bytes: &[u8]) {
        assert!(!self.saw_close || bytes.is_empty(), "bytes after our Close");
        let mut buffer = std::mem::take(&mut self.carried);
        buffer.extend_from_slice(bytes);
        let mut pos = 0;
        let len = buffer.len();
        for _ in 0..=len {
            let read = self.connection.read(&mut buffer[pos..]);
            pos += read.consumed;
            let Some(event) = read.event else { break };
            assert!(!self.saw_close, "a frame after our Close: {event:?}");
            match event {
                Event::Text(text) => self.messages.push(Message::Text(text.into_owned())),
                Event::Binary(bytes) => self.messages.push(Message::Binary(bytes.into_owned())),
                Event::Ping(_) | Event::Pong(_) => {}
                Event::CloseReceived { .. } => {
                    assert_eq!(pos, len, "bytes after our Close");
                    self.saw_close = true;
                }
                Event::ProtocolError(err) => panic!("our output broke the protocol: {err:?}"),
            }
        }
        self.carried = buffer[pos..].to_vec();
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, ops)) = data.split_first() else {
        return;
    };
    let role = if flags & 1 != 0 {
        Role::Client
    } else {
        Role::Server
    };
    let peer_role = match role {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let config = Config {
        max_frame_size: if flags & 8 != 0 { 64 } else { 1 << 20 },
        max_message_size: if flags & 8 != 0 { 200 } else { 1 << 20 },
        mask_seed: MaskSeed::from_bytes([7; 32]),
        auto_close_reply: flags & 2 == 0,
        auto_pong: flags & 4 == 0,
    };
    let mut us = Connection::new(role, config);
    let mut peer = Peer {
        connection: Connection::new(
            peer_role,
            Config {
                auto_close_reply: false,
                mask_seed: MaskSeed::from_bytes([11; 32]),
                ..Config::default()
            },
        ),
        carried: Vec::new(),
        messages: Vec::new(),
        saw_close: false,
    };
    let mut expected: Vec<Message> = Vec::new();
    let mut sending: Option<Message> = None;
    let mut carried: Vec<u8> = Vec::new();
    let mut errors = 0;
    let mut ops = Ops(ops);

    while let Some(tag) = ops.byte() {
        let state_before = us.state();
        let failure_before = us.failure();
        let closing = us.close_sent();
        let result: Option<Result<(), SendError>> = match tag % 9 {
            0 => {
                let Some(bytes) = ops.bytes() else { break };
                let mut buffer = std::mem::take(&mut carried);
                buffer.extend_from_slice(bytes);
                let mut pos = 0;
                for _ in 0..=buffer.len() {
                    let read = us.read(&mut buffer[pos..]);
                    pos += read.consumed;
                    let Some(event) = read.event else { break };
                    if let Event::ProtocolError(err) = event {
                        assert!(matches!(err.close_code(), 1002 | 1007 | 1009), "{err:?}");
                        errors += 1;
                    }
                }
                carried = buffer[pos..].to_vec();
                None
            }
            1 => {
                let Some(bytes) = ops.bytes() else { break };
                let text = String::from_utf8_lossy(bytes).into_owned();
                let result = us.send_text(&text);
                if result.is_ok() {
                    expected.push(Message::Text(text));
                }
                Some(result)
            }
            2 => {
                let Some(bytes) = ops.bytes() else { break };
                let result = us.send_binary(bytes);
                if result.is_ok() {
                    expected.push(Message::Binary(bytes.to_vec()));
                }
                Some(result)
            }
            3 => {
                let (Some(opcode), Some(fin)) = (ops.byte(), ops.byte()) else {
                    break;
                };
                let Some(bytes) = ops.bytes() else { break };
                let opcode =
                    [Opcode::Text, Opcode::Binary, Opcode::Continuation][usize::from(opcode % 3)];
                let fin = fin & 1 != 0;
                let text = String::from_utf8_lossy(bytes).into_owned();
                let result = us.send_frame(opcode, text.as_bytes(), fin);
                if result.is_ok() {
                    let mut message = match (opcode, sending.take()) {
                        (Opcode::Text, None) => Message::Text(String::new()),
                        (Opcode::Binary, None) => Message::Binary(Vec::new()),
                        (Opcode::Continuation, Some(open)) => open,
                        other => panic!("send_frame accepted an out-of-sequence frame: {other:?}"),
                    };
                    match &mut message {
                        Message::Text(t) => t.push_str(&text),
                        Message::Binary(b) => b.extend_from_slice(text.as_bytes()),
                    }
                    if fin {
                        expected.push(message);
                    } else {
                        sending = Some(message);
                    }
                }
                Some(result)
            }
            4 => {
                let Some(bytes) = ops.bytes() else { break };
                Some(us.ping(bytes))
            }
            5 => {
                let Some(bytes) = ops.bytes() else { break };
                Some(us.pong(bytes))
            }
            6 => {
                let (Some(hi), Some(lo)) = (ops.byte(), ops.byte()) else {
                    break;
                };
                let Some(bytes) = ops.bytes() else { break };
                let reason = String::from_utf8_lossy(bytes).into_owned();
                let result = us.close(u16::from_be_bytes([hi, lo]), &reason);
                if result.is_err() && !closing {
                    assert_eq!(us.state(), state_before, "a refused close changes nothing");
                }
                Some(result)
            }
            7 => {
                let Some(k) = ops.byte() else { break };
                let k = usize::from(k).min(us.pending_output().len());
                peer.receive(&us.pending_output()[..k]);
                us.consume_output(k);
                None
            }
            _ => {
                let mut out = Vec::new();
                us.take_output(&mut out);
                peer.receive(&out);
                None
            }
        };

        if closing {
            if let Some(result) = result {
                assert_eq!(result, Err(SendError::Closing), "a send after our Close");
            }
        }
        let state_after = us.state();
        assert!(
            rank(state_after) >= rank(state_before),
            "{state_before:?} -> {state_after:?}"
        );
        if rank(state_after) == rank(state_before) && rank(state_before) == 1 {
            assert_eq!(state_after, state_before, "sideways move");
        }
        if failure_before.is_some() {
            assert_eq!(us.failure(), failure_before);
        }
        assert!(errors <= 1);
    }

    let mut out = Vec::new();
    us.take_output(&mut out);
    peer.receive(&out);
    assert_eq!(peer.messages, expected);
});
