//! `Handler::on_send_refused`: a message sent to a connection from elsewhere
//! (a `ConnHandle`, a broadcast) and refused at the send queue's limit is
//! reported on the owning worker, once per full-queue episode; `on_drain`
//! ends the episode. Sends made in the connection's own callbacks return
//! the error instead. A relay pauses its upstream on the signal and resumes
//! it on `on_drain`. Loopback only, every wait and loop bounded.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{builder, poll_until, RawClient, WAIT};
use ringws::{
    Backpressure, Client, CloseCode, ClosedInfo, Conn, ConnHandle, ConnId, Handler, Message,
    PreparedMessage, Request, SendError, Server, ServerBuilder, ServerHandle,
};

/// The send queue's limit in these tests.
const LIMIT: usize = 64 * 1024;
/// Payload size of the messages that fill it.
const MESSAGE: usize = 4096;
/// Most messages any feed loop sends (32 MiB): far beyond what the limit and
/// the kernel's buffers of a peer that does not read can hold.
const MAX_FEED: u32 = 8192;

/// A payload of `size` bytes starting with `n`.
fn numbered(n: u32, size: usize) -> Vec<u8> {
    let mut payload = vec![(n % 251) as u8; size];
    payload[..4].copy_from_slice(&n.to_be_bytes());
    payload
}

fn number_of(payload: &[u8]) -> u32 {
    u32::from_be_bytes(payload[..4].try_into().unwrap())
}

// ----- a server that records what its callbacks see -----

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Refused {
        id: ConnId,
        /// The connection's data (its request path).
        path: String,
        queued: usize,
    },
    Drain(ConnId),
    /// A send made inside `on_message` was refused.
    OwnSendRefused(SendError),
    Closed(ClosedInfo),
}

#[derive(Default)]
struct Log {
    seen: Mutex<Vec<Seen>>,
    handle: Mutex<Option<ConnHandle>>,
}

impl Log {
    fn push(&self, seen: Seen) {
        self.seen.lock().unwrap().push(seen);
    }

    fn count(&self, pick: impl Fn(&Seen) -> bool) -> usize {
        self.seen.lock().unwrap().iter().filter(|s| pick(s)).count()
    }

    fn refusals(&self) -> usize {
        self.count(|seen| matches!(seen, Seen::Refused { .. }))
    }

    fn drains(&self) -> usize {
        self.count(|seen| matches!(seen, Seen::Drain(_)))
    }

    fn handle(&self) -> ConnHandle {
        poll_until("the connection's handle", || {
            self.handle.lock().unwrap().is_some()
        });
        self.handle.lock().unwrap().clone().unwrap()
    }
}

struct Watch {
    log: Arc<Log>,
}

impl Handler for Watch {
    type ConnData = String;

    fn on_upgrade(&mut self, request: &Request<'_>, path: &mut String) -> Result<(), u16> {
        *path = request.path().to_owned();
        Ok(())
    }

    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        *self.log.handle.lock().unwrap() = Some(conn.handle());
    }

    /// `flood <count>`: sends `count` messages from this callback, stopping
    /// at the first refusal.
    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
        let Message::Text(text) = message else {
            return;
        };
        let count: u32 = text.strip_prefix("flood ").unwrap().parse().unwrap();
        for n in 0..count {
            if let Err(error) = conn.send_binary(&numbered(n, MESSAGE)) {
                self.log.push(Seen::OwnSendRefused(error));
                return;
            }
        }
    }

    fn on_send_refused(&mut self, conn: &mut Conn<'_, Self>) {
        self.log.push(Seen::Refused {
            id: conn.id(),
            path: conn.data().clone(),
            queued: conn.queued_bytes(),
        });
    }

    fn on_drain(&mut self, conn: &mut Conn<'_, Self>) {
        self.log.push(Seen::Drain(conn.id()));
    }

    fn on_closed(&mut self, _id: ConnId, _path: String, info: &ClosedInfo) {
        self.log.push(Seen::Closed(info.clone()));
    }
}

