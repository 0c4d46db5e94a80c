//! Churn without lingering: at least 20,000 open–handshake–message–close
//! cycles from several raw client threads, half closed by the client and
//! half by the server. No connection waits on a timer to close, the
//! closing gauges are zero right after the load stops, and no server-side
//! socket is left half-closed (CLOSE-WAIT) or waiting (FIN-WAIT): the
//! server closes TCP first, so TIME-WAIT sits on the server's side only.

mod common;
mod lifecycle_common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{builder, masked_frame, upgrade_request, WAIT};
use lifecycle_common::*;
use ringws::{Conn, Handler, Message};

const CYCLES: usize = 20_000;
const THREADS: usize = 4;
/// Bound on the whole run (a debug build on a loaded 2-core machine).
const RUN_LIMIT: Duration = Duration::from_secs(180);
/// The close timeout; a connection that waited on it would show up in the
/// histogram's buckets from here on.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Echoes; `bye` makes the server close (1000 "bye").
struct ChurnEcho;

impl Handler for ChurnEcho {
    type ConnData = ();

    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
        if message.as_bytes() == b"bye" {
            let _ = conn.close(1000, "bye");
        } else {
            let _ = conn.send_binary(message.as_bytes());
        }
    }
}

/// Reads until `buf` holds `want` bytes; `false` at EOF.
fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, want: usize) -> bool {
    let mut chunk = [0u8; 512];
    while buf.len() < want {
        match stream.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(error) => panic!("churn client read failed: {error}"),
        }
    }
    true
}

/// Reads one small unmasked server frame: `(opcode, payload)`.
fn read_small_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> (u8, Vec<u8>) {
    assert!(fill(stream, buf, 2), "EOF before a frame");
    let len = usize::from(buf[1]);
    assert!(len <= 125, "small frames only");
    assert!(fill(stream, buf, 2 + len), "EOF inside a frame");
    let frame = (buf[0] & 0x0F, buf[2..2 + len].to_vec());
    buf.drain(..2 + len);
    frame
}

/// One full cycle. `server_closes`: the client asks the server to close
/// and answers its Close; otherwise the client closes and the server
/// answers. Either way the client then waits for the server's FIN.
fn cycle(addr: SocketAddr, request: &[u8], server_closes: bool) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.write_all(request).unwrap();
    let mut buf = Vec::with_capacity(512);
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let len = buf.len();
        assert!(fill(&mut stream, &mut buf, len + 1), "EOF before the 101");
    };
    assert!(buf.starts_with(b"HTTP/1.1 101"));
    buf.drain(..head_end);

    stream
        .write_all(&masked_frame(true, 0x2, b"ping-pong"))
        .unwrap();
    assert_eq!(
        read_small_frame(&mut stream, &mut buf),
        (0x2, b"ping-pong".to_vec())
    );

    if server_closes {
        stream.write_all(&masked_frame(true, 0x1, b"bye")).unwrap();
        let (opcode, payload) = read_small_frame(&mut stream, &mut buf);
        assert_eq!((opcode, &payload[..2]), (0x8, &1000u16.to_be_bytes()[..]));
        stream
            .write_all(&masked_frame(true, 0x8, &payload[..2]))
            .unwrap();
    } else {
        stream
            .write_all(&masked_frame(true, 0x8, &1000u16.to_be_bytes()))
            .unwrap();
        let (opcode, payload) = read_small_frame(&mut stream, &mut buf);
        assert_eq!((opcode, payload), (0x8, 1000u16.to_be_bytes().to_vec()));
    }
    // The server's FIN comes first; only then does the client close.
    assert!(!fill(&mut stream, &mut buf, 1), "nothing after the Close");
}

#[test]
fn twenty_thousand_cycles_leave_nothing_closing_or_half_closed() {
    let server = builder()
        .workers(2)
        .ping_interval(None)
        .close_timeout(CLOSE_TIMEOUT)
        .start(|_| ChurnEcho)
        .expect("server starts");
    let addr = server.local_addr();
    let port = addr.port();
    let request = Arc::new(upgrade_request("/", "").into_bytes());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let request = request.clone();
            let next = next.clone();
            std::thread::spawn(move || {
                let mut done = 0;
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= CYCLES || started.elapsed() > RUN_LIMIT {
                        return done;
                    }
                    cycle(addr, &request, n % 2 == 1);
                    done += 1;
                }
            })
        })
        .collect();
    let cycles: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let stopped = Instant::now();
    let elapsed = stopped - started;
    assert_eq!(cycles, CYCLES, "cycles completed within {RUN_LIMIT:?}");

    // Within 100 ms of the load stopping, nothing is closing (or open).
    let settled = poll_until(Duration::from_millis(100), || {
        let stats = server.stats();
        (stats.total.connections() == 0).then_some(stats)
    });
    let Some(_) = settled else {
        panic!(
            "connections left {:?} after the load stopped: {:#?}",
            stopped.elapsed(),
            server.stats().total
        );
    };
    assert_eq!(closing(&server), 0);

    let total = server.stats().total;
    assert_eq!(total.upgraded, CYCLES as u64);
    assert_eq!(total.clean_closes, CYCLES as u64, "{total:#?}");
    assert_eq!(total.forced_terminations + total.abnormal_closes, 0);
    assert_eq!(total.close_timeouts, 0);
    assert_eq!(total.close_durations.count(), CYCLES as u64);
    // Every close took about a round trip: none came near the close
    // timeout (bounds are generous for a loaded CI machine).
    let buckets: Vec<(Option<u64>, u64)> = total.close_durations.buckets().collect();
    let slow: u64 = buckets
        .iter()
        .filter(|(bound, _)| bound.is_none_or(|ms| ms > 200))
        .map(|(_, count)| count)
        .sum();
    assert_eq!(slow, 0, "closes over 200 ms: {buckets:?}");
    let within_5ms: u64 = buckets
        .iter()
        .filter(|(bound, _)| bound.is_some_and(|ms| ms <= 5))
        .map(|(_, count)| count)
        .sum();
    eprintln!(
        "{cycles} cycles in {elapsed:?} ({:.0}/s, {} build); close durations {buckets:?} \
         ({:.2} % within 5 ms)",
        cycles as f64 / elapsed.as_secs_f64(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        100.0 * within_5ms as f64 / cycles as f64
    );

    // Socket states on the server's port: nothing half-closed or waiting
    // on either side; TIME-WAIT only on the server's side (it closed
    // first), never on the clients'.
    for state in [
        "close-wait",
        "fin-wait-1",
        "fin-wait-2",
        "last-ack",
        "closing",
    ] {
        let server_side = tcp_sockets(state, &format!("sport = :{port}"));
        assert!(server_side.is_empty(), "server {state}: {server_side:?}");
        let client_side = tcp_sockets(state, &format!("dport = :{port}"));
        assert!(client_side.is_empty(), "client {state}: {client_side:?}");
    }
    let server_time_wait = tcp_sockets("time-wait", &format!("sport = :{port}")).len();
    let client_time_wait = tcp_sockets("time-wait", &format!("dport = :{port}")).len();
    assert!(server_time_wait > 0, "the server closed first");
    assert_eq!(client_time_wait, 0, "a client closed first");
    server.shutdown(WAIT);
}
