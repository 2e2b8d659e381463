//! Tests of `[[connect]]` and `[[socks]]` tables: their options and defaults, the
//! destination rules and allowed clients, the credentials file (its mode, its lines),
//! the refusal of an open proxy on a non-loopback address, misplaced keys, and the
//! render -> parse round trip.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::tests::{err, ok, scratch};
use super::*;
use crate::config::{Dynamic, Mode};
use crate::core::policy::{Cidr, Rule};

/// A table of `mode` named `p` listening on `listen`, with `more` lines.
fn table(mode: &str, listen: &str, more: &str) -> String {
    format!("[[{mode}]]\nname = \"p\"\nlisten = \"{listen}\"\n{more}")
}

/// The options of the only listener of `c`, and its mode's word.
fn dynamic(c: &Config) -> (&'static str, &Dynamic) {
    let mode = &c.listeners[0].mode;
    (mode.word(), mode.dynamic().expect("connect or socks"))
}

/// Writes `text` as `dir/name` with permission bits `mode`; gives its path.
fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

fn rules(texts: &[&str]) -> Vec<Rule> {
    texts.iter().map(|t| t.parse().expect("rule")).collect()
}

#[test]
fn both_modes_have_the_documented_defaults() {
    for mode in ["connect", "socks"] {
        let c = ok(&table(mode, "127.0.0.1:0", ""));
        let (word, d) = dynamic(&c);
        assert_eq!(word, mode);
        assert_eq!(
            d,
            &Dynamic {
                listen: vec!["127.0.0.1:0".parse().expect("addr")],
                ..Dynamic::default()
            }
        );
        assert_eq!(d.handshake_timeout, Duration::from_secs(10));
        assert_eq!(d.resolve_timeout, Duration::from_secs(5));
        assert_eq!((d.max_handshakes, d.max_sessions_per_client), (256, 128));
        // The session options of every listener apply.
        assert_eq!(c.listeners[0].policy.idle_timeout, Duration::from_secs(300));
    }
}

