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
//! A process runs any number of named listeners, each of any mode; mode-specific
//! handling lives in `forward.rs`, `relay.rs` and `agent.rs`, and sessions are the same
//! in every mode. `reload.rs` applies a new configuration file on SIGHUP.

mod accept;
mod agent;
mod entry;
mod forward;
mod listener;
mod metrics;
mod relay;
mod reload;
mod report;
mod resolver;
pub mod token;

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use mio::{Events, Interest, Poll, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::config::{self, Config, Global, Mode, Source};
use crate::core::pool::Pool;
use crate::core::session::Drive;
use crate::core::stream::Readiness;
use crate::core::timers::Timers;
use accept::{Port, Role};
use entry::Entry;
use listener::{Kind, Listener};
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
    /// (listener, slot)
    Tunnel(usize, usize),
    /// (listener, slot)
    Waiting(usize, usize),
    Scrape(usize),
}

/// The ports of a configuration, bound before the loop starts.
#[derive(Debug)]
pub struct Bound {
    /// Per listener, in configuration order.
    ports: Vec<Vec<Port>>,
    metrics: Option<metrics::Metrics>,
}

impl Bound {
    /// The bound addresses of listener `n` (port 0 resolved).
    pub fn addresses(&self, n: usize) -> Vec<SocketAddr> {
        self.ports
            .get(n)
            .map(|ports| ports.iter().map(|p| p.addr).collect())
            .unwrap_or_default()
    }
}

/// The (role, address) pairs a listener listens on.
fn wanted(listener: &config::Listener) -> Vec<(Role, SocketAddr)> {
    match &listener.mode {
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
    }
}

