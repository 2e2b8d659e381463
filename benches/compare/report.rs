//! The outputs: a markdown report (machine, configuration, one table per
//! workload, the product targets) and a CSV with every figure, each as median,
//! min and max over the runs and as ratios to `direct` and to `tokio-ct`.
//!
//! A ratio is always this target's median divided by the reference's median,
//! whichever way is better: above 1 is faster for MB/s, req/s and conn/s, and
//! slower or bigger for latencies, CPU and memory.

use std::fmt::Write as _;

use crate::machine::Facts;
use crate::matrix::Results;
use crate::proxies::Kind;
use crate::stats::Summary;
use crate::workloads::{Workload, MB_PER_S, P99, PROXY_CPU_PER_GB, PSS, REQ_PER_S, RSS};

/// One table of the report.
pub struct Section {
    pub id: String,
    pub title: String,
    pub primary: &'static str,
    pub secondary: Vec<&'static str>,
}

impl Section {
    pub fn of(workload: &Workload) -> Section {
        Section {
            id: workload.id(),
            title: workload.title(),
            primary: workload.primary(),
            secondary: workload.secondary().to_vec(),
        }
    }
}

/// Whether each target ran, or why not.
pub type Statuses = Vec<(Kind, Result<String, String>)>;

/// A number with about three significant digits.
pub fn num(value: f64) -> String {
    let magnitude = value.abs();
    if !value.is_finite() {
        "-".into()
    } else if magnitude >= 100.0 || magnitude == 0.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

fn ratio(results: &Results, id: &str, kind: Kind, metric: &str, reference: Kind) -> Option<f64> {
    let this = results.summary(id, kind, metric)?.median;
    let base = results.summary(id, reference, metric)?.median;
    (base != 0.0).then(|| this / base)
}

fn ratio_cell(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |r| format!("{r:.2}"))
}

fn range_cell(summary: Option<Summary>) -> String {
    summary.map_or_else(
        || "-".into(),
        |s| format!("{} [{}-{}]", num(s.median), num(s.min), num(s.max)),
    )
}

/// The markdown table of one section.
pub fn section_table(results: &Results, section: &Section, kinds: &[Kind]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### `{}`: {}\n", section.id, section.title);
    let mut header = format!(
        "| target | {} median [min-max] | x direct | x tokio-ct |",
        section.primary
    );
    for metric in &section.secondary {
        let _ = write!(header, " {metric} |");
    }
    let _ = writeln!(out, "{header}");
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|{}",
        "---:|".repeat(section.secondary.len())
    );
    for &kind in kinds {
        let primary = results.summary(&section.id, kind, section.primary);
        let failures = results.failures(&section.id, kind);
        if primary.is_none() && failures.is_empty() {
            continue;
        }
        let mut first = range_cell(primary);
        if !failures.is_empty() {
            let reason = failures[0].replace('|', "/");
            let _ = write!(first, " ({} failed: {reason})", failures.len());
        }
        let mut row = format!(
            "| {} | {first} | {} | {} |",
            kind.name(),
            ratio_cell(ratio(
                results,
                &section.id,
                kind,
                section.primary,
                Kind::Direct
            )),
            ratio_cell(ratio(
                results,
                &section.id,
                kind,
                section.primary,
                Kind::TokioCt
            )),
        );
        for metric in &section.secondary {
            let cell = results
                .summary(&section.id, kind, metric)
                .map_or_else(|| "-".into(), |s| num(s.median));
            let _ = write!(row, " {cell} |");
        }
        let _ = writeln!(out, "{row}");
    }
    out
}

/// One line per figure: every metric of every section, with its ratios.
pub fn csv(results: &Results, sections: &[Section], kinds: &[Kind], statuses: &Statuses) -> String {
    let mut out = String::from(
        "workload,target,metric,median,min,max,runs,ratio_direct,ratio_tokio_ct,note\n",
    );
    let clean = |text: &str| text.replace([',', '"', '\n'], " ");
    for (kind, status) in statuses {
        let note = match status {
            Ok(note) => format!("running: {note}"),
            Err(why) => why.clone(),
        };
        let _ = writeln!(out, "*,{},status,,,,,,,{}", kind.name(), clean(&note));
    }
    for section in sections {
        for &kind in kinds {
            for metric in results.metrics(&section.id) {
                let Some(s) = results.summary(&section.id, kind, &metric) else {
                    continue;
                };
                let ratios = [Kind::Direct, Kind::TokioCt]
                    .map(|r| ratio(results, &section.id, kind, &metric, r))
                    .map(|r| r.map_or_else(String::new, |r| format!("{r:.4}")));
                let _ = writeln!(
                    out,
                    "{},{},{metric},{:.4},{:.4},{:.4},{},{},{},",
                    section.id,
                    kind.name(),
                    s.median,
                    s.min,
                    s.max,
                    s.runs,
                    ratios[0],
                    ratios[1]
                );
            }
            for reason in results.failures(&section.id, kind) {
                let _ = writeln!(
                    out,
                    "{},{},failed,,,,,,,{}",
                    section.id,
                    kind.name(),
                    clean(&reason)
                );
            }
        }
    }
    out
}

/// A `| label | value |` table.
pub fn facts_table(facts: &Facts) -> String {
    let mut out = String::from("| | |\n|---|---|\n");
    for (label, value) in facts {
        let _ = writeln!(out, "| {label} | {value} |");
    }
    out
}

/// The status of every target.
pub fn status_table(statuses: &Statuses) -> String {
    let mut out = String::from("| target | status |\n|---|---|\n");
    for (kind, status) in statuses {
        let text = match status {
            Ok(note) => format!("ran ({note})"),
            Err(why) => why.replace('|', "/"),
        };
        let _ = writeln!(out, "| {} | {text} |", kind.name());
    }
    out
}

/// Medians of the headline figures, one row per target.
pub fn summary_table(results: &Results, kinds: &[Kind]) -> String {
    let columns: [(&str, &str, &str); 11] = [
        ("bulk-up-1", MB_PER_S, "bulk up 1 MB/s"),
        ("bulk-down-1", MB_PER_S, "bulk down 1 MB/s"),
        ("bulk-up-8", MB_PER_S, "bulk up 8 MB/s"),
        ("bulk-down-8", MB_PER_S, "bulk down 8 MB/s"),
        ("bulk-up-1", PROXY_CPU_PER_GB, "CPU s/GB (up 1)"),
        ("rr-1B-c1", P99, "rr 1B c1 p99 us"),
        ("rr-1B-c50", REQ_PER_S, "rr 1B c50 req/s"),
        ("rr-1B-c50", P99, "rr 1B c50 p99 us"),
        ("churn", "conn/s", "churn conn/s"),
        ("idle-5000", RSS, "RSS MiB, 5000 idle"),
        ("idle-5000", PSS, "PSS MiB, 5000 idle"),
    ];
    let mut out = String::from("| target |");
    for (_, _, label) in &columns {
        let _ = write!(out, " {label} |");
    }
    let _ = writeln!(out, "\n|---|{}", "---:|".repeat(columns.len()));
    for &kind in kinds {
        let _ = write!(out, "| {} |", kind.name());
        for (id, metric, _) in &columns {
            let cell = results
                .summary(id, kind, metric)
                .map_or_else(|| "-".into(), |s| num(s.median));
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
    out
}
