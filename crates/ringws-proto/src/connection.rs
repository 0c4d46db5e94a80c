//! The per-connection state machine, sans I/O.
//!
//! A [`Connection`] is everything one WebSocket endpoint must remember after
//! the handshake: the frame being received, the message being assembled, the
//! closing handshake, and the frames it owes the peer. It reads no clock, owns
//! no socket, starts no thread and asks the OS for nothing: client masking keys
//! are the ChaCha20 keystream of the 256-bit [`Config::mask_seed`], which the
//! caller draws from the OS.
//!
//! # Receiving
//!
//! The caller hands [`Connection::read`] a receive buffer it may scribble on
//! (payloads are unmasked in place) and gets back a [`Read`]: how many bytes
//! were consumed and at most one [`Event`]. It advances past the consumed bytes
//! and calls again until `read` returns no event; at that point either the
//! whole input is consumed or the bytes left are the start of a frame that is
//! not complete yet, always fewer than [`MAX_UNCONSUMED_INPUT`]. The caller
//! keeps those and presents them again, followed by more data.
//!
//! Where a message's bytes come from:
//!
//! - A **single-frame message whose payload is wholly inside this input** is
//!   unmasked in place and handed out borrowed from the input
//!   (`Cow::Borrowed`): no copy, no allocation.
//! - A **fragmented message, or a frame that straddles inputs**, is consumed as
//!   far as the input goes: each piece is unmasked as it is copied into the
//!   assembly buffer (one pass; the input keeps the masked bytes) and checked
//!   there (text: UTF-8 as it arrives, failing at the first bad piece). When
//!   the message is complete the buffer is *moved* into the event
//!   (`Cow::Owned`), so events never borrow the connection, the caller may send
//!   while holding one, and an idle connection owns no receive buffer.
//! - **Control frames** (at most 131 bytes on the wire) are consumed only when
//!   whole, so Ping, Pong and Close payloads are always borrowed from the input.
//!
//! # Sending
//!
//! Frames the connection must send on its own (Pong replies, the Close reply,
//! the Close after a protocol error) and frames queued with the convenience
//! calls ([`Connection::send_text`], [`Connection::send_binary`],
//! [`Connection::send_frame`], [`Connection::ping`], [`Connection::close`]) go
//! into an output queue, read with [`Connection::pending_output`] and released
//! with [`Connection::consume_output`] (or drained with
//! [`Connection::take_output`]).
//!
//! For large payloads that should leave without a copy, the caller asks
//! [`Connection::data_frame_head`] for the header bytes, puts header and its
//! own payload buffer side by side in one vectored send, and (client role
//! only) masks the payload with [`FrameHead::mask_payload`] first. The caller
//! must send everything in [`Connection::pending_output`] *before* such a
//! frame, so frames leave in the order the connection produced them.
//!
//! # States and the closing handshake
//!
//! ```text
//!            we send Close                     peer's Close arrives
//!   Open ──────────────────────► CloseSent ─────────────────────────► Closed
//!     │                                                                  ▲
//!     │ peer's Close arrives                 we send Close               │
//!     └────────────────────────► CloseReceived ──────────────────────────┘
//!                                (only without auto_close_reply)
//! ```
//!
//! States only move forward. The rules (RFC 6455 §5.5.1, §7):
//!
//! - After our Close no frame of any kind is sent: data calls fail with
//!   [`SendError::Closing`], and Pings are no longer answered.
//! - After the peer's Close every further byte is discarded.
//! - A Close that crosses ours on the wire completes the handshake: no second
//!   Close goes out.
//! - With [`Config::auto_close_reply`] (the default) the peer's Close is
//!   answered at once, echoing its status code; an empty Close is answered
//!   with an empty Close (1005 "no status" is never sent). Without it, the
//!   connection waits in `CloseReceived` for the application's
//!   [`Connection::close`], and may still send data meanwhile (e.g. to finish
//!   a fragmented message).
//! - A protocol error queues a Close with the error's code (1002, 1007 or
//!   1009), moves to `CloseSent` (unless our Close is already out), reports
//!   [`Event::ProtocolError`] once, and ignores all further input.
//!
//! [`Connection::should_close_transport`] says when the caller should close
//! TCP once the output is flushed: a **server** closes it first as soon as the
//! handshake is `Closed`; a **client** in `Closed` waits for the server to
//! close it (the caller bounds that wait with its close timeout); either role
//! closes it after failing the connection on a protocol error.

