//! The bounds of `connect` listeners' handshakes: 500 slowloris clients (one byte of a
//! request, then silence) all closed at the handshake deadline while a live tunnel
//! moves 64 MiB exactly; a client address over `--max-sessions-per-client` closed at
//! once, and one over `--max-handshakes`; a client outside `--client-allow` closed at
//! once; a client trickling its request closed at the handshake deadline, which is
//! absolute; a client gone in the middle of its request closed at once, not at its
//! deadline. Each ends with the fd baseline.

use crate::support::prom;
use crate::support::*;
use std::io::{ErrorKind, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

const LOG: Duration = Duration::from_secs(10);

/// A client the proxy closed with no byte sent: EOF (or reset).
fn assert_closed_silently(s: &mut TcpStream, what: &str) {
    let end = read_end(s);
    assert!(
        matches!(end, End::Eof | End::Reset),
        "{what}: expected the proxy's close, got {end:?}"
    );
}

/// A tunnel to `to` through a `connect` listener, its 200 read.
fn tunnel(proxy: &Proxy, to: std::net::SocketAddr) -> TcpStream {
    let (s, head) = connect_tunnel(proxy.addr(), &to.to_string(), "");
    assert_eq!(status_of(&head), 200, "{head}");
    s
}

#[test]
fn slowloris_clients_time_out_while_a_tunnel_moves_64_mib() {
    const CLIENTS: usize = 500;
    watchdog_for(Duration::from_secs(240), || {
        let echo = echo_server();
        let mut flags = allow_loopback(echo.addr.port(), false);
        flags.extend(owned(&[
            "--handshake-timeout",
            "1s",
            "--max-handshakes",
            "1000",
            "--max-sessions-per-client",
            "1000",
            "--metrics-listen",
            "127.0.0.1:0",
            "--log-rate",
            "0",
        ]));
        let mut proxy = connect_proxy(&strs(&flags));
        let metrics = proxy.field_addr("metrics");
        let mut warm = tunnel(&proxy, echo.addr);
        echo_roundtrip(&mut warm, b"warm-up");
        warm.shutdown(Shutdown::Write).expect("shutdown");
        assert!(matches!(read_end(&mut warm), End::Eof));
        let base = proxy.baseline();

        let live = tunnel(&proxy, echo.addr);
        let started = Instant::now();
        let mut slow: Vec<TcpStream> = (0..CLIENTS)
            .map(|_| {
                let mut s = connect(proxy.addr());
                s.write_all(b"C").expect("one byte of a request");
                s
            })
            .collect();
        let flow = exchange(live, 7, 64 << 20, 256 << 10);
        assert!(flow.send_error.is_none(), "{flow:?}");
        assert!(matches!(flow.end, End::Eof), "{flow:?}");
        assert_eq!(flow.received, 64 << 20, "bytes through the tunnel");
        assert_eq!(flow.received_hash, flow.sent_hash, "the bytes themselves");
        eprintln!("64 MiB through the tunnel in {:?}", started.elapsed());

        // How each slow client saw its close (checked last, after the counts).
        let ends: Vec<End> = slow.iter_mut().map(read_end).collect();
        drop(slow);
        let counted = |reason: &str| {
            prom::sum(
                &scrape_metrics(metrics),
                "tcpbridge_sessions_closed_total",
                &[("listener", "connect"), ("reason", reason)],
            )
        };
        let all_seen = wait_for(LOG, || {
            counted("handshake-timeout") == CLIENTS as f64
                && closes_with(&proxy, "handshake-timeout") == CLIENTS
        });
        assert!(
            all_seen,
            "handshake-timeout: {} counted, {} close lines, of {CLIENTS}",
            counted("handshake-timeout"),
            closes_with(&proxy, "handshake-timeout")
        );
        proxy.assert_quiescent(base, LOG);
        // The proxy's close: a FIN, its unread byte dropped (a reset would say the
        // proxy failed, not that the client was too slow).
        let eof = ends.iter().filter(|e| matches!(e, End::Eof)).count();
        let reset = ends.iter().filter(|e| matches!(e, End::Reset)).count();
        let other: Vec<&End> = ends
            .iter()
            .filter(|e| !matches!(e, End::Eof | End::Reset))
            .collect();
        assert!(other.is_empty(), "slow clients not closed: {other:?}");
        assert_eq!(
            (eof, reset),
            (CLIENTS, 0),
            "slow clients closed by FIN and by reset at the handshake deadline"
        );
    });
}

#[test]
fn a_client_over_its_session_limit_is_closed_at_once() {
    watchdog(|| {
        let echo = echo_server();
        let mut flags = allow_loopback(echo.addr.port(), false);
        flags.extend(owned(&["--max-sessions-per-client", "3"]));
        let mut proxy = connect_proxy(&strs(&flags));
        let base = proxy.baseline();
        // Two live tunnels and one client in its handshake, all from 127.0.0.1.
        let mut held = vec![tunnel(&proxy, echo.addr), tunnel(&proxy, echo.addr)];
        // (Silent: a client gone with part of a request unread is another test's case.)
        held.push(connect(proxy.addr()));
        let t0 = Instant::now();
        let mut fourth = connect(proxy.addr());
        let me = fourth.local_addr().expect("local address");
        assert_closed_silently(&mut fourth, "the fourth client");
        let line = close_line_of(&proxy, me, LOG);
        assert_field(&line, "reason", "limit");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "closed at once, not at a deadline: {:?}",
            t0.elapsed()
        );
        // One leaves: a new client gets its tunnel.
        let first = held.remove(0);
        first.shutdown(Shutdown::Write).expect("shutdown");
        let mut first = first;
        assert!(matches!(read_end(&mut first), End::Eof));
        let closed = wait_for(LOG, || closes_with(&proxy, "client-eof") == 1);
        assert!(closed, "{}", proxy.stderr());
        let mut again = tunnel(&proxy, echo.addr);
        echo_roundtrip(&mut again, b"after one left");
        drop((again, held, first));
        proxy.assert_quiescent(base, LOG);
    });
}

