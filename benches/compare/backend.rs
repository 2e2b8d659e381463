//! The backend every target forwards to, run as a child process of the bench.
//!
//! A tokio server on two worker threads (one per core here). Each connection
//! starts with a 9-byte header, one mode byte and a little-endian `u64` argument:
//!
//! - [`ECHO`]: send back every byte until EOF, then close.
//! - [`UPLOAD`]: read blocks of [`UPLOAD_BLOCK`] bytes until one whose first
//!   byte is [`LAST_BLOCK`], answer with the byte count (`u64` LE), close. The
//!   end is marked in band so the figure does not depend on how a proxy
//!   handles half-close (rinetd closes both directions on the first FIN).
//! - [`DOWNLOAD`]: send bytes for `argument` milliseconds, then close.
//!
//! Direct connections and every proxy meet the same backend, so its cost is the
//! same in every figure. It exits when its standard input closes.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const ECHO: u8 = b'E';
pub const UPLOAD: u8 = b'U';
pub const DOWNLOAD: u8 = b'D';
pub const HEADER_LEN: usize = 9;

/// Size of the blocks of an upload, and of the backend's reads and writes.
pub const UPLOAD_BLOCK: usize = 64 * 1024;
/// First byte of an upload's last block; any other value means more follow.
pub const LAST_BLOCK: u8 = 0;

/// The header that opens a connection in `mode`.
pub fn header(mode: u8, argument: u64) -> [u8; HEADER_LEN] {
    let mut bytes = [0; HEADER_LEN];
    bytes[0] = mode;
    bytes[1..].copy_from_slice(&argument.to_le_bytes());
    bytes
}

/// Runs the backend: binds 127.0.0.1:0, prints `READY listen=ADDR`, serves
/// until standard input is closed.
pub fn serve() -> io::Result<()> {
    crate::baselines::exit_when_stdin_closes();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_io()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        println!("READY listen={}", listener.local_addr()?);
        io::stdout().flush()?;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    eprintln!("backend: accept: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            tokio::spawn(async move {
                // A failed connection is the client's business: it reports it.
                let _ = handle(stream).await;
            });
        }
    })
}

async fn handle(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut head = [0; HEADER_LEN];
    stream.read_exact(&mut head).await?;
    let argument = u64::from_le_bytes(head[1..].try_into().expect("8 bytes"));
    let mut buf = vec![0u8; UPLOAD_BLOCK];
    match head[0] {
        ECHO => loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            stream.write_all(&buf[..n]).await?;
        },
        UPLOAD => {
            let mut total = 0u64;
            loop {
                stream.read_exact(&mut buf).await?;
                total += buf.len() as u64;
                if buf[0] == LAST_BLOCK {
                    break;
                }
            }
            stream.write_all(&total.to_le_bytes()).await?;
        }
        DOWNLOAD => {
            let deadline = Instant::now() + Duration::from_millis(argument);
            while Instant::now() < deadline {
                stream.write_all(&buf).await?;
            }
        }
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown mode {other}"),
            ))
        }
    }
    stream.shutdown().await
}
