//! `cargo bench --bench compare`: tcpbridge against a direct connection, the
//! in-bench tokio and thread-per-connection proxies, and HAProxy, nginx stream,
//! socat and rinetd when installed, all in front of the same backend on
//! 127.0.0.1, with identical workloads interleaved A B C, A B C...
//!
//! ```text
//! cargo bench --bench compare -- [--quick] [--out DIR] [--only a,b,...] [--runs N]
//!                                [--workloads PREFIX,...] [--crosscheck | --crosscheck-only]
//! ```
//!
//! Writes `results.md` and `results.csv` (`crosscheck.*` with `--crosscheck-only`)
//! to `DIR` (default `<target>/bench-compare/`) and prints the markdown.
//! Benchmarks report; nothing here asserts a timing.
//!
//! The same executable also runs the bench's child processes: `__backend`
//! (see [`backend`]) and `__proxy KIND UPSTREAM` (see [`baselines`]).
//!
//! tcpbridge itself: `TCPBRIDGE_BIN` when set, otherwise `tcpbridge` in the
//! profile directory above this executable (`<target>/release/tcpbridge`):
//! `cargo bench` builds the package's binaries, with the bench profile
//! (which inherits `release`), before it runs a bench. `TCPBRIDGE_PREVIOUS_BIN`
//! adds the target `tcpbridge-previous`: another build (the one before a change),
//! measured in the same interleaved run.

mod aims;
mod backend;
mod baselines;
#[path = "../common/child.rs"]
mod child;
mod crosscheck;
mod external;
#[path = "../common/host.rs"]
mod host;
mod load;
mod machine;
mod matrix;
mod ours;
mod procstat;
mod proxies;
mod report;
#[path = "../common/stats.rs"]
#[allow(dead_code)] // shared with the other bench, which uses every helper
mod stats;
mod syscalls;
mod workloads;

use std::env;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process;
use std::time::Instant;

use matrix::Results;
use proxies::{Context, Kind};
use report::{Section, Statuses};
use workloads::Scale;

const USAGE: &str = "usage: cargo bench --bench compare -- [--quick] [--out DIR] \
[--only a,b,...] [--runs N] [--workloads PREFIX,...] [--crosscheck | --crosscheck-only]
targets: direct tcpbridge tcpbridge-copy tcpbridge-x2 tcpbridge-previous tokio-ct tokio-mt thread
         haproxy haproxy-splice nginx socat rinetd";

/// Session limit handed to tcpbridge (`--max-sessions`) and, as far as the
/// file descriptor limit allows, to the others (maxconn, worker_connections).
const MAX_SESSIONS: u64 = 10_000;
/// File descriptors a third-party proxy needs beyond two per session.
const FD_RESERVE: u64 = 100;

