//! The relay loop of a session, the second half of its state machine: pump both pipes
//! until nothing moves (within a byte budget), break a side that reset or failed, and
//! hand its owed bytes over (`handover`) before the RST or FIN. Kept apart from the
//! session's lifecycle (`session.rs`: constructors, connect, deadlines, close) so each
//! reads in one sitting.

use std::time::Instant;

use super::{Drive, Policy, Session, Stage, State};
use crate::core::handover::{hand_over, Handover, ResetPolicy};
use crate::core::pipe::{End, Flow, Pipe, Pump};
use crate::core::pool::Pool;
use crate::core::reason::{CloseReason, Side};
use crate::core::stream::Stream;

impl<S: Stream> Session<S> {
    /// Whether the upstream takes writes: connected, or awaiting the reply after connecting
    /// (the preamble and the client's first bytes lose no round trip).
    fn upstream_open(&self) -> bool {
        !matches!(
            self.state,
            State::Connecting {
                stage: Stage::Dialing,
                ..
            }
        )
    }

    pub(super) fn relay(
        &mut self,
        pool: &mut Pool,
        now: Instant,
        policy: &Policy,
        budget: usize,
    ) -> Drive {
        let connected = self.connected();
        let upstream_open = self.upstream_open();
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
            Side::Client => {
                self.to_upstream
                    .pump(&mut self.client, &mut self.upstream, upstream_open, pool)
            }
            Side::Upstream => self
                .to_client
                .pump(&mut self.upstream, &mut self.client, true, pool),
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
        if let State::Connecting { since, stage, .. } = self.state {
            let owed = self.to_upstream.pending() > 0;
            // An upstream awaiting its reply already takes writes: hand over at once
            // (below). A dialing one does not yet: wait for the connect if bytes are owed.
            if side == Side::Upstream || (stage == Stage::Dialing && !owed) {
                if side == Side::Client && policy.reset_policy == ResetPolicy::Mirror {
                    self.upstream.stream.abort();
                }
                return self.close(reason, pool);
            }
            if stage == Stage::Dialing {
                self.to_client.end(pool);
                self.to_upstream.stop_reading();
                self.state = State::Connecting {
                    since,
                    stage,
                    client_gone: Some(reason),
                };
                return Drive::Waiting;
            }
        }
        self.pipe_from(side.peer()).end(pool);
        self.state = State::Resetting {
            broken: side,
            reason,
            since: now,
            recheck: None,
        };
        self.drive_reset(pool, now, policy)
    }

    pub(super) fn drive_reset(&mut self, pool: &mut Pool, now: Instant, policy: &Policy) -> Drive {
        let State::Resetting {
            broken,
            reason,
            since,
            ..
        } = self.state
        else {
            return self.drive(pool, now, policy, 0);
        };
        let expired = now >= since + policy.reset_flush_timeout;
        let (pipe, broken_peer, other) = match broken {
            Side::Upstream => (&mut self.to_client, &mut self.upstream, &mut self.client),
            Side::Client => (&mut self.to_upstream, &mut self.client, &mut self.upstream),
        };
        let policy_word = policy.reset_policy;
        match hand_over(pipe, broken_peer, other, pool, policy_word, now, expired) {
            Handover::Waiting => Drive::Waiting,
            Handover::Recheck(at) => {
                self.state = State::Resetting {
                    broken,
                    reason,
                    since,
                    recheck: Some(at),
                };
                Drive::Waiting
            }
            Handover::Done => self.close(reason, pool),
        }
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
            !(upstream_open && self.to_upstream.pending() > 0 && self.upstream.ready.writable),
            "stall: bytes for a writable upstream"
        );
        debug_assert!(
            !(connected && self.to_client.pending() > 0 && self.client.ready.writable),
            "stall: bytes for a writable client"
        );
        debug_assert!(
            starved || !(self.client.ready.readable && self.to_upstream.wants_read()),
            "stall: room for a readable client"
        );
        debug_assert!(
            starved || !connected || !(self.upstream.ready.readable && self.to_client.wants_read()),
            "stall: room for a readable upstream"
        );
    }
}
