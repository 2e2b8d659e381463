//! The chains under test, each in front of the same backend on 127.0.0.1: how
//! each is configured, started, checked end to end, paused and stopped.
//!
//! tcpbridge prints `READY ...` lines, so it listens on port 0 and announces
//! its ports. rathole and bore need ports in their configuration: the harness
//! asks the kernel for a free port, releases it, hands it over and waits until
//! the program accepts on it. bore's control port is fixed (7835): when it is
//! taken, bore is skipped. Every child gets `PR_SET_PDEATHSIG` (SIGTERM), so
//! none outlives the bench, and its output goes to a log file in the scratch
//! directory (quoted when it fails). Only these children are ever signalled,
//! by their PID.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::backend::BANNER;
use crate::encrypted;
use crate::procfs;

/// Idle tunnels of the tcpbridge agent (`--pool`), and rathole's built-in
/// data-channel pool (`TCP_POOL_SIZE` in rathole 0.5.0's server.rs).
pub const POOL: usize = 8;
/// bore's fixed control port.
pub const BORE_CONTROL_PORT: u16 = 7835;
/// How long a program may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Every chain, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Direct,
    Forward,
    /// relay + agent with TLS tunnels (the default, `--tunnel-tls on`).
    Relay,
    /// relay + agent with plaintext tunnels (`--tunnel-tls off` on both).
    RelayPlain,
    Rathole,
    /// rathole with its Noise transport (`Noise_NK_25519_ChaChaPoly_BLAKE2s`).
    RatholeNoise,
    /// rathole with its TLS transport (native-tls: OpenSSL on Linux).
    RatholeTls,
    Bore,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Direct,
        Kind::Forward,
        Kind::Relay,
        Kind::RelayPlain,
        Kind::Rathole,
        Kind::RatholeNoise,
        Kind::RatholeTls,
        Kind::Bore,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Forward => "forward",
            Kind::Relay => "relay+agent",
            Kind::RelayPlain => "relay+agent plain",
            Kind::Rathole => "rathole",
            Kind::RatholeNoise => "rathole noise",
            Kind::RatholeTls => "rathole tls",
            Kind::Bore => "bore",
        }
    }

    /// The tcpbridge chains: relay and agent, with TLS tunnels or plain ones.
    pub fn is_relay(self) -> bool {
        matches!(self, Kind::Relay | Kind::RelayPlain)
    }

    /// The relay's and the agent's extra arguments for this chain.
    pub fn tunnel_args(self) -> &'static [&'static str] {
        match self {
            Kind::RelayPlain => &["--tunnel-tls", "off"],
            _ => &[],
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether the NAT side keeps a pool of idle tunnels or data channels.
    pub fn has_pool(self) -> bool {
        matches!(
            self,
            Kind::Relay | Kind::RelayPlain | Kind::Rathole | Kind::RatholeNoise | Kind::RatholeTls
        )
    }
}

/// The programs and the scratch directory.
pub struct Paths {
    pub scratch: PathBuf,
    pub tcpbridge: PathBuf,
    pub rathole: Option<PathBuf>,
    pub bore: Option<PathBuf>,
    /// Secret file shared by relay and agent; its text is also rathole's
    /// token and bore's secret.
    pub secret: PathBuf,
}

impl Paths {
    pub fn secret_text(&self) -> String {
        fs::read_to_string(&self.secret)
            .unwrap_or_default()
            .trim()
            .to_string()
    }
}

/// Writes a fresh secret with `tcpbridge gen-secret`.
pub fn write_secret(tcpbridge: &Path, path: &Path) -> Result<(), String> {
    let out = Command::new(tcpbridge)
        .arg("gen-secret")
        .output()
        .map_err(|e| format!("{}: {e}", tcpbridge.display()))?;
    if !out.status.success() || out.stdout.len() < 32 {
        return Err(format!("gen-secret failed: {}", out.status));
    }
    fs::write(path, &out.stdout).map_err(|e| format!("{}: {e}", path.display()))
}

/// A child process, stopped (SIGCONT, SIGTERM, then SIGKILL after 3 s) when dropped.
pub struct Process {
    child: Child,
    role: &'static str,
    log: PathBuf,
    stdout_lines: Option<mpsc::Receiver<String>>,
}

impl Process {
    /// Spawns `command` with its output to `log` (stdout piped instead when
    /// `ready_lines`) and the parent-death signal set. Spawn from the main
    /// thread only: the signal fires when the spawning thread ends.
    pub fn spawn(
        mut command: Command,
        role: &'static str,
        log: &Path,
        ready_lines: bool,
    ) -> io::Result<Process> {
        let file = File::create(log)?;
        let stdout = if ready_lines {
            Stdio::piped()
        } else {
            Stdio::from(file.try_clone()?)
        };
        command.stdin(Stdio::null()).stdout(stdout).stderr(file);
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
        let stdout_lines = child.stdout.take().map(|out| {
            let (tx, rx) = mpsc::channel();
            thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        });
        Ok(Process {
            child,
            role,
            log: log.to_path_buf(),
            stdout_lines,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn role(&self) -> &'static str {
        self.role
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(3).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" / ")
    }

    /// `Some(description)` once the child has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!(
                "{} exited ({status}): {}",
                self.role,
                self.log_tail()
            )),
            Ok(None) => None,
            Err(e) => Some(format!("{}: wait failed: {e}", self.role)),
        }
    }

    /// Waits for a stdout line starting with `READY` and returns its
    /// `key=value` words.
    pub fn ready_line(&mut self) -> Result<Vec<(String, String)>, String> {
        let lines = self.stdout_lines.as_ref().ok_or("stdout not captured")?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.starts_with("READY") => {
                    return Ok(line
                        .split_whitespace()
                        .filter_map(|w| w.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect())
                }
                Ok(_) => {}
                Err(_) => {
                    return Err(self.exited().unwrap_or_else(|| {
                        format!("{}: no READY line within {START_TIMEOUT:?}", self.role)
                    }))
                }
            }
        }
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
                return Err(format!(
                    "{}: not listening on {addr} within {START_TIMEOUT:?}",
                    self.role
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory preconditions; the pid is our own child's.
        unsafe { libc::kill(pid, sig) };
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // A frozen process must run again to handle SIGTERM.
        signal(self.pid(), libc::SIGCONT);
        crate::child::stop(&mut self.child);
    }
}

