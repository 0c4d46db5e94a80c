//! What a load run does: [`LoadConfig`], its [`Mode`], and the parsers for
//! the command-line forms of its values (source-address ranges, core lists,
//! durations).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The shape of the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Closed loop: every connection keeps `pipeline` messages in flight and
    /// sends the next one when an echo returns.
    Echo,
    /// Open loop: `rate` messages per second in total, spread over the
    /// connections; latency counts from each message's intended send time.
    Rate,
    /// Connect, handshake, exchange `messages_per_cycle` messages, close with
    /// `close_code`; repeat, `concurrency` cycles at a time, optionally at
    /// `rate` cycles per second.
    Churn,
    /// Open `connections`, hold them for the duration, optionally pinging
    /// each one every `ping_interval`.
    Hold,
}

impl Mode {
    /// The mode's name as written on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Rate => "rate",
            Mode::Churn => "churn",
            Mode::Hold => "hold",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether messages go out as Text (ASCII payload) or Binary frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadKind {
    /// Binary frames with pseudo-random bytes.
    Binary,
    /// Text frames with printable ASCII.
    Text,
}

/// Everything a load run needs. Build with [`LoadConfig::new`] and set the
/// public fields; [`run`](crate::load::run) validates it first.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadConfig {
    /// `ws://host[:port]/path` of the server under test.
    pub url: String,
    /// The shape of the load.
    pub mode: Mode,
    /// Connections to open (echo, rate, hold).
    pub connections: usize,
    /// Cycles in progress at once (churn).
    pub concurrency: usize,
    /// Payload bytes per message.
    pub payload_size: usize,
    /// Text or Binary frames.
    pub payload_kind: PayloadKind,
    /// Messages in flight per connection (echo, churn).
    pub pipeline: usize,
    /// How long messages are sent (after the connections are open; churn:
    /// from the start).
    pub duration: Duration,
    /// Messages per second in total (rate, required) or cycles per second
    /// (churn, optional: as fast as `concurrency` allows when absent).
    pub rate: Option<f64>,
    /// Messages exchanged per churn cycle; 0: a cycle connects, upgrades
    /// and closes.
    pub messages_per_cycle: u32,
    /// Stop churning after this many cycles in total (the duration still
    /// bounds the run).
    pub cycles: Option<u64>,
    /// The code of the Close frames the generator sends.
    pub close_code: u16,
    /// Connections opened per second (all modes but churn); `None`: as fast
    /// as the workers can.
    pub ramp: Option<f64>,
    /// Ping every open connection this often (hold).
    pub ping_interval: Option<Duration>,
    /// Source addresses to spread connections over (round robin); empty:
    /// the kernel chooses.
    pub source_addrs: Vec<IpAddr>,
    /// Worker threads; `None`: one per available core.
    pub workers: Option<usize>,
    /// Cores to pin workers to (worker `i` on `cpus[i % len]`); `None`: pin
    /// worker `i` to core `i` when there are enough cores.
    pub cpus: Option<Vec<usize>>,
    /// Bound on each wait: connect plus handshake, replies after the sending
    /// window, and the closing handshake.
    pub timeout: Duration,
    /// Most messages in flight on one connection in rate mode; messages due
    /// beyond it wait (their latency still counts from the intended time).
    pub max_in_flight: usize,
    /// Extra request headers for the opening handshake.
    pub headers: Vec<(String, String)>,
}

impl LoadConfig {
    /// Defaults: 64 connections (churn: concurrency 16), 32-byte binary
    /// payload, pipeline 1, 10 s, close code 1000, 5 s timeout, at most 1024
    /// messages in flight per connection in rate mode.
    pub fn new(url: impl Into<String>, mode: Mode) -> LoadConfig {
        LoadConfig {
            url: url.into(),
            mode,
            connections: 64,
            concurrency: 16,
            payload_size: 32,
            payload_kind: PayloadKind::Binary,
            pipeline: 1,
            duration: Duration::from_secs(10),
            rate: None,
            messages_per_cycle: 1,
            cycles: None,
            close_code: 1000,
            ramp: None,
            ping_interval: None,
            source_addrs: Vec::new(),
            workers: None,
            cpus: None,
            timeout: Duration::from_secs(5),
            max_in_flight: 1024,
            headers: Vec::new(),
        }
    }

