//! Forward mode, close semantics: half-close in each direction (FIN forwarded
//! only after the bytes before it), data and FIN arriving together, and RST
//! propagation under `--reset-policy mirror` (default) and `fin`.
//!
//! Contract: an EOF is forwarded as FIN once the bytes already read are
//! delivered, and the other direction keeps flowing. An RST is forwarded as
//! RST (mirror) or FIN (fin) only after the bytes read from the reset side
//! have been delivered.
//!
//! Each test runs on both data paths (`::copy`, `::splice`) except the 1-byte
//! ring ones: a pool of 1-byte rings affords no kernel pipe.

use crate::support::*;
use std::io::Write;
use std::net::Shutdown;
use std::sync::mpsc;
use std::time::Duration;

const MIB: usize = 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// What the upstream side of a scenario saw.
struct UpstreamReport {
    received: u64,
    received_hash: [u8; 32],
    end: End,
    sent_ok: bool,
}

/// A2: the client sends `len` bytes then half-closes; the upstream reads to
/// EOF, then replies `len` bytes and closes. The client gets the whole reply
/// then EOF; the upstream got the whole request then EOF.
fn client_half_close_then_reply(extra: &[&str], len: usize) {
    let (tx, rx) = mpsc::channel();
    let up = scripted_server_with_warmup(move |mut s| {
        let (received, received_hash, end) = recv_hash(&mut s, 11);
        let sent_ok = send_pattern(&mut s, 12, len as u64, CHUNK).is_ok();
        drop(s); // everything was read: a FIN
        let _ = tx.send(UpstreamReport {
            received,
            received_hash,
            end,
            sent_ok,
        });
    });
    let mut proxy = Proxy::forward(&[up.addr], extra);
    echo_once(proxy.addr());
    let baseline = proxy.baseline();

    let mut c = connect(proxy.addr());
    let sent = send_pattern(&mut c, 11, len as u64, CHUNK).expect("client sends the request");
    c.shutdown(Shutdown::Write).expect("client shutdown(Write)");
    let (n, h, end) = recv_hash(&mut c, 12);
    let up_report = rx.recv_timeout(IO_TIMEOUT).expect("upstream finished");

    assert!(
        matches!(up_report.end, End::Eof),
        "upstream: request should end with EOF, got {:?}",
        up_report.end
    );
    assert_eq!(up_report.received, len as u64, "upstream: request length");
    assert!(
        up_report.received_hash == sent,
        "upstream: request bytes differ"
    );
    assert!(up_report.sent_ok, "upstream could not send its reply");
    assert!(
        matches!(end, End::Eof),
        "client: reply should end with EOF, got {end:?}"
    );
    assert_eq!(n, len as u64, "client: reply length");
    assert!(h == sha256(&pattern(12, len)), "client: reply bytes differ");
    drop(c);

    proxy.assert_quiescent(baseline, Duration::from_secs(2));
    up.assert_no_handler_panics();
}

/// A3: the upstream sends a banner and half-closes at once; the client reads
/// banner + EOF, then still sends `len` bytes and half-closes; the upstream
/// gets all of them then EOF.
fn upstream_banner_then_half_close(extra: &[&str], len: usize) {
    const BANNER: &[u8] = b"220 upstream speaks first\r\n";
    let (tx, rx) = mpsc::channel();
    let up = scripted_server_with_warmup(move |mut s| {
        let sent_ok = s.write_all(BANNER).is_ok() && s.shutdown(Shutdown::Write).is_ok();
        let (received, received_hash, end) = recv_hash(&mut s, 21);
        let _ = tx.send(UpstreamReport {
            received,
            received_hash,
            end,
            sent_ok,
        });
    });
    let mut proxy = Proxy::forward(&[up.addr], extra);
    echo_once(proxy.addr());
    let baseline = proxy.baseline();

    let mut c = connect(proxy.addr());
    let (banner, end) = recv_all(&mut c, 1024);
    assert_eq!(banner, BANNER, "client: banner bytes");
    assert!(
        matches!(end, End::Eof),
        "client: banner should be followed by EOF, got {end:?}"
    );
    let sent =
        send_pattern(&mut c, 21, len as u64, CHUNK).expect("client can still send after EOF");
    c.shutdown(Shutdown::Write).expect("client shutdown(Write)");
    let up_report = rx.recv_timeout(IO_TIMEOUT).expect("upstream finished");

    assert!(up_report.sent_ok, "upstream could not send the banner");
    assert!(
        matches!(up_report.end, End::Eof),
        "upstream: data should end with EOF, got {:?}",
        up_report.end
    );
    assert_eq!(
        up_report.received, len as u64,
        "upstream: bytes from the client"
    );
    assert!(
        up_report.received_hash == sent,
        "upstream: bytes differ from what the client sent"
    );
    drop(c);

    proxy.assert_quiescent(baseline, Duration::from_secs(2));
    up.assert_no_handler_panics();
}

fn client_half_close_then_upstream_replies_and_closes() {
    watchdog(|| client_half_close_then_reply(&[], MIB));
}
both_paths!(client_half_close_then_upstream_replies_and_closes);

fn upstream_speaks_first_and_half_closes_while_client_sends() {
    watchdog(|| upstream_banner_then_half_close(&[], MIB));
}
both_paths!(upstream_speaks_first_and_half_closes_while_client_sends);

