//! The sleep/wake protocol between inbox producers and the worker.
//!
//! One atomic word per worker holds three bits:
//!
//! * `SLEEPING`: the worker is (about to be) blocked in `io_uring_enter`;
//! * `NOTIFIED`: a command was pushed since the worker last cleared the word;
//! * `CLOSED`: the worker has stopped; producers get their command back.
//!
//! **Producer** ([`WakeState::notify`]): push the command onto the queue,
//! then `fetch_or(NOTIFIED)`. Only the producer whose `fetch_or` sees
//! `SLEEPING` set and `NOTIFIED` clear writes the eventfd, so a burst of
//! commands costs one `write(2)` per sleep, and none while the worker is busy.
//!
//! **Worker**: before blocking, [`WakeState::try_sleep`] swaps the word
//! `0 → SLEEPING` with a compare-exchange. If the word was not 0, a command
//! was pushed since the last drain: the worker clears the word, drains the
//! queue and does not block. After waking it calls [`WakeState::woke`], which
//! clears the word, and then drains. Clearing never clears `CLOSED`: once the
//! worker has closed its inbox, it stays closed while the worker drains its
//! connections (only the worker sets `CLOSED`, so it reads it without a
//! race, and sleeps with it set).
//!
//! Why no command is left unseen: every operation on the word is a
//! read-modify-write, so they are totally ordered. A producer's `fetch_or`
//! comes after its push (release), and the worker's successful
//! compare-exchange reads the word with acquire. If the `fetch_or` is ordered
//! before the compare-exchange, the word is not 0 and the worker drains
//! instead of sleeping, seeing the push. If it is ordered after, it sees
//! `SLEEPING` (and, being first since the compare-exchange, `NOTIFIED`
//! clear) and writes the eventfd, whose read is always armed in the ring. No
//! `SeqCst` store/load pairing is involved, which is what lets loom check the
//! protocol exactly (loom models `SeqCst` accesses as `AcqRel`).
//!
//! The protocol is generic over its atomic ([`AtomicWord`]) so the loom model
//! below runs the same code with loom's atomic, with a loom-friendly stand-in
//! for the queue and the eventfd.

use std::sync::atomic::Ordering::{AcqRel, Acquire};

const SLEEPING: u32 = 1;
const NOTIFIED: u32 = 2;
const CLOSED: u32 = 4;

/// The atomic operations the protocol needs; implemented for std's and
/// loom's `AtomicU32`.
pub(crate) trait AtomicWord {
    fn with_value(value: u32) -> Self;
    fn load_word(&self) -> u32;
    fn fetch_or_word(&self, bits: u32) -> u32;
    fn fetch_and_word(&self, bits: u32) -> u32;
    fn compare_exchange_word(&self, current: u32, new: u32) -> Result<u32, u32>;
}

impl AtomicWord for std::sync::atomic::AtomicU32 {
    fn with_value(value: u32) -> Self {
        Self::new(value)
    }
    fn load_word(&self) -> u32 {
        self.load(Acquire)
    }
    fn fetch_or_word(&self, bits: u32) -> u32 {
        self.fetch_or(bits, AcqRel)
    }
    fn fetch_and_word(&self, bits: u32) -> u32 {
        self.fetch_and(bits, AcqRel)
    }
    fn compare_exchange_word(&self, current: u32, new: u32) -> Result<u32, u32> {
        self.compare_exchange(current, new, AcqRel, Acquire)
    }
}

/// What a producer must do after [`WakeState::notify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notify {
    /// The worker may be asleep and nobody else will wake it: write the eventfd.
    Wake,
    /// The worker is awake or another producer is waking it.
    Nothing,
    /// The worker has stopped; the command will never be seen.
    Closed,
}

/// The per-worker sleep/wake word.
#[derive(Debug)]
pub(crate) struct WakeState<A = std::sync::atomic::AtomicU32> {
    word: A,
}

