//! Parsing of `/proc` files: TCP socket tables and listener accept queues.

use std::fs;

/// TCP state numbers as printed in `/proc/net/tcp` (`st` column, hex).
pub const TCP_CLOSE_WAIT: &str = "08";
pub const TCP_LISTEN: &str = "0A";

/// One TCP socket owned by the proxy, from the `/proc/PID/fd` x
/// `/proc/PID/net/tcp{,6}` join.
#[derive(Debug, Clone)]
pub struct OwnedSocket {
    pub inode: u64,
    /// `st` column, two hex digits (e.g. `08` = CLOSE-WAIT, `0A` = LISTEN).
    pub state: String,
    /// The raw row, for dumps.
    pub row: String,
}

/// Rows of `/proc/PID/net/tcp` and `tcp6` (the network namespace of PID).
pub fn tcp_rows(pid: u32) -> Vec<OwnedSocket> {
    let mut out = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            if let Ok(inode) = f[9].parse::<u64>() {
                out.push(OwnedSocket {
                    inode,
                    state: f[3].to_string(),
                    row: format!("{table}: {}", line.trim()),
                });
            }
        }
    }
    out
}

/// Accept-queue length of the LISTEN socket bound to `port`, from
/// `{proc_dir}/net/tcp` (for a listener the `rx_queue` column is the number of
/// completed handshakes waiting for `accept`). `proc_dir` is e.g.
/// `/proc/1234` or `/proc/thread-self` (the calling thread's network namespace).
pub fn accept_queue_len(proc_dir: &str, port: u16) -> Option<u64> {
    let want = format!(":{port:04X}");
    let text = fs::read_to_string(format!("{proc_dir}/net/tcp")).ok()?;
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() <= 4 || !f[1].ends_with(&want) || f[3] != TCP_LISTEN {
            return None;
        }
        // Column 5 is `tx_queue:rx_queue` in hex.
        let (_tx, rx) = f[4].split_once(':')?;
        u64::from_str_radix(rx, 16).ok()
    })
}
