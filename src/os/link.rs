//! [`Link`]: a connection that is either a plain TCP [`Conn`] or a [`TlsStream`] over one,
//! so the server keeps one stream type for sessions and tunnels whichever the tunnel
//! speaks. Every core [`Stream`] call goes to the variant; the socket calls (`source`,
//! `local_addr`, `tune`) go to the TCP connection underneath. Without the `tls` feature
//! a link is always plain.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;

use mio::net::TcpStream;

use super::net::{Conn, Tuning};
#[cfg(feature = "tls")]
use super::tls::TlsStream;
use crate::core::stream::{ConnectStatus, Stream};

/// A plain or TLS connection.
#[derive(Debug)]
pub enum Link {
    /// Plain TCP.
    Plain(Conn),
    /// TLS over TCP (boxed: its state is large).
    #[cfg(feature = "tls")]
    Tls(Box<TlsStream>),
}

impl From<Conn> for Link {
    fn from(conn: Conn) -> Link {
        Link::Plain(conn)
    }
}

#[cfg(feature = "tls")]
impl From<TlsStream> for Link {
    fn from(tls: TlsStream) -> Link {
        Link::Tls(Box::new(tls))
    }
}

impl Link {
    /// The TCP connection underneath.
    pub fn tcp(&self) -> &Conn {
        match self {
            Link::Plain(c) => c,
            #[cfg(feature = "tls")]
            Link::Tls(t) => t.tcp(),
        }
    }

    /// The mio stream, for registration.
    pub fn source(&mut self) -> &mut TcpStream {
        match self {
            Link::Plain(c) => c.source(),
            #[cfg(feature = "tls")]
            Link::Tls(t) => t.source(),
        }
    }

    /// Reads without consuming (`Ok(0)` at end of stream). Only a plain link has bytes to
    /// show: a TLS link answers `Unsupported` (its socket holds records, not data).
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Plain(c) => c.peek(buf),
            #[cfg(feature = "tls")]
            Link::Tls(_) => Err(io::Error::from(io::ErrorKind::Unsupported)),
        }
    }

    /// The local address of the TCP connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().local_addr()
    }

    /// Sets the TCP connection's options (see [`Conn::tune`]).
    pub fn tune(&self, tuning: Tuning) {
        self.tcp().tune(tuning)
    }

    /// True for a TLS link.
    pub fn is_tls(&self) -> bool {
        match self {
            Link::Plain(_) => false,
            #[cfg(feature = "tls")]
            Link::Tls(_) => true,
        }
    }
}

impl Stream for Link {
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        match self {
            Link::Plain(c) => c.read_vectored(bufs),
            #[cfg(feature = "tls")]
            Link::Tls(t) => t.read_vectored(bufs),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Link::Plain(c) => c.write_vectored(bufs),
            #[cfg(feature = "tls")]
            Link::Tls(t) => t.write_vectored(bufs),
        }
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Link::Plain(c) => c.shutdown_write(),
            #[cfg(feature = "tls")]
            Link::Tls(t) => t.shutdown_write(),
        }
    }

    fn abort(&mut self) {
        match self {
            Link::Plain(c) => c.abort(),
            #[cfg(feature = "tls")]
            Link::Tls(t) => t.abort(),
        }
    }

    fn unacked(&self) -> io::Result<usize> {
        match self {
            Link::Plain(c) => c.unacked(),
            #[cfg(feature = "tls")]
            Link::Tls(t) => t.unacked(),
        }
    }

    fn connect_status(&mut self) -> ConnectStatus {
        match self {
            Link::Plain(c) => c.connect_status(),
            #[cfg(feature = "tls")]
            Link::Tls(t) => t.connect_status(),
        }
    }

    fn splice_fd(&self) -> Option<i32> {
        match self {
            Link::Plain(c) => c.splice_fd(),
            #[cfg(feature = "tls")]
            Link::Tls(t) => t.splice_fd(),
        }
    }
}

#[cfg(test)]
mod tests;
