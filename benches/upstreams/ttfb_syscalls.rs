//! Section 1, syscalls per session: for the plain (0 ms) upstream, one more sequential
//! run of `warm-0` and of `warm-16` with `perf stat -e 'syscalls:sys_enter_*'` attached
//! to the proxy ([`perf::Counter`]). Syscalls are the stable measure of what the pool
//! costs where the session rate on a shared 2-core machine is noise.

use std::net::SocketAddr;

use crate::load::{self, Shape};
use crate::perf;
use crate::results::{num, Results};
use crate::{Ctx, Scale};

/// The case the counts are recorded under.
pub const CASE: &str = "sequential/0ms";
/// Syscalls listed by name, most frequent first.
const TOP: usize = 8;

/// Counts the syscalls of the proxy `pid` over one sequential run against `addr`, and
/// records them per session for `target`.
pub fn count(
    ctx: &Ctx,
    section: &'static str,
    target: &str,
    pid: u32,
    addr: SocketAddr,
    scale: &Scale,
    results: &mut Results,
) -> Result<(), String> {
    eprintln!("ttfb: attaching perf to {target} (pid {pid}; about 15 s)");
    let counter = perf::Counter::start(&[pid], &ctx.scratch)?;
    let outcome = load::run(addr, Shape::Sequential, scale.run, scale.max_sessions);
    let counts = counter.finish()?;
    if outcome.sessions == 0 {
        return Err(format!("{target}: no session in the perf window"));
    }
    let sessions = outcome.sessions as f64;
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    results.record(
        section,
        CASE,
        target,
        "syscalls_per_session",
        total as f64 / sessions,
    );
    for (name, n) in counts.iter().take(TOP) {
        let figure = format!("syscalls_per_session:{name}");
        results.record(section, CASE, target, &figure, *n as f64 / sessions);
    }
    Ok(())
}

/// The counts as markdown lines, one per target that has them.
pub fn markdown(results: &Results, section: &str, targets: &[&str]) -> String {
    let mut md = String::new();
    for target in targets {
        let Some(total) = results.median(section, CASE, target, "syscalls_per_session") else {
            continue;
        };
        let top: Vec<String> = results
            .figures(section, CASE, target)
            .into_iter()
            .filter_map(|(figure, value)| {
                let name = figure.strip_prefix("syscalls_per_session:")?;
                Some(format!("{name} {}", num(value)))
            })
            .collect();
        md.push_str(&format!(
            "- {target}: **{}** syscalls per session: {}\n",
            num(total),
            top.join(", ")
        ));
    }
    if !md.is_empty() {
        md.insert_str(
            0,
            "\nSyscalls of the proxy per session, plain upstream, one sequential run each \
             (`perf stat -e 'syscalls:sys_enter_*' -p PID`):\n\n",
        );
    }
    md
}
