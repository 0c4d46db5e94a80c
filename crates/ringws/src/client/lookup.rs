//! Host-name lookups for connects queued on a worker thread
//! ([`ClientControl::connect_queued`](super::ClientControl::connect_queued)
//! in a callback): the resolver (`getaddrinfo`, or the test hook) may block
//! for seconds, and on a worker that would hold up every connection the
//! worker owns. They run instead on a few threads of the client's own,
//! started when a lookup finds none idle (at most [`MAX_THREADS`]), each
//! ending after [`IDLE`] without work or when the client stops.
//!
//! A stop cancels the lookups not started yet (their jobs report the
//! shutdown to the worker, which is still running then) and does not wait
//! for one in flight (it cannot be interrupted): that one's job finds the
//! workers stopped, as a rule, and drops its result and data when it
//! returns.

use std::collections::VecDeque;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Most lookup threads per client: a bound on threads, not on lookups
/// (more wait in the queue).
pub(crate) const MAX_THREADS: usize = 4;

/// How long a lookup thread waits for work before it ends.
const IDLE: Duration = Duration::from_secs(5);

/// The name of the lookup threads.
const THREAD_NAME: &str = "ringws-resolve";

/// A lookup and what follows it (queueing the connect to a worker), or
/// its cancellation.
pub(crate) type Job = Box<dyn FnOnce(Turn) + Send>;

/// What a [`Job`] is run for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Resolve, on a lookup thread.
    Resolve,
    /// The client stopped before the lookup started: report that, without
    /// resolving.
    Cancelled,
}

/// The lookup threads of one client and their queue.
#[derive(Default)]
pub(crate) struct LookupPool {
    state: Mutex<PoolState>,
    work: Condvar,
}

#[derive(Default)]
struct PoolState {
    queue: VecDeque<Job>,
    /// Threads running, busy or idle.
    threads: usize,
    /// Threads waiting for work.
    idle: usize,
    stopped: bool,
}

/// Why a lookup could not be queued; the job (and its data) is dropped.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The client is stopping.
    Stopped,
    /// No lookup thread runs and none could be started.
    NoThread(io::Error),
}

impl LookupPool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job` for a lookup thread, starting one when none is idle and
    /// fewer than [`MAX_THREADS`] run.
    pub(crate) fn run(self: &Arc<Self>, job: Job) -> Result<(), Refused> {
        let mut state = self.lock();
        if state.stopped {
            drop(state);
            drop(job);
            return Err(Refused::Stopped);
        }
        state.queue.push_back(job);
        if state.idle > 0 {
            self.work.notify_one();
        }
        // Idle threads enough for every queued lookup, or no more allowed.
        if state.queue.len() <= state.idle || state.threads == MAX_THREADS {
            return Ok(());
        }
        let pool = self.clone();
        let started = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || pool.serve());
        match started {
            Ok(_detached) => {
                state.threads += 1;
                Ok(())
            }
            // The running threads take the job in turn.
            Err(_) if state.threads > 0 => Ok(()),
            Err(error) => {
                let job = state.queue.pop_back();
                drop(state);
                drop(job);
                Err(Refused::NoThread(error))
            }
        }
    }

    /// Stops taking lookups and cancels those not started, on the caller's
    /// thread; the threads end once their lookup in flight, if any, has
    /// returned.
    pub(crate) fn stop(&self) {
        let mut state = self.lock();
        state.stopped = true;
        let cancelled = std::mem::take(&mut state.queue);
        self.work.notify_all();
        // Not under the lock: a job drops the application's data when its
        // worker is gone.
        drop(state);
        for job in cancelled {
            let _ = catch_unwind(AssertUnwindSafe(|| job(Turn::Cancelled)));
        }
    }

    /// A lookup thread: runs jobs until the pool stops or stays idle.
    fn serve(&self) {
        let mut state = self.lock();
        loop {
            if state.stopped {
                break;
            }
            if let Some(job) = state.queue.pop_front() {
                drop(state);
                // A panicking resolver (the test hook is the application's)
                // ends only its lookup, dropping its data; the thread goes
                // on.
                let _ = catch_unwind(AssertUnwindSafe(|| job(Turn::Resolve)));
                state = self.lock();
                continue;
            }
            state.idle += 1;
            let (next, waited) = self
                .work
                .wait_timeout(state, IDLE)
                .unwrap_or_else(PoisonError::into_inner);
            state = next;
            state.idle -= 1;
            if waited.timed_out() && state.queue.is_empty() {
                break;
            }
        }
        state.threads -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn jobs_run_off_the_caller_and_threads_stay_bounded() {
        let pool = Arc::new(LookupPool::default());
        let (release, held) = mpsc::channel::<()>();
        let held = Arc::new(Mutex::new(held));
        let (done, finished) = mpsc::channel();
        let caller = std::thread::current().id();
        let jobs = MAX_THREADS * 3;
        for index in 0..jobs {
            let held = held.clone();
            let done = done.clone();
            pool.run(Box::new(move |turn| {
                assert_eq!(turn, Turn::Resolve);
                let _ = held.lock().unwrap().recv_timeout(WAIT);
                let _ = done.send((index, std::thread::current().id()));
            }))
            .unwrap();
        }
        assert!(pool.lock().threads <= MAX_THREADS);
        for _ in 0..jobs {
            release.send(()).unwrap();
        }
        let mut seen: Vec<usize> = (0..jobs)
            .map(|_| {
                let (index, thread) = finished.recv_timeout(WAIT).expect("every job runs");
                assert_ne!(thread, caller);
                index
            })
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..jobs).collect::<Vec<_>>());
        pool.stop();
    }

    #[test]
    fn a_stopped_pool_cancels_queued_jobs_and_refuses_new_ones() {
        let pool = Arc::new(LookupPool::default());
        let (release, held) = mpsc::channel::<()>();
        let (started, running) = mpsc::channel();
        // Occupies every thread, so the next job waits in the queue.
        let held = Arc::new(Mutex::new(held));
        for _ in 0..MAX_THREADS {
            let held = held.clone();
            let started = started.clone();
            pool.run(Box::new(move |_| {
                let _ = started.send(());
                let _ = held.lock().unwrap().recv_timeout(WAIT);
            }))
            .unwrap();
        }
        for _ in 0..MAX_THREADS {
            running
                .recv_timeout(WAIT)
                .expect("every thread takes a job");
        }
        let (turn_tx, turn) = mpsc::channel();
        pool.run(Box::new(move |seen| turn_tx.send(seen).unwrap()))
            .unwrap();
        pool.stop();
        // The queued job was cancelled by `stop`, on this thread.
        assert_eq!(turn.try_recv(), Ok(Turn::Cancelled));
        let (late_tx, late) = mpsc::channel::<()>();
        let late_token = DropSignal(late_tx);
        assert!(matches!(
            pool.run(Box::new(move |_| drop(late_token))),
            Err(Refused::Stopped)
        ));
        assert!(late.try_recv().is_ok(), "a refused job is dropped");
        drop(release);
        let end = std::time::Instant::now() + WAIT;
        while pool.lock().threads > 0 {
            assert!(std::time::Instant::now() < end, "the threads end");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    struct DropSignal(mpsc::Sender<()>);

    impl Drop for DropSignal {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
}
