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

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use log::debug;
use mio::Interest;
use slab::Slab;

use super::Cx;
use crate::config::{Dynamic, Mode};
use crate::core::failures::{Admission, Failures};
use crate::core::policy::Policy;
use crate::core::reason::CloseReason;
use crate::core::stream::{classify, retry, Io, Readiness};
use crate::os::net::Conn;
use crate::server::owner::{self, Owner};

mod connect;
mod destination;
mod dialect;
mod race;
mod socks;
mod step;
mod wire;

use dialect::Dialect;
use race::{Outcome, Race};
use step::{Failure, Step};
use wire::{consume, send};

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
    /// The client's end of stream was reported: a peek still returns the bytes before
    /// it, so a request that can no longer complete is told by this.
    read_closed: bool,
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
    /// Where messages are peeked and consumed (one buffer for every handshake).
    scratch: Vec<u8>,
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
            scratch: Vec::new(),
        };
        state.update(opts);
        state
    }

    /// New options for new clients (handshakes in flight keep their deadlines).
    pub(super) fn update(&mut self, opts: &Dynamic) {
        self.opts = opts.clone();
        self.policy.allow = opts.allow.clone();
        self.policy.deny = opts.deny.clone();
        // A listener on an unspecified address is reached at every local address.
        if opts.listen.iter().any(|a| a.ip().is_unspecified()) {
            self.policy.own.local = crate::os::net::local_addresses();
        }
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
            // Whatever it sent already is dropped, so its close is a FIN, not a reset.
            wire::discard(&mut conn);
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
            read_closed: false,
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
    pub(super) fn on_event(&mut self, cx: &mut Cx<'_>, slot: usize, ready: Readiness) {
        let (hs, which) = (slot >> 2, slot & 3);
        let Some(h) = self.handshakes.get_mut(hs) else {
            return;
        };
        if which == 0 {
            h.read_closed |= ready.read_closed;
        }
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
            let buf = &mut self.scratch;
            buf.resize(h.dialect.max_message(), 0);
            let n = match classify(retry(|| h.client.peek(buf))) {
                Io::Moved(n) => n,
                Io::Blocked => return,
                Io::Eof => return self.finish(cx, hs, None, CloseReason::ClientEof),
                Io::Reset => return self.finish(cx, hs, None, CloseReason::ClientReset),
                Io::Error(_) => return self.finish(cx, hs, None, CloseReason::ClientError),
            };
            let bytes = buf.get(..n).unwrap_or_default();
            match h.dialect.step(bytes, users) {
                // The client ended (or broke) its stream before its request was whole.
                Step::More if h.read_closed => {
                    return self.finish(cx, hs, None, CloseReason::ClientEof)
                }
                Step::More if n < buf.len() => return,
                Step::More => {
                    debug!("client {} from {}: message too long", h.id, h.peer);
                    return self.finish(cx, hs, None, CloseReason::Handshake);
                }
                Step::Answer { used, answer } => {
                    if consume(&mut h.client, buf, used).is_err() || !send(&mut h.client, &answer) {
                        return self.finish(cx, hs, None, CloseReason::ClientError);
                    }
                }
                Step::Request { used, host, port } => {
                    if consume(&mut h.client, buf, used).is_err() {
                        return self.finish(cx, hs, None, CloseReason::ClientError);
                    }
                    if !users.is_empty() {
                        // A source that proved its credentials is slowed, never locked
                        // out, by strangers failing from the same address.
                        self.failures.authenticated(h.peer.ip(), cx.now);
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
