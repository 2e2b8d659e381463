//! The sessions of the process: the slab, the lists of sessions to drive again (yielded
//! their byte budget, waiting for a buffer, closed and to be freed), and the buffer pool
//! they borrow rings from.
//!
//! A session is started from a [`Start`] (registered, inserted, driven once), driven
//! after events and deadlines until it waits, settled (re-armed, queued, redialed or
//! finished), and freed after the pass that closed it. What the rest of the loop must
//! learn (a close, a connect attempt's outcome, a session that needs another upstream
//! from its group) is queued as a [`Report`] and taken by the loop once per step; the
//! mode answers a [`Redial`] through [`Sessions::redial`] or [`Sessions::fail_connect`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::debug;
use mio::{Interest, Registry};
use slab::Slab;

use super::owner::{Owner, Target};

mod guard;
mod records;
mod redial;

use crate::core::pool::Pool;
use crate::core::reason::{CloseReason, Side};
use crate::core::session::{Drive, Phase, Policy, Session};
use crate::core::stream::Readiness;
use crate::core::timers::{self, Timers};
use crate::os::link::Link;
use crate::os::net::describe;
pub(super) use records::{
    Attempt, Closed, Dialed, Redial, Registration, Report, Route, Start, Tries,
};

/// Bytes one session may write per pass before others get a turn.
const BUDGET: usize = 256 * 1024;

/// One live session in the slab.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) id: u64,
    /// The listener's slot.
    pub(super) listener: usize,
    /// The options the session started with (a reload does not change them).
    policy: Rc<Policy>,
    pub(super) session: Session<Link>,
    pub(super) client_addr: SocketAddr,
    /// The upstream connected to, or tried last.
    pub(super) upstream_addr: SocketAddr,
    route: Route,
    /// What a PROXY protocol header announces, for a redial to a member that takes one.
    announce: Option<Box<crate::server::proxy::Ends>>,
    /// The destination the client asked for (`connect` and `socks`).
    dest: Option<Box<str>>,
    pub(super) started: Instant,
    /// The deadline entry armed in the heap for this session, if any.
    armed: Option<Instant>,
    /// Dialing its upstream (a connect's outcome not yet reported).
    connecting: bool,
    /// Its connect failed; the mode's answer (another upstream, or none) is awaited.
    redialing: bool,
    /// Its client's first bytes are still to be checked: they must not be a PROXY header.
    guarded: bool,
    in_ready: bool,
    starved: bool,
    closed: bool,
}

impl Entry {
    /// The phase of a live session; `None` once closed.
    pub(super) fn phase(&self) -> Option<Phase> {
        if self.closed {
            None
        } else {
            self.session.phase()
        }
    }
}

/// What sessions may touch while driven: the poller and the deadline heap.
#[derive(Debug)]
pub(super) struct Io<'a> {
    pub(super) registry: &'a Registry,
    pub(super) deadlines: &'a mut Timers<Owner>,
    pub(super) now: Instant,
}

/// The sessions and the buffers they borrow.
#[derive(Debug)]
pub(super) struct Sessions {
    slab: Slab<Entry>,
    /// Sessions that used up their budget: driven again next pass.
    ready: Vec<usize>,
    /// Sessions waiting for a pool buffer, in arrival order.
    starved: VecDeque<usize>,
    /// Slots of sessions closed in this pass, freed after it.
    closed: Vec<usize>,
    pool: Pool,
    reports: Vec<Report>,
}

/// Bytes of state one session costs besides its buffers (slab entry, heap entry).
pub(super) fn overhead() -> usize {
    std::mem::size_of::<Entry>()
        + std::mem::size_of::<usize>()
        + std::mem::size_of::<timers::Entry<Owner>>()
}

impl Sessions {
    pub(super) fn new(pool: Pool, capacity: usize) -> Sessions {
        Sessions {
            slab: Slab::with_capacity(capacity.min(4096)),
            ready: Vec::new(),
            starved: VecDeque::new(),
            closed: Vec::new(),
            pool,
            reports: Vec::new(),
        }
    }

