//! Test harness for `ringws serve`: the binary as a child process on a
//! loopback port chosen by the kernel, its address read from its first line
//! of output, every wait bounded.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Bound on start-up and on every wait for the server.
pub const WAIT: Duration = Duration::from_secs(20);

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A running `ringws serve`; killed on drop if still running.
pub struct ServeProcess {
    child: Child,
    /// The address it printed.
    pub addr: SocketAddr,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

/// How `ringws serve` ended.
pub struct Exit {
    pub status: ExitStatus,
    /// Lines on stdout after the `listening on` line.
    pub stdout: Vec<String>,
    pub stderr: String,
}

impl ServeProcess {
    /// Starts `ringws serve --addr 127.0.0.1:0 <args>` and waits for its
    /// `listening on ws://ADDR` line.
    pub fn start(args: &[&str]) -> ServeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringws"))
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the ringws binary starts");
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        let first = match stdout.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log: Vec<String> = stderr.try_iter().collect();
                panic!(
                    "ringws serve printed no address; stderr:\n{}",
                    log.join("\n")
                );
            }
        };
        let addr = first
            .strip_prefix("listening on ws://")
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        ServeProcess {
            child,
            addr,
            stdout,
            stderr,
        }
    }

    /// `ws://ADDR/`.
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// The first line on stderr that contains `text` (waits at most
    /// [`WAIT`]; lines before it are dropped).
    pub fn stderr_line(&self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            match self
                .stderr
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => panic!("no line with {text:?} on stderr within {WAIT:?}"),
            }
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the server (our own child, by its pid).
    pub fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill has no memory-safety preconditions; the pid is our
        // child's and it has not been reaped yet.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal}) failed");
    }

    /// Waits (at most `limit`) for the process to exit and collects what it
    /// printed.
    pub fn wait_exit(mut self, limit: Duration) -> Exit {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("ringws serve did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Exit {
            status,
            stdout: drain(&self.stdout),
            stderr: drain(&self.stderr).join("\n"),
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lines of `stream`, read on a thread.
fn lines(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Every line until the stream closes (bounded by [`WAIT`]).
fn drain(rx: &mpsc::Receiver<String>) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        out.push(line);
    }
    out
}

/// A plain HTTP/1.1 GET: (status, headers, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    http_request(addr, "GET", path)
}

/// A plain HTTP/1.1 request without a body: (status, headers, body).
pub fn http_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: ringws-test\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    // The server closes the connection after the response.
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head.to_owned(), body.to_owned())
}

/// One sample: metric name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// The samples of a Prometheus text exposition.
pub struct Metrics(Vec<Sample>);

impl Metrics {
    /// Parses `name{label="value",...} number` lines (comments skipped).
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
        {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("malformed sample {line:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("malformed value in {line:?}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels
                        .strip_suffix('}')
                        .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                    let labels = labels
                        .split(',')
                        .map(|pair| {
                            let (key, value) = pair.split_once('=').unwrap();
                            (key.to_owned(), value.trim_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
                None => (series.to_owned(), Vec::new()),
            };
            samples.push((name, labels, value));
        }
        Metrics(samples)
    }

    /// The value of the sample named `name` whose labels include every pair
    /// of `labels`; panics if there is not exactly one.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<f64> = self
            .0
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, value)| *value)
            .collect();
        assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
        found[0]
    }

    /// Sum of `name` over the per-worker series (those not labelled
    /// `worker="total"`) with these other labels.
    pub fn sum_workers(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && l.iter().any(|(k, v)| k == "worker" && v != "total")
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, value)| *value)
            .sum()
    }
}
