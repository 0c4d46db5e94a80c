//! Helpers for the client tests: a recording client handler, a ringws echo
//! server that records what it sees, raw TCP "servers" for misbehaving
//! peers, and the Python and Node echo servers. Loopback only; every wait
//! is bounded by [`WAIT`].

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use ringws::{
    ClientBuilder, ClientHandle, CloseCode, ClosedInfo, Conn, ConnHandle, ConnId, ConnectError,
    Handler, Message, Request, ServerBuilder, ServerHandle, State,
};

/// Upper bound for anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(10);

/// A deterministic, non-repeating-looking payload.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0])
        .collect()
}

/// Waits for the first event `pick` accepts (skipping the others), or
/// fails naming `what`.
pub fn wait_for<E: std::fmt::Debug, T>(
    events: &Receiver<E>,
    what: &str,
    mut pick: impl FnMut(E) -> Option<T>,
) -> T {
    let end = Instant::now() + WAIT;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(event) => {
                if let Some(found) = pick(event) {
                    return found;
                }
            }
            Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
        }
    }
}

/// Polls `check` until it holds, or fails naming `what`.
pub fn poll_until(what: &str, mut check: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

// ----- the client side -----

/// What a test client's connection does on open.
#[derive(Debug, Clone, Default)]
pub enum Greeting {
    /// Nothing.
    #[default]
    None,
    /// `conn.send_text` (copied and masked).
    Text(String),
    /// `conn.send_binary` (copied and masked).
    Binary(Vec<u8>),
    /// `conn.send_binary_owned` (masked in place).
    BinaryOwned(Vec<u8>),
}

/// Per-connection data of the test client.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Identifies the attempt in `ConnectFailed`.
    pub tag: u32,
    pub greeting: Greeting,
}

impl Plan {
    pub fn tagged(tag: u32) -> Plan {
        Plan {
            tag,
            ..Plan::default()
        }
    }
}

/// What the test client's handler saw.
#[derive(Debug)]
pub enum ClientEvent {
    Open {
        id: ConnId,
        tag: u32,
        handle: ConnHandle,
        subprotocol: Option<String>,
        peer: Option<SocketAddr>,
    },
    Text {
        id: ConnId,
        text: String,
    },
    Binary {
        id: ConnId,
        bytes: Vec<u8>,
    },
    CloseReceived {
        id: ConnId,
        code: Option<u16>,
        reason: String,
        state: State,
    },
    Closed {
        id: ConnId,
        tag: u32,
        info: ClosedInfo,
    },
    Pong {
        id: ConnId,
        payload: Vec<u8>,
    },
    ConnectFailed {
        id: Option<ConnId>,
        tag: u32,
        error: ConnectError,
    },
}

/// The tag of an attempt whose `on_connect_failed` panics (after
/// reporting).
pub const PANIC_TAG: u32 = 666;

/// The text message on which the test client's worker stalls for
/// [`STALL`] (after reporting it), holding back everything else the worker
/// has to do.
pub const STALL_MESSAGE: &str = "stall";

/// How long [`STALL_MESSAGE`] holds the worker.
pub const STALL: Duration = Duration::from_millis(600);

/// Records every callback; sends its connection's greeting on open. It
/// panics (after reporting) on the text message `panic`, and in
/// `on_connect_failed` for [`PANIC_TAG`]; it stalls on [`STALL_MESSAGE`].
pub struct ClientRecorder {
    pub events: Sender<ClientEvent>,
}

impl ClientRecorder {
    fn send(&self, event: ClientEvent) {
        let _ = self.events.send(event);
    }
}

