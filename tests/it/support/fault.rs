//! The fault-injection harness: [`FaultProxy`], one `tcpbridge run --config`
//! process with the scenario's listener (`main`), a `probe` forward listener
//! to an echo server of its own and the metrics endpoint, and
//! [`FaultProxy::assert_invariants`], the checks every fault scenario ends
//! with (fds, CLOSE-WAIT, live sessions and timers from `/metrics`, counters,
//! memory, idle CPU, a fresh echo, no panic). Also the kernel tools the
//! scenarios drive: iptables and `ss -K` inside a private network namespace
//! (strace is [`super::strace`]).

use super::{
    echo_once, echo_server, http_get, prom, wait_for, DataPath, Proxy, SecretDir, Upstream,
};
use std::net::SocketAddr;
use std::process::Command;
use std::thread;
use std::time::Duration;

/// Top-level (process-wide) keys of the configuration file: a scenario line
/// starting with one of them goes before the tables.
const PROCESS_KEYS: &[&str] = &[
    "buffer_size",
    "buffer_max",
    "max_sessions",
    "pool_budget",
    "splice",
    "max_pipes",
    "drain_timeout",
    "log_format",
    "log_rate",
];

/// Extra RSS allowed after a scenario, over the baseline, when the configured memory
/// bound is smaller.
const RSS_SLACK_KIB: u64 = 16 * 1024;

/// A proxy under fault injection. Dropping it kills the process (by PID).
pub struct FaultProxy {
    pub proxy: Proxy,
    /// The scenario's listener (`main.listen`, or the `ready_key` given).
    pub main: SocketAddr,
    /// A forward listener to an echo server owned here.
    pub probe: SocketAddr,
    /// The metrics endpoint.
    pub metrics: SocketAddr,
    pub dir: SecretDir,
    _echo: Upstream,
    base_fds: usize,
    base_rss_kib: u64,
}

impl FaultProxy {
    /// `main` is a forward listener to `upstreams`, with `lines` (TOML
    /// `key = value`) as its options. Lines with a process-wide key
    /// (`buffer_size`, `buffer_max`, `max_sessions`, `pool_budget`, `splice`,
    /// `max_pipes`, `drain_timeout`, `log_format`, `log_rate`) go to the top
    /// level instead, so they apply to `probe` too (`max_sessions` there is
    /// the process-wide limit). The current [`DataPath`], if any, is the
    /// top-level `splice` unless a line sets it.
    pub fn forward(upstreams: &[SocketAddr], lines: &[&str]) -> FaultProxy {
        let ups: Vec<String> = upstreams.iter().map(|u| format!("\"{u}\"")).collect();
        let mut table = vec![
            "listen = \"127.0.0.1:0\"".to_string(),
            format!("upstream = [{}]", ups.join(", ")),
        ];
        table.extend(lines.iter().map(|l| l.to_string()));
        Self::start(SecretDir::new(), "forward", &table, "main.listen")
    }

    /// `main` is a `[[KIND]]` table with `lines` (process-wide keys go to the
    /// top level); its address is the READY field `ready_key`. `dir` holds
    /// the configuration and any file the lines name (e.g. a secret).
    pub fn start(dir: SecretDir, kind: &str, lines: &[String], ready_key: &str) -> FaultProxy {
        let echo = echo_server();
        let (top, table): (Vec<&String>, Vec<&String>) = lines.iter().partition(|l| {
            let key = l.split('=').next().unwrap_or("").trim();
            PROCESS_KEYS.contains(&key)
        });
        let mut text = String::from("metrics_listen = \"127.0.0.1:0\"\n");
        let own_splice = top
            .iter()
            .any(|l| l.split('=').next().unwrap_or("").trim() == "splice");
        if let (Some(path), false) = (DataPath::current(), own_splice) {
            text.push_str(&format!("splice = \"{}\"\n", path.mode()));
        }
        for l in top {
            text.push_str(&format!("{l}\n"));
        }
        text.push_str(&format!("\n[[{kind}]]\nname = \"main\"\n"));
        for l in table {
            text.push_str(&format!("{l}\n"));
        }
        text.push_str(&format!(
            "\n[[forward]]\nname = \"probe\"\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\n",
            echo.addr
        ));
        let config = dir.file("fault.toml", text.as_bytes());
        let path = config.to_str().expect("utf-8 temp path").to_string();
        let proxy = Proxy::spawn(&["run", "--config", &path]);
        let main = proxy.field_addr(ready_key);
        let probe = proxy.field_addr("probe.listen");
        let metrics = proxy.field_addr("metrics");
        echo_once(probe);
        scrape_metrics(metrics);
        let base_fds = proxy.baseline();
        let base_rss_kib = proxy.vm_rss_kib();
        FaultProxy {
            proxy,
            main,
            probe,
            metrics,
            dir,
            _echo: echo,
            base_fds,
            base_rss_kib,
        }
    }

