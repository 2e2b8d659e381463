//! A session whose connect failed, answered by its mode: another member of its group
//! (a connect in progress, or a warm connection already connected), or its close.

use log::debug;
use mio::Interest;
use slab::Slab;

use super::{Dialed, Drive, Entry, Io, Redial, Route, Sessions};
use crate::core::reason::Side;
use crate::core::stream::ConnectFailure;
use crate::os::link::Link;
use crate::os::net::describe;
use crate::server::owner::{Owner, Target};

impl Sessions {
    /// The mode's answer to a [`Redial`]: the session goes on with `d`'s connection (to
    /// another member of its group; its tries count it), a connect in progress or a warm
    /// connection. Dropped when the session is gone or closed.
    pub(in crate::server) fn redial(&mut self, r: &Redial, d: Dialed, io: &mut Io<'_>) {
        let Some(e) = Self::awaiting(&mut self.slab, r) else {
            return;
        };
        let Dialed {
            mut conn,
            addr,
            tries,
            warm,
            proxy,
        } = d;
        let token = Target::Socket(Owner::Session(r.slot), Side::Upstream).token();
        let both = Interest::READABLE | Interest::WRITABLE;
        let registered = match warm {
            Some(_) => io.registry.reregister(conn.source(), token, both),
            None => io.registry.register(conn.source(), token, both),
        };
        if let Err(err) = registered {
            // The group counted the session on the new member: its close leaves that one.
            e.upstream_addr = addr;
            debug!(
                "session {}: cannot register a socket: {}",
                e.id,
                describe(&err)
            );
            let d = e
                .session
                .fail_connect(ConnectFailure::Error, &mut self.pool);
            e.redialing = false;
            return self.settle(r.slot, d, io);
        }
        let header = crate::server::proxy::header(proxy, e.announce.as_deref());
        let mut old = e.session.redial(Link::from(conn), header, io.now);
        let _ = io.registry.deregister(old.source());
        e.upstream_addr = addr;
        let since = io.now.saturating_duration_since(e.started).as_millis();
        let mut tries = tries;
        tries.dialed_ms = u32::try_from(since).unwrap_or(u32::MAX);
        e.route = Route::group(tries);
        // A warm connection's connect was reported when it completed.
        e.connecting = warm.is_none();
        e.redialing = false;
        if let Some(ready) = warm {
            e.session.on_event(Side::Upstream, ready);
            self.drive(r.slot, io);
        } else {
            // A fresh connect reports its outcome through events; arm its deadline.
            self.settle(r.slot, Drive::Waiting, io);
        }
    }

    /// The mode's answer to a [`Redial`] when no upstream is left: the session closes
    /// with `failure`.
    pub(in crate::server) fn fail_connect(
        &mut self,
        r: &Redial,
        failure: ConnectFailure,
        io: &mut Io<'_>,
    ) {
        let Some(e) = Self::awaiting(&mut self.slab, r) else {
            return;
        };
        e.redialing = false;
        // The mode took the session off the member that failed last: its close concerns
        // no member (the route's group would count it off twice).
        e.route = Route::fixed();
        let d = e.session.fail_connect(failure, &mut self.pool);
        self.settle(r.slot, d, io);
    }

    /// The session a [`Redial`] is about, if it still awaits the answer.
    fn awaiting<'s>(slab: &'s mut Slab<Entry>, r: &Redial) -> Option<&'s mut Entry> {
        slab.get_mut(r.slot)
            .filter(|e| e.id == r.id && e.redialing && !e.closed)
    }
}
