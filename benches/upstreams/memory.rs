//! Section 3: what a warm connection costs in memory, in the proxy and in the kernel.
//!
//! One `__listeners 50 hold` child holds the upstreams (it keeps every accepted
//! connection open until its peer closes it). Each round starts tcpbridge with the 50
//! upstreams twice, one after the other: `--warm 0` and `--warm 20` (1,000 warm
//! connections). With `--warm 20` the bench polls `tcpbridge_upstream_warm_idle` (summed
//! over the upstreams) until it reaches 1,000 (at most 20 s); then, after 0.5 s, it reads
//! the proxy's `VmRSS` and the kernel's socket figures, and compares them with the
//! `--warm 0` process's. Kernel figures are deltas from just before each process
//! started, and both ends of every connection are on this host: they are per
//! connection **pair** (the proxy's socket and the upstream's). `/proc/net/sockstat`
//! counts this network namespace, `/proc/slabinfo` the whole machine (other processes'
//! activity shows in it, above all in `dentry` and `filp`).

use std::thread;
use std::time::Duration;

use crate::children;
use crate::procfs::{self, Kernel, SLABS};
use crate::procs::{self, Process};
use crate::results::{num, range, Results};
use crate::{Ctx, Scale};

pub const SECTION: &str = "memory";
/// Upstream addresses.
pub const UPSTREAMS: usize = 50;
/// Warm connections per address.
pub const WARM: usize = 20;
/// How long the pool may take to fill.
const FILL_WITHIN: Duration = Duration::from_secs(20);
const CASE: &str = "50 upstreams";

/// Runs the section, recording into `results`; notes go to `notes`.
pub fn run(ctx: &Ctx, scale: &Scale, results: &mut Results, notes: &mut Vec<String>) {
    if let Err(e) = run_inner(ctx, scale, results, notes) {
        eprintln!("memory: {e}");
        notes.push(format!("not measured: {e}"));
    }
}

/// One process's figures, after its pool filled.
struct Sample {
    rss_kib: u64,
    warm_idle: f64,
    kernel: (Kernel, Kernel),
}

fn start(ctx: &Ctx, upstreams: &[std::net::SocketAddr], warm: usize) -> Result<Process, String> {
    let mut args: Vec<String> = ["forward", "--listen", "127.0.0.1:0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for addr in upstreams {
        args.push("--upstream".into());
        args.push(addr.to_string());
    }
    for extra in [
        "--warm",
        &warm.to_string(),
        "--metrics-listen",
        "127.0.0.1:0",
        "-q",
    ] {
        args.push(extra.to_string());
    }
    procs::start_tcpbridge(
        &ctx.tcpbridge,
        &args,
        &ctx.scratch,
        &format!("memory-warm-{warm}"),
    )
}

fn sample(
    ctx: &Ctx,
    upstreams: &[std::net::SocketAddr],
    warm: usize,
    notes: &mut Vec<String>,
) -> Result<Sample, String> {
    let before = procfs::kernel();
    let proxy = start(ctx, upstreams, warm)?;
    let metrics = proxy.field("metrics=")?;
    let target = (warm * upstreams.len()) as f64;
    let (warm_idle, took) =
        procs::wait_metric(metrics, "tcpbridge_upstream_warm_idle", target, FILL_WITHIN);
    if warm > 0 {
        eprintln!(
            "memory: --warm {warm}: {warm_idle:.0} of {target:.0} warm connections after {:.2} s",
            took.as_secs_f64()
        );
        if warm_idle < target {
            notes.push(format!(
                "--warm {warm}: only {warm_idle:.0} of {target:.0} warm connections after {:?}",
                FILL_WITHIN
            ));
        }
    }
    thread::sleep(Duration::from_millis(500));
    let rss_kib = procfs::rss_kib(proxy.pid()).ok_or("proxy gone")?;
    let after = procfs::kernel();
    drop(proxy);
    Ok(Sample {
        rss_kib,
        warm_idle,
        kernel: (before, after),
    })
}

