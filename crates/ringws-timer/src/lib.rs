//! # ringws-timer: a hierarchical timing wheel for one core
//!
//! Keepalive, pong, close and handshake deadlines for every connection a
//! worker owns live in one wheel per worker.
//!
//! ## What this crate must never do
//!
//! It never reads a clock and never shares itself between threads: the owner
//! passes the current tick in. It never fires a timer early.
//!
//! ## Use
//!
//! ```
//! use ringws_timer::Wheel;
//!
//! let mut wheel = Wheel::new();
//! let keepalive = wheel.insert(30_000, "ping");
//! let handshake = wheel.insert(5_000, "handshake timeout");
//! assert!(wheel.cancel(handshake).is_some()); // the handshake completed
//! assert!(wheel.reset(keepalive, 31_000)); // traffic: push the ping back
//!
//! // The event loop sleeps until `next_expiry`, then drains `poll`.
//! let mut fired = Vec::new();
//! while let Some(wake_at) = wheel.next_expiry() {
//!     while let Some((_key, what)) = wheel.poll(wake_at) {
//!         fired.push((wheel.now(), what));
//!     }
//! }
//! assert_eq!(fired, [(31_000, "ping")]);
//! ```
//!
//! ## Ticks
//!
//! Time is a [`Tick`], a plain `u64` count chosen by the caller (the reactor
//! uses 1 ms). The wheel only compares ticks; it has no idea how long one is.
//! [`Wheel::poll`] is the only thing that moves the wheel's time forward, and
//! time never runs backwards: a `now` smaller than [`Wheel::now`] is treated
//! as [`Wheel::now`].
//!
//! ## Levels and slots
//!
//! The wheel has [`LEVELS`] = 10 levels of [`SLOTS_PER_LEVEL`] = 64 slots.
//! A slot at level `l` covers `64^l` ticks, so level 0 has one slot per tick
//! and a whole level `l` covers `64^(l+1)` ticks; together the levels cover
//! [`WHEEL_SPAN`] = 2^60 ticks (36 million years of 1 ms ticks).
//!
//! Read a tick as ten base-64 digits. A timer whose deadline first differs
//! from the wheel's position in digit `l` (counting from the least
//! significant) sits at level `l` ([`level_for`]), in the slot named by its
//! deadline's digit `l` ([`slot_for`]). Every timer at level `l` therefore
//! shares all higher digits with the wheel's position, and its slot lies
//! strictly ahead of the position's digit `l`. A level-0 slot holds timers
//! of exactly one deadline; a higher slot holds a range of deadlines.
//!
//! When time reaches the first tick of a higher-level slot, the slot is
//! emptied and each of its timers is re-inserted relative to the new
//! position, which always lands it at a strictly lower level ("cascading"):
//! a timer moves down at most once per level before it fires.
//!
//! A deadline in a later 2^60-tick block than the wheel's position (it
//! differs from the position in the top four bits of the `u64`, a tenth
//! digit the levels do not have) is clamped to the top level, in the slot of
//! its level-9 digit. That slot comes round once per block; each time it
//! does, the timer is re-inserted, and once the position reaches the
//! timer's block it cascades normally. A `u64` holds only 16 blocks, so a
//! timer is re-inserted from the top level at most 16 times.
//!
//! Each level keeps a 64-bit occupancy bitmap (bit `s` set when slot `s`
//! holds a timer) and the wheel keeps one bit per non-empty level, so finding
//! the next slot to expire is two `trailing_zeros`, whatever the number of
//! timers.
//!
//! ## Firing bound
//!
//! A timer with deadline `d` is returned by the first drain of
//! [`Wheel::poll`]`(now)` (calling it until it returns `None`) with
//! `now >= d`, and by no drain with `now < d`. Relative to the ticks the
//! caller passes in, a timer is never early and never late. All lateness in
//! real time comes from the caller's rounding: a caller whose tick is `L`
//! long, which rounds deadlines up to a tick and the clock down, and which
//! polls whenever a tick boundary passes, sees a timer due at instant `D`
//! fire in `[D, D + L)`: never early, less than one tick late.
//!
//! The order in which the timers due in one drain are returned is not
//! specified.
//!
//! ## Cost
//!
//! [`Wheel::insert`], [`Wheel::cancel`], [`Wheel::reset`], [`Wheel::get`]
//! and [`Wheel::next_expiry`] are O(1). A drain of [`Wheel::poll`] costs
//! O(1) per timer returned plus O(1) per cascade, and a timer cascades at
//! most once per level (plus once per 2^60 ticks beyond the span). The
//! cascade of a slot happens all at once, in the drain that reaches the
//! slot's first tick: a level-`l` slot holds every timer due in a window of
//! `64^l` ticks, so that one drain moves them all (`docs/benchmarks.md`
//! measures it). Timers still fire on their tick; the caller's loop is just
//! busy for that long.
//!
//! Timers live in a slab (`Vec`) of entries linked into per-slot intrusive
//! doubly-linked lists by `u32` index, so the crate has no `unsafe` and no
//! per-timer allocation. A [`TimerKey`] is the entry's index plus a
//! generation that changes each time the entry is freed, so a key of a timer
//! that has fired or been cancelled never reaches the timer that reuses its
//! entry. One pending timer costs [`Wheel::BYTES_PER_TIMER`] bytes: 32 for
//! `T = u64` on 64-bit targets (plus the `Vec`'s spare capacity; size the
//! wheel with [`Wheel::with_capacity`] to avoid it). Freed entries are kept
//! and reused; the slab never shrinks. The fixed part of a wheel (list heads
//! and bitmaps) is under 3 KiB.
#![forbid(unsafe_code)]

