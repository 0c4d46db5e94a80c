//! `GET /metrics`: the server's [`Stats`] in the Prometheus text exposition
//! format (version 0.0.4).
//!
//! Every family has one series per worker (`worker="0"`, `worker="1"`, ...)
//! and one for the whole server (`worker="total"`), so a dashboard can show
//! either without summing (sum over `worker!="total"` to aggregate the
//! per-worker series yourself). Every series a family can have is written,
//! zeros included, so none appears out of nowhere after the first event.
//! Two families describe the server rather than count: `ringws_workers`
//! (one series) and `ringws_worker_ring_mode` (per worker, no total: 1 for
//! the io_uring mode the worker's ring got, 0 for the others).
//!
//! The close-duration histogram has the three series Prometheus expects:
//! cumulative `_bucket`s (ending with `le="+Inf"`), `_sum` (the exact total
//! in seconds, to the microsecond) and `_count`.

use std::fmt::{self, Write};
use std::io::{self, Read, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ringws::{
    HttpRequest, HttpResponse, Initiator, RingMode, ServerControl, Stats, WorkerStats,
    CLOSE_DURATION_BOUNDS_MS, COUNTED_STATUSES,
};
use ringws_proto::handshake::{parse_request, write_http_response, HeadLimits, RequestKind};

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The path the metrics are served on.
pub const PATH: &str = "/metrics";

/// Close-code labels in the order [`ringws::CloseCounts`] keeps them: each
/// code 1000–1015, then the 3000–3999 and 4000–4999 ranges, then anything
/// else. The second element is a code that falls in that bucket.
const CLOSE_CODE_LABELS: [(&str, u16); 19] = [
    ("1000", 1000),
    ("1001", 1001),
    ("1002", 1002),
    ("1003", 1003),
    ("1004", 1004),
    ("1005", 1005),
    ("1006", 1006),
    ("1007", 1007),
    ("1008", 1008),
    ("1009", 1009),
    ("1010", 1010),
    ("1011", 1011),
    ("1012", 1012),
    ("1013", 1013),
    ("1014", 1014),
    ("1015", 1015),
    ("3000-3999", 3000),
    ("4000-4999", 4000),
    ("other", 0),
];

/// Every io_uring mode a worker's ring can get, most capable first: the
/// `mode` labels of `ringws_worker_ring_mode`.
const RING_MODES: [RingMode; 3] = [
    RingMode::DeferTaskrun,
    RingMode::CoopTaskrun,
    RingMode::Plain,
];

/// Answers `GET /metrics` from a server's stats once the server is
/// attached; shared with the server's plain HTTP hook, which exists before
/// the server does.
#[derive(Debug, Clone, Default)]
pub struct MetricsEndpoint {
    control: Arc<OnceLock<ServerControl>>,
}

impl MetricsEndpoint {
    /// An endpoint with no server yet (it answers 503 until
    /// [`attach`](Self::attach)).
    pub fn new() -> MetricsEndpoint {
        MetricsEndpoint::default()
    }

    /// Serves this server's stats from now on.
    pub fn attach(&self, control: ServerControl) {
        let _ = self.control.set(control);
    }

    /// The answer to a plain HTTP request: the metrics for `GET /metrics`
    /// (and its head for `HEAD`), 405 naming those two for another method
    /// on that path, `None` (404) for other paths.
    pub fn respond(&self, request: &HttpRequest<'_>) -> Option<HttpResponse> {
        self.answer(request.method(), request.path())
    }

    /// [`respond`](Self::respond) for a request line's method and target.
    fn answer(&self, method: &str, target: &str) -> Option<HttpResponse> {
        // The query string does not select anything; scrapers may add one.
        let path = target.split('?').next().unwrap_or_default();
        if path != PATH {
            return None;
        }
        if !matches!(method, "GET" | "HEAD") {
            let refusal = HttpResponse::new(
                405,
                "text/plain; charset=utf-8",
                "only GET and HEAD are supported\n",
            );
            return Some(refusal.with_header("Allow", "GET, HEAD"));
        }
        Some(match self.control.get() {
            Some(control) => HttpResponse::new(200, CONTENT_TYPE, render(&control.stats())),
            None => HttpResponse::new(503, "text/plain; charset=utf-8", "starting\n"),
        })
    }
}

/// How long a scrape on the separate listener may take to arrive or to be
/// read: one slow client holds up the next scrape at most this long.
const SCRAPE_IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `endpoint` on `listener` from a thread of its own, one request per
/// connection: scrapes there take no place among the server's connections,
/// so they are answered while the workers are full. Paths other than
/// [`PATH`] get 404, WebSocket upgrades included.
pub fn serve_apart(listener: TcpListener, endpoint: MetricsEndpoint) -> io::Result<()> {
    std::thread::Builder::new()
        .name("ringws-metrics".into())
        .spawn(move || loop {
            match listener.accept() {
                // A scraper that goes away mid-answer is its own problem.
                Ok((stream, _)) => {
                    let _ = endpoint.answer_connection(stream);
                }
                // Out of file descriptors, say: wait rather than spin.
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        })?;
    Ok(())
}

impl MetricsEndpoint {
    /// Reads one request from `stream`, answers it and closes.
    fn answer_connection(&self, mut stream: TcpStream) -> io::Result<()> {
        stream.set_read_timeout(Some(SCRAPE_IO_TIMEOUT))?;
        stream.set_write_timeout(Some(SCRAPE_IO_TIMEOUT))?;
        let limits = HeadLimits::DEFAULT;
        let mut request = Vec::with_capacity(512);
        let mut chunk = [0u8; 1024];
        let mut response = Vec::with_capacity(4096);
        loop {
            let read = stream.read(&mut chunk)?;
            if read == 0 {
                return Ok(());
            }
            request.extend_from_slice(&chunk[..read]);
            let (head_only, answer) = match parse_request(&request, &limits) {
                Ok(None) => continue,
                Err(error) => {
                    error.write_response(&mut response);
                    break;
                }
                Ok(Some(parsed)) => match parsed.kind {
                    RequestKind::PlainHttp(plain) => (
                        plain.method() == "HEAD",
                        self.answer(plain.method(), plain.path()),
                    ),
                    // No WebSocket here.
                    RequestKind::Upgrade(_) => (false, None),
                },
            };
            let answer = answer.unwrap_or_else(|| {
                HttpResponse::new(404, "text/plain; charset=utf-8", "not found\n")
            });
            let mut headers = vec![("Content-Type", &*answer.content_type)];
            headers.extend(
                answer
                    .headers
                    .iter()
                    .map(|(name, value)| (&**name, &**value)),
            );
            // The answers above are fixed and valid.
            let _ = write_http_response(
                answer.status,
                &headers,
                &answer.body,
                head_only,
                &mut response,
            );
            break;
        }
        stream.write_all(&response)?;
        stream.shutdown(std::net::Shutdown::Write)
    }
}

/// One metric family: its name, help text, type, and how to write its
/// samples for one worker's (or the total's) stats.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: fn(&WorkerStats) -> Vec<Sample>,
}

/// One sample: extra labels (after `worker`), a name suffix (histograms),
/// and the value.
struct Sample {
    suffix: &'static str,
    labels: Vec<(&'static str, String)>,
    value: Value,
}

/// A sample's value: a count, or a duration written in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    Count(u64),
    Seconds(Duration),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::Count(count) => write!(f, "{count}"),
            Value::Seconds(duration) => f.write_str(&seconds_value(duration)),
        }
    }
}

