//! The ringws client against the ringws server: echo of text and binary
//! messages (1 MiB included) through every send path, handles used from
//! other threads, subprotocols, extra headers and the request target; and
//! masking keys that never repeat across connections.

mod client_common;

use std::collections::HashSet;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use client_common::*;
use ringws::{CloseCode, CloseKind, Initiator, PreparedMessage};

#[test]
fn text_and_binary_echo_through_every_send_path() {
    let (server, server_events) = start_server(|builder| builder);
    let (client, events) = start_client(|builder| builder);
    let big = pattern(1 << 20);

    // From the callback: `send_text` (copied and masked).
    let plan = Plan {
        tag: 1,
        greeting: Greeting::Text("hello from on_open".into()),
    };
    let id = client.connect(&url(&server, "/"), plan).expect("connect");
    let handle = opened(&events, id);
    assert_eq!(next_text(&events, id), "hello from on_open");

    // Through the handle: copied off the worker, masked on it.
    handle.send_text("héllo, wörld").unwrap();
    assert_eq!(next_text(&events, id), "héllo, wörld");
    handle.send_binary(&big).unwrap();
    assert_eq!(
        next_binary(&events, id),
        big,
        "1 MiB binary through a handle"
    );
    handle.send_binary_owned(big[..70_000].to_vec()).unwrap();
    assert_eq!(next_binary(&events, id), &big[..70_000]);
    handle.send_text_owned("owned text".to_owned()).unwrap();
    assert_eq!(next_text(&events, id), "owned text");
    handle.send_binary(b"").unwrap();
    assert_eq!(next_binary(&events, id), b"");

    // A prepared message is re-encoded masked for a client connection.
    handle
        .send_prepared(&PreparedMessage::text("prepared"))
        .unwrap();
    assert_eq!(next_text(&events, id), "prepared");

    // From the callback: `send_binary` (1 MiB) and `send_binary_owned`.
    for (tag, greeting) in [
        (2, Greeting::Binary(big.clone())),
        (3, Greeting::BinaryOwned(big.clone())),
    ] {
        let id = client
            .connect(&url(&server, "/"), Plan { tag, greeting })
            .unwrap();
        opened(&events, id);
        assert_eq!(next_binary(&events, id), big, "1 MiB greeting of {tag}");
        client.handle(id).unwrap().close(1000, "done").unwrap();
        assert_eq!(closed(&events, id).kind, CloseKind::Clean);
    }

    handle.close(1000, "bye").unwrap();
    let info = closed(&events, id);
    assert_eq!(info.code, CloseCode::NORMAL);
    assert_eq!(info.sent, Some(CloseCode::NORMAL));
    assert_eq!(info.initiator, Initiator::Local);
    assert_eq!(info.kind, CloseKind::Clean);

    // The server saw every message whole and closed cleanly, three times.
    let mut clean = 0;
    while clean < 3 {
        if let ServerEvent::Closed { info, .. } =
            server_events.recv_timeout(WAIT).expect("server events")
        {
            assert_eq!(info.kind, CloseKind::Clean);
            clean += 1;
        }
    }
    let stats = client.stats().total;
    assert_eq!(stats.upgraded, 3);
    assert_eq!(stats.messages_in, 9);
    assert_eq!(stats.protocol_errors, 0);
    assert_eq!(server.stats().total.protocol_errors, 0);

    // The io_uring loop's own figures come with the stats: published by the
    // client's worker before it sleeps, so poll briefly for the last turn.
    let deadline = std::time::Instant::now() + WAIT;
    let io = loop {
        let io = client.stats().total.io;
        if io.closed == 3 || std::time::Instant::now() >= deadline {
            break io;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    assert_eq!((io.connected, io.closed), (3, 3));
    assert!(io.bytes_sent > 3 << 20, "three 1 MiB messages: {io:?}");
    assert!(io.bytes_received > 3 << 20, "and their echoes: {io:?}");
    assert_eq!(io.recv_buffers_lent, 0);
    client.shutdown(Duration::from_secs(1));
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn handles_work_from_other_threads() {
    let (server, _server_events) = start_server(|builder| builder);
    let (client, events) = start_client(|builder| builder);
    let id = client.connect(&url(&server, "/"), Plan::tagged(1)).unwrap();
    let handle = opened(&events, id);
    const COUNT: usize = 200;
    let sender = std::thread::spawn(move || {
        for i in 0..COUNT {
            handle.send_text(&format!("message {i}")).unwrap();
        }
        handle
    });
    for i in 0..COUNT {
        assert_eq!(next_text(&events, id), format!("message {i}"), "in order");
    }
    let handle = sender.join().unwrap();
    // Close from yet another thread.
    std::thread::spawn(move || handle.close(4000, "from a thread").unwrap())
        .join()
        .unwrap();
    let info = closed(&events, id);
    assert_eq!(info.sent, Some(CloseCode(4000)));
    assert_eq!(info.kind, CloseKind::Clean);
    client.shutdown(Duration::from_secs(1));
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn connects_from_many_threads_spread_over_the_workers() {
    let (server, _server_events) = start_server(|builder| builder);
    let (client, events) = start_client(|builder| builder);
    let control = client.control();
    let target = url(&server, "/");
    const THREADS: u32 = 4;
    const PER_THREAD: u32 = 10;
    let connectors: Vec<_> = (0..THREADS)
        .map(|thread| {
            let control = control.clone();
            let target = target.clone();
            std::thread::spawn(move || {
                (0..PER_THREAD)
                    .map(|i| {
                        let tag = thread * PER_THREAD + i;
                        let plan = Plan {
                            tag,
                            greeting: Greeting::Text(format!("hi {tag}")),
                        };
                        control.connect(&target, plan).expect("connect")
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let ids: Vec<_> = connectors
        .into_iter()
        .flat_map(|thread| thread.join().unwrap())
        .collect();
    let total = (THREADS * PER_THREAD) as usize;
    assert_eq!(ids.len(), total);
    let mut echoed = 0;
    let mut workers = std::collections::HashSet::new();
    while echoed < total {
        match events.recv_timeout(WAIT).expect("client events") {
            ClientEvent::Text { id, text } => {
                assert!(ids.contains(&id));
                assert!(text.starts_with("hi "));
                workers.insert(id.worker());
                echoed += 1;
            }
            ClientEvent::ConnectFailed { error, .. } => panic!("connect failed: {error}"),
            _ => {}
        }
    }
    assert_eq!(workers.len(), 2, "round-robin uses both workers");
    let stats = client.stats();
    assert_eq!(stats.total.upgraded, total as u64);
    assert!(stats.workers.iter().all(|worker| worker.upgraded > 0));
    let report = client.shutdown(Duration::from_secs(2));
    assert_eq!(report.total, total as u64);
    assert_eq!(report.clean, total as u64, "{report:?}");
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn subprotocols_headers_and_the_request_target_reach_the_server() {
    let (server, server_events) = start_server(|builder| builder.subprotocols(&["v2", "v1"]));
    let (client, events) = start_client(|builder| {
        builder
            .subprotocols(&["v1", "v2"])
            .header("Origin", "https://app.example")
            .header("X-Test", "42")
    });
    let id = client
        .connect(&url(&server, "/chat?room=7"), Plan::tagged(1))
        .unwrap();
    let subprotocol = wait_for(&events, "open", |event| match event {
        ClientEvent::Open { subprotocol, .. } => Some(subprotocol),
        _ => None,
    });
    assert_eq!(subprotocol.as_deref(), Some("v2"), "the server's choice");
    let (_, _, upgrade) = server_opened(&server_events);
    assert_eq!(upgrade.path, "/chat?room=7");
    assert_eq!(upgrade.origin.as_deref(), Some("https://app.example"));
    assert_eq!(upgrade.test_header.as_deref(), Some("42"));
    client.handle(id).unwrap().close(1000, "").unwrap();
    closed(&events, id);
    client.shutdown(Duration::from_secs(1));
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn a_source_address_is_used_for_every_connection() {
    let (server, server_events) = start_server(|builder| builder);
    let (client, events) =
        start_client(|builder| builder.source_addr("127.0.0.2:0".parse().unwrap()));
    let id = client.connect(&url(&server, "/"), Plan::tagged(1)).unwrap();
    opened(&events, id);
    let peer = wait_for(&server_events, "server open", |event| match event {
        ServerEvent::Open { peer, .. } => Some(peer),
        _ => None,
    });
    assert_eq!(
        peer.map(|peer| peer.ip()),
        Some("127.0.0.2".parse().unwrap())
    );
    client.shutdown(Duration::from_secs(1));
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn a_client_connection_paused_from_another_thread_reads_nothing_until_resumed() {
    let (server, _server_events) = start_server(|builder| builder);
    let (client, events) = start_client(|builder| builder);
    let id = client.connect(&url(&server, "/"), Plan::tagged(1)).unwrap();
    let handle = opened(&events, id);
    handle.pause_reading().unwrap();
    for n in 0..100 {
        handle.send_text(&format!("message {n}")).unwrap();
    }
    // The echoes come back while reading is paused: none is delivered.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        events.try_recv().is_err(),
        "nothing is delivered while paused"
    );
    handle.resume_reading().unwrap();
    for n in 0..100 {
        assert_eq!(next_text(&events, id), format!("message {n}"));
    }
    handle.close(1000, "done").unwrap();
    assert_eq!(closed(&events, id).kind, CloseKind::Clean);
}

/// A client frame as read off the wire: its masking key and unmasked payload.
type KeyAndPayload = ([u8; 4], Vec<u8>);

/// A raw server that accepts the upgrade, reads `frames` short binary
/// frames and reports each one's masking key and unmasked payload.
fn key_recording_server(frames: usize) -> (SocketAddr, mpsc::Receiver<Vec<KeyAndPayload>>) {
    let (tx, rx) = mpsc::channel();
    let addr = raw_server(move |mut stream| {
        accept_upgrade(&mut stream);
        let mut seen = Vec::new();
        for _ in 0..frames {
            let mut head = [0u8; 6];
            stream.read_exact(&mut head).expect("a frame header");
            assert_eq!(head[0], 0x82, "a final binary frame");
            assert!(head[1] & 0x80 != 0, "client frames are masked");
            let len = usize::from(head[1] & 0x7F);
            assert!(len <= 125, "a short frame");
            let key = [head[2], head[3], head[4], head[5]];
            let mut payload = vec![0u8; len];
            stream.read_exact(&mut payload).unwrap();
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= key[i % 4];
            }
            seen.push((key, payload));
        }
        let _ = tx.send(seen);
    });
    (addr, rx)
}

#[test]
fn every_connection_masks_with_its_own_fresh_keys() {
    const FRAMES: usize = 16;
    let (client, events) = start_client(|builder| builder);
    let mut keys = HashSet::new();
    for tag in 0..3u8 {
        let (addr, frames) = key_recording_server(FRAMES);
        let id = client
            .connect(&format!("ws://{addr}/"), Plan::tagged(tag.into()))
            .unwrap();
        let handle = opened(&events, id);
        for i in 0..FRAMES as u8 {
            handle.send_binary(&[tag, i, 0xAA, 0x55, 0]).unwrap();
        }
        let frames = frames
            .recv_timeout(WAIT)
            .expect("the server read the frames");
        for (i, (key, payload)) in frames.into_iter().enumerate() {
            assert_eq!(payload, [tag, i as u8, 0xAA, 0x55, 0]);
            // 48 keys drawn at random repeat with probability about 2^-22.
            assert!(keys.insert(key), "key {key:?} repeated");
        }
    }
    client.shutdown(Duration::from_secs(1));
}
