//! `connect` and `socks` listeners: each client names its destination, which the
//! listener checks against its destination policy, resolves off the loop, and dials.
//!
//! A client is held here, in its **handshake**, until its tunnel opens:
//!
//! ```text
//!  accept ──▶ Reading ──request──▶ Resolving ──addresses──▶ Dialing ──won──▶ session
//!   │  (client-allow,   │ (a literal address skips Resolving)  │ (Happy Eyeballs, `race`)
//!   │   limits, failed  │                                      │
//!   ▼   sources)        ▼ refusal, deadline, client gone       ▼ policy, look-up, connect failure
//!  closed            answer (if the dialect has one), then close
//! ```
//!
//! Reading peeks at the client's bytes and consumes exactly each message (`dialect`),
//! so bytes sent after the request stay in the socket and are the tunnel's first bytes.
//! Every stage has its deadline: the whole request within `handshake_timeout` (absolute,
//! from the accept), the look-up within `resolve_timeout`, the connects within
//! `connect_timeout`. The tunnel's answer (`200`, SOCKS reply `00`) is the session's
//! preamble to the client. Only addresses the policy allowed are ever dialed, each one
//! checked, and a name's addresses are checked after the look-up, never before.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Instant;

use log::debug;
use mio::Interest;
use slab::Slab;

use super::{Action, Cx};
use crate::config::{Dynamic, Mode};
use crate::core::failures::{Admission, Failures};
use crate::core::policy::{Dest, Policy, Verdict};
use crate::core::reason::CloseReason;
use crate::core::session::{Preamble, Session};
use crate::core::stream::{classify, retry, Io, Readiness, Stream};
use crate::os::link::Link;
use crate::os::net::Conn;
use crate::proto::connect::Host;
use crate::server::owner::{self, Owner};
use crate::server::resolver::{Answer, Lookup};
use crate::server::sessions::{Registration, Route, Start};

mod connect;
mod dialect;
mod race;
mod socks;

use dialect::{Dialect, Failure, Step};
use race::{interleave, Outcome, Race};

/// Bytes of a refused client's unread request discarded before its answer, so the
/// close sends a FIN after the answer rather than a reset that may destroy it.
const DISCARD: usize = 64 << 10;

/// Where a handshake stands.
#[derive(Debug)]
enum Stage {
    /// Reading the client's messages.
    Reading,
    /// The destination's name is being looked up.
    Resolving {
        lookup: u32,
        host: Box<str>,
        port: u16,
        until: Instant,
    },
    /// Connecting to the allowed addresses.
    Dialing(Box<Race>),
}

/// A client before its tunnel opens.
#[derive(Debug)]
struct Handshake {
    id: u64,
    client: Conn,
    peer: SocketAddr,
    since: Instant,
    dialect: Dialect,
    stage: Stage,
    armed: Option<Instant>,
    /// The destination as asked (`name:port` or `address:port`), once read.
    dest: Option<Box<str>>,
}

/// A `connect` or `socks` listener's own state.
#[derive(Debug)]
pub(super) struct DynamicState {
    opts: Dynamic,
    fresh: fn() -> Dialect,
    policy: Policy,
    handshakes: Slab<Handshake>,
    /// Look-ups in flight: the key's number to the handshake's slot.
    lookups: HashMap<u32, usize>,
    /// Handshakes and sessions per client address.
    clients: HashMap<IpAddr, usize>,
    /// Sessions started here and still live: id to client address.
    sessions: HashMap<u64, IpAddr>,
    /// Failed credentials per source.
    failures: Failures,
}

impl DynamicState {
    pub(super) fn new(mode: &Mode, opts: &Dynamic) -> DynamicState {
        let (fresh, policy): (fn() -> Dialect, Policy) = match mode {
            Mode::Socks(_) => (Dialect::socks, Policy::socks()),
            _ => (Dialect::connect, Policy::connect()),
        };
        let mut state = DynamicState {
            opts: opts.clone(),
            fresh,
            policy,
            handshakes: Slab::new(),
            lookups: HashMap::new(),
            clients: HashMap::new(),
            sessions: HashMap::new(),
            failures: Failures::default(),
        };
        state.update(opts);
        state
    }

