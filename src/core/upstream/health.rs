//! One member's health: passive (failed connects eject it for a while) and active (a
//! check every interval marks it down after `fall` failures in a row and up again after
//! `rise` passes, as HAProxy's checks do).
//!
//! Both sides are enums changed only in [`Health::on`], which also says what changed for
//! the log. A member is *healthy* when its checks hold it up and it is neither ejected
//! nor on probation; [`Change::Up`] is reported exactly when it becomes healthy again.
//!
//! ```text
//!   passive:     eject_after failures in a row          its time passes
//!     Counting ─────────────────────────────▶ Ejected ─────────────────▶ probation
//!        ▲                                       ▲                          │  │
//!        │                                       └─ one failure (×2 time) ──┘  │
//!        └───────────── a success (the count and the doubling start over) ─────┘
//!
//!   active:
//!     Up ──fall failed checks in a row──▶ Down ──rise passed checks in a row──▶ Up
//! ```
//!
//! Pure: time and the jitter's randomness are passed in.

use std::time::{Duration, Instant};

/// Longest ejection by default: the doubling stops here.
pub const EJECT_CAP: Duration = Duration::from_secs(5 * 60);

/// Health rules of a group (from the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Consecutive failed connects that eject a member (0: never).
    pub eject_after: u32,
    /// The first ejection's length; doubled per ejection in a row.
    pub eject_time: Duration,
    /// The longest ejection ([`EJECT_CAP`]); taken as at least `eject_time`.
    pub eject_cap: Duration,
    /// Failed checks in a row that mark a member down (0 counts as 1).
    pub fall: u32,
    /// Passed checks in a row that mark it up again (0 counts as 1).
    pub rise: u32,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            eject_after: 3,
            eject_time: Duration::from_secs(10),
            eject_cap: EJECT_CAP,
            fall: 3,
            rise: 2,
        }
    }
}

impl Rules {
    /// The rules as applied: the cap at least the first ejection, fall and rise at least 1.
    pub(super) fn normalized(self) -> Rules {
        Rules {
            eject_cap: self.eject_cap.max(self.eject_time),
            fall: self.fall.max(1),
            rise: self.rise.max(1),
            ..self
        }
    }

    /// The `in_a_row`-th ejection's step: `eject_time` doubled per ejection before it,
    /// capped.
    fn step(&self, in_a_row: u32) -> Duration {
        let doublings = in_a_row.saturating_sub(1).min(31);
        self.eject_time
            .saturating_mul(1u32 << doublings)
            .min(self.eject_cap)
    }
}

/// The length of an ejection: drawn in `[0.75, 1.0] × step` by `random` (any number,
/// reduced modulo the range), so members ejected together do not return together.
pub(super) fn jittered(step: Duration, random: u64) -> Duration {
    let quarter = u64::try_from(step.as_nanos() / 4).unwrap_or(u64::MAX);
    let off = match quarter.checked_add(1) {
        Some(span) => random % span,
        None => random,
    };
    step.saturating_sub(Duration::from_nanos(off))
}

/// A member's state for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Usable (possibly on probation after an ejection).
    Up,
    /// Active checks failed `fall` times in a row (shown even while also ejected).
    Down,
    /// Failed connects ejected it until this instant.
    Ejected {
        /// When the ejection ends and the member is on probation.
        until: Instant,
    },
}

/// What changed, for a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Ejected by failed connects ("upstream X down: ...").
    Ejected {
        /// Failed connects in a row that ejected it (1 on probation).
        after: u32,
        /// For how long (jitter included).
        for_: Duration,
    },
    /// Marked down by failed checks ("upstream X down: ...").
    Down,
    /// Healthy again after an ejection or a down ("upstream X up again").
    Up,
}

/// What the loop learnt about a member.
#[derive(Debug, Clone, Copy)]
pub(super) enum Event {
    /// A connect succeeded.
    Connected,
    /// A connect failed; `alone` when the member is its group's only one (never ejected).
    Failed {
        now: Instant,
        random: u64,
        alone: bool,
    },
    /// A check passed: counts as a successful connect, except that it does not cut a
    /// running ejection short.
    CheckPassed { now: Instant },
    /// A check failed (active health only).
    CheckFailed,
}

