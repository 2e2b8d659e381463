//! Starting and watching the processes under test: the bench's own children and
//! tcpbridge, each with its READY line read, its stderr in a log file of the scratch
//! directory, the parent-death signal set, and SIGTERM (then SIGKILL) when dropped.
//! Also one `GET` on tcpbridge's metrics endpoint, and sums of its series.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::child;

/// How long a process may take to print its READY line.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A child process, stopped when dropped.
pub struct Process {
    child: Child,
    /// Kept open: the bench's own children exit when it closes.
    _stdin: Option<ChildStdin>,
    /// Its READY line.
    pub ready: String,
    log: PathBuf,
}

impl Process {
    /// Spawns `command` (stderr to `log`) and waits for its READY line. Spawn from the
    /// main thread only: the parent-death signal fires when the spawning thread ends.
    pub fn start(mut command: Command, log: &Path) -> Result<Process, String> {
        let err = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err);
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
        let line = child::first_line(&mut child, START_TIMEOUT);
        let mut process = Process {
            child,
            _stdin: stdin,
            ready: line.unwrap_or_default().trim().to_string(),
            log: log.to_path_buf(),
        };
        if !process.ready.starts_with("READY") {
            let why = match process.child.try_wait() {
                Ok(Some(status)) => format!("exited ({status})"),
                _ => format!("no READY line within {START_TIMEOUT:?}"),
            };
            return Err(format!("{program}: {why}: {}", process.log_tail()));
        }
        Ok(process)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The address of `key=` in the READY line.
    pub fn field(&self, key: &str) -> Result<SocketAddr, String> {
        child::ready_field(&self.ready, key)
            .ok_or_else(|| format!("READY line without {key}: {:?}", self.ready))
    }

    /// The last lines of its stderr, for a failure message.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(3).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" / ")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        child::stop(&mut self.child);
    }
}

/// Starts this executable in the child role `args` (`__backend 30`...).
pub fn start_self(args: &[&str], scratch: &Path, tag: &str) -> Result<Process, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    command.args(args);
    Process::start(command, &scratch.join(format!("{tag}.log")))
}

/// Starts `tcpbridge ARGS` (logging to `tag.log` in `scratch`).
pub fn start_tcpbridge(
    binary: &Path,
    args: &[String],
    scratch: &Path,
    tag: &str,
) -> Result<Process, String> {
    let mut command = Command::new(binary);
    command.args(args);
    Process::start(command, &scratch.join(format!("{tag}.log")))
}

/// The body of one `GET path` on a metrics endpoint (5 s bound).
pub fn get(addr: SocketAddr, path: &str) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.take(64 << 20).read_to_string(&mut text)?;
    Ok(text
        .split_once("\r\n\r\n")
        .map_or(text.clone(), |(_, body)| body.to_string()))
}

/// The sum of every series of `family` in a Prometheus text (`family{...} V` or
/// `family V`), and how many series there were.
pub fn sum_family(text: &str, family: &str) -> (f64, usize) {
    let mut sum = 0.0;
    let mut series = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(family) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if let Some(value) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            sum += value;
            series += 1;
        }
    }
    (sum, series)
}

/// The sum of `family` on the endpoint at `addr` (0 when it cannot be read).
pub fn metric(addr: SocketAddr, family: &str) -> f64 {
    get(addr, "/metrics").map_or(0.0, |text| sum_family(&text, family).0)
}

/// Polls `family` every 50 ms until it reaches `target` or `within` has passed; the
/// last value and how long it took.
pub fn wait_metric(
    addr: SocketAddr,
    family: &str,
    target: f64,
    within: Duration,
) -> (f64, Duration) {
    let started = Instant::now();
    loop {
        let value = metric(addr, family);
        if value >= target || started.elapsed() >= within {
            return (value, started.elapsed());
        }
        thread::sleep(Duration::from_millis(50));
    }
}
