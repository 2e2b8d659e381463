#![allow(missing_docs, unused_variables, clippy::all)]
use super::Balance;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
pub const EJECT_CAP: Duration = Duration::from_secs(300);
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub eject_after: u32,
    pub eject_time: Duration,
    pub eject_cap: Duration,
    pub fall: u32,
    pub rise: u32,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub addr: SocketAddr,
    pub weight: u32,
    pub backup: bool,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Up,
    Down,
    Ejected { until: Instant },
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Ejected { after: u32, for_: Duration },
    Down,
    Up,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tried(u64);
impl Tried {
    pub fn insert(&mut self, i: usize) {
        self.0 |= 1 << (i % 64)
    }
    pub fn contains(&self, i: usize) -> bool {
        self.0 & (1 << (i % 64)) != 0
    }
}
#[derive(Debug)]
pub struct Group {
    specs: Vec<Spec>,
    sessions: Vec<u32>,
}
impl Group {
    pub fn new(specs: impl IntoIterator<Item = Spec>, balance: Balance, rules: Rules) -> Group {
        let specs: Vec<Spec> = specs.into_iter().collect();
        let n = specs.len();
        Group {
            specs,
            sessions: vec![0; n],
        }
    }
    pub fn set_members(&mut self, specs: impl IntoIterator<Item = Spec>) -> Vec<SocketAddr> {
        let new: Vec<Spec> = specs.into_iter().collect();
        let gone = self
            .specs
            .iter()
            .filter(|s| !new.iter().any(|n| n.addr == s.addr))
            .map(|s| s.addr)
            .collect();
        self.sessions = vec![0; new.len()];
        self.specs = new;
        gone
    }
    pub fn set_rules(&mut self, balance: Balance, rules: Rules) {}
    pub fn pick(
        &mut self,
        now: Instant,
        client: IpAddr,
        tried: Tried,
        random: u64,
    ) -> Option<usize> {
        (0..self.specs.len()).find(|&i| !tried.contains(i))
    }
    pub fn len(&self) -> usize {
        self.specs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.specs[i].addr
    }
    pub fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.specs.iter().position(|s| s.addr == addr)
    }
    pub fn state(&self, i: usize, now: Instant) -> State {
        State::Up
    }
    pub fn usable(&self, i: usize, now: Instant) -> bool {
        true
    }
    pub fn connected(&mut self, i: usize) -> Option<Change> {
        None
    }
    pub fn failed(&mut self, i: usize, now: Instant, random: u64) -> Option<Change> {
        None
    }
    pub fn check_passed(&mut self, i: usize) -> Option<Change> {
        None
    }
    pub fn check_failed(&mut self, i: usize) -> Option<Change> {
        None
    }
    pub fn session_started(&mut self, i: usize) {
        self.sessions[i] += 1
    }
    pub fn session_ended(&mut self, i: usize) {
        self.sessions[i] = self.sessions[i].saturating_sub(1)
    }
    pub fn sessions(&self, i: usize) -> u32 {
        self.sessions[i]
    }
    pub fn ejections(&self, i: usize) -> u64 {
        0
    }
    pub fn next_change(&self, now: Instant) -> Option<Instant> {
        None
    }
}
