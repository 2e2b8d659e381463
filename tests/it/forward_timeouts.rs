//! Forward mode, session timers: `--idle-timeout` closes a session where no
//! byte moved, but any byte resets it; `--half-close-timeout` reaps a session
//! whose one finished direction left the other side silent.
//!
//! Timing assertions use a firm lower bound (the proxy must not close early)
//! and a generous upper bound (shared, noisy 2-core machines).

use crate::support::*;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// After the proxy closed a session, can the upstream tell? It writes one
/// byte and reads: EOF, RST or a write error mean "closed"; a read timeout
/// means the proxy still holds the socket.
fn upstream_sees_closed(s: &mut TcpStream) -> Result<(), String> {
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("read timeout");
    if s.write_all(b"?").is_err() {
        return Ok(());
    }
    match read_end(s) {
        End::Eof | End::Reset => Ok(()),
        End::Error(e) if e.to_string().contains("unexpected") => Err(format!("got data: {e}")),
        End::Error(_) => Ok(()),
        End::TimedOut => {
            Err("no EOF/RST within 3 s after writing: the proxy still holds the socket".into())
        }
    }
}

/// Both sides silent for `--idle-timeout 1s`: both the client and the
/// upstream see EOF, not before ~1 s, within a generous bound.
#[test]
fn idle_session_is_closed_on_both_sides() {
    watchdog(|| {
        let (accepted_tx, accepted_rx) = mpsc::channel();
        let (tx, rx) = mpsc::channel();
        let up = scripted_server_with_warmup(move |mut s| {
            let t0 = Instant::now();
            let _ = accepted_tx.send(());
            let (got, end) = recv_all(&mut s, 1024);
            let _ = tx.send((got.len(), end, t0.elapsed()));
        });
        let mut proxy = Proxy::forward(&[up.addr], &["--idle-timeout", "1s"]);
        echo_once(proxy.addr());
        let baseline = proxy.baseline();

        let mut c = connect(proxy.addr());
        let t0 = Instant::now();
        accepted_rx
            .recv_timeout(IO_TIMEOUT)
            .expect("the proxy connected to the upstream");
        let end = read_end(&mut c);
        let took = t0.elapsed();
        assert!(
            matches!(end, End::Eof),
            "client: want EOF from the idle timeout, got {end:?} after {took:?}"
        );
        assert!(
            took >= Duration::from_millis(800),
            "client closed after {took:?}, before the 1 s idle timeout"
        );
        assert!(
            took < Duration::from_secs(5),
            "client closed only after {took:?} with a 1 s idle timeout"
        );

        let (n, up_end, up_took) = rx.recv_timeout(IO_TIMEOUT).expect("upstream saw the close");
        assert_eq!(n, 0, "upstream: no data expected");
        assert!(
            matches!(up_end, End::Eof),
            "upstream: want EOF from the idle timeout, got {up_end:?}"
        );
        assert!(
            up_took < Duration::from_secs(5),
            "upstream closed only after {up_took:?}"
        );
        assert!(
            proxy.wait_log("reason=idle-timeout", Duration::from_secs(2)),
            "no `reason=idle-timeout` close line; stderr:\n{}",
            proxy.stderr()
        );
        drop(c);

        proxy.assert_quiescent(baseline, Duration::from_secs(2));
        up.assert_no_handler_panics();
    });
}

/// One byte every 300 ms for 3 s with `--idle-timeout 1s`: each byte is
/// progress, so the session stays open and every byte is echoed.
#[test]
fn trickle_below_idle_timeout_keeps_session_open() {
    watchdog(|| {
        let up = echo_server();
        let mut proxy = Proxy::forward(&[up.addr], &["--idle-timeout", "1s"]);
        echo_once(proxy.addr());
        let baseline = proxy.baseline();

        let mut c = connect(proxy.addr());
        for i in 0..10u8 {
            echo_roundtrip(&mut c, &[b'a' + i]);
            thread::sleep(Duration::from_millis(300)); // pacing the sender, not synchronisation
        }
        echo_roundtrip(&mut c, b"still open");
        c.shutdown(Shutdown::Write).expect("client shutdown(Write)");
        assert!(
            matches!(read_end(&mut c), End::Eof),
            "client: want EOF after its half-close"
        );
        drop(c);
        assert!(
            !proxy.stderr().contains("reason=idle-timeout"),
            "a trickling session hit the idle timeout:\n{}",
            proxy.stderr()
        );

        proxy.assert_quiescent(baseline, Duration::from_secs(2));
        up.assert_no_handler_panics();
    });
}

/// The client half-closes and the upstream stays silent without closing:
/// with `--half-close-timeout 1s` (idle timeout 60 s) the session is reaped:
/// the client gets EOF after ~1 s, the upstream finds its peer gone, and the
/// proxy keeps no CLOSE-WAIT socket.
#[test]
fn half_closed_silent_session_is_reaped() {
    watchdog(|| {
        let (eof_tx, eof_rx) = mpsc::channel();
        let probe = Gate::new();
        let probe_now = probe.clone();
        let (tx, rx) = mpsc::channel();
        let up = scripted_server_with_warmup(move |mut s| {
            let (got, end) = recv_all(&mut s, 1024);
            let _ = eof_tx.send((got.len(), end));
            // Silent and open until the test has seen the client closed.
            if probe_now.wait(Duration::from_secs(20)) {
                let _ = tx.send(upstream_sees_closed(&mut s));
            }
        });
        let mut proxy = Proxy::forward(
            &[up.addr],
            &["--half-close-timeout", "1s", "--idle-timeout", "60s"],
        );
        echo_once(proxy.addr());
        let baseline = proxy.baseline();

        let mut c = connect(proxy.addr());
        c.shutdown(Shutdown::Write).expect("client shutdown(Write)");
        let t0 = Instant::now();
        let (n, up_end) = eof_rx
            .recv_timeout(IO_TIMEOUT)
            .expect("upstream got the forwarded FIN");
        assert!(
            n == 0 && matches!(up_end, End::Eof),
            "upstream: want EOF with no data, got {n} bytes and {up_end:?}"
        );

        let end = read_end(&mut c);
        let took = t0.elapsed();
        assert!(
            matches!(end, End::Eof),
            "client: want EOF from the half-close timeout, got {end:?} after {took:?}"
        );
        assert!(
            took >= Duration::from_millis(800),
            "client closed after {took:?}, before the 1 s half-close timeout"
        );
        assert!(
            took < Duration::from_secs(6),
            "client closed only after {took:?} with a 1 s half-close timeout"
        );
        probe.open();
        let seen = rx
            .recv_timeout(IO_TIMEOUT)
            .expect("upstream probe finished");
        assert!(seen.is_ok(), "upstream: {}", seen.unwrap_err());
        assert!(
            proxy.wait_log("reason=half-close-timeout", Duration::from_secs(2)),
            "no `reason=half-close-timeout` close line; stderr:\n{}",
            proxy.stderr()
        );
        drop(c);

        proxy.assert_quiescent(baseline, Duration::from_secs(2));
        up.assert_no_handler_panics();
    });
}
