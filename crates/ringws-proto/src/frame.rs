//! The frame header codec (RFC 6455 §5.2).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```
//!
//! [`decode_header`] is incremental: given a prefix of a header it says how
//! many more bytes it needs ([`Decoded::NeedMore`]), and it rejects a header as
//! early as the bytes seen allow. The checks run in wire order (first byte,
//! second byte, extended length), so feeding a header one byte at a time
//! reaches the same verdict as feeding it whole.
//!
//! ## Strictness
//!
//! Every rule of §5.2 that can be checked from the header is enforced, each
//! failure carrying close code 1002:
//!
//! - opcodes 0x3–0x7 and 0xB–0xF are reserved;
//! - RSV bits are refused unless the caller allows them (a negotiated
//!   extension defines them);
//! - control frames (Close, Ping, Pong) must have FIN set and at most 125
//!   payload bytes;
//! - a 64-bit length must have its most significant bit clear;
//! - a server only accepts masked frames, a client only unmasked ones;
//! - **non-minimal length encodings are rejected** (a 16-bit length below 126
//!   or a 64-bit length below 65 536). RFC 6455 says the minimal encoding MUST
//!   be used; refusing anything else keeps exactly one encoding per length, so
//!   a header can never smuggle a length past a check made on another form.
//!
//! Limits that depend on configuration (maximum frame and message size) and
//! rules that need more than one frame (continuation sequencing) live in
//! [`crate::message`].

use crate::error::ProtocolError;

/// The longest header: 2 fixed bytes, a 64-bit length and a masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload a control frame may carry.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The largest payload any frame may carry: the 64-bit length field must
/// keep its most significant bit clear.
pub const MAX_PAYLOAD_LEN: u64 = u64::MAX >> 1;

/// Which end of the connection we are. It decides which frames must be masked:
/// a client masks every frame it sends, a server never does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// We accepted the connection; frames we receive must be masked.
    Server,
    /// We opened the connection; frames we send are masked.
    Client,
}

/// The frame opcodes RFC 6455 defines. Reserved values never become an
/// `Opcode`; they are a [`ProtocolError::ReservedOpcode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// Continues a fragmented message.
    Continuation = 0x0,
    /// First frame of a UTF-8 text message.
    Text = 0x1,
    /// First frame of a binary message.
    Binary = 0x2,
    /// Starts or answers the closing handshake.
    Close = 0x8,
    /// Asks the peer for a Pong.
    Ping = 0x9,
    /// Answers a Ping, or a unilateral heartbeat.
    Pong = 0xA,
}

impl Opcode {
    /// Reads the 4-bit opcode field (the high bits of `bits` are ignored).
    pub fn from_bits(bits: u8) -> Result<Self, ProtocolError> {
        match bits & 0x0F {
            0x0 => Ok(Opcode::Continuation),
            0x1 => Ok(Opcode::Text),
            0x2 => Ok(Opcode::Binary),
            0x8 => Ok(Opcode::Close),
            0x9 => Ok(Opcode::Ping),
            0xA => Ok(Opcode::Pong),
            reserved => Err(ProtocolError::ReservedOpcode(reserved)),
        }
    }

    /// The 4-bit wire value.
    pub fn bits(self) -> u8 {
        self as u8
    }

    /// Close, Ping and Pong: never fragmented, at most 125 payload bytes, and
    /// allowed between the fragments of a data message.
    pub fn is_control(self) -> bool {
        self.bits() & 0x8 != 0
    }
}

/// A decoded (or to be encoded) frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Last frame of its message.
    pub fin: bool,
    /// RSV1, RSV2, RSV3 as a 3-bit number (RSV1 is the most significant bit).
    pub rsv: u8,
    /// What the frame carries.
    pub opcode: Opcode,
    /// The masking key, present exactly when the sender is a client.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
}

impl FrameHeader {
    /// How many bytes [`encode_header`] writes for this header.
    pub fn encoded_len(&self) -> usize {
        let length_bytes = match self.payload_len {
            0..=125 => 0,
            126..=0xFFFF => 2,
            _ => 8,
        };
        let mask_bytes = if self.mask.is_some() { 4 } else { 0 };
        2 + length_bytes + mask_bytes
    }
}

/// The outcome of [`decode_header`] on a prefix of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// A whole, valid header; the payload starts at `input[header_len]`.
    Complete {
        /// The header.
        header: FrameHeader,
        /// Bytes the header occupies (2 to 14).
        header_len: usize,
    },
    /// The input ends inside the header; at least this many more bytes are
    /// needed. Exact once the second byte is known: with 0 bytes it is 2, with
    /// 1 byte it is 1, afterwards it is what remains of the extended length and
    /// the masking key.
    NeedMore(usize),
}