use core::fmt;
use core::mem;

/// A point in time, in caller-chosen ticks (the reactor uses 1 ms).
pub type Tick = u64;

/// Number of slots in one level of the wheel.
pub const SLOTS_PER_LEVEL: usize = 1 << SLOT_BITS;

/// Number of levels of the wheel.
pub const LEVELS: usize = 10;

/// Number of ticks the levels cover (2^60). A deadline in a later
/// `WHEEL_SPAN`-aligned block than the wheel's position is clamped to the top
/// level and re-inserted each time its slot comes round.
pub const WHEEL_SPAN: u64 = 1 << (SLOT_BITS as usize * LEVELS);

/// log2 of [`SLOTS_PER_LEVEL`]: one level is one base-64 digit of a tick.
const SLOT_BITS: u32 = 6;

/// Mask of one base-64 digit.
const SLOT_MASK: u64 = SLOTS_PER_LEVEL as u64 - 1;

/// "No entry" in a list link, a list head or the free list.
const NIL: u32 = u32::MAX;

/// List id of the ready list; list ids below it name wheel slots
/// (`level * SLOTS_PER_LEVEL + slot`).
const READY: u16 = (LEVELS * SLOTS_PER_LEVEL) as u16;

/// Level of the wheel at which a timer due at `deadline` sits when the
/// wheel's position is `elapsed` (`deadline >= elapsed`): the index of the
/// most significant base-64 digit in which the two differ, clamped to
/// `LEVELS - 1` when they differ above the levels (in a later
/// [`WHEEL_SPAN`]-aligned block).
#[must_use]
pub const fn level_for(elapsed: Tick, deadline: Tick) -> usize {
    // OR-ing in the low digit makes equal ticks (no differing digit) level 0.
    let differing = (elapsed ^ deadline) | SLOT_MASK;
    let highest_differing_bit = 63 - differing.leading_zeros();
    let level = (highest_differing_bit / SLOT_BITS) as usize;
    if level < LEVELS {
        level
    } else {
        LEVELS - 1
    }
}

/// Slot of `level` that holds a timer due at `deadline`: the deadline's
/// base-64 digit number `level` (0 for digits beyond the `u64`).
#[must_use]
pub const fn slot_for(deadline: Tick, level: usize) -> usize {
    // A u64 has 11 base-64 digits; the top one holds only four bits.
    let digits_in_tick = u64::BITS.div_ceil(SLOT_BITS) as usize;
    if level >= digits_in_tick {
        return 0;
    }
    ((deadline >> (level as u32 * SLOT_BITS)) & SLOT_MASK) as usize
}

