//! `GET /metrics` on `ringws serve`: Prometheus text whose counters reflect
//! the traffic just sent and the io_uring mode each worker got; `HEAD`
//! gets the head alone, other methods 405, other paths 404.

mod serve_support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serve_support::{http_get, http_request, Metrics, ServeProcess, WAIT};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

fn scrape(server: &ServeProcess) -> Metrics {
    let (status, head, body) = http_get(server.addr, "/metrics");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    Metrics::parse(&body)
}

/// Scrapes until `ready` holds (bounded): the server counts a close when
/// the connection is gone, a moment after the client saw it.
fn scrape_until(server: &ServeProcess, ready: impl Fn(&Metrics) -> bool) -> Metrics {
    let deadline = Instant::now() + WAIT;
    loop {
        let metrics = scrape(server);
        if ready(&metrics) {
            return metrics;
        }
        assert!(Instant::now() < deadline, "the metrics never got there");
        std::thread::sleep(Duration::from_millis(10));
    }
}

const TOTAL: (&str, &str) = ("worker", "total");

#[tokio::test]
async fn counters_reflect_the_traffic_just_sent() {
    let server = ServeProcess::start(&["--workers", "2", "--ping-interval", "none"]);
    let before = scrape(&server);
    assert_eq!(before.get("ringws_workers", &[]), 2.0);
    assert_eq!(before.get("ringws_messages_in_total", &[TOTAL]), 0.0);

    // An upgrade request without a key is refused with 400.
    let mut bad = std::net::TcpStream::connect(server.addr).unwrap();
    bad.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        bad,
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    let _ = bad.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");

    // Two connections: one closes with 1000, the other with 4001.
    let sizes = [5usize, 126, 1000, 70_000, 0];
    let mut sent_bytes = 0;
    for code in [1000u16, 4001] {
        let (mut client, _) = timeout(WAIT, tokio_tungstenite::connect_async(server.url()))
            .await
            .unwrap()
            .unwrap();
        for (index, &size) in sizes.iter().enumerate() {
            let message = if index % 2 == 0 {
                Message::Text("t".repeat(size))
            } else {
                Message::Binary(vec![9; size])
            };
            client.send(message.clone()).await.unwrap();
            let echoed = timeout(WAIT, client.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(echoed, message);
            sent_bytes += size;
        }
        client
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: "done".into(),
            })))
            .await
            .unwrap();
        while let Ok(Some(Ok(_))) = timeout(WAIT, client.next()).await {}
    }

    let messages = 2.0 * sizes.len() as f64;
    let bytes = sent_bytes as f64;
    // The engine's counters move at once; the io_uring loop's figures are
    // published by each worker once per turn it ends idle (or every period),
    // so they catch up a moment later.
    let metrics = scrape_until(&server, |m| {
        m.get("ringws_clean_closes_total", &[TOTAL]) == 2.0
            && m.get("ringws_io_bytes_total", &[TOTAL, ("direction", "sent")]) > bytes
            && m.get("ringws_pooled_bytes", &[TOTAL]) >= 70_000.0
    });
    for (name, expected) in [
        ("ringws_messages_in_total", messages),
        ("ringws_messages_out_total", messages),
        ("ringws_message_bytes_in_total", bytes),
        ("ringws_message_bytes_out_total", bytes),
        ("ringws_upgraded_total", 2.0),
        ("ringws_forced_terminations_total", 0.0),
        ("ringws_abnormal_closes_total", 0.0),
        ("ringws_protocol_errors_total", 0.0),
        ("ringws_handler_panics_total", 0.0),
        ("ringws_io_refused_total", 0.0),
        ("ringws_dropped_messages_total", 0.0),
        ("ringws_keepalive_timeouts_total", 0.0),
        ("ringws_close_duration_seconds_count", 2.0),
    ] {
        assert_eq!(metrics.get(name, &[TOTAL]), expected, "{name}");
        // The per-worker series add up to the total.
        assert_eq!(
            metrics.sum_workers(name, &[]),
            expected,
            "{name} per worker"
        );
    }
    // The bad request, the two WebSocket connections and the scrapes so
    // far were all accepted.
    assert!(metrics.get("ringws_accepted_total", &[TOTAL]) >= 4.0);
    assert!(metrics.get("ringws_plain_http_responses_total", &[TOTAL]) >= 1.0);
    assert_eq!(
        metrics.get(
            "ringws_handshakes_failed_total",
            &[TOTAL, ("status", "400")]
        ),
        1.0
    );
    let closes = |code: &str, initiator: &str| {
        metrics.get(
            "ringws_closes_total",
            &[TOTAL, ("code", code), ("initiator", initiator)],
        )
    };
    assert_eq!(closes("1000", "remote"), 1.0);
    assert_eq!(closes("4000-4999", "remote"), 1.0);
    assert_eq!(closes("1000", "local"), 0.0);
    assert_eq!(closes("1001", "remote"), 0.0);
    assert_eq!(
        metrics.get(
            "ringws_close_duration_seconds_bucket",
            &[TOTAL, ("le", "+Inf")]
        ),
        2.0
    );
    close_duration_sum_fits_its_buckets(&metrics, 2.0);

    // The io_uring loop's figures: the sockets carried the payloads plus
    // framing and HTTP; the idle workers lend no receive buffer; the
    // 70,000-byte messages, larger than a receive buffer, were assembled in
    // buffers the workers keep for reuse.
    let io_bytes =
        |direction: &str| metrics.get("ringws_io_bytes_total", &[TOTAL, ("direction", direction)]);
    assert!(io_bytes("received") > bytes, "{}", io_bytes("received"));
    assert!(io_bytes("sent") > bytes, "{}", io_bytes("sent"));
    assert!(metrics.get("ringws_io_sends_total", &[TOTAL]) >= messages);
    assert!(metrics.get("ringws_io_loop_turns_total", &[TOTAL]) > 0.0);
    assert!(metrics.get("ringws_recv_buffers", &[TOTAL, ("state", "offered")]) > 0.0);
    assert_eq!(
        metrics.get("ringws_recv_buffers", &[TOTAL, ("state", "lent")]),
        0.0
    );
    assert!(metrics.get("ringws_pooled_bytes", &[TOTAL]) >= 70_000.0);
    assert_eq!(
        metrics.get("ringws_recv_buffer_released_bytes_total", &[TOTAL]),
        0.0,
        "the buffer release is off by default"
    );
    for name in [
        "ringws_io_sends_total",
        "ringws_io_loop_turns_total",
        "ringws_pooled_bytes",
    ] {
        assert_eq!(
            metrics.sum_workers(name, &[]),
            metrics.get(name, &[TOTAL]),
            "{name} per worker"
        );
    }
    for state in ["open", "closing_local", "closing_remote"] {
        assert_eq!(
            metrics.get("ringws_connections", &[TOTAL, ("state", state)]),
            0.0,
            "{state}"
        );
    }
}

