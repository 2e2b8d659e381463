//! The proxies under test: how each is found, configured, started on 127.0.0.1,
//! checked with one tunnel end to end, and what settings it ran with.
//!
//! | target | protocol | process |
//! |---|---|---|
//! | `tcpbridge-connect` | HTTP CONNECT | `tcpbridge connect`, one mio loop |
//! | `tinyproxy` | HTTP CONNECT | `tinyproxy -d -c CFG` |
//! | `tcpbridge-socks` | SOCKS5 | `tcpbridge socks` |
//! | `microsocks` | SOCKS5 | `microsocks -i 127.0.0.1 -p P`, a thread per client |
//! | `dante` | SOCKS5 | `danted -f CFG -N 1`, a process tree |
//!
//! tcpbridge denies loopback destinations by default: it is given one `--allow` rule
//! naming the destination server's address and port, and limits above what the bench
//! opens (every client of the bench is 127.0.0.1).

use std::env;
use std::fs;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::client::{self, Protocol};
use crate::procs::{self, Process, Ready};
use crate::Ctx;

/// One proxy under test.
pub struct Target {
    pub name: &'static str,
    pub protocol: Protocol,
    /// The program looked for on `PATH` (empty: tcpbridge, found by the bench).
    program: &'static str,
}

/// Every target, in report order: each protocol's tcpbridge first, then its peers.
pub const ALL: [Target; 5] = [
    Target {
        name: "tcpbridge-connect",
        protocol: Protocol::HttpConnect,
        program: "",
    },
    Target {
        name: "tinyproxy",
        protocol: Protocol::HttpConnect,
        program: "tinyproxy",
    },
    Target {
        name: "tcpbridge-socks",
        protocol: Protocol::Socks5,
        program: "",
    },
    Target {
        name: "microsocks",
        protocol: Protocol::Socks5,
        program: "microsocks",
    },
    Target {
        name: "dante",
        protocol: Protocol::Socks5,
        program: "danted",
    },
];

/// Sessions, handshakes and sessions per client tcpbridge is allowed; tinyproxy's
/// `MaxClients`.
const LIMIT: usize = 4096;

/// A target whose program was found.
pub struct Found {
    pub target: &'static Target,
    binary: PathBuf,
}

/// A started target that passed its check.
pub struct Running {
    pub name: &'static str,
    pub protocol: Protocol,
    pub addr: SocketAddr,
    pub process: Process,
}

impl Running {
    /// The root of the target's process tree.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The targets whose programs exist, and a note for each that does not.
pub fn find(ctx: &Ctx) -> (Vec<Found>, Vec<String>) {
    let mut found = Vec::new();
    let mut notes = Vec::new();
    for target in &ALL {
        let binary = if target.program.is_empty() {
            Some(ctx.tcpbridge.clone())
        } else {
            on_path(target.program)
        };
        match binary {
            Some(binary) => found.push(Found { target, binary }),
            None => notes.push(format!(
                "{}: skipped (not installed: no `{}` on PATH)",
                target.name, target.program
            )),
        }
    }
    (found, notes)
}

impl Found {
    /// What the target runs with, for the report.
    pub fn settings(&self, ctx: &Ctx) -> String {
        let path = self.binary.display();
        match self.target.name {
            "tcpbridge-connect" | "tcpbridge-socks" => {
                format!(
                    "`tcpbridge {}`; one mio loop; default data path (16 KiB rings growing to 256 KiB, \
                     splice auto); `-q`: no line per session; it lowers `--max-sessions` to what \
                     `RLIMIT_NOFILE` allows, with a warning",
                    tcpbridge_args(self.target, ctx.dest, "127.0.0.1:0").join(" ")
                )
            }
            "tinyproxy" => format!(
                "`{path} -d -c CFG` ({}): `MaxClients {LIMIT}`, `Timeout 600`, `Allow \
                 127.0.0.1`, no `ConnectPort` line (every port allowed), `DisableViaHeader \
                 Yes`, `LogLevel Critical` to a file; a thread per client",
                version(&self.binary, "-v")
            ),
            "microsocks" => format!(
                "`{path} -i 127.0.0.1 -p P`: no authentication; no knobs (a thread per \
                 client, no client limit); it writes one line per client to stderr (a \
                 file here), and this version has no option to turn that off"
            ),
            _ => format!(
                "`{path} -f CFG -N 1` ({}), foreground: `internal`/`external` 127.0.0.1, \
                 `socksmethod: none`, `clientmethod: none`, `user.privileged: root`, \
                 `user.unprivileged: nobody`, `client pass` and `socks pass` from \
                 127.0.0.0/8, no connection logging; the mother forks negotiate, request \
                 and I/O children on demand (limits compiled in): measured as a process tree",
                version(&self.binary, "-v")
            ),
        }
    }

