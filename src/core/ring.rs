//! A fixed-capacity ring buffer over a buffer lent by the [`Pool`](super::pool::Pool).
//!
//! Bytes enter at the tail (`read_from` a source) and leave at the head (`write_to` a
//! destination). Both operations are vectored, so one system call fills or drains the
//! whole ring even when the stored bytes wrap around the end of the storage.
//!
//! Invariants: `head < capacity` (or 0 when empty), `len <= capacity`; an empty ring always
//! restarts at offset 0, so a fresh fill is one contiguous slice. `read_from` is never
//! called with zero free space: a zero-length read returns `Ok(0)`, which would look like EOF.

use std::io::{self, IoSlice, IoSliceMut};

use super::stream::Stream;

/// One direction's bytes in flight: stored, not yet written to the destination.
#[derive(Debug)]
pub struct Ring {
    buf: Box<[u8]>,
    head: usize,
    len: usize,
}

impl Ring {
    /// Wraps an empty buffer. Its length is the ring's capacity and must not be zero.
    pub fn new(buf: Box<[u8]>) -> Ring {
        debug_assert!(!buf.is_empty(), "a ring needs at least one byte of storage");
        Ring {
            buf,
            head: 0,
            len: 0,
        }
    }

    /// Returns the storage, to give back to the pool. The ring must be empty.
    pub fn into_buffer(self) -> Box<[u8]> {
        debug_assert!(
            self.is_empty(),
            "a ring gives its buffer back only when empty"
        );
        self.buf
    }

    /// Bytes stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes that can still be added.
    pub fn room(&self) -> usize {
        self.buf.len() - self.len
    }

    /// True when no byte waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when no byte can be added.
    pub fn is_full(&self) -> bool {
        self.len == self.buf.len()
    }

    /// Reads from `source` into the free space (one vectored call).
    /// Returns the source's answer; on `Ok(n)` the `n` bytes are stored.
    pub fn read_from<S: Stream + ?Sized>(&mut self, source: &mut S) -> io::Result<usize> {
        debug_assert!(!self.is_full(), "never read into an empty slice");
        let cap = self.buf.len();
        let tail = (self.head + self.len) % cap;
        let n = if tail >= self.head {
            // Free space is [tail, cap) then [0, head).
            let (front, back) = self.buf.split_at_mut(tail);
            let first = back;
            let second = &mut front[..self.head];
            if second.is_empty() {
                source.read_vectored(&mut [IoSliceMut::new(first)])?
            } else {
                source.read_vectored(&mut [IoSliceMut::new(first), IoSliceMut::new(second)])?
            }
        } else {
            // Free space is the single gap [tail, head).
            source.read_vectored(&mut [IoSliceMut::new(&mut self.buf[tail..self.head])])?
        };
        debug_assert!(
            n <= cap - self.len,
            "a source reported more bytes than it was given"
        );
        self.len += n.min(cap - self.len);
        Ok(n)
    }

    /// Writes stored bytes to `destination` (one vectored call).
    /// Returns the destination's answer; on `Ok(n)` the `n` bytes are released.
    pub fn write_to<S: Stream + ?Sized>(&mut self, destination: &mut S) -> io::Result<usize> {
        debug_assert!(!self.is_empty(), "never write an empty slice");
        let (first, second) = self.stored();
        let n = if second.is_empty() {
            destination.write_vectored(&[IoSlice::new(first)])?
        } else {
            destination.write_vectored(&[IoSlice::new(first), IoSlice::new(second)])?
        };
        debug_assert!(
            n <= self.len,
            "a destination reported more bytes than it was given"
        );
        self.consume(n.min(self.len));
        Ok(n)
    }

    /// Forgets the stored bytes.
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    /// The stored bytes in order, as at most two slices.
    pub fn stored(&self) -> (&[u8], &[u8]) {
        let cap = self.buf.len();
        let end = self.head + self.len;
        if end <= cap {
            (&self.buf[self.head..end], &[])
        } else {
            (&self.buf[self.head..], &self.buf[..end - cap])
        }
    }

