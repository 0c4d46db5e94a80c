//! Measures user-space memory per idle WebSocket connection: opens N
//! loopback connections to a server in the same process and reports the
//! growth of the process's resident set (Linux `/proc/self/statm`).
//!
//! ```text
//! cargo run --release -p ringws --example idle_memory -- 8000
//! ```
//!
//! Each connection costs the client side an fd (no user memory) and the
//! server side its reactor slot, session, keepalive timer and liveness
//! entry, plus the slack of the vectors that hold them. Needs about 2 file
//! descriptors per connection (`ulimit -n`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ringws::{Conn, Handler, Message, Server};

struct Idle;

impl Handler for Idle {
    type ConnData = ();

    fn on_message(&mut self, _conn: &mut Conn<'_, Self>, _message: Message<'_>) {}
}

/// Resident set size in KiB.
fn rss_kib() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4)
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

/// Connects and completes the upgrade (the 101 fits one read).
fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(REQUEST)?;
    let mut response = [0u8; 512];
    let read = stream.read(&mut response)?;
    if !response[..read].starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other("upgrade refused"));
    }
    Ok(stream)
}

fn main() -> ExitCode {
    let count: usize = match std::env::args().nth(1).map(|n| n.parse()) {
        None => 4000,
        Some(Ok(count)) => count,
        Some(Err(error)) => {
            eprintln!("connection count: {error}");
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::bind(SocketAddr::from(([127, 0, 0, 1], 0))).start(|_worker| Idle) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    let addr = server.local_addr();
    let mut clients = Vec::with_capacity(count + 1);
    // One connection first, so per-worker structures exist before measuring.
    match connect(addr) {
        Ok(stream) => clients.push(stream),
        Err(error) => {
            eprintln!("connect: {error}");
            return ExitCode::FAILURE;
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_kib().unwrap_or(0);
    for _ in 0..count {
        match connect(addr) {
            Ok(stream) => clients.push(stream),
            Err(error) => {
                eprintln!("connect: {error} (raise `ulimit -n`?)");
                return ExitCode::FAILURE;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.stats().total.open < clients.len() as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let after = rss_kib().unwrap_or(0);
    println!(
        "{count} idle connections: RSS {before} KiB -> {after} KiB, {:.0} bytes per connection",
        after.saturating_sub(before) as f64 * 1024.0 / count as f64
    );
    drop(clients);
    server.shutdown(Duration::from_secs(5));
    ExitCode::SUCCESS
}
