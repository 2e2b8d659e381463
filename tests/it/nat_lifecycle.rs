//! NAT traversal, lifecycle and failures around the tunnel: no agent (the
//! public client waits for `--pair-timeout`, then is closed), clients that
//! wait for a tunnel (served as soon as a fresh tunnel authenticates, also
//! when the ATTACH comes in the same segment as the WELCOME, played by a
//! test relay), the relay killed and restarted on the same ports (the agent
//! reconnects within its backoff and service resumes), the agent SIGKILLed
//! (the relay releases its tunnels, the clients paired or waiting, and every
//! descriptor), and a local service that refuses (the public client is
//! closed at once).
//!
//! Each test ends with the processes still running back at their fd
//! baseline, holding only idle tunnels, with no CLOSE-WAIT.

use crate::support::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SETTLE: Duration = Duration::from_secs(5);

/// Reads until the peer closes (EOF or RST, other bytes are an error) and
/// returns how it ended; a read timeout of `limit` bounds the wait.
fn wait_closed(c: &mut TcpStream, limit: Duration) -> End {
    c.set_read_timeout(Some(limit)).expect("set_read_timeout");
    let (_, end) = recv_all(c, 1 << 20);
    end
}

/// With no agent, a public client waits for the 1 s pair timeout and is
/// then closed; the relay logs `reason=pair-timeout` and frees everything.
#[test]
fn no_agent_public_client_closed_at_pair_timeout() {
    watchdog(|| {
        let dir = SecretDir::new();
        let secret = dir.file("secret", format!("{SECRET}\n").as_bytes());
        let extra = owned(&["--pair-timeout", "1s"]);
        let (mut relay, _tunnel, public) =
            spawn_relay(&secret, "127.0.0.1:0", "127.0.0.1:0", &extra);
        let base = settle(&relay, "relay", 0);

        let t0 = Instant::now();
        let mut c = connect(public);
        let end = read_end(&mut c);
        let took = t0.elapsed();
        assert!(
            matches!(end, End::Eof | End::Reset),
            "client should be closed at the pair timeout, got {end:?}\n{}",
            relay.stderr()
        );
        assert!(
            took >= Duration::from_millis(800) && took <= Duration::from_secs(3),
            "closed after {took:?}, want ~1 s (--pair-timeout 1s)"
        );
        assert!(
            relay.wait_log("reason=pair-timeout", SETTLE),
            "relay close line should say reason=pair-timeout\n{}",
            relay.stderr()
        );
        drop(c);
        assert_settled(&mut relay, "relay", base, 0, SETTLE);
    });
}

/// The relay is SIGKILLed and restarted on the same tunnel and public
/// ports; the agent (`--backoff-max 1s`) reconnects on its own and an echo
/// works again within a few seconds. The agent ends exactly at its old
/// baseline: reconnecting leaked nothing.
#[test]
fn relay_restart_on_same_ports_agent_reconnects_and_service_resumes() {
    watchdog(|| {
        let up = echo_server();
        let mut chain = Chain::builder(up.addr)
            .relay(&["--pair-timeout", "3s"])
            .agent(&["--backoff-max", "1s"])
            .warm();

        chain.restart_relay();
        let restarted = Instant::now();
        let mut attempts = 0;
        let resumed = wait_for(Duration::from_secs(20), || {
            attempts += 1;
            let Ok(s) = TcpStream::connect_timeout(&chain.public, Duration::from_secs(2)) else {
                return false;
            };
            let mut s = with_timeouts(s);
            let payload = pattern(attempts, 4096);
            s.write_all(&payload).is_ok()
                && recv_exact(&mut s, payload.len()).is_some_and(|got| got == payload)
        });
        let took = restarted.elapsed();
        assert!(
            resumed,
            "no echo through the restarted relay after {took:?} ({attempts} attempts)\n{}",
            chain.logs()
        );
        assert!(
            took <= Duration::from_secs(6),
            "service resumed only {took:?} after the restart (backoff cap 1 s)\n{}",
            chain.logs()
        );

        chain.take_baseline_relay();
        echo_once(chain.public);
        chain.assert_quiescent(SETTLE);
        up.assert_no_handler_panics();
    });
}

/// Reads exactly `n` bytes, or None on EOF, error or timeout.
fn recv_exact(s: &mut TcpStream, n: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).ok().map(|()| buf)
}

