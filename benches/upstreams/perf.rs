//! Syscalls of processes over one window, by syscall:
//! `perf stat -x, -e 'syscalls:sys_enter_*' -D -1 --control fifo:CTL,ACK -p PID,...`
//! (every thread of each process, and the threads and processes they start later).
//!
//! perf attaches with its counters off (attaching the ~350 tracepoints takes about
//! 15 s here); the window starts only once perf has acknowledged `enable`, and the
//! counts are read after it has acknowledged `disable`, so they cover the window and
//! nothing else. Without perf, or without permission for tracepoints,
//! [`Counter::start`] says why and the section goes on without the figure.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Every syscall's entry tracepoint.
const EVENTS: &str = "syscalls:sys_enter_*";
/// How long perf may take to answer a command (attaching is the slow part).
const ACK_TIMEOUT: Duration = Duration::from_secs(90);

/// A running `perf stat`, enabled.
pub struct Counter {
    child: Child,
    control: File,
    acks: mpsc::Receiver<String>,
    /// perf's output, then its two FIFOs.
    files: [PathBuf; 3],
}

impl Counter {
    /// Attaches perf to `pids` (disabled), then enables it. `Err` says why nothing
    /// will be counted.
    pub fn start(pids: &[u32], scratch: &Path) -> Result<Counter, String> {
        let pid = pids.first().ok_or("no process to count")?;
        let list: Vec<String> = pids.iter().map(u32::to_string).collect();
        let ctl = scratch.join(format!("perf-{pid}.ctl"));
        let ack = scratch.join(format!("perf-{pid}.ack"));
        let out = scratch.join(format!("perf-{pid}.csv"));
        for fifo in [&ctl, &ack] {
            let _ = fs::remove_file(fifo);
            let path =
                std::ffi::CString::new(fifo.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
            // SAFETY: a NUL-terminated path; mkfifo only reads it.
            if unsafe { libc::mkfifo(path.as_ptr(), 0o600) } != 0 {
                return Err(format!("mkfifo: {}", std::io::Error::last_os_error()));
            }
        }
        // Read-write opens of a FIFO do not wait for the other end.
        let open = |p: &Path| OpenOptions::new().read(true).write(true).open(p);
        let control = open(&ctl).map_err(|e| format!("{}: {e}", ctl.display()))?;
        let acks_file = open(&ack).map_err(|e| format!("{}: {e}", ack.display()))?;
        let child = Command::new("perf")
            .args(["stat", "-x,", "-e", EVENTS, "-D", "-1"])
            .arg("--control")
            .arg(format!("fifo:{},{}", ctl.display(), ack.display()))
            .arg("-o")
            .arg(&out)
            .args(["-p", &list.join(",")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("perf: {e}"))?;
        let (tx, acks) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(acks_file).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut counter = Counter {
            child,
            control,
            acks,
            files: [out, ctl, ack],
        };
        counter.command("enable")?;
        Ok(counter)
    }

    fn command(&mut self, what: &str) -> Result<(), String> {
        writeln!(self.control, "{what}").map_err(|e| format!("perf control: {e}"))?;
        match self.acks.recv_timeout(ACK_TIMEOUT) {
            Ok(_) => Ok(()),
            Err(_) => Err(format!(
                "perf did not acknowledge {what:?} within {ACK_TIMEOUT:?}"
            )),
        }
    }

    /// Disables counting, stops perf, and returns `(syscall, count)` for every syscall
    /// counted at least once, most frequent first.
    pub fn finish(mut self) -> Result<Vec<(String, u64)>, String> {
        let disabled = self.command("disable");
        // SAFETY: signalling the perf child we spawned, by its PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        disabled?;
        let text = fs::read_to_string(&self.files[0]).map_err(|e| format!("perf output: {e}"))?;
        let mut counts: Vec<(String, u64)> = text
            .lines()
            .filter_map(|line| {
                // COUNT,UNIT,EVENT,...
                let mut fields = line.split(',');
                let count = fields.next()?.parse::<u64>().ok()?;
                let event = fields.nth(1)?;
                let name = event.strip_prefix("syscalls:sys_enter_")?;
                (count > 0).then(|| (name.to_string(), count))
            })
            .collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(counts)
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for file in &self.files {
            let _ = fs::remove_file(file);
        }
    }
}

/// Whether a `perf` binary is on `PATH`.
pub fn available() -> bool {
    Command::new("perf")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
