//! What a mio `Token` names: the signal pipe, a listener, or one side of a session.
//!
//! Session tokens are `SESSION_BASE + (slot << 1 | side)`: the slab slot and the side in
//! one number, so one slab entry serves both sockets. A slot is freed only after the
//! event batch that closed it, and a closed entry ignores events, so an event can never
//! reach a different session that reuses the slot.

use mio::Token;

use crate::core::reason::Side;

/// Listeners get tokens below this; sessions at and above.
const SESSION_BASE: usize = 1 << 16;
/// The most listeners one process may have.
pub const MAX_LISTENERS: usize = SESSION_BASE - 2;

/// What a token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The signal pipe.
    Signals,
    /// Listener number `n`.
    Listener(usize),
    /// One side of the session in slab slot `slot`.
    Session {
        /// The slab slot.
        slot: usize,
        /// Which socket.
        side: Side,
    },
}

impl Target {
    /// The token for this target.
    pub fn token(self) -> Token {
        match self {
            Target::Signals => Token(0),
            Target::Listener(n) => Token(1 + n),
            Target::Session { slot, side } => {
                let bit = match side {
                    Side::Client => 0,
                    Side::Upstream => 1,
                };
                Token(SESSION_BASE + (slot << 1 | bit))
            }
        }
    }

    /// The target a token stands for.
    pub fn of(token: Token) -> Target {
        match token.0 {
            0 => Target::Signals,
            n if n < SESSION_BASE => Target::Listener(n - 1),
            n => {
                let k = n - SESSION_BASE;
                let side = if k & 1 == 0 {
                    Side::Client
                } else {
                    Side::Upstream
                };
                Target::Session { slot: k >> 1, side }
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
