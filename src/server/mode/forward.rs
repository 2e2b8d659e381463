//! Forward mode: each accepted client gets a fresh connect to the first upstream that
//! takes one; later upstreams are tried in order when a connect fails (the session's
//! route, see `sessions`).

use std::net::SocketAddr;
use std::rc::Rc;

use log::debug;

use super::{Action, Cx};
use crate::config::Forward;
use crate::core::reason::CloseReason;
use crate::core::session::Session;
use crate::core::stream::{ConnectFailure, Readiness};
use crate::os::net::{describe, Conn};
use crate::server::sessions::{Registration, Route, Start};

/// Forward mode's own state: the upstream list new sessions start with.
#[derive(Debug)]
pub(super) struct ForwardState {
    upstreams: Rc<Vec<SocketAddr>>,
}

impl ForwardState {
    pub(super) fn new(cfg: &Forward) -> ForwardState {
        ForwardState {
            upstreams: Rc::new(flat(cfg)),
        }
    }

    /// New upstreams for new sessions (live sessions keep the list they started with).
    pub(super) fn update(&mut self, cfg: &Forward) {
        let upstreams = flat(cfg);
        if *self.upstreams != upstreams {
            self.upstreams = Rc::new(upstreams);
        }
    }

    /// Starts a session for a new client: dials the first upstream that takes a connect.
    pub(super) fn open(&mut self, cx: &mut Cx<'_>, client: Conn, client_addr: SocketAddr) {
        let id = cx.ids.next();
        let mut last = None;
        for (n, &addr) in (0u32..).zip(self.upstreams.iter()) {
            match Conn::dial(addr) {
                Ok(upstream) => {
                    cx.actions.push(Action::Start(Start {
                        listener: cx.listener,
                        id,
                        policy: Rc::clone(cx.policy),
                        session: Session::new(client, upstream, cx.now),
                        client_addr,
                        upstream_addr: addr,
                        route: Route::Fallbacks {
                            list: Rc::clone(&self.upstreams),
                            at: n,
                        },
                        client: Registration::New,
                        upstream: Registration::New,
                        client_ready: Readiness::default(),
                    }));
                    return;
                }
                Err(e) => {
                    debug!("session {id}: connect to {addr} failed: {}", describe(&e));
                    let failure = ConnectFailure::from_error(&e);
                    cx.counters.record_connect_failure(failure);
                    last = Some(failure);
                }
            }
        }
        let reason = last.map_or(CloseReason::ConnectError, CloseReason::connect);
        cx.unserved(id, client_addr, cx.now, reason);
    }
}

/// Every address of every upstream, in order.
fn flat(cfg: &Forward) -> Vec<SocketAddr> {
    cfg.upstreams
        .iter()
        .flat_map(|u| u.addrs.iter().copied())
        .collect()
}
