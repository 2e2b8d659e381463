//! How `connect` and `socks` listeners refuse, beyond the default deny: a destination
//! that never answers (`504` / `06` at the connect timeout), a deny rule over an allow
//! rule, the proxy's own listener as a destination, and a source that keeps failing
//! its credentials (locked out, unless it authenticated before), a destination with no
//! route (`502 destination_ip_unroutable` / `03`). Each answer is checked
//! with its close reason.

use crate::support::*;
use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

const LOG: Duration = Duration::from_secs(10);

/// The refusal code of a tunnel request (panics if it opened).
fn refused(socks: bool, proxy: SocketAddr, to: SocketAddr) -> u16 {
    match open_tunnel(socks, proxy, &to.ip().to_string(), to.port()) {
        Ok(_) => panic!("a tunnel to {to} opened"),
        Err(code) => code,
    }
}

/// A tunnel that opens, echoes and closes cleanly.
fn echoes(socks: bool, proxy: SocketAddr, to: SocketAddr) {
    let mut s = open_tunnel(socks, proxy, &to.ip().to_string(), to.port())
        .unwrap_or_else(|code| panic!("a tunnel to {to} refused: {code}"));
    echo_roundtrip(&mut s, b"through");
    s.shutdown(Shutdown::Write).expect("shutdown");
    assert!(matches!(read_end(&mut s), End::Eof));
}

#[test]
fn a_destination_that_never_answers_times_out() {
    watchdog(|| {
        let hole = blackhole();
        for (mode, want) in [("connect", 504u16), ("socks", 6)] {
            let mut flags = allow_loopback(hole.addr.port(), false);
            flags.extend(owned(&["--connect-timeout", "1s"]));
            let mut proxy = dynamic_proxy(mode, &strs(&flags));
            let base = proxy.baseline();
            let t0 = Instant::now();
            let socks = mode == "socks";
            if socks {
                assert_eq!(refused(true, proxy.addr(), hole.addr), want);
            } else {
                let (mut s, head) = connect_tunnel(proxy.addr(), &hole.addr.to_string(), "");
                assert_eq!(status_of(&head), want, "{head}");
                assert!(head.contains("error=connection_timeout"), "{head}");
                assert!(matches!(read_end(&mut s), End::Eof));
            }
            let took = t0.elapsed();
            assert!(
                took >= Duration::from_millis(900) && took < Duration::from_secs(10),
                "{mode}: answered after {took:?} with --connect-timeout 1s"
            );
            let dest = format!(" dest={} ", hole.addr);
            assert!(proxy.wait_log(&dest, LOG), "{}", proxy.stderr());
            assert_eq!(closes_with(&proxy, "connect-timeout"), 1, "{mode}");
            proxy.assert_quiescent(base, LOG);
        }
    });
}

#[test]
fn a_deny_rule_beats_an_allow_rule() {
    watchdog(|| {
        let (denied, open) = (echo_server(), echo_server());
        let deny = format!("127.0.0.1/32:{}", denied.addr.port());
        let proxy = socks_proxy(&["--allow", "127.0.0.1/32", "--deny", &deny]);
        assert_eq!(refused(true, proxy.addr(), denied.addr), 2);
        echoes(true, proxy.addr(), open.addr);
        assert!(
            wait_for(LOG, || closes_with(&proxy, "denied") == 1),
            "{}",
            proxy.stderr()
        );
        assert_eq!(denied.accepted(), 0);
    });
}

#[test]
fn the_proxy_is_never_its_own_destination() {
    watchdog(|| {
        // socks: every port of 127.0.0.1 allowed, yet not the listener itself.
        let echo = echo_server();
        let proxy = socks_proxy(&["--allow", "127.0.0.1/32"]);
        echoes(true, proxy.addr(), echo.addr);
        assert_eq!(refused(true, proxy.addr(), proxy.addr()), 2, "a loop");
        // connect on a port known before the start, allowed by name of its port.
        let port = closed_port().port();
        let listen = format!("127.0.0.1:{port}");
        let allow = format!("127.0.0.1/32:{port}");
        let connect = Proxy::spawn(&["connect", "--listen", &listen, "--allow", &allow]);
        assert_eq!(
            refused(false, connect.addr(), connect.addr()),
            403,
            "a loop"
        );
        for p in [&proxy, &connect] {
            let dest = format!(" dest={} ", p.addr());
            assert!(
                p.wait_log(&dest, LOG),
                "no close line to itself:\n{}",
                p.stderr()
            );
            let line = close_lines(p)
                .into_iter()
                .find(|l| l.contains(&dest))
                .expect("the line waited for");
            assert_field(&line, "reason", "denied");
            assert_field(&line, "upstream", "-");
        }
    });
}

