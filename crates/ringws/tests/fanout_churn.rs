//! Cross-thread sends and fan-out under load: many threads sending through
//! `ConnHandle`s and broadcasting while connections open and close, on two
//! workers; and a broadcast that meets a peer that never reads.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use ringws::{
    Backpressure, ClosedInfo, Conn, ConnHandle, ConnId, Handler, Message, PreparedMessage, Request,
    SendError,
};

/// Connections as the application sees them: each open one's handle under
/// its request path, and every violation of the handle contract seen in a
/// callback.
#[derive(Default)]
struct Registry {
    open: Mutex<HashMap<String, ConnHandle>>,
    /// `on_closed` ran while a handle to the connection still said open.
    open_after_closed: AtomicUsize,
    closed: AtomicUsize,
}

struct Tracker {
    registry: Arc<Registry>,
    /// Queued bytes seen when a "q" arrives.
    probe: mpsc::Sender<(String, usize)>,
}

impl Handler for Tracker {
    type ConnData = (String, Option<ConnHandle>);

    fn on_upgrade(&mut self, request: &Request<'_>, data: &mut Self::ConnData) -> Result<(), u16> {
        data.0 = request.path().to_owned();
        Ok(())
    }

    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        let handle = conn.handle();
        conn.data_mut().1 = Some(handle.clone());
        let path = conn.data().0.clone();
        self.registry.open.lock().unwrap().insert(path, handle);
    }

    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
        if message.as_bytes() == b"q" {
            let _ = self
                .probe
                .send((conn.data().0.clone(), conn.queued_bytes()));
        }
    }

    fn on_closed(&mut self, _id: ConnId, data: Self::ConnData, _info: &ClosedInfo) {
        let (path, handle) = data;
        if handle.is_some_and(|handle| handle.is_open()) {
            self.registry
                .open_after_closed
                .fetch_add(1, Ordering::Relaxed);
        }
        self.registry.open.lock().unwrap().remove(&path);
        self.registry.closed.fetch_add(1, Ordering::Relaxed);
    }
}

fn start_tracker(
    builder: ringws::ServerBuilder,
) -> (
    ringws::ServerHandle,
    Arc<Registry>,
    mpsc::Receiver<(String, usize)>,
) {
    let registry = Arc::new(Registry::default());
    let (probe, probes) = mpsc::channel();
    let shared = registry.clone();
    let server = builder
        .start(move |_| Tracker {
            registry: shared.clone(),
            probe: probe.clone(),
        })
        .expect("server starts");
    (server, registry, probes)
}

/// The handle of the connection opened with `path` (bounded wait).
fn handle_of(registry: &Registry, path: &str) -> ConnHandle {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(handle) = registry.open.lock().unwrap().get(path) {
            return handle.clone();
        }
        assert!(Instant::now() < deadline, "{path} did not open");
        thread::sleep(Duration::from_millis(1));
    }
}

/// A tiny deterministic generator (no dependency needed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// What a reader of one connection saw: per sender, the messages in
/// arrival order; and whether anything followed the Close.
#[derive(Debug, Default)]
struct Seen {
    per_sender: HashMap<String, Vec<u64>>,
    close: Option<Vec<u8>>,
    after_close: usize,
}

/// Reads `client` until the server's Close (and TCP's end), recording
/// every data frame "sender:seq". Bounded by the read timeout.
fn read_all(mut client: RawClient) -> Seen {
    let mut seen = Seen::default();
    while let Some((_, opcode, payload)) = client.read_frame() {
        match opcode {
            0x1 | 0x2 => {
                let text = String::from_utf8(payload).expect("utf-8 payload");
                let (sender, seq) = text.split_once(':').expect("sender:seq");
                let seq: u64 = seq.trim_end_matches('.').parse().expect("a number");
                if seen.close.is_some() {
                    seen.after_close += 1;
                }
                seen.per_sender
                    .entry(sender.to_owned())
                    .or_default()
                    .push(seq);
            }
            0x8 if seen.close.is_none() => {
                // Complete the closing handshake; the server then ends TCP.
                let reply = masked_frame(true, 0x8, &payload[..payload.len().min(2)]);
                let _ = client.stream.write_all(&reply);
                seen.close = Some(payload);
            }
            _ => {}
        }
    }
    seen
}

