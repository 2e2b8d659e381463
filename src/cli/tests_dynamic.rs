//! The `connect` and `socks` subcommands: their flags against their file keys, the
//! refusal of an open proxy on a non-loopback address, bad values on one line, misplaced
//! flags, and their help.

use super::tests::{agree, from_file, from_flags, misplaced_line, scratch_file};
use super::*;

const DYNAMIC_MODES: [&str; 2] = ["connect", "socks"];

/// `--listen ADDR` and more flags, as (key, value).
fn given(listen: &str, more: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    std::iter::once(("listen", listen))
        .chain(more.iter().copied())
        .map(|(k, v)| (k, v.to_string()))
        .collect()
}

#[test]
fn both_subcommands_exist_with_their_about_and_options() {
    for (mode, about) in DYNAMIC_MODES
        .into_iter()
        .zip(["HTTP CONNECT proxy", "SOCKS5 proxy"])
    {
        let mut cmd = command();
        let sub = cmd.find_subcommand_mut(mode).expect("subcommand");
        let help = sub.render_long_help().to_string();
        assert!(help.starts_with(about), "{help}");
        for flag in [
            "--listen",
            "--allow",
            "--deny",
            "--client-allow",
            "--credentials-file",
        ] {
            assert!(help.contains(flag), "{mode}: {flag}");
        }
        for other in [
            "--upstream",
            "--secret-file",
            "--heartbeat-interval",
            "--pool <",
        ] {
            assert!(!help.contains(other), "{mode} has {other}");
        }
        assert!(help.contains(&format!("tcpbridge {mode} --listen <ADDR>... [OPTIONS]")));
    }
}

#[test]
fn repeated_flags_give_every_value() {
    let c = from_flags(
        "socks",
        &given(
            "127.0.0.1:0",
            &[
                ("allow", "10.0.0.0/8"),
                ("allow", "*.example.com:443"),
                ("deny", "10.1.0.0/16"),
                ("client_allow", "10.0.0.0/8"),
                ("client_allow", "::1"),
            ],
        ),
    )
    .expect("valid");
    let d = c.listeners[0].mode.dynamic().expect("socks");
    assert_eq!(
        (d.allow.len(), d.deny.len(), d.client_allow.len()),
        (2, 1, 2)
    );
    assert_eq!(c.listeners[0].name, "socks");
}

#[test]
fn a_non_loopback_listener_needs_credentials_or_allowed_clients() {
    let users = scratch_file("users", "alice:wonderland\n", 0o600);
    let users = users.display().to_string();
    for mode in DYNAMIC_MODES {
        for open in ["0.0.0.0:1080", "[::]:1080"] {
            assert_eq!(
                from_flags(mode, &given(open, &[])).expect_err("open proxy"),
                format!(
                    "--listen {open}: a {mode} listener on a non-loopback address needs \
                     --credentials-file or --client-allow (or listen on 127.0.0.1)"
                )
            );
            agree(mode, &given(open, &[]), "open").expect("same refusal in a file");
            for with in [
                ("client_allow", "10.0.0.0/8"),
                ("credentials_file", users.as_str()),
            ] {
                let ok = given(open, &[with]);
                from_flags(mode, &ok).unwrap_or_else(|e| panic!("{mode} {open} {with:?}: {e}"));
                agree(mode, &ok, "guarded").expect("same in a file");
            }
        }
        for loopback in ["127.0.0.1:0", "[::1]:0"] {
            from_flags(mode, &given(loopback, &[])).expect("loopback needs nothing");
        }
        // The second address is the open one: it is named.
        let two = given("127.0.0.1:0", &[("listen", "0.0.0.0:0")]);
        assert!(from_flags(mode, &two)
            .expect_err("open")
            .starts_with("--listen 0.0.0.0:0: "));
    }
}

