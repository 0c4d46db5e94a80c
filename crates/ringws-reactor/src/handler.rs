//! The handler trait and what its callbacks receive.
//!
//! ## Borrow structure
//!
//! A worker owns three things a callback may need at once:
//!
//! 1. the **handler** (`&mut self` in every callback);
//! 2. the **reactor side** of every connection (ring, slab of [`Slot`]s,
//!    timer wheel, send queues), reached through [`Ctx::io`] ([`Io`]);
//! 3. the **handler side** of every connection: one [`Handler::Conn`] per
//!    slot, in a vector parallel to the slab and indexed by the same slot.
//!
//! A connection callback gets the state of *its* connection as a plain
//! `&mut H::Conn`, split off that vector; [`Ctx::conns`] ([`Conns`]) gives
//! access to the state of every *other* connection of the worker. Because
//! `io`, `conns` and the lent state are disjoint borrows, a callback can hold
//! its state, look at another connection's state and queue bytes on both,
//! with no `RefCell`, no copying of the state and no unsafe code in the
//! handler:
//!
//! ```text
//! fn on_data(&mut self, ctx: &mut Ctx<'_, Self>, conn: ConnId, state: &mut Peer,
//!            data: &mut [u8]) -> usize {
//!     if let Some(other) = ctx.conns.get_mut(state.partner) {
//!         other.relayed += data.len();
//!         let _ = ctx.io.send(state.partner, data.to_vec());
//!     }
//!     data.len()
//! }
//! ```
//!
//! Callbacks are never re-entered: [`Io`] methods only record work (queue
//! bytes, mark a close, arm a timer); the worker runs the resulting
//! callbacks (`on_closed`, `on_drained`, ...) after the current one returns.
//!
//! [`Slot`]: crate::slot::Slot

use std::fmt;

use ringws_timer::TimerKey;

use crate::io::Io;

/// A worker: its index (0-based) within its reactor, and which reactor of
/// the process it belongs to, so that the workers (and the connections) of
/// two reactors never compare equal. Reactors are told apart modulo 2^16:
/// only two started 65,536 reactors apart can share a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId {
    index: u16,
    reactor: u16,
}

impl WorkerId {
    /// Worker `index` of the reactor tagged 0 (tests).
    #[cfg(test)]
    pub(crate) const fn new(index: usize) -> WorkerId {
        WorkerId::of_reactor(0, index)
    }

    /// Worker `index` of the reactor tagged `reactor`.
    pub(crate) const fn of_reactor(reactor: u16, index: usize) -> WorkerId {
        WorkerId {
            index: index as u16,
            reactor,
        }
    }

    /// The worker's index, `0..workers`.
    pub const fn index(self) -> usize {
        self.index as usize
    }
}

/// Identifies one connection for its whole life: worker (of one reactor),
/// slot and the slot's generation. A `ConnId` of a closed connection never
/// matches the connection that reuses its slot (the generation differs),
/// nor does one of another reactor match any of this one's (the
/// [`WorkerId`] differs), so stale and foreign ids are harmless:
/// operations on them report an unknown connection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    slot: u32,
    generation: u32,
    worker: WorkerId,
}

impl ConnId {
    pub(crate) const fn new(worker: WorkerId, slot: u32, generation: u32) -> ConnId {
        ConnId {
            slot,
            generation,
            worker,
        }
    }

    /// The worker that owns the connection (route commands to its inbox).
    pub const fn worker(self) -> WorkerId {
        self.worker
    }

    /// The slot index within the worker.
    pub const fn slot(self) -> u32 {
        self.slot
    }

    /// The slot's generation when the connection was created.
    pub const fn generation(self) -> u32 {
        self.generation
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ConnId({}:{}#{})",
            self.worker.index, self.slot, self.generation
        )
    }
}

/// The socket operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoOp {
    /// Receiving.
    Recv,
    /// Sending.
    Send,
    /// Submitting an operation to the ring.
    Submit,
}

