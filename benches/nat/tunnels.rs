//! Memory of the relay holding many idle tunnels: a fresh relay (with
//! `--max-idle-tunnels N --max-handshakes N`) is measured alone, then an
//! agent with `--pool N` is started and the harness waits until the relay
//! holds the N tunnels: N of its own ESTABLISHED sockets on the tunnel port
//! (`/proc/PID/net/tcp`, matched to its descriptors) and N more open
//! descriptors, unchanged for 500 ms. When it does not get there within the
//! time limit, what it holds then is measured and the shortfall is noted.
//! Each run uses fresh processes, stopped at its end. It runs for each
//! tcpbridge chain: TLS tunnels (the default) and plain ones.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use crate::chains::{self, Kind, Paths};
use crate::matrix::Results;
use crate::procfs;
use crate::workloads::TUNNELS;

/// How long the counts must stay unchanged.
const SETTLE: Duration = Duration::from_millis(500);

/// Runs `runs` fresh measurements of `count` idle tunnels of chain `kind`,
/// each waiting at most `limit` for the relay to hold them all.
pub fn run(
    kind: Kind,
    paths: &Paths,
    backend: SocketAddr,
    count: usize,
    runs: usize,
    limit: Duration,
    results: &mut Results,
) {
    for run in 1..=runs {
        match one(kind, paths, backend, count, limit) {
            Ok((values, shortfall)) => {
                for (figure, value) in values {
                    results.record(figure, kind, value);
                }
                if let Some(why) = shortfall {
                    eprintln!("{count} idle tunnels, run {run}: {why}");
                    results.add_note("tun_established", kind, format!("run {run}: {why}"));
                }
            }
            Err(why) => {
                eprintln!("{count} idle tunnels, run {run}: {why}");
                for figure in TUNNELS {
                    results.note(figure.id, kind, format!("failed: {why}"));
                }
            }
        }
    }
}

type Values = Vec<(&'static str, f64)>;

fn one(
    kind: Kind,
    paths: &Paths,
    backend: SocketAddr,
    count: usize,
    limit: Duration,
) -> Result<(Values, Option<String>), String> {
    let max = count.to_string();
    let mut extra = vec!["--max-idle-tunnels", &max, "--max-handshakes", &max];
    extra.extend(kind.tunnel_args());
    let (relay_role, agent_role) = match kind {
        Kind::RelayPlain => ("relay-tunnels-plain", "agent-tunnels-plain"),
        _ => ("relay-tunnels", "agent-tunnels"),
    };
    let (mut relay, tunnel, public) = chains::start_relay(paths, relay_role, &extra)?;
    let pid = relay.pid();
    thread::sleep(Duration::from_millis(200));
    let rss0 = procfs::rss_kib(pid).ok_or("cannot read the relay's VmRSS")?;
    let fds0 = procfs::fd_count(pid).ok_or("cannot count the relay's descriptors")?;
    let started = Instant::now();
    let mut agent = chains::start_agent(
        paths,
        agent_role,
        tunnel,
        backend,
        count,
        kind.tunnel_args(),
    )?;
    let mut reached: Option<Duration> = None;
    let mut last = (usize::MAX, usize::MAX);
    let mut stable_since = Instant::now();
    let held = loop {
        let established = procfs::established_on_port(pid, tunnel.port());
        let fds = procfs::fd_count(pid).unwrap_or(0).saturating_sub(fds0);
        let held = established.min(fds);
        if reached.is_none() && held >= count {
            reached = Some(started.elapsed());
        }
        if (established, fds) != last {
            last = (established, fds);
            stable_since = Instant::now();
        }
        let settled = stable_since.elapsed() >= SETTLE;
        if settled && (reached.is_some() || started.elapsed() > limit) {
            break held;
        }
        if let Some(why) = relay.exited().or_else(|| agent.exited()) {
            return Err(why);
        }
        if started.elapsed() > limit + Duration::from_secs(10) {
            return Err(format!(
                "the relay's tunnel count never settled ({established} ESTABLISHED, {fds} new descriptors)"
            ));
        }
        thread::sleep(Duration::from_millis(20));
    };
    let rss = procfs::rss_kib(pid).ok_or("cannot read the relay's VmRSS")?;
    let agent_rss = procfs::rss_kib(agent.pid()).ok_or("cannot read the agent's VmRSS")?;
    let fds = procfs::fd_count(pid).unwrap_or(0);
    // Still a working relay: one public client is served through it.
    chains::banner_check(public).map_err(|e| format!("end-to-end check: {e}"))?;
    let shortfall = (held < count).then(|| {
        format!(
            "the relay held only {held} of {count} tunnels after {:.0} s (per-tunnel figure \
             over {held})",
            started.elapsed().as_secs_f64()
        )
    });
    let mut values = vec![
        ("tun_relay_rss0_kib", rss0 as f64),
        ("tun_relay_rss_kib", rss as f64),
        ("tun_agent_rss_kib", agent_rss as f64),
        ("tun_relay_fds", fds as f64),
        ("tun_established", held as f64),
    ];
    if held > 0 {
        let per_tunnel = (rss.saturating_sub(rss0) * 1024) as f64 / held as f64;
        values.push(("tun_per_tunnel_b", per_tunnel));
    }
    if let Some(t) = reached {
        values.push(("tun_setup_ms", t.as_secs_f64() * 1000.0));
    }
    Ok((values, shortfall))
}
