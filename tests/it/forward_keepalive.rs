//! TCP keepalive and TCP_USER_TIMEOUT on both sides of a forward session.
//!
//! Contract (README, `--tcp-keepalive`, `--tcp-user-timeout`): every connection the
//! proxy holds gets the listener's keepalive (default `60s:15s:4`) and user timeout
//! (default idle + interval × count, 2 minutes; off when keepalive is off and it is not
//! given); accepted connections inherit them from the listening socket, so a reload
//! that changes them sets them there again: new connections get the new values and
//! live ones keep theirs.
//!
//! Two views of each socket: the exact values the kernel holds for the proxy's own
//! socket (read through a copy of its descriptor, [`Proxy::connected_sockets`]), and
//! `ss -o`, which shows the keepalive timer the kernel is running on it. What a dead
//! peer then does to a session is the fault matrix's (`faults_keepalive`).

use crate::support::*;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(10);

/// Seconds left on the keepalive timer of the one established socket matching
/// `filter` (an `ss` filter), from `ss -Htno`; `None` when it has no keepalive timer.
fn keepalive_left(filter: &str) -> Option<f64> {
    let out = Command::new("ss")
        .args(["-Htno", "state", "established", filter])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text.find("timer:(keepalive,")? + "timer:(keepalive,".len();
    let rest = &text[at..];
    let v = &rest[..rest.find(',')?];
    // `6.9sec`, `59sec`, `1min`, `1min2sec` or `500ms`.
    let (min, sec) = match v.split_once("min") {
        Some((m, s)) => (m.parse::<f64>().ok()?, s),
        None => (0.0, v),
    };
    let sec = if let Some(s) = sec.strip_suffix("sec") {
        s.parse::<f64>().ok()?
    } else if let Some(ms) = sec.strip_suffix("ms") {
        ms.parse::<f64>().ok()? / 1000.0
    } else if sec.is_empty() {
        0.0
    } else {
        return None;
    };
    Some(min * 60.0 + sec)
}

/// The keepalive timers of the proxy's two sockets of the one session between the
/// listener `proxy` and `upstream`: client side, upstream side.
fn timers(proxy: SocketAddr, upstream: SocketAddr) -> [Option<f64>; 2] {
    [
        keepalive_left(&format!("( sport = :{} )", proxy.port())),
        keepalive_left(&format!("( dport = :{} )", upstream.port())),
    ]
}

/// The options of the proxy's socket to client `c` and of its socket to `upstream`, or
/// `None` when they cannot be read here (skipped outside CI). Both must have
/// TCP_NODELAY, which every connection gets whatever its keepalive.
fn both_sides(proxy: &Proxy, c: &TcpStream, upstream: SocketAddr) -> Option<[TcpOptions; 2]> {
    let client = c.local_addr().expect("client address");
    let all = proxy.connected_sockets()?;
    let of = |peer: SocketAddr| {
        let s = all.iter().find(|s| s.peer == peer);
        let s = s.unwrap_or_else(|| panic!("the proxy holds no socket to {peer}: {all:?}"));
        assert!(s.nodelay, "no TCP_NODELAY on the socket to {peer}: {s:?}");
        s.options
    };
    Some([of(client), of(upstream)])
}

/// `--tcp-keepalive 7s:3s:5 --tcp-user-timeout 31s`: both of the proxy's sockets hold
/// exactly those values, and the kernel runs a keepalive timer of at most 7 s on each.
#[test]
fn both_sides_get_the_configured_keepalive() {
    watchdog(|| {
        let up = echo_server();
        let mut proxy = Proxy::forward(
            &[up.addr],
            &["--tcp-keepalive", "7s:3s:5", "--tcp-user-timeout", "31s"],
        );
        let baseline = proxy.baseline();
        let mut c = connect(proxy.addr());
        echo_roundtrip(&mut c, b"x");
        let want = TcpOptions::new(Some((7, 3, 5)), Some(31_000));
        if let Some(got) = both_sides(&proxy, &c, up.addr) {
            assert_eq!(got, [want; 2], "client side, upstream side");
        }
        if tool("ss", &["-V"]) {
            for (side, left) in ["client", "upstream"]
                .iter()
                .zip(timers(proxy.addr(), up.addr))
            {
                let left = left.unwrap_or_else(|| panic!("no keepalive timer on the {side} side"));
                assert!(left > 0.0 && left <= 7.0, "{side} side: {left} s left");
            }
        }
        drop(c);
        proxy.assert_quiescent(baseline, SETTLE);
    });
}

