//! The balancing policies: which of a tier's candidates (usable members not yet tried by
//! the session, in configured order) a connect attempt goes to.
//!
//! - failover: the first candidate;
//! - round robin: smooth weighted round robin, as nginx does (each pick adds every
//!   candidate's weight to its `current`, takes the largest and subtracts the candidates'
//!   total from it): weights are honoured exactly over a cycle, and spread within it;
//! - least sessions: fewest live sessions per unit of weight (integers cross-multiplied),
//!   ties broken by the same smooth weighted round robin among the tied members;
//! - random two: two distinct weighted draws, the one with fewer sessions per unit of
//!   weight (the first on a tie);
//! - source hash: weighted rendezvous hashing of the client's IP address with each
//!   member's address, over a fixed hash ([`rendezvous_hash`]) so the mapping survives
//!   restarts; a member that leaves moves only its own clients.
//!
//! Pure: the randomness and the client's address are passed in.

use std::cmp::Ordering;
use std::net::{IpAddr, SocketAddr};

use super::Balance;

/// The heaviest weight a member may have (the lightest is 1).
pub const MAX_WEIGHT: u32 = 256;

/// What a policy needs to know of one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Load {
    /// The member's address (source hash).
    pub addr: SocketAddr,
    /// Its weight, 1..=[`MAX_WEIGHT`].
    pub weight: u32,
    /// Its live sessions.
    pub sessions: u32,
}

/// A group's policy and the state it keeps between picks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Balancer {
    balance: Balance,
    /// Round robin's `current` per member (least sessions' too, among its ties).
    current: Vec<i64>,
}

impl Balancer {
    /// A policy over `members` members, with no history.
    pub(super) fn new(balance: Balance, members: usize) -> Balancer {
        Balancer {
            balance,
            current: vec![0; members],
        }
    }

    /// The policy in use.
    pub(super) fn balance(&self) -> Balance {
        self.balance
    }

    /// Chooses among `candidates` (indices below the member count, in configured
    /// order); `load` tells each one's weight, sessions and address. `None` only when
    /// there is no candidate.
    pub(super) fn choose<I, F>(
        &mut self,
        candidates: I,
        load: F,
        client: IpAddr,
        random: u64,
    ) -> Option<usize>
    where
        I: Iterator<Item = usize> + Clone,
        F: Fn(usize) -> Load,
    {
        let members = self.current.len();
        let mut candidates = candidates.filter(move |&i| i < members);
        match self.balance {
            Balance::Failover => candidates.next(),
            Balance::RoundRobin => self.round_robin(candidates, load),
            Balance::LeastSessions => self.least_sessions(candidates, load),
            Balance::RandomTwo => random_two(candidates, load, random),
            Balance::SourceHash => source_hash(candidates, load, client),
        }
    }

    fn round_robin<I, F>(&mut self, candidates: I, load: F) -> Option<usize>
    where
        I: Iterator<Item = usize> + Clone,
        F: Fn(usize) -> Load,
    {
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for i in candidates {
            let weight = i64::from(load(i).weight);
            total += weight;
            self.current[i] = self.current[i].saturating_add(weight);
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] = self.current[b].saturating_sub(total);
        Some(b)
    }

    /// Fewest sessions per unit of weight; ties (all idle members, say) go by smooth
    /// weighted round robin among the tied, as nginx's `least_conn` does, so weights
    /// hold for short sessions too.
    fn least_sessions<I, F>(&mut self, candidates: I, load: F) -> Option<usize>
    where
        I: Iterator<Item = usize> + Clone,
        F: Fn(usize) -> Load,
    {
        let least = candidates
            .clone()
            .map(&load)
            .min_by(|a, b| per_weight(*a, *b))?;
        let tied = candidates.filter(|&i| per_weight(load(i), least) == Ordering::Equal);
        self.round_robin(tied, &load)
    }
}

