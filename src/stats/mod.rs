//! The one stats model: counters per listener, live views of sessions, and their renderings.
//!
//! The event loop owns one [`Counters`] per listener and bumps it as things happen
//! (accepts, closes, failed connects, accept pauses, tunnel handshakes). Live sessions are
//! not counted as they go: when a rendering is asked for, the loop walks its sessions and
//! builds a [`SessionView`] of each, adding them up per listener into a [`Live`]. Every
//! output is made from these same values:
//!
//! - `GET /metrics`: [`render_metrics`], the Prometheus text format (0.0.4);
//! - `GET /sessions`: [`render_sessions`], one line per live session (the `ss` view);
//! - the close record of each session: [`close_line`] and [`CloseRecord::emit`];
//! - the SIGUSR1 snapshot: [`snapshot_line`].
//!
//! Pure: no sockets, no clock reads (ages and durations are passed in).

use std::net::SocketAddr;
use std::time::Duration;

use crate::core::reason::CloseReason;
use crate::core::session::Phase;
use crate::core::stream::{AcceptPause, ConnectFailure};

mod lines;
mod render;
#[cfg(test)]
mod tests;
pub mod upstream;

pub use lines::{close_line, render_sessions, snapshot_line};
pub use render::render_metrics;

/// A listener's monotonic counters, owned and bumped by the event loop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Clients accepted.
    pub accepted: u64,
    /// Sessions closed, by [`CloseReason::index`].
    pub closed: [u64; CloseReason::ALL.len()],
    /// Bytes delivered to the upstream by closed sessions (live ones are added when
    /// rendering).
    pub to_upstream: u64,
    /// Bytes delivered to the client by closed sessions.
    pub to_client: u64,
    /// Failed connect attempts, by [`ConnectFailure::index`]: every attempt, including
    /// those followed by a successful try of the next upstream.
    pub connect_failures: [u64; ConnectFailure::ALL.len()],
    /// Accept pauses, by [`AcceptPause::index`].
    pub accept_pauses: [u64; AcceptPause::ALL.len()],
    /// Reads paused for backpressure, by closed sessions.
    pub read_pauses: u64,
    /// Paused reads resumed, by closed sessions.
    pub read_resumes: u64,
    /// Tunnel proofs that did not verify (relay: the agent's; agent: the relay's, or
    /// DENIED).
    pub auth_failures: u64,
    /// Other tunnel handshakes that did not finish (bad bytes, timeout, hang-up).
    pub handshake_failures: u64,
}

impl Counters {
    /// Counts one closed session: its reason, the bytes it delivered each way
    /// `(to_upstream, to_client)` and its read pauses `(paused, resumed)`.
    pub fn record_close(
        &mut self,
        reason: CloseReason,
        (to_upstream, to_client): (u64, u64),
        (paused, resumed): (u64, u64),
    ) {
        bump(&mut self.closed[reason.index()], 1);
        bump(&mut self.to_upstream, to_upstream);
        bump(&mut self.to_client, to_client);
        bump(&mut self.read_pauses, paused);
        bump(&mut self.read_resumes, resumed);
    }

    /// Counts one failed connect attempt.
    pub fn record_connect_failure(&mut self, kind: ConnectFailure) {
        bump(&mut self.connect_failures[kind.index()], 1);
    }

    /// Counts one accept pause.
    pub fn record_accept_pause(&mut self, cause: AcceptPause) {
        bump(&mut self.accept_pauses[cause.index()], 1);
    }

    /// Sessions closed for any reason.
    pub fn closed_total(&self) -> u64 {
        self.closed.iter().fold(0, |a, &n| a.saturating_add(n))
    }
}

/// Adds to a counter; a counter stops at its maximum rather than wrapping.
fn bump(counter: &mut u64, n: u64) {
    *counter = counter.saturating_add(n);
}

/// A live session as the loop sees it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionView<'a> {
    /// The session id (also in its log lines).
    pub id: u64,
    /// The name of the listener that accepted the client.
    pub listener: &'a str,
    /// The client's address.
    pub client: SocketAddr,
    /// The upstream connected to (or being tried), if any.
    pub upstream: Option<SocketAddr>,
    /// The session's phase.
    pub phase: Phase,
    /// Time since accept (for a close record: the session's whole duration).
    pub age: Duration,
    /// Time since a byte was last delivered either way.
    pub idle: Duration,
    /// Bytes delivered to the upstream.
    pub to_upstream: u64,
    /// Bytes delivered to the client.
    pub to_client: u64,
    /// Reads paused for backpressure.
    pub read_pauses: u64,
    /// Paused reads resumed.
    pub read_resumes: u64,
}

