//! Fault matrix §4.5, NAT bridge, loss of the tunnel path (E4, E5, E13): the
//! relay gone (the agent backs off, capped, without spinning, and comes back
//! when a relay returns on the same port) and a silent drop of every tunnel
//! packet (both sides find the dead idle tunnels by heartbeat, a paired one
//! by TCP keepalive, and the agent reconnects once the path is back).
//!
//! Every scenario ends with relay and agent alive, back at their fd
//! baseline holding only the idle pool, no CLOSE-WAIT, and the relay's
//! `/metrics` showing no session, waiting client, handshake, lent buffer or
//! kernel pipe (the agent's: no session, buffer or pipe). E1–E3, E6 and
//! E11 are `nat_data.rs`, `nat_lifecycle.rs` and `nat_auth.rs`; E7–E10 are
//! `faults_nat_limits.rs`; E12 (confidentiality) does not apply: the tunnel
//! is authenticated, not encrypted.

use crate::support::*;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const SETTLE: Duration = Duration::from_secs(10);
const METRICS: [&str; 2] = ["--metrics-listen", "127.0.0.1:0"];

/// The agent's idle tunnels as its `/metrics` reports them.
fn idle_tunnels(p: &Proxy, listener: &str) -> f64 {
    let s = scrape_metrics(p.field_addr("metrics"));
    prom::sum(&s, "tcpbridge_idle_tunnels", &[("listener", listener)])
}

/// The NAT invariants: relay `/metrics` shows no live session, waiting
/// client, handshake, lent buffer or kernel pipe, the agent's no session,
/// buffer or pipe; then both processes settle at their baselines.
fn assert_nat_at_rest(chain: &mut Chain) {
    let relay_metrics = chain.relay.field_addr("metrics");
    let mut last = String::new();
    let quiet = wait_for(SETTLE, || {
        let s = scrape_metrics(relay_metrics);
        let busy: Vec<String> = [
            "tcpbridge_sessions",
            "tcpbridge_waiting_clients",
            "tcpbridge_tunnel_handshakes",
            "tcpbridge_buffers_lent",
            "tcpbridge_pipes_lent",
        ]
        .iter()
        .map(|n| (n, prom::sum(&s, n, &[])))
        .filter(|(_, v)| *v != 0.0)
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
        last = busy.join(" ");
        busy.is_empty()
    });
    assert!(quiet, "relay metrics not at rest: {last}\n{}", chain.logs());
    let agent_metrics = chain.agent.field_addr("metrics");
    for name in [
        "tcpbridge_sessions",
        "tcpbridge_buffers_lent",
        "tcpbridge_pipes_lent",
    ] {
        let at_rest = wait_for(SETTLE, || {
            prom::sum(&scrape_metrics(agent_metrics), name, &[]) == 0.0
        });
        assert!(at_rest, "agent {name} not back at 0\n{}", chain.logs());
    }
    chain.assert_quiescent(SETTLE);
}

/// A listener on `addr` that accepts and at once drops every connection,
/// recording when each came; stopped (and joined) by [`Doorman::stop`].
struct Doorman {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Instant>>>,
    thread: thread::JoinHandle<()>,
}

impl Doorman {
    fn bind(addr: SocketAddr) -> Doorman {
        let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (st, sn) = (Arc::clone(&stop), Arc::clone(&seen));
        let thread = thread::spawn(move || {
            for c in l.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                if c.is_ok() {
                    sn.lock().expect("seen").push(Instant::now());
                }
            }
        });
        Doorman {
            addr,
            stop,
            seen,
            thread,
        }
    }

    /// Connection times so far.
    fn seen(&self) -> Vec<Instant> {
        self.seen.lock().expect("seen").clone()
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        self.thread.join().expect("doorman thread");
    }
}

