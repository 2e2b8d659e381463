//! `socks` listeners (SOCKS5, RFC 1928 and RFC 1929): curl through them to names the
//! proxy resolves (`socks5h`) and to IPv4 and IPv6 literals (`socks5`), the default
//! deny, username and password; and the protocol on a raw socket: a client that
//! trickles one byte per write, one that sends everything in one write, commands and
//! address types it does not support, SOCKS4, and a greeting that offers no method the
//! listener accepts.

use crate::support::*;
use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

const LOG: Duration = Duration::from_secs(10);

/// `curl -x socks5[h]://PROXY URL EXTRA...`.
fn curl_socks(proxy: &Proxy, scheme: &str, url: &str, extra: &[&str]) -> CurlRun {
    let via = format!("{scheme}://{}", proxy.addr());
    let mut args = vec!["-x", &via, url];
    args.extend_from_slice(extra);
    curl(&args)
}

#[test]
fn curl_through_socks_to_names_and_literals() {
    watchdog(|| {
        if !have("curl") {
            return;
        }
        let (v4, v6) = http_server_dual();
        let port = v4.addr.port();
        let only_v6 = http_server_v6();
        let mut flags = allow_loopback(port, true);
        flags.extend([
            "--allow".to_string(),
            format!("[::1]/128:{}", only_v6.addr.port()),
        ]);
        let mut proxy = socks_proxy(&strs(&flags));

        // socks5h: the proxy resolves the name.
        let run = curl_socks(&proxy, "socks5h", &format!("http://localhost:{port}/"), &[]);
        assert_eq!((run.code, run.body.as_str()), (0, HTTP_BODY), "{run:?}");
        let line = close_line_to(&proxy, &format!("localhost:{port}"));
        assert_field(&line, "listener", "socks");
        let base = proxy.baseline();

        // socks5: curl resolves, the proxy gets literals.
        let run = curl_socks(&proxy, "socks5", &format!("http://{}/", v4.addr), &[]);
        assert_eq!((run.code, run.body.as_str()), (0, HTTP_BODY), "{run:?}");
        close_line_to(&proxy, &v4.addr.to_string());
        let run = curl_socks(&proxy, "socks5", &format!("http://{}/", only_v6.addr), &[]);
        assert_eq!((run.code, run.body.as_str()), (0, HTTP_BODY), "{run:?}");
        let line = close_line_to(&proxy, &only_v6.addr.to_string());
        assert_field(&line, "upstream", &only_v6.addr.to_string());
        assert_eq!(v6.accepted() + v4.accepted(), 2, "one request each way");
        proxy.assert_quiescent(base, LOG);
    });
}

#[test]
fn socks_denies_internal_addresses_by_default() {
    watchdog(|| {
        if !have("curl") {
            return;
        }
        let web = http_server();
        let proxy = socks_proxy(&[]);
        let run = curl_socks(&proxy, "socks5", &format!("http://{}/", web.addr), &[]);
        // curl 7.88 says CURLE_PROXY (97) for a SOCKS reply other than 00.
        assert_ne!(run.code, 0, "{run:?}");
        eprintln!("curl exit code for a denied SOCKS request: {}", run.code);
        let line = close_line_to(&proxy, &web.addr.to_string());
        assert_field(&line, "reason", "denied");
        assert_eq!(web.accepted(), 0);
        // The reply itself: 02, not allowed by the ruleset.
        let (mut s, reply) = socks_open(proxy.addr(), web.addr);
        assert_eq!(reply.code, 2, "{reply:?}");
        assert!(matches!(read_end(&mut s), End::Eof));
    });
}

#[test]
fn socks_username_and_password() {
    watchdog(|| {
        if !have("curl") {
            return;
        }
        let web = http_server();
        let dir = SecretDir::new();
        let file = dir.file("users", b"alice:s3cret\n");
        let mut flags = allow_loopback(web.addr.port(), false);
        flags.extend([
            "--credentials-file".to_string(),
            file.to_str().expect("utf-8 path").to_string(),
        ]);
        let proxy = socks_proxy(&strs(&flags));
        let url = format!("http://{}/", web.addr);
        let run = curl_socks(&proxy, "socks5", &url, &["-U", "alice:s3cret"]);
        assert_eq!((run.code, run.body.as_str()), (0, HTTP_BODY), "{run:?}");
        let run = curl_socks(&proxy, "socks5", &url, &["-U", "alice:wrong"]);
        assert_ne!(run.code, 0, "{run:?}");
        let run = curl_socks(&proxy, "socks5", &url, &[]);
        assert_ne!(run.code, 0, "{run:?}");
        assert!(
            wait_for(LOG, || closes_with(&proxy, "auth") == 2),
            "two auth closes:\n{}",
            proxy.stderr()
        );
        assert_eq!(web.accepted(), 1);

        // Only "no authentication" offered: 05 FF, then the close.
        let mut s = connect(proxy.addr());
        s.write_all(&GREET_NONE).expect("greeting");
        assert_eq!(read_exact_n(&mut s, 2, "method reply"), [5, 0xFF]);
        assert!(matches!(read_end(&mut s), End::Eof));
    });
}

