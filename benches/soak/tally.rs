//! The soak's shared counters: sessions finished by ending, bytes each way,
//! and every kind of wrong outcome, seen from the client or the upstream.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::plan::Ending;

/// Which peer saw something.
#[derive(Clone, Copy)]
pub enum Side {
    Client,
    Upstream,
}

/// Counters updated by every worker thread.
#[derive(Default)]
pub struct Tally {
    pub sessions: AtomicU64,
    pub by_ending: [AtomicU64; 4],
    pub upstream_sessions: AtomicU64,
    /// Bytes received by the client / by the upstream.
    pub client_received: AtomicU64,
    pub upstream_received: AtomicU64,
    /// Bytes written by the client / by the upstream.
    pub client_sent: AtomicU64,
    pub upstream_sent: AtomicU64,
    /// A received byte differs from the seeded payload, or exceeds its length
    /// (and, upstream, a header with a wrong magic word).
    pub client_mismatches: AtomicU64,
    pub upstream_mismatches: AtomicU64,
    /// A FIN ending that delivered less than the whole payload before EOF.
    pub truncated: AtomicU64,
    /// A FIN ending that saw a reset.
    pub unexpected_resets: AtomicU64,
    /// No progress for the stall limit.
    pub stalls: AtomicU64,
    pub connect_errors: AtomicU64,
    /// Upstream connections closed before a whole header (after a client reset).
    pub headerless: AtomicU64,
}

impl Tally {
    pub fn session_done(&self, ending: Ending) {
        let index = Ending::ALL.iter().position(|e| *e == ending).unwrap_or(0);
        self.by_ending[index].fetch_add(1, Relaxed);
        self.sessions.fetch_add(1, Relaxed);
    }

    pub fn upstream_done(&self) {
        self.upstream_sessions.fetch_add(1, Relaxed);
    }

    pub fn add_bytes(&self, side: Side, received: u64, sent: u64) {
        let (r, s) = match side {
            Side::Client => (&self.client_received, &self.client_sent),
            Side::Upstream => (&self.upstream_received, &self.upstream_sent),
        };
        r.fetch_add(received, Relaxed);
        s.fetch_add(sent, Relaxed);
    }

    pub fn mismatch(&self, side: Side) {
        match side {
            Side::Client => &self.client_mismatches,
            Side::Upstream => &self.upstream_mismatches,
        }
        .fetch_add(1, Relaxed);
    }

    pub fn truncated(&self, _side: Side) {
        self.truncated.fetch_add(1, Relaxed);
    }

    pub fn unexpected_reset(&self, _side: Side) {
        self.unexpected_resets.fetch_add(1, Relaxed);
    }

    pub fn stall(&self, _side: Side) {
        self.stalls.fetch_add(1, Relaxed);
    }

    pub fn connect_error(&self) {
        self.connect_errors.fetch_add(1, Relaxed);
    }

    pub fn headerless(&self) {
        self.headerless.fetch_add(1, Relaxed);
    }

    /// Every wrong byte, extra byte or short FIN ending: must stay 0.
    pub fn mismatches(&self) -> u64 {
        self.client_mismatches.load(Relaxed)
            + self.upstream_mismatches.load(Relaxed)
            + self.truncated.load(Relaxed)
    }

    /// Bytes delivered to a peer, both directions.
    pub fn bytes_delivered(&self) -> u64 {
        self.client_received.load(Relaxed) + self.upstream_received.load(Relaxed)
    }

    /// Outcomes that are not byte errors but should not happen either.
    pub fn anomalies(&self) -> u64 {
        self.unexpected_resets.load(Relaxed)
            + self.stalls.load(Relaxed)
            + self.connect_errors.load(Relaxed)
    }
}
