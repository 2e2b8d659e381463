//! Forward mode, upstream failures: a refused upstream, falling through to
//! the next `--upstream`, a connect that never completes (`--connect-timeout`)
//! and a connect that "succeeds" by connecting to itself.
//!
//! Contract: when an attempt fails (refused, timed out) the next `--upstream`
//! is tried; when none is left the client is closed (FIN) at once.

use crate::support::*;
use socket2::{Domain, Socket, Type};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Expects the proxy to close a fresh client without data; returns how long
/// it took from the end of the client's connect.
fn expect_client_closed(proxy_addr: SocketAddr, what: &str) -> Duration {
    let mut c = connect(proxy_addr);
    let (end, took) = timed(|| read_end(&mut c));
    assert!(
        matches!(end, End::Eof),
        "{what}: client should get EOF, got {end:?} after {took:?}"
    );
    took
}

/// Nothing listens on the only upstream: the client is closed within 1 s.
#[test]
fn refused_upstream_closes_client_at_once() {
    watchdog(|| {
        let dead = closed_port();
        let mut proxy = Proxy::forward(&[dead], &[]);
        let baseline = proxy.baseline();

        let took = expect_client_closed(proxy.addr(), "refused upstream");
        assert!(
            took < Duration::from_secs(1),
            "client closed only after {took:?}"
        );
        assert!(
            proxy.wait_log("reason=connect-refused", Duration::from_secs(2)),
            "no `reason=connect-refused` close line; stderr:\n{}",
            proxy.stderr()
        );

        proxy.assert_quiescent(baseline, Duration::from_secs(2));
    });
}

/// The close line of a session whose upstream refused names that upstream, so an
/// operator sees which upstream is down.
#[test]
fn refused_session_close_line_names_the_refusing_upstream() {
    watchdog(|| {
        let dead = closed_port();
        let mut proxy = Proxy::forward(&[dead], &[]);
        let baseline = proxy.baseline();
        expect_client_closed(proxy.addr(), "refused upstream");
        assert!(
            proxy.wait_log("reason=connect-refused", Duration::from_secs(2)),
            "no `reason=connect-refused` close line; stderr:\n{}",
            proxy.stderr()
        );
        let log = proxy.stderr();
        let line = log
            .lines()
            .find(|l| l.contains("reason=connect-refused"))
            .unwrap_or_default();
        assert!(
            line.contains(&format!(" upstream={dead} ")),
            "want `upstream={dead}` in {line:?}"
        );
        proxy.assert_quiescent(baseline, Duration::from_secs(2));
    });
}

/// First `--upstream` refused, second an echo server: sessions are served by
/// the second.
#[test]
fn refused_first_upstream_falls_through_to_second() {
    watchdog(|| {
        let dead = closed_port();
        let up = echo_server();
        let mut proxy = Proxy::forward(&[dead, up.addr], &[]);
        echo_once(proxy.addr());
        let baseline = proxy.baseline();

        echo_once(proxy.addr());
        assert_eq!(
            up.accepted(),
            2,
            "both sessions should reach the second upstream"
        );

        proxy.assert_quiescent(baseline, Duration::from_secs(2));
        up.assert_no_handler_panics();
    });
}

/// The upstream never answers the SYN: with `--connect-timeout 500ms` the
/// client is closed after about 0.5 s (asserted: >= 0.4 s, < 3 s).
#[test]
fn connect_timeout_closes_client() {
    watchdog(|| {
        let hole = blackhole();
        let mut proxy = Proxy::forward(&[hole.addr], &["--connect-timeout", "500ms"]);
        let baseline = proxy.baseline();

        let took = expect_client_closed(proxy.addr(), "connect timeout");
        assert!(
            took >= Duration::from_millis(400),
            "closed after {took:?}, before the 500 ms connect timeout"
        );
        assert!(
            took < Duration::from_secs(3),
            "closed only after {took:?} with a 500 ms connect timeout"
        );
        assert!(
            proxy.wait_log("reason=connect-timeout", Duration::from_secs(2)),
            "no `reason=connect-timeout` close line; stderr:\n{}",
            proxy.stderr()
        );

        proxy.assert_quiescent(baseline, Duration::from_secs(2));
    });
}

