//! The group: tried sets, tiers (primaries, backups, anyone untried), members replaced,
//! sessions counted, and a failover told as a picture. Shared helpers for the other
//! test files of the module.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::*;

/// `10.0.0.n:8000`.
pub(super) fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 8000))
}

/// A primary member at [`addr`]`(n)`.
pub(super) fn primary(n: u8, weight: u32) -> Spec {
    Spec {
        addr: addr(n),
        weight,
        backup: false,
    }
}

/// A backup member of weight 1 at [`addr`]`(n)`.
pub(super) fn backup(n: u8) -> Spec {
    Spec {
        addr: addr(n),
        weight: 1,
        backup: true,
    }
}

/// The `n`-th client address, `192.168.x.y`.
pub(super) fn client(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xc0a8_0000 + n))
}

/// Deterministic random numbers: a splitmix64 sequence.
pub(super) struct Seq(pub u64);

impl Seq {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A fresh session's pick.
pub(super) fn first_pick(g: &mut Group, now: Instant) -> Option<usize> {
    g.pick(now, client(1), Tried::default(), 0)
}

/// Fails member `i` `times` times at `now` (no jitter: ejections last their whole step).
pub(super) fn fail(g: &mut Group, i: usize, now: Instant, times: u32) -> Option<Change> {
    let mut last = None;
    for _ in 0..times {
        last = g.failed(i, now, 0);
    }
    last
}

/// The picks of one session that tries until the group is exhausted.
fn tries(g: &mut Group, now: Instant) -> Vec<usize> {
    let mut tried = Tried::default();
    let mut order = Vec::new();
    while let Some(i) = g.pick(now, client(1), tried, 0) {
        assert!(order.len() < g.len(), "each member once: {order:?}");
        tried.insert(i);
        order.push(i);
    }
    order
}

#[test]
fn tried_is_a_bitset_of_indices_modulo_64() {
    let mut t = Tried::default();
    assert_eq!(t.count(), 0);
    t.insert(3);
    t.insert(3);
    t.insert(70);
    assert!(t.contains(3) && t.contains(6) && t.contains(70) && t.contains(134));
    assert!(!t.contains(4));
    assert_eq!(t.count(), 2);
}

#[test]
fn backups_are_used_only_when_every_primary_is_unusable() {
    let t0 = Instant::now();
    let specs = [primary(1, 1), primary(2, 1), backup(3), backup(4)];
    let mut g = Group::new(specs, Balance::RoundRobin, Rules::default());
    for _ in 0..20 {
        let i = first_pick(&mut g, t0).expect("a member");
        assert!(i < 2, "a primary while one is usable, got {i}");
    }
    fail(&mut g, 0, t0, 3);
    assert!((0..10).all(|_| first_pick(&mut g, t0) == Some(1)));
    fail(&mut g, 1, t0, 3);
    // Among backups the policy applies the same way.
    let picks: Vec<_> = (0..4).map(|_| first_pick(&mut g, t0)).collect();
    assert_eq!(picks, [Some(2), Some(3), Some(2), Some(3)]);
    // A primary back (its ejection over: on probation): new picks go to it.
    let later = t0 + Duration::from_secs(10);
    assert!(g.usable(0, later) && g.usable(1, later));
    assert!((0..10).all(|_| first_pick(&mut g, later).is_some_and(|i| i < 2)));
}

#[test]
fn a_retry_goes_to_a_backup_once_the_usable_primaries_are_tried() {
    let t0 = Instant::now();
    let specs = [primary(1, 1), primary(2, 1), backup(3)];
    let mut g = Group::new(specs, Balance::Failover, Rules::default());
    assert_eq!(tries(&mut g, t0), [0, 1, 2]);
}

#[test]
fn when_no_member_is_usable_every_one_is_tried_in_order_primaries_first() {
    let t0 = Instant::now();
    let specs = [backup(1), primary(2, 1), primary(3, 5), backup(4)];
    for balance in [Balance::RoundRobin, Balance::SourceHash, Balance::RandomTwo] {
        let mut g = Group::new(specs, balance, Rules::default());
        for i in 0..4 {
            fail(&mut g, i, t0, 3);
            assert!(!g.usable(i, t0));
        }
        assert_eq!(tries(&mut g, t0), [1, 2, 0, 3], "{balance:?}");
        let mut all = Tried::default();
        (0..4).for_each(|i| all.insert(i));
        assert_eq!(g.pick(t0, client(1), all, 0), None);
        // A member tried while ejected stays ejected as drawn.
        let until = g.next_change(t0).expect("ejections run");
        assert_eq!(g.failed(1, t0, 0), None);
        assert_eq!(g.next_change(t0), Some(until));
        // ... and a success there brings it back at once.
        assert_eq!(g.connected(1), Some(Change::Up));
        assert_eq!(first_pick(&mut g, t0), Some(1));
    }
}

#[test]
fn a_group_of_one_member_down_is_still_tried() {
    let t0 = Instant::now();
    let rules = Rules::default();
    let mut g = Group::new([primary(1, 1)], Balance::RoundRobin, rules);
    for _ in 0..rules.fall {
        g.check_failed(0);
    }
    assert_eq!(g.state(0, t0), Some(State::Down));
    assert_eq!(first_pick(&mut g, t0), Some(0));
    let mut tried = Tried::default();
    tried.insert(0);
    assert_eq!(g.pick(t0, client(1), tried, 0), None);
}

#[test]
fn an_empty_group_picks_nothing_and_ignores_unknown_indices() {
    let t0 = Instant::now();
    let mut g = Group::new([], Balance::LeastSessions, Rules::default());
    assert!(g.is_empty());
    assert_eq!(first_pick(&mut g, t0), None);
    assert_eq!(g.failed(7, t0, 0), None);
    assert_eq!(g.connected(7), None);
    g.session_started(7);
    assert_eq!((g.sessions(7), g.ejections(7), g.addr(7)), (0, 0, None));
    assert_eq!((g.state(7, t0), g.usable(7, t0)), (None, false));
}

#[test]
fn sessions_are_counted_per_member_and_never_underflow() {
    let mut g = Group::new(
        [primary(1, 1), primary(2, 1)],
        Balance::Failover,
        Rules::default(),
    );
    g.session_started(1);
    g.session_started(1);
    g.session_ended(1);
    assert_eq!((g.sessions(0), g.sessions(1)), (0, 1));
    g.session_ended(0);
    g.session_ended(1);
    g.session_ended(1);
    assert_eq!((g.sessions(0), g.sessions(1)), (0, 0));
}

#[test]
fn set_members_keeps_the_state_of_members_that_stay() {
    let t0 = Instant::now();
    let specs = [primary(1, 1), primary(2, 1), primary(3, 1)];
    let mut g = Group::new(specs, Balance::RoundRobin, Rules::default());
    fail(&mut g, 0, t0, 3);
    g.session_started(1);
    g.failed(2, t0, 0);
    let until = g.next_change(t0).expect("1 is ejected");

    // 2 leaves, 4 comes, 1 becomes a backup of weight 3; 4 given twice counts once.
    let left = g.set_members([
        Spec {
            weight: 3,
            backup: true,
            ..primary(1, 1)
        },
        primary(4, 1),
        primary(2, 1),
        primary(4, 9),
    ]);
    assert_eq!(left, [addr(3)]);
    assert_eq!(g.len(), 3);
    assert_eq!(g.index_of(addr(1)), Some(0));
    assert_eq!(g.index_of(addr(4)), Some(1));
    assert_eq!(g.index_of(addr(3)), None);
    assert_eq!(g.state(0, t0), Some(State::Ejected { until }), "kept");
    assert_eq!(g.ejections(0), 1);
    assert_eq!((g.sessions(2), g.failures(2)), (1, 0), "kept");
    assert_eq!(g.state(1, t0), Some(State::Up), "new");
    // Round robin starts a new cycle over the usable members.
    let picks: Vec<_> = (0..4).map(|_| first_pick(&mut g, t0)).collect();
    assert_eq!(picks, [Some(1), Some(2), Some(1), Some(2)]);

    // Back again later: a member that left has no history.
    g.set_members([primary(3, 1)]);
    assert_eq!(g.set_members([primary(3, 1), primary(1, 1)]), []);
    assert_eq!(g.state(1, t0), Some(State::Up));
    assert_eq!(g.ejections(1), 0);
}

/// Members a, b and backup c under failover; 3 failures eject for 10 s (no jitter).
///
/// ```text
///   t     event                     pick   a          b          c
///   0 s                             a      up         up         up
///   0 s   a fails 3 times           b      ej. <10s   up         up
///   1 s   b fails 3 times           c      ej. <10s   ej. <11s   up
///   10 s  a's ejection ends         a      probation  ej. <11s   up
///   10 s  a fails once              c      ej. <30s   ej. <11s   up
///   11 s  b's ejection ends         b      ej. <30s   probation  up
///   11 s  b connects: b up again    b      ej. <30s   up         up
///   30 s  a's ejection ends         a      probation  up         up
///   30 s  a connects: a up again    a      up         up         up
/// ```
#[test]
fn failover_picture() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let (a, b, c) = (0, 1, 2);
    let mut g = Group::new(
        [primary(1, 1), primary(2, 1), backup(3)],
        Balance::Failover,
        Rules::default(),
    );
    let ejected = |after, s| {
        Some(Change::Ejected {
            after,
            for_: Duration::from_secs(s),
        })
    };

