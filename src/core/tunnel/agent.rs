//! The agent's side of one tunnel before pairing: connect, answer the challenge, check
//! the relay's proof, then sit idle until an ATTACH arrives.

use std::time::{Duration, Instant};

use super::{read_exact_want, Liveness, Outbox, TunnelEnd, TunnelPolicy, TunnelStep};
use crate::core::stream::{ConnectFailure, ConnectStatus, Peer, Readiness, Stream};
use crate::proto::auth::{Channel, Role, Secret, NONCE_LEN};
use crate::proto::tunnel::{
    self, frame, ChallengeReader, RelayFrame, RelayFrameReader, Verdict, VerdictReader, MAX_HELLO,
};

enum AgentStage {
    Dialing,
    Challenge(ChallengeReader),
    Verdict(VerdictReader, [u8; NONCE_LEN]),
    Idle(RelayFrameReader, Liveness),
}

/// The agent's side of one tunnel before pairing.
pub struct AgentTunnel<S> {
    peer: Peer<S>,
    service: String,
    channel: Channel,
    nonce: [u8; NONCE_LEN],
    out: Outbox,
    state: AgentStage,
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
    /// A plain tunnel (protocol version 1) whose connect to the relay has just started.
    pub fn new(stream: S, service: &str, nonce: [u8; NONCE_LEN], now: Instant) -> AgentTunnel<S> {
        AgentTunnel::bound(stream, Channel::Plain, service, nonce, now)
    }

    /// A tunnel on `channel` (for TLS: once its handshake is done, with its exporter
    /// value; the stream then counts as connected), speaking that channel's version.
    pub fn bound(
        stream: S,
        channel: Channel,
        service: &str,
        nonce: [u8; NONCE_LEN],
        now: Instant,
    ) -> AgentTunnel<S> {
        AgentTunnel {
            peer: Peer::new(stream),
            service: service.to_string(),
            channel,
            nonce,
            out: Outbox::new(),
            state: AgentStage::Dialing,
            since: now,
        }
    }

    /// Records readiness from an event.
    pub fn on_event(&mut self, ready: Readiness) {
        self.peer.ready.add(ready);
    }

    /// Moves what can move.
    pub fn drive(&mut self, now: Instant, secret: &Secret) -> TunnelStep {
        if let AgentStage::Dialing = self.state {
            if !self.peer.ready.writable && !self.peer.ready.readable {
                return TunnelStep::Waiting;
            }
            match self.peer.stream.connect_status() {
                ConnectStatus::Connected => {
                    self.state =
                        AgentStage::Challenge(ChallengeReader::expecting(self.channel.version()));
                }
                ConnectStatus::Pending => {
                    self.peer.ready = Readiness::default();
                    return TunnelStep::Waiting;
                }
                ConnectStatus::Failed(f) => return TunnelStep::Closed(TunnelEnd::ConnectFailed(f)),
            }
        }
        if let Err(end) = self
            .out
            .send(&mut self.peer.stream, &mut self.peer.ready.writable)
        {
            return TunnelStep::Closed(end);
        }
        let mut buf = [0u8; MAX_HELLO];
        loop {
            let want = match &self.state {
                AgentStage::Dialing => return TunnelStep::Waiting,
                AgentStage::Challenge(r) => r.want(),
                AgentStage::Verdict(r, _) => r.want(),
                AgentStage::Idle(r, _) => r.want(),
            };
            let n = match read_exact_want(
                &mut self.peer.stream,
                &mut self.peer.ready.readable,
                want,
                &mut buf,
            ) {
                Ok(Some(n)) => n,
                Ok(None) => return TunnelStep::Waiting,
                Err(end) => return TunnelStep::Closed(end),
            };
            let bytes = &buf[..n];
            match &mut self.state {
                AgentStage::Dialing => return TunnelStep::Waiting,
                AgentStage::Challenge(r) => match r.feed(bytes) {
                    Ok(None) => {}
                    Ok(Some(relay_nonce)) => {
                        self.out.push(&tunnel::hello(
                            secret,
                            &self.channel,
                            &relay_nonce,
                            &self.nonce,
                            &self.service,
                        ));
                        self.state = AgentStage::Verdict(VerdictReader::new(), relay_nonce);
                        if self
                            .out
                            .flush(&mut self.peer.stream, &mut self.peer.ready.writable)
                            .is_err()
                        {
                            return TunnelStep::Closed(TunnelEnd::Lost);
                        }
                    }
                    Err(_) => return TunnelStep::Closed(TunnelEnd::ProtocolError),
                },
                AgentStage::Verdict(r, relay_nonce) => match r.feed(bytes) {
                    Ok(None) => {}
                    Ok(Some(Verdict::Denied)) => return TunnelStep::Closed(TunnelEnd::Denied),
                    Ok(Some(Verdict::Welcome(proof))) => {
                        let genuine = secret.verify(
                            Role::Relay,
                            &self.channel,
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
                        self.state = AgentStage::Idle(RelayFrameReader::new(), live);
                        return TunnelStep::Authenticated(self.service.clone());
                    }
                    Err(_) => return TunnelStep::Closed(TunnelEnd::ProtocolError),
                },
                AgentStage::Idle(r, live) => match r.feed(bytes) {
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
            AgentStage::Dialing => self.since + connect_timeout.min(p.handshake_timeout),
            AgentStage::Idle(_, live) => live.deadline(p),
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
            AgentStage::Dialing => {
                TunnelStep::Closed(TunnelEnd::ConnectFailed(ConnectFailure::Timeout))
            }
            AgentStage::Idle(_, live) => {
                if now >= live.heard + p.heartbeat_timeout {
                    return TunnelStep::Closed(TunnelEnd::HeartbeatTimeout);
                }
                live.sent = now;
                self.out.push(&[frame::HEARTBEAT]);
                match self
                    .out
                    .flush(&mut self.peer.stream, &mut self.peer.ready.writable)
                {
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
        matches!(self.state, AgentStage::Idle(..))
    }

    /// The stream, for registration.
    pub fn stream(&mut self) -> &mut S {
        &mut self.peer.stream
    }

    /// Hands the stream over to a session after ATTACH, with its readiness.
    pub fn into_peer(self) -> Peer<S> {
        self.peer
    }
}