#[test]
fn a_client_outside_client_allow_is_closed_at_once() {
    watchdog(|| {
        let echo = echo_server();
        let mut flags = allow_loopback(echo.addr.port(), false);
        flags.extend(owned(&["--client-allow", "10.0.0.0/8"]));
        let mut proxy = connect_proxy(&strs(&flags));
        let base = proxy.baseline();
        let mut s = send_connect(proxy.addr(), &echo.addr.to_string(), "", b"");
        let me = s.local_addr().expect("local address");
        assert_closed_silently(&mut s, "a client from 127.0.0.1");
        let line = close_line_of(&proxy, me, LOG);
        assert_field(&line, "reason", "auth");
        assert_field(&line, "upstream", "-");
        assert_eq!(echo.accepted(), 0);
        proxy.assert_quiescent(base, LOG);
    });
}

/// A client that sends part of its request and then its FIN is closed when the FIN
/// comes (`client-eof`), not held in CLOSE-WAIT until the handshake deadline.
#[test]
fn a_client_gone_in_the_middle_of_its_request_is_closed_at_once() {
    watchdog(|| {
        let halves: [(&str, &[u8]); 2] =
            [("connect", b"CONNECT 127.0.0.1:1 HT"), ("socks", &[5, 1])];
        // Both modes run on their own threads, and both outcomes are reported.
        let runs: Vec<_> = halves
            .into_iter()
            .map(|(mode, half)| {
                (
                    mode,
                    std::thread::spawn(move || gone_mid_request(mode, half)),
                )
            })
            .collect();
        let failed: Vec<String> = runs
            .into_iter()
            .filter_map(|(mode, t)| t.join().err().map(|p| panic_text(mode, p)))
            .collect();
        assert!(failed.is_empty(), "{}", failed.join("\n\n"));
    });
}

