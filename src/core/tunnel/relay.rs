//! The relay's side of one tunnel before pairing: send the challenge, read and verify the
//! hello, then sit idle (heartbeats both ways) until the event loop pairs it with a client.

use std::time::Instant;

use super::{read_exact_want, Liveness, Outbox, TunnelEnd, TunnelPolicy, TunnelStep};
use crate::core::stream::{Peer, Readiness, Stream};
use crate::proto::auth::{Channel, Secret, NONCE_LEN};
use crate::proto::tunnel::{self, agent_frame, frame, AgentFrame, HelloReader, MAX_HELLO};

enum RelayStage {
    Handshake(HelloReader),
    /// Verified; waiting for the event loop's `admit` or `deny`.
    Verified,
    /// DENIED queued; close once written, for this reason.
    Denying(TunnelEnd),
    Idle(Liveness),
}

/// The relay's side of one tunnel before pairing.
pub struct RelayTunnel<S> {
    peer: Peer<S>,
    channel: Channel,
    nonce: [u8; NONCE_LEN],
    hello: Option<tunnel::Hello>,
    out: Outbox,
    state: RelayStage,
    since: Instant,
}

impl<S> std::fmt::Debug for RelayTunnel<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayTunnel").finish_non_exhaustive()
    }
}

impl<S: Stream> RelayTunnel<S> {
    /// An accepted plain tunnel connection (protocol version 1); the challenge is queued.
    pub fn new(stream: S, nonce: [u8; NONCE_LEN], now: Instant) -> RelayTunnel<S> {
        RelayTunnel::bound(stream, Channel::Plain, nonce, now)
    }

    /// A tunnel connection on `channel` (for TLS: after its handshake, with its exporter
    /// value), speaking that channel's protocol version; the challenge is queued.
    pub fn bound(
        stream: S,
        channel: Channel,
        nonce: [u8; NONCE_LEN],
        now: Instant,
    ) -> RelayTunnel<S> {
        let mut out = Outbox::new();
        out.push(&tunnel::challenge(&channel, &nonce));
        RelayTunnel {
            peer: Peer::new(stream),
            channel,
            nonce,
            hello: None,
            out,
            state: RelayStage::Handshake(HelloReader::expecting(channel.version())),
            since: now,
        }
    }

    /// Records readiness from an event.
    pub fn on_event(&mut self, ready: Readiness) {
        self.peer.ready.add(ready);
    }

    /// Moves what can move; `services` are the names this relay exposes.
    pub fn drive(&mut self, now: Instant, secret: &Secret, services: &[String]) -> TunnelStep {
        if let Err(end) = self
            .out
            .send(&mut self.peer.stream, &mut self.peer.ready.writable)
        {
            return TunnelStep::Closed(end);
        }
        let mut buf = [0u8; MAX_HELLO];
        match &mut self.state {
            RelayStage::Handshake(reader) => loop {
                let n = match read_exact_want(
                    &mut self.peer.stream,
                    &mut self.peer.ready.readable,
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
                        let genuine = hello.verify(secret, &self.channel, &self.nonce);
                        if !(known && genuine) {
                            return self.deny(TunnelEnd::AuthFailed);
                        }
                        let service = hello.service.clone();
                        self.hello = Some(hello);
                        self.state = RelayStage::Verified;
                        return TunnelStep::Authenticated(service);
                    }
                }
            },
            RelayStage::Verified => TunnelStep::Waiting,
            RelayStage::Denying(end) => {
                if self.out.is_empty() {
                    TunnelStep::Closed(*end)
                } else {
                    TunnelStep::Waiting
                }
            }
            RelayStage::Idle(live) => loop {
                match read_exact_want(
                    &mut self.peer.stream,
                    &mut self.peer.ready.readable,
                    1,
                    &mut buf,
                ) {
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
            self.out
                .push(&tunnel::welcome(secret, &self.channel, &self.nonce, hello));
        }
        self.state = RelayStage::Idle(Liveness {
            heard: now,
            sent: now,
        });
        let _ = self
            .out
            .flush(&mut self.peer.stream, &mut self.peer.ready.writable);
    }

    /// Refuses the tunnel: DENIED is queued and the tunnel closes once it is written.
    pub fn deny(&mut self, end: TunnelEnd) -> TunnelStep {
        self.out.push(&[frame::DENIED]);
        self.state = RelayStage::Denying(end);
        if self
            .out
            .flush(&mut self.peer.stream, &mut self.peer.ready.writable)
            .is_err()
            || self.out.is_empty()
        {
            return TunnelStep::Closed(end);
        }
        TunnelStep::Waiting
    }

    /// How far the handshake got: bytes of the hello received (0 before any, and for a
    /// tunnel past its handshake, which is never a candidate for eviction).
    pub fn progress(&self) -> usize {
        match &self.state {
            RelayStage::Handshake(reader) => reader.received(),
            _ => usize::MAX,
        }
    }

    /// When the connection was accepted.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// When to call [`expire`](Self::expire).
    pub fn deadline(&self, p: &TunnelPolicy) -> Instant {
        match &self.state {
            RelayStage::Idle(live) => live.deadline(p),
            _ => self.since + p.handshake_timeout,
        }
    }

    /// The deadline passed: a heartbeat is due, or the tunnel is dead.
    pub fn expire(&mut self, now: Instant, p: &TunnelPolicy) -> TunnelStep {
        match &mut self.state {
            RelayStage::Idle(live) => {
                if now >= live.heard + p.heartbeat_timeout {
                    return TunnelStep::Closed(TunnelEnd::HeartbeatTimeout);
                }
                if now >= live.sent + p.heartbeat_interval {
                    live.sent = now;
                    self.out.push(&[frame::HEARTBEAT]);
                    if self
                        .out
                        .flush(&mut self.peer.stream, &mut self.peer.ready.writable)
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
        matches!(self.state, RelayStage::Idle(_)) && self.out.is_empty()
    }

    /// The stream, for registration.
    pub fn stream(&mut self) -> &mut S {
        &mut self.peer.stream
    }

    /// Hands the stream over for pairing.
    pub fn into_stream(self) -> S {
        self.peer.stream
    }
}
