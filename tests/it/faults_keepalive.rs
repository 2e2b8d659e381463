//! Fault matrix B10–B12 (forward mode): a peer that vanishes without a word, as behind a
//! NAT gateway that forgot the mapping, while the session is idle or has bytes in
//! flight. In a private network namespace, iptables DROPs every packet of the peer's
//! port both ways; the idle timeout is 60 s, so only keepalive or TCP_USER_TIMEOUT can
//! end the session within the bounds below.
//!
//! Contract (README, `--tcp-keepalive`, `--tcp-user-timeout`; docs/operations.md, "Dead
//! peers"): probes after IDLE, every INTERVAL, COUNT unanswered end the connection
//! (here 1s:1s:2: about 3 s); sent bytes unacknowledged for the user timeout end it
//! (here 2 s); the session then closes as an error of that side (`upstream-error`,
//! `client-error`) and, under `mirror`, the other side gets RST.
//!
//! Timing: a firm lower bound where closing early would be a bug (nothing can end an
//! idle session before the probes ran out), and an upper bound of more than ten times
//! the time seen on a healthy machine (about 3 s and 2.4 s), for a loaded 2-core
//! machine; the watchdog allows for the bound and the settling after it. Each scenario
//! ends with the common invariants ([`FaultProxy::assert_invariants`]).

use crate::support::*;
use std::io::Write;
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(10);
/// A whole scenario: the bound on the peer's end and the settling after it.
const LIMIT: Duration = Duration::from_secs(90);
/// Keepalive of 1s:1s:2 alone: a dead peer is found about 3 s after the last packet.
const PROBES: &[&str] = &[
    "idle_timeout = \"60s\"",
    "tcp_keepalive = \"1s:1s:2\"",
    "tcp_user_timeout = \"off\"",
];
/// Expected: 3 s of probes (3.05-3.08 s seen); never before 2 s; by 40 s.
const PROBES_NOT_BEFORE: Duration = Duration::from_secs(2);
const PROBES_BY: Duration = Duration::from_secs(40);
/// Expected: the user timeout of 2 s and the retransmission timer's step (2.4 s seen);
/// never before 1.5 s; by 30 s.
const USER_TIMEOUT_BY: Duration = Duration::from_secs(30);

/// DROP every packet to or from `port` on the namespace's loopback.
fn drop_port(port: u16) -> bool {
    let port = port.to_string();
    ["--dport", "--sport"]
        .iter()
        .all(|dir| iptables(&["-A", "INPUT", "-p", "tcp", dir, &port, "-j", "DROP"]))
}

/// Reads how `s` ends, waiting up to `within`; returns the end and how long it took.
fn end_within(s: &mut TcpStream, within: Duration) -> (End, Duration) {
    s.set_read_timeout(Some(within)).expect("read timeout");
    timed(|| read_end(s))
}

/// B10: after a round trip the upstream vanishes and the session idles. With keepalive
/// 1s:1s:2 (user timeout off) the proxy's probes go unanswered: the client gets RST
/// 2–40 s later (about 3 s), the close is `upstream-error`, nothing is left behind.
fn idle_upstream_that_vanished_is_found_by_keepalive() {
    watchdog_for(LIMIT, || {
        if !enter_private_netns() {
            return;
        }
        let up = echo_server();
        let mut fp = FaultProxy::forward(&[up.addr], PROBES);
        let mut c = connect(fp.main);
        echo_roundtrip(&mut c, b"hello");
        if !drop_port(up.addr.port()) {
            return;
        }
        let (end, took) = end_within(&mut c, PROBES_BY);
        eprintln!("B10: the client saw {end:?} after {took:?}");
        assert!(
            matches!(end, End::Reset),
            "client: {end:?} after {took:?}, want RST"
        );
        assert!(
            took >= PROBES_NOT_BEFORE,
            "closed after {took:?}: before the probes ran out"
        );
        fp.expect_closed("upstream-error", 1.0, SETTLE);
        fp.assert_invariants(SETTLE);
    });
}
both_paths!(idle_upstream_that_vanished_is_found_by_keepalive);

/// B11: the same on the client's side: after a round trip the client vanishes. The
/// proxy's probes to it go unanswered: the upstream gets RST 2–40 s later, the close is
/// `client-error`.
#[test]
fn idle_client_that_vanished_is_found_by_keepalive() {
    watchdog_for(LIMIT, || {
        if !enter_private_netns() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let up = scripted_server(move |mut s| {
            echo_roundtrip_upstream(&mut s);
            let _ = tx.send(end_within(&mut s, PROBES_BY));
        });
        let mut fp = FaultProxy::forward(&[up.addr], PROBES);
        let mut c = connect(fp.main);
        echo_roundtrip(&mut c, b"hello");
        if !drop_port(fp.main.port()) {
            return;
        }
        let (end, took) = rx
            .recv_timeout(PROBES_BY + SETTLE)
            .expect("the upstream's report");
        eprintln!("B11: the upstream saw {end:?} after {took:?}");
        assert!(
            matches!(end, End::Reset),
            "upstream: {end:?} after {took:?}, want RST"
        );
        assert!(
            took >= PROBES_NOT_BEFORE,
            "closed after {took:?}: before the probes ran out"
        );
        fp.expect_closed("client-error", 1.0, SETTLE);
        drop(c);
        fp.assert_invariants(SETTLE);
    });
}

/// Echoes one read of up to 5 bytes back (the upstream's half of [`echo_roundtrip`]).
fn echo_roundtrip_upstream(s: &mut TcpStream) {
    let got = read_exact_n(s, 5, "upstream");
    s.write_all(&got).expect("upstream: echo");
}

/// B12: keepalive off, `tcp_user_timeout = "2s"`: after a round trip the upstream
/// vanishes and the client sends 1 KiB, which the proxy writes and nobody
/// acknowledges. The client gets RST 1.5–30 s later (2 s and the retransmission
/// timer's step), the close is `upstream-error`.
fn unacknowledged_bytes_end_at_the_user_timeout() {
    watchdog_for(LIMIT, || {
        if !enter_private_netns() {
            return;
        }
        let up = echo_server();
        let lines = [
            "idle_timeout = \"60s\"",
            "tcp_keepalive = \"off\"",
            "tcp_user_timeout = \"2s\"",
        ];
        let mut fp = FaultProxy::forward(&[up.addr], &lines);
        let mut c = connect(fp.main);
        echo_roundtrip(&mut c, b"hello");
        if !drop_port(up.addr.port()) {
            return;
        }
        c.write_all(&pattern(12, 1024))
            .expect("client: write 1 KiB");
        let (end, took) = end_within(&mut c, USER_TIMEOUT_BY);
        eprintln!("B12: the client saw {end:?} after {took:?}");
        assert!(
            matches!(end, End::Reset),
            "client: {end:?} after {took:?}, want RST"
        );
        assert!(
            took >= Duration::from_millis(1500),
            "closed after {took:?}: before the user timeout"
        );
        fp.expect_closed("upstream-error", 1.0, SETTLE);
        fp.assert_invariants(SETTLE);
    });
}
both_paths!(unacknowledged_bytes_end_at_the_user_timeout);
