//! Fault matrix §4.5, NAT bridge, hostile or excess peers (E7–E10): the
//! per-source block after failed handshakes, raw connections that send
//! frames or garbage to the tunnel port while a client waits for a tunnel,
//! the `--max-waiting`, `--max-handshakes` and `--max-idle-tunnels` limits,
//! and two agents serving one service (there are no agent IDs: every agent
//! that proves the secret adds tunnels to the service's idle queue, clients
//! go to the oldest idle tunnel, and an agent that dies takes only its own).
//!
//! Hostile connections come from 127.0.0.2..5 so the per-source failure
//! count never touches the agent's 127.0.0.1. Every scenario ends with the
//! relay's `/metrics` at rest (no session, waiting client, handshake, lent
//! buffer or kernel pipe) and the processes settled at their idle pool with
//! no CLOSE-WAIT.

use crate::support::*;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const SETTLE: Duration = Duration::from_secs(10);
const METRICS: [&str; 2] = ["--metrics-listen", "127.0.0.1:0"];

/// A relay-side `/metrics` value (summed over labels).
fn relay_metric(relay: &Proxy, name: &str) -> f64 {
    prom::sum(&scrape_metrics(relay.field_addr("metrics")), name, &[])
}

/// Waits until the relay shows no session, waiting client, handshake, lent
/// buffer or kernel pipe.
fn assert_relay_metrics_at_rest(relay: &Proxy) {
    let names = [
        "tcpbridge_sessions",
        "tcpbridge_waiting_clients",
        "tcpbridge_tunnel_handshakes",
        "tcpbridge_buffers_lent",
        "tcpbridge_pipes_lent",
    ];
    let quiet = wait_for(SETTLE, || {
        names.iter().all(|n| relay_metric(relay, n) == 0.0)
    });
    let now: Vec<f64> = names.iter().map(|n| relay_metric(relay, n)).collect();
    assert!(
        quiet,
        "relay metrics {names:?} = {now:?}\n{}",
        relay.stderr()
    );
}

/// A relay alone (pool-less): its secret, tunnel and public addresses. Plain tunnels:
/// the tests speak the tunnel protocol by hand (their agents pass [`PLAIN`] too).
fn lone_relay(extra: &[&str]) -> (SecretDir, PathBuf, Proxy, SocketAddr, SocketAddr) {
    let dir = SecretDir::new();
    let secret = dir.file("secret", format!("{SECRET}\n").as_bytes());
    let mut args = owned(&METRICS);
    args.extend(owned(&PLAIN));
    args.extend(owned(extra));
    let (relay, tunnel, public) = spawn_relay(&secret, "127.0.0.1:0", "127.0.0.1:0", &args);
    (dir, secret, relay, tunnel, public)
}

/// The client side of one echo session on an already connected stream.
fn echo_session(mut c: TcpStream, what: &str) {
    echo_roundtrip(&mut c, what.as_bytes());
    c.shutdown(Shutdown::Write).expect("shutdown(Write)");
    assert!(
        matches!(read_end(&mut c), End::Eof),
        "{what}: EOF after half-close"
    );
}

