//! Upstream groups, warm connections: a slow upstream's setup is hidden, an upstream that
//! closes idle connections never fails a client, a banner reaches each client exactly
//! once, no connection is lent twice (accepted = sessions + warm ones), and a reload to
//! `warm = 0` gives every descriptor back.

use crate::support::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A metric of `metrics` summed over upstreams.
fn metric(metrics: SocketAddr, name: &str) -> f64 {
    prom::sum(&scrape_metrics(metrics), name, &[])
}

fn proxy_for(up: SocketAddr, extra: &[&str]) -> Proxy {
    let mut args = forward_args(&[up], extra);
    args.extend(["--metrics-listen".into(), "127.0.0.1:0".into()]);
    Proxy::spawn_strings(&args)
}

/// Time from writing one byte to reading its echo, on a fresh session.
fn first_byte(proxy: SocketAddr) -> Duration {
    let mut c = connect(proxy);
    let start = Instant::now();
    echo_roundtrip(&mut c, b"x");
    start.elapsed()
}

#[test]
fn warm_connections_hide_a_slow_upstream_setup() {
    watchdog(|| {
        let ready = Arc::new(AtomicUsize::new(0));
        let up = scripted_server({
            let ready = Arc::clone(&ready);
            move |s| {
                std::thread::sleep(Duration::from_millis(500));
                ready.fetch_add(1, Ordering::SeqCst);
                echo_conn(s)
            }
        });
        let cold = proxy_for(up.addr, &[]);
        let took = first_byte(cold.addr());
        assert!(
            took >= Duration::from_millis(500),
            "without --warm the setup shows: {took:?}"
        );
        drop(cold);
        let warm = proxy_for(up.addr, &["--warm", "4"]);
        assert!(
            wait_for(Duration::from_secs(10), || ready.load(Ordering::SeqCst)
                >= 5),
            "four warm connections past their setup"
        );
        let took = first_byte(warm.addr());
        assert!(
            took < Duration::from_millis(250),
            "with --warm 4 the first byte took {took:?}"
        );
    });
}

#[test]
fn an_upstream_closing_idle_connections_never_fails_a_client() {
    watchdog(|| {
        // Serves one echo round, or closes after 1 s of silence.
        let up = scripted_server(|mut s| {
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let mut b = [0u8; 64];
            if let Ok(n @ 1..) = s.read(&mut b) {
                let _ = s.write_all(&b[..n]);
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                echo_conn(s);
            }
        });
        let mut proxy = proxy_for(up.addr, &["--warm", "8"]);
        let metrics = proxy.field_addr("metrics");
        let start = Instant::now();
        let mut failed = 0;
        for n in 0..16 {
            // One every 250 ms with 8 warm: each idles about 2 s, past the upstream's
            // 1 s, so most are closed by it while idle and replaced.
            let due = start + Duration::from_millis(250 * n);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            failed += usize::from(!served(proxy.addr()));
        }
        assert_eq!(
            failed,
            0,
            "clients failed; /upstreams: {:?}",
            upstream_lines(metrics)
        );
        assert!(
            metric(metrics, "tcpbridge_upstream_warm_failed_total") >= 1.0,
            "idle ones closed by the upstream were seen"
        );
        proxy.assert_alive();
    });
}

