//! A strict parser of the Prometheus text exposition format (0.0.4), for checking what
//! `GET /metrics` serves.
//!
//! Beyond the syntax (metric and label names, label value escapes `\\` `\"` `\n`, values,
//! optional integer timestamps, HELP escapes), it enforces what the proxy promises:
//! every family has one `# TYPE` line before its samples, the type is `counter`, `gauge`
//! or `histogram` (whose samples are `_bucket` with an `le` label, `_sum` and `_count`),
//! counters end in `_total` and are never negative, a family's samples are contiguous,
//! no series appears twice, and the text ends with a newline.

use std::collections::{BTreeMap, HashMap, HashSet};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// The family a sample belongs to: its name, or a histogram's name for its `_bucket`,
/// `_sum` and `_count` samples.
fn family_of<'a>(name: &'a str, types: &HashMap<String, Kind>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.get(base) == Some(&Kind::Histogram) {
                return base;
            }
        }
    }
    name
}

/// Parses a whole exposition; the error names the line (1-based) and the problem.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the text does not end with a newline".into());
    }
    let mut types: HashMap<String, Kind> = HashMap::new();
    let mut helps: HashSet<String> = HashSet::new();
    // Families whose samples are over: another family's line came after them.
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series: HashSet<(String, Vec<(String, String)>)> = HashSet::new();
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", i + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let Some(family) = descriptor(comment, &mut types, &mut helps).map_err(at)? else {
                continue;
            };
            enter(&family, &mut current, &mut finished).map_err(at)?;
            continue;
        }
        let sample = sample_line(line).map_err(at)?;
        let family = family_of(&sample.name, &types);
        let Some(&kind) = types.get(family) else {
            return Err(at("sample before its family's # TYPE line".into()));
        };
        let counts = kind == Kind::Counter || (kind == Kind::Histogram && family != sample.name);
        if counts && (sample.value.is_nan() || sample.value < 0.0) {
            return Err(at("a counter is negative or NaN".into()));
        }
        if kind == Kind::Histogram
            && sample.name.ends_with("_bucket")
            && !sample.labels.contains_key("le")
        {
            return Err(at("a histogram bucket without an le label".into()));
        }
        enter(family, &mut current, &mut finished).map_err(at)?;
        let key = (
            sample.name.clone(),
            sample
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
        if !series.insert(key) {
            return Err(at("duplicate series".into()));
        }
        samples.push(sample);
    }
    Ok(samples)
}

/// Moves to `family`'s lines: an error if its lines were already left.
fn enter(
    family: &str,
    current: &mut Option<String>,
    finished: &mut HashSet<String>,
) -> Result<(), String> {
    if current.as_deref() == Some(family) {
        return Ok(());
    }
    if finished.contains(family) {
        return Err(format!("family {family} is not contiguous"));
    }
    if let Some(previous) = current.take() {
        finished.insert(previous);
    }
    *current = Some(family.to_string());
    Ok(())
}

/// A `# HELP` or `# TYPE` line (returns its family), or another comment (`None`).
fn descriptor(
    comment: &str,
    types: &mut HashMap<String, Kind>,
    helps: &mut HashSet<String>,
) -> Result<Option<String>, String> {
    let comment = comment.trim_start_matches([' ', '\t']);
    let (keyword, rest) = comment.split_once([' ', '\t']).unwrap_or((comment, ""));
    let rest = rest.trim_start_matches([' ', '\t']);
    match keyword {
        "TYPE" => {
            let mut words = rest.split([' ', '\t']).filter(|w| !w.is_empty());
            let (Some(name), Some(kind), None) = (words.next(), words.next(), words.next()) else {
                return Err("a TYPE line is `# TYPE name type`".into());
            };
            metric_name(name)?;
            let kind = match kind {
                "counter" => Kind::Counter,
                "gauge" => Kind::Gauge,
                "histogram" => Kind::Histogram,
                other => return Err(format!("type {other:?} is not counter, gauge or histogram")),
            };
            if kind == Kind::Counter && !name.ends_with("_total") {
                return Err(format!("counter {name} does not end in _total"));
            }
            if types.insert(name.to_string(), kind).is_some() {
                return Err(format!("second TYPE line for {name}"));
            }
            Ok(Some(name.to_string()))
        }
        "HELP" => {
            let (name, text) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
            metric_name(name)?;
            let mut chars = text.chars();
            while let Some(c) = chars.next() {
                if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
                    return Err("bad escape in HELP text".into());
                }
            }
            if !helps.insert(name.to_string()) {
                return Err(format!("second HELP line for {name}"));
            }
            Ok(Some(name.to_string()))
        }
        _ => Ok(None),
    }
}

/// Checks a metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn metric_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("bad metric name {name:?}"))
    }
}

/// Checks a label name: `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
fn label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.starts_with("__") {
        Ok(())
    } else {
        Err(format!("bad label name {name:?}"))
    }
}

/// `name[{labels}] value [timestamp]`.
fn sample_line(line: &str) -> Result<Sample, String> {
    let end = line.find(['{', ' ', '\t']).ok_or("no value")?;
    let name = &line[..end];
    metric_name(name)?;
    let mut rest = &line[end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = label_set(after, &mut labels)?;
    }
    if !rest.starts_with([' ', '\t']) {
        return Err("no blank before the value".into());
    }
    let mut words = rest.split([' ', '\t']).filter(|w| !w.is_empty());
    let value = words.next().ok_or("no value")?;
    let value = float(value)?;
    if let Some(ts) = words.next() {
        let digits = ts.strip_prefix('-').unwrap_or(ts);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("bad timestamp {ts:?}"));
        }
    }
    if words.next().is_some() {
        return Err("extra text after the timestamp".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses `name="value",...}` (a trailing comma allowed); returns the text after `}`.
fn label_set<'a>(mut s: &'a str, labels: &mut BTreeMap<String, String>) -> Result<&'a str, String> {
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let eq = s.find('=').ok_or("label without =")?;
        let name = &s[..eq];
        label_name(name)?;
        let mut chars = s[eq + 1..].char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("label {name} value is not quoted"));
        }
        let mut value = String::new();
        let close = loop {
            match chars.next() {
                None => return Err(format!("label {name} value is not closed")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    _ => return Err(format!("bad escape in label {name}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        s = &s[eq + 1 + close + 1..];
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err("labels are not separated by commas".into());
        }
    }
}

/// A sample value: a decimal float, `+Inf`, `-Inf` or `NaN`.
fn float(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => return Ok(f64::INFINITY),
        "-Inf" => return Ok(f64::NEG_INFINITY),
        "NaN" => return Ok(f64::NAN),
        _ => {}
    }
    let plain = s
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if !plain || !s.bytes().any(|b| b.is_ascii_digit()) {
        return Err(format!("bad value {s:?}"));
    }
    s.parse().map_err(|e| format!("bad value {s:?}: {e}"))
}

/// Whether a sample has every label of `subset`.
fn matches(sample: &Sample, name: &str, subset: &[(&str, &str)]) -> bool {
    sample.name == name
        && subset
            .iter()
            .all(|(k, v)| sample.labels.get(*k).is_some_and(|have| have == v))
}

/// The value of the one series of `name` with exactly the labels `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.labels.len() == labels.len() && matches(s, name, labels))
        .map(|s| s.value)
}

/// The sum over the series of `name` whose labels include `subset` (0 when none).
pub fn sum(samples: &[Sample], name: &str, subset: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| matches(s, name, subset))
        .map(|s| s.value)
        .sum()
}