fn run_inner(
    ctx: &Ctx,
    scale: &Scale,
    results: &mut Results,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let listeners = procs::start_self(
        &["__listeners", &UPSTREAMS.to_string(), "hold"],
        &ctx.scratch,
        "memory-listeners",
    )?;
    let upstreams = children::ports_field(&listeners.ready);
    if upstreams.len() != UPSTREAMS {
        return Err(format!(
            "{} upstream ports announced, not {UPSTREAMS}",
            upstreams.len()
        ));
    }
    let stats = listeners.field("stats=")?;
    for round in 0..scale.memory_rounds {
        let mut samples = Vec::new();
        for warm in [0, WARM] {
            // The last process's connections are closed by now.
            thread::sleep(Duration::from_millis(500));
            samples.push(sample(ctx, &upstreams, warm, notes)?);
        }
        let (cold, hot) = (&samples[0], &samples[1]);
        for (warm, s) in [(0, cold), (WARM, hot)] {
            let target = format!("--warm {warm}");
            let (k0, k1) = s.kernel;
            results.record(SECTION, CASE, &target, "rss_kib", s.rss_kib as f64);
            results.record(SECTION, CASE, &target, "warm_idle", s.warm_idle);
            results.record(
                SECTION,
                CASE,
                &target,
                "tcp_sockets_delta",
                (k1.tcp.alloc - k0.tcp.alloc) as f64,
            );
            results.record(
                SECTION,
                CASE,
                &target,
                "tcp_mem_pages_delta",
                (k1.tcp.mem_pages - k0.tcp.mem_pages) as f64,
            );
        }
        let conns = hot.warm_idle.max(1.0);
        let delta = |f: fn(&Sample) -> f64| f(hot) - f(cold);
        let per = "per warm connection";
        results.record(
            SECTION,
            CASE,
            per,
            "user_bytes",
            delta(|s| s.rss_kib as f64) * 1024.0 / conns,
        );
        results.record(
            SECTION,
            CASE,
            per,
            "tcp_sockets",
            delta(|s| (s.kernel.1.tcp.alloc - s.kernel.0.tcp.alloc) as f64) / conns,
        );
        results.record(
            SECTION,
            CASE,
            per,
            "tcp_mem_pages",
            delta(|s| (s.kernel.1.tcp.mem_pages - s.kernel.0.tcp.mem_pages) as f64) / conns,
        );
        let slab = |s: &Sample, i: usize| -> Option<f64> {
            Some((s.kernel.1.slabs?[i] - s.kernel.0.slabs?[i]) as f64)
        };
        let mut slab_total = 0.0;
        for (i, name) in SLABS.iter().enumerate() {
            if let (Some(h), Some(c)) = (slab(hot, i), slab(cold, i)) {
                let bytes = (h - c) / conns;
                slab_total += bytes;
                results.record(SECTION, CASE, per, &format!("slab_bytes:{name}"), bytes);
            }
        }
        if hot.kernel.0.slabs.is_some() {
            results.record(SECTION, CASE, per, "slab_bytes", slab_total);
        }
        eprintln!(
            "memory round {}: RSS {} KiB (warm 0) / {} KiB (warm {WARM}, {} idle)",
            round + 1,
            cold.rss_kib,
            hot.rss_kib,
            hot.warm_idle
        );
    }
    if procfs::slab_bytes().is_none() {
        notes.push("/proc/slabinfo is not readable (root only): slab figures left out".into());
    }
    let held = children::stats(stats).map(|s| s.open).unwrap_or(0);
    notes.push(format!(
        "upstream connections still open at the end (should be 0): {held}"
    ));
    Ok(())
}

/// The section's markdown.
pub fn markdown(results: &Results, scale: &Scale) -> String {
    let s = |target: &str, figure: &str| results.summary(SECTION, CASE, target, figure);
    let mut md = format!(
        "## 3. Memory per warm connection\n\n\
         tcpbridge with {UPSTREAMS} upstreams, `--warm 0` and `--warm {WARM}` ({} warm \
         connections), {} round(s); figures read once `tcpbridge_upstream_warm_idle` \
         reached its target, 0.5 s later. Kernel deltas are from just before each process \
         started; both ends of each connection are on this host, so the kernel's figures \
         are per connection **pair**.\n\n",
        UPSTREAMS * WARM,
        scale.memory_rounds
    );
    md.push_str("| process | VmRSS KiB | warm idle | TCP sockets (sockstat alloc) delta | TCP buffer pages (sockstat mem) delta |\n|---|---:|---:|---:|---:|\n");
    for warm in [0, WARM] {
        let target = format!("--warm {warm}");
        md.push_str(&format!(
            "| {target} | {} | {} | {} | {} |\n",
            range(s(&target, "rss_kib")),
            range(s(&target, "warm_idle")),
            range(s(&target, "tcp_sockets_delta")),
            range(s(&target, "tcp_mem_pages_delta")),
        ));
    }
    let per = "per warm connection";
    md.push_str(&format!(
        "\n| per warm connection | value |\n|---|---:|\n\
         | proxy user space (VmRSS difference / connections), bytes | {} |\n\
         | kernel TCP sockets (both ends) | {} |\n\
         | kernel socket buffer pages (sockstat `mem`, both ends) | {} |\n",
        range(s(per, "user_bytes")),
        range(s(per, "tcp_sockets")),
        range(s(per, "tcp_mem_pages")),
    ));
    if let Some(total) = s(per, "slab_bytes") {
        let parts: Vec<String> = SLABS
            .iter()
            .filter_map(|name| {
                Some(format!(
                    "{name} {}",
                    num(s(per, &format!("slab_bytes:{name}"))?.median)
                ))
            })
            .collect();
        md.push_str(&format!(
            "| kernel slab bytes per connection pair ({}) | {} |\n",
            parts.join(", "),
            range(Some(total))
        ));
    }
    md
}
