//! The one stats model (placeholder while the full model is written).

/// Per-listener counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Sessions accepted.
    pub accepted: u64,
}

impl Counters {
    /// Counts a closed session.
    pub fn record_close(
        &mut self,
        _reason: crate::core::reason::CloseReason,
        _delivered: (u64, u64),
        _pauses: (u64, u64),
    ) {
    }
}
