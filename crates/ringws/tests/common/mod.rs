//! Test server handler and clients (tokio-tungstenite and raw TCP).
//! Loopback only, every wait bounded.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use ringws::{
    CloseCode, CloseError, ClosedInfo, Conn, ConnHandle, ConnId, Handler, Message, SendError,
    ServerBuilder, ServerHandle, State, WorkerId,
};
use tokio::net::TcpStream as TokioTcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Upper bound for anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(10);

/// Polls `check` until it holds, or fails naming `what` after [`WAIT`].
pub fn poll_until(what: &str, mut check: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            std::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// What the test handler saw.
#[derive(Debug)]
pub enum Event {
    Open {
        id: ConnId,
        worker: WorkerId,
        handle: ConnHandle,
        subprotocol: Option<String>,
        path: String,
    },
    Text {
        id: ConnId,
        text: String,
    },
    Binary {
        id: ConnId,
        len: usize,
    },
    CloseReceived {
        id: ConnId,
        code: Option<u16>,
        reason: String,
        state: State,
    },
    Closed {
        id: ConnId,
        info: ClosedInfo,
        path: String,
    },
    Pong {
        id: ConnId,
        payload: Vec<u8>,
    },
    CloseResult {
        id: ConnId,
        result: Result<(), CloseError>,
    },
    SendResult {
        id: ConnId,
        result: Result<(), SendError>,
    },
    Drain {
        id: ConnId,
    },
}

impl Event {
    pub fn id(&self) -> ConnId {
        match self {
            Event::Open { id, .. }
            | Event::Text { id, .. }
            | Event::Binary { id, .. }
            | Event::CloseReceived { id, .. }
            | Event::Closed { id, .. }
            | Event::Pong { id, .. }
            | Event::CloseResult { id, .. }
            | Event::SendResult { id, .. }
            | Event::Drain { id } => *id,
        }
    }
}

/// Per-connection data of the test handler: the request path.
#[derive(Debug, Default)]
pub struct Path(pub String);

/// Echoes messages and obeys text commands:
///
/// * `close <code> <reason>`: `conn.close(code, reason)`, reports the result;
/// * `closebytes <code> <hex>`: `conn.close_bytes` with raw reason bytes;
/// * `terminate`: `conn.terminate()`;
/// * `pause`: `conn.pause_reading()`;
/// * `flood <count> <size>`: sends `count` binary messages of `size` bytes
///   in this callback, reports the first error (or Ok);
/// * `pings <count>`: sends `count` Pings of 125 bytes in this callback,
///   reports the first error (or Ok);
/// * `reply-on-close <code>`: on the peer's Close, reply with this code;
/// * `panic`: panics;
/// * anything else is echoed.
///
/// The upgrade of path `/forbidden` is refused with 401, that of `/panic`
/// panics, and for `/panic-on-<callback>` that callback (`open`,
/// `close-received`, `closed`) panics after reporting.
pub struct Recorder {
    pub events: mpsc::Sender<Event>,
    pub reply_code: Option<u16>,
}

impl Recorder {
    fn send(&self, event: Event) {
        let _ = self.events.send(event);
    }
}

impl Handler for Recorder {
    type ConnData = Path;

    fn on_upgrade(&mut self, request: &ringws::Request<'_>, data: &mut Path) -> Result<(), u16> {
        match request.path() {
            "/forbidden" => return Err(401),
            "/panic" => panic!("the test handler panics on upgrade"),
            _ => {}
        }
        data.0 = request.path().to_owned();
        Ok(())
    }

    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        self.send(Event::Open {
            id: conn.id(),
            worker: conn.worker(),
            handle: conn.handle(),
            subprotocol: conn.subprotocol().map(str::to_owned),
            path: conn.data().0.clone(),
        });
        assert_ne!(
            conn.data().0,
            "/panic-on-open",
            "the test handler panics in on_open"
        );
    }

    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
        let id = conn.id();
        match message {
            Message::Text(text) => {
                let mut words = text.splitn(3, ' ');
                match (words.next(), words.next(), words.next()) {
                    (Some("close"), Some(code), reason) => {
                        let code = code.parse().unwrap_or(0);
                        let result = conn.close(code, reason.unwrap_or(""));
                        self.send(Event::CloseResult { id, result });
                    }
                    (Some("closebytes"), Some(code), Some(hex)) => {
                        let code = code.parse().unwrap_or(0);
                        let bytes = decode_hex(hex);
                        let result = conn.close_bytes(code, &bytes);
                        self.send(Event::CloseResult { id, result });
                    }
                    (Some("terminate"), None, None) => conn.terminate(),
                    (Some("pause"), None, None) => {
                        conn.pause_reading();
                        assert!(conn.is_reading_paused());
                    }
                    (Some("panic"), None, None) => panic!("the test handler panics on a message"),
                    (Some("flood"), Some(count), Some(size)) => {
                        let count: usize = count.parse().unwrap_or(0);
                        let payload = vec![0xAB; size.parse().unwrap_or(0)];
                        let mut result = Ok(());
                        for _ in 0..count {
                            if let Err(error) = conn.send_binary(&payload) {
                                result = Err(error);
                                break;
                            }
                        }
                        self.send(Event::SendResult { id, result });
                    }
                    (Some("pings"), Some(count), None) => {
                        let count: usize = count.parse().unwrap_or(0);
                        let mut result = Ok(());
                        for _ in 0..count {
                            if let Err(error) = conn.ping(&[0x50; 125]) {
                                result = Err(error);
                                break;
                            }
                        }
                        self.send(Event::SendResult { id, result });
                    }
                    (Some("reply-on-close"), Some(code), None) => {
                        self.reply_code = code.parse().ok();
                    }
                    _ => {
                        let _ = conn.send_text(text);
                        self.send(Event::Text {
                            id,
                            text: text.to_owned(),
                        });
                    }
                }
            }
            Message::Binary(bytes) => {
                let _ = conn.send_binary(bytes);
                self.send(Event::Binary {
                    id,
                    len: bytes.len(),
                });
            }
        }
    }

    fn on_close_received(
        &mut self,
        conn: &mut Conn<'_, Self>,
        code: Option<CloseCode>,
        reason: &str,
    ) {
        self.send(Event::CloseReceived {
            id: conn.id(),
            code: code.map(|c| c.0),
            reason: reason.to_owned(),
            state: conn.state(),
        });
        if let Some(reply) = self.reply_code {
            let result = conn.close(reply, "custom reply");
            self.send(Event::CloseResult {
                id: conn.id(),
                result,
            });
        }
        assert_ne!(
            conn.data().0,
            "/panic-on-close-received",
            "the test handler panics in on_close_received"
        );
    }

    fn on_closed(&mut self, id: ConnId, data: Path, info: &ClosedInfo) {
        let panics = data.0 == "/panic-on-closed";
        self.send(Event::Closed {
            id,
            info: info.clone(),
            path: data.0,
        });
        assert!(!panics, "the test handler panics in on_closed");
    }

    fn on_pong(&mut self, conn: &mut Conn<'_, Self>, payload: &[u8]) {
        self.send(Event::Pong {
            id: conn.id(),
            payload: payload.to_vec(),
        });
    }

    fn on_drain(&mut self, conn: &mut Conn<'_, Self>) {
        self.send(Event::Drain { id: conn.id() });
    }
}

