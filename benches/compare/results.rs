//! What one run records: a [`Turn`] per server per round (the raw figures),
//! and the [`Summary`] of medians and ratios to ringws derived from them.

use serde::{Deserialize, Serialize};

use crate::peers::ServerKind;
use crate::stats;

/// A closed-loop echo workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoWorkload {
    /// Stable key (JSON).
    pub key: &'static str,
    /// Name in tables and charts.
    pub label: &'static str,
    /// Payload bytes per message (binary).
    pub payload: usize,
    /// Messages in flight per connection.
    pub pipeline: usize,
}

/// The throughput workloads, in table order (100 connections each).
pub const ECHO_WORKLOADS: [EchoWorkload; 4] = [
    EchoWorkload {
        key: "echo-20",
        label: "echo 20 B",
        payload: 20,
        pipeline: 1,
    },
    EchoWorkload {
        key: "echo-512",
        label: "echo 512 B",
        payload: 512,
        pipeline: 1,
    },
    EchoWorkload {
        key: "echo-16k",
        label: "echo 16 KiB",
        payload: 16 * 1024,
        pipeline: 1,
    },
    EchoWorkload {
        key: "pipelined-512",
        label: "pipelined 512 B ×16",
        payload: 512,
        pipeline: 16,
    },
];

/// One throughput workload against one server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// [`EchoWorkload::key`].
    pub workload: String,
    /// Payload bytes per message.
    pub payload_size: usize,
    /// Messages in flight per connection.
    pub pipeline: usize,
    /// Connections.
    pub connections: usize,
    /// Echoes received per second from the start of the sending window to
    /// the last echo (`LoadReport::rate_span_secs`).
    pub messages_per_sec: f64,
    /// Echoes received.
    pub echoes: u64,
    /// Server process user CPU time (every thread) during the run, seconds.
    pub server_user_secs: f64,
    /// Server process system CPU time during the run, seconds.
    pub server_system_secs: f64,
    /// Server CPU ÷ echoes, nanoseconds.
    pub server_cpu_per_message_ns: f64,
    /// Load generator CPU ÷ echoes, nanoseconds.
    pub client_cpu_per_message_ns: f64,
    /// Errors the load generator counted (0 expected).
    pub errors: u64,
    /// Share of the two cores' time other processes used meanwhile (0–1).
    pub foreign_cpu_share: f64,
    /// Runs it took (see `--attempts`); this one was the least disturbed.
    pub attempts: u32,
}

/// Latency at a fixed open-loop rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Messages/s asked for: `rate_fraction` × this turn's echo 512 B rate.
    pub rate: f64,
    /// The fraction of the server's own maximum.
    pub rate_fraction: f64,
    /// Echoes received per second, to the last echo: below `rate` when the
    /// server fell behind and owed messages went out after the window.
    pub achieved_per_sec: f64,
    /// Messages measured.
    pub count: u64,
    /// From the intended send time, microseconds.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p99_9_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Server CPU per echoed message, nanoseconds.
    pub server_cpu_per_message_ns: f64,
    /// Messages still waiting for a free connection at the end.
    pub behind_schedule: u64,
    /// Errors the load generator counted.
    pub errors: u64,
    /// Share of the two cores' time other processes used meanwhile (0–1).
    pub foreign_cpu_share: f64,
    /// Runs it took (see `--attempts`); this one was the least disturbed.
    pub attempts: u32,
}

/// Connection churn: connect, upgrade, one echo, close.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Churn {
    /// Cycles in progress at once.
    pub concurrency: usize,
    /// Cycles completed.
    pub cycles: u64,
    /// Cycles per second.
    pub cycles_per_sec: f64,
    /// Server CPU per cycle, microseconds.
    pub server_cpu_per_cycle_us: f64,
    /// Errors the load generator counted.
    pub errors: u64,
    /// Share of the two cores' time other processes used meanwhile (0–1).
    pub foreign_cpu_share: f64,
    /// Runs it took (see `--attempts`); this one was the least disturbed.
    pub attempts: u32,
}

