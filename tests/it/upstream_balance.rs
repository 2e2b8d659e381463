//! Upstream groups, balancing: three echo upstreams under each policy. Weights are
//! honoured (round robin exactly; random two within a stated tolerance), least sessions
//! follows live sessions, source hash keeps a client address on one upstream, backups
//! serve only when the others are down.

use crate::support::*;
use socket2::{Domain, Socket, Type};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `--upstream A,weight=1 --upstream B,weight=2 --upstream C,weight=3` and `extra`.
fn weighted(e: &Echoes, extra: &[&str]) -> Proxy {
    let mut args = vec![
        "forward".to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ];
    for (i, a) in e.addrs.iter().enumerate() {
        args.push("--upstream".into());
        args.push(format!("{a},weight={}", i + 1));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(["--metrics-listen".into(), "127.0.0.1:0".into(), "-q".into()]);
    Proxy::spawn_strings(&args)
}

/// Round robin over weights 1, 2, 3 and 3,000 sessions: exactly 500, 1000, 1500.
#[test]
fn round_robin_honours_weights_exactly() {
    watchdog(|| {
        let e = Echoes::new(3);
        let mut proxy = weighted(&e, &["--balance", "round-robin"]);
        let baseline = proxy.baseline();
        assert_eq!(failures(proxy.addr(), 3000), 0, "every session served");
        assert_eq!(e.counts(), vec![500, 1000, 1500], "weights 1:2:3");
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}

/// Random two with short sessions: the shares follow the weights within ±40 % of each
/// expected count over 3,000 sessions, in the weights' order. Not closer: a session
/// still closing when the next is picked makes its upstream the more loaded of a pair,
/// and comparing loads per unit of weight then favours the lighter upstreams (observed
/// 676, 1076, 1248 and 700, 1032, 1268 for 500, 1000, 1500): that correction toward
/// equal load per weight is what the policy is for.
#[test]
fn random_two_follows_weights() {
    watchdog(|| {
        let e = Echoes::new(3);
        let mut proxy = weighted(&e, &["--balance", "random-two"]);
        let baseline = proxy.baseline();
        assert_eq!(failures(proxy.addr(), 3000), 0, "every session served");
        let counts = e.counts();
        for (i, &n) in counts.iter().enumerate() {
            let want = 500.0 * (i + 1) as f64;
            let off = (n as f64 - want).abs() / want;
            assert!(
                off < 0.4,
                "upstream {i}: {n} sessions, want {want} ± 40 %: {counts:?}"
            );
        }
        assert!(
            counts[0] < counts[1] && counts[1] < counts[2],
            "in weight order: {counts:?}"
        );
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}

/// Least sessions with sessions held open: 60 live sessions end up 10, 20, 30 by weight.
#[test]
fn least_sessions_spreads_live_sessions_by_weight() {
    watchdog(|| {
        let e = Echoes::new(3);
        let mut proxy = weighted(&e, &["--balance", "least-sessions"]);
        let baseline = proxy.baseline();
        let held: Vec<TcpStream> = (0..60)
            .map(|_| {
                let mut c = connect(proxy.addr());
                echo_roundtrip(&mut c, b"x");
                c
            })
            .collect();
        assert_eq!(e.counts(), vec![10, 20, 30], "live sessions by weight");
        drop(held);
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}

/// A client connecting from `ip` (a loopback address), served once.
fn served_from(proxy: SocketAddr, ip: &str) -> bool {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let local: SocketAddr = format!("{ip}:0").parse().expect("addr");
    s.bind(&local.into()).expect("bind a loopback source");
    if s.connect(&proxy.into()).is_err() {
        return false;
    }
    let mut c = with_timeouts(s.into());
    echo_roundtrip(&mut c, b"x");
    true
}

/// Source hash: one client address always reaches the same upstream; forty addresses
/// are spread over more than one.
#[test]
fn source_hash_keeps_a_client_address_on_one_upstream() {
    watchdog(|| {
        let e = Echoes::new(3);
        let mut proxy = weighted(&e, &["--balance", "source-hash"]);
        let baseline = proxy.baseline();
        let mut used = 0u32;
        for n in 2..42 {
            let ip = format!("127.0.0.{n}");
            let before = e.counts();
            for _ in 0..5 {
                assert!(served_from(proxy.addr(), &ip), "{ip} served");
            }
            let moved: Vec<usize> = e.counts().iter().zip(&before).map(|(a, b)| a - b).collect();
            assert!(
                moved.contains(&5),
                "{ip}: its 5 sessions on one upstream, got {moved:?}"
            );
            used |= 1 << moved.iter().position(|&m| m == 5).unwrap_or(0);
        }
        assert!(
            used.count_ones() > 1,
            "forty addresses all on one upstream: {:?}",
            e.counts()
        );
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}

/// A backup serves only while the primary is down; clients never fail while it serves.
#[test]
fn a_backup_serves_only_when_the_others_are_down() {
    watchdog(|| {
        let mut e = Echoes::new(2);
        let args = forward_args(&[], &["--eject-time", "1s", "-q"]);
        let mut args: Vec<String> = args;
        for (a, extra) in e.addrs.iter().zip(["", ",backup"]) {
            args.push("--upstream".into());
            args.push(format!("{a}{extra}"));
        }
        let mut proxy = Proxy::spawn_strings(&args);
        let baseline = proxy.baseline();
        assert_eq!(failures(proxy.addr(), 20), 0);
        assert_eq!(e.accepted(1), 0, "backup unused while the primary is up");
        e.stop(0);
        assert_eq!(failures(proxy.addr(), 20), 0, "the backup takes over");
        assert_eq!(e.accepted(1), 20);
        e.start(0);
        let primary = e.accepted(0);
        assert!(
            wait_for(Duration::from_secs(10), || served(proxy.addr())
                && e.accepted(0) > primary),
            "the primary serves again after its ejection: {:?}",
            e.counts()
        );
        let backup = e.accepted(1);
        assert_eq!(failures(proxy.addr(), 20), 0);
        assert_eq!(e.accepted(1), backup, "the backup idles again");
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}