/// E7: ten failed handshakes (bad magic) from 127.0.0.2 within a minute;
/// the eleventh connection from that address is reset at once without a
/// challenge, while the agent on 127.0.0.1 keeps authenticating (a used
/// tunnel is replaced) and a raw probe from 127.0.0.1 still gets a challenge.
fn source_with_ten_failed_handshakes_is_refused_and_others_are_not() {
    watchdog(|| {
        let up = echo_server();
        let mut chain = Chain::builder(up.addr)
            .pool(1)
            .relay(&METRICS)
            .relay(&PLAIN)
            .agent(&METRICS)
            .agent(&PLAIN)
            .warm();
        for i in 0..10 {
            let mut s = connect_from("127.0.0.2", chain.tunnel);
            let mut challenge = [0u8; CHALLENGE_LEN];
            s.read_exact(&mut challenge)
                .unwrap_or_else(|e| panic!("attempt {i}: no challenge: {e}"));
            let _ = s.write_all(&[b'X'; 80]);
            let answer = read_answer(&mut s, Duration::from_secs(5));
            assert!(
                matches!(answer, Answer::Denied | Answer::Closed),
                "attempt {i}: {answer:?}"
            );
        }
        let counted = wait_for(SETTLE, || {
            relay_metric(&chain.relay, "tcpbridge_handshake_failures_total") >= 10.0
        });
        assert!(
            counted,
            "ten failures not counted\n{}",
            chain.relay.stderr()
        );
        // Refused with a reset, which may reach the connect itself.
        assert_refused_from("127.0.0.2", chain.tunnel, &|| chain.relay.stderr());

        echo_once(chain.public); // uses the idle tunnel: the agent must replace it
        let (probe, _) = open_probe(chain.tunnel); // 127.0.0.1 still gets a challenge
        drop(probe);
        assert_relay_metrics_at_rest(&chain.relay);
        chain.assert_quiescent(SETTLE);
    });
}
both_paths!(source_with_ten_failed_handshakes_is_refused_and_others_are_not);

/// E8: while a public client waits for a tunnel (no agent yet), raw
/// connections to the tunnel port send an ATTACH frame, a READY frame with
/// bytes, 100 bytes of garbage, and a wrong-secret hello followed by
/// ATTACH: each is closed without pairing, the client still waits; when a
/// real agent comes, that client is paired with it and gets its echo.
fn frames_and_garbage_on_tunnel_port_never_pair_a_waiting_client() {
    watchdog(|| {
        let (_dir, secret, mut relay, tunnel, public) = lone_relay(&["--pair-timeout", "10s"]);
        let base = settle(&relay, "relay", 0);
        let mut client = connect(public);
        client.write_all(b"waiting client").expect("client bytes");
        let waiting = wait_for(SETTLE, || {
            relay_metric(&relay, "tcpbridge_waiting_clients") == 1.0
        });
        assert!(waiting, "the client does not wait for a tunnel");

        let attach = [0x20, 4, 127, 0, 0, 1, 0x1f, 0x90];
        let mut ready = vec![0x21];
        ready.extend_from_slice(b"service bytes");
        let garbage: Vec<u8> = (0..100u8).map(|b| b.wrapping_mul(37)).collect();
        for (i, bytes) in [attach.to_vec(), ready, garbage].into_iter().enumerate() {
            let mut s = connect_from("127.0.0.3", tunnel);
            let _ = s.write_all(&bytes);
            let (got, end) = recv_all(&mut s, 1024);
            // The challenge, then at most DENIED: never a pairing.
            let verdict = got.get(CHALLENGE_LEN..).unwrap_or_default();
            assert!(
                verdict.is_empty() || verdict == [0x02],
                "raw {i}: {verdict:?} after the challenge"
            );
            assert!(matches!(end, End::Eof | End::Reset), "raw {i}: {end:?}");
        }
        let mut s = connect_from("127.0.0.3", tunnel);
        let mut c = [0u8; CHALLENGE_LEN];
        s.read_exact(&mut c).expect("challenge");
        let nonce: [u8; 32] = c[5..].try_into().expect("nonce");
        let mut hello = hello_bytes(
            OTHER_SECRET.as_bytes(),
            &nonce,
            &[7; 32],
            SERVICE.as_bytes(),
        );
        hello.extend_from_slice(&attach);
        let _ = s.write_all(&hello);
        let answer = read_answer(&mut s, Duration::from_secs(5));
        assert!(
            matches!(answer, Answer::Denied | Answer::Closed),
            "wrong secret: {answer:?}"
        );
        assert_eq!(
            relay_metric(&relay, "tcpbridge_waiting_clients"),
            1.0,
            "client no longer waits"
        );
        assert_eq!(
            relay_metric(&relay, "tcpbridge_sessions"),
            0.0,
            "a hostile peer was paired"
        );

        let up = echo_server();
        let mut agent = spawn_agent(
            tunnel,
            up.addr,
            &secret,
            &owned(&["--pool", "1", PLAIN[0], PLAIN[1]]),
        );
        let got = read_exact_n(&mut client, 14, "the waiting client's echo");
        assert_eq!(
            got, b"waiting client",
            "the waiting client got someone else's bytes"
        );
        echo_session(client, "after pairing");
        assert_relay_metrics_at_rest(&relay);
        assert_settled(&mut relay, "relay", base + 1, 1, SETTLE);
        settle(&agent, "agent", 1);
        agent.assert_alive();
    });
}
both_paths!(frames_and_garbage_on_tunnel_port_never_pair_a_waiting_client);

