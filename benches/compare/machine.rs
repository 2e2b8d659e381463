//! What the figures were measured on: machine, kernel, commit, load, and the
//! versions of the third-party proxies. Git is only read (`rev-parse`,
//! `--no-optional-locks status`), never written.

use std::fs;
use std::path::Path;
use std::process::Command;

/// Label and value pairs, in display order.
pub type Facts = Vec<(String, String)>;

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim().to_string()
}

/// Runs a command and returns its stdout and stderr, joined.
fn output_of(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Some(text)
}

/// The load averages, from `/proc/loadavg`.
pub fn load_average() -> String {
    let text = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Facts about the machine and the source tree at `repo`.
pub fn describe(repo: &Path) -> Facts {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let memory = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            first_line(&t)
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .map_or_else(String::new, |kib| {
            format!("{:.1} GiB", kib as f64 / 1048576.0)
        });
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let repo_arg = repo.display().to_string();
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(&repo_arg)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit =
        git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "no commit yet".into());
    let dirty =
        git(&["--no-optional-locks", "status", "--porcelain"]).map_or(0, |s| s.lines().count());
    let date = output_of("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default();
    vec![
        ("date".into(), first_line(&date)),
        ("cores (nproc)".into(), cores.to_string()),
        ("CPU".into(), cpu),
        ("memory".into(), memory),
        ("kernel".into(), kernel.trim().to_string()),
        (
            "commit".into(),
            format!("{commit} ({dirty} paths modified or untracked)"),
        ),
        (
            "rustc".into(),
            first_line(&output_of("rustc", &["--version"]).unwrap_or_default()),
        ),
        ("load average at start".into(), load_average()),
    ]
}

/// Version lines of the third-party programs that are installed.
pub fn tool_versions() -> Facts {
    let probes: [(&str, &[&str], usize); 6] = [
        ("haproxy", &["-v"], 0),
        ("nginx", &["-v"], 0),
        ("socat", &["-V"], 1),
        ("rinetd", &["--version"], 0),
        ("iperf3", &["--version"], 0),
        ("wrk", &["--version"], 0),
    ];
    probes
        .into_iter()
        .filter(|(program, _, _)| crate::proxies::find_program(program).is_some())
        .map(|(program, args, line)| {
            let text = output_of(program, args).unwrap_or_default();
            let version = text.lines().nth(line).unwrap_or("").trim().to_string();
            (program.to_string(), version)
        })
        .collect()
}
