//! `__server`: the destination of every tunnel, a child process (this executable run
//! again), tokio on two workers, one listener on 127.0.0.1. READY line:
//! `READY listen=ADDR`. It exits when its standard input closes (the bench holds it).
//!
//! A connection is a sequence of commands, each one byte:
//!
//! - `E`: echo every byte that follows until EOF (the memory section: an idle tunnel
//!   is an echo connection that waits);
//! - `R` + `u16` N (big endian): read N bytes, echo them, close (the rate section: the
//!   destination closes first, so the connections' TIME_WAIT stays on the listening
//!   ports' side and no run holds ephemeral ports that a later run needs);
//! - `U` + `u64` N (big endian): read N bytes, then answer one byte `A` (an upload
//!   whose end is known in band, so no figure depends on half-close);
//! - `D` + `u64` N: send N bytes (a download).
//!
//! After `U` and `D` the next command is read; EOF or an unknown byte ends the
//! connection. Every accept loop sleeps 10 ms after an error instead of spinning.

use std::io::{self, Read, Write};
use std::thread;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bytes of one read or write of the bulk commands.
const BLOCK: usize = 256 << 10;

/// Runs the server until standard input closes.
pub fn serve() -> io::Result<()> {
    thread::spawn(|| {
        let mut sink = [0u8; 64];
        while matches!(io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_io()
        .enable_time()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        println!("READY listen={}", listener.local_addr()?);
        io::stdout().flush()?;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            tokio::spawn(async move {
                let _ = connection(stream).await;
            });
        }
    })
}

/// Serves one connection's commands.
async fn connection(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 1024];
    loop {
        let command = stream.read_u8().await?;
        match command {
            b'E' => loop {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    return Ok(());
                }
                stream.write_all(&buf[..n]).await?;
            },
            b'R' => {
                let n = usize::from(stream.read_u16().await?);
                buf.resize(buf.len().max(n), 0);
                stream.read_exact(&mut buf[..n]).await?;
                stream.write_all(&buf[..n]).await?;
                return Ok(());
            }
            b'U' => {
                let mut left = stream.read_u64().await?;
                buf.resize(BLOCK, 0);
                while left > 0 {
                    let want = usize::try_from(left).unwrap_or(BLOCK).min(BLOCK);
                    let n = stream.read(&mut buf[..want]).await?;
                    if n == 0 {
                        return Ok(());
                    }
                    left -= n as u64;
                }
                stream.write_all(b"A").await?;
            }
            b'D' => {
                let mut left = stream.read_u64().await?;
                buf.resize(BLOCK, 0);
                while left > 0 {
                    let n = usize::try_from(left).unwrap_or(BLOCK).min(BLOCK);
                    stream.write_all(&buf[..n]).await?;
                    left -= n as u64;
                }
            }
            _ => return Ok(()),
        }
    }
}
