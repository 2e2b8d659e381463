//! A cross-check with tools nobody here wrote, through the same targets:
//!
//! - iperf3 (one stream, each direction) against an `iperf3 -s` upstream: MB/s;
//! - wrk (2 threads, 50 connections, `--latency`) against an nginx HTTP
//!   upstream serving a 13-byte body: requests/s, p50 and p99.
//!
//! Same interleaving as the harness (warm-up round, then A B C rounds). The
//! figures land in the same report and CSV, under workloads named `xc-*`.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::matrix::Results;
use crate::proxies::{self, Context, Kind, Process, Target};
use crate::report::Section;
use crate::workloads::{self, Figures, MB_PER_S, P50, P99, REQ_PER_S};

const IPERF_UP: &str = "xc-iperf3-up-1";
const IPERF_DOWN: &str = "xc-iperf3-down-1";
const WRK: &str = "xc-wrk-c50";

/// The cross-check's report sections.
pub fn sections() -> Vec<Section> {
    vec![
        Section {
            id: IPERF_UP.into(),
            title: "iperf3, 1 stream, client -> server (iperf3 receiver figure)".into(),
            primary: MB_PER_S,
            secondary: vec![],
        },
        Section {
            id: IPERF_DOWN.into(),
            title: "iperf3 -R, 1 stream, server -> client (iperf3 receiver figure)".into(),
            primary: MB_PER_S,
            secondary: vec![],
        },
        Section {
            id: WRK.into(),
            title: "wrk, 2 threads, 50 connections, GET / from nginx HTTP (keep-alive)".into(),
            primary: REQ_PER_S,
            secondary: vec![P50, P99, workloads::ERRORS],
        },
    ]
}

/// Runs the cross-check against `kinds`, `runs` measured rounds of `seconds`
/// each. Returns what was skipped and why (a missing tool, a target that did
/// not start).
pub fn run(
    kinds: &[Kind],
    base: &Context,
    runs: usize,
    seconds: u64,
    results: &mut Results,
) -> Vec<String> {
    let mut skipped = Vec::new();
    let scratch = |name: &str| {
        let dir = base.scratch.join(name);
        let _ = fs::create_dir_all(&dir);
        Context {
            scratch: dir,
            tcpbridge: base.tcpbridge.clone(),
            tcpbridge_previous: base.tcpbridge_previous.clone(),
            tcpbridge_max_sessions: base.tcpbridge_max_sessions,
            max_sessions: base.max_sessions,
        }
    };

    let ctx = scratch("crosscheck-iperf3");
    match start_iperf3_server(&ctx) {
        Err(why) => skipped.push(format!("iperf3 {why}")),
        Ok((_server, upstream)) => {
            let mut targets = start_all(kinds, upstream, &ctx, &mut skipped);
            rounds(&mut targets, runs, results, IPERF_UP, |addr| {
                iperf3(addr, seconds, false)
            });
            rounds(&mut targets, runs, results, IPERF_DOWN, |addr| {
                iperf3(addr, seconds, true)
            });
        }
    }

    let ctx = scratch("crosscheck-wrk");
    if proxies::find_program("wrk").is_none() {
        skipped.push("wrk skipped (not installed)".into());
        return skipped;
    }
    match start_nginx_http(&ctx.scratch) {
        Err(why) => skipped.push(format!("nginx HTTP backend for wrk {why}")),
        Ok((_server, upstream)) => {
            let mut targets = start_all(kinds, upstream, &ctx, &mut skipped);
            rounds(&mut targets, runs, results, WRK, |addr| wrk(addr, seconds));
        }
    }
    skipped
}

fn start_iperf3_server(ctx: &Context) -> Result<(Process, SocketAddr), String> {
    let listen = proxies::free_port().map_err(|e| e.to_string())?;
    let args = ["-s", "-B", "127.0.0.1", "-p", &listen.port().to_string()].map(String::from);
    let process = start_listening_program(&ctx.scratch, "iperf3", &args, listen)?;
    Ok((process, listen))
}

fn start_all(
    kinds: &[Kind],
    upstream: SocketAddr,
    ctx: &Context,
    skipped: &mut Vec<String>,
) -> Vec<Target> {
    let mut targets = Vec::new();
    for &kind in kinds {
        match proxies::start(kind, upstream, ctx, false) {
            Ok(target) => targets.push(target),
            Err(why) => {
                let note = format!("{} {why}", kind.name());
                if !skipped.contains(&note) {
                    skipped.push(note);
                }
            }
        }
    }
    targets
}

fn rounds(
    targets: &mut [Target],
    runs: usize,
    results: &mut Results,
    id: &str,
    tool: impl Fn(SocketAddr) -> Result<Figures, String>,
) {
    eprintln!("== {id}");
    for round in 0..=runs {
        for target in targets.iter() {
            match tool(target.addr) {
                Ok(figures) => {
                    let shown: Vec<String> =
                        figures.iter().map(|(m, v)| format!("{v:.1} {m}")).collect();
                    eprintln!(
                        "   round {round} {:<10} {}",
                        target.name(),
                        shown.join(", ")
                    );
                    if round > 0 {
                        results.record(id, target.kind, figures);
                    }
                }
                Err(why) => {
                    eprintln!("   round {round} {:<10} FAILED: {why}", target.name());
                    if round > 0 {
                        results.fail(id, target.kind, why);
                    }
                }
            }
        }
    }
}

