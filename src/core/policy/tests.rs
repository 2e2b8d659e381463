//! The precedence of [`Policy::check`], the defaults of each mode and the proxy's own
//! listeners. Blocks and rules are in `tests_rules.rs`, the internal ranges in
//! `tests_ranges.rs`.

use std::net::{IpAddr, SocketAddr};

use super::{Dest, Own, Policy, Reason, Rule, Verdict};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an address")
}

fn rule(s: &str) -> Rule {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn rules(list: &[&str]) -> Vec<Rule> {
    list.iter().map(|s| rule(s)).collect()
}

fn dest<'a>(host: Option<&'a str>, addr: &str, port: u16) -> Dest<'a> {
    Dest {
        host,
        ip: ip(addr),
        port,
    }
}

#[test]
fn defaults_deny_internal_and_ports() {
    let connect = Policy::connect();
    let socks = Policy::socks();
    let public = dest(Some("example.com"), "93.184.216.34", 443);
    assert_eq!(connect.check(public), Verdict::Allow);
    assert_eq!(
        connect.check(Dest { port: 80, ..public }),
        Verdict::Deny(Reason::Port)
    );
    assert_eq!(socks.check(Dest { port: 80, ..public }), Verdict::Allow);
    assert_eq!(
        socks.check(Dest { port: 0, ..public }),
        Verdict::Deny(Reason::Port)
    );
    for p in [&connect, &socks] {
        match p.check(dest(None, "::ffff:127.0.0.1", 443)) {
            Verdict::Deny(Reason::Internal(i)) => assert_eq!(i.range, "loopback"),
            v => panic!("{v:?}"),
        }
        let name_is_no_excuse = dest(Some("example.com"), "10.0.0.1", 443);
        assert!(matches!(
            p.check(name_is_no_excuse),
            Verdict::Deny(Reason::Internal(_))
        ));
    }
}

#[test]
fn precedence() {
    let policy = Policy {
        allow: rules(&[
            "10.0.0.0/8:22",
            "db.internal:5432",
            "*.example.com:8443",
            "[fd00::]/8",
            "192.168.0.0/16",
        ]),
        deny: rules(&["10.9.0.0/16", "*.bad.example.com", "192.168.1.1:443"]),
        own: Own {
            listeners: vec!["10.0.0.1:22".parse().expect("addr")],
            local: vec![],
        },
        ..Policy::connect()
    };
    let deny = |r| Verdict::Deny(r);
    let cases: &[(Option<&str>, &str, u16, Verdict)] = &[
        // Row 1: own listener beats the allow rule.
        (None, "10.0.0.1", 22, deny(Reason::OwnListener)),
        // Row 2: deny beats allow.
        (None, "10.9.1.1", 22, deny(Reason::DenyRule(0))),
        (
            Some("x.bad.example.com"),
            "8.8.8.8",
            8443,
            deny(Reason::DenyRule(1)),
        ),
        (
            Some("x.bad.example.com"),
            "8.8.8.8",
            443,
            deny(Reason::DenyRule(1)),
        ),
        (None, "192.168.1.1", 443, deny(Reason::DenyRule(2))),
        // A deny rule with ports applies to those ports only; an allow rule without
        // ports opens the default ones.
        (
            None,
            "192.168.1.1",
            444,
            Verdict::Deny(Reason::Internal(internal("192.168.1.1"))),
        ),
        (None, "192.168.1.2", 443, Verdict::Allow),
        // Row 3: an address rule opens an internal range, on its ports.
        (None, "10.0.0.2", 22, Verdict::Allow),
        (None, "::ffff:10.0.0.2", 22, Verdict::Allow),
        (
            None,
            "10.0.0.2",
            443,
            Verdict::Deny(Reason::Internal(internal("10.0.0.2"))),
        ),
        (None, "192.168.5.5", 443, Verdict::Allow),
        (
            None,
            "192.168.5.5",
            22,
            Verdict::Deny(Reason::Internal(internal("192.168.5.5"))),
        ),
        (None, "fd00::1", 443, Verdict::Allow),
        // A name rule never opens an internal range.
        (
            Some("db.internal"),
            "10.0.0.5",
            5432,
            Verdict::Deny(Reason::Internal(internal("10.0.0.5"))),
        ),
        (
            Some("db.internal"),
            "172.16.0.5",
            5432,
            Verdict::Deny(Reason::Internal(internal("172.16.0.5"))),
        ),
        // Row 4: a name rule opens its ports on public addresses.
        (Some("db.internal"), "8.8.8.8", 5432, Verdict::Allow),
        (Some("www.example.com"), "8.8.8.8", 8443, Verdict::Allow),
        (Some("www.example.com"), "8.8.8.8", 443, Verdict::Allow),
        (Some("www.example.com"), "8.8.8.8", 80, deny(Reason::Port)),
        (Some("example.com"), "8.8.8.8", 8443, deny(Reason::Port)),
        (None, "8.8.8.8", 8443, deny(Reason::Port)),
        // Row 5.
        (None, "8.8.8.8", 443, Verdict::Allow),
    ];
    for &(host, addr, port, want) in cases {
        assert_eq!(
            policy.check(dest(host, addr, port)),
            want,
            "{host:?} {addr}:{port}"
        );
    }
}

fn internal(addr: &str) -> super::Internal {
    super::internal(ip(addr)).expect("an internal address")
}

#[test]
fn own_listeners() {
    let own = Own {
        listeners: vec![
            "0.0.0.0:1080".parse::<SocketAddr>().expect("addr"),
            "127.0.0.1:3128".parse().expect("addr"),
            "[2001:db8::1]:8080".parse().expect("addr"),
        ],
        local: vec![ip("203.0.113.9"), ip("2001:db8::1")],
    };
    let cases = [
        ("203.0.113.9", 1080, true),
        ("::ffff:203.0.113.9", 1080, true),
        ("127.0.0.5", 1080, true),
        ("0.0.0.0", 1080, true),
        ("2001:db8::1", 1080, true),
        ("203.0.113.10", 1080, false),
        ("203.0.113.9", 1081, false),
        ("127.0.0.1", 3128, true),
        ("0.0.0.0", 3128, true),
        ("127.0.0.2", 3128, false),
        ("203.0.113.9", 3128, false),
        ("2001:db8::1", 8080, true),
        ("::", 8080, true),
        ("2001:db8::2", 8080, false),
    ];
    for (addr, port, want) in cases {
        assert_eq!(own.contains(ip(addr), port), want, "{addr}:{port}");
    }
    // An allow rule cannot open a listener.
    let policy = Policy {
        allow: rules(&["203.0.113.0/24:1-65535"]),
        own,
        ..Policy::socks()
    };
    assert_eq!(
        policy.check(dest(None, "203.0.113.9", 1080)),
        Verdict::Deny(Reason::OwnListener)
    );
    assert_eq!(
        policy.check(dest(None, "203.0.113.9", 1081)),
        Verdict::Allow
    );
}
