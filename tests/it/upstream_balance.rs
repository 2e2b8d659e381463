//! Upstream groups, balancing: three echo upstreams of weights 1, 2 and 3 under each
//! `--balance` policy.
//!
//! - Short sessions (16 bytes echoed, half-close, EOF: each one closed in the proxy
//!   before the next starts), 3,000 per policy, counted by the upstreams' accepts:
//!   failover sends all to the first; round robin follows the weights exactly (the
//!   acceptance asks ±1 %); random two and least sessions follow them within ±15 % of
//!   each expected count (random two's first draw is by weight, so upstream 0's count,
//!   500 expected, has a standard deviation of 20: ±15 % is ±3.7 σ).
//! - Least sessions with sessions held open: 60 live end up 10, 20, 30; when the third
//!   upstream's 30 close, the next 30 all go to it.
//! - Source hash: each of 40 client addresses (127.0.0.2 to .41, bound before the
//!   connect) stays on one upstream; only the clients of an upstream that stops move,
//!   and they come back when it listens again.
//! - Backups serve only while every primary is down.
//! - The live sessions the policies balance by: none stays counted on an upstream that
//!   refused a session's connect, and least sessions uses such an upstream again.
//!
//! The observed counts are printed (`--nocapture` shows them).

use crate::support::*;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const WEIGHTS: [u32; 3] = [1, 2, 3];

/// Three echo upstreams of weights 1, 2, 3 behind a proxy with `--balance policy` and
/// `extra`.
fn weighted(policy: &str, extra: &[&str]) -> (Echoes, Proxy) {
    let e = Echoes::new(3);
    let members: Vec<String> = e
        .addrs
        .iter()
        .zip(WEIGHTS)
        .map(|(a, w)| member(*a, Some(w), false))
        .collect();
    let mut args = vec!["--balance", policy, "-q"];
    args.extend_from_slice(extra);
    let proxy = group_proxy(&members, &args);
    (e, proxy)
}

/// `n` complete sessions, one after the other; panics on the first that fails.
fn sessions(proxy: SocketAddr, n: usize) {
    for k in 0..n {
        if let Err(why) = full_session(proxy) {
            panic!("session {k} of {n}: {why}");
        }
    }
}

/// 3,000 short sessions under `policy`: the upstreams' counts.
fn distribution(policy: &str) -> Vec<usize> {
    let (e, mut proxy) = weighted(policy, &[]);
    let baseline = proxy.baseline();
    sessions(proxy.addr(), 3000);
    let counts = e.counts();
    proxy.assert_quiescent(baseline, Duration::from_secs(5));
    e.assert_no_handler_panics();
    counts
}

#[test]
fn failover_sends_every_session_to_the_first_upstream() {
    watchdog(|| {
        let counts = distribution("failover");
        eprintln!("failover: observed {counts:?}");
        assert_eq!(counts, vec![3000, 0, 0], "weights play no part in failover");
    });
}

#[test]
fn round_robin_follows_weights_exactly() {
    watchdog(|| {
        let counts = distribution("round-robin");
        assert_shares("round-robin", &counts, &WEIGHTS, 0.01);
        assert_eq!(counts, vec![500, 1000, 1500], "smooth weighted round robin");
    });
}

#[test]
fn random_two_follows_weights_with_short_sessions() {
    watchdog(|| {
        let counts = distribution("random-two");
        assert_shares("random-two", &counts, &WEIGHTS, 0.15);
    });
}

/// With sessions that end before the next starts every upstream has no session at
/// each pick: the weights must still decide (nginx's least_conn takes ties by
/// weighted round robin).
#[test]
fn least_sessions_follows_weights_with_short_sessions() {
    watchdog(|| {
        let counts = distribution("least-sessions");
        assert_shares("least-sessions", &counts, &WEIGHTS, 0.15);
    });
}

