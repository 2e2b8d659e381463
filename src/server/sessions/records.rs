//! What goes in and out of the sessions: the start of one (from a mode), its route for
//! another try after a failed connect, and what the sessions report to the loop (a close,
//! a failed connect attempt).

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use crate::core::reason::CloseReason;
use crate::core::session::{Policy, Session};
use crate::core::stream::{ConnectFailure, Readiness};
use crate::os::net::Conn;

/// Where a session's upstream comes from, for another try after a failed connect.
#[derive(Debug, Clone)]
pub(in crate::server) enum Route {
    /// One way only (a paired tunnel, an agent's service).
    Fixed,
    /// Forward mode: the upstream list the session started with, and which it dialed.
    Fallbacks {
        /// The listener's upstreams at the session's start (a thin pointer: the entry
        /// stays as small as it was).
        list: Rc<Vec<SocketAddr>>,
        /// The one dialed last.
        at: u32,
    },
}

/// Whether a stream handed to a new session is new to the poller or already registered
/// (a tunnel becoming a session keeps its socket; only its token changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::server) enum Registration {
    New,
    Moved,
}

/// Everything needed to start a session.
#[derive(Debug)]
pub(in crate::server) struct Start {
    /// The listener's slot.
    pub(in crate::server) listener: usize,
    pub(in crate::server) id: u64,
    pub(in crate::server) policy: Rc<Policy>,
    pub(in crate::server) session: Session<Conn>,
    pub(in crate::server) client_addr: SocketAddr,
    pub(in crate::server) upstream_addr: SocketAddr,
    pub(in crate::server) route: Route,
    pub(in crate::server) client: Registration,
    pub(in crate::server) upstream: Registration,
    /// Readiness the client stream already had (a tunnel's cache carried over).
    pub(in crate::server) client_ready: Readiness,
}

/// The end of a client's life in the process, served or not: what its close line and
/// its listener's counters need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::server) struct Closed {
    pub(in crate::server) listener: usize,
    pub(in crate::server) id: u64,
    pub(in crate::server) client: SocketAddr,
    /// `None` when no upstream was ever reached.
    pub(in crate::server) upstream: Option<SocketAddr>,
    pub(in crate::server) delivered: (u64, u64),
    pub(in crate::server) pauses: (u64, u64),
    pub(in crate::server) age: Duration,
    pub(in crate::server) reason: CloseReason,
}

impl Closed {
    /// A client that never became a relayed session (refused at a limit, timed out
    /// waiting, gone while waiting, no upstream dialed).
    pub(in crate::server) fn unserved(
        listener: usize,
        id: u64,
        client: SocketAddr,
        age: Duration,
        reason: CloseReason,
    ) -> Closed {
        Closed {
            listener,
            id,
            client,
            upstream: None,
            delivered: (0, 0),
            pauses: (0, 0),
            age,
            reason,
        }
    }
}

/// What the loop must learn from the sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::server) enum Report {
    /// A session closed.
    Finished(Closed),
    /// A client never became a session.
    Unserved(Closed),
    /// One connect attempt of a session of `listener` failed.
    ConnectFailed {
        listener: usize,
        failure: ConnectFailure,
    },
}
