//! The policies: round robin's exact shares, least sessions and random two by weight,
//! source hashing stable per client and moving only a leaving member's clients.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::balance::rendezvous_hash;
use super::tests::{client, fail, first_pick, primary, Seq};
use super::*;

/// Members of weights 1, 2 and 3.
fn weighted(balance: Balance) -> Group {
    let specs = [primary(1, 1), primary(2, 2), primary(3, 3)];
    Group::new(specs, balance, Rules::default())
}

/// Fresh sessions' picks per member, `n` of them (`random` from `seq`, sessions not
/// started).
fn shares(g: &mut Group, n: usize, seq: &mut Seq) -> Vec<usize> {
    let t0 = Instant::now();
    let mut counts = vec![0; g.len()];
    for _ in 0..n {
        let i = g
            .pick(t0, client(1), Tried::default(), seq.next())
            .expect("a member");
        counts[i] += 1;
    }
    counts
}

/// Asserts each count within `tolerance` (a fraction) of its weight's share of `n`.
fn assert_by_weight(counts: &[usize], weights: &[usize], n: usize, tolerance: f64, what: &str) {
    let total: usize = weights.iter().sum();
    for (count, weight) in counts.iter().zip(weights) {
        let expected = (n * weight) as f64 / total as f64;
        let error = (*count as f64 - expected).abs() / expected;
        assert!(
            error <= tolerance,
            "{what}: counts {counts:?} for weights {weights:?} of {n}: \
             {count} is off {expected:.0} by {:.1}%, more than ±{:.0}%",
            error * 100.0,
            tolerance * 100.0
        );
    }
}

#[test]
fn failover_takes_the_first_usable_member_in_order() {
    let t0 = Instant::now();
    let mut g = weighted(Balance::Failover);
    assert_eq!(shares(&mut g, 100, &mut Seq(1)), [100, 0, 0]);
    fail(&mut g, 0, t0, 3);
    assert_eq!(first_pick(&mut g, t0), Some(1));
}

#[test]
fn round_robin_honours_weights_exactly_and_spreads_them_within_a_cycle() {
    let mut g = weighted(Balance::RoundRobin);
    let t0 = Instant::now();
    let cycle: Vec<_> = (0..6).filter_map(|_| first_pick(&mut g, t0)).collect();
    assert_eq!(
        cycle,
        [2, 1, 0, 2, 1, 2],
        "smooth: never the same twice when avoidable"
    );
    let mut g = weighted(Balance::RoundRobin);
    assert_eq!(shares(&mut g, 3000, &mut Seq(1)), [500, 1000, 1500]);
}

#[test]
fn weights_are_clamped_to_one_to_256() {
    let specs = [primary(1, 0), primary(2, 1000)];
    let mut g = Group::new(specs, Balance::RoundRobin, Rules::default());
    assert_eq!(shares(&mut g, 257 * 4, &mut Seq(1)), [4, 256 * 4]);
}

#[test]
fn random_two_with_short_sessions_spreads_by_weight() {
    let mut g = weighted(Balance::RandomTwo);
    let n = 6000;
    let counts = shares(&mut g, n, &mut Seq(42));
    assert_by_weight(&counts, &[1, 2, 3], n, 0.10, "random two");
}

#[test]
fn random_two_draws_two_distinct_members_and_keeps_the_less_loaded() {
    let t0 = Instant::now();
    let mut g = Group::new(
        [primary(1, 1), primary(2, 1)],
        Balance::RandomTwo,
        Rules::default(),
    );
    g.session_started(0);
    let mut seq = Seq(3);
    for _ in 0..1000 {
        assert_eq!(g.pick(t0, client(1), Tried::default(), seq.next()), Some(1));
    }
    // Per unit of weight: 2 sessions on weight 3 are fewer than 1 on weight 1.
    let mut g = Group::new(
        [primary(1, 1), primary(2, 3)],
        Balance::RandomTwo,
        Rules::default(),
    );
    g.session_started(0);
    g.session_started(1);
    g.session_started(1);
    for _ in 0..1000 {
        assert_eq!(g.pick(t0, client(1), Tried::default(), seq.next()), Some(1));
    }
}

#[test]
fn least_sessions_with_long_sessions_stays_balanced_by_weight() {
    let t0 = Instant::now();
    let mut g = weighted(Balance::LeastSessions);
    for n in 1..=600u32 {
        let i = first_pick(&mut g, t0).expect("a member");
        g.session_started(i);
        for (m, weight) in [1, 2, 3].into_iter().enumerate() {
            // |sessions - n × weight / 6| ≤ 1, in integers.
            let (have, share) = (6 * g.sessions(m), n * weight);
            assert!(
                have.abs_diff(share) <= 6,
                "after {n} picks member {m} has {} sessions, its share is {:.1}",
                g.sessions(m),
                f64::from(share) / 6.0
            );
        }
    }
    assert_eq!(
        (g.sessions(0), g.sessions(1), g.sessions(2)),
        (100, 200, 300)
    );
}

