//! A session: one client's life, from accept to close, with its two pipes.
//!
//! The session is the relay core's state machine. It owns both peers (stream and
//! readiness cache) and decides every byte move and every close; it never reads the clock
//! (time is passed in) and never touches the poller. The event loop feeds it events, calls
//! [`Session::drive`] until it reports [`Drive::Waiting`], and arms a timer at
//! [`Session::deadline`].
//!
//! A mode's handshake with the upstream reaches the session only as a [`Preamble`]: bytes
//! to write before relaying, and a reply to await from the upstream. The session knows no
//! protocol beyond that.
//!
//! States: `Connecting` (the upstream connect, then the awaited reply, in flight; client
//! bytes are read ahead into the ring), `Relaying` (both pipes run), `Resetting` (one side
//! broke: the bytes read from it are handed to the other side, see `handover`), and
//! `Closed` with exactly one [`CloseReason`]. Every state has a deadline.

use std::io::IoSlice;
use std::time::{Duration, Instant};

use super::handover::ResetPolicy;
use super::pipe::{Bytes, Flow, Pipe};
use super::pool::Pool;
use super::reason::{CloseReason, Side};
use super::stream::{retry, ConnectFailure, ConnectStatus, Peer, Readiness, Stream};

mod flow;
mod phase;
mod preamble;

pub use phase::Phase;
pub use preamble::{Preamble, Reply, ReplyCheck};

#[cfg(test)]
mod random;
#[cfg(test)]
mod tests;

/// The session's timeouts and policies, from configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Bound on one upstream connect attempt (and the reply awaited after it).
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

/// Where the upstream connect stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The TCP handshake of a dialed upstream.
    Dialing,
    /// Connected; the preamble's reply is awaited. The upstream already takes writes.
    AwaitingReply,
}

/// Where the session stands. Changed only through the methods below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting {
        since: Instant,
        stage: Stage,
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

/// One client's session over streams of type `S`.
#[derive(Debug)]
pub struct Session<S> {
    client: Peer<S>,
    upstream: Peer<S>,
    to_upstream: Pipe,
    to_client: Pipe,
    state: State,
    last_progress: Instant,
    first_eof: Option<Side>,
    reply: Option<ReplyCheck>,
    on_failure: Option<&'static [u8]>,
}

impl<S: Stream> Session<S> {
    /// A session whose upstream connect has just been started.
    pub fn new(client: S, upstream: S, now: Instant) -> Session<S> {
        Session {
            client: Peer::new(client),
            upstream: Peer::new(upstream),
            to_upstream: Pipe::new(),
            to_client: Pipe::new(),
            state: State::Connecting {
                since: now,
                stage: Stage::Dialing,
                client_gone: None,
            },
            last_progress: now,
            first_eof: None,
            reply: None,
            on_failure: None,
        }
    }

    /// A session whose upstream stream is connected already (a paired tunnel): it relays
    /// at once, or once the preamble's reply arrives.
    pub fn established(client: S, upstream: S, now: Instant) -> Session<S> {
        let mut s = Session::new(client, upstream, now);
        s.state = State::Connecting {
            since: now,
            stage: Stage::AwaitingReply,
            client_gone: None,
        };
        s
    }

    /// Sets the handshake with the upstream. Call before the first drive.
    pub fn with_preamble(mut self, preamble: Preamble) -> Session<S> {
        if let Some(bytes) = preamble.to_upstream {
            self.to_upstream.set_prefix(bytes);
        }
        if let Some(bytes) = preamble.to_client {
            // Not written before the upstream is connected: the client's pipe runs only then.
            self.to_client.set_prefix(bytes);
        }
        self.reply = preamble.reply;
        self.on_failure = preamble.on_failure;
        self
    }

    /// Records readiness reported by an event.
    pub fn on_event(&mut self, side: Side, ready: Readiness) {
        self.peer(side).ready.add(ready);
    }

    /// Moves every byte that can move, within `budget` bytes written.
    pub fn drive(
        &mut self,
        pool: &mut Pool,
        now: Instant,
        policy: &Policy,
        budget: usize,
    ) -> Drive {
        if let State::Connecting { client_gone, .. } = self.state {
            if let Some(failed) = self.check_connect(now) {
                // A client that is gone has nobody to try another upstream for.
                return match client_gone {
                    Some(reason) => self.close(reason, pool),
                    None => failed,
                };
            }
        }
        match self.state {
            State::Closed(reason) => Drive::Closed(reason),
            State::Resetting { .. } => self.drive_reset(pool, now, policy),
            State::Connecting {
                client_gone: Some(_),
                ..
            } => Drive::Waiting,
            State::Connecting { .. } | State::Relaying => self.relay(pool, now, policy, budget),
        }
    }

    /// When the session's current timeout expires; `None` once closed.
    pub fn deadline(&self, policy: &Policy) -> Option<Instant> {
        match self.state {
            State::Connecting { since, .. } => Some(since + policy.connect_timeout),
            State::Relaying if self.half_closed() => {
                Some(self.last_progress + policy.half_close_timeout)
            }
            State::Relaying => Some(self.last_progress + policy.idle_timeout),
            State::Resetting { since, recheck, .. } => {
                let limit = since + policy.reset_flush_timeout;
                Some(recheck.map_or(limit, |r| r.min(limit)))
            }
            State::Closed(_) => None,
        }
    }

