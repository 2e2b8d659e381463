//! A session: one client's life, from accept to close, with its two pipes.
//!
//! The session is the relay core's state machine. It owns both streams and the readiness
//! cache of each, and decides every byte move and every close; it never reads the clock
//! (time is passed in) and never touches the poller. The event loop feeds it events, calls
//! [`Session::drive`] until it reports [`Drive::Waiting`], and arms a timer at
//! [`Session::deadline`].
//!
//! Phases: `Connecting` (upstream handshake in flight; client bytes are read ahead into
//! the ring), `Relaying` (both pipes run), `Resetting` (one side broke: the bytes read from
//! it are handed to the other side, then that side is aborted or given a FIN, by policy),
//! and `Closed` with exactly one [`CloseReason`].

use std::io::{IoSlice, IoSliceMut};
use std::time::{Duration, Instant};

use super::pipe::{End, Flow, Pipe, Pump};
use super::pool::Pool;
use super::reason::{CloseReason, Side};
use super::stream::{classify, retry, ConnectFailure, ConnectStatus, Io, Stream};
use crate::proto::tunnel::{agent_frame, AgentFrame};

#[cfg(test)]
mod random;
#[cfg(test)]
mod tests;

/// How long to wait between two looks at the unacknowledged bytes before an RST.
pub const RESET_RECHECK: Duration = Duration::from_millis(5);

/// What the other side sees when one side resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetPolicy {
    /// The other side gets an RST too, after the bytes owed to it.
    Mirror,
    /// The other side gets a FIN after the bytes owed to it (nginx's behaviour).
    Fin,
}

/// The session's timeouts and policies, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Bound on one upstream connect attempt.
    pub connect_timeout: Duration,
    /// Bound on a session where no byte moves.
    pub idle_timeout: Duration,
    /// Bound on a session with one direction finished where no byte moves.
    pub half_close_timeout: Duration,
    /// Bound on handing owed bytes to a side before resetting it.
    pub reset_flush_timeout: Duration,
    /// RST or FIN when the other side resets.
    pub reset_policy: ResetPolicy,
}

/// Readiness cache of one socket: set by events, cleared by `WouldBlock` (or a short
/// read or write, see [`Pipe::pump`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readiness {
    /// A read may make progress.
    pub readable: bool,
    /// A write may make progress.
    pub writable: bool,
    /// The peer's FIN or RST has been reported (sticky: it raises no further event).
    pub read_closed: bool,
}

/// What the event loop must do after a drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drive {
    /// Nothing can move until an event or the deadline.
    Waiting,
    /// The byte budget of this pass is spent; drive again next pass.
    Yielded,
    /// A pipe waits for a pool buffer; drive again when one is given back.
    Starved,
    /// The upstream connect failed: dial the next upstream, or [`Session::fail_connect`].
    ConnectFailed(ConnectFailure),
    /// The session is over; drop its streams.
    Closed(CloseReason),
}

/// What completes the upstream "connect".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    /// The TCP handshake of a dialed upstream.
    Handshake,
    /// A paired tunnel: the agent's READY (or REFUSED) frame. The ATTACH prefix and the
    /// client's first bytes may already be written meanwhile.
    TunnelReady,
}

/// Where the session stands. Changed only through the methods below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting {
        since: Instant,
        awaiting: Awaiting,
        /// The client reset while we still owe its bytes to the upstream: they are handed
        /// over (then the reset passes on) once the connect completes.
        client_gone: Option<CloseReason>,
    },
    Relaying,
    Resetting {
        broken: Side,
        reason: CloseReason,
        since: Instant,
        recheck: Option<Instant>,
    },
    Closed(CloseReason),
}

/// A coarse view of the phase, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseName {
    /// Waiting for the upstream handshake.
    Connecting,
    /// Both directions open.
    Relaying,
    /// One direction finished.
    HalfClosed,
    /// One side broke; owed bytes are being handed over.
    Resetting,
    /// Over.
    Closed,
}

/// One client's session over streams of type `S`.
#[derive(Debug)]
pub struct Session<S> {
    client: S,
    upstream: S,
    client_ready: Readiness,
    upstream_ready: Readiness,
    to_upstream: Pipe,
    to_client: Pipe,
    phase: Phase,
    last_progress: Instant,
    first_eof: Option<Side>,
    /// Bytes for the client once the upstream accepts, and before closing when it fails.
    replies: Option<(&'static [u8], &'static [u8])>,
}

