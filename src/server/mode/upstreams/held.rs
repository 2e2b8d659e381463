//! The connections a group holds besides its sessions': warm connections (dialing, then
//! idle until lent or expired) and health checks (a connect, then closed with RST so a
//! thousand checks a second leave no TIME_WAIT behind).
//!
//! ```text
//!   refill ──dial──▶ Dialing ──connected──▶ Idle ──lent (validated)──▶ a session's upstream
//!                      │ failed / timeout     │ hang-up, error, age limit, failed peek
//!                      ▼                      ▼
//!                   closed (backoff)       closed (refilled)
//!
//!   check due ──dial──▶ Check ──connected──▶ passed, closed
//!                         └─ failed / timeout ─▶ failed, closed
//! ```

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::debug;

use super::{Cx, Upstreams};
use crate::core::stream::{ConnectFailure, ConnectStatus, Readiness, Stream};
use crate::os::net::Conn;
use crate::server::owner::Owner;

/// A held connection.
#[derive(Debug)]
pub(super) struct Held {
    /// Its group and member.
    pub(super) group: u16,
    pub(super) addr: SocketAddr,
    pub(super) id: u64,
    pub(super) conn: Conn,
    pub(super) kind: Kind,
    /// When it was dialed.
    pub(super) since: Instant,
    /// Its deadline armed in the heap.
    pub(super) armed: Option<Instant>,
}

/// What a held connection is for, and how far it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A warm connection whose connect is in progress.
    Dialing,
    /// A warm connection ready to be lent until `expires`; `readable` once the upstream
    /// sent bytes (a banner).
    Idle { expires: Instant, readable: bool },
    /// A health check's connect.
    Check,
}

impl Upstreams {
    /// An event on held slot `slot`.
    pub(in crate::server::mode) fn on_held_event(
        &mut self,
        cx: &mut Cx<'_>,
        slot: usize,
        ready: Readiness,
    ) {
        let Some(h) = self.held.get_mut(slot) else {
            return;
        };
        match h.kind {
            Kind::Dialing | Kind::Check => match h.conn.connect_status() {
                ConnectStatus::Pending => {}
                ConnectStatus::Connected => self.connected(cx, slot),
                ConnectStatus::Failed(f) => self.failed(cx, slot, f),
            },
            Kind::Idle { .. } if ready.read_closed => {
                debug!(
                    "warm connection {} to {}: closed by the upstream",
                    h.id, h.addr
                );
                let (g, addr) = (usize::from(h.group), h.addr);
                self.drop_held(cx, slot);
                self.count(g, addr, |c| c.warm_failed += 1);
            }
            Kind::Idle { expires, .. } if ready.readable => {
                h.kind = Kind::Idle {
                    expires,
                    readable: true,
                };
            }
            Kind::Idle { .. } => {}
        }
    }

    /// Held slot `slot`'s deadline fired: a connect timed out, or a warm connection
    /// reached its age limit.
    pub(in crate::server::mode) fn on_held_deadline(
        &mut self,
        cx: &mut Cx<'_>,
        slot: usize,
        id: u64,
    ) {
        let Some(h) = self.held.get_mut(slot).filter(|h| h.id == id) else {
            return;
        };
        h.armed = None;
        match h.kind {
            Kind::Dialing | Kind::Check => self.failed(cx, slot, ConnectFailure::Timeout),
            Kind::Idle { .. } => {
                let (g, addr) = (usize::from(h.group), h.addr);
                self.drop_held(cx, slot);
                self.count(g, addr, |c| c.warm_expired += 1);
            }
        }
    }

    /// Whether a heap entry is still held slot `slot`'s deadline.
    pub(in crate::server::mode) fn timer_is_live(&self, slot: usize, id: u64, at: Instant) -> bool {
        self.held
            .get(slot)
            .is_some_and(|h| h.id == id && h.armed == Some(at))
    }