/// A child paused with SIGSTOP; it is resumed (SIGCONT) when this is dropped.
pub struct Frozen(u32);

impl Frozen {
    /// Stops `pid` and waits (at most 1 s) until the kernel reports it stopped.
    pub fn new(pid: u32) -> io::Result<Frozen> {
        signal(pid, libc::SIGSTOP);
        let frozen = Frozen(pid);
        let deadline = Instant::now() + Duration::from_secs(1);
        while !matches!(procfs::state(pid), Some('T' | 't')) {
            if Instant::now() > deadline {
                return Err(io::Error::other(format!("pid {pid} did not stop")));
            }
            thread::sleep(Duration::from_millis(1));
        }
        Ok(frozen)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal(self.0, libc::SIGCONT);
    }
}

/// A started chain: where public clients connect, and its processes (public
/// side first, then the NAT side). Dropping it stops the NAT side first, so
/// the public side never sees a tunnel lost.
pub struct Chain {
    pub kind: Kind,
    pub addr: SocketAddr,
    pub procs: Vec<Process>,
}

impl Drop for Chain {
    fn drop(&mut self) {
        while let Some(process) = self.procs.pop() {
            drop(process);
        }
    }
}

impl Chain {
    pub fn pids(&self) -> Vec<u32> {
        self.procs.iter().map(Process::pid).collect()
    }

    /// The public-side process (forward, relay, rathole server, bore server).
    pub fn public_pid(&self) -> Option<u32> {
        self.procs.first().map(Process::pid)
    }

    /// The NAT-side process (agent, rathole client, bore local).
    pub fn nat_pid(&self) -> Option<u32> {
        self.procs.get(1).map(Process::pid)
    }

    /// `Err` once one of its processes has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.procs.iter_mut().find_map(Process::exited) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .procs
            .iter()
            .map(|p| format!("{} pid {}", p.role(), p.pid()))
            .collect();
        parts.push(format!("public {}", self.addr));
        parts.join(", ")
    }
}

