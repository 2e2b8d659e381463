//! The pure relay core: rings, the buffer pool, pipes, sessions and timers.
//!
//! Nothing here touches the operating system, the poller or the clock: streams are a
//! trait, time is an argument. Every byte-moving and close decision is therefore
//! unit-tested with scripted in-memory streams and virtual time.

pub mod handover;
pub mod pipe;
pub mod pool;
pub mod reason;
pub mod ring;
pub mod session;
pub mod stream;
pub mod timers;
pub mod tunnel;

#[cfg(any(test, feature = "fuzzing"))]
pub mod scripted;
