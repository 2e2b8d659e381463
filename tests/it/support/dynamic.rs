//! `connect` and `socks` listeners from outside: the proxy started with its policy,
//! destinations (a tiny HTTP server, on 127.0.0.1, [::1] or both at one port), the
//! client's side of HTTP CONNECT and SOCKS5 written byte by byte, curl and openssl
//! as real clients and servers, and the close lines read back.

use super::{connect, in_ci, read_exact_n, scripted_server_at, wait_for, Proxy, Upstream};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A `connect` listener on 127.0.0.1:0 with `extra` flags.
pub fn connect_proxy(extra: &[&str]) -> Proxy {
    dynamic_proxy("connect", extra)
}

/// A `socks` listener on 127.0.0.1:0 with `extra` flags.
pub fn socks_proxy(extra: &[&str]) -> Proxy {
    dynamic_proxy("socks", extra)
}

/// `tcpbridge MODE --listen 127.0.0.1:0 EXTRA...`, its listen address checked.
pub fn dynamic_proxy(mode: &str, extra: &[&str]) -> Proxy {
    let mut args = vec![mode, "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let proxy = Proxy::spawn(&args);
    assert!(
        !proxy.listen.is_empty(),
        "tcpbridge {args:?}: READY line has no listen=IP:PORT token: {:?}",
        proxy.ready
    );
    proxy
}

/// `--allow 127.0.0.1/32:PORT` and, with `v6`, `--allow [::1]/128:PORT`.
pub fn allow_loopback(port: u16, v6: bool) -> Vec<String> {
    let mut v = vec!["--allow".to_string(), format!("127.0.0.1/32:{port}")];
    if v6 {
        v.push("--allow".into());
        v.push(format!("[::1]/128:{port}"));
    }
    v
}

/// Borrows owned flags as `&str`s.
pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The body every [`http_server`] answers with.
pub const HTTP_BODY: &str = "hello from the destination\n";

/// Answers one HTTP/1.1 request (its head read to the blank line) with `200 OK` and
/// [`HTTP_BODY`], then closes.
fn serve_http(mut s: TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{HTTP_BODY}",
        HTTP_BODY.len()
    );
    let _ = s.write_all(answer.as_bytes());
}

/// A tiny HTTP server on 127.0.0.1.
pub fn http_server() -> Upstream {
    scripted_server_at("127.0.0.1:0".parse().expect("addr"), serve_http)
}

/// A tiny HTTP server on [::1].
pub fn http_server_v6() -> Upstream {
    scripted_server_at("[::1]:0".parse().expect("addr"), serve_http)
}

/// Tiny HTTP servers on 127.0.0.1 and [::1] at one port (what `localhost` may name).
pub fn http_server_dual() -> (Upstream, Upstream) {
    for _ in 0..50 {
        let v4 = http_server();
        let at = SocketAddr::new("::1".parse().expect("::1"), v4.addr.port());
        if TcpListener::bind(at).is_ok() {
            // Released just now: bind it again for good (nothing else races for it
            // but the other tests' port-0 binds, which the bounded retry absorbs).
            if let Ok(v6) = std::panic::catch_unwind(|| {
                scripted_server_at(at, serve_http) // panics if taken meanwhile
            }) {
                return (v4, v6);
            }
        }
    }
    panic!("no port free on both 127.0.0.1 and [::1] in 50 tries");
}

/// The addresses `name` resolves to here (as the proxy's look-up sees them).
pub fn resolve(name: &str, port: u16) -> Vec<SocketAddr> {
    use std::net::ToSocketAddrs;
    (name, port)
        .to_socket_addrs()
        .map(|a| a.collect())
        .unwrap_or_default()
}

/// Moves the calling thread (and the threads and processes it starts after) into a
/// network namespace of its own with only `lo`, if it can; whether it did. Unlike
/// [`super::enter_private_netns`], never a failure: for tests that are only more
/// hermetic there.
pub fn try_private_netns() -> bool {
    // SAFETY: unshare affects the calling thread only.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return false;
    }
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status();
    assert!(
        matches!(up, Ok(s) if s.success()),
        "a new network namespace, and `ip link set lo up` failed: {up:?}"
    );
    true
}

// ---- HTTP CONNECT, the client's side ----