impl Handler for ClientRecorder {
    type ConnData = Plan;

    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        let greeting = std::mem::take(&mut conn.data_mut().greeting);
        let sent = match greeting {
            Greeting::None => Ok(()),
            Greeting::Text(text) => conn.send_text(&text),
            Greeting::Binary(bytes) => conn.send_binary(&bytes),
            Greeting::BinaryOwned(bytes) => conn.send_binary_owned(bytes),
        };
        assert_eq!(sent, Ok(()), "the greeting is queued");
        self.send(ClientEvent::Open {
            id: conn.id(),
            tag: conn.data().tag,
            handle: conn.handle(),
            subprotocol: conn.subprotocol().map(str::to_owned),
            peer: conn.peer_addr(),
        });
    }

    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
        let id = conn.id();
        let panics = matches!(message, Message::Text("panic"));
        let stalls = matches!(message, Message::Text(STALL_MESSAGE));
        self.send(match message {
            Message::Text(text) => ClientEvent::Text {
                id,
                text: text.to_owned(),
            },
            Message::Binary(bytes) => ClientEvent::Binary {
                id,
                bytes: bytes.to_vec(),
            },
        });
        assert!(!panics, "the test client panics on a message");
        if stalls {
            std::thread::sleep(STALL);
        }
    }

    fn on_close_received(
        &mut self,
        conn: &mut Conn<'_, Self>,
        code: Option<CloseCode>,
        reason: &str,
    ) {
        self.send(ClientEvent::CloseReceived {
            id: conn.id(),
            code: code.map(|code| code.0),
            reason: reason.to_owned(),
            state: conn.state(),
        });
    }

    fn on_closed(&mut self, id: ConnId, data: Plan, info: &ClosedInfo) {
        self.send(ClientEvent::Closed {
            id,
            tag: data.tag,
            info: info.clone(),
        });
    }

    fn on_pong(&mut self, conn: &mut Conn<'_, Self>, payload: &[u8]) {
        self.send(ClientEvent::Pong {
            id: conn.id(),
            payload: payload.to_vec(),
        });
    }

    fn on_connect_failed(&mut self, id: Option<ConnId>, data: Plan, error: &ConnectError) {
        self.send(ClientEvent::ConnectFailed {
            id,
            tag: data.tag,
            error: error.clone(),
        });
        assert_ne!(
            data.tag, PANIC_TAG,
            "the test client panics in on_connect_failed"
        );
    }
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a recording client (2 workers unless `configure` says otherwise).
pub fn start_client(
    configure: impl FnOnce(ClientBuilder) -> ClientBuilder,
) -> (ClientHandle<Plan>, Receiver<ClientEvent>) {
    let (tx, rx) = mpsc::channel();
    let builder = configure(
        ringws::Client::builder()
            .workers(2)
            .recv_buffers(64, 16 * 1024),
    );
    let client = builder
        .start(move |_| ClientRecorder { events: tx.clone() })
        .expect("the client starts");
    (client, rx)
}

/// Waits for connection `id` to open; returns its handle.
pub fn opened(events: &Receiver<ClientEvent>, id: ConnId) -> ConnHandle {
    wait_for(
        events,
        "the client connection to open",
        |event| match event {
            ClientEvent::Open {
                id: opened, handle, ..
            } if opened == id => Some(handle),
            ClientEvent::ConnectFailed { error, .. } => panic!("connect failed: {error}"),
            _ => None,
        },
    )
}

/// Waits for connection `id` to close.
pub fn closed(events: &Receiver<ClientEvent>, id: ConnId) -> ClosedInfo {
    wait_for(
        events,
        "the client connection to close",
        |event| match event {
            ClientEvent::Closed { id: gone, info, .. } if gone == id => Some(info),
            _ => None,
        },
    )
}

/// Waits for the failure report of attempt `tag`.
pub fn connect_failed(events: &Receiver<ClientEvent>, tag: u32) -> (Option<ConnId>, ConnectError) {
    wait_for(events, "on_connect_failed", |event| match event {
        ClientEvent::ConnectFailed {
            id,
            tag: failed,
            error,
        } if failed == tag => Some((id, error)),
        ClientEvent::Open { tag: opened, .. } if opened == tag => {
            panic!("attempt {tag} opened but was expected to fail")
        }
        _ => None,
    })
}

/// Waits for the next message on connection `id`.
pub fn next_message(events: &Receiver<ClientEvent>, id: ConnId) -> ClientEvent {
    wait_for(events, "a message", |event| match event {
        ClientEvent::Text { id: on, .. } | ClientEvent::Binary { id: on, .. } if on == id => {
            Some(event)
        }
        _ => None,
    })
}

pub fn next_text(events: &Receiver<ClientEvent>, id: ConnId) -> String {
    match next_message(events, id) {
        ClientEvent::Text { text, .. } => text,
        other => panic!("expected text, got {other:?}"),
    }
}

