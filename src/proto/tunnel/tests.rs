//! Tunnel protocol tests: round trips, every split offset, and each malformed input.

use super::*;

fn secret() -> Secret {
    Secret::from_file_contents(&[b's'; 32]).expect("valid")
}

const RELAY_NONCE: [u8; 32] = [7; 32];
const AGENT_NONCE: [u8; 32] = [9; 32];

/// Feeds `bytes` in pieces of at most `step` bytes, never more than the reader wants.
fn feed_hello(bytes: &[u8], step: usize) -> Result<Option<Hello>, ProtocolError> {
    let mut r = HelloReader::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = step.min(r.want()).min(rest.len());
        if let Some(h) = r.feed(&rest[..n])? {
            return Ok(Some(h));
        }
        rest = &rest[n..];
    }
    Ok(None)
}

// ---- handshake ----

#[test]
fn full_handshake_authenticates_both_ways() {
    let s = secret();
    let mut c = ChallengeReader::new();
    let nonce = c
        .feed(&challenge(&Channel::Plain, &RELAY_NONCE))
        .expect("ok")
        .expect("complete");
    assert_eq!(nonce, RELAY_NONCE);
    let h = hello(&s, &Channel::Plain, &nonce, &AGENT_NONCE, "ssh");
    let parsed = feed_hello(&h, usize::MAX).expect("ok").expect("complete");
    assert_eq!(parsed.service, "ssh");
    assert!(parsed.verify(&s, &Channel::Plain, &RELAY_NONCE));
    let w = welcome(&s, &Channel::Plain, &RELAY_NONCE, &parsed);
    let mut v = VerdictReader::new();
    let Some(Verdict::Welcome(proof)) = v.feed(&w).expect("ok") else {
        panic!("expected WELCOME");
    };
    assert!(s.verify(
        Role::Relay,
        &Channel::Plain,
        &RELAY_NONCE,
        &AGENT_NONCE,
        "ssh",
        &proof
    ));
}

#[test]
fn hello_parses_identically_at_every_split() {
    let h = hello(
        &secret(),
        &Channel::Plain,
        &RELAY_NONCE,
        &AGENT_NONCE,
        "web-1.example",
    );
    let whole = feed_hello(&h, usize::MAX).expect("ok");
    for step in 1..h.len() {
        assert_eq!(feed_hello(&h, step).expect("ok"), whole, "step {step}");
    }
    for cut in 0..h.len() {
        let mut r = HelloReader::new();
        assert_eq!(r.feed(&h[..cut]).expect("prefix ok"), None, "cut {cut}");
    }
}

#[test]
fn replayed_hello_fails_under_a_new_nonce() {
    let s = secret();
    let recorded = hello(&s, &Channel::Plain, &RELAY_NONCE, &AGENT_NONCE, "ssh");
    let parsed = feed_hello(&recorded, usize::MAX)
        .expect("ok")
        .expect("complete");
    assert!(!parsed.verify(&s, &Channel::Plain, &[8u8; 32]));
}

#[test]
fn wrong_secret_fails() {
    let other = Secret::from_file_contents(&[b'o'; 32]).expect("valid");
    let h = hello(&other, &Channel::Plain, &RELAY_NONCE, &AGENT_NONCE, "ssh");
    let parsed = feed_hello(&h, usize::MAX).expect("ok").expect("complete");
    assert!(!parsed.verify(&secret(), &Channel::Plain, &RELAY_NONCE));
}

#[test]
fn denied_is_one_byte() {
    let mut v = VerdictReader::new();
    assert_eq!(v.want(), 1);
    assert_eq!(v.feed(&[frame::DENIED]), Ok(Some(Verdict::Denied)));
}

// ---- malformed handshakes ----

#[test]
fn bad_magic_is_caught_at_the_first_wrong_byte() {
    let mut r = HelloReader::new();
    assert_eq!(r.feed(b"T"), Ok(None));
    assert_eq!(r.feed(b"X"), Err(ProtocolError::BadMagic));
    let mut r = HelloReader::new();
    assert_eq!(r.feed(b"GET / HTTP/1.1\r\n"), Err(ProtocolError::BadMagic));
}

#[test]
fn bad_version_is_caught() {
    let mut r = HelloReader::new();
    assert_eq!(r.feed(b"TCPB\x02"), Err(ProtocolError::BadVersion(2)));
    let mut c = ChallengeReader::new();
    assert_eq!(c.feed(b"TCPB\x09"), Err(ProtocolError::BadVersion(9)));
}

#[test]
fn name_length_zero_or_oversize_is_refused_before_the_body() {
    for len in [0u8, 65, 255] {
        let mut head = Vec::from(&b"TCPB\x01"[..]);
        head.extend_from_slice(&AGENT_NONCE);
        head.push(len);
        let mut r = HelloReader::new();
        assert_eq!(
            r.feed(&head),
            Err(ProtocolError::BadServiceName),
            "len {len}"
        );
    }
}

