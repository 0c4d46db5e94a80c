//! Host names of connects queued from callbacks are resolved off the
//! worker: a slow lookup holds up no connection of the worker, a failed
//! one reaches `on_connect_failed`, and stopping the client neither waits
//! for a lookup in flight nor leaks its thread or its data. The slow
//! resolver is the client's test hook, held until the test releases it
//! (bounded by [`LOOKUP_BOUND`]). Loopback only.

mod client_common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use client_common::{poll_until, server_opened, start_server, url, wait_for, WAIT};
use ringws::{
    ClientControl, ClientHandle, Conn, ConnHandle, ConnId, ConnectError, Handler, Message,
    ServerHandle,
};

/// The longest a held lookup waits for the test to release it.
const LOOKUP_BOUND: Duration = Duration::from_secs(2);

/// The name of the client's resolver threads.
const RESOLVER_THREAD: &str = "ringws-resolve";

/// Thread counts are per process: the tests of this file run one at a time
/// even under a harness that runs tests on threads of one process.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The resolver threads of this process now.
fn resolver_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim_end() == RESOLVER_THREAD)
        })
        .count()
}

/// A connection's data: its tag, reported when it is dropped.
#[derive(Default)]
struct Dial {
    tag: u32,
    dropped: Option<Sender<u32>>,
}

impl Drop for Dial {
    fn drop(&mut self) {
        if let Some(dropped) = &self.dropped {
            let _ = dropped.send(self.tag);
        }
    }
}

#[derive(Debug)]
enum Event {
    Open {
        tag: u32,
        handle: ConnHandle,
    },
    /// A text message, and whether the held lookup had returned then.
    Text {
        tag: u32,
        text: String,
        lookup_returned: bool,
    },
    /// What `connect_queued` returned in a callback.
    Queued {
        tag: u32,
        result: Result<(), ConnectError>,
    },
    Failed {
        tag: u32,
        id: Option<ConnId>,
        error: ConnectError,
    },
}

/// On the text `dial <tag> <url>` queues a connect from the callback;
/// records everything else.
struct Dialer {
    control: Arc<OnceLock<ClientControl<Dial>>>,
    events: Sender<Event>,
    dropped: Sender<u32>,
    lookup_returned: Arc<AtomicBool>,
}

impl Handler for Dialer {
    type ConnData = Dial;

    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        let _ = self.events.send(Event::Open {
            tag: conn.data().tag,
            handle: conn.handle(),
        });
    }

    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
        let Message::Text(text) = message else { return };
        if let Some(order) = text.strip_prefix("dial ") {
            let (tag, target) = order.split_once(' ').expect("dial <tag> <url>");
            let tag: u32 = tag.parse().expect("a numeric tag");
            let control = self.control.get().expect("set before any dial");
            let dial = Dial {
                tag,
                dropped: Some(self.dropped.clone()),
            };
            let result = control.connect_queued(target, dial);
            let _ = self.events.send(Event::Queued { tag, result });
            return;
        }
        let _ = self.events.send(Event::Text {
            tag: conn.data().tag,
            text: text.to_owned(),
            lookup_returned: self.lookup_returned.load(Ordering::SeqCst),
        });
    }

    fn on_connect_failed(&mut self, id: Option<ConnId>, data: Dial, error: &ConnectError) {
        let _ = self.events.send(Event::Failed {
            tag: data.tag,
            id,
            error: error.clone(),
        });
    }
}

/// The resolver hook's side: names ending in `.held` wait until released
/// (at most [`LOOKUP_BOUND`]) and answer `answer`; `gone.test` fails;
/// `empty.test` has no address.
struct HeldResolver {
    answer: SocketAddr,
    started: Sender<String>,
    release: Mutex<Receiver<()>>,
    returned: Arc<AtomicBool>,
}

impl HeldResolver {
    fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        let _ = self.started.send(host.to_owned());
        match host {
            "gone.test" => Err(std::io::Error::other("no such name")),
            "empty.test" => Ok(Vec::new()),
            _ => {
                let end = Instant::now() + LOOKUP_BOUND;
                let release = self.release.lock().unwrap();
                let _ = release.recv_timeout(end.saturating_duration_since(Instant::now()));
                drop(release);
                self.returned.store(true, Ordering::SeqCst);
                Ok(vec![SocketAddr::new(self.answer.ip(), port)])
            }
        }
    }
}