/// Reads a response head up to its blank line (bounded); the head as text.
pub fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => panic!(
                "EOF inside the response head after {:?}",
                String::from_utf8_lossy(&head)
            ),
            Err(e) => panic!(
                "reading the response head after {:?}: {e}",
                String::from_utf8_lossy(&head)
            ),
        }
        assert!(head.len() < 16 * 1024, "response head longer than 16 KiB");
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// The status code of a response head.
pub fn status_of(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"))
}

/// Sends `CONNECT target HTTP/1.1` with a Host header, `headers` (each ending in
/// `\r\n`) and `data` after the head, all in one write; returns the stream.
pub fn send_connect(proxy: SocketAddr, target: &str, headers: &str, data: &[u8]) -> TcpStream {
    let mut s = connect(proxy);
    let mut req =
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{headers}\r\n").into_bytes();
    req.extend_from_slice(data);
    s.write_all(&req).expect("send the CONNECT request");
    s
}

/// A CONNECT whose answer is read: (stream, head).
pub fn connect_tunnel(proxy: SocketAddr, target: &str, headers: &str) -> (TcpStream, String) {
    let mut s = send_connect(proxy, target, headers, b"");
    let head = read_head(&mut s);
    (s, head)
}

// ---- SOCKS5, the client's side ----

/// Greeting offering "no authentication" only.
pub const GREET_NONE: [u8; 3] = [5, 1, 0];

/// A CONNECT request (`cmd` 1) for an address.
pub fn socks_request_addr(dest: SocketAddr) -> Vec<u8> {
    socks_request(1, dest)
}

/// A request with command `cmd` for an address.
pub fn socks_request(cmd: u8, dest: SocketAddr) -> Vec<u8> {
    let mut v = vec![5, cmd, 0];
    match dest {
        SocketAddr::V4(a) => {
            v.push(1);
            v.extend_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            v.push(4);
            v.extend_from_slice(&a.ip().octets());
        }
    }
    v.extend_from_slice(&dest.port().to_be_bytes());
    v
}

/// A CONNECT request for a name.
pub fn socks_request_name(host: &str, port: u16) -> Vec<u8> {
    let mut v = vec![5, 1, 0, 3, host.len() as u8];
    v.extend_from_slice(host.as_bytes());
    v.extend_from_slice(&port.to_be_bytes());
    v
}

/// A SOCKS5 reply: its code and bound address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocksReply {
    pub code: u8,
    pub bound: SocketAddr,
}

/// Reads one SOCKS5 reply (`05 REP 00 ATYP ADDR PORT`).
pub fn read_socks_reply(s: &mut TcpStream) -> SocksReply {
    let mut head = [0u8; 4];
    s.read_exact(&mut head)
        .unwrap_or_else(|e| panic!("reading the SOCKS reply head: {e}"));
    assert_eq!(head[0], 5, "reply version in {head:?}");
    let ip: std::net::IpAddr = match head[3] {
        1 => {
            let mut a = [0u8; 4];
            s.read_exact(&mut a).expect("reply IPv4 address");
            a.into()
        }
        4 => {
            let mut a = [0u8; 16];
            s.read_exact(&mut a).expect("reply IPv6 address");
            a.into()
        }
        other => panic!("reply address type {other} in {head:?}"),
    };
    let mut port = [0u8; 2];
    s.read_exact(&mut port).expect("reply port");
    SocksReply {
        code: head[1],
        bound: SocketAddr::new(ip, u16::from_be_bytes(port)),
    }
}

/// Greeting (no authentication) and request for `dest` sent, method and reply read.
pub fn socks_open(proxy: SocketAddr, dest: SocketAddr) -> (TcpStream, SocksReply) {
    let mut s = connect(proxy);
    s.write_all(&GREET_NONE).expect("send the greeting");
    let mut method = [0u8; 2];
    s.read_exact(&mut method).expect("read the method reply");
    assert_eq!(method, [5, 0], "method reply");
    s.write_all(&socks_request_addr(dest))
        .expect("send the request");
    let reply = read_socks_reply(&mut s);
    (s, reply)
}

