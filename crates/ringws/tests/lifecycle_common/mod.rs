//! Shared by the `lifecycle_*` tests: a scriptable handler ([`Probe`]),
//! foreign peers (Python `websockets`), TCP socket states read with `ss`,
//! and child processes that die with the test. Every wait is bounded.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ringws::{
    CloseCode, ClosedInfo, Conn, ConnHandle, ConnId, Handler, Message, ServerBuilder, ServerHandle,
    State,
};

/// Upper bound for anything a lifecycle test waits for.
pub const LIMIT: Duration = Duration::from_secs(10);

// ----- a scriptable handler -----

/// What [`Probe`] saw, in the order its callbacks ran.
#[derive(Debug)]
pub enum Seen {
    Open {
        id: ConnId,
        handle: ConnHandle,
    },
    Message {
        id: ConnId,
        text: Option<String>,
        len: usize,
    },
    CloseReceived {
        id: ConnId,
        code: Option<u16>,
        reason: String,
        /// `conn.state()` on entry to the callback.
        state: State,
        /// `conn.peer_addr().is_some()` on entry: the socket still exists.
        socket_alive: bool,
        /// `conn.state()` when the callback returns.
        state_after: State,
    },
    Closed {
        id: ConnId,
        info: ClosedInfo,
        at: Instant,
    },
    Pong {
        id: ConnId,
    },
    /// The outcome of a command, as `Debug` text.
    Outcome {
        id: ConnId,
        what: &'static str,
        result: String,
    },
}

/// A gate a callback waits at until the test opens it (bounded by
/// [`LIMIT`], so a failing test cannot hang a worker for ever).
#[derive(Debug, Default)]
pub struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.changed.notify_all();
    }

    fn wait(&self) {
        let guard = self.open.lock().unwrap();
        let _ = self
            .changed
            .wait_timeout_while(guard, LIMIT, |open| !*open)
            .unwrap();
    }
}

/// What [`Probe::on_close_received`] does after recording the event.
#[derive(Debug, Clone)]
pub enum OnClose {
    /// Return at once: ringws echoes the peer's code.
    Return,
    /// Wait at the gate first (the worker is blocked meanwhile).
    Pause(Arc<Gate>),
    /// Finish sending: queue these binary messages, then close with this
    /// code and reason.
    Finish {
        messages: Vec<usize>,
        code: u16,
        reason: &'static str,
    },
    /// Terminate instead of answering.
    Terminate,
}

/// A handler driven by text commands from the peer:
///
/// * `close <code> <reason>`: `conn.close`; outcome `"close"`;
/// * `closebytes <code> <hex>`: `conn.close_bytes`; outcome `"close"`;
/// * `close-then-send`: `conn.close(1000, "done")`, then tries a text
///   message, a binary message and a Ping; outcome `"after-close"` lists
///   the three results;
/// * `terminate`: `conn.terminate()`;
/// * `big <bytes>`: queues one binary message of that size, outcome
///   `"big"` with the send result and the queued bytes;
/// * anything else, and every binary message, is echoed.
pub struct Probe {
    pub events: mpsc::Sender<Seen>,
    pub on_close: OnClose,
    pub terminate_on_open: bool,
}

impl Probe {
    fn record(&self, seen: Seen) {
        let _ = self.events.send(seen);
    }

    fn outcome(&self, id: ConnId, what: &'static str, result: impl std::fmt::Debug) {
        self.record(Seen::Outcome {
            id,
            what,
            result: format!("{result:?}"),
        });
    }
}

/// Fills a payload whose bytes encode their position, so a reordering or
/// a truncation shows.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

