//! systemd integration: readiness notification and socket activation.
//!
//! - [`notify`] sends one state message (`READY=1`, `RELOADING=1`, `STOPPING=1`,
//!   `STATUS=...`) to the service manager's datagram socket named by `NOTIFY_SOCKET`, as
//!   `sd_notify(3)` does: a filesystem path, or an abstract name when it starts with `@`.
//!   The socket is non-blocking, so a notification never stalls the event loop.
//! - [`monotonic_usec`] is the `CLOCK_MONOTONIC` reading that `Type=notify-reload` wants
//!   beside `RELOADING=1` (`MONOTONIC_USEC=...`), read by the `sd-notify` crate.
//! - [`take_listeners`] adopts the listening sockets a `.socket` unit passed in
//!   (`LISTEN_PID`, `LISTEN_FDS`: descriptors 3, 4, ...), as `sd_listen_fds(3)` does, and
//!   removes those variables from the environment. [`adopt`] checks each with socket2
//!   (`is_listener`, `protocol`, `set_cloexec`: its `all` feature).
//!
//! `notify` and the `LISTEN_*` parsing stay hand-written: in `sd-notify` 0.5.0 (measured),
//! `notify` reads `NOTIFY_SOCKET` itself (no [`notify_to`]), connects to `@name` as a path
//! (a file `@name` in the working directory gets it, the abstract name never), takes
//! relative paths, and blocks: with a manager not reading, its 12th call was still blocked
//! after 3 s. Its `listen_fds` takes `LISTEN_FDS=+1` and `LISTEN_PID=0`, sets close-on-exec
//! on all passed descriptors before any is checked, and reports a closed one as "Bad file
//! descriptor", naming neither it nor the variable.
//!
//! `unsafe` is left where nothing safe exists, each with a `SAFETY:` note: checking that an
//! inherited descriptor is open, owning it, and `SO_ACCEPTCONN` where socket2 lacks it.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;

use socket2::{SockRef, Type};

/// The first descriptor passed by socket activation (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// Sends `state` to the service manager if `NOTIFY_SOCKET` is set: `Ok(false)` when it is
/// not (not started by systemd, or not `Type=notify`), `Ok(true)` once sent.
///
/// An empty, relative or non-UTF-8 `NOTIFY_SOCKET`, or a send that fails (including
/// `WouldBlock` if the manager's queue is full), is an error for the caller to log.
pub fn notify(state: &str) -> io::Result<bool> {
    let socket = std::env::var_os("NOTIFY_SOCKET");
    let socket = match socket.as_deref().map(|s| s.to_str()) {
        None => return Ok(false),
        Some(Some(s)) => s,
        Some(None) => return Err(invalid("NOTIFY_SOCKET is not valid UTF-8".to_string())),
    };
    notify_to(socket, state).map(|()| true)
}

/// Sends `state` as one datagram to `socket`: an absolute path, or `@name` for a name in
/// the abstract namespace (Linux).
pub fn notify_to(socket: &str, state: &str) -> io::Result<()> {
    if state.is_empty() {
        return Err(invalid("empty notification".to_string()));
    }
    let sender = UnixDatagram::unbound()?;
    sender.set_nonblocking(true)?;
    let sent = if let Some(name) = socket.strip_prefix('@') {
        if name.is_empty() {
            return Err(invalid("NOTIFY_SOCKET '@' names no socket".to_string()));
        }
        send_abstract(&sender, name.as_bytes(), state.as_bytes())?
    } else if socket.starts_with('/') {
        sender.send_to(state.as_bytes(), socket)?
    } else {
        return Err(invalid(format!(
            "NOTIFY_SOCKET '{socket}' is neither an absolute path nor an @abstract name"
        )));
    };
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("notification cut short: {sent} of {} bytes", state.len()),
        ));
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn send_abstract(sender: &UnixDatagram, name: &[u8], bytes: &[u8]) -> io::Result<usize> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    sender.send_to_addr(bytes, &addr)
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_sender: &UnixDatagram, _name: &[u8], _bytes: &[u8]) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract socket names exist only on Linux",
    ))
}

