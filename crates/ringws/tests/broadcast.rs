//! Broadcast reaches every connection on every worker, encoded once.

mod common;

use std::collections::HashMap;
use std::sync::mpsc;

use common::*;
use ringws::{Conn, ConnId, Handler, Message, PreparedMessage, Server, WorkerId};

/// Opens raw clients until both workers own at least `per_worker`
/// connections (bounded attempts).
fn connect_on_both_workers(
    server: &ringws::ServerHandle,
    events: &Events,
    per_worker: usize,
) -> Vec<(ConnId, WorkerId, RawClient)> {
    let mut clients = Vec::new();
    let mut counts: HashMap<WorkerId, usize> = HashMap::new();
    for _ in 0..64 {
        let client = RawClient::connect(server.local_addr());
        let (id, worker, _) = events.opened_blocking();
        *counts.entry(worker).or_default() += 1;
        clients.push((id, worker, client));
        if counts.len() == 2 && counts.values().all(|&n| n >= per_worker) {
            return clients;
        }
    }
    panic!("connections did not spread over both workers: {counts:?}");
}

#[test]
fn broadcast_reaches_every_connection_on_both_workers() {
    let (server, events) = start(builder().workers(2));
    let mut clients = connect_on_both_workers(&server, &events, 2);
    let message = PreparedMessage::text("hello everyone");
    assert_eq!(server.broadcast(&message), 2, "queued to both workers");
    for (_, _, client) in clients.iter_mut() {
        let (_, opcode, payload) = client.read_frame().unwrap();
        assert_eq!((opcode, payload.as_slice()), (0x1, &b"hello everyone"[..]));
    }
    let stats = server.stats();
    assert_eq!(stats.total.messages_out, clients.len() as u64);
    assert!(stats.workers.iter().all(|worker| worker.messages_out >= 2));
    drop(clients);
    server.shutdown(WAIT);
}

#[test]
fn broadcast_to_reaches_only_the_listed_connections() {
    let (server, events) = start(builder().workers(2));
    let mut clients = connect_on_both_workers(&server, &events, 2);
    // One listed connection per worker, plus a stale id that is skipped.
    let mut listed = Vec::new();
    for worker_index in 0..2 {
        let (id, _, _) = clients
            .iter()
            .find(|(_, worker, _)| worker.index() == worker_index)
            .unwrap();
        listed.push(*id);
    }
    let stale = {
        let mut extra = RawClient::connect(server.local_addr());
        let (id, _, _) = events.opened_blocking();
        extra.write_frame(true, 0x1, b"terminate");
        events.closed_blocking(id);
        id
    };
    listed.push(stale);
    server.broadcast_to(
        &PreparedMessage::binary(b"only some"),
        listed.iter().copied(),
    );
    server.broadcast(&PreparedMessage::text("marker"));
    for (id, _, client) in clients.iter_mut() {
        let (_, opcode, payload) = client.read_frame().unwrap();
        if listed.contains(id) {
            assert_eq!((opcode, payload.as_slice()), (0x2, &b"only some"[..]));
            let (_, _, payload) = client.read_frame().unwrap();
            assert_eq!(payload, b"marker");
        } else {
            assert_eq!((opcode, payload.as_slice()), (0x1, &b"marker"[..]));
        }
    }
    let stats = wait_stats(&server, |stats| stats.total.commands_for_gone >= 1);
    assert_eq!(stats.total.commands_for_gone, 1);
    drop(clients);
    server.shutdown(WAIT);
}

/// Re-broadcasts every text message to everyone (a chat room).
struct Chat {
    opened: mpsc::Sender<WorkerId>,
}

impl Handler for Chat {
    type ConnData = ();

    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        let _ = self.opened.send(conn.worker());
    }

    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
        if let Message::Text(text) = message {
            conn.broadcast(&PreparedMessage::text(text));
        }
    }
}

#[test]
fn a_handler_broadcasts_from_its_callback_across_workers() {
    let (tx, opened) = mpsc::channel();
    let server = Server::bind("127.0.0.1:0".parse().unwrap())
        .workers(2)
        .pinning(ringws::Pinning::Off)
        .start(move |_| Chat { opened: tx.clone() })
        .unwrap();
    let mut clients = Vec::new();
    let mut workers = std::collections::HashSet::new();
    for _ in 0..64 {
        clients.push(RawClient::connect(server.local_addr()));
        workers.insert(opened.recv_timeout(WAIT).unwrap());
        if workers.len() == 2 && clients.len() >= 3 {
            break;
        }
    }
    assert_eq!(workers.len(), 2, "connections on both workers");
    clients[0].write_frame(true, 0x1, b"hi all");
    for client in clients.iter_mut() {
        let (_, opcode, payload) = client.read_frame().unwrap();
        assert_eq!((opcode, payload.as_slice()), (0x1, &b"hi all"[..]));
    }
    drop(clients);
    server.shutdown(WAIT);
}

#[test]
fn broadcast_to_a_closing_connection_is_dropped_and_counted_like_a_handles_send() {
    let (server, events) = start(builder().workers(2));
    let mut closing = RawClient::connect(server.local_addr());
    let (closing_id, _, closing_handle) = events.opened_blocking();
    let mut open = RawClient::connect(server.local_addr());
    let (open_id, _, _) = events.opened_blocking();
    // Our Close is out and the peer has not answered: the connection is
    // closing, still open to handles, and may carry no more data.
    closing_handle.close(4000, "closing").unwrap();
    assert_eq!(closing.read_close(), close_payload(4000, "closing"));
    assert!(closing_handle.is_open());
    let before = server.stats().total;
    server.broadcast_to(&PreparedMessage::text("listed"), [closing_id, open_id]);
    let (_, _, payload) = open.read_frame().unwrap();
    assert_eq!(payload, b"listed");
    // Each listed connection is accounted for: queued, or dropped and
    // counted, as a send through its handle would be.
    let stats = wait_stats(&server, |stats| {
        stats.total.commands_for_gone > before.commands_for_gone
    });
    assert_eq!(stats.total.messages_out, before.messages_out + 1);
    assert_eq!(stats.total.commands_for_gone, before.commands_for_gone + 1);
    assert_eq!(stats.total.dropped_messages, 0);
    closing.write_frame(true, 0x8, &close_payload(4000, ""));
    assert_eq!(closing.read_frame(), None, "no frame after the Close");
    drop((closing, open));
    server.shutdown(WAIT);
}

/// Broadcasts each text message, with direct sends before and after it.
struct Announce;

impl Handler for Announce {
    type ConnData = ();

    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
        if let Message::Text(text) = message {
            conn.send_text("before").unwrap();
            conn.broadcast(&PreparedMessage::text(text));
            conn.send_text("after").unwrap();
        }
    }
}

#[test]
fn a_callbacks_broadcast_reaches_its_own_connection_after_its_direct_sends() {
    let server = builder().workers(2).start(|_| Announce).unwrap();
    let mut speaker = RawClient::connect(server.local_addr());
    let mut listener = RawClient::connect(server.local_addr());
    speaker.write_frame(true, 0x1, b"news");
    let texts: Vec<Vec<u8>> = (0..3).map(|_| speaker.read_frame().unwrap().2).collect();
    assert_eq!(texts, [&b"before"[..], b"after", b"news"]);
    assert_eq!(listener.read_frame().unwrap().2, b"news");
    let stats = wait_stats(&server, |stats| stats.total.messages_out == 4);
    assert_eq!(stats.total.dropped_messages, 0);
    drop((speaker, listener));
    server.shutdown(WAIT);
}
