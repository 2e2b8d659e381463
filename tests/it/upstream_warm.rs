//! Upstream groups, warm connections (`--warm N`: idle pre-connected connections per
//! upstream address, each lent to one session):
//!
//! - an upstream that waits 500 ms after its accept before serving gives the first
//!   byte in under 250 ms with `--warm 4` once the pool is full and past that wait, and
//!   not before 500 ms without;
//! - an upstream that closes connections idle for 1 s (`warm_max_age` left at 8 s) never
//!   fails a client nor gives it an empty session, over 50 sessions in three waves with
//!   the pool closed by the upstream between them;
//! - an upstream that sends a banner on accept delivers it to each client exactly once;
//! - no connection is lent twice nor reused: the upstream accepted as many connections
//!   as sessions plus warm ones (idle, expired, closed by it), read from `/metrics`;
//! - a reload from `warm = 4` to `warm = 0` gives every descriptor back;
//! - an agent keeps warm connections to its service.
//!
//! Each ends with the leak checks; with warm connections the baseline is taken with the
//! pool full ([`warm_baseline`]) and compared once it is full again.

use crate::support::*;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A forward to upstream 0 of `e` with `extra`.
fn proxy_for(e: &Echoes, extra: &[&str]) -> Proxy {
    group_proxy(&[member(e.addrs[0], None, false)], extra)
}

/// Time from connecting a fresh session to reading the echo of its first byte.
fn first_byte(proxy: SocketAddr) -> Duration {
    // From before the connect: the proxy may accept and dial the upstream (starting its
    // delay) before this thread runs again after `connect` returns.
    let start = Instant::now();
    let mut c = connect(proxy);
    echo_roundtrip(&mut c, b"x");
    start.elapsed()
}

/// The upstream accepted exactly the sessions' connections and the warm ones (idle now,
/// expired, or closed by it): none lent twice, none reused. Polled: refills may still
/// be connecting.
fn assert_accounted(e: &Echoes, metrics: SocketAddr, sessions: usize) {
    let warm = || {
        ["idle", "expired_total", "failed_total"]
            .map(|m| metric_total(metrics, &format!("tcpbridge_upstream_warm_{m}")) as usize)
    };
    let ok = wait_for(Duration::from_secs(5), || {
        e.accepted(0) == sessions + warm().iter().sum::<usize>()
    });
    let [idle, expired, failed] = warm();
    eprintln!(
        "accepted {} = {sessions} sessions + warm idle {idle} + expired {expired} + failed {failed}",
        e.accepted(0)
    );
    assert!(
        ok,
        "accepted {} != {sessions} sessions + warm idle {idle} + expired {expired} + failed {failed}",
        e.accepted(0)
    );
}

#[test]
fn warm_connections_hide_a_slow_upstream_setup() {
    watchdog(|| {
        let e = Echoes::serving(1, Serve::Delayed(Duration::from_millis(500)));
        let mut cold = proxy_for(&e, &[]);
        let baseline = cold.baseline();
        let took = first_byte(cold.addr());
        eprintln!("first byte without warm connections: {took:?}");
        assert!(
            took >= Duration::from_millis(500),
            "without --warm the setup shows: {took:?}"
        );
        cold.assert_quiescent(baseline, Duration::from_secs(5));
        drop(cold);

        let mut warm = proxy_for(&e, &["--warm", "4"]);
        let metrics = warm.field_addr("metrics");
        let baseline = warm_baseline(&warm, metrics, 4);
        assert!(
            wait_for(Duration::from_secs(5), || e.served(0) >= 5),
            "the four warm connections past the upstream's 500 ms: {} served",
            e.served(0)
        );
        for k in 0..4 {
            let took = first_byte(warm.addr());
            eprintln!("first byte with --warm 4, session {k}: {took:?}");
            assert!(
                took < Duration::from_millis(250),
                "session {k}: first byte after {took:?}"
            );
        }
        assert_eq!(
            metric_total(metrics, "tcpbridge_upstream_warm_lent_total"),
            4.0
        );
        warm_baseline(&warm, metrics, 4);
        warm.assert_quiescent(baseline, Duration::from_secs(5));
        // One session through the cold proxy, four through the warm one.
        assert_accounted(&e, metrics, 5);
    });
}

