//! The figures and the workloads that produce them. A workload runs once on
//! one chain and returns `(figure id, value)` pairs; [`crate::matrix`] runs
//! it in interleaved rounds over every chain.

use std::thread;
use std::time::Duration;

use crate::chains::{Chain, Frozen, Kind, POOL};
use crate::load;
use crate::procfs;
use crate::stats;

/// Which way a figure is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// One reported number.
pub struct Figure {
    pub id: &'static str,
    pub label: &'static str,
    pub better: Better,
    /// Also reported as a ratio to forward mode.
    pub ratio: bool,
}

const fn fig(id: &'static str, label: &'static str, better: Better, ratio: bool) -> Figure {
    Figure {
        id,
        label,
        better,
        ratio,
    }
}

use Better::{Higher, Lower};

pub const BULK: &[Figure] = &[
    fig("up_mbps", "upload MB/s", Higher, true),
    fig("down_mbps", "download MB/s", Higher, true),
    fig(
        "up_cpu_s_per_gb",
        "upload: CPU s per GB (chain)",
        Lower,
        false,
    ),
    fig(
        "down_cpu_s_per_gb",
        "download: CPU s per GB (chain)",
        Lower,
        false,
    ),
];
pub const RR: &[Figure] = &[
    fig("rr1_rps", "1 conn: requests/s", Higher, true),
    fig("rr1_p50_us", "1 conn: p50 latency us", Lower, true),
    fig("rr1_p99_us", "1 conn: p99 latency us", Lower, true),
    fig("rr50_rps", "50 conns: requests/s", Higher, true),
    fig("rr50_p50_us", "50 conns: p50 latency us", Lower, true),
    fig("rr50_p99_us", "50 conns: p99 latency us", Lower, true),
];
pub const TTFB: &[Figure] = &[
    fig(
        "ttfb_new_us",
        "new client, normal path: TTFB us",
        Lower,
        false,
    ),
    fig(
        "ttfb_empty_us",
        "new client, empty pool: TTFB us",
        Lower,
        false,
    ),
    fig(
        "ttfb_held_us",
        "new client while 8 others are held open: TTFB us",
        Lower,
        false,
    ),
];
pub const MEMORY: &[Figure] = &[
    fig(
        "rss_fresh_public_kib",
        "idle, public side KiB",
        Lower,
        false,
    ),
    fig("rss_fresh_nat_kib", "idle, NAT side KiB", Lower, false),
    fig("rss_fresh_total_kib", "idle, chain total KiB", Lower, false),
    fig(
        "rss50_public_kib",
        "50 idle sessions, public side KiB",
        Lower,
        false,
    ),
    fig(
        "rss50_nat_kib",
        "50 idle sessions, NAT side KiB",
        Lower,
        false,
    ),
    fig(
        "rss50_total_kib",
        "50 idle sessions, chain total KiB",
        Lower,
        false,
    ),
    fig(
        "rss_after_total_kib",
        "idle after all load, chain total KiB",
        Lower,
        false,
    ),
];
pub const TUNNELS: &[Figure] = &[
    fig(
        "tun_relay_rss0_kib",
        "relay RSS, no tunnel KiB",
        Lower,
        false,
    ),
    fig(
        "tun_relay_rss_kib",
        "relay RSS, idle tunnels held KiB",
        Lower,
        false,
    ),
    fig(
        "tun_per_tunnel_b",
        "relay RSS per idle tunnel B",
        Lower,
        false,
    ),
    fig(
        "tun_agent_rss_kib",
        "agent RSS, idle tunnels held KiB",
        Lower,
        false,
    ),
    fig("tun_relay_fds", "relay open descriptors", Lower, false),
    fig(
        "tun_established",
        "tunnels held (relay's ESTABLISHED sockets on the tunnel port)",
        Higher,
        false,
    ),
    fig(
        "tun_setup_ms",
        "time until the relay held them all ms",
        Lower,
        false,
    ),
];

/// How long and how often.
#[derive(Clone, Debug)]
pub struct Scale {
    pub runs: usize,
    pub warmup: usize,
    pub bulk: Duration,
    pub rr: Duration,
    /// New clients per run for the normal-path TTFB.
    pub ttfb_samples: usize,
    /// Probes per run for the held and empty-pool TTFB.
    pub pool_samples: usize,
    pub idle_sessions: usize,
    /// Fresh relay and agent pairs for the idle-tunnel test.
    pub tunnel_runs: usize,
    /// How long the relay may take to hold every idle tunnel.
    pub tunnel_limit: Duration,
}

