//! The soak's output: one `samples.csv` row per second (descriptors, RSS, live
//! sessions, sessions done, bytes, mismatches) and the closing `summary.md`.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::plan::Ending;
use crate::proxy::{Metrics, Proxy};
use crate::tally::Tally;
use crate::{Options, WARM_UP};

/// Writes `samples.csv` and keeps the peaks.
pub struct Sampler {
    csv: BufWriter<File>,
    pub peak_rss_kib: u64,
    pub peak_fds: u64,
    pub peak_live: u64,
    pub samples: u64,
}

impl Sampler {
    pub fn new(path: &Path) -> Result<Sampler, String> {
        let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut csv = BufWriter::new(file);
        writeln!(
            csv,
            "seconds,sessions_done,live_sessions,fds,rss_kib,bytes,mismatches,anomalies"
        )
        .map_err(|e| e.to_string())?;
        Ok(Sampler {
            csv,
            peak_rss_kib: 0,
            peak_fds: 0,
            peak_live: 0,
            samples: 0,
        })
    }

    /// Takes one sample and appends it (flushed, so a cut-short run keeps it).
    pub fn sample(&mut self, started: Instant, proxy: &Proxy, tally: &Tally) -> Result<(), String> {
        let fds = proxy.fds();
        let rss = proxy.status_kib("VmRSS");
        let live = proxy.metrics().map(|m| m.live).unwrap_or(0);
        self.peak_rss_kib = self.peak_rss_kib.max(rss);
        self.peak_fds = self.peak_fds.max(fds);
        self.peak_live = self.peak_live.max(live);
        self.samples += 1;
        writeln!(
            self.csv,
            "{:.1},{},{live},{fds},{rss},{},{},{}",
            started.elapsed().as_secs_f64(),
            tally.sessions.load(Relaxed),
            tally.bytes_delivered(),
            tally.mismatches(),
            tally.anomalies(),
        )
        .and_then(|()| self.csv.flush())
        .map_err(|e| e.to_string())
    }
}

/// How the run ended.
pub struct Finish {
    pub elapsed: Duration,
    pub quiet: bool,
    pub metrics: Metrics,
    pub baseline_fds: u64,
    pub final_fds: u64,
    pub baseline_rss_kib: u64,
    pub final_rss_kib: u64,
    pub hwm_kib: u64,
    pub proxy_cpu: Duration,
    pub host_busy: Duration,
    pub host_steal: Duration,
    pub exited: Option<String>,
    pub load_before: String,
    pub load_after: String,
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    let text = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The summary as a markdown table of figures.
pub fn summary(options: &Options, tally: &Tally, sampler: &Sampler, finish: &Finish) -> String {
    let sessions = tally.sessions.load(Relaxed);
    let secs = finish.elapsed.as_secs_f64().max(0.001);
    let bytes = tally.bytes_delivered();
    let endings: Vec<String> = Ending::ALL
        .iter()
        .zip(&tally.by_ending)
        .map(|(e, n)| format!("{} {}", e.name(), n.load(Relaxed)))
        .collect();
    let reasons: Vec<String> = finish
        .metrics
        .closed_by_reason
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let rows: Vec<(&str, String)> = vec![
        (
            "sessions (client side, incl. warm-up)",
            format!("{sessions}"),
        ),
        ("sessions by ending", endings.join(", ")),
        (
            "upstream sessions",
            format!("{}", tally.upstream_sessions.load(Relaxed)),
        ),
        (
            "upstream connections closed before a whole header",
            format!("{}", tally.headerless.load(Relaxed)),
        ),
        ("duration", format!("{:.0} s", secs)),
        ("rate", format!("{:.0} sessions/s", sessions as f64 / secs)),
        (
            "bytes delivered (both directions)",
            format!(
                "{bytes} ({:.2} GiB, {:.1} MB/s)",
                bytes as f64 / (1u64 << 30) as f64,
                bytes as f64 / secs / 1e6
            ),
        ),
        (
            "mismatches (wrong byte, extra byte, short FIN ending)",
            format!(
                "{} (client {}, upstream {}, short {})",
                tally.mismatches(),
                tally.client_mismatches.load(Relaxed),
                tally.upstream_mismatches.load(Relaxed),
                tally.truncated.load(Relaxed)
            ),
        ),
        (
            "resets in FIN endings / stalls / connect errors",
            format!(
                "{} / {} / {}",
                tally.unexpected_resets.load(Relaxed),
                tally.stalls.load(Relaxed),
                tally.connect_errors.load(Relaxed)
            ),
        ),
        (
            "peak live sessions (sampled)",
            format!("{}", sampler.peak_live),
        ),
        ("RSS after warm-up", mib(finish.baseline_rss_kib)),
        (
            "peak RSS (sampled / VmHWM)",
            format!("{} / {}", mib(sampler.peak_rss_kib), mib(finish.hwm_kib)),
        ),
        ("final RSS", mib(finish.final_rss_kib)),
        (
            "fds after warm-up / peak / final",
            format!(
                "{} / {} / {}",
                finish.baseline_fds, sampler.peak_fds, finish.final_fds
            ),
        ),
        (
            "after quiescence: live, accepted, closed",
            format!(
                "{}, {}, {} ({})",
                finish.metrics.live,
                finish.metrics.accepted,
                finish.metrics.closed,
                if finish.quiet {
                    "accepted == closed, fds back to baseline"
                } else {
                    "NOT QUIET"
                }
            ),
        ),
        ("close reasons", reasons.join(", ")),
        (
            "tcpbridge CPU",
            format!(
                "{:.1} s ({:.2} cores)",
                finish.proxy_cpu.as_secs_f64(),
                finish.proxy_cpu.as_secs_f64() / secs
            ),
        ),
        (
            "machine busy / steal",
            format!(
                "{:.2} / {:.2} of {cores} cores",
                finish.host_busy.as_secs_f64() / secs,
                finish.host_steal.as_secs_f64() / secs
            ),
        ),
        (
            "load average before / after",
            format!("{} / {}", finish.load_before, finish.load_after),
        ),
        (
            "tcpbridge exited",
            finish.exited.clone().unwrap_or_else(|| "no".into()),
        ),
        ("samples", format!("{}", sampler.samples)),
    ];
    let mut text = format!(
        "Soak: `--sessions {} --seconds {} --concurrency {} --seed {:#x} --reset-policy {}` \
         ({WARM_UP} warm-up sessions first)\n\n| figure | value |\n|---|---|\n",
        options.sessions, options.seconds, options.concurrency, options.seed, options.reset_policy
    );
    for (name, value) in rows {
        let _ = writeln!(text, "| {name} | {value} |");
    }
    text
}