pub fn next_binary(events: &Receiver<ClientEvent>, id: ConnId) -> Vec<u8> {
    match next_message(events, id) {
        ClientEvent::Binary { bytes, .. } => bytes,
        other => panic!("expected binary, got {other:?}"),
    }
}

// ----- the ringws server side -----

/// What the upgrade request carried, kept as the server's `ConnData`.
#[derive(Debug, Clone, Default)]
pub struct Upgrade {
    pub path: String,
    pub origin: Option<String>,
    pub test_header: Option<String>,
}

/// What the ringws echo server saw.
#[derive(Debug)]
pub enum ServerEvent {
    Open {
        id: ConnId,
        handle: ConnHandle,
        upgrade: Upgrade,
        subprotocol: Option<String>,
        peer: Option<SocketAddr>,
    },
    Message {
        id: ConnId,
        len: usize,
    },
    CloseReceived {
        id: ConnId,
        code: Option<u16>,
        reason: String,
    },
    Closed {
        id: ConnId,
        info: ClosedInfo,
    },
    Pong {
        id: ConnId,
        payload: Vec<u8>,
    },
}

/// Echoes every message and records what it sees.
pub struct EchoServer {
    pub events: Sender<ServerEvent>,
}

impl Handler for EchoServer {
    type ConnData = Upgrade;

    fn on_upgrade(&mut self, request: &Request<'_>, data: &mut Upgrade) -> Result<(), u16> {
        data.path = request.path().to_owned();
        data.origin = request.origin().map(str::to_owned);
        data.test_header = request
            .header("X-Test")
            .map(|value| String::from_utf8_lossy(value).into_owned());
        Ok(())
    }

    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        let _ = self.events.send(ServerEvent::Open {
            id: conn.id(),
            handle: conn.handle(),
            upgrade: conn.data().clone(),
            subprotocol: conn.subprotocol().map(str::to_owned),
            peer: conn.peer_addr(),
        });
    }

    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
        let _ = match message {
            Message::Text(text) => conn.send_text(text),
            Message::Binary(bytes) => conn.send_binary(bytes),
        };
        let _ = self.events.send(ServerEvent::Message {
            id: conn.id(),
            len: message.len(),
        });
    }

    fn on_close_received(
        &mut self,
        conn: &mut Conn<'_, Self>,
        code: Option<CloseCode>,
        reason: &str,
    ) {
        let _ = self.events.send(ServerEvent::CloseReceived {
            id: conn.id(),
            code: code.map(|code| code.0),
            reason: reason.to_owned(),
        });
    }

    fn on_closed(&mut self, id: ConnId, _data: Upgrade, info: &ClosedInfo) {
        let _ = self.events.send(ServerEvent::Closed {
            id,
            info: info.clone(),
        });
    }

    fn on_pong(&mut self, conn: &mut Conn<'_, Self>, payload: &[u8]) {
        let _ = self.events.send(ServerEvent::Pong {
            id: conn.id(),
            payload: payload.to_vec(),
        });
    }
}

/// Starts a recording ringws echo server on a free loopback port (2
/// workers, keepalive off unless `configure` turns it on).
pub fn start_server(
    configure: impl FnOnce(ServerBuilder) -> ServerBuilder,
) -> (ServerHandle, Receiver<ServerEvent>) {
    let (tx, rx) = mpsc::channel();
    let builder = ringws::Server::bind("127.0.0.1:0".parse().unwrap())
        .workers(2)
        .recv_buffers(64, 16 * 1024)
        .ping_interval(None);
    let server = configure(builder)
        .start(move |_| EchoServer { events: tx.clone() })
        .expect("the server starts");
    (server, rx)
}

pub fn url(server: &ServerHandle, path: &str) -> String {
    format!("ws://{}{path}", server.local_addr())
}

/// The server side of the next connection to open.
pub fn server_opened(events: &Receiver<ServerEvent>) -> (ConnId, ConnHandle, Upgrade) {
    wait_for(events, "the server side to open", |event| match event {
        ServerEvent::Open {
            id,
            handle,
            upgrade,
            ..
        } => Some((id, handle, upgrade)),
        _ => None,
    })
}

