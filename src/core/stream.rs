//! The byte stream the core moves data between, and the one place `io::Error`s are sorted.
//!
//! The core never sees a socket: it sees a [`Stream`]. In the product that is a mio TCP
//! stream (see `net`); in unit tests a scripted in-memory stream. Every I/O answer is
//! classified by [`classify`] into an [`Io`] value, so EOF, reset, would-block and other
//! errors are distinct values everywhere and are never confused with each other.

use std::io::{self, IoSlice, IoSliceMut};

/// What the relay core needs from one side of a session.
pub trait Stream {
    /// Reads into the slices. `Ok(0)` means EOF (the caller never passes empty slices).
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize>;
    /// Writes from the slices; returns how many bytes the kernel took.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Sends FIN: no more bytes will be written. Reading goes on.
    fn shutdown_write(&mut self) -> io::Result<()>;
    /// Arranges for the coming close to send RST instead of FIN (SO_LINGER 0).
    fn abort(&mut self);
    /// Bytes written but not yet acknowledged by the peer (SIOCOUTQ). Used to hand over
    /// owed bytes before an RST, which would discard them.
    fn unacked(&self) -> io::Result<usize>;
    /// For an upstream connect in progress: connected, still pending, or failed.
    fn connect_status(&mut self) -> ConnectStatus;
}

/// The state of a non-blocking connect, read after a writable event.
#[derive(Debug)]
pub enum ConnectStatus {
    /// The handshake completed and the socket is not connected to itself.
    Connected,
    /// Not yet (a spurious event); keep waiting.
    Pending,
    /// The connect failed.
    Failed(ConnectFailure),
}

/// Why a connect attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// The upstream answered with RST (nothing listening).
    Refused,
    /// No answer within the connect timeout.
    Timeout,
    /// Anything else: unreachable, no descriptors, connected to itself...
    Error,
}

impl ConnectFailure {
    /// Every kind, in declaration order: `ALL[f.index()] == f`.
    pub const ALL: [ConnectFailure; 3] = [
        ConnectFailure::Refused,
        ConnectFailure::Timeout,
        ConnectFailure::Error,
    ];

    /// The kind's position in [`ConnectFailure::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The kind's word in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectFailure::Refused => "refused",
            ConnectFailure::Timeout => "timeout",
            ConnectFailure::Error => "error",
        }
    }

    /// Sorts a connect error.
    pub fn from_error(e: &io::Error) -> ConnectFailure {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
            io::ErrorKind::TimedOut => ConnectFailure::Timeout,
            _ => ConnectFailure::Error,
        }
    }
}

/// The outcome of one read or write, sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    /// `n > 0` bytes moved.
    Moved(usize),
    /// The peer sent FIN and every byte before it has been read (read returned 0).
    Eof,
    /// Not now: the readiness bit is cleared until the next event.
    Blocked,
    /// The peer sent RST, or we wrote after it was gone (ECONNRESET, EPIPE, ECONNABORTED).
    Reset,
    /// Any other error: the side is broken.
    Error(io::ErrorKind),
}

/// Sorts a read or write result. `Interrupted` never reaches here: callers wrap their
/// calls in [`retry`].
pub fn classify(result: io::Result<usize>) -> Io {
    match result {
        Ok(0) => Io::Eof,
        Ok(n) => Io::Moved(n),
        Err(e) => classify_error(&e),
    }
}

/// Sorts an error alone (shutdown, connect...).
pub fn classify_error(e: &io::Error) -> Io {
    match e.kind() {
        io::ErrorKind::WouldBlock => Io::Blocked,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::NotConnected => Io::Reset,
        kind => Io::Error(kind),
    }
}

/// Runs an I/O call again while it is interrupted by a signal.
pub fn retry<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(kind: io::ErrorKind) -> io::Result<usize> {
        Err(io::Error::from(kind))
    }

    #[test]
    fn zero_is_eof_and_bytes_are_moved() {
        assert_eq!(classify(Ok(0)), Io::Eof);
        assert_eq!(classify(Ok(7)), Io::Moved(7));
    }

    #[test]
    fn reset_family_is_never_eof() {
        for kind in [
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::ConnectionAborted,
            io::ErrorKind::BrokenPipe,
            io::ErrorKind::NotConnected,
        ] {
            assert_eq!(classify(err(kind)), Io::Reset, "{kind:?}");
        }
    }

    #[test]
    fn would_block_and_other_errors_are_distinct() {
        assert_eq!(classify(err(io::ErrorKind::WouldBlock)), Io::Blocked);
        assert_eq!(
            classify(err(io::ErrorKind::TimedOut)),
            Io::Error(io::ErrorKind::TimedOut)
        );
    }

    #[test]
    fn interrupted_calls_are_retried() {
        let mut calls = 0;
        let r = retry(|| {
            calls += 1;
            if calls < 3 {
                Err(io::Error::from(io::ErrorKind::Interrupted))
            } else {
                Ok(5)
            }
        });
        assert_eq!(r.expect("third call succeeds"), 5);
        assert_eq!(calls, 3);
    }

    #[test]
    fn connect_failures_are_sorted() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            ConnectFailure::from_error(&refused),
            ConnectFailure::Refused
        );
        let unreachable = io::Error::from(io::ErrorKind::HostUnreachable);
        assert_eq!(
            ConnectFailure::from_error(&unreachable),
            ConnectFailure::Error
        );
    }

    #[test]
    fn every_connect_failure_is_at_its_index() {
        for (i, f) in ConnectFailure::ALL.iter().enumerate() {
            assert_eq!(f.index(), i);
            assert_eq!(ConnectFailure::ALL[f.index()], *f);
        }
        let words: Vec<_> = ConnectFailure::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(words, ["refused", "timeout", "error"]);
    }
}