/// Clients that wait for a tunnel are served as soon as the agent's
/// replacement tunnels authenticate. With the agent stopped, 6 clients queue
/// behind its single idle tunnel; once it resumes, the relay answers each
/// fresh tunnel's hello with WELCOME and at once an ATTACH, and every client
/// gets its echo within 2 s. Twelve rounds: the case that matters is the
/// ATTACH arriving in the same read as the WELCOME, which depends on timing.
#[test]
fn waiting_clients_are_served_by_fresh_tunnels_at_once() {
    const ROUNDS: u64 = 12;
    const CLIENTS: usize = 6;
    watchdog(|| {
        let up = echo_server();
        let mut chain = Chain::builder(up.addr)
            .pool(1)
            .relay(&["--pair-timeout", "10s"])
            .warm();
        for round in 0..ROUNDS {
            chain.agent.send_signal(libc::SIGSTOP);
            let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(chain.public)).collect();
            let relay = &chain.relay;
            assert!(
                wait_for(SETTLE, || relay.session_sockets().len() == 1 + CLIENTS),
                "round {round}: the relay should hold 1 tunnel and {CLIENTS} clients\n{}",
                relay.dump()
            );
            chain.agent.send_signal(libc::SIGCONT);
            for (i, c) in clients.iter_mut().enumerate() {
                c.set_read_timeout(Some(Duration::from_secs(2)))
                    .expect("set_read_timeout");
                let payload = pattern(round * 10 + i as u64, 1000);
                c.write_all(&payload).expect("client write");
                let got = recv_exact(c, payload.len());
                assert!(
                    got.as_ref() == Some(&payload),
                    "round {round}, client {i}: no echo within 2 s (waiting for a fresh tunnel)\n{}",
                    chain.logs()
                );
            }
            for mut c in clients {
                c.shutdown(std::net::Shutdown::Write)
                    .expect("shutdown(Write)");
                let end = read_end(&mut c);
                assert!(
                    matches!(end, End::Eof),
                    "round {round}: want EOF, got {end:?}"
                );
            }
            chain.assert_quiescent(SETTLE);
        }
        up.assert_no_handler_panics();
    });
}

