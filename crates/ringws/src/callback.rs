//! Application code runs under `catch_unwind`.
//!
//! A panic that reached the worker's loop would end the worker thread, and
//! since the kernel may still write into that worker's receive buffers, its
//! ring, its memory and every one of its connections would be leaked with
//! it, their peers left waiting. Instead a panic in a callback (or in a hook
//! such as the origin check) fails only the connection it ran for: Close
//! 1011 and TCP closed for an open connection, HTTP 500 for a request.
//! Each is counted in [`WorkerStats::handler_panics`](crate::WorkerStats::handler_panics);
//! the panic hook has already printed the message.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Reason sent with the 1011 Close of a connection whose callback panicked:
/// the peer learns that the server failed, not how.
pub(crate) const HANDLER_PANIC_REASON: &str = "internal error";

/// An application callback panicked.
#[derive(Debug)]
pub(crate) struct Panicked;

/// Runs `callback`, catching a panic.
///
/// `AssertUnwindSafe` is sound for ringws's side: its state is consistent
/// whenever it calls the application, and the connection the callback ran
/// for is failed afterwards. The application's own state is the
/// application's to keep (see [`Handler`](crate::Handler)).
pub(crate) fn guarded<R>(callback: impl FnOnce() -> R) -> Result<R, Panicked> {
    catch_unwind(AssertUnwindSafe(callback)).map_err(|payload| {
        // The payload is the application's too: a `Drop` of it that panics
        // must not unwind into the worker either. A second payload is
        // leaked rather than risk a third.
        if let Err(second) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            std::mem::forget(second);
        }
        Panicked
    })
}
