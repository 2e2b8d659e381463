//! NAT traversal, authentication and handshake hardening on the relay's
//! tunnel port, plus the secret file and `gen-secret`.
//!
//! Contract: an agent proves it knows the shared secret with
//! HMAC-SHA256 over the relay's fresh nonce, so a wrong secret, replayed
//! handshake bytes and a service the relay does not expose are refused
//! (DENIED or a plain close, never saying which check failed) and logged
//! (`authentication failed` / `handshake failed` with the source address).
//! Bad magic, bad version, an oversize name length, a truncated hello and a
//! trickle are closed within `--handshake-timeout` (absolute from accept).
//! A secret file that is missing, empty or under 32 bytes stops relay and
//! agent at start with exit code 2 and one `error:` line.
//!
//! The raw hellos are computed here (see `support/nat.rs`); each negative
//! check has a positive twin built the same way, so a broken test hello
//! cannot pass for a rejection.

use crate::support::*;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// How long after accept a malformed handshake may stay open: the 1 s
/// handshake timeout plus a generous margin for 2 loaded cores.
const CLOSE_BOUND: Duration = Duration::from_millis(2500);
const SETTLE: Duration = Duration::from_secs(5);

/// A fixed agent nonce for the hand-built hellos.
fn agent_nonce(seed: u64) -> [u8; 32] {
    pattern(seed, 32).try_into().expect("32 bytes")
}

/// A chain whose relay has `--handshake-timeout 1s`, warmed up; plain tunnels (the
/// probes speak protocol version 1 by hand).
fn strict_chain() -> (Upstream, Chain) {
    let up = echo_server();
    let chain = Chain::builder(up.addr)
        .relay(&["--handshake-timeout", "1s", "--tunnel-tls", "off"])
        .agent(&["--tunnel-tls", "off"])
        .warm();
    (up, chain)
}

/// Opens a raw connection to the relay's tunnel port of a live chain, reads
/// the challenge, lets `send` misbehave, and expects the relay to close it
/// (DENIED or not) within [`CLOSE_BOUND`] of the connect; then the failure
/// is logged with the source address, the relay did not panic, a fresh echo
/// through the chain still works and both processes are quiescent.
/// Returns how long the connection lived.
fn malformed(send: impl FnOnce(&mut TcpStream, &[u8; 32]) -> Answer) -> Duration {
    let (up, mut chain) = strict_chain();
    let t0 = Instant::now();
    let (mut s, nonce) = open_probe(chain.tunnel);
    let src = s.local_addr().expect("probe local_addr");
    let answer = send(&mut s, &nonce);
    let lived = t0.elapsed();
    assert!(
        matches!(answer, Answer::Closed | Answer::Denied),
        "relay should close the malformed handshake (DENIED or not), got {answer:?} after {lived:?}\n{}",
        chain.relay.dump()
    );
    assert!(
        lived <= CLOSE_BOUND,
        "closed only after {lived:?}, want <= {CLOSE_BOUND:?}"
    );
    drop(s);
    assert!(
        failure_line(&chain.relay, src, SETTLE).is_some(),
        "relay should log `handshake failed` or `authentication failed` with {src}\n{}",
        chain.relay.stderr()
    );
    chain.relay.assert_no_panic();
    echo_once(chain.public);
    chain.assert_quiescent(SETTLE);
    up.assert_no_handler_panics();
    lived
}

/// Writes `bytes` (the relay may already be gone) and reads its answer.
fn send_and_read(s: &mut TcpStream, bytes: &[u8]) -> Answer {
    let _ = try_send(s, bytes);
    read_answer(s, CLOSE_BOUND)
}

/// A hello whose first bytes are not `TCPB`.
#[test]
fn bad_magic_is_closed_within_handshake_timeout() {
    watchdog(|| {
        malformed(|s, n| {
            let mut h = hello_bytes(SECRET.as_bytes(), n, &agent_nonce(1), SERVICE.as_bytes());
            h[..4].copy_from_slice(b"HTTP");
            send_and_read(s, &h)
        });
    });
}

