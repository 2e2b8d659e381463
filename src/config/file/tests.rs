//! Tests of config files: settings, defaults and overrides, and the errors (each with
//! its exact line and column). Listener-specific cases are in `tests_listeners.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::config::{LogFormat, Mode};
use crate::core::handover::ResetPolicy;

/// A fresh directory for one test (tests run in parallel).
pub(super) fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tcpbridge-config-file-{}-{tag}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Writes a valid secret (64 hex characters) as `dir/secret`.
pub(super) fn write_secret(dir: &Path) {
    std::fs::write(
        dir.join("secret"),
        format!("{}\n", "0123456789abcdef".repeat(4)),
    )
    .expect("write secret");
}

/// Parses `text` as `t.toml` (no secret files involved).
pub(super) fn ok(text: &str) -> Config {
    parse(text, Path::new("t.toml")).unwrap_or_else(|e| panic!("should parse: {e}"))
}

/// The error of parsing `text` as `t.toml`, as its one line.
pub(super) fn err(text: &str) -> String {
    match parse(text, Path::new("t.toml")) {
        Ok(_) => panic!("should fail:\n{text}"),
        Err(e) => {
            let line = e.to_string();
            assert!(!line.contains('\n'), "one line: {line:?}");
            line
        }
    }
}

/// A `[[relay]]` table with one public service `s` and the secret file `secret`, then
/// `extra` lines.
pub(super) fn relay(secret: &Path, extra: &str) -> String {
    format!(
        "[[relay]]\nname = \"r\"\ntunnel_listen = \"127.0.0.1:0\"\n\
         public = {{ s = \"127.0.0.1:0\" }}\nsecret_file = \"{}\"\n{extra}",
        secret.display()
    )
}

/// An `[[agent]]` table with one service `s` and the secret file `secret`, then `extra`
/// lines.
pub(super) fn agent(secret: &Path, extra: &str) -> String {
    format!(
        "[[agent]]\nname = \"a\"\nrelay = \"127.0.0.1:7000\"\n\
         service = {{ s = \"127.0.0.1:22\" }}\nsecret_file = \"{}\"\n{extra}",
        secret.display()
    )
}

pub(super) const FORWARD: &str =
    "[[forward]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nupstream = \"127.0.0.1:9\"\n";

#[test]
fn built_in_defaults_are_the_command_lines() {
    let c = ok(FORWARD);
    assert_eq!(c.source, crate::config::Source::File("t.toml".into()));
    let g = &c.global;
    assert_eq!(g.buffer_size, 16 << 10);
    assert_eq!(g.max_sessions, 1024);
    assert_eq!(g.pool_budget, 2048 * 16 * 1024);
    assert_eq!(g.drain_timeout, Duration::from_secs(10));
    assert_eq!(g.metrics_listen, None);
    assert_eq!(g.log_format, LogFormat::Human);
    assert_eq!(g.log_rate, 100);
    let l = &c.listeners[0];
    assert_eq!(l.name, "web");
    assert_eq!(l.max_sessions, None);
    assert_eq!(l.policy.connect_timeout, Duration::from_secs(5));
    assert_eq!(l.policy.idle_timeout, Duration::from_secs(300));
    assert_eq!(l.policy.half_close_timeout, Duration::from_secs(60));
    assert_eq!(
        l.policy.reset_flush_timeout,
        crate::config::RESET_FLUSH_TIMEOUT
    );
    assert_eq!(l.policy.reset_policy, ResetPolicy::Mirror);
    let Mode::Forward(f) = &l.mode else {
        panic!("forward")
    };
    assert_eq!(f.listen, vec!["127.0.0.1:0".parse().expect("addr")]);
    let addrs: Vec<std::net::SocketAddr> =
        f.upstreams.iter().flat_map(|u| u.addrs.clone()).collect();
    assert_eq!(addrs, vec!["127.0.0.1:9".parse().expect("addr")]);
}

