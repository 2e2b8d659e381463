//! The pure relay core: rings, the buffer pool, pipes, sessions and timers, tunnels
//! before pairing, the policies that decide over time (handshake failures per source,
//! reconnect backoff), and the destination policy of forward proxies (`policy`: where a
//! `connect` or `socks` listener may connect to, and address blocks).
//!
//! Nothing here touches the operating system, the poller or the clock: streams are a
//! trait, time is an argument. Every byte-moving, close and retry decision is therefore
//! unit-tested with scripted in-memory streams and virtual time.

pub mod backoff;
pub mod credentials;
pub mod failures;
pub mod handover;
pub mod pipe;
pub mod policy;
pub mod pool;
pub mod reason;
pub mod ring;
pub mod session;
pub mod stream;
pub mod timers;
pub mod tunnel;
pub mod upstream;

#[cfg(any(test, feature = "fuzzing"))]
pub mod scripted;
