//! Relay mode: agents open tunnels on the tunnel listener and authenticate; public
//! clients arrive on one listener per service and are paired with the oldest idle tunnel
//! of that service, or wait (bounded, with a deadline) for one.
//!
//! A paired tunnel becomes the upstream of an ordinary session: the ATTACH frame goes out
//! first, the session relays once the agent answers READY. Failed handshakes are counted
//! per source address; an address with too many in a minute is refused at once for the
//! rest of that minute.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::{Interest, Registry};
use slab::Slab;

use super::entry::{Registration, Start};
use super::listener::Kind;
use super::token::Target;
use super::{Key, Server};
use crate::config::Relay;
use crate::core::pipe::Bytes;
use crate::core::reason::CloseReason;
use crate::core::session::{Preamble, Session};
use crate::core::stream::Readiness;
use crate::core::tunnel::{ready_reply, RelayTunnel, TunnelEnd, TunnelPolicy, TunnelStep};
use crate::os::net::{describe, Conn};
use crate::os::random;
use crate::proto::auth::Secret;
use crate::proto::tunnel;

/// Failed handshakes from one address within [`FAILURE_WINDOW`] before it is refused.
const FAILURE_LIMIT: u32 = 10;
/// The window of the failure count.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most (older entries are forgotten first).
const FAILURE_TABLE: usize = 4096;
/// Warnings about failed handshakes per [`FAILURE_WINDOW`] at most.
const WARNINGS_PER_WINDOW: u32 = 20;

/// A tunnel before pairing.
#[derive(Debug)]
struct TunnelEntry {
    id: u64,
    tunnel: RelayTunnel<Conn>,
    peer: SocketAddr,
    /// Set once admitted into a service's idle queue.
    service: Option<usize>,
    /// Counted in `handshakes` until verified.
    handshaking: bool,
    armed: Option<Instant>,
}

/// A public client waiting for a tunnel.
#[derive(Debug)]
struct WaitingEntry {
    id: u64,
    conn: Conn,
    addr: SocketAddr,
    service: usize,
    since: Instant,
}

/// Failed handshakes per source address, and the rate limit on warnings about them.
#[derive(Debug, Default)]
struct Failures {
    by_ip: HashMap<IpAddr, (u32, Instant)>,
    total: u64,
    warned: u32,
    suppressed: u64,
    window: Option<Instant>,
}

impl Failures {
    fn record(&mut self, ip: IpAddr, now: Instant) {
        self.total += 1;
        if self.by_ip.len() >= FAILURE_TABLE && !self.by_ip.contains_key(&ip) {
            self.by_ip
                .retain(|_, (_, start)| now.duration_since(*start) < FAILURE_WINDOW);
            if self.by_ip.len() >= FAILURE_TABLE {
                self.by_ip.clear();
            }
        }
        let e = self.by_ip.entry(ip).or_insert((0, now));
        if now.duration_since(e.1) >= FAILURE_WINDOW {
            *e = (0, now);
        }
        e.0 += 1;
    }

    fn blocked(&self, ip: IpAddr, now: Instant) -> bool {
        self.by_ip.get(&ip).is_some_and(|&(count, start)| {
            count >= FAILURE_LIMIT && now.duration_since(start) < FAILURE_WINDOW
        })
    }

    /// True if a warning may be logged now (at most [`WARNINGS_PER_WINDOW`] a window).
    fn may_warn(&mut self, now: Instant) -> bool {
        if self
            .window
            .is_none_or(|w| now.duration_since(w) >= FAILURE_WINDOW)
        {
            if self.suppressed > 0 {
                warn!(
                    "{} more failed tunnel handshakes were not logged ({} in all)",
                    self.suppressed, self.total
                );
            }
            self.window = Some(now);
            self.warned = 0;
            self.suppressed = 0;
        }
        self.warned += 1;
        if self.warned > WARNINGS_PER_WINDOW {
            self.suppressed += 1;
            return false;
        }
        true
    }
}