/// Resident memory growth with idle connections open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Idle {
    /// Connections asked for.
    pub requested: usize,
    /// Connections open at the reading.
    pub open: u64,
    /// Server `VmRSS` before, bytes.
    pub vm_rss_before: u64,
    /// Server `VmRSS` with the connections open.
    pub vm_rss_after: u64,
    /// Server `RssAnon` before.
    pub rss_anon_before: u64,
    /// Server `RssAnon` with the connections open.
    pub rss_anon_after: u64,
    /// `VmRSS` growth ÷ open connections.
    pub bytes_per_connection: f64,
    /// `RssAnon` growth ÷ open connections.
    pub anon_bytes_per_connection: f64,
}

/// One server's turn in one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// Which server.
    pub server: ServerKind,
    /// Round, from 1.
    pub round: usize,
    /// Seconds since the Unix epoch at the start of the turn.
    pub started_unix_secs: u64,
    /// Load averages (1, 5, 15 min) at the start of the turn.
    pub load_average: Option<[f64; 3]>,
    /// The echo workloads that ran.
    pub throughput: Vec<Throughput>,
    /// The open-loop latency run.
    pub latency: Option<Latency>,
    /// The churn run.
    pub churn: Option<Churn>,
    /// The idle-connection memory reading.
    pub idle: Option<Idle>,
    /// Workloads that could not run, with the reason.
    pub failures: Vec<String>,
}

impl Turn {
    /// An empty turn, filled in as workloads run.
    pub fn new(server: ServerKind, round: usize) -> Turn {
        Turn {
            server,
            round,
            started_unix_secs: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
            load_average: ringws_cli::bench::probe::load_average(),
            throughput: Vec::new(),
            latency: None,
            churn: None,
            idle: None,
            failures: Vec::new(),
        }
    }

    /// Other processes' share of the two cores during each timed workload
    /// kept, and how many extra runs were made.
    pub fn disturbance(&self) -> (Vec<f64>, u32) {
        let mut shares = Vec::new();
        let mut reruns = 0;
        for t in &self.throughput {
            shares.push(t.foreign_cpu_share);
            reruns += t.attempts.saturating_sub(1);
        }
        if let Some(l) = &self.latency {
            shares.push(l.foreign_cpu_share);
            reruns += l.attempts.saturating_sub(1);
        }
        if let Some(c) = &self.churn {
            shares.push(c.foreign_cpu_share);
            reruns += c.attempts.saturating_sub(1);
        }
        (shares, reruns)
    }

    /// The turn's result for echo workload `key`.
    pub fn echo(&self, key: &str) -> Option<&Throughput> {
        self.throughput.iter().find(|t| t.workload == key)
    }
}

/// A figure compared across servers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// Stable key.
    pub key: String,
    /// Name in tables and charts.
    pub label: String,
    /// Unit of the values.
    pub unit: String,
    /// Whether smaller values are better (CPU, latency, memory).
    pub lower_is_better: bool,
}

fn metric(key: String, label: String, unit: &str, lower_is_better: bool) -> Metric {
    Metric {
        key,
        label,
        unit: unit.to_owned(),
        lower_is_better,
    }
}

/// Every metric the summary holds, in table order.
pub fn metrics() -> Vec<Metric> {
    let mut list = Vec::new();
    for workload in ECHO_WORKLOADS {
        list.push(metric(
            format!("{}.msgs", workload.key),
            workload.label.to_owned(),
            "msg/s",
            false,
        ));
    }
    for workload in ECHO_WORKLOADS {
        list.push(metric(
            format!("{}.cpu", workload.key),
            format!("server CPU per message, {}", workload.label),
            "ns",
            true,
        ));
    }
    list.push(metric(
        "latency.rate".into(),
        "latency: rate".into(),
        "msg/s",
        false,
    ));
    list.push(metric(
        "latency.p50".into(),
        "latency p50".into(),
        "µs",
        true,
    ));
    list.push(metric(
        "latency.p99".into(),
        "latency p99".into(),
        "µs",
        true,
    ));
    list.push(metric(
        "latency.p99.9".into(),
        "latency p99.9".into(),
        "µs",
        true,
    ));
    list.push(metric(
        "churn.cycles".into(),
        "churn".into(),
        "cycles/s",
        false,
    ));
    list.push(metric(
        "churn.cpu".into(),
        "server CPU per churn cycle".into(),
        "µs",
        true,
    ));
    list.push(metric(
        "idle.bytes".into(),
        "VmRSS growth per idle connection".into(),
        "B",
        true,
    ));
    list.push(metric(
        "idle.anon".into(),
        "RssAnon growth per idle connection".into(),
        "B",
        true,
    ));
    list
}

