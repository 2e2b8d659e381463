//! What a reload changes, decided without touching anything: which process-wide settings
//! differ (they need a restart), whether a listener's mode state survives its new
//! options, and which open port each wanted address keeps. The loop's reload binds and
//! registers what this leaves unmatched, then commits.

use std::net::SocketAddr;

use super::options::GLOBAL;
use super::{Global, Mode};

/// The process-wide settings that differ between `old` and `new` (they need a restart),
/// by key, in table order.
pub fn restart_needed(old: &Global, new: &Global) -> Vec<&'static str> {
    GLOBAL
        .iter()
        .filter(|s| s.show(old) != s.show(new))
        .map(|s| s.meta().key)
        .collect()
}

/// Whether a listener may keep its mode state (a relay's or agent's tunnels) under `new`:
/// the same mode, and for a relay or agent the same secret, TLS settings (the files'
/// contents included) and service names (and relay address); limits and timeouts may
/// change. A relay that keeps its state keeps its generated TLS key. A `connect` or
/// `socks` listener keeps its state whatever its options (policy, allowed clients,
/// credentials and limits are updated in place).
pub fn keeps_state(old: &Mode, new: &Mode) -> bool {
    match (old, new) {
        (Mode::Forward(_), Mode::Forward(_))
        | (Mode::Connect(_), Mode::Connect(_))
        | (Mode::Socks(_), Mode::Socks(_)) => true,
        (Mode::Relay(a), Mode::Relay(b)) => {
            a.tunnel.secret == b.tunnel.secret
                && a.tunnel.tls == b.tunnel.tls
                && a.identity == b.identity
                && a.public
                    .iter()
                    .map(|s| &s.name)
                    .eq(b.public.iter().map(|s| &s.name))
        }
        (Mode::Agent(a), Mode::Agent(b)) => {
            a.tunnel.secret == b.tunnel.secret
                && a.tunnel.tls == b.tunnel.tls
                && a.trust == b.trust
                && a.relay == b.relay
                && a.services
                    .iter()
                    .map(|s| &s.name)
                    .eq(b.services.iter().map(|s| &s.name))
        }
        _ => false,
    }
}

/// A listening port open now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenPort<'a> {
    /// The name of the listener it serves.
    pub listener: &'a str,
    /// Its role's name (`listen`, `tunnel`, `public.NAME`).
    pub role: &'a str,
    /// The address as configured (port 0 possibly).
    pub configured: SocketAddr,
    /// The address it is bound to.
    pub bound: SocketAddr,
    /// Whether its socket has SO_REUSEPORT.
    pub reuse_port: bool,
}

/// A listening port the new configuration wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WantedPort<'a> {
    /// The name of its listener.
    pub listener: &'a str,
    /// Its role's name.
    pub role: &'a str,
    /// The address as configured.
    pub addr: SocketAddr,
    /// Whether its listener asks for SO_REUSEPORT.
    pub reuse_port: bool,
}

/// For each wanted port, the open port it keeps (an index into `open`), or `None` to bind
/// a new one. An open port is kept for the same configured address, or for the address
/// it is bound to; a port 0 only by the same listener and role (another listener's "any
/// free port" is not this one's). Each open port is kept at most once, so an unchanged
/// address keeps its socket and its backlog: no client is refused during a reload.
pub fn match_ports(open: &[OpenPort<'_>], wanted: &[WantedPort<'_>]) -> Vec<Option<usize>> {
    let mut claimed = vec![false; open.len()];
    wanted
        .iter()
        .map(|w| {
            let same = |p: &OpenPort<'_>| {
                if w.addr.port() != 0 {
                    p.bound == w.addr || p.configured == w.addr
                } else {
                    p.configured == w.addr && p.role == w.role && p.listener == w.listener
                }
            };
            let found = (0..open.len()).find(|&i| !claimed[i] && same(&open[i]));
            if let Some(i) = found {
                claimed[i] = true;
            }
            found
        })
        .collect()
}

