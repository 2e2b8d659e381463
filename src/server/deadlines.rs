//! The deadline heap's upkeep: which entries are still their owner's current deadline
//! (an owner re-arms lazily, so the heap holds stale entries until they fire), how many
//! are live, and compaction when stale entries pile up.

use super::listeners::Listeners;
use super::metrics::Metrics;
use super::owner::Owner;
use super::sessions::Sessions;
use crate::core::timers::{self, Timers};

/// Whether a heap entry is still its owner's current deadline (metrics connections'
/// only when `metrics` is given).
pub(super) fn is_live(
    sessions: &Sessions,
    listeners: &Listeners,
    metrics: Option<&Metrics>,
    t: &timers::Entry<Owner>,
) -> bool {
    match t.slot {
        Owner::Session(slot) => sessions.timer_is_live(slot, t.id, t.at),
        Owner::Tunnel { listener, .. }
        | Owner::Waiting { listener, .. }
        | Owner::Upstream { listener, .. }
        | Owner::Preface { listener, .. }
        | Owner::Handshake { listener, .. } => listeners
            .slab
            .get(listener)
            .is_some_and(|l| l.mode.timer_is_live(t.slot, t.id, t.at)),
        Owner::Scrape(slot) => metrics.is_some_and(|m| m.timer_is_live(slot, t.id)),
    }
}

/// Deadlines armed for live sessions, tunnels and waiting clients (not the metrics
/// requests', so a scrape of a quiet process reads 0).
pub(super) fn armed(
    deadlines: &Timers<Owner>,
    sessions: &Sessions,
    listeners: &Listeners,
) -> usize {
    deadlines
        .count(|t| !matches!(t.slot, Owner::Scrape(_)) && is_live(sessions, listeners, None, t))
}

/// Drops stale entries once they outnumber live owners, so the heap stays proportional
/// to what is live.
pub(super) fn compact(
    deadlines: &mut Timers<Owner>,
    sessions: &Sessions,
    listeners: &Listeners,
    metrics: Option<&Metrics>,
) {
    let live = sessions.held() + listeners.entries();
    if deadlines.len() > 2 * live + 1024 {
        deadlines.compact(|t| is_live(sessions, listeners, metrics, t));
    }
}
