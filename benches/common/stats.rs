//! Summaries of repeated runs (median, min, max) and nearest-rank percentiles
//! of latency samples, shared by the `compare` and `nat` benches.

/// Median, minimum and maximum of the measured runs of one figure.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

/// Summarises `values`; `None` when there are none. The median of an even
/// count is the mean of the two middle values.
pub fn summarize(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    let median = if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    };
    Some(Summary {
        median,
        min: sorted[0],
        max: sorted[sorted.len() - 1],
        runs: sorted.len(),
    })
}

/// Nearest-rank percentile `p` (0 < p <= 100) of an ascending slice; 0 when empty.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of unsorted samples (nearest rank, so always one of them).
pub fn median_u64(samples: &mut [u64]) -> u64 {
    samples.sort_unstable();
    percentile(samples, 50.0)
}
