//! What the figures were measured on: machine, kernel, CPU, commit, load, the
//! other benchmark's processes, and the versions of the programs under test.
//! Git is only read (`rev-parse`, `diff --quiet` with no optional locks).

use std::path::Path;
use std::process::Command;

/// Label and value pairs, in display order.
pub type Facts = Vec<(String, String)>;

/// The first line of what `program args` prints (stdout and stderr) that
/// contains `pick` (the first line when `pick` is empty).
pub fn version_of(program: &Path, args: &[&str], pick: &str) -> String {
    match Command::new(program).args(args).output() {
        Ok(out) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            let line = text
                .lines()
                .find(|l| !l.trim().is_empty() && l.contains(pick))
                .unwrap_or("");
            line.split_whitespace().collect::<Vec<_>>().join(" ")
        }
        Err(e) => format!("cannot run: {e}"),
    }
}

/// The other benchmark's processes (command line holds `compare-`), or "none".
pub fn other_bench() -> String {
    let found = crate::procfs::processes_matching("compare-");
    if found.is_empty() {
        "none".into()
    } else {
        found.join(", ")
    }
}

/// Facts about the machine and the source tree at `repo`, and the other benchmark's
/// processes at start.
pub fn describe(repo: &Path) -> Facts {
    let mut facts = crate::machine_common::describe(repo);
    facts.push(("other benchmark (compare-*) at start".into(), other_bench()));
    facts
}
