//! `cargo bench --bench upstreams`: what upstream groups' warm connections and active
//! health checks buy and cost (issue "Upstreams"):
//!
//! 1. time to first byte and new-session rate with and without `--warm`, against an
//!    upstream with a 30 ms setup delay and against a plain one ([`ttfb`]);
//! 2. the CPU of TCP health checks at 1,000 upstreams checked every second
//!    ([`health`]);
//! 3. memory per warm connection, in the proxy and in the kernel ([`memory`]).
//!
//! ```text
//! cargo bench --bench upstreams -- [--quick] [--out DIR] [--runs N] [--only ttfb,health,memory]
//! ```
//!
//! Writes `results.md` and `results.csv` to `DIR` (default `<target>/bench-upstreams/`)
//! and prints the markdown. Benchmarks report; nothing here asserts a timing.
//!
//! The same executable runs the bench's children (`__backend`, `__listeners`: see
//! [`children`]). tcpbridge is `TCPBRIDGE_BIN` when set, else `tcpbridge` in the profile
//! directory above this executable (`cargo bench` builds it first).
//! `TCPBRIDGE_BENCH_KEEP=1` keeps the configuration files and the processes' logs.

#[path = "../common/child.rs"]
mod child;
mod children;
mod health;
#[path = "../common/host.rs"]
#[allow(dead_code)] // shared with the other benches, which use every helper
mod host;
mod load;
#[path = "../common/machine.rs"]
mod machine;
mod memory;
#[path = "../common/options.rs"]
mod options;
mod perf;
mod procfs;
mod procs;
mod results;
#[path = "../common/stats.rs"]
#[allow(dead_code)] // shared with the other benches, which use every helper
mod stats;
mod ttfb;
mod ttfb_syscalls;

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process;
use std::time::{Duration, Instant};

use results::Results;

const USAGE: &str = "usage: cargo bench --bench upstreams -- [--quick] [--out DIR] [--runs N] \
[--only ttfb,health,memory]";
const SECTIONS: [&str; 3] = [ttfb::SECTION, health::SECTION, memory::SECTION];

/// What every section needs: where to write scratch files, which tcpbridge to run.
pub struct Ctx {
    pub scratch: PathBuf,
    pub tcpbridge: PathBuf,
}

/// How long and how often things are measured.
pub struct Scale {
    /// Measured rounds of the TTFB workloads.
    pub runs: usize,
    /// One TTFB run, and its warm-up.
    pub run: Duration,
    pub warmup: Duration,
    /// Most sessions in one TTFB run.
    pub max_sessions: u64,
    /// Time for the health checks to spread, then the measured windows.
    pub health_settle: Duration,
    pub health_window: Duration,
    pub health_windows: usize,
    /// Rounds of the memory section.
    pub memory_rounds: usize,
}

impl Scale {
    fn new(quick: bool, runs: Option<usize>) -> Scale {
        if quick {
            Scale {
                runs: runs.unwrap_or(3),
                run: Duration::from_millis(1000),
                warmup: Duration::from_millis(300),
                max_sessions: 5_000,
                health_settle: Duration::from_secs(3),
                health_window: Duration::from_secs(5),
                health_windows: 1,
                memory_rounds: 1,
            }
        } else {
            Scale {
                runs: runs.unwrap_or(3),
                run: Duration::from_secs(3),
                warmup: Duration::from_secs(1),
                max_sessions: 20_000,
                health_settle: Duration::from_secs(5),
                health_window: Duration::from_secs(10),
                health_windows: 3,
                memory_rounds: 3,
            }
        }
    }
}

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    let child_role = match args.first().map(String::as_str) {
        Some("__backend") => Some(match args.get(1).and_then(|d| d.parse().ok()) {
            Some(delay_ms) => children::backend(delay_ms).map_err(|e| e.to_string()),
            None => Err("usage: __backend DELAY_MS".into()),
        }),
        Some("__listeners") => Some(
            match (args.get(1).and_then(|n| n.parse().ok()), args.get(2)) {
                (Some(n), Some(mode)) => {
                    children::listeners(n, mode == "hold").map_err(|e| e.to_string())
                }
                _ => Err("usage: __listeners N close|hold".into()),
            },
        ),
        _ => None,
    };
    let outcome = child_role.unwrap_or_else(|| match options::parse_options(&args, &SECTIONS) {
        Ok(options) => run(options),
        Err(e) if e == "help" => {
            println!("{USAGE}");
            Ok(())
        }
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            process::exit(2)
        }
    });
    if let Err(e) = outcome {
        eprintln!("error: {e}");
        process::exit(1);
    }
}

