//! What operators see of upstream groups: each member's counters (kept by the loop), its
//! view (state, sessions, warm connections), the Prometheus families and the
//! `GET /upstreams` table.

use std::fmt::Write;
use std::net::SocketAddr;
use std::time::Duration;

use crate::core::stream::ConnectFailure;

/// Upper bounds of the time-to-connect histogram's buckets (`+Inf` follows).
pub const CONNECT_BUCKETS: [Duration; 8] = [
    Duration::from_millis(1),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(5),
];

/// A histogram of connect times.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectTimes {
    /// Counts per bucket of [`CONNECT_BUCKETS`] (not cumulative), then above the last.
    buckets: [u64; CONNECT_BUCKETS.len() + 1],
    /// Sum in microseconds.
    sum_us: u64,
}

impl ConnectTimes {
    /// Records one connect that took `took`.
    pub fn record(&mut self, took: Duration) {
        let i = CONNECT_BUCKETS
            .iter()
            .position(|b| took <= *b)
            .unwrap_or(CONNECT_BUCKETS.len());
        if let Some(b) = self.buckets.get_mut(i) {
            *b = b.saturating_add(1);
        }
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// Connects recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// One member's counters, since it joined its group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamCounters {
    /// Failed connects by kind (sessions' and warm connections').
    pub connect_failures: [u64; ConnectFailure::ALL.len()],
    /// Time to connect of the connects that succeeded.
    pub connect_times: ConnectTimes,
    /// Warm connections lent to sessions.
    pub warm_lent: u64,
    /// Warm connections closed at their age limit, unused.
    pub warm_expired: u64,
    /// Warm connections the upstream closed while idle, or that failed validation.
    pub warm_failed: u64,
    /// Active health checks that failed.
    pub checks_failed: u64,
}

/// One member as the views show it.
#[derive(Debug, Clone)]
pub struct UpstreamView<'a> {
    /// The listener's name.
    pub listener: &'a str,
    /// The service (agent) or `-` (forward).
    pub group: &'a str,
    /// `HOST:PORT` as configured.
    pub target: &'a str,
    /// The address dialed.
    pub addr: SocketAddr,
    /// `up`, `down` (active checks) or `ejected` (failed connects).
    pub state: &'static str,
    /// Its weight.
    pub weight: u32,
    /// Used only when every other upstream is down.
    pub backup: bool,
    /// Live sessions on it.
    pub sessions: u32,
    /// Times it was ejected.
    pub ejections: u64,
    /// Warm connections ready to be lent.
    pub warm_idle: usize,
    /// Its counters.
    pub counters: &'a UpstreamCounters,
}

/// The states a member may be in, in the order metrics list them.
pub const STATES: [&str; 3] = ["up", "down", "ejected"];

/// The Prometheus families of upstream members.
pub fn render_upstream_metrics(out: &mut String, views: &[UpstreamView<'_>]) {
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    };
    let labels = |v: &UpstreamView<'_>| {
        format!(
            "listener=\"{}\",group=\"{}\",upstream=\"{}\"",
            escape(v.listener),
            escape(v.group),
            v.addr
        )
    };
    family(
        out,
        "tcpbridge_upstream_state",
        "gauge",
        "1 for the state each upstream address is in.",
    );
    for v in views {
        for s in STATES {
            let on = u8::from(s == v.state);
            let _ = writeln!(
                out,
                "tcpbridge_upstream_state{{{},state=\"{s}\"}} {on}",
                labels(v)
            );
        }
    }
    type Family = (
        &'static str,
        &'static str,
        &'static str,
        fn(&UpstreamView<'_>) -> u64,
    );
    let simple: [Family; 7] = [
        (
            "tcpbridge_upstream_sessions",
            "gauge",
            "Live sessions per upstream address.",
            |v| u64::from(v.sessions),
        ),
        (
            "tcpbridge_upstream_ejections_total",
            "counter",
            "Times an upstream address was ejected after failed connects.",
            |v| v.ejections,
        ),
        (
            "tcpbridge_upstream_warm_idle",
            "gauge",
            "Warm connections open and idle, ready to be lent.",
            |v| v.warm_idle as u64,
        ),
        (
            "tcpbridge_upstream_warm_lent_total",
            "counter",
            "Warm connections lent to sessions (each once).",
            |v| v.counters.warm_lent,
        ),
        (
            "tcpbridge_upstream_warm_expired_total",
            "counter",
            "Warm connections closed unused at their age limit.",
            |v| v.counters.warm_expired,
        ),
        (
            "tcpbridge_upstream_warm_failed_total",
            "counter",
            "Warm connections closed by the upstream while idle or failing validation.",
            |v| v.counters.warm_failed,
        ),
        (
            "tcpbridge_upstream_checks_failed_total",
            "counter",
            "Active health checks that failed.",
            |v| v.counters.checks_failed,
        ),
    ];
    for (name, kind, help, f) in simple {
        family(out, name, kind, help);
        for v in views {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(v), f(v));
        }
    }
    family(
        out,
        "tcpbridge_upstream_connect_failures_total",
        "counter",
        "Failed connects per upstream address, by kind.",
    );
    for v in views {
        for kind in ConnectFailure::ALL {
            let n = v.counters.connect_failures[kind.index()];
            let _ = writeln!(
                out,
                "tcpbridge_upstream_connect_failures_total{{{},kind=\"{}\"}} {n}",
                labels(v),
                kind.as_str()
            );
        }
    }
    let name = "tcpbridge_upstream_connect_seconds";
    family(
        out,
        name,
        "histogram",
        "Time to connect to each upstream address.",
    );
    for v in views {
        let t = &v.counters.connect_times;
        let mut cumulative = 0u64;
        for (bound, n) in CONNECT_BUCKETS.iter().zip(t.buckets) {
            cumulative += n;
            let le = bound.as_secs_f64();
            let _ = writeln!(
                out,
                "{name}_bucket{{{},le=\"{le}\"}} {cumulative}",
                labels(v)
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{},le=\"+Inf\"}} {}",
            labels(v),
            t.count()
        );
        let sum = t.sum_us as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{}}} {sum}", labels(v));
        let _ = writeln!(out, "{name}_count{{{}}} {}", labels(v), t.count());
    }
}

