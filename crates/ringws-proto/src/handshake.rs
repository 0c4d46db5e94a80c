//! The HTTP/1.1 upgrade handshake of RFC 6455 §4, for both roles.
//!
//! * [`ServerHandshake`] / [`parse_request`] read a client's opening request out of
//!   a buffer the caller owns and keeps appending to. The result says how many
//!   bytes the request head took ([`ParsedRequest::head_len`]): anything after it
//!   is the client's first frames, pipelined. A request that is not a WebSocket
//!   upgrade (say `GET /metrics`) comes back as [`RequestKind::PlainHttp`] so the
//!   server can answer it on the same port. Every rejection is a
//!   [`HandshakeError`] that knows its HTTP status and writes its own response.
//! * [`UpgradeRequest::write_switching_protocols`] writes the `101` answer.
//! * [`ClientHandshake`] writes the client's request from a caller-supplied nonce
//!   and checks the server's answer, again from a growing buffer.
//! * [`WsUrl`] splits a `ws://` URL into host, port and request target.
//!
//! HTTP syntax is parsed by `httparse`; this module adds the RFC 6455 rules, the
//! size caps, and the bookkeeping that makes parsing in pieces cheap.
//!
//! ## Parsing in pieces
//!
//! Parsers only ever look at the longest prefix of the buffer that ends with a
//! complete line and lies within [`HeadLimits::max_head_bytes`]. That makes the
//! result a function of the bytes alone: feeding a request one byte at a time
//! gives exactly the answer that feeding it at once gives. The stateful parsers
//! ([`ServerHandshake`], [`ClientHandshake`]) remember how far they have looked,
//! so bytes that do not complete a line cost no re-parse.
//!
//! A request is not left waiting for its line to end when it cannot be
//! HTTP: while a head is incomplete, [`ServerHandshake`] checks each new
//! byte as it arrives, and the first that no HTTP/1.1 request head may hold
//! (a byte outside the method's token characters, a control byte other than
//! HT, CR and LF, DEL) gets the request refused with 400 at once, before
//! the line (or the handshake timeout) ends. A TLS ClientHello sent to the
//! WebSocket port is refused at its first byte. A head that arrives whole
//! needs no check (`httparse` judges all of it). The check stops at the
//! blank line that ends the head, refuses only what `httparse` refuses too,
//! and lets a complete line before the byte decide first, so the answer
//! still depends on the bytes alone.

use std::fmt;

mod client;
mod server;
mod url;

pub use client::{ClientHandshake, HandshakeResponse, ResponseError};
pub use server::{
    parse_request, HandshakeError, ParsedRequest, PlainRequest, RequestKind, ServerHandshake,
    UpgradeRequest,
};
pub use url::{UrlError, WsUrl};

/// The only protocol version RFC 6455 defines, as sent in `Sec-WebSocket-Version`.
pub const WEBSOCKET_VERSION: &str = "13";

/// Appended to the client's key before hashing (RFC 6455 §1.3).
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The most headers any [`HeadLimits`] may allow: the parser keeps one slot per
/// header on the stack.
pub const MAX_HEADERS_CEILING: usize = 128;

/// Caps on an HTTP head (request or response line plus headers) from the peer.
///
/// A request over either cap is refused with `431 Request Header Fields Too Large`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Bytes from the first byte of the head to the end of its blank line.
    pub max_head_bytes: usize,
    /// Header fields; values above [`MAX_HEADERS_CEILING`] act as the ceiling.
    pub max_headers: usize,
}

impl HeadLimits {
    /// 8 KiB and 64 headers: room for browsers with long cookies, little for abuse.
    pub const DEFAULT: HeadLimits = HeadLimits {
        max_head_bytes: 8 * 1024,
        max_headers: 64,
    };

    fn header_slots(&self) -> usize {
        self.max_headers.min(MAX_HEADERS_CEILING)
    }
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits::DEFAULT
    }
}

/// `Sec-WebSocket-Accept`: base64(SHA-1(key + GUID)), always 28 ASCII bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AcceptKey([u8; 28]);

