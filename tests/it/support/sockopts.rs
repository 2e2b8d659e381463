//! The TCP options of the proxy's own connected sockets, read exactly.
//!
//! `ss -o` shows a running keepalive timer, never the probe interval, the count,
//! TCP_USER_TIMEOUT or TCP_NODELAY. So each socket descriptor of the proxy is copied into the test
//! process with pidfd_getfd(2) (Linux 5.6; allowed for our own child: the ptrace access
//! check passes) and read with getsockopt through socket2: the same file, so the same
//! options the proxy set. The copy is closed at once, before anything counts the
//! proxy's sockets again.

use super::{in_ci, Proxy};
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use socket2::SockRef;

/// Keepalive probes as the kernel holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probes {
    pub idle: Duration,
    pub interval: Duration,
    pub count: u32,
}

impl Probes {
    /// `IDLE:INTERVAL:COUNT` in seconds.
    pub fn secs(idle: u64, interval: u64, count: u32) -> Probes {
        Probes {
            idle: Duration::from_secs(idle),
            interval: Duration::from_secs(interval),
            count,
        }
    }
}

/// Keepalive (`None`: SO_KEEPALIVE off) and TCP_USER_TIMEOUT (`None`: 0, the kernel's
/// retransmission limits) of one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpOptions {
    pub keepalive: Option<Probes>,
    pub user_timeout: Option<Duration>,
}

impl TcpOptions {
    /// Probes `idle:interval:count` (seconds) and a user timeout in milliseconds.
    pub fn new(probes: Option<(u64, u64, u32)>, user_timeout_ms: Option<u64>) -> TcpOptions {
        TcpOptions {
            keepalive: probes.map(|(i, v, c)| Probes::secs(i, v, c)),
            user_timeout: user_timeout_ms.map(Duration::from_millis),
        }
    }
}

/// One connected TCP socket of the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxySocket {
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub options: TcpOptions,
    /// TCP_NODELAY (set on every connection, like the options; inherited on accept).
    pub nodelay: bool,
}

/// `pidfd_open(pid)`.
fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no
    // memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned to us, open and owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_getfd(pidfd, target)`: a copy of the process's descriptor `target`.
fn pidfd_getfd(pidfd: &OwnedFd, target: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes two descriptors and flags and returns a new descriptor
    // (close-on-exec) or -1; no memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as in `pidfd_open`.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// The socket's addresses and options, if it is a connected TCP socket.
fn read(fd: &OwnedFd) -> Option<ProxySocket> {
    let s = SockRef::from(fd);
    let peer = s.peer_addr().ok()?.as_socket()?;
    let local = s.local_addr().ok()?.as_socket()?;
    let keepalive = match s.keepalive().ok()? {
        false => None,
        true => Some(Probes {
            idle: s.tcp_keepalive_time().ok()?,
            interval: s.tcp_keepalive_interval().ok()?,
            count: s.tcp_keepalive_retries().ok()?,
        }),
    };
    let user_timeout = s.tcp_user_timeout().ok()?;
    Some(ProxySocket {
        local,
        peer,
        options: TcpOptions {
            keepalive,
            user_timeout,
        },
        nodelay: s.tcp_nodelay().ok()?,
    })
}

impl Proxy {
    /// Every connected TCP socket the proxy holds, with its options. `None` when
    /// pidfd_getfd is not available here (a skip line is printed; with `CI=true` this
    /// panics instead, so a missing capability cannot turn CI green).
    pub fn connected_sockets(&self) -> Option<Vec<ProxySocket>> {
        let pidfd = match pidfd_open(self.pid) {
            Ok(fd) => fd,
            Err(e) => return unavailable(format!("pidfd_open: {e}")),
        };
        let mut out = Vec::new();
        let Ok(dir) = fs::read_dir(format!("/proc/{}/fd", self.pid)) else {
            return Some(out);
        };
        for entry in dir.flatten() {
            let is_socket = fs::read_link(entry.path())
                .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
            let Some(n) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            if !is_socket {
                continue;
            }
            match pidfd_getfd(&pidfd, n) {
                Ok(copy) => out.extend(read(&copy)),
                // Closed since the listing: gone, not unreadable.
                Err(e) if e.raw_os_error() == Some(libc::EBADF) => {}
                Err(e) => return unavailable(format!("pidfd_getfd: {e}")),
            }
        }
        Some(out)
    }
}

/// Prints a skip line and returns `None`, or panics under `CI=true`.
fn unavailable<T>(why: String) -> Option<T> {
    assert!(!in_ci(), "reading the proxy's socket options: {why}");
    eprintln!("SKIP: cannot read the proxy's socket options ({why}); set CI=true to fail instead");
    None
}
