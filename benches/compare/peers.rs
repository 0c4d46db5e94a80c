//! The servers under comparison: how each is built or installed, started
//! (pinned to one core with `taskset`, on a free loopback port), found ready
//! and stopped, and which versions ran.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One server under comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ServerKind {
    /// `ringws serve --workers 1`.
    Ringws,
    /// fastwebsockets on hyper 1, tokio current-thread runtime.
    Fastwebsockets,
    /// tokio-tungstenite, tokio current-thread runtime.
    TokioTungstenite,
    /// Node `ws`.
    NodeWs,
    /// Python `websockets` (asyncio).
    PythonWebsockets,
    /// The raw io_uring TCP echo on the ringws reactor: no WebSocket.
    RawTcp,
}

impl ServerKind {
    /// Every server, in the order of every round and table.
    pub const ALL: [ServerKind; 6] = [
        ServerKind::Ringws,
        ServerKind::Fastwebsockets,
        ServerKind::TokioTungstenite,
        ServerKind::NodeWs,
        ServerKind::PythonWebsockets,
        ServerKind::RawTcp,
    ];

    /// Name in tables and charts.
    pub fn label(self) -> &'static str {
        match self {
            ServerKind::Ringws => "ringws",
            ServerKind::Fastwebsockets => "fastwebsockets",
            ServerKind::TokioTungstenite => "tokio-tungstenite",
            ServerKind::NodeWs => "Node ws",
            ServerKind::PythonWebsockets => "Python websockets",
            ServerKind::RawTcp => "raw TCP echo (floor)",
        }
    }

    /// Whether it is a WebSocket server (the raw TCP floor is not).
    pub fn speaks_websocket(self) -> bool {
        self != ServerKind::RawTcp
    }
}

/// Where every server's program is, once built or installed.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// The ringws workspace.
    pub root: PathBuf,
    /// The `ringws` binary (release).
    pub ringws: PathBuf,
    /// The reactor's `tcp_echo` example (release).
    pub tcp_echo: PathBuf,
    /// `fastwebsockets-echo` from `benches/peers`.
    pub fastwebsockets: PathBuf,
    /// `tungstenite-echo` from `benches/peers`.
    pub tungstenite: PathBuf,
    /// The virtual environment's Python.
    pub python: PathBuf,
    /// Where Node finds `ws`.
    pub node_modules: PathBuf,
}

fn run_checked(command: &mut Command, what: &str) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|error| format!("{what}: cannot run: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what}: {status}"))
    }
}

/// `cargo build --release` with `args`, returning the executables built, by
/// target name (from cargo's JSON messages).
fn cargo_build(root: &Path, args: &[&str]) -> Result<BTreeMap<String, PathBuf>, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|error| format!("cargo build {}: {error}", args.join(" ")))?;
    if !output.status.success() {
        return Err(format!(
            "cargo build {} failed: {}",
            args.join(" "),
            output.status
        ));
    }
    Ok(executables(&String::from_utf8_lossy(&output.stdout)))
}

/// Target name → executable path from cargo's `--message-format=json` lines.
pub fn executables(messages: &str) -> BTreeMap<String, PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter_map(|message| {
            let name = message["target"]["name"].as_str()?.to_owned();
            let path = message["executable"].as_str()?;
            Some((name, PathBuf::from(path)))
        })
        .collect()
}

/// Builds (release) or installs what `servers` need: the ringws binary,
/// the TCP echo example, the Rust peers (`benches/peers`, its own
/// workspace and lock file), Node `ws` (`npm ci`) and Python `websockets`
/// (a virtual environment in `.venv`).
pub fn prepare(root: &Path, servers: &[ServerKind]) -> Result<Toolchain, String> {
    let wants = |kind| servers.contains(&kind);
    let mut built = BTreeMap::new();
    eprintln!("compare: building ringws (release)");
    built.extend(cargo_build(root, &["-p", "ringws-cli", "--bin", "ringws"])?);
    if wants(ServerKind::RawTcp) {
        built.extend(cargo_build(
            root,
            &["-p", "ringws-reactor", "--example", "tcp_echo"],
        )?);
    }
    if wants(ServerKind::Fastwebsockets) || wants(ServerKind::TokioTungstenite) {
        eprintln!("compare: building the Rust peers (benches/peers, release)");
        built.extend(cargo_build(
            root,
            &["--manifest-path", "benches/peers/Cargo.toml"],
        )?);
    }
    let interop = root.join("tools/interop");
    let node_modules = interop.join("node_modules");
    if wants(ServerKind::NodeWs) && !node_modules.join("ws/package.json").exists() {
        eprintln!("compare: installing Node ws (npm ci in tools/interop)");
        run_checked(
            Command::new("npm").current_dir(&interop).args([
                "ci",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
            ]),
            "npm ci",
        )?;
    }
    let python = root.join(".venv/bin/python");
    if wants(ServerKind::PythonWebsockets) {
        if !python.exists() {
            eprintln!("compare: creating .venv for Python websockets");
            run_checked(
                Command::new("python3")
                    .current_dir(root)
                    .args(["-m", "venv", ".venv"]),
                "python3 -m venv .venv",
            )?;
        }
        let has_websockets = Command::new(&python)
            .args(["-c", "import websockets"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !has_websockets {
            eprintln!("compare: installing Python websockets (pip)");
            run_checked(
                Command::new(&python).current_dir(root).args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                    "tools/interop/requirements.txt",
                ]),
                "pip install -r tools/interop/requirements.txt",
            )?;
        }
    }
    let take = |name: &str| built.get(name).cloned().unwrap_or_else(|| name.into());
    Ok(Toolchain {
        root: root.to_owned(),
        ringws: take("ringws"),
        tcp_echo: take("tcp_echo"),
        fastwebsockets: take("fastwebsockets-echo"),
        tungstenite: take("tungstenite-echo"),
        python,
        node_modules,
    })
}