    /// The worker count this configuration runs with.
    pub fn worker_count(&self) -> usize {
        self.workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Connections (or, in churn, cycles) run at once in total.
    pub(crate) fn parallelism(&self) -> usize {
        match self.mode {
            Mode::Churn => self.concurrency,
            Mode::Echo | Mode::Rate | Mode::Hold => self.connections,
        }
    }

    /// Checks the values against each other; the message names the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |message: String| Err(ConfigError(message));
        if self.parallelism() == 0 {
            return fail(match self.mode {
                Mode::Churn => "--concurrency must be at least 1".into(),
                _ => "--connections must be at least 1".into(),
            });
        }
        if self.worker_count() == 0 || self.worker_count() > usize::from(u16::MAX) {
            return fail("--workers must be between 1 and 65535".into());
        }
        if self.pipeline == 0 {
            return fail("--pipeline must be at least 1".into());
        }
        // Deadlines are instants computed from these: bounded so that the
        // sum can never overflow.
        let spans = [
            ("--duration", Some(self.duration)),
            ("--timeout", Some(self.timeout)),
            ("--ping-interval", self.ping_interval),
        ];
        for (name, span) in spans {
            match span {
                Some(span) if span.is_zero() => return fail(format!("{name} must be positive")),
                Some(span) if span > MAX_SPAN => {
                    return fail(format!("{name} must be at most {} days", MAX_SPAN_DAYS));
                }
                _ => {}
            }
        }
        if self.max_in_flight == 0 {
            return fail("--max-in-flight must be at least 1".into());
        }
        if self.payload_size > MAX_PAYLOAD_SIZE {
            return fail(format!(
                "--payload-size must be at most {MAX_PAYLOAD_SIZE} bytes"
            ));
        }
        match (self.mode, self.rate) {
            (Mode::Rate, None) => return fail("rate mode needs --rate (messages/s)".into()),
            (_, Some(rate)) if !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE) => {
                return fail(format!("--rate must be above 0 and at most {MAX_RATE}"));
            }
            _ => {}
        }
        if let Some(ramp) = self.ramp {
            if !(ramp.is_finite() && ramp > 0.0 && ramp <= MAX_RATE) {
                return fail(format!("--ramp must be above 0 and at most {MAX_RATE}"));
            }
            // The run's deadline counts the ramp: it must stay bounded.
            if self.mode != Mode::Churn && self.connections as f64 / ramp > MAX_SPAN.as_secs_f64() {
                return fail(format!(
                    "--ramp is too slow: opening {} connections would take more than \
                     {MAX_SPAN_DAYS} days",
                    self.connections
                ));
            }
        }
        if !ringws_proto::close::CloseCode(self.close_code).is_valid_on_wire()
            || self.close_code < 1000
        {
            return fail(format!(
                "--close-code {} may not be sent (use 1000-1003, 1007-1014 or 3000-4999)",
                self.close_code
            ));
        }
        if self.cycles == Some(0) {
            return fail("--cycles must be at least 1".into());
        }
        if let Some(cpus) = &self.cpus {
            if cpus.is_empty() {
                return fail("--cpus lists no core".into());
            }
        }
        Ok(())
    }
}

/// Largest payload the generator sends (it prebuilds one frame per message
/// in flight, so this bounds its memory).
pub const MAX_PAYLOAD_SIZE: usize = 16 << 20;

/// Largest `--rate` or `--ramp` (per second).
pub const MAX_RATE: f64 = 1e9;

/// Longest `--duration`, `--timeout` or `--ping-interval`, in days.
pub(crate) const MAX_SPAN_DAYS: u64 = 365;
pub(crate) const MAX_SPAN: Duration = Duration::from_secs(MAX_SPAN_DAYS * 24 * 3600);

/// A setting that is out of range or inconsistent with another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Most addresses a source-address list may expand to.
pub const MAX_SOURCE_ADDRS: usize = 1 << 16;

/// Parses a source-address list: comma-separated addresses and inclusive
/// ranges of one family, e.g. `127.0.0.2-127.0.0.40,127.0.1.1` or
/// `::1,fd00::1-fd00::8`. Order is kept; at most [`MAX_SOURCE_ADDRS`].
pub fn parse_source_addrs(text: &str) -> Result<Vec<IpAddr>, ConfigError> {
    let mut addrs = Vec::new();
    for part in text.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(ConfigError(format!("empty entry in source list {text:?}")));
        }
        let (first, last) = match part.split_once('-') {
            Some((first, last)) => (parse_ip(first.trim())?, parse_ip(last.trim())?),
            None => {
                let ip = parse_ip(part)?;
                (ip, ip)
            }
        };
        let (start, end) = match (first, last) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b))),
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b)),
            _ => return Err(ConfigError(format!("range {part:?} mixes IPv4 and IPv6"))),
        };
        if end < start {
            return Err(ConfigError(format!("range {part:?} ends before it starts")));
        }
        let count = end - start + 1;
        if count > (MAX_SOURCE_ADDRS - addrs.len()) as u128 {
            return Err(ConfigError(format!(
                "source list {text:?} has more than {MAX_SOURCE_ADDRS} addresses"
            )));
        }
        for value in start..=end {
            addrs.push(match first {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(value as u32)),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(value)),
            });
        }
    }
    Ok(addrs)
}

fn parse_ip(text: &str) -> Result<IpAddr, ConfigError> {
    text.parse()
        .map_err(|_| ConfigError(format!("{text:?} is not an IP address")))
}

