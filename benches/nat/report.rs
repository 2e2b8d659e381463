//! The outputs: a markdown report (machine and configuration, chains, the
//! aims, one table per workload family) and a CSV with every figure as
//! median, min, max, run count and ratio to forward mode.
//!
//! A ratio is this chain's median over forward's median: above 1 is more of
//! the figure (faster for MB/s and requests/s, slower for latencies).

use std::fmt::Write as _;

use crate::chains::Kind;
use crate::machine::Facts;
use crate::matrix::Results;
use crate::workloads::{Better, Figure, BULK, MEMORY, RR, TTFB, TUNNELS};

/// Whether each chain runs (a description) or why not.
pub type Statuses = Vec<(Kind, Result<String, String>)>;

/// The report's sections: title and figures.
pub const SECTIONS: [(&str, &[Figure]); 4] = [
    ("Bulk throughput, 1 stream each direction", BULK),
    ("Request/response, 1-byte messages", RR),
    ("Time to first byte of a new public client", TTFB),
    ("Memory (VmRSS)", MEMORY),
];

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

fn short(note: &str) -> String {
    let one_line = note.replace(['\n', '|'], " ");
    if one_line.chars().count() > 60 {
        format!("{}...", one_line.chars().take(60).collect::<String>())
    } else {
        one_line
    }
}

/// `median [min-max]`, the value alone for one run, else the note or `n/a`.
fn cell(results: &Results, figure: &str, kind: Kind) -> String {
    match results.summary(figure, kind) {
        Some(s) if s.runs == 1 => num(s.median),
        Some(s) => format!("{} [{}-{}]", num(s.median), num(s.min), num(s.max)),
        None => results.note_of(figure, kind).map_or("n/a".into(), short),
    }
}

fn ratio_cell(results: &Results, figure: &str, kind: Kind) -> String {
    results
        .ratio_to_forward(figure, kind)
        .map_or("-".into(), |r| format!("{r:.2}"))
}

/// Label and value pairs as a two-column table.
pub fn facts_table(facts: &Facts) -> String {
    let mut out = String::from("| | |\n|---|---|\n");
    for (label, value) in facts {
        let _ = writeln!(out, "| {label} | {} |", value.replace('|', "\\|"));
    }
    out
}

pub fn status_table(statuses: &Statuses) -> String {
    let mut out = String::from("| chain | status |\n|---|---|\n");
    for (kind, status) in statuses {
        let text = match status {
            Ok(description) => description.clone(),
            Err(why) => why.clone(),
        };
        let _ = writeln!(out, "| {} | {} |", kind.name(), text.replace('|', "\\|"));
    }
    out
}

/// One section: figures as rows, chains as columns, a ratio row under each
/// figure that has one.
pub fn section_table(results: &Results, title: &str, figures: &[Figure], kinds: &[Kind]) -> String {
    let mut out = format!("### {title}\n\n| figure |");
    for kind in kinds {
        let _ = write!(out, " {} |", kind.name());
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(kinds.len()));
    out.push('\n');
    for figure in figures {
        let _ = write!(out, "| {} |", figure.label);
        for &kind in kinds {
            let _ = write!(out, " {} |", cell(results, figure.id, kind));
        }
        out.push('\n');
        if figure.ratio {
            let _ = write!(out, "| {}, x forward |", figure.label);
            for &kind in kinds {
                let _ = write!(out, " {} |", ratio_cell(results, figure.id, kind));
            }
            out.push('\n');
        }
    }
    out
}

/// The idle-tunnel figures of the relay of chain `kind`.
pub fn tunnels_table(results: &Results, count: usize, kind: Kind) -> String {
    let mut out = format!(
        "### {}: relay holding {count} idle tunnels (agent `--pool {count}`)\n\n\
         | figure | median [min-max] |\n|---|---|\n",
        kind.name()
    );
    for figure in TUNNELS {
        let _ = writeln!(
            out,
            "| {} | {} |",
            figure.label,
            cell(results, figure.id, kind)
        );
    }
    if results.summary("tun_established", kind).is_some() {
        if let Some(note) = results.note_of("tun_established", kind) {
            let _ = writeln!(out, "\nShort of {count}: {note}.");
        }
    }
    out
}

