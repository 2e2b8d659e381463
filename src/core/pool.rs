//! The buffer pool: ring storage lent to pipes only while bytes wait in them.
//!
//! A pipe takes a buffer when it has something to read and gives it back as soon as its
//! ring is empty, so an idle session holds no buffer. The pool has a budget (a number of
//! buffers); at the budget `take` answers `None` and the pipe stops reading its source
//! (backpressure) until a buffer comes back. The owner of the pool keeps the queue of
//! sessions waiting for a buffer; the pool itself only counts.
//!
//! A few returned buffers are kept for reuse (no allocation on the steady-state path);
//! past [`SPARE_LIMIT`] they are freed so memory goes back after a burst.

/// Buffers kept for reuse after they are given back.
pub const SPARE_LIMIT: usize = 64;

/// Fixed-size buffers under a budget.
#[derive(Debug)]
pub struct Pool {
    size: usize,
    budget: usize,
    lent: usize,
    spare: Vec<Box<[u8]>>,
}

impl Pool {
    /// A pool of `budget` buffers of `size` bytes each. Nothing is allocated yet.
    pub fn new(size: usize, budget: usize) -> Pool {
        debug_assert!(size > 0 && budget > 0);
        Pool {
            size,
            budget,
            lent: 0,
            spare: Vec::new(),
        }
    }

    /// Lends a buffer, or `None` at the budget.
    pub fn take(&mut self) -> Option<Box<[u8]>> {
        if self.lent == self.budget {
            return None;
        }
        self.lent += 1;
        Some(
            self.spare
                .pop()
                .unwrap_or_else(|| vec![0u8; self.size].into_boxed_slice()),
        )
    }

    /// Takes a buffer back.
    pub fn give(&mut self, buf: Box<[u8]>) {
        debug_assert_eq!(buf.len(), self.size, "a buffer from another pool");
        debug_assert!(self.lent > 0, "more buffers given back than lent");
        self.lent = self.lent.saturating_sub(1);
        if self.spare.len() < SPARE_LIMIT {
            self.spare.push(buf);
        }
    }

    /// Buffers lent now.
    pub fn lent(&self) -> usize {
        self.lent
    }

    /// The budget, in buffers.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Size of one buffer in bytes.
    pub fn buffer_size(&self) -> usize {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lends_up_to_the_budget_then_refuses() {
        let mut p = Pool::new(16, 2);
        let a = p.take().expect("first");
        let _b = p.take().expect("second");
        assert!(p.take().is_none());
        assert_eq!(p.lent(), 2);
        p.give(a);
        assert_eq!(p.lent(), 1);
        assert!(p.take().is_some());
    }

    #[test]
    fn given_back_buffers_are_reused() {
        let mut p = Pool::new(8, 4);
        let a = p.take().expect("take");
        let addr = a.as_ptr();
        p.give(a);
        let b = p.take().expect("take again");
        assert_eq!(b.as_ptr(), addr);
        assert_eq!(b.len(), 8);
    }

    #[test]
    fn spares_beyond_the_limit_are_freed() {
        let mut p = Pool::new(1, SPARE_LIMIT + 10);
        let all: Vec<_> = (0..SPARE_LIMIT + 10)
            .map(|_| p.take().expect("take"))
            .collect();
        for b in all {
            p.give(b);
        }
        assert_eq!(p.spare.len(), SPARE_LIMIT);
        assert_eq!(p.lent(), 0);
    }
}
