//! Section 3: memory per idle tunnel. Each round starts every target afresh and checks
//! it; 0.5 s later reads its memory (**before**), opens [`Scale::idle_tunnels`]
//! tunnels to the destination server's echo, each proven open by a one-byte echo, and
//! leaves them idle; 0.5 s later reads its memory again (**after**), then closes them
//! and stops the target.
//!
//! Memory is summed over the target's process tree: `VmRSS` of every process (pages
//! shared between processes, such as Dante's forks, counted once per process) and
//! `Pss` from `smaps_rollup` (shared pages split between the processes that map them).
//! Threads share their process's memory and are counted once.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use crate::client;
use crate::rate::best_peer;
use crate::results::{num, range, ratio, Results};
use crate::targets::{self, Found, Running};
use crate::{procstat, Ctx, Scale};

pub const SECTION: &str = "memory";
const CASE: &str = "idle";
/// Failed tunnels after which a round stops opening more.
const MAX_ERRORS: usize = 20;
/// Time for the target to settle before each reading.
const SETTLE: Duration = Duration::from_millis(500);

/// One reading of a target's process tree.
#[derive(Debug, Clone, Copy)]
struct Reading {
    rss_kib: u64,
    pss_kib: u64,
    processes: usize,
    threads: u64,
}

fn read(target: &Running) -> Reading {
    let pid = target.pid();
    let tree = target.process.tree();
    let threads = tree
        .iter()
        .filter_map(|p| {
            let text = fs::read_to_string(format!("/proc/{p}/status")).ok()?;
            let line = text.lines().find(|l| l.starts_with("Threads:"))?;
            line["Threads:".len()..].trim().parse::<u64>().ok()
        })
        .sum();
    Reading {
        rss_kib: procstat::tree_rss_kib(pid),
        pss_kib: procstat::tree_pss_kib(pid),
        processes: tree.len(),
        threads,
    }
}

fn idle_tunnel(target: &Running, ctx: &Ctx) -> std::io::Result<TcpStream> {
    let mut stream = client::open(target.addr, target.protocol, ctx.dest)?;
    stream.write_all(b"Ex")?;
    let mut echo = [0u8; 1];
    stream.read_exact(&mut echo)?;
    Ok(stream)
}

/// Runs the section, recording into `results`; what could not run goes to `notes`.
pub fn run(
    ctx: &Ctx,
    scale: &Scale,
    found: &[Found],
    results: &mut Results,
    notes: &mut Vec<String>,
) {
    for round in 1..=scale.runs {
        for f in found {
            let target = match f.start(ctx, &format!("{SECTION}-{round}")) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("memory {}: failed: {e}", f.target.name);
                    notes.push(format!("{} round {round}: failed: {e}", f.target.name));
                    continue;
                }
            };
            thread::sleep(SETTLE);
            let before = read(&target);
            let mut tunnels = Vec::with_capacity(scale.idle_tunnels);
            let mut errors = Vec::new();
            while tunnels.len() < scale.idle_tunnels && errors.len() < MAX_ERRORS {
                match idle_tunnel(&target, ctx) {
                    Ok(stream) => tunnels.push(stream),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            thread::sleep(SETTLE);
            let after = read(&target);
            let open = tunnels.len();
            if let Some(first) = errors.first() {
                notes.push(format!(
                    "{} round {round}: {open} tunnels opened, {} failed, first: {first}",
                    target.name,
                    errors.len()
                ));
            }
            drop(tunnels);
            drop(target);
            let name = f.target.name;
            let mut put =
                |figure: &str, value: f64| results.record(SECTION, CASE, name, figure, value);
            put("tunnels", open as f64);
            put("rss_before_kib", before.rss_kib as f64);
            put("rss_after_kib", after.rss_kib as f64);
            put("processes_after", after.processes as f64);
            put("threads_after", after.threads as f64);
            if open > 0 {
                let per = |a: u64, b: u64| (a as f64 - b as f64) * 1024.0 / open as f64;
                put("rss_bytes_per_tunnel", per(after.rss_kib, before.rss_kib));
                put("pss_bytes_per_tunnel", per(after.pss_kib, before.pss_kib));
            }
            eprintln!(
                "memory round {round} {name:<18} {open} tunnels: RSS {} -> {} KiB, PSS {} -> {} KiB, {} processes, {} threads",
                before.rss_kib, after.rss_kib, before.pss_kib, after.pss_kib, after.processes, after.threads
            );
        }
    }
}

/// The section's markdown.
pub fn markdown(results: &Results, scale: &Scale) -> String {
    let mut md = format!(
        "## 3. Memory per idle tunnel\n\n\
         Each of {} round(s) starts every target afresh, reads its memory, opens {} \
         tunnels (each proven open by a one-byte echo) and leaves them idle, reads again \
         0.5 s later. Per tunnel: (after - before) / tunnels. Summed over the target's \
         **process tree**: `VmRSS` counts pages shared between processes once per process \
         (Dante's forks); `Pss` splits them. Threads share their process's memory. \
         The kernel's socket memory is not in these figures.\n\n\
         | protocol | target | tunnels | RSS before KiB | RSS after KiB | RSS bytes/tunnel | x best peer | PSS bytes/tunnel | x best peer | processes | threads |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        scale.runs, scale.idle_tunnels
    );
    for target in &targets::ALL {
        let s = |figure: &str| results.summary(SECTION, CASE, target.name, figure);
        let m = |figure: &str| results.median(SECTION, CASE, target.name, figure);
        if s("tunnels").is_none() {
            continue;
        }
        let best = |figure: &str| {
            best_peer(results, SECTION, CASE, target.protocol, figure, true).map(|b| b.1)
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            target.protocol.label(),
            target.name,
            range(s("tunnels")),
            range(s("rss_before_kib")),
            range(s("rss_after_kib")),
            range(s("rss_bytes_per_tunnel")),
            ratio(m("rss_bytes_per_tunnel"), best("rss_bytes_per_tunnel")),
            range(s("pss_bytes_per_tunnel")),
            ratio(m("pss_bytes_per_tunnel"), best("pss_bytes_per_tunnel")),
            m("processes_after").map_or("-".into(), num),
            m("threads_after").map_or("-".into(), num),
        ));
    }
    md
}
