//! Names and reloads: what a group's targets resolve to, the members rebuilt when a
//! look-up answers or a reload gives new targets (members that stay keep their sockets,
//! counters and health; those that leave lose their warm connections and checks, never
//! their live sessions).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{info, warn};

use super::{checks_on, rules, GroupIo, Member, Targets, Upstreams};
use crate::config::{ProxyProtocol, Upstream, UpstreamOptions};
use crate::core::backoff::Backoff;
use crate::core::upstream::{Group, Spec};
use crate::os::net::describe;
use crate::os::random;
use crate::server::mode::Cx;
use crate::server::resolver::{Answer, Lookup};
use crate::stats::upstream::UpstreamCounters;

/// The members `targets` resolve to, first occurrence of an address kept.
fn specs(targets: &[Upstream], resolved: &[Vec<SocketAddr>]) -> Vec<Spec> {
    let mut out: Vec<Spec> = Vec::new();
    for (t, addrs) in targets.iter().zip(resolved) {
        for &addr in addrs {
            if !out.iter().any(|s| s.addr == addr) {
                out.push(Spec {
                    addr,
                    weight: t.weight,
                    backup: t.backup,
                });
            }
        }
    }
    out
}

/// The PROXY protocol of the first target that gave `addr`.
fn proxy_of(
    targets: &[Upstream],
    resolved: &[Vec<SocketAddr>],
    addr: SocketAddr,
) -> Option<ProxyProtocol> {
    targets
        .iter()
        .zip(resolved)
        .find(|(_, addrs)| addrs.contains(&addr))
        .and_then(|(t, _)| t.proxy)
}

/// Whether `target` must be looked up (it is a name, not an address).
pub(super) fn is_name(target: &str) -> bool {
    target.parse::<SocketAddr>().is_err()
}

impl GroupIo {
    pub(super) fn new(
        name: String,
        targets: &[Upstream],
        opts: &UpstreamOptions,
        now: Instant,
    ) -> GroupIo {
        let resolved: Vec<Vec<SocketAddr>> = targets.iter().map(|t| t.addrs.clone()).collect();
        let specs = specs(targets, &resolved);
        let members = specs
            .iter()
            .map(|s| Member::new(s.addr, proxy_of(targets, &resolved, s.addr), opts, now))
            .collect();
        let named = targets.iter().any(|t| is_name(&t.target));
        GroupIo {
            name,
            targets: targets.to_vec(),
            resolved,
            group: Group::new(specs, opts.balance, rules(opts)),
            members,
            next_lookup: named.then(|| now + opts.dns_refresh),
            proxied: targets.iter().any(|t| t.proxy.is_some()),
        }
    }

    /// Rebuilds the members from the targets' addresses: members that stay keep their
    /// sockets and counters. Returns the addresses that left.
    pub(super) fn rebuild(&mut self, opts: &UpstreamOptions, now: Instant) -> Vec<SocketAddr> {
        let specs = specs(&self.targets, &self.resolved);
        let gone = self.group.set_members(specs.iter().copied());
        let mut old = std::mem::take(&mut self.members);
        self.members = (0..self.group.len())
            .filter_map(|i| self.group.addr(i))
            .map(|addr| {
                let proxy = proxy_of(&self.targets, &self.resolved, addr);
                match old.iter().position(|m| m.addr == addr) {
                    Some(k) => {
                        let mut m = old.swap_remove(k);
                        m.proxy = proxy;
                        m
                    }
                    None => Member::new(addr, proxy, opts, now),
                }
            })
            .collect();
        gone
    }
}

impl Member {
    pub(super) fn new(
        addr: SocketAddr,
        proxy: Option<ProxyProtocol>,
        opts: &UpstreamOptions,
        now: Instant,
    ) -> Member {
        // Checks start spread over one interval, so a thousand upstreams are not checked
        // in the same pass.
        let next_check = checks_on(opts).then(|| {
            let span = u64::try_from(opts.health_interval.as_millis()).unwrap_or(u64::MAX);
            now + Duration::from_millis(random::below(span.max(1)))
        });
        Member {
            addr,
            idle: VecDeque::new(),
            dialing: 0,
            backoff: Backoff::default(),
            next_check,
            checking: false,
            counters: UpstreamCounters::default(),
            proxy,
        }
    }
}

