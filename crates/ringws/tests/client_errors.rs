//! Attempts that do not open, each with a clear, typed error: refused TCP,
//! a refused upgrade with its HTTP status, a handshake timeout, a bad
//! accept key, a server hanging up mid-handshake, bad URLs, bad source
//! addresses, connects from callbacks, and shutdown during a handshake.
//! A panicking client callback fails only its connection.

mod client_common;

use std::io::Write;
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;

use client_common::*;
use ringws::{
    ClientControl, CloseCode, CloseKind, Conn, ConnId, ConnectError, Handler, Initiator, Message,
    ResponseError, SendError, UrlError,
};

#[test]
fn a_refused_tcp_connect_is_reported_as_refused() {
    let (client, events) = start_client(|builder| builder);
    let port = closed_port();
    let id = client
        .connect(&format!("ws://127.0.0.1:{port}/"), Plan::tagged(7))
        .expect("the attempt starts");
    let (failed_id, error) = connect_failed(&events, 7);
    assert_eq!(failed_id, Some(id));
    assert_eq!(error, ConnectError::Refused);
    assert_eq!(error.to_string(), "connection refused");
    assert_eq!(client.stats().total.connections(), 0);
    client.shutdown(Duration::from_secs(1));
}

#[test]
fn a_handle_to_an_attempt_that_never_opened_reads_as_gone() {
    // The second attempt reuses the first connection's slot with the next
    // generation; it fails before opening, so its handle must not read as
    // open nor accept commands.
    let (server, server_events) = start_server(|builder| builder);
    let (client, events) = start_client(|builder| builder.workers(1));
    let first = client.connect(&url(&server, "/"), Plan::tagged(1)).unwrap();
    let handle = opened(&events, first);
    server_opened(&server_events);
    handle.close(1000, "").unwrap();
    closed(&events, first);
    let port = closed_port();
    let second = client
        .connect(&format!("ws://127.0.0.1:{port}/"), Plan::tagged(2))
        .unwrap();
    assert_eq!(
        (second.worker(), second.slot()),
        (first.worker(), first.slot()),
        "the attempt reuses the slot"
    );
    let (_, error) = connect_failed(&events, 2);
    assert_eq!(error, ConnectError::Refused);
    let handle = client.handle(second).unwrap();
    assert!(!handle.is_open());
    assert_eq!(handle.send_text("to nobody"), Err(SendError::Gone));
    assert!(handle.close(1000, "").is_err());
    // Nor does the old connection's handle come back to life.
    assert!(!client.handle(first).unwrap().is_open());
    client.shutdown(Duration::from_secs(1));
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn a_refused_upgrade_reports_its_http_status() {
    let (server, _server_events) = start_server(|builder| {
        builder.origin_check(|origin| origin == Some("https://good.example"))
    });
    let (client, events) = start_client(|builder| builder.header("Origin", "https://evil.example"));
    let id = client.connect(&url(&server, "/"), Plan::tagged(1)).unwrap();
    let (failed_id, error) = connect_failed(&events, 1);
    assert_eq!(failed_id, Some(id));
    assert_eq!(error, ConnectError::Status(403));
    assert_eq!(error.status(), Some(403));
    assert!(error.to_string().contains("HTTP status 403"), "{error}");
    let stats = client.stats().total;
    assert_eq!(stats.handshakes_failed.get(403), 1);
    assert_eq!(stats.upgraded, 0);
    assert_eq!(server.stats().total.handshakes_failed.get(403), 1);
    client.shutdown(Duration::from_secs(1));
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn a_silent_server_times_the_handshake_out() {
    let (client, events) =
        start_client(|builder| builder.handshake_timeout(Duration::from_millis(200)));
    let (done, finished) = mpsc::channel::<()>();
    let addr = raw_server(move |mut stream| {
        // Read the request, answer nothing, hold the socket.
        read_head(&mut stream);
        let _ = finished.recv_timeout(WAIT);
    });
    let id = client
        .connect(&format!("ws://{addr}/"), Plan::tagged(3))
        .unwrap();
    let (failed_id, error) = connect_failed(&events, 3);
    assert_eq!(failed_id, Some(id));
    assert_eq!(error, ConnectError::Timeout);
    assert_eq!(client.stats().total.handshake_timeouts, 1);
    let _ = done.send(());
    client.shutdown(Duration::from_secs(1));
}

#[test]
fn a_connect_that_gave_up_waiting_is_not_reported_again() {
    // `connect` waits for the worker at most the handshake timeout; a
    // worker held up longer makes it return `Timeout`. That `Err` is the
    // attempt's one report: `on_connect_failed` must not follow.
    let handshake_timeout = Duration::from_millis(200);
    assert!(STALL > handshake_timeout * 2);
    let (server, _server_events) = start_server(|builder| builder);
    let (client, events) =
        start_client(|builder| builder.workers(1).handshake_timeout(handshake_timeout));
    let first = client.connect(&url(&server, "/"), Plan::tagged(1)).unwrap();
    let handle = opened(&events, first);
    handle.send_text(STALL_MESSAGE).unwrap();
    assert_eq!(
        next_text(&events, first),
        STALL_MESSAGE,
        "the worker stalls"
    );

    let gave_up = client.connect(&url(&server, "/"), Plan::tagged(2));
    assert_eq!(gave_up, Err(ConnectError::Timeout));
    // The worker takes its inbox in order: the abandoned attempt, then this
    // message, whose echo shows the attempt was handled.
    handle.send_text("after").unwrap();
    let mut late_reports = Vec::new();
    let mut record = |event: ClientEvent| match event {
        ClientEvent::ConnectFailed { tag: 2, error, .. } => late_reports.push(format!("{error:?}")),
        ClientEvent::Open { tag: 2, .. } => late_reports.push("opened".to_owned()),
        _ => {}
    };
    wait_for(&events, "the echo after the stall", |event| match event {
        ClientEvent::Text { text, .. } if text == "after" => Some(()),
        other => {
            record(other);
            None
        }
    });
    while let Ok(event) = events.recv_timeout(Duration::from_millis(200)) {
        record(event);
    }
    assert_eq!(late_reports, Vec::<String>::new(), "reported twice");
    poll_until("the abandoned attempt to be gone", || {
        client.stats().total.handshaking == 0
    });
    client.shutdown(Duration::from_secs(1));
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn a_wrong_accept_key_fails_the_attempt() {
    let (client, events) = start_client(|builder| builder);
    let addr = raw_server(|mut stream| {
        read_head(&mut stream);
        let response = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                        Connection: Upgrade\r\nSec-WebSocket-Accept: \
                        s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        stream.write_all(response.as_bytes()).unwrap();
        let _ = std::io::Read::read(&mut stream, &mut [0u8; 16]);
    });
    client
        .connect(&format!("ws://{addr}/"), Plan::tagged(4))
        .unwrap();
    let (_, error) = connect_failed(&events, 4);
    assert_eq!(
        error,
        ConnectError::Handshake(ResponseError::AcceptMismatch)
    );
    assert!(
        error.to_string().contains("Sec-WebSocket-Accept"),
        "{error}"
    );
    client.shutdown(Duration::from_secs(1));
}

#[test]
fn a_server_hanging_up_before_answering_is_reported() {
    let (client, events) = start_client(|builder| builder);
    let addr = raw_server(|mut stream| {
        read_head(&mut stream);
        // Dropping the stream closes it.
    });
    client
        .connect(&format!("ws://{addr}/"), Plan::tagged(5))
        .unwrap();
    let (_, error) = connect_failed(&events, 5);
    assert!(
        matches!(
            error,
            ConnectError::ClosedDuringHandshake
                | ConnectError::Io {
                    errno: libc::ECONNRESET
                }
        ),
        "{error:?}"
    );
    client.shutdown(Duration::from_secs(1));
}

#[test]
fn bad_urls_and_hosts_fail_before_any_socket() {
    let (client, events) = start_client(|builder| builder);
    let cases = [
        (
            "wss://127.0.0.1/",
            ConnectError::InvalidUrl(UrlError::TlsNotSupported),
        ),
        (
            "http://127.0.0.1/",
            ConnectError::InvalidUrl(UrlError::UnsupportedScheme),
        ),
        (
            "ws://127.0.0.1:0/",
            ConnectError::InvalidUrl(UrlError::InvalidPort),
        ),
        (
            "ws://127.0.0.1/a b",
            ConnectError::InvalidUrl(UrlError::InvalidCharacter),
        ),
    ];
    for (url, expected) in cases {
        assert_eq!(client.connect(url, Plan::tagged(1)), Err(expected), "{url}");
        assert!(
            client.connect_queued(url, Plan::tagged(1)).is_err(),
            "{url}"
        );
    }
    match client.connect("ws://no-such-host.invalid/", Plan::tagged(1)) {
        Err(ConnectError::Resolve { host, .. }) => assert_eq!(host, "no-such-host.invalid"),
        other => panic!("expected a resolution error, got {other:?}"),
    }
    assert_eq!(client.stats().total.connections(), 0);
    assert!(events.try_recv().is_err(), "no callback for a refused call");
    client.shutdown(Duration::from_secs(1));
}

#[test]
fn an_unusable_source_address_fails_with_its_errno() {
    // A loopback port held by a listener cannot be a source address.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let source = held.local_addr().unwrap();
    let (client, events) = start_client(|builder| builder.source_addr(source));
    let error = client
        .connect("ws://127.0.0.1:9/", Plan::tagged(1))
        .unwrap_err();
    assert_eq!(error.errno(), Some(libc::EADDRINUSE), "{error:?}");
    // Queued, the same failure reaches the handler without an id.
    client
        .connect_queued("ws://127.0.0.1:9/", Plan::tagged(2))
        .unwrap();
    let (id, error) = connect_failed(&events, 2);
    assert_eq!(id, None);
    assert_eq!(error.errno(), Some(libc::EADDRINUSE));
    client.shutdown(Duration::from_secs(1));
}

#[test]
fn shutdown_aborts_attempts_still_in_their_handshake() {
    let (client, events) = start_client(|builder| builder);
    let (done, finished) = mpsc::channel::<()>();
    let addr = raw_server(move |mut stream| {
        read_head(&mut stream);
        let _ = finished.recv_timeout(WAIT);
    });
    let id = client
        .connect(&format!("ws://{addr}/"), Plan::tagged(6))
        .unwrap();
    // Let the request reach the server before shutting down.
    poll_until("the attempt to be in its handshake", || {
        client.stats().total.handshaking == 1
    });
    let control = client.control();
    let report = control.shutdown(Duration::from_secs(1)).unwrap();
    assert_eq!(report.total, 0, "attempts are not open connections");
    let (failed_id, error) = connect_failed(&events, 6);
    assert_eq!(failed_id, Some(id));
    assert_eq!(error, ConnectError::Shutdown);
    let _ = done.send(());
    client.join().unwrap();
}

/// Reconnects from callbacks: the blocking `connect` is refused on a worker
/// thread, `connect_queued` works.
struct Reconnector {
    control: Arc<OnceLock<ClientControl<u32>>>,
    url: String,
    results: mpsc::Sender<(u32, Result<(), ConnectError>, Option<ConnectError>)>,
}

impl Handler for Reconnector {
    type ConnData = u32;

    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        let generation = *conn.data();
        let control = self.control.get().expect("set before connecting");
        let blocking = control.connect(&self.url, generation + 1).err();
        let queued = if generation == 0 {
            control.connect_queued(&self.url, generation + 1)
        } else {
            Ok(())
        };
        let _ = self.results.send((generation, queued, blocking));
        let _ = conn.close(1000, "");
    }

    fn on_message(&mut self, _conn: &mut Conn<'_, Self>, _message: Message<'_>) {}

    fn on_connect_failed(&mut self, _id: Option<ConnId>, data: u32, error: &ConnectError) {
        // Shows up as a failed `queued` result in the test.
        let _ = self.results.send((data, Err(error.clone()), None));
    }
}

#[test]
fn callbacks_connect_with_connect_queued() {
    let (server, _server_events) = start_server(|builder| builder);
    let control = Arc::new(OnceLock::new());
    let (tx, rx) = mpsc::channel();
    let handler_control = control.clone();
    let target = url(&server, "/");
    let handler_url = target.clone();
    let client = ringws::Client::builder()
        .workers(1)
        .recv_buffers(64, 16 * 1024)
        .start(move |_| Reconnector {
            control: handler_control.clone(),
            url: handler_url.clone(),
            results: tx.clone(),
        })
        .unwrap();
    control.set(client.control()).unwrap();
    client.connect(&target, 0).unwrap();
    for generation in 0..2 {
        let (seen, queued, blocking) = rx.recv_timeout(WAIT).expect("a connection opens");
        assert_eq!(seen, generation, "the queued connect opened");
        assert_eq!(queued, Ok(()));
        assert_eq!(blocking, Some(ConnectError::OnWorkerThread));
    }
    poll_until("both connections to close", || {
        client.stats().total.connections() == 0
    });
    assert_eq!(client.stats().total.upgraded, 2);
    client.shutdown(Duration::from_secs(1));
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn a_panicking_client_callback_fails_only_its_connection_with_1011() {
    let (server, server_events) = start_server(|builder| builder.workers(1));
    let (client, events) = start_client(|builder| builder.workers(1));
    let failing = client.connect(&url(&server, "/"), Plan::tagged(1)).unwrap();
    let failing_handle = opened(&events, failing);
    let (server_side, ..) = server_opened(&server_events);
    let bystander = client.connect(&url(&server, "/"), Plan::tagged(2)).unwrap();
    let bystander_handle = opened(&events, bystander);

    // The server echoes it, and the client's on_message panics.
    failing_handle.send_text("panic").unwrap();
    let info = closed(&events, failing);
    assert_eq!(info.sent, Some(CloseCode::INTERNAL_ERROR));
    assert_eq!(
        (info.initiator, info.kind),
        (Initiator::Local, CloseKind::Abnormal)
    );
    let seen = server_closed(&server_events, server_side);
    assert_eq!(
        seen.code,
        CloseCode::INTERNAL_ERROR,
        "the server got the 1011"
    );
    assert_eq!(seen.reason, "internal error");

    // A panic in on_connect_failed is caught too.
    let port = closed_port();
    client
        .connect(&format!("ws://127.0.0.1:{port}/"), Plan::tagged(PANIC_TAG))
        .unwrap();
    connect_failed(&events, PANIC_TAG);

    // The worker goes on: the other connection and a new one echo.
    bystander_handle.send_text("still here").unwrap();
    assert_eq!(next_text(&events, bystander), "still here");
    let newcomer = client.connect(&url(&server, "/"), Plan::tagged(3)).unwrap();
    opened(&events, newcomer).send_text("new").unwrap();
    assert_eq!(next_text(&events, newcomer), "new");
    poll_until("both panics counted", || {
        client.stats().total.handler_panics == 2
    });
    client.shutdown(Duration::from_secs(5));
    server.shutdown(Duration::from_secs(5));
}
