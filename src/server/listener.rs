//! A listener in the loop: one named entry of the configuration with its mode's state,
//! the policy its new sessions take, its own counters, and how many sessions it has.
//!
//! Sessions point at their listener by slot and hold the policy they started with, so a
//! reload can change a listener's options for new sessions while live ones go on as they
//! were. A listener removed by a reload is `closed`: its ports and tunnels are gone, and
//! it stays in the slab only until its last session ends (those sessions are draining).

use std::rc::Rc;

use super::agent::AgentState;
use super::forward::ForwardState;
use super::relay::RelayState;
use crate::config;
use crate::core::session::Policy;
use crate::stats::Counters;

/// A mode's own state.
#[derive(Debug)]
pub(super) enum Kind {
    Forward(ForwardState),
    Relay(Box<RelayState>),
    Agent(Box<AgentState>),
}

/// One listener of the running configuration.
#[derive(Debug)]
pub(super) struct Listener {
    /// The configuration it runs from (compared on reload).
    pub(super) config: config::Listener,
    /// What new sessions run with.
    pub(super) policy: Rc<Policy>,
    pub(super) kind: Kind,
    pub(super) counters: Counters,
    /// Live sessions (closed ones leave at `finish`).
    pub(super) sessions: usize,
    /// Removed by a reload or stopping: no ports, no tunnels; sessions finish.
    pub(super) closed: bool,
}

impl Listener {
    pub(super) fn new(config: config::Listener, kind: Kind) -> Listener {
        Listener {
            policy: Rc::new(config.policy),
            config,
            kind,
            counters: Counters::default(),
            sessions: 0,
            closed: false,
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.config.name
    }

    /// Whether one more session fits under this listener's own limit.
    pub(super) fn has_room(&self) -> bool {
        !self.closed
            && self
                .config
                .max_sessions
                .is_none_or(|max| self.sessions + self.waiting() < max)
    }

    /// Relay clients waiting for a tunnel.
    pub(super) fn waiting(&self) -> usize {
        match &self.kind {
            Kind::Relay(r) => r.waiting_clients(),
            _ => 0,
        }
    }

    /// Tunnels and waiting clients: entries besides sessions.
    pub(super) fn entries(&self) -> usize {
        match &self.kind {
            Kind::Forward(_) => 0,
            Kind::Relay(r) => r.entries(),
            Kind::Agent(a) => a.entries(),
        }
    }

    /// Whether every agent tunnel pool of this listener has authenticated (true for
    /// other modes): the READY line waits for it.
    pub(super) fn up(&self) -> bool {
        match &self.kind {
            Kind::Agent(a) => a.up(),
            _ => true,
        }
    }

    /// Whether a timer entry for a tunnel or waiting client is still current.
    pub(super) fn timer_is_live(
        &self,
        tunnel: bool,
        slot: usize,
        id: u64,
        at: std::time::Instant,
    ) -> bool {
        match &self.kind {
            Kind::Relay(r) => r.timer_is_live(tunnel, slot, id, at),
            Kind::Agent(a) => tunnel && a.timer_is_live(slot, id, at),
            Kind::Forward(_) => false,
        }
    }
}
