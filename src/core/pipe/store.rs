//! Where a pipe's waiting bytes are kept, and how a pipe earns a larger one.
//!
//! A pipe holds a [`Store`] only while bytes wait: nothing, a ring buffer of one size
//! class, or a kernel pipe (splice). The store changes only when it is empty (given back
//! and taken again), so no byte is ever copied from one store to another.
//!
//! [`Gear`] is the pipe's memory of its recent reads: reads that keep filling the whole
//! room of the store earn the next class (and, at the top, a kernel pipe when splicing is
//! `auto`); reads that keep using a sliver of the smallest class give one back, as
//! HAProxy marks a channel as a "streamer" after consecutive full reads.
//!
//! ```text
//!   gear:   0 (16 KiB) ──2 full reads──▶ 1 (64 KiB) ──▶ 2 (256 KiB) ──▶ 3 (kernel pipe)
//!                      ◀──2 small reads──            ◀──            ◀──
//! ```

use std::io;

use crate::core::pool::{KernelPipe, Pool, Splice};
use crate::core::ring::Ring;
use crate::core::stream::Stream;

/// Consecutive full reads that earn the next gear.
const FULL_READS_UP: u8 = 2;

/// Consecutive small reads (under half the smallest class) that give a gear back.
const SMALL_READS_DOWN: u8 = 2;

/// A pipe's waiting bytes.
#[derive(Debug, Default)]
pub(super) enum Store {
    /// No byte waits; nothing is held.
    #[default]
    Empty,
    /// A ring buffer lent by the pool.
    Ring(Ring),
    /// A kernel pipe lent by the pool (splice).
    Kernel(Box<dyn KernelPipe>),
}

impl Store {
    /// Bytes waiting.
    pub(super) fn len(&self) -> usize {
        match self {
            Store::Empty => 0,
            Store::Ring(r) => r.len(),
            Store::Kernel(k) => k.len(),
        }
    }

    /// Bytes that can still be added (0 with nothing held).
    pub(super) fn room(&self) -> usize {
        match self {
            Store::Empty => 0,
            Store::Ring(r) => r.room(),
            Store::Kernel(k) => k.capacity().saturating_sub(k.len()),
        }
    }

    /// True when storage is held and full.
    pub(super) fn is_full(&self) -> bool {
        !matches!(self, Store::Empty) && self.room() == 0
    }

    /// True for a kernel pipe.
    pub(super) fn is_kernel(&self) -> bool {
        matches!(self, Store::Kernel(_))
    }

    /// Reads from `source` into the free space.
    pub(super) fn fill<S: Stream>(&mut self, source: &mut S) -> io::Result<usize> {
        match self {
            Store::Empty => Ok(0),
            Store::Ring(r) => r.read_from(source),
            Store::Kernel(k) => {
                let room = k.capacity().saturating_sub(k.len());
                k.fill(source, room)
            }
        }
    }

    /// Writes waiting bytes to `destination`.
    pub(super) fn drain<D: Stream>(&mut self, destination: &mut D) -> io::Result<usize> {
        match self {
            Store::Empty => Ok(0),
            Store::Ring(r) => r.write_to(destination),
            Store::Kernel(k) => {
                let len = k.len();
                k.drain(destination, len)
            }
        }
    }

    /// Gives the storage back to the pool when no byte waits in it.
    pub(super) fn release_if_empty(&mut self, pool: &mut Pool) {
        if self.len() == 0 {
            self.release(pool);
        }
    }

    /// Gives the storage back, dropping what waits: a ring is cleared, a kernel pipe
    /// holding bytes is closed by the pool.
    pub(super) fn release(&mut self, pool: &mut Pool) {
        match std::mem::take(self) {
            Store::Empty => {}
            Store::Ring(mut r) => {
                r.clear();
                pool.give(r.into_buffer());
            }
            Store::Kernel(k) => pool.give_pipe(k),
        }
    }
}

/// What a pipe's recent reads earned: the storage it asks for next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Gear {
    /// The ring class asked for; one above the largest means a kernel pipe.
    level: u8,
    full: u8,
    small: u8,
    /// The source or destination refused splice: this pipe copies from now on.
    no_splice: bool,
}

impl Gear {
    /// Takes the storage this gear asks for: a kernel pipe when splicing applies (`splice`:
    /// both streams can be spliced) and one is free, else a ring of the earned class (or
    /// the largest the budget allows). `None` when the pool cannot lend even the smallest
    /// ring.
    pub(super) fn take(&self, pool: &mut Pool, splice: bool) -> Option<Store> {
        let top = pool.classes().top();
        let wanted = match pool.splice() {
            Splice::Off => false,
            Splice::Auto => self.level > top,
            Splice::Always => true,
        };
        if wanted && splice && !self.no_splice {
            if let Some(k) = pool.take_pipe() {
                return Some(Store::Kernel(k));
            }
        }
        pool.take(self.level.min(top))
            .map(|b| Store::Ring(Ring::new(b)))
    }

    /// Learns from a read of `n` bytes into `room` free bytes.
    pub(super) fn note_read(&mut self, n: usize, room: usize, pool: &Pool) {
        let classes = pool.classes();
        let top = match pool.splice() {
            Splice::Auto if !self.no_splice => classes.top() + 1,
            _ => classes.top(),
        };
        // At the largest ring, on the way to a kernel pipe, a read half its room proves
        // bulk: a sender that only keeps up with the proxy never fills 256 KiB at once.
        let earned = if self.level == classes.top() && top > classes.top() {
            n >= room / 2
        } else {
            n >= room
        };
        if earned {
            self.small = 0;
            self.full = self.full.saturating_add(1);
            if self.full >= FULL_READS_UP && self.level < top {
                self.level += 1;
                self.full = 0;
            }
        } else if n < classes.size(0) / 2 {
            self.full = 0;
            self.small = self.small.saturating_add(1);
            if self.small >= SMALL_READS_DOWN && self.level > 0 {
                self.level -= 1;
                self.small = 0;
            }
        } else {
            self.full = 0;
            self.small = 0;
        }
    }

    /// A stream refused splice: copy from now on, and come down to the largest ring.
    pub(super) fn refuse_splice(&mut self, pool: &Pool) {
        self.no_splice = true;
        self.level = self.level.min(pool.classes().top());
    }

    /// The earned level (tests and reports).
    pub(super) fn level(&self) -> u8 {
        self.level
    }
}
