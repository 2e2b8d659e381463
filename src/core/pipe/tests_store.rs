//! A pipe's storage over scripted streams: ring classes earned by full reads, kernel
//! pipes (splice) with their "out of slots" answer, and the fallback to copying.

use super::*;
use crate::core::pool::{Classes, OpenPipe, Pipes, Splice};
use crate::core::scripted::{ReadStep, Scripted, ScriptedPipe, WriteStep};
use crate::core::stream::Peer;

struct Bench {
    src: Peer<Scripted>,
    dst: Peer<Scripted>,
    pool: Pool,
    pipe: Pipe,
}

fn bench(pool: Pool) -> Bench {
    let mut src = Peer::new(Scripted::new());
    src.ready.readable = true;
    let mut dst = Peer::new(Scripted::sink());
    dst.ready.writable = true;
    Bench {
        src,
        dst,
        pool,
        pipe: Pipe::new(),
    }
}

/// Rings of 4 and 16 bytes, and kernel pipes of `size` bytes used as `mode` says.
fn splicing(mode: Splice, size: usize, open: OpenPipe) -> Pool {
    Pool::with_classes(Classes::new(4, 16), 1 << 20).with_pipes(Pipes::new(mode, 2, size, open))
}

impl Bench {
    /// Pumps until nothing moves; a readiness bit a short read or write cleared comes
    /// back while the script still has steps, as the kernel's edge would.
    fn run(&mut self) -> Pump {
        for _ in 0..10_000 {
            self.src.ready.read_closed = self.src.stream.peer_closed();
            match self
                .pipe
                .pump(&mut self.src, &mut self.dst, true, &mut self.pool)
            {
                Pump::Progress { .. } => {}
                Pump::Stuck
                    if !self.src.ready.readable
                        && self.src.stream.reads.iter().any(|s| *s != ReadStep::Block) =>
                {
                    self.src.ready.readable = true;
                }
                other => return other,
            }
        }
        panic!("the pipe never settled")
    }
}

/// ```text
///   reads:  [4][4] -> gear 1 -> [16][16] -> gear 2 -> [64][64]...   (classes 4/16/64)
///   then:   [1] [1] -> gear 1
/// ```
#[test]
fn full_reads_earn_larger_rings_and_small_reads_give_them_back() {
    let mut b = bench(Pool::with_classes(Classes::new(4, 64), 1024));
    let payload: Vec<u8> = (0..400u32).map(|i| i as u8).collect();
    b.src.stream.send(&payload);
    assert_eq!(b.run(), Pump::Stuck);
    assert_eq!(b.dst.stream.written, payload);
    assert_eq!(b.pipe.gear(), 2, "the largest class");
    // 2 reads of 4, 2 of 16, then 360 bytes in reads of 64: 6 (the last one short).
    assert_eq!(b.src.stream.read_calls, 10);
    for byte in [b"x", b"y"] {
        b.src.stream.send(byte);
        b.src.ready.readable = true;
        b.run();
    }
    assert_eq!(b.pipe.gear(), 1, "two small reads give one class back");
    assert_eq!((b.pool.lent(), b.pool.lent_bytes()), (0, 0));
}

#[test]
fn always_splices_from_the_first_byte_and_keeps_the_empty_kernel_pipe() {
    let open = ScriptedPipe::opener(64, 0);
    let mut b = bench(splicing(Splice::Always, 64, open));
    b.src.stream.send(b"hello world").then(ReadStep::Eof);
    b.run();
    assert_eq!(b.dst.stream.written, b"hello world");
    assert_eq!(
        b.dst.stream.fin_at,
        Some(11),
        "FIN after the last spliced byte"
    );
    assert_eq!(b.pipe.delivered(), 11);
    // One lend for the bytes, one (the same pipe, kept as a spare) to read the EOF.
    assert_eq!(b.pool.pipe_lends(), 2);
    assert_eq!((b.pool.pipes_lent(), b.pool.spares().1), (0, 1));
    assert_eq!(b.pool.lent(), 0, "no ring was needed");
}

/// ```text
///   fill "abc"  -> pipe [abc.......]      (short: the socket may still hold bytes)
///   fill        -> WouldBlock with bytes inside: out of slots, readiness kept
///   drain "abc" -> fill "def"
/// ```
#[test]
fn a_kernel_pipe_out_of_slots_waits_for_its_drain_and_keeps_the_readiness() {
    let open = ScriptedPipe::opener(64, 1);
    let mut b = bench(splicing(Splice::Always, 64, open));
    b.dst.stream = Scripted::new(); // every write blocks
    b.src.stream.send(b"abc").send(b"def");
    assert_eq!(b.run(), Pump::Stuck);
    assert_eq!(b.pipe.pending(), 3);
    assert!(
        b.src.ready.readable,
        "no lost wakeup: the socket still holds 'def'"
    );
    assert!(!b.pipe.wants_read(), "no read until the kernel pipe drains");
    assert_eq!(b.pipe.pauses(), (1, 0));
    b.dst.stream.accept_when_done = true;
    b.dst.ready.writable = true;
    b.run();
    assert_eq!(b.dst.stream.written, b"abcdef");
    assert_eq!(b.pipe.pauses(), (1, 1));
}

