//! Forward mode with `--reuse-port`: several processes share one listening port through
//! SO_REUSEPORT, and the kernel spreads new connections over them; without the flag a
//! second process cannot bind the port; relay refuses the flag, on the command line and
//! in a config file.
//!
//! Contract (README, `--reuse-port`; docs/operations.md, "One process per core"): every
//! session through either process is byte-exact, both processes serve some, and each
//! process ends with no leaked descriptor and no CLOSE-WAIT socket.

use crate::support::*;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

/// Connections opened at once through the shared port.
const CONNECTIONS: usize = 64;
/// How long a process that must fail may take to exit.
const EXIT_WITHIN: Duration = Duration::from_secs(10);

/// Sessions a process has accepted so far, read from its `/metrics`.
fn accepted(proxy: &Proxy) -> f64 {
    let (status, body) = http_get(proxy.field_addr("metrics"), "/metrics");
    assert_eq!(status, 200, "GET /metrics: {body}");
    let samples = prom::parse(&body).unwrap_or_else(|e| panic!("/metrics: {e}\n{body}"));
    prom::sum(&samples, "tcpbridge_sessions_accepted_total", &[])
}

/// Process A listens on a free port with `--reuse-port`; process B listens on the same
/// port with `--reuse-port` (and on a port of its own, to warm it up). 64 connections at
/// once through the shared port each echo their own bytes exactly, and both processes
/// accepted some of them.
#[test]
fn two_processes_share_a_port_and_both_serve() {
    watchdog(|| {
        let echo = echo_server();
        let metrics = ["--metrics-listen", "127.0.0.1:0"];
        let mut a = Proxy::forward(&[echo.addr], &[&["--reuse-port"][..], &metrics].concat());
        let shared = a.addr();
        echo_once(shared);
        let a_base = a.baseline();
        let port = shared.to_string();
        let b_args = [&["--reuse-port", "--listen", port.as_str()][..], &metrics].concat();
        let mut b = Proxy::forward(&[echo.addr], &b_args);
        assert_eq!(
            b.listen.get(1),
            Some(&shared),
            "B listens on its own port, then on A's: {:?}",
            b.ready
        );
        echo_once(b.addr());
        let b_base = b.baseline();
        let (a_before, b_before) = (accepted(&a), accepted(&b));

        let mut clients: Vec<(TcpStream, Vec<u8>)> = (0..CONNECTIONS)
            .map(|n| (connect(shared), pattern(1000 + n as u64, 1024 + n * 97)))
            .collect();
        for (stream, bytes) in &mut clients {
            stream.write_all(bytes).expect("client: write");
        }
        for (n, (stream, bytes)) in clients.iter_mut().enumerate() {
            let got = read_exact_n(stream, bytes.len(), "echo through the shared port");
            assert!(got == *bytes, "connection {n}: the echo differs");
            stream.shutdown(Shutdown::Write).expect("shutdown(Write)");
            let end = read_end(stream);
            assert!(matches!(end, End::Eof), "connection {n}: {end:?}, want EOF");
        }
        drop(clients);

        let by_a = accepted(&a) - a_before;
        let by_b = accepted(&b) - b_before;
        assert_eq!(
            by_a + by_b,
            CONNECTIONS as f64,
            "accepted: A {by_a}, B {by_b}; want {CONNECTIONS} in all"
        );
        assert!(
            by_a > 0.0 && by_b > 0.0,
            "the kernel should spread {CONNECTIONS} connections over both processes: \
             A accepted {by_a}, B {by_b}"
        );
        a.assert_quiescent(a_base, Duration::from_secs(5));
        b.assert_quiescent(b_base, Duration::from_secs(5));
        echo.assert_no_handler_panics();
    });
}

