//! Ring setup with flag fallback, and the wait primitive.
//!
//! Setup tries, in order, `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN`
//! (Linux 6.1: completions are processed only when the worker enters the
//! kernel to wait, with no interrupting task work), then
//! `IORING_SETUP_COOP_TASKRUN` (5.19), then no flag, starting from the most
//! capable mode the [`RingSetup`] allows. A flag the kernel does not know
//! yields `EINVAL`, which moves on to the next attempt; any other error is
//! final and mapped to its cause. The mode obtained is recorded as a
//! [`RingMode`].

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

/// The most capable ring setup a worker may ask the kernel for
/// ([`Config::ring_setup`](crate::Config::ring_setup)). Whatever is asked
/// for, a kernel that refuses it gets the next, less capable, setup; the
/// mode obtained is [`WorkerInfo::ring_mode`](crate::WorkerInfo::ring_mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RingSetup {
    /// The most capable setup the kernel grants: [`RingMode::DeferTaskrun`]
    /// from Linux 6.1, else [`RingMode::CoopTaskrun`], else
    /// [`RingMode::Plain`].
    #[default]
    Auto,
    /// At most [`RingMode::CoopTaskrun`]: completions are posted while the
    /// worker runs, not only while it waits, as on Linux 5.19 to 6.0 (or
    /// to avoid `IORING_SETUP_DEFER_TASKRUN`). Receive-buffer pages are
    /// then never given back
    /// ([`Config::buffer_release_period`](crate::Config::buffer_release_period)).
    CoopTaskrun,
    /// [`RingMode::Plain`]: no optional setup flag; the kernel interrupts
    /// the worker to run its task work.
    Plain,
}

impl RingSetup {
    /// The modes to try, most capable first.
    fn attempts(self) -> &'static [RingMode] {
        const ALL: [RingMode; 3] = [
            RingMode::DeferTaskrun,
            RingMode::CoopTaskrun,
            RingMode::Plain,
        ];
        match self {
            RingSetup::Auto => &ALL,
            RingSetup::CoopTaskrun => &ALL[1..],
            RingSetup::Plain => &ALL[2..],
        }
    }

    /// A short name for flags and logs: `auto`, `coop_taskrun` or `plain`.
    pub fn as_str(self) -> &'static str {
        match self {
            RingSetup::Auto => "auto",
            RingSetup::CoopTaskrun => "coop_taskrun",
            RingSetup::Plain => "plain",
        }
    }
}

impl std::fmt::Display for RingSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kernel's largest completion queue (`IORING_MAX_CQ_ENTRIES`); a
/// larger request fails the setup.
const MAX_CQ_ENTRIES: u32 = 65536;

/// Creates a ring with `entries` submission entries and four times as many
/// completion entries (at most the kernel's limit), trying the setup flags
/// in order from the most capable `setup` allows. Must run on the thread
/// that will submit (single issuer). Fails when the kernel lacks a feature
/// the worker's loop relies on ([`require_features`]).
pub(crate) fn build_ring(
    entries: u32,
    setup: RingSetup,
) -> Result<(IoUring, RingMode), RingUnavailable> {
    let (ring, mode) = build_with_fallback(setup, |mode| setup_ring(entries, mode))?;
    require_features(ring.params().is_feature_ext_arg())?;
    Ok((ring, mode))
}

/// What the kernel must offer beyond the ring itself: waits that take a
/// timeout argument (`IORING_FEAT_EXT_ARG`, Linux 5.11), which bound each
/// wait by the next timer. Every kernel with provided buffer rings (5.19),
/// which a worker needs too, has it.
fn require_features(ext_arg: bool) -> Result<(), RingUnavailable> {
    if ext_arg {
        Ok(())
    } else {
        Err(RingUnavailable::MissingFeature(
            "waits with a timeout argument (IORING_FEAT_EXT_ARG, Linux 5.11)",
        ))
    }
}

/// Tries `build` with each mode `setup` allows, most capable first, moving
/// on only when the kernel does not know a flag (`EINVAL`).
fn build_with_fallback<R>(
    setup: RingSetup,
    mut build: impl FnMut(RingMode) -> io::Result<R>,
) -> Result<(R, RingMode), RingUnavailable> {
    let mut last_error = None;
    for &mode in setup.attempts() {
        match build(mode) {
            Ok(ring) => return Ok((ring, mode)),
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => last_error = Some(error),
            Err(error) => return Err(classify_ring_error(error, read_disabled_sysctl())),
        }
    }
    let error = last_error.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL));
    Err(classify_ring_error(error, read_disabled_sysctl()))
}

