//! Relay mode: agents open tunnels on the tunnel port and authenticate; public clients
//! arrive on one port per service and are paired with the oldest idle tunnel of that
//! service, or wait (bounded, with a deadline) for one.
//!
//! A paired tunnel becomes the upstream of an ordinary session: its preamble writes the
//! ATTACH frame first and awaits the agent's READY before relaying. Failed handshakes
//! are counted per source address; an address with too many in a minute is refused at
//! once for the rest of that minute (`core::failures`).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

#[cfg(feature = "tls")]
use super::handshake::Handshake;
use super::tls::note_first;
use super::{Action, Cx};
use crate::config::Relay;
use crate::core::failures::Admission;
use crate::core::reason::CloseReason;
use crate::core::session::{Preamble, Session};
use crate::core::stream::Readiness;
use crate::core::tunnel::{ready_reply, RelayTunnel, TunnelEnd, TunnelPolicy, TunnelStep};
use crate::os::link::Link;
use crate::os::net::{describe, Conn};
use crate::os::random;
#[cfg(feature = "tls")]
use crate::os::tls::{RelayTls, TlsStream};
use crate::proto::auth::Secret;
use crate::proto::tunnel;
use crate::server::owner::Owner;
use crate::server::sessions::{Registration, Route, Start};

mod ends;
mod stage;
mod tunnels;
mod waiting;

use stage::Stage;
use tunnels::Tunnels;
use waiting::{Waiting, WaitingEntry};

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
    /// The TLS identity tunnels are accepted with; `None`: plain tunnels.
    #[cfg(feature = "tls")]
    tls: Option<RelayTls>,
    tunnels: Tunnels,
    waiting: Waiting,
}

impl RelayState {
    /// A relay's fresh state; its TLS identity from its files, or a key made now.
    pub(super) fn new(cfg: &Relay) -> Result<RelayState, String> {
        let names: Vec<String> = cfg.public.iter().map(|s| s.name.clone()).collect();
        let n = names.len();
        #[cfg(feature = "tls")]
        let tls = stage::identity(cfg)?;
        #[cfg(not(feature = "tls"))]
        super::tls::plain(cfg.tunnel.tls, &format!("tunnels on {}", cfg.tunnel_listen))?;
        Ok(RelayState {
            secret: cfg.tunnel.secret.clone(),
            names,
            pair_timeout: cfg.pair_timeout,
            max_waiting: cfg.max_waiting,
            max_idle_tunnels: cfg.max_idle_tunnels,
            max_handshakes: cfg.max_handshakes,
            policy: cfg.tunnel.policy,
            #[cfg(feature = "tls")]
            tls,
            tunnels: Tunnels::new(n),
            waiting: Waiting::new(n),
        })
    }

    /// Takes new limits and timeouts (same secret and services: see `keeps_state`).
    pub(super) fn update(&mut self, cfg: &Relay) {
        self.pair_timeout = cfg.pair_timeout;
        self.max_waiting = cfg.max_waiting;
        self.max_idle_tunnels = cfg.max_idle_tunnels;
        self.max_handshakes = cfg.max_handshakes;
        self.policy = cfg.tunnel.policy;
    }

    /// An agent connected to the tunnel port: start its handshake.
    pub(super) fn open_tunnel(&mut self, cx: &mut Cx<'_>, conn: Conn, peer: SocketAddr) {
        let id = cx.ids.next();
        let admission = self.tunnels.failures.admission(peer.ip(), cx.now);
        if admission == Admission::Refuse {
            debug!("tunnel {id} from {peer}: refused, too many failed handshakes");
            // Owed no answer: a reset leaves no TIME-WAIT behind (see `close_tunnel`).
            conn.reset_on_close();
            return;
        }
        if let Some(victim) = self.tunnels.make_room(peer.ip(), self.max_handshakes) {
            self.close_tunnel(cx, victim, TunnelEnd::Evicted);
        }
        let nonce = match random::nonce() {
            Ok(n) => n,
            Err(e) => {
                warn!("tunnel {id} from {peer}: no random nonce: {}", describe(&e));
                return;
            }
        };
        let now = cx.now;
        #[cfg(feature = "tls")]
        let tls = self.tls.as_ref();
        let start = |c: Conn| {
            #[cfg(feature = "tls")]
            if let Some(tls) = tls {
                return Stage::Tls {
                    shake: Handshake::new(TlsStream::server(c, tls)),
                    nonce,
                    since: now,
                };
            }
            Stage::Tunnel(RelayTunnel::new(Link::from(c), nonce, now))
        };
        let inserted = self
            .tunnels
            .insert(cx.registry, cx.listener, id, conn, peer, start);
        match (inserted, admission) {
            (Ok(slot), Admission::Slow(delay)) => {
                debug!("tunnel {id} from {peer}: slowed {delay:?}, too many failed handshakes");
                self.tunnels.hold(cx, slot, now + delay);
            }
            (Ok(slot), _) => self.drive_tunnel(cx, slot),
            (Err(e), _) => warn!("tunnel {id}: cannot register: {}", describe(&e)),
        }
    }

