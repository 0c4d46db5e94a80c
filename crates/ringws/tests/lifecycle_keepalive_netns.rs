//! Keepalive on a dead network. The test builds its own network: two network
//! namespaces joined by a veth pair with a private /30 in 10.213.0.0/16, one
//! end for the server (whose threads join the server namespace), the other
//! for a Python `websockets` client. Nothing is added to the machine's own
//! namespace, and no packet can leave the pair. Once the client has answered a keepalive Ping, the
//! namespace end of the link goes down: from then on every packet is
//! silently dropped, as when a peer's network vanishes. The server must
//! send Close 1011, give up on it after the close timeout and be rid of the
//! connection within `ping_interval + pong_timeout + close_timeout` (plus a
//! tick and some slack), even with a send buffer that can never drain.
//!
//! Needs root and `ip netns` (iproute2); without them the tests fail with a
//! message saying so (they never skip). Namespace and links are removed
//! even when a test fails.

mod common;
mod lifecycle_common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::WAIT;
use lifecycle_common::*;
use ringws::{CloseKind, Initiator};

const PING_INTERVAL: Duration = Duration::from_millis(300);
const PONG_TIMEOUT: Duration = Duration::from_millis(300);
const CLOSE_TIMEOUT: Duration = Duration::from_millis(300);
/// One timer-wheel tick.
const TICK: Duration = Duration::from_millis(1);
/// Scheduling slack on a loaded 2-core CI machine.
const SLACK: Duration = Duration::from_millis(600);

/// Runs `ip` with `args`; panics with the reason on failure.
fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "this test needs root and `ip netns` (iproute2) to simulate a dead network, \
             and `ip` cannot run: {error}"
            )
        });
    assert!(
        output.status.success(),
        "`ip {}` failed: {} (this test needs root and `ip netns`; CI has both)",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// Two network namespaces joined by a veth pair, removed on drop.
struct DeadableLink {
    server_namespace: String,
    namespace: String,
    host_if: String,
    peer_if: String,
    host_addr: Ipv4Addr,
    peer_addr: Ipv4Addr,
}

impl DeadableLink {
    /// Names unique per process and call; a /30 derived from them.
    fn create() -> DeadableLink {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let block = (pid.wrapping_mul(8).wrapping_add(n)) % 16_384;
        let (third, fourth) = ((block / 64) as u8, ((block % 64) * 4) as u8);
        let link = DeadableLink {
            server_namespace: format!("ringws-kas-{pid}-{n}"),
            namespace: format!("ringws-ka-{pid}-{n}"),
            // Interface names are at most 15 bytes.
            host_if: format!("rwk{pid:x}{n}h"),
            peer_if: format!("rwk{pid:x}{n}p"),
            host_addr: Ipv4Addr::new(10, 213, third, fourth + 1),
            peer_addr: Ipv4Addr::new(10, 213, third, fourth + 2),
        };
        // From here on `Drop` cleans up whatever was made.
        let (ns, host, peer) = (&link.namespace, &link.host_if, &link.peer_if);
        let server_ns = &link.server_namespace;
        ip(&["netns", "add", server_ns]);
        ip(&["netns", "add", ns]);
        ip(&[
            "netns", "exec", server_ns, "ip", "link", "add", host, "type", "veth", "peer", "name",
            peer,
        ]);
        ip(&[
            "netns", "exec", server_ns, "ip", "link", "set", peer, "netns", ns,
        ]);
        let host_cidr = format!("{}/30", link.host_addr);
        ip(&[
            "netns", "exec", server_ns, "ip", "addr", "add", &host_cidr, "dev", host,
        ]);
        ip(&["netns", "exec", server_ns, "ip", "link", "set", host, "up"]);
        ip(&["netns", "exec", server_ns, "ip", "link", "set", "lo", "up"]);
        let peer_cidr = format!("{}/30", link.peer_addr);
        ip(&[
            "netns", "exec", ns, "ip", "addr", "add", &peer_cidr, "dev", peer,
        ]);
        ip(&["netns", "exec", ns, "ip", "link", "set", peer, "up"]);
        ip(&["netns", "exec", ns, "ip", "link", "set", "lo", "up"]);
        link
    }

    /// Takes the namespace end down: packets to it are dropped from now on
    /// (the route stays on the veth, so nothing leaves by another way).
    fn kill(&self) {
        ip(&[
            "netns",
            "exec",
            &self.namespace,
            "ip",
            "link",
            "set",
            &self.peer_if,
            "down",
        ]);
    }

    /// The route to the peer still goes through our veth.
    fn assert_routed_through_veth(&self) {
        let output = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.server_namespace,
                "ip",
                "route",
                "get",
            ])
            .arg(self.peer_addr.to_string())
            .output()
            .unwrap();
        let route = String::from_utf8_lossy(&output.stdout);
        assert!(
            route.contains(&format!("dev {}", self.host_if)),
            "route to the dead peer left the veth: {route}"
        );
    }
}

impl Drop for DeadableLink {
    fn drop(&mut self) {
        // Deleting one end of a veth deletes both; errors are ignored so a
        // half-built setup is still cleaned.
        let _ = Command::new("ip")
            .args(["netns", "exec", &self.server_namespace, "ip", "link", "del"])
            .arg(&self.host_if)
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.server_namespace])
            .output();
    }
}

