//! Names with several addresses, as `connect` and `socks` listeners resolve them: each
//! address checked on its own (an address the policy denies is never dialed, the
//! others are), IPv6 first when both families are allowed, and the next address at
//! once when one is refused (Happy Eyeballs). The names come from an `/etc/hosts` of
//! the test's own, bind-mounted in a mount namespace of the proxy's own (`unshare -m`),
//! so the host's resolver and files are untouched.

use crate::support::*;
use std::net::SocketAddr;
use std::time::Duration;

/// The test's hosts file: `dual.test` has both loopback addresses, `v6only.test`
/// only `::1`.
const HOSTS: &str = "127.0.0.1 localhost\n::1 dual.test\n127.0.0.1 dual.test\n::1 v6only.test\n";

/// `tcpbridge MODE --listen 127.0.0.1:0 EXTRA...` seeing [`HOSTS`] as `/etc/hosts`;
/// `None` (outside CI) when a mount namespace cannot be made here.
fn proxy_with_hosts(mode: &str, extra: &[String]) -> Option<(Proxy, SecretDir)> {
    let probe = "mount --bind /etc/hosts /etc/hosts";
    if !tool("unshare", &["-m", "sh", "-c", probe]) {
        return None;
    }
    let dir = SecretDir::new();
    let hosts = dir.file("hosts", HOSTS.as_bytes());
    let script = format!(
        "mount --bind {} /etc/hosts && exec \"$0\" \"$@\"",
        hosts.display()
    );
    let mut args = vec![
        "-m",
        "sh",
        "-c",
        &script,
        BIN,
        mode,
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend(extra.iter().map(String::as_str));
    // unshare and sh exec in place: the PID is the proxy's.
    let proxy = Proxy::spawn_program("unshare", &args, |_| {});
    Some((proxy, dir))
}

/// A CONNECT to `target`: the status.
fn connect_status(proxy: &Proxy, target: &str) -> u16 {
    let (mut s, head) = connect_tunnel(proxy.addr(), target, "");
    let status = status_of(&head);
    if status == 200 {
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    }
    let end = read_end(&mut s);
    assert!(matches!(end, End::Eof), "{target}: {head} then {end:?}");
    status
}

fn v6(port: u16) -> SocketAddr {
    SocketAddr::new("::1".parse().expect("::1"), port)
}

#[test]
fn both_families_allowed_ipv6_is_dialed_first() {
    watchdog(|| {
        let (v4, _v6) = http_server_dual();
        let port = v4.addr.port();
        for mode in ["connect", "socks"] {
            let Some((proxy, _dir)) = proxy_with_hosts(mode, &allow_loopback(port, true)) else {
                return;
            };
            let target = format!("dual.test:{port}");
            if mode == "connect" {
                assert_eq!(connect_status(&proxy, &target), 200);
            } else {
                let mut s = connect(proxy.addr());
                let mut bytes = GREET_NONE.to_vec();
                bytes.extend(socks_request_name("dual.test", port));
                std::io::Write::write_all(&mut s, &bytes).expect("greeting and request");
                assert_eq!(read_exact_n(&mut s, 2, "method reply"), [5, 0]);
                let reply = read_socks_reply(&mut s);
                assert_eq!(reply.code, 0, "{reply:?}");
                assert!(
                    reply.bound.is_ipv6(),
                    "bound on the IPv6 connect: {reply:?}"
                );
            }
            let line = close_line_to(&proxy, &target);
            assert_field(&line, "upstream", &v6(port).to_string());
        }
    });
}

#[test]
fn a_denied_address_of_a_name_is_never_dialed() {
    watchdog(|| {
        let (v4, v6_server) = http_server_dual();
        let port = v4.addr.port();
        // Only the IPv4 address is allowed: dual.test goes there; v6only.test nowhere.
        let Some((proxy, _dir)) = proxy_with_hosts("connect", &allow_loopback(port, false)) else {
            return;
        };
        let dual = format!("dual.test:{port}");
        assert_eq!(connect_status(&proxy, &dual), 200);
        assert_field(
            &close_line_to(&proxy, &dual),
            "upstream",
            &v4.addr.to_string(),
        );
        let only = format!("v6only.test:{port}");
        assert_eq!(connect_status(&proxy, &only), 403);
        let line = close_line_to(&proxy, &only);
        assert_field(&line, "reason", "denied");
        assert_field(&line, "upstream", "-");
        assert_eq!(v6_server.accepted(), 0, "the denied address was dialed");
    });
}

#[test]
fn a_refused_ipv6_address_falls_back_to_ipv4_at_once() {
    watchdog(|| {
        // Only 127.0.0.1 listens at this port; [::1] at it refuses.
        let web = http_server();
        let port = web.addr.port();
        let mut flags = allow_loopback(port, true);
        flags.extend(owned(&["--metrics-listen", "127.0.0.1:0"]));
        let Some((proxy, _dir)) = proxy_with_hosts("connect", &flags) else {
            return;
        };
        let dual = format!("dual.test:{port}");
        let t0 = std::time::Instant::now();
        assert_eq!(connect_status(&proxy, &dual), 200);
        let took = t0.elapsed();
        let line = close_line_to(&proxy, &dual);
        assert_field(&line, "upstream", &web.addr.to_string());
        let failures = crate::support::prom::sum(
            &scrape_metrics(proxy.field_addr("metrics")),
            "tcpbridge_connect_failures_total",
            &[("listener", "connect")],
        );
        assert_eq!(failures, 1.0, "the refused IPv6 connect counted");
        // Not after the 250 ms head start: at once (10x a healthy few ms, still below).
        assert!(
            took < Duration::from_millis(250),
            "fell back after {took:?}"
        );
    });
}
