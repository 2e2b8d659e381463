//! What the first byte a tunnel's peer sent says when the two ends disagree on
//! `tunnel_tls`: a TLS record starts with 0x16 (handshake), the plain tunnel protocol
//! with `T` (its magic). In every build: one without the `tls` feature still names a TLS
//! peer it cannot talk to. The handshake itself is in `handshake`.

use crate::os::net::Conn;

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