use std::borrow::Cow;
use std::fmt;

use chacha20::rand_core::{Rng, SeedableRng};
use chacha20::ChaCha20Rng;

use crate::close::{self, CloseCode};
use crate::error::{ProtocolError, SendError};
use crate::frame::{
    decode_header, encode_header_word, Decoded, FrameHeader, Opcode, Role, MAX_CONTROL_PAYLOAD,
    MAX_PAYLOAD_LEN,
};
use crate::mask;
use crate::message::{AssembledMessage, DataFrame, Limits, MessageAssembler, MessageKind};

/// `read` never leaves this many bytes unconsumed: the longest incomplete
/// thing it holds back is a masked control frame one byte short.
pub const MAX_UNCONSUMED_INPUT: usize = 2 + 4 + MAX_CONTROL_PAYLOAD;

/// Output capacity kept after the queue drains; more is released so an idle
/// connection does not sit on the buffer of its last large send.
const KEPT_OUTPUT_CAPACITY: usize = 256;

/// Per-connection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Largest accepted frame payload; larger fails with 1009. Default 16 MiB.
    pub max_frame_size: usize,
    /// Largest accepted message (all fragments); larger fails with 1009.
    /// Default 16 MiB. The number of fragments is not limited: an empty
    /// continuation frame adds nothing to the message and costs only the
    /// reading of its header.
    pub max_message_size: usize,
    /// Seed of the client role's masking keys. Draw it from the OS's CSPRNG
    /// for every connection: RFC 6455 §5.3 and §10.3 want keys the peer
    /// and anyone on the path cannot predict, and the keys are only as
    /// unpredictable as the seed. Unused by servers. Default all zeros (a
    /// fixed, publicly known sequence).
    pub mask_seed: MaskSeed,
    /// Answer the peer's Close at once, echoing its code. Default true.
    pub auto_close_reply: bool,
    /// Answer each Ping with a Pong echoing its payload. Default true.
    pub auto_pong: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_size: Limits::DEFAULT_MAX_SIZE,
            max_message_size: Limits::DEFAULT_MAX_SIZE,
            mask_seed: MaskSeed::default(),
            auto_close_reply: true,
            auto_pong: true,
        }
    }
}

/// Where the connection is in the closing handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Both directions open.
    Open,
    /// Our Close is queued; the peer may still send data until its Close.
    CloseSent,
    /// The peer's Close arrived; ours is not queued yet.
    CloseReceived,
    /// Both Closes exchanged (or ours queued in reply): the WebSocket is done.
    Closed,
}

