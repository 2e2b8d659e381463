//! NAT traversal, socket options: the relay's and the agent's tunnels, the relay's public
//! clients and the agent's service connections all get their own process's
//! `--tcp-keepalive` and `--tcp-user-timeout` (README), read exactly from each
//! process's sockets ([`Proxy::connected_sockets`]) and, for the tunnels, seen running
//! in `ss -o`. A paired tunnel whose path dies silently is the fault matrix's E13
//! (`faults_nat`).

use crate::support::*;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(5);

/// The relay's options: 7s:3s:5 and 31 s.
const RELAY: [&str; 4] = ["--tcp-keepalive", "7s:3s:5", "--tcp-user-timeout", "31s"];
/// The agent's: 9s:4s:6, the user timeout derived (9 + 4 × 6 = 33 s).
const AGENT: [&str; 2] = ["--tcp-keepalive", "9s:4s:6"];

/// The options of `p`'s sockets that `pick` selects (by local and peer address); each
/// must have TCP_NODELAY too.
fn options_of(p: &Proxy, pick: impl Fn(SocketAddr, SocketAddr) -> bool) -> Option<Vec<TcpOptions>> {
    let all = p.connected_sockets()?;
    let picked = all.iter().filter(|s| pick(s.local, s.peer));
    for s in picked.clone() {
        assert!(s.nodelay, "no TCP_NODELAY: {s:?}");
    }
    Some(picked.map(|s| s.options).collect())
}

/// Idle tunnels on both sides, then one session's public client (relay) and service
/// connection (agent): each with its own process's options.
#[test]
fn tunnels_clients_and_services_get_their_process_options() {
    watchdog(|| {
        let up = echo_server();
        let mut chain = Chain::builder(up.addr).relay(&RELAY).agent(&AGENT).warm();
        let relay_opts = TcpOptions::new(Some((7, 3, 5)), Some(31_000));
        let agent_opts = TcpOptions::new(Some((9, 4, 6)), Some(33_000));
        let tunnel = chain.tunnel;
        let relay_tunnels = options_of(&chain.relay, |local, _| local.port() == tunnel.port());
        let agent_tunnels = options_of(&chain.agent, |_, peer| peer == tunnel);
        if let (Some(r), Some(a)) = (relay_tunnels, agent_tunnels) {
            assert_eq!(r, [relay_opts; 2], "the relay's idle tunnels (pool 2)");
            assert_eq!(a, [agent_opts; 2], "the agent's idle tunnels (pool 2)");
        }
        if tool("ss", &["-V"]) {
            // The kernel runs the probes' timer on the tunnel, agent's end.
            let out = Command::new("ss")
                .args([
                    "-Htno",
                    "state",
                    "established",
                    &format!("( dport = :{} )", tunnel.port()),
                ])
                .output()
                .expect("run ss");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.lines().count() >= 2 && text.lines().all(|l| l.contains("timer:(keepalive,")),
                "agent-side tunnels without a keepalive timer:\n{text}"
            );
        }

        let mut c = connect(chain.public);
        echo_roundtrip(&mut c, b"through the tunnel");
        let client = c.local_addr().expect("client address");
        let public = options_of(&chain.relay, |_, peer| peer == client);
        let service = options_of(&chain.agent, |_, peer| peer == up.addr);
        if let (Some(p), Some(s)) = (public, service) {
            assert_eq!(p, [relay_opts], "the relay's public client");
            assert_eq!(s, [agent_opts], "the agent's service connection");
        }
        drop(c);
        chain.assert_quiescent(SETTLE);
    });
}
