//! What the benchmark reads from the OS: another thread's CPU time, the
//! process's resident memory, the machine's load and identity.

use std::io;
use std::time::Duration;

use crate::load::CpuTime;

/// The calling thread's kernel thread id.
pub fn current_tid() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// A reading of one thread's CPU time: the scheduler's exact run time and
/// the clock-tick counts that split it into user and system time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadCpuSample {
    /// Time on a CPU (the kernel's `sum_exec_runtime`), nanosecond precision.
    pub run_time: Duration,
    /// User and system time from `/proc/self/task/<tid>/stat`, in whole
    /// clock ticks (10 ms at 100 Hz).
    pub ticks: CpuTime,
}

impl ThreadCpuSample {
    /// CPU time between `earlier` and `self`: the exact run time, split
    /// into user and system in the proportion of the tick counts (as the
    /// kernel itself splits it for `getrusage`).
    pub fn since(&self, earlier: &ThreadCpuSample) -> CpuTime {
        let total = self.run_time.saturating_sub(earlier.run_time);
        let ticks = self.ticks.since(earlier.ticks);
        let tick_total = ticks.total().as_nanos();
        if tick_total == 0 {
            // No tick landed: too short to split; call it system time,
            // where a loopback benchmark spends most of it.
            return CpuTime {
                user: Duration::ZERO,
                system: total,
            };
        }
        let user_nanos = total.as_nanos() * ticks.user.as_nanos() / tick_total;
        let user = Duration::from_nanos(u64::try_from(user_nanos).unwrap_or(u64::MAX));
        CpuTime {
            user,
            system: total.saturating_sub(user),
        }
    }
}

/// Reads thread `tid`'s CPU time (a thread of this process).
pub fn thread_cpu_sample(tid: i32) -> io::Result<ThreadCpuSample> {
    Ok(ThreadCpuSample {
        run_time: thread_run_time(tid)?,
        ticks: thread_cpu_ticks(tid)?,
    })
}

/// Thread `tid`'s run time from its CPU-time clock. The clock id is the
/// kernel's encoding of a per-thread scheduler clock,
/// `MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)`, the same value glibc's
/// `pthread_getcpuclockid` returns.
pub fn thread_run_time(tid: i32) -> io::Result<Duration> {
    const CPUCLOCK_PERTHREAD: libc::clockid_t = 4;
    const CPUCLOCK_SCHED: libc::clockid_t = 2;
    let clock = (!tid << 3) | CPUCLOCK_PERTHREAD | CPUCLOCK_SCHED;
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a live, writable timespec for the call's duration;
    // an invalid clock id is reported as an error, not undefined behaviour.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    ))
}

/// CPU time of thread `tid` of this process, from
/// `/proc/self/task/<tid>/stat` (`utime` and `stime`, in clock ticks:
/// 10 ms on most kernels, so use it for proportions, not for totals).
pub fn thread_cpu_ticks(tid: i32) -> io::Result<CpuTime> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))?;
    parse_stat_cpu(&stat, clock_ticks_per_sec())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc stat format"))
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// `utime` and `stime` of a `/proc/.../stat` line. The command name (field
/// 2) is in parentheses and may hold spaces and parentheses itself, so the
/// fields are counted from the last `)`.
fn parse_stat_cpu(stat: &str, ticks_per_sec: u64) -> Option<CpuTime> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let to_duration = |ticks: u64| Duration::from_nanos(ticks * 1_000_000_000 / ticks_per_sec);
    Some(CpuTime {
        user: to_duration(utime),
        system: to_duration(stime),
    })
}

/// Anonymous resident memory of this process in bytes: the `Anonymous:`
/// line of `/proc/self/smaps_rollup`. That is the heap, stacks and other
/// private memory, without the binary's code and other file pages, which
/// fault in and out as code paths run. The kernel counts it by walking the
/// page tables, so it is exact; `statm` and `VmRSS` read per-CPU counters
/// that may lag by a few hundred KiB.
pub fn anonymous_resident_bytes() -> io::Result<u64> {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup")?;
    parse_rollup_anonymous(&rollup).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "no Anonymous line in smaps_rollup",
        )
    })
}

/// The `Anonymous:` value of an `smaps_rollup` text, in bytes.
fn parse_rollup_anonymous(rollup: &str) -> Option<u64> {
    let line = rollup
        .lines()
        .find_map(|line| line.strip_prefix("Anonymous:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

/// Hands the allocator's free pages back to the kernel (glibc
/// `malloc_trim(0)`), so memory freed earlier and still cached does not
/// hide what comes next. Does nothing with other C libraries.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// While alive, makes the allocator's resident memory follow what is live
/// (glibc): freed memory at the top of a heap goes back to the kernel at
/// once (`M_TRIM_THRESHOLD` 0; `malloc_trim` cannot release it in a
/// thread's arena) and blocks from 128 KiB up get their own mappings
/// (`M_MMAP_THRESHOLD`, fixed, so it no longer grows with what earlier
/// workloads freed). Slower, so only for memory measurements; dropping it
/// restores glibc's default trim threshold (the mmap threshold stays at
/// its default value, no longer adjusted).
#[derive(Debug)]
pub struct ExactAllocatorAccounting(());

impl ExactAllocatorAccounting {
    /// Applies the settings until the value is dropped.
    pub fn begin() -> ExactAllocatorAccounting {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: mallopt only changes the allocator's tuning parameters.
            unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) };
            // SAFETY: as above.
            unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, 0) };
        }
        ExactAllocatorAccounting(())
    }
}

