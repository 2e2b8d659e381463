//! A slab entry (a session and what the loop keeps beside it), and the loop's handling of
//! a failed connect and of a closed session: the one close line.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info};
use mio::Interest;

use super::token::Target;
use super::Server;
use crate::core::reason::{CloseReason, Side};
use crate::core::session::{Drive, Session};
use crate::core::stream::ConnectFailure;
use crate::net::{describe, Conn};

/// One live session in the slab.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) id: u64,
    pub(super) session: Session<Conn>,
    pub(super) client_addr: SocketAddr,
    /// Index in the upstream list of the current (or last) connect attempt.
    pub(super) upstream: usize,
    pub(super) started: Instant,
    /// The deadline entry armed in the heap for this session, if any.
    pub(super) armed: Option<Instant>,
    pub(super) in_ready: bool,
    pub(super) starved: bool,
    pub(super) closed: bool,
}

impl Server {
    /// Dials the upstreams after the failed one, in order. Returns how the session goes on:
    /// `Waiting` on a new connect, or `Closed` when none is left.
    pub(super) fn redial(&mut self, slot: usize, failure: ConnectFailure, now: Instant) -> Drive {
        let Some(e) = self.sessions.get_mut(slot) else {
            return Drive::Waiting;
        };
        debug!(
            "session {}: connect to {} failed ({failure:?})",
            e.id, self.cfg.upstreams[e.upstream]
        );
        let mut last = failure;
        while e.upstream + 1 < self.cfg.upstreams.len() {
            e.upstream += 1;
            let addr = self.cfg.upstreams[e.upstream];
            let mut conn = match Conn::dial(addr) {
                Ok(conn) => conn,
                Err(err) => {
                    debug!(
                        "session {}: connect to {addr} failed: {}",
                        e.id,
                        describe(&err)
                    );
                    last = ConnectFailure::from_error(&err);
                    continue;
                }
            };
            let token = Target::Session {
                slot,
                side: Side::Upstream,
            }
            .token();
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(err) = self
                .poll
                .registry()
                .register(conn.source(), token, interest)
            {
                debug!("session {}: register failed: {}", e.id, describe(&err));
                last = ConnectFailure::Error;
                continue;
            }
            let mut old = e.session.redial(conn, now);
            let _ = self.poll.registry().deregister(old.source());
            return Drive::Waiting;
        }
        e.session.fail_connect(last, &mut self.pool)
    }

    /// Logs the close line, deregisters both sockets and queues the slot to be freed after
    /// this pass. Runs exactly once per session.
    pub(super) fn finish(&mut self, slot: usize, reason: CloseReason, now: Instant) {
        let Some(e) = self.sessions.get_mut(slot) else {
            return;
        };
        if e.closed {
            return;
        }
        e.closed = true;
        // The upstream connected to, or the last one tried when every connect failed.
        let upstream = self.cfg.upstreams.get(e.upstream).copied();
        log_close(
            e.id,
            e.client_addr,
            upstream,
            e.session.delivered(),
            now.saturating_duration_since(e.started),
            reason,
        );
        let registry = self.poll.registry();
        let _ = registry.deregister(e.session.client().source());
        let _ = registry.deregister(e.session.upstream().source());
        self.closed.push(slot);
        // Descriptors and a session slot are free again: a listener paused for either
        // may try at once.
        for l in &mut self.listeners {
            l.paused_until = None;
        }
    }
}

/// The one line each session leaves: who, how many bytes each way, how long, why.
pub(super) fn log_close(
    id: u64,
    client: SocketAddr,
    upstream: Option<SocketAddr>,
    (to_upstream, to_client): (u64, u64),
    duration: Duration,
    reason: CloseReason,
) {
    let upstream = upstream.map_or_else(|| "-".to_string(), |a| a.to_string());
    info!(
        "close id={id} client={client} upstream={upstream} to_upstream={to_upstream} \
         to_client={to_client} duration={} reason={reason}",
        format_duration(duration)
    );
}

/// `12ms` below ten seconds, `12.3s` below an hour, `2h05m` beyond.
fn format_duration(d: Duration) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well_in_close_lines() {
        assert_eq!(format_duration(Duration::from_millis(12)), "12ms");
        assert_eq!(format_duration(Duration::from_millis(12_345)), "12.3s");
        assert_eq!(format_duration(Duration::from_secs(7500)), "2h05m");
    }
}
