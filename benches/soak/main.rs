//! `cargo bench --bench soak`: churns sessions through one tcpbridge forwarder
//! for a long time and watches it for leaks and corruption.
//!
//! ```text
//! cargo bench --bench soak -- [--quick] [--sessions N] [--seconds S]
//!                             [--concurrency C] [--seed X] [--reset-policy mirror|fin]
//!                             [--out DIR]
//! ```
//!
//! `C` client threads each loop: connect through the proxy, send a header and a
//! seeded payload of random size (0 to 256 KiB, skewed small) while the upstream
//! answers with its own seeded payload, then end the session at random: client
//! FIN, upstream FIN, client RST or upstream RST (SO_LINGER 0) after a random
//! number of bytes. Both peers check every byte they receive against the seed
//! (see [`plan`] and [`peer`]). Every second the bench samples the proxy's
//! descriptor count, RSS, live sessions (`/metrics`) and sessions done into
//! `samples.csv`; at the end it waits for the proxy to be quiet and records the
//! final descriptor count and whether `accepted == closed`, in `summary.md`.
//!
//! It stops after `N` sessions (default 1,000,000) or `S` seconds (default
//! 1,200), whichever comes first; `--quick` is 20 seconds. Exits 1 when a byte
//! was wrong, a FIN ending came up short, or the proxy did not return to its
//! baseline. tcpbridge itself: `TCPBRIDGE_BIN` when set, otherwise `tcpbridge`
//! in the profile directory above this executable, as for the `compare` bench.

#[path = "../common/child.rs"]
mod child;
#[path = "../common/host.rs"]
#[allow(dead_code)] // shared with the other benches
mod host;
mod peer;
mod plan;
mod proxy;
mod report;
mod tally;

use std::env;
use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use plan::Plan;
use proxy::Proxy;
use tally::Tally;

/// Sessions run before the baseline is taken (included in the totals).
pub const WARM_UP: u64 = 8;

const USAGE: &str = "usage: cargo bench --bench soak -- [--quick] [--sessions N] \
[--seconds S] [--concurrency C] [--seed X] [--reset-policy mirror|fin] [--out DIR]";

pub struct Options {
    pub sessions: u64,
    pub seconds: u64,
    pub concurrency: usize,
    pub seed: u64,
    pub reset_policy: String,
    out: Option<PathBuf>,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        sessions: 1_000_000,
        seconds: 1_200,
        concurrency: 64,
        seed: 0x50A4,
        reset_policy: "mirror".into(),
        out: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().cloned().ok_or(format!("{flag} needs a value"));
        let number = |flag: &str, text: String| -> Result<u64, String> {
            let digits = text.trim_start_matches("0x");
            let radix = if digits.len() < text.len() { 16 } else { 10 };
            u64::from_str_radix(&digits.replace('_', ""), radix)
                .map_err(|_| format!("{flag}: bad number {text:?}"))
        };
        match arg.as_str() {
            // cargo passes --bench to harness=false benches.
            "--bench" => {}
            "--quick" => options.seconds = 20,
            "--sessions" => options.sessions = number(arg, value(arg)?)?,
            "--seconds" => options.seconds = number(arg, value(arg)?)?,
            "--concurrency" => options.concurrency = number(arg, value(arg)?)?.max(1) as usize,
            "--seed" => options.seed = number(arg, value(arg)?)?,
            "--reset-policy" => options.reset_policy = value(arg)?,
            "--out" => options.out = Some(PathBuf::from(value(arg)?)),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    let options = parse_options(&args).unwrap_or_else(|e| {
        eprintln!("error: {e}\n{USAGE}");
        process::exit(2)
    });
    match run(&options) {
        Ok(true) => process::exit(0),
        Ok(false) => process::exit(1),
        Err(e) => {
            eprintln!("error: {e}");
            process::exit(1)
        }
    }
}

/// Accepts upstream connections on `threads` threads, one session at a time each.
fn start_upstream(
    threads: usize,
    seed: u64,
    pool: &Arc<Vec<u8>>,
    tally: &Arc<Tally>,
) -> Result<std::net::SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let listener = Arc::new(listener);
    for _ in 0..threads {
        let (listener, pool, tally) = (listener.clone(), pool.clone(), tally.clone());
        thread::spawn(move || loop {
            if let Ok((stream, _)) = listener.accept() {
                peer::upstream_session(stream, seed, &pool, &tally);
            }
        });
    }
    Ok(addr)
}

