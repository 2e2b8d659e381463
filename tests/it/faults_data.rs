//! Fault matrix A1-A3, A5, A13 and A14 (RELIABILITY.md §4.1), forward mode:
//! the data path (large random-sized transfers, half-close in each direction,
//! data and FIN in one segment, a 1-byte ring, 1-byte segments from a chaos
//! relay), each scenario ending with the common invariants
//! ([`FaultProxy::assert_invariants`]). Close and reset faults (A4, A6-A12)
//! are in `faults_close.rs`.
//!
//! The scenarios run on both data paths (`::copy`, `::splice`), except the
//! 1-byte ring ones (A13): a pool of 1-byte rings cannot afford a kernel
//! pipe, so on the splice path they would copy all the same.
//!
//! Contract (README, Semantics): bytes arrive exactly once and in order; an
//! EOF is forwarded as FIN after the last byte while the other direction
//! keeps flowing.

use crate::support::*;
use std::io::Write;
use std::net::Shutdown;
use std::sync::mpsc;
use std::time::Duration;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Settle bound of the invariant checks.
const SETTLE: Duration = Duration::from_secs(10);
/// Per-listener options of the data scenarios: the matrix's connect and
/// half-close timeouts; an idle timeout long enough that a loaded machine
/// never ends a transfer early.
const DATA: &[&str] = &[
    "connect_timeout = \"500ms\"",
    "idle_timeout = \"10s\"",
    "half_close_timeout = \"1s\"",
];
const ONE_BYTE: &[&str] = &[
    "buffer_size = 1",
    "connect_timeout = \"500ms\"",
    "idle_timeout = \"10s\"",
];

/// Full duplex through `main`: `len` bytes each way, random write sizes up to
/// `max_chunk` and random read sizes, each end half-closing after sending.
fn duplex(lines: &[&str], len: u64, max_chunk: usize) {
    let (tx, rx) = mpsc::channel();
    let up = scripted_server(move |s| {
        let _ = tx.send(exchange(s, 2, len, max_chunk));
    });
    let mut fp = FaultProxy::forward(&[up.addr], lines);
    let client = exchange(connect(fp.main), 1, len, max_chunk);
    let upstream = rx.recv_timeout(IO_TIMEOUT).expect("upstream flow");
    assert_flows_match(&client, &upstream);
    fp.assert_invariants(SETTLE);
}

/// A1: 16 MiB each way at once, writes of 1..64 KiB, random reads: sha256
/// matches both ways, both ends read EOF.
fn sixteen_mib_each_way_with_random_sizes_is_byte_exact() {
    watchdog(|| duplex(DATA, 16 * MIB as u64, 64 * KIB));
}
both_paths!(sixteen_mib_each_way_with_random_sizes_is_byte_exact);

/// A2 body: the client sends `len` and half-closes; the upstream reads to
/// EOF, replies `len` and closes. Both get every byte then EOF, and the
/// session is freed (`client-eof`) within 2 s of the last FIN.
fn request_then_reply(lines: &[&str], len: usize) {
    let (tx, rx) = mpsc::channel();
    let up = scripted_server(move |mut s| {
        let got = recv_all(&mut s, len + 1);
        let sent = s.write_all(&pattern(12, len)).is_ok();
        let _ = tx.send((got, sent));
    });
    let mut fp = FaultProxy::forward(&[up.addr], lines);
    let mut c = connect(fp.main);
    c.write_all(&pattern(11, len)).expect("client: request");
    c.shutdown(Shutdown::Write)
        .expect("client: shutdown(Write)");
    let (reply, end) = recv_all(&mut c, len + 1);
    let ((got, up_end), sent) = rx.recv_timeout(IO_TIMEOUT).expect("upstream report");
    assert!(matches!(up_end, End::Eof), "upstream: {up_end:?}, want EOF");
    assert!(
        got == pattern(11, len),
        "upstream: {} request bytes differ",
        got.len()
    );
    assert!(sent, "upstream: reply not sent");
    assert!(matches!(end, End::Eof), "client: {end:?}, want EOF");
    assert!(
        reply == pattern(12, len),
        "client: {} reply bytes differ",
        reply.len()
    );
    fp.expect_closed("client-eof", 1.0, Duration::from_secs(2));
    fp.assert_invariants(SETTLE);
}

/// A2: 1 MiB request, half-close, 1 MiB reply, close.
fn client_half_close_then_full_reply_then_eof_both_ways() {
    watchdog(|| request_then_reply(DATA, MIB));
}
both_paths!(client_half_close_then_full_reply_then_eof_both_ways);

