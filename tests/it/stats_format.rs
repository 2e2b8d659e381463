//! The metrics exposition read back by a strict parser of the Prometheus text format:
//! a populated stats model renders to text that parses, with the values put in; and the
//! parser itself rejects what the format (or the proxy's promises) forbid.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::prom::{self, Sample};
use tcpbridge::core::reason::CloseReason;
use tcpbridge::core::session::Phase;
use tcpbridge::core::stream::{AcceptPause, ConnectFailure};
use tcpbridge::stats::{render_metrics, Counters, ListenerStats, Live, ProcessStats, SessionView};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn session(listener: &str, phase: Phase, to_upstream: u64, to_client: u64) -> SessionView<'_> {
    SessionView {
        id: 1,
        listener,
        client: addr("127.0.0.1:5000"),
        upstream: None,
        phase,
        age: Duration::from_secs(3),
        idle: Duration::from_secs(1),
        to_upstream,
        to_client,
        read_pauses: 1,
        read_resumes: 1,
    }
}

fn process() -> ProcessStats {
    ProcessStats {
        uptime: Duration::from_millis(90_500),
        max_sessions: 4096,
        buffers_lent: 6,
        pipes_lent: 2,
        pool_lent: 6 * 32768 + 2 * 262_144,
        pool_budget: 1024 * 32768,
        buffer_size: 32768,
        timers_armed: 9,
        stopping: true,
        reloads: 3,
        reload_failures: 1,
        log_lines_dropped: 12,
        metrics_requests: 40,
        metrics_rejected: 2,
    }
}

/// Renders two listeners, one with an odd name, and parses the text back.
fn rendered() -> (String, Vec<Sample>) {
    let mut web = Counters {
        accepted: 10,
        ..Counters::default()
    };
    web.record_close(CloseReason::ClientEof, (100, 1000), (2, 2));
    web.record_close(CloseReason::ConnectRefused, (0, 0), (0, 0));
    web.record_connect_failure(ConnectFailure::Refused);
    web.record_connect_failure(ConnectFailure::Refused);
    web.record_connect_failure(ConnectFailure::Timeout);
    web.record_accept_pause(AcceptPause::Memory);
    let odd = Counters {
        accepted: 5,
        auth_failures: 4,
        handshake_failures: 1,
        ..Counters::default()
    };
    let odd_name = "nat \"east\"\\\n";
    let mut web_live = Live::default();
    web_live.add(&session("web", Phase::Relaying, 7, 70), false);
    web_live.add(&session("web", Phase::HalfClosed, 3, 30), false);
    let mut odd_live = Live {
        waiting: 3,
        handshakes: 2,
        ..Live::default()
    };
    odd_live.add(&session(odd_name, Phase::Connecting, 0, 0), true);
    let listeners = [
        ListenerStats {
            name: "web",
            mode: "forward",
            counters: &web,
            live: web_live,
            idle_tunnels: Vec::new(),
        },
        ListenerStats {
            name: odd_name,
            mode: "relay",
            counters: &odd,
            live: odd_live,
            idle_tunnels: vec![("ssh", 4), ("http", 0)],
        },
    ];
    let mut text = String::new();
    render_metrics(&mut text, &process(), &listeners);
    let samples = prom::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    (text, samples)
}