    /// Starts the target on a port of its own and checks one tunnel end to end
    /// (a 64-byte echo through it).
    pub fn start(&self, ctx: &Ctx, tag: &str) -> Result<Running, String> {
        let log = ctx.scratch.join(format!("{}-{tag}.log", self.target.name));
        let (process, addr) = match self.target.name {
            "tcpbridge-connect" | "tcpbridge-socks" => {
                let mut command = Command::new(&self.binary);
                command.args(tcpbridge_args(self.target, ctx.dest, "127.0.0.1:0"));
                let process = Process::start(command, &log, Ready::Line)?;
                let addr = process.field("listen=")?;
                (process, addr)
            }
            name => {
                let addr = procs::free_addr()?;
                let mut command = Command::new(&self.binary);
                let dir = &ctx.scratch;
                match name {
                    "tinyproxy" => {
                        let cfg = write_config(dir, name, tag, &tinyproxy_config(dir, tag, addr))?;
                        command.arg("-d").arg("-c").arg(cfg);
                    }
                    "microsocks" => {
                        command.args(["-i", "127.0.0.1", "-p", &addr.port().to_string()]);
                    }
                    _ => {
                        let cfg = write_config(dir, name, tag, &dante_config(dir, tag, addr))?;
                        command.arg("-f").arg(cfg).args(["-N", "1"]);
                        command.arg("-p").arg(dir.join(format!("dante-{tag}.pid")));
                    }
                }
                (Process::start(command, &log, Ready::Port(addr))?, addr)
            }
        };
        let running = Running {
            name: self.target.name,
            protocol: self.target.protocol,
            addr,
            process,
        };
        check(&running, ctx.dest)
            .map_err(|e| format!("check tunnel failed: {e}: {}", running.process.log_tail()))?;
        Ok(running)
    }
}

/// tcpbridge's command line.
fn tcpbridge_args(target: &Target, dest: SocketAddr, listen: &str) -> Vec<String> {
    let mode = match target.protocol {
        Protocol::HttpConnect => "connect",
        Protocol::Socks5 => "socks",
    };
    let limit = LIMIT.to_string();
    let rule = allow_rule(dest);
    [
        mode,
        "--listen",
        listen,
        "--allow",
        &rule,
        "--max-sessions",
        &limit,
        "--max-handshakes",
        &limit,
        "--max-sessions-per-client",
        &limit,
        "-q",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// The allow rule naming the destination server.
fn allow_rule(dest: SocketAddr) -> String {
    format!("{}/32:{}", dest.ip(), dest.port())
}

fn write_config(dir: &Path, name: &str, tag: &str, text: &str) -> Result<PathBuf, String> {
    let path = dir.join(format!("{name}-{tag}.conf"));
    fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

fn tinyproxy_config(dir: &Path, tag: &str, addr: SocketAddr) -> String {
    format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 600\nMaxClients {LIMIT}\nAllow 127.0.0.1\n\
         DisableViaHeader Yes\nLogLevel Critical\nLogFile \"{log}\"\nPidFile \"{pid}\"\n",
        port = addr.port(),
        log = dir.join(format!("tinyproxy-{tag}.own.log")).display(),
        pid = dir.join(format!("tinyproxy-{tag}.pid")).display(),
    )
}

fn dante_config(dir: &Path, tag: &str, addr: SocketAddr) -> String {
    format!(
        "logoutput: {log}\n\
         internal: 127.0.0.1 port = {port}\n\
         external: 127.0.0.1\n\
         socksmethod: none\n\
         clientmethod: none\n\
         user.privileged: root\n\
         user.unprivileged: nobody\n\
         client pass {{\n    from: 127.0.0.0/8 to: 0.0.0.0/0\n}}\n\
         socks pass {{\n    from: 127.0.0.0/8 to: 0.0.0.0/0\n}}\n",
        log = dir.join(format!("dante-{tag}.own.log")).display(),
        port = addr.port(),
    )
}

/// The name and version `PROGRAM FLAG` prints first (on stdout or stderr): the first
/// two words of its first line.
fn version(binary: &Path, flag: &str) -> String {
    Command::new(binary)
        .arg(flag)
        .output()
        .map(|o| {
            let text = [o.stdout, o.stderr].concat();
            let line = crate::machine::first_line(&String::from_utf8_lossy(&text));
            let words: Vec<&str> = line.split_whitespace().take(2).collect();
            words.join(" ").trim_end_matches('.').to_string()
        })
        .unwrap_or_default()
}

/// One tunnel to the destination server: a 64-byte echo through it.
pub fn check(running: &Running, dest: SocketAddr) -> std::io::Result<()> {
    let mut stream = client::open(running.addr, running.protocol, dest)?;
    let mut message = [b'x'; 65];
    message[0] = b'E';
    stream.write_all(&message)?;
    let mut echo = [0u8; 64];
    stream.read_exact(&mut echo)?;
    if echo != message[1..] {
        return Err(std::io::Error::other("wrong bytes echoed"));
    }
    Ok(())
}

/// Starts every found target (tagged `tag`); the running ones, and a note for each
/// that failed.
pub fn start_all(ctx: &Ctx, found: &[Found], tag: &str) -> (Vec<Running>, Vec<String>) {
    let mut running = Vec::new();
    let mut notes = Vec::new();
    for f in found {
        match f.start(ctx, tag) {
            Ok(r) => running.push(r),
            Err(e) => {
                eprintln!("{} ({tag}): failed: {e}", f.target.name);
                notes.push(format!("{}: failed: {e}", f.target.name));
            }
        }
    }
    (running, notes)
}
