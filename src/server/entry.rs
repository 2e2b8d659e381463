//! A session's slab entry, how a session is started (registered, armed, driven), how a
//! failed connect goes on to the next upstream, and the one close line per session.

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use log::{debug, warn};
use mio::Interest;

use super::listener::Kind;
use super::token::Target;
use super::Server;
use crate::core::reason::{CloseReason, Side};
use crate::core::session::{Drive, Policy, Session};
use crate::core::stream::ConnectFailure;
use crate::core::stream::Readiness;
use crate::os::net::{describe, Conn};

/// One live session in the slab.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) id: u64,
    /// The listener's slot.
    pub(super) listener: usize,
    /// The options the session started with (a reload does not change them).
    pub(super) policy: Rc<Policy>,
    pub(super) session: Session<Conn>,
    pub(super) client_addr: SocketAddr,
    /// The upstream connected to, or tried last.
    pub(super) upstream_addr: SocketAddr,
    /// Forward mode: index of `upstream_addr` in the upstream list (for the next try).
    pub(super) upstream_index: Option<usize>,
    pub(super) started: Instant,
    /// The deadline entry armed in the heap for this session, if any.
    pub(super) armed: Option<Instant>,
    pub(super) in_ready: bool,
    pub(super) starved: bool,
    pub(super) closed: bool,
}

/// Whether a stream handed to a new session is new to the poller or already registered
/// (a tunnel becoming a session keeps its socket; only its token changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Registration {
    New,
    Moved,
}

/// Everything needed to start a session.
#[derive(Debug)]
pub(super) struct Start {
    /// The listener's slot.
    pub(super) listener: usize,
    pub(super) id: u64,
    pub(super) session: Session<Conn>,
    pub(super) client_addr: SocketAddr,
    pub(super) upstream_addr: SocketAddr,
    pub(super) upstream_index: Option<usize>,
    pub(super) client: Registration,
    pub(super) upstream: Registration,
    /// Readiness the client stream already had (a tunnel's cache carried over).
    pub(super) client_ready: Readiness,
}

impl Server {
    /// A fresh session id (also used by tunnels and waiting clients in logs).
    pub(super) fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Registers a new session's sockets, inserts it, drives it once and arms its deadline.
    pub(super) fn start_session(&mut self, start: Start, now: Instant) {
        let Start {
            listener,
            id,
            mut session,
            client_addr,
            upstream_addr,
            upstream_index,
            client,
            upstream,
            client_ready,
        } = start;
        let entry = self.sessions.vacant_entry();
        let slot = entry.key();
        let registry = self.poll.registry();
        let both = Interest::READABLE | Interest::WRITABLE;
        let token = |side| Target::Session { slot, side }.token();
        let put = |conn: &mut Conn, how: Registration, side| match how {
            Registration::New => registry.register(conn.source(), token(side), both),
            Registration::Moved => registry.reregister(conn.source(), token(side), both),
        };
        let registered = put(session.stream(Side::Client), client, Side::Client)
            .and_then(|()| put(session.stream(Side::Upstream), upstream, Side::Upstream));
        if let Err(e) = registered {
            warn!("session {id}: cannot register sockets: {}", describe(&e));
            let _ = registry.deregister(session.stream(Side::Client).source());
            let _ = registry.deregister(session.stream(Side::Upstream).source());
            self.unserved(
                listener,
                id,
                client_addr,
                now,
                now,
                CloseReason::ClientError,
            );
            return;
        }
        let Some(l) = self.listeners.get_mut(listener) else {
            return;
        };
        l.sessions += 1;
        let policy = Rc::clone(&l.policy);
        session.on_event(Side::Client, client_ready);
        entry.insert(Entry {
            id,
            listener,
            policy,
            session,
            client_addr,
            upstream_addr,
            upstream_index,
            started: now,
            armed: None,
            in_ready: false,
            starved: false,
            closed: false,
        });
        self.drive(slot, now);
    }

