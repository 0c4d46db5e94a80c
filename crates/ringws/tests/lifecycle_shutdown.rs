//! Graceful shutdown at scale: 2,000 tokio-tungstenite clients spread over
//! both workers receive Close 1001 (never a bare 1006) and complete the
//! handshake; 10 raw peers that never answer are forced at the deadline;
//! peers that answer but keep TCP open count as clean; the report's counts
//! are exact and the server is gone shortly after the deadline.

mod common;
mod lifecycle_common;

use std::io::Read;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use lifecycle_common::{poll_until, LIMIT};
use ringws::{CloseKind, DEFAULT_SHUTDOWN_REASON};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const RESPONSIVE: usize = 2_000;
const SILENT: usize = 10;
/// Answer the Close but never close their socket.
const LINGERING: usize = 5;
const DEADLINE: Duration = Duration::from_secs(3);
/// How long after the deadline the workers may take to be gone.
const AFTER_DEADLINE: Duration = Duration::from_secs(2);

/// A client's view of the end: the Close it received (code, reason), or
/// what went wrong.
async fn until_closed(mut client: Client) -> Result<(u16, String), String> {
    let deadline = tokio::time::Instant::now() + LIMIT + DEADLINE;
    let mut close = None;
    loop {
        match tokio::time::timeout_at(deadline, client.next()).await {
            Err(_) => return Err("no end within the limit".to_owned()),
            // Reading on lets tungstenite answer the Close and see the
            // server's FIN.
            Ok(Some(Ok(WsMessage::Close(frame)))) => {
                close = Some(frame.map_or((1005, String::new()), |frame| {
                    (u16::from(frame.code), frame.reason.into_owned())
                }));
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(error))) => {
                return close.ok_or_else(|| format!("error before a Close: {error}"))
            }
            Ok(None) => return close.ok_or_else(|| "EOF without a Close (1006)".to_owned()),
        }
    }
}

#[tokio::test]
async fn shutdown_closes_2000_clients_with_1001_and_forces_the_silent_ones() {
    let (server, events) = start(
        builder()
            .workers(2)
            .ping_interval(None)
            .close_timeout(Duration::from_secs(30)),
    );
    let addr = server.local_addr();

    // The responsive clients, connected 64 at a time, each then waiting
    // for its Close on the test's runtime.
    let clients: Vec<Client> = futures_util::stream::iter(0..RESPONSIVE)
        .map(|_| connect(addr))
        .buffer_unordered(64)
        .collect()
        .await;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| tokio::spawn(until_closed(client)))
        .collect();

    // Silent peers: they never read, so their Close is never answered.
    let silent: Vec<RawClient> = (0..SILENT).map(|_| RawClient::connect(addr)).collect();

    // Lingering peers answer the Close, read the server's FIN, and keep
    // their socket open until the test ends.
    let (release, released) = mpsc::channel::<()>();
    let released = std::sync::Arc::new(std::sync::Mutex::new(released));
    let lingering: Vec<_> = (0..LINGERING)
        .map(|_| {
            let mut client = RawClient::connect(addr);
            let released = released.clone();
            std::thread::spawn(move || {
                let close = client.read_close();
                client.write_frame(true, 0x8, &close);
                let mut rest = Vec::new();
                let _ = client.stream.read_to_end(&mut rest);
                let _ = released.lock().unwrap().recv_timeout(LIMIT + DEADLINE);
                close
            })
        })
        .collect();

    let total = (RESPONSIVE + SILENT + LINGERING) as u64;
    let stats = poll_until(LIMIT, || {
        let stats = server.stats();
        (stats.total.open == total).then_some(stats)
    })
    .expect("every client open");
    assert!(
        stats.workers.iter().all(|worker| worker.open > 0),
        "connections on both workers: {:?}",
        stats.workers.iter().map(|w| w.open).collect::<Vec<_>>()
    );

    let started = Instant::now();
    let shutdown = tokio::task::spawn_blocking(move || server.shutdown(DEADLINE));
    let mut received = 0;
    for task in tasks {
        let (code, reason) = task
            .await
            .unwrap()
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!((code, reason.as_str()), (1001, DEFAULT_SHUTDOWN_REASON));
        received += 1;
    }
    assert_eq!(received, RESPONSIVE);
    let report = tokio::time::timeout(DEADLINE + LIMIT, shutdown)
        .await
        .expect("shutdown returns")
        .unwrap();
    let gone_after = started.elapsed();
    release.send(()).ok();
    drop(release);
    for thread in lingering {
        assert_eq!(
            thread.join().unwrap(),
            close_payload(1001, DEFAULT_SHUTDOWN_REASON)
        );
    }

    eprintln!("{report:?}, workers joined after {gone_after:?}");
    assert_eq!(report.total, total, "{report:?}");
    assert_eq!(report.clean, (RESPONSIVE + LINGERING) as u64, "{report:?}");
    assert_eq!(report.forced, SILENT as u64, "{report:?}");
    assert_eq!(report.abnormal, 0, "{report:?}");
    assert!(report.elapsed >= DEADLINE, "{report:?}");
    assert!(
        gone_after < DEADLINE + AFTER_DEADLINE,
        "workers still running {gone_after:?} after shutdown began"
    );
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "listeners closed"
    );

    // on_closed once per connection, matching the report.
    let mut kinds = [0usize; 3];
    for event in events.rx.try_iter() {
        if let Event::Closed { info, .. } = event {
            assert_eq!(info.sent.map(|c| c.0), Some(1001));
            kinds[match info.kind {
                CloseKind::Clean => 0,
                CloseKind::Forced => 1,
                CloseKind::Abnormal => 2,
            }] += 1;
        }
    }
    assert_eq!(kinds, [RESPONSIVE + LINGERING, SILENT, 0]);

    // The silent peers were reset after the Close sat unread.
    for mut client in silent {
        assert_eq!(
            client.read_close(),
            close_payload(1001, DEFAULT_SHUTDOWN_REASON)
        );
        assert!(client.wait_eof());
    }
}
