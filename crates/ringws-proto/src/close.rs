//! Close codes and Close frame payloads (RFC 6455 §5.5.1, §7.4).
//!
//! A Close payload is either empty or a 2-byte big-endian status code
//! followed by a UTF-8 reason, 125 bytes at most in all, so a reason has at
//! most 123 bytes. Only codes 1000–1003, 1007–1014 and 3000–4999 may appear on
//! the wire: 1005, 1006 and 1015 are reserved for reporting locally, the rest
//! of 1000–2999 is reserved for the protocol, and 0–999 and 5000+ are unused.
//!
//! Received payloads go through [`parse_close_payload`], which maps every
//! defect to the [`ProtocolError`] (and close code) to fail with. An
//! application's own close goes through [`validate_close`] or
//! [`encode_close_payload`], which refuse anything invalid with a
//! [`CloseError`] and never truncate the reason.

use std::fmt;

use crate::error::ProtocolError;
use crate::utf8::validate_utf8;

/// The longest Close payload: control frames carry at most 125 bytes.
pub const MAX_CLOSE_PAYLOAD_LEN: usize = 125;

/// The longest Close reason: the payload minus the 2-byte code.
pub const MAX_CLOSE_REASON_LEN: usize = MAX_CLOSE_PAYLOAD_LEN - 2;

/// A Close status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept (e.g. binary only).
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: the Close carried no code. Reported locally, never sent.
    pub const NO_STATUS_RECEIVED: CloseCode = CloseCode(1005);
    /// 1006: the connection dropped without a Close. Reported locally, never sent.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: message data inconsistent with its type (e.g. invalid UTF-8 text).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: (client) the server did not negotiate a required extension.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: (server) an unexpected condition prevented fulfilling the request.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the server is restarting.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: temporary overload; try again later.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: a gateway or proxy got an invalid response upstream.
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);
    /// 1015: the TLS handshake failed. Reported locally, never sent.
    pub const TLS_HANDSHAKE: CloseCode = CloseCode(1015);

    /// The code as a number.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// Whether the code may appear in a Close frame: 1000–1003, 1007–1014,
    /// 3000–4999. This is also exactly the set an application may send.
    pub const fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// A short description of a code RFC 6455 or the IANA registry defines.
    pub const fn description(self) -> Option<&'static str> {
        Some(match self.0 {
            1000 => "normal closure",
            1001 => "going away",
            1002 => "protocol error",
            1003 => "unsupported data",
            1005 => "no status received",
            1006 => "abnormal closure",
            1007 => "invalid payload data",
            1008 => "policy violation",
            1009 => "message too big",
            1010 => "mandatory extension",
            1011 => "internal error",
            1012 => "service restart",
            1013 => "try again later",
            1014 => "bad gateway",
            1015 => "TLS handshake failure",
            _ => return None,
        })
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.description() {
            Some(description) => write!(f, "{} ({description})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

/// Why an application's close request was refused. Nothing is sent then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseError {
    /// The code may not be sent: outside 1000–1003, 1007–1014, 3000–4999
    /// (e.g. 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000).
    InvalidCode(u16),
    /// The reason has this many bytes, more than the 123 a Close can carry.
    ReasonTooLong(usize),
    /// The reason is not valid UTF-8.
    ReasonNotUtf8,
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseError::InvalidCode(code) => write!(
                f,
                "close code {code} may not be sent (allowed: 1000-1003, 1007-1014, 3000-4999)"
            ),
            CloseError::ReasonTooLong(len) => write!(
                f,
                "close reason of {len} bytes exceeds the maximum of {MAX_CLOSE_REASON_LEN}"
            ),
            CloseError::ReasonNotUtf8 => f.write_str("close reason is not valid UTF-8"),
        }
    }
}

impl std::error::Error for CloseError {}

/// A received Close payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// `None` for an empty payload (what RFC 6455 reports as 1005).
    pub code: Option<CloseCode>,
    /// Empty when there is no code or no reason.
    pub reason: &'a str,
}

