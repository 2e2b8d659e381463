//! Tunnel state machines against each other over scripted streams, with virtual time.

use std::time::{Duration, Instant};

use super::*;
use crate::core::scripted::{ReadStep, Scripted};
use crate::core::stream::Readiness;
use crate::proto::auth::{Channel, Secret};
use crate::proto::tunnel::{self, frame};

const POLICY: TunnelPolicy = TunnelPolicy {
    handshake_timeout: Duration::from_secs(5),
    heartbeat_interval: Duration::from_secs(20),
    heartbeat_timeout: Duration::from_secs(60),
};
const ALL: Readiness = Readiness {
    readable: true,
    writable: true,
    read_closed: false,
};

fn secret(fill: u8) -> Secret {
    Secret::from_file_contents(&[fill; 40]).expect("valid")
}

fn services() -> Vec<String> {
    vec!["ssh".to_string()]
}

/// Moves what `from` wrote since last time into `to`'s read script.
fn carry(from: &mut Scripted, to: &mut Scripted) {
    let bytes = std::mem::take(&mut from.written);
    if !bytes.is_empty() {
        to.send(&bytes);
    }
}

struct Pair {
    relay: RelayTunnel<Scripted>,
    agent: AgentTunnel<Scripted>,
    now: Instant,
}

impl Pair {
    fn new(service: &str) -> Pair {
        let now = Instant::now();
        Pair {
            relay: RelayTunnel::new(Scripted::sink(), [1; 32], now),
            agent: AgentTunnel::new(Scripted::sink(), service, [2; 32], now),
            now,
        }
    }

    /// Each side on a channel of its own (the same one: a direct connection; two TLS
    /// channels: a man in the middle relaying bytes between its two legs).
    fn on(relay: Channel, agent: Channel) -> Pair {
        let now = Instant::now();
        Pair {
            relay: RelayTunnel::bound(Scripted::sink(), relay, [1; 32], now),
            agent: AgentTunnel::bound(Scripted::sink(), agent, "ssh", [2; 32], now),
            now,
        }
    }

    /// Runs the handshake with the given secrets; returns the last steps of each side.
    fn handshake(
        &mut self,
        relay_secret: &Secret,
        agent_secret: &Secret,
    ) -> (TunnelStep, TunnelStep) {
        let (mut r, mut a) = (TunnelStep::Waiting, TunnelStep::Waiting);
        for _ in 0..4 {
            self.relay.on_event(ALL);
            r = self.relay.drive(self.now, relay_secret, &services());
            if let TunnelStep::Authenticated(_) = r {
                self.relay.admit(self.now, relay_secret);
            }
            carry(self.relay.stream(), self.agent.stream());
            self.agent.on_event(ALL);
            a = self.agent.drive(self.now, agent_secret);
            carry(self.agent.stream(), self.relay.stream());
            if matches!(a, TunnelStep::Authenticated(_) | TunnelStep::Closed(_)) {
                break;
            }
        }
        (r, a)
    }
}

// ---- handshake ----

#[test]
fn same_secret_authenticates_both_sides() {
    let mut p = Pair::new("ssh");
    let (_, agent) = p.handshake(&secret(1), &secret(1));
    assert_eq!(agent, TunnelStep::Authenticated("ssh".into()));
    assert!(p.relay.is_idle());
}

#[test]
fn one_tls_channel_authenticates_both_sides() {
    let tls = Channel::Tls([5; 32]);
    let mut p = Pair::on(tls, tls);
    let (_, agent) = p.handshake(&secret(1), &secret(1));
    assert_eq!(agent, TunnelStep::Authenticated("ssh".into()));
    assert!(p.relay.is_idle());
}

#[test]
fn proofs_relayed_between_two_tls_channels_are_refused() {
    let mut p = Pair::on(Channel::Tls([5; 32]), Channel::Tls([6; 32]));
    let (relay, agent) = p.handshake(&secret(1), &secret(1));
    assert_eq!(relay, TunnelStep::Closed(TunnelEnd::AuthFailed));
    assert_eq!(agent, TunnelStep::Closed(TunnelEnd::Denied));
}

