//! Tests of the stats model and its renderings: counting, adding up live sessions, and
//! exact output of every line format.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::core::stream::AcceptPause;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn view(listener: &str) -> SessionView<'_> {
    SessionView {
        id: 7,
        listener,
        client: addr("127.0.0.1:5000"),
        upstream: Some(addr("127.0.0.1:80")),
        phase: Phase::Relaying,
        age: Duration::from_millis(12_345),
        idle: Duration::from_millis(1_000),
        to_upstream: 123,
        to_client: 456,
        read_pauses: 2,
        read_resumes: 1,
    }
}

#[test]
fn durations_read_well_in_lines() {
    assert_eq!(format_duration(Duration::from_millis(12)), "12ms");
    assert_eq!(format_duration(Duration::from_millis(9_999)), "9999ms");
    assert_eq!(format_duration(Duration::from_millis(12_345)), "12.3s");
    assert_eq!(format_duration(Duration::from_secs(7500)), "2h05m");
}

#[test]
fn phases_and_causes_are_at_their_index() {
    for (i, p) in Phase::ALL.iter().enumerate() {
        assert_eq!(p.index(), i);
    }
    for (i, c) in AcceptPause::ALL.iter().enumerate() {
        assert_eq!(c.index(), i);
    }
    let words: Vec<_> = Phase::ALL.iter().map(|p| p.as_str()).collect();
    assert_eq!(
        words,
        ["connecting", "relaying", "half_closed", "resetting"]
    );
}

#[test]
fn record_close_counts_reason_bytes_and_pauses() {
    let mut c = Counters::default();
    c.record_close(CloseReason::ClientEof, (10, 20), (3, 2));
    c.record_close(CloseReason::ClientEof, (1, 2), (0, 0));
    c.record_close(CloseReason::Shutdown, (0, 5), (1, 1));
    assert_eq!(c.closed[CloseReason::ClientEof.index()], 2);
    assert_eq!(c.closed[CloseReason::Shutdown.index()], 1);
    assert_eq!(c.closed_total(), 3);
    assert_eq!((c.to_upstream, c.to_client), (11, 27));
    assert_eq!((c.read_pauses, c.read_resumes), (4, 3));
    c.record_connect_failure(ConnectFailure::Timeout);
    c.record_accept_pause(AcceptPause::Limit);
    assert_eq!(c.connect_failures, [0, 1, 0]);
    assert_eq!(c.accept_pauses, [0, 0, 1]);
    // A counter stops at its maximum instead of wrapping (or panicking).
    c.record_close(CloseReason::ClientEof, (u64::MAX, 0), (0, 0));
    assert_eq!(c.to_upstream, u64::MAX);
}

#[test]
fn live_adds_sessions_by_phase_and_draining() {
    let mut live = Live::default();
    let mut v = view("web");
    live.add(&v, false);
    v.phase = Phase::Connecting;
    v.to_upstream = 7;
    v.to_client = 0;
    live.add(&v, true);
    assert_eq!(live.sessions, [1, 1, 0, 0]);
    assert_eq!(live.total(), 2);
    assert_eq!(live.draining, 1);
    assert_eq!((live.to_upstream, live.to_client), (130, 456));
    assert_eq!((live.read_pauses, live.read_resumes), (4, 2));
}

fn record(listener: &str) -> CloseRecord<'_> {
    CloseRecord {
        id: 7,
        listener,
        client: addr("127.0.0.1:5000"),
        upstream: Some(addr("127.0.0.1:80")),
        dest: None,
        to_upstream: 123,
        to_client: 456,
        duration: Duration::from_millis(12_345),
        read_pauses: 2,
        reason: CloseReason::ClientEof,
    }
}

#[test]
fn close_line_is_exact() {
    let r = record("web");
    assert_eq!(
        close_line(&r),
        "close id=7 listener=web client=127.0.0.1:5000 upstream=127.0.0.1:80 \
         to_upstream=123 to_client=456 duration=12.3s reason=client-eof"
    );
    let mut unserved = r;
    unserved.upstream = None;
    unserved.duration = Duration::from_millis(3);
    unserved.reason = CloseReason::PairTimeout;
    assert_eq!(
        close_line(&unserved),
        "close id=7 listener=web client=127.0.0.1:5000 upstream=- \
         to_upstream=123 to_client=456 duration=3ms reason=pair-timeout"
    );
    let mut named = r;
    named.dest = Some("example.com:443");
    assert_eq!(
        close_line(&named),
        "close id=7 listener=web client=127.0.0.1:5000 upstream=127.0.0.1:80 \
         dest=example.com:443 to_upstream=123 to_client=456 duration=12.3s reason=client-eof"
    );
}

