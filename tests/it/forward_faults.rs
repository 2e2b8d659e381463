//! Forward mode, faults: both sides half-closing at once (A4), writes to a
//! client that reset (A12, the SIGPIPE-via-writev trap) and both sides
//! resetting at once (A9), and owed bytes around a reset: when the client
//! resets while the upstream connect is still in flight, and when the upstream
//! resets while the client is still sending (both were product bugs).
//!
//! Each test runs on both data paths (`::copy`, `::splice`).
//!
//! One upstream serves every session of a test: the client's first byte picks
//! its behaviour (`E`: echo, for the warm-up and the final liveness echo;
//! anything else: the test's scenario).

use crate::support::*;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::Duration;

const MIB: usize = 1024 * 1024;
const CHUNK: usize = 64 * 1024;
/// First byte of a session that wants the test's scenario.
const SCENARIO: u8 = b'S';

/// Starts the proxy, warms it up and takes the fd baseline.
fn start(up: &Upstream, extra: &[&str]) -> (Proxy, usize) {
    let proxy = Proxy::forward(&[up.addr], extra);
    dispatch_echo_once(proxy.addr());
    let baseline = proxy.baseline();
    (proxy, baseline)
}

/// Panics if the proxy exited, naming SIGPIPE (status 141) when that was it.
fn assert_not_killed(proxy: &mut Proxy, when: &str) {
    if let Some(st) = proxy.try_status() {
        let sigpipe = st.signal() == Some(libc::SIGPIPE) || st.code() == Some(141);
        panic!(
            "proxy exited {when}: {st}{}; stderr:\n{}",
            if sigpipe { " (SIGPIPE)" } else { "" },
            proxy.stderr()
        );
    }
}

/// Whether the proxy ignores SIGPIPE (`SigIgn` mask in `/proc/PID/status`).
fn ignores_sigpipe(proxy: &Proxy) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{}/status", proxy.pid))
        .expect("read /proc/PID/status");
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .expect("SigIgn line");
    mask & (1 << (libc::SIGPIPE - 1)) != 0
}

/// The end of every test: alive, serving a fresh echo, back at its baseline.
fn finish(mut proxy: Proxy, baseline: usize, up: &Upstream) {
    assert_not_killed(&mut proxy, "before the final echo");
    dispatch_echo_once(proxy.addr());
    proxy.assert_quiescent(baseline, Duration::from_secs(3));
    up.assert_no_handler_panics();
}

/// Sends `len` bytes of stream `seed`, half-closes, reads to the end: the
/// bytes received, or what went wrong.
fn send_fin_then_read(s: &mut TcpStream, seed: u64, len: usize) -> Result<Vec<u8>, String> {
    s.write_all(&pattern(seed, len))
        .and_then(|()| s.shutdown(Shutdown::Write))
        .map_err(|e| format!("send: {e}"))?;
    match recv_all(s, len + CHUNK) {
        (got, End::Eof) => Ok(got),
        (got, end) => Err(format!("{end:?} after {} bytes, want EOF", got.len())),
    }
}

/// A4: in each of 10 sessions the client and the upstream pass a barrier,
/// then both send `len` bytes and `shutdown(Write)` at once. Each side must
/// read exactly the other's bytes, then EOF; the proxy frees every session.
fn simultaneous_half_close(len: usize) {
    let barrier = Arc::new(Barrier::new(2));
    let (tx, rx) = mpsc::channel();
    let up_barrier = Arc::clone(&barrier);
    let up = dispatch_server(move |mut s| {
        up_barrier.wait();
        let _ = tx.send(send_fin_then_read(&mut s, 2, len));
    });
    let (proxy, baseline) = start(&up, &[]);

    for round in 0..10 {
        let mut c = connect(proxy.addr());
        c.write_all(&[SCENARIO]).expect("client: mode byte");
        barrier.wait();
        let client = send_fin_then_read(&mut c, 1, len);
        let upstream = rx.recv_timeout(IO_TIMEOUT).expect("upstream finished");
        for (who, got, seed) in [("client", client, 2), ("upstream", upstream, 1)] {
            let got = got.unwrap_or_else(|e| panic!("round {round}: {who}: {e}\n{}", proxy.dump()));
            assert!(
                got == pattern(seed, len),
                "round {round}: {who}: {} bytes received, want the peer's {len} bytes",
                got.len()
            );
        }
    }
    finish(proxy, baseline, &up);
}

