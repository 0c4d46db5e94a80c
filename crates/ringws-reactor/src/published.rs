//! A worker's [`WorkerStats`] as other threads see them.
//!
//! The worker keeps its counters in plain fields (an increment on the hot
//! path is an add, nothing more) and copies them into atomics: at most once
//! a millisecond while it is busy, and every time before it sleeps. A reader
//! on any thread therefore sees figures at most about a millisecond old from
//! a busy worker and current ones from an idle worker, without asking the
//! worker anything. A snapshot is not atomic across fields.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::buf_ring::PAGE;
use crate::core::WorkerStats;

/// Longest time a busy worker goes without publishing.
pub(crate) const PUBLISH_PERIOD: Duration = Duration::from_millis(1);

/// Number of fields in [`WorkerStats`].
const FIELDS: usize = 22;

/// The last [`WorkerStats`] a worker published; read with
/// [`snapshot`](Self::snapshot) from any thread
/// ([`ReactorHandle::published_stats`](crate::ReactorHandle::published_stats)).
#[derive(Debug)]
#[repr(align(128))]
pub struct PublishedStats {
    values: [AtomicU64; FIELDS],
}

impl PublishedStats {
    pub(crate) fn new() -> PublishedStats {
        PublishedStats {
            values: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Called by the owning worker only.
    pub(crate) fn publish(&self, stats: &WorkerStats) {
        for (cell, value) in self.values.iter().zip(stats.to_values()) {
            cell.store(value, Ordering::Relaxed);
        }
    }

    /// The figures last published (all zero before the worker's first).
    pub fn snapshot(&self) -> WorkerStats {
        WorkerStats::from_values(
            self.values
                .each_ref()
                .map(|cell| cell.load(Ordering::Relaxed)),
        )
    }
}

/// `WorkerStats` to and from an array, in the order the fields are listed.
/// The struct is destructured and built without `..`, so a field added to
/// `WorkerStats` and not listed here fails to compile.
macro_rules! stats_fields {
    ($($field:ident),* $(,)?) => {
        fn to_values(self) -> [u64; FIELDS] {
            let WorkerStats { $($field),* } = self;
            [$($field),*]
        }

        fn from_values(values: [u64; FIELDS]) -> WorkerStats {
            let [$($field),*] = values;
            WorkerStats { $($field),* }
        }
    };
}

impl WorkerStats {
    /// `recv_pages_resident` in bytes.
    pub fn recv_resident_bytes(&self) -> u64 {
        self.recv_pages_resident * PAGE as u64
    }

    /// Adds `other` field by field (a sum over workers; the gauges, such as
    /// `recv_buffers_lent`, add up too).
    pub fn add(&mut self, other: &WorkerStats) {
        let mut sum = self.to_values();
        for (total, value) in sum.iter_mut().zip(other.to_values()) {
            *total = total.wrapping_add(value);
        }
        *self = WorkerStats::from_values(sum);
    }

    stats_fields! {
        accepted,
        refused,
        accept_errors,
        connected,
        connect_failed,
        closed,
        bytes_received,
        bytes_sent,
        recv_arms,
        recv_enobufs,
        sends,
        partial_sends,
        commands,
        timers_fired,
        turns,
        buffers_allocated,
        recv_buffers_offered,
        payloads_sent_in_place,
        recv_buffers_lent,
        recv_pages_resident,
        recv_bytes_released,
        pooled_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stats whose fields all differ: field `i` holds `base + i`.
    fn distinct(base: u64) -> WorkerStats {
        WorkerStats::from_values(std::array::from_fn(|i| base + i as u64))
    }

    #[test]
    fn publishing_keeps_every_field_in_its_place() {
        let published = PublishedStats::new();
        assert_eq!(published.snapshot(), WorkerStats::default());
        let stats = WorkerStats {
            accepted: 7,
            pooled_bytes: 1 << 40,
            recv_buffers_lent: 3,
            ..distinct(100)
        };
        published.publish(&stats);
        assert_eq!(published.snapshot(), stats);
        assert_eq!(published.snapshot().pooled_bytes, 1 << 40);
        assert_eq!(published.snapshot().turns, 114);
    }

    #[test]
    fn values_round_trip_in_field_order() {
        let stats = distinct(1);
        assert_eq!(stats.accepted, 1);
        assert_eq!(stats.refused, 2);
        assert_eq!(stats.pooled_bytes, FIELDS as u64);
        assert_eq!(WorkerStats::from_values(stats.to_values()), stats);
    }

    #[test]
    fn add_sums_every_field() {
        let mut total = distinct(1);
        total.add(&distinct(1000));
        assert_eq!(total.accepted, 1001);
        assert_eq!(total.recv_buffers_lent, 19 + 1018);
        assert_eq!(
            total.to_values(),
            std::array::from_fn(|i| 1001 + 2 * i as u64)
        );
    }
}