impl<A: AtomicWord> WakeState<A> {
    pub(crate) fn new() -> Self {
        WakeState {
            word: A::with_value(0),
        }
    }

    /// Whether the worker has stopped (checked before pushing).
    pub(crate) fn is_closed(&self) -> bool {
        self.word.load_word() & CLOSED != 0
    }

    /// Producer: call after the command is in the queue.
    pub(crate) fn notify(&self) -> Notify {
        let previous = self.word.fetch_or_word(NOTIFIED);
        if previous & CLOSED != 0 {
            Notify::Closed
        } else if previous & (SLEEPING | NOTIFIED) == SLEEPING {
            Notify::Wake
        } else {
            Notify::Nothing
        }
    }

    /// Worker: call right before blocking. `false` means commands may be
    /// queued: drain the queue instead of blocking (the word is cleared).
    pub(crate) fn try_sleep(&self) -> bool {
        let closed = self.word.load_word() & CLOSED;
        match self.word.compare_exchange_word(closed, closed | SLEEPING) {
            Ok(_) => true,
            Err(_) => {
                self.word.fetch_and_word(CLOSED);
                false
            }
        }
    }

    /// Worker: call after a blocking wait returns, then drain the queue.
    pub(crate) fn woke(&self) {
        self.word.fetch_and_word(CLOSED);
    }