/// A hello with version 2.
#[test]
fn bad_version_is_closed_within_handshake_timeout() {
    watchdog(|| {
        malformed(|s, n| {
            let mut h = hello_bytes(SECRET.as_bytes(), n, &agent_nonce(2), SERVICE.as_bytes());
            h[4] = 2;
            send_and_read(s, &h)
        });
    });
}

/// A name length of 200 (the maximum is 64), followed by 200 name bytes and
/// a proof, as if the length were real.
#[test]
fn oversize_name_length_is_closed_within_handshake_timeout() {
    watchdog(|| {
        malformed(|s, n| {
            let name = vec![b'a'; 200];
            let h = hello_bytes(SECRET.as_bytes(), n, &agent_nonce(3), &name);
            assert_eq!(h[37], 200, "length byte");
            send_and_read(s, &h)
        });
    });
}

/// The first 20 bytes of a valid hello, then FIN: the relay closes its side
/// too (no CLOSE-WAIT left behind, checked by the quiescence).
#[test]
fn truncated_hello_then_close_is_closed() {
    watchdog(|| {
        malformed(|s, n| {
            let h = hello_bytes(SECRET.as_bytes(), n, &agent_nonce(4), SERVICE.as_bytes());
            let _ = try_send(s, &h[..20]);
            s.shutdown(Shutdown::Write).expect("probe shutdown(Write)");
            read_answer(s, CLOSE_BOUND)
        });
    });
}

/// A valid hello sent one byte every 200 ms (it would take ~15 s): the
/// handshake timeout counts from accept, so the relay closes it at ~1 s.
#[test]
fn one_byte_every_200ms_is_closed_at_handshake_timeout() {
    watchdog(|| {
        let lived = malformed(|s, n| {
            let h = hello_bytes(SECRET.as_bytes(), n, &agent_nonce(5), SERVICE.as_bytes());
            for b in &h {
                if try_send(s, std::slice::from_ref(b)).is_err() {
                    return read_answer(s, Duration::from_secs(1));
                }
                // Pacing: the 200 ms read timeout is the trickle's clock.
                match read_answer(s, Duration::from_millis(200)) {
                    Answer::Silent => {}
                    other => return other,
                }
            }
            Answer::Other("the whole hello trickled in without a close".into())
        });
        assert!(
            lived >= Duration::from_millis(800),
            "a valid trickle was closed after {lived:?}: before the 1 s handshake timeout"
        );
    });
}

/// An agent with another secret never gets READY, the relay logs an
/// authentication failure and a public client gets no service: it is closed
/// at the 1 s pair timeout and the service never sees a connection. The
/// same relay then serves an agent with the right secret.
#[test]
fn wrong_secret_is_rejected_and_client_gets_no_service() {
    watchdog(|| {
        let up = echo_server();
        let dir = SecretDir::new();
        let good = dir.file("good", format!("{SECRET}\n").as_bytes());
        let bad = dir.file("bad", format!("{OTHER_SECRET}\n").as_bytes());
        let relay_extra = owned(&["--pair-timeout", "1s"]);
        let (mut relay, tunnel, public) =
            spawn_relay(&good, "127.0.0.1:0", "127.0.0.1:0", &relay_extra);
        let relay_base = settle(&relay, "relay", 0);

        // One tunnel at a time and the default backoff: a handful of failed
        // attempts while this test watches, below any per-source block.
        let args = agent_args(tunnel, up.addr, &bad, &owned(&["--pool", "1"]));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let launched = Instant::now();
        let (wrong, first_line) = Proxy::launch(&refs);
        let any_port = "127.0.0.1:0".parse().expect("addr");
        assert!(
            failure_line(&relay, any_port, SETTLE).is_some(),
            "relay should log an authentication failure with the agent's address\n{}",
            relay.stderr()
        );

        let mut c = connect(public);
        let (end, took) = timed(|| read_end(&mut c));
        assert!(
            matches!(end, End::Eof | End::Reset),
            "public client should be closed at the pair timeout, got {end:?}\n{}",
            relay.stderr()
        );
        assert!(
            took >= Duration::from_millis(800) && took <= Duration::from_secs(4),
            "public client closed after {took:?}, want ~1 s (pair timeout)"
        );
        let no_ready = (launched + Duration::from_millis(2500))
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(200));
        if let Ok(l) = first_line.recv_timeout(no_ready) {
            panic!(
                "agent with a wrong secret printed {l:?}\n{}",
                wrong.stderr()
            );
        }
        assert_eq!(up.accepted(), 0, "the service must see no connection");
        drop(c);

        wrong.assert_no_panic();
        drop(wrong);
        assert_settled(&mut relay, "relay", relay_base, 0, SETTLE);

        let mut agent = spawn_agent(tunnel, up.addr, &good, &owned(&["--pool", "2"]));
        echo_once(public);
        relay.assert_alive();
        agent.assert_alive();
        let relay_base = settle(&relay, "relay", 2);
        let agent_base = settle(&agent, "agent", 2);
        echo_once(public);
        assert_settled(&mut relay, "relay", relay_base, 2, SETTLE);
        assert_settled(&mut agent, "agent", agent_base, 2, SETTLE);
    });
}

