//! Graceful shutdown: Close 1001 with the configured reason to every
//! connection on every worker, a deadline, forced termination of the rest,
//! and a report.

mod common;

use std::time::Duration;

use common::*;
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[tokio::test]
async fn shutdown_closes_cooperative_peers_and_forces_the_rest() {
    let (server, events) = start(builder().workers(2).shutdown_reason("maintenance"));
    let addr = server.local_addr();
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect(addr).await);
        events.opened().await;
    }
    // A peer that never reads: its Close handshake cannot complete.
    let stubborn = RawClient::connect(addr);
    events.opened().await;

    let deadline = Duration::from_millis(500);
    let shutdown = tokio::task::spawn_blocking(move || server.shutdown(deadline));
    for client in clients.iter_mut() {
        let close = recv(client).await;
        let WsMessage::Close(Some(frame)) = close else {
            panic!("expected a Close, got {close:?}");
        };
        assert_eq!(u16::from(frame.code), 1001);
        assert_eq!(frame.reason, "maintenance");
    }
    for client in clients.iter_mut() {
        run_to_end(client).await;
    }
    drop(clients);
    let report = tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown ends")
        .unwrap();
    assert_eq!(report.total, 4, "{report:?}");
    assert_eq!(report.clean, 3, "{report:?}");
    assert_eq!(report.forced, 1, "{report:?}");
    assert_eq!(report.abnormal, 0, "{report:?}");
    assert!(report.elapsed >= deadline, "{report:?}");

    let mut closes = 0;
    while let Ok(event) = events.rx.try_recv() {
        if let Event::Closed { info, .. } = event {
            closes += 1;
            assert_eq!(info.sent.map(|c| c.0), Some(1001));
        }
    }
    assert_eq!(closes, 4, "on_closed for every connection");
    // The listeners are gone.
    assert!(std::net::TcpStream::connect(addr).is_err());
    drop(stubborn);
}

#[test]
fn shutdown_without_connections_is_quick_and_empty() {
    let (server, _events) = start(builder());
    let report = server.shutdown(WAIT);
    assert_eq!((report.total, report.clean, report.forced), (0, 0, 0));
    assert!(report.elapsed < WAIT);
}

#[test]
fn a_control_shuts_down_while_another_thread_joins() {
    let (server, _events) = start(builder());
    let control = server.control();
    let client = RawClient::connect(server.local_addr());
    let joiner = std::thread::spawn(move || server.join());
    // The raw client never answers: forced at the deadline.
    let report = control.shutdown(Duration::from_millis(100)).unwrap();
    assert_eq!((report.total, report.forced), (1, 1));
    joiner.join().unwrap().unwrap();
    // A second call returns the same report, and so does the accessor.
    assert_eq!(control.shutdown(WAIT), Ok(report));
    assert_eq!(control.shutdown_report(), Some(report));
    assert!(!control.begin_shutdown(WAIT), "one shutdown per server");
    drop(client);
}

#[test]
fn a_silent_peer_cut_by_the_close_timeout_during_shutdown_is_counted_forced() {
    // The close timeout (300 ms) ends the wait for the peer's Close before
    // the shutdown deadline (3 s) does: forced all the same, in `on_closed`
    // and in the report alike.
    let (server, events) = start(builder().close_timeout(Duration::from_millis(300)));
    let silent = RawClient::connect(server.local_addr());
    let (id, _, _) = events.opened_blocking();
    let report = server.shutdown(Duration::from_secs(3));
    let info = events.closed_blocking(id);
    assert_eq!(info.kind, ringws::CloseKind::Forced, "{info:?}");
    assert_eq!(
        (report.total, report.clean, report.forced, report.abnormal),
        (1, 0, 1, 0),
        "{report:?}"
    );
    assert!(report.elapsed < Duration::from_secs(3), "{report:?}");
    drop(silent);
}

/// Shuts the server down from inside a callback when told to.
/// What the callback saw: `shutdown`'s answer, then whether the first and
/// the second `begin_shutdown` started one (checked by the test thread, so
/// a surprise does not kill the worker).
type Seen = (
    Result<ringws::ShutdownReport, ringws::ShutdownError>,
    bool,
    bool,
);

struct StopOnRequest {
    seen: std::sync::mpsc::Sender<Seen>,
}

impl ringws::Handler for StopOnRequest {
    type ConnData = ();
    fn on_message(&mut self, conn: &mut ringws::Conn<'_, Self>, message: ringws::Message<'_>) {
        if message.as_bytes() == b"shutdown" {
            let control = conn.server().clone();
            // Waiting here would stall this worker: refused, typed.
            let refused = control.shutdown(Duration::from_secs(2));
            let first = control.begin_shutdown(Duration::from_secs(2));
            let second = control.begin_shutdown(Duration::from_secs(2));
            let _ = self.seen.send((refused, first, second));
        }
    }
}