/// E4: the relay is SIGKILLed and its tunnel port answered by a listener
/// that drops every connection (each is a failed handshake for the agent).
/// With `--backoff-max 1s` and a pool of 2, the agent makes at most 5
/// attempts a second once backed off, uses under 5% of a core, and when a
/// relay returns on the same ports it reconnects and serves, leaking nothing.
fn agent_backs_off_capped_while_relay_is_gone_and_returns() {
    watchdog(|| {
        let up = echo_server();
        let mut chain = Chain::builder(up.addr)
            .pool(2)
            .relay(&METRICS)
            .agent(&METRICS)
            .agent(&["--backoff-max", "1s"])
            .warm();
        chain.relay.send_signal(libc::SIGKILL);
        chain.relay.wait_exit(Duration::from_secs(5));
        let t0 = Instant::now();
        let door = Doorman::bind(chain.tunnel);
        let cpu0 = chain.agent.cpu_time();
        // Observe 4 s of back-off: a measurement window, not a synchronisation.
        thread::sleep(Duration::from_secs(4));
        let cpu = chain.agent.cpu_time() - cpu0;
        let seen = door.seen();
        door.stop();
        let late = seen
            .iter()
            .filter(|t| t.duration_since(t0) >= Duration::from_secs(2))
            .count();
        eprintln!(
            "E4: {} attempts in 4 s, {late} in the last 2 s, agent CPU {cpu:?}",
            seen.len()
        );
        assert!(!seen.is_empty(), "the agent never tried to reconnect");
        assert!(
            late <= 10,
            "{late} attempts in 2 s once backed off (cap 1 s, pool 2)"
        );
        assert!(
            cpu <= Duration::from_millis(200),
            "agent used {cpu:?} in 4 s: a spin"
        );
        chain.agent.assert_alive();

        let (relay, tunnel, public) = spawn_relay(
            &chain.secret,
            &chain.tunnel.to_string(),
            &chain.public.to_string(),
            &owned(&METRICS),
        );
        assert_eq!((tunnel, public), (chain.tunnel, chain.public), "same ports");
        chain.relay = relay;
        let back = wait_for(SETTLE, || idle_tunnels(&chain.relay, "relay") == 2.0);
        assert!(back, "the agent did not come back\n{}", chain.logs());
        echo_once(chain.public);
        chain.take_baseline_relay();
        assert_nat_at_rest(&mut chain);
    });
}
both_paths!(agent_backs_off_capped_while_relay_is_gone_and_returns);

/// `iptables -A INPUT -p tcp --{dport,sport} PORT -j DROP` (both directions
/// of the tunnel port on `lo`), or `-D` to remove them.
fn drop_tunnel_port(op: &str, port: u16) -> bool {
    let port = port.to_string();
    ["--dport", "--sport"]
        .iter()
        .all(|dir| iptables(&[op, "INPUT", "-p", "tcp", dir, &port, "-j", "DROP"]))
}

/// E5: every packet of the tunnel port is silently dropped (a NAT mapping
/// that vanished). With `--heartbeat-interval 200ms --heartbeat-timeout 1s`
/// both relay and agent drop their idle tunnels within 5 s, and neither owns
/// a tunnel socket; once the rules are removed, the agent reconnects and a
/// client is served.
fn silent_drop_of_tunnel_packets_is_found_by_heartbeats_and_recovered() {
    watchdog(|| {
        if !enter_private_netns() {
            return;
        }
        let up = echo_server();
        let beat = ["--heartbeat-interval", "200ms", "--heartbeat-timeout", "1s"];
        let mut chain = Chain::builder(up.addr)
            .pool(2)
            .relay(&METRICS)
            .relay(&beat)
            .agent(&METRICS)
            .agent(&beat)
            .agent(&["--backoff-max", "1s", "--handshake-timeout", "1s"])
            .warm();
        if !drop_tunnel_port("-A", chain.tunnel.port()) {
            return;
        }
        let t0 = Instant::now();
        let relay_lost = wait_for(SETTLE, || idle_tunnels(&chain.relay, "relay") == 0.0);
        let relay_took = t0.elapsed();
        let agent_lost = wait_for(SETTLE, || idle_tunnels(&chain.agent, "agent") == 0.0);
        let agent_took = t0.elapsed();
        eprintln!("E5: relay dropped its tunnels after {relay_took:?}, agent after {agent_took:?}");
        assert!(
            relay_lost && relay_took <= Duration::from_secs(5),
            "relay kept dead tunnels\n{}",
            chain.logs()
        );
        assert!(
            agent_lost && agent_took <= Duration::from_secs(5),
            "agent kept dead tunnels\n{}",
            chain.logs()
        );
        let orphans = wait_for(SETTLE, || chain.relay.session_sockets().is_empty());
        assert!(
            orphans,
            "relay still owns tunnel sockets\n{}",
            chain.relay.dump()
        );
        chain.relay.assert_alive();
        chain.agent.assert_alive();

        assert!(
            drop_tunnel_port("-D", chain.tunnel.port()),
            "remove the DROP rules"
        );
        let back = wait_for(Duration::from_secs(15), || {
            idle_tunnels(&chain.relay, "relay") == 2.0
        });
        assert!(
            back,
            "the agent did not reconnect after the path came back\n{}",
            chain.logs()
        );
        echo_once(chain.public);
        assert_nat_at_rest(&mut chain);
    });
}
both_paths!(silent_drop_of_tunnel_packets_is_found_by_heartbeats_and_recovered);

