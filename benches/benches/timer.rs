//! Timer wheel: the cost of arming and disarming a timer while many others
//! are pending, as a worker does for every connection's keepalive, pong,
//! close and handshake deadlines.
//!
//! Each wheel is pre-filled with N timers (1 K, 100 K, 1 M) due at random
//! ticks over the next 10 minutes of 1 ms ticks, then:
//!
//! - `arm_cancel`: insert a timer at a random tick in that range and cancel
//!   it (a deadline armed and disarmed before it fires).
//! - `arm_fire`: advance one tick, insert a timer due at that tick, and drain
//!   `poll`. Pre-filled timers that come due on the way are re-armed at a
//!   random tick up to 10 minutes ahead, so N stays constant; at 1 M pending
//!   that adds about 1.7 fire-and-re-arm per iteration, plus the cascades of
//!   a wheel in steady state.
//! - `reset_pending`: move a random pre-filled timer to a new random tick
//!   (a keepalive pushed back by traffic). Unlike the two above, this touches
//!   a random timer among N, so at 1 M it measures cache misses too.
//! - `cascade`: the one poll that crosses into a level-3 slot holding N
//!   timers and moves them all a level down. This is the longest single
//!   `poll` a wheel of that size does, reported per timer moved.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use ringws_timer::{Tick, TimerKey, Wheel};

/// 10 minutes of 1 ms ticks.
const SPREAD: u64 = 600_000;

/// Pending timer counts.
const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];

/// Random draws are taken from a precomputed table so the generator stays out
/// of the measured loop; a power of two so the index is a mask.
const TABLE_LEN: usize = 1 << 16;

/// Value carried by the timer a benchmark iteration arms (pre-filled timers
/// carry their own index).
const BENCH_TIMER: u64 = u64::MAX;

/// splitmix64: deterministic inputs without a dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Ticks 1..=SPREAD ahead, in random order.
fn random_offsets(rng: &mut SplitMix) -> Vec<Tick> {
    (0..TABLE_LEN).map(|_| 1 + rng.next() % SPREAD).collect()
}

/// A wheel at tick 0 holding `pending` timers due over the next `SPREAD`
/// ticks, and their keys.
fn prefilled(pending: usize, rng: &mut SplitMix) -> (Wheel<u64>, Vec<TimerKey>) {
    let mut wheel = Wheel::with_capacity(pending + 1);
    let keys = (0..pending as u64)
        .map(|value| wheel.insert(1 + rng.next() % SPREAD, value))
        .collect();
    (wheel, keys)
}

fn arm_cancel(c: &mut Criterion) {
    let mut group = c.benchmark_group("timer/arm_cancel");
    group.throughput(Throughput::Elements(1));
    for pending in SIZES {
        let mut rng = SplitMix(pending as u64);
        let (mut wheel, _) = prefilled(pending, &mut rng);
        let offsets = random_offsets(&mut rng);
        let mut draw = 0usize;
        group.bench_function(BenchmarkId::from_parameter(pending), |b| {
            b.iter(|| {
                let deadline = wheel.now() + offsets[draw % TABLE_LEN];
                draw = draw.wrapping_add(1);
                let key = wheel.insert(black_box(deadline), BENCH_TIMER);
                black_box(wheel.cancel(black_box(key)))
            });
        });
        assert_eq!(wheel.len(), pending);
    }
    group.finish();
}

fn arm_fire(c: &mut Criterion) {
    let mut group = c.benchmark_group("timer/arm_fire");
    group.throughput(Throughput::Elements(1));
    for pending in SIZES {
        let mut rng = SplitMix(pending as u64 ^ 1);
        let (mut wheel, _) = prefilled(pending, &mut rng);
        let offsets = random_offsets(&mut rng);
        let mut draw = 0usize;
        group.bench_function(BenchmarkId::from_parameter(pending), |b| {
            b.iter(|| {
                let now = wheel.now() + 1;
                wheel.insert(black_box(now), BENCH_TIMER);
                let mut fired_bench_timer = false;
                while let Some((_, value)) = wheel.poll(now) {
                    if value == BENCH_TIMER {
                        fired_bench_timer = true;
                    } else {
                        wheel.insert(now + offsets[draw % TABLE_LEN], value);
                        draw = draw.wrapping_add(1);
                    }
                }
                fired_bench_timer
            });
        });
        assert_eq!(wheel.len(), pending);
    }
    group.finish();
}

fn reset_pending(c: &mut Criterion) {
    let mut group = c.benchmark_group("timer/reset_pending");
    group.throughput(Throughput::Elements(1));
    for pending in SIZES {
        let mut rng = SplitMix(pending as u64 ^ 2);
        let (mut wheel, keys) = prefilled(pending, &mut rng);
        let offsets = random_offsets(&mut rng);
        let mut draw = 0usize;
        group.bench_function(BenchmarkId::from_parameter(pending), |b| {
            b.iter(|| {
                // Drawn inline (a few ns) rather than from a table, so the
                // picks cover all N timers instead of a cache-sized subset.
                let key = keys[(rng.next() % pending as u64) as usize];
                let deadline = wheel.now() + offsets[draw % TABLE_LEN];
                draw = draw.wrapping_add(1);
                black_box(wheel.reset(black_box(key), black_box(deadline)))
            });
        });
        assert_eq!(wheel.len(), pending);
    }
    group.finish();
}

fn cascade(c: &mut Criterion) {
    // The poll that reaches the first tick of a level-3 slot moves every
    // timer in it down a level in one go: N timers due at random ticks in
    // 2^18..2^19, all in level 3, slot 1, as seen from tick 0.
    const SLOT_START: Tick = 1 << 18;
    let mut group = c.benchmark_group("timer/cascade");
    group.sample_size(10);
    for pending in SIZES {
        group.throughput(Throughput::Elements(pending as u64));
        let mut rng = SplitMix(pending as u64 ^ 3);
        group.bench_function(BenchmarkId::from_parameter(pending), |b| {
            b.iter_batched(
                || {
                    // Free the slab entries in random order first, so the
                    // slot's list hops around memory as it does after churn
                    // (a freshly filled slab would be walked sequentially).
                    let mut wheel = Wheel::with_capacity(pending);
                    let mut keys: Vec<TimerKey> = (0..pending as u64)
                        .map(|value| wheel.insert(Tick::MAX, value))
                        .collect();
                    for i in (1..keys.len()).rev() {
                        keys.swap(i, (rng.next() % (i as u64 + 1)) as usize);
                    }
                    for key in keys {
                        wheel.cancel(key);
                    }
                    for value in 0..pending as u64 {
                        wheel.insert(SLOT_START + rng.next() % SLOT_START, value);
                    }
                    wheel
                },
                |mut wheel| {
                    while let Some(fired) = wheel.poll(SLOT_START) {
                        black_box(fired);
                    }
                    wheel
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = arm_cancel, arm_fire, reset_pending, cascade
}
criterion_main!(benches);