/// The value of metric `key` in one turn.
pub fn metric_value(turn: &Turn, key: &str) -> Option<f64> {
    if let Some((workload, figure)) = key.split_once('.') {
        if let Some(echo) = turn.echo(workload) {
            return match figure {
                "msgs" => Some(echo.messages_per_sec),
                "cpu" => (echo.echoes > 0).then_some(echo.server_cpu_per_message_ns),
                _ => None,
            };
        }
    }
    let latency = turn.latency.as_ref();
    let churn = turn.churn.as_ref();
    let idle = turn.idle.as_ref();
    match key {
        "latency.rate" => latency.map(|l| l.rate),
        "latency.p50" => latency.filter(|l| l.count > 0).map(|l| l.p50_us),
        "latency.p99" => latency.filter(|l| l.count > 0).map(|l| l.p99_us),
        "latency.p99.9" => latency.filter(|l| l.count > 0).map(|l| l.p99_9_us),
        "churn.cycles" => churn.map(|c| c.cycles_per_sec),
        "churn.cpu" => churn
            .filter(|c| c.cycles > 0)
            .map(|c| c.server_cpu_per_cycle_us),
        "idle.bytes" => idle.filter(|i| i.open > 0).map(|i| i.bytes_per_connection),
        "idle.anon" => idle
            .filter(|i| i.open > 0)
            .map(|i| i.anon_bytes_per_connection),
        _ => None,
    }
}

/// One server's figure for one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// Which server.
    pub server: ServerKind,
    /// Median over the rounds that produced a value.
    pub median: Option<f64>,
    /// Smallest value over the rounds.
    pub min: Option<f64>,
    /// Largest value over the rounds.
    pub max: Option<f64>,
    /// Rounds that produced a value.
    pub rounds: usize,
    /// `median ÷ ringws's median`.
    pub ratio_to_ringws: Option<f64>,
}

/// One metric across servers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSummary {
    /// The metric.
    pub metric: Metric,
    /// One figure per server, in the run's server order.
    pub figures: Vec<Figure>,
}

impl MetricSummary {
    /// The figure of `server`.
    pub fn of(&self, server: ServerKind) -> Option<&Figure> {
        self.figures.iter().find(|f| f.server == server)
    }
}

/// Medians and ratios of every metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// In [`metrics`] order.
    pub metrics: Vec<MetricSummary>,
}

impl Summary {
    /// Medians over `turns` for each of `servers`, ratios to ringws.
    pub fn of(turns: &[Turn], servers: &[ServerKind]) -> Summary {
        let metrics = metrics()
            .into_iter()
            .map(|metric| {
                let values_of = |server: ServerKind| -> Vec<f64> {
                    turns
                        .iter()
                        .filter(|turn| turn.server == server)
                        .filter_map(|turn| metric_value(turn, &metric.key))
                        .collect()
                };
                let ringws = stats::median(&values_of(ServerKind::Ringws));
                let figures = servers
                    .iter()
                    .map(|&server| {
                        let values = values_of(server);
                        let median = stats::median(&values);
                        let range = stats::range(&values);
                        Figure {
                            server,
                            median,
                            min: range.map(|r| r.0),
                            max: range.map(|r| r.1),
                            rounds: values.len(),
                            ratio_to_ringws: stats::ratio(median, ringws),
                        }
                    })
                    .collect();
                MetricSummary { metric, figures }
            })
            .collect();
        Summary { metrics }
    }