    /// Registers a new session's sockets, inserts it and drives it once. False when its
    /// sockets could not be registered (its close is reported).
    pub(super) fn start(&mut self, start: Start, io: &mut Io<'_>) -> bool {
        let Start {
            listener,
            id,
            policy,
            mut session,
            client_addr,
            upstream_addr,
            route,
            client,
            upstream,
            client_ready,
            upstream_ready,
            announce,
            guard,
            dest,
        } = start;
        let entry = self.slab.vacant_entry();
        let slot = entry.key();
        let both = Interest::READABLE | Interest::WRITABLE;
        let mut put = |side, how| {
            let token = Target::Socket(Owner::Session(slot), side).token();
            let conn = session.stream(side).source();
            match how {
                Registration::New => io.registry.register(conn, token, both),
                Registration::Moved => io.registry.reregister(conn, token, both),
            }
        };
        let registered = put(Side::Client, client).and_then(|()| put(Side::Upstream, upstream));
        if let Err(e) = registered {
            log::warn!("session {id}: cannot register sockets: {}", describe(&e));
            let _ = io
                .registry
                .deregister(session.stream(Side::Client).source());
            let _ = io
                .registry
                .deregister(session.stream(Side::Upstream).source());
            let reason = CloseReason::ClientError;
            let mut closed = Closed::unserved(listener, id, client_addr, Duration::ZERO, reason);
            closed.dest = dest;
            self.reports.push(Report::Unserved(closed));
            return false;
        }
        session.on_event(Side::Client, client_ready);
        session.on_event(Side::Upstream, upstream_ready);
        entry.insert(Entry {
            id,
            listener,
            policy,
            session,
            client_addr,
            upstream_addr,
            route,
            announce,
            dest,
            started: io.now,
            armed: None,
            connecting: upstream == Registration::New,
            redialing: false,
            guarded: guard,
            in_ready: false,
            starved: false,
            closed: false,
        });
        self.drive(slot, io);
        true
    }

    /// An event on one of a session's sockets (a guarded client's readability only once
    /// its first bytes passed).
    pub(super) fn on_event(&mut self, slot: usize, side: Side, ready: Readiness, io: &mut Io<'_>) {
        if let Some(e) = self.slab.get_mut(slot) {
            let ready = match (side, e.guarded) {
                (Side::Client, true) => match guard::check(e, ready) {
                    Ok(ready) => ready,
                    Err(reason) => return self.refuse(slot, reason, io),
                },
                _ => ready,
            };
            e.session.on_event(side, ready);
            self.drive(slot, io);
        }
    }

    /// Closes session `slot` for `reason` before its client's bytes moved.
    fn refuse(&mut self, slot: usize, reason: CloseReason, io: &mut Io<'_>) {
        let Some(e) = self.slab.get_mut(slot).filter(|e| !e.closed) else {
            return;
        };
        let d = e.session.refuse(reason, &mut self.pool);
        self.settle(slot, d, io);
    }

    /// Drives one session until it waits, and settles what it reports.
    pub(super) fn drive(&mut self, slot: usize, io: &mut Io<'_>) {
        let Some(e) = self.slab.get_mut(slot).filter(|e| !e.closed) else {
            return;
        };
        let d = e.session.drive(&mut self.pool, io.now, &e.policy, BUDGET);
        self.settle(slot, d, io);
    }

    /// A session's deadline fired (ignored when stale: superseded, or the slot belongs
    /// to a later session).
    pub(super) fn expire(&mut self, slot: usize, id: u64, at: Instant, io: &mut Io<'_>) {
        let Some(e) = self.slab.get_mut(slot) else {
            return;
        };
        if e.id != id || e.armed != Some(at) || e.closed {
            return;
        }
        e.armed = None;
        let d = e.session.expire(&mut self.pool, io.now, &e.policy);
        self.settle(slot, d, io);
    }

    /// Drives the sessions that yielded their budget in the last pass.
    pub(super) fn drive_ready(&mut self, io: &mut Io<'_>) {
        for slot in std::mem::take(&mut self.ready) {
            if let Some(e) = self.slab.get_mut(slot) {
                e.in_ready = false;
                self.drive(slot, io);
            }
        }
    }

    /// Gives buffers that came back to sessions waiting for one, oldest first.
    pub(super) fn feed_starved(&mut self, io: &mut Io<'_>) {
        while self.pool.can_lend() {
            let Some(slot) = self.starved.pop_front() else {
                break;
            };
            if let Some(e) = self.slab.get_mut(slot) {
                e.starved = false;
                self.drive(slot, io);
            }
        }
    }

    /// The drain timeout expired: every live session closes now.
    pub(super) fn shut_down_all(&mut self, io: &mut Io<'_>) {
        let live: Vec<usize> = self.live_slots().collect();
        for slot in live {
            if let Some(e) = self.slab.get_mut(slot) {
                let d = e.session.shut_down(&mut self.pool);
                self.settle(slot, d, io);
            }
        }
        self.free_closed();
    }

    /// Frees the slots of sessions closed in this pass; dropping the streams closes the
    /// sockets (RST where `abort` set linger 0).
    pub(super) fn free_closed(&mut self) {
        for slot in self.closed.drain(..) {
            if self.slab.contains(slot) {
                drop(self.slab.remove(slot));
            }
        }
    }

    /// What the loop must learn since it last asked.
    pub(super) fn take_reports(&mut self) -> Vec<Report> {
        std::mem::take(&mut self.reports)
    }

