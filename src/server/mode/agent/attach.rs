//! An agent's tunnel attached by the relay: the service's group gives a connection (a
//! warm one, or a connect to the member it picks), the session starts with READY as its
//! preamble to the client, or the tunnel gets REFUSED when no upstream is left.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::rc::Rc;

use log::debug;

use super::AgentState;
use crate::config::{Agent, Upstream};
use crate::core::reason::CloseReason;
use crate::core::session::{Preamble, Session};
use crate::core::stream::{ConnectFailure, Peer, Readiness, Stream};
use crate::os::link::Link;
use crate::proto::tunnel::frame;
use crate::server::mode::upstreams::first_tries;
use crate::server::mode::{Action, Cx};
use crate::server::proxy;
use crate::server::sessions::{Registration, Route, Start};

/// One group per service: its address.
pub(super) fn groups(cfg: &Agent) -> Vec<(String, Vec<Upstream>)> {
    cfg.services
        .iter()
        .map(|s| {
            let target = Upstream {
                target: s.target.clone(),
                addrs: s.addrs.clone(),
                weight: 1,
                backup: false,
                proxy: s.proxy,
            };
            (s.name.clone(), vec![target])
        })
        .collect()
}

impl AgentState {
    /// The relay attached a client: dial the service and start the session, then open a
    /// replacement tunnel.
    pub(super) fn attach(&mut self, cx: &mut Cx<'_>, slot: usize, client: SocketAddr) {
        let Some(t) = self.tunnels.try_remove(slot) else {
            return;
        };
        cx.counters.accepted += 1;
        self.services.closed(t.service);
        let Some(attached) = t.stage.into_tunnel() else {
            return;
        };
        let Peer {
            stream: mut tunnel,
            ready,
        } = attached.into_peer();
        let last = ConnectFailure::Error;
        match self
            .upstreams
            .connect(cx, first_tries(t.service), client, last)
        {
            Ok(d) => {
                // The client as the relay saw it, and the service it reaches here.
                let announce = self
                    .upstreams
                    .announces()
                    .then(|| Box::new((client, d.addr)));
                let preamble = Preamble {
                    to_upstream: proxy::header(d.proxy, announce.as_deref()),
                    to_client: Some(Cow::Borrowed(&[frame::READY])),
                    on_failure: Some(&[frame::REFUSED]),
                    ..Preamble::default()
                };
                let (session, upstream, upstream_ready) = match d.warm {
                    Some(r) => (
                        Session::established(tunnel, Link::from(d.conn), cx.now),
                        Registration::Moved,
                        r,
                    ),
                    None => (
                        Session::new(tunnel, Link::from(d.conn), cx.now),
                        Registration::New,
                        Readiness::default(),
                    ),
                };
                cx.actions.push(Action::Start(Start {
                    listener: cx.listener,
                    id: t.id,
                    policy: Rc::clone(cx.policy),
                    session: session.with_preamble(preamble),
                    client_addr: client,
                    upstream_addr: d.addr,
                    route: Route::group(d.tries),
                    client: Registration::Moved,
                    upstream,
                    client_ready: ready,
                    upstream_ready,
                    announce,
                    guard: false,
                    dest: None,
                }));
            }
            Err(failure) => {
                debug!(
                    "session {}: no service connection ({})",
                    t.id,
                    failure.as_str()
                );
                let _ = cx.registry.deregister(tunnel.source());
                let _ = tunnel.write_vectored(&[std::io::IoSlice::new(&[frame::REFUSED])]);
                cx.unserved(t.id, client, cx.now, CloseReason::connect(failure));
            }
        }
        self.upkeep(cx);
    }
}