    /// Forward mode dials the upstreams after the failed one, in order; other modes have
    /// one route. Returns how the session goes on: `Waiting` on a new connect, or
    /// `Closed` when no route is left.
    pub(super) fn redial(&mut self, slot: usize, failure: ConnectFailure, now: Instant) -> Drive {
        let Some(e) = self.sessions.get_mut(slot) else {
            return Drive::Waiting;
        };
        debug!(
            "session {}: connect to {} failed ({failure:?})",
            e.id, e.upstream_addr
        );
        // A failed connect is rare: copying the list keeps the counters reachable.
        let upstreams: Vec<SocketAddr> = match self.listeners.get(e.listener).map(|l| &l.kind) {
            Some(Kind::Forward(f)) => f.upstreams.clone(),
            _ => Vec::new(),
        };
        let mut last = failure;
        while let Some(next) = e
            .upstream_index
            .map(|i| i + 1)
            .filter(|&i| i < upstreams.len())
        {
            e.upstream_index = Some(next);
            let addr = upstreams[next];
            e.upstream_addr = addr;
            let mut conn = match Conn::dial(addr) {
                Ok(conn) => conn,
                Err(err) => {
                    debug!(
                        "session {}: connect to {addr} failed: {}",
                        e.id,
                        describe(&err)
                    );
                    last = ConnectFailure::from_error(&err);
                    if let Some(listener) = self.listeners.get_mut(e.listener) {
                        listener.counters.record_connect_failure(last);
                    }
                    continue;
                }
            };
            let token = Target::Session {
                slot,
                side: Side::Upstream,
            }
            .token();
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(err) = self
                .poll
                .registry()
                .register(conn.source(), token, interest)
            {
                debug!("session {}: register failed: {}", e.id, describe(&err));
                last = ConnectFailure::Error;
                if let Some(listener) = self.listeners.get_mut(e.listener) {
                    listener.counters.record_connect_failure(last);
                }
                continue;
            }
            let mut old = e.session.redial(conn, now);
            let _ = self.poll.registry().deregister(old.source());
            return Drive::Waiting;
        }
        e.session.fail_connect(last, &mut self.pool)
    }

    /// Counts one failed connect attempt of listener `l`.
    pub(super) fn count_connect_failure(&mut self, l: usize, failure: ConnectFailure) {
        if let Some(listener) = self.listeners.get_mut(l) {
            listener.counters.record_connect_failure(failure);
        }
    }

    /// Logs the close line, deregisters both sockets and queues the slot to be freed after
    /// this pass. Runs exactly once per session.
    pub(super) fn finish(&mut self, slot: usize, reason: CloseReason, now: Instant) {
        let Some(e) = self.sessions.get_mut(slot) else {
            return;
        };
        if e.closed {
            return;
        }
        e.closed = true;
        let delivered = e.session.delivered();
        let pauses = e.session.pauses();
        let (id, client, upstream, l) = (e.id, e.client_addr, e.upstream_addr, e.listener);
        let age = now.saturating_duration_since(e.started);
        let registry = self.poll.registry();
        let _ = registry.deregister(e.session.stream(Side::Client).source());
        let _ = registry.deregister(e.session.stream(Side::Upstream).source());
        self.closed.push(slot);
        self.record_close(
            l,
            id,
            client,
            Some(upstream),
            delivered,
            pauses,
            age,
            reason,
        );
        if let Some(listener) = self.listeners.get_mut(l) {
            listener.sessions = listener.sessions.saturating_sub(1);
        }
        self.forget_listener_if_done(l);
        // Descriptors and a session slot are free again: a port paused for either may
        // try at once.
        for (_, p) in &mut self.ports {
            p.paused_until = None;
        }
    }

    /// The close of a client that never became a relayed session (refused at a limit,
    /// timed out waiting for a tunnel, gone while waiting, or no upstream could be
    /// dialed): counted and logged like a session's.
    pub(super) fn unserved(
        &mut self,
        l: usize,
        id: u64,
        client: SocketAddr,
        since: Instant,
        now: Instant,
        reason: CloseReason,
    ) {
        let age = now.saturating_duration_since(since);
        self.record_close(l, id, client, None, (0, 0), (0, 0), age, reason);
    }
}

/// Sorts a dial error into a connect failure, for the close reason.
pub(super) fn dial_failure(e: &io::Error) -> CloseReason {
    match ConnectFailure::from_error(e) {
        ConnectFailure::Refused => CloseReason::ConnectRefused,
        ConnectFailure::Timeout => CloseReason::ConnectTimeout,
        ConnectFailure::Error => CloseReason::ConnectError,
    }
}
