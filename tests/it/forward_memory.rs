//! Forward mode, memory under pressure: a receiver that stops reading must
//! neither grow the proxy's memory nor keep the session alive for ever, and
//! a pool far smaller than the number of sessions still serves them all.
//!
//! Contract (README): "Idle means no delivery" (bytes read but not written
//! are not activity); pipes stop reading while their ring is full; ring
//! memory is bounded by `--pool-budget` and sessions wait for a buffer.

use crate::support::*;
use socket2::SockRef;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// B5 (Envoy `TestIdletimeoutWithLargeOutstandingData`): `--idle-timeout 1s`,
/// the client never reads, the upstream writes 16 MiB. Once the buffers are
/// full nothing is delivered, so the session must end at the idle timeout:
/// the upstream's writes fail (or it reads EOF/RST), the client reads a prefix
/// of the stream then EOF or RST, all within 10 s; the proxy's RSS stays small.
#[test]
fn stalled_session_with_undeliverable_data_is_closed_at_idle_timeout() {
    watchdog(|| {
        const SEED: u64 = 51;
        let (accepted_tx, accepted_rx) = mpsc::channel();
        let (tx, rx) = mpsc::channel();
        let up = scripted_server_with_warmup(move |mut s| {
            let t0 = Instant::now();
            let _ = accepted_tx.send(());
            // Ok(how the upstream learnt of the close) or Err(what went wrong).
            let seen = match send_pattern(&mut s, SEED, 16 * MIB, CHUNK) {
                Err(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut) => {
                    Err(format!("write blocked for {IO_TIMEOUT:?}: {e}"))
                }
                Err(e) => Ok(format!("write failed: {e}")),
                Ok(_) => match read_end(&mut s) {
                    End::TimedOut => Err("all 16 MiB written, then no EOF/RST".into()),
                    end => Ok(format!("all written, then {end:?}")),
                },
            };
            let _ = tx.send((seen, t0.elapsed()));
        });
        let mut proxy = Proxy::forward(&[up.addr], &["--idle-timeout", "1s"]);
        echo_once(proxy.addr());
        let baseline = proxy.baseline();

        let mut c = connect(proxy.addr()); // never reads until the upstream saw the close
        SockRef::from(&c)
            .set_recv_buffer_size(64 * 1024)
            .expect("SO_RCVBUF");
        accepted_rx
            .recv_timeout(IO_TIMEOUT)
            .expect("the proxy connected to the upstream");
        let mut rss_max = 0;
        let (seen, took) = loop {
            rss_max = rss_max.max(proxy.vm_rss_kib());
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(r) => break r,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(e) => panic!("upstream handler gone: {e}"),
            }
        };
        let hwm = proxy.vm_hwm_kib();
        let seen = seen.unwrap_or_else(|e| panic!("upstream: {e}\n{}", proxy.dump()));
        assert!(
            took >= Duration::from_millis(800),
            "upstream saw the close ({seen}) after {took:?}, before the 1 s idle timeout"
        );
        assert!(
            took < Duration::from_secs(10),
            "upstream saw the close ({seen}) only after {took:?} with a 1 s idle timeout"
        );
        assert!(
            rss_max < 16 * 1024 && hwm < 16 * 1024,
            "proxy memory while stalled: VmRSS max {rss_max} KiB, VmHWM {hwm} KiB (bound 16 MiB)"
        );

        let (n, h, end) = recv_hash(&mut c, SEED);
        assert!(
            matches!(end, End::Eof | End::Reset),
            "client: want EOF or RST after {n} bytes, got {end:?}"
        );
        assert!(n < 16 * MIB, "client: all 16 MiB arrived: nothing stalled");
        assert!(
            h == sha256(&pattern(SEED, n as usize)),
            "client: the {n} bytes received are not a prefix of the upstream's stream"
        );
        assert!(
            proxy.wait_log("reason=idle-timeout", Duration::from_secs(2)),
            "no `reason=idle-timeout` close line; stderr:\n{}",
            proxy.stderr()
        );
        drop(c);

        proxy.assert_quiescent(baseline, Duration::from_secs(3));
        up.assert_no_handler_panics();
    });
}