impl<S: Stream> Session<S> {
    /// A session whose upstream connect has just been started.
    pub fn new(client: S, upstream: S, now: Instant) -> Session<S> {
        Session {
            client,
            upstream,
            client_ready: Readiness::default(),
            upstream_ready: Readiness::default(),
            to_upstream: Pipe::new(),
            to_client: Pipe::new(),
            phase: Phase::Connecting {
                since: now,
                awaiting: Awaiting::Handshake,
                client_gone: None,
            },
            last_progress: now,
            first_eof: None,
            replies: None,
        }
    }

    /// A relay session: a public client paired with an idle tunnel. `attach` (the ATTACH
    /// frame) goes to the tunnel first; the session relays once the agent answers READY.
    pub fn paired(client: S, tunnel: S, attach: &[u8], now: Instant) -> Session<S> {
        let mut s = Session::new(client, tunnel, now);
        s.phase = Phase::Connecting {
            since: now,
            awaiting: Awaiting::TunnelReady,
            client_gone: None,
        };
        s.to_upstream.set_prefix(attach);
        s
    }

    /// Protocol replies to the client: `ready` is written before any upstream byte once
    /// the upstream accepts; `failed` is written (best effort) before closing when it
    /// does not. The agent answers the relay with READY or REFUSED this way.
    pub fn set_replies(&mut self, ready: &'static [u8], failed: &'static [u8]) {
        self.replies = Some((ready, failed));
    }

    /// Records readiness reported by an event.
    pub fn on_event(&mut self, side: Side, ready: Readiness) {
        let cache = match side {
            Side::Client => &mut self.client_ready,
            Side::Upstream => &mut self.upstream_ready,
        };
        cache.readable |= ready.readable;
        cache.writable |= ready.writable;
        cache.read_closed |= ready.read_closed;
    }

    /// Moves every byte that can move, within `budget` bytes written.
    pub fn drive(
        &mut self,
        pool: &mut Pool,
        now: Instant,
        policy: &Policy,
        budget: usize,
    ) -> Drive {
        if let Phase::Connecting { client_gone, .. } = self.phase {
            if let Some(failed) = self.check_connect(now) {
                // A client that is gone has nobody to try another upstream for.
                return match client_gone {
                    Some(reason) => self.close(reason, pool),
                    None => failed,
                };
            }
        }
        match self.phase {
            Phase::Closed(reason) => Drive::Closed(reason),
            Phase::Resetting { .. } => self.drive_reset(pool, now, policy),
            Phase::Connecting {
                client_gone: Some(_),
                ..
            } => Drive::Waiting,
            Phase::Connecting { .. } | Phase::Relaying => self.relay(pool, now, policy, budget),
        }
    }

    /// When the session's current timeout expires; `None` once closed.
    pub fn deadline(&self, policy: &Policy) -> Option<Instant> {
        match self.phase {
            Phase::Connecting { since, .. } => Some(since + policy.connect_timeout),
            Phase::Relaying if self.half_closed() => {
                Some(self.last_progress + policy.half_close_timeout)
            }
            Phase::Relaying => Some(self.last_progress + policy.idle_timeout),
            Phase::Resetting { since, recheck, .. } => {
                let limit = since + policy.reset_flush_timeout;
                Some(recheck.map_or(limit, |r| r.min(limit)))
            }
            Phase::Closed(_) => None,
        }
    }

    /// The timer fired at `now`: acts on the deadline if it has passed.
    pub fn expire(&mut self, pool: &mut Pool, now: Instant, policy: &Policy) -> Drive {
        match self.deadline(policy) {
            Some(deadline) if now >= deadline => {}
            Some(_) => return Drive::Waiting,
            None => return self.drive(pool, now, policy, 0),
        }
        match self.phase {
            Phase::Connecting {
                client_gone: Some(reason),
                ..
            } => self.close(reason, pool),
            Phase::Connecting { .. } => Drive::ConnectFailed(ConnectFailure::Timeout),
            Phase::Relaying if self.half_closed() => {
                self.close(CloseReason::HalfCloseTimeout, pool)
            }
            Phase::Relaying => self.close(CloseReason::IdleTimeout, pool),
            Phase::Resetting { .. } => self.drive_reset(pool, now, policy),
            Phase::Closed(reason) => Drive::Closed(reason),
        }
    }

    /// Replaces a failed upstream with a new connect in progress; returns the old stream.
    pub fn redial(&mut self, upstream: S, now: Instant) -> S {
        debug_assert!(matches!(self.phase, Phase::Connecting { .. }));
        self.upstream_ready = Readiness::default();
        self.phase = Phase::Connecting {
            since: now,
            awaiting: Awaiting::Handshake,
            client_gone: None,
        };
        std::mem::replace(&mut self.upstream, upstream)
    }