/// A relay alone (no agent), its baseline, and its tunnel address; plain tunnels (the
/// probes speak protocol version 1 by hand).
fn lone_relay(dir: &SecretDir) -> (Proxy, usize, std::net::SocketAddr) {
    let secret = dir.file("secret", format!("{SECRET}\n").as_bytes());
    let plain = owned(&["--tunnel-tls", "off"]);
    let (relay, tunnel, _public) = spawn_relay(&secret, "127.0.0.1:0", "127.0.0.1:0", &plain);
    let base = settle(&relay, "relay", 0);
    (relay, base, tunnel)
}

/// A hello computed for the current nonce is WELCOMEd (with the relay's own
/// proof); the very same bytes sent on a new connection, which gets a fresh
/// nonce, are refused and logged.
#[test]
fn replayed_hello_is_rejected_while_fresh_one_is_welcomed() {
    watchdog(|| {
        let dir = SecretDir::new();
        let (mut relay, base, tunnel) = lone_relay(&dir);
        let key = SECRET.as_bytes();
        let an = agent_nonce(6);

        let (mut first, n1) = open_probe(tunnel);
        let hello = hello_bytes(key, &n1, &an, SERVICE.as_bytes());
        first.write_all(&hello).expect("send hello");
        match read_answer(&mut first, SETTLE) {
            Answer::Welcome(p) => assert!(
                p == relay_proof(key, &n1, &an, SERVICE.as_bytes()),
                "WELCOME carries a wrong relay proof"
            ),
            other => panic!(
                "a correct hello should get WELCOME, got {other:?}\n{}",
                relay.stderr()
            ),
        }

        let (mut second, n2) = open_probe(tunnel);
        assert_ne!(n1, n2, "each connection must get a fresh nonce");
        let src = second.local_addr().expect("local_addr");
        let answer = send_and_read(&mut second, &hello);
        assert!(
            matches!(answer, Answer::Denied | Answer::Closed),
            "replayed hello must be refused, got {answer:?}"
        );
        assert!(
            failure_line(&relay, src, SETTLE).is_some(),
            "relay should log the failed replay from {src}\n{}",
            relay.stderr()
        );
        drop((first, second));
        assert_settled(&mut relay, "relay", base, 0, SETTLE);
    });
}

