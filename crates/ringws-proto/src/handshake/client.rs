//! Client role: write the opening request, check the server's answer.

use std::fmt;
use std::net::Ipv6Addr;

use super::{
    any_list_has_token, check_header, encode_nonce, extension_elements, is_reg_name, is_token,
    is_visible_ascii, syntax_error_part, write_header, AcceptKey, Attempt, BuildError, ByteCheck,
    HeadLimits, HeadScanner, Headers, Occurrence, ScanError, WsUrl, MAX_HEADERS_CEILING,
    WEBSOCKET_VERSION,
};

/// Why the server's answer does not complete the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseError {
    /// Not HTTP/1.x syntax. The text names the part that is wrong.
    Malformed(&'static str),
    /// The head did not end within `limit` bytes.
    HeadTooLarge {
        /// [`HeadLimits::max_head_bytes`].
        limit: usize,
    },
    /// More than `limit` header fields.
    TooManyHeaders {
        /// [`HeadLimits::max_headers`], capped at [`MAX_HEADERS_CEILING`].
        limit: usize,
    },
    /// The server answered with this status instead of 101.
    Refused {
        /// The HTTP status code, e.g. 403 or 503.
        status: u16,
    },
    /// A 101 over HTTP/1.0.
    HttpVersionNotSupported,
    /// `Upgrade` missing or not naming `websocket`.
    NotWebSocketUpgrade,
    /// `Connection` missing or not naming `upgrade`.
    MissingConnectionUpgrade,
    /// No `Sec-WebSocket-Accept`.
    MissingAccept,
    /// A header that may appear only once appeared more often.
    DuplicateHeader(&'static str),
    /// `Sec-WebSocket-Accept` does not answer our key.
    AcceptMismatch,
    /// `Sec-WebSocket-Protocol` is not a single token.
    InvalidSubprotocol,
    /// The server selected a subprotocol we did not offer.
    UnrequestedSubprotocol,
    /// The server accepted an extension we did not offer.
    UnrequestedExtension,
}

impl ResponseError {
    /// The status of a server that answered with something other than 101:
    /// what a load generator counts as "refused with status N".
    pub fn refused_status(&self) -> Option<u16> {
        match self {
            ResponseError::Refused { status } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::Malformed(part) => write!(f, "malformed response: {part}"),
            ResponseError::HeadTooLarge { limit } => {
                write!(f, "response head larger than {limit} bytes")
            }
            ResponseError::TooManyHeaders { limit } => {
                write!(f, "more than {limit} response header fields")
            }
            ResponseError::Refused { status } => {
                write!(f, "server refused the upgrade with status {status}")
            }
            ResponseError::HttpVersionNotSupported => f.write_str("101 response over HTTP/1.0"),
            ResponseError::NotWebSocketUpgrade => {
                f.write_str("Upgrade header does not name websocket")
            }
            ResponseError::MissingConnectionUpgrade => {
                f.write_str("Connection header does not name upgrade")
            }
            ResponseError::MissingAccept => f.write_str("missing Sec-WebSocket-Accept header"),
            ResponseError::DuplicateHeader(name) => write!(f, "more than one {name} header"),
            ResponseError::AcceptMismatch => {
                f.write_str("Sec-WebSocket-Accept does not match the key sent")
            }
            ResponseError::InvalidSubprotocol => {
                f.write_str("Sec-WebSocket-Protocol is not a single token")
            }
            ResponseError::UnrequestedSubprotocol => {
                f.write_str("server selected a subprotocol that was not offered")
            }
            ResponseError::UnrequestedExtension => {
                f.write_str("server accepted an extension that was not offered")
            }
        }
    }
}

impl std::error::Error for ResponseError {}

/// The server's `101 Switching Protocols`, checked, borrowed from the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeResponse<'b> {
    /// Bytes of the buffer taken by the response head; bytes after it are the
    /// server's first frames.
    pub head_len: usize,
    subprotocol: Option<&'b str>,
    headers: Headers<'b>,
}

impl<'b> HandshakeResponse<'b> {
    /// The subprotocol the server selected, always one we offered.
    pub fn subprotocol(&self) -> Option<&'b str> {
        self.subprotocol
    }

    /// Every header of the response.
    pub fn headers(&self) -> Headers<'b> {
        self.headers
    }
}

/// A client's side of the opening handshake.
///
/// Built once per connection with the caller's random nonce (this crate reads
/// no randomness); [`ClientHandshake::request`] gives the bytes to send and
/// [`ClientHandshake::parse_response`] reads the answer from a buffer the caller
/// keeps appending to.
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    request: Vec<u8>,
    expected_accept: AcceptKey,
    offered_subprotocols: Vec<Box<str>>,
    limits: HeadLimits,
    scanner: HeadScanner,
}

