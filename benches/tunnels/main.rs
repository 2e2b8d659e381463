//! `cargo bench --bench tunnels`: what the `connect` (HTTP CONNECT) and `socks` (SOCKS5)
//! listeners cost next to the proxies that speak the same protocols (issue "Dynamic
//! destinations"): tinyproxy (HTTP CONNECT), microsocks and Dante (SOCKS5).
//!
//! 1. new tunnels per second: handshake, one 64-byte request and answer, close; 8 clients
//!    ([`rate`], with the proxy's syscalls per tunnel in [`rate_syscalls`]);
//! 2. bulk through one tunnel, up and down ([`bulk`]);
//! 3. memory per idle tunnel at 1,000 tunnels ([`memory`]).
//!
//! ```text
//! cargo bench --bench tunnels -- [--quick] [--out DIR] [--runs N] [--only rate,bulk,memory]
//! ```
//!
//! Writes `results.md` and `results.csv` to `DIR` (default `<target>/bench-tunnels/`)
//! and prints the markdown. Benchmarks report; nothing here asserts a timing. Every
//! ratio is against the best peer of the same protocol in the same run.
//!
//! The same executable runs the bench's destination server (`__server`: see
//! [`server`]). tcpbridge is `TCPBRIDGE_BIN` when set, else `tcpbridge` in the profile
//! directory above this executable (`cargo bench` builds it first). The peers are
//! found on `PATH` (plus `/usr/sbin`); one that is missing is reported
//! `skipped (not installed)`. `TCPBRIDGE_BENCH_KEEP=1` keeps the configuration files
//! and the processes' logs.

mod bulk;
#[path = "../common/child.rs"]
mod child;
mod client;
#[path = "../common/host.rs"]
#[allow(dead_code)] // shared with the other benches, which use every helper
mod host;
mod logs;
#[path = "../common/machine.rs"]
mod machine;
mod memory;
#[path = "../common/options.rs"]
mod options;
#[path = "../upstreams/perf.rs"]
mod perf;
mod procs;
#[path = "../compare/procstat.rs"]
#[allow(dead_code)] // shared with the compare bench, which uses every helper
mod procstat;
mod rate;
mod rate_syscalls;
#[path = "../upstreams/results.rs"]
#[allow(dead_code)] // shared with the upstreams bench, which uses every helper
mod results;
mod server;
#[path = "../common/stats.rs"]
#[allow(dead_code)] // shared with the other benches, which use every helper
mod stats;
mod targets;

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process;
use std::time::{Duration, Instant};

use results::Results;

const USAGE: &str = "usage: cargo bench --bench tunnels -- [--quick] [--out DIR] [--runs N] \
[--only rate,bulk,memory]";
const SECTIONS: [&str; 3] = [rate::SECTION, bulk::SECTION, memory::SECTION];

/// What every section needs: where to write scratch files, which tcpbridge to run,
/// where the destination server listens.
pub struct Ctx {
    pub scratch: PathBuf,
    pub tcpbridge: PathBuf,
    /// The destination of every tunnel ([`server`]).
    pub dest: std::net::SocketAddr,
}

/// How long and how much things are measured.
pub struct Scale {
    /// Measured rounds of every section (the rate and bulk sections have a warm-up
    /// round before them).
    pub runs: usize,
    /// One rate run, and its warm-up.
    pub run: Duration,
    pub warmup: Duration,
    /// Most tunnels in one rate run.
    pub max_tunnels: u64,
    /// Bytes of one bulk transfer, each way.
    pub bulk_bytes: u64,
    /// Idle tunnels of the memory section.
    pub idle_tunnels: usize,
}

impl Scale {
    fn new(quick: bool, runs: Option<usize>) -> Scale {
        Scale {
            runs: runs.unwrap_or(3),
            run: Duration::from_secs(if quick { 2 } else { 5 }),
            warmup: Duration::from_millis(if quick { 300 } else { 1000 }),
            max_tunnels: 1_000_000,
            bulk_bytes: if quick { 256 << 20 } else { 1 << 30 },
            idle_tunnels: 1000,
        }
    }
}

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    let outcome = if args.first().map(String::as_str) == Some("__server") {
        server::serve().map_err(|e| e.to_string())
    } else {
        match options::parse_options(&args, &SECTIONS) {
            Ok(options) => run(options),
            Err(e) if e == "help" => {
                println!("{USAGE}");
                Ok(())
            }
            Err(e) => {
                eprintln!("error: {e}\n{USAGE}");
                process::exit(2)
            }
        }
    };
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
        None => child::target_dir(&exe)?.join("bench-tunnels"),
    };
    let scratch = env::temp_dir().join(format!("tcpbridge-tunnels-bench-{}", process::id()));
    for dir in [&scratch, &out_dir] {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let tcpbridge = child::tcpbridge_binary(&exe);
    if !tcpbridge.is_file() {
        return Err(format!("no tcpbridge binary at {}", tcpbridge.display()));
    }
    let server = procs::start_self(&["__server"], &scratch, "server")?;
    let ctx = Ctx {
        scratch: scratch.clone(),
        tcpbridge,
        dest: server.field("listen=")?,
    };
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
        "clients and destination".into(),
        "clients: this process (blocking std sockets, TCP_NODELAY); destination: its \
         child `__server` (tokio, 2 workers); every process on the same cores, all \
         traffic on 127.0.0.1"
            .into(),
    ));
    let (found, mut notes) = targets::find(&ctx);
    for target in targets::ALL {
        facts.push((
            format!("{} ({})", target.name, target.protocol.label()),
            found
                .iter()
                .find(|f| f.target.name == target.name)
                .map_or_else(|| "skipped (not installed)".into(), |f| f.settings(&ctx)),
        ));
    }

    let mut results = Results::default();
    let mut sections = String::new();
    let wanted = |s: &str| options.only.iter().any(|o| o == s);
    type Section = (
        &'static str,
        fn(&Ctx, &Scale, &[targets::Found], &mut Results, &mut Vec<String>),
        fn(&Results, &Scale) -> String,
    );
    let all: [Section; 3] = [
        (rate::SECTION, rate::run, rate::markdown),
        (bulk::SECTION, bulk::run, bulk::markdown),
        (memory::SECTION, memory::run, memory::markdown),
    ];
    for (name, run_section, markdown) in all {
        if !wanted(name) {
            continue;
        }
        let t = Instant::now();
        let mut section_notes = Vec::new();
        run_section(&ctx, &scale, &found, &mut results, &mut section_notes);
        eprintln!("{name}: done in {:.0} s", t.elapsed().as_secs_f64());
        sections.push_str(&markdown(&results, &scale));
        if !section_notes.is_empty() {
            sections.push_str("\nNotes:\n\n");
            for note in section_notes {
                sections.push_str(&format!("- {note}\n"));
            }
        }
        sections.push('\n');
    }
    notes.extend(logs::findings(&ctx, &found));
    facts.push(("load average at end".into(), machine::load_average()));
    facts.push((
        "bench wall time".into(),
        format!("{:.0} s", started.elapsed().as_secs_f64()),
    ));
    drop(server);

    let mut markdown =
        String::from("# tcpbridge tunnels benchmark\n\n## Machine and configuration\n\n");
    markdown.push_str(&results::facts_table(&facts));
    markdown.push('\n');
    markdown.push_str(&sections);
    if !notes.is_empty() {
        markdown.push_str("## Targets and their logs\n\n");
        for note in notes {
            markdown.push_str(&format!("- {note}\n"));
        }
        markdown.push('\n');
    }
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
