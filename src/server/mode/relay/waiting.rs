//! A relay's public clients waiting for an idle tunnel: the slab and each service's queue
//! (oldest first). A waiting client is watched with `peek`, so one that leaves is
//! forgotten at once instead of being paired with a tunnel for nothing.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use mio::{Interest, Registry};
use slab::Slab;

use crate::core::reason::CloseReason;
use crate::core::stream::{classify, retry, Io};
use crate::os::net::Conn;
use crate::server::owner::{self, Owner};

/// A public client waiting for a tunnel.
#[derive(Debug)]
pub(super) struct WaitingEntry {
    pub(super) id: u64,
    pub(super) conn: Conn,
    pub(super) addr: SocketAddr,
    pub(super) service: usize,
    pub(super) since: Instant,
    /// Its first bytes must not be a PROXY header (checked once its session starts).
    pub(super) guard: bool,
}

/// The waiting clients of one relay listener.
#[derive(Debug)]
pub(super) struct Waiting {
    slab: Slab<WaitingEntry>,
    /// Per service: waiting clients, oldest first, as (slot, id).
    queue: Vec<VecDeque<(usize, u64)>>,
}

impl Waiting {
    pub(super) fn new(services: usize) -> Waiting {
        Waiting {
            slab: Slab::new(),
            queue: vec![VecDeque::new(); services],
        }
    }

    /// Clients of `service` still waiting (forgets those that left or timed out, so the
    /// queue stays bounded).
    pub(super) fn queued(&mut self, service: usize) -> usize {
        let slab = &self.slab;
        let Some(queue) = self.queue.get_mut(service) else {
            return 0;
        };
        queue.retain(|&(s, id)| slab.get(s).is_some_and(|w| w.id == id));
        queue.len()
    }

    /// Registers (readable only: it is only watched) and queues a client; its slot.
    pub(super) fn add(
        &mut self,
        registry: &Registry,
        listener: usize,
        mut entry: WaitingEntry,
    ) -> Result<usize, (WaitingEntry, std::io::Error)> {
        let vacant = self.slab.vacant_entry();
        let slot = vacant.key();
        let token = owner::token(Owner::Waiting { listener, slot });
        if let Err(e) = registry.register(entry.conn.source(), token, Interest::READABLE) {
            return Err((entry, e));
        }
        if let Some(queue) = self.queue.get_mut(entry.service) {
            queue.push_back((slot, entry.id));
        }
        vacant.insert(entry);
        Ok(slot)
    }

    /// The oldest client of `service` still waiting, taken out (still registered).
    pub(super) fn pop(&mut self, service: usize) -> Option<WaitingEntry> {
        let queue = self.queue.get_mut(service)?;
        while let Some((slot, id)) = queue.pop_front() {
            if self.slab.get(slot).is_some_and(|w| w.id == id) {
                return Some(self.slab.remove(slot));
            }
        }
        None
    }

    /// A waiting client's socket changed: if it went away, it is taken out and
    /// deregistered, with why.
    pub(super) fn left(
        &mut self,
        registry: &Registry,
        slot: usize,
    ) -> Option<(WaitingEntry, CloseReason)> {
        let w = self.slab.get_mut(slot)?;
        let mut probe = [0u8; 1];
        // Peek: bytes stay for the session; only an end is acted on.
        let reason = match classify(retry(|| w.conn.source().peek(&mut probe))) {
            Io::Eof => CloseReason::ClientEof,
            Io::Moved(_) | Io::Blocked => return None,
            Io::Reset => CloseReason::ClientReset,
            Io::Error(_) => CloseReason::ClientError,
        };
        let mut w = self.slab.remove(slot);
        let _ = registry.deregister(w.conn.source());
        Some((w, reason))
    }

    /// The client in `slot` if it is still `id`'s, taken out and deregistered.
    pub(super) fn take(
        &mut self,
        registry: &Registry,
        slot: usize,
        id: u64,
    ) -> Option<WaitingEntry> {
        if self.slab.get(slot).is_none_or(|w| w.id != id) {
            return None;
        }
        let mut w = self.slab.remove(slot);
        let _ = registry.deregister(w.conn.source());
        Some(w)
    }

    /// Every client goes at once (deregistered); they are returned for their close lines.
    pub(super) fn drop_all(&mut self, registry: &Registry) -> Vec<WaitingEntry> {
        self.queue.iter_mut().for_each(VecDeque::clear);
        self.slab
            .drain()
            .map(|mut w| {
                let _ = registry.deregister(w.conn.source());
                w
            })
            .collect()
    }

    /// Clients waiting now.
    pub(super) fn len(&self) -> usize {
        self.slab.len()
    }

    /// Whether a heap entry is still a client's pair timeout.
    pub(super) fn timer_is_live(&self, slot: usize, id: u64) -> bool {
        self.slab.get(slot).is_some_and(|w| w.id == id)
    }
}
