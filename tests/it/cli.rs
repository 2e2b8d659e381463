//! Command line and start-up: bad input is a usage error (exit 2, an
//! `error:` line naming the flag or value, no panic, no READY), a listen
//! address already in use is a bind error (exit 1, one line naming the
//! address, no partial start), the READY line lists every listener, and output into a
//! closed pipe is no panic.

use crate::support::*;
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

/// How long a run that should fail at start-up may take.
const EXIT_WITHIN: Duration = Duration::from_secs(5);

/// Checks one usage-error run; returns a description of what is wrong.
fn check_usage_error(run: &CliRun, needles: &[&str]) -> Result<(), String> {
    let mut problems = Vec::new();
    match run.status {
        None => problems.push(format!(
            "did not exit within {EXIT_WITHIN:?} (stdout {:?})",
            run.stdout
        )),
        Some(st) if st.code() != Some(2) => problems.push(format!("exit status {st}, want code 2")),
        Some(_) => {}
    }
    if run.stderr.trim().is_empty() {
        problems.push("stderr is empty".into());
    }
    if !run.stderr.lines().any(|l| l.starts_with("error:")) {
        problems.push("no stderr line starts with `error:`".into());
    }
    if !needles.iter().any(|n| run.stderr.contains(n)) {
        problems.push(format!("stderr mentions none of {needles:?}"));
    }
    if run.stderr.contains("panicked") {
        problems.push("stderr contains `panicked`".into());
    }
    if run.stdout.contains("READY") {
        problems.push("printed READY".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{:?}: {}\n    stderr: {:?}",
            run.args,
            problems.join("; "),
            run.stderr
        ))
    }
}

