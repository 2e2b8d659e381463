//! Section 2: what active health checks cost at 1,000 upstreams checked every second.
//!
//! One `__listeners 1000 close` child holds the upstreams (1,000 listening sockets on
//! 127.0.0.1 that accept and close; its accept count is the number of checks). Two
//! tcpbridge processes run from configuration files with the same forward listener
//! and the same 1,000 upstreams, one with `health_check = "tcp"` and
//! `health_interval = "1s"`, one without checks; both run side by side, so every window
//! measures both under the same conditions. After the checks have had time to spread,
//! each window reads both proxies' CPU time (`utime + stime`) and the accept count.
//! Then, when perf is installed, one more window of the same length counts the
//! checking proxy's syscalls by name (not the CPU windows: tracing costs the traced
//! process a little per syscall).

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::thread;
use std::time::Instant;

use crate::children;
use crate::perf;
use crate::procs::{self, Process};
use crate::results::{num, range, Results};
use crate::{procfs, Ctx, Scale};

pub const SECTION: &str = "health";
/// Upstreams of the listener.
pub const UPSTREAMS: usize = 1000;
/// Their health-check interval.
pub const INTERVAL: &str = "1s";
/// Syscalls listed by name in the report.
const TOP_SYSCALLS: usize = 8;

/// The configuration file: one forward listener, [`UPSTREAMS`] upstreams, checks or not.
fn config(upstreams: &[SocketAddr], checks: bool) -> String {
    let mut toml = String::from("metrics_listen = \"127.0.0.1:0\"\n\n[[forward]]\nname = \"hc\"\n");
    toml.push_str("listen = \"127.0.0.1:0\"\nupstream = [\n");
    for addr in upstreams {
        let _ = writeln!(toml, "  \"{addr}\",");
    }
    toml.push_str("]\n");
    if checks {
        let _ = writeln!(
            toml,
            "health_check = \"tcp\"\nhealth_interval = \"{INTERVAL}\""
        );
    }
    toml
}

fn start_proxy(
    ctx: &Ctx,
    upstreams: &[SocketAddr],
    checks: bool,
) -> Result<(Process, SocketAddr), String> {
    let tag = if checks { "health-on" } else { "health-off" };
    let path = ctx.scratch.join(format!("{tag}.toml"));
    fs::write(&path, config(upstreams, checks)).map_err(|e| format!("{}: {e}", path.display()))?;
    let args = vec![
        "run".to_string(),
        "--config".to_string(),
        path.display().to_string(),
        "-q".to_string(),
    ];
    let proxy = procs::start_tcpbridge(&ctx.tcpbridge, &args, &ctx.scratch, tag)?;
    let metrics = proxy.field("metrics=")?;
    Ok((proxy, metrics))
}

/// Runs the section, recording into `results`; notes go to `notes`.
pub fn run(ctx: &Ctx, scale: &Scale, results: &mut Results, notes: &mut Vec<String>) {
    if let Err(e) = run_inner(ctx, scale, results, notes) {
        eprintln!("health: {e}");
        notes.push(format!("not measured: {e}"));
    }
}

fn run_inner(
    ctx: &Ctx,
    scale: &Scale,
    results: &mut Results,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let listeners = procs::start_self(
        &["__listeners", &UPSTREAMS.to_string(), "close"],
        &ctx.scratch,
        "health-listeners",
    )?;
    let stats = listeners.field("stats=")?;
    let upstreams = children::ports_field(&listeners.ready);
    if upstreams.len() != UPSTREAMS {
        return Err(format!(
            "{} upstream ports announced, not {UPSTREAMS}",
            upstreams.len()
        ));
    }
    let (on, on_metrics) = start_proxy(ctx, &upstreams, true)?;
    let (off, _) = start_proxy(ctx, &upstreams, false)?;
    eprintln!(
        "health: checks spreading for {} s",
        scale.health_settle.as_secs()
    );
    thread::sleep(scale.health_settle);
    let pids = [on.pid(), off.pid(), listeners.pid()];
    for window in 0..scale.health_windows {
        let cpu0 = pids.map(procfs::cpu);
        let accepted0 = children::stats(stats)
            .map_err(|e| format!("listener stats: {e}"))?
            .accepted;
        let started = Instant::now();
        thread::sleep(scale.health_window);
        let accepted1 = children::stats(stats)
            .map_err(|e| format!("listener stats: {e}"))?
            .accepted;
        let elapsed = started.elapsed().as_secs_f64();
        let cpu1 = pids.map(procfs::cpu);
        let cpu: Vec<f64> = cpu0
            .iter()
            .zip(&cpu1)
            .map(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => b.saturating_sub(*a).as_secs_f64(),
                _ => f64::NAN,
            })
            .collect();
        let checks = (accepted1 - accepted0) as f64;
        let mut put = |target: &str, figure: &str, value: f64| {
            results.record(SECTION, "1000 upstreams, 1 s", target, figure, value)
        };
        put("checks", "cpu_pct", cpu[0] / elapsed * 100.0);
        put("no checks", "cpu_pct", cpu[1] / elapsed * 100.0);
        put(
            "upstreams (listener child)",
            "cpu_pct",
            cpu[2] / elapsed * 100.0,
        );
        put("checks", "checks_per_s", checks / elapsed);
        if checks > 0.0 {
            put("checks", "cpu_us_per_check", cpu[0] * 1e6 / checks);
            put(
                "checks",
                "net_cpu_us_per_check",
                (cpu[0] - cpu[1]) * 1e6 / checks,
            );
        }
        eprintln!(
            "health window {}: {:.0} checks/s, proxy CPU {:.2}% with checks, {:.2}% without",
            window + 1,
            checks / elapsed,
            cpu[0] / elapsed * 100.0,
            cpu[1] / elapsed * 100.0
        );
    }
    if perf::available() {
        match count_syscalls(ctx, scale, on.pid(), stats, results) {
            Ok(()) => {}
            Err(e) => notes.push(format!("syscalls not counted: {e}")),
        }
    } else {
        notes.push("syscalls not counted: perf is not installed".into());
    }
    let text = procs::get(on_metrics, "/metrics").unwrap_or_default();
    let up = text
        .lines()
        .filter(|l| l.starts_with("tcpbridge_upstream_state{") && l.contains("state=\"up\"} 1"))
        .count();
    let (failed, _) = procs::sum_family(&text, "tcpbridge_upstream_checks_failed_total");
    notes.push(format!(
        "at the end: {up} of {UPSTREAMS} upstreams up (`tcpbridge_upstream_state`), \
         {failed:.0} checks failed (`tcpbridge_upstream_checks_failed_total`)"
    ));
    Ok(())
}

