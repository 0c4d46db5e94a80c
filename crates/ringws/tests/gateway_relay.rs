//! A WebSocket gateway built on ringws: a ringws server whose handler opens,
//! for each downstream connection, an upstream connection through a ringws
//! client (`connect_queued` from `on_open`), relays every message both ways
//! through `ConnHandle`s (across engines and threads), and carries closes
//! both ways. The upstream is a plain ringws echo server; the downstream
//! peers are a ringws client and raw sockets. Loopback only, every wait
//! bounded.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{poll_until, upgrade_request, RawClient, WAIT};
use ringws::{
    Backpressure, Client, ClientControl, ClientHandle, CloseCode, CloseKind, ClosedInfo, Conn,
    ConnHandle, ConnId, ConnectError, Handler, Message, Request, SendError, Server, ServerHandle,
    ShutdownReport,
};

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

// ----- the upstream: a ringws echo server with a few commands -----

/// How one upstream connection ended.
#[derive(Debug, Clone)]
struct UpstreamEnd {
    path: String,
    info: ClosedInfo,
}

#[derive(Default)]
struct UpstreamLog {
    ends: Mutex<Vec<UpstreamEnd>>,
}

/// Echoes every message; `close:<code>:<reason>` closes the connection with
/// that code and reason; `flood:<count>:<size>` answers with `count` binary
/// messages of `size` bytes.
struct Upstream {
    log: Arc<UpstreamLog>,
}

impl Handler for Upstream {
    type ConnData = String;

    fn on_upgrade(&mut self, request: &Request<'_>, path: &mut String) -> Result<(), u16> {
        *path = request.path().to_owned();
        Ok(())
    }

    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
        if let Message::Text(text) = message {
            if let Some(rest) = text.strip_prefix("close:") {
                let (code, reason) = rest.split_once(':').unwrap();
                conn.close(code.parse().unwrap(), reason).unwrap();
                return;
            }
            if let Some(rest) = text.strip_prefix("flood:") {
                let (count, size) = rest.split_once(':').unwrap();
                let size: usize = size.parse().unwrap();
                for n in 0..count.parse::<u32>().unwrap() {
                    let mut payload = vec![(n % 251) as u8; size];
                    payload[..4].copy_from_slice(&n.to_be_bytes());
                    conn.send_binary_owned(payload).unwrap();
                }
                return;
            }
        }
        let _ = match message {
            Message::Text(text) => conn.send_text(text),
            Message::Binary(bytes) => conn.send_binary(bytes),
        };
    }

    fn on_closed(&mut self, _id: ConnId, path: String, info: &ClosedInfo) {
        self.log.ends.lock().unwrap().push(UpstreamEnd {
            path,
            info: info.clone(),
        });
    }
}

fn start_upstream(
    configure: impl FnOnce(ringws::ServerBuilder) -> ringws::ServerBuilder,
) -> (ServerHandle, Arc<UpstreamLog>) {
    let log = Arc::new(UpstreamLog::default());
    let for_workers = log.clone();
    let builder = Server::bind(loopback()).workers(2).ping_interval(None);
    let server = configure(builder)
        .start(move |_| Upstream {
            log: for_workers.clone(),
        })
        .expect("the upstream starts");
    (server, log)
}

// ----- the gateway -----

/// The upstream side of one relayed connection, as the downstream side
/// sees it.
enum Up {
    /// Connecting: what the downstream sent meanwhile, and its close.
    Pending {
        queued: Vec<(bool, Vec<u8>)>,
        close: Option<(u16, String)>,
    },
    Open(ConnHandle),
    Gone,
}

/// One relayed connection: the downstream's handle and the upstream's state.
struct Link {
    downstream: ConnHandle,
    up: Mutex<Up>,
    upstream_handle: Mutex<Option<ConnHandle>>,
}

impl Link {
    /// Closes the upstream with `code` and `reason`, now or when it opens.
    fn close_upstream(&self, code: u16, reason: &str, obs: &Observed) {
        match &mut *self.up.lock().unwrap() {
            Up::Pending { close, .. } => {
                close.get_or_insert_with(|| (code, reason.to_owned()));
            }
            Up::Open(handle) => {
                if handle.close(code, reason).is_err() {
                    obs.close_gone.fetch_add(1, Ordering::Relaxed);
                }
            }
            Up::Gone => {}
        }
    }
}

/// Counts every callback of both engines, per connection.
#[derive(Default)]
struct Observed {
    server_opened: Mutex<HashMap<ConnId, u32>>,
    server_closed: Mutex<HashMap<ConnId, u32>>,
    client_opened: Mutex<HashMap<ConnId, u32>>,
    client_closed: Mutex<HashMap<ConnId, u32>>,
    connect_failed: AtomicU64,
    relayed_up: AtomicU64,
    relayed_down: AtomicU64,
    /// Relay sends refused, by error.
    send_errors: Mutex<HashMap<String, u64>>,
    close_gone: AtomicU64,
    links: Mutex<Vec<Arc<Link>>>,
}

impl Observed {
    fn count(map: &Mutex<HashMap<ConnId, u32>>, id: ConnId) {
        *map.lock().unwrap().entry(id).or_default() += 1;
    }

    fn send_result(&self, result: Result<(), SendError>, counter: &AtomicU64) {
        match result {
            Ok(()) => {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                *self
                    .send_errors
                    .lock()
                    .unwrap()
                    .entry(format!("{error:?}"))
                    .or_default() += 1;
            }
        }
    }