/// Without the options: 60s:15s:4 and a user timeout of 2 minutes on both sides, and a
/// keepalive timer of about a minute.
#[test]
fn the_defaults_are_a_minute_of_idle_and_two_minutes_in_all() {
    watchdog(|| {
        let up = echo_server();
        let mut proxy = Proxy::forward(&[up.addr], &[]);
        echo_once(proxy.addr());
        let baseline = proxy.baseline();
        let mut c = connect(proxy.addr());
        echo_roundtrip(&mut c, b"x");
        let want = TcpOptions::new(Some((60, 15, 4)), Some(120_000));
        if let Some(got) = both_sides(&proxy, &c, up.addr) {
            assert_eq!(got, [want; 2], "client side, upstream side");
        }
        if tool("ss", &["-V"]) {
            for left in timers(proxy.addr(), up.addr) {
                let left = left.expect("a keepalive timer by default");
                assert!(left > 30.0 && left <= 60.0, "{left} s left, want about 60");
            }
        }
        drop(c);
        proxy.assert_quiescent(baseline, SETTLE);
    });
}

/// `off` turns keepalive off and, not given, the user timeout with it; a user timeout
/// given stays without keepalive, and `off` leaves keepalive alone.
#[test]
fn off_turns_each_off() {
    watchdog(|| {
        let up = echo_server();
        for (args, want) in [
            (&["--tcp-keepalive", "off"][..], TcpOptions::new(None, None)),
            (
                &["--tcp-keepalive", "off", "--tcp-user-timeout", "1m"],
                TcpOptions::new(None, Some(60_000)),
            ),
            (
                &["--tcp-user-timeout", "off"],
                TcpOptions::new(Some((60, 15, 4)), None),
            ),
        ] {
            let mut proxy = Proxy::forward(&[up.addr], args);
            echo_once(proxy.addr());
            let baseline = proxy.baseline();
            let mut c = connect(proxy.addr());
            echo_roundtrip(&mut c, b"x");
            if let Some(got) = both_sides(&proxy, &c, up.addr) {
                assert_eq!(got, [want; 2], "{args:?}: client side, upstream side");
            }
            if want.keepalive.is_none() && tool("ss", &["-V"]) {
                assert_eq!(timers(proxy.addr(), up.addr), [None, None], "{args:?}");
            }
            drop(c);
            proxy.assert_quiescent(baseline, SETTLE);
        }
    });
}

/// The first upstream refuses, so the session's upstream is a redial to the second: it
/// gets the options too (the derived user timeout: 7 + 3 × 5 = 22 s).
#[test]
fn a_redialed_upstream_gets_them_too() {
    watchdog(|| {
        let (up, refused) = (echo_server(), closed_port());
        let mut proxy = Proxy::forward(
            &[refused, up.addr],
            &[
                "--balance",
                "failover",
                "--tcp-keepalive",
                "7s:3s:5",
                "--metrics-listen",
                "127.0.0.1:0",
            ],
        );
        let baseline = proxy.baseline();
        let mut c = connect(proxy.addr());
        echo_roundtrip(&mut c, b"x");
        let metrics = proxy.field_addr("metrics");
        assert_eq!(
            upstream_field(metrics, refused, "connect_failures").as_deref(),
            Some("1"),
            "the session tried the refusing upstream first"
        );
        let want = TcpOptions::new(Some((7, 3, 5)), Some(22_000));
        if let Some(got) = both_sides(&proxy, &c, up.addr) {
            assert_eq!(got, [want; 2], "client side, redialed upstream side");
        }
        drop(c);
        proxy.assert_quiescent(baseline, SETTLE);
    });
}

