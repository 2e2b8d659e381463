//! The byte stream the core moves data between, its readiness cache, and the one place
//! `io::Error`s are sorted.
//!
//! The core never sees a socket: it sees a [`Stream`]. In the product that is a mio TCP
//! stream (see `os::net`); in unit tests a scripted in-memory stream. A stream and its
//! readiness cache travel together as a [`Peer`]. Every I/O answer is classified here:
//! reads, writes, shutdowns and peeks by [`classify`] into an [`Io`] value, connects by
//! [`classify_connect`] (with [`ConnectFailure::from_error`]), accepts by
//! [`classify_accept`], so EOF, reset, would-block, resource shortages and other errors
//! are distinct values everywhere and are never confused with each other.

use std::io::{self, IoSlice, IoSliceMut};

/// What the relay core needs from one side of a session.
pub trait Stream {
    /// Reads into the slices. `Ok(0)` means EOF (the caller never passes empty slices).
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize>;
    /// Writes from the slices; returns how many bytes the kernel took.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Sends FIN: no more bytes will be written. Reading goes on. `WouldBlock` when the
    /// stream must first write bytes of its own (a TLS close_notify) and the socket has no
    /// room: the caller calls again once it is writable.
    fn shutdown_write(&mut self) -> io::Result<()>;
    /// Arranges for the coming close to send RST instead of FIN (SO_LINGER 0).
    fn abort(&mut self);
    /// Bytes written but not yet acknowledged by the peer (SIOCOUTQ). Used to hand over
    /// owed bytes before an RST, which would discard them.
    fn unacked(&self) -> io::Result<usize>;
    /// For an upstream connect in progress: connected, still pending, or failed.
    fn connect_status(&mut self) -> ConnectStatus;
    /// The descriptor a kernel pipe splices from or to; `None` when the stream cannot be
    /// spliced (in-memory streams, and later encrypted ones).
    fn splice_fd(&self) -> Option<i32> {
        None
    }
}

/// Readiness cache of one socket: set by events, cleared by `WouldBlock` (or a short read
/// or write, see `Pipe::pump`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readiness {
    /// A read may make progress.
    pub readable: bool,
    /// A write may make progress.
    pub writable: bool,
    /// The peer's FIN or RST has been reported (sticky: it raises no further event).
    pub read_closed: bool,
}

impl Readiness {
    /// Adds what an event reported; bits are cleared only by the calls that find them
    /// stale.
    pub fn add(&mut self, event: Readiness) {
        self.readable |= event.readable;
        self.writable |= event.writable;
        self.read_closed |= event.read_closed;
    }
}

/// One side of a connection as the core drives it: the stream and its readiness cache.
#[derive(Debug)]
pub struct Peer<S> {
    /// The stream.
    pub stream: S,
    /// What the last events said and no call has disproved.
    pub ready: Readiness,
}

impl<S> Peer<S> {
    /// A stream with nothing known about its readiness yet.
    pub fn new(stream: S) -> Peer<S> {
        Peer {
            stream,
            ready: Readiness::default(),
        }
    }
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

/// Sorts a connect in progress, after mio's recipe: `peer` is the pending error, else
/// the peer address's result (`NotConnected`: not yet); `to_itself` when the socket is
/// connected to its own address (a failed connect).
pub fn classify_connect(peer: io::Result<()>, to_itself: bool) -> ConnectStatus {
    match peer {
        Ok(()) if to_itself => ConnectStatus::Failed(ConnectFailure::Error),
        Ok(()) => ConnectStatus::Connected,
        Err(e) if e.kind() == io::ErrorKind::NotConnected => ConnectStatus::Pending,
        Err(e) => ConnectStatus::Failed(ConnectFailure::from_error(&e)),
    }
}

/// Why a listening socket stops accepting for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptPause {
    /// Out of file descriptors (EMFILE, ENFILE).
    Descriptors,
    /// Out of kernel memory (ENOBUFS, ENOMEM).
    Memory,
    /// The session limit is reached while clients wait in the backlog.
    Limit,
}

