//! The hand-over after a reset: one side broke, and the bytes read from it (in the ring,
//! and what its kernel received before the RST) are still owed to the other side.
//!
//! [`hand_over`] writes them, then ends the other side by policy: under `mirror` it waits
//! until the kernel's send queue has been acknowledged (`SIOCOUTQ` = 0) and aborts (RST);
//! under `fin` it sends FIN. Owed bytes that cannot be handed over within the flush
//! timeout end in RST under either policy: a FIN would claim the stream ended complete.
//! Pure like the session: streams are a trait, time is an argument.

use std::time::{Duration, Instant};

use super::pipe::{Flow, Pipe, Pump};
use super::pool::Pool;
use super::stream::{retry, Peer, Stream};

/// How long to wait between two looks at the unacknowledged bytes before an RST.
pub const RESET_RECHECK: Duration = Duration::from_millis(5);

/// What the other side sees when one side resets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ResetPolicy {
    /// The other side gets an RST too, after the bytes owed to it.
    #[default]
    Mirror,
    /// The other side gets a FIN after the bytes owed to it (nginx's behaviour).
    Fin,
}

/// Where a hand-over stands after one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handover {
    /// Owed bytes wait for the other side's room (or the flush timeout).
    Waiting,
    /// Everything is written; look at the unacknowledged bytes again at this instant.
    Recheck(Instant),
    /// Over: the other side was given its RST or FIN (or is gone too).
    Done,
}

/// Hands `pipe`'s owed bytes from `broken` to `other`. `expired`: the flush timeout has
/// passed, so whatever is still owed is dropped and `other` gets an RST.
pub fn hand_over<S: Stream>(
    pipe: &mut Pipe,
    broken: &mut Peer<S>,
    other: &mut Peer<S>,
    pool: &mut Pool,
    policy: ResetPolicy,
    now: Instant,
    expired: bool,
) -> Handover {
    // Owed bytes: those in the ring, and those the broken side's kernel received before
    // its RST (still readable after it; a reset socket never blocks).
    loop {
        if pipe.flush(other, pool).is_err() {
            // The other side is gone too: nothing more is owed.
            pipe.end(pool);
            other.stream.abort();
            return Handover::Done;
        }
        if !pipe.wants_read() {
            break;
        }
        broken.ready.readable = true;
        match pipe.fill(broken, pool) {
            Some(Pump::Progress { .. }) if pipe.flow() == Flow::Open => continue,
            Some(Pump::Broken(..)) => pipe.stop_reading(),
            _ => {}
        }
        if pipe.pending() == 0 || !other.ready.writable {
            break;
        }
    }
    if pipe.pending() > 0 {
        if !expired {
            return Handover::Waiting;
        }
        // The other side took nothing for the whole flush timeout: owed bytes are lost,
        // so it gets an RST under either policy.
        pipe.discard(pool);
        other.stream.abort();
        return Handover::Done;
    }
    match policy {
        ResetPolicy::Fin => {
            if pipe.flow() != Flow::Done {
                // A failure here means the peer is gone as well; the close follows anyway.
                let _ = retry(|| other.stream.shutdown_write());
            }
        }
        ResetPolicy::Mirror => {
            let unacked = other.stream.unacked().unwrap_or(0);
            if unacked > 0 && !expired {
                return Handover::Recheck(now + RESET_RECHECK);
            }
            other.stream.abort();
        }
    }
    Handover::Done
}