/// First `--upstream` blackholed, second an echo server: the session is
/// served by the second after the first attempt's timeout.
#[test]
fn connect_timeout_falls_through_to_next_upstream() {
    watchdog(|| {
        let hole = blackhole();
        let up = echo_server();
        let mut proxy = Proxy::forward(&[hole.addr, up.addr], &["--connect-timeout", "500ms"]);
        let baseline = proxy.baseline();

        let ((), took) = timed(|| echo_once(proxy.addr()));
        assert!(
            took >= Duration::from_millis(400),
            "echo after {took:?}: the first attempt did not wait its timeout"
        );
        assert_eq!(
            up.accepted(),
            1,
            "the second upstream should serve the session"
        );

        proxy.assert_quiescent(baseline, Duration::from_secs(2));
        up.assert_no_handler_panics();
    });
}

/// In a private netns whose only ephemeral port is P, `--upstream
/// 127.0.0.1:P` (nothing listening) makes the proxy's connect meet itself
/// (TCP simultaneous open). The proxy must treat that as a failed connect:
/// the client is closed quickly and never gets its own bytes back.
#[test]
fn self_connect_is_a_failed_connect() {
    watchdog(|| {
        if !enter_private_netns() {
            return;
        }
        const P: u16 = 40000;
        let range = "/proc/sys/net/ipv4/ip_local_port_range";
        std::fs::write(range, format!("{P} {P}"))
            .expect("write ip_local_port_range in the private netns");
        let now = std::fs::read_to_string(range).expect("read ip_local_port_range");
        let now: Vec<&str> = now.split_whitespace().collect();
        assert_eq!(
            now,
            [P.to_string(), P.to_string()],
            "ip_local_port_range did not take effect"
        );
        let probe = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        assert_eq!(
            probe.local_addr().expect("local_addr").port(),
            P,
            "ephemeral ports are not restricted to {P}"
        );
        drop(probe);
        // The hazard itself: a plain connect to 127.0.0.1:P meets itself.
        let target: SocketAddr = ([127, 0, 0, 1], P).into();
        match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
            Ok(s) => {
                let (l, p) = (s.local_addr().expect("local"), s.peer_addr().expect("peer"));
                assert_eq!(
                    l, p,
                    "a connect to an unused port in the range should self-connect"
                );
                reset(s); // RST to itself: no TIME-WAIT left on the only port
            }
            Err(e) => eprintln!("note: this kernel refused instead of self-connecting ({e})"),
        }

        let mut proxy = Proxy::spawn(&[
            "forward",
            "--listen",
            "127.0.0.1:40001",
            "--upstream",
            &target.to_string(),
        ]);
        let baseline = proxy.baseline();

        // The client uses a fixed port outside the range, leaving P to the proxy.
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("client socket");
        let from: SocketAddr = ([127, 0, 0, 1], 45000).into();
        sock.bind(&from.into())
            .expect("bind client to 127.0.0.1:45000");
        sock.connect_timeout(&proxy.addr().into(), Duration::from_secs(5))
            .expect("client connect");
        let mut c = with_timeouts(sock.into());
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        c.write_all(b"ping-self").expect("client write");
        let ((got, end), took) = timed(|| recv_all(&mut c, 1024));
        assert!(
            got.is_empty(),
            "client got {:?} back: the proxy forwarded to its own socket",
            String::from_utf8_lossy(&got)
        );
        assert!(
            matches!(end, End::Eof | End::Reset),
            "client should be closed, got {end:?} after {took:?}"
        );
        assert!(
            took < Duration::from_secs(2),
            "client closed only after {took:?}"
        );
        drop(c);

        proxy.assert_quiescent(baseline, Duration::from_secs(2));
    });
}