/// The close-duration histogram's `_sum` (seconds) exists for every worker
/// and the total, the workers' sums add up to the total, and each sum lies
/// between the lower and upper bounds of the buckets its `count` closes
/// fell in.
fn close_duration_sum_fits_its_buckets(metrics: &Metrics, count: f64) {
    const NAME: &str = "ringws_close_duration_seconds";
    let workers = metrics.get("ringws_workers", &[]) as usize;
    let series: Vec<String> = (0..workers)
        .map(|worker| worker.to_string())
        .chain(std::iter::once("total".to_owned()))
        .collect();
    let sum_name = format!("{NAME}_sum");
    let count_name = format!("{NAME}_count");
    let bucket_name = format!("{NAME}_bucket");
    for worker in &series {
        let labels = [("worker", worker.as_str())];
        let sum = metrics.get(&sum_name, &labels);
        let closes = metrics.get(&count_name, &labels);
        assert!(sum >= 0.0, "worker {worker}: sum {sum}");
        let mut lower = 0.0;
        let mut upper = 0.0;
        let mut previous_le = 0.0;
        let mut previous = 0.0;
        for bound_ms in ringws::CLOSE_DURATION_BOUNDS_MS
            .iter()
            .map(|&ms| Some(ms))
            .chain(std::iter::once(None))
        {
            let (le, bound) = match bound_ms {
                Some(ms) => {
                    let seconds = ms as f64 / 1000.0;
                    (seconds.to_string(), seconds)
                }
                None => ("+Inf".to_owned(), f64::INFINITY),
            };
            let cumulative = metrics.get(&bucket_name, &[labels[0], ("le", le.as_str())]);
            let in_bucket = cumulative - previous;
            lower += in_bucket * previous_le;
            if in_bucket > 0.0 {
                upper += in_bucket * bound;
            }
            previous_le = bound;
            previous = cumulative;
        }
        assert_eq!(previous, closes, "worker {worker}: +Inf bucket = count");
        assert!(
            lower <= sum && sum <= upper,
            "worker {worker}: {lower} <= sum {sum} <= {upper}"
        );
    }
    let total = metrics.get(&sum_name, &[TOTAL]);
    assert_eq!(metrics.get(&count_name, &[TOTAL]), count);
    if count > 0.0 {
        assert!(total > 0.0, "{count} closes took some time");
    }
    let per_worker = metrics.sum_workers(&sum_name, &[]);
    assert!(
        (per_worker - total).abs() < 1e-9,
        "per-worker sums {per_worker} add up to the total {total}"
    );
}

