//! The load generator: blocking std sockets, one thread per connection, no
//! external tool. Every loop is bounded by a deadline and a count, and every
//! socket has read and write timeouts, so a stuck target fails a run instead
//! of hanging the bench.
//!
//! All connections are opened before a start gate and the clock starts when the
//! gate opens, so connection set-up is not part of a throughput figure
//! (except in [`churn`], where it is the figure).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::backend::{self, ECHO, LAST_BLOCK, UPLOAD_BLOCK};

/// Read and write timeout of every load socket.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound on round trips per connection in one run.
const MAX_ROUND_TRIPS_PER_CONNECTION: usize = 5_000_000;
/// Sessions opened at once before waiting for them to answer.
const OPEN_BATCH: usize = 64;
/// Stack of each load thread.
const THREAD_STACK: usize = 128 * 1024;
/// First byte of every upload block but the last.
const MORE_BLOCKS: u8 = 1;

/// An echo header followed by one byte: opens an echo session and proves it
/// live once the byte comes back.
fn echo_probe() -> [u8; backend::HEADER_LEN + 1] {
    let mut probe = [0u8; backend::HEADER_LEN + 1];
    probe[..backend::HEADER_LEN].copy_from_slice(&backend::header(ECHO, 0));
    probe
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// Holds load threads until every one has connected, then releases them
/// together (or tells them to give up when a thread could not be started).
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    arrived: usize,
    open: Option<bool>,
}

impl Gate {
    /// Called by a load thread once it is ready; `Err` means give up.
    fn wait(&self) -> io::Result<()> {
        let mut state = self.state.lock().expect("gate");
        state.arrived += 1;
        self.changed.notify_all();
        let state = self
            .changed
            .wait_while(state, |s| s.open.is_none())
            .expect("gate");
        match state.open {
            Some(true) => Ok(()),
            _ => Err(io::Error::other("load start aborted")),
        }
    }

    /// Waits for `count` threads, opens the gate and returns that instant.
    fn open_when_arrived(&self, count: usize) -> Instant {
        let state = self.state.lock().expect("gate");
        let mut state = self
            .changed
            .wait_while(state, |s| s.arrived < count)
            .expect("gate");
        state.open = Some(true);
        self.changed.notify_all();
        Instant::now()
    }

    fn abort(&self) {
        self.state.lock().expect("gate").open = Some(false);
        self.changed.notify_all();
    }
}

/// Runs `work` on `count` threads that start together; returns each thread's
/// result and the instant they were released.
fn together<T: Send>(
    count: usize,
    work: impl Fn(usize, &Gate) -> io::Result<T> + Sync,
) -> io::Result<(Vec<io::Result<T>>, Instant)> {
    let gate = Gate::default();
    thread::scope(|scope| {
        let mut handles = Vec::with_capacity(count);
        for index in 0..count {
            let (work, gate) = (&work, &gate);
            let spawned = thread::Builder::new()
                .stack_size(THREAD_STACK)
                .spawn_scoped(scope, move || work(index, gate));
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(e) => {
                    gate.abort();
                    return Err(e);
                }
            }
        }
        let start = gate.open_when_arrived(count);
        let results = handles
            .into_iter()
            .map(|h| h.join().expect("load thread panicked"))
            .collect();
        Ok((results, start))
    })
}

/// Which way bulk data flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to upstream.
    Up,
    /// Upstream to client.
    Down,
}

/// Bytes moved and the time it took.
pub struct Transfer {
    pub bytes: u64,
    pub elapsed: Duration,
}

/// `streams` connections each move data one way for `duration`.
pub fn bulk(
    addr: SocketAddr,
    streams: usize,
    direction: Direction,
    duration: Duration,
) -> io::Result<Transfer> {
    let (results, start) = together(streams, |_, gate| {
        let stream = connect(addr);
        gate.wait()?;
        let mut stream = stream?;
        let bytes = match direction {
            Direction::Up => upload(&mut stream, duration)?,
            Direction::Down => download(&mut stream, duration)?,
        };
        Ok((bytes, Instant::now()))
    })?;
    let mut transfer = Transfer {
        bytes: 0,
        elapsed: Duration::ZERO,
    };
    for result in results {
        let (bytes, end) = result?;
        transfer.bytes += bytes;
        transfer.elapsed = transfer.elapsed.max(end - start);
    }
    Ok(transfer)
}