#[test]
fn a_callback_begins_the_shutdown_and_its_peers_get_1001_at_once() {
    let (seen_tx, seen) = std::sync::mpsc::channel();
    let server = builder()
        .workers(1)
        .start(move |_| StopOnRequest {
            seen: seen_tx.clone(),
        })
        .unwrap();
    let control = server.control();
    let mut asker = RawClient::connect(server.local_addr());
    let mut other = RawClient::connect(server.local_addr());
    for client in [&mut asker, &mut other] {
        client
            .stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
    }
    let asked = std::time::Instant::now();
    asker.write_frame(true, 0x1, b"shutdown");
    assert_eq!(
        seen.recv_timeout(WAIT).unwrap(),
        (Err(ringws::ShutdownError::OnWorkerThread), true, false),
        "refused, then begun once"
    );
    for client in [&mut asker, &mut other] {
        let (_, opcode, payload) = client.read_frame().expect("a Close");
        assert_eq!(opcode, 0x8);
        assert_eq!(payload[..2], 1001u16.to_be_bytes());
        client.write_frame(true, 0x8, &payload[..2]);
        assert!(client.read_frame().is_none(), "then the server closes TCP");
    }
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "the worker was not stalled: {:?}",
        asked.elapsed()
    );
    drop((asker, other));
    server.join().unwrap();
    let report = control.shutdown_report().expect("the report once it ran");
    assert_eq!(
        (report.total, report.clean, report.forced, report.abnormal),
        (2, 2, 0, 0),
        "{report:?}"
    );
}

#[test]
fn an_unbounded_deadline_waits_for_the_close_timeout_instead_of_overflowing() {
    let (server, events) = start(builder().close_timeout(Duration::from_millis(200)));
    let silent = RawClient::connect(server.local_addr());
    events.opened_blocking();
    let report = server.shutdown(Duration::MAX);
    assert_eq!((report.total, report.forced), (1, 1), "{report:?}");
    assert!(report.elapsed < Duration::from_secs(5), "{report:?}");
    drop(silent);
}

/// A zero deadline still tells every peer why: the Close 1001 goes out
/// before what is left is terminated.
#[test]
fn a_zero_deadline_still_sends_1001_before_terminating() {
    let (server, events) = start(builder().workers(2));
    let mut clients: Vec<RawClient> = (0..20)
        .map(|_| RawClient::connect(server.local_addr()))
        .collect();
    for _ in 0..clients.len() {
        events.opened_blocking();
    }
    let report = server.shutdown(Duration::ZERO);
    assert_eq!(report.total, 20);
    for (index, client) in clients.iter_mut().enumerate() {
        assert_eq!(
            client.read_close(),
            close_payload(1001, ringws::DEFAULT_SHUTDOWN_REASON),
            "peer {index}"
        );
    }
}

/// Calls `ServerHandle::shutdown` from a callback when told to: a misuse
/// (the handle would wait for its own worker).
struct ShutdownHandleInCallback {
    handle: std::sync::Arc<std::sync::Mutex<Option<ringws::ServerHandle>>>,
}

impl ringws::Handler for ShutdownHandleInCallback {
    type ConnData = ();
    fn on_message(&mut self, conn: &mut ringws::Conn<'_, Self>, message: ringws::Message<'_>) {
        if message.as_bytes() != b"shutdown" {
            let _ = conn.send_binary(message.as_bytes());
        } else if let Some(handle) = self.handle.lock().unwrap().take() {
            handle.shutdown(Duration::from_secs(2));
        }
    }
}

#[test]
fn a_server_handle_shut_down_from_its_own_worker_panics_at_once_saying_why() {
    static PANICS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.lock().unwrap().push(info.to_string());
        previous(info);
    }));
    let slot = std::sync::Arc::new(std::sync::Mutex::new(None));
    let server = {
        let slot = slot.clone();
        builder()
            .workers(1)
            .start(move |_| ShutdownHandleInCallback {
                handle: slot.clone(),
            })
            .unwrap()
    };
    let addr = server.local_addr();
    let control = server.control();
    *slot.lock().unwrap() = Some(server);
    let mut asker = RawClient::connect(addr);
    asker
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let asked = std::time::Instant::now();
    asker.write_frame(true, 0x1, b"shutdown");
    let (_, opcode, payload) = asker.read_frame().expect("a Close");
    assert_eq!((opcode, &payload[..2]), (0x8, &1011u16.to_be_bytes()[..]));
    // Before, the worker stalled for seconds and then failed to join itself.
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "the worker stalled for {:?}",
        asked.elapsed()
    );
    assert!(
        PANICS
            .lock()
            .unwrap()
            .iter()
            .any(|panic| panic.contains("its own server would wait for itself")),
        "{:?}",
        PANICS.lock().unwrap()
    );
    // The server goes on: a new connection is served, and it shuts down.
    let mut next = RawClient::connect(addr);
    next.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    next.write_frame(true, 0x1, b"hello");
    let (_, opcode, payload) = next.read_frame().expect("the echo");
    assert_eq!((opcode, &payload[..]), (0x2, &b"hello"[..]));
    assert_eq!(control.stats().total.handler_panics, 1);
    drop((asker, next));
    control.shutdown(Duration::from_millis(200)).unwrap();
}
