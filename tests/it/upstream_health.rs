//! Upstream groups, health: what the proxy does when an upstream stops listening and
//! listens again on its port.
//!
//! - Passive: after `--eject-after 3` refused connects the upstream is ejected (`/upstreams`
//!   and `tcpbridge_upstream_state` say `ejected`); no client fails while another
//!   upstream is up (round robin and failover move it to the next on a refused
//!   connect); during the ejection no client is sent to it (its failed connects stay
//!   at 3); once it listens again it serves again (`--eject-time 1s`).
//! - Every upstream down: clients are closed without data, and served again as soon as
//!   one is back.
//! - Active (`--health-check tcp --health-interval 200ms`): checks mark an upstream down
//!   and up without any client, and bring an ejected upstream back without any client.
//! - Log lines, once per change: as many `down: ejected` lines as
//!   `tcpbridge_upstream_ejections_total` counts, one `up again` per return, one `failed
//!   its health checks` per fall.

use crate::support::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The shortest ejection `--eject-time 1s` draws (0.75-1x).
const EJECTION_FLOOR: Duration = Duration::from_millis(750);

/// A proxy over every upstream of `e` (in order, weight 1) with the whitespace-separated
/// `flags`; every log line kept (`--log-rate 0`), since the tests count them.
fn proxy_for(e: &Echoes, flags: &str) -> Proxy {
    let members: Vec<String> = e.addrs.iter().map(|a| member(*a, None, false)).collect();
    let mut args = vec!["--log-rate", "0"];
    args.extend(flags.split_whitespace());
    group_proxy(&members, &args)
}

/// Complete sessions, each of which must succeed, until `/upstreams` shows `addr`
/// ejected (at most 100): how many it took, and when that was seen (the ejection began
/// before). The ejection is logged too.
fn sessions_until_ejected(
    proxy: &Proxy,
    metrics: SocketAddr,
    addr: SocketAddr,
) -> (usize, Instant) {
    for n in 1..=100 {
        if let Err(why) = full_session(proxy.addr()) {
            panic!("session {n} failed while another upstream is up: {why}");
        }
        if upstream_field(metrics, addr, "state").as_deref() == Some("ejected") {
            let seen = Instant::now();
            let line = format!("upstream {addr} down: ejected");
            assert!(
                proxy.wait_log(&line, Duration::from_secs(5)),
                "no `{line}`:\n{}",
                proxy.stderr()
            );
            return (n, seen);
        }
    }
    panic!(
        "{addr} not ejected after 100 sessions: {:?}",
        upstream_lines(metrics)
    );
}

/// Complete sessions, each of which must succeed, until one reaches upstream `i` of `e`
/// (10 s).
fn sessions_until_served_by(proxy: &Proxy, e: &Echoes, i: usize) {
    let back = wait_for(Duration::from_secs(10), || {
        let before = e.accepted(i);
        if let Err(why) = full_session(proxy.addr()) {
            panic!("a session failed while another upstream is up: {why}");
        }
        e.accepted(i) > before
    });
    assert!(
        back,
        "upstream {i} never served again within 10 s: {:?}\n{}",
        e.counts(),
        proxy.stderr()
    );
}

/// The ejections of `addr` the log reports: (for how long, after how many failed
/// connects), from `upstream ADDR down: ejected for D after N failed connects` (D as
/// Rust prints a duration: `823.2ms`, `1.96s`).
fn ejections_logged(proxy: &Proxy, addr: SocketAddr) -> Vec<(Duration, u32)> {
    let prefix = format!("upstream {addr} down: ejected for ");
    let stderr = proxy.stderr();
    let lines = stderr.lines().filter_map(|l| l.split_once(&prefix));
    lines
        .map(|(_, rest)| {
            let (d, n) = rest.split_once(" after ").unwrap_or((rest, ""));
            let secs = match d.strip_suffix("ms") {
                Some(ms) => ms.parse::<f64>().ok().map(|v| v / 1e3),
                None => d.strip_suffix('s').and_then(|s| s.parse::<f64>().ok()),
            };
            let n = n
                .strip_suffix(" failed connects")
                .and_then(|n| n.parse().ok());
            match (secs, n) {
                (Some(secs), Some(n)) => (Duration::from_secs_f64(secs), n),
                _ => panic!("cannot read the ejection line: {rest:?}"),
            }
        })
        .collect()
}

