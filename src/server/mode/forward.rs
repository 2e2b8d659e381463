//! Forward mode: each accepted client gets an upstream from the listener's group (a warm
//! connection, or a fresh connect to the member the balancing policy picks); a failed
//! connect moves the session to the next member the policy gives, up to `connect_tries`.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use super::upstreams::{first_tries, Upstreams};
use super::{Action, Cx};
use crate::config::{Forward, Listener};
use crate::core::reason::CloseReason;
use crate::core::session::{Preamble, Session};
use crate::core::stream::{ConnectFailure, Readiness};
use crate::os::link::Link;
use crate::os::net::Conn;
use crate::server::proxy;
use crate::server::sessions::{Registration, Route, Start};

/// Forward mode's own state: its one upstream group.
#[derive(Debug)]
pub(super) struct ForwardState {
    upstreams: Upstreams,
}

/// The one group of a forward listener.
fn groups(cfg: &Forward) -> Vec<(String, Vec<crate::config::Upstream>)> {
    vec![("-".to_string(), cfg.upstreams.clone())]
}

impl ForwardState {
    pub(super) fn new(l: &Listener, cfg: &Forward, now: Instant) -> ForwardState {
        let timeout = l.policy.connect_timeout;
        ForwardState {
            upstreams: Upstreams::new(groups(cfg), &cfg.group, timeout, now),
        }
    }

    /// New upstreams and options for new sessions (live sessions keep their upstream).
    pub(super) fn update(&mut self, l: &Listener, cfg: &Forward) {
        let timeout = l.policy.connect_timeout;
        self.upstreams.update(groups(cfg), &cfg.group, timeout);
    }

    /// Starts a session for a new client; `guard`: its first bytes must not be a PROXY
    /// header (an untrusted source on a listener that accepts them).
    pub(super) fn open(
        &mut self,
        cx: &mut Cx<'_>,
        client: Conn,
        client_addr: SocketAddr,
        guard: bool,
    ) {
        let id = cx.ids.next();
        let last = ConnectFailure::Error;
        // Only when a member takes PROXY headers: the local address costs a syscall.
        let announce = self
            .upstreams
            .announces()
            .then(|| client.local_addr().ok())
            .flatten()
            .map(|local| Box::new((client_addr, local)));
        match self
            .upstreams
            .connect(cx, first_tries(0), client_addr, last)
        {
            Ok(d) => {
                let (session, upstream, upstream_ready) = match d.warm {
                    Some(ready) => (
                        Session::established(Link::from(client), Link::from(d.conn), cx.now),
                        Registration::Moved,
                        ready,
                    ),
                    None => (
                        Session::new(Link::from(client), Link::from(d.conn), cx.now),
                        Registration::New,
                        Readiness::default(),
                    ),
                };
                let preamble = Preamble {
                    to_upstream: proxy::header(d.proxy, announce.as_deref()),
                    ..Preamble::default()
                };
                cx.actions.push(Action::Start(Start {
                    listener: cx.listener,
                    id,
                    policy: Rc::clone(cx.policy),
                    session: session.with_preamble(preamble),
                    client_addr,
                    upstream_addr: d.addr,
                    route: Route::group(d.tries),
                    client: Registration::New,
                    upstream,
                    client_ready: Readiness::default(),
                    upstream_ready,
                    announce,
                    guard,
                    dest: None,
                }));
            }
            Err(failure) => cx.unserved(id, client_addr, cx.now, CloseReason::connect(failure)),
        }
    }

    pub(super) fn upstreams(&mut self) -> &mut Upstreams {
        &mut self.upstreams
    }

    pub(super) fn upstreams_ref(&self) -> &Upstreams {
        &self.upstreams
    }
}
