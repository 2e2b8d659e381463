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

use super::session::Readiness;
use super::stream::{classify, retry, ConnectFailure, ConnectStatus, Io, Stream};
use crate::proto::auth::{Role, Secret, NONCE_LEN};
use crate::proto::tunnel::{
    self, agent_frame, frame, AgentFrame, ChallengeReader, HelloReader, RelayFrame,
    RelayFrameReader, Verdict, VerdictReader, MAX_HELLO,
};

/// Timeouts of tunnels, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

enum RelayState {
    Handshake(HelloReader),
    /// Verified; waiting for the event loop's `admit` or `deny`.
    Verified,
    /// DENIED queued; close once written, for this reason.
    Denying(TunnelEnd),
    Idle(Liveness),
}

/// The relay's side of one tunnel before pairing.
pub struct RelayTunnel<S> {
    stream: S,
    ready: Readiness,
    nonce: [u8; NONCE_LEN],
    hello: Option<tunnel::Hello>,
    out: Outbox,
    state: RelayState,
    since: Instant,
}

impl<S> std::fmt::Debug for RelayTunnel<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayTunnel").finish_non_exhaustive()
    }
}

impl<S: Stream> RelayTunnel<S> {
    /// An accepted tunnel connection; the challenge is queued.
    pub fn new(stream: S, nonce: [u8; NONCE_LEN], now: Instant) -> RelayTunnel<S> {
        let mut out = Outbox::new();
        out.push(&tunnel::challenge(&nonce));
        RelayTunnel {
            stream,
            ready: Readiness::default(),
            nonce,
            hello: None,
            out,
            state: RelayState::Handshake(HelloReader::new()),
            since: now,
        }
    }

    /// Records readiness from an event.
    pub fn on_event(&mut self, ready: Readiness) {
        self.ready.readable |= ready.readable;
        self.ready.writable |= ready.writable;
    }

    /// Moves what can move; `services` are the names this relay exposes.
    pub fn drive(&mut self, now: Instant, secret: &Secret, services: &[String]) -> TunnelStep {
        if let Err(end) = self.out.send(&mut self.stream, &mut self.ready.writable) {
            return TunnelStep::Closed(end);
        }
        let mut buf = [0u8; MAX_HELLO];
        match &mut self.state {
            RelayState::Handshake(reader) => loop {
                let n = match read_exact_want(
                    &mut self.stream,
                    &mut self.ready.readable,
                    reader.want(),
                    &mut buf,
                ) {
                    Ok(Some(n)) => n,
                    Ok(None) => return TunnelStep::Waiting,
                    Err(end) => return TunnelStep::Closed(end),
                };
                match reader.feed(&buf[..n]) {
                    Ok(None) => continue,
                    Err(_) => return self.deny(TunnelEnd::ProtocolError),
                    Ok(Some(hello)) => {
                        let known = services.contains(&hello.service);
                        // Verify even for an unknown service: same work, same answer.
                        let genuine = hello.verify(secret, &self.nonce);
                        if !(known && genuine) {
                            return self.deny(TunnelEnd::AuthFailed);
                        }
                        let service = hello.service.clone();
                        self.hello = Some(hello);
                        self.state = RelayState::Verified;
                        return TunnelStep::Authenticated(service);
                    }
                }
            },
            RelayState::Verified => TunnelStep::Waiting,
            RelayState::Denying(end) => {
                if self.out.is_empty() {
                    TunnelStep::Closed(*end)
                } else {
                    TunnelStep::Waiting
                }
            }
            RelayState::Idle(live) => loop {
                match read_exact_want(&mut self.stream, &mut self.ready.readable, 1, &mut buf) {
                    Ok(Some(_)) => match agent_frame(buf[0]) {
                        Ok(AgentFrame::Heartbeat) => live.heard = now,
                        _ => return TunnelStep::Closed(TunnelEnd::ProtocolError),
                    },
                    Ok(None) => return TunnelStep::Waiting,
                    Err(end) => return TunnelStep::Closed(end),
                }
            },
        }
    }

    /// Accepts a verified tunnel into the idle pool: WELCOME is queued.
    pub fn admit(&mut self, now: Instant, secret: &Secret) {
        if let Some(hello) = &self.hello {
            self.out.push(&tunnel::welcome(secret, &self.nonce, hello));
        }
        self.state = RelayState::Idle(Liveness {
            heard: now,
            sent: now,
        });
        let _ = self.out.flush(&mut self.stream, &mut self.ready.writable);
    }