/// The port in a server's ready line: `PORT 4242` (the peers and interop
/// scripts), `listening on ws://127.0.0.1:4242/` (`ringws serve`) or
/// `listening on 127.0.0.1:4242` (`tcp_echo`).
pub fn port_from_ready_line(line: &str) -> Option<u16> {
    let line = line.trim();
    if let Some(port) = line.strip_prefix("PORT ") {
        return port.trim().parse().ok();
    }
    let addr = line.strip_prefix("listening on ")?;
    let addr = addr.strip_prefix("ws://").unwrap_or(addr);
    let addr = addr.trim_end_matches('/');
    addr.rsplit_once(':')?.1.parse().ok()
}

/// A running server, stopped when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Process id (`taskset` execs the server, so this is the server).
    pub pid: u32,
    /// Loopback port it listens on.
    pub port: u16,
}

impl ServerProcess {
    /// Starts `kind` on `core` and waits (at most 30 s) for its ready line.
    pub fn start(
        kind: ServerKind,
        tools: &Toolchain,
        core: usize,
    ) -> Result<ServerProcess, String> {
        let core_arg = core.to_string();
        let mut command = Command::new("taskset");
        command.args(["-c", &core_arg]).current_dir(&tools.root);
        match kind {
            ServerKind::Ringws => {
                // The receive buffers' page release stays off (its default):
                // the idle-memory baseline, taken after a warm-up, must not
                // move while the idle connections are measured against it.
                command.arg(&tools.ringws).args([
                    "serve",
                    "--addr",
                    "127.0.0.1:0",
                    "--workers",
                    "1",
                    "--cores",
                    &core_arg,
                    "--buffer-release-period",
                    "none",
                ]);
            }
            ServerKind::RawTcp => {
                command.arg(&tools.tcp_echo).args([
                    "--addr",
                    "127.0.0.1:0",
                    "--workers",
                    "1",
                    "--cores",
                    &core_arg,
                ]);
            }
            ServerKind::Fastwebsockets => {
                command.arg(&tools.fastwebsockets);
            }
            ServerKind::TokioTungstenite => {
                command.arg(&tools.tungstenite);
            }
            ServerKind::NodeWs => {
                command
                    .arg("node")
                    .arg("tools/interop/node_echo_server.js")
                    .env("NODE_PATH", &tools.node_modules);
            }
            ServerKind::PythonWebsockets => {
                command
                    .arg(&tools.python)
                    .arg("tools/interop/py_echo_server.py");
            }
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|error| format!("starting {}: {error}", kind.label()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let pid = child.id();
        let mut process = ServerProcess {
            child,
            stdin,
            pid,
            port: 0,
        };
        let Some(stdout) = stdout else {
            return Err(format!("{}: no stdout", kind.label()));
        };
        let (port_tx, port_rx) = mpsc::channel();
        // Reads the ready line, then keeps draining stdout so the server
        // never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Some(port) = port_from_ready_line(&line) {
                        let _ = port_tx.send(port);
                        sent = true;
                    }
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match port_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(port) => {
                    process.port = port;
                    return Ok(process);
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Ok(Some(status)) = process.child.try_wait() {
                        return Err(format!("{} exited at start: {status}", kind.label()));
                    }
                }
                Err(_) => {
                    return Err(format!(
                        "{} printed no ready line within 30 s",
                        kind.label()
                    ))
                }
            }
        }
    }

    /// The WebSocket URL (or, for the raw TCP echo, the address as a URL).
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    /// The loopback address it listens on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `Err` with the exit status when the server is no longer running.
    pub fn check_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("the server exited: {status}")),
            Err(error) => Err(format!("the server's status: {error}")),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Closing stdin stops the peers; SIGTERM stops ringws serve and
        // tcp_echo; SIGKILL after 5 s stops anything left.
        drop(self.stdin.take());
        // A child that already exited is reaped here (or was, earlier, and
        // its status is cached), so the pid signalled below is still ours.
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.pid) {
            // SAFETY: kill has no memory preconditions; `pid` is our own
            // child and `try_wait` just found it not reaped, so the id
            // cannot belong to another process.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `version` of package `name` in a `Cargo.lock` text (the first one
/// listed when several versions are locked).
pub fn lock_version(lock: &str, name: &str) -> Option<String> {
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == wanted {
            let version = lines.next()?.trim().strip_prefix("version = \"")?;
            return Some(version.trim_end_matches('"').to_owned());
        }
    }
    None
}

