//! Tests of config files with relay and agent tables: the heartbeat cross-check, services,
//! listen addresses, and what does not belong where. Every mode in one file is in
//! `tests_modes.rs`.

use std::time::Duration;

use super::tests::{err, ok};
use crate::config::parse::{render_duration, render_size};
use crate::config::MAX_LISTENERS;

#[test]
fn durations_and_sizes_render_in_their_largest_exact_unit() {
    let d = |ms| render_duration(Duration::from_millis(ms));
    assert_eq!(d(500), "500ms");
    assert_eq!(d(1500), "1500ms");
    assert_eq!(d(30_000), "30s");
    assert_eq!(d(300_000), "5m");
    assert_eq!(d(3_600_000), "1h");
    assert_eq!(d(7 * 86_400_000), "7d");
    assert_eq!(render_size(16 << 10), "16KiB");
    assert_eq!(render_size(32 << 20), "32MiB");
    assert_eq!(render_size(2 << 30), "2GiB");
    assert_eq!(render_size(1000), "1000B");
}

#[test]
fn heartbeat_timeout_must_exceed_the_interval() {
    let relay = |extra: &str| {
        format!(
            "[[relay]]\nname = \"r\"\ntunnel_listen = \"127.0.0.1:0\"\n\
             public = {{ s = \"127.0.0.1:0\" }}\nsecret_file = \"/nonexistent\"\n{extra}"
        )
    };
    assert_eq!(
        err(&relay("heartbeat_timeout = \"20s\"\n")),
        "t.toml:6:21: invalid value '20s' for heartbeat_timeout: \
         must be longer than heartbeat_interval (20s)"
    );
    assert_eq!(
        err(&relay("heartbeat_interval = \"2m\"\n")),
        "t.toml:6:22: invalid value '2m' for heartbeat_interval: \
         must be shorter than heartbeat_timeout (60s)"
    );
    assert_eq!(
        err("[defaults]\nheartbeat_timeout = \"5s\"\n"),
        "t.toml:2:21: invalid value '5s' for heartbeat_timeout: \
         must be longer than heartbeat_interval (20s)"
    );
}

#[test]
fn services_are_checked() {
    let agent = |service: &str| {
        format!(
            "[[agent]]\nname = \"a\"\nrelay = \"r:1\"\nservice = {service}\nsecret_file = \"/nonexistent\"\n"
        )
    };
    assert_eq!(
        err(&agent("{}")),
        "t.toml:4:11: service must name at least one service, e.g. service = { ssh = \"HOST:PORT\" }"
    );
    assert_eq!(
        err(&agent("{ \"a b\" = \"127.0.0.1:1\" }")),
        "t.toml:4:13: invalid service name 'a b' in service: \
         must be 1-64 characters of A-Z a-z 0-9 . _ -"
    );
    assert_eq!(
        err(&agent("{ s = \"127.0.0.1:0\" }")),
        "t.toml:4:17: invalid value '127.0.0.1:0' for service.s: port out of range (1-65535)"
    );
    assert_eq!(
        err(&agent("\"127.0.0.1:1\"")),
        "t.toml:4:11: invalid type for service: expected a table, found a string"
    );
    assert_eq!(
        err(&agent("{ s = \"127.0.0.1:1\" }").replace("r:1", "r")),
        "t.toml:3:9: invalid value 'r' for relay: missing port (expected HOST:PORT)"
    );
    assert_eq!(
        err(&agent("{ s = \"127.0.0.1:1\" }").replace("\nsecret", "\npool = 0\nsecret")),
        "t.toml:5:8: invalid value '0' for pool: must be a whole number from 1 to 1024"
    );
}

#[test]
fn relay_public_addresses_count_as_listen_addresses() {
    let text = "\
[[forward]]
name = \"f\"
listen = \"127.0.0.1:7100\"
upstream = \"127.0.0.1:9\"

[[relay]]
name = \"r\"
tunnel_listen = \"127.0.0.1:7101\"
public = { ssh = \"127.0.0.1:7100\" }
secret_file = \"/nonexistent\"
";
    assert_eq!(
        err(text),
        "t.toml:9:18: address 127.0.0.1:7100 is already used on line 3"
    );
    assert_eq!(
        err(&text
            .replace("7101", "7100")
            .replace("ssh = \"127.0.0.1:7100\"", "s = \"127.0.0.1:0\"")),
        "t.toml:8:17: address 127.0.0.1:7100 is already used on line 3"
    );
}

#[test]
fn a_relay_without_an_agent_key_says_where_it_belongs() {
    let text = "[[relay]]\nname = \"r\"\npool = 3\n";
    assert_eq!(
        err(text),
        "t.toml:3:1: key 'pool' does not belong in [[relay]] 'r': \
         it is an option of [[agent]] listeners"
    );
    assert_eq!(ok(super::tests::FORWARD).listeners.len(), 1);
}

#[test]
fn reuse_port_in_a_relay_or_agent_table_says_why_not() {
    let relay = "[[relay]]\nname = \"r\"\nreuse_port = true\n";
    assert_eq!(
        err(relay),
        "t.toml:3:1: key 'reuse_port' does not belong in [[relay]] 'r': \
         it is an option of [[forward]] listeners; relay pairs an agent's tunnel with a \
         client's connection, both must reach the same process"
    );
    assert_eq!(
        err(&relay.replace("relay", "agent")),
        "t.toml:3:1: key 'reuse_port' does not belong in [[agent]] 'r': \
         it is an option of [[forward]] listeners; an agent listens on no port"
    );
    assert_eq!(
        err("[defaults]\nreuse_port = true\n"),
        "t.toml:2:1: key 'reuse_port' does not belong in [defaults]: \
         it is an option of [[forward]] listeners"
    );
    let forward = ok(&format!("{}reuse_port = true\n", super::tests::FORWARD));
    assert!(forward.listeners[0].mode.reuse_port());
}

#[test]
fn at_most_256_listeners() {
    let one = |i: usize| {
        format!(
            "[[forward]]\nname = \"l{i}\"\nlisten = \"127.0.0.1:0\"\nupstream = \"127.0.0.1:9\"\n"
        )
    };
    let text: String = (0..MAX_LISTENERS).map(one).collect();
    assert_eq!(ok(&text).listeners.len(), MAX_LISTENERS);
    let text = format!("{text}{}", one(MAX_LISTENERS));
    assert_eq!(
        err(&text),
        format!(
            "t.toml:{}:1: too many listeners (at most 256)",
            4 * MAX_LISTENERS + 1
        )
    );
}

#[test]
fn a_listen_address_is_used_once() {
    let text = "\
[[forward]]
name = \"a\"
listen = \"127.0.0.1:7001\"
upstream = \"127.0.0.1:9\"
[[forward]]
name = \"b\"
listen = [\"127.0.0.1:7002\", \"127.0.0.1:7001\"]
upstream = \"127.0.0.1:9\"
";
    assert_eq!(
        err(text),
        "t.toml:7:29: address 127.0.0.1:7001 is already used on line 3"
    );
    assert_eq!(
        err(&format!("metrics_listen = \"127.0.0.1:7001\"\n{text}")),
        "t.toml:4:10: address 127.0.0.1:7001 is already used on line 1"
    );
    // Port 0 asks for any free port: never a conflict.
    let zero = text.replace("7001", "0");
    assert_eq!(ok(&zero).listeners.len(), 2);
}
