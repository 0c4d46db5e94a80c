//! What the harness reads about a server process from `/proc`: its CPU
//! time (every thread) and its resident memory.

use std::io;
use std::time::Duration;

/// User and system CPU time of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessCpu {
    /// In user space.
    pub user: Duration,
    /// In the kernel on its behalf.
    pub system: Duration,
}

impl ProcessCpu {
    /// User plus system.
    pub fn total(self) -> Duration {
        self.user + self.system
    }

    /// `self - earlier`, saturating at zero.
    pub fn since(self, earlier: ProcessCpu) -> ProcessCpu {
        ProcessCpu {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

/// CPU time of process `pid`, all its threads: `utime` and `stime` of
/// `/proc/<pid>/stat`, in clock ticks (10 ms on most kernels).
pub fn process_cpu(pid: u32) -> io::Result<ProcessCpu> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let (user, system) = stat_cpu_ticks(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc stat"))?;
    let ticks_per_sec = clock_ticks_per_sec();
    let duration =
        |ticks: u64| Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / ticks_per_sec);
    Ok(ProcessCpu {
        user: duration(user),
        system: duration(system),
    })
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// `(utime, stime)` of a `/proc/<pid>/stat` line, in ticks. The command name
/// (field 2) is in parentheses and may itself hold spaces and parentheses,
/// so fields are counted from the last `)`.
pub fn stat_cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // fields[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime, stime))
}

/// CPU time the machine spent running tasks (user, nice and system
/// columns of `/proc/stat`) on `cpus`, whoever ran them. Interrupt and
/// softirq columns are left out: depending on the kernel's IRQ time
/// accounting they are, or are not, also in the tasks' own times.
pub fn cpus_task_time(cpus: &[usize]) -> io::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let ticks = stat_task_ticks(&stat, cpus)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no such CPU in /proc/stat"))?;
    Ok(Duration::from_nanos(
        ticks.saturating_mul(1_000_000_000) / clock_ticks_per_sec(),
    ))
}

/// user + nice + system ticks of the `cpuN` lines of a `/proc/stat` text
/// for every N in `cpus`; `None` if one is missing.
pub fn stat_task_ticks(stat: &str, cpus: &[usize]) -> Option<u64> {
    let mut total = 0;
    for cpu in cpus {
        let name = format!("cpu{cpu}");
        let line = stat
            .lines()
            .find(|line| line.split_whitespace().next() == Some(name.as_str()))?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(3)
            .map(|field| field.parse().ok())
            .collect::<Option<_>>()?;
        total += fields.iter().sum::<u64>();
    }
    Some(total)
}

/// Resident memory of a process, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resident {
    /// `VmRSS` of `/proc/<pid>/status`.
    pub vm_rss: u64,
    /// `RssAnon` of `/proc/<pid>/status` (heap, stacks: no file pages).
    pub rss_anon: u64,
}

/// `VmRSS` and `RssAnon` of process `pid`.
pub fn resident(pid: u32) -> io::Result<Resident> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status_resident(&status)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS in /proc status"))
}

/// `VmRSS` and `RssAnon` (kB in the file) of a `/proc/<pid>/status` text.
pub fn status_resident(status: &str) -> Option<Resident> {
    let kib = |name: &str| -> Option<u64> {
        let value = status.lines().find_map(|line| line.strip_prefix(name))?;
        value.trim().strip_suffix("kB")?.trim().parse().ok()
    };
    Some(Resident {
        vm_rss: kib("VmRSS:")? * 1024,
        rss_anon: kib("RssAnon:")? * 1024,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with spaces and parentheses, as /proc shows it.
        let stat = "4242 (node (ws) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 75 0 0 20 0 11 0 12345 1000000 5000 18446744073709551615";
        assert_eq!(stat_cpu_ticks(stat), Some((250, 75)));
        assert_eq!(stat_cpu_ticks("4242 (short) S 1"), None);
        assert_eq!(stat_cpu_ticks("no name"), None);
    }

    #[test]
    fn task_ticks_of_chosen_cpus() {
        let stat = "cpu  900 90 300 5000 10 0 40 2 0 0\n\
                    cpu0 400 40 100 2500 5 0 20 1 0 0\n\
                    cpu1 500 50 200 2500 5 0 20 1 0 0\n\
                    cpu10 7 7 7 7 0 0 0 0 0 0\n\
                    intr 12345\n";
        assert_eq!(stat_task_ticks(stat, &[0]), Some(540));
        assert_eq!(stat_task_ticks(stat, &[0, 1]), Some(1290));
        assert_eq!(stat_task_ticks(stat, &[10]), Some(21));
        assert_eq!(stat_task_ticks(stat, &[2]), None);
    }

    #[test]
    fn status_gives_rss_and_anonymous_rss() {
        let status = "Name:\tpython\nVmPeak:\t  99999 kB\nVmRSS:\t   20480 kB\n\
                      RssAnon:\t   12288 kB\nRssFile:\t    8192 kB\n";
        assert_eq!(
            status_resident(status),
            Some(Resident {
                vm_rss: 20480 * 1024,
                rss_anon: 12288 * 1024
            })
        );
        assert_eq!(status_resident("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_is_readable() {
        let pid = std::process::id();
        let memory = resident(pid).unwrap();
        assert!(memory.vm_rss >= memory.rss_anon && memory.rss_anon > 0);
        process_cpu(pid).unwrap();
    }
}
