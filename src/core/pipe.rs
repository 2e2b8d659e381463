//! A pipe: one direction of a session, from a source stream to a destination stream.
//!
//! The pipe owns a ring only while bytes wait in it (borrowed from the [`Pool`]) and the
//! state of its flow. EOF from the source is forwarded as `shutdown_write` on the
//! destination only once the ring is empty: the FIN always comes after the last byte.
//!
//! A pipe can carry a short *prefix*: protocol bytes (a tunnel's ATTACH or READY frame)
//! written to the destination before any relayed byte, so they never interleave.
//!
//! Readiness is a cache kept by the session: an event sets a bit, only `WouldBlock` clears
//! it. [`Pipe::pump`] makes at most one read, one write and one FIN per call and reports
//! what happened; the session calls it until nothing moves.
//!
//! Backpressure is counted: a *read pause* is the source being readable while the pipe
//! will not read (its ring is full, or the pool has no buffer to lend); a *resume* is the
//! next read after a pause.

use std::io::IoSlice;

use super::pool::Pool;
use super::ring::Ring;
use super::stream::{classify, classify_error, retry, Io, Stream};

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

/// Longest prefix a pipe carries.
pub const MAX_PREFIX: usize = 24;

/// One direction of a session.
#[derive(Debug)]
pub struct Pipe {
    ring: Option<Ring>,
    flow: Flow,
    delivered: u64,
    prefix: [u8; MAX_PREFIX],
    prefix_at: u8,
    prefix_len: u8,
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
            ring: None,
            flow: Flow::Open,
            delivered: 0,
            prefix: [0u8; MAX_PREFIX],
            prefix_at: 0,
            prefix_len: 0,
            paused: false,
            pauses: 0,
            resumes: 0,
        }
    }

    /// Queues protocol bytes to go out before any relayed byte (at most [`MAX_PREFIX`]).
    pub fn set_prefix(&mut self, bytes: &[u8]) {
        debug_assert!(bytes.len() <= MAX_PREFIX && self.prefix_pending() == 0);
        let n = bytes.len().min(MAX_PREFIX);
        self.prefix[..n].copy_from_slice(&bytes[..n]);
        self.prefix_at = 0;
        self.prefix_len = n as u8;
    }

    fn prefix_pending(&self) -> usize {
        usize::from(self.prefix_len - self.prefix_at)
    }

    /// The flow state.
    pub fn flow(&self) -> Flow {
        self.flow
    }

    /// Bytes handed to the destination so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Bytes waiting: prefix and ring.
    pub fn pending(&self) -> usize {
        self.prefix_pending() + self.ring.as_ref().map_or(0, Ring::len)
    }

    /// True while a pool buffer is held.
    pub fn holds_buffer(&self) -> bool {
        self.ring.is_some()
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
        self.flow == Flow::Open && !self.ring.as_ref().is_some_and(Ring::is_full)
    }

    /// Moves what can move: one read (if `source_ready`), one write (if `may_write` and
    /// `destination_ready`), and the FIN once EOF has been seen and the ring is empty.
    ///
    /// Clears a readiness bit when its call answers `WouldBlock`, and also after a *short*
    /// read or write (fewer bytes than offered): the kernel had no more to give or no
    /// more room, and edge-triggered epoll reports the next arrival or freed space as a
    /// new event, so the confirming `EAGAIN` call is saved (tokio does the same). A short
    /// read keeps the bit when `source_closed` (the peer's FIN or RST was reported): that
    /// end raises no further event and must still be read.
    #[allow(clippy::too_many_arguments)]
    pub fn pump<S: Stream + ?Sized, D: Stream + ?Sized>(
        &mut self,
        source: &mut S,
        source_ready: &mut bool,
        source_closed: bool,
        destination: &mut D,
        destination_ready: &mut bool,
        may_write: bool,
        pool: &mut Pool,
    ) -> Pump {
        let mut changed = false;
        let mut starved = false;
        match self.read(source, source_ready, source_closed, pool) {
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
        let written = match self.write(destination, destination_ready, pool) {
            Ok(n) => n,
            Err(reset) => return Pump::Broken(End::Destination, reset),
        };
        if self.flow == Flow::Eof && self.pending() == 0 {
            match retry(|| destination.shutdown_write()) {
                Ok(()) => {
                    self.flow = Flow::Done;
                    changed = true;
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

    /// Writes what is stored to `destination` without reading: used once the source is gone.
    /// `Err(reset)` when the destination broke.
    pub fn flush<D: Stream + ?Sized>(
        &mut self,
        destination: &mut D,
        destination_ready: &mut bool,
        pool: &mut Pool,
    ) -> Result<usize, bool> {
        self.write(destination, destination_ready, pool)
    }

    /// Drops the stored bytes and gives the buffer back (the destination is gone, or the
    /// session is closing).
    pub fn discard(&mut self, pool: &mut Pool) {
        self.prefix_at = self.prefix_len;
        if let Some(mut ring) = self.ring.take() {
            ring.clear();
            pool.give(ring.into_buffer());
        }
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
    pub fn fill<S: Stream + ?Sized>(
        &mut self,
        source: &mut S,
        ready: &mut bool,
        pool: &mut Pool,
    ) -> Option<Pump> {
        self.read(source, ready, true, pool)
    }

    fn read<S: Stream + ?Sized>(
        &mut self,
        source: &mut S,
        ready: &mut bool,
        closed: bool,
        pool: &mut Pool,
    ) -> Option<Pump> {
        if !*ready || self.flow != Flow::Open {
            return None;
        }
        if !self.wants_read() {
            self.pause();
            return None;
        }
        if self.ring.is_none() {
            match pool.take() {
                Some(buf) => self.ring = Some(Ring::new(buf)),
                None => {
                    self.pause();
                    return Some(Pump::Starved);
                }
            }
        }
        let ring = self.ring.as_mut()?;
        let room = ring.room();
        let outcome = classify(retry(|| ring.read_from(source)));
        if self.paused && matches!(outcome, Io::Moved(_) | Io::Eof) {
            self.paused = false;
            self.resumes = self.resumes.saturating_add(1);
        }
        let result = match outcome {
            Io::Moved(n) => {
                if n < room && !closed {
                    *ready = false; // drained: the next arrival is a new edge
                }
                Pump::Progress { written: 0 }
            }
            Io::Eof => {
                self.flow = Flow::Eof;
                Pump::Progress { written: 0 }
            }
            Io::Blocked => {
                *ready = false;
                Pump::Stuck
            }
            Io::Reset => Pump::Broken(End::Source, true),
            Io::Error(_) => Pump::Broken(End::Source, false),
        };
        self.release_if_empty(pool);
        Some(result)
    }

    fn write<D: Stream + ?Sized>(
        &mut self,
        destination: &mut D,
        ready: &mut bool,
        pool: &mut Pool,
    ) -> Result<usize, bool> {
        if !*ready {
            return Ok(0);
        }
        while self.prefix_pending() > 0 {
            let (at, len) = (usize::from(self.prefix_at), usize::from(self.prefix_len));
            let bytes = [IoSlice::new(&self.prefix[at..len])];
            match classify(retry(|| destination.write_vectored(&bytes))) {
                // Prefix bytes are protocol, not relayed bytes: not counted as delivered.
                Io::Moved(n) => self.prefix_at += n.min(len - at) as u8,
                Io::Blocked => {
                    *ready = false;
                    return Ok(0);
                }
                Io::Eof | Io::Error(_) => return Err(false),
                Io::Reset => return Err(true),
            }
        }
        let Some(ring) = self.ring.as_mut() else {
            return Ok(0);
        };
        let offered = ring.len();
        let written = match classify(retry(|| ring.write_to(destination))) {
            Io::Moved(n) => {
                if n < offered {
                    *ready = false; // send buffer full: freed space is a new edge
                }
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
        self.release_if_empty(pool);
        Ok(written)
    }

    fn release_if_empty(&mut self, pool: &mut Pool) {
        if self.ring.as_ref().is_some_and(Ring::is_empty) {
            if let Some(ring) = self.ring.take() {
                pool.give(ring.into_buffer());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::scripted::{ReadStep, Scripted, WriteStep};

    struct Bench {
        src: Scripted,
        dst: Scripted,
        src_ready: bool,
        src_closed: bool,
        dst_ready: bool,
        pool: Pool,
        pipe: Pipe,
    }

    fn bench(ring: usize) -> Bench {
        Bench {
            src: Scripted::new(),
            dst: Scripted::sink(),
            src_ready: true,
            src_closed: false,
            dst_ready: true,
            pool: Pool::new(ring, 4),
            pipe: Pipe::new(),
        }
    }

    impl Bench {
        fn pump(&mut self) -> Pump {
            self.pipe.pump(
                &mut self.src,
                &mut self.src_ready,
                self.src_closed,
                &mut self.dst,
                &mut self.dst_ready,
                true,
                &mut self.pool,
            )
        }

        /// Pumps until nothing moves, as the kernel would report it: the source is
        /// "read closed" once its end is queued, and every readiness bit a short read or
        /// write cleared comes back as an event while the script still has steps.
        fn run(&mut self) -> Pump {
            let mut last = Pump::Stuck;
            for _ in 0..10_000 {
                self.src_closed = self.src.peer_closed();
                match self.pump() {
                    Pump::Progress { .. } => continue,
                    Pump::Stuck if self.events_pending() => {
                        self.src_ready |= !self.src.reads.is_empty();
                        self.dst_ready |= self.dst.accept_when_done || !self.dst.writes.is_empty();
                        last = Pump::Stuck;
                    }
                    other => return other,
                }
            }
            panic!("the pipe never settled (last {last:?})")
        }

        /// True when an edge would still come: bytes queued in the source with its bit
        /// cleared by a short read, or room in a destination whose bit a short write cleared.
        fn events_pending(&self) -> bool {
            let more_input =
                !self.src_ready && self.src.reads.iter().any(|s| *s != ReadStep::Block);
            let more_room = !self.dst_ready
                && self.pipe.pending() > 0
                && matches!(self.dst.writes.front(), Some(WriteStep::Accept(_)))
                || (!self.dst_ready
                    && self.pipe.pending() > 0
                    && self.dst.writes.is_empty()
                    && self.dst.accept_when_done);
            more_input || more_room
        }
    }

    // ---- open flow ----

    #[test]
    fn bytes_pass_through_and_the_buffer_goes_back() {
        let mut b = bench(4);
        b.src.send(b"hello world");
        assert_eq!(b.run(), Pump::Stuck);
        assert_eq!(b.dst.written, b"hello world");
        assert_eq!(b.pipe.delivered(), 11);
        assert!(!b.pipe.holds_buffer());
        assert_eq!(b.pool.lent(), 0);
        assert!(!b.src_ready, "readiness cleared by WouldBlock only");
    }

    #[test]
    fn idle_pipe_holds_no_buffer() {
        let mut b = bench(4);
        assert_eq!(b.run(), Pump::Stuck);
        assert!(!b.pipe.holds_buffer());
    }

    #[test]
    fn blocked_destination_keeps_bytes_and_stops_reading_when_full() {
        let mut b = bench(4);
        b.dst = Scripted::new(); // every write blocks
        b.src.send(b"abcdefgh");
        assert_eq!(b.run(), Pump::Stuck);
        assert_eq!(b.pipe.pending(), 4);
        assert!(b.src_ready, "the source is still readable: no lost wakeup");
        assert!(!b.dst_ready);
        // The destination drains: reading resumes from the cached readiness.
        b.dst.accept_when_done = true;
        b.dst_ready = true;
        assert_eq!(b.run(), Pump::Stuck);
        assert_eq!(b.dst.written, b"abcdefgh");
    }

    #[test]
    fn a_full_ring_counts_one_pause_and_one_resume() {
        let mut b = bench(4);
        b.dst = Scripted::new(); // every write blocks
        b.src.send(b"abcdefgh");
        assert_eq!(b.run(), Pump::Stuck);
        assert_eq!(b.run(), Pump::Stuck);
        assert_eq!(
            b.pipe.pauses(),
            (1, 0),
            "one pause however often it is pumped"
        );
        b.dst.accept_when_done = true;
        b.dst_ready = true;
        assert_eq!(b.run(), Pump::Stuck);
        assert_eq!(b.dst.written, b"abcdefgh");
        assert_eq!(b.pipe.pauses(), (1, 1));
    }

    #[test]
    fn an_empty_pool_counts_as_a_pause() {
        let mut b = bench(4);
        b.pool = Pool::new(4, 1);
        let held = b.pool.take();
        b.src.send(b"ab");
        assert_eq!(b.run(), Pump::Starved);
        assert_eq!(b.pipe.pauses(), (1, 0));
        if let Some(buf) = held {
            b.pool.give(buf);
        }
        assert_eq!(b.run(), Pump::Stuck);
        assert_eq!(b.dst.written, b"ab");
        assert_eq!(b.pipe.pauses(), (1, 1));
    }

    #[test]
    fn partial_writes_keep_order() {
        let mut b = bench(8);
        b.dst = Scripted::new();
        b.dst
            .writes
            .extend([WriteStep::Accept(1), WriteStep::Accept(2)]);
        b.dst.accept_when_done = true;
        b.src.send(b"abcdef");
        b.run();
        assert_eq!(b.dst.written, b"abcdef");
    }

    #[test]
    fn starved_pipe_reports_it_and_reads_nothing() {
        let mut b = bench(4);
        let _held: Vec<_> = (0..4).map(|_| b.pool.take().expect("take")).collect();
        b.src.send(b"x");
        assert_eq!(b.pump(), Pump::Starved);
        assert_eq!(b.src.read_calls, 0);
    }

    // ---- EOF ----

    #[test]
    fn fin_follows_the_last_byte() {
        let mut b = bench(2);
        b.dst = Scripted::new();
        b.dst
            .writes
            .extend([WriteStep::Accept(1), WriteStep::Block]);
        b.src.send(b"abc").then(ReadStep::Eof);
        assert_eq!(b.run(), Pump::Stuck);
        assert_eq!(b.pipe.flow(), Flow::Open, "ring full: EOF not read yet");
        assert_eq!(b.dst.fin_at, None);
        b.dst.accept_when_done = true;
        b.dst_ready = true;
        b.run();
        assert_eq!(b.pipe.flow(), Flow::Done);
        assert_eq!(b.dst.fin_at, Some(3));
        assert_eq!(b.dst.written, b"abc");
        assert_eq!(b.dst.shutdowns, 1);
    }

    #[test]
    fn eof_on_an_empty_pipe_sends_fin_at_once() {
        let mut b = bench(4);
        b.src.then(ReadStep::Eof);
        b.run();
        assert_eq!(b.dst.fin_at, Some(0));
        assert_eq!(b.pipe.flow(), Flow::Done);
    }

    // ---- resets ----

    #[test]
    fn source_reset_is_reported_after_the_bytes_before_it() {
        let mut b = bench(16);
        b.src.send(b"partial").then(ReadStep::Reset);
        assert_eq!(b.run(), Pump::Broken(End::Source, true));
        assert_eq!(b.dst.written, b"partial");
    }

    #[test]
    fn destination_gone_is_a_reset_of_the_destination() {
        let mut b = bench(16);
        b.dst = Scripted::new();
        b.dst.writes.push_back(WriteStep::Reset);
        b.src.send(b"x");
        assert_eq!(b.run(), Pump::Broken(End::Destination, true));
    }

    #[test]
    fn fin_on_a_reset_destination_is_a_reset() {
        let mut b = bench(16);
        b.dst.broken = true;
        b.src.then(ReadStep::Eof);
        assert_eq!(b.run(), Pump::Broken(End::Destination, true));
    }

    // ---- prefix ----

    #[test]
    fn prefix_goes_out_before_relayed_bytes() {
        let mut b = bench(4);
        b.pipe.set_prefix(b"\x21");
        b.src.send(b"data").then(ReadStep::Eof);
        b.run();
        assert_eq!(b.dst.written, b"\x21data");
        assert_eq!(
            b.pipe.delivered(),
            4,
            "protocol bytes are not relayed bytes"
        );
        assert_eq!(b.dst.fin_at, Some(5));
    }

    #[test]
    fn partially_written_prefix_resumes_in_order() {
        let mut b = bench(4);
        b.dst = Scripted::new();
        b.dst
            .writes
            .extend([WriteStep::Accept(1), WriteStep::Block]);
        b.pipe.set_prefix(b"ABC");
        b.src.send(b"xy");
        b.run();
        assert_eq!(b.dst.written, b"A");
        b.dst.accept_when_done = true;
        b.dst_ready = true;
        b.run();
        assert_eq!(b.dst.written, b"ABCxy");
    }

    #[test]
    fn discard_returns_the_buffer() {
        let mut b = bench(4);
        b.dst = Scripted::new();
        b.src.send(b"ab");
        b.run();
        assert!(b.pipe.holds_buffer());
        b.pipe.end(&mut b.pool);
        assert_eq!(b.pool.lent(), 0);
        assert_eq!(b.pipe.flow(), Flow::Done);
    }
}
