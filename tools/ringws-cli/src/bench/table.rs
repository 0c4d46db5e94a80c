//! The table `ringws bench` prints.

use std::fmt;

use crate::bench::{probe, BenchReport, Throughput};
use crate::load::report::{latency, si, thousands};

fn load_average(load: Option<[f64; 3]>) -> String {
    load.map_or_else(
        || "unknown".to_owned(),
        |[one, five, fifteen]| format!("{one:.2} {five:.2} {fifteen:.2}"),
    )
}

fn core(core: Option<usize>) -> String {
    core.map_or_else(
        || "no core (unpinned)".to_owned(),
        |core| format!("core {core}"),
    )
}

fn ns(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{:.1} µs", value / 1000.0)
    } else {
        format!("{value:.0} ns")
    }
}

fn ratio(generator: f64, server: f64) -> String {
    if server > 0.0 {
        format!("{:.2}", generator / server)
    } else {
        "-".to_owned()
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let machine = &self.machine;
        writeln!(
            f,
            "ringws bench{}: {}; {} ({} CPUs), Linux {}",
            if self.quick { " --quick" } else { "" },
            probe::utc_date(machine.started_unix_secs),
            machine.cpu_model,
            machine.cpus,
            machine.kernel
        )?;
        writeln!(
            f,
            "load average {} at start, {} at end; server: ringws echo, 1 worker on {}; \
             generator: ringws load, 1 worker on {}; loopback, binary messages, {:.1} s per workload",
            load_average(machine.load_average_start),
            load_average(machine.load_average_end),
            core(self.server_core),
            core(self.client_core),
            self.duration_secs
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<32} {:<40} {:>14} {:>9} {:>11} {:>11} {:>8}",
            "workload", "result", "per srv core", "srv busy", "server CPU", "gen. CPU", "gen/srv"
        )?;
        for t in &self.throughput {
            writeln!(
                f,
                "{:<32} {:<40} {:>14} {:>9} {:>11} {:>11} {:>8}",
                format!("{}, {} conns", t.name, t.connections),
                format!(
                    "{}msg/s  {:.1} MB/s",
                    si(t.messages_per_sec),
                    t.megabytes_per_sec
                ),
                format!("{}msg/s", si(t.messages_per_sec_per_server_core)),
                format!("{:.0} %", t.server_busy * 100.0),
                ns(t.server_cpu.per_unit_ns),
                ns(t.generator_cpu.per_unit_ns),
                ratio(t.generator_cpu.per_unit_ns, t.server_cpu.per_unit_ns),
            )?;
        }
        let l = &self.latency;
        writeln!(
            f,
            "{:<32} {:<40} {:>14} {:>9} {:>11} {:>11} {:>8}",
            format!("latency 512 B at {}msg/s", si(l.rate)),
            format!(
                "p50 {} p99 {} p99.9 {}",
                latency(l.p50_us),
                latency(l.p99_us),
                latency(l.p99_9_us)
            ),
            "",
            "",
            ns(l.server_cpu.per_unit_ns),
            ns(l.generator_cpu.per_unit_ns),
            ratio(l.generator_cpu.per_unit_ns, l.server_cpu.per_unit_ns),
        )?;
        let c = &self.churn;
        writeln!(
            f,
            "{:<32} {:<40} {:>14} {:>9} {:>11} {:>11} {:>8}",
            format!("churn, {} at a time", c.concurrency),
            format!("{}cycles/s", si(c.cycles_per_sec)),
            "",
            "",
            ns(c.server_cpu.per_unit_ns),
            ns(c.generator_cpu.per_unit_ns),
            ratio(c.generator_cpu.per_unit_ns, c.server_cpu.per_unit_ns),
        )?;
        let m = &self.idle_memory;
        writeln!(
            f,
            "{:<32} {:.0} B/conn ({:.0} after trim)",
            format!("idle connections ({})", thousands(m.connections_open)),
            m.bytes_per_connection,
            m.bytes_per_connection_after_trim,
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "latency: open loop at {:.0} % of the 512 B echo rate ({} messages, {} \
             connections), measured from each message's intended send time; max {}.",
            l.rate_fraction * 100.0,
            thousands(l.count),
            l.connections,
            latency(l.max_us)
        )?;
        writeln!(
            f,
            "CPU columns: user + system time per echoed message (churn: per cycle) of the \
             server's worker thread and of the generator's; per srv core: messages echoed per \
             second of server CPU; srv busy: the server's CPU time ÷ the run's wall time \
             (connecting and draining included), near 100 % when one generator core \
             saturates the server's core."
        )?;
        writeln!(
            f,
            "idle memory: growth of this process's anonymous resident memory (the server; the \
             client is a separate process) ÷ open connections, baseline after malloc_trim; the \
             engine's structures are {} B per connection.",
            m.structural_bytes_per_connection
        )?;
        let errors: u64 = self.throughput.iter().map(|t| t.errors).sum::<u64>()
            + self.latency.errors
            + self.churn.errors;
        if errors > 0 {
            writeln!(
                f,
                "warning: the generator counted {errors} error(s); see --json for where."
            )?;
        }
        write!(
            f,
            "generator CPU per message ≤ server's in every throughput workload: {}",
            if self.generator_cpu_within_server {
                "yes"
            } else {
                "no"
            }
        )?;
        // The highest quotient and how busy the server was say whether a
        // `no` is a heavier generator or two saturated sides at parity.
        let heaviest = self
            .throughput
            .iter()
            .filter(|t| t.server_cpu.per_unit_ns > 0.0)
            .max_by(|a, b| {
                let quotient =
                    |t: &Throughput| t.generator_cpu.per_unit_ns / t.server_cpu.per_unit_ns;
                quotient(a).total_cmp(&quotient(b))
            });
        let busy = self.throughput.iter().map(|t| t.server_busy * 100.0);
        let least_busy = busy.clone().fold(f64::INFINITY, f64::min);
        let most_busy = busy.fold(0.0, f64::max);
        if let Some(t) = heaviest {
            write!(
                f,
                " (highest gen/srv {} at {}; server busy {least_busy:.0}–{most_busy:.0} %)",
                ratio(t.generator_cpu.per_unit_ns, t.server_cpu.per_unit_ns),
                t.name
            )?;
        }
        writeln!(f)?;
        writeln!(f, "elapsed {:.1} s", self.elapsed_secs)
    }
}
