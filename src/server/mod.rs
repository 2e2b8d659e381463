//! The event loop: one mio `Poll`, the session slab, the deadline heap, the buffer pool
//! and the signals. The only code that touches mio, the slabs and the clock.
//!
//! One pass: poll (the timeout is the earliest deadline, or zero when work is queued),
//! read the clock once, hand each event to its owner (session, tunnel, waiting client,
//! listener) and drive it until it waits, then drive the sessions that yielded their
//! byte budget, fire due deadlines, give freed buffers to starved sessions, free the slab
//! slots (and sockets) of sessions closed in this pass, accept a bounded batch per
//! listener, and let the mode do its upkeep (the agent refills its tunnel pools).
//!
//! Mode-specific handling lives in `forward.rs`, `relay.rs` and `agent.rs`; sessions are
//! the same in every mode.

mod accept;
mod agent;
mod entry;
mod forward;
mod relay;
mod resolver;
pub mod token;

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::{Events, Interest, Poll, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::config::{Config, Global, Mode};
use crate::core::pool::Pool;
use crate::core::session::Policy;
use crate::core::session::{Drive, Readiness};
use crate::core::timers::Timers;
use crate::net::Random;
use accept::{Listener, Role};
use entry::Entry;
use token::Target;

/// Bytes one session may write per pass before others get a turn.
const BUDGET: usize = 256 * 1024;
/// Events taken per poll.
const EVENT_CAPACITY: usize = 1024;

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// A signal, then every session finished or the drain timeout closed the rest.
    Drained,
    /// A second signal: exit at once.
    Forced,
    /// The agent lost its relay and was told to exit (`--exit-on-disconnect`).
    Disconnected,
}

/// What a deadline in the heap belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Session(usize),
    Tunnel(usize),
    Waiting(usize),
}

/// The listeners of a configuration, bound before the loop starts.
#[derive(Debug)]
pub struct Bound {
    listeners: Vec<Listener>,
}

impl Bound {
    /// `name=IP:PORT` for each listener, in configuration order (port 0 resolved).
    pub fn ready_fields(&self) -> Vec<String> {
        self.listeners
            .iter()
            .map(|l| format!("{}={}", l.role.ready_name(), l.addr))
            .collect()
    }

    /// The bound addresses.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.addr).collect()
    }
}