/// Binds every port of `cfg`, adopting inherited sockets (socket activation) whose
/// address matches. The error names the address that failed.
pub fn bind(
    cfg: &Config,
    inherited: &mut Vec<std::net::TcpListener>,
) -> Result<Bound, (SocketAddr, io::Error)> {
    let ports = cfg
        .listeners
        .iter()
        .map(|l| {
            wanted(l)
                .into_iter()
                .map(|(role, addr)| Port::bind(role, addr, inherited).map_err(|e| (addr, e)))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metrics = match cfg.global.metrics_listen {
        Some(addr) => Some(metrics::Metrics::bind(addr).map_err(|e| (addr, e))?),
        None => None,
    };
    Ok(Bound { ports, metrics })
}

/// Bytes of state one session costs besides its buffers (slab entry, heap entry).
pub fn session_overhead() -> usize {
    std::mem::size_of::<Entry>()
        + std::mem::size_of::<usize>()
        + std::mem::size_of::<crate::core::timers::Entry<Key>>()
}

/// One start-up line per listener: what it does, on which bound addresses.
pub fn describe(config: &Config, bound: &Bound) -> Vec<String> {
    config
        .listeners
        .iter()
        .enumerate()
        .map(|(n, l)| {
            let addrs = bound.addresses(n);
            let what = match &l.mode {
                Mode::Forward(f) => format!("{} -> {}", join(&addrs), join(&f.upstreams)),
                Mode::Relay(r) => {
                    let services: Vec<&str> = r.public.iter().map(|s| s.name.as_str()).collect();
                    format!(
                        "tunnels and public {} on {}",
                        services.join(", "),
                        join(&addrs)
                    )
                }
                Mode::Agent(a) => {
                    let services: Vec<String> = a
                        .services
                        .iter()
                        .map(|s| format!("{}={}", s.name, s.addr))
                        .collect();
                    format!(
                        "relay {}; services {}; pool {}",
                        a.relay,
                        services.join(" "),
                        a.pool
                    )
                }
            };
            format!("listener {} ({}): {what}", l.name, l.mode.word())
        })
        .collect()
}

fn join(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The event loop and everything it owns.
pub struct Server {
    poll: Poll,
    global: Global,
    /// Where the configuration came from (a file is reloaded on SIGHUP).
    source: Source,
    listeners: Slab<Listener>,
    ports: Slab<Port>,
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
    /// Wakes the loop when an agent's name resolver has an answer.
    waker: Arc<Waker>,
    next_id: u64,
    max_sessions: usize,
    drain_until: Option<Instant>,
    /// Whether the READY line has been printed.
    announced: bool,
    stop: Option<Stopped>,
    reloads: u64,
    reload_failures: u64,
    started: Instant,
    /// The logger's counters (dropped lines), when one was installed.
    log: Option<crate::logging::LogHandle>,
    metrics: Option<metrics::Metrics>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listeners", &self.listeners.len())
            .field("ports", &self.ports.len())
            .field("sessions", &self.sessions.len())
            .field("buffers_lent", &self.pool.lent())
            .field("draining", &self.drain_until.is_some())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Registers the bound ports and the signals with a new poller.
    pub fn new(
        cfg: Config,
        bound: Bound,
        max_sessions: usize,
        log: Option<crate::logging::LogHandle>,
    ) -> io::Result<Server> {
        let poll = Poll::new()?;
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1])?;
        poll.registry()
            .register(&mut signals, Target::Signals.token(), Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), Target::Waker.token())?);
        let global = cfg.global;
        let mut server = Server {
            poll,
            source: cfg.source,
            listeners: Slab::new(),
            ports: Slab::new(),
            sessions: Slab::with_capacity(max_sessions.min(4096)),
            timers: Timers::new(),
            pool: Pool::new(global.buffer_size, global.pool_buffers),
            ready: Vec::new(),
            starved: VecDeque::new(),
            closed: Vec::new(),
            signals,
            waker,
            next_id: 1,
            max_sessions,
            drain_until: None,
            announced: false,
            stop: None,
            reloads: 0,
            reload_failures: 0,
            started: Instant::now(),
            log,
            metrics: bound.metrics,
            global,
        };
        if let Some(m) = server.metrics.as_mut() {
            m.register(server.poll.registry())?;
        }
        for (listener, ports) in cfg.listeners.into_iter().zip(bound.ports) {
            let kind = server.new_kind(&listener)?;
            let l = server.listeners.insert(Listener::new(listener, kind));
            for port in ports {
                server.add_port(l, port)?;
            }
        }
        Ok(server)
    }

    /// A mode's fresh state for `listener`.
    fn new_kind(&self, listener: &config::Listener) -> io::Result<Kind> {
        Ok(match &listener.mode {
            Mode::Forward(f) => Kind::Forward(forward::ForwardState::new(f.clone())),
            Mode::Relay(r) => Kind::Relay(Box::new(relay::RelayState::new(r.clone()))),
            Mode::Agent(a) => {
                Kind::Agent(Box::new(agent::AgentState::new(a.clone(), &self.waker)?))
            }
        })
    }

    /// Registers a bound port as listener `l`'s.
    fn add_port(&mut self, l: usize, mut port: Port) -> io::Result<()> {
        if self.ports.len() >= token::MAX_PORTS {
            return Err(io::Error::other("too many listening ports"));
        }
        port.listener = l;
        let entry = self.ports.vacant_entry();
        port.register(self.poll.registry(), Target::Port(entry.key()).token())?;
        entry.insert(port);
        Ok(())
    }

    /// The READY line's fields: every port and agent, as `name=address`; listeners from
    /// a file put their name and a dot first.
    fn ready_fields(&self) -> Vec<String> {
        let mut fields = Vec::new();
        for (l, listener) in self.listeners.iter().filter(|(_, l)| !l.closed) {
            let prefix = match self.source {
                Source::File(_) => Some(listener.name()),
                Source::Flags => None,
            };
            fields.extend(
                self.ports
                    .iter()
                    .filter(|(_, p)| p.listener == l)
                    .map(|(_, p)| p.ready_field(prefix)),
            );
            if let Kind::Agent(a) = &listener.kind {
                fields.extend(a.ready_fields(prefix));
            }
        }
        if let Some(m) = &self.metrics {
            fields.push(format!("metrics={}", m.addr));
        }
        fields
    }

    /// Runs until stopped by signals (or, for an agent, by `--exit-on-disconnect`).
    pub fn run(mut self) -> io::Result<Stopped> {
        let mut events = Events::with_capacity(EVENT_CAPACITY);
        let mut now = Instant::now();
        if self.listeners.iter().all(|(_, l)| l.up()) {
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
                    Target::Port(n) => {
                        if let Some(p) = self.ports.get_mut(n) {
                            p.readable = true;
                        }
                    }
                    Target::Metrics => self.on_metrics_ready(now),
                    Target::Scrape(slot) => self.on_scrape_event(slot, now),
                    Target::Session { slot, side } => {
                        if let Some(e) = self.sessions.get_mut(slot) {
                            e.session.on_event(side, ready);
                            self.drive(slot, now);
                        }
                    }
                    Target::Tunnel { listener, slot } => {
                        self.on_tunnel_event(listener, slot, ready, now);
                    }
                    Target::Waiting { listener, slot } => {
                        self.on_waiting_event(listener, slot, now);
                    }
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
            if self.metrics_pending() {
                self.on_metrics_ready(now);
            }
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
        if !self.announced {
            self.announced = true;
            let fields = self.ready_fields().join(" ");
            print_line(&format!("READY {fields}"));
            notify(&format!("READY=1\nSTATUS=serving {fields}"));
        }
    }

    /// Zero when work is queued; else until the earliest deadline; `None` blocks.
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.ready.is_empty() || self.accept_pending(now) || self.metrics_pending() {
            return Some(Duration::ZERO);
        }
        let port_pauses = self.ports.iter().filter_map(|(_, p)| p.paused_until);
        let mode_wake = self
            .listeners
            .iter()
            .filter_map(|(_, l)| match &l.kind {
                Kind::Agent(a) if !l.closed => a.next_wake(),
                _ => None,
            })
            .min();
        let next = self
            .timers
            .next()
            .into_iter()
            .chain(port_pauses)
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
        let d = e.session.drive(&mut self.pool, now, &e.policy, BUDGET);
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
                if let Some(l) = self.sessions.get(slot).map(|e| e.listener) {
                    self.count_connect_failure(l, failure);
                }
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
        let Some(deadline) = e.session.deadline(&e.policy) else {
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
                    let d = e.session.expire(&mut self.pool, now, &e.policy);
                    self.settle(slot, d, now);
                }
                Key::Tunnel(l, slot) => self.on_tunnel_deadline(l, slot, t.id, t.at, now),
                Key::Waiting(l, slot) => self.on_waiting_deadline(l, slot, t.id, now),
                Key::Scrape(slot) => self.on_scrape_deadline(slot, t.id),
            }
        }
        let live = self.sessions.len() + self.mode_entries();
        if self.timers.len() > 2 * live + 1024 {
            self.compact_timers();
        }
    }

    fn compact_timers(&mut self) {
        let (sessions, listeners, metrics) = (&self.sessions, &self.listeners, &self.metrics);
        self.timers
            .compact(|t| timer_is_live(sessions, listeners, metrics.as_ref(), t));
    }

    /// Deadlines armed for live sessions, tunnels and waiting clients (not the metrics
    /// requests', so a scrape of a quiet process reads 0).
    fn live_timers(&self) -> usize {
        self.timers.count(|t| {
            !matches!(t.slot, Key::Scrape(_))
                && timer_is_live(&self.sessions, &self.listeners, None, t)
        })
    }

    /// Tunnels and waiting clients of every listener.
    fn mode_entries(&self) -> usize {
        self.listeners.iter().map(|(_, l)| l.entries()).sum()
    }

    /// Public clients waiting for a tunnel (they count against `max_sessions`).
    fn waiting_clients(&self) -> usize {
        self.listeners.iter().map(|(_, l)| l.waiting()).sum()
    }

    /// The connect timeout of listener `l`'s new sessions.
    fn connect_timeout(&self, l: usize) -> Option<Duration> {
        self.listeners.get(l).map(|l| l.policy.connect_timeout)
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
        let mut stops = 0;
        let (mut reload, mut snapshot) = (false, false);
        for signal in self.signals.pending() {
            match signal {
                SIGHUP => reload = true,
                SIGUSR1 => snapshot = true,
                _ => stops += 1,
            }
        }
        if snapshot {
            self.log_snapshot(now);
        }
        if stops == 0 {
            if reload && self.drain_until.is_none() {
                self.reload(now);
            }
            return;
        }
        if self.drain_until.is_some() || stops > 1 {
            warn!(
                "second signal: exiting now, {} sessions cut",
                self.live_sessions()
            );
            self.stop = Some(Stopped::Forced);
            return;
        }
        notify("STOPPING=1");
        for (_, p) in &mut self.ports {
            p.close(self.poll.registry());
        }
        self.ports.clear();
        // The metrics endpoint stays open: the drain can be watched, and /healthz says 503.
        let listeners: Vec<usize> = self.listeners.iter().map(|(l, _)| l).collect();
        for l in listeners {
            self.close_listener(l, now);
        }
        self.drain_until = Some(now + self.global.drain_timeout);
        info!(
            "stopping: listeners closed, {} sessions draining (up to {:?})",
            self.live_sessions(),
            self.global.drain_timeout
        );
    }

    /// Closes listener `l`: its tunnels and waiting clients go at once, its sessions
    /// finish (draining), and it is forgotten after the last one. Its ports must be gone.
    fn close_listener(&mut self, l: usize, now: Instant) {
        let registry = self.poll.registry();
        let Some(listener) = self.listeners.get_mut(l) else {
            return;
        };
        listener.closed = true;
        let gone = match &mut listener.kind {
            Kind::Forward(_) => Vec::new(),
            Kind::Relay(r) => r.drop_all(registry),
            Kind::Agent(a) => {
                a.drop_all(registry);
                Vec::new()
            }
        };
        for (id, addr, since) in gone {
            let reason = crate::core::reason::CloseReason::Shutdown;
            self.unserved(l, id, addr, since, now, reason);
        }
        self.forget_listener_if_done(l);
    }

    /// Removes a closed listener once nothing refers to it any more (while stopping, it
    /// stays to the end: its counters are still reported).
    fn forget_listener_if_done(&mut self, l: usize) {
        if self.drain_until.is_none()
            && self
                .listeners
                .get(l)
                .is_some_and(|x| x.closed && x.sessions == 0 && x.entries() == 0)
        {
            self.listeners.remove(l);
        }
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

    /// Per-pass upkeep of the modes (agents keep their tunnel pools full).
    fn upkeep(&mut self, now: Instant) {
        if self.drain_until.is_none() {
            self.agents_upkeep(now);
        }
    }
}

