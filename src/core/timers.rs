//! Deadlines without scans: a min-heap of `(instant, slot, session id)` with lazy re-arm.
//!
//! Activity costs nothing here: a session just moves its own deadline later. Its entry
//! then fires early, the owner sees the deadline has not passed and arms it again.
//! A session whose deadline moves *earlier* gets a new entry; the old one goes stale.
//! The owner recognises stale entries (closed session, reused slot, superseded instant)
//! when they pop, and calls [`Timers::compact`] when stale entries outnumber live ones,
//! so memory stays proportional to live sessions. Pop and push cost O(log n).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// One armed deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry<K> {
    /// When it fires.
    pub at: Instant,
    /// What it is for (a slab slot of some kind).
    pub slot: K,
    /// The owner's id, so an entry never fires for a later owner of the same slot.
    pub id: u64,
}

/// The deadline heap, keyed by `K` (what the owner uses to find the deadline's owner).
#[derive(Debug)]
pub struct Timers<K> {
    heap: BinaryHeap<Reverse<Entry<K>>>,
}

impl<K: Ord + Copy> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Ord + Copy> Timers<K> {
    /// An empty heap.
    pub fn new() -> Timers<K> {
        Timers::default()
    }

    /// Arms a deadline.
    pub fn arm(&mut self, at: Instant, slot: K, id: u64) {
        self.heap.push(Reverse(Entry { at, slot, id }));
    }

    /// Arms `at` for `slot` unless its owner already has an entry at or before it
    /// (`armed`, which this updates): a later entry fires early and is re-armed lazily.
    pub fn arm_once(&mut self, armed: &mut Option<Instant>, at: Instant, slot: K, id: u64) {
        if armed.is_none_or(|earlier| at < earlier) {
            self.arm(at, slot, id);
            *armed = Some(at);
        }
    }

    /// The earliest deadline, live or stale.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.0.at)
    }

    /// Removes and returns an entry due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Entry<K>> {
        if self.next()? <= now {
            self.heap.pop().map(|e| e.0)
        } else {
            None
        }
    }

    /// Entries held, live or stale.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Entries for which `live` holds (stale entries wait in the heap until they fire or
    /// are compacted away; this counts the ones that still matter).
    pub fn count(&self, mut live: impl FnMut(&Entry<K>) -> bool) -> usize {
        self.heap.iter().filter(|e| live(&e.0)).count()
    }

    /// True when nothing is armed.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Keeps only the entries `live` accepts.
    pub fn compact(&mut self, mut live: impl FnMut(&Entry<K>) -> bool) {
        self.heap.retain(|e| live(&e.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(base: Instant, n: u64) -> Instant {
        base + Duration::from_millis(n)
    }

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut t: Timers<usize> = Timers::new();
        t.arm(ms(t0, 30), 3, 30);
        t.arm(ms(t0, 10), 1, 10);
        t.arm(ms(t0, 20), 2, 20);
        assert_eq!(t.next(), Some(ms(t0, 10)));
        assert_eq!(t.pop_due(ms(t0, 5)), None);
        assert_eq!(t.pop_due(ms(t0, 25)).map(|e| e.id), Some(10));
        assert_eq!(t.pop_due(ms(t0, 25)).map(|e| e.id), Some(20));
        assert_eq!(t.pop_due(ms(t0, 25)), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_reused_slot_is_told_apart_by_id() {
        let t0 = Instant::now();
        let mut t: Timers<usize> = Timers::new();
        t.arm(ms(t0, 10), 0, 1); // session 1 in slot 0, then closed
        t.arm(ms(t0, 50), 0, 2); // session 2 reuses slot 0
        let e = t.pop_due(ms(t0, 10)).expect("due");
        assert_eq!(
            (e.slot, e.id),
            (0, 1),
            "the owner sees id 1 != 2 and skips it"
        );
    }

    #[test]
    fn arm_once_adds_an_entry_only_for_an_earlier_deadline() {
        let t0 = Instant::now();
        let mut t: Timers<usize> = Timers::new();
        let mut armed = None;
        t.arm_once(&mut armed, ms(t0, 50), 0, 1);
        t.arm_once(&mut armed, ms(t0, 80), 0, 1);
        assert_eq!((t.len(), armed), (1, Some(ms(t0, 50))), "later: lazy");
        t.arm_once(&mut armed, ms(t0, 20), 0, 1);
        assert_eq!(
            (t.len(), armed),
            (2, Some(ms(t0, 20))),
            "earlier: a new entry"
        );
    }

    #[test]
    fn compact_drops_stale_entries() {
        let t0 = Instant::now();
        let mut t: Timers<usize> = Timers::new();
        for id in 0..100 {
            t.arm(ms(t0, id), id as usize, id);
        }
        t.compact(|e| e.id % 10 == 0);
        assert_eq!(t.len(), 10);
        assert_eq!(t.pop_due(ms(t0, 1000)).map(|e| e.id), Some(0));
        assert_eq!(t.pop_due(ms(t0, 1000)).map(|e| e.id), Some(10));
    }
}
