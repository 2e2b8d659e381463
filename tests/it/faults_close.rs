//! Fault matrix A4 and A6-A12 (RELIABILITY.md §4.1), forward mode: close and
//! reset faults (simultaneous close, RST from either side mid-stream, an RST
//! with a full ring, both sockets killed at once, close with unread data, a
//! half-open upstream, writes to a reset client), each scenario ending with
//! the common invariants ([`FaultProxy::assert_invariants`]). The data path
//! (A1-A3, A5, A13, A14) is in `faults_data.rs`.
//!
//! Contract (README, Semantics): a reset is passed on after the owed bytes,
//! as RST under `reset_policy = "mirror"` (the default) and as FIN under
//! `"fin"`; errors close their session and never end the process.
//! Scenarios that need the kernel's help (`ss -K`, iptables REJECT) run in a
//! private network namespace.

use crate::support::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

const KIB: usize = 1024;
/// Settle bound of the invariant checks.
const SETTLE: Duration = Duration::from_secs(10);
/// Per-listener options of these scenarios: the matrix's connect and
/// half-close timeouts; an idle timeout long enough that a loaded machine
/// never ends a transfer early.
const OPTS: &[&str] = &[
    "connect_timeout = \"500ms\"",
    "idle_timeout = \"10s\"",
    "half_close_timeout = \"1s\"",
];
const FIN_POLICY: &[&str] = &["reset_policy = \"fin\"", "idle_timeout = \"10s\""];

/// A4 body: in each of 5 sessions client and upstream pass a barrier, then
/// both send `len` and `shutdown(Write)` (or, with `close`, both `close()`
/// after sending nothing). Each side reads exactly the other's bytes then
/// EOF; every session closes with an EOF reason.
fn simultaneous_close(len: usize, close: bool) {
    let barrier = Arc::new(Barrier::new(2));
    let b = Arc::clone(&barrier);
    let (tx, rx) = mpsc::channel();
    let up = scripted_server(move |mut s| {
        b.wait();
        if close {
            drop(s);
            return;
        }
        let sent = s
            .write_all(&pattern(22, len))
            .and_then(|()| s.shutdown(Shutdown::Write));
        let _ = tx.send((sent.is_ok(), recv_all(&mut s, len + 1)));
    });
    let mut fp = FaultProxy::forward(&[up.addr], OPTS);
    for round in 0..5 {
        let mut c = connect(fp.main);
        barrier.wait();
        if close {
            drop(c);
            continue;
        }
        c.write_all(&pattern(21, len)).expect("client: send");
        c.shutdown(Shutdown::Write)
            .expect("client: shutdown(Write)");
        let (got, end) = recv_all(&mut c, len + 1);
        let (sent, (up_got, up_end)) = rx.recv_timeout(IO_TIMEOUT).expect("upstream report");
        assert!(sent, "round {round}: upstream send failed");
        assert!(
            matches!(end, End::Eof) && got == pattern(22, len),
            "round {round}: client got {} bytes then {end:?}",
            got.len()
        );
        assert!(
            matches!(up_end, End::Eof) && up_got == pattern(21, len),
            "round {round}: upstream got {} bytes then {up_end:?}",
            up_got.len()
        );
    }
    let eofs = || fp.closed("client-eof") + fp.closed("upstream-eof");
    assert!(
        wait_for(SETTLE, || eofs() == 5.0),
        "EOF closes {} of 5\n{}",
        eofs(),
        fp.proxy.stderr()
    );
    fp.assert_invariants(SETTLE);
}

/// A4: both half-close at once with nothing in flight.
fn simultaneous_half_close_gives_both_eof() {
    watchdog(|| simultaneous_close(0, false));
}
both_paths!(simultaneous_half_close_gives_both_eof);

/// A4: both half-close at once with 64 KiB in flight each way.
fn simultaneous_half_close_with_64_kib_in_flight_delivers_all_then_eof() {
    watchdog(|| simultaneous_close(64 * KIB, false));
}
both_paths!(simultaneous_half_close_with_64_kib_in_flight_delivers_all_then_eof);

/// A4: both `close()` at once (no unread data, so FINs, no RST).
fn simultaneous_full_close_frees_the_session() {
    watchdog(|| simultaneous_close(0, true));
}
both_paths!(simultaneous_full_close_frees_the_session);

