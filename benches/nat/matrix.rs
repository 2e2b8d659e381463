//! Runs the workloads in interleaved rounds (A B C, A B C, ...), the first
//! `warmup` rounds unrecorded, and keeps every measured value per figure and
//! chain, with the first failure of each.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::chains::{Chain, Kind};
use crate::stats::{self, Summary};
use crate::workloads::{Scale, Workload};

/// Every measured value, and why a figure is missing where it is.
#[derive(Default)]
pub struct Results {
    values: BTreeMap<(&'static str, Kind), Vec<f64>>,
    notes: BTreeMap<(&'static str, Kind), String>,
}

impl Results {
    pub fn record(&mut self, figure: &'static str, kind: Kind, value: f64) {
        self.values.entry((figure, kind)).or_default().push(value);
    }

    /// Keeps the first note of a figure.
    pub fn note(&mut self, figure: &'static str, kind: Kind, note: String) {
        self.notes.entry((figure, kind)).or_insert(note);
    }

    /// Adds a note to a figure's notes.
    pub fn add_note(&mut self, figure: &'static str, kind: Kind, note: String) {
        self.notes
            .entry((figure, kind))
            .and_modify(|n| {
                n.push_str("; ");
                n.push_str(&note);
            })
            .or_insert(note);
    }

    pub fn summary(&self, figure: &str, kind: Kind) -> Option<Summary> {
        self.values
            .iter()
            .find(|((f, k), _)| *f == figure && *k == kind)
            .and_then(|(_, v)| stats::summarize(v))
    }

    pub fn note_of(&self, figure: &str, kind: Kind) -> Option<&str> {
        self.notes
            .iter()
            .find(|((f, k), _)| *f == figure && *k == kind)
            .map(|(_, n)| n.as_str())
    }

    /// This chain's median over forward's median.
    pub fn ratio_to_forward(&self, figure: &str, kind: Kind) -> Option<f64> {
        let this = self.summary(figure, kind)?.median;
        let base = self.summary(figure, Kind::Forward)?.median;
        (base != 0.0).then(|| this / base)
    }
}

/// Runs every workload on every chain it applies to, interleaved.
pub fn run(workloads: &[Workload], chains: &mut [Chain], scale: &Scale, results: &mut Results) {
    for workload in workloads {
        let started = Instant::now();
        for round in 0..scale.warmup + scale.runs {
            let measured = round >= scale.warmup;
            for chain in chains.iter_mut() {
                if !(workload.applies)(chain.kind) {
                    continue;
                }
                let outcome = chain
                    .check_alive()
                    .and_then(|()| (workload.run)(chain, scale));
                match outcome {
                    Ok(values) if measured => {
                        for (figure, value) in values {
                            results.record(figure, chain.kind, value);
                        }
                    }
                    Ok(_) => {}
                    Err(why) => {
                        let label = if measured { "run" } else { "warm-up" };
                        eprintln!(
                            "{:<12} {}: {label} failed: {why}",
                            chain.kind.name(),
                            workload.name
                        );
                        for figure in workload.figures {
                            results.note(figure, chain.kind, format!("failed: {why}"));
                        }
                    }
                }
            }
        }
        eprintln!(
            "{:<14} done in {:.1} s",
            workload.name,
            started.elapsed().as_secs_f64()
        );
    }
}
