//! Failed tunnel handshakes per source address, and the rate limit on warnings about them.
//!
//! The relay counts against its source address each handshake the peer failed: a wrong
//! proof, bytes that break the protocol, a handshake still unfinished at its deadline (a
//! silent peer holding a slot). A peer that closes before answering is not counted: a
//! burst of connections lost in the kernel's listen queue must not lock out a legitimate
//! agent. An address with [`FAILURE_LIMIT`] failures within [`FAILURE_WINDOW`] is refused
//! for the rest of that window ([`Admission::Refuse`]), unless it authenticated within
//! [`TRUSTED_FOR`]: such a source is only slowed ([`Admission::Slow`], a delay before each
//! handshake), so a stranger behind the same NAT address cannot lock the agent out. The
//! tables are bounded ([`FAILURE_TABLE`] addresses each): when full, expired entries go
//! first, then everything (a flood of sources cannot grow memory).
//! Warnings are limited to [`WARNINGS_PER_WINDOW`] a window; the rest are counted and
//! summed up in the first warning of the next window. Pure: time is passed in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failed handshakes from one address within [`FAILURE_WINDOW`] before it is refused.
pub const FAILURE_LIMIT: u32 = 10;
/// The window of the failure count.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most.
pub const FAILURE_TABLE: usize = 4096;
/// Warnings about failed handshakes per [`FAILURE_WINDOW`] at most.
pub const WARNINGS_PER_WINDOW: u32 = 20;
/// How long a source that authenticated is slowed rather than refused.
pub const TRUSTED_FOR: Duration = Duration::from_secs(300);
/// The delay before each handshake of a trusted source over the failure limit.
pub const SLOW_DELAY: Duration = Duration::from_secs(1);

/// What a new handshake from an address gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// It starts at once.
    Allow,
    /// It starts after this delay (a trusted source over the failure limit).
    Slow(Duration),
    /// It is closed at once (an untrusted source over the failure limit).
    Refuse,
}

/// Whether a warning may be logged now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warn {
    /// Yes.
    Yes,
    /// Yes, after a summary: this many warnings were not logged in the last window, out
    /// of this many failures in all.
    AfterSuppressed {
        /// Warnings not logged.
        suppressed: u64,
        /// Failures recorded since the start.
        total: u64,
    },
    /// No: the window's warnings are spent (this one is counted).
    No,
}

/// Failed handshakes per source address, and the warnings about them.
#[derive(Debug, Default)]
pub struct Failures {
    by_ip: HashMap<IpAddr, (u32, Instant)>,
    /// When each address last authenticated a tunnel.
    trusted: HashMap<IpAddr, Instant>,
    total: u64,
    warned: u32,
    suppressed: u64,
    window: Option<Instant>,
}

impl Failures {
    /// Counts one failed handshake from `ip`.
    pub fn record(&mut self, ip: IpAddr, now: Instant) {
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

    /// Whether `ip` is over the failure limit now.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> bool {
        self.by_ip.get(&ip).is_some_and(|&(count, start)| {
            count >= FAILURE_LIMIT && now.duration_since(start) < FAILURE_WINDOW
        })
    }

    /// Records that `ip` authenticated a tunnel.
    pub fn authenticated(&mut self, ip: IpAddr, now: Instant) {
        if self.trusted.len() >= FAILURE_TABLE && !self.trusted.contains_key(&ip) {
            self.trusted
                .retain(|_, at| now.duration_since(*at) < TRUSTED_FOR);
            if self.trusted.len() >= FAILURE_TABLE {
                self.trusted.clear();
            }
        }
        self.trusted.insert(ip, now);
    }

    /// What a new handshake from `ip` gets now.
    pub fn admission(&self, ip: IpAddr, now: Instant) -> Admission {
        if !self.blocked(ip, now) {
            return Admission::Allow;
        }
        let trusted = self
            .trusted
            .get(&ip)
            .is_some_and(|&at| now.duration_since(at) < TRUSTED_FOR);
        if trusted {
            Admission::Slow(SLOW_DELAY)
        } else {
            Admission::Refuse
        }
    }

    /// Whether a warning may be logged now (at most [`WARNINGS_PER_WINDOW`] a window).
    pub fn may_warn(&mut self, now: Instant) -> Warn {
        let mut summary = None;
        if self
            .window
            .is_none_or(|w| now.duration_since(w) >= FAILURE_WINDOW)
        {
            if self.suppressed > 0 {
                summary = Some(self.suppressed);
            }
            self.window = Some(now);
            self.warned = 0;
            self.suppressed = 0;
        }
        self.warned += 1;
        if self.warned > WARNINGS_PER_WINDOW {
            self.suppressed += 1;
            return Warn::No;
        }
        match summary {
            Some(suppressed) => Warn::AfterSuppressed {
                suppressed,
                total: self.total,
            },
            None => Warn::Yes,
        }
    }