#[test]
fn a_populated_model_parses_with_its_values() {
    let (_, s) = rendered();
    let odd = "nat \"east\"\\\n";
    let web = [("listener", "web")];
    assert_eq!(
        prom::value(&s, "tcpbridge_sessions_accepted_total", &web),
        Some(10.0)
    );
    assert_eq!(
        prom::value(
            &s,
            "tcpbridge_sessions_accepted_total",
            &[("listener", odd)]
        ),
        Some(5.0)
    );
    assert_eq!(prom::sum(&s, "tcpbridge_sessions_closed_total", &web), 2.0);
    assert_eq!(
        prom::value(
            &s,
            "tcpbridge_sessions_closed_total",
            &[("listener", "web"), ("reason", "connect-refused")]
        ),
        Some(1.0)
    );
    // One closed series per reason and listener, zeros included.
    let closed = s
        .iter()
        .filter(|x| x.name == "tcpbridge_sessions_closed_total")
        .count();
    assert_eq!(closed, 2 * CloseReason::ALL.len());
    assert_eq!(
        prom::value(
            &s,
            "tcpbridge_bytes_total",
            &[("listener", "web"), ("direction", "to_client")]
        ),
        Some(1100.0)
    );
    assert_eq!(
        prom::sum(&s, "tcpbridge_bytes_total", &[("direction", "to_upstream")]),
        110.0
    );
    assert_eq!(prom::sum(&s, "tcpbridge_connect_failures_total", &web), 3.0);
    assert_eq!(
        prom::value(
            &s,
            "tcpbridge_accept_pauses_total",
            &[("listener", "web"), ("cause", "memory")]
        ),
        Some(1.0)
    );
    assert_eq!(
        prom::value(&s, "tcpbridge_read_pauses_total", &web),
        Some(4.0)
    );
    assert_eq!(
        prom::value(&s, "tcpbridge_auth_failures_total", &[("listener", odd)]),
        Some(4.0)
    );
    assert_eq!(prom::sum(&s, "tcpbridge_sessions", &web), 2.0);
    assert_eq!(
        prom::value(
            &s,
            "tcpbridge_sessions",
            &[("listener", odd), ("phase", "connecting")]
        ),
        Some(1.0)
    );
    assert_eq!(prom::sum(&s, "tcpbridge_sessions_draining", &[]), 1.0);
    assert_eq!(
        prom::value(&s, "tcpbridge_waiting_clients", &[("listener", odd)]),
        Some(3.0)
    );
    assert_eq!(
        prom::value(&s, "tcpbridge_tunnel_handshakes", &[("listener", odd)]),
        Some(2.0)
    );
    assert_eq!(
        prom::value(
            &s,
            "tcpbridge_idle_tunnels",
            &[("listener", odd), ("service", "ssh")]
        ),
        Some(4.0)
    );
    assert_eq!(
        prom::value(&s, "tcpbridge_memory_bound_bytes", &[]),
        Some(33_554_432.0)
    );
    assert_eq!(prom::value(&s, "tcpbridge_uptime_seconds", &[]), Some(90.5));
    assert_eq!(prom::value(&s, "tcpbridge_stopping", &[]), Some(1.0));
    assert_eq!(
        prom::value(
            &s,
            "tcpbridge_config_reloads_total",
            &[("result", "failed")]
        ),
        Some(1.0)
    );
    assert_eq!(
        prom::value(&s, "tcpbridge_metrics_requests_total", &[]),
        Some(40.0)
    );
    // `value` wants the exact label set; a subset is for `sum`.
    assert_eq!(prom::value(&s, "tcpbridge_sessions", &web), None);
}

#[test]
fn every_family_has_help_and_type_even_without_series() {
    let mut text = String::new();
    render_metrics(&mut text, &ProcessStats::default(), &[]);
    prom::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let (full, _) = rendered();
    let families = |t: &str| -> Vec<String> {
        t.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.to_string())
            .collect()
    };
    assert_eq!(families(&text), families(&full));
    for line in full.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split(' ').nth(2).expect("family name");
        assert!(
            full.contains(&format!("# HELP {name} ")),
            "{name} has no HELP"
        );
    }
}

