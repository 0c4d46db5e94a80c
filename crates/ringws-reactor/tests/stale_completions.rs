//! Slots are closed and reused quickly under load; a completion of a closed
//! connection must never reach the connection that reuses its slot, and
//! `on_closed` must fire exactly once per connection.
//!
//! Every client connection sends a stream made of one 8-byte tag, repeated.
//! The server checks that each connection only ever receives its own tag and
//! echoes it. Clients close normally, reset mid-stream, or are terminated or
//! gracefully closed by the server mid-stream, all concurrently.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ringws_reactor::{CloseCause, Config, ConnId, CorePinning, Ctx, Handler, Reactor};

const TAG: usize = 8;
const THREADS: u8 = 4;
const ITERATIONS: u16 = 300;
const TIME_BOUND: Duration = Duration::from_secs(15);

#[derive(Default)]
struct Ledger {
    live: HashSet<ConnId>,
    ever: HashSet<ConnId>,
    closed: u64,
    violations: Vec<String>,
}

struct Churn {
    ledger: Arc<Mutex<Ledger>>,
}

struct Stream {
    id: ConnId,
    tag: Option<[u8; TAG]>,
    received: usize,
}

#[derive(Debug)]
enum Report {
    Ledger(mpsc::Sender<(usize, u64, Vec<String>)>),
}

impl Handler for Churn {
    type Conn = Stream;
    type Timer = ();
    type Command = Report;

    fn on_accept(&mut self, _ctx: &mut Ctx<'_, Self>, conn: ConnId) -> Option<Stream> {
        let mut ledger = self.ledger.lock().unwrap();
        if !ledger.ever.insert(conn) {
            ledger.violations.push(format!("{conn:?} handed out twice"));
        }
        ledger.live.insert(conn);
        Some(Stream {
            id: conn,
            tag: None,
            received: 0,
        })
    }

    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        conn: ConnId,
        state: &mut Stream,
        data: &mut [u8],
    ) -> usize {
        if state.id != conn {
            self.violate(format!("state of {:?} delivered for {conn:?}", state.id));
        }
        // Consume whole tags only; the reactor keeps the rest.
        let whole = data.len() / TAG * TAG;
        for block in data[..whole].chunks(TAG) {
            let block: [u8; TAG] = block.try_into().unwrap();
            match state.tag {
                None => state.tag = Some(block),
                Some(tag) if tag != block => {
                    self.violate(format!("{conn:?} got {block:?}, its tag is {tag:?}"));
                }
                Some(_) => {}
            }
        }
        state.received += whole;
        let _ = ctx.io.send(conn, data[..whole].to_vec());
        if state.received >= 64 {
            match state.tag.map(|tag| tag[0]) {
                Some(b'T') => {
                    ctx.io.terminate(conn);
                }
                Some(b'C') => {
                    ctx.io.close(conn);
                }
                _ => {}
            }
        }
        whole
    }

    fn on_closed(&mut self, ctx: &mut Ctx<'_, Self>, conn: ConnId, state: Stream, _: CloseCause) {
        if state.id != conn {
            self.violate(format!("closed {conn:?} with the state of {:?}", state.id));
        }
        if ctx.io.is_open(conn) || ctx.io.queued_bytes(conn).is_some() {
            self.violate(format!("{conn:?} still known after on_closed"));
        }
        let mut ledger = self.ledger.lock().unwrap();
        if !ledger.live.remove(&conn) {
            ledger
                .violations
                .push(format!("on_closed for {conn:?} not live (twice?)"));
        }
        ledger.closed += 1;
    }

    fn on_command(&mut self, _ctx: &mut Ctx<'_, Self>, command: Report) {
        let Report::Ledger(reply) = command;
        let ledger = self.ledger.lock().unwrap();
        let _ = reply.send((ledger.ever.len(), ledger.closed, ledger.violations.clone()));
    }
}

impl Churn {
    fn violate(&self, message: String) {
        self.ledger.lock().unwrap().violations.push(message);
    }
}

