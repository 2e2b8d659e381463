//! Fault matrix §4.4, lifecycle (D4–D6): interrupted `epoll_wait` calls,
//! a port already in use at start-up in every mode and listener kind, and the
//! READY line of every mode. D1–D3 (SIGTERM drain, drain timeout, second
//! signal) are `lifecycle.rs`; the process exits there, so their invariants
//! are the exit status, byte-exact transfers and no panic.
//!
//! D4 runs on both data paths (`::copy`, `::splice`); D5 and D6 move no byte
//! through a session and run once.

use crate::support::*;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(5);
const EXIT_WITHIN: Duration = Duration::from_secs(10);

/// D4: strace makes every 7th `epoll_wait` from the 5th on fail with EINTR
/// while 30 sessions echo through the proxy: every echo completes, the trace
/// shows the injections, and after detaching the proxy is at rest.
fn interrupted_epoll_wait_keeps_serving() {
    watchdog(|| {
        let up = echo_server();
        let mut fp = FaultProxy::forward(&[up.addr], &[]);
        let out = fp.dir.path.join("strace-epoll");
        // The injections end at the 75th call, long before the detach: strace
        // injects by swapping the syscall for an invalid one, and a detach that
        // lands between the two halves would leave the proxy an ENOSYS, a
        // failure of the tracer, not of the proxy. 120 round trips make more
        // than 240 calls.
        let spec = "epoll_wait,epoll_pwait:error=EINTR:when=5..75+7";
        let Some(st) = Strace::attach_to(fp.pid(), spec, &out) else {
            return;
        };
        for i in 0..30u64 {
            let mut c = connect(fp.main);
            for k in 0..4 {
                echo_roundtrip(&mut c, &pattern(i * 4 + k, 2048));
            }
            drop(c);
        }
        st.detach();
        let trace = std::fs::read_to_string(&out).unwrap_or_default();
        let injected = trace.matches("(INJECTED)").count();
        assert!(
            injected >= 2,
            "{injected} epoll_wait calls interrupted:\n{trace}"
        );
        fp.proxy.assert_alive();
        fp.assert_invariants(SETTLE);
    });
}
both_paths!(interrupted_epoll_wait_keeps_serving);

/// Checks a start-up that must fail on `addr`: exit code 1, stderr is the
/// single line `error: cannot bind ADDR: ...`, no READY, no panic.
fn assert_bind_error(args: &[&str], addr: &str) {
    let run = run_cli(args, EXIT_WITHIN);
    let code = run.status.and_then(|s| s.code());
    assert_eq!(
        code,
        Some(1),
        "{args:?}: exit code; stderr:\n{}",
        run.stderr
    );
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: want one stderr line:\n{}",
        run.stderr
    );
    assert!(
        lines[0].starts_with(&format!("error: cannot bind {addr}")),
        "{args:?}: {:?}",
        lines[0]
    );
    assert!(
        !run.stdout.contains("READY"),
        "{args:?}: READY despite the bind failure"
    );
}

/// D5: a port in use for the relay's tunnel listener, its public listener,
/// the metrics listener (forward and agent) and a configuration file's
/// listener: each start fails with exit code 1 and one line
/// `error: cannot bind ADDR: ...`, and no READY (no partial start). The
/// forward `--listen` case is `cli.rs`.
#[test]
fn port_in_use_fails_start_with_one_bind_error_line_in_every_mode() {
    watchdog(|| {
        let taken = TcpListener::bind("127.0.0.1:0").expect("occupy a port");
        let addr = taken.local_addr().expect("addr").to_string();
        let dir = SecretDir::new();
        let secret = dir.file("secret", format!("{SECRET}\n").as_bytes());
        let secret = secret.to_str().expect("utf-8 path");
        let up = closed_port().to_string();
        let public = format!("{SERVICE}={addr}");
        let any_public = format!("{SERVICE}=127.0.0.1:0");
        let service = format!("{SERVICE}={up}");
        fn relay<'a>(tunnel: &'a str, public: &'a str, secret: &'a str) -> Vec<&'a str> {
            let mut v = vec![
                "relay",
                "--tunnel-listen",
                tunnel,
                "--public",
                public,
                "--secret-file",
                secret,
            ];
            v.extend(BUILD_TUNNELS);
            v
        }
        assert_bind_error(&relay(&addr, &any_public, secret), &addr);
        assert_bind_error(&relay("127.0.0.1:0", &public, secret), &addr);
        let mut metrics_relay = relay("127.0.0.1:0", &any_public, secret);
        metrics_relay.extend(["--metrics-listen", &addr]);
        assert_bind_error(&metrics_relay, &addr);
        let forward = ["forward", "--listen", "127.0.0.1:0", "--upstream", &up];
        let mut metrics_forward = forward.to_vec();
        metrics_forward.extend(["--metrics-listen", &addr]);
        assert_bind_error(&metrics_forward, &addr);
        let mut agent = vec![
            "agent",
            "--relay",
            &up,
            "--service",
            &service,
            "--secret-file",
            secret,
            "--metrics-listen",
            &addr,
        ];
        agent.extend(BUILD_TUNNELS);
        assert_bind_error(&agent, &addr);
        let config = dir.file(
            "in-use.toml",
            format!("[[forward]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\nupstream = \"{up}\"\n\n[[forward]]\nname = \"b\"\nlisten = \"{addr}\"\nupstream = \"{up}\"\n").as_bytes(),
        );
        assert_bind_error(&["run", "--config", config.to_str().expect("path")], &addr);
    });
}

/// D6: every mode prints, once bound, one READY line whose addresses carry
/// the real ports (never `:0`) and accept connections at once: `listen=` and
/// `metrics=` (forward), `tunnel=` and `public.svc=` (relay), `relay=` and
/// `service.svc=` (agent), `NAME.listen=` (configuration file).
#[test]
fn ready_line_names_every_bound_port_in_every_mode() {
    watchdog(|| {
        let check = |p: &Proxy, keys: &[&str]| {
            for k in keys {
                let a = p.field_addr(k);
                assert_ne!(a.port(), 0, "READY {k}= has port 0: {:?}", p.ready);
                TcpStream::connect_timeout(&a, Duration::from_secs(2))
                    .unwrap_or_else(|e| panic!("READY {k}={a} does not accept: {e}"));
            }
        };
        let up = echo_server();
        let fwd = Proxy::forward(&[up.addr], &["--metrics-listen", "127.0.0.1:0"]);
        check(&fwd, &["listen", "metrics"]);
        let chain = Chain::builder(up.addr).pool(1).start();
        check(&chain.relay, &["tunnel", &format!("public.{SERVICE}")]);
        assert_eq!(
            chain.agent.field(&format!("service.{SERVICE}")),
            Some(up.addr.to_string().as_str()),
            "agent READY service.{SERVICE}="
        );
        assert_eq!(
            chain.agent.field_addr("relay"),
            chain.tunnel,
            "agent READY relay="
        );
        let fp = FaultProxy::forward(&[up.addr], &[]);
        check(&fp.proxy, &["main.listen", "probe.listen", "metrics"]);
    });
}