impl AcceptKey {
    /// The accept value for a `Sec-WebSocket-Key` exactly as it appeared on the wire.
    pub fn from_key(key: &[u8]) -> AcceptKey {
        use base64::Engine as _;
        use sha1::Digest as _;

        let mut sha1 = sha1::Sha1::new();
        sha1.update(key);
        sha1.update(ACCEPT_GUID);
        let digest: [u8; 20] = sha1.finalize().into();
        let mut encoded = [0u8; 28];
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(digest, &mut encoded)
            .expect("base64 of 20 bytes is exactly 28 bytes");
        debug_assert_eq!(written, 28);
        AcceptKey(encoded)
    }

    /// The accept value a server must answer to the key derived from `nonce`.
    pub fn from_nonce(nonce: &[u8; 16]) -> AcceptKey {
        AcceptKey::from_key(&encode_nonce(nonce))
    }

    /// The value as text.
    pub fn as_str(&self) -> &str {
        // Base64 output is ASCII, so this never takes the fallback.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The value as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for AcceptKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AcceptKey").field(&self.as_str()).finish()
    }
}

impl fmt::Display for AcceptKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Sec-WebSocket-Key` for a client nonce: base64 of the 16 bytes, 24 ASCII bytes.
fn encode_nonce(nonce: &[u8; 16]) -> [u8; 24] {
    use base64::Engine as _;
    let mut encoded = [0u8; 24];
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(nonce, &mut encoded)
        .expect("base64 of 16 bytes is exactly 24 bytes");
    debug_assert_eq!(written, 24);
    encoded
}

/// Mistakes in what a caller asked us to write: header injection, a subprotocol
/// the client never offered, a malformed host or path. Never caused by the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// A header name that is not an RFC 7230 token.
    InvalidHeaderName(String),
    /// A header value with a control character (CR and LF included).
    InvalidHeaderValue(String),
    /// A header the handshake writes itself, one that would give the message a
    /// body, or another of RFC 6455's `Sec-WebSocket-*` headers
    /// (`Sec-WebSocket-Extensions` included: ringws implements no extension).
    ReservedHeader(String),
    /// The selected subprotocol was not offered by the client.
    SubprotocolNotOffered(String),
    /// A subprotocol name that is not an RFC 7230 token.
    InvalidSubprotocol(String),
    /// A host that is neither a registered name, an IPv4 nor an IPv6 address.
    InvalidHost(String),
    /// Port 0, which names no server: nothing can be connected to on it.
    InvalidPort(u16),
    /// A request target that does not start with `/` or holds bytes outside `!`..=`~`.
    InvalidPath(String),
    /// A status code outside 200..=599 (a 1xx is interim: a response that
    /// ends its connection cannot be one).
    InvalidStatus(u16),
    /// A header that may appear once given twice (`Content-Type`).
    DuplicateHeader(String),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::InvalidHeaderName(name) => write!(f, "invalid header name {name:?}"),
            BuildError::InvalidHeaderValue(name) => {
                write!(f, "header {name:?} has a control character in its value")
            }
            BuildError::ReservedHeader(name) => {
                write!(f, "header {name:?} is reserved for the handshake itself")
            }
            BuildError::SubprotocolNotOffered(name) => {
                write!(f, "subprotocol {name:?} was not offered by the client")
            }
            BuildError::InvalidSubprotocol(name) => {
                write!(f, "subprotocol {name:?} is not an HTTP token")
            }
            BuildError::InvalidHost(host) => write!(f, "invalid host {host:?}"),
            BuildError::InvalidPort(port) => {
                write!(f, "invalid port {port}: a server's port is in 1..=65535")
            }
            BuildError::InvalidPath(path) => write!(f, "invalid request target {path:?}"),
            BuildError::InvalidStatus(status) => write!(f, "invalid HTTP status {status}"),
            BuildError::DuplicateHeader(name) => write!(f, "header {name:?} given twice"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Writes a complete HTTP/1.1 response with a body and `Connection: close`, for
/// answering plain HTTP requests (metrics, 404) on the WebSocket port.
///
/// On error nothing is written.
pub fn write_plain_response(
    status: u16,
    content_type: &str,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), BuildError> {
    write_http_response(status, &[("Content-Type", content_type)], body, false, out)
}

/// Headers [`write_http_response`] writes itself: the framing of a response
/// that ends its connection.
const FRAMING_HEADERS: [&str; 4] = [
    "Connection",
    "Content-Length",
    "Transfer-Encoding",
    "Upgrade",
];

/// [`write_plain_response`] with any headers (say `Allow` beside a 405, or
/// `Cache-Control`), and for the answer to a `HEAD` request (`head_only`)
/// the same head without the body (RFC 9110 §9.3.2: `Content-Length` still
/// gives the body's length). A 204 or 304 carries neither a body nor a
/// `Content-Length` (§8.6, §15.4.5); the connection's end frames it anyway.
///
/// Fails with [`BuildError::InvalidStatus`] outside 200–599, with
/// [`BuildError::ReservedHeader`] for `Connection`, `Content-Length`,
/// `Transfer-Encoding` and `Upgrade`, which this writes (or must not)
/// itself, and with [`BuildError::DuplicateHeader`] for a second
/// `Content-Type`. On error nothing is written.
pub fn write_http_response(
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    head_only: bool,
    out: &mut Vec<u8>,
) -> Result<(), BuildError> {
    if !(200..=599).contains(&status) {
        return Err(BuildError::InvalidStatus(status));
    }
    let mut content_types = 0;
    for (name, value) in headers {
        check_header(name, value)?;
        if FRAMING_HEADERS
            .iter()
            .any(|reserved| reserved.eq_ignore_ascii_case(name))
        {
            return Err(BuildError::ReservedHeader((*name).to_owned()));
        }
        if name.eq_ignore_ascii_case("Content-Type") {
            content_types += 1;
            if content_types > 1 {
                return Err(BuildError::DuplicateHeader((*name).to_owned()));
            }
        }
    }
    let bodiless = matches!(status, 204 | 304);
    let content_length = (!bodiless).then_some(body.len());
    write_response_head(status, headers, content_length, out);
    if !head_only && !bodiless {
        out.extend_from_slice(body);
    }
    Ok(())
}

/// The head of a response that closes its connection.
fn write_response_head(
    status: u16,
    headers: &[(&str, &str)],
    content_length: Option<usize>,
    out: &mut Vec<u8>,
) {
    write_status_line(out, status);
    // A response that names an `Upgrade` must list it in `Connection` too
    // (RFC 7230 §6.7); the connection still closes after it.
    let upgrade = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("Upgrade"));
    let connection = if upgrade { "Upgrade, close" } else { "close" };
    write_header(out, "Connection", connection);
    for (name, value) in headers {
        write_header(out, name, value);
    }
    if let Some(length) = content_length {
        write_header(out, "Content-Length", &length.to_string());
    }
    out.extend_from_slice(b"\r\n");
}

fn write_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn write_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Reason phrases for the statuses a WebSocket endpoint is likely to send.
/// Clients must ignore the phrase (RFC 7230 §3.1.2), so others get a generic one.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => match status / 100 {
            1 => "Informational",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            _ => "Server Error",
        },
    }
}

/// Checks a caller-supplied header before it is written, so that no caller can
/// inject a line break (and with it headers or a body of its choosing).
fn check_header(name: &str, value: &str) -> Result<(), BuildError> {
    if !is_token(name.as_bytes()) {
        return Err(BuildError::InvalidHeaderName(name.to_owned()));
    }
    // field-value: visible ASCII, obs-text, SP and HTAB; no other control bytes.
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(BuildError::InvalidHeaderValue(name.to_owned()));
    }
    Ok(())
}

/// `tchar` of RFC 7230 §3.2.6.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A non-empty RFC 7230 token.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Bytes `!`..=`~`: what hosts, origins and request targets are made of.
fn is_visible_ascii(s: &[u8]) -> bool {
    s.iter().all(|&b| (0x21..=0x7e).contains(&b))
}

/// RFC 3986 `reg-name` (which covers IPv4 addresses), non-empty.
fn is_reg_name(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b))
}

fn trim_whitespace(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Elements of an RFC 7230 `#rule` list, trimmed, empty elements skipped as
/// §7 asks of recipients.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_whitespace)
        .filter(|element| !element.is_empty())
}

