//! `connect` listeners (HTTP CONNECT tunnels) with curl as the real client: plain HTTP
//! and TLS (`openssl s_server`) through a tunnel, the default deny of internal
//! addresses and of ports other than 443, `localhost` judged by its addresses, Basic
//! credentials (and a credentials file others can read refused at start), the answers
//! on a raw socket (early tunnel bytes, 405, 431, 502), and the start-up refusal of a
//! non-loopback listener that asks no one for anything.

use crate::support::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const LOG: Duration = Duration::from_secs(10);

/// `curl -x http://PROXY --proxytunnel URL EXTRA...`.
fn curl_tunnel(proxy: &Proxy, url: &str, extra: &[&str]) -> CurlRun {
    let via = format!("http://{}", proxy.addr());
    let mut args = vec!["-x", &via, "--proxytunnel", url];
    args.extend_from_slice(extra);
    curl(&args)
}

#[test]
fn curl_fetches_plain_http_through_a_tunnel() {
    watchdog(|| {
        if !have("curl") {
            return;
        }
        let web = http_server();
        let port = web.addr.port();
        let mut proxy = connect_proxy(&strs(&allow_loopback(port, false)));
        let url = format!("http://127.0.0.1:{port}/");
        let run = curl_tunnel(&proxy, &url, &[]);
        assert_eq!((run.code, run.http_connect), (0, 200), "{run:?}");
        assert_eq!(run.body, HTTP_BODY);
        let line = close_line_to(&proxy, &format!("127.0.0.1:{port}"));
        assert_field(&line, "listener", "connect");
        assert_field(&line, "upstream", &web.addr.to_string());
        let base = proxy.baseline();
        let run = curl_tunnel(&proxy, &url, &[]);
        assert_eq!((run.code, run.body.as_str()), (0, HTTP_BODY), "{run:?}");
        proxy.assert_quiescent(base, LOG);
    });
}

