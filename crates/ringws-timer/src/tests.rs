use super::*;

/// Drains `poll(now)` and returns the fired values, sorted.
fn drain<T: Ord>(wheel: &mut Wheel<T>, now: Tick) -> Vec<T> {
    let mut fired = Vec::new();
    while let Some((_, value)) = wheel.poll(now) {
        fired.push(value);
    }
    fired.sort();
    fired
}

/// Deadlines on and around every level boundary, the span and the top of
/// the `u64` range.
fn boundary_deadlines() -> Vec<Tick> {
    let mut deadlines = vec![0, 1, 2, 62, 63];
    for level in 1..=LEVELS as u32 {
        let boundary = 1u64 << (SLOT_BITS * level);
        deadlines.extend([boundary - 1, boundary, boundary + 1, boundary * 3 + 7]);
    }
    deadlines.extend([
        WHEEL_SPAN * 5 - 1,
        WHEEL_SPAN * 5 + 1,
        u64::MAX - WHEEL_SPAN,
        u64::MAX - 1,
        u64::MAX,
    ]);
    deadlines
}

#[test]
fn level_for_table() {
    let cases: &[(Tick, Tick, usize)] = &[
        (0, 0, 0),
        (0, 1, 0),
        (0, 63, 0),
        (0, 64, 1),
        (0, 4095, 1),
        (0, 4096, 2),
        (0, (1 << 18) - 1, 2),
        (0, 1 << 18, 3),
        (0, 1 << 24, 4),
        (0, 1 << 30, 5),
        (0, (1 << 36) - 1, 5),
        (0, 1 << 36, 6),
        (0, 1 << 42, 7),
        (0, 1 << 48, 8),
        (0, 1 << 54, 9),
        (0, WHEEL_SPAN - 1, 9),
        // Beyond the span: clamped to the top level.
        (0, WHEEL_SPAN, LEVELS - 1),
        (0, u64::MAX, LEVELS - 1),
        // The level depends on the highest differing digit, not the distance:
        // one tick across a 64-tick boundary is level 1 ...
        (63, 64, 1),
        // ... one tick across a 4096-tick boundary is level 2 ...
        (4095, 4096, 2),
        // ... and a near deadline inside the same 64-block is level 0.
        (64, 127, 0),
        (1000, 1000, 0),
        (WHEEL_SPAN - 1, WHEEL_SPAN, LEVELS - 1),
        (u64::MAX - 1, u64::MAX, 0),
    ];
    for &(elapsed, deadline, level) in cases {
        assert_eq!(
            level_for(elapsed, deadline),
            level,
            "level_for({elapsed}, {deadline})"
        );
    }
}

#[test]
fn slot_for_table() {
    let cases: &[(Tick, usize, usize)] = &[
        (0, 0, 0),
        (5, 0, 5),
        (63, 0, 63),
        (64, 0, 0),
        (64, 1, 1),
        (100, 1, 1),
        (4095, 1, 63),
        (4096, 1, 0),
        (4096, 2, 1),
        (3 << 30, 5, 3),
        (63 << 54, 9, 63),
        (WHEEL_SPAN, 9, 0),
        (WHEEL_SPAN + (7 << 54), 9, 7),
        (u64::MAX, 0, 63),
        (u64::MAX, 9, 63),
        // Digit 10 holds the top four bits of a u64.
        (u64::MAX, 10, 15),
        // Digits beyond the u64 are zero.
        (u64::MAX, 11, 0),
        (u64::MAX, usize::MAX, 0),
    ];
    for &(deadline, level, slot) in cases {
        assert_eq!(
            slot_for(deadline, level),
            slot,
            "slot_for({deadline}, {level})"
        );
    }
}

#[test]
fn new_and_default_start_empty_at_tick_zero() {
    let wheel: Wheel<u8> = Wheel::new();
    assert_eq!(wheel.now(), 0);
    assert!(wheel.is_empty());
    assert_eq!(wheel.len(), 0);
    assert_eq!(wheel.next_expiry(), None);

    let mut wheel: Wheel<u8> = Wheel::default();
    assert_eq!(wheel.poll(10), None);
    assert_eq!(wheel.now(), 10);

    let wheel: Wheel<u8> = Wheel::with_capacity(1000);
    assert!(wheel.entries.capacity() >= 1000);
    assert!(wheel.is_empty());
}

