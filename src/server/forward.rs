//! Forward mode: each accepted client gets a fresh connect to the first upstream that
//! takes one; later upstreams are tried in order when a connect fails (see `redial`).

use std::net::SocketAddr;
use std::time::Instant;

use log::debug;

use super::entry::{dial_failure, Registration, Start};
use super::listener::Kind;
use super::Server;
use crate::config::Forward;
use crate::core::session::Session;
use crate::core::stream::ConnectFailure;
use crate::core::stream::Readiness;
use crate::os::net::{describe, Conn};

/// Forward mode's own state: the upstream list.
#[derive(Debug)]
pub(super) struct ForwardState {
    pub(super) upstreams: Vec<SocketAddr>,
}

impl ForwardState {
    pub(super) fn new(cfg: Forward) -> ForwardState {
        ForwardState {
            upstreams: cfg.upstreams,
        }
    }
}

impl Server {
    /// Starts a forward session: dials the first upstream that takes a connect.
    pub(super) fn open_forward(
        &mut self,
        l: usize,
        client: Conn,
        client_addr: SocketAddr,
        now: Instant,
    ) {
        let id = self.new_id();
        let Some(Kind::Forward(f)) = self.listeners.get(l).map(|l| &l.kind) else {
            return;
        };
        let mut failure = None;
        let mut failures = Vec::new();
        let mut dialed = None;
        for (n, &addr) in f.upstreams.iter().enumerate() {
            match Conn::dial(addr) {
                Ok(conn) => {
                    dialed = Some((n, addr, conn));
                    break;
                }
                Err(e) => {
                    debug!("session {id}: connect to {addr} failed: {}", describe(&e));
                    failure = Some(e);
                    if let Some(e) = &failure {
                        failures.push(ConnectFailure::from_error(e));
                    }
                }
            }
        }
        for f in failures {
            self.count_connect_failure(l, f);
        }
        let Some((n, upstream_addr, upstream)) = dialed else {
            let reason = failure
                .as_ref()
                .map_or(crate::core::reason::CloseReason::ConnectError, dial_failure);
            self.unserved(l, id, client_addr, now, now, reason);
            return;
        };
        let start = Start {
            listener: l,
            id,
            session: Session::new(client, upstream, now),
            client_addr,
            upstream_addr,
            upstream_index: Some(n),
            client: Registration::New,
            upstream: Registration::New,
            client_ready: Readiness::default(),
        };
        self.start_session(start, now);
    }
}