/// The open ports kept by `kept` (as [`match_ports`] gave it) whose SO_REUSEPORT differs
/// from what their new listener asks: each keeps its setting until a restart, as
/// (listener, bound address, the setting it keeps). The option is set before a socket is
/// bound, and a second socket cannot be bound to the address while the open one lacks it
/// (EADDRINUSE), so a reload, which binds everything new before closing anything, cannot
/// swap the socket; closing it first would refuse clients, and leave nothing to fall
/// back to if the new bind then failed.
pub fn reuse_port_kept<'a>(
    open: &[OpenPort<'_>],
    wanted: &[WantedPort<'a>],
    kept: &[Option<usize>],
) -> Vec<(&'a str, SocketAddr, bool)> {
    wanted
        .iter()
        .zip(kept)
        .filter_map(|(w, k)| {
            let p = open.get((*k)?)?;
            (p.reuse_port != w.reuse_port).then_some((w.listener, p.bound, p.reuse_port))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::parse;
    use std::path::Path;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    fn open<'a>(listener: &'a str, role: &'a str, configured: &str, bound: &str) -> OpenPort<'a> {
        OpenPort {
            listener,
            role,
            configured: addr(configured),
            bound: addr(bound),
            reuse_port: false,
        }
    }

    fn want<'a>(listener: &'a str, role: &'a str, a: &str) -> WantedPort<'a> {
        WantedPort {
            listener,
            role,
            addr: addr(a),
            reuse_port: false,
        }
    }

    #[test]
    fn a_port_is_kept_by_its_address_whatever_its_listener() {
        let ports = [
            open("a", "listen", "127.0.0.1:7000", "127.0.0.1:7000"),
            open("b", "listen", "127.0.0.1:0", "127.0.0.1:41000"),
        ];
        let wanted = [
            want("renamed", "listen", "127.0.0.1:7000"),
            want("c", "listen", "127.0.0.1:41000"),
            want("d", "listen", "127.0.0.1:7001"),
        ];
        assert_eq!(match_ports(&ports, &wanted), [Some(0), Some(1), None]);
    }

    #[test]
    fn port_zero_is_kept_only_by_its_listener_and_role() {
        let ports = [open("b", "listen", "127.0.0.1:0", "127.0.0.1:41000")];
        assert_eq!(
            match_ports(&ports, &[want("b", "listen", "127.0.0.1:0")]),
            [Some(0)]
        );
        assert_eq!(
            match_ports(&ports, &[want("other", "listen", "127.0.0.1:0")]),
            [None]
        );
        assert_eq!(
            match_ports(&ports, &[want("b", "tunnel", "127.0.0.1:0")]),
            [None]
        );
    }

    #[test]
    fn each_open_port_is_kept_once() {
        let ports = [open("b", "listen", "127.0.0.1:0", "127.0.0.1:41000")];
        let wanted = [
            want("b", "listen", "127.0.0.1:0"),
            want("b", "listen", "127.0.0.1:0"),
        ];
        assert_eq!(match_ports(&ports, &wanted), [Some(0), None]);
    }

    #[test]
    fn a_changed_reuse_port_keeps_the_open_socket_and_says_so() {
        let on = |p: OpenPort<'static>| OpenPort {
            reuse_port: true,
            ..p
        };
        let ports = [
            open("a", "listen", "127.0.0.1:7000", "127.0.0.1:7000"),
            on(open("b", "listen", "127.0.0.1:7001", "127.0.0.1:7001")),
            on(open("c", "listen", "127.0.0.1:7002", "127.0.0.1:7002")),
        ];
        let wanted = [
            WantedPort {
                reuse_port: true,
                ..want("a", "listen", "127.0.0.1:7000")
            },
            want("b", "listen", "127.0.0.1:7001"),
            WantedPort {
                reuse_port: true,
                ..want("c", "listen", "127.0.0.1:7002")
            },
            WantedPort {
                reuse_port: true,
                ..want("d", "listen", "127.0.0.1:7003")
            },
        ];
        // Toggled either way, the port is still matched by its address: kept, not rebound.
        let kept = match_ports(&ports, &wanted);
        assert_eq!(kept, [Some(0), Some(1), Some(2), None]);
        assert_eq!(
            reuse_port_kept(&ports, &wanted, &kept),
            [
                ("a", addr("127.0.0.1:7000"), false),
                ("b", addr("127.0.0.1:7001"), true),
            ],
            "unchanged (c) and new (d) ports need no restart"
        );
    }

    fn config(text: &str) -> super::super::Config {
        parse(text, Path::new("t.toml")).expect("valid")
    }

    const FORWARD: &str =
        "[[forward]]\nname = \"f\"\nlisten = \"127.0.0.1:0\"\nupstream = \"127.0.0.1:9\"\n";

    #[test]
    fn restart_needed_lists_changed_process_wide_settings() {
        let old = config(FORWARD);
        let new = config(&format!("buffer_size = \"32KiB\"\nlog_rate = 5\n{FORWARD}"));
        assert_eq!(
            restart_needed(&old.global, &new.global),
            ["buffer_size", "pool_budget", "log_rate"]
        );
        assert!(restart_needed(&old.global, &old.global).is_empty());
    }

    #[test]
    fn a_forward_keeps_its_state_and_a_mode_change_does_not() {
        let a = config(FORWARD);
        let b = config(&FORWARD.replace("127.0.0.1:9", "127.0.0.1:10"));
        assert!(keeps_state(&a.listeners[0].mode, &b.listeners[0].mode));
        let relay = crate::config::Mode::Relay(crate::config::Relay::default());
        assert!(!keeps_state(&a.listeners[0].mode, &relay));
        assert!(keeps_state(&relay, &relay));
    }

    #[test]
    fn a_change_of_tls_settings_restarts_the_tunnels() {
        use crate::config::{Agent, Mode, PemFile, Relay, TunnelTls};
        let relay = Relay::default();
        let mut plain = relay.clone();
        plain.tunnel.tls = TunnelTls::Off;
        let mut keyed = relay.clone();
        keyed.identity.key = Some(PemFile::default());
        let same = Mode::Relay(relay.clone());
        assert!(keeps_state(&same, &Mode::Relay(relay)));
        assert!(!keeps_state(&same, &Mode::Relay(plain)));
        assert!(!keeps_state(&same, &Mode::Relay(keyed)));
        let agent = Agent::default();
        let mut pinned = agent.clone();
        pinned.trust.pin = crate::os::fingerprint::Fingerprint::parse(&"0".repeat(64));
        let same = Mode::Agent(agent.clone());
        assert!(keeps_state(&same, &Mode::Agent(agent)));
        assert!(!keeps_state(&same, &Mode::Agent(pinned)));
    }
}
