//! Tests of upstream groups in config files: the `HOST:PORT[,weight=N][,backup]` forms,
//! their errors with line and column, the group options (forward and agent, refused on a
//! relay) and the render -> parse round trip.

use super::tests::{err, ok};
use super::*;
use crate::config::{Mode, Upstream};
use crate::core::upstream::{Balance, HealthCheck};

fn forward(upstream: &str, more: &str) -> String {
    format!("[[forward]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nupstream = {upstream}\n{more}")
}

fn upstreams(c: &Config) -> (&[Upstream], &crate::config::UpstreamOptions) {
    match &c.listeners[0].mode {
        Mode::Forward(f) => (&f.upstreams, &f.group),
        _ => panic!("a forward listener"),
    }
}

#[test]
fn weights_and_backups_are_read_and_rendered_back() {
    let c = ok(&forward(
        "[\"127.0.0.1:1,weight=3\", \"127.0.0.1:2\", \"localhost:3, backup\"]",
        "balance = \"round-robin\"\nwarm = 4\nhealth_check = \"tcp\"\nconnect_tries = 2\n",
    ));
    let (u, g) = upstreams(&c);
    assert_eq!((u[0].weight, u[0].backup), (3, false));
    assert_eq!((u[1].weight, u[1].backup), (1, false));
    assert_eq!((u[2].target.as_str(), u[2].backup), ("localhost:3", true));
    assert!(!u[2].addrs.is_empty());
    assert_eq!(g.balance, Balance::RoundRobin);
    assert_eq!((g.warm, g.connect_tries), (4, 2));
    assert_eq!(g.health_check, HealthCheck::Tcp);
    let text = render(&c);
    assert!(
        text.contains(
            "upstream = [\"127.0.0.1:1,weight=3\", \"127.0.0.1:2\", \"localhost:3,backup\"]"
        ),
        "{text}"
    );
    let again = parse(&text, std::path::Path::new("t.toml")).expect("reads back");
    assert_eq!(render(&again), text);
}

#[test]
fn defaults_keep_the_old_behaviour() {
    let c = ok(&forward("\"127.0.0.1:1\"", ""));
    let (_, g) = upstreams(&c);
    assert_eq!(g.balance, Balance::Failover);
    assert_eq!((g.connect_tries, g.eject_after, g.warm), (0, 3, 0));
    assert!(
        !render(&c).contains("connect_tries"),
        "derived: not written"
    );
}

#[test]
fn bad_attributes_are_named_with_their_position() {
    for (value, says) in [
        (
            "\"127.0.0.1:1,wieght=2\"",
            "unknown attribute 'wieght=2': expected weight=N, backup or proxy=v1|v2",
        ),
        (
            "\"127.0.0.1:1,proxy=v3\"",
            "proxy must be v1 or v2, not 'v3'",
        ),
        ("\"127.0.0.1:1,proxy=v1,proxy=v2\"", "proxy is given twice"),
        (
            "\"127.0.0.1:1,weight=0\"",
            "weight must be a whole number from 1 to 256",
        ),
        ("\"127.0.0.1:1,weight=2,weight=3\"", "weight is given twice"),
        ("\"127.0.0.1:1,backup=yes\"", "backup takes no value"),
        ("\"127.0.0.1:1,\"", "an empty attribute"),
        ("\"127.0.0.1:1,backup\"", "every upstream is a backup"),
    ] {
        let e = err(&forward(value, ""));
        assert!(e.starts_with("t.toml:4:"), "{value}: {e}");
        assert!(e.contains(says), "{value}: {e}");
    }
}

#[test]
fn group_options_belong_to_forward_and_agent_not_relay() {
    let e = err(&forward("\"127.0.0.1:1\"", "balance = \"random\"\n"));
    assert!(e.contains("'random-two'"), "{e}");
    let relay = "[[relay]]\nname = \"r\"\ntunnel_listen = \"127.0.0.1:0\"\n\
                 public = { ssh = \"127.0.0.1:0\" }\nwarm = 2\n";
    let e = err(relay);
    assert!(e.contains("tunnels its agents open"), "{e}");
}