#[test]
fn one_byte_buffer_client_half_close_then_reply() {
    watchdog(|| client_half_close_then_reply(&["--buffer-size", "1"], 256 * 1024));
}

#[test]
fn one_byte_buffer_upstream_half_closes_first() {
    watchdog(|| upstream_banner_then_half_close(&["--buffer-size", "1"], 256 * 1024));
}

/// A5: the upstream writes 512 B and shuts down at once, so data and FIN reach
/// the proxy together: the client gets all 512 B, then EOF.
fn upstream_data_and_fin_together_are_all_delivered() {
    watchdog(|| {
        let payload = pattern(5, 512);
        let expected = payload.clone();
        let up = scripted_server_with_warmup(move |mut s| {
            if s.write_all(&payload).is_ok() && s.shutdown(Shutdown::Write).is_ok() {
                let _ = recv_all(&mut s, 1024); // hold until the client closes
            }
        });
        let mut proxy = Proxy::forward(&[up.addr], &[]);
        echo_once(proxy.addr());
        let baseline = proxy.baseline();

        let mut c = connect(proxy.addr());
        let (got, end) = recv_all(&mut c, 1024);
        assert_eq!(got.len(), 512, "client: bytes before EOF");
        assert!(got == expected, "client: bytes differ");
        assert!(
            matches!(end, End::Eof),
            "client: want EOF after the 512 B, got {end:?}"
        );
        drop(c);

        proxy.assert_quiescent(baseline, Duration::from_secs(2));
        up.assert_no_handler_panics();
    });
}
both_paths!(upstream_data_and_fin_together_are_all_delivered);

/// The upstream sends 100 KiB, waits until the proxy's kernel acknowledged
/// them, then resets. The client must read all 100 KiB, then see
/// `want` (RST for mirror, EOF for fin).
fn upstream_reset_after_data(extra: &[&str], want_reset: bool) {
    let payload = pattern(31, 100 * 1024);
    let expected = payload.clone();
    let up = scripted_server_with_warmup(move |mut s| {
        if s.write_all(&payload).is_ok() {
            wait_acked(&s, Duration::from_secs(5));
            reset(s);
        }
    });
    let mut proxy = Proxy::forward(&[up.addr], extra);
    echo_once(proxy.addr());
    let baseline = proxy.baseline();

    let mut c = connect(proxy.addr());
    let (got, end) = recv_all(&mut c, 200 * 1024);
    assert_eq!(
        got.len(),
        expected.len(),
        "client: bytes before the close ({end:?})"
    );
    assert!(got == expected, "client: bytes differ");
    if want_reset {
        assert!(
            matches!(end, End::Reset),
            "client: want ConnectionReset after the data (mirror), got {end:?}"
        );
    } else {
        assert!(
            matches!(end, End::Eof),
            "client: want EOF after the data (fin), got {end:?}"
        );
    }
    drop(c);

    proxy.assert_quiescent(baseline, Duration::from_secs(3));
    up.assert_no_handler_panics();
}

fn upstream_reset_is_mirrored_to_client_after_data() {
    watchdog(|| upstream_reset_after_data(&[], true));
}
both_paths!(upstream_reset_is_mirrored_to_client_after_data);

fn upstream_reset_with_fin_policy_gives_client_eof_after_data() {
    watchdog(|| upstream_reset_after_data(&["--reset-policy", "fin"], false));
}
both_paths!(upstream_reset_with_fin_policy_gives_client_eof_after_data);

/// The client sends 10 KiB, waits until they are acknowledged, then resets.
/// The upstream reads all 10 KiB, then RST (mirror) or EOF (fin).
fn client_reset_after_data(extra: &[&str], want_reset: bool) {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (tx, rx) = mpsc::channel();
    let up = scripted_server_with_warmup(move |mut s| {
        let _ = ready_tx.send(());
        let _ = tx.send(recv_all(&mut s, 64 * 1024));
    });
    let mut proxy = Proxy::forward(&[up.addr], extra);
    echo_once(proxy.addr());
    let baseline = proxy.baseline();

    let mut c = connect(proxy.addr());
    ready_rx
        .recv_timeout(IO_TIMEOUT)
        .expect("the proxy connected to the upstream");
    let payload = pattern(41, 10 * 1024);
    c.write_all(&payload).expect("client write");
    wait_acked(&c, Duration::from_secs(5));
    reset(c);

    let (got, end) = rx
        .recv_timeout(IO_TIMEOUT)
        .expect("upstream finished reading");
    assert_eq!(
        got.len(),
        payload.len(),
        "upstream: bytes before the close ({end:?})"
    );
    assert!(got == payload, "upstream: bytes differ");
    if want_reset {
        assert!(
            matches!(end, End::Reset),
            "upstream: want ConnectionReset after the data (mirror), got {end:?}"
        );
    } else {
        assert!(
            matches!(end, End::Eof),
            "upstream: want EOF after the data (fin), got {end:?}"
        );
    }

    proxy.assert_quiescent(baseline, Duration::from_secs(3));
    up.assert_no_handler_panics();
}

fn client_reset_is_mirrored_to_upstream_after_data() {
    watchdog(|| client_reset_after_data(&[], true));
}
both_paths!(client_reset_is_mirrored_to_upstream_after_data);

fn client_reset_with_fin_policy_gives_upstream_eof_after_data() {
    watchdog(|| client_reset_after_data(&["--reset-policy", "fin"], false));
}
both_paths!(client_reset_with_fin_policy_gives_upstream_eof_after_data);