/// Whether any of the values, read as comma-separated token lists, holds
/// `token` (ASCII case-insensitive). Used for `Upgrade` and `Connection`.
fn any_list_has_token<'b>(mut values: impl Iterator<Item = &'b [u8]>, token: &str) -> bool {
    values.any(|value| {
        list_elements(value).any(|element| element.eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// Splits an extension list (RFC 6455 §9.1) at commas outside quoted strings,
/// yielding each trimmed, non-empty element.
fn extension_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = value;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let mut in_quotes = false;
        let mut escaped = false;
        let mut end = rest.len();
        for (i, &b) in rest.iter().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if in_quotes => escaped = true,
                b'"' => in_quotes = !in_quotes,
                b',' if !in_quotes => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let element = trim_whitespace(&rest[..end]);
        rest = rest.get(end + 1..).unwrap_or_default();
        if !element.is_empty() {
            return Some(element);
        }
    })
}

/// The header fields of a parsed head, borrowed from the caller's buffer.
///
/// Names compare ASCII case-insensitively; values come with surrounding
/// whitespace removed, exactly as `httparse` reports them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Headers<'b> {
    /// From the first header line up to and including the blank line, already
    /// validated by `httparse`.
    block: &'b [u8],
}

impl<'b> Headers<'b> {
    /// Headers of `head`, where `first_name` is the first header's name as
    /// `httparse` returned it (a slice of `head`), or `None` if there were none.
    fn from_head(head: &'b [u8], first_name: Option<&'b str>) -> Headers<'b> {
        let block = first_name
            .and_then(|name| {
                let start = (name.as_ptr() as usize).checked_sub(head.as_ptr() as usize)?;
                head.get(start..)
            })
            .unwrap_or_default();
        Headers { block }
    }

    /// All header fields in the order they arrived.
    pub fn iter(&self) -> HeaderIter<'b> {
        HeaderIter { rest: self.block }
    }

    /// The first value of header `name`.
    pub fn get(&self, name: &str) -> Option<&'b [u8]> {
        self.get_all(name).next()
    }

    /// The first value of header `name`, if it is valid UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&'b str> {
        self.get(name)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    /// Every value of header `name`, in order.
    pub fn get_all<'n>(&self, name: &'n str) -> HeaderValues<'b, 'n> {
        HeaderValues {
            headers: self.iter(),
            name,
        }
    }

    /// Whether header `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// For each of `names`, whether and how often it occurs, from one pass
    /// over the block: the handshake checks look up several names, and a
    /// scan per name was most of the time spent parsing a handshake.
    fn occurrences<const N: usize>(&self, names: [&str; N]) -> [Occurrence<'b>; N] {
        let mut found = [Occurrence::Absent; N];
        for (name, value) in self.iter() {
            for (wanted, seen) in names.iter().zip(found.iter_mut()) {
                if wanted.len() == name.len() && wanted.eq_ignore_ascii_case(name) {
                    *seen = match *seen {
                        Occurrence::Absent => Occurrence::Once(value),
                        Occurrence::Once(_) | Occurrence::Repeated => Occurrence::Repeated,
                    };
                }
            }
        }
        found
    }

    /// Every value of header `name`, which occurs as `occurrence` says: only
    /// a repeated header takes another pass.
    fn values_of<'n>(
        &self,
        name: &'n str,
        occurrence: Occurrence<'b>,
    ) -> impl Iterator<Item = &'b [u8]> + 'n
    where
        'b: 'n,
    {
        let (once, repeated) = match occurrence {
            Occurrence::Absent => (None, None),
            Occurrence::Once(value) => (Some(value), None),
            Occurrence::Repeated => (None, Some(self.get_all(name))),
        };
        once.into_iter().chain(repeated.into_iter().flatten())
    }

    /// How many header fields there are.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there are no header fields.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.iter()
                    .map(|(name, value)| (name, String::from_utf8_lossy(value))),
            )
            .finish()
    }
}

