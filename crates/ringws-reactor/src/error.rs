//! Typed errors: why a reactor could not start, why a worker stopped, why a
//! send or connect was refused.
//!
//! Startup never panics. When io_uring cannot be used, the error names the
//! cause and the fix ([`RingUnavailable`]); [`classify_ring_error`] is the
//! pure errno → cause mapping, unit-tested below.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::WorkerId;

/// Path of the sysctl that disables io_uring system-wide (Linux 6.6+).
pub(crate) const IO_URING_DISABLED_SYSCTL: &str = "/proc/sys/kernel/io_uring_disabled";

/// Why io_uring itself cannot be used on this machine.
#[derive(Debug)]
#[non_exhaustive]
pub enum RingUnavailable {
    /// `io_uring_setup` returned `ENOSYS`: the kernel has no io_uring (too
    /// old, or built without `CONFIG_IO_URING`).
    NotImplemented,
    /// `kernel.io_uring_disabled = 2`: io_uring is disabled for everyone.
    DisabledBySysctl,
    /// `kernel.io_uring_disabled = 1`: io_uring is limited to members of
    /// `kernel.io_uring_group` (and CAP_SYS_ADMIN).
    RestrictedBySysctl,
    /// `EPERM` while the sysctl allows io_uring: a seccomp filter, container
    /// runtime or security module denied the system call.
    DeniedBySandbox,
    /// `ENOMEM`: the ring's memory could not be allocated or locked.
    OutOfMemory,
    /// `EMFILE`/`ENFILE`: no file descriptor left for the ring.
    OutOfFileDescriptors,
    /// The kernel lacks a feature ringws needs (provided buffer rings,
    /// multishot accept/recv, waits with a timeout argument: Linux 6.0 or
    /// newer).
    MissingFeature(&'static str),
    /// Any other setup error.
    Other(io::Error),
}

impl fmt::Display for RingUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingUnavailable::NotImplemented => f.write_str(
                "io_uring is not available: io_uring_setup returned ENOSYS (the kernel is older \
                 than 5.1 or was built without CONFIG_IO_URING); run on Linux 6.0 or newer with \
                 io_uring enabled",
            ),
            RingUnavailable::DisabledBySysctl => f.write_str(
                "io_uring is disabled by sysctl kernel.io_uring_disabled=2; set it to 0 with \
                 `sysctl -w kernel.io_uring_disabled=0`",
            ),
            RingUnavailable::RestrictedBySysctl => f.write_str(
                "io_uring is restricted by sysctl kernel.io_uring_disabled=1 to members of the \
                 group in kernel.io_uring_group; add this user to that group, or allow everyone \
                 with `sysctl -w kernel.io_uring_disabled=0`",
            ),
            RingUnavailable::DeniedBySandbox => f.write_str(
                "io_uring_setup was denied with EPERM although kernel.io_uring_disabled allows \
                 it: a seccomp filter or container runtime blocks io_uring (Docker's default \
                 profile does); allow io_uring_setup, io_uring_enter and io_uring_register, e.g. \
                 `docker run --security-opt seccomp=<profile allowing io_uring>`",
            ),
            RingUnavailable::OutOfMemory => f.write_str(
                "io_uring_setup failed with ENOMEM: the ring could not be allocated or locked; \
                 raise the locked-memory limit (`ulimit -l`, needed on kernels before 5.12) or \
                 configure fewer ring entries",
            ),
            RingUnavailable::OutOfFileDescriptors => f.write_str(
                "io_uring_setup failed: no file descriptor left (EMFILE/ENFILE); raise the limit \
                 with `ulimit -n`",
            ),
            RingUnavailable::MissingFeature(feature) => write!(
                f,
                "the kernel's io_uring lacks {feature}; ringws needs Linux 6.0 or newer"
            ),
            RingUnavailable::Other(error) => write!(f, "io_uring_setup failed: {error}"),
        }
    }
}