/// The record's fields as a JSON object, the way the logger writes them.
fn fields_json(r: &CloseRecord<'_>) -> String {
    struct Json(String);
    impl<'k> log::kv::VisitSource<'k> for Json {
        fn visit_pair(
            &mut self,
            key: log::kv::Key<'k>,
            value: log::kv::Value<'k>,
        ) -> Result<(), log::kv::Error> {
            if !self.0.is_empty() {
                self.0.push(',');
            }
            crate::logging::push_json_string(&mut self.0, key.as_str());
            self.0.push(':');
            match (value.to_u64(), value.to_borrowed_str()) {
                (Some(n), _) => self.0.push_str(&n.to_string()),
                (_, Some(text)) => crate::logging::push_json_string(&mut self.0, text),
                _ => self.0.push_str("null"),
            }
            Ok(())
        }
    }
    let mut out = None;
    r.emit(|record| {
        assert_eq!(record.target(), crate::logging::CLOSE_TARGET);
        assert_eq!(record.args().to_string(), close_line(r));
        let mut json = Json(String::new());
        record.key_values().visit(&mut json).expect("fields");
        out = Some(format!("{{{}}}", json.0));
    });
    out.expect("emitted")
}

#[test]
fn close_fields_are_exact() {
    let mut r = record("web");
    r.client = addr("[::1]:5000");
    assert_eq!(
        fields_json(&r),
        "{\"event\":\"close\",\"id\":7,\"listener\":\"web\",\"client\":\"[::1]:5000\",\
         \"upstream\":\"127.0.0.1:80\",\"dest\":null,\"to_upstream\":123,\"to_client\":456,\
         \"duration_ms\":12345,\"reason\":\"client-eof\",\"read_pauses\":2}"
    );
    r.upstream = None;
    r.listener = "we\"b\\\n\u{1}é";
    assert_eq!(
        fields_json(&r),
        "{\"event\":\"close\",\"id\":7,\"listener\":\"we\\\"b\\\\\\n\\u0001é\",\
         \"client\":\"[::1]:5000\",\"upstream\":null,\"dest\":null,\"to_upstream\":123,\"to_client\":456,\
         \"duration_ms\":12345,\"reason\":\"client-eof\",\"read_pauses\":2}"
    );
}

#[test]
fn session_lines_are_exact() {
    let mut second = view("nat");
    second.id = 8;
    second.upstream = None;
    second.phase = Phase::HalfClosed;
    second.age = Duration::from_secs(7500);
    second.idle = Duration::ZERO;
    let mut out = String::new();
    render_sessions(&mut out, [view("web"), second]);
    assert_eq!(
        out,
        "id=7 listener=web client=127.0.0.1:5000 upstream=127.0.0.1:80 phase=relaying \
         age=12.3s idle=1000ms to_upstream=123 to_client=456\n\
         id=8 listener=nat client=127.0.0.1:5000 upstream=- phase=half_closed \
         age=2h05m idle=0ms to_upstream=123 to_client=456\n"
    );
    let mut none = String::new();
    render_sessions(&mut none, std::iter::empty());
    assert_eq!(none, "");
}

fn process() -> ProcessStats {
    ProcessStats {
        uptime: Duration::from_millis(11_100_250),
        max_sessions: 1000,
        buffers_lent: 3,
        pipes_lent: 1,
        pool_lent: 3 * 16384 + 262_144,
        pool_budget: 2048 * 16384,
        buffer_size: 16384,
        timers_armed: 14,
        stopping: false,
        reloads: 2,
        reload_failures: 1,
        log_lines_dropped: 5,
        metrics_requests: 9,
        metrics_rejected: 1,
    }
}

fn web_counters() -> Counters {
    let mut c = Counters {
        accepted: 1234,
        auth_failures: 0,
        handshake_failures: 0,
        ..Counters::default()
    };
    c.record_close(CloseReason::ClientEof, (1000, 2000), (4, 4));
    c.record_close(CloseReason::UpstreamReset, (10, 20), (0, 0));
    c.record_connect_failure(ConnectFailure::Refused);
    c.record_accept_pause(AcceptPause::Descriptors);
    c
}

fn listeners<'a>(web: &'a Counters, nat: &'a Counters) -> Vec<ListenerStats<'a>> {
    let mut web_live = Live::default();
    web_live.add(&view("web"), false);
    let mut nat_live = Live {
        waiting: 2,
        handshakes: 1,
        ..Live::default()
    };
    let mut v = view("nat");
    v.phase = Phase::Resetting;
    nat_live.add(&v, true);
    vec![
        ListenerStats {
            name: "web",
            mode: "forward",
            counters: web,
            live: web_live,
            idle_tunnels: Vec::new(),
        },
        ListenerStats {
            name: "nat",
            mode: "relay",
            counters: nat,
            live: nat_live,
            idle_tunnels: vec![("ssh", 3), ("http", 1)],
        },
    ]
}

