//! The metrics endpoint, scraped the way an operator would: `/metrics` parses as
//! Prometheus text and its counters balance against what the test did, `/sessions`
//! lists a live session with the right fields, `/healthz` answers, and garbage, a
//! trickle or a crowd on the metrics port never disturbs a relayed session.

use crate::support::prom::{self, Sample};
use crate::support::*;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    prom::sum(samples, name, labels)
}

fn forward_with_metrics(up: SocketAddr) -> (Proxy, SocketAddr) {
    let proxy = Proxy::forward(&[up], &["--metrics-listen", "127.0.0.1:0"]);
    let metrics = proxy.field_addr("metrics");
    (proxy, metrics)
}

/// Counters balance during traffic: accepted = closed + live, bytes equal what was
/// sent, close reasons are counted, and `/sessions` shows the live ones.
#[test]
fn counters_balance_during_traffic() {
    watchdog(|| {
        let up = echo_server();
        let (mut proxy, metrics) = forward_with_metrics(up.addr);
        let baseline = proxy.baseline();
        let l = [("listener", "forward")];

        // Three sessions that end with the client's FIN, 1000 bytes each way.
        for i in 0..3 {
            let mut c = connect(proxy.addr());
            echo_roundtrip(&mut c, &pattern(i, 1000));
            c.shutdown(Shutdown::Write).expect("shutdown");
            assert!(matches!(read_end(&mut c), End::Eof));
        }
        // Two live sessions, 500 bytes each way so far.
        let mut live: Vec<TcpStream> = (0..2)
            .map(|i| {
                let mut c = connect(proxy.addr());
                echo_roundtrip(&mut c, &pattern(10 + i, 500));
                c
            })
            .collect();
        let closed_seen = wait_for(Duration::from_secs(10), || {
            metric(
                &scrape_metrics(metrics),
                "tcpbridge_sessions_closed_total",
                &l,
            ) == 3.0
        });
        assert!(closed_seen, "three closes counted:\n{}", proxy.stderr());

        let s = scrape_metrics(metrics);
        let accepted = metric(&s, "tcpbridge_sessions_accepted_total", &l);
        let closed = metric(&s, "tcpbridge_sessions_closed_total", &l);
        let sessions = metric(&s, "tcpbridge_sessions", &l);
        assert_eq!(accepted, 5.0);
        assert_eq!(accepted, closed + sessions, "accepted = closed + live");
        assert_eq!(
            metric(
                &s,
                "tcpbridge_sessions",
                &[("listener", "forward"), ("phase", "relaying")]
            ),
            2.0
        );
        let reason = [("listener", "forward"), ("reason", "client-eof")];
        assert_eq!(metric(&s, "tcpbridge_sessions_closed_total", &reason), 3.0);
        for direction in ["to_upstream", "to_client"] {
            let d = [("listener", "forward"), ("direction", direction)];
            assert_eq!(
                metric(&s, "tcpbridge_bytes_total", &d),
                4000.0,
                "{direction}"
            );
        }
        assert_eq!(metric(&s, "tcpbridge_connect_failures_total", &l), 0.0);
        assert!(metric(&s, "tcpbridge_pool_buffers", &[]) > 0.0);
        assert!(metric(&s, "tcpbridge_memory_bound_bytes", &[]) > 0.0);

        // The `ss` view: one line per live session, with its addresses and bytes.
        let (status, body) = http_get(metrics, "/sessions");
        assert_eq!(status, 200);
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines.len(), 2, "{body}");
        let mine = live[0].local_addr().expect("local addr").to_string();
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("client={mine} ")))
            .unwrap_or_else(|| panic!("no line for client {mine}: {body}"));
        for field in [
            "listener=forward",
            &format!("upstream={}", up.addr),
            "phase=relaying",
            "to_upstream=500",
            "to_client=500",
        ] {
            assert!(line.contains(field), "{field} missing from {line}");
        }
        assert!(line.starts_with("id=") && line.contains(" age=") && line.contains(" idle="));

        let (status, body) = http_get(metrics, "/healthz");
        assert_eq!((status, body.as_str()), (200, "ok\n"));
        let (status, _) = http_get(metrics, "/nope");
        assert_eq!(status, 404);

        for c in live.drain(..) {
            c.shutdown(Shutdown::Write).expect("shutdown");
            let mut c = c;
            assert!(matches!(read_end(&mut c), End::Eof));
        }
        proxy.assert_quiescent(baseline, Duration::from_secs(10));
        let s = scrape_metrics(metrics);
        assert_eq!(metric(&s, "tcpbridge_sessions", &l), 0.0);
        assert_eq!(metric(&s, "tcpbridge_buffers_lent", &[]), 0.0);
        assert_eq!(metric(&s, "tcpbridge_timers_armed", &[]), 0.0);
    });
}