/// `GET /upstreams`: one line per upstream address, key=value fields.
pub fn render_upstreams(out: &mut String, views: &[UpstreamView<'_>]) {
    for v in views {
        let c = v.counters;
        let failures: u64 = c.connect_failures.iter().sum();
        let _ = writeln!(
            out,
            "listener={} group={} target={} addr={} state={} weight={} backup={} sessions={} \
             connects={} connect_failures={failures} ejections={} warm_idle={} warm_lent={} \
             warm_expired={} warm_failed={} checks_failed={}",
            v.listener,
            v.group,
            v.target,
            v.addr,
            v.state,
            v.weight,
            v.backup,
            v.sessions,
            c.connect_times.count(),
            v.ejections,
            v.warm_idle,
            c.warm_lent,
            c.warm_expired,
            c.warm_failed,
            c.checks_failed,
        );
    }
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_times_fall_in_their_bucket_and_render_cumulatively() {
        let mut c = UpstreamCounters::default();
        c.connect_times.record(Duration::from_micros(500));
        c.connect_times.record(Duration::from_millis(30));
        c.connect_times.record(Duration::from_secs(9));
        let v = UpstreamView {
            listener: "web",
            group: "-",
            target: "app:80",
            addr: "127.0.0.1:80".parse().expect("addr"),
            state: "up",
            weight: 1,
            backup: false,
            sessions: 2,
            ejections: 0,
            warm_idle: 0,
            counters: &c,
        };
        let mut out = String::new();
        render_upstream_metrics(&mut out, std::slice::from_ref(&v));
        let l = "listener=\"web\",group=\"-\",upstream=\"127.0.0.1:80\"";
        for line in [
            format!("tcpbridge_upstream_connect_seconds_bucket{{{l},le=\"0.001\"}} 1"),
            format!("tcpbridge_upstream_connect_seconds_bucket{{{l},le=\"0.05\"}} 2"),
            format!("tcpbridge_upstream_connect_seconds_bucket{{{l},le=\"5\"}} 2"),
            format!("tcpbridge_upstream_connect_seconds_bucket{{{l},le=\"+Inf\"}} 3"),
            format!("tcpbridge_upstream_connect_seconds_count{{{l}}} 3"),
            format!("tcpbridge_upstream_state{{{l},state=\"up\"}} 1"),
            format!("tcpbridge_upstream_state{{{l},state=\"ejected\"}} 0"),
            format!("tcpbridge_upstream_sessions{{{l}}} 2"),
        ] {
            assert!(out.lines().any(|x| x == line), "{line} not in:\n{out}");
        }
        let mut table = String::new();
        render_upstreams(&mut table, &[v]);
        assert!(table.starts_with("listener=web group=- target=app:80 addr=127.0.0.1:80 state=up"));
        assert!(table.contains(" connects=3 "), "{table}");
    }
}