    /// An event on a tunnel's socket.
    pub(super) fn on_tunnel_event(&mut self, cx: &mut Cx<'_>, slot: usize, ready: Readiness) {
        if let Some(t) = self.tunnels.slab.get_mut(slot) {
            t.stage.on_event(ready);
            self.drive_tunnel(cx, slot);
        }
    }

    /// A tunnel's deadline fired: a heartbeat is due, or the tunnel is dead.
    pub(super) fn on_tunnel_deadline(
        &mut self,
        cx: &mut Cx<'_>,
        slot: usize,
        id: u64,
        at: Instant,
    ) {
        let Some(t) = self.tunnels.slab.get_mut(slot) else {
            return;
        };
        if t.id != id || t.armed != Some(at) {
            return;
        }
        t.armed = None;
        if t.held_until.take().is_some() {
            // A slowed handshake starts now (its own deadline counts from the accept).
            return self.drive_tunnel(cx, slot);
        }
        let step = t.stage.expire(cx.now, &self.policy);
        self.tunnel_step(cx, slot, step);
    }

    fn drive_tunnel(&mut self, cx: &mut Cx<'_>, slot: usize) {
        let Some(t) = self.tunnels.slab.get_mut(slot) else {
            return;
        };
        if t.held_until.is_some() {
            return;
        }
        // A TLS handshake notes the peer's first byte itself, before it reads it.
        if t.handshaking && matches!(t.stage, Stage::Tunnel(_)) {
            note_first(&mut t.first, t.stage.tcp());
        }
        let step = match &mut t.stage {
            #[cfg(feature = "tls")]
            Stage::Tls { shake, .. } => match shake.drive(&mut t.first) {
                Ok(None) => TunnelStep::Waiting,
                Ok(Some((link, channel))) => {
                    t.stage.upgrade(link, channel);
                    return self.drive_tunnel(cx, slot);
                }
                Err(failed) => {
                    t.why = Some(failed.why);
                    TunnelStep::Closed(failed.end)
                }
            },
            Stage::Tunnel(tunnel) => tunnel.drive(cx.now, &self.secret, &self.names),
        };
        self.tunnel_step(cx, slot, step);
    }

    fn tunnel_step(&mut self, cx: &mut Cx<'_>, slot: usize, step: TunnelStep) {
        match step {
            TunnelStep::Waiting | TunnelStep::Attached(_) => {}
            TunnelStep::Authenticated(name) => return self.admit(cx, slot, &name),
            TunnelStep::Closed(end) => return self.close_tunnel(cx, slot, end),
        }
        if let Some(t) = self.tunnels.slab.get_mut(slot) {
            let deadline = t.stage.deadline(&self.policy);
            let owner = Owner::Tunnel {
                listener: cx.listener,
                slot,
            };
            cx.deadlines.arm_once(&mut t.armed, deadline, owner, t.id);
        }
    }

    /// A verified tunnel joins its service's idle queue (within the idle limit) and is
    /// paired with a waiting client if there is one.
    fn admit(&mut self, cx: &mut Cx<'_>, slot: usize, name: &str) {
        self.tunnels.verified(slot);
        if let Some(t) = self.tunnels.slab.get(slot) {
            self.tunnels.failures.authenticated(t.peer.ip(), cx.now);
        }
        let Some(service) = self.names.iter().position(|n| n == name) else {
            return;
        };
        let idle = self.tunnels.idle_len(service);
        let Some(t) = self.tunnels.slab.get_mut(slot) else {
            return;
        };
        let Some(tunnel) = t.stage.tunnel() else {
            return;
        };
        if idle >= self.max_idle_tunnels {
            info!(
                "tunnel {} from {} for {name}: refused, {idle} idle tunnels already",
                t.id, t.peer
            );
            let step = tunnel.deny(TunnelEnd::Denied);
            return self.tunnel_step(cx, slot, step);
        }
        tunnel.admit(cx.now, &self.secret);
        t.service = Some(service);
        debug!("tunnel {} from {} for {name}: idle", t.id, t.peer);
        self.tunnels.push_idle(service, slot, false);
        // Bytes that came with the hello (a heartbeat) raise no new edge: read on now.
        self.drive_tunnel(cx, slot);
        self.pair_waiting(cx, service);
    }

