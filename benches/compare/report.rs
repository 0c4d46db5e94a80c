//! The run's record (JSON), its tables (Markdown) and its charts (SVG).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::peers::ServerKind;
use crate::results::{BarCheck, Figure, Summary, Turn, ECHO_WORKLOADS};
use crate::svg::{self, Bar, Panel, Tone};

/// Where and when the run happened.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model (`/proc/cpuinfo`).
    pub cpu_model: String,
    /// CPUs available.
    pub cpus: usize,
    /// Kernel release.
    pub kernel: String,
    /// Load averages (1, 5, 15 min) at the start.
    pub load_average_start: Option<[f64; 3]>,
    /// Load averages at the end.
    pub load_average_end: Option<[f64; 3]>,
}

/// The settings, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct SettingsRecord {
    /// Rounds (every server once per round, in order).
    pub rounds: usize,
    /// Sending window of each timed workload, seconds.
    pub duration_secs: f64,
    /// Connections of the echo and latency workloads.
    pub connections: usize,
    /// Cycles at once in the churn workload.
    pub churn_concurrency: usize,
    /// Latency rate as a fraction of the server's own echo 512 B rate.
    pub latency_fraction: f64,
    /// Idle connections for the memory figure.
    pub idle_connections: usize,
    /// Idle connections opened per second.
    pub idle_ramp: f64,
    /// Core of every server.
    pub server_core: usize,
    /// Core of the load generator.
    pub client_core: usize,
    /// Runs per timed workload at most.
    pub max_attempts: u32,
    /// Other processes' share of the two cores above which a workload is
    /// run again.
    pub retry_above: f64,
    /// Nice value of the servers and the generator (`None`: the default).
    pub nice: Option<i32>,
    /// `--quick`.
    pub quick: bool,
}

/// Everything a run wrote to `compare.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// The command that produced it.
    pub command: String,
    /// Start, `YYYY-MM-DD HH:MM UTC`.
    pub started_utc: String,
    /// Start, seconds since the Unix epoch.
    pub started_unix_secs: u64,
    /// Wall time of the run (builds excluded), seconds.
    pub elapsed_secs: f64,
    /// The machine.
    pub machine: Machine,
    /// The settings.
    pub settings: SettingsRecord,
    /// Versions of everything that ran.
    pub versions: BTreeMap<String, String>,
    /// The servers, in round order.
    pub servers: Vec<ServerKind>,
    /// Every turn, raw.
    pub turns: Vec<Turn>,
    /// Medians and ratios to ringws.
    pub summary: Summary,
    /// The bars and this run's verdicts.
    pub bars: Vec<BarCheck>,
}

/// `1234567.0` → `1.23 M`, `45678.0` → `45.7 k`, `950.0` → `950`.
pub fn si(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1e6 {
        format!("{:.2} M", value / 1e6)
    } else if magnitude >= 1e3 {
        format!("{:.1} k", value / 1e3)
    } else if magnitude >= 10.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// Microseconds, switching to milliseconds from 10 ms.
pub fn micros(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{:.1} ms", value / 1000.0)
    } else if value >= 100.0 {
        format!("{value:.0} µs")
    } else {
        format!("{value:.1} µs")
    }
}

fn value_text(value: f64, unit: &str) -> String {
    match unit {
        "µs" => micros(value),
        "ns" if value >= 1000.0 => format!("{:.2} µs", value / 1000.0),
        "ns" => format!("{value:.0} ns"),
        "B" => format!("{value:.0} B"),
        _ => format!("{} {unit}", si(value)),
    }
}

/// A table cell: the median, and its ratio to ringws for the other servers.
fn cell(figure: Option<&Figure>, unit: &str) -> String {
    let Some(figure) = figure else {
        return "–".to_owned();
    };
    let Some(median) = figure.median else {
        return "–".to_owned();
    };
    let text = value_text(median, unit);
    match figure.ratio_to_ringws {
        Some(ratio) if figure.server != ServerKind::Ringws => format!("{text} ({ratio:.2}×)"),
        _ => text,
    }
}

fn load_text(load: Option<[f64; 3]>) -> String {
    load.map_or_else(|| "unknown".to_owned(), |l| format!("{:.2}", l[0]))
}

fn row(out: &mut String, summary: &Summary, server: ServerKind, columns: &[(&str, &str)]) {
    let _ = write!(out, "| {} |", server.label());
    for (key, unit) in columns {
        let figure = summary.metric(key).and_then(|m| m.of(server));
        let _ = write!(out, " {} |", cell(figure, unit));
    }
    out.push('\n');
}