    /// VmRSS after the warm-up, in KiB.
    pub fn base_rss_kib(&self) -> u64 {
        self.base_rss_kib
    }

    pub fn pid(&self) -> u32 {
        self.proxy.pid
    }

    /// Lowers the soft open-files limit so that exactly `free` descriptors are
    /// free, once the proxy is back at its baseline: the connection of a scrape
    /// that just returned may still be open in the proxy for a moment, and would
    /// free one more descriptor later.
    pub fn leave_free_fds(&self, free: usize) {
        let p = &self.proxy;
        let settled = wait_for(Duration::from_secs(5), || {
            p.steady_fds() == self.base_fds && p.session_sockets().is_empty()
        });
        assert!(
            settled,
            "fds {} without kernel pipes not back at the baseline {} before lowering the limit\n{}",
            p.steady_fds(),
            self.base_fds,
            p.dump()
        );
        // Spare kernel pipes closed later would free descriptors under the limit.
        p.assert_pipes_closed();
        p.set_soft_nofile(p.limit_leaving_free_fds(free));
    }

    /// The current `/metrics` samples.
    pub fn scrape(&self) -> Vec<prom::Sample> {
        scrape_metrics(self.metrics)
    }

    /// Sum of the series of `name` whose labels include `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        prom::sum(&self.scrape(), name, labels)
    }

    /// Sessions closed on `main` with `reason` so far.
    pub fn closed(&self, reason: &str) -> f64 {
        self.metric(
            "tcpbridge_sessions_closed_total",
            &[("listener", "main"), ("reason", reason)],
        )
    }

    /// Waits up to `within` until `main` closed `n` sessions with `reason`;
    /// panics with the close counters and stderr otherwise.
    pub fn expect_closed(&self, reason: &str, n: f64, within: Duration) {
        if !wait_for(within, || self.closed(reason) >= n) {
            let closes: Vec<String> = self
                .scrape()
                .into_iter()
                .filter(|s| s.name == "tcpbridge_sessions_closed_total")
                .map(|s| format!("{:?}={}", s.labels, s.value))
                .collect();
            panic!(
                "main closed {} sessions with reason={reason} within {within:?}, want {n}; closes {closes:?}\nstderr:\n{}",
                self.closed(reason),
                self.proxy.stderr()
            );
        }
    }

    /// The RELIABILITY.md §4.0 invariants, each part polled for up to
    /// `within`: alive, a fresh echo through `probe`, no live session,
    /// waiting client, lent buffer or kernel pipe, armed timer or tunnel
    /// handshake, accepted equals closed, fds (kernel pipes aside) back at the
    /// baseline with no session socket (so no CLOSE-WAIT) owned, then no kernel
    /// pipe left at all (spares trimmed, [`Proxy::assert_pipes_closed`]), RSS
    /// within baseline + the memory bound (at least 16 MiB), under 5% of a
    /// core over 500 ms idle, and no `panicked` on stderr.
    pub fn assert_invariants(&mut self, within: Duration) {
        self.proxy.assert_alive();
        echo_once(self.probe);
        let mut last = String::new();
        let quiet = wait_for(within, || {
            match quiet_metrics(&scrape_metrics(self.metrics)) {
                Ok(()) => true,
                Err(why) => {
                    last = why;
                    false
                }
            }
        });
        assert!(
            quiet,
            "metrics not quiescent after {within:?}: {last}\n{}",
            self.proxy.dump()
        );
        let base = self.base_fds;
        let p = &self.proxy;
        let settled = wait_for(within, || {
            p.steady_fds() == base && p.session_sockets().is_empty()
        });
        assert!(
            settled,
            "proxy not back at its baseline after {within:?}: fds {} without kernel pipes (baseline {base}), session sockets {}, CLOSE-WAIT {}\n{}",
            p.steady_fds(),
            p.session_sockets().len(),
            p.close_wait_owned().len(),
            p.dump()
        );
        p.assert_pipes_closed();
        // Freed ring buffers stay with the allocator after a large scenario, so the
        // bound is the configured one (pool budget plus session state), at least 16 MiB.
        let bound_kib = (self.metric("tcpbridge_memory_bound_bytes", &[])
            + self.metric("tcpbridge_sessions_max", &[]) * 512.0) as u64
            / 1024;
        let slack = RSS_SLACK_KIB.max(bound_kib);
        let rss = p.vm_rss_kib();
        assert!(
            rss <= self.base_rss_kib + slack,
            "VmRSS {rss} KiB > baseline {} KiB + {slack} KiB",
            self.base_rss_kib
        );
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let window = Duration::from_millis(500);
        let t0 = p.cpu_ticks();
        thread::sleep(window); // a measurement window, not a synchronisation
        let used_ms = (p.cpu_ticks() - t0) * 1000 / hz;
        assert!(
            used_ms * 20 <= window.as_millis() as u64,
            "the idle proxy used {used_ms} ms of CPU in {window:?} (> 5%)"
        );
        self.proxy.assert_alive();
    }
}