    /// A public client of `service` arrived: pair it at once, or let it wait.
    pub(super) fn open_public(
        &mut self,
        cx: &mut Cx<'_>,
        service: usize,
        conn: Conn,
        addr: SocketAddr,
        guard: bool,
    ) {
        let id = cx.ids.next();
        let client = WaitingEntry {
            id,
            conn,
            addr,
            service,
            since: cx.now,
            guard,
        };
        if let Some(tunnel) = self.tunnels.pop_idle(service) {
            return self.pair(cx, client, Registration::New, tunnel);
        }
        if self.waiting.queued(service) >= self.max_waiting {
            return cx.unserved(id, addr, cx.now, CloseReason::Limit);
        }
        match self.waiting.add(cx.registry, cx.listener, client) {
            Ok(slot) => {
                let owner = Owner::Waiting {
                    listener: cx.listener,
                    slot,
                };
                cx.deadlines.arm(cx.now + self.pair_timeout, owner, id);
            }
            Err((_, e)) => {
                warn!("session {id}: cannot register: {}", describe(&e));
                cx.unserved(id, addr, cx.now, CloseReason::ClientError);
            }
        }
    }

    /// Pairs waiting clients of `service` with its idle tunnels, oldest first.
    fn pair_waiting(&mut self, cx: &mut Cx<'_>, service: usize) {
        while let Some(tunnel) = self.tunnels.pop_idle(service) {
            let Some(client) = self.waiting.pop(service) else {
                // Nobody waits: the tunnel stays first in line.
                return self.tunnels.push_idle(service, tunnel, true);
            };
            self.pair(cx, client, Registration::Moved, tunnel);
        }
    }

    /// Makes a session of a client and an idle tunnel: ATTACH goes first, and relaying
    /// waits for the agent's READY.
    fn pair(
        &mut self,
        cx: &mut Cx<'_>,
        client: WaitingEntry,
        registered: Registration,
        tunnel: usize,
    ) {
        let Some(t) = self.tunnels.remove(tunnel) else {
            return;
        };
        let Some(stream) = t.stage.into_tunnel() else {
            return;
        };
        let (frame, n) = tunnel::attach(client.addr);
        let preamble = Preamble {
            to_upstream: Some(Cow::Owned(frame[..n].to_vec())),
            reply: Some(ready_reply),
            ..Preamble::default()
        };
        let session = Session::established(Link::from(client.conn), stream.into_stream(), cx.now)
            .with_preamble(preamble);
        debug!(
            "session {}: paired with tunnel {} from {}",
            client.id, t.id, t.peer
        );
        cx.actions.push(Action::Start(Start {
            listener: cx.listener,
            id: client.id,
            policy: Rc::clone(cx.policy),
            session,
            client_addr: client.addr,
            upstream_addr: t.peer,
            route: Route::fixed(),
            client: registered,
            upstream: Registration::Moved,
            client_ready: Readiness::default(),
            upstream_ready: Readiness::default(),
            announce: None,
            guard: client.guard,
            dest: None,
        }));
    }

    /// A waiting client's socket changed: if it went away, forget it.
    pub(super) fn on_waiting_event(&mut self, cx: &mut Cx<'_>, slot: usize) {
        if let Some((w, reason)) = self.waiting.left(cx.registry, slot) {
            cx.unserved(w.id, w.addr, w.since, reason);
        }
    }

    /// A waiting client's pair timeout fired.
    pub(super) fn on_waiting_deadline(&mut self, cx: &mut Cx<'_>, slot: usize, id: u64) {
        if let Some(w) = self.waiting.take(cx.registry, slot, id) {
            let service = self.names.get(w.service).map_or("?", String::as_str);
            debug!("session {}: no tunnel for {service} in time", w.id);
            cx.unserved(w.id, w.addr, w.since, CloseReason::PairTimeout);
        }
    }

    /// Closing: idle tunnels and waiting clients go at once.
    pub(super) fn close(&mut self, cx: &mut Cx<'_>) {
        self.tunnels.drop_all(cx.registry);
        for w in self.waiting.drop_all(cx.registry) {
            cx.unserved(w.id, w.addr, w.since, CloseReason::Shutdown);
        }
    }

    /// Idle tunnels per service, for metrics.
    pub(super) fn idle_tunnels(&self) -> Vec<(&str, u64)> {
        let counts = self.tunnels.idle_counts(self.names.len());
        self.names.iter().map(String::as_str).zip(counts).collect()
    }

    pub(super) fn handshakes(&self) -> usize {
        self.tunnels.handshakes()
    }

    pub(super) fn entries(&self) -> usize {
        self.tunnels.slab.len() + self.waiting.len()
    }

    pub(super) fn waiting_clients(&self) -> usize {
        self.waiting.len()
    }

    pub(super) fn tunnel_timer_is_live(&self, slot: usize, id: u64, at: Instant) -> bool {
        self.tunnels.timer_is_live(slot, id, at)
    }

    pub(super) fn waiting_timer_is_live(&self, slot: usize, id: u64) -> bool {
        self.waiting.timer_is_live(slot, id)
    }
}
