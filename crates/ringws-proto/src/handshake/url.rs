//! `ws://` URLs (RFC 6455 §3): where to connect and what to ask for.

use std::borrow::Cow;
use std::fmt;
use std::net::Ipv6Addr;

use super::{is_reg_name, is_visible_ascii};

/// Why a string is not a `ws://` URL ringws can connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// `wss://`: ringws does not implement TLS; terminate it in front of ringws.
    TlsNotSupported,
    /// A scheme other than `ws` (or none at all).
    UnsupportedScheme,
    /// `user@host`: credentials in the URL are not sent by a WebSocket client.
    UserInfoNotSupported,
    /// A `#fragment`, which RFC 6455 §3 forbids in WebSocket URIs.
    FragmentNotAllowed,
    /// Nothing between `ws://` and the path.
    MissingHost,
    /// A host that is neither a registered name, an IPv4 nor a bracketed IPv6 address.
    InvalidHost,
    /// A port that is not a number in 1..=65535.
    InvalidPort,
    /// Bytes in the path or query outside `!`..=`~` (spaces, controls, non-ASCII);
    /// percent-encode them.
    InvalidCharacter,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UrlError::TlsNotSupported => "wss:// (TLS) is not supported",
            UrlError::UnsupportedScheme => "URL scheme must be ws://",
            UrlError::UserInfoNotSupported => "user information in a WebSocket URL",
            UrlError::FragmentNotAllowed => "fragment in a WebSocket URL",
            UrlError::MissingHost => "URL has no host",
            UrlError::InvalidHost => "invalid host in URL",
            UrlError::InvalidPort => "invalid port in URL (a port is a number in 1..=65535)",
            UrlError::InvalidCharacter => "path or query has a byte that must be percent-encoded",
        })
    }
}

impl std::error::Error for UrlError {}

/// The parts of `ws://host[:port][/path][?query]`, borrowed from the string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsUrl<'a> {
    host: &'a str,
    port: u16,
    path: &'a str,
    query: Option<&'a str>,
    /// Everything after the authority: path and query as written.
    target: &'a str,
}

impl<'a> WsUrl<'a> {
    /// The port a `ws://` URL without one connects to.
    pub const DEFAULT_PORT: u16 = 80;

    /// Splits `url`. The scheme is matched case-insensitively; percent-encoding
    /// is kept as written.
    pub fn parse(url: &'a str) -> Result<WsUrl<'a>, UrlError> {
        let (scheme, rest) = url.split_once("://").ok_or(UrlError::UnsupportedScheme)?;
        if scheme.eq_ignore_ascii_case("wss") {
            return Err(UrlError::TlsNotSupported);
        }
        if !scheme.eq_ignore_ascii_case("ws") {
            return Err(UrlError::UnsupportedScheme);
        }
        if rest.contains('#') {
            return Err(UrlError::FragmentNotAllowed);
        }
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(authority_end);
        if authority.contains('@') {
            return Err(UrlError::UserInfoNotSupported);
        }
        let (host, port) = split_authority(authority)?;
        if !is_visible_ascii(target.as_bytes()) {
            return Err(UrlError::InvalidCharacter);
        }
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        Ok(WsUrl {
            host,
            port,
            path: if path.is_empty() { "/" } else { path },
            query,
            target,
        })
    }

    /// The host to resolve or connect to; an IPv6 address comes without brackets.
    pub fn host(&self) -> &'a str {
        self.host
    }

    /// The port, [`WsUrl::DEFAULT_PORT`] if the URL names none.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path, `/` if the URL has none.
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The query without its `?`, if there is one.
    pub fn query(&self) -> Option<&'a str> {
        self.query
    }

    /// What goes in the request line: path and query, e.g. `/chat?room=1`.
    pub fn request_target(&self) -> Cow<'a, str> {
        if self.target.starts_with('/') {
            Cow::Borrowed(self.target)
        } else if self.target.is_empty() {
            Cow::Borrowed("/")
        } else {
            Cow::Owned(format!("/{}", self.target))
        }
    }
}

/// `host[:port]` or `[ipv6][:port]` into host and port.
fn split_authority(authority: &str) -> Result<(&str, u16), UrlError> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (address, after) = bracketed.split_once(']').ok_or(UrlError::InvalidHost)?;
        address
            .parse::<Ipv6Addr>()
            .map_err(|_| UrlError::InvalidHost)?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(UrlError::InvalidHost)?),
        };
        (address, port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err(UrlError::MissingHost);
        }
        if !is_reg_name(host) {
            return Err(UrlError::InvalidHost);
        }
        (host, port)
    };
    let port = match port {
        // RFC 3986 §3.2.3: an empty port means the scheme's default.
        None | Some("") => WsUrl::DEFAULT_PORT,
        Some(digits) => parse_port(digits).ok_or(UrlError::InvalidPort)?,
    };
    Ok((host, port))
}

fn parse_port(digits: &str) -> Option<u16> {
    if digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u16>().ok().filter(|&port| port != 0)
}
