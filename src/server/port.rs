//! A port: one listening socket of a listener, with its readiness cache, its pause on
//! resource errors (EMFILE, ENFILE, ENOBUFS, ENOMEM: retried from a timer instead of
//! spinning or waiting for an edge that will not come), and its role (what its
//! connections are: forward clients, a relay's tunnels, a relay's public clients).

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::net::TcpListener;
use mio::{Interest, Registry, Token};

use crate::config::sockets::SocketOptions;
use crate::core::stream::{classify_accept, retry, Accept, AcceptPause};
use crate::os::net::{describe, reuses_port, tune_listener, Conn, Tuning};

/// Accepts per port per pass, so an accept storm cannot starve live sessions.
pub(super) const ACCEPT_BATCH: usize = 64;
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
    /// Clients of a forward, connect or socks listener.
    Listen,
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
            Role::Listen => "listen".to_string(),
            Role::Tunnel => "tunnel".to_string(),
            Role::Public(_, name) => format!("public.{name}"),
        }
    }
}

/// One listening socket of a listener, and its readiness cache.
#[derive(Debug)]
pub(super) struct Port {
    /// The listener's slot; `None` while a reload's plan holds the port (bound and
    /// registered, not yet accepting).
    pub(super) listener: Option<usize>,
    pub(super) role: Role,
    socket: Option<TcpListener>,
    /// The bound address (port 0 resolved).
    pub(super) addr: SocketAddr,
    /// The address as configured (a reload matches ports by it).
    pub(super) configured: SocketAddr,
    /// Whether the socket has SO_REUSEPORT (set before its bind: a kept port keeps it).
    pub(super) reuse_port: bool,
    /// Set by events, cleared only by `WouldBlock`.
    pub(super) readable: bool,
    /// Paused after a resource error until this instant (or until a session closes).
    pub(super) paused_until: Option<Instant>,
    /// At a session limit with clients waiting (counted once until the next accept).
    limited: bool,
    last_warning: Option<Instant>,
    suppressed: u64,
    /// The options the listening socket has, for accepted connections to inherit;
    /// `None` until set (or when setting them failed: then each connection gets them).
    tuned: Option<Tuning>,
    /// Connections queued before the listening socket got its options may not have
    /// them: each accepted gets them too, until the queue is found empty.
    queued_untuned: bool,
}

/// A listener's keepalive, TCP_USER_TIMEOUT and TCP_NODELAY as plain values.
pub(super) fn tuning(opts: &SocketOptions) -> Tuning {
    Tuning {
        probes: opts.probes(),
        user_timeout: opts.user_timeout(),
    }
}

impl Port {
    /// Binds (SO_REUSEADDR, SO_REUSEPORT when asked, a backlog of 1024), or adopts the
    /// inherited socket bound to `configured` (socket activation), taking it out of
    /// `inherited`: that one has SO_REUSEPORT as its `.socket` unit says (a warning when
    /// it differs from `reuse_port`).
    pub(super) fn bind(
        role: Role,
        configured: SocketAddr,
        reuse_port: bool,
        inherited: &mut Vec<std::net::TcpListener>,
    ) -> io::Result<Port> {
        let adopted = inherited
            .iter()
            .position(|l| l.local_addr().is_ok_and(|a| a == configured));
        let socket = match adopted {
            Some(n) => TcpListener::from_std(inherited.swap_remove(n)),
            None => crate::os::net::listen(configured, BACKLOG, reuse_port)?,
        };
        let addr = socket.local_addr()?;
        let has = reuses_port(&socket)?;
        if has != reuse_port {
            warn!(
                "{addr}: the socket passed by systemd has SO_REUSEPORT {}, reuse_port is {}; \
                 set ReusePort= in the .socket unit to match",
                on_off(has),
                on_off(reuse_port)
            );
        }
        Ok(Port {
            listener: None,
            role,
            socket: Some(socket),
            addr,
            configured,
            reuse_port: has,
            readable: false,
            paused_until: None,
            limited: false,
            last_warning: None,
            suppressed: 0,
            tuned: None,
            queued_untuned: true,
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

    /// Whether the port has connections to accept now (limits aside).
    pub(super) fn pending(&self, now: Instant) -> bool {
        self.readable && self.socket.is_some() && self.listener.is_some() && !self.paused(now)
    }

    /// Accepts one connection with `tuning` (keepalive and the rest), or `None` when
    /// nothing is pending: the backlog is empty (the readiness bit is cleared), the port
    /// paused for a resource error (counted in `pauses`), or it was an error about that
    /// connection only (skipped: the caller asks again).
    ///
    /// The options go on the listening socket, set again when a reload changes them, so
    /// accepted connections inherit them (Linux copies them at the handshake) and an
    /// accept costs no `setsockopt`; connections queued before are set one by one.
    pub(super) fn accept(&mut self, now: Instant, tuning: Tuning) -> Accepted {
        if !self.pending(now) {
            return Accepted::Nothing;
        }
        let Some(socket) = &self.socket else {
            return Accepted::Nothing;
        };
        if self.tuned != Some(tuning) {
            self.tuned = tune_listener(socket, tuning).ok().map(|()| tuning);
            self.queued_untuned = true;
        }
        match classify_accept(retry(|| socket.accept())) {
            Accept::Accepted((stream, addr)) => {
                self.paused_until = None;
                self.limited = false;
                let each = (self.queued_untuned || self.tuned.is_none()).then_some(tuning);
                Accepted::Conn(Conn::accepted(stream, each), addr)
            }
            Accept::WouldBlock => {
                self.readable = false;
                self.queued_untuned = false;
                Accepted::Nothing
            }
            Accept::Pause(cause, e) => {
                self.paused_until = Some(now + ACCEPT_PAUSE);
                self.warn_resource(&e, now);
                Accepted::Paused(cause)
            }
            // ECONNABORTED, EPROTO, network errors: that connection is gone; next.
            Accept::Skip(e) => {
                debug!("accept on {}: {}", self.addr, describe(&e));
                Accepted::Skipped
            }
        }
    }

    /// The port is ready but a session limit keeps it from accepting: true the first
    /// time in an episode (counted once until the next accept).
    pub(super) fn limit_reached(&mut self) -> bool {
        if !self.readable || self.limited {
            return false;
        }
        self.limited = true;
        true
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

/// `on` or `off`, as log lines write a switch.
pub(super) fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// What one accept on a port gave.
#[derive(Debug)]
pub(super) enum Accepted {
    /// A new connection and its peer's address.
    Conn(Conn, SocketAddr),
    /// Nothing more now.
    Nothing,
    /// The port paused for a resource shortage.
    Paused(AcceptPause),
    /// An error about one connection: ask again.
    Skipped,
}