/// Binds every listener of `cfg`. The error names the address that failed.
pub fn bind(cfg: &Config) -> Result<Bound, (SocketAddr, io::Error)> {
    let wanted: Vec<(Role, SocketAddr)> = match &cfg.listeners[0].mode {
        Mode::Forward(f) => f.listen.iter().map(|&a| (Role::Forward, a)).collect(),
        Mode::Relay(r) => std::iter::once((Role::Tunnel, r.tunnel_listen))
            .chain(
                r.public
                    .iter()
                    .enumerate()
                    .map(|(n, s)| (Role::Public(n, s.name.clone()), s.addr)),
            )
            .collect(),
        Mode::Agent(_) => Vec::new(),
    };
    let listeners = wanted
        .into_iter()
        .map(|(role, addr)| Listener::bind(role, addr).map_err(|e| (addr, e)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Bound { listeners })
}

/// Mode-specific state.
enum ModeState {
    Forward(forward::ForwardState),
    Relay(Box<relay::RelayState>),
    Agent(Box<agent::AgentState>),
}

/// The event loop and everything it owns.
pub struct Server {
    poll: Poll,
    global: Global,
    policy: Policy,
    listeners: Vec<Listener>,
    sessions: Slab<Entry>,
    timers: Timers<Key>,
    pool: Pool,
    /// Sessions that used up their budget: driven again next pass.
    ready: Vec<usize>,
    /// Sessions waiting for a pool buffer, in arrival order.
    starved: VecDeque<usize>,
    /// Slots of sessions closed in this pass, freed after it.
    closed: Vec<usize>,
    signals: Signals,
    next_id: u64,
    max_sessions: usize,
    drain_until: Option<Instant>,
    mode: ModeState,
    /// The READY line, until printed.
    ready_line: Option<String>,
    stop: Option<Stopped>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listeners", &self.listeners)
            .field("sessions", &self.sessions.len())
            .field("buffers_lent", &self.pool.lent())
            .field("draining", &self.drain_until.is_some())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Registers the bound listeners and the signals with a new poller.
    pub fn new(cfg: Config, bound: Bound, max_sessions: usize) -> io::Result<Server> {
        let poll = Poll::new()?;
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        poll.registry()
            .register(&mut signals, Target::Signals.token(), Interest::READABLE)?;
        let mut listeners = bound.listeners;
        for (n, l) in listeners.iter_mut().enumerate() {
            l.register(poll.registry(), Target::Listener(n).token())?;
        }
        let mut ready_fields: Vec<String> = listeners
            .iter()
            .map(|l| format!("{}={}", l.role.ready_name(), l.addr))
            .collect();
        let listener = cfg
            .listeners
            .into_iter()
            .next()
            .ok_or(io::ErrorKind::InvalidInput)?;
        let policy = listener.policy;
        let mode = match listener.mode {
            Mode::Forward(f) => ModeState::Forward(forward::ForwardState::new(f)),
            Mode::Relay(r) => {
                ModeState::Relay(Box::new(relay::RelayState::new(r, Random::open()?)))
            }
            Mode::Agent(a) => {
                let waker = Waker::new(poll.registry(), Target::Waker.token())?;
                let state = agent::AgentState::new(a, Random::open()?, waker)?;
                ready_fields = state.ready_fields();
                ModeState::Agent(Box::new(state))
            }
        };
        let global = cfg.global;
        Ok(Server {
            poll,
            listeners,
            sessions: Slab::with_capacity(max_sessions.min(4096)),
            timers: Timers::new(),
            pool: Pool::new(global.buffer_size, global.pool_buffers),
            ready: Vec::new(),
            starved: VecDeque::new(),
            closed: Vec::new(),
            signals,
            next_id: 1,
            max_sessions,
            drain_until: None,
            mode,
            ready_line: Some(format!("READY {}", ready_fields.join(" "))),
            stop: None,
            global,
            policy,
        })
    }

    /// Bytes of state one session costs besides its buffers (slab entry, heap entry).
    pub fn session_overhead() -> usize {
        std::mem::size_of::<Entry>()
            + std::mem::size_of::<usize>()
            + std::mem::size_of::<crate::core::timers::Entry<Key>>()
    }

    /// Runs until stopped by signals (or, for an agent, by `--exit-on-disconnect`).
    pub fn run(mut self) -> io::Result<Stopped> {
        let mut events = Events::with_capacity(EVENT_CAPACITY);
        let mut now = Instant::now();
        if !matches!(self.mode, ModeState::Agent(_)) {
            self.announce();
        }
        self.upkeep(now);
        loop {
            let timeout = self.poll_timeout(now);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            now = Instant::now();
            for event in events.iter() {
                let ready = Readiness {
                    readable: event.is_readable() || event.is_read_closed() || event.is_error(),
                    writable: event.is_writable() || event.is_write_closed() || event.is_error(),
                    read_closed: event.is_read_closed() || event.is_error(),
                };
                match Target::of(event.token()) {
                    Target::Signals => self.on_signals(now),
                    Target::Waker => self.on_waker(),
                    Target::Listener(n) => {
                        if let Some(l) = self.listeners.get_mut(n) {
                            l.readable = true;
                        }
                    }
                    Target::Session { slot, side } => {
                        if let Some(e) = self.sessions.get_mut(slot) {
                            e.session.on_event(side, ready);
                            self.drive(slot, now);
                        }
                    }
                    Target::Tunnel(slot) => self.on_tunnel_event(slot, ready, now),
                    Target::Waiting(slot) => self.on_waiting_event(slot, now),
                }
                if let Some(stopped) = self.stop {
                    return Ok(stopped);
                }
            }
            for slot in std::mem::take(&mut self.ready) {
                if let Some(e) = self.sessions.get_mut(slot) {
                    e.in_ready = false;
                    self.drive(slot, now);
                }
            }
            self.fire_deadlines(now);
            self.feed_starved(now);
            // Free closed sessions' sockets first: accepting needs their descriptors.
            self.free_closed();
            self.accept_all(now);
            self.upkeep(now);
            if let Some(stopped) = self.stop {
                return Ok(stopped);
            }
            if let Some(until) = self.drain_until {
                if now >= until {
                    self.close_all(now);
                }
                if self.sessions.is_empty() {
                    info!("stopped: every session finished");
                    return Ok(Stopped::Drained);
                }
            }
        }
    }

    /// Prints the READY line once, on stdout.
    fn announce(&mut self) {
        if let Some(line) = self.ready_line.take() {
            let mut stdout = io::stdout().lock();
            if writeln!(stdout, "{line}")
                .and_then(|()| stdout.flush())
                .is_err()
            {
                warn!("cannot write the READY line to stdout");
            }
        }
    }

    /// Zero when work is queued; else until the earliest deadline; `None` blocks.
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.ready.is_empty() || self.accept_pending(now) {
            return Some(Duration::ZERO);
        }
        let listener_pauses = self.listeners.iter().filter_map(|l| l.paused_until);
        let mode_wake = match &self.mode {
            ModeState::Agent(a) => a.next_wake(),
            _ => None,
        };
        let next = self
            .timers
            .next()
            .into_iter()
            .chain(listener_pauses)
            .chain(self.drain_until)
            .chain(mode_wake)
            .min();
        next.map(|t| t.saturating_duration_since(now))
    }

    /// Drives one session until it waits, and acts on what it reports.
    fn drive(&mut self, slot: usize, now: Instant) {
        let Some(e) = self.sessions.get_mut(slot) else {
            return;
        };
        if e.closed {
            return;
        }
        let d = e.session.drive(&mut self.pool, now, &self.policy, BUDGET);
        self.settle(slot, d, now);
    }

    fn settle(&mut self, slot: usize, drive: Drive, now: Instant) {
        match drive {
            Drive::Waiting => {}
            Drive::Yielded => {
                if let Some(e) = self.sessions.get_mut(slot) {
                    if !e.in_ready {
                        e.in_ready = true;
                        self.ready.push(slot);
                    }
                }
            }
            Drive::Starved => {
                if let Some(e) = self.sessions.get_mut(slot) {
                    if !e.starved {
                        e.starved = true;
                        self.starved.push_back(slot);
                    }
                }
            }
            Drive::ConnectFailed(failure) => {
                let d = self.redial(slot, failure, now);
                return self.settle(slot, d, now);
            }
            Drive::Closed(reason) => return self.finish(slot, reason, now),
        }
        self.arm(slot);
    }

    /// Arms the session's deadline unless an entry at or before it is already armed.
    fn arm(&mut self, slot: usize) {
        let Some(e) = self.sessions.get_mut(slot) else {
            return;
        };
        let Some(deadline) = e.session.deadline(&self.policy) else {
            return;
        };
        if e.armed.is_none_or(|armed| deadline < armed) {
            self.timers.arm(deadline, Key::Session(slot), e.id);
            e.armed = Some(deadline);
        }
    }

    fn fire_deadlines(&mut self, now: Instant) {
        while let Some(t) = self.timers.pop_due(now) {
            match t.slot {
                Key::Session(slot) => {
                    let Some(e) = self.sessions.get_mut(slot) else {
                        continue;
                    };
                    if e.id != t.id || e.armed != Some(t.at) || e.closed {
                        continue; // stale: superseded, or the slot belongs to a later session
                    }
                    e.armed = None;
                    let d = e.session.expire(&mut self.pool, now, &self.policy);
                    self.settle(slot, d, now);
                }
                Key::Tunnel(slot) => self.on_tunnel_deadline(slot, t.id, t.at, now),
                Key::Waiting(slot) => self.on_waiting_deadline(slot, t.id, t.at, now),
            }
        }
        let live = self.sessions.len() + self.mode_entries();
        if self.timers.len() > 2 * live + 1024 {
            self.compact_timers();
        }
    }

    fn compact_timers(&mut self) {
        let sessions = &self.sessions;
        let mode = &self.mode;
        self.timers.compact(|t| match t.slot {
            Key::Session(slot) => sessions
                .get(slot)
                .is_some_and(|e| e.id == t.id && e.armed == Some(t.at)),
            Key::Tunnel(slot) | Key::Waiting(slot) => match mode {
                ModeState::Relay(r) => {
                    r.timer_is_live(t.slot == Key::Tunnel(slot), slot, t.id, t.at)
                }
                ModeState::Agent(a) => a.timer_is_live(slot, t.id, t.at),
                ModeState::Forward(_) => false,
            },
        });
    }

    fn mode_entries(&self) -> usize {
        match &self.mode {
            ModeState::Forward(_) => 0,
            ModeState::Relay(r) => r.entries(),
            ModeState::Agent(a) => a.entries(),
        }
    }

    /// Gives buffers that came back to sessions waiting for one, oldest first.
    fn feed_starved(&mut self, now: Instant) {
        while self.pool.lent() < self.pool.budget() {
            let Some(slot) = self.starved.pop_front() else {
                break;
            };
            if let Some(e) = self.sessions.get_mut(slot) {
                e.starved = false;
                self.drive(slot, now);
            }
        }
    }

    fn free_closed(&mut self) {
        for slot in self.closed.drain(..) {
            if self.sessions.contains(slot) {
                // Dropping the streams closes the sockets (RST where `abort` set linger 0).
                drop(self.sessions.remove(slot));
            }
        }
    }

    fn on_signals(&mut self, now: Instant) {
        let count = self.signals.pending().count();
        if count == 0 {
            return;
        }
        if self.drain_until.is_some() || count > 1 {
            warn!(
                "second signal: exiting now, {} sessions cut",
                self.live_sessions()
            );
            self.stop = Some(Stopped::Forced);
            return;
        }
        for l in &mut self.listeners {
            l.close(self.poll.registry());
        }
        self.drop_mode_entries();
        self.drain_until = Some(now + self.global.drain_timeout);
        info!(
            "stopping: listeners closed, {} sessions draining (up to {:?})",
            self.live_sessions(),
            self.global.drain_timeout
        );
    }

    fn close_all(&mut self, now: Instant) {
        let live: Vec<usize> = self
            .sessions
            .iter()
            .filter(|(_, e)| !e.closed)
            .map(|(slot, _)| slot)
            .collect();
        for slot in live {
            if let Some(e) = self.sessions.get_mut(slot) {
                let d = e.session.shut_down(&mut self.pool);
                self.settle(slot, d, now);
            }
        }
        self.free_closed();
    }

    fn live_sessions(&self) -> usize {
        self.sessions.len() - self.closed.len()
    }

    /// Per-pass upkeep of the mode (the agent keeps its tunnel pools full).
    fn upkeep(&mut self, now: Instant) {
        if matches!(self.mode, ModeState::Agent(_)) && self.drain_until.is_none() {
            self.agent_upkeep(now);
        }
    }

    /// Stopping: tunnels and waiting clients are not sessions; they go at once.
    fn drop_mode_entries(&mut self) {
        let registry = self.poll.registry();
        match &mut self.mode {
            ModeState::Forward(_) => {}
            ModeState::Relay(r) => r.drop_all(registry),
            ModeState::Agent(a) => a.drop_all(registry),
        }
    }
}
