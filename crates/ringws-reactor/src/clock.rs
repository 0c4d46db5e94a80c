//! The worker's monotonic clock in 1 ms ticks.
//!
//! The timer wheel reads no clock; the worker does, here. Rounding keeps
//! timers from firing early: the current tick rounds the clock **down**, a
//! deadline rounds **up**, so a timer due at instant `D` has a deadline tick
//! `d ≥ D`, and fires when the current tick reaches `d`, i.e. at or after
//! `D` and less than one tick after the first poll past `d`.

use std::time::{Duration, Instant};

use ringws_timer::Tick;

/// Nanoseconds per tick.
const TICK_NANOS: u128 = 1_000_000;

/// Converts instants to ticks since the worker started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    pub(crate) fn new(epoch: Instant) -> Clock {
        Clock { epoch }
    }

    /// The tick containing `instant` (rounded down).
    pub(crate) fn tick_at(&self, instant: Instant) -> Tick {
        floor_ticks(instant.saturating_duration_since(self.epoch))
    }

    /// The first tick at or after `instant + after` (rounded up).
    pub(crate) fn deadline_after(&self, instant: Instant, after: Duration) -> Tick {
        ceil_ticks(
            instant
                .saturating_duration_since(self.epoch)
                .saturating_add(after),
        )
    }

    /// The instant at which `tick` begins.
    pub(crate) fn instant_of(&self, tick: Tick) -> Instant {
        self.epoch + Duration::from_millis(tick)
    }
}

fn floor_ticks(elapsed: Duration) -> Tick {
    (elapsed.as_nanos() / TICK_NANOS).min(u128::from(u64::MAX)) as Tick
}

fn ceil_ticks(elapsed: Duration) -> Tick {
    elapsed
        .as_nanos()
        .div_ceil(TICK_NANOS)
        .min(u128::from(u64::MAX)) as Tick
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_table() {
        let table: &[(u64, Tick, Tick)] = &[
            // nanoseconds, floor, ceil
            (0, 0, 0),
            (1, 0, 1),
            (999_999, 0, 1),
            (1_000_000, 1, 1),
            (1_000_001, 1, 2),
            (2_500_000, 2, 3),
        ];
        for &(nanos, floor, ceil) in table {
            let elapsed = Duration::from_nanos(nanos);
            assert_eq!(floor_ticks(elapsed), floor, "floor {nanos}");
            assert_eq!(ceil_ticks(elapsed), ceil, "ceil {nanos}");
        }
    }

    #[test]
    fn deadline_never_precedes_the_requested_instant() {
        let epoch = Instant::now();
        let clock = Clock::new(epoch);
        for offset_us in [0u64, 1, 499, 500, 999, 1000, 1001, 123_456] {
            let now = epoch + Duration::from_micros(offset_us);
            for after_us in [0u64, 1, 999, 1000, 1001, 50_000] {
                let after = Duration::from_micros(after_us);
                let deadline = clock.deadline_after(now, after);
                assert!(clock.instant_of(deadline) >= now + after);
                assert!(clock.instant_of(deadline) < now + after + Duration::from_millis(1));
                assert!(clock.tick_at(now) <= deadline);
            }
        }
    }

    #[test]
    fn instants_before_the_epoch_are_tick_zero() {
        let epoch = Instant::now() + Duration::from_secs(1);
        let clock = Clock::new(epoch);
        assert_eq!(clock.tick_at(Instant::now()), 0);
    }
}