/// Why a connection closed, as reported to [`Handler::on_closed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCause {
    /// [`Io::close`]: queue flushed, FIN sent, and the peer's FIN received.
    Closed,
    /// [`Io::close`], but the peer's FIN did not arrive within the linger.
    LingerExpired,
    /// [`Io::close_now`]: queue flushed, then closed without waiting.
    ClosedNow,
    /// [`Io::terminate`]: queue discarded, connection reset (RST).
    Terminated,
    /// A socket operation failed with this errno (e.g. `ECONNRESET`, `EPIPE`).
    Error {
        /// What failed.
        op: IoOp,
        /// The errno.
        errno: i32,
    },
    /// An outbound connect failed with this errno (e.g. `ECONNREFUSED`).
    ConnectFailed {
        /// The errno.
        errno: i32,
    },
    /// The worker stopped.
    WorkerStopped,
}

impl CloseCause {
    /// The errno behind the close, for error causes.
    pub fn errno(self) -> Option<i32> {
        match self {
            CloseCause::Error { errno, .. } | CloseCause::ConnectFailed { errno } => Some(errno),
            _ => None,
        }
    }
}

impl fmt::Display for CloseCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseCause::Closed => f.write_str("closed"),
            CloseCause::LingerExpired => f.write_str("closed (peer FIN not seen before linger)"),
            CloseCause::ClosedNow => f.write_str("closed after flush"),
            CloseCause::Terminated => f.write_str("terminated (reset)"),
            CloseCause::Error { op, errno } => write!(
                f,
                "{op:?} failed: {}",
                std::io::Error::from_raw_os_error(*errno)
            ),
            CloseCause::ConnectFailed { errno } => {
                write!(
                    f,
                    "connect failed: {}",
                    std::io::Error::from_raw_os_error(*errno)
                )
            }
            CloseCause::WorkerStopped => f.write_str("worker stopped"),
        }
    }
}

/// The per-worker event handler. One instance per worker, created on the
/// worker's thread by the factory given to [`Reactor::start`]; it need not be
/// `Send`.
///
/// Every callback gets `ctx` ([`Ctx`]): `ctx.io` to act on connections,
/// timers and the worker, `ctx.conns` to reach the state of the worker's
/// other connections.
///
/// [`Reactor::start`]: crate::Reactor::start
pub trait Handler: Sized + 'static {
    /// The handler's state for one connection, created by
    /// [`on_accept`](Self::on_accept) or passed to [`Io::connect`], handed
    /// to connection callbacks as `&mut`, and returned by value to
    /// [`on_closed`](Self::on_closed).
    type Conn;
    /// The value carried by a timer ([`Io::arm_timer`]).
    type Timer;
    /// A command sent from any thread through an [`InboxSender`](crate::InboxSender).
    type Command: Send + 'static;

    /// A connection was accepted. Return its state, or `None` to refuse it
    /// (the socket is closed at once and no other callback fires for it).
    fn on_accept(&mut self, ctx: &mut Ctx<'_, Self>, conn: ConnId) -> Option<Self::Conn>;

    /// An outbound connection ([`Io::connect`]) is established. Bytes queued
    /// while connecting are sent now.
    fn on_connected(&mut self, ctx: &mut Ctx<'_, Self>, conn: ConnId, state: &mut Self::Conn) {
        let _ = (ctx, conn, state);
    }

    /// Bytes arrived. `data` is the unconsumed tail of earlier calls followed
    /// by the new bytes; it is mutable so it can be decoded in place. Return
    /// how many bytes were consumed (clamped to `data.len()`): the reactor
    /// keeps the rest and presents it, followed by the next bytes, on the
    /// next call. The slice is only valid during the call.
    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        conn: ConnId,
        state: &mut Self::Conn,
        data: &mut [u8],
    ) -> usize;

    /// The peer sent FIN: no more bytes will arrive; sending still works.
    /// The default closes gracefully ([`Io::close`]).
    fn on_peer_eof(&mut self, ctx: &mut Ctx<'_, Self>, conn: ConnId, state: &mut Self::Conn) {
        let _ = state;
        ctx.io.close(conn);
    }

    /// The connection's queued bytes, after exceeding the high-water mark,
    /// fell to the low-water mark (see
    /// [`Config::send_water_marks`](crate::Config::send_water_marks)).
    fn on_drained(&mut self, ctx: &mut Ctx<'_, Self>, conn: ConnId, state: &mut Self::Conn) {
        let _ = (ctx, conn, state);
    }

    /// The connection is gone: the socket is closed and `conn` is stale.
    /// Fires exactly once for every connection that had a state.
    fn on_closed(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        conn: ConnId,
        state: Self::Conn,
        cause: CloseCause,
    ) {
        let _ = (ctx, conn, state, cause);
    }

    /// A timer armed with [`Io::arm_timer`] is due (never early).
    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, key: TimerKey, value: Self::Timer) {
        let _ = (ctx, key, value);
    }

    /// A command arrived through the worker's inbox.
    fn on_command(&mut self, ctx: &mut Ctx<'_, Self>, command: Self::Command) {
        let _ = (ctx, command);
    }
}

