//! What `/proc` says about the processes under test (Linux only): CPU time
//! (`utime + stime`), resident memory (`VmRSS`), open descriptors, the run
//! state, ESTABLISHED sockets on a local port.

use std::collections::HashSet;
use std::fs;
use std::time::Duration;

use crate::host::{ticks_to_duration, timeval};

/// Fields 3 onwards of `/proc/PID/stat` (after the command name).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself hold spaces or ')'.
    let rest = text.get(text.rfind(')')? + 2..)?;
    Some(rest.split_whitespace().map(String::from).collect())
}

/// `utime + stime` of `pid` (all its threads), 10 ms resolution.
pub fn cpu(pid: u32) -> Option<Duration> {
    let fields = stat_fields(pid)?;
    // `fields[0]` is field 3 (state): utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(ticks_to_duration(utime + stime))
}

/// CPU time summed over `pids` (a process that is gone counts as zero).
pub fn cpu_sum(pids: &[u32]) -> Duration {
    pids.iter().filter_map(|&pid| cpu(pid)).sum()
}

/// The one-letter run state (`R`, `S`, `T` for stopped...).
pub fn state(pid: u32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// `VmRSS` of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Open file descriptors of `pid`.
pub fn fd_count(pid: u32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Socket inodes among `pid`'s open descriptors.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    entries
        .flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter_map(|target| {
            let text = target.to_str()?.to_string();
            text.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// `pid`'s own ESTABLISHED TCP sockets whose local port is `port`: the lines
/// of `/proc/PID/net/tcp` and `tcp6` in that state, on that port, whose inode
/// is one of `pid`'s descriptors (so connections still in the accept queue,
/// or of other processes, do not count).
pub fn established_on_port(pid: u32, port: u16) -> usize {
    let mine = socket_inodes(pid);
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|f| fs::read_to_string(format!("/proc/{pid}/net/{f}")).ok())
        .map(|text| {
            text.lines()
                .skip(1)
                .filter(|line| {
                    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
                    let words: Vec<&str> = line.split_whitespace().collect();
                    let (Some(local), Some(state), Some(inode)) =
                        (words.get(1), words.get(3), words.get(9))
                    else {
                        return false;
                    };
                    let local_port = local
                        .rsplit(':')
                        .next()
                        .and_then(|p| u16::from_str_radix(p, 16).ok());
                    *state == "01"
                        && local_port == Some(port)
                        && inode.parse().is_ok_and(|i: u64| mine.contains(&i))
                })
                .count()
        })
        .sum()
}

/// CPU time of this process (load generator and backend) and of its reaped
/// children.
pub fn own_cpu() -> Duration {
    let usage = |who| {
        // SAFETY: getrusage only writes into the struct we hand it.
        let u = unsafe {
            let mut u: libc::rusage = std::mem::zeroed();
            libc::getrusage(who, &mut u);
            u
        };
        timeval(u.ru_utime) + timeval(u.ru_stime)
    };
    usage(libc::RUSAGE_SELF) + usage(libc::RUSAGE_CHILDREN)
}

/// Processes (other than this one) whose command line contains `needle`,
/// as `PID name` strings: how the report tells that another benchmark ran.
pub fn processes_matching(needle: &str) -> Vec<String> {
    let me = std::process::id();
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        if line.contains(needle) {
            let name = line.split_whitespace().next().unwrap_or("");
            let short = name.rsplit('/').next().unwrap_or(name);
            found.push(format!("{pid} {short}"));
        }
    }
    found
}
