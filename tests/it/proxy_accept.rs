//! PROXY protocol headers accepted from clients: HAProxy's `send-proxy` and
//! `send-proxy-v2` in front of a forward listener (the close line names the test
//! client, bound to 127.0.0.2, not HAProxy's 127.0.0.1); the client's address through
//! HAProxy, the relay, the tunnel and the agent to a service that reads the agent's v1
//! header; every kind of bad header closed and counted, a slow one at its deadline, a
//! thousand unfinished ones without harm to another listener; IPv6 clients in both
//! versions. Each ends with the fd baseline.

use crate::support::*;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

/// A forward listener accepting headers from `trusted`, to an echo upstream.
fn accepting(up: SocketAddr, trusted: &str, extra: &[&str]) -> Proxy {
    let upstream = up.to_string();
    let mut args = vec![
        "forward",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
        "--proxy-protocol-accept",
        "--proxy-protocol-trusted",
        trusted,
    ];
    args.extend_from_slice(extra);
    Proxy::spawn(&args)
}

fn through_haproxy(v2: bool) {
    let up = echo_server();
    let mut proxy = accepting(up.addr, "127.0.0.1", &[]);
    let Some(haproxy) = haproxy_sending_proxy(proxy.addr(), v2) else {
        return;
    };
    // HAProxy's readiness probe reached the proxy as a session of its own: settle first.
    let baseline = proxy.baseline();
    let mut c = connect_from("127.0.0.2", haproxy.addr);
    let me = c.local_addr().expect("local address");
    echo_roundtrip(&mut c, b"through haproxy");
    c.shutdown(Shutdown::Write).expect("shutdown");
    assert!(matches!(read_end(&mut c), End::Eof));
    let line = format!("client={me} ");
    assert!(
        proxy.wait_log(&line, Duration::from_secs(10)),
        "no close line for {me}:\n{}",
        proxy.stderr()
    );
    drop(haproxy);
    proxy.assert_quiescent(baseline, Duration::from_secs(5));
}

#[test]
fn haproxy_send_proxy_gives_the_client_address() {
    watchdog(|| through_haproxy(false));
}

#[test]
fn haproxy_send_proxy_v2_gives_the_client_address() {
    watchdog(|| through_haproxy(true));
}

/// Client (127.0.0.2) → HAProxy (send-proxy-v2) → relay (accepts from 127.0.0.1) →
/// tunnel → agent (`proxy=v1` on its service) → a service that answers with the header
/// it got: the client's own address and port, not HAProxy's or the relay's.
#[test]
fn the_client_address_survives_relay_and_agent() {
    watchdog(|| {
        let service = scripted_server(|mut s| {
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while !line.ends_with(b"\r\n") && line.len() < 108 {
                if s.read_exact(&mut byte).is_err() {
                    return;
                }
                line.push(byte[0]);
            }
            let _ = s.write_all(&line);
            echo_conn(s);
        });
        let dir = SecretDir::new();
        let secret = dir.file("secret", format!("{SECRET}\n").as_bytes());
        let extra = owned(&[
            "--proxy-protocol-accept",
            "--proxy-protocol-trusted",
            "127.0.0.1",
        ]);
        let (relay, tunnel, public) = spawn_relay(&secret, "127.0.0.1:0", "127.0.0.1:0", &extra);
        let agent = Proxy::spawn_strings(&owned(
            &[
                "agent",
                "--relay",
                &tunnel.to_string(),
                "--service",
                &format!("{SERVICE}={},proxy=v1", service.addr),
                "--secret-file",
                secret.to_str().expect("utf-8 path"),
                "--pool",
                "2",
            ]
            .iter()
            .chain(BUILD_TUNNELS)
            .copied()
            .collect::<Vec<_>>(),
        ));
        let Some(haproxy) = haproxy_sending_proxy(public, true) else {
            return;
        };
        let mut c = connect_from("127.0.0.2", haproxy.addr);
        let me = c.local_addr().expect("local address");
        c.write_all(b"hello").expect("write");
        let want = format!(
            "PROXY TCP4 127.0.0.2 {} {} {}\r\n",
            service.addr.ip(),
            me.port(),
            service.addr.port()
        );
        let got = read_exact_n(&mut c, want.len(), "the service's copy of its header");
        assert_eq!(String::from_utf8_lossy(&got), want);
        let echoed = read_exact_n(&mut c, 5, "the first bytes echoed");
        assert_eq!(echoed, b"hello");
        echo_roundtrip(&mut c, b"and the data after it");
        drop(c);
        assert!(
            relay.wait_log(&format!("client={me} "), Duration::from_secs(10)),
            "the relay's close line names the client:\n{}",
            relay.stderr()
        );
        drop((agent, haproxy));
    });
}