    /// New options for new clients (handshakes in flight keep their deadlines).
    pub(super) fn update(&mut self, opts: &Dynamic) {
        self.opts = opts.clone();
        self.policy.allow = opts.allow.clone();
        self.policy.deny = opts.deny.clone();
        // The own listeners are learned from accepted connections (see `learn_own`);
        // addresses configured with a port are known at once.
        let own: Vec<SocketAddr> = opts
            .listen
            .iter()
            .copied()
            .filter(|a| a.port() != 0)
            .collect();
        for a in own {
            if !self.policy.own.listeners.contains(&a) {
                self.policy.own.listeners.push(a);
            }
        }
    }

    /// A new client: refused at once by client-allow, a failed source or a limit, else
    /// held for its handshake.
    pub(super) fn open(&mut self, cx: &mut Cx<'_>, mut conn: Conn, peer: SocketAddr) {
        let id = cx.ids.next();
        let ip = peer.ip();
        let refusal = if !self.opts.client_allow.is_empty()
            && !self.opts.client_allow.iter().any(|c| c.contains(ip))
        {
            Some((CloseReason::Auth, "not in client-allow"))
        } else if self.failures.admission(ip, cx.now) == Admission::Refuse {
            Some((CloseReason::Auth, "too many failed credentials"))
        } else if self.handshakes.len() >= self.opts.max_handshakes {
            Some((CloseReason::Limit, "max-handshakes reached"))
        } else if self.clients.get(&ip).copied().unwrap_or(0) >= self.opts.max_sessions_per_client {
            Some((CloseReason::Limit, "max-sessions-per-client reached"))
        } else {
            None
        };
        if let Some((reason, why)) = refusal {
            debug!("client {id} from {peer}: refused: {why}");
            cx.unserved(id, peer, cx.now, reason);
            return;
        }
        self.learn_own(&conn);
        let entry = self.handshakes.vacant_entry();
        let slot = entry.key();
        let token = owner::token(handshake(cx.listener, slot, 0));
        if let Err(e) = cx
            .registry
            .register(conn.source(), token, Interest::READABLE)
        {
            debug!("client {id} from {peer}: cannot register: {e}");
            cx.unserved(id, peer, cx.now, CloseReason::ClientError);
            return;
        }
        entry.insert(Handshake {
            id,
            client: conn,
            peer,
            since: cx.now,
            dialect: (self.fresh)(),
            stage: Stage::Reading,
            armed: None,
            dest: None,
        });
        *self.clients.entry(ip).or_insert(0) += 1;
        self.rearm(cx, slot);
    }

    /// Learns the address a client reached, while some listening port is unknown (port
    /// 0): a destination equal to it is the proxy itself.
    fn learn_own(&mut self, conn: &Conn) {
        if self.policy.own.listeners.len() >= self.opts.listen.len() {
            return;
        }
        if let Ok(local) = conn.local_addr() {
            if !self.policy.own.listeners.contains(&local) {
                self.policy.own.listeners.push(local);
            }
        }
    }

    /// An event on a handshake's client (`which` 0) or one of its connects.
    pub(super) fn on_event(&mut self, cx: &mut Cx<'_>, slot: usize, _ready: Readiness) {
        let (hs, which) = (slot >> 2, slot & 3);
        let Some(h) = self.handshakes.get_mut(hs) else {
            return;
        };
        match (&mut h.stage, which) {
            (Stage::Reading, 0) => self.read(cx, hs),
            (_, 0) => self.watch_client(cx, hs),
            (Stage::Dialing(race), leg) => match race.on_event(leg - 1, cx.now) {
                Some(Outcome::Won(leg)) => self.win(cx, hs, leg),
                Some(_) => self.advance(cx, hs),
                None => {}
            },
            _ => {}
        }
    }