fn run(options: &Options) -> Result<bool, String> {
    let nofile = host::raise_nofile_limit();
    let exe = env::current_exe().map_err(|e| e.to_string())?;
    let target_dir = child::target_dir(&exe)?;
    let out = options
        .out
        .clone()
        .unwrap_or_else(|| target_dir.join("bench-soak"));
    fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let binary = child::tcpbridge_binary(&exe);
    let pool = Arc::new(plan::pool(options.seed));
    let tally = Arc::new(Tally::default());
    let upstream = start_upstream(options.concurrency + 16, options.seed, &pool, &tally)?;
    let mut proxy = Proxy::start(
        &binary,
        upstream,
        &options.reset_policy,
        &out.join("tcpbridge.log"),
    )?;
    eprintln!(
        "soak: tcpbridge pid {} on {} (metrics {}), upstream {upstream}, nofile {nofile}",
        proxy.pid(),
        proxy.listen,
        proxy.metrics
    );

    // Warm-up: a few sessions (numbered from the top, counted like the others),
    // then the baseline.
    for number in 0..WARM_UP {
        let plan = Plan::new(options.seed, u64::MAX - number);
        peer::client_session(proxy.listen, &plan, &pool, &tally);
    }
    let (_, _, mut baseline_fds) = proxy.quiesce(u64::MAX, Duration::from_secs(5));
    for _ in 0..5 {
        thread::sleep(Duration::from_millis(100));
        baseline_fds = baseline_fds.min(proxy.fds());
    }
    let load_before = report::loadavg();
    let baseline_rss = proxy.status_kib("VmRSS");
    let host_before = host::machine_busy_and_steal();
    let cpu_before = proxy.cpu_ticks();

    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.seconds);
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..options.concurrency {
        let (next, stop, pool, tally) = (next.clone(), stop.clone(), pool.clone(), tally.clone());
        let (listen, seed, limit) = (proxy.listen, options.seed, options.sessions);
        clients.push(thread::spawn(move || {
            while !stop.load(Relaxed) {
                let number = next.fetch_add(1, Relaxed);
                if number + WARM_UP >= limit {
                    break;
                }
                peer::client_session(listen, &Plan::new(seed, number), &pool, &tally);
            }
        }));
    }

    let mut sampler = report::Sampler::new(&out.join("samples.csv"))?;
    let mut tick = started;
    while Instant::now() < deadline && tally.sessions.load(Relaxed) < options.sessions {
        tick += Duration::from_secs(1);
        thread::sleep(tick.saturating_duration_since(Instant::now()));
        sampler.sample(started, &proxy, &tally)?;
        if let Some(status) = proxy.exited() {
            return Err(format!("tcpbridge exited during the soak: {status}"));
        }
    }
    stop.store(true, Relaxed);
    for client in clients {
        let _ = client.join();
    }
    let elapsed = started.elapsed();
    sampler.sample(started, &proxy, &tally)?;
    let (quiet, metrics, final_fds) = proxy.quiesce(baseline_fds, Duration::from_secs(60));
    sampler.sample(started, &proxy, &tally)?;
    let host_after = host::machine_busy_and_steal();
    let finish = report::Finish {
        elapsed,
        quiet,
        metrics,
        baseline_fds,
        final_fds,
        baseline_rss_kib: baseline_rss,
        final_rss_kib: proxy.status_kib("VmRSS"),
        hwm_kib: proxy.status_kib("VmHWM"),
        proxy_cpu: host::ticks_to_duration(proxy.cpu_ticks().saturating_sub(cpu_before)),
        host_busy: host_after.0.saturating_sub(host_before.0),
        host_steal: host_after.1.saturating_sub(host_before.1),
        exited: proxy.exited(),
        load_before,
        load_after: report::loadavg(),
    };
    let text = report::summary(options, &tally, &sampler, &finish);
    fs::write(out.join("summary.md"), &text).map_err(|e| e.to_string())?;
    println!("{text}");
    eprintln!("soak: wrote {}", out.display());
    Ok(tally.mismatches() == 0 && quiet && finish.exited.is_none())
}