fn panic_text(mode: &str, p: Box<dyn std::any::Any + Send>) -> String {
    let text = p
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    format!("{mode}: {text}")
}

fn gone_mid_request(mode: &str, half: &[u8]) {
    let mut proxy = dynamic_proxy(mode, &["--handshake-timeout", "60s"]);
    let base = proxy.baseline();
    let mut s = connect(proxy.addr());
    let me = s.local_addr().expect("local address");
    let t0 = Instant::now();
    s.write_all(half).expect("half a request");
    s.shutdown(Shutdown::Write).expect("shutdown(Write)");
    let end = read_end(&mut s);
    assert!(
        matches!(end, End::Eof),
        "half a request then FIN: {end:?} after {:?}; the proxy's sockets:\n{}",
        t0.elapsed(),
        proxy.dump()
    );
    let line = close_line_of(&proxy, me, LOG);
    assert_field(&line, "reason", "client-eof");
    proxy.assert_quiescent(base, LOG);
}

#[test]
fn a_client_over_max_handshakes_is_closed_at_once() {
    watchdog(|| {
        let echo = echo_server();
        let mut flags = allow_loopback(echo.addr.port(), false);
        flags.extend(owned(&["--max-handshakes", "2"]));
        let mut proxy = connect_proxy(&strs(&flags));
        let base = proxy.baseline();
        // Two silent clients fill the handshakes; a live tunnel is not a handshake.
        let mut live = tunnel(&proxy, echo.addr);
        let held = [connect(proxy.addr()), connect(proxy.addr())];
        let waiting = wait_for(LOG, || proxy.session_sockets().len() == 2 + 2);
        assert!(
            waiting,
            "two handshakes and a tunnel held:\n{}",
            proxy.dump()
        );
        let mut third = connect(proxy.addr());
        let me = third.local_addr().expect("local address");
        assert_closed_silently(&mut third, "a third handshake");
        assert_field(&close_line_of(&proxy, me, LOG), "reason", "limit");
        echo_roundtrip(&mut live, b"the tunnel still moves");
        drop(held);
        let mut again = tunnel(&proxy, echo.addr);
        echo_roundtrip(&mut again, b"a handshake slot again");
        drop((again, live));
        proxy.assert_quiescent(base, LOG);
    });
}

/// `--handshake-timeout` bounds the whole request, not each read: a client sending one
/// byte of a valid request every 100 ms is closed about a second after its accept.
#[test]
fn the_handshake_deadline_is_absolute() {
    watchdog(|| {
        let echo = echo_server();
        let mut flags = allow_loopback(echo.addr.port(), false);
        flags.extend(owned(&["--handshake-timeout", "1s"]));
        let mut proxy = connect_proxy(&strs(&flags));
        let base = proxy.baseline();
        let request = format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n", echo.addr);
        let padding = "X-Slow: 1\r\n".repeat(20);
        let mut s = connect(proxy.addr());
        s.set_nodelay(true).expect("TCP_NODELAY");
        let me = s.local_addr().expect("local address");
        let t0 = Instant::now();
        let mut sent = 0;
        // Each read waits up to 100 ms for the proxy's close: the pace of the trickle.
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        let mut byte = [0u8; 1];
        for b in request.bytes().chain(padding.bytes()) {
            if s.write_all(&[b]).is_err() {
                break;
            }
            sent += 1;
            match std::io::Read::read(&mut s, &mut byte) {
                Ok(0) => break,
                Ok(_) => panic!("an answer to an unfinished request"),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        let line = close_line_of(&proxy, me, LOG);
        let took = t0.elapsed();
        assert_field(&line, "reason", "handshake-timeout");
        assert!(
            took < Duration::from_secs(10),
            "closed {took:?} after the accept, {sent} bytes sent"
        );
        drop(s);
        proxy.assert_quiescent(base, LOG);
    });
}