/// Warm connections, opened before any client, get them as well: the two of the full
/// pool, the one a session was lent, and the one opened to refill the pool after it.
#[test]
fn warm_connections_get_them_too() {
    watchdog(|| {
        let up = echo_server();
        let mut proxy = Proxy::forward(
            &[up.addr],
            &[
                "--warm",
                "2",
                "--tcp-keepalive",
                "7s:3s:5",
                "--metrics-listen",
                "127.0.0.1:0",
            ],
        );
        let metrics = proxy.field_addr("metrics");
        let baseline = warm_baseline(&proxy, metrics, 2);
        let want = TcpOptions::new(Some((7, 3, 5)), Some(22_000));
        let warm_sides = |proxy: &Proxy| -> Option<Vec<ProxySocket>> {
            let all = proxy.connected_sockets()?;
            Some(all.into_iter().filter(|s| s.peer == up.addr).collect())
        };
        let Some(pool) = warm_sides(&proxy) else {
            return;
        };
        assert_eq!(pool.len(), 2, "the full pool: {pool:?}");
        for s in &pool {
            assert_eq!(s.options, want, "warm connection {}", s.local);
        }

        let mut c = connect(proxy.addr());
        echo_roundtrip(&mut c, b"lent");
        wait_pool_full(metrics, 2);
        let Some(now) = warm_sides(&proxy) else {
            return;
        };
        assert_eq!(now.len(), 3, "the lent connection and a full pool: {now:?}");
        let refill: Vec<_> = now.iter().filter(|s| !pool.contains(s)).collect();
        assert_eq!(refill.len(), 1, "one refill: {now:?}");
        for s in &now {
            assert_eq!(s.options, want, "upstream connection {}", s.local);
        }
        drop(c);
        warm_baseline(&proxy, metrics, 2);
        proxy.assert_quiescent(baseline, SETTLE);
    });
}

/// Accepted connections inherit keepalive from the listening socket: a reload that
/// changes it re-sets it there, so a client accepted after the reload has the new idle
/// time on both sides, and one accepted before keeps the old. The first accepted after
/// the reload is set by hand (it may have queued before the listening socket changed);
/// the next one inherits: both hold exactly the new values.
#[test]
fn a_reload_changes_keepalive_for_new_connections() {
    watchdog(|| {
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
        echo_once(addr);
        let baseline = proxy.baseline();
        let mut before = connect(addr);
        echo_roundtrip(&mut before, b"x");
        let local = before.local_addr().expect("local address");

        dir.file("tcpbridge.toml", table("9s:3s:3").as_bytes());
        proxy.send_signal(libc::SIGHUP);
        proxy
            .wait_stdout("RELOADED ", SETTLE)
            .unwrap_or_else(|| panic!("no RELOADED line:\n{}", proxy.stderr()));
        let mut first = connect(addr);
        echo_roundtrip(&mut first, b"y");
        let mut after = connect(addr);
        echo_roundtrip(&mut after, b"z");

        let old = TcpOptions::new(Some((300, 5, 3)), Some(315_000));
        let new = TcpOptions::new(Some((9, 3, 3)), Some(18_000));
        if let Some(sockets) = proxy.connected_sockets() {
            let of = |c: &TcpStream| {
                let peer = c.local_addr().expect("local address");
                let s = sockets.iter().find(|s| s.peer == peer);
                let s = s.unwrap_or_else(|| panic!("no socket to {peer}: {sockets:?}"));
                assert!(s.nodelay, "no TCP_NODELAY on the socket to {peer}: {s:?}");
                s.options
            };
            assert_eq!(of(&before), old, "accepted before the reload");
            assert_eq!(
                of(&first),
                new,
                "first accepted after the reload (set by hand)"
            );
            assert_eq!(of(&after), new, "accepted after that (inherited)");
        }
        if tool("ss", &["-V"]) {
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
        }
        drop((before, first, after));
        proxy.assert_quiescent(baseline, SETTLE);
    });
}

/// A reload that changes both options: the session opened before keeps its sockets'
/// values, a session opened after gets the new ones on both sides.
#[test]
fn a_reload_gives_new_connections_the_new_values() {
    watchdog(|| {
        let up = echo_server();
        let dir = SecretDir::new();
        let table = |extra: &str| {
            format!(
                "[[forward]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\n{extra}",
                up.addr
            )
        };
        let file = dir.file(
            "tcpbridge.toml",
            table("tcp_keepalive = \"7s:3s:5\"\n").as_bytes(),
        );
        let path = file.to_str().expect("utf-8 path").to_string();
        let mut proxy = Proxy::spawn(&["run", "--config", &path]);
        let listen = proxy.field_addr("web.listen");
        echo_once(listen);
        let baseline = proxy.baseline();
        let mut before = connect(listen);
        echo_roundtrip(&mut before, b"before");

        let after_text = format!("[defaults]\ntcp_user_timeout = \"45s\"\n\n{}", {
            let t = table("tcp_keepalive = \"9s:4s:6\"\n");
            t.replace("127.0.0.1:0", &listen.to_string())
        });
        dir.file("tcpbridge.toml", after_text.as_bytes());
        proxy.send_signal(libc::SIGHUP);
        proxy
            .wait_stdout("RELOADED ", SETTLE)
            .unwrap_or_else(|| panic!("no RELOADED line:\n{}", proxy.stderr()));
        let mut after = connect(listen);
        echo_roundtrip(&mut after, b"after");
        echo_roundtrip(&mut before, b"still");

        let Some(sockets) = proxy.connected_sockets() else {
            return;
        };
        let of = |peer: SocketAddr| {
            let s = sockets.iter().find(|s| s.peer == peer);
            s.unwrap_or_else(|| panic!("no socket to {peer}: {sockets:?}"))
                .options
        };
        let old = TcpOptions::new(Some((7, 3, 5)), Some(22_000));
        let new = TcpOptions::new(Some((9, 4, 6)), Some(45_000));
        assert_eq!(
            of(before.local_addr().expect("addr")),
            old,
            "live session, client side"
        );
        assert_eq!(
            of(after.local_addr().expect("addr")),
            new,
            "new session, client side"
        );
        let mut upstream_sides: Vec<TcpOptions> = sockets
            .iter()
            .filter(|s| s.peer == up.addr)
            .map(|s| s.options)
            .collect();
        upstream_sides.sort_by_key(|o| o.user_timeout);
        assert_eq!(upstream_sides, [old, new], "upstream sides, old then new");
        drop((before, after));
        proxy.assert_quiescent(baseline, SETTLE);
    });
}

