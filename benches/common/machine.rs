//! What the figures were measured on, for every bench: date, cores, CPU, memory, kernel,
//! commit, rustc, load. Each bench adds its own facts after these.
//! Git is only read (`rev-parse`, `diff --quiet` with no optional locks).

use std::fs;
use std::path::Path;
use std::process::Command;

/// Label and value pairs, in display order.
pub type Facts = Vec<(String, String)>;

pub fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim().to_string()
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| first_line(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_default()
}

/// The three load averages, from `/proc/loadavg`.
pub fn load_average() -> String {
    let text = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The short commit of `repo` and whether `src/` differs from it.
pub fn commit(repo: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .arg("--no-optional-locks")
            .args(args)
            .output()
            .ok()
    };
    let head = git(&["rev-parse", "--short", "HEAD"])
        .filter(|o| o.status.success())
        .map(|o| first_line(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_else(|| "unknown".into());
    let clean = git(&["diff", "--quiet", "HEAD", "--", "src", "Cargo.lock"])
        .is_some_and(|o| o.status.success());
    if clean {
        format!("{head} (src/ as committed)")
    } else {
        format!("{head} (src/ or Cargo.lock differ from it)")
    }
}

/// Facts about the machine and the source tree at `repo`.
pub fn describe(repo: &Path) -> Facts {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".into());
    let memory = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            first_line(&t)
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .map_or_else(
            || "unknown".into(),
            |kib| format!("{:.1} GiB", kib as f64 / 1048576.0),
        );
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    vec![
        (
            "date".into(),
            output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        ),
        ("cores (nproc)".into(), cores.to_string()),
        ("CPU".into(), cpu),
        ("memory".into(), memory),
        ("kernel".into(), kernel.trim().to_string()),
        ("commit".into(), commit(repo)),
        ("rustc".into(), output("rustc", &["--version"])),
        ("load average at start".into(), load_average()),
    ]
}
