//! Properties of the handshake parsers over generated input: no panic on any
//! bytes, and the same answer however the bytes are split into reads.

use proptest::prelude::*;
use ringws_proto::handshake::{
    parse_request, AcceptKey, ClientHandshake, HandshakeError, HeadLimits, ParsedRequest,
    RequestKind, ResponseError, ServerHandshake,
};

const NONCE: [u8; 16] = *b"proptest's nonce";

fn limits() -> impl Strategy<Value = HeadLimits> {
    prop_oneof![
        Just(HeadLimits::DEFAULT),
        (0usize..400, 0usize..12).prop_map(|(max_head_bytes, max_headers)| HeadLimits {
            max_head_bytes,
            max_headers,
        }),
    ]
}

/// Header lines a handshake is made of, valid and not, so that generated heads
/// reach every rule instead of failing on syntax.
fn header_line() -> impl Strategy<Value = String> {
    let accept = AcceptKey::from_nonce(&NONCE).to_string();
    prop_oneof![
        Just("Host: example.com".to_owned()),
        Just("host: [::1]:9001".to_owned()),
        Just("Upgrade: websocket".to_owned()),
        Just("Upgrade: h2c, WebSocket".to_owned()),
        Just("Connection: Upgrade".to_owned()),
        Just("Connection: keep-alive, upgrade".to_owned()),
        Just("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".to_owned()),
        Just("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j".to_owned()),
        Just("Sec-WebSocket-Version: 13".to_owned()),
        Just("Sec-WebSocket-Version: 8".to_owned()),
        Just("Sec-WebSocket-Protocol: chat, superchat".to_owned()),
        Just("Sec-WebSocket-Protocol: chat".to_owned()),
        Just("Sec-WebSocket-Protocol: ,".to_owned()),
        Just("Sec-WebSocket-Extensions: x-one; a=\"1,2\"".to_owned()),
        Just("Origin: http://example.com".to_owned()),
        Just(format!("Sec-WebSocket-Accept: {accept}")),
        Just("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_owned()),
        "[A-Za-z-]{1,12}: [ -~]{0,20}",
        "[ -~]{0,30}",
    ]
}

/// A head from one of `first_lines`, most of the `required` header lines (each
/// dropped now and then), a few more from [`header_line`], in any order, with a
/// chance of a few stray bytes and of trailing bytes after it.
fn head(
    first_lines: &'static [&'static str],
    required: Vec<String>,
) -> impl Strategy<Value = Vec<u8>> {
    let required = required
        .into_iter()
        .map(|line| proptest::option::weighted(0.9, Just(line)))
        .collect::<Vec<_>>();
    let mutations = prop_oneof![
        3 => Just(Vec::new()),
        1 => proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..3),
    ];
    (
        proptest::sample::select(first_lines),
        (required, proptest::collection::vec(header_line(), 0..4))
            .prop_map(|(required, extra)| {
                required
                    .into_iter()
                    .flatten()
                    .chain(extra)
                    .collect::<Vec<_>>()
            })
            .prop_shuffle(),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..8),
        mutations,
    )
        .prop_map(|(first, headers, bare_lf, trailing, mutations)| {
            let newline = if bare_lf { "\n" } else { "\r\n" };
            let mut text = format!("{first}{newline}");
            for header in headers {
                text.push_str(&header);
                text.push_str(newline);
            }
            text.push_str(newline);
            let mut bytes = text.into_bytes();
            bytes.extend_from_slice(&trailing);
            for (index, byte) in mutations {
                let at = index.index(bytes.len());
                bytes[at] = byte;
            }
            bytes
        })
}

fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    let required = [
        "Host: example.com",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ];
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..300),
        4 => head(
            &[
                "GET / HTTP/1.1",
                "GET /chat?x=1 HTTP/1.1",
                "GET /metrics HTTP/1.0",
                "POST / HTTP/1.1",
                "\r\nGET / HTTP/1.1",
                "GET / HTTP/1.2",
            ],
            required.map(str::to_owned).to_vec(),
        ),
    ]
}