#[test]
fn fires_at_its_deadline_and_not_a_tick_before() {
    for start in [0, 1, 63, 64, 4095, 1 << 40, u64::MAX - 1_000_000] {
        for deadline in boundary_deadlines() {
            if deadline <= start {
                continue;
            }
            let mut wheel = Wheel::new();
            assert_eq!(wheel.poll(start), None);
            let key = wheel.insert(deadline, deadline);
            assert_eq!(
                wheel.poll(deadline - 1),
                None,
                "start {start}, deadline {deadline} fired early"
            );
            assert_eq!(wheel.len(), 1);
            assert_eq!(
                wheel.poll(deadline),
                Some((key, deadline)),
                "start {start}, deadline {deadline} not fired on time"
            );
            assert_eq!(wheel.poll(deadline), None);
            assert!(wheel.is_empty());
        }
    }
}

#[test]
fn fires_each_timer_on_its_own_tick_when_polled_every_tick() {
    let mut wheel = Wheel::new();
    // Every deadline in 1..=5000 once, plus a second timer on a few of them.
    for deadline in 1..=5000u64 {
        wheel.insert(deadline, deadline);
    }
    for deadline in [64, 4096, 4097] {
        wheel.insert(deadline, deadline);
    }
    for now in 1..=5000u64 {
        let expected = if matches!(now, 64 | 4096 | 4097) {
            vec![now, now]
        } else {
            vec![now]
        };
        assert_eq!(drain(&mut wheel, now), expected, "tick {now}");
    }
    assert!(wheel.is_empty());
}

#[test]
fn a_jump_fires_everything_due_and_nothing_else() {
    let mut wheel = Wheel::new();
    let deadlines = boundary_deadlines();
    for &deadline in &deadlines {
        wheel.insert(deadline, deadline);
    }
    let mut previous: Option<Tick> = None;
    for now in [
        0,
        100,
        1 << 20,
        1 << 45,
        WHEEL_SPAN * 7,
        u64::MAX - 1,
        u64::MAX,
    ] {
        let mut expected: Vec<Tick> = deadlines
            .iter()
            .copied()
            .filter(|&d| previous.is_none_or(|p| d > p) && d <= now)
            .collect();
        expected.sort_unstable();
        assert_eq!(drain(&mut wheel, now), expected, "jump to {now}");
        previous = Some(now);
    }
    assert!(wheel.is_empty());
}

#[test]
fn past_deadlines_fire_on_the_next_poll() {
    let mut wheel = Wheel::new();
    assert_eq!(wheel.poll(1000), None);
    wheel.insert(10, "past");
    wheel.insert(1000, "now");
    wheel.insert(1001, "future");
    // Due timers make next_expiry report a tick no later than their deadline.
    assert_eq!(wheel.next_expiry(), Some(10));
    // A smaller `now` is treated as the current one.
    assert_eq!(drain(&mut wheel, 3), vec!["now", "past"]);
    assert_eq!(wheel.now(), 1000);
    assert_eq!(wheel.next_expiry(), Some(1001));
    assert_eq!(drain(&mut wheel, 1001), vec!["future"]);
}

#[test]
fn next_expiry_is_exact_in_level_zero_and_a_slot_start_above() {
    let mut wheel = Wheel::new();
    wheel.insert(40, ());
    assert_eq!(wheel.next_expiry(), Some(40));

    let mut wheel = Wheel::new();
    wheel.insert(100, ());
    // Level 1, slot 1: covers ticks 64..128.
    assert_eq!(wheel.next_expiry(), Some(64));
    assert_eq!(wheel.poll(64), None);
    // Cascaded into level 0.
    assert_eq!(wheel.next_expiry(), Some(100));
    assert!(wheel.poll(100).is_some());
    assert_eq!(wheel.next_expiry(), None);
}