impl AcceptPause {
    /// Every cause, in declaration order: `ALL[c.index()] == c`.
    pub const ALL: [AcceptPause; 3] = [
        AcceptPause::Descriptors,
        AcceptPause::Memory,
        AcceptPause::Limit,
    ];

    /// The cause's position in [`AcceptPause::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The cause's word in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AcceptPause::Descriptors => "descriptors",
            AcceptPause::Memory => "memory",
            AcceptPause::Limit => "limit",
        }
    }
}

/// The outcome of one `accept`, sorted.
#[derive(Debug)]
pub enum Accept<T> {
    /// A new connection.
    Accepted(T),
    /// The backlog is empty: the readiness bit is cleared until the next event.
    WouldBlock,
    /// A resource shortage (EMFILE, ENFILE, ENOBUFS, ENOMEM): pause the listener and try
    /// again from a timer, never spin and never wait for an edge that will not come.
    Pause(AcceptPause, io::Error),
    /// An error about that one connection (ECONNABORTED, EPROTO, network errors): skip
    /// it and accept the next.
    Skip(io::Error),
}

/// Sorts an `accept` result (`Interrupted` is retried by the caller, see [`retry`]).
pub fn classify_accept<T>(result: io::Result<T>) -> Accept<T> {
    match result {
        Ok(conn) => Accept::Accepted(conn),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Accept::WouldBlock,
        Err(e) => match e.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE) => Accept::Pause(AcceptPause::Descriptors, e),
            Some(libc::ENOBUFS | libc::ENOMEM) => Accept::Pause(AcceptPause::Memory, e),
            _ => Accept::Skip(e),
        },
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
    fn connects_are_sorted() {
        let err = |k| Err(io::Error::from(k));
        assert!(matches!(
            classify_connect(Ok(()), false),
            ConnectStatus::Connected
        ));
        assert!(matches!(
            classify_connect(Ok(()), true),
            ConnectStatus::Failed(ConnectFailure::Error)
        ));
        assert!(matches!(
            classify_connect(err(io::ErrorKind::NotConnected), false),
            ConnectStatus::Pending
        ));
        assert!(matches!(
            classify_connect(err(io::ErrorKind::ConnectionRefused), false),
            ConnectStatus::Failed(ConnectFailure::Refused)
        ));
    }

    #[test]
    fn accept_errors_pause_or_skip() {
        let os = |n| io::Result::<()>::Err(io::Error::from_raw_os_error(n));
        for (errno, cause) in [
            (libc::EMFILE, AcceptPause::Descriptors),
            (libc::ENFILE, AcceptPause::Descriptors),
            (libc::ENOBUFS, AcceptPause::Memory),
            (libc::ENOMEM, AcceptPause::Memory),
        ] {
            assert!(matches!(classify_accept(os(errno)), Accept::Pause(c, _) if c == cause));
        }
        for errno in [libc::ECONNABORTED, libc::EPROTO, libc::ENETDOWN] {
            assert!(matches!(classify_accept(os(errno)), Accept::Skip(_)));
        }
        let other = io::Result::<()>::Err(io::Error::from(io::ErrorKind::Other));
        assert!(matches!(classify_accept(other), Accept::Skip(_)));
        assert!(matches!(
            classify_accept(os(libc::EAGAIN)),
            Accept::WouldBlock
        ));
        assert!(matches!(classify_accept(Ok(())), Accept::Accepted(())));
    }

    #[test]
    fn readiness_bits_add_up() {
        let mut r = Readiness::default();
        r.add(Readiness {
            readable: true,
            ..Readiness::default()
        });
        r.add(Readiness {
            writable: true,
            ..Readiness::default()
        });
        assert_eq!(
            r,
            Readiness {
                readable: true,
                writable: true,
                read_closed: false
            }
        );
    }

    #[test]
    fn every_accept_pause_is_at_its_index() {
        for (i, c) in AcceptPause::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
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