    /// No upstream is left to try: the session closes for the last failure.
    pub fn fail_connect(&mut self, failure: ConnectFailure, pool: &mut Pool) -> Drive {
        let reason = match failure {
            ConnectFailure::Refused => CloseReason::ConnectRefused,
            ConnectFailure::Timeout => CloseReason::ConnectTimeout,
            ConnectFailure::Error => CloseReason::ConnectError,
        };
        if let Some((_, failed)) = self.replies {
            // Best effort: the client is closed right after either way.
            let _ = retry(|| self.client.write_vectored(&[IoSlice::new(failed)]));
        }
        self.close(reason, pool)
    }

    /// The process is stopping and the drain timeout expired.
    pub fn shut_down(&mut self, pool: &mut Pool) -> Drive {
        match self.phase {
            Phase::Closed(reason) => Drive::Closed(reason),
            _ => self.close(CloseReason::Shutdown, pool),
        }
    }

    /// The client's stream.
    pub fn client(&mut self) -> &mut S {
        &mut self.client
    }

    /// The upstream's stream (connected or connecting).
    pub fn upstream(&mut self) -> &mut S {
        &mut self.upstream
    }

    /// Takes the streams out, to deregister and drop them.
    pub fn into_streams(self) -> (S, S) {
        (self.client, self.upstream)
    }

    /// True once the upstream handshake has completed.
    pub fn connected(&self) -> bool {
        !matches!(self.phase, Phase::Connecting { .. })
    }

    /// Bytes delivered (to the upstream, to the client).
    pub fn delivered(&self) -> (u64, u64) {
        (self.to_upstream.delivered(), self.to_client.delivered())
    }

    /// Read pauses and resumes of both directions (backpressure).
    pub fn pauses(&self) -> (u64, u64) {
        let (a, b) = self.to_upstream.pauses();
        let (c, d) = self.to_client.pauses();
        (a + c, b + d)
    }

    /// When a byte last moved (the idle timeout counts from here).
    pub fn last_progress(&self) -> Instant {
        self.last_progress
    }

    /// The phase, coarsely.
    pub fn phase_name(&self) -> PhaseName {
        match self.phase {
            Phase::Connecting { .. } => PhaseName::Connecting,
            Phase::Relaying if self.half_closed() => PhaseName::HalfClosed,
            Phase::Relaying => PhaseName::Relaying,
            Phase::Resetting { .. } => PhaseName::Resetting,
            Phase::Closed(_) => PhaseName::Closed,
        }
    }

    /// Buffers held by the two pipes.
    pub fn buffers_held(&self) -> usize {
        usize::from(self.to_upstream.holds_buffer()) + usize::from(self.to_client.holds_buffer())
    }

    fn half_closed(&self) -> bool {
        self.to_upstream.flow() == Flow::Done || self.to_client.flow() == Flow::Done
    }

    /// Follows mio's connect recipe: after an event, ask the socket; a spurious event
    /// (still pending) clears the cache and keeps waiting. A paired tunnel is "connected"
    /// when the agent's READY arrives (heartbeats sent before it are skipped).
    fn check_connect(&mut self, now: Instant) -> Option<Drive> {
        let Phase::Connecting {
            awaiting,
            client_gone,
            ..
        } = self.phase
        else {
            return None;
        };
        let ready = self.upstream_ready;
        let status = match awaiting {
            Awaiting::Handshake if !ready.writable && !ready.readable => return None,
            Awaiting::Handshake => self.upstream.connect_status(),
            Awaiting::TunnelReady => self.read_tunnel_status(),
        };
        match status {
            ConnectStatus::Connected => {
                self.phase = match client_gone {
                    // Hand the owed bytes over, then pass the client's reset on.
                    Some(reason) => Phase::Resetting {
                        broken: Side::Client,
                        reason,
                        since: now,
                        recheck: None,
                    },
                    None => Phase::Relaying,
                };
                self.last_progress = now;
                if let Some((ready, _)) = self.replies {
                    self.to_client.set_prefix(ready);
                }
                None
            }
            ConnectStatus::Pending => {
                if awaiting == Awaiting::Handshake {
                    self.upstream_ready = Readiness::default();
                }
                None
            }
            ConnectStatus::Failed(failure) => Some(Drive::ConnectFailed(failure)),
        }
    }