#[test]
fn only_get_metrics_is_served() {
    let server = ServeProcess::start(&["--workers", "1"]);
    let (status, _, _) = http_get(server.addr, "/");
    assert_eq!(status, 404);
    let (status, _, _) = http_get(server.addr, "/metrics/extra");
    assert_eq!(status, 404);
    let (status, _, body) = http_get(server.addr, "/metrics?format=text");
    assert_eq!(status, 200);
    assert!(body.contains("# TYPE ringws_messages_in_total counter\n"));
    // Every sample parses and every family has a known type.
    let metrics = Metrics::parse(&body);
    assert_eq!(metrics.get("ringws_workers", &[]), 1.0);
    // Before any close the histogram is empty but complete: _sum included.
    close_duration_sum_fits_its_buckets(&metrics, 0.0);
    for line in body.lines().filter(|line| line.starts_with("# TYPE ")) {
        let kind = line.rsplit(' ').next().unwrap();
        assert!(matches!(kind, "counter" | "gauge" | "histogram"), "{line}");
    }
}

#[test]
fn head_gets_the_head_alone_and_other_methods_are_told_what_is_allowed() {
    let server = ServeProcess::start(&["--workers", "1"]);
    let (status, head, body) = http_request(server.addr, "HEAD", "/metrics");
    assert_eq!(status, 200, "{head}");
    assert_eq!(body, "", "a HEAD answer carries no body");
    let length: usize = header(&head, "content-length").parse().unwrap();
    assert!(length > 1000, "the length of the body a GET gets: {head}");
    for method in ["POST", "DELETE"] {
        let (status, head, _) = http_request(server.addr, method, "/metrics");
        assert_eq!(status, 405, "{head}");
        assert_eq!(header(&head, "allow"), "GET, HEAD", "{head}");
    }
    let (status, head, body) = http_request(server.addr, "HEAD", "/nowhere");
    assert_eq!((status, body.as_str()), (404, ""), "{head}");
}

/// The value of header `name` (lowercase) in a response head.
fn header<'a>(head: &'a str, name: &str) -> &'a str {
    head.lines()
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
        .unwrap_or_else(|| panic!("no {name} in {head}"))
}