/// A CONNECT from `from` with `user:password`: the status.
fn connect_as(from: &str, proxy: SocketAddr, to: SocketAddr, auth: &str) -> u16 {
    let mut s = connect_from(from, proxy);
    let token = base64(auth.as_bytes());
    let req = format!(
        "CONNECT {to} HTTP/1.1\r\nHost: {to}\r\nProxy-Authorization: Basic {token}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("send the CONNECT");
    let mut first = [0u8; 1];
    match std::io::Read::read(&mut s, &mut first) {
        // Closed unanswered: a FIN, or a reset (the request was never read).
        Ok(0) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
        Ok(_) => {
            let rest = read_head(&mut s);
            status_of(&format!("{}{rest}", first[0] as char))
        }
        Err(e) => panic!("reading the answer from {from}: {e}"),
    }
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn failing_credentials_lock_a_stranger_out_but_not_a_known_user() {
    watchdog(|| {
        assert_eq!(base64(b"alice:s3cret"), "YWxpY2U6czNjcmV0");
        let echo = echo_server();
        let dir = SecretDir::new();
        let users = dir.file("users", b"alice:s3cret\n");
        let mut flags = allow_loopback(echo.addr.port(), false);
        flags.extend(owned(&[
            "--credentials-file",
            users.to_str().expect("utf-8"),
        ]));
        let proxy = connect_proxy(&strs(&flags));
        let (p, to) = (proxy.addr(), echo.addr);

        // A known user from 127.0.0.3 first proves its credentials.
        assert_eq!(connect_as("127.0.0.3", p, to, "alice:s3cret"), 200);
        for i in 0..10 {
            assert_eq!(
                connect_as("127.0.0.2", p, to, "alice:guess"),
                407,
                "stranger {i}"
            );
            assert_eq!(
                connect_as("127.0.0.3", p, to, "alice:typo"),
                407,
                "known {i}"
            );
        }
        // The stranger is refused even with the right password: closed, no answer.
        assert_eq!(connect_as("127.0.0.2", p, to, "alice:s3cret"), 0);
        // The known user is let in (perhaps slowed).
        let t0 = Instant::now();
        assert_eq!(connect_as("127.0.0.3", p, to, "alice:s3cret"), 200);
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        assert!(
            wait_for(LOG, || closes_with(&proxy, "auth") == 21),
            "20 wrong credentials and one locked-out source: {} auth closes\n{}",
            closes_with(&proxy, "auth"),
            proxy.stderr()
        );
    });
}

#[test]
fn a_destination_with_no_route_is_answered_unroutable() {
    watchdog(|| {
        // A namespace with only loopback: 192.0.2.1 has no route, so the connect fails
        // at once with "network unreachable".
        if !enter_private_netns() {
            return;
        }
        let to: SocketAddr = "192.0.2.1:443".parse().expect("address");
        let mut connect = connect_proxy(&["--allow", "192.0.2.1/32:443"]);
        let base = connect.baseline();
        let (_, head) = connect_tunnel(connect.addr(), "192.0.2.1:443", "");
        assert_eq!(status_of(&head), 502, "{head}");
        assert!(
            head.contains("Proxy-Status: tcpbridge; error=destination_ip_unroutable\r\n"),
            "{head}"
        );
        let mut socks = socks_proxy(&["--allow", "192.0.2.1/32"]);
        let socks_base = socks.baseline();
        assert_eq!(
            refused(true, socks.addr(), to),
            3,
            "SOCKS5 network unreachable"
        );
        for (p, base) in [(&mut connect, base), (&mut socks, socks_base)] {
            assert!(
                p.wait_log(" dest=192.0.2.1:443 ", LOG),
                "no close line:\n{}",
                p.stderr()
            );
            p.assert_quiescent(base, Duration::from_secs(5));
        }
    });
}
