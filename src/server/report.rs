//! The loop's side of the stats model: what each listener's counters and live sessions
//! add up to now, and the answers of the metrics endpoint. `/metrics`, `/sessions`, the
//! SIGUSR1 line and every close line are rendered from these views, so they cannot
//! disagree.

use std::time::Instant;

use super::listeners::{Listener, Listeners};
use super::sessions::{Entry, Sessions};
use super::{deadlines, Server};
use crate::config::{file, Config, Global, Source};
use crate::logging::LogHandle;
use crate::proto::http::Route;
use crate::stats::upstream::{self, UpstreamView};
use crate::stats::{self, ListenerStats, Live, ProcessStats, SessionView};

/// What a rendering reads: the owners of the loop, at one instant.
#[derive(Debug)]
pub(super) struct View<'a> {
    pub(super) sessions: &'a Sessions,
    pub(super) listeners: &'a Listeners,
    pub(super) process: ProcessStats,
    pub(super) global: &'a Global,
    pub(super) source: &'a Source,
    pub(super) now: Instant,
}

impl Server {
    /// The owners at `now`, for renderings; `metrics` is the endpoint's (requests,
    /// rejected).
    pub(super) fn view(&self, now: Instant, metrics: (u64, u64)) -> View<'_> {
        let pool = self.sessions.pool();
        let (sessions, listeners) = (&self.sessions, &self.listeners);
        let timers_armed = deadlines::armed(&self.deadlines, sessions, listeners);
        View {
            sessions,
            listeners,
            process: ProcessStats {
                uptime: now.saturating_duration_since(self.life.started),
                max_sessions: self.max_sessions as u64,
                buffers_lent: pool.lent() as u64,
                pipes_lent: pool.pipes_lent() as u64,
                pool_lent: pool.lent_bytes() as u64,
                pool_budget: pool.budget() as u64,
                buffer_size: self.global.buffer_size as u64,
                timers_armed: timers_armed as u64,
                stopping: self.life.stopping(),
                reloads: self.life.reloads,
                reload_failures: self.life.reload_failures,
                log_lines_dropped: self.log.as_ref().map_or(0, LogHandle::dropped),
                metrics_requests: metrics.0,
                metrics_rejected: metrics.1,
            },
            global: &self.global,
            source: &self.source,
            now,
        }
    }
}

impl View<'_> {
    /// A live session as seen now (`None` once closed).
    fn session<'a>(&'a self, e: &Entry) -> Option<SessionView<'a>> {
        let phase = e.phase()?;
        let (to_upstream, to_client) = e.session.delivered();
        let (read_pauses, read_resumes) = e.session.pauses();
        Some(SessionView {
            id: e.id,
            listener: self
                .listeners
                .slab
                .get(e.listener)
                .map_or("-", Listener::name),
            client: e.client_addr,
            upstream: Some(e.upstream_addr),
            phase,
            age: self.now.saturating_duration_since(e.started),
            idle: self
                .now
                .saturating_duration_since(e.session.last_progress()),
            to_upstream,
            to_client,
            read_pauses,
            read_resumes,
        })
    }

    /// Every live session, oldest slot first.
    fn sessions(&self) -> impl Iterator<Item = SessionView<'_>> {
        self.sessions.iter().filter_map(move |e| self.session(e))
    }

    /// Each listener's counters and what its live sessions add up to.
    pub(super) fn listeners(&self) -> Vec<ListenerStats<'_>> {
        let mut live: Vec<Live> = vec![Live::default(); self.listeners.slab.capacity()];
        for e in self.sessions.iter() {
            let (Some(view), Some(slot)) = (self.session(e), live.get_mut(e.listener)) else {
                continue;
            };
            let draining = self
                .listeners
                .slab
                .get(e.listener)
                .is_some_and(|l| l.closed);
            slot.add(&view, draining);
        }
        self.listeners
            .slab
            .iter()
            .map(|(n, l)| {
                let mut live = live.get(n).cloned().unwrap_or_default();
                live.waiting = l.mode.waiting() as u64;
                live.handshakes = l.mode.handshakes() as u64;
                ListenerStats {
                    name: l.name(),
                    mode: l.config.mode.word(),
                    counters: &l.counters,
                    live,
                    idle_tunnels: l.mode.idle_tunnels(),
                }
            })
            .collect()
    }

    /// The running configuration, as `check` prints it (listeners being removed are not
    /// part of it).
    fn config(&self) -> String {
        let config = Config {
            global: self.global.clone(),
            listeners: self
                .listeners
                .slab
                .iter()
                .filter(|(_, l)| !l.closed)
                .map(|(_, l)| l.config.clone())
                .collect(),
            source: self.source.clone(),
        };
        file::render(&config)
    }

    /// The status and body of a metrics route.
    pub(super) fn answer(&self, route: Route) -> (u16, String) {
        let mut body = String::new();
        match route {
            Route::Metrics => {
                stats::render_metrics(&mut body, &self.process, &self.listeners());
                upstream::render_upstream_metrics(&mut body, &self.upstreams());
                (200, body)
            }
            Route::Sessions => {
                stats::render_sessions(&mut body, self.sessions());
                (200, body)
            }
            Route::Upstreams => {
                upstream::render_upstreams(&mut body, &self.upstreams());
                (200, body)
            }
            Route::Config => (200, self.config()),
            Route::Healthz if self.process.stopping => (503, "stopping\n".into()),
            Route::Healthz => (200, "ok\n".into()),
            Route::NotFound => (
                404,
                "not found: try /metrics, /sessions, /upstreams, /config or /healthz\n".into(),
            ),
            Route::MethodNotAllowed => (405, "only GET and HEAD\n".into()),
        }
    }

    /// Every upstream address of every open listener's groups.
    fn upstreams(&self) -> Vec<UpstreamView<'_>> {
        self.listeners
            .slab
            .iter()
            .filter(|(_, l)| !l.closed)
            .flat_map(|(_, l)| l.mode.upstream_views(l.name(), self.now))
            .collect()
    }

    /// SIGUSR1: one line of stats.
    pub(super) fn snapshot(&self) -> String {
        stats::snapshot_line(&self.process, &self.listeners())
    }
}