/// Stdout of a tool run under coreutils `timeout`; `Err` holds its stderr.
fn run_tool(program: &str, args: &[String], limit: Duration) -> Result<String, String> {
    let output = Command::new("timeout")
        .arg(limit.as_secs().to_string())
        .arg(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(text)
    } else {
        let err = String::from_utf8_lossy(&output.stderr);
        Err(format!(
            "{program} {}: {} {}",
            output.status,
            err.trim(),
            first_error_line(&text)
        ))
    }
}

fn first_error_line(text: &str) -> String {
    text.lines()
        .find(|l| l.contains("\"error\""))
        .unwrap_or("")
        .trim()
        .to_string()
}

fn iperf3(addr: SocketAddr, seconds: u64, reverse: bool) -> Result<Figures, String> {
    let mut args = vec![
        "-c".to_string(),
        addr.ip().to_string(),
        "-p".into(),
        addr.port().to_string(),
        "-t".into(),
        seconds.to_string(),
        "-J".into(),
    ];
    if reverse {
        args.push("-R".into());
    }
    let json = run_tool("iperf3", &args, Duration::from_secs(seconds + 20))?;
    let bits = json_number_after(&json, "\"sum_received\"", "\"bits_per_second\"")
        .ok_or("no sum_received.bits_per_second in iperf3 output")?;
    Ok(vec![(MB_PER_S, bits / 8.0 / 1e6)])
}

/// The number after `key` that follows `anchor` in `json` (enough for
/// iperf3's fixed layout without a JSON library).
fn json_number_after(json: &str, anchor: &str, key: &str) -> Option<f64> {
    let rest = &json[json.find(anchor)?..];
    let rest = &rest[rest.find(key)? + key.len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = rest.find(|c: char| !(c.is_ascii_digit() || ".eE+-".contains(c)))?;
    rest[..end].parse().ok()
}

fn wrk(addr: SocketAddr, seconds: u64) -> Result<Figures, String> {
    let args = [
        "-t2".to_string(),
        "-c50".into(),
        format!("-d{seconds}s"),
        "--latency".into(),
        format!("http://{addr}/"),
    ];
    let text = run_tool("wrk", &args, Duration::from_secs(seconds + 20))?;
    let value_after = |label: &str| -> Option<&str> {
        let line = text.lines().find(|l| l.trim_start().starts_with(label))?;
        line.trim_start()[label.len()..].split_whitespace().next()
    };
    let rate = value_after("Requests/sec:")
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk output: {}", text.trim()))?;
    let micros = |label: &str| value_after(label).and_then(parse_wrk_duration);
    let mut errors = 0.0;
    if let Some(line) = text.lines().find(|l| l.contains("Socket errors:")) {
        errors += line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse::<f64>().ok())
            .sum::<f64>();
    }
    if let Some(n) = value_after("Non-2xx or 3xx responses:").and_then(|v| v.parse::<f64>().ok()) {
        errors += n;
    }
    let mut figures = vec![(REQ_PER_S, rate)];
    figures.extend(micros("50%").map(|v| (P50, v)));
    figures.extend(micros("99%").map(|v| (P99, v)));
    figures.push((workloads::ERRORS, errors));
    Ok(figures)
}

/// wrk's `310.00us`, `1.20ms`, `2.00s`, `1.00m` in microseconds.
fn parse_wrk_duration(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let value: f64 = text[..split].parse().ok()?;
    let scale = match &text[split..] {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        _ => return None,
    };
    Some(value * scale)
}

/// Starts nginx as an HTTP server on a free port (the cross-check's backend).
pub fn start_nginx_http(scratch: &Path) -> Result<(Process, SocketAddr), String> {
    if proxies::find_program("nginx").is_none() {
        return Err("skipped (not installed)".into());
    }
    let dir = scratch.join("nginx-http");
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let listen = proxies::free_port().map_err(|e| e.to_string())?;
    let config = dir.join("nginx-http.conf");
    fs::write(&config, crate::external::nginx_http_config(&dir, listen))
        .map_err(|e| e.to_string())?;
    let mut command = Command::new("nginx");
    command.args(crate::external::nginx_args(&dir, &config));
    let mut process =
        Process::spawn(command, &dir.join("stderr.log")).map_err(|e| e.to_string())?;
    process.wait_listening(listen)?;
    Ok((process, listen))
}

/// Starts `program args...` and waits until it listens on `listen`.
pub fn start_listening_program(
    scratch: &Path,
    program: &str,
    args: &[String],
    listen: SocketAddr,
) -> Result<Process, String> {
    if proxies::find_program(program).is_none() {
        return Err("skipped (not installed)".into());
    }
    let mut command = Command::new(program);
    command.args(args);
    let log = scratch.join(format!("{program}.log"));
    let mut process = Process::spawn(command, &log).map_err(|e| e.to_string())?;
    process.wait_listening(listen)?;
    Ok(process)
}