    /// Reads the client's messages while they are whole.
    fn read(&mut self, cx: &mut Cx<'_>, hs: usize) {
        let users = &self.opts.credentials;
        loop {
            let Some(h) = self.handshakes.get_mut(hs) else {
                return;
            };
            let mut buf = vec![0u8; h.dialect.max_message()];
            let n = match classify(retry(|| h.client.peek(&mut buf))) {
                Io::Moved(n) => n,
                Io::Blocked => return,
                Io::Eof => return self.finish(cx, hs, None, CloseReason::ClientEof),
                Io::Reset => return self.finish(cx, hs, None, CloseReason::ClientReset),
                Io::Error(_) => return self.finish(cx, hs, None, CloseReason::ClientError),
            };
            let bytes = buf.get(..n).unwrap_or_default();
            match h.dialect.step(bytes, users) {
                Step::More if n < buf.len() => return,
                Step::More => {
                    debug!("client {} from {}: message too long", h.id, h.peer);
                    return self.finish(cx, hs, None, CloseReason::Handshake);
                }
                Step::Answer { used, answer } => {
                    if consume(&mut h.client, used).is_err() || !send(&mut h.client, &answer) {
                        return self.finish(cx, hs, None, CloseReason::ClientError);
                    }
                }
                Step::Request { used, host, port } => {
                    if consume(&mut h.client, used).is_err() {
                        return self.finish(cx, hs, None, CloseReason::ClientError);
                    }
                    return self.request(cx, hs, host, port);
                }
                Step::Refuse {
                    answer,
                    reason,
                    why,
                } => {
                    debug!("client {} from {}: refused: {why}", h.id, h.peer);
                    if reason == CloseReason::Auth {
                        self.failures.record(h.peer.ip(), cx.now);
                    }
                    return self.finish(cx, hs, answer, reason);
                }
            }
        }
    }

    /// A client in its look-up or connects had an event: closed if it is gone (bytes it
    /// sent are tunnel data, left in the socket).
    fn watch_client(&mut self, cx: &mut Cx<'_>, hs: usize) {
        let Some(h) = self.handshakes.get_mut(hs) else {
            return;
        };
        let mut byte = [0u8; 1];
        match classify(retry(|| h.client.peek(&mut byte))) {
            Io::Moved(_) | Io::Blocked => {}
            Io::Eof => self.finish(cx, hs, None, CloseReason::ClientEof),
            Io::Reset => self.finish(cx, hs, None, CloseReason::ClientReset),
            Io::Error(_) => self.finish(cx, hs, None, CloseReason::ClientError),
        }
    }

    /// The client's request: a literal address is checked and dialed, a name looked up.
    fn request(&mut self, cx: &mut Cx<'_>, hs: usize, host: Host, port: u16) {
        let Some(h) = self.handshakes.get_mut(hs) else {
            return;
        };
        match host {
            Host::Ip(ip) => {
                let addr = SocketAddr::new(ip, port);
                h.dest = Some(addr.to_string().into());
                match self.policy.check(Dest {
                    host: None,
                    ip,
                    port,
                }) {
                    Verdict::Allow => self.dial(cx, hs, vec![addr]),
                    Verdict::Deny(why) => {
                        debug!("client {} from {}: {addr} denied: {why}", h.id, h.peer);
                        self.fail(cx, hs, Failure::Denied);
                    }
                }
            }
            Host::Name(name) => {
                let target = format!("{name}:{port}");
                // The id's low bits: unique among the look-ups in flight.
                let lookup = h.id as u32;
                let key = Lookup {
                    listener: cx.listener,
                    what: lookup,
                };
                let queued =
                    !self.lookups.contains_key(&lookup) && cx.resolver.request(key, &target);
                h.dest = Some(target.into());
                if !queued {
                    debug!("client {} from {}: look-up not queued", h.id, h.peer);
                    return self.finish(cx, hs, None, CloseReason::Limit);
                }
                self.lookups.insert(lookup, hs);
                h.stage = Stage::Resolving {
                    lookup,
                    host: name.into(),
                    port,
                    until: cx.now + self.opts.resolve_timeout,
                };
                self.rearm(cx, hs);
            }
        }
    }

    /// The resolver answered a look-up (one that timed out is dropped).
    pub(super) fn on_resolved(&mut self, cx: &mut Cx<'_>, answer: Answer) {
        let Some(hs) = self.lookups.remove(&answer.lookup.what) else {
            return;
        };
        let Some(h) = self.handshakes.get_mut(hs) else {
            return;
        };
        let Stage::Resolving { host, port, .. } = &h.stage else {
            return;
        };
        let (host, port) = (host.clone(), *port);
        let found = match answer.addrs {
            Ok(addrs) if !addrs.is_empty() => addrs,
            Ok(_) | Err(_) => {
                debug!("client {} from {}: {host} not found", h.id, h.peer);
                return self.fail(cx, hs, Failure::NotFound);
            }
        };
        let mut allowed = Vec::with_capacity(found.len());
        for a in found {
            let dest = Dest {
                host: Some(&host),
                ip: a.ip(),
                port,
            };
            match self.policy.check(dest) {
                Verdict::Allow => allowed.push(SocketAddr::new(a.ip(), port)),
                Verdict::Deny(why) => {
                    debug!(
                        "client {} from {}: {host} at {a} denied: {why}",
                        h.id, h.peer
                    );
                }
            }
        }
        if allowed.is_empty() {
            self.fail(cx, hs, Failure::Denied);
        } else {
            self.dial(cx, hs, interleave(&allowed));
        }
    }

