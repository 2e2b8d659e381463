//! A pipe: one direction of a session, from a source peer to a destination peer.
//!
//! The pipe owns a ring only while bytes wait in it (borrowed from the [`Pool`]) and the
//! state of its flow. EOF from the source is forwarded as `shutdown_write` on the
//! destination only once the ring is empty: the FIN always comes after the last byte.
//!
//! A pipe can carry a *prefix*: protocol bytes of the session's preamble (a tunnel's
//! ATTACH or READY frame) written to the destination before any relayed byte, so they
//! never interleave.
//!
//! Readiness is a cache kept in each [`Peer`]: an event sets a bit, only `WouldBlock`
//! clears it. [`Pipe::pump`] makes at most one read, one write and one FIN per call and
//! reports what happened; the session calls it until nothing moves.
//!
//! Backpressure is counted: a *read pause* is the source being readable while the pipe
//! will not read (its storage is full, or the pool has no buffer to lend); a *resume* is
//! the next read after a pause.
//!
//! The storage is a ring of the size class the pipe's reads earned, or a kernel pipe
//! (splice): see [`store`]. The flow rules are the same for both; only the readiness
//! shortcuts differ (a short splice says nothing about the socket).

use std::borrow::Cow;
use std::io::{self, IoSlice};

use super::pool::Pool;
use super::stream::{classify, classify_error, retry, Io, Peer, Stream};

mod store;

use store::{Gear, Store};

/// Protocol bytes a pipe writes before any relayed byte: static for fixed frames, owned
/// for built ones.
pub type Bytes = Cow<'static, [u8]>;

/// Where the flow of a pipe stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// The source may still send bytes.
    Open,
    /// The source sent FIN; the ring drains, then FIN goes to the destination.
    Eof,
    /// FIN was forwarded to the destination: this direction is finished.
    Done,
}

/// Which end of the pipe broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The stream we read from.
    Source,
    /// The stream we write to.
    Destination,
}

/// What one call of [`Pipe::pump`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pump {
    /// Something changed: bytes read, bytes written (counted here), EOF seen or FIN sent.
    Progress {
        /// Bytes handed to the destination in this call.
        written: usize,
    },
    /// Nothing can move until an event arrives.
    Stuck,
    /// The source is readable but the pool has no buffer to lend.
    Starved,
    /// One end failed: reset (`true`) or another error (`false`).
    Broken(End, bool),
}

/// One direction of a session.
#[derive(Debug)]
pub struct Pipe {
    store: Store,
    gear: Gear,
    /// A kernel pipe answered "would block" while holding bytes: out of slots, so no
    /// read until it drains (the source's readiness is kept).
    stuffed: bool,
    flow: Flow,
    delivered: u64,
    prefix: Option<Bytes>,
    /// Bytes of the prefix written so far (a prefix is a few protocol bytes: `u32`
    /// keeps the pipe as small as it was with a fixed inline prefix).
    prefix_at: u32,
    /// Not reading a readable source, since the last read.
    paused: bool,
    pauses: u32,
    resumes: u32,
}

impl Default for Pipe {
    fn default() -> Self {
        Pipe::new()
    }
}

impl Pipe {
    /// An open pipe with no buffer.
    pub fn new() -> Pipe {
        Pipe {
            store: Store::Empty,
            gear: Gear::default(),
            stuffed: false,
            flow: Flow::Open,
            delivered: 0,
            prefix: None,
            prefix_at: 0,
            paused: false,
            pauses: 0,
            resumes: 0,
        }
    }

    /// Queues protocol bytes to go out before any relayed byte.
    pub fn set_prefix(&mut self, bytes: Bytes) {
        debug_assert!(self.prefix_pending() == 0, "one prefix at a time");
        self.prefix = (!bytes.is_empty()).then_some(bytes);
        self.prefix_at = 0;
    }

    /// Replaces a prefix none of which was written (a connect that failed before any
    /// byte went out), or drops it with `None`.
    pub fn replace_prefix(&mut self, bytes: Option<Bytes>) {
        debug_assert!(self.prefix_at == 0, "the prefix was partly written");
        self.prefix = bytes.filter(|b| !b.is_empty());
        self.prefix_at = 0;
    }

    fn prefix_pending(&self) -> usize {
        let at = self.prefix_at as usize;
        self.prefix
            .as_ref()
            .map_or(0, |p| p.len().saturating_sub(at))
    }

    /// The flow state.
    pub fn flow(&self) -> Flow {
        self.flow
    }

    /// Bytes handed to the destination so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Bytes waiting: prefix and storage.
    pub fn pending(&self) -> usize {
        self.prefix_pending() + self.store.len()
    }

    /// True while a ring buffer or kernel pipe is held.
    pub fn holds_buffer(&self) -> bool {
        !matches!(self.store, Store::Empty)
    }