/// ```text
///   ring 4:   [4/4] [4/4]   -> ring 16, the largest
///   ring 16:  [8/16] [8/16] -> half-full reads at the largest ring prove bulk: kernel pipe
///   ring 4:   [2/4] [2/4]   -> half-full reads below the largest earn nothing
/// ```
#[test]
fn half_full_reads_at_the_largest_ring_earn_a_kernel_pipe() {
    let mut b = bench(splicing(Splice::Auto, 64, ScriptedPipe::opener(64, 0)));
    for len in [4, 4, 8, 8] {
        b.src.stream.send(&vec![7u8; len]);
    }
    b.run();
    assert_eq!(b.dst.stream.written.len(), 24);
    assert_eq!(
        b.pipe.gear(),
        2,
        "one above the largest ring: a kernel pipe"
    );
    let mut b = bench(splicing(Splice::Auto, 64, ScriptedPipe::opener(64, 0)));
    for len in [2, 2, 2, 2] {
        b.src.stream.send(&vec![7u8; len]);
    }
    b.run();
    assert_eq!(b.pipe.gear(), 0);
    let mut b = bench(splicing(Splice::Off, 64, ScriptedPipe::opener(64, 0)));
    for len in [4, 4, 8, 8, 8, 8] {
        b.src.stream.send(&vec![7u8; len]);
    }
    b.run();
    assert_eq!((b.pipe.gear(), b.pool.pipe_lends()), (1, 0), "splice off");
}

#[test]
fn auto_splices_once_reads_keep_filling_the_largest_ring() {
    let open = ScriptedPipe::opener(64, 0);
    let mut b = bench(splicing(Splice::Auto, 64, open));
    let payload = vec![5u8; 300];
    b.src.stream.send(&payload);
    b.run();
    assert_eq!(b.dst.stream.written, payload);
    assert_eq!(
        b.pipe.gear(),
        2,
        "one above the largest ring: a kernel pipe"
    );
    assert!(b.pool.pipe_lends() > 0);
    // Small messages are copied: the same system calls either way.
    let mut b = bench(splicing(Splice::Auto, 64, ScriptedPipe::opener(64, 0)));
    b.src.stream.send(b"ping");
    b.run();
    assert_eq!(b.pool.pipe_lends(), 0);
}

#[test]
fn a_stream_that_cannot_be_spliced_is_copied_from_then_on() {
    let mut b = bench(splicing(Splice::Always, 64, ScriptedPipe::refusing(64, 0)));
    b.src.stream.send(b"abc");
    b.run();
    b.src.stream.send(b"def");
    b.src.ready.readable = true;
    b.run();
    assert_eq!(b.dst.stream.written, b"abcdef");
    assert_eq!(b.pool.pipe_lends(), 1, "asked once, then copied");
    assert_eq!((b.pool.pipes_lent(), b.pool.lent()), (0, 0));
}

/// ```text
///   src "abc" --splice--> [abc]  --x--> dst (blocked)
///   src "def" --splice--> refused: [abc] is still owed, no read until it has left
///   dst unblocked: [abc] out, kernel pipe back, "def" copied through a ring
/// ```
#[test]
fn a_refused_splice_keeps_the_bytes_already_in_the_kernel_pipe() {
    let mut b = bench(splicing(Splice::Always, 64, ScriptedPipe::refusing(64, 1)));
    b.dst.stream = Scripted::new();
    b.dst.stream.writes.push_back(WriteStep::Block);
    b.src.stream.send(b"abc");
    b.run();
    assert_eq!(b.pipe.pending(), 3, "held in the kernel pipe");
    b.src.stream.send(b"def");
    b.src.ready.readable = true;
    b.run();
    assert_eq!(b.pipe.pending(), 3, "nothing read while owed bytes wait");
    b.dst.stream.accept_when_done = true;
    b.dst.ready.writable = true;
    b.src.ready.readable = true;
    b.run();
    assert_eq!(b.dst.stream.written, b"abcdef");
    assert_eq!(b.pool.pipe_lends(), 1, "asked once, then copied");
    assert_eq!((b.pool.pipes_lent(), b.pool.lent()), (0, 0));
}

#[test]
fn no_kernel_pipe_toward_a_stream_that_cannot_be_spliced() {
    let open = ScriptedPipe::opener(64, 0);
    let mut b = bench(splicing(Splice::Always, 64, open));
    b.dst.stream.no_splice = true;
    b.src.stream.send(b"abc");
    b.run();
    assert_eq!(b.dst.stream.written, b"abc");
    assert_eq!(b.pool.pipe_lends(), 0, "bytes spliced in could not leave");
}

#[test]
fn a_kernel_pipe_discarded_with_bytes_inside_is_closed_not_kept() {
    let open = ScriptedPipe::opener(64, 0);
    let mut b = bench(splicing(Splice::Always, 64, open));
    b.dst.stream = Scripted::new();
    b.dst.stream.writes.push_back(WriteStep::Block);
    b.src.stream.send(b"owed");
    b.run();
    assert!(b.pipe.splicing());
    assert_eq!(b.pipe.pending(), 4);
    b.pipe.end(&mut b.pool);
    assert_eq!((b.pool.pipes_lent(), b.pool.spares().1), (0, 0));
    assert_eq!(b.pool.lent_bytes(), 0);
}
