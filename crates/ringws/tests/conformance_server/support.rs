//! The conformance harness, server role: in-process ringws echo servers and
//! a raw TCP peer that writes masked client frames byte-exact and reads
//! ringws's frames strictly (unmasked, RSV clear, minimal length).
//!
//! Every connection upgrades on its own request path; the servers record
//! what the handler saw per path, so a case can check the server's side of
//! the story (messages delivered, the close report) next to the wire.
//! Loopback only; every read and every wait is bounded by [`WAIT`].

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ringws::{
    CloseCode, CloseKind, ClosedInfo, Conn, ConnId, Handler, Initiator, Message, Pinning, Request,
    Server, ServerBuilder,
};

/// Upper bound for any single read or wait.
pub const WAIT: Duration = Duration::from_secs(10);

/// The opcodes of RFC 6455 §5.2.
pub mod op {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

// ----- servers -----

/// What the echo handler saw on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Open,
    Message { text: bool, payload: Vec<u8> },
    CloseReceived { code: Option<u16>, reason: String },
    Closed(ClosedInfo),
}

#[derive(Default)]
struct Log {
    by_path: Mutex<HashMap<String, Vec<Seen>>>,
    changed: Condvar,
}

impl Log {
    fn record(&self, path: &str, seen: Seen) {
        self.by_path
            .lock()
            .unwrap()
            .entry(path.to_owned())
            .or_default()
            .push(seen);
        self.changed.notify_all();
    }
}

/// Echoes every message and records every callback under the request path.
struct Echo {
    log: Arc<Log>,
}

impl Handler for Echo {
    type ConnData = String;

    fn on_upgrade(&mut self, request: &Request<'_>, path: &mut String) -> Result<(), u16> {
        request.path().clone_into(path);
        Ok(())
    }

    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        self.log.record(conn.data(), Seen::Open);
    }

    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
        let _ = match message {
            Message::Text(text) => conn.send_text(text),
            Message::Binary(bytes) => conn.send_binary(bytes),
        };
        let seen = Seen::Message {
            text: matches!(message, Message::Text(_)),
            payload: message.as_bytes().to_vec(),
        };
        self.log.record(conn.data(), seen);
    }

    fn on_close_received(
        &mut self,
        conn: &mut Conn<'_, Self>,
        code: Option<CloseCode>,
        reason: &str,
    ) {
        let seen = Seen::CloseReceived {
            code: code.map(|code| code.0),
            reason: reason.to_owned(),
        };
        self.log.record(conn.data(), seen);
    }

    fn on_closed(&mut self, _id: ConnId, path: String, info: &ClosedInfo) {
        self.log.record(&path, Seen::Closed(info.clone()));
    }
}

/// A running echo server shared by the cases of this binary (each case on
/// its own path). It lives until the test process exits.
pub struct TestServer {
    addr: SocketAddr,
    log: Arc<Log>,
}

impl TestServer {
    fn start(builder: ServerBuilder) -> TestServer {
        let log = Arc::new(Log::default());
        let handler_log = log.clone();
        let server = builder
            .workers(2)
            .pinning(Pinning::Off)
            // Keepalive Pings would add frames the cases do not expect.
            .ping_interval(None)
            .start(move |_worker| Echo {
                log: handler_log.clone(),
            })
            .expect("echo server starts");
        let addr = server.local_addr();
        // Detached: the workers run until the process exits.
        drop(server);
        TestServer { addr, log }
    }

    /// Opens a connection upgraded on `path`, which no other case uses.
    pub fn connect(&self, path: &str) -> Peer {
        assert!(
            !self.log.by_path.lock().unwrap().contains_key(path),
            "path {path} is used by two cases"
        );
        let peer = Peer::connect(self.addr, path);
        self.wait_for(path, "on_open", |seen| {
            seen.contains(&Seen::Open).then_some(())
        });
        peer
    }