/// A refused upstream is counted as a connect failure and as a close reason.
#[test]
fn refused_upstream_is_counted() {
    watchdog(|| {
        let (proxy, metrics) = forward_with_metrics(closed_port());
        let mut c = connect(proxy.addr());
        assert!(
            matches!(read_end(&mut c), End::Eof | End::Reset),
            "the client is closed"
        );
        let counted = wait_for(Duration::from_secs(10), || {
            let s = scrape_metrics(metrics);
            let refused = [("listener", "forward"), ("kind", "refused")];
            metric(&s, "tcpbridge_connect_failures_total", &refused) == 1.0
                && metric(
                    &s,
                    "tcpbridge_sessions_closed_total",
                    &[("reason", "connect-refused")],
                ) == 1.0
        });
        assert!(counted, "{}", proxy.stderr());
    });
}

/// Garbage, an oversized head, a trickle and a crowd on the metrics port: each is
/// answered or closed within its deadline, and a session streaming meanwhile stays
/// byte-exact.
#[test]
fn bad_metrics_clients_do_not_disturb_sessions() {
    watchdog(|| {
        let up = echo_server();
        let (mut proxy, metrics) = forward_with_metrics(up.addr);
        let baseline = proxy.baseline();
        let session = std::thread::spawn({
            let addr = proxy.addr();
            move || exchange(connect(addr), 7, 8 * 1024 * 1024, 64 * 1024)
        });

        // Garbage gets 400 and a close.
        let mut g = connect(metrics);
        g.write_all(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
            .expect("send garbage");
        let mut reply = String::new();
        let _ = g.read_to_string(&mut reply);
        assert!(reply.starts_with("HTTP/1.1 400"), "{reply:?}");

        // An endless header gets 413 once it passes the head limit.
        let mut big = connect(metrics);
        let _ = big.write_all(b"GET /metrics HTTP/1.1\r\nX: ");
        let _ = big.write_all(&[b'a'; 8192]);
        let mut reply = String::new();
        let _ = big.read_to_string(&mut reply);
        assert!(reply.starts_with("HTTP/1.1 413"), "{reply:?}");

        // A trickle is cut at the absolute deadline (5 s), however it dribbles.
        let mut t = connect(metrics);
        let started = Instant::now();
        let mut cut = false;
        for b in b"GET /metrics HTTP/1.1\r\nX-Slow: "
            .iter()
            .cycle()
            .take(200)
        {
            if t.write_all(&[*b]).is_err() {
                cut = true;
                break;
            }
            let mut probe = [0u8; 1];
            t.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            match t.read(&mut probe) {
                Ok(0) | Err(_) if started.elapsed() > Duration::from_secs(4) => {
                    cut = true;
                    break;
                }
                _ => {}
            }
        }
        assert!(cut, "a trickling request was not cut");
        assert!(started.elapsed() < Duration::from_secs(20));

        // A crowd: 20 idle connections; the metrics endpoint serves 16 at once and
        // closes the rest, and answers again once they are gone.
        let crowd: Vec<TcpStream> = (0..20).map(|_| connect(metrics)).collect();
        let refused = wait_for(Duration::from_secs(10), || {
            crowd.iter().filter(|c| peer_closed(c)).count() >= 4
        });
        assert!(refused, "connections over the limit are closed");
        drop(crowd);

        let flow = session.join().expect("session thread");
        assert!(flow.send_error.is_none(), "{:?}", flow.send_error);
        assert_eq!(flow.received, flow.sent);
        assert_eq!(
            flow.received_hash, flow.sent_hash,
            "the session is byte-exact"
        );
        assert!(matches!(flow.end, End::Eof));
        let answered = wait_for(Duration::from_secs(10), || {
            metric(
                &scrape_metrics(metrics),
                "tcpbridge_metrics_rejected_total",
                &[],
            ) >= 5.0
        });
        assert!(answered, "rejections are counted");
        proxy.assert_quiescent(baseline, Duration::from_secs(10));
        proxy.assert_no_panic();
    });
}

/// True when the peer has closed this connection (read returns 0 or an error at once).
fn peer_closed(c: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    let _ = c.set_nonblocking(true);
    let closed = match (&*c).read(&mut probe) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    let _ = c.set_nonblocking(false);
    closed
}

/// Relay and agent report their idle tunnels per service, sessions through the tunnel,
/// and a wrong secret as an authentication failure on the relay.
#[test]
fn relay_and_agent_report_tunnels_and_auth_failures() {
    watchdog(|| {
        let up = echo_server();
        let metrics_flag = ["--metrics-listen", "127.0.0.1:0"];
        let mut chain = Chain::builder(up.addr)
            .pool(2)
            .relay(&metrics_flag)
            .agent(&metrics_flag)
            .start();
        let relay_metrics = chain.relay.field_addr("metrics");
        let agent_metrics = chain.agent.field_addr("metrics");
        let service = [("listener", "relay"), ("service", SERVICE)];
        let idle = wait_for(Duration::from_secs(10), || {
            metric(
                &scrape_metrics(relay_metrics),
                "tcpbridge_idle_tunnels",
                &service,
            ) == 2.0
        });
        assert!(idle, "the relay sees the agent's two idle tunnels");
        let agent_service = [("listener", "agent"), ("service", SERVICE)];
        assert_eq!(
            metric(
                &scrape_metrics(agent_metrics),
                "tcpbridge_idle_tunnels",
                &agent_service
            ),
            2.0
        );

        let mut c = connect(chain.public);
        echo_roundtrip(&mut c, b"through the tunnel");
        c.shutdown(Shutdown::Write).expect("shutdown");
        assert!(matches!(read_end(&mut c), End::Eof));
        let counted = wait_for(Duration::from_secs(10), || {
            let r = scrape_metrics(relay_metrics);
            let a = scrape_metrics(agent_metrics);
            let bytes = [("direction", "to_upstream")];
            metric(&r, "tcpbridge_sessions_closed_total", &[]) == 1.0
                && metric(&a, "tcpbridge_sessions_closed_total", &[]) == 1.0
                && metric(&r, "tcpbridge_sessions_accepted_total", &[]) == 1.0
                && metric(&a, "tcpbridge_sessions_accepted_total", &[]) == 1.0
                && metric(&a, "tcpbridge_bytes_total", &bytes) == 18.0
        });
        assert!(counted, "one session on each side, 18 bytes each way");

        // An agent with the wrong secret: the relay counts authentication failures.
        let bad = chain
            .dir
            .file("bad", format!("{OTHER_SECRET}\n").as_bytes());
        let _wrong = Proxy::launch(
            &agent_args(chain.tunnel, up.addr, &bad, &owned(&["--pool", "1"]))
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        let failed = wait_for(Duration::from_secs(10), || {
            metric(
                &scrape_metrics(relay_metrics),
                "tcpbridge_auth_failures_total",
                &[],
            ) >= 1.0
        });
        assert!(failed, "{}", chain.relay.stderr());
        chain.relay.assert_alive();
    });
}

/// Under a storm of refused connections with `--log-rate 5`, most close lines are
/// dropped and counted, and one summary line says how many.
#[test]
fn log_lines_are_rate_limited_and_counted() {
    watchdog(|| {
        let proxy = Proxy::forward(
            &[closed_port()],
            &["--log-rate", "5", "--metrics-listen", "127.0.0.1:0"],
        );
        let metrics = proxy.field_addr("metrics");
        for _ in 0..200 {
            let mut c = connect(proxy.addr());
            let _ = read_end(&mut c);
        }
        let dropped_seen = wait_for(Duration::from_secs(10), || {
            metric(
                &scrape_metrics(metrics),
                "tcpbridge_log_lines_dropped_total",
                &[],
            ) >= 100.0
        });
        assert!(dropped_seen, "dropped lines are counted");
        let logged = proxy.stderr().matches("close id=").count();
        assert!(
            logged <= 100,
            "{logged} close lines of 200 got through a 5/s limit"
        );
        // The summary comes with the next line that passes: keep closing sessions.
        let summarised = wait_for(Duration::from_secs(20), || {
            let mut c = connect(proxy.addr());
            let _ = read_end(&mut c);
            proxy.stderr().contains("log rate limit: ")
        });
        assert!(summarised, "{}", proxy.stderr());
    });
}

/// During the drain after SIGTERM the metrics endpoint still answers: `/healthz` says
/// 503 and `/metrics` shows the draining session, until the last session ends.
#[test]
fn healthz_turns_503_during_the_drain() {
    watchdog(|| {
        let up = echo_server();
        let (mut proxy, metrics) = forward_with_metrics(up.addr);
        let mut c = connect(proxy.addr());
        echo_roundtrip(&mut c, b"before the signal");
        assert_eq!(http_get(metrics, "/healthz"), (200, "ok\n".to_string()));
        proxy.send_signal(libc::SIGTERM);
        let stopping = wait_for(Duration::from_secs(10), || {
            http_get(metrics, "/healthz").0 == 503
        });
        assert!(stopping, "{}", proxy.stderr());
        let s = scrape_metrics(metrics);
        assert_eq!(metric(&s, "tcpbridge_stopping", &[]), 1.0);
        assert_eq!(metric(&s, "tcpbridge_sessions_draining", &[]), 1.0);
        echo_roundtrip(&mut c, b"during the drain");
        c.shutdown(Shutdown::Write).expect("shutdown");
        assert!(matches!(read_end(&mut c), End::Eof));
        assert!(proxy.wait_exit(Duration::from_secs(10)).success());
    });
}