/// The agent handles an ATTACH that arrives in the same segment as the
/// WELCOME (what a relay sends when a client already waits as the tunnel
/// authenticates). A test relay writes WELCOME, ATTACH and the client's
/// first bytes in one write: the agent prints READY, dials the service at
/// once, answers READY (0x21) and relays the bytes both ways, then opens a
/// replacement tunnel and leaves no CLOSE-WAIT behind.
#[test]
fn agent_handles_attach_in_the_same_segment_as_welcome() {
    watchdog(|| {
        let (dialed_tx, dialed) = mpsc::channel();
        let up = scripted_server(move |s| {
            let _ = dialed_tx.send(());
            echo_conn(s);
        });
        let dir = SecretDir::new();
        let secret = dir.file("secret", format!("{SECRET}\n").as_bytes());
        let fake = TcpListener::bind("127.0.0.1:0").expect("bind the test relay");
        let relay_addr = fake.local_addr().expect("local_addr");
        let extra = owned(&["--pool", "1", PLAIN[0], PLAIN[1]]);
        let args = agent_args(relay_addr, up.addr, &secret, &extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (mut agent, first_line) = Proxy::launch(&refs);

        let mut t = with_timeouts(fake.accept().expect("the agent connects").0);
        let nonce: [u8; 32] = pattern(77, 32).try_into().expect("32 bytes");
        t.write_all(&[&MAGIC_V1[..], &nonce].concat())
            .expect("send the challenge");
        let (agent_nonce, name, proof) = read_hello(&mut t);
        let key = SECRET.as_bytes();
        assert_eq!(name, SERVICE.as_bytes(), "service name in the hello");
        assert!(
            proof == agent_proof(key, &nonce, &agent_nonce, &name),
            "the agent's proof does not match docs/protocol.md"
        );
        let mut burst = vec![0x01];
        burst.extend_from_slice(&relay_proof(key, &nonce, &agent_nonce, &name));
        burst.extend_from_slice(&[0x20, 4, 127, 0, 0, 1, 0x9c, 0x40]); // ATTACH 127.0.0.1:40000
        burst.extend_from_slice(b"ping");
        t.write_all(&burst).expect("send WELCOME + ATTACH + bytes");

        if let Err(why) = agent.await_ready(&first_line, READY_TIMEOUT) {
            panic!("agent: {why}");
        }
        assert!(
            dialed.recv_timeout(Duration::from_secs(2)).is_ok(),
            "the agent did not dial the service within 2 s of an ATTACH that came with WELCOME\n{}",
            agent.dump()
        );
        t.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("set_read_timeout");
        let mut first = [0x10u8];
        while first[0] == 0x10 {
            t.read_exact(&mut first).expect("the agent's READY frame");
        }
        assert_eq!(
            first[0], 0x21,
            "the agent's answer to ATTACH should be READY"
        );
        assert_eq!(
            read_exact_n(&mut t, 4, "echo"),
            b"ping",
            "echo through the agent"
        );

        fake.set_nonblocking(true).expect("nonblocking accept");
        let mut replacement = None;
        assert!(
            wait_for(SETTLE, || {
                replacement = fake.accept().ok();
                replacement.is_some()
            }),
            "the agent should open a replacement tunnel\n{}",
            agent.dump()
        );
        t.shutdown(std::net::Shutdown::Write)
            .expect("shutdown(Write)");
        let end = read_end(&mut t);
        assert!(
            matches!(end, End::Eof),
            "want EOF after the echo, got {end:?}"
        );
        drop(t);
        agent.assert_alive();
        settle(&agent, "agent", 1);
        up.assert_no_handler_panics();
    });
}

/// The agent is SIGKILLed while it serves one live session, two clients are
/// attached to its idle tunnels (it was stopped, so never answered) and one
/// more waits for a tunnel. Every public client is closed (the waiting one
/// at the latest at the pair timeout) and the relay frees every tunnel and
/// descriptor: it ends at its warm baseline minus the pool's tunnels.
#[test]
fn agent_sigkill_relay_releases_tunnels_and_waiting_clients() {
    watchdog(|| {
        let up = echo_server();
        let mut chain = Chain::builder(up.addr)
            .relay(&["--pair-timeout", "2s", "--connect-timeout", "2s"])
            .warm();
        let pool = chain.pool;

        let mut live = connect(chain.public);
        echo_roundtrip(&mut live, &pattern(1, 4096));
        let (relay, agent) = (&chain.relay, &chain.agent);
        assert!(
            wait_stable(SETTLE, || relay.session_sockets().len() == pool + 2
                && agent.session_sockets().len() == pool + 2),
            "live session plus a replenished pool on both sides\n{}",
            chain.logs()
        );

        chain.agent.send_signal(libc::SIGSTOP);
        let stuck: Vec<TcpStream> = (0..pool + 1).map(|_| connect(chain.public)).collect();
        let relay = &chain.relay;
        assert!(
            wait_for(SETTLE, || relay.session_sockets().len() == 2 * pool + 3),
            "relay should hold the live session, {pool} attached tunnels and {} clients\n{}",
            pool + 1,
            relay.dump()
        );

        let killed = Instant::now();
        chain.agent.send_signal(libc::SIGKILL);
        chain.agent.wait_exit(SETTLE);
        let end = wait_closed(&mut live, Duration::from_secs(5));
        assert!(
            matches!(end, End::Eof | End::Reset),
            "live session: client should see FIN or RST, got {end:?}"
        );
        for (i, mut c) in stuck.into_iter().enumerate() {
            let end = wait_closed(&mut c, Duration::from_secs(6));
            assert!(
                matches!(end, End::Eof | End::Reset),
                "attached/waiting client {i}: should be closed, got {end:?}\n{}",
                chain.relay.stderr()
            );
        }
        let took = killed.elapsed();
        assert!(
            took <= Duration::from_secs(5),
            "all clients closed only {took:?} after the kill (pair timeout 2 s)"
        );
        drop(live);

        let idle_base = chain.relay_base - pool;
        assert_settled(&mut chain.relay, "relay", idle_base, 0, SETTLE);
        up.assert_no_handler_panics();
    });
}

/// The agent's `--service` points at a closed port: a public client is
/// closed within 1 s, the relay's close line says `reason=connect-refused`,
/// and both processes are back at their baseline (a first refused session
/// is the warm-up). The time is taken from a relay that holds an idle tunnel
/// (its metrics say so): what is measured is the refusal, not the agent's
/// replacement of the tunnel the warm-up used.
#[test]
fn local_service_refused_closes_client_within_1s() {
    watchdog(|| {
        let mut chain = Chain::builder(closed_port())
            .relay(&["--metrics-listen", "127.0.0.1:0"])
            .start();
        let mut warm = connect(chain.public);
        let end = wait_closed(&mut warm, Duration::from_secs(5));
        assert!(
            matches!(end, End::Eof | End::Reset),
            "warm-up client should be closed, got {end:?}\n{}",
            chain.logs()
        );
        drop(warm);
        assert!(
            chain.relay.wait_log("reason=connect-refused", SETTLE),
            "relay close line should say reason=connect-refused\n{}",
            chain.logs()
        );
        chain.take_baseline();
        let before = log_count(&chain.relay, "reason=connect-refused");
        let metrics = chain.relay.field_addr("metrics");
        let idle = || prom::sum(&scrape_metrics(metrics), "tcpbridge_idle_tunnels", &[]);
        assert!(
            wait_for(SETTLE, || idle() >= 1.0),
            "the relay never held an idle tunnel (idle_tunnels {})\n{}",
            idle(),
            chain.logs()
        );

        let t0 = Instant::now();
        let mut c = connect(chain.public);
        let end = wait_closed(&mut c, Duration::from_secs(5));
        let took = t0.elapsed();
        assert!(
            matches!(end, End::Eof | End::Reset),
            "client should be closed, got {end:?}"
        );
        assert!(
            took <= Duration::from_secs(1),
            "client closed after {took:?}, want within 1 s\n{}",
            chain.logs()
        );
        drop(c);
        let relay = &chain.relay;
        assert!(
            wait_for(SETTLE, || log_count(relay, "reason=connect-refused")
                > before),
            "relay should log reason=connect-refused for this client too\n{}",
            relay.stderr()
        );
        chain.assert_quiescent(SETTLE);
    });
}