    /// Worker: the worker stops; later producers get [`Notify::Closed`].
    pub(crate) fn close(&self) {
        self.word.fetch_or_word(CLOSED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn busy_worker_is_woken_once_per_sleep() {
        let state: WakeState<AtomicU32> = WakeState::new();
        // Worker busy: pushes only mark NOTIFIED.
        assert_eq!(state.notify(), Notify::Nothing);
        assert_eq!(state.notify(), Notify::Nothing);
        // The worker sees the notification and does not sleep.
        assert!(!state.try_sleep());
        // Nothing new: it may sleep now.
        assert!(state.try_sleep());
        // First producer wakes it, the second does not.
        assert_eq!(state.notify(), Notify::Wake);
        assert_eq!(state.notify(), Notify::Nothing);
        state.woke();
        assert!(state.try_sleep());
        state.woke();
        state.close();
        assert!(state.is_closed());
        assert_eq!(state.notify(), Notify::Closed);
        // The stopping worker goes on draining, sleeping and waking: the
        // inbox stays closed throughout.
        assert!(!state.try_sleep(), "the notification is drained first");
        assert!(state.is_closed());
        assert!(state.try_sleep(), "a closed, quiet worker may sleep");
        assert_eq!(state.notify(), Notify::Closed);
        state.woke();
        assert!(state.is_closed());
        assert_eq!(state.notify(), Notify::Closed);
    }
}

/// The loom model of the protocol. Runs in the normal test suite with a
/// preemption bound, and exhaustively with
/// `RUSTFLAGS="--cfg loom" cargo test -p ringws-reactor --release loom`.
#[cfg(test)]
mod loom_model {
    use super::*;
    use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize};
    use loom::sync::Arc;
    use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

    impl AtomicWord for AtomicU32 {
        fn with_value(value: u32) -> Self {
            Self::new(value)
        }
        fn load_word(&self) -> u32 {
            self.load(Acquire)
        }
        fn fetch_or_word(&self, bits: u32) -> u32 {
            self.fetch_or(bits, AcqRel)
        }
        fn fetch_and_word(&self, bits: u32) -> u32 {
            self.fetch_and(bits, AcqRel)
        }
        fn compare_exchange_word(&self, current: u32, new: u32) -> Result<u32, u32> {
            self.compare_exchange(current, new, AcqRel, Acquire)
        }
    }

    const CAPACITY: usize = 4;

    /// Stand-in for the lock-free command queue: producers claim a cell with
    /// a relaxed `fetch_add` and publish the command with a release store;
    /// the worker pops cells in order with acquire loads. It is weaker than
    /// `SegQueue` (a pop can miss a claimed but unpublished cell), so a
    /// protocol that works with it works with the real queue.
    struct ModelQueue {
        claimed: AtomicUsize,
        cells: [AtomicUsize; CAPACITY],
    }

    impl ModelQueue {
        fn new() -> Self {
            ModelQueue {
                claimed: AtomicUsize::new(0),
                cells: std::array::from_fn(|_| AtomicUsize::new(0)),
            }
        }
        fn push(&self, command: usize) {
            let index = self.claimed.fetch_add(1, Relaxed);
            self.cells[index].store(command, Release);
        }
        fn pop(&self, head: &mut usize) -> Option<usize> {
            if *head == CAPACITY {
                return None;
            }
            match self.cells[*head].load(Acquire) {
                0 => None,
                command => {
                    *head += 1;
                    Some(command)
                }
            }
        }
    }

    /// Stand-in for the eventfd and the blocking `io_uring_enter`: a counter
    /// the worker parks on until it is non-zero, then resets.
    struct ModelEventfd {
        counter: AtomicU64,
        worker: loom::thread::Thread,
    }

    impl ModelEventfd {
        fn write(&self) {
            self.counter.fetch_add(1, Release);
            self.worker.unpark();
        }
        fn read_blocking(&self) {
            while self.counter.swap(0, Acquire) == 0 {
                loom::thread::park();
            }
        }
    }

    struct Shared {
        queue: ModelQueue,
        wake: WakeState<AtomicU32>,
        eventfd: ModelEventfd,
    }

    fn producer(shared: &Shared, command: usize) {
        shared.queue.push(command);
        if shared.wake.notify() == Notify::Wake {
            shared.eventfd.write();
        }
    }

    /// Producers push `commands` in total; the worker must see all of them.
    /// A lost wakeup leaves the worker blocked forever, which loom reports
    /// as a deadlock.
    fn model(producers: usize, per_producer: usize) {
        let total = producers * per_producer;
        let shared = Arc::new(Shared {
            queue: ModelQueue::new(),
            wake: WakeState::new(),
            eventfd: ModelEventfd {
                counter: AtomicU64::new(0),
                worker: loom::thread::current(),
            },
        });
        let handles: Vec<_> = (0..producers)
            .map(|p| {
                let shared = shared.clone();
                loom::thread::spawn(move || {
                    for i in 0..per_producer {
                        producer(&shared, 1 + p * per_producer + i);
                    }
                })
            })
            .collect();

        let mut head = 0;
        let mut seen = 0;
        loop {
            while shared.queue.pop(&mut head).is_some() {
                seen += 1;
            }
            if seen == total {
                break;
            }
            if shared.wake.try_sleep() {
                shared.eventfd.read_blocking();
                shared.wake.woke();
            }
        }
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(seen, total);
    }

    fn builder() -> loom::model::Builder {
        let mut builder = loom::model::Builder::new();
        if cfg!(not(loom)) {
            // Keep the normal test run short; `--cfg loom` explores fully.
            builder.preemption_bound = Some(2);
        }
        builder
    }

    #[test]
    fn loom_no_command_unseen_one_producer() {
        builder().check(|| model(1, 2));
    }

    #[test]
    fn loom_no_command_unseen_two_producers() {
        builder().check(|| model(2, 1));
    }

    #[test]
    fn loom_closed_worker_refuses_commands() {
        builder().check(|| {
            let wake = Arc::new(WakeState::<AtomicU32>::new());
            let producer = {
                let wake = wake.clone();
                loom::thread::spawn(move || {
                    if wake.is_closed() {
                        Notify::Closed
                    } else {
                        wake.notify()
                    }
                })
            };
            wake.close();
            let outcome = producer.join().unwrap();
            // After close, the word keeps CLOSED whatever the interleaving.
            assert!(wake.is_closed());
            assert!(matches!(outcome, Notify::Closed | Notify::Nothing));
            assert_eq!(wake.notify(), Notify::Closed);
        });
    }
}