    /// The summary of metric `key`.
    pub fn metric(&self, key: &str) -> Option<&MetricSummary> {
        self.metrics.iter().find(|m| m.metric.key == key)
    }

    /// The median of `key` for `server`.
    pub fn median(&self, key: &str, server: ServerKind) -> Option<f64> {
        self.metric(key)?.of(server)?.median
    }
}

/// A bar the run is judged by, and whether this run met it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BarCheck {
    /// What is asked.
    pub bar: String,
    /// Met, not met, or not measured (`None`).
    pub met: Option<bool>,
    /// The figures behind the verdict.
    pub detail: String,
}

fn ratio_bar(
    summary: &Summary,
    turns: &[Turn],
    key: &str,
    peer: ServerKind,
    at_least: f64,
) -> BarCheck {
    let ringws = summary.median(key, ServerKind::Ringws);
    let other = summary.median(key, peer);
    let ratio = stats::ratio(ringws, other);
    let label = summary
        .metric(key)
        .map_or(key.to_owned(), |m| m.metric.label.clone());
    // The verdict is on the medians; the rounds' own ratios show how far
    // the run's minutes moved it.
    let per_round = round_ratios(turns, key, peer);
    let rounds = match per_round.len() {
        0 | 1 => String::new(),
        _ => format!(
            " (round by round {})",
            per_round
                .iter()
                .map(|r| format!("{r:.2}×"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    BarCheck {
        bar: format!("ringws {label} ≥ {at_least}× {}", peer.label()),
        met: ratio.map(|r| r >= at_least),
        // Three decimals: at two, a ratio just under the bar would print
        // as the bar itself next to "not met".
        detail: match ratio {
            Some(r) => format!("{r:.3}×{rounds}"),
            None => "not measured".to_owned(),
        },
    }
}

/// ringws's `key` over `peer`'s in each round both measured, in round
/// order.
fn round_ratios(turns: &[Turn], key: &str, peer: ServerKind) -> Vec<f64> {
    let value = |server: ServerKind, round: usize| {
        turns
            .iter()
            .find(|turn| turn.server == server && turn.round == round)
            .and_then(|turn| metric_value(turn, key))
    };
    let mut rounds: Vec<usize> = turns.iter().map(|turn| turn.round).collect();
    rounds.sort_unstable();
    rounds.dedup();
    rounds
        .into_iter()
        .filter_map(|round| stats::ratio(value(ServerKind::Ringws, round), value(peer, round)))
        .collect()
}

/// A bar judged over several workloads.
#[derive(Default)]
struct Verdict {
    failed: bool,
    missing: bool,
}

impl Verdict {
    fn met(&self) -> Option<bool> {
        match (self.failed, self.missing) {
            (true, _) => Some(false),
            (false, true) => None,
            (false, false) => Some(true),
        }
    }
}

/// The bars: ringws echo 512 B at least 1.2× fastwebsockets and
/// tokio-tungstenite; ringws server CPU per message the lowest of the
/// WebSocket servers (every echo workload); ringws within 25 % of the raw
/// TCP echo floor (every echo workload).
pub fn bar_checks(summary: &Summary, turns: &[Turn], servers: &[ServerKind]) -> Vec<BarCheck> {
    let mut checks = vec![
        ratio_bar(
            summary,
            turns,
            "echo-512.msgs",
            ServerKind::Fastwebsockets,
            1.2,
        ),
        ratio_bar(
            summary,
            turns,
            "echo-512.msgs",
            ServerKind::TokioTungstenite,
            1.2,
        ),
    ];
    // A bar fails when any workload fails it, even if another workload
    // went unmeasured; it is "not measured" only when nothing failed.
    let mut cpu = Verdict::default();
    let mut cpu_detail = Vec::new();
    for workload in ECHO_WORKLOADS {
        let key = format!("{}.cpu", workload.key);
        let Some(ringws) = summary.median(&key, ServerKind::Ringws) else {
            cpu.missing = true;
            continue;
        };
        let others: Vec<(ServerKind, f64)> = servers
            .iter()
            .filter(|s| s.speaks_websocket() && **s != ServerKind::Ringws)
            .filter_map(|&s| Some((s, summary.median(&key, s)?)))
            .collect();
        let lowest_other = others.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((peer, value)) = lowest_other {
            cpu.failed |= ringws > value;
            cpu_detail.push(format!(
                "{}: ringws {ringws:.0} ns, lowest peer {} {value:.0} ns ({:.2}×)",
                workload.label,
                peer.label(),
                value / ringws
            ));
        } else {
            cpu.missing = true;
        }
    }
    checks.push(BarCheck {
        bar: "ringws server CPU per message the lowest of the WebSocket servers".into(),
        met: cpu.met(),
        detail: cpu_detail.join("; "),
    });
    let mut floor = Verdict::default();
    let mut floor_detail = Vec::new();
    for workload in ECHO_WORKLOADS {
        let key = format!("{}.msgs", workload.key);
        match stats::ratio(
            summary.median(&key, ServerKind::Ringws),
            summary.median(&key, ServerKind::RawTcp),
        ) {
            Some(r) => {
                floor.failed |= r < 0.75;
                floor_detail.push(format!("{}: {r:.2}× the floor", workload.label));
            }
            None => {
                floor.missing = true;
                floor_detail.push(format!("{}: not measured", workload.label));
            }
        }
    }
    checks.push(BarCheck {
        bar: "ringws echo throughput within 25 % of the raw TCP echo floor".into(),
        met: floor.met(),
        detail: floor_detail.join("; "),
    });
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn turn(server: ServerKind, round: usize, echo_512: f64, cpu_ns: f64) -> Turn {
        let mut turn = Turn::new(server, round);
        for workload in ECHO_WORKLOADS {
            turn.throughput.push(Throughput {
                workload: workload.key.to_owned(),
                payload_size: workload.payload,
                pipeline: workload.pipeline,
                connections: 100,
                messages_per_sec: echo_512,
                echoes: 1000,
                server_user_secs: 0.0,
                server_system_secs: 0.0,
                server_cpu_per_message_ns: cpu_ns,
                client_cpu_per_message_ns: 0.0,
                errors: 0,
                foreign_cpu_share: 0.0,
                attempts: 1,
            });
        }
        turn
    }

    #[test]
    fn summary_takes_medians_per_server_and_ratios_to_ringws() {
        let turns = vec![
            turn(ServerKind::Ringws, 1, 300.0, 2000.0),
            turn(ServerKind::Fastwebsockets, 1, 200.0, 3000.0),
            turn(ServerKind::Ringws, 2, 100.0, 2200.0),
            turn(ServerKind::Fastwebsockets, 2, 250.0, 2500.0),
            turn(ServerKind::Ringws, 3, 200.0, 2100.0),
            turn(ServerKind::Fastwebsockets, 3, 150.0, 2800.0),
        ];
        let servers = [ServerKind::Ringws, ServerKind::Fastwebsockets];
        let summary = Summary::of(&turns, &servers);
        let echo = summary.metric("echo-512.msgs").unwrap();
        let ringws = echo.of(ServerKind::Ringws).unwrap();
        assert_eq!(ringws.median, Some(200.0));
        assert_eq!((ringws.min, ringws.max), (Some(100.0), Some(300.0)));
        assert_eq!(ringws.rounds, 3);
        assert_eq!(ringws.ratio_to_ringws, Some(1.0));
        let peer = echo.of(ServerKind::Fastwebsockets).unwrap();
        assert_eq!(peer.median, Some(200.0));
        assert_eq!(peer.ratio_to_ringws, Some(1.0));
        assert_eq!(
            summary.median("echo-512.cpu", ServerKind::Fastwebsockets),
            Some(2800.0)
        );
        // No latency run: no value, no ratio.
        let p99 = summary.metric("latency.p99").unwrap();
        assert!(p99
            .figures
            .iter()
            .all(|f| f.median.is_none() && f.rounds == 0));
    }

    #[test]
    fn bars_follow_the_medians() {
        let turns = vec![
            turn(ServerKind::Ringws, 1, 300.0, 2000.0),
            turn(ServerKind::Fastwebsockets, 1, 200.0, 3000.0),
            turn(ServerKind::TokioTungstenite, 1, 260.0, 1900.0),
            turn(ServerKind::RawTcp, 1, 380.0, 1000.0),
        ];
        let servers = [
            ServerKind::Ringws,
            ServerKind::Fastwebsockets,
            ServerKind::TokioTungstenite,
            ServerKind::RawTcp,
        ];
        let checks = bar_checks(&Summary::of(&turns, &servers), &turns, &servers);
        assert_eq!(checks.len(), 4);
        assert_eq!(checks[0].met, Some(true), "{:?}", checks[0]); // 1.5×
        assert_eq!(checks[1].met, Some(false), "{:?}", checks[1]);
        assert_eq!(checks[1].detail, "1.154×");
        // tokio-tungstenite used less CPU; the raw floor does not count.
        assert_eq!(checks[2].met, Some(false), "{:?}", checks[2]);
        assert_eq!(checks[3].met, Some(true), "{:?}", checks[3]); // 0.79×
    }

    #[test]
    fn ratio_bars_show_each_rounds_ratio_beside_the_medians() {
        let servers = [ServerKind::Ringws, ServerKind::Fastwebsockets];
        // Round 2 has no fastwebsockets turn: it has no ratio.
        let turns = vec![
            turn(ServerKind::Ringws, 1, 300.0, 2000.0),
            turn(ServerKind::Fastwebsockets, 1, 250.0, 3000.0),
            turn(ServerKind::Ringws, 2, 330.0, 2000.0),
            turn(ServerKind::Ringws, 3, 360.0, 2000.0),
            turn(ServerKind::Fastwebsockets, 3, 240.0, 3000.0),
        ];
        let checks = bar_checks(&Summary::of(&turns, &servers), &turns, &servers);
        // Medians 330 and 245.
        assert_eq!(checks[0].detail, "1.347× (round by round 1.20×, 1.50×)");
        assert_eq!(checks[0].met, Some(true));
        // One round: nothing to add.
        let one = &turns[..2];
        let checks = bar_checks(&Summary::of(one, &servers), one, &servers);
        assert_eq!(checks[0].detail, "1.200×");
    }

    #[test]
    fn a_bar_failed_on_one_workload_stays_failed_when_another_is_missing() {
        let servers = [
            ServerKind::Ringws,
            ServerKind::Fastwebsockets,
            ServerKind::RawTcp,
        ];
        // ringws at 0.5× the floor, and the floor's pipelined run lost.
        let mut raw = turn(ServerKind::RawTcp, 1, 600.0, 1000.0);
        raw.throughput.retain(|t| t.workload != "pipelined-512");
        // ringws slower than the peer on CPU, and one ringws CPU figure lost.
        let mut ringws = turn(ServerKind::Ringws, 1, 300.0, 4000.0);
        ringws.throughput.retain(|t| t.workload != "echo-20");
        let turns = vec![
            ringws,
            turn(ServerKind::Fastwebsockets, 1, 200.0, 3000.0),
            raw,
        ];
        let checks = bar_checks(&Summary::of(&turns, &servers), &turns, &servers);
        assert_eq!(checks[2].met, Some(false), "{:?}", checks[2]);
        assert_eq!(checks[3].met, Some(false), "{:?}", checks[3]);
        assert!(checks[3].detail.contains("not measured"), "{:?}", checks[3]);
        // Nothing failed, something missing: not measured.
        let mut raw = turn(ServerKind::RawTcp, 1, 320.0, 1000.0);
        raw.throughput.retain(|t| t.workload != "pipelined-512");
        let turns = vec![
            turn(ServerKind::Ringws, 1, 300.0, 2000.0),
            turn(ServerKind::Fastwebsockets, 1, 200.0, 3000.0),
            raw,
        ];
        let checks = bar_checks(&Summary::of(&turns, &servers), &turns, &servers);
        assert_eq!(checks[3].met, None, "{:?}", checks[3]);
    }
}
