//! Scheduled work of a listener's upstream groups: look-ups, warm refills and health
//! checks, run by the loop's per-pass upkeep when due.
//!
//! Refills wait a little after a lend ([`REFILL_AFTER`]) and go in batches of at most
//! [`REFILL_BATCH`] dials per pass, so a dial never sits between a client's accept and
//! its first bytes, and events are served between batches.

use std::time::{Duration, Instant};

use super::{checks_on, Upstreams};
use crate::server::mode::Cx;

/// How long after a warm connection is lent its replacement is dialed. Long enough for
/// the next loop pass to carry the new session's first bytes, short enough that a pool
/// drained by a burst refills before the next one (refills of one pass are batched).
pub(super) const REFILL_AFTER: Duration = Duration::from_millis(1);

/// Most warm connections dialed in one loop pass; the rest wait for the next pass, so
/// events (sessions' bytes) are served between batches of dials.
pub(super) const REFILL_BATCH: usize = 1;

impl Upstreams {
    /// Schedules refills for [`REFILL_AFTER`] from `now`: the dials (a socket, its
    /// options and a connect each) come after the session that took a warm connection
    /// has moved its first bytes, never between a client's accept and them.
    pub(super) fn refill_soon(&mut self, now: Instant) {
        let at = now + REFILL_AFTER;
        self.due = Some(self.due.map_or(at, |d| d.min(at)));
    }

    /// Scheduled work: look-ups, warm refills and health checks that are due. Cheap when
    /// nothing is (the loop calls it every pass).
    pub(in crate::server::mode) fn upkeep(&mut self, cx: &mut Cx<'_>) {
        if !self.dirty && self.due.is_none_or(|d| cx.now < d) {
            return;
        }
        self.dirty = false;
        self.apply_update(cx);
        let mut due: Option<Instant> = None;
        let mut budget = REFILL_BATCH;
        let mut soon = |t: Instant| due = Some(due.map_or(t, |d| d.min(t)));
        for g in 0..self.groups.len() {
            if let Some(at) = self.groups[g].next_lookup {
                if cx.now >= at {
                    self.look_up(cx, g);
                    self.groups[g].next_lookup = Some(cx.now + self.opts.dns_refresh);
                }
                if let Some(at) = self.groups[g].next_lookup {
                    soon(at);
                }
            }
            if let Some(t) = self.groups[g].group.next_change(cx.now) {
                soon(t);
            }
            for i in 0..self.groups[g].members.len() {
                if let Some(t) = self.check_member(cx, g, i) {
                    soon(t);
                }
                if let Some(t) = self.refill(cx, g, i, &mut budget) {
                    soon(t);
                }
            }
        }
        self.due = due;
    }

    /// When upkeep has work next (never, when the groups need none).
    pub(in crate::server::mode) fn next_wake(&self) -> Option<Instant> {
        self.due.filter(|_| self.needs_upkeep())
    }

    /// Whether anything needs upkeep at all: warm connections, checks or names.
    pub(in crate::server::mode) fn needs_upkeep(&self) -> bool {
        self.opts.warm > 0
            || self.pending.is_some()
            || checks_on(&self.opts)
            || self.groups.iter().any(|g| g.next_lookup.is_some())
    }
}
