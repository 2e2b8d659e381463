//! What the targets wrote over the whole bench: every line of every log file a target
//! left in the scratch directory (its stderr and stdout, and its own log file when its
//! configuration names one), per target, as distinct messages with their counts.
//! tcpbridge runs with `-q`, so its lines are warnings and errors only.

use std::fs;

use crate::targets::Found;
use crate::Ctx;

/// Distinct messages listed per target.
const LISTED: usize = 6;

/// A line without its time stamp and numbers, so repeats of one message match.
fn shape(line: &str) -> String {
    line.split_whitespace()
        .map(|w| {
            if w.chars().any(|c| c.is_ascii_digit()) {
                "#"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One note per target with its line count, then its most frequent messages.
pub fn findings(ctx: &Ctx, found: &[Found]) -> Vec<String> {
    let mut notes = Vec::new();
    let Ok(entries) = fs::read_dir(&ctx.scratch) else {
        return notes;
    };
    let files: Vec<(String, std::path::PathBuf)> = entries
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| name.ends_with(".log"))
        .collect();
    for f in found {
        let name = f.target.name;
        let prefix = format!("{name}-");
        let mut lines = Vec::new();
        let mut count = 0;
        for (_, path) in files.iter().filter(|(file, _)| file.starts_with(&prefix)) {
            count += 1;
            let text = fs::read_to_string(path).unwrap_or_default();
            lines.extend(
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(String::from),
            );
        }
        if count == 0 {
            continue;
        }
        let mut distinct: Vec<(String, usize, String)> = Vec::new();
        for line in &lines {
            let key = shape(line);
            match distinct.iter_mut().find(|(k, _, _)| *k == key) {
                Some(d) => d.1 += 1,
                None => distinct.push((key, 1, line.clone())),
            }
        }
        distinct.sort_by_key(|d| std::cmp::Reverse(d.1));
        let listed: Vec<String> = distinct
            .iter()
            .take(LISTED)
            .map(|(_, n, example)| format!("{n} x `{}`", example.trim().replace('`', "'")))
            .collect();
        notes.push(format!(
            "{name}: {} log lines over {count} files{}{}",
            lines.len(),
            if listed.is_empty() { "" } else { ": " },
            listed.join("; ")
        ));
    }
    notes
}