impl<'b> IntoIterator for Headers<'b> {
    type Item = (&'b str, &'b [u8]);
    type IntoIter = HeaderIter<'b>;

    fn into_iter(self) -> HeaderIter<'b> {
        self.iter()
    }
}

/// Whether a header name occurs in a head, and its value when it occurs once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Occurrence<'b> {
    Absent,
    Once(&'b [u8]),
    Repeated,
}

impl<'b> Occurrence<'b> {
    /// The value of a header that may occur at most once, or `Err(())` when
    /// it is repeated.
    fn at_most_once(self) -> Result<Option<&'b [u8]>, ()> {
        match self {
            Occurrence::Absent => Ok(None),
            Occurrence::Once(value) => Ok(Some(value)),
            Occurrence::Repeated => Err(()),
        }
    }
}

/// Iterator over `(name, value)` pairs of [`Headers`].
#[derive(Debug, Clone)]
pub struct HeaderIter<'b> {
    rest: &'b [u8],
}

impl<'b> Iterator for HeaderIter<'b> {
    type Item = (&'b str, &'b [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        // `httparse` accepted these lines: each is `name:value` ending in CRLF or
        // LF, names are tokens, and a blank line ends the block.
        let line_end = memchr::memchr(b'\n', self.rest)?;
        let line = &self.rest[..line_end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = memchr::memchr(b':', line)?;
        self.rest = &self.rest[line_end + 1..];
        let name = std::str::from_utf8(&line[..colon]).unwrap_or_default();
        Some((name, trim_whitespace(&line[colon + 1..])))
    }
}

/// Iterator over the values of one header name; see [`Headers::get_all`].
#[derive(Debug, Clone)]
pub struct HeaderValues<'b, 'n> {
    headers: HeaderIter<'b>,
    name: &'n str,
}

impl<'b> Iterator for HeaderValues<'b, '_> {
    type Item = &'b [u8];

    fn next(&mut self) -> Option<&'b [u8]> {
        let name = self.name;
        self.headers
            .by_ref()
            .find(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }
}

/// Iterator over the subprotocol names in every `Sec-WebSocket-Protocol` header,
/// in order; see [`UpgradeRequest::subprotocols`].
#[derive(Debug, Clone)]
pub struct Subprotocols<'b> {
    values: HeaderValues<'b, 'static>,
    current: &'b [u8],
}