/// Handle to a timer in a [`Wheel`]: the timer's slab index and the
/// generation of that entry. A key stays valid until its timer fires or is
/// cancelled; after that every method treats it as stale, even when a new
/// timer reuses the entry (the generation is 32 bits, so only after that
/// entry has been reused 2^32 times could a stale key match again). A key is
/// only meaningful to the wheel that issued it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerKey {
    index: u32,
    generation: u32,
}

/// One slab entry.
///
/// The fields live directly in the variants (rather than in a struct per
/// variant) so the enum tag shares a word with `list`, keeping an entry at
/// 32 bytes for an 8-byte `T`.
enum Entry<T> {
    Pending {
        generation: u32,
        /// Which list the entry is linked into: a wheel slot or [`READY`].
        list: u16,
        prev: u32,
        next: u32,
        deadline: Tick,
        value: T,
    },
    Vacant {
        /// Generation the next timer stored here gets.
        generation: u32,
        next_free: u32,
    },
}

/// The next wheel slot to expire and the tick at which it does.
#[derive(Debug, Clone, Copy)]
struct Expiration {
    level: usize,
    slot: usize,
    deadline: Tick,
}

/// A hierarchical timing wheel holding timers that carry a `T`.
///
/// See the [crate documentation](crate) for the structure and the firing
/// bound.
pub struct Wheel<T> {
    entries: Vec<Entry<T>>,
    free_head: u32,
    len: usize,
    /// Largest tick passed to `poll` (what `now()` reports).
    now: Tick,
    /// Position of the wheel: every timer in a slot is due after it. Equal to
    /// `now` except in the middle of a drain, where it is the start of the
    /// last slot processed.
    elapsed: Tick,
    /// Heads of the slot lists (`level * SLOTS_PER_LEVEL + slot`) followed by
    /// the head of the ready list.
    heads: [u32; LEVELS * SLOTS_PER_LEVEL + 1],
    /// Per level, bit `s` is set when slot `s` is non-empty.
    occupied: [u64; LEVELS],
    /// Bit `l` is set when `occupied[l] != 0`.
    occupied_levels: u32,
    /// Tail of the ready list (its head is `heads[READY]`), which holds timers
    /// already due, in the order they became due.
    ready_tail: u32,
    /// Never more than the earliest deadline in the ready list; meaningful
    /// only while the list is non-empty.
    ready_min_deadline: Tick,
}

impl<T> Wheel<T> {
    /// Bytes of slab taken by one pending timer (32 for `T = u64` on 64-bit
    /// targets).
    pub const BYTES_PER_TIMER: usize = mem::size_of::<Entry<T>>();

    /// An empty wheel at tick 0.
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty wheel at tick 0 with room for `timers` pending timers before
    /// the slab reallocates.
    #[must_use]
    pub fn with_capacity(timers: usize) -> Self {
        Self {
            entries: Vec::with_capacity(timers),
            free_head: NIL,
            len: 0,
            now: 0,
            elapsed: 0,
            heads: [NIL; LEVELS * SLOTS_PER_LEVEL + 1],
            occupied: [0; LEVELS],
            occupied_levels: 0,
            ready_tail: NIL,
            ready_min_deadline: 0,
        }
    }

    /// The largest tick passed to [`Wheel::poll`] so far (0 for a new wheel).
    #[must_use]
    pub fn now(&self) -> Tick {
        self.now
    }