/// The port of a running process, taken again by a second process: it exits 1 with one
/// line naming the address, whether the first has `--reuse-port` and the second not, or
/// neither has it (the hint when the second asked for sharing).
#[test]
fn a_second_process_without_the_flag_cannot_bind() {
    watchdog(|| {
        for (first, second, hint) in [
            (&[][..], &[][..], false),
            (&["--reuse-port"][..], &[][..], false),
            (&[][..], &["--reuse-port"][..], true),
        ] {
            let mut a = Proxy::forward(&[closed_port()], first);
            let addr: SocketAddr = a.addr();
            let listen = addr.to_string();
            let args = [
                &[
                    "forward",
                    "--listen",
                    listen.as_str(),
                    "--upstream",
                    "127.0.0.1:9",
                ][..],
                second,
            ]
            .concat();
            let run = run_cli(&args, EXIT_WITHIN);
            let what = format!("first {first:?}, second {second:?}: {run:?}");
            assert_eq!(run.status.and_then(|s| s.code()), Some(1), "{what}");
            let lines: Vec<&str> = run.stderr.lines().collect();
            assert_eq!(lines.len(), 1, "{what}");
            let want = format!("error: cannot bind {addr}: Address already in use");
            assert!(lines[0].starts_with(&want), "{what}");
            assert_eq!(lines[0].contains("needs --reuse-port"), hint, "{what}");
            a.assert_alive();
        }
    });
}

/// The relay refuses `--reuse-port` in one line (exit 2), and in a config file with the
/// key's position.
#[test]
fn relay_refuses_reuse_port_with_one_line() {
    watchdog(|| {
        let dir = SecretDir::new();
        let secret = dir.file("secret", &[b'k'; 32]);
        let secret = secret.to_str().expect("utf-8 path");
        let why = "relay pairs an agent's tunnel with a client's connection, \
                   both must reach the same process";
        let run = run_cli(
            &[
                "relay",
                "--tunnel-listen",
                "127.0.0.1:0",
                "--public",
                "s=127.0.0.1:0",
                "--secret-file",
                secret,
                "--reuse-port",
            ],
            EXIT_WITHIN,
        );
        assert_eq!(run.status.and_then(|s| s.code()), Some(2), "{run:?}");
        assert_eq!(
            run.stderr,
            format!("error: --reuse-port is for forward mode: {why}\n")
        );

        let text = format!(
            "[[relay]]\nname = \"r\"\ntunnel_listen = \"127.0.0.1:0\"\n\
             public = {{ s = \"127.0.0.1:0\" }}\nsecret_file = \"{secret}\"\nreuse_port = true\n"
        );
        let path = dir.file("relay.toml", text.as_bytes());
        let path = path.to_str().expect("utf-8 path");
        for command in ["run", "check"] {
            let run = run_cli(&[command, "--config", path], EXIT_WITHIN);
            assert_eq!(run.status.and_then(|s| s.code()), Some(2), "{run:?}");
            assert_eq!(
                run.stderr,
                format!(
                    "error: {path}:6:1: key 'reuse_port' does not belong in [[relay]] 'r': \
                     it is an option of [[forward]] listeners; {why}\n"
                ),
                "{command}"
            );
        }
    });
}

/// A reload that turns `reuse_port` off keeps the open socket as it is and says it needs a
/// restart: the port still serves, and another process with `--reuse-port` can still join.
#[test]
fn a_reload_changing_reuse_port_keeps_the_socket_until_a_restart() {
    watchdog(|| {
        let echo = echo_server();
        let dir = SecretDir::new();
        let table = format!(
            "[[forward]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\n",
            echo.addr
        );
        let file = dir.file(
            "tcpbridge.toml",
            format!("{table}reuse_port = true\n").as_bytes(),
        );
        let path = file.to_str().expect("utf-8 path");
        let mut proxy = Proxy::spawn(&["run", "--config", path]);
        let addr = proxy.field_addr("web.listen");
        echo_once(addr);
        let baseline = proxy.baseline();

        // Port 0 again, so the reload keeps the same socket for the same listener.
        dir.file("tcpbridge.toml", table.as_bytes());
        proxy.send_signal(libc::SIGHUP);
        let line = proxy
            .wait_stdout("RELOADED ", Duration::from_secs(10))
            .unwrap_or_else(|| panic!("no RELOADED line:\n{}", proxy.stderr()));
        assert!(line.contains(&format!("web.listen={addr}")), "{line}");
        let warning = format!(
            "reload: listener web: reuse_port changed; {addr} stays open with \
             SO_REUSEPORT on until a restart"
        );
        assert!(
            proxy.wait_log(&warning, Duration::from_secs(5)),
            "want {warning:?} in stderr:\n{}",
            proxy.stderr()
        );
        echo_once(addr);

        let listen = addr.to_string();
        let mut other = Proxy::forward(&[echo.addr], &["--reuse-port", "--listen", &listen]);
        assert_eq!(other.listen.get(1), Some(&addr), "{:?}", other.ready);
        other.assert_alive();
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}