/// A plain request whose target and header values are any bytes they may
/// hold (visible ASCII, obs-text, and SP and HT inside values), with a
/// chance of trailing bytes of any kind (a pipelined frame).
fn head_with_any_value_bytes() -> impl Strategy<Value = Vec<u8>> {
    let target_byte = prop_oneof![0x21u8..=0x7e, 0x80u8..=0xff];
    let value_byte = prop_oneof![Just(b'\t'), 0x20u8..=0x7e, 0x80u8..=0xff];
    (
        proptest::collection::vec(target_byte, 0..20),
        proptest::collection::vec(
            (
                "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,10}",
                proptest::collection::vec(value_byte, 0..30),
            ),
            0..6,
        ),
        proptest::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(|(target, headers, trailing)| {
            let mut bytes = b"GET /".to_vec();
            bytes.extend_from_slice(&target);
            bytes.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n");
            for (name, value) in headers {
                bytes.extend_from_slice(name.as_bytes());
                bytes.extend_from_slice(b": ");
                bytes.extend_from_slice(&value);
                bytes.extend_from_slice(b"\r\n");
            }
            bytes.extend_from_slice(b"\r\n");
            bytes.extend_from_slice(&trailing);
            bytes
        })
}

fn response_bytes() -> impl Strategy<Value = Vec<u8>> {
    let required = vec![
        "Upgrade: websocket".to_owned(),
        "Connection: Upgrade".to_owned(),
        format!("Sec-WebSocket-Accept: {}", AcceptKey::from_nonce(&NONCE)),
    ];
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..300),
        4 => head(
            &[
                "HTTP/1.1 101 Switching Protocols",
                "HTTP/1.1 101 ",
                "HTTP/1.0 101 Switching Protocols",
                "HTTP/1.1 403 Forbidden",
                "HTTP/1.1 1O1 Typo",
            ],
            required,
        ),
    ]
}

/// Chunk lengths cycled over the input; 0 means "ask again before the next byte".
fn chunk_lengths() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0usize..40, 1..12)
}

const INCOMPLETE: &str = "incomplete";

/// Feeds `bytes` in chunks to `parse`, which sees the whole buffer so far each
/// time and describes its outcome, until the outcome is other than
/// [`INCOMPLETE`] or the bytes run out.
fn feed_in_chunks(
    bytes: &[u8],
    chunks: &[usize],
    mut parse: impl FnMut(&[u8]) -> String,
) -> String {
    let mut received = Vec::new();
    let mut lengths = chunks.iter().cycle();
    loop {
        let length = *lengths.next().unwrap();
        if length == 0 {
            // Asking again about the same bytes must not change the answer.
            let outcome = parse(&received);
            if outcome != INCOMPLETE {
                return outcome;
            }
        }
        // At least one byte per step, so the loop always ends.
        let take = length.max(1).min(bytes.len() - received.len());
        received.extend_from_slice(&bytes[received.len()..received.len() + take]);
        let outcome = parse(&received);
        if outcome != INCOMPLETE || received.len() == bytes.len() {
            return outcome;
        }
    }
}

fn describe<T: std::fmt::Debug, E: std::fmt::Debug>(result: Result<Option<T>, E>) -> String {
    match result {
        Ok(None) => INCOMPLETE.to_owned(),
        Ok(Some(value)) => format!("{value:?}"),
        Err(error) => format!("{error:?}"),
    }
}