/// A reload that turns keepalive off (no user timeout given, so none is derived): the
/// listening socket loses them too, so connections accepted after it, the first (set by
/// hand) and the next (inherited), hold neither, on both sides; the session from before
/// keeps its values and its timer.
#[test]
fn a_reload_to_off_leaves_new_connections_without_them() {
    watchdog(|| {
        let up = echo_server();
        let dir = SecretDir::new();
        let table = |keepalive: &str| {
            format!(
                "[[forward]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\n\
                 tcp_keepalive = \"{keepalive}\"\n",
                up.addr
            )
        };
        let file = dir.file("tcpbridge.toml", table("7s:3s:5").as_bytes());
        let path = file.to_str().expect("utf-8 path");
        let mut proxy = Proxy::spawn(&["run", "--config", path]);
        let addr = proxy.field_addr("web.listen");
        echo_once(addr);
        let baseline = proxy.baseline();
        let mut before = connect(addr);
        echo_roundtrip(&mut before, b"before");

        dir.file("tcpbridge.toml", table("off").as_bytes());
        proxy.send_signal(libc::SIGHUP);
        proxy
            .wait_stdout("RELOADED ", SETTLE)
            .unwrap_or_else(|| panic!("no RELOADED line:\n{}", proxy.stderr()));
        let mut first = connect(addr);
        echo_roundtrip(&mut first, b"first");
        let mut after = connect(addr);
        echo_roundtrip(&mut after, b"after");

        if let Some(sockets) = proxy.connected_sockets() {
            let client_side = |c: &TcpStream| {
                let peer = c.local_addr().expect("local address");
                let s = sockets.iter().find(|s| s.peer == peer);
                let s = s.unwrap_or_else(|| panic!("no socket to {peer}: {sockets:?}"));
                assert!(s.nodelay, "no TCP_NODELAY on the socket to {peer}: {s:?}");
                s.options
            };
            let old = TcpOptions::new(Some((7, 3, 5)), Some(22_000));
            let off = TcpOptions::new(None, None);
            assert_eq!(client_side(&before), old, "accepted before the reload");
            assert_eq!(
                client_side(&first),
                off,
                "first accepted after (set by hand)"
            );
            assert_eq!(client_side(&after), off, "accepted after that (inherited)");
            let mut upstream_sides: Vec<TcpOptions> = sockets
                .iter()
                .filter(|s| s.peer == up.addr)
                .map(|s| s.options)
                .collect();
            upstream_sides.sort_by_key(|o| o.user_timeout);
            assert_eq!(upstream_sides, [off, off, old], "upstream sides");
        }
        if tool("ss", &["-V"]) {
            let port = |c: &TcpStream| c.local_addr().expect("local address").port();
            let timer = |c: &TcpStream| {
                keepalive_left(&format!(
                    "( sport = :{} and dport = :{} )",
                    addr.port(),
                    port(c)
                ))
            };
            assert!(
                timer(&before).is_some(),
                "before the reload: no keepalive timer"
            );
            assert_eq!(timer(&after), None, "after the reload: a keepalive timer");
        }
        drop((before, first, after));
        proxy.assert_quiescent(baseline, SETTLE);
    });
}