impl<'b> Subprotocols<'b> {
    fn new(headers: Headers<'b>) -> Subprotocols<'b> {
        Subprotocols {
            values: headers.get_all("Sec-WebSocket-Protocol"),
            current: &[],
        }
    }
}

impl<'b> Iterator for Subprotocols<'b> {
    type Item = &'b str;

    fn next(&mut self) -> Option<&'b str> {
        loop {
            if self.current.is_empty() {
                self.current = self.values.next()?;
                continue;
            }
            let (element, rest) = match self.current.iter().position(|&b| b == b',') {
                Some(comma) => (&self.current[..comma], &self.current[comma + 1..]),
                None => (self.current, &[][..]),
            };
            self.current = rest;
            // Requests are checked to hold only token lists here, so every
            // element is ASCII; anything else is skipped rather than trusted.
            match std::str::from_utf8(trim_whitespace(element)) {
                Ok(element) if !element.is_empty() => return Some(element),
                _ => continue,
            }
        }
    }
}

/// What `httparse` made of the line-complete, size-capped prefix of a buffer.
enum Attempt<T> {
    /// A complete head of this many bytes.
    Complete(T, usize),
    /// More bytes are needed.
    Partial,
}

/// Remembers how much of a growing buffer a head parser has looked at, so that
/// bytes which complete no line do not trigger a re-parse.
#[derive(Debug, Clone, Copy, Default)]
struct HeadScanner {
    /// Bytes searched for line ends so far.
    scanned: usize,
    /// Length of the prefix that ends with the last complete line found.
    window: usize,
    /// The window last parsed with a `Partial` outcome.
    partial_window: usize,
    /// Bytes the byte check of a request head has passed (unused for
    /// responses); at a refusal, the refused byte's offset.
    checked: usize,
    /// Where the byte check of a request head stands.
    bytes: RequestBytes,
}

/// Which bytes a head parser refuses as they arrive, before their line ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteCheck {
    /// Bytes no HTTP/1.1 request head may hold: see [`RequestBytes`].
    Request,
    /// None: a response is judged when its lines are complete.
    None,
}

