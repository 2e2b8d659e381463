//! An agent's services and the state of each one's tunnels: how many are open, the
//! backoff after failures (`core::backoff`), and whether they authenticated since the
//! last failure (the READY line waits for every service).

use std::time::{Duration, Instant};

use crate::config::Service;
use crate::core::backoff::Backoff;

/// One service's tunnels.
#[derive(Debug, Default, Clone)]
struct ServiceTunnels {
    open: usize,
    backoff: Backoff,
    up: bool,
}

/// The services an agent offers, and their tunnels' state.
#[derive(Debug)]
pub(super) struct Services {
    list: Vec<Service>,
    tunnels: Vec<ServiceTunnels>,
    /// Idle tunnels kept per service.
    pool: usize,
    backoff_max: Duration,
}

impl Services {
    pub(super) fn new(list: &[Service], pool: usize, backoff_max: Duration) -> Services {
        Services {
            list: list.to_vec(),
            tunnels: vec![ServiceTunnels::default(); list.len()],
            pool,
            backoff_max,
        }
    }

    /// New addresses and limits for the same service names. A smaller pool keeps its
    /// extra tunnels until they are used.
    pub(super) fn update(&mut self, list: &[Service], pool: usize, backoff_max: Duration) {
        self.list = list.to_vec();
        self.pool = pool;
        self.backoff_max = backoff_max;
    }

    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    /// A service's name (`?` for an index that is not one).
    pub(super) fn name(&self, service: usize) -> &str {
        self.list.get(service).map_or("?", |s| s.name.as_str())
    }

    /// Every service, in configuration order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Service> {
        self.list.iter()
    }

    /// Whether every service has authenticated tunnels.
    pub(super) fn up(&self) -> bool {
        self.tunnels.iter().all(|s| s.up)
    }

    /// Whether `service` wants one more tunnel now: fewer than the pool open, and not
    /// backing off.
    pub(super) fn wants_tunnel(&self, service: usize, now: Instant) -> bool {
        self.tunnels
            .get(service)
            .is_some_and(|s| s.open < self.pool && !s.backoff.waiting(now))
    }

    /// When a service's tunnels may be opened again (after a backoff).
    pub(super) fn next_wake(&self) -> Option<Instant> {
        self.tunnels
            .iter()
            .filter(|s| s.open < self.pool)
            .filter_map(|s| s.backoff.retry_at())
            .min()
    }

    /// A tunnel of `service` was opened.
    pub(super) fn opened(&mut self, service: usize) {
        if let Some(s) = self.tunnels.get_mut(service) {
            s.open += 1;
        }
    }

    /// A tunnel of `service` is gone (paired or ended); whether the service was up.
    pub(super) fn closed(&mut self, service: usize) -> bool {
        self.tunnels.get_mut(service).is_some_and(|s| {
            s.open = s.open.saturating_sub(1);
            s.up
        })
    }

    /// Every tunnel is gone.
    pub(super) fn clear(&mut self) {
        self.tunnels.iter_mut().for_each(|s| s.open = 0);
    }

    /// A tunnel of `service` authenticated: the backoff starts over. True when the
    /// service was not up before.
    pub(super) fn succeeded(&mut self, service: usize) -> bool {
        let Some(s) = self.tunnels.get_mut(service) else {
            return false;
        };
        s.backoff.succeeded();
        !std::mem::replace(&mut s.up, true)
    }

    /// A tunnel of `service` failed at `now`: the service is down, and backs off (tunnels
    /// that fail together count as one round; `random` picks the jitter). The delay when
    /// this starts a new round.
    pub(super) fn failed(&mut self, service: usize, now: Instant, random: u64) -> Option<Duration> {
        let s = self.tunnels.get_mut(service)?;
        s.up = false;
        s.backoff.failed(now, self.backoff_max, random)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services() -> Services {
        let list = [Service {
            name: "ssh".into(),
            addr: "127.0.0.1:22".parse().expect("addr"),
            target: "127.0.0.1:22".into(),
            addrs: vec!["127.0.0.1:22".parse().expect("addr")],
            proxy: None,
        }];
        Services::new(&list, 2, Duration::from_secs(30))
    }

    #[test]
    fn a_service_wants_tunnels_up_to_its_pool_and_not_while_backing_off() {
        let t0 = Instant::now();
        let mut s = services();
        assert!(s.wants_tunnel(0, t0));
        s.opened(0);
        s.opened(0);
        assert!(!s.wants_tunnel(0, t0), "pool full");
        assert!(!s.closed(0), "not up yet");
        let delay = s.failed(0, t0, 0).expect("a new round");
        assert!(!s.wants_tunnel(0, t0), "backing off");
        assert_eq!(s.next_wake(), Some(t0 + delay));
        assert!(s.wants_tunnel(0, t0 + delay));
        assert!(!s.wants_tunnel(7, t0), "no such service");
    }

    #[test]
    fn up_until_a_failure() {
        let t0 = Instant::now();
        let mut s = services();
        assert!(!s.up());
        assert!(s.succeeded(0), "newly up");
        assert!(!s.succeeded(0), "already up");
        assert!(s.up());
        s.opened(0);
        assert!(s.closed(0), "was up");
        s.failed(0, t0, 0);
        assert!(!s.up());
        assert_eq!(s.name(0), "ssh");
        assert_eq!(s.name(3), "?");
    }
}