fn decode_hex(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// A loopback builder on port 0 with quiet keepalive.
pub fn builder() -> ServerBuilder {
    ringws::Server::bind("127.0.0.1:0".parse().unwrap())
        .workers(2)
        .pinning(ringws::Pinning::Off)
}

/// Starts `builder` with the recorder handler.
pub fn start(builder: ServerBuilder) -> (ServerHandle, Events) {
    let (tx, rx) = mpsc::channel();
    let server = builder
        .start(move |_worker| Recorder {
            events: tx.clone(),
            reply_code: None,
        })
        .expect("server starts");
    (server, Events { rx })
}

/// The recorder's event stream.
pub struct Events {
    pub rx: mpsc::Receiver<Event>,
}

impl Events {
    /// Next event (blocking; for tests without an async client running).
    pub fn next_blocking(&self) -> Event {
        self.rx.recv_timeout(WAIT).expect("event within the wait")
    }

    /// The next event if one comes within `wait`.
    pub fn try_next(&self, wait: Duration) -> Option<Event> {
        self.rx.recv_timeout(wait).ok()
    }

    /// Next event, polling so an async client on the same thread progresses.
    pub async fn next(&self) -> Event {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.rx.try_recv() {
                Ok(event) => return event,
                Err(mpsc::TryRecvError::Empty) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(error) => panic!("no event within {WAIT:?}: {error:?}"),
            }
        }
    }

    /// Skips events until `pick` returns a value.
    pub async fn find<T>(&self, mut pick: impl FnMut(Event) -> Option<T>) -> T {
        loop {
            if let Some(found) = pick(self.next().await) {
                return found;
            }
        }
    }

    /// Blocking form of [`find`](Self::find).
    pub fn find_blocking<T>(&self, mut pick: impl FnMut(Event) -> Option<T>) -> T {
        loop {
            if let Some(found) = pick(self.next_blocking()) {
                return found;
            }
        }
    }

    pub async fn opened(&self) -> (ConnId, WorkerId, ConnHandle) {
        self.find(|event| match event {
            Event::Open {
                id, worker, handle, ..
            } => Some((id, worker, handle)),
            _ => None,
        })
        .await
    }

    pub fn opened_blocking(&self) -> (ConnId, WorkerId, ConnHandle) {
        self.find_blocking(|event| match event {
            Event::Open {
                id, worker, handle, ..
            } => Some((id, worker, handle)),
            _ => None,
        })
    }

    pub async fn closed(&self, conn: ConnId) -> ClosedInfo {
        self.find(|event| match event {
            Event::Closed { id, info, .. } if id == conn => Some(info),
            _ => None,
        })
        .await
    }

    pub fn closed_blocking(&self, conn: ConnId) -> ClosedInfo {
        self.find_blocking(|event| match event {
            Event::Closed { id, info, .. } if id == conn => Some(info),
            _ => None,
        })
    }
}

