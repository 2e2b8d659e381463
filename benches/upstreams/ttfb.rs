//! Section 1: time to first byte and new-session rate, with and without warm
//! connections, against an upstream that is slow to set a connection up (30 ms) and
//! against a plain one (0 ms).
//!
//! For each setup delay one backend (`__backend D`) and three targets in front of it:
//! `direct` (no proxy), `warm-0` (`tcpbridge forward`, no warm connections: every
//! session dials) and `warm-16` (`--warm 16`, which covers the 8 concurrent clients).
//! Each workload runs one warm-up round and then the measured rounds, each visiting
//! the targets in turn (A B C, A B C...). Before each run of any target the bench
//! waits until a warm pool is full and then 50 ms more, so every run starts with
//! connections whose setup delay has passed.
//!
//! Besides the client's figures, each run reads the backend's counters (connections
//! accepted; connections that carried more than one session's byte: reused) and the
//! proxy's (`tcpbridge_upstream_warm_lent_total`: sessions served by a warm
//! connection; CPU time from `/proc`).

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use crate::children::{self, Stats};
use crate::load::{self, Outcome, Shape};
use crate::procs::{self, Process};
use crate::results::{num, range, ratio, Results};
use crate::stats::percentile;
use crate::{procfs, ttfb_syscalls, Ctx, Scale};

pub const SECTION: &str = "ttfb";
/// The backends' setup delays, in milliseconds.
pub const DELAYS_MS: [u64; 2] = [0, 30];
/// Warm connections per upstream address of the `warm-16` target.
pub const WARM: usize = 16;
/// Clients of the concurrent workload.
pub const CONCURRENCY: usize = 8;
/// Interval of the paced workload (100 sessions/s).
pub const PACE: Duration = Duration::from_millis(10);

const TARGETS: [&str; 3] = ["direct", "warm-0", "warm-16"];
const WORKLOADS: [(&str, Shape); 3] = [
    ("sequential", Shape::Sequential),
    ("paced", Shape::Paced(PACE)),
    ("c8", Shape::Concurrent(CONCURRENCY)),
];

/// A target under load, with a backend of its own (so that one target's pool refills
/// never land in another's counts).
struct Target {
    name: &'static str,
    addr: SocketAddr,
    /// The proxy and its metrics endpoint (none for `direct`).
    proxy: Option<(Process, SocketAddr)>,
    /// Its backend's `stats` address; the backend itself (dropped last).
    stats: SocketAddr,
    _backend: Process,
}

fn case(workload: &str, delay_ms: u64) -> String {
    format!("{workload}/{delay_ms}ms")
}

/// Runs the section, recording into `results`; what could not run goes to `notes`.
pub fn run(ctx: &Ctx, scale: &Scale, results: &mut Results, notes: &mut Vec<String>) {
    for delay in DELAYS_MS {
        if let Err(e) = run_delay(ctx, scale, delay, results, notes) {
            eprintln!("ttfb {delay} ms: {e}");
            notes.push(format!("setup delay {delay} ms: not measured: {e}"));
        }
    }
}

