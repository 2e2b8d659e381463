//! The event loop: one mio `Poll` and the owners it drives. The only code that touches
//! mio, the slabs and the clock.
//!
//! | owner | holds | module |
//! |---|---|---|
//! | [`Sessions`] | the session slab, the ready/starved/closed lists, the buffer pool | `sessions` |
//! | [`Listeners`] | the listeners (policy, counters, mode state) and their ports | `listeners`, `port` |
//! | the deadline heap | `Timers<Owner>`: one entry kind per owner | `owner` |
//! | [`ModeState`] | a mode's own sockets: tunnels, waiting clients, backoff | `mode/` |
//! | [`Metrics`] | the HTTP endpoint's socket and connections | `metrics` |
//!
//! One pass: poll (the timeout is the earliest deadline, or zero when work is queued),
//! read the clock once, hand each event to its owner, drive the sessions that yielded
//! their byte budget, fire due deadlines, give freed buffers to starved sessions, record
//! what the sessions reported (closes, failed connects), free the slots (and sockets) of
//! sessions closed in this pass, accept a bounded batch per port, and let the modes do
//! their upkeep (an agent keeps its tunnels open). Mode code is called in one place
//! ([`Server::with_mode`]) with a context of what it may touch, and answers with actions.

mod control;
mod deadlines;
mod life;
mod listeners;
mod metrics;
mod mode;
mod owner;
mod port;
mod proxy;
mod reload;
mod report;
mod resolver;
mod sessions;
mod start;

pub use life::Stopped;
pub use start::{bind, describe, session_overhead, Bound};

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::info;
use mio::event::Event;
use mio::{Events, Interest, Poll, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;

use crate::config::sizing::Sizing;
use crate::config::{Config, Global, Source};
use crate::core::pool::{Classes, Pipes, Pool};
use crate::core::stream::Readiness;
use crate::core::timers::Timers;
use crate::logging::LogHandle;
use life::Life;
use listeners::{Listener, Listeners};
use metrics::Metrics;
use mode::{Action, Cx, Ids, ModeState};
use owner::{Owner, Target};
use port::{Role, ACCEPT_BATCH};
use resolver::Resolver;
use sessions::{Io, Report, Sessions};

/// Events taken per poll.
const EVENT_CAPACITY: usize = 1024;

/// The event loop and everything it owns.
pub struct Server {
    poll: Poll,
    signals: Signals,
    /// Looks names up off the loop (waking it through a `Waker` with each answer).
    resolver: Resolver,
    global: Global,
    /// Where the configuration came from (a file is reloaded on SIGHUP).
    source: Source,
    /// The session limit in force (the configured one, lowered to the open-files limit).
    max_sessions: usize,
    sessions: Sessions,
    listeners: Listeners,
    deadlines: Timers<Owner>,
    ids: Ids,
    metrics: Option<Metrics>,
    life: Life,
    /// The logger's counters (dropped lines), when one was installed.
    log: Option<LogHandle>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listeners", &self.listeners.slab.len())
            .field("ports", &self.listeners.ports.len())
            .field("sessions", &self.sessions.live())
            .field("buffers_lent", &self.sessions.pool().lent())
            .field("draining", &self.life.stopping())
            .finish_non_exhaustive()
    }
}

/// What sessions may touch now: the poller and the deadline heap of `$s`.
macro_rules! io {
    ($s:ident, $now:expr) => {
        Io {
            registry: $s.poll.registry(),
            deadlines: &mut $s.deadlines,
            now: $now,
        }
    };
}