/// A6 body: the upstream streams; a chaos relay in front of it passes 100 KiB
/// to the proxy, waits for their acknowledgement and resets. The client gets
/// exactly those 100 KiB, then RST (`mirror`) or EOF (`fin`), within 2 s.
fn upstream_rst_after_100_kib(lines: &[&str], want_reset: bool) {
    const N: usize = 100 * KIB;
    let up = scripted_server(|mut s| while s.write_all(&pattern(41, 64 * KIB)).is_ok() {});
    let opts = ChaosOptions {
        to_client: Dir {
            rst_after: Some(N as u64),
            ..Dir::default()
        },
        ..ChaosOptions::default()
    };
    let chaos = Chaos::start(up.addr, opts);
    let mut fp = FaultProxy::forward(&[chaos.addr], lines);
    let mut c = connect(fp.main);
    let got = read_exact_n(&mut c, N, "client: the bytes before the RST");
    let (end, waited) = timed(|| read_end(&mut c));
    let mut want = pattern(41, 64 * KIB);
    want.extend(pattern(41, N - 64 * KIB));
    assert!(got == want, "client: the 100 KiB differ");
    match (end, want_reset) {
        (End::Reset, true) | (End::Eof, false) => {}
        (other, _) => panic!(
            "client: {other:?} after 100 KiB, want {}",
            if want_reset { "RST" } else { "EOF" }
        ),
    }
    assert!(
        waited < Duration::from_secs(2),
        "client saw the end after {waited:?}"
    );
    fp.expect_closed("upstream-reset", 1.0, SETTLE);
    fp.assert_invariants(SETTLE);
}

/// A6, `mirror`: the upstream's RST reaches the client as RST.
fn upstream_rst_mid_stream_reaches_client_as_rst() {
    watchdog(|| upstream_rst_after_100_kib(OPTS, true));
}
both_paths!(upstream_rst_mid_stream_reaches_client_as_rst);

/// A6, `fin`: the upstream's RST reaches the client as FIN.
fn upstream_rst_mid_stream_reaches_client_as_fin_under_fin_policy() {
    watchdog(|| upstream_rst_after_100_kib(FIN_POLICY, false));
}
both_paths!(upstream_rst_mid_stream_reaches_client_as_fin_under_fin_policy);

/// A7 body: the upstream sends 64 KiB, which the client reads; the client
/// sends 10 KiB, waits for their acknowledgement and resets. The upstream
/// gets exactly its client's 10 KiB, then RST (`mirror`) or EOF (`fin`).
fn client_rst_mid_stream(lines: &[&str], want_reset: bool) {
    let (tx, rx) = mpsc::channel();
    let up = scripted_server(move |mut s| {
        let _ = s.write_all(&pattern(51, 64 * KIB));
        let _ = tx.send(recv_all(&mut s, 64 * KIB));
    });
    let mut fp = FaultProxy::forward(&[up.addr], lines);
    let mut c = connect(fp.main);
    read_exact_n(&mut c, 64 * KIB, "client: the upstream's 64 KiB");
    c.write_all(&pattern(52, 10 * KIB)).expect("client: 10 KiB");
    wait_acked(&c, Duration::from_secs(5));
    reset(c);
    let ((got, end), waited) = timed(|| rx.recv_timeout(IO_TIMEOUT).expect("upstream report"));
    assert!(
        got == pattern(52, 10 * KIB),
        "upstream: {} bytes, not exactly its client's 10 KiB",
        got.len()
    );
    match (end, want_reset) {
        (End::Reset, true) | (End::Eof, false) => {}
        (other, _) => panic!(
            "upstream: {other:?}, want {}",
            if want_reset { "RST" } else { "EOF" }
        ),
    }
    assert!(
        waited < Duration::from_secs(2),
        "upstream saw the end after {waited:?}"
    );
    fp.expect_closed("client-reset", 1.0, SETTLE);
    fp.assert_invariants(SETTLE);
}

/// A7, `mirror`.
fn client_rst_mid_stream_reaches_upstream_as_rst() {
    watchdog(|| client_rst_mid_stream(OPTS, true));
}
both_paths!(client_rst_mid_stream_reaches_upstream_as_rst);

