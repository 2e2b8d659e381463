//! Config files through the binary: `check` accepts the shipped example and prints an
//! effective configuration that `check` accepts again; a bad file makes `check` and `run`
//! exit 2 with exactly one stderr line naming `FILE:LINE:COL`.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a `check` (or a failing `run`) may take.
const EXIT_WITHIN: Duration = Duration::from_secs(10);

/// The shipped example.
fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/tcpbridge.toml")
}

/// A fresh directory holding a copy of the example's secret (tests run in parallel).
fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tcpbridge-config-file-it-{}-{tag}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    let secret = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/secret.example");
    std::fs::copy(secret, dir.join("secret.example")).expect("copy the example secret");
    dir
}

fn run_file(command: &str, path: &Path) -> CliRun {
    let path = path.to_str().expect("utf-8 path");
    run_cli(&[command, "--config", path], EXIT_WITHIN)
}

/// The example with `from` (which must occur exactly once) replaced by `to`, written as
/// `dir/tcpbridge.toml`; returns its path and the 1-based line of the replacement.
fn broken_example(dir: &Path, from: &str, to: &str) -> (PathBuf, usize) {
    let text = std::fs::read_to_string(example()).expect("read the example");
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from:?} once in the example"
    );
    let at = text.find(from).expect("found");
    let line = text[..at].matches('\n').count() + 1;
    let path = dir.join("tcpbridge.toml");
    std::fs::write(&path, text.replacen(from, to, 1)).expect("write");
    (path, line)
}

/// Exit code 2, and stderr is one line: `error: PATH:LINE:COL: ...` containing `needle`.
fn assert_one_line_error(run: &CliRun, path: &Path, line: usize, needle: &str) {
    assert_eq!(
        run.status.and_then(|s| s.code()),
        Some(2),
        "{:?}: stderr {:?}",
        run.args,
        run.stderr
    );
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one stderr line: {:?}", run.stderr);
    let prefix = format!("error: {}:{line}:", path.display());
    assert!(
        lines[0].starts_with(&prefix),
        "{:?} should start with {prefix:?}",
        lines[0]
    );
    assert!(
        lines[0].contains(needle),
        "{:?} should mention {needle:?}",
        lines[0]
    );
    assert!(!run.stderr.contains("panicked"), "{:?}", run.stderr);
    assert!(!run.stdout.contains("READY"), "{:?}", run.stdout);
}

// The example's relay and agent have TLS tunnels (the default).
#[cfg(feature = "tls")]
#[test]
fn check_accepts_the_example() {
    watchdog(|| {
        let run = run_file("check", &example());
        assert_eq!(
            run.status.and_then(|s| s.code()),
            Some(0),
            "stderr {:?}",
            run.stderr
        );
        assert_eq!(run.stderr, "");
        for needle in [
            "buffer_size = \"16KiB\"\n",
            "pool_budget = \"32MiB\"\n",
            "[[forward]]\nname = \"web\"\n",
            "listen = [\"127.0.0.1:8080\", \"[::1]:8080\"]\n",
            "idle_timeout = \"1h\"\n",
            "[[relay]]\nname = \"nat\"\n",
            "[[agent]]\nname = \"home\"\n",
            "heartbeat_interval = \"15s\"\n",
        ] {
            assert!(run.stdout.contains(needle), "{needle:?} in\n{}", run.stdout);
        }
        let last = run.stdout.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("# memory bound: 32 MiB of buffers (rings of 16 KiB to 256 KiB; ")
                && last.contains(" of session state (1024 sessions) + TLS state of up to ")
                && last.ends_with(" while their sockets are full)"),
            "{last:?}"
        );
    });
}

// The example's relay and agent have TLS tunnels (the default).
#[cfg(feature = "tls")]
#[test]
fn check_output_is_accepted_by_check() {
    watchdog(|| {
        let first = run_file("check", &example());
        assert_eq!(first.status.and_then(|s| s.code()), Some(0), "{first:?}");
        // Elsewhere, so the secret path must be absolute in the output.
        let dir = std::env::temp_dir().join(format!(
            "tcpbridge-config-file-it-{}-round-trip",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create");
        let copy = dir.join("effective.toml");
        std::fs::write(&copy, &first.stdout).expect("write");
        let second = run_file("check", &copy);
        assert_eq!(second.status.and_then(|s| s.code()), Some(0), "{second:?}");
        // Only the first line (naming the file) differs.
        let body = |s: &str| s.lines().skip(1).collect::<Vec<_>>().join("\n");
        assert_eq!(body(&second.stdout), body(&first.stdout));
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn a_typo_is_one_line_with_its_position() {
    watchdog(|| {
        let dir = scratch("typo");
        let (path, line) = broken_example(&dir, "idle_timeout = \"1h\"", "idel_timeout = \"1h\"");
        let run = run_file("check", &path);
        assert_one_line_error(&run, &path, line, "did you mean 'idle_timeout'");
        assert!(
            run.stderr.contains(&format!(":{line}:1: ")),
            "{:?}",
            run.stderr
        );
        assert_eq!(run.stdout, "");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn a_bad_address_is_one_line_with_its_position() {
    watchdog(|| {
        let dir = scratch("address");
        let (path, line) = broken_example(
            &dir,
            "upstream = \"127.0.0.1:5432\"",
            "upstream = \"127.0.0.1:99999\"",
        );
        let run = run_file("check", &path);
        assert_one_line_error(&run, &path, line, "port out of range");
        assert!(
            run.stderr.contains(&format!(":{line}:12: ")),
            "{:?}",
            run.stderr
        );
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn a_duplicate_listener_is_one_line_with_its_position() {
    watchdog(|| {
        let dir = scratch("duplicate");
        let (path, line) = broken_example(&dir, "name = \"db\"", "name = \"web\"");
        let run = run_file("check", &path);
        assert_one_line_error(&run, &path, line, "listener name 'web' is already used");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn run_with_a_bad_file_exits_2_with_one_line() {
    watchdog(|| {
        let dir = scratch("run");
        let (path, line) =
            broken_example(&dir, "drain_timeout = \"10s\"", "drain_timeout = \"10\"");
        let run = run_file("run", &path);
        assert_one_line_error(&run, &path, line, "missing unit");
        let missing = dir.join("missing.toml");
        let run = run_file("run", &missing);
        assert_one_line_error(&run, &missing, 1, "cannot read");
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn check_needs_a_config_file() {
    watchdog(|| {
        let run = run_cli(&["check"], EXIT_WITHIN);
        assert_eq!(run.status.and_then(|s| s.code()), Some(2), "{run:?}");
        assert!(run.stderr.contains("--config"), "{:?}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{:?}", run.stderr);
    });
}
