//! Constant-rate schedules on the reactor's 1 ms ticks, and how totals are
//! split over workers.
//!
//! A [`Pacer`] issues event `j` (a message, a connection, a cycle) at tick
//! `start + floor(j * 1000 / rate)`: the ideal uniform schedule rounded
//! *down* to the tick that contains it. The worker's timers fire at the start
//! of a tick, so each event is issued at (or, when the worker is busy, after)
//! its tick's start, and that instant is the event's *intended* time: open
//! loop latency counts from it, so a worker that falls behind shows up as
//! latency instead of silently sending less (coordinated omission).
//!
//! One function defines the schedule ([`Pacer::tick_of`]); "is it due" and
//! "when is the next one" both come from it, so they can never disagree.

use std::time::Duration;

use ringws_reactor::Tick;

/// Issues events at a constant rate on a tick grid.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    start: Tick,
    /// Events per 1000 seconds (so per-worker shares of fractional rates stay
    /// integers).
    per_kilosecond: u128,
    issued: u64,
    /// The first tick past the schedule.
    end: Tick,
}

impl Pacer {
    /// A schedule of `per_second` events per second starting at tick `start`.
    /// `per_second` must be positive.
    pub(crate) fn new(start: Tick, per_second: f64) -> Pacer {
        Pacer {
            start,
            per_kilosecond: ((per_second * 1000.0).round() as u128).max(1),
            issued: 0,
            end: Tick::MAX,
        }
    }

    /// The same schedule ending after `duration` (rounded up to whole
    /// ticks): events due on the tick where the window ends belong to the
    /// next window, so `duration` holds exactly `per_second * duration`.
    pub(crate) fn lasting(mut self, duration: Duration) -> Pacer {
        let ticks = duration.as_nanos().div_ceil(1_000_000);
        self.end = self
            .start
            .saturating_add(ticks.min(u128::from(u64::MAX)) as Tick);
        self
    }

    /// The tick of event `index`.
    pub(crate) fn tick_of(&self, index: u64) -> Tick {
        // index * 1000 ms / (per_kilosecond / 1000 s) = index * 1e6 / per_kilosecond.
        let offset = u128::from(index) * 1_000_000 / self.per_kilosecond;
        self.start
            .saturating_add(offset.min(u128::from(u64::MAX)) as Tick)
    }

    /// The next event not yet issued and its tick, if it is due at `now`;
    /// marks it issued.
    pub(crate) fn next_due(&mut self, now: Tick) -> Option<(u64, Tick)> {
        let tick = self.due_tick(now)?;
        let index = self.issued;
        self.issued += 1;
        Some((index, tick))
    }

    /// The tick of the next event not yet issued.
    pub(crate) fn next_tick(&self) -> Tick {
        self.tick_of(self.issued)
    }

    /// The tick of the next event not yet issued, if the schedule has one.
    pub(crate) fn upcoming(&self) -> Option<Tick> {
        Some(self.next_tick()).filter(|&tick| tick < self.end)
    }

    /// [`upcoming`](Self::upcoming), if it is due at `now`.
    fn due_tick(&self, now: Tick) -> Option<Tick> {
        self.upcoming().filter(|&tick| tick <= now)
    }

    /// Issues every event due at `now`, as runs of `(tick, count)` in
    /// order, one per tick: a backlog costs one step per tick, however
    /// many events each tick holds.
    pub(crate) fn take_due(&mut self, now: Tick) -> DueRuns<'_> {
        DueRuns { pacer: self, now }
    }

    /// The first event whose tick is after `tick` (`tick >= start`).
    fn first_after(&self, tick: Tick) -> u64 {
        // tick_of(j) <= tick  <=>  floor(j * 1e6 / pk) <= tick - start
        //                     <=>  j * 1e6 < (tick - start + 1) * pk.
        let ticks = u128::from(tick.saturating_sub(self.start)) + 1;
        ticks
            .saturating_mul(self.per_kilosecond)
            .div_ceil(1_000_000)
            .min(u128::from(u64::MAX)) as u64
    }

    /// Events of a schedule [`lasting`](Self::lasting) a window that are
    /// not issued yet (0 for an endless one).
    pub(crate) fn remaining(&self) -> u64 {
        if self.end == Tick::MAX || self.end <= self.start {
            return 0;
        }
        self.first_after(self.end - 1).saturating_sub(self.issued)
    }

    /// Events issued so far.
    #[cfg(test)]
    pub(crate) fn issued(&self) -> u64 {
        self.issued
    }
}

