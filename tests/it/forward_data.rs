//! Forward mode, data path: bytes go through the proxy exactly once and in
//! order, both ways at the same time, with the default ring and with a 1-byte
//! ring (`--buffer-size 1`), including the FIN that ends each direction.
//!
//! The echo and the 64 MiB transfer run on both data paths (`::copy`,
//! `::splice`), and each path is shown to be the one taken (syscall counts,
//! the lent-storage gauges); the 1-byte and 7-byte rings are copy-path shapes
//! (such a pool affords no kernel pipe) and run once, as does the splice the
//! kernel refuses (strace-injected `EINVAL`), which falls back to copying.
//!
//! Every test ends with the proxy back at its fd baseline and no CLOSE-WAIT
//! socket owned by it.

use crate::support::*;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::mpsc;
use std::time::Duration;

const MIB: u64 = 1024 * 1024;

/// Bytes sent through an echo upstream come back unchanged, across several
/// round trips of different sizes, and a half-close ends the session cleanly.
fn echo_through_proxy() {
    watchdog(|| {
        let up = echo_server();
        let mut proxy = Proxy::forward(&[up.addr], &[]);
        echo_once(proxy.addr());
        let baseline = proxy.baseline();

        let mut c = connect(proxy.addr());
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

        proxy.assert_quiescent(baseline, Duration::from_secs(2));
        up.assert_no_handler_panics();
    });
}
both_paths!(echo_through_proxy);

/// Runs one full-duplex transfer of `len` bytes each way through a proxy
/// started with `extra` args: random write and read sizes on both ends, each
/// end half-closes after sending; sha256 compared both ways.
fn duplex_through_proxy(extra: &[&str], len: u64, max_chunk: usize) {
    let (tx, rx) = mpsc::channel();
    let up = scripted_server_with_warmup(move |s| {
        let _ = tx.send(exchange(s, 2, len, max_chunk));
    });
    let mut proxy = Proxy::forward(&[up.addr], extra);
    echo_once(proxy.addr());
    let baseline = proxy.baseline();

    let client = exchange(connect(proxy.addr()), 1, len, max_chunk);
    let upstream = rx
        .recv_timeout(IO_TIMEOUT)
        .expect("upstream side finished its exchange");
    assert_flows_match(&client, &upstream);

    proxy.assert_quiescent(baseline, Duration::from_secs(2));
    up.assert_no_handler_panics();
}

/// 64 MiB each way at the same time, random write sizes up to 64 KiB:
/// byte-exact in both directions (sha256).
fn full_duplex_64_mib_each_way_is_byte_exact() {
    watchdog(|| duplex_through_proxy(&[], 64 * MIB, 64 * 1024));
}
both_paths!(full_duplex_64_mib_each_way_is_byte_exact);

/// With a 1-byte ring, 1 MiB each way at the same time still arrives byte
/// exact, and each side's FIN (half-close after sending) is forwarded only
/// after its last byte: both ends read everything, then EOF.
#[test]
fn one_byte_buffer_is_byte_exact_with_half_close_both_ways() {
    watchdog(|| duplex_through_proxy(&["--buffer-size", "1"], MIB, 4096));
}

/// A ring of an odd size (7 bytes) so every write wraps around the ring end.
#[test]
fn odd_buffer_size_wrapping_ring_is_byte_exact() {
    watchdog(|| duplex_through_proxy(&["--buffer-size", "7"], 2 * MIB, 64 * 1024));
}

/// The kernel refuses the first splice (strace injects `EINVAL`, what
/// splice answers for a descriptor it cannot splice): that direction copies
/// from then on, the other keeps splicing, and 1 MiB each way at the same
/// time is byte-exact. (A refusal while the kernel pipe holds bytes is the
/// pure core's test `a_refused_splice_keeps_the_bytes_already_in_the_kernel_pipe`:
/// strace cannot aim at those calls.)
#[test]
fn a_splice_the_kernel_refuses_is_copied_instead() {
    watchdog(|| {
        let (tx, rx) = mpsc::channel();
        let up = scripted_server_with_warmup(move |s| {
            let _ = tx.send(exchange(s, 2, MIB, 64 * 1024));
        });
        let mut proxy = Proxy::forward(&[up.addr], &["--splice", "always"]);
        echo_once(proxy.addr());
        let baseline = proxy.baseline();
        let dir = SecretDir::new();
        let out = dir.path.join("strace-inject");
        let Some(st) = Strace::attach_to(proxy.pid, "splice:error=EINVAL:when=1", &out) else {
            return;
        };
        let client = exchange(connect(proxy.addr()), 1, MIB, 64 * 1024);
        let upstream = rx.recv_timeout(IO_TIMEOUT).expect("upstream exchange");
        st.detach();
        assert_flows_match(&client, &upstream);
        let trace = std::fs::read_to_string(&out).unwrap_or_default();
        let injected = trace.matches("(INJECTED)").count();
        let copied = trace.contains("readv(") && trace.contains("writev(");
        let spliced = trace.matches("splice(").count() > injected;
        assert!(
            injected == 1 && copied && spliced,
            "want one refused splice, then one direction copying and one splicing: \
             {injected} injected, readv/writev seen: {copied}, splice seen: {spliced}"
        );
        proxy.assert_quiescent(baseline, Duration::from_secs(3));
        up.assert_no_handler_panics();
    });
}

