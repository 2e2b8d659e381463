//! Running from a configuration file, as under systemd: several listeners in one
//! process, SIGHUP adding and removing listeners while a session on another streams,
//! a broken file on SIGHUP keeping the old configuration, readiness on NOTIFY_SOCKET,
//! socket activation, the SIGUSR1 line and JSON close records.

use crate::support::*;
use std::io::Read;
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::time::Duration;

/// A forward listener's table.
fn forward(name: &str, listen: &str, up: SocketAddr) -> String {
    format!("[[forward]]\nname = \"{name}\"\nlisten = \"{listen}\"\nupstream = \"{up}\"\n\n")
}

fn run(config: &std::path::Path, extra: &[&str]) -> Proxy {
    let path = config.to_str().expect("utf-8 path");
    let mut args = vec!["run", "--config", path];
    args.extend_from_slice(extra);
    Proxy::spawn(&args)
}

/// Two forward listeners from one file, each to its own upstream.
#[test]
fn two_forward_listeners_from_one_file() {
    watchdog(|| {
        let (a, b) = (echo_server(), echo_server());
        let dir = SecretDir::new();
        let text = forward("web", "127.0.0.1:0", a.addr) + &forward("api", "127.0.0.1:0", b.addr);
        let file = dir.file("tcpbridge.toml", text.as_bytes());
        let mut proxy = run(&file, &[]);
        let baseline = proxy.baseline();
        for name in ["web", "api"] {
            let mut c = connect(proxy.field_addr(&format!("{name}.listen")));
            echo_roundtrip(&mut c, name.as_bytes());
        }
        assert_eq!(
            (a.accepted(), b.accepted()),
            (1, 1),
            "each listener has its upstream"
        );
        assert!(proxy.wait_log("listener=web", Duration::from_secs(5)));
        assert!(proxy.wait_log("listener=api", Duration::from_secs(5)));
        proxy.assert_quiescent(baseline, Duration::from_secs(10));
    });
}

