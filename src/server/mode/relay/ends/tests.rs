use super::mismatch;
use crate::core::tunnel::TunnelEnd;

#[test]
fn each_mismatch_of_tunnel_tls_is_named_and_nothing_else() {
    // A TLS relay: silence to the deadline in the TLS stage, or bytes that are no record.
    assert!(mismatch(true, true, TunnelEnd::HandshakeTimeout, None).contains("tunnel-tls off"));
    assert!(mismatch(true, true, TunnelEnd::TlsFailed, Some(b'T')).contains("plain tunnels"));
    // A plain relay that read a ClientHello (or the agent's reset after it).
    assert!(mismatch(false, false, TunnelEnd::ProtocolError, Some(0x16)).contains("speaks TLS"));
    assert!(mismatch(false, false, TunnelEnd::Lost, Some(0x16)).contains("speaks TLS"));
    // Everything else says nothing more.
    assert_eq!(mismatch(true, false, TunnelEnd::HandshakeTimeout, None), "");
    assert_eq!(
        mismatch(true, true, TunnelEnd::HandshakeTimeout, Some(0x16)),
        ""
    );
    assert_eq!(mismatch(true, true, TunnelEnd::TlsFailed, Some(0x16)), "");
    assert_eq!(
        mismatch(false, false, TunnelEnd::ProtocolError, Some(b'X')),
        ""
    );
    assert_eq!(
        mismatch(false, false, TunnelEnd::AuthFailed, Some(0x16)),
        ""
    );
}