    fn wait_for<T>(&self, path: &str, what: &str, mut pick: impl FnMut(&[Seen]) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        let mut by_path = self.log.by_path.lock().unwrap();
        loop {
            if let Some(found) = by_path.get(path).and_then(|seen| pick(seen)) {
                return found;
            }
            let now = Instant::now();
            assert!(now < deadline, "{path}: no {what} within {WAIT:?}");
            by_path = self
                .log
                .changed
                .wait_timeout(by_path, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// The close report of the connection on `path`, once it is gone.
    pub fn closed(&self, path: &str) -> ClosedInfo {
        self.wait_for(path, "on_closed", |seen| {
            seen.iter().find_map(|s| match s {
                Seen::Closed(info) => Some(info.clone()),
                _ => None,
            })
        })
    }

    /// Messages the handler received on `path`, in order.
    pub fn messages(&self, path: &str) -> Vec<(bool, Vec<u8>)> {
        self.log
            .by_path
            .lock()
            .unwrap()
            .get(path)
            .map(|seen| {
                seen.iter()
                    .filter_map(|s| match s {
                        Seen::Message { text, payload } => Some((*text, payload.clone())),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The peer Closes the handler saw on `path`: `(code, reason)`.
    pub fn closes_received(&self, path: &str) -> Vec<(Option<u16>, String)> {
        self.log
            .by_path
            .lock()
            .unwrap()
            .get(path)
            .map(|seen| {
                seen.iter()
                    .filter_map(|s| match s {
                        Seen::CloseReceived { code, reason } => Some((*code, reason.clone())),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Checks the server's report after ringws failed the connection with
    /// `code` and the peer went away without a Close: ringws started the
    /// close, sent `code`, and received no Close.
    pub fn assert_failed(&self, path: &str, code: u16) {
        let info = self.closed(path);
        assert_eq!(info.sent, Some(CloseCode(code)), "{path}: {info:?}");
        assert_eq!(info.code, CloseCode(1006), "{path}: {info:?}");
        assert_eq!(info.initiator, Initiator::Local, "{path}: {info:?}");
        assert_eq!(info.kind, CloseKind::Abnormal, "{path}: {info:?}");
    }

    /// Checks the server's report after the peer closed with `code` (`None`:
    /// an empty Close) and ringws replied.
    pub fn assert_closed_by_peer(&self, path: &str, code: Option<u16>, reason: &str) {
        let info = self.closed(path);
        assert_eq!(info.code.0, code.unwrap_or(1005), "{path}: {info:?}");
        assert_eq!(info.reason, reason, "{path}: {info:?}");
        assert_eq!(info.initiator, Initiator::Remote, "{path}: {info:?}");
        assert_eq!(info.kind, CloseKind::Clean, "{path}: {info:?}");
        assert_eq!(self.closes_received(path), [(code, reason.to_owned())]);
    }
}

/// Default limits (1 MiB messages).
pub fn standard() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    SERVER.get_or_init(|| TestServer::start(Server::bind(localhost())))
}

/// Messages up to 16 MiB.
pub fn large() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    SERVER.get_or_init(|| TestServer::start(Server::bind(localhost()).max_message_size(16 << 20)))
}

/// Frames up to [`SMALL_FRAME_LIMIT`], messages up to [`SMALL_MESSAGE_LIMIT`].
pub fn limited() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        TestServer::start(
            Server::bind(localhost())
                .max_frame_size(SMALL_FRAME_LIMIT)
                .max_message_size(SMALL_MESSAGE_LIMIT),
        )
    })
}

pub const SMALL_FRAME_LIMIT: usize = 32 << 10;
pub const SMALL_MESSAGE_LIMIT: usize = 64 << 10;

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

// ----- client frames -----

/// How a frame's payload length is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// The shortest form, as RFC 6455 requires.
    Minimal,
    /// Always the 16-bit extended form (non-minimal below 126).
    Extended16,
    /// Always the 64-bit extended form (non-minimal below 65 536).
    Extended64,
}

/// A client frame to put on the wire, masked unless told otherwise.
#[derive(Debug, Clone)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
    pub length: Length,
    pub masked: bool,
    /// A fixed masking key; `None` takes the peer's next key.
    pub key: Option<[u8; 4]>,
}

impl Frame {
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> Frame {
        Frame {
            fin: true,
            rsv: 0,
            opcode,
            payload: payload.into(),
            length: Length::Minimal,
            masked: true,
            key: None,
        }
    }

    pub fn text(text: impl AsRef<[u8]>) -> Frame {
        Frame::new(op::TEXT, text.as_ref())
    }

    pub fn binary(bytes: impl Into<Vec<u8>>) -> Frame {
        Frame::new(op::BINARY, bytes)
    }

    pub fn continuation(bytes: impl AsRef<[u8]>) -> Frame {
        Frame::new(op::CONTINUATION, bytes.as_ref())
    }

    pub fn ping(payload: impl AsRef<[u8]>) -> Frame {
        Frame::new(op::PING, payload.as_ref())
    }

    pub fn pong(payload: impl AsRef<[u8]>) -> Frame {
        Frame::new(op::PONG, payload.as_ref())
    }

    /// A Close with `code` and `reason` bytes (which need not be UTF-8).
    pub fn close(code: u16, reason: impl AsRef<[u8]>) -> Frame {
        Frame::new(op::CLOSE, close_payload(code, reason.as_ref()))
    }

    pub fn fin(mut self, fin: bool) -> Frame {
        self.fin = fin;
        self
    }

    pub fn rsv(mut self, rsv: u8) -> Frame {
        self.rsv = rsv;
        self
    }

    pub fn length(mut self, length: Length) -> Frame {
        self.length = length;
        self
    }

    pub fn unmasked(mut self) -> Frame {
        self.masked = false;
        self
    }

    pub fn key(mut self, key: [u8; 4]) -> Frame {
        self.key = Some(key);
        self
    }

    /// The frame's header: everything before the payload.
    pub fn header(&self, key: [u8; 4]) -> Vec<u8> {
        let mut head =
            vec![(u8::from(self.fin) << 7) | ((self.rsv & 7) << 4) | (self.opcode & 0xF)];
        let mask_bit = if self.masked { 0x80 } else { 0 };
        let len = self.payload.len();
        let form = match self.length {
            Length::Minimal if len < 126 => None,
            Length::Minimal if len <= 0xFFFF => Some(Length::Extended16),
            Length::Minimal => Some(Length::Extended64),
            other => Some(other),
        };
        match form {
            None => head.push(mask_bit | len as u8),
            Some(Length::Extended16) => {
                head.push(mask_bit | 126);
                head.extend_from_slice(&(len as u16).to_be_bytes());
            }
            Some(_) => {
                head.push(mask_bit | 127);
                head.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        if self.masked {
            head.extend_from_slice(&key);
        }
        head
    }

    /// The whole frame on the wire, masked with `key` (unless unmasked).
    pub fn encode(&self, key: [u8; 4]) -> Vec<u8> {
        let mut bytes = self.header(self.key.unwrap_or(key));
        let start = bytes.len();
        bytes.extend_from_slice(&self.payload);
        if self.masked {
            let key = self.key.unwrap_or(key);
            for (i, byte) in bytes[start..].iter_mut().enumerate() {
                *byte ^= key[i % 4];
            }
        }
        bytes
    }
}

/// A Close payload: the code in network order, then the reason bytes.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    payload
}

/// Splits `payload` into consecutive pieces of the given sizes (cycled; a
/// size may be 0; the last piece takes what is left).
pub fn pieces<'a>(payload: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    assert!(sizes.iter().any(|&size| size > 0));
    let mut out = Vec::new();
    let mut rest = payload;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        out.push(piece);
        rest = tail;
    }
    out
}

/// `payload` as a fragmented message: the first piece with `opcode`, the
/// rest as continuations, FIN on the last.
pub fn fragmented(opcode: u8, payload: &[u8], sizes: &[usize]) -> Vec<Frame> {
    let parts = pieces(payload, sizes);
    let count = parts.len().max(1);
    (0..count)
        .map(|i| {
            let part = parts.get(i).copied().unwrap_or_default();
            let opcode = if i == 0 { opcode } else { op::CONTINUATION };
            Frame::new(opcode, part).fin(i + 1 == count)
        })
        .collect()
}

/// A deterministic text of exactly `len` bytes mixing 1- to 4-byte
/// characters (with ASCII filling the end).
pub fn mixed_text(len: usize) -> String {
    let pattern = ['a', 'é', '€', '𝄞', ' ', 'ß', '字', '😀', 'z'];
    let mut text = String::with_capacity(len);
    for c in pattern.iter().cycle() {
        if text.len() == len {
            break;
        }
        text.push(if text.len() + c.len_utf8() > len {
            'x'
        } else {
            *c
        });
    }
    text
}

/// Deterministic binary content of `len` bytes, every byte value present.
pub fn pattern_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 131 + i / 251) as u8).collect()
}

// ----- the peer -----

/// A frame from ringws, decoded strictly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFrame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// A raw WebSocket client on a blocking `TcpStream`.
pub struct Peer {
    stream: TcpStream,
    /// Bytes read and not yet decoded.
    pending: Vec<u8>,
    /// xorshift32 state for varying masking keys.
    key_state: u32,
    path: String,
}

/// The handshake key of RFC 6455 §1.3 and its accept value.
const HANDSHAKE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const HANDSHAKE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

impl Peer {
    fn connect(addr: SocketAddr, path: &str) -> Peer {
        let mut stream = TcpStream::connect(addr).expect("connect to the echo server");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {HANDSHAKE_KEY}\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut pending = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let n = stream.read(&mut chunk).expect("upgrade response");
            assert!(n > 0, "{path}: EOF before the upgrade response");
            pending.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&pending[..head_end]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101 "), "{path}: {head}");
        assert!(
            head.contains(&format!(
                "sec-websocket-accept: {}",
                HANDSHAKE_ACCEPT.to_ascii_lowercase()
            )),
            "{path}: {head}"
        );
        pending.drain(..head_end);
        // Seeded from the path so every case masks differently but
        // reproducibly.
        let key_state = path.bytes().fold(0x811C_9DC5u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        }) | 1;
        Peer {
            stream,
            pending,
            key_state,
            path: path.to_owned(),
        }
    }

    fn next_key(&mut self) -> [u8; 4] {
        let mut x = self.key_state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.key_state = x;
        x.to_be_bytes()
    }

    /// Encodes `frame` with the next masking key.
    pub fn encode(&mut self, frame: &Frame) -> Vec<u8> {
        let key = self.next_key();
        frame.encode(key)
    }

    /// Encodes all `frames` back to back.
    pub fn encode_all(&mut self, frames: &[Frame]) -> Vec<u8> {
        frames.iter().flat_map(|frame| self.encode(frame)).collect()
    }

    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("{}: write failed: {e}", self.path));
    }

    /// Writes `bytes` in separate writes of the given sizes (cycled).
    pub fn write_chunked(&mut self, bytes: &[u8], sizes: &[usize]) {
        for piece in pieces(bytes, sizes) {
            self.write_raw(piece);
        }
    }

    /// Writes `bytes` one byte per write, pausing now and then so the
    /// server sees them in many small receives.
    pub fn write_bytewise(&mut self, bytes: &[u8]) {
        for (i, byte) in bytes.iter().enumerate() {
            self.write_raw(std::slice::from_ref(byte));
            if i % 8 == 7 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }

    /// Sends one frame in one write.
    pub fn send(&mut self, frame: &Frame) {
        let bytes = self.encode(frame);
        self.write_raw(&bytes);
    }

    /// Sends frames, one write each.
    pub fn send_each(&mut self, frames: &[Frame]) {
        for frame in frames {
            self.send(frame);
        }
    }

    /// Sends frames back to back in a single write.
    pub fn send_together(&mut self, frames: &[Frame]) {
        let bytes = self.encode_all(frames);
        self.write_raw(&bytes);
    }

    fn fill(&mut self, want: usize) {
        let mut chunk = vec![0u8; 256 << 10];
        while self.pending.len() < want {
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!(
                    "{}: EOF while waiting for a frame (have {} of {want} bytes)",
                    self.path,
                    self.pending.len()
                ),
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("{}: no frame from the server within {WAIT:?}", self.path)
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("{}: read failed while waiting for a frame: {e}", self.path),
            }
        }
    }

    /// Reads one frame from ringws, checking what every server frame must
    /// be: unmasked (§5.1) with its length in the minimal form (§5.2).
    pub fn read_frame(&mut self) -> ServerFrame {
        self.fill(2);
        let (first, second) = (self.pending[0], self.pending[1]);
        assert_eq!(second & 0x80, 0, "{}: server frame is masked", self.path);
        let (len, header) = match second & 0x7F {
            126 => {
                self.fill(4);
                let len = u16::from_be_bytes([self.pending[2], self.pending[3]]) as usize;
                assert!(len >= 126, "{}: non-minimal 16-bit length {len}", self.path);
                (len, 4)
            }
            127 => {
                self.fill(10);
                let mut be = [0u8; 8];
                be.copy_from_slice(&self.pending[2..10]);
                let len = u64::from_be_bytes(be);
                assert!(
                    len > 0xFFFF,
                    "{}: non-minimal 64-bit length {len}",
                    self.path
                );
                (usize::try_from(len).unwrap(), 10)
            }
            len => (usize::from(len), 2),
        };
        self.fill(header + len);
        let payload = self.pending[header..header + len].to_vec();
        self.pending.drain(..header + len);
        ServerFrame {
            fin: first & 0x80 != 0,
            rsv: (first >> 4) & 7,
            opcode: first & 0x0F,
            payload,
        }
    }

    /// The next frame is exactly this unfragmented frame.
    pub fn expect_frame(&mut self, opcode: u8, payload: &[u8]) {
        let frame = self.read_frame();
        let expected = ServerFrame {
            fin: true,
            rsv: 0,
            opcode,
            payload: payload.to_vec(),
        };
        if frame != expected {
            panic!(
                "{}: expected {}, got {}",
                self.path,
                describe(&expected),
                describe(&frame)
            );
        }
    }

    pub fn expect_text(&mut self, text: impl AsRef<[u8]>) {
        self.expect_frame(op::TEXT, text.as_ref());
    }

    pub fn expect_binary(&mut self, bytes: &[u8]) {
        self.expect_frame(op::BINARY, bytes);
    }

    pub fn expect_pong(&mut self, payload: impl AsRef<[u8]>) {
        self.expect_frame(op::PONG, payload.as_ref());
    }

    /// The next frame is a Close with exactly this payload.
    pub fn expect_close_payload(&mut self, payload: &[u8]) {
        self.expect_frame(op::CLOSE, payload);
    }

    /// The next frame is a Close with `code` and a UTF-8 reason of at most
    /// 123 bytes; returns the reason.
    pub fn expect_close(&mut self, code: u16) -> String {
        let frame = self.read_frame();
        assert!(
            frame.opcode == op::CLOSE && frame.fin && frame.rsv == 0,
            "{}: expected Close {code}, got {}",
            self.path,
            describe(&frame)
        );
        assert!(
            frame.payload.len() >= 2,
            "{}: Close without a code: {}",
            self.path,
            describe(&frame)
        );
        let got = u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
        assert_eq!(got, code, "{}: close code", self.path);
        let reason = std::str::from_utf8(&frame.payload[2..])
            .unwrap_or_else(|_| panic!("{}: close reason is not UTF-8", self.path));
        assert!(reason.len() <= 123);
        reason.to_owned()
    }

    /// ringws closes TCP (a FIN, not a reset) while this side has not
    /// closed anything, and sends nothing more before it. Then this side
    /// closes too, as a client does once the server has closed (§7.1.1).
    pub fn expect_eof(&mut self) {
        assert!(
            self.pending.is_empty(),
            "{}: {} unread bytes before EOF: {:?}",
            self.path,
            self.pending.len(),
            describe_bytes(&self.pending)
        );
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    // Our FIN: the server's wait for it (bounded by its
                    // close timeout) ends now.
                    let _ = self.stream.shutdown(Shutdown::Both);
                    return;
                }
                Ok(n) => panic!(
                    "{}: bytes after the last expected frame: {}",
                    self.path,
                    describe_bytes(&chunk[..n])
                ),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!(
                        "{}: the server did not close TCP within {WAIT:?}",
                        self.path
                    )
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("{}: expected a FIN, got {e}", self.path),
            }
        }
    }

    /// ringws fails the connection: a Close with `code`, then it closes TCP
    /// first. Returns the Close reason.
    pub fn expect_failure(&mut self, code: u16) -> String {
        let reason = self.expect_close(code);
        self.expect_eof();
        reason
    }

    /// The closing handshake from this side: Close 1000, the echo of exactly
    /// that code, then ringws closes TCP first.
    pub fn close_normally(&mut self) {
        self.send(&Frame::close(1000, ""));
        self.expect_close_payload(&1000u16.to_be_bytes());
        self.expect_eof();
    }

    /// Sends our FIN (shuts down the sending side; reading goes on).
    pub fn shutdown_write(&mut self) {
        self.stream.shutdown(Shutdown::Write).unwrap();
    }

    /// Nothing arrives within `wait` (the connection stays quiet and open).
    pub fn expect_silence(&mut self, wait: Duration) {
        assert!(
            self.pending.is_empty(),
            "{}: unexpected bytes {:?}",
            self.path,
            describe_bytes(&self.pending)
        );
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut chunk = [0u8; 4096];
        let result = self.stream.read(&mut chunk);
        self.stream.set_read_timeout(Some(WAIT)).unwrap();
        match result {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Ok(0) => panic!("{}: the server closed the connection", self.path),
            Ok(n) => panic!(
                "{}: unexpected bytes {}",
                self.path,
                describe_bytes(&chunk[..n])
            ),
            Err(e) => panic!("{}: read failed: {e}", self.path),
        }
    }
}

fn describe(frame: &ServerFrame) -> String {
    format!(
        "frame {{ fin: {}, rsv: {}, opcode: {:#x}, {} payload bytes: {} }}",
        frame.fin,
        frame.rsv,
        frame.opcode,
        frame.payload.len(),
        describe_bytes(&frame.payload)
    )
}

fn describe_bytes(bytes: &[u8]) -> String {
    const SHOWN: usize = 48;
    let shown: Vec<String> = bytes
        .iter()
        .take(SHOWN)
        .map(|b| format!("{b:02x}"))
        .collect();
    let more = if bytes.len() > SHOWN { " …" } else { "" };
    format!("[{}{more}]", shown.join(" "))
}
