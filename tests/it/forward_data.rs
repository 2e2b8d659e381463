//! Forward mode, data path: bytes go through the proxy exactly once and in
//! order, both ways at the same time, with the default ring and with a 1-byte
//! ring (`--buffer-size 1`), including the FIN that ends each direction.
//!
//! The echo and the 64 MiB transfer run on both data paths (`::copy`,
//! `::splice`); the 1-byte and 7-byte rings are copy-path shapes (such a pool
//! affords no kernel pipe) and run once.
//!
//! Every test ends with the proxy back at its fd baseline and no CLOSE-WAIT
//! socket owned by it.

use crate::support::*;
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