impl std::error::Error for RingUnavailable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RingUnavailable::Other(error) => Some(error),
            _ => None,
        }
    }
}

/// Maps the error of `io_uring_setup` to its cause. `disabled_sysctl` is the
/// value of `kernel.io_uring_disabled` when it could be read.
pub fn classify_ring_error(error: io::Error, disabled_sysctl: Option<u32>) -> RingUnavailable {
    match error.raw_os_error() {
        Some(libc::ENOSYS) => RingUnavailable::NotImplemented,
        Some(libc::EPERM) | Some(libc::EACCES) => match disabled_sysctl {
            Some(2) => RingUnavailable::DisabledBySysctl,
            Some(1) => RingUnavailable::RestrictedBySysctl,
            _ => RingUnavailable::DeniedBySandbox,
        },
        Some(libc::ENOMEM) => RingUnavailable::OutOfMemory,
        Some(libc::EMFILE) | Some(libc::ENFILE) => RingUnavailable::OutOfFileDescriptors,
        _ => RingUnavailable::Other(error),
    }
}

/// Reads `kernel.io_uring_disabled`; `None` when the file is missing
/// (kernels before 6.6) or unreadable.
pub(crate) fn read_disabled_sysctl() -> Option<u32> {
    std::fs::read_to_string(IO_URING_DISABLED_SYSCTL)
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

/// Why [`Reactor::start`](crate::Reactor::start) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is inconsistent; the message says which setting.
    Config(String),
    /// io_uring cannot be used here.
    Ring {
        /// The worker that found out.
        worker: WorkerId,
        /// Cause and fix.
        cause: RingUnavailable,
    },
    /// The kernel cannot register a provided buffer ring: it lacks them,
    /// or a sandbox denies `io_uring_register`.
    BufferRing {
        /// The worker whose registration failed.
        worker: WorkerId,
        /// Cause and fix.
        cause: RingUnavailable,
    },
    /// A worker's receive buffers
    /// ([`Config::recv_buffers`](crate::Config::recv_buffers)) could not be
    /// allocated or registered with its ring, e.g. `ENOMEM` for more than
    /// the address space or the memory limits allow.
    RecvBuffers {
        /// The worker whose buffers failed.
        worker: WorkerId,
        /// Number of buffers configured.
        count: u16,
        /// Size of each buffer in bytes.
        size: u32,
        /// The OS error.
        source: io::Error,
    },
    /// Creating, binding or listening on a listener socket failed.
    Listen {
        /// The address being bound.
        addr: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
    /// Creating a worker's wakeup eventfd failed.
    Eventfd(io::Error),
    /// Spawning a worker thread failed.
    Spawn(io::Error),
    /// A worker thread panicked during startup (the handler factory panicked).
    WorkerPanicked(WorkerId),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(message) => write!(f, "invalid reactor configuration: {message}"),
            StartError::Ring { worker, cause } => write!(f, "worker {}: {cause}", worker.index()),
            StartError::BufferRing { worker, cause } => write!(
                f,
                "worker {}: registering the provided buffer ring failed: {cause}",
                worker.index()
            ),
            StartError::RecvBuffers {
                worker,
                count,
                size,
                source,
            } => write!(
                f,
                "worker {}: setting up its receive buffers ({count} of {size} bytes, {} in all) \
                 failed: {source}; configure fewer or smaller ones (Config::recv_buffers)",
                worker.index(),
                format_bytes(u64::from(*count) * u64::from(*size)),
            ),
            StartError::Listen { addr, source } => {
                write!(f, "listening on {addr} failed: {source}")
            }
            StartError::Eventfd(source) => write!(f, "creating a wakeup eventfd failed: {source}"),
            StartError::Spawn(source) => write!(f, "spawning a worker thread failed: {source}"),
            StartError::WorkerPanicked(worker) => {
                write!(f, "worker {} panicked during startup", worker.index())
            }
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Ring { cause, .. } | StartError::BufferRing { cause, .. } => Some(cause),
            StartError::Listen { source, .. }
            | StartError::RecvBuffers { source, .. }
            | StartError::Eventfd(source)
            | StartError::Spawn(source) => Some(source),
            StartError::Config(_) | StartError::WorkerPanicked(_) => None,
        }
    }
}

