//! Reactor configuration: a builder-style [`Config`] validated by
//! [`Reactor::start`](crate::Reactor::start).

use std::net::SocketAddr;
use std::time::Duration;

use crate::buf_ring::MAX_ENTRIES;
use crate::error::StartError;
use crate::ring::RingSetup;
use crate::user_data::MAX_SLOTS;

/// The listeners' `listen(2)` backlog unless [`Config::backlog`] sets one.
const DEFAULT_BACKLOG: i32 = 1024;

/// How workers are pinned to cores.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CorePinning {
    /// Pin worker `i` to the `i`-th core reported by the OS when there are
    /// at least as many cores as workers; otherwise do not pin.
    #[default]
    Auto,
    /// Do not pin.
    Off,
    /// Pin worker `i` to core id `cores[i % cores.len()]`.
    Cores(Vec<usize>),
}

/// One `SO_REUSEPORT` listener per worker on this address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenConfig {
    /// Address to bind (IPv4 or IPv6). Port 0: the first worker's listener
    /// picks a port and the others bind the same one.
    pub addr: SocketAddr,
    /// `listen(2)` backlog of each listener.
    pub backlog: i32,
}

/// Reactor settings. Start from [`Config::new`] and chain the setters.
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) workers: usize,
    pub(crate) pinning: CorePinning,
    /// The listeners' address; with `backlog`, see [`Config::listen_config`].
    listen_addr: Option<SocketAddr>,
    /// Kept apart from the address so that [`Config::backlog`] holds
    /// whether it is called before or after [`Config::listen`].
    backlog: i32,
    pub(crate) ring_entries: u32,
    pub(crate) buffer_count: u16,
    pub(crate) buffer_size: u32,
    pub(crate) send_high_water: usize,
    pub(crate) send_low_water: usize,
    pub(crate) close_linger: Duration,
    pub(crate) max_connections: u32,
    pub(crate) stop_timeout: Duration,
    pub(crate) thread_name: String,
    pub(crate) socket_send_buffer: Option<usize>,
    pub(crate) buffer_release_period: Option<Duration>,
    pub(crate) ring_setup: RingSetup,
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl Config {
    /// Defaults: one worker per available core, [`CorePinning::Auto`], no
    /// listener, 1024 submission entries (4096 completion entries), 1024
    /// receive buffers of 32 KiB per worker, `on_drained` after 64 KiB queued
    /// drains to 0, 5 s close linger, 1,000,000 connections per worker,
    /// [`RingSetup::Auto`].
    pub fn new() -> Config {
        Config {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pinning: CorePinning::Auto,
            listen_addr: None,
            backlog: DEFAULT_BACKLOG,
            ring_entries: 1024,
            buffer_count: 1024,
            buffer_size: 32 * 1024,
            send_high_water: 64 * 1024,
            send_low_water: 0,
            close_linger: Duration::from_secs(5),
            max_connections: 1_000_000,
            stop_timeout: Duration::from_secs(2),
            thread_name: "ringws-worker".to_owned(),
            socket_send_buffer: None,
            buffer_release_period: None,
            ring_setup: RingSetup::Auto,
        }
    }

    /// Number of worker threads (each with its own ring).
    pub fn workers(mut self, workers: usize) -> Config {
        self.workers = workers;
        self
    }

    /// Core pinning policy.
    pub fn pinning(mut self, pinning: CorePinning) -> Config {
        self.pinning = pinning;
        self
    }

    /// Listen on `addr` with one `SO_REUSEPORT` listener per worker, with
    /// the backlog set by [`backlog`](Self::backlog) (1024 unless set).
    pub fn listen(mut self, addr: SocketAddr) -> Config {
        self.listen_addr = Some(addr);
        self
    }

    /// Sets the listeners' `listen(2)` backlog, before or after
    /// [`listen`](Self::listen) (it has no effect without a listener). Each
    /// worker's listener gets it; it must be positive, and the kernel caps
    /// it at `net.core.somaxconn`.
    pub fn backlog(mut self, backlog: i32) -> Config {
        self.backlog = backlog;
        self
    }

    /// Submission queue entries per ring (the completion queue gets four
    /// times as many).
    pub fn ring_entries(mut self, entries: u32) -> Config {
        self.ring_entries = entries;
        self
    }

    /// Provided receive buffers per worker: `count` (a power of two, at most
    /// 32768) buffers of `size` bytes. About 2 MiB of them (at least 16) are
    /// offered to the kernel at start, and twice as many each time a receive
    /// finds none left, up to `count`: few connections then cycle through
    /// buffers the caches still hold.
    pub fn recv_buffers(mut self, count: u16, size: u32) -> Config {
        self.buffer_count = count;
        self.buffer_size = size;
        self
    }

    /// `on_drained` fires when a connection's queued bytes, after exceeding
    /// `high`, fall to `low` or below.
    pub fn send_water_marks(mut self, high: usize, low: usize) -> Config {
        self.send_high_water = high;
        self.send_low_water = low;
        self
    }

    /// How long a graceful close waits for the peer's FIN after sending ours.
    pub fn close_linger(mut self, linger: Duration) -> Config {
        self.close_linger = linger;
        self
    }

    /// Most simultaneous connections per worker (at most 2^24 − 1).
    pub fn max_connections(mut self, max: u32) -> Config {
        self.max_connections = max;
        self
    }

    /// How long a stopping worker waits for its in-flight operations (2 s
    /// by default). The stop aborts every connection and always runs one
    /// more loop turn, which submits the cancellations and reaps what they
    /// complete, so even with [`Duration::ZERO`] every connection whose
    /// operations the kernel cancels at once (as it does for sockets) gets
    /// `on_closed`. A timeout too large to be added to the current instant
    /// (such as [`Duration::MAX`]) means no deadline: the worker waits for
    /// every operation.
    pub fn stop_timeout(mut self, timeout: Duration) -> Config {
        self.stop_timeout = timeout;
        self
    }

    /// Prefix of worker thread names (`<prefix>-<index>`). It must not
    /// contain a NUL byte ([`Reactor::start`](crate::Reactor::start) refuses
    /// it with [`StartError::Config`]); Linux shows the first 15 bytes of a
    /// thread name.
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Config {
        self.thread_name = prefix.into();
        self
    }

    /// Requests `SO_SNDBUF` of `bytes` on every socket the workers accept or
    /// connect (the kernel doubles it and turns off autotuning for that
    /// socket). Unset by default: the kernel autotunes up to
    /// `net.ipv4.tcp_wmem`'s maximum. A small buffer bounds the memory a slow
    /// reader can pin in the kernel; the rest waits in the send queue, where
    /// the water marks see it.
    pub fn socket_send_buffer(mut self, bytes: usize) -> Config {
        self.socket_send_buffer = Some(bytes);
        self
    }

    /// How often a worker that received anything checks whether its receive
    /// buffers hold pages that the traffic no longer needs: when more are
    /// resident than the period's receives wrote (by 1 MiB or more), the
    /// pages of the buffers not in use go back to the kernel
    /// (`MADV_DONTNEED`) and are faulted in again when next written; the
    /// byte pool is emptied too and, with glibc, the allocator's free pages
    /// are returned (`malloc_trim`). A burst grows the ring up to every
    /// buffer (32 MiB by default) and fills the pool; this lets a quiet
    /// worker shrink back. The ring's pages go back 64 buffers per loop
    /// turn (0.16–0.28 ms a turn on a 2-core VM; see docs/benchmarks.md),
    /// and traffic that resumes stops the release; the trim runs on an
    /// idle-priority thread on the worker's core. Off (`None`, every page
    /// kept) unless asked for: the slices still delay a message by up to a
    /// slice, and the next burst faults the pages in again.
    /// Only with `IORING_SETUP_DEFER_TASKRUN` (Linux 6.1,
    /// [`RingMode::DeferTaskrun`](crate::RingMode::DeferTaskrun)), where
    /// receives write buffers only while the worker waits for completions;
    /// in the other modes every page is kept.
    pub fn buffer_release_period(mut self, period: Option<Duration>) -> Config {
        self.buffer_release_period = period;
        self
    }

    /// The most capable io_uring setup the workers may ask for (default
    /// [`RingSetup::Auto`]: the most capable the kernel grants). A kernel
    /// that refuses the setup asked for still gets the next less capable
    /// one; [`WorkerInfo::ring_mode`](crate::WorkerInfo::ring_mode) reports
    /// what each worker got. [`RingSetup::CoopTaskrun`] avoids
    /// `IORING_SETUP_DEFER_TASKRUN` and behaves as on Linux 5.19 to 6.0;
    /// [`RingSetup::Plain`] uses no optional setup flag.
    pub fn ring_setup(mut self, setup: RingSetup) -> Config {
        self.ring_setup = setup;
        self
    }

    /// Number of workers.
    pub fn worker_count(&self) -> usize {
        self.workers
    }

    /// The io_uring setup asked for with [`ring_setup`](Self::ring_setup).
    pub fn requested_ring_setup(&self) -> RingSetup {
        self.ring_setup
    }

    /// The listener settings, if any.
    pub fn listen_config(&self) -> Option<ListenConfig> {
        self.listen_addr.map(|addr| ListenConfig {
            addr,
            backlog: self.backlog,
        })
    }

    pub(crate) fn validate(&self) -> Result<(), StartError> {
        let fail = |message: &str| Err(StartError::Config(message.to_owned()));
        if self.workers == 0 || self.workers > usize::from(u16::MAX) {
            return fail("workers must be between 1 and 65535");
        }
        if !recv_buffer_count_valid(self.buffer_count) {
            return fail("recv buffer count must be a power of two between 1 and 32768");
        }
        if !recv_buffer_size_valid(self.buffer_size) {
            return fail("recv buffer size must be between 1 byte and 1 GiB");
        }
        if self.ring_entries == 0 || self.ring_entries > 32768 {
            return fail("ring entries must be between 1 and 32768");
        }
        if self.max_connections == 0 || self.max_connections >= MAX_SLOTS {
            return fail("max connections per worker must be between 1 and 2^24 - 1");
        }
        if self.send_low_water > self.send_high_water {
            return fail("send low-water mark must not exceed the high-water mark");
        }
        if let Some(bytes) = self.socket_send_buffer {
            if bytes == 0 || bytes > (i32::MAX / 2) as usize {
                return fail("socket send buffer must be between 1 byte and 1 GiB");
            }
        }
        if self.buffer_release_period == Some(Duration::ZERO) {
            return fail("buffer release period must be positive (None turns releasing off)");
        }
        if let CorePinning::Cores(cores) = &self.pinning {
            if cores.is_empty() {
                return fail("core list is empty");
            }
            // A pin to a core the process may not use fails silently at
            // start; refuse it here instead.
            if let Some(core) = first_unavailable_core(cores) {
                return Err(StartError::Config(unavailable_core_message(core)));
            }
        }
        if self.thread_name.contains('\0') {
            // `std::thread::Builder::spawn` panics on such a name.
            return fail("worker thread name must not contain a NUL byte");
        }
        if let Some(listen) = self.listen_config() {
            if listen.backlog <= 0 {
                return fail("listen backlog must be positive");
            }
        }
        Ok(())
    }
}

