//! The cross-core inbox: a lock-free queue of commands per worker plus an
//! eventfd wakeup, following the protocol in [`crate::notify`].
//!
//! The queue is an unbounded `crossbeam_queue::SegQueue`, so a producer never
//! blocks and never fails while the worker runs; the upper layer bounds what
//! it sends. The eventfd is blocking (no `EFD_NONBLOCK`): io_uring returns
//! `EAGAIN` for reads of non-blocking files instead of waiting, and a
//! producer's `write(2)` can only block when the counter is near `u64::MAX`.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use crossbeam_queue::SegQueue;

use crate::error::InboxClosed;
use crate::notify::{Notify, WakeState};
use crate::WorkerId;

/// What travels through a worker's inbox.
pub(crate) enum Envelope<C> {
    /// A handler-defined command, delivered to `on_command`.
    Command(C),
    /// Stop the worker (from [`ReactorHandle::stop`](crate::ReactorHandle::stop)).
    Stop,
}

/// State shared by a worker and every sender of its inbox. The eventfd lives
/// here so it stays open until the last sender is gone: a producer never
/// writes to a closed (possibly reused) descriptor.
pub(crate) struct InboxShared<C> {
    worker: WorkerId,
    queue: SegQueue<Envelope<C>>,
    wake: WakeState,
    eventfd: OwnedFd,
}

impl<C> InboxShared<C> {
    pub(crate) fn new(worker: WorkerId) -> io::Result<Arc<Self>> {
        // SAFETY: eventfd has no memory-safety preconditions.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
        let eventfd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Arc::new(InboxShared {
            worker,
            queue: SegQueue::new(),
            wake: WakeState::new(),
            eventfd,
        }))
    }

    pub(crate) fn eventfd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    pub(crate) fn pop(&self) -> Option<Envelope<C>> {
        self.queue.pop()
    }

    pub(crate) fn try_sleep(&self) -> bool {
        self.wake.try_sleep()
    }

    pub(crate) fn woke(&self) {
        self.wake.woke()
    }

    pub(crate) fn close(&self) {
        self.wake.close()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.wake.is_closed()
    }

    /// Pushes an envelope and wakes the worker if needed. A worker that
    /// stops between the caller's [`is_closed`](Self::is_closed) check and
    /// the push drops the envelope with its queue.
    pub(crate) fn enqueue(&self, envelope: Envelope<C>) {
        self.queue.push(envelope);
        if self.wake.notify() == Notify::Wake {
            self.signal();
        }
    }

    fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to an eventfd this struct
        // owns; the result is ignored because the only failure (EAGAIN at a
        // counter near u64::MAX) means a wakeup is already pending.
        let _ = unsafe {
            libc::write(
                self.eventfd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}

/// Sends handler-defined commands to one worker from any thread.
///
/// `Clone + Send + Sync` (when `C: Send`). Sending never blocks; it fails
/// with [`InboxClosed`] once the worker has stopped. Commands pushed while
/// the worker is stopping may be dropped without an error.
pub struct InboxSender<C> {
    shared: Arc<InboxShared<C>>,
}

impl<C> InboxSender<C> {
    pub(crate) fn new(shared: Arc<InboxShared<C>>) -> Self {
        InboxSender { shared }
    }

    /// Queues `command` for the worker's `on_command` and wakes the worker.
    pub fn send(&self, command: C) -> Result<(), InboxClosed<C>> {
        if self.shared.is_closed() {
            return Err(InboxClosed(command));
        }
        self.shared.enqueue(Envelope::Command(command));
        Ok(())
    }

    /// The worker this sender delivers to.
    pub fn worker(&self) -> WorkerId {
        self.shared.worker
    }

    pub(crate) fn stop(&self) {
        if !self.shared.is_closed() {
            self.shared.enqueue(Envelope::Stop);
        }
    }
}

impl<C> Clone for InboxSender<C> {
    fn clone(&self) -> Self {
        InboxSender {
            shared: self.shared.clone(),
        }
    }
}

impl<C> fmt::Debug for InboxSender<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboxSender")
            .field("worker", &self.shared.worker)
            .field("closed", &self.shared.wake.is_closed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync_clone<T: Send + Sync + Clone>() {}

    #[test]
    fn senders_can_be_shared_across_threads() {
        assert_send_sync_clone::<InboxSender<String>>();
    }

    #[test]
    fn a_closed_inbox_hands_the_command_back() {
        let shared = InboxShared::<u32>::new(WorkerId::new(0)).unwrap();
        let sender = InboxSender::new(shared.clone());
        sender.send(1).unwrap();
        assert!(matches!(shared.pop(), Some(Envelope::Command(1))));
        shared.close();
        assert_eq!(sender.send(2), Err(InboxClosed(2)));
        assert!(shared.pop().is_none());
    }

    #[test]
    fn a_sleeping_worker_is_woken_through_the_eventfd() {
        let shared = InboxShared::<u32>::new(WorkerId::new(0)).unwrap();
        let sender = InboxSender::new(shared.clone());
        assert!(shared.try_sleep());
        sender.send(7).unwrap();
        let mut counter = 0u64;
        // SAFETY: reads 8 bytes into a live local from an eventfd the shared
        // state owns; the write above makes the read return at once.
        let read = unsafe { libc::read(shared.eventfd(), (&mut counter as *mut u64).cast(), 8) };
        assert_eq!(read, 8);
        assert_eq!(counter, 1);
        shared.woke();
        assert!(matches!(shared.pop(), Some(Envelope::Command(7))));
    }
}
