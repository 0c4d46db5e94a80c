//! Giving receive-buffer pages back to the kernel never discards bytes a
//! receive has written but the worker has not read yet, including receives
//! whose completions the kernel kept aside because the completion queue was
//! full (CQ overflow).

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use ringws_reactor::{Config, CorePinning};

/// The release check runs while receives sit in the overflow list: a tiny
/// ring (completion queue of 4), four sends completing and eight receives
/// arriving while the worker sleeps just before the check. Every delivered
/// byte must be one the peer sent. (On a host too busy for this timing the
/// overflow may not happen; the test then checks ordinary delivery.)
#[test]
fn released_pages_never_hold_receives_not_yet_read() {
    let period = Duration::from_millis(1000);
    let config = Config::new()
        .workers(1)
        .pinning(CorePinning::Off)
        .listen("127.0.0.1:0".parse().unwrap())
        .ring_entries(1)
        .recv_buffers(64, 32 * 1024)
        .socket_send_buffer(4096)
        .buffer_release_period(Some(period));
    let server = start_with(config, Mode::Echo, true);
    let mut talkers: Vec<_> = (0..8).map(|_| connect(server.addr)).collect();
    let talker_ids: Vec<_> = talkers
        .iter()
        .map(|talker| server.accepted(talker))
        .collect();
    let mut slow: Vec<_> = (0..4)
        .map(|_| connect_small_rcvbuf(server.addr, 4096))
        .collect();
    let started = Instant::now();
    // 4 MiB echoed: the ring's pages become resident.
    let mut bulk = connect(server.addr);
    let mut reader = bulk.try_clone().unwrap();
    let echoed = std::thread::spawn(move || {
        let mut buf = vec![0; 1 << 16];
        let mut total = 0;
        while total < 4 << 20 {
            total += reader.read(&mut buf).unwrap();
        }
    });
    for _ in 0..64 {
        bulk.write_all(&[0x55; 1 << 16]).unwrap();
    }
    echoed.join().unwrap();
    // Peers that do not read keep their echoes' sends in flight.
    for peer in &mut slow {
        peer.write_all(&vec![0x66; 256 << 10]).unwrap();
    }
    std::thread::sleep(Duration::from_millis(30));
    // The check after the traffic re-arms; the one a period later releases.
    let periods = started.elapsed().as_millis() / period.as_millis() + 2;
    let release_at = started + period * u32::try_from(periods).unwrap();
    std::thread::sleep(
        (release_at - Duration::from_millis(150)).saturating_duration_since(Instant::now()),
    );
    server.send(Cmd::Sleep(Duration::from_millis(300)));
    std::thread::sleep(Duration::from_millis(60));
    // While the worker sleeps: the slow peers read (four send completions
    // fill the queue), then every talker sends 100 bytes (their receive
    // completions overflow).
    let mut buf = vec![0; 1 << 20];
    for peer in &mut slow {
        peer.set_nonblocking(true).unwrap();
        while let Ok(1..) = peer.read(&mut buf) {}
    }
    std::thread::sleep(Duration::from_millis(20));
    for talker in &mut talkers {
        talker.write_all(&[0xAB; 100]).unwrap();
    }
    let mut received = 0;
    while received < 8 * 100 {
        let bytes = server.wait_for(|event| match event {
            Event::Data { conn, bytes } if talker_ids.contains(conn) => Some(bytes.clone()),
            _ => None,
        });
        assert!(
            bytes.iter().all(|&byte| byte == 0xAB),
            "delivered bytes the peer never sent: {:?}",
            &bytes[..bytes.len().min(16)]
        );
        received += bytes.len();
    }
    server.shutdown();
}