fn plain(value: u64) -> Vec<Sample> {
    vec![Sample {
        suffix: "",
        labels: Vec::new(),
        value: Value::Count(value),
    }]
}

fn labelled(label: &'static str, values: impl IntoIterator<Item = (String, u64)>) -> Vec<Sample> {
    values
        .into_iter()
        .map(|(name, value)| Sample {
            suffix: "",
            labels: vec![(label, name)],
            value: Value::Count(value),
        })
        .collect()
}

/// [`labelled`] with label values known at compile time.
fn labelled_static(
    label: &'static str,
    values: impl IntoIterator<Item = (&'static str, u64)>,
) -> Vec<Sample> {
    labelled(
        label,
        values
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value)),
    )
}

fn connections(stats: &WorkerStats) -> Vec<Sample> {
    labelled_static(
        "state",
        [
            ("handshaking", stats.handshaking),
            ("open", stats.open),
            ("closing_local", stats.closing_local),
            ("closing_remote", stats.closing_remote),
        ],
    )
}

fn handshakes_failed(stats: &WorkerStats) -> Vec<Sample> {
    let counts = &stats.handshakes_failed;
    labelled(
        "status",
        COUNTED_STATUSES
            .iter()
            .map(|&status| (status.to_string(), counts.get(status)))
            .chain(std::iter::once(("other".to_owned(), counts.other()))),
    )
}

