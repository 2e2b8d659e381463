//! The metrics endpoint, served by the event loop itself: `/metrics` (Prometheus text),
//! `/sessions` (one line per live session), `/config` (the running configuration, as
//! `check` prints it) and `/healthz`.
//!
//! Each connection reads one request head (at most `http::MAX_REQUEST` bytes), gets one
//! response and is closed, all within an absolute deadline; at most [`MAX_SCRAPES`]
//! connections are served at once and more are closed at accept. A slow, garbage or
//! endless request costs one slot and one timer, never a relayed session's turn: its
//! reads are bounded and its deadline is a heap entry like any other. The bodies are
//! the loop's to give (`answer`): this module only speaks HTTP.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use log::debug;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry};
use slab::Slab;

use super::owner::{self, Owner, Target};
use crate::core::stream::{classify, classify_accept, retry, Accept, Io};
use crate::core::timers::Timers;
use crate::os::net::describe;
use crate::proto::http::{self, Parsed, Route};

/// Metrics connections served at once.
const MAX_SCRAPES: usize = 16;
/// Absolute bound on one request, from accept to the last byte of the response.
const DEADLINE: Duration = Duration::from_secs(5);
/// Accepts per pass.
const ACCEPT_BATCH: usize = 16;

/// One metrics connection.
#[derive(Debug)]
struct Scrape {
    id: u64,
    conn: TcpStream,
    head: Vec<u8>,
    /// The response, once the request is read.
    out: Option<Vec<u8>>,
    written: usize,
}

/// The endpoint: its listening socket and its connections.
#[derive(Debug)]
pub(super) struct Metrics {
    socket: TcpListener,
    pub(super) addr: SocketAddr,
    scrapes: Slab<Scrape>,
    readable: bool,
    /// Requests answered.
    pub(super) requests: u64,
    /// Connections closed without an answer: over the limit, or past the deadline.
    pub(super) rejected: u64,
    next_id: u64,
}

impl Metrics {
    /// Binds the endpoint (before the loop starts, like the other ports).
    pub(super) fn bind(addr: SocketAddr) -> io::Result<Metrics> {
        let socket = crate::os::net::listen(addr, 64, false)?;
        let addr = socket.local_addr()?;
        Ok(Metrics {
            socket,
            addr,
            scrapes: Slab::new(),
            readable: false,
            requests: 0,
            rejected: 0,
            next_id: 1,
        })
    }

    pub(super) fn register(&mut self, registry: &Registry) -> io::Result<()> {
        registry.register(
            &mut self.socket,
            Target::Metrics.token(),
            Interest::READABLE,
        )
    }

    pub(super) fn timer_is_live(&self, slot: usize, id: u64) -> bool {
        self.scrapes.get(slot).is_some_and(|s| s.id == id)
    }

    /// Whether the endpoint has connections waiting to be accepted.
    pub(super) fn pending(&self) -> bool {
        self.readable
    }

