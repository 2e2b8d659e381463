//! The event loop: one mio `Poll`, the session slab, the deadline heap, the buffer pool
//! and the signals. The only code that touches mio, the slab and the clock.
//!
//! One pass: poll (the timeout is the earliest deadline, or zero when work is queued),
//! read the clock once, hand each event to its session and drive it until it waits,
//! then drive the sessions that yielded their byte budget, fire due deadlines, accept a
//! give freed buffers to starved sessions, free the slab slots (and sockets) of sessions
//! closed in this pass, and only then accept a bounded batch per listener.

mod accept;
mod entry;
pub mod token;

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::{Events, Interest, Poll};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::config::ForwardConfig;
use crate::core::pool::Pool;
use crate::core::session::{Drive, Readiness};
use crate::core::timers::Timers;
use accept::Listener;
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
}

/// A bound listener, before the loop starts.
#[derive(Debug)]
pub struct Bound {
    listeners: Vec<Listener>,
}

impl Bound {
    /// The addresses actually bound (port 0 resolved), in configuration order.
    pub fn addresses(&self) -> Vec<std::net::SocketAddr> {
        self.listeners.iter().map(|l| l.addr).collect()
    }
}

/// Binds every listener of `cfg`. The error names the address that failed.
pub fn bind(cfg: &ForwardConfig) -> Result<Bound, (std::net::SocketAddr, io::Error)> {
    let listeners = cfg
        .listen
        .iter()
        .map(|&addr| Listener::bind(addr).map_err(|e| (addr, e)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Bound { listeners })
}

/// The event loop and everything it owns.
pub struct Server {
    poll: Poll,
    cfg: ForwardConfig,
    listeners: Vec<Listener>,
    sessions: Slab<Entry>,
    timers: Timers,
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
    pub fn new(cfg: ForwardConfig, bound: Bound, max_sessions: usize) -> io::Result<Server> {
        let poll = Poll::new()?;
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        poll.registry()
            .register(&mut signals, Target::Signals.token(), Interest::READABLE)?;
        let mut listeners = bound.listeners;
        for (n, l) in listeners.iter_mut().enumerate() {
            l.register(poll.registry(), Target::Listener(n).token())?;
        }
        let pool = Pool::new(cfg.buffer_size, cfg.pool_buffers);
        Ok(Server {
            poll,
            listeners,
            sessions: Slab::with_capacity(max_sessions.min(4096)),
            timers: Timers::new(),
            pool,
            ready: Vec::new(),
            starved: VecDeque::new(),
            closed: Vec::new(),
            signals,
            next_id: 1,
            max_sessions,
            drain_until: None,
            cfg,
        })
    }

    /// Bytes of state one session costs besides its buffers (slab entry).
    pub fn session_overhead() -> usize {
        // A slab slot is the entry plus a tag word; one heap entry is armed per session.
        std::mem::size_of::<Entry>()
            + std::mem::size_of::<usize>()
            + std::mem::size_of::<crate::core::timers::Entry>()
    }

    /// Runs until stopped by signals.
    pub fn run(mut self) -> io::Result<Stopped> {
        let mut events = Events::with_capacity(EVENT_CAPACITY);
        let mut now = Instant::now();
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
                };
                match Target::of(event.token()) {
                    Target::Signals => {
                        if let Some(stopped) = self.on_signals(now) {
                            return Ok(stopped);
                        }
                    }
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

    /// Zero when work is queued; else until the earliest deadline; `None` blocks.
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.ready.is_empty() || self.accept_pending(now) {
            return Some(Duration::ZERO);
        }
        let listener_pauses = self.listeners.iter().filter_map(|l| l.paused_until);
        let next = self
            .timers
            .next()
            .into_iter()
            .chain(listener_pauses)
            .chain(self.drain_until)
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
        let d = e
            .session
            .drive(&mut self.pool, now, &self.cfg.policy, BUDGET);
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
        let Some(deadline) = e.session.deadline(&self.cfg.policy) else {
            return;
        };
        if e.armed.is_none_or(|armed| deadline < armed) {
            self.timers.arm(deadline, slot, e.id);
            e.armed = Some(deadline);
        }
    }

    fn fire_deadlines(&mut self, now: Instant) {
        while let Some(t) = self.timers.pop_due(now) {
            let Some(e) = self.sessions.get_mut(t.slot) else {
                continue;
            };
            if e.id != t.id || e.armed != Some(t.at) || e.closed {
                continue; // stale: superseded, or the slot belongs to a later session
            }
            e.armed = None;
            let d = e.session.expire(&mut self.pool, now, &self.cfg.policy);
            self.settle(t.slot, d, now);
        }
        if self.timers.len() > 2 * self.sessions.len() + 1024 {
            let sessions = &self.sessions;
            self.timers.compact(|t| {
                sessions
                    .get(t.slot)
                    .is_some_and(|e| e.id == t.id && e.armed == Some(t.at))
            });
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

    fn on_signals(&mut self, now: Instant) -> Option<Stopped> {
        let count = self.signals.pending().count();
        if count == 0 {
            return None;
        }
        if self.drain_until.is_some() || count > 1 {
            warn!(
                "second signal: exiting now, {} sessions cut",
                self.live_sessions()
            );
            return Some(Stopped::Forced);
        }
        for l in &mut self.listeners {
            l.close(self.poll.registry());
        }
        self.drain_until = Some(now + self.cfg.drain_timeout);
        info!(
            "stopping: listeners closed, {} sessions draining (up to {:?})",
            self.live_sessions(),
            self.cfg.drain_timeout
        );
        None
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
}