/// Starts `kind` in front of `backend` and checks that a new client gets the
/// backend's banner through it. `Err` is the reason to skip it.
pub fn start(kind: Kind, backend: SocketAddr, paths: &Paths) -> Result<Chain, String> {
    let chain = match kind {
        Kind::Direct => Chain {
            kind,
            addr: backend,
            procs: Vec::new(),
        },
        Kind::Forward => start_forward(backend, paths)?,
        Kind::Relay | Kind::RelayPlain => {
            let (relay_role, agent_role) = match kind {
                Kind::RelayPlain => ("relay plain", "agent plain"),
                _ => ("relay", "agent"),
            };
            let extra = kind.tunnel_args();
            let (relay, tunnel, public) = start_relay(paths, relay_role, extra)?;
            let agent = start_agent(paths, agent_role, tunnel, backend, POOL, extra)?;
            Chain {
                kind,
                addr: public,
                procs: vec![relay, agent],
            }
        }
        Kind::Rathole | Kind::RatholeNoise | Kind::RatholeTls => {
            start_rathole(kind, backend, paths)?
        }
        Kind::Bore => start_bore(backend, paths)?,
    };
    banner_check(chain.addr).map_err(|e| format!("failed end-to-end check: {e}"))?;
    Ok(chain)
}

fn start_forward(backend: SocketAddr, paths: &Paths) -> Result<Chain, String> {
    let mut command = Command::new(&paths.tcpbridge);
    command.args(["forward", "--listen", "127.0.0.1:0", "--upstream"]);
    command.arg(backend.to_string());
    command.args(["--buffer-size", "16KiB", "-q"]);
    let log = paths.scratch.join("forward.log");
    let mut process = Process::spawn(command, "forward", &log, true).map_err(|e| e.to_string())?;
    let fields = process.ready_line()?;
    let addr = field_addr(&fields, "listen")?;
    Ok(Chain {
        kind: Kind::Forward,
        addr,
        procs: vec![process],
    })
}

fn field_addr(fields: &[(String, String)], key: &str) -> Result<SocketAddr, String> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| format!("READY line without {key}="))
}

/// Starts `tcpbridge relay` with one service `svc`; returns it, the tunnel
/// address and the public address.
pub fn start_relay(
    paths: &Paths,
    role: &'static str,
    extra: &[&str],
) -> Result<(Process, SocketAddr, SocketAddr), String> {
    let mut command = Command::new(&paths.tcpbridge);
    command.args(["relay", "--tunnel-listen", "127.0.0.1:0"]);
    command.args(["--public", "svc=127.0.0.1:0", "--secret-file"]);
    command.arg(&paths.secret);
    command.args(["--buffer-size", "16KiB", "-q"]);
    command.args(extra);
    let log = paths
        .scratch
        .join(format!("{}.log", role.replace(' ', "-")));
    let mut process = Process::spawn(command, role, &log, true).map_err(|e| e.to_string())?;
    let fields = process.ready_line()?;
    let tunnel = field_addr(&fields, "tunnel")?;
    let public = field_addr(&fields, "public.svc")?;
    Ok((process, tunnel, public))
}

/// Starts `tcpbridge agent --pool POOL` (and `extra`) for service `svc` and
/// waits for its READY line (a tunnel has authenticated).
pub fn start_agent(
    paths: &Paths,
    role: &'static str,
    tunnel: SocketAddr,
    backend: SocketAddr,
    pool: usize,
    extra: &[&str],
) -> Result<Process, String> {
    let mut command = Command::new(&paths.tcpbridge);
    command.args(["agent", "--relay", &tunnel.to_string()]);
    command.args(["--service", &format!("svc={backend}"), "--secret-file"]);
    command.arg(&paths.secret);
    command.args(["--pool", &pool.to_string(), "--buffer-size", "16KiB", "-q"]);
    command.args(extra);
    let log = paths
        .scratch
        .join(format!("{}.log", role.replace(' ', "-")));
    let mut process = Process::spawn(command, role, &log, true).map_err(|e| e.to_string())?;
    process.ready_line()?;
    Ok(process)
}