#[test]
fn handles_and_broadcasts_from_many_threads_under_churn_keep_each_senders_order() {
    let (server, registry, _probes) = start_tracker(builder().workers(2));
    let addr = server.local_addr();
    let control = server.control();

    // Stable connections, read by a thread each until the server closes them.
    let stable_count = 8;
    let mut readers = Vec::new();
    let mut stable = Vec::new();
    for i in 0..stable_count {
        let path = format!("/stable/{i}");
        let client = RawClient::connect_with(addr, &upgrade_request(&path, ""));
        stable.push(handle_of(&registry, &path));
        readers.push(thread::spawn(move || read_all(client)));
    }
    let workers: std::collections::HashSet<_> =
        stable.iter().map(|handle| handle.id().worker()).collect();
    assert_eq!(workers.len(), 2, "stable connections on both workers");

    let stop = Arc::new(AtomicBool::new(false));
    let run_for = Duration::from_millis(1500);

    // Senders: each sends "t<n>:<seq>" with its own sequence per connection,
    // to every open connection (stable and churning), in every form.
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let registry = registry.clone();
            let stop = stop.clone();
            thread::spawn(move || {
                let mut next: HashMap<ConnId, u64> = HashMap::new();
                let mut rounds = 0u64;
                while !stop.load(Ordering::Relaxed) && rounds < 100_000 {
                    rounds += 1;
                    let handles: Vec<ConnHandle> =
                        registry.open.lock().unwrap().values().cloned().collect();
                    for handle in handles {
                        let seq = next.entry(handle.id()).or_default();
                        let text = format!("t{t}:{seq}");
                        let result = match *seq % 5 {
                            0 => handle.send_text(&text),
                            1 => handle.send_binary(text.as_bytes()),
                            2 => handle.send_text_owned(text),
                            3 => handle.send_binary_owned(text.into_bytes()),
                            _ => handle.send_prepared(&PreparedMessage::text(&text)),
                        };
                        match result {
                            Ok(()) => *seq += 1,
                            Err(SendError::Gone) => {}
                            Err(other) => panic!("unexpected send error {other:?}"),
                        }
                        let _ = handle.ping(b"p");
                    }
                    thread::sleep(Duration::from_millis(1));
                }
                next
            })
        })
        .collect();

    // A broadcaster: "b:<seq>" to everyone, and "s:<seq>" to the stable
    // connections only.
    let broadcaster = {
        let control = control.clone();
        let stop = stop.clone();
        let targets: Vec<ConnId> = stable.iter().map(ConnHandle::id).collect();
        thread::spawn(move || {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) && seq < 200_000 {
                assert_eq!(
                    control.broadcast(&PreparedMessage::text(&format!("b:{seq}"))),
                    2
                );
                control.broadcast_to(
                    &PreparedMessage::binary(format!("s:{seq}").as_bytes()),
                    targets.iter().copied(),
                );
                seq += 1;
                if seq.is_multiple_of(8) {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            seq
        })
    };

    // One thread mixing both ways of reaching the stable connections in
    // one sequence "m:<seq>": a broadcast_to, then a send through each
    // handle, and so on. Its messages arrive in the order it sent them.
    let mixed = {
        let control = control.clone();
        let stop = stop.clone();
        let stable = stable.clone();
        thread::spawn(move || {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) && seq < 100_000 {
                let text = format!("m:{seq}");
                if seq.is_multiple_of(2) {
                    control.broadcast_to(
                        &PreparedMessage::text(&text),
                        stable.iter().map(ConnHandle::id),
                    );
                } else {
                    for handle in &stable {
                        handle.send_text(&text).unwrap();
                    }
                }
                seq += 1;
                if seq.is_multiple_of(8) {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            seq
        })
    };

    // Churn: connections that open and end every way while all that runs.
    let churn = {
        let registry = registry.clone();
        let stop = stop.clone();
        thread::spawn(move || {
            let mut rng = Lcg(7);
            let mut n = 0u64;
            let mut problems = Vec::new();
            while !stop.load(Ordering::Relaxed) && n < 2000 {
                n += 1;
                let path = format!("/churn/{n}");
                let mut client = RawClient::connect_with(addr, &upgrade_request(&path, ""));
                client
                    .stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let handle = handle_of(&registry, &path);
                match rng.next() % 5 {
                    0 => drop(client),
                    1 => {
                        // The peer closes.
                        client.write_frame(true, 0x8, &close_payload(1000, ""));
                        let seen = read_all(client);
                        if seen.after_close > 0 {
                            problems.push(format!("{path}: {seen:?}"));
                        }
                    }
                    2 => {
                        handle.close(4001, "churn").unwrap();
                        let seen = read_all(client);
                        if seen.after_close > 0 || seen.close.is_none() {
                            problems.push(format!("{path}: {seen:?}"));
                        }
                    }
                    3 => {
                        handle.terminate().unwrap();
                        let _ = read_all(client);
                    }
                    _ => {
                        let _ = handle.pause_reading();
                        client.write_frame(true, 0x1, b"hello");
                        let _ = handle.resume_reading();
                        handle.close(1000, "").unwrap();
                        let seen = read_all(client);
                        if seen.after_close > 0 || seen.close.is_none() {
                            problems.push(format!("{path}: {seen:?}"));
                        }
                    }
                }
                // Once gone, a handle says so and refuses.
                let deadline = Instant::now() + WAIT;
                while handle.is_open() {
                    assert!(Instant::now() < deadline, "{path} still open");
                    thread::sleep(Duration::from_millis(1));
                }
                assert_eq!(handle.send_text("late"), Err(SendError::Gone));
            }
            (n, problems)
        })
    };

    thread::sleep(run_for);
    stop.store(true, Ordering::Relaxed);
    let sent: Vec<HashMap<ConnId, u64>> = senders.into_iter().map(|s| s.join().unwrap()).collect();
    let broadcasts = broadcaster.join().unwrap();
    let (churned, problems) = churn.join().unwrap();
    assert!(problems.is_empty(), "data after a Close: {problems:#?}");
    assert!(churned >= 3, "only {churned} churn connections");
    let mixed = mixed.join().unwrap();
    assert!(broadcasts >= 100, "only {broadcasts} broadcasts");

    // Everything queued so far comes before this Close on each connection.
    for handle in &stable {
        handle.close(1000, "end").unwrap();
    }
    for (handle, reader) in stable.iter().zip(readers) {
        let seen = reader.join().unwrap();
        let id = handle.id();
        assert_eq!(seen.close.as_deref(), Some(&close_payload(1000, "end")[..]));
        assert_eq!(seen.after_close, 0, "{id:?}");
        for (t, next) in sent.iter().enumerate() {
            let expected: Vec<u64> = (0..next.get(&id).copied().unwrap_or(0)).collect();
            let got = seen
                .per_sender
                .get(&format!("t{t}"))
                .cloned()
                .unwrap_or_default();
            assert!(
                got == expected,
                "{id:?} from sender {t}: {} received, {} sent; first difference at {:?}",
                got.len(),
                expected.len(),
                got.iter().zip(&expected).position(|(a, b)| a != b)
            );
        }
        let all: Vec<u64> = (0..broadcasts).collect();
        assert_eq!(seen.per_sender.get("b"), Some(&all), "{id:?} broadcasts");
        assert_eq!(seen.per_sender.get("s"), Some(&all), "{id:?} broadcast_to");
        let all: Vec<u64> = (0..mixed).collect();
        assert_eq!(seen.per_sender.get("m"), Some(&all), "{id:?} mixed");
    }
    let stats = wait_stats(&server, |stats| {
        stats.total.open == 0 && stats.total.closing_local == 0 && stats.total.closing_remote == 0
    });
    assert_eq!(registry.open_after_closed.load(Ordering::Relaxed), 0);
    assert_eq!(
        registry.closed.load(Ordering::Relaxed) as u64,
        churned + stable_count as u64
    );
    assert_eq!(stats.total.dropped_messages, 0, "{stats:#?}");
    assert_eq!(stats.total.handler_panics, 0);
    assert!(registry.open.lock().unwrap().is_empty());
    server.shutdown(WAIT);
}

#[test]
fn a_broadcast_to_a_peer_that_never_reads_keeps_its_queue_bounded_and_counts_add_up() {
    let limit = 64 * 1024;
    let message_len = 1024;
    let (server, registry, probes) = start_tracker(
        builder()
            .workers(2)
            .max_queued_bytes(limit)
            .socket_send_buffer(4096)
            .backpressure(Backpressure::PauseReading),
    );
    let addr = server.local_addr();
    let control = server.control();
    // The stalled peer reads nothing until the end.
    let mut stalled = RawClient::connect_with(addr, &upgrade_request("/stalled", ""));
    let stalled_handle = handle_of(&registry, "/stalled");
    let readers_count = 3;
    let received: Arc<Vec<AtomicU64>> =
        Arc::new((0..readers_count).map(|_| AtomicU64::new(0)).collect());
    let readers: Vec<_> = (0..readers_count)
        .map(|i| {
            let path = format!("/reader/{i}");
            let mut client = RawClient::connect_with(addr, &upgrade_request(&path, ""));
            handle_of(&registry, &path);
            let received = received.clone();
            thread::spawn(move || {
                let mut next = 0u64;
                while let Some((_, opcode, payload)) = client.read_frame() {
                    if opcode == 0x8 {
                        client.write_frame(true, 0x8, &payload[..2]);
                        continue;
                    }
                    assert_eq!(payload.len(), message_len);
                    let seq = u64::from_be_bytes(payload[..8].try_into().unwrap());
                    assert_eq!(seq, next, "reader {i}: in order, none lost");
                    next += 1;
                    received[i].store(next, Ordering::Release);
                }
                next
            })
        })
        .collect();

    // 8 MiB in windows of 32 KiB (half the limit), each one waited for by
    // the readers: a reading peer never meets the limit, the stalled one
    // does after its kernel buffers fill.
    let total = 8192u64;
    let window = 32;
    let started = Instant::now();
    let mut seq = 0;
    while seq < total {
        for _ in 0..window {
            let mut payload = vec![0x5A; message_len];
            payload[..8].copy_from_slice(&seq.to_be_bytes());
            assert_eq!(control.broadcast(&PreparedMessage::binary(&payload)), 2);
            seq += 1;
        }
        while received
            .iter()
            .any(|count| count.load(Ordering::Acquire) < seq)
        {
            assert!(
                started.elapsed() < Duration::from_secs(8),
                "the readers were stalled at {:?} of {seq}",
                received
                    .iter()
                    .map(|c| c.load(Ordering::Relaxed))
                    .collect::<Vec<_>>()
            );
            thread::sleep(Duration::from_micros(100));
        }
    }
    // The stalled peer's queue is at most one message past the limit.
    stalled.write_frame(true, 0x1, b"q");
    let (path, queued) = probes.recv_timeout(WAIT).expect("the probe answers");
    assert_eq!(path, "/stalled");
    assert!(
        queued <= limit + message_len + 4,
        "the stalled peer's queue holds {queued} bytes, limit {limit}"
    );
    let stats = server.stats();
    assert!(stats.total.dropped_messages > 0, "{stats:#?}");

    // Now the stalled peer reads: what it gets and what was dropped add up.
    stalled_handle.close(1000, "end").unwrap();
    stalled
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut delivered = 0u64;
    let mut last = None;
    loop {
        let (_, opcode, payload) = stalled.read_frame().expect("frames then Close");
        if opcode == 0x8 {
            break;
        }
        let seq = u64::from_be_bytes(payload[..8].try_into().unwrap());
        assert!(
            last.is_none_or(|last| seq > last),
            "in order: {seq} after {last:?}"
        );
        last = Some(seq);
        delivered += 1;
    }
    stalled
        .stream
        .write_all(&masked_frame(true, 0x8, &[0x03, 0xE8]))
        .unwrap();
    assert!(stalled.wait_eof());
    for handle in registry.open.lock().unwrap().values() {
        let _ = handle.close(1000, "end");
    }
    for reader in readers {
        assert_eq!(reader.join().unwrap(), total);
    }
    let stats = wait_stats(&server, |stats| stats.total.open == 0);
    assert_eq!(
        stats.total.messages_out,
        readers_count as u64 * total + delivered,
        "{stats:#?}"
    );
    assert_eq!(
        stats.total.dropped_messages,
        total - delivered,
        "{stats:#?}"
    );
    server.shutdown(WAIT);
}
