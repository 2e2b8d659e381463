//! Pipe scenarios over scripted streams: open flow, EOF, resets, prefixes.

use super::*;
use crate::core::scripted::{ReadStep, Scripted, WriteStep};
use crate::core::stream::Peer;

struct Bench {
    src: Peer<Scripted>,
    dst: Peer<Scripted>,
    pool: Pool,
    pipe: Pipe,
}

fn bench(ring: usize) -> Bench {
    let mut src = Peer::new(Scripted::new());
    src.ready.readable = true;
    let mut dst = Peer::new(Scripted::sink());
    dst.ready.writable = true;
    Bench {
        src,
        dst,
        pool: Pool::new(ring, 4),
        pipe: Pipe::new(),
    }
}

impl Bench {
    fn pump(&mut self) -> Pump {
        self.pipe
            .pump(&mut self.src, &mut self.dst, true, &mut self.pool)
    }

    /// Pumps until nothing moves, as the kernel would report it: the source is
    /// "read closed" once its end is queued, and every readiness bit a short read or
    /// write cleared comes back as an event while the script still has steps.
    fn run(&mut self) -> Pump {
        let mut last = Pump::Stuck;
        for _ in 0..10_000 {
            self.src.ready.read_closed = self.src.stream.peer_closed();
            match self.pump() {
                Pump::Progress { .. } => continue,
                Pump::Stuck if self.events_pending() => {
                    self.src.ready.readable |= !self.src.stream.reads.is_empty();
                    self.dst.ready.writable |=
                        self.dst.stream.accept_when_done || !self.dst.stream.writes.is_empty();
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
            !self.src.ready.readable && self.src.stream.reads.iter().any(|s| *s != ReadStep::Block);
        let more_room = !self.dst.ready.writable
            && self.pipe.pending() > 0
            && matches!(self.dst.stream.writes.front(), Some(WriteStep::Accept(_)))
            || (!self.dst.ready.writable
                && self.pipe.pending() > 0
                && self.dst.stream.writes.is_empty()
                && self.dst.stream.accept_when_done);
        more_input || more_room
    }
}

// ---- open flow ----

#[test]
fn bytes_pass_through_and_the_buffer_goes_back() {
    let mut b = bench(4);
    b.src.stream.send(b"hello world");
    assert_eq!(b.run(), Pump::Stuck);
    assert_eq!(b.dst.stream.written, b"hello world");
    assert_eq!(b.pipe.delivered(), 11);
    assert!(!b.pipe.holds_buffer());
    assert_eq!(b.pool.lent(), 0);
    assert!(
        !b.src.ready.readable,
        "readiness cleared by WouldBlock only"
    );
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
    b.dst.stream = Scripted::new(); // every write blocks
    b.src.stream.send(b"abcdefgh");
    assert_eq!(b.run(), Pump::Stuck);
    assert_eq!(b.pipe.pending(), 4);
    assert!(
        b.src.ready.readable,
        "the source is still readable: no lost wakeup"
    );
    assert!(!b.dst.ready.writable);
    // The destination drains: reading resumes from the cached readiness.
    b.dst.stream.accept_when_done = true;
    b.dst.ready.writable = true;
    assert_eq!(b.run(), Pump::Stuck);
    assert_eq!(b.dst.stream.written, b"abcdefgh");
}

#[test]
fn a_full_ring_counts_one_pause_and_one_resume() {
    let mut b = bench(4);
    b.dst.stream = Scripted::new(); // every write blocks
    b.src.stream.send(b"abcdefgh");
    assert_eq!(b.run(), Pump::Stuck);
    assert_eq!(b.run(), Pump::Stuck);
    assert_eq!(
        b.pipe.pauses(),
        (1, 0),
        "one pause however often it is pumped"
    );
    b.dst.stream.accept_when_done = true;
    b.dst.ready.writable = true;
    assert_eq!(b.run(), Pump::Stuck);
    assert_eq!(b.dst.stream.written, b"abcdefgh");
    assert_eq!(b.pipe.pauses(), (1, 1));
}

#[test]
fn an_empty_pool_counts_as_a_pause() {
    let mut b = bench(4);
    b.pool = Pool::new(4, 1);
    let held = b.pool.take(0);
    b.src.stream.send(b"ab");
    assert_eq!(b.run(), Pump::Starved);
    assert_eq!(b.pipe.pauses(), (1, 0));
    if let Some(buf) = held {
        b.pool.give(buf);
    }
    assert_eq!(b.run(), Pump::Stuck);
    assert_eq!(b.dst.stream.written, b"ab");
    assert_eq!(b.pipe.pauses(), (1, 1));
}

#[test]
fn partial_writes_keep_order() {
    let mut b = bench(8);
    b.dst.stream = Scripted::new();
    b.dst
        .stream
        .writes
        .extend([WriteStep::Accept(1), WriteStep::Accept(2)]);
    b.dst.stream.accept_when_done = true;
    b.src.stream.send(b"abcdef");
    b.run();
    assert_eq!(b.dst.stream.written, b"abcdef");
}

#[test]
fn starved_pipe_reports_it_and_reads_nothing() {
    let mut b = bench(4);
    let _held: Vec<_> = (0..4).map(|_| b.pool.take(0).expect("take")).collect();
    b.src.stream.send(b"x");
    assert_eq!(b.pump(), Pump::Starved);
    assert_eq!(b.src.stream.read_calls, 0);
}

// ---- EOF ----

#[test]
fn fin_follows_the_last_byte() {
    let mut b = bench(2);
    b.dst.stream = Scripted::new();
    b.dst
        .stream
        .writes
        .extend([WriteStep::Accept(1), WriteStep::Block]);
    b.src.stream.send(b"abc").then(ReadStep::Eof);
    assert_eq!(b.run(), Pump::Stuck);
    assert_eq!(b.pipe.flow(), Flow::Open, "ring full: EOF not read yet");
    assert_eq!(b.dst.stream.fin_at, None);
    b.dst.stream.accept_when_done = true;
    b.dst.ready.writable = true;
    b.run();
    assert_eq!(b.pipe.flow(), Flow::Done);
    assert_eq!(b.dst.stream.fin_at, Some(3));
    assert_eq!(b.dst.stream.written, b"abc");
    assert_eq!(b.dst.stream.shutdowns, 1);
}

#[test]
fn eof_on_an_empty_pipe_sends_fin_at_once() {
    let mut b = bench(4);
    b.src.stream.then(ReadStep::Eof);
    b.run();
    assert_eq!(b.dst.stream.fin_at, Some(0));
    assert_eq!(b.pipe.flow(), Flow::Done);
}

#[test]
fn a_blocked_fin_is_sent_again_until_it_goes() {
    let mut b = bench(4);
    b.dst.stream.shutdown_blocks = 2;
    b.src.stream.send(b"ab").then(ReadStep::Eof);
    b.src.ready.read_closed = true;
    assert!(matches!(b.pump(), Pump::Progress { written: 2 }));
    assert!(
        matches!(b.pump(), Pump::Progress { written: 0 }),
        "EOF read"
    );
    assert_eq!(b.pipe.flow(), Flow::Eof, "FIN not sent yet");
    assert!(!b.dst.ready.writable, "the blocked FIN cleared the bit");
    assert_eq!(b.pump(), Pump::Stuck, "blocked again: nothing moved");
    assert_eq!(b.dst.stream.fin_at, None);
    b.dst.ready.writable = true;
    b.run();
    assert_eq!(b.pipe.flow(), Flow::Done);
    assert_eq!(b.dst.stream.fin_at, Some(2));
    assert_eq!(b.dst.stream.shutdowns, 3);
}

// ---- resets ----

#[test]
fn source_reset_is_reported_after_the_bytes_before_it() {
    let mut b = bench(16);
    b.src.stream.send(b"partial").then(ReadStep::Reset);
    assert_eq!(b.run(), Pump::Broken(End::Source, true));
    assert_eq!(b.dst.stream.written, b"partial");
}

#[test]
fn destination_gone_is_a_reset_of_the_destination() {
    let mut b = bench(16);
    b.dst.stream = Scripted::new();
    b.dst.stream.writes.push_back(WriteStep::Reset);
    b.src.stream.send(b"x");
    assert_eq!(b.run(), Pump::Broken(End::Destination, true));
}

#[test]
fn fin_on_a_reset_destination_is_a_reset() {
    let mut b = bench(16);
    b.dst.stream.broken = true;
    b.src.stream.then(ReadStep::Eof);
    assert_eq!(b.run(), Pump::Broken(End::Destination, true));
}

// ---- prefix ----

#[test]
fn prefix_goes_out_before_relayed_bytes() {
    let mut b = bench(4);
    b.pipe.set_prefix(Bytes::Borrowed(b"\x21"));
    b.src.stream.send(b"data").then(ReadStep::Eof);
    b.run();
    assert_eq!(b.dst.stream.written, b"\x21data");
    assert_eq!(
        b.pipe.delivered(),
        4,
        "protocol bytes are not relayed bytes"
    );
    assert_eq!(b.dst.stream.fin_at, Some(5));
}

#[test]
fn partially_written_prefix_resumes_in_order() {
    let mut b = bench(4);
    b.dst.stream = Scripted::new();
    b.dst
        .stream
        .writes
        .extend([WriteStep::Accept(1), WriteStep::Block]);
    b.pipe.set_prefix(Bytes::Borrowed(b"ABC"));
    b.src.stream.send(b"xy");
    b.run();
    assert_eq!(b.dst.stream.written, b"A");
    b.dst.stream.accept_when_done = true;
    b.dst.ready.writable = true;
    b.run();
    assert_eq!(b.dst.stream.written, b"ABCxy");
}

#[test]
fn discard_returns_the_buffer() {
    let mut b = bench(4);
    b.dst.stream = Scripted::new();
    b.src.stream.send(b"ab");
    b.run();
    assert!(b.pipe.holds_buffer());
    b.pipe.end(&mut b.pool);
    assert_eq!(b.pool.lent(), 0);
    assert_eq!(b.pipe.flow(), Flow::Done);
}

#[test]
fn a_long_prefix_goes_out_whole_and_in_order() {
    // A PROXY v1 header can take 107 bytes: prefixes have no fixed cap.
    let header: Vec<u8> = (0..107u8).collect();
    let mut b = bench(4);
    b.dst.stream = Scripted::new();
    b.dst
        .stream
        .writes
        .extend([WriteStep::Accept(40), WriteStep::Block]);
    b.pipe.set_prefix(Bytes::Owned(header.clone()));
    b.src.stream.send(b"data").then(ReadStep::Eof);
    b.run();
    assert_eq!(b.dst.stream.written, header[..40]);
    b.dst.stream.accept_when_done = true;
    b.dst.ready.writable = true;
    b.run();
    let mut expected = header;
    expected.extend_from_slice(b"data");
    assert_eq!(b.dst.stream.written, expected);
    assert_eq!(b.pipe.delivered(), 4);
}
