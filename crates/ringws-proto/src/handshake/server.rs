//! Server role: read the client's opening request, answer it.

use std::fmt;

use super::{
    any_list_has_token, check_header, is_token, is_visible_ascii, list_elements, syntax_error_part,
    write_header, write_response_head, write_status_line, AcceptKey, Attempt, BuildError,
    ByteCheck, HeadLimits, HeadScanner, HeaderValues, Headers, Occurrence, ScanError, Subprotocols,
    MAX_HEADERS_CEILING, WEBSOCKET_VERSION,
};

/// Why an opening request is refused, and the HTTP status that says so.
///
/// Rules are checked in this order, and the first broken one is reported:
/// syntax and size, then (for upgrade requests only) method, HTTP version,
/// `Host`, `Upgrade`, `Connection`, `Sec-WebSocket-Version`, `Sec-WebSocket-Key`,
/// `Origin`, `Sec-WebSocket-Protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Not HTTP/1.x syntax (400). The text names the part that is wrong.
    Malformed(&'static str),
    /// The head did not end within `limit` bytes (431).
    HeadTooLarge {
        /// [`HeadLimits::max_head_bytes`].
        limit: usize,
    },
    /// More than `limit` header fields (431).
    TooManyHeaders {
        /// [`HeadLimits::max_headers`], capped at [`MAX_HEADERS_CEILING`].
        limit: usize,
    },
    /// An upgrade request with a method other than GET (405, with `Allow: GET`).
    MethodNotAllowed,
    /// An upgrade request over HTTP/1.0; RFC 6455 requires HTTP/1.1 (400).
    HttpVersionNotSupported,
    /// No `Host` header (400).
    MissingHost,
    /// A header that may appear only once appeared more often (400).
    DuplicateHeader(&'static str),
    /// A header whose value breaks its grammar (400).
    InvalidHeaderValue(&'static str),
    /// `Sec-WebSocket-*` headers, but `Upgrade` does not list `websocket` (400).
    NotWebSocketUpgrade,
    /// `Connection` does not list `upgrade` (400).
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Version` missing, repeated, or not 13 (426, with
    /// `Sec-WebSocket-Version: 13`).
    UnsupportedVersion,
    /// No `Sec-WebSocket-Key` (400).
    MissingKey,
    /// A `Sec-WebSocket-Key` that is not base64 of exactly 16 bytes (400).
    InvalidKey,
}

impl HandshakeError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::HeadTooLarge { .. } | HandshakeError::TooManyHeaders { .. } => 431,
            HandshakeError::MethodNotAllowed => 405,
            HandshakeError::UnsupportedVersion => 426,
            _ => 400,
        }
    }

    /// Appends the complete HTTP response for this error to `out`: status line,
    /// `Connection: close` (`Connection: Upgrade, close` beside the 426's
    /// `Upgrade`), the headers the status calls for, and a one-line text
    /// body. The server should close the connection after sending it.
    pub fn write_response(&self, out: &mut Vec<u8>) {
        self.write(false, out);
    }

    /// [`HandshakeError::write_response`] for a `HEAD` request: the same
    /// head, without the body (RFC 9110 §9.3.2).
    pub fn write_head_response(&self, out: &mut Vec<u8>) {
        self.write(true, out);
    }

    fn write(&self, head_only: bool, out: &mut Vec<u8>) {
        let body = format!("{self}\n");
        let content_type = ("Content-Type", "text/plain; charset=utf-8");
        let upgrade_headers;
        let allow_headers;
        let headers: &[(&str, &str)] = match self {
            HandshakeError::UnsupportedVersion => {
                upgrade_headers = [
                    content_type,
                    ("Upgrade", "websocket"),
                    ("Sec-WebSocket-Version", WEBSOCKET_VERSION),
                ];
                &upgrade_headers
            }
            HandshakeError::MethodNotAllowed => {
                allow_headers = [content_type, ("Allow", "GET")];
                &allow_headers
            }
            _ => std::slice::from_ref(&content_type),
        };
        write_response_head(self.status(), headers, Some(body.len()), out);
        if !head_only {
            out.extend_from_slice(body.as_bytes());
        }
    }

    /// [`HandshakeError::write_response`] into a new buffer.
    pub fn response(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(192);
        self.write_response(&mut out);
        out
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Malformed(part) => write!(f, "malformed request: {part}"),
            HandshakeError::HeadTooLarge { limit } => {
                write!(f, "request head larger than {limit} bytes")
            }
            HandshakeError::TooManyHeaders { limit } => {
                write!(f, "more than {limit} request header fields")
            }
            HandshakeError::MethodNotAllowed => f.write_str("a WebSocket upgrade must use GET"),
            HandshakeError::HttpVersionNotSupported => {
                f.write_str("a WebSocket upgrade requires HTTP/1.1")
            }
            HandshakeError::MissingHost => f.write_str("missing Host header"),
            HandshakeError::DuplicateHeader(name) => write!(f, "more than one {name} header"),
            HandshakeError::InvalidHeaderValue(name) => write!(f, "invalid {name} header"),
            HandshakeError::NotWebSocketUpgrade => {
                f.write_str("Upgrade header does not name websocket")
            }
            HandshakeError::MissingConnectionUpgrade => {
                f.write_str("Connection header does not name upgrade")
            }
            HandshakeError::UnsupportedVersion => {
                f.write_str("only WebSocket version 13 is supported")
            }
            HandshakeError::MissingKey => f.write_str("missing Sec-WebSocket-Key header"),
            HandshakeError::InvalidKey => {
                f.write_str("Sec-WebSocket-Key is not base64 of 16 bytes")
            }
        }
    }
}

impl std::error::Error for HandshakeError {}

/// A complete request head found at the start of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedRequest<'b> {
    /// What the request asks for.
    pub kind: RequestKind<'b>,
    /// Bytes of the buffer taken by the request head. Bytes after it belong to
    /// the connection's next stage: the client's first frames for an upgrade,
    /// a body or the next request for plain HTTP.
    pub head_len: usize,
}

/// A request is an upgrade attempt if its `Upgrade` header names `websocket` or
/// it carries `Sec-WebSocket-Key` or `Sec-WebSocket-Version`; anything else,
/// `Upgrade: h2c` included, is plain HTTP for the server to answer or refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind<'b> {
    /// A valid WebSocket opening handshake.
    Upgrade(UpgradeRequest<'b>),
    /// An ordinary HTTP request, for example `GET /metrics`.
    PlainHttp(PlainRequest<'b>),
}

/// A valid WebSocket opening request, borrowed from the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpgradeRequest<'b> {
    path: &'b str,
    host: &'b str,
    key: &'b str,
    origin: Option<&'b str>,
    headers: Headers<'b>,
}

impl<'b> UpgradeRequest<'b> {
    /// The request target as sent, query included, e.g. `/chat?room=1`.
    pub fn path(&self) -> &'b str {
        self.path
    }

    /// The `Host` header.
    pub fn host(&self) -> &'b str {
        self.host
    }

    /// The `Sec-WebSocket-Key` header, validated as base64 of 16 bytes.
    pub fn key(&self) -> &'b str {
        self.key
    }

    /// The `Sec-WebSocket-Accept` value that answers this request.
    pub fn accept_key(&self) -> AcceptKey {
        AcceptKey::from_key(self.key.as_bytes())
    }

    /// The `Origin` header, sent by browsers; `None` from most other clients.
    pub fn origin(&self) -> Option<&'b str> {
        self.origin
    }

    /// The subprotocols offered in `Sec-WebSocket-Protocol`, in the client's
    /// order of preference, across every such header.
    pub fn subprotocols(&self) -> Subprotocols<'b> {
        Subprotocols::new(self.headers)
    }

    /// Each `Sec-WebSocket-Extensions` header value as sent. ringws implements no
    /// extension, so nothing is negotiated from these unless the caller does it.
    pub fn extensions(&self) -> HeaderValues<'b, 'static> {
        self.headers.get_all("Sec-WebSocket-Extensions")
    }

    /// Every header of the request.
    pub fn headers(&self) -> Headers<'b> {
        self.headers
    }

    /// Appends the `101 Switching Protocols` response to `out`.
    ///
    /// `subprotocol` must be one the client offered. `extra_headers` (say
    /// `Set-Cookie`) must not repeat what the handshake writes itself
    /// (`Upgrade`, `Connection`), name any of RFC 6455's `Sec-WebSocket-*`
    /// headers, nor give the response a body (`Content-Length`,
    /// `Transfer-Encoding`): those fail with [`BuildError::ReservedHeader`].
    /// On error nothing is written.
    pub fn write_switching_protocols(
        &self,
        subprotocol: Option<&str>,
        extra_headers: &[(&str, &str)],
        out: &mut Vec<u8>,
    ) -> Result<(), BuildError> {
        if let Some(selected) = subprotocol {
            if !self.subprotocols().any(|offered| offered == selected) {
                return Err(BuildError::SubprotocolNotOffered(selected.to_owned()));
            }
        }
        for (name, value) in extra_headers {
            check_header(name, value)?;
            if is_reserved_response_header(name) {
                return Err(BuildError::ReservedHeader((*name).to_owned()));
            }
        }
        write_status_line(out, 101);
        write_header(out, "Upgrade", "websocket");
        write_header(out, "Connection", "Upgrade");
        write_header(out, "Sec-WebSocket-Accept", self.accept_key().as_str());
        if let Some(selected) = subprotocol {
            write_header(out, "Sec-WebSocket-Protocol", selected);
        }
        for (name, value) in extra_headers {
            write_header(out, name, value);
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    }
}

fn is_reserved_response_header(name: &str) -> bool {
    // Every `Sec-WebSocket-*` header of RFC 6455, as for requests: those
    // the response does not carry have no business in it either.
    const RESERVED: [&str; 9] = [
        "Upgrade",
        "Connection",
        "Sec-WebSocket-Accept",
        "Sec-WebSocket-Protocol",
        "Sec-WebSocket-Extensions",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Content-Length",
        "Transfer-Encoding",
    ];
    RESERVED
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(name))
}

/// A syntactically valid HTTP/1.x request that is not a WebSocket upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainRequest<'b> {
    method: &'b str,
    path: &'b str,
    minor_version: u8,
    headers: Headers<'b>,
}

impl<'b> PlainRequest<'b> {
    /// The method, e.g. `GET`.
    pub fn method(&self) -> &'b str {
        self.method
    }

    /// The request target as sent, e.g. `/metrics`.
    pub fn path(&self) -> &'b str {
        self.path
    }

    /// The minor HTTP version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub fn minor_version(&self) -> u8 {
        self.minor_version
    }

    /// Every header of the request.
    pub fn headers(&self) -> Headers<'b> {
        self.headers
    }
}

/// Reads an opening request from a buffer the caller keeps appending to.
///
/// Holds no bytes itself, only how far it has looked, so a reactor can
/// accumulate bytes wherever it likes and call [`ServerHandshake::parse`] after
/// each read. Use one per connection, or [`ServerHandshake::reset`] between them.
#[derive(Debug, Clone)]
pub struct ServerHandshake {
    limits: HeadLimits,
    scanner: HeadScanner,
}

impl ServerHandshake {
    /// A parser enforcing `limits`.
    pub fn new(limits: HeadLimits) -> ServerHandshake {
        ServerHandshake {
            limits,
            scanner: HeadScanner::default(),
        }
    }

    /// The limits this parser enforces.
    pub fn limits(&self) -> HeadLimits {
        self.limits
    }

    /// Forgets what was seen, for parsing a new connection's buffer.
    pub fn reset(&mut self) {
        self.scanner = HeadScanner::default();
    }

    /// Looks for a complete request head at the start of `buf`, which must
    /// hold every byte received so far (earlier calls' bytes included).
    ///
    /// `Ok(None)`: not complete yet, read more. `Ok(Some(_))`: done; see
    /// [`ParsedRequest::head_len`]. `Err(e)`: send `e.response()` and close.
    /// The outcome depends only on `buf`, never on how it arrived in pieces.
    ///
    /// A byte no request head may hold is refused as
    /// [`HandshakeError::Malformed`] as soon as it is in `buf`, without
    /// waiting for its line to end (see the [module docs](super)).
    pub fn parse<'b>(
        &mut self,
        buf: &'b [u8],
    ) -> Result<Option<ParsedRequest<'b>>, HandshakeError> {
        let limits = self.limits;
        match self
            .scanner
            .scan(buf, limits.max_head_bytes, ByteCheck::Request, |window| {
                parse_head(window, &limits)
            }) {
            Ok(Some((kind, head_len))) => Ok(Some(ParsedRequest { kind, head_len })),
            Ok(None) => Ok(None),
            Err(ScanError::Invalid(error)) => Err(error),
            Err(ScanError::Refused(part)) => Err(HandshakeError::Malformed(part)),
            Err(ScanError::Overflow) => Err(HandshakeError::HeadTooLarge {
                limit: limits.max_head_bytes,
            }),
        }
    }
}

impl Default for ServerHandshake {
    fn default() -> Self {
        ServerHandshake::new(HeadLimits::DEFAULT)
    }
}

/// One-shot form of [`ServerHandshake::parse`], for a buffer parsed once.
pub fn parse_request<'b>(
    buf: &'b [u8],
    limits: &HeadLimits,
) -> Result<Option<ParsedRequest<'b>>, HandshakeError> {
    ServerHandshake::new(*limits).parse(buf)
}

fn parse_head<'b>(
    window: &'b [u8],
    limits: &HeadLimits,
) -> Result<Attempt<RequestKind<'b>>, HandshakeError> {
    // Left uninitialised: `httparse` writes only the slots it fills, and
    // zeroing all 128 (4 KiB) took about 100 ns of every parse.
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS_CEILING];
    let header_slots = limits.header_slots();
    let mut request = httparse::Request::new(&mut []);
    let head_len = match request.parse_with_uninit_headers(window, &mut slots[..header_slots]) {
        Ok(httparse::Status::Complete(head_len)) => head_len,
        Ok(httparse::Status::Partial) => return Ok(Attempt::Partial),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HandshakeError::TooManyHeaders {
                limit: header_slots,
            })
        }
        Err(error) => return Err(HandshakeError::Malformed(syntax_error_part(error))),
    };
    let head = &window[..head_len];
    let headers = Headers::from_head(head, request.headers.first().map(|header| header.name));
    // A complete parse always sets method, path and version.
    let method = request.method.unwrap_or_default();
    let path = request.path.unwrap_or_default();
    let minor_version = request.version.unwrap_or_default();
    let kind = classify(method, path, minor_version, headers)?;
    Ok(Attempt::Complete(kind, head_len))
}

fn classify<'b>(
    method: &'b str,
    path: &'b str,
    minor_version: u8,
    headers: Headers<'b>,
) -> Result<RequestKind<'b>, HandshakeError> {
    let [upgrade, connection, key, version, host, origin, subprotocols] = headers.occurrences([
        "Upgrade",
        "Connection",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Host",
        "Origin",
        "Sec-WebSocket-Protocol",
    ]);
    let upgrade_to_websocket =
        any_list_has_token(headers.values_of("Upgrade", upgrade), "websocket");
    let is_upgrade_attempt =
        upgrade_to_websocket || key != Occurrence::Absent || version != Occurrence::Absent;
    if !is_upgrade_attempt {
        // RFC 7230 §5.4: one valid `Host` in every HTTP/1.1 request, at
        // most one in HTTP/1.0; otherwise 400.
        match single_value(host, "Host")? {
            Some(host) if visible_ascii(host).is_none() => {
                return Err(HandshakeError::InvalidHeaderValue("Host"));
            }
            None if minor_version == 1 => return Err(HandshakeError::MissingHost),
            _ => {}
        }
        return Ok(RequestKind::PlainHttp(PlainRequest {
            method,
            path,
            minor_version,
            headers,
        }));
    }

    if method != "GET" {
        return Err(HandshakeError::MethodNotAllowed);
    }
    if minor_version != 1 {
        return Err(HandshakeError::HttpVersionNotSupported);
    }
    let host = single_value(host, "Host")?.ok_or(HandshakeError::MissingHost)?;
    let host = visible_ascii(host).ok_or(HandshakeError::InvalidHeaderValue("Host"))?;
    if !upgrade_to_websocket {
        return Err(HandshakeError::NotWebSocketUpgrade);
    }
    if !any_list_has_token(headers.values_of("Connection", connection), "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    match version.at_most_once() {
        Ok(Some(version)) if version == WEBSOCKET_VERSION.as_bytes() => {}
        _ => return Err(HandshakeError::UnsupportedVersion),
    }
    let key = single_value(key, "Sec-WebSocket-Key")?.ok_or(HandshakeError::MissingKey)?;
    let key = valid_key(key).ok_or(HandshakeError::InvalidKey)?;
    let origin = match single_value(origin, "Origin")? {
        Some(origin) => {
            Some(visible_ascii(origin).ok_or(HandshakeError::InvalidHeaderValue("Origin"))?)
        }
        None => None,
    };
    let subprotocols_are_tokens = headers
        .values_of("Sec-WebSocket-Protocol", subprotocols)
        .all(|value| list_elements(value).all(is_token));
    if !subprotocols_are_tokens {
        return Err(HandshakeError::InvalidHeaderValue("Sec-WebSocket-Protocol"));
    }
    Ok(RequestKind::Upgrade(UpgradeRequest {
        path,
        host,
        key,
        origin,
        headers,
    }))
}

/// The value of header `name`, which may appear at most once.
fn single_value<'b>(
    occurrence: Occurrence<'b>,
    name: &'static str,
) -> Result<Option<&'b [u8]>, HandshakeError> {
    occurrence
        .at_most_once()
        .map_err(|()| HandshakeError::DuplicateHeader(name))
}

/// A non-empty value of visible ASCII, as text.
fn visible_ascii(value: &[u8]) -> Option<&str> {
    if value.is_empty() || !is_visible_ascii(value) {
        return None;
    }
    std::str::from_utf8(value).ok()
}

/// The key as text if it is canonical base64 of exactly 16 bytes.
fn valid_key(key: &[u8]) -> Option<&str> {
    use base64::Engine as _;
    if key.len() != 24 {
        return None;
    }
    let mut decoded = [0u8; 18];
    match base64::engine::general_purpose::STANDARD.decode_slice(key, &mut decoded) {
        Ok(16) => std::str::from_utf8(key).ok(),
        _ => None,
    }
}