impl ClientHandshake {
    /// Prepares the request `GET path HTTP/1.1` to `host:port`.
    ///
    /// `host` is a name, an IPv4 address, or an IPv6 address with or without
    /// brackets; `port` is in 1..=65535 (0 names no server and is refused
    /// with [`BuildError::InvalidPort`]); `path` is the request target (`/`, `/chat?room=1`).
    /// `subprotocols` go into `Sec-WebSocket-Protocol` in order of preference.
    /// `extra_headers` (`Origin`, `Authorization`, `Sec-WebSocket-Extensions`
    /// offers...) are sent as given; those the handshake writes itself are refused.
    pub fn new(
        host: &str,
        port: u16,
        path: &str,
        nonce: [u8; 16],
        subprotocols: &[&str],
        extra_headers: &[(&str, &str)],
    ) -> Result<ClientHandshake, BuildError> {
        if port == 0 {
            return Err(BuildError::InvalidPort(port));
        }
        let host_header = host_header_value(host, port)?;
        if !path.starts_with('/') || !is_visible_ascii(path.as_bytes()) || path.contains('#') {
            return Err(BuildError::InvalidPath(path.to_owned()));
        }
        for (index, protocol) in subprotocols.iter().enumerate() {
            let repeated = subprotocols[..index].contains(protocol);
            if !is_token(protocol.as_bytes()) || repeated {
                return Err(BuildError::InvalidSubprotocol((*protocol).to_owned()));
            }
        }
        for (name, value) in extra_headers {
            check_header(name, value)?;
            if is_reserved_request_header(name) {
                return Err(BuildError::ReservedHeader((*name).to_owned()));
            }
        }

        let key = encode_nonce(&nonce);
        let mut request = Vec::with_capacity(256);
        request.extend_from_slice(b"GET ");
        request.extend_from_slice(path.as_bytes());
        request.extend_from_slice(b" HTTP/1.1\r\n");
        write_header(&mut request, "Host", &host_header);
        write_header(&mut request, "Upgrade", "websocket");
        write_header(&mut request, "Connection", "Upgrade");
        request.extend_from_slice(b"Sec-WebSocket-Key: ");
        request.extend_from_slice(&key);
        request.extend_from_slice(b"\r\n");
        write_header(&mut request, "Sec-WebSocket-Version", WEBSOCKET_VERSION);
        if !subprotocols.is_empty() {
            write_header(
                &mut request,
                "Sec-WebSocket-Protocol",
                &subprotocols.join(", "),
            );
        }
        for (name, value) in extra_headers {
            write_header(&mut request, name, value);
        }
        request.extend_from_slice(b"\r\n");

        Ok(ClientHandshake {
            request,
            expected_accept: AcceptKey::from_key(&key),
            offered_subprotocols: subprotocols.iter().map(|&p| p.into()).collect(),
            limits: HeadLimits::DEFAULT,
            scanner: HeadScanner::default(),
        })
    }

    /// [`ClientHandshake::new`] for a parsed `ws://` URL.
    pub fn for_url(
        url: &WsUrl<'_>,
        nonce: [u8; 16],
        subprotocols: &[&str],
        extra_headers: &[(&str, &str)],
    ) -> Result<ClientHandshake, BuildError> {
        ClientHandshake::new(
            url.host(),
            url.port(),
            &url.request_target(),
            nonce,
            subprotocols,
            extra_headers,
        )
    }

    /// Replaces the caps on the server's response head (default [`HeadLimits::DEFAULT`]).
    pub fn with_limits(mut self, limits: HeadLimits) -> ClientHandshake {
        self.limits = limits;
        self
    }

    /// The request bytes to send.
    pub fn request(&self) -> &[u8] {
        &self.request
    }

    /// The `Sec-WebSocket-Accept` the server must answer with.
    pub fn expected_accept(&self) -> AcceptKey {
        self.expected_accept
    }

    /// Looks for the server's complete response head at the start of `buf`,
    /// which must hold every byte received so far.
    ///
    /// `Ok(None)`: not complete yet, read more. `Ok(Some(_))`: the connection is
    /// open; see [`HandshakeResponse::head_len`]. `Err(_)`: fail the connection.
    /// The outcome depends only on `buf`, never on how it arrived in pieces.
    pub fn parse_response<'b>(
        &mut self,
        buf: &'b [u8],
    ) -> Result<Option<HandshakeResponse<'b>>, ResponseError> {
        let limits = self.limits;
        let expected_accept = &self.expected_accept;
        let offered_subprotocols = &self.offered_subprotocols;
        let outcome = self
            .scanner
            .scan(buf, limits.max_head_bytes, ByteCheck::None, |window| {
                parse_response_head(window, &limits, expected_accept, offered_subprotocols)
            });
        match outcome {
            Ok(Some((response, head_len))) => Ok(Some(HandshakeResponse {
                head_len,
                ..response
            })),
            Ok(None) => Ok(None),
            Err(ScanError::Invalid(error)) => Err(error),
            // `ByteCheck::None` refuses no byte; were it to, it is malformed.
            Err(ScanError::Refused(part)) => Err(ResponseError::Malformed(part)),
            Err(ScanError::Overflow) => Err(ResponseError::HeadTooLarge {
                limit: limits.max_head_bytes,
            }),
        }
    }
}

