//! Fault matrix B8 and B9 (RELIABILITY.md §4.2) for the one handshake
//! tcpbridge has, the relay's tunnel hello: a trickled hello (slowloris) and
//! a flood of silent tunnel connections, each scenario ending with the common
//! invariants ([`FaultProxy::assert_invariants`]) on a process whose `main`
//! listener is a relay.
//!
//! B9 runs on both data paths (`::copy`, `::splice`): a live session echoes
//! through the flood. B8 moves no byte through a session and runs once.
//!
//! Contract (README, relay options): a tunnel handshake is bounded by
//! `handshake_timeout`, absolute from accept; at most `max_handshakes` run at
//! once and more are closed at once; sessions of other listeners are not
//! disturbed.

use crate::support::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// Settle bound of the invariant checks.
const SETTLE: Duration = Duration::from_secs(10);
/// A timeout of 1 s must not fire before this.
const NOT_BEFORE: Duration = Duration::from_millis(800);

/// Lines of a relay `main` listener with a secret in `dir`.
fn relay_lines(dir: &SecretDir, extra: &[&str]) -> Vec<String> {
    let secret = dir.file("secret", SECRET.as_bytes());
    let mut v = vec![
        "tunnel_listen = \"127.0.0.1:0\"".to_string(),
        format!("public = {{ {SERVICE} = \"127.0.0.1:0\" }}"),
        format!("secret_file = \"{}\"", secret.display()),
        "handshake_timeout = \"1s\"".to_string(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    // Plain tunnels in a build without TLS (unless the test chose).
    if cfg!(not(feature = "tls")) && !v.iter().any(|l| l.starts_with("tunnel_tls ")) {
        v.push("tunnel_tls = \"off\"".to_string());
    }
    v
}

/// B8: a tunnel hello trickled one byte every 200 ms (a valid prefix; the
/// whole hello would take ~15 s): the relay closes it 0.8 s to 2.5 s after
/// accept (`handshake_timeout = "1s"`, not extended by the trickle), counts a
/// failed handshake and its handshake gauge returns to 0.
#[test]
fn trickled_tunnel_hello_is_closed_at_handshake_timeout() {
    watchdog(|| {
        let dir = SecretDir::new();
        // Plain tunnels: the test trickles a version 1 hello by hand.
        let lines = relay_lines(&dir, &["tunnel_tls = \"off\""]);
        let mut fp = FaultProxy::start(dir, "relay", &lines, "main.tunnel");
        let t0 = Instant::now();
        let mut s = connect(fp.main);
        let mut challenge = [0u8; CHALLENGE_LEN];
        s.read_exact(&mut challenge).expect("relay challenge");
        let mut w = s.try_clone().expect("clone the tunnel socket");
        let trickle = thread::spawn(move || {
            let mut hello = MAGIC_V1.to_vec();
            hello.extend([0u8; 70]);
            for b in hello {
                if w.write_all(&[b]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(200)); // the trickle's pace
            }
        });
        let end = read_end(&mut s);
        let took = t0.elapsed();
        assert!(
            !matches!(end, End::TimedOut),
            "relay kept the trickle for {IO_TIMEOUT:?}"
        );
        assert!(
            took >= NOT_BEFORE && took < Duration::from_millis(2500),
            "closed after {took:?}, want about 1 s"
        );
        let _ = trickle.join();
        let failures = fp.metric(
            "tcpbridge_handshake_failures_total",
            &[("listener", "main")],
        );
        assert!(failures >= 1.0, "handshake failures counted: {failures}");
        fp.assert_invariants(SETTLE);
    });
}

/// B9: 500 tunnel connections that send nothing, with `max_handshakes = 32`:
/// the handshake gauge is never above 32 (and not always 0), all 500 are
/// closed within 5 s (the excess at once, the rest at the 1 s handshake
/// timeout), and a session through `probe` keeps its round trips under 1 s
/// throughout.
fn tunnel_handshake_flood_is_bounded_and_spares_live_sessions() {
    watchdog(|| {
        const FLOOD: usize = 500;
        let dir = SecretDir::new();
        let lines = relay_lines(&dir, &["max_handshakes = 32"]);
        let mut fp = FaultProxy::start(dir, "relay", &lines, "main.tunnel");
        let mut live = connect(fp.probe);
        let mut worst = Duration::ZERO;
        let mut ping = |live: &mut TcpStream| {
            let (_, rtt) = timed(|| echo_roundtrip(live, &pattern(9, 64)));
            worst = worst.max(rtt);
        };
        let mut flood = Vec::with_capacity(FLOOD);
        let mut most = 0.0f64;
        for i in 0..FLOOD {
            flood.push(connect(fp.main));
            if i % 50 == 0 {
                ping(&mut live);
                most = most.max(fp.metric("tcpbridge_tunnel_handshakes", &[("listener", "main")]));
            }
        }
        assert!(
            (1.0..=32.0).contains(&most),
            "{most} handshakes at once with max_handshakes = 32"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        for (i, s) in flood.iter_mut().enumerate() {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            s.set_read_timeout(Some(left)).expect("set_read_timeout");
            let mut sink = [0u8; 64];
            let ended = loop {
                match s.read(&mut sink) {
                    Ok(0) => break true,
                    Ok(_) => continue, // the challenge
                    Err(e) => {
                        break !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
                    }
                }
            };
            assert!(ended, "flood connection {i} still open 5 s after the flood");
            if i % 100 == 0 {
                ping(&mut live);
            }
        }
        ping(&mut live);
        assert!(
            worst < Duration::from_secs(1),
            "a live round trip took {worst:?} during the flood"
        );
        live.shutdown(Shutdown::Write)
            .expect("live: shutdown(Write)");
        assert!(
            matches!(read_end(&mut live), End::Eof),
            "live session did not end cleanly"
        );
        drop(flood);
        fp.assert_invariants(SETTLE);
    });
}
both_paths!(tunnel_handshake_flood_is_bounded_and_spares_live_sessions);