impl HeadScanner {
    /// Runs `parse` over the longest line-complete prefix of `buf[..max]`,
    /// skipping the call when it would see exactly what last came back partial.
    /// Returns `Err(HeadOverflow)` when the head is still incomplete past `max`.
    ///
    /// With [`ByteCheck::Request`], the bytes of a head that is not complete
    /// yet are also checked one by one: the first that no request head may
    /// hold gets the head refused with `Err(Refused)` at once, without
    /// waiting for its line (or the head) to end. A head that arrives whole
    /// costs no check: `httparse` has judged every byte of it. Where the
    /// first problem lies decides the answer (a refused byte before the
    /// line `httparse` fails on wins, a complete line before the byte that
    /// fails decides first), so it still depends on the bytes alone.
    fn scan<'b, T, E>(
        &mut self,
        buf: &'b [u8],
        max: usize,
        check: ByteCheck,
        parse: impl Fn(&'b [u8]) -> Result<Attempt<T>, E>,
    ) -> Result<Option<(T, usize)>, ScanError<E>> {
        if buf.len() < self.scanned {
            // A different, shorter buffer: start over rather than misread it.
            *self = HeadScanner::default();
        }
        let limit = buf.len().min(max);
        if limit > self.scanned {
            if let Some(last_newline) = buf[self.scanned..limit].iter().rposition(|&b| b == b'\n') {
                self.window = self.scanned + last_newline + 1;
            }
            self.scanned = limit;
        }
        if self.window > self.partial_window {
            match parse(&buf[..self.window]) {
                Ok(Attempt::Complete(value, len)) => return Ok(Some((value, len))),
                Ok(Attempt::Partial) => self.partial_window = self.window,
                Err(error) if check == ByteCheck::None => return Err(ScanError::Invalid(error)),
                Err(error) => {
                    // Rare, so the check may take its time here: a refused
                    // byte before the failing line's end would have been
                    // refused had the bytes come one at a time.
                    self.check(buf, self.window);
                    let RequestBytes::Refused(part) = self.bytes else {
                        return Err(ScanError::Invalid(error));
                    };
                    let before = buf[..self.checked]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |newline| newline + 1);
                    if before > self.partial_window {
                        match parse(&buf[..before]).map_err(ScanError::Invalid)? {
                            Attempt::Complete(value, len) => return Ok(Some((value, len))),
                            Attempt::Partial => self.partial_window = before,
                        }
                    }
                    return Err(ScanError::Refused(part));
                }
            }
        }
        if check == ByteCheck::Request {
            // `httparse` found no fault in the complete lines, so a refused
            // byte can only be in the line that has not ended yet.
            self.check(buf, limit);
            if let RequestBytes::Refused(part) = self.bytes {
                return Err(ScanError::Refused(part));
            }
        }
        if buf.len() > max {
            Err(ScanError::Overflow)
        } else {
            Ok(None)
        }
    }

    /// Runs the request byte check over `buf[..end]` where it has not been.
    fn check(&mut self, buf: &[u8], end: usize) {
        if let Some(new) = buf.get(self.checked..end) {
            self.checked += self.bytes.advance(new);
        }
    }
}

/// The part of a request head the next byte belongs to, for refusing a byte
/// that no HTTP/1.1 request head may hold as soon as it arrives (a TLS
/// ClientHello, say, which starts with 0x16) rather than when its line ends.
///
/// The check is looser than `httparse`, never stricter: it refuses only
/// bytes that `httparse` refuses too, so every head that parses still
/// parses. What it refuses: in the method, anything but a `tchar` (and the
/// space after it); before the method, anything but a `tchar` or the empty
/// lines RFC 9112 §2.2 lets precede a request line; in the rest of the
/// request line and in header lines, control bytes other than HT, CR and LF,
/// and DEL. Bytes 0x80–0xFF (obs-text in values, UTF-8 in targets) pass.
/// The check ends with the blank line that ends the head: what follows is
/// the client's frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum RequestBytes {
    /// Before the method: CR and LF of empty lines may come first.
    #[default]
    Start,
    /// In the method.
    Method,
    /// In the rest of the request line, or in a header line.
    Line,
    /// At the start of a header line (just after an LF).
    LineStart,
    /// After a CR at the start of a header line.
    LineStartCr,
    /// The head's blank line has arrived; nothing after it is checked.
    Done,
    /// A byte no request head may hold arrived, in this part of the head.
    Refused(&'static str),
}