#[test]
fn a_client_trickling_one_byte_per_write() {
    watchdog(|| {
        let echo = echo_server();
        let proxy = socks_proxy(&strs(&allow_loopback(echo.addr.port(), false)));
        let mut s = connect(proxy.addr());
        s.set_nodelay(true).expect("TCP_NODELAY");
        let mut all = GREET_NONE.to_vec();
        all.extend(socks_request_addr(echo.addr));
        all.extend_from_slice(b"trickled");
        for b in &all {
            s.write_all(std::slice::from_ref(b)).expect("one byte");
        }
        assert_eq!(read_exact_n(&mut s, 2, "method reply"), [5, 0]);
        let reply = read_socks_reply(&mut s);
        assert_eq!(reply.code, 0, "{reply:?}");
        assert_ne!(reply.bound.port(), 0, "a bound port: {reply:?}");
        assert_eq!(read_exact_n(&mut s, 8, "echo"), b"trickled");
        s.shutdown(Shutdown::Write).expect("shutdown");
        assert!(matches!(read_end(&mut s), End::Eof));
    });
}

#[test]
fn greeting_request_and_data_in_one_write() {
    watchdog(|| {
        // The destination records what it got first, before echoing.
        let (tx, rx) = std::sync::mpsc::channel::<(Vec<u8>, SocketAddr)>();
        let tx = std::sync::Mutex::new(tx);
        let dest = scripted_server(move |mut s| {
            let first = read_exact_n(&mut s, 9, "first bytes at the destination");
            let from = s.peer_addr().expect("peer address");
            let _ = tx.lock().expect("tx").send((first.clone(), from));
            let _ = s.write_all(&first);
            echo_conn(s);
        });
        let proxy = socks_proxy(&strs(&allow_loopback(dest.addr.port(), false)));
        let mut s = connect(proxy.addr());
        let mut all = GREET_NONE.to_vec();
        all.extend(socks_request_addr(dest.addr));
        all.extend_from_slice(b"coalesced");
        s.write_all(&all).expect("one write");
        assert_eq!(read_exact_n(&mut s, 2, "method reply"), [5, 0]);
        let reply = read_socks_reply(&mut s);
        assert_eq!(reply.code, 0, "{reply:?}");
        assert_eq!(read_exact_n(&mut s, 9, "echo"), b"coalesced");
        let (first, from) = rx.recv_timeout(LOG).expect("the destination's first bytes");
        assert_eq!(
            first, b"coalesced",
            "no handshake byte reached the destination"
        );
        assert_eq!(
            reply.bound, from,
            "the reply names the proxy's outbound address"
        );
        s.shutdown(Shutdown::Write).expect("shutdown");
        assert!(matches!(read_end(&mut s), End::Eof));
    });
}

/// A request with `bytes` after the greeting: the reply code, then the close.
fn refused_request(proxy: SocketAddr, bytes: &[u8]) -> u8 {
    let mut s = connect(proxy);
    s.write_all(&GREET_NONE).expect("greeting");
    assert_eq!(read_exact_n(&mut s, 2, "method reply"), [5, 0]);
    s.write_all(bytes).expect("request");
    let reply = read_socks_reply(&mut s);
    let end = read_end(&mut s);
    assert!(matches!(end, End::Eof), "after reply {reply:?}: {end:?}");
    reply.code
}

#[test]
fn unsupported_commands_and_address_types() {
    watchdog(|| {
        let echo = echo_server();
        let mut proxy = socks_proxy(&strs(&allow_loopback(echo.addr.port(), false)));
        let base = proxy.baseline();
        assert_eq!(
            refused_request(proxy.addr(), &socks_request(2, echo.addr)),
            7,
            "BIND"
        );
        assert_eq!(
            refused_request(proxy.addr(), &socks_request(3, echo.addr)),
            7,
            "UDP"
        );
        let atyp5 = [5, 1, 0, 5, 127, 0, 0, 1, 0, 80];
        assert_eq!(refused_request(proxy.addr(), &atyp5), 8, "address type 5");

        // SOCKS4: closed without a byte.
        let mut s = connect(proxy.addr());
        let port = echo.addr.port().to_be_bytes();
        s.write_all(&[4, 1, port[0], port[1], 127, 0, 0, 1, 0])
            .expect("SOCKS4 request");
        let end = read_end(&mut s);
        assert!(matches!(end, End::Eof | End::Reset), "SOCKS4 got {end:?}");
        assert!(
            wait_for(LOG, || closes_with(&proxy, "handshake") == 4),
            "four handshake closes:\n{}",
            proxy.stderr()
        );
        assert_eq!(echo.accepted(), 0);
        proxy.assert_quiescent(base, LOG);
    });
}
