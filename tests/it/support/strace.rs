//! strace attached to a running proxy: syscall fault injection
//! (`-e inject=...`, the fault scenarios) and syscall counts (`-c`, to prove
//! which data path moved the bytes: readv/writev or splice).

use super::{in_ci, wait_for};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// strace attached to a running process, injecting syscall faults or
/// counting syscalls; detached (SIGTERM to strace, by its PID) on drop.
pub struct Strace {
    child: Child,
}

impl Strace {
    /// `strace -f -o /dev/null -e inject=SPEC -p PID`, waiting until it has
    /// attached to every thread. `None` (after a skip line) when strace is
    /// unavailable and `CI` is not `true`.
    pub fn attach(pid: u32, inject: &str) -> Option<Strace> {
        Self::attach_to(pid, inject, Path::new("/dev/null"))
    }

    /// [`Strace::attach`] writing the trace to `out`, so a test can count the
    /// `(INJECTED)` lines and prove the fault was injected.
    pub fn attach_to(pid: u32, inject: &str, out: &Path) -> Option<Strace> {
        Self::spawn(pid, &[format!("inject={inject}")], out)
    }

    /// `strace -f -c -e trace=SYSCALLS -p PID`: counts the calls of
    /// `syscalls` (comma-separated) until [`Strace::detach`], which writes the
    /// summary to `out` (read it with [`syscall_counts`]).
    pub fn count(pid: u32, syscalls: &str, out: &Path) -> Option<Strace> {
        Self::spawn(pid, &[format!("trace={syscalls}")], out)
    }

    /// `strace -f [-c] -o OUT -e EXPR... -p PID`, attached to every thread.
    fn spawn(pid: u32, exprs: &[String], out: &Path) -> Option<Strace> {
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-o"]).arg(out);
        if exprs.iter().any(|e| e.starts_with("trace=")) {
            cmd.arg("-c");
        }
        for e in exprs {
            cmd.arg("-e").arg(e);
        }
        let spawned = cmd
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                assert!(!in_ci(), "cannot run strace: {e}");
                eprintln!("SKIP: cannot run strace: {e}; set CI=true to fail instead");
                return None;
            }
        };
        let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.count())
            .unwrap_or(1);
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().expect("strace stderr is piped");
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut attached = 0;
        let mut seen = Vec::new();
        while attached < threads {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    // "Process N attached", or "... attached with K threads".
                    if line.contains("attached") {
                        attached += line
                            .split("attached with ")
                            .nth(1)
                            .and_then(|r| r.split_whitespace().next())
                            .and_then(|k| k.parse().ok())
                            .unwrap_or(1);
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("strace did not attach to {pid} ({threads} threads): {seen:?}");
                }
            }
        }
        Some(Strace { child })
    }

    /// Detaches now (strace detaches on SIGTERM) and waits for it to exit.
    pub fn detach(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // Our own child, by its PID.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let exited = wait_for(Duration::from_secs(5), || {
                matches!(self.child.try_wait(), Ok(Some(_)))
            });
            if !exited {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

impl Drop for Strace {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The calls per syscall in a `strace -c` summary (`% time  seconds
/// usecs/call  calls  [errors]  syscall` rows).
pub fn syscall_counts(summary: &str) -> HashMap<String, u64> {
    summary
        .lines()
        .filter_map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            if t.len() < 5 || t[0].parse::<f64>().is_err() {
                return None;
            }
            let name = *t.last()?;
            (name != "total").then(|| Some((name.to_string(), t[3].parse().ok()?)))?
        })
        .collect()
}