/// Failed connects and the ejection they led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Passive {
    /// Fewer than `eject_after` failed connects in a row.
    Counting { failures: u32 },
    /// Ejected until `until`, then on probation; the `in_a_row`-th ejection since the
    /// last success.
    Ejected { until: Instant, in_a_row: u32 },
}

/// The checks' verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Active {
    Up { failed: u32 },
    Down { passed: u32 },
}

/// One member's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Health {
    passive: Passive,
    active: Active,
    ejections: u64,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            passive: Passive::Counting { failures: 0 },
            active: Active::Up { failed: 0 },
            ejections: 0,
        }
    }
}

impl Health {
    /// Applies what was learnt; the one place the state changes.
    pub(super) fn on(&mut self, event: Event, rules: &Rules) -> Option<Change> {
        let was_healthy = self.healthy();
        let mut change = None;
        match event {
            Event::Connected => self.passive = Passive::Counting { failures: 0 },
            Event::Failed { now, random, alone } => {
                let (failures, probation) = match self.passive {
                    Passive::Counting { failures } => (failures.saturating_add(1), None),
                    Passive::Ejected { until, in_a_row } if now >= until => (1, Some(in_a_row)),
                    // Tried while ejected (every member was unusable): the running
                    // ejection stands as it is.
                    Passive::Ejected { .. } => return None,
                };
                let ejects = !alone
                    && rules.eject_after > 0
                    && (probation.is_some() || failures >= rules.eject_after);
                self.passive = if ejects {
                    let in_a_row = probation.unwrap_or(0).saturating_add(1);
                    let for_ = jittered(rules.step(in_a_row), random);
                    self.ejections = self.ejections.saturating_add(1);
                    change = Some(Change::Ejected {
                        after: failures,
                        for_,
                    });
                    Passive::Ejected {
                        until: now.checked_add(for_).unwrap_or(now),
                        in_a_row,
                    }
                } else {
                    Passive::Counting { failures }
                };
            }
            Event::CheckPassed { now } => {
                self.active = match self.active {
                    Active::Up { .. } => Active::Up { failed: 0 },
                    Active::Down { passed } if passed.saturating_add(1) >= rules.rise => {
                        Active::Up { failed: 0 }
                    }
                    Active::Down { passed } => Active::Down { passed: passed + 1 },
                };
                let running = matches!(self.passive, Passive::Ejected { until, .. } if now < until);
                if !running {
                    self.passive = Passive::Counting { failures: 0 };
                }
            }
            Event::CheckFailed => {
                self.active = match self.active {
                    Active::Up { failed } if failed.saturating_add(1) >= rules.fall => {
                        change = Some(Change::Down);
                        Active::Down { passed: 0 }
                    }
                    Active::Up { failed } => Active::Up { failed: failed + 1 },
                    Active::Down { .. } => Active::Down { passed: 0 },
                };
            }
        }
        if !was_healthy && self.healthy() {
            change = Some(Change::Up);
        }
        change
    }

    /// Checks hold it up, and it is neither ejected nor on probation.
    fn healthy(&self) -> bool {
        matches!(self.active, Active::Up { .. }) && matches!(self.passive, Passive::Counting { .. })
    }

    /// Its state for reports at `now` (down before ejected: checks alone lift a down).
    pub(super) fn state(&self, now: Instant) -> State {
        match (self.active, self.passive) {
            (Active::Down { .. }, _) => State::Down,
            (_, Passive::Ejected { until, .. }) if now < until => State::Ejected { until },
            _ => State::Up,
        }
    }

    /// Neither down nor ejected at `now` (on probation is usable).
    pub(super) fn usable(&self, now: Instant) -> bool {
        self.state(now) == State::Up
    }

    /// When its running ejection ends, if one runs at `now`.
    pub(super) fn ejected_until(&self, now: Instant) -> Option<Instant> {
        match self.passive {
            Passive::Ejected { until, .. } if now < until => Some(until),
            _ => None,
        }
    }

    /// Failed connects in a row (not counting those that found it ejected).
    pub(super) fn failures(&self) -> u32 {
        match self.passive {
            Passive::Counting { failures } => failures,
            Passive::Ejected { .. } => 0,
        }
    }

    /// Ejections since the member was added.
    pub(super) fn ejections(&self) -> u64 {
        self.ejections
    }
}
