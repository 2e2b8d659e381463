//! Agent mode: keep `--pool` authenticated idle tunnels per service open to the relay;
//! when the relay attaches a client to one, dial the local service and make the pair a
//! session (the agent answers READY, or REFUSED when the service refuses), and open a
//! replacement tunnel at once. Failures back off exponentially with jitter up to a cap,
//! and the relay's name is resolved again (off the loop) before reconnecting.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::{Interest, Registry, Waker};
use slab::Slab;

use super::entry::{dial_failure, Registration, Start};
use super::listener::Kind;
use super::resolver::Resolver;
use super::token::Target;
use super::{Key, Server, Stopped};
use crate::config::{Agent, Service};
use crate::core::pipe::Bytes;
use crate::core::session::{Preamble, Session};
use crate::core::stream::{ConnectFailure, Stream};
use crate::core::stream::{Peer, Readiness};
use crate::core::tunnel::{AgentTunnel, TunnelEnd, TunnelPolicy, TunnelStep};
use crate::os::net::{describe, Conn};
use crate::os::random;
use crate::proto::auth::Secret;
use crate::proto::tunnel::frame;

/// First reconnect delay; doubled per consecutive failure up to `--backoff-max`.
const BACKOFF_BASE: Duration = Duration::from_millis(100);

/// A tunnel before pairing.
#[derive(Debug)]
struct TunnelEntry {
    id: u64,
    service: usize,
    tunnel: AgentTunnel<Conn>,
    relay: SocketAddr,
    armed: Option<Instant>,
}

/// Per service: how many tunnels are open and when to try again after failures.
#[derive(Debug, Default, Clone)]
struct Pool {
    open: usize,
    failures: u32,
    retry_at: Option<Instant>,
    up: bool,
}

/// Agent mode's own state.
#[derive(Debug)]
pub(super) struct AgentState {
    secret: Secret,
    services: Vec<Service>,
    pool_size: usize,
    exit_on_disconnect: bool,
    backoff_max: Duration,
    policy: TunnelPolicy,
    tunnels: Slab<TunnelEntry>,
    pools: Vec<Pool>,
    relay_name: String,
    relay_addrs: Vec<SocketAddr>,
    /// The relay's addresses must be looked up again before the next dial.
    stale: bool,
    /// `None` when the relay is given as an IP address: nothing to resolve.
    resolver: Option<Resolver>,
    next_addr: usize,
}