/// A small kernel send buffer, so that the queue fills after a few hundred
/// KiB a peer does not read.
fn limited(policy: Backpressure) -> ServerBuilder {
    builder()
        .ping_interval(None)
        .max_queued_bytes(LIMIT)
        .socket_send_buffer(16 * 1024)
        .backpressure(policy)
}

fn start_watch(builder: ServerBuilder) -> (ServerHandle, Arc<Log>) {
    let log = Arc::new(Log::default());
    let for_workers = log.clone();
    let server = builder
        .start(move |_| Watch {
            log: for_workers.clone(),
        })
        .expect("server starts");
    (server, log)
}

/// Calls `send(n)` for n = `next`, `next + 1`, ... until `done` holds;
/// returns the next number.
fn feed_until(mut next: u32, done: impl Fn() -> bool, send: impl Fn(u32)) -> u32 {
    let end = Instant::now() + WAIT;
    while !done() {
        assert!(
            next < MAX_FEED && Instant::now() < end,
            "condition not met after {next} messages"
        );
        for _ in 0..8 {
            send(next);
            next += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    next
}

/// [`feed_until`] `log` shows `refusals` refusals.
fn feed_until_refused(log: &Log, next: u32, refusals: usize, send: impl Fn(u32)) -> u32 {
    feed_until(next, || log.refusals() >= refusals, send)
}

/// Checks that `log` holds refusals and drains only, no two refusals
/// without a drain between them (once per episode); returns the count of
/// refusals and drains.
fn episodes(log: &Log) -> (usize, usize) {
    let seen = log.seen.lock().unwrap();
    let mut episode_open = false;
    for seen in seen.iter() {
        match seen {
            Seen::Refused { .. } => {
                assert!(!episode_open, "a second signal in one episode: {seen:?}");
                episode_open = true;
            }
            Seen::Drain(_) => episode_open = false,
            other => panic!("unexpected {other:?}"),
        }
    }
    drop(seen);
    (log.refusals(), log.drains())
}

/// Waits until the worker has admitted or refused every one of `sent`
/// messages; returns how many it admitted.
fn settled(server: &ServerHandle, sent: u32) -> u64 {
    let stats = common::wait_stats(server, |stats| {
        stats.total.messages_out + stats.total.dropped_messages == u64::from(sent)
    });
    stats.total.messages_out
}

/// Reads `count` messages: numbered ones, in increasing order (refused ones
/// leave gaps). Returns the last number read.
fn read_numbered(client: &mut RawClient, count: u64, after: Option<u32>) -> Option<u32> {
    let mut last = after;
    for _ in 0..count {
        let (_, opcode, payload) = client.read_frame().expect("an admitted message");
        assert_eq!((opcode, payload.len()), (0x2, MESSAGE));
        let n = number_of(&payload);
        assert!(last.is_none_or(|last| n > last), "{n} after {last:?}");
        last = Some(n);
    }
    last
}

/// Episodes through a handle: the callback fires once for each, however
/// many messages each refuses, with the connection's id and data and its
/// queue at the limit; `on_drain` ends each, and the next refusal fires it
/// again.
fn episodes_through_a_handle(policy: Backpressure) {
    let (server, log) = start_watch(limited(policy));
    let mut client =
        RawClient::connect_with(server.local_addr(), &common::upgrade_request("/feed-7", ""));
    let handle = log.handle();
    let send = |n| handle.send_binary(&numbered(n, MESSAGE)).unwrap();
    let dropped = || server.stats().total.dropped_messages;

    // The peer reads nothing: the kernel's buffers fill, then the queue,
    // then at least 64 messages are refused.
    let mut next = feed_until(0, || dropped() >= 64, send);
    let admitted = settled(&server, next);
    let (refusals, drains) = episodes(&log);
    assert_eq!(refusals, drains + 1, "the last episode is still on");
    assert!(
        dropped() > 8 * refusals as u64,
        "several refusals per signal: {} for {refusals}",
        dropped()
    );
    match &log.seen.lock().unwrap()[0] {
        Seen::Refused { id, path, queued } => {
            assert_eq!(*id, handle.id());
            assert_eq!(path, "/feed-7");
            assert!(*queued >= LIMIT, "{queued}");
        }
        other => panic!("expected a refusal first, saw {other:?}"),
    }

    // The peer reads everything admitted: the queue drains and on_drain
    // ends the episode.
    let last = read_numbered(&mut client, admitted, None);
    poll_until("on_drain", || log.drains() == refusals);

    // A new episode fires the callback once again.
    let dropped_before = dropped();
    next = feed_until_refused(&log, next, refusals + 1, send);
    next = feed_until(next, || dropped() >= dropped_before + 64, send);
    let admitted_total = settled(&server, next);
    let (refusals_after, drains_after) = episodes(&log);
    assert!(refusals_after > refusals);
    assert_eq!(refusals_after, drains_after + 1);
    if let Some(Seen::Refused { queued, .. }) = log.seen.lock().unwrap().last() {
        assert!(*queued >= LIMIT, "{queued}");
    }

    // Everything admitted arrives in order; that episode drains too.
    read_numbered(&mut client, admitted_total - admitted, last);
    poll_until("the last on_drain", || log.drains() == refusals_after);
    episodes(&log);
    drop(client);
    server.shutdown(WAIT);
}

#[test]
fn drop_message_signals_a_refused_handle_send_once_per_episode() {
    episodes_through_a_handle(Backpressure::DropMessage);
}

#[test]
fn pause_reading_signals_a_refused_handle_send_once_per_episode() {
    episodes_through_a_handle(Backpressure::PauseReading);
}

#[test]
fn a_broadcast_refused_at_the_limit_fires_the_signal() {
    let (server, log) = start_watch(limited(Backpressure::DropMessage));
    let mut client = RawClient::connect(server.local_addr());
    let id = log.handle().id();

    // To every connection.
    let mut next = feed_until_refused(&log, 0, 1, |n| {
        server.broadcast(&PreparedMessage::binary(&numbered(n, MESSAGE)));
    });
    let admitted = settled(&server, next);
    let (refusals, _) = episodes(&log);
    let last = read_numbered(&mut client, admitted, None);
    poll_until("on_drain", || log.drains() == refusals);

    // To a list of connections.
    next = feed_until_refused(&log, next, refusals + 1, |n| {
        server.broadcast_to(&PreparedMessage::binary(&numbered(n, MESSAGE)), [id]);
    });
    let admitted_total = settled(&server, next);
    let (refusals_after, _) = episodes(&log);
    for seen in log.seen.lock().unwrap().iter() {
        if let Seen::Refused { id: refused, .. } = seen {
            assert_eq!(*refused, id);
        }
    }
    read_numbered(&mut client, admitted_total - admitted, last);
    poll_until("the last on_drain", || log.drains() == refusals_after);
    episodes(&log);
    drop(client);
    server.shutdown(WAIT);
}

#[test]
fn sends_in_callbacks_and_pings_through_a_handle_do_not_fire_the_signal() {
    let (server, log) = start_watch(limited(Backpressure::DropMessage));
    let mut client = RawClient::connect(server.local_addr());
    let handle = log.handle();

    // Twenty floods from on_message (each refused at the limit, its caller
    // told) fill the kernel's buffers too: the queue stays at the limit.
    for round in 1..=20 {
        client.write_frame(true, 0x1, b"flood 1000");
        poll_until("the flood's refusal", || {
            log.count(|seen| matches!(seen, Seen::OwnSendRefused(_))) == round
        });
    }
    assert!(log.seen.lock().unwrap().iter().all(|seen| matches!(
        seen,
        Seen::OwnSendRefused(SendError::Dropped) | Seen::Drain(_)
    )));
    let dropped = server.stats().total.dropped_messages;
    assert_eq!(dropped, 20);

    // Pings through the handle are refused (counted) without the signal.
    for _ in 0..4 {
        handle.ping(b"p").unwrap();
    }
    common::wait_stats(&server, |stats| stats.total.dropped_messages == dropped + 4);
    assert_eq!(log.refusals(), 0);

    // A message through the handle does fire it.
    handle.send_binary(b"from elsewhere").unwrap();
    poll_until("the signal", || log.refusals() == 1);
    assert_eq!(server.stats().total.dropped_messages, dropped + 5);
    drop(client);
    server.shutdown(WAIT);
}

#[test]
fn the_close_policy_closes_instead_of_signalling() {
    let (server, log) = start_watch(limited(Backpressure::Close(CloseCode::TRY_AGAIN_LATER)));
    let client = RawClient::connect(server.local_addr());
    let handle = log.handle();
    let mut n = 0;
    let end = Instant::now() + WAIT;
    while server.stats().total.backpressure_closes == 0 {
        assert!(n < MAX_FEED && Instant::now() < end, "still open after {n}");
        let _ = handle.send_binary(&numbered(n, MESSAGE));
        n += 1;
        std::thread::sleep(Duration::from_micros(250));
    }
    // The Close waits behind the queue the peer does not read: the peer
    // leaving ends the connection.
    drop(client);
    let closed = |seen: &Seen| matches!(seen, Seen::Closed(_));
    poll_until("on_closed", || log.count(closed) == 1);
    assert_eq!(log.refusals(), 0);
    let seen = log.seen.lock().unwrap().clone();
    let Some(Seen::Closed(info)) = seen.iter().find(|seen| closed(seen)) else {
        unreachable!()
    };
    assert_eq!(info.sent, Some(CloseCode::TRY_AGAIN_LATER));
    assert_eq!(server.stats().total.backpressure_closes, 1);
    server.shutdown(WAIT);
}

// ----- a relay: origin → relay client → relay server → slow reader -----

/// Number of messages the origin sends, and their size: 4 MiB in all.
const RELAYED: u32 = 2048;
const RELAYED_SIZE: usize = 2048;

/// The relay's two connections of one stream and what they did.
#[derive(Default)]
struct Relay {
    upstream: Mutex<Option<ConnHandle>>,
    downstream: Mutex<Option<ConnHandle>>,
    forwarded: AtomicU32,
    pauses: AtomicU32,
    resumes: AtomicU32,
    /// Signals while this relay's upstream was already paused (none).
    repeated_signals: AtomicU32,
}

impl Relay {
    fn handle(slot: &Mutex<Option<ConnHandle>>) -> ConnHandle {
        poll_until("a relay connection", || slot.lock().unwrap().is_some());
        slot.lock().unwrap().clone().unwrap()
    }
}

/// The origin: `flood <count> <size>` answers with `count` numbered
/// messages (its queue limit holds them all).
struct Origin;

impl Handler for Origin {
    type ConnData = ();

    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
        let Message::Text(text) = message else {
            return;
        };
        let mut words = text.strip_prefix("flood ").unwrap().split(' ');
        let count: u32 = words.next().unwrap().parse().unwrap();
        let size: usize = words.next().unwrap().parse().unwrap();
        for n in 0..count {
            conn.send_binary(&numbered(n, size)).unwrap();
        }
    }
}

/// The relay's client side: forwards what the origin sends downstream.
struct Upstream {
    relay: Arc<Relay>,
}

impl Handler for Upstream {
    type ConnData = ();

    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        *self.relay.upstream.lock().unwrap() = Some(conn.handle());
    }

    fn on_message(&mut self, _conn: &mut Conn<'_, Self>, message: Message<'_>) {
        let downstream = self.relay.downstream.lock().unwrap().clone().unwrap();
        downstream.send_binary(message.as_bytes()).unwrap();
        self.relay.forwarded.fetch_add(1, Ordering::SeqCst);
    }
}