fn parse_response_head<'b>(
    window: &'b [u8],
    limits: &HeadLimits,
    expected_accept: &AcceptKey,
    offered_subprotocols: &[Box<str>],
) -> Result<Attempt<HandshakeResponse<'b>>, ResponseError> {
    // Left uninitialised, as for requests (see the server's `parse_head`).
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS_CEILING];
    let header_slots = limits.header_slots();
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        window,
        &mut slots[..header_slots],
    );
    let head_len = match parsed {
        Ok(httparse::Status::Complete(head_len)) => head_len,
        Ok(httparse::Status::Partial) => return Ok(Attempt::Partial),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ResponseError::TooManyHeaders {
                limit: header_slots,
            })
        }
        Err(error) => return Err(ResponseError::Malformed(syntax_error_part(error))),
    };
    // A complete parse always sets code and version.
    let status = response.code.unwrap_or_default();
    if status != 101 {
        return Err(ResponseError::Refused { status });
    }
    if response.version != Some(1) {
        return Err(ResponseError::HttpVersionNotSupported);
    }
    let headers = Headers::from_head(
        &window[..head_len],
        response.headers.first().map(|header| header.name),
    );
    let [upgrade, connection, accept, extensions, subprotocol] = headers.occurrences([
        "Upgrade",
        "Connection",
        "Sec-WebSocket-Accept",
        "Sec-WebSocket-Extensions",
        "Sec-WebSocket-Protocol",
    ]);
    if !any_list_has_token(headers.values_of("Upgrade", upgrade), "websocket") {
        return Err(ResponseError::NotWebSocketUpgrade);
    }
    if !any_list_has_token(headers.values_of("Connection", connection), "upgrade") {
        return Err(ResponseError::MissingConnectionUpgrade);
    }
    let accept =
        single_value(accept, "Sec-WebSocket-Accept")?.ok_or(ResponseError::MissingAccept)?;
    if accept != expected_accept.as_bytes() {
        return Err(ResponseError::AcceptMismatch);
    }
    // ringws offers no extension, so the server may accept none.
    let any_extension = headers
        .values_of("Sec-WebSocket-Extensions", extensions)
        .flat_map(extension_elements)
        .next()
        .is_some();
    if any_extension {
        return Err(ResponseError::UnrequestedExtension);
    }
    let subprotocol = match single_value(subprotocol, "Sec-WebSocket-Protocol")? {
        None => None,
        Some(selected) => {
            // A token is ASCII, so a token is always valid UTF-8.
            let selected = std::str::from_utf8(selected)
                .ok()
                .filter(|selected| is_token(selected.as_bytes()))
                .ok_or(ResponseError::InvalidSubprotocol)?;
            if !offered_subprotocols
                .iter()
                .any(|offered| &**offered == selected)
            {
                return Err(ResponseError::UnrequestedSubprotocol);
            }
            Some(selected)
        }
    };
    Ok(Attempt::Complete(
        HandshakeResponse {
            head_len,
            subprotocol,
            headers,
        },
        head_len,
    ))
}

/// The value of header `name`, which may appear at most once.
fn single_value<'b>(
    occurrence: Occurrence<'b>,
    name: &'static str,
) -> Result<Option<&'b [u8]>, ResponseError> {
    occurrence
        .at_most_once()
        .map_err(|()| ResponseError::DuplicateHeader(name))
}

fn is_reserved_request_header(name: &str) -> bool {
    // `Sec-WebSocket-Extensions` too: ringws implements no extension, and
    // one the server accepted would be in use from the first frame.
    const RESERVED: [&str; 10] = [
        "Host",
        "Upgrade",
        "Connection",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Protocol",
        "Sec-WebSocket-Accept",
        "Sec-WebSocket-Extensions",
        "Content-Length",
        "Transfer-Encoding",
    ];
    RESERVED
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(name))
}

/// The `Host` header for `host` and `port`: the port is left out when it is
/// the default 80, and IPv6 addresses are bracketed.
fn host_header_value(host: &str, port: u16) -> Result<String, BuildError> {
    let invalid = || BuildError::InvalidHost(host.to_owned());
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(host);
    let authority_host = if unbracketed.contains(':') {
        unbracketed.parse::<Ipv6Addr>().map_err(|_| invalid())?;
        format!("[{unbracketed}]")
    } else if host.len() == unbracketed.len() && is_reg_name(host) {
        host.to_owned()
    } else {
        return Err(invalid());
    };
    Ok(if port == 80 {
        authority_host
    } else {
        format!("{authority_host}:{port}")
    })
}
