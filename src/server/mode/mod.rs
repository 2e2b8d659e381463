//! What each mode does with its connections, behind one enum dispatched here.
//!
//! A mode's state machine gets a context ([`Cx`]) of what it may touch (the poller to
//! register its own sockets, the deadline heap, ids, its listener's counters and policy)
//! and answers with [`Action`]s the loop applies afterwards: start a session, record a
//! client that was never served, tell that tunnels came up, stop the process. It never
//! sees the sessions, the other listeners or the clock (`cx.now` is the pass's).

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use mio::Registry;

use super::owner::Owner;
use super::port::Role;
use super::resolver::{Answer, Resolver};
use super::sessions::{Attempt, Closed, Dialed, Redial, Start};
use super::Stopped;
use crate::config::sockets::SocketOptions;
use crate::config::{self, Mode};
use crate::core::session::Policy;
use crate::core::stream::Readiness;
use crate::core::timers::Timers;
use crate::os::net::{Conn, Tuning};
use crate::stats::upstream::UpstreamView;
use crate::stats::Counters;

mod agent;
mod dynamic;
mod forward;
#[cfg(feature = "tls")]
mod handshake;
mod preface;
mod relay;
mod tls;
mod upstreams;

use upstreams::Upstreams;

use agent::AgentState;
use dynamic::DynamicState;
use forward::ForwardState;
use preface::{Expect, Prefaces};
use relay::RelayState;

/// Ids of sessions, tunnels and waiting clients (in their log lines).
#[derive(Debug)]
pub(super) struct Ids(u64);

impl Ids {
    pub(super) fn new() -> Ids {
        Ids(1)
    }

    /// A fresh id.
    pub(super) fn next(&mut self) -> u64 {
        let id = self.0;
        self.0 += 1;
        id
    }
}

/// What a mode may touch while it handles something.
#[derive(Debug)]
pub(super) struct Cx<'a> {
    pub(super) registry: &'a Registry,
    pub(super) deadlines: &'a mut Timers<Owner>,
    pub(super) ids: &'a mut Ids,
    /// The process's name resolver.
    pub(super) resolver: &'a mut Resolver,
    /// The pass's instant.
    pub(super) now: Instant,
    /// The listener's slot.
    pub(super) listener: usize,
    /// What the listener's new sessions run with.
    pub(super) policy: &'a Rc<Policy>,
    /// Keepalive and TCP_USER_TIMEOUT of the listener's connections.
    pub(super) sockets: &'a SocketOptions,
    pub(super) counters: &'a mut Counters,
    /// What the loop does afterwards, in order.
    pub(super) actions: &'a mut Vec<Action>,
}

/// What a mode asks the loop to do.
// A `Start` carries its session by value: actions live only in the short list one mode
// call returns, and boxing would cost an allocation per session started.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Action {
    /// Start a session.
    Start(Start),
    /// Record the close of a client that never became a session.
    Unserved(Closed),
    /// A session whose connect failed goes on with this connection (to another member
    /// of its group, its tries counting it).
    Redial(Redial, Dialed),
    /// A session whose connect failed has no upstream left: it closes with this failure.
    FailConnect(Redial, crate::core::stream::ConnectFailure),
    /// A service's tunnels authenticated: READY may be printed.
    Up,
    /// Stop the process (`--exit-on-disconnect`).
    Stop(Stopped),
}

impl Cx<'_> {
    /// The listener's keepalive and TCP_USER_TIMEOUT, for the connections it dials.
    pub(super) fn tuning(&self) -> Tuning {
        super::port::tuning(self.sockets)
    }

    /// Records the close of a client of this listener that was never served.
    pub(super) fn unserved(
        &mut self,
        id: u64,
        client: SocketAddr,
        since: Instant,
        reason: crate::core::reason::CloseReason,
    ) {
        let age = self.now.saturating_duration_since(since);
        let closed = Closed::unserved(self.listener, id, client, age, reason);
        self.actions.push(Action::Unserved(closed));
    }
}

/// A listener's mode and its own state, and its clients awaiting a PROXY header.
#[derive(Debug)]
pub(super) struct ModeState {
    state: State,
    prefaces: Prefaces,
}

/// The states of the modes (private: the loop sees only [`ModeState`]).
#[derive(Debug)]
enum State {
    Forward(Box<ForwardState>),
    Relay(Box<RelayState>),
    Agent(Box<AgentState>),
    Dynamic(Box<DynamicState>),
}

