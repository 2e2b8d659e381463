//! Connecting to a destination with several addresses: Happy Eyeballs (RFC 8305).
//! The addresses are interleaved by family, IPv6 first; the first is dialed at once and
//! each next one [`HEAD_START`] later (or at once when a connect fails), with at most
//! [`LEGS`] connects in flight. The first connect to complete wins; the others are
//! dropped. The whole race is bounded by the listener's connect timeout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::core::stream::{ConnectFailure, ConnectStatus, Stream};
use crate::os::net::{Conn, Tuning};

/// How long a connect has alone before the next address is tried too (RFC 8305 §5).
pub(super) const HEAD_START: Duration = Duration::from_millis(250);
/// Connects in flight at once.
pub(super) const LEGS: usize = 2;

/// One connect in flight.
#[derive(Debug)]
pub(super) struct Leg {
    pub(super) conn: Conn,
    pub(super) addr: SocketAddr,
}

/// A race between the addresses of one destination.
#[derive(Debug)]
pub(super) struct Race {
    addrs: Vec<SocketAddr>,
    next: usize,
    pub(super) legs: [Option<Leg>; LEGS],
    /// When the next address starts even if no leg failed.
    next_at: Option<Instant>,
    /// When the race is lost.
    until: Instant,
    /// The last failure: the race's when every leg fails.
    last: ConnectFailure,
    /// Failed connects not yet counted by the caller.
    uncounted: Vec<ConnectFailure>,
    /// The last failure was "network unreachable" (a connect with no route fails at
    /// once, so its error is known; later failures come as a `ConnectFailure` only).
    unroutable: bool,
}

/// What a race came to.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Still connecting.
    Pending,
    /// This connect completed (the other legs are dropped by the caller).
    Won(Leg),
    /// Every address failed (or the time is up): the last failure.
    Lost(ConnectFailure),
}

/// Interleaves `addrs` by family, IPv6 first, each family in its given order.
pub(super) fn interleave(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let (v6, v4): (Vec<SocketAddr>, Vec<SocketAddr>) = addrs.iter().partition(|a| a.is_ipv6());
    let mut out = Vec::with_capacity(addrs.len());
    let (mut a, mut b) = (v6.into_iter(), v4.into_iter());
    loop {
        match (a.next(), b.next()) {
            (None, None) => return out,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
}

impl Race {
    /// A race over `addrs` (already checked by the policy, in dialing order), lost at
    /// `now + timeout`.
    pub(super) fn new(addrs: Vec<SocketAddr>, now: Instant, timeout: Duration) -> Race {
        Race {
            addrs,
            next: 0,
            legs: [None, None],
            next_at: Some(now),
            until: now + timeout,
            last: ConnectFailure::Error,
            uncounted: Vec::new(),
            unroutable: false,
        }
    }

    /// When the race wants to be woken: the next start or the end.
    pub(super) fn deadline(&self) -> Instant {
        self.next_at.map_or(self.until, |n| n.min(self.until))
    }

    /// Starts what is due at `now` (a new leg when one is free), and judges the time
    /// limit. `open` registers a started leg under its index; a leg that cannot be
    /// dialed or registered counts as failed.
    pub(super) fn advance(
        &mut self,
        now: Instant,
        tuning: Tuning,
        open: &mut dyn FnMut(usize, &mut Conn) -> std::io::Result<()>,
    ) -> Outcome {
        if now >= self.until {
            self.unroutable = false;
            self.uncounted.push(ConnectFailure::Timeout);
            return Outcome::Lost(ConnectFailure::Timeout);
        }
        while self.next_at.is_some_and(|at| at <= now) {
            let Some(free) = self.legs.iter().position(Option::is_none) else {
                self.next_at = None;
                break;
            };
            let Some(&addr) = self.addrs.get(self.next) else {
                self.next_at = None;
                break;
            };
            self.next += 1;
            let more = self.next < self.addrs.len();
            self.next_at = more.then_some(now + HEAD_START);
            match Conn::dial(addr, Some(tuning)).and_then(|mut conn| {
                open(free, &mut conn)?;
                Ok(conn)
            }) {
                Ok(conn) => self.legs[free] = Some(Leg { conn, addr }),
                Err(e) => {
                    self.last = ConnectFailure::from_error(&e);
                    self.unroutable = e.kind() == std::io::ErrorKind::NetworkUnreachable;
                    self.uncounted.push(self.last);
                    // The next address starts at once.
                    self.next_at = more.then_some(now);
                }
            }
        }
        self.settled()
    }

    /// Leg `i` had an event: whether its connect completed or failed. A failure starts
    /// the next address at once (the caller calls [`advance`](Self::advance) after).
    pub(super) fn on_event(&mut self, i: usize, now: Instant) -> Option<Outcome> {
        let leg = self.legs.get_mut(i)?.as_mut()?;
        match leg.conn.connect_status() {
            ConnectStatus::Pending => None,
            ConnectStatus::Connected => self.legs[i].take().map(Outcome::Won),
            ConnectStatus::Failed(f) => {
                self.last = f;
                self.unroutable = false;
                self.uncounted.push(f);
                self.legs[i] = None;
                if self.next < self.addrs.len() {
                    self.next_at = Some(now);
                }
                Some(Outcome::Pending)
            }
        }
    }

    /// Lost once no leg is in flight and no address is left to start.
    fn settled(&self) -> Outcome {
        let flying = self.legs.iter().any(Option::is_some);
        if !flying && self.next_at.is_none() {
            Outcome::Lost(self.last)
        } else {
            Outcome::Pending
        }
    }

    /// Whether the last failure was "network unreachable".
    pub(super) fn unroutable(&self) -> bool {
        self.unroutable
    }

    /// The failed connects since the last call, each once (for the listener's counters).
    pub(super) fn take_failures(&mut self) -> std::vec::Drain<'_, ConnectFailure> {
        self.uncounted.drain(..)
    }

    /// The legs still in flight (to deregister and drop).
    pub(super) fn take_legs(&mut self) -> impl Iterator<Item = Leg> + '_ {
        self.legs.iter_mut().filter_map(Option::take)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn families_alternate_ipv6_first() {
        let given = [
            a("192.0.2.1:1"),
            a("192.0.2.2:1"),
            a("192.0.2.3:1"),
            a("[2001:db8::1]:1"),
            a("[2001:db8::2]:1"),
        ];
        let want = [
            a("[2001:db8::1]:1"),
            a("192.0.2.1:1"),
            a("[2001:db8::2]:1"),
            a("192.0.2.2:1"),
            a("192.0.2.3:1"),
        ];
        assert_eq!(interleave(&given), want);
        assert_eq!(interleave(&given[..1]), [given[0]]);
        assert!(interleave(&[]).is_empty());
    }
}