/// Checks an application's close `code` and `reason` before anything is sent.
/// Never truncates: a reason over 123 bytes is an error.
pub fn validate_close(code: u16, reason: &[u8]) -> Result<CloseCode, CloseError> {
    let code = CloseCode(code);
    if !code.is_valid_on_wire() {
        return Err(CloseError::InvalidCode(code.0));
    }
    if reason.len() > MAX_CLOSE_REASON_LEN {
        return Err(CloseError::ReasonTooLong(reason.len()));
    }
    validate_utf8(reason).map_err(|_| CloseError::ReasonNotUtf8)?;
    Ok(code)
}

/// Parses a received Close payload.
///
/// - empty: no code, no reason;
/// - 1 byte: [`ProtocolError::ClosePayloadTooShort`] (1002);
/// - a code not valid on the wire: [`ProtocolError::InvalidCloseCode`] (1002);
/// - a reason that is not UTF-8: [`ProtocolError::InvalidUtf8`] (1007);
/// - over 125 bytes (which the frame decoder already refuses):
///   [`ProtocolError::ControlFrameTooLong`] (1002).
pub fn parse_close_payload(payload: &[u8]) -> Result<CloseFrame<'_>, ProtocolError> {
    if payload.len() > MAX_CLOSE_PAYLOAD_LEN {
        return Err(ProtocolError::ControlFrameTooLong);
    }
    match payload {
        [] => Ok(CloseFrame {
            code: None,
            reason: "",
        }),
        [_] => Err(ProtocolError::ClosePayloadTooShort),
        [high, low, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*high, *low]));
            if !code.is_valid_on_wire() {
                return Err(ProtocolError::InvalidCloseCode(code.0));
            }
            let reason = validate_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(CloseFrame {
                code: Some(code),
                reason,
            })
        }
    }
}