/// Microseconds of `CLOCK_MONOTONIC`, the clock systemd compares `MONOTONIC_USEC=` with
/// (0 if the clock cannot be read, which Linux never reports).
pub fn monotonic_usec() -> u64 {
    match sd_notify::NotifyState::monotonic_usec_now() {
        Ok(sd_notify::NotifyState::MonotonicUsec(usec)) => u64::try_from(usec).unwrap_or(0),
        _ => 0,
    }
}

/// The listening sockets passed by socket activation, in descriptor order (the order of
/// the `ListenStream=` lines), each close-on-exec and non-blocking. Empty when
/// `LISTEN_PID` is unset or names another process.
///
/// `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` are removed from the environment in
/// every case, so nothing started later inherits them. Call it once, early at start-up:
/// before any thread is spawned (the environment is not thread-safe) and before anything
/// closes descriptors it did not open (a passed number could then be reused). A malformed
/// variable or a descriptor that is not a listening TCP socket is an error naming it; the
/// listeners adopted before it are closed, the descriptors after it left untouched.
pub fn take_listeners() -> io::Result<Vec<TcpListener>> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    let Some(count) =
        parse_listen_env(pid.as_deref(), fds.as_deref(), std::process::id()).map_err(invalid)?
    else {
        return Ok(Vec::new());
    };
    // Not `with_capacity(count)`: the count is only checked to fit a RawFd.
    let mut listeners = Vec::new();
    // `parse_listen_env` bounds `count` so that every descriptor fits a RawFd.
    let last = LISTEN_FDS_START.saturating_add(RawFd::try_from(count).unwrap_or(RawFd::MAX));
    for fd in LISTEN_FDS_START..last {
        if !is_open(fd) {
            return Err(invalid(format!(
                "inherited descriptor {fd} (LISTEN_FDS={count}) is not open"
            )));
        }
        // SAFETY: the descriptor is open (checked above) and was passed to this process
        // by its service manager for it to own: LISTEN_PID names this process, and
        // descriptors the process opens itself get numbers above the passed ones as long
        // as nothing closed these (the contract above), so no other owner exists. The
        // variables are already removed, so it is never taken twice.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        listeners.push(adopt(owned)?);
    }
    Ok(listeners)
}

/// Checks that `fd` is a listening TCP socket (IPv4 or IPv6), makes it close-on-exec and
/// non-blocking, and returns it as a listener. Otherwise an error names the descriptor
/// and what it is; the descriptor is closed.
pub fn adopt(fd: OwnedFd) -> io::Result<TcpListener> {
    let raw = fd.as_raw_fd();
    let refuse = |what: &str| {
        invalid(format!(
            "inherited descriptor {raw} is {what}, not a listening TCP socket"
        ))
    };
    let socket = SockRef::from(&fd);
    match socket.r#type() {
        Ok(t) if t == Type::STREAM => {}
        Ok(t) if t == Type::DGRAM => return Err(refuse("a datagram socket")),
        Ok(_) => return Err(refuse("a socket of another type")),
        Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => return Err(refuse("not a socket")),
        Err(e) => return Err(e),
    }
    if socket.local_addr()?.as_socket().is_none() {
        return Err(refuse("not an IPv4 or IPv6 socket"));
    }
    #[cfg(any(target_os = "android", target_os = "freebsd", target_os = "linux"))]
    let listening = socket.is_listener()?;
    #[cfg(not(any(target_os = "android", target_os = "freebsd", target_os = "linux")))]
    let listening = accepts_connections(&socket)?;
    if !listening {
        return Err(refuse("a stream socket that is not listening"));
    }
    // A stream socket of the IP families is TCP, unless it is SCTP's one-to-one style;
    // Linux says which (`SO_PROTOCOL`).
    #[cfg(target_os = "linux")]
    if !matches!(socket.protocol(), Ok(Some(p)) if p == socket2::Protocol::TCP) {
        return Err(refuse("a stream socket of another protocol"));
    }
    socket.set_cloexec(true)?;
    let listener = TcpListener::from(fd);
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// How many descriptors socket activation passed to `my_pid`: `Ok(None)` when
/// `LISTEN_PID` is unset, names another process, or `LISTEN_FDS` is unset or 0.
/// Malformed values are an error naming the variable.
fn parse_listen_env(
    pid: Option<&str>,
    fds: Option<&str>,
    my_pid: u32,
) -> Result<Option<usize>, String> {
    let Some(pid) = pid else {
        return Ok(None);
    };
    let pid = parse_decimal(pid)
        .and_then(|p| u32::try_from(p).ok())
        .filter(|&p| p > 0)
        .ok_or_else(|| format!("LISTEN_PID '{pid}' is not a process id"))?;
    if pid != my_pid {
        return Ok(None);
    }
    let Some(fds) = fds else {
        return Ok(None);
    };
    let limit = usize::try_from(RawFd::MAX - LISTEN_FDS_START).unwrap_or(usize::MAX);
    match parse_decimal(fds) {
        Some(0) => Ok(None),
        Some(n) if n <= limit => Ok(Some(n)),
        _ => Err(format!("LISTEN_FDS '{fds}' is not a descriptor count")),
    }
}

