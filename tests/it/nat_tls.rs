//! Tunnels over TLS (the default, `docs/tls.md`): what a peer on the path sees and
//! cannot do, and what each end says when the other speaks the other kind of tunnel.
//!
//! - an observer relaying the tunnel's TCP bytes never sees the service's bytes (and
//!   sees them with `--tunnel-tls off`);
//! - a man in the middle with its own keys on both legs is refused, and counted, by both
//!   ends: nothing is paired;
//! - a plain agent against a TLS relay, and a TLS agent against a plain relay: no
//!   tunnel, and a line on each side that says why;
//! - a wrong pinned key is refused; the relay's key (from a file, or the one it made
//!   and logged) pinned works;
//! - garbage and a slow TLS hello are closed by the handshake deadline.
//!
//! Bulk data, half-close, resets, banners and 200 concurrent sessions through TLS
//! tunnels are `nat_data`'s tests, which run on the default (TLS).

use crate::support::tls::{Mitm, Observer};
use crate::support::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Bytes sent through the service: they must never cross the tunnel in clear.
const MARKER: &[u8] = b"tcpbridge-marker-7d1e0c-never-on-the-wire";

/// How long a misconfigured agent is watched for a READY it must not print.
const NO_READY: Duration = Duration::from_secs(3);

/// A fixed relay key (Ed25519, PKCS#8 PEM) of the TLS unit tests.
fn relay_key() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/os/tls/testdata/relay.key")
}

/// The fingerprint of the relay's key, from its start-up line.
fn logged_fingerprint(relay: &Proxy) -> String {
    relay.wait_log("relay TLS key", Duration::from_secs(5));
    let stderr = relay.stderr();
    let line = stderr
        .lines()
        .find(|l| l.contains("relay TLS key"))
        .unwrap_or_else(|| panic!("no key line in the relay's log\n{stderr}"));
    let at = line.find("sha256:").expect("a sha256: fingerprint");
    line[at..at + 7 + 64].to_string()
}

/// An agent expected to fail: launched, and checked to print no READY.
fn failing_agent(
    relay: SocketAddr,
    up: SocketAddr,
    secret: &std::path::Path,
    extra: &[&str],
) -> Proxy {
    let mut args = owned(&["--pool", "1"]);
    args.extend(owned(extra));
    let args = agent_args(relay, up, secret, &args);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (agent, first_line) = Proxy::launch(&refs);
    if let Ok(l) = first_line.recv_timeout(NO_READY) {
        panic!("the agent printed {l:?}\n{}", agent.stderr());
    }
    agent
}

/// The one port `proxy` listens on (an agent's metrics: it prints no READY line while
/// no tunnel is up), from its sockets in `/proc`.
fn listening_addr(proxy: &Proxy) -> SocketAddr {
    let rows = proxy.owned_tcp();
    let port = rows.iter().filter(|s| s.state == TCP_LISTEN).find_map(|s| {
        // The row's first field that is not a label ("tcp:", "0:") is the local
        // address, ADDR:PORT in hex.
        let local = s.row.split_whitespace().find(|f| !f.ends_with(':'))?;
        u16::from_str_radix(local.rsplit(':').next()?, 16).ok()
    });
    match port {
        Some(port) => SocketAddr::from(([127, 0, 0, 1], port)),
        None => panic!("no listening socket among {rows:?}"),
    }
}