/// Relay mode's own state.
#[derive(Debug)]
pub(super) struct RelayState {
    secret: Secret,
    names: Vec<String>,
    pair_timeout: Duration,
    max_waiting: usize,
    max_idle_tunnels: usize,
    max_handshakes: usize,
    policy: TunnelPolicy,
    tunnels: Slab<TunnelEntry>,
    waiting: Slab<WaitingEntry>,
    /// Per service: idle tunnels, oldest first, as (slot, id).
    idle: Vec<VecDeque<(usize, u64)>>,
    /// Per service: waiting clients, oldest first, as (slot, id).
    queue: Vec<VecDeque<(usize, u64)>>,
    handshakes: usize,
    failures: Failures,
}

impl RelayState {
    pub(super) fn new(cfg: Relay) -> RelayState {
        let names: Vec<String> = cfg.public.iter().map(|s| s.name.clone()).collect();
        let n = names.len();
        RelayState {
            secret: cfg.tunnel.secret,
            names,
            pair_timeout: cfg.pair_timeout,
            max_waiting: cfg.max_waiting,
            max_idle_tunnels: cfg.max_idle_tunnels,
            max_handshakes: cfg.max_handshakes,
            policy: cfg.tunnel.policy,
            tunnels: Slab::new(),
            waiting: Slab::new(),
            idle: vec![VecDeque::new(); n],
            queue: vec![VecDeque::new(); n],
            handshakes: 0,
            failures: Failures::default(),
        }
    }

    /// Takes new limits and timeouts (same secret and services: checked by the caller).
    pub(super) fn update(&mut self, cfg: &Relay) {
        self.pair_timeout = cfg.pair_timeout;
        self.max_waiting = cfg.max_waiting;
        self.max_idle_tunnels = cfg.max_idle_tunnels;
        self.max_handshakes = cfg.max_handshakes;
        self.policy = cfg.tunnel.policy;
    }

    /// Idle tunnels per service, for metrics.
    pub(super) fn idle_tunnels(&self) -> Vec<(&str, u64)> {
        let mut counts = vec![0u64; self.names.len()];
        for (_, t) in &self.tunnels {
            if let Some(s) = t.service.filter(|_| t.tunnel.is_idle()) {
                counts[s] += 1;
            }
        }
        self.names.iter().map(String::as_str).zip(counts).collect()
    }

    /// Tunnels in their handshake.
    pub(super) fn handshakes(&self) -> usize {
        self.handshakes
    }

    pub(super) fn entries(&self) -> usize {
        self.tunnels.len() + self.waiting.len()
    }

    pub(super) fn waiting_clients(&self) -> usize {
        self.waiting.len()
    }

    pub(super) fn timer_is_live(&self, tunnel: bool, slot: usize, id: u64, at: Instant) -> bool {
        if tunnel {
            self.tunnels
                .get(slot)
                .is_some_and(|t| t.id == id && t.armed == Some(at))
        } else {
            self.waiting.get(slot).is_some_and(|w| w.id == id)
        }
    }

    /// Stopping: idle tunnels and waiting clients go at once. Returns the clients that
    /// were waiting, as (id, address, since), for their close lines.
    pub(super) fn drop_all(&mut self, registry: &Registry) -> Vec<(u64, SocketAddr, Instant)> {
        for mut t in self.tunnels.drain() {
            let _ = registry.deregister(t.tunnel.stream().source());
        }
        let mut gone = Vec::with_capacity(self.waiting.len());
        for mut w in self.waiting.drain() {
            let _ = registry.deregister(w.conn.source());
            gone.push((w.id, w.addr, w.since));
        }
        self.idle.iter_mut().for_each(VecDeque::clear);
        self.queue.iter_mut().for_each(VecDeque::clear);
        self.handshakes = 0;
        gone
    }

    /// Pops the oldest idle tunnel of `service` that is still there and ready to pair.
    /// Closed tunnels are dropped from the queue; one still writing a heartbeat keeps its
    /// place at the back.
    fn pop_idle(&mut self, service: usize) -> Option<usize> {
        for _ in 0..self.idle[service].len() {
            let (slot, id) = self.idle[service].pop_front()?;
            match self.tunnels.get(slot) {
                Some(t) if t.id == id && t.tunnel.is_idle() => return Some(slot),
                Some(t) if t.id == id => self.idle[service].push_back((slot, id)),
                _ => {}
            }
        }
        None
    }