/// `addr` is reported ejected by `/upstreams` and by `tcpbridge_upstream_state`, with
/// `failures` failed connects; checked within `since + EJECTION_FLOOR`.
fn assert_ejected(metrics: SocketAddr, addr: SocketAddr, failures: u64, since: Instant) {
    let state = upstream_field(metrics, addr, "state");
    let metric = metric_state(metrics, addr);
    let refused = upstream_metric(metrics, "tcpbridge_upstream_connect_failures_total", addr);
    let took = since.elapsed();
    assert!(
        took < EJECTION_FLOOR,
        "checks took {took:?}: the ejection may be over (machine too slow for this test)"
    );
    assert_eq!(state.as_deref(), Some("ejected"), "/upstreams for {addr}");
    assert_eq!(metric, "ejected", "tcpbridge_upstream_state for {addr}");
    assert_eq!(
        refused, failures as f64,
        "failed connects counted for {addr}"
    );
    assert_eq!(upstream_count(metrics, addr, "connect_failures"), failures);
}

#[test]
fn round_robin_ejects_a_stopped_upstream_and_takes_it_back() {
    watchdog(|| {
        let mut e = Echoes::new(3);
        let mut proxy = proxy_for(&e, "--balance round-robin --eject-after 3 --eject-time 1s");
        let metrics = proxy.field_addr("metrics");
        let baseline = proxy.baseline();
        let b = e.addrs[1];
        for _ in 0..30 {
            full_session(proxy.addr()).expect("a session with every upstream up");
        }
        assert_eq!(e.counts(), vec![10, 10, 10]);

        e.stop(1);
        let (n, seen) = sessions_until_ejected(&proxy, metrics, b);
        eprintln!("ejected after {n} sessions: {:?}", e.counts());
        assert_ejected(metrics, b, 3, seen);
        assert_eq!(
            upstream_metric(metrics, "tcpbridge_upstream_ejections_total", b),
            1.0
        );
        // While it is ejected no session tries it: its failed connects stay at 3.
        let mut during = 0;
        while seen.elapsed() < EJECTION_FLOOR / 2 && during < 100 {
            full_session(proxy.addr()).expect("a session while one upstream is ejected");
            during += 1;
        }
        assert!(
            seen.elapsed() < EJECTION_FLOOR,
            "sessions too slow to end within the ejection"
        );
        assert_eq!(
            upstream_count(metrics, b, "connect_failures"),
            3,
            "{during} sessions later"
        );

        e.start(1);
        sessions_until_served_by(&proxy, &e, 1);
        assert_eq!(upstream_field(metrics, b, "state").as_deref(), Some("up"));
        assert_eq!(metric_state(metrics, b), "up");
        let before = e.counts();
        for _ in 0..30 {
            full_session(proxy.addr()).expect("a session with every upstream up again");
        }
        let d = moved(&before, &e.counts());
        assert!(
            d.iter().all(|&n| (9..=11).contains(&n)),
            "round robin over three again: {d:?}"
        );
        assert_logged_once_per_change(&proxy, metrics, b, 1);
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
        e.assert_no_handler_panics();
    });
}