/// Connections refused at the worker's limit show in the metrics (once the
/// worker has room again: while it is full, a scrape is refused too).
#[test]
fn connections_refused_at_the_limit_are_counted() {
    let server = ServeProcess::start(&["--workers", "1", "--max-connections-per-worker", "1"]);
    // Upgraded, so it holds the worker's one place before the others come.
    let held = upgraded(&server);
    for _ in 0..2 {
        let mut refused = std::net::TcpStream::connect(server.addr).unwrap();
        refused.set_read_timeout(Some(WAIT)).unwrap();
        let mut answer = Vec::new();
        let _ = refused.read_to_end(&mut answer);
        assert!(answer.is_empty(), "refused without an answer");
    }
    drop(held);
    // Until the worker has closed the held connection, scrapes are refused
    // (and counted) too.
    let deadline = Instant::now() + WAIT;
    let refused = loop {
        if let Some(body) = try_scrape(&server) {
            break Metrics::parse(&body).get("ringws_io_refused_total", &[TOTAL]);
        }
        assert!(Instant::now() < deadline, "no scrape got through");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(refused >= 2.0, "{refused}");
}

/// `--metrics-addr`: the metrics have an address of their own, where a
/// scrape is answered while the worker is full (on the WebSocket port it is
/// refused then, as above).
#[test]
fn the_metrics_address_answers_while_the_workers_are_full() {
    let server = ServeProcess::start(&[
        "--workers",
        "1",
        "--max-connections-per-worker",
        "1",
        "--metrics-addr",
        "127.0.0.1:0",
    ]);
    let line = server.stderr_line("metrics at");
    let metrics_addr: std::net::SocketAddr = line
        .split(" and http://")
        .nth(1)
        .and_then(|rest| rest.split("/metrics").next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in {line:?}"));
    let held = upgraded(&server);
    assert!(try_scrape(&server).is_none(), "the WebSocket port is full");

    // A worker publishes its counters when it next goes idle, which can be
    // just after the refused client saw its connection closed.
    let deadline = Instant::now() + WAIT;
    let metrics = loop {
        let (status, head, body) = http_get(metrics_addr, "/metrics?x=1");
        assert_eq!(status, 200, "{head}");
        assert!(head.contains("text/plain; version=0.0.4"), "{head}");
        let metrics = Metrics::parse(&body);
        if metrics.get("ringws_io_refused_total", &[TOTAL]) >= 1.0 {
            break metrics;
        }
        assert!(Instant::now() < deadline, "the refusal was never counted");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        metrics.get("ringws_connections", &[TOTAL, ("state", "open")]),
        1.0
    );
    let (status, head, body) = http_request(metrics_addr, "HEAD", "/metrics");
    assert_eq!((status, body.as_str()), (200, ""), "{head}");
    let (status, head, _) = http_request(metrics_addr, "POST", "/metrics");
    assert_eq!(status, 405, "{head}");
    assert!(head.contains("Allow: GET, HEAD"), "{head}");
    assert_eq!(http_get(metrics_addr, "/").0, 404);
    // No WebSocket there.
    let mut upgrade = std::net::TcpStream::connect(metrics_addr).unwrap();
    upgrade.set_read_timeout(Some(WAIT)).unwrap();
    write!(upgrade, "{UPGRADE}").unwrap();
    let mut answer = String::new();
    upgrade.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    drop(held);
}

/// A connection upgraded to WebSocket (so it holds a place on its worker).
fn upgraded(server: &ServeProcess) -> std::net::TcpStream {
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(stream, "{UPGRADE}").unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    stream
}

/// A WebSocket upgrade request for `/`.
const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// `GET /metrics`, or `None` when the connection is refused.
fn try_scrape(server: &ServeProcess) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(server.addr).ok()?;
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

#[test]
fn the_ring_mode_each_worker_got_is_shown() {
    let cases = [("auto", "single_issuer+defer_taskrun"), ("plain", "plain")];
    for (setup, expected) in cases {
        let server = ServeProcess::start(&["--workers", "2", "--ring-setup", setup]);
        let metrics = scrape(&server);
        for worker in ["0", "1"] {
            for mode in ["single_issuer+defer_taskrun", "coop_taskrun", "plain"] {
                assert_eq!(
                    metrics.get(
                        "ringws_worker_ring_mode",
                        &[("worker", worker), ("mode", mode)]
                    ),
                    if mode == expected { 1.0 } else { 0.0 },
                    "--ring-setup {setup}: worker {worker}, mode {mode}"
                );
            }
        }
        let startup = server.stderr_line("worker(s)");
        assert!(
            startup.contains(&format!("2 worker(s) (io_uring {expected})")),
            "{startup}"
        );
    }
}