/// Compares sessions per unit of weight, `a` against `b`, without division.
fn per_weight(a: Load, b: Load) -> Ordering {
    let left = u64::from(a.sessions) * u64::from(b.weight.max(1));
    let right = u64::from(b.sessions) * u64::from(a.weight.max(1));
    left.cmp(&right)
}

/// Two weighted draws, distinct when there are two candidates or more: the next two
/// outputs of a splitmix64 sequence seeded with `random`. The one with fewer sessions
/// per unit of weight wins; a tie keeps the first.
fn random_two<I, F>(candidates: I, load: F, random: u64) -> Option<usize>
where
    I: Iterator<Item = usize> + Clone,
    F: Fn(usize) -> Load,
{
    let total: u64 = candidates.clone().map(|i| u64::from(load(i).weight)).sum();
    let draw = |skip: Option<usize>, total: u64, r: u64| {
        let mut r = r % total.max(1);
        for i in candidates.clone().filter(|&i| Some(i) != skip) {
            let weight = u64::from(load(i).weight);
            if r < weight {
                return Some(i);
            }
            r -= weight;
        }
        None
    };
    let first = draw(None, total, splitmix64(random))?;
    let rest = total - u64::from(load(first).weight);
    let Some(second) = draw(Some(first), rest, splitmix64(random.wrapping_add(GAMMA))) else {
        return Some(first);
    };
    match per_weight(load(second), load(first)) {
        Ordering::Less => Some(second),
        _ => Some(first),
    }
}

/// The candidate with the highest `weight / -ln(u)`, `u` in (0, 1) from
/// [`rendezvous_hash`] of the client and the member; the first on a tie.
fn source_hash<I, F>(candidates: I, load: F, client: IpAddr) -> Option<usize>
where
    I: Iterator<Item = usize> + Clone,
    F: Fn(usize) -> Load,
{
    let mut best: Option<(usize, f64)> = None;
    for i in candidates {
        let l = load(i);
        let h = rendezvous_hash(client, l.addr);
        // 53 bits, centred in their interval: never 0, never 1.
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = f64::from(l.weight) / -u.ln();
        if best.is_none_or(|(_, s)| score.total_cmp(&s) == Ordering::Greater) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

/// splitmix64's increment (the golden ratio in 64 bits).
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// splitmix64: the output after advancing the state `x` by one step.
pub(super) fn splitmix64(x: u64) -> u64 {
    finalize(x.wrapping_add(GAMMA))
}

/// A splitmix64 sequence: the draws a listener's groups need (picks, jitter), seeded once
/// from the kernel, so a session costs no `getrandom` call.
#[derive(Debug, Clone)]
pub struct Draws(u64);

impl Draws {
    /// A sequence starting from `seed`.
    pub fn new(seed: u64) -> Draws {
        Draws(seed)
    }

    /// The next draw.
    pub fn draw(&mut self) -> u64 {
        let out = splitmix64(self.0);
        self.0 = self.0.wrapping_add(GAMMA);
        out
    }

    /// A draw in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.draw() % n.max(1)
    }
}

/// splitmix64's finalizer: every input bit moves every output bit.
fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The fixed hash of a client and a member for source hashing, stable across runs and
/// builds: FNV-1a (64-bit) over the client's IP address (an IPv4-mapped IPv6 address as
/// its IPv4 address; the port is not part of it), then the member's IP address and its
/// port in network order, each address preceded by its length in bytes; then splitmix64's
/// finalizer.
pub(super) fn rendezvous_hash(client: IpAddr, member: SocketAddr) -> u64 {
    let mut h = fnv1a_ip(FNV_OFFSET, client.to_canonical());
    h = fnv1a_ip(h, member.ip());
    h = fnv1a(h, &member.port().to_be_bytes());
    finalize(h)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// FNV-1a over an IP address's length in bytes, then its octets.
fn fnv1a_ip(h: u64, ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => fnv1a(fnv1a(h, &[4]), &v4.octets()),
        IpAddr::V6(v6) => fnv1a(fnv1a(h, &[16]), &v6.octets()),
    }
}
