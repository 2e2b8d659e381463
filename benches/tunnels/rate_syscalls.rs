//! Section 1, syscalls per tunnel: one more run of the rate load per target with
//! `perf stat -e 'syscalls:sys_enter_*'` attached to every process of the proxy's tree
//! ([`perf::Counter`]). Syscalls are the stable measure of what a tunnel costs where
//! the tunnel rate on a shared 2-core machine is noise.

use crate::rate::{self, CASE, SECTION};
use crate::results::{num, Results};
use crate::targets::{self, Running};
use crate::{perf, Ctx, Scale};

/// Syscalls listed by name, most frequent first.
const TOP: usize = 12;

/// Counts the syscalls of `target` over one run, and records them per tunnel.
pub fn count(
    ctx: &Ctx,
    target: &Running,
    scale: &Scale,
    results: &mut Results,
) -> Result<(), String> {
    let pids = target.process.tree();
    eprintln!(
        "rate: attaching perf to {} ({} processes; about 15 s)",
        target.name,
        pids.len()
    );
    let counter = perf::Counter::start(&pids, &ctx.scratch)?;
    let outcome = rate::load(
        target.addr,
        target.protocol,
        ctx.dest,
        scale.run,
        scale.max_tunnels,
    );
    let counts = counter.finish()?;
    if outcome.tunnels == 0 {
        return Err(format!(
            "no tunnel in the perf window: {:?}",
            outcome.first_error
        ));
    }
    let tunnels = outcome.tunnels as f64;
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    results.record(
        SECTION,
        CASE,
        target.name,
        "syscalls_per_tunnel",
        total as f64 / tunnels,
    );
    for (name, n) in counts.iter().take(TOP) {
        let figure = format!("syscalls_per_tunnel:{name}");
        results.record(SECTION, CASE, target.name, &figure, *n as f64 / tunnels);
    }
    results.record(
        SECTION,
        CASE,
        target.name,
        "perf_tunnels_per_s",
        outcome.per_second(),
    );
    Ok(())
}

/// The counts as markdown lines, one per target that has them.
pub fn markdown(results: &Results) -> String {
    let mut md = String::new();
    for target in &targets::ALL {
        let Some(total) = results.median(SECTION, CASE, target.name, "syscalls_per_tunnel") else {
            continue;
        };
        let top: Vec<String> = results
            .figures(SECTION, CASE, target.name)
            .into_iter()
            .filter_map(|(figure, value)| {
                let name = figure.strip_prefix("syscalls_per_tunnel:")?;
                Some(format!("{name} {}", num(value)))
            })
            .collect();
        let best = rate::best_peer(
            results,
            SECTION,
            CASE,
            target.protocol,
            "syscalls_per_tunnel",
            true,
        );
        let versus = match best {
            Some((peer, value)) if peer != target.name && value > 0.0 => {
                format!(" ({:.2} x {peer})", total / value)
            }
            _ => String::new(),
        };
        md.push_str(&format!(
            "- {}: **{}** syscalls per tunnel{versus}: {}\n",
            target.name,
            num(total),
            top.join(", ")
        ));
    }
    if !md.is_empty() {
        md.insert_str(
            0,
            "\nSyscalls of the proxy per tunnel, one more run per target with \
             `perf stat -e 'syscalls:sys_enter_*' -p PIDS` on every process of its tree \
             (the counters slow the run; its rate is not in the table above):\n\n",
        );
    }
    md
}
