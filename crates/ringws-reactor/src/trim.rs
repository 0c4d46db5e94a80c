//! Hands the allocator's free pages back to the kernel off the worker's loop.
//!
//! After a burst of large messages glibc keeps the freed heap (tens of MB)
//! until `malloc_trim` walks it, which took 4 ms after a burst of 70,000-byte
//! echoes: too long a pause for a worker's loop. Each worker therefore has a
//! trim thread of its own, started on its first trim. It inherits the
//! worker's core and runs under `SCHED_IDLE`, so it only gets that core when
//! the worker leaves it idle and gives it up as soon as the worker wakes.
//! The worker only waits for it if it allocates from an arena while the
//! trim holds that arena's lock. Elsewhere than glibc, trimming does nothing.

#[cfg(target_env = "gnu")]
use std::sync::mpsc::{self, SyncSender, TrySendError};

/// A worker's trim thread, started on first use.
#[derive(Debug)]
pub(crate) struct Trimmer {
    name: String,
    #[cfg(target_env = "gnu")]
    requests: Option<SyncSender<()>>,
}

impl Trimmer {
    /// A trimmer whose thread, once started, is called `name`.
    pub(crate) fn new(name: String) -> Trimmer {
        Trimmer {
            name,
            #[cfg(target_env = "gnu")]
            requests: None,
        }
    }

    /// Asks for a trim and returns at once; a request made while one is
    /// still waiting is merged into it. If the thread cannot be started,
    /// the trim runs here instead.
    pub(crate) fn trim(&mut self) {
        #[cfg(target_env = "gnu")]
        {
            if self.requests.is_none() {
                self.requests = self.start();
            }
            let sent = match &self.requests {
                Some(requests) => match requests.try_send(()) {
                    Ok(()) | Err(TrySendError::Full(())) => true,
                    Err(TrySendError::Disconnected(())) => false,
                },
                None => false,
            };
            if !sent {
                self.requests = None;
                trim_heap();
            }
        }
    }

    #[cfg(target_env = "gnu")]
    fn start(&self) -> Option<SyncSender<()>> {
        let (requests, received) = mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name(self.name.clone())
            .spawn(move || {
                lower_to_idle_priority();
                // Ends when the worker drops its sender.
                while received.recv().is_ok() {
                    trim_heap();
                }
            })
            .ok()?;
        Some(requests)
    }
}

#[cfg(target_env = "gnu")]
fn trim_heap() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Puts the calling thread under `SCHED_IDLE` (any thread may lower itself
/// to it); if that fails the trims run at normal priority.
#[cfg(target_env = "gnu")]
fn lower_to_idle_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param for the call's duration; 0 is
    // the calling thread.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
    }
}

#[cfg(all(test, target_env = "gnu"))]
mod tests {
    use super::*;

    /// The scheduling policy of the thread named `name` in this process.
    fn policy_of_thread(name: &str) -> Option<i32> {
        for entry in std::fs::read_dir("/proc/self/task").ok()? {
            let tid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
            if comm.trim_end() == name {
                // SAFETY: sched_getscheduler only reads the thread's policy.
                return Some(unsafe { libc::sched_getscheduler(tid) });
            }
        }
        None
    }

    #[test]
    fn trims_run_on_an_idle_priority_thread_that_ends_with_the_trimmer() {
        let name = "trim-test-1";
        let mut trimmer = Trimmer::new(name.to_owned());
        assert_eq!(policy_of_thread(name), None, "started on first use only");
        for _ in 0..3 {
            trimmer.trim();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let policy = loop {
            match policy_of_thread(name) {
                Some(policy) if policy == libc::SCHED_IDLE => break Some(policy),
                other if std::time::Instant::now() >= deadline => break other,
                _ => std::thread::sleep(std::time::Duration::from_millis(1)),
            }
        };
        assert_eq!(policy, Some(libc::SCHED_IDLE));
        drop(trimmer);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while policy_of_thread(name).is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the trim thread outlived its trimmer"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}
