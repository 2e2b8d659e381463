//! Every figure of a run, kept as the values of its measured runs and summarised as
//! median [min-max]; the CSV with all of them, and the helpers the sections' markdown
//! tables share (numbers to about three significant digits, ratios of medians).

use std::fmt::Write as _;

use crate::stats::{summarize, Summary};

/// One figure: which section, which case (workload and upstream), which target.
#[derive(Debug)]
struct Row {
    section: &'static str,
    case: String,
    target: String,
    figure: String,
    values: Vec<f64>,
}

/// The figures of the whole run, in the order they were first recorded.
#[derive(Debug, Default)]
pub struct Results {
    rows: Vec<Row>,
}

impl Results {
    /// Adds one measured value of a figure.
    pub fn record(
        &mut self,
        section: &'static str,
        case: &str,
        target: &str,
        figure: &str,
        value: f64,
    ) {
        if !value.is_finite() {
            return;
        }
        let found = self.rows.iter_mut().find(|r| {
            r.section == section && r.case == case && r.target == target && r.figure == figure
        });
        match found {
            Some(row) => row.values.push(value),
            None => self.rows.push(Row {
                section,
                case: case.to_string(),
                target: target.to_string(),
                figure: figure.to_string(),
                values: vec![value],
            }),
        }
    }

    /// Median, min and max of a figure's values.
    pub fn summary(
        &self,
        section: &str,
        case: &str,
        target: &str,
        figure: &str,
    ) -> Option<Summary> {
        let row = self.rows.iter().find(|r| {
            r.section == section && r.case == case && r.target == target && r.figure == figure
        })?;
        summarize(&row.values)
    }

    /// The median of a figure.
    pub fn median(&self, section: &str, case: &str, target: &str, figure: &str) -> Option<f64> {
        self.summary(section, case, target, figure)
            .map(|s| s.median)
    }

    /// Every figure of one target in one case, as `(figure, median)`, in the order
    /// they were first recorded.
    pub fn figures(&self, section: &str, case: &str, target: &str) -> Vec<(String, f64)> {
        self.rows
            .iter()
            .filter(|r| r.section == section && r.case == case && r.target == target)
            .filter_map(|r| Some((r.figure.clone(), summarize(&r.values)?.median)))
            .collect()
    }

    /// `section,case,target,figure,median,min,max,runs`, one line per figure.
    pub fn csv(&self) -> String {
        let mut out = String::from("section,case,target,figure,median,min,max,runs\n");
        for row in &self.rows {
            if let Some(s) = summarize(&row.values) {
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{},{}",
                    row.section, row.case, row.target, row.figure, s.median, s.min, s.max, s.runs
                );
            }
        }
        out
    }
}

/// A number with about three significant digits (`-` when not finite).
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

/// `median [min-max]`, or the one value when there was one run, or `-`.
pub fn range(summary: Option<Summary>) -> String {
    match summary {
        None => "-".into(),
        Some(s) if s.runs == 1 => num(s.median),
        Some(s) => format!("{} [{}-{}]", num(s.median), num(s.min), num(s.max)),
    }
}

/// `this / base` as `0.00`, or `-`.
pub fn ratio(this: Option<f64>, base: Option<f64>) -> String {
    match (this, base) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

/// A markdown table of label and value pairs.
pub fn facts_table(facts: &[(String, String)]) -> String {
    let mut out = String::from("| | |\n|---|---|\n");
    for (label, value) in facts {
        let _ = writeln!(out, "| {label} | {} |", value.replace('|', "/"));
    }
    out
}
