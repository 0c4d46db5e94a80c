//! Message assembly: turning a sequence of data frames into messages
//! (RFC 6455 §5.4, §5.6, §8.1).
//!
//! [`MessageAssembler`] owns the rules that span frames:
//!
//! - a Continuation frame needs a fragmented message in progress
//!   ([`ProtocolError::UnexpectedContinuation`], 1002);
//! - a Text or Binary frame may not start while one is in progress
//!   ([`ProtocolError::ExpectedContinuation`], 1002);
//! - control frames may sit between fragments: they never reach the
//!   assembler, so they cannot disturb it;
//! - a frame over [`Limits::max_frame_size`] or a message that would grow past
//!   [`Limits::max_message_size`] is refused from its header alone, before any
//!   of its payload is buffered ([`ProtocolError::FrameTooLarge`] /
//!   [`ProtocolError::MessageTooLarge`], 1009);
//! - text is validated as it arrives, chunk by chunk, with a code point free to
//!   straddle fragments and receive buffers; invalid UTF-8 fails at the first
//!   chunk that proves it ([`ProtocolError::InvalidUtf8`], 1007), not when the
//!   frame or message ends.
//!
//! The assembler never sees masked bytes and never decides where payload comes
//! from: the connection unmasks in place and either hands a complete
//! single-frame message straight to the user (validated by
//! [`MessageAssembler::check_text`], no copy) or feeds the pieces through
//! [`MessageAssembler::append`] into the assembly buffer. The buffer exists only
//! while a buffered message is in progress; [`MessageAssembler::finish`] moves
//! it out, so an idle connection holds no receive memory.

use crate::error::ProtocolError;
use crate::frame::{FrameHeader, Opcode};
use crate::mask;
use crate::utf8::{validate_utf8, Utf8Validator};

/// Whether a message is text (UTF-8, checked) or binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// Opcode 0x1: the payload must be valid UTF-8.
    Text,
    /// Opcode 0x2: any bytes.
    Binary,
}

impl MessageKind {
    /// The opcode that starts a message of this kind.
    pub fn opcode(self) -> Opcode {
        match self {
            MessageKind::Text => Opcode::Text,
            MessageKind::Binary => Opcode::Binary,
        }
    }
}

/// Size limits applied to incoming frames and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted frame payload, in bytes.
    pub max_frame_size: usize,
    /// Largest accepted message payload (all fragments together), in bytes.
    pub max_message_size: usize,
}

impl Limits {
    /// 16 MiB, the default for both limits.
    pub const DEFAULT_MAX_SIZE: usize = 16 << 20;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_size: Self::DEFAULT_MAX_SIZE,
            max_message_size: Self::DEFAULT_MAX_SIZE,
        }
    }
}

/// What an accepted data frame means for its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFrame {
    /// The kind of the message the frame belongs to.
    pub kind: MessageKind,
    /// The frame is the whole message (FIN set, not a continuation): if its
    /// payload is present in one piece, it can be delivered without copying.
    pub is_whole_message: bool,
    /// The frame ends its message (FIN set).
    pub ends_message: bool,
}

/// A message assembled from buffered pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssembledMessage {
    /// A complete, valid UTF-8 text message.
    Text(String),
    /// A complete binary message.
    Binary(Vec<u8>),
}

/// Up-front reservation cap for a buffered frame: a peer's announced length
/// alone must not make us allocate megabytes before it has sent them.
const INITIAL_RESERVE_CAP: usize = 64 << 10;

/// Tracks the data message in progress across frames and receive buffers.
#[derive(Debug, Clone)]
pub struct MessageAssembler {
    limits: Limits,
    /// Kind of the fragmented message whose final frame has not begun yet.
    fragmented: Option<MessageKind>,
    /// Kind of the message whose frames are being buffered, if any.
    buffering: Option<MessageKind>,
    /// Payload bytes announced so far by the headers of the current message.
    message_len: u64,
    buffer: Vec<u8>,
    utf8: Utf8Validator,
}

impl MessageAssembler {
    /// An assembler between messages.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            fragmented: None,
            buffering: None,
            message_len: 0,
            buffer: Vec::new(),
            utf8: Utf8Validator::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A fragmented message has started and its final frame has not.
    pub fn is_fragmented(&self) -> bool {
        self.fragmented.is_some()
    }

    /// Bytes currently held in the assembly buffer.
    pub fn buffered_len(&self) -> usize {
        self.buffer.len()
    }

    /// Capacity of the assembly buffer (0 between buffered messages unless a
    /// buffer was lent).
    pub fn buffer_capacity(&self) -> usize {
        self.buffer.capacity()
    }