/// What a client sends, and from where; every case is closed without reaching the
/// upstream and counted as `proxy-header`.
#[test]
fn bad_headers_are_closed_and_counted() {
    watchdog(|| {
        let up = echo_server();
        let mut proxy = accepting(up.addr, "127.0.0.1", &[]);
        let baseline = proxy.baseline();
        let mut long_v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
        long_v2.extend_from_slice(&[0x10, 0x01]);
        let cases: Vec<(&str, &str, Vec<u8>)> = vec![
            (
                "plain bytes from a trusted source",
                "127.0.0.1",
                b"GET / HTTP/1.0\r\n\r\n".to_vec(),
            ),
            (
                "wrong signature",
                "127.0.0.1",
                b"PROXZ TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
            ),
            (
                "v1 without CRLF",
                "127.0.0.1",
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\nx".to_vec(),
            ),
            (
                "v1 oversize",
                "127.0.0.1",
                [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 200]].concat(),
            ),
            (
                "v1 bad port",
                "127.0.0.1",
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n".to_vec(),
            ),
            ("v2 over 4 KiB", "127.0.0.1", long_v2),
            (
                "a header from an untrusted source",
                "127.0.0.2",
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nx".to_vec(),
            ),
        ];
        for (what, from, bytes) in &cases {
            let mut c = connect_from(from, proxy.addr());
            let _ = c.write_all(bytes);
            let end = read_end(&mut c);
            assert!(
                matches!(end, End::Eof | End::Reset),
                "{what}: the connection stays open ({end:?})"
            );
        }
        // A truncated header: the client ends it half-way.
        let mut c = connect_from("127.0.0.1", proxy.addr());
        c.write_all(b"PROXY TCP4 1.2.3.4").expect("write");
        c.shutdown(Shutdown::Write).expect("shutdown");
        assert!(
            matches!(read_end(&mut c), End::Eof | End::Reset),
            "truncated"
        );
        let want = cases.len() + 1;
        let counted = wait_for(Duration::from_secs(10), || {
            log_count(&proxy, "reason=proxy-header") == want
        });
        assert!(
            counted,
            "want {want} closes with reason=proxy-header, saw {}:\n{}",
            log_count(&proxy, "reason=proxy-header"),
            proxy.stderr()
        );
        assert_eq!(
            up.accepted(),
            1,
            "only the untrusted client's session dialed the upstream (and sent it nothing)"
        );
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}

/// One byte every 200 ms: closed at the 1 s deadline with `proxy-header-timeout`.
#[test]
fn a_slow_header_is_closed_at_its_deadline() {
    watchdog(|| {
        let up = echo_server();
        let mut proxy = accepting(up.addr, "127.0.0.1", &["--proxy-protocol-timeout", "1s"]);
        let baseline = proxy.baseline();
        let mut c = connect_from("127.0.0.1", proxy.addr());
        let mut closed = false;
        for &b in b"PROXY TCP4 203.0.113.1 203.0.113.2 1000 2000\r\n" {
            if c.write_all(&[b]).is_err() {
                closed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let end = read_end(&mut c);
        assert!(
            closed || matches!(end, End::Eof | End::Reset),
            "the slow client was not closed ({end:?})"
        );
        assert!(
            proxy.wait_log("reason=proxy-header-timeout", Duration::from_secs(10)),
            "{}",
            proxy.stderr()
        );
        assert_eq!(up.accepted(), 0, "nothing was dialed before the header");
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}

/// A thousand clients that never finish their header on one listener; a normal session
/// on another listener of the same process is served meanwhile.
#[test]
fn a_thousand_unfinished_headers_leave_another_listener_alone() {
    watchdog_for(Duration::from_secs(120), || {
        let up = echo_server();
        let dir = SecretDir::new();
        let conf = format!(
            "[[forward]]\nname = \"pp\"\nlisten = \"127.0.0.1:0\"\nupstream = \"{0}\"\n\
             proxy_protocol_accept = true\nproxy_protocol_trusted = [\"127.0.0.1\"]\n\n\
             [[forward]]\nname = \"plain\"\nlisten = \"127.0.0.1:0\"\nupstream = \"{0}\"\n",
            up.addr
        );
        let file = dir.file("tcpbridge.toml", conf.as_bytes());
        let mut proxy = Proxy::spawn(&["run", "--config", file.to_str().expect("utf-8")]);
        let (pp, plain) = (
            proxy.field_addr("pp.listen"),
            proxy.field_addr("plain.listen"),
        );
        let baseline = proxy.baseline();
        let mut stuck = Vec::with_capacity(1000);
        for _ in 0..1000 {
            let mut c = connect(pp);
            c.write_all(b"PROXY ").expect("write");
            stuck.push(c);
        }
        let mut c = connect(plain);
        echo_roundtrip(&mut c, b"served while a thousand wait");
        drop(c);
        drop(stuck);
        assert_eq!(up.accepted(), 1, "only the plain session dialed");
        proxy.assert_quiescent(baseline, Duration::from_secs(10));
    });
}

/// Clients over IPv6 (`::1`) with v1 and v2 headers carrying IPv6 addresses.
#[test]
fn ipv6_clients_in_both_versions() {
    watchdog(|| {
        let up = echo_server();
        let upstream = up.addr.to_string();
        let mut proxy = Proxy::spawn(&[
            "forward",
            "--listen",
            "[::1]:0",
            "--upstream",
            &upstream,
            "--proxy-protocol-accept",
            "--proxy-protocol-trusted",
            "::1",
        ]);
        let baseline = proxy.baseline();
        let v1 = b"PROXY TCP6 2001:db8::7 ::1 4242 443\r\n".to_vec();
        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x24".to_vec();
        v2.extend_from_slice(&[
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08,
        ]);
        v2.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        v2.extend_from_slice(&[0x10, 0x92, 0x01, 0xbb]);
        for (header, client) in [(v1, "[2001:db8::7]:4242"), (v2, "[2001:db8::8]:4242")] {
            let mut c = connect_from("::1", proxy.addr());
            c.write_all(&header).expect("header");
            echo_roundtrip(&mut c, b"over ipv6");
            drop(c);
            assert!(
                proxy.wait_log(&format!("client={client} "), Duration::from_secs(10)),
                "{}",
                proxy.stderr()
            );
        }
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}

/// A header sent one byte per write, its last byte in the same write as the client's
/// first bytes: the session starts with the header's address and those bytes.
#[test]
fn a_header_one_byte_at_a_time_then_data_in_the_same_segment() {
    watchdog(|| {
        let up = echo_server();
        let mut proxy = accepting(up.addr, "127.0.0.1", &[]);
        let baseline = proxy.baseline();
        let mut c = connect_from("127.0.0.1", proxy.addr());
        c.set_nodelay(true).expect("nodelay");
        let header = b"PROXY TCP4 198.51.100.4 192.0.2.9 40404 443\r";
        for &b in header.iter() {
            c.write_all(&[b]).expect("one byte");
        }
        c.write_all(b"\nfirst bytes").expect("the end and data");
        let echoed = read_exact_n(&mut c, 11, "the client's first bytes");
        assert_eq!(echoed, b"first bytes");
        drop(c);
        assert!(
            proxy.wait_log("client=198.51.100.4:40404 ", Duration::from_secs(10)),
            "{}",
            proxy.stderr()
        );
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}
