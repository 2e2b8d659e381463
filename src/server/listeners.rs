//! The listeners of the running configuration and their ports.
//!
//! A listener is one named entry of the configuration: the policy its new sessions take,
//! its mode's state, its counters, and how many sessions it has. Sessions point at their
//! listener by slot and hold the policy they started with, so a reload can change a
//! listener's options for new sessions while live ones go on as they were. A listener
//! removed by a reload (or the process stopping) is `closed`: its ports and tunnels are
//! gone, and it stays in the slab only until its last session ends (those sessions are
//! draining). Ports are the listening sockets, in a slab of their own.

use std::io;
use std::rc::Rc;
use std::time::Instant;

use mio::Registry;
use slab::Slab;

use super::mode::ModeState;
use super::owner::{Target, MAX_PORTS};
use super::port::{Accepted, Port, Role};
use super::sessions::{Closed, Report};
use crate::config::{self, Source};
use crate::core::session::Policy;
use crate::core::stream::AcceptPause;
use crate::os::net::Conn;
use crate::stats::{CloseRecord, Counters};

/// One listener of the running configuration.
#[derive(Debug)]
pub(super) struct Listener {
    /// The configuration it runs from (compared on reload, rendered by `/config`).
    pub(super) config: config::Listener,
    /// What new sessions run with.
    pub(super) policy: Rc<Policy>,
    pub(super) mode: ModeState,
    pub(super) counters: Counters,
    /// Live sessions (closed ones leave when their close is recorded).
    pub(super) sessions: usize,
    /// Removed by a reload or stopping: no ports, no tunnels; sessions finish.
    pub(super) closed: bool,
}

impl Listener {
    pub(super) fn new(config: config::Listener, mode: ModeState) -> Listener {
        Listener {
            policy: Rc::new(config.policy),
            config,
            mode,
            counters: Counters::default(),
            sessions: 0,
            closed: false,
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.config.name
    }

    /// Whether one more session fits under this listener's own limit.
    fn has_room(&self) -> bool {
        !self.closed
            && self
                .config
                .max_sessions
                .is_none_or(|max| self.sessions + self.mode.waiting() < max)
    }

    /// Takes a new configuration that keeps its mode's state: the policy for new
    /// sessions, limits and the mode's options.
    pub(super) fn update(&mut self, config: config::Listener) {
        if *self.policy != config.policy {
            self.policy = Rc::new(config.policy);
        }
        self.mode.update(&config);
        self.config = config;
        self.closed = false;
    }
}

/// The listeners and their ports.
#[derive(Debug, Default)]
pub(super) struct Listeners {
    pub(super) slab: Slab<Listener>,
    pub(super) ports: Slab<Port>,
}

impl Listeners {
    /// Registers a bound port with the poller and holds it, not yet accepting (a reload's
    /// plan does this; [`activate`](Self::activate) gives it to a listener).
    pub(super) fn hold_port(&mut self, mut port: Port, registry: &Registry) -> io::Result<usize> {
        if self.ports.len() >= MAX_PORTS {
            return Err(io::Error::other("too many listening ports"));
        }
        port.listener = None;
        let entry = self.ports.vacant_entry();
        let slot = entry.key();
        port.register(registry, Target::Port(slot).token())?;
        entry.insert(port);
        Ok(slot)
    }

    /// Gives a held port to listener `l`.
    pub(super) fn activate(&mut self, slot: usize, l: usize) {
        if let Some(p) = self.ports.get_mut(slot) {
            p.listener = Some(l);
        }
    }

    /// Closes and forgets a port: new connects are refused from now on.
    pub(super) fn drop_port(&mut self, slot: usize, registry: &Registry) {
        if let Some(mut p) = self.ports.try_remove(slot) {
            p.close(registry);
        }
    }

    /// Whether port `n` may accept one more connection: the process is not stopping, and
    /// (but for a relay's tunnel port, whose handshakes have their own limit) both the
    /// process-wide limit (`held` sessions and waiting clients against `max`) and the
    /// listener's own have room.
    pub(super) fn has_room(&self, n: usize, held: usize, max: usize) -> bool {
        let Some(p) = self.ports.get(n) else {
            return false;
        };
        match p.role {
            Role::Tunnel => true,
            Role::Listen | Role::Public(..) => {
                held + self.waiting() < max
                    && p.listener
                        .and_then(|l| self.slab.get(l))
                        .is_some_and(Listener::has_room)
            }
        }
    }

    /// Accepts one connection on port `n`: the listener's slot, the port's role, the
    /// connection and its peer, or `None` when the port has nothing more now. Pauses are
    /// counted in the listener's counters.
    pub(super) fn accept(
        &mut self,
        n: usize,
        now: Instant,
    ) -> Option<(usize, Role, Conn, std::net::SocketAddr)> {
        loop {
            let p = self.ports.get_mut(n)?;
            let l = p.listener?;
            let tuning = super::port::tuning(&self.slab.get(l)?.config.sockets);
            match p.accept(now, tuning) {
                Accepted::Conn(conn, addr) => return Some((l, p.role.clone(), conn, addr)),
                Accepted::Skipped => continue,
                Accepted::Nothing => return None,
                Accepted::Paused(cause) => {
                    if let Some(x) = self.slab.get_mut(l) {
                        x.counters.record_accept_pause(cause);
                    }
                    return None;
                }
            }
        }
    }

