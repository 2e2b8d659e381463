//! Passive health (ejections: doubling, cap, jitter, probation, resets) and active
//! health (fall and rise), in virtual time.

use std::time::{Duration, Instant};

use super::health::jittered;
use super::tests::{fail, first_pick, primary, Seq};
use super::*;

const SECOND: Duration = Duration::from_secs(1);

/// Two members under failover, the default rules (3 failures, 10 s, capped at 5 min).
fn pair() -> Group {
    Group::new(
        [primary(1, 1), primary(2, 1)],
        Balance::Failover,
        Rules::default(),
    )
}

fn ejected(after: u32, for_: Duration) -> Option<Change> {
    Some(Change::Ejected { after, for_ })
}

#[test]
fn three_failed_connects_eject_and_the_next_pick_skips_the_member() {
    let t0 = Instant::now();
    let mut g = pair();
    assert_eq!(g.failed(0, t0, 0), None);
    assert_eq!(g.failed(0, t0, 0), None);
    assert_eq!(g.failures(0), 2);
    assert_eq!(first_pick(&mut g, t0), Some(0), "still up after 2");
    assert_eq!(g.failed(0, t0, 0), ejected(3, 10 * SECOND));
    assert_eq!(first_pick(&mut g, t0), Some(1));
    let until = t0 + 10 * SECOND;
    assert_eq!(g.state(0, t0), Some(State::Ejected { until }));
    assert!(!g.usable(0, t0));
    assert_eq!(g.ejections(0), 1);
    assert_eq!(g.next_change(t0), Some(until));
    // When it ends: on probation, usable, picked again; no change reported yet.
    assert_eq!(g.state(0, until), Some(State::Up));
    assert_eq!(g.next_change(until), None);
    assert_eq!(first_pick(&mut g, until), Some(0));
}

#[test]
fn ejections_in_a_row_double_up_to_the_cap() {
    let mut now = Instant::now();
    let mut g = pair();
    assert_eq!(fail(&mut g, 0, now, 3), ejected(3, 10 * SECOND));
    let mut lengths = Vec::new();
    for _ in 0..7 {
        now = g.next_change(now).expect("ejected");
        match g.failed(0, now, 0) {
            Some(Change::Ejected { after: 1, for_ }) => lengths.push(for_.as_secs()),
            other => panic!("one failure on probation ejects again: {other:?}"),
        }
    }
    assert_eq!(lengths, [20, 40, 80, 160, 300, 300, 300]);
    assert_eq!(g.ejections(0), 8);

    // A cap below the first ejection is raised to it.
    let rules = Rules {
        eject_time: 20 * SECOND,
        eject_cap: 5 * SECOND,
        ..Rules::default()
    };
    let mut g = Group::new([primary(1, 1), primary(2, 1)], Balance::Failover, rules);
    let t0 = Instant::now();
    assert_eq!(fail(&mut g, 0, t0, 3), ejected(3, 20 * SECOND));
    assert_eq!(g.failed(0, t0 + 20 * SECOND, 0), ejected(1, 20 * SECOND));
}

#[test]
fn jitter_draws_three_quarters_to_all_of_the_step() {
    let step = 10 * SECOND;
    assert_eq!(jittered(step, 0), step);
    assert_eq!(jittered(step, 2_500_000_000), step * 3 / 4);
    assert_eq!(
        jittered(step, 2_500_000_001),
        step,
        "reduced modulo the range"
    );
    assert_eq!(jittered(Duration::ZERO, u64::MAX), Duration::ZERO);

    let t0 = Instant::now();
    let mut seq = Seq(7);
    let (mut low, mut high) = (step, Duration::ZERO);
    for _ in 0..1000 {
        let mut g = pair();
        fail(&mut g, 0, t0, 2);
        let Some(Change::Ejected { for_, .. }) = g.failed(0, t0, seq.next()) else {
            panic!("ejected");
        };
        assert!(step * 3 / 4 <= for_ && for_ <= step, "{for_:?}");
        assert_eq!(g.next_change(t0), Some(t0 + for_));
        low = low.min(for_);
        high = high.max(for_);
    }
    assert!(
        low < step * 76 / 100 && high > step * 99 / 100,
        "{low:?}..{high:?}"
    );
}

#[test]
fn a_success_resets_the_failures_and_the_doubling() {
    let t0 = Instant::now();
    let mut g = pair();
    fail(&mut g, 0, t0, 2);
    assert_eq!(g.connected(0), None, "was never down");
    assert_eq!(fail(&mut g, 0, t0, 2), None, "counting from 0 again");
    assert_eq!(g.failures(0), 2);

    assert_eq!(g.failed(0, t0, 0), ejected(3, 10 * SECOND));
    let t1 = t0 + 10 * SECOND;
    assert_eq!(g.failed(0, t1, 0), ejected(1, 20 * SECOND));
    let t2 = t1 + 20 * SECOND;
    assert_eq!(g.connected(0), Some(Change::Up), "a success ends probation");
    assert_eq!(g.failed(0, t2, 0), None, "no longer on probation");
    assert_eq!(
        fail(&mut g, 0, t2, 2),
        ejected(3, 10 * SECOND),
        "doubling reset"
    );
}

