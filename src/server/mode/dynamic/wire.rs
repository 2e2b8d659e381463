//! The few bytes a handshake reads and writes itself: exactly one peeked message
//! consumed, a short answer written, and a refused client's unread bytes discarded.

use std::io::{IoSlice, IoSliceMut};

use crate::core::stream::{retry, Stream};
use crate::os::net::Conn;

/// Bytes of a refused client's unread request discarded before its answer, so the
/// close sends a FIN after the answer rather than a reset that may destroy it.
const DISCARD: usize = 64 << 10;

/// Reads exactly `len` bytes, already peeked (they are there), into `buf`.
pub(super) fn consume(conn: &mut Conn, buf: &mut [u8], len: usize) -> std::io::Result<()> {
    let buf = buf.get_mut(..len).ok_or(std::io::ErrorKind::InvalidInput)?;
    let mut done = 0;
    while done < len {
        let rest = buf.get_mut(done..).unwrap_or_default();
        match retry(|| conn.read_vectored(&mut [IoSliceMut::new(rest)])) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes a short answer whole into an empty socket buffer; false if it did not fit.
pub(super) fn send(conn: &mut Conn, bytes: &[u8]) -> bool {
    matches!(retry(|| conn.write_vectored(&[IoSlice::new(bytes)])), Ok(n) if n == bytes.len())
}

/// Reads and drops what the client sent and was not consumed (at most [`DISCARD`]).
pub(super) fn discard(conn: &mut Conn) {
    let mut buf = [0u8; 4096];
    let mut left = DISCARD;
    while left > 0 {
        match retry(|| conn.read_vectored(&mut [IoSliceMut::new(&mut buf)])) {
            Ok(n) if n > 0 => left = left.saturating_sub(n),
            _ => return,
        }
    }
}