/// Sends [`MARKER`] (many times) through a chain whose agent reaches the relay through
/// an [`Observer`]; what the observer saw.
fn observed(relay_extra: &[&str], agent_extra: &[&str]) -> Vec<u8> {
    let up = echo_server();
    let dir = SecretDir::new();
    let secret = dir.file("secret", format!("{SECRET}\n").as_bytes());
    let (relay, tunnel, public) =
        spawn_relay(&secret, "127.0.0.1:0", "127.0.0.1:0", &owned(relay_extra));
    let observer = Observer::new(tunnel);
    let mut extra = owned(&["--pool", "1"]);
    extra.extend(owned(agent_extra));
    let agent = spawn_agent(observer.addr, up.addr, &secret, &extra);
    let mut c = connect(public);
    echo_roundtrip(&mut c, &MARKER.repeat(100));
    drop(c);
    relay.assert_no_panic();
    agent.assert_no_panic();
    observer.seen()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn an_observer_on_the_path_never_sees_the_service_bytes() {
    watchdog(|| {
        let seen = observed(&[], &[]);
        assert!(seen.len() > 4000, "the observer saw {} bytes", seen.len());
        assert!(
            !contains(&seen, MARKER),
            "the marker crossed a TLS tunnel in clear"
        );
        assert!(
            !contains(&seen, b"TCPB"),
            "tunnel frames crossed a TLS tunnel in clear"
        );
        let plain = observed(&PLAIN, &PLAIN);
        assert!(
            contains(&plain, MARKER),
            "with --tunnel-tls off the observer should see the marker ({} bytes seen)",
            plain.len()
        );
    });
}

#[test]
fn a_man_in_the_middle_with_its_own_keys_is_refused_by_both_ends() {
    watchdog(|| {
        let up = echo_server();
        let dir = SecretDir::new();
        let secret = dir.file("secret", format!("{SECRET}\n").as_bytes());
        let metrics = ["--metrics-listen", "127.0.0.1:0", "--pair-timeout", "1s"];
        let (relay, tunnel, public) =
            spawn_relay(&secret, "127.0.0.1:0", "127.0.0.1:0", &owned(&metrics));
        let mitm = Mitm::new(tunnel);
        let agent = failing_agent(mitm.addr, up.addr, &secret, &metrics[..2]);
        assert!(
            mitm.legs_up() >= 1,
            "the man in the middle made no TLS legs\n{}",
            agent.stderr()
        );
        let failed = failure_line(
            &relay,
            "127.0.0.1:0".parse().expect("addr"),
            Duration::from_secs(5),
        );
        assert!(
            failed.is_some_and(|l| l.contains("authentication failed")),
            "the relay should refuse the relayed proof\n{}",
            relay.stderr()
        );
        let counted = metric_total(relay.field_addr("metrics"), "tcpbridge_auth_failures_total");
        assert!(
            counted >= 1.0,
            "the relay counted {counted} authentication failures"
        );
        assert!(
            agent.wait_log("denied by the relay", Duration::from_secs(5)),
            "the agent should be refused\n{}",
            agent.stderr()
        );
        let counted = metric_total(listening_addr(&agent), "tcpbridge_auth_failures_total");
        assert!(
            counted >= 1.0,
            "the agent counted {counted} authentication failures"
        );
        // Nothing was paired: a public client waits out its pair timeout unserved.
        let mut c = connect(public);
        let _ = c.write_all(MARKER);
        assert!(matches!(read_end(&mut c), End::Eof | End::Reset));
        assert_eq!(up.accepted(), 0, "the service must see no connection");
        relay.assert_no_panic();
        agent.assert_no_panic();
    });
}

#[test]
fn a_plain_agent_and_a_tls_relay_each_say_why_there_is_no_tunnel() {
    watchdog(|| {
        let up = echo_server();
        let dir = SecretDir::new();
        let secret = dir.file("secret", format!("{SECRET}\n").as_bytes());
        let quick = ["--handshake-timeout", "1s"];
        let (relay, tunnel, _) = spawn_relay(&secret, "127.0.0.1:0", "127.0.0.1:0", &owned(&quick));
        // The agent waits longer than the relay: both deadlines are reached, the relay's
        // first (the agent closing first would only be a peer that left, to the relay).
        let agent = failing_agent(
            tunnel,
            up.addr,
            &secret,
            &["--handshake-timeout", "2s", PLAIN[0], PLAIN[1]],
        );
        assert!(
            relay.wait_log("no TLS hello came", Duration::from_secs(5)),
            "relay:\n{}",
            relay.stderr()
        );
        assert!(
            agent.wait_log("no challenge came", Duration::from_secs(8)),
            "agent:\n{}",
            agent.stderr()
        );
        assert!(
            agent.wait_log("not encrypted: tunnel-tls off", Duration::from_secs(5)),
            "the agent warns that tunnels are plain\n{}",
            agent.stderr()
        );
    });
}

#[test]
fn a_tls_agent_and_a_plain_relay_each_say_why_there_is_no_tunnel() {
    watchdog(|| {
        let up = echo_server();
        let dir = SecretDir::new();
        let secret = dir.file("secret", format!("{SECRET}\n").as_bytes());
        let (relay, tunnel, _) = spawn_relay(&secret, "127.0.0.1:0", "127.0.0.1:0", &owned(&PLAIN));
        assert!(
            relay.wait_log("not encrypted: tunnel-tls off", Duration::from_secs(5)),
            "{}",
            relay.stderr()
        );
        let agent = failing_agent(tunnel, up.addr, &secret, &[]);
        assert!(
            relay.wait_log("the agent speaks TLS", Duration::from_secs(5)),
            "relay:\n{}",
            relay.stderr()
        );
        assert!(
            agent.wait_log("the relay does not speak TLS", Duration::from_secs(5)),
            "agent:\n{}",
            agent.stderr()
        );
    });
}

#[test]
fn a_wrong_pin_is_refused_and_the_relays_key_pinned_works() {
    watchdog(|| {
        let up = echo_server();
        let dir = SecretDir::new();
        let secret = dir.file("secret", format!("{SECRET}\n").as_bytes());
        let key = relay_key();
        let args = owned(&["--tunnel-tls-key", key.to_str().expect("path")]);
        let (relay, tunnel, public) = spawn_relay(&secret, "127.0.0.1:0", "127.0.0.1:0", &args);
        let pin = logged_fingerprint(&relay);
        let wrong = format!("sha256:{}", "0".repeat(64));
        let agent = failing_agent(tunnel, up.addr, &secret, &["--tunnel-tls-pin", &wrong]);
        assert!(
            agent.wait_log("TLS handshake failed", Duration::from_secs(5)),
            "agent:\n{}",
            agent.stderr()
        );
        assert!(
            agent.stderr().contains("tunnel-tls-pin"),
            "agent:\n{}",
            agent.stderr()
        );
        assert!(
            relay.wait_log("TLS handshake failed", Duration::from_secs(5)),
            "the relay should log the agent's refusal\n{}",
            relay.stderr()
        );
        drop(agent);
        let right = spawn_agent(
            tunnel,
            up.addr,
            &secret,
            &owned(&["--tunnel-tls-pin", &pin]),
        );
        echo_once(public);
        right.assert_no_panic();

        // A relay whose key is made at start-up logs it, and that pin works too.
        let (made, tunnel, public) = spawn_relay(&secret, "127.0.0.1:0", "127.0.0.1:0", &[]);
        let pin = logged_fingerprint(&made);
        let agent = spawn_agent(
            tunnel,
            up.addr,
            &secret,
            &owned(&["--tunnel-tls-pin", &pin]),
        );
        echo_once(public);
        agent.assert_no_panic();
    });
}

/// Connects to `tunnel`, sends `bytes` then one byte every 200 ms (`dribble`), and
/// returns how long until the relay closed the connection.
fn closed_after(tunnel: SocketAddr, bytes: &[u8], dribble: bool) -> Duration {
    let start = Instant::now();
    let mut s = TcpStream::connect(tunnel).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 256];
    while start.elapsed() < Duration::from_secs(10) {
        match std::io::Read::read(&mut s, &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if dribble && s.write_all(&[0x01]).is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    start.elapsed()
}

#[test]
fn garbage_and_a_slow_tls_hello_are_closed_by_the_handshake_deadline() {
    watchdog(|| {
        let up = echo_server();
        let dir = SecretDir::new();
        let secret = dir.file("secret", format!("{SECRET}\n").as_bytes());
        let quick = ["--handshake-timeout", "1s"];
        let (relay, tunnel, public) =
            spawn_relay(&secret, "127.0.0.1:0", "127.0.0.1:0", &owned(&quick));
        let garbage = closed_after(tunnel, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false);
        assert!(
            garbage < Duration::from_millis(1500),
            "garbage lived {garbage:?}"
        );
        assert!(
            relay.wait_log("its first byte is no TLS record", Duration::from_secs(5)),
            "relay:\n{}",
            relay.stderr()
        );
        // A TLS handshake record header, then its body one byte at a time.
        let slow = closed_after(tunnel, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01], true);
        assert!(
            slow >= Duration::from_millis(800) && slow < Duration::from_millis(2500),
            "a slow hello lived {slow:?}, want about 1 s"
        );
        assert!(
            relay.wait_log("handshake timeout", Duration::from_secs(5)),
            "relay:\n{}",
            relay.stderr()
        );
        // Two failures from 127.0.0.1: an agent from there is still served.
        let agent = spawn_agent(tunnel, up.addr, &secret, &owned(&["--pool", "1"]));
        echo_once(public);
        agent.assert_no_panic();
        relay.assert_no_panic();
    });
}

/// An agent opens its pool a few handshakes at a time: 40 TLS tunnels from one address
/// fill without the relay evicting any of them (it holds 8 handshakes per source).
#[test]
fn a_large_pool_fills_over_tls_without_evicting_itself() {
    watchdog(|| {
        let up = echo_server();
        let dir = SecretDir::new();
        let secret = dir.file("secret", format!("{SECRET}\n").as_bytes());
        let metrics = owned(&["--metrics-listen", "127.0.0.1:0"]);
        let (relay, tunnel, public) = spawn_relay(&secret, "127.0.0.1:0", "127.0.0.1:0", &metrics);
        let agent = spawn_agent(tunnel, up.addr, &secret, &owned(&["--pool", "40"]));
        let at = relay.field_addr("metrics");
        let full = wait_for(Duration::from_secs(10), || {
            metric_total(at, "tcpbridge_idle_tunnels") >= 40.0
        });
        assert!(full, "the pool of 40 did not fill\n{}", relay.stderr());
        assert!(!relay.stderr().contains("evicted"), "{}", relay.stderr());
        echo_once(public);
        agent.assert_no_panic();
    });
}
