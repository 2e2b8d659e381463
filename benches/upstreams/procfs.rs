//! What `/proc` says (Linux only): a process's CPU time (`utime + stime`, 10 ms
//! ticks) and resident memory (`VmRSS`), the network namespace's TCP sockets and their
//! buffer memory (`/proc/net/sockstat`), and the kernel's slab caches that hold a
//! socket (`/proc/slabinfo`, readable by root only).

use std::fs;
use std::time::Duration;

use crate::host::ticks_to_duration;

/// `utime + stime` of `pid`, all threads (`None` once it is gone).
pub fn cpu(pid: u32) -> Option<Duration> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself hold spaces or ')'.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 (state): utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(ticks_to_duration(utime + stime))
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

/// The `TCP:` line of `/proc/net/sockstat`: sockets allocated and the pages of
/// socket buffers (`mem`) in this network namespace.
#[derive(Debug, Default, Clone, Copy)]
pub struct TcpSockets {
    pub alloc: i64,
    pub mem_pages: i64,
}

pub fn tcp_sockets() -> TcpSockets {
    let text = fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let line = text.lines().find(|l| l.starts_with("TCP:")).unwrap_or("");
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |key: &str| -> i64 {
        words
            .iter()
            .position(|w| *w == key)
            .and_then(|i| words.get(i + 1)?.parse().ok())
            .unwrap_or(0)
    };
    TcpSockets {
        alloc: after("alloc"),
        mem_pages: after("mem"),
    }
}

/// The slab caches a TCP socket and its descriptor take: the socket itself, its inode,
/// the open file, its dentry and the epoll entry that watches it.
pub const SLABS: [&str; 5] = ["TCP", "sock_inode_cache", "filp", "dentry", "eventpoll_epi"];

/// Bytes in use in each of [`SLABS`] (`active_objs * objsize`); `None` when
/// `/proc/slabinfo` cannot be read (not root).
pub fn slab_bytes() -> Option<[i64; SLABS.len()]> {
    let text = fs::read_to_string("/proc/slabinfo").ok()?;
    let mut bytes = [0i64; SLABS.len()];
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(i) = words
            .first()
            .and_then(|name| SLABS.iter().position(|s| s == name))
        else {
            continue;
        };
        // name active_objs num_objs objsize ...
        let field = |k: usize| {
            words
                .get(k)
                .and_then(|w| w.parse::<i64>().ok())
                .unwrap_or(0)
        };
        bytes[i] = field(1) * field(3);
    }
    Some(bytes)
}

/// What the kernel holds for sockets at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Kernel {
    pub tcp: TcpSockets,
    pub slabs: Option<[i64; SLABS.len()]>,
}

pub fn kernel() -> Kernel {
    Kernel {
        tcp: tcp_sockets(),
        slabs: slab_bytes(),
    }
}