impl Handler for Probe {
    type ConnData = ();

    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        self.record(Seen::Open {
            id: conn.id(),
            handle: conn.handle(),
        });
        if self.terminate_on_open {
            conn.terminate();
        }
    }

    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
        let id = conn.id();
        self.record(Seen::Message {
            id,
            text: match message {
                Message::Text(text) => Some(text.to_owned()),
                Message::Binary(_) => None,
            },
            len: message.len(),
        });
        let Message::Text(text) = message else {
            let _ = conn.send_binary(message.as_bytes());
            return;
        };
        let mut words = text.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("close"), Some(code), reason) => {
                let result = conn.close(code.parse().unwrap_or(0), reason.unwrap_or(""));
                self.outcome(id, "close", result);
            }
            (Some("closebytes"), Some(code), Some(hex)) => {
                let bytes: Vec<u8> = (0..hex.len() / 2)
                    .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                    .collect();
                let result = conn.close_bytes(code.parse().unwrap_or(0), &bytes);
                self.outcome(id, "close", result);
            }
            (Some("close-then-send"), None, None) => {
                let closed = conn.close(1000, "done");
                let text = conn.send_text("after close");
                let binary = conn.send_binary(b"after close");
                let ping = conn.ping(b"after close");
                self.outcome(id, "after-close", (closed, text, binary, ping));
            }
            (Some("terminate"), None, None) => conn.terminate(),
            (Some("big"), Some(len), None) => {
                let result = conn.send_binary(&pattern(len.parse().unwrap_or(0)));
                self.outcome(id, "big", (result, conn.queued_bytes()));
            }
            _ => {
                let _ = conn.send_text(text);
            }
        }
    }

    fn on_close_received(
        &mut self,
        conn: &mut Conn<'_, Self>,
        code: Option<CloseCode>,
        reason: &str,
    ) {
        let state = conn.state();
        let socket_alive = conn.peer_addr().is_some();
        match &self.on_close {
            OnClose::Return => {}
            OnClose::Pause(gate) => {
                // Record first, so the test knows the worker is waiting.
                self.record(Seen::CloseReceived {
                    id: conn.id(),
                    code: code.map(|c| c.0),
                    reason: reason.to_owned(),
                    state,
                    socket_alive,
                    state_after: state,
                });
                gate.wait();
                return;
            }
            OnClose::Finish {
                messages,
                code,
                reason,
            } => {
                for &len in messages {
                    let result = conn.send_binary(&pattern(len));
                    self.outcome(conn.id(), "finish-send", result);
                }
                let result = conn.close(*code, reason);
                self.outcome(conn.id(), "finish-close", result);
            }
            OnClose::Terminate => conn.terminate(),
        }
        self.record(Seen::CloseReceived {
            id: conn.id(),
            code: code.map(|c| c.0),
            reason: reason.to_owned(),
            state,
            socket_alive,
            state_after: conn.state(),
        });
    }

    fn on_closed(&mut self, id: ConnId, _data: (), info: &ClosedInfo) {
        self.record(Seen::Closed {
            id,
            info: info.clone(),
            at: Instant::now(),
        });
    }

    fn on_pong(&mut self, conn: &mut Conn<'_, Self>, _payload: &[u8]) {
        self.record(Seen::Pong { id: conn.id() });
    }
}

/// The probe's event stream.
pub struct Probed {
    pub rx: mpsc::Receiver<Seen>,
}

impl Probed {
    pub fn next(&self) -> Seen {
        self.rx
            .recv_timeout(LIMIT)
            .expect("a handler event within the limit")
    }

    pub fn find<T>(&self, mut pick: impl FnMut(Seen) -> Option<T>) -> T {
        loop {
            if let Some(found) = pick(self.next()) {
                return found;
            }
        }
    }

    pub fn opened(&self) -> (ConnId, ConnHandle) {
        self.find(|seen| match seen {
            Seen::Open { id, handle } => Some((id, handle)),
            _ => None,
        })
    }

    pub fn closed(&self, conn: ConnId) -> (ClosedInfo, Instant) {
        self.find(|seen| match seen {
            Seen::Closed { id, info, at } if id == conn => Some((info, at)),
            _ => None,
        })
    }

    pub fn outcome(&self, what: &str) -> String {
        self.find(|seen| match seen {
            Seen::Outcome {
                what: seen_what,
                result,
                ..
            } if seen_what == what => Some(result),
            _ => None,
        })
    }