fn start_target(ctx: &Ctx, name: &'static str, delay: u64) -> Result<Target, String> {
    let tag = format!("ttfb-{name}-{delay}ms");
    let backend = procs::start_self(
        &["__backend", &delay.to_string()],
        &ctx.scratch,
        &format!("{tag}-backend"),
    )?;
    let upstream = backend.field("listen=")?;
    let stats = backend.field("stats=")?;
    let warm = match name {
        "direct" => {
            return Ok(Target {
                name,
                addr: upstream,
                proxy: None,
                stats,
                _backend: backend,
            })
        }
        "warm-0" => 0,
        _ => WARM,
    };
    let args: Vec<String> = [
        "forward",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream.to_string(),
        "--warm",
        &warm.to_string(),
        "--metrics-listen",
        "127.0.0.1:0",
        "-q",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let proxy = procs::start_tcpbridge(&ctx.tcpbridge, &args, &ctx.scratch, &tag)?;
    let addr = proxy.field("listen=")?;
    let metrics = proxy.field("metrics=")?;
    Ok(Target {
        name,
        addr,
        proxy: Some((proxy, metrics)),
        stats,
        _backend: backend,
    })
}

fn run_delay(
    ctx: &Ctx,
    scale: &Scale,
    delay: u64,
    results: &mut Results,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let mut targets = Vec::new();
    for name in TARGETS {
        let started = start_target(ctx, name, delay).and_then(|t| {
            // One session end to end before anything is measured.
            let check = load::run(t.addr, Shape::Sequential, Duration::from_secs(5), 1);
            match check.first_error {
                Some(e) if check.sessions == 0 => Err(format!("check session failed: {e}")),
                _ => Ok(t),
            }
        });
        match started {
            Ok(t) => targets.push(t),
            Err(e) => notes.push(format!("{name} with a {delay} ms setup delay: {e}")),
        }
    }
    let at_start: Vec<Stats> = targets
        .iter()
        .map(|t| children::stats(t.stats).unwrap_or_default())
        .collect();
    for (workload, shape) in WORKLOADS {
        let case = case(workload, delay);
        for round in 0..=scale.runs {
            for target in &mut targets {
                let run_for = if round == 0 { scale.warmup } else { scale.run };
                let figures = measure(target, shape, run_for, scale.max_sessions);
                if round > 0 {
                    record(results, &case, target.name, &figures);
                }
                if let Some(e) = &figures.outcome.first_error {
                    eprintln!(
                        "ttfb {case} {}: {} errors, first: {e}",
                        target.name, figures.outcome.errors
                    );
                }
            }
        }
        let p50 = |t: &str| results.median(SECTION, &case, t, "ttfb_p50_us");
        eprintln!(
            "ttfb {case:<16} p50 us: direct {} warm-0 {} warm-16 {}",
            p50("direct").map_or("-".into(), num),
            p50("warm-0").map_or("-".into(), num),
            p50("warm-16").map_or("-".into(), num)
        );
    }
    if delay == 0 && crate::perf::available() {
        for target in &targets {
            let Some((proxy, _)) = &target.proxy else {
                continue;
            };
            let (pid, addr) = (proxy.pid(), target.addr);
            if let Err(e) =
                ttfb_syscalls::count(ctx, SECTION, target.name, pid, addr, scale, results)
            {
                notes.push(format!("syscalls not counted: {e}"));
            }
        }
    }
    for (target, start) in targets.iter_mut().zip(at_start) {
        // The proxy closes its idle warm connections when it stops.
        if let Some((proxy, _)) = target.proxy.take() {
            drop(proxy);
            thread::sleep(Duration::from_millis(200));
        }
        let end = children::stats(target.stats).unwrap_or_default();
        notes.push(format!(
            "{} with a {delay} ms setup delay, its backend over the whole section: {} \
             connections accepted, {} served one session, {} carried more than one \
             session's byte (reused), {} closed without a byte (warm connections never lent)",
            target.name,
            end.accepted - start.accepted,
            end.served - start.served,
            end.reused - start.reused,
            end.unused - start.unused
        ));
    }
    Ok(())
}

/// One run's figures.
struct Figures {
    outcome: Outcome,
    backend: (Stats, Stats),
    lent: Option<f64>,
    cpu_us: Option<f64>,
}

fn measure(target: &mut Target, shape: Shape, run: Duration, max: u64) -> Figures {
    let stats_addr = target.stats;
    let metrics = target.proxy.as_ref().map(|(_, m)| *m);
    if let (Some(m), "warm-16") = (metrics, target.name) {
        procs::wait_metric(
            m,
            "tcpbridge_upstream_warm_idle",
            WARM as f64,
            Duration::from_secs(3),
        );
    }
    thread::sleep(Duration::from_millis(50));
    let pid = target.proxy.as_ref().map(|(p, _)| p.pid());
    let lent_family = "tcpbridge_upstream_warm_lent_total";
    let lent_before = metrics.map(|m| procs::metric(m, lent_family));
    let cpu_before = pid.and_then(procfs::cpu);
    let before = children::stats(stats_addr).unwrap_or_default();
    let outcome = load::run(target.addr, shape, run, max);
    let after = children::stats(stats_addr).unwrap_or_default();
    let cpu_after = pid.and_then(procfs::cpu);
    let lent_after = metrics.map(|m| procs::metric(m, lent_family));
    let cpu_us = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64() * 1e6),
        _ => None,
    };
    Figures {
        outcome,
        backend: (before, after),
        lent: lent_before.zip(lent_after).map(|(a, b)| b - a),
        cpu_us,
    }
}