#[test]
fn sleeping_until_next_expiry_reaches_each_timer_in_a_bounded_number_of_wakeups() {
    for start in [0, 5, 1 << 33, u64::MAX - (1 << 20)] {
        for deadline in boundary_deadlines() {
            if deadline <= start {
                continue;
            }
            let mut wheel = Wheel::new();
            wheel.poll(start);
            wheel.insert(deadline, ());
            // One wakeup per level on the way down, plus one per span crossed
            // by a clamped timer.
            let max_wakeups = LEVELS + ((deadline - start) / WHEEL_SPAN) as usize + 1;
            let mut wakeups = 0;
            loop {
                let wake_at = wheel.next_expiry().unwrap();
                assert!(wake_at > wheel.now(), "next_expiry after a drain <= now");
                assert!(wake_at <= deadline, "next_expiry later than the deadline");
                wakeups += 1;
                assert!(wakeups <= max_wakeups, "start {start}, deadline {deadline}");
                if wheel.poll(wake_at).is_some() {
                    assert_eq!(wake_at, deadline);
                    break;
                }
            }
        }
    }
}

#[test]
fn cancel_returns_the_value_once_and_stale_keys_do_not_reach_reused_entries() {
    let mut wheel = Wheel::new();
    let first = wheel.insert(50, "first");
    assert_eq!(wheel.get(first), Some(&"first"));
    assert_eq!(wheel.deadline(first), Some(50));
    assert_eq!(wheel.cancel(first), Some("first"));
    assert_eq!(wheel.cancel(first), None);
    assert!(wheel.is_empty());

    // The freed entry is reused under a new generation.
    let second = wheel.insert(50, "second");
    assert_eq!(second.index, first.index);
    assert_ne!(second, first);
    assert_eq!(wheel.cancel(first), None);
    assert!(!wheel.reset(first, 1));
    assert_eq!(wheel.get(first), None);
    assert_eq!(wheel.get_mut(first), None);
    assert_eq!(wheel.deadline(first), None);
    assert_eq!(wheel.len(), 1);
    assert_eq!(wheel.poll(49), None);
    assert_eq!(wheel.poll(50), Some((second, "second")));

    // A fired key is stale too, including after its entry is reused.
    let third = wheel.insert(60, "third");
    assert_eq!(third.index, second.index);
    assert_eq!(wheel.cancel(second), None);
    assert!(!wheel.reset(second, 55));
    assert_eq!(wheel.deadline(third), Some(60));
    assert_eq!(wheel.poll(60), Some((third, "third")));
}

#[test]
fn keys_from_beyond_the_slab_are_stale() {
    let mut wheel: Wheel<u8> = Wheel::new();
    let key = TimerKey {
        index: 7,
        generation: 0,
    };
    assert_eq!(wheel.get(key), None);
    assert_eq!(wheel.cancel(key), None);
    assert!(!wheel.reset(key, 3));
}

#[test]
fn cancel_from_the_ready_list_keeps_its_order_intact() {
    let mut wheel = Wheel::new();
    wheel.poll(100);
    let a = wheel.insert(1, 'a');
    let b = wheel.insert(2, 'b');
    let c = wheel.insert(3, 'c');
    let d = wheel.insert(4, 'd');
    assert_eq!(wheel.cancel(b), Some('b')); // middle
    assert_eq!(wheel.cancel(d), Some('d')); // tail
    let e = wheel.insert(5, 'e'); // appended after the new tail
    assert_eq!(wheel.cancel(a), Some('a')); // head
    assert_eq!(wheel.poll(100), Some((c, 'c')));
    assert_eq!(wheel.poll(100), Some((e, 'e')));
    assert_eq!(wheel.poll(100), None);
    assert!(wheel.is_empty());
}

#[test]
fn cancel_from_a_shared_slot_leaves_the_neighbours_armed() {
    let mut wheel = Wheel::new();
    // All in level 1, slot 1.
    let keys: Vec<_> = (64..72).map(|d| wheel.insert(d, d)).collect();
    for &key in keys.iter().step_by(2) {
        assert!(wheel.cancel(key).is_some());
    }
    assert_eq!(drain(&mut wheel, 100), vec![65, 67, 69, 71]);
}