    /// The endpoint's socket is readable: accept a bounded batch.
    pub(super) fn on_ready(
        &mut self,
        registry: &Registry,
        deadlines: &mut Timers<Owner>,
        now: Instant,
    ) {
        self.readable = true;
        for _ in 0..ACCEPT_BATCH {
            let (mut conn, peer) = match classify_accept(retry(|| self.socket.accept())) {
                Accept::Accepted(pair) => pair,
                Accept::WouldBlock => {
                    self.readable = false;
                    return;
                }
                Accept::Pause(_, e) | Accept::Skip(e) => {
                    debug!("metrics: accept: {}", describe(&e));
                    return;
                }
            };
            if self.scrapes.len() >= MAX_SCRAPES {
                self.rejected += 1;
                debug!("metrics: {peer} refused, {MAX_SCRAPES} requests in progress");
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let entry = self.scrapes.vacant_entry();
            let slot = entry.key();
            let both = Interest::READABLE | Interest::WRITABLE;
            if registry
                .register(&mut conn, owner::token(Owner::Scrape(slot)), both)
                .is_err()
            {
                continue;
            }
            entry.insert(Scrape {
                id,
                conn,
                head: Vec::new(),
                out: None,
                written: 0,
            });
            deadlines.arm(now + DEADLINE, Owner::Scrape(slot), id);
        }
    }

    /// An event on a metrics connection: read the request, answer (`answer` gives the
    /// status and body of a route), close.
    pub(super) fn on_event(
        &mut self,
        slot: usize,
        registry: &Registry,
        answer: &dyn Fn(Route) -> (u16, String),
    ) {
        let Some(s) = self.scrapes.get_mut(slot) else {
            return;
        };
        if s.out.is_none() {
            let response = match read_head(s) {
                Err(()) => return self.end(slot, registry, false),
                Ok(Parsed::Incomplete) => return,
                Ok(Parsed::Request(req)) => {
                    let head_only = req.method == http::Method::Head;
                    let route = http::route(&req);
                    let (status, body) = answer(route);
                    let kind = match status {
                        200 => route.content_type(),
                        _ => http::TEXT_CONTENT_TYPE,
                    };
                    let mut out = Vec::with_capacity(body.len() + 128);
                    http::response(&mut out, status, kind, body.as_bytes(), head_only);
                    out
                }
                Ok(Parsed::Bad(why)) => error_response(400, why),
                Ok(Parsed::TooLarge) => error_response(413, "request head too large"),
            };
            s.out = Some(response);
        }
        match write_out(s) {
            Ok(true) => self.end(slot, registry, true),
            Ok(false) => {}
            Err(()) => self.end(slot, registry, false),
        }
    }

    /// A metrics connection's deadline.
    pub(super) fn on_deadline(&mut self, slot: usize, id: u64, registry: &Registry) {
        if self.timer_is_live(slot, id) {
            self.end(slot, registry, false);
        }
    }

    fn end(&mut self, slot: usize, registry: &Registry, answered: bool) {
        let Some(mut s) = self.scrapes.try_remove(slot) else {
            return;
        };
        let _ = registry.deregister(&mut s.conn);
        let _ = s.conn.shutdown(Shutdown::Write);
        if answered {
            self.requests += 1;
        } else {
            self.rejected += 1;
        }
    }
}

/// Reads what has arrived (bounded), parsing after each read. `Err` when the peer left
/// or broke before a complete head.
fn read_head(s: &mut Scrape) -> Result<Parsed, ()> {
    let mut buf = [0u8; 1024];
    loop {
        let room = (http::MAX_REQUEST + 1).saturating_sub(s.head.len());
        if room == 0 {
            return Ok(Parsed::TooLarge);
        }
        let want = room.min(buf.len());
        match classify(retry(|| s.conn.read(&mut buf[..want]))) {
            Io::Moved(n) => {
                s.head.extend_from_slice(&buf[..n]);
                match http::parse(&s.head) {
                    Parsed::Incomplete => {}
                    parsed => return Ok(parsed),
                }
            }
            Io::Blocked => return Ok(Parsed::Incomplete),
            // Every byte so far was parsed as it came: the head is incomplete and the
            // peer has stopped sending (or broke).
            Io::Eof | Io::Reset | Io::Error(_) => return Err(()),
        }
    }
}

/// Writes what is left of the response. `Ok(true)` once all of it is out.
fn write_out(s: &mut Scrape) -> Result<bool, ()> {
    let Some(out) = &s.out else { return Ok(false) };
    while s.written < out.len() {
        match classify(retry(|| s.conn.write(&out[s.written..]))) {
            Io::Moved(n) => s.written += n,
            Io::Blocked => return Ok(false),
            Io::Eof | Io::Reset | Io::Error(_) => return Err(()),
        }
    }
    Ok(true)
}

fn error_response(status: u16, why: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let body = format!("{why}\n");
    http::response(
        &mut out,
        status,
        http::TEXT_CONTENT_TYPE,
        body.as_bytes(),
        false,
    );
    out
}