    /// Pops the oldest waiting client of `service` that is still there.
    fn pop_waiting(&mut self, service: usize) -> Option<WaitingEntry> {
        while let Some((slot, id)) = self.queue[service].pop_front() {
            if self.waiting.get(slot).is_some_and(|w| w.id == id) {
                return Some(self.waiting.remove(slot));
            }
        }
        None
    }
}

impl Server {
    fn relay(&mut self, l: usize) -> Option<&mut RelayState> {
        self.relay_and_registry(l).map(|(_, r)| r)
    }

    fn relay_and_registry(&mut self, l: usize) -> Option<(&Registry, &mut RelayState)> {
        match self.listeners.get_mut(l).map(|l| &mut l.kind) {
            Some(Kind::Relay(r)) => Some((self.poll.registry(), r)),
            _ => None,
        }
    }

    /// An agent connected to the tunnel listener: start its handshake.
    pub(super) fn open_tunnel(&mut self, l: usize, mut conn: Conn, peer: SocketAddr, now: Instant) {
        let id = self.new_id();
        let Some((registry, r)) = self.relay_and_registry(l) else {
            return;
        };
        if r.failures.blocked(peer.ip(), now) {
            debug!("tunnel {id} from {peer}: refused, too many failed handshakes");
            return;
        }
        if r.handshakes >= r.max_handshakes {
            if r.failures.may_warn(now) {
                warn!(
                    "tunnel {id} from {peer}: refused, {} handshakes in progress",
                    r.handshakes
                );
            }
            return;
        }
        let nonce = match random::nonce() {
            Ok(n) => n,
            Err(e) => {
                warn!("tunnel {id} from {peer}: no random nonce: {}", describe(&e));
                return;
            }
        };
        let entry = r.tunnels.vacant_entry();
        let slot = entry.key();
        let both = Interest::READABLE | Interest::WRITABLE;
        let token = Target::Tunnel { listener: l, slot }.token();
        if let Err(e) = registry.register(conn.source(), token, both) {
            warn!("tunnel {id}: cannot register: {}", describe(&e));
            return;
        }
        entry.insert(TunnelEntry {
            id,
            tunnel: RelayTunnel::new(conn, nonce, now),
            peer,
            service: None,
            handshaking: true,
            armed: None,
        });
        r.handshakes += 1;
        self.drive_relay_tunnel(l, slot, now);
    }

    /// An event on a tunnel's socket (relay or agent).
    pub(super) fn on_tunnel_event(
        &mut self,
        l: usize,
        slot: usize,
        ready: Readiness,
        now: Instant,
    ) {
        match self.listeners.get_mut(l).map(|l| &mut l.kind) {
            Some(Kind::Relay(r)) => {
                if let Some(t) = r.tunnels.get_mut(slot) {
                    t.tunnel.on_event(ready);
                    self.drive_relay_tunnel(l, slot, now);
                }
            }
            Some(Kind::Agent(_)) => self.on_agent_tunnel_event(l, slot, ready, now),
            _ => {}
        }
    }

    /// A tunnel's deadline fired (relay or agent).
    pub(super) fn on_tunnel_deadline(
        &mut self,
        l: usize,
        slot: usize,
        id: u64,
        at: Instant,
        now: Instant,
    ) {
        match self.listeners.get_mut(l).map(|l| &mut l.kind) {
            Some(Kind::Relay(r)) => {
                let policy = r.policy;
                let Some(t) = r.tunnels.get_mut(slot) else {
                    return;
                };
                if t.id != id || t.armed != Some(at) {
                    return;
                }
                t.armed = None;
                let step = t.tunnel.expire(now, &policy);
                self.relay_tunnel_step(l, slot, step, now);
            }
            Some(Kind::Agent(_)) => self.on_agent_tunnel_deadline(l, slot, id, at, now),
            _ => {}
        }
    }

    fn drive_relay_tunnel(&mut self, l: usize, slot: usize, now: Instant) {
        let Some(r) = self.relay(l) else { return };
        let (secret, names) = (&r.secret, &r.names);
        let Some(t) = r.tunnels.get_mut(slot) else {
            return;
        };
        let step = t.tunnel.drive(now, secret, names);
        self.relay_tunnel_step(l, slot, step, now);
    }

