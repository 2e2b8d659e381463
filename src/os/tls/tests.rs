//! TLS streams over real loopback sockets, driven by a mio `Poll` as the loop drives
//! them: handshakes, identities, the exporter and the man in the middle. Byte flow and
//! closes are in `tests/flow.rs`, hostile peers in `tests/hostile.rs`.
//!
//! `testdata/` holds a test CA and a relay certificate for `relay.test` (Ed25519, valid
//! until 2126), made once with `openssl req -x509 -newkey ed25519 ...` and
//! `openssl x509 -req ...`; the keys are public test keys.

use std::time::Duration;

use mio::{Events, Interest, Poll, Token};

use super::*;
use crate::core::stream::Readiness;

mod flow;
mod hostile;

const CA: &[u8] = include_bytes!("testdata/ca.pem");
const RELAY_CERT: &[u8] = include_bytes!("testdata/relay.pem");
const RELAY_KEY: &[u8] = include_bytes!("testdata/relay.key");
/// SHA-256 of `relay.pem`'s public key (`openssl x509 -pubkey | openssl pkey -pubin
/// -outform der | sha256sum`).
const RELAY_CERT_KEY: &str = "e143b00724d2a6056321948d58a43af065ec8668fb329f8a88772d1b4cc41394";

/// Deterministic random numbers: a splitmix64 sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `1..=max`.
    fn size(&mut self, max: usize) -> usize {
        1 + (self.next() % max as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A poll and its events; waiting longer than 10 s for an event is a stall.
struct Net {
    poll: Poll,
    events: Events,
}

impl Net {
    fn new() -> Net {
        Net {
            poll: Poll::new().expect("poll"),
            events: Events::with_capacity(64),
        }
    }

    fn register(&self, stream: &mut TlsStream, token: usize) {
        self.poll
            .registry()
            .register(
                stream.source(),
                Token(token),
                Interest::READABLE | Interest::WRITABLE,
            )
            .expect("register");
    }

    /// Waits for events and adds them to the readiness caches, by token.
    fn wait(&mut self, ready: &mut [Readiness]) {
        self.poll
            .poll(&mut self.events, Some(Duration::from_secs(10)))
            .expect("poll");
        assert!(!self.events.is_empty(), "no event for 10 s: a stall");
        for event in self.events.iter() {
            if let Some(r) = ready.get_mut(event.token().0) {
                r.add(Readiness {
                    readable: event.is_readable(),
                    writable: event.is_writable(),
                    read_closed: event.is_read_closed() || event.is_error(),
                });
            }
        }
    }
}

/// Socket buffers fixed for every test socket, so that a large write fills the socket
/// whatever the machine's `tcp_wmem` and `tcp_rmem` (the kernel doubles the value).
const SOCKET_BUFFER: usize = 128 << 10;

/// A connected pair of loopback TCP sockets with fixed buffers: (agent's, relay's).
fn std_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    fix_buffers(&listener);
    let addr = listener.local_addr().expect("addr");
    let agent =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    fix_buffers(&agent);
    agent.connect(&addr.into()).expect("connect");
    let (relay, _) = listener.accept().expect("accept");
    (agent.into(), relay)
}

fn fix_buffers<S: std::os::fd::AsFd>(socket: &S) {
    let socket = socket2::SockRef::from(socket);
    socket
        .set_send_buffer_size(SOCKET_BUFFER)
        .expect("SO_SNDBUF");
    socket
        .set_recv_buffer_size(SOCKET_BUFFER)
        .expect("SO_RCVBUF");
}

/// A non-blocking connection as the loop holds it.
fn wrap(s: std::net::TcpStream) -> Conn {
    s.set_nonblocking(true).expect("nonblocking");
    Conn::accepted(TcpStream::from_std(s), None)
}

/// A connected pair of loopback TCP connections: (agent's, relay's).
fn tcp_pair() -> (Conn, Conn) {
    let (agent, relay) = std_pair();
    (wrap(agent), wrap(relay))
}

type Outcome = Result<TlsStream, HandshakeError>;

/// Runs both handshakes to their end over `net` (tokens 0 and 1). A side that fails is
/// dropped at once (its socket closes), as the loop would.
fn handshake_pair(net: &mut Net, mut agent: TlsStream, mut relay: TlsStream) -> (Outcome, Outcome) {
    net.register(&mut agent, 0);
    net.register(&mut relay, 1);
    let mut sides = [Some(agent), Some(relay)];
    let mut outcomes: [Option<Outcome>; 2] = [None, None];
    let mut ready = [Readiness::default(); 2];
    loop {
        for (side, outcome) in sides.iter_mut().zip(outcomes.iter_mut()) {
            let Some(stream) = side else { continue };
            match stream.handshake() {
                Ok(Progress::Pending) => {}
                Ok(Progress::Done) => *outcome = side.take().map(Ok),
                Err(e) => {
                    *side = None;
                    *outcome = Some(Err(e));
                }
            }
        }
        if sides.iter().all(Option::is_none) {
            let [a, r] = outcomes;
            return (a.expect("agent ended"), r.expect("relay ended"));
        }
        net.wait(&mut ready);
    }
}

fn connect(net: &mut Net, relay: &RelayTls, agent: &AgentTls) -> (Outcome, Outcome) {
    let (a, r) = tcp_pair();
    let a = TlsStream::client(a, agent).expect("client");
    handshake_pair(net, a, TlsStream::server(r, relay))
}

fn any() -> AgentTls {
    AgentTls::new(Trust::Any).expect("agent config")
}

fn both(outcome: (Outcome, Outcome)) -> (TlsStream, TlsStream) {
    match outcome {
        (Ok(a), Ok(r)) => (a, r),
        (a, r) => panic!("handshake failed: agent {:?}, relay {:?}", a.err(), r.err()),
    }
}

// ---- handshakes and the exporter ----

#[test]
fn handshake_completes_and_both_ends_export_the_same_value() {
    let relay = RelayTls::generate().expect("key");
    let mut net = Net::new();
    let (a, r) = both(connect(&mut net, &relay, &any()));
    let exported = a.exporter().expect("agent exporter");
    assert_eq!(Some(exported), r.exporter());
    assert_ne!(exported, [0u8; 32]);
    assert_eq!(a.peer_fingerprint(), Some(relay.fingerprint()));
    assert_eq!(r.peer_fingerprint(), None, "agents present no key");
    // X25519, not the provider's first choice P-384 (five times the CPU per handshake).
    assert_eq!(a.kx_group(), Some(rustls::NamedGroup::X25519));
    assert_eq!(r.kx_group(), Some(rustls::NamedGroup::X25519));
    // AES-128-GCM, not the provider's first choice AES-256-GCM (more CPU per byte).
    let suite = Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    assert_eq!((a.suite(), r.suite()), (suite, suite));
}

#[test]
fn each_connection_exports_its_own_value() {
    let relay = RelayTls::generate().expect("key");
    let mut net = Net::new();
    let (a1, _r1) = both(connect(&mut net, &relay, &any()));
    let mut net = Net::new();
    let (a2, _r2) = both(connect(&mut net, &relay, &any()));
    assert_ne!(a1.exporter(), a2.exporter());
    assert_eq!(a1.peer_fingerprint(), a2.peer_fingerprint());
}

#[test]
fn a_man_in_the_middle_gets_different_values_on_its_two_legs() {
    // The agent talks to the man in the middle, who talks to the relay with its own
    // TLS on each leg; it could relay every plaintext byte, but the two legs' exporter
    // values differ, so proofs bound to one fail on the other.
    let relay = RelayTls::generate().expect("relay key");
    let middle = RelayTls::generate().expect("middle key");
    let mut net = Net::new();
    let (agent, middle_server) = both(connect(&mut net, &middle, &any()));
    let mut net = Net::new();
    let (middle_client, real) = both(connect(&mut net, &relay, &any()));
    assert_eq!(agent.exporter(), middle_server.exporter());
    assert_eq!(middle_client.exporter(), real.exporter());
    assert_ne!(agent.exporter(), real.exporter());
    // The agent recorded the middle's key, not the relay's: a pin would refuse it.
    assert_eq!(agent.peer_fingerprint(), Some(middle.fingerprint()));
    assert_ne!(agent.peer_fingerprint(), Some(relay.fingerprint()));
}

#[test]
fn a_pinned_key_is_accepted_and_another_refused_on_both_sides() {
    let relay = RelayTls::generate().expect("key");
    let pinned = AgentTls::new(Trust::Pinned(relay.fingerprint())).expect("config");
    let mut net = Net::new();
    let (a, _r) = both(connect(&mut net, &relay, &pinned));
    assert_eq!(a.peer_fingerprint(), Some(relay.fingerprint()));

    let other = RelayTls::generate().expect("key");
    let mut net = Net::new();
    let (a, r) = connect(&mut net, &other, &pinned);
    assert!(
        matches!(
            a,
            Err(HandshakeError::Tls(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure
            )))
        ),
        "{:?}",
        a.err()
    );
    assert!(
        matches!(r, Err(HandshakeError::Tls(rustls::Error::AlertReceived(_)))),
        "the relay hears why: {:?}",
        r.err()
    );
}

