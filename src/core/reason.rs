//! Sides of a session and the one reason each session closes for.

use std::fmt;

use super::stream::ConnectFailure;

/// One of the two peers of a session, named absolutely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The peer that connected to one of our listeners.
    Client,
    /// The peer we connected to.
    Upstream,
}

impl Side {
    /// The other side.
    pub fn peer(self) -> Side {
        match self {
            Side::Client => Side::Upstream,
            Side::Upstream => Side::Client,
        }
    }
}

/// Why a session closed. Every session ends with exactly one, logged once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both directions finished; the client sent its FIN first.
    ClientEof,
    /// Both directions finished; the upstream sent its FIN first.
    UpstreamEof,
    /// The client reset the connection (RST, or a write found it gone).
    ClientReset,
    /// The upstream reset the connection.
    UpstreamReset,
    /// Another error on the client's socket.
    ClientError,
    /// Another error on the upstream's socket.
    UpstreamError,
    /// Every upstream refused the connection.
    ConnectRefused,
    /// The last upstream did not answer within the connect timeout.
    ConnectTimeout,
    /// The last connect failed otherwise (unreachable, no descriptors, self-connect...).
    ConnectError,
    /// No byte moved in either direction for the idle timeout.
    IdleTimeout,
    /// One direction had finished and no byte moved for the half-close timeout.
    HalfCloseTimeout,
    /// Relay: no tunnel became free within the pair timeout.
    PairTimeout,
    /// Refused at a configured limit (waiting clients per service).
    Limit,
    /// The process was stopping and the drain timeout expired.
    Shutdown,
    /// A PROXY protocol header was missing or invalid from a trusted source, or sent by
    /// an untrusted one.
    ProxyHeader,
    /// A trusted source's PROXY header was not complete within its deadline.
    ProxyHeaderTimeout,
    /// A `connect` or `socks` client's handshake broke its protocol (a malformed or
    /// oversized request, another method or version, an unsupported command).
    Handshake,
    /// A `connect` or `socks` client's request was not complete within its deadline.
    HandshakeTimeout,
    /// Credentials missing or wrong, a client address not allowed, or a source refused
    /// after too many failures.
    Auth,
    /// The destination policy refused every address of the destination.
    Denied,
    /// The destination's name did not resolve (or the look-up could not be queued).
    Resolve,
    /// The destination's name look-up did not answer within `resolve_timeout`.
    ResolveTimeout,
}

impl CloseReason {
    /// Every reason, in declaration order: `ALL[r.index()] == r`.
    pub const ALL: [CloseReason; 22] = [
        CloseReason::ClientEof,
        CloseReason::UpstreamEof,
        CloseReason::ClientReset,
        CloseReason::UpstreamReset,
        CloseReason::ClientError,
        CloseReason::UpstreamError,
        CloseReason::ConnectRefused,
        CloseReason::ConnectTimeout,
        CloseReason::ConnectError,
        CloseReason::IdleTimeout,
        CloseReason::HalfCloseTimeout,
        CloseReason::PairTimeout,
        CloseReason::Limit,
        CloseReason::Shutdown,
        CloseReason::ProxyHeader,
        CloseReason::ProxyHeaderTimeout,
        CloseReason::Handshake,
        CloseReason::HandshakeTimeout,
        CloseReason::Auth,
        CloseReason::Denied,
        CloseReason::Resolve,
        CloseReason::ResolveTimeout,
    ];

    /// The reason's position in [`CloseReason::ALL`] (an index for per-reason counters).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The reason's word in logs: stable, lower case, no spaces.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientEof => "client-eof",
            CloseReason::UpstreamEof => "upstream-eof",
            CloseReason::ClientReset => "client-reset",
            CloseReason::UpstreamReset => "upstream-reset",
            CloseReason::ClientError => "client-error",
            CloseReason::UpstreamError => "upstream-error",
            CloseReason::ConnectRefused => "connect-refused",
            CloseReason::ConnectTimeout => "connect-timeout",
            CloseReason::ConnectError => "connect-error",
            CloseReason::IdleTimeout => "idle-timeout",
            CloseReason::HalfCloseTimeout => "half-close-timeout",
            CloseReason::PairTimeout => "pair-timeout",
            CloseReason::Limit => "limit",
            CloseReason::Shutdown => "shutdown",
            CloseReason::ProxyHeader => "proxy-header",
            CloseReason::ProxyHeaderTimeout => "proxy-header-timeout",
            CloseReason::Handshake => "handshake",
            CloseReason::HandshakeTimeout => "handshake-timeout",
            CloseReason::Auth => "auth",
            CloseReason::Denied => "denied",
            CloseReason::Resolve => "resolve",
            CloseReason::ResolveTimeout => "resolve-timeout",
        }
    }

    /// The reason a clean end has when `side` sent the first FIN.
    pub fn eof(side: Side) -> CloseReason {
        match side {
            Side::Client => CloseReason::ClientEof,
            Side::Upstream => CloseReason::UpstreamEof,
        }
    }

    /// The reason a session closes for when its last connect attempt failed.
    pub fn connect(failure: ConnectFailure) -> CloseReason {
        match failure {
            ConnectFailure::Refused => CloseReason::ConnectRefused,
            ConnectFailure::Timeout => CloseReason::ConnectTimeout,
            ConnectFailure::Error => CloseReason::ConnectError,
        }
    }

    /// The reason for a broken side: reset, or another error.
    pub fn broken(side: Side, reset: bool) -> CloseReason {
        match (side, reset) {
            (Side::Client, true) => CloseReason::ClientReset,
            (Side::Client, false) => CloseReason::ClientError,
            (Side::Upstream, true) => CloseReason::UpstreamReset,
            (Side::Upstream, false) => CloseReason::UpstreamError,
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_at_its_index() {
        for (i, r) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(CloseReason::ALL[r.index()], *r);
        }
    }
}
