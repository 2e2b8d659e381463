//! The bench's own child processes (this executable run again with a role), and how
//! the bench asks them what they counted.
//!
//! - `__backend DELAY_MS`: the upstream of the time-to-first-byte runs. A tokio server
//!   on two workers; each accepted connection waits `DELAY_MS` (its **setup delay**: a
//!   TLS handshake, a slow accept loop, a far-away host), then echoes until EOF. Its
//!   READY line is `READY listen=ADDR stats=ADDR`.
//! - `__listeners N MODE`: `N` listening sockets on 127.0.0.1 (a tokio current-thread
//!   runtime, one accept task each), the upstreams of the health-check and memory
//!   runs. `close` drops every accepted connection at once (a health check needs
//!   nothing more); `hold` keeps each one open until its peer closes it (a warm
//!   connection's other end). READY line: `READY stats=ADDR ports=P1,P2,...`.
//!
//! A connection to the `stats` address gets one line of counters and is closed; it is
//! a listener of its own, so asking does not change the counts. Both roles exit when
//! their standard input closes (the bench holds it), and every accept loop sleeps
//! 10 ms after an error instead of spinning.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a child has counted since it started.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections closed that carried at least one byte (served one session).
    pub served: AtomicU64,
    /// Connections closed that carried more than one byte: a session's connection
    /// reused for another session (each session here sends exactly one byte).
    pub reused: AtomicU64,
    /// Connections closed without a byte (a warm connection never lent).
    pub unused: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
}

/// A snapshot of [`Counters`], as the stats line gives it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub accepted: u64,
    pub served: u64,
    pub reused: u64,
    pub unused: u64,
    pub open: u64,
}

impl Counters {
    fn line(&self) -> String {
        format!(
            "accepted={} served={} reused={} unused={} open={}\n",
            self.accepted.load(Relaxed),
            self.served.load(Relaxed),
            self.reused.load(Relaxed),
            self.unused.load(Relaxed),
            self.open.load(Relaxed)
        )
    }

    /// Counts a connection that ended after carrying `bytes`.
    fn ended(&self, bytes: u64) {
        self.open.fetch_sub(1, Relaxed);
        let which = match bytes {
            0 => &self.unused,
            1 => &self.served,
            _ => &self.reused,
        };
        which.fetch_add(1, Relaxed);
        if bytes > 1 {
            self.served.fetch_add(1, Relaxed);
        }
    }
}

/// Asks a child's `stats` address for its counters (2 s bound on each step).
pub fn stats(addr: SocketAddr) -> io::Result<Stats> {
    let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut text = String::new();
    stream.take(4096).read_to_string(&mut text)?;
    let field = |key: &str| -> u64 {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(Stats {
        accepted: field("accepted"),
        served: field("served"),
        reused: field("reused"),
        unused: field("unused"),
        open: field("open"),
    })
}

/// Ends this process when its standard input closes (the bench went away).
fn exit_when_stdin_closes() {
    thread::spawn(|| {
        let mut sink = [0u8; 64];
        while matches!(io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
}

fn announce(line: &str) -> io::Result<()> {
    println!("READY {line}");
    io::stdout().flush()
}

/// Answers every connection to `listener` with the counters' line.
async fn serve_stats(listener: TcpListener, counters: Arc<Counters>) {
    loop {
        match listener.accept().await {
            Ok((mut stream, _)) => {
                let _ = stream.write_all(counters.line().as_bytes()).await;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// `__backend DELAY_MS`: see the module's documentation.
pub fn backend(delay_ms: u64) -> io::Result<()> {
    exit_when_stdin_closes();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_io()
        .enable_time()
        .build()?;
    let delay = Duration::from_millis(delay_ms);
    runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let stats = TcpListener::bind("127.0.0.1:0").await?;
        let counters = Arc::new(Counters::default());
        let line = format!(
            "listen={} stats={}",
            listener.local_addr()?,
            stats.local_addr()?
        );
        tokio::spawn(serve_stats(stats, counters.clone()));
        announce(&line)?;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            counters.accepted.fetch_add(1, Relaxed);
            counters.open.fetch_add(1, Relaxed);
            let counters = counters.clone();
            tokio::spawn(async move {
                let bytes = echo_after(stream, delay).await;
                counters.ended(bytes);
            });
        }
    })
}

/// Waits `delay`, then echoes until EOF or an error; the bytes received.
async fn echo_after(mut stream: TcpStream, delay: Duration) -> u64 {
    let _ = stream.set_nodelay(true);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut total = 0u64;
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n as u64;
                if stream.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    total
}

/// `__listeners N MODE`: see the module's documentation.
pub fn listeners(count: usize, hold: bool) -> io::Result<()> {
    exit_when_stdin_closes();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    runtime.block_on(async move {
        let counters = Arc::new(Counters::default());
        let mut ports = Vec::with_capacity(count);
        for _ in 0..count {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            ports.push(listener.local_addr()?.port().to_string());
            tokio::spawn(accept_loop(listener, counters.clone(), hold));
        }
        let stats = TcpListener::bind("127.0.0.1:0").await?;
        let stats_addr = stats.local_addr()?;
        tokio::spawn(serve_stats(stats, counters));
        announce(&format!("stats={stats_addr} ports={}", ports.join(",")))?;
        std::future::pending::<io::Result<()>>().await
    })
}

async fn accept_loop(listener: TcpListener, counters: Arc<Counters>, hold: bool) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        counters.accepted.fetch_add(1, Relaxed);
        if !hold {
            continue; // dropped: closed at once
        }
        counters.open.fetch_add(1, Relaxed);
        let counters = counters.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let mut total = 0u64;
            while let Ok(n @ 1..) = stream.read(&mut buf).await {
                total += n as u64;
            }
            counters.ended(total);
        });
    }
}

/// The `ports=` field of a `__listeners` READY line, as 127.0.0.1 addresses.
pub fn ports_field(line: &str) -> Vec<SocketAddr> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("ports="))
        .map(|list| {
            list.split(',')
                .filter_map(|p| p.parse::<u16>().ok())
                .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
                .collect()
        })
        .unwrap_or_default()
}
