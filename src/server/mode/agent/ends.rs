//! How an agent's tunnel ends before pairing: the log line (which says what a relay
//! speaking the other kind of tunnel did, or that a pinned key was refused), the
//! counters, and the backoff.

use log::{debug, error, warn};

use super::AgentState;
use crate::core::tunnel::TunnelEnd;
use crate::server::mode::tls::TLS_HANDSHAKE;
use crate::server::mode::{Action, Cx};
use crate::server::Stopped;

/// What a failed handshake says about the two ends' `tunnel_tls`, if anything: `tls`
/// when this agent speaks TLS, `first` the first byte the relay sent.
pub(super) fn mismatch(tls: bool, pinned: bool, end: TunnelEnd, first: Option<u8>) -> &'static str {
    match (tls, end, first) {
        (true, TunnelEnd::TlsFailed, Some(b)) if b != TLS_HANDSHAKE => {
            ": the relay does not speak TLS (plain tunnels? tunnel-tls off on the relay)"
        }
        (true, TunnelEnd::TlsFailed, _) if pinned => {
            " (is tunnel-tls-pin the relay's key? the relay logs it at start-up)"
        }
        (true, TunnelEnd::HandshakeTimeout, None) => ": the relay did not answer the TLS hello",
        // Silence to the deadline, or the relay closing at its own deadline first.
        (false, TunnelEnd::HandshakeTimeout | TunnelEnd::Lost, None) => {
            ": no challenge came (a relay that requires TLS waits so for a TLS hello, \
             and this agent has tunnel-tls off)"
        }
        _ => "",
    }
}

impl AgentState {
    pub(super) fn close_tunnel(&mut self, cx: &mut Cx<'_>, slot: usize, end: TunnelEnd) {
        let Some(mut t) = self.tunnels.try_remove(slot) else {
            return;
        };
        if let Some(source) = t.stage.source() {
            let _ = cx.registry.deregister(source);
        }
        let up = self.services.closed(t.service);
        let refused = matches!(end, TunnelEnd::Denied | TunnelEnd::AuthFailed);
        if refused {
            cx.counters.auth_failures += 1;
        }
        let name = self.services.name(t.service);
        let (id, relay, what) = (t.id, t.relay, end.as_str());
        #[cfg(feature = "tls")]
        let tls = self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        let tls = false;
        let hint = mismatch(tls, self.pinned, end, t.first);
        if let (TunnelEnd::TlsFailed, Some(why)) = (end, &t.why) {
            warn!("tunnel {id} to {relay} for {name}: {why}{hint}");
        } else if refused {
            warn!(
                "tunnel {id} to {relay} for {name}: {what} \
                 (check the secret and that the relay has this service)"
            );
        } else if up || !hint.is_empty() {
            warn!("tunnel {id} to {relay} for {name}: {what}{hint}");
        } else {
            debug!("tunnel {id} to {relay} for {name}: {what}");
        }
        if self.exit_on_disconnect {
            error!("lost the relay ({what}): exiting (--exit-on-disconnect)");
            cx.actions.push(Action::Stop(Stopped::Disconnected));
            return;
        }
        self.tunnel_failed(cx, t.service);
    }
}

#[cfg(test)]
mod tests;
