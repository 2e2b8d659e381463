//! The product targets (the data-path issue's aims), checked against the
//! figures of the same run: what was aimed at, what was measured, the ratio,
//! and whether it is met. A peer that did not run makes its rows "not measured".

use std::fmt::Write as _;

use crate::matrix::Results;
use crate::proxies::Kind;
use crate::report::num;
use crate::workloads::{
    CONN_PER_S, MB_PER_S, PROXY_CPU_PER_GB, REQ_PER_S, RSS, RSS_AFTER, RSS_BACK_S, RSS_BEFORE,
    RSS_FRESH,
};

/// Ratios within this of the previous build count as "no worse, within noise"
/// (runs of the same build differ by up to 10% on the 2-core machine).
const NOISE: f64 = 0.9;

/// Single-threaded peers for the 8-stream aim.
const PEERS: [Kind; 5] = [
    Kind::Haproxy,
    Kind::HaproxySplice,
    Kind::Nginx,
    Kind::TokioCt,
    Kind::Socat,
];

struct Table<'a> {
    results: &'a Results,
    out: String,
}

impl Table<'_> {
    fn median(&self, id: &str, kind: Kind, metric: &str) -> Option<f64> {
        self.results.summary(id, kind, metric).map(|s| s.median)
    }

    fn row(&mut self, aim: &str, measured: String, ok: Option<bool>) {
        let verdict = match ok {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured",
        };
        let measured = if measured.is_empty() {
            "-".into()
        } else {
            measured
        };
        let _ = writeln!(self.out, "| {aim} | {measured} | {verdict} |");
    }

    /// `mine` against `theirs` on `metric`: at least `wanted` times (or at most,
    /// when `lower` is better).
    fn ratio(&mut self, aim: &str, id: &str, metric: &str, mine: Kind, theirs: Kind, wanted: f64) {
        let lower = metric == PROXY_CPU_PER_GB;
        let (a, b) = (
            self.median(id, mine, metric),
            self.median(id, theirs, metric),
        );
        let (measured, ok) = match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => (
                format!("{} vs {} {metric} = {:.2}x", num(a), num(b), a / b),
                Some(if lower {
                    a <= wanted * b
                } else {
                    a >= wanted * b
                }),
            ),
            _ => (String::new(), None),
        };
        self.row(aim, measured, ok);
    }
}

/// The product-targets table, markdown.
pub fn product_targets(results: &Results, binary_bytes: Option<u64>) -> String {
    let mut t = Table {
        results,
        out: String::from("| aim | measured | met? |\n|---|---|---|\n"),
    };
    let (tb, copy, prev) = (
        Kind::Tcpbridge,
        Kind::TcpbridgeCopy,
        Kind::TcpbridgePrevious,
    );
    for (id, way) in [("bulk-up-1", "up"), ("bulk-down-1", "down")] {
        let aim = |what: &str| format!("`{id}` ({way}): {what}");
        t.ratio(
            &aim(">= 1.5x haproxy"),
            id,
            MB_PER_S,
            tb,
            Kind::Haproxy,
            1.5,
        );
        let splice = Kind::HaproxySplice;
        t.ratio(
            &aim(">= 1.0x haproxy-splice"),
            id,
            MB_PER_S,
            tb,
            splice,
            1.0,
        );
        let cpu = "CPU s/GB <= 0.8x haproxy-splice";
        t.ratio(&aim(cpu), id, PROXY_CPU_PER_GB, tb, splice, 0.8);
        let copy_aim = "tcpbridge-copy >= 1.25x haproxy";
        t.ratio(&aim(copy_aim), id, MB_PER_S, copy, Kind::Haproxy, 1.25);
    }
    for id in ["bulk-up-8", "bulk-down-8"] {
        let best = PEERS
            .into_iter()
            .filter_map(|k| Some((t.median(id, k, MB_PER_S)?, k)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let aim = format!("`{id}`: >= 1.0x the best single-threaded peer");
        match best {
            Some((_, peer)) => t.ratio(&aim, id, MB_PER_S, tb, peer, 1.0),
            None => t.row(&aim, String::new(), None),
        }
        let before = t.median(id, tb, RSS_BEFORE);
        let (after, back) = (t.median(id, tb, RSS_AFTER), t.median(id, tb, RSS_BACK_S));
        let measured = match (before, after, back) {
            (Some(b), Some(a), Some(s)) => {
                format!("{} MiB before, {} MiB after {} s", num(b), num(a), num(s))
            }
            _ => String::new(),
        };
        let ok = after.zip(before).map(|(a, b)| a <= b + 2.0);
        t.row(
            &format!("`{id}`: RSS back within 2 MiB in 5 s"),
            measured,
            ok,
        );
        let aim = format!("`{id}`: tcpbridge-x2 (two processes, `--reuse-port`), reported");
        let (x2, one) = (
            t.median(id, Kind::TcpbridgeX2, MB_PER_S),
            t.median(id, tb, MB_PER_S),
        );
        let measured = x2.zip(one).map_or(String::new(), |(a, b)| {
            format!("{} vs {} MB/s = {:.2}x", num(a), num(b), a / b)
        });
        t.row(&aim, measured, x2.map(|_| true));
    }
    for (id, metric) in [
        ("rr-1B-c50", REQ_PER_S),
        ("rr-1KiB-c50", REQ_PER_S),
        ("churn", CONN_PER_S),
    ] {
        let aim = format!("`{id}`: no worse than the previous build ({NOISE:.1}x: noise)");
        t.ratio(&aim, id, metric, tb, prev, NOISE);
    }
    let rss = t.median("idle-5000", tb, RSS);
    let fresh = t.median("idle-5000", tb, RSS_FRESH);
    let measured = rss.map_or(String::new(), |r| {
        let fresh = fresh.map_or("-".into(), num);
        format!("{} MiB ({fresh} MiB when freshly started)", num(r))
    });
    t.row(
        "RSS with 5,000 idle sessions <= 8 MiB",
        measured,
        rss.map(|r| r <= 8.0),
    );
    let measured = binary_bytes.map_or(String::new(), |b| {
        format!("{b} bytes = {:.2} MiB", b as f64 / 1048576.0)
    });
    let ok = binary_bytes.map(|b| b as f64 <= 1.5 * 1048576.0);
    t.row("stripped release binary <= 1.5 MiB", measured, ok);
    t.out
}
