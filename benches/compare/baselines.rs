//! The proxies built inside the bench, run as child processes of it so their
//! CPU and memory are measured like any other proxy's.
//!
//! - `tokio-ct` / `tokio-mt`: accept, connect upstream, then
//!   `copy_bidirectional_with_sizes` on a current_thread or a two-worker
//!   multi_thread runtime: the idiomatic async proxy.
//! - `thread`: the naive baseline, two blocking threads per session, one per
//!   direction.
//!
//! All use 16 KiB buffers per direction and set TCP_NODELAY on both sockets, like
//! every other target. Each prints `READY listen=ADDR` and runs until its
//! standard input closes.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;

/// Buffer per direction, the same as every other target's.
pub const BUFFER: usize = 16 * 1024;

/// Stack of each thread of the `thread` proxy (it touches a few KiB of it).
const THREAD_STACK: usize = 256 * 1024;

/// Ends the process once the parent closes our standard input, so no child
/// outlives the bench.
pub fn exit_when_stdin_closes() {
    thread::spawn(|| {
        let mut sink = [0u8; 64];
        while matches!(io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
}

fn announce(addr: SocketAddr) -> io::Result<()> {
    println!("READY listen={addr}");
    io::stdout().flush()
}

/// Runs the baseline proxy named `kind` in front of `upstream`.
pub fn serve(kind: &str, upstream: SocketAddr) -> io::Result<()> {
    exit_when_stdin_closes();
    let runtime = match kind {
        "tokio-ct" => tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?,
        "tokio-mt" => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_io()
            .build()?,
        "thread" => return serve_threads(upstream),
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unknown baseline {other}"),
            ))
        }
    };
    runtime.block_on(serve_tokio(upstream))
}

async fn serve_tokio(upstream: SocketAddr) -> io::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    announce(listener.local_addr()?)?;
    loop {
        let (mut client, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("tokio proxy: accept: {e}");
                continue;
            }
        };
        tokio::spawn(async move {
            let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let _ =
                tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, BUFFER, BUFFER)
                    .await;
        });
    }
}

fn serve_threads(upstream: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    announce(listener.local_addr()?)?;
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let spawned = thread::Builder::new()
            .stack_size(THREAD_STACK)
            .spawn(move || {
                if let Err(e) = relay_blocking(client, upstream) {
                    eprintln!("thread proxy: session: {e}");
                }
            });
        if let Err(e) = spawned {
            eprintln!("thread proxy: spawn: {e}");
        }
    }
    Ok(())
}

/// One session: this thread carries client -> upstream, a second one the
/// other direction. The sockets are shared, not `try_clone`d, so a session
/// costs two file descriptors like in every other proxy.
fn relay_blocking(client: TcpStream, upstream: SocketAddr) -> io::Result<()> {
    let server = TcpStream::connect(upstream)?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (client, server) = (Arc::new(client), Arc::new(server));
    let (client2, server2) = (Arc::clone(&client), Arc::clone(&server));
    thread::Builder::new()
        .stack_size(THREAD_STACK)
        .spawn(move || pump(&server2, &client2))?;
    pump(&client, &server);
    Ok(())
}

/// Copies `from` into `to` until EOF (then FIN on `to`) or an error (then both
/// sockets are shut down so the other direction ends too).
fn pump(mut from: &TcpStream, mut to: &TcpStream) {
    let mut buf = vec![0u8; BUFFER];
    loop {
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    let _ = from.shutdown(Shutdown::Both);
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}
