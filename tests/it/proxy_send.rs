//! PROXY protocol headers sent upstream, read by a real nginx (`listen ...
//! proxy_protocol`, its access log naming `$proxy_protocol_addr:$proxy_protocol_port`):
//! the address logged is the test client's (bound to 127.0.0.2, so it differs from the
//! proxy's own 127.0.0.1, which nginx logs as `$remote_addr`), in v1 and v2, on fresh and
//! warm connections, and a failed connect moved to the next upstream still carries it;
//! a health check sends a v2 LOCAL header.

use crate::support::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One HTTP request through the proxy from 127.0.0.2; the client's address.
fn request_from_127_0_0_2(proxy: SocketAddr) -> SocketAddr {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let from: SocketAddr = "127.0.0.2:0".parse().expect("address");
    sock.bind(&from.into()).expect("bind 127.0.0.2");
    sock.connect(&proxy.into()).expect("connect to the proxy");
    let mut c: TcpStream = with_timeouts(sock.into());
    let me = c.local_addr().expect("local address");
    c.write_all(b"GET / HTTP/1.0\r\nHost: t\r\n\r\n")
        .expect("request");
    let mut reply = String::new();
    c.read_to_string(&mut reply).expect("reply");
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "nginx answered: {reply:?}"
    );
    me
}

/// The access-log line of `client` (nginx writes it when the request ends).
fn logged(nginx: &Peer, client: SocketAddr) -> String {
    let needle = format!("{client} ");
    let mut line = String::new();
    let found = wait_for(Duration::from_secs(10), || {
        line = nginx
            .read("access.log")
            .lines()
            .find(|l| l.starts_with(&needle))
            .unwrap_or_default()
            .to_string();
        !line.is_empty()
    });
    assert!(
        found,
        "no access-log line for {client}:\n{}\nerrors:\n{}",
        nginx.read("access.log"),
        nginx.read("error.log")
    );
    line
}

/// Three requests through a proxy with `warm` warm connections, each logged with the
/// client's address; then the fd check (with the pool full again when there is one).
fn sends_the_client_address(version: &str, warm: usize) {
    let Some(nginx) = nginx_reading_proxy() else {
        return;
    };
    let upstream = format!("{},proxy={version}", nginx.addr);
    let warm_arg = warm.to_string();
    let mut args = vec![
        "forward",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
    ];
    args.extend_from_slice(&["--warm", &warm_arg, "--metrics-listen", "127.0.0.1:0"]);
    let mut proxy = Proxy::spawn(&args);
    let metrics = proxy.field_addr("metrics");
    let baseline = match warm {
        0 => proxy.baseline(),
        n => warm_baseline(&proxy, metrics, n),
    };
    for _ in 0..3 {
        let client = request_from_127_0_0_2(proxy.addr());
        let line = logged(&nginx, client);
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.first(), Some(&client.to_string().as_str()), "{line}");
        assert_eq!(
            fields.get(1),
            Some(&"127.0.0.1"),
            "remote_addr is the proxy: {line}"
        );
        assert_eq!(
            fields.get(2),
            Some(&proxy.addr().to_string().as_str()),
            "the server address is the proxy's listener: {line}"
        );
    }
    if warm > 0 {
        let lent = metric_total(metrics, "tcpbridge_upstream_warm_lent_total");
        assert!(
            lent >= 1.0,
            "no session got a warm connection (lent {lent})"
        );
        warm_baseline(&proxy, metrics, warm);
    }
    proxy.assert_quiescent(baseline, Duration::from_secs(5));
}

#[test]
fn v1_reaches_nginx_with_the_client_address() {
    watchdog(|| sends_the_client_address("v1", 0));
}

#[test]
fn v2_reaches_nginx_with_the_client_address() {
    watchdog(|| sends_the_client_address("v2", 0));
}

#[test]
fn a_warm_connection_gets_its_header_when_lent() {
    watchdog(|| sends_the_client_address("v2", 2));
}

/// The first upstream refuses; the session moves to nginx and its header goes there.
#[test]
fn a_redial_carries_the_header_to_the_next_upstream() {
    watchdog(|| {
        let Some(nginx) = nginx_reading_proxy() else {
            return;
        };
        let refused = format!("{},proxy=v1", closed_port());
        let good = format!("{},proxy=v2", nginx.addr);
        let proxy = Proxy::spawn(&[
            "forward",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &refused,
            "--upstream",
            &good,
            "--eject-after",
            "0",
        ]);
        for _ in 0..2 {
            let client = request_from_127_0_0_2(proxy.addr());
            let line = logged(&nginx, client);
            assert!(line.starts_with(&format!("{client} ")), "{line}");
        }
    });
}

/// A health check of an upstream that takes headers sends a v2 LOCAL header (and closes
/// with a FIN, so the header is read).
#[test]
fn health_checks_send_a_local_header() {
    watchdog(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let tx = std::sync::Mutex::new(tx);
        let server = scripted_server(move |mut s| {
            let mut got = Vec::new();
            let _ = s.read_to_end(&mut got);
            let _ = tx.lock().map(|t| t.send(got));
        });
        let upstream = format!("{},proxy=v2", server.addr);
        let _proxy = Proxy::spawn(&[
            "forward",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--health-check",
            "tcp",
            "--health-interval",
            "1s",
        ]);
        let got = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a check within 10 s");
        assert_eq!(
            got,
            b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec(),
            "a v2 LOCAL header and nothing else"
        );
    });
}
