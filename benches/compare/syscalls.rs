//! Syscalls made by a target's processes during one measured run, counted with
//! `perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_splice -p PIDS` (the
//! kernel's syscall-entry tracepoints: every syscall, and splice on its own).
//!
//! perf is started with its events disabled (`-D -1`) and driven through two
//! FIFOs (`--control fifo:CTL,ACK`): the run begins only once perf has
//! acknowledged `enable`, and `disable` is acknowledged before the figures are
//! read, so the count covers exactly the measured window. Counting costs the
//! target a little (a counter increment per syscall); every target pays it.
//!
//! Without perf, or without permission for tracepoints, [`Counter::start`]
//! says why and the run goes on without the figure.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Every syscall entry, and splice's on its own: two events attach in milliseconds
/// where the ~350 `syscalls:sys_enter_*` tracepoints take seconds per run.
const EVENTS: &str = "raw_syscalls:sys_enter,syscalls:sys_enter_splice";

/// How long perf may take to answer a command.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `perf stat`, enabled.
pub struct Counter {
    child: Child,
    control: File,
    acks: mpsc::Receiver<String>,
    /// perf's output, then its two FIFOs.
    files: [PathBuf; 3],
}

/// Syscalls counted in one window.
pub struct Counts {
    pub total: u64,
    pub splice: u64,
}

impl Counter {
    /// Attaches perf to `pids` (disabled), then enables it. `Err` says why
    /// nothing will be counted.
    pub fn start(pids: &[u32], scratch: &Path) -> Result<Counter, String> {
        let tag = pids.first().copied().unwrap_or(0);
        let ctl = scratch.join(format!("perf-{tag}.ctl"));
        let ack = scratch.join(format!("perf-{tag}.ack"));
        let out = scratch.join(format!("perf-{tag}.csv"));
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
        let list: Vec<String> = pids.iter().map(u32::to_string).collect();
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
            Err(_) => Err(format!("perf did not acknowledge {what:?}")),
        }
    }

    /// Disables counting, stops perf and reads its counts.
    pub fn finish(mut self) -> Result<Counts, String> {
        let disabled = self.command("disable");
        // SAFETY: signalling the perf child we spawned, by its PID.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        disabled?;
        let text = fs::read_to_string(&self.files[0]).map_err(|e| format!("perf output: {e}"))?;
        Ok(parse(&text))
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

/// Reads perf's CSV lines (`COUNT,,EVENT,...`).
fn parse(text: &str) -> Counts {
    let mut counts = Counts {
        total: 0,
        splice: 0,
    };
    for line in text.lines() {
        let mut fields = line.split(',');
        let count = fields.next().and_then(|c| c.parse::<u64>().ok());
        match (count, fields.nth(1)) {
            (Some(n), Some("raw_syscalls:sys_enter")) => counts.total = n,
            (Some(n), Some("syscalls:sys_enter_splice")) => counts.splice = n,
            _ => {}
        }
    }
    counts
}