fn closes(stats: &WorkerStats) -> Vec<Sample> {
    let mut samples = Vec::with_capacity(2 * CLOSE_CODE_LABELS.len());
    for (initiator, name) in [(Initiator::Local, "local"), (Initiator::Remote, "remote")] {
        for (label, code) in CLOSE_CODE_LABELS {
            samples.push(Sample {
                suffix: "",
                labels: vec![("code", label.to_owned()), ("initiator", name.to_owned())],
                value: Value::Count(stats.closes.get(code, initiator)),
            });
        }
    }
    samples
}

fn close_durations(stats: &WorkerStats) -> Vec<Sample> {
    let mut samples = Vec::with_capacity(CLOSE_DURATION_BOUNDS_MS.len() + 3);
    let mut cumulative = 0;
    for (bound_ms, count) in stats.close_durations.buckets() {
        cumulative += count;
        let le = match bound_ms {
            Some(ms) => seconds_label(ms),
            None => "+Inf".to_owned(),
        };
        samples.push(Sample {
            suffix: "_bucket",
            labels: vec![("le", le)],
            value: Value::Count(cumulative),
        });
    }
    samples.push(Sample {
        suffix: "_sum",
        labels: Vec::new(),
        value: Value::Seconds(stats.close_durations.sum()),
    });
    samples.push(Sample {
        suffix: "_count",
        labels: Vec::new(),
        value: Value::Count(stats.close_durations.count()),
    });
    samples
}

fn io_bytes(stats: &WorkerStats) -> Vec<Sample> {
    labelled_static(
        "direction",
        [
            ("received", stats.io.bytes_received),
            ("sent", stats.io.bytes_sent),
        ],
    )
}

fn recv_buffers(stats: &WorkerStats) -> Vec<Sample> {
    labelled_static(
        "state",
        [
            ("offered", stats.io.recv_buffers_offered),
            ("lent", stats.io.recv_buffers_lent),
        ],
    )
}

/// A duration as an exact decimal number of seconds, to the microsecond
/// (the resolution of the engine's sum): `0` → `0`, 1.5 ms → `0.0015`,
/// 2 s → `2`.
fn seconds_value(duration: Duration) -> String {
    let micros = duration.subsec_micros();
    if micros == 0 {
        duration.as_secs().to_string()
    } else {
        format!("{}.{micros:06}", duration.as_secs())
            .trim_end_matches('0')
            .to_owned()
    }
}

/// Milliseconds as a seconds label: `5` → `0.005`, `2000` → `2`.
fn seconds_label(ms: u64) -> String {
    let whole = ms / 1000;
    let fraction = ms % 1000;
    if fraction == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{fraction:03}")
            .trim_end_matches('0')
            .to_owned()
    }
}