/// SIGHUP with a file that drops `old` and adds `new`: `new` serves, `old` refuses,
/// and a session on `keep` that streams through the reload stays byte-exact.
#[test]
fn reload_adds_and_removes_listeners_while_a_session_streams() {
    watchdog(|| {
        let up = echo_server();
        let dir = SecretDir::new();
        let keep = forward("keep", "127.0.0.1:0", up.addr);
        let before = keep.clone() + &forward("old", "127.0.0.1:0", up.addr);
        let file = dir.file("tcpbridge.toml", before.as_bytes());
        let mut proxy = run(&file, &[]);
        let (keep_addr, old_addr) = (
            proxy.field_addr("keep.listen"),
            proxy.field_addr("old.listen"),
        );

        let gate = Gate::new();
        let streaming = std::thread::spawn({
            let gate = gate.clone();
            move || {
                let c = connect(keep_addr);
                exchange_with_pause(
                    c,
                    3,
                    16 * 1024 * 1024,
                    64 * 1024,
                    Some((4 * 1024 * 1024, gate)),
                )
            }
        });

        // `keep` is now written with a fixed port: the one it got, so it must keep its
        // socket rather than bind again.
        let after = forward("keep", &keep_addr.to_string(), up.addr)
            + &forward("new", "127.0.0.1:0", up.addr);
        dir.file("tcpbridge.toml", after.as_bytes());
        proxy.send_signal(libc::SIGHUP);
        let line = proxy
            .wait_stdout("RELOADED ", Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no RELOADED line:\n{}", proxy.stderr()));
        let fields = parse_ready_fields(&line.replacen("RELOADED ", "READY ", 1)).expect("fields");
        let field = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(field("keep.listen"), Some(keep_addr.to_string()));
        assert_eq!(field("old.listen"), None);
        let new_addr: SocketAddr = field("new.listen")
            .expect("new.listen")
            .parse()
            .expect("addr");

        let mut c = connect(new_addr);
        echo_roundtrip(&mut c, b"through the new listener");
        drop(c);
        assert!(
            std::net::TcpStream::connect_timeout(&old_addr, Duration::from_secs(2)).is_err(),
            "the removed listener refuses connections"
        );

        gate.open();
        let flow = streaming.join().expect("streaming thread");
        assert!(flow.send_error.is_none(), "{:?}", flow.send_error);
        assert_eq!(flow.received, flow.sent);
        assert_eq!(
            flow.received_hash, flow.sent_hash,
            "byte-exact through the reload"
        );
        assert!(matches!(flow.end, End::Eof));
        proxy.assert_no_panic();
    });
}

/// A file that fails to load on SIGHUP leaves the running configuration serving.
#[test]
fn broken_config_on_reload_keeps_serving() {
    watchdog(|| {
        let up = echo_server();
        let dir = SecretDir::new();
        let good = forward("web", "127.0.0.1:0", up.addr);
        let file = dir.file("tcpbridge.toml", good.as_bytes());
        let mut proxy = run(&file, &[]);
        let addr = proxy.field_addr("web.listen");

        dir.file(
            "tcpbridge.toml",
            format!("{good}idel_timeout = \"5s\"\n").as_bytes(),
        );
        proxy.send_signal(libc::SIGHUP);
        let line = proxy
            .wait_stdout("RELOAD-FAILED ", Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no RELOAD-FAILED line:\n{}", proxy.stderr()));
        assert!(line.contains("tcpbridge.toml:"), "names the file: {line}");
        assert!(line.contains("idel_timeout"), "names the key: {line}");
        assert!(proxy.wait_log("reload failed", Duration::from_secs(5)));

        let mut c = connect(addr);
        echo_roundtrip(&mut c, b"still serving");
        c.shutdown(Shutdown::Write).expect("shutdown");
        assert!(matches!(read_end(&mut c), End::Eof));
        proxy.assert_alive();
    });
}

/// With NOTIFY_SOCKET set, the service manager hears READY=1 once the listeners are
/// bound, and STOPPING=1 on SIGTERM.
#[test]
fn notify_socket_receives_ready() {
    watchdog(|| {
        let up = echo_server();
        let dir = SecretDir::new();
        let socket_path = dir.file("notify", b"");
        let _ = std::fs::remove_file(&socket_path);
        let notify = UnixDatagram::bind(&socket_path).expect("bind notify socket");
        notify
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let args = forward_args(&[up.addr], &[]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut proxy = Proxy::spawn_configured(&refs, |cmd| {
            cmd.env("NOTIFY_SOCKET", &socket_path);
        });
        let mut buf = [0u8; 512];
        let n = notify.recv(&mut buf).expect("a notification");
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(text.lines().any(|l| l == "READY=1"), "{text:?}");
        proxy.send_signal(libc::SIGTERM);
        let n = notify.recv(&mut buf).expect("a second notification");
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(text.lines().any(|l| l == "STOPPING=1"), "{text:?}");
        assert!(proxy.wait_exit(Duration::from_secs(15)).success());
    });
}

/// Socket activation: a listening socket passed as fd 3 with LISTEN_PID/LISTEN_FDS is
/// used for the configured address instead of binding it (which would fail).
#[test]
fn socket_activation_adopts_the_inherited_listener() {
    watchdog(|| {
        let up = echo_server();
        let inherited = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = inherited.local_addr().expect("addr");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&inherited);
        let listen = addr.to_string();
        let forward = forward_args(&[up.addr], &[]);
        // The shell puts its own PID (which exec keeps) in LISTEN_PID, as systemd does.
        let mut args = vec!["-c", "export LISTEN_PID=$$; exec \"$0\" \"$@\"", BIN];
        args.extend(forward.iter().map(|a| {
            if a == "127.0.0.1:0" {
                listen.as_str()
            } else {
                a.as_str()
            }
        }));
        let proxy = Proxy::spawn_program("/bin/sh", &args, move |cmd| {
            // SAFETY: dup2 is async-signal-safe; it runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::dup2(fd, 3) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            cmd.env("LISTEN_FDS", "1");
        });
        assert_eq!(proxy.addr(), addr, "the inherited socket's address");
        let mut c = connect(addr);
        echo_roundtrip(&mut c, b"activated");
        drop(c);
        drop(inherited);
        proxy.assert_no_panic();
        assert!(!proxy.stderr().contains("matches no configured address"));
    });
}

/// SIGUSR1 logs one stats line; JSON logs give one object per closed session.
#[test]
fn sigusr1_snapshot_and_json_close_records() {
    watchdog(|| {
        let up = echo_server();
        let mut proxy = Proxy::forward(&[up.addr], &["--log-format", "json"]);
        let mut c = connect(proxy.addr());
        echo_roundtrip(&mut c, b"json");
        c.shutdown(Shutdown::Write).expect("shutdown");
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
        assert!(proxy.wait_log("\"event\":\"close\"", Duration::from_secs(5)));
        let line = proxy
            .stderr()
            .lines()
            .find(|l| l.contains("\"event\":\"close\""))
            .map(str::to_string)
            .expect("a close record");
        assert!(
            line.starts_with("{\"time\":\"") && line.ends_with('}'),
            "{line}"
        );
        for field in [
            "\"level\":\"INFO\"",
            "\"listener\":\"forward\"",
            "\"to_upstream\":4",
            "\"to_client\":4",
            "\"reason\":\"client-eof\"",
        ] {
            assert!(line.contains(field), "{field} missing from {line}");
        }
        proxy.send_signal(libc::SIGUSR1);
        assert!(
            proxy.wait_log("stats: uptime=", Duration::from_secs(5)),
            "{}",
            proxy.stderr()
        );
        proxy.assert_alive();
    });
}

/// Listening sockets the proxy owns now.
fn listening(proxy: &Proxy) -> usize {
    proxy
        .owned_tcp()
        .iter()
        .filter(|s| s.state == TCP_LISTEN)
        .count()
}

/// A reload that adds a listener (two new ports), removes one and changes another (a
/// new option and one more port), with its last fallible step made to fail: strace
/// injects ENOSPC into the third `epoll_ctl`, the registration of the last new port.
/// The reload is refused and the running configuration is exactly the old one (`/config`
/// byte for byte), every old port still serves, and no new port is left bound. The same
/// file, reloaded without the fault, then applies.
#[test]
fn a_reload_failing_at_its_last_step_changes_nothing() {
    watchdog(|| {
        let up = echo_server();
        let dir = SecretDir::new();
        let names = ["keep", "change", "drop"];
        let before: String = names
            .iter()
            .map(|n| forward(n, "127.0.0.1:0", up.addr))
            .collect();
        let metrics_line = "metrics_listen = \"127.0.0.1:0\"\n";
        let file = dir.file(
            "tcpbridge.toml",
            format!("{metrics_line}{before}").as_bytes(),
        );
        let mut proxy = run(&file, &[]);
        let metrics = proxy.field_addr("metrics");
        let ports = names.map(|n| proxy.field_addr(&format!("{n}.listen")));
        let (status, config_before) = http_get(metrics, "/config");
        assert_eq!(status, 200, "{config_before}");
        let listening_before = listening(&proxy);
        assert_eq!(listening_before, 4, "three ports and the metrics endpoint");

        let after = format!(
            "{metrics_line}{}[[forward]]\nname = \"change\"\nlisten = [\"{}\", \"127.0.0.1:0\"]\n\
             upstream = \"{}\"\nidle_timeout = \"1m\"\n\n[[forward]]\nname = \"add\"\n\
             listen = [\"127.0.0.1:0\", \"127.0.0.1:0\"]\nupstream = \"{}\"\n",
            forward("keep", &ports[0].to_string(), up.addr),
            ports[1],
            up.addr,
            up.addr
        );
        dir.file("tcpbridge.toml", after.as_bytes());
        let trace = dir.file("strace.out", b"");
        let Some(strace) = Strace::attach_to(proxy.pid, "epoll_ctl:error=ENOSPC:when=3", &trace)
        else {
            return; // no strace outside CI (a SKIP line was printed)
        };
        proxy.send_signal(libc::SIGHUP);
        let line = proxy
            .wait_stdout("RELOAD-FAILED ", Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no RELOAD-FAILED line:\n{}", proxy.stderr()));
        strace.detach();
        assert!(line.contains("cannot listen on"), "{line}");
        let injected = std::fs::read_to_string(&trace).unwrap_or_default();
        assert!(
            injected.contains("(INJECTED)"),
            "the fault was injected: {injected}"
        );

        let (_, config_after) = http_get(metrics, "/config");
        assert_eq!(config_after, config_before, "the running configuration");
        assert_eq!(
            listening(&proxy),
            listening_before,
            "no new port is left bound:\n{}",
            proxy.dump()
        );
        for (name, addr) in names.iter().zip(ports) {
            let mut c = connect(addr);
            echo_roundtrip(&mut c, name.as_bytes());
        }

        // The same file without the fault: applied.
        proxy.send_signal(libc::SIGHUP);
        let line = proxy
            .wait_stdout("RELOADED ", Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no RELOADED line:\n{}", proxy.stderr()));
        assert!(line.contains("add.listen="), "{line}");
        let (_, config_applied) = http_get(metrics, "/config");
        assert!(
            config_applied.contains("name = \"add\""),
            "{config_applied}"
        );
        assert!(
            config_applied.contains("idle_timeout = \"1m\""),
            "{config_applied}"
        );
        assert!(
            !config_applied.contains("name = \"drop\""),
            "{config_applied}"
        );
        assert_eq!(listening(&proxy), 6, "keep, change x2, add x2, metrics");
        assert!(
            std::net::TcpStream::connect_timeout(&ports[2], Duration::from_secs(2)).is_err(),
            "the removed listener refuses connections"
        );
        proxy.assert_no_panic();
    });
}
