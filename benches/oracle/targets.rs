//! The proxies the close-semantics scenarios run through, each started fresh
//! on 127.0.0.1 in front of one upstream address with the same short timers:
//! connect 1 s, idle 2 s. tcpbridge twice (`--reset-policy mirror` and `fin`),
//! HAProxy `mode tcp` and nginx `stream` when installed (nginx twice: with
//! `proxy_half_close` off, its default, and on).
//!
//! tcpbridge prints `READY listen=IP:PORT`; HAProxy and nginx get a port the
//! harness bound and released, then are waited on until it is listening. Every
//! child gets `PR_SET_PDEATHSIG` and is stopped (SIGTERM, then SIGKILL) when dropped.

use std::fs::{self, File};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Where Debian's nginx keeps the dynamic stream module.
const NGINX_STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// One column of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    TcpbridgeMirror,
    TcpbridgeFin,
    Haproxy,
    Nginx,
    /// nginx with `proxy_half_close on` (off by default).
    NginxHalfClose,
}

impl Target {
    pub const ALL: [Target; 5] = [
        Target::TcpbridgeMirror,
        Target::TcpbridgeFin,
        Target::Haproxy,
        Target::Nginx,
        Target::NginxHalfClose,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::TcpbridgeMirror => "tcpbridge (mirror)",
            Target::TcpbridgeFin => "tcpbridge (fin)",
            Target::Haproxy => "HAProxy",
            Target::Nginx => "nginx stream",
            Target::NginxHalfClose => "nginx stream, `proxy_half_close on`",
        }
    }

    /// `Err(reason)` when the target cannot run here.
    pub fn available(self, tcpbridge: &Path) -> Result<(), String> {
        match self {
            Target::TcpbridgeMirror | Target::TcpbridgeFin if !tcpbridge.exists() => {
                Err(format!("no binary at {}", tcpbridge.display()))
            }
            Target::Haproxy if find_program("haproxy").is_none() => Err("not installed".into()),
            Target::Nginx | Target::NginxHalfClose if find_program("nginx").is_none() => {
                Err("not installed".into())
            }
            Target::Nginx | Target::NginxHalfClose if !Path::new(NGINX_STREAM_MODULE).exists() => {
                Err("not installed (stream module)".into())
            }
            _ => Ok(()),
        }
    }
}

/// A started proxy: where clients connect.
pub struct Running {
    child: Child,
    pub addr: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        crate::child::stop(&mut self.child);
    }
}

fn spawn(mut command: Command, log: &Path) -> Result<Child, String> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(log).map_err(|e| format!("{}: {e}", log.display()))?);
    // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().map_err(|e| e.to_string())
}

/// Starts `target` in front of `upstream`, files in `scratch`.
pub fn start(
    target: Target,
    upstream: SocketAddr,
    tcpbridge: &Path,
    scratch: &Path,
) -> Result<Running, String> {
    let log = scratch.join("stderr.log");
    match target {
        Target::TcpbridgeMirror | Target::TcpbridgeFin => {
            let policy = if target == Target::TcpbridgeFin {
                "fin"
            } else {
                "mirror"
            };
            let mut command = Command::new(tcpbridge);
            command
                .args(["forward", "--listen", "127.0.0.1:0", "--upstream"])
                .arg(upstream.to_string())
                .args(["--connect-timeout", "1s", "--idle-timeout", "2s"])
                .args(["--reset-policy", policy, "-q"]);
            let mut child = spawn(command, &log)?;
            let addr = ready_line(&mut child)?;
            Ok(Running { child, addr })
        }
        Target::Haproxy | Target::Nginx | Target::NginxHalfClose => {
            let listen = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| e.to_string())?;
            let config = scratch.join("proxy.conf");
            let mut command;
            if target == Target::Haproxy {
                fs::write(&config, haproxy_config(listen, upstream)).map_err(|e| e.to_string())?;
                command = Command::new("haproxy");
                command.arg("-db").arg("-f").arg(&config);
            } else {
                let half_close = target == Target::NginxHalfClose;
                fs::write(&config, nginx_config(scratch, listen, upstream, half_close))
                    .map_err(|e| e.to_string())?;
                command = Command::new("nginx");
                command.arg("-p").arg(scratch).arg("-e").arg(&log);
                command.arg("-c").arg(&config);
            }
            let child = spawn(command, &log)?;
            let mut running = Running {
                child,
                addr: listen,
            };
            wait_listening(&mut running)?;
            Ok(running)
        }
    }
}

/// HAProxy `mode tcp`, one thread, default retries.
fn haproxy_config(listen: SocketAddr, upstream: SocketAddr) -> String {
    format!(
        "global
    nbthread 1

defaults
    mode tcp
    timeout connect 1s
    timeout client 2s
    timeout server 2s

frontend oracle
    bind {listen}
    default_backend upstream

backend upstream
    server upstream1 {upstream}
"
    )
}

/// nginx `stream`, one worker.
fn nginx_config(dir: &Path, listen: SocketAddr, upstream: SocketAddr, half_close: bool) -> String {
    let dir = dir.display();
    let half_close = if half_close { "on" } else { "off" };
    format!(
        "load_module {NGINX_STREAM_MODULE};
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{
    worker_connections 64;
}}
stream {{
    server {{
        listen {listen};
        proxy_pass {upstream};
        proxy_connect_timeout 1s;
        proxy_timeout 2s;
        proxy_half_close {half_close};
    }}
}}
"
    )
}

fn ready_line(child: &mut Child) -> Result<SocketAddr, String> {
    let line = crate::child::first_line(child, Duration::from_secs(10))
        .ok_or("no READY line within 10 s")?;
    crate::child::ready_field(&line, "listen=")
        .ok_or(format!("unexpected first line {:?}", line.trim()))
}

/// Waits until the proxy's port is in LISTEN state, read from `/proc/net/tcp`
/// rather than by connecting: a probe connection would reach the upstream.
fn wait_listening(running: &mut Running) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let local = format!("0100007F:{:04X}", running.addr.port());
    loop {
        let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        let listening = table.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A")
        });
        if listening {
            return Ok(());
        }
        if let Ok(Some(status)) = running.child.try_wait() {
            return Err(format!("exited ({status})"));
        }
        if Instant::now() > deadline {
            return Err(format!("not listening on {} within 10 s", running.addr));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The full path of `program` on `PATH` (or in the sbin directories).
fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