fn setup_ring(entries: u32, mode: RingMode) -> io::Result<IoUring> {
    let mut builder = IoUring::builder();
    builder.setup_cqsize(entries.saturating_mul(4).min(MAX_CQ_ENTRIES));
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
    builder.build(entries)
}

/// Submits pending entries and waits for at least one completion, at most
/// `timeout` (forever when `None`; the timeout is passed with
/// `IORING_FEAT_EXT_ARG`, which [`build_ring`] made sure of). Timeouts and
/// signals are not errors.
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

fn timespec(duration: Duration) -> Timespec {
    Timespec::new()
        .sec(duration.as_secs())
        .nsec(duration.subsec_nanos())
}

/// Errors of `io_uring_enter` that only mean "come back": the wait timed out
/// (`ETIME`), a signal arrived (`EINTR`), or the completion queue must be
/// drained first (`EBUSY`, `EAGAIN`). The kernel returns an error only when
/// it took no entry, so nothing queued is lost: the turn reaps what the
/// completion queue holds and the next wait submits again. (`EBUSY` comes
/// from a wait that found the queue full and its overflow list
/// unflushable, on Linux 5.19 to 6.0; no submission is refused for it, see
/// `Core::push`.)
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
    fn a_kernel_without_wait_timeouts_is_refused_by_name() {
        assert!(require_features(true).is_ok());
        match require_features(false) {
            Err(RingUnavailable::MissingFeature(feature)) => {
                assert!(feature.contains("IORING_FEAT_EXT_ARG"), "{feature}")
            }
            other => panic!("expected a missing feature, got {other:?}"),
        }
    }

    #[test]
    fn ring_builds_and_records_its_mode() {
        // The test machines run Linux 6.1 or later with io_uring enabled,
        // so each setup gets the most capable mode it allows.
        let expected = [
            (RingSetup::Auto, RingMode::DeferTaskrun),
            (RingSetup::CoopTaskrun, RingMode::CoopTaskrun),
            (RingSetup::Plain, RingMode::Plain),
        ];
        for (setup, mode) in expected {
            let (ring, got) = build_ring(8, setup).expect("io_uring available");
            assert_eq!(got, mode, "{setup}");
            assert!(ring.params().is_feature_ext_arg());
            // A wait with a short timeout returns without error (ETIME
            // tolerated), and so does a submit that only reaps.
            submit_and_wait(&ring, Some(Duration::from_millis(1))).unwrap();
            submit_no_wait(&ring).unwrap();
        }
    }

    #[test]
    fn a_refused_setup_falls_back_below_the_mode_asked_for() {
        /// A kernel that does not know the flags of the `refused` modes.
        fn refusing(refused: &[RingMode]) -> impl FnMut(RingMode) -> io::Result<RingMode> + '_ {
            move |mode| {
                if refused.contains(&mode) {
                    Err(io::Error::from_raw_os_error(libc::EINVAL))
                } else {
                    Ok(mode)
                }
            }
        }
        let cases = [
            (
                RingSetup::Auto,
                &[RingMode::DeferTaskrun][..],
                RingMode::CoopTaskrun,
            ),
            (
                RingSetup::Auto,
                &[RingMode::DeferTaskrun, RingMode::CoopTaskrun][..],
                RingMode::Plain,
            ),
            (RingSetup::CoopTaskrun, &[][..], RingMode::CoopTaskrun),
            (
                RingSetup::CoopTaskrun,
                &[RingMode::CoopTaskrun][..],
                RingMode::Plain,
            ),
            (RingSetup::Plain, &[][..], RingMode::Plain),
        ];
        for (setup, refused, expected) in cases {
            let mut tried = Vec::new();
            let mut build = refusing(refused);
            let (built, mode) = build_with_fallback(setup, |mode| {
                tried.push(mode);
                build(mode)
            })
            .expect("a mode is granted");
            assert_eq!((built, mode), (expected, expected), "{setup} {refused:?}");
            // Nothing more capable than asked for is ever tried.
            assert_eq!(tried[0], setup.attempts()[0], "{setup}");
        }
        // Refused everywhere, or refused for another reason: an error.
        let all = [
            RingMode::DeferTaskrun,
            RingMode::CoopTaskrun,
            RingMode::Plain,
        ];
        assert!(build_with_fallback(RingSetup::Auto, refusing(&all)).is_err());
        let mut tried = 0;
        let denied = build_with_fallback(RingSetup::Auto, |_| -> io::Result<()> {
            tried += 1;
            Err(io::Error::from_raw_os_error(libc::ENOMEM))
        });
        assert!(denied.is_err());
        assert_eq!(tried, 1, "only EINVAL moves on to the next mode");
    }
}
