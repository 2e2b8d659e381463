//! A group: the members a listener balances over, their health and live sessions, and
//! the pick of the member a session's next connect attempt goes to.
//!
//! A pick looks at tiers in turn: the usable primaries the session has not tried, else
//! the usable backups it has not tried, and lets the policy choose within the first tier
//! that has any. When none has, every untried member is tried anyway in configured
//! order, primaries first (all down is no reason to refuse a client without trying), so
//! a pick is `None` only once the session has tried every member.
//!
//! Members are known by index, in configured order; indices change when
//! [`Group::set_members`] replaces the members, addresses do not ([`Group::index_of`]).
//! An index that is not a member's is ignored by every operation. Pure: time, the
//! randomness and the client's address are passed in.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::balance::{Balancer, Load, MAX_WEIGHT};
use super::health::{Change, Event, Health, Rules, State};
use super::Balance;

/// One member as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// Where to connect.
    pub addr: SocketAddr,
    /// Its share of new sessions under the weighted policies: 1..=256 (clamped).
    pub weight: u32,
    /// Used only when no primary (non-backup) member is usable.
    pub backup: bool,
}

/// The members a session already tried: a bitset of their indices modulo 64 (in a group
/// of more than 64 members, trying one marks every 64th as tried too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tried(u64);

impl Tried {
    /// Marks member `i` as tried.
    pub fn insert(&mut self, i: usize) {
        self.0 |= 1 << (i % 64);
    }

    /// Whether member `i` was tried.
    pub fn contains(self, i: usize) -> bool {
        self.0 & (1 << (i % 64)) != 0
    }

    /// How many members were tried.
    pub fn count(self) -> u32 {
        self.0.count_ones()
    }
}

/// One member: as configured, its health and its live sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    spec: Spec,
    health: Health,
    sessions: u32,
}

impl Member {
    fn load(&self) -> Load {
        Load {
            addr: self.spec.addr,
            weight: self.spec.weight,
            sessions: self.sessions,
        }
    }
}

/// The set of upstreams a listener balances over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    members: Vec<Member>,
    rules: Rules,
    balancer: Balancer,
}

impl Group {
    /// A group of `specs` in order (an address given twice counts once: the first).
    pub fn new(specs: impl IntoIterator<Item = Spec>, balance: Balance, rules: Rules) -> Group {
        let mut group = Group {
            members: Vec::new(),
            rules: rules.normalized(),
            balancer: Balancer::new(balance, 0),
        };
        group.set_members(specs);
        group
    }

    /// Replaces the members (a name looked up again, or a reload). A member whose
    /// address stays keeps its health and its session count (its weight and backup flag
    /// are the new ones); a new one starts up with no history. Round robin starts a new
    /// cycle. Returns the addresses that left, in their old order.
    pub fn set_members(&mut self, specs: impl IntoIterator<Item = Spec>) -> Vec<SocketAddr> {
        let mut old: Vec<Option<Member>> = self.members.drain(..).map(Some).collect();
        for spec in specs {
            if self.members.iter().any(|m| m.spec.addr == spec.addr) {
                continue;
            }
            let spec = Spec {
                weight: spec.weight.clamp(1, MAX_WEIGHT),
                ..spec
            };
            let kept = old
                .iter_mut()
                .find(|m| m.as_ref().is_some_and(|m| m.spec.addr == spec.addr))
                .and_then(Option::take);
            self.members.push(match kept {
                Some(m) => Member { spec, ..m },
                None => Member {
                    spec,
                    health: Health::default(),
                    sessions: 0,
                },
            });
        }
        self.balancer = Balancer::new(self.balancer.balance(), self.members.len());
        old.into_iter().flatten().map(|m| m.spec.addr).collect()
    }

    /// Changes the policy (a new one starts with no history) and the health rules (for
    /// what happens next: a running ejection runs out as it was drawn).
    pub fn set_rules(&mut self, balance: Balance, rules: Rules) {
        if balance != self.balancer.balance() {
            self.balancer = Balancer::new(balance, self.members.len());
        }
        self.rules = rules.normalized();
    }