/// Whether `a` is better than `b` for `figure`.
fn beats(figure: &Figure, a: f64, b: f64) -> bool {
    match figure.better {
        Better::Higher => a > b,
        Better::Lower => a < b,
    }
}

/// An aims table: `ours` against each of `peers` on every figure they
/// share, with `ours` as a ratio of `base` where the figure has a ratio.
pub fn aims_table(results: &Results, ours: Kind, base: Kind, peers: &[Kind]) -> String {
    let mut out = format!("| figure | {} | x {} |", ours.name(), base.name());
    for peer in peers {
        let _ = write!(out, " {} |", peer.name());
    }
    for peer in peers {
        let _ = write!(out, " ahead of {} |", peer.name());
    }
    out.push_str("\n|---|---|---|");
    out.push_str(&"---|".repeat(2 * peers.len()));
    out.push('\n');
    let median = |id: &str, kind| results.summary(id, kind).map(|s| s.median);
    for (_, figures) in SECTIONS {
        for figure in figures.iter() {
            let Some(value) = median(figure.id, ours) else {
                continue;
            };
            let verdict = |kind| match median(figure.id, kind) {
                Some(theirs) if beats(figure, value, theirs) => "yes".to_string(),
                Some(theirs) if theirs == value => "tie".to_string(),
                Some(_) => "**no**".to_string(),
                None => "-".to_string(),
            };
            let ratio = match median(figure.id, base) {
                Some(b) if figure.ratio && b != 0.0 => format!("{:.2}", value / b),
                _ => "-".into(),
            };
            let _ = write!(out, "| {} | {} | {ratio} |", figure.label, num(value));
            for &peer in peers {
                let _ = write!(
                    out,
                    " {} |",
                    median(figure.id, peer).map_or("-".into(), num)
                );
            }
            for &peer in peers {
                let _ = write!(out, " {} |", verdict(peer));
            }
            out.push('\n');
        }
    }
    out
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Every figure of every chain, and the chains' statuses (`tunnel_kinds`:
/// the chains whose idle tunnels were measured).
pub fn csv(
    results: &Results,
    kinds: &[Kind],
    statuses: &Statuses,
    tunnel_count: usize,
    tunnel_kinds: &[Kind],
) -> String {
    let mut out = String::from("section,figure,label,chain,median,min,max,runs,x_forward,note\n");
    for (kind, status) in statuses {
        let note = match status {
            Ok(d) => d.clone(),
            Err(why) => why.clone(),
        };
        let _ = writeln!(
            out,
            "chains,status,,{},,,,,,{}",
            kind.name(),
            csv_field(&note)
        );
    }
    let tunnels_title = format!("{tunnel_count} idle tunnels");
    let mut sections: Vec<(&str, &[Figure], Vec<Kind>)> = SECTIONS
        .iter()
        .map(|(title, figures)| (*title, *figures, kinds.to_vec()))
        .collect();
    sections.push((&tunnels_title, TUNNELS, tunnel_kinds.to_vec()));
    for (title, figures, kinds) in sections {
        for figure in figures {
            for &kind in &kinds {
                let summary = results.summary(figure.id, kind);
                let note = results.note_of(figure.id, kind).unwrap_or("");
                if summary.is_none() && note.is_empty() {
                    continue;
                }
                let (median, min, max, runs) = summary.map_or(
                    (String::new(), String::new(), String::new(), String::new()),
                    |s| {
                        (
                            format!("{:.3}", s.median),
                            format!("{:.3}", s.min),
                            format!("{:.3}", s.max),
                            s.runs.to_string(),
                        )
                    },
                );
                let ratio = if figure.ratio {
                    results
                        .ratio_to_forward(figure.id, kind)
                        .map_or(String::new(), |r| format!("{r:.3}"))
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "{},{},{},{},{median},{min},{max},{runs},{ratio},{}",
                    csv_field(title),
                    figure.id,
                    csv_field(figure.label),
                    kind.name(),
                    csv_field(note)
                );
            }
        }
    }
    out
}