/// Runs `f` on a thread that has joined the network namespace `namespace`;
/// threads it starts (the server's workers) are born in that namespace too.
fn in_namespace<T: Send + 'static>(namespace: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{namespace}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path)
            .unwrap_or_else(|error| panic!("cannot open {path} (needs `ip netns`): {error}"));
        // SAFETY: `file` is an open namespace file for the whole call, and
        // setns only changes the network namespace of this thread.
        let joined =
            unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(
            joined,
            0,
            "setns into {path} failed (needs root): {}",
            std::io::Error::last_os_error()
        );
        f()
    })
    .join()
    .expect("namespace thread")
}

/// Sockets of the server namespace in TCP `state` matching `filter` (`ss`).
fn server_tcp_sockets(link: &DeadableLink, state: &str, filter: &str) -> Vec<String> {
    let output = Command::new("ip")
        .args([
            "netns",
            "exec",
            &link.server_namespace,
            "ss",
            "-tanH",
            "state",
            state,
            filter,
        ])
        .output()
        .unwrap_or_else(|error| panic!("`ss` (iproute2) is needed to read socket states: {error}"));
    assert!(
        output.status.success(),
        "ss failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Bytes the kernel holds unsent for sockets on `port` (the `Send-Q` column
/// of `ss`).
fn kernel_send_queue(link: &DeadableLink, port: u16) -> u64 {
    server_tcp_sockets(link, "established", &format!("sport = :{port}"))
        .iter()
        .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

fn dead_peer_is_gone_within_the_keepalive_bound(fill_send_buffer: bool) {
    let link = DeadableLink::create();
    let python = python();
    // The server lives in its own namespace, on its end of the veth.
    let host_addr = link.host_addr;
    let (server, probed) = in_namespace(&link.server_namespace, move || {
        start_probe(
            ringws::Server::bind(SocketAddr::new(IpAddr::V4(host_addr), 0))
                .workers(2)
                .pinning(ringws::Pinning::Off)
                .ping_interval(Some(PING_INTERVAL))
                .pong_timeout(PONG_TIMEOUT)
                .close_timeout(CLOSE_TIMEOUT)
                .max_queued_bytes(256 << 20),
            OnClose::Return,
        )
    });
    let port = server.local_addr().port();
    let url = format!("ws://{}:{port}/", link.host_addr);
    let mut client = ChildGuard::spawn(
        Command::new("ip")
            .args(["netns", "exec", &link.namespace])
            .arg(&python)
            .arg(interop_script("py_hold_client.py"))
            .arg(&url),
    );
    let lines = client.lines();
    match lines.recv_timeout(LIMIT) {
        Ok(line) if line == "OPEN" => {}
        other => panic!("client did not open ({other:?}): {}", client.stderr()),
    }
    let (id, handle) = probed.opened();
    // Keepalive works over the link while it is alive.
    probed.find(|seen| match seen {
        Seen::Pong { id: from } if from == id => Some(()),
        _ => None,
    });

    let dropping = Instant::now();
    link.kill();
    let dropped = Instant::now();
    link.assert_routed_through_veth();
    if fill_send_buffer {
        // 64 MiB that can never leave: the kernel's buffer fills and the
        // rest waits in ringws's queue, ahead of the Ping and the Close.
        for _ in 0..64 {
            handle.send_binary_owned(vec![0x5A; 1 << 20]).unwrap();
        }
        let filled = poll_until(
            Duration::from_millis(PING_INTERVAL.as_millis() as u64),
            || (kernel_send_queue(&link, port) > 64 * 1024).then_some(()),
        );
        assert!(filled.is_some(), "the kernel send buffer did not fill");
    }

    let (info, gone_at) = probed.closed(id);
    let after_drop = gone_at - dropping;
    let bound = PING_INTERVAL + PONG_TIMEOUT + CLOSE_TIMEOUT + TICK;
    eprintln!(
        "dead peer gone {:?} after the link dropped (bound {bound:?} + slack {SLACK:?}; \
         send buffer full: {fill_send_buffer})",
        gone_at - dropped
    );
    assert!(
        after_drop < bound + SLACK,
        "gone {after_drop:?} after the link dropped"
    );
    assert!(
        gone_at - dropped >= PONG_TIMEOUT.min(CLOSE_TIMEOUT),
        "gone too early: {:?}",
        gone_at - dropped
    );
    assert_eq!(
        info.sent.map(|c| c.0),
        Some(1011),
        "keepalive timeout sends 1011"
    );
    assert_eq!(info.code.0, 1006, "no Close came back");
    assert_eq!(info.initiator, Initiator::Local);
    assert_eq!(info.kind, CloseKind::Forced);
    let stats = poll_until(WAIT, || {
        let stats = server.stats();
        (stats.total.open == 0 && closing(&server) == 0).then_some(stats)
    })
    .expect("open and closing gauges back to zero");
    assert_eq!(stats.total.keepalive_timeouts, 1);
    assert_eq!(stats.total.close_timeouts, 1);
    assert_eq!(stats.total.closes.get(1011, Initiator::Local), 1);
    // Aborted, so the kernel holds nothing for it either (a graceful close
    // would leave a FIN-WAIT socket retrying for minutes).
    let left = server_tcp_sockets(&link, "connected", &format!("sport = :{port}"));
    assert!(left.is_empty(), "kernel sockets left: {left:?}");
    server.shutdown(WAIT);
    drop(client);
    drop(link);
}

#[test]
fn a_dead_peer_is_closed_1011_then_aborted_within_the_keepalive_bound() {
    dead_peer_is_gone_within_the_keepalive_bound(false);
}

#[test]
fn a_dead_peer_with_a_full_send_buffer_is_gone_just_as_fast() {
    dead_peer_is_gone_within_the_keepalive_bound(true);
}