/// A plain decimal number: ASCII digits only, no sign, no spaces.
fn parse_decimal(text: &str) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// True if `fd` is an open descriptor.
fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags; on a closed descriptor it fails
    // with EBADF and has no effect.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// `SO_ACCEPTCONN`, where socket2 has no `is_listener` (macOS, the other BSDs, ...).
#[cfg(not(any(target_os = "android", target_os = "freebsd", target_os = "linux")))]
fn accepts_connections(socket: &SockRef<'_>) -> io::Result<bool> {
    let mut on: libc::c_int = 0;
    let mut len = std::mem::size_of_val(&on) as libc::socklen_t;
    let on_ptr = (&mut on as *mut libc::c_int).cast();
    let (fd, level, name) = (socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ACCEPTCONN);
    // SAFETY: getsockopt writes at most `len` bytes (one c_int) to `on` and updates `len`,
    // both live locals; the socket is borrowed, so the descriptor stays open for the call.
    match unsafe { libc::getsockopt(fd, level, name, on_ptr, &mut len) } {
        0 => Ok(on != 0),
        _ => Err(io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpStream, UdpSocket};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    /// A name no other test (or test run) uses.
    fn unique(tag: &str) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        format!("tcpbridge-test-{tag}-{}-{n}", std::process::id())
    }

    fn receive(socket: &UnixDatagram) -> Vec<u8> {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 256];
        let n = socket.recv(&mut buf).expect("a datagram");
        buf[..n].to_vec()
    }

    #[test]
    fn notify_to_a_path_sends_the_exact_bytes_in_one_datagram() {
        let path = std::env::temp_dir().join(unique("notify"));
        let receiver = UnixDatagram::bind(&path).expect("bind");
        let state = "READY=1\nSTATUS=listening on 127.0.0.1:8080";
        notify_to(path.to_str().expect("utf-8 path"), state).expect("sent");
        assert_eq!(receive(&receiver), state.as_bytes());
        notify_to(path.to_str().expect("utf-8 path"), "STOPPING=1").expect("sent");
        assert_eq!(receive(&receiver), b"STOPPING=1");
        let _ = std::fs::remove_file(&path);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn notify_to_an_abstract_name() {
        use std::os::linux::net::SocketAddrExt;
        let name = unique("abstract");
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("abstract address");
        let receiver = UnixDatagram::bind_addr(&addr).expect("bind");
        notify_to(&format!("@{name}"), "RELOADING=1\nMONOTONIC_USEC=42").expect("sent");
        assert_eq!(receive(&receiver), b"RELOADING=1\nMONOTONIC_USEC=42");
    }

    #[test]
    fn bad_notify_sockets_are_errors() {
        for socket in ["", "relative/notify", "notify", "@"] {
            let e = notify_to(socket, "READY=1").expect_err(socket);
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{socket}: {e}");
        }
        let missing = std::env::temp_dir().join(unique("missing"));
        assert!(notify_to(missing.to_str().expect("utf-8 path"), "READY=1").is_err());
        let path = std::env::temp_dir().join(unique("empty"));
        let _receiver = UnixDatagram::bind(&path).expect("bind");
        assert!(notify_to(path.to_str().expect("utf-8 path"), "").is_err());
        let _ = std::fs::remove_file(&path);
    }

    /// A manager that does not read fills its queue: the send fails, it never blocks.
    #[test]
    fn notify_to_a_full_queue_is_an_error_not_a_wait() {
        let path = std::env::temp_dir().join(unique("full"));
        let _receiver = UnixDatagram::bind(&path).expect("bind");
        let to = path.to_str().expect("utf-8 path");
        let e = (0..1000).find_map(|_| notify_to(to, "STATUS=x").err());
        assert_eq!(e.map(|e| e.kind()), Some(io::ErrorKind::WouldBlock));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn listen_env_for_this_process() {
        assert_eq!(parse_listen_env(None, None, 42), Ok(None));
        assert_eq!(parse_listen_env(None, Some("2"), 42), Ok(None));
        assert_eq!(parse_listen_env(Some("42"), Some("1"), 42), Ok(Some(1)));
        assert_eq!(parse_listen_env(Some("42"), Some("3"), 42), Ok(Some(3)));
        assert_eq!(parse_listen_env(Some("42"), Some("0"), 42), Ok(None));
        assert_eq!(parse_listen_env(Some("42"), None, 42), Ok(None));
        assert_eq!(parse_listen_env(Some("7"), Some("2"), 42), Ok(None));
        assert_eq!(parse_listen_env(Some("7"), Some("junk"), 42), Ok(None));
    }

    #[test]
    fn garbage_listen_env_names_the_variable() {
        for pid in ["", "abc", "-42", " 42", "42 ", "0", "99999999999"] {
            let e = parse_listen_env(Some(pid), Some("1"), 42).expect_err(pid);
            assert!(e.starts_with("LISTEN_PID"), "{e}");
        }
        for fds in ["", "x", "-1", "+1", "1 ", "1e3", "2147483647"] {
            let e = parse_listen_env(Some("42"), Some(fds), 42).expect_err(fds);
            assert!(e.starts_with("LISTEN_FDS"), "{e}");
        }
        assert_eq!(
            parse_listen_env(Some("42"), Some("2147483644"), 42),
            Ok(Some(2_147_483_644))
        );
    }

    #[test]
    fn monotonic_usec_increases() {
        let a = monotonic_usec();
        std::thread::sleep(Duration::from_millis(2));
        let b = monotonic_usec();
        assert!(a > 0);
        assert!(b >= a + 2_000, "{a} then {b}");
    }

    #[test]
    fn adopt_takes_a_listening_tcp_socket() {
        // IPv4 always; IPv6 where the machine has it.
        for original in ["127.0.0.1:0", "[::1]:0"].map(TcpListener::bind) {
            let Ok(original) = original else { continue };
            let addr = original.local_addr().expect("addr");
            let listener = adopt(OwnedFd::from(original)).expect("a listener");
            assert_eq!(listener.local_addr().expect("addr"), addr);
            let e = listener.accept().expect_err("non-blocking, nobody waiting");
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
            // SAFETY: reads the flags of a descriptor the listener keeps open.
            let flags = unsafe { libc::fcntl(listener.as_raw_fd(), libc::F_GETFD) };
            assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
            let _client = TcpStream::connect(addr).expect("connect");
            listener.set_nonblocking(false).expect("blocking");
            listener.accept().expect("accepts");
        }
    }

    fn refusal(fd: OwnedFd) -> String {
        let raw = fd.as_raw_fd();
        let e = adopt(fd).expect_err("not a listening TCP socket");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let text = e.to_string();
        assert!(text.contains(&format!("descriptor {raw} ")), "{text}");
        text
    }

    #[test]
    fn adopt_refuses_what_is_not_a_listening_tcp_socket() {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
        assert!(refusal(OwnedFd::from(udp)).contains("datagram"));

        let server = TcpListener::bind("127.0.0.1:0").expect("bind");
        let stream = TcpStream::connect(server.local_addr().expect("addr")).expect("connect");
        assert!(refusal(OwnedFd::from(stream)).contains("not listening"));

        let bound = socket2::Socket::new(socket2::Domain::IPV4, Type::STREAM, None).expect("s");
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
        bound.bind(&any.into()).expect("bind");
        assert!(refusal(OwnedFd::from(bound)).contains("not listening"));

        let path = std::env::temp_dir().join(unique("unix-listener"));
        let unix = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        assert!(refusal(OwnedFd::from(unix)).contains("IPv4 or IPv6"));
        let _ = std::fs::remove_file(&path);

        let file = std::fs::File::open("/dev/null").expect("open");
        assert!(refusal(OwnedFd::from(file)).contains("not a socket"));
    }
}