// ---- identities ----

#[test]
fn a_relay_with_a_certificate_serves_chain_checking_and_key_checking_agents() {
    let relay = RelayTls::from_pem(RELAY_CERT, RELAY_KEY).expect("relay");
    let key = Fingerprint::parse(RELAY_CERT_KEY).expect("hex");
    assert_eq!(relay.fingerprint(), key);
    let chain = AgentTls::new(Trust::Authority {
        roots_pem: CA.to_vec(),
        name: "relay.test".into(),
    })
    .expect("config");
    for agent in [
        chain,
        any(),
        AgentTls::new(Trust::Pinned(key)).expect("config"),
    ] {
        let mut net = Net::new();
        let (a, r) = both(connect(&mut net, &relay, &agent));
        assert_eq!(a.peer_fingerprint(), Some(key));
        assert_eq!(a.exporter(), r.exporter());
    }
}

#[test]
fn a_relay_key_file_without_a_certificate_is_a_pinnable_raw_key() {
    let relay = RelayTls::from_key_pem(RELAY_KEY).expect("key");
    let key = Fingerprint::parse(RELAY_CERT_KEY).expect("hex");
    assert_eq!(
        relay.fingerprint(),
        key,
        "the same key as the certificate's"
    );
    let mut net = Net::new();
    let pinned = AgentTls::new(Trust::Pinned(key)).expect("config");
    let (a, _r) = both(connect(&mut net, &relay, &pinned));
    assert_eq!(a.peer_fingerprint(), Some(key));
    assert!(matches!(
        RelayTls::from_key_pem(RELAY_CERT),
        Err(TlsError::Pem("private key"))
    ));
}

