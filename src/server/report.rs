//! The loop's side of the stats model: what each listener's counters and live sessions
//! add up to now. `/metrics`, `/sessions`, the SIGUSR1 line and every close line are
//! rendered from these views, so they cannot disagree.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::info;

use super::entry::Entry;
use super::listener::{Kind, Listener};
use super::Server;
use crate::config::LogFormat;
use crate::core::reason::CloseReason;
use crate::core::session::Phase;
use crate::stats::{self, CloseRecord, ListenerStats, Live, ProcessStats, SessionView};

impl Server {
    /// A live session as seen now (`None` once closed).
    fn view<'a>(&'a self, e: &Entry, now: Instant) -> Option<SessionView<'a>> {
        let phase = e.session.phase()?;
        let (to_upstream, to_client) = e.session.delivered();
        let (read_pauses, read_resumes) = e.session.pauses();
        Some(SessionView {
            id: e.id,
            listener: self.listeners.get(e.listener).map_or("-", Listener::name),
            client: e.client_addr,
            upstream: Some(e.upstream_addr),
            phase,
            age: now.saturating_duration_since(e.started),
            idle: now.saturating_duration_since(e.session.last_progress()),
            to_upstream,
            to_client,
            read_pauses,
            read_resumes,
        })
    }

    /// Every live session, oldest slot first.
    pub(super) fn session_views(&self, now: Instant) -> impl Iterator<Item = SessionView<'_>> {
        self.sessions
            .iter()
            .filter(|(_, e)| !e.closed)
            .filter_map(move |(_, e)| self.view(e, now))
    }

    /// Each listener's counters and what its live sessions add up to.
    pub(super) fn listener_stats(&self, now: Instant) -> Vec<ListenerStats<'_>> {
        let mut live: Vec<Live> = vec![Live::default(); self.listeners.capacity()];
        for (_, e) in self.sessions.iter().filter(|(_, e)| !e.closed) {
            let (Some(view), Some(slot)) = (self.view(e, now), live.get_mut(e.listener)) else {
                continue;
            };
            let draining = self.listeners.get(e.listener).is_some_and(|l| l.closed);
            slot.add(&view, draining);
        }
        self.listeners
            .iter()
            .map(|(n, l)| {
                let mut live = live.get(n).cloned().unwrap_or_default();
                live.waiting = l.waiting() as u64;
                let idle_tunnels = match &l.kind {
                    Kind::Forward(_) => Vec::new(),
                    Kind::Relay(r) => {
                        live.handshakes = r.handshakes() as u64;
                        r.idle_tunnels()
                    }
                    Kind::Agent(a) => a.idle_tunnels(),
                };
                ListenerStats {
                    name: l.name(),
                    mode: l.config.mode.word(),
                    counters: &l.counters,
                    live,
                    idle_tunnels,
                }
            })
            .collect()
    }

    /// Process-wide figures.
    pub(super) fn process_stats(&self, now: Instant) -> ProcessStats {
        ProcessStats {
            uptime: now.saturating_duration_since(self.started),
            max_sessions: self.max_sessions as u64,
            buffers_lent: self.pool.lent() as u64,
            pool_buffers: self.pool.budget() as u64,
            buffer_size: self.global.buffer_size as u64,
            timers_armed: self.live_timers() as u64,
            stopping: self.drain_until.is_some(),
            reloads: self.reloads,
            reload_failures: self.reload_failures,
            log_lines_dropped: self.log.as_ref().map_or(0, |h| h.dropped()),
            metrics_requests: self.metrics.as_ref().map_or(0, |m| m.requests),
            metrics_rejected: self.metrics.as_ref().map_or(0, |m| m.rejected),
        }
    }

    /// SIGUSR1: one line of stats.
    pub(super) fn log_snapshot(&self, now: Instant) {
        let line = stats::snapshot_line(&self.process_stats(now), &self.listener_stats(now));
        info!("{line}");
    }

    /// Counts a close in listener `l`'s counters and logs its one line.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record_close(
        &mut self,
        l: usize,
        id: u64,
        client: SocketAddr,
        upstream: Option<SocketAddr>,
        delivered: (u64, u64),
        pauses: (u64, u64),
        age: Duration,
        reason: CloseReason,
    ) {
        let name = match self.listeners.get_mut(l) {
            Some(listener) => {
                listener.counters.record_close(reason, delivered, pauses);
                listener.config.name.as_str()
            }
            None => "-",
        };
        let record = CloseRecord {
            view: SessionView {
                id,
                listener: name,
                client,
                upstream,
                // The phase a session closes from is not reported; the reason says why.
                phase: Phase::Relaying,
                age,
                idle: Duration::ZERO,
                to_upstream: delivered.0,
                to_client: delivered.1,
                read_pauses: pauses.0,
                read_resumes: pauses.1,
            },
            reason,
        };
        match self.global.log_format {
            LogFormat::Human => info!(target: "tcpbridge::close", "{}", stats::close_line(&record)),
            LogFormat::Json => info!(target: "tcpbridge::close", "{}", stats::close_json(&record)),
        }
    }
}
