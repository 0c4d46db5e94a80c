//! Test harness: foreign echo servers (Python `websockets`, Node `ws`) on
//! loopback, and running the `ringws` binary with a wall-clock bound.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ringws_cli::load::LoadReport;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A unique path in the temp directory for this test process.
pub fn temp_path(name: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "ringws-load-test-{}-{unique}-{name}",
        std::process::id()
    ))
}

/// Files beside `path` left by writing it (`.<name>.<pid>.tmp`): there
/// must be none once `ringws` has exited.
pub fn left_beside(path: &Path) -> Vec<String> {
    let prefix = format!(".{}.", path.file_name().unwrap().to_str().unwrap());
    std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(&prefix))
        .collect()
}

/// Which foreign server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    /// `tools/interop/py_echo_server.py` on Python `websockets`.
    Python,
    /// `tools/interop/node_echo_server.js` on Node `ws`.
    Node,
}

impl PeerKind {
    fn name(self) -> &'static str {
        match self {
            PeerKind::Python => "Python `websockets` echo server",
            PeerKind::Node => "Node `ws` echo server",
        }
    }

    fn install_hint(self) -> &'static str {
        match self {
            PeerKind::Python => {
                "install it with `python3 -m venv .venv && .venv/bin/pip install -r \
                 tools/interop/requirements.txt` (or run tools/test.sh) and set \
                 RINGWS_PYTHON to .venv/bin/python"
            }
            PeerKind::Node => {
                "install it with `cd tools/interop && npm ci` (or run tools/test.sh) and set \
                 RINGWS_NODE_PATH to tools/interop/node_modules; `node` must be on PATH"
            }
        }
    }

    fn command(self) -> (Command, String) {
        let interop = root().join("tools/interop");
        match self {
            PeerKind::Python => {
                let python = std::env::var_os("RINGWS_PYTHON")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| root().join(".venv/bin/python"));
                let mut command = Command::new(&python);
                command.arg(interop.join("py_echo_server.py"));
                (command, format!("RINGWS_PYTHON={}", python.display()))
            }
            PeerKind::Node => {
                let modules = std::env::var_os("RINGWS_NODE_PATH")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| interop.join("node_modules"));
                let mut command = Command::new("node");
                command
                    .arg(interop.join("node_echo_server.js"))
                    .env("NODE_PATH", &modules);
                (command, format!("RINGWS_NODE_PATH={}", modules.display()))
            }
        }
    }
}

/// A running echo server; killed on drop.
pub struct EchoPeer {
    child: Child,
    /// Its stderr, kept in a file for failure messages; removed on drop.
    stderr_path: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl EchoPeer {
    /// Starts `kind` with `extra` arguments and waits (at most 20 s) for it
    /// to listen. Panics, naming the peer and how to install it, if it
    /// cannot start: a missing peer fails the test, never skips it.
    pub fn start(kind: PeerKind, extra: &[&str]) -> EchoPeer {
        let (mut command, setting) = kind.command();
        let stderr_path = temp_path("peer-stderr");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        command
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let unavailable = |detail: String| -> ! {
            panic!(
                "the {} is unavailable ({setting}): {detail}; {}",
                kind.name(),
                kind.install_hint()
            )
        };
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => unavailable(format!("cannot start it: {error}")),
        };
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|port| port.parse::<u16>().ok());
        match port {
            Some(port) => EchoPeer {
                child,
                stderr_path,
                port,
            },
            None => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                let _ = std::fs::remove_file(&stderr_path);
                unavailable(format!(
                    "it did not report a port (said {line:?}); its stderr:\n{log}"
                ))
            }
        }
    }

    /// `ws://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr_path);
    }
}

/// What a `ringws load` run printed and reported.
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The `--json` report as parsed by the library's own type.
    pub report: LoadReport,
    /// The same report as a JSON value.
    pub json: serde_json::Value,
}

