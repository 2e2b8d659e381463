//! How a relay's tunnel ends before pairing: what counts against its source, and the
//! log line, which says what a peer speaking the other kind of tunnel did (an agent
//! with `tunnel-tls off` facing a TLS relay, or the reverse).

use log::{info, warn};

#[cfg(feature = "tls")]
use super::stage::Stage;
use super::RelayState;
use crate::core::failures::{Failures, Warn};
use crate::core::tunnel::TunnelEnd;
use crate::server::mode::tls::TLS_HANDSHAKE;
use crate::server::mode::Cx;

/// Whether a warning about a failed handshake may be logged now (after the summary of
/// those that were not, when a window starts).
fn may_warn(failures: &mut Failures, now: std::time::Instant) -> bool {
    match failures.may_warn(now) {
        Warn::Yes => true,
        Warn::AfterSuppressed { suppressed, total } => {
            warn!("{suppressed} more failed tunnel handshakes were not logged ({total} in all)");
            true
        }
        Warn::No => false,
    }
}

/// What a failed handshake says about the two ends' `tunnel_tls`, if anything: `tls`
/// when this relay requires TLS, `shaking` when the TLS handshake was still under way,
/// `first` the first byte the peer sent.
pub(super) fn mismatch(
    tls: bool,
    shaking: bool,
    end: TunnelEnd,
    first: Option<u8>,
) -> &'static str {
    match (tls, end, first) {
        (true, TunnelEnd::HandshakeTimeout, None) if shaking => {
            ": no TLS hello came (an agent with tunnel-tls off waits so for a challenge \
             in clear: this relay requires TLS)"
        }
        (true, TunnelEnd::TlsFailed, Some(b)) if b != TLS_HANDSHAKE => {
            ": its first byte is no TLS record (the agent speaks plain tunnels, \
             tunnel-tls off, while this relay requires TLS)"
        }
        // A bad magic, or the agent's reset (its TLS failed on our challenge) first.
        (false, TunnelEnd::ProtocolError | TunnelEnd::Lost, Some(TLS_HANDSHAKE)) => {
            ": its first byte starts a TLS record (the agent speaks TLS while this \
             relay has tunnel-tls off)"
        }
        _ => "",
    }
}

impl RelayState {
    pub(super) fn close_tunnel(&mut self, cx: &mut Cx<'_>, slot: usize, end: TunnelEnd) {
        let Some(mut t) = self.tunnels.remove(slot) else {
            return;
        };
        if let Some(source) = t.stage.source() {
            let _ = cx.registry.deregister(source);
        }
        // A peer that sent nothing to the end (or was evicted for it) is owed nothing:
        // reset, so a flood of them leaves no TIME-WAIT on the relay.
        if matches!(end, TunnelEnd::Evicted | TunnelEnd::HandshakeTimeout) {
            if let Some(tcp) = t.stage.tcp() {
                tcp.reset_on_close();
            }
        }
        match (t.service, end) {
            (Some(service), _) => info!(
                "tunnel {} from {} for {}: {}",
                t.id,
                t.peer,
                self.names.get(service).map_or("?", String::as_str),
                end.as_str()
            ),
            // Refused at the idle-tunnel limit (logged when refused): not a failure.
            (None, TunnelEnd::Denied) => {}
            // Every other unfinished handshake is a failure; only the peer's own count
            // against its source (a wrong proof, bad bytes or TLS records, a slot held
            // silent to the deadline), not a peer that went away before answering
            // (connections lost in the listen queue must not lock a legitimate agent
            // out).
            (None, _) => {
                let auth = end == TunnelEnd::AuthFailed;
                if auth {
                    cx.counters.auth_failures += 1;
                } else {
                    cx.counters.handshake_failures += 1;
                }
                let failures = &mut self.tunnels.failures;
                if !matches!(end, TunnelEnd::Lost | TunnelEnd::Evicted) {
                    failures.record(t.peer.ip(), cx.now);
                }
                if !may_warn(failures, cx.now) {
                    return;
                }
                #[cfg(feature = "tls")]
                let (tls, shaking) = (self.tls.is_some(), matches!(t.stage, Stage::Tls { .. }));
                #[cfg(not(feature = "tls"))]
                let (tls, shaking) = (false, false);
                let hint = mismatch(tls, shaking, end, t.first);
                match (end, t.why) {
                    (TunnelEnd::TlsFailed, Some(why)) => {
                        warn!("tunnel {} from {}: {why}{hint}", t.id, t.peer);
                    }
                    _ => {
                        let what = if auth {
                            "authentication failed"
                        } else {
                            "handshake failed"
                        };
                        let end = end.as_str();
                        warn!("tunnel {} from {}: {what} ({end}){hint}", t.id, t.peer);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