    /// Reads the agent's answer one byte at a time, so no relayed byte is consumed.
    fn read_tunnel_status(&mut self) -> ConnectStatus {
        while self.upstream_ready.readable {
            let mut byte = [0u8; 1];
            let read = retry(|| {
                self.upstream
                    .read_vectored(&mut [IoSliceMut::new(&mut byte)])
            });
            match classify(read) {
                Io::Moved(_) => match agent_frame(byte[0]) {
                    Ok(AgentFrame::Heartbeat) => continue,
                    Ok(AgentFrame::Ready) => return ConnectStatus::Connected,
                    Ok(AgentFrame::Refused) => {
                        return ConnectStatus::Failed(ConnectFailure::Refused)
                    }
                    Err(_) => return ConnectStatus::Failed(ConnectFailure::Error),
                },
                Io::Blocked => self.upstream_ready.readable = false,
                Io::Eof | Io::Reset | Io::Error(_) => {
                    return ConnectStatus::Failed(ConnectFailure::Error)
                }
            }
        }
        ConnectStatus::Pending
    }

    fn relay(&mut self, pool: &mut Pool, now: Instant, policy: &Policy, budget: usize) -> Drive {
        let connected = self.connected();
        // A paired tunnel takes the ATTACH frame and the client's bytes before READY.
        let upstream_open = connected
            || matches!(
                self.phase,
                Phase::Connecting {
                    awaiting: Awaiting::TunnelReady,
                    ..
                }
            );
        let mut written_total = 0;
        let mut starved = false;
        loop {
            let mut progress = false;
            for source in [Side::Client, Side::Upstream] {
                if source == Side::Upstream && !connected {
                    continue;
                }
                let before = self.pipe_from(source).flow();
                let pumped = self.pump(source, upstream_open, pool);
                let after = self.pipe_from(source).flow();
                if before == Flow::Open && after != Flow::Open {
                    self.first_eof.get_or_insert(source);
                }
                match pumped {
                    Pump::Progress { written } => {
                        progress = true;
                        written_total += written;
                        if written > 0 || after == Flow::Done && before != Flow::Done {
                            self.last_progress = now;
                        }
                    }
                    Pump::Stuck => {}
                    Pump::Starved => starved = true,
                    Pump::Broken(End::Source, reset) => {
                        return self.break_side(source, reset, pool, now, policy)
                    }
                    Pump::Broken(End::Destination, reset) => {
                        return self.break_side(source.peer(), reset, pool, now, policy)
                    }
                }
            }
            if self.to_upstream.flow() == Flow::Done && self.to_client.flow() == Flow::Done {
                let first = self.first_eof.unwrap_or(Side::Client);
                return self.close(CloseReason::eof(first), pool);
            }
            if !progress {
                break;
            }
            if written_total >= budget {
                return Drive::Yielded;
            }
        }
        self.assert_no_stall(upstream_open, connected, starved);
        if starved {
            Drive::Starved
        } else {
            Drive::Waiting
        }
    }

    fn pump(&mut self, source: Side, upstream_open: bool, pool: &mut Pool) -> Pump {
        match source {
            Side::Client => self.to_upstream.pump(
                &mut self.client,
                &mut self.client_ready.readable,
                self.client_ready.read_closed,
                &mut self.upstream,
                &mut self.upstream_ready.writable,
                upstream_open,
                pool,
            ),
            Side::Upstream => self.to_client.pump(
                &mut self.upstream,
                &mut self.upstream_ready.readable,
                self.upstream_ready.read_closed,
                &mut self.client,
                &mut self.client_ready.writable,
                true,
                pool,
            ),
        }
    }

    /// One side reset or failed. Bytes toward it are dropped; bytes read from it are still
    /// owed to the other side, which `drive_reset` hands over before the RST or FIN.
    fn break_side(
        &mut self,
        side: Side,
        reset: bool,
        pool: &mut Pool,
        now: Instant,
        policy: &Policy,
    ) -> Drive {
        let reason = CloseReason::broken(side, reset);
        if let Phase::Connecting {
            since, awaiting, ..
        } = self.phase
        {
            let owed = self.to_upstream.pending() > 0;
            // A paired tunnel already takes writes: hand over at once (below). A dialed
            // upstream does not yet: wait for the connect if bytes are owed.
            if side == Side::Upstream || (awaiting == Awaiting::Handshake && !owed) {
                if side == Side::Client && policy.reset_policy == ResetPolicy::Mirror {
                    self.upstream.abort();
                }
                return self.close(reason, pool);
            }
            if awaiting == Awaiting::Handshake {
                self.to_client.end(pool);
                self.to_upstream.stop_reading();
                self.phase = Phase::Connecting {
                    since,
                    awaiting,
                    client_gone: Some(reason),
                };
                return Drive::Waiting;
            }
        }
        self.pipe_from(side.peer()).end(pool);
        self.phase = Phase::Resetting {
            broken: side,
            reason,
            since: now,
            recheck: None,
        };
        self.drive_reset(pool, now, policy)
    }