    /// Starts connecting to `addrs`, allowed, in order.
    fn dial(&mut self, cx: &mut Cx<'_>, hs: usize, addrs: Vec<SocketAddr>) {
        if let Some(h) = self.handshakes.get_mut(hs) {
            let timeout = cx.policy.connect_timeout;
            h.stage = Stage::Dialing(Box::new(Race::new(addrs, cx.now, timeout)));
            self.advance(cx, hs);
        }
    }

    /// Moves a race on: starts what is due, and settles it.
    fn advance(&mut self, cx: &mut Cx<'_>, hs: usize) {
        let Some(h) = self.handshakes.get_mut(hs) else {
            return;
        };
        let Stage::Dialing(race) = &mut h.stage else {
            return;
        };
        let (registry, listener, tuning) = (cx.registry, cx.listener, cx.tuning());
        let mut open = |i: usize, conn: &mut Conn| {
            let token = owner::token(handshake(listener, hs, i + 1));
            registry.register(
                conn.source(),
                token,
                Interest::READABLE | Interest::WRITABLE,
            )
        };
        match race.advance(cx.now, tuning, &mut open) {
            Outcome::Pending => self.rearm(cx, hs),
            Outcome::Won(leg) => self.win(cx, hs, leg),
            Outcome::Lost(f) => {
                cx.counters.record_connect_failure(f);
                self.fail(cx, hs, Failure::Connect(f));
            }
        }
    }

    /// A connect completed: the handshake becomes a session, whose first bytes to the
    /// client are the dialect's success answer.
    fn win(&mut self, cx: &mut Cx<'_>, hs: usize, leg: race::Leg) {
        let Some(mut h) = self.handshakes.try_remove(hs) else {
            return;
        };
        self.drop_legs(cx, &mut h);
        let bound = matches!(h.dialect, Dialect::Socks(_))
            .then(|| leg.conn.local_addr().ok())
            .flatten();
        let preamble = Preamble {
            to_client: Some(Cow::Owned(h.dialect.success(bound))),
            ..Preamble::default()
        };
        let session = Session::established(Link::from(h.client), Link::from(leg.conn), cx.now)
            .with_preamble(preamble);
        debug!(
            "client {} from {}: tunnel to {} at {}",
            h.id,
            h.peer,
            h.dest.as_deref().unwrap_or("-"),
            leg.addr
        );
        self.sessions.insert(h.id, h.peer.ip());
        let ready = Readiness {
            readable: true,
            writable: true,
            read_closed: false,
        };
        cx.actions.push(Action::Start(Start {
            listener: cx.listener,
            id: h.id,
            policy: Rc::clone(cx.policy),
            session,
            client_addr: h.peer,
            upstream_addr: leg.addr,
            route: Route::fixed(),
            client: Registration::Moved,
            upstream: Registration::Moved,
            client_ready: Readiness {
                writable: true,
                ..ready
            },
            upstream_ready: ready,
            announce: None,
            guard: false,
            dest: h.dest,
        }));
    }

    /// The handshake fails after its request: the dialect's answer, then the close.
    fn fail(&mut self, cx: &mut Cx<'_>, hs: usize, failure: Failure) {
        let answer = self.handshakes.get(hs).map(|h| h.dialect.failure(failure));
        self.finish(cx, hs, answer, failure.reason());
    }

    /// Closes a handshake: its connects and look-up dropped, its unread bytes discarded
    /// and `answer` written (best effort), its close recorded.
    fn finish(&mut self, cx: &mut Cx<'_>, hs: usize, answer: Option<Vec<u8>>, reason: CloseReason) {
        let Some(mut h) = self.handshakes.try_remove(hs) else {
            return;
        };
        self.drop_legs(cx, &mut h);
        let _ = cx.registry.deregister(h.client.source());
        if let Some(answer) = answer {
            discard(&mut h.client);
            send(&mut h.client, &answer);
        }
        self.leave(h.peer.ip());
        let age = cx.now.saturating_duration_since(h.since);
        let mut closed =
            crate::server::sessions::Closed::unserved(cx.listener, h.id, h.peer, age, reason);
        closed.dest = h.dest;
        cx.actions.push(Action::Unserved(closed));
    }

