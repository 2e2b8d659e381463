//! Failed tunnel handshakes per source address, and the rate limit on warnings about them.
//!
//! The relay counts each handshake that ends unfinished against its source address; an
//! address with [`FAILURE_LIMIT`] failures within [`FAILURE_WINDOW`] is refused for the
//! rest of that window. The table is bounded ([`FAILURE_TABLE`] addresses): when full,
//! expired entries go first, then everything (a flood of sources cannot grow memory).
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

    /// Whether `ip` is refused now.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> bool {
        self.by_ip.get(&ip).is_some_and(|&(count, start)| {
            count >= FAILURE_LIMIT && now.duration_since(start) < FAILURE_WINDOW
        })
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
