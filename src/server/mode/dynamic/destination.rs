//! What a handshake does with its request: the destination checked (a literal address
//! at once, a name's every address after its look-up), the allowed addresses raced
//! (`race`), and the end: a session started with the dialect's success answer as its
//! preamble, or the dialect's failure answer and the close.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::rc::Rc;

use log::debug;
use mio::Interest;

use super::race::{self, interleave, Outcome, Race};
use super::step::Failure;
use super::wire::{discard, send};
use super::{handshake, Dialect, DynamicState, Stage};
use crate::core::policy::{Dest, Verdict};
use crate::core::reason::CloseReason;
use crate::core::session::{Preamble, Session};
use crate::core::stream::{ConnectFailure, Readiness};
use crate::os::link::Link;
use crate::os::net::Conn;
use crate::proto::connect::Host;
use crate::server::mode::{Action, Cx};
use crate::server::owner;
use crate::server::resolver::{Answer, Lookup};
use crate::server::sessions::{Closed, Registration, Route, Start};

impl DynamicState {
    /// The client's request: a literal address is checked and dialed, a name looked up.
    pub(super) fn request(&mut self, cx: &mut Cx<'_>, hs: usize, host: Host, port: u16) {
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
    pub(in crate::server::mode) fn on_resolved(&mut self, cx: &mut Cx<'_>, answer: Answer) {
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
    pub(super) fn advance(&mut self, cx: &mut Cx<'_>, hs: usize) {
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
        let outcome = race.advance(cx.now, tuning, &mut open);
        // Every failed connect counts, as a session's failed tries do.
        for f in race.take_failures() {
            cx.counters.record_connect_failure(f);
        }
        match outcome {
            Outcome::Pending => self.rearm(cx, hs),
            Outcome::Won(leg) => self.win(cx, hs, leg),
            Outcome::Lost(ConnectFailure::Error) if race.unroutable() => {
                self.fail(cx, hs, Failure::Unroutable)
            }
            Outcome::Lost(f) => self.fail(cx, hs, Failure::Connect(f)),
        }
    }

    /// A connect completed: the handshake becomes a session, whose first bytes to the
    /// client are the dialect's success answer.
    pub(super) fn win(&mut self, cx: &mut Cx<'_>, hs: usize, leg: race::Leg) {
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
    pub(super) fn fail(&mut self, cx: &mut Cx<'_>, hs: usize, failure: Failure) {
        let answer = self.handshakes.get(hs).map(|h| h.dialect.failure(failure));
        self.finish(cx, hs, answer, failure.reason());
    }

    /// Closes a handshake: its connects and look-up dropped, its unread bytes discarded
    /// and `answer` written (best effort), its close recorded.
    pub(super) fn finish(
        &mut self,
        cx: &mut Cx<'_>,
        hs: usize,
        answer: Option<Vec<u8>>,
        reason: CloseReason,
    ) {
        let Some(mut h) = self.handshakes.try_remove(hs) else {
            return;
        };
        self.drop_legs(cx, &mut h);
        let _ = cx.registry.deregister(h.client.source());
        // Unread bytes at the close would make it a reset, which may destroy the answer
        // before the client reads it: the close is a FIN after the answer, if any.
        discard(&mut h.client);
        if let Some(answer) = answer {
            send(&mut h.client, &answer);
        }
        self.leave(h.peer.ip());
        let age = cx.now.saturating_duration_since(h.since);
        let mut closed = Closed::unserved(cx.listener, h.id, h.peer, age, reason);
        closed.dest = h.dest;
        cx.actions.push(Action::Unserved(closed));
    }
}
