//! The coarse phase of a live session, the one word logs and metrics use for it
//! (derived from the session's state, never stored).

/// The phase of a live session, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the upstream connect (or its awaited reply).
    Connecting,
    /// Both directions open.
    Relaying,
    /// One direction finished, the other still flows.
    HalfClosed,
    /// One side broke; owed bytes are being handed over.
    Resetting,
}

impl Phase {
    /// Every phase, in declaration order: `ALL[p.index()] == p`.
    pub const ALL: [Phase; 4] = [
        Phase::Connecting,
        Phase::Relaying,
        Phase::HalfClosed,
        Phase::Resetting,
    ];

    /// The phase's position in [`Phase::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The phase's word in metrics and session lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::Relaying => "relaying",
            Phase::HalfClosed => "half_closed",
            Phase::Resetting => "resetting",
        }
    }
}
