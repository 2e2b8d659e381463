//! Fault matrix B1-B7 (RELIABILITY.md §4.2): upstream failures and timeouts in
//! forward mode, each scenario ending with the common invariants
//! ([`FaultProxy::assert_invariants`]). B8 and B9 (the relay's tunnel
//! handshake) are in `faults_handshake.rs`, B10-B12 (peers that vanish:
//! keepalive and the user timeout) in `faults_keepalive.rs`.
//!
//! Contract (README, Semantics): a refused upstream closes the client (FIN)
//! at once (`connect-refused`), a silent one after `connect_timeout`
//! (`connect-timeout`), an unreachable one at once (`connect-error`); no
//! delivered byte for `idle_timeout` closes both sides (`idle-timeout`),
//! any delivered byte restarts it; one finished direction and then silence
//! for `half_close_timeout` closes both (`half-close-timeout`).
//!
//! Scenarios that move bytes or a FIN through a session (B4 b, B5, B6, B7)
//! run on both data paths (`::copy`, `::splice`); the connect failures (B1-B3)
//! and the silent session (B4 a) never read or write a byte, so they run once.
//!
//! Timing checks: a firm lower bound where closing early would be a bug, and
//! generous upper bounds for a loaded 2-core machine.

use crate::support::*;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Settle bound of the invariant checks.
const SETTLE: Duration = Duration::from_secs(10);
/// The matrix's test configuration.
const MATRIX: &[&str] = &[
    "connect_timeout = \"500ms\"",
    "idle_timeout = \"1s\"",
    "half_close_timeout = \"1s\"",
];
/// A timeout of 1 s must not fire before this.
const NOT_BEFORE: Duration = Duration::from_millis(800);
/// ... and must have fired by this (generous: loaded machines).
const BY: Duration = Duration::from_secs(10);

/// Connects a client to `addr` and waits for the end of the stream: it must
/// be a FIN with no data; returns how long it took.
fn client_gets_fin(addr: SocketAddr) -> Duration {
    let mut c = connect(addr);
    let (end, took) = timed(|| read_end(&mut c));
    assert!(matches!(end, End::Eof), "client: {end:?}, want EOF (FIN)");
    took
}

/// B1: nothing listens on the upstream port: the client gets FIN at once
/// (within 1 s), the close is `connect-refused`.
#[test]
fn refused_upstream_closes_client_at_once() {
    watchdog(|| {
        let mut fp = FaultProxy::forward(&[closed_port()], MATRIX);
        let took = client_gets_fin(fp.main);
        assert!(took < Duration::from_secs(1), "closed after {took:?}");
        fp.expect_closed("connect-refused", 1.0, SETTLE);
        fp.assert_invariants(SETTLE);
    });
}

/// B1 (variant): in a private netns an upstream listens but iptables answers
/// its SYNs with a TCP reset: FIN at once, `connect-refused`.
#[test]
fn syn_rejected_with_reset_closes_client_at_once() {
    watchdog(|| {
        if !enter_private_netns() {
            return;
        }
        let up = echo_server();
        let port = up.addr.port().to_string();
        let rule = [
            "-A",
            "INPUT",
            "-p",
            "tcp",
            "--dport",
            &port,
            "--syn",
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ];
        if !iptables(&rule) {
            return;
        }
        let mut fp = FaultProxy::forward(&[up.addr], MATRIX);
        let took = client_gets_fin(fp.main);
        assert!(took < Duration::from_secs(1), "closed after {took:?}");
        assert_eq!(up.accepted(), 0, "the upstream accepted through the REJECT");
        fp.expect_closed("connect-refused", 1.0, SETTLE);
        fp.assert_invariants(SETTLE);
    });
}

/// B2: in a private netns iptables drops the upstream's SYNs: with
/// `connect_timeout = "500ms"` the client gets FIN after 0.4 s to 3 s, the
/// close is `connect-timeout` and the pending connect socket is gone.
#[test]
fn blackholed_upstream_closes_client_at_connect_timeout() {
    watchdog(|| {
        if !enter_private_netns() {
            return;
        }
        let up = echo_server();
        let port = up.addr.port().to_string();
        if !iptables(&[
            "-A", "INPUT", "-p", "tcp", "--dport", &port, "--syn", "-j", "DROP",
        ]) {
            return;
        }
        let mut fp = FaultProxy::forward(&[up.addr], MATRIX);
        let took = client_gets_fin(fp.main);
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(3),
            "closed after {took:?}, want about 500 ms"
        );
        fp.expect_closed("connect-timeout", 1.0, SETTLE);
        fp.assert_invariants(SETTLE);
    });
}