    /// Queues a close of a client that never became a session.
    pub(super) fn report_unserved(&mut self, closed: Closed) {
        self.reports.push(Report::Unserved(closed));
    }

    /// Sessions alive (closed ones leave at the end of the pass).
    pub(super) fn live(&self) -> usize {
        self.slab.len() - self.closed.len()
    }

    /// Slab entries, closed ones not yet freed included (they still hold sockets).
    pub(super) fn held(&self) -> usize {
        self.slab.len()
    }

    /// True when sessions yielded and must be driven without waiting.
    pub(super) fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Live sessions, slab order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.slab.iter().map(|(_, e)| e).filter(|e| !e.closed)
    }

    /// The buffer pool.
    pub(super) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Frees the pool's spares that stayed unused, when due (see [`Pool::trim`]).
    pub(super) fn trim_pool(&mut self, now: Instant) {
        if self.pool.next_trim(now).is_some_and(|at| at <= now) {
            self.pool.trim(now);
        }
    }

    /// Whether a heap entry is still a session's current deadline.
    pub(super) fn timer_is_live(&self, slot: usize, id: u64, at: Instant) -> bool {
        self.slab
            .get(slot)
            .is_some_and(|e| !e.closed && e.id == id && e.armed == Some(at))
    }

    fn live_slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.slab.iter().filter(|(_, e)| !e.closed).map(|(s, _)| s)
    }

    fn settle(&mut self, slot: usize, drive: Drive, io: &mut Io<'_>) {
        let Some(e) = self.slab.get_mut(slot) else {
            return;
        };
        if e.connecting && e.session.phase().is_some_and(|p| p != Phase::Connecting) {
            e.connecting = false;
            self.reports.push(Report::Connect(Attempt {
                listener: e.listener,
                group: e.route.group_of(),
                upstream: e.upstream_addr,
                outcome: Ok(io
                    .now
                    .saturating_duration_since(e.started)
                    .saturating_sub(Duration::from_millis(u64::from(e.route.dialed_ms())))),
            }));
        }
        match drive {
            Drive::Waiting => {}
            Drive::Yielded if !e.in_ready => {
                e.in_ready = true;
                self.ready.push(slot);
            }
            Drive::Starved if !e.starved => {
                e.starved = true;
                self.starved.push_back(slot);
            }
            Drive::Yielded | Drive::Starved => {}
            Drive::ConnectFailed(_) if e.redialing => return,
            Drive::ConnectFailed(failure) => {
                e.connecting = false;
                self.reports.push(Report::Connect(Attempt {
                    listener: e.listener,
                    group: e.route.group_of(),
                    upstream: e.upstream_addr,
                    outcome: Err(failure),
                }));
                debug!(
                    "session {}: connect to {} failed ({})",
                    e.id,
                    e.upstream_addr,
                    failure.as_str()
                );
                let Some(tries) = e.route.tries() else {
                    let d = e.session.fail_connect(failure, &mut self.pool);
                    return self.settle(slot, d, io);
                };
                e.redialing = true;
                self.reports.push(Report::Redial(Redial {
                    listener: e.listener,
                    slot,
                    id: e.id,
                    client: e.client_addr,
                    upstream: e.upstream_addr,
                    tries,
                    failure,
                }));
                // No deadline until the mode answers (in this step): the failed
                // connect's has passed.
                return;
            }
            Drive::Closed(reason) => return self.finish(slot, reason, io),
        }
        let Some(e) = self.slab.get_mut(slot) else {
            return;
        };
        if let Some(deadline) = e.session.deadline(&e.policy) {
            let owner = Owner::Session(slot);
            io.deadlines.arm_once(&mut e.armed, deadline, owner, e.id);
        }
    }

    /// Deregisters both sockets, queues the slot to be freed after this pass and reports
    /// the close. Runs exactly once per session.
    fn finish(&mut self, slot: usize, reason: CloseReason, io: &mut Io<'_>) {
        let Some(e) = self.slab.get_mut(slot).filter(|e| !e.closed) else {
            return;
        };
        e.closed = true;
        let _ = io
            .registry
            .deregister(e.session.stream(Side::Client).source());
        let _ = io
            .registry
            .deregister(e.session.stream(Side::Upstream).source());
        self.closed.push(slot);
        self.reports.push(Report::Finished(Closed {
            listener: e.listener,
            id: e.id,
            client: e.client_addr,
            upstream: Some(e.upstream_addr),
            delivered: e.session.delivered(),
            pauses: e.session.pauses(),
            age: io.now.saturating_duration_since(e.started),
            reason,
            group: e.route.group_of(),
            dest: e.dest.take(),
        }));
    }
}
