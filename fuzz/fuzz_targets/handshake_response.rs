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
use ringws_proto::handshake::{
    AcceptKey, ClientHandshake, HandshakeResponse, HeadLimits, ResponseError,
};

const NONCE: [u8; 16] = *b"ringws fuzz nonc";

fn limits(flags: u8) -> HeadLimits {
    match flags & 3 {
        0 => HeadLimits::DEFAULT,
        1 => HeadLimits {
            max_head_bytes: 256,
            max_headers: 8,
        },
        2 => HeadLimits {
            max_head_bytes: 64,
            max_headers: 2,
        },
        _ => HeadLimits {
            max_head_bytes: 8 * 1024,
            max_headers: 0,
        },
    }
}

fn client(limits: HeadLimits) -> ClientHandshake {
    ClientHandshake::new(
        "example.com",
        9001,
        "/chat",
        NONCE,
        &["chat", "superchat"],
        &[("Sec-WebSocket-Extensions", "x-one; a=1")],
    )
    .expect("valid request")
    .with_limits(limits)
}

/// Read sizes from 0 (ask again with nothing new) to 16, from a xorshift seed.
fn next_read_size(state: &mut u8) -> usize {
    *state ^= *state << 3;
    *state ^= *state >> 5;
    *state ^= *state << 1;
    usize::from(*state % 17)
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
    let mut state = seed | 1;
    let mut received = 0;
    let in_pieces = loop {
        let size = if *seed == 0 {
            bytes.len()
        } else {
            next_read_size(&mut state)
        };
        if size == 0 {
            // Asking again about the same bytes must not change the answer.
            let again = client.parse_response(&bytes[..received]);
            if !matches!(again, Ok(None)) {
                break describe(&again);
            }
        }
        // At least one byte per step, so the loop always ends.
        received = (received + size.max(1)).min(bytes.len());
        let result = client.parse_response(&bytes[..received]);
        if !matches!(result, Ok(None)) || received == bytes.len() {
            break describe(&result);
        }
    };
    assert_eq!(in_pieces, describe(&whole));
});
