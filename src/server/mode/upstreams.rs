//! A listener's upstream groups in the loop: which member a session dials, what each
//! connect taught the group (passive health), warm connections, health checks and names
//! looked up again. Forward mode has one group; an agent has one per service.
//!
//! The decisions (which member, ejections, fall and rise) are `core::upstream`'s; this
//! module owns the sockets: a warm connection or a health check is an entry of the
//! listener's slab of [`Held`] connections (`Owner::Upstream` tokens and deadlines).
//!
//! A warm connection is dialed before a client needs it, lent to exactly one session and
//! never taken back: the session owns it from then on and closes it. Before it is lent
//! it must pass validation (connected, younger than its age limit, no hang-up while idle,
//! and a non-blocking peek that finds no end of stream); one that fails is closed and the
//! next one, then a fresh connect, is tried. Bytes the upstream sent first (a banner) stay
//! in the socket and are the session's first bytes to the client.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::Interest;
use slab::Slab;

use super::Cx;
use crate::config::{ProxyProtocol, Upstream, UpstreamOptions};
use crate::core::backoff::Backoff;
use crate::core::stream::ConnectFailure;
use crate::core::upstream::{Change, Draws, Group, Rules, Tried, EJECT_CAP};
use crate::os::net::{describe, Conn};
use crate::os::random;
use crate::server::owner::{self, Owner};
use crate::server::sessions::{Dialed, Tries};
use crate::stats::upstream::UpstreamCounters;

mod held;
mod names;
mod upkeep;
mod views;

use held::{Held, Kind};

/// One member's sockets and counters, beside its state in the core's group.
#[derive(Debug)]
struct Member {
    addr: SocketAddr,
    /// Held slots of idle warm connections, oldest first.
    idle: VecDeque<usize>,
    /// Warm connections being dialed.
    dialing: usize,
    /// Backs warm dialing off while the member fails.
    backoff: Backoff,
    /// When its next health check starts (`None`: checks are off).
    next_check: Option<Instant>,
    /// A check is running.
    checking: bool,
    counters: UpstreamCounters,
    /// The PROXY protocol header its connections start with, if any.
    proxy: Option<ProxyProtocol>,
}

/// One group: its configured targets, what they resolved to, and its members.
#[derive(Debug)]
struct GroupIo {
    /// The service (agent), or `-` (forward).
    name: String,
    targets: Vec<Upstream>,
    /// Each target's last good addresses.
    resolved: Vec<Vec<SocketAddr>>,
    group: Group,
    /// Aligned with the group's members.
    members: Vec<Member>,
    /// When the names are looked up again (`None`: every target is an address).
    next_lookup: Option<Instant>,
    /// A target takes PROXY protocol headers.
    proxied: bool,
}

/// Each group's name and targets, as a configuration gives them.
pub(super) type Targets = Vec<(String, Vec<Upstream>)>;

/// What a reload gave: targets, options and the connect timeout.
type Pending = (Targets, UpstreamOptions, Duration);

/// A listener's groups and the connections they hold.
#[derive(Debug)]
pub(super) struct Upstreams {
    groups: Vec<GroupIo>,
    held: Slab<Held>,
    opts: UpstreamOptions,
    /// How long one connect may take (the listener's connect timeout).
    connect_timeout: Duration,
    /// The next instant [`upkeep`](Self::upkeep) has work (a check, a look-up, the end of
    /// a backoff or of an ejection); `None` with nothing scheduled.
    due: Option<Instant>,
    /// Something changed (a warm connection lost, a member back): refill at the next
    /// upkeep. A lent one schedules its refill instead (`upkeep::REFILL_AFTER`).
    dirty: bool,
    /// Targets and options a reload gave, applied at the next upkeep.
    pending: Option<Pending>,
    /// Draws for picks and jitter.
    draws: Draws,
}

/// The health rules of `opts`.
fn rules(opts: &UpstreamOptions) -> Rules {
    Rules {
        eject_after: opts.eject_after,
        eject_time: opts.eject_time,
        eject_cap: EJECT_CAP.max(opts.eject_time),
        fall: opts.health_fall,
        rise: opts.health_rise,
    }
}