fn upload(stream: &mut TcpStream, duration: Duration) -> io::Result<u64> {
    let deadline = Instant::now() + duration;
    stream.write_all(&backend::header(backend::UPLOAD, 0))?;
    let mut block = vec![MORE_BLOCKS; UPLOAD_BLOCK];
    let mut sent = 0u64;
    while Instant::now() < deadline {
        stream.write_all(&block)?;
        sent += block.len() as u64;
    }
    block[0] = LAST_BLOCK;
    stream.write_all(&block)?;
    sent += block.len() as u64;
    let mut count = [0u8; 8];
    stream.read_exact(&mut count)?;
    let acknowledged = u64::from_le_bytes(count);
    if acknowledged != sent {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("sent {sent} bytes, backend counted {acknowledged}"),
        ));
    }
    Ok(sent)
}

fn download(stream: &mut TcpStream, duration: Duration) -> io::Result<u64> {
    let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    stream.write_all(&backend::header(backend::DOWNLOAD, millis))?;
    let mut buf = vec![0u8; UPLOAD_BLOCK];
    let mut received = 0u64;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(received),
            Ok(n) => received += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Round trips completed and their latencies (ascending, nanoseconds).
pub struct RoundTrips {
    pub count: u64,
    pub elapsed: Duration,
    pub latencies_ns: Vec<u64>,
}

/// `connections` connections each send a `size`-byte message and wait for
/// its echo, back to back, for `duration` (a closed loop: one message in
/// flight per connection).
pub fn request_response(
    addr: SocketAddr,
    connections: usize,
    size: usize,
    duration: Duration,
) -> io::Result<RoundTrips> {
    let streams = open_echo_sessions(addr, connections)?;
    let (results, start) = together(connections, |index, gate| {
        gate.wait()?;
        let mut stream = &streams[index];
        let deadline = Instant::now() + duration;
        let message = vec![index as u8; size];
        let mut reply = vec![0u8; size];
        let mut latencies = Vec::new();
        while Instant::now() < deadline && latencies.len() < MAX_ROUND_TRIPS_PER_CONNECTION {
            let sent_at = Instant::now();
            stream.write_all(&message)?;
            stream.read_exact(&mut reply)?;
            latencies.push(sent_at.elapsed().as_nanos() as u64);
        }
        Ok((latencies, Instant::now()))
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
        trips.elapsed = trips.elapsed.max(end - start);
    }
    trips.latencies_ns.sort_unstable();
    Ok(trips)
}

/// Complete sessions and failed attempts.
pub struct Churn {
    pub sessions: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub first_error: Option<String>,
}

/// `threads` threads each loop for `duration` (at most `cap / threads`
/// sessions): connect, one 1-byte round trip, FIN, wait for the FIN back, close.
pub fn churn(addr: SocketAddr, threads: usize, duration: Duration, cap: u64) -> io::Result<Churn> {
    let per_thread = cap / threads as u64;
    let (results, start) = together(threads, |_, gate| {
        gate.wait()?;
        let deadline = Instant::now() + duration;
        let (mut sessions, mut errors, mut first_error) = (0u64, 0u64, None);
        while Instant::now() < deadline && sessions < per_thread && errors < 100 {
            match one_session(addr) {
                Ok(()) => sessions += 1,
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        Ok((sessions, errors, first_error, Instant::now()))
    })?;
    let mut churn = Churn {
        sessions: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        first_error: None,
    };
    for result in results {
        let (sessions, errors, first_error, end) = result?;
        churn.sessions += sessions;
        churn.errors += errors;
        churn.first_error = churn.first_error.or(first_error);
        churn.elapsed = churn.elapsed.max(end - start);
    }
    Ok(churn)
}

fn one_session(addr: SocketAddr) -> io::Result<()> {
    let mut stream = connect(addr)?;
    stream.write_all(&echo_probe())?;
    let mut reply = [0u8; 1];
    stream.read_exact(&mut reply)?;
    stream.shutdown(Shutdown::Write)?;
    let mut rest = [0u8; 16];
    loop {
        match stream.read(&mut rest) {
            Ok(0) => return Ok(()),
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "unexpected bytes",
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Opens `count` echo sessions through `addr`, each proven live by a 1-byte
/// round trip, and returns them open and idle. They are opened in batches of
/// [`OPEN_BATCH`] so a proxy with a short listen backlog (rinetd's is 128)
/// never overflows it and no SYN waits for a retransmission.
pub fn open_echo_sessions(addr: SocketAddr, count: usize) -> io::Result<Vec<TcpStream>> {
    let request = echo_probe();
    let mut streams = Vec::with_capacity(count);
    while streams.len() < count {
        let batch = OPEN_BATCH.min(count - streams.len());
        let first = streams.len();
        for _ in 0..batch {
            let mut stream = connect(addr)?;
            stream.write_all(&request)?;
            streams.push(stream);
        }
        for stream in &mut streams[first..] {
            stream.read_exact(&mut [0u8; 1])?;
        }
    }
    Ok(streams)
}
