//! The wheel against a model that keeps pending timers in a `BTreeMap` and
//! fires, on `poll(now)`, exactly those with `deadline <= now`.
//!
//! Random sequences of insert, cancel, reset, get and poll (full drains and
//! partial ones), with time moving in small steps, big jumps, to the next
//! expiry and to the very end of the `u64` range, and deadlines in the past,
//! near, far, beyond the wheel's span and at `u64::MAX`.

use std::collections::BTreeMap;

use proptest::prelude::*;
use ringws_timer::{Tick, TimerKey, Wheel, WHEEL_SPAN};

#[derive(Debug, Clone)]
enum When {
    /// This many ticks before `now` (saturating at 0).
    Past(u64),
    /// This many ticks after `now` (saturating at `u64::MAX`).
    After(u64),
    Max,
}

#[derive(Debug, Clone)]
enum Advance {
    By(u64),
    ToNextExpiry,
    /// To the earliest pending deadline minus this much (0 or 1).
    ToEarliestDeadlineMinus(u64),
    /// To `u64::MAX` minus this much.
    ToEndMinus(u64),
}

#[derive(Debug, Clone)]
enum Op {
    Insert(When),
    Cancel(usize),
    Reset(usize, When),
    Get(usize),
    /// Drain `poll` until it returns `None`.
    Drain(Advance),
    /// Call `poll` at most this many times, leaving the drain unfinished.
    PollSome(Advance, u8),
}

fn when() -> impl Strategy<Value = When> {
    prop_oneof![
        2 => (0u64..200).prop_map(When::Past),
        6 => (0u64..130).prop_map(When::After),
        4 => (0u64..300_000).prop_map(When::After),
        2 => (0u64..1 << 40).prop_map(When::After),
        1 => (WHEEL_SPAN - 2..WHEEL_SPAN * 15).prop_map(When::After),
        1 => Just(When::Max),
    ]
}

fn advance() -> impl Strategy<Value = Advance> {
    prop_oneof![
        6 => (0u64..4).prop_map(Advance::By),
        4 => (0u64..5_000).prop_map(Advance::By),
        2 => (0u64..1 << 42).prop_map(Advance::By),
        1 => (0u64..WHEEL_SPAN * 15).prop_map(Advance::By),
        3 => Just(Advance::ToNextExpiry),
        3 => (0u64..=1).prop_map(Advance::ToEarliestDeadlineMinus),
        1 => (0u64..300).prop_map(Advance::ToEndMinus),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => when().prop_map(Op::Insert),
        3 => any::<usize>().prop_map(Op::Cancel),
        3 => (any::<usize>(), when()).prop_map(|(pick, when)| Op::Reset(pick, when)),
        1 => any::<usize>().prop_map(Op::Get),
        4 => advance().prop_map(Op::Drain),
        1 => (advance(), 0u8..4).prop_map(|(advance, polls)| Op::PollSome(advance, polls)),
    ]
}

/// What the wheel should hold: per live key, its deadline and value. Values
/// are unique serial numbers, so a fired value names exactly one timer.
#[derive(Default)]
struct Model {
    pending: BTreeMap<u64, (TimerKey, Tick)>,
    /// Every key ever issued with its value, live or stale.
    issued: Vec<(TimerKey, u64)>,
    next_value: u64,
}

impl Model {
    fn earliest_deadline(&self) -> Option<Tick> {
        self.pending.values().map(|&(_, deadline)| deadline).min()
    }

    fn deadline_of(&self, value: u64) -> Option<Tick> {
        self.pending.get(&value).map(|&(_, deadline)| deadline)
    }
}

fn resolve(when: &When, now: Tick) -> Tick {
    match *when {
        When::Past(back) => now.saturating_sub(back),
        When::After(ahead) => now.saturating_add(ahead),
        When::Max => u64::MAX,
    }
}

fn target(advance: &Advance, wheel: &Wheel<u64>, model: &Model) -> Tick {
    let now = wheel.now();
    match *advance {
        Advance::By(ticks) => now.saturating_add(ticks),
        Advance::ToNextExpiry => wheel.next_expiry().unwrap_or(now),
        Advance::ToEarliestDeadlineMinus(back) => model
            .earliest_deadline()
            .map_or(now, |deadline| deadline.saturating_sub(back)),
        Advance::ToEndMinus(back) => u64::MAX - back,
    }
}

