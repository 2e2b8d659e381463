//! The targets under test: how each is found, configured, started on 127.0.0.1
//! in front of an upstream, checked end to end, and stopped.
//!
//! Programs that print `READY listen=IP:PORT` (tcpbridge, the backend, the
//! in-bench baselines) listen on port 0 and announce the port. HAProxy, nginx,
//! socat and rinetd need a port in their configuration: the harness binds
//! 127.0.0.1:0, notes the port the kernel chose, closes it and hands that port
//! over, then waits until it accepts connections.
//!
//! Every child gets `PR_SET_PDEATHSIG` (SIGTERM) so none outlives the bench, and
//! its stderr goes to a log file in the scratch directory (quoted when it fails).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::backend;
use crate::external;
use crate::ours::tcpbridge;
use crate::procstat;

/// How long a target may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Every kind of target, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Direct,
    Tcpbridge,
    /// tcpbridge with `--splice off`: the copy path only (adaptive rings).
    TcpbridgeCopy,
    /// Two tcpbridge processes sharing one port with `--reuse-port` (8-stream bulk only).
    TcpbridgeX2,
    /// Another build of tcpbridge (`TCPBRIDGE_PREVIOUS_BIN`): the one before a change,
    /// measured in the same run.
    TcpbridgePrevious,
    TokioCt,
    TokioMt,
    Thread,
    Haproxy,
    /// HAProxy with `option splice-request`, `option splice-response`, `tune.pipesize 262144`.
    HaproxySplice,
    Nginx,
    Socat,
    Rinetd,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::Direct,
        Kind::Tcpbridge,
        Kind::TcpbridgeCopy,
        Kind::TcpbridgeX2,
        Kind::TcpbridgePrevious,
        Kind::TokioCt,
        Kind::TokioMt,
        Kind::Thread,
        Kind::Haproxy,
        Kind::HaproxySplice,
        Kind::Nginx,
        Kind::Socat,
        Kind::Rinetd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Tcpbridge => "tcpbridge",
            Kind::TcpbridgeCopy => "tcpbridge-copy",
            Kind::TcpbridgeX2 => "tcpbridge-x2",
            Kind::TcpbridgePrevious => "tcpbridge-previous",
            Kind::TokioCt => "tokio-ct",
            Kind::TokioMt => "tokio-mt",
            Kind::Thread => "thread",
            Kind::Haproxy => "haproxy",
            Kind::HaproxySplice => "haproxy-splice",
            Kind::Nginx => "nginx",
            Kind::Socat => "socat",
            Kind::Rinetd => "rinetd",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The program a third-party target needs on `PATH`.
    fn program(self) -> Option<&'static str> {
        match self {
            Kind::Haproxy | Kind::HaproxySplice => Some("haproxy"),
            Kind::Nginx => Some("nginx"),
            Kind::Socat => Some("socat"),
            Kind::Rinetd => Some("rinetd"),
            _ => None,
        }
    }
}

/// What every target start needs to know.
pub struct Context {
    /// Scratch directory for configurations and logs.
    pub scratch: PathBuf,
    /// The tcpbridge binary.
    pub tcpbridge: PathBuf,
    /// Another tcpbridge binary to compare with (`TCPBRIDGE_PREVIOUS_BIN`), if any.
    pub tcpbridge_previous: Option<PathBuf>,
    /// `--max-sessions` of tcpbridge (it lowers it itself to what
    /// RLIMIT_NOFILE allows, and logs that).
    pub tcpbridge_max_sessions: u64,
    /// The equivalent limit of the other proxies (maxconn, worker_connections),
    /// already lowered to what RLIMIT_NOFILE allows: they refuse to start above it.
    pub max_sessions: u64,
}

