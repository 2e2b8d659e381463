//! How an agent's tunnels check the relay, and where an agent's tunnel connection stands
//! before pairing: with TLS, its TCP connect and then its TLS handshake; then the tunnel protocol (`core::tunnel::AgentTunnel`,
//! which also waits for the connect of a plain tunnel). One enum, changed here only.
//! Without the `tls` feature there is no TLS stage: every tunnel starts in the tunnel
//! protocol, as with `tunnel_tls off`.

use std::time::{Duration, Instant};

use mio::net::TcpStream;

#[cfg(feature = "tls")]
use crate::server::mode::tls::warn_plain;

#[cfg(feature = "tls")]
use crate::config::{Agent, TunnelTls};
use crate::core::tunnel::{AgentTunnel, TunnelPolicy, TunnelStep};
use crate::os::link::Link;
use crate::os::net::Conn;
#[cfg(feature = "tls")]
use crate::{
    core::stream::{ConnectFailure, ConnectStatus, Readiness, Stream},
    core::tunnel::TunnelEnd,
    os::tls::{AgentTls, TlsStream},
    proto::auth::NONCE_LEN,
    server::mode::handshake::{Failed, Handshake},
};

/// How an agent's tunnels greet and check the relay over TLS (made from its options);
/// `None` for plain tunnels (a warning).
#[cfg(feature = "tls")]
pub(super) fn trust(cfg: &Agent) -> Result<Option<AgentTls>, String> {
    match cfg.tunnel.tls {
        TunnelTls::On => AgentTls::new(cfg.trust.trust())
            .map(Some)
            .map_err(|e| format!("tunnels to {}: TLS: {e}", cfg.relay)),
        TunnelTls::Off => {
            warn_plain(&format!("tunnels to {}", cfg.relay));
            Ok(None)
        }
    }
}

/// What a TLS tunnel's stage is waiting for.
#[cfg(feature = "tls")]
#[derive(Debug)]
pub(super) enum Wait {
    /// The TCP connect (taken when it completes).
    Connect(Option<Conn>),
    /// The TLS handshake.
    Tls(Handshake),
}

/// An agent's tunnel connection before pairing.
// The tunnel is held by value: entries live in the slab, and a box would cost an
// allocation per tunnel for a handshake stage that lasts a few round trips.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Stage {
    /// TLS tunnels: the connect, then the handshake; the tunnel protocol starts on the
    /// TLS channel once it is done.
    #[cfg(feature = "tls")]
    Tls {
        wait: Wait,
        nonce: [u8; NONCE_LEN],
        /// When the connect started (the one deadline counts from it).
        since: Instant,
    },
    /// The tunnel protocol: (a plain tunnel's connect,) challenge, verdict, then idle.
    Tunnel(AgentTunnel<Link>),
}

/// What a drive of the TLS part gave.
#[cfg(feature = "tls")]
pub(super) enum Moved {
    /// Nothing more until an event or the deadline.
    Waiting,
    /// The tunnel protocol may start: the stage is a tunnel now.
    Tunnel,
    /// It ended, and why (for the log line).
    Closed(TunnelEnd, Option<String>),
}

#[cfg(feature = "tls")]
impl Stage {
    /// A TLS tunnel whose connect has just started.
    pub(super) fn tls(conn: Conn, nonce: [u8; NONCE_LEN], now: Instant) -> Stage {
        Stage::Tls {
            wait: Wait::Connect(Some(conn)),
            nonce,
            since: now,
        }
    }

