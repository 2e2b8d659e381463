//! [`TlsStream`] as a core [`Stream`]: plaintext reads and writes over TLS records, the
//! `close_notify` as FIN, and the TCP socket's own answers for the rest (the rules are in
//! the parent module's documentation).

use std::io::{self, IoSlice, IoSliceMut, Read, Write};

use rustls::Connection;

use super::{truncated, Conn, Socket, State, TlsStream};
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

/// The most ciphertext read in one system call while bulk arrives: rustls reads at most
/// one record (about 16 KiB) per `read_tls`, so a stream of records costs a `readv` each;
/// read ahead into the stack, four records cost one.
const READ_AHEAD: usize = 64 * 1024;

/// The largest record on the wire: 16 KiB of plaintext, its content type, the AEAD tag
/// and the 5-byte header, with room to spare.
pub(super) const RECORD: usize = 16 * 1024 + 512;

/// How much ciphertext may be read ahead when the caller has `room` bytes of space left:
/// little enough that every plaintext byte it carries fits (a record is always longer
/// than its plaintext, and rustls may hold one partial record from before, so `room -
/// RECORD` of ciphertext never yields more than `room` of plaintext). `None` when that is
/// under a record: rustls's own one-record read is as good.
fn read_ahead(room: usize) -> Option<usize> {
    let ahead = room.saturating_sub(RECORD).min(READ_AHEAD);
    (ahead >= RECORD).then_some(ahead)
}

/// Decrypts what `tls` holds and copies its plaintext into `bufs`; `Some` when the read
/// must return with it (see [`drain`]).
fn settle(
    tls: &mut Connection,
    conn: &mut Conn,
    bufs: &mut [IoSliceMut<'_>],
    filled: &mut usize,
) -> Option<io::Result<usize>> {
    if let Err(e) = tls.process_new_packets() {
        // A bad record, or the peer's alert: the stream is broken, and plaintext copied
        // in this call goes with it (the session closes on an error either way). Best
        // effort: the alert rustls queued for it.
        let _ = tls.write_tls(&mut Socket(conn));
        return Some(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
    }
    match drain(tls, bufs, filled) {
        Drain::Full | Drain::Closed => Some(Ok(*filled)),
        Drain::Truncated => Some(moved_or(*filled, truncated())),
        Drain::Failed(e) => Some(moved_or(*filled, e)),
        Drain::Empty => None,
    }
}

impl TlsStream {
    /// Writes every queued record; `WouldBlock` if the socket fills first (then what is
    /// left is counted for [`Stream::unacked`]).
    fn flush_records(&mut self) -> io::Result<()> {
        let State::Live(tls) = &mut self.state else {
            return Ok(());
        };
        let mut socket = Socket(&mut self.conn);
        let result = loop {
            if !tls.wants_write() {
                break Ok(());
            }
            match tls.write_tls(&mut socket) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) => break Err(e),
            }
        };
        // Nothing new is processed here (records are processed as soon as they are
        // read); this only asks rustls how many bytes it still holds.
        self.queued = match tls.wants_write() {
            false => 0,
            true => tls
                .process_new_packets()
                .map_or(1, |state| state.tls_bytes_to_write().max(1)),
        };
        result
    }
}

impl Stream for TlsStream {
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.ready()?;
        let room: usize = bufs.iter().map(|b| b.len()).sum();
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
            match read_ahead(room - filled).filter(|_| self.bulk) {
                Some(ahead) => {
                    let mut scratch = [0u8; READ_AHEAD];
                    let n = match Socket(&mut self.conn).read(&mut scratch[..ahead]) {
                        Ok(n) => n,
                        Err(e) => return moved_or(filled, e),
                    };
                    self.bulk = n >= RECORD / 2;
                    // 0 is the TCP FIN: an empty reader tells rustls, and the next drain
                    // says how it ended.
                    let mut rest = scratch.get(..n).unwrap_or_default();
                    loop {
                        let took = match tls.read_tls(&mut rest) {
                            Ok(took) => took,
                            Err(e) => return moved_or(filled, e),
                        };
                        if let Some(done) = settle(tls, &mut self.conn, bufs, &mut filled) {
                            // Never with ciphertext left in `rest` (see `read_ahead`),
                            // except after the peer's close_notify or a bad record.
                            return done;
                        }
                        if rest.is_empty() || took == 0 {
                            break;
                        }
                    }
                }
                None => match tls.read_tls(&mut Socket(&mut self.conn)) {
                    // 0 is the TCP FIN: rustls notes it, and the next drain says how it
                    // ended.
                    Ok(n) => {
                        self.bulk = n >= RECORD / 2;
                        if let Some(done) = settle(tls, &mut self.conn, bufs, &mut filled) {
                            return done;
                        }
                    }
                    Err(e) => return moved_or(filled, e),
                },
            }
            if let State::Live(tls) = &mut self.state {
                if tls.wants_write() {
                    // A record of rustls's own (a key update): out now if it fits, else
                    // with the next write.
                    let _ = self.flush_records();
                }
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