#[test]
fn name_with_bad_bytes_is_refused() {
    let mut h = hello(
        &secret(),
        &Channel::Plain,
        &RELAY_NONCE,
        &AGENT_NONCE,
        "ssh",
    );
    h[HELLO_HEAD] = b'/';
    assert_eq!(
        feed_hello(&h, usize::MAX),
        Err(ProtocolError::BadServiceName)
    );
}

#[test]
fn want_never_exceeds_the_longest_hello() {
    let mut r = HelloReader::new();
    assert_eq!(r.want(), HELLO_HEAD);
    let mut head = Vec::from(&b"TCPB\x01"[..]);
    head.extend_from_slice(&AGENT_NONCE);
    head.push(64);
    assert_eq!(r.feed(&head), Ok(None));
    assert_eq!(r.want(), 64 + PROOF_LEN);
}

#[test]
fn service_names() {
    assert!(valid_service_name("ssh"));
    assert!(valid_service_name("web_1.example-a"));
    assert!(!valid_service_name(""));
    assert!(!valid_service_name("a b"));
    assert!(!valid_service_name(&"x".repeat(65)));
}

// ---- idle frames ----

fn read_relay_frames(bytes: &[u8]) -> Result<Vec<RelayFrame>, ProtocolError> {
    let mut r = RelayFrameReader::new();
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = r.want().min(rest.len());
        if let Some(f) = r.feed(&rest[..n])? {
            out.push(f);
        }
        rest = &rest[n..];
    }
    Ok(out)
}

#[test]
fn attach_round_trips_v4_and_v6() {
    for addr in ["192.0.2.1:5555", "[2001:db8::1]:443"] {
        let addr: SocketAddr = addr.parse().expect("addr");
        let (bytes, n) = attach(addr);
        let mut stream = vec![frame::HEARTBEAT];
        stream.extend_from_slice(&bytes[..n]);
        assert_eq!(
            read_relay_frames(&stream),
            Ok(vec![RelayFrame::Heartbeat, RelayFrame::Attach(addr)])
        );
    }
}

#[test]
fn attach_reader_stops_exactly_at_the_frame_end() {
    let (bytes, n) = attach("10.0.0.1:80".parse().expect("addr"));
    let mut r = RelayFrameReader::new();
    let mut used = 0;
    loop {
        let want = r.want();
        let got = r.feed(&bytes[used..used + want]).expect("ok");
        used += want;
        if got.is_some() {
            break;
        }
    }
    assert_eq!(used, n, "no byte after the frame is consumed");
}

#[test]
fn unknown_frames_and_families_are_errors() {
    assert_eq!(
        read_relay_frames(&[0x7f]),
        Err(ProtocolError::UnexpectedFrame(0x7f))
    );
    assert_eq!(
        read_relay_frames(&[frame::ATTACH, 5]),
        Err(ProtocolError::BadAddressFamily(5))
    );
    assert_eq!(agent_frame(frame::READY), Ok(AgentFrame::Ready));
    assert_eq!(
        agent_frame(frame::ATTACH),
        Err(ProtocolError::UnexpectedFrame(0x20))
    );
}

#[test]
fn version_two_round_trip_is_bound_to_its_channel() {
    let s = secret();
    let tls = Channel::Tls([3u8; 32]);
    let c = challenge(&tls, &RELAY_NONCE);
    assert_eq!(c[4], VERSION_TLS);
    let mut plain = ChallengeReader::new();
    assert_eq!(plain.feed(&c), Err(ProtocolError::BadVersion(VERSION_TLS)));
    let mut r = ChallengeReader::expecting(VERSION_TLS);
    assert_eq!(r.feed(&c), Ok(Some(RELAY_NONCE)));
    let h = hello(&s, &tls, &RELAY_NONCE, &AGENT_NONCE, "ssh");
    assert_eq!(
        feed_hello(&h, 1),
        Err(ProtocolError::BadVersion(VERSION_TLS))
    );
    let mut hr = HelloReader::expecting(VERSION_TLS);
    let parsed = hr.feed(&h).expect("ok").expect("complete");
    assert!(parsed.verify(&s, &tls, &RELAY_NONCE));
    assert!(!parsed.verify(&s, &Channel::Tls([4u8; 32]), &RELAY_NONCE));
    assert!(!parsed.verify(&s, &Channel::Plain, &RELAY_NONCE));
    let w = welcome(&s, &tls, &RELAY_NONCE, &parsed);
    let proof = &w[1..];
    assert!(s.verify(Role::Relay, &tls, &RELAY_NONCE, &AGENT_NONCE, "ssh", proof));
    assert!(!s.verify(
        Role::Relay,
        &Channel::Plain,
        &RELAY_NONCE,
        &AGENT_NONCE,
        "ssh",
        proof
    ));
    let mut v1 = HelloReader::expecting(VERSION_TLS);
    let old = hello(&s, &Channel::Plain, &RELAY_NONCE, &AGENT_NONCE, "ssh");
    assert_eq!(v1.feed(&old), Err(ProtocolError::BadVersion(VERSION)));
}
