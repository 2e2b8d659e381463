//! What a relay counts against a source address, and what it does at the limit:
//! connections closed before answering are not failures (a burst lost in the listen
//! queue must not lock an agent out); handshakes held silent to their deadline are; a
//! source that authenticated a tunnel recently is slowed over the limit, never refused,
//! so a stranger behind the agent's NAT address cannot lock it out. Hostile sources are
//! 127.0.0.3 and .4; the agent is 127.0.0.1.

use crate::support::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Reads the relay's challenge on a fresh connection from `from`: true when it came.
fn challenged(from: &str, tunnel: std::net::SocketAddr) -> bool {
    let mut s = connect_from(from, tunnel);
    let mut c = [0u8; CHALLENGE_LEN];
    s.read_exact(&mut c).is_ok()
}

fn relay_alone(extra: &[&str]) -> (SecretDir, Proxy, std::net::SocketAddr) {
    let dir = SecretDir::new();
    let secret = dir.file("secret", format!("{SECRET}\n").as_bytes());
    let (relay, tunnel, _) = spawn_relay(&secret, "127.0.0.1:0", "127.0.0.1:0", &owned(extra));
    (dir, relay, tunnel)
}

#[test]
fn peers_that_close_before_answering_are_not_counted() {
    watchdog(|| {
        let (_dir, relay, tunnel) = relay_alone(&["--metrics-listen", "127.0.0.1:0"]);
        let metrics = relay.field_addr("metrics");
        for i in 0..30 {
            let mut s = connect_from("127.0.0.3", tunnel);
            if i % 2 == 0 {
                // Half of them read the challenge first, then leave.
                let mut c = [0u8; CHALLENGE_LEN];
                s.read_exact(&mut c).expect("a challenge");
            }
            drop(s);
        }
        // All thirty ended in the relay (counted as handshake failures in its metrics).
        let ended = wait_for(Duration::from_secs(10), || {
            metric_total(metrics, "tcpbridge_handshake_failures_total") >= 30.0
        });
        assert!(ended, "{}", relay.stderr());
        assert!(
            challenged("127.0.0.3", tunnel),
            "thirty peers that left are not thirty failures:\n{}",
            relay.stderr()
        );
    });
}

#[test]
fn handshakes_held_silent_to_their_deadline_are_counted() {
    watchdog(|| {
        let (_dir, relay, tunnel) = relay_alone(&["--handshake-timeout", "1s"]);
        let mut silent = Vec::new();
        for _ in 0..10 {
            let mut s = connect_from("127.0.0.4", tunnel);
            let mut c = [0u8; CHALLENGE_LEN];
            s.read_exact(&mut c).expect("a challenge");
            silent.push(s);
        }
        for mut s in silent {
            let end = read_end(&mut s);
            assert!(
                matches!(end, End::Eof | End::Reset),
                "closed at the deadline: {end:?}"
            );
        }
        let mut refused = connect_from("127.0.0.4", tunnel);
        let (got, end) = recv_all(&mut refused, 64);
        assert!(
            got.is_empty() && matches!(end, End::Eof | End::Reset),
            "the eleventh got {} bytes ({end:?}):\n{}",
            got.len(),
            relay.stderr()
        );
        assert!(
            challenged("127.0.0.3", tunnel),
            "other sources are not touched"
        );
    });
}

/// The agent's address (127.0.0.1) authenticated; ten failed handshakes from it (a
/// stranger behind the same NAT address, say) slow its next handshakes by about a
/// second instead of refusing them, and the agent keeps serving.
#[test]
fn a_source_that_authenticated_is_slowed_not_refused() {
    watchdog(|| {
        let up = echo_server();
        let mut chain = Chain::builder(up.addr).pool(1).warm();
        for i in 0..10 {
            let mut s = connect_from("127.0.0.1", chain.tunnel);
            let mut c = [0u8; CHALLENGE_LEN];
            s.read_exact(&mut c)
                .unwrap_or_else(|e| panic!("attempt {i}: no challenge: {e}"));
            let _ = s.write_all(&[b'X'; 80]);
            let _ = read_answer(&mut s, Duration::from_secs(5));
        }
        let started = Instant::now();
        assert!(
            challenged("127.0.0.1", chain.tunnel),
            "a trusted source is slowed, not refused:\n{}",
            chain.relay.stderr()
        );
        eprintln!(
            "challenge after {:?} (slowed by about 1 s)",
            started.elapsed()
        );
        echo_once(chain.public);
        chain.assert_quiescent(Duration::from_secs(10));
    });
}