/// Whether `count` receive buffers are allowed: a power of two, at most
/// 32768 (the provided buffer ring's limit).
pub fn recv_buffer_count_valid(count: u16) -> bool {
    count.is_power_of_two() && count <= MAX_ENTRIES
}

/// Whether receive buffers of `size` bytes are allowed: 1 byte to 1 GiB.
pub fn recv_buffer_size_valid(size: u32) -> bool {
    (1..=1 << 30).contains(&size)
}

/// Why a pin to `core` cannot hold, naming the cores that can.
pub fn unavailable_core_message(core: usize) -> String {
    let allowed: Vec<String> = available_cores()
        .unwrap_or_default()
        .iter()
        .map(usize::to_string)
        .collect();
    format!(
        "core {core} is not one this process may run on (allowed: {})",
        allowed.join(",")
    )
}

/// The cores this process may run on (its affinity mask), `None` when it
/// cannot be read.
pub fn available_cores() -> Option<Vec<usize>> {
    core_affinity::get_core_ids().map(|ids| ids.into_iter().map(|core| core.id).collect())
}

/// The first of `cores` outside the process's affinity mask (none when the
/// mask cannot be read).
pub fn first_unavailable_core(cores: &[usize]) -> Option<usize> {
    let available = available_cores()?;
    cores.iter().copied().find(|core| !available.contains(core))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(Config::new().validate().is_ok());
        assert!(Config::new().workers(1).validate().is_ok());
    }

    #[test]
    fn the_backlog_holds_whichever_setter_comes_first() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let backlog = |config: Config| config.listen_config().map(|listen| listen.backlog);
        assert_eq!(backlog(Config::new().listen(addr)), Some(DEFAULT_BACKLOG));
        assert_eq!(backlog(Config::new().listen(addr).backlog(7)), Some(7));
        assert_eq!(backlog(Config::new().backlog(7).listen(addr)), Some(7));
        // A later listen keeps it; a backlog without a listener does nothing.
        let twice = Config::new().backlog(7).listen(addr).listen(addr);
        assert_eq!(backlog(twice), Some(7));
        assert_eq!(backlog(Config::new().backlog(7)), None);
    }

    #[test]
    fn invalid_settings_are_named() {
        let cases: Vec<(Config, &str)> = vec![
            (Config::new().workers(0), "workers"),
            (Config::new().recv_buffers(3, 1024), "power of two"),
            (Config::new().recv_buffers(8, 0), "buffer size"),
            (Config::new().ring_entries(0), "ring entries"),
            (Config::new().max_connections(1 << 24), "max connections"),
            (Config::new().send_water_marks(10, 20), "low-water"),
            (Config::new().socket_send_buffer(0), "send buffer"),
            (
                Config::new().buffer_release_period(Some(Duration::ZERO)),
                "buffer release period",
            ),
            (Config::new().socket_send_buffer(1 << 31), "send buffer"),
            (Config::new().thread_name("a\0b"), "thread name"),
            (
                Config::new().pinning(CorePinning::Cores(vec![])),
                "core list",
            ),
            (
                Config::new().pinning(CorePinning::Cores(vec![0, 100_000])),
                "core 100000 is not one this process may run on",
            ),
            (
                Config::new()
                    .listen("127.0.0.1:0".parse().unwrap())
                    .backlog(0),
                "backlog",
            ),
            (
                Config::new()
                    .backlog(-1)
                    .listen("127.0.0.1:0".parse().unwrap()),
                "backlog",
            ),
        ];
        for (config, word) in cases {
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(word), "{error} should mention {word}");
        }
    }
}
