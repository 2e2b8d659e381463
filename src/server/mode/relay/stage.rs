//! The TLS identity a relay starts with, and where a relay's tunnel connection stands
//! before pairing: its TLS handshake (when tunnels are TLS), then the tunnel protocol
//! (`core::tunnel::RelayTunnel`). One enum, changed in one place ([`Stage::upgrade`]);
//! the rest of the relay asks it. Without the `tls` feature there is no handshake stage:
//! every tunnel starts in the tunnel protocol, as with `tunnel_tls off`.

use std::time::Instant;

#[cfg(feature = "tls")]
use log::info;
use mio::net::TcpStream;

#[cfg(feature = "tls")]
use crate::server::mode::tls::warn_plain;

#[cfg(feature = "tls")]
use crate::config::{Relay, TunnelTls};
use crate::core::stream::Readiness;
use crate::core::tunnel::{RelayTunnel, TunnelPolicy, TunnelStep};
use crate::os::link::Link;
use crate::os::net::Conn;
#[cfg(feature = "tls")]
use crate::{
    core::tunnel::TunnelEnd,
    os::tls::RelayTls,
    proto::auth::{Channel, NONCE_LEN},
    server::mode::handshake::Handshake,
};

/// The TLS identity a relay's tunnels are accepted with (its files', or a key made now),
/// its fingerprint logged; `None` for plain tunnels (a warning).
#[cfg(feature = "tls")]
pub(super) fn identity(cfg: &Relay) -> Result<Option<RelayTls>, String> {
    if cfg.tunnel.tls == TunnelTls::Off {
        warn_plain(&format!("tunnels on {}", cfg.tunnel_listen));
        return Ok(None);
    }
    let loaded = cfg.identity.load();
    let key = match loaded {
        Some(_) => "relay TLS key",
        None => "relay TLS key (made at start-up)",
    };
    let tls = loaded
        .unwrap_or_else(RelayTls::generate)
        .map_err(|e| format!("tunnels on {}: TLS: {e}", cfg.tunnel_listen))?;
    info!(
        "tunnels on {}: {key} {}",
        cfg.tunnel_listen,
        tls.fingerprint()
    );
    Ok(Some(tls))
}

/// A relay's tunnel connection before pairing.
// The tunnel is held by value: entries live in the slab, and a box would cost an
// allocation per tunnel for a handshake stage that lasts a few round trips.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Stage {
    /// The TLS handshake; the tunnel protocol starts on its channel once it is done.
    #[cfg(feature = "tls")]
    Tls {
        shake: Handshake,
        nonce: [u8; NONCE_LEN],
        /// When the connection was accepted (the one deadline counts from it).
        since: Instant,
    },
    /// The tunnel protocol: challenge, hello, then idle.
    Tunnel(RelayTunnel<Link>),
}

impl Stage {
    /// The tunnel protocol on the TLS channel just made (the handshake's deadline still
    /// counts from the accept); the stream counts as readable and writable.
    #[cfg(feature = "tls")]
    pub(super) fn upgrade(&mut self, link: Link, channel: Channel) {
        if let Stage::Tls { nonce, since, .. } = *self {
            let mut tunnel = RelayTunnel::bound(link, channel, nonce, since);
            tunnel.on_event(Readiness {
                readable: true,
                writable: true,
                read_closed: false,
            });
            *self = Stage::Tunnel(tunnel);
        }
    }

    /// The TCP connection underneath.
    pub(super) fn tcp(&mut self) -> Option<&Conn> {
        match self {
            #[cfg(feature = "tls")]
            Stage::Tls { shake, .. } => shake.tcp(),
            Stage::Tunnel(t) => Some(t.stream().tcp()),
        }
    }

    /// The mio stream, for deregistration.
    pub(super) fn source(&mut self) -> Option<&mut TcpStream> {
        match self {
            #[cfg(feature = "tls")]
            Stage::Tls { shake, .. } => shake.source(),
            Stage::Tunnel(t) => Some(t.stream().source()),
        }
    }

    /// How far the handshake got, for eviction: a TLS handshake (by its bytes
    /// received) ranks below any tunnel hello (by its bytes received).
    pub(super) fn progress(&self) -> (u8, usize) {
        match self {
            #[cfg(feature = "tls")]
            Stage::Tls { shake, .. } => (0, shake.received()),
            Stage::Tunnel(t) => (1, t.progress()),
        }
    }

    /// When the connection was accepted.
    pub(super) fn since(&self) -> Instant {
        match self {
            #[cfg(feature = "tls")]
            Stage::Tls { since, .. } => *since,
            Stage::Tunnel(t) => t.since(),
        }
    }

    /// True once admitted and idle (the only state a tunnel may be paired in).
    pub(super) fn is_idle(&self) -> bool {
        matches!(self, Stage::Tunnel(t) if t.is_idle())
    }

    /// The tunnel protocol, once the TLS handshake (if any) is done.
    pub(super) fn tunnel(&mut self) -> Option<&mut RelayTunnel<Link>> {
        match self {
            Stage::Tunnel(t) => Some(t),
            #[cfg(feature = "tls")]
            Stage::Tls { .. } => None,
        }
    }

    /// The tunnel protocol, taken out, once the TLS handshake (if any) is done.
    pub(super) fn into_tunnel(self) -> Option<RelayTunnel<Link>> {
        match self {
            Stage::Tunnel(t) => Some(t),
            #[cfg(feature = "tls")]
            Stage::Tls { .. } => None,
        }
    }

    /// Records readiness from an event (the TLS handshake is driven whatever it says).
    pub(super) fn on_event(&mut self, ready: Readiness) {
        match self {
            Stage::Tunnel(t) => t.on_event(ready),
            #[cfg(feature = "tls")]
            Stage::Tls { .. } => {}
        }
    }

    /// When to call [`expire`](Self::expire).
    pub(super) fn deadline(&self, p: &TunnelPolicy) -> Instant {
        match self {
            #[cfg(feature = "tls")]
            Stage::Tls { since, .. } => *since + p.handshake_timeout,
            Stage::Tunnel(t) => t.deadline(p),
        }
    }

    /// The deadline passed: a heartbeat is due, or the tunnel is dead.
    pub(super) fn expire(&mut self, now: Instant, p: &TunnelPolicy) -> TunnelStep {
        match self {
            #[cfg(feature = "tls")]
            Stage::Tls { since, .. } if now >= *since + p.handshake_timeout => {
                TunnelStep::Closed(TunnelEnd::HandshakeTimeout)
            }
            #[cfg(feature = "tls")]
            Stage::Tls { .. } => TunnelStep::Waiting,
            Stage::Tunnel(t) => t.expire(now, p),
        }
    }
}