    /// Offers an empty buffer for the next buffered message, so a caller
    /// that recycles buffers spares an allocation per such message. Hands
    /// `buffer` back when the assembler has one already or is mid-message.
    pub fn lend_buffer(&mut self, mut buffer: Vec<u8>) -> Option<Vec<u8>> {
        if self.buffering.is_some() || self.buffer.capacity() != 0 {
            return Some(buffer);
        }
        buffer.clear();
        self.buffer = buffer;
        None
    }

    /// Takes back a buffer no message has started filling (a lent one, or
    /// the rest of a reset), so an idle connection owns none.
    pub fn reclaim_buffer(&mut self) -> Option<Vec<u8>> {
        if self.buffering.is_some() || self.buffer.capacity() == 0 {
            return None;
        }
        Some(std::mem::take(&mut self.buffer))
    }

    /// Accepts the header of a data frame (not a control frame), checking
    /// sequencing and sizes before any payload is read.
    pub fn begin_frame(&mut self, header: &FrameHeader) -> Result<DataFrame, ProtocolError> {
        debug_assert!(
            !header.opcode.is_control(),
            "control frames bypass assembly"
        );
        if header.payload_len > self.limits.max_frame_size as u64 {
            return Err(ProtocolError::FrameTooLarge);
        }
        let (kind, message_len, is_whole_message) = match (header.opcode, self.fragmented) {
            (Opcode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (Opcode::Continuation, Some(kind)) => (
                kind,
                self.message_len.saturating_add(header.payload_len),
                false,
            ),
            (_, Some(_)) => return Err(ProtocolError::ExpectedContinuation),
            (opcode, None) => {
                let kind = if opcode == Opcode::Text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                };
                (kind, header.payload_len, header.fin)
            }
        };
        if message_len > self.limits.max_message_size as u64 {
            return Err(ProtocolError::MessageTooLarge);
        }
        if header.opcode != Opcode::Continuation {
            self.utf8.reset();
        }
        self.message_len = message_len;
        self.fragmented = if header.fin { None } else { Some(kind) };
        Ok(DataFrame {
            kind,
            is_whole_message,
            ends_message: header.fin,
        })
    }

    /// Validates the unmasked payload of a whole single-frame message that is
    /// delivered in place, without buffering.
    pub fn check_text(payload: &[u8]) -> Result<&str, ProtocolError> {
        validate_utf8(payload).map_err(|_| ProtocolError::InvalidUtf8)
    }

    /// Buffers a piece of unmasked payload of the current message, validating
    /// text as it goes so invalid UTF-8 is refused at the first bad piece.
    /// `frame_remaining` (payload bytes of the frame still to come, including
    /// this piece) sizes the first reservation.
    pub fn append(
        &mut self,
        kind: MessageKind,
        piece: &[u8],
        frame_remaining: u64,
    ) -> Result<(), ProtocolError> {
        self.append_masked(kind, piece, None, frame_remaining)
    }

    /// [`append`](Self::append) for a piece still masked with `mask`, whose
    /// key phase starts at payload position `offset`: the piece is unmasked
    /// as it is copied, one pass over its bytes instead of an unmasking pass
    /// and a copy. The input is left as it was.
    pub fn append_masked(
        &mut self,
        kind: MessageKind,
        piece: &[u8],
        mask: Option<([u8; 4], usize)>,
        frame_remaining: u64,
    ) -> Result<(), ProtocolError> {
        if self.buffering.is_none() {
            self.buffering = Some(kind);
            let expected = usize::try_from(frame_remaining).unwrap_or(usize::MAX);
            self.buffer.reserve(expected.min(INITIAL_RESERVE_CAP));
        }
        let start = self.buffer.len();
        match mask {
            Some((key, offset)) => mask::mask_extend(&mut self.buffer, piece, key, offset),
            None => self.buffer.extend_from_slice(piece),
        }
        if kind == MessageKind::Text && self.utf8.feed(&self.buffer[start..]).is_err() {
            self.buffer.truncate(start);
            return Err(ProtocolError::InvalidUtf8);
        }
        Ok(())
    }

    /// Ends the current message once its final frame's payload is all in:
    /// checks that text does not stop inside a code point and moves the
    /// buffer out.
    pub fn finish(&mut self, kind: MessageKind) -> Result<AssembledMessage, ProtocolError> {
        self.buffering = None;
        self.message_len = 0;
        let bytes = std::mem::take(&mut self.buffer);
        match kind {
            MessageKind::Binary => Ok(AssembledMessage::Binary(bytes)),
            MessageKind::Text => {
                self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                // The pieces were checked one by one; this whole-buffer pass
                // (SIMD, far cheaper than the copy that built the buffer) is
                // what the conversion below relies on.
                if validate_utf8(&bytes).is_err() {
                    return Err(ProtocolError::InvalidUtf8);
                }
                // SAFETY: `validate_utf8` (simdutf8) has just accepted exactly
                // these bytes as UTF-8.
                Ok(AssembledMessage::Text(unsafe {
                    String::from_utf8_unchecked(bytes)
                }))
            }
        }
    }