/// Writes one line to stdout (READY, RELOADED...) and flushes it.
fn print_line(line: &str) {
    let mut stdout = io::stdout().lock();
    if writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        warn!("cannot write to stdout: {line}");
    }
}

/// Tells the service manager (systemd) about a state change, when it is listening.
fn notify(state: &str) {
    if let Err(e) = crate::systemd::notify(state) {
        log::debug!(
            "cannot notify the service manager: {}",
            crate::os::net::describe(&e)
        );
    }
}

/// Whether a heap entry is still its owner's current deadline.
fn timer_is_live(
    sessions: &Slab<Entry>,
    listeners: &Slab<Listener>,
    metrics: Option<&metrics::Metrics>,
    t: &crate::core::timers::Entry<Key>,
) -> bool {
    match t.slot {
        Key::Session(slot) => sessions
            .get(slot)
            .is_some_and(|e| !e.closed && e.id == t.id && e.armed == Some(t.at)),
        Key::Tunnel(l, slot) => listeners
            .get(l)
            .is_some_and(|l| l.timer_is_live(true, slot, t.id, t.at)),
        Key::Waiting(l, slot) => listeners
            .get(l)
            .is_some_and(|l| l.timer_is_live(false, slot, t.id, t.at)),
        Key::Scrape(slot) => metrics.is_some_and(|m| m.timer_is_live(slot, t.id)),
    }
}