/// What a callback works with: the reactor side ([`Io`]) and the handler
/// state of the worker's other connections ([`Conns`]). The fields are
/// public so both can be borrowed at once.
pub struct Ctx<'a, H: Handler> {
    /// Act on connections, timers and the worker.
    pub io: Io<'a, H>,
    /// The state of every connection of this worker except the one the
    /// callback is about (which the callback receives directly).
    pub conns: Conns<'a, H::Conn>,
}

impl<H: Handler> fmt::Debug for Ctx<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("io", &self.io)
            .finish_non_exhaustive()
    }
}

/// Handler state of one slot, kept in a vector parallel to the slab.
pub(crate) struct StateEntry<C> {
    pub generation: u32,
    pub state: Option<C>,
}

/// The handler state of a worker's connections, minus the one lent to the
/// current callback.
pub struct Conns<'a, C> {
    worker: WorkerId,
    /// Entries `0..before.len()`.
    before: &'a mut [StateEntry<C>],
    /// Entries `after_start..after_start + after.len()`.
    after: &'a mut [StateEntry<C>],
    after_start: usize,
}

impl<'a, C> Conns<'a, C> {
    /// Splits `entries` around `lent`, returning the view and the lent state.
    pub(crate) fn split(
        worker: WorkerId,
        entries: &'a mut [StateEntry<C>],
        lent: Option<u32>,
    ) -> (Conns<'a, C>, Option<&'a mut C>) {
        let len = entries.len();
        match lent.map(|slot| slot as usize) {
            Some(slot) if slot < len => {
                let (before, rest) = entries.split_at_mut(slot);
                if let Some((entry, after)) = rest.split_first_mut() {
                    let conns = Conns {
                        worker,
                        before,
                        after,
                        after_start: slot + 1,
                    };
                    return (conns, entry.state.as_mut());
                }
                (
                    Conns {
                        worker,
                        before,
                        after: &mut [],
                        after_start: len,
                    },
                    None,
                )
            }
            _ => (
                Conns {
                    worker,
                    before: entries,
                    after: &mut [],
                    after_start: len,
                },
                None,
            ),
        }
    }

    fn entry(&self, conn: ConnId) -> Option<&StateEntry<C>> {
        if conn.worker() != self.worker {
            return None;
        }
        let slot = conn.slot() as usize;
        let entry = if slot < self.before.len() {
            self.before.get(slot)
        } else {
            slot.checked_sub(self.after_start)
                .and_then(|i| self.after.get(i))
        }?;
        (entry.generation == conn.generation()).then_some(entry)
    }

    fn entry_mut(&mut self, conn: ConnId) -> Option<&mut StateEntry<C>> {
        if conn.worker() != self.worker {
            return None;
        }
        let slot = conn.slot() as usize;
        let entry = if slot < self.before.len() {
            self.before.get_mut(slot)
        } else {
            slot.checked_sub(self.after_start)
                .and_then(|i| self.after.get_mut(i))
        }?;
        (entry.generation == conn.generation()).then_some(entry)
    }