fn run(options: options::Options) -> Result<(), String> {
    let started = Instant::now();
    let nofile = host::raise_nofile_limit();
    let exe = env::current_exe().map_err(|e| e.to_string())?;
    let out_dir = match &options.out {
        Some(dir) => dir.clone(),
        None => child::target_dir(&exe)?.join("bench-upstreams"),
    };
    let scratch = env::temp_dir().join(format!("tcpbridge-upstreams-bench-{}", process::id()));
    for dir in [&scratch, &out_dir] {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let ctx = Ctx {
        scratch: scratch.clone(),
        tcpbridge: child::tcpbridge_binary(&exe),
    };
    if !ctx.tcpbridge.is_file() {
        return Err(format!(
            "no tcpbridge binary at {}",
            ctx.tcpbridge.display()
        ));
    }
    let scale = Scale::new(options.quick, options.runs);
    let mut facts = machine::describe(Path::new(env!("CARGO_MANIFEST_DIR")));
    facts.push((
        "mode".into(),
        if options.quick { "--quick" } else { "full" }.into(),
    ));
    facts.push(("RLIMIT_NOFILE (raised to hard)".into(), nofile.to_string()));
    let size = fs::metadata(&ctx.tcpbridge).map_or(0, |m| m.len());
    facts.push((
        "tcpbridge".into(),
        format!("{} ({size} bytes)", ctx.tcpbridge.display()),
    ));
    facts.push((
        "load and upstreams".into(),
        "this process (blocking std sockets, TCP_NODELAY) and its children (tokio); \
         every process on the same cores, all traffic on 127.0.0.1"
            .into(),
    ));

    let mut results = Results::default();
    let mut sections = String::new();
    let wanted = |s: &str| options.only.iter().any(|o| o == s);
    type Section = (
        &'static str,
        fn(&Ctx, &Scale, &mut Results, &mut Vec<String>),
        fn(&Results, &Scale) -> String,
    );
    let all: [Section; 3] = [
        (ttfb::SECTION, ttfb::run, ttfb::markdown),
        (health::SECTION, health::run, health::markdown),
        (memory::SECTION, memory::run, memory::markdown),
    ];
    for (name, run_section, markdown) in all {
        if !wanted(name) {
            continue;
        }
        let t = Instant::now();
        let mut notes = Vec::new();
        run_section(&ctx, &scale, &mut results, &mut notes);
        eprintln!("{name}: done in {:.0} s", t.elapsed().as_secs_f64());
        sections.push_str(&markdown(&results, &scale));
        if !notes.is_empty() {
            sections.push_str("\nNotes:\n\n");
            for note in notes {
                sections.push_str(&format!("- {note}\n"));
            }
        }
        sections.push('\n');
    }
    facts.push(("load average at end".into(), machine::load_average()));
    facts.push((
        "bench wall time".into(),
        format!("{:.0} s", started.elapsed().as_secs_f64()),
    ));

    let mut markdown =
        String::from("# tcpbridge upstream groups benchmark\n\n## Machine and configuration\n\n");
    markdown.push_str(&results::facts_table(&facts));
    markdown.push('\n');
    markdown.push_str(&sections);
    let md_path = out_dir.join("results.md");
    let csv_path = out_dir.join("results.csv");
    fs::write(&md_path, &markdown).map_err(|e| format!("{}: {e}", md_path.display()))?;
    fs::write(&csv_path, results.csv()).map_err(|e| format!("{}: {e}", csv_path.display()))?;
    println!("{markdown}");
    eprintln!("wrote {} and {}", md_path.display(), csv_path.display());
    if env::var_os("TCPBRIDGE_BENCH_KEEP").is_some() {
        eprintln!("configurations and logs kept in {}", scratch.display());
    } else {
        let _ = fs::remove_dir_all(&scratch);
    }
    Ok(())
}