/// A7, `fin`.
fn client_rst_mid_stream_reaches_upstream_as_fin_under_fin_policy() {
    watchdog(|| client_rst_mid_stream(FIN_POLICY, false));
}
both_paths!(client_rst_mid_stream_reaches_upstream_as_fin_under_fin_policy);

/// Streams pattern 61 on `s` until a write fails; reports the bytes written
/// and when the failure came.
fn stream_until_error(mut s: TcpStream, tx: &mpsc::Sender<(usize, Instant)>) {
    let chunk = pattern(61, 64 * KIB);
    let mut sent = 0;
    while s.write_all(&chunk).is_ok() {
        sent += chunk.len();
    }
    let _ = tx.send((sent, Instant::now()));
}

/// A8: the client never reads while the upstream sends 8 MiB (the ring fills
/// and the proxy pauses reading), then the client resets: the upstream's
/// writes fail within 2 s, and the buffers come back to the pool.
fn client_rst_with_full_ring_closes_upstream_and_frees_buffers() {
    watchdog(|| {
        let (tx, rx) = mpsc::channel();
        let up = scripted_server(move |s| stream_until_error(s, &tx));
        let mut fp = FaultProxy::forward(&[up.addr], OPTS);
        let c = connect(fp.main);
        let paused = wait_for(SETTLE, || {
            fp.metric("tcpbridge_read_pauses_total", &[("listener", "main")]) >= 1.0
        });
        assert!(paused, "the proxy never paused reading the upstream");
        let t0 = Instant::now();
        reset(c);
        let (_, failed_at) = rx
            .recv_timeout(IO_TIMEOUT)
            .expect("upstream writes never failed");
        let after = failed_at.saturating_duration_since(t0);
        assert!(
            after < Duration::from_secs(2),
            "upstream closed {after:?} after the client's RST"
        );
        fp.assert_invariants(SETTLE);
    });
}
both_paths!(client_rst_with_full_ring_closes_upstream_and_frees_buffers);

/// A9: in a private netns, `ss -K` destroys both of the proxy's sockets of a
/// session in one call, 10 times (both errors land in one poll batch): the
/// client and the upstream each get an RST and the proxy keeps serving.
fn both_session_sockets_killed_at_once_leave_the_proxy_serving() {
    watchdog(|| {
        if !enter_private_netns() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let up = scripted_server(move |mut s| {
            let peer = s.peer_addr().expect("upstream: peer_addr");
            let _ = read_exact_n(&mut s, 1, "upstream: the client's first byte");
            let _ = tx.send(Ok(peer));
            let _ = tx.send(Err(read_end(&mut s)));
        });
        let mut fp = FaultProxy::forward(&[up.addr], OPTS);
        for round in 0..10 {
            let mut c = connect(fp.main);
            c.write_all(b"p").expect("client: first byte");
            let Ok(proxy_side) = rx.recv_timeout(IO_TIMEOUT).expect("upstream accepted") else {
                panic!("round {round}: upstream reported out of order");
            };
            let filter = format!(
                "( sport = :{} and dport = :{} ) or ( sport = :{} and dport = :{} )",
                fp.main.port(),
                c.local_addr().expect("client local_addr").port(),
                proxy_side.port(),
                up.addr.port()
            );
            if !ss_kill(&filter) {
                return;
            }
            let end = read_end(&mut c);
            assert!(
                matches!(end, End::Reset),
                "round {round}: client {end:?}, want RST"
            );
            let Err(up_end) = rx.recv_timeout(IO_TIMEOUT).expect("upstream end") else {
                panic!("round {round}: upstream reported out of order");
            };
            assert!(
                matches!(up_end, End::Reset),
                "round {round}: upstream {up_end:?}, want RST"
            );
            fp.proxy.assert_alive();
        }
        fp.assert_invariants(SETTLE);
    });
}
both_paths!(both_session_sockets_killed_at_once_leave_the_proxy_serving);

