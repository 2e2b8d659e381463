//! The pool: classes, the budget, spares and their trimming, kernel pipes.

use std::time::Instant;

use super::*;
use crate::core::scripted::ScriptedPipe;

const K: usize = 1024;

#[test]
fn classes_step_by_four_and_end_at_the_largest() {
    assert_eq!(
        Classes::new(16 * K, 256 * K).sizes(),
        [16 * K, 64 * K, 256 * K]
    );
    assert_eq!(
        Classes::new(16 * K, 100 * K).sizes(),
        [16 * K, 64 * K, 100 * K]
    );
    assert_eq!(Classes::new(16 * K, 16 * K).sizes(), [16 * K]);
    // Never more than MAX_CLASSES: the last one is the largest.
    assert_eq!(Classes::new(1, 1 << 20).sizes(), [1, 4, 16, 1 << 20]);
    assert_eq!(Classes::new(16 * K, 256 * K).size(9), 256 * K);
}

#[test]
fn lends_up_to_the_budget_then_refuses() {
    let mut p = Pool::new(16, 2);
    let a = p.take(0).expect("first");
    let _b = p.take(0).expect("second");
    assert!(p.take(0).is_none());
    assert!(!p.can_lend());
    assert_eq!(p.lent(), 2);
    p.give(a);
    assert_eq!(p.lent(), 1);
    assert!(p.take(0).is_some());
}

#[test]
fn given_back_buffers_are_reused() {
    let mut p = Pool::new(8, 4);
    let a = p.take(0).expect("take");
    let addr = a.as_ptr();
    p.give(a);
    let b = p.take(0).expect("take again");
    assert_eq!(b.as_ptr(), addr);
    assert_eq!(b.len(), 8);
}

/// ```text
///   budget 512 KiB:  [256K: refused, over half] -> [64K] lent instead
/// ```
#[test]
fn a_large_class_is_lent_only_within_half_the_budget_else_a_smaller_one() {
    let mut p = Pool::with_classes(Classes::new(16 * K, 256 * K), 512 * K);
    let big = p.take(2).expect("256 KiB within half");
    assert_eq!(big.len(), 256 * K);
    let next = p.take(2).expect("a smaller one");
    assert_eq!(next.len(), 16 * K, "64 KiB would pass half the budget");
    // The smallest class may use the whole budget.
    let mut small = Vec::new();
    while let Some(b) = p.take(0) {
        small.push(b);
    }
    assert_eq!(p.lent_bytes(), 512 * K);
    assert_eq!(small.len(), (512 - 256 - 16) / 16);
    p.give(big);
    // Half the budget is still out in small buffers: a small one again.
    assert_eq!(p.take(1).map(|b| b.len()), Some(16 * K));
    for b in small.drain(..8) {
        p.give(b);
    }
    assert_eq!(p.take(1).map(|b| b.len()), Some(64 * K));
}

#[test]
fn spares_beyond_the_floor_are_freed_once_unused_for_an_interval() {
    let size = 64 * K;
    let mut p = Pool::with_classes(Classes::single(size), 64 << 20);
    let t0 = Instant::now();
    let floor = SPARE_FLOOR / size;
    let burst: Vec<_> = (0..floor + 30).map(|_| p.take(0).expect("take")).collect();
    assert_eq!(p.next_trim(t0), None, "no spare yet");
    for b in burst {
        p.give(b);
    }
    assert_eq!(p.spares().0, floor + 30);
    // The first trim sees the burst's peak: the spares may still be needed.
    let at = p.next_trim(t0).expect("spares above the floor");
    assert_eq!(at, t0, "never trimmed: due at once");
    p.trim(at);
    assert_eq!(p.spares().0, floor + 30);
    // One quiet interval later, down to the floor.
    let at = p.next_trim(t0).expect("still above the floor");
    assert_eq!(at, t0 + TRIM_INTERVAL);
    p.trim(at);
    assert_eq!(p.spares().0, floor);
    assert_eq!(p.next_trim(at), None);
}

#[test]
fn kernel_pipes_count_against_the_budget_and_come_back_only_empty() {
    let pipes = Pipes::new(Splice::Auto, 2, 64 * K, ScriptedPipe::opener(64 * K, 0));
    let mut p = Pool::with_classes(Classes::new(16 * K, 64 * K), 1 << 20).with_pipes(pipes);
    assert_eq!(p.splice(), Splice::Auto);
    let a = p.take_pipe().expect("first");
    let b = p.take_pipe().expect("second");
    assert!(p.take_pipe().is_none(), "at the count");
    assert_eq!((p.pipes_lent(), p.lent_bytes()), (2, 128 * K));
    p.give_pipe(a);
    assert_eq!(p.spares().1, 1, "an empty one is kept");

    // One holding bytes is closed, never lent again.
    let mut held = ScriptedPipe::new(64 * K);
    let mut src = crate::core::scripted::Scripted::new();
    src.send(b"owed");
    held.fill(&mut src, 64 * K).expect("fill");
    drop(b);
    p.give_pipe(Box::new(held));
    assert_eq!((p.pipes_lent(), p.spares().1), (0, 1));
    assert_eq!(p.lent_bytes(), 0);
}

#[test]
fn no_kernel_pipe_when_splice_is_off_or_over_half_the_budget() {
    let off = Pipes::new(Splice::Off, 8, 64 * K, ScriptedPipe::opener(64 * K, 0));
    let mut p = Pool::with_classes(Classes::single(16 * K), 1 << 20).with_pipes(off);
    assert_eq!(p.splice(), Splice::Off);
    assert!(p.take_pipe().is_none());

    let on = Pipes::new(Splice::Always, 8, 64 * K, ScriptedPipe::opener(64 * K, 0));
    let mut p = Pool::with_classes(Classes::single(16 * K), 128 * K).with_pipes(on);
    let first = p.take_pipe().expect("within half");
    assert!(p.take_pipe().is_none(), "half the budget is out");
    p.give_pipe(first);
}