    /// Moves the connect and the TLS handshake on (`ready`: what the event said; the
    /// relay's first byte noted in `first`), and becomes the tunnel once the handshake
    /// is done.
    pub(super) fn drive_tls(
        &mut self,
        ready: Readiness,
        tls: &AgentTls,
        service: &str,
        first: &mut Option<u8>,
    ) -> Moved {
        let Stage::Tls { wait, nonce, since } = self else {
            return Moved::Tunnel;
        };
        if let Wait::Connect(conn) = wait {
            if !ready.writable && !ready.readable {
                return Moved::Waiting;
            }
            let status = match conn.as_mut() {
                Some(c) => c.connect_status(),
                None => ConnectStatus::Failed(ConnectFailure::Error),
            };
            match status {
                ConnectStatus::Pending => return Moved::Waiting,
                ConnectStatus::Failed(f) => {
                    return Moved::Closed(TunnelEnd::ConnectFailed(f), None)
                }
                ConnectStatus::Connected => {}
            }
            let Some(conn) = conn.take() else {
                return Moved::Closed(TunnelEnd::Lost, None);
            };
            match TlsStream::client(conn, tls) {
                Ok(stream) => *wait = Wait::Tls(Handshake::new(stream)),
                Err(e) => return Moved::Closed(TunnelEnd::TlsFailed, Some(e.to_string())),
            }
        }
        let Wait::Tls(shake) = wait else {
            return Moved::Waiting;
        };
        match shake.drive(first) {
            Ok(None) => Moved::Waiting,
            Ok(Some((link, channel))) => {
                let mut tunnel = AgentTunnel::bound(link, channel, service, *nonce, *since);
                tunnel.on_event(Readiness {
                    readable: true,
                    writable: true,
                    read_closed: false,
                });
                *self = Stage::Tunnel(tunnel);
                Moved::Tunnel
            }
            Err(Failed { end, why }) => Moved::Closed(end, Some(why)),
        }
    }
}

impl Stage {
    /// The TCP connection underneath, once connected.
    pub(super) fn tcp(&mut self) -> Option<&Conn> {
        match self {
            #[cfg(feature = "tls")]
            Stage::Tls {
                wait: Wait::Tls(shake),
                ..
            } => shake.tcp(),
            #[cfg(feature = "tls")]
            Stage::Tls { .. } => None,
            Stage::Tunnel(t) => Some(t.stream().tcp()),
        }
    }

    /// The mio stream, for deregistration.
    pub(super) fn source(&mut self) -> Option<&mut TcpStream> {
        match self {
            #[cfg(feature = "tls")]
            Stage::Tls { wait, .. } => match wait {
                Wait::Connect(conn) => conn.as_mut().map(Conn::source),
                Wait::Tls(shake) => shake.source(),
            },
            Stage::Tunnel(t) => Some(t.stream().source()),
        }
    }

    /// The tunnel protocol, taken out, once the TLS handshake (if any) is done.
    pub(super) fn into_tunnel(self) -> Option<AgentTunnel<Link>> {
        match self {
            Stage::Tunnel(t) => Some(t),
            #[cfg(feature = "tls")]
            Stage::Tls { .. } => None,
        }
    }

    /// True once authenticated and waiting for ATTACH.
    pub(super) fn is_idle(&self) -> bool {
        matches!(self, Stage::Tunnel(t) if t.is_idle())
    }

    /// When to call [`expire`](Self::expire).
    pub(super) fn deadline(&self, p: &TunnelPolicy, connect_timeout: Duration) -> Instant {
        match self {
            #[cfg(feature = "tls")]
            Stage::Tls {
                wait: Wait::Connect(_),
                since,
                ..
            } => *since + connect_timeout.min(p.handshake_timeout),
            #[cfg(feature = "tls")]
            Stage::Tls { since, .. } => *since + p.handshake_timeout,
            Stage::Tunnel(t) => t.deadline(p, connect_timeout),
        }
    }

    /// The deadline passed: a heartbeat is due, or the tunnel is dead.
    pub(super) fn expire(
        &mut self,
        now: Instant,
        p: &TunnelPolicy,
        connect_timeout: Duration,
    ) -> TunnelStep {
        if now < self.deadline(p, connect_timeout) {
            return TunnelStep::Waiting;
        }
        match self {
            #[cfg(feature = "tls")]
            Stage::Tls {
                wait: Wait::Connect(_),
                ..
            } => TunnelStep::Closed(TunnelEnd::ConnectFailed(ConnectFailure::Timeout)),
            #[cfg(feature = "tls")]
            Stage::Tls { .. } => TunnelStep::Closed(TunnelEnd::HandshakeTimeout),
            Stage::Tunnel(t) => t.expire(now, p, connect_timeout),
        }
    }
}
