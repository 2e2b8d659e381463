//! Peers on the path between an agent and its relay, for the TLS tunnel tests: an
//! [`Observer`] that relays TCP bytes unchanged and records both directions, and a
//! [`Mitm`] that terminates TLS on both sides with keys of its own (the crate's own
//! `os::tls`, driven by polling from test threads) and relays the plaintext between
//! its two legs.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tcpbridge::core::stream::{ConnectStatus, Stream};
use tcpbridge::os::net::Conn;
use tcpbridge::os::tls::{AgentTls, Progress, RelayTls, TlsStream, Trust};

/// A listener on 127.0.0.1:0 whose connections are served by `serve` on their own
/// threads until the returned flag is set (it is when the owner drops).
fn serve_each(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> (SocketAddr, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the test peer");
    let addr = listener.local_addr().expect("local_addr");
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let stop = Arc::new(AtomicBool::new(false));
    let serve = Arc::new(serve);
    let flag = Arc::clone(&stop);
    thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((s, _)) => {
                    let serve = Arc::clone(&serve);
                    thread::spawn(move || serve(s));
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    (addr, stop)
}

/// A TCP relay that records every byte it passes, in both directions.
pub struct Observer {
    /// Where the agent connects (`--relay`).
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
}

impl Observer {
    /// Relays each connection to `to`.
    pub fn new(to: SocketAddr) -> Observer {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let (addr, stop) = serve_each(move |from| {
            let Ok(up) = TcpStream::connect(to) else {
                return;
            };
            let pairs = [
                (from.try_clone(), up.try_clone()),
                (up.try_clone(), from.try_clone()),
            ];
            for pair in pairs {
                let (Ok(mut a), Ok(mut b)) = pair else {
                    return;
                };
                let record = Arc::clone(&record);
                thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n @ 1..) = a.read(&mut buf) {
                        record.lock().expect("lock").extend_from_slice(&buf[..n]);
                        if b.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = b.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Observer { addr, seen, stop }
    }

    /// Every byte seen so far, both directions in arrival order.
    pub fn seen(&self) -> Vec<u8> {
        self.seen.lock().expect("lock").clone()
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A man in the middle: TLS with the agent under a key of its own, TLS with the relay
/// as any agent would, and the plaintext relayed between the two.
pub struct Mitm {
    /// Where the agent connects (`--relay`).
    pub addr: SocketAddr,
    legs: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Mitm {
    /// Intercepts each connection meant for the relay at `relay`.
    pub fn new(relay: SocketAddr) -> Mitm {
        let legs = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&legs);
        let key = RelayTls::generate().expect("a key for the man in the middle");
        let (addr, stop) = serve_each(move |from| {
            let _ = intercept(from, relay, &key, &count);
        });
        Mitm { addr, legs, stop }
    }

    /// Connections on which both TLS legs were made.
    pub fn legs_up(&self) -> usize {
        self.legs.load(Ordering::Relaxed)
    }
}

impl Drop for Mitm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A nonblocking crate connection of an accepted std socket.
fn conn_of(s: TcpStream) -> io::Result<Conn> {
    s.set_nonblocking(true)?;
    Ok(Conn::accepted(mio::net::TcpStream::from_std(s), None))
}

/// Drives `tls`'s handshake by polling, within 5 s.
fn handshake(tls: &mut TlsStream) -> io::Result<()> {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        match tls.handshake() {
            Ok(Progress::Done) => return Ok(()),
            Ok(Progress::Pending) => thread::sleep(Duration::from_millis(1)),
            Err(e) => return Err(e.into_io()),
        }
    }
    Err(io::ErrorKind::TimedOut.into())
}

fn intercept(
    from: TcpStream,
    relay: SocketAddr,
    key: &RelayTls,
    legs: &AtomicUsize,
) -> io::Result<()> {
    let mut agent_leg = TlsStream::server(conn_of(from)?, key);
    handshake(&mut agent_leg)?;
    let mut conn = Conn::dial(relay, None)?;
    let until = Instant::now() + Duration::from_secs(5);
    while !matches!(conn.connect_status(), ConnectStatus::Connected) {
        if Instant::now() > until {
            return Err(io::ErrorKind::TimedOut.into());
        }
        thread::sleep(Duration::from_millis(1));
    }
    let trust = AgentTls::new(Trust::Any).map_err(io::Error::other)?;
    let mut relay_leg = TlsStream::client(conn, &trust).map_err(io::Error::other)?;
    handshake(&mut relay_leg)?;
    legs.fetch_add(1, Ordering::Relaxed);
    let (mut up, mut down) = (Vec::new(), Vec::new());
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        let a = pass(&mut agent_leg, &mut relay_leg, &mut up)?;
        let b = pass(&mut relay_leg, &mut agent_leg, &mut down)?;
        if !(a || b) {
            thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(())
}

/// Moves plaintext from `a` to `b` (`held`: bytes `b` has not taken yet, offered again
/// first as the stream asks); whether anything moved; an error once either side ends.
fn pass(a: &mut TlsStream, b: &mut TlsStream, held: &mut Vec<u8>) -> io::Result<bool> {
    let mut moved = false;
    if held.is_empty() {
        let mut buf = [0u8; 4096];
        match a.read_vectored(&mut [IoSliceMut::new(&mut buf)]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                held.extend_from_slice(&buf[..n]);
                moved = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    if !held.is_empty() {
        match b.write_vectored(&[IoSlice::new(held)]) {
            Ok(n) => {
                held.drain(..n);
                moved = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(moved)
}
