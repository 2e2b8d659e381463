//! tcpbridge: a small, fast, correct TCP proxy on one hand-written mio readiness loop.
//!
//! ```text
//!   main.rs   (clap -> Config, logging, exit codes)
//!      |
//!   server    the event loop: the only code that touches mio, the slab, the clock, signals
//!      |    \
//!   net       core (pure: no mio, no clock reads, no sockets)
//!   (OS)      ring, pool, pipe, session, timers, stream classification
//! ```
//!
//! See `docs/architecture.md` for the glossary, the loop rules and the close semantics.

#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![deny(unsafe_code)]

pub mod config;
pub mod core;
pub mod logging;
#[allow(unsafe_code)]
pub mod os;
pub mod proto;
pub mod server;
pub mod stats;