#[test]
fn probation_ejects_again_on_one_failure_and_a_success_brings_it_back() {
    let t0 = Instant::now();
    let mut g = pair();
    fail(&mut g, 0, t0, 3);
    let t1 = t0 + 10 * SECOND;
    assert!(g.usable(0, t1), "on probation");
    assert_eq!(g.failed(0, t1, 0), ejected(1, 20 * SECOND));
    assert!(!g.usable(0, t1));
    let t2 = t1 + 20 * SECOND;
    assert_eq!(g.connected(0), Some(Change::Up));
    assert_eq!(g.connected(0), None);
    assert_eq!(g.state(0, t2), Some(State::Up));
}

#[test]
fn a_group_of_one_member_is_never_ejected() {
    let t0 = Instant::now();
    let mut g = Group::new([primary(1, 1)], Balance::RoundRobin, Rules::default());
    assert_eq!(fail(&mut g, 0, t0, 100), None);
    assert_eq!(g.failures(0), 100, "still counted");
    assert_eq!((g.ejections(0), g.next_change(t0)), (0, None));
    assert_eq!(g.state(0, t0), Some(State::Up));
    assert_eq!(first_pick(&mut g, t0), Some(0));
}

#[test]
fn eject_after_zero_never_ejects() {
    let t0 = Instant::now();
    let rules = Rules {
        eject_after: 0,
        ..Rules::default()
    };
    let mut g = Group::new([primary(1, 1), primary(2, 1)], Balance::Failover, rules);
    assert_eq!(fail(&mut g, 0, t0, 100), None);
    assert!(g.usable(0, t0));
    assert_eq!(first_pick(&mut g, t0), Some(0));
}

#[test]
fn fall_failed_checks_mark_down_and_rise_passed_checks_mark_up() {
    let t0 = Instant::now();
    let rules = Rules {
        fall: 3,
        rise: 2,
        ..Rules::default()
    };
    let mut g = Group::new([primary(1, 1), primary(2, 1)], Balance::Failover, rules);
    assert_eq!(g.check_failed(0), None);
    assert_eq!(g.check_failed(0), None);
    assert_eq!(g.check_passed(0, t0), None, "a pass starts the count over");
    assert_eq!(g.check_failed(0), None);
    assert_eq!(g.check_failed(0), None);
    assert_eq!(g.check_failed(0), Some(Change::Down));
    assert_eq!(g.state(0, t0), Some(State::Down));
    assert_eq!(first_pick(&mut g, t0), Some(1));
    assert_eq!(g.check_failed(0), None, "already down");
    assert_eq!(g.connected(0), None, "only checks lift a down");
    assert_eq!(g.check_passed(0, t0), None);
    assert_eq!(g.check_failed(0), None, "a failure starts the rise over");
    assert_eq!(g.check_passed(0, t0), None);
    assert_eq!(g.check_passed(0, t0), Some(Change::Up));
    assert_eq!(g.state(0, t0), Some(State::Up));
    assert_eq!(first_pick(&mut g, t0), Some(0));

    // Zero counts as one.
    let rules = Rules {
        fall: 0,
        rise: 0,
        ..Rules::default()
    };
    g.set_rules(Balance::Failover, rules);
    assert_eq!(g.check_failed(1), Some(Change::Down));
    assert_eq!(g.check_passed(1, t0), Some(Change::Up));
}

#[test]
fn a_passed_check_ends_probation_but_not_a_running_ejection() {
    let t0 = Instant::now();
    let mut g = pair();
    fail(&mut g, 0, t0, 3);
    assert_eq!(g.check_passed(0, t0 + SECOND), None);
    assert!(!g.usable(0, t0 + SECOND), "still ejected");
    let t1 = t0 + 10 * SECOND;
    assert_eq!(g.check_passed(0, t1), Some(Change::Up), "probation over");
    assert_eq!(g.failed(0, t1, 0), None, "one failure no longer ejects");
    assert_eq!(
        fail(&mut g, 0, t1, 2),
        ejected(3, 10 * SECOND),
        "doubling reset"
    );
}

#[test]
fn down_and_ejected_shows_down_and_comes_up_only_when_both_end() {
    let t0 = Instant::now();
    let mut g = pair();
    fail(&mut g, 0, t0, 3);
    for _ in 0..3 {
        g.check_failed(0);
    }
    assert_eq!(g.state(0, t0), Some(State::Down));
    assert_eq!(g.connected(0), None, "ejection over, still down");
    assert_eq!(g.check_passed(0, t0), None);
    assert_eq!(g.check_passed(0, t0), Some(Change::Up));
}

#[test]
fn next_change_is_the_earliest_running_ejection_end() {
    let t0 = Instant::now();
    let specs = [primary(1, 1), primary(2, 1), primary(3, 1)];
    let mut g = Group::new(specs, Balance::Failover, Rules::default());
    assert_eq!(g.next_change(t0), None);
    fail(&mut g, 1, t0 + 3 * SECOND, 3);
    fail(&mut g, 2, t0, 3);
    assert_eq!(g.next_change(t0), Some(t0 + 10 * SECOND));
    assert_eq!(g.next_change(t0 + 10 * SECOND), Some(t0 + 13 * SECOND));
    assert_eq!(g.next_change(t0 + 13 * SECOND), None);
}