fn tag_for(kind: u8, thread: u8, iteration: u16) -> [u8; TAG] {
    let [lo, hi] = iteration.to_le_bytes();
    [kind, thread, lo, hi, 0xA5, 0x5A, !thread, !kind]
}

/// Reads until EOF, error, or `limit` bytes; checks every byte against the tag.
fn read_checked(stream: &mut TcpStream, tag: &[u8; TAG], limit: usize) -> usize {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    while total < limit {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                for (offset, byte) in buf[..n].iter().enumerate() {
                    assert_eq!(
                        *byte,
                        tag[(total + offset) % TAG],
                        "foreign byte on the wire"
                    );
                }
                total += n;
            }
        }
    }
    total
}

fn client_loop(addr: std::net::SocketAddr, thread_index: u8, deadline: Instant) -> u32 {
    let mut connections = 0;
    for iteration in 0..ITERATIONS {
        if Instant::now() >= deadline {
            break;
        }
        let kind = [b'N', b'R', b'T', b'C'][usize::from(iteration % 4)];
        let tag = tag_for(kind, thread_index, iteration);
        let Ok(mut stream) = TcpStream::connect(addr) else {
            continue;
        };
        connections += 1;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let blocks = 4 + usize::from(iteration % 13);
        let message: Vec<u8> = tag.iter().copied().cycle().take(blocks * TAG).collect();
        // Split the write so tags straddle reads.
        let split = 3 + usize::from(iteration % 5);
        if stream.write_all(&message[..split]).is_err()
            || stream.write_all(&message[split..]).is_err()
        {
            continue;
        }
        match kind {
            b'N' => {
                assert_eq!(
                    read_checked(&mut stream, &tag, message.len()),
                    message.len()
                );
            }
            b'R' => {
                read_checked(&mut stream, &tag, TAG);
                socket2::SockRef::from(&stream)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }
            _ => {
                // The server terminates or closes after 64 bytes; keep
                // writing until it does, then read what is left.
                for _ in 0..8 {
                    if stream.write_all(&message).is_err() {
                        break;
                    }
                }
                read_checked(&mut stream, &tag, usize::MAX);
            }
        }
    }
    connections
}

#[test]
fn closed_slots_are_reused_without_crossed_completions() {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let shared = ledger.clone();
    let config = Config::new()
        .workers(2)
        .pinning(CorePinning::Off)
        .listen("127.0.0.1:0".parse().unwrap())
        .recv_buffers(64, 2048)
        .close_linger(Duration::from_millis(200));
    let handle = Reactor::start(config, move |_| Churn {
        ledger: shared.clone(),
    })
    .expect("reactor starts");
    let addr = handle.local_addr().unwrap();
    let deadline = Instant::now() + TIME_BOUND;
    let clients: Vec<_> = (0..THREADS)
        .map(|index| thread::spawn(move || client_loop(addr, index, deadline)))
        .collect();
    let connections: u32 = clients
        .into_iter()
        .map(|client| client.join().unwrap())
        .sum();
    assert!(
        connections > 100,
        "only {connections} connections were made"
    );

    // Wait until every accepted connection has been closed.
    let wait_until = Instant::now() + Duration::from_secs(20);
    let (accepted, closed, violations) = loop {
        let (reply, answer) = mpsc::channel();
        for sender in handle.senders() {
            sender.send(Report::Ledger(reply.clone())).unwrap();
        }
        let (accepted, closed, violations) = answer.recv().unwrap();
        if accepted as u64 == closed && accepted >= connections as usize
            || Instant::now() > wait_until
        {
            break (accepted, closed, violations);
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert!(violations.is_empty(), "{violations:#?}");
    assert_eq!(accepted, connections as usize);
    assert_eq!(
        closed, accepted as u64,
        "every connection closes exactly once"
    );
    let ledger = ledger.lock().unwrap();
    assert!(ledger.live.is_empty());
    // Slots were reused many times over.
    let most_reused = ledger
        .ever
        .iter()
        .map(|conn| conn.generation())
        .max()
        .unwrap_or(0);
    assert!(
        most_reused >= 10,
        "a slot was reused only {most_reused} times"
    );
    drop(ledger);
    handle.stop();
    handle.join().expect("clean stop");
}