/// Checks one `poll(now)` result against the model and removes the timer
/// from it.
fn check_fired(
    model: &mut Model,
    now: Tick,
    fired: Option<(TimerKey, u64)>,
) -> Result<bool, TestCaseError> {
    let Some((key, value)) = fired else {
        return Ok(false);
    };
    let deadline = model.deadline_of(value);
    prop_assert!(deadline.is_some(), "fired a timer that is not pending");
    let deadline = deadline.unwrap_or_default();
    prop_assert!(
        deadline <= now,
        "fired early: deadline {deadline} > now {now}"
    );
    prop_assert_eq!(model.pending[&value].0, key, "fired under the wrong key");
    model.pending.remove(&value);
    Ok(true)
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut wheel: Wheel<u64> = Wheel::new();
    let mut model = Model::default();
    for op in ops {
        let now = wheel.now();
        match op {
            Op::Insert(when) => {
                let value = model.next_value;
                model.next_value += 1;
                let deadline = resolve(when, now);
                let key = wheel.insert(deadline, value);
                prop_assert!(
                    model.pending.values().all(|&(live, _)| live != key),
                    "a new key equals a live key"
                );
                model.pending.insert(value, (key, deadline));
                model.issued.push((key, value));
            }
            Op::Cancel(pick) => {
                if model.issued.is_empty() {
                    continue;
                }
                let (key, value) = model.issued[pick % model.issued.len()];
                let expected = model.pending.remove(&value).map(|_| value);
                prop_assert_eq!(wheel.cancel(key), expected);
            }
            Op::Reset(pick, when) => {
                if model.issued.is_empty() {
                    continue;
                }
                let (key, value) = model.issued[pick % model.issued.len()];
                let deadline = resolve(when, now);
                let live = model.pending.get_mut(&value);
                let was_live = live.is_some();
                if let Some(entry) = live {
                    entry.1 = deadline;
                }
                prop_assert_eq!(wheel.reset(key, deadline), was_live);
            }
            Op::Get(pick) => {
                if model.issued.is_empty() {
                    continue;
                }
                let (key, value) = model.issued[pick % model.issued.len()];
                let live = model.pending.contains_key(&value);
                prop_assert_eq!(wheel.get(key).copied(), live.then_some(value));
                prop_assert_eq!(wheel.deadline(key), model.deadline_of(value));
            }
            Op::Drain(advance) => {
                let to = target(advance, &wheel, &model).max(now);
                // Bounded: each iteration removes a timer from the model.
                while check_fired(&mut model, to, wheel.poll(to))? {}
                prop_assert_eq!(wheel.now(), to);
                if let Some(earliest) = model.earliest_deadline() {
                    prop_assert!(earliest > to, "timer due at {earliest} not fired by {to}");
                }
                // Sleeping until next_expiry after a drain never spins.
                if let Some(expiry) = wheel.next_expiry() {
                    prop_assert!(
                        expiry > to,
                        "next_expiry {expiry} <= now {to} after a drain"
                    );
                }
            }
            Op::PollSome(advance, polls) => {
                let to = target(advance, &wheel, &model).max(now);
                for _ in 0..*polls {
                    if !check_fired(&mut model, to, wheel.poll(to))? {
                        break;
                    }
                }
            }
        }
        prop_assert_eq!(wheel.len(), model.pending.len());
        prop_assert_eq!(wheel.is_empty(), model.pending.is_empty());
        match (wheel.next_expiry(), model.earliest_deadline()) {
            (None, None) => {}
            (Some(expiry), Some(earliest)) => prop_assert!(
                expiry <= earliest,
                "next_expiry {expiry} later than the earliest deadline {earliest}"
            ),
            (wheel_says, model_says) => {
                prop_assert!(false, "next_expiry {wheel_says:?}, earliest {model_says:?}")
            }
        }
    }
    // Every key ever issued, live or stale, still answers like the model.
    for &(key, value) in &model.issued {
        prop_assert_eq!(wheel.deadline(key), model.deadline_of(value));
    }
    // And the rest fires exactly on time.
    while let Some(earliest) = model.earliest_deadline() {
        // Not a tick early (unless already due).
        if earliest > wheel.now() {
            prop_assert_eq!(wheel.poll(earliest - 1), None);
        }
        let to = earliest.max(wheel.now());
        while check_fired(&mut model, to, wheel.poll(to))? {}
        prop_assert!(model.earliest_deadline().is_none_or(|next| next > to));
    }
    prop_assert!(wheel.is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn wheel_fires_exactly_the_models_timers(ops in prop::collection::vec(op(), 1..200)) {
        run(&ops)?;
    }
}

/// Many timers sharing few slots, so cancels and resets unlink from the
/// middle of long lists and entries are reused often.
#[test]
fn dense_workload_matches_the_model() {
    let mut ops = Vec::new();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let roll = next();
        let pick = next() as usize;
        ops.push(match roll % 10 {
            0..=3 => Op::Insert(When::After(next() % 300)),
            4 | 5 => Op::Cancel(pick),
            6 | 7 => Op::Reset(pick, When::After(next() % 5000)),
            8 => Op::Drain(Advance::By(next() % 40)),
            _ => Op::PollSome(Advance::By(next() % 10), (next() % 4) as u8),
        });
    }
    run(&ops).unwrap();
}