fn count_syscalls(
    ctx: &Ctx,
    scale: &Scale,
    pid: u32,
    stats: SocketAddr,
    results: &mut Results,
) -> Result<(), String> {
    eprintln!("health: attaching perf to pid {pid} (about 15 s)");
    let counter = perf::Counter::start(&[pid], &ctx.scratch)?;
    let accepted0 = children::stats(stats).map_err(|e| e.to_string())?.accepted;
    thread::sleep(scale.health_window);
    let accepted1 = children::stats(stats).map_err(|e| e.to_string())?.accepted;
    let counts = counter.finish()?;
    let checks = (accepted1 - accepted0) as f64;
    if checks == 0.0 {
        return Err("no check in the perf window".into());
    }
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let case = "1000 upstreams, 1 s";
    results.record(
        SECTION,
        case,
        "checks",
        "syscalls_per_check",
        total as f64 / checks,
    );
    for (name, n) in counts.iter().take(TOP_SYSCALLS) {
        let figure = format!("syscalls_per_check:{name}");
        results.record(SECTION, case, "checks", &figure, *n as f64 / checks);
    }
    Ok(())
}

/// The section's markdown.
pub fn markdown(results: &Results, scale: &Scale) -> String {
    let case = "1000 upstreams, 1 s";
    let s = |target: &str, figure: &str| results.summary(SECTION, case, target, figure);
    let mut md = format!(
        "## 2. Health checks: CPU at {UPSTREAMS} upstreams, {INTERVAL} interval\n\n\
         Two tcpbridge processes with the same {UPSTREAMS} upstreams side by side, one with \
         `health_check = \"tcp\"`, `health_interval = \"{INTERVAL}\"`, one without checks; \
         {} s for the checks to spread, then {} window(s) of {} s. CPU % of one core = \
         (utime + stime) / wall time. Checks counted by the upstreams' accepts. \
         `net` subtracts the process without checks.\n\n",
        scale.health_settle.as_secs(),
        scale.health_windows,
        scale.health_window.as_secs()
    );
    md.push_str("| process | CPU % of one core | checks/s | CPU us/check | net CPU us/check |\n|---|---:|---:|---:|---:|\n");
    for target in ["checks", "no checks", "upstreams (listener child)"] {
        md.push_str(&format!(
            "| {target} | {} | {} | {} | {} |\n",
            range(s(target, "cpu_pct")),
            range(s(target, "checks_per_s")),
            range(s(target, "cpu_us_per_check")),
            range(s(target, "net_cpu_us_per_check")),
        ));
    }
    if let Some(total) = s("checks", "syscalls_per_check") {
        md.push_str(&format!(
            "\nSyscalls of the checking process per check (`perf stat -e 'syscalls:sys_enter_*'`, \
             one {} s window): **{}** in all",
            scale.health_window.as_secs(),
            num(total.median)
        ));
        let top: Vec<String> = results
            .figures(SECTION, case, "checks")
            .into_iter()
            .filter_map(|(figure, value)| {
                let name = figure.strip_prefix("syscalls_per_check:")?;
                Some(format!("{name} {}", num(value)))
            })
            .collect();
        md.push_str(&format!(": {}.\n", top.join(", ")));
    }
    md
}