/// E9: `--max-waiting 2`: a third waiting client is closed at once with
/// `reason=limit` while two wait, and those two are served when an agent
/// comes. `--max-handshakes 2`: with two silent handshakes held, a third
/// tunnel connection gets its challenge and the oldest silent one is closed
/// to make room (a newcomer is never refused), and the live agent's session
/// is unaffected.
fn waiting_and_handshake_limits_close_the_excess_at_once() {
    watchdog(|| {
        let extra = [
            "--pair-timeout",
            "10s",
            "--max-waiting",
            "2",
            "--max-handshakes",
            "2",
        ];
        let (_dir, secret, mut relay, tunnel, public) = lone_relay(&extra);
        let base = settle(&relay, "relay", 0);
        let mut a = connect(public);
        let mut b = connect(public);
        a.write_all(b"first").expect("a");
        b.write_all(b"second").expect("b");
        assert!(wait_for(SETTLE, || relay_metric(
            &relay,
            "tcpbridge_waiting_clients"
        ) == 2.0));
        let t0 = Instant::now();
        let mut third = connect(public);
        let end = read_end(&mut third);
        assert!(
            matches!(end, End::Eof | End::Reset),
            "third waiting client: {end:?}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "third client closed only after {:?}",
            t0.elapsed()
        );
        assert!(
            relay.wait_log("reason=limit", SETTLE),
            "no reason=limit close line"
        );

        let up = echo_server();
        let mut agent = spawn_agent(
            tunnel,
            up.addr,
            &secret,
            &owned(&["--pool", "1", PLAIN[0], PLAIN[1]]),
        );
        assert_eq!(read_exact_n(&mut a, 5, "first waiting client"), b"first");
        assert_eq!(read_exact_n(&mut b, 6, "second waiting client"), b"second");
        // The agent refills its pool after each pairing: its handshake must be
        // over before the probes count against the limit of 2.
        assert!(
            wait_for(SETTLE, || relay_metric(&relay, "tcpbridge_idle_tunnels")
                == 1.0
                && relay_metric(&relay, "tcpbridge_tunnel_handshakes") == 0.0),
            "the agent's pool did not refill\n{}",
            relay.dump()
        );
        let mut held: Vec<TcpStream> = (0..2)
            .map(|_| open_probe_from("127.0.0.4", tunnel))
            .collect();
        assert!(wait_for(SETTLE, || relay_metric(
            &relay,
            "tcpbridge_tunnel_handshakes"
        ) == 2.0));
        let excess = open_probe_from("127.0.0.4", tunnel);
        let end = read_end(&mut held[0]);
        assert!(
            matches!(end, End::Eof | End::Reset),
            "the oldest silent handshake was not evicted: {end:?}"
        );
        assert_eq!(relay_metric(&relay, "tcpbridge_tunnel_handshakes"), 2.0);
        held.push(excess);
        echo_session(a, "first, during the handshake flood");
        echo_session(b, "second, during the handshake flood");
        drop(held);
        assert_relay_metrics_at_rest(&relay);
        assert_settled(&mut relay, "relay", base + 1, 1, SETTLE);
        settle(&agent, "agent", 1);
        agent.assert_alive();
    });
}
both_paths!(waiting_and_handshake_limits_close_the_excess_at_once);

/// Connects from `from` to the tunnel port and reads the challenge.
fn open_probe_from(from: &str, tunnel: SocketAddr) -> TcpStream {
    let mut s = connect_from(from, tunnel);
    let mut c = [0u8; CHALLENGE_LEN];
    s.read_exact(&mut c).expect("challenge");
    s
}