#[test]
fn a_chain_is_refused_for_another_name_or_without_a_certificate() {
    let wrong_name = AgentTls::new(Trust::Authority {
        roots_pem: CA.to_vec(),
        name: "other.test".into(),
    })
    .expect("config");
    let relay = RelayTls::from_pem(RELAY_CERT, RELAY_KEY).expect("relay");
    let mut net = Net::new();
    let (a, _) = connect(&mut net, &relay, &wrong_name);
    assert!(matches!(a, Err(HandshakeError::Tls(_))), "{:?}", a.err());

    // A relay with a generated key has no chain to show.
    let right_name = AgentTls::new(Trust::Authority {
        roots_pem: CA.to_vec(),
        name: "relay.test".into(),
    })
    .expect("config");
    let bare = RelayTls::generate().expect("key");
    let mut net = Net::new();
    let (a, r) = connect(&mut net, &bare, &right_name);
    assert!(a.is_err() && matches!(r, Err(HandshakeError::Tls(_))));
}

#[test]
fn bad_pem_inputs_are_refused() {
    assert!(matches!(
        RelayTls::from_pem(b"", RELAY_KEY),
        Err(TlsError::Pem("certificate"))
    ));
    assert!(matches!(
        RelayTls::from_pem(RELAY_CERT, b"junk"),
        Err(TlsError::Pem("private key"))
    ));
    assert!(
        matches!(RelayTls::from_pem(CA, RELAY_KEY), Err(TlsError::Rustls(_))),
        "a key that is not the certificate's"
    );
    let no_roots = AgentTls::new(Trust::Authority {
        roots_pem: Vec::new(),
        name: "relay.test".into(),
    });
    assert!(matches!(no_roots, Err(TlsError::Pem("CA certificate"))));
}

#[test]
fn fingerprints_read_back_what_they_print() {
    let f = Fingerprint::of_key(b"key");
    let text = f.to_string();
    assert!(text.starts_with("sha256:") && text.len() == 7 + 64);
    assert_eq!(Fingerprint::parse(&text), Some(f));
    let upper_pairs = text.as_bytes()[7..]
        .chunks(2)
        .map(|p| String::from_utf8_lossy(p).to_uppercase())
        .collect::<Vec<_>>()
        .join(":");
    assert_eq!(Fingerprint::parse(&upper_pairs), Some(f));
    for bad in [
        "",
        "sha256:",
        &text[..70],
        &format!("{text}0"),
        &text.replace('a', "g"),
    ] {
        assert_eq!(Fingerprint::parse(bad), None, "{bad:?}");
    }
}
