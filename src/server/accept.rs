//! Ports (a listener's listening sockets): bounded accepts per pass, the session limits
//! (global and per listener), and the pause on resource errors (EMFILE, ENFILE, ENOBUFS,
//! ENOMEM) that retries from a timer instead of spinning or waiting for an edge that will
//! not come. Each accepted connection goes to its port's role: a forward session, a
//! relay's tunnel handshake, or a public client.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use super::Server;
use crate::core::stream::{classify_accept, retry, Accept, AcceptPause};
use crate::os::net::{describe, Conn};

/// Accepts per listener per pass, so an accept storm cannot starve live sessions.
const ACCEPT_BATCH: usize = 64;
/// How long a listener pauses after a resource error.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Connections the kernel queues for a listener that is not accepting (at the session
/// limit, paused, or between passes). mio's default of 128 is small for bursts; the
/// kernel caps it at `net.core.somaxconn`.
const BACKLOG: i32 = 1024;
/// At most one resource warning per this interval.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// What a port's connections are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Role {
    /// Forward mode clients.
    Forward,
    /// Relay: agents opening tunnels.
    Tunnel,
    /// Relay: public clients of service `n` (named).
    Public(usize, String),
}

impl Role {
    /// The port's name in the READY line (after the listener's name and a dot, for
    /// listeners from a file).
    pub(super) fn ready_name(&self) -> String {
        match self {
            Role::Forward => "listen".to_string(),
            Role::Tunnel => "tunnel".to_string(),
            Role::Public(_, name) => format!("public.{name}"),
        }
    }
}

/// One listening socket of a listener, and its readiness cache.
#[derive(Debug)]
pub(super) struct Port {
    /// The listener's slot.
    pub(super) listener: usize,
    pub(super) role: Role,
    socket: Option<TcpListener>,
    /// The bound address (port 0 resolved).
    pub(super) addr: SocketAddr,
    /// The address as configured (a reload matches ports by it).
    pub(super) configured: SocketAddr,
    /// Set by events, cleared only by `WouldBlock`.
    pub(super) readable: bool,
    /// Paused after a resource error until this instant (or until a session closes).
    pub(super) paused_until: Option<Instant>,
    /// At a session limit with clients waiting (counted once until the next accept).
    limited: bool,
    last_warning: Option<Instant>,
    suppressed: u64,
}

impl Port {
    /// Binds (SO_REUSEADDR, a backlog of 1024), or adopts the inherited socket bound to
    /// `configured` (socket activation), taking it out of `inherited`.
    pub(super) fn bind(
        role: Role,
        configured: SocketAddr,
        inherited: &mut Vec<std::net::TcpListener>,
    ) -> io::Result<Port> {
        let adopted = inherited
            .iter()
            .position(|l| l.local_addr().is_ok_and(|a| a == configured));
        let socket = match adopted {
            Some(n) => TcpListener::from_std(inherited.swap_remove(n)),
            None => crate::os::net::listen(configured, BACKLOG)?,
        };
        let addr = socket.local_addr()?;
        Ok(Port {
            listener: 0,
            role,
            socket: Some(socket),
            addr,
            configured,
            readable: false,
            paused_until: None,
            limited: false,
            last_warning: None,
            suppressed: 0,
        })
    }

    pub(super) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match &mut self.socket {
            Some(s) => registry.register(s, token, Interest::READABLE),
            None => Ok(()),
        }
    }

    /// Closes the socket: new connects are refused from now on.
    pub(super) fn close(&mut self, registry: &Registry) {
        if let Some(mut s) = self.socket.take() {
            let _ = registry.deregister(&mut s);
        }
        self.readable = false;
        self.paused_until = None;
    }

    /// The READY field: `name=IP:PORT`, prefixed with `listener.` when asked.
    pub(super) fn ready_field(&self, prefix: Option<&str>) -> String {
        match prefix {
            Some(p) => format!("{p}.{}={}", self.role.ready_name(), self.addr),
            None => format!("{}={}", self.role.ready_name(), self.addr),
        }
    }

    fn paused(&self, now: Instant) -> bool {
        self.paused_until.is_some_and(|until| now < until)
    }

    fn warn_resource(&mut self, e: &io::Error, now: Instant) {
        if self
            .last_warning
            .is_some_and(|at| now.duration_since(at) < WARN_INTERVAL)
        {
            self.suppressed += 1;
            return;
        }
        let also = match self.suppressed {
            0 => String::new(),
            n => format!(" ({n} more since the last warning)"),
        };
        warn!(
            "accept on {} failed: {}; pausing this listener {:?} at a time{also}",
            self.addr,
            describe(e),
            ACCEPT_PAUSE
        );
        self.last_warning = Some(now);
        self.suppressed = 0;
    }
}