    /// Drops a handshake's connects and forgets its look-up.
    fn drop_legs(&mut self, cx: &mut Cx<'_>, h: &mut Handshake) {
        match &mut h.stage {
            Stage::Dialing(race) => {
                for mut leg in race.take_legs() {
                    let _ = cx.registry.deregister(leg.conn.source());
                }
            }
            Stage::Resolving { lookup, .. } => {
                self.lookups.remove(lookup);
            }
            Stage::Reading => {}
        }
    }

    /// One handshake or session of `ip` ended.
    fn leave(&mut self, ip: IpAddr) {
        if let Some(n) = self.clients.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.clients.remove(&ip);
            }
        }
    }

    /// A session this listener started closed (or could not start).
    pub(super) fn on_closed(&mut self, id: u64) {
        if let Some(ip) = self.sessions.remove(&id) {
            self.leave(ip);
        }
    }

    /// Arms the handshake's next deadline.
    fn rearm(&mut self, cx: &mut Cx<'_>, hs: usize) {
        let Some(h) = self.handshakes.get_mut(hs) else {
            return;
        };
        let at = match &h.stage {
            Stage::Reading => h.since + self.opts.handshake_timeout,
            Stage::Resolving { until, .. } => *until,
            Stage::Dialing(race) => race.deadline(),
        };
        let owner = handshake(cx.listener, hs, 0);
        cx.deadlines.arm_once(&mut h.armed, at, owner, h.id);
    }

    /// A handshake's deadline fired (perhaps early: what is due is judged here).
    pub(super) fn on_deadline(&mut self, cx: &mut Cx<'_>, slot: usize, id: u64, at: Instant) {
        let hs = slot >> 2;
        let Some(h) = self.handshakes.get_mut(hs) else {
            return;
        };
        if h.id != id || h.armed != Some(at) {
            return;
        }
        h.armed = None;
        match &h.stage {
            Stage::Reading if cx.now >= h.since + self.opts.handshake_timeout => {
                debug!("client {} from {}: handshake timed out", h.id, h.peer);
                self.finish(cx, hs, None, CloseReason::HandshakeTimeout)
            }
            Stage::Resolving { until, .. } if cx.now >= *until => {
                self.fail(cx, hs, Failure::ResolveTimeout)
            }
            Stage::Dialing(_) => self.advance(cx, hs),
            _ => self.rearm(cx, hs),
        }
    }

    /// Whether a heap entry is still handshake `slot`'s deadline.
    pub(super) fn timer_is_live(&self, slot: usize, id: u64, at: Instant) -> bool {
        self.handshakes
            .get(slot >> 2)
            .is_some_and(|h| h.id == id && h.armed == Some(at))
    }

    /// Closes every handshake (the listener closes).
    pub(super) fn close(&mut self, cx: &mut Cx<'_>) {
        let slots: Vec<usize> = self.handshakes.iter().map(|(s, _)| s).collect();
        for hs in slots {
            self.finish(cx, hs, None, CloseReason::Shutdown);
        }
    }

    /// Clients in their handshake.
    pub(super) fn handshakes(&self) -> usize {
        self.handshakes.len()
    }
}

/// The owner of handshake `hs`'s socket `which` (0 the client, 1 and 2 its connects).
fn handshake(listener: usize, hs: usize, which: usize) -> Owner {
    Owner::Handshake {
        listener,
        slot: hs << 2 | which,
    }
}

/// Reads exactly `len` bytes, already peeked (they are there).
fn consume(conn: &mut Conn, len: usize) -> std::io::Result<()> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let rest = buf.get_mut(done..).unwrap_or_default();
        match retry(|| conn.read_vectored(&mut [IoSliceMut::new(rest)])) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes a short answer whole into an empty socket buffer; false if it did not fit.
fn send(conn: &mut Conn, bytes: &[u8]) -> bool {
    matches!(retry(|| conn.write_vectored(&[IoSlice::new(bytes)])), Ok(n) if n == bytes.len())
}

/// Reads and drops what the client sent and was not consumed (at most [`DISCARD`]).
fn discard(conn: &mut Conn) {
    let mut buf = [0u8; 4096];
    let mut left = DISCARD;
    while left > 0 {
        match retry(|| conn.read_vectored(&mut [IoSliceMut::new(&mut buf)])) {
            Ok(n) if n > 0 => left = left.saturating_sub(n),
            _ => return,
        }
    }
}