const FIN_BIT: u8 = 0x80;
const RSV_SHIFT: u32 = 4;
const MASK_BIT: u8 = 0x80;
const LEN_16: u8 = 126;
const LEN_64: u8 = 127;

/// Decodes the frame header at the start of `input`.
///
/// `role` is our side of the connection; `allowed_rsv` holds the RSV bits
/// (3-bit form, as in [`FrameHeader::rsv`]) that negotiated extensions define,
/// usually 0. Bytes after the header are not looked at.
#[inline]
pub fn decode_header(input: &[u8], role: Role, allowed_rsv: u8) -> Result<Decoded, ProtocolError> {
    let Some(&first) = input.first() else {
        return Ok(Decoded::NeedMore(2));
    };
    let fin = first & FIN_BIT != 0;
    let rsv = (first >> RSV_SHIFT) & 0x7;
    if rsv & !allowed_rsv != 0 {
        return Err(ProtocolError::ReservedBits);
    }
    let opcode = Opcode::from_bits(first)?;
    if opcode.is_control() && !fin {
        return Err(ProtocolError::FragmentedControlFrame);
    }

    let Some(&second) = input.get(1) else {
        return Ok(Decoded::NeedMore(1));
    };
    let masked = second & MASK_BIT != 0;
    match (role, masked) {
        (Role::Server, false) => return Err(ProtocolError::UnmaskedClientFrame),
        (Role::Client, true) => return Err(ProtocolError::MaskedServerFrame),
        _ => {}
    }
    let short_len = second & 0x7F;
    if opcode.is_control() && usize::from(short_len) > MAX_CONTROL_PAYLOAD {
        return Err(ProtocolError::ControlFrameTooLong);
    }
    let length_bytes = match short_len {
        LEN_16 => 2,
        LEN_64 => 8,
        _ => 0,
    };
    let header_len = 2 + length_bytes + if masked { 4 } else { 0 };

    let payload_len = match short_len {
        LEN_16 => {
            let Some(bytes) = input.get(2..4) else {
                return Ok(Decoded::NeedMore(header_len - input.len()));
            };
            let len = u16::from_be_bytes([bytes[0], bytes[1]]);
            if len < u16::from(LEN_16) {
                return Err(ProtocolError::NonMinimalLength);
            }
            u64::from(len)
        }
        LEN_64 => {
            let Some(bytes) = input.get(2..10) else {
                // The top-bit rule can be judged from the first length byte.
                if input.len() > 2 && input[2] & 0x80 != 0 {
                    return Err(ProtocolError::LengthTopBitSet);
                }
                return Ok(Decoded::NeedMore(header_len - input.len()));
            };
            let mut be = [0u8; 8];
            be.copy_from_slice(bytes);
            let len = u64::from_be_bytes(be);
            if len >> 63 != 0 {
                return Err(ProtocolError::LengthTopBitSet);
            }
            if len <= 0xFFFF {
                return Err(ProtocolError::NonMinimalLength);
            }
            len
        }
        short => u64::from(short),
    };

    if input.len() < header_len {
        return Ok(Decoded::NeedMore(header_len - input.len()));
    }
    let mask = masked.then(|| {
        // One 4-byte copy rather than four byte moves: the caller reads the
        // key back as a word, and byte stores would stall that load.
        let mut key = [0u8; 4];
        key.copy_from_slice(&input[header_len - 4..header_len]);
        key
    });
    Ok(Decoded::Complete {
        header: FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len,
        },
        header_len,
    })
}

/// Encodes `header` into `out` with the minimal length form and returns the
/// number of bytes written (2 to 14).
///
/// The header is written as given: keeping control frames short and final,
/// `rsv` within 3 bits and `payload_len` below 2^63 is the caller's part (a
/// length from a Rust slice always is).
pub fn encode_header(header: &FrameHeader, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
    let (word, len) = encode_header_word(header);
    out.copy_from_slice(&word.to_le_bytes()[..MAX_HEADER_LEN]);
    len
}