/// Why the samples do not show a quiet process, if they do not.
fn quiet_metrics(s: &[prom::Sample]) -> Result<(), String> {
    for (name, label) in [
        ("tcpbridge_sessions", "live sessions"),
        ("tcpbridge_waiting_clients", "waiting clients"),
        ("tcpbridge_tunnel_handshakes", "tunnel handshakes"),
        ("tcpbridge_buffers_lent", "lent buffers"),
        ("tcpbridge_pipes_lent", "lent kernel pipes"),
        ("tcpbridge_timers_armed", "armed timers"),
    ] {
        let v = prom::sum(s, name, &[]);
        if v != 0.0 {
            return Err(format!("{name} = {v} ({label})"));
        }
    }
    let accepted = prom::sum(s, "tcpbridge_sessions_accepted_total", &[]);
    let closed = prom::sum(s, "tcpbridge_sessions_closed_total", &[]);
    if accepted != closed {
        return Err(format!("accepted {accepted} != closed {closed}"));
    }
    Ok(())
}

/// `GET /metrics` from `addr`, parsed.
pub fn scrape_metrics(addr: SocketAddr) -> Vec<prom::Sample> {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "/metrics answered {status}: {body}");
    prom::parse(&body).unwrap_or_else(|e| panic!("/metrics is not Prometheus text: {e}\n{body}"))
}

/// Whether the environment demands that capability-gated tests fail.
pub fn in_ci() -> bool {
    std::env::var("CI").map(|v| v == "true").unwrap_or(false)
}

/// Runs `program args` in the calling thread's network namespace. Returns
/// false (printing a skip line) when it cannot run or fails and `CI` is not
/// `true`; panics when `CI=true`.
pub fn tool(program: &str, args: &[&str]) -> bool {
    let why = match Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => return true,
        Ok(out) => format!(
            "`{program} {}` exited with {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("cannot run {program}: {e}"),
    };
    assert!(!in_ci(), "required tool failed: {why}");
    eprintln!("SKIP: {why}; set CI=true to fail instead");
    false
}

/// `iptables ARGS` in the calling thread's (private) network namespace.
pub fn iptables(args: &[&str]) -> bool {
    tool("iptables", args)
}

/// `ss -K -tn FILTER`: destroys the matching sockets (their owners get
/// ECONNABORTED, their peers an RST) in the calling thread's namespace.
pub fn ss_kill(filter: &str) -> bool {
    let mut args = vec!["-K", "-tn"];
    args.extend(filter.split_whitespace());
    tool("ss", &args)
}
