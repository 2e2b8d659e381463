//! The load generator: blocking std sockets with TCP_NODELAY, one thread per
//! connection. Every loop is bounded by a deadline and a count, and every
//! socket has read and write timeouts, so a stuck chain fails a run instead of
//! hanging the bench. Connections are opened (and their banner read) before
//! the clock starts, except where connecting is the figure
//! ([`time_to_first_byte`]).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::backend::{self, BANNER, BLOCK, ECHO, LAST_BLOCK, SINK, SOURCE};

/// Read and write timeout of every load socket.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound on round trips per connection in one run.
const MAX_ROUND_TRIPS_PER_CONNECTION: usize = 2_000_000;
/// Upper bound on upload blocks in one run (64 GiB).
const MAX_BLOCKS: u64 = 1 << 20;
/// Stack of each load thread.
const THREAD_STACK: usize = 256 * 1024;
/// First byte of every upload block but the last.
const MORE_BLOCKS: u8 = 1;

/// Connects with TCP_NODELAY and the I/O timeouts.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// Reads the backend's one-byte banner.
pub fn read_banner(stream: &mut TcpStream) -> io::Result<()> {
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte)?;
    if byte[0] != BANNER {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "wrong banner"));
    }
    Ok(())
}

/// Connects, reads the banner, and selects `mode`.
fn open(addr: SocketAddr, mode: u8, argument: u64) -> io::Result<TcpStream> {
    let mut stream = connect(addr)?;
    read_banner(&mut stream)?;
    stream.write_all(&backend::header(mode, argument))?;
    Ok(stream)
}

/// Time from the start of `connect` to the banner's arrival, for one new client.
pub fn time_to_first_byte(addr: SocketAddr) -> io::Result<Duration> {
    let start = Instant::now();
    let mut stream = connect(addr)?;
    read_banner(&mut stream)?;
    Ok(start.elapsed())
}

/// Bytes moved one way and the time it took.
pub struct Transfer {
    pub bytes: u64,
    pub elapsed: Duration,
}

/// One stream sends blocks to the backend's sink for `duration`; the clock
/// stops when the sink has acknowledged every byte.
pub fn upload(addr: SocketAddr, duration: Duration) -> io::Result<Transfer> {
    let mut stream = open(addr, SINK, 0)?;
    let mut block = vec![MORE_BLOCKS; BLOCK];
    let start = Instant::now();
    let deadline = start + duration;
    let mut blocks = 0u64;
    while Instant::now() < deadline && blocks < MAX_BLOCKS {
        stream.write_all(&block)?;
        blocks += 1;
    }
    block[0] = LAST_BLOCK;
    stream.write_all(&block)?;
    blocks += 1;
    let mut count = [0u8; 8];
    stream.read_exact(&mut count)?;
    let elapsed = start.elapsed();
    let sent = blocks * BLOCK as u64;
    let acknowledged = u64::from_le_bytes(count);
    if acknowledged != sent {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("sent {sent} bytes, the backend counted {acknowledged}"),
        ));
    }
    Ok(Transfer {
        bytes: sent,
        elapsed,
    })
}

/// One stream receives what the backend's source sends for `duration`; the
/// clock runs from the request to the EOF.
pub fn download(addr: SocketAddr, duration: Duration) -> io::Result<Transfer> {
    let mut stream = connect(addr)?;
    read_banner(&mut stream)?;
    let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    let mut buf = vec![0u8; BLOCK];
    let start = Instant::now();
    stream.write_all(&backend::header(SOURCE, millis))?;
    let mut received = 0u64;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Transfer {
        bytes: received,
        elapsed: start.elapsed(),
    })
}

/// Round trips completed and their latencies (ascending, nanoseconds).
pub struct RoundTrips {
    pub count: u64,
    pub elapsed: Duration,
    pub latencies_ns: Vec<u64>,
}

/// `connections` echo sessions each send one byte and wait for it back, back
/// to back, for `duration` (closed loop: one message in flight per connection).
/// All sessions are open before the clock starts.
pub fn request_response(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
) -> io::Result<RoundTrips> {
    let streams = open_echo_sessions(addr, connections)?;
    let gate = Gate::default();
    let (start, results) = thread::scope(|scope| {
        let mut handles = Vec::with_capacity(connections);
        for (index, stream) in streams.iter().enumerate() {
            let gate = &gate;
            let handle = thread::Builder::new()
                .stack_size(THREAD_STACK)
                .spawn_scoped(scope, move || {
                    gate.wait()?;
                    ping_pong(stream, index as u8, duration)
                });
            match handle {
                Ok(h) => handles.push(h),
                Err(e) => {
                    gate.release(false);
                    return Err(e);
                }
            }
        }
        let start = gate.open_when_arrived(connections);
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("load thread panicked"))
            .collect();
        Ok((start, results))
    })?;
    let mut trips = RoundTrips {
        count: 0,
        elapsed: Duration::ZERO,
        latencies_ns: Vec::new(),
    };
    for result in results {
        let (latencies, end) = result?;
        trips.count += latencies.len() as u64;
        trips.latencies_ns.extend(latencies);
        trips.elapsed = trips.elapsed.max(end.saturating_duration_since(start));
    }
    trips.latencies_ns.sort_unstable();
    Ok(trips)
}

/// Holds load threads until all have arrived, then releases them together
/// (or tells them to give up when one could not be started).
#[derive(Default)]
struct Gate {
    state: Mutex<(usize, Option<bool>)>,
    changed: Condvar,
}

impl Gate {
    /// Called by a load thread once ready; `Err` means give up.
    fn wait(&self) -> io::Result<()> {
        let mut state = self.state.lock().expect("gate");
        state.0 += 1;
        self.changed.notify_all();
        let state = self
            .changed
            .wait_while(state, |s| s.1.is_none())
            .expect("gate");
        match state.1 {
            Some(true) => Ok(()),
            _ => Err(io::Error::other("load start aborted")),
        }
    }

    fn release(&self, go: bool) {
        self.state.lock().expect("gate").1 = Some(go);
        self.changed.notify_all();
    }

    /// Waits for `count` threads, releases them and returns that instant.
    fn open_when_arrived(&self, count: usize) -> Instant {
        let state = self.state.lock().expect("gate");
        let mut state = self
            .changed
            .wait_while(state, |s| s.0 < count)
            .expect("gate");
        state.1 = Some(true);
        self.changed.notify_all();
        Instant::now()
    }
}

fn ping_pong(
    mut stream: &TcpStream,
    tag: u8,
    duration: Duration,
) -> io::Result<(Vec<u64>, Instant)> {
    let deadline = Instant::now() + duration;
    let mut latencies = Vec::with_capacity(1 << 16);
    let mut reply = [0u8; 1];
    while Instant::now() < deadline && latencies.len() < MAX_ROUND_TRIPS_PER_CONNECTION {
        let sent_at = Instant::now();
        stream.write_all(&[tag])?;
        stream.read_exact(&mut reply)?;
        latencies.push(sent_at.elapsed().as_nanos() as u64);
        if reply[0] != tag {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "echo mismatch"));
        }
    }
    Ok((latencies, Instant::now()))
}

/// Opens `count` echo sessions through `addr`, one after the other, each
/// proven live by a one-byte round trip, and returns them open and idle.
pub fn open_echo_sessions(addr: SocketAddr, count: usize) -> io::Result<Vec<TcpStream>> {
    let mut streams = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = open(addr, ECHO, 0)?;
        stream.write_all(&[7])?;
        let mut reply = [0u8; 1];
        stream.read_exact(&mut reply)?;
        streams.push(stream);
    }
    Ok(streams)
}
