//! Parsing a Close payload never panics and agrees with a direct reading of
//! RFC 6455; a parsed payload re-encodes to the same bytes; the checks on an
//! application's own close agree with the same rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringws_proto::close::{
    encode_close_payload, parse_close_payload, validate_close, CloseCode, CloseError,
};
use ringws_proto::ProtocolError;

fn code_allowed(code: u16) -> bool {
    (1000..=1003).contains(&code) || (1007..=1014).contains(&code) || (3000..=4999).contains(&code)
}

fuzz_target!(|payload: &[u8]| {
    let parsed = parse_close_payload(payload);
    let expected = match payload {
        [] => Ok((None, "")),
        [_] => Err(ProtocolError::ClosePayloadTooShort),
        _ if payload.len() > 125 => Err(ProtocolError::ControlFrameTooLong),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !code_allowed(code) {
                Err(ProtocolError::InvalidCloseCode(code))
            } else {
                match std::str::from_utf8(reason) {
                    Ok(reason) => Ok((Some(CloseCode(code)), reason)),
                    Err(_) => Err(ProtocolError::InvalidUtf8),
                }
            }
        }
    };
    assert_eq!(parsed.map(|frame| (frame.code, frame.reason)), expected);
    if let Err(error) = parsed {
        let expected_code = if error == ProtocolError::InvalidUtf8 {
            1007
        } else {
            1002
        };
        assert_eq!(error.close_code(), expected_code);
    }

    if let Ok(frame) = parsed {
        if let Some(code) = frame.code {
            let mut out = [0u8; 125];
            let len = encode_close_payload(code.0, frame.reason, &mut out).unwrap();
            assert_eq!(&out[..len], payload);
        }
    }

    // The same bytes as an application's close request: code, then reason.
    if let [high, low, reason @ ..] = payload {
        let code = u16::from_be_bytes([*high, *low]);
        let expected = if !code_allowed(code) {
            Err(CloseError::InvalidCode(code))
        } else if reason.len() > 123 {
            Err(CloseError::ReasonTooLong(reason.len()))
        } else if std::str::from_utf8(reason).is_err() {
            Err(CloseError::ReasonNotUtf8)
        } else {
            Ok(CloseCode(code))
        };
        assert_eq!(validate_close(code, reason), expected);
    }
});