    /// A held connect completed: a warm connection becomes idle, a check passes.
    fn connected(&mut self, cx: &mut Cx<'_>, slot: usize) {
        let Some(h) = self.held.get(slot) else {
            return;
        };
        let (g, addr, kind, took) = (
            usize::from(h.group),
            h.addr,
            h.kind,
            cx.now.saturating_duration_since(h.since),
        );
        if kind == Kind::Check {
            let proxied = self.member_mut(g, addr).is_some_and(|m| m.proxy.is_some());
            // A server that expects PROXY headers gets a LOCAL one (the connection is the
            // proxy's own) and a FIN: an RST could drop the header unread.
            if proxied {
                if let Some(h) = self.held.get_mut(slot) {
                    let local = crate::proto::proxy::v2_local();
                    let _ = h.conn.write_vectored(&[io::IoSlice::new(&local)]);
                }
            }
            self.close_held(cx, slot, !proxied);
            let change = self.groups.get_mut(g).and_then(|io| {
                let i = io.group.index_of(addr)?;
                io.group.check_passed(i, cx.now)
            });
            self.changed(cx, g, addr, change);
            return;
        }
        let want = self.opts.warm;
        let full = self
            .member_mut(g, addr)
            .is_none_or(|m| m.idle.len() >= want);
        if full {
            // Dialed before a reload lowered the target (or its member left): not kept.
            // The connect still counts for health.
            self.drop_held(cx, slot);
            self.attempted(cx, g, addr, Ok(took));
            return;
        }
        // Each connection's age limit is drawn in 0.8-1x of the maximum, so a pool
        // filled at once does not expire at once, and a server idle timeout equal to
        // the maximum is never raced.
        let max = self.opts.warm_max_age;
        let fifth = u64::try_from(max.as_millis() / 5)
            .unwrap_or(u64::MAX)
            .max(1);
        let limit = max - Duration::from_millis(self.draws.below(fifth)).min(max / 5);
        let expires = cx.now + limit;
        let Some(h) = self.held.get_mut(slot) else {
            return;
        };
        h.kind = Kind::Idle {
            expires,
            readable: false,
        };
        h.armed = None;
        let owner = Owner::Upstream {
            listener: cx.listener,
            slot,
        };
        cx.deadlines.arm_once(&mut h.armed, expires, owner, h.id);
        if let Some(m) = self.member_mut(g, addr) {
            m.dialing = m.dialing.saturating_sub(1);
            m.idle.push_back(slot);
            m.backoff.succeeded();
        }
        self.attempted(cx, g, addr, Ok(took));
    }

    /// A held connect failed: a warm connection backs its member off, a check fails.
    /// Both count as failed connects for passive health.
    fn failed(&mut self, cx: &mut Cx<'_>, slot: usize, failure: ConnectFailure) {
        let Some(h) = self.held.get(slot) else {
            return;
        };
        let (g, addr, kind, id) = (usize::from(h.group), h.addr, h.kind, h.id);
        debug!(
            "connection {id} to {addr}: connect failed ({})",
            failure.as_str()
        );
        self.drop_held(cx, slot);
        if kind == Kind::Check {
            self.count(g, addr, |c| c.checks_failed += 1);
            let change = self.groups.get_mut(g).and_then(|io| {
                let i = io.group.index_of(addr)?;
                io.group.check_failed(i)
            });
            self.changed(cx, g, addr, change);
            return;
        }
        let draw = self.draws.draw();
        if let Some(m) = self.member_mut(g, addr) {
            let _ = m.backoff.failed(cx.now, Duration::from_secs(30), draw);
        }
        self.attempted(cx, g, addr, Err(failure));
    }

    /// Takes a valid warm connection of member `i` of group `g`, closing the ones that
    /// fail validation; the readiness the session starts with.
    pub(super) fn lend(
        &mut self,
        cx: &mut Cx<'_>,
        g: usize,
        i: usize,
    ) -> Option<(Conn, Readiness)> {
        loop {
            let slot = self
                .groups
                .get_mut(g)?
                .members
                .get_mut(i)?
                .idle
                .pop_front()?;
            self.refill_soon(cx.now);
            let Some(mut h) = self.held.try_remove(slot) else {
                continue;
            };
            let addr = h.addr;
            match validate(&mut h, cx.now) {
                Ok(ready) => {
                    self.count(g, addr, |c| c.warm_lent += 1);
                    return Some((h.conn, ready));
                }
                Err(why) => {
                    debug!("warm connection {} to {addr}: {why}; not lent", h.id);
                    let _ = cx.registry.deregister(h.conn.source());
                    self.count(g, addr, |c| c.warm_failed += 1);
                }
            }
        }
    }

