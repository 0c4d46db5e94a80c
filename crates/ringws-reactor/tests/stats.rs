//! Worker stats as a user reads them: counters that add up.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use ringws_reactor::{ConnId, Ctx, Handler, Reactor, WorkerStats};

#[test]
fn sockets_refused_by_a_full_worker_count_as_accepted_and_refused() {
    let server = start_with(config(1).max_connections(1), Mode::Echo, false);
    let mut kept = connect(server.addr);
    let conn = server.accepted(&kept);
    // The worker is full: the next sockets are accepted and closed at once.
    for _ in 0..3 {
        let mut refused = connect(server.addr);
        let (received, _) = read_to_end(&mut refused);
        assert!(received.is_empty());
    }
    let stats = server.stats().remove(0);
    assert_eq!((stats.accepted, stats.refused), (4, 3), "{stats:?}");
    // accepted − refused: the connections the handler was given.
    assert_eq!(stats.accepted - stats.refused, 1, "{stats:?}");
    assert_eq!(stats.closed, 0, "refused sockets were never opened");
    write_all(&mut kept, b"still served");
    assert_eq!(read_exact(&mut kept, 12), b"still served");
    drop(kept);
    server.closed(conn);
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = server.stats().remove(0);
        if stats.closed == 1 {
            assert_eq!((stats.accepted, stats.refused), (4, 3), "{stats:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{stats:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.shutdown();
}

/// A handler that refuses every connection and answers stats requests.
struct Refuser;

impl Handler for Refuser {
    type Conn = ();
    type Timer = ();
    type Command = mpsc::Sender<WorkerStats>;

    fn on_accept(&mut self, _ctx: &mut Ctx<'_, Self>, _conn: ConnId) -> Option<()> {
        None
    }

    fn on_data(&mut self, _: &mut Ctx<'_, Self>, _: ConnId, _: &mut (), _: &mut [u8]) -> usize {
        unreachable!("refused connections get no callback")
    }

    fn on_command(&mut self, ctx: &mut Ctx<'_, Self>, reply: mpsc::Sender<WorkerStats>) {
        let _ = reply.send(ctx.io.stats());
    }
}

#[test]
fn sockets_the_handler_refuses_count_as_accepted_and_refused_not_closed() {
    let handle = Reactor::start(config(1), |_| Refuser).expect("reactor starts");
    let addr = handle.local_addr().unwrap();
    for _ in 0..3 {
        let mut refused = connect(addr);
        let (received, _) = read_to_end(&mut refused);
        assert!(received.is_empty());
    }
    let (reply, stats) = mpsc::channel();
    handle.senders()[0].send(reply).unwrap();
    let stats = stats.recv_timeout(WAIT).expect("the worker answers");
    assert_eq!(
        (stats.accepted, stats.refused, stats.closed),
        (3, 3, 0),
        "{stats:?}"
    );
    handle.stop();
    handle.join().expect("workers exit cleanly");
}