/// A hello with a valid proof for a service the relay does not expose is
/// refused exactly like a wrong proof (same answer, a log line); the same
/// construction for the relay's service is WELCOMEd.
#[test]
fn unknown_service_is_rejected_like_a_wrong_secret() {
    watchdog(|| {
        let dir = SecretDir::new();
        let (mut relay, base, tunnel) = lone_relay(&dir);
        let key = SECRET.as_bytes();

        let (mut unknown, n) = open_probe(tunnel);
        let src = unknown.local_addr().expect("local_addr");
        let a_unknown = send_and_read(
            &mut unknown,
            &hello_bytes(key, &n, &agent_nonce(7), b"nosuch"),
        );
        assert!(
            matches!(a_unknown, Answer::Denied | Answer::Closed),
            "unknown service must be refused, got {a_unknown:?}"
        );
        assert!(
            failure_line(&relay, src, SETTLE).is_some(),
            "relay should log the refusal of {src}\n{}",
            relay.stderr()
        );

        let (mut wrong, n) = open_probe(tunnel);
        let wrong_hello = hello_bytes(OTHER_SECRET.as_bytes(), &n, &agent_nonce(8), b"svc");
        let a_wrong = send_and_read(&mut wrong, &wrong_hello);
        assert_eq!(
            a_unknown, a_wrong,
            "the answer must not tell an unknown service from a wrong secret"
        );

        let (mut known, n) = open_probe(tunnel);
        let ok = send_and_read(&mut known, &hello_bytes(key, &n, &agent_nonce(9), b"svc"));
        assert!(
            matches!(ok, Answer::Welcome(_)),
            "the same hello for `{SERVICE}` should be WELCOMEd, got {ok:?}"
        );
        drop((unknown, wrong, known));
        assert_settled(&mut relay, "relay", base, 0, SETTLE);
    });
}

/// `gen-secret` prints 64 lowercase hex characters and a newline, exit 0,
/// different each time.
#[test]
fn gen_secret_prints_64_lowercase_hex_chars() {
    watchdog(|| {
        let runs: Vec<CliRun> = (0..2)
            .map(|_| run_cli(&["gen-secret"], Duration::from_secs(5)))
            .collect();
        for r in &runs {
            assert_eq!(r.status.and_then(|s| s.code()), Some(0), "{r:?}");
            let hex = r
                .stdout
                .strip_suffix('\n')
                .unwrap_or_else(|| panic!("{r:?}"));
            assert!(
                hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                "want 64 lowercase hex chars and a newline, got {:?}",
                r.stdout
            );
        }
        assert_ne!(runs[0].stdout, runs[1].stdout, "two secrets must differ");
    });
}

/// Missing, empty, blank, 31-byte and padded 31-byte secret files: relay and
/// agent each exit 2 with exactly one `error:` line and no READY. A 32-byte
/// secret starts both.
#[test]
fn missing_empty_or_short_secret_file_exits_2() {
    watchdog(|| {
        let dir = SecretDir::new();
        let short = "s".repeat(31);
        let cases = [
            ("missing", dir.missing()),
            ("empty", dir.file("empty", b"")),
            ("blank", dir.file("blank", b" \n\t\n")),
            (
                "31 bytes",
                dir.file("short", format!("{short}\n").as_bytes()),
            ),
            (
                "31 bytes padded",
                dir.file("padded", format!("  {short}  \n").as_bytes()),
            ),
        ];
        let nowhere = "127.0.0.1:9".parse().expect("addr");
        for (what, path) in &cases {
            for args in [
                relay_args("127.0.0.1:0", "127.0.0.1:0", path, &[]),
                agent_args(nowhere, nowhere, path, &[]),
            ] {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                let r = run_cli(&refs, Duration::from_secs(5));
                let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
                assert_eq!(r.status.and_then(|s| s.code()), Some(2), "{what}: {r:?}");
                assert!(!r.stdout.contains("READY"), "{what}: {r:?}");
                assert!(
                    lines.len() == 1 && lines[0].starts_with("error:"),
                    "{what}: want one `error:` line on stderr, got {:?}",
                    r.stderr
                );
            }
        }
        let ok = dir.file("exact", "k".repeat(32).as_bytes());
        let (_relay, tunnel, _public) = spawn_relay(&ok, "127.0.0.1:0", "127.0.0.1:0", &[]);
        let _agent = spawn_agent(tunnel, nowhere, &ok, &[]);
    });
}