/// [`encode_header`] into the low bytes of a `u128` (little-endian, the
/// rest zero), with the header's length. Built in registers, it is stored
/// whole: a header written byte by byte and then copied as a block stalls
/// the copy's load (it cannot be forwarded from several smaller stores).
#[inline]
pub fn encode_header_word(header: &FrameHeader) -> (u128, usize) {
    debug_assert!(header.rsv <= 0x7, "rsv is a 3-bit field");
    debug_assert!(header.payload_len >> 63 == 0, "payload length over 2^63");
    let fin = if header.fin { FIN_BIT } else { 0 };
    let first = fin | ((header.rsv & 0x7) << RSV_SHIFT) | header.opcode.bits();
    let mask_bit = if header.mask.is_some() { MASK_BIT } else { 0 };
    // The extended length is big-endian on the wire: byte-swapped, it reads
    // in the right order from a little-endian word.
    let (second, extended, mut len) = match header.payload_len {
        short @ 0..=125 => (mask_bit | short as u8, 0, 2),
        medium @ 126..=0xFFFF => (
            mask_bit | LEN_16,
            u128::from((medium as u16).swap_bytes()),
            4,
        ),
        long => (mask_bit | LEN_64, u128::from(long.swap_bytes()), 10),
    };
    let mut word = u128::from(first) | u128::from(second) << 8 | extended << 16;
    if let Some(key) = header.mask {
        word |= u128::from(u32::from_le_bytes(key)) << (8 * len);
        len += 4;
    }
    (word, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

    fn complete(input: &[u8], role: Role) -> (FrameHeader, usize) {
        match decode_header(input, role, 0) {
            Ok(Decoded::Complete { header, header_len }) => (header, header_len),
            other => panic!("expected a complete header from {input:02x?}, got {other:?}"),
        }
    }

    #[test]
    fn opcodes_round_trip_and_reserved_ones_are_refused() {
        for bits in 0u8..16 {
            match Opcode::from_bits(bits) {
                Ok(op) => assert_eq!(op.bits(), bits),
                Err(err) => {
                    assert!(matches!(bits, 0x3..=0x7 | 0xB..=0xF), "{bits:#x}");
                    assert_eq!(err, ProtocolError::ReservedOpcode(bits));
                    assert_eq!(err.close_code(), 1002);
                }
            }
        }
        assert!(Opcode::Close.is_control());
        assert!(Opcode::Ping.is_control());
        assert!(Opcode::Pong.is_control());
        assert!(!Opcode::Text.is_control());
        assert!(!Opcode::Binary.is_control());
        assert!(!Opcode::Continuation.is_control());
    }

    #[test]
    fn decodes_each_length_form() {
        // Unmasked, as a client receives.
        let (h, n) = complete(&[0x81, 5], Role::Client);
        assert_eq!(
            (h.fin, h.opcode, h.payload_len, h.mask, n),
            (true, Opcode::Text, 5, None, 2)
        );
        let (h, n) = complete(&[0x82, 126, 0x01, 0x00], Role::Client);
        assert_eq!((h.opcode, h.payload_len, n), (Opcode::Binary, 256, 4));
        let (h, n) = complete(&[0x02, 127, 0, 0, 0, 0, 0, 1, 0, 0], Role::Client);
        assert_eq!((h.fin, h.payload_len, n), (false, 65_536, 10));
        // Masked, as a server receives.
        let (h, n) = complete(&[0x89, 0x80 | 3, 0x11, 0x22, 0x33, 0x44], Role::Server);
        assert_eq!(
            (h.opcode, h.payload_len, h.mask, n),
            (Opcode::Ping, 3, Some(KEY), 6)
        );
        let (h, n) = complete(&[0x80, 0x80 | 126, 0xFF, 0xFF, 1, 2, 3, 4], Role::Server);
        assert_eq!(
            (h.opcode, h.payload_len, h.mask, n),
            (Opcode::Continuation, 0xFFFF, Some([1, 2, 3, 4]), 8)
        );
        let max = [
            0x82,
            0x80 | 127,
            0x7F,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            9,
            9,
            9,
            9,
        ];
        let (h, n) = complete(&max, Role::Server);
        assert_eq!((h.payload_len, n), (i64::MAX as u64, 14));
    }

    #[test]
    fn decoding_ignores_bytes_after_the_header() {
        let (h, n) = complete(&[0x81, 2, b'h', b'i', 0xFF, 0xFF], Role::Client);
        assert_eq!((h.payload_len, n), (2, 2));
    }

    #[test]
    fn need_more_counts_the_missing_bytes() {
        let cases: &[(&[u8], Role, usize)] = &[
            (&[], Role::Server, 2),
            (&[0x82], Role::Server, 1),
            (&[0x82, 0x85], Role::Server, 4),
            (&[0x82, 0x85, 1, 2, 3], Role::Server, 1),
            (&[0x82, 0x80 | 126], Role::Server, 6),
            (&[0x82, 0x80 | 126, 1], Role::Server, 5),
            (&[0x82, 0x80 | 126, 1, 0], Role::Server, 4),
            (&[0x82, 0x80 | 127], Role::Server, 12),
            (&[0x82, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0], Role::Server, 5),
            (&[0x82, 126], Role::Client, 2),
            (&[0x82, 127, 0, 0], Role::Client, 6),
        ];
        for &(input, role, missing) in cases {
            assert_eq!(
                decode_header(input, role, 0),
                Ok(Decoded::NeedMore(missing)),
                "{input:02x?} as {role:?}"
            );
        }
    }

    #[test]
    fn every_header_rule_has_its_error() {
        use ProtocolError::*;
        let m = 0x80; // MASK bit, for frames a server receives
        let cases: &[(&[u8], Role, u8, ProtocolError)] = &[
            (&[0x83, m], Role::Server, 0, ReservedOpcode(0x3)),
            (&[0x87, m], Role::Server, 0, ReservedOpcode(0x7)),
            (&[0x8B, m], Role::Server, 0, ReservedOpcode(0xB)),
            (&[0x8F, m], Role::Server, 0, ReservedOpcode(0xF)),
            (&[0xC1, m], Role::Server, 0, ReservedBits),
            (&[0xA1, m], Role::Server, 0, ReservedBits),
            (&[0x91, m], Role::Server, 0, ReservedBits),
            // RSV2 set although only RSV1 was negotiated.
            (&[0xE1, m], Role::Server, 0b100, ReservedBits),
            (&[0x08, m], Role::Server, 0, FragmentedControlFrame),
            (&[0x09, m], Role::Server, 0, FragmentedControlFrame),
            (&[0x0A, m], Role::Server, 0, FragmentedControlFrame),
            (&[0x88, m | 126], Role::Server, 0, ControlFrameTooLong),
            (&[0x89, m | 127], Role::Server, 0, ControlFrameTooLong),
            (&[0x8A, 126], Role::Client, 0, ControlFrameTooLong),
            (
                &[0x82, m | 127, 0x80, 0, 0, 0, 0, 0, 0, 0],
                Role::Server,
                0,
                LengthTopBitSet,
            ),
            (
                &[0x82, 127, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
                Role::Client,
                0,
                LengthTopBitSet,
            ),
            (&[0x82, 5], Role::Server, 0, UnmaskedClientFrame),
            (&[0x88, 0], Role::Server, 0, UnmaskedClientFrame),
            (&[0x82, m | 5], Role::Client, 0, MaskedServerFrame),
            (&[0x82, m | 126, 0, 125], Role::Server, 0, NonMinimalLength),
            (&[0x82, 126, 0, 0], Role::Client, 0, NonMinimalLength),
            (
                &[0x82, m | 127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF],
                Role::Server,
                0,
                NonMinimalLength,
            ),
            (
                &[0x82, 127, 0, 0, 0, 0, 0, 0, 0, 1],
                Role::Client,
                0,
                NonMinimalLength,
            ),
        ];
        for &(input, role, allowed_rsv, expected) in cases {
            assert_eq!(
                decode_header(input, role, allowed_rsv),
                Err(expected),
                "{input:02x?} as {role:?}"
            );
            assert_eq!(expected.close_code(), 1002);
        }
    }

    #[test]
    fn negotiated_rsv_bits_are_accepted() {
        match decode_header(&[0xC1, 0x80, 1, 2, 3, 4], Role::Server, 0b100) {
            Ok(Decoded::Complete { header, .. }) => assert_eq!(header.rsv, 0b100),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_surface_as_soon_as_the_offending_byte_arrives() {
        assert_eq!(
            decode_header(&[0x83], Role::Server, 0),
            Err(ProtocolError::ReservedOpcode(3))
        );
        assert_eq!(
            decode_header(&[0x09], Role::Server, 0),
            Err(ProtocolError::FragmentedControlFrame)
        );
        assert_eq!(
            decode_header(&[0x82, 0xFF, 0x80], Role::Server, 0),
            Err(ProtocolError::LengthTopBitSet)
        );
    }

    #[test]
    fn encoding_picks_the_minimal_length_form() {
        let mut out = [0u8; MAX_HEADER_LEN];
        type Case = (u64, Option<[u8; 4]>, &'static [u8]);
        let cases: &[Case] = &[
            (0, None, &[0x82, 0]),
            (125, None, &[0x82, 125]),
            (126, None, &[0x82, 126, 0, 126]),
            (0xFFFF, None, &[0x82, 126, 0xFF, 0xFF]),
            (0x1_0000, None, &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
            (5, Some(KEY), &[0x82, 0x85, 0x11, 0x22, 0x33, 0x44]),
            (
                300,
                Some(KEY),
                &[0x82, 0xFE, 0x01, 0x2C, 0x11, 0x22, 0x33, 0x44],
            ),
            (
                0x0102_0304_0506,
                Some(KEY),
                &[0x82, 0xFF, 0, 0, 1, 2, 3, 4, 5, 6, 0x11, 0x22, 0x33, 0x44],
            ),
        ];
        for &(payload_len, mask, expected) in cases {
            let header = FrameHeader {
                fin: true,
                rsv: 0,
                opcode: Opcode::Binary,
                mask,
                payload_len,
            };
            let n = encode_header(&header, &mut out);
            assert_eq!(&out[..n], expected, "length {payload_len}");
            assert_eq!(n, header.encoded_len());
        }
        let header = FrameHeader {
            fin: false,
            rsv: 0b101,
            opcode: Opcode::Continuation,
            mask: None,
            payload_len: 1,
        };
        let n = encode_header(&header, &mut out);
        assert_eq!(&out[..n], &[0x50, 1]);
    }

    fn any_header() -> impl Strategy<Value = (FrameHeader, Role)> {
        let data = (
            any::<bool>(),
            prop_oneof![
                Just(Opcode::Continuation),
                Just(Opcode::Text),
                Just(Opcode::Binary)
            ],
            prop_oneof![0u64..=125, 126u64..=0xFFFF, 0x1_0000u64..=(u64::MAX >> 1)],
        );
        let control = (
            Just(true),
            prop_oneof![Just(Opcode::Close), Just(Opcode::Ping), Just(Opcode::Pong)],
            0u64..=125,
        );
        (
            prop_oneof![data, control],
            0u8..8,
            any::<[u8; 4]>(),
            any::<bool>(),
        )
            .prop_map(|((fin, opcode, payload_len), rsv, key, from_client)| {
                let (mask, receiver) = if from_client {
                    (Some(key), Role::Server)
                } else {
                    (None, Role::Client)
                };
                (
                    FrameHeader {
                        fin,
                        rsv,
                        opcode,
                        mask,
                        payload_len,
                    },
                    receiver,
                )
            })
    }

    /// Feeds growing prefixes of `input`; returns the first verdict that is
    /// not `NeedMore`, checking each `NeedMore` count on the way.
    fn decode_bytewise(
        input: &[u8],
        role: Role,
        allowed_rsv: u8,
    ) -> Result<Decoded, ProtocolError> {
        for end in 0..=input.len() {
            match decode_header(&input[..end], role, allowed_rsv) {
                Ok(Decoded::NeedMore(missing)) => {
                    assert!(missing >= 1);
                    assert!(end + missing <= MAX_HEADER_LEN);
                }
                verdict => return verdict,
            }
        }
        decode_header(input, role, allowed_rsv)
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity((header, receiver) in any_header(), tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut out = [0u8; MAX_HEADER_LEN];
            let n = encode_header(&header, &mut out);
            prop_assert_eq!(n, header.encoded_len());
            let mut wire = out[..n].to_vec();
            wire.extend_from_slice(&tail);
            let expected = Ok(Decoded::Complete { header, header_len: n });
            prop_assert_eq!(decode_header(&wire, receiver, 0b111), expected);
            prop_assert_eq!(decode_bytewise(&wire, receiver, 0b111), expected);
            // Every strict prefix asks for exactly what is missing once the
            // second byte is known.
            for end in 2..n {
                prop_assert_eq!(decode_header(&wire[..end], receiver, 0b111), Ok(Decoded::NeedMore(n - end)));
            }
        }

        #[test]
        fn bytewise_decoding_agrees_with_whole_decoding(
            bytes in proptest::collection::vec(any::<u8>(), 0..=MAX_HEADER_LEN + 2),
            server in any::<bool>(),
            allowed_rsv in 0u8..8,
        ) {
            let role = if server { Role::Server } else { Role::Client };
            let whole = decode_header(&bytes, role, allowed_rsv);
            let bytewise = decode_bytewise(&bytes, role, allowed_rsv);
            prop_assert_eq!(whole, bytewise);
            if let Ok(Decoded::NeedMore(missing)) = whole {
                prop_assert!(bytes.len() + missing <= MAX_HEADER_LEN);
            }
            if let Ok(Decoded::Complete { header, header_len }) = whole {
                prop_assert_eq!(header_len, header.encoded_len());
                let mut out = [0u8; MAX_HEADER_LEN];
                let n = encode_header(&header, &mut out);
                prop_assert_eq!(&out[..n], &bytes[..header_len]);
            }
        }
    }
}
