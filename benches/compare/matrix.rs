//! Runs every workload against every target, interleaved: for each workload a
//! warm-up round (not recorded), then `runs` rounds, each visiting the targets
//! in turn (A B C, A B C, ...), so slow drifts in machine load spread over all
//! targets instead of landing on one.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::proxies::{Kind, Target};
use crate::stats::{summarize, Summary};
use crate::workloads::{self, Scale, Workload};

/// Every recorded figure, and every failed run with its reason.
#[derive(Default)]
pub struct Results {
    values: BTreeMap<(String, Kind, String), Vec<f64>>,
    failures: BTreeMap<(String, Kind), Vec<String>>,
}

impl Results {
    pub fn record(&mut self, workload: &str, kind: Kind, figures: workloads::Figures) {
        for (metric, value) in figures {
            self.values
                .entry((workload.to_string(), kind, metric.to_string()))
                .or_default()
                .push(value);
        }
    }

    pub fn fail(&mut self, workload: &str, kind: Kind, reason: String) {
        self.failures
            .entry((workload.to_string(), kind))
            .or_default()
            .push(reason);
    }

    pub fn summary(&self, workload: &str, kind: Kind, metric: &str) -> Option<Summary> {
        let key = (workload.to_string(), kind, metric.to_string());
        summarize(self.values.get(&key)?)
    }

    /// Distinct failure reasons of `kind` in `workload`.
    pub fn failures(&self, workload: &str, kind: Kind) -> Vec<String> {
        let mut reasons = self
            .failures
            .get(&(workload.to_string(), kind))
            .cloned()
            .unwrap_or_default();
        reasons.dedup();
        reasons
    }

    /// Metrics recorded for `workload`, in name order.
    pub fn metrics(&self, workload: &str) -> Vec<String> {
        let mut metrics: Vec<String> = Vec::new();
        for (w, _, metric) in self.values.keys() {
            if w == workload && !metrics.contains(metric) {
                metrics.push(metric.clone());
            }
        }
        metrics
    }
}

/// Runs the whole matrix. A target whose process dies is dropped from the
/// remaining runs (each failure is recorded with its reason).
pub fn run(
    workloads: &[Workload],
    targets: &mut [Target],
    backend_pid: u32,
    scale: &Scale,
) -> Results {
    let mut results = Results::default();
    let mut dead: BTreeMap<Kind, String> = BTreeMap::new();
    let started = Instant::now();
    for workload in workloads {
        let id = workload.id();
        let at = started.elapsed().as_secs_f64();
        eprintln!("== [{at:5.0} s] {id}: {}", workload.title());
        let first_round = if workload.warms_up(scale) { 0 } else { 1 };
        for round in first_round..=scale.runs {
            let (label, duration) = match round {
                0 => ("warm-up".to_string(), scale.warmup),
                n => (format!("run {n}/{}", scale.runs), scale.run),
            };
            for target in targets.iter_mut() {
                if !workload.applies_to(target) {
                    continue;
                }
                if let Some(why) = dead.get(&target.kind) {
                    if round > 0 {
                        results.fail(&id, target.kind, why.clone());
                    }
                    continue;
                }
                let began = Instant::now();
                let outcome = workloads::measure(*workload, target, backend_pid, duration, scale);
                let took = began.elapsed().as_secs_f64();
                match outcome {
                    Ok(figures) => {
                        let headline = figures
                            .iter()
                            .find(|(m, _)| *m == workload.primary())
                            .map_or(f64::NAN, |(_, v)| *v);
                        eprintln!(
                            "   {label:<9} {:<10} {headline:>12.1} {:<8} ({took:.2} s)",
                            target.name(),
                            workload.primary()
                        );
                        if round > 0 {
                            results.record(&id, target.kind, figures);
                        }
                    }
                    Err(reason) => {
                        eprintln!(
                            "   {label:<9} {:<10} FAILED ({took:.2} s): {reason}",
                            target.name()
                        );
                        if round > 0 {
                            results.fail(&id, target.kind, reason);
                        }
                        if let Some(why) = target.process.as_mut().and_then(|p| p.exited()) {
                            dead.insert(target.kind, format!("process {why}"));
                        }
                    }
                }
            }
        }
    }
    results
}