/// Parses a core list: comma-separated core ids and inclusive ranges, e.g.
/// `1`, `0,2`, `0-3,8`.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, ConfigError> {
    let mut cores = Vec::new();
    for part in text.split(',').map(str::trim) {
        let parse = |value: &str| {
            value
                .trim()
                .parse::<usize>()
                .map_err(|_| ConfigError(format!("{value:?} is not a core id")))
        };
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (parse(first)?, parse(last)?);
                if last < first || last - first >= 4096 {
                    return Err(ConfigError(format!("core range {part:?} is invalid")));
                }
                cores.extend(first..=last);
            }
            None => cores.push(parse(part)?),
        }
    }
    Ok(cores)
}

/// Parses a duration: a number with an optional unit `ms`, `s` (default),
/// `m` or `h`, e.g. `500ms`, `2`, `1.5s`, `3m`.
pub fn parse_duration(text: &str) -> Result<Duration, ConfigError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| ConfigError(format!("{text:?} is not a duration (e.g. 500ms, 10s, 2m)")))?;
    let scale = match unit.trim() {
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(ConfigError(format!(
                "unknown duration unit {other:?} (use ms, s, m or h)"
            )))
        }
    };
    Duration::try_from_secs_f64(value * scale)
        .map_err(|_| ConfigError(format!("duration {text:?} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    #[test]
    fn source_range_expands_inclusively_in_order() {
        let addrs = parse_source_addrs("127.0.0.2-127.0.0.40").unwrap();
        assert_eq!(addrs.len(), 39);
        assert_eq!(addrs[0], v4(2));
        assert_eq!(addrs[38], v4(40));
        assert!(addrs.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn source_list_mixes_singles_and_ranges() {
        let addrs = parse_source_addrs("127.0.0.9, 127.0.0.2-127.0.0.3,127.0.0.9").unwrap();
        assert_eq!(addrs, vec![v4(9), v4(2), v4(3), v4(9)]);
        let single = parse_source_addrs("127.0.0.5-127.0.0.5").unwrap();
        assert_eq!(single, vec![v4(5)]);
    }

    #[test]
    fn source_range_crosses_octet_boundaries() {
        let addrs = parse_source_addrs("10.0.0.254-10.0.1.1").unwrap();
        let expected: Vec<IpAddr> = ["10.0.0.254", "10.0.0.255", "10.0.1.0", "10.0.1.1"]
            .iter()
            .map(|text| text.parse().unwrap())
            .collect();
        assert_eq!(addrs, expected);
    }

    #[test]
    fn ipv6_ranges_work() {
        let addrs = parse_source_addrs("fd00::fe-fd00::101").unwrap();
        assert_eq!(addrs.len(), 4);
        assert_eq!(addrs[3], "fd00::101".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn bad_source_lists_are_refused_with_a_reason() {
        let cases = [
            ("127.0.0.9-127.0.0.2", "ends before"),
            ("127.0.0.1-::1", "mixes"),
            ("127.0.0.1,,127.0.0.2", "empty entry"),
            ("localhost", "not an IP"),
            ("10.0.0.0-10.255.255.255", "more than"),
            ("::-ffff::", "more than"),
        ];
        for (text, reason) in cases {
            let error = parse_source_addrs(text).unwrap_err().to_string();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("1").unwrap(), vec![1]);
        assert_eq!(parse_cpu_list("0-3,8").unwrap(), vec![0, 1, 2, 3, 8]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert!(parse_cpu_list("").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("3m").unwrap(), Duration::from_secs(180));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1e400").is_err());
    }

    #[test]
    fn validation_names_the_setting() {
        let base = LoadConfig::new("ws://127.0.0.1:1/", Mode::Echo);
        assert!(base.validate().is_ok());
        let cases: Vec<(LoadConfig, &str)> = vec![
            (LoadConfig::new("ws://x/", Mode::Rate), "--rate"),
            (
                LoadConfig {
                    connections: 0,
                    ..base.clone()
                },
                "--connections",
            ),
            (
                LoadConfig {
                    close_code: 1006,
                    ..base.clone()
                },
                "--close-code",
            ),
            (
                LoadConfig {
                    rate: Some(-1.0),
                    ..base.clone()
                },
                "--rate",
            ),
            (
                LoadConfig {
                    pipeline: 0,
                    ..base.clone()
                },
                "--pipeline",
            ),
            (
                LoadConfig {
                    duration: Duration::from_secs(10_000_000_000_000_000_000),
                    ..base.clone()
                },
                "--duration",
            ),
            (
                LoadConfig {
                    timeout: Duration::MAX,
                    ..base.clone()
                },
                "--timeout",
            ),
            (
                LoadConfig {
                    ramp: Some(1e-300),
                    ..base.clone()
                },
                "--ramp",
            ),
            (
                LoadConfig {
                    ping_interval: Some(Duration::ZERO),
                    ..base.clone()
                },
                "--ping-interval",
            ),
            (
                LoadConfig {
                    mode: Mode::Churn,
                    concurrency: 0,
                    ..base.clone()
                },
                "--concurrency",
            ),
        ];
        for (config, word) in cases {
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(word), "{error} should name {word}");
        }
    }
}