/// A3 body: the upstream sends a banner and half-closes at once; the client
/// reads banner + EOF, then still sends `len` and half-closes; the upstream
/// gets all of it, then EOF.
fn banner_then_half_close(lines: &[&str], len: usize) {
    let (tx, rx) = mpsc::channel();
    let up = scripted_server(move |mut s| {
        let _ = s.write_all(b"220 banner\r\n");
        let _ = s.shutdown(Shutdown::Write);
        let _ = tx.send(recv_all(&mut s, len + 1));
    });
    let mut fp = FaultProxy::forward(&[up.addr], lines);
    let mut c = connect(fp.main);
    let (banner, end) = recv_all(&mut c, 64);
    assert!(
        matches!(end, End::Eof),
        "client: {end:?} after the banner, want EOF"
    );
    assert_eq!(banner, b"220 banner\r\n", "client: banner");
    c.write_all(&pattern(13, len))
        .expect("client can still send");
    c.shutdown(Shutdown::Write)
        .expect("client: shutdown(Write)");
    let (got, up_end) = rx.recv_timeout(IO_TIMEOUT).expect("upstream report");
    assert!(matches!(up_end, End::Eof), "upstream: {up_end:?}, want EOF");
    assert!(
        got == pattern(13, len),
        "upstream: {} bytes differ",
        got.len()
    );
    fp.expect_closed("upstream-eof", 1.0, Duration::from_secs(2));
    fp.assert_invariants(SETTLE);
}

/// A3: banner, upstream FIN first, then 1 MiB from the client.
fn upstream_banner_and_fin_first_client_still_sends() {
    watchdog(|| banner_then_half_close(DATA, MIB));
}
both_paths!(upstream_banner_and_fin_first_client_still_sends);

/// A5: 20 times, the upstream writes 512 B and shuts down at once (data and
/// FIN in one segment): the client reads all 512 B, then EOF.
fn data_and_fin_in_one_segment_are_both_delivered() {
    watchdog(|| {
        let up = scripted_server(|mut s| {
            let _ = s.write_all(&pattern(31, 512));
            let _ = s.shutdown(Shutdown::Write);
            let _ = recv_all(&mut s, 16);
        });
        let mut fp = FaultProxy::forward(&[up.addr], DATA);
        for round in 0..20 {
            let mut c = connect(fp.main);
            let (got, end) = recv_all(&mut c, 1024);
            assert!(
                matches!(end, End::Eof) && got == pattern(31, 512),
                "round {round}: {} bytes then {end:?}",
                got.len()
            );
        }
        fp.assert_invariants(SETTLE);
    });
}
both_paths!(data_and_fin_in_one_segment_are_both_delivered);

/// A13: `buffer_size = 1`: 1 MiB each way at once, byte-exact.
#[test]
fn one_byte_ring_full_duplex_is_byte_exact() {
    watchdog(|| duplex(ONE_BYTE, MIB as u64, 64 * KIB));
}

/// A13: `buffer_size = 1`: request, half-close, reply (A2), 256 KiB each.
#[test]
fn one_byte_ring_client_half_close_then_reply() {
    watchdog(|| request_then_reply(ONE_BYTE, 256 * KIB));
}

/// A13: `buffer_size = 1`: banner and upstream FIN first (A3), then 256 KiB.
#[test]
fn one_byte_ring_upstream_fin_first_then_client_sends() {
    watchdog(|| banner_then_half_close(ONE_BYTE, 256 * KIB));
}

/// A14: a chaos relay on each side of the proxy cuts every write into 1-byte
/// segments (TCP_NODELAY), both directions: 64 KiB each way arrive
/// byte-exact, then EOF both ways.
fn one_byte_segments_both_ways_are_byte_exact() {
    watchdog(|| {
        const LEN: u64 = 64 * KIB as u64;
        let bytewise = || ChaosOptions {
            to_upstream: Dir {
                chunk: Some(1),
                ..Dir::default()
            },
            to_client: Dir {
                chunk: Some(1),
                ..Dir::default()
            },
        };
        let (tx, rx) = mpsc::channel();
        let up = scripted_server(move |s| {
            let _ = tx.send(exchange(s, 2, LEN, 4 * KIB));
        });
        let near_upstream = Chaos::start(up.addr, bytewise());
        let mut fp = FaultProxy::forward(&[near_upstream.addr], DATA);
        let near_client = Chaos::start(fp.main, bytewise());
        let client = exchange(connect(near_client.addr), 1, LEN, 4 * KIB);
        let upstream = rx.recv_timeout(IO_TIMEOUT).expect("upstream flow");
        assert_flows_match(&client, &upstream);
        assert_eq!(
            near_client.forwarded(Way::ToUpstream),
            LEN,
            "bytes through the client-side relay"
        );
        drop(near_client);
        fp.assert_invariants(SETTLE);
    });
}
both_paths!(one_byte_segments_both_ways_are_byte_exact);