    /// Every connection that opened on either side closed exactly once,
    /// and none closed without opening.
    fn assert_each_closed_once(&self, expected: usize) {
        for (side, opened, closed) in [
            ("server", &self.server_opened, &self.server_closed),
            ("client", &self.client_opened, &self.client_closed),
        ] {
            let opened = opened.lock().unwrap();
            let closed = closed.lock().unwrap();
            assert_eq!(opened.len(), expected, "{side}: connections opened");
            assert!(
                opened.values().all(|&n| n == 1),
                "{side}: on_open more than once"
            );
            assert_eq!(
                closed.len(),
                opened.len(),
                "{side}: every opened connection gets on_closed"
            );
            for (id, n) in closed.iter() {
                assert_eq!(*n, 1, "{side}: on_closed of {id:?} ran {n} times");
                assert!(opened.contains_key(id), "{side}: on_closed without on_open");
            }
        }
    }
}

type UpData = Option<Arc<Link>>;

/// The gateway's downstream side.
struct GatewayServer {
    upstream: String,
    client: ClientControl<UpData>,
    obs: Arc<Observed>,
}

#[derive(Default)]
struct DownData {
    path: String,
    link: Option<Arc<Link>>,
}

fn code_of(code: Option<CloseCode>) -> u16 {
    code.map_or(1000, |code| code.0)
}

impl Handler for GatewayServer {
    type ConnData = DownData;

    fn on_upgrade(&mut self, request: &Request<'_>, data: &mut DownData) -> Result<(), u16> {
        data.path = request.path().to_owned();
        Ok(())
    }

    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        Observed::count(&self.obs.server_opened, conn.id());
        let link = Arc::new(Link {
            downstream: conn.handle(),
            up: Mutex::new(Up::Pending {
                queued: Vec::new(),
                close: None,
            }),
            upstream_handle: Mutex::new(None),
        });
        self.obs.links.lock().unwrap().push(link.clone());
        conn.data_mut().link = Some(link.clone());
        let url = format!("{}{}", self.upstream, conn.data().path);
        if let Err(error) = self.client.connect_queued(&url, Some(link)) {
            *self.obs.link_of(conn).up.lock().unwrap() = Up::Gone;
            conn.close(1014, &format!("upstream: {error}")).unwrap();
        }
    }

    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
        let link = self.obs.link_of(conn);
        let text = matches!(message, Message::Text(_));
        match &mut *link.up.lock().unwrap() {
            Up::Pending { queued, .. } => queued.push((text, message.as_bytes().to_vec())),
            Up::Open(handle) => {
                let result = match message {
                    Message::Text(text) => handle.send_text(text),
                    Message::Binary(bytes) => handle.send_binary(bytes),
                };
                self.obs.send_result(result, &self.obs.relayed_up);
            }
            Up::Gone => {}
        };
    }

    fn on_close_received(
        &mut self,
        conn: &mut Conn<'_, Self>,
        code: Option<CloseCode>,
        reason: &str,
    ) {
        let link = self.obs.link_of(conn);
        link.close_upstream(code_of(code), reason, &self.obs);
    }

    fn on_closed(&mut self, id: ConnId, data: DownData, info: &ClosedInfo) {
        Observed::count(&self.obs.server_closed, id);
        // The upstream ends with the downstream: with its peer's code and
        // reason (a no-op when the Close was already carried over), or 1001
        // when the peer sent none.
        if let Some(link) = data.link {
            match info.code.0 {
                1006 => link.close_upstream(1001, "downstream went away", &self.obs),
                1005 => link.close_upstream(1000, "", &self.obs),
                code => link.close_upstream(code, &info.reason, &self.obs),
            }
        }
    }
}

impl Observed {
    fn link_of<H: Handler<ConnData = DownData>>(&self, conn: &Conn<'_, H>) -> Arc<Link> {
        conn.data().link.clone().expect("a link from on_open")
    }
}

/// The gateway's upstream side.
struct GatewayClient {
    obs: Arc<Observed>,
}