    /// The state of `conn`; `None` when it is stale, on another worker, or
    /// the connection the current callback is about.
    pub fn get(&self, conn: ConnId) -> Option<&C> {
        self.entry(conn)?.state.as_ref()
    }

    /// Mutable access to the state of `conn` (see [`get`](Self::get)).
    pub fn get_mut(&mut self, conn: ConnId) -> Option<&mut C> {
        self.entry_mut(conn)?.state.as_mut()
    }

    /// Every connection in this view with its state, in slot order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ConnId, &mut C)> + '_ {
        let worker = self.worker;
        let after_start = self.after_start;
        let before = self.before.iter_mut().enumerate();
        let after = self
            .after
            .iter_mut()
            .enumerate()
            .map(move |(i, entry)| (i + after_start, entry));
        before.chain(after).filter_map(move |(slot, entry)| {
            let generation = entry.generation;
            entry
                .state
                .as_mut()
                .map(|state| (ConnId::new(worker, slot as u32, generation), state))
        })
    }

    /// Number of connections in this view.
    pub fn len(&self) -> usize {
        self.before
            .iter()
            .chain(self.after.iter())
            .filter(|entry| entry.state.is_some())
            .count()
    }

    /// Whether the view holds no connection.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<C> fmt::Debug for Conns<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conns")
            .field("worker", &self.worker)
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(values: &[Option<u32>]) -> Vec<StateEntry<u32>> {
        values
            .iter()
            .map(|&state| StateEntry {
                generation: 1,
                state,
            })
            .collect()
    }

    #[test]
    fn split_lends_one_state_and_hides_it_from_the_view() {
        let worker = WorkerId::new(0);
        let mut states = entries(&[Some(10), Some(11), None, Some(13)]);
        let (mut conns, lent) = Conns::split(worker, &mut states, Some(1));
        let lent = lent.unwrap();
        *lent += 100;
        assert_eq!(conns.get(ConnId::new(worker, 1, 1)), None);
        assert_eq!(conns.get(ConnId::new(worker, 0, 1)), Some(&10));
        assert_eq!(conns.get(ConnId::new(worker, 2, 1)), None);
        *conns.get_mut(ConnId::new(worker, 3, 1)).unwrap() += 1;
        let seen: Vec<_> = conns
            .iter_mut()
            .map(|(id, state)| (id.slot(), *state))
            .collect();
        assert_eq!(seen, vec![(0, 10), (3, 14)]);
        assert_eq!(conns.len(), 2);
        assert_eq!(states[1].state, Some(111));
    }

    #[test]
    fn stale_and_foreign_ids_find_nothing() {
        let worker = WorkerId::new(2);
        let mut states = entries(&[Some(1), Some(2)]);
        let (conns, lent) = Conns::split(worker, &mut states, None);
        assert!(lent.is_none());
        assert_eq!(conns.get(ConnId::new(worker, 1, 1)), Some(&2));
        assert_eq!(
            conns.get(ConnId::new(worker, 1, 2)),
            None,
            "stale generation"
        );
        assert_eq!(
            conns.get(ConnId::new(WorkerId::new(3), 1, 1)),
            None,
            "other worker"
        );
        assert_eq!(conns.get(ConnId::new(worker, 9, 1)), None, "out of range");
    }

    #[test]
    fn lent_slot_beyond_the_vector_lends_nothing() {
        let worker = WorkerId::new(0);
        let mut states = entries(&[Some(1)]);
        let (conns, lent) = Conns::split(worker, &mut states, Some(5));
        assert!(lent.is_none());
        assert_eq!(conns.len(), 1);
    }

    #[test]
    fn close_cause_reports_errno() {
        let cause = CloseCause::Error {
            op: IoOp::Recv,
            errno: libc::ECONNRESET,
        };
        assert_eq!(cause.errno(), Some(libc::ECONNRESET));
        assert_eq!(CloseCause::Closed.errno(), None);
        assert!(cause.to_string().contains("Recv failed"));
    }
}