pub fn server_closed(events: &Receiver<ServerEvent>, id: ConnId) -> ClosedInfo {
    wait_for(events, "the server side to close", |event| match event {
        ServerEvent::Closed { id: gone, info } if gone == id => Some(info),
        _ => None,
    })
}

// ----- raw TCP peers -----

/// A loopback listener whose accepted connections `serve` handles on a
/// thread (one connection).
pub fn raw_server(serve: impl FnOnce(TcpStream) + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a raw listener");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            stream.set_read_timeout(Some(WAIT)).unwrap();
            serve(stream);
        }
    });
    addr
}

/// Reads an HTTP request head; returns it as text.
pub fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// The `Sec-WebSocket-Key` of a request head.
pub fn request_key(head: &str) -> String {
    head.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .expect("the request carries Sec-WebSocket-Key")
}

/// Answers the upgrade in `stream` with a valid `101`.
pub fn accept_upgrade(stream: &mut TcpStream) {
    let head = read_head(stream);
    let accept = ringws_proto::handshake::AcceptKey::from_key(request_key(&head).as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(response.as_bytes()).unwrap();
}

/// Reads one client frame (masked, payload up to 125 bytes); returns the
/// opcode and the unmasked payload.
pub fn read_client_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).expect("a frame header");
    assert!(head[1] & 0x80 != 0, "client frames are masked");
    let len = usize::from(head[1] & 0x7F);
    assert!(len <= 125, "a short frame");
    let mut mask = [0u8; 4];
    stream.read_exact(&mut mask).unwrap();
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).unwrap();
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
    (head[0] & 0x0F, payload)
}

// ----- foreign peers -----

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A child process killed (and reaped) on drop, so a failing test leaves
/// nothing running. The peers exit when their stdin closes.
pub struct Peer {
    child: Child,
    pub port: u16,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    /// Starts `command` and waits for its `PORT <n>` line.
    fn spawn(mut command: Command, what: &str) -> Peer {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start the {what} ({command:?}): {error}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let port = rx
            .recv_timeout(WAIT)
            .ok()
            .and_then(|line| line.strip_prefix("PORT ")?.trim().parse().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let mut stderr = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ = err.read_to_string(&mut stderr);
            }
            let _ = child.wait();
            panic!("the {what} did not report its port; stderr:\n{stderr}");
        };
        Peer { child, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }
}

/// The Python echo server (`tools/interop/py_echo_server.py`) with `args`,
/// on `$RINGWS_PYTHON` (default `.venv/bin/python`). Fails, never skips,
/// when the interpreter or `websockets` is missing.
pub fn python_echo_server(args: &[&str]) -> Peer {
    let python = std::env::var_os("RINGWS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    let probe = Command::new(&python)
        .args(["-c", "import websockets"])
        .output();
    match probe {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "the Python peer {} cannot import `websockets` ({}): run `python3 -m venv .venv && \
             .venv/bin/pip install -r tools/interop/requirements.txt`, or set RINGWS_PYTHON",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) => panic!(
            "the Python peer {} is missing ({error}): run `python3 -m venv .venv && \
             .venv/bin/pip install -r tools/interop/requirements.txt`, or set RINGWS_PYTHON",
            python.display()
        ),
    }
    let mut command = Command::new(python);
    command
        .arg(repo_root().join("tools/interop/py_echo_server.py"))
        .args(args);
    Peer::spawn(command, "Python websockets echo server")
}

/// The Node echo server (`tools/interop/node_echo_server.js`) with `ws` from
/// `$RINGWS_NODE_PATH` (default `tools/interop/node_modules`). Fails, never
/// skips, when `node` or `ws` is missing.
pub fn node_echo_server() -> Peer {
    let modules = std::env::var_os("RINGWS_NODE_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("tools/interop/node_modules"));
    assert!(
        modules.join("ws").is_dir(),
        "Node `ws` is missing from {}: run `npm ci` in tools/interop, or set RINGWS_NODE_PATH",
        modules.display()
    );
    match Command::new("node").arg("--version").output() {
        Ok(output) if output.status.success() => {}
        _ => panic!("`node` is not on PATH: install Node.js to run the Node interop tests"),
    }
    let mut command = Command::new("node");
    command
        .arg(repo_root().join("tools/interop/node_echo_server.js"))
        .env("NODE_PATH", modules);
    Peer::spawn(command, "Node ws echo server")
}