impl Scale {
    pub fn quick(runs: usize) -> Scale {
        Scale {
            runs,
            warmup: 1,
            bulk: Duration::from_millis(500),
            rr: Duration::from_millis(500),
            ttfb_samples: 10,
            pool_samples: 3,
            idle_sessions: 50,
            tunnel_runs: 3,
            tunnel_limit: Duration::from_secs(10),
        }
    }

    pub fn full(runs: usize) -> Scale {
        Scale {
            runs,
            warmup: 1,
            bulk: Duration::from_millis(1500),
            rr: Duration::from_millis(1500),
            ttfb_samples: 30,
            pool_samples: 8,
            idle_sessions: 50,
            tunnel_runs: 3,
            tunnel_limit: Duration::from_secs(80),
        }
    }
}

type Values = Vec<(&'static str, f64)>;

/// One workload: which chains it applies to, the figures it produces, and
/// how to run it once.
pub struct Workload {
    pub name: &'static str,
    pub figures: &'static [&'static str],
    pub applies: fn(Kind) -> bool,
    pub run: fn(&mut Chain, &Scale) -> Result<Values, String>,
}

fn any(_: Kind) -> bool {
    true
}

fn proxied(kind: Kind) -> bool {
    kind != Kind::Direct
}

fn pooled(kind: Kind) -> bool {
    kind.has_pool()
}

