//! A userland chaos relay that sits on a TCP path (client -> chaos -> target)
//! and misbehaves on purpose, in place of netem: per direction it can delay
//! each chunk, cut the stream into small chunks (1 byte with TCP_NODELAY),
//! limit the rate, send FIN or RST after N bytes, or swallow everything
//! (blackhole). Std threads and blocking sockets only.
//!
//! A connection's two directions are pumped by two threads. EOF is passed on
//! as `shutdown(Write)`, a reset as a reset. Resets use `connect(AF_UNSPEC)`
//! on the socket (the kernel's `tcp_disconnect`), which sends an RST at once
//! even while the other pump holds a duplicate of the descriptor; SO_LINGER 0
//! is set as well so the final close never sends a FIN.
//!
//! Dropping a [`Chaos`] stops it: the listener and every connection are shut
//! down and the threads end (joined for at most 2 s).

use super::wait_for;
use socket2::SockRef;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What one direction of the relay does to the bytes it forwards.
#[derive(Clone, Debug, Default)]
pub struct Dir {
    /// Sleep this long before writing each chunk.
    pub delay: Option<Duration>,
    /// Write at most this many bytes per `write` (1: byte at a time).
    pub chunk: Option<usize>,
    /// Forward at most this many bytes per second.
    pub rate: Option<u64>,
    /// After forwarding this many bytes: FIN toward the destination; later
    /// bytes from the source are read and dropped.
    pub fin_after: Option<u64>,
    /// After forwarding this many bytes (and their acknowledgement, at most
    /// 1 s): RST to both the destination and the source.
    pub rst_after: Option<u64>,
    /// Read everything from the source, forward nothing (no FIN either).
    pub blackhole: bool,
}

/// Options for both directions.
#[derive(Clone, Debug, Default)]
pub struct ChaosOptions {
    /// Bytes from the connecting peer toward the target.
    pub to_upstream: Dir,
    /// Bytes from the target back toward the connecting peer.
    pub to_client: Dir,
}

/// One direction, as an index into [`Chaos`]'s counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    ToUpstream = 0,
    ToClient = 1,
}

#[derive(Default)]
struct Control {
    stop: AtomicBool,
    /// Bytes forwarded per direction, over all connections.
    forwarded: [AtomicU64; 2],
    /// Every socket of every connection, to shut them down on drop.
    sockets: Mutex<Vec<TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Control {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps `d` in slices, ending early when the relay stops.
    fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.stopped() {
            let now = Instant::now();
            if now >= until {
                return;
            }
            thread::sleep((until - now).min(Duration::from_millis(50)));
        }
    }

    fn spawn(&self, f: impl FnOnce() + Send + 'static) {
        let h = thread::spawn(f);
        self.threads.lock().expect("chaos threads").push(h);
    }
}

/// A running chaos relay: connect to [`Chaos::addr`] to reach the target.
pub struct Chaos {
    pub addr: SocketAddr,
    ctl: Arc<Control>,
}