/// First byte of a session that asks the upstream of
/// [`the_configured_data_path_is_taken`] for a full-duplex exchange.
const EXCHANGE: u8 = b'X';

/// The data path asked for is the one taken. 1 MiB each way (byte-exact)
/// under `strace -f -c -e trace=splice,readv,writev`: on the splice path
/// every relayed byte goes through splice (2 MiB through 256 KiB kernel pipes
/// take at least 8 calls) and no readv or writev is made; on the copy path
/// readv and writev, and no splice. Then the upstream sends 8 MiB to a
/// client that does not read yet: the stalled direction holds a kernel pipe
/// (`tcpbridge_pipes_lent`) on the splice path, a ring and no kernel pipe on
/// the copy path; once read, the 8 MiB are byte-exact and nothing stays lent.
fn the_configured_data_path_is_taken() {
    watchdog(|| {
        const STALLED: u64 = 8 * MIB;
        let (tx, rx) = mpsc::channel();
        let up = dispatch_server(move |mut s| {
            let mut mode = [0u8; 1];
            if s.read_exact(&mut mode).is_err() {
                return;
            }
            if mode[0] == EXCHANGE {
                let _ = tx.send(exchange(s, 2, MIB, 64 * 1024));
            } else if send_pattern(&mut s, 7, STALLED, 64 * 1024).is_ok() {
                let _ = s.shutdown(Shutdown::Write);
                let _ = recv_all(&mut s, 0);
            }
        });
        let mut proxy = Proxy::forward(&[up.addr], &["--metrics-listen", "127.0.0.1:0"]);
        let metrics = proxy.field_addr("metrics");
        dispatch_echo_once(proxy.addr());
        let baseline = proxy.baseline();
        let splicing = DataPath::current() == Some(DataPath::Splice);

        let dir = SecretDir::new();
        let out = dir.path.join("strace-count");
        let Some(st) = Strace::count(proxy.pid, "splice,readv,writev", &out) else {
            return;
        };
        let mut c = connect(proxy.addr());
        c.write_all(&[b'S', EXCHANGE]).expect("client: mode bytes");
        let client = exchange(c, 1, MIB, 64 * 1024);
        let upstream = rx.recv_timeout(IO_TIMEOUT).expect("upstream exchange");
        st.detach();
        assert_flows_match(&client, &upstream);
        let summary = std::fs::read_to_string(&out).unwrap_or_default();
        let calls = syscall_counts(&summary);
        let n = |name: &str| calls.get(name).copied().unwrap_or(0);
        if splicing {
            assert!(
                n("splice") >= 8 && n("readv") + n("writev") == 0,
                "splice path: want only splice calls (at least 8) for 2 MiB:\n{summary}"
            );
        } else {
            assert!(
                n("splice") == 0 && n("readv") > 0 && n("writev") > 0,
                "copy path: want readv and writev, no splice:\n{summary}"
            );
        }

        let mut c = connect(proxy.addr());
        c.write_all(b"SB").expect("client: mode bytes");
        let gauge = |name: &str| prom::sum(&scrape_metrics(metrics), name, &[]);
        let held = if splicing {
            "tcpbridge_pipes_lent"
        } else {
            "tcpbridge_buffers_lent"
        };
        assert!(
            wait_for(Duration::from_secs(10), || gauge(held) >= 1.0),
            "the stalled direction holds no storage ({held} = {})",
            gauge(held)
        );
        if !splicing {
            assert_eq!(
                gauge("tcpbridge_pipes_lent"),
                0.0,
                "a kernel pipe on the copy path"
            );
        }
        let (got, hash, end) = recv_hash(&mut c, 0);
        assert!(matches!(end, End::Eof), "client: {end:?} after {got} bytes");
        assert!(
            got == STALLED && hash == sha256(&pattern(7, STALLED as usize)),
            "client: {got} bytes, want the upstream's 8 MiB byte-exact"
        );
        drop(c);
        proxy.assert_quiescent(baseline, Duration::from_secs(3));
        for name in ["tcpbridge_pipes_lent", "tcpbridge_buffers_lent"] {
            assert!(
                wait_for(Duration::from_secs(5), || gauge(name) == 0.0),
                "{name} = {} at rest",
                gauge(name)
            );
        }
        up.assert_no_handler_panics();
    });
}
both_paths!(the_configured_data_path_is_taken);