/// A one-worker client whose lookups go through a [`HeldResolver`].
struct HeldClient {
    client: ClientHandle<Dial>,
    events: Receiver<Event>,
    dropped: Receiver<u32>,
    lookups_started: Receiver<String>,
    release: Sender<()>,
    lookup_returned: Arc<AtomicBool>,
}

/// Starts a [`HeldClient`] whose held lookups answer `answer`'s address; its
/// handlers queue connects through `control` once it is set.
fn start_held_client(
    answer: SocketAddr,
    control: Arc<OnceLock<ClientControl<Dial>>>,
) -> HeldClient {
    let (started_tx, lookups_started) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let lookup_returned = Arc::new(AtomicBool::new(false));
    let resolver = HeldResolver {
        answer,
        started: started_tx,
        release: Mutex::new(release_rx),
        returned: lookup_returned.clone(),
    };
    let (events_tx, events) = mpsc::channel();
    let (dropped_tx, dropped) = mpsc::channel();
    let handler_returned = lookup_returned.clone();
    let client = ringws::Client::builder()
        .workers(1)
        .recv_buffers(64, 16 * 1024)
        .ping_interval(None)
        .resolver(move |host, port| resolver.lookup(host, port))
        .start(move |_| Dialer {
            control: control.clone(),
            events: events_tx.clone(),
            dropped: dropped_tx.clone(),
            lookup_returned: handler_returned.clone(),
        })
        .expect("the client starts");
    HeldClient {
        client,
        events,
        dropped,
        lookups_started,
        release,
        lookup_returned,
    }
}

struct Setup {
    client: ClientHandle<Dial>,
    events: Receiver<Event>,
    dropped: Receiver<u32>,
    lookups_started: Receiver<String>,
    release: Sender<()>,
    lookup_returned: Arc<AtomicBool>,
    /// The first connection, open, and the server's handle to it.
    first_server_side: ConnHandle,
    server_port: u16,
    _server: ringws::ServerHandle,
}

/// A one-worker client with the held resolver and one open connection
/// (tag 1) to a ringws echo server.
fn setup() -> Setup {
    let (server, server_events) = start_server(|builder| builder);
    let server_url = url(&server, "/");
    let control = Arc::new(OnceLock::new());
    let HeldClient {
        client,
        events,
        dropped,
        lookups_started,
        release,
        lookup_returned,
    } = start_held_client(server.local_addr(), control.clone());
    control.set(client.control()).unwrap();
    client
        .connect(
            &server_url,
            Dial {
                tag: 1,
                dropped: None,
            },
        )
        .unwrap();
    opened(&events, 1);
    let (_, first_server_side, _) = server_opened(&server_events);
    Setup {
        client,
        events,
        dropped,
        lookups_started,
        release,
        lookup_returned,
        first_server_side,
        server_port: server.local_addr().port(),
        _server: server,
    }
}

fn opened(events: &Receiver<Event>, tag: u32) -> ConnHandle {
    wait_for(events, "a connection to open", |event| match event {
        Event::Open {
            tag: opened,
            handle,
        } if opened == tag => Some(handle),
        Event::Failed {
            tag: failed, error, ..
        } if failed == tag => {
            panic!("attempt {tag} failed: {error}")
        }
        _ => None,
    })
}

fn queued(events: &Receiver<Event>, tag: u32) -> Result<(), ConnectError> {
    wait_for(events, "connect_queued's result", |event| match event {
        Event::Queued { tag: seen, result } if seen == tag => Some(result),
        _ => None,
    })
}

fn failed(events: &Receiver<Event>, tag: u32) -> (Option<ConnId>, ConnectError) {
    wait_for(events, "on_connect_failed", |event| match event {
        Event::Failed {
            tag: seen,
            id,
            error,
        } if seen == tag => Some((id, error)),
        Event::Open { tag: seen, .. } if seen == tag => panic!("attempt {tag} opened"),
        _ => None,
    })
}

