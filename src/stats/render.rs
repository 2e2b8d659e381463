//! `GET /metrics`: the stats model in the Prometheus text exposition format (0.0.4).
//!
//! Every family has its `# HELP` and `# TYPE` lines, even with no series. Families come
//! in a fixed order; within a family, listeners in the order given, then label values in
//! their declaration order (idle tunnels by service name), so two renderings of the same
//! values are byte-identical.

use std::fmt::{self, Write};

use super::{AcceptPause, ListenerStats, Phase, ProcessStats};
use crate::core::reason::CloseReason;
use crate::core::stream::ConnectFailure;

/// Metric type of a family.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// Writes families and samples into the output text.
struct Prom<'o> {
    out: &'o mut String,
}

impl Prom<'_> {
    /// Starts a family: its `# HELP` and `# TYPE` lines.
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        // Writing into a String cannot fail.
        let _ = write!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    /// One sample line.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(key);
                self.out.push_str("=\"");
                escape_label(self.out, val);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with one series per listener, valued by `f`.
    fn per_listener(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        listeners: &[ListenerStats<'_>],
        f: impl Fn(&ListenerStats<'_>) -> u64,
    ) {
        self.family(name, kind, help);
        for l in listeners {
            self.sample(name, &[("listener", l.name)], f(l));
        }
    }

    /// A process-wide family with one series.
    fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// Escapes a label value: backslash, double quote and newline.
fn escape_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends the whole exposition: per-listener families, then process-wide ones.
/// Listener names must be unique among `listeners` (each is one series per family).
pub fn render_metrics(out: &mut String, p: &ProcessStats, listeners: &[ListenerStats<'_>]) {
    use Kind::{Counter, Gauge};
    let mut w = Prom { out };

    w.family(
        "tcpbridge_listener_info",
        Gauge,
        "Listeners and their mode; always 1.",
    );
    for l in listeners {
        w.sample(
            "tcpbridge_listener_info",
            &[("listener", l.name), ("mode", l.mode)],
            1,
        );
    }
    w.per_listener(
        "tcpbridge_sessions_accepted_total",
        Counter,
        "Clients accepted.",
        listeners,
        |l| l.counters.accepted,
    );
    let name = "tcpbridge_sessions_closed_total";
    w.family(name, Counter, "Sessions closed, by close reason.");
    for l in listeners {
        for r in CloseReason::ALL {
            let labels = [("listener", l.name), ("reason", r.as_str())];
            w.sample(name, &labels, l.counters.closed[r.index()]);
        }
    }
    let name = "tcpbridge_bytes_total";
    w.family(
        name,
        Counter,
        "Bytes delivered, by direction (closed and live sessions).",
    );
    for l in listeners {
        let (to_upstream, to_client) = l.bytes();
        w.sample(
            name,
            &[("listener", l.name), ("direction", "to_upstream")],
            to_upstream,
        );
        w.sample(
            name,
            &[("listener", l.name), ("direction", "to_client")],
            to_client,
        );
    }
    let name = "tcpbridge_connect_failures_total";
    w.family(name, Counter, "Failed upstream connect attempts, by kind.");
    for l in listeners {
        for k in ConnectFailure::ALL {
            let labels = [("listener", l.name), ("kind", k.as_str())];
            w.sample(name, &labels, l.counters.connect_failures[k.index()]);
        }
    }
    let name = "tcpbridge_accept_pauses_total";
    w.family(
        name,
        Counter,
        "Times the listener stopped accepting for a while, by cause.",
    );
    for l in listeners {
        for c in AcceptPause::ALL {
            let labels = [("listener", l.name), ("cause", c.as_str())];
            w.sample(name, &labels, l.counters.accept_pauses[c.index()]);
        }
    }
    w.per_listener(
        "tcpbridge_read_pauses_total",
        Counter,
        "Reads paused because the other side was not taking bytes (backpressure).",
        listeners,
        |l| l.read_pauses().0,
    );
    w.per_listener(
        "tcpbridge_read_resumes_total",
        Counter,
        "Paused reads resumed.",
        listeners,
        |l| l.read_pauses().1,
    );
    w.per_listener(
        "tcpbridge_auth_failures_total",
        Counter,
        "Tunnel proofs that did not verify.",
        listeners,
        |l| l.counters.auth_failures,
    );
    w.per_listener(
        "tcpbridge_handshake_failures_total",
        Counter,
        "Tunnel handshakes that did not finish for another cause (bad bytes, timeout, hang-up).",
        listeners,
        |l| l.counters.handshake_failures,
    );
    let name = "tcpbridge_sessions";
    w.family(name, Gauge, "Live sessions, by phase.");
    for l in listeners {
        for ph in Phase::ALL {
            let labels = [("listener", l.name), ("phase", ph.as_str())];
            w.sample(name, &labels, l.live.sessions[ph.index()]);
        }
    }
    w.per_listener(
        "tcpbridge_sessions_draining",
        Gauge,
        "Live sessions of a closed listener, still finishing.",
        listeners,
        |l| l.live.draining,
    );
    w.per_listener(
        "tcpbridge_waiting_clients",
        Gauge,
        "Clients not yet sessions: waiting for a tunnel or a PROXY header, or in a connect or socks handshake.",
        listeners,
        |l| l.live.waiting,
    );
    w.per_listener(
        "tcpbridge_tunnel_handshakes",
        Gauge,
        "Tunnels in their handshake.",
        listeners,
        |l| l.live.handshakes,
    );
    let name = "tcpbridge_idle_tunnels";
    w.family(name, Gauge, "Idle tunnels, by service.");
    for l in listeners {
        let mut services: Vec<&(&str, u64)> = l.idle_tunnels.iter().collect();
        services.sort_by(|a, b| a.0.cmp(b.0));
        services.dedup_by(|a, b| a.0 == b.0);
        for &&(service, n) in &services {
            w.sample(name, &[("listener", l.name), ("service", service)], n);
        }
    }

    w.single(
        "tcpbridge_buffers_lent",
        Gauge,
        "Ring buffers lent to pipes now.",
        p.buffers_lent,
    );
    w.single(
        "tcpbridge_pipes_lent",
        Gauge,
        "Kernel pipes lent to pipes now (splice).",
        p.pipes_lent,
    );
    w.single(
        "tcpbridge_pool_lent_bytes",
        Gauge,
        "Bytes of the pool budget lent now (ring buffers and kernel pipes).",
        p.pool_lent,
    );
    w.single(
        "tcpbridge_pool_buffers",
        Gauge,
        "The pool budget, in smallest ring buffers.",
        p.pool_budget / p.buffer_size.max(1),
    );
    w.single(
        "tcpbridge_buffer_size_bytes",
        Gauge,
        "Bytes of the smallest ring buffer.",
        p.buffer_size,
    );
    w.single(
        "tcpbridge_memory_bound_bytes",
        Gauge,
        "Most bytes ring buffers and kernel pipes may hold (the pool budget).",
        p.pool_budget,
    );
    w.single(
        "tcpbridge_timers_armed",
        Gauge,
        "Deadlines armed for live sessions, tunnels and waiting clients.",
        p.timers_armed,
    );
    w.single(
        "tcpbridge_sessions_max",
        Gauge,
        "The session limit.",
        p.max_sessions,
    );
    w.single(
        "tcpbridge_uptime_seconds",
        Gauge,
        "Seconds since start.",
        format_args!("{:.3}", p.uptime.as_secs_f64()),
    );
    w.single(
        "tcpbridge_stopping",
        Gauge,
        "1 while the process drains before it exits.",
        u8::from(p.stopping),
    );
    let name = "tcpbridge_config_reloads_total";
    w.family(name, Counter, "Configuration reloads, by result.");
    w.sample(name, &[("result", "ok")], p.reloads);
    w.sample(name, &[("result", "failed")], p.reload_failures);
    w.single(
        "tcpbridge_log_lines_dropped_total",
        Counter,
        "Log lines dropped by the rate limit.",
        p.log_lines_dropped,
    );
    w.single(
        "tcpbridge_metrics_requests_total",
        Counter,
        "Requests answered by the metrics endpoint.",
        p.metrics_requests,
    );
    w.single(
        "tcpbridge_metrics_rejected_total",
        Counter,
        "Metrics connections refused or answered with an error.",
        p.metrics_rejected,
    );
}