    fn consume(&mut self, n: usize) {
        self.len -= n;
        self.head = if self.len == 0 {
            0
        } else {
            (self.head + n) % self.buf.len()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::scripted::{ReadStep, Scripted, WriteStep};

    /// Draws the storage: stored bytes as themselves, free bytes as '.'.
    fn picture(ring: &Ring) -> String {
        let cap = ring.buf.len();
        (0..cap)
            .map(|i| {
                let offset = (i + cap - ring.head) % cap;
                if offset < ring.len {
                    ring.buf[i] as char
                } else {
                    '.'
                }
            })
            .collect()
    }

    fn ring(cap: usize) -> Ring {
        Ring::new(vec![0u8; cap].into_boxed_slice())
    }

    fn fill(ring: &mut Ring, bytes: &[u8]) -> usize {
        let mut s = Scripted::new();
        s.reads.push_back(ReadStep::Data(bytes.to_vec()));
        ring.read_from(&mut s).expect("scripted read")
    }

    fn drain(ring: &mut Ring, max: usize) -> Vec<u8> {
        let mut s = Scripted::new();
        s.writes.push_back(WriteStep::Accept(max));
        ring.write_to(&mut s).expect("scripted write");
        s.written
    }

    // ---- empty and contiguous ----

    #[test]
    fn fresh_ring_is_empty() {
        let r = ring(8);
        assert!(r.is_empty());
        assert_eq!(picture(&r), "........");
    }

    #[test]
    fn fill_then_drain_in_order() {
        let mut r = ring(8);
        assert_eq!(fill(&mut r, b"abc"), 3);
        assert_eq!(picture(&r), "abc.....");
        assert_eq!(drain(&mut r, 2), b"ab");
        assert_eq!(picture(&r), "..c.....");
        assert_eq!(r.stored(), (&b"c"[..], &b""[..]));
    }

    #[test]
    fn a_source_is_offered_only_the_free_space() {
        let mut r = ring(4);
        assert_eq!(fill(&mut r, b"abcdef"), 4);
        assert!(r.is_full());
        assert_eq!(picture(&r), "abcd");
    }

    #[test]
    fn emptied_ring_restarts_at_zero() {
        let mut r = ring(4);
        fill(&mut r, b"abc");
        drain(&mut r, 3);
        assert_eq!(r.head, 0);
        fill(&mut r, b"wxyz");
        assert_eq!(picture(&r), "wxyz");
    }

    // ---- wrap-around ----

    #[test]
    fn read_fills_across_the_wrap_in_one_call() {
        let mut r = ring(6);
        fill(&mut r, b"abcd");
        drain(&mut r, 3); // "d" remains at offset 3
        assert_eq!(picture(&r), "...d..");
        let mut s = Scripted::new();
        s.reads.push_back(ReadStep::Data(b"efghi".to_vec()));
        assert_eq!(r.read_from(&mut s).expect("read"), 5);
        assert_eq!(s.read_calls, 1);
        assert_eq!(picture(&r), "ghidef");
        assert_eq!(r.stored(), (&b"def"[..], &b"ghi"[..]));
    }

    #[test]
    fn write_drains_across_the_wrap_in_one_call() {
        let mut r = ring(6);
        fill(&mut r, b"abcd");
        drain(&mut r, 3);
        fill(&mut r, b"efghi");
        let mut s = Scripted::new();
        s.writes.push_back(WriteStep::Accept(100));
        assert_eq!(r.write_to(&mut s).expect("write"), 6);
        assert_eq!(s.write_calls, 1);
        assert_eq!(s.written, b"defghi");
        assert!(r.is_empty());
    }

    #[test]
    fn gap_between_tail_and_head_is_one_slice() {
        let mut r = ring(6);
        fill(&mut r, b"abcdef");
        drain(&mut r, 4); // "ef" at 4..6, free is [0,4)
        fill(&mut r, b"gh"); // wraps to 0..2, free is [2,4)
        assert_eq!(picture(&r), "gh..ef");
        assert_eq!(fill(&mut r, b"ijkl"), 2);
        assert_eq!(picture(&r), "ghijef");
        assert!(r.is_full());
        assert_eq!(drain(&mut r, 100), b"efghij");
    }

    #[test]
    fn one_byte_ring_moves_a_stream() {
        let mut r = ring(1);
        let mut out = Vec::new();
        for b in b"hello" {
            assert_eq!(fill(&mut r, &[*b]), 1);
            assert!(r.is_full());
            out.extend(drain(&mut r, 1));
        }
        assert_eq!(out, b"hello");
    }

    // ---- errors leave the ring unchanged ----

    #[test]
    fn would_block_stores_nothing() {
        let mut r = ring(4);
        let mut s = Scripted::new();
        s.reads.push_back(ReadStep::Block);
        let e = r.read_from(&mut s).expect_err("blocked");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(r.is_empty());
        fill(&mut r, b"ab");
        s.writes.push_back(WriteStep::Block);
        assert!(r.write_to(&mut s).is_err());
        assert_eq!(r.len(), 2);
    }
}