impl Upstreams {
    /// New options and targets (a reload that keeps the listener's state), applied at
    /// the next upkeep: members that stay keep their sockets, counters and health.
    pub(in crate::server::mode) fn update(
        &mut self,
        groups: Targets,
        opts: &UpstreamOptions,
        connect_timeout: Duration,
    ) {
        self.pending = Some((groups, opts.clone(), connect_timeout));
        self.dirty = true;
    }

    /// Applies what [`update`](Self::update) left.
    pub(super) fn apply_update(&mut self, cx: &mut Cx<'_>) {
        let Some((groups, opts, connect_timeout)) = self.pending.take() else {
            return;
        };
        self.opts = opts;
        self.connect_timeout = connect_timeout;
        let mut gone = Vec::new();
        for (g, (name, targets)) in groups.into_iter().enumerate() {
            let Some(io) = self.groups.get_mut(g).filter(|io| io.name == name) else {
                continue;
            };
            io.group.set_rules(self.opts.balance, rules(&self.opts));
            io.resolved = targets.iter().map(|t| t.addrs.clone()).collect();
            io.proxied = targets.iter().any(|t| t.proxy.is_some());
            io.targets = targets;
            gone.extend(io.rebuild(&self.opts, cx.now).into_iter().map(|a| (g, a)));
        }
        for (g, addr) in gone {
            self.close_member_conns(cx, g, addr);
        }
        // Connections beyond a lowered target, or of members now out, are closed.
        let want = self.opts.warm;
        for g in 0..self.groups.len() {
            for i in 0..self.groups[g].members.len() {
                while self.groups[g].members[i].idle.len() > want {
                    if let Some(slot) = self.groups[g].members[i].idle.pop_back() {
                        self.drop_held(cx, slot);
                    }
                }
                if !checks_on(&self.opts) {
                    self.groups[g].members[i].next_check = None;
                } else if self.groups[g].members[i].next_check.is_none() {
                    self.groups[g].members[i].next_check = Some(cx.now);
                }
            }
        }
    }

    /// The look-up of one of the groups' names answered: a failed or empty answer keeps
    /// the last good addresses; members whose address left lose their warm connections
    /// and checks (live sessions on them are untouched).
    pub(in crate::server::mode) fn on_resolved(&mut self, cx: &mut Cx<'_>, answer: Answer) {
        let (g, t) = (
            (answer.lookup.what >> 16) as usize,
            (answer.lookup.what & 0xffff) as usize,
        );
        let opts = self.opts.clone();
        let Some(io) = self.groups.get_mut(g) else {
            return;
        };
        let Some(target) = io.targets.get(t).filter(|x| x.target == answer.name) else {
            return;
        };
        let mut addrs = match answer.addrs {
            Ok(addrs) if !addrs.is_empty() => addrs,
            Ok(_) => {
                warn!(
                    "upstream {}: the name resolves to no address; keeping the last",
                    target.target
                );
                return;
            }
            Err(e) => {
                warn!(
                    "upstream {}: cannot resolve ({}); keeping the last addresses",
                    target.target,
                    describe(&e)
                );
                return;
            }
        };
        addrs.dedup();
        if io.resolved.get(t) == Some(&addrs) {
            return;
        }
        info!("upstream {}: now {:?}", target.target, addrs);
        if let Some(r) = io.resolved.get_mut(t) {
            *r = addrs;
        }
        let gone = io.rebuild(&opts, cx.now);
        for addr in gone {
            self.close_member_conns(cx, g, addr);
        }
        self.dirty = true;
    }

    /// Asks the resolver for every name of group `g`.
    pub(super) fn look_up(&mut self, cx: &mut Cx<'_>, g: usize) {
        let Some(io) = self.groups.get(g) else {
            return;
        };
        for (t, target) in io.targets.iter().enumerate() {
            if is_name(&target.target) {
                let what = (u32::try_from(g).unwrap_or(0) << 16) | u32::try_from(t).unwrap_or(0);
                let lookup = Lookup {
                    listener: cx.listener,
                    what,
                };
                cx.resolver.request(lookup, &target.target);
            }
        }
    }
}