/// Something the peer told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete text message (valid UTF-8).
    Text(Cow<'a, str>),
    /// A complete binary message.
    Binary(Cow<'a, [u8]>),
    /// A Ping; with [`Config::auto_pong`] the Pong is already queued.
    Ping(&'a [u8]),
    /// A Pong.
    Pong(&'a [u8]),
    /// The peer's Close, before the closing handshake finishes. `code` is
    /// `None` for an empty Close payload (status 1005 in the RFC's terms).
    CloseReceived {
        /// The peer's status code, if it sent one.
        code: Option<CloseCode>,
        /// The peer's reason (UTF-8, possibly empty).
        reason: &'a str,
    },
    /// The peer broke the protocol. A Close with [`ProtocolError::close_code`]
    /// is queued and all further input is ignored.
    ProtocolError(ProtocolError),
}

/// The result of one [`Connection::read`] call.
#[derive(Debug, PartialEq, Eq)]
pub struct Read<'a> {
    /// Bytes of the input that were consumed.
    pub consumed: usize,
    /// What they amounted to; `None` means more input is needed.
    pub event: Option<Event<'a>>,
}

/// The encoded header of an outgoing data frame whose payload the caller
/// sends from its own buffer.
///
/// The header bytes come first and aligned, so that copies of it move them
/// as the one aligned block they were stored as (see
/// [`encode_header_word`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct FrameHead {
    /// The header in the first `len` bytes.
    bytes: [u8; 16],
    len: u8,
    mask: Option<[u8; 4]>,
}

impl FrameHead {
    /// The header bytes to send before the payload.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The masking key (client role), if any.
    pub fn mask(&self) -> Option<[u8; 4]> {
        self.mask
    }

    /// Masks `payload` in place for sending; does nothing for a server.
    /// `offset` is the position of `payload[0]` in the frame's payload, so a
    /// payload in several buffers can be masked piece by piece.
    pub fn mask_payload(&self, payload: &mut [u8], offset: usize) {
        if let Some(key) = self.mask {
            mask::unmask(payload, key, offset);
        }
    }

    /// Writes `payload` into `out` as it goes on the wire: masked (client
    /// role) in the same pass as the copy, or copied as is (server).
    ///
    /// # Panics
    ///
    /// If `out` and `payload` differ in length.
    pub fn write_payload(&self, out: &mut [u8], payload: &[u8]) {
        match self.mask {
            Some(key) => mask::mask_into(out, payload, key, 0),
            None => out.copy_from_slice(payload),
        }
    }

    /// Appends `payload` to `out` as it goes on the wire, in one pass:
    /// masked (client role) or copied as is (server).
    pub fn append_payload(&self, out: &mut Vec<u8>, payload: &[u8]) {
        match self.mask {
            Some(key) => mask::mask_extend(out, payload, key, 0),
            None => out.extend_from_slice(payload),
        }
    }

    /// Masks `payload` in place for sending like
    /// [`FrameHead::mask_payload`] (all of it: `offset` 0) and tells whether
    /// it equalled `expected`, reading the bytes once: for a client that
    /// sends on what it has just received and checked. A server compares
    /// only.
    ///
    /// # Panics
    ///
    /// If `payload` and `expected` differ in length.
    pub fn mask_payload_comparing(&self, payload: &mut [u8], expected: &[u8]) -> bool {
        match self.mask {
            Some(key) => mask::mask_comparing(payload, expected, key, 0),
            None => {
                assert_eq!(payload.len(), expected.len(), "lengths differ");
                payload == expected
            }
        }
    }
}

/// The 256-bit seed of a client connection's masking keys (see
/// [`Config::mask_seed`]): the key of the ChaCha20 keystream the keys are
/// cut from, so whoever knows it knows every key. `Debug` does not show it.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct MaskSeed([u8; 32]);

impl MaskSeed {
    /// A seed of these bytes; take them from the OS's CSPRNG
    /// (`getrandom(2)`), fresh for each connection.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for MaskSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MaskSeed(..)")
    }
}

/// A client's masking keys: consecutive 4-byte pieces of the ChaCha20
/// keystream (64-bit nonce and block counter both starting at zero) keyed
/// by the seed, so keys seen on the wire do not give away the ones to come
/// (RFC 6455 §5.3). The keystream is generated 256 bytes at a time,
/// which keeps a key at a few nanoseconds.
struct MaskKeys(ChaCha20Rng);

impl MaskKeys {
    fn new(seed: MaskSeed) -> Self {
        Self(ChaCha20Rng::from_seed(seed.0))
    }

    #[inline]
    fn next_key(&mut self) -> [u8; 4] {
        // Little-endian keeps the keys in keystream byte order.
        self.0.next_u32().to_le_bytes()
    }
}

impl Clone for MaskKeys {
    /// The same seed at the same keystream position: both copies go on
    /// with the same keys, as a clone of the connection should.
    fn clone(&self) -> Self {
        Self(ChaCha20Rng::deserialize_state(&self.0.serialize_state()))
    }
}

impl fmt::Debug for MaskKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MaskKeys(ChaCha20)")
    }
}

/// A data frame whose header has been consumed and whose payload has not all
/// arrived yet.
#[derive(Debug, Clone, Copy)]
struct PartialFrame {
    frame: DataFrame,
    mask: MaskWord,
    received: u64,
    remaining: u64,
}

/// How a pass over the input ended, before the event borrows the input.
enum Outcome {
    NeedMore,
    Failed(ProtocolError),
    Assembled(AssembledMessage),
    WholeMessage {
        kind: MessageKind,
        start: usize,
        len: usize,
        mask: MaskWord,
    },
    Control {
        kind: ControlKind,
        start: usize,
        len: usize,
        mask: MaskWord,
    },
}

#[derive(Debug, Clone, Copy)]
enum ControlKind {
    Close,
    Ping,
    Pong,
}