#[test]
fn least_sessions_takes_equals_in_turn() {
    let t0 = Instant::now();
    let specs = [primary(1, 2), primary(2, 2), primary(3, 2)];
    let mut g = Group::new(specs, Balance::LeastSessions, Rules::default());
    let picks: Vec<_> = (0..7).filter_map(|_| first_pick(&mut g, t0)).collect();
    assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
    g.session_started(1);
    let later: Vec<_> = (0..4).filter_map(|_| first_pick(&mut g, t0)).collect();
    assert!(!later.contains(&1), "the loaded one left out: {later:?}");
    // The turn goes on from where it was: over all eleven picks 0 and 2 stay even.
    let count = |m| picks.iter().chain(&later).filter(|&&p| p == m).count();
    assert!(
        count(0).abs_diff(count(2)) <= 1,
        "picks {picks:?} then {later:?}"
    );
}

#[test]
fn least_sessions_honours_weights_when_sessions_are_short() {
    // Every session ends before the next pick: all members tie at zero every time, and
    // the ties go by weight (1, 2, 3), spread within each cycle of six.
    let t0 = Instant::now();
    let mut g = weighted(Balance::LeastSessions);
    let picks: Vec<_> = (0..600).filter_map(|_| first_pick(&mut g, t0)).collect();
    let count = |m| picks.iter().filter(|&&p| p == m).count();
    assert_eq!((count(0), count(1), count(2)), (100, 200, 300));
    for cycle in picks.chunks(6) {
        let mut sorted = cycle.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 1, 2, 2, 2], "one cycle of six: {cycle:?}");
    }
}

#[test]
fn source_hash_keeps_a_client_on_one_member() {
    let t0 = Instant::now();
    let mut g = weighted(Balance::SourceHash);
    let mut seq = Seq(5);
    for n in 0..50 {
        let first = g.pick(t0, client(n), Tried::default(), seq.next());
        for _ in 0..20 {
            assert_eq!(g.pick(t0, client(n), Tried::default(), seq.next()), first);
        }
        // The same client over IPv6 as an IPv4-mapped address.
        let IpAddr::V4(v4) = client(n) else {
            unreachable!("client() is IPv4")
        };
        let mapped = IpAddr::V6(v4.to_ipv6_mapped());
        assert_eq!(g.pick(t0, mapped, Tried::default(), 0), first);
    }
}

#[test]
fn source_hash_spreads_clients_by_weight() {
    let t0 = Instant::now();
    let mut g = weighted(Balance::SourceHash);
    let n = 1000;
    let mut counts = [0; 3];
    for c in 0..n {
        let i = g
            .pick(t0, client(c), Tried::default(), 0)
            .expect("a member");
        counts[i] += 1;
    }
    assert_by_weight(&counts, &[1, 2, 3], n as usize, 0.15, "source hash");
}

#[test]
fn source_hash_moves_only_the_clients_of_a_member_that_leaves_and_back() {
    let t0 = Instant::now();
    let mut g = weighted(Balance::SourceHash);
    let map = |g: &mut Group, now| -> Vec<Option<usize>> {
        (0..1000)
            .map(|c| g.pick(now, client(c), Tried::default(), 0))
            .collect()
    };
    let before = map(&mut g, t0);
    fail(&mut g, 1, t0, 3);
    let during = map(&mut g, t0);
    let mut moved = 0;
    for (b, d) in before.iter().zip(&during) {
        if *b == Some(1) {
            assert_ne!(*d, Some(1));
            moved += 1;
        } else {
            assert_eq!(b, d, "a client of another member stays");
        }
    }
    assert!(moved > 0);
    // A session that tried its member goes where the member's absence would send it.
    let c = (0..1000)
        .find(|&c| before[c as usize] == Some(1))
        .unwrap_or(0);
    let mut tried = Tried::default();
    tried.insert(1);
    assert_eq!(g.pick(t0, client(c), tried, 0), during[c as usize]);
    // Its ejection over: they come back.
    assert_eq!(map(&mut g, t0 + Duration::from_secs(10)), before);
}

#[test]
fn rendezvous_hash_is_pinned() {
    // The mapping of clients must survive restarts and new builds.
    let member = SocketAddr::from(([10, 0, 0, 1], 8000));
    let v6 = SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 443));
    let got = [
        rendezvous_hash(client(1), member),
        rendezvous_hash(client(2), member),
        rendezvous_hash(client(1), v6),
        rendezvous_hash(IpAddr::V6(Ipv6Addr::LOCALHOST), member),
    ];
    // FNV-1a over [4, 192, 168, 0, 1, 4, 10, 0, 0, 1, 0x1f, 0x40], then splitmix64's
    // finalizer, and so on (checked against an independent implementation).
    let pinned = [
        0x6323_aeb8_aa95_4bcf,
        0xd61b_b16f_6f41_3f65,
        0x755a_4319_fcf9_f736,
        0x04c5_e768_7020_4e66,
    ];
    assert_eq!(got, pinned, "{got:#x?}");
}