/// Waits for `child` (`ringws args`) to exit; kills it and fails the test
/// if it runs past `limit`.
pub fn wait_bounded(child: &mut std::process::Child, args: &[&str], limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringws {args:?} ran past {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `ringws` with `args` (killed after 60 s).
pub fn ringws(args: &[&str]) -> (ExitStatus, String, String) {
    let out_path = temp_path("stdout");
    let err_path = temp_path("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringws"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let status = wait_bounded(&mut child, args, Duration::from_secs(60));
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    let _ = std::fs::remove_file(out_path);
    let _ = std::fs::remove_file(err_path);
    (status, stdout, stderr)
}

/// Runs `ringws load <args> --json <file>` and parses the report.
pub fn load(args: &[&str]) -> Outcome {
    load_exiting(args, 0)
}

/// [`load`] for a run that measures nothing (every connection refused, no
/// echo...): it exits with status 3, and still writes its report.
pub fn load_measuring_nothing(args: &[&str]) -> Outcome {
    load_exiting(args, 3)
}

fn load_exiting(args: &[&str], code: i32) -> Outcome {
    let json_path = temp_path("report.json");
    let json_arg = json_path.to_str().unwrap().to_owned();
    let mut full = vec!["load"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--json", &json_arg]);
    let (status, stdout, stderr) = ringws(&full);
    assert_eq!(
        status.code(),
        Some(code),
        "ringws {full:?}: {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let text = std::fs::read_to_string(&json_path)
        .unwrap_or_else(|error| panic!("no JSON report ({error}); stderr:\n{stderr}"));
    let _ = std::fs::remove_file(&json_path);
    let report: LoadReport = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("JSON report does not parse: {error}\n{text}"));
    let json = serde_json::from_str(&text).unwrap();
    Outcome {
        status,
        stdout,
        stderr,
        report,
        json,
    }
}

/// Asserts percentiles are ordered and positive.
pub fn assert_ordered(name: &str, summary: &ringws_cli::load::LatencySummary) {
    let values = summary.ordered();
    assert!(values[0] > 0.0, "{name}: {values:?}");
    assert!(
        values.windows(2).all(|pair| pair[0] <= pair[1]),
        "{name} percentiles out of order: {values:?}"
    );
    assert!(summary.mean_us >= values[0] && summary.mean_us <= values[6]);
}

/// Asserts the run counted no error, printing them if it did.
pub fn assert_no_errors(outcome: &Outcome) {
    assert_eq!(
        outcome.report.errors.total, 0,
        "errors: {:?}\n{}",
        outcome.report.errors.by_kind, outcome.stdout
    );
}

/// What [`ScriptedServer`] does with a connection, chosen by its source
/// address.
#[derive(Debug, Clone, Copy)]
pub enum Script {
    /// Echo every message (and answer Pings and the Close).
    Echo,
    /// Answer the upgrade this late, then echo.
    DelayUpgrade(Duration),
    /// Refuse the upgrade with 403 this late.
    Refuse(Duration),
    /// Echo for this long after the upgrade, then drop the connection
    /// without a Close.
    EchoFor(Duration),
    /// Answer every Ping with a Pong whose payload is not the Ping's, and
    /// the Close with a Close carrying its code; ignore data.
    WrongPongs,
    /// Echo every message twice.
    EchoTwice,
    /// Echo every message but the connection's first.
    SkipFirstEcho,
}

/// What [`ScriptedServer`] saw of one connection.
#[derive(Debug, Clone, Copy)]
pub struct SeenConnection {
    pub peer: std::net::IpAddr,
    /// Just before the `101` was written (`None`: refused or not
    /// answered).
    pub upgraded: Option<Instant>,
    /// When the first data frame arrived.
    pub first_message: Option<Instant>,
}

/// A threaded WebSocket echo server on 127.0.0.1 that treats each
/// connection as `script` says for its source address, so a test can make
/// one load worker's connections slow or failing (connections are spread
/// over `--source-addrs` round robin: with `-w 2` and two addresses, worker
/// *i* uses the *i*-th). Client frames must be short (payload below 126
/// bytes). Stops accepting when dropped.
pub struct ScriptedServer {
    pub port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<SeenConnection>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl ScriptedServer {
    pub fn start(script: impl Fn(std::net::IpAddr) -> Script + Send + 'static) -> ScriptedServer {
        use std::sync::atomic::AtomicBool;
        use std::sync::{Arc, Mutex};

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
                    match listener.accept() {
                        Ok((stream, peer)) => {
                            let seen = seen.clone();
                            let index = {
                                let mut seen = seen.lock().unwrap();
                                seen.push(SeenConnection {
                                    peer: peer.ip(),
                                    upgraded: None,
                                    first_message: None,
                                });
                                seen.len() - 1
                            };
                            let script = script(peer.ip());
                            std::thread::spawn(move || {
                                serve_scripted(stream, script, &seen, index);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
        };
        ScriptedServer {
            port,
            seen,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// `ws://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    /// The connections seen so far, in the order they were accepted.
    pub fn seen(&self) -> Vec<SeenConnection> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn serve_scripted(
    mut stream: std::net::TcpStream,
    script: Script,
    seen: &std::sync::Mutex<Vec<SeenConnection>>,
    index: usize,
) {
    use ringws_proto::handshake::{parse_request, HeadLimits, RequestKind};
    use std::io::{Read, Write};

    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let _ = stream.set_nodelay(true);
    let mut input = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_len = loop {
        let Ok(n @ 1..) = stream.read(&mut chunk) else {
            return;
        };
        input.extend_from_slice(&chunk[..n]);
        let Ok(Some(parsed)) = parse_request(&input, &HeadLimits::DEFAULT) else {
            continue;
        };
        let RequestKind::Upgrade(request) = parsed.kind else {
            return;
        };
        match script {
            Script::Refuse(after) => {
                std::thread::sleep(after);
                let _ = stream.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
                return;
            }
            Script::DelayUpgrade(after) => std::thread::sleep(after),
            Script::Echo
            | Script::EchoFor(_)
            | Script::WrongPongs
            | Script::EchoTwice
            | Script::SkipFirstEcho => {}
        }
        let mut response = Vec::new();
        request
            .write_switching_protocols(None, &[], &mut response)
            .unwrap();
        // Taken before the `101` leaves, so that anything the client did
        // once it had the answer comes later.
        let upgraded = Instant::now();
        if stream.write_all(&response).is_err() {
            return;
        }
        seen.lock().unwrap()[index].upgraded = Some(upgraded);
        break parsed.head_len;
    };
    input.drain(..head_len);
    let echo_until = match script {
        Script::EchoFor(span) => Some(Instant::now() + span),
        _ => None,
    };
    let mut data_messages = 0u64;
    loop {
        if echo_until.is_some_and(|until| Instant::now() >= until) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        // Short masked client frames: [fin|op, 0x80|len, mask x4, payload].
        while input.len() >= 6 && input.len() >= 6 + usize::from(input[1] & 0x7F) {
            let (first, len) = (input[0], usize::from(input[1] & 0x7F));
            assert!(len < 126, "ScriptedServer takes short frames only");
            let mask = [input[2], input[3], input[4], input[5]];
            let payload: Vec<u8> = input[6..6 + len]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            input.drain(..6 + len);
            let opcode = first & 0x0F;
            if let Script::WrongPongs = script {
                let reply = match opcode {
                    0x9 => vec![0x8A, 8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
                    0x8 => [&[0x88, len.min(2) as u8][..], &payload[..len.min(2)]].concat(),
                    _ => continue,
                };
                if stream.write_all(&reply).is_err() || opcode == 0x8 {
                    return;
                }
                continue;
            }
            let mut copies = 1;
            let reply_first = match opcode {
                0x1 | 0x2 => {
                    let mut seen = seen.lock().unwrap();
                    seen[index].first_message.get_or_insert_with(Instant::now);
                    data_messages += 1;
                    copies = match script {
                        Script::EchoTwice => 2,
                        Script::SkipFirstEcho if data_messages == 1 => 0,
                        _ => 1,
                    };
                    first
                }
                0x9 => 0x8A,
                0x8 => 0x88,
                _ => continue,
            };
            let mut frame = vec![reply_first, len as u8];
            frame.extend_from_slice(&payload);
            let reply = frame.repeat(copies);
            if stream.write_all(&reply).is_err() || opcode == 0x8 {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(n @ 1..) => input.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    }
}