struct Options {
    quick: bool,
    out: Option<PathBuf>,
    only: Option<Vec<Kind>>,
    /// Workload id prefixes to run (all when `None`).
    workloads: Option<Vec<String>>,
    runs: usize,
    harness: bool,
    crosscheck: bool,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        quick: false,
        out: None,
        only: None,
        workloads: None,
        runs: 3,
        harness: true,
        crosscheck: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().cloned().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            // cargo passes --bench to harness=false benches.
            "--bench" => {}
            "--quick" => options.quick = true,
            "--out" => options.out = Some(PathBuf::from(value("--out")?)),
            "--runs" => {
                let text = value("--runs")?;
                options.runs = text
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or(format!("--runs: bad count {text:?}"))?;
            }
            "--only" => {
                let kinds = value("--only")?
                    .split(',')
                    .map(|name| {
                        Kind::from_name(name).ok_or(format!("--only: unknown target {name:?}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                options.only = Some(kinds);
            }
            "--workloads" => {
                options.workloads =
                    Some(value("--workloads")?.split(',').map(String::from).collect());
            }
            "--crosscheck" => options.crosscheck = true,
            "--crosscheck-only" => {
                options.crosscheck = true;
                options.harness = false;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("__backend") => exit_with(backend::serve().map_err(|e| e.to_string())),
        Some("__proxy") => {
            let upstream: Option<SocketAddr> = args.get(2).and_then(|a| a.parse().ok());
            let outcome = match (args.get(1), upstream) {
                (Some(kind), Some(upstream)) => {
                    baselines::serve(kind, upstream).map_err(|e| e.to_string())
                }
                _ => Err("usage: __proxy KIND UPSTREAM".into()),
            };
            exit_with(outcome)
        }
        _ => {}
    }
    let options = parse_options(&args).unwrap_or_else(|e| {
        eprintln!("error: {e}\n{USAGE}");
        process::exit(2)
    });
    exit_with(run(options));
}

fn exit_with(outcome: Result<(), String>) -> ! {
    match outcome {
        Ok(()) => process::exit(0),
        Err(e) => {
            eprintln!("error: {e}");
            process::exit(1)
        }
    }
}

fn run(options: Options) -> Result<(), String> {
    let started = Instant::now();
    let (busy_at_start, steal_at_start) = host::machine_busy_and_steal();
    let ours_at_start = procstat::self_cpu() + procstat::reaped_children_cpu();
    let nofile = host::raise_nofile_limit();
    let exe = env::current_exe().map_err(|e| e.to_string())?;
    let target_dir = child::target_dir(&exe)?;
    let out_dir = options
        .out
        .clone()
        .unwrap_or_else(|| target_dir.join("bench-compare"));
    let scratch = env::temp_dir().join(format!("tcpbridge-bench-{}", process::id()));
    fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let ctx = Context {
        scratch: scratch.clone(),
        tcpbridge: child::tcpbridge_binary(&exe),
        tcpbridge_previous: env::var_os("TCPBRIDGE_PREVIOUS_BIN").map(PathBuf::from),
        tcpbridge_max_sessions: MAX_SESSIONS,
        max_sessions: MAX_SESSIONS.min(nofile.saturating_sub(FD_RESERVE) / 2),
    };
    let scale = if options.quick {
        Scale::quick(options.runs)
    } else {
        Scale::full(options.runs)
    };
    let kinds = options.only.clone().unwrap_or_else(|| Kind::ALL.to_vec());
    let binary_bytes = fs::metadata(&ctx.tcpbridge).ok().map(|m| m.len());

    let mut facts = machine::describe(Path::new(env!("CARGO_MANIFEST_DIR")));
    facts.extend(configuration(&options, &scale, nofile, &ctx, binary_bytes));
    facts.extend(machine::tool_versions());

    let mut results = Results::default();
    let mut statuses: Statuses = Vec::new();
    let mut sections: Vec<Section> = Vec::new();
    if options.harness {
        let (backend, upstream) = proxies::start_backend(&scratch)?;
        let mut targets = start_targets(&kinds, upstream, &ctx, &mut statuses);
        let mut workloads = workloads::all(&scale);
        if let Some(prefixes) = &options.workloads {
            workloads.retain(|w| prefixes.iter().any(|p| w.id().starts_with(p.as_str())));
        }
        results = matrix::run(&workloads, &mut targets, backend.pid(), &scale);
        sections = workloads.iter().map(Section::of).collect();
    }
    if options.crosscheck {
        let seconds = if options.quick { 1 } else { 2 };
        let skipped = crosscheck::run(&kinds, &ctx, options.runs, seconds, &mut results);
        for note in &skipped {
            eprintln!("cross-check: {note}");
        }
        let notes = if skipped.is_empty() {
            "none".into()
        } else {
            skipped.join("; ")
        };
        facts.push(("cross-check: skipped".into(), notes));
        sections.extend(crosscheck::sections());
    }
    facts.push(("load average at end".into(), machine::load_average()));
    // Every child has been stopped and reaped by now, so its CPU is ours.
    let ours =
        (procstat::self_cpu() + procstat::reaped_children_cpu()).saturating_sub(ours_at_start);
    let (busy, steal) = host::machine_busy_and_steal();
    let others = busy.saturating_sub(busy_at_start).saturating_sub(ours);
    let per_second = |d: std::time::Duration| d.as_secs_f64() / started.elapsed().as_secs_f64();
    facts.push((
        "CPU used by other processes during the run".into(),
        format!(
            "about {:.2} cores on average (machine busy time minus the bench's and its \
             children's); steal {:.2} cores",
            per_second(others),
            per_second(steal.saturating_sub(steal_at_start))
        ),
    ));
    facts.push((
        "bench wall time".into(),
        format!("{:.0} s", started.elapsed().as_secs_f64()),
    ));

    let markdown = render(&facts, &statuses, &results, &sections, &kinds, binary_bytes);
    let csv = report::csv(&results, &sections, &kinds, &statuses);
    // A cross-check on its own does not overwrite the harness's results.
    let stem = if options.harness {
        "results"
    } else {
        "crosscheck"
    };
    let md_path = out_dir.join(format!("{stem}.md"));
    let csv_path = out_dir.join(format!("{stem}.csv"));
    fs::write(&md_path, &markdown).map_err(|e| format!("{}: {e}", md_path.display()))?;
    fs::write(&csv_path, csv).map_err(|e| format!("{}: {e}", csv_path.display()))?;
    println!("{markdown}");
    eprintln!("wrote {} and {}", md_path.display(), csv_path.display());
    if env::var_os("TCPBRIDGE_BENCH_KEEP").is_some() {
        eprintln!("configurations and logs kept in {}", scratch.display());
    } else {
        let _ = fs::remove_dir_all(&scratch);
    }
    Ok(())
}

/// Starts every target in `kinds` in front of `upstream`, noting in
/// `statuses` which run and why the others do not.
fn start_targets(
    kinds: &[Kind],
    upstream: SocketAddr,
    ctx: &Context,
    statuses: &mut Statuses,
) -> Vec<proxies::Target> {
    let mut targets = Vec::new();
    for &kind in kinds {
        match proxies::start(kind, upstream, ctx, true) {
            Ok(target) => {
                let note = match target.pid() {
                    Some(pid) => format!("pid {pid}, listening on {}", target.addr),
                    None => format!("the backend itself, {}", target.addr),
                };
                eprintln!("{:<10} {note}", kind.name());
                statuses.push((kind, Ok(note)));
                targets.push(target);
            }
            Err(why) => {
                eprintln!("{:<10} {why}", kind.name());
                statuses.push((kind, Err(why)));
            }
        }
    }
    targets
}

/// How this run was set up, for the report.
fn configuration(
    options: &Options,
    scale: &Scale,
    nofile: u64,
    ctx: &Context,
    binary_bytes: Option<u64>,
) -> machine::Facts {
    let mode = if options.quick {
        "--quick (memory: 5,000 sessions only, no warm-up round)"
    } else {
        "full"
    };
    vec![
        (
            "mode".into(),
            format!(
                "{mode}: {} ms runs after a {} ms warm-up, {} measured runs (median, min, max), interleaved",
                scale.run.as_millis(),
                scale.warmup.as_millis(),
                scale.runs
            ),
        ),
        ("RLIMIT_NOFILE (raised to hard)".into(), nofile.to_string()),
        (
            "tcpbridge".into(),
            format!(
                "{} ({}), `forward --max-sessions {} --buffer-size 16KiB -q` (the descriptors \
                 left by the session limit hold kernel pipes, as with haproxy-splice's maxconn); \
                 tcpbridge-copy: `--max-sessions {} --splice off`; tcpbridge-x2: two processes \
                 with `--reuse-port` on one port",
                ctx.tcpbridge.display(),
                binary_bytes.map_or("missing".into(), |b| format!("{b} bytes")),
                ours::tcpbridge_sessions(ctx, Kind::Tcpbridge),
                ours::tcpbridge_sessions(ctx, Kind::TcpbridgeCopy),
            ),
        ),
        (
            "common settings".into(),
            format!(
                "16 KiB buffers per direction where configurable; TCP_NODELAY on both legs of \
                 every proxy that can set it (rinetd cannot); one thread or worker (tokio-mt: \
                 2 workers); session limit {} for HAProxy and nginx (what RLIMIT_NOFILE allows)",
                ctx.max_sessions
            ),
        ),
        (
            "load generator".into(),
            "this process: blocking std sockets, one thread per connection, TCP_NODELAY; \
             backend: a child tokio server with 2 workers; all on 2 shared cores"
                .into(),
        ),
    ]
}

fn render(
    facts: &machine::Facts,
    statuses: &Statuses,
    results: &Results,
    sections: &[Section],
    kinds: &[Kind],
    binary_bytes: Option<u64>,
) -> String {
    let mut md = String::from("# tcpbridge comparison benchmark\n\n");
    md.push_str("## Machine and configuration\n\n");
    md.push_str(&report::facts_table(facts));
    if !statuses.is_empty() {
        md.push_str("\n## Targets\n\n");
        md.push_str(&report::status_table(statuses));
        md.push_str("\n## Summary (medians)\n\n");
        md.push_str(&report::summary_table(results, kinds));
        md.push_str("\n## Product targets\n\n");
        md.push_str(&aims::product_targets(results, binary_bytes));
    }
    md.push_str(
        "\n## All figures\n\nMedian [min-max] of the measured runs. `x direct` and `x tokio-ct` \
         are this target's median over the reference's (above 1: more of the figure). \
         MB = 10^6 bytes; latencies in microseconds; `cores` = CPU seconds per wall second; \
         `loadgen` is the bench process itself.\n\n",
    );
    for section in sections {
        md.push_str(&report::section_table(results, section, kinds));
        md.push('\n');
    }
    md
}