/// The events [`Pacer::take_due`] issues, one run per tick.
pub(crate) struct DueRuns<'a> {
    pacer: &'a mut Pacer,
    now: Tick,
}

impl Iterator for DueRuns<'_> {
    type Item = (Tick, u64);

    fn next(&mut self) -> Option<(Tick, u64)> {
        let pacer = &mut *self.pacer;
        let tick = pacer.due_tick(self.now)?;
        let end = pacer.first_after(tick);
        // Only a schedule saturated at u64::MAX events gets here empty.
        let count = end.checked_sub(pacer.issued).filter(|&count| count > 0)?;
        pacer.issued = end;
        Some((tick, count))
    }
}

/// Worker `worker`'s share of `total` items split over `workers` as evenly
/// as possible (the first `total % workers` workers get one more); shares sum
/// to `total`.
pub(crate) fn share(total: u64, workers: usize, worker: usize) -> u64 {
    let workers = workers as u64;
    let worker = worker as u64;
    total / workers + u64::from(worker < total % workers)
}

/// Worker `worker`'s part of a total `rate`, in proportion to its share of
/// the parallel units (connections or churn slots).
pub(crate) fn rate_share(rate: f64, units: u64, worker_units: u64) -> f64 {
    if units == 0 {
        return 0.0;
    }
    rate * worker_units as f64 / units as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticks(per_second: f64, count: u64) -> Vec<Tick> {
        let pacer = Pacer::new(100, per_second);
        (0..count).map(|index| pacer.tick_of(index)).collect()
    }

    #[test]
    fn schedule_table() {
        assert_eq!(ticks(1000.0, 4), vec![100, 101, 102, 103]);
        assert_eq!(ticks(500.0, 4), vec![100, 102, 104, 106]);
        assert_eq!(ticks(2500.0, 6), vec![100, 100, 100, 101, 101, 102]);
        assert_eq!(ticks(0.5, 3), vec![100, 2100, 4100]);
        assert_eq!(ticks(3.0, 4), vec![100, 433, 766, 1100]);
    }

    #[test]
    fn one_second_holds_exactly_the_rate() {
        for rate in [1.0, 7.0, 999.0, 1000.0, 1001.0, 33_333.0, 250_000.0] {
            let mut pacer = Pacer::new(0, rate);
            let mut count = 0u64;
            while pacer.next_due(999).is_some() {
                count += 1;
            }
            assert_eq!(count, rate as u64, "rate {rate}");
            assert_eq!(
                pacer.next_tick(),
                1000,
                "rate {rate}: second 2 starts at tick 1000"
            );
        }
    }

    #[test]
    fn next_due_issues_in_order_and_never_early() {
        let mut pacer = Pacer::new(10, 300.0);
        let mut seen = Vec::new();
        for now in 0..30 {
            while let Some((index, tick)) = pacer.next_due(now) {
                assert!(tick <= now, "event {index} issued before its tick");
                seen.push(index);
            }
            assert!(pacer.next_tick() > now);
        }
        assert_eq!(seen, (0..seen.len() as u64).collect::<Vec<_>>());
        assert_eq!(pacer.issued(), seen.len() as u64);
        // Ticks 10..=29 are 20 ms: 6 events at 300/s.
        assert_eq!(seen.len(), 6);
    }

    #[test]
    fn due_runs_group_exactly_what_next_due_issues() {
        for rate in [0.5, 3.0, 300.0, 999.0, 1000.0, 2500.0, 33_333.0, 1e9] {
            let mut bulk = Pacer::new(10, rate);
            let mut single = Pacer::new(10, rate);
            for now in [0, 9, 10, 11, 57, 58, 1000, 1003, 2999] {
                let runs: Vec<(Tick, u64)> = bulk.take_due(now).collect();
                let mut expected: Vec<(Tick, u64)> = Vec::new();
                if rate < 1e6 {
                    while let Some((_, tick)) = single.next_due(now) {
                        match expected.last_mut() {
                            Some((last, count)) if *last == tick => *count += 1,
                            _ => expected.push((tick, 1)),
                        }
                    }
                    assert_eq!(runs, expected, "rate {rate}, now {now}");
                }
                assert!(runs.windows(2).all(|pair| pair[0].0 < pair[1].0));
                assert!(runs.iter().all(|&(tick, count)| tick <= now && count > 0));
                assert!(bulk.next_tick() > now, "rate {rate}: all due issued");
            }
            if rate < 1e6 {
                assert_eq!(bulk.issued(), single.issued(), "rate {rate}");
            }
        }
    }

    #[test]
    fn a_schedule_lasting_a_window_holds_exactly_the_rate_for_it() {
        for (rate, millis) in [(2000.0, 3000), (3.0, 1000), (1e9, 5), (333.0, 1500)] {
            let duration = Duration::from_millis(millis);
            let mut bulk = Pacer::new(7, rate).lasting(duration);
            let issued: u64 = bulk.take_due(Tick::MAX - 1).map(|(_, count)| count).sum();
            let expected = (rate * duration.as_secs_f64()).round() as u64;
            assert_eq!(issued, expected, "rate {rate} for {millis} ms");
            assert_eq!(bulk.upcoming(), None);
            let mut single = Pacer::new(7, rate).lasting(duration);
            if rate < 1e6 {
                let mut count = 0;
                while let Some((_, tick)) = single.next_due(Tick::MAX - 1) {
                    assert!(tick < 7 + millis);
                    count += 1;
                }
                assert_eq!(count, expected, "rate {rate} for {millis} ms");
            }
        }
        let pacer = Pacer::new(0, 1000.0).lasting(Duration::from_micros(2500));
        assert_eq!(pacer.upcoming(), Some(0));
        assert_eq!(pacer.end, 3, "a partial tick rounds up");
    }

    #[test]
    fn remaining_is_what_the_window_still_holds() {
        for (rate, millis) in [(2000.0, 3000), (3.0, 1000), (1e9, 5), (333.0, 1500)] {
            let duration = Duration::from_millis(millis);
            let mut pacer = Pacer::new(7, rate).lasting(duration);
            let total = (rate * duration.as_secs_f64()).round() as u64;
            assert_eq!(pacer.remaining(), total, "rate {rate} for {millis} ms");
            let issued: u64 = pacer.take_due(7 + millis / 3).map(|(_, n)| n).sum();
            assert!(issued > 0);
            assert_eq!(pacer.remaining(), total - issued, "rate {rate}");
            let _ = pacer.take_due(Tick::MAX - 1).count();
            assert_eq!(pacer.remaining(), 0);
        }
        assert_eq!(Pacer::new(0, 1000.0).remaining(), 0, "endless");
    }

    #[test]
    fn a_backlog_of_a_billion_events_is_one_run_per_tick() {
        let mut pacer = Pacer::new(0, 1e9);
        let runs: Vec<(Tick, u64)> = pacer.take_due(2_999).collect();
        assert_eq!(runs.len(), 3_000);
        assert!(runs.iter().all(|&(_, count)| count == 1_000_000));
        assert_eq!(pacer.issued(), 3_000_000_000);
        assert_eq!(pacer.next_tick(), 3_000);
    }

    #[test]
    fn shares_sum_to_the_total() {
        for total in [0u64, 1, 7, 64, 1001] {
            for workers in 1..6 {
                let shares: Vec<u64> = (0..workers).map(|w| share(total, workers, w)).collect();
                assert_eq!(shares.iter().sum::<u64>(), total);
                let (min, max) = (shares.iter().min(), shares.iter().max());
                assert!(max.unwrap() - min.unwrap() <= 1, "{shares:?}");
            }
        }
        let rates: f64 = (0..3).map(|w| rate_share(1000.0, 7, share(7, 3, w))).sum();
        assert!((rates - 1000.0).abs() < 1e-9);
        assert_eq!(rate_share(1000.0, 0, 0), 0.0);
    }
}