#[test]
fn reset_moves_a_timer_later_earlier_and_out_of_the_ready_list() {
    let mut wheel = Wheel::new();
    let key = wheel.insert(10, "t");
    assert!(wheel.reset(key, 5000));
    assert_eq!(wheel.deadline(key), Some(5000));
    assert_eq!(wheel.poll(4999), None);
    assert!(wheel.reset(key, 5001));
    assert_eq!(wheel.poll(5000), None);
    assert!(wheel.reset(key, 10));
    // Already due: fires on the next poll.
    assert_eq!(wheel.next_expiry(), Some(10));
    assert!(wheel.reset(key, 6000));
    assert_eq!(wheel.poll(5999), None);
    assert_eq!(wheel.poll(6000), Some((key, "t")));
    assert!(!wheel.reset(key, 7000));
    assert_eq!(wheel.poll(7000), None);
}

#[test]
fn reset_within_one_slot_fires_at_the_new_deadline() {
    let mut wheel = Wheel::new();
    // Level 2, slot 1 covers ticks 4096..8192.
    let moved = wheel.insert(5000, "moved");
    let neighbour = wheel.insert(6000, "neighbour");
    let list = |wheel: &Wheel<&str>, key: TimerKey| match wheel.entries[key.index as usize] {
        Entry::Pending { list, .. } => list,
        Entry::Vacant { .. } => unreachable!("pending timer in a vacant entry"),
    };
    let before = list(&wheel, moved);
    assert!(wheel.reset(moved, 7000));
    assert_eq!(list(&wheel, moved), before, "stayed in its slot");
    assert!(wheel.reset(moved, 4500));
    assert_eq!(wheel.poll(4499), None);
    assert_eq!(wheel.poll(4500), Some((moved, "moved")));
    assert_eq!(wheel.poll(5999), None);
    assert_eq!(wheel.poll(6000), Some((neighbour, "neighbour")));
}

#[test]
fn timers_armed_in_the_middle_of_a_drain_are_honoured() {
    let mut wheel = Wheel::new();
    for deadline in [10, 700, 9000] {
        wheel.insert(deadline, deadline);
    }
    let (_, first) = wheel.poll(10_000).unwrap();
    // Behind the wheel's position, inside the drained range, and beyond it.
    wheel.insert(5, 5);
    wheel.insert(8000, 8000);
    wheel.insert(10_001, 10_001);
    let mut fired = vec![first];
    fired.extend(drain(&mut wheel, 10_000));
    fired.sort_unstable();
    assert_eq!(fired, vec![5, 10, 700, 8000, 9000]);
    assert_eq!(wheel.len(), 1);
    assert_eq!(wheel.next_expiry(), Some(10_001));
}

#[test]
fn get_mut_changes_the_value_returned_on_fire() {
    let mut wheel = Wheel::new();
    let key = wheel.insert(3, 1u32);
    *wheel.get_mut(key).unwrap() += 41;
    assert_eq!(wheel.poll(3), Some((key, 42)));
}

#[test]
fn clamped_timers_fire_on_time_across_many_spans() {
    let mut wheel = Wheel::new();
    let far = WHEEL_SPAN * 15 + 12_345;
    let near = WHEEL_SPAN / 2;
    let far_key = wheel.insert(far, "far");
    let near_key = wheel.insert(near, "near");
    assert_eq!(wheel.poll(near - 1), None);
    assert_eq!(wheel.poll(near), Some((near_key, "near")));
    assert_eq!(wheel.poll(far - 1), None);
    assert_eq!(wheel.deadline(far_key), Some(far));
    assert_eq!(wheel.poll(far), Some((far_key, "far")));
}

#[test]
fn a_pending_timer_costs_32_bytes_for_a_u64() {
    // What the crate documentation promises.
    #[cfg(target_pointer_width = "64")]
    assert_eq!(Wheel::<u64>::BYTES_PER_TIMER, 32);
    assert_eq!(Wheel::<u64>::BYTES_PER_TIMER, mem::size_of::<Entry<u64>>());
    assert!(
        mem::size_of::<Wheel<u64>>() < 3 * 1024,
        "fixed part under 3 KiB"
    );
}

#[test]
fn debug_shows_time_and_length() {
    let mut wheel = Wheel::new();
    wheel.insert(9, ());
    let shown = format!("{wheel:?}");
    assert!(shown.contains("now: 0"), "{shown}");
    assert!(shown.contains("len: 1"), "{shown}");
}
