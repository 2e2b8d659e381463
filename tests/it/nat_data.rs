//! NAT traversal, data path: public client -> relay -> agent -> local
//! service. Bytes arrive exactly once and in order both ways, a service that
//! speaks first is heard before the client sends anything, half-close (FIN)
//! and reset (RST) travel end to end in both directions, and 200 sessions at
//! once (most of them waiting for a tunnel) stay byte-exact.
//!
//! Every test ends with both the relay and the agent back at their fd
//! baseline, holding only the agent's idle tunnels, with no CLOSE-WAIT.

use crate::support::*;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

const MIB: usize = 1024 * 1024;
const CHUNK: usize = 64 * 1024;
/// Bound for relay and agent to get back to their idle state.
const SETTLE: Duration = Duration::from_secs(5);

/// Round trips of several sizes come back unchanged, a half-close ends the
/// session cleanly, and both sides log their close line (the agent's names
/// the local service as `upstream=`).
#[test]
fn echo_through_relay_and_agent() {
    watchdog(|| {
        let up = echo_server();
        let mut chain = Chain::builder(up.addr).warm();
        assert_eq!(up.accepted(), 1, "the warm-up reached the service");

        let mut c = connect(chain.public);
        for (i, len) in [1usize, 7, 1024, 16 * 1024 + 3, 60 * 1024]
            .into_iter()
            .enumerate()
        {
            echo_roundtrip(&mut c, &pattern(i as u64, len));
        }
        c.shutdown(Shutdown::Write).expect("client shutdown(Write)");
        match read_end(&mut c) {
            End::Eof => {}
            other => panic!("after half-close the client should get EOF, got {other:?}"),
        }
        drop(c);

        let upstream = format!("upstream={}", up.addr);
        assert!(
            wait_for(SETTLE, || log_count(&chain.agent, &upstream) >= 2
                && log_count(&chain.relay, "reason=client-eof") >= 2),
            "close lines: agent `close ... {upstream}` and relay `reason=client-eof` for both sessions\n{}",
            chain.logs()
        );
        chain.assert_quiescent(SETTLE);
        up.assert_no_handler_panics();
    });
}

/// 64 MiB each way at the same time, random write and read sizes: sha256
/// equal both ways, each side's FIN after its last byte.
#[test]
fn full_duplex_64_mib_each_way_is_byte_exact() {
    watchdog_for(Duration::from_secs(120), || {
        let len = 64 * MIB as u64;
        let (tx, rx) = mpsc::channel();
        let up = scripted_server_with_warmup(move |s| {
            let _ = tx.send(exchange(s, 2, len, CHUNK));
        });
        let mut chain = Chain::builder(up.addr).warm();

        let client = exchange(connect(chain.public), 1, len, CHUNK);
        let service = rx
            .recv_timeout(IO_TIMEOUT)
            .expect("service side finished its exchange");
        assert_flows_match(&client, &service);

        chain.assert_quiescent(SETTLE);
        up.assert_no_handler_panics();
    });
}

/// The service writes a banner on accept before reading anything: the
/// public client receives it without having sent a byte, then the session
/// goes on as an echo.
#[test]
fn server_speaks_first_banner_reaches_silent_client() {
    const BANNER: &[u8] = b"SSH-2.0-tcpbridge-test banner\r\n";
    watchdog(|| {
        let up = scripted_server_with_warmup(|mut s| {
            if s.write_all(BANNER).is_ok() {
                echo_conn(s);
            }
        });
        let mut chain = Chain::builder(up.addr).warm();

        let mut c = connect(chain.public);
        let got = read_exact_n(&mut c, BANNER.len(), "banner before any client byte");
        assert_eq!(got, BANNER, "banner bytes");
        echo_roundtrip(&mut c, &pattern(3, 4096));
        c.shutdown(Shutdown::Write).expect("client shutdown(Write)");
        match read_end(&mut c) {
            End::Eof => {}
            other => panic!("after half-close the client should get EOF, got {other:?}"),
        }
        drop(c);

        chain.assert_quiescent(SETTLE);
        up.assert_no_handler_panics();
    });
}

/// What the service side of a scenario saw.
struct Seen {
    received: u64,
    hash: [u8; 32],
    end: End,
    sent_ok: bool,
}