impl Upstreams {
    /// Groups named `names` (forward: one, `-`), each of its targets.
    pub(super) fn new(
        groups: Targets,
        opts: &UpstreamOptions,
        connect_timeout: Duration,
        now: Instant,
    ) -> Upstreams {
        let groups = groups
            .into_iter()
            .map(|(name, targets)| GroupIo::new(name, &targets, opts, now))
            .collect();
        Upstreams {
            groups,
            held: Slab::new(),
            opts: opts.clone(),
            connect_timeout,
            due: Some(now),
            dirty: true,
            pending: None,
            draws: Draws::new(random::below(u64::MAX)),
        }
    }

    /// A connection for a new session (or one whose connect failed, `tries` telling
    /// which members it tried): a valid warm connection of the member the group picks,
    /// else a fresh connect; members that fail at once are skipped. `Err` with the last
    /// failure when the tries are used up or every member was tried.
    pub(super) fn connect(
        &mut self,
        cx: &mut Cx<'_>,
        mut tries: Tries,
        client: SocketAddr,
        last: ConnectFailure,
    ) -> Result<Dialed, ConnectFailure> {
        let g = usize::from(tries.group);
        let Some(io) = self.groups.get(g) else {
            return Err(last);
        };
        let cap = match self.opts.connect_tries {
            0 => io.group.len(),
            n => n,
        };
        let mut last = last;
        while usize::from(tries.made) < cap {
            let Some(io) = self.groups.get_mut(g) else {
                break;
            };
            let pick = io
                .group
                .pick(cx.now, client.ip(), tries.tried, self.draws.draw());
            let Some(i) = pick else {
                break;
            };
            tries.tried.insert(i);
            tries.made = tries.made.saturating_add(1);
            let Some(addr) = io.group.addr(i) else {
                continue;
            };
            let proxy = io.members.get(i).and_then(|m| m.proxy);
            if let Some((conn, ready)) = self.lend(cx, g, i) {
                self.started(g, i);
                return Ok(Dialed {
                    conn,
                    addr,
                    tries,
                    warm: Some(ready),
                    proxy,
                });
            }
            match Conn::dial(addr, Some(cx.tuning())) {
                Ok(conn) => {
                    self.started(g, i);
                    return Ok(Dialed {
                        conn,
                        addr,
                        tries,
                        warm: None,
                        proxy,
                    });
                }
                Err(e) => {
                    debug!("connect to {addr} failed: {}", describe(&e));
                    last = ConnectFailure::from_error(&e);
                    cx.counters.record_connect_failure(last);
                    self.attempted(cx, g, addr, Err(last));
                }
            }
        }
        Err(last)
    }

    /// Whether a member of any group takes PROXY protocol headers (sessions then keep
    /// what a header would announce).
    pub(super) fn announces(&self) -> bool {
        self.groups.iter().any(|g| g.proxied)
    }

    /// A session starts on member `i` of group `g`.
    fn started(&mut self, g: usize, i: usize) {
        if let Some(io) = self.groups.get_mut(g) {
            io.group.session_started(i);
        }
    }

    /// A session on `addr` of group `g` closed or moved to another member.
    pub(super) fn ended(&mut self, g: usize, addr: SocketAddr) {
        if let Some(io) = self.groups.get_mut(g) {
            if let Some(i) = io.group.index_of(addr) {
                io.group.session_ended(i);
            }
        }
    }

    /// A connect to `addr` of group `g` ended: the group's passive health and the
    /// member's counters learn it (a change is logged).
    pub(super) fn attempted(
        &mut self,
        cx: &mut Cx<'_>,
        g: usize,
        addr: SocketAddr,
        outcome: Result<Duration, ConnectFailure>,
    ) {
        let Some(io) = self.groups.get_mut(g) else {
            return;
        };
        let Some(i) = io.group.index_of(addr) else {
            return;
        };
        let change = match outcome {
            Ok(took) => {
                if let Some(m) = io.members.get_mut(i) {
                    m.counters.connect_times.record(took);
                }
                io.group.connected(i)
            }
            Err(failure) => {
                if let Some(m) = io.members.get_mut(i) {
                    m.counters.connect_failures[failure.index()] += 1;
                }
                io.group.failed(i, cx.now, self.draws.draw())
            }
        };
        self.changed(cx, g, addr, change);
    }