#[test]
fn a_banner_reaches_each_client_once_and_no_connection_is_lent_twice() {
    watchdog(|| {
        let up = scripted_server(|mut s| {
            let _ = s.write_all(b"HELLO\n");
            echo_conn(s)
        });
        let mut proxy = proxy_for(up.addr, &["--warm", "3"]);
        let metrics = proxy.field_addr("metrics");
        assert!(wait_for(Duration::from_secs(5), || metric(
            metrics,
            "tcpbridge_upstream_warm_idle"
        ) >= 3.0));
        for _ in 0..20 {
            let mut c = with_timeouts(TcpStream::connect(proxy.addr()).expect("connect"));
            let banner = read_exact_n(&mut c, 6, "banner");
            assert_eq!(banner, b"HELLO\n");
            echo_roundtrip(&mut c, b"ping");
            c.shutdown(std::net::Shutdown::Write).expect("shutdown");
            assert!(
                matches!(read_end(&mut c), End::Eof),
                "nothing after the echo: the banner came once"
            );
        }
        let accounted = || {
            let m = scrape_metrics(metrics);
            let sum = |n| prom::sum(&m, n, &[]) as usize;
            20 + sum("tcpbridge_upstream_warm_idle")
                + sum("tcpbridge_upstream_warm_expired_total")
                + sum("tcpbridge_upstream_warm_failed_total")
        };
        // Refills may be in flight: wait until they are idle.
        assert!(
            wait_for(Duration::from_secs(5), || up.accepted() == accounted()),
            "accepted {} != 20 sessions + warm idle/expired/failed {}",
            up.accepted(),
            accounted()
        );
        assert_eq!(
            metric(metrics, "tcpbridge_upstream_warm_lent_total"),
            20.0,
            "each session one warm connection"
        );
        proxy.assert_alive();
    });
}

#[test]
fn a_reload_to_no_warm_connections_gives_every_descriptor_back() {
    watchdog(|| {
        let up = echo_server();
        let dir = SecretDir::new();
        let table = |warm: usize| {
            format!(
                "metrics_listen = \"127.0.0.1:0\"\n[[forward]]\nname = \"web\"\n\
                 listen = \"127.0.0.1:0\"\nupstream = \"{}\"\nwarm = {warm}\n",
                up.addr
            )
        };
        let file = dir.file("t.toml", table(0).as_bytes());
        let path = file.to_str().expect("utf-8").to_string();
        let mut proxy = Proxy::spawn(&["run", "--config", &path]);
        let metrics = proxy.field_addr("metrics");
        let listen = proxy.field_addr("web.listen");
        let baseline = proxy.baseline();
        let reload = |proxy: &mut Proxy, warm| {
            dir.file("t.toml", table(warm).as_bytes());
            proxy.send_signal(libc::SIGHUP);
            assert!(proxy
                .wait_stdout("RELOADED ", Duration::from_secs(10))
                .is_some());
        };
        reload(&mut proxy, 4);
        assert!(wait_for(Duration::from_secs(5), || metric(
            metrics,
            "tcpbridge_upstream_warm_idle"
        ) == 4.0));
        assert_eq!(failures(listen, 5), 0);
        reload(&mut proxy, 0);
        assert!(wait_for(Duration::from_secs(5), || metric(
            metrics,
            "tcpbridge_upstream_warm_idle"
        ) == 0.0));
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
    });
}

/// An agent's service is a group too: the agent keeps warm connections to it, each
/// session through the tunnel gets one, and none is lent twice.
#[test]
fn an_agent_keeps_warm_connections_to_its_service() {
    watchdog(|| {
        let service = echo_server();
        let chain = Chain::builder(service.addr)
            .agent(&["--warm", "3", "--metrics-listen", "127.0.0.1:0"])
            .start();
        let metrics = chain.agent.field_addr("metrics");
        assert!(
            wait_for(Duration::from_secs(5), || service.accepted() >= 3),
            "warm connections to the service before any client"
        );
        assert_eq!(failures(chain.public, 10), 0, "sessions through the tunnel");
        let lines = upstream_lines(metrics);
        let lent: usize = lines
            .iter()
            .flat_map(|f| f.iter().filter(|(k, _)| k == "warm_lent"))
            .filter_map(|(_, v)| v.parse::<usize>().ok())
            .sum();
        assert_eq!(lent, 10, "each session one warm connection: {lines:?}");
        assert!(
            wait_for(Duration::from_secs(5), || service.accepted() == 10 + 3),
            "the service accepted {} (want 10 sessions + 3 idle)",
            service.accepted()
        );
    });
}
