//! Upstream groups: which upstream a new session dials, and what the loop has learnt
//! about each one (passive and active health). Pure: time, randomness and the client's
//! address are passed in; sockets, warm connections and look-ups live in the server.
//!
//! - `group.rs`: [`Group`], its members ([`Spec`]) and the pick over tiers (primaries,
//!   backups, then anyone untried);
//! - `balance.rs`: the policies of [`Balance`] and the fixed hash of source hashing;
//! - `health.rs`: one member's passive and active health ([`Rules`], [`State`],
//!   [`Change`]).

mod balance;
mod group;
mod health;

pub use balance::{Draws, MAX_WEIGHT};
pub use group::{Group, Spec, Tried};
pub use health::{Change, Rules, State, EJECT_CAP};

/// How a group picks the upstream for a new session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Balance {
    /// The first upstream that is up, in the order given (the default).
    #[default]
    Failover,
    /// Smooth weighted round robin.
    RoundRobin,
    /// Fewest live sessions per unit of weight.
    LeastSessions,
    /// Two weighted random draws, the one with fewer sessions per unit of weight.
    RandomTwo,
    /// Weighted rendezvous hash of the client's IP address: a client stays on one
    /// upstream while it is up.
    SourceHash,
}

/// Active health checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HealthCheck {
    /// None: only failed connects tell (passive health).
    #[default]
    Off,
    /// A TCP connect every interval.
    Tcp,
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_balance;
#[cfg(test)]
mod tests_health;