#[test]
fn bad_values_are_one_line_naming_the_flag_and_the_value() {
    let open = scratch_file("open", "alice:wonderland\n", 0o644);
    let open = open.display().to_string();
    let bad = scratch_file("bad", "alice:x\n:y\n", 0o600);
    let bad = bad.display().to_string();
    let cases = [
        (
            "allow",
            "a..b",
            "invalid value 'a..b' for --allow: the name has an empty label".to_string(),
        ),
        (
            "deny",
            "x:0",
            "invalid value 'x:0' for --deny: port 0 is not a port".into(),
        ),
        (
            "client_allow",
            "nohost",
            "invalid value 'nohost' for --client-allow:".into(),
        ),
        (
            "handshake_timeout",
            "8d",
            "invalid value '8d' for --handshake-timeout:".into(),
        ),
        (
            "resolve_timeout",
            "0s",
            "invalid value '0s' for --resolve-timeout: must be greater than zero".into(),
        ),
        (
            "max_handshakes",
            "0",
            "invalid value '0' for --max-handshakes:".into(),
        ),
        (
            "max_sessions_per_client",
            "x",
            "invalid value 'x' for --max-sessions-per-client:".into(),
        ),
        (
            "credentials_file",
            open.as_str(),
            format!("--credentials-file: {open} is readable by others (mode 0644): chmod 600 it"),
        ),
        (
            "credentials_file",
            bad.as_str(),
            format!("--credentials-file: {bad}:2: empty user or password"),
        ),
        (
            "credentials_file",
            "/nonexistent/users",
            "--credentials-file: cannot read /nonexistent/users: no such file or directory".into(),
        ),
    ];
    for mode in DYNAMIC_MODES {
        for (key, value, want) in &cases {
            let problem =
                from_flags(mode, &given("127.0.0.1:0", &[(key, value)])).expect_err("refused");
            assert!(
                problem.starts_with(want.as_str()),
                "{key}={value}: {problem}"
            );
            assert!(!problem.contains('\n'), "{problem}");
        }
    }
    // The file says the same (names aside): checked for every sample by the tests of
    // every flag; here one that only a file can get wrong.
    let empty = from_file("connect", &given("127.0.0.1:0", &[]));
    assert!(empty.is_ok(), "{empty:?}");
}

#[test]
fn flags_of_other_modes_say_which_modes_have_them() {
    assert_eq!(
        misplaced_line(&[
            "tcpbridge",
            "connect",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "x:1"
        ])
        .as_deref(),
        Some("--upstream is for forward mode, not connect (see 'tcpbridge connect --help')")
    );
    assert_eq!(
        misplaced_line(&["tcpbridge", "forward", "--client-allow", "::1"]).as_deref(),
        Some("--client-allow is for connect and socks modes, not forward (see 'tcpbridge forward --help')")
    );
    assert_eq!(
        misplaced_line(&["tcpbridge", "forward", "--handshake-timeout", "1s"]).as_deref(),
        Some("--handshake-timeout is for relay, agent, connect and socks modes, not forward (see 'tcpbridge forward --help')")
    );
    assert_eq!(
        misplaced_line(&["tcpbridge", "socks", "--secret-file", "s"]).as_deref(),
        Some(
            "--secret-file is for relay and agent modes, not socks (see 'tcpbridge socks --help')"
        )
    );
}

#[test]
fn check_takes_a_modes_flags_instead_of_a_file() {
    let argv = |args: &[&str]| -> Vec<String> {
        ["tcpbridge", "check"]
            .iter()
            .chain(args)
            .map(|a| a.to_string())
            .collect()
    };
    let matches = command()
        .try_get_matches_from(argv(&[
            "socks",
            "--listen",
            "127.0.0.1:0",
            "--deny",
            "10.0.0.0/8",
        ]))
        .expect("parsed");
    match task(&matches) {
        Ok(Task::CheckFlags(c)) => {
            assert_eq!(c.source, Source::Flags);
            let rendered = tcpbridge::config::file::render(&c);
            assert!(
                rendered.contains("[[socks]]\nname = \"socks\"\n"),
                "{rendered}"
            );
            assert!(rendered.contains("deny = [\"10.0.0.0/8\"]\n"), "{rendered}");
        }
        other => panic!("{other:?}"),
    }
    let open = command()
        .try_get_matches_from(argv(&["connect", "--listen", "0.0.0.0:0"]))
        .expect("parsed");
    assert!(task(&open)
        .expect_err("open")
        .starts_with("--listen 0.0.0.0:0: "));
    // A file and a mode at once, or neither: refused by clap, one line.
    for args in [
        &["--config", "f.toml", "connect", "--listen", "127.0.0.1:0"][..],
        &[],
    ] {
        let e = command()
            .try_get_matches_from(argv(args))
            .expect_err("refused");
        assert!(!one_line(&e.render().to_string()).contains('\n'));
    }
    assert_eq!(
        misplaced_line(&["tcpbridge", "check", "forward", "--client-allow", "::1"]).as_deref(),
        Some("--client-allow is for connect and socks modes, not forward (see 'tcpbridge forward --help')")
    );
}