impl RequestBytes {
    /// Checks `bytes`, the next ones received, and returns how many of them
    /// passed: all of them, or those before the first refused byte.
    fn advance(&mut self, bytes: &[u8]) -> usize {
        let mut i = 0;
        while i < bytes.len() {
            match *self {
                RequestBytes::Done => return bytes.len(),
                RequestBytes::Refused(_) => return i,
                RequestBytes::Line => {
                    // The bulk of a head: skip eight plain bytes at a time.
                    while let Some(chunk) = bytes.get(i..i + 8) {
                        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
                        if !has_control_byte(word) {
                            i += 8;
                        } else {
                            break;
                        }
                    }
                    let Some(&b) = bytes.get(i) else {
                        return bytes.len();
                    };
                    *self = match b {
                        b'\n' => RequestBytes::LineStart,
                        _ if is_line_byte(b) => RequestBytes::Line,
                        _ => RequestBytes::Refused("control character in the request head"),
                    };
                }
                state => {
                    let b = bytes[i];
                    *self = match (state, b) {
                        (RequestBytes::Start, b'\r' | b'\n') => RequestBytes::Start,
                        (RequestBytes::Start | RequestBytes::Method, _) if is_tchar(b) => {
                            RequestBytes::Method
                        }
                        (RequestBytes::Method, b' ') => RequestBytes::Line,
                        (RequestBytes::Start | RequestBytes::Method, _) => {
                            RequestBytes::Refused("invalid method or request target")
                        }
                        (RequestBytes::LineStart, b'\r') => RequestBytes::LineStartCr,
                        (RequestBytes::LineStart | RequestBytes::LineStartCr, b'\n') => {
                            RequestBytes::Done
                        }
                        (_, b'\n') => RequestBytes::LineStart,
                        (_, _) if is_line_byte(b) => RequestBytes::Line,
                        (_, _) => RequestBytes::Refused("control character in the request head"),
                    };
                }
            }
            if !matches!(self, RequestBytes::Refused(_)) {
                i += 1;
            }
        }
        i
    }
}

/// A byte that may stand in a request line after the method or in a header
/// line, line ends aside: HT, CR, visible ASCII, SP and 0x80–0xFF.
fn is_line_byte(b: u8) -> bool {
    matches!(b, b'\t' | b'\r' | b' '..=0x7e | 0x80..=0xff)
}

/// Whether any of the eight bytes in `word` is below 0x20 or is DEL: exact
/// (the classic "has less than" and "has zero" word tests), so a word
/// without one holds only line bytes and no line end.
fn has_control_byte(word: u64) -> bool {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    let del = word ^ (ONES * 0x7f);
    let has_del = del.wrapping_sub(ONES) & !del & HIGHS;
    below_space | has_del != 0
}

enum ScanError<E> {
    Invalid(E),
    Overflow,
    /// A byte no request head may hold, in the part of the head named.
    Refused(&'static str),
}

/// Maps an `httparse` syntax error to the part of the head it concerns.
fn syntax_error_part(error: httparse::Error) -> &'static str {
    match error {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status code",
        httparse::Error::Token => "invalid method or request target",
        httparse::Error::Version => "invalid HTTP version",
        httparse::Error::TooManyHeaders => "too many headers",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_test_finds_exactly_the_control_bytes() {
        // Every byte value at every position, among neighbours plain and
        // not (0x80-0xFF next to it must neither hide nor fake one).
        for fill in [b'a', b' ', 0x80, 0xff, 0x7e, 0x21] {
            for position in 0..8 {
                for b in 0..=255u8 {
                    let mut word = [fill; 8];
                    word[position] = b;
                    let expected = word.iter().any(|&b| b < 0x20 || b == 0x7f);
                    assert_eq!(
                        has_control_byte(u64::from_le_bytes(word)),
                        expected,
                        "{word:02x?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_byte_check_ends_with_the_heads_blank_line() {
        for head in [
            &b"GET / HTTP/1.1\r\nA: b\r\n\r\n"[..],
            b"\r\n\nGET / HTTP/1.1\nA: b\n\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\n\r\n",
        ] {
            let mut state = RequestBytes::default();
            assert_eq!(state.advance(head), head.len());
            assert_eq!(state, RequestBytes::Done, "{head:?}");
            assert_eq!(state.advance(&[0, 0x16, 0xff]), 3);
        }
        let mut state = RequestBytes::default();
        assert_eq!(state.advance(b"GET /\x01"), 5);
        assert_eq!(state.advance(b"more"), 0, "a refusal sticks");
    }
}
