//! Starting and stopping the processes under test: the bench's own server, tcpbridge
//! (ready when it prints its READY line) and the peers (ready when their port accepts
//! a connection), each with its stderr and stdout in a log file of the scratch
//! directory, the parent-death signal set, and stopped when dropped: SIGTERM to the
//! process, then SIGKILL to whatever of its process tree (Dante forks) is left after
//! 3 s, by the PIDs it had.

use std::fs::{self, File};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{child, procstat};

/// How long a process may take to be ready.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How a started process says it is ready.
pub enum Ready {
    /// It prints `READY ...` on stdout.
    Line,
    /// Its listener at this address accepts a connection.
    Port(SocketAddr),
}

/// A child process, stopped (with its descendants) when dropped.
pub struct Process {
    child: Child,
    /// Kept open: the bench's own server exits when it closes.
    _stdin: Option<ChildStdin>,
    /// Its READY line (empty for [`Ready::Port`]).
    pub ready: String,
    log: PathBuf,
}

impl Process {
    /// Spawns `command` (stderr to `log`) and waits until it is ready. Spawn from the
    /// main thread only: the parent-death signal fires when the spawning thread ends.
    pub fn start(mut command: Command, log: &Path, ready: Ready) -> Result<Process, String> {
        let err = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let out = match ready {
            Ready::Line => Stdio::piped(),
            Ready::Port(_) => Stdio::from(err.try_clone().map_err(|e| e.to_string())?),
        };
        command.stdin(Stdio::piped()).stdout(out).stderr(err);
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command.spawn().map_err(|e| format!("{program}: {e}"))?;
        let stdin = child.stdin.take();
        let mut process = Process {
            child,
            _stdin: stdin,
            ready: String::new(),
            log: log.to_path_buf(),
        };
        let ok = match ready {
            Ready::Line => {
                let line = child::first_line(&mut process.child, START_TIMEOUT);
                process.ready = line.unwrap_or_default().trim().to_string();
                process.ready.starts_with("READY")
            }
            Ready::Port(addr) => wait_port(&mut process.child, addr),
        };
        if !ok {
            let why = match process.child.try_wait() {
                Ok(Some(status)) => format!("exited ({status})"),
                _ => format!("not ready within {START_TIMEOUT:?}"),
            };
            return Err(format!("{program}: {why}: {}", process.log_tail()));
        }
        Ok(process)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process and its live descendants.
    pub fn tree(&self) -> Vec<u32> {
        procstat::tree(self.pid())
    }

    /// The address of `key=` in the READY line.
    pub fn field(&self, key: &str) -> Result<SocketAddr, String> {
        child::ready_field(&self.ready, key)
            .ok_or_else(|| format!("READY line without {key}: {:?}", self.ready))
    }

    /// The last lines of its log, for a failure message.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(3).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" / ")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let descendants: Vec<(u32, String)> = self
            .tree()
            .into_iter()
            .skip(1)
            .map(|pid| (pid, command_name(pid)))
            .collect();
        child::stop(&mut self.child);
        let deadline = Instant::now() + Duration::from_secs(3);
        // The same PID with the same name: still the process we started.
        let alive = |(pid, name): &&(u32, String)| command_name(*pid) == *name;
        while descendants.iter().any(|d| alive(&d)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        for (pid, _) in descendants.iter().filter(alive) {
            if let Ok(pid) = libc::pid_t::try_from(*pid) {
                // SAFETY: kill has no memory preconditions; a descendant of our child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// The command name of `pid` (`/proc/PID/comm`), empty once it is gone.
fn command_name(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default()
}

/// Polls `addr` every 20 ms until it accepts a connection, `child` exits, or
/// [`START_TIMEOUT`] passes.
fn wait_port(child: &mut Child, addr: SocketAddr) -> bool {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A free port on 127.0.0.1 (bound, noted, closed: for the peers, which need a port
/// in their configuration).
pub fn free_addr() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))
}

/// Starts this executable in the child role `args`.
pub fn start_self(args: &[&str], scratch: &Path, tag: &str) -> Result<Process, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    command.args(args);
    Process::start(command, &scratch.join(format!("{tag}.log")), Ready::Line)
}
