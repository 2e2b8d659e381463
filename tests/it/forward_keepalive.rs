//! TCP keepalive on both sides of a forward session: the proxy's client-side and
//! upstream-side sockets carry a keepalive timer with the configured idle time (read
//! with `ss -o`), the default is about a minute, and a reload's new value reaches the
//! connections accepted after it (they inherit it from the listening socket).

use crate::support::*;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

/// Seconds left on the keepalive timer of the established socket whose local address
/// is `local` or whose peer is `peer` (one line of `ss -tno`).
fn keepalive_left(filter: &str) -> Option<f64> {
    let out = Command::new("ss")
        .args(["-Htno", "state", "established", filter])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text.find("timer:(keepalive,")? + "timer:(keepalive,".len();
    let rest = &text[at..];
    let end = rest.find(',')?;
    let v = &rest[..end];
    // `6.9sec`, `59sec`, `4min59sec` or `1min` forms.
    if let Some((m, s)) = v.strip_suffix("sec").and_then(|v| v.split_once("min")) {
        Some(m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
    } else if let Some(s) = v.strip_suffix("sec") {
        s.parse().ok()
    } else if let Some(m) = v.strip_suffix("min") {
        m.parse::<f64>().ok().map(|m| m * 60.0)
    } else {
        v.strip_suffix("ms")
            .and_then(|ms| ms.parse::<f64>().ok())
            .map(|ms| ms / 1000.0)
    }
}

/// Both of the proxy's sockets of one idle session: timers left, client side first.
fn timers(proxy: SocketAddr, upstream: SocketAddr) -> (Option<f64>, Option<f64>) {
    let client_side = keepalive_left(&format!("( sport = :{} )", proxy.port()));
    let upstream_side = keepalive_left(&format!("( dport = :{} )", upstream.port()));
    (client_side, upstream_side)
}

#[test]
fn both_sides_get_the_configured_keepalive() {
    watchdog(|| {
        if !tool("ss", &["-V"]) {
            return;
        }
        let up = echo_server();
        let mut proxy = Proxy::forward(
            &[up.addr],
            &["--tcp-keepalive", "7s:3s:5", "--tcp-user-timeout", "31s"],
        );
        let baseline = proxy.baseline();
        let mut c = connect(proxy.addr());
        echo_roundtrip(&mut c, b"x");
        let (a, b) = timers(proxy.addr(), up.addr);
        for (side, left) in [("client", a), ("upstream", b)] {
            let left = left.unwrap_or_else(|| panic!("no keepalive timer on the {side} side"));
            assert!(
                left > 0.0 && left <= 7.0,
                "{side} side: {left} s left, want at most 7"
            );
        }
        drop(c);
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}

#[test]
fn the_default_keepalive_is_a_minute_and_off_turns_it_off() {
    watchdog(|| {
        if !tool("ss", &["-V"]) {
            return;
        }
        let up = echo_server();
        let proxy = Proxy::forward(&[up.addr], &[]);
        let mut c = connect(proxy.addr());
        echo_roundtrip(&mut c, b"x");
        let (a, b) = timers(proxy.addr(), up.addr);
        for left in [a, b] {
            let left = left.expect("a keepalive timer by default");
            assert!(left > 30.0 && left <= 60.0, "{left} s left, want about 60");
        }
        drop(c);
        let off = Proxy::forward(&[up.addr], &["--tcp-keepalive", "off"]);
        let mut c = connect(off.addr());
        echo_roundtrip(&mut c, b"x");
        assert_eq!(
            timers(off.addr(), up.addr),
            (None, None),
            "no timer with off"
        );
    });
}

/// Accepted connections inherit keepalive from the listening socket: a reload that
/// changes it re-sets it there, so a client accepted after the reload has the new idle
/// time on both sides, and one accepted before keeps the old.
#[test]
fn a_reload_changes_keepalive_for_new_connections() {
    watchdog(|| {
        if !tool("ss", &["-V"]) {
            return;
        }
        let up = echo_server();
        let dir = SecretDir::new();
        let table = |keepalive: &str| {
            format!(
                "[[forward]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\n\
                 tcp_keepalive = \"{keepalive}\"\n",
                up.addr
            )
        };
        let file = dir.file("tcpbridge.toml", table("300s:5s:3").as_bytes());
        let path = file.to_str().expect("utf-8 path");
        let mut proxy = Proxy::spawn(&["run", "--config", path]);
        let addr = proxy.field_addr("web.listen");
        let mut before = connect(addr);
        echo_roundtrip(&mut before, b"x");
        let local = before.local_addr().expect("local address");

        dir.file("tcpbridge.toml", table("9s:3s:3").as_bytes());
        proxy.send_signal(libc::SIGHUP);
        proxy
            .wait_stdout("RELOADED ", Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no RELOADED line:\n{}", proxy.stderr()));
        // The first accepted after the reload is set by hand (it may have queued before
        // the listening socket changed); the next one inherits.
        let mut first = connect(addr);
        echo_roundtrip(&mut first, b"y");
        let mut after = connect(addr);
        echo_roundtrip(&mut after, b"z");

        let old = keepalive_left(&format!("( dport = :{} )", local.port()));
        let old = old.expect("a timer on the connection accepted before the reload");
        assert!(old > 200.0, "accepted before: {old} s left, want about 300");
        let new = keepalive_left(&format!(
            "( sport = :{} and dport = :{} )",
            addr.port(),
            after.local_addr().expect("local address").port()
        ));
        let new = new.expect("a timer on the connection accepted after the reload");
        assert!(
            new > 0.0 && new <= 9.0,
            "accepted after: {new} s left, want at most 9"
        );
    });
}

/// A peer that vanishes while the session is idle (iptables DROP both ways, in a private
/// network namespace) is found by the probes: with `1s:1s:2` the session ends about 3 s
/// later, long before the idle timeout (1 h here), with an upstream error.
#[test]
fn a_vanished_upstream_is_found_by_keepalive() {
    watchdog(|| {
        if !enter_private_netns() {
            return;
        }
        let up = echo_server();
        let args = [
            "--tcp-keepalive",
            "1s:1s:2",
            "--tcp-user-timeout",
            "off",
            "--idle-timeout",
            "1h",
        ];
        let mut proxy = Proxy::forward(&[up.addr], &args);
        let baseline = proxy.baseline();
        let mut c = connect(proxy.addr());
        echo_roundtrip(&mut c, b"x");
        let port = up.addr.port().to_string();
        for dir in ["--dport", "--sport"] {
            if !iptables(&["-A", "INPUT", "-p", "tcp", dir, &port, "-j", "DROP"]) {
                return;
            }
        }
        let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
        let (end, took) = timed(|| read_end(&mut c));
        assert!(
            !matches!(end, End::TimedOut),
            "no end within 30 s (healthy: about 3 s)"
        );
        assert!(
            took < Duration::from_secs(30),
            "ended after {took:?} (healthy: about 3 s)"
        );
        assert!(
            proxy.wait_log("reason=upstream-", Duration::from_secs(5)),
            "the close names the upstream:\n{}",
            proxy.stderr()
        );
        proxy.assert_quiescent(baseline, Duration::from_secs(10));
    });
}
