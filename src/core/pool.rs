//! The pool: storage lent to pipes only while bytes wait in them, under one memory
//! budget. It lends ring buffers in a few size classes and, where the kernel can splice,
//! kernel pipes (see [`pipes`]).
//!
//! ```text
//!   budget (bytes) ─────────────────────────────────────────────────────────────┐
//!   lent:  [16K][16K][16K][64K    ][256K            ][kernel pipe 256K ]  free  │
//!   spare: 16K x 3, 64K x 1   (kept for reuse; not counted against the budget)  │
//! ```
//!
//! A pipe asks for the class its recent reads earned ([`Pipe`](super::pipe::Pipe) keeps
//! that state); the pool lends the largest class at or below it that the budget allows,
//! so a pipe never waits while memory is free. Classes above the smallest are lent only
//! while at most half the budget is out: bulk transfers cannot crowd out small sessions.
//! At the budget `take` answers `None` and the pipe stops reading its source
//! (backpressure) until storage comes back; the loop keeps the queue of waiting sessions.
//!
//! Buffers given back are kept as spares for reuse (no allocation on the steady-state
//! path). Spares beyond a small floor that stayed unused for one [`TRIM_INTERVAL`] are
//! freed by [`Pool::trim`], which the loop calls at [`Pool::next_trim`]: memory goes back
//! to the allocator (and the OS) after a burst. Time is passed in.

use std::time::{Duration, Instant};

pub mod pipes;

pub use pipes::{KernelPipe, OpenPipe, Pipes, Splice};

/// Most size classes.
pub const MAX_CLASSES: usize = 4;

/// Each class is this many times the one below it (the last one is the largest size).
pub const CLASS_STEP: usize = 4;

/// Spare ring memory kept for reuse however quiet the process is (at least one buffer
/// of each class).
pub const SPARE_FLOOR: usize = 1 << 20;

/// How long spares above the floor may stay unused before they are freed.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// The ring sizes a pool lends: the smallest, then ×[`CLASS_STEP`] up to the largest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classes {
    sizes: [usize; MAX_CLASSES],
    count: u8,
}

impl Classes {
    /// `smallest`, `smallest × 4`, ... while below `largest`, then `largest` (at most
    /// [`MAX_CLASSES`]: the last one is always `largest`).
    pub fn new(smallest: usize, largest: usize) -> Classes {
        let smallest = smallest.max(1);
        let largest = largest.max(smallest);
        let mut sizes = [0; MAX_CLASSES];
        let mut count = 0;
        let mut size = smallest;
        while size < largest && count < MAX_CLASSES - 1 {
            sizes[count] = size;
            count += 1;
            size = size.saturating_mul(CLASS_STEP);
        }
        sizes[count] = largest;
        Classes {
            sizes,
            count: count as u8 + 1,
        }
    }

    /// One class of `size` bytes.
    pub fn single(size: usize) -> Classes {
        Classes::new(size, size)
    }

    /// The size of class `class` (the largest when beyond it).
    pub fn size(&self, class: u8) -> usize {
        self.sizes[usize::from(class.min(self.top()))]
    }

    /// The largest class.
    pub fn top(&self) -> u8 {
        self.count - 1
    }

    /// The sizes, smallest first.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes[..usize::from(self.count)]
    }
}

/// One class's spares and counts.
#[derive(Debug)]
struct Shelf {
    size: usize,
    spare: Vec<Box<[u8]>>,
    lent: usize,
    /// Most lent at once since the last trim: the spares worth keeping.
    peak: usize,
}

/// Ring buffers of a few sizes and kernel pipes, under one budget in bytes.
#[derive(Debug)]
pub struct Pool {
    classes: Classes,
    shelves: Vec<Shelf>,
    budget: usize,
    lent_bytes: usize,
    pipes: Pipes,
    last_trim: Option<Instant>,
}

impl Pool {
    /// A pool of `budget` buffers of `size` bytes each, one class, no kernel pipes.
    pub fn new(size: usize, budget: usize) -> Pool {
        debug_assert!(size > 0 && budget > 0);
        Pool::with_classes(Classes::single(size), size.saturating_mul(budget))
    }

    /// A pool lending `classes` under `budget` bytes, no kernel pipes. Nothing is
    /// allocated yet.
    pub fn with_classes(classes: Classes, budget: usize) -> Pool {
        Pool {
            shelves: classes
                .sizes()
                .iter()
                .map(|&size| Shelf {
                    size,
                    spare: Vec::new(),
                    lent: 0,
                    peak: 0,
                })
                .collect(),
            classes,
            budget: budget.max(classes.size(0)),
            lent_bytes: 0,
            pipes: Pipes::none(),
            last_trim: None,
        }
    }

    /// Adds kernel pipes, lent under the same budget.
    pub fn with_pipes(mut self, pipes: Pipes) -> Pool {
        self.pipes = pipes;
        self
    }

