//! The log rate limiter: a token bucket driven by the caller's clock, so its behaviour is
//! tested with virtual time.
//!
//! `rate` tokens per second, at most `rate * 10` (at least 1) saved up for a burst; each
//! line costs one token and a line that finds the bucket empty is dropped and counted.
//! The first line that passes after drops carries the count for a summary line, at most
//! once per second; the summary itself costs no token, so a storm yields at most
//! `rate + 1` lines per second. `rate == 0` means no limit.

use std::time::{Duration, Instant};

/// Shortest time between two summary lines.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(1);

/// Seconds of `rate` a full bucket holds.
const BURST_SECONDS: u64 = 10;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// What becomes of one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    /// Write it.
    Pass,
    /// First write a summary of this many dropped lines, then the line.
    PassAfterSummary(u64),
    /// Drop it (counted).
    Drop,
}

/// A token bucket of log lines.
#[derive(Debug)]
pub(crate) struct Bucket {
    /// Tokens per second; 0: no limit.
    rate: u32,
    /// Most tokens saved up.
    burst: u64,
    tokens: u64,
    /// The instant up to which earned tokens have been credited (the remainder of a
    /// partly earned token is kept by not moving it past the time that token needs).
    credited: Instant,
    /// Lines dropped and not yet told in a summary.
    untold: u64,
    /// When the last summary was given.
    last_summary: Option<Instant>,
}

impl Bucket {
    /// A full bucket.
    pub(crate) fn new(rate: u32, now: Instant) -> Bucket {
        let burst = u64::from(rate).saturating_mul(BURST_SECONDS).max(1);
        Bucket {
            rate,
            burst,
            tokens: burst,
            credited: now,
            untold: 0,
            last_summary: None,
        }
    }

    /// Decides the fate of one line at `now`.
    pub(crate) fn take(&mut self, now: Instant) -> Take {
        if self.rate == 0 {
            return Take::Pass;
        }
        self.refill(now);
        if self.tokens == 0 {
            self.untold = self.untold.saturating_add(1);
            return Take::Drop;
        }
        self.tokens -= 1;
        let summary_due = self
            .last_summary
            .is_none_or(|at| now.saturating_duration_since(at) >= SUMMARY_INTERVAL);
        if self.untold > 0 && summary_due {
            let told = std::mem::take(&mut self.untold);
            self.last_summary = Some(now);
            return Take::PassAfterSummary(told);
        }
        Take::Pass
    }

    /// Credits the tokens earned since `credited`, up to the burst.
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.credited).as_nanos();
        let rate = u128::from(self.rate);
        let earned = elapsed.saturating_mul(rate) / NANOS_PER_SEC;
        if earned == 0 {
            return;
        }
        let room = self.burst - self.tokens;
        match u64::try_from(earned) {
            Ok(earned) if earned < room => {
                self.tokens += earned;
                // Move on by exactly the time these tokens took: the fraction stays.
                let spent = u128::from(earned) * NANOS_PER_SEC / rate;
                let spent = Duration::from_nanos(u64::try_from(spent).unwrap_or(u64::MAX));
                self.credited = self.credited.checked_add(spent).unwrap_or(now).min(now);
            }
            _ => {
                self.tokens = self.burst;
                self.credited = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Takes `n` lines at `now` and counts what became of them.
    fn take_n(b: &mut Bucket, now: Instant, n: u64) -> (u64, u64, Vec<u64>) {
        let (mut passed, mut dropped, mut summaries) = (0, 0, Vec::new());
        for _ in 0..n {
            match b.take(now) {
                Take::Pass => passed += 1,
                Take::PassAfterSummary(k) => {
                    passed += 1;
                    summaries.push(k);
                }
                Take::Drop => dropped += 1,
            }
        }
        (passed, dropped, summaries)
    }

    #[test]
    fn burst_then_drops() {
        let t0 = Instant::now();
        let mut b = Bucket::new(5, t0);
        assert_eq!(take_n(&mut b, t0, 50), (50, 0, vec![]));
        assert_eq!(take_n(&mut b, t0, 7), (0, 7, vec![]));
    }

    #[test]
    fn refills_at_the_rate_and_tells_the_drops_once() {
        let t0 = Instant::now();
        let mut b = Bucket::new(5, t0);
        take_n(&mut b, t0, 53);
        // 199 ms: not one token earned yet (one per 200 ms).
        assert_eq!(b.take(t0 + ms(199)), Take::Drop);
        assert_eq!(b.take(t0 + ms(200)), Take::PassAfterSummary(4));
        assert_eq!(b.take(t0 + ms(200)), Take::Drop);
        // One second later: five tokens; the drop in between is told with the first.
        let t1 = t0 + ms(1200);
        assert_eq!(take_n(&mut b, t1, 8), (5, 3, vec![1]));
        // Within a second of that summary, drops wait for the next one.
        assert_eq!(b.take(t1 + ms(200)), Take::Pass);
        assert_eq!(b.take(t1 + ms(200)), Take::Drop);
        assert_eq!(b.take(t1 + ms(1000)), Take::PassAfterSummary(4));
    }

    #[test]
    fn the_fraction_of_a_token_is_kept() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10, t0);
        take_n(&mut b, t0, 100);
        // 150 ms earns one token and keeps 50 ms toward the next: at 200 ms, one more.
        assert_eq!(b.take(t0 + ms(150)), Take::Pass);
        assert_eq!(b.take(t0 + ms(150)), Take::Drop);
        assert_eq!(b.take(t0 + ms(200)), Take::PassAfterSummary(1));
        assert_eq!(b.take(t0 + ms(200)), Take::Drop);
    }

    #[test]
    fn refill_stops_at_the_burst() {
        let t0 = Instant::now();
        let mut b = Bucket::new(2, t0);
        take_n(&mut b, t0, 20);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(take_n(&mut b, later, 25), (20, 5, vec![]));
    }

    #[test]
    fn a_sustained_storm_passes_the_rate_plus_one_summary_per_second() {
        let t0 = Instant::now();
        let mut b = Bucket::new(100, t0);
        take_n(&mut b, t0, 1000);
        let (mut passed, mut dropped, mut summaries) = (0, 0, Vec::new());
        // 1000 lines a second for 10 s, one every millisecond.
        for i in 1..=10_000 {
            let (p, d, s) = take_n(&mut b, t0 + ms(i), 1);
            passed += p;
            dropped += d;
            summaries.extend(s);
        }
        assert_eq!(passed, 1000);
        assert_eq!(dropped, 9000);
        assert!((9..=10).contains(&summaries.len()), "{summaries:?}");
        assert!(summaries.iter().sum::<u64>() <= dropped);
    }

    #[test]
    fn rate_zero_never_drops() {
        let t0 = Instant::now();
        let mut b = Bucket::new(0, t0);
        assert_eq!(take_n(&mut b, t0, 1_000_000), (1_000_000, 0, vec![]));
    }

    #[test]
    fn the_burst_is_ten_seconds_of_the_rate() {
        let t0 = Instant::now();
        let b = Bucket::new(1, t0);
        assert_eq!(b.burst, 10);
        let huge = Bucket::new(u32::MAX, t0);
        assert_eq!(huge.burst, u64::from(u32::MAX) * 10);
    }

    #[test]
    fn a_clock_that_does_not_move_forward_earns_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = Bucket::new(1, t0);
        take_n(&mut b, t0, 10);
        assert_eq!(b.take(t0 - Duration::from_secs(5)), Take::Drop);
        assert_eq!(b.take(t0 + ms(999)), Take::Drop);
        assert_eq!(b.take(t0 + ms(1000)), Take::PassAfterSummary(2));
    }
}