/// Every bad flag or value is refused with exit code 2 and a message that
/// names it. All cases run (in parallel) and all failures are reported.
#[test]
fn bad_input_is_a_usage_error_naming_the_flag_or_value() {
    const UP: &str = "127.0.0.1:9";
    const LISTEN: &str = "127.0.0.1:0";
    // (argv after the program name, strings of which stderr must contain one)
    let cases: Vec<(Vec<&'static str>, Vec<&'static str>)> = vec![
        (
            vec!["forward", "--listen", "1.2.3.4:99999", "--upstream", UP],
            vec!["--listen", "1.2.3.4:99999"],
        ),
        (
            vec!["forward", "--listen", ":", "--upstream", UP],
            vec!["--listen"],
        ),
        (
            vec![
                "forward",
                "--listen",
                LISTEN,
                "--upstream",
                "host-without-port",
            ],
            vec!["--upstream", "host-without-port"],
        ),
        (vec!["forward", "--listen", LISTEN], vec!["--upstream"]),
        (
            vec![
                "forward",
                "--listen",
                LISTEN,
                "--upstream",
                UP,
                "--idle-timeout",
                "5x",
            ],
            vec!["--idle-timeout", "5x"],
        ),
        (
            vec![
                "forward",
                "--listen",
                LISTEN,
                "--upstream",
                UP,
                "--idle-timeout",
                "0s",
            ],
            vec!["--idle-timeout", "0s"],
        ),
        (
            vec![
                "forward",
                "--listen",
                LISTEN,
                "--upstream",
                UP,
                "--connect-timeout",
                "-5s",
            ],
            vec!["--connect-timeout", "-5s"],
        ),
        (
            vec![
                "forward",
                "--listen",
                LISTEN,
                "--upstream",
                UP,
                "--buffer-size",
                "0",
            ],
            vec!["--buffer-size"],
        ),
        (
            vec![
                "forward",
                "--listen",
                LISTEN,
                "--upstream",
                UP,
                "--buffer-size",
                "1GiB",
            ],
            vec!["--buffer-size", "1GiB"],
        ),
        (
            vec![
                "forward",
                "--listen",
                LISTEN,
                "--upstream",
                UP,
                "--max-sessions",
                "0",
            ],
            vec!["--max-sessions"],
        ),
        (
            vec![
                "forward",
                "--listen",
                LISTEN,
                "--upstream",
                UP,
                "--reset-policy",
                "maybe",
            ],
            vec!["--reset-policy", "maybe"],
        ),
        (
            vec![
                "forward",
                "--listen",
                LISTEN,
                "--upstream",
                UP,
                "--frobnicate",
            ],
            vec!["--frobnicate"],
        ),
    ];
    watchdog(move || {
        let runs: Vec<_> = cases
            .into_iter()
            .map(|(args, needles)| {
                thread::spawn(move || check_usage_error(&run_cli(&args, EXIT_WITHIN), &needles))
            })
            .collect();
        let failures: Vec<String> = runs
            .into_iter()
            .filter_map(|h| h.join().expect("case thread").err())
            .collect();
        assert!(
            failures.is_empty(),
            "{} bad-input case(s) failed:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    });
}

/// Checks a bind-failure run for `addr`: exit code 1, exactly one `error:`
/// line and it names the address, no READY.
fn check_bind_error(run: &CliRun, addr: &str) {
    assert_eq!(
        run.status.and_then(|s| s.code()),
        Some(1),
        "{:?}: want exit code 1; stderr:\n{}",
        run.args,
        run.stderr
    );
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "want exactly one `error:` line; stderr:\n{}",
        run.stderr
    );
    assert!(
        errors[0].contains(&format!("cannot bind {addr}")),
        "error line should name {addr}: {:?}",
        errors[0]
    );
    assert!(
        !run.stderr.contains("panicked"),
        "panicked; stderr:\n{}",
        run.stderr
    );
    assert!(
        !run.stdout.contains("READY"),
        "printed READY despite a bind failure: {:?}",
        run.stdout
    );
}

/// `--listen` on a port already in use: exit code 1, one line naming the address.
#[test]
fn listen_port_in_use_is_a_bind_error() {
    watchdog(|| {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port to occupy");
        let addr = taken.local_addr().expect("local_addr").to_string();
        let run = run_cli(
            &["forward", "--listen", &addr, "--upstream", "127.0.0.1:9"],
            EXIT_WITHIN,
        );
        check_bind_error(&run, &addr);
    });
}

/// The second of two listeners cannot bind: no partial start (exit 1, no READY).
#[test]
fn second_listener_in_use_means_no_partial_start() {
    watchdog(|| {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port to occupy");
        let addr = taken.local_addr().expect("local_addr").to_string();
        let run = run_cli(
            &[
                "forward",
                "--listen",
                "127.0.0.1:0",
                "--listen",
                &addr,
                "--upstream",
                "127.0.0.1:9",
            ],
            EXIT_WITHIN,
        );
        check_bind_error(&run, &addr);
    });
}

/// Two `--listen 127.0.0.1:0`: READY lists two distinct addresses in order,
/// and both forward to the upstream.
#[test]
fn ready_line_lists_every_listener() {
    watchdog(|| {
        let up = echo_server();
        let mut proxy = Proxy::spawn(&[
            "forward",
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &up.addr.to_string(),
        ]);
        assert_eq!(
            proxy.listen.len(),
            2,
            "READY should list both listeners: {:?}",
            proxy.listen
        );
        assert_ne!(proxy.listen[0], proxy.listen[1], "two listeners, two ports");
        for addr in proxy.listen.clone() {
            assert!(
                addr.ip().is_loopback(),
                "listener {addr} should be on 127.0.0.1"
            );
            echo_once(addr);
        }
        let baseline = proxy.baseline();
        echo_once(proxy.listen[1]);
        proxy.assert_quiescent(baseline, Duration::from_secs(2));
        assert_eq!(up.accepted(), 3, "every session reaches the upstream");
    });
}

/// `-q` (warnings only): a complete session leaves no `close` line and the
/// start-up INFO line is gone, while warnings still get through. The warning
/// a second SIGTERM prints comes after the session's close would have been
/// logged, so the absence is checked at a known point, not after a guess.
#[test]
fn quiet_flag_drops_info_and_close_lines_but_keeps_warnings() {
    watchdog(|| {
        let up = echo_server();
        let mut proxy = Proxy::forward(&[up.addr], &["-q"]);
        let addr = proxy.addr();
        echo_once(addr);
        let mut held = connect(addr); // keeps the drain going until the second signal
        echo_roundtrip(&mut held, b"held");

        proxy.send_signal(libc::SIGTERM);
        let refused = wait_for(Duration::from_secs(5), || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err()
        });
        assert!(refused, "listener still open after SIGTERM");
        proxy.send_signal(libc::SIGTERM);
        assert!(
            proxy.wait_log("second signal", Duration::from_secs(5)),
            "-q should still print the second-signal warning; stderr:\n{}",
            proxy.stderr()
        );
        let status = proxy.wait_exit(Duration::from_secs(5));
        assert_eq!(status.code(), Some(0), "exit status after a second signal");
        let err = proxy.stderr();
        assert!(
            !err.contains("close id=") && !err.contains(" INFO "),
            "-q should drop INFO lines, close lines included; stderr:\n{err}"
        );
        drop(held);
    });
}

/// `-v` adds debug lines (a refused upstream connect is logged at DEBUG
/// before the session's close line); without it there are none.
#[test]
fn verbose_flag_adds_debug_lines() {
    watchdog(|| {
        for (extra, want_debug) in [(&["-v"][..], true), (&[][..], false)] {
            let proxy = Proxy::forward(&[closed_port()], extra);
            let mut c = connect(proxy.addr());
            let end = read_end(&mut c);
            assert!(matches!(end, End::Eof), "{extra:?}: client got {end:?}");
            assert!(
                proxy.wait_log("reason=connect-refused", Duration::from_secs(5)),
                "{extra:?}: no close line; stderr:\n{}",
                proxy.stderr()
            );
            let err = proxy.stderr();
            let debug = err
                .lines()
                .any(|l| l.contains(" DEBUG ") && l.contains("connect to"));
            assert_eq!(
                debug, want_debug,
                "{extra:?}: DEBUG line about the refused connect; stderr:\n{err}"
            );
            if !want_debug {
                assert!(!err.contains(" DEBUG "), "DEBUG lines without -v:\n{err}");
            }
        }
    });
}

/// A build without the `tls` feature refuses TLS tunnels (on by default) and the TLS
/// options at start-up: exit 2, one `error:` line saying why and what to do, no READY;
/// never plain tunnels in their place.
#[cfg(not(feature = "tls"))]
#[test]
fn without_tls_tls_tunnels_are_refused_at_start() {
    let dir = nat::SecretDir::new();
    let secret = dir.file("secret", nat::SECRET.as_bytes());
    let secret = secret.to_str().expect("utf-8 temp path");
    let pin = format!("sha256:{}", "ab".repeat(32));
    let relay = [
        "relay",
        "--tunnel-listen",
        "127.0.0.1:0",
        "--public",
        "s=127.0.0.1:0",
    ];
    let agent = [
        "agent",
        "--relay",
        "127.0.0.1:9",
        "--service",
        "s=127.0.0.1:9",
    ];
    let why = "this tcpbridge was built without TLS (cargo feature \"tls\")";
    let off = "use --tunnel-tls off on both ends, or build with the default features";
    let cases: [(Vec<&str>, String); 3] = [
        (
            [&relay[..], &["--secret-file", secret]].concat(),
            format!("error: --tunnel-tls on (the default): {why}; {off}"),
        ),
        (
            [&agent[..], &["--secret-file", secret, "--tunnel-tls", "on"]].concat(),
            format!("error: --tunnel-tls on: {why}; {off}"),
        ),
        (
            [
                &agent[..],
                &["--secret-file", secret, "--tunnel-tls-pin", &pin],
            ]
            .concat(),
            format!(
                "error: --tunnel-tls-pin: {why}; remove it, or build with the default features"
            ),
        ),
    ];
    for (args, line) in &cases {
        let run = run_cli(args, EXIT_WITHIN);
        check_usage_error(&run, &[why]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(run.stderr.trim_end(), line, "{args:?}");
    }
}

/// `check` and `gen-secret` into a pipe whose reader is gone (`check | head -0`): the
/// write fails with EPIPE, which is no error (exit 0) and never a panic.
#[test]
fn output_into_a_closed_pipe_is_no_panic() {
    use std::io::PipeReader;
    use std::process::{Command, Stdio};
    let runs: [&[&str]; 2] = [
        &[
            "check",
            "forward",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:9",
        ],
        &["gen-secret"],
    ];
    for args in runs {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop::<PipeReader>(reader);
        let out = Command::new(BIN)
            .args(args)
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .expect("run tcpbridge");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("panicked"),
            "{args:?} into a closed pipe: {:?}, stderr: {stderr}",
            out.status
        );
    }
}