/// A tunnel through a `connect` (`socks` false) or `socks` listener to `host` (a name
/// or an address) and `port`: the stream once open, or the refusal's code (the HTTP
/// status, or the SOCKS reply).
pub fn open_tunnel(
    socks: bool,
    proxy: SocketAddr,
    host: &str,
    port: u16,
) -> Result<TcpStream, u16> {
    if !socks {
        let target = match host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(_)) => format!("[{host}]:{port}"),
            _ => format!("{host}:{port}"),
        };
        let (s, head) = connect_tunnel(proxy, &target, "");
        return match status_of(&head) {
            200 => Ok(s),
            code => Err(code),
        };
    }
    let mut s = connect(proxy);
    s.write_all(&GREET_NONE).expect("send the greeting");
    assert_eq!(read_exact_n(&mut s, 2, "method reply"), [5, 0]);
    let request = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => socks_request_addr(SocketAddr::new(ip, port)),
        Err(_) => socks_request_name(host, port),
    };
    s.write_all(&request).expect("send the request");
    match read_socks_reply(&mut s).code {
        0 => Ok(s),
        code => Err(code.into()),
    }
}

// ---- close lines ----

/// The close lines on the proxy's stderr.
pub fn close_lines(proxy: &Proxy) -> Vec<String> {
    proxy
        .stderr()
        .lines()
        .filter_map(|l| l.find("close id=").map(|at| l[at..].to_string()))
        .collect()
}

/// The value of `key=` in a close line.
pub fn line_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|t| t.strip_prefix(key)?.strip_prefix('='))
}

/// The one close line naming `dest` (waited for, at most 10 s): exactly one tunnel
/// went there.
pub fn close_line_to(proxy: &Proxy, dest: &str) -> String {
    let needle = format!(" dest={dest} ");
    assert!(
        proxy.wait_log(&needle, Duration::from_secs(10)),
        "no close line with dest={dest}:\n{}",
        proxy.stderr()
    );
    let lines: Vec<String> = close_lines(proxy)
        .into_iter()
        .filter(|l| l.contains(&needle))
        .collect();
    assert_eq!(lines.len(), 1, "close lines to {dest}: {lines:?}");
    lines[0].clone()
}

/// Waits for the close line of the client whose local address is `client`.
pub fn close_line_of(proxy: &Proxy, client: SocketAddr, within: Duration) -> String {
    let needle = format!("client={client} ");
    let mut found = None;
    wait_for(within, || {
        found = close_lines(proxy).into_iter().find(|l| l.contains(&needle));
        found.is_some()
    });
    found.unwrap_or_else(|| {
        panic!(
            "no close line for client {client} within {within:?}; stderr:\n{}",
            proxy.stderr()
        )
    })
}

/// The close lines with `reason=R`.
pub fn closes_with(proxy: &Proxy, reason: &str) -> usize {
    close_lines(proxy)
        .iter()
        .filter(|l| line_field(l, "reason") == Some(reason))
        .count()
}

/// Asserts `line` has `key=want`.
pub fn assert_field(line: &str, key: &str, want: &str) {
    assert_eq!(line_field(line, key), Some(want), "{key}= in {line}");
}

// ---- curl and openssl ----

/// Whether `program` runs here: false (with a skip line) outside CI, a failure in CI.
pub fn have(program: &str) -> bool {
    match Command::new(program).arg("version").output() {
        Ok(_) => true,
        Err(e) => {
            assert!(!in_ci(), "required tool {program} cannot run: {e}");
            eprintln!("SKIP: cannot run {program} ({e}); set CI=true to fail instead");
            false
        }
    }
}

/// What a curl run gave.
#[derive(Debug)]
pub struct CurlRun {
    /// curl's exit code (-1 if killed by a signal).
    pub code: i32,
    /// The body written to stdout.
    pub body: String,
    /// `%{http_connect}`: the proxy's answer to CONNECT (0 when none).
    pub http_connect: u16,
    /// curl's stderr (`-v` output when asked for).
    pub stderr: String,
}

/// The line that separates the body from the `-w` fields on curl's stdout.
const MARK: &str = "\n--curl-write-out--";

/// Runs `curl -q -sS --max-time 20 -w ... ARGS` (no proxy from the environment).
pub fn curl(args: &[&str]) -> CurlRun {
    let write_out = format!("{MARK}%{{http_connect}}");
    let out = Command::new("curl")
        .arg("-q")
        .args(["-sS", "--max-time", "20", "-w", &write_out])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("no_proxy")
        .env_remove("NO_PROXY")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run curl {args:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, connect) = stdout
        .rsplit_once(MARK)
        .unwrap_or_else(|| panic!("curl {args:?} printed no write-out: {stdout:?}"));
    CurlRun {
        code: out.status.code().unwrap_or(-1),
        body: body.to_string(),
        http_connect: connect.trim().parse().unwrap_or(0),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
