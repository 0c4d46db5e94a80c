//! The reactor-side state of one connection slot.
//!
//! A slot is small (see `slot_size` in the tests) and owns heap memory only
//! while it needs it: the receive tail exists only while the handler left
//! bytes unconsumed, the send queue only while bytes are queued. The
//! handler's own per-connection state lives in a parallel vector indexed by
//! the same slot number (see [`crate::handler`]).

use std::os::fd::RawFd;

use crate::handler::CloseCause;
use crate::send_queue::SendQueue;

/// Where a slot is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Unused; on the free list.
    Free,
    /// Outbound connect in flight.
    Connecting,
    /// Established.
    Open,
    /// A close was requested or the socket failed; see [`Intent`].
    Closing,
}

/// How a closing connection closes. Ordered by strength: a stronger request
/// replaces a weaker one, never the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Intent {
    /// Not closing.
    None,
    /// Flush, `shutdown(SHUT_WR)`, wait for the peer's FIN (bounded by the
    /// linger), close.
    Graceful,
    /// Flush, close.
    AfterFlush,
    /// Cancel everything, close (FIN, queue discarded). Used for errors and
    /// worker stop.
    Abort,
    /// Cancel everything, `SO_LINGER {on, 0}`, close (RST).
    Reset,
}

/// Per-slot flags (a `u16` bit set).
pub(crate) mod flag {
    /// A multishot recv is in flight.
    pub const RECV_ARMED: u16 = 1 << 0;
    /// A sendmsg is in flight.
    pub const SEND_ARMED: u16 = 1 << 1;
    /// A connect is in flight.
    pub const CONNECT_ARMED: u16 = 1 << 2;
    /// An AsyncCancel for the recv was submitted.
    pub const RECV_CANCELLING: u16 = 1 << 3;
    /// An AsyncCancel for the send was submitted.
    pub const SEND_CANCELLING: u16 = 1 << 4;
    /// An AsyncCancel for the connect was submitted.
    pub const CONNECT_CANCELLING: u16 = 1 << 5;
    /// On the worker's dirty list (flush at the end of the turn).
    pub const DIRTY: u16 = 1 << 6;
    /// On the worker's starved list (re-arm recv at the end of the turn).
    pub const STARVED: u16 = 1 << 7;
    /// On the worker's closing list (advance the close at the end of the turn).
    pub const CLOSE_LISTED: u16 = 1 << 8;
    /// The peer's FIN was received.
    pub const PEER_EOF: u16 = 1 << 9;
    /// `shutdown(SHUT_WR)` was done.
    pub const WRITE_SHUT: u16 = 1 << 10;
    /// The handler paused receiving.
    pub const RECV_PAUSED: u16 = 1 << 11;
    /// Queued bytes exceeded the high-water mark; `on_drained` is due.
    pub const ABOVE_HIGH_WATER: u16 = 1 << 12;
    /// The graceful close's linger expired.
    pub const LINGER_EXPIRED: u16 = 1 << 13;
    /// `SO_LINGER {on, 0}` was set.
    pub const RESET_ARMED: u16 = 1 << 14;
    /// On the worker's redeliver list (held bytes go to `on_data` at the
    /// end of the turn, after a resume).
    pub const REDELIVER: u16 = 1 << 15;

    /// Any operation in flight.
    pub const ANY_ARMED: u16 = RECV_ARMED | SEND_ARMED | CONNECT_ARMED;
}

/// Reactor-side state of one connection.
pub(crate) struct Slot {
    /// The socket, or -1 when free or already closed.
    pub fd: RawFd,
    /// Changes each time the slot is released.
    pub generation: u32,
    pub flags: u16,
    pub phase: Phase,
    pub intent: Intent,
    /// Why the connection is closing (reported to `on_closed`).
    pub cause: CloseCause,
    /// Bytes the handler left unconsumed, presented again with the next data.
    /// `None` whenever there are none, so an idle slot owns no buffer.
    /// Boxed to keep the slot 16 bytes smaller: tails are the rare case.
    #[allow(clippy::box_collection)]
    pub tail: Option<Box<Vec<u8>>>,
    /// Unsent bytes; `None` when there are none and no send is in flight.
    pub send: Option<Box<SendQueue>>,
}

impl Slot {
    pub(crate) fn free() -> Slot {
        Slot {
            fd: -1,
            generation: 0,
            flags: 0,
            phase: Phase::Free,
            intent: Intent::None,
            cause: CloseCause::Closed,
            tail: None,
            send: None,
        }
    }

    pub(crate) fn has(&self, bits: u16) -> bool {
        self.flags & bits != 0
    }

    pub(crate) fn set(&mut self, bits: u16) {
        self.flags |= bits;
    }

    pub(crate) fn clear(&mut self, bits: u16) {
        self.flags &= !bits;
    }

    /// Whether any operation of this generation is still in flight.
    pub(crate) fn busy(&self) -> bool {
        self.has(flag::ANY_ARMED)
    }

    pub(crate) fn queued_bytes(&self) -> usize {
        self.send.as_ref().map_or(0, |queue| queue.queued())
    }

    /// Whether unsent bytes remain or a send is in flight.
    pub(crate) fn sending(&self) -> bool {
        self.has(flag::SEND_ARMED) || self.queued_bytes() > 0
    }

    /// Heap bytes owned by the slot (receive tail and send queue).
    pub(crate) fn heap_bytes(&self) -> usize {
        let tail = self
            .tail
            .as_ref()
            .map_or(0, |tail| std::mem::size_of::<Vec<u8>>() + tail.capacity());
        let send = self.send.as_ref().map_or(0, |queue| queue.heap_bytes());
        tail + send
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_size() {
        // Keep the per-connection reactor state small: 40 bytes on x86_64.
        assert!(
            std::mem::size_of::<Slot>() <= 40,
            "{}",
            std::mem::size_of::<Slot>()
        );
    }

    #[test]
    fn free_slot_owns_no_heap() {
        let slot = Slot::free();
        assert_eq!(slot.heap_bytes(), 0);
        assert!(!slot.busy());
        assert!(!slot.sending());
    }

    #[test]
    fn intents_are_ordered_by_strength() {
        assert!(Intent::None < Intent::Graceful);
        assert!(Intent::Graceful < Intent::AfterFlush);
        assert!(Intent::AfterFlush < Intent::Abort);
        assert!(Intent::Abort < Intent::Reset);
    }
}
