//! Interop with a real browser: headless Chromium, driven by
//! `tools/interop/browser/drive.js` (playwright-core), loads a page that the
//! ringws server itself serves over plain HTTP on its WebSocket port, opens
//! a WebSocket back to it, exchanges 100 text and binary messages (some over
//! 64 KiB), checks every echo and closes with 4000 "done". The page reports
//! what it saw, including the close code and reason of its `onclose`; the
//! server reports what its handler saw.
//!
//! Needs Chromium (`$RINGWS_CHROMIUM`, default `/usr/bin/chromium`), Node
//! (`$RINGWS_NODE`, default `node`) and `playwright-core` under
//! `$RINGWS_NODE_PATH` (default `tools/interop/node_modules`). `tools/test.sh`
//! installs all three; when one is missing this test fails and says so.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ringws::{
    CloseCode, CloseKind, ClosedInfo, Conn, ConnId, Handler, HttpResponse, Initiator, Message,
    Pinning, Server,
};
use serde_json::Value;

/// The whole browser run (launch, page, 100 messages, close) must fit.
const BROWSER_WAIT: Duration = Duration::from_secs(90);

const MESSAGES: u64 = 100;

const PAGE: &str = include_str!("../../../tools/interop/browser/page.html");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What the server's handler saw.
#[derive(Debug)]
enum Seen {
    Message,
    CloseReceived(Option<u16>, String),
    Closed(ClosedInfo),
}

struct Echo {
    seen: mpsc::Sender<Seen>,
}

impl Handler for Echo {
    type ConnData = ();

    fn on_upgrade(&mut self, request: &ringws::Request<'_>, _: &mut ()) -> Result<(), u16> {
        if request.path() == "/ws" {
            Ok(())
        } else {
            Err(404)
        }
    }

    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
        let result = match message {
            Message::Text(text) => conn.send_text(text),
            Message::Binary(bytes) => conn.send_binary(bytes),
        };
        result.expect("the echo is queued");
        let _ = self.seen.send(Seen::Message);
    }

    fn on_close_received(
        &mut self,
        _conn: &mut Conn<'_, Self>,
        code: Option<CloseCode>,
        reason: &str,
    ) {
        let _ = self
            .seen
            .send(Seen::CloseReceived(code.map(|c| c.0), reason.to_owned()));
    }

    fn on_closed(&mut self, _id: ConnId, _data: (), info: &ClosedInfo) {
        let _ = self.seen.send(Seen::Closed(info.clone()));
    }
}

/// Finds a prerequisite or fails naming the step that installs it.
fn prerequisites() -> (PathBuf, String, PathBuf) {
    let chromium = PathBuf::from(
        std::env::var("RINGWS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned()),
    );
    assert!(
        chromium.exists(),
        "Chromium not found at {} (set RINGWS_CHROMIUM). Install it with \
         `apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium`, \
         as tools/test.sh does.",
        chromium.display()
    );
    let node = std::env::var("RINGWS_NODE").unwrap_or_else(|_| "node".to_owned());
    let version = Command::new(&node).arg("--version").output();
    assert!(
        matches!(&version, Ok(output) if output.status.success()),
        "Node.js (`{node}`, set RINGWS_NODE) does not run: {version:?}. Install Node.js \
         (apt-get install -y nodejs) and run tools/test.sh."
    );
    let node_path = std::env::var("RINGWS_NODE_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("tools/interop/node_modules"));
    assert!(
        node_path.join("playwright-core/package.json").exists(),
        "playwright-core not found in {} (set RINGWS_NODE_PATH). Install it with \
         `cd tools/interop && npm ci`, as tools/test.sh does.",
        node_path.display()
    );
    (chromium, node, node_path)
}

/// Runs the driver, bounded by [`BROWSER_WAIT`]; returns its stdout.
fn drive(url: &str) -> String {
    let (chromium, node, node_path) = prerequisites();
    let script = repo_root().join("tools/interop/browser/drive.js");
    let mut child = Command::new(node)
        .arg(script)
        .arg(url)
        .env("NODE_PATH", &node_path)
        .env("RINGWS_CHROMIUM", &chromium)
        .env(
            "RINGWS_BROWSER_TIMEOUT_MS",
            (BROWSER_WAIT.as_millis() * 2 / 3).to_string(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + BROWSER_WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the browser driver did not finish within {BROWSER_WAIT:?}; stderr: {}",
                err_reader.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    assert!(
        status.success(),
        "the browser driver failed ({status}): {stdout}\nstderr: {stderr}"
    );
    stdout
}

#[test]
fn chromium_exchanges_100_messages_and_closes_with_4000_done() {
    let (seen_tx, seen) = mpsc::channel();
    let server = Server::bind("127.0.0.1:0".parse().unwrap())
        .workers(2)
        .pinning(Pinning::Off)
        .max_queued_bytes(16 << 20)
        .plain_http(|request| {
            (request.path() == "/")
                .then(|| HttpResponse::new(200, "text/html; charset=utf-8", PAGE))
        })
        .start(move |_worker| Echo {
            seen: seen_tx.clone(),
        })
        .expect("server starts");
    let url = format!("http://{}/", server.local_addr());

    let stdout = drive(&url);
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("driver output is not JSON ({e}): {stdout}"));
    eprintln!("browser: {}", report["browser"]);
    let outcome = &report["outcome"];
    let context = format!("browser report: {report:#}");
    assert_eq!(outcome["opened"], true, "{context}");
    assert_eq!(outcome["sent"], MESSAGES, "{context}");
    assert_eq!(outcome["received"], MESSAGES, "{context}");
    assert_eq!(outcome["matched"], MESSAGES, "{context}");
    assert_eq!(outcome["textMessages"], MESSAGES / 2, "{context}");
    assert_eq!(outcome["binaryMessages"], MESSAGES / 2, "{context}");
    assert!(
        outcome["largestBytes"].as_u64().unwrap() > 64 << 10,
        "{context}"
    );
    assert_eq!(outcome["mismatches"], Value::Array(Vec::new()), "{context}");
    assert_eq!(outcome["errors"], Value::Array(Vec::new()), "{context}");
    // The server answered the page's Close echoing its code (ringws echoes
    // the code, not the reason): onclose sees 4000 with an empty reason,
    // and a clean close. The reason "done" is checked on the server below.
    assert_eq!(outcome["closeCode"], 4000, "{context}");
    assert_eq!(outcome["closeReason"], "", "{context}");
    assert_eq!(outcome["wasClean"], true, "{context}");

    // The server's side: 100 messages, the page's Close seen as 4000
    // "done", then a clean close started by the browser.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut messages = 0;
    let mut close_received = Vec::new();
    let info = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match seen.recv_timeout(left).expect("server events in time") {
            Seen::Message => messages += 1,
            Seen::CloseReceived(code, reason) => close_received.push((code, reason)),
            Seen::Closed(info) => break info,
        }
    };
    assert_eq!(messages, MESSAGES);
    assert_eq!(close_received, [(Some(4000), "done".to_owned())]);
    assert_eq!(info.code, CloseCode(4000));
    assert_eq!(info.reason, "done");
    assert_eq!(info.sent, Some(CloseCode(4000)));
    assert_eq!(info.initiator, Initiator::Remote);
    assert_eq!(info.kind, CloseKind::Clean);
    let stats = server.stats();
    assert_eq!(stats.total.messages_in, MESSAGES);
    assert_eq!(stats.total.messages_out, MESSAGES);
    server.shutdown(Duration::from_secs(5));
}