#[test]
fn an_upstream_closing_idle_connections_never_fails_a_client() {
    watchdog(|| {
        let e = Echoes::serving(1, Serve::IdleClose(Duration::from_secs(1)));
        let mut proxy = proxy_for(&e, &["--warm", "4"]);
        let metrics = proxy.field_addr("metrics");
        let baseline = warm_baseline(&proxy, metrics, 4);
        let failed = || metric_total(metrics, "tcpbridge_upstream_warm_failed_total");
        let start = Instant::now();
        let mut sessions = 0;
        for (wave, n) in [17, 17, 16].into_iter().enumerate() {
            if wave > 0 {
                // The pool idles past the upstream's 1 s: it closes all four, and the
                // proxy replaces them.
                let before = failed();
                let replaced = wait_for(Duration::from_secs(10), || {
                    failed() >= before + 4.0
                        && metric_total(metrics, "tcpbridge_upstream_warm_idle") == 4.0
                });
                assert!(
                    replaced,
                    "closed by the upstream and replaced: {:?}",
                    upstream_lines(metrics)
                );
            }
            for k in 0..n {
                full_session(proxy.addr())
                    .unwrap_or_else(|why| panic!("wave {wave}, session {k}: {why}"));
                sessions += 1;
            }
        }
        eprintln!(
            "{sessions} sessions in {:?}, warm connections closed by the upstream: {}",
            start.elapsed(),
            failed()
        );
        assert!(failed() >= 8.0, "the upstream closed idle ones twice");
        assert_accounted(&e, metrics, sessions);
        warm_baseline(&proxy, metrics, 4);
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}

#[test]
fn a_banner_reaches_each_client_once_and_no_connection_is_lent_twice() {
    watchdog(|| {
        let e = Echoes::serving(1, Serve::Banner(b"HELLO\n"));
        let mut proxy = proxy_for(&e, &["--warm", "3"]);
        let metrics = proxy.field_addr("metrics");
        let baseline = warm_baseline(&proxy, metrics, 3);
        for k in 0..20 {
            // A full pool: this session is lent a warm connection.
            wait_pool_full(metrics, 3);
            let mut c = with_timeouts(TcpStream::connect(proxy.addr()).expect("connect"));
            assert_eq!(read_exact_n(&mut c, 6, "banner"), b"HELLO\n", "session {k}");
            echo_roundtrip(&mut c, b"ping");
            c.shutdown(std::net::Shutdown::Write).expect("shutdown");
            match read_end(&mut c) {
                End::Eof => {}
                other => panic!("session {k}: after the echo {other:?} (a second banner?)"),
            }
        }
        assert_eq!(
            metric_total(metrics, "tcpbridge_upstream_warm_lent_total"),
            20.0,
            "each session one warm connection"
        );
        assert_accounted(&e, metrics, 20);
        warm_baseline(&proxy, metrics, 3);
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}

#[test]
fn a_reload_to_no_warm_connections_gives_every_descriptor_back() {
    watchdog(|| {
        let e = Echoes::new(1);
        let dir = SecretDir::new();
        let table = |warm: usize| {
            format!(
                "metrics_listen = \"127.0.0.1:0\"\n[[forward]]\nname = \"web\"\n\
                 listen = \"127.0.0.1:0\"\nupstream = \"{}\"\nwarm = {warm}\n",
                e.addrs[0]
            )
        };
        let file = dir.file("t.toml", table(0).as_bytes());
        let path = file.to_str().expect("utf-8").to_string();
        let mut proxy = Proxy::spawn(&["run", "--config", &path]);
        let metrics = proxy.field_addr("metrics");
        let listen = proxy.field_addr("web.listen");
        let baseline = proxy.baseline();
        let reload = |proxy: &mut Proxy, warm| {
            dir.file("t.toml", table(warm).as_bytes());
            proxy.send_signal(libc::SIGHUP);
            let line = proxy.wait_stdout("RELOADED ", Duration::from_secs(10));
            assert!(line.is_some(), "no RELOADED line:\n{}", proxy.stderr());
        };
        reload(&mut proxy, 4);
        let warm = warm_baseline(&proxy, metrics, 4);
        assert_eq!(
            warm,
            baseline + 4,
            "four warm connections, one descriptor each"
        );
        for k in 0..5 {
            // A full pool: the session is lent a warm connection.
            wait_pool_full(metrics, 4);
            full_session(listen).unwrap_or_else(|why| panic!("session {k}: {why}"));
        }
        assert_eq!(
            metric_total(metrics, "tcpbridge_upstream_warm_lent_total"),
            5.0
        );
        warm_baseline(&proxy, metrics, 4);

        reload(&mut proxy, 0);
        let drained = wait_for(Duration::from_secs(5), || {
            metric_total(metrics, "tcpbridge_upstream_warm_idle") == 0.0
        });
        assert!(
            drained,
            "warm connections left: {:?}",
            upstream_lines(metrics)
        );
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
        assert_eq!(
            e.accepted(0),
            9,
            "5 sessions, each on a warm connection, and 4 idle"
        );
    });
}

/// An agent's service is a group too: the agent keeps warm connections to it, each
/// session through the tunnel gets one, and none is lent twice.
#[test]
fn an_agent_keeps_warm_connections_to_its_service() {
    watchdog(|| {
        let service = echo_server();
        let mut chain = Chain::builder(service.addr)
            .agent(&["--warm", "3", "--metrics-listen", "127.0.0.1:0"])
            .start();
        let metrics = chain.agent.field_addr("metrics");
        assert!(
            wait_for(Duration::from_secs(5), || service.accepted() >= 3),
            "warm connections to the service before any client"
        );
        // The agent holds its idle tunnels and the three warm connections.
        let held = chain.pool + 3;
        let relay_base = settle(&chain.relay, "relay", chain.pool);
        let agent_base = settle(&chain.agent, "agent", held);
        for k in 0..10 {
            // A full pool: the session is lent a warm connection.
            wait_pool_full(metrics, 3);
            full_session(chain.public).unwrap_or_else(|why| panic!("session {k}: {why}"));
        }
        let lines = upstream_lines(metrics);
        let lent: usize = lines
            .iter()
            .flat_map(|f| f.iter().filter(|(k, _)| k == "warm_lent"))
            .filter_map(|(_, v)| v.parse::<usize>().ok())
            .sum();
        assert_eq!(lent, 10, "each session one warm connection: {lines:?}");
        // Every connection the service accepted is accounted for: lent to one session,
        // idle, or closed unlent (its age limit passed, as on a loaded machine, or it
        // failed validation); none was lent twice.
        let unlent = || {
            metric_total(metrics, "tcpbridge_upstream_warm_expired_total")
                + metric_total(metrics, "tcpbridge_upstream_warm_failed_total")
        };
        assert!(
            wait_for(Duration::from_secs(5), || {
                service.accepted() as f64 == 10.0 + 3.0 + unlent()
                    && metric_total(metrics, "tcpbridge_upstream_warm_idle") == 3.0
            }),
            "the service accepted {} (want 10 sessions + 3 idle + {} closed unlent)",
            service.accepted(),
            unlent()
        );
        let within = Duration::from_secs(5);
        assert_settled(&mut chain.relay, "relay", relay_base, chain.pool, within);
        assert_settled(&mut chain.agent, "agent", agent_base, held, within);
    });
}