/// `bytes` in the largest binary unit that keeps it at least 1 (`32 TiB`).
fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else if value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Why a worker's loop ended other than by a requested stop.
#[derive(Debug)]
#[non_exhaustive]
pub enum WorkerError {
    /// `io_uring_enter` failed with an error the loop cannot recover from.
    Enter {
        /// The worker.
        worker: WorkerId,
        /// The error.
        source: io::Error,
    },
    /// The worker thread panicked (a handler callback panicked).
    Panicked(WorkerId),
}

impl fmt::Display for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // EBADR (Linux 6.1+): the completion queue overflowed and the
            // kernel could not keep a completion, so an operation's outcome
            // is lost and the worker cannot go on.
            WorkerError::Enter { worker, source } if source.raw_os_error() == Some(libc::EBADR) => {
                write!(
                    f,
                    "worker {}: the kernel dropped a completion (EBADR: the completion queue \
                     overflowed and memory for the overflow ran out), so an operation's \
                     outcome was lost",
                    worker.index()
                )
            }
            WorkerError::Enter { worker, source } => {
                write!(
                    f,
                    "worker {}: io_uring_enter failed: {source}",
                    worker.index()
                )
            }
            WorkerError::Panicked(worker) => write!(f, "worker {} panicked", worker.index()),
        }
    }
}

impl std::error::Error for WorkerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WorkerError::Enter { source, .. } => Some(source),
            WorkerError::Panicked(_) => None,
        }
    }
}

/// Why [`Io::send`](crate::Io::send) refused a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The connection id is stale (closed) or belongs to another worker.
    UnknownConnection,
    /// A close or terminate was requested: nothing more is queued.
    Closing,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::UnknownConnection => {
                f.write_str("unknown connection (closed, or owned by another worker)")
            }
            SendError::Closing => f.write_str("connection is closing; nothing more can be queued"),
        }
    }
}

impl std::error::Error for SendError {}

/// Why [`Io::connect`](crate::Io::connect) failed before submitting; the
/// handler's state for the connection is handed back.
#[derive(Debug)]
pub struct ConnectError<C> {
    /// The socket error (creating, configuring or binding the socket), or
    /// `EMFILE`-like exhaustion of the worker's slab.
    pub error: io::Error,
    /// The state passed to `connect`.
    pub state: C,
}

impl<C> fmt::Display for ConnectError<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connect failed: {}", self.error)
    }
}

impl<C: fmt::Debug> std::error::Error for ConnectError<C> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// The worker behind an [`InboxSender`](crate::InboxSender) has stopped; the
/// command is handed back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxClosed<C>(pub C);

impl<C> fmt::Display for InboxClosed<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the worker has stopped; the command was not delivered")
    }
}