    /// The ring classes.
    pub fn classes(&self) -> &Classes {
        &self.classes
    }

    /// Whether pipes may splice: off, for bulk directions, or always.
    pub fn splice(&self) -> Splice {
        self.pipes.mode()
    }

    /// Lends a ring buffer of class `class` or, when the budget does not allow it, of the
    /// largest smaller class that fits; `None` when not even the smallest does.
    pub fn take(&mut self, class: u8) -> Option<Box<[u8]>> {
        let class = (0..=class.min(self.classes.top()))
            .rev()
            .find(|&c| self.fits(self.classes.size(c), c > 0))?;
        let shelf = &mut self.shelves[usize::from(class)];
        shelf.lent += 1;
        shelf.peak = shelf.peak.max(shelf.lent);
        self.lent_bytes += shelf.size;
        Some(
            shelf
                .spare
                .pop()
                .unwrap_or_else(|| vec![0u8; shelf.size].into_boxed_slice()),
        )
    }

    /// Takes a ring buffer back.
    pub fn give(&mut self, buf: Box<[u8]>) {
        let Some(shelf) = self.shelves.iter_mut().find(|s| s.size == buf.len()) else {
            debug_assert!(false, "a buffer of {} bytes from another pool", buf.len());
            return;
        };
        debug_assert!(shelf.lent > 0, "more buffers given back than lent");
        shelf.lent = shelf.lent.saturating_sub(1);
        self.lent_bytes = self.lent_bytes.saturating_sub(shelf.size);
        shelf.spare.push(buf);
    }

    /// Lends an empty kernel pipe, if splicing is on, one is under the count and the
    /// budget allows its size, and one can be opened. `None` is never a wait: the pipe
    /// copies through a ring instead.
    pub fn take_pipe(&mut self) -> Option<Box<dyn KernelPipe>> {
        if !self.fits(self.pipes.size(), true) {
            return None;
        }
        let pipe = self.pipes.take()?;
        self.lent_bytes += self.pipes.size();
        Some(pipe)
    }

    /// Takes a kernel pipe back: kept for reuse when empty, closed otherwise (bytes nobody
    /// can take are never lent to another session).
    pub fn give_pipe(&mut self, pipe: Box<dyn KernelPipe>) {
        self.lent_bytes = self.lent_bytes.saturating_sub(self.pipes.size());
        self.pipes.give(pipe);
    }

    /// Whether a starved pipe could be lent the smallest buffer now.
    pub fn can_lend(&self) -> bool {
        self.fits(self.classes.size(0), false)
    }

    fn fits(&self, size: usize, large: bool) -> bool {
        let limit = if large { self.budget / 2 } else { self.budget };
        self.lent_bytes.saturating_add(size) <= limit
    }

    /// Ring buffers lent now.
    pub fn lent(&self) -> usize {
        self.shelves.iter().map(|s| s.lent).sum()
    }

    /// Kernel pipes lent now.
    pub fn pipes_lent(&self) -> usize {
        self.pipes.lent()
    }

    /// Kernel pipes lent so far.
    pub fn pipe_lends(&self) -> u64 {
        self.pipes.lends()
    }

    /// Bytes of the budget lent now (rings and kernel pipes).
    pub fn lent_bytes(&self) -> usize {
        self.lent_bytes
    }

    /// The budget, in bytes.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Spare buffers and kernel pipes kept now.
    pub fn spares(&self) -> (usize, usize) {
        let rings = self.shelves.iter().map(|s| s.spare.len()).sum();
        (rings, self.pipes.spare())
    }

    /// When [`trim`](Self::trim) has spares to look at (`now` before the first trim):
    /// `None` while every spare is within the floor.
    pub fn next_trim(&self, now: Instant) -> Option<Instant> {
        let floor = SPARE_FLOOR / self.shelves.len().max(1);
        let extra = self
            .shelves
            .iter()
            .any(|s| s.spare.len() > (floor / s.size).max(1))
            || self.pipes.spare() > 0;
        if !extra {
            return None;
        }
        Some(self.last_trim.map_or(now, |t| t + TRIM_INTERVAL))
    }

    /// Frees spares nobody needed since the last trim: each class keeps at most what was
    /// lent at its peak beyond what is lent now, and never less than its floor share.
    pub fn trim(&mut self, now: Instant) {
        let floor = SPARE_FLOOR / self.shelves.len().max(1);
        for s in &mut self.shelves {
            let keep = (floor / s.size).max(1).max(s.peak.saturating_sub(s.lent));
            s.spare.truncate(keep);
            s.spare.shrink_to(keep);
            s.peak = s.lent;
        }
        self.pipes.trim();
        self.last_trim = Some(now);
    }
}

#[cfg(test)]
mod tests;