/// Every workload, in the order they run.
pub fn all() -> Vec<Workload> {
    vec![
        Workload {
            name: "idle sessions",
            figures: &["rss50_public_kib", "rss50_nat_kib", "rss50_total_kib"],
            applies: proxied,
            run: idle_sessions,
        },
        Workload {
            name: "ttfb new",
            figures: &["ttfb_new_us"],
            applies: any,
            run: ttfb_new,
        },
        Workload {
            name: "ttfb held",
            figures: &["ttfb_held_us"],
            applies: pooled,
            run: ttfb_held,
        },
        Workload {
            name: "ttfb empty",
            figures: &["ttfb_empty_us"],
            applies: pooled,
            run: ttfb_empty,
        },
        Workload {
            name: "rr 1",
            figures: &["rr1_rps", "rr1_p50_us", "rr1_p99_us"],
            applies: any,
            run: rr1,
        },
        Workload {
            name: "rr 50",
            figures: &["rr50_rps", "rr50_p50_us", "rr50_p99_us"],
            applies: any,
            run: rr50,
        },
        Workload {
            name: "bulk up",
            figures: &["up_mbps", "up_cpu_s_per_gb"],
            applies: any,
            run: bulk_up,
        },
        Workload {
            name: "bulk down",
            figures: &["down_mbps", "down_cpu_s_per_gb"],
            applies: any,
            run: bulk_down,
        },
    ]
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn kib(pid: Option<u32>) -> Option<f64> {
    pid.and_then(procfs::rss_kib).map(|k| k as f64)
}

/// RSS of the public side, the NAT side and the whole chain, as figures
/// with the given ids (a side the chain does not have is left out).
pub fn rss_values(chain: &Chain, ids: [&'static str; 3]) -> Values {
    let public = kib(chain.public_pid());
    let nat = kib(chain.nat_pid());
    let mut values = Vec::new();
    if let Some(p) = public {
        values.push((ids[0], p));
    }
    if let Some(n) = nat {
        values.push((ids[1], n));
    }
    if public.is_some() {
        values.push((ids[2], public.unwrap_or(0.0) + nat.unwrap_or(0.0)));
    }
    values
}

fn idle_sessions(chain: &mut Chain, scale: &Scale) -> Result<Values, String> {
    let sessions = load::open_echo_sessions(chain.addr, scale.idle_sessions).map_err(err)?;
    thread::sleep(Duration::from_millis(300));
    let values = rss_values(
        chain,
        ["rss50_public_kib", "rss50_nat_kib", "rss50_total_kib"],
    );
    drop(sessions);
    thread::sleep(Duration::from_millis(200));
    Ok(values)
}

fn micros(d: Duration) -> u64 {
    d.as_nanos() as u64 / 1000
}

fn ttfb_new(chain: &mut Chain, scale: &Scale) -> Result<Values, String> {
    let mut samples = Vec::with_capacity(scale.ttfb_samples);
    for _ in 0..scale.ttfb_samples {
        samples.push(micros(load::time_to_first_byte(chain.addr).map_err(err)?));
        // Lets a pool refill, as between unrelated clients.
        thread::sleep(Duration::from_millis(5));
    }
    Ok(vec![(
        "ttfb_new_us",
        stats::median_u64(&mut samples) as f64,
    )])
}

/// The method as first specified: hold `POOL` clients open (each served),
/// then time one more. The NAT side refills its pool as each is paired, so
/// this shows whether the pool is empty at that point.
fn ttfb_held(chain: &mut Chain, scale: &Scale) -> Result<Values, String> {
    let mut samples = Vec::with_capacity(scale.pool_samples);
    for _ in 0..scale.pool_samples {
        let mut held = Vec::with_capacity(POOL);
        for _ in 0..POOL {
            let mut stream = load::connect(chain.addr).map_err(err)?;
            load::read_banner(&mut stream).map_err(err)?;
            held.push(stream);
        }
        thread::sleep(Duration::from_millis(20));
        samples.push(micros(load::time_to_first_byte(chain.addr).map_err(err)?));
        drop(held);
        thread::sleep(Duration::from_millis(30));
    }
    Ok(vec![(
        "ttfb_held_us",
        stats::median_u64(&mut samples) as f64,
    )])
}

/// A client that finds no idle tunnel (data channel): the NAT side is paused
/// (SIGSTOP) while `POOL` clients take every idle one, the probe connects,
/// and the NAT side is resumed (SIGCONT) as soon as the probe's connect
/// returns. The probe's pairing then waits for the NAT side to dial,
/// authenticate and attach a fresh tunnel; the same wake-up also serves the
/// `POOL` paired clients, which is part of what a burst costs.
fn ttfb_empty(chain: &mut Chain, scale: &Scale) -> Result<Values, String> {
    let nat = chain.nat_pid().ok_or("no NAT-side process")?;
    let mut samples = Vec::with_capacity(scale.pool_samples);
    for _ in 0..scale.pool_samples {
        let frozen = Frozen::new(nat).map_err(err)?;
        let mut held = Vec::with_capacity(POOL);
        for _ in 0..POOL {
            held.push(load::connect(chain.addr).map_err(err)?);
        }
        // The public side pairs each with an idle tunnel meanwhile.
        thread::sleep(Duration::from_millis(30));
        let start = std::time::Instant::now();
        let mut probe = load::connect(chain.addr).map_err(err)?;
        drop(frozen);
        load::read_banner(&mut probe).map_err(err)?;
        samples.push(micros(start.elapsed()));
        for stream in &mut held {
            load::read_banner(stream).map_err(|e| format!("a held client: {e}"))?;
        }
        drop(held);
        drop(probe);
        thread::sleep(Duration::from_millis(50));
    }
    Ok(vec![(
        "ttfb_empty_us",
        stats::median_u64(&mut samples) as f64,
    )])
}

fn rr(
    chain: &Chain,
    connections: usize,
    scale: &Scale,
    ids: [&'static str; 3],
) -> Result<Values, String> {
    let trips = load::request_response(chain.addr, connections, scale.rr).map_err(err)?;
    if trips.count == 0 {
        return Err("no round trip completed".into());
    }
    let per_second = trips.count as f64 / trips.elapsed.as_secs_f64();
    let p50 = stats::percentile(&trips.latencies_ns, 50.0) as f64 / 1000.0;
    let p99 = stats::percentile(&trips.latencies_ns, 99.0) as f64 / 1000.0;
    Ok(vec![(ids[0], per_second), (ids[1], p50), (ids[2], p99)])
}

fn rr1(chain: &mut Chain, scale: &Scale) -> Result<Values, String> {
    rr(chain, 1, scale, ["rr1_rps", "rr1_p50_us", "rr1_p99_us"])
}

fn rr50(chain: &mut Chain, scale: &Scale) -> Result<Values, String> {
    rr(chain, 50, scale, ["rr50_rps", "rr50_p50_us", "rr50_p99_us"])
}

fn bulk(
    chain: &Chain,
    transfer: impl FnOnce() -> std::io::Result<load::Transfer>,
    ids: [&'static str; 2],
) -> Result<Values, String> {
    let pids = chain.pids();
    let cpu_before = procfs::cpu_sum(&pids);
    let moved = transfer().map_err(err)?;
    let cpu = procfs::cpu_sum(&pids).saturating_sub(cpu_before);
    let mut values = vec![(
        ids[0],
        moved.bytes as f64 / 1e6 / moved.elapsed.as_secs_f64(),
    )];
    if !pids.is_empty() && moved.bytes > 0 {
        values.push((ids[1], cpu.as_secs_f64() / (moved.bytes as f64 / 1e9)));
    }
    Ok(values)
}

fn bulk_up(chain: &mut Chain, scale: &Scale) -> Result<Values, String> {
    let (addr, d) = (chain.addr, scale.bulk);
    bulk(
        chain,
        || load::upload(addr, d),
        ["up_mbps", "up_cpu_s_per_gb"],
    )
}

fn bulk_down(chain: &mut Chain, scale: &Scale) -> Result<Values, String> {
    let (addr, d) = (chain.addr, scale.bulk);
    bulk(
        chain,
        || load::download(addr, d),
        ["down_mbps", "down_cpu_s_per_gb"],
    )
}