    /// Refuses the tunnel: DENIED is queued and the tunnel closes once it is written.
    pub fn deny(&mut self, end: TunnelEnd) -> TunnelStep {
        self.out.push(&[frame::DENIED]);
        self.state = RelayState::Denying(end);
        if self
            .out
            .flush(&mut self.stream, &mut self.ready.writable)
            .is_err()
            || self.out.is_empty()
        {
            return TunnelStep::Closed(end);
        }
        TunnelStep::Waiting
    }

    /// When to call [`expire`](Self::expire).
    pub fn deadline(&self, p: &TunnelPolicy) -> Instant {
        match &self.state {
            RelayState::Idle(live) => live.deadline(p),
            _ => self.since + p.handshake_timeout,
        }
    }

    /// The deadline passed: a heartbeat is due, or the tunnel is dead.
    pub fn expire(&mut self, now: Instant, p: &TunnelPolicy) -> TunnelStep {
        match &mut self.state {
            RelayState::Idle(live) => {
                if now >= live.heard + p.heartbeat_timeout {
                    return TunnelStep::Closed(TunnelEnd::HeartbeatTimeout);
                }
                if now >= live.sent + p.heartbeat_interval {
                    live.sent = now;
                    self.out.push(&[frame::HEARTBEAT]);
                    if self
                        .out
                        .flush(&mut self.stream, &mut self.ready.writable)
                        .is_err()
                    {
                        return TunnelStep::Closed(TunnelEnd::Lost);
                    }
                }
                TunnelStep::Waiting
            }
            _ if now >= self.since + p.handshake_timeout => {
                TunnelStep::Closed(TunnelEnd::HandshakeTimeout)
            }
            _ => TunnelStep::Waiting,
        }
    }

    /// True once admitted and idle (the only state a tunnel may be paired in).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, RelayState::Idle(_)) && self.out.is_empty()
    }

    /// The stream, for registration.
    pub fn stream(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Hands the stream over for pairing.
    pub fn into_stream(self) -> S {
        self.stream
    }
}

enum AgentState {
    Dialing,
    Challenge(ChallengeReader),
    Verdict(VerdictReader, [u8; NONCE_LEN]),
    Idle(RelayFrameReader, Liveness),
}

/// The agent's side of one tunnel before pairing.
pub struct AgentTunnel<S> {
    stream: S,
    ready: Readiness,
    service: String,
    nonce: [u8; NONCE_LEN],
    out: Outbox,
    state: AgentState,
    since: Instant,
}