/// Sessions of `p` closed with `reason`, as its `/metrics` counts them.
fn closed(p: &Proxy, reason: &str) -> f64 {
    let s = scrape_metrics(p.field_addr("metrics"));
    prom::sum(&s, "tcpbridge_sessions_closed_total", &[("reason", reason)])
}

/// E13: a session idles on its tunnel when every packet of the tunnel port starts being
/// dropped (the NAT mapping of the agent's connection vanished). A paired tunnel carries
/// no heartbeat; with `--tcp-keepalive 1s:1s:2` on both sides the relay ends the session
/// as `upstream-error` (its upstream is the tunnel) and the public client gets RST, the
/// agent ends it as `client-error` and the service gets RST, each 2–40 s later (about
/// 3 s; 3.0-3.4 s seen). The idle tunnels go by heartbeat as in E5; once the path is
/// back the agent restores its pool.
fn paired_tunnel_whose_path_vanished_is_found_by_keepalive() {
    watchdog_for(Duration::from_secs(90), || {
        if !enter_private_netns() {
            return;
        }
        let by = Duration::from_secs(40);
        let (tx, rx) = mpsc::channel();
        let up = scripted_server_with_warmup(move |mut s| {
            let got = read_exact_n(&mut s, 5, "service");
            s.write_all(&got).expect("service: echo");
            let _ = s.set_read_timeout(Some(by));
            let _ = tx.send(timed(|| read_end(&mut s)));
        });
        let probes = ["--tcp-keepalive", "1s:1s:2"];
        let beat = ["--heartbeat-interval", "200ms", "--heartbeat-timeout", "1s"];
        let mut chain = Chain::builder(up.addr)
            .pool(2)
            .relay(&METRICS)
            .relay(&beat)
            .relay(&probes)
            .agent(&METRICS)
            .agent(&beat)
            .agent(&probes)
            .agent(&["--backoff-max", "1s", "--handshake-timeout", "1s"])
            .warm();
        let mut c = connect(chain.public);
        echo_roundtrip(&mut c, b"hello");
        if !drop_tunnel_port("-A", chain.tunnel.port()) {
            return;
        }
        let _ = c.set_read_timeout(Some(by));
        let (client_end, client_took) = timed(|| read_end(&mut c));
        let (service_end, service_took) = rx.recv_timeout(by + SETTLE).expect("service report");
        eprintln!(
            "E13: the public client saw {client_end:?} after {client_took:?}, the service {service_end:?} after {service_took:?}"
        );
        for (who, end, took) in [
            ("public client", client_end, client_took),
            ("service", service_end, service_took),
        ] {
            assert!(
                matches!(end, End::Reset),
                "{who}: {end:?} after {took:?}, want RST"
            );
            assert!(
                took >= Duration::from_secs(2),
                "{who}: closed after {took:?}"
            );
        }
        let relay_said = wait_for(SETTLE, || closed(&chain.relay, "upstream-error") == 1.0);
        let agent_said = wait_for(SETTLE, || closed(&chain.agent, "client-error") == 1.0);
        assert!(relay_said && agent_said, "close reasons\n{}", chain.logs());
        assert!(
            drop_tunnel_port("-D", chain.tunnel.port()),
            "remove the DROP rules"
        );
        let back = wait_for(Duration::from_secs(15), || {
            idle_tunnels(&chain.relay, "relay") == 2.0
        });
        assert!(back, "the agent did not reconnect\n{}", chain.logs());
        assert_nat_at_rest(&mut chain);
    });
}
both_paths!(paired_tunnel_whose_path_vanished_is_found_by_keepalive);