    /// True while a kernel pipe is held (the direction splices).
    pub fn splicing(&self) -> bool {
        self.store.is_kernel()
    }

    /// The storage the pipe's reads earned: a ring class, or one above the largest for a
    /// kernel pipe.
    pub fn gear(&self) -> u8 {
        self.gear.level()
    }

    /// Read pauses and resumes so far (backpressure).
    pub fn pauses(&self) -> (u64, u64) {
        (u64::from(self.pauses), u64::from(self.resumes))
    }

    fn pause(&mut self) {
        if !self.paused {
            self.paused = true;
            self.pauses = self.pauses.saturating_add(1);
        }
    }

    /// True if the pipe would read now, given a readable source and a free buffer.
    pub fn wants_read(&self) -> bool {
        self.flow == Flow::Open && !self.store.is_full() && !self.stuffed
    }

    /// Moves what can move: one read (if the source is readable), one write (if
    /// `may_write` and the destination is writable), and the FIN once EOF has been seen
    /// and the ring is empty.
    ///
    /// Clears a readiness bit when its call answers `WouldBlock`, and also after a *short*
    /// read or write (fewer bytes than offered): the kernel had no more to give or no
    /// more room, and edge-triggered epoll reports the next arrival or freed space as a
    /// new event, so the confirming `EAGAIN` call is saved (tokio does the same). A short
    /// read keeps the bit when the source is "read closed" (the peer's FIN or RST was
    /// reported): that end raises no further event and must still be read.
    pub fn pump<S: Stream, D: Stream>(
        &mut self,
        source: &mut Peer<S>,
        destination: &mut Peer<D>,
        may_write: bool,
        pool: &mut Pool,
    ) -> Pump {
        let mut changed = false;
        let mut starved = false;
        let closed = source.ready.read_closed;
        // A kernel pipe only between two streams that can be spliced: bytes spliced in
        // must be able to leave the same way.
        let splice =
            source.stream.splice_fd().is_some() && destination.stream.splice_fd().is_some();
        let read = self.read(
            &mut source.stream,
            &mut source.ready.readable,
            closed,
            splice,
            pool,
        );
        match read {
            Some(Pump::Progress { .. }) => changed = true,
            // No buffer to read into; a prefix may still be waiting to go out.
            Some(Pump::Starved) => starved = true,
            Some(broken @ Pump::Broken(..)) => return broken,
            Some(Pump::Stuck) | None => {}
        }
        let idle = if starved { Pump::Starved } else { Pump::Stuck };
        if !may_write {
            return if changed {
                Pump::Progress { written: 0 }
            } else {
                idle
            };
        }
        let written = match self.flush(destination, pool) {
            Ok(n) => n,
            Err(reset) => return Pump::Broken(End::Destination, reset),
        };
        if self.flow == Flow::Eof && self.pending() == 0 {
            match retry(|| destination.stream.shutdown_write()) {
                Ok(()) => {
                    self.flow = Flow::Done;
                    changed = true;
                }
                // A stream that must write before its FIN (TLS: the close_notify) and
                // found no room: the FIN is sent again on the next pump, after the next
                // writable edge. A plain socket never answers this.
                Err(e) if classify_error(&e) == Io::Blocked => {
                    destination.ready.writable = false;
                }
                Err(e) => return Pump::Broken(End::Destination, classify_error(&e) == Io::Reset),
            }
        }
        if changed || written > 0 {
            Pump::Progress { written }
        } else {
            idle
        }
    }

    /// Writes what is stored (prefix, then ring) to `destination` without reading: also
    /// used once the source is gone. `Err(reset)` when the destination broke.
    pub fn flush<D: Stream>(
        &mut self,
        destination: &mut Peer<D>,
        pool: &mut Pool,
    ) -> Result<usize, bool> {
        self.write(
            &mut destination.stream,
            &mut destination.ready.writable,
            pool,
        )
    }

    /// Drops the stored bytes and gives the buffer back (the destination is gone, or the
    /// session is closing).
    pub fn discard(&mut self, pool: &mut Pool) {
        self.prefix = None;
        self.prefix_at = 0;
        self.stuffed = false;
        self.store.release(pool);
    }

    /// Marks the direction finished after an error elsewhere: nothing more will move.
    pub fn end(&mut self, pool: &mut Pool) {
        self.discard(pool);
        self.flow = Flow::Done;
    }

    /// The source is gone: read nothing more (its FIN or RST is handled by the session).
    pub fn stop_reading(&mut self) {
        if self.flow == Flow::Open {
            self.flow = Flow::Eof;
        }
    }

    /// One read from the source into the ring, without writing or forwarding EOF: used to
    /// collect what a reset side's kernel still holds. `None` when no read was attempted.
    /// The hand-over copies: it does not know the destination's kind.
    pub fn fill<S: Stream>(&mut self, source: &mut Peer<S>, pool: &mut Pool) -> Option<Pump> {
        self.read(
            &mut source.stream,
            &mut source.ready.readable,
            true,
            false,
            pool,
        )
    }