    /// Forgets the message in progress and releases the buffer.
    pub fn reset(&mut self) {
        *self = Self::new(self.limits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(fin: bool, opcode: Opcode, payload_len: u64) -> FrameHeader {
        FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask: None,
            payload_len,
        }
    }

    fn small(frame: usize, message: usize) -> MessageAssembler {
        MessageAssembler::new(Limits {
            max_frame_size: frame,
            max_message_size: message,
        })
    }

    #[test]
    fn single_frame_message_is_whole() {
        let mut asm = MessageAssembler::new(Limits::default());
        let frame = asm.begin_frame(&header(true, Opcode::Text, 3)).unwrap();
        assert_eq!(
            frame,
            DataFrame {
                kind: MessageKind::Text,
                is_whole_message: true,
                ends_message: true
            }
        );
        assert!(!asm.is_fragmented());
    }

    #[test]
    fn a_lent_buffer_is_filled_and_moved_out_or_reclaimed_unused() {
        let mut asm = MessageAssembler::new(Limits::default());
        let lent = Vec::with_capacity(4096);
        let address = lent.as_ptr();
        assert!(asm.lend_buffer(lent).is_none());
        // A second offer is refused: the assembler has one.
        assert!(asm.lend_buffer(Vec::with_capacity(8)).is_some());
        let frame = asm.begin_frame(&header(true, Opcode::Binary, 3)).unwrap();
        asm.append(frame.kind, &[7, 8, 9], 3).unwrap();
        // Mid-message nothing can be lent or reclaimed.
        assert!(asm.reclaim_buffer().is_none());
        assert!(asm.lend_buffer(Vec::with_capacity(8)).is_some());
        let AssembledMessage::Binary(bytes) = asm.finish(frame.kind).unwrap() else {
            panic!("binary expected");
        };
        assert_eq!(bytes, [7, 8, 9]);
        assert_eq!(
            bytes.as_ptr(),
            address,
            "the lent buffer carried the message"
        );
        // Lent and not used: taken back whole, leaving none behind.
        assert!(asm.lend_buffer(vec![1, 2, 3]).is_none());
        let back = asm.reclaim_buffer().unwrap();
        assert!(back.is_empty() && back.capacity() >= 3);
        assert_eq!(asm.buffer_capacity(), 0);
        assert!(asm.reclaim_buffer().is_none());
    }

    #[test]
    fn fragments_assemble_in_order() {
        let mut asm = MessageAssembler::new(Limits::default());
        let first = asm.begin_frame(&header(false, Opcode::Binary, 2)).unwrap();
        assert!(!first.is_whole_message && !first.ends_message);
        asm.append(first.kind, &[1, 2], 2).unwrap();
        assert!(asm.is_fragmented());
        let middle = asm
            .begin_frame(&header(false, Opcode::Continuation, 1))
            .unwrap();
        assert_eq!(middle.kind, MessageKind::Binary);
        asm.append(middle.kind, &[3], 1).unwrap();
        let last = asm
            .begin_frame(&header(true, Opcode::Continuation, 2))
            .unwrap();
        assert!(last.ends_message && !last.is_whole_message);
        assert!(!asm.is_fragmented());
        asm.append(last.kind, &[4], 2).unwrap();
        asm.append(last.kind, &[5], 1).unwrap();
        assert_eq!(
            asm.finish(last.kind),
            Ok(AssembledMessage::Binary(vec![1, 2, 3, 4, 5]))
        );
        assert_eq!(
            asm.buffer_capacity(),
            0,
            "the buffer leaves with the message"
        );
    }

    #[test]
    fn sequencing_errors() {
        let mut asm = MessageAssembler::new(Limits::default());
        assert_eq!(
            asm.begin_frame(&header(true, Opcode::Continuation, 0)),
            Err(ProtocolError::UnexpectedContinuation)
        );
        asm.begin_frame(&header(false, Opcode::Text, 0)).unwrap();
        assert_eq!(
            asm.begin_frame(&header(true, Opcode::Text, 0)),
            Err(ProtocolError::ExpectedContinuation)
        );
        assert_eq!(
            asm.begin_frame(&header(true, Opcode::Binary, 0)),
            Err(ProtocolError::ExpectedContinuation)
        );
    }

    #[test]
    fn size_limits_are_checked_from_headers() {
        let mut asm = small(10, 15);
        assert_eq!(
            asm.begin_frame(&header(true, Opcode::Binary, 11)),
            Err(ProtocolError::FrameTooLarge)
        );
        let mut asm = small(10, 15);
        asm.begin_frame(&header(true, Opcode::Binary, 10)).unwrap();
        let mut asm = small(10, 15);
        asm.begin_frame(&header(false, Opcode::Binary, 10)).unwrap();
        asm.begin_frame(&header(false, Opcode::Continuation, 5))
            .unwrap();
        assert_eq!(
            asm.begin_frame(&header(true, Opcode::Continuation, 1)),
            Err(ProtocolError::MessageTooLarge)
        );
        let mut asm = small(20, 15);
        assert_eq!(
            asm.begin_frame(&header(true, Opcode::Text, 16)),
            Err(ProtocolError::MessageTooLarge)
        );
        assert_eq!(ProtocolError::MessageTooLarge.close_code(), 1009);
        assert_eq!(ProtocolError::FrameTooLarge.close_code(), 1009);
    }

    #[test]
    fn message_size_restarts_with_each_message() {
        let mut asm = small(10, 10);
        for _ in 0..3 {
            let f = asm.begin_frame(&header(true, Opcode::Binary, 10)).unwrap();
            asm.append(f.kind, &[0; 10], 10).unwrap();
            asm.finish(f.kind).unwrap();
        }
    }

    #[test]
    fn code_point_split_across_pieces_is_accepted() {
        let text = "aé€😀";
        let bytes = text.as_bytes();
        for split in 0..=bytes.len() {
            let mut asm = MessageAssembler::new(Limits::default());
            let f = asm
                .begin_frame(&header(true, Opcode::Text, bytes.len() as u64))
                .unwrap();
            asm.append(f.kind, &bytes[..split], bytes.len() as u64)
                .unwrap();
            asm.append(f.kind, &bytes[split..], (bytes.len() - split) as u64)
                .unwrap();
            assert_eq!(
                asm.finish(f.kind),
                Ok(AssembledMessage::Text(text.to_owned()))
            );
        }
    }

    #[test]
    fn invalid_utf8_fails_at_the_bad_piece() {
        let mut asm = MessageAssembler::new(Limits::default());
        let f = asm.begin_frame(&header(true, Opcode::Text, 100)).unwrap();
        asm.append(f.kind, b"fine", 100).unwrap();
        assert_eq!(
            asm.append(f.kind, &[0xC0, 0x80], 96),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn masked_pieces_are_unmasked_as_they_are_buffered() {
        let text = "mask me: aé€😀, every phase of the key".repeat(3);
        let key = [0x37, 0xFA, 0x21, 0x3D];
        let masked: Vec<u8> = text
            .bytes()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        for split in [0, 1, 2, 3, 5, 33, 64, masked.len()] {
            let mut asm = MessageAssembler::new(Limits::default());
            let len = masked.len() as u64;
            let f = asm.begin_frame(&header(true, Opcode::Text, len)).unwrap();
            asm.append_masked(f.kind, &masked[..split], Some((key, 0)), len)
                .unwrap();
            asm.append_masked(
                f.kind,
                &masked[split..],
                Some((key, split & 3)),
                len - split as u64,
            )
            .unwrap();
            assert_eq!(asm.finish(f.kind), Ok(AssembledMessage::Text(text.clone())));
        }
        // Invalid UTF-8 is found in the unmasked bytes, not the masked ones.
        let mut asm = MessageAssembler::new(Limits::default());
        let f = asm.begin_frame(&header(true, Opcode::Text, 2)).unwrap();
        let bad = [0xC0 ^ key[0], 0x80 ^ key[1]];
        assert_eq!(
            asm.append_masked(f.kind, &bad, Some((key, 0)), 2),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn text_ending_inside_a_code_point_is_refused() {
        let mut asm = MessageAssembler::new(Limits::default());
        let f = asm.begin_frame(&header(true, Opcode::Text, 3)).unwrap();
        asm.append(f.kind, &[b'a', 0xE2, 0x82], 3).unwrap();
        assert_eq!(asm.finish(f.kind), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn binary_is_not_validated() {
        let mut asm = MessageAssembler::new(Limits::default());
        let f = asm.begin_frame(&header(true, Opcode::Binary, 2)).unwrap();
        asm.append(f.kind, &[0xFF, 0xC0], 2).unwrap();
        assert_eq!(
            asm.finish(f.kind),
            Ok(AssembledMessage::Binary(vec![0xFF, 0xC0]))
        );
    }

    #[test]
    fn check_text_validates_a_whole_payload() {
        assert_eq!(
            MessageAssembler::check_text("héllo".as_bytes()),
            Ok("héllo")
        );
        assert_eq!(
            MessageAssembler::check_text(&[b'a', 0xED, 0xA0, 0x80]),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn a_huge_announced_length_reserves_little() {
        let mut asm = small(usize::MAX, usize::MAX);
        let f = asm
            .begin_frame(&header(true, Opcode::Binary, 1 << 40))
            .unwrap();
        asm.append(f.kind, &[1], 1 << 40).unwrap();
        assert!(asm.buffer_capacity() <= INITIAL_RESERVE_CAP);
    }
}
