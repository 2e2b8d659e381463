//! TCP sockets as core [`Stream`]s: accepted and dialed connections, listening sockets,
//! and the one libc call neither std nor socket2 offer (reading SIOCOUTQ, with its
//! `SAFETY:` note). Everything else goes through mio and socket2.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use mio::net::TcpStream;
use socket2::SockRef;

use crate::core::stream::{classify_connect, ConnectStatus, Stream};

/// A TCP connection, client or upstream.
#[derive(Debug)]
pub struct Conn(TcpStream);

/// Keepalive and TCP_USER_TIMEOUT as plain values: `(idle, interval, count)` probes or
/// none (keepalive off), and a user timeout or none (the kernel's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Keepalive probes, `None` for off.
    pub probes: Option<(Duration, Duration, u32)>,
    /// TCP_USER_TIMEOUT (Linux), `None` for the kernel's default.
    pub user_timeout: Option<Duration>,
}

impl Tuning {
    /// Sets TCP_NODELAY, keepalive and TCP_USER_TIMEOUT on `sock`. Latency matters more
    /// than segment count for a relay (Nagle + delayed ACK stall small request/response
    /// traffic by ~40 ms). The first failure, if any: the connection works without them.
    fn apply(self, sock: SockRef<'_>) -> io::Result<()> {
        let nodelay = sock.set_tcp_nodelay(true);
        let keepalive = match self.probes {
            None => sock.set_keepalive(false),
            Some((idle, interval, count)) => {
                let k = socket2::TcpKeepalive::new()
                    .with_time(idle)
                    .with_interval(interval)
                    .with_retries(count);
                sock.set_tcp_keepalive(&k)
            }
        };
        #[cfg(target_os = "linux")]
        let user_timeout = sock.set_tcp_user_timeout(self.user_timeout);
        #[cfg(not(target_os = "linux"))]
        let user_timeout: io::Result<()> = Ok(());
        nodelay.and(keepalive).and(user_timeout)
    }
}

impl Conn {
    /// SO_LINGER 0: the close sends RST and drops unsent bytes, and leaves no TIME-WAIT
    /// behind (a relay evicting a flood of silent handshakes would otherwise hold one per
    /// connection for a minute). If it fails, the close sends FIN, which is still a close.
    pub fn reset_on_close(&self) {
        let _ = SockRef::from(&self.0).set_linger(Some(Duration::ZERO));
    }

    /// Wraps an accepted stream. Linux copies a listening socket's options to the
    /// connections it accepts, so one accepted on a [`tune_listener`]ed socket needs no
    /// call of its own; otherwise pass the tuning to set here.
    pub fn accepted(stream: TcpStream, tuning: Option<Tuning>) -> Conn {
        let conn = Conn(stream);
        if let Some(t) = tuning {
            conn.tune(t);
        }
        conn
    }

    /// Starts a non-blocking connect to `addr`, with `tuning` set on it (none: only
    /// TCP_NODELAY).
    pub fn dial(addr: SocketAddr, tuning: Option<Tuning>) -> io::Result<Conn> {
        let conn = Conn(TcpStream::connect(addr)?);
        match tuning {
            Some(t) => conn.tune(t),
            None => {
                let _ = conn.0.set_nodelay(true);
            }
        }
        Ok(conn)
    }

    /// Sets TCP_NODELAY, keepalive and TCP_USER_TIMEOUT. Failures are harmless: the
    /// connection works without them.
    pub fn tune(&self, tuning: Tuning) {
        let _ = tuning.apply(SockRef::from(&self.0));
    }

    /// Reads without consuming (`Ok(0)` at end of stream): a warm connection's check.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.peek(buf)
    }

    /// The local address (where a client connected).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    /// The mio stream, for registration.
    pub fn source(&mut self) -> &mut TcpStream {
        &mut self.0
    }
}

impl Stream for Conn {
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.0.read_vectored(bufs)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // writev(2) has no MSG_NOSIGNAL: SIGPIPE is ignored process-wide at start-up.
        self.0.write_vectored(bufs)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.0.shutdown(Shutdown::Write)
    }

    fn abort(&mut self) {
        self.reset_on_close();
    }

    fn unacked(&self) -> io::Result<usize> {
        unacked_bytes(&self.0)
    }

    fn connect_status(&mut self) -> ConnectStatus {
        // mio's recipe: take_error(), then peer_addr(); NotConnected means not yet.
        let peer = match self.0.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => self.0.peer_addr(),
        };
        // Simultaneous open to itself: an upstream port inside the ephemeral range with
        // nobody listening. Never a real upstream.
        let to_itself = peer
            .as_ref()
            .is_ok_and(|p| self.0.local_addr().is_ok_and(|local| local == *p));
        classify_connect(peer.map(|_| ()), to_itself)
    }

    fn splice_fd(&self) -> Option<i32> {
        use std::os::fd::AsRawFd;
        Some(self.0.as_raw_fd())
    }
}

#[cfg(target_os = "linux")]
fn unacked_bytes(stream: &TcpStream) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (== TIOCOUTQ) writes one c_int through the pointer, which points to
    // a live local; the fd is owned by `stream` and open for the duration of the call.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    if rc == 0 {
        Ok(usize::try_from(queued).unwrap_or(0))
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn unacked_bytes(_stream: &TcpStream) -> io::Result<usize> {
    Ok(0)
}

/// A non-blocking listener on `addr` (SO_REUSEADDR, as mio sets it) with the given
/// backlog; with `reuse_port`, SO_REUSEPORT is set before the bind, so other sockets with
/// it (other processes of the same user) may listen on `addr` too and the kernel spreads
/// new connections over them by a hash of the 4-tuple.
pub fn listen(
    addr: SocketAddr,
    backlog: i32,
    reuse_port: bool,
) -> io::Result<mio::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(mio::net::TcpListener::from_std(socket.into()))
}

/// Sets `tuning` on a listening socket, for the connections it will accept to inherit.
pub fn tune_listener(listener: &mio::net::TcpListener, tuning: Tuning) -> io::Result<()> {
    tuning.apply(SockRef::from(listener))
}

/// Whether SO_REUSEPORT is set on `listener` (a socket passed by socket activation has
/// what its `.socket` unit's `ReusePort=` says).
pub fn reuses_port(listener: &mio::net::TcpListener) -> io::Result<bool> {
    SockRef::from(listener).reuse_port()
}

/// A readable name for an I/O error, without the "(os error N)" noise.
pub fn describe(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// This host's interface addresses (IPv4 and IPv6), for telling a destination that is
/// the proxy itself; empty when they cannot be read.
pub fn local_addresses() -> Vec<std::net::IpAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we own until freeifaddrs; nothing else
    // aliases it.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut at = head;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*at };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: a non-null ifa_addr points to a sockaddr whose family says which
            // sockaddr_* it is; each is read only as its own type.
            let ip = unsafe {
                match i32::from((*ifa.ifa_addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                        Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                            sin.sin_addr.s_addr,
                        ))))
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                        Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
                    }
                    _ => None,
                }
            };
            out.extend(ip.filter(|ip| !out.contains(ip)));
        }
        at = ifa.ifa_next;
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn local_addresses_include_loopback_once() {
        let all = super::local_addresses();
        let lo = std::net::IpAddr::from([127, 0, 0, 1]);
        assert_eq!(all.iter().filter(|&&a| a == lo).count(), 1, "{all:?}");
    }
}