impl Drop for ExactAllocatorAccounting {
    fn drop(&mut self) {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: as in `begin`.
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
        }
    }
}

/// The 1-, 5- and 15-minute load averages (`/proc/loadavg`).
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text.split_whitespace().map(|field| field.parse().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

/// The kernel release (`/proc/sys/kernel/osrelease`).
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The CPU model name (`/proc/cpuinfo`).
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, name)| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `YYYY-MM-DD HH:MM UTC` for seconds since the Unix epoch (proleptic
/// Gregorian calendar, days to civil date as in Howard Hinnant's
/// `civil_from_days`).
pub fn utc_date(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let seconds_of_day = unix_secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        seconds_of_day / 3600,
        seconds_of_day % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A thread name with a space and a parenthesis, as `comm` allows.
        let line = "4242 (ringws-0 (x)) S 1 4242 4242 0 -1 4194368 100 0 0 0 \
                    250 75 0 0 20 0 3 0 1000 1000000 300 18446744073709551615";
        let cpu = parse_stat_cpu(line, 100).unwrap();
        assert_eq!(cpu.user, Duration::from_millis(2500));
        assert_eq!(cpu.system, Duration::from_millis(750));
        assert!(parse_stat_cpu("4242 (short) S 1 2", 100).is_none());
    }

    #[test]
    fn thread_clock_agrees_with_getrusage() {
        let tid = current_tid();
        let start_rusage = crate::load::cpu::thread_cpu_time().unwrap();
        let start = thread_cpu_sample(tid).unwrap();
        // Spin until this thread has used 100 ms of CPU (bounded in wall time).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut x = 0u64;
        loop {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            let used = crate::load::cpu::thread_cpu_time()
                .unwrap()
                .since(start_rusage)
                .total();
            if used >= Duration::from_millis(100) || std::time::Instant::now() > deadline {
                break;
            }
        }
        let seen = thread_cpu_sample(tid).unwrap().since(&start);
        let used = crate::load::cpu::thread_cpu_time()
            .unwrap()
            .since(start_rusage);
        // The run-time clock is exact; getrusage reports microseconds and
        // ran a moment later.
        assert!(
            seen.total() <= used.total() && used.total() - seen.total() < Duration::from_millis(5),
            "clock says {seen:?}, getrusage {used:?}"
        );
        // A thread that does not exist has no clock.
        assert!(thread_run_time(0x07ff_ffff).is_err(), "no such thread");
    }

    #[test]
    fn run_time_is_split_by_tick_proportion() {
        let sample = |run_ms: u64, user_ms: u64, system_ms: u64| ThreadCpuSample {
            run_time: Duration::from_millis(run_ms),
            ticks: CpuTime {
                user: Duration::from_millis(user_ms),
                system: Duration::from_millis(system_ms),
            },
        };
        let split = sample(1000, 100, 300).since(&sample(200, 0, 0));
        assert_eq!(split.user, Duration::from_millis(200));
        assert_eq!(split.system, Duration::from_millis(600));
        let unsplit = sample(5, 0, 0).since(&sample(2, 0, 0));
        assert_eq!(unsplit.total(), Duration::from_millis(3));
    }

    #[test]
    fn anonymous_memory_grows_with_a_touched_allocation() {
        let rollup = "55d0-7ffe ---p 00000000 00:00 0 [rollup]\nRss:  1688 kB\n\
                      Pss_Anon:  112 kB\nAnonymous:  112 kB\nKSM:  0 kB\n";
        assert_eq!(parse_rollup_anonymous(rollup), Some(112 * 1024));
        assert_eq!(parse_rollup_anonymous("Rss: 5 kB\n"), None);
        let before = anonymous_resident_bytes().unwrap();
        // 64 MiB written page by page is resident until dropped.
        let block = vec![1u8; 64 << 20];
        let after = anonymous_resident_bytes().unwrap();
        assert_eq!(std::hint::black_box(&block)[12345], 1);
        assert!(
            after >= before + (60 << 20),
            "anonymous resident set went from {before} to {after}"
        );
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc_date(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(utc_date(4_102_444_799), "2099-12-31 23:59 UTC");
    }
}
