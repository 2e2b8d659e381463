//! Fault matrix §4.3, resource exhaustion (C1–C4), in forward mode: the
//! open-files limit at accept and at the upstream `socket()`, injected accept
//! errors, and `--max-sessions`.
//!
//! Each scenario ends with the §4.0 invariants (`FaultProxy::assert_invariants`,
//! or the same checks by hand where the proxy needs a lowered fd limit from
//! its start). C5 (churn) is `forward_churn.rs`; C6–C8 are `faults_scale.rs`.
//! C2–C4 run on both data paths (`::copy`, `::splice`); C1 once (see there).

use crate::support::*;
use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const SETTLE: Duration = Duration::from_secs(5);

/// Live-state gauges and counters that must be back at rest: the §4.0 SLAB
/// check for a proxy started without `FaultProxy`.
fn assert_metrics_quiet(metrics: SocketAddr, within: Duration) {
    let mut last = String::new();
    let ok = wait_for(within, || {
        let s = scrape_metrics(metrics);
        let busy: Vec<String> = [
            "tcpbridge_sessions",
            "tcpbridge_buffers_lent",
            "tcpbridge_pipes_lent",
            "tcpbridge_timers_armed",
        ]
        .iter()
        .map(|n| (n, prom::sum(&s, n, &[])))
        .filter(|(_, v)| *v != 0.0)
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
        let accepted = prom::sum(&s, "tcpbridge_sessions_accepted_total", &[]);
        let closed = prom::sum(&s, "tcpbridge_sessions_closed_total", &[]);
        last = format!("{busy:?} accepted={accepted} closed={closed}");
        busy.is_empty() && accepted == closed
    });
    assert!(ok, "metrics not at rest after {within:?}: {last}");
}

/// C1: RLIMIT_NOFILE=64 from the start, 100 clients connected and held. The
/// proxy serves the sessions its descriptors allow (the limit it logs at
/// start), uses under 10% of a core over 1 s while the rest wait in the backlog, serves 20 more as
/// soon as 20 held sessions close, then every client; no leak afterwards.
/// One data path only: with 64 descriptors the proxy keeps none for kernel
/// pipes (its memory bound says `no splice`), so a splice run would copy.
#[test]
fn fd_limit_64_holds_extra_clients_in_backlog_without_spinning() {
    const CLIENTS: usize = 100;
    watchdog(|| {
        let up = echo_server();
        let args = forward_args(&[up.addr], &["--metrics-listen", "127.0.0.1:0"]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut proxy = Proxy::spawn_with_nofile(&refs, 64);
        let metrics = proxy.field_addr("metrics");
        echo_once(proxy.addr());
        scrape_metrics(metrics);
        let baseline = proxy.baseline();

        let (tx, rx) = mpsc::channel::<usize>();
        let mut release = Vec::new();
        let mut threads = Vec::new();
        for i in 0..CLIENTS {
            let mut c = connect(proxy.addr());
            c.set_read_timeout(Some(Duration::from_secs(40)))
                .expect("read timeout");
            let (gate, tx) = (Gate::new(), tx.clone());
            release.push(gate.clone());
            threads.push(thread::spawn(move || {
                let tag = format!("client-{i:03}");
                c.write_all(tag.as_bytes()).expect("client write");
                let got = read_exact_n(&mut c, tag.len(), "tag echo");
                assert_eq!(got, tag.as_bytes(), "client {i} got another echo");
                let _ = tx.send(i);
                gate.wait(Duration::from_secs(50));
                c.shutdown(Shutdown::Write).expect("shutdown(Write)");
                assert!(matches!(read_end(&mut c), End::Eof), "client {i}: EOF");
            }));
        }
        drop(tx);
        // The proxy lowers its session limit to what 64 descriptors allow and
        // says so at start; that many clients are served, each echoing its tag,
        // and every other one waits in the backlog.
        let log = proxy.stderr();
        let sessions: usize = log
            .split("open-files limit 64 allows ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no lowered session limit in the log:\n{log}"));
        let mut served = Vec::new();
        while served.len() < sessions {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(i) => served.push(i),
                Err(_) => panic!(
                    "{} of {sessions} sessions echoed\n{}",
                    served.len(),
                    proxy.dump()
                ),
            }
        }
        let first = served.len();
        eprintln!("C1: {first} sessions with 64 fds");
        assert!(
            (1..=60).contains(&first),
            "{first} of {CLIENTS} served with 64 fds\n{}",
            proxy.dump()
        );

        // Healthy: 0 or 1 clock tick (10 ms) in the second; a spin: ~1 s. The
        // bound sits 10x above a healthy tick and 10x below a spin.
        let cpu0 = proxy.cpu_time();
        let window = Instant::now() + Duration::from_secs(1);
        while let Ok(i) = rx.recv_timeout(window.saturating_duration_since(Instant::now())) {
            served.push(i);
        }
        let cpu = proxy.cpu_time() - cpu0;
        assert!(
            cpu <= Duration::from_millis(100),
            "{cpu:?} of CPU in 1 s while out of descriptors: a spin"
        );
        assert_eq!(
            served.len(),
            first,
            "a client was served with every slot held"
        );

        let freed = 20.min(first);
        for &i in &served[..freed] {
            release[i].open();
        }
        for _ in 0..freed.min(CLIENTS - first) {
            let i = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|_| {
                panic!(
                    "{freed} slots freed, waiting clients not served\n{}",
                    proxy.dump()
                )
            });
            served.push(i);
        }
        for g in &release {
            g.open();
        }
        while served.len() < CLIENTS {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(i) => served.push(i),
                Err(_) => panic!(
                    "{}/{CLIENTS} served after the release\n{}",
                    served.len(),
                    proxy.dump()
                ),
            }
        }
        for t in threads {
            t.join().expect("client thread");
        }
        proxy.assert_quiescent(baseline, SETTLE);
        assert_metrics_quiet(metrics, SETTLE);
        up.assert_no_handler_panics();
    });
}

