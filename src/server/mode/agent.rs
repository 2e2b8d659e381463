//! Agent mode: keep `pool` authenticated idle tunnels per service open to the relay; when
//! the relay attaches a client to one, dial the service (the session's upstream) and
//! make the pair a session (answering READY, or REFUSED when the service refuses), and
//! open a replacement tunnel at once. Failures back off (`core::backoff`), and the
//! relay's name is resolved again (off the loop) before reconnecting.

use std::net::SocketAddr;
use std::time::Instant;

use log::{debug, info, warn};
use mio::{Interest, Registry};
use slab::Slab;

use super::tls::note_first;
use super::upstreams::Upstreams;
use super::{Action, Cx};
use crate::config::{Agent, Listener};
use crate::core::stream::Readiness;
#[cfg(feature = "tls")]
use crate::core::tunnel::TunnelEnd;
use crate::core::tunnel::{AgentTunnel, TunnelPolicy, TunnelStep};
use crate::os::link::Link;
use crate::os::net::{describe, Conn};
use crate::os::random;
#[cfg(feature = "tls")]
use crate::os::tls::AgentTls;
use crate::proto::auth::Secret;
use crate::server::owner::{self, Owner};
use crate::server::resolver::{Answer, Lookup};
use crate::server::Stopped;

mod attach;
mod ends;
mod services;
mod stage;

use attach::groups;
use services::Services;
#[cfg(feature = "tls")]
use stage::Moved;
use stage::Stage;

/// The resolver key of the relay's name (upstream groups use small numbers).
const RELAY_LOOKUP: u32 = u32::MAX;

/// Tunnels in their handshake at once, all services together. A relay holds at most 8
/// handshakes per source address and evicts the one that got least far to make room
/// for a ninth: an agent that opened its whole pool at once would evict its own
/// handshakes (a TLS handshake takes two round trips before the hello). Half of that
/// leaves room for a second agent behind the same address.
const OPENING: usize = 4;

/// A tunnel before pairing.
#[derive(Debug)]
struct AgentTunnelEntry {
    id: u64,
    service: usize,
    stage: Stage,
    relay: SocketAddr,
    armed: Option<Instant>,
    /// The first byte the relay sent in the handshake, once seen (to say what a relay
    /// speaking the other kind of tunnel sent).
    first: Option<u8>,
    /// Why its TLS handshake failed, for the log line.
    why: Option<String>,
}

/// Agent mode's own state.
#[derive(Debug)]
pub(super) struct AgentState {
    secret: Secret,
    /// How tunnels greet and check the relay over TLS; `None`: plain tunnels.
    #[cfg(feature = "tls")]
    tls: Option<AgentTls>,
    /// Only the relay key with this fingerprint is accepted (said when one is refused).
    pinned: bool,
    services: Services,
    exit_on_disconnect: bool,
    policy: TunnelPolicy,
    tunnels: Slab<AgentTunnelEntry>,
    relay_name: String,
    relay_addrs: Vec<SocketAddr>,
    /// The relay's addresses must be looked up again before the next dial.
    stale: bool,
    /// False when the relay is given as an IP address: nothing to resolve.
    named: bool,
    next_addr: usize,
    /// One upstream group per service, in the services' order.
    upstreams: Upstreams,
}

impl AgentState {
    /// An agent's fresh state, its TLS configuration made from its options.
    pub(super) fn new(l: &Listener, cfg: &Agent, now: Instant) -> Result<AgentState, String> {
        let literal: Option<SocketAddr> = cfg.relay.parse().ok();
        let timeout = l.policy.connect_timeout;
        #[cfg(feature = "tls")]
        let tls = stage::trust(cfg)?;
        #[cfg(not(feature = "tls"))]
        super::tls::plain(cfg.tunnel.tls, &format!("tunnels to {}", cfg.relay))?;
        Ok(AgentState {
            upstreams: Upstreams::new(groups(cfg), &cfg.group, timeout, now),
            secret: cfg.tunnel.secret.clone(),
            #[cfg(feature = "tls")]
            tls,
            pinned: cfg.trust.pin.is_some(),
            services: Services::new(&cfg.services, cfg.pool, cfg.backoff_max),
            exit_on_disconnect: cfg.exit_on_disconnect,
            policy: cfg.tunnel.policy,
            tunnels: Slab::new(),
            relay_name: cfg.relay.clone(),
            relay_addrs: literal.into_iter().collect(),
            stale: literal.is_none(),
            named: literal.is_none(),
            next_addr: 0,
        })
    }

    /// The READY line's fields, each after `prefix.` when given.
    pub(super) fn ready_fields(&self, prefix: Option<&str>) -> Vec<String> {
        let p = prefix.map_or_else(String::new, |p| format!("{p}."));
        std::iter::once(format!("{p}relay={}", self.relay_name))
            .chain(
                self.services
                    .iter()
                    .map(|s| format!("{p}service.{}={}", s.name, s.addr)),
            )
            .collect()
    }