impl ControlKind {
    fn of(opcode: Opcode) -> Option<Self> {
        match opcode {
            Opcode::Close => Some(ControlKind::Close),
            Opcode::Ping => Some(ControlKind::Ping),
            Opcode::Pong => Some(ControlKind::Pong),
            Opcode::Continuation | Opcode::Text | Opcode::Binary => None,
        }
    }
}

/// One WebSocket endpoint after the handshake. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Connection {
    role: Role,
    state: State,
    auto_close_reply: bool,
    auto_pong: bool,
    failure: Option<ProtocolError>,
    assembler: MessageAssembler,
    partial: Option<PartialFrame>,
    /// Kind of the fragmented message we are sending, if one is open.
    sending: Option<MessageKind>,
    output: Vec<u8>,
    /// Bytes at the front of `output` the caller has already sent.
    output_sent: usize,
    /// Client role only. Boxed so a server's connection stays a pointer
    /// (`None`) wide: the generator's buffer is a few hundred bytes.
    mask_keys: Option<Box<MaskKeys>>,
}

impl Connection {
    /// A connection whose handshake has just completed.
    pub fn new(role: Role, config: Config) -> Self {
        Self {
            role,
            state: State::Open,
            auto_close_reply: config.auto_close_reply,
            auto_pong: config.auto_pong,
            failure: None,
            assembler: MessageAssembler::new(Limits {
                max_frame_size: config.max_frame_size,
                max_message_size: config.max_message_size,
            }),
            partial: None,
            sending: None,
            output: Vec::new(),
            output_sent: 0,
            mask_keys: match role {
                Role::Client => Some(Box::new(MaskKeys::new(config.mask_seed))),
                Role::Server => None,
            },
        }
    }

    /// Our side of the connection.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Where the closing handshake stands.
    pub fn state(&self) -> State {
        self.state
    }

    /// The protocol error that failed the connection, if one did.
    pub fn failure(&self) -> Option<ProtocolError> {
        self.failure
    }

    /// Our Close is queued (or was sent): no more frames of any kind follow.
    pub fn close_sent(&self) -> bool {
        matches!(self.state, State::CloseSent | State::Closed)
    }

    /// The peer's Close arrived.
    pub fn close_received(&self) -> bool {
        matches!(self.state, State::CloseReceived | State::Closed)
    }

    /// Once the pending output is flushed, the caller should close TCP now:
    /// a server whose closing handshake is done, or either role after a
    /// protocol error. A client in [`State::Closed`] waits for the server to
    /// close first.
    pub fn should_close_transport(&self) -> bool {
        self.failure.is_some() || (self.state == State::Closed && self.role == Role::Server)
    }

    /// Bytes of received messages held in the assembly buffer.
    pub fn buffered_input(&self) -> usize {
        self.assembler.buffered_len()
    }

    /// Offers an empty buffer for the next message that must be assembled
    /// (see [`MessageAssembler::lend_buffer`]); `Some` hands it back unused.
    pub fn lend_buffer(&mut self, buffer: Vec<u8>) -> Option<Vec<u8>> {
        self.assembler.lend_buffer(buffer)
    }

    /// Takes back a lent buffer that no message started filling.
    pub fn reclaim_buffer(&mut self) -> Option<Vec<u8>> {
        self.assembler.reclaim_buffer()
    }

    fn discards_input(&self) -> bool {
        self.failure.is_some() || matches!(self.state, State::CloseReceived | State::Closed)
    }