    /// The timer fired at `now`: acts on the deadline if it has passed.
    pub fn expire(&mut self, pool: &mut Pool, now: Instant, policy: &Policy) -> Drive {
        match self.deadline(policy) {
            Some(deadline) if now >= deadline => {}
            Some(_) => return Drive::Waiting,
            None => return self.drive(pool, now, policy, 0),
        }
        match self.state {
            State::Connecting {
                client_gone: Some(reason),
                ..
            } => self.close(reason, pool),
            State::Connecting { .. } => Drive::ConnectFailed(ConnectFailure::Timeout),
            State::Relaying if self.half_closed() => {
                self.close(CloseReason::HalfCloseTimeout, pool)
            }
            State::Relaying => self.close(CloseReason::IdleTimeout, pool),
            State::Resetting { .. } => self.drive_reset(pool, now, policy),
            State::Closed(reason) => Drive::Closed(reason),
        }
    }

    /// Replaces a failed upstream with a new connect in progress, whose preamble bytes
    /// are `to_upstream` (none of the old ones went out: the old connect never
    /// completed); returns the old stream.
    pub fn redial(&mut self, upstream: S, to_upstream: Option<Bytes>, now: Instant) -> S {
        debug_assert!(matches!(self.state, State::Connecting { .. }));
        self.to_upstream.replace_prefix(to_upstream);
        self.state = State::Connecting {
            since: now,
            stage: Stage::Dialing,
            client_gone: None,
        };
        std::mem::replace(&mut self.upstream, Peer::new(upstream)).stream
    }

    /// No upstream is left to try: the session closes for the last failure, after the
    /// preamble's failure bytes to the client.
    pub fn fail_connect(&mut self, failure: ConnectFailure, pool: &mut Pool) -> Drive {
        let reason = CloseReason::connect(failure);
        if let Some(bytes) = self.on_failure {
            // Best effort: the client is closed right after either way.
            let _ = retry(|| self.client.stream.write_vectored(&[IoSlice::new(bytes)]));
        }
        self.close(reason, pool)
    }

    /// The loop refuses the session for `reason` (a client that broke a rule of its
    /// listener before any of its bytes moved).
    pub fn refuse(&mut self, reason: CloseReason, pool: &mut Pool) -> Drive {
        match self.state {
            State::Closed(reason) => Drive::Closed(reason),
            _ => self.close(reason, pool),
        }
    }

    /// The process is stopping and the drain timeout expired.
    pub fn shut_down(&mut self, pool: &mut Pool) -> Drive {
        match self.state {
            State::Closed(reason) => Drive::Closed(reason),
            _ => self.close(CloseReason::Shutdown, pool),
        }
    }

    /// The stream of `side` (connected or connecting).
    pub fn stream(&mut self, side: Side) -> &mut S {
        &mut self.peer(side).stream
    }

    /// Takes the streams out (client, upstream).
    pub fn into_streams(self) -> (S, S) {
        (self.client.stream, self.upstream.stream)
    }

    /// True once the upstream is connected (and its awaited reply, if any, arrived).
    pub fn connected(&self) -> bool {
        !matches!(self.state, State::Connecting { .. })
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

    /// The phase; `None` once closed.
    pub fn phase(&self) -> Option<Phase> {
        match self.state {
            State::Connecting { .. } => Some(Phase::Connecting),
            State::Relaying if self.half_closed() => Some(Phase::HalfClosed),
            State::Relaying => Some(Phase::Relaying),
            State::Resetting { .. } => Some(Phase::Resetting),
            State::Closed(_) => None,
        }
    }

    /// Buffers held by the two pipes.
    pub fn buffers_held(&self) -> usize {
        usize::from(self.to_upstream.holds_buffer()) + usize::from(self.to_client.holds_buffer())
    }

    fn peer(&mut self, side: Side) -> &mut Peer<S> {
        match side {
            Side::Client => &mut self.client,
            Side::Upstream => &mut self.upstream,
        }
    }

    fn half_closed(&self) -> bool {
        self.to_upstream.flow() == Flow::Done || self.to_client.flow() == Flow::Done
    }

    /// Follows mio's connect recipe: after an event, ask the socket; a spurious event
    /// (still pending) clears the cache and keeps waiting. Then the preamble's reply, if
    /// one is awaited.
    fn check_connect(&mut self, now: Instant) -> Option<Drive> {
        let State::Connecting {
            since,
            stage,
            client_gone,
        } = self.state
        else {
            return None;
        };
        if stage == Stage::Dialing {
            let ready = self.upstream.ready;
            if !ready.writable && !ready.readable {
                return None;
            }
            match self.upstream.stream.connect_status() {
                ConnectStatus::Connected => {}
                ConnectStatus::Pending => {
                    self.upstream.ready = Readiness::default();
                    return None;
                }
                ConnectStatus::Failed(failure) => return Some(Drive::ConnectFailed(failure)),
            }
            if self.reply.is_some() {
                self.state = State::Connecting {
                    since,
                    stage: Stage::AwaitingReply,
                    client_gone,
                };
            }
        }
        if let Some(check) = self.reply {
            match preamble::read_reply(&mut self.upstream, check) {
                ConnectStatus::Connected => self.reply = None,
                ConnectStatus::Pending => return None,
                ConnectStatus::Failed(failure) => return Some(Drive::ConnectFailed(failure)),
            }
        }
        self.state = match client_gone {
            // Hand the owed bytes over, then pass the client's reset on.
            Some(reason) => State::Resetting {
                broken: Side::Client,
                reason,
                since: now,
                recheck: None,
            },
            None => State::Relaying,
        };
        self.last_progress = now;
        None
    }

    fn close(&mut self, reason: CloseReason, pool: &mut Pool) -> Drive {
        debug_assert!(
            !matches!(self.state, State::Closed(_)),
            "a session closes exactly once"
        );
        self.to_upstream.discard(pool);
        self.to_client.discard(pool);
        self.state = State::Closed(reason);
        Drive::Closed(reason)
    }
}