    /// Takes new options (same secret, relay and service names: see `keeps_state`).
    pub(super) fn update(&mut self, l: &Listener, cfg: &Agent) {
        let timeout = l.policy.connect_timeout;
        self.upstreams.update(groups(cfg), &cfg.group, timeout);
        self.services
            .update(&cfg.services, cfg.pool, cfg.backoff_max);
        self.exit_on_disconnect = cfg.exit_on_disconnect;
        self.policy = cfg.tunnel.policy;
    }

    /// Whether every service has authenticated tunnels.
    pub(super) fn up(&self) -> bool {
        self.services.up()
    }

    /// Idle (authenticated, unpaired) tunnels per service, for metrics.
    pub(super) fn idle_tunnels(&self) -> Vec<(&str, u64)> {
        let mut counts = vec![0u64; self.services.len()];
        for (_, t) in self.tunnels.iter().filter(|(_, t)| t.stage.is_idle()) {
            if let Some(c) = counts.get_mut(t.service) {
                *c += 1;
            }
        }
        let names = self.services.iter().map(|s| s.name.as_str());
        names.zip(counts).collect()
    }

    pub(super) fn entries(&self) -> usize {
        self.tunnels.len()
    }

    pub(super) fn timer_is_live(&self, slot: usize, id: u64, at: Instant) -> bool {
        self.tunnels
            .get(slot)
            .is_some_and(|t| t.id == id && t.armed == Some(at))
    }

    /// When a service's tunnels may be opened again (after a backoff).
    pub(super) fn next_wake(&self) -> Option<Instant> {
        self.services.next_wake()
    }

    /// Closing: tunnels go at once.
    pub(super) fn close(&mut self, registry: &Registry) {
        for mut t in self.tunnels.drain() {
            if let Some(source) = t.stage.source() {
                let _ = registry.deregister(source);
            }
        }
        self.services.clear();
    }

    /// The services' upstream groups.
    pub(super) fn upstreams(&mut self) -> &mut Upstreams {
        &mut self.upstreams
    }

    pub(super) fn upstreams_ref(&self) -> &Upstreams {
        &self.upstreams
    }

    /// The resolver's answer for the relay's name; false when the answer is not the
    /// relay's (an upstream group's). An answer for another name, asked by a listener
    /// that had this slot before a reload, is dropped.
    pub(super) fn on_resolved(&mut self, answer: &Answer) -> bool {
        if answer.lookup.what != RELAY_LOOKUP {
            return false;
        }
        if answer.name != self.relay_name {
            return true;
        }
        match &answer.addrs {
            Ok(addrs) if !addrs.is_empty() => {
                self.relay_addrs.clone_from(addrs);
                self.stale = false;
            }
            Ok(_) => warn!("relay {}: the name resolves to no address", self.relay_name),
            Err(e) => warn!("relay {}: cannot resolve: {}", self.relay_name, describe(e)),
        }
        true
    }

    /// Keeps every service's tunnels open, within its backoff, [`OPENING`] handshakes at
    /// a time (each pass opens more as handshakes finish).
    pub(super) fn upkeep(&mut self, cx: &mut Cx<'_>) {
        if self.stale {
            let lookup = Lookup {
                listener: cx.listener,
                what: RELAY_LOOKUP,
            };
            cx.resolver.request(lookup, &self.relay_name);
        }
        if self.relay_addrs.is_empty() {
            return;
        }
        let wanted = (0..self.services.len()).any(|s| self.services.wants_tunnel(s, cx.now));
        if !wanted {
            return;
        }
        let mut opening = self
            .tunnels
            .iter()
            .filter(|(_, t)| !t.stage.is_idle())
            .count();
        for service in 0..self.services.len() {
            while opening < OPENING && self.services.wants_tunnel(service, cx.now) {
                if !self.dial_tunnel(cx, service) {
                    break;
                }
                opening += 1;
            }
        }
    }

