//! Arbitrary bytes, split arbitrarily, into the server's request parser.
//!
//! Input layout (so seeds are real requests behind a short prefix): byte 0
//! picks the limits (bits 0-1), byte 1 seeds the read sizes (0: one read),
//! the rest is what the client sent.
//!
//! Checks: no panic; the answer for the bytes in pieces equals the answer for
//! them at once; a complete head lies within the buffer and the cap; every
//! error writes a response with its status; an accepted request can be answered.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/pieces.rs"]
mod pieces;
use pieces::{answer_in_pieces, limits};
use ringws_proto::handshake::{
    parse_request, HandshakeError, HeadLimits, ParsedRequest, RequestKind, ServerHandshake,
};

fn describe(result: &Result<Option<ParsedRequest<'_>>, HandshakeError>) -> String {
    format!("{result:?}")
}

fn check_complete(bytes: &[u8], limits: &HeadLimits, parsed: &ParsedRequest<'_>) {
    assert!(parsed.head_len <= bytes.len());
    assert!(parsed.head_len <= limits.max_head_bytes);
    match parsed.kind {
        RequestKind::Upgrade(request) => {
            assert_eq!(request.accept_key().as_str().len(), 28);
            let selected = request.subprotocols().next();
            let mut response = Vec::new();
            request
                .write_switching_protocols(selected, &[], &mut response)
                .expect("an offered subprotocol is always accepted");
            assert!(response.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
            assert!(response.ends_with(b"\r\n\r\n"));
            let _ = request.extensions().count();
            let _ = request.origin();
        }
        RequestKind::PlainHttp(request) => {
            assert!(!request.method().is_empty());
            let _ = request.headers().len();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, seed, bytes @ ..] = data else {
        return;
    };
    let limits = limits(*flags);
    let whole = parse_request(bytes, &limits);
    match &whole {
        Ok(Some(parsed)) => check_complete(bytes, &limits, parsed),
        Ok(None) => assert!(bytes.len() <= limits.max_head_bytes),
        Err(error) => {
            let response = error.response();
            let status_line = format!("HTTP/1.1 {} ", error.status());
            assert!(response.starts_with(status_line.as_bytes()));
        }
    }

    let mut parser = ServerHandshake::new(limits);
    let in_pieces = answer_in_pieces(bytes, *seed, |prefix| {
        let result = parser.parse(prefix);
        (!matches!(result, Ok(None))).then(|| describe(&result))
    });
    assert_eq!(in_pieces, describe(&whole));
});
