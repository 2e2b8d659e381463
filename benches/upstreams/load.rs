//! The load: new sessions, each `connect`, write 1 byte, read the 1-byte echo, close.
//! Blocking std sockets, `TCP_NODELAY`, 5 s connect and read bounds. Its time to first
//! byte (TTFB) runs from just before `connect` to the echoed byte: what a client of a
//! server-speaks-after-request protocol waits for its first answer.
//!
//! Every loop stops at a deadline, at a session count, or after too many errors,
//! whichever comes first.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// Bound on each step of a session.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Failed sessions after which a run gives up.
const MAX_ERRORS: u64 = 50;
/// Stack of each load thread.
const THREAD_STACK: usize = 256 * 1024;

/// How sessions are started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One at a time, each as soon as the last closed.
    Sequential,
    /// One at a time, started at most every `interval` (a light, steady load).
    Paced(Duration),
    /// `n` clients, each sequential.
    Concurrent(usize),
}

/// What one run did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub sessions: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Each session's TTFB, in microseconds, ascending.
    pub ttfb_us: Vec<u64>,
    /// The first error, if any.
    pub first_error: Option<String>,
}

impl Outcome {
    pub fn per_second(&self) -> f64 {
        self.sessions as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One session; its TTFB.
fn session(addr: SocketAddr) -> io::Result<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(b"x")?;
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte)?;
    let ttfb = started.elapsed();
    if byte != *b"x" {
        return Err(io::Error::other("wrong byte echoed"));
    }
    Ok(ttfb)
}

/// One client's loop: sessions until `deadline` or `max`.
fn client(addr: SocketAddr, deadline: Instant, max: u64, pace: Option<Duration>) -> Outcome {
    let mut out = Outcome::default();
    let mut next = Instant::now();
    while out.sessions < max && out.errors < MAX_ERRORS {
        if let Some(interval) = pace {
            let now = Instant::now();
            if next > now {
                thread::sleep(next - now);
            }
            next = next.max(now) + interval;
        }
        if Instant::now() >= deadline {
            break;
        }
        match session(addr) {
            Ok(ttfb) => {
                out.sessions += 1;
                out.ttfb_us
                    .push(u64::try_from(ttfb.as_micros()).unwrap_or(u64::MAX));
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    out
}

/// Runs `shape` against `addr` for at most `run` and `max` sessions in all.
pub fn run(addr: SocketAddr, shape: Shape, run: Duration, max: u64) -> Outcome {
    let started = Instant::now();
    let deadline = started + run;
    let mut out = match shape {
        Shape::Sequential => client(addr, deadline, max, None),
        Shape::Paced(interval) => client(addr, deadline, max, Some(interval)),
        Shape::Concurrent(n) => {
            let per_client = max.div_ceil(n as u64);
            let outcomes: Vec<Outcome> = thread::scope(|scope| {
                let handles: Vec<_> = (0..n)
                    .filter_map(|_| {
                        thread::Builder::new()
                            .stack_size(THREAD_STACK)
                            .spawn_scoped(scope, move || client(addr, deadline, per_client, None))
                            .ok()
                    })
                    .collect();
                handles.into_iter().filter_map(|h| h.join().ok()).collect()
            });
            let mut all = Outcome::default();
            for o in outcomes {
                all.sessions += o.sessions;
                all.errors += o.errors;
                all.ttfb_us.extend(o.ttfb_us);
                if all.first_error.is_none() {
                    all.first_error = o.first_error;
                }
            }
            all
        }
    };
    out.elapsed = started.elapsed();
    out.ttfb_us.sort_unstable();
    out
}