const FAMILIES: &[Family] = &[
    Family {
        name: "ringws_connections",
        help: "Connections by state: in the HTTP handshake, open, closing (started by the server or by the peer).",
        kind: "gauge",
        samples: connections,
    },
    Family {
        name: "ringws_accepted_total",
        help: "TCP connections accepted.",
        kind: "counter",
        samples: |s| plain(s.accepted),
    },
    Family {
        name: "ringws_upgraded_total",
        help: "WebSocket handshakes completed.",
        kind: "counter",
        samples: |s| plain(s.upgraded),
    },
    Family {
        name: "ringws_handshakes_failed_total",
        help: "Upgrade requests refused, by HTTP status.",
        kind: "counter",
        samples: handshakes_failed,
    },
    Family {
        name: "ringws_handshake_timeouts_total",
        help: "Connections closed because the handshake took too long.",
        kind: "counter",
        samples: |s| plain(s.handshake_timeouts),
    },
    Family {
        name: "ringws_plain_http_responses_total",
        help: "Plain HTTP requests answered (this endpoint included).",
        kind: "counter",
        samples: |s| plain(s.plain_http_responses),
    },
    Family {
        name: "ringws_messages_in_total",
        help: "Messages received.",
        kind: "counter",
        samples: |s| plain(s.messages_in),
    },
    Family {
        name: "ringws_message_bytes_in_total",
        help: "Payload bytes of the messages received.",
        kind: "counter",
        samples: |s| plain(s.bytes_in),
    },
    Family {
        name: "ringws_messages_out_total",
        help: "Messages queued for sending.",
        kind: "counter",
        samples: |s| plain(s.messages_out),
    },
    Family {
        name: "ringws_message_bytes_out_total",
        help: "Payload bytes of the messages queued for sending.",
        kind: "counter",
        samples: |s| plain(s.bytes_out),
    },
    Family {
        name: "ringws_closes_total",
        help: "Connections closed, by the code of the first Close (1006: none was exchanged) and by who started the close.",
        kind: "counter",
        samples: closes,
    },
    Family {
        name: "ringws_clean_closes_total",
        help: "Connections that ended after Close frames went both ways.",
        kind: "counter",
        samples: |s| plain(s.clean_closes),
    },
    Family {
        name: "ringws_forced_terminations_total",
        help: "Connections the server cut without a completed closing handshake (terminate, close timeout, shutdown deadline).",
        kind: "counter",
        samples: |s| plain(s.forced_terminations),
    },
    Family {
        name: "ringws_abnormal_closes_total",
        help: "Connections that ended without a closing handshake otherwise (peer's FIN or reset, socket or protocol error).",
        kind: "counter",
        samples: |s| plain(s.abnormal_closes),
    },
    Family {
        name: "ringws_keepalive_timeouts_total",
        help: "Keepalive Pongs that did not arrive in time (Close 1011 sent).",
        kind: "counter",
        samples: |s| plain(s.keepalive_timeouts),
    },
    Family {
        name: "ringws_close_timeouts_total",
        help: "Closes that ran out of time and were aborted.",
        kind: "counter",
        samples: |s| plain(s.close_timeouts),
    },
    Family {
        name: "ringws_protocol_errors_total",
        help: "Connections failed for a protocol violation (1002, 1007, 1009).",
        kind: "counter",
        samples: |s| plain(s.protocol_errors),
    },
    Family {
        name: "ringws_handler_panics_total",
        help: "Application callbacks that panicked, each failing only its connection (1011, or HTTP 500).",
        kind: "counter",
        samples: |s| plain(s.handler_panics),
    },
    Family {
        name: "ringws_dropped_messages_total",
        help: "Messages dropped by the backpressure policy.",
        kind: "counter",
        samples: |s| plain(s.dropped_messages),
    },
    Family {
        name: "ringws_backpressure_closes_total",
        help: "Connections closed by the backpressure policy.",
        kind: "counter",
        samples: |s| plain(s.backpressure_closes),
    },
    Family {
        name: "ringws_close_duration_seconds",
        help: "Time from the first Close (or the decision to close) until the connection was gone.",
        kind: "histogram",
        samples: close_durations,
    },
    Family {
        name: "ringws_io_bytes_total",
        help: "Bytes the worker's sockets received and sent: frames, handshakes and HTTP answers.",
        kind: "counter",
        samples: io_bytes,
    },
    Family {
        name: "ringws_io_loop_turns_total",
        help: "Turns of the worker's io_uring loop (each reaps every completion ready, then submits in one system call).",
        kind: "counter",
        samples: |s| plain(s.io.turns),
    },
    Family {
        name: "ringws_io_sends_total",
        help: "Send operations submitted (at most one vectored send per connection per loop turn).",
        kind: "counter",
        samples: |s| plain(s.io.sends),
    },
    Family {
        name: "ringws_io_partial_sends_total",
        help: "Sends that wrote less than offered because the socket's send buffer was full.",
        kind: "counter",
        samples: |s| plain(s.io.partial_sends),
    },
    Family {
        name: "ringws_io_payloads_sent_in_place_total",
        help: "Payloads sent from the receive buffer they arrived in, uncopied.",
        kind: "counter",
        samples: |s| plain(s.io.payloads_sent_in_place),
    },
    Family {
        name: "ringws_io_refused_total",
        help: "Accepted sockets closed at once without an answer: the worker held --max-connections-per-worker connections, was shutting down, or could not create the connection's state.",
        kind: "counter",
        samples: |s| plain(s.io.refused),
    },
    Family {
        name: "ringws_io_accept_errors_total",
        help: "Accepts that failed (for example EMFILE: out of file descriptors).",
        kind: "counter",
        samples: |s| plain(s.io.accept_errors),
    },
    Family {
        name: "ringws_recv_buffer_exhaustions_total",
        help: "Receives that found the worker's receive buffer ring empty (it grows, up to its configured count, when this happens).",
        kind: "counter",
        samples: |s| plain(s.io.recv_enobufs),
    },
    Family {
        name: "ringws_recv_buffers",
        help: "Receive buffers offered to the kernel, and those lent out now (being read, or held by queued sends).",
        kind: "gauge",
        samples: recv_buffers,
    },
    Family {
        name: "ringws_recv_buffer_resident_bytes",
        help: "Resident bytes of the receive buffers at the last release check (0 while the buffer release is off).",
        kind: "gauge",
        samples: |s| plain(s.io.recv_resident_bytes()),
    },
    Family {
        name: "ringws_recv_buffer_released_bytes_total",
        help: "Bytes of receive buffer pages given back to the kernel by the buffer release.",
        kind: "counter",
        samples: |s| plain(s.io.recv_bytes_released),
    },
    Family {
        name: "ringws_pooled_bytes",
        help: "Capacity of the buffers the worker keeps for reuse (assembled messages, copied replies).",
        kind: "gauge",
        samples: |s| plain(s.io.pooled_bytes),
    },
];