fn record(results: &mut Results, case: &str, target: &str, f: &Figures) {
    let o = &f.outcome;
    let mut put = |figure: &str, value: f64| results.record(SECTION, case, target, figure, value);
    put("errors", o.errors as f64);
    if o.sessions == 0 {
        return;
    }
    let sessions = o.sessions as f64;
    put("sessions_per_s", o.per_second());
    put("ttfb_p50_us", percentile(&o.ttfb_us, 50.0) as f64);
    put("ttfb_p99_us", percentile(&o.ttfb_us, 99.0) as f64);
    let (before, after) = &f.backend;
    put(
        "backend_accepts_per_session",
        (after.accepted - before.accepted) as f64 / sessions,
    );
    put("backend_reused", (after.reused - before.reused) as f64);
    if let Some(lent) = f.lent {
        put("warm_lent_per_session", lent / sessions);
    }
    if let Some(cpu) = f.cpu_us {
        put("proxy_cpu_us_per_session", cpu / sessions);
    }
}

/// The section's markdown: one table of every figure, then the warm/no-warm ratios.
pub fn markdown(results: &Results, scale: &Scale) -> String {
    let mut md = format!(
        "## 1. Time to first byte and new-session rate\n\n\
         Session: connect, write 1 byte, read its echo, close; TTFB from `connect` to the \
         echoed byte. `sequential`: one client, back to back; `paced`: one client, a \
         session every {} ms; `c8`: {CONCURRENCY} clients. Runs of {} ms (at most {} \
         sessions), {} measured rounds after a warm-up round, interleaved. `x warm-0`: this \
         target's median over `warm-0`'s. `accepts/session`: connections the backend \
         accepted per session in the run; `lent/session`: sessions that got a warm \
         connection; `reused`: backend connections that carried more than one session.\n\n",
        PACE.as_millis(),
        scale.run.as_millis(),
        scale.max_sessions,
        scale.runs
    );
    md.push_str(
        "| upstream delay | workload | target | sessions/s | x warm-0 | TTFB p50 us | x warm-0 | \
         TTFB p99 us | proxy CPU us/session | accepts/session | lent/session | reused | errors |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for delay in DELAYS_MS {
        for (workload, _) in WORKLOADS {
            let case = case(workload, delay);
            for target in TARGETS {
                let s = |figure: &str| results.summary(SECTION, &case, target, figure);
                let m = |t: &str, figure: &str| results.median(SECTION, &case, t, figure);
                if s("errors").is_none() {
                    continue;
                }
                md.push_str(&format!(
                    "| {delay} ms | {workload} | {target} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    range(s("sessions_per_s")),
                    ratio(m(target, "sessions_per_s"), m("warm-0", "sessions_per_s")),
                    range(s("ttfb_p50_us")),
                    ratio(m(target, "ttfb_p50_us"), m("warm-0", "ttfb_p50_us")),
                    range(s("ttfb_p99_us")),
                    m(target, "proxy_cpu_us_per_session").map_or("-".into(), num),
                    m(target, "backend_accepts_per_session").map_or("-".into(), num),
                    m(target, "warm_lent_per_session").map_or("-".into(), num),
                    m(target, "backend_reused").map_or("-".into(), num),
                    m(target, "errors").map_or("-".into(), num),
                ));
            }
        }
    }
    md.push_str("\n**warm-16 over warm-0** (medians; sessions/s above 1 is faster, TTFB below 1 is faster):\n\n");
    md.push_str("| upstream delay | sequential sessions/s | sequential TTFB p50 | paced TTFB p50 | paced TTFB p99 | c8 sessions/s | c8 TTFB p50 |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for delay in DELAYS_MS {
        let r = |workload: &str, figure: &str| {
            let case = case(workload, delay);
            ratio(
                results.median(SECTION, &case, "warm-16", figure),
                results.median(SECTION, &case, "warm-0", figure),
            )
        };
        md.push_str(&format!(
            "| {delay} ms | {} | {} | {} | {} | {} | {} |\n",
            r("sequential", "sessions_per_s"),
            r("sequential", "ttfb_p50_us"),
            r("paced", "ttfb_p50_us"),
            r("paced", "ttfb_p99_us"),
            r("c8", "sessions_per_s"),
            r("c8", "ttfb_p50_us"),
        ));
    }
    md.push_str(&ttfb_syscalls::markdown(
        results,
        SECTION,
        &["warm-0", "warm-16"],
    ));
    md
}
