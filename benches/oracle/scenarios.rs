//! The close-semantics scenarios, each run once through one proxy: what the
//! client and the upstream observed (bytes received, then EOF, RST or still
//! open, and when, counted from the moment the scenario's event happened).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, SockRef, Socket, Type};

/// How long a side watches before calling its connection "open".
const WATCH: Duration = Duration::from_secs(8);
/// Payload each way in the data scenarios.
const PAYLOAD: usize = 10 * 1024;

/// One row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    ClientFin,
    UpstreamFin,
    UpstreamRst,
    ClientRst,
    Refused,
    Blackholed,
    Idle,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::ClientFin,
        Scenario::UpstreamFin,
        Scenario::UpstreamRst,
        Scenario::ClientRst,
        Scenario::Refused,
        Scenario::Blackholed,
        Scenario::Idle,
    ];

    /// Row label and what happens, for the table.
    pub fn describe(self) -> (&'static str, &'static str) {
        match self {
            Scenario::ClientFin => ("client FIN", "client sends 10 KiB, `shutdown(WR)`; upstream reads to EOF, replies 10 KiB, closes. t=0 at the client's FIN"),
            Scenario::UpstreamFin => ("upstream FIN", "upstream sends 10 KiB, `shutdown(WR)`; client reads to EOF, replies 10 KiB, closes. t=0 at the upstream's FIN"),
            Scenario::UpstreamRst => ("upstream RST mid-stream", "client sends 10 KiB; upstream reads it, sends 10 KiB, resets (SO_LINGER 0). t=0 at the reset"),
            Scenario::ClientRst => ("client RST mid-stream", "client sends 10 KiB; upstream reads it, sends 10 KiB; client reads it, resets. t=0 at the reset"),
            Scenario::Refused => ("upstream refused", "nothing listens on the upstream port. t=0 at the client's connect"),
            Scenario::Blackholed => ("upstream blackholed", "the upstream's accept queue is full, so its SYNs go unanswered. t=0 at the client's connect"),
            Scenario::Idle => ("idle", "both connected, both silent. t=0 once the upstream has accepted"),
        }
    }
}

/// What one side saw.
#[derive(Clone, Debug)]
pub enum Seen {
    /// `bytes` received, then `end` (EOF, RST, open) at `at` after t=0.
    Ended {
        bytes: usize,
        end: &'static str,
        at: Duration,
    },
    /// This side is the one that acted (reset), or does not exist.
    NotApplicable(&'static str),
}

impl Seen {
    pub fn render(&self) -> String {
        match self {
            Seen::Ended { bytes, end, at } => {
                format!("{bytes} B, {end} at {:.1} s", at.as_secs_f64())
            }
            Seen::NotApplicable(why) => why.to_string(),
        }
    }
}

/// Reads until EOF, RST or `WATCH`; returns the bytes read and how it ended
/// (the time is taken when it ended, to be made relative to t=0 by the caller).
fn watch(stream: &mut TcpStream) -> (usize, &'static str, Instant) {
    let deadline = Instant::now() + WATCH;
    let mut bytes = 0;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return (bytes, "open", Instant::now());
        }
        match stream.read(&mut buf) {
            Ok(0) => return (bytes, "EOF", Instant::now()),
            Ok(n) => bytes += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (bytes, "open", Instant::now())
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                return (bytes, "RST", Instant::now())
            }
            Err(_) => return (bytes, "error", Instant::now()),
        }
    }
}

fn seen(watched: (usize, &'static str, Instant), t0: Instant) -> Seen {
    let (bytes, end, when) = watched;
    Seen::Ended {
        bytes,
        end,
        at: when.saturating_duration_since(t0),
    }
}

fn abort(stream: TcpStream) {
    let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

fn read_exactly(stream: &mut TcpStream, n: usize) -> Result<(), String> {
    let mut buf = vec![0u8; n];
    stream
        .set_read_timeout(Some(WATCH))
        .and_then(|()| stream.read_exact(&mut buf))
        .map_err(|e| format!("reading {n} B: {e}"))
}

/// Accepts one connection within `WATCH`.
fn accept(listener: &TcpListener) -> Result<TcpStream, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + WATCH;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).map_err(|e| e.to_string())?;
                return Ok(stream);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("upstream accept: {e}")),
        }
    }
}