impl Handler for GatewayClient {
    type ConnData = UpData;

    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        Observed::count(&self.obs.client_opened, conn.id());
        let link = conn.data().clone().expect("a link");
        *link.upstream_handle.lock().unwrap() = Some(conn.handle());
        let mut up = link.up.lock().unwrap();
        let Up::Pending { queued, close } = std::mem::replace(&mut *up, Up::Open(conn.handle()))
        else {
            panic!("an upstream opens once");
        };
        for (text, bytes) in queued {
            let result = if text {
                conn.send_text(std::str::from_utf8(&bytes).unwrap())
            } else {
                conn.send_binary(&bytes)
            };
            self.obs.send_result(result, &self.obs.relayed_up);
        }
        if let Some((code, reason)) = close {
            conn.close(code, &reason).unwrap();
        }
    }

    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
        let link = conn.data().as_ref().expect("a link");
        let result = match message {
            Message::Text(text) => link.downstream.send_text(text),
            Message::Binary(bytes) => link.downstream.send_binary(bytes),
        };
        self.obs.send_result(result, &self.obs.relayed_down);
    }

    fn on_close_received(
        &mut self,
        conn: &mut Conn<'_, Self>,
        code: Option<CloseCode>,
        reason: &str,
    ) {
        let link = conn.data().as_ref().expect("a link");
        if link.downstream.close(code_of(code), reason).is_err() {
            self.obs.close_gone.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn on_closed(&mut self, id: ConnId, data: UpData, info: &ClosedInfo) {
        Observed::count(&self.obs.client_closed, id);
        let link = data.expect("a link");
        *link.up.lock().unwrap() = Up::Gone;
        // The downstream ends with the upstream (a no-op when the Close
        // was already carried over).
        let _ = match info.code.0 {
            1006 => link.downstream.close(1014, "upstream went away"),
            1005 => link.downstream.close(1000, ""),
            code => link.downstream.close(code, &info.reason),
        };
    }

    fn on_connect_failed(&mut self, _id: Option<ConnId>, data: UpData, error: &ConnectError) {
        self.obs.connect_failed.fetch_add(1, Ordering::Relaxed);
        let link = data.expect("a link");
        *link.up.lock().unwrap() = Up::Gone;
        let _ = link.downstream.close(1014, &format!("upstream: {error}"));
    }
}

struct Gateway {
    server: ServerHandle,
    client: ClientHandle<UpData>,
    obs: Arc<Observed>,
}

impl Gateway {
    fn start(
        upstream: SocketAddr,
        configure: impl FnOnce(ringws::ServerBuilder) -> ringws::ServerBuilder,
    ) -> Gateway {
        let obs = Arc::new(Observed::default());
        let for_client = obs.clone();
        let client = Client::builder()
            .workers(2)
            .ping_interval(None)
            .start(move |_| GatewayClient {
                obs: for_client.clone(),
            })
            .expect("the gateway's client starts");
        let control = client.control();
        let for_server = obs.clone();
        let upstream = format!("ws://{upstream}");
        let server = configure(Server::bind(loopback()).workers(2).ping_interval(None))
            .start(move |_| GatewayServer {
                upstream: upstream.clone(),
                client: control.clone(),
                obs: for_server.clone(),
            })
            .expect("the gateway's server starts");
        Gateway {
            server,
            client,
            obs,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.server.local_addr())
    }
}

// ----- the downstream peers: a ringws client -----

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Mode {
    /// Sends its messages, then closes (`code`, "bye <tag>") once every echo
    /// is back.
    #[default]
    CloseAfterEchoes,
    /// Sends its messages, then asks the upstream to close with `code` and
    /// "up <tag>" once every echo is back.
    UpstreamCloses,
    /// Sends its messages and closes at once, echoes in flight.
    CloseAtOnce,
    /// Sends every echo back again, until closed (at most 100,000 rounds).
    PingPong,
}

#[derive(Debug, Clone, Default)]
struct Plan {
    tag: u32,
    messages: u32,
    mode: Mode,
    code: u16,
}

impl Plan {
    fn message(&self, n: u32) -> (bool, Vec<u8>) {
        let body = format!("t{}-m{n}-{}", self.tag, "x".repeat((n as usize * 37) % 300));
        (n.is_multiple_of(2), body.into_bytes())
    }
}

#[derive(Debug, Default)]
struct PeerLog {
    received: Vec<(bool, Vec<u8>)>,
    closed: Vec<ClosedInfo>,
    failed: Option<String>,
}

#[derive(Default)]
struct Peers {
    logs: Mutex<HashMap<u32, PeerLog>>,
}

impl Peers {
    fn closed(&self) -> usize {
        self.logs
            .lock()
            .unwrap()
            .values()
            .filter(|log| !log.closed.is_empty() || log.failed.is_some())
            .count()
    }
}

struct Peer {
    peers: Arc<Peers>,
}

impl Handler for Peer {
    type ConnData = Plan;

    fn on_open(&mut self, conn: &mut Conn<'_, Self>) {
        let plan = conn.data().clone();
        for n in 0..plan.messages {
            let (text, body) = plan.message(n);
            if text {
                conn.send_text(std::str::from_utf8(&body).unwrap()).unwrap();
            } else {
                conn.send_binary(&body).unwrap();
            }
        }
        if plan.mode == Mode::CloseAtOnce {
            conn.close(plan.code, &format!("bye {}", plan.tag)).unwrap();
        }
    }

    fn on_message(&mut self, conn: &mut Conn<'_, Self>, message: Message<'_>) {
        let plan = conn.data().clone();
        let received = {
            let mut logs = self.peers.logs.lock().unwrap();
            let log = logs.entry(plan.tag).or_default();
            if plan.mode != Mode::PingPong {
                log.received.push((
                    matches!(message, Message::Text(_)),
                    message.as_bytes().to_vec(),
                ));
                log.received.len()
            } else {
                log.received.push((true, Vec::new()));
                log.received.len()
            }
        };
        match plan.mode {
            Mode::CloseAfterEchoes if received == plan.messages as usize => {
                conn.close(plan.code, &format!("bye {}", plan.tag)).unwrap();
            }
            Mode::UpstreamCloses if received == plan.messages as usize => {
                conn.send_text(&format!("close:{}:up {}", plan.code, plan.tag))
                    .unwrap();
            }
            Mode::PingPong if received < 100_000 => {
                let _ = match message {
                    Message::Text(text) => conn.send_text(text),
                    Message::Binary(bytes) => conn.send_binary(bytes),
                };
            }
            _ => {}
        }
    }

    fn on_closed(&mut self, _id: ConnId, plan: Plan, info: &ClosedInfo) {
        let mut logs = self.peers.logs.lock().unwrap();
        logs.entry(plan.tag).or_default().closed.push(info.clone());
    }

    fn on_connect_failed(&mut self, _id: Option<ConnId>, plan: Plan, error: &ConnectError) {
        let mut logs = self.peers.logs.lock().unwrap();
        logs.entry(plan.tag).or_default().failed = Some(error.to_string());
    }
}

fn start_peers() -> (ClientHandle<Plan>, Arc<Peers>) {
    let peers = Arc::new(Peers::default());
    let for_workers = peers.clone();
    let client = Client::builder()
        .workers(2)
        .ping_interval(None)
        .start(move |_| Peer {
            peers: for_workers.clone(),
        })
        .expect("the peers' client starts");
    (client, peers)
}

fn connect_all(client: &ClientHandle<Plan>, gateway: &Gateway, plans: &[Plan]) {
    for plan in plans {
        client
            .connect(&gateway.url(&format!("/t/{}", plan.tag)), plan.clone())
            .expect("connect");
    }
}

/// Waits until the upstream, both sides of the gateway and the peers have
/// no connection left, and checks the gauges against the counters.
fn assert_all_gone(upstream: &ServerHandle, gateway: &Gateway, peers: &ClientControl<Plan>) {
    let engines: [(&str, &dyn Fn() -> ringws::Stats); 4] = [
        ("upstream", &|| upstream.stats()),
        ("gateway server", &|| gateway.server.stats()),
        ("gateway client", &|| gateway.client.stats()),
        ("peers", &|| peers.stats()),
    ];
    for (name, stats) in engines {
        let end = Instant::now() + WAIT;
        while stats().total.connections() != 0 {
            assert!(
                Instant::now() < end,
                "{name} still has connections: {:#?}",
                stats().total
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_ended(name, &stats());
    }
}

/// `name` has no connection left, every one it upgraded ended one way or
/// another (opened − closed = open = 0), and no callback panicked.
fn assert_ended(name: &str, stats: &ringws::Stats) {
    let total = &stats.total;
    assert_eq!(total.connections(), 0, "{name}: {total:#?}");
    assert_eq!(
        total.upgraded,
        total.clean_closes + total.forced_terminations + total.abnormal_closes,
        "{name}: opened − closed = open (0): {total:#?}"
    );
    assert_eq!(total.handler_panics, 0, "{name}: no callback panicked");
}

// ----- the scenarios -----

#[test]
fn two_hundred_connections_relay_in_order_and_close_codes_cross_both_ways() {
    let (upstream, upstream_log) = start_upstream(|b| b);
    let gateway = Gateway::start(upstream.local_addr(), |b| b);
    let (peers_client, peers) = start_peers();

    let plans: Vec<Plan> = (0..200)
        .map(|tag| Plan {
            tag,
            messages: 20,
            mode: if tag % 2 == 0 {
                Mode::CloseAfterEchoes
            } else {
                Mode::UpstreamCloses
            },
            code: 4000 + tag as u16,
        })
        .collect();
    let peers_control = peers_client.control();
    connect_all(&peers_client, &gateway, &plans);
    poll_until("every peer to end", || peers.closed() == plans.len());
    assert_all_gone(&upstream, &gateway, &peers_control);

    let logs = peers.logs.lock().unwrap();
    for plan in &plans {
        let log = &logs[&plan.tag];
        assert_eq!(log.failed, None, "tag {}", plan.tag);
        let expected: Vec<(bool, Vec<u8>)> = (0..plan.messages).map(|n| plan.message(n)).collect();
        assert_eq!(
            log.received, expected,
            "tag {}: echoes intact, in order",
            plan.tag
        );
        assert_eq!(log.closed.len(), 1, "tag {}: one on_closed", plan.tag);
        let info = &log.closed[0];
        assert_eq!(info.code.0, plan.code, "tag {}: {info:?}", plan.tag);
        assert_eq!(info.kind, CloseKind::Clean, "tag {}: {info:?}", plan.tag);
        if plan.mode == Mode::UpstreamCloses {
            // The upstream's Close reached the peer with its code and reason.
            assert_eq!(info.reason, format!("up {}", plan.tag), "{info:?}");
        }
    }
    let ends = upstream_log.ends.lock().unwrap();
    assert_eq!(ends.len(), plans.len());
    for end in ends.iter() {
        let tag: u32 = end.path.strip_prefix("/t/").unwrap().parse().unwrap();
        let plan = &plans[tag as usize];
        assert_eq!(end.info.kind, CloseKind::Clean, "{end:?}");
        if plan.mode == Mode::CloseAfterEchoes {
            // The peer's Close reached the upstream with its code and reason.
            assert_eq!(end.info.code.0, plan.code, "{end:?}");
            assert_eq!(end.info.reason, format!("bye {tag}"), "{end:?}");
        } else {
            assert_eq!(end.info.sent, Some(CloseCode(plan.code)), "{end:?}");
        }
    }
    drop(ends);
    gateway.obs.assert_each_closed_once(plans.len());
    assert_eq!(gateway.obs.connect_failed.load(Ordering::Relaxed), 0);
    assert_eq!(
        gateway.obs.relayed_up.load(Ordering::Relaxed),
        200 * 20 + 100,
        "every message went up (and 100 close requests)"
    );
    assert_eq!(gateway.obs.relayed_down.load(Ordering::Relaxed), 200 * 20);

    // Handles outlive their connections: every one reports Gone, and
    // acting on them touches none of the connections opened since.
    let stale: Vec<Arc<Link>> = gateway.obs.links.lock().unwrap().clone();
    let check_stale = || {
        for link in &stale {
            let up = link.upstream_handle.lock().unwrap().clone().unwrap();
            for handle in [&link.downstream, &up] {
                assert!(!handle.is_open());
                assert_eq!(handle.send_text("stale"), Err(SendError::Gone));
                assert_eq!(handle.close(1000, "stale"), Err(ringws::CloseError::Gone));
                assert_eq!(handle.terminate(), Err(ringws::Gone));
            }
        }
    };
    check_stale();
    drop(logs);
    let again: Vec<Plan> = (200..260)
        .map(|tag| Plan {
            tag,
            messages: 5,
            mode: Mode::PingPong,
            code: 1000,
        })
        .collect();
    connect_all(&peers_client, &gateway, &again);
    poll_until("the new connections to exchange", || {
        let logs = peers.logs.lock().unwrap();
        again.iter().all(|plan| {
            logs.get(&plan.tag)
                .is_some_and(|log| log.received.len() > 50)
        })
    });
    check_stale();
    let report = peers_client.shutdown(Duration::from_secs(2));
    assert_eq!(report.total, again.len() as u64);
    assert_eq!(report.clean, again.len() as u64, "{report:?}");
    assert_all_gone(&upstream, &gateway, &peers_control);
    let logs = peers.logs.lock().unwrap();
    for plan in &again {
        let log = &logs[&plan.tag];
        assert_eq!(log.closed.len(), 1, "tag {}", plan.tag);
        assert_eq!(log.closed[0].code.0, 1001, "{:?}", log.closed[0]);
    }
}

#[test]
fn churn_ends_every_upstream_with_the_downstreams_code_and_reason() {
    let (upstream, upstream_log) = start_upstream(|b| b);
    let gateway = Gateway::start(upstream.local_addr(), |b| b);
    let (peers_client, peers) = start_peers();
    let peers_control = peers_client.control();

    let mut plans = Vec::new();
    let mut raw_tags = Vec::new();
    for round in 0..4u32 {
        let mut raw = Vec::new();
        for n in 0..100u32 {
            let tag = round * 100 + n;
            let code = 4000 + (tag % 1000) as u16;
            let plan = match tag % 4 {
                0 => Plan {
                    tag,
                    messages: 3,
                    mode: Mode::CloseAtOnce,
                    code,
                },
                1 => Plan {
                    tag,
                    messages: 0,
                    mode: Mode::CloseAtOnce,
                    code,
                },
                2 => {
                    // A raw peer: one message, then TCP closed without a
                    // Close.
                    let mut client = RawClient::connect_with(
                        gateway.server.local_addr(),
                        &upgrade_request(&format!("/t/{tag}"), ""),
                    );
                    client.write_frame(true, 0x1, format!("raw {tag}").as_bytes());
                    raw.push(client);
                    raw_tags.push(tag);
                    continue;
                }
                _ => Plan {
                    tag,
                    messages: 5,
                    mode: Mode::CloseAfterEchoes,
                    code,
                },
            };
            peers_client
                .connect(&gateway.url(&format!("/t/{tag}")), plan.clone())
                .expect("connect");
            plans.push(plan);
        }
        drop(raw);
    }
    poll_until("every peer to end", || peers.closed() == plans.len());
    let expected = plans.len() + raw_tags.len();
    poll_until("every upstream connection to end", || {
        upstream_log.ends.lock().unwrap().len() == expected
    });
    assert_all_gone(&upstream, &gateway, &peers_control);

    let logs = peers.logs.lock().unwrap();
    for plan in &plans {
        let log = &logs[&plan.tag];
        assert_eq!(log.failed, None, "tag {}", plan.tag);
        assert_eq!(log.closed.len(), 1, "tag {}: one on_closed", plan.tag);
        assert_eq!(log.closed[0].code.0, plan.code, "{:?}", log.closed[0]);
        let expected: Vec<(bool, Vec<u8>)> = (0..plan.messages).map(|n| plan.message(n)).collect();
        assert!(
            expected.starts_with(&log.received),
            "tag {}: what came back is a prefix of what was sent, in order",
            plan.tag
        );
    }
    drop(logs);
    let ends = upstream_log.ends.lock().unwrap().clone();
    let mut seen = HashMap::new();
    for end in &ends {
        let tag: u32 = end.path.strip_prefix("/t/").unwrap().parse().unwrap();
        *seen.entry(tag).or_insert(0) += 1;
        if tag % 4 == 2 {
            assert_eq!(end.info.code.0, 1001, "{end:?}");
            assert_eq!(end.info.reason, "downstream went away", "{end:?}");
        } else {
            assert_eq!(end.info.code.0, 4000 + (tag % 1000) as u16, "{end:?}");
            assert_eq!(end.info.reason, format!("bye {tag}"), "{end:?}");
        }
    }
    assert_eq!(
        seen.len(),
        expected,
        "one upstream connection per downstream"
    );
    assert!(seen.values().all(|&n| n == 1));
    gateway.obs.assert_each_closed_once(expected);
    assert_eq!(gateway.obs.connect_failed.load(Ordering::Relaxed), 0);
}

/// Starts `count` peers that send every echo back, and waits until traffic
/// flows through all of them.
fn ping_pong(
    peers_client: &ClientHandle<Plan>,
    peers: &Peers,
    gateway: &Gateway,
    count: u32,
) -> Vec<Plan> {
    let plans: Vec<Plan> = (0..count)
        .map(|tag| Plan {
            tag,
            messages: 4,
            mode: Mode::PingPong,
            code: 1000,
        })
        .collect();
    connect_all(peers_client, gateway, &plans);
    poll_until("traffic through every connection", || {
        let logs = peers.logs.lock().unwrap();
        plans.iter().all(|plan| {
            logs.get(&plan.tag)
                .is_some_and(|log| log.received.len() > 20)
        })
    });
    plans
}

fn assert_report_adds_up(report: &ShutdownReport, what: &str) {
    assert_eq!(
        report.clean + report.forced + report.abnormal,
        report.total,
        "{what}: {report:?}"
    );
}

#[test]
fn an_upstream_shutting_down_closes_every_downstream_with_its_1001() {
    let (upstream, upstream_log) = start_upstream(|b| b);
    let gateway = Gateway::start(upstream.local_addr(), |b| b);
    let (peers_client, peers) = start_peers();
    let peers_control = peers_client.control();
    let plans = ping_pong(&peers_client, &peers, &gateway, 100);

    let started = Instant::now();
    let upstream_control = upstream.control();
    let report = upstream_control.shutdown(Duration::from_secs(2)).unwrap();
    assert_eq!(report.total, 100, "{report:?}");
    assert_report_adds_up(&report, "upstream");
    poll_until("every peer to see the Close", || {
        peers.closed() == plans.len()
    });
    assert!(started.elapsed() < Duration::from_secs(5));
    let logs = peers.logs.lock().unwrap();
    for plan in &plans {
        let closed = &logs[&plan.tag].closed;
        assert_eq!(closed.len(), 1, "tag {}", plan.tag);
        assert_eq!(closed[0].code.0, 1001, "{:?}", closed[0]);
        assert_eq!(closed[0].reason, ringws::DEFAULT_SHUTDOWN_REASON);
        assert_eq!(closed[0].kind, CloseKind::Clean, "{:?}", closed[0]);
    }
    drop(logs);
    assert_eq!(upstream_log.ends.lock().unwrap().len(), 100);
    assert_all_gone(&upstream, &gateway, &peers_control);
    gateway.obs.assert_each_closed_once(100);
    drop(upstream);
}

/// How the gateway's two engines are shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GatewayShutdown {
    /// The server, then the client: every peer gets the server's 1001, and
    /// every upstream the client's.
    ServerThenClient,
    /// Both at once from two threads: a peer gets the server's 1001 or,
    /// when its upstream went first, the relay's 1014.
    BothAtOnce,
}

/// 100 connections bouncing messages through the gateway, then its
/// shutdown: bounded, reports that add up, a Close for every peer, every
/// upstream connection ended, nothing left on any engine.
fn shutting_down_the_gateway_ends_everything(order: GatewayShutdown) {
    let (upstream, upstream_log) = start_upstream(|b| b);
    let gateway = Gateway::start(upstream.local_addr(), |b| b);
    let (peers_client, peers) = start_peers();
    let peers_control = peers_client.control();
    let plans = ping_pong(&peers_client, &peers, &gateway, 100);

    let Gateway {
        server,
        client,
        obs,
    } = gateway;
    let server_stats = server.control();
    let client_stats = client.control();
    let started = Instant::now();
    match order {
        GatewayShutdown::ServerThenClient => {
            let report = server.shutdown(Duration::from_secs(2));
            assert_eq!(report.total, 100, "{report:?}");
            assert_report_adds_up(&report, "gateway server");
            let report = client.shutdown(Duration::from_secs(2));
            assert!(report.total <= 100, "{report:?}");
            assert_report_adds_up(&report, "gateway client");
        }
        GatewayShutdown::BothAtOnce => {
            let client_side = std::thread::spawn(move || client.shutdown(Duration::from_secs(2)));
            let server_report = server.shutdown(Duration::from_secs(2));
            let client_report = client_side.join().unwrap();
            assert_report_adds_up(&server_report, "gateway server");
            assert_report_adds_up(&client_report, "gateway client");
            assert_eq!(server_report.total, 100, "{server_report:?}");
        }
    }
    assert!(started.elapsed() < Duration::from_secs(5));

    poll_until("every peer to see the Close", || {
        peers.closed() == plans.len()
    });
    let peer_codes: &[u16] = match order {
        GatewayShutdown::ServerThenClient => &[1001],
        GatewayShutdown::BothAtOnce => &[1001, 1014],
    };
    let logs = peers.logs.lock().unwrap();
    for plan in &plans {
        let closed = &logs[&plan.tag].closed;
        assert_eq!(closed.len(), 1, "tag {}", plan.tag);
        assert!(peer_codes.contains(&closed[0].code.0), "{:?}", closed[0]);
    }
    drop(logs);
    poll_until("every upstream connection to end", || {
        upstream_log.ends.lock().unwrap().len() == 100
    });
    if order == GatewayShutdown::ServerThenClient {
        for end in upstream_log.ends.lock().unwrap().iter() {
            assert_eq!(end.info.code.0, 1001, "{end:?}");
        }
    }
    for (name, stats) in [
        ("upstream", upstream.stats()),
        ("gateway server", server_stats.stats()),
        ("gateway client", client_stats.stats()),
        ("peers", peers_control.stats()),
    ] {
        assert_ended(name, &stats);
    }
    obs.assert_each_closed_once(100);
}

#[test]
fn shutting_down_the_gateway_server_then_client_ends_everything() {
    shutting_down_the_gateway_ends_everything(GatewayShutdown::ServerThenClient);
}

#[test]
fn shutting_down_both_sides_of_the_gateway_at_once_ends_everything() {
    shutting_down_the_gateway_ends_everything(GatewayShutdown::BothAtOnce);
}

#[test]
fn an_unreachable_upstream_closes_the_downstream_with_1014() {
    // A port with nothing listening.
    let closed = std::net::TcpListener::bind(loopback()).unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let gateway = Gateway::start(addr, |b| b);
    let mut client =
        RawClient::connect_with(gateway.server.local_addr(), &upgrade_request("/t/0", ""));
    client.stream.set_read_timeout(Some(WAIT)).unwrap();
    let close = client.read_close();
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 1014);
    assert!(
        std::str::from_utf8(&close[2..])
            .unwrap()
            .starts_with("upstream: "),
        "{close:?}"
    );
    assert_eq!(gateway.obs.connect_failed.load(Ordering::Relaxed), 1);
}

const FLOOD: u32 = 1000;
const FLOOD_SIZE: usize = 16 * 1024;
const LIMIT: usize = 256 * 1024;

/// A raw downstream peer asks the upstream for a flood, then does not read.
fn flood_a_stalled_peer(gateway: &Gateway) -> RawClient {
    let mut client = RawClient::connect_with(
        gateway.server.local_addr(),
        &upgrade_request("/t/flood", ""),
    );
    client.stream.set_read_timeout(Some(WAIT)).unwrap();
    client.write_frame(true, 0x1, format!("flood:{FLOOD}:{FLOOD_SIZE}").as_bytes());
    poll_until("the gateway to receive the whole flood", || {
        gateway.client.stats().total.messages_in == u64::from(FLOOD)
    });
    client
}

#[test]
fn a_stalled_downstream_peer_meets_the_drop_policy_with_a_bounded_queue() {
    let (upstream, _log) = start_upstream(|b| b.max_queued_bytes(64 << 20));
    let gateway = Gateway::start(upstream.local_addr(), |b| {
        b.max_queued_bytes(LIMIT)
            .backpressure(Backpressure::DropMessage)
            .socket_send_buffer(64 * 1024)
    });
    let mut client = flood_a_stalled_peer(&gateway);
    let stats = {
        let end = Instant::now() + WAIT;
        loop {
            let stats = gateway.server.stats().total;
            if stats.messages_out + stats.dropped_messages == u64::from(FLOOD) {
                break stats;
            }
            assert!(Instant::now() < end, "{stats:#?}");
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    assert!(stats.dropped_messages > 0, "{stats:#?}");
    // What is queued on the gateway for the stalled peer stays within the
    // limit (plus the message that reached it).
    let queued = stats.bytes_out.saturating_sub(stats.io.bytes_sent);
    assert!(
        queued <= (LIMIT + FLOOD_SIZE) as u64,
        "{queued} bytes queued: {stats:#?}"
    );
    // The peer reads what was kept: every message not dropped, in order.
    let mut last = None;
    for _ in 0..stats.messages_out {
        let (fin, opcode, payload) = client.read_frame().expect("a kept message");
        assert!(fin);
        assert_eq!(opcode, 0x2);
        assert_eq!(payload.len(), FLOOD_SIZE);
        let n = u32::from_be_bytes(payload[..4].try_into().unwrap());
        assert!(last.is_none_or(|last| n > last), "{n} after {last:?}");
        last = Some(n);
    }
    // The connection is still usable both ways.
    client.write_frame(true, 0x1, b"still there");
    let (_, opcode, payload) = client.read_frame().expect("an echo");
    assert_eq!((opcode, payload.as_slice()), (0x1, &b"still there"[..]));
    client.write_frame(true, 0x8, &common::close_payload(4321, "done"));
    let close = client.read_close();
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 4321);
    assert!(client.wait_eof());
    drop(client);
    poll_until("no connection left", || {
        upstream.stats().total.connections() == 0
            && gateway.server.stats().total.connections() == 0
            && gateway.client.stats().total.connections() == 0
    });
    gateway.obs.assert_each_closed_once(1);
}

#[test]
fn a_stalled_downstream_peer_meets_the_close_policy_and_its_upstream_ends() {
    let (upstream, log) = start_upstream(|b| b.max_queued_bytes(64 << 20));
    let gateway = Gateway::start(upstream.local_addr(), |b| {
        b.max_queued_bytes(LIMIT)
            .backpressure(Backpressure::Close(CloseCode(1013)))
            .socket_send_buffer(64 * 1024)
    });
    let mut client = flood_a_stalled_peer(&gateway);
    poll_until("the backpressure close", || {
        gateway.server.stats().total.backpressure_closes == 1
    });
    let close = client.read_close();
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 1013);
    client.write_frame(true, 0x8, &close);
    assert!(client.wait_eof());
    drop(client);
    poll_until("the upstream connection to end", || {
        log.ends.lock().unwrap().len() == 1
    });
    let end = log.ends.lock().unwrap()[0].clone();
    assert_eq!(end.info.code.0, 1013, "{end:?}");
    poll_until("no connection left", || {
        upstream.stats().total.connections() == 0
            && gateway.server.stats().total.connections() == 0
            && gateway.client.stats().total.connections() == 0
    });
    gateway.obs.assert_each_closed_once(1);
}

#[test]
fn the_gateway_client_shutting_down_alone_closes_its_downstreams_and_refuses_new_ones() {
    let (upstream, upstream_log) = start_upstream(|b| b);
    let gateway = Gateway::start(upstream.local_addr(), |b| b);
    let (peers_client, peers) = start_peers();
    let plans = ping_pong(&peers_client, &peers, &gateway, 50);

    // Ids of one engine name nothing on the other.
    let upstream_ids: Vec<ConnId> = gateway
        .obs
        .client_opened
        .lock()
        .unwrap()
        .keys()
        .copied()
        .collect();
    for id in &upstream_ids {
        assert!(gateway.server.handle(*id).is_none(), "{id:?}");
        assert!(gateway.client.handle(*id).is_some(), "{id:?}");
    }

    let Gateway {
        server,
        client,
        obs,
    } = gateway;
    let report = client.shutdown(Duration::from_secs(2));
    assert_eq!(report.total, 50, "{report:?}");
    assert_report_adds_up(&report, "gateway client");
    poll_until("every peer to see the Close", || {
        peers.closed() == plans.len()
    });
    {
        let logs = peers.logs.lock().unwrap();
        for plan in &plans {
            let closed = &logs[&plan.tag].closed;
            assert_eq!(closed.len(), 1, "tag {}", plan.tag);
            assert_eq!(closed[0].code.0, 1001, "{:?}", closed[0]);
        }
    }
    poll_until("every upstream connection to end", || {
        upstream_log.ends.lock().unwrap().len() == 50
    });
    // A new downstream finds no upstream: 1014.
    let mut late = RawClient::connect_with(server.local_addr(), &upgrade_request("/t/late", ""));
    late.stream.set_read_timeout(Some(WAIT)).unwrap();
    let close = late.read_close();
    assert_eq!(u16::from_be_bytes([close[0], close[1]]), 1014, "{close:?}");
    late.write_frame(true, 0x8, &close);
    assert!(late.wait_eof());
    drop(late);
    poll_until("no connection left", || {
        server.stats().total.connections() == 0 && upstream.stats().total.connections() == 0
    });
    let report = server.shutdown(Duration::from_secs(1));
    assert_eq!(report.total, 0, "{report:?}");
    // 51 downstreams opened, 50 upstreams.
    assert_eq!(obs.server_opened.lock().unwrap().len(), 51);
    assert_eq!(obs.server_closed.lock().unwrap().len(), 51);
    assert!(obs.server_closed.lock().unwrap().values().all(|&n| n == 1));
    assert_eq!(obs.client_opened.lock().unwrap().len(), 50);
    assert_eq!(obs.client_closed.lock().unwrap().len(), 50);
}

#[test]
fn a_codeless_close_and_a_longest_reason_cross_the_gateway() {
    let (upstream, upstream_log) = start_upstream(|b| b);
    let gateway = Gateway::start(upstream.local_addr(), |b| b);
    // 123 bytes of 1-, 2-, 3- and 4-byte characters.
    let longest = format!("{}{}", "é€😀".repeat(13), "a".repeat(123 - 13 * 9));
    assert_eq!(longest.len(), 123);
    let cases = [
        ("/t/codeless", Vec::new(), 1000, String::new()),
        (
            "/t/longest",
            common::close_payload(4999, &longest),
            4999,
            longest.clone(),
        ),
    ];
    for (path, payload, code, reason) in cases {
        let mut client =
            RawClient::connect_with(gateway.server.local_addr(), &upgrade_request(path, ""));
        client.stream.set_read_timeout(Some(WAIT)).unwrap();
        // A message first, so the upstream is open and echoing.
        client.write_frame(true, 0x1, b"hello");
        let (_, opcode, echo) = client.read_frame().expect("an echo");
        assert_eq!((opcode, echo.as_slice()), (0x1, &b"hello"[..]));
        client.write_frame(true, 0x8, &payload);
        client.read_close();
        assert!(client.wait_eof());
        drop(client);
        poll_until("the upstream connection to end", || {
            upstream_log
                .ends
                .lock()
                .unwrap()
                .iter()
                .any(|end| end.path == path)
        });
        let end = upstream_log
            .ends
            .lock()
            .unwrap()
            .iter()
            .find(|end| end.path == path)
            .cloned()
            .unwrap();
        assert_eq!(end.info.code.0, code, "{end:?}");
        assert_eq!(end.info.reason, reason, "{end:?}");
        assert_eq!(end.info.kind, CloseKind::Clean, "{end:?}");
    }
    poll_until("no connection left", || {
        upstream.stats().total.connections() == 0
            && gateway.server.stats().total.connections() == 0
            && gateway.client.stats().total.connections() == 0
    });
    gateway.obs.assert_each_closed_once(2);
}