/// The client sends 1 MiB then half-closes; the service reads to EOF, then
/// replies 1 MiB and closes. Each side gets all bytes, then EOF.
#[test]
fn client_half_close_then_service_replies_one_mib() {
    watchdog(|| {
        let (tx, rx) = mpsc::channel();
        let up = scripted_server_with_warmup(move |mut s| {
            let (received, hash, end) = recv_hash(&mut s, 11);
            let sent_ok = send_pattern(&mut s, 12, MIB as u64, CHUNK).is_ok();
            drop(s);
            let _ = tx.send(Seen {
                received,
                hash,
                end,
                sent_ok,
            });
        });
        let mut chain = Chain::builder(up.addr).warm();

        let mut c = connect(chain.public);
        let sent = send_pattern(&mut c, 11, MIB as u64, CHUNK).expect("client sends 1 MiB");
        c.shutdown(Shutdown::Write).expect("client shutdown(Write)");
        let (n, h, end) = recv_hash(&mut c, 12);
        let seen = rx.recv_timeout(IO_TIMEOUT).expect("service finished");

        assert!(
            matches!(seen.end, End::Eof),
            "service: request should end with EOF (the client's FIN), got {:?}",
            seen.end
        );
        assert_eq!(seen.received, MIB as u64, "service: request length");
        assert!(seen.hash == sent, "service: request bytes differ");
        assert!(seen.sent_ok, "service could not send its reply");
        assert!(
            matches!(end, End::Eof),
            "client: reply should end with EOF, got {end:?}"
        );
        assert_eq!(n, MIB as u64, "client: reply length");
        assert!(h == sha256(&pattern(12, MIB)), "client: reply bytes differ");
        drop(c);

        chain.assert_quiescent(SETTLE);
        up.assert_no_handler_panics();
    });
}

/// The service sends a banner and half-closes at once; the client reads
/// banner + EOF, then still sends 1 MiB and half-closes; the service gets
/// all of it, then EOF.
#[test]
fn service_half_close_first_while_client_keeps_sending() {
    const BANNER: &[u8] = b"220 service speaks first and is done\r\n";
    watchdog(|| {
        let (tx, rx) = mpsc::channel();
        let up = scripted_server_with_warmup(move |mut s| {
            let sent_ok = s.write_all(BANNER).is_ok() && s.shutdown(Shutdown::Write).is_ok();
            let (received, hash, end) = recv_hash(&mut s, 21);
            let _ = tx.send(Seen {
                received,
                hash,
                end,
                sent_ok,
            });
        });
        let mut chain = Chain::builder(up.addr).warm();

        let mut c = connect(chain.public);
        let (banner, end) = recv_all(&mut c, 1024);
        assert_eq!(banner, BANNER, "client: banner bytes");
        assert!(
            matches!(end, End::Eof),
            "client: the banner should be followed by EOF, got {end:?}"
        );
        let sent = send_pattern(&mut c, 21, MIB as u64, CHUNK).expect("client can still send");
        c.shutdown(Shutdown::Write).expect("client shutdown(Write)");
        let seen = rx.recv_timeout(IO_TIMEOUT).expect("service finished");

        assert!(seen.sent_ok, "service could not send the banner");
        assert!(
            matches!(seen.end, End::Eof),
            "service: data should end with EOF, got {:?}",
            seen.end
        );
        assert_eq!(seen.received, MIB as u64, "service: bytes from the client");
        assert!(seen.hash == sent, "service: bytes differ");
        drop(c);

        chain.assert_quiescent(SETTLE);
        up.assert_no_handler_panics();
    });
}

/// The service sends 100 KiB, waits until the agent's kernel acknowledged
/// them, then resets: the client reads all 100 KiB, then a reset.
#[test]
fn service_reset_after_data_reaches_client_as_reset() {
    watchdog(|| {
        let payload = pattern(31, 100 * 1024);
        let expected = payload.clone();
        let up = scripted_server_with_warmup(move |mut s| {
            if s.write_all(&payload).is_ok() {
                wait_acked(&s, Duration::from_secs(5));
                reset(s);
            }
        });
        let mut chain = Chain::builder(up.addr).warm();

        let mut c = connect(chain.public);
        let (got, end) = recv_all(&mut c, 200 * 1024);
        assert_eq!(
            got.len(),
            expected.len(),
            "client: bytes before the close ({end:?})"
        );
        assert!(got == expected, "client: bytes differ");
        assert!(
            matches!(end, End::Reset),
            "client: want ConnectionReset after the data (mirror), got {end:?}\n{}",
            chain.logs()
        );
        drop(c);

        chain.assert_quiescent(SETTLE);
        up.assert_no_handler_panics();
    });
}

