//! Upstream groups, health: an upstream that stops listening is ejected after
//! `--eject-after` failed connects (no client sees a failure while another is up, and no
//! new client is sent to it), and comes back once it listens again; every upstream down
//! then one back; active checks mark an upstream down and up without any client.

use crate::support::*;
use std::net::SocketAddr;
use std::time::Duration;

/// A forward over `e`'s upstreams with `extra`, its metrics endpoint on.
fn proxy_for(e: &Echoes, extra: &[&str]) -> Proxy {
    let mut args = forward_args(&e.addrs, extra);
    args.extend(["--metrics-listen".into(), "127.0.0.1:0".into()]);
    Proxy::spawn_strings(&args)
}

/// Failed connects to `addr` counted by the proxy.
fn failed_connects(metrics: SocketAddr, addr: SocketAddr) -> usize {
    upstream_field(metrics, addr, "connect_failures")
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX)
}

#[test]
fn a_stopped_upstream_is_ejected_then_serves_again() {
    watchdog(|| {
        let mut e = Echoes::new(3);
        let args = [
            "--balance",
            "round-robin",
            "--eject-after",
            "3",
            "--eject-time",
            "1s",
        ];
        let mut proxy = proxy_for(&e, &args);
        let metrics = proxy.field_addr("metrics");
        let baseline = proxy.baseline();
        assert_eq!(failures(proxy.addr(), 30), 0);
        e.stop(1);
        // Within one ejection (1 s, drawn in 0.75-1x) 60 quick sessions: none fails, and
        // the stopped upstream is tried exactly eject-after times.
        assert_eq!(
            failures(proxy.addr(), 60),
            0,
            "a refused connect moves the client on"
        );
        assert!(
            proxy.wait_log(
                &format!("upstream {} down: ejected", e.addrs[1]),
                Duration::from_secs(5)
            ),
            "no ejection line:\n{}",
            proxy.stderr()
        );
        let tried = failed_connects(metrics, e.addrs[1]);
        assert!(
            tried <= 4,
            "{tried} connects tried on the ejected upstream (want 3, or 4 after probation)"
        );
        e.start(1);
        let before = e.accepted(1);
        assert!(
            wait_for(Duration::from_secs(10), || {
                failures(proxy.addr(), 3) == 0 && e.accepted(1) > before
            }),
            "the upstream never served again: {:?}\n{}",
            e.counts(),
            proxy.stderr()
        );
        assert!(proxy.wait_log(
            &format!("upstream {} up again", e.addrs[1]),
            Duration::from_secs(5)
        ));
        assert_eq!(
            upstream_field(metrics, e.addrs[1], "state").as_deref(),
            Some("up")
        );
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}

#[test]
fn every_upstream_down_then_one_back() {
    watchdog(|| {
        let mut e = Echoes::new(2);
        let mut proxy = proxy_for(&e, &["--eject-time", "1s"]);
        let baseline = proxy.baseline();
        e.stop(0);
        e.stop(1);
        for _ in 0..5 {
            let mut c = connect(proxy.addr());
            assert!(
                matches!(read_end(&mut c), End::Eof),
                "closed without data while all are down"
            );
        }
        e.start(1);
        assert!(
            wait_for(Duration::from_secs(5), || served(proxy.addr())),
            "served once one upstream is back: every member is tried in order even ejected"
        );
        assert_eq!(failures(proxy.addr(), 10), 0);
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}

#[test]
fn health_checks_mark_an_upstream_down_and_up_without_clients() {
    watchdog(|| {
        let mut e = Echoes::new(2);
        let args = [
            "--health-check",
            "tcp",
            "--health-interval",
            "100ms",
            "--health-fall",
            "2",
            "--health-rise",
            "2",
        ];
        let mut proxy = proxy_for(&e, &args);
        let metrics = proxy.field_addr("metrics");
        let state = |addr| upstream_field(metrics, addr, "state");
        assert!(
            wait_for(Duration::from_secs(5), || e.accepted(0) >= 2),
            "checks connect"
        );
        e.stop(0);
        assert!(
            wait_for(Duration::from_secs(5), || state(e.addrs[0]).as_deref()
                == Some("down")),
            "down after failed checks: {:?}",
            upstream_lines(metrics)
        );
        assert!(proxy.wait_log(
            &format!("upstream {} down: failed its health checks", e.addrs[0]),
            Duration::from_secs(2)
        ));
        assert_eq!(failures(proxy.addr(), 10), 0, "the other one serves");
        e.start(0);
        assert!(
            wait_for(Duration::from_secs(5), || state(e.addrs[0]).as_deref()
                == Some("up")),
            "up after passed checks"
        );
        assert_eq!(state(e.addrs[1]).as_deref(), Some("up"));
        proxy.assert_alive();
    });
}
