//! Listeners: bounded accepts per pass, the session limit, and the pause on resource
//! errors (EMFILE, ENFILE, ENOBUFS, ENOMEM) that retries from a timer instead of spinning
//! or waiting for an edge that will not come. Each accepted connection goes to its
//! listener's role: a forward session, a relay's tunnel handshake, or a public client.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use super::Server;
use crate::core::stream::retry;
use crate::net::{accept_error_is_resource, describe, Conn};

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

/// What a listener's connections are.
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
    /// The listener's name in the READY line.
    pub(super) fn ready_name(&self) -> String {
        match self {
            Role::Forward => "listen".to_string(),
            Role::Tunnel => "tunnel".to_string(),
            Role::Public(_, name) => format!("public.{name}"),
        }
    }
}

/// One listening socket and its readiness cache.
#[derive(Debug)]
pub(super) struct Listener {
    pub(super) role: Role,
    socket: Option<TcpListener>,
    pub(super) addr: SocketAddr,
    /// Set by events, cleared only by `WouldBlock`.
    pub(super) readable: bool,
    /// Paused after a resource error until this instant (or until a session closes).
    pub(super) paused_until: Option<Instant>,
    last_warning: Option<Instant>,
    suppressed: u64,
}

impl Listener {
    /// Binds (SO_REUSEADDR, mio's backlog of 1024).
    pub(super) fn bind(role: Role, addr: SocketAddr) -> io::Result<Listener> {
        let socket = crate::net::listen(addr, BACKLOG)?;
        let addr = socket.local_addr()?;
        Ok(Listener {
            role,
            socket: Some(socket),
            addr,
            readable: false,
            paused_until: None,
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
    /// True when a listener is ready and allowed to accept now.
    pub(super) fn accept_pending(&self, now: Instant) -> bool {
        self.listeners
            .iter()
            .any(|l| l.readable && l.socket.is_some() && !l.paused(now) && self.has_room(&l.role))
    }

    /// Closed sessions still hold their sockets until the end of the pass, so they count.
    fn has_room(&self, role: &Role) -> bool {
        if self.drain_until.is_some() {
            return false;
        }
        match role {
            // A tunnel handshake over its limit is accepted and closed at once.
            Role::Tunnel => true,
            Role::Forward | Role::Public(..) => {
                self.sessions.len() + self.waiting_clients() < self.max_sessions
            }
        }
    }

    /// Accepts up to a batch on each ready listener.
    pub(super) fn accept_all(&mut self, now: Instant) {
        for n in 0..self.listeners.len() {
            let mut taken = 0;
            while taken < ACCEPT_BATCH && self.has_room(&self.listeners[n].role) {
                let l = &mut self.listeners[n];
                if !l.readable || l.paused(now) {
                    break;
                }
                let Some(socket) = &l.socket else { break };
                match retry(|| socket.accept()) {
                    Ok((stream, client_addr)) => {
                        taken += 1;
                        l.paused_until = None;
                        let role = l.role.clone();
                        self.open(role, stream, client_addr, now);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => l.readable = false,
                    Err(e) if accept_error_is_resource(&e) => {
                        l.paused_until = Some(now + ACCEPT_PAUSE);
                        l.warn_resource(&e, now);
                    }
                    // ECONNABORTED, EPROTO, network errors: that connection is gone; next.
                    Err(e) => debug!("accept on {}: {}", l.addr, describe(&e)),
                }
            }
        }
    }

    fn open(&mut self, role: Role, stream: TcpStream, addr: SocketAddr, now: Instant) {
        let conn = Conn::accepted(stream);
        match role {
            Role::Forward => self.open_forward(conn, addr, now),
            Role::Tunnel => self.open_tunnel(conn, addr, now),
            Role::Public(service, _) => self.open_public(service, conn, addr, now),
        }
    }
}