pub type Client = WebSocketStream<MaybeTlsStream<TokioTcpStream>>;

/// Connects a tokio-tungstenite client with large limits.
pub async fn connect(addr: SocketAddr) -> Client {
    connect_path(addr, "/").await
}

pub async fn connect_path(addr: SocketAddr, path: &str) -> Client {
    let config = WebSocketConfig {
        max_message_size: Some(64 << 20),
        max_frame_size: Some(64 << 20),
        ..WebSocketConfig::default()
    };
    let url = format!("ws://{addr}{path}");
    let (client, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async_with_config(url, Some(config), true),
    )
    .await
    .expect("connect in time")
    .expect("handshake succeeds");
    client
}

/// The next data or close message from the client, bounded in time.
pub async fn recv(client: &mut Client) -> WsMessage {
    loop {
        let message = tokio::time::timeout(WAIT, client.next())
            .await
            .expect("message in time")
            .expect("stream not ended")
            .expect("no protocol error");
        match message {
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            other => return other,
        }
    }
}

/// Keeps reading (which lets tungstenite answer a Close) until the stream
/// ends, bounded in time.
pub async fn run_to_end(client: &mut Client) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Ok(Some(Ok(_))) = tokio::time::timeout_at(deadline, client.next()).await {}
}

pub async fn send(client: &mut Client, message: WsMessage) {
    tokio::time::timeout(WAIT, client.send(message))
        .await
        .expect("send in time")
        .expect("send succeeds");
}

// ----- raw clients -----

/// A raw TCP client that did the upgrade by hand.
pub struct RawClient {
    pub stream: TcpStream,
    /// Bytes read past the 101 response.
    pub pending: Vec<u8>,
}

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Sends `request` and reads the response head (and whatever follows).
pub fn raw_request(addr: SocketAddr, request: &[u8]) -> (TcpStream, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(request).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut chunk).expect("response");
        assert!(n > 0, "connection closed before a response head: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let rest = buf[head_end..].to_vec();
    (stream, head, rest)
}

