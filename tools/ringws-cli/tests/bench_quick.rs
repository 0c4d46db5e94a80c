//! `ringws bench --quick --json -`: every figure present and sane, within a
//! bounded time. (Speed itself is not asserted: this machine is shared.)

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Generous for a debug build on a busy 2-core machine; the quick run
/// itself takes a few seconds.
const LIMIT: Duration = Duration::from_secs(120);

fn number(value: &Value, path: &str) -> f64 {
    let mut current = value;
    for key in path.split('.') {
        current = match key.parse::<usize>() {
            Ok(index) => &current[index],
            Err(_) => &current[key],
        };
    }
    current
        .as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number: {current}"))
}

#[test]
fn quick_bench_reports_every_figure_with_sane_values() {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringws"))
        .args(["bench", "--quick", "--json", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringws bench --quick ran past {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("stdout is not JSON ({error}); stderr: {stderr}"));

    // The table went to stderr, with a row per workload.
    for row in [
        "echo 20 B",
        "echo 512 B",
        "echo 16 KiB",
        "pipelined 512 B",
        "latency 512 B",
        "churn",
        "idle connections",
    ] {
        assert!(stderr.contains(row), "no {row:?} row in:\n{stderr}");
    }
    let verdict = stderr
        .lines()
        .find(|line| line.starts_with("generator CPU per message ≤ server's"))
        .unwrap_or_else(|| panic!("no verdict line in:\n{stderr}"));
    assert!(
        verdict.contains("(highest gen/srv ") && verdict.contains("; server busy "),
        "{verdict}"
    );

    assert_eq!(report["quick"], true);
    assert_eq!(number(&report, "duration_secs"), 0.5);
    assert!(number(&report, "machine.cpus") >= 1.0);
    assert!(number(&report, "elapsed_secs") > 0.0);

    let throughput = report["throughput"].as_array().unwrap();
    let expected = [
        ("echo 20 B", 20.0, 1.0),
        ("echo 512 B", 512.0, 1.0),
        ("echo 16 KiB", 16384.0, 1.0),
        ("pipelined 512 B ×16", 512.0, 16.0),
    ];
    assert_eq!(throughput.len(), expected.len());
    let mut generator_within_server = true;
    for (workload, (name, size, pipeline)) in throughput.iter().zip(expected) {
        assert_eq!(workload["name"], name);
        assert_eq!(number(workload, "payload_size"), size, "{name}");
        assert_eq!(number(workload, "pipeline"), pipeline, "{name}");
        assert_eq!(number(workload, "connections"), 100.0, "{name}");
        assert_eq!(number(workload, "errors"), 0.0, "{name}");
        let per_sec = number(workload, "messages_per_sec");
        assert!(per_sec > 0.0, "{name}: {per_sec}");
        // MB/s is the message rate times the payload size.
        let megabytes = number(workload, "megabytes_per_sec");
        assert!(
            (megabytes - per_sec * size / 1e6).abs() <= 1e-6 * per_sec * size,
            "{name}: {megabytes} MB/s at {per_sec} msg/s"
        );
        assert!(number(workload, "messages_per_sec_per_server_core") > 0.0);
        // One thread's CPU time cannot exceed the wall time it was read over
        // (a little slack for the clocks' granularity).
        let busy = number(workload, "server_busy");
        assert!(busy > 0.0 && busy <= 1.02, "{name}: server busy {busy}");
        for side in ["server_cpu", "generator_cpu"] {
            let count = number(workload, &format!("{side}.count"));
            let cpu = number(workload, &format!("{side}.user_secs"))
                + number(workload, &format!("{side}.system_secs"));
            let per_unit = number(workload, &format!("{side}.per_unit_ns"));
            assert!(count > 0.0 && cpu > 0.0, "{name} {side}");
            assert!(
                (per_unit - cpu * 1e9 / count).abs() <= 1e-6 * per_unit,
                "{name} {side}: {per_unit} ns"
            );
        }
        // Both sides count the same echoes.
        assert_eq!(
            number(workload, "server_cpu.count"),
            number(workload, "generator_cpu.count"),
            "{name}"
        );
        generator_within_server &= number(workload, "generator_cpu.per_unit_ns")
            <= number(workload, "server_cpu.per_unit_ns");
    }
    assert_eq!(
        report["generator_cpu_within_server"], generator_within_server,
        "the verdict matches the figures"
    );

    let latency = &report["latency"];
    let echo_512 = number(&report, "throughput.1.messages_per_sec");
    assert_eq!(number(latency, "rate_fraction"), 0.5);
    let rate = number(latency, "rate");
    assert!((rate - (echo_512 * 0.5).max(100.0)).abs() <= 0.5, "{rate}");
    assert!(number(latency, "count") > 0.0);
    assert_eq!(number(latency, "errors"), 0.0);
    let percentiles = [
        number(latency, "p50_us"),
        number(latency, "p99_us"),
        number(latency, "p99_9_us"),
        number(latency, "max_us"),
    ];
    assert!(percentiles[0] > 0.0, "{percentiles:?}");
    assert!(
        percentiles.windows(2).all(|pair| pair[0] <= pair[1]),
        "percentiles out of order: {percentiles:?}"
    );

    let churn = &report["churn"];
    assert!(number(churn, "cycles") > 0.0);
    assert!(number(churn, "cycles_per_sec") > 0.0);
    assert!(number(churn, "server_cpu.per_unit_ns") > 0.0);
    assert!(number(churn, "generator_cpu.per_unit_ns") > 0.0);
    assert_eq!(number(churn, "errors"), 0.0);

    let memory = &report["idle_memory"];
    assert_eq!(number(memory, "connections_requested"), 500.0);
    assert_eq!(number(memory, "connections_open"), 500.0);
    let per_connection = number(memory, "bytes_per_connection");
    assert!(
        per_connection > 0.0 && per_connection < 64.0 * 1024.0,
        "{per_connection} bytes per idle connection"
    );
    let grown = number(memory, "rss_anon_after_bytes") - number(memory, "rss_anon_before_bytes");
    assert!((per_connection - grown / 500.0).abs() < 1e-6);
    assert!(number(memory, "structural_bytes_per_connection") > 0.0);
}

/// Settings the run could not survive fail before anything runs, as bad
/// arguments (exit 2), instead of a minute in or after the whole run.
#[test]
fn settings_the_run_cannot_survive_are_refused_up_front() {
    let cases: [(&[&str], &str); 3] = [
        (&["--duration", "100000000h"], "at most 365 days"),
        (
            &["--idle-connections", "99999999999"],
            "between 1 and 1000000",
        ),
        (
            &["--quick", "--json", "/nonexistent-ringws-dir/x.json"],
            "/nonexistent-ringws-dir/x.json",
        ),
    ];
    for (args, expected) in cases {
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_ringws"))
            .arg("bench")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ringws runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{args:?} ran first"
        );
    }
}

/// More idle connections than the open-file limit allows are refused up
/// front (they used to fail a minute in, when the server could no longer
/// open `/proc/self/smaps_rollup`).
#[test]
fn idle_connections_beyond_the_open_file_limit_are_refused_up_front() {
    let command = format!(
        "ulimit -n 1000 && exec {} bench --quick --idle-connections 1500",
        env!("CARGO_BIN_EXE_ringws")
    );
    let output = Command::new("sh")
        .args(["-c", &command])
        .stdin(Stdio::null())
        .output()
        .expect("sh runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("1756 open files"), "{stderr}");
    assert!(stderr.contains("may open 1000"), "{stderr}");
}

/// The help tells scripts what the exit statuses mean, as `ringws load
/// --help` does.
#[test]
fn help_documents_the_exit_statuses() {
    let output = Command::new(env!("CARGO_BIN_EXE_ringws"))
        .args(["bench", "--help"])
        .stdin(Stdio::null())
        .output()
        .expect("ringws runs");
    let help = String::from_utf8_lossy(&output.stdout).replace('\n', " ");
    assert!(output.status.success(), "{help}");
    assert!(help.contains("Exit status: 0 when"), "{help}");
    assert!(help.contains("2 for invalid arguments"), "{help}");
}

/// `--json F` replaces F only with a complete report: a run that ends
/// before its report (killed here once it has begun measuring) leaves F as
/// it was, and nothing beside it. It used to truncate F before the run.
#[test]
fn a_run_that_ends_early_leaves_the_json_file_as_it_was() {
    use std::io::{BufRead, BufReader};

    let dir = std::env::temp_dir().join(format!("ringws-bench-early-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("report.json");
    std::fs::write(&path, "{\"earlier\": true}\n").unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringws"))
        .args(["bench", "--quick", "--json", path.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first progress line comes once the run has begun.
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("[1/"), "{line:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(started.elapsed() < LIMIT);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"earlier\": true}\n"
    );
    let entries = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(entries, 1, "nothing left beside the report");
    std::fs::remove_dir_all(&dir).unwrap();
}