/// A child process, stopped (SIGTERM, then SIGKILL after 3 s) when dropped.
pub struct Process {
    child: Child,
    /// Kept open: the in-bench children exit when it closes.
    _stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl Process {
    /// Spawns `command` with stderr to `log` and the parent-death signal set.
    /// Spawn from the main thread only: the signal fires when the spawning
    /// thread ends.
    pub fn spawn(mut command: Command, log: &Path) -> io::Result<Process> {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(log)?);
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        let stdin = child.stdin.take();
        Ok(Process {
            child,
            _stdin: stdin,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of the child's stderr, for a failure message.
    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(3).collect();
        let tail: Vec<&str> = lines.into_iter().rev().collect();
        tail.join(" / ")
    }

    /// `Some(description)` once the child has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("exited ({status}): {}", self.log_tail())),
            Ok(None) => None,
            Err(e) => Some(format!("wait failed: {e}")),
        }
    }

    /// Waits for the `READY listen=IP:PORT` line and returns the address.
    /// The rest of stdout is drained in the background.
    fn ready_line(&mut self) -> Result<SocketAddr, String> {
        let line = crate::child::first_line(&mut self.child, START_TIMEOUT).ok_or_else(|| {
            self.exited()
                .unwrap_or_else(|| format!("no READY line within {START_TIMEOUT:?}"))
        })?;
        crate::child::ready_field(&line, "listen=").ok_or_else(|| match self.exited() {
            Some(why) => why,
            None => format!("unexpected first line {:?}", line.trim()),
        })
    }

    /// Waits until `addr` accepts connections.
    pub fn wait_listening(&mut self, addr: SocketAddr) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some(why) = self.exited() {
                return Err(why);
            }
            if Instant::now() > deadline {
                return Err(format!("not listening on {addr} within {START_TIMEOUT:?}"));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        crate::child::stop(&mut self.child);
    }
}

/// A started target: where to connect, and its process when it has one.
pub struct Target {
    pub kind: Kind,
    pub addr: SocketAddr,
    pub process: Option<Process>,
    /// A second process serving the same port (`tcpbridge-x2`).
    pub twin: Option<Process>,
    /// RSS of its process tree once started and checked, before any load.
    pub fresh_rss_kib: Option<u64>,
}

impl Target {
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }

    /// Every process of the target (CPU, memory and syscalls are summed over them).
    pub fn pids(&self) -> Vec<u32> {
        self.process
            .iter()
            .chain(&self.twin)
            .map(Process::pid)
            .collect()
    }
}

/// Starts the backend (a child running this same executable).
pub fn start_backend(scratch: &Path) -> Result<(Process, SocketAddr), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    command.arg("__backend");
    let mut process =
        Process::spawn(command, &scratch.join("backend.log")).map_err(|e| e.to_string())?;
    let addr = process.ready_line()?;
    Ok((process, addr))
}

/// Starts `kind` in front of `upstream`. `Err` is the reason to skip it:
/// "not installed", or what went wrong. With `check`, one echo round trip
/// through it to the bench backend must succeed too.
pub fn start(
    kind: Kind,
    upstream: SocketAddr,
    ctx: &Context,
    check: bool,
) -> Result<Target, String> {
    if let Some(program) = kind.program() {
        if find_program(program).is_none() {
            return Err("skipped (not installed)".into());
        }
        if kind == Kind::Nginx && !Path::new(external::NGINX_STREAM_MODULE).exists() {
            return Err("skipped (not installed: nginx stream module)".into());
        }
    }
    if matches!(
        kind,
        Kind::Tcpbridge | Kind::TcpbridgeCopy | Kind::TcpbridgeX2
    ) && !ctx.tcpbridge.exists()
    {
        return Err(format!(
            "skipped (no binary at {})",
            ctx.tcpbridge.display()
        ));
    }
    if kind == Kind::TcpbridgePrevious
        && !ctx.tcpbridge_previous.as_ref().is_some_and(|p| p.exists())
    {
        return Err("skipped (set TCPBRIDGE_PREVIOUS_BIN to a tcpbridge binary)".into());
    }
    let mut target = launch(kind, upstream, ctx).map_err(|e| format!("failed to start: {e}"))?;
    if check {
        echo_check(target.addr).map_err(|e| format!("failed end-to-end check: {e}"))?;
    }
    if target.process.is_some() {
        target.fresh_rss_kib = Some(target.pids().into_iter().map(procstat::tree_rss_kib).sum());
    }
    Ok(target)
}

