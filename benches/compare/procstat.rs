//! CPU time and resident memory of a process tree, read from `/proc` (Linux only).
//!
//! A proxy under test may be several processes (nginx master and worker, socat's
//! child per connection), so every figure is summed over the process and its live
//! descendants. CPU time is `utime + stime + cutime + cstime` of each live process:
//! a child that has exited and been reaped is counted once, in its parent's `c*time`.

use std::fs;
use std::time::Duration;

use crate::host::{ticks_to_duration, timeval};

/// The two fields of `/proc/PID/stat` the harness needs.
struct Stat {
    ppid: u32,
    cpu_ticks: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself hold spaces or ')'.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i)?.parse::<u64>().ok();
    // `rest` starts at field 3 (state): ppid is field 4, utime..cstime are fields 14..=17.
    Some(Stat {
        ppid: u32::try_from(field(1)?).ok()?,
        cpu_ticks: field(11)? + field(12)? + field(13)? + field(14)?,
    })
}

/// `root` followed by all its live descendants.
pub fn tree(root: u32) -> Vec<u32> {
    let mut children: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some(stat) = read_stat(pid) {
                children.push((stat.ppid, pid));
            }
        }
    }
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(
            children
                .iter()
                .filter(|(p, _)| *p == parent)
                .map(|(_, c)| *c),
        );
        next += 1;
    }
    found
}

/// CPU time used so far by `root` and its descendants (10 ms resolution).
pub fn tree_cpu(root: u32) -> Duration {
    ticks_to_duration(
        tree(root)
            .into_iter()
            .filter_map(read_stat)
            .map(|s| s.cpu_ticks)
            .sum(),
    )
}

/// `VmRSS` summed over `root` and its descendants, in KiB. Pages shared between
/// processes (socat's forks) are counted once per process, so this overstates
/// multi-process proxies; [`tree_pss_kib`] splits shared pages fairly.
pub fn tree_rss_kib(root: u32) -> u64 {
    tree(root)
        .into_iter()
        .filter_map(|pid| status_kib(pid, "VmRSS:"))
        .sum()
}

/// Proportional set size summed over `root` and its descendants, in KiB.
pub fn tree_pss_kib(root: u32) -> u64 {
    tree(root)
        .into_iter()
        .filter_map(|pid| {
            let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
            kib_field(&text, "Pss:")
        })
        .sum()
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    kib_field(
        &fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        key,
    )
}

fn kib_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// CPU time used so far by this process (the load generator), all threads,
/// children excluded.
pub fn self_cpu() -> Duration {
    // SAFETY: getrusage only writes into the struct we hand it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

/// CPU time of this process's children that have exited and been waited for
/// (with everything they reaped in turn).
pub fn reaped_children_cpu() -> Duration {
    // SAFETY: getrusage only writes into the struct we hand it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}
