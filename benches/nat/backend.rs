//! The backend every chain ends at: a small server inside the bench process,
//! one std thread per connection.
//!
//! On accept it writes a one-byte [`BANNER`], so a new client's time to first
//! byte is connect to banner, whatever the chain in between. The client then
//! sends a 9-byte header, one mode byte and a little-endian `u64` argument:
//!
//! - [`ECHO`]: send back every byte until EOF (request/response, idle sessions).
//! - [`SINK`]: read blocks of [`BLOCK`] bytes until one whose first byte is
//!   [`LAST_BLOCK`], answer with the byte count (`u64` LE). The end is in band,
//!   so the figure does not depend on how a chain carries half-close.
//! - [`SOURCE`]: send blocks for `argument` milliseconds, then close.
//!
//! A client that closes before sending a header (a time-to-first-byte probe)
//! just ends its thread. The accept thread lives as long as the bench.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

pub const BANNER: u8 = b'B';
pub const ECHO: u8 = b'E';
pub const SINK: u8 = b'S';
pub const SOURCE: u8 = b'D';
pub const HEADER_LEN: usize = 9;
/// Size of upload blocks and of the backend's reads and writes.
pub const BLOCK: usize = 64 * 1024;
/// First byte of an upload's last block; any other value means more follow.
pub const LAST_BLOCK: u8 = 0;
/// Stack of each connection thread.
const THREAD_STACK: usize = 256 * 1024;
/// A connection idle this long is dropped (bounds every backend thread).
const IDLE_LIMIT: Duration = Duration::from_secs(120);

/// The header that selects `mode` with `argument`.
pub fn header(mode: u8, argument: u64) -> [u8; HEADER_LEN] {
    let mut bytes = [0; HEADER_LEN];
    bytes[0] = mode;
    bytes[1..].copy_from_slice(&argument.to_le_bytes());
    bytes
}

/// Binds 127.0.0.1:0 and serves in background threads; returns the address.
pub fn start() -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::Builder::new()
        .name("backend-accept".into())
        .spawn(move || accept_loop(listener))?;
    Ok(addr)
}

fn accept_loop(listener: TcpListener) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                let spawned = thread::Builder::new()
                    .stack_size(THREAD_STACK)
                    .spawn(move || {
                        // A failed connection is the client's business: it reports it.
                        let _ = serve(stream);
                    });
                if let Err(e) = spawned {
                    eprintln!("backend: cannot start a connection thread: {e}");
                }
            }
            Err(e) => {
                eprintln!("backend: accept: {e}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn serve(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IDLE_LIMIT))?;
    stream.set_write_timeout(Some(IDLE_LIMIT))?;
    stream.write_all(&[BANNER])?;
    let mut head = [0; HEADER_LEN];
    stream.read_exact(&mut head)?;
    let argument = u64::from_le_bytes(head[1..].try_into().expect("8 bytes"));
    let mut buf = vec![0u8; BLOCK];
    match head[0] {
        ECHO => loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                break;
            }
            stream.write_all(&buf[..n])?;
        },
        SINK => {
            let mut total = 0u64;
            loop {
                stream.read_exact(&mut buf)?;
                total += BLOCK as u64;
                if buf[0] == LAST_BLOCK {
                    break;
                }
            }
            stream.write_all(&total.to_le_bytes())?;
        }
        SOURCE => {
            let deadline = Instant::now() + Duration::from_millis(argument);
            while Instant::now() < deadline {
                stream.write_all(&buf)?;
            }
        }
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown mode {other}"),
            ))
        }
    }
    stream.shutdown(Shutdown::Write)
}
