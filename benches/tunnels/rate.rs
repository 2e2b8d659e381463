//! Section 1: new tunnels per second. A tunnel: connect to the proxy, its handshake
//! ([`client::open`]), one 64-byte request to the destination server (`R`), its
//! 64-byte answer, then the destination closes, the proxy passes the close on, and the
//! client closes when it reads EOF. [`CLIENTS`] client threads, each opening tunnels
//! back to back until the run's deadline. The tunnel's time runs from just before
//! `connect` to the last byte of the answer.
//!
//! The destination closes first so that TIME_WAIT lands on the listening ports' side
//! of each connection: when the client closed first, the proxy's and the clients'
//! ephemeral ports stayed held for a minute, and Dante, which binds its outgoing socket
//! to its external address before it connects, ran out of them within a run (its
//! log: "could not bind tcp port ...: we have run out of free ports"), whichever
//! target had run before it.
//!
//! Every target is started once, checked, then one warm-up round (not recorded) and
//! the measured rounds, each visiting the targets in turn (A B C, A B C...). The
//! proxy's CPU (`utime + stime + cutime + cstime` summed over its process tree) is read
//! before and after each run. Then, when `perf` is there, one more run per target with
//! its syscalls counted ([`rate_syscalls`]).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use crate::client::{self, Protocol};
use crate::results::{num, range, ratio, Results};
use crate::stats::percentile;
use crate::targets::{self, Found, Running};
use crate::{perf, procstat, rate_syscalls, Ctx, Scale};

pub const SECTION: &str = "rate";
/// Concurrent client loops.
pub const CLIENTS: usize = 8;
/// Bytes of the message echoed through each tunnel.
pub const MESSAGE: usize = 64;
/// The one case of the section.
pub const CASE: &str = "c8";
/// Failed tunnels after which a client gives up its run.
const MAX_ERRORS: u64 = 50;
/// Stack of each client thread.
const THREAD_STACK: usize = 256 * 1024;

/// What one run did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub tunnels: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Each tunnel's time, in microseconds, ascending.
    pub times_us: Vec<u64>,
    pub first_error: Option<String>,
}

