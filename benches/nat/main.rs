//! `cargo bench --bench nat`: tcpbridge's NAT traversal (relay + agent, with
//! TLS tunnels and with plain ones) side by side with a direct connection,
//! tcpbridge forward mode (one hop, the reference for ratios), rathole (plain
//! TCP, Noise and TLS transports) and bore, all in front of the same backend
//! on 127.0.0.1, with identical workloads interleaved A B C, A B C...
//!
//! ```text
//! cargo bench --bench nat -- [--quick] [--out DIR] [--runs N] [--only a,b,...] [--tunnels N]
//! ```
//!
//! Writes `results.md` and `results.csv` to `DIR` (default
//! `<target>/bench-nat/`) and prints the markdown. Benchmarks report;
//! nothing here asserts a timing.
//!
//! Programs: tcpbridge is `TCPBRIDGE_BIN` when set, else `tcpbridge` in the
//! profile directory above this executable (`cargo bench` builds it first);
//! rathole and bore are `RATHOLE_BIN` / `BORE_BIN`, else in
//! `TCPBRIDGE_PEERS_DIR`, else on `PATH`. A chain that cannot be started is reported as skipped, with
//! the reason. `TCPBRIDGE_BENCH_KEEP=1` keeps configurations and logs.

mod backend;
mod chains;
#[path = "../common/child.rs"]
#[allow(dead_code)] // nat reads its READY lines its own way (several per process)
mod child;
mod encrypted;
#[path = "../common/host.rs"]
mod host;
mod load;
mod machine;
#[path = "../common/machine.rs"]
mod machine_common;
mod matrix;
mod procfs;
mod report;
#[path = "../common/stats.rs"]
mod stats;
mod tunnels;
mod workloads;

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process;
use std::thread;
use std::time::{Duration, Instant};

use chains::{Chain, Kind, Paths, POOL};
use matrix::Results;
use report::Statuses;
use workloads::Scale;

const USAGE: &str = "usage: cargo bench --bench nat -- [--quick] [--out DIR] [--runs N] \
[--only a,b,...] [--tunnels N]
chains: direct forward relay+agent \"relay+agent plain\" rathole \"rathole noise\" \"rathole tls\" bore";

struct Options {
    quick: bool,
    out: Option<PathBuf>,
    /// Measured rounds; default 3 with `--quick`, else 5.
    runs: Option<usize>,
    only: Option<Vec<Kind>>,
    tunnels: usize,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        quick: false,
        out: None,
        runs: None,
        only: None,
        tunnels: 1000,
    };
    let count = |flag: &str, text: String| {
        text.parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or(format!("{flag}: bad count {text:?}"))
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().cloned().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            // cargo passes --bench to harness=false benches.
            "--bench" => {}
            "--quick" => options.quick = true,
            "--out" => options.out = Some(PathBuf::from(value("--out")?)),
            "--runs" => options.runs = Some(count("--runs", value("--runs")?)?),
            "--tunnels" => options.tunnels = count("--tunnels", value("--tunnels")?)?,
            "--only" => {
                let kinds = value("--only")?
                    .split(',')
                    .map(|n| Kind::from_name(n).ok_or(format!("--only: unknown chain {n:?}")))
                    .collect::<Result<Vec<_>, _>>()?;
                options.only = Some(kinds);
            }
            "-h" | "--help" => return Err("help".into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    let options = match parse_options(&args) {
        Ok(options) => options,
        Err(e) if e == "help" => {
            println!("{USAGE}");
            process::exit(0)
        }
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            process::exit(2)
        }
    };
    if let Err(e) = run(options) {
        eprintln!("error: {e}");
        process::exit(1);
    }
}