    fn read<S: Stream>(
        &mut self,
        source: &mut S,
        ready: &mut bool,
        closed: bool,
        splice: bool,
        pool: &mut Pool,
    ) -> Option<Pump> {
        if !*ready || self.flow != Flow::Open {
            return None;
        }
        if !self.wants_read() {
            self.pause();
            return None;
        }
        if let Store::Empty = self.store {
            match self.gear.take(pool, splice) {
                Some(store) => self.store = store,
                None => {
                    self.pause();
                    return Some(Pump::Starved);
                }
            }
        }
        let room = self.store.room();
        let kernel = self.store.is_kernel();
        let result = retry(|| self.store.fill(source));
        if kernel && is_unsupported(&result) {
            // Splice is not for this stream: copy from now on. Bytes already in the
            // kernel pipe are owed: nothing is read until they have left (then the pipe
            // goes back and the next read takes a ring).
            self.gear.refuse_splice(pool);
            if self.store.len() > 0 {
                self.stuffed = true;
                self.pause();
                return Some(Pump::Stuck);
            }
            self.store.release(pool);
            return Some(Pump::Progress { written: 0 });
        }
        let outcome = classify(result);
        if self.paused && matches!(outcome, Io::Moved(_) | Io::Eof) {
            self.paused = false;
            self.resumes = self.resumes.saturating_add(1);
        }
        let result = match outcome {
            Io::Moved(n) => {
                self.gear.note_read(n, room, pool);
                // A short read drained the socket: the next arrival is a new edge. A short
                // splice may only mean the kernel pipe ran out of slots: read again.
                if n < room && !closed && !kernel {
                    *ready = false;
                }
                Pump::Progress { written: 0 }
            }
            Io::Eof => {
                self.flow = Flow::Eof;
                Pump::Progress { written: 0 }
            }
            // A kernel pipe holding bytes may be out of slots rather than the socket
            // empty: keep the readiness and read again once it drains (HAProxy's rule).
            Io::Blocked if kernel && self.store.len() > 0 => {
                self.stuffed = true;
                self.pause();
                Pump::Stuck
            }
            Io::Blocked => {
                *ready = false;
                Pump::Stuck
            }
            Io::Reset => Pump::Broken(End::Source, true),
            Io::Error(_) => Pump::Broken(End::Source, false),
        };
        self.store.release_if_empty(pool);
        Some(result)
    }

    fn write<D: Stream>(
        &mut self,
        destination: &mut D,
        ready: &mut bool,
        pool: &mut Pool,
    ) -> Result<usize, bool> {
        if !*ready {
            return Ok(0);
        }
        while let Some(prefix) = &self.prefix {
            let bytes = [IoSlice::new(
                prefix.get(self.prefix_at as usize..).unwrap_or_default(),
            )];
            match classify(retry(|| destination.write_vectored(&bytes))) {
                // Prefix bytes are protocol, not relayed bytes: not counted as delivered.
                Io::Moved(n) => {
                    let at = (self.prefix_at as usize).saturating_add(n);
                    self.prefix_at = u32::try_from(at).unwrap_or(u32::MAX);
                    if at >= prefix.len() {
                        self.prefix = None;
                        self.prefix_at = 0;
                    }
                }
                Io::Blocked => {
                    *ready = false;
                    return Ok(0);
                }
                Io::Eof | Io::Error(_) => return Err(false),
                Io::Reset => return Err(true),
            }
        }
        let offered = self.store.len();
        if offered == 0 {
            return Ok(0);
        }
        let kernel = self.store.is_kernel();
        let result = retry(|| self.store.drain(destination));
        if kernel && is_unsupported(&result) {
            // Bytes are already in the kernel pipe and cannot leave it: the direction
            // is broken (never seen with TCP sockets on both ends).
            return Err(false);
        }
        let written = match classify(result) {
            Io::Moved(n) => {
                // A short write filled the send buffer: freed space is a new edge. A
                // short splice says nothing certain: write again.
                if n < offered && !kernel {
                    *ready = false;
                }
                self.stuffed = false;
                n
            }
            Io::Blocked => {
                *ready = false;
                0
            }
            // A write that takes nothing from a non-empty buffer: the socket is unusable.
            Io::Eof | Io::Error(_) => return Err(false),
            Io::Reset => return Err(true),
        };
        self.delivered += written as u64;
        self.store.release_if_empty(pool);
        Ok(written)
    }
}

/// Splice refused: the stream has no descriptor to splice, or the kernel cannot.
fn is_unsupported(result: &io::Result<usize>) -> bool {
    matches!(result, Err(e) if e.kind() == io::ErrorKind::Unsupported)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_store;