/// B3 body: strace attached to the running proxy makes `syscall` fail with
/// `errno`: the client gets FIN at once (3 s bound: strace slows the
/// process), the close is `connect-error`; strace detaches and the proxy
/// serves again.
fn injected_connect_failure(syscall: &str, errno: &str) {
    let up = echo_server();
    let mut fp = FaultProxy::forward(&[up.addr], MATRIX);
    let Some(strace) = Strace::attach(fp.pid(), &format!("{syscall}:error={errno}")) else {
        return;
    };
    let took = client_gets_fin(fp.main);
    strace.detach();
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    assert_eq!(up.accepted(), 0, "the upstream was reached despite {errno}");
    fp.expect_closed("connect-error", 1.0, SETTLE);
    fp.assert_invariants(SETTLE);
}

/// B3: `connect` fails with EHOSTUNREACH.
#[test]
fn host_unreachable_on_connect_closes_client_at_once() {
    watchdog(|| injected_connect_failure("connect", "EHOSTUNREACH"));
}

/// B3: `connect` fails with ENETUNREACH.
#[test]
fn network_unreachable_on_connect_closes_client_at_once() {
    watchdog(|| injected_connect_failure("connect", "ENETUNREACH"));
}

/// B3: `socket` for the upstream fails with EMFILE.
#[test]
fn no_descriptor_for_the_upstream_socket_closes_client_at_once() {
    watchdog(|| injected_connect_failure("socket", "EMFILE"));
}

/// Whether the upstream's peer (the proxy) has closed `s`: one byte written,
/// then a read must end (EOF, RST or a write error).
fn upstream_sees_closed(s: &mut TcpStream) -> bool {
    if s.write_all(b"?").is_err() {
        return true;
    }
    !matches!(read_end(s), End::TimedOut)
}

/// From `since` (taken before what starts the proxy's timer, so a slow test
/// thread cannot make the close look early), the client reads EOF after about
/// the configured 1 s (not before [`NOT_BEFORE`], by [`BY`]), and the
/// upstream's socket is closed too.
fn assert_timed_out_both_ways(since: Instant, c: &mut TcpStream, u: &mut TcpStream) {
    let end = read_end(c);
    let took = since.elapsed();
    assert!(matches!(end, End::Eof), "client: {end:?}, want EOF");
    assert!(
        took >= NOT_BEFORE && took < BY,
        "closed after {took:?}, want about 1 s"
    );
    assert!(
        upstream_sees_closed(u),
        "the upstream's socket is still open"
    );
}

/// B4 (a): both sides silent: the client gets FIN after 0.8 s to 10 s
/// (`idle_timeout = "1s"`), the upstream finds its peer gone, the close is
/// `idle-timeout`.
#[test]
fn silent_session_is_closed_on_both_sides_at_idle_timeout() {
    watchdog(|| {
        let (tx, rx) = mpsc::channel();
        let up = scripted_server(move |s| {
            let _ = tx.send(s);
        });
        let mut fp = FaultProxy::forward(&[up.addr], MATRIX);
        // Before the connect: the proxy's timer cannot start earlier.
        let since = Instant::now();
        let mut c = connect(fp.main);
        let mut u = rx.recv_timeout(IO_TIMEOUT).expect("upstream accepted");
        assert_timed_out_both_ways(since, &mut c, &mut u);
        fp.expect_closed("idle-timeout", 1.0, SETTLE);
        fp.assert_invariants(SETTLE);
    });
}

/// B4 (b): the upstream sends one byte every 300 ms for 3 s (each byte
/// delivered is progress), then half-closes: the client gets all 10 bytes,
/// then EOF; nothing is closed for idleness.
fn trickle_every_300ms_keeps_the_session_open() {
    watchdog(|| {
        let up = scripted_server(|mut s| {
            for b in 0..10u8 {
                thread::sleep(Duration::from_millis(300)); // the trickle's pace
                if s.write_all(&[b]).is_err() {
                    return;
                }
            }
            let _ = s.shutdown(Shutdown::Write);
            let _ = recv_all(&mut s, 16);
        });
        let mut fp = FaultProxy::forward(&[up.addr], MATRIX);
        let mut c = connect(fp.main);
        let (got, end) = recv_all(&mut c, 64);
        assert!(
            matches!(end, End::Eof),
            "client: {end:?} after {got:?}, want EOF"
        );
        assert_eq!(got, (0..10).collect::<Vec<u8>>(), "client: trickled bytes");
        drop(c);
        fp.expect_closed("upstream-eof", 1.0, SETTLE);
        assert_eq!(
            fp.closed("idle-timeout"),
            0.0,
            "a trickling session was closed as idle"
        );
        fp.assert_invariants(SETTLE);
    });
}
both_paths!(trickle_every_300ms_keeps_the_session_open);

/// What B5's upstream offers a client that reads nothing: more than every buffer
/// on the way can hold.
const STALLED_LIMIT: usize = 160 << 20;