fn simultaneous_half_close_both_ways_gives_both_eof_and_frees_the_session() {
    watchdog(|| simultaneous_half_close(0));
}
both_paths!(simultaneous_half_close_both_ways_gives_both_eof_and_frees_the_session);

fn simultaneous_half_close_with_64_kib_in_flight_each_way_delivers_all_then_eof() {
    watchdog(|| simultaneous_half_close(64 * 1024));
}
both_paths!(simultaneous_half_close_with_64_kib_in_flight_each_way_delivers_all_then_eof);

/// A12: the upstream blasts 10 MiB; the client reads a little (the ring has
/// wrapped many times, so the proxy writes with `writev`) and resets. Writing
/// to the reset socket must close the session (the upstream's writes fail),
/// never kill the process (SIGPIPE, exit status 141). Five rounds; SIGPIPE
/// must also show as ignored in `/proc/PID/status`.
fn writes_to_a_reset_client_never_kill_the_process() {
    watchdog(|| {
        const SEED: u64 = 61;
        let (tx, rx) = mpsc::channel();
        let up = dispatch_server(move |mut s| {
            let seen = match send_pattern(&mut s, SEED, 10 * MIB as u64, CHUNK) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                    ) =>
                {
                    Err(format!("write blocked for {IO_TIMEOUT:?}"))
                }
                Err(_) => Ok(()),
                Ok(_) => match read_end(&mut s) {
                    End::TimedOut => Err("all 10 MiB written, then no EOF/RST".to_string()),
                    _ => Ok(()),
                },
            };
            let _ = tx.send(seen);
        });
        let (mut proxy, baseline) = start(&up, &[]);
        assert!(ignores_sigpipe(&proxy), "the proxy does not ignore SIGPIPE");

        for take in [1, 4096, CHUNK + 1, 256 * 1024, MIB] {
            let mut c = connect(proxy.addr());
            c.write_all(&[SCENARIO]).expect("client: mode byte");
            let got = read_exact_n(&mut c, take, "client reads a little");
            assert!(
                got == pattern(SEED, take),
                "client: first {take} bytes differ"
            );
            reset(c);
            let seen = rx
                .recv_timeout(IO_TIMEOUT + Duration::from_secs(5))
                .expect("upstream finished");
            if let Err(e) = seen {
                panic!(
                    "after a client reset at {take} bytes, upstream: {e}\n{}",
                    proxy.dump()
                );
            }
            assert_not_killed(&mut proxy, &format!("after a client reset at {take} bytes"));
        }
        finish(proxy, baseline, &up);
    });
}
both_paths!(writes_to_a_reset_client_never_kill_the_process);

/// A9: client and upstream pass a barrier and both reset (SO_LINGER 0) at
/// once, 20 times, every other round with 8 KiB sent each way first. Both RSTs
/// may land in one poll batch: no double close, the proxy keeps serving.
fn both_sides_resetting_in_the_same_moment_leave_the_proxy_serving() {
    watchdog(|| {
        let barrier = Arc::new(Barrier::new(2));
        let up_barrier = Arc::clone(&barrier);
        let up = dispatch_server(move |mut s| {
            let mut with_data = [0u8; 1];
            if s.read_exact(&mut with_data).is_ok() && with_data[0] == 1 {
                let _ = s.write_all(&pattern(71, 8 * 1024));
            }
            up_barrier.wait();
            reset(s);
        });
        let (mut proxy, baseline) = start(&up, &[]);

        for round in 0..20u8 {
            let with_data = round % 2;
            let mut c = connect(proxy.addr());
            c.write_all(&[SCENARIO, with_data]).expect("client: header");
            if with_data == 1 {
                c.write_all(&pattern(72, 8 * 1024)).expect("client: data");
            }
            barrier.wait();
            reset(c);
            assert_not_killed(&mut proxy, &format!("in round {round}"));
        }
        finish(proxy, baseline, &up);
    });
}
both_paths!(both_sides_resetting_in_the_same_moment_leave_the_proxy_serving);

