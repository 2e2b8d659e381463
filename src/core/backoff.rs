//! Reconnect backoff: exponential from [`BACKOFF_BASE`], capped, with jitter, grown once
//! per failed *round*.
//!
//! An agent dials a whole pool of tunnels at once; when the relay is down they all fail
//! together. Counting each would jump to the cap after one outage, so failures while a
//! retry is already scheduled belong to the round that scheduled it. Pure: time and the
//! random jitter are passed in.

use std::time::{Duration, Instant};

/// First reconnect delay; doubled per consecutive failed round up to the cap.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);

/// The backoff of one service's tunnels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
}

impl Backoff {
    /// A failure at `now`: schedules the next try (half to all of the round's step,
    /// `random` picking where: any number, reduced modulo the range). Returns the delay,
    /// or `None` when a retry is already scheduled (the same round).
    pub fn failed(&mut self, now: Instant, cap: Duration, random: u64) -> Option<Duration> {
        if self.waiting(now) {
            return None;
        }
        self.failures = self.failures.saturating_add(1);
        let step = BACKOFF_BASE
            .saturating_mul(1u32 << self.failures.saturating_sub(1).min(16))
            .min(cap);
        let half = step / 2;
        let span = u64::try_from(half.as_millis()).unwrap_or(u64::MAX).max(1);
        let delay = half + Duration::from_millis(random % span);
        self.retry_at = Some(now + delay);
        Some(delay)
    }

    /// A success: the next failure starts from the base again.
    pub fn succeeded(&mut self) {
        *self = Backoff::default();
    }

    /// True while a retry is scheduled for later than `now`.
    pub fn waiting(&self, now: Instant) -> bool {
        self.retry_at.is_some_and(|t| now < t)
    }

    /// When the next try is due, if one is scheduled.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Failed rounds in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Duration = Duration::from_secs(30);

    #[test]
    fn delays_double_per_round_within_half_to_all_of_the_step() {
        let mut t = Instant::now();
        let mut b = Backoff::default();
        let mut steps = Vec::new();
        for round in 0..12 {
            let low = b.failed(t, CAP, 0).expect("a new round");
            // Not waiting any more once the delay has passed.
            t += low;
            let mut again = b;
            again.failures -= 1;
            again.retry_at = None;
            let high = again
                .failed(t, CAP, u64::MAX - 1)
                .expect("same round replayed");
            assert!(low <= high, "round {round}");
            steps.push(low);
        }
        assert_eq!(steps[0], Duration::from_millis(50));
        assert_eq!(steps[1], Duration::from_millis(100));
        assert_eq!(steps[2], Duration::from_millis(200));
        assert_eq!(*steps.last().expect("rounds"), CAP / 2, "capped");
        assert_eq!(b.failures(), 12);
    }

    #[test]
    fn failures_within_a_scheduled_retry_are_one_round() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        let d = b.failed(t0, CAP, 7).expect("first failure");
        for _ in 0..100 {
            assert_eq!(b.failed(t0 + d / 2, CAP, 7), None);
        }
        assert_eq!(b.failures(), 1);
        assert!(b.waiting(t0) && !b.waiting(t0 + d));
        assert_eq!(b.retry_at(), Some(t0 + d));
    }

    #[test]
    fn a_success_starts_over() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        for i in 0..5 {
            b.failed(t0 + Duration::from_secs(100 * i), CAP, 0);
        }
        b.succeeded();
        assert_eq!(b.failures(), 0);
        assert!(!b.waiting(t0));
        assert_eq!(
            b.failed(t0 + Duration::from_secs(1000), CAP, 0),
            Some(Duration::from_millis(50))
        );
    }
}