/// A10: the upstream reads only the 1 KiB head of a request, answers 4 KiB and
/// `close()`s with the client's other 10 KiB unread, so its kernel sends RST:
/// the client gets the 4 KiB, then RST, and the close is `upstream-reset`.
fn upstream_close_with_unread_data_is_handled_as_reset() {
    watchdog(|| {
        let up = scripted_server(|mut s| {
            let _ = read_exact_n(&mut s, KIB, "upstream: head");
            let fd = s.as_raw_fd();
            let queued = || {
                let mut n: libc::c_int = 0;
                // SAFETY: FIONREAD writes one c_int.
                unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
                n as usize
            };
            wait_for(Duration::from_secs(5), || queued() >= 10 * KIB);
            let _ = s.write_all(&pattern(72, 4 * KIB));
            wait_acked(&s, Duration::from_secs(5));
        });
        let mut fp = FaultProxy::forward(&[up.addr], OPTS);
        let mut c = connect(fp.main);
        c.write_all(&pattern(71, 11 * KIB))
            .expect("client: request");
        let (got, end) = recv_all(&mut c, 8 * KIB);
        assert!(
            got == pattern(72, 4 * KIB),
            "client: {} reply bytes, want the 4 KiB",
            got.len()
        );
        assert!(
            matches!(end, End::Reset),
            "client: {end:?} after the reply, want RST"
        );
        fp.expect_closed("upstream-reset", 1.0, SETTLE);
        fp.assert_invariants(SETTLE);
    });
}
both_paths!(upstream_close_with_unread_data_is_handled_as_reset);

/// A11: in a private netns, after a round trip, iptables REJECTs (tcp-reset)
/// every packet to the upstream's port: the proxy's next write to the
/// upstream meets an RST the upstream never sent, so the client's next write
/// ends its session with RST within 2 s; the upstream never sees that write.
fn half_open_upstream_is_closed_on_the_next_write() {
    watchdog(|| {
        if !enter_private_netns() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let up = scripted_server(move |mut s| {
            let mut buf = [0u8; 256];
            while let Ok(n @ 1..) = s.read(&mut buf) {
                let _ = tx.send(buf[..n].to_vec());
                let _ = s.write_all(&buf[..n]);
            }
        });
        let mut fp = FaultProxy::forward(&[up.addr], OPTS);
        let mut c = connect(fp.main);
        echo_roundtrip(&mut c, b"before");
        let port = up.addr.port().to_string();
        if !iptables(&[
            "-A",
            "INPUT",
            "-p",
            "tcp",
            "--dport",
            &port,
            "-j",
            "REJECT",
            "--reject-with",
            "tcp-reset",
        ]) {
            return;
        }
        c.write_all(b"after")
            .expect("client: write after the REJECT");
        let (end, waited) = timed(|| read_end(&mut c));
        assert!(matches!(end, End::Reset), "client: {end:?}, want RST");
        assert!(
            waited < Duration::from_secs(2),
            "client saw the RST after {waited:?}"
        );
        let seen: Vec<Vec<u8>> = rx.try_iter().collect();
        assert_eq!(
            seen,
            vec![b"before".to_vec()],
            "upstream saw bytes sent after the REJECT"
        );
        fp.expect_closed("upstream-reset", 1.0, SETTLE);
        fp.assert_invariants(SETTLE);
    });
}
both_paths!(half_open_upstream_is_closed_on_the_next_write);

/// A12: 5 times, the upstream streams 10 MiB and the client reads 256 KiB
/// (the ring has wrapped: writev) then resets. Writing to the reset client
/// closes the session; the process is never killed by SIGPIPE (status 141).
fn writes_after_client_rst_never_kill_the_process() {
    watchdog(|| {
        let (tx, rx) = mpsc::channel();
        let up = scripted_server(move |s| stream_until_error(s, &tx));
        let mut fp = FaultProxy::forward(&[up.addr], OPTS);
        for round in 0..5 {
            let mut c = connect(fp.main);
            read_exact_n(&mut c, 256 * KIB, "client: first 256 KiB");
            reset(c);
            rx.recv_timeout(IO_TIMEOUT)
                .expect("upstream writes never failed");
            if let Some(st) = fp.proxy.try_status() {
                panic!(
                    "round {round}: proxy exited {st} (signal {:?})\n{}",
                    st.signal(),
                    fp.proxy.stderr()
                );
            }
        }
        fp.assert_invariants(SETTLE);
    });
}
both_paths!(writes_after_client_rst_never_kill_the_process);
