//! Loopback clients and upstream servers on std threads with blocking sockets.
//! Every socket made here has read and write timeouts, so a test that waits
//! for bytes that never come fails instead of hanging.

use super::accept_queue_len;
use super::{recv_all, wait_for, End};
use socket2::{Domain, SockRef, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Read/write timeout on every test socket: the failure bound of any read.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Sets [`IO_TIMEOUT`] as read and write timeout.
pub fn with_timeouts(s: TcpStream) -> TcpStream {
    s.set_read_timeout(Some(IO_TIMEOUT))
        .expect("set_read_timeout");
    s.set_write_timeout(Some(IO_TIMEOUT))
        .expect("set_write_timeout");
    s
}

/// Connects to `addr` (5 s bound) and sets the I/O timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    with_timeouts(s)
}

/// Closes `stream` abortively: SO_LINGER 0 then close, so the peer gets a real RST.
pub fn reset(stream: TcpStream) {
    SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(stream);
}

/// Bytes written on `stream` but not yet acknowledged by the peer (SIOCOUTQ).
pub fn unacked(stream: &TcpStream) -> usize {
    let mut n: libc::c_int = 0;
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    assert_eq!(rc, 0, "ioctl(SIOCOUTQ): {}", io::Error::last_os_error());
    n as usize
}

/// Waits until the peer's kernel acknowledged everything written on `stream`,
/// so a following RST cannot discard those bytes.
pub fn wait_acked(stream: &TcpStream, within: Duration) {
    assert!(
        wait_for(within, || unacked(stream) == 0),
        "peer did not acknowledge {} bytes within {within:?}",
        unacked(stream)
    );
}

/// Reads exactly `n` bytes (panics with context otherwise).
pub fn read_exact_n(s: &mut TcpStream, n: usize, what: &str) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("{what}: reading {n} bytes: {e}"));
    buf
}

/// Reads once more and reports how the stream ends: expects no further data.
pub fn read_end(s: &mut TcpStream) -> End {
    let mut b = [0u8; 1024];
    match s.read(&mut b) {
        Ok(0) => End::Eof,
        Ok(n) => End::Error(io::Error::other(format!(
            "unexpected {n} more bytes: {:?}",
            &b[..n.min(32)]
        ))),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => End::Reset,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            End::TimedOut
        }
        Err(e) => End::Error(e),
    }
}

/// One round trip of `payload` through an echo path; panics with context.
pub fn echo_roundtrip(s: &mut TcpStream, payload: &[u8]) {
    s.write_all(payload).expect("echo: write");
    let got = read_exact_n(s, payload.len(), "echo");
    assert!(got == payload, "echo returned different bytes");
}

/// Connects to `addr`, echoes 4 KiB, half-closes and expects EOF: a full,
/// clean session through a proxy in front of an echo server.
pub fn echo_once(addr: SocketAddr) {
    let mut s = connect(addr);
    echo_roundtrip(&mut s, &super::pattern(42, 4096));
    s.shutdown(Shutdown::Write).expect("shutdown(Write)");
    match read_end(&mut s) {
        End::Eof => {}
        other => panic!("echo_once: expected EOF after half-close, got {other:?}"),
    }
}

/// A listener on 127.0.0.1:0 serving each accepted connection on its own
/// thread. Dropping it stops accepting (already running handlers continue).
pub struct Upstream {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    /// Messages of handler threads that panicked.
    pub panics: Arc<Mutex<Vec<String>>>,
}

impl Upstream {
    /// Number of connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
    /// Panics if a handler thread panicked.
    pub fn assert_no_handler_panics(&self) {
        let p = self.panics.lock().expect("panics lock");
        assert!(p.is_empty(), "upstream handler panicked: {p:?}");
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// An upstream server running `handler` on every accepted connection (with
/// I/O timeouts set), each on its own thread.
pub fn scripted_server<F>(handler: F) -> Upstream
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    scripted_server_at("127.0.0.1:0".parse().expect("addr"), handler)
}

/// [`scripted_server`] listening on `at` (a port given again after a server on it was
/// dropped: the upstream listens again).
pub fn scripted_server_at<F>(at: SocketAddr, handler: F) -> Upstream
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    let listener = TcpListener::bind(at).unwrap_or_else(|e| panic!("bind upstream on {at}: {e}"));
    let addr = listener.local_addr().expect("upstream local_addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let panics = Arc::new(Mutex::new(Vec::new()));
    let handler = Arc::new(handler);
    let (acc, stp, pan) = (
        Arc::clone(&accepted),
        Arc::clone(&stop),
        Arc::clone(&panics),
    );
    thread::spawn(move || {
        for conn in listener.incoming() {
            if stp.load(Ordering::SeqCst) {
                return;
            }
            let Ok(conn) = conn else { continue };
            acc.fetch_add(1, Ordering::SeqCst);
            let (h, pan) = (Arc::clone(&handler), Arc::clone(&pan));
            thread::spawn(move || {
                let conn = with_timeouts(conn);
                if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| h(conn))) {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    pan.lock().expect("panics lock").push(msg);
                }
            });
        }
    });
    Upstream {
        addr,
        accepted,
        stop,
        panics,
    }
}