/// Reads until EOF (or reset), bounded by the read timeout.
pub fn read_to_end(stream: &mut TcpStream, mut bytes: Vec<u8>) -> Vec<u8> {
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return bytes,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(error)
                if error.kind() == std::io::ErrorKind::WouldBlock
                    || error.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("no EOF within {WAIT:?}")
            }
            Err(_) => return bytes,
        }
    }
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> RawClient {
        RawClient::connect_with(addr, &upgrade_request("/", ""))
    }

    pub fn connect_with(addr: SocketAddr, request: &str) -> RawClient {
        let (stream, head, rest) = raw_request(addr, request.as_bytes());
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        RawClient {
            stream,
            pending: rest,
        }
    }

    /// Writes one masked frame.
    pub fn write_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let frame = masked_frame(fin, opcode, payload);
        self.stream.write_all(&frame).unwrap();
    }

    fn fill(&mut self, want: usize) -> bool {
        let mut chunk = [0u8; 65536];
        while self.pending.len() < want {
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return false,
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
            }
        }
        true
    }

    /// Reads one (unmasked) server frame: `(fin, opcode, payload)`; `None`
    /// at EOF.
    pub fn read_frame(&mut self) -> Option<(bool, u8, Vec<u8>)> {
        if !self.fill(2) {
            return None;
        }
        let fin = self.pending[0] & 0x80 != 0;
        let opcode = self.pending[0] & 0x0F;
        assert_eq!(self.pending[1] & 0x80, 0, "server frames are unmasked");
        let (len, header) = match self.pending[1] & 0x7F {
            126 => {
                if !self.fill(4) {
                    return None;
                }
                (
                    u16::from_be_bytes([self.pending[2], self.pending[3]]) as usize,
                    4,
                )
            }
            127 => {
                if !self.fill(10) {
                    return None;
                }
                let mut len = [0u8; 8];
                len.copy_from_slice(&self.pending[2..10]);
                (u64::from_be_bytes(len) as usize, 10)
            }
            len => (len as usize, 2),
        };
        if !self.fill(header + len) {
            return None;
        }
        let payload = self.pending[header..header + len].to_vec();
        self.pending.drain(..header + len);
        Some((fin, opcode, payload))
    }

    /// Reads frames until a Close; returns its payload. Data frames and
    /// Pings before it are skipped.
    pub fn read_close(&mut self) -> Vec<u8> {
        loop {
            let (_, opcode, payload) = self.read_frame().expect("a Close frame before EOF");
            if opcode == 0x8 {
                return payload;
            }
        }
    }

    /// Whether the server closed the connection (EOF or reset) within the
    /// read timeout, discarding anything else.
    pub fn wait_eof(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(error)
                    if error.kind() == std::io::ErrorKind::WouldBlock
                        || error.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
    }
}

/// A thread that writes `batches` batches of bytes to a client's stream
/// (batch `n` made by `batch_of(n)`) and counts those written, to see TCP
/// stop a peer that the server does not read.
pub struct BatchWriter {
    thread: JoinHandle<()>,
    written: Arc<AtomicUsize>,
    batches: usize,
}

impl BatchWriter {
    pub fn spawn(
        stream: &TcpStream,
        batches: usize,
        batch_of: impl Fn(usize) -> Vec<u8> + Send + 'static,
    ) -> BatchWriter {
        let mut writer = stream.try_clone().unwrap();
        let written = Arc::new(AtomicUsize::new(0));
        let progress = written.clone();
        let thread = std::thread::spawn(move || {
            for n in 0..batches {
                writer.write_all(&batch_of(n)).unwrap();
                progress.fetch_add(1, Ordering::Relaxed);
            }
        });
        BatchWriter {
            thread,
            written,
            batches,
        }
    }

    /// Waits until the writer has not moved for 300 ms or is done (at most
    /// 20 s) and returns how many batches it wrote: fewer than all when TCP
    /// stopped it.
    pub fn wait_until_stuck(&self) -> usize {
        let start = Instant::now();
        let mut last = (usize::MAX, Instant::now());
        while start.elapsed() < Duration::from_secs(20) {
            let now = self.written.load(Ordering::Relaxed);
            if now == self.batches {
                break;
            }
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() > Duration::from_millis(300) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.written.load(Ordering::Relaxed)
    }

    /// Waits for every batch to be written.
    pub fn join(self) {
        self.thread.join().unwrap();
    }
}

/// One masked client frame.
pub fn masked_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xFA, 0x21, 0x3D];
    let mut frame = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=65535 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// A Close payload: code then reason.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// Waits (bounded) until `check` holds on the server's stats.
pub fn wait_stats(
    server: &ServerHandle,
    mut check: impl FnMut(&ringws::Stats) -> bool,
) -> ringws::Stats {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = server.stats();
        if check(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "stats condition not met: {stats:#?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The payload of a text or binary message from tungstenite.
pub fn payload_of(message: &WsMessage) -> Vec<u8> {
    match message {
        WsMessage::Text(text) => text.as_bytes().to_vec(),
        WsMessage::Binary(bytes) => bytes.clone(),
        other => panic!("expected a data message, got {other:?}"),
    }
}