    /// Number of pending timers (armed, not yet returned by `poll`, not
    /// cancelled).
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is pending.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Arms a timer due at `deadline` carrying `value`, in O(1). A deadline
    /// at or before [`Wheel::now`] fires on the next `poll`.
    ///
    /// # Panics
    ///
    /// If `u32::MAX` timers are already pending (the slab index is a `u32`).
    pub fn insert(&mut self, deadline: Tick, value: T) -> TimerKey {
        let (index, generation) = if self.free_head != NIL {
            let index = self.free_head;
            let slot = &mut self.entries[index as usize];
            let (generation, next_free) = match *slot {
                Entry::Vacant {
                    generation,
                    next_free,
                } => (generation, next_free),
                // The free list links only vacant entries.
                Entry::Pending { .. } => unreachable!("free list reached a pending entry"),
            };
            self.free_head = next_free;
            *slot = Entry::Pending {
                generation,
                list: READY,
                prev: NIL,
                next: NIL,
                deadline,
                value,
            };
            (index, generation)
        } else {
            let index = u32::try_from(self.entries.len())
                .ok()
                .filter(|&index| index != NIL)
                .expect("ringws-timer: more than u32::MAX - 1 timers pending");
            self.entries.push(Entry::Pending {
                generation: 0,
                list: READY,
                prev: NIL,
                next: NIL,
                deadline,
                value,
            });
            (index, 0)
        };
        self.len += 1;
        self.link(index, deadline);
        TimerKey { index, generation }
    }

