//! Reloading a relay from its configuration file: a change of limits and timeouts keeps
//! the agents' idle tunnels (no reconnect), and a new secret drops them, after which an
//! agent with the old secret is refused and counted as an authentication failure.

use crate::support::prom;
use crate::support::*;
use std::net::{Shutdown, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// The relay's file; with plain tunnels in a build without TLS (as the harness's agents).
fn relay_file(secret: &Path, pair_timeout: &str) -> String {
    let plain = if cfg!(feature = "tls") {
        ""
    } else {
        "tunnel_tls = \"off\"\n"
    };
    format!(
        "metrics_listen = \"127.0.0.1:0\"\n\n[[relay]]\nname = \"edge\"\n\
         tunnel_listen = \"127.0.0.1:0\"\npublic = {{ {SERVICE} = \"127.0.0.1:0\" }}\n\
         secret_file = \"{}\"\npair_timeout = \"{pair_timeout}\"\n{plain}",
        secret.display()
    )
}

/// A relay run from `relay.toml` in `dir` (pair timeout 10 s), and its secret file.
fn start_relay(dir: &SecretDir) -> (std::path::PathBuf, Proxy) {
    let secret = dir.file("secret", format!("{SECRET}\n").as_bytes());
    let file = dir.file("relay.toml", relay_file(&secret, "10s").as_bytes());
    let relay = Proxy::spawn(&["run", "--config", file.to_str().expect("path")]);
    (secret, relay)
}

fn idle_tunnels(metrics: SocketAddr) -> f64 {
    prom::sum(
        &scrape_metrics(metrics),
        "tcpbridge_idle_tunnels",
        &[("listener", "edge")],
    )
}

#[test]
fn relay_reload_keeps_tunnels_unless_the_secret_changes() {
    watchdog(|| {
        let up = echo_server();
        let dir = SecretDir::new();
        let (secret, mut relay) = start_relay(&dir);
        let (tunnel, metrics) = (relay.field_addr("edge.tunnel"), relay.field_addr("metrics"));
        let public = relay.field_addr(&format!("edge.public.{SERVICE}"));
        let agent = spawn_agent(tunnel, up.addr, &secret, &owned(&["--pool", "2"]));
        assert!(wait_for(Duration::from_secs(10), || idle_tunnels(metrics) == 2.0));

        // New limits and timeouts only: the tunnels stay, the agent never reconnects.
        dir.file("relay.toml", relay_file(&secret, "3s").as_bytes());
        relay.send_signal(libc::SIGHUP);
        let line = relay
            .wait_stdout("RELOADED ", Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no RELOADED line:\n{}", relay.stderr()));
        assert!(line.contains(&format!("edge.tunnel={tunnel}")), "{line}");
        assert!(
            line.contains(&format!("edge.public.{SERVICE}={public}")),
            "{line}"
        );
        assert_eq!(idle_tunnels(metrics), 2.0, "idle tunnels kept");
        let mut c = connect(public);
        echo_roundtrip(&mut c, b"after a reload");
        c.shutdown(Shutdown::Write).expect("shutdown");
        assert!(matches!(read_end(&mut c), End::Eof));
        assert!(
            !agent.stderr().contains("lost"),
            "the agent lost no tunnel:\n{}",
            agent.stderr()
        );

        // A new secret: the old tunnels go, and the agent's old secret is refused.
        let other = dir.file("other", format!("{OTHER_SECRET}\n").as_bytes());
        dir.file("relay.toml", relay_file(&other, "3s").as_bytes());
        relay.send_signal(libc::SIGHUP);
        assert!(relay
            .wait_stdout("RELOADED ", Duration::from_secs(10))
            .is_some());
        let refused = wait_for(Duration::from_secs(15), || {
            let s = scrape_metrics(metrics);
            prom::sum(&s, "tcpbridge_auth_failures_total", &[]) >= 1.0
                && prom::sum(&s, "tcpbridge_idle_tunnels", &[]) == 0.0
        });
        assert!(refused, "{}", relay.stderr());
        relay.assert_alive();
        relay.assert_no_panic();
    });
}

/// The relay's key lines in its log, in order.
#[cfg(feature = "tls")]
fn key_lines(relay: &Proxy) -> Vec<String> {
    relay
        .stderr()
        .lines()
        .filter(|l| l.contains("relay TLS key"))
        .map(str::to_string)
        .collect()
}

/// A reload that keeps the TLS settings keeps the relay's generated key (an agent that
/// pinned it keeps working); a reload that gives a key file restarts the tunnels with
/// that key, and an agent that accepts any key reconnects.
#[cfg(feature = "tls")]
#[test]
fn relay_reload_keeps_its_generated_key_unless_tls_settings_change() {
    watchdog(|| {
        let up = echo_server();
        let dir = SecretDir::new();
        let (secret, mut relay) = start_relay(&dir);
        let (tunnel, metrics) = (relay.field_addr("edge.tunnel"), relay.field_addr("metrics"));
        let public = relay.field_addr(&format!("edge.public.{SERVICE}"));
        assert!(relay.wait_log("relay TLS key", Duration::from_secs(5)));
        let first = key_lines(&relay);
        let pin = first[0]
            .split_whitespace()
            .last()
            .expect("a fingerprint")
            .to_string();
        let pinned = spawn_agent(
            tunnel,
            up.addr,
            &secret,
            &owned(&["--pool", "2", "--tunnel-tls-pin", &pin]),
        );
        assert!(wait_for(Duration::from_secs(10), || idle_tunnels(metrics) == 2.0));

        dir.file("relay.toml", relay_file(&secret, "3s").as_bytes());
        relay.send_signal(libc::SIGHUP);
        assert!(relay
            .wait_stdout("RELOADED ", Duration::from_secs(10))
            .is_some());
        assert_eq!(key_lines(&relay), first, "the key is kept");
        echo_once(public);
        drop(pinned);

        let key = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("src/os/tls/testdata/relay.key");
        let keyed = format!(
            "{}tunnel_tls_key = \"{}\"\n",
            relay_file(&secret, "3s"),
            key.display()
        );
        dir.file("relay.toml", keyed.as_bytes());
        relay.send_signal(libc::SIGHUP);
        assert!(relay
            .wait_stdout("RELOADED ", Duration::from_secs(10))
            .is_some());
        let lines = key_lines(&relay);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(!lines[1].contains("made at start-up"), "{lines:?}");
        let _any = spawn_agent(tunnel, up.addr, &secret, &owned(&["--pool", "1"]));
        echo_once(public);
        relay.assert_alive();
        relay.assert_no_panic();
    });
}
