//! A relay's tunnels before pairing: the slab, the idle queue of each service (oldest
//! first), the count of handshakes in progress, and the failed handshakes per source.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use mio::{Interest, Registry};
use slab::Slab;

use super::stage::Stage;
use crate::core::failures::Failures;
use crate::os::net::Conn;
use crate::server::owner::{self, Owner};

/// Handshakes one source address may hold at once.
pub(super) const PER_SOURCE: usize = 8;

/// The network of an address, for the per-network share of the handshake slots: its
/// /24 (IPv4, IPv4-mapped included) or /64 (IPv6).
fn network(ip: IpAddr) -> u128 {
    match crate::core::policy::canonical(ip) {
        IpAddr::V4(v4) => u128::from(u32::from(v4) >> 8),
        IpAddr::V6(v6) => (u128::from(v6) >> 64) | 1 << 127,
    }
}

/// A tunnel before pairing.
#[derive(Debug)]
pub(super) struct RelayTunnelEntry {
    pub(super) id: u64,
    pub(super) stage: Stage,
    pub(super) peer: SocketAddr,
    /// The first byte the peer sent in its handshake, once seen (to say what a peer
    /// that speaks the other kind of tunnel sent).
    pub(super) first: Option<u8>,
    /// Why its TLS handshake failed, for the log line.
    pub(super) why: Option<String>,
    /// Set once admitted into a service's idle queue.
    pub(super) service: Option<usize>,
    /// Counted in the handshakes until verified.
    pub(super) handshaking: bool,
    pub(super) armed: Option<Instant>,
    /// A slowed handshake (a trusted source over the failure limit) starts then.
    pub(super) held_until: Option<Instant>,
}

/// The tunnels of one relay listener.
#[derive(Debug)]
pub(super) struct Tunnels {
    pub(super) slab: Slab<RelayTunnelEntry>,
    /// Per service: idle tunnels, oldest first, as (slot, id).
    idle: Vec<VecDeque<(usize, u64)>>,
    handshakes: usize,
    pub(super) failures: Failures,
}

impl Tunnels {
    pub(super) fn new(services: usize) -> Tunnels {
        Tunnels {
            slab: Slab::new(),
            idle: vec![VecDeque::new(); services],
            handshakes: 0,
            failures: Failures::default(),
        }
    }