    /// Disarms the timer of `key` in O(1) and returns its value. A key whose
    /// timer has fired or been cancelled returns `None` and changes nothing.
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        self.deadline(key)?;
        self.unlink(key.index);
        let generation = key.generation.wrapping_add(1);
        let vacant = Entry::Vacant {
            generation,
            next_free: self.free_head,
        };
        let removed = mem::replace(&mut self.entries[key.index as usize], vacant);
        self.free_head = key.index;
        self.len -= 1;
        match removed {
            Entry::Pending { value, .. } => Some(value),
            Entry::Vacant { .. } => None,
        }
    }

    /// Moves the timer of `key` to `deadline` in O(1), keeping its key and
    /// value; a deadline at or before [`Wheel::now`] fires on the next
    /// `poll`. Returns `false`, changing nothing, when the timer has fired or
    /// been cancelled.
    pub fn reset(&mut self, key: TimerKey, deadline: Tick) -> bool {
        let elapsed = self.elapsed;
        let Some(Entry::Pending {
            generation,
            list,
            deadline: stored,
            ..
        }) = self.entries.get_mut(key.index as usize)
        else {
            return false;
        };
        if *generation != key.generation {
            return false;
        }
        *stored = deadline;
        // A deadline pushed back within the same slot (a keepalive moved by a
        // few ticks, in a slot covering thousands) stays where it is, without
        // touching its neighbours.
        if deadline > elapsed {
            let level = level_for(elapsed, deadline);
            if usize::from(*list) == level * SLOTS_PER_LEVEL + slot_for(deadline, level) {
                return true;
            }
        }
        self.unlink(key.index);
        self.link(key.index, deadline);
        true
    }

    /// The value of the pending timer of `key`, or `None` for a stale key.
    #[must_use]
    pub fn get(&self, key: TimerKey) -> Option<&T> {
        match self.entries.get(key.index as usize)? {
            Entry::Pending {
                generation, value, ..
            } if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    /// The value of the pending timer of `key`, mutably, or `None` for a
    /// stale key.
    #[must_use]
    pub fn get_mut(&mut self, key: TimerKey) -> Option<&mut T> {
        match self.entries.get_mut(key.index as usize)? {
            Entry::Pending {
                generation, value, ..
            } if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    /// The deadline of the pending timer of `key`, or `None` for a stale key.
    #[must_use]
    pub fn deadline(&self, key: TimerKey) -> Option<Tick> {
        match self.entries.get(key.index as usize)? {
            Entry::Pending {
                generation,
                deadline,
                ..
            } if *generation == key.generation => Some(*deadline),
            _ => None,
        }
    }

    /// Advances time to `now` (ignored if smaller than [`Wheel::now`]) and
    /// returns one timer whose deadline is at or before it, removing it from
    /// the wheel; `None` once no such timer is left. Call it until it returns
    /// `None` to collect every due timer: a drain returns exactly the timers
    /// with `deadline <= now`.
    ///
    /// The returned key is already stale. Work is done lazily, one slot at a
    /// time, so stopping a drain early is cheap and timers armed in the
    /// middle of one are honoured.
    pub fn poll(&mut self, now: Tick) -> Option<(TimerKey, T)> {
        self.now = self.now.max(now);
        loop {
            if let Some(fired) = self.pop_ready() {
                return Some(fired);
            }
            match self.next_expiration() {
                Some(expiration) if expiration.deadline <= self.now => {
                    self.process_slot(expiration);
                }
                _ => {
                    self.elapsed = self.now;
                    return None;
                }
            }
        }
    }

    /// A tick no later than the earliest pending deadline, or `None` when no
    /// timer is pending; an event loop sleeps until then.
    ///
    /// - A result at or before [`Wheel::now`] means `poll` has work now.
    /// - After a drain of `poll(now)` the result is `None` or after `now`, so
    ///   sleeping until it never spins.
    /// - It is exactly the earliest deadline when that timer is in level 0
    ///   (due within the 64-tick block the wheel is in). Otherwise it is the
    ///   first tick of the higher-level slot holding that timer, where a
    ///   drain cascades the timer at least one level down: an event loop that
    ///   sleeps until `next_expiry` wakes at most `LEVELS - 1` times before
    ///   the earliest timer fires (plus once per [`WHEEL_SPAN`]-aligned
    ///   block for a clamped timer). Making it exact would mean scanning a slot,
    ///   which can hold most of the timers.
    #[must_use]
    pub fn next_expiry(&self) -> Option<Tick> {
        let wheel = self.next_expiration().map(|expiration| expiration.deadline);
        if self.heads[READY as usize] == NIL {
            return wheel;
        }
        Some(wheel.map_or(self.ready_min_deadline, |wheel| {
            wheel.min(self.ready_min_deadline)
        }))
    }

    /// Links the pending entry `index` into the ready list if `deadline` is
    /// not after the wheel's position, otherwise into its wheel slot.
    fn link(&mut self, index: u32, deadline: Tick) {
        if deadline <= self.elapsed {
            self.push_ready(index, deadline);
        } else {
            let level = level_for(self.elapsed, deadline);
            let slot = slot_for(deadline, level);
            self.push_slot(index, level, slot);
        }
    }

    /// Pushes the pending entry `index` at the front of a wheel slot's list.
    fn push_slot(&mut self, index: u32, level: usize, slot: usize) {
        let list = level * SLOTS_PER_LEVEL + slot;
        let old_head = self.heads[list];
        self.set_links(index, list as u16, NIL, old_head);
        if old_head != NIL {
            self.set_prev(old_head, index);
        }
        self.heads[list] = index;
        self.occupied[level] |= 1 << slot;
        self.occupied_levels |= 1 << level;
    }

    /// Appends the pending entry `index`, due at `deadline`, to the ready
    /// list.
    fn push_ready(&mut self, index: u32, deadline: Tick) {
        let old_tail = self.ready_tail;
        self.set_links(index, READY, old_tail, NIL);
        if old_tail == NIL {
            self.heads[READY as usize] = index;
            self.ready_min_deadline = deadline;
        } else {
            self.set_next(old_tail, index);
            self.ready_min_deadline = self.ready_min_deadline.min(deadline);
        }
        self.ready_tail = index;
    }

    /// Unlinks the pending entry `index` from whichever list holds it.
    fn unlink(&mut self, index: u32) {
        let Entry::Pending {
            list, prev, next, ..
        } = self.entries[index as usize]
        else {
            return;
        };
        let list = list as usize;
        if prev == NIL {
            self.heads[list] = next;
        } else {
            self.set_next(prev, next);
        }
        if next != NIL {
            self.set_prev(next, prev);
        } else if list == READY as usize {
            self.ready_tail = prev;
        }
        if self.heads[list] == NIL && list != READY as usize {
            self.clear_occupied(list / SLOTS_PER_LEVEL, list % SLOTS_PER_LEVEL);
        }
    }

    fn clear_occupied(&mut self, level: usize, slot: usize) {
        self.occupied[level] &= !(1 << slot);
        if self.occupied[level] == 0 {
            self.occupied_levels &= !(1 << level);
        }
    }

    /// Takes the first timer off the ready list and frees its entry.
    fn pop_ready(&mut self) -> Option<(TimerKey, T)> {
        let index = self.heads[READY as usize];
        if index == NIL {
            return None;
        }
        self.unlink(index);
        let generation = match self.entries[index as usize] {
            Entry::Pending { generation, .. } => generation,
            Entry::Vacant { .. } => return None,
        };
        let vacant = Entry::Vacant {
            generation: generation.wrapping_add(1),
            next_free: self.free_head,
        };
        let Entry::Pending { value, .. } = mem::replace(&mut self.entries[index as usize], vacant)
        else {
            return None;
        };
        self.free_head = index;
        self.len -= 1;
        Some((TimerKey { index, generation }, value))
    }

    /// The earliest wheel slot to expire (ignoring the ready list).
    ///
    /// Every slot at a level expires before any slot of a higher level: a
    /// level-`l` timer shares the position's digits above `l`, so it is due
    /// before the position's level-`l` block ends, and every higher slot
    /// starts at or after that end. Within the level, slots after the
    /// position's digit expire in this block; slots at or before it hold
    /// only clamped timers and expire in the next block.
    fn next_expiration(&self) -> Option<Expiration> {
        if self.occupied_levels == 0 {
            return None;
        }
        let level = self.occupied_levels.trailing_zeros() as usize;
        let shift = level as u32 * SLOT_BITS;
        let position_slot = ((self.elapsed >> shift) & SLOT_MASK) as u32;
        let first_candidate = (position_slot + 1) % SLOTS_PER_LEVEL as u32;
        let ahead = self.occupied[level].rotate_right(first_candidate);
        let slot = (first_candidate + ahead.trailing_zeros()) % SLOTS_PER_LEVEL as u32;
        let block_len = 1u64 << (shift + SLOT_BITS);
        let block_start = self.elapsed & !(block_len - 1);
        let mut deadline = block_start + (u64::from(slot) << shift);
        if slot <= position_slot {
            debug_assert_eq!(level, LEVELS - 1, "only clamped timers wrap");
            // The slot's timers are due at or after the next block's start,
            // so this sum does not exceed their deadlines.
            deadline += block_len;
        }
        Some(Expiration {
            level,
            slot: slot as usize,
            deadline,
        })
    }

    /// Moves the wheel's position to the start of `expiration`'s slot and
    /// empties that slot: timers due by then go to the ready list, the others
    /// to a lower level (or back to the top level if still clamped).
    fn process_slot(&mut self, expiration: Expiration) {
        self.elapsed = expiration.deadline;
        let list = expiration.level * SLOTS_PER_LEVEL + expiration.slot;
        let mut index = mem::replace(&mut self.heads[list], NIL);
        self.clear_occupied(expiration.level, expiration.slot);
        while index != NIL {
            let (next, deadline) = match self.entries[index as usize] {
                Entry::Pending { next, deadline, .. } => (next, deadline),
                Entry::Vacant { .. } => break,
            };
            self.link(index, deadline);
            index = next;
        }
    }

    fn set_links(&mut self, index: u32, new_list: u16, new_prev: u32, new_next: u32) {
        if let Entry::Pending {
            list, prev, next, ..
        } = &mut self.entries[index as usize]
        {
            *list = new_list;
            *prev = new_prev;
            *next = new_next;
        }
    }

    fn set_prev(&mut self, index: u32, new_prev: u32) {
        if let Entry::Pending { prev, .. } = &mut self.entries[index as usize] {
            *prev = new_prev;
        }
    }

    fn set_next(&mut self, index: u32, new_next: u32) {
        if let Entry::Pending { next, .. } = &mut self.entries[index as usize] {
            *next = new_next;
        }
    }
}

// The memory budget: a pending `u64` timer fits in one 64-byte cache line.
const _: () = assert!(Wheel::<u64>::BYTES_PER_TIMER <= 64);

impl<T> Default for Wheel<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for Wheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wheel")
            .field("now", &self.now)
            .field("len", &self.len)
            .field("next_expiry", &self.next_expiry())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