/// Opens a session and echoes a byte (so its upstream accepted it): the session and
/// the upstream it reached.
fn hold(proxy: SocketAddr, e: &Echoes) -> (TcpStream, usize) {
    let before = e.counts();
    let mut c = connect(proxy);
    echo_roundtrip(&mut c, b"x");
    let d = moved(&before, &e.counts());
    let i = d.iter().position(|&n| n == 1);
    assert!(
        i.is_some() && d.iter().sum::<usize>() == 1,
        "one upstream accepted: {d:?}"
    );
    (c, i.unwrap_or(0))
}

#[test]
fn least_sessions_sends_new_sessions_to_the_least_loaded() {
    watchdog(|| {
        let (e, mut proxy) = weighted("least-sessions", &[]);
        let metrics = proxy.field_addr("metrics");
        let baseline = proxy.baseline();
        let mut held: Vec<(TcpStream, usize)> = (0..60).map(|_| hold(proxy.addr(), &e)).collect();
        eprintln!("least-sessions, 60 held: {:?}", e.counts());
        assert_eq!(e.counts(), vec![10, 20, 30], "live sessions by weight");
        let third = e.addrs[2];
        assert_eq!(upstream_count(metrics, third, "sessions"), 30);

        // The third upstream's sessions end: 10, 20, 0 live.
        held.retain(|(_, i)| *i != 2);
        assert!(
            wait_for(Duration::from_secs(5), || upstream_count(
                metrics, third, "sessions"
            ) == 0),
            "the proxy still counts {} sessions on {third}",
            upstream_count(metrics, third, "sessions")
        );
        let before = e.counts();
        held.extend((0..30).map(|_| hold(proxy.addr(), &e)));
        let d = moved(&before, &e.counts());
        eprintln!("least-sessions, 30 more after the third's closed: {d:?}");
        assert_eq!(
            d,
            vec![0, 0, 30],
            "each new session to the least loaded by weight"
        );
        drop(held);
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}

#[test]
fn source_hash_keeps_a_client_address_on_one_upstream() {
    watchdog(|| {
        let (mut e, mut proxy) = weighted("source-hash", &["--eject-time", "1s"]);
        let baseline = proxy.baseline();
        // Each address's upstream: its 5 sessions all on one.
        let mut home = Vec::new();
        for n in 2..42 {
            let ip = format!("127.0.0.{n}");
            let before = e.counts();
            for k in 0..5 {
                full_session_from(proxy.addr(), &ip)
                    .unwrap_or_else(|why| panic!("{ip}, session {k}: {why}"));
            }
            let d = moved(&before, &e.counts());
            let i = d.iter().position(|&m| m == 5);
            assert!(
                i.is_some(),
                "{ip}: its 5 sessions on one upstream, got {d:?}"
            );
            home.push((ip, i.unwrap_or(0)));
        }
        let per: Vec<usize> = (0..3)
            .map(|i| home.iter().filter(|(_, h)| *h == i).count())
            .collect();
        eprintln!("source-hash: 40 addresses per upstream {per:?}");
        assert!(
            per.iter().all(|&n| n > 0),
            "an upstream has no address: {per:?}"
        );

        // The second upstream stops: its clients move, no one else does.
        e.stop(1);
        for (ip, h) in &home {
            let before = e.counts();
            full_session_from(proxy.addr(), ip)
                .unwrap_or_else(|why| panic!("{ip} while the second is down: {why}"));
            let d = moved(&before, &e.counts());
            if *h != 1 {
                assert_eq!(d[*h], 1, "{ip} left its upstream {h}: {d:?}");
            }
        }
        // It listens again: its clients come back once its ejection is over.
        e.start(1);
        let (ip, _) = home
            .iter()
            .find(|(_, h)| *h == 1)
            .expect("a client of the second");
        let back = wait_for(Duration::from_secs(20), || {
            let before = e.accepted(1);
            full_session_from(proxy.addr(), ip).is_ok() && e.accepted(1) > before
        });
        assert!(
            back,
            "{ip} never came back to the second upstream: {:?}",
            e.counts()
        );
        for (ip, h) in &home {
            let before = e.counts();
            full_session_from(proxy.addr(), ip).unwrap_or_else(|why| panic!("{ip}: {why}"));
            assert_eq!(
                moved(&before, &e.counts())[*h],
                1,
                "{ip} back on upstream {h}"
            );
        }
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}

#[test]
fn a_backup_serves_only_when_every_primary_is_down() {
    watchdog(|| {
        let mut e = Echoes::new(3);
        let members = [
            member(e.addrs[0], None, false),
            member(e.addrs[1], None, false),
            member(e.addrs[2], None, true),
        ];
        let mut proxy = group_proxy(
            &members,
            &["--balance", "round-robin", "--eject-time", "1s", "-q"],
        );
        let metrics = proxy.field_addr("metrics");
        let baseline = proxy.baseline();
        assert_eq!(
            upstream_field(metrics, e.addrs[2], "backup").as_deref(),
            Some("true"),
            "/upstreams: {:?}",
            upstream_lines(metrics)
        );
        sessions(proxy.addr(), 20);
        assert_eq!(
            e.counts(),
            vec![10, 10, 0],
            "the backup idles while both serve"
        );

        e.stop(0);
        let before = e.counts();
        sessions(proxy.addr(), 20);
        assert_eq!(
            moved(&before, &e.counts()),
            vec![0, 20, 0],
            "one primary down: the other serves, the backup idles"
        );
        e.stop(1);
        let before = e.counts();
        sessions(proxy.addr(), 20);
        assert_eq!(
            moved(&before, &e.counts()),
            vec![0, 0, 20],
            "every primary down: the backup serves"
        );

        e.start(0);
        let back = wait_for(Duration::from_secs(10), || {
            let before = e.accepted(0);
            full_session(proxy.addr()).is_ok() && e.accepted(0) > before
        });
        assert!(
            back,
            "the first primary never served again: {:?}",
            e.counts()
        );
        let before = e.counts();
        sessions(proxy.addr(), 20);
        assert_eq!(
            moved(&before, &e.counts()),
            vec![20, 0, 0],
            "a primary back: the backup idles again"
        );
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}

/// An upstream that refused one connect and listens again takes its share of sessions
/// under least sessions (both idle: ties alternate, 10 of 20).
#[test]
fn least_sessions_uses_an_upstream_again_after_it_refused() {
    watchdog(|| {
        let mut e = Echoes::new(2);
        let members: Vec<String> = e.addrs.iter().map(|a| member(*a, None, false)).collect();
        let mut proxy = group_proxy(&members, &["--balance", "least-sessions", "-q"]);
        let metrics = proxy.field_addr("metrics");
        let baseline = proxy.baseline();
        e.stop(0);
        sessions(proxy.addr(), 2);
        e.start(0);
        let before = e.counts();
        sessions(proxy.addr(), 20);
        let d = moved(&before, &e.counts());
        eprintln!("least-sessions after a refused connect: {d:?}");
        assert!(
            (8..=12).contains(&d[0]),
            "the first upstream got {} of 20: {:?}",
            d[0],
            upstream_lines(metrics)
        );
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}

/// A session whose connect to an upstream fails moves to the next one; once every
/// session has closed no upstream may still count one (`tcpbridge_upstream_sessions`,
/// `/upstreams` `sessions=`): the count is what least sessions and random two balance by.
#[test]
fn refused_connects_leave_no_session_counted() {
    watchdog(|| {
        let mut e = Echoes::new(2);
        let members: Vec<String> = e.addrs.iter().map(|a| member(*a, None, false)).collect();
        let mut proxy = group_proxy(&members, &["-q"]);
        let metrics = proxy.field_addr("metrics");
        let baseline = proxy.baseline();
        e.stop(0);
        for k in 0..3 {
            full_session(proxy.addr()).unwrap_or_else(|why| panic!("session {k}: {why}"));
        }
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
        for a in &e.addrs {
            let gauge = upstream_metric(metrics, "tcpbridge_upstream_sessions", *a);
            let view = upstream_count(metrics, *a, "sessions");
            assert!(
                gauge == 0.0 && view == 0,
                "{a}: no session is left, yet tcpbridge_upstream_sessions {gauge}, sessions={view}: {:?}",
                upstream_lines(metrics)
            );
        }
    });
}
