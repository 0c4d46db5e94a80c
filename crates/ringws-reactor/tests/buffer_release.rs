//! Giving receive-buffer pages back to the kernel never discards bytes a
//! receive has written but the worker has not read yet, including receives
//! whose completions the kernel kept aside because the completion queue was
//! full (CQ overflow).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ringws_reactor::{CloseCause, Config, ConnId, CorePinning, Ctx, Handler, Reactor, TimerKey};

/// Echoes, reports every delivery, and sleeps on command (keeping the
/// worker out of `io_uring_enter` while completions pile up).
struct EchoReporting(mpsc::Sender<Vec<u8>>);

impl Handler for EchoReporting {
    type Conn = ();
    type Timer = ();
    type Command = u64;
    fn on_accept(&mut self, _: &mut Ctx<'_, Self>, _: ConnId) -> Option<()> {
        Some(())
    }
    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        conn: ConnId,
        _: &mut (),
        data: &mut [u8],
    ) -> usize {
        let _ = self.0.send(data.to_vec());
        let _ = ctx.io.send(conn, data.to_vec());
        data.len()
    }
    fn on_closed(&mut self, _: &mut Ctx<'_, Self>, _: ConnId, _: (), _: CloseCause) {}
    fn on_timer(&mut self, _: &mut Ctx<'_, Self>, _: TimerKey, _: ()) {}
    fn on_command(&mut self, _: &mut Ctx<'_, Self>, millis: u64) {
        std::thread::sleep(Duration::from_millis(millis));
    }
}

fn connect(addr: SocketAddr, receive_buffer: Option<usize>) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if let Some(bytes) = receive_buffer {
        socket.set_recv_buffer_size(bytes).unwrap();
    }
    socket.connect(&addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_nodelay(true).unwrap();
    stream
}

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
    let (delivered_tx, delivered) = mpsc::channel();
    let handle = Reactor::start(config, move |_| EchoReporting(delivered_tx.clone())).unwrap();
    let addr = handle.local_addr().unwrap();
    let mut talkers: Vec<_> = (0..8).map(|_| connect(addr, None)).collect();
    let mut slow: Vec<_> = (0..4).map(|_| connect(addr, Some(4096))).collect();
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    // 4 MiB echoed: the ring's pages become resident.
    let mut bulk = connect(addr, None);
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
    while delivered.try_recv().is_ok() {}
    // The check after the traffic re-arms; the one a period later releases.
    let periods = started.elapsed().as_millis() / period.as_millis() + 2;
    let release_at = started + period * u32::try_from(periods).unwrap();
    std::thread::sleep(
        (release_at - Duration::from_millis(150)).saturating_duration_since(Instant::now()),
    );
    handle.senders()[0].send(300).unwrap();
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
        let bytes = delivered
            .recv_timeout(Duration::from_secs(5))
            .expect("every talker's bytes are delivered");
        assert!(
            bytes.iter().all(|&byte| byte == 0xAB),
            "delivered bytes the peer never sent: {:?}",
            &bytes[..bytes.len().min(16)]
        );
        received += bytes.len();
    }
    handle.stop();
    handle.join().unwrap();
}