/// E9: `--max-idle-tunnels 1` against an agent with `--pool 3`: the relay
/// keeps one idle tunnel and refuses the rest (not counted as failures, so
/// the agent is never blocked); after a dozen refusals, five clients in a
/// row are each served by a fresh tunnel.
fn idle_tunnel_limit_refuses_extra_tunnels_without_blocking_the_agent() {
    watchdog(|| {
        let (_dir, secret, mut relay, tunnel, public) = lone_relay(&["--max-idle-tunnels", "1"]);
        let up = echo_server();
        let agent_extra = owned(&["--pool", "3", "--backoff-max", "200ms", PLAIN[0], PLAIN[1]]);
        let mut agent = spawn_agent(tunnel, up.addr, &secret, &agent_extra);
        let refusals = wait_for(Duration::from_secs(20), || {
            log_count(&relay, "idle tunnels already") >= 12
        });
        assert!(
            refusals,
            "the relay did not refuse extra tunnels\n{}",
            relay.stderr()
        );
        assert_eq!(relay_metric(&relay, "tcpbridge_idle_tunnels"), 1.0);
        for i in 0..5 {
            let c = connect(public);
            echo_session(c, &format!("client {i} with one idle tunnel"));
        }
        assert_eq!(relay_metric(&relay, "tcpbridge_auth_failures_total"), 0.0);
        assert_relay_metrics_at_rest(&relay);
        relay.assert_alive();
        agent.assert_alive();
    });
}
both_paths!(idle_tunnel_limit_refuses_extra_tunnels_without_blocking_the_agent);

/// E10: two agents offer the same service (there are no agent IDs). A
/// banner tells which agent's service answered: both serve clients; after
/// the first agent is SIGKILLed the relay drops only its tunnels and every
/// client is served by the second; the relay ends at its fd count from
/// before the second agent came (two idle tunnels, none leaked).
fn two_agents_share_a_service_and_one_dying_leaves_the_other_serving() {
    watchdog(|| {
        let banner = |tag: u8| {
            scripted_server(move |mut s| {
                if s.write_all(&[tag]).is_ok() {
                    echo_conn(s)
                }
            })
        };
        let (svc_a, svc_b) = (banner(b'A'), banner(b'B'));
        let mut chain = Chain::builder(svc_a.addr)
            .pool(2)
            .relay(&METRICS)
            .agent(&METRICS)
            .start();
        chain.take_baseline();
        let relay_base = chain.relay_base;
        let agent_b = spawn_agent(
            chain.tunnel,
            svc_b.addr,
            &chain.secret,
            &owned(&["--pool", "2"]),
        );
        assert!(wait_for(SETTLE, || relay_metric(
            &chain.relay,
            "tcpbridge_idle_tunnels"
        ) == 4.0));
        let who = |public: SocketAddr, i: usize| {
            let mut c = connect(public);
            let tag = read_exact_n(&mut c, 1, "banner")[0];
            echo_session(c, &format!("client {i}"));
            tag
        };
        let tags: Vec<u8> = (0..8).map(|i| who(chain.public, i)).collect();
        assert!(
            tags.contains(&b'A') && tags.contains(&b'B'),
            "served by {:?}",
            String::from_utf8_lossy(&tags)
        );

        chain.agent.send_signal(libc::SIGKILL);
        chain.agent.wait_exit(SETTLE);
        assert!(wait_for(SETTLE, || relay_metric(
            &chain.relay,
            "tcpbridge_idle_tunnels"
        ) == 2.0));
        for i in 0..4 {
            assert_eq!(
                who(chain.public, 100 + i),
                b'B',
                "a client reached the dead agent's service"
            );
        }
        assert_relay_metrics_at_rest(&chain.relay);
        assert_settled(&mut chain.relay, "relay", relay_base, 2, SETTLE);
        settle(&agent_b, "second agent", 2);
        drop(agent_b);
    });
}
both_paths!(two_agents_share_a_service_and_one_dying_leaves_the_other_serving);
