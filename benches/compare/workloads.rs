//! The workloads, their scale (`--quick` or full), and how one run of one
//! workload against one target turns into figures.
//!
//! Figures are named by plain strings (the `metric` column of the CSV). CPU
//! figures come from `/proc` deltas taken around the run: the proxy's process
//! tree, the load generator (this process) and the backend.

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use crate::load::{self, Direction};
use crate::procstat;
use crate::proxies::{Kind, Target};
use crate::stats::percentile;
use crate::syscalls::Counter;

pub const MB_PER_S: &str = "MB/s";
pub const PROXY_CPU_PER_GB: &str = "proxy CPU s/GB";
pub const LOADGEN_CPU_PER_GB: &str = "loadgen CPU s/GB";
pub const REQ_PER_S: &str = "req/s";
pub const P50: &str = "p50 us";
pub const P99: &str = "p99 us";
pub const P999: &str = "p99.9 us";
pub const CONN_PER_S: &str = "conn/s";
pub const ERRORS: &str = "errors";
pub const RSS: &str = "RSS MiB";
pub const PSS: &str = "PSS MiB";
pub const RSS_BEFORE: &str = "RSS before MiB";
pub const RSS_FRESH: &str = "RSS fresh MiB";
pub const PROXY_CORES: &str = "proxy cores";
pub const SYSCALLS_PER_MB: &str = "proxy syscalls/MB";
pub const SPLICE_PER_MB: &str = "proxy splice/MB";
pub const SYSCALLS_PER_REQ: &str = "proxy syscalls/req";
pub const RSS_PEAK: &str = "RSS peak MiB";
pub const RSS_AFTER: &str = "RSS after MiB";
pub const RSS_BACK_S: &str = "RSS back s";
pub const LOADGEN_CORES: &str = "loadgen cores";
pub const BACKEND_CORES: &str = "backend cores";

/// How long and how often each workload runs.
pub struct Scale {
    /// Length of one measured run of a timed workload.
    pub run: Duration,
    /// Length of the warm-up run (one per workload and target, not reported).
    pub warmup: Duration,
    /// Measured runs per workload and target.
    pub runs: usize,
    /// Idle session counts for the memory workload.
    pub idle_levels: Vec<usize>,
    /// Whether the memory workload gets a warm-up round too.
    pub idle_warmup: bool,
    /// Upper bound on sessions in one churn run.
    pub churn_cap: u64,
    /// Pause before reading memory, and after closing idle sessions.
    pub settle: Duration,
}

impl Scale {
    /// Under two minutes: short runs, and only the 5,000-session memory
    /// level, without its warm-up round.
    pub fn quick(runs: usize) -> Scale {
        Scale {
            run: Duration::from_millis(100),
            warmup: Duration::from_millis(50),
            runs,
            idle_levels: vec![5000],
            idle_warmup: false,
            churn_cap: 20_000,
            settle: Duration::from_millis(100),
        }
    }

    /// Under fifteen minutes.
    pub fn full(runs: usize) -> Scale {
        Scale {
            run: Duration::from_millis(1200),
            warmup: Duration::from_millis(400),
            runs,
            idle_levels: vec![1000, 5000],
            idle_warmup: true,
            churn_cap: 100_000,
            settle: Duration::from_millis(500),
        }
    }
}

/// One workload.
#[derive(Clone, Copy, Debug)]
pub enum Workload {
    /// `streams` connections moving data one way as fast as they can.
    Bulk {
        streams: usize,
        direction: Direction,
    },
    /// `connections` connections doing back-to-back echoes of `size` bytes.
    RequestResponse { connections: usize, size: usize },
    /// `threads` threads opening, using once and closing sessions.
    Churn { threads: usize },
    /// `sessions` open, idle sessions; the figure is the proxy's memory.
    Idle { sessions: usize },
}

/// Every workload, in the order they run.
pub fn all(scale: &Scale) -> Vec<Workload> {
    let mut workloads = Vec::new();
    for streams in [1, 8] {
        for direction in [Direction::Up, Direction::Down] {
            workloads.push(Workload::Bulk { streams, direction });
        }
    }
    for size in [1, 1024] {
        for connections in [1, 50, 400] {
            workloads.push(Workload::RequestResponse { connections, size });
        }
    }
    workloads.push(Workload::Churn { threads: 4 });
    for &sessions in &scale.idle_levels {
        workloads.push(Workload::Idle { sessions });
    }
    workloads
}

fn size_name(size: usize) -> String {
    if size % 1024 == 0 {
        format!("{}KiB", size / 1024)
    } else {
        format!("{size}B")
    }
}

impl Workload {
    /// Short stable name (the `workload` column of the CSV).
    pub fn id(&self) -> String {
        match *self {
            Workload::Bulk { streams, direction } => {
                let way = if direction == Direction::Up {
                    "up"
                } else {
                    "down"
                };
                format!("bulk-{way}-{streams}")
            }
            Workload::RequestResponse { connections, size } => {
                format!("rr-{}-c{connections}", size_name(size))
            }
            Workload::Churn { .. } => "churn".into(),
            Workload::Idle { sessions } => format!("idle-{sessions}"),
        }
    }