/// Each input must be refused, for the right reason.
#[test]
fn the_parser_refuses_bad_expositions() {
    for (bad, why, says) in [
        ("a_total 1\n", "no TYPE line", "before its family's # TYPE"),
        (
            "# TYPE a untyped\na 1\n",
            "type not counter/gauge/histogram",
            "is not counter, gauge or histogram",
        ),
        (
            "# TYPE a summary\na 1\n",
            "type not counter/gauge/histogram",
            "is not counter, gauge or histogram",
        ),
        (
            "# TYPE h histogram\nh_bucket 1\n",
            "histogram bucket without le",
            "without an le label",
        ),
        (
            "# TYPE a counter\na 1\n",
            "counter without _total",
            "does not end in _total",
        ),
        (
            "# TYPE a_total counter\na_total -1\n",
            "negative counter",
            "negative",
        ),
        ("# TYPE a gauge\na 1", "no final newline", "newline"),
        (
            "# TYPE a gauge\na one\n",
            "value does not parse",
            "bad value",
        ),
        ("# TYPE a gauge\na 0x10\n", "hex value", "bad value"),
        ("# TYPE a gauge\na\n", "no value", "no value"),
        ("# TYPE a gauge\na 1 2 3\n", "extra text", "extra text"),
        ("# TYPE a gauge\na 1 x\n", "bad timestamp", "bad timestamp"),
        (
            "# TYPE 1a gauge\n1a 1\n",
            "name starts with a digit",
            "bad metric name",
        ),
        (
            "# TYPE a-b gauge\na-b 1\n",
            "dash in a name",
            "bad metric name",
        ),
        (
            "# TYPE a gauge\na{l=\"x\"} 1\na{l=\"x\"} 2\n",
            "duplicate series",
            "duplicate series",
        ),
        (
            "# TYPE a gauge\na 1\na 2\n",
            "duplicate series without labels",
            "duplicate series",
        ),
        (
            "# TYPE a gauge\n# TYPE a gauge\na 1\n",
            "two TYPE lines",
            "second TYPE",
        ),
        (
            "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"1\"} 1\n",
            "not contiguous",
            "not contiguous",
        ),
        (
            "# TYPE a gauge\na{l=x} 1\n",
            "unquoted label value",
            "not quoted",
        ),
        (
            "# TYPE a gauge\na{l=\"x} 1\n",
            "unclosed label value",
            "not closed",
        ),
        (
            "# TYPE a gauge\na{l=\"x\\t\"} 1\n",
            "bad escape",
            "bad escape",
        ),
        (
            "# TYPE a gauge\na{l=\"x\" m=\"y\"} 1\n",
            "no comma between labels",
            "not separated by commas",
        ),
        (
            "# TYPE a gauge\na{l=\"x\",l=\"y\"} 1\n",
            "label twice",
            "twice",
        ),
        (
            "# TYPE a gauge\na{1l=\"x\"} 1\n",
            "bad label name",
            "bad label name",
        ),
        (
            "# TYPE a gauge\na{__l=\"x\"} 1\n",
            "reserved label name",
            "bad label name",
        ),
        (
            "# TYPE a gauge\na{l=\"x\"}1\n",
            "no blank before the value",
            "no blank before the value",
        ),
        (
            "# TYPE a gauge\na{l} 1\n",
            "label without value",
            "label without =",
        ),
        (
            "# HELP a bad \\t escape\n# TYPE a gauge\na 1\n",
            "bad HELP escape",
            "bad escape in HELP",
        ),
        (
            "# TYPE a gauge\nb 1\n",
            "sample of a family without TYPE",
            "before its family's # TYPE",
        ),
    ] {
        match prom::parse(bad) {
            Ok(_) => panic!("accepted ({why}): {bad:?}"),
            Err(e) => assert!(e.contains(says), "{why}: {bad:?} refused with {e:?}"),
        }
    }
}

#[test]
fn the_parser_accepts_what_the_format_allows() {
    let text = "# HELP a_total Things, with \\\\ and \\n.\n# TYPE a_total counter\n\
                a_total{l=\"x\\\"y\\\\z\\n\",m=\"\",} 1.5e3 1700000000000\n\
                # a plain comment\n\n\
                # TYPE b gauge\nb -Inf\n# TYPE c gauge\nc NaN\n# TYPE d gauge\nd +Inf\n";
    let s = prom::parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.len(), 4);
    assert_eq!(s[0].labels["l"], "x\"y\\z\n");
    assert_eq!(s[0].labels["m"], "");
    assert_eq!(s[0].value, 1500.0);
    assert_eq!(s[1].value, f64::NEG_INFINITY);
    assert!(s[2].value.is_nan());
    assert_eq!(prom::parse(""), Ok(Vec::new()));
}