impl ModeState {
    /// A mode's fresh state for `listener`; an error when a relay's or agent's TLS
    /// configuration cannot be made (its files were checked when the configuration was
    /// read: a failed random source, say).
    pub(super) fn new(listener: &config::Listener, now: Instant) -> Result<ModeState, String> {
        let state = match &listener.mode {
            Mode::Forward(f) => State::Forward(Box::new(ForwardState::new(listener, f, now))),
            Mode::Relay(r) => State::Relay(Box::new(RelayState::new(r)?)),
            Mode::Agent(a) => State::Agent(Box::new(AgentState::new(listener, a, now)?)),
            Mode::Connect(d) | Mode::Socks(d) => {
                State::Dynamic(Box::new(DynamicState::new(&listener.mode, d)))
            }
        };
        Ok(ModeState {
            state,
            prefaces: Prefaces::new(proxy_accept(&listener.mode)),
        })
    }

    /// The listener's upstream groups, if its mode has any.
    fn upstreams(&mut self) -> Option<&mut Upstreams> {
        match &mut self.state {
            State::Forward(f) => Some(f.upstreams()),
            State::Agent(a) => Some(a.upstreams()),
            State::Relay(_) | State::Dynamic(_) => None,
        }
    }

    fn upstreams_ref(&self) -> Option<&Upstreams> {
        match &self.state {
            State::Forward(f) => Some(f.upstreams_ref()),
            State::Agent(a) => Some(a.upstreams_ref()),
            State::Relay(_) | State::Dynamic(_) => None,
        }
    }