    fn relay_tunnel_step(&mut self, l: usize, slot: usize, step: TunnelStep, now: Instant) {
        match step {
            TunnelStep::Waiting | TunnelStep::Attached(_) => {}
            TunnelStep::Authenticated(name) => return self.admit_tunnel(l, slot, &name, now),
            TunnelStep::Closed(end) => return self.close_relay_tunnel(l, slot, end, now),
        }
        let Some(r) = self.relay(l) else { return };
        let policy = r.policy;
        let Some(t) = r.tunnels.get_mut(slot) else {
            return;
        };
        let deadline = t.tunnel.deadline(&policy);
        if t.armed.is_none_or(|armed| deadline < armed) {
            t.armed = Some(deadline);
            let id = t.id;
            self.timers.arm(deadline, Key::Tunnel(l, slot), id);
        }
    }

    fn admit_tunnel(&mut self, l: usize, slot: usize, name: &str, now: Instant) {
        let Some(r) = self.relay(l) else { return };
        if let Some(t) = r.tunnels.get_mut(slot) {
            t.handshaking = false;
            r.handshakes = r.handshakes.saturating_sub(1);
        }
        let Some(service) = r.names.iter().position(|n| n == name) else {
            return;
        };
        // Forget tunnels that died while idle, so the queue stays bounded.
        let tunnels = &r.tunnels;
        r.idle[service].retain(|&(s, id)| tunnels.get(s).is_some_and(|t| t.id == id));
        let idle = r.idle[service].len();
        let Some(t) = r.tunnels.get_mut(slot) else {
            return;
        };
        if idle >= r.max_idle_tunnels {
            info!(
                "tunnel {} from {} for {name}: refused, {idle} idle tunnels already",
                t.id, t.peer
            );
            let step = t.tunnel.deny(TunnelEnd::Denied);
            return self.relay_tunnel_step(l, slot, step, now);
        }
        t.tunnel.admit(now, &r.secret);
        t.service = Some(service);
        debug!("tunnel {} from {} for {name}: idle", t.id, t.peer);
        r.idle[service].push_back((slot, t.id));
        // Bytes that came with the hello (a heartbeat) raise no new edge: read on now.
        self.drive_relay_tunnel(l, slot, now);
        self.pair_waiting(l, service, now);
    }

    fn close_relay_tunnel(&mut self, l: usize, slot: usize, end: TunnelEnd, now: Instant) {
        let registry = self.poll.registry();
        let Some(listener) = self.listeners.get_mut(l) else {
            return;
        };
        let counters = &mut listener.counters;
        let Kind::Relay(r) = &mut listener.kind else {
            return;
        };
        let Some(mut t) = r.tunnels.try_remove(slot) else {
            return;
        };
        let _ = registry.deregister(t.tunnel.stream().source());
        if t.handshaking {
            r.handshakes = r.handshakes.saturating_sub(1);
        }
        match (t.service, end) {
            (Some(service), _) => info!(
                "tunnel {} from {} for {}: {}",
                t.id,
                t.peer,
                r.names[service],
                end.as_str()
            ),
            // Refused at the idle-tunnel limit (logged when refused): not a failure.
            (None, TunnelEnd::Denied) => {}
            // Every other unfinished handshake counts against its source: a wrong proof,
            // bad bytes, a trickle cut at the deadline, a peer that hung up half-way.
            (None, _) => {
                if end == TunnelEnd::AuthFailed {
                    counters.auth_failures += 1;
                } else {
                    counters.handshake_failures += 1;
                }
                r.failures.record(t.peer.ip(), now);
                if r.failures.may_warn(now) {
                    let what = if end == TunnelEnd::AuthFailed {
                        "authentication failed"
                    } else {
                        "handshake failed"
                    };
                    warn!("tunnel {} from {}: {what} ({})", t.id, t.peer, end.as_str());
                }
            }
        }
    }

