//! 10,000 concurrent connections held open and echoing, spread over two
//! workers. The clients are raw blocking sockets on loopback in a child
//! process (this same test binary, run as `client_process`), so the server's
//! process and the clients' each stay within the open-file limit. Every
//! connection stays open until all of them have echoed, so the server holds
//! all 10,000 at once.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{masked_frame, upgrade_request, wait_stats};

const CONNECTIONS: usize = 10_000;
const CLIENT_THREADS: usize = 4;
/// The whole test, bounded.
const LIMIT: Duration = Duration::from_secs(120);

/// Raises the open-file limit: 10,000 client plus 10,000 server sockets
/// live in this one process.
fn raise_fd_limit(want: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the call.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(read, 0, "getrlimit: {}", std::io::Error::last_os_error());
    if limit.rlim_cur >= want {
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: want,
        rlim_max: limit.rlim_max.max(want),
    };
    // SAFETY: `raised` is a valid rlimit for the call.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
    assert_eq!(
        set,
        0,
        "this test needs {want} open files (RLIMIT_NOFILE is {}/{}; raising it needs root): {}",
        limit.rlim_cur,
        limit.rlim_max,
        std::io::Error::last_os_error()
    );
}

/// Opens `count` upgraded connections.
fn open_connections(addr: SocketAddr, count: usize, deadline: Instant) -> Vec<TcpStream> {
    let request = upgrade_request("/", "");
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        streams.push(stream);
    }
    for stream in &mut streams {
        stream.write_all(request.as_bytes()).unwrap();
    }
    for stream in &mut streams {
        assert!(Instant::now() < deadline, "handshakes took too long");
        let mut head = Vec::new();
        let mut byte = [0u8; 256];
        while !head.ends_with(b"\r\n\r\n") {
            // Nothing follows the 101 until we send, so reading past the
            // head cannot swallow a frame.
            let n = stream.read(&mut byte).expect("101 response");
            assert!(n > 0, "closed during the handshake");
            head.extend_from_slice(&byte[..n]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
    }
    streams
}

/// Sends one binary message on every connection, then reads every echo.
fn echo_on_all(streams: &mut [TcpStream], tag: u32) {
    let payloads: Vec<Vec<u8>> = (0..streams.len())
        .map(|i| format!("{tag}:{i}").into_bytes())
        .collect();
    for (stream, payload) in streams.iter_mut().zip(&payloads) {
        stream.write_all(&masked_frame(true, 0x2, payload)).unwrap();
    }
    for (stream, payload) in streams.iter_mut().zip(&payloads) {
        let mut header = [0u8; 2];
        stream.read_exact(&mut header).expect("echo header");
        assert_eq!(header[0], 0x82, "a final binary frame");
        assert_eq!(header[1] as usize, payload.len(), "unmasked, same length");
        let mut echoed = vec![0u8; payload.len()];
        stream.read_exact(&mut echoed).expect("echo payload");
        assert_eq!(&echoed, payload);
    }
}

/// Writes a line to the real stdout (the test harness captures `println!`).
fn say(word: &str) {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{word}").unwrap();
    stdout.flush().unwrap();
}

/// Environment variable that turns `client_process` into the client side.
const CLIENT_ADDR_ENV: &str = "RINGWS_SCALE_CLIENT_ADDR";

/// The client side, run by the main test in a child process: opens every
/// connection, echoes once, says `OPEN`, waits for a line on stdin, echoes
/// again and says `DONE`. Without the environment variable it does nothing.
#[test]
fn client_process() {
    let Ok(addr) = std::env::var(CLIENT_ADDR_ENV) else {
        return;
    };
    let addr: SocketAddr = addr.parse().expect("server address");
    raise_fd_limit(CONNECTIONS as u64 + 1_000);
    let deadline = Instant::now() + LIMIT;
    let (opened_tx, opened_rx) = std::sync::mpsc::channel();
    let (go_txs, threads): (Vec<_>, Vec<_>) = (0..CLIENT_THREADS)
        .map(|_| {
            let opened_tx = opened_tx.clone();
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            let thread = std::thread::spawn(move || {
                let mut streams = open_connections(addr, CONNECTIONS / CLIENT_THREADS, deadline);
                echo_on_all(&mut streams, 1);
                opened_tx.send(()).unwrap();
                go_rx.recv_timeout(LIMIT).expect("go from the server side");
                echo_on_all(&mut streams, 2);
                streams.len()
            });
            (go_tx, thread)
        })
        .collect();
    for _ in 0..CLIENT_THREADS {
        opened_rx
            .recv_timeout(LIMIT)
            .expect("client thread opened its share");
    }
    say("OPEN");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("go line");
    for go in go_txs {
        go.send(()).unwrap();
    }
    let echoed: usize = threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .sum();
    assert_eq!(echoed, CONNECTIONS);
    say("DONE");
}

#[test]
fn ten_thousand_connections_echo_across_both_workers() {
    raise_fd_limit(CONNECTIONS as u64 + 1_000);
    let started = Instant::now();
    let (server, _events) = common::start(
        common::builder()
            .workers(2)
            .pinning(ringws::Pinning::Off)
            .ping_interval(None)
            .max_connections_per_worker(CONNECTIONS as u32),
    );
    let addr = server.local_addr();

    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "client_process",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CLIENT_ADDR_ENV, addr.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("client process");
    // Killed if the test fails before it ends.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut stdin = child.stdin.take().unwrap();
    let mut child = KillOnDrop(child);
    let mut wait_for = |word: &str| {
        let mut line = String::new();
        loop {
            line.clear();
            let n = std::io::BufRead::read_line(&mut lines, &mut line).unwrap();
            assert!(n > 0, "client process ended before {word}");
            // libtest prints "test client_process ... " on the same line.
            if line.trim_end().ends_with(word) {
                return;
            }
            assert!(started.elapsed() < LIMIT, "no {word} within {LIMIT:?}");
        }
    };
    wait_for("OPEN");

    let stats = wait_stats(&server, |stats| stats.total.open == CONNECTIONS as u64);
    let per_worker: Vec<u64> = stats.workers.iter().map(|worker| worker.open).collect();
    eprintln!(
        "{CONNECTIONS} connections open after {:?}, per worker {per_worker:?}",
        started.elapsed()
    );
    assert_eq!(per_worker.len(), 2);
    for (worker, open) in per_worker.iter().enumerate() {
        // SO_REUSEPORT hashes connections over the listeners; each worker
        // must take a real share, not a token one.
        assert!(
            *open >= CONNECTIONS as u64 / 10,
            "worker {worker} holds only {open} of {CONNECTIONS}: {per_worker:?}"
        );
    }
    writeln!(stdin, "GO").unwrap();
    wait_for("DONE");
    let status = child.0.wait().unwrap();
    assert!(status.success(), "client process failed: {status}");
    assert_eq!(server.stats().total.messages_in, 2 * CONNECTIONS as u64);
    assert!(started.elapsed() < LIMIT, "took {:?}", started.elapsed());
    // The client process is gone: every connection ends and the gauges
    // return to zero.
    wait_stats(&server, |stats| {
        stats.total.open == 0 && stats.total.handshaking == 0
    });
    server.shutdown(Duration::from_secs(5));
}