#[test]
fn failover_skips_an_ejected_first_upstream_and_returns_to_it() {
    watchdog(|| {
        let mut e = Echoes::new(2);
        let mut proxy = proxy_for(&e, "--eject-time 1s");
        let metrics = proxy.field_addr("metrics");
        let baseline = proxy.baseline();
        let a = e.addrs[0];
        for _ in 0..10 {
            full_session(proxy.addr()).expect("a session with both up");
        }
        assert_eq!(e.counts(), vec![10, 0], "failover: the first serves");

        e.stop(0);
        let (n, seen) = sessions_until_ejected(&proxy, metrics, a);
        assert_eq!(n, 3, "ejected at the third refused connect");
        assert_ejected(metrics, a, 3, seen);
        assert_eq!(
            e.accepted(1),
            3,
            "the second served the sessions the first refused"
        );
        // The ejection runs out while it still refuses (the view shows it up: on
        // probation); the next session tries it once, and that one failure ejects it
        // again for twice as long.
        let over = wait_for(Duration::from_secs(10), || {
            upstream_field(metrics, a, "state").as_deref() == Some("up")
        });
        assert!(
            over,
            "the ejection never ran out: {:?}",
            upstream_lines(metrics)
        );
        full_session(proxy.addr()).expect("a session while the first is on probation");
        wait_for(Duration::from_secs(5), || {
            ejections_logged(&proxy, a).len() >= 2
        });
        let logged = ejections_logged(&proxy, a);
        eprintln!("ejections of {a}: {logged:?}");
        assert_eq!(logged.len(), 2, "{logged:?}");
        let ms = |(d, _): (Duration, u32)| d.as_millis();
        assert!(
            (750..=1000).contains(&ms(logged[0])) && logged[0].1 == 3,
            "{logged:?}"
        );
        assert!(
            (1500..=2000).contains(&ms(logged[1])) && logged[1].1 == 1,
            "{logged:?}"
        );

        e.start(0);
        sessions_until_served_by(&proxy, &e, 0);
        let before = e.counts();
        for _ in 0..10 {
            full_session(proxy.addr()).expect("a session with both up again");
        }
        assert_eq!(
            moved(&before, &e.counts()),
            vec![10, 0],
            "the first serves again"
        );
        assert_eq!(upstream_field(metrics, a, "state").as_deref(), Some("up"));
        assert_logged_once_per_change(&proxy, metrics, a, 1);
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}

#[test]
fn every_upstream_down_then_one_back() {
    watchdog(|| {
        let mut e = Echoes::new(2);
        let mut proxy = proxy_for(&e, "--eject-time 1s");
        let metrics = proxy.field_addr("metrics");
        let baseline = proxy.baseline();
        e.stop(0);
        e.stop(1);
        for k in 0..10 {
            let took = closed_without_data(proxy.addr())
                .unwrap_or_else(|why| panic!("client {k} while every upstream is down: {why}"));
            assert!(
                took < Duration::from_secs(1),
                "client {k} closed after {took:?}"
            );
        }
        for a in &e.addrs {
            let line = format!("upstream {a} down: ejected");
            let logged = proxy.wait_log(&line, Duration::from_secs(5));
            assert!(logged, "no `{line}`:\n{}", proxy.stderr());
        }

        e.start(1);
        // Every member out: each is still tried, in order, so the first client after
        // the second listens again is served.
        full_session(proxy.addr()).expect("served once one upstream is back");
        for k in 0..10 {
            full_session(proxy.addr()).unwrap_or_else(|why| panic!("session {k}: {why}"));
        }
        assert_eq!(e.accepted(1), 11);
        assert_eq!(
            upstream_field(metrics, e.addrs[1], "state").as_deref(),
            Some("up")
        );
        assert_logged_once_per_change(&proxy, metrics, e.addrs[1], 1);
        assert_logged_once_per_change(&proxy, metrics, e.addrs[0], 0);
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}

#[test]
fn health_checks_mark_an_upstream_down_and_up_without_clients() {
    watchdog(|| {
        let mut e = Echoes::new(2);
        let mut proxy = proxy_for(
            &e,
            "--balance round-robin --health-check tcp --health-interval 200ms",
        );
        let metrics = proxy.field_addr("metrics");
        let a = e.addrs[0];
        let state = |addr| upstream_field(metrics, addr, "state");
        assert!(
            wait_for(Duration::from_secs(5), || e.accepted(0) >= 2),
            "checks connect every 200 ms: {:?}",
            e.counts()
        );
        let baseline = proxy.baseline();

        e.stop(0);
        // fall 3 x 200 ms.
        let down = wait_for(Duration::from_secs(6), || {
            state(a).as_deref() == Some("down")
        });
        assert!(
            down,
            "not down after failed checks: {:?}",
            upstream_lines(metrics)
        );
        assert_eq!(metric_state(metrics, a), "down");
        assert!(upstream_metric(metrics, "tcpbridge_upstream_checks_failed_total", a) >= 3.0);
        let fell = format!("upstream {a} down: failed its health checks");
        assert!(proxy.wait_log(&fell, Duration::from_secs(5)), "no `{fell}`");
        for k in 0..20 {
            full_session(proxy.addr()).unwrap_or_else(|why| panic!("session {k}: {why}"));
        }
        assert_eq!(
            upstream_count(metrics, a, "connect_failures"),
            0,
            "no client was sent to it"
        );
        assert_eq!(
            log_count(&proxy, &fell),
            1,
            "one line for the fall:\n{}",
            proxy.stderr()
        );

        e.start(0);
        // rise 2 x 200 ms.
        let up = wait_for(Duration::from_secs(4), || state(a).as_deref() == Some("up"));
        assert!(
            up,
            "not up after passed checks: {:?}",
            upstream_lines(metrics)
        );
        assert_eq!(metric_state(metrics, a), "up");
        let before = e.counts();
        for k in 0..20 {
            full_session(proxy.addr()).unwrap_or_else(|why| panic!("session {k}: {why}"));
        }
        let d = moved(&before, &e.counts());
        assert!(
            (9..=11).contains(&d[0]),
            "round robin over both again: {d:?}"
        );
        let again = format!("upstream {a} up again");
        assert!(
            proxy.wait_log(&again, Duration::from_secs(5)),
            "no `{again}`"
        );
        assert_eq!(log_count(&proxy, &fell), 1, "still one line for the fall");
        assert_eq!(log_count(&proxy, &again), 1);
        assert_eq!(state(e.addrs[1]).as_deref(), Some("up"));
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}

#[test]
fn health_checks_bring_an_ejected_upstream_back_without_clients() {
    watchdog(|| {
        let mut e = Echoes::new(2);
        // fall 100 x 200 ms: the checks do not mark it down within this test, so only
        // the ejection (passive) takes it out.
        let flags = "--balance round-robin --eject-time 1s \
                     --health-check tcp --health-interval 200ms --health-fall 100";
        let mut proxy = proxy_for(&e, flags);
        let metrics = proxy.field_addr("metrics");
        let a = e.addrs[0];
        let baseline = proxy.baseline();

        e.stop(0);
        let (_, seen) = sessions_until_ejected(&proxy, metrics, a);
        assert_ejected(metrics, a, 3, seen);
        e.start(0);
        // No client from here: a passed check after the ejection brings it back.
        let line = format!("upstream {a} up again");
        assert!(
            proxy.wait_log(&line, Duration::from_secs(10)),
            "no `{line}` without clients:\n{}",
            proxy.stderr()
        );
        assert_eq!(upstream_field(metrics, a, "state").as_deref(), Some("up"));
        assert_eq!(upstream_count(metrics, a, "connect_failures"), 3);
        let before = e.counts();
        for k in 0..10 {
            full_session(proxy.addr()).unwrap_or_else(|why| panic!("session {k}: {why}"));
        }
        let d = moved(&before, &e.counts());
        assert!(
            (4..=6).contains(&d[0]),
            "round robin over both again: {d:?}"
        );
        assert_logged_once_per_change(&proxy, metrics, a, 1);
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}