    /// Logs a member's change of state; an ejection or a fall closes its warm
    /// connections (they are not lent while it is out) and reschedules upkeep.
    fn changed(&mut self, cx: &mut Cx<'_>, g: usize, addr: SocketAddr, change: Option<Change>) {
        let Some(change) = change else {
            return;
        };
        let name = self.groups.get(g).map_or("-", |io| io.name.as_str());
        let what = match name {
            "-" => format!("upstream {addr}"),
            service => format!("service {service}: upstream {addr}"),
        };
        match change {
            Change::Ejected { after, for_ } => {
                warn!("{what} down: ejected for {for_:?} after {after} failed connects");
                self.close_member_conns(cx, g, addr);
            }
            Change::Down => {
                warn!("{what} down: failed its health checks");
                self.close_member_conns(cx, g, addr);
            }
            Change::Up => info!("{what} up again"),
        }
        self.due = Some(cx.now);
        self.dirty = true;
    }

    /// Closes every connection held (the listener closes or its state is replaced).
    pub(super) fn close(&mut self, cx: &mut Cx<'_>) {
        for mut h in self.held.drain() {
            let _ = cx.registry.deregister(h.conn.source());
        }
        for io in &mut self.groups {
            for m in &mut io.members {
                m.idle.clear();
                m.dialing = 0;
                m.checking = false;
            }
        }
    }

    /// Connections held (warm and checks), for the open-files count.
    pub(super) fn entries(&self) -> usize {
        self.held.len()
    }

    /// Closes the warm connections and the check of `addr` in group `g`.
    fn close_member_conns(&mut self, cx: &mut Cx<'_>, g: usize, addr: SocketAddr) {
        let slots: Vec<usize> = self
            .held
            .iter()
            .filter(|(_, h)| usize::from(h.group) == g && h.addr == addr)
            .map(|(s, _)| s)
            .collect();
        for slot in slots {
            self.drop_held(cx, slot);
        }
    }

    /// The token of held slot `slot`.
    fn token(cx: &Cx<'_>, slot: usize) -> mio::Token {
        owner::token(Owner::Upstream {
            listener: cx.listener,
            slot,
        })
    }

    /// Registers a fresh connection as held slot for `kind`.
    fn hold(&mut self, cx: &mut Cx<'_>, g: usize, addr: SocketAddr, kind: Kind) -> bool {
        // A health check lives for one connect: no keepalive.
        let tuning = (kind != Kind::Check).then(|| cx.tuning());
        let mut conn = match Conn::dial(addr, tuning) {
            Ok(c) => c,
            Err(e) => {
                debug!("connect to {addr} failed: {}", describe(&e));
                return false;
            }
        };
        let entry = self.held.vacant_entry();
        let slot = entry.key();
        let token = Self::token(cx, slot);
        let both = Interest::READABLE | Interest::WRITABLE;
        if cx.registry.register(conn.source(), token, both).is_err() {
            return false;
        }
        let id = cx.ids.next();
        let deadline = cx.now + self.connect_timeout;
        let mut h = Held {
            group: u16::try_from(g).unwrap_or(u16::MAX),
            addr,
            id,
            conn,
            kind,
            since: cx.now,
            armed: None,
        };
        let owner = Owner::Upstream {
            listener: cx.listener,
            slot,
        };
        cx.deadlines.arm_once(&mut h.armed, deadline, owner, id);
        entry.insert(h);
        true
    }
}

/// Whether active health checks run.
fn checks_on(opts: &UpstreamOptions) -> bool {
    opts.health_check == crate::core::upstream::HealthCheck::Tcp
}

/// A fresh set of tries in group `g`.
pub(super) fn first_tries(g: usize) -> Tries {
    Tries {
        group: u16::try_from(g).unwrap_or(u16::MAX),
        made: 0,
        dialed_ms: 0,
        tried: Tried::default(),
    }
}
