//! Tunnels before pairing: the handshake and the idle life of one agent–relay connection.
//!
//! [`RelayTunnel`] is the relay's view: send the challenge, read and verify the hello,
//! then sit idle (heartbeats both ways) until the event loop pairs it with a client.
//! [`AgentTunnel`] is the agent's: connect, answer the challenge, check the relay's proof,
//! then sit idle until an ATTACH arrives. Both are pure state machines over a [`Stream`]
//! with time passed in, like sessions; both read frame-exactly, so when a tunnel is handed
//! to a session not one byte of the relayed stream has been consumed.

use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::session::Reply;
use super::stream::{classify, retry, ConnectFailure, Io, Stream};
use crate::proto::tunnel::{agent_frame, AgentFrame, MAX_HELLO};

mod agent;
mod relay;

pub use agent::AgentTunnel;
pub use relay::RelayTunnel;

/// Timeouts of tunnels, from configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelPolicy {
    /// Absolute bound on the handshake, from accept or connect.
    pub handshake_timeout: Duration,
    /// An idle tunnel sends a heartbeat when it has sent nothing for this long.
    pub heartbeat_interval: Duration,
    /// An idle tunnel that has heard nothing for this long is dead.
    pub heartbeat_timeout: Duration,
}

/// What a tunnel reports after a drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelStep {
    /// Nothing to do until an event or the deadline.
    Waiting,
    /// Relay: a verified hello for this service name; call `admit` or `deny`.
    /// Agent: the relay accepted us and proved itself; the tunnel is idle now.
    Authenticated(String),
    /// Agent: the relay attached a client at this address; raw bytes follow.
    Attached(SocketAddr),
    /// The tunnel is over.
    Closed(TunnelEnd),
}

/// Why a tunnel ended before carrying a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelEnd {
    /// The handshake broke the protocol (bad magic, version, length, frame).
    ProtocolError,
    /// A wrong proof (wrong secret, replayed handshake, unknown service on the relay).
    AuthFailed,
    /// Agent: the relay answered DENIED.
    Denied,
    /// The handshake did not finish within its absolute deadline.
    HandshakeTimeout,
    /// Nothing heard for the heartbeat timeout.
    HeartbeatTimeout,
    /// The peer closed or reset the connection.
    Lost,
    /// Agent: the TCP connect to the relay failed.
    ConnectFailed(ConnectFailure),
    /// The TLS handshake under the tunnel failed through the peer: a malformed record,
    /// bytes that are not TLS, an alert, a refused key or certificate.
    TlsFailed,
    /// Relay: closed to make room for a newer handshake (the handshake slots, or its
    /// source's share of them, were full and it had made the least progress).
    Evicted,
}

impl TunnelEnd {
    /// The word used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelEnd::ProtocolError => "handshake failed",
            TunnelEnd::AuthFailed => "authentication failed",
            TunnelEnd::Denied => "denied by the relay",
            TunnelEnd::HandshakeTimeout => "handshake timeout",
            TunnelEnd::HeartbeatTimeout => "heartbeat timeout",
            TunnelEnd::Lost => "connection lost",
            TunnelEnd::ConnectFailed(ConnectFailure::Refused) => "connect refused",
            TunnelEnd::ConnectFailed(ConnectFailure::Timeout) => "connect timeout",
            TunnelEnd::ConnectFailed(ConnectFailure::Error) => "connect failed",
            TunnelEnd::Evicted => "evicted by a newer handshake",
            TunnelEnd::TlsFailed => "TLS handshake failed",
        }
    }
}

/// A few protocol bytes waiting to be written.
#[derive(Debug)]
struct Outbox {
    buf: [u8; MAX_HELLO],
    at: usize,
    len: usize,
}

impl Outbox {
    fn new() -> Outbox {
        Outbox {
            buf: [0u8; MAX_HELLO],
            at: 0,
            len: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.at == self.len {
            self.at = 0;
            self.len = 0;
        }
        let n = bytes.len().min(MAX_HELLO - self.len);
        debug_assert_eq!(n, bytes.len(), "outbox overflow");
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn is_empty(&self) -> bool {
        self.at == self.len
    }

    /// Writes what it can; a broken stream ends the tunnel as lost.
    fn send<S: Stream>(&mut self, stream: &mut S, writable: &mut bool) -> Result<(), TunnelEnd> {
        self.flush(stream, writable)
            .map(|_| ())
            .map_err(|()| TunnelEnd::Lost)
    }

    /// Writes what it can. `Err(())` when the stream is broken.
    fn flush<S: Stream>(&mut self, stream: &mut S, writable: &mut bool) -> Result<bool, ()> {
        let mut wrote = false;
        while !self.is_empty() && *writable {
            let bytes = [IoSlice::new(&self.buf[self.at..self.len])];
            match classify(retry(|| stream.write_vectored(&bytes))) {
                Io::Moved(n) => {
                    self.at += n;
                    wrote = true;
                }
                Io::Blocked => *writable = false,
                Io::Eof | Io::Reset | Io::Error(_) => return Err(()),
            }
        }
        Ok(wrote)
    }
}

/// Reads up to `want` bytes (never more: the bytes after a frame belong to the session).
fn read_exact_want<S: Stream>(
    stream: &mut S,
    readable: &mut bool,
    want: usize,
    buf: &mut [u8; MAX_HELLO],
) -> Result<Option<usize>, TunnelEnd> {
    if !*readable {
        return Ok(None);
    }
    let want = want.clamp(1, MAX_HELLO);
    match classify(retry(|| {
        stream.read_vectored(&mut [IoSliceMut::new(&mut buf[..want])])
    })) {
        Io::Moved(n) => Ok(Some(n)),
        Io::Blocked => {
            *readable = false;
            Ok(None)
        }
        Io::Eof | Io::Reset | Io::Error(_) => Err(TunnelEnd::Lost),
    }
}

/// Heartbeat bookkeeping of an idle tunnel.
#[derive(Debug, Clone, Copy)]
struct Liveness {
    heard: Instant,
    sent: Instant,
}

impl Liveness {
    fn deadline(&self, p: &TunnelPolicy) -> Instant {
        (self.sent + p.heartbeat_interval).min(self.heard + p.heartbeat_timeout)
    }
}

/// What one byte from the agent means to a paired session awaiting its answer (the
/// preamble's reply on the relay): heartbeats sent before the agent saw ATTACH are
/// skipped, READY starts relaying, REFUSED is a refused connect.
pub fn ready_reply(byte: u8) -> Reply {
    match agent_frame(byte) {
        Ok(AgentFrame::Heartbeat) => Reply::Skip,
        Ok(AgentFrame::Ready) => Reply::Accepted,
        Ok(AgentFrame::Refused) => Reply::Refused,
        Err(_) => Reply::Invalid,
    }
}

#[cfg(test)]
mod tests;