/// Validates `code` and `reason` like [`validate_close`] and writes the Close
/// payload into `out`; returns its length (2 + the reason's length). On error
/// `out` is untouched.
pub fn encode_close_payload(
    code: u16,
    reason: &str,
    out: &mut [u8; MAX_CLOSE_PAYLOAD_LEN],
) -> Result<usize, CloseError> {
    let code = validate_close(code, reason.as_bytes())?;
    let len = 2 + reason.len();
    out[..2].copy_from_slice(&code.0.to_be_bytes());
    out[2..len].copy_from_slice(reason.as_bytes());
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The codes allowed on the wire, listed from RFC 6455 §7.4 rather than
    /// computed the way the implementation does.
    fn allowed_codes() -> Vec<bool> {
        let mut allowed = vec![false; 1 << 16];
        let listed = [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
        ];
        for code in listed {
            allowed[code] = true;
        }
        // 3000-3999: registered with IANA; 4000-4999: private use.
        allowed[3000..5000].fill(true);
        allowed
    }

    #[test]
    fn validity_of_every_code() {
        let allowed = allowed_codes();
        let mut valid_count = 0;
        for raw in 0..=u16::MAX {
            let expected = allowed[usize::from(raw)];
            let code = CloseCode(raw);
            assert_eq!(code.is_valid_on_wire(), expected, "code {raw}");

            let validated = validate_close(raw, b"bye");
            if expected {
                valid_count += 1;
                assert_eq!(validated, Ok(code), "code {raw}");
            } else {
                assert_eq!(validated, Err(CloseError::InvalidCode(raw)), "code {raw}");
            }

            let mut payload = raw.to_be_bytes().to_vec();
            payload.extend_from_slice("ok ✓".as_bytes());
            let parsed = parse_close_payload(&payload);
            if expected {
                assert_eq!(
                    parsed,
                    Ok(CloseFrame {
                        code: Some(code),
                        reason: "ok ✓"
                    })
                );
            } else {
                let error = parsed.unwrap_err();
                assert_eq!(error, ProtocolError::InvalidCloseCode(raw));
                assert_eq!(error.close_code(), 1002);
            }

            let mut out = [0xAA; MAX_CLOSE_PAYLOAD_LEN];
            match encode_close_payload(raw, "ok ✓", &mut out) {
                Ok(len) => {
                    assert!(expected, "code {raw} encoded");
                    assert_eq!(&out[..len], &payload[..]);
                }
                Err(error) => {
                    assert!(!expected, "code {raw} refused");
                    assert_eq!(error, CloseError::InvalidCode(raw));
                    assert_eq!(out, [0xAA; MAX_CLOSE_PAYLOAD_LEN], "untouched on error");
                }
            }
        }
        assert_eq!(valid_count, 12 + 2000);
    }

    #[test]
    fn named_codes_have_their_numbers_and_validity() {
        let named = [
            (CloseCode::NORMAL, 1000, true),
            (CloseCode::GOING_AWAY, 1001, true),
            (CloseCode::PROTOCOL_ERROR, 1002, true),
            (CloseCode::UNSUPPORTED_DATA, 1003, true),
            (CloseCode::NO_STATUS_RECEIVED, 1005, false),
            (CloseCode::ABNORMAL, 1006, false),
            (CloseCode::INVALID_PAYLOAD, 1007, true),
            (CloseCode::POLICY_VIOLATION, 1008, true),
            (CloseCode::MESSAGE_TOO_BIG, 1009, true),
            (CloseCode::MANDATORY_EXTENSION, 1010, true),
            (CloseCode::INTERNAL_ERROR, 1011, true),
            (CloseCode::SERVICE_RESTART, 1012, true),
            (CloseCode::TRY_AGAIN_LATER, 1013, true),
            (CloseCode::BAD_GATEWAY, 1014, true),
            (CloseCode::TLS_HANDSHAKE, 1015, false),
        ];
        for (code, number, valid) in named {
            assert_eq!(code.as_u16(), number);
            assert_eq!(u16::from(code), number);
            assert_eq!(code.is_valid_on_wire(), valid, "{number}");
            assert!(code.description().is_some(), "{number}");
        }
        assert_eq!(CloseCode(1004).description(), None);
        assert_eq!(CloseCode::NORMAL.to_string(), "1000 (normal closure)");
        assert_eq!(CloseCode(4321).to_string(), "4321");
    }

    #[test]
    fn unsendable_codes_from_the_design() {
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX] {
            assert_eq!(
                validate_close(code, b""),
                Err(CloseError::InvalidCode(code))
            );
        }
        for code in [1000, 1003, 1007, 1014, 3000, 4999] {
            assert_eq!(validate_close(code, b""), Ok(CloseCode(code)));
        }
    }

    #[test]
    fn reason_length_limit_counts_bytes_not_chars() {
        // 41 three-byte chars: 123 bytes.
        let at_limit = "€".repeat(41);
        assert_eq!(at_limit.len(), 123);
        assert_eq!(
            validate_close(1000, at_limit.as_bytes()),
            Ok(CloseCode::NORMAL)
        );
        let mut out = [0; MAX_CLOSE_PAYLOAD_LEN];
        assert_eq!(encode_close_payload(1000, &at_limit, &mut out), Ok(125));
        assert_eq!(
            parse_close_payload(&out),
            Ok(CloseFrame {
                code: Some(CloseCode::NORMAL),
                reason: &at_limit
            })
        );

        // 31 four-byte chars: 124 bytes, one too many; never truncated.
        let over_limit = "🦀".repeat(31);
        assert_eq!(over_limit.len(), 124);
        assert_eq!(
            validate_close(1000, over_limit.as_bytes()),
            Err(CloseError::ReasonTooLong(124))
        );
        assert_eq!(
            encode_close_payload(1000, &over_limit, &mut out),
            Err(CloseError::ReasonTooLong(124))
        );
        let long = "x".repeat(1000);
        assert_eq!(
            validate_close(4000, long.as_bytes()),
            Err(CloseError::ReasonTooLong(1000))
        );
    }

    #[test]
    fn reason_must_be_utf8() {
        assert_eq!(
            validate_close(1000, &[0xFF]),
            Err(CloseError::ReasonNotUtf8)
        );
        // Truncated multi-byte sequence at the end.
        assert_eq!(
            validate_close(1000, &[b'a', 0xE2, 0x82]),
            Err(CloseError::ReasonNotUtf8)
        );
        // The code is checked first.
        assert_eq!(
            validate_close(1005, &[0xFF]),
            Err(CloseError::InvalidCode(1005))
        );

        let error = parse_close_payload(&[0x03, 0xE8, b'o', b'k', 0xC0, 0x80]).unwrap_err();
        assert_eq!(error, ProtocolError::InvalidUtf8);
        assert_eq!(error.close_code(), 1007);
    }

    #[test]
    fn payload_shapes() {
        assert_eq!(
            parse_close_payload(&[]),
            Ok(CloseFrame {
                code: None,
                reason: ""
            })
        );
        let error = parse_close_payload(&[0x03]).unwrap_err();
        assert_eq!(error, ProtocolError::ClosePayloadTooShort);
        assert_eq!(error.close_code(), 1002);
        assert_eq!(
            parse_close_payload(&[0x03, 0xE9]),
            Ok(CloseFrame {
                code: Some(CloseCode::GOING_AWAY),
                reason: ""
            })
        );
        let mut longest = vec![0x0F, 0xA0];
        longest.extend_from_slice(&[b'r'; 123]);
        let parsed = parse_close_payload(&longest).unwrap();
        assert_eq!(parsed.code, Some(CloseCode(4000)));
        assert_eq!(parsed.reason.len(), 123);
        longest.push(b'r');
        assert_eq!(
            parse_close_payload(&longest),
            Err(ProtocolError::ControlFrameTooLong)
        );
    }

    #[test]
    fn error_messages_name_the_problem() {
        assert!(CloseError::InvalidCode(1005).to_string().contains("1005"));
        assert!(CloseError::ReasonTooLong(124).to_string().contains("124"));
        assert!(CloseError::ReasonNotUtf8.to_string().contains("UTF-8"));
    }

    /// Arbitrary bytes, and well-formed codes followed by text or arbitrary
    /// bytes (random codes are almost never valid on the wire).
    fn close_payloads() -> impl Strategy<Value = Vec<u8>> {
        let reason = prop_oneof![
            "\\PC{0,45}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..126),
        ];
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..130),
            (prop_oneof![1000u16..=1015, 2990u16..=5010], reason).prop_map(|(code, reason)| {
                let mut payload = code.to_be_bytes().to_vec();
                payload.extend_from_slice(&reason);
                payload
            }),
        ]
    }

    proptest! {
        #[test]
        fn encode_then_parse_round_trips(
            code in prop_oneof![1000u16..=1003, 1007u16..=1014, 3000u16..=4999],
            reason in "\\PC{0,40}",
        ) {
            let mut out = [0; MAX_CLOSE_PAYLOAD_LEN];
            match encode_close_payload(code, &reason, &mut out) {
                Ok(len) => {
                    prop_assert!(reason.len() <= MAX_CLOSE_REASON_LEN);
                    prop_assert_eq!(
                        parse_close_payload(&out[..len]),
                        Ok(CloseFrame { code: Some(CloseCode(code)), reason: &reason })
                    );
                }
                Err(error) => {
                    prop_assert_eq!(error, CloseError::ReasonTooLong(reason.len()));
                    prop_assert!(reason.len() > MAX_CLOSE_REASON_LEN);
                }
            }
        }

        #[test]
        fn parse_agrees_with_model(payload in close_payloads()) {
            let expected = match payload.len() {
                0 => Ok((None, "")),
                1 => Err(ProtocolError::ClosePayloadTooShort),
                n if n > 125 => Err(ProtocolError::ControlFrameTooLong),
                _ => {
                    let code = u16::from(payload[0]) << 8 | u16::from(payload[1]);
                    if !allowed_codes()[usize::from(code)] {
                        Err(ProtocolError::InvalidCloseCode(code))
                    } else {
                        std::str::from_utf8(&payload[2..])
                            .map(|reason| (Some(CloseCode(code)), reason))
                            .map_err(|_| ProtocolError::InvalidUtf8)
                    }
                }
            };
            let parsed = parse_close_payload(&payload).map(|frame| (frame.code, frame.reason));
            prop_assert_eq!(parsed, expected);
        }
    }
}
