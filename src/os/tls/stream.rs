//! [`TlsStream`] as a core [`Stream`]: plaintext reads and writes over TLS records, the
//! `close_notify` as FIN, and the TCP socket's own answers for the rest (the rules are in
//! the parent module's documentation).

use std::io::{self, IoSlice, IoSliceMut, Read, Write};

use rustls::Connection;

use super::{truncated, Socket, State, TlsStream};
use crate::core::stream::{ConnectStatus, Stream};

/// How copying buffered plaintext ended.
enum Drain {
    /// The caller's buffers are full.
    Full,
    /// No plaintext left: more records are needed.
    Empty,
    /// The peer's `close_notify` came after the last byte.
    Closed,
    /// The TCP stream ended without `close_notify`.
    Truncated,
    /// Any other failure.
    Failed(io::Error),
}

/// Copies plaintext from `tls` into `bufs` after the first `*filled` bytes.
fn drain(tls: &mut Connection, bufs: &mut [IoSliceMut<'_>], filled: &mut usize) -> Drain {
    let mut skip = *filled;
    for buf in bufs.iter_mut() {
        let Some(mut part) = buf.get_mut(skip..) else {
            skip -= buf.len();
            continue;
        };
        skip = 0;
        while !part.is_empty() {
            match tls.reader().read(part) {
                Ok(0) => return Drain::Closed,
                Ok(n) => {
                    *filled += n;
                    part = part.get_mut(n..).unwrap_or_default();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Drain::Empty,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Drain::Truncated,
                Err(e) => return Drain::Failed(e),
            }
        }
    }
    Drain::Full
}

/// The first bytes of `bufs` after the first `offset`, as one slice; `None` past the end.
fn slice_at<'a>(bufs: &'a [IoSlice<'_>], mut offset: usize) -> Option<&'a [u8]> {
    for buf in bufs {
        match buf.get(offset..) {
            Some(rest) if !rest.is_empty() => return Some(rest),
            Some(_) => offset = 0,
            None => offset -= buf.len(),
        }
    }
    None
}

/// `n` bytes if some moved, else the error: bytes already copied are not lost to a
/// socket error met after them. The next call meets the end again (after a reset the
/// socket reads as closed, which is a truncation: a reset too).
fn moved_or(n: usize, e: io::Error) -> io::Result<usize> {
    if n > 0 {
        Ok(n)
    } else {
        Err(e)
    }
}

fn failed() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "the TLS handshake failed")
}

impl Stream for TlsStream {
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.ready()?;
        let mut filled = 0;
        loop {
            let State::Live(tls) = &mut self.state else {
                return Err(failed());
            };
            match drain(tls, bufs, &mut filled) {
                Drain::Full | Drain::Closed => return Ok(filled),
                Drain::Truncated => return moved_or(filled, truncated()),
                Drain::Failed(e) => return moved_or(filled, e),
                Drain::Empty => {}
            }
            let mut socket = Socket(&mut self.conn);
            match tls.read_tls(&mut socket) {
                // 0 is the TCP FIN: rustls notes it, and the next drain says how it ended.
                Ok(_) => {
                    if let Err(e) = tls.process_new_packets() {
                        // A bad record, or the peer's alert: the stream is broken, and
                        // plaintext copied in this call goes with it (the session
                        // closes on an error either way). Best effort: the alert rustls
                        // queued for it.
                        let _ = tls.write_tls(&mut socket);
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                    if tls.wants_write() {
                        // A record of rustls's own (a key update): out now if it fits,
                        // else with the next write.
                        let _ = self.flush_records();
                    }
                }
                Err(e) => return moved_or(filled, e),
            }
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.ready()?;
        if self.closing {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut done = 0;
        loop {
            // Records first: bytes taken earlier count once all their records are out.
            if let Err(e) = self.flush_records() {
                return moved_or(done, e);
            }
            let held = self.taken.min(total - done);
            done += held;
            self.taken -= held;
            if self.taken > 0 {
                // Offered fewer bytes than were taken (not a pipe's retry): what it
                // offered is written; the rest is reported next time.
                return Ok(done);
            }
            let Some(part) = slice_at(bufs, done) else {
                return Ok(done);
            };
            let State::Live(tls) = &mut self.state else {
                return Err(failed());
            };
            let took = tls.writer().write(part)?;
            if took == 0 {
                // rustls's buffer is full although every record is out: never seen.
                return moved_or(done, io::ErrorKind::WouldBlock.into());
            }
            self.taken = took;
        }
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        if self.fin_sent {
            return Ok(());
        }
        let State::Live(tls) = &mut self.state else {
            // No TLS yet (or a failed one): the FIN alone.
            self.fin_sent = true;
            return self.conn.shutdown_write();
        };
        if !self.closing {
            tls.send_close_notify();
            self.closing = true;
        }
        // WouldBlock here: the alert waits for the next writable edge, and the caller
        // calls again then.
        self.flush_records()?;
        self.conn.shutdown_write()?;
        self.fin_sent = true;
        Ok(())
    }

    fn abort(&mut self) {
        self.conn.abort();
    }

    fn unacked(&self) -> io::Result<usize> {
        Ok(self.conn.unacked()? + self.queued)
    }

    fn connect_status(&mut self) -> ConnectStatus {
        self.conn.connect_status()
    }
}