    /// A public client of `service` arrived: pair it at once, or let it wait.
    pub(super) fn open_public(
        &mut self,
        l: usize,
        service: usize,
        mut conn: Conn,
        addr: SocketAddr,
        now: Instant,
    ) {
        let id = self.new_id();
        let Some((registry, r)) = self.relay_and_registry(l) else {
            return;
        };
        if let Some(tunnel) = r.pop_idle(service) {
            let client = WaitingEntry {
                id,
                conn,
                addr,
                service,
                since: now,
            };
            return self.pair(l, client, Registration::New, tunnel, now);
        }
        // Forget clients that left or timed out, so the queue stays bounded.
        let waiting = &r.waiting;
        r.queue[service].retain(|&(s, wid)| waiting.get(s).is_some_and(|w| w.id == wid));
        let queued = r.queue[service].len();
        if queued >= r.max_waiting {
            self.unserved(l, id, addr, now, now, CloseReason::Limit);
            return;
        }
        let entry = r.waiting.vacant_entry();
        let slot = entry.key();
        if let Err(e) = registry.register(
            conn.source(),
            Target::Waiting { listener: l, slot }.token(),
            Interest::READABLE,
        ) {
            warn!("session {id}: cannot register: {}", describe(&e));
            self.unserved(l, id, addr, now, now, CloseReason::ClientError);
            return;
        }
        entry.insert(WaitingEntry {
            id,
            conn,
            addr,
            service,
            since: now,
        });
        r.queue[service].push_back((slot, id));
        let deadline = now + r.pair_timeout;
        self.timers.arm(deadline, Key::Waiting(l, slot), id);
    }

    /// Pairs waiting clients of `service` with its idle tunnels, oldest first.
    fn pair_waiting(&mut self, l: usize, service: usize, now: Instant) {
        loop {
            let Some(r) = self.relay(l) else { return };
            let Some(tunnel) = r.pop_idle(service) else {
                return;
            };
            let Some(client) = r.pop_waiting(service) else {
                // Nobody waits: the tunnel stays first in line.
                let id = r.tunnels[tunnel].id;
                r.idle[service].push_front((tunnel, id));
                return;
            };
            self.pair(l, client, Registration::Moved, tunnel, now);
        }
    }

    /// Makes a session of a client and an idle tunnel: ATTACH goes first.
    fn pair(
        &mut self,
        l: usize,
        client: WaitingEntry,
        registered: Registration,
        tunnel_slot: usize,
        now: Instant,
    ) {
        let Some(r) = self.relay(l) else { return };
        let Some(t) = r.tunnels.try_remove(tunnel_slot) else {
            return;
        };
        let (frame, n) = tunnel::attach(client.addr);
        let session = Session::established(client.conn, t.tunnel.into_stream(), now).with_preamble(
            Preamble {
                to_upstream: Some(Bytes::Owned(frame[..n].to_vec())),
                reply: Some(ready_reply),
                ..Preamble::default()
            },
        );
        debug!(
            "session {}: paired with tunnel {} from {}",
            client.id, t.id, t.peer
        );
        let start = Start {
            listener: l,
            id: client.id,
            session,
            client_addr: client.addr,
            upstream_addr: t.peer,
            upstream_index: None,
            client: registered,
            upstream: Registration::Moved,
            client_ready: Readiness::default(),
        };
        self.start_session(start, now);
    }

    /// A waiting client's socket changed: if it went away, forget it.
    pub(super) fn on_waiting_event(&mut self, l: usize, slot: usize, now: Instant) {
        let Some((registry, r)) = self.relay_and_registry(l) else {
            return;
        };
        let Some(w) = r.waiting.get_mut(slot) else {
            return;
        };
        let mut probe = [0u8; 1];
        // Peek: bytes stay for the session; only an end is acted on.
        let gone = match w.conn.source().peek(&mut probe) {
            Ok(0) => Some(CloseReason::ClientEof),
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => None,
            Err(_) => Some(CloseReason::ClientReset),
        };
        if let Some(reason) = gone {
            let mut w = r.waiting.remove(slot);
            let _ = registry.deregister(w.conn.source());
            self.unserved(l, w.id, w.addr, w.since, now, reason);
        }
    }

    /// A waiting client's pair timeout fired.
    pub(super) fn on_waiting_deadline(&mut self, l: usize, slot: usize, id: u64, now: Instant) {
        let Some((registry, r)) = self.relay_and_registry(l) else {
            return;
        };
        if r.waiting.get(slot).is_none_or(|w| w.id != id) {
            return;
        }
        let mut w = r.waiting.remove(slot);
        let _ = registry.deregister(w.conn.source());
        debug!(
            "session {}: no tunnel for {} in time",
            w.id, r.names[w.service]
        );
        self.unserved(l, w.id, w.addr, w.since, now, CloseReason::PairTimeout);
    }
}