/// `$VAR`, else `$TCPBRIDGE_PEERS_DIR/NAME`, else `NAME` on `PATH`.
fn locate_peer(var: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = env::var_os(var) {
        return Some(PathBuf::from(path));
    }
    if let Some(dir) = env::var_os("TCPBRIDGE_PEERS_DIR") {
        let peer = Path::new(&dir).join(name);
        if peer.is_file() {
            return Some(peer);
        }
    }
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn run(options: Options) -> Result<(), String> {
    let started = Instant::now();
    let (busy_at_start, steal_at_start) = host::machine_busy_and_steal();
    let own_at_start = procfs::own_cpu();
    let nofile = host::raise_nofile_limit();
    let exe = env::current_exe().map_err(|e| e.to_string())?;
    let target_dir = child::target_dir(&exe)?;
    let out_dir = options
        .out
        .clone()
        .unwrap_or_else(|| target_dir.join("bench-nat"));
    let scratch = env::temp_dir().join(format!("tcpbridge-nat-bench-{}", process::id()));
    fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let tcpbridge = child::tcpbridge_binary(&exe);
    if !tcpbridge.is_file() {
        return Err(format!("no tcpbridge binary at {}", tcpbridge.display()));
    }
    let paths = Paths {
        secret: scratch.join("secret"),
        scratch: scratch.clone(),
        tcpbridge,
        rathole: locate_peer("RATHOLE_BIN", "rathole"),
        bore: locate_peer("BORE_BIN", "bore"),
    };
    chains::write_secret(&paths.tcpbridge, &paths.secret)?;
    let frp = match locate_peer("FRPS_BIN", "frps") {
        Some(path) => format!(
            "skipped: {} found, but this bench has no frp chain yet",
            path.display()
        ),
        None => "skipped: not installed (frps, frpc)".to_string(),
    };
    let scale = if options.quick {
        Scale::quick(options.runs.unwrap_or(3))
    } else {
        Scale::full(options.runs.unwrap_or(5))
    };
    let kinds = options.only.clone().unwrap_or_else(|| Kind::ALL.to_vec());

    let mut facts = machine::describe(Path::new(env!("CARGO_MANIFEST_DIR")));
    facts.extend(configuration(&options, &scale, nofile, &paths));

    let backend = backend::start().map_err(|e| format!("backend: {e}"))?;
    let mut results = Results::default();
    let mut statuses: Statuses = Vec::new();
    let mut running: Vec<Chain> = Vec::new();
    for &kind in &kinds {
        match chains::start(kind, backend, &paths) {
            Ok(chain) => {
                let description = if chain.procs.is_empty() {
                    format!("the backend itself, {}", chain.addr)
                } else {
                    chain.describe()
                };
                eprintln!("{:<12} {description}", kind.name());
                statuses.push((kind, Ok(description)));
                running.push(chain);
            }
            Err(why) => {
                let why = if why.starts_with("skipped") {
                    why
                } else {
                    format!("skipped: {why}")
                };
                eprintln!("{:<12} {why}", kind.name());
                statuses.push((kind, Err(why)));
            }
        }
    }
    let started_kinds: Vec<Kind> = running.iter().map(|c| c.kind).collect();

    // Idle memory before any load: one sample per chain.
    thread::sleep(Duration::from_millis(300));
    for chain in &running {
        let ids = [
            "rss_fresh_public_kib",
            "rss_fresh_nat_kib",
            "rss_fresh_total_kib",
        ];
        for (figure, value) in workloads::rss_values(chain, ids) {
            results.record(figure, chain.kind, value);
        }
    }
    for figure in ["ttfb_empty_us", "ttfb_held_us"] {
        let why = "no pool: every new client takes the normal path";
        results.note(figure, Kind::Bore, why.into());
    }
    matrix::run(&workloads::all(), &mut running, &scale, &mut results);
    thread::sleep(Duration::from_millis(500));
    for chain in &running {
        let ids = ["", "", "rss_after_total_kib"];
        for (figure, value) in workloads::rss_values(chain, ids) {
            if !figure.is_empty() {
                results.record(figure, chain.kind, value);
            }
        }
    }
    drop(running);

    let tunnel_kinds: Vec<Kind> = kinds.iter().copied().filter(|k| k.is_relay()).collect();
    for &kind in &tunnel_kinds {
        let t = Instant::now();
        tunnels::run(
            kind,
            &paths,
            backend,
            options.tunnels,
            scale.tunnel_runs,
            scale.tunnel_limit,
            &mut results,
        );
        eprintln!(
            "{:<14} done in {:.1} s",
            format!("idle tunnels, {}", kind.name()),
            t.elapsed().as_secs_f64()
        );
    }

    let elapsed = started.elapsed();
    facts.push(("load average at end".into(), machine_common::load_average()));
    facts.push((
        "other benchmark (compare-*) at end".into(),
        machine::other_bench(),
    ));
    let ours = procfs::own_cpu().saturating_sub(own_at_start);
    let (busy, steal) = host::machine_busy_and_steal();
    let all_busy = busy.saturating_sub(busy_at_start);
    let per_second = |d: Duration| d.as_secs_f64() / elapsed.as_secs_f64();
    facts.push((
        "CPU used during the run".into(),
        format!(
            "machine {:.2} cores on average, of which this bench and its children {:.2}, \
             the rest {:.2} (other processes, and kernel time not charged to a process, \
             such as loopback softirq); steal {:.2}",
            per_second(all_busy),
            per_second(ours),
            per_second(all_busy.saturating_sub(ours)),
            per_second(steal.saturating_sub(steal_at_start))
        ),
    ));
    facts.push((
        "bench wall time".into(),
        format!("{:.0} s", elapsed.as_secs_f64()),
    ));

    let markdown = render(
        &facts,
        &statuses,
        &results,
        &started_kinds,
        &options,
        &tunnel_kinds,
        &frp,
    );
    let csv = report::csv(
        &results,
        &started_kinds,
        &statuses,
        options.tunnels,
        &tunnel_kinds,
    );
    let md_path = out_dir.join("results.md");
    let csv_path = out_dir.join("results.csv");
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

/// How this run was set up, for the report.
fn configuration(options: &Options, scale: &Scale, nofile: u64, paths: &Paths) -> machine::Facts {
    let mode = if options.quick { "--quick" } else { "full" };
    let program = |path: &Option<PathBuf>, pick: &str| match path {
        Some(p) => format!(
            "{} ({})",
            p.display(),
            machine::version_of(p, &["--version"], pick)
        ),
        None => "not found".into(),
    };
    let size = fs::metadata(&paths.tcpbridge).map_or(0, |m| m.len());
    vec![
        (
            "mode".into(),
            format!(
                "{mode}: {} measured rounds after {} warm-up round, interleaved chain by chain; \
                 median [min-max] over the rounds; bulk {} ms per run, request/response {} ms \
                 per run, {} new clients per TTFB run, {} probes per held/empty-pool run; \
                 idle-tunnel test: {} fresh relay+agent pairs, each given at most {} s to \
                 hold every tunnel",
                scale.runs,
                scale.warmup,
                scale.bulk.as_millis(),
                scale.rr.as_millis(),
                scale.ttfb_samples,
                scale.pool_samples,
                scale.tunnel_runs,
                scale.tunnel_limit.as_secs()
            ),
        ),
        (
            "tcpbridge".into(),
            format!(
                "{} ({size} bytes, {})",
                paths.tcpbridge.display(),
                machine::version_of(&paths.tcpbridge, &["--version"], "")
            ),
        ),
        (
            "tcpbridge settings".into(),
            format!(
                "`--buffer-size 16KiB` (the default: one ring per direction per session) and \
                 `-q` on forward, relay and agent; agent `--pool {POOL}`; relay+agent: TLS \
                 tunnels (`--tunnel-tls on`, the default: an identity generated at start-up, \
                 proofs bound to the channel, no pin); relay+agent plain: `--tunnel-tls off` \
                 on both; relay defaults \
                 otherwise (`--max-idle-tunnels 64 --max-handshakes 64 --pair-timeout 10s`); \
                 idle-tunnel test: relay `--max-idle-tunnels {n} --max-handshakes {n}`, agent \
                 `--pool {n}`; tcpbridge sets TCP_NODELAY on every socket",
                n = options.tunnels
            ),
        ),
        ("rathole".into(), program(&paths.rathole, "Version")),
        (
            "rathole settings".into(),
            format!(
                "tcp transport, `nodelay = true` on transport and service, one service, \
                 `default_token`; the server keeps {POOL} data channels ready (built in, \
                 TCP_POOL_SIZE); tokio multi-thread runtime, copy_bidirectional (8 KiB per \
                 direction); RUST_LOG=warn. `rathole noise`: transport `noise`, the default \
                 pattern Noise_NK_25519_ChaChaPoly_BLAKE2s, a keypair from `rathole --genkey`. \
                 `rathole tls`: transport `tls` (native-tls, OpenSSL), a P-256 ECDSA \
                 `localhost` certificate from a CA made with openssl for the run, PKCS#12 \
                 identity on the server, the CA as the client's trusted_root"
            ),
        ),
        ("bore".into(), program(&paths.bore, "")),
        (
            "bore settings".into(),
            "`bore server --bind-addr 127.0.0.1` (control port 7835) and `bore local --to \
             127.0.0.1 --port P`, both with a secret (an HMAC challenge on every connection \
             to the control port); no pool: each public client makes bore local open a new \
             authenticated connection to the server; tokio multi-thread runtime, \
             copy_bidirectional (8 KiB per direction); bore sets no TCP_NODELAY; it logs each \
             connection at info level (to a file)"
                .into(),
        ),
        (
            "load generator and backend".into(),
            "this process: blocking std sockets, one thread per connection, TCP_NODELAY; the \
             backend writes a 1-byte banner on accept, then echoes, sinks or sources; all \
             processes share the same cores"
                .into(),
        ),
        ("RLIMIT_NOFILE (raised to hard)".into(), nofile.to_string()),
    ]
}

fn render(
    facts: &machine::Facts,
    statuses: &Statuses,
    results: &Results,
    kinds: &[Kind],
    options: &Options,
    tunnel_kinds: &[Kind],
    frp: &str,
) -> String {
    let mut md =
        String::from("# tcpbridge NAT-traversal benchmark\n\n## Machine and configuration\n\n");
    md.push_str(&report::facts_table(facts));
    md.push_str("\n## Chains\n\n");
    md.push_str(&report::status_table(statuses));
    md.push_str(&format!("| frp tls | {frp} |\n"));
    let plain = [Kind::RelayPlain, Kind::Relay]
        .into_iter()
        .find(|k| kinds.contains(k));
    if let Some(ours) = plain {
        md.push_str(&format!(
            "\n## Against the aims (medians)\n\n{} at least 0.5x forward in throughput, \
             and ahead of rathole and bore (all without encryption{}).\n\n",
            ours.name(),
            if ours == Kind::Relay {
                ", except relay+agent: no plain chain in this run"
            } else {
                ""
            }
        ));
        md.push_str(&report::aims_table(
            results,
            ours,
            Kind::Forward,
            &[Kind::Rathole, Kind::Bore],
        ));
    }
    if kinds.contains(&Kind::Relay) {
        md.push_str(
            "\n## Against the aims with encryption (medians)\n\nrelay+agent (TLS tunnels) at \
             least 0.7x relay+agent plain in bulk throughput, and ahead of every encrypted \
             peer (rathole noise, rathole tls).\n\n",
        );
        md.push_str(&report::aims_table(
            results,
            Kind::Relay,
            Kind::RelayPlain,
            &[Kind::RatholeNoise, Kind::RatholeTls],
        ));
    }
    md.push_str(
        "\n## All figures\n\nMedian [min-max] over the measured rounds (one value: a single \
         sample). `x forward`: this chain's median over forward's (above 1: more of the \
         figure). MB = 10^6 bytes; latencies in microseconds; CPU is utime+stime of every \
         process of the chain (none for direct); public side = forward, relay, rathole \
         server, bore server; NAT side = agent, rathole client, bore local. TTFB = connect \
         to the backend's 1-byte banner, median of the run's clients. `empty pool`: the NAT \
         side is paused while 8 clients take every idle tunnel, then resumed right after one \
         more client connects (that client's TTFB). `held open`: 8 clients served and held, \
         then one more (the NAT side has refilled its pool by then).\n\n",
    );
    for (title, figures) in report::SECTIONS {
        md.push_str(&report::section_table(results, title, figures, kinds));
        md.push('\n');
    }
    for &kind in tunnel_kinds {
        md.push_str(&report::tunnels_table(results, options.tunnels, kind));
        md.push('\n');
    }
    md
}
