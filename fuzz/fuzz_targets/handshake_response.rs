//! Arbitrary bytes, split arbitrarily, into the client's response parser
//! (fixed nonce, subprotocols `chat` and `superchat`, extension `x-one` offered).
//!
//! Input layout: byte 0 picks the limits (bits 0-1), byte 1 seeds the read
//! sizes (0: one read), the rest is what the server sent.
//!
//! Checks: no panic; the answer for the bytes in pieces equals the answer for
//! them at once; an accepted response lies within the buffer and the cap,
//! carries our accept key and a subprotocol we offered.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/pieces.rs"]
mod pieces;
use pieces::{answer_in_pieces, limits};
use ringws_proto::handshake::{
    AcceptKey, ClientHandshake, HandshakeResponse, HeadLimits, ResponseError,
};

const NONCE: [u8; 16] = *b"ringws fuzz nonc";

fn client(limits: HeadLimits) -> ClientHandshake {
    ClientHandshake::new(
        "example.com",
        9001,
        "/chat",
        NONCE,
        &["chat", "superchat"],
        &[("Origin", "https://example.com")],
    )
    .expect("valid request")
    .with_limits(limits)
}

fn describe(result: &Result<Option<HandshakeResponse<'_>>, ResponseError>) -> String {
    format!("{result:?}")
}

fuzz_target!(|data: &[u8]| {
    let [flags, seed, bytes @ ..] = data else {
        return;
    };
    let limits = limits(*flags);
    let whole = client(limits).parse_response(bytes);
    match &whole {
        Ok(Some(response)) => {
            assert!(response.head_len <= bytes.len());
            assert!(response.head_len <= limits.max_head_bytes);
            let accept = AcceptKey::from_nonce(&NONCE);
            assert_eq!(
                response.headers().get("Sec-WebSocket-Accept"),
                Some(accept.as_bytes())
            );
            if let Some(protocol) = response.subprotocol() {
                assert!(protocol == "chat" || protocol == "superchat");
            }
        }
        Ok(None) => assert!(bytes.len() <= limits.max_head_bytes),
        Err(ResponseError::Refused { status }) => assert_ne!(*status, 101),
        Err(error) => assert_eq!(error.refused_status(), None),
    }

    let mut client = client(limits);
    let in_pieces = answer_in_pieces(bytes, *seed, |prefix| {
        let result = client.parse_response(prefix);
        (!matches!(result, Ok(None))).then(|| describe(&result))
    });
    assert_eq!(in_pieces, describe(&whole));
});