impl AgentState {
    pub(super) fn new(cfg: Agent, waker: &Arc<Waker>) -> std::io::Result<AgentState> {
        let literal: Option<SocketAddr> = cfg.relay.parse().ok();
        let resolver = match literal {
            Some(_) => None,
            None => Some(Resolver::spawn(Arc::clone(waker))?),
        };
        let n = cfg.services.len();
        Ok(AgentState {
            secret: cfg.tunnel.secret,
            services: cfg.services,
            pool_size: cfg.pool,
            exit_on_disconnect: cfg.exit_on_disconnect,
            backoff_max: cfg.backoff_max,
            policy: cfg.tunnel.policy,
            tunnels: Slab::new(),
            pools: vec![Pool::default(); n],
            relay_name: cfg.relay,
            relay_addrs: literal.into_iter().collect(),
            stale: literal.is_none(),
            resolver,
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

    /// Takes new options (same secret, relay and service names: checked by the caller).
    /// A smaller pool keeps its extra tunnels until they are used.
    pub(super) fn update(&mut self, cfg: &Agent) {
        self.services.clone_from(&cfg.services);
        self.pool_size = cfg.pool;
        self.exit_on_disconnect = cfg.exit_on_disconnect;
        self.backoff_max = cfg.backoff_max;
        self.policy = cfg.tunnel.policy;
    }

    /// Whether every service has authenticated tunnels.
    pub(super) fn up(&self) -> bool {
        self.pools.iter().all(|p| p.up)
    }

    /// Idle (authenticated, unpaired) tunnels per service, for metrics.
    pub(super) fn idle_tunnels(&self) -> Vec<(&str, u64)> {
        let mut counts = vec![0u64; self.services.len()];
        for (_, t) in &self.tunnels {
            if t.tunnel.is_idle() {
                if let Some(c) = counts.get_mut(t.service) {
                    *c += 1;
                }
            }
        }
        self.services
            .iter()
            .map(|s| s.name.as_str())
            .zip(counts)
            .collect()
    }

    pub(super) fn entries(&self) -> usize {
        self.tunnels.len()
    }

    pub(super) fn timer_is_live(&self, slot: usize, id: u64, at: Instant) -> bool {
        self.tunnels
            .get(slot)
            .is_some_and(|t| t.id == id && t.armed == Some(at))
    }

    /// When a service's pool may be refilled next (after a backoff).
    pub(super) fn next_wake(&self) -> Option<Instant> {
        self.pools
            .iter()
            .filter(|p| p.open < self.pool_size)
            .filter_map(|p| p.retry_at)
            .min()
    }

    /// Stopping: tunnels go at once.
    pub(super) fn drop_all(&mut self, registry: &Registry) {
        for mut t in self.tunnels.drain() {
            let _ = registry.deregister(t.tunnel.stream().source());
        }
        self.pools.iter_mut().for_each(|p| p.open = 0);
    }

    /// Takes the resolver's answer, if it has arrived.
    fn take_answer(&mut self) {
        let Some(answer) = self.resolver.as_mut().and_then(Resolver::take) else {
            return;
        };
        match answer {
            Ok(addrs) if !addrs.is_empty() => {
                self.relay_addrs = addrs;
                self.stale = false;
            }
            Ok(_) => warn!("relay {}: the name resolves to no address", self.relay_name),
            Err(e) => warn!(
                "relay {}: cannot resolve: {}",
                self.relay_name,
                describe(&e)
            ),
        }
    }

    /// Exponential backoff with jitter (half to all of the step), capped.
    fn backoff(&mut self, failures: u32) -> Duration {
        let step = BACKOFF_BASE
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
            .min(self.backoff_max);
        let half = step / 2;
        let jitter_ms = random::below(half.as_millis().max(1) as u64);
        half + Duration::from_millis(jitter_ms)
    }
}

impl Server {
    fn agent(&mut self, l: usize) -> Option<&mut AgentState> {
        self.agent_and_registry(l).map(|(_, a)| a)
    }

    fn agent_and_registry(&mut self, l: usize) -> Option<(&Registry, &mut AgentState)> {
        match self.listeners.get_mut(l).map(|l| &mut l.kind) {
            Some(Kind::Agent(a)) => Some((self.poll.registry(), a)),
            _ => None,
        }
    }

    /// A resolver answered: every agent takes its answer, if it has one.
    pub(super) fn on_waker(&mut self) {
        for (_, l) in &mut self.listeners {
            if let Kind::Agent(a) = &mut l.kind {
                a.take_answer();
            }
        }
    }

    /// Keeps every agent's pools full.
    pub(super) fn agents_upkeep(&mut self, now: Instant) {
        for l in 0..self.listeners.capacity() {
            if self
                .listeners
                .get(l)
                .is_some_and(|l| !l.closed && matches!(l.kind, Kind::Agent(_)))
            {
                self.agent_upkeep(l, now);
            }
        }
    }

    /// Keeps every service's pool full, within its backoff.
    fn agent_upkeep(&mut self, l: usize, now: Instant) {
        let Some(a) = self.agent(l) else { return };

        if a.stale {
            if let Some(r) = a.resolver.as_mut() {
                r.request(&a.relay_name);
            }
        }
        if a.relay_addrs.is_empty() {
            return;
        }
        for service in 0..a.services.len() {
            loop {
                let Some(a) = self.agent(l) else { return };
                let p = &a.pools[service];
                if p.open >= a.pool_size || p.retry_at.is_some_and(|t| now < t) {
                    break;
                }
                if !self.dial_tunnel(l, service, now) {
                    break;
                }
            }
        }
    }

    /// Opens one tunnel for `service`; false when the dial failed at once.
    fn dial_tunnel(&mut self, l: usize, service: usize, now: Instant) -> bool {
        let id = self.new_id();
        let Some((registry, a)) = self.agent_and_registry(l) else {
            return false;
        };
        a.next_addr = (a.next_addr + 1) % a.relay_addrs.len().max(1);
        let relay = a.relay_addrs[a.next_addr % a.relay_addrs.len()];
        let nonce = random::nonce();
        let conn = nonce.and_then(|n| Conn::dial(relay).map(|c| (c, n)));
        let (mut conn, nonce) = match conn {
            Ok(pair) => pair,
            Err(e) => {
                debug!("tunnel {id} to {relay}: {}", describe(&e));
                self.tunnel_failed(l, service, now);
                return false;
            }
        };
        let entry = a.tunnels.vacant_entry();
        let slot = entry.key();
        let both = Interest::READABLE | Interest::WRITABLE;
        let token = Target::Tunnel { listener: l, slot }.token();
        if let Err(e) = registry.register(conn.source(), token, both) {
            warn!("tunnel {id}: cannot register: {}", describe(&e));
            return false;
        }
        let name = a.services[service].name.clone();
        entry.insert(TunnelEntry {
            id,
            service,
            tunnel: AgentTunnel::new(conn, &name, nonce, now),
            relay,
            armed: None,
        });
        a.pools[service].open += 1;
        self.agent_tunnel_step(l, slot, TunnelStep::Waiting, now);
        true
    }

    pub(super) fn on_agent_tunnel_event(
        &mut self,
        l: usize,
        slot: usize,
        ready: Readiness,
        now: Instant,
    ) {
        let Some(a) = self.agent(l) else { return };
        let secret = &a.secret;
        let Some(t) = a.tunnels.get_mut(slot) else {
            return;
        };
        t.tunnel.on_event(ready);
        let step = t.tunnel.drive(now, secret);
        self.agent_tunnel_step(l, slot, step, now);
    }

    pub(super) fn on_agent_tunnel_deadline(
        &mut self,
        l: usize,
        slot: usize,
        id: u64,
        at: Instant,
        now: Instant,
    ) {
        let Some(connect_timeout) = self.connect_timeout(l) else {
            return;
        };
        let Some(a) = self.agent(l) else { return };
        let policy = a.policy;
        let Some(t) = a.tunnels.get_mut(slot) else {
            return;
        };
        if t.id != id || t.armed != Some(at) {
            return;
        }
        t.armed = None;
        let step = t.tunnel.expire(now, &policy, connect_timeout);
        self.agent_tunnel_step(l, slot, step, now);
    }

    fn agent_tunnel_step(&mut self, l: usize, slot: usize, step: TunnelStep, now: Instant) {
        match step {
            TunnelStep::Waiting => {}
            TunnelStep::Authenticated(_) => {
                self.tunnel_up(l, slot);
                // ATTACH may have come in the same segment as WELCOME: no new edge will
                // announce it, so read on now.
                return self.on_agent_tunnel_event(l, slot, Readiness::default(), now);
            }
            TunnelStep::Attached(client) => return self.attach(l, slot, client, now),
            TunnelStep::Closed(end) => return self.close_agent_tunnel(l, slot, end, now),
        }
        let Some(connect_timeout) = self.connect_timeout(l) else {
            return;
        };
        let Some(a) = self.agent(l) else { return };
        let policy = a.policy;
        let Some(t) = a.tunnels.get_mut(slot) else {
            return;
        };
        let deadline = t.tunnel.deadline(&policy, connect_timeout);
        if t.armed.is_none_or(|armed| deadline < armed) {
            t.armed = Some(deadline);
            let id = t.id;
            self.timers.arm(deadline, Key::Tunnel(l, slot), id);
        }
    }

    fn tunnel_up(&mut self, l: usize, slot: usize) {
        let Some(a) = self.agent(l) else { return };
        let Some(t) = a.tunnels.get(slot) else {
            return;
        };
        let service = t.service;
        let pool = &mut a.pools[service];
        pool.failures = 0;
        pool.retry_at = None;
        if !pool.up {
            pool.up = true;
            info!(
                "service {}: tunnels to {} authenticated",
                a.services[service].name, t.relay
            );
        }
        if self.listeners.iter().all(|(_, l)| l.up()) {
            self.announce();
        }
    }

    /// The relay attached a client: dial the local service and start the session.
    fn attach(&mut self, l: usize, slot: usize, client: SocketAddr, now: Instant) {
        let registry = self.poll.registry();
        let Some(listener) = self.listeners.get_mut(l) else {
            return;
        };
        let Kind::Agent(a) = &mut listener.kind else {
            return;
        };
        let Some(t) = a.tunnels.try_remove(slot) else {
            return;
        };
        listener.counters.accepted += 1;
        a.pools[t.service].open = a.pools[t.service].open.saturating_sub(1);
        let target = a.services[t.service].addr;
        let Peer {
            stream: mut tunnel,
            ready,
        } = t.tunnel.into_peer();
        let local = match Conn::dial(target) {
            Ok(local) => local,
            Err(e) => {
                debug!(
                    "session {}: connect to {target} failed: {}",
                    t.id,
                    describe(&e)
                );
                let _ = registry.deregister(tunnel.source());
                let _ = tunnel.write_vectored(&[std::io::IoSlice::new(&[frame::REFUSED])]);
                self.count_connect_failure(l, ConnectFailure::from_error(&e));
                self.unserved(l, t.id, client, now, now, dial_failure(&e));
                return;
            }
        };
        let session = Session::new(tunnel, local, now).with_preamble(Preamble {
            to_client: Some(Bytes::Borrowed(&[frame::READY])),
            on_failure: Some(Bytes::Borrowed(&[frame::REFUSED])),
            ..Preamble::default()
        });
        let start = Start {
            listener: l,
            id: t.id,
            session,
            client_addr: client,
            upstream_addr: target,
            upstream_index: None,
            client: Registration::Moved,
            upstream: Registration::New,
            client_ready: ready,
        };
        self.start_session(start, now);
        self.agent_upkeep(l, now);
    }

    fn close_agent_tunnel(&mut self, l: usize, slot: usize, end: TunnelEnd, now: Instant) {
        let registry = self.poll.registry();
        let Some(listener) = self.listeners.get_mut(l) else {
            return;
        };
        let counters = &mut listener.counters;
        let Kind::Agent(a) = &mut listener.kind else {
            return;
        };
        let Some(mut t) = a.tunnels.try_remove(slot) else {
            return;
        };
        let _ = registry.deregister(t.tunnel.stream().source());
        a.pools[t.service].open = a.pools[t.service].open.saturating_sub(1);
        if matches!(end, TunnelEnd::Denied | TunnelEnd::AuthFailed) {
            counters.auth_failures += 1;
        }
        let name = &a.services[t.service].name;
        match end {
            TunnelEnd::Denied | TunnelEnd::AuthFailed => warn!(
                "tunnel {} to {} for {name}: {} (check the secret and that the relay has this service)",
                t.id,
                t.relay,
                end.as_str()
            ),
            _ if a.pools[t.service].up => {
                warn!("tunnel {} to {} for {name}: {}", t.id, t.relay, end.as_str())
            }
            _ => debug!("tunnel {} to {} for {name}: {}", t.id, t.relay, end.as_str()),
        }
        if a.exit_on_disconnect {
            error!(
                "lost the relay ({}): exiting (--exit-on-disconnect)",
                end.as_str()
            );
            self.stop = Some(Stopped::Disconnected);
            return;
        }
        self.tunnel_failed(l, t.service, now);
    }

    /// Backs a service off after a failure, and looks the relay's name up again. Tunnels
    /// that fail together (a pool dialed at once) count as one failed round: the backoff
    /// grows per round, not per tunnel.
    fn tunnel_failed(&mut self, l: usize, service: usize, now: Instant) {
        let Some(a) = self.agent(l) else { return };
        a.stale = a.resolver.is_some();
        if a.pools[service].retry_at.is_some_and(|t| now < t) {
            a.pools[service].up = false;
            if a.exit_on_disconnect {
                self.stop = Some(Stopped::Disconnected);
            }
            return;
        }
        let failures = a.pools[service].failures.saturating_add(1);
        let delay = a.backoff(failures);
        let pool = &mut a.pools[service];
        pool.failures = failures;
        pool.up = false;
        pool.retry_at = Some(now + delay);
        debug!(
            "service {}: retrying in {delay:?}",
            a.services[service].name
        );
        if a.exit_on_disconnect {
            self.stop = Some(Stopped::Disconnected);
        }
    }
}