    pub fn title(&self) -> String {
        match *self {
            Workload::Bulk { streams, direction } => {
                let way = match direction {
                    Direction::Up => "client -> upstream",
                    Direction::Down => "upstream -> client",
                };
                let plural = if streams == 1 { "" } else { "s" };
                format!("Bulk throughput, {streams} stream{plural}, {way}")
            }
            Workload::RequestResponse { connections, size } => format!(
                "Request/response, {} messages, {connections} connection{}",
                size_name(size),
                if connections == 1 { "" } else { "s" }
            ),
            Workload::Churn { threads } => {
                format!("Connection churn ({threads} client threads; connect, 1-byte echo, close)")
            }
            Workload::Idle { sessions } => format!("Idle footprint, {sessions} idle sessions"),
        }
    }

    /// The headline figure, shown with its range and ratios.
    pub fn primary(&self) -> &'static str {
        match self {
            Workload::Bulk { .. } => MB_PER_S,
            Workload::RequestResponse { .. } => REQ_PER_S,
            Workload::Churn { .. } => CONN_PER_S,
            Workload::Idle { .. } => RSS,
        }
    }

    /// Further figures shown (as medians) in the markdown table.
    pub fn secondary(&self) -> &'static [&'static str] {
        match self {
            Workload::Bulk { streams: 1, .. } => &[
                PROXY_CPU_PER_GB,
                SYSCALLS_PER_MB,
                SPLICE_PER_MB,
                LOADGEN_CPU_PER_GB,
                PROXY_CORES,
                LOADGEN_CORES,
            ],
            Workload::Bulk { .. } => &[
                PROXY_CPU_PER_GB,
                SYSCALLS_PER_MB,
                SPLICE_PER_MB,
                RSS_BEFORE,
                RSS_PEAK,
                RSS_AFTER,
                RSS_BACK_S,
                LOADGEN_CPU_PER_GB,
                PROXY_CORES,
                LOADGEN_CORES,
            ],
            Workload::RequestResponse { .. } => {
                &[P50, P99, P999, SYSCALLS_PER_REQ, PROXY_CORES, LOADGEN_CORES]
            }
            Workload::Churn { .. } => &[ERRORS, PROXY_CORES, LOADGEN_CORES],
            Workload::Idle { .. } => &[RSS_BEFORE, RSS_FRESH, PSS],
        }
    }

    /// Whether `target` takes part (a direct connection has no memory of its own;
    /// two processes sharing a port are compared on 8-stream bulk only).
    pub fn applies_to(&self, target: &Target) -> bool {
        if target.kind == Kind::TcpbridgeX2 {
            return matches!(self, Workload::Bulk { streams, .. } if *streams > 1);
        }
        !matches!(self, Workload::Idle { .. }) || target.pid().is_some()
    }

    /// Whether this workload has a warm-up round at `scale`.
    pub fn warms_up(&self, scale: &Scale) -> bool {
        !matches!(self, Workload::Idle { .. }) || scale.idle_warmup
    }
}

/// CPU clocks read before and after a run.
struct CpuClocks {
    at: Instant,
    proxy: Duration,
    loadgen: Duration,
    backend: Duration,
}

impl CpuClocks {
    fn read(proxy: &[u32], backend: u32) -> CpuClocks {
        CpuClocks {
            at: Instant::now(),
            proxy: proxy.iter().map(|&pid| procstat::tree_cpu(pid)).sum(),
            loadgen: procstat::self_cpu(),
            backend: procstat::tree_cpu(backend),
        }
    }
}