proptest! {
    #[test]
    fn request_split_anywhere_parses_like_the_whole(
        bytes in request_bytes(),
        chunks in chunk_lengths(),
        limits in limits(),
    ) {
        let whole = describe(parse_request(&bytes, &limits));
        let mut parser = ServerHandshake::new(limits);
        let pieces = feed_in_chunks(&bytes, &chunks, |buf| describe(parser.parse(buf)));
        prop_assert_eq!(pieces, whole);
    }

    #[test]
    fn request_head_len_is_within_buffer_and_cap(
        bytes in request_bytes(),
        limits in limits(),
    ) {
        match parse_request(&bytes, &limits) {
            Ok(Some(parsed)) => {
                prop_assert!(parsed.head_len <= bytes.len());
                prop_assert!(parsed.head_len <= limits.max_head_bytes);
                // The head alone says the same; what follows it is not read.
                let alone = parse_request(&bytes[..parsed.head_len], &limits);
                prop_assert_eq!(alone, Ok(Some(parsed)));
            }
            Ok(None) => prop_assert!(bytes.len() <= limits.max_head_bytes),
            Err(error) => {
                let status = error.status();
                prop_assert!([400, 405, 426, 431].contains(&status));
                let response = error.response();
                let expected_start = format!("HTTP/1.1 {status} ");
                prop_assert!(response.starts_with(expected_start.as_bytes()));
                if let HandshakeError::HeadTooLarge { .. } = error {
                    prop_assert!(bytes.len() > limits.max_head_bytes);
                }
            }
        }
    }

    #[test]
    fn response_split_anywhere_parses_like_the_whole(
        bytes in response_bytes(),
        chunks in chunk_lengths(),
        limits in limits(),
    ) {
        let fresh = || {
            ClientHandshake::new("example.com", 80, "/", NONCE, &["chat"], &[])
                .unwrap()
                .with_limits(limits)
        };
        let whole = describe(fresh().parse_response(&bytes));
        let mut client = fresh();
        let pieces = feed_in_chunks(&bytes, &chunks, |buf| describe(client.parse_response(buf)));
        prop_assert_eq!(pieces, whole);
    }

    #[test]
    fn response_outcomes_are_consistent(bytes in response_bytes()) {
        let mut client = ClientHandshake::new("h", 80, "/", NONCE, &["chat"], &[]).unwrap();
        match client.parse_response(&bytes) {
            Ok(Some(response)) => {
                prop_assert!(response.head_len <= bytes.len());
                prop_assert!(bytes.starts_with(b"HTTP/1.1 101") || bytes.starts_with(b"\r\n") || bytes.starts_with(b"\n"));
                let expected = AcceptKey::from_nonce(&NONCE);
                let accept = response.headers().get("sec-websocket-accept");
                prop_assert_eq!(accept, Some(expected.as_bytes()));
                if let Some(protocol) = response.subprotocol() {
                    prop_assert_eq!(protocol, "chat");
                }
            }
            Ok(None) => {}
            Err(ResponseError::Refused { status }) => prop_assert_ne!(status, 101),
            Err(_) => {}
        }
    }

    #[test]
    fn header_iteration_matches_httparse(bytes in request_bytes()) {
        let mut slots = [httparse::EMPTY_HEADER; 128];
        let mut reference = httparse::Request::new(&mut slots);
        let Ok(httparse::Status::Complete(_)) = reference.parse(&bytes) else {
            return Ok(());
        };
        let expected: Vec<(String, Vec<u8>)> = reference
            .headers
            .iter()
            .map(|header| (header.name.to_owned(), header.value.to_vec()))
            .collect();
        let limits = HeadLimits { max_head_bytes: usize::MAX, max_headers: 128 };
        let headers = match parse_request(&bytes, &limits) {
            Ok(Some(ParsedRequest { kind: RequestKind::Upgrade(request), .. })) => request.headers(),
            Ok(Some(ParsedRequest { kind: RequestKind::PlainHttp(request), .. })) => request.headers(),
            // Rejected by a WebSocket rule: nothing to iterate.
            _ => return Ok(()),
        };
        let actual: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(name, value)| (name.to_owned(), value.to_vec()))
            .collect();
        prop_assert_eq!(actual, expected);
    }

    /// The byte check that refuses a head before its line ends is looser
    /// than `httparse`: bytes `httparse` finds no fault in (complete or not)
    /// are never refused as malformed, and heads with any bytes a target or
    /// a header value may hold, obs-text and HT included, parse.
    #[test]
    fn the_byte_check_refuses_only_what_httparse_refuses(
        bytes in prop_oneof![request_bytes(), head_with_any_value_bytes()],
    ) {
        let mut slots = [httparse::EMPTY_HEADER; 128];
        let mut reference = httparse::Request::new(&mut slots);
        let reference = reference.parse(&bytes);
        let limits = HeadLimits { max_head_bytes: usize::MAX, max_headers: 128 };
        let ours = parse_request(&bytes, &limits);
        if reference.is_ok() {
            prop_assert!(
                !matches!(ours, Err(HandshakeError::Malformed(_))),
                "{:?}: httparse {:?}, ours {:?}",
                String::from_utf8_lossy(&bytes),
                reference,
                ours
            );
        }
        if let Ok(httparse::Status::Complete(len)) = reference {
            let head_len = ours.ok().flatten().map(|parsed| parsed.head_len);
            prop_assert!(head_len.is_none_or(|head_len| head_len == len));
        }
    }

    #[test]
    fn any_valid_client_request_round_trips(
        host in prop_oneof![
            "[a-z]{1,10}(\\.[a-z]{1,6}){0,2}",
            Just("127.0.0.1".to_owned()),
            Just("::1".to_owned()),
        ],
        port in 1u16..,
        path in "/[!-~&&[^#]]{0,30}",
        nonce in any::<[u8; 16]>(),
        offered in proptest::collection::btree_set("[a-z0-9.]{1,8}", 0..4),
        pick in any::<prop::sample::Index>(),
    ) {
        let offered: Vec<&str> = offered.iter().map(String::as_str).collect();
        let mut client = ClientHandshake::new(&host, port, &path, nonce, &offered, &[]).unwrap();
        let mut server = ServerHandshake::default();
        let request = match server.parse(client.request()) {
            Ok(Some(ParsedRequest { kind: RequestKind::Upgrade(request), head_len })) => {
                prop_assert_eq!(head_len, client.request().len());
                request
            }
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        };
        prop_assert_eq!(request.path(), path.as_str());
        prop_assert_eq!(request.subprotocols().collect::<Vec<_>>(), offered.clone());
        let selected = (!offered.is_empty()).then(|| offered[pick.index(offered.len())]);
        let mut response = Vec::new();
        request.write_switching_protocols(selected, &[], &mut response).unwrap();
        match client.parse_response(&response) {
            Ok(Some(accepted)) => {
                prop_assert_eq!(accepted.head_len, response.len());
                prop_assert_eq!(accepted.subprotocol(), selected);
            }
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        }
    }
}
