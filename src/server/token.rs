//! What a mio `Token` names: the signal pipe, a listener, or one side of a session.
//!
//! Other tokens are `SLOT_BASE + (slot << 2 | kind)`: the slab slot and what it holds
//! (a session's client or upstream socket, a tunnel before pairing, a waiting client) in
//! one number, so one slab entry serves both sockets of a session. A session's slot is
//! freed only after the event batch that closed it, and a closed entry ignores events.
//! Events carry no meaning beyond "look at this socket" (readiness is a cache; syscalls
//! decide), so an event reaching a new owner of a reused slot is harmless.

use mio::Token;

use crate::core::reason::Side;

/// Listeners get tokens below this; slab entries at and above.
const SLOT_BASE: usize = 1 << 16;
/// The most listeners one process may have.
pub const MAX_LISTENERS: usize = SLOT_BASE - 3;

/// What a token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The signal pipe.
    Signals,
    /// The waker (the agent's name resolver has an answer).
    Waker,
    /// Listener number `n`.
    Listener(usize),
    /// One side of the session in slab slot `slot`.
    Session {
        /// The slab slot.
        slot: usize,
        /// Which socket.
        side: Side,
    },
    /// A tunnel before pairing, in its slab slot.
    Tunnel(usize),
    /// A relay's public client waiting for a tunnel, in its slab slot.
    Waiting(usize),
}

impl Target {
    /// The token for this target.
    pub fn token(self) -> Token {
        match self {
            Target::Signals => Token(0),
            Target::Waker => Token(1),
            Target::Listener(n) => Token(2 + n),
            Target::Session { slot, side } => {
                let kind = match side {
                    Side::Client => 0,
                    Side::Upstream => 1,
                };
                Token(SLOT_BASE + (slot << 2 | kind))
            }
            Target::Tunnel(slot) => Token(SLOT_BASE + (slot << 2 | 2)),
            Target::Waiting(slot) => Token(SLOT_BASE + (slot << 2 | 3)),
        }
    }

    /// The target a token stands for.
    pub fn of(token: Token) -> Target {
        match token.0 {
            0 => Target::Signals,
            1 => Target::Waker,
            n if n < SLOT_BASE => Target::Listener(n - 2),
            n => {
                let k = n - SLOT_BASE;
                let slot = k >> 2;
                match k & 3 {
                    0 => Target::Session {
                        slot,
                        side: Side::Client,
                    },
                    1 => Target::Session {
                        slot,
                        side: Side::Upstream,
                    },
                    2 => Target::Tunnel(slot),
                    _ => Target::Waiting(slot),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for t in [
            Target::Signals,
            Target::Waker,
            Target::Tunnel(7),
            Target::Waiting(0),
            Target::Listener(0),
            Target::Listener(MAX_LISTENERS - 1),
            Target::Session {
                slot: 0,
                side: Side::Client,
            },
            Target::Session {
                slot: 0,
                side: Side::Upstream,
            },
            Target::Session {
                slot: 123_456,
                side: Side::Upstream,
            },
        ] {
            assert_eq!(Target::of(t.token()), t);
        }
    }

    #[test]
    fn sides_of_one_session_differ() {
        let c = Target::Session {
            slot: 5,
            side: Side::Client,
        };
        let u = Target::Session {
            slot: 5,
            side: Side::Upstream,
        };
        assert_ne!(c.token(), u.token());
    }
}