/// README, "client resets, `mirror`: the upstream sees owed bytes, then RST",
/// when the RST comes while the proxy is still completing its upstream
/// connect (on loopback the upstream has accepted, the proxy has not yet
/// seen the connect finish). 100 clients each send 64 bytes, wait until the
/// proxy's kernel acknowledged them, and reset at once: every upstream
/// connection must get those 64 bytes, then RST.
fn client_reset_during_upstream_connect_still_hands_over_owed_bytes() {
    watchdog(|| {
        const SESSIONS: usize = 100;
        let (tx, rx) = mpsc::channel();
        let up = scripted_server(move |mut s| {
            let mut first = [0u8; 1];
            if matches!(s.peek(&mut first), Ok(1)) && first[0] == ECHO {
                let _ = s.read_exact(&mut first);
                return echo_conn(s);
            }
            let _ = tx.send(recv_all(&mut s, 1024));
        });
        let (proxy, baseline) = start(&up, &[]);

        let mut payload = vec![SCENARIO]; // anything but ECHO first
        payload.extend(pattern(81, 63));
        for _ in 0..SESSIONS {
            let mut c = connect(proxy.addr());
            c.write_all(&payload).expect("client write");
            wait_acked(&c, Duration::from_secs(5));
            reset(c);
        }
        let mut wrong = Vec::new();
        for i in 0..SESSIONS {
            let (got, end) = rx
                .recv_timeout(IO_TIMEOUT)
                .unwrap_or_else(|_| panic!("only {i} of {SESSIONS} upstream connections reported"));
            if got != payload || !matches!(end, End::Reset) {
                wrong.push(format!("{} bytes then {end:?}", got.len()));
            }
        }
        assert!(
            wrong.is_empty(),
            "{} of {SESSIONS} upstream connections did not get the 64 owed bytes then RST: {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        );
        finish(proxy, baseline, &up);
    });
}
both_paths!(client_reset_during_upstream_connect_still_hands_over_owed_bytes);

/// README, "upstream resets, `mirror`: the client sees owed bytes, then RST",
/// while the client is still sending. The client sends without pause and
/// reads; the upstream reads 64 KiB of it, writes 4 KiB, waits until the
/// proxy's kernel acknowledged them and resets. The client must get all
/// 4 KiB, as it does when it is silent
/// (`upstream_reset_is_mirrored_to_client_after_data`), then RST (or EOF
/// when its own writer already consumed the reset).
fn upstream_reset_while_client_sends_still_delivers_its_last_bytes() {
    watchdog(|| {
        const LEN: usize = 4096;
        const ROUNDS: usize = 50;
        let up = dispatch_server(move |mut s| {
            if s.read_exact(&mut vec![0u8; 64 * 1024]).is_ok()
                && s.write_all(&pattern(91, LEN)).is_ok()
            {
                wait_acked(&s, Duration::from_secs(5));
                reset(s);
            }
        });
        let (proxy, baseline) = start(&up, &[]);

        let mut lost = Vec::new();
        for round in 0..ROUNDS {
            let mut c = connect(proxy.addr());
            c.write_all(&[SCENARIO]).expect("client: mode byte");
            let mut w = c.try_clone().expect("clone the client");
            let writer = thread::spawn(move || while w.write_all(&[7u8; 1024]).is_ok() {});
            let (got, end) = recv_all(&mut c, 2 * LEN);
            writer.join().expect("client writer");
            if got != pattern(91, LEN) || matches!(end, End::TimedOut) {
                lost.push(format!("round {round}: {} bytes then {end:?}", got.len()));
            }
        }
        assert!(
            lost.is_empty(),
            "the client did not get the upstream's last {LEN} bytes in {} of {ROUNDS} rounds, e.g. {:?}\n{}",
            lost.len(),
            &lost[..lost.len().min(5)],
            proxy.stderr()
        );
        finish(proxy, baseline, &up);
    });
}
both_paths!(upstream_reset_while_client_sends_still_delivers_its_last_bytes);