    /// Registers and inserts a tunnel in its handshake; its slot.
    pub(super) fn insert(
        &mut self,
        registry: &Registry,
        listener: usize,
        id: u64,
        mut conn: Conn,
        peer: SocketAddr,
        stage: impl FnOnce(Conn) -> Stage,
    ) -> std::io::Result<usize> {
        let entry = self.slab.vacant_entry();
        let slot = entry.key();
        let token = owner::token(Owner::Tunnel { listener, slot });
        registry.register(
            conn.source(),
            token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        entry.insert(RelayTunnelEntry {
            id,
            stage: stage(conn),
            peer,
            first: None,
            why: None,
            service: None,
            handshaking: true,
            armed: None,
            held_until: None,
        });
        self.handshakes += 1;
        Ok(slot)
    }

    /// Holds tunnel `slot`'s handshake until `until` (its deadline armed to start it).
    pub(super) fn hold(
        &mut self,
        cx: &mut crate::server::mode::Cx<'_>,
        slot: usize,
        until: Instant,
    ) {
        if let Some(t) = self.slab.get_mut(slot) {
            t.held_until = Some(until);
            let owner = Owner::Tunnel {
                listener: cx.listener,
                slot,
            };
            cx.deadlines.arm_once(&mut t.armed, until, owner, t.id);
        }
    }

    /// The handshake to close so a newcomer from `peer` gets a slot, if one must go:
    /// when `peer` already holds [`PER_SOURCE`] handshakes, one of those; when its
    /// network (/24 for IPv4, /64 for IPv6) holds a quarter of `max`, one of those; when
    /// all `max` slots are taken, any. The one chosen has made the least progress (a TLS
    /// handshake before any tunnel hello; then bytes received), the oldest first: a
    /// silent peer holding a slot goes before an agent half-way through its hello, and a
    /// newcomer is never refused.
    pub(super) fn make_room(&self, peer: IpAddr, max: usize) -> Option<usize> {
        let shaking = || self.slab.iter().filter(|(_, t)| t.handshaking);
        let pick = |within: &dyn Fn(IpAddr) -> bool| {
            shaking()
                .filter(|(_, t)| within(t.peer.ip()))
                .min_by_key(|(_, t)| (t.stage.progress(), t.stage.since()))
                .map(|(slot, _)| slot)
        };
        let same = |ip: IpAddr| ip == peer;
        let near = |ip: IpAddr| network(ip) == network(peer);
        if shaking().filter(|(_, t)| same(t.peer.ip())).count() >= PER_SOURCE {
            return pick(&same);
        }
        if shaking().filter(|(_, t)| near(t.peer.ip())).count() >= (max / 4).max(PER_SOURCE) {
            return pick(&near);
        }
        if self.handshakes >= max {
            return pick(&|_| true);
        }
        None
    }

    /// A verified tunnel leaves the handshakes.
    pub(super) fn verified(&mut self, slot: usize) {
        if let Some(t) = self.slab.get_mut(slot).filter(|t| t.handshaking) {
            t.handshaking = false;
            self.handshakes = self.handshakes.saturating_sub(1);
        }
    }

    /// Idle tunnels of `service` still there (forgets those that died while idle, so the
    /// queue stays bounded).
    pub(super) fn idle_len(&mut self, service: usize) -> usize {
        let slab = &self.slab;
        let Some(queue) = self.idle.get_mut(service) else {
            return 0;
        };
        queue.retain(|&(s, id)| slab.get(s).is_some_and(|t| t.id == id));
        queue.len()
    }

    /// Puts an admitted tunnel at the back (`front`: first) of its service's queue.
    pub(super) fn push_idle(&mut self, service: usize, slot: usize, front: bool) {
        let Some(id) = self.slab.get(slot).map(|t| t.id) else {
            return;
        };
        if let Some(queue) = self.idle.get_mut(service) {
            if front {
                queue.push_front((slot, id));
            } else {
                queue.push_back((slot, id));
            }
        }
    }

    /// Pops the oldest idle tunnel of `service` that is still there and ready to pair.
    /// Closed tunnels are dropped from the queue; one still writing a heartbeat keeps its
    /// place at the back.
    pub(super) fn pop_idle(&mut self, service: usize) -> Option<usize> {
        let queue = self.idle.get_mut(service)?;
        for _ in 0..queue.len() {
            let (slot, id) = queue.pop_front()?;
            match self.slab.get(slot) {
                Some(t) if t.id == id && t.stage.is_idle() => return Some(slot),
                Some(t) if t.id == id => queue.push_back((slot, id)),
                _ => {}
            }
        }
        None
    }

    /// Takes a tunnel out (to pair it, or because it ended).
    pub(super) fn remove(&mut self, slot: usize) -> Option<RelayTunnelEntry> {
        let t = self.slab.try_remove(slot)?;
        if t.handshaking {
            self.handshakes = self.handshakes.saturating_sub(1);
        }
        Some(t)
    }

    /// Tunnels in their handshake.
    pub(super) fn handshakes(&self) -> usize {
        self.handshakes
    }

    /// Idle tunnels per service, by index.
    pub(super) fn idle_counts(&self, services: usize) -> Vec<u64> {
        let mut counts = vec![0u64; services];
        for (_, t) in &self.slab {
            if let Some(c) = t
                .service
                .filter(|_| t.stage.is_idle())
                .and_then(|s| counts.get_mut(s))
            {
                *c += 1;
            }
        }
        counts
    }

    /// Whether a heap entry is still a tunnel's current deadline.
    pub(super) fn timer_is_live(&self, slot: usize, id: u64, at: Instant) -> bool {
        self.slab
            .get(slot)
            .is_some_and(|t| t.id == id && t.armed == Some(at))
    }

    /// Every tunnel goes at once.
    pub(super) fn drop_all(&mut self, registry: &Registry) {
        for mut t in self.slab.drain() {
            if let Some(source) = t.stage.source() {
                let _ = registry.deregister(source);
            }
        }
        self.idle.iter_mut().for_each(VecDeque::clear);
        self.handshakes = 0;
    }
}