/// The client sends 10 KiB, waits until the relay's kernel acknowledged
/// them, then resets: the service reads all 10 KiB, then a reset.
#[test]
fn client_reset_after_data_reaches_service_as_reset() {
    watchdog(|| {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (tx, rx) = mpsc::channel();
        let up = scripted_server_with_warmup(move |mut s| {
            let _ = ready_tx.send(());
            let _ = tx.send(recv_all(&mut s, 64 * 1024));
        });
        let mut chain = Chain::builder(up.addr).warm();

        let mut c = connect(chain.public);
        let payload = pattern(41, 10 * 1024);
        c.write_all(&payload).expect("client write");
        ready_rx
            .recv_timeout(IO_TIMEOUT)
            .expect("the agent connected to the service");
        wait_acked(&c, Duration::from_secs(5));
        reset(c);

        let (got, end) = rx
            .recv_timeout(IO_TIMEOUT)
            .expect("service finished reading");
        assert_eq!(
            got.len(),
            payload.len(),
            "service: bytes before the close ({end:?})"
        );
        assert!(got == payload, "service: bytes differ");
        assert!(
            matches!(end, End::Reset),
            "service: want ConnectionReset after the data (mirror), got {end:?}\n{}",
            chain.logs()
        );

        chain.assert_quiescent(SETTLE);
        up.assert_no_handler_panics();
    });
}

/// Counts arrivals; waiters block (bounded) until a target count is reached.
#[derive(Default)]
struct Rendezvous(Mutex<usize>, Condvar);

impl Rendezvous {
    /// Counts one arrival and waits until `n` have arrived or `limit` passes.
    fn arrive_and_wait(&self, n: usize, limit: Duration) -> bool {
        let mut count = self.0.lock().expect("rendezvous lock");
        *count += 1;
        self.1.notify_all();
        let (count, _) = self
            .1
            .wait_timeout_while(count, limit, |c| *c < n)
            .expect("rendezvous wait");
        *count >= n
    }
}

/// 200 clients at once through an agent keeping 8 idle tunnels: most wait
/// for a tunnel, all 200 sessions are live at the service at the same time,
/// and each gets exactly its own bytes back (a per-session seed catches any
/// cross-talk).
#[test]
fn two_hundred_concurrent_sessions_are_byte_exact() {
    const SESSIONS: usize = 200;
    watchdog_for(Duration::from_secs(90), || {
        let live = Arc::new(Rendezvous::default());
        let all_live = Arc::new(AtomicUsize::new(0));
        let (l, a) = (Arc::clone(&live), Arc::clone(&all_live));
        let up = scripted_server_with_warmup(move |s| {
            if l.arrive_and_wait(SESSIONS, Duration::from_secs(30)) {
                a.fetch_add(1, Ordering::SeqCst);
            }
            echo_conn(s);
        });
        let mut chain = Chain::builder(up.addr)
            .pool(8)
            .relay(&["--pair-timeout", "10s", "--max-waiting", "256"])
            .warm();

        let public = chain.public;
        let start = Arc::new(std::sync::Barrier::new(SESSIONS));
        let clients: Vec<_> = (0..SESSIONS)
            .map(|i| {
                let start = Arc::clone(&start);
                thread::spawn(move || -> Result<(), String> {
                    let len = Rng::new(i as u64).range(1, 32 * 1024);
                    let payload = pattern(1000 + i as u64, len);
                    start.wait();
                    let mut c: TcpStream = with_timeouts(
                        TcpStream::connect_timeout(&public, Duration::from_secs(10))
                            .map_err(|e| format!("session {i}: connect: {e}"))?,
                    );
                    c.set_read_timeout(Some(Duration::from_secs(40)))
                        .expect("set_read_timeout");
                    c.write_all(&payload)
                        .map_err(|e| format!("session {i}: write: {e}"))?;
                    let (got, end) = {
                        c.shutdown(Shutdown::Write)
                            .map_err(|e| format!("session {i}: shutdown: {e}"))?;
                        recv_all(&mut c, 64 * 1024)
                    };
                    if !matches!(end, End::Eof) {
                        return Err(format!(
                            "session {i}: ended with {end:?} after {} of {len} bytes",
                            got.len()
                        ));
                    }
                    if got != payload {
                        return Err(format!(
                            "session {i}: {} bytes back, want its own {len} bytes",
                            got.len()
                        ));
                    }
                    Ok(())
                })
            })
            .collect();
        let errors: Vec<String> = clients
            .into_iter()
            .filter_map(|t| t.join().expect("client thread panicked").err())
            .collect();
        assert!(
            errors.is_empty(),
            "{} of {SESSIONS} sessions failed, first: {:?}\n{}",
            errors.len(),
            &errors[..errors.len().min(5)],
            chain.logs()
        );
        assert_eq!(
            all_live.load(Ordering::SeqCst),
            SESSIONS,
            "all {SESSIONS} sessions should be live at the service at the same time"
        );

        chain.assert_quiescent(Duration::from_secs(10));
        up.assert_no_handler_panics();
    });
}
