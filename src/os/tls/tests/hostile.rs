//! Hostile and mistaken peers before the handshake completes: garbage, a plain relay,
//! a ClientHello that never ends. Each fails that one handshake, never panics.

use std::io::{IoSlice, Write};

use super::*;

#[test]
fn garbage_before_the_hello_fails_the_handshake_without_a_panic() {
    let relay = RelayTls::generate().expect("key");
    let mut rng = Rng(15);
    let mut inputs: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"TCPB\x01".to_vec(),
        vec![0x16, 0x03, 0x01, 0xff, 0xff],
        vec![0x16, 0x03, 0x01, 0x00, 0x05, 1, 0, 0, 1, 0],
    ];
    for _ in 0..40 {
        let n = rng.size(600);
        let mut bytes = rng.bytes(n);
        if rng.next() % 2 == 0 {
            // A plausible record header in front of the noise.
            bytes.splice(0..0, [0x16, 0x03, 0x01]);
        }
        inputs.push(bytes);
    }
    for input in inputs {
        let (mut raw, r) = std_pair();
        let r = wrap(r);
        raw.write_all(&input).expect("garbage");
        raw.shutdown(std::net::Shutdown::Write).expect("fin");
        let mut net = Net::new();
        let mut relay_side = TlsStream::server(r, &relay);
        net.register(&mut relay_side, 1);
        let mut ready = [Readiness::default(); 2];
        let outcome = loop {
            match relay_side.handshake() {
                Ok(Progress::Pending) => net.wait(&mut ready),
                Ok(Progress::Done) => panic!("a handshake out of garbage: {input:?}"),
                Err(e) => break e,
            }
        };
        assert!(
            matches!(
                outcome,
                HandshakeError::Tls(_) | HandshakeError::Closed | HandshakeError::Io(_)
            ),
            "{outcome:?}"
        );
        let _ = relay_side.write_vectored(&[IoSlice::new(b"x")]);
    }
}

#[test]
fn a_tls_agent_facing_a_plain_relay_fails_at_the_first_byte() {
    // A plain relay opens with its CHALLENGE: "TCPB" is no TLS record type.
    let (a, mut plain) = std_pair();
    let mut agent = TlsStream::client(wrap(a), &any()).expect("client");
    plain.write_all(b"TCPB\x01").expect("challenge");
    let mut net = Net::new();
    net.register(&mut agent, 0);
    let mut ready = [Readiness::default(); 2];
    let e = loop {
        match agent.handshake() {
            Ok(Progress::Pending) => net.wait(&mut ready),
            Ok(Progress::Done) => panic!("a handshake with a plain relay"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(e, HandshakeError::Tls(rustls::Error::InvalidMessage(_))),
        "{e:?}"
    );
}

#[test]
fn a_relay_holds_at_most_its_handshake_budget_from_an_agent() {
    // A ClientHello that announces 64 KiB and keeps coming.
    let relay = RelayTls::generate().expect("key");
    let (mut raw, r) = std_pair();
    let mut relay_side = TlsStream::server(wrap(r), &relay);
    let mut net = Net::new();
    net.register(&mut relay_side, 1);
    let mut ready = [Readiness::default(); 2];
    let mut record = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0xff, 0xff];
    record.resize(5 + 0x4000, 0x42);
    let mut sent = 0;
    let e = loop {
        if sent < 8 * record.len() {
            let chunk = if sent == 0 { &record[..] } else { &record[5..] };
            raw.write_all(chunk).expect("hello bytes");
            sent += chunk.len();
        }
        match relay_side.handshake() {
            Ok(Progress::Pending) => net.wait(&mut ready),
            Ok(Progress::Done) => panic!("a handshake out of junk"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            e,
            HandshakeError::Tls(rustls::Error::InvalidMessage(
                rustls::InvalidMessage::HandshakePayloadTooLarge
            ))
        ),
        "{e:?}"
    );
}