/// The Markdown page: how the run was made, then one table per figure
/// family with every server as a row and ratios to ringws, the bars, and
/// anything that went wrong.
pub fn markdown(record: &RunRecord) -> String {
    let mut out = String::new();
    let machine = &record.machine;
    let settings = &record.settings;
    let _ = writeln!(out, "Command (from the workspace root):\n");
    let _ = writeln!(out, "```\n{}\n```\n", record.command);
    let turn_loads: Vec<f64> = record
        .turns
        .iter()
        .filter_map(|t| t.load_average.map(|l| l[0]))
        .collect();
    let (load_lo, load_hi) = crate::stats::range(&turn_loads).unwrap_or((f64::NAN, f64::NAN));
    let _ = writeln!(
        out,
        "Run {}, {:.1} min (builds excluded). Machine: {}, {} CPUs, Linux {}. \
         Every server pinned to core {} (`taskset`), the load generator (`ringws load`, \
         one worker, in the harness process) pinned to core {}, loopback, {}. \
         Load average (1 min): {} at the start, {} at the end, {load_lo:.2}–{load_hi:.2} \
         at the starts of the turns.\n",
        record.started_utc,
        record.elapsed_secs / 60.0,
        machine.cpu_model,
        machine.cpus,
        machine.kernel,
        settings.server_core,
        settings.client_core,
        settings
            .nice
            .map_or("default priority".to_owned(), |nice| format!(
                "all at nice {nice}"
            )),
        load_text(machine.load_average_start),
        load_text(machine.load_average_end),
    );
    let _ = writeln!(
        out,
        "{} round(s), servers interleaved in each round ({}); {} s per timed workload; \
         {} connections; medians over the rounds; (×) = ratio to ringws.\n",
        settings.rounds,
        record
            .servers
            .iter()
            .map(|s| s.label())
            .collect::<Vec<_>>()
            .join(", "),
        settings.duration_secs,
        settings.connections,
    );
    let _ = writeln!(out, "| component | version |\n|---|---|");
    for (name, version) in &record.versions {
        let _ = writeln!(out, "| {name} | {version} |");
    }
    out.push('\n');

    let summary = &record.summary;
    let servers = &record.servers;
    let _ = writeln!(
        out,
        "**Throughput**: echoes per second (closed loop, one message in flight per \
         connection unless pipelined), and full connect–upgrade–echo–close cycles per \
         second (churn, {} at a time). Higher is better.\n",
        settings.churn_concurrency
    );
    let mut header = String::from("| server |");
    let mut columns: Vec<(String, &str)> = Vec::new();
    for workload in ECHO_WORKLOADS {
        let _ = write!(header, " {} |", workload.label);
        columns.push((format!("{}.msgs", workload.key), "msg/s"));
    }
    header.push_str(" churn |");
    columns.push(("churn.cycles".to_owned(), "cycles/s"));
    let columns_ref: Vec<(&str, &str)> = columns.iter().map(|(k, u)| (k.as_str(), *u)).collect();
    let _ = writeln!(out, "{header}\n|{}", "---|".repeat(columns.len() + 1));
    for &server in servers {
        row(&mut out, summary, server, &columns_ref);
    }
    out.push('\n');

    let _ = writeln!(
        out,
        "**Server cost**: the server process's CPU time (user + system, every thread, \
         `/proc/<pid>/stat`) per echoed message and per churn cycle, and its resident \
         memory growth per idle connection ({} connections, `VmRSS` of \
         `/proc/<pid>/status`). Lower is better.\n",
        settings.idle_connections
    );
    let mut header = String::from("| server |");
    let mut columns: Vec<(String, &str)> = Vec::new();
    for workload in ECHO_WORKLOADS {
        let _ = write!(header, " CPU/msg {} |", workload.label);
        columns.push((format!("{}.cpu", workload.key), "ns"));
    }
    header.push_str(" CPU/churn cycle | bytes/idle conn |");
    columns.push(("churn.cpu".to_owned(), "µs"));
    columns.push(("idle.bytes".to_owned(), "B"));
    let columns_ref: Vec<(&str, &str)> = columns.iter().map(|(k, u)| (k.as_str(), *u)).collect();
    let _ = writeln!(out, "{header}\n|{}", "---|".repeat(columns.len() + 1));
    for &server in servers {
        row(&mut out, summary, server, &columns_ref);
    }
    out.push('\n');

    let _ = writeln!(
        out,
        "**Latency**: open loop at {:.0} % of each server's own echo 512 B rate in the \
         same turn, 512 B, {} connections, from each message's intended send time \
         (coordinated omission corrected). Lower is better.\n",
        settings.latency_fraction * 100.0,
        settings.connections
    );
    let _ = writeln!(
        out,
        "| server | rate | p50 | p99 | p99.9 |\n|---|---|---|---|---|"
    );
    for &server in servers.iter().filter(|s| s.speaks_websocket()) {
        row(
            &mut out,
            summary,
            server,
            &[
                ("latency.rate", "msg/s"),
                ("latency.p50", "µs"),
                ("latency.p99", "µs"),
                ("latency.p99.9", "µs"),
            ],
        );
    }
    out.push('\n');

    let _ = writeln!(
        out,
        "**Spread**: smallest–largest over the rounds, for the echo rates and the server \
         CPU per message at 512 B (loopback on a shared VM is noisy: a closed loop \
         settles either where both sides batch or where they take turns, and the rates \
         of the two differ by up to 2–3×), and how much of the two cores other \
         processes took during the workloads kept (a workload during which they took \
         over {:.0} % was run again, up to {} runs, and the least disturbed run kept).\n",
        settings.retry_above * 100.0,
        settings.max_attempts
    );
    let mut header = String::from("| server |");
    let mut keys: Vec<(String, &str)> = Vec::new();
    for workload in ECHO_WORKLOADS {
        let _ = write!(header, " {} |", workload.label);
        keys.push((format!("{}.msgs", workload.key), "msg/s"));
    }
    header.push_str(
        " CPU/msg echo 512 B | other processes' share of the two cores: median, max (reruns) |",
    );
    keys.push(("echo-512.cpu".to_owned(), "ns"));
    let _ = writeln!(out, "{header}\n|{}", "---|".repeat(keys.len() + 2));
    for &server in servers {
        let _ = write!(out, "| {} |", server.label());
        for (key, unit) in &keys {
            let figure = summary.metric(key).and_then(|m| m.of(server));
            let text = match figure.and_then(|f| Some((f.min?, f.max?))) {
                Some((lo, hi)) => format!("{} – {}", value_text(lo, unit), value_text(hi, unit)),
                None => "–".to_owned(),
            };
            let _ = write!(out, " {text} |");
        }
        let mut shares = Vec::new();
        let mut reruns = 0;
        for turn in record.turns.iter().filter(|t| t.server == server) {
            let (turn_shares, turn_reruns) = turn.disturbance();
            shares.extend(turn_shares);
            reruns += turn_reruns;
        }
        let _ = match (crate::stats::median(&shares), crate::stats::range(&shares)) {
            (Some(median), Some((_, max))) => writeln!(
                out,
                " {:.0} %, {:.0} % ({reruns}) |",
                median * 100.0,
                max * 100.0
            ),
            _ => writeln!(out, " – |"),
        };
    }
    out.push('\n');

    let _ = writeln!(out, "**Bars**:\n");
    for bar in &record.bars {
        let verdict = match bar.met {
            Some(true) => "met",
            Some(false) => "not met",
            None => "not measured",
        };
        let _ = writeln!(out, "- {} — **{verdict}**: {}", bar.bar, bar.detail);
    }
    out.push('\n');

    let mut problems = Vec::new();
    for turn in &record.turns {
        let mut errors: Vec<String> = turn
            .throughput
            .iter()
            .filter(|t| t.errors > 0)
            .map(|t| format!("{} {} errors", t.workload, t.errors))
            .collect();
        if let Some(latency) = turn.latency.as_ref().filter(|l| l.errors > 0) {
            errors.push(format!("latency {} errors", latency.errors));
        }
        if let Some(churn) = turn.churn.as_ref().filter(|c| c.errors > 0) {
            errors.push(format!("churn {} errors", churn.errors));
        }
        if let Some(idle) = turn
            .idle
            .as_ref()
            .filter(|i| (i.open as usize) < i.requested)
        {
            errors.push(format!("idle: {} of {} open", idle.open, idle.requested));
        }
        errors.extend(turn.failures.iter().cloned());
        if !errors.is_empty() {
            problems.push(format!(
                "- round {}, {}: {}",
                turn.round,
                turn.server.label(),
                errors.join("; ")
            ));
        }
    }
    if problems.is_empty() {
        let _ = writeln!(out, "Errors: none in any turn.");
    } else {
        let _ = writeln!(out, "Errors and failures:\n\n{}", problems.join("\n"));
    }
    out
}