impl Chaos {
    /// Listens on 127.0.0.1:0 and relays every connection to `target`.
    pub fn start(target: SocketAddr, opts: ChaosOptions) -> Chaos {
        let listener = TcpListener::bind("127.0.0.1:0").expect("chaos: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("chaos: local_addr");
        let ctl = Arc::new(Control::default());
        let c = Arc::clone(&ctl);
        ctl.spawn(move || {
            for conn in listener.incoming() {
                if c.stopped() {
                    return;
                }
                if let Ok(client) = conn {
                    start_conn(&c, client, target, &opts);
                }
            }
        });
        Chaos { addr, ctl }
    }

    /// Bytes forwarded in direction `w` so far (all connections).
    pub fn forwarded(&self, w: Way) -> u64 {
        self.ctl.forwarded[w as usize].load(Ordering::SeqCst)
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        self.ctl.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept, then every blocked read or write.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        for s in self.ctl.sockets.lock().expect("chaos sockets").drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        let threads: Vec<JoinHandle<()>> = self
            .ctl
            .threads
            .lock()
            .expect("chaos threads")
            .drain(..)
            .collect();
        wait_for(Duration::from_secs(2), || {
            threads.iter().all(|h| h.is_finished())
        });
        for h in threads.into_iter().filter(|h| h.is_finished()) {
            let _ = h.join();
        }
    }
}

/// Connects to the target and starts the two pumps of one connection.
fn start_conn(ctl: &Arc<Control>, client: TcpStream, target: SocketAddr, opts: &ChaosOptions) {
    let Ok(upstream) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
        return; // dropping the client sends it a FIN
    };
    let clones = (client.try_clone(), upstream.try_clone());
    let (Ok(client2), Ok(upstream2)) = clones else {
        return;
    };
    for s in [&client, &upstream] {
        let _ = s.set_nodelay(true);
        if let Ok(dup) = s.try_clone() {
            ctl.sockets.lock().expect("chaos sockets").push(dup);
        }
    }
    let (c1, c2) = (Arc::clone(ctl), Arc::clone(ctl));
    let (up_dir, down_dir) = (opts.to_upstream.clone(), opts.to_client.clone());
    ctl.spawn(move || pump(&c1, Way::ToUpstream, client, upstream2, &up_dir));
    ctl.spawn(move || pump(&c2, Way::ToClient, upstream, client2, &down_dir));
}

/// Sends an RST on `s` now (`connect(AF_UNSPEC)` disconnects a TCP socket
/// with a reset), and makes its last close send none of FIN.
pub fn rst_now(s: &TcpStream) {
    let _ = SockRef::from(s).set_linger(Some(Duration::ZERO));
    let addr = libc::sockaddr {
        sa_family: libc::AF_UNSPEC as libc::sa_family_t,
        sa_data: [0; 14],
    };
    // SAFETY: a plain syscall on a descriptor we own, with a valid sockaddr.
    unsafe {
        libc::connect(
            s.as_raw_fd(),
            &addr,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        )
    };
}

/// Unacknowledged bytes in `s`'s send queue (SIOCOUTQ).
fn unacked(s: &TcpStream) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one c_int.
    let rc = unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    if rc == 0 {
        n as usize
    } else {
        0
    }
}

/// One direction of one connection: `src` -> `dst`, shaped by `dir`.
fn pump(ctl: &Control, way: Way, mut src: TcpStream, mut dst: TcpStream, dir: &Dir) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    let start = Instant::now();
    let limit = dir.rst_after.or(dir.fin_after);
    loop {
        if ctl.stopped() {
            return;
        }
        let want = limit.map_or(buf.len(), |l| (l - sent).min(buf.len() as u64) as usize);
        if want == 0 {
            break;
        }
        let n = match src.read(&mut buf[..want]) {
            Ok(0) => {
                if !dir.blackhole {
                    let _ = dst.shutdown(Shutdown::Write);
                }
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                if !dir.blackhole && !ctl.stopped() {
                    rst_now(&dst);
                }
                return;
            }
        };
        if dir.blackhole {
            continue;
        }
        for piece in buf[..n].chunks(dir.chunk.unwrap_or(n).max(1)) {
            if let Some(d) = dir.delay {
                ctl.pause(d);
            }
            if let Some(rate) = dir.rate {
                let due = Duration::from_secs_f64((sent + piece.len() as u64) as f64 / rate as f64);
                ctl.pause(due.saturating_sub(start.elapsed()));
            }
            if dst.write_all(piece).is_err() {
                if !ctl.stopped() {
                    rst_now(&src);
                }
                return;
            }
            sent += piece.len() as u64;
            ctl.forwarded[way as usize].fetch_add(piece.len() as u64, Ordering::SeqCst);
        }
    }
    // The byte limit was reached.
    if dir.rst_after.is_some() {
        wait_for(Duration::from_secs(1), || unacked(&dst) == 0);
        rst_now(&dst);
        rst_now(&src);
        return;
    }
    let _ = dst.shutdown(Shutdown::Write);
    // Swallow whatever else the source sends, until it ends.
    while !ctl.stopped() && matches!(src.read(&mut buf), Ok(n) if n > 0) {}
}