fn command_output(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Option<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (output.status.success() && !text.is_empty()).then_some(text)
}

/// The versions of everything that ran: ringws (and its commit), rustc,
/// the Rust peers' crates (from `benches/peers/Cargo.lock`), Node and `ws`,
/// Python and `websockets`.
pub fn versions(tools: &Toolchain) -> BTreeMap<String, String> {
    let mut versions = BTreeMap::new();
    let unknown = || "unknown".to_owned();
    let root = tools.root.to_string_lossy().into_owned();
    let commit = command_output("git", &["-C", &root, "rev-parse", "--short", "HEAD"]);
    let dirty = command_output("git", &["-C", &root, "status", "--porcelain"]).is_some();
    versions.insert(
        "ringws".to_owned(),
        format!(
            "{} (commit {}{})",
            env!("CARGO_PKG_VERSION"),
            commit.unwrap_or_else(unknown),
            if dirty {
                " plus uncommitted changes"
            } else {
                ""
            }
        ),
    );
    versions.insert(
        "rustc".to_owned(),
        command_output("rustc", &["--version"]).unwrap_or_else(unknown),
    );
    let lock =
        std::fs::read_to_string(tools.root.join("benches/peers/Cargo.lock")).unwrap_or_default();
    for name in [
        "fastwebsockets",
        "tokio-tungstenite",
        "tungstenite",
        "tokio",
        "hyper",
    ] {
        versions.insert(
            name.to_owned(),
            lock_version(&lock, name).unwrap_or_else(unknown),
        );
    }
    versions.insert(
        "node".to_owned(),
        command_output("node", &["--version"]).unwrap_or_else(unknown),
    );
    let ws_version = std::fs::read_to_string(tools.node_modules.join("ws/package.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|package| package["version"].as_str().map(str::to_owned));
    versions.insert("ws (npm)".to_owned(), ws_version.unwrap_or_else(unknown));
    versions.insert(
        "python".to_owned(),
        command_output(&tools.python, &["--version"]).unwrap_or_else(unknown),
    );
    versions.insert(
        "websockets (PyPI)".to_owned(),
        command_output(
            &tools.python,
            &["-c", "import websockets; print(websockets.__version__)"],
        )
        .unwrap_or_else(unknown),
    );
    versions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_lines_of_every_server() {
        assert_eq!(port_from_ready_line("PORT 41234"), Some(41234));
        assert_eq!(port_from_ready_line("PORT 41234\n"), Some(41234));
        assert_eq!(
            port_from_ready_line("listening on ws://127.0.0.1:39001/"),
            Some(39001)
        );
        assert_eq!(
            port_from_ready_line("listening on 127.0.0.1:9000"),
            Some(9000)
        );
        assert_eq!(port_from_ready_line("worker 0: ring defer, core 0"), None);
        assert_eq!(port_from_ready_line("PORT x"), None);
    }

    #[test]
    fn lock_versions() {
        let lock = "[[package]]\nname = \"tokio\"\nversion = \"1.48.0\"\nsource = \"x\"\n\n\
                    [[package]]\nname = \"tokio-tungstenite\"\nversion = \"0.30.0\"\n";
        assert_eq!(lock_version(lock, "tokio").as_deref(), Some("1.48.0"));
        assert_eq!(
            lock_version(lock, "tokio-tungstenite").as_deref(),
            Some("0.30.0")
        );
        assert_eq!(lock_version(lock, "hyper"), None);
    }

    #[test]
    fn executables_from_cargo_messages() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","target":{"name":"libc","kind":["lib"]},"executable":null}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"ringws","kind":["bin"]},"executable":"/t/release/ringws"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
            "\n"
        );
        let found = executables(messages);
        assert_eq!(found.len(), 1);
        assert_eq!(found["ringws"], PathBuf::from("/t/release/ringws"));
    }

    #[test]
    fn names_are_unique_and_only_the_floor_is_not_websocket() {
        let labels: std::collections::BTreeSet<_> =
            ServerKind::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(labels.len(), ServerKind::ALL.len());
        let json = serde_json::to_string(&ServerKind::ALL).unwrap();
        assert_eq!(
            json,
            r#"["ringws","fastwebsockets","tokio-tungstenite","node-ws","python-websockets","raw-tcp"]"#
        );
        let non_ws: Vec<_> = ServerKind::ALL
            .iter()
            .filter(|k| !k.speaks_websocket())
            .collect();
        assert_eq!(non_ws, [&ServerKind::RawTcp]);
    }
}