    /// Every member of the listener's groups, as the views show them.
    pub(super) fn upstream_views<'a>(
        &'a self,
        listener: &'a str,
        now: Instant,
    ) -> Vec<UpstreamView<'a>> {
        self.upstreams_ref()
            .map_or_else(Vec::new, |u| u.views(listener, now))
    }

    /// A connection accepted on one of the listener's ports: held until its PROXY
    /// header is in when it must send one, else opened.
    pub(super) fn on_accept(&mut self, cx: &mut Cx<'_>, role: &Role, conn: Conn, addr: SocketAddr) {
        match self.prefaces.expect(role, addr) {
            Expect::Header => self.prefaces.hold(cx, conn, addr, role.clone()),
            Expect::Plain => self.open(cx, role, conn, addr, false),
            Expect::NoHeader => self.open(cx, role, conn, addr, true),
        }
    }

    /// Opens an accepted client (its address from its header, if it sent one); `guard`:
    /// its first bytes must not be a PROXY header.
    fn open(&mut self, cx: &mut Cx<'_>, role: &Role, conn: Conn, addr: SocketAddr, guard: bool) {
        match (&mut self.state, role) {
            (State::Forward(f), _) => f.open(cx, conn, addr, guard),
            (State::Dynamic(d), _) => d.open(cx, conn, addr),
            (State::Relay(r), Role::Tunnel) => r.open_tunnel(cx, conn, addr),
            (State::Relay(r), Role::Public(service, _)) => {
                r.open_public(cx, *service, conn, addr, guard)
            }
            _ => {}
        }
    }

    /// An event on a socket the mode owns.
    pub(super) fn on_event(&mut self, cx: &mut Cx<'_>, owner: Owner, ready: Readiness) {
        if let Owner::Preface { slot, .. } = owner {
            if let Some((conn, client, role)) = self.prefaces.on_event(cx, slot) {
                self.open(cx, &role, conn, client, false);
            }
            return;
        }
        match (&mut self.state, owner) {
            (State::Relay(r), Owner::Tunnel { slot, .. }) => r.on_tunnel_event(cx, slot, ready),
            (State::Relay(r), Owner::Waiting { slot, .. }) => r.on_waiting_event(cx, slot),
            (State::Agent(a), Owner::Tunnel { slot, .. }) => a.on_tunnel_event(cx, slot, ready),
            (State::Dynamic(d), Owner::Handshake { slot, .. }) => d.on_event(cx, slot, ready),
            (_, Owner::Upstream { slot, .. }) => {
                if let Some(u) = self.upstreams() {
                    u.on_held_event(cx, slot, ready);
                }
            }
            _ => {}
        }
    }

    /// A deadline of something the mode owns fired.
    pub(super) fn on_deadline(&mut self, cx: &mut Cx<'_>, owner: Owner, id: u64, at: Instant) {
        if let Owner::Preface { slot, .. } = owner {
            return self.prefaces.on_deadline(cx, slot, id);
        }
        match (&mut self.state, owner) {
            (State::Relay(r), Owner::Tunnel { slot, .. }) => r.on_tunnel_deadline(cx, slot, id, at),
            (State::Relay(r), Owner::Waiting { slot, .. }) => r.on_waiting_deadline(cx, slot, id),
            (State::Agent(a), Owner::Tunnel { slot, .. }) => a.on_tunnel_deadline(cx, slot, id, at),
            (State::Dynamic(d), Owner::Handshake { slot, .. }) => d.on_deadline(cx, slot, id, at),
            (_, Owner::Upstream { slot, .. }) => {
                if let Some(u) = self.upstreams() {
                    u.on_held_deadline(cx, slot, id);
                }
            }
            _ => {}
        }
    }

    /// Per-pass upkeep: an agent keeps its tunnels open; upstream groups keep their
    /// warm connections, checks and look-ups going.
    pub(super) fn upkeep(&mut self, cx: &mut Cx<'_>) {
        debug_assert!(self.needs_upkeep());
        if let State::Agent(a) = &mut self.state {
            a.upkeep(cx);
        }
        if let Some(u) = self.upstreams() {
            u.upkeep(cx);
        }
    }

    /// Whether [`upkeep`](Self::upkeep) has work to do: agents dial tunnels, groups
    /// with warm connections, checks or names have work.
    pub(super) fn needs_upkeep(&self) -> bool {
        matches!(self.state, State::Agent(_))
            || self.upstreams_ref().is_some_and(Upstreams::needs_upkeep)
    }

    /// A session's connect failed: another member of its group, or its close.
    pub(super) fn redial(&mut self, cx: &mut Cx<'_>, r: Redial) {
        let dialed = match self.upstreams() {
            Some(u) => {
                // The session leaves the member that failed (counted until its close).
                u.ended(usize::from(r.tries.group), r.upstream);
                u.connect(cx, r.tries, r.client, r.failure)
            }
            None => Err(r.failure),
        };
        match dialed {
            Ok(d) => cx.actions.push(Action::Redial(r, d)),
            Err(failure) => cx.actions.push(Action::FailConnect(r, failure)),
        }
    }

    /// A connect attempt to a member of one of the listener's groups ended.
    pub(super) fn on_attempt(&mut self, cx: &mut Cx<'_>, a: Attempt) {
        if let (Some(u), Some(g)) = (self.upstreams(), a.group) {
            u.attempted(cx, usize::from(g), a.upstream, a.outcome);
        }
    }

    /// A client of the listener closed, served or not: it leaves its upstream's group
    /// member, and a `connect` or `socks` listener's count of its address.
    pub(super) fn on_closed(&mut self, c: &Closed) {
        if let State::Dynamic(d) = &mut self.state {
            d.on_closed(c.id);
        }
        if let (Some(u), Some(g), Some(addr)) = (self.upstreams(), c.group, c.upstream) {
            u.ended(usize::from(g), addr);
        }
    }

    /// The resolver answered a look-up this listener asked for: the relay's name (an
    /// agent's, `what` = `u32::MAX`) or an upstream group's.
    pub(super) fn on_resolved(&mut self, cx: &mut Cx<'_>, answer: Answer) {
        if let State::Dynamic(d) = &mut self.state {
            return d.on_resolved(cx, answer);
        }
        if let State::Agent(a) = &mut self.state {
            if a.on_resolved(&answer) {
                return;
            }
        }
        if let Some(u) = self.upstreams() {
            u.on_resolved(cx, answer);
        }
    }

    /// The listener closes (removed by a reload, or the process stopping): tunnels,
    /// waiting clients, warm connections and checks go at once (the clients' closes are
    /// recorded).
    pub(super) fn close(&mut self, cx: &mut Cx<'_>) {
        self.prefaces.close_all(cx);
        match &mut self.state {
            State::Forward(_) => {}
            State::Dynamic(d) => d.close(cx),
            State::Relay(r) => r.close(cx),
            State::Agent(a) => a.close(cx.registry),
        }
        if let Some(u) = self.upstreams() {
            u.close(cx);
        }
    }

    /// Takes new options that keep this state (see `config::reload::keeps_state`).
    pub(super) fn update(&mut self, listener: &config::Listener) {
        self.prefaces.update(proxy_accept(&listener.mode));
        match (&mut self.state, &listener.mode) {
            (State::Forward(f), Mode::Forward(c)) => f.update(listener, c),
            (State::Relay(r), Mode::Relay(c)) => r.update(c),
            (State::Agent(a), Mode::Agent(c)) => a.update(listener, c),
            (State::Dynamic(d), Mode::Connect(c) | Mode::Socks(c)) => d.update(c),
            _ => {}
        }
    }

    /// Clients not yet sessions: awaited PROXY headers, relay clients waiting for a
    /// tunnel, `connect` and `socks` handshakes (they count against the session limits).
    pub(super) fn waiting(&self) -> usize {
        self.prefaces.len()
            + match &self.state {
                State::Relay(r) => r.waiting_clients(),
                State::Dynamic(d) => d.handshakes(),
                _ => 0,
            }
    }

    /// Tunnels and waiting clients: entries besides sessions.
    pub(super) fn entries(&self) -> usize {
        let held = self.upstreams_ref().map_or(0, Upstreams::entries) + self.prefaces.len();
        held + match &self.state {
            State::Forward(_) => 0,
            State::Dynamic(d) => d.handshakes(),
            State::Relay(r) => r.entries(),
            State::Agent(a) => a.entries(),
        }
    }

    /// Tunnels in their handshake (relay).
    pub(super) fn handshakes(&self) -> usize {
        match &self.state {
            State::Relay(r) => r.handshakes(),
            _ => 0,
        }
    }

    /// Idle tunnels per service (relay and agent).
    pub(super) fn idle_tunnels(&self) -> Vec<(&str, u64)> {
        match &self.state {
            State::Forward(_) | State::Dynamic(_) => Vec::new(),
            State::Relay(r) => r.idle_tunnels(),
            State::Agent(a) => a.idle_tunnels(),
        }
    }

    /// Whether every agent service has authenticated tunnels (true for other modes):
    /// the READY line waits for it.
    pub(super) fn up(&self) -> bool {
        match &self.state {
            State::Agent(a) => a.up(),
            _ => true,
        }
    }

    /// When the mode wants a pass without an event (an agent's backoff ends, a group's
    /// check or look-up is due).
    pub(super) fn next_wake(&self) -> Option<Instant> {
        let own = match &self.state {
            State::Agent(a) => a.next_wake(),
            _ => None,
        };
        let groups = self.upstreams_ref().and_then(Upstreams::next_wake);
        own.into_iter().chain(groups).min()
    }

    /// Whether a heap entry for something the mode owns is still current.
    pub(super) fn timer_is_live(&self, owner: Owner, id: u64, at: Instant) -> bool {
        if let Owner::Preface { slot, .. } = owner {
            return self.prefaces.timer_is_live(slot, id, at);
        }
        match (&self.state, owner) {
            (State::Relay(r), Owner::Tunnel { slot, .. }) => r.tunnel_timer_is_live(slot, id, at),
            (State::Relay(r), Owner::Waiting { slot, .. }) => r.waiting_timer_is_live(slot, id),
            (State::Agent(a), Owner::Tunnel { slot, .. }) => a.timer_is_live(slot, id, at),
            (State::Dynamic(d), Owner::Handshake { slot, .. }) => d.timer_is_live(slot, id, at),
            (_, Owner::Upstream { slot, .. }) => self
                .upstreams_ref()
                .is_some_and(|u| u.timer_is_live(slot, id, at)),
            _ => false,
        }
    }

    /// Fields of the READY line besides ports (an agent's relay and services).
    pub(super) fn ready_fields(&self, prefix: Option<&str>) -> Vec<String> {
        match &self.state {
            State::Agent(a) => a.ready_fields(prefix),
            _ => Vec::new(),
        }
    }
}

/// The PROXY headers a listener's mode accepts from clients (agents accept none).
fn proxy_accept(mode: &Mode) -> Option<&config::ProxyAccept> {
    match mode {
        Mode::Forward(f) => Some(&f.proxy_accept),
        Mode::Relay(r) => Some(&r.proxy_accept),
        Mode::Agent(_) | Mode::Connect(_) | Mode::Socks(_) => None,
    }
}
