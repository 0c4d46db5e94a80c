//! The HTTP upgrade handshake, both roles, against RFC 6455 §4 and RFC 7230.

use ringws_proto::handshake::{
    parse_request, write_http_response, write_plain_response, AcceptKey, BuildError,
    ClientHandshake, HandshakeError, HandshakeResponse, HeadLimits, ParsedRequest, RequestKind,
    ResponseError, ServerHandshake, UpgradeRequest, UrlError, WsUrl,
};

/// The client request of RFC 6455 §1.2.
const RFC_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\n\
Host: server.example.com\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://example.com\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Version: 13\r\n\
\r\n";

const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const SAMPLE_NONCE: [u8; 16] = *b"the sample nonce";

/// A minimal valid upgrade request with `headers` in place of the defaults
/// whose names they repeat; `None` values drop a default header.
fn request_with(request_line: &str, overrides: &[(&str, Option<&str>)]) -> Vec<u8> {
    let defaults = [
        ("Host", "example.com"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", SAMPLE_KEY),
        ("Sec-WebSocket-Version", "13"),
    ];
    let mut out = format!("{request_line}\r\n");
    for (name, value) in defaults {
        if !overrides.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    for (name, value) in overrides {
        if let Some(value) = value {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    out.push_str("\r\n");
    out.into_bytes()
}

fn upgrade(parsed: Option<ParsedRequest<'_>>) -> (UpgradeRequest<'_>, usize) {
    match parsed {
        Some(ParsedRequest {
            kind: RequestKind::Upgrade(request),
            head_len,
        }) => (request, head_len),
        other => panic!("expected an upgrade request, got {other:?}"),
    }
}

fn rejection(request: &[u8]) -> HandshakeError {
    match parse_request(request, &HeadLimits::DEFAULT) {
        Err(error) => error,
        Ok(other) => panic!(
            "expected a rejection of {:?}, got {other:?}",
            String::from_utf8_lossy(request)
        ),
    }
}

/// Splits an HTTP response into status line, header lines and body, checking
/// that `Content-Length` matches the body.
fn split_response(response: &[u8]) -> (String, Vec<String>, String) {
    let text = String::from_utf8(response.to_vec()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n").map(str::to_owned);
    let status_line = lines.next().unwrap();
    let headers: Vec<String> = lines.collect();
    let content_length = headers
        .iter()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .unwrap();
    assert_eq!(content_length.parse::<usize>().unwrap(), body.len());
    (status_line, headers, body.to_owned())
}

#[test]
fn accept_key_of_the_rfc_sample() {
    assert_eq!(
        AcceptKey::from_key(SAMPLE_KEY.as_bytes()).as_str(),
        SAMPLE_ACCEPT
    );
    assert_eq!(AcceptKey::from_nonce(&SAMPLE_NONCE).as_str(), SAMPLE_ACCEPT);
    assert_eq!(
        AcceptKey::from_nonce(&SAMPLE_NONCE).to_string(),
        SAMPLE_ACCEPT
    );
}

#[test]
fn rfc_request_is_an_upgrade_with_its_fields() {
    let (request, head_len) = upgrade(parse_request(RFC_REQUEST, &HeadLimits::DEFAULT).unwrap());
    assert_eq!(head_len, RFC_REQUEST.len());
    assert_eq!(request.path(), "/chat");
    assert_eq!(request.host(), "server.example.com");
    assert_eq!(request.key(), SAMPLE_KEY);
    assert_eq!(request.accept_key().as_str(), SAMPLE_ACCEPT);
    assert_eq!(request.origin(), Some("http://example.com"));
    assert_eq!(
        request.subprotocols().collect::<Vec<_>>(),
        ["chat", "superchat"]
    );
    assert_eq!(request.extensions().count(), 0);
    assert_eq!(request.headers().len(), 7);
    assert_eq!(
        request.headers().get("sec-websocket-version"),
        Some(&b"13"[..])
    );
    assert_eq!(
        request.headers().get_str("ORIGIN"),
        Some("http://example.com")
    );
    assert_eq!(request.headers().get("X-Absent"), None);
}

#[test]
fn switching_protocols_response_matches_rfc() {
    let (request, _) = upgrade(parse_request(RFC_REQUEST, &HeadLimits::DEFAULT).unwrap());
    let mut out = b"left alone".to_vec();
    request
        .write_switching_protocols(Some("chat"), &[("X-Served-By", "ringws")], &mut out)
        .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "left aloneHTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
         Sec-WebSocket-Protocol: chat\r\n\
         X-Served-By: ringws\r\n\
         \r\n"
    );
}

#[test]
fn switching_protocols_refuses_what_the_client_did_not_ask_for() {
    let (request, _) = upgrade(parse_request(RFC_REQUEST, &HeadLimits::DEFAULT).unwrap());
    let mut out = Vec::new();
    assert_eq!(
        request.write_switching_protocols(Some("Chat"), &[], &mut out),
        Err(BuildError::SubprotocolNotOffered("Chat".into()))
    );
    assert_eq!(
        request.write_switching_protocols(None, &[("sec-websocket-accept", "x")], &mut out),
        Err(BuildError::ReservedHeader("sec-websocket-accept".into()))
    );
    assert_eq!(
        request.write_switching_protocols(None, &[("Content-Length", "5")], &mut out),
        Err(BuildError::ReservedHeader("Content-Length".into()))
    );
    assert_eq!(
        request.write_switching_protocols(None, &[("X-A", "b\r\nX-Injected: c")], &mut out),
        Err(BuildError::InvalidHeaderValue("X-A".into()))
    );
    assert_eq!(
        request.write_switching_protocols(None, &[("X A", "b")], &mut out),
        Err(BuildError::InvalidHeaderName("X A".into()))
    );
    assert!(out.is_empty(), "nothing is written on error");

    let no_protocols = request_with("GET / HTTP/1.1", &[]);
    let (request, _) = upgrade(parse_request(&no_protocols, &HeadLimits::DEFAULT).unwrap());
    assert_eq!(
        request.write_switching_protocols(Some("chat"), &[], &mut out),
        Err(BuildError::SubprotocolNotOffered("chat".into()))
    );
}

#[test]
fn switching_protocols_refuses_every_websocket_handshake_header_as_extra() {
    let (request, _) = upgrade(parse_request(RFC_REQUEST, &HeadLimits::DEFAULT).unwrap());
    let mut out = Vec::new();
    for name in [
        "Sec-WebSocket-Accept",
        "Sec-WebSocket-Protocol",
        "Sec-WebSocket-Extensions",
        "Sec-WebSocket-Key",
        "sec-websocket-version",
    ] {
        assert_eq!(
            request.write_switching_protocols(None, &[(name, "13")], &mut out),
            Err(BuildError::ReservedHeader(name.into())),
            "{name}"
        );
    }
    assert!(out.is_empty(), "nothing is written on error");
}

#[test]
fn each_rejection_rule_has_its_status() {
    let cases: Vec<(Vec<u8>, HandshakeError, u16)> = vec![
        (
            request_with("POST /chat HTTP/1.1", &[]),
            HandshakeError::MethodNotAllowed,
            405,
        ),
        (
            request_with("GET /chat HTTP/1.0", &[]),
            HandshakeError::HttpVersionNotSupported,
            400,
        ),
        (
            request_with("GET / HTTP/1.1", &[("Host", None)]),
            HandshakeError::MissingHost,
            400,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nUpgrade: websocket\r\n\r\n".to_vec(),
            HandshakeError::DuplicateHeader("Host"),
            400,
        ),
        (
            request_with("GET / HTTP/1.1", &[("Host", Some(""))]),
            HandshakeError::InvalidHeaderValue("Host"),
            400,
        ),
        (
            request_with("GET / HTTP/1.1", &[("Upgrade", Some("h2c"))]),
            HandshakeError::NotWebSocketUpgrade,
            400,
        ),
        (
            request_with("GET / HTTP/1.1", &[("Upgrade", None)]),
            HandshakeError::NotWebSocketUpgrade,
            400,
        ),
        (
            request_with("GET / HTTP/1.1", &[("Connection", Some("keep-alive"))]),
            HandshakeError::MissingConnectionUpgrade,
            400,
        ),
        (
            request_with("GET / HTTP/1.1", &[("Connection", None)]),
            HandshakeError::MissingConnectionUpgrade,
            400,
        ),
        (
            request_with("GET / HTTP/1.1", &[("Connection", Some("upgraded"))]),
            HandshakeError::MissingConnectionUpgrade,
            400,
        ),
        (
            request_with("GET / HTTP/1.1", &[("Sec-WebSocket-Version", Some("8"))]),
            HandshakeError::UnsupportedVersion,
            426,
        ),
        (
            request_with(
                "GET / HTTP/1.1",
                &[("Sec-WebSocket-Version", Some("13, 8"))],
            ),
            HandshakeError::UnsupportedVersion,
            426,
        ),
        (
            request_with("GET / HTTP/1.1", &[("Sec-WebSocket-Version", None)]),
            HandshakeError::UnsupportedVersion,
            426,
        ),
        (
            request_with("GET / HTTP/1.1", &[("Sec-WebSocket-Key", None)]),
            HandshakeError::MissingKey,
            400,
        ),
        // Base64 of 15 bytes.
        (
            request_with(
                "GET / HTTP/1.1",
                &[("Sec-WebSocket-Key", Some("dGhlIHNhbXBsZSBub25j"))],
            ),
            HandshakeError::InvalidKey,
            400,
        ),
        // Base64 of 17 bytes.
        (
            request_with(
                "GET / HTTP/1.1",
                &[("Sec-WebSocket-Key", Some("dGhlIHNhbXBsZSBub25jZXM="))],
            ),
            HandshakeError::InvalidKey,
            400,
        ),
        // 24 characters, but not base64.
        (
            request_with(
                "GET / HTTP/1.1",
                &[("Sec-WebSocket-Key", Some("dGhlIHNhbXBsZSBub25jZQ!!"))],
            ),
            HandshakeError::InvalidKey,
            400,
        ),
        // Non-zero bits after the last full byte: not canonical base64.
        (
            request_with(
                "GET / HTTP/1.1",
                &[("Sec-WebSocket-Key", Some("dGhlIHNhbXBsZSBub25jZR=="))],
            ),
            HandshakeError::InvalidKey,
            400,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
                .to_vec(),
            HandshakeError::DuplicateHeader("Sec-WebSocket-Key"),
            400,
        ),
        (
            request_with(
                "GET / HTTP/1.1",
                &[("Sec-WebSocket-Protocol", Some("chat, super chat"))],
            ),
            HandshakeError::InvalidHeaderValue("Sec-WebSocket-Protocol"),
            400,
        ),
        (
            request_with(
                "GET / HTTP/1.1",
                &[("Origin", Some("http://\u{e9}.example"))],
            ),
            HandshakeError::InvalidHeaderValue("Origin"),
            400,
        ),
        // Headers that may appear once, repeated, and a list split over
        // headers whose second part is bad: each is found however the
        // headers are looked up.
        (
            request_with(
                "GET / HTTP/1.1",
                &[("Origin", Some("http://a")), ("origin", Some("http://a"))],
            ),
            HandshakeError::DuplicateHeader("Origin"),
            400,
        ),
        (
            request_with(
                "GET / HTTP/1.1",
                &[
                    ("Sec-WebSocket-Version", Some("13")),
                    ("SEC-WEBSOCKET-VERSION", Some("13")),
                ],
            ),
            HandshakeError::UnsupportedVersion,
            426,
        ),
        (
            request_with(
                "GET / HTTP/1.1",
                &[
                    ("Sec-WebSocket-Protocol", Some("chat")),
                    ("Sec-WebSocket-Protocol", Some("super chat")),
                ],
            ),
            HandshakeError::InvalidHeaderValue("Sec-WebSocket-Protocol"),
            400,
        ),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
            HandshakeError::Malformed("invalid method or request target"),
            400,
        ),
        (
            b"GET / HTTP/2.0\r\n\r\n".to_vec(),
            HandshakeError::Malformed("invalid HTTP version"),
            400,
        ),
        (
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n".to_vec(),
            HandshakeError::Malformed("invalid header name"),
            400,
        ),
    ];
    for (request, expected, status) in cases {
        let error = rejection(&request);
        assert_eq!(error, expected, "{:?}", String::from_utf8_lossy(&request));
        assert_eq!(error.status(), status, "{error}");
        let (status_line, headers, body) = split_response(&error.response());
        assert!(
            status_line.starts_with(&format!("HTTP/1.1 {status} ")),
            "{status_line}"
        );
        // A 426 names `Upgrade`, which `Connection` must list (RFC 7230
        // §6.7); every refusal closes the connection.
        let connection = if status == 426 {
            "Connection: Upgrade, close"
        } else {
            "Connection: close"
        };
        assert!(headers.iter().any(|line| line == connection), "{headers:?}");
        assert_eq!(
            headers.iter().any(|line| line == "Upgrade: websocket"),
            status == 426
        );
        assert_eq!(body, format!("{error}\n"));
        assert_eq!(
            headers
                .iter()
                .any(|line| line == "Sec-WebSocket-Version: 13"),
            status == 426
        );
        assert_eq!(
            headers.iter().any(|line| line == "Allow: GET"),
            status == 405
        );
    }
}

#[test]
fn status_lines_of_error_responses() {
    let status_line = |error: HandshakeError| split_response(&error.response()).0;
    assert_eq!(
        status_line(HandshakeError::UnsupportedVersion),
        "HTTP/1.1 426 Upgrade Required"
    );
    assert_eq!(
        status_line(HandshakeError::HeadTooLarge { limit: 10 }),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    assert_eq!(
        status_line(HandshakeError::MissingKey),
        "HTTP/1.1 400 Bad Request"
    );
    assert_eq!(
        status_line(HandshakeError::MethodNotAllowed),
        "HTTP/1.1 405 Method Not Allowed"
    );
}

#[test]
fn lenient_forms_that_rfc_7230_allows() {
    let request = b"GET /x HTTP/1.1\n\
host: example.com:9000\n\
connection: keep-alive,  Upgrade\n\
upgrade: WebSocket\n\
sec-websocket-key:dGhlIHNhbXBsZSBub25jZQ==   \n\
SEC-WEBSOCKET-VERSION: 13\n\
Sec-WebSocket-Protocol: ,chat,\n\
Sec-WebSocket-Protocol: v2.json\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\n\
\n";
    let (parsed, head_len) = upgrade(parse_request(request, &HeadLimits::DEFAULT).unwrap());
    assert_eq!(head_len, request.len());
    assert_eq!(parsed.host(), "example.com:9000");
    assert_eq!(parsed.key(), SAMPLE_KEY);
    assert_eq!(parsed.origin(), None);
    assert_eq!(
        parsed.subprotocols().collect::<Vec<_>>(),
        ["chat", "v2.json"]
    );
    assert_eq!(
        parsed.extensions().collect::<Vec<_>>(),
        [&b"permessage-deflate; client_max_window_bits"[..]]
    );

    // Upgrade and Connection may also be split over several headers.
    let split = b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: foo\r\nUpgrade: websocket\r\n\
Connection: close\r\nConnection: upgrade\r\nSec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    upgrade(parse_request(split, &HeadLimits::DEFAULT).unwrap());

    // RFC 7230 §3.5: empty lines before the request line are ignored.
    let mut leading = b"\r\n\r\n".to_vec();
    leading.extend_from_slice(RFC_REQUEST);
    let (_, head_len) = upgrade(parse_request(&leading, &HeadLimits::DEFAULT).unwrap());
    assert_eq!(head_len, leading.len());
}

#[test]
fn plain_requests_are_left_to_the_server() {
    let metrics = b"GET /metrics HTTP/1.1\r\nHost: localhost:9000\r\nAccept: */*\r\n\r\n";
    match parse_request(metrics, &HeadLimits::DEFAULT).unwrap() {
        Some(ParsedRequest {
            kind: RequestKind::PlainHttp(plain),
            head_len,
        }) => {
            assert_eq!(head_len, metrics.len());
            assert_eq!(plain.method(), "GET");
            assert_eq!(plain.path(), "/metrics");
            assert_eq!(plain.minor_version(), 1);
            assert_eq!(plain.headers().get_str("accept"), Some("*/*"));
        }
        other => panic!("expected plain HTTP, got {other:?}"),
    }

    // An upgrade to something other than WebSocket is not an upgrade attempt.
    let h2c = b"POST /api HTTP/1.0\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\nbody";
    match parse_request(h2c, &HeadLimits::DEFAULT).unwrap() {
        Some(ParsedRequest {
            kind: RequestKind::PlainHttp(plain),
            head_len,
        }) => {
            assert_eq!(&h2c[head_len..], b"body");
            assert_eq!(plain.method(), "POST");
            assert_eq!(plain.minor_version(), 0);
        }
        other => panic!("expected plain HTTP, got {other:?}"),
    }

    // A stray Sec-WebSocket-Key makes it an attempt, and a failed one.
    let half = b"GET /metrics HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: x\r\n\r\n";
    assert_eq!(rejection(half), HandshakeError::NotWebSocketUpgrade);
}

#[test]
fn plain_response_writer() {
    let mut out = Vec::new();
    write_plain_response(200, "text/plain; version=0.0.4", b"up 1\n", &mut out).unwrap();
    assert_eq!(
        out,
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain; version=0.0.4\r\n\
Content-Length: 5\r\n\r\nup 1\n"
    );
    assert_eq!(
        write_plain_response(99, "text/plain", b"", &mut out),
        Err(BuildError::InvalidStatus(99))
    );
    assert_eq!(
        write_plain_response(200, "a\nb", b"", &mut out),
        Err(BuildError::InvalidHeaderValue("Content-Type".into()))
    );
}

#[test]
fn http_responses_carry_extra_headers_and_a_head_answer_has_no_body() {
    let mut out = Vec::new();
    let headers = [("Content-Type", "text/plain"), ("Allow", "GET, HEAD")];
    write_http_response(405, &headers, b"no\n", false, &mut out).unwrap();
    assert_eq!(
        out,
        b"HTTP/1.1 405 Method Not Allowed\r\nConnection: close\r\nContent-Type: text/plain\r\n\
Allow: GET, HEAD\r\nContent-Length: 3\r\n\r\nno\n"
    );
    out.clear();
    write_http_response(200, &headers[..1], b"twelve bytes", true, &mut out).unwrap();
    assert_eq!(
        out,
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\
Content-Length: 12\r\n\r\n"
    );
    out.clear();
    // The framing is ringws's; a bad name or value is refused; nothing is
    // written on error.
    for reserved in [
        "connection",
        "Content-Length",
        "TRANSFER-ENCODING",
        "Upgrade",
    ] {
        assert_eq!(
            write_http_response(200, &[(reserved, "x")], b"", false, &mut out),
            Err(BuildError::ReservedHeader(reserved.into()))
        );
    }
    assert_eq!(
        write_http_response(200, &[("Bad Name", "x")], b"", false, &mut out),
        Err(BuildError::InvalidHeaderName("Bad Name".into()))
    );
    assert_eq!(
        write_http_response(
            200,
            &[("X-Split", "a\r\nInjected: 1")],
            b"",
            false,
            &mut out
        ),
        Err(BuildError::InvalidHeaderValue("X-Split".into()))
    );
    assert!(out.is_empty());
    // One Content-Type; no interim statuses; 204 and 304 carry no body.
    let twice = [
        ("Content-Type", "text/plain"),
        ("content-type", "text/html"),
    ];
    assert_eq!(
        write_http_response(200, &twice, b"", false, &mut out),
        Err(BuildError::DuplicateHeader("content-type".into()))
    );
    for interim in [100, 101, 199] {
        assert_eq!(
            write_http_response(interim, &[], b"", false, &mut out),
            Err(BuildError::InvalidStatus(interim))
        );
    }
    assert!(out.is_empty());
    write_http_response(204, &[], b"ignored", false, &mut out).unwrap();
    assert_eq!(out, b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    out.clear();
    write_http_response(304, &[("ETag", "\"1\"")], b"ignored", false, &mut out).unwrap();
    assert_eq!(
        out,
        b"HTTP/1.1 304 Not Modified\r\nConnection: close\r\nETag: \"1\"\r\n\r\n"
    );
}

#[test]
fn request_delivered_one_byte_at_a_time() {
    let mut parser = ServerHandshake::default();
    let mut buf = Vec::new();
    for (index, &byte) in RFC_REQUEST.iter().enumerate() {
        buf.push(byte);
        let parsed = parser.parse(&buf).unwrap();
        if index + 1 < RFC_REQUEST.len() {
            assert!(parsed.is_none(), "complete after {} bytes", index + 1);
        } else {
            let (request, head_len) = upgrade(parsed);
            assert_eq!(head_len, RFC_REQUEST.len());
            assert_eq!(request.subprotocols().count(), 2);
        }
    }
}

#[test]
fn rejection_found_as_soon_as_its_line_is_complete() {
    let mut parser = ServerHandshake::default();
    assert_eq!(parser.parse(b"GET / HTTP/1.1\r\nBad Na").unwrap(), None);
    assert_eq!(
        parser
            .parse(b"GET / HTTP/1.1\r\nBad Name: x\r\n")
            .unwrap_err(),
        HandshakeError::Malformed("invalid header name")
    );
    // Asking again gives the same answer.
    assert_eq!(
        parser
            .parse(b"GET / HTTP/1.1\r\nBad Name: x\r\n")
            .unwrap_err(),
        HandshakeError::Malformed("invalid header name")
    );
}

/// Feeds `bytes` one at a time; returns how many it took to get an answer
/// other than "read more", and that answer.
fn first_answer(bytes: &[u8]) -> (usize, Result<Option<ParsedRequest<'_>>, HandshakeError>) {
    let mut parser = ServerHandshake::default();
    for end in 1..=bytes.len() {
        match parser.parse(&bytes[..end]) {
            Ok(None) => {}
            answer => return (end, answer),
        }
    }
    (bytes.len(), Ok(None))
}

#[test]
fn a_byte_no_head_may_hold_is_refused_before_its_line_ends() {
    const CONTROL: HandshakeError =
        HandshakeError::Malformed("control character in the request head");
    const METHOD: HandshakeError = HandshakeError::Malformed("invalid method or request target");
    // (bytes, how many are needed to refuse them, the refusal); none ends
    // its line.
    let cases: [(&[u8], usize, HandshakeError); 9] = [
        // A TLS ClientHello: record type 0x16, version 3.1, length.
        (&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01], 1, METHOD),
        // Binary and NUL in the method, a byte no method may hold.
        (b"GE\0T / HTTP/1.1", 3, METHOD),
        (b"G\xc3\xa9T / HTTP/1.1", 2, METHOD),
        (b"P(ST / HTTP/1.1", 2, METHOD),
        (b"\r\n\x16\x03\x01", 3, METHOD),
        // Control bytes in the request target, the version, a header.
        (b"GET /a\x01b HTTP/1.1", 7, CONTROL),
        (b"GET / HTTP/1.1\x1b[0m", 15, CONTROL),
        (b"GET / HTTP/1.1\r\nHost: a\0b", 24, CONTROL),
        (b"GET / HTTP/1.1\r\nX\x7f-Y: 1", 18, CONTROL),
    ];
    for (bytes, needed, expected) in cases {
        let shown = String::from_utf8_lossy(bytes);
        let (taken, answer) = first_answer(bytes);
        assert_eq!((taken, answer), (needed, Err(expected)), "{shown:?}");
        // All at once, and asked again with more bytes: the same answer.
        assert_eq!(rejection(bytes), expected, "{shown:?}");
        let mut parser = ServerHandshake::default();
        assert_eq!(parser.parse(bytes), Err(expected), "{shown:?}");
        let mut longer = bytes.to_vec();
        longer.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parser.parse(&longer), Err(expected), "{shown:?}");
        assert_eq!(expected.status(), 400);
    }

    // A complete line before the byte still decides first, however the
    // bytes arrive.
    let earlier = b"GET / HTTP/1.1\r\nBad Name: x\r\nY: \0";
    assert_eq!(
        rejection(earlier),
        HandshakeError::Malformed("invalid header name")
    );
    assert_eq!(
        first_answer(earlier).1,
        Err(HandshakeError::Malformed("invalid header name"))
    );
    // Past the size cap the cap decides, as before.
    let limits = HeadLimits {
        max_head_bytes: 8,
        max_headers: 64,
    };
    assert_eq!(
        parse_request(b"GET /abc\0", &limits),
        Err(HandshakeError::HeadTooLarge { limit: 8 })
    );
    assert_eq!(parse_request(b"GET /ab\0", &limits), Err(CONTROL));
}

#[test]
fn heads_with_obs_text_tabs_and_utf8_targets_still_parse() {
    // obs-text (0x80-0xFF) and HT in values, UTF-8 in the target, empty
    // lines before the request line, bare LF line ends, and any bytes at
    // all after the head (the client's first frame).
    let heads: [&[u8]; 4] = [
        b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
Connection:\tUpgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nUser-Agent: caf\xe9\tv\xff\x80 \r\nX-Empty:\r\n\r\n",
        b"\r\n\nGET / HTTP/1.1\nHost: example.com\nUpgrade: websocket\nConnection: Upgrade\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13\nX-A: \xa0\xfe\t!~\n\n",
        b"GET /metrics?q=\xe2\x9c\x93 HTTP/1.1\r\nHost: a\r\nCookie: \x80\x81\xfe\xff\r\n\r\n",
        RFC_REQUEST,
    ];
    for head in heads {
        let shown = String::from_utf8_lossy(head);
        let mut buf = head.to_vec();
        buf.extend_from_slice(&[0x81, 0x80, 0x00, 0x16, 0x03, 0x01, 0x7f, 0x0b]);
        let whole = parse_request(&buf, &HeadLimits::DEFAULT)
            .unwrap_or_else(|error| panic!("{shown:?}: {error}"))
            .unwrap_or_else(|| panic!("{shown:?} incomplete"));
        assert_eq!(whole.head_len, head.len(), "{shown:?}");
        let (taken, answer) = first_answer(&buf);
        assert_eq!(taken, head.len(), "{shown:?}");
        assert_eq!(answer, Ok(Some(whole)), "{shown:?}");
    }
    let (request, _) = upgrade(parse_request(heads[0], &HeadLimits::DEFAULT).unwrap());
    assert_eq!(request.path(), "/café");
    assert_eq!(
        request.headers().get("User-Agent"),
        Some(&b"caf\xe9\tv\xff\x80"[..])
    );
}

#[test]
fn reset_parser_reads_a_new_buffer() {
    let mut parser = ServerHandshake::default();
    assert_eq!(parser.parse(&RFC_REQUEST[..40]).unwrap(), None);
    parser.reset();
    let plain = b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n";
    assert!(matches!(
        parser.parse(plain).unwrap(),
        Some(ParsedRequest {
            kind: RequestKind::PlainHttp(_),
            ..
        })
    ));
}

#[test]
fn plain_requests_need_one_valid_host_like_upgrades() {
    // RFC 7230 §5.4: 400 for an HTTP/1.1 request without `Host`, and for
    // any request with two or an invalid one.
    let refused: [(&[u8], HandshakeError); 4] = [
        (
            b"GET /metrics HTTP/1.1\r\n\r\n",
            HandshakeError::MissingHost,
        ),
        (
            b"GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            HandshakeError::DuplicateHeader("Host"),
        ),
        (
            b"GET /metrics HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n",
            HandshakeError::DuplicateHeader("Host"),
        ),
        (
            b"GET /metrics HTTP/1.1\r\nHost: a b\r\n\r\n",
            HandshakeError::InvalidHeaderValue("Host"),
        ),
    ];
    for (request, expected) in refused {
        let error = rejection(request);
        assert_eq!(error, expected, "{:?}", String::from_utf8_lossy(request));
        assert_eq!(error.status(), 400);
    }
    // HTTP/1.0 may omit it.
    for request in [
        &b"GET /metrics HTTP/1.0\r\n\r\n"[..],
        &b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n"[..],
    ] {
        assert!(matches!(
            parse_request(request, &HeadLimits::DEFAULT).unwrap(),
            Some(ParsedRequest {
                kind: RequestKind::PlainHttp(_),
                ..
            })
        ));
    }
}

#[test]
fn pipelined_frame_after_the_headers_is_not_consumed() {
    // A masked text frame "Hi" right behind the request, in the same read.
    let frame = [0x81, 0x82, 0x01, 0x02, 0x03, 0x04, b'H' ^ 0x01, b'i' ^ 0x02];
    let mut buf = RFC_REQUEST.to_vec();
    buf.extend_from_slice(&frame);
    let (_, head_len) = upgrade(parse_request(&buf, &HeadLimits::DEFAULT).unwrap());
    assert_eq!(head_len, RFC_REQUEST.len());
    assert_eq!(&buf[head_len..], frame);

    // The same when the final CRLF and the frame arrive together.
    let mut parser = ServerHandshake::default();
    assert_eq!(parser.parse(&buf[..RFC_REQUEST.len() - 1]).unwrap(), None);
    let (_, head_len) = upgrade(parser.parse(&buf).unwrap());
    assert_eq!(&buf[head_len..], frame);
}

#[test]
fn head_size_cap_gives_431() {
    let limits = HeadLimits {
        max_head_bytes: RFC_REQUEST.len(),
        max_headers: 64,
    };
    // Exactly at the cap: accepted.
    upgrade(parse_request(RFC_REQUEST, &limits).unwrap());
    // One byte over: refused, even with the bytes all there.
    let mut long = RFC_REQUEST[..RFC_REQUEST.len() - 2].to_vec();
    long.extend_from_slice(b"X: \r\n\r\n");
    let error = parse_request(&long, &limits).unwrap_err();
    assert_eq!(
        error,
        HandshakeError::HeadTooLarge {
            limit: limits.max_head_bytes
        }
    );
    assert_eq!(error.status(), 431);

    // A head that never ends is refused once it passes the default 8 KiB.
    let mut parser = ServerHandshake::default();
    let mut endless = b"GET / HTTP/1.1\r\n".to_vec();
    let mut refused_at = None;
    for line in 0..1000 {
        endless.extend_from_slice(format!("X-{line}: {}\r\n", "v".repeat(200)).as_bytes());
        match parser.parse(&endless) {
            Ok(None) => {}
            Err(error) => {
                refused_at = Some((endless.len(), error));
                break;
            }
            Ok(Some(_)) => panic!("no blank line was sent"),
        }
    }
    let (len, error) = refused_at.expect("cap never hit");
    assert!(len > 8 * 1024 && len < 8 * 1024 + 220, "{len}");
    // 64 short header lines would trip the count cap first; these are long.
    assert_eq!(error, HandshakeError::HeadTooLarge { limit: 8 * 1024 });

    // A single line with no end in sight is refused too.
    let no_newline = vec![b'G'; 8 * 1024 + 1];
    assert_eq!(
        parse_request(&no_newline, &HeadLimits::DEFAULT).unwrap_err(),
        HandshakeError::HeadTooLarge { limit: 8 * 1024 }
    );
    assert_eq!(
        parse_request(&no_newline[..8 * 1024], &HeadLimits::DEFAULT).unwrap(),
        None
    );
}

#[test]
fn header_count_cap_gives_431() {
    let limits = HeadLimits {
        max_head_bytes: 8 * 1024,
        max_headers: 7,
    };
    // The RFC request has exactly 7 headers.
    upgrade(parse_request(RFC_REQUEST, &limits).unwrap());
    let mut eight = RFC_REQUEST[..RFC_REQUEST.len() - 2].to_vec();
    eight.extend_from_slice(b"X-Eighth: 8\r\n\r\n");
    let error = parse_request(&eight, &limits).unwrap_err();
    assert_eq!(error, HandshakeError::TooManyHeaders { limit: 7 });
    assert_eq!(error.status(), 431);
    // A limit above the ceiling acts as the ceiling.
    let huge = HeadLimits {
        max_head_bytes: 1 << 20,
        max_headers: usize::MAX,
    };
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for line in 0..200 {
        many.extend_from_slice(format!("X-{line}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(
        parse_request(&many, &huge).unwrap_err(),
        HandshakeError::TooManyHeaders { limit: 128 }
    );
}

fn nonce(seed: u8) -> [u8; 16] {
    std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
}

#[test]
fn client_request_bytes() {
    let client =
        ClientHandshake::new("server.example.com", 80, "/chat", SAMPLE_NONCE, &[], &[]).unwrap();
    assert_eq!(
        String::from_utf8(client.request().to_vec()).unwrap(),
        "GET /chat HTTP/1.1\r\n\
         Host: server.example.com\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\
         \r\n"
    );
    assert_eq!(client.expected_accept().as_str(), SAMPLE_ACCEPT);

    let client = ClientHandshake::new(
        "::1",
        9001,
        "/a?b=c",
        SAMPLE_NONCE,
        &["chat", "superchat"],
        &[("Origin", "http://example.com")],
    )
    .unwrap();
    let text = String::from_utf8(client.request().to_vec()).unwrap();
    assert!(text.starts_with("GET /a?b=c HTTP/1.1\r\nHost: [::1]:9001\r\n"));
    assert!(text.contains("\r\nSec-WebSocket-Protocol: chat, superchat\r\n"));
    assert!(text.ends_with("\r\nOrigin: http://example.com\r\n\r\n"));

    let bracketed = ClientHandshake::new("[::1]", 80, "/", SAMPLE_NONCE, &[], &[]).unwrap();
    assert!(bracketed
        .request()
        .starts_with(b"GET / HTTP/1.1\r\nHost: [::1]\r\n"));
}

#[test]
fn client_refuses_to_build_a_bad_request() {
    let build = |host: &str, path: &str, protocols: &[&str], extra: &[(&str, &str)]| {
        ClientHandshake::new(host, 80, path, SAMPLE_NONCE, protocols, extra).unwrap_err()
    };
    assert_eq!(
        build("a b", "/", &[], &[]),
        BuildError::InvalidHost("a b".into())
    );
    assert_eq!(build("", "/", &[], &[]), BuildError::InvalidHost("".into()));
    assert_eq!(
        build("::g", "/", &[], &[]),
        BuildError::InvalidHost("::g".into())
    );
    assert_eq!(
        build("[h]", "/", &[], &[]),
        BuildError::InvalidHost("[h]".into())
    );
    assert_eq!(
        build("h", "x", &[], &[]),
        BuildError::InvalidPath("x".into())
    );
    assert_eq!(
        build("h", "/a b", &[], &[]),
        BuildError::InvalidPath("/a b".into())
    );
    assert_eq!(
        build("h", "/a#b", &[], &[]),
        BuildError::InvalidPath("/a#b".into())
    );
    assert_eq!(
        build("h", "/", &["a b"], &[]),
        BuildError::InvalidSubprotocol("a b".into())
    );
    assert_eq!(
        build("h", "/", &["a", "a"], &[]),
        BuildError::InvalidSubprotocol("a".into())
    );
    assert_eq!(
        build("h", "/", &[], &[("Host", "evil")]),
        BuildError::ReservedHeader("Host".into())
    );
    assert_eq!(
        build("h", "/", &[], &[("X", "1\r\n\r\nGET /")]),
        BuildError::InvalidHeaderValue("X".into())
    );
}

#[test]
fn client_refuses_port_zero() {
    // Port 0 names no server: refused before any request is written, for a
    // name and for an address alike.
    for host in ["server.example.com", "127.0.0.1", "::1"] {
        assert_eq!(
            ClientHandshake::new(host, 0, "/", SAMPLE_NONCE, &[], &[]).unwrap_err(),
            BuildError::InvalidPort(0),
            "{host}"
        );
    }
    let message = BuildError::InvalidPort(0).to_string();
    assert!(
        message.contains("port 0") && message.contains("1..=65535"),
        "{message}"
    );
    // Every other port builds.
    for port in [1, 80, 65535] {
        assert!(ClientHandshake::new("h", port, "/", SAMPLE_NONCE, &[], &[]).is_ok());
    }
    // A URL cannot carry it either: parsing refuses it first, saying why.
    let error = WsUrl::parse("ws://127.0.0.1:0/").unwrap_err();
    assert_eq!(error, UrlError::InvalidPort);
    assert!(error.to_string().contains("1..=65535"), "{error}");
}

/// A complete, correct server answer for `client`, with `extra` header lines.
fn response_for(client: &ClientHandshake, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n{extra}\r\n",
        client.expected_accept()
    )
    .into_bytes()
}

fn accepted(client: &mut ClientHandshake, response: &[u8]) -> (Option<String>, usize) {
    match client.parse_response(response) {
        Ok(Some(response @ HandshakeResponse { head_len, .. })) => {
            (response.subprotocol().map(str::to_owned), head_len)
        }
        other => panic!("expected acceptance, got {other:?}"),
    }
}

#[test]
fn client_and_server_round_trip() {
    for (seed, offered, selected) in [
        (1u8, &[][..], None),
        (2, &["chat"][..], Some("chat")),
        (3, &["v1", "v2", "v3"][..], Some("v2")),
        (4, &["v1"][..], None),
    ] {
        let url = WsUrl::parse("ws://127.0.0.1:9001/echo?x=1").unwrap();
        let mut client = ClientHandshake::for_url(&url, nonce(seed), offered, &[]).unwrap();

        let mut server = ServerHandshake::default();
        let (request, head_len) = upgrade(server.parse(client.request()).unwrap());
        assert_eq!(head_len, client.request().len());
        assert_eq!(request.path(), "/echo?x=1");
        assert_eq!(request.host(), "127.0.0.1:9001");
        assert_eq!(request.subprotocols().collect::<Vec<_>>(), offered);

        let mut response = Vec::new();
        request
            .write_switching_protocols(selected, &[("Set-Cookie", "id=1")], &mut response)
            .unwrap();
        let response_len = response.len();
        // The server's first frame follows in the same read.
        response.extend_from_slice(&[0x81, 0x02, b'o', b'k']);
        let (subprotocol, head_len) = accepted(&mut client, &response);
        assert_eq!(subprotocol.as_deref(), selected);
        assert_eq!(head_len, response_len);
        assert_eq!(&response[head_len..], [0x81, 0x02, b'o', b'k']);
    }
}

#[test]
fn client_response_in_pieces() {
    let mut client = ClientHandshake::new("h", 80, "/", nonce(7), &["p"], &[]).unwrap();
    let response = response_for(&client, "Sec-WebSocket-Protocol: p\r\n");
    for end in 0..response.len() {
        assert_eq!(
            client
                .parse_response(&response[..end])
                .unwrap()
                .map(|r| r.head_len),
            None
        );
    }
    let (subprotocol, head_len) = accepted(&mut client, &response);
    assert_eq!(subprotocol.as_deref(), Some("p"));
    assert_eq!(head_len, response.len());
}

#[test]
fn client_rejections() {
    let fresh = || ClientHandshake::new("h", 80, "/", nonce(9), &["chat"], &[]).unwrap();
    let client = fresh();
    let accept = client.expected_accept().to_string();
    let cases: Vec<(Vec<u8>, ResponseError)> = vec![
        (
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_vec(),
            ResponseError::Refused { status: 403 },
        ),
        (
            b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec(),
            ResponseError::Refused { status: 426 },
        ),
        (
            format!("HTTP/1.0 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").into_bytes(),
            ResponseError::HttpVersionNotSupported,
        ),
        (
            format!("HTTP/1.1 101 OK\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").into_bytes(),
            ResponseError::NotWebSocketUpgrade,
        ),
        (
            format!("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").into_bytes(),
            ResponseError::MissingConnectionUpgrade,
        ),
        (
            b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".to_vec(),
            ResponseError::MissingAccept,
        ),
        (
            format!("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").into_bytes(),
            ResponseError::DuplicateHeader("Sec-WebSocket-Accept"),
        ),
        (
            response_for(&client, "").iter().map(|&b| if b == b'=' { b'A' } else { b }).collect(),
            ResponseError::AcceptMismatch,
        ),
        (
            b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n".to_vec(),
            ResponseError::AcceptMismatch,
        ),
        (
            response_for(&client, "Sec-WebSocket-Protocol: superchat\r\n"),
            ResponseError::UnrequestedSubprotocol,
        ),
        (
            response_for(&client, "Sec-WebSocket-Protocol: Chat\r\n"),
            ResponseError::UnrequestedSubprotocol,
        ),
        (
            response_for(&client, "Sec-WebSocket-Protocol: chat, chat\r\n"),
            ResponseError::InvalidSubprotocol,
        ),
        (
            response_for(&client, "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n"),
            ResponseError::DuplicateHeader("Sec-WebSocket-Protocol"),
        ),
        (
            response_for(&client, "Sec-WebSocket-Extensions: permessage-deflate\r\n"),
            ResponseError::UnrequestedExtension,
        ),
        (
            response_for(&client, "Sec-WebSocket-Extensions: x-two, x-three\r\n"),
            ResponseError::UnrequestedExtension,
        ),
        (
            b"HTTP/1.1 1O1 Switching\r\n\r\n".to_vec(),
            ResponseError::Malformed("invalid status code"),
        ),
    ];
    for (response, expected) in cases {
        let error = fresh().parse_response(&response).unwrap_err();
        assert_eq!(error, expected, "{:?}", String::from_utf8_lossy(&response));
        assert_eq!(
            error.refused_status(),
            match expected {
                ResponseError::Refused { status } => Some(status),
                _ => None,
            }
        );
    }

    // ringws offers no extension: it refuses to offer one (the server
    // could accept it, and it would be in use from the first frame) and
    // fails a handshake whose response names any.
    for name in ["Sec-WebSocket-Extensions", "sec-websocket-extensions"] {
        assert_eq!(
            ClientHandshake::new("h", 80, "/", nonce(9), &[], &[(name, "permessage-deflate")])
                .unwrap_err(),
            BuildError::ReservedHeader(name.to_owned())
        );
    }
    let mut bare = ClientHandshake::new("h", 80, "/", nonce(9), &[], &[]).unwrap();
    let response = response_for(&bare, "Sec-WebSocket-Extensions: x-one\r\n");
    assert_eq!(
        bare.parse_response(&response).unwrap_err(),
        ResponseError::UnrequestedExtension
    );
    // An empty extension list names none.
    let mut client = fresh();
    let response = response_for(&client, "Sec-WebSocket-Extensions: ,\r\n");
    let (subprotocol, _) = accepted(&mut client, &response);
    assert_eq!(subprotocol, None);
    let response = response_for(&bare, "Sec-WebSocket-Protocol: chat\r\n");
    assert_eq!(
        bare.parse_response(&response).unwrap_err(),
        ResponseError::UnrequestedSubprotocol
    );
}

#[test]
fn client_response_caps() {
    let client = ClientHandshake::new("h", 80, "/", nonce(11), &[], &[]).unwrap();
    let response = response_for(&client, "X-Padding: 0123456789\r\n");
    let mut tight = client.clone().with_limits(HeadLimits {
        max_head_bytes: response.len() - 1,
        max_headers: 64,
    });
    assert_eq!(
        tight.parse_response(&response).unwrap_err(),
        ResponseError::HeadTooLarge {
            limit: response.len() - 1
        }
    );
    let mut few = client.clone().with_limits(HeadLimits {
        max_head_bytes: 8 * 1024,
        max_headers: 3,
    });
    assert_eq!(
        few.parse_response(&response).unwrap_err(),
        ResponseError::TooManyHeaders { limit: 3 }
    );
    let mut exact = client.with_limits(HeadLimits {
        max_head_bytes: response.len(),
        max_headers: 4,
    });
    assert_eq!(accepted(&mut exact, &response).1, response.len());
}

/// URL text, then the host, port, path, query and request target it must give.
type UrlCase<'a> = (&'a str, &'a str, u16, &'a str, Option<&'a str>, &'a str);

#[test]
fn ws_urls() {
    let cases: &[UrlCase<'_>] = &[
        ("ws://example.com", "example.com", 80, "/", None, "/"),
        ("ws://example.com/", "example.com", 80, "/", None, "/"),
        (
            "WS://Example.com:9001/chat",
            "Example.com",
            9001,
            "/chat",
            None,
            "/chat",
        ),
        (
            "ws://h:8080/a/b?x=1&y=2",
            "h",
            8080,
            "/a/b",
            Some("x=1&y=2"),
            "/a/b?x=1&y=2",
        ),
        ("ws://h?x", "h", 80, "/", Some("x"), "/?x"),
        ("ws://h:/p", "h", 80, "/p", None, "/p"),
        ("ws://127.0.0.1:65535", "127.0.0.1", 65535, "/", None, "/"),
        ("ws://[::1]", "::1", 80, "/", None, "/"),
        ("ws://[::1]:9001/p?q", "::1", 9001, "/p", Some("q"), "/p?q"),
        ("ws://[2001:db8::7]/", "2001:db8::7", 80, "/", None, "/"),
        ("ws://h/%20", "h", 80, "/%20", None, "/%20"),
    ];
    for &(text, host, port, path, query, target) in cases {
        let url = WsUrl::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(url.host(), host, "{text}");
        assert_eq!(url.port(), port, "{text}");
        assert_eq!(url.path(), path, "{text}");
        assert_eq!(url.query(), query, "{text}");
        assert_eq!(url.request_target(), target, "{text}");
    }

    let errors: &[(&str, UrlError)] = &[
        ("wss://example.com/", UrlError::TlsNotSupported),
        ("WSS://example.com/", UrlError::TlsNotSupported),
        ("http://example.com/", UrlError::UnsupportedScheme),
        ("example.com/chat", UrlError::UnsupportedScheme),
        ("ws://", UrlError::MissingHost),
        ("ws:///path", UrlError::MissingHost),
        ("ws://:80/", UrlError::MissingHost),
        ("ws://user:pw@h/", UrlError::UserInfoNotSupported),
        ("ws://h/#frag", UrlError::FragmentNotAllowed),
        ("ws://h:0/", UrlError::InvalidPort),
        ("ws://h:65536/", UrlError::InvalidPort),
        ("ws://h:+80/", UrlError::InvalidPort),
        ("ws://h:8a/", UrlError::InvalidPort),
        ("ws://h:1:2/", UrlError::InvalidPort),
        ("ws://[::1/", UrlError::InvalidHost),
        ("ws://[::g]/", UrlError::InvalidHost),
        ("ws://[::1]x/", UrlError::InvalidHost),
        ("ws://h h/", UrlError::InvalidHost),
        ("ws://h/a b", UrlError::InvalidCharacter),
        ("ws://h/\u{e9}", UrlError::InvalidCharacter),
    ];
    for &(text, expected) in errors {
        assert_eq!(WsUrl::parse(text), Err(expected), "{text}");
    }
    assert_eq!(
        UrlError::TlsNotSupported.to_string(),
        "wss:// (TLS) is not supported"
    );
}
