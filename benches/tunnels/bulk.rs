//! Section 2: bulk through one tunnel. One tunnel per run to the destination server:
//! an upload (`U` N: N bytes written in 256 KiB blocks, timed until the server's
//! one-byte answer that it has them all), then a download on the same tunnel (`D` N:
//! timed until the client has read N bytes). The proxy's CPU (its process tree) is
//! read before and after each direction.
//!
//! Every target is started once and checked; a warm-up round of N/4 bytes (not
//! recorded), then the measured rounds, interleaved (A B C, A B C...).

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use crate::client;
use crate::rate::best_peer;
use crate::results::{range, ratio, Results};
use crate::targets::{self, Found, Running};
use crate::{procstat, Ctx, Scale};

pub const SECTION: &str = "bulk";
/// Bytes of one write or read.
const BLOCK: usize = 256 << 10;
/// Bound on each read and write of a transfer.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
const DIRECTIONS: [&str; 2] = ["up", "down"];

/// One direction's figures.
struct Transfer {
    elapsed: Duration,
    cpu: Duration,
}

fn measure(target: &Running, ctx: &Ctx, bytes: u64) -> io::Result<[Transfer; 2]> {
    let mut stream = client::open(target.addr, target.protocol, ctx.dest)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let block = vec![0x5a_u8; BLOCK];
    let pid = target.pid();

    let cpu_before = procstat::tree_cpu(pid);
    let started = Instant::now();
    let mut head = vec![b'U'];
    head.extend_from_slice(&bytes.to_be_bytes());
    stream.write_all(&head)?;
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(BLOCK).min(BLOCK);
        stream.write_all(&block[..n])?;
        left -= n as u64;
    }
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer)?;
    let up = Transfer {
        elapsed: started.elapsed(),
        cpu: procstat::tree_cpu(pid).saturating_sub(cpu_before),
    };
    if answer != *b"A" {
        return Err(io::Error::other("wrong upload answer"));
    }

    let mut buf = vec![0u8; BLOCK];
    let cpu_before = procstat::tree_cpu(pid);
    let started = Instant::now();
    let mut head = vec![b'D'];
    head.extend_from_slice(&bytes.to_be_bytes());
    stream.write_all(&head)?;
    let mut left = bytes;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(BLOCK).min(BLOCK);
        let n = stream.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::other("tunnel closed during the download"));
        }
        left -= n as u64;
    }
    let down = Transfer {
        elapsed: started.elapsed(),
        cpu: procstat::tree_cpu(pid).saturating_sub(cpu_before),
    };
    Ok([up, down])
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
            let bytes = if round == 0 {
                scale.bulk_bytes / 4
            } else {
                scale.bulk_bytes
            };
            match measure(target, ctx, bytes) {
                Ok(transfers) if round > 0 => {
                    for (direction, t) in DIRECTIONS.iter().zip(&transfers) {
                        let secs = t.elapsed.as_secs_f64().max(1e-9);
                        let mb_s = bytes as f64 / 1e6 / secs;
                        let cpu_s_per_gb = t.cpu.as_secs_f64() / (bytes as f64 / 1e9);
                        results.record(SECTION, direction, target.name, "mb_per_s", mb_s);
                        results.record(
                            SECTION,
                            direction,
                            target.name,
                            "cpu_s_per_gb",
                            cpu_s_per_gb,
                        );
                        eprintln!(
                            "bulk round {round} {:<18} {direction:<4} {mb_s:>7.0} MB/s {cpu_s_per_gb:.2} CPU s/GB",
                            target.name
                        );
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("bulk {} round {round}: {e}", target.name);
                    notes.push(format!("{} round {round}: failed: {e}", target.name));
                }
            }
        }
    }
}

/// The section's markdown.
pub fn markdown(results: &Results, scale: &Scale) -> String {
    let mut md = format!(
        "## 2. Bulk through one tunnel\n\n\
         One tunnel per run: {} MiB up (timed until the destination's answer that it has \
         them all), then {} MiB down on the same tunnel; 256 KiB writes and reads. {} \
         measured rounds after a warm-up round of a quarter of the bytes, interleaved. \
         MB = 10^6 bytes. Proxy CPU: its process tree's `utime + stime + cutime + cstime` \
         over the transfer, per 10^9 bytes.\n\n\
         | protocol | target | direction | MB/s | x best peer | proxy CPU s/GB | x best peer |\n\
         |---|---|---|---:|---:|---:|---:|\n",
        scale.bulk_bytes >> 20,
        scale.bulk_bytes >> 20,
        scale.runs
    );
    for target in &targets::ALL {
        for direction in DIRECTIONS {
            let s = |figure: &str| results.summary(SECTION, direction, target.name, figure);
            let m = |figure: &str| results.median(SECTION, direction, target.name, figure);
            if s("mb_per_s").is_none() {
                continue;
            }
            let best = |figure: &str, lower: bool| {
                best_peer(results, SECTION, direction, target.protocol, figure, lower).map(|b| b.1)
            };
            md.push_str(&format!(
                "| {} | {} | {direction} | {} | {} | {} | {} |\n",
                target.protocol.label(),
                target.name,
                range(s("mb_per_s")),
                ratio(m("mb_per_s"), best("mb_per_s", false)),
                range(s("cpu_s_per_gb")),
                ratio(m("cpu_s_per_gb"), best("cpu_s_per_gb", true)),
            ));
        }
    }
    md
}
