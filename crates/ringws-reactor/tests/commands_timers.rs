//! Cross-thread commands and the timer wheel as seen by a handler.

mod common;

use std::thread;
use std::time::Duration;

use common::*;

#[test]
fn commands_from_other_threads_reach_the_right_connection() {
    const CLIENTS: usize = 40;
    let server = start(2, Mode::Echo);
    let mut clients: Vec<_> = (0..CLIENTS).map(|_| connect(server.addr)).collect();
    let conns: Vec<_> = clients
        .iter()
        .map(|client| server.accepted(client))
        .collect();
    let senders = server.handle.senders().to_vec();
    // Several producer threads, each routing to the owning worker's inbox.
    let producers: Vec<_> = (0..4)
        .map(|producer| {
            let senders = senders.clone();
            let targets: Vec<_> = conns
                .iter()
                .enumerate()
                .filter(|(index, _)| index % 4 == producer)
                .map(|(index, conn)| (index, *conn))
                .collect();
            thread::spawn(move || {
                for (index, conn) in targets {
                    let message = format!("message for client {index:03}");
                    senders[conn.worker().index()]
                        .send(Cmd::Send(conn, message.into_bytes()))
                        .expect("worker alive");
                }
            })
        })
        .collect();
    for producer in producers {
        producer.join().unwrap();
    }
    for (index, client) in clients.iter_mut().enumerate() {
        let expected = format!("message for client {index:03}");
        assert_eq!(read_exact(client, expected.len()), expected.as_bytes());
    }
    let stats = server.stats();
    assert!(stats.iter().map(|s| s.commands).sum::<u64>() >= CLIENTS as u64);
    server.shutdown();
}

#[test]
fn a_burst_of_commands_is_delivered_completely() {
    const COMMANDS: usize = 10_000;
    let server = start(1, Mode::Echo);
    let mut client = connect(server.addr);
    let conn = server.accepted(&client);
    let sender = server.handle.sender(conn.worker()).unwrap().clone();
    let producer = thread::spawn(move || {
        for index in 0..COMMANDS {
            sender
                .send(Cmd::Send(conn, (index as u32).to_le_bytes().to_vec()))
                .unwrap();
        }
    });
    let received = read_exact(&mut client, COMMANDS * 4);
    producer.join().unwrap();
    for (index, bytes) in received.chunks(4).enumerate() {
        assert_eq!(bytes, (index as u32).to_le_bytes(), "command {index}");
    }
    server.shutdown();
}

#[test]
fn timers_fire_never_early_and_cancelled_timers_never_fire() {
    let server = start(1, Mode::Echo);
    let delays = [0u64, 1, 2, 5, 13, 30, 60];
    arm_timers_and_cancel_one(&server, &delays);
    let cancelled = server.wait_for(|event| match event {
        Event::TimerCancelled {
            id: CANCELLED_TIMER,
            value_returned,
        } => Some(*value_returned),
        _ => None,
    });
    assert!(cancelled, "cancel returns the value once");

    let fired = timers_fired(&server, delays.len());
    // Timers armed together fire in deadline order (ties aside).
    for pair in delays.windows(2).enumerate() {
        let (index, window) = pair;
        if window[0] + 1 < window[1] {
            assert!(fired[&(index as u64)] <= fired[&(index as u64 + 1)]);
        }
    }
    server.shutdown();
}

#[test]
fn reset_moves_a_timer_earlier() {
    let server = start(1, Mode::Echo);
    server.send(Cmd::ArmAndReset {
        slow: 1,
        reset: 2,
        after: Duration::from_millis(400),
        short: Duration::from_millis(15),
    });
    let first = server.wait_for(|event| match event {
        Event::TimerFired {
            id,
            armed_at,
            after,
            fired_at,
        } => {
            assert!(fired_at.duration_since(*armed_at) >= *after);
            Some(*id)
        }
        _ => None,
    });
    assert_eq!(
        first, 2,
        "the reset timer fires before the one it was armed with"
    );
    let second = server.wait_for(|event| match event {
        Event::TimerFired {
            id,
            armed_at,
            after,
            fired_at,
        } => {
            assert!(fired_at.duration_since(*armed_at) >= *after);
            Some(*id)
        }
        _ => None,
    });
    assert_eq!(second, 1);
    server.shutdown();
}

#[test]
fn timers_too_far_off_to_fire_do_not_disturb_the_worker() {
    let server = start(1, Mode::Echo);
    for (id, after) in [(1, Duration::MAX), (2, Duration::from_secs(u64::MAX / 2))] {
        server.send(Cmd::Arm { id, after });
        server.send(Cmd::ArmAndCancel { id: 10 + id, after });
        let cancelled = server.wait_for(|event| match event {
            Event::TimerCancelled {
                id: i,
                value_returned,
            } if *i == 10 + id => Some(*value_returned),
            _ => None,
        });
        assert!(cancelled, "{after:?}");
    }
    // The worker waits on them (for centuries) and still serves at once.
    server.send(Cmd::Arm {
        id: 3,
        after: Duration::from_millis(5),
    });
    server.wait_for(|event| match event {
        Event::TimerFired { id: 3, .. } => Some(()),
        _ => None,
    });
    let mut client = connect(server.addr);
    write_all(&mut client, b"awake");
    assert_eq!(read_exact(&mut client, 5), b"awake");
    server.shutdown();
}