    /// Port `n` is ready but a session limit keeps it from accepting: counted once per
    /// episode.
    pub(super) fn note_limit(&mut self, n: usize) {
        let Some(p) = self.ports.get_mut(n) else {
            return;
        };
        if p.limit_reached() {
            if let Some(x) = p.listener.and_then(|l| self.slab.get_mut(l)) {
                x.counters.record_accept_pause(AcceptPause::Limit);
            }
        }
    }

    /// Records what the sessions reported: a failed connect attempt (counted), or a
    /// close (counted and logged; a finished session leaves its listener's count, which
    /// may then be forgotten, and frees descriptors and a session slot, so every paused
    /// port may try again at once).
    pub(super) fn record(&mut self, report: Report, stopping: bool) {
        let (closed, finished) = match report {
            Report::Connect(a) => {
                if let (Err(failure), Some(x)) = (a.outcome, self.slab.get_mut(a.listener)) {
                    x.counters.record_connect_failure(failure);
                }
                return;
            }
            Report::Redial(_) => return,
            Report::Finished(c) => (c, true),
            Report::Unserved(c) => (c, false),
        };
        if let Some(x) = self.slab.get_mut(closed.listener) {
            x.counters
                .record_close(closed.reason, closed.delivered, closed.pauses);
            if finished {
                x.sessions = x.sessions.saturating_sub(1);
            }
        }
        self.close_record(&closed).emit(|r| log::logger().log(r));
        if finished {
            self.forget_if_done(closed.listener, stopping);
            for (_, p) in &mut self.ports {
                p.paused_until = None;
            }
        }
    }

    /// The close record of `closed`, its listener named (`-` once forgotten).
    fn close_record<'a>(&'a self, closed: &'a Closed) -> CloseRecord<'a> {
        CloseRecord {
            id: closed.id,
            listener: self.slab.get(closed.listener).map_or("-", Listener::name),
            client: closed.client,
            upstream: closed.upstream,
            dest: closed.dest.as_deref(),
            to_upstream: closed.delivered.0,
            to_client: closed.delivered.1,
            duration: closed.age,
            read_pauses: closed.pauses.0,
            reason: closed.reason,
        }
    }

    /// Whether a port has connections to accept now, within the limits (`held`
    /// sessions of at most `max`).
    pub(super) fn accept_pending(&self, now: Instant, held: usize, max: usize) -> bool {
        self.ports
            .iter()
            .any(|(n, p)| p.pending(now) && self.has_room(n, held, max))
    }

    /// The first open listener at or after slot `from` whose mode needs upkeep (no
    /// allocation: the loop asks on every pass).
    pub(super) fn next_upkeep(&self, from: usize) -> Option<usize> {
        self.slab
            .iter()
            .find(|(slot, l)| *slot >= from && !l.closed && l.mode.needs_upkeep())
            .map(|(slot, _)| slot)
    }

    /// Public clients waiting for a tunnel, over every listener.
    pub(super) fn waiting(&self) -> usize {
        self.slab.iter().map(|(_, l)| l.mode.waiting()).sum()
    }

    /// Tunnels and waiting clients of every listener.
    pub(super) fn entries(&self) -> usize {
        self.slab.iter().map(|(_, l)| l.mode.entries()).sum()
    }

    /// Whether every listener is up (agents' tunnels authenticated).
    pub(super) fn all_up(&self) -> bool {
        self.slab.iter().all(|(_, l)| l.mode.up())
    }

    /// The earliest instant a port's pause or a mode's backoff ends.
    pub(super) fn next_wake(&self) -> Option<Instant> {
        let pauses = self.ports.iter().filter_map(|(_, p)| p.paused_until);
        let modes = self
            .slab
            .iter()
            .filter(|(_, l)| !l.closed)
            .filter_map(|(_, l)| l.mode.next_wake());
        pauses.chain(modes).min()
    }

    /// Removes a closed listener once nothing refers to it any more (while the process
    /// stops, it stays to the end: its counters are still reported).
    pub(super) fn forget_if_done(&mut self, l: usize, stopping: bool) {
        let done = self
            .slab
            .get(l)
            .is_some_and(|x| x.closed && x.sessions == 0 && x.mode.entries() == 0);
        if done && !stopping {
            self.slab.remove(l);
        }
    }

    /// The READY line's fields: every port and agent, as `name=address`; listeners from a
    /// file put their name and a dot first.
    pub(super) fn ready_fields(&self, source: &Source) -> Vec<String> {
        let mut fields = Vec::new();
        for (l, listener) in self.slab.iter().filter(|(_, l)| !l.closed) {
            let prefix = match source {
                Source::File(_) => Some(listener.name()),
                Source::Flags => None,
            };
            let ports = self.ports.iter().filter(|(_, p)| p.listener == Some(l));
            fields.extend(ports.map(|(_, p)| p.ready_field(prefix)));
            fields.extend(listener.mode.ready_fields(prefix));
        }
        fields
    }
}
