//! The timer wheel against a model: arbitrary sequences of insert, cancel,
//! reset, get and poll (full and partial drains, small steps and huge jumps,
//! deadlines in the past and up to `u64::MAX`). The model keeps pending
//! timers in a `BTreeMap` and fires, on `poll(now)`, exactly those with
//! `deadline <= now`; any difference panics.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringws_timer::{Tick, TimerKey, Wheel};

#[derive(Arbitrary, Debug)]
enum When {
    Past(u16),
    Soon(u8),
    After(u32),
    FarAfter(u64),
    At(u64),
}

#[derive(Arbitrary, Debug)]
enum Advance {
    By(u16),
    ByMuch(u64),
    To(u64),
    ToNextExpiry,
    ToEarliestDeadline,
    ToJustBeforeEarliestDeadline,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Insert(When),
    Cancel(u16),
    Reset(u16, When),
    Get(u16),
    Drain(Advance),
    PollSome(Advance, u8),
}

#[derive(Default)]
struct Model {
    /// Pending timers by value (a serial number): key and deadline.
    pending: BTreeMap<u64, (TimerKey, Tick)>,
    /// Every key issued, live or stale, with its value.
    issued: Vec<(TimerKey, u64)>,
    next_value: u64,
}

impl Model {
    fn earliest_deadline(&self) -> Option<Tick> {
        self.pending.values().map(|&(_, deadline)| deadline).min()
    }

    fn pick(&self, pick: u16) -> Option<(TimerKey, u64)> {
        if self.issued.is_empty() {
            return None;
        }
        Some(self.issued[usize::from(pick) % self.issued.len()])
    }

    /// Checks one result of `poll(now)` and removes the fired timer.
    fn fired(&mut self, now: Tick, fired: Option<(TimerKey, u64)>) -> bool {
        let Some((key, value)) = fired else {
            return false;
        };
        let (expected_key, deadline) = self
            .pending
            .remove(&value)
            .expect("fired a timer that is not pending");
        assert_eq!(key, expected_key, "fired under the wrong key");
        assert!(
            deadline <= now,
            "fired early: deadline {deadline} > now {now}"
        );
        true
    }
}

fn resolve(when: &When, now: Tick) -> Tick {
    match *when {
        When::Past(back) => now.saturating_sub(u64::from(back)),
        When::Soon(ahead) => now.saturating_add(u64::from(ahead)),
        When::After(ahead) => now.saturating_add(u64::from(ahead)),
        When::FarAfter(ahead) => now.saturating_add(ahead),
        When::At(tick) => tick,
    }
}

fn target(advance: &Advance, wheel: &Wheel<u64>, model: &Model) -> Tick {
    let now = wheel.now();
    let to = match *advance {
        Advance::By(ticks) => now.saturating_add(u64::from(ticks)),
        Advance::ByMuch(ticks) => now.saturating_add(ticks),
        Advance::To(tick) => tick,
        Advance::ToNextExpiry => wheel.next_expiry().unwrap_or(now),
        Advance::ToEarliestDeadline => model.earliest_deadline().unwrap_or(now),
        Advance::ToJustBeforeEarliestDeadline => model
            .earliest_deadline()
            .map_or(now, |deadline| deadline.saturating_sub(1)),
    };
    to.max(now)
}

fuzz_target!(|ops: Vec<Op>| {
    let mut wheel: Wheel<u64> = Wheel::new();
    let mut model = Model::default();
    for op in &ops {
        let now = wheel.now();
        match op {
            Op::Insert(when) => {
                let value = model.next_value;
                model.next_value += 1;
                let deadline = resolve(when, now);
                let key = wheel.insert(deadline, value);
                assert!(model.pending.values().all(|&(live, _)| live != key));
                model.pending.insert(value, (key, deadline));
                model.issued.push((key, value));
            }
            Op::Cancel(pick) => {
                if let Some((key, value)) = model.pick(*pick) {
                    let expected = model.pending.remove(&value).map(|_| value);
                    assert_eq!(wheel.cancel(key), expected);
                }
            }
            Op::Reset(pick, when) => {
                if let Some((key, value)) = model.pick(*pick) {
                    let deadline = resolve(when, now);
                    let live = model.pending.get_mut(&value);
                    let was_live = live.is_some();
                    if let Some(entry) = live {
                        entry.1 = deadline;
                    }
                    assert_eq!(wheel.reset(key, deadline), was_live);
                }
            }
            Op::Get(pick) => {
                if let Some((key, value)) = model.pick(*pick) {
                    let deadline = model.pending.get(&value).map(|&(_, deadline)| deadline);
                    assert_eq!(wheel.get(key).copied(), deadline.map(|_| value));
                    assert_eq!(wheel.deadline(key), deadline);
                }
            }
            Op::Drain(advance) => {
                let to = target(advance, &wheel, &model);
                while model.fired(to, wheel.poll(to)) {}
                assert_eq!(wheel.now(), to);
                if let Some(earliest) = model.earliest_deadline() {
                    assert!(earliest > to, "timer due at {earliest} not fired by {to}");
                }
                if let Some(expiry) = wheel.next_expiry() {
                    assert!(
                        expiry > to,
                        "next_expiry {expiry} <= now {to} after a drain"
                    );
                }
            }
            Op::PollSome(advance, polls) => {
                let to = target(advance, &wheel, &model);
                for _ in 0..*polls % 8 {
                    if !model.fired(to, wheel.poll(to)) {
                        break;
                    }
                }
            }
        }
        assert_eq!(wheel.len(), model.pending.len());
        match (wheel.next_expiry(), model.earliest_deadline()) {
            (None, None) => {}
            (Some(expiry), Some(earliest)) => assert!(expiry <= earliest),
            (wheel_says, model_says) => {
                panic!("next_expiry {wheel_says:?}, earliest deadline {model_says:?}")
            }
        }
    }
    // The rest fires exactly on time.
    while let Some(earliest) = model.earliest_deadline() {
        if earliest > wheel.now() {
            assert_eq!(wheel.poll(earliest - 1), None, "fired early");
        }
        let to = earliest.max(wheel.now());
        while model.fired(to, wheel.poll(to)) {}
        assert!(model.earliest_deadline().is_none_or(|next| next > to));
    }
    assert!(wheel.is_empty());
});
