//! Tests of config files with every mode: relay and agent tables, secret files, the
//! heartbeat cross-check, file order, and the render -> parse -> render round trip.

use std::path::Path;
use std::time::Duration;

use super::tests::{err, ok, scratch, write_secret};
use super::*;
use crate::config::parse::{render_duration, render_size};
use crate::config::{Mode, MAX_LISTENERS};

/// A file with every mode, its secrets in `dir`.
fn all_modes(secret: &str) -> String {
    format!(
        "\
buffer_size = \"8KiB\"
max_sessions = 200

[defaults]
connect_timeout = \"2s\"
heartbeat_interval = \"10s\"
heartbeat_timeout = \"30s\"

[[agent]]
name = \"home\"
relay = \"relay.example.com:7000\"
service = {{ ssh = \"127.0.0.1:22\", \"web.v2\" = \"127.0.0.1:8080\" }}
secret_file = \"{secret}\"
pool = 2
exit_on_disconnect = true
backoff_max = \"1m\"
heartbeat_timeout = \"45s\"

[[forward]]
name = \"web\"
listen = \"127.0.0.1:0\"
upstream = \"127.0.0.1:9\"

[[relay]]
name = \"nat\"
tunnel_listen = \"127.0.0.1:0\"
public = {{ ssh = \"127.0.0.1:0\", web = \"127.0.0.1:0\" }}
secret_file = \"{secret}\"
pair_timeout = \"3s\"
max_waiting = 8
max_idle_tunnels = 9
max_handshakes = 10
connect_timeout = \"4s\"
"
    )
}

#[test]
fn every_mode_in_one_file_in_file_order() {
    let dir = scratch("all-modes");
    write_secret(&dir);
    let path = dir.join("tcpbridge.toml");
    let c = parse(&all_modes("secret"), &path).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = c.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["home", "web", "nat"]);
    let secret_path = std::path::absolute(dir.join("secret")).expect("absolute");
    let secret_path = secret_path.to_string_lossy();

    let agent = &c.listeners[0];
    assert_eq!(agent.policy.connect_timeout, Duration::from_secs(2));
    let Mode::Agent(a) = &agent.mode else {
        panic!("agent")
    };
    assert_eq!(a.relay, "relay.example.com:7000");
    let services: Vec<(&str, String)> = a
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.addr.to_string()))
        .collect();
    assert_eq!(
        services,
        [
            ("ssh", "127.0.0.1:22".to_string()),
            ("web.v2", "127.0.0.1:8080".to_string())
        ]
    );
    assert_eq!(a.tunnel.secret_file, secret_path);
    assert_eq!((a.pool, a.exit_on_disconnect), (2, true));
    assert_eq!(a.backoff_max, Duration::from_secs(60));
    assert_eq!(a.tunnel.policy.handshake_timeout, Duration::from_secs(5));
    assert_eq!(a.tunnel.policy.heartbeat_interval, Duration::from_secs(10));
    assert_eq!(a.tunnel.policy.heartbeat_timeout, Duration::from_secs(45));

    let relay = &c.listeners[2];
    assert_eq!(relay.policy.connect_timeout, Duration::from_secs(4));
    let Mode::Relay(r) = &relay.mode else {
        panic!("relay")
    };
    assert_eq!(r.tunnel_listen, "127.0.0.1:0".parse().expect("addr"));
    let public: Vec<&str> = r.public.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(public, ["ssh", "web"]);
    assert_eq!(r.tunnel.secret, a.tunnel.secret);
    assert_eq!(r.tunnel.secret_file, secret_path);
    assert_eq!(r.pair_timeout, Duration::from_secs(3));
    assert_eq!(
        (r.max_waiting, r.max_idle_tunnels, r.max_handshakes),
        (8, 9, 10)
    );
    assert_eq!(r.tunnel.policy.heartbeat_timeout, Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn agent_defaults_are_the_command_lines() {
    let dir = scratch("agent-defaults");
    write_secret(&dir);
    let text = "[[agent]]\nname = \"a\"\nrelay = \"r:1\"\nservice = { s = \"127.0.0.1:1\" }\nsecret_file = \"secret\"\n";
    let c = parse(text, &dir.join("x.toml")).unwrap_or_else(|e| panic!("{e}"));
    let Mode::Agent(a) = &c.listeners[0].mode else {
        panic!("agent")
    };
    assert_eq!((a.pool, a.exit_on_disconnect), (4, false));
    assert_eq!(a.backoff_max, Duration::from_secs(30));
    assert_eq!(a.tunnel.policy.handshake_timeout, Duration::from_secs(5));
    assert_eq!(a.tunnel.policy.heartbeat_interval, Duration::from_secs(20));
    assert_eq!(a.tunnel.policy.heartbeat_timeout, Duration::from_secs(60));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn render_parse_render_is_stable() {
    let dir = scratch("round-trip");
    write_secret(&dir);
    let path = dir.join("tcpbridge.toml");
    let first = parse(&all_modes("secret"), &path).unwrap_or_else(|e| panic!("{e}"));
    let text = render(&first);
    // Parsed again from elsewhere: the secret path is absolute.
    let second =
        parse(&text, Path::new("/elsewhere/copy.toml")).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let second = Config {
        source: first.source.clone(),
        ..second
    };
    assert_eq!(render(&second), text);
    assert_eq!(second.global, first.global);
    assert_eq!(second.listeners, first.listeners);
    assert!(text.contains("buffer_size = \"8KiB\"\n"), "{text}");
    assert!(text.contains("pool_budget = \"3200KiB\"\n"), "{text}");
    assert!(text.contains("half_close_timeout = \"1m\"\n"), "{text}");
    assert!(text.contains("\"web.v2\" = \"127.0.0.1:8080\""), "{text}");
    assert!(!text.contains("[defaults]"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

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
fn secret_files_are_read_relative_to_the_config_file() {
    let dir = scratch("secret");
    write_secret(&dir);
    let text = all_modes("missing-secret");
    let e = parse(&text, &dir.join("tcpbridge.toml")).expect_err("missing");
    assert_eq!((e.line, e.column), (13, 15), "{e}");
    let expected = std::path::absolute(dir.join("missing-secret")).expect("absolute");
    assert!(
        e.problem.starts_with(&format!(
            "invalid value '{}' for secret_file: cannot read:",
            expected.display()
        )),
        "{e}"
    );
    std::fs::write(dir.join("short"), "abc\n").expect("write");
    let e = parse(&all_modes("short"), &dir.join("tcpbridge.toml")).expect_err("short");
    assert!(e.problem.contains("at least"), "{e}");
    let absolute = dir.join("secret");
    let text = all_modes(&absolute.to_string_lossy());
    assert!(parse(&text, Path::new("/nowhere/x.toml")).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
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