impl<S> std::fmt::Debug for AgentTunnel<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTunnel")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl<S: Stream> AgentTunnel<S> {
    /// A tunnel whose connect to the relay has just started.
    pub fn new(stream: S, service: &str, nonce: [u8; NONCE_LEN], now: Instant) -> AgentTunnel<S> {
        AgentTunnel {
            stream,
            ready: Readiness::default(),
            service: service.to_string(),
            nonce,
            out: Outbox::new(),
            state: AgentState::Dialing,
            since: now,
        }
    }

    /// Records readiness from an event.
    pub fn on_event(&mut self, ready: Readiness) {
        self.ready.readable |= ready.readable;
        self.ready.writable |= ready.writable;
    }

    /// Moves what can move.
    pub fn drive(&mut self, now: Instant, secret: &Secret) -> TunnelStep {
        if let AgentState::Dialing = self.state {
            if !self.ready.writable && !self.ready.readable {
                return TunnelStep::Waiting;
            }
            match self.stream.connect_status() {
                ConnectStatus::Connected => {
                    self.state = AgentState::Challenge(ChallengeReader::new());
                }
                ConnectStatus::Pending => {
                    self.ready = Readiness::default();
                    return TunnelStep::Waiting;
                }
                ConnectStatus::Failed(f) => return TunnelStep::Closed(TunnelEnd::ConnectFailed(f)),
            }
        }
        if let Err(end) = self.out.send(&mut self.stream, &mut self.ready.writable) {
            return TunnelStep::Closed(end);
        }
        let mut buf = [0u8; MAX_HELLO];
        loop {
            let want = match &self.state {
                AgentState::Dialing => return TunnelStep::Waiting,
                AgentState::Challenge(r) => r.want(),
                AgentState::Verdict(r, _) => r.want(),
                AgentState::Idle(r, _) => r.want(),
            };
            let n =
                match read_exact_want(&mut self.stream, &mut self.ready.readable, want, &mut buf) {
                    Ok(Some(n)) => n,
                    Ok(None) => return TunnelStep::Waiting,
                    Err(end) => return TunnelStep::Closed(end),
                };
            let bytes = &buf[..n];
            match &mut self.state {
                AgentState::Dialing => return TunnelStep::Waiting,
                AgentState::Challenge(r) => match r.feed(bytes) {
                    Ok(None) => {}
                    Ok(Some(relay_nonce)) => {
                        self.out.push(&tunnel::hello(
                            secret,
                            &relay_nonce,
                            &self.nonce,
                            &self.service,
                        ));
                        self.state = AgentState::Verdict(VerdictReader::new(), relay_nonce);
                        if self
                            .out
                            .flush(&mut self.stream, &mut self.ready.writable)
                            .is_err()
                        {
                            return TunnelStep::Closed(TunnelEnd::Lost);
                        }
                    }
                    Err(_) => return TunnelStep::Closed(TunnelEnd::ProtocolError),
                },
                AgentState::Verdict(r, relay_nonce) => match r.feed(bytes) {
                    Ok(None) => {}
                    Ok(Some(Verdict::Denied)) => return TunnelStep::Closed(TunnelEnd::Denied),
                    Ok(Some(Verdict::Welcome(proof))) => {
                        let genuine = secret.verify(
                            Role::Relay,
                            relay_nonce,
                            &self.nonce,
                            &self.service,
                            &proof,
                        );
                        if !genuine {
                            return TunnelStep::Closed(TunnelEnd::AuthFailed);
                        }
                        let live = Liveness {
                            heard: now,
                            sent: now,
                        };
                        self.state = AgentState::Idle(RelayFrameReader::new(), live);
                        return TunnelStep::Authenticated(self.service.clone());
                    }
                    Err(_) => return TunnelStep::Closed(TunnelEnd::ProtocolError),
                },
                AgentState::Idle(r, live) => match r.feed(bytes) {
                    Ok(None) => {}
                    Ok(Some(RelayFrame::Heartbeat)) => live.heard = now,
                    Ok(Some(RelayFrame::Attach(client))) => return TunnelStep::Attached(client),
                    Err(_) => return TunnelStep::Closed(TunnelEnd::ProtocolError),
                },
            }
        }
    }

    /// When to call [`expire`](Self::expire).
    pub fn deadline(&self, p: &TunnelPolicy, connect_timeout: Duration) -> Instant {
        match &self.state {
            AgentState::Dialing => self.since + connect_timeout.min(p.handshake_timeout),
            AgentState::Idle(_, live) => live.deadline(p),
            _ => self.since + p.handshake_timeout,
        }
    }

    /// The deadline passed: a heartbeat is due, or the tunnel is dead.
    pub fn expire(
        &mut self,
        now: Instant,
        p: &TunnelPolicy,
        connect_timeout: Duration,
    ) -> TunnelStep {
        if now < self.deadline(p, connect_timeout) {
            return TunnelStep::Waiting;
        }
        match &mut self.state {
            AgentState::Dialing => {
                TunnelStep::Closed(TunnelEnd::ConnectFailed(ConnectFailure::Timeout))
            }
            AgentState::Idle(_, live) => {
                if now >= live.heard + p.heartbeat_timeout {
                    return TunnelStep::Closed(TunnelEnd::HeartbeatTimeout);
                }
                live.sent = now;
                self.out.push(&[frame::HEARTBEAT]);
                match self.out.flush(&mut self.stream, &mut self.ready.writable) {
                    Ok(_) => TunnelStep::Waiting,
                    Err(()) => TunnelStep::Closed(TunnelEnd::Lost),
                }
            }
            _ => TunnelStep::Closed(TunnelEnd::HandshakeTimeout),
        }
    }

    /// The service this tunnel serves.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// True once authenticated and waiting for ATTACH.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, AgentState::Idle(..))
    }

    /// The stream, for registration.
    pub fn stream(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Hands the stream over to a session after ATTACH, with its readiness.
    pub fn into_stream(self) -> (S, Readiness) {
        (self.stream, self.ready)
    }
}

#[cfg(test)]
mod tests;
