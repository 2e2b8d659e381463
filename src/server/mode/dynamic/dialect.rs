//! What a `connect` or `socks` client says before its tunnel opens, as steps the
//! handshake applies: read on, answer and read on, a request, or a refusal. Pure: each
//! step is computed from the bytes received so far (peeked, never consumed here) and
//! says how many bytes it used, so bytes after the request stay in the socket as tunnel
//! data. Each dialect is one file (`connect.rs`, `socks.rs`) and one arm here.

use std::net::SocketAddr;

use super::step::{Failure, Step};
use super::{connect, socks};
use crate::core::credentials::Credentials;

/// Which protocol a listener's clients speak, and where each client stands in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::server) enum Dialect {
    /// HTTP CONNECT: one request.
    Connect,
    /// SOCKS5: greeting, credentials (when asked for), request.
    Socks(socks::Next),
}

impl Dialect {
    /// A fresh client's state.
    pub(in crate::server) fn connect() -> Dialect {
        Dialect::Connect
    }

    /// A fresh SOCKS5 client's state.
    pub(in crate::server) fn socks() -> Dialect {
        Dialect::Socks(socks::Next::Greeting)
    }

    /// The next step, from the bytes received so far (of the current message).
    pub(in crate::server) fn step(&mut self, buf: &[u8], users: &Credentials) -> Step {
        match self {
            Dialect::Connect => connect::step(buf, users),
            Dialect::Socks(next) => socks::step(next, buf, users),
        }
    }

    /// The answer that opens the tunnel; `bound`: the outbound socket's local address.
    pub(in crate::server) fn success(&self, bound: Option<SocketAddr>) -> Vec<u8> {
        match self {
            Dialect::Connect => connect::success(),
            Dialect::Socks(_) => socks::success(bound),
        }
    }

    /// The answer to a failure after the request.
    pub(in crate::server) fn failure(&self, failure: Failure) -> Vec<u8> {
        match self {
            Dialect::Connect => connect::failure(failure),
            Dialect::Socks(_) => socks::failure(failure),
        }
    }

    /// The longest message a client may send at once (the peek buffer).
    pub(in crate::server) fn max_message(&self) -> usize {
        match self {
            Dialect::Connect => crate::proto::connect::MAX_HEAD + 1,
            Dialect::Socks(_) => socks::MAX_MESSAGE,
        }
    }
}

#[cfg(test)]
mod tests;