    fn drive_reset(&mut self, pool: &mut Pool, now: Instant, policy: &Policy) -> Drive {
        let Phase::Resetting {
            broken,
            reason,
            since,
            ..
        } = self.phase
        else {
            return self.drive(pool, now, policy, 0);
        };
        let expired = now >= since + policy.reset_flush_timeout;
        let (pipe, source, source_ready, peer, ready) = match broken.peer() {
            Side::Client => (
                &mut self.to_client,
                &mut self.upstream,
                &mut self.upstream_ready.readable,
                &mut self.client,
                &mut self.client_ready.writable,
            ),
            Side::Upstream => (
                &mut self.to_upstream,
                &mut self.client,
                &mut self.client_ready.readable,
                &mut self.upstream,
                &mut self.upstream_ready.writable,
            ),
        };
        // Owed bytes: those in the ring, and those the broken side's kernel received
        // before its RST (still readable after it; a reset socket never blocks).
        loop {
            if pipe.flush(peer, ready, pool).is_err() {
                // The other side is gone too: nothing more is owed.
                pipe.end(pool);
                peer.abort();
                return self.close(reason, pool);
            }
            if !pipe.wants_read() {
                break;
            }
            *source_ready = true;
            match pipe.fill(source, source_ready, pool) {
                Some(Pump::Progress { .. }) if pipe.flow() == Flow::Open => continue,
                Some(Pump::Broken(..)) => pipe.stop_reading(),
                _ => {}
            }
            if pipe.pending() == 0 || !*ready {
                break;
            }
        }
        if pipe.pending() > 0 {
            if !expired {
                return Drive::Waiting;
            }
            // The other side took nothing for the whole flush timeout: owed bytes are
            // lost, so it gets an RST under either policy (a FIN would claim the stream
            // ended complete).
            pipe.discard(pool);
            peer.abort();
            return self.close(reason, pool);
        }
        match policy.reset_policy {
            ResetPolicy::Fin => {
                if pipe.flow() != Flow::Done {
                    // A failure here means the peer is gone as well; the close follows anyway.
                    let _ = retry(|| peer.shutdown_write());
                }
            }
            ResetPolicy::Mirror => {
                let unacked = peer.unacked().unwrap_or(0);
                if unacked > 0 && !expired {
                    self.phase = Phase::Resetting {
                        broken,
                        reason,
                        since,
                        recheck: Some(now + RESET_RECHECK),
                    };
                    return Drive::Waiting;
                }
                peer.abort();
            }
        }
        self.close(reason, pool)
    }

    fn close(&mut self, reason: CloseReason, pool: &mut Pool) -> Drive {
        debug_assert!(
            !matches!(self.phase, Phase::Closed(_)),
            "a session closes exactly once"
        );
        self.to_upstream.discard(pool);
        self.to_client.discard(pool);
        self.phase = Phase::Closed(reason);
        Drive::Closed(reason)
    }

    fn pipe_from(&mut self, source: Side) -> &mut Pipe {
        match source {
            Side::Client => &mut self.to_upstream,
            Side::Upstream => &mut self.to_client,
        }
    }

    /// Edge-triggered discipline: when the session waits, no pipe may have bytes and a
    /// writable destination, or room and a readable source (unless the pool is empty).
    fn assert_no_stall(&self, upstream_open: bool, connected: bool, starved: bool) {
        debug_assert!(
            !(upstream_open && self.to_upstream.pending() > 0 && self.upstream_ready.writable),
            "stall: bytes for a writable upstream"
        );
        debug_assert!(
            !(self.to_client.pending() > 0 && self.client_ready.writable),
            "stall: bytes for a writable client"
        );
        debug_assert!(
            starved || !(self.client_ready.readable && self.to_upstream.wants_read()),
            "stall: room for a readable client"
        );
        debug_assert!(
            starved || !connected || !(self.upstream_ready.readable && self.to_client.wants_read()),
            "stall: room for a readable upstream"
        );
    }
}