fn tone(server: ServerKind) -> Tone {
    match server {
        ServerKind::Ringws => Tone::Ringws,
        ServerKind::RawTcp => Tone::Floor,
        _ => Tone::Peer,
    }
}

/// A panel for metric `key`: one bar per server in `servers`.
fn panel(summary: &Summary, key: &str, title: &str, servers: &[ServerKind]) -> Panel {
    let metric = summary.metric(key);
    let unit = metric.map_or("", |m| m.metric.unit.as_str());
    let bars = servers
        .iter()
        .map(|&server| {
            let figure = metric.and_then(|m| m.of(server));
            let value = figure.and_then(|f| f.median);
            Bar {
                label: server.label().to_owned(),
                value,
                text: cell(figure, unit),
                tone: tone(server),
            }
        })
        .collect();
    Panel {
        title: title.to_owned(),
        bars,
    }
}

/// The three charts: (file name, SVG).
pub fn charts(record: &RunRecord) -> Vec<(&'static str, String)> {
    let summary = &record.summary;
    let all = &record.servers;
    let websocket: Vec<ServerKind> = all
        .iter()
        .copied()
        .filter(|s| s.speaks_websocket())
        .collect();
    let subtitle = format!(
        "{} · {} CPUs · Linux {} · {} · median of {} round(s) · (×) = ratio to ringws",
        record.machine.cpu_model,
        record.machine.cpus,
        record.machine.kernel,
        record.started_utc,
        record.settings.rounds
    );
    let mut throughput: Vec<Panel> = ECHO_WORKLOADS
        .iter()
        .map(|w| {
            panel(
                summary,
                &format!("{}.msgs", w.key),
                &format!(
                    "{}, {} connections — msg/s (higher is better)",
                    w.label, record.settings.connections
                ),
                all,
            )
        })
        .collect();
    throughput.push(panel(
        summary,
        "churn.cycles",
        &format!(
            "churn: connect, upgrade, echo, close, {} at a time — cycles/s (higher is better)",
            record.settings.churn_concurrency
        ),
        &websocket,
    ));
    let latency = vec![
        panel(
            summary,
            "latency.p50",
            &format!(
                "p50 latency at {:.0} % of own max, 512 B (lower is better)",
                record.settings.latency_fraction * 100.0
            ),
            &websocket,
        ),
        panel(
            summary,
            "latency.p99",
            "p99 latency (lower is better)",
            &websocket,
        ),
        panel(
            summary,
            "latency.p99.9",
            "p99.9 latency (lower is better)",
            &websocket,
        ),
    ];
    let mut cost: Vec<Panel> = ECHO_WORKLOADS
        .iter()
        .map(|w| {
            panel(
                summary,
                &format!("{}.cpu", w.key),
                &format!("server CPU per message, {} (lower is better)", w.label),
                all,
            )
        })
        .collect();
    cost.push(panel(
        summary,
        "churn.cpu",
        "server CPU per churn cycle (lower is better)",
        &websocket,
    ));
    cost.push(panel(
        summary,
        "idle.bytes",
        &format!(
            "server VmRSS growth per idle connection, {} connections (lower is better)",
            record.settings.idle_connections
        ),
        &websocket,
    ));
    vec![
        (
            "compare-throughput.svg",
            svg::chart(
                "Echo throughput and churn, one server core",
                &subtitle,
                &throughput,
            ),
        ),
        (
            "compare-latency.svg",
            svg::chart("Latency at a fixed open-loop rate", &subtitle, &latency),
        ),
        (
            "compare-cost.svg",
            svg::chart(
                "Server CPU per message and memory per idle connection",
                &subtitle,
                &cost,
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_prefixes() {
        assert_eq!(si(1_234_567.0), "1.23 M");
        assert_eq!(si(45_678.0), "45.7 k");
        assert_eq!(si(950.0), "950");
        assert_eq!(si(2.5), "2.50");
        assert_eq!(micros(216.6), "217 µs");
        assert_eq!(micros(31_400.0), "31.4 ms");
        assert_eq!(micros(12.34), "12.3 µs");
    }

    #[test]
    fn cells_show_ratios_for_peers_only() {
        let figure = |server, median, ratio| Figure {
            server,
            median,
            min: median,
            max: median,
            rounds: 1,
            ratio_to_ringws: ratio,
        };
        assert_eq!(
            cell(
                Some(&figure(ServerKind::Ringws, Some(250_000.0), Some(1.0))),
                "msg/s"
            ),
            "250.0 k msg/s"
        );
        assert_eq!(
            cell(
                Some(&figure(ServerKind::NodeWs, Some(125_000.0), Some(0.5))),
                "msg/s"
            ),
            "125.0 k msg/s (0.50×)"
        );
        assert_eq!(
            cell(
                Some(&figure(ServerKind::NodeWs, Some(4270.0), Some(1.1))),
                "ns"
            ),
            "4.27 µs (1.10×)"
        );
        assert_eq!(
            cell(
                Some(&figure(ServerKind::Ringws, Some(413.0), Some(1.0))),
                "ns"
            ),
            "413 ns"
        );
        assert_eq!(
            cell(Some(&figure(ServerKind::NodeWs, None, None)), "ns"),
            "–"
        );
        assert_eq!(cell(None, "ns"), "–");
    }
}