#[test]
fn settings_and_overrides_apply() {
    let text = "\
buffer_size = 4096
max_sessions = 100
pool_budget = \"1MiB\"
drain_timeout = \"2s\"
metrics_listen = \"127.0.0.1:0\"
log_format = \"json\"
log_rate = 0

[defaults]
idle_timeout = \"1h\"
reset_policy = \"fin\"
max_sessions = 50

[[forward]]
name = \"a\"
listen = [\"127.0.0.1:0\", \"[::1]:0\"]
upstream = [\"127.0.0.1:1\", \"127.0.0.1:2\"]
idle_timeout = \"500ms\"
max_sessions = 10

[[forward]]
name = \"b\"
listen = \"127.0.0.1:0\"
upstream = \"127.0.0.1:3\"
";
    let c = ok(text);
    let g = &c.global;
    assert_eq!(g.buffer_size, 4096);
    assert_eq!(g.max_sessions, 100);
    assert_eq!(g.pool_budget, 256 * g.buffer_size);
    assert_eq!(g.drain_timeout, Duration::from_secs(2));
    assert_eq!(g.metrics_listen, Some("127.0.0.1:0".parse().expect("addr")));
    assert_eq!(g.log_format, LogFormat::Json);
    assert_eq!(g.log_rate, 0);
    let (a, b) = (&c.listeners[0], &c.listeners[1]);
    assert_eq!(a.policy.idle_timeout, Duration::from_millis(500));
    assert_eq!(b.policy.idle_timeout, Duration::from_secs(3600));
    assert_eq!(a.policy.reset_policy, ResetPolicy::Fin);
    assert_eq!(b.policy.reset_policy, ResetPolicy::Fin);
    assert_eq!(a.policy.connect_timeout, Duration::from_secs(5));
    assert_eq!((a.max_sessions, b.max_sessions), (Some(10), Some(50)));
    let Mode::Forward(f) = &a.mode else {
        panic!("forward")
    };
    assert_eq!(f.listen.len(), 2);
    assert_eq!(f.upstreams.len(), 2);
}

#[test]
fn unknown_keys_are_errors_at_the_key() {
    assert_eq!(
        err("buffer_size = 4096\nbufer = 1\n"),
        "t.toml:2:1: unknown key 'bufer' at the top level"
    );
    assert_eq!(
        err("[defaults]\n  frobnicate = 1\n"),
        "t.toml:2:3: unknown key 'frobnicate' in [defaults]"
    );
    assert_eq!(
        err(&format!("{FORWARD}idel_timeout = \"5m\"\n")),
        "t.toml:5:1: unknown key 'idel_timeout' in [[forward]] 'web' (did you mean 'idle_timeout'?)"
    );
    assert_eq!(
        err("[defaults]\nconect_timeout = \"1s\"\n"),
        "t.toml:2:1: unknown key 'conect_timeout' in [defaults] (did you mean 'connect_timeout'?)"
    );
    assert_eq!(
        err("[default]\n"),
        "t.toml:1:2: unknown key 'default' at the top level (did you mean 'defaults'?)"
    );
}

#[test]
fn keys_in_the_wrong_table_say_where_they_belong() {
    assert_eq!(
        err("idle_timeout = \"5m\"\n"),
        "t.toml:1:1: key 'idle_timeout' does not belong at the top level: \
         per-listener options go in [defaults] or a listener table"
    );
    assert_eq!(
        err("[defaults]\npair_timeout = \"5s\"\n"),
        "t.toml:2:1: key 'pair_timeout' does not belong in [defaults]: \
         it is an option of [[relay]] listeners"
    );
    assert_eq!(
        err("[defaults]\nbuffer_size = 1\n"),
        "t.toml:2:1: key 'buffer_size' does not belong in [defaults]: \
         process-wide settings go at the top, before any table"
    );
    assert_eq!(
        err(&format!("{FORWARD}heartbeat_interval = \"5s\"\n")),
        "t.toml:5:1: key 'heartbeat_interval' does not belong in [[forward]] 'web': \
         tunnel options are for [[relay]] and [[agent]] listeners only"
    );
    assert_eq!(
        err(&format!("{FORWARD}secret_file = \"x\"\n")),
        "t.toml:5:1: key 'secret_file' does not belong in [[forward]] 'web': \
         it is an option of [[relay]] and [[agent]] listeners"
    );
}

#[test]
fn bad_values_are_errors_at_the_value_with_the_parsers_words() {
    assert_eq!(
        err(&format!("{FORWARD}idle_timeout = \"5x\"\n")),
        "t.toml:5:16: invalid value '5x' for idle_timeout: unknown unit (use ms, s, m, h or d)"
    );
    assert_eq!(
        err("[defaults]\nconnect_timeout = \"0s\"\n"),
        "t.toml:2:19: invalid value '0s' for connect_timeout: must be greater than zero"
    );
    assert_eq!(
        err("buffer_size = \"16KB\"\n"),
        "t.toml:1:15: invalid value '16KB' for buffer_size: unknown unit (use B, KiB or MiB)"
    );
    assert_eq!(
        err("max_sessions = 0\n"),
        "t.toml:1:16: invalid value '0' for max_sessions: must be a whole number from 1 to 1000000"
    );
    assert_eq!(
        err("log_format = \"xml\"\n"),
        "t.toml:1:14: invalid value 'xml' for log_format: expected 'human' or 'json'"
    );
    assert_eq!(
        err("[[forward]]\nname = \"web\"\nlisten = \"1.2.3.4:99999\"\n"),
        "t.toml:3:10: invalid value '1.2.3.4:99999' for listen: port out of range (0-65535)"
    );
    assert_eq!(
        err("[[forward]]\nname = \"w\"\nlisten = \"127.0.0.1:0\"\nupstream = [\"127.0.0.1:1\", \"nohost\"]\n"),
        "t.toml:4:28: invalid value 'nohost' for upstream: missing port (expected HOST:PORT)"
    );
    assert_eq!(
        err(&format!("max_sessions = 10\n{FORWARD}max_sessions = 11\n")),
        "t.toml:6:16: invalid value '11' for max_sessions: must be a whole number from 1 to 10"
    );
    assert_eq!(
        err(&format!("{FORWARD}reset_policy = \"maybe\"\n")),
        "t.toml:5:16: invalid value 'maybe' for reset_policy: expected 'mirror' or 'fin'"
    );
}

#[test]
fn wrong_types_are_errors_at_the_value() {
    assert_eq!(
        err("max_sessions = \"x\"\n"),
        "t.toml:1:16: invalid type for max_sessions: expected an integer, found a string"
    );
    assert_eq!(
        err(&format!("{FORWARD}idle_timeout = 30\n")),
        "t.toml:5:16: invalid type for idle_timeout: expected a string, found an integer"
    );
    assert_eq!(
        err("defaults = 1\n"),
        "t.toml:1:12: invalid type for defaults: expected a table, found an integer"
    );
    assert_eq!(
        err("[forward]\nname = \"x\"\n"),
        "t.toml:1:1: forward must be an array of tables: write [[forward]]"
    );
    assert_eq!(
        err("[[forward]]\nname = \"w\"\nlisten = []\n"),
        "t.toml:3:10: listen must hold at least one address"
    );
}

#[test]
fn syntax_errors_have_a_position() {
    let e = err("max_sessions = 10\nbuffer_size = \n");
    assert!(e.starts_with("t.toml:2:15: invalid TOML: "), "{e}");
    let e = err("a = 1\na = 2\n");
    assert_eq!(e, "t.toml:2:1: invalid TOML: duplicate key");
    let e = err("[[forward]\n");
    assert!(e.starts_with("t.toml:1:"), "{e}");
}

#[test]
fn listener_names_are_required_valid_and_unique() {
    assert_eq!(
        err("[[forward]]\nlisten = \"127.0.0.1:0\"\n"),
        "t.toml:1:1: listener #1 ([[forward]]) has no name: add name = \"...\""
    );
    assert_eq!(
        err("[[forward]]\nname = \"a b\"\n"),
        "t.toml:2:8: invalid value 'a b' for name: must be 1-64 characters of A-Z a-z 0-9 . _ -"
    );
    let twice = format!(
        "{FORWARD}\n{}",
        FORWARD.replace("127.0.0.1:9", "127.0.0.1:8")
    );
    assert_eq!(
        err(&twice),
        "t.toml:7:8: listener name 'web' is already used on line 2"
    );
}

#[test]
fn missing_keys_are_errors_at_the_header() {
    assert_eq!(
        err("\n[[forward]]\nname = \"w\"\nlisten = \"127.0.0.1:0\"\n"),
        "t.toml:2:1: missing key 'upstream' in [[forward]] 'w'"
    );
}

#[test]
fn a_file_needs_a_listener() {
    assert_eq!(
        err(""),
        "t.toml:1:1: no listener: add a [[forward]], [[relay]], [[agent]], [[connect]] or [[socks]] table"
    );
    assert_eq!(
        err("max_sessions = 5\n[defaults]\nidle_timeout = \"1m\"\n"),
        "t.toml:1:1: no listener: add a [[forward]], [[relay]], [[agent]], [[connect]] or [[socks]] table"
    );
}

#[test]
fn oversized_text_is_refused() {
    let text = format!("# {}\n", "x".repeat(MAX_FILE_SIZE));
    assert_eq!(err(&text), "t.toml:1:1: the file is larger than 1 MiB");
}

#[test]
fn columns_count_characters() {
    assert_eq!(line_column("é = 1\nab", 8), (2, 2));
    assert_eq!(line_column("abc", 0), (1, 1));
    assert_eq!(line_column("abc", 99), (1, 4));
    assert_eq!(
        err("# é\n\"é\" = 1\n"),
        "t.toml:2:1: unknown key 'é' at the top level"
    );
    assert_eq!(line_column("é = 1", 4), (1, 4));
}

#[test]
fn problems_stay_on_one_line() {
    let e = err(&format!("{FORWARD}idle_timeout = \"\"\"\n5\nx\"\"\"\n"));
    assert_eq!(
        e,
        "t.toml:5:16: invalid value '5\\nx' for idle_timeout: unknown unit (use ms, s, m, h or d)"
    );
}

#[test]
fn load_reads_the_file_or_says_why_not() {
    let dir = scratch("load");
    let path = dir.join("tcpbridge.toml");
    std::fs::write(&path, FORWARD).expect("write");
    let c = load(&path).expect("loads");
    assert_eq!(c.source, crate::config::Source::File(path.clone()));
    let missing = dir.join("missing.toml");
    let e = load(&missing).expect_err("missing");
    assert_eq!(
        e.to_string(),
        format!(
            "{}:1:1: cannot read: No such file or directory",
            missing.display()
        )
    );
    std::fs::write(&path, b"# ok\nname = \"\xff\"\n").expect("write");
    let e = load(&path).expect_err("not utf-8");
    assert_eq!((e.line, e.column), (2, 9));
    assert_eq!(e.problem, "not UTF-8 text");
    std::fs::write(&path, vec![b'#'; MAX_FILE_SIZE + 1]).expect("write");
    let e = load(&path).expect_err("too big");
    assert_eq!(e.problem, "the file is larger than 1 MiB");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_input_panics() {
    let inputs = [
        "",
        "\u{0}",
        "[",
        "[[",
        "[[forward]]",
        "[[forward]]\nname = 1",
        "[[forward]]\nname = \"\"",
        "forward = []",
        "forward = [1]",
        "forward = [{}]",
        "relay = [{ name = \"r\", public = 3 }]",
        "agent = [{ name = \"a\", relay = \"[::1\", service = {} }]",
        "max_sessions = 99999999999999999999999999",
        "max_sessions = -1",
        "max_sessions = 0x10",
        "buffer_size = 1e9",
        "log_rate = 1979-05-27",
        "pool_budget = \"99999999999999999999GiB\"",
        "[defaults]\nmax_sessions = 2000",
        "[defaults.x]\ny = 1",
        "a.b.c.d = 1",
        "\"\u{202e}\" = 1",
    ];
    for input in inputs {
        let _ = parse(input, Path::new("t.toml"));
    }
}