/// The relay's server side: pauses the upstream when a forwarded message is
/// refused, resumes it once the queue drained. `ConnData`: whether this
/// connection paused its upstream.
struct Downstream {
    relay: Arc<Relay>,
}

impl Handler for Downstream {
    type ConnData = bool;

    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        *self.relay.downstream.lock().unwrap() = Some(conn.handle());
    }

    fn on_message(&mut self, _conn: &mut Conn<'_, Self>, _message: Message<'_>) {}

    fn on_send_refused(&mut self, conn: &mut Conn<'_, Self>) {
        if *conn.data() {
            self.relay.repeated_signals.fetch_add(1, Ordering::SeqCst);
        }
        let upstream = self.relay.upstream.lock().unwrap().clone().unwrap();
        upstream.pause_reading().unwrap();
        *conn.data_mut() = true;
        self.relay.pauses.fetch_add(1, Ordering::SeqCst);
    }

    fn on_drain(&mut self, conn: &mut Conn<'_, Self>) {
        if std::mem::take(conn.data_mut()) {
            let upstream = self.relay.upstream.lock().unwrap().clone().unwrap();
            upstream.resume_reading().unwrap();
            self.relay.resumes.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The upstream is paused on every signal and resumed on every drain; each
/// message the origin sent reaches the reader in order or is counted
/// refused.
#[test]
fn a_relay_pauses_its_upstream_while_the_downstream_refuses() {
    let origin = Server::bind("127.0.0.1:0".parse().unwrap())
        .workers(1)
        .ping_interval(None)
        .max_queued_bytes(64 << 20)
        .start(|_| Origin)
        .expect("the origin starts");
    let relay = Arc::new(Relay::default());
    let for_server = relay.clone();
    let relay_server = limited(Backpressure::DropMessage)
        .start(move |_| Downstream {
            relay: for_server.clone(),
        })
        .expect("the relay's server starts");
    let for_client = relay.clone();
    let relay_client = Client::builder()
        .workers(1)
        .ping_interval(None)
        .start(move |_| Upstream {
            relay: for_client.clone(),
        })
        .expect("the relay's client starts");

    let mut reader = RawClient::connect(relay_server.local_addr());
    Relay::handle(&relay.downstream);
    relay_client
        .connect(&format!("ws://{}/", origin.local_addr()), ())
        .unwrap();
    let upstream = Relay::handle(&relay.upstream);
    upstream
        .send_text(&format!("flood {RELAYED} {RELAYED_SIZE}"))
        .unwrap();

    // The reader stalls until the downstream refuses and the upstream is
    // paused, then reads everything, with short breaks.
    poll_until("the first pause", || {
        relay.pauses.load(Ordering::SeqCst) >= 1
    });
    let mut received: Vec<u32> = Vec::new();
    let end = Instant::now() + WAIT;
    loop {
        let stats = relay_server.stats().total;
        let all_settled = relay.forwarded.load(Ordering::SeqCst) == RELAYED
            && stats.messages_out + stats.dropped_messages == u64::from(RELAYED);
        if all_settled && received.len() as u64 == stats.messages_out {
            break;
        }
        assert!(Instant::now() < end, "relay stuck: {stats:#?}");
        if received.len() as u64 >= stats.messages_out {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let (_, opcode, payload) = reader.read_frame().expect("a relayed message");
        assert_eq!((opcode, payload.len()), (0x2, RELAYED_SIZE));
        received.push(number_of(&payload));
        if received.len().is_multiple_of(64) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    poll_until("the last resume", || {
        relay.resumes.load(Ordering::SeqCst) == relay.pauses.load(Ordering::SeqCst)
    });

    // Each signal paused the upstream and each drain resumed it; every
    // message crossed the relay, and reached the reader in order unless
    // refused (and counted) at the downstream's limit. Messages already on
    // their way when the pause lands are refused: the signal reports loss,
    // it does not prevent it.
    let dropped = relay_server.stats().total.dropped_messages;
    assert!(relay.pauses.load(Ordering::SeqCst) >= 1);
    assert_eq!(relay.repeated_signals.load(Ordering::SeqCst), 0);
    assert!(received.windows(2).all(|pair| pair[0] < pair[1]));
    assert_eq!(received.len() as u64 + dropped, u64::from(RELAYED));
    drop(reader);
    relay_client.shutdown(WAIT);
    relay_server.shutdown(WAIT);
    origin.shutdown(WAIT);
}