#[test]
fn every_option_is_read_from_a_table() {
    let more = "\
allow = [\"10.0.0.0/8\", \"*.example.com:80-91,443\", \"[::1]:22\"]
deny = \"evil.example\"
client_allow = [\"192.168.0.0/16\", \"::1\"]
handshake_timeout = \"3s\"
resolve_timeout = \"2s\"
max_handshakes = 7
max_sessions_per_client = 3
idle_timeout = \"1m\"
max_sessions = 9
";
    let c = ok(&table("socks", "0.0.0.0:0", more));
    let (_, d) = dynamic(&c);
    assert_eq!(
        d.allow,
        rules(&["10.0.0.0/8", "*.example.com:80-91,443", "[::1]:22"])
    );
    assert_eq!(d.deny, rules(&["evil.example"]));
    let blocks: Vec<Cidr> = ["192.168.0.0/16", "::1"]
        .iter()
        .map(|t| t.parse().expect("cidr"))
        .collect();
    assert_eq!(d.client_allow, blocks);
    assert_eq!(d.handshake_timeout, Duration::from_secs(3));
    assert_eq!(d.resolve_timeout, Duration::from_secs(2));
    assert_eq!((d.max_handshakes, d.max_sessions_per_client), (7, 3));
    assert_eq!(c.listeners[0].max_sessions, Some(9));
    assert_eq!(c.listeners[0].policy.idle_timeout, Duration::from_secs(60));
}

#[test]
fn defaults_apply_to_connect_and_socks_listeners_too() {
    let text = format!(
        "[defaults]\nidle_timeout = \"2m\"\nhandshake_timeout = \"1s\"\n\n{}",
        table("connect", "127.0.0.1:0", "")
    );
    let c = ok(&text);
    assert_eq!(c.listeners[0].policy.idle_timeout, Duration::from_secs(120));
    // `handshake_timeout` in [defaults] is a default for every listener that has it.
    assert_eq!(dynamic(&c).1.handshake_timeout, Duration::from_secs(1));
    let own = format!(
        "[defaults]\nhandshake_timeout = \"1s\"\n\n{}",
        table("socks", "127.0.0.1:0", "handshake_timeout = \"4s\"\n")
    );
    assert_eq!(
        dynamic(&ok(&own)).1.handshake_timeout,
        Duration::from_secs(4)
    );
}

#[test]
fn bad_values_name_the_key_and_the_value() {
    let cases = [
        ("allow = \"a..b\"", "t.toml:4:9: invalid value 'a..b' for allow: the name has an empty label"),
        ("deny = [\"10.0.0.0/33\"]", "t.toml:4:9: invalid value '10.0.0.0/33' for deny: bad address block:"),
        ("deny = []", "t.toml:4:8: deny must hold at least one rule"),
        ("allow = 5", "t.toml:4:9: invalid type for allow: expected a string or an array of strings, found an integer"),
        ("client_allow = \"10.0.0.0/x\"", "t.toml:4:16: invalid value '10.0.0.0/x' for client_allow:"),
        ("handshake_timeout = \"0s\"", "t.toml:4:21: invalid value '0s' for handshake_timeout: must be greater than zero"),
        ("resolve_timeout = \"5x\"", "t.toml:4:19: invalid value '5x' for resolve_timeout: unknown unit"),
        ("max_handshakes = 0", "t.toml:4:18: invalid value '0' for max_handshakes: must be a whole number from 1"),
        ("max_sessions_per_client = \"a\"", "t.toml:4:27: invalid type for max_sessions_per_client: expected an integer, found a string"),
        ("credentials_file = 3", "t.toml:4:20: invalid type for credentials_file: expected a string, found an integer"),
    ];
    for mode in ["connect", "socks"] {
        for (line, want) in cases {
            let got = err(&table(mode, "127.0.0.1:0", &format!("{line}\n")));
            assert!(got.starts_with(want), "{line}: {got}");
        }
    }
}

#[test]
fn a_non_loopback_listener_needs_credentials_or_allowed_clients() {
    for mode in ["connect", "socks"] {
        let open = format!(
            "t.toml:3:10: listen 0.0.0.0:1080: a {mode} listener on a non-loopback address \
             needs credentials_file or client_allow (or listen on 127.0.0.1)"
        );
        assert_eq!(err(&table(mode, "0.0.0.0:1080", "")), open);
        // Among several addresses, the first open one is named.
        let text = format!("[[{mode}]]\nname = \"p\"\nlisten = [\"127.0.0.1:0\", \"[::]:0\"]\n");
        assert_eq!(
            err(&text),
            format!(
                "t.toml:3:26: listen [::]:0: a {mode} listener on a non-loopback address \
                 needs credentials_file or client_allow (or listen on 127.0.0.1)"
            )
        );
        let allowed = table(mode, "0.0.0.0:0", "client_allow = \"10.0.0.0/8\"\n");
        assert_eq!(dynamic(&ok(&allowed)).1.client_allow.len(), 1);
        for loopback in [
            "127.0.0.1:0",
            "[::1]:0",
            "127.0.0.2:0",
            "[::ffff:127.0.0.1]:0",
        ] {
            ok(&table(mode, loopback, ""));
        }
    }
    // With credentials: accepted.
    let dir = scratch("dynamic-open");
    write(&dir, "users", "alice:wonderland\n", 0o600);
    let text = table("socks", "0.0.0.0:0", "credentials_file = \"users\"\n");
    let c = parse(&text, &dir.join("t.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dynamic(&c).1.credentials.len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn credentials_files_are_read_relative_to_the_config_file_and_checked() {
    let dir = scratch("dynamic-credentials");
    let config = dir.join("t.toml");
    let users = write(
        &dir,
        "users",
        "# users\nalice:wonderland\n\nbob:builder\n",
        0o600,
    );
    let text = |file: &str| {
        table(
            "connect",
            "127.0.0.1:0",
            &format!("credentials_file = \"{file}\"\n"),
        )
    };
    let c = parse(&text("users"), &config).unwrap_or_else(|e| panic!("{e}"));
    let (_, d) = dynamic(&c);
    let absolute = std::path::absolute(&users).expect("absolute");
    assert_eq!(d.credentials_file.as_deref(), absolute.to_str());
    assert_eq!(d.credentials.len(), 2);
    assert!(d.credentials.verify(b"bob", b"builder"));
    assert!(!d.credentials.verify(b"bob", b"wonderland"));
    let problem = |file: &str| match parse(&text(file), &config) {
        Ok(_) => panic!("{file} should be refused"),
        Err(e) => e.problem,
    };
    let shown = |name: &str| dir.join(name).display().to_string();
    write(&dir, "open", "alice:wonderland\n", 0o644);
    assert_eq!(
        problem("open"),
        format!(
            "credentials_file: {} is readable by others (mode 0644): chmod 600 it",
            shown("open")
        )
    );
    write(&dir, "group", "alice:wonderland\n", 0o640);
    assert!(problem("group").ends_with("(mode 0640): chmod 600 it"));
    assert_eq!(
        problem("missing"),
        format!(
            "credentials_file: cannot read {}: no such file or directory",
            shown("missing")
        )
    );
    write(&dir, "bad", "alice:wonderland\nbob\n", 0o600);
    assert_eq!(
        problem("bad"),
        format!(
            "credentials_file: {}:2: expected user:password",
            shown("bad")
        )
    );
    write(&dir, "empty", "# nobody\n", 0o600);
    assert_eq!(
        problem("empty"),
        format!(
            "credentials_file: {}: no user:password line",
            shown("empty")
        )
    );
    assert_eq!(
        problem("/dev/null"),
        "credentials_file: /dev/null is not a regular file"
    );
    // Every other mistake is reported before the file system is touched.
    let both = table(
        "connect",
        "127.0.0.1:0",
        "credentials_file = \"missing\"\nmax_handshakes = 0\n",
    );
    let e = parse(&both, &config).expect_err("refused");
    assert!(e.problem.contains("max_handshakes"), "{}", e.problem);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn misplaced_and_misspelled_keys_are_explained() {
    assert_eq!(
        err(&table(
            "connect",
            "127.0.0.1:0",
            "upstream = \"127.0.0.1:9\"\n"
        )),
        "t.toml:4:1: key 'upstream' does not belong in [[connect]] 'p': \
         it is an option of [[forward]] listeners"
    );
    assert_eq!(
        err(&table(
            "socks",
            "127.0.0.1:0",
            "heartbeat_interval = \"5s\"\n"
        )),
        "t.toml:4:1: key 'heartbeat_interval' does not belong in [[socks]] 'p': \
         tunnel options are for [[relay]] and [[agent]] listeners only"
    );
    assert_eq!(
        err(&table("socks", "127.0.0.1:0", "secret_file = \"s\"\n")),
        "t.toml:4:1: key 'secret_file' does not belong in [[socks]] 'p': \
         it is an option of [[relay]] and [[agent]] listeners"
    );
    assert_eq!(
        err(&table(
            "connect",
            "127.0.0.1:0",
            "credential_file = \"s\"\n"
        )),
        "t.toml:4:1: unknown key 'credential_file' in [[connect]] 'p' \
         (did you mean 'credentials_file'?)"
    );
    assert_eq!(
        err(&table(
            "socks",
            "127.0.0.1:0",
            "max_session_per_client = 1\n"
        )),
        "t.toml:4:1: unknown key 'max_session_per_client' in [[socks]] 'p' \
         (did you mean 'max_sessions_per_client'?)"
    );
    let forward =
        "[[forward]]\nname = \"f\"\nlisten = \"127.0.0.1:0\"\nupstream = \"127.0.0.1:9\"\n";
    assert_eq!(
        err(&format!("{forward}client_allow = \"10.0.0.0/8\"\n")),
        "t.toml:5:1: key 'client_allow' does not belong in [[forward]] 'f': \
         it is an option of [[connect]] and [[socks]] listeners"
    );
    assert_eq!(
        err(&format!("{forward}handshake_timeout = \"1s\"\n")),
        "t.toml:5:1: key 'handshake_timeout' does not belong in [[forward]] 'f': \
         it is an option of [[relay]], [[agent]], [[connect]] and [[socks]] listeners"
    );
    assert_eq!(
        err("allow = \"10.0.0.0/8\"\n"),
        "t.toml:1:1: key 'allow' does not belong at the top level: \
         it is an option of [[connect]] and [[socks]] listeners"
    );
}

#[test]
fn render_parse_is_the_same_configuration() {
    let dir = scratch("dynamic-round-trip");
    write(&dir, "users", "alice:wonderland\n", 0o600);
    let text = format!(
        "{}\n{}",
        table(
            "connect",
            "0.0.0.0:0",
            "credentials_file = \"users\"\nallow = [\"10.0.0.0/8\", \"*.Example.com.:443,80-91\", \
             \"[::1]:22\", \"[fd00::]/8:1-3\", \"host-1.internal\"]\nmax_handshakes = 3\n"
        ),
        "[[socks]]\nname = \"s\"\nlisten = [\"127.0.0.1:0\", \"[::1]:0\"]\n\
         deny = \"10.1.2.3\"\nclient_allow = \"::ffff:10.0.0.0/104\"\n"
    );
    let first = parse(&text, &dir.join("t.toml")).unwrap_or_else(|e| panic!("{e}"));
    let rendered = render(&first);
    assert!(!rendered.contains("wonderland"), "{rendered}");
    assert!(rendered.contains("credentials_file = \"/"), "{rendered}");
    assert!(
        rendered.contains("max_sessions_per_client = 128\n"),
        "{rendered}"
    );
    let second = parse(&rendered, Path::new("/elsewhere/copy.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{rendered}"));
    assert_eq!(second.listeners, first.listeners);
    assert_eq!(
        render(&Config {
            source: first.source.clone(),
            ..second
        }),
        rendered
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reload_keeps_the_state_of_a_listener_of_the_same_mode() {
    use crate::config::reload::keeps_state;
    let a = ok(&table("connect", "127.0.0.1:0", ""));
    let b = ok(&table("connect", "127.0.0.1:0", "deny = \"10.0.0.0/8\"\n"));
    let s = ok(&table("socks", "127.0.0.1:0", ""));
    let (a, b, s) = (
        &a.listeners[0].mode,
        &b.listeners[0].mode,
        &s.listeners[0].mode,
    );
    assert!(keeps_state(a, b) && keeps_state(s, s));
    assert!(!keeps_state(a, s) && !keeps_state(s, a));
    assert!(matches!(a, Mode::Connect(_)) && matches!(s, Mode::Socks(_)));
}

#[test]
fn a_reload_reads_the_credentials_file_again() {
    use crate::config::reload::keeps_state;
    let dir = scratch("dynamic-reload");
    let config = dir.join("t.toml");
    let text = table("socks", "0.0.0.0:0", "credentials_file = \"users\"\n");
    write(&dir, "users", "alice:wonderland\n", 0o600);
    let before = parse(&text, &config).unwrap_or_else(|e| panic!("{e}"));
    write(&dir, "users", "alice:changed\nbob:builder\n", 0o600);
    let after = parse(&text, &config).unwrap_or_else(|e| panic!("{e}"));
    let (old, new) = (&before.listeners[0].mode, &after.listeners[0].mode);
    let users = |m: &Mode| {
        m.dynamic()
            .map(|d| d.credentials.clone())
            .unwrap_or_default()
    };
    assert!(users(old).verify(b"alice", b"wonderland"));
    assert!(!users(new).verify(b"alice", b"wonderland"));
    assert!(users(new).verify(b"alice", b"changed") && users(new).len() == 2);
    assert!(keeps_state(old, new), "new users apply in place");
    // Made readable by others meanwhile: the reload is refused, naming the file.
    write(&dir, "users", "alice:changed\n", 0o644);
    let e = parse(&text, &config).expect_err("refused");
    assert!(
        e.problem.ends_with("(mode 0644): chmod 600 it"),
        "{}",
        e.problem
    );
    let _ = std::fs::remove_dir_all(&dir);
}