/// What a listener's live sessions add up to now; the loop fills it by walking them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Live {
    /// Live sessions by [`Phase::index`], draining ones included.
    pub sessions: [u64; Phase::ALL.len()],
    /// Live sessions of a closed listener (removed by a reload, or the process
    /// stopping) still finishing; also counted in `sessions`.
    pub draining: u64,
    /// Relay: public clients waiting for a tunnel.
    pub waiting: u64,
    /// Tunnels in their handshake.
    pub handshakes: u64,
    /// Bytes delivered to the upstream by live sessions.
    pub to_upstream: u64,
    /// Bytes delivered to the client by live sessions.
    pub to_client: u64,
    /// Reads paused for backpressure, by live sessions.
    pub read_pauses: u64,
    /// Paused reads resumed, by live sessions.
    pub read_resumes: u64,
}

impl Live {
    /// Adds one live session; `draining` when its listener is closed.
    pub fn add(&mut self, s: &SessionView<'_>, draining: bool) {
        bump(&mut self.sessions[s.phase.index()], 1);
        if draining {
            bump(&mut self.draining, 1);
        }
        bump(&mut self.to_upstream, s.to_upstream);
        bump(&mut self.to_client, s.to_client);
        bump(&mut self.read_pauses, s.read_pauses);
        bump(&mut self.read_resumes, s.read_resumes);
    }

    /// Live sessions in any phase.
    pub fn total(&self) -> u64 {
        self.sessions.iter().fold(0, |a, &n| a.saturating_add(n))
    }
}

/// One listener's share of a rendering.
#[derive(Debug, Clone)]
pub struct ListenerStats<'a> {
    /// Unique among the listeners rendered together: the `listener` label.
    pub name: &'a str,
    /// `forward`, `relay` or `agent`.
    pub mode: &'static str,
    /// Its monotonic counters.
    pub counters: &'a Counters,
    /// Its live sessions, added up.
    pub live: Live,
    /// Idle tunnels per service (relay and agent; empty for forward).
    pub idle_tunnels: Vec<(&'a str, u64)>,
}

impl ListenerStats<'_> {
    /// Bytes delivered `(to_upstream, to_client)` by closed and live sessions.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.counters
                .to_upstream
                .saturating_add(self.live.to_upstream),
            self.counters.to_client.saturating_add(self.live.to_client),
        )
    }

    /// Reads paused and resumed `(paused, resumed)` by closed and live sessions.
    pub fn read_pauses(&self) -> (u64, u64) {
        (
            self.counters
                .read_pauses
                .saturating_add(self.live.read_pauses),
            self.counters
                .read_resumes
                .saturating_add(self.live.read_resumes),
        )
    }
}

/// Process-wide values of a rendering.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessStats {
    /// Time since start.
    pub uptime: Duration,
    /// The global session limit.
    pub max_sessions: u64,
    /// Ring buffers lent to pipes now.
    pub buffers_lent: u64,
    /// Kernel pipes lent to pipes now (splice).
    pub pipes_lent: u64,
    /// Bytes of the pool's budget lent now (rings and kernel pipes).
    pub pool_lent: u64,
    /// The pool's budget, in bytes: the memory bound of buffers.
    pub pool_budget: u64,
    /// Bytes of the smallest ring buffer.
    pub buffer_size: u64,
    /// Deadlines armed in the timer heap.
    pub timers_armed: u64,
    /// The process is draining before it exits.
    pub stopping: bool,
    /// Configuration reloads applied.
    pub reloads: u64,
    /// Configuration reloads refused (the old configuration stayed).
    pub reload_failures: u64,
    /// Log lines dropped by the rate limit.
    pub log_lines_dropped: u64,
    /// Requests answered by the metrics endpoint.
    pub metrics_requests: u64,
    /// Metrics connections refused or answered with an error (bad, too large, too slow).
    pub metrics_rejected: u64,
}

/// The record of one closed session (or of a client never served), for its close line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseRecord<'a> {
    /// The session id.
    pub id: u64,
    /// The name of the listener that accepted the client.
    pub listener: &'a str,
    /// The client's address.
    pub client: SocketAddr,
    /// The upstream connected to (or tried last); `None` when the client was never
    /// served.
    pub upstream: Option<SocketAddr>,
    /// The destination the client asked for (`connect` and `socks`: `name:port` or
    /// `address:port`), once it said.
    pub dest: Option<&'a str>,
    /// Bytes delivered to the upstream.
    pub to_upstream: u64,
    /// Bytes delivered to the client.
    pub to_client: u64,
    /// From accept to close.
    pub duration: Duration,
    /// Reads paused for backpressure.
    pub read_pauses: u64,
    /// Why it closed.
    pub reason: CloseReason,
}

/// `12ms` below ten seconds, `12.3s` below an hour, `2h05m` beyond.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 10_000 {
        format!("{ms}ms")
    } else if ms < 3_600_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        let m = d.as_secs() / 60;
        format!("{}h{:02}m", m / 60, m % 60)
    }
}