    /// Addresses remembered now.
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    /// True when no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn ten_failures_in_a_minute_block_until_the_window_ends() {
        let t0 = Instant::now();
        let mut f = Failures::default();
        for i in 0..FAILURE_LIMIT - 1 {
            f.record(ip(1), t0 + Duration::from_secs(u64::from(i)));
        }
        assert!(!f.blocked(ip(1), t0 + Duration::from_secs(10)));
        f.record(ip(1), t0 + Duration::from_secs(10));
        assert!(f.blocked(ip(1), t0 + Duration::from_secs(10)));
        assert!(
            !f.blocked(ip(2), t0 + Duration::from_secs(10)),
            "per address"
        );
        assert!(f.blocked(ip(1), t0 + Duration::from_secs(59)));
        assert!(!f.blocked(ip(1), t0 + FAILURE_WINDOW), "the window ends");
    }

    #[test]
    fn a_failure_after_the_window_starts_a_new_count() {
        let t0 = Instant::now();
        let mut f = Failures::default();
        for _ in 0..FAILURE_LIMIT - 1 {
            f.record(ip(1), t0);
        }
        f.record(ip(1), t0 + FAILURE_WINDOW);
        assert!(!f.blocked(ip(1), t0 + FAILURE_WINDOW));
    }

    #[test]
    fn the_table_stays_bounded_under_a_flood_of_sources() {
        let t0 = Instant::now();
        let mut f = Failures::default();
        for n in 0..(FAILURE_TABLE as u32 * 3) {
            f.record(ip(n), t0);
        }
        assert!(f.len() <= FAILURE_TABLE, "{} addresses", f.len());
        // Expired entries go first when the table is full.
        let later = t0 + FAILURE_WINDOW;
        f.record(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), later);
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn a_source_that_authenticated_is_slowed_not_refused() {
        let t0 = Instant::now();
        let mut f = Failures::default();
        f.authenticated(ip(1), t0);
        for _ in 0..FAILURE_LIMIT {
            f.record(ip(1), t0);
            f.record(ip(2), t0);
        }
        let now = t0 + Duration::from_secs(1);
        assert_eq!(f.admission(ip(1), now), Admission::Slow(SLOW_DELAY));
        assert_eq!(
            f.admission(ip(2), now),
            Admission::Refuse,
            "never authenticated"
        );
        assert_eq!(f.admission(ip(3), now), Admission::Allow);
        // Trust lapses after TRUSTED_FOR without an authentication; the count, after
        // its window.
        let mut later = Failures::default();
        later.authenticated(ip(1), t0);
        let late = t0 + TRUSTED_FOR;
        for _ in 0..FAILURE_LIMIT {
            later.record(ip(1), late);
        }
        assert_eq!(later.admission(ip(1), late), Admission::Refuse);
        assert_eq!(
            later.admission(ip(1), late + FAILURE_WINDOW),
            Admission::Allow
        );
    }

    #[test]
    fn the_trusted_table_stays_bounded() {
        let t0 = Instant::now();
        let mut f = Failures::default();
        for n in 0..(FAILURE_TABLE as u32 * 3) {
            f.authenticated(ip(n), t0);
        }
        assert!(f.trusted.len() <= FAILURE_TABLE, "{}", f.trusted.len());
    }

    #[test]
    fn warnings_are_limited_per_window_and_summed_up_after() {
        let t0 = Instant::now();
        let mut f = Failures::default();
        for _ in 0..WARNINGS_PER_WINDOW {
            f.record(ip(1), t0);
            assert_eq!(f.may_warn(t0), Warn::Yes);
        }
        for _ in 0..5 {
            f.record(ip(1), t0);
            assert_eq!(f.may_warn(t0 + Duration::from_secs(30)), Warn::No);
        }
        f.record(ip(1), t0 + FAILURE_WINDOW);
        assert_eq!(
            f.may_warn(t0 + FAILURE_WINDOW),
            Warn::AfterSuppressed {
                suppressed: 5,
                total: u64::from(WARNINGS_PER_WINDOW) + 6
            }
        );
        assert_eq!(f.may_warn(t0 + FAILURE_WINDOW), Warn::Yes);
    }
}
