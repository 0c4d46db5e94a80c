//! Ring setup with flag fallback, and the wait primitive.
//!
//! Setup tries, in order, `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN`
//! (Linux 6.1: completions are processed only when the worker enters the
//! kernel to wait, with no interrupting task work), then
//! `IORING_SETUP_COOP_TASKRUN` (5.19), then no flag. A flag the kernel does
//! not know yields `EINVAL`, which moves on to the next attempt; any other
//! error is final and mapped to its cause. The mode obtained is recorded as
//! a [`RingMode`].

use std::io;
use std::time::Duration;

use io_uring::types::{SubmitArgs, Timespec};
use io_uring::IoUring;

use crate::error::{classify_ring_error, read_disabled_sysctl, RingUnavailable};

/// Which setup flags the ring got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RingMode {
    /// `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL`.
    DeferTaskrun,
    /// `IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL`.
    CoopTaskrun,
    /// No optional flag.
    Plain,
}

impl RingMode {
    /// A short name for logs and stats.
    pub fn as_str(self) -> &'static str {
        match self {
            RingMode::DeferTaskrun => "single_issuer+defer_taskrun",
            RingMode::CoopTaskrun => "coop_taskrun",
            RingMode::Plain => "plain",
        }
    }
}

impl std::fmt::Display for RingMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kernel's largest completion queue (`IORING_MAX_CQ_ENTRIES`); a
/// larger request fails the setup.
const MAX_CQ_ENTRIES: u32 = 65536;

/// Creates a ring with `entries` submission entries and four times as many
/// completion entries (at most the kernel's limit), trying the setup flags
/// in order. Must run on the thread that will submit (single issuer).
pub(crate) fn build_ring(entries: u32) -> Result<(IoUring, RingMode), RingUnavailable> {
    let cq_entries = entries.saturating_mul(4).min(MAX_CQ_ENTRIES);
    let attempts = [
        RingMode::DeferTaskrun,
        RingMode::CoopTaskrun,
        RingMode::Plain,
    ];
    let mut last_error = None;
    for mode in attempts {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(cq_entries);
        match mode {
            RingMode::DeferTaskrun => {
                builder
                    .setup_single_issuer()
                    .setup_defer_taskrun()
                    .setup_submit_all();
            }
            RingMode::CoopTaskrun => {
                builder.setup_coop_taskrun().setup_submit_all();
            }
            RingMode::Plain => {}
        }
        match builder.build(entries) {
            Ok(ring) => return Ok((ring, mode)),
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => last_error = Some(error),
            Err(error) => return Err(classify_ring_error(error, read_disabled_sysctl())),
        }
    }
    let error = last_error.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL));
    Err(classify_ring_error(error, read_disabled_sysctl()))
}

/// Submits pending entries and waits for at least one completion, at most
/// `timeout` (forever when `None`). Requires `IORING_FEAT_EXT_ARG` when a
/// timeout is given. Timeouts and signals are not errors.
pub(crate) fn submit_and_wait(ring: &IoUring, timeout: Option<Duration>) -> io::Result<()> {
    let result = match timeout {
        None => ring.submitter().submit_and_wait(1),
        Some(timeout) => {
            let timespec = timespec(timeout);
            let args = SubmitArgs::new().timespec(&timespec);
            ring.submitter().submit_with_args(1, &args)
        }
    };
    tolerate(result)
}

/// Submits pending entries and reaps completions without waiting.
pub(crate) fn submit_no_wait(ring: &IoUring) -> io::Result<()> {
    // SAFETY: `enter` with no argument pointer (`None`) and the submission
    // count reported by the ring itself is the documented way to submit and
    // run deferred task work (`IORING_ENTER_GETEVENTS`) without waiting.
    let result = unsafe {
        ring.submitter().enter::<libc::sigset_t>(
            ring_sq_len(ring),
            0,
            io_uring_enter_getevents(),
            None,
        )
    };
    tolerate(result)
}

fn ring_sq_len(ring: &IoUring) -> u32 {
    // SAFETY: reading the submission queue's length through a shared view is
    // sound: the worker is the only thread that touches this ring and it holds
    // no other submission queue view while calling this.
    let len = unsafe { ring.submission_shared() }.len();
    len as u32
}

const fn io_uring_enter_getevents() -> u32 {
    // IORING_ENTER_GETEVENTS from the kernel uapi.
    1
}

pub(crate) fn timespec(duration: Duration) -> Timespec {
    Timespec::new()
        .sec(duration.as_secs())
        .nsec(duration.subsec_nanos())
}

/// Errors of `io_uring_enter` that only mean "come back": the wait timed out
/// (`ETIME`), a signal arrived (`EINTR`), or the completion queue must be
/// drained first (`EBUSY`, `EAGAIN`).
fn tolerate(result: io::Result<usize>) -> io::Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(error) => match error.raw_os_error() {
            Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN) => {
                Ok(())
            }
            _ => Err(error),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enter_errors_that_mean_retry_are_tolerated() {
        for errno in [libc::ETIME, libc::EINTR, libc::EBUSY, libc::EAGAIN] {
            assert!(
                tolerate(Err(io::Error::from_raw_os_error(errno))).is_ok(),
                "{errno}"
            );
        }
        for errno in [libc::EBADF, libc::EFAULT, libc::EINVAL] {
            assert!(
                tolerate(Err(io::Error::from_raw_os_error(errno))).is_err(),
                "{errno}"
            );
        }
    }

    #[test]
    fn ring_builds_and_records_its_mode() {
        // The test machines run Linux 6.x with io_uring enabled.
        let (ring, mode) = build_ring(8).expect("io_uring available");
        assert_eq!(mode, RingMode::DeferTaskrun);
        assert!(ring.params().is_feature_ext_arg());
        // A wait with a short timeout returns without error (ETIME tolerated).
        submit_and_wait(&ring, Some(Duration::from_millis(1))).unwrap();
        submit_no_wait(&ring).unwrap();
    }
}