    /// Consumes bytes from the front of `input` (unmasking them in place) up
    /// to and including the next event. See the [module docs](self) for the
    /// loop the caller runs.
    pub fn read<'a>(&mut self, input: &'a mut [u8]) -> Read<'a> {
        let total = input.len();
        if self.discards_input() {
            return Read {
                consumed: total,
                event: None,
            };
        }
        let mut pos = 0;
        let outcome = loop {
            if let Some(partial) = &mut self.partial {
                let take = partial.remaining.min((total - pos) as u64) as usize;
                if take == 0 && partial.remaining > 0 {
                    break Outcome::NeedMore;
                }
                let piece = &input[pos..pos + take];
                // Unmasked as it is copied into the message; only the key
                // phase matters, so the offset is taken mod 4.
                let mask = partial
                    .mask
                    .key()
                    .map(|key| (key, (partial.received & 3) as usize));
                if let Err(err) =
                    self.assembler
                        .append_masked(partial.frame.kind, piece, mask, partial.remaining)
                {
                    break Outcome::Failed(err);
                }
                pos += take;
                partial.received += take as u64;
                partial.remaining -= take as u64;
                if partial.remaining > 0 {
                    break Outcome::NeedMore;
                }
                let frame = partial.frame;
                self.partial = None;
                if frame.ends_message {
                    match self.assembler.finish(frame.kind) {
                        Ok(message) => break Outcome::Assembled(message),
                        Err(err) => break Outcome::Failed(err),
                    }
                }
                continue;
            }

            let (header, header_len) = match decode_header(&input[pos..], self.role, 0) {
                Ok(Decoded::Complete { header, header_len }) => (header, header_len),
                Ok(Decoded::NeedMore(_)) => break Outcome::NeedMore,
                Err(err) => break Outcome::Failed(err),
            };
            let start = pos + header_len;
            let available = total - start;
            if let Some(kind) = ControlKind::of(header.opcode) {
                // At most 125 bytes: decode_header has checked.
                let len = header.payload_len as usize;
                if available < len {
                    break Outcome::NeedMore;
                }
                pos = start + len;
                break Outcome::Control {
                    kind,
                    start,
                    len,
                    mask: MaskWord::of(header.mask),
                };
            }
            let frame = match self.assembler.begin_frame(&header) {
                Ok(frame) => frame,
                Err(err) => break Outcome::Failed(err),
            };
            pos = start;
            if frame.is_whole_message && header.payload_len <= available as u64 {
                let len = header.payload_len as usize;
                pos += len;
                break Outcome::WholeMessage {
                    kind: frame.kind,
                    start,
                    len,
                    mask: MaskWord::of(header.mask),
                };
            }
            self.partial = Some(PartialFrame {
                frame,
                mask: MaskWord::of(header.mask),
                received: 0,
                remaining: header.payload_len,
            });
        };

        let event = match outcome {
            Outcome::NeedMore => None,
            Outcome::Failed(err) => return self.fail(err, total),
            Outcome::Assembled(AssembledMessage::Text(text)) => Some(Event::Text(Cow::Owned(text))),
            Outcome::Assembled(AssembledMessage::Binary(bytes)) => {
                Some(Event::Binary(Cow::Owned(bytes)))
            }
            Outcome::WholeMessage {
                kind,
                start,
                len,
                mask,
            } => {
                let payload = unmask_in_place(input, start, len, mask);
                match kind {
                    MessageKind::Binary => Some(Event::Binary(Cow::Borrowed(payload))),
                    MessageKind::Text => match MessageAssembler::check_text(payload) {
                        Ok(text) => Some(Event::Text(Cow::Borrowed(text))),
                        Err(err) => return self.fail(err, total),
                    },
                }
            }
            Outcome::Control {
                kind,
                start,
                len,
                mask,
            } => {
                let payload = unmask_in_place(input, start, len, mask);
                match self.on_control(kind, payload) {
                    Ok(event) => Some(event),
                    Err(err) => return self.fail(err, total),
                }
            }
        };
        Read {
            consumed: pos,
            event,
        }
    }

    fn on_control<'a>(
        &mut self,
        kind: ControlKind,
        payload: &'a [u8],
    ) -> Result<Event<'a>, ProtocolError> {
        match kind {
            ControlKind::Ping => {
                if self.auto_pong && !self.close_sent() {
                    self.queue_control(Opcode::Pong, payload);
                }
                Ok(Event::Ping(payload))
            }
            ControlKind::Pong => Ok(Event::Pong(payload)),
            ControlKind::Close => {
                let frame = close::parse_close_payload(payload)?;
                self.on_close_received(frame.code);
                Ok(Event::CloseReceived {
                    code: frame.code,
                    reason: frame.reason,
                })
            }
        }
    }

    fn on_close_received(&mut self, code: Option<CloseCode>) {
        // Whatever was being received will never be finished.
        self.partial = None;
        self.assembler.reset();
        match self.state {
            State::Open if self.auto_close_reply => {
                // Echo the status code; an empty Close gets an empty reply.
                let mut payload = [0u8; 2];
                let len = match code {
                    Some(code) => {
                        payload = code.0.to_be_bytes();
                        2
                    }
                    None => 0,
                };
                self.queue_control(Opcode::Close, &payload[..len]);
                self.state = State::Closed;
            }
            State::Open => self.state = State::CloseReceived,
            State::CloseSent => self.state = State::Closed,
            // Input is discarded in these states, so no Close can arrive.
            State::CloseReceived | State::Closed => {}
        }
    }

    /// Fails the connection: queues our Close (unless one is out already),
    /// drops receive state and reports the error once.
    fn fail<'a>(&mut self, err: ProtocolError, total: usize) -> Read<'a> {
        self.failure = Some(err);
        self.partial = None;
        self.assembler.reset();
        if !self.close_sent() {
            let code = err.close_code();
            let reason = err.to_string();
            let mut payload = [0u8; close::MAX_CLOSE_PAYLOAD_LEN];
            // The reason names the problem; one that would not fit is left
            // out, never cut. The codes are always sendable, so the empty
            // payload fallback is only a guard.
            let len = close::encode_close_payload(code, &reason, &mut payload)
                .or_else(|_| close::encode_close_payload(code, "", &mut payload))
                .unwrap_or(0);
            self.queue_control(Opcode::Close, &payload[..len]);
            self.state = match self.state {
                State::Open => State::CloseSent,
                // Unreachable today (input is ignored after the peer's
                // Close), but states never move backwards.
                _ => State::Closed,
            };
        }
        Read {
            consumed: total,
            event: Some(Event::ProtocolError(err)),
        }
    }

    #[inline]
    fn next_mask(&mut self) -> Option<[u8; 4]> {
        // Present exactly for the client role (see `new`).
        self.mask_keys.as_deref_mut().map(MaskKeys::next_key)
    }

    fn queue_frame(&mut self, head: FrameHead, payload: &[u8]) {
        self.output.extend_from_slice(head.as_bytes());
        let start = self.output.len();
        self.output.extend_from_slice(payload);
        head.mask_payload(&mut self.output[start..], 0);
    }

    #[inline]
    fn head(&mut self, fin: bool, opcode: Opcode, payload_len: usize) -> FrameHead {
        let header = FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask: self.next_mask(),
            payload_len: payload_len as u64,
        };
        let (word, len) = encode_header_word(&header);
        FrameHead {
            bytes: word.to_le_bytes(),
            len: len as u8,
            mask: header.mask,
        }
    }

    fn queue_control(&mut self, opcode: Opcode, payload: &[u8]) {
        debug_assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
        let head = self.head(true, opcode, payload.len());
        self.queue_frame(head, payload);
    }

    /// The header of the next outgoing data frame, for a payload the caller
    /// sends from its own buffer (see the [module docs](self)).
    ///
    /// `opcode` is [`Opcode::Text`] or [`Opcode::Binary`] to start a message
    /// and [`Opcode::Continuation`] to continue one started with `fin ==
    /// false`. For text, the message as a whole must be UTF-8 (fragments may
    /// split a code point); the caller vouches for that. A `payload_len`
    /// over [`MAX_PAYLOAD_LEN`] fails with [`SendError::PayloadTooLong`].
    #[inline]
    pub fn data_frame_head(
        &mut self,
        opcode: Opcode,
        payload_len: usize,
        fin: bool,
    ) -> Result<FrameHead, SendError> {
        if self.close_sent() {
            return Err(SendError::Closing);
        }
        if payload_len as u64 > MAX_PAYLOAD_LEN {
            return Err(SendError::PayloadTooLong);
        }
        let kind = match (opcode, self.sending) {
            (Opcode::Text, None) => MessageKind::Text,
            (Opcode::Binary, None) => MessageKind::Binary,
            (Opcode::Text | Opcode::Binary, Some(_)) => return Err(SendError::MessageInProgress),
            (Opcode::Continuation, Some(kind)) => kind,
            (Opcode::Continuation, None) => return Err(SendError::NoMessageInProgress),
            (Opcode::Close | Opcode::Ping | Opcode::Pong, _) => {
                return Err(SendError::NotADataOpcode)
            }
        };
        self.sending = if fin { None } else { Some(kind) };
        Ok(self.head(fin, opcode, payload_len))
    }

    /// Queues one data frame (see [`Connection::data_frame_head`] for the
    /// rules on `opcode` and `fin`), copying `payload` into the output.
    pub fn send_frame(
        &mut self,
        opcode: Opcode,
        payload: &[u8],
        fin: bool,
    ) -> Result<(), SendError> {
        let head = self.data_frame_head(opcode, payload.len(), fin)?;
        self.queue_frame(head, payload);
        Ok(())
    }

    /// Queues a text message as one frame.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.send_frame(Opcode::Text, text.as_bytes(), true)
    }

    /// Queues a binary message as one frame.
    pub fn send_binary(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_frame(Opcode::Binary, payload, true)
    }

    /// Queues a Ping (at most 125 bytes of payload).
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(Opcode::Ping, payload)
    }

    /// Queues an unsolicited Pong (a one-way heartbeat; at most 125 bytes).
    pub fn pong(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(Opcode::Pong, payload)
    }

    fn send_control(&mut self, opcode: Opcode, payload: &[u8]) -> Result<(), SendError> {
        if self.close_sent() {
            return Err(SendError::Closing);
        }
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlPayloadTooLong);
        }
        self.queue_control(opcode, payload);
        Ok(())
    }

    /// Starts (or, in [`State::CloseReceived`], completes) the closing
    /// handshake with `code` and `reason`. Both are validated first (a code
    /// an application may send; a reason of at most 123 bytes); on error
    /// nothing is sent and nothing changes. After our Close, a second call
    /// fails with [`SendError::Closing`].
    pub fn close(&mut self, code: u16, reason: &str) -> Result<(), SendError> {
        if self.close_sent() {
            return Err(SendError::Closing);
        }
        let mut payload = [0u8; close::MAX_CLOSE_PAYLOAD_LEN];
        let len = close::encode_close_payload(code, reason, &mut payload)?;
        self.queue_control(Opcode::Close, &payload[..len]);
        self.state = match self.state {
            State::Open => State::CloseSent,
            _ => State::Closed,
        };
        Ok(())
    }

    /// Bytes waiting to be sent, oldest first.
    pub fn pending_output(&self) -> &[u8] {
        &self.output[self.output_sent..]
    }

    /// Marks the first `n` bytes of [`Connection::pending_output`] as sent.
    /// `n` larger than what is pending counts as all of it.
    pub fn consume_output(&mut self, n: usize) {
        // Saturating: a wrapped sum would move the mark backwards and offer
        // bytes already sent again.
        self.output_sent = self.output_sent.saturating_add(n).min(self.output.len());
        if self.output_sent == self.output.len() {
            self.release_output();
        }
    }

    /// Appends all pending output to `dst` and empties the queue.
    pub fn take_output(&mut self, dst: &mut Vec<u8>) {
        dst.extend_from_slice(self.pending_output());
        self.release_output();
    }

    fn release_output(&mut self) {
        self.output_sent = 0;
        if self.output.capacity() > KEPT_OUTPUT_CAPACITY {
            self.output = Vec::new();
        } else {
            self.output.clear();
        }
    }
}

