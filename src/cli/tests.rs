//! The command line against config files and the docs: for every option of every mode, a
//! flag and its file key give the same configuration for the same value (defaults, bounds
//! and meaning included) or the same problem; the README's option tables name every flag
//! with the table's default.

use std::path::{Path, PathBuf};

use super::*;
use tcpbridge::config::meta::{Bound, Scope};
use tcpbridge::config::{file, MAX_POOL, MAX_SESSIONS};

/// A valid secret file of its own for each caller (tests run in parallel: a file
/// rewritten by one while another reads it would read empty).
pub(super) fn secret() -> PathBuf {
    scratch_file("secret", &"0123456789abcdef".repeat(4), 0o600)
}

/// A file of its own for each caller holding `text`, with permission bits `mode`.
pub(super) fn scratch_file(tag: &str, text: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tcpbridge-cli-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(format!("{tag}-{n}"));
    std::fs::write(&path, text).expect("write scratch file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

/// The options a mode needs, as (key, value written on the command line).
pub(super) fn required(mode: &str, secret: &Path) -> Vec<(&'static str, String)> {
    let secret = secret.display().to_string();
    match mode {
        "forward" => vec![
            ("listen", "127.0.0.1:0".into()),
            ("upstream", "127.0.0.1:9".into()),
        ],
        "relay" => vec![
            ("tunnel_listen", "127.0.0.1:0".into()),
            ("public", "s=127.0.0.1:0".into()),
            ("secret_file", secret),
        ],
        "connect" | "socks" => vec![("listen", "127.0.0.1:0".into())],
        _ => vec![
            ("relay", "relay.example:7000".into()),
            ("service", "s=127.0.0.1:22".into()),
            ("secret_file", secret),
        ],
    }
}

/// The same value as a TOML value, for `meta`'s kind.
fn toml_value(meta: &Meta, text: &str) -> String {
    match meta.kind {
        Kind::Count { .. } | Kind::Rate => text.to_string(),
        Kind::Switch => "true".into(),
        Kind::Services { .. } => {
            let (name, addr) = text.split_once('=').expect("NAME=ADDR");
            format!("{{ \"{name}\" = \"{addr}\" }}")
        }
        _ => format!("\"{text}\""),
    }
}

/// The mode's configuration from flags: `Ok` or the problem.
pub(super) fn from_flags(mode: &str, given: &[(&'static str, String)]) -> Result<Config, String> {
    let mut argv = vec!["tcpbridge".to_string(), mode.to_string()];
    for (key, value) in given {
        let meta = options::all()
            .into_iter()
            .find(|m| m.key == *key && m.flag)
            .expect("a flag");
        argv.push(meta.flag_name());
        if meta.kind != Kind::Switch {
            argv.push(value.clone());
        }
    }
    let matches = command()
        .try_get_matches_from(&argv)
        .map_err(|e| one_line(&e.render().to_string()))?;
    match task(&matches)? {
        Task::Run(config) => Ok(config),
        other => panic!("{argv:?}: {other:?}"),
    }
}

/// The mode's configuration from a file with one listener named after the mode, the
/// process-wide keys at the top: `Ok` or the problem (without its position).
pub(super) fn from_file(mode: &str, given: &[(&'static str, String)]) -> Result<Config, String> {
    let mut top = String::new();
    let mut own = format!("[[{mode}]]\nname = \"{mode}\"\n");
    for (key, value) in given {
        let meta = options::all()
            .into_iter()
            .find(|m| m.key == *key && m.flag)
            .expect("an option");
        let line = format!("{key} = {}\n", toml_value(meta, value));
        if meta.scope == Scope::Global {
            top.push_str(&line);
        } else {
            own.push_str(&line);
        }
    }
    let text = format!("{top}\n{own}");
    file::parse(&text, Path::new("/t.toml")).map_err(|e| e.problem)
}

/// Values to try for an option: valid ones at its bounds and invalid ones past them.
fn samples(meta: &Meta, secret: &Path) -> Vec<String> {
    let listen = |port: u32| format!("127.0.0.1:{port}");
    match meta.kind {
        Kind::Keepalive => ["7s:3s:5", "off", "60s:0s:4", "1:2", "60s:15s:200"]
            .map(String::from)
            .to_vec(),
        Kind::DurationOrOff => ["31s", "off", "5x", "8d"].map(String::from).to_vec(),
        Kind::Duration => ["500ms", "7d", "8d", "0s", "5x", "30"]
            .map(String::from)
            .to_vec(),
        Kind::Size { max } => {
            let mut v = vec!["1".into(), "16KiB".into(), "0".into(), "16KB".into()];
            if max < usize::MAX {
                v.extend([max.to_string(), (max + 1).to_string()]);
            }
            v
        }
        Kind::Count { max } => {
            let max = match max {
                Bound::Fixed(n) => n,
                Bound::Sessions => MAX_SESSIONS,
            };
            vec![
                "1".into(),
                "0".into(),
                max.to_string(),
                (max + 1).to_string(),
            ]
        }
        Kind::Rate => ["0", "1000000", "1000001"].map(String::from).to_vec(),
        Kind::Word(words) => {
            let mut v: Vec<String> = words.iter().map(|w| w.to_string()).collect();
            v.push("maybe".into());
            v
        }
        Kind::Switch => vec!["on".into()],
        Kind::Blocks => ["10.0.0.0/8", "::1", "10.1.0.0/8", "nohost"]
            .map(String::from)
            .to_vec(),
        Kind::Address { .. } | Kind::Addresses { .. } => {
            vec![
                listen(7391),
                listen(99999),
                "[::1]:7392".into(),
                "nohost".into(),
            ]
        }
        Kind::Services { .. } => vec![
            "x=127.0.0.1:7393".into(),
            "a b=127.0.0.1:1".into(),
            "x=127.0.0.1:0".into(),
        ],
        Kind::HostPort => ["r.example:1", "r.example", "[::1:80"]
            .map(String::from)
            .to_vec(),
        Kind::Rules => [
            "10.0.0.0/8",
            "*.example.com:80-91,443",
            "[::1]:22",
            "a..b",
            "10.0.0.0/33",
            "x:0",
        ]
        .map(String::from)
        .to_vec(),
        Kind::CredentialsFile => vec![
            scratch_file("users", "alice:wonderland\n", 0o600)
                .display()
                .to_string(),
            scratch_file("open", "alice:wonderland\n", 0o644)
                .display()
                .to_string(),
            scratch_file("bad", "alice\n", 0o600).display().to_string(),
            "/nonexistent/users".into(),
        ],
        Kind::SecretFile => vec![
            secret.display().to_string(),
            "/nonexistent/secret".into(),
            "/dev/zero".into(),
        ],
        Kind::PemFile => vec![
            secret.display().to_string(),
            "/nonexistent/relay.pem".into(),
            "/dev/zero".into(),
        ],
        Kind::Fingerprint => vec![format!("sha256:{}", "ab".repeat(32)), "sha256:zz".into()],
        Kind::ServerName => ["relay.example", "a b", ""].map(String::from).to_vec(),
        Kind::Name => Vec::new(),
    }
}

/// Compares one run of both front ends.
pub(super) fn agree(
    mode: &str,
    given: &[(&'static str, String)],
    what: &str,
) -> Result<(), String> {
    let flags = from_flags(mode, given);
    let file = from_file(mode, given);
    match (&flags, &file) {
        (Ok(a), Ok(b)) if a.global == b.global && a.listeners == b.listeners => Ok(()),
        (Err(a), Err(b)) => {
            // Same problem, the option named as each front end names it.
            // Longest flags first: `--warm` is a prefix of `--warm-max-age`.
            let mut a = a.clone();
            let mut metas = options::all();
            metas.sort_by_key(|m| std::cmp::Reverse(m.long.len()));
            for m in metas {
                a = a.replace(&m.flag_name(), m.key);
            }
            // A file names one service of a list `service.NAME`; a flag, `--service`.
            let b = b
                .replace("service.x", "service")
                .replace("public.x", "public");
            if a == b {
                Ok(())
            } else {
                Err(format!("{what}: flags say {a:?}, the file says {b:?}"))
            }
        }
        _ => Err(format!("{what}: flags {flags:?}\n  file {file:?}")),
    }
}

#[test]
fn every_flag_agrees_with_its_file_key() {
    let secret = secret();
    let mut failures = Vec::new();
    let mut cases = 0;
    for mode in MODES {
        let base = required(mode, &secret);
        if let Err(e) = agree(mode, &base, &format!("{mode} with defaults only")) {
            failures.push(e);
        }
        for meta in flags_of(mode) {
            for value in samples(meta, &secret) {
                let mut given: Vec<_> = base
                    .iter()
                    .filter(|(k, _)| *k != meta.key)
                    .cloned()
                    .collect();
                given.push((meta.key, value.clone()));
                cases += 1;
                let what = format!("{mode} {}={value}", meta.key);
                if let Err(e) = agree(mode, &given, &what) {
                    failures.push(e);
                }
            }
        }
    }
    assert!(cases > 150, "only {cases} cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_heartbeat_cross_check_is_the_same_on_both_sides() {
    let secret = secret();
    let mut given = required("relay", &secret);
    given.push(("heartbeat_interval", "70s".into()));
    agree("relay", &given, "interval over the default timeout").expect("agree");
    let problem = from_flags("relay", &given).expect_err("refused");
    assert_eq!(
        problem,
        "invalid value '70s' for --heartbeat-interval: must be shorter than --heartbeat-timeout (60s)"
    );
    given.push(("heartbeat_timeout", "10s".into()));
    agree("relay", &given, "both given").expect("agree");
}

#[test]
fn services_are_name_equals_address() {
    let secret = secret();
    let mut given = required("relay", &secret);
    given.retain(|(k, _)| *k != "public");
    given.push(("public", "ssh".into()));
    assert_eq!(
        from_flags("relay", &given).expect_err("no ="),
        "invalid value 'ssh' for --public: expected NAME=HOST:PORT"
    );
    given.pop();
    given.push(("public", "ssh=127.0.0.1:0".into()));
    given.push(("public", "ssh=127.0.0.1:0".into()));
    assert_eq!(
        from_flags("relay", &given).expect_err("twice"),
        "invalid value 'ssh=127.0.0.1:0' for --public: service 'ssh' is given twice"
    );
}

#[test]
fn the_pool_and_session_bounds_come_from_the_table() {
    let secret = secret();
    let mut given = required("agent", &secret);
    given.push(("pool", (MAX_POOL + 1).to_string()));
    assert!(from_flags("agent", &given)
        .expect_err("over")
        .ends_with(&format!("must be a whole number from 1 to {MAX_POOL}")));
}

#[test]
fn help_lists_every_flag_with_its_default() {
    for mode in MODES {
        let mut cmd = command();
        let sub = cmd.find_subcommand_mut(mode).expect("subcommand");
        let help = sub.render_long_help().to_string();
        for meta in flags_of(mode) {
            assert!(help.contains(&meta.flag_name()), "{mode}: {}", meta.key);
            if let Some(default) = meta.shown_default() {
                assert!(
                    help.contains(&format!("[default: {default}]")),
                    "{mode}: {}",
                    meta.key
                );
            }
        }
    }
}

/// The default column of a README option table row.
fn readme_default(meta: &Meta) -> String {
    match meta.fallback {
        Fallback::Required => "required".into(),
        Fallback::Absent => "off".into(),
        Fallback::Value(_) if meta.kind == Kind::Switch => "off".into(),
        Fallback::Value(v) => format!("`{v}`"),
        Fallback::Derived(text) => text.replace(" x ", " × "),
    }
}

#[test]
fn the_readme_option_tables_agree_with_the_table() {
    let readme = include_str!("../../README.md");
    let mut rows = 0;
    for line in readme.lines().filter(|l| l.starts_with("| `--")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let flag = cells[0]
            .trim_start_matches("| `")
            .split([' ', '`'])
            .next()
            .unwrap_or_default();
        // Rows of the semantics table start with a flag too: they have no default cell.
        // A flag of several modes (`--max-handshakes`) may differ in its default.
        let metas: Vec<&Meta> = options::all()
            .into_iter()
            .filter(|m| m.flag && m.flag_name() == flag)
            .collect();
        assert!(
            !metas.is_empty(),
            "README names {flag}, which is not an option"
        );
        if cells[0].ends_with('`') {
            rows += 1;
            let defaults: Vec<String> = metas.iter().map(|m| readme_default(m)).collect();
            assert!(
                defaults.iter().any(|d| d == cells[1]),
                "README's default of {flag}: {} is none of {defaults:?}",
                cells[1]
            );
        }
    }
    assert!(rows >= 25, "{rows} option rows");
    for meta in options::all().into_iter().filter(|m| m.flag) {
        assert!(
            readme.contains(&format!("`{}", meta.flag_name())),
            "README does not name {}",
            meta.flag_name()
        );
    }
}

/// The one line `main` prints for a command line clap refuses, if it is a misplaced flag.
pub(super) fn misplaced_line(argv: &[&str]) -> Option<String> {
    let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
    let e = command()
        .try_get_matches_from(&argv)
        .expect_err("refused by clap");
    misplaced(&e, &argv)
}

#[test]
fn a_flag_of_another_mode_says_which_mode_has_it_and_why() {
    let relay_reason = "error: --reuse-port is for forward mode: relay pairs an agent's \
                        tunnel with a client's connection, both must reach the same process";
    for argv in [
        &[
            "tcpbridge",
            "relay",
            "--tunnel-listen",
            "127.0.0.1:0",
            "--reuse-port",
        ][..],
        &["tcpbridge", "-q", "relay", "--reuse-port=true"],
    ] {
        let line = misplaced_line(argv).map(|l| format!("error: {l}"));
        assert_eq!(line.as_deref(), Some(relay_reason), "{argv:?}");
    }
    assert_eq!(
        misplaced_line(&["tcpbridge", "agent", "--reuse-port"]).as_deref(),
        Some("--reuse-port is for forward mode: an agent listens on no port")
    );
    assert_eq!(
        misplaced_line(&["tcpbridge", "forward", "--pool", "3"]).as_deref(),
        Some("--pool is for agent mode, not forward (see 'tcpbridge forward --help')")
    );
    assert_eq!(
        misplaced_line(&["tcpbridge", "forward", "--secret-file", "s"]).as_deref(),
        Some("--secret-file is for relay and agent modes, not forward (see 'tcpbridge forward --help')")
    );
    // Not a flag of any mode: clap's own line.
    assert_eq!(misplaced_line(&["tcpbridge", "forward", "--bogus"]), None);
}

#[test]
fn reuse_port_is_a_switch_of_forward_in_both_front_ends() {
    let secret = secret();
    let mut given = required("forward", &secret);
    let off = from_flags("forward", &given).expect("valid");
    given.push(("reuse_port", String::new()));
    let on = (from_flags("forward", &given), from_file("forward", &given));
    for config in [on.0.expect("flags"), on.1.expect("file")] {
        assert!(config.listeners[0].mode.reuse_port());
    }
    assert!(!off.listeners[0].mode.reuse_port());
}