/// `openssl s_server -www` on 127.0.0.1 with a throwaway certificate; killed on drop.
struct TlsServer {
    port: u16,
    child: Child,
    _dir: SecretDir,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_server() -> Option<TlsServer> {
    if !have("openssl") {
        return None;
    }
    let dir = SecretDir::new();
    let (key, cert) = (dir.path.join("key.pem"), dir.path.join("cert.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args([
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-days", "1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl req");
    assert!(made.status.success(), "openssl req: {made:?}");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("openssl")
        .args(["s_server", "-www", "-accept", &format!("127.0.0.1:{port}")])
        .arg("-key")
        .arg(&key)
        .arg("-cert")
        .arg(&cert)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn openssl s_server");
    let server = TlsServer {
        port,
        child,
        _dir: dir,
    };
    let at = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let up = wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(at).is_ok()
    });
    assert!(up, "openssl s_server is not listening on {at}");
    Some(server)
}

#[test]
fn curl_speaks_tls_to_openssl_through_a_tunnel() {
    watchdog(|| {
        if !have("curl") {
            return;
        }
        let Some(tls) = tls_server() else { return };
        let proxy = connect_proxy(&strs(&allow_loopback(tls.port, false)));
        let url = format!("https://127.0.0.1:{}/", tls.port);
        let run = curl(&["-k", "-x", &format!("http://{}", proxy.addr()), &url]);
        assert_eq!((run.code, run.http_connect), (0, 200), "{run:?}");
        assert!(run.body.contains("s_server"), "not the -www page: {run:?}");
        let line = close_line_to(&proxy, &format!("127.0.0.1:{}", tls.port));
        let sent: u64 = line_field(&line, "to_upstream")
            .and_then(|v| v.parse().ok())
            .expect("to_upstream");
        assert!(sent > 200, "a TLS handshake went through: {line}");
    });
}

#[test]
fn internal_addresses_are_denied_by_default() {
    watchdog(|| {
        if !have("curl") {
            return;
        }
        let web = http_server();
        let port = web.addr.port();
        let proxy = connect_proxy(&[]);
        let run = curl_tunnel(&proxy, &format!("http://127.0.0.1:{port}/"), &[]);
        assert_eq!(run.http_connect, 403, "{run:?}");
        assert_eq!(run.code, 56, "curl's code for a refused CONNECT: {run:?}");
        let line = close_line_to(&proxy, &format!("127.0.0.1:{port}"));
        assert_field(&line, "reason", "denied");
        assert_field(&line, "upstream", "-");
        assert_eq!(web.accepted(), 0, "the destination was never dialed");
        // The answer itself, on a raw socket.
        let (mut s, head) = connect_tunnel(proxy.addr(), &format!("127.0.0.1:{port}"), "");
        assert!(head.starts_with("HTTP/1.1 403 "), "{head}");
        assert!(head.contains("Proxy-Status: tcpbridge; error="), "{head}");
        assert!(head.contains("Connection: close\r\n"), "{head}");
        assert!(head.contains("Content-Length: 0\r\n"), "{head}");
        assert!(matches!(read_end(&mut s), End::Eof));
    });
}

#[test]
fn localhost_is_judged_by_its_addresses() {
    watchdog(|| {
        if !have("curl") {
            return;
        }
        let (v4, _v6) = http_server_dual();
        let port = v4.addr.port();
        let url = format!("http://localhost:{port}/");
        let dest = format!("localhost:{port}");
        let names = resolve("localhost", port);
        assert!(!names.is_empty(), "localhost does not resolve here");

        let denied = connect_proxy(&[]);
        let run = curl_tunnel(&denied, &url, &[]);
        assert_eq!((run.code, run.http_connect), (56, 403), "{run:?}");
        assert_field(&close_line_to(&denied, &dest), "reason", "denied");

        // A name rule never opens an internal address.
        let by_name = connect_proxy(&["--allow", &format!("localhost:{port}")]);
        let run = curl_tunnel(&by_name, &url, &[]);
        assert_eq!(
            run.http_connect, 403,
            "a name rule opened loopback: {run:?}"
        );

        let allowed = connect_proxy(&strs(&allow_loopback(port, true)));
        let run = curl_tunnel(&allowed, &url, &[]);
        assert_eq!((run.code, run.http_connect), (0, 200), "{run:?}");
        assert_eq!(run.body, HTTP_BODY);
        let line = close_line_to(&allowed, &dest);
        // IPv6 first when the name has an IPv6 address (both listen).
        let first = names
            .iter()
            .find(|a| a.is_ipv6())
            .or_else(|| names.first())
            .expect("an address");
        assert_field(&line, "upstream", &first.to_string());
    });
}

#[test]
fn curl_tunnels_to_an_ipv6_literal() {
    watchdog(|| {
        if !have("curl") {
            return;
        }
        let web = http_server_v6();
        let port = web.addr.port();
        let proxy = connect_proxy(&["--allow", &format!("[::1]/128:{port}")]);
        let run = curl_tunnel(&proxy, &format!("http://[::1]:{port}/"), &[]);
        assert_eq!((run.code, run.http_connect), (0, 200), "{run:?}");
        assert_eq!(run.body, HTTP_BODY);
        let line = close_line_to(&proxy, &format!("[::1]:{port}"));
        assert_field(&line, "upstream", &web.addr.to_string());
    });
}

#[test]
fn an_allow_rule_opens_only_its_ports() {
    watchdog(|| {
        if !have("curl") {
            return;
        }
        let (open, other) = (http_server(), http_server());
        let proxy = connect_proxy(&strs(&allow_loopback(open.addr.port(), false)));
        let run = curl_tunnel(&proxy, &format!("http://{}/", other.addr), &[]);
        assert_eq!((run.code, run.http_connect), (56, 403), "{run:?}");
        assert_field(
            &close_line_to(&proxy, &other.addr.to_string()),
            "reason",
            "denied",
        );
        let run = curl_tunnel(&proxy, &format!("http://{}/", open.addr), &[]);
        assert_eq!((run.code, run.http_connect), (0, 200), "{run:?}");
        assert_eq!(other.accepted(), 0);
    });
}

#[test]
fn basic_credentials_are_required_when_configured() {
    watchdog(|| {
        if !have("curl") {
            return;
        }
        let web = http_server();
        let dir = SecretDir::new();
        let file = dir.file("users", b"alice:s3cret\n");
        let file = file.to_str().expect("utf-8 path").to_string();
        let mut flags = allow_loopback(web.addr.port(), false);
        flags.extend(["--credentials-file".to_string(), file.clone()]);
        let proxy = connect_proxy(&strs(&flags));
        let url = format!("http://{}/", web.addr);

        let run = curl_tunnel(&proxy, &url, &["-U", "alice:s3cret"]);
        assert_eq!((run.code, run.http_connect), (0, 200), "{run:?}");
        assert_eq!(run.body, HTTP_BODY);
        let run = curl_tunnel(&proxy, &url, &["-U", "alice:wrong", "-v"]);
        assert_eq!((run.code, run.http_connect), (56, 407), "{run:?}");
        assert!(
            run.stderr
                .contains("< Proxy-Authenticate: Basic realm=\"tcpbridge\""),
            "{run:?}"
        );
        let run = curl_tunnel(&proxy, &url, &[]);
        assert_eq!((run.code, run.http_connect), (56, 407), "{run:?}");
        let two = wait_for(LOG, || closes_with(&proxy, "auth") == 2);
        assert!(two, "two auth closes:\n{}", proxy.stderr());

        // The raw answer to a request without credentials.
        let (mut s, head) = connect_tunnel(proxy.addr(), &web.addr.to_string(), "");
        assert!(head.starts_with("HTTP/1.1 407 "), "{head}");
        assert!(head.contains("Proxy-Authenticate: Basic realm=\"tcpbridge\"\r\n"));
        assert!(matches!(read_end(&mut s), End::Eof));

        // A file others can read is refused at start.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod 644");
        let run = run_cli(
            &[
                "connect",
                "--listen",
                "127.0.0.1:0",
                "--credentials-file",
                &file,
            ],
            Duration::from_secs(10),
        );
        assert_eq!(run.status.and_then(|s| s.code()), Some(2), "{run:?}");
        assert!(run.stdout.is_empty(), "no READY line: {run:?}");
    });
}

#[test]
fn raw_answers_of_a_connect_listener() {
    watchdog(|| {
        let echo = echo_server();
        let refused = closed_port();
        let mut flags = allow_loopback(echo.addr.port(), false);
        flags.extend(allow_loopback(refused.port(), false));
        let proxy = connect_proxy(&strs(&flags));
        let base = proxy.baseline();

        // Tunnel bytes in the request's own write: answered, then echoed.
        let mut s = send_connect(proxy.addr(), &echo.addr.to_string(), "", b"hello");
        let head = read_head(&mut s);
        assert_eq!(head, "HTTP/1.1 200 Connection established\r\n\r\n");
        assert_eq!(read_exact_n(&mut s, 5, "early bytes echoed"), b"hello");
        s.shutdown(Shutdown::Write).expect("shutdown");
        assert!(matches!(read_end(&mut s), End::Eof));

        // Not CONNECT: 405 with Allow.
        let mut s = connect(proxy.addr());
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send GET");
        let head = read_head(&mut s);
        assert_eq!(status_of(&head), 405, "{head}");
        assert!(head.contains("Allow: CONNECT\r\n"), "{head}");
        assert!(head.contains("Proxy-Status: tcpbridge; error="), "{head}");
        assert!(matches!(read_end(&mut s), End::Eof));

        // A 17 KiB head: 431.
        let big = format!("X-Big: {}\r\n", "a".repeat(17 * 1024));
        let mut s = send_connect(proxy.addr(), &echo.addr.to_string(), &big, b"");
        let head = read_head(&mut s);
        assert_eq!(status_of(&head), 431, "{head}");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty(), "bytes after the 431: {rest:?}");

        // Allowed, nothing listens: 502 connection_refused.
        let (mut s, head) = connect_tunnel(proxy.addr(), &refused.to_string(), "");
        assert_eq!(status_of(&head), 502, "{head}");
        assert!(head.contains("error=connection_refused"), "{head}");
        assert!(matches!(read_end(&mut s), End::Eof));
        let line = close_line_to(&proxy, &refused.to_string());
        assert_field(&line, "reason", "connect-refused");
        let mut proxy = proxy;
        proxy.assert_quiescent(base, LOG);
    });
}

#[test]
fn a_non_loopback_listener_needs_credentials_or_client_allow() {
    watchdog(|| {
        let run = run_cli(
            &["connect", "--listen", "0.0.0.0:0"],
            Duration::from_secs(10),
        );
        assert_eq!(run.status.and_then(|s| s.code()), Some(2), "{run:?}");
        let lines: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "one line: {run:?}");
        for needle in ["0.0.0.0:0", "--credentials-file", "--client-allow"] {
            assert!(lines[0].contains(needle), "{needle} missing: {}", lines[0]);
        }
        let proxy = Proxy::spawn(&[
            "connect",
            "--listen",
            "0.0.0.0:0",
            "--client-allow",
            "127.0.0.0/8",
        ]);
        let port = proxy.addr().port();
        let at = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let (mut s, head) = connect_tunnel(at, "127.0.0.1:9", "");
        assert_eq!(status_of(&head), 403, "serves, and denies loopback: {head}");
        assert!(matches!(read_end(&mut s), End::Eof));
    });
}
