//! What the first byte a tunnel's peer sent says when the two ends disagree on
//! `tunnel_tls`: a TLS record starts with 0x16 (handshake), the plain tunnel protocol
//! with `T` (its magic). In every build: one without the `tls` feature still names a TLS
//! peer it cannot talk to. Also the warning for plain tunnels, and their refusal in a
//! build without TLS. The handshake itself is in `handshake`.

use log::warn;

#[cfg(not(feature = "tls"))]
use crate::config::TunnelTls;
use crate::os::net::Conn;

/// Says that `tunnels` ("tunnels on ADDR", "tunnels to HOST") are plain
/// (`tunnel_tls off`).
pub(super) fn warn_plain(tunnels: &str) {
    warn!("{tunnels} are not encrypted: tunnel-tls off (use a trusted network)");
}

/// Without the `tls` feature: plain `tunnels` (a warning); `tunnel_tls on` is refused
/// (the configuration refuses it first), never made plain.
#[cfg(not(feature = "tls"))]
pub(super) fn plain(tls: TunnelTls, tunnels: &str) -> Result<(), String> {
    match tls {
        TunnelTls::Off => {
            warn_plain(tunnels);
            Ok(())
        }
        TunnelTls::On => Err(format!("{tunnels}: {}", crate::config::WITHOUT_TLS)),
    }
}

/// The first byte of a TLS handshake record.
pub(super) const TLS_HANDSHAKE: u8 = 0x16;

/// Notes the first byte waiting on `conn` (peeked, not consumed) if none is noted yet.
pub(super) fn note_first(first: &mut Option<u8>, conn: Option<&Conn>) {
    if first.is_some() {
        return;
    }
    let mut byte = [0u8; 1];
    if let Some(Ok(1)) = conn.map(|c| c.peek(&mut byte)) {
        *first = Some(byte[0]);
    }
}
