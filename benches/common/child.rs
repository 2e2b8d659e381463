//! What every bench does with the binary under test and its child processes: find
//! `tcpbridge` and the target directory from the bench's own path, read a child's READY
//! line, and stop a child (SIGTERM, then SIGKILL after a bound).

use std::env;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a child may take to exit after SIGTERM before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(3);

/// `<target>/release/tcpbridge` next to `<target>/release/deps/BENCH-HASH` (the bench
/// `exe`), unless `TCPBRIDGE_BIN` names another binary.
pub fn tcpbridge_binary(exe: &Path) -> PathBuf {
    if let Some(path) = env::var_os("TCPBRIDGE_BIN") {
        return PathBuf::from(path);
    }
    exe.parent()
        .and_then(Path::parent)
        .map(|profile_dir| profile_dir.join("tcpbridge"))
        .unwrap_or_default()
}

/// The cargo target directory the bench `exe` was built into.
pub fn target_dir(exe: &Path) -> Result<PathBuf, String> {
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .ok_or_else(|| "cannot find the target directory".to_string())
}

/// SIGTERM to our own child, then SIGKILL if it has not exited within 3 s; reaps it.
pub fn stop(child: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill has no memory preconditions; the pid is our child's.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + STOP_WITHIN;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The child's first stdout line (its READY line), waiting up to `within`; the rest of
/// stdout is drained in the background so the child never blocks on a full pipe.
/// `None` when stdout is not piped or no line came in time.
pub fn first_line(child: &mut Child, within: Duration) -> Option<String> {
    let stdout = child.stdout.take()?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        let _ = io::copy(&mut reader, &mut io::sink());
    });
    rx.recv_timeout(within).ok()
}

/// The address of `key=` (e.g. `listen=`) in a READY line.
pub fn ready_field(line: &str, key: &str) -> Option<SocketAddr> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key))
        .and_then(|addr| addr.parse().ok())
}