/// C2: the soft fd limit is lowered on the running proxy so that exactly one
/// descriptor is free: a client is accepted, and the upstream `socket()`
/// fails with EMFILE. The client is closed at once (EOF or RST, no bytes),
/// the failure is counted, and after the limit is restored nothing leaked.
fn emfile_on_upstream_socket_closes_client_cleanly() {
    watchdog(|| {
        let up = echo_server();
        let mut fp = FaultProxy::forward(&[up.addr], &[]);
        let (before, _) = fp.proxy.nofile();
        let failures0 = fp.metric("tcpbridge_connect_failures_total", &[("listener", "main")]);
        fp.leave_free_fds(1);

        let mut c = connect(fp.main);
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        let _ = c.write_all(b"hello");
        let end = read_end(&mut c);
        assert!(
            matches!(end, End::Eof | End::Reset),
            "client should be closed when the upstream socket cannot be made, got {end:?}\n{}",
            fp.proxy.stderr()
        );
        drop(c);
        fp.proxy.assert_alive();
        fp.proxy.set_soft_nofile(before);

        let failures = fp.metric("tcpbridge_connect_failures_total", &[("listener", "main")]);
        assert!(
            failures > failures0,
            "the failed upstream socket was not counted as a connect failure"
        );
        assert_eq!(up.accepted(), 0, "the upstream saw a connection");
        echo_once(fp.main);
        fp.assert_invariants(SETTLE);
    });
}
both_paths!(emfile_on_upstream_socket_closes_client_cleanly);

/// C3: strace injects each accept error in turn on three `accept4` calls
/// (ENFILE, EMFILE, ENOBUFS, ENOMEM: a resource pause; ECONNABORTED, EPROTO,
/// EINTR: the next accept) while 4 clients each want an echo. Every client is
/// served, the injections really happened (the trace says INJECTED), the
/// resource errors show as accept pauses, and the proxy never exits.
fn injected_accept_errors_pause_or_skip_and_never_stop_the_listener() {
    watchdog_for(Duration::from_secs(120), || {
        let up = echo_server();
        let mut fp = FaultProxy::forward(&[up.addr], &[]);
        let pauses =
            |fp: &FaultProxy| fp.metric("tcpbridge_accept_pauses_total", &[("listener", "main")]);
        for errno in [
            "ENFILE",
            "EMFILE",
            "ENOBUFS",
            "ENOMEM",
            "ECONNABORTED",
            "EPROTO",
            "EINTR",
        ] {
            let resource = matches!(errno, "ENFILE" | "EMFILE" | "ENOBUFS" | "ENOMEM");
            let p0 = pauses(&fp);
            let out = fp.dir.path.join(format!("strace-{errno}"));
            let Some(st) =
                Strace::attach_to(fp.pid(), &format!("accept4:error={errno}:when=1..3"), &out)
            else {
                return;
            };
            for _ in 0..4 {
                echo_once(fp.main);
            }
            st.detach();
            fp.proxy.assert_alive();
            let trace = std::fs::read_to_string(&out).unwrap_or_default();
            let injected = trace.matches("(INJECTED)").count();
            assert!(
                injected >= 1,
                "{errno}: no accept4 call was injected:\n{trace}"
            );
            if resource {
                assert!(pauses(&fp) > p0, "{errno}: no accept pause counted");
            } else {
                assert_eq!(pauses(&fp), p0, "{errno}: counted as a resource pause");
            }
        }
        fp.assert_invariants(SETTLE);
    });
}
both_paths!(injected_accept_errors_pause_or_skip_and_never_stop_the_listener);

/// C4: `max_sessions = 2` and a third client: it is not served while two
/// sessions live (it waits in the backlog; the upstream sees 2 connections;
/// an accept pause with cause `limit` is counted), the first two are
/// unaffected, and it is served once one of them closes.
fn max_sessions_plus_one_waits_and_is_served_when_a_slot_frees() {
    watchdog(|| {
        let up = echo_server();
        // The budget of 2 sessions' smallest rings (64 KiB) lends no kernel
        // pipe: 1 MiB lets the splice path splice (on both paths alike).
        let mut fp =
            FaultProxy::forward(&[up.addr], &["max_sessions = 2", "pool_budget = \"1MiB\""]);
        let mut a = connect(fp.main);
        let mut b = connect(fp.main);
        echo_roundtrip(&mut a, b"first");
        echo_roundtrip(&mut b, b"second");
        let seen = up.accepted();
        let mut third = connect(fp.main);
        third
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("read timeout");
        third.write_all(b"third").expect("third write");
        assert!(
            matches!(read_end(&mut third), End::TimedOut),
            "the third client got an answer with 2 sessions live"
        );
        assert_eq!(up.accepted(), seen, "the upstream saw a third session");
        let cause = [("listener", "main"), ("cause", "limit")];
        assert!(
            fp.metric("tcpbridge_accept_pauses_total", &cause) >= 1.0,
            "no accept pause with cause=limit counted"
        );
        echo_roundtrip(&mut a, b"first again");
        drop(a);
        third.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        assert_eq!(
            read_exact_n(&mut third, 5, "third once a slot frees"),
            b"third"
        );
        echo_roundtrip(&mut b, b"second again");
        drop((b, third));
        fp.assert_invariants(SETTLE);
    });
}
both_paths!(max_sessions_plus_one_waits_and_is_served_when_a_slot_frees);