#[test]
fn metrics_have_the_expected_lines_and_are_deterministic() {
    let (web, nat) = (web_counters(), Counters::default());
    let ls = listeners(&web, &nat);
    let mut out = String::new();
    render_metrics(&mut out, &process(), &ls);
    for line in [
        "# HELP tcpbridge_sessions_accepted_total Clients accepted.",
        "# TYPE tcpbridge_sessions_accepted_total counter",
        "tcpbridge_listener_info{listener=\"nat\",mode=\"relay\"} 1",
        "tcpbridge_sessions_accepted_total{listener=\"web\"} 1234",
        "tcpbridge_sessions_accepted_total{listener=\"nat\"} 0",
        "tcpbridge_sessions_closed_total{listener=\"web\",reason=\"client-eof\"} 1",
        "tcpbridge_sessions_closed_total{listener=\"web\",reason=\"upstream-reset\"} 1",
        "tcpbridge_sessions_closed_total{listener=\"nat\",reason=\"shutdown\"} 0",
        "tcpbridge_bytes_total{listener=\"web\",direction=\"to_upstream\"} 1133",
        "tcpbridge_bytes_total{listener=\"web\",direction=\"to_client\"} 2476",
        "tcpbridge_connect_failures_total{listener=\"web\",kind=\"refused\"} 1",
        "tcpbridge_accept_pauses_total{listener=\"web\",cause=\"descriptors\"} 1",
        "tcpbridge_read_pauses_total{listener=\"web\"} 6",
        "tcpbridge_read_resumes_total{listener=\"web\"} 5",
        "tcpbridge_sessions{listener=\"web\",phase=\"relaying\"} 1",
        "tcpbridge_sessions{listener=\"nat\",phase=\"resetting\"} 1",
        "tcpbridge_sessions_draining{listener=\"nat\"} 1",
        "tcpbridge_waiting_clients{listener=\"nat\"} 2",
        "tcpbridge_tunnel_handshakes{listener=\"nat\"} 1",
        "tcpbridge_idle_tunnels{listener=\"nat\",service=\"ssh\"} 3",
        "tcpbridge_buffers_lent 3",
        "tcpbridge_pipes_lent 1",
        "tcpbridge_pool_lent_bytes 311296",
        "tcpbridge_pool_buffers 2048",
        "tcpbridge_memory_bound_bytes 33554432",
        "tcpbridge_uptime_seconds 11100.250",
        "tcpbridge_stopping 0",
        "tcpbridge_config_reloads_total{result=\"ok\"} 2",
        "tcpbridge_config_reloads_total{result=\"failed\"} 1",
        "tcpbridge_metrics_rejected_total 1",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
    }
    // Idle tunnels come sorted by service.
    let http = out.find("service=\"http\"").expect("http series");
    let ssh = out.find("service=\"ssh\"").expect("ssh series");
    assert!(http < ssh);
    // Same values, same bytes.
    let mut again = String::new();
    render_metrics(&mut again, &process(), &ls);
    assert_eq!(out, again);
    assert!(out.ends_with('\n'));
}

#[test]
fn families_without_series_still_have_help_and_type() {
    let mut out = String::new();
    render_metrics(&mut out, &ProcessStats::default(), &[]);
    assert!(out.contains("# TYPE tcpbridge_sessions_closed_total counter\n"));
    assert!(out.contains("# TYPE tcpbridge_idle_tunnels gauge\n"));
    assert!(!out.contains("tcpbridge_sessions{"));
    assert!(out.contains("\ntcpbridge_uptime_seconds 0.000\n"));
}

#[test]
fn label_values_are_escaped() {
    let c = Counters::default();
    let l = ListenerStats {
        name: "a\\b\"c\nd",
        mode: "forward",
        counters: &c,
        live: Live::default(),
        idle_tunnels: Vec::new(),
    };
    let mut out = String::new();
    render_metrics(&mut out, &ProcessStats::default(), &[l]);
    assert!(out.contains("tcpbridge_sessions_accepted_total{listener=\"a\\\\b\\\"c\\nd\"} 0\n"));
}

#[test]
fn snapshot_is_one_line() {
    let (web, nat) = (web_counters(), Counters::default());
    let ls = listeners(&web, &nat);
    assert_eq!(
        snapshot_line(&process(), &ls),
        "stats: uptime=3h05m sessions=2 (connecting=0 relaying=1 half_closed=0 resetting=1) \
         draining=1 waiting=2 accepted=1234 closed=2 to_upstream=1256 to_client=2932 \
         buffers=3 pipes=1 pool=311296/33554432 timers=14 listeners=web:1,nat:1"
    );
    assert_eq!(
        snapshot_line(&ProcessStats::default(), &[]),
        "stats: uptime=0ms sessions=0 (connecting=0 relaying=0 half_closed=0 resetting=0) \
         draining=0 waiting=0 accepted=0 closed=0 to_upstream=0 to_client=0 \
         buffers=0 pipes=0 pool=0/0 timers=0 listeners=-"
    );
}