/// The figures of one run.
pub type Figures = Vec<(&'static str, f64)>;

/// Runs `workload` once against `target` (for `duration` when it is timed).
pub fn measure(
    workload: Workload,
    target: &Target,
    backend_pid: u32,
    duration: Duration,
    scale: &Scale,
) -> Result<Figures, String> {
    let proxy = target.pid();
    let pids: Vec<u32> = target.pids().into_iter().flat_map(procstat::tree).collect();
    let rss = || -> u64 { target.pids().into_iter().map(procstat::tree_rss_kib).sum() };
    let rss_before = rss();
    // Syscalls are counted where there is a proxy and the run moves bytes or requests.
    let counter = match workload {
        Workload::Bulk { .. } | Workload::RequestResponse { .. } if proxy.is_some() => {
            match Counter::start(&pids, &std::env::temp_dir()) {
                Ok(counter) => Some(counter),
                Err(why) => {
                    eprintln!("   syscalls not counted: {why}");
                    None
                }
            }
        }
        _ => None,
    };
    let before = CpuClocks::read(&target.pids(), backend_pid);
    let mut bulk_bytes = None;
    let mut requests = None;
    let mut figures = match workload {
        Workload::Bulk { streams, direction } => {
            let transfer =
                load::bulk(target.addr, streams, direction, duration).map_err(|e| e.to_string())?;
            bulk_bytes = Some(transfer.bytes);
            vec![(
                MB_PER_S,
                transfer.bytes as f64 / transfer.elapsed.as_secs_f64() / 1e6,
            )]
        }
        Workload::RequestResponse { connections, size } => {
            let trips = load::request_response(target.addr, connections, size, duration)
                .map_err(|e| e.to_string())?;
            requests = Some(trips.count);
            let micros = |p: f64| percentile(&trips.latencies_ns, p) as f64 / 1000.0;
            vec![
                (REQ_PER_S, trips.count as f64 / trips.elapsed.as_secs_f64()),
                (P50, micros(50.0)),
                (P99, micros(99.0)),
                (P999, micros(99.9)),
            ]
        }
        Workload::Churn { threads } => {
            let churn = load::churn(target.addr, threads, duration, scale.churn_cap)
                .map_err(|e| e.to_string())?;
            if churn.sessions == 0 {
                return Err(churn
                    .first_error
                    .unwrap_or_else(|| "no session completed".into()));
            }
            vec![
                (
                    CONN_PER_S,
                    churn.sessions as f64 / churn.elapsed.as_secs_f64(),
                ),
                (ERRORS, churn.errors as f64),
            ]
        }
        Workload::Idle { sessions } => {
            let pid = proxy.ok_or("no proxy process")?;
            return idle(target, pid, sessions, scale.settle);
        }
    };
    let after = CpuClocks::read(&target.pids(), backend_pid);
    if let Some(counts) = counter
        .map(Counter::finish)
        .transpose()
        .unwrap_or_else(|why| {
            eprintln!("   syscalls not counted: {why}");
            None
        })
    {
        if let Some(bytes) = bulk_bytes.filter(|b| *b > 0) {
            let mb = bytes as f64 / 1e6;
            figures.push((SYSCALLS_PER_MB, counts.total as f64 / mb));
            figures.push((SPLICE_PER_MB, counts.splice as f64 / mb));
        }
        if let Some(n) = requests.filter(|n| *n > 0) {
            figures.push((SYSCALLS_PER_REQ, counts.total as f64 / n as f64));
        }
    }
    if let Workload::Bulk { streams, .. } = workload {
        if streams > 1 && proxy.is_some() {
            figures.extend(rss_after_load(rss_before, &rss));
        }
    }
    let wall = (after.at - before.at).as_secs_f64();
    let cores = |a: Duration, b: Duration| a.saturating_sub(b).as_secs_f64() / wall;
    if proxy.is_some() {
        figures.push((PROXY_CORES, cores(after.proxy, before.proxy)));
    }
    figures.push((LOADGEN_CORES, cores(after.loadgen, before.loadgen)));
    figures.push((BACKEND_CORES, cores(after.backend, before.backend)));
    if let Some(bytes) = bulk_bytes {
        let gigabytes = bytes as f64 / 1e9;
        let per_gb = |a: Duration, b: Duration| a.saturating_sub(b).as_secs_f64() / gigabytes;
        if proxy.is_some() {
            figures.push((PROXY_CPU_PER_GB, per_gb(after.proxy, before.proxy)));
        }
        figures.push((LOADGEN_CPU_PER_GB, per_gb(after.loadgen, before.loadgen)));
    }
    Ok(figures)
}

/// How long the proxy's RSS takes to come back within 2 MiB of `before` once a
/// load has ended (polled every 100 ms for up to 5 s; `RSS back s` is 5.0 and
/// `RSS after` the last reading when it did not).
fn rss_after_load(before: u64, rss: &dyn Fn() -> u64) -> Figures {
    let started = Instant::now();
    let peak = rss();
    let mut now = peak;
    while now > before + 2048 && started.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(100));
        now = rss();
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    vec![
        (RSS_BEFORE, mib(before)),
        (RSS_PEAK, mib(peak.max(now))),
        (RSS_AFTER, mib(now)),
        (RSS_BACK_S, started.elapsed().as_secs_f64()),
    ]
}

/// RSS and PSS with `sessions` idle sessions open, beside the RSS just
/// before they were opened (after the earlier workloads) and just after the
/// target started.
fn idle(target: &Target, pid: u32, sessions: usize, settle: Duration) -> Result<Figures, String> {
    let before = procstat::tree_rss_kib(pid);
    let streams: Vec<TcpStream> =
        load::open_echo_sessions(target.addr, sessions).map_err(|e| e.to_string())?;
    thread::sleep(settle);
    let rss = procstat::tree_rss_kib(pid);
    let pss = procstat::tree_pss_kib(pid);
    drop(streams);
    thread::sleep(settle);
    let mib = |kib: u64| kib as f64 / 1024.0;
    let mut figures = vec![(RSS, mib(rss)), (PSS, mib(pss)), (RSS_BEFORE, mib(before))];
    figures.extend(target.fresh_rss_kib.map(|kib| (RSS_FRESH, mib(kib))));
    Ok(figures)
}