/// B5: the client never reads, the upstream writes up to 160 MiB: once the
/// buffers are full nothing is delivered, so the session ends at the idle
/// timeout (the upstream's writes fail before the 160 MiB are out: the
/// kernel's buffers on the way hold at most about 72 MiB here, with
/// `tcp_rmem` autotuning up to 32 MiB per receiving socket); the client then
/// reads a byte-exact prefix and an end; VmHWM stays within the baseline +
/// 16 MiB.
fn stalled_receiver_with_outstanding_data_is_closed_at_idle_timeout() {
    watchdog(|| {
        let (tx, rx) = mpsc::channel();
        let up = scripted_server(move |mut s| {
            let chunk = pattern(5, 64 * 1024);
            let mut sent = 0usize;
            while sent < STALLED_LIMIT && s.write_all(&chunk).is_ok() {
                sent += chunk.len();
            }
            let _ = tx.send(sent);
        });
        let mut fp = FaultProxy::forward(&[up.addr], MATRIX);
        let mut c = connect(fp.main);
        let sent = rx
            .recv_timeout(IO_TIMEOUT)
            .expect("upstream writes never ended");
        assert!(
            sent < STALLED_LIMIT,
            "the upstream wrote all {sent} bytes to a client that reads nothing"
        );
        fp.expect_closed("idle-timeout", 1.0, SETTLE);
        let (got, end) = recv_all(&mut c, STALLED_LIMIT);
        let mut want = Vec::new();
        while want.len() < got.len() {
            want.extend(pattern(5, 64 * 1024));
        }
        assert!(
            got[..] == want[..got.len()],
            "client: the {} bytes are not a prefix of the stream",
            got.len()
        );
        assert!(
            matches!(end, End::Eof | End::Reset),
            "client: {end:?}, want EOF or RST"
        );
        let hwm = fp.proxy.vm_hwm_kib();
        assert!(
            hwm <= fp.base_rss_kib() + 16 * 1024,
            "VmHWM {hwm} KiB, baseline {} KiB",
            fp.base_rss_kib()
        );
        fp.assert_invariants(SETTLE);
    });
}
both_paths!(stalled_receiver_with_outstanding_data_is_closed_at_idle_timeout);

/// B6: the client half-closes, the upstream reads the EOF and then neither
/// replies nor closes: with `half_close_timeout = "1s"` (idle 60 s) the
/// client gets FIN after 0.8 s to 10 s, the upstream finds its peer gone, the
/// close is `half-close-timeout` and no CLOSE-WAIT socket is left.
fn half_closed_then_silent_session_is_reaped() {
    watchdog(|| {
        let (tx, rx) = mpsc::channel();
        let up = scripted_server(move |mut s| {
            let end = read_end(&mut s);
            let _ = tx.send((end, s));
        });
        let lines = ["idle_timeout = \"60s\"", "half_close_timeout = \"1s\""];
        let mut fp = FaultProxy::forward(&[up.addr], &lines);
        let mut c = connect(fp.main);
        // Before the FIN: the proxy's half-close timer cannot start earlier.
        let since = Instant::now();
        c.shutdown(Shutdown::Write)
            .expect("client: shutdown(Write)");
        let (up_end, mut u) = rx.recv_timeout(IO_TIMEOUT).expect("upstream report");
        assert!(
            matches!(up_end, End::Eof),
            "upstream: {up_end:?}, want the client's FIN"
        );
        assert_timed_out_both_ways(since, &mut c, &mut u);
        fp.expect_closed("half-close-timeout", 1.0, SETTLE);
        fp.assert_invariants(SETTLE);
    });
}
both_paths!(half_closed_then_silent_session_is_reaped);

/// B7: in a private netns, after a round trip, iptables drops every packet
/// between the proxy and the upstream both ways while the client sends
/// 1 MiB: nothing is delivered, so the idle timer closes the session; the
/// client sees the end within 5 s and the proxy owns no socket of it.
fn vanished_upstream_is_closed_by_the_idle_timer() {
    watchdog(|| {
        if !enter_private_netns() {
            return;
        }
        let up = echo_server();
        let mut fp = FaultProxy::forward(&[up.addr], MATRIX);
        let mut c = connect(fp.main);
        echo_roundtrip(&mut c, b"hello");
        let port = up.addr.port().to_string();
        for dir in ["--dport", "--sport"] {
            if !iptables(&["-A", "INPUT", "-p", "tcp", dir, &port, "-j", "DROP"]) {
                return;
            }
        }
        let mut w = c.try_clone().expect("clone the client");
        let writer = thread::spawn(move || w.write_all(&pattern(7, 1 << 20)).is_ok());
        // Echoes that made it before the DROP are read and dropped.
        let ((_, end), took) = timed(|| recv_all(&mut c, 1 << 20));
        assert!(
            !matches!(end, End::TimedOut),
            "client: no end within {IO_TIMEOUT:?}"
        );
        assert!(took < BY, "closed after {took:?}");
        let _ = writer.join();
        fp.expect_closed("idle-timeout", 1.0, SETTLE);
        fp.assert_invariants(SETTLE);
    });
}
both_paths!(vanished_upstream_is_closed_by_the_idle_timer);
