//! What a mio `Token` names: the signal pipe, the waker, a listening port, or one socket
//! held in a slab.
//!
//! Tokens from [`SLOT_BASE`] up are `SLOT_BASE + (index << 3 | kind)`: what the socket is
//! (a session's client or upstream, a tunnel before pairing, a waiting client, a metrics
//! connection) in the low three bits, and where it lives above them. Sessions and metrics
//! connections live in slabs of their own; tunnels and waiting clients live in their
//! listener's slabs, so their index is `slot << 8 | listener`. The layout fits 32-bit
//! targets: 2^21 tunnel slots per listener, 2^26 session slots.
//!
//! A session's slot is freed only after the event batch that closed it, and a closed
//! entry ignores events. Events carry no meaning beyond "look at this socket" (readiness
//! is a cache; syscalls decide), so an event reaching a new owner of a reused slot is
//! harmless.

use mio::Token;

use crate::core::reason::Side;

/// Ports get tokens below this; slab entries at and above.
const SLOT_BASE: usize = 1 << 16;
/// Listening ports one process may have at once.
pub const MAX_PORTS: usize = SLOT_BASE - FIRST_PORT;
/// Listeners one process may have (their slot fits in eight bits).
pub const MAX_LISTENERS: usize = 256;
/// Tokens below this are fixed.
const FIRST_PORT: usize = 3;

/// What a token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The signal pipe.
    Signals,
    /// The waker (an agent's name resolver has an answer).
    Waker,
    /// The metrics endpoint's listening socket.
    Metrics,
    /// Listening port in slot `n`.
    Port(usize),
    /// One side of the session in slab slot `slot`.
    Session {
        /// The slab slot.
        slot: usize,
        /// Which socket.
        side: Side,
    },
    /// A tunnel before pairing, in its listener's slab.
    Tunnel {
        /// The listener's slot.
        listener: usize,
        /// The tunnel's slot.
        slot: usize,
    },
    /// A relay's public client waiting for a tunnel, in its listener's slab.
    Waiting {
        /// The listener's slot.
        listener: usize,
        /// The client's slot.
        slot: usize,
    },
    /// A connection to the metrics endpoint, in its slab slot.
    Scrape(usize),
}

const CLIENT: usize = 0;
const UPSTREAM: usize = 1;
const TUNNEL: usize = 2;
const WAITING: usize = 3;
const SCRAPE: usize = 4;

impl Target {
    /// The token for this target.
    pub fn token(self) -> Token {
        let slotted = |index: usize, kind: usize| Token(SLOT_BASE + (index << 3 | kind));
        let owned = |listener: usize, slot: usize| slot << 8 | (listener & 0xff);
        match self {
            Target::Signals => Token(0),
            Target::Waker => Token(1),
            Target::Metrics => Token(2),
            Target::Port(n) => Token(FIRST_PORT + n),
            Target::Session { slot, side } => match side {
                Side::Client => slotted(slot, CLIENT),
                Side::Upstream => slotted(slot, UPSTREAM),
            },
            Target::Tunnel { listener, slot } => slotted(owned(listener, slot), TUNNEL),
            Target::Waiting { listener, slot } => slotted(owned(listener, slot), WAITING),
            Target::Scrape(slot) => slotted(slot, SCRAPE),
        }
    }

    /// The target a token stands for.
    pub fn of(token: Token) -> Target {
        match token.0 {
            0 => Target::Signals,
            1 => Target::Waker,
            2 => Target::Metrics,
            n if n < SLOT_BASE => Target::Port(n - FIRST_PORT),
            n => {
                let k = n - SLOT_BASE;
                let index = k >> 3;
                let (listener, slot) = (index & 0xff, index >> 8);
                match k & 7 {
                    CLIENT => Target::Session {
                        slot: index,
                        side: Side::Client,
                    },
                    UPSTREAM => Target::Session {
                        slot: index,
                        side: Side::Upstream,
                    },
                    TUNNEL => Target::Tunnel { listener, slot },
                    WAITING => Target::Waiting { listener, slot },
                    _ => Target::Scrape(index),
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
            Target::Metrics,
            Target::Tunnel {
                listener: 3,
                slot: 7,
            },
            Target::Tunnel {
                listener: MAX_LISTENERS - 1,
                slot: 0,
            },
            Target::Waiting {
                listener: 0,
                slot: 0,
            },
            Target::Waiting {
                listener: 200,
                slot: 99_999,
            },
            Target::Port(0),
            Target::Port(MAX_PORTS - 1),
            Target::Scrape(15),
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