/// The text exposition of `stats`: every family, per worker and in total.
pub fn render(stats: &Stats) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let series: Vec<(String, &WorkerStats)> = stats
        .workers
        .iter()
        .enumerate()
        .map(|(index, worker)| (index.to_string(), worker))
        .chain(std::iter::once(("total".to_owned(), &stats.total)))
        .collect();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "# HELP ringws_workers Worker threads, each with its own io_uring.\n\
         # TYPE ringws_workers gauge\nringws_workers {}",
        stats.workers.len()
    );
    let _ = writeln!(
        out,
        "# HELP ringws_worker_ring_mode The io_uring setup each worker's ring got (1; 0 for the \
         others): the most capable that --ring-setup allows and the kernel grants, so a fallback \
         on an older kernel shows here.\n# TYPE ringws_worker_ring_mode gauge"
    );
    for (index, worker) in stats.workers.iter().enumerate() {
        // A worker that has not started has no mode yet: no series.
        let Some(obtained) = worker.ring_mode else {
            continue;
        };
        for mode in RING_MODES {
            let _ = writeln!(
                out,
                "ringws_worker_ring_mode{{worker=\"{index}\",mode=\"{mode}\"}} {}",
                u8::from(mode == obtained)
            );
        }
    }
    for family in FAMILIES {
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
        for (worker, worker_stats) in &series {
            for sample in (family.samples)(worker_stats) {
                let _ = write!(out, "{}{}{{worker=\"{worker}\"", family.name, sample.suffix);
                for (name, value) in &sample.labels {
                    let _ = write!(out, ",{name}=\"{value}\"");
                }
                let _ = writeln!(out, "}} {}", sample.value);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_labels_are_exact_decimals() {
        let labels: Vec<String> = CLOSE_DURATION_BOUNDS_MS
            .iter()
            .map(|&ms| seconds_label(ms))
            .collect();
        assert_eq!(
            labels,
            [
                "0.001", "0.002", "0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1", "2",
                "5", "10"
            ]
        );
    }

    #[test]
    fn close_code_labels_cover_every_bucket_once() {
        // A `CloseCounts` with one close per bucket (the engine's own
        // bucketing decides where each code goes) is not constructible
        // here, so check the table against the documented bucketing:
        // codes 1000..=1015 individually, then the two ranges and the rest.
        for (index, (label, code)) in CLOSE_CODE_LABELS.iter().enumerate().take(16) {
            assert_eq!(*code, 1000 + index as u16);
            assert_eq!(*label, code.to_string());
        }
        assert!((3000..=3999).contains(&CLOSE_CODE_LABELS[16].1));
        assert!((4000..=4999).contains(&CLOSE_CODE_LABELS[17].1));
        assert!(!(1000..=1015).contains(&CLOSE_CODE_LABELS[18].1));
    }

    /// Parses `name{labels} value` lines into (name, labels, value).
    fn samples(text: &str) -> Vec<(String, String, f64)> {
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let (name, labels) = match series.split_once('{') {
                    Some((name, labels)) => (name, labels.trim_end_matches('}')),
                    None => (series, ""),
                };
                (name.to_owned(), labels.to_owned(), value.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn stats_render_every_family_per_worker_and_total() {
        let mut busy = WorkerStats::default();
        busy.messages_in = 7;
        busy.open = 2;
        busy.io.bytes_received = 9;
        busy.io.recv_pages_resident = 3;
        busy.ring_mode = Some(RingMode::DeferTaskrun);
        let mut total = busy;
        total.messages_in += 5;
        total.ring_mode = None;
        let mut idle = WorkerStats::default();
        idle.ring_mode = Some(RingMode::Plain);
        let stats = Stats {
            workers: vec![busy, idle],
            total,
        };
        let text = render(&stats);
        let parsed = samples(&text);
        let value = |name: &str, labels: &str| {
            parsed
                .iter()
                .find(|(n, l, _)| n == name && l == labels)
                .map(|(_, _, value)| *value)
        };
        assert_eq!(value("ringws_workers", ""), Some(2.0));
        // One series per worker and mode: 1 for the mode it got; no total.
        let ring_mode = |worker: &str, mode: &str| {
            value(
                "ringws_worker_ring_mode",
                &format!("worker=\"{worker}\",mode=\"{mode}\""),
            )
        };
        assert_eq!(ring_mode("0", "single_issuer+defer_taskrun"), Some(1.0));
        assert_eq!(ring_mode("0", "coop_taskrun"), Some(0.0));
        assert_eq!(ring_mode("0", "plain"), Some(0.0));
        assert_eq!(ring_mode("1", "single_issuer+defer_taskrun"), Some(0.0));
        assert_eq!(ring_mode("1", "plain"), Some(1.0));
        assert!(!text.contains("ringws_worker_ring_mode{worker=\"total\""));
        assert_eq!(
            text.matches("# TYPE ringws_worker_ring_mode gauge\n")
                .count(),
            1
        );
        assert_eq!(value("ringws_messages_in_total", "worker=\"0\""), Some(7.0));
        assert_eq!(value("ringws_messages_in_total", "worker=\"1\""), Some(0.0));
        assert_eq!(
            value("ringws_messages_in_total", "worker=\"total\""),
            Some(12.0)
        );
        assert_eq!(
            value("ringws_connections", "worker=\"0\",state=\"open\""),
            Some(2.0)
        );
        assert_eq!(
            value(
                "ringws_io_bytes_total",
                "worker=\"0\",direction=\"received\""
            ),
            Some(9.0)
        );
        assert_eq!(
            value("ringws_recv_buffer_resident_bytes", "worker=\"0\""),
            Some(3.0 * 4096.0)
        );
        assert_eq!(
            value(
                "ringws_closes_total",
                "worker=\"total\",code=\"1001\",initiator=\"local\""
            ),
            Some(0.0)
        );
        for family in FAMILIES {
            assert_eq!(
                text.matches(&format!("# TYPE {} {}\n", family.name, family.kind))
                    .count(),
                1,
                "{}",
                family.name
            );
            for worker in ["0", "1", "total"] {
                let label = format!("worker=\"{worker}\"");
                assert!(
                    parsed
                        .iter()
                        .any(|(name, labels, _)| name.starts_with(family.name)
                            && labels.starts_with(&label)),
                    "{} has no series for worker {worker}",
                    family.name
                );
            }
        }
        // Histogram buckets end with +Inf, then the sum and the count, for
        // every worker and the total.
        for worker in ["0", "1", "total"] {
            assert!(
                text.contains(&format!(
                    "ringws_close_duration_seconds_bucket{{worker=\"{worker}\",le=\"+Inf\"}} 0\n\
                     ringws_close_duration_seconds_sum{{worker=\"{worker}\"}} 0\n\
                     ringws_close_duration_seconds_count{{worker=\"{worker}\"}} 0\n"
                )),
                "worker {worker}"
            );
        }
        // Each sample line: a metric name, braces, a space, an integer (a
        // plain non-negative decimal for the sums).
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap();
            if series.starts_with("ringws_close_duration_seconds_sum{") {
                assert!(is_plain_decimal(value), "{line}");
            } else {
                assert!(value.parse::<u64>().is_ok(), "{line}");
            }
            assert!(series.starts_with("ringws_"), "{line}");
        }
    }

    /// Digits with at most one `.` between digits: no sign, no exponent.
    fn is_plain_decimal(value: &str) -> bool {
        let mut parts = value.split('.');
        let whole = parts.next().unwrap_or_default();
        let fraction = parts.next();
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        parts.next().is_none() && digits(whole) && fraction.is_none_or(digits)
    }

    #[test]
    fn seconds_values_are_exact_decimals() {
        let cases = [
            (Duration::ZERO, "0"),
            (Duration::from_nanos(999), "0"),
            (Duration::from_micros(1), "0.000001"),
            (Duration::from_micros(1500), "0.0015"),
            (Duration::from_millis(250), "0.25"),
            (Duration::from_secs(2), "2"),
            (Duration::new(86_400, 123_456_789), "86400.123456"),
        ];
        for (duration, text) in cases {
            assert_eq!(seconds_value(duration), text, "{duration:?}");
            assert!(is_plain_decimal(text), "{text}");
        }
    }

    #[test]
    fn the_close_duration_sum_matches_the_closes_recorded() {
        // Worker 0: three closes, worker 1: one; each lands inside a known
        // bucket, so the sum must lie between the buckets' bounds.
        let mut first = WorkerStats::default();
        for micros in [800, 1_500, 150_000] {
            first.close_durations.record(Duration::from_micros(micros));
        }
        let mut second = WorkerStats::default();
        second
            .close_durations
            .record(Duration::new(12, 345_678_000));
        let mut total = WorkerStats::default();
        for worker in [&first, &second] {
            for (bound, count) in worker.close_durations.buckets() {
                // Re-record at each bucket's upper bound (12.5 s past the
                // last) to build the total independently of `first`/`second`.
                let at = bound.map_or(Duration::from_millis(12_500), Duration::from_millis);
                for _ in 0..count {
                    total.close_durations.record(at);
                }
            }
        }
        let stats = Stats {
            workers: vec![first, second],
            total,
        };
        let text = render(&stats);
        let parsed = samples(&text);
        let value = |name: &str, worker: &str| {
            let labels = format!("worker=\"{worker}\"");
            parsed
                .iter()
                .find(|(n, l, _)| n == name && *l == labels)
                .map(|(_, _, value)| *value)
                .unwrap_or_else(|| panic!("no {name} for worker {worker}"))
        };
        let sum = "ringws_close_duration_seconds_sum";
        let count = "ringws_close_duration_seconds_count";
        // 0.0008 + 0.0015 + 0.15 s, written exactly.
        assert!(text.contains("ringws_close_duration_seconds_sum{worker=\"0\"} 0.1523\n"));
        assert!(text.contains("ringws_close_duration_seconds_sum{worker=\"1\"} 12.345678\n"));
        // At the buckets' upper bounds: 0.001 + 0.002 + 0.2 + 12.5 s.
        assert!(text.contains("ringws_close_duration_seconds_sum{worker=\"total\"} 12.703\n"));
        assert_eq!(value(count, "0"), 3.0);
        assert_eq!(value(count, "1"), 1.0);
        assert_eq!(value(count, "total"), 4.0);
        // The sum lies between the lower and upper bounds of the buckets
        // its closes fell in (the last bucket has no upper bound).
        for worker in ["0", "1", "total"] {
            let mut lower = 0.0;
            let mut upper = 0.0;
            let mut previous_le = 0.0;
            let mut previous_count = 0.0;
            for (bound, _) in stats.total.close_durations.buckets() {
                let le = bound.map_or("+Inf".to_owned(), seconds_label);
                let labels = format!("worker=\"{worker}\",le=\"{le}\"");
                let cumulative = parsed
                    .iter()
                    .find(|(n, l, _)| n == "ringws_close_duration_seconds_bucket" && *l == labels)
                    .map(|(_, _, value)| *value)
                    .unwrap();
                let in_bucket = cumulative - previous_count;
                let bound_s = bound.map_or(f64::INFINITY, |ms| ms as f64 / 1000.0);
                lower += in_bucket * previous_le;
                if in_bucket > 0.0 {
                    upper += in_bucket * bound_s;
                }
                previous_le = bound_s;
                previous_count = cumulative;
            }
            assert_eq!(previous_count, value(count, worker), "worker {worker}");
            let sum = value(sum, worker);
            assert!(
                sum >= 0.0 && lower <= sum && sum <= upper,
                "worker {worker}: {lower} <= {sum} <= {upper}"
            );
        }
    }
}