/// Where the proxy's upstream points for `scenario`, and what keeps it so.
pub enum Upstream {
    Listening(TcpListener),
    Refusing(SocketAddr),
    /// The full listener and the connections that fill its queue (kept open).
    Blackholed(Socket, #[allow(dead_code)] Vec<Socket>),
}

impl Upstream {
    pub fn new(scenario: Scenario) -> Result<Upstream, String> {
        let err = |e: std::io::Error| e.to_string();
        match scenario {
            Scenario::Refused => {
                let addr = TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map_err(err)?;
                Ok(Upstream::Refusing(addr))
            }
            Scenario::Blackholed => blackhole(),
            _ => Ok(Upstream::Listening(
                TcpListener::bind("127.0.0.1:0").map_err(err)?,
            )),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            Upstream::Listening(l) => l.local_addr().expect("listener address"),
            Upstream::Refusing(addr) => *addr,
            Upstream::Blackholed(l, _) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .expect("listener address"),
        }
    }
}

/// A listener with backlog 0 whose queue is filled with connections nobody
/// accepts, so further SYNs are dropped.
fn blackhole() -> Result<Upstream, String> {
    let err = |e: std::io::Error| e.to_string();
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(err)?;
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    listener.bind(&any.into()).map_err(err)?;
    listener.listen(0).map_err(err)?;
    let addr = listener.local_addr().map_err(err)?;
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(err)?;
        if socket
            .connect_timeout(&addr, Duration::from_millis(300))
            .is_err()
        {
            return Ok(Upstream::Blackholed(listener, fillers));
        }
        fillers.push(socket);
    }
    Err("the backlog-0 listener never filled up".into())
}

/// Runs `scenario` through the proxy at `proxy`; returns (client, upstream).
pub fn run(
    scenario: Scenario,
    proxy: SocketAddr,
    upstream: &Upstream,
) -> Result<(Seen, Seen), String> {
    let mut client = TcpStream::connect_timeout(&proxy, Duration::from_secs(5))
        .map_err(|e| format!("client connect: {e}"))?;
    let connected = Instant::now();
    let listener = match upstream {
        Upstream::Listening(listener) => listener,
        Upstream::Refusing(_) => {
            return Ok((
                seen(watch(&mut client), connected),
                Seen::NotApplicable("(nothing listening)"),
            ))
        }
        Upstream::Blackholed(..) => {
            return Ok((
                seen(watch(&mut client), connected),
                Seen::NotApplicable("(SYN unanswered)"),
            ))
        }
    };
    if scenario != Scenario::Idle {
        client
            .write_all(&[b'c'; PAYLOAD])
            .map_err(|e| format!("client write: {e}"))?;
    }
    let mut server = accept(listener)?;
    match scenario {
        Scenario::ClientFin => {
            client
                .shutdown(Shutdown::Write)
                .map_err(|e| e.to_string())?;
            let t0 = Instant::now();
            let upstream_side = thread::spawn(move || {
                let watched = watch(&mut server);
                if watched.1 == "EOF" {
                    let _ = server.write_all(&[b'u'; PAYLOAD]);
                }
                watched
            });
            let client_seen = seen(watch(&mut client), t0);
            let upstream_seen = seen(upstream_side.join().map_err(|_| "panicked")?, t0);
            Ok((client_seen, upstream_seen))
        }
        Scenario::UpstreamFin => {
            read_exactly(&mut server, PAYLOAD)?;
            server
                .write_all(&[b'u'; PAYLOAD])
                .map_err(|e| e.to_string())?;
            server
                .shutdown(Shutdown::Write)
                .map_err(|e| e.to_string())?;
            let t0 = Instant::now();
            let upstream_side = thread::spawn(move || watch(&mut server));
            let watched = watch(&mut client);
            if watched.1 == "EOF" {
                let _ = client.write_all(&[b'c'; PAYLOAD]);
            }
            drop(client);
            let upstream_seen = seen(upstream_side.join().map_err(|_| "panicked")?, t0);
            Ok((seen(watched, t0), upstream_seen))
        }
        Scenario::UpstreamRst => {
            read_exactly(&mut server, PAYLOAD)?;
            server
                .write_all(&[b'u'; PAYLOAD])
                .map_err(|e| e.to_string())?;
            abort(server);
            let t0 = Instant::now();
            Ok((
                seen(watch(&mut client), t0),
                Seen::NotApplicable("(resets)"),
            ))
        }
        Scenario::ClientRst => {
            read_exactly(&mut server, PAYLOAD)?;
            server
                .write_all(&[b'u'; PAYLOAD])
                .map_err(|e| e.to_string())?;
            read_exactly(&mut client, PAYLOAD)?;
            abort(client);
            let t0 = Instant::now();
            // The upstream already read the client's 10 KiB: count what comes after.
            Ok((
                Seen::NotApplicable("(resets)"),
                seen(watch(&mut server), t0),
            ))
        }
        Scenario::Idle => {
            let t0 = Instant::now();
            let upstream_side = thread::spawn(move || watch(&mut server));
            let client_seen = seen(watch(&mut client), t0);
            let upstream_seen = seen(upstream_side.join().map_err(|_| "panicked")?, t0);
            Ok((client_seen, upstream_seen))
        }
        Scenario::Refused | Scenario::Blackholed => unreachable!("handled above"),
    }
}
