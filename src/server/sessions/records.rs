//! What goes in and out of the sessions: the start of one (from a mode), its route for
//! another try after a failed connect, and what the sessions report to the loop (a close,
//! a connect attempt's outcome, a session that needs another upstream).

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use crate::config::ProxyProtocol;
use crate::core::upstream::Tried;
use crate::server::proxy::Ends;

use crate::core::reason::CloseReason;
use crate::core::session::{Policy, Session};
use crate::core::stream::{ConnectFailure, Readiness};
use crate::os::link::Link;
use crate::os::net::Conn;

/// Where a session's upstream comes from, for another try after a failed connect: one
/// way only (a paired tunnel), or a member of one of its listener's upstream groups
/// (forward: group 0; an agent: one per service), the next one picked by the mode.
///
/// A group's tries with the group number [`FIXED`] rather than an enum: the slab entry
/// stays 8 bytes smaller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::server) struct Route(Tries);

/// The group number of a fixed route.
const FIXED: u16 = u16::MAX;

impl Route {
    /// One way only.
    pub(in crate::server) fn fixed() -> Route {
        Route(Tries {
            group: FIXED,
            made: 0,
            dialed_ms: 0,
            tried: Tried::default(),
        })
    }

    /// A member of a group, `tries` made so far.
    pub(in crate::server) fn group(tries: Tries) -> Route {
        Route(tries)
    }

    /// The tries within its group; `None` for a fixed route.
    pub(in crate::server) fn tries(self) -> Option<Tries> {
        (self.0.group != FIXED).then_some(self.0)
    }

    /// The group of the session's upstream, if it has one.
    pub(in crate::server) fn group_of(self) -> Option<u16> {
        self.tries().map(|t| t.group)
    }

    /// When the current connect attempt started, in milliseconds after the session.
    pub(in crate::server) fn dialed_ms(self) -> u32 {
        self.0.dialed_ms
    }
}

/// A session's connect attempts within its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::server) struct Tries {
    /// Which group of the listener.
    pub(in crate::server) group: u16,
    /// Attempts made so far.
    pub(in crate::server) made: u16,
    /// When the last attempt started, in milliseconds after the session started (in the
    /// padding of this struct: an `Instant` in the slab entry would cost 16 bytes).
    pub(in crate::server) dialed_ms: u32,
    /// The members already tried.
    pub(in crate::server) tried: Tried,
}

/// A connection for a session from its group: a connect in progress, or a warm
/// connection already connected.
#[derive(Debug)]
pub(in crate::server) struct Dialed {
    pub(in crate::server) conn: Conn,
    pub(in crate::server) addr: SocketAddr,
    pub(in crate::server) tries: Tries,
    /// Already connected (a warm connection, registered under its old token): the
    /// readiness the session starts with. `None` for a connect in progress.
    pub(in crate::server) warm: Option<Readiness>,
    /// The PROXY protocol header the member's connections start with, if any.
    pub(in crate::server) proxy: Option<ProxyProtocol>,
}

/// A session whose connect failed and whose group may give another upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::server) struct Redial {
    pub(in crate::server) listener: usize,
    /// The session's slot and id (an answer for a session gone since is dropped).
    pub(in crate::server) slot: usize,
    pub(in crate::server) id: u64,
    pub(in crate::server) client: SocketAddr,
    /// The member whose connect failed: the session leaves it.
    pub(in crate::server) upstream: SocketAddr,
    pub(in crate::server) tries: Tries,
    /// The last attempt's failure: the close reason when no upstream is left.
    pub(in crate::server) failure: ConnectFailure,
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
    pub(in crate::server) session: Session<Link>,
    pub(in crate::server) client_addr: SocketAddr,
    pub(in crate::server) upstream_addr: SocketAddr,
    pub(in crate::server) route: Route,
    pub(in crate::server) client: Registration,
    pub(in crate::server) upstream: Registration,
    /// Readiness the client stream already had (a tunnel's cache carried over).
    pub(in crate::server) client_ready: Readiness,
    /// Readiness the upstream stream already had (a warm connection's).
    pub(in crate::server) upstream_ready: Readiness,
    /// What a PROXY protocol header announces if the session's upstream asks for one
    /// (set when one of its group's members does: a redial may land on it).
    pub(in crate::server) announce: Option<Box<Ends>>,
    /// The client's first bytes must not be a PROXY header (see `sessions::guard`).
    pub(in crate::server) guard: bool,
    /// The destination the client asked for (`connect` and `socks`), for its close line.
    pub(in crate::server) dest: Option<Box<str>>,
}

/// The end of a client's life in the process, served or not: what its close line and
/// its listener's counters need.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The upstream group of the listener the session's upstream belongs to.
    pub(in crate::server) group: Option<u16>,
    /// The destination the client asked for (`connect` and `socks`).
    pub(in crate::server) dest: Option<Box<str>>,
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
            group: None,
            dest: None,
        }
    }
}

/// What the loop must learn from the sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::server) enum Report {
    /// A session closed.
    Finished(Closed),
    /// A client never became a session.
    Unserved(Closed),
    /// One connect attempt of a session of `listener` ended.
    Connect(Attempt),
    /// A session's connect failed and its group may give another upstream.
    Redial(Redial),
}

/// One connect attempt's outcome, for counters and the group's passive health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::server) struct Attempt {
    pub(in crate::server) listener: usize,
    /// The group of the upstream dialed, if it belongs to one.
    pub(in crate::server) group: Option<u16>,
    pub(in crate::server) upstream: SocketAddr,
    /// How long it took, or why it failed.
    pub(in crate::server) outcome: Result<Duration, ConnectFailure>,
}
