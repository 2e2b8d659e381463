//! Kernel pipes for splice(2): socket → kernel pipe → socket, no copy through user space.
//!
//! The core sees a kernel pipe as a [`KernelPipe`]: bytes go in from a source stream and
//! out to a destination stream, and it knows how many it holds. The loop hands the pool
//! a way to open one (`os::splice` in the product, an in-memory stand-in in tests), a
//! count and a size; the pool lends them under its budget and keeps returned empty ones
//! for reuse. A kernel pipe that still holds bytes when given back is closed: those bytes
//! belonged to one session and are never lent to another.

use std::fmt;
use std::io;

use crate::core::stream::Stream;

/// When pipes splice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Splice {
    /// Never: every byte is copied through a ring.
    Off,
    /// For directions moving bulk (their reads keep filling the largest ring); small
    /// messages are copied, which costs the same system calls.
    #[default]
    Auto,
    /// Every direction, from its first byte (HAProxy's `option splice-request`).
    Always,
}

/// A kernel pipe lent to one direction of a session.
pub trait KernelPipe: fmt::Debug {
    /// Bytes inside.
    fn len(&self) -> usize;
    /// True when no byte is inside.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes it can hold.
    fn capacity(&self) -> usize;
    /// Moves up to `max` bytes from `source` into the pipe. `Ok(0)` is the source's EOF;
    /// `WouldBlock` when the source has nothing *or* the pipe has no free slot (the
    /// caller tells them apart by [`len`](Self::len)); `Unsupported` when `source`
    /// cannot be spliced (the direction then copies).
    fn fill(&mut self, source: &mut dyn Stream, max: usize) -> io::Result<usize>;
    /// Moves up to `max` bytes from the pipe to `destination`.
    fn drain(&mut self, destination: &mut dyn Stream, max: usize) -> io::Result<usize>;
}

/// Opens a kernel pipe of the pool's size.
pub type OpenPipe = Box<dyn FnMut() -> io::Result<Box<dyn KernelPipe>>>;

/// The kernel pipes of a pool.
pub struct Pipes {
    open: Option<OpenPipe>,
    mode: Splice,
    max: usize,
    size: usize,
    lent: usize,
    /// Most lent at once since the last trim.
    peak: usize,
    spare: Vec<Box<dyn KernelPipe>>,
    /// Lends so far.
    lends: u64,
}

impl fmt::Debug for Pipes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipes")
            .field("mode", &self.mode)
            .field("max", &self.max)
            .field("size", &self.size)
            .field("lent", &self.lent)
            .field("spare", &self.spare.len())
            .finish_non_exhaustive()
    }
}

impl Pipes {
    /// No kernel pipes: every direction copies.
    pub fn none() -> Pipes {
        Pipes {
            open: None,
            mode: Splice::Off,
            max: 0,
            size: 0,
            lent: 0,
            peak: 0,
            spare: Vec::new(),
            lends: 0,
        }
    }

    /// At most `max` kernel pipes of `size` bytes, opened by `open`, used as `mode` says.
    pub fn new(mode: Splice, max: usize, size: usize, open: OpenPipe) -> Pipes {
        if mode == Splice::Off || max == 0 {
            return Pipes::none();
        }
        Pipes {
            open: Some(open),
            mode,
            max,
            size,
            lent: 0,
            peak: 0,
            spare: Vec::new(),
            lends: 0,
        }
    }

    /// When pipes splice (`Off` without kernel pipes).
    pub fn mode(&self) -> Splice {
        self.mode
    }

    /// Bytes one kernel pipe counts against the budget.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Kernel pipes lent now.
    pub fn lent(&self) -> usize {
        self.lent
    }

    /// Kernel pipes lent so far.
    pub fn lends(&self) -> u64 {
        self.lends
    }

    /// Empty kernel pipes kept for reuse.
    pub fn spare(&self) -> usize {
        self.spare.len()
    }

    /// Lends one: a spare, or a new one when under the count. `None` when splicing is
    /// off, at the count, or opening failed (out of descriptors: the pipe copies).
    pub(super) fn take(&mut self) -> Option<Box<dyn KernelPipe>> {
        if self.lent >= self.max {
            return None;
        }
        let pipe = match self.spare.pop() {
            Some(p) => p,
            None => (self.open.as_mut()?)().ok()?,
        };
        self.lent += 1;
        self.lends += 1;
        self.peak = self.peak.max(self.lent);
        Some(pipe)
    }

    /// Takes one back: kept when empty, closed (dropped) otherwise.
    pub(super) fn give(&mut self, pipe: Box<dyn KernelPipe>) {
        debug_assert!(self.lent > 0, "more kernel pipes given back than lent");
        self.lent = self.lent.saturating_sub(1);
        if pipe.is_empty() {
            self.spare.push(pipe);
        }
    }

    /// Closes the spares nobody needed since the last trim (no floor: each holds two
    /// descriptors).
    pub(super) fn trim(&mut self) {
        let keep = self.peak.saturating_sub(self.lent);
        self.spare.truncate(keep);
        self.peak = self.lent;
    }
}