    /// The member a new connect attempt of a session goes to: `tried` are the members
    /// the session tried already, `client` its address (source hash), `random` any
    /// random number (random two). `None` when every member was tried.
    pub fn pick(
        &mut self,
        now: Instant,
        client: IpAddr,
        tried: Tried,
        random: u64,
    ) -> Option<usize> {
        let Group {
            members, balancer, ..
        } = self;
        let members = &*members;
        let untried = move |backup: bool| {
            (0..members.len())
                .filter(move |&i| members[i].spec.backup == backup && !tried.contains(i))
        };
        for backup in [false, true] {
            let candidates = untried(backup).filter(|&i| members[i].health.usable(now));
            if candidates.clone().next().is_some() {
                return balancer.choose(candidates, |i| members[i].load(), client, random);
            }
        }
        untried(false).chain(untried(true)).next()
    }

    /// How many members there are.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when there is no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `i`'s address.
    pub fn addr(&self, i: usize) -> Option<SocketAddr> {
        self.members.get(i).map(|m| m.spec.addr)
    }

    /// The index of the member at `addr`.
    pub fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.members.iter().position(|m| m.spec.addr == addr)
    }

    /// Member `i`'s state at `now`.
    pub fn state(&self, i: usize, now: Instant) -> Option<State> {
        self.members.get(i).map(|m| m.health.state(now))
    }

    /// Whether member `i` is usable at `now`: neither down nor ejected (on probation is
    /// usable).
    pub fn usable(&self, i: usize, now: Instant) -> bool {
        self.members.get(i).is_some_and(|m| m.health.usable(now))
    }

    /// A connect to member `i` succeeded: its failure count and its ejection doubling
    /// start over. `Some(Change::Up)` when that makes it healthy again (it was ejected
    /// or on probation, and its checks hold it up).
    pub fn connected(&mut self, i: usize) -> Option<Change> {
        self.on(i, Event::Connected)
    }

    /// A connect to member `i` failed (refused, timed out, unreachable); `random` any
    /// random number, for the ejection's jitter. `Some(Change::Ejected)` when this
    /// ejects it. A group of one member never ejects it; failures while ejected change
    /// nothing.
    pub fn failed(&mut self, i: usize, now: Instant, random: u64) -> Option<Change> {
        let alone = self.members.len() == 1;
        self.on(i, Event::Failed { now, random, alone })
    }

    /// An active check of member `i` passed: counts towards `rise`, and as a successful
    /// connect, except that it does not cut a running ejection short (it does end a
    /// probation).
    pub fn check_passed(&mut self, i: usize, now: Instant) -> Option<Change> {
        self.on(i, Event::CheckPassed { now })
    }

    /// An active check of member `i` failed: counts towards `fall` (ejections are for
    /// failed connects alone).
    pub fn check_failed(&mut self, i: usize) -> Option<Change> {
        self.on(i, Event::CheckFailed)
    }

    fn on(&mut self, i: usize, event: Event) -> Option<Change> {
        let rules = self.rules;
        self.members.get_mut(i)?.health.on(event, &rules)
    }

    /// A session started on member `i`.
    pub fn session_started(&mut self, i: usize) {
        if let Some(m) = self.members.get_mut(i) {
            m.sessions = m.sessions.saturating_add(1);
        }
    }

    /// A session on member `i` ended.
    pub fn session_ended(&mut self, i: usize) {
        if let Some(m) = self.members.get_mut(i) {
            m.sessions = m.sessions.saturating_sub(1);
        }
    }

    /// Member `i`'s live sessions.
    pub fn sessions(&self, i: usize) -> u32 {
        self.members.get(i).map_or(0, |m| m.sessions)
    }

    /// Member `i`'s failed connects in a row (those that found it ejected not counted).
    pub fn failures(&self, i: usize) -> u32 {
        self.members.get(i).map_or(0, |m| m.health.failures())
    }

    /// How many times member `i` was ejected (for metrics).
    pub fn ejections(&self, i: usize) -> u64 {
        self.members.get(i).map_or(0, |m| m.health.ejections())
    }

    /// The earliest instant after `now` an ejection ends, if one runs (the loop's timer:
    /// it may log or refresh its view then).
    pub fn next_change(&self, now: Instant) -> Option<Instant> {
        self.members
            .iter()
            .filter_map(|m| m.health.ejected_until(now))
            .min()
    }
}