    /// Opens one tunnel for `service`; false when the dial failed at once.
    fn dial_tunnel(&mut self, cx: &mut Cx<'_>, service: usize) -> bool {
        let id = cx.ids.next();
        self.next_addr = (self.next_addr + 1) % self.relay_addrs.len().max(1);
        let Some(&relay) = self.relay_addrs.get(self.next_addr) else {
            return false;
        };
        let tuning = cx.tuning();
        let dialed = random::nonce().and_then(|n| Conn::dial(relay, Some(tuning)).map(|c| (c, n)));
        let (mut conn, nonce) = match dialed {
            Ok(pair) => pair,
            Err(e) => {
                debug!("tunnel {id} to {relay}: {}", describe(&e));
                self.tunnel_failed(cx, service);
                return false;
            }
        };
        let entry = self.tunnels.vacant_entry();
        let slot = entry.key();
        let token = owner::token(Owner::Tunnel {
            listener: cx.listener,
            slot,
        });
        let both = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = cx.registry.register(conn.source(), token, both) {
            warn!("tunnel {id}: cannot register: {}", describe(&e));
            return false;
        }
        let name = self.services.name(service);
        let now = cx.now;
        let plain = |c: Conn| Stage::Tunnel(AgentTunnel::new(Link::from(c), name, nonce, now));
        #[cfg(feature = "tls")]
        let stage = match self.tls {
            Some(_) => Stage::tls(conn, nonce, now),
            None => plain(conn),
        };
        #[cfg(not(feature = "tls"))]
        let stage = plain(conn);
        entry.insert(AgentTunnelEntry {
            id,
            service,
            stage,
            relay,
            armed: None,
            first: None,
            why: None,
        });
        self.services.opened(service);
        self.tunnel_step(cx, slot, TunnelStep::Waiting);
        true
    }

    /// An event on a tunnel's socket.
    pub(super) fn on_tunnel_event(&mut self, cx: &mut Cx<'_>, slot: usize, ready: Readiness) {
        let Some(t) = self.tunnels.get_mut(slot) else {
            return;
        };
        // A TLS handshake notes the relay's first byte itself, before it reads it.
        if matches!(t.stage, Stage::Tunnel(_)) && !t.stage.is_idle() {
            note_first(&mut t.first, t.stage.tcp());
        }
        let step = match &mut t.stage {
            Stage::Tunnel(tunnel) => {
                tunnel.on_event(ready);
                tunnel.drive(cx.now, &self.secret)
            }
            #[cfg(feature = "tls")]
            stage => match &self.tls {
                Some(tls) => {
                    let service = self.services.name(t.service);
                    match stage.drive_tls(ready, tls, service, &mut t.first) {
                        Moved::Waiting => TunnelStep::Waiting,
                        // The handshake is done: the tunnel speaks first (its readiness is set).
                        Moved::Tunnel => {
                            return self.on_tunnel_event(cx, slot, Readiness::default())
                        }
                        Moved::Closed(end, why) => {
                            t.why = why;
                            TunnelStep::Closed(end)
                        }
                    }
                }
                None => TunnelStep::Closed(TunnelEnd::Lost),
            },
        };
        self.tunnel_step(cx, slot, step);
    }

    /// A tunnel's deadline fired.
    pub(super) fn on_tunnel_deadline(
        &mut self,
        cx: &mut Cx<'_>,
        slot: usize,
        id: u64,
        at: Instant,
    ) {
        let Some(t) = self.tunnels.get_mut(slot) else {
            return;
        };
        if t.id != id || t.armed != Some(at) {
            return;
        }
        t.armed = None;
        let step = t
            .stage
            .expire(cx.now, &self.policy, cx.policy.connect_timeout);
        self.tunnel_step(cx, slot, step);
    }

    fn tunnel_step(&mut self, cx: &mut Cx<'_>, slot: usize, step: TunnelStep) {
        match step {
            TunnelStep::Waiting => {}
            TunnelStep::Authenticated(_) => {
                self.tunnel_up(cx, slot);
                // ATTACH may have come in the same segment as WELCOME: no new edge will
                // announce it, so read on now.
                return self.on_tunnel_event(cx, slot, Readiness::default());
            }
            TunnelStep::Attached(client) => return self.attach(cx, slot, client),
            TunnelStep::Closed(end) => return self.close_tunnel(cx, slot, end),
        }
        if let Some(t) = self.tunnels.get_mut(slot) {
            let deadline = t.stage.deadline(&self.policy, cx.policy.connect_timeout);
            let owner = Owner::Tunnel {
                listener: cx.listener,
                slot,
            };
            cx.deadlines.arm_once(&mut t.armed, deadline, owner, t.id);
        }
    }

    fn tunnel_up(&mut self, cx: &mut Cx<'_>, slot: usize) {
        let Some(t) = self.tunnels.get(slot) else {
            return;
        };
        if self.services.succeeded(t.service) {
            let name = self.services.name(t.service);
            info!("service {name}: tunnels to {} authenticated", t.relay);
        }
        cx.actions.push(Action::Up);
    }

    /// Backs a service off after a failure (tunnels that fail together count as one
    /// round), and looks the relay's name up again.
    fn tunnel_failed(&mut self, cx: &mut Cx<'_>, service: usize) {
        self.stale = self.named;
        let jitter = random::below(u64::MAX);
        if let Some(delay) = self.services.failed(service, cx.now, jitter) {
            let name = self.services.name(service);
            debug!("service {name}: retrying in {delay:?}");
        }
        if self.exit_on_disconnect {
            cx.actions.push(Action::Stop(Stopped::Disconnected));
        }
    }
}
