//! Tests of config files with every mode in one file: relay and agent tables, secret
//! files, file order, and the render -> parse -> render round trip. Their relay and agent
//! have TLS tunnels (the default), so they run in builds with the `tls` feature.

use std::path::Path;
use std::time::Duration;

use super::tests::{scratch, write_secret};
use super::*;
use crate::config::Mode;

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
