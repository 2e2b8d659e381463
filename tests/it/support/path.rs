//! The data path a test runs the proxy on: [`DataPath::Copy`] (`--splice off`:
//! readv/writev through rings) or [`DataPath::Splice`] (`--splice always`: every
//! direction through a kernel pipe from its first byte), and [`both_paths!`],
//! which turns one test body into a `copy` and a `splice` test.
//!
//! The setting is per thread ([`DataPath::enter`]), so tests running in
//! parallel threads of the binary never see each other's; [`super::watchdog`]
//! carries it to the body's thread. Every way the support starts a tcpbridge
//! process honours it: [`super::Proxy`] adds `--splice MODE` to `forward`,
//! `relay` and `agent` command lines (unless the test passed `--splice`
//! itself), [`super::FaultProxy`] writes `splice = "MODE"` at the top of its
//! configuration file, and a `run --config FILE` without a top-level `splice`
//! key fails the test rather than silently running on the default path. With
//! no setting (tests not doubled) nothing is added: the default, `auto`.
//!
//! A `splice` test also fails at start-up when the proxy's memory bound line
//! says `no splice` (a pool budget too small for a kernel pipe): it would
//! silently copy.

use super::{wait_for, Proxy, READY_TIMEOUT};
use std::cell::Cell;

/// Which of the two data paths the proxies of the current test use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPath {
    /// `--splice off`: readv/writev through rings lent from the pool.
    Copy,
    /// `--splice always`: splice(2) through kernel pipes from the first byte.
    Splice,
}

thread_local! {
    static CURRENT: Cell<Option<DataPath>> = const { Cell::new(None) };
}

/// Restores the previous setting of the thread when dropped.
pub struct PathGuard(Option<DataPath>);

impl Drop for PathGuard {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

impl DataPath {
    /// Makes `self` the data path of the proxies this thread starts, until the
    /// guard is dropped.
    pub fn enter(self) -> PathGuard {
        PathGuard(CURRENT.with(|c| c.replace(Some(self))))
    }

    /// The current thread's setting (`None`: the proxy's default, `auto`).
    pub fn current() -> Option<DataPath> {
        CURRENT.with(Cell::get)
    }

    /// Sets the thread's setting to `path` (a body thread inheriting its test's).
    pub(crate) fn inherit(path: Option<DataPath>) {
        CURRENT.with(|c| c.set(path));
    }

    /// The `--splice` / `splice =` value of this path.
    pub fn mode(self) -> &'static str {
        match self {
            DataPath::Copy => "off",
            DataPath::Splice => "always",
        }
    }
}

/// The subcommands whose command line takes `--splice`.
const SPLICE_MODES: &[&str] = &["forward", "relay", "agent"];

/// `args` with the current data path applied: `--splice MODE` after the
/// subcommand of a `forward`, `relay` or `agent` command line that has none.
/// Panics on a `run --config FILE` whose file has no top-level `splice` key,
/// and on a program other than the binary (its arguments cannot be checked).
pub fn apply_data_path(program: &str, args: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let Some(path) = DataPath::current() else {
        return out;
    };
    assert!(
        program == super::BIN,
        "data path {path:?} set, but `{program}` is not the binary: its splice mode cannot be set"
    );
    let Some(at) = args.iter().position(|a| !a.starts_with('-')) else {
        return out;
    };
    let sub = args[at];
    if SPLICE_MODES.contains(&sub) {
        if !args.contains(&"--splice") {
            out.splice(at + 1..at + 1, ["--splice".into(), path.mode().into()]);
        }
    } else if sub == "run" {
        let file = args
            .iter()
            .position(|a| *a == "--config")
            .and_then(|i| args.get(i + 1))
            .expect("run --config FILE");
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("read {file}: {e}"));
        assert!(
            top_level_keys(&text).any(|k| k == "splice"),
            "data path {path:?} set, but {file} has no top-level `splice` key:\n{text}"
        );
    }
    out
}

/// Keys set before the first table of a TOML text.
fn top_level_keys(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with('['))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
}

/// On the splice path, the proxy's memory bound line must allow kernel pipes:
/// with none (a pool budget or descriptor limit too small for one), the test
/// would silently copy. Waits for the line up to [`READY_TIMEOUT`].
pub fn expect_kernel_pipes(p: &Proxy) -> Result<(), String> {
    let mut none = None;
    wait_for(READY_TIMEOUT, || {
        none = p
            .stderr()
            .lines()
            .find(|l| l.contains("memory bound:"))
            .map(|l| l.contains("no splice"));
        none.is_some()
    });
    match none {
        Some(false) => Ok(()),
        Some(true) => Err(format!(
            "a splice test, but the proxy can lend no kernel pipe (its memory bound \
             says `no splice`); stderr:\n{}",
            p.stderr()
        )),
        None => Err(format!(
            "a splice test, but no `memory bound:` line within {READY_TIMEOUT:?}; stderr:\n{}",
            p.stderr()
        )),
    }
}

/// Generates, for a test body `fn NAME()` defined just before (not `#[test]`
/// itself), a module `NAME` with two tests: `NAME::copy` and `NAME::splice`,
/// each running the body with its [`DataPath`] entered.
///
/// ```ignore
/// /// A2: 1 MiB request, half-close, 1 MiB reply, close.
/// fn client_half_close_then_full_reply_then_eof_both_ways() {
///     watchdog(|| request_then_reply(DATA, MIB));
/// }
/// both_paths!(client_half_close_then_full_reply_then_eof_both_ways);
/// ```
macro_rules! both_paths {
    ($($name:ident),+ $(,)?) => {$(
        #[doc = concat!("[`", stringify!($name), "`] on each data path.")]
        mod $name {
            /// On the copy path (`--splice off`).
            #[test]
            fn copy() {
                let _path = $crate::support::DataPath::Copy.enter();
                super::$name();
            }

            /// On the splice path (`--splice always`).
            #[test]
            fn splice() {
                let _path = $crate::support::DataPath::Splice.enter();
                super::$name();
            }
        }
    )+};
}
pub(crate) use both_paths;
