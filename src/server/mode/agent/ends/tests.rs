use super::mismatch;
use crate::core::tunnel::TunnelEnd;

#[test]
fn each_mismatch_of_tunnel_tls_or_pin_is_named_and_nothing_else() {
    assert!(mismatch(true, false, TunnelEnd::TlsFailed, Some(b'T')).contains("does not speak TLS"));
    assert!(mismatch(true, true, TunnelEnd::TlsFailed, Some(0x16)).contains("tunnel-tls-pin"));
    assert!(mismatch(false, false, TunnelEnd::HandshakeTimeout, None).contains("no challenge"));
    assert!(mismatch(false, false, TunnelEnd::Lost, None).contains("no challenge"));
    assert!(mismatch(true, false, TunnelEnd::HandshakeTimeout, None).contains("TLS hello"));
    assert_eq!(mismatch(true, false, TunnelEnd::TlsFailed, Some(0x16)), "");
    assert_eq!(
        mismatch(false, false, TunnelEnd::HandshakeTimeout, Some(b'T')),
        ""
    );
    assert_eq!(mismatch(false, false, TunnelEnd::Denied, None), "");
    assert_eq!(mismatch(false, false, TunnelEnd::Lost, Some(b'T')), "");
}