impl Outcome {
    pub fn per_second(&self) -> f64 {
        self.tunnels as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One tunnel; its time.
fn tunnel(proxy: SocketAddr, protocol: Protocol, dest: SocketAddr) -> io::Result<Duration> {
    let started = Instant::now();
    let mut stream = client::open(proxy, protocol, dest)?;
    let mut message = [b'x'; MESSAGE + 3];
    message[0] = b'R';
    message[1..3].copy_from_slice(&(MESSAGE as u16).to_be_bytes());
    stream.write_all(&message)?;
    let mut echo = [0u8; MESSAGE];
    stream.read_exact(&mut echo)?;
    let took = started.elapsed();
    if echo[..] != message[3..] {
        return Err(io::Error::other("wrong bytes echoed"));
    }
    // The destination's close, passed on by the proxy.
    let mut more = [0u8; 1];
    match stream.read(&mut more)? {
        0 => Ok(took),
        _ => Err(io::Error::other("bytes after the answer")),
    }
}

fn client_loop(
    proxy: SocketAddr,
    protocol: Protocol,
    dest: SocketAddr,
    deadline: Instant,
    max: u64,
) -> Outcome {
    let mut out = Outcome::default();
    while out.tunnels < max && out.errors < MAX_ERRORS && Instant::now() < deadline {
        match tunnel(proxy, protocol, dest) {
            Ok(took) => {
                out.tunnels += 1;
                out.times_us
                    .push(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    out
}

/// [`CLIENTS`] loops against `proxy` for at most `run` and `max` tunnels in all.
pub fn load(
    proxy: SocketAddr,
    protocol: Protocol,
    dest: SocketAddr,
    run: Duration,
    max: u64,
) -> Outcome {
    let started = Instant::now();
    let deadline = started + run;
    let per_client = max.div_ceil(CLIENTS as u64);
    let outcomes: Vec<Outcome> = thread::scope(|scope| {
        let handles: Vec<_> = (0..CLIENTS)
            .filter_map(|_| {
                thread::Builder::new()
                    .stack_size(THREAD_STACK)
                    .spawn_scoped(scope, move || {
                        client_loop(proxy, protocol, dest, deadline, per_client)
                    })
                    .ok()
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut all = Outcome::default();
    for o in outcomes {
        all.tunnels += o.tunnels;
        all.errors += o.errors;
        all.times_us.extend(o.times_us);
        if all.first_error.is_none() {
            all.first_error = o.first_error;
        }
    }
    all.elapsed = started.elapsed();
    all.times_us.sort_unstable();
    all
}

/// Runs the section, recording into `results`; what could not run goes to `notes`.
pub fn run(
    ctx: &Ctx,
    scale: &Scale,
    found: &[Found],
    results: &mut Results,
    notes: &mut Vec<String>,
) {
    let (running, failed) = targets::start_all(ctx, found, SECTION);
    notes.extend(failed);
    for round in 0..=scale.runs {
        for target in &running {
            let run_for = if round == 0 { scale.warmup } else { scale.run };
            let cpu_before = procstat::tree_cpu(target.pid());
            let outcome = load(
                target.addr,
                target.protocol,
                ctx.dest,
                run_for,
                scale.max_tunnels,
            );
            let cpu = procstat::tree_cpu(target.pid()).saturating_sub(cpu_before);
            if let Some(e) = &outcome.first_error {
                eprintln!(
                    "rate {}: {} errors, first: {e}",
                    target.name, outcome.errors
                );
                if round > 0 {
                    notes.push(format!(
                        "{} round {round}: {} failed tunnels, first: {e}",
                        target.name, outcome.errors
                    ));
                }
            }
            if round > 0 {
                record(results, target, &outcome, cpu);
                eprintln!(
                    "rate round {round} {:<18} {:>8.0} tunnels/s",
                    target.name,
                    outcome.per_second()
                );
            }
        }
    }
    if !perf::available() {
        notes.push("syscalls not counted: no `perf` on PATH".into());
        return;
    }
    for target in &running {
        if let Err(e) = rate_syscalls::count(ctx, target, scale, results) {
            notes.push(format!("{}: syscalls not counted: {e}", target.name));
        }
    }
}

fn record(results: &mut Results, target: &Running, o: &Outcome, cpu: Duration) {
    let mut put =
        |figure: &str, value: f64| results.record(SECTION, CASE, target.name, figure, value);
    put("errors", o.errors as f64);
    if o.tunnels == 0 {
        return;
    }
    put("tunnels_per_s", o.per_second());
    put("tunnel_p50_us", percentile(&o.times_us, 50.0) as f64);
    put("tunnel_p99_us", percentile(&o.times_us, 99.0) as f64);
    put(
        "cpu_s_per_1000",
        cpu.as_secs_f64() * 1000.0 / o.tunnels as f64,
    );
    put(
        "proxy_cores",
        cpu.as_secs_f64() / o.elapsed.as_secs_f64().max(1e-9),
    );
}

/// The best median of `figure` among the targets of `protocol` other than tcpbridge
/// (highest, or lowest when `lower_is_better`), and its target.
pub fn best_peer(
    results: &Results,
    section: &str,
    case: &str,
    protocol: Protocol,
    figure: &str,
    lower_is_better: bool,
) -> Option<(&'static str, f64)> {
    targets::ALL
        .iter()
        .filter(|t| t.protocol == protocol && !t.name.starts_with("tcpbridge"))
        .filter_map(|t| Some((t.name, results.median(section, case, t.name, figure)?)))
        .reduce(|a, b| {
            let b_better = if lower_is_better {
                b.1 < a.1
            } else {
                b.1 > a.1
            };
            if b_better {
                b
            } else {
                a
            }
        })
}

/// The section's markdown.
pub fn markdown(results: &Results, scale: &Scale) -> String {
    let mut md = format!(
        "## 1. New tunnels per second\n\n\
         Tunnel: connect to the proxy, handshake (HTTP `CONNECT` and its `200`; SOCKS5 \
         greeting, its answer, CONNECT request, its reply; no authentication), one \
         {MESSAGE}-byte request and its {MESSAGE}-byte answer, then the destination closes \
         and the client closes on EOF. {CLIENTS} client loops, \
         runs of {} ms, {} measured rounds after a warm-up round, interleaved. Tunnel time \
         from `connect` to the answer's last byte. Proxy CPU: its process tree's \
         `utime + stime + cutime + cstime` over the run; `proxy cores`: that CPU time over \
         the run's wall time (the clients, the destination and the proxy share the \
         machine's cores, so the rate is the machine's, and CPU per tunnel is the \
         proxy's own cost). `x best peer`: this target's \
         median over the best median among the other proxies of the same protocol.\n\n\
         | protocol | target | tunnels/s | x best peer | p50 us | p99 us | proxy CPU s per 1000 tunnels | x best peer | proxy cores | errors |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        scale.run.as_millis(),
        scale.runs
    );
    for target in &targets::ALL {
        let s = |figure: &str| results.summary(SECTION, CASE, target.name, figure);
        let m = |figure: &str| results.median(SECTION, CASE, target.name, figure);
        if s("errors").is_none() {
            continue;
        }
        let best = |figure: &str, lower: bool| {
            best_peer(results, SECTION, CASE, target.protocol, figure, lower).map(|b| b.1)
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            target.protocol.label(),
            target.name,
            range(s("tunnels_per_s")),
            ratio(m("tunnels_per_s"), best("tunnels_per_s", false)),
            range(s("tunnel_p50_us")),
            range(s("tunnel_p99_us")),
            range(s("cpu_s_per_1000")),
            ratio(m("cpu_s_per_1000"), best("cpu_s_per_1000", true)),
            m("proxy_cores").map_or("-".into(), num),
            m("errors").map_or("-".into(), num),
        ));
    }
    md.push_str(&rate_syscalls::markdown(results));
    md
}