#[test]
fn a_relay_proof_from_another_channel_is_caught_by_the_agent() {
    let (ours, theirs) = (Channel::Tls([5; 32]), Channel::Tls([6; 32]));
    let now = Instant::now();
    let mut agent = AgentTunnel::bound(Scripted::sink(), ours, "ssh", [2; 32], now);
    agent.stream().send(&tunnel::challenge(&ours, &[1; 32]));
    agent.on_event(ALL);
    agent.drive(now, &secret(1));
    let hello = tunnel::Hello {
        agent_nonce: [2; 32],
        service: "ssh".into(),
        proof: [0; 32],
    };
    // The real relay's proof, made on the attacker's other leg.
    agent
        .stream()
        .send(&tunnel::welcome(&secret(1), &theirs, &[1; 32], &hello));
    agent.on_event(ALL);
    assert_eq!(
        agent.drive(now, &secret(1)),
        TunnelStep::Closed(TunnelEnd::AuthFailed)
    );
}

#[test]
fn plain_and_tls_versions_do_not_mix() {
    let mut p = Pair::on(Channel::Tls([5; 32]), Channel::Plain);
    let (_, agent) = p.handshake(&secret(1), &secret(1));
    assert_eq!(agent, TunnelStep::Closed(TunnelEnd::ProtocolError));
    let mut p = Pair::on(Channel::Plain, Channel::Tls([5; 32]));
    let (_, agent) = p.handshake(&secret(1), &secret(1));
    assert_eq!(agent, TunnelStep::Closed(TunnelEnd::ProtocolError));
}

#[test]
fn wrong_secret_is_denied_without_detail() {
    let mut p = Pair::new("ssh");
    let (relay, agent) = p.handshake(&secret(1), &secret(2));
    assert_eq!(relay, TunnelStep::Closed(TunnelEnd::AuthFailed));
    assert_eq!(agent, TunnelStep::Closed(TunnelEnd::Denied));
}

#[test]
fn unknown_service_is_denied_like_a_wrong_secret() {
    let mut p = Pair::new("db");
    let (relay, agent) = p.handshake(&secret(1), &secret(1));
    assert_eq!(relay, TunnelStep::Closed(TunnelEnd::AuthFailed));
    assert_eq!(agent, TunnelStep::Closed(TunnelEnd::Denied));
}

#[test]
fn relay_without_the_secret_is_caught_by_the_agent() {
    let mut p = Pair::new("ssh");
    let now = p.now;
    p.relay.on_event(ALL);
    p.relay.drive(now, &secret(1), &services());
    carry(p.relay.stream(), p.agent.stream());
    p.agent.on_event(ALL);
    p.agent.drive(now, &secret(1));
    // A fake relay answers WELCOME with a proof it cannot make.
    let mut fake = vec![frame::WELCOME];
    fake.extend_from_slice(&[0u8; 32]);
    p.agent.stream().send(&fake);
    p.agent.on_event(ALL);
    assert_eq!(
        p.agent.drive(now, &secret(1)),
        TunnelStep::Closed(TunnelEnd::AuthFailed)
    );
}

#[test]
fn garbage_is_a_protocol_error_and_gets_denied() {
    let now = Instant::now();
    let mut relay = RelayTunnel::new(Scripted::sink(), [1; 32], now);
    relay.stream().send(b"GET / HTTP/1.1\r\n\r\n");
    relay.on_event(ALL);
    let step = relay.drive(now, &secret(1), &services());
    assert_eq!(step, TunnelStep::Closed(TunnelEnd::ProtocolError));
    assert_eq!(relay.stream().written.last(), Some(&frame::DENIED));
}