/// Unmasks `input[start..start + len]` in place and hands it out for the
/// input's whole lifetime.
fn unmask_in_place(input: &mut [u8], start: usize, len: usize, mask: MaskWord) -> &[u8] {
    let payload = &mut input[start..start + len];
    mask.apply(payload, 0);
    payload
}

/// A masking key as one word, 0 for "unmasked" (XOR with zero is the
/// identity, so the two cannot be confused). A plain `u32` travels through
/// the receive path in registers; `Option<[u8; 4]>` is a 5-byte value that the
/// compiler spills and reloads at a different width, stalling the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MaskWord(u32);

impl MaskWord {
    fn of(mask: Option<[u8; 4]>) -> Self {
        Self(mask.map_or(0, u32::from_ne_bytes))
    }

    fn key(self) -> Option<[u8; 4]> {
        (self.0 != 0).then(|| self.0.to_ne_bytes())
    }

    fn apply(self, payload: &mut [u8], offset: usize) {
        if self.0 != 0 {
            mask::unmask(payload, self.0.to_ne_bytes(), offset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_connection_holds_no_key_generator_only_an_empty_pointer() {
        assert_eq!(size_of::<Option<Box<MaskKeys>>>(), size_of::<usize>());
        let server = Connection::new(Role::Server, Config::default());
        assert!(server.mask_keys.is_none());
        let client = Connection::new(Role::Client, Config::default());
        assert!(client.mask_keys.is_some());
        println!(
            "client key generator: {} bytes on the heap",
            size_of::<MaskKeys>()
        );
    }
}
