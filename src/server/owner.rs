//! Who owns a socket or a deadline: one key type for both.
//!
//! An [`Owner`] is what the loop holds in a slab: a session, a tunnel before pairing, a
//! public client waiting for one, or an upstream group's warm connection or health check
//! (all three in their listener's mode state), or a metrics connection. Deadlines in the heap are keyed by it; a socket's token is its owner plus
//! which of the owner's sockets it is ([`Target`]).
//!
//! Tokens from [`SLOT_BASE`] up are `SLOT_BASE + (index << 3 | kind)`: the kind of owner
//! (and for a session, its side) in the low three bits, where it lives above them.
//! Sessions and metrics connections live in slabs of their own; tunnels and waiting
//! clients, warm connections and checks live in their listener's slabs, so their index is `slot << 8 | listener`. The
//! layout fits 32-bit targets: 2^21 tunnel slots per listener, 2^26 session slots.
//!
//! A session's slot is freed only after the event batch that closed it, and a closed
//! entry ignores events. Events carry no meaning beyond "look at this socket" (readiness
//! is a cache; syscalls decide), so an event reaching a new owner of a reused slot is
//! harmless. Deadlines carry the owner's id as well, so a timer never fires for a later
//! owner of the same slot.

use mio::Token;

use crate::config::MAX_LISTENERS;
use crate::core::reason::Side;

/// Ports get tokens below this; slab entries at and above.
const SLOT_BASE: usize = 1 << 16;
/// Tokens below this are fixed.
const FIRST_PORT: usize = 3;
/// Listening ports one process may have at once.
pub(super) const MAX_PORTS: usize = SLOT_BASE - FIRST_PORT;
/// Bits of a tunnel's or waiting client's index that name its listener.
const LISTENER_BITS: usize = 8;

const _: () = assert!(
    MAX_LISTENERS <= 1 << LISTENER_BITS,
    "listener slots fit the token"
);

/// What lives in a slab and may own sockets and a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Owner {
    /// The session in slab slot `n`.
    Session(usize),
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
    /// A warm connection or a health check of an upstream group, in its listener's slab.
    Upstream {
        /// The listener's slot.
        listener: usize,
        /// The connection's slot.
        slot: usize,
    },
    /// A client whose PROXY protocol header is awaited, in its listener's slab.
    Preface {
        /// The listener's slot.
        listener: usize,
        /// The client's slot.
        slot: usize,
    },
    /// A `connect` or `socks` client in its handshake, or one of its connects, in its
    /// listener's slab: `slot` is the handshake's slot times four plus which socket
    /// (0 the client, 1 and 2 its connects; deadlines use 0).
    Handshake {
        /// The listener's slot.
        listener: usize,
        /// The handshake's slot and socket, as above.
        slot: usize,
    },
}

/// What a token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// The signal pipe.
    Signals,
    /// The waker (a name resolver has an answer).
    Waker,
    /// The metrics endpoint's listening socket.
    Metrics,
    /// Listening port in slot `n`.
    Port(usize),
    /// A socket of an owner: sessions have two sides; the other owners hold one socket,
    /// reported as [`Side::Client`].
    Socket(Owner, Side),
}

const CLIENT: usize = 0;
const UPSTREAM: usize = 1;
const TUNNEL: usize = 2;
const WAITING: usize = 3;
const SCRAPE: usize = 4;
const UPSTREAM_HELD: usize = 5;
const PREFACE: usize = 6;
const HANDSHAKE: usize = 7;

impl Target {
    /// The token for this target.
    pub(super) fn token(self) -> Token {
        let slotted = |index: usize, kind: usize| Token(SLOT_BASE + (index << 3 | kind));
        let owned = |listener: usize, slot: usize| {
            slot << LISTENER_BITS | (listener & ((1 << LISTENER_BITS) - 1))
        };
        match self {
            Target::Signals => Token(0),
            Target::Waker => Token(1),
            Target::Metrics => Token(2),
            Target::Port(n) => Token(FIRST_PORT + n),
            Target::Socket(owner, side) => match owner {
                Owner::Session(slot) => match side {
                    Side::Client => slotted(slot, CLIENT),
                    Side::Upstream => slotted(slot, UPSTREAM),
                },
                Owner::Tunnel { listener, slot } => slotted(owned(listener, slot), TUNNEL),
                Owner::Waiting { listener, slot } => slotted(owned(listener, slot), WAITING),
                Owner::Scrape(slot) => slotted(slot, SCRAPE),
                Owner::Upstream { listener, slot } => slotted(owned(listener, slot), UPSTREAM_HELD),
                Owner::Preface { listener, slot } => slotted(owned(listener, slot), PREFACE),
                Owner::Handshake { listener, slot } => slotted(owned(listener, slot), HANDSHAKE),
            },
        }
    }

    /// The target a token stands for.
    pub(super) fn of(token: Token) -> Target {
        match token.0 {
            0 => Target::Signals,
            1 => Target::Waker,
            2 => Target::Metrics,
            n if n < SLOT_BASE => Target::Port(n - FIRST_PORT),
            n => {
                let k = n - SLOT_BASE;
                let index = k >> 3;
                let listener = index & ((1 << LISTENER_BITS) - 1);
                let slot = index >> LISTENER_BITS;
                let (owner, side) = match k & 7 {
                    CLIENT => (Owner::Session(index), Side::Client),
                    UPSTREAM => (Owner::Session(index), Side::Upstream),
                    TUNNEL => (Owner::Tunnel { listener, slot }, Side::Client),
                    WAITING => (Owner::Waiting { listener, slot }, Side::Client),
                    UPSTREAM_HELD => (Owner::Upstream { listener, slot }, Side::Client),
                    PREFACE => (Owner::Preface { listener, slot }, Side::Client),
                    HANDSHAKE => (Owner::Handshake { listener, slot }, Side::Client),
                    _ => (Owner::Scrape(index), Side::Client),
                };
                Target::Socket(owner, side)
            }
        }
    }
}

/// The token of an owner's only socket (or a session's client side).
pub(super) fn token(owner: Owner) -> Token {
    Target::Socket(owner, Side::Client).token()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let socket = |owner| Target::Socket(owner, Side::Client);
        for t in [
            Target::Signals,
            Target::Waker,
            Target::Metrics,
            socket(Owner::Tunnel {
                listener: 3,
                slot: 7,
            }),
            socket(Owner::Tunnel {
                listener: MAX_LISTENERS - 1,
                slot: 0,
            }),
            socket(Owner::Waiting {
                listener: 0,
                slot: 0,
            }),
            socket(Owner::Waiting {
                listener: 200,
                slot: 99_999,
            }),
            Target::Port(0),
            Target::Port(MAX_PORTS - 1),
            socket(Owner::Scrape(15)),
            socket(Owner::Upstream {
                listener: 7,
                slot: 4_321,
            }),
            socket(Owner::Handshake {
                listener: 255,
                slot: 99_999 << 2 | 2,
            }),
            socket(Owner::Session(0)),
            Target::Socket(Owner::Session(0), Side::Upstream),
            Target::Socket(Owner::Session(123_456), Side::Upstream),
        ] {
            assert_eq!(Target::of(t.token()), t);
        }
    }

    #[test]
    fn sides_of_one_session_differ() {
        let c = Target::Socket(Owner::Session(5), Side::Client);
        let u = Target::Socket(Owner::Session(5), Side::Upstream);
        assert_ne!(c.token(), u.token());
        assert_eq!(token(Owner::Session(5)), c.token());
    }
}
