//! The client side of a tunnel: connect to the proxy and ask it for the destination,
//! as an ordinary client would, with blocking std sockets, `TCP_NODELAY` and 5 s
//! bounds on every step.
//!
//! - HTTP CONNECT: `CONNECT 127.0.0.1:P HTTP/1.1` with its `Host` header, then the
//!   answer's head up to its blank line; a `2xx` status opens the tunnel.
//! - SOCKS5: the greeting offering "no authentication", its answer, then the CONNECT
//!   request with an IPv4 address and its reply, each message waited for before the
//!   next is sent (as clients that do not pipeline do).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Bound on each step.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest answer head of an HTTP proxy read.
const MAX_HEAD: usize = 8 << 10;

/// How a client asks the proxy for its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    HttpConnect,
    Socks5,
}

impl Protocol {
    pub fn label(self) -> &'static str {
        match self {
            Protocol::HttpConnect => "HTTP CONNECT",
            Protocol::Socks5 => "SOCKS5",
        }
    }
}

/// A tunnel through `proxy` to `dest`, ready for the destination's bytes.
pub fn open(proxy: SocketAddr, protocol: Protocol, dest: SocketAddr) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&proxy, IO_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    match protocol {
        Protocol::HttpConnect => http_connect(&mut stream, dest)?,
        Protocol::Socks5 => socks5(&mut stream, dest)?,
    }
    Ok(stream)
}

fn http_connect(stream: &mut TcpStream, dest: SocketAddr) -> io::Result<()> {
    let request = format!("CONNECT {dest} HTTP/1.1\r\nHost: {dest}\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 512];
    // The destination never speaks first, so whatever is read is the answer's head.
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::other("proxy closed before its answer's end"));
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            if at + 4 != head.len() {
                return Err(io::Error::other("bytes after the answer's head"));
            }
            break;
        }
        if head.len() > MAX_HEAD {
            return Err(io::Error::other("answer head too long"));
        }
    }
    let status = head.get(9..12).unwrap_or_default();
    if head.starts_with(b"HTTP/1.") && status.first() == Some(&b'2') {
        Ok(())
    } else {
        let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
        Err(io::Error::other(format!(
            "proxy answered {:?}",
            String::from_utf8_lossy(line)
        )))
    }
}

fn socks5(stream: &mut TcpStream, dest: SocketAddr) -> io::Result<()> {
    let SocketAddr::V4(v4) = dest else {
        return Err(io::Error::other("SOCKS5 client: IPv4 destinations only"));
    };
    stream.write_all(&[5, 1, 0])?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice)?;
    if choice != [5, 0] {
        return Err(io::Error::other(format!("SOCKS5 method answer {choice:?}")));
    }
    let mut request = vec![5, 1, 0, 1];
    request.extend_from_slice(&v4.ip().octets());
    request.extend_from_slice(&v4.port().to_be_bytes());
    stream.write_all(&request)?;
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply)?;
    if reply[..3] != [5, 0, 0] {
        return Err(io::Error::other(format!("SOCKS5 reply {reply:?}")));
    }
    let mut bound = [0u8; 18];
    let rest = match reply[3] {
        1 => 6,
        4 => 18,
        3 => {
            let mut len = [0u8; 1];
            stream.read_exact(&mut len)?;
            usize::from(len[0]) + 2
        }
        other => return Err(io::Error::other(format!("SOCKS5 address type {other}"))),
    };
    if rest <= bound.len() {
        stream.read_exact(&mut bound[..rest])
    } else {
        io::copy(&mut (&mut *stream).take(rest as u64), &mut io::sink()).map(|_| ())
    }
}