/// Has the first connection's worker dial `target` from a callback.
fn dial_from_callback(setup: &Setup, tag: u32, target: &str) -> Result<(), ConnectError> {
    setup
        .first_server_side
        .send_text(&format!("dial {tag} {target}"))
        .unwrap();
    queued(&setup.events, tag)
}

/// `ws://{host}:{the server's port}/`.
fn held_url(setup: &Setup, host: &str) -> String {
    format!("ws://{host}:{}/", setup.server_port)
}

#[test]
fn a_slow_lookup_from_a_callback_does_not_hold_up_the_worker() {
    let _serial = one_at_a_time();
    let setup = setup();
    let target = held_url(&setup, "slow.held");
    assert_eq!(dial_from_callback(&setup, 2, &target), Ok(()));
    let host = setup
        .lookups_started
        .recv_timeout(WAIT)
        .expect("the lookup starts");
    assert_eq!(host, "slow.held");
    // While the lookup is held, the worker goes on serving the open
    // connection: each message reaches its callback before the lookup
    // returns.
    for round in 0..3 {
        let text = format!("while resolving {round}");
        setup.first_server_side.send_text(&text).unwrap();
        let (seen, lookup_returned) = wait_for(&setup.events, "a message", |event| match event {
            Event::Text {
                tag: 1,
                text,
                lookup_returned,
            } => Some((text, lookup_returned)),
            _ => None,
        });
        assert_eq!(seen, text);
        assert!(
            !lookup_returned,
            "message {round} waited for the lookup: the worker was held up"
        );
    }
    // Released, the lookup's connect goes on to its worker and opens.
    setup.release.send(()).unwrap();
    opened(&setup.events, 2);
    assert!(setup.lookup_returned.load(Ordering::SeqCst));
    setup.client.shutdown(Duration::from_secs(1));
    poll_until("the resolver threads to end", || resolver_threads() == 0);
}

#[test]
fn a_failed_lookup_from_a_callback_reaches_on_connect_failed() {
    let _serial = one_at_a_time();
    let setup = setup();
    for (tag, host, reason) in [
        (2, "gone.test", "no such name"),
        (3, "empty.test", "no addresses"),
    ] {
        let target = held_url(&setup, host);
        assert_eq!(dial_from_callback(&setup, tag, &target), Ok(()), "{host}");
        let (id, error) = failed(&setup.events, tag);
        assert_eq!(id, None, "{host}: no socket was created");
        assert_eq!(
            error,
            ConnectError::Resolve {
                host: host.to_owned(),
                reason: reason.to_owned(),
            }
        );
    }
    // What is wrong with the URL itself is still refused at once.
    assert_eq!(
        dial_from_callback(&setup, 4, "wss://gone.test/"),
        Err(ConnectError::InvalidUrl(
            ringws_proto::handshake::UrlError::TlsNotSupported
        ))
    );
    // Off the workers, resolution stays on the caller's thread and its
    // failure is the call's `Err`, as for `connect`.
    let control = setup.client.control();
    let off_worker = control.connect_queued(
        &held_url(&setup, "gone.test"),
        Dial {
            tag: 5,
            dropped: None,
        },
    );
    assert!(
        matches!(off_worker, Err(ConnectError::Resolve { ref host, .. }) if host == "gone.test"),
        "{off_worker:?}"
    );
    setup.client.shutdown(Duration::from_secs(1));
    poll_until("the resolver threads to end", || resolver_threads() == 0);
}