#[test]
fn a_trickle_does_not_extend_the_handshake_deadline() {
    let now = Instant::now();
    let mut relay = RelayTunnel::new(Scripted::sink(), [1; 32], now);
    let mut t = now;
    for b in b"TCPB\x01" {
        t += Duration::from_millis(900);
        relay.stream().send(&[*b]);
        relay.on_event(ALL);
        assert_eq!(relay.drive(t, &secret(1), &services()), TunnelStep::Waiting);
        assert_eq!(relay.expire(t, &POLICY), TunnelStep::Waiting);
    }
    assert_eq!(relay.deadline(&POLICY), now + POLICY.handshake_timeout);
    assert_eq!(
        relay.expire(now + POLICY.handshake_timeout, &POLICY),
        TunnelStep::Closed(TunnelEnd::HandshakeTimeout)
    );
}

#[test]
fn peer_closing_mid_handshake_is_lost() {
    let now = Instant::now();
    let mut relay = RelayTunnel::new(Scripted::sink(), [1; 32], now);
    relay.stream().send(b"TCP").then(ReadStep::Eof);
    relay.on_event(ALL);
    assert_eq!(
        relay.drive(now, &secret(1), &services()),
        TunnelStep::Closed(TunnelEnd::Lost)
    );
}

// ---- idle ----

#[test]
fn idle_tunnels_send_heartbeats_and_die_without_them() {
    let mut p = Pair::new("ssh");
    p.handshake(&secret(1), &secret(1));
    let t0 = p.now;
    p.relay.stream().written.clear();
    assert_eq!(p.relay.deadline(&POLICY), t0 + POLICY.heartbeat_interval);
    assert_eq!(
        p.relay.expire(t0 + POLICY.heartbeat_interval, &POLICY),
        TunnelStep::Waiting
    );
    assert_eq!(p.relay.stream().written, [frame::HEARTBEAT]);
    assert_eq!(
        p.relay.expire(t0 + POLICY.heartbeat_timeout, &POLICY),
        TunnelStep::Closed(TunnelEnd::HeartbeatTimeout)
    );
}

#[test]
fn heard_heartbeats_keep_a_tunnel_alive() {
    let mut p = Pair::new("ssh");
    p.handshake(&secret(1), &secret(1));
    let later = p.now + Duration::from_secs(50);
    p.relay.stream().send(&[frame::HEARTBEAT]);
    p.relay.on_event(ALL);
    p.relay.drive(later, &secret(1), &services());
    assert_eq!(
        p.relay.expire(p.now + POLICY.heartbeat_timeout, &POLICY),
        TunnelStep::Waiting
    );
}

#[test]
fn agent_sees_attach_and_leaves_the_raw_bytes_unread() {
    let mut p = Pair::new("ssh");
    p.handshake(&secret(1), &secret(1));
    let (attach, n) = tunnel::attach("192.0.2.7:4242".parse().expect("addr"));
    let mut wire = vec![frame::HEARTBEAT];
    wire.extend_from_slice(&attach[..n]);
    wire.extend_from_slice(b"client bytes");
    p.agent.stream().send(&wire);
    let before = p.agent.stream().read_total;
    p.agent.on_event(ALL);
    assert_eq!(
        p.agent.drive(p.now, &secret(1)),
        TunnelStep::Attached("192.0.2.7:4242".parse().expect("addr"))
    );
    assert_eq!(p.agent.stream().read_total - before, 1 + n);
}

#[test]
fn agent_connect_failure_is_reported() {
    let now = Instant::now();
    let mut s = Scripted::sink();
    s.connect
        .push_back(crate::core::scripted::failed(ConnectFailure::Refused));
    let mut agent = AgentTunnel::new(s, "ssh", [2; 32], now);
    agent.on_event(ALL);
    assert_eq!(
        agent.drive(now, &secret(1)),
        TunnelStep::Closed(TunnelEnd::ConnectFailed(ConnectFailure::Refused))
    );
}
