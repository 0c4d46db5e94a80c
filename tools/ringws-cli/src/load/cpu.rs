//! CPU time of the calling thread or process (`getrusage`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// User and system CPU time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuTime {
    /// Time spent in user space.
    pub user: Duration,
    /// Time spent in the kernel on the thread's behalf (system calls,
    /// io_uring submissions, and the network stack work they trigger).
    pub system: Duration,
}

impl CpuTime {
    /// User plus system time.
    pub fn total(self) -> Duration {
        self.user + self.system
    }

    /// `self - earlier`, saturating at zero.
    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

impl std::ops::Add for CpuTime {
    type Output = CpuTime;

    fn add(self, other: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user + other.user,
            system: self.system + other.system,
        }
    }
}

/// CPU time of the calling thread (`RUSAGE_THREAD`); `None` if the kernel
/// refuses.
pub fn thread_cpu_time() -> Option<CpuTime> {
    rusage(libc::RUSAGE_THREAD)
}

/// CPU time of the whole process (`RUSAGE_SELF`), every thread included.
pub fn process_cpu_time() -> Option<CpuTime> {
    rusage(libc::RUSAGE_SELF)
}

fn rusage(who: libc::c_int) -> Option<CpuTime> {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a live, writable `rusage` for the call's duration.
    let result = unsafe { libc::getrusage(who, &mut usage) };
    (result == 0).then(|| CpuTime {
        user: timeval(usage.ru_utime),
        system: timeval(usage.ru_stime),
    })
}

fn timeval(value: libc::timeval) -> Duration {
    let secs = u64::try_from(value.tv_sec).unwrap_or(0);
    let micros = u32::try_from(value.tv_usec).unwrap_or(0).min(999_999);
    Duration::new(secs, micros * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_time_grows_with_work_and_stays_within_process_time() {
        let before = thread_cpu_time().unwrap();
        // Spin until the thread has used measurable CPU (bounded by a 5 s
        // wall-clock limit, which a loaded machine may need).
        let start = std::time::Instant::now();
        let mut acc = 0u64;
        while thread_cpu_time().unwrap().since(before).total() < Duration::from_millis(20)
            && start.elapsed() < Duration::from_secs(5)
        {
            for i in 0..10_000u64 {
                acc = acc.wrapping_mul(31).wrapping_add(std::hint::black_box(i));
            }
        }
        std::hint::black_box(acc);
        let used = thread_cpu_time().unwrap().since(before);
        assert!(used.total() >= Duration::from_millis(20), "{used:?}");
        assert!(process_cpu_time().unwrap().total() >= used.total());
    }

    #[test]
    fn arithmetic() {
        let a = CpuTime {
            user: Duration::from_millis(5),
            system: Duration::from_millis(7),
        };
        let b = CpuTime {
            user: Duration::from_millis(2),
            system: Duration::from_millis(9),
        };
        assert_eq!((a + b).total(), Duration::from_millis(23));
        assert_eq!(
            a.since(b),
            CpuTime {
                user: Duration::from_millis(3),
                system: Duration::ZERO
            }
        );
    }
}
