//! Clients that must start with a PROXY protocol header (forward listeners and a relay's
//! public ports, with `proxy_protocol_accept`): a client from a trusted source is held
//! here, watched with `peek`, until its whole header has arrived; then exactly the header
//! is read (the bytes after it stay in the socket: the client's first bytes) and the
//! client goes to its mode with the address the header gives. Nothing is dialed before.
//! A bad header, an end of stream, or the deadline (`proxy_protocol_timeout`, absolute,
//! from the accept) closes the client with `proxy-header` or `proxy-header-timeout`.
//!
//! A client from any other source must not send one; its session starts at once and
//! the sessions check its first bytes (`sessions::guard`).

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::time::Instant;

use log::debug;
use mio::Interest;
use slab::Slab;

use super::Cx;
use crate::config::ProxyAccept;
use crate::core::reason::CloseReason;
use crate::core::stream::{classify, retry, Io, Stream};
use crate::os::net::Conn;
use crate::proto::proxy::{parse, Parsed, MAX_HEADER};
use crate::server::owner::{self, Owner};
use crate::server::port::Role;

/// What an accepted client must send first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    /// The listener accepts no headers: any bytes are the client's.
    Plain,
    /// A trusted source: a header, before anything else.
    Header,
    /// Another source: anything but a header.
    NoHeader,
}

/// A client whose header is awaited.
#[derive(Debug)]
struct Preface {
    id: u64,
    conn: Conn,
    peer: SocketAddr,
    role: Role,
    since: Instant,
    armed: Option<Instant>,
}

/// A listener's clients awaiting their header, and its options.
#[derive(Debug)]
pub(super) struct Prefaces {
    opts: ProxyAccept,
    slab: Slab<Preface>,
}

/// A client whose header was read: its connection, its address as the header gave it,
/// and the port's role.
pub(super) type Ready = (Conn, SocketAddr, Role);

impl Prefaces {
    pub(super) fn new(opts: Option<&ProxyAccept>) -> Prefaces {
        Prefaces {
            opts: opts.cloned().unwrap_or_default(),
            slab: Slab::new(),
        }
    }

    /// New options for new clients (those held keep their deadline).
    pub(super) fn update(&mut self, opts: Option<&ProxyAccept>) {
        self.opts = opts.cloned().unwrap_or_default();
    }

    /// What a client of `role` from `peer` must send first. A relay's tunnels are not
    /// clients: they speak the tunnel protocol.
    pub(super) fn expect(&self, role: &Role, peer: SocketAddr) -> Expect {
        if !self.opts.accept || *role == Role::Tunnel {
            Expect::Plain
        } else if self.opts.trusted.iter().any(|c| c.contains(peer.ip())) {
            Expect::Header
        } else {
            Expect::NoHeader
        }
    }

    /// Holds a trusted client until its header arrives (registered readable only, with
    /// its deadline armed); closes it when it cannot be registered.
    pub(super) fn hold(&mut self, cx: &mut Cx<'_>, mut conn: Conn, peer: SocketAddr, role: Role) {
        let id = cx.ids.next();
        let entry = self.slab.vacant_entry();
        let slot = entry.key();
        let owner = Owner::Preface {
            listener: cx.listener,
            slot,
        };
        if let Err(e) = cx
            .registry
            .register(conn.source(), owner::token(owner), Interest::READABLE)
        {
            debug!("client {id} from {peer}: cannot register: {e}");
            cx.unserved(id, peer, cx.now, CloseReason::ClientError);
            return;
        }
        let mut armed = None;
        cx.deadlines
            .arm_once(&mut armed, cx.now + self.opts.timeout, owner, id);
        entry.insert(Preface {
            id,
            conn,
            peer,
            role,
            since: cx.now,
            armed,
        });
    }

    /// Bytes (or an end) arrived from held client `slot`: the client, once its whole
    /// header is in; `None` while it is not, or when the client was closed.
    pub(super) fn on_event(&mut self, cx: &mut Cx<'_>, slot: usize) -> Option<Ready> {
        let p = self.slab.get_mut(slot)?;
        let mut buf = [0u8; MAX_HEADER];
        let reason = match classify(retry(|| p.conn.peek(&mut buf))) {
            Io::Blocked => return None,
            Io::Moved(n) => match parse(buf.get(..n).unwrap_or_default()) {
                Parsed::Incomplete => return None,
                Parsed::Header { header, len } => match consume(&mut p.conn, &mut buf, len) {
                    Ok(()) => {
                        let client = header.addresses.map_or(p.peer, |(src, _)| src);
                        let mut p = self.slab.remove(slot);
                        let _ = cx.registry.deregister(p.conn.source());
                        debug!(
                            "client {} from {}: PROXY {:?} header gives {client}",
                            p.id, p.peer, header.version
                        );
                        return Some((p.conn, client, p.role));
                    }
                    Err(_) => CloseReason::ClientError,
                },
                Parsed::Bad(e) => {
                    debug!("client {} from {}: {}", p.id, p.peer, e.as_str());
                    CloseReason::ProxyHeader
                }
            },
            Io::Eof => CloseReason::ProxyHeader,
            Io::Reset => CloseReason::ClientReset,
            Io::Error(_) => CloseReason::ClientError,
        };
        self.close(cx, slot, reason);
        None
    }

    /// Held client `slot`'s deadline fired.
    pub(super) fn on_deadline(&mut self, cx: &mut Cx<'_>, slot: usize, id: u64) {
        if self.slab.get(slot).is_some_and(|p| p.id == id) {
            self.close(cx, slot, CloseReason::ProxyHeaderTimeout);
        }
    }

    /// Whether a heap entry is still held client `slot`'s deadline.
    pub(super) fn timer_is_live(&self, slot: usize, id: u64, at: Instant) -> bool {
        self.slab
            .get(slot)
            .is_some_and(|p| p.id == id && p.armed == Some(at))
    }

    /// Clients held.
    pub(super) fn len(&self) -> usize {
        self.slab.len()
    }

    /// Closes every held client (the listener closes).
    pub(super) fn close_all(&mut self, cx: &mut Cx<'_>) {
        let slots: Vec<usize> = self.slab.iter().map(|(s, _)| s).collect();
        for slot in slots {
            self.close(cx, slot, CloseReason::Shutdown);
        }
    }

    fn close(&mut self, cx: &mut Cx<'_>, slot: usize, reason: CloseReason) {
        let Some(mut p) = self.slab.try_remove(slot) else {
            return;
        };
        let _ = cx.registry.deregister(p.conn.source());
        cx.unserved(p.id, p.peer, p.since, reason);
    }
}

/// Reads exactly the `len` bytes of the header (already peeked: they are there).
fn consume(conn: &mut Conn, buf: &mut [u8], len: usize) -> io::Result<()> {
    let mut done = 0;
    while done < len {
        let Some(rest) = buf.get_mut(done..len) else {
            break;
        };
        match retry(|| conn.read_vectored(&mut [IoSliceMut::new(rest)])) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