fn launch(kind: Kind, upstream: SocketAddr, ctx: &Context) -> Result<Target, String> {
    let log = ctx.scratch.join(format!("{}.log", kind.name()));
    let spawn = |command: Command| Process::spawn(command, &log).map_err(|e| e.to_string());
    let write = |name: &str, text: String| -> Result<PathBuf, String> {
        let path = ctx.scratch.join(name);
        fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    };
    let (process, addr) = match kind {
        Kind::Direct => {
            return Ok(Target {
                kind,
                addr: upstream,
                process: None,
                twin: None,
                fresh_rss_kib: None,
            })
        }
        Kind::TcpbridgeX2 => {
            let mut first = spawn(tcpbridge(ctx, kind, upstream, "127.0.0.1:0"))?;
            let addr = first.ready_line()?;
            // The second process binds the port the first was given (SO_REUSEPORT).
            let log = ctx.scratch.join("tcpbridge-x2-twin.log");
            let mut twin = Process::spawn(tcpbridge(ctx, kind, upstream, &addr.to_string()), &log)
                .map_err(|e| e.to_string())?;
            twin.ready_line()?;
            return Ok(Target {
                kind,
                addr,
                process: Some(first),
                twin: Some(twin),
                fresh_rss_kib: None,
            });
        }
        Kind::Tcpbridge | Kind::TcpbridgeCopy | Kind::TcpbridgePrevious => {
            let mut process = spawn(tcpbridge(ctx, kind, upstream, "127.0.0.1:0"))?;
            let addr = process.ready_line()?;
            (process, addr)
        }
        Kind::TokioCt | Kind::TokioMt | Kind::Thread => {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let mut command = Command::new(exe);
            command.args(["__proxy", kind.name(), &upstream.to_string()]);
            let mut process = spawn(command)?;
            let addr = process.ready_line()?;
            (process, addr)
        }
        Kind::Haproxy | Kind::HaproxySplice | Kind::Nginx | Kind::Socat | Kind::Rinetd => {
            let listen = free_port().map_err(|e| e.to_string())?;
            let dir = &ctx.scratch;
            let mut command = Command::new(kind.program().expect("third-party"));
            match kind {
                Kind::Haproxy | Kind::HaproxySplice => {
                    let splice = kind == Kind::HaproxySplice;
                    let text = external::haproxy_config(listen, upstream, ctx.max_sessions, splice);
                    command
                        .arg("-db")
                        .arg("-f")
                        .arg(write("haproxy.cfg", text)?);
                }
                Kind::Nginx => {
                    let text =
                        external::nginx_stream_config(dir, listen, upstream, ctx.max_sessions);
                    command.args(external::nginx_args(
                        dir,
                        &write("nginx-stream.conf", text)?,
                    ));
                }
                Kind::Socat => {
                    command.args(external::socat_args(listen, upstream));
                }
                _ => {
                    let text = external::rinetd_config(dir, listen, upstream);
                    command.arg("-f").arg("-c").arg(write("rinetd.conf", text)?);
                }
            }
            let mut process = spawn(command)?;
            process.wait_listening(listen)?;
            (process, listen)
        }
    };
    Ok(Target {
        kind,
        addr,
        process: Some(process),
        twin: None,
        fresh_rss_kib: None,
    })
}

/// A port the kernel just handed out on 127.0.0.1, released for a program
/// that needs a fixed one (a small race, harmless on a quiet loopback).
pub fn free_port() -> io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// The full path of `program` on `PATH`, if any.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// One echo round trip through `addr` to the backend.
fn echo_check(addr: SocketAddr) -> io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(&backend::header(backend::ECHO, 0))?;
    stream.write_all(b"ping")?;
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply)?;
    if &reply != b"ping" {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "echo mismatch"));
    }
    Ok(())
}