/// C6-lite: 8 sessions whose upstreams each send 8 MiB while the clients read
/// nothing. Once every upstream has written 1 MiB, the proxy's VmRSS is
/// sampled for 0.5 s and must stay under base + 8 MiB (VmHWM too); then the
/// clients read everything: each gets its own 8 MiB byte-exact, then EOF.
#[test]
fn backpressure_keeps_memory_bounded_and_loses_nothing() {
    watchdog(|| {
        const SESSIONS: usize = 8;
        const EACH: u64 = 8 * MIB;
        let written: Arc<Vec<AtomicU64>> =
            Arc::new((0..SESSIONS).map(|_| AtomicU64::new(0)).collect());
        let (tx, rx) = mpsc::channel();
        let progress = Arc::clone(&written);
        let up = scripted_server_with_warmup(move |mut s| {
            let idx = read_exact_n(&mut s, 1, "session index")[0] as usize;
            // Small fixed kernel buffers at both ends, so the kernel cannot
            // absorb the stream and the proxy's rings are what fills up.
            let _ = SockRef::from(&s).set_send_buffer_size(64 * 1024);
            let mut pw = PatternWriter::new(100 + idx as u64, CHUNK);
            let mut sent = Ok(());
            for _ in 0..EACH / MIB {
                sent = pw.send(&mut s, MIB);
                if sent.is_err() {
                    break;
                }
                progress[idx].fetch_add(MIB, Ordering::SeqCst);
            }
            let result = sent
                .and_then(|()| s.shutdown(std::net::Shutdown::Write))
                .map(|()| (pw.finish(), read_end(&mut s)));
            let _ = tx.send((idx, result.map_err(|e| e.to_string())));
        });
        let mut proxy = Proxy::forward(&[up.addr], &[]);
        echo_once(proxy.addr());
        let baseline = proxy.baseline();
        let base_rss = proxy.vm_rss_kib();
        let base_hwm = proxy.vm_hwm_kib();

        let clients: Vec<_> = (0..SESSIONS)
            .map(|i| {
                let mut c = connect(proxy.addr());
                SockRef::from(&c)
                    .set_recv_buffer_size(64 * 1024)
                    .expect("SO_RCVBUF");
                c.write_all(&[i as u8]).expect("client sends its index");
                c
            })
            .collect();
        let streaming = || written.iter().all(|w| w.load(Ordering::SeqCst) >= MIB);
        assert!(
            wait_for(Duration::from_secs(20), streaming),
            "not every upstream could write 1 MiB\n{}",
            proxy.dump()
        );
        let mut rss_max = 0;
        wait_for(Duration::from_millis(500), || {
            rss_max = rss_max.max(proxy.vm_rss_kib());
            false
        });
        let hwm = proxy.vm_hwm_kib();
        assert!(
            rss_max <= base_rss + 8 * 1024 && hwm <= base_hwm + 8 * 1024,
            "proxy memory with {SESSIONS} stalled sessions: VmRSS max {rss_max} KiB \
             (base {base_rss}), VmHWM {hwm} KiB (base {base_hwm}); bound base + 8 MiB"
        );

        for (i, mut c) in clients.into_iter().enumerate() {
            let (n, h, end) = recv_hash(&mut c, i as u64);
            assert!(
                matches!(end, End::Eof),
                "client {i}: want EOF after the data, got {end:?} after {n} bytes"
            );
            assert_eq!(n, EACH, "client {i}: bytes received");
            assert!(
                h == sha256(&pattern(100 + i as u64, EACH as usize)),
                "client {i}: bytes differ from its upstream's stream"
            );
        } // each client closes once read: its upstream reads EOF
        for _ in 0..SESSIONS {
            let (idx, result) = rx.recv_timeout(IO_TIMEOUT).expect("upstream finished");
            let (sent_hash, end) = result.unwrap_or_else(|e| panic!("upstream {idx}: {e}"));
            assert!(
                sent_hash == sha256(&pattern(100 + idx as u64, EACH as usize)),
                "upstream {idx}: sent hash differs from the pattern"
            );
            assert!(
                matches!(end, End::Eof),
                "upstream {idx}: want EOF once its client closed, got {end:?}"
            );
        }

        proxy.assert_quiescent(baseline, Duration::from_secs(3));
        up.assert_no_handler_panics();
    });
}

/// `--buffer-size 4KiB --pool-budget 8KiB`: two smallest ring buffers for the
/// whole process (a larger class or a kernel pipe never fits within half of it). 10 concurrent sessions each echo 1 MiB (full duplex through an
/// echo upstream): sessions wait for buffers in turn and every one gets its
/// own bytes back, byte-exact, then EOF.
#[test]
fn small_pool_budget_still_serves_every_session_byte_exact() {
    watchdog(|| {
        let up = echo_server();
        let mut proxy = Proxy::forward(
            &[up.addr],
            &["--buffer-size", "4KiB", "--pool-budget", "8KiB"],
        );
        let line = "memory bound: 8 KiB of buffers (rings of 4 KiB to 256 KiB; no splice)";
        assert!(
            proxy.wait_log(line, Duration::from_secs(2)),
            "start-up line should announce 8 KiB of buffers and no splice; stderr:\n{}",
            proxy.stderr()
        );
        echo_once(proxy.addr());
        let baseline = proxy.baseline();

        let sessions: Vec<_> = (0..10u64)
            .map(|i| {
                let c = connect(proxy.addr());
                thread::spawn(move || exchange(c, 200 + i, MIB, 16 * 1024))
            })
            .collect();
        for (i, t) in sessions.into_iter().enumerate() {
            let f = t.join().expect("client thread");
            assert!(f.send_error.is_none(), "client {i}: {:?}", f.send_error);
            assert!(
                matches!(f.end, End::Eof),
                "client {i}: want EOF after the echo, got {:?} after {} bytes",
                f.end,
                f.received
            );
            assert_eq!(f.received, f.sent, "client {i}: echoed byte count");
            assert!(
                f.received_hash == f.sent_hash,
                "client {i}: echoed bytes differ from what it sent"
            );
        }

        proxy.assert_quiescent(baseline, Duration::from_secs(3));
        up.assert_no_handler_panics();
    });
}
