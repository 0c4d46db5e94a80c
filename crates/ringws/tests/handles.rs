//! Sending, closing and terminating from other threads through
//! `ConnHandle`, and `Err(Gone)` once the connection has closed.

mod common;

use common::*;
use ringws::{CloseError, CloseKind, Gone, Initiator, PreparedMessage, SendError};

#[test]
fn handles_send_in_order_from_another_thread() {
    let (server, events) = start(builder());
    let mut client = RawClient::connect(server.local_addr());
    let (id, _, handle) = events.opened_blocking();
    assert_eq!(handle.id(), id);
    assert!(handle.is_open());
    let prepared = PreparedMessage::binary(&[9; 300]);
    std::thread::spawn(move || {
        handle.send_text("from a thread").unwrap();
        handle.send_binary(&[1, 2, 3]).unwrap();
        handle.send_text_owned("owned".to_owned()).unwrap();
        handle.send_binary_owned(vec![7; 70_000]).unwrap();
        handle.send_prepared(&prepared).unwrap();
        handle.ping(b"are you there").unwrap();
        assert_eq!(
            handle.ping(&[0; 126]),
            Err(SendError::ControlPayloadTooLong)
        );
    })
    .join()
    .unwrap();
    let expected: [(u8, Vec<u8>); 6] = [
        (0x1, b"from a thread".to_vec()),
        (0x2, vec![1, 2, 3]),
        (0x1, b"owned".to_vec()),
        (0x2, vec![7; 70_000]),
        (0x2, vec![9; 300]),
        (0x9, b"are you there".to_vec()),
    ];
    for (opcode, payload) in expected {
        let (fin, got_opcode, got) = client.read_frame().unwrap();
        assert!(fin);
        assert_eq!((got_opcode, got.len()), (opcode, payload.len()));
        assert_eq!(got, payload);
    }
    // The Pong reaches on_pong.
    client.write_frame(true, 0xA, b"are you there");
    let payload = events.find_blocking(|event| match event {
        Event::Pong { payload, .. } => Some(payload),
        _ => None,
    });
    assert_eq!(payload, b"are you there");
    assert_eq!(server.stats().total.messages_out, 5);
    drop(client);
    server.shutdown(WAIT);
}

#[test]
fn a_handle_closes_with_code_and_reason_then_reports_gone() {
    let (server, events) = start(builder());
    let mut client = RawClient::connect(server.local_addr());
    let (id, _, handle) = events.opened_blocking();
    let closer = handle.clone();
    std::thread::spawn(move || closer.close(4002, "closed by a handle"))
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(
        client.read_close(),
        close_payload(4002, "closed by a handle")
    );
    client.write_frame(true, 0x8, &close_payload(4002, ""));
    assert!(client.wait_eof());
    drop(client);
    let info = events.closed_blocking(id);
    assert_eq!(info.kind, CloseKind::Clean);
    assert_eq!(info.sent.map(|c| c.0), Some(4002));
    assert!(!handle.is_open());
    assert_eq!(handle.send_text("late"), Err(SendError::Gone));
    assert_eq!(handle.ping(b""), Err(SendError::Gone));
    assert_eq!(handle.close(1000, ""), Err(CloseError::Gone));
    assert_eq!(handle.terminate(), Err(Gone));
    // A handle made from the id says the same.
    let again = server.handle(id).unwrap();
    assert_eq!(again.send_binary(b"x"), Err(SendError::Gone));
    server.shutdown(WAIT);
}

#[test]
fn sends_that_reach_a_closing_connection_are_dropped_and_counted() {
    let (server, events) = start(builder());
    let mut client = RawClient::connect(server.local_addr());
    let (id, _, handle) = events.opened_blocking();
    handle.close(1000, "bye").unwrap();
    assert_eq!(client.read_close(), close_payload(1000, "bye"));
    // Still open to the handle (on_closed has not run), so the calls are
    // queued; the worker drops them, as nothing may follow our Close.
    assert!(handle.is_open());
    assert_eq!(handle.send_text("late"), Ok(()));
    assert_eq!(handle.ping(b"late"), Ok(()));
    let stats = wait_stats(&server, |stats| stats.total.commands_for_gone >= 2);
    assert_eq!(stats.total.commands_for_gone, 2);
    client.write_frame(true, 0x8, &close_payload(1000, ""));
    assert_eq!(client.read_frame(), None, "no frame after the Close");
    drop(client);
    assert_eq!(events.closed_blocking(id).kind, CloseKind::Clean);
    server.shutdown(WAIT);
}

#[test]
fn a_handle_terminates_from_another_thread() {
    let (server, events) = start(builder());
    let mut client = RawClient::connect(server.local_addr());
    let (id, _, handle) = events.opened_blocking();
    std::thread::spawn(move || handle.terminate())
        .join()
        .unwrap()
        .unwrap();
    assert!(client.read_frame().is_none(), "reset without a Close frame");
    let info = events.closed_blocking(id);
    assert_eq!(info.code.0, 1006);
    assert_eq!(info.initiator, Initiator::Local);
    assert_eq!(info.kind, CloseKind::Forced);
    server.shutdown(WAIT);
}

#[test]
fn many_threads_share_handles() {
    let (server, events) = start(builder());
    let mut client = RawClient::connect(server.local_addr());
    let (_, _, handle) = events.opened_blocking();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let handle = handle.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    handle.send_text(&format!("{t}:{i}")).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let mut next = [0usize; 4];
    for _ in 0..100 {
        let (_, opcode, payload) = client.read_frame().unwrap();
        assert_eq!(opcode, 0x1);
        let text = String::from_utf8(payload).unwrap();
        let (t, i) = text.split_once(':').unwrap();
        let t: usize = t.parse().unwrap();
        // Each thread's messages arrive in the order it sent them.
        assert_eq!(i.parse::<usize>().unwrap(), next[t]);
        next[t] += 1;
    }
    assert_eq!(next, [25; 4]);
    drop(client);
    server.shutdown(WAIT);
}

#[test]
fn an_id_of_another_server_names_none_of_this_servers_connections() {
    // One worker each: both first connections get worker 0, slot 0,
    // generation 0, so only the server's identity tells the ids apart.
    let (first, first_events) = start(builder().workers(1));
    let (second, second_events) = start(builder().workers(1));
    let mut first_client = RawClient::connect(first.local_addr());
    let (first_id, _, _) = first_events.opened_blocking();
    let mut second_client = RawClient::connect(second.local_addr());
    let (second_id, _, second_handle) = second_events.opened_blocking();
    assert_ne!(first_id, second_id);
    assert!(second.handle(first_id).is_none());
    assert!(second.control().handle(first_id).is_none());
    let stray = PreparedMessage::text("meant for the first server");
    second.broadcast_to(&stray, [first_id]);
    // A marker sent after the broadcast is the next thing the second
    // server's client reads: nothing stray came before it.
    second_handle.send_text("marker").unwrap();
    let (_, opcode, payload) = second_client.read_frame().unwrap();
    assert_eq!((opcode, payload.as_slice()), (0x1, &b"marker"[..]));
    // The first server's own handle still reaches its connection.
    first.handle(first_id).unwrap().send_text("own").unwrap();
    let (_, _, payload) = first_client.read_frame().unwrap();
    assert_eq!(payload, b"own");
    drop((first_client, second_client));
    first.shutdown(WAIT);
    second.shutdown(WAIT);
}
