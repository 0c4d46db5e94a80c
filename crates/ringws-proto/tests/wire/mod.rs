//! Helpers shared by the integration tests: building wire frames, driving a
//! `Connection` the way a reactor does, and decoding what it sends.

#![allow(dead_code)]

use ringws_proto::connection::{Connection, Event, MAX_UNCONSUMED_INPUT};
use ringws_proto::frame::{
    decode_header, encode_header, Decoded, FrameHeader, Opcode, Role, MAX_HEADER_LEN,
};
use ringws_proto::mask::unmask;
use ringws_proto::ProtocolError;

pub const KEY: [u8; 4] = [0xA5, 0x3C, 0x0F, 0x71];

/// One frame on the wire; masked (as a client sends) when `mask` is set.
pub fn raw_frame(fin: bool, opcode: Opcode, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let header = FrameHeader {
        fin,
        rsv: 0,
        opcode,
        mask,
        payload_len: payload.len() as u64,
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&header, &mut head);
    let mut wire = head[..n].to_vec();
    let start = wire.len();
    wire.extend_from_slice(payload);
    if let Some(key) = mask {
        unmask(&mut wire[start..], key, 0);
    }
    wire
}

/// A frame as the peer of `receiver` sends it: masked towards a server.
pub fn frame_to(receiver: Role, fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mask = match receiver {
        Role::Server => Some(KEY),
        Role::Client => None,
    };
    raw_frame(fin, opcode, payload, mask)
}

/// A Close payload: code then reason.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// An event with its payload copied out, for comparing runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
    Error(ProtocolError),
}

impl From<Event<'_>> for Got {
    fn from(event: Event<'_>) -> Self {
        match event {
            Event::Text(text) => Got::Text(text.into_owned()),
            Event::Binary(bytes) => Got::Binary(bytes.into_owned()),
            Event::Ping(payload) => Got::Ping(payload.to_vec()),
            Event::Pong(payload) => Got::Pong(payload.to_vec()),
            Event::CloseReceived { code, reason } => {
                Got::Close(code.map(|code| code.0), reason.to_owned())
            }
            Event::ProtocolError(err) => Got::Error(err),
        }
    }
}

/// Feeds `chunks` as successive receive buffers, the way a reactor does:
/// loop on `read` until it has no event, keep the unconsumed tail and put it
/// in front of the next buffer.
pub fn feed_chunks(connection: &mut Connection, chunks: &[&[u8]]) -> Vec<Got> {
    let mut events = Vec::new();
    let mut carried: Vec<u8> = Vec::new();
    for chunk in chunks {
        let mut buffer = std::mem::take(&mut carried);
        buffer.extend_from_slice(chunk);
        let mut pos = 0;
        // Every event consumes at least one byte, so this is bounded.
        for _ in 0..=buffer.len() + 1 {
            let read = connection.read(&mut buffer[pos..]);
            pos += read.consumed;
            match read.event {
                Some(event) => events.push(Got::from(event)),
                None => break,
            }
        }
        let left = buffer.len() - pos;
        assert!(left < MAX_UNCONSUMED_INPUT, "{left} bytes left unconsumed");
        carried = buffer[pos..].to_vec();
    }
    events
}

/// Feeds `wire` split at the given positions.
pub fn feed_split(connection: &mut Connection, wire: &[u8], splits: &[usize]) -> Vec<Got> {
    let mut bounds = vec![0];
    bounds.extend(splits.iter().map(|&s| s.min(wire.len())));
    bounds.push(wire.len());
    bounds.sort_unstable();
    let chunks: Vec<&[u8]> = bounds.windows(2).map(|w| &wire[w[0]..w[1]]).collect();
    feed_chunks(connection, &chunks)
}

/// Feeds `wire` as one buffer.
pub fn feed(connection: &mut Connection, wire: &[u8]) -> Vec<Got> {
    feed_chunks(connection, &[wire])
}

/// A frame the connection sent, decoded and unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub fin: bool,
    pub opcode: Opcode,
    pub masked: bool,
    pub payload: Vec<u8>,
}

/// Decodes every frame in `output`, sent by an endpoint of role `sender`.
/// Panics on anything malformed: our own output must always be valid.
pub fn decode_output(output: &[u8], sender: Role) -> Vec<Sent> {
    let receiver = match sender {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let mut frames = Vec::new();
    let mut pos = 0;
    while pos < output.len() {
        match decode_header(&output[pos..], receiver, 0) {
            Ok(Decoded::Complete { header, header_len }) => {
                let start = pos + header_len;
                let end = start + header.payload_len as usize;
                assert!(end <= output.len(), "output ends inside a frame");
                let mut payload = output[start..end].to_vec();
                if let Some(key) = header.mask {
                    unmask(&mut payload, key, 0);
                }
                frames.push(Sent {
                    fin: header.fin,
                    opcode: header.opcode,
                    masked: header.mask.is_some(),
                    payload,
                });
                pos = end;
            }
            other => panic!("our output is not a valid frame stream: {other:?}"),
        }
    }
    frames
}

/// Drains and decodes the connection's pending output.
pub fn take_sent(connection: &mut Connection) -> Vec<Sent> {
    let mut out = Vec::new();
    connection.take_output(&mut out);
    decode_output(&out, connection.role())
}

/// The status code of a sent Close frame, if it has one.
pub fn sent_close_code(frame: &Sent) -> Option<u16> {
    assert_eq!(frame.opcode, Opcode::Close);
    (frame.payload.len() >= 2).then(|| u16::from_be_bytes([frame.payload[0], frame.payload[1]]))
}