    assert_eq!(first_pick(&mut g, at(0)), Some(a));
    assert_eq!(fail(&mut g, a, at(0), 3), ejected(3, 10));
    assert_eq!(first_pick(&mut g, at(0)), Some(b));
    assert_eq!(fail(&mut g, b, at(1), 3), ejected(3, 10));
    assert_eq!(first_pick(&mut g, at(1)), Some(c));
    assert_eq!(g.next_change(at(1)), Some(at(10)));
    assert_eq!(first_pick(&mut g, at(10)), Some(a));
    assert_eq!(g.failed(a, at(10), 0), ejected(1, 20));
    assert_eq!(first_pick(&mut g, at(10)), Some(c));
    assert_eq!(g.next_change(at(10)), Some(at(11)));
    assert_eq!(first_pick(&mut g, at(11)), Some(b));
    assert_eq!(g.connected(b), Some(Change::Up));
    assert_eq!(first_pick(&mut g, at(11)), Some(b));
    assert_eq!(g.next_change(at(11)), Some(at(30)));
    assert_eq!(first_pick(&mut g, at(30)), Some(a));
    assert_eq!(g.connected(a), Some(Change::Up));
    assert_eq!(g.next_change(at(30)), None);
    assert_eq!(g.state(a, at(30)), Some(State::Up));
}

#[test]
fn draws_are_a_fixed_sequence_per_seed_and_stay_below_their_bound() {
    let (mut a, mut b) = (Draws::new(7), Draws::new(7));
    let first: Vec<u64> = (0..4).map(|_| a.draw()).collect();
    assert_eq!(first, (0..4).map(|_| b.draw()).collect::<Vec<_>>());
    assert!(first.windows(2).all(|w| w[0] != w[1]), "{first:?}");
    assert!((0..1000).all(|_| a.below(10) < 10));
    assert_eq!(a.below(0), 0);
}