    /// Dials warm connections for member `i` of group `g` up to the target, unless it is
    /// out (ejected, down) or backing off, and at most `budget` of them (the pass's dials
    /// left). When to come back, if it must: at once when the budget ran out.
    pub(super) fn refill(
        &mut self,
        cx: &mut Cx<'_>,
        g: usize,
        i: usize,
        budget: &mut usize,
    ) -> Option<Instant> {
        let want = self.opts.warm;
        let io = self.groups.get_mut(g)?;
        if want == 0 || !io.group.usable(i, cx.now) {
            return None;
        }
        let m = io.members.get_mut(i)?;
        if m.backoff.waiting(cx.now) {
            return m.backoff.retry_at();
        }
        let addr = m.addr;
        let missing = want.saturating_sub(m.idle.len() + m.dialing);
        for _ in 0..missing {
            if *budget == 0 {
                return Some(cx.now);
            }
            *budget -= 1;
            if !self.hold(cx, g, addr, Kind::Dialing) {
                let draw = self.draws.draw();
                if let Some(m) = self.member_mut(g, addr) {
                    let _ = m.backoff.failed(cx.now, Duration::from_secs(30), draw);
                    return m.backoff.retry_at();
                }
                return None;
            }
            if let Some(m) = self.member_mut(g, addr) {
                m.dialing += 1;
            }
        }
        None
    }

    /// Starts member `i`'s health check when due. When the next one is.
    pub(super) fn check_member(&mut self, cx: &mut Cx<'_>, g: usize, i: usize) -> Option<Instant> {
        let interval = self.opts.health_interval;
        let m = self.groups.get_mut(g)?.members.get_mut(i)?;
        let at = m.next_check?;
        if m.checking {
            // A check still running past its interval (its connect timeout is longer):
            // look again a little later, never in a tight loop.
            return Some(at.max(cx.now + interval / 8));
        }
        if cx.now < at {
            return Some(at);
        }
        let addr = m.addr;
        m.next_check = Some(cx.now + interval);
        m.checking = true;
        if !self.hold(cx, g, addr, Kind::Check) {
            if let Some(m) = self.member_mut(g, addr) {
                m.checking = false;
            }
            self.count(g, addr, |c| c.checks_failed += 1);
            let change = self
                .groups
                .get_mut(g)
                .and_then(|io| io.group.check_failed(i));
            self.changed(cx, g, addr, change);
        }
        Some(cx.now + interval)
    }

    /// Closes held slot `slot` (a check with RST), and forgets it in its member.
    pub(super) fn drop_held(&mut self, cx: &mut Cx<'_>, slot: usize) {
        let rst = self.held.get(slot).is_some_and(|h| h.kind == Kind::Check);
        self.close_held(cx, slot, rst);
    }

    /// Closes held slot `slot`, with RST when `rst`, and forgets it in its member.
    fn close_held(&mut self, cx: &mut Cx<'_>, slot: usize, rst: bool) {
        let Some(mut h) = self.held.try_remove(slot) else {
            return;
        };
        let _ = cx.registry.deregister(h.conn.source());
        let (g, addr) = (usize::from(h.group), h.addr);
        if rst {
            h.conn.abort();
        }
        if let Some(m) = self.member_mut(g, addr) {
            match h.kind {
                Kind::Dialing => m.dialing = m.dialing.saturating_sub(1),
                Kind::Idle { .. } => m.idle.retain(|&s| s != slot),
                Kind::Check => m.checking = false,
            }
        }
        self.dirty = true;
    }

    fn member_mut(&mut self, g: usize, addr: SocketAddr) -> Option<&mut super::Member> {
        let io = self.groups.get_mut(g)?;
        let i = io.group.index_of(addr)?;
        io.members.get_mut(i)
    }

    fn count(
        &mut self,
        g: usize,
        addr: SocketAddr,
        f: impl FnOnce(&mut crate::stats::upstream::UpstreamCounters),
    ) {
        if let Some(m) = self.member_mut(g, addr) {
            f(&mut m.counters);
        }
    }
}

/// Whether an idle warm connection may be lent now: younger than its limit, and a peek
/// finds no end of stream or error (bytes waiting are a banner: the session's). The
/// readiness the session starts with.
fn validate(h: &mut Held, now: Instant) -> Result<Readiness, &'static str> {
    let Kind::Idle { expires, readable } = h.kind else {
        return Err("not connected");
    };
    if now >= expires {
        return Err("past its age limit");
    }
    let mut byte = [0u8; 1];
    match h.conn.peek(&mut byte) {
        Ok(0) => Err("closed by the upstream"),
        Ok(_) => Ok(Readiness {
            readable: true,
            writable: true,
            read_closed: false,
        }),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Readiness {
            readable,
            writable: true,
            read_closed: false,
        }),
        Err(_) => Err("failed"),
    }
}