/// A port the kernel just handed out on 127.0.0.1, released for a program
/// that needs a fixed one (a small race, harmless on a quiet loopback).
fn free_port() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))
}

fn start_rathole(kind: Kind, backend: SocketAddr, paths: &Paths) -> Result<Chain, String> {
    let program = paths
        .rathole
        .as_ref()
        .ok_or("skipped: rathole not installed")?;
    let control = free_port()?;
    let public = free_port()?;
    let token = paths.secret_text();
    let transport = match kind {
        Kind::RatholeNoise => encrypted::noise(program)?,
        Kind::RatholeTls => encrypted::tls(&paths.scratch)?,
        _ => encrypted::Transport::tcp(),
    };
    let (server_transport, client_transport) = (&transport.server, &transport.client);
    let server_toml = format!(
        "[server]\nbind_addr = \"{control}\"\ndefault_token = \"{token}\"\n\n\
         {server_transport}\n[server.transport.tcp]\nnodelay = true\n\n\
         [server.services.svc]\nbind_addr = \"{public}\"\nnodelay = true\n"
    );
    let client_toml = format!(
        "[client]\nremote_addr = \"{control}\"\ndefault_token = \"{token}\"\n\n\
         {client_transport}\n[client.transport.tcp]\nnodelay = true\n\n\
         [client.services.svc]\nlocal_addr = \"{backend}\"\nnodelay = true\n"
    );
    let write = |name: &str, text: &str| -> Result<PathBuf, String> {
        let path = paths.scratch.join(name);
        fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    };
    let stem = kind.name().replace(' ', "-");
    let server_cfg = write(&format!("{stem}-server.toml"), &server_toml)?;
    let client_cfg = write(&format!("{stem}-client.toml"), &client_toml)?;
    let spawn = |role: &'static str, side: &str, cfg: &Path| -> Result<Process, String> {
        let mut command = Command::new(program);
        command.arg(cfg).env("RUST_LOG", "warn");
        let log = paths.scratch.join(format!("{stem}-{side}.log"));
        Process::spawn(command, role, &log, false).map_err(|e| e.to_string())
    };
    let mut server = spawn("rathole server", "server", &server_cfg)?;
    server.wait_listening(control)?;
    let mut client = spawn("rathole client", "client", &client_cfg)?;
    // The server opens the service's listener once the client's control
    // channel is up; the probe connection is one visitor.
    client.wait_listening(public)?;
    Ok(Chain {
        kind,
        addr: public,
        procs: vec![server, client],
    })
}

fn start_bore(backend: SocketAddr, paths: &Paths) -> Result<Chain, String> {
    let program = paths.bore.as_ref().ok_or("skipped: bore not installed")?;
    let control = SocketAddr::from(([127, 0, 0, 1], BORE_CONTROL_PORT));
    drop(
        TcpListener::bind(control).map_err(|e| {
            format!("skipped: bore's fixed control port {control} is not free ({e})")
        })?,
    );
    let public = free_port()?;
    let secret = paths.secret_text();
    let mut server_cmd = Command::new(program);
    server_cmd.args(["server", "--bind-addr", "127.0.0.1"]);
    server_cmd.env("BORE_SECRET", &secret);
    let log = paths.scratch.join("bore-server.log");
    let mut server =
        Process::spawn(server_cmd, "bore server", &log, false).map_err(|e| e.to_string())?;
    server.wait_listening(control)?;
    let mut local_cmd = Command::new(program);
    local_cmd.args(["local", &backend.port().to_string(), "--local-host"]);
    local_cmd.arg(backend.ip().to_string());
    local_cmd.args(["--to", "127.0.0.1", "--port", &public.port().to_string()]);
    local_cmd.env("BORE_SECRET", &secret);
    let log = paths.scratch.join("bore-local.log");
    let mut local =
        Process::spawn(local_cmd, "bore local", &log, false).map_err(|e| e.to_string())?;
    local.wait_listening(public)?;
    Ok(Chain {
        kind: Kind::Bore,
        addr: public,
        procs: vec![server, local],
    })
}

/// A new client through `addr` receives the backend's banner.
pub fn banner_check(addr: SocketAddr) -> io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte)?;
    if byte[0] != BANNER {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "wrong banner"));
    }
    Ok(())
}
