//! Protocol violations and the close code each one obliges us to send.

use std::fmt;

use crate::close::CloseError;
#[cfg(doc)]
use crate::frame::MAX_PAYLOAD_LEN;

/// Why a peer's bytes cannot be accepted. Every variant maps to the close code
/// RFC 6455 requires when failing the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Opcode 0x3–0x7 or 0xB–0xF.
    ReservedOpcode(u8),
    /// An RSV bit set without a negotiated extension that defines it.
    ReservedBits,
    /// A control frame with a payload over 125 bytes.
    ControlFrameTooLong,
    /// A control frame without FIN.
    FragmentedControlFrame,
    /// A 64-bit payload length with its most significant bit set.
    LengthTopBitSet,
    /// A payload length not in its shortest form (a 16-bit length below 126,
    /// or a 64-bit length below 65 536).
    NonMinimalLength,
    /// A server received a frame without a mask.
    UnmaskedClientFrame,
    /// A client received a masked frame.
    MaskedServerFrame,
    /// A continuation frame with no fragmented message in progress.
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is in progress.
    ExpectedContinuation,
    /// A Close payload of exactly one byte.
    ClosePayloadTooShort,
    /// A Close code that may not appear on the wire.
    InvalidCloseCode(u16),
    /// Invalid UTF-8 in a text message or a close reason.
    InvalidUtf8,
    /// A frame larger than the configured maximum.
    FrameTooLarge,
    /// A message larger than the configured maximum.
    MessageTooLarge,
}

impl ProtocolError {
    /// The close code to fail the connection with.
    pub fn close_code(&self) -> u16 {
        match self {
            ProtocolError::InvalidUtf8 => 1007,
            ProtocolError::FrameTooLarge | ProtocolError::MessageTooLarge => 1009,
            _ => 1002,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            ProtocolError::ReservedBits => {
                f.write_str("RSV bit set without a negotiated extension")
            }
            ProtocolError::ControlFrameTooLong => {
                f.write_str("control frame payload over 125 bytes")
            }
            ProtocolError::FragmentedControlFrame => f.write_str("fragmented control frame"),
            ProtocolError::LengthTopBitSet => {
                f.write_str("64-bit payload length with its top bit set")
            }
            ProtocolError::NonMinimalLength => {
                f.write_str("payload length not in its minimal encoding")
            }
            ProtocolError::UnmaskedClientFrame => f.write_str("client frame is not masked"),
            ProtocolError::MaskedServerFrame => f.write_str("server frame is masked"),
            ProtocolError::UnexpectedContinuation => {
                f.write_str("continuation frame without a message in progress")
            }
            ProtocolError::ExpectedContinuation => {
                f.write_str("new data frame while a fragmented message is in progress")
            }
            ProtocolError::ClosePayloadTooShort => f.write_str("close payload of one byte"),
            ProtocolError::InvalidCloseCode(code) => {
                write!(f, "close code {code} is not valid on the wire")
            }
            ProtocolError::InvalidUtf8 => f.write_str("invalid UTF-8"),
            ProtocolError::FrameTooLarge => f.write_str("frame exceeds the maximum frame size"),
            ProtocolError::MessageTooLarge => {
                f.write_str("message exceeds the maximum message size")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Why a frame could not be queued for sending. Nothing is queued on error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// Our Close is already queued: no frame may follow it.
    Closing,
    /// A control frame payload over 125 bytes.
    ControlPayloadTooLong,
    /// A data frame payload over [`MAX_PAYLOAD_LEN`] bytes (2^63 - 1): no
    /// frame header can carry its length.
    PayloadTooLong,
    /// A new Text or Binary message while a fragmented one is unfinished.
    MessageInProgress,
    /// A Continuation frame with no fragmented message started.
    NoMessageInProgress,
    /// A control opcode where a data frame was asked for.
    NotADataOpcode,
    /// The close code or reason was refused.
    InvalidClose(CloseError),
}

impl From<CloseError> for SendError {
    fn from(err: CloseError) -> Self {
        SendError::InvalidClose(err)
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closing => {
                f.write_str("the connection is closing: no frame may follow our Close")
            }
            SendError::ControlPayloadTooLong => f.write_str("control frame payload over 125 bytes"),
            SendError::PayloadTooLong => {
                f.write_str("frame payload over 2^63 - 1 bytes, the most a header can carry")
            }
            SendError::MessageInProgress => {
                f.write_str("a fragmented message is in progress; continue or finish it first")
            }
            SendError::NoMessageInProgress => {
                f.write_str("continuation without a fragmented message in progress")
            }
            SendError::NotADataOpcode => {
                f.write_str("not a data opcode (Text, Binary or Continuation)")
            }
            SendError::InvalidClose(err) => write!(f, "invalid close: {err}"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::InvalidClose(err) => Some(err),
            _ => None,
        }
    }
}