impl Server {
    /// Registers the bound ports and the signals with a new poller.
    pub fn new(
        cfg: Config,
        bound: Bound,
        sizing: Sizing,
        log: Option<LogHandle>,
    ) -> io::Result<Server> {
        let max_sessions = sizing.max_sessions;
        let poll = Poll::new()?;
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1])?;
        let registry = poll.registry();
        registry.register(&mut signals, Target::Signals.token(), Interest::READABLE)?;
        let waker = Arc::new(Waker::new(registry, Target::Waker.token())?);
        let mut listeners = Listeners::default();
        for (config, ports) in cfg.listeners.into_iter().zip(bound.ports) {
            let mode = ModeState::new(&config, Instant::now()).map_err(io::Error::other)?;
            let l = listeners.slab.insert(Listener::new(config, mode));
            for port in ports {
                let slot = listeners.hold_port(port, registry)?;
                listeners.activate(slot, l);
            }
        }
        let mut metrics = bound.metrics;
        if let Some(m) = metrics.as_mut() {
            m.register(registry)?;
        }
        let g = &cfg.global;
        let pipes = Pipes::new(
            g.splice,
            sizing.pipes,
            g.buffer_max,
            crate::os::splice::opener(g.buffer_max),
        );
        let classes = Classes::new(g.buffer_size, g.buffer_max);
        let pool = Pool::with_classes(classes, g.pool_budget).with_pipes(pipes);
        Ok(Server {
            signals,
            resolver: Resolver::new(waker),
            source: cfg.source,
            max_sessions,
            sessions: Sessions::new(pool, max_sessions),
            listeners,
            deadlines: Timers::new(),
            ids: Ids::new(),
            metrics,
            life: Life::new(Instant::now()),
            log,
            global: cfg.global,
            poll,
        })
    }

    /// Runs until stopped by signals (or, for an agent, by `--exit-on-disconnect`).
    pub fn run(mut self) -> io::Result<Stopped> {
        let mut events = Events::with_capacity(EVENT_CAPACITY);
        let mut now = Instant::now();
        if self.listeners.all_up() {
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
                self.on_event(event, now);
                if let Some(stopped) = self.life.stop {
                    return Ok(stopped);
                }
            }
            self.sessions.drive_ready(&mut io!(self, now));
            self.fire_deadlines(now);
            self.sessions.feed_starved(&mut io!(self, now));
            self.sessions.trim_pool(now);
            self.settle_reports(now);
            // Free closed sessions' sockets first: accepting needs their descriptors.
            self.sessions.free_closed();
            self.accept_all(now);
            if self.metrics.as_ref().is_some_and(Metrics::pending) {
                self.on_metrics_ready(now);
            }
            self.upkeep(now);
            if let Some(stopped) = self.life.stop {
                return Ok(stopped);
            }
            if let Some(until) = self.life.drain_until {
                if now >= until {
                    self.sessions.shut_down_all(&mut io!(self, now));
                    self.settle_reports(now);
                }
                if self.sessions.held() == 0 {
                    info!("stopped: every session finished");
                    return Ok(Stopped::Drained);
                }
            }
        }
    }

    /// Hands one event to the owner of its token.
    fn on_event(&mut self, event: &Event, now: Instant) {
        let ready = Readiness {
            readable: event.is_readable() || event.is_read_closed() || event.is_error(),
            writable: event.is_writable() || event.is_write_closed() || event.is_error(),
            read_closed: event.is_read_closed() || event.is_error(),
        };
        match Target::of(event.token()) {
            Target::Signals => self.on_signals(now),
            Target::Waker => {
                while let Some(answer) = self.resolver.take() {
                    let l = answer.lookup.listener;
                    self.with_mode(l, now, |m, cx| m.on_resolved(cx, answer));
                }
            }
            Target::Port(n) => {
                if let Some(p) = self.listeners.ports.get_mut(n) {
                    p.readable = true;
                }
            }
            Target::Metrics => self.on_metrics_ready(now),
            Target::Socket(Owner::Scrape(slot), _) => {
                let Some(mut m) = self.metrics.take() else {
                    return;
                };
                let counts = (m.requests, m.rejected);
                m.on_event(slot, self.poll.registry(), &|route| {
                    self.view(now, counts).answer(route)
                });
                self.metrics = Some(m);
            }
            Target::Socket(Owner::Session(slot), side) => {
                self.sessions
                    .on_event(slot, side, ready, &mut io!(self, now));
                self.settle_reports(now);
            }
            Target::Socket(
                owner @ (Owner::Tunnel { listener, .. }
                | Owner::Waiting { listener, .. }
                | Owner::Upstream { listener, .. }
                | Owner::Preface { listener, .. }
                | Owner::Handshake { listener, .. }),
                _,
            ) => self.with_mode(listener, now, |m, cx| m.on_event(cx, owner, ready)),
        }
    }

    /// Calls listener `l`'s mode with a context of what it may touch, then applies the
    /// actions it asked for. The one place mode code is called from.
    fn with_mode(&mut self, l: usize, now: Instant, f: impl FnOnce(&mut ModeState, &mut Cx<'_>)) {
        let mut actions = Vec::new();
        let Some(listener) = self.listeners.slab.get_mut(l) else {
            return;
        };
        let Listener {
            mode,
            counters,
            policy,
            config,
            ..
        } = listener;
        f(
            mode,
            &mut Cx {
                registry: self.poll.registry(),
                deadlines: &mut self.deadlines,
                ids: &mut self.ids,
                resolver: &mut self.resolver,
                now,
                listener: l,
                policy,
                sockets: &config.sockets,
                counters,
                actions: &mut actions,
            },
        );
        self.apply(actions, now);
    }

    fn apply(&mut self, actions: Vec<Action>, now: Instant) {
        for action in actions {
            match action {
                Action::Start(start) => {
                    let l = start.listener;
                    if self.sessions.start(start, &mut io!(self, now)) {
                        if let Some(x) = self.listeners.slab.get_mut(l) {
                            x.sessions += 1;
                        }
                    }
                }
                Action::Unserved(closed) => self.sessions.report_unserved(closed),
                Action::Redial(r, dialed) => {
                    self.sessions.redial(&r, dialed, &mut io!(self, now));
                }
                Action::FailConnect(r, failure) => {
                    self.sessions.fail_connect(&r, failure, &mut io!(self, now));
                }
                Action::Up if self.listeners.all_up() => self.announce(),
                Action::Up => {}
                Action::Stop(stopped) => self.life.stop = Some(stopped),
            }
        }
        self.settle_reports(now);
    }

    /// Records what the sessions reported (see [`Listeners::record`]), and hands the
    /// modes what concerns their upstream groups: a connect's outcome, a closed
    /// session's upstream, a session that needs another upstream.
    fn settle_reports(&mut self, now: Instant) {
        let stopping = self.life.stopping();
        for report in self.sessions.take_reports() {
            match &report {
                &Report::Redial(r) => {
                    self.with_mode(r.listener, now, |m, cx| m.redial(cx, r));
                }
                &Report::Connect(a) if a.group.is_some() => {
                    self.with_mode(a.listener, now, |m, cx| m.on_attempt(cx, a));
                }
                // The mode only counts the close: no context, no actions.
                Report::Finished(c) | Report::Unserved(c) => {
                    if let Some(l) = self.listeners.slab.get_mut(c.listener) {
                        l.mode.on_closed(c);
                    }
                }
                Report::Connect(_) => {}
            }
            self.listeners.record(report, stopping);
        }
    }

    fn fire_deadlines(&mut self, now: Instant) {
        while let Some(t) = self.deadlines.pop_due(now) {
            match t.slot {
                Owner::Session(slot) => self.sessions.expire(slot, t.id, t.at, &mut io!(self, now)),
                owner @ (Owner::Tunnel { listener, .. }
                | Owner::Waiting { listener, .. }
                | Owner::Upstream { listener, .. }
                | Owner::Preface { listener, .. }
                | Owner::Handshake { listener, .. }) => {
                    self.with_mode(listener, now, |m, cx| m.on_deadline(cx, owner, t.id, t.at));
                }
                Owner::Scrape(slot) => {
                    if let Some(m) = self.metrics.as_mut() {
                        m.on_deadline(slot, t.id, self.poll.registry());
                    }
                }
            }
        }
        self.settle_reports(now);
        let metrics = self.metrics.as_ref();
        deadlines::compact(
            &mut self.deadlines,
            &self.sessions,
            &self.listeners,
            metrics,
        );
    }

    /// Accepts up to a batch on each ready port, within the session limits.
    fn accept_all(&mut self, now: Instant) {
        if self.life.stopping() {
            return;
        }
        for n in 0..self.listeners.ports.capacity() {
            for _ in 0..ACCEPT_BATCH {
                if !self
                    .listeners
                    .has_room(n, self.sessions.held(), self.max_sessions)
                {
                    self.listeners.note_limit(n);
                    break;
                }
                let Some((l, role, conn, addr)) = self.listeners.accept(n, now) else {
                    break;
                };
                if role != Role::Tunnel {
                    if let Some(x) = self.listeners.slab.get_mut(l) {
                        x.counters.accepted += 1;
                    }
                }
                self.with_mode(l, now, |m, cx| m.on_accept(cx, &role, conn, addr));
            }
        }
    }

    fn on_metrics_ready(&mut self, now: Instant) {
        if let Some(m) = self.metrics.as_mut() {
            m.on_ready(self.poll.registry(), &mut self.deadlines, now);
        }
    }

    /// Per-pass upkeep of the modes (agents keep their tunnels open).
    fn upkeep(&mut self, now: Instant) {
        if self.life.stopping() {
            return;
        }
        let mut from = 0;
        while let Some(l) = self.listeners.next_upkeep(from) {
            self.with_mode(l, now, |m, cx| m.upkeep(cx));
            from = l + 1;
        }
    }

    /// Zero when work is queued; else until the earliest deadline; `None` blocks.
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        let accepting = !self.life.stopping()
            && self
                .listeners
                .accept_pending(now, self.sessions.held(), self.max_sessions);
        if self.sessions.has_ready()
            || accepting
            || self.metrics.as_ref().is_some_and(Metrics::pending)
        {
            return Some(Duration::ZERO);
        }
        let next = self
            .deadlines
            .next()
            .into_iter()
            .chain(self.listeners.next_wake())
            .chain(self.life.drain_until)
            .chain(self.sessions.pool().next_trim(now))
            .min();
        next.map(|t| t.saturating_duration_since(now))
    }

    /// Prints the READY line once (every listener is up).
    fn announce(&mut self) {
        let fields = self.ready_fields();
        self.life.announce(&fields);
    }

    /// The READY line's fields: every port, agent and the metrics endpoint.
    fn ready_fields(&self) -> Vec<String> {
        let mut fields = self.listeners.ready_fields(&self.source);
        if let Some(m) = &self.metrics {
            fields.push(format!("metrics={}", m.addr));
        }
        fields
    }
}