impl Server {
    /// True when a port is ready and allowed to accept now.
    pub(super) fn accept_pending(&self, now: Instant) -> bool {
        self.ports
            .iter()
            .any(|(_, p)| p.readable && p.socket.is_some() && !p.paused(now) && self.has_room(p))
    }

    /// Closed sessions still hold their sockets until the end of the pass, so they count.
    fn has_room(&self, port: &Port) -> bool {
        if self.drain_until.is_some() {
            return false;
        }
        match port.role {
            // A tunnel handshake over its limit is accepted and closed at once.
            Role::Tunnel => true,
            Role::Forward | Role::Public(..) => {
                let global = self.sessions.len() + self.waiting_clients() < self.max_sessions;
                let own = self
                    .listeners
                    .get(port.listener)
                    .is_some_and(|l| l.has_room());
                global && own
            }
        }
    }

    /// Accepts up to a batch on each ready port.
    pub(super) fn accept_all(&mut self, now: Instant) {
        for n in 0..self.ports.capacity() {
            let mut taken = 0;
            while taken < ACCEPT_BATCH {
                let Some(p) = self.ports.get(n) else { break };
                if !self.has_room(p) {
                    self.note_limit(n);
                    break;
                }
                let Some(l) = self.ports.get_mut(n) else {
                    break;
                };
                if !l.readable || l.paused(now) {
                    break;
                }
                let Some(socket) = &l.socket else { break };
                match classify_accept(retry(|| socket.accept())) {
                    Accept::Accepted((stream, client_addr)) => {
                        taken += 1;
                        l.paused_until = None;
                        l.limited = false;
                        let (listener, role) = (l.listener, l.role.clone());
                        self.open(listener, role, stream, client_addr, now);
                    }
                    Accept::WouldBlock => l.readable = false,
                    Accept::Pause(cause, e) => {
                        l.paused_until = Some(now + ACCEPT_PAUSE);
                        l.warn_resource(&e, now);
                        if let Some(x) = self.listeners.get_mut(l.listener) {
                            x.counters.record_accept_pause(cause);
                        }
                    }
                    // ECONNABORTED, EPROTO, network errors: that connection is gone; next.
                    Accept::Skip(e) => debug!("accept on {}: {}", l.addr, describe(&e)),
                }
            }
        }
    }

    /// A ready port that may not accept (a session limit): counted once per episode.
    fn note_limit(&mut self, n: usize) {
        let Some(p) = self.ports.get_mut(n) else {
            return;
        };
        if !p.readable || p.limited || self.drain_until.is_some() {
            return;
        }
        p.limited = true;
        if let Some(l) = self.listeners.get_mut(p.listener) {
            l.counters.record_accept_pause(AcceptPause::Limit);
        }
    }

    fn open(
        &mut self,
        listener: usize,
        role: Role,
        stream: TcpStream,
        addr: SocketAddr,
        now: Instant,
    ) {
        let conn = Conn::accepted(stream);
        if role != Role::Tunnel {
            if let Some(l) = self.listeners.get_mut(listener) {
                l.counters.accepted += 1;
            }
        }
        match role {
            Role::Forward => self.open_forward(listener, conn, addr, now),
            Role::Tunnel => self.open_tunnel(listener, conn, addr, now),
            Role::Public(service, _) => self.open_public(listener, service, conn, addr, now),
        }
    }
}