/// Echoes one connection until EOF, then half-closes.
pub fn echo_conn(mut s: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => {
                let _ = s.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// An echo server: echoes each connection until EOF, then half-closes.
pub fn echo_server() -> Upstream {
    scripted_server(echo_conn)
}

/// A scripted server whose *first* connection is an echo (for the warm-up
/// session, [`echo_once`], that precedes taking the fd baseline); every later
/// connection goes to `handler`.
pub fn scripted_server_with_warmup<F>(handler: F) -> Upstream
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    let seen = AtomicUsize::new(0);
    scripted_server(move |s| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            echo_conn(s)
        } else {
            handler(s)
        }
    })
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a port to release");
    l.local_addr().expect("local_addr")
}

/// An upstream address whose SYNs are dropped: a listener with backlog 0 that
/// never accepts, its accept queue filled by held connections. A connect to
/// it neither succeeds nor fails until the kernel gives up (~2 min).
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: Socket,
    _fillers: Vec<TcpStream>,
}

/// Builds a [`Blackhole`] on 127.0.0.1. With backlog 0 the kernel queues one
/// completed handshake and then drops SYNs. Checks that the fillers'
/// handshakes really completed (they sit in the accept queue, per
/// `/proc/thread-self/net/tcp`) and that one more connect times out.
pub fn blackhole() -> Blackhole {
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    listener.bind(&any.into()).expect("bind blackhole listener");
    listener.listen(0).expect("listen(0)");
    let addr = listener
        .local_addr()
        .expect("local_addr")
        .as_socket()
        .expect("inet addr");
    let mut fillers = Vec::new();
    let mut timed_out = false;
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => fillers.push(s),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                timed_out = true;
                break;
            }
            Err(e) => panic!("blackhole filler connect to {addr}: {e}"),
        }
    }
    assert!(
        timed_out && !fillers.is_empty(),
        "could not fill the accept queue of {addr} ({} fillers)",
        fillers.len()
    );
    let queued = || accept_queue_len("/proc/thread-self", addr.port()).unwrap_or(0) as usize;
    assert!(
        wait_for(Duration::from_secs(1), || queued() == fillers.len()),
        "blackhole: {} filler connects returned but {} sit in the accept queue",
        fillers.len(),
        queued()
    );
    Blackhole {
        addr,
        _listener: listener,
        _fillers: fillers,
    }
}

/// Measures how long `f` takes.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t0 = Instant::now();
    let r = f();
    (r, t0.elapsed())
}

/// First byte of a session that asks a [`dispatch_server`] for an echo.
pub const ECHO: u8 = b'E';

/// An upstream that echoes sessions whose first byte is [`ECHO`] and hands
/// every other session (first byte consumed) to `scenario`, so one upstream
/// serves the warm-up, a test's scenario and the final liveness echo.
pub fn dispatch_server<F>(scenario: F) -> Upstream
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    scripted_server(move |mut s| {
        let mut mode = [0u8; 1];
        if s.read_exact(&mut mode).is_ok() {
            if mode[0] == ECHO {
                echo_conn(s)
            } else {
                scenario(s)
            }
        }
    })
}

/// A complete echo session through a proxy in front of a [`dispatch_server`]:
/// [`ECHO`], 4 KiB round trip, half-close, EOF.
pub fn dispatch_echo_once(addr: SocketAddr) {
    let mut s = connect(addr);
    s.write_all(&[ECHO]).expect("echo: mode byte");
    echo_roundtrip(&mut s, &super::pattern(42, 4096));
    s.shutdown(Shutdown::Write).expect("echo: shutdown(Write)");
    match read_end(&mut s) {
        End::Eof => {}
        other => panic!("dispatch_echo_once: expected EOF after half-close, got {other:?}"),
    }
}

/// `GET path` over a fresh connection to an HTTP endpoint (the proxy's metrics);
/// (status, body). The server closes after its one answer.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = connect(addr);
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").expect("http: send request");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("http: read reply");
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("http: no header end in {reply:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("http: no status line in {reply:?}"));
    (status, body.to_string())
}

/// A connection to `to` from the local address `from` (`127.0.0.x`, or `::1`), so a
/// test can be a source the proxy tells apart from 127.0.0.1.
pub fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    try_connect_from(from, to).unwrap_or_else(|e| panic!("connect {to} from {from}: {e}"))
}

/// Checks that a connection from `from` to `to` is refused: reset (which may reach the
/// connect itself) or closed with no byte sent. `context` goes into the panic message.
pub fn assert_refused_from(from: &str, to: SocketAddr, context: &dyn Fn() -> String) {
    match try_connect_from(from, to) {
        Ok(mut s) => {
            let (got, end) = recv_all(&mut s, 64);
            assert!(
                got.is_empty() && matches!(end, End::Eof | End::Reset),
                "a refused connection from {from} got {} bytes ({end:?})\n{}",
                got.len(),
                context()
            );
        }
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset,
            "a refused connection from {from}: {e}\n{}",
            context()
        ),
    }
}

/// [`connect_from`], with the connect's error returned (a flood whose connections the
/// proxy resets as they come).
pub fn try_connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let ip: std::net::IpAddr = from.parse().expect("an IP address");
    let src = SocketAddr::new(ip, 0);
    let domain = socket2::Domain::for_address(to);
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    s.bind(&src.into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(5))?;
    Ok(with_timeouts(s.into()))
}