#[test]
fn stopping_the_client_during_lookups_neither_waits_nor_leaks() {
    let _serial = one_at_a_time();
    let setup = setup();
    // One lookup more than there are resolver threads: four are held in
    // flight, the fifth waits in the queue.
    let tags: Vec<u32> = (2..7).collect();
    for &tag in &tags {
        let target = held_url(&setup, &format!("stuck-{tag}.held"));
        assert_eq!(dial_from_callback(&setup, tag, &target), Ok(()));
    }
    let mut in_flight: Vec<u32> = (0..4)
        .map(|_| {
            let host = setup
                .lookups_started
                .recv_timeout(WAIT)
                .expect("a lookup starts");
            let tag = host
                .strip_prefix("stuck-")
                .and_then(|rest| rest.strip_suffix(".held"));
            tag.and_then(|tag| tag.parse().ok())
                .expect("a dialled host")
        })
        .collect();
    in_flight.sort_unstable();
    let queued: Vec<u32> = tags
        .iter()
        .copied()
        .filter(|tag| !in_flight.contains(tag))
        .collect();
    assert_eq!(queued.len(), 1, "one lookup waits for a thread");
    assert_eq!(resolver_threads(), 4);
    // The shutdown waits for no lookup; the one not started is reported
    // by the worker, which still runs then.
    setup.client.shutdown(Duration::from_secs(1));
    assert!(
        !setup.lookup_returned.load(Ordering::SeqCst),
        "the shutdown waited for a lookup"
    );
    let (id, error) = failed(&setup.events, queued[0]);
    assert_eq!((id, error), (None, ConnectError::Shutdown));
    assert_eq!(setup.dropped.recv_timeout(WAIT), Ok(queued[0]));
    // Once the lookups in flight return, their results and data are
    // dropped (the workers are gone: no callback), and their threads end.
    for _ in &in_flight {
        setup.release.send(()).unwrap();
    }
    let mut dropped: Vec<u32> = in_flight
        .iter()
        .map(|_| {
            setup
                .dropped
                .recv_timeout(WAIT)
                .expect("the data of a lookup in flight is dropped")
        })
        .collect();
    dropped.sort_unstable();
    assert_eq!(dropped, in_flight);
    poll_until("the resolver threads to end", || resolver_threads() == 0);
    while let Ok(event) = setup.events.try_recv() {
        assert!(
            !matches!(event, Event::Open { .. } | Event::Failed { .. }),
            "a callback after the client stopped: {event:?}"
        );
    }
}

#[test]
fn many_lookups_share_a_few_resolver_threads() {
    let _serial = one_at_a_time();
    let setup = setup();
    let attempts = 12u32;
    for tag in 2..2 + attempts {
        let target = held_url(&setup, &format!("many-{tag}.held"));
        assert_eq!(dial_from_callback(&setup, tag, &target), Ok(()));
    }
    setup
        .lookups_started
        .recv_timeout(WAIT)
        .expect("a lookup starts");
    let threads = resolver_threads();
    assert!(
        (1..=4).contains(&threads),
        "{threads} resolver threads for {attempts} held lookups"
    );
    // Each release lets one held lookup return; every attempt then opens.
    for _ in 0..attempts {
        setup.release.send(()).unwrap();
    }
    let mut open: Vec<u32> = Vec::new();
    while open.len() < attempts as usize {
        let tag = wait_for(
            &setup.events,
            "every attempt to open",
            |event| match event {
                Event::Open { tag, .. } => Some(tag),
                Event::Failed { tag, error, .. } => panic!("attempt {tag} failed: {error}"),
                _ => None,
            },
        );
        open.push(tag);
    }
    open.sort_unstable();
    assert_eq!(open, (2..2 + attempts).collect::<Vec<_>>());
    setup.client.shutdown(Duration::from_secs(1));
    poll_until("the resolver threads to end", || resolver_threads() == 0);
}

/// A server whose callback queues a client connect on the text `dial`,
/// then answers `queued`; echoes anything else.
struct DialingServer {
    client: Arc<OnceLock<(ClientControl<Dial>, String)>>,
    dropped: Sender<u32>,
}

impl Handler for DialingServer {
    type ConnData = ();

    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
        let Message::Text(text) = message else { return };
        if text == "dial" {
            let (control, target) = self.client.get().expect("set before any dial");
            let dial = Dial {
                tag: 2,
                dropped: Some(self.dropped.clone()),
            };
            let answer = match control.connect_queued(target, dial) {
                Ok(()) => "queued".to_owned(),
                Err(error) => format!("refused: {error}"),
            };
            let _ = conn.send_text(&answer);
        } else if text == "dial and wait" {
            let (control, target) = self.client.get().expect("set before any dial");
            let answer = match control.connect(target, Dial::default()) {
                Ok(_) => "connected".to_owned(),
                Err(ConnectError::OnWorkerThread) => "refused on a worker".to_owned(),
                Err(error) => format!("failed: {error}"),
            };
            let _ = conn.send_text(&answer);
        } else {
            let _ = conn.send_text(text);
        }
    }
}