    /// Events already delivered, without waiting.
    pub fn drain(&self) -> Vec<Seen> {
        self.rx.try_iter().collect()
    }
}

/// Starts `builder` with a [`Probe`] on every worker.
pub fn start_probe(builder: ServerBuilder, on_close: OnClose) -> (ServerHandle, Probed) {
    start_probe_with(builder, on_close, false)
}

pub fn start_probe_with(
    builder: ServerBuilder,
    on_close: OnClose,
    terminate_on_open: bool,
) -> (ServerHandle, Probed) {
    let (tx, rx) = mpsc::channel();
    let server = builder
        .start(move |_worker| Probe {
            events: tx.clone(),
            on_close: on_close.clone(),
            terminate_on_open,
        })
        .expect("server starts");
    (server, Probed { rx })
}

// ----- bounded waits -----

/// Polls `check` every 2 ms until it holds; `None` if `within` passes first.
pub fn poll_until<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + within;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Connections closing (started by either side) on every worker.
pub fn closing(server: &ServerHandle) -> u64 {
    let total = server.stats().total;
    total.closing_local + total.closing_remote
}

// ----- foreign peers -----

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A script in `tools/interop`.
pub fn interop_script(name: &str) -> PathBuf {
    let path = repo_root().join("tools/interop").join(name);
    assert!(
        path.is_file(),
        "interop script {} is missing",
        path.display()
    );
    path
}

/// The Python interpreter with `websockets` installed: `RINGWS_PYTHON`, or
/// the virtual environment `tools/test.sh` creates. Fails (never skips)
/// when the peer is missing.
pub fn python() -> PathBuf {
    let path = std::env::var_os("RINGWS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    let probe = Command::new(&path)
        .args([
            "-c",
            "import websockets, sys; print(websockets.__version__)",
        ])
        .output();
    match probe {
        Ok(output) if output.status.success() => path,
        Ok(output) => panic!(
            "the Python peer at {} cannot import `websockets` ({}); run tools/test.sh, \
             or pip install -r tools/interop/requirements.txt and set RINGWS_PYTHON",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) => panic!(
            "the Python peer {} is missing ({error}); run tools/test.sh (it creates \
             .venv with `websockets`) or set RINGWS_PYTHON",
            path.display()
        ),
    }
}

/// A child process killed (and reaped) when the guard drops, so a failing
/// test leaves nothing running.
pub struct ChildGuard {
    pub child: Child,
}

impl ChildGuard {
    pub fn spawn(command: &mut Command) -> ChildGuard {
        let child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
        ChildGuard { child }
    }

    /// The child's stdout, line by line, through a channel (read on a
    /// thread, so waits can be bounded).
    pub fn lines(&mut self) -> mpsc::Receiver<String> {
        let stdout = self.child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        rx
    }

    /// Closes the child's stdin (the interop scripts exit on it).
    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Waits (bounded) for the child to exit; its stderr on failure.
    pub fn wait_success(&mut self) {
        let end = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                if !status.success() {
                    let mut stderr = String::new();
                    if let Some(mut pipe) = self.child.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                    }
                    panic!("peer exited with {status}: {stderr}");
                }
                return;
            }
            assert!(Instant::now() < end, "peer did not exit within {LIMIT:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The child's stderr so far (after it exited), for failure messages.
    pub fn stderr(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        stderr
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----- TCP states from `ss` -----

/// TCP sockets in `state` (an `ss` state name such as `close-wait`)
/// matching the `ss` filter `filter` (e.g. `sport = :9001`), one line each.
/// Fails when `ss` cannot run.
pub fn tcp_sockets(state: &str, filter: &str) -> Vec<String> {
    let output = Command::new("ss")
        .args(["-tanH", "state", state, filter])
        .output()
        .unwrap_or_else(|error| panic!("`ss` (iproute2) is needed to read socket states: {error}"));
    assert!(
        output.status.success(),
        "ss failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect()
}