impl<C: fmt::Debug> std::error::Error for InboxClosed<C> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(errno: i32) -> io::Error {
        io::Error::from_raw_os_error(errno)
    }

    #[test]
    fn errno_to_cause_table() {
        let table: &[(i32, Option<u32>, &str)] = &[
            (libc::ENOSYS, None, "NotImplemented"),
            (libc::ENOSYS, Some(2), "NotImplemented"),
            (libc::EPERM, Some(2), "DisabledBySysctl"),
            (libc::EPERM, Some(1), "RestrictedBySysctl"),
            (libc::EPERM, Some(0), "DeniedBySandbox"),
            (libc::EPERM, None, "DeniedBySandbox"),
            (libc::EACCES, Some(2), "DisabledBySysctl"),
            (libc::ENOMEM, None, "OutOfMemory"),
            (libc::EMFILE, None, "OutOfFileDescriptors"),
            (libc::ENFILE, Some(0), "OutOfFileDescriptors"),
            (libc::EINVAL, None, "Other"),
        ];
        for &(errno, sysctl, expected) in table {
            let cause = classify_ring_error(os(errno), sysctl);
            let name = format!("{cause:?}");
            assert!(
                name.starts_with(expected),
                "errno {errno} sysctl {sysctl:?}: got {name}, want {expected}"
            );
        }
    }

    #[test]
    fn messages_name_cause_and_fix() {
        let disabled = classify_ring_error(os(libc::EPERM), Some(2)).to_string();
        assert!(
            disabled.contains("kernel.io_uring_disabled=2"),
            "{disabled}"
        );
        assert!(
            disabled.contains("sysctl -w kernel.io_uring_disabled=0"),
            "{disabled}"
        );

        let restricted = classify_ring_error(os(libc::EPERM), Some(1)).to_string();
        assert!(restricted.contains("kernel.io_uring_group"), "{restricted}");

        let sandbox = classify_ring_error(os(libc::EPERM), Some(0)).to_string();
        assert!(sandbox.contains("seccomp"), "{sandbox}");
        assert!(sandbox.contains("io_uring_setup"), "{sandbox}");

        let old = classify_ring_error(os(libc::ENOSYS), None).to_string();
        assert!(old.contains("ENOSYS") && old.contains("Linux 6.0"), "{old}");

        let memory = classify_ring_error(os(libc::ENOMEM), None).to_string();
        assert!(memory.contains("ulimit -l"), "{memory}");
    }

    #[test]
    fn other_errors_keep_their_source() {
        let cause = classify_ring_error(os(libc::EINVAL), None);
        let source = std::error::Error::source(&cause).map(|s| s.to_string());
        assert_eq!(source, Some(os(libc::EINVAL).to_string()));
    }

    #[test]
    fn receive_buffer_errors_name_worker_sizes_and_os_error() {
        let error = StartError::RecvBuffers {
            worker: WorkerId::new(2),
            count: 32768,
            size: 1 << 30,
            source: os(libc::ENOMEM),
        };
        let text = error.to_string();
        assert!(
            text.starts_with("worker 2: setting up its receive buffers"),
            "{text}"
        );
        assert!(
            text.contains("32768 of 1073741824 bytes, 32 TiB in all"),
            "{text}"
        );
        assert!(text.contains(&os(libc::ENOMEM).to_string()), "{text}");
        assert!(text.contains("Config::recv_buffers"), "{text}");
        let source = std::error::Error::source(&error).map(|s| s.to_string());
        assert_eq!(source, Some(os(libc::ENOMEM).to_string()));
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(100), "100 bytes");
    }

    #[test]
    fn start_error_wraps_the_cause() {
        let error = StartError::Ring {
            worker: WorkerId::new(3),
            cause: classify_ring_error(os(libc::EPERM), Some(2)),
        };
        let text = error.to_string();
        assert!(text.starts_with("worker 3: io_uring is disabled"), "{text}");
    }

    #[test]
    fn a_dropped_completion_is_named_as_such() {
        let dropped = WorkerError::Enter {
            worker: WorkerId::new(1),
            source: os(libc::EBADR),
        };
        let text = dropped.to_string();
        assert!(
            text.starts_with("worker 1: the kernel dropped a completion (EBADR"),
            "{text}"
        );
        let source = std::error::Error::source(&dropped).map(|s| s.to_string());
        assert_eq!(source, Some(os(libc::EBADR).to_string()));
        let other = WorkerError::Enter {
            worker: WorkerId::new(1),
            source: os(libc::EFAULT),
        };
        assert!(other
            .to_string()
            .starts_with("worker 1: io_uring_enter failed: "));
    }
}