/// A server whose callbacks dial through a client with a held resolver,
/// and that client, connected to the server by address.
struct DialingPair {
    server: ServerHandle,
    client: ClientHandle<Dial>,
    events: Receiver<Event>,
    lookups_started: Receiver<String>,
    release: Sender<()>,
    lookup_returned: Arc<AtomicBool>,
    _dropped: (Receiver<u32>, Receiver<u32>),
}

fn dialing_pair() -> DialingPair {
    let for_server = Arc::new(OnceLock::new());
    let (dropped_tx, server_dropped) = mpsc::channel();
    let server_client = for_server.clone();
    let server = ringws::Server::bind("127.0.0.1:0".parse().unwrap())
        .workers(1)
        .recv_buffers(64, 16 * 1024)
        .ping_interval(None)
        .start(move |_| DialingServer {
            client: server_client.clone(),
            dropped: dropped_tx.clone(),
        })
        .expect("the server starts");
    // The client's own handlers never dial: their control stays unset.
    let HeldClient {
        client,
        events,
        dropped: client_dropped,
        lookups_started,
        release,
        lookup_returned,
    } = start_held_client(server.local_addr(), Arc::new(OnceLock::new()));
    let held = format!("ws://server.held:{}/", server.local_addr().port());
    for_server.set((client.control(), held)).unwrap();
    let target = format!("ws://{}/", server.local_addr());
    client.connect(&target, Dial::default()).unwrap();
    DialingPair {
        server,
        client,
        events,
        lookups_started,
        release,
        lookup_returned,
        _dropped: (server_dropped, client_dropped),
    }
}

/// The server's answer to what the client's first connection sent.
fn servers_answer(events: &Receiver<Event>) -> (String, bool) {
    wait_for(events, "the server's answer", |event| match event {
        Event::Text {
            text,
            lookup_returned,
            ..
        } => Some((text, lookup_returned)),
        _ => None,
    })
}

#[test]
fn a_servers_callback_queueing_a_client_connect_does_not_wait_for_the_lookup() {
    let _serial = one_at_a_time();
    let pair = dialing_pair();
    let events = &pair.events;
    let first = opened(events, 0);
    first.send_text("dial").unwrap();
    // The server's worker answers while the lookup is still held.
    let (answer, lookup_returned_then) = servers_answer(events);
    assert_eq!(answer, "queued");
    assert!(
        !lookup_returned_then,
        "the server's worker waited for the client's lookup"
    );
    assert_eq!(
        pair.lookups_started.recv_timeout(WAIT).as_deref(),
        Ok("server.held")
    );
    pair.release.send(()).unwrap();
    opened(events, 2);
    pair.client.shutdown(Duration::from_secs(1));
    pair.server.shutdown(Duration::from_secs(1));
    poll_until("the resolver thread to end", || resolver_threads() == 0);
}

#[test]
fn a_servers_callback_cannot_block_on_a_clients_connect() {
    // `connect` waits for the client's worker (and resolves on the caller's
    // thread): on any engine's worker it is refused at once, before any
    // lookup, instead of holding up every connection of that worker.
    let _serial = one_at_a_time();
    let pair = dialing_pair();
    let first = opened(&pair.events, 0);
    first.send_text("dial and wait").unwrap();
    let (answer, _) = servers_answer(&pair.events);
    assert_eq!(answer, "refused on a worker");
    assert!(!pair.lookup_returned.load(Ordering::SeqCst));
    assert!(
        pair.lookups_started.try_recv().is_err(),
        "no lookup is started for a refused connect"
    );
    // The server's worker is free: it echoes at once.
    first.send_text("still here").unwrap();
    assert_eq!(servers_answer(&pair.events).0, "still here");
    pair.client.shutdown(Duration::from_secs(1));
    pair.server.shutdown(Duration::from_secs(1));
}
