//! The metrics endpoint, served by the event loop itself: `/metrics` (Prometheus text),
//! `/sessions` (one line per live session) and `/healthz`.
//!
//! Each connection reads one request head (at most `http::MAX_REQUEST` bytes), gets one
//! response and is closed, all within an absolute deadline; at most [`MAX_SCRAPES`]
//! connections are served at once and more are closed at accept. A slow, garbage or
//! endless request costs one slot and one timer, never a relayed session's turn: its
//! reads are bounded and its deadline is a heap entry like any other.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use log::debug;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry};
use slab::Slab;

use super::token::Target;
use super::{Key, Server};
use crate::core::stream::retry;
use crate::os::net::describe;
use crate::proto::http::{self, Parsed, Route};
use crate::stats;

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
    socket: Option<TcpListener>,
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
        let socket = crate::os::net::listen(addr, 64)?;
        let addr = socket.local_addr()?;
        Ok(Metrics {
            socket: Some(socket),
            addr,
            scrapes: Slab::new(),
            readable: false,
            requests: 0,
            rejected: 0,
            next_id: 1,
        })
    }

    pub(super) fn register(&mut self, registry: &Registry) -> io::Result<()> {
        match &mut self.socket {
            Some(s) => registry.register(s, Target::Metrics.token(), Interest::READABLE),
            None => Ok(()),
        }
    }

    pub(super) fn timer_is_live(&self, slot: usize, id: u64) -> bool {
        self.scrapes.get(slot).is_some_and(|s| s.id == id)
    }
}

impl Server {
    /// The endpoint's socket is readable: accept a bounded batch.
    pub(super) fn on_metrics_ready(&mut self, now: Instant) {
        let Some(m) = self.metrics.as_mut() else {
            return;
        };
        m.readable = true;
        for _ in 0..ACCEPT_BATCH {
            let Some(socket) = &m.socket else { return };
            let (mut conn, peer) = match retry(|| socket.accept()) {
                Ok(pair) => pair,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    m.readable = false;
                    return;
                }
                Err(e) => {
                    debug!("metrics: accept: {}", describe(&e));
                    return;
                }
            };
            if m.scrapes.len() >= MAX_SCRAPES {
                m.rejected += 1;
                debug!("metrics: {peer} refused, {MAX_SCRAPES} requests in progress");
                continue;
            }
            let id = m.next_id;
            m.next_id += 1;
            let entry = m.scrapes.vacant_entry();
            let slot = entry.key();
            let token = Target::Scrape(slot).token();
            let both = Interest::READABLE | Interest::WRITABLE;
            if self
                .poll
                .registry()
                .register(&mut conn, token, both)
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
            self.timers.arm(now + DEADLINE, Key::Scrape(slot), id);
        }
    }

    /// Whether the endpoint has connections waiting to be accepted.
    pub(super) fn metrics_pending(&self) -> bool {
        self.metrics.as_ref().is_some_and(|m| m.readable)
    }

    /// An event on a metrics connection: read the request, answer, close.
    pub(super) fn on_scrape_event(&mut self, slot: usize, now: Instant) {
        let Some(m) = self.metrics.as_mut() else {
            return;
        };
        let Some(s) = m.scrapes.get_mut(slot) else {
            return;
        };
        if s.out.is_none() {
            let parsed = match read_head(s) {
                Ok(parsed) => parsed,
                Err(()) => return self.end_scrape(slot, false),
            };
            let response = match parsed {
                Parsed::Incomplete => return,
                Parsed::Request(req) => {
                    let head_only = req.method == http::Method::Head;
                    let route = http::route(&req);
                    let (status, body) = self.answer(route, now);
                    let kind = match status {
                        200 => route.content_type(),
                        _ => http::TEXT_CONTENT_TYPE,
                    };
                    let mut out = Vec::with_capacity(body.len() + 128);
                    http::response(&mut out, status, kind, body.as_bytes(), head_only);
                    out
                }
                Parsed::Bad(why) => error_response(400, why),
                Parsed::TooLarge => error_response(413, "request head too large"),
            };
            let Some(s) = self.metrics.as_mut().and_then(|m| m.scrapes.get_mut(slot)) else {
                return;
            };
            s.out = Some(response);
        }
        let Some(s) = self.metrics.as_mut().and_then(|m| m.scrapes.get_mut(slot)) else {
            return;
        };
        match write_out(s) {
            Ok(true) => self.end_scrape(slot, true),
            Ok(false) => {}
            Err(()) => self.end_scrape(slot, false),
        }
    }

    /// A metrics connection's deadline.
    pub(super) fn on_scrape_deadline(&mut self, slot: usize, id: u64) {
        if self
            .metrics
            .as_ref()
            .is_some_and(|m| m.timer_is_live(slot, id))
        {
            self.end_scrape(slot, false);
        }
    }

    fn end_scrape(&mut self, slot: usize, answered: bool) {
        let registry = self.poll.registry();
        let Some(m) = self.metrics.as_mut() else {
            return;
        };
        let Some(mut s) = m.scrapes.try_remove(slot) else {
            return;
        };
        let _ = registry.deregister(&mut s.conn);
        let _ = s.conn.shutdown(Shutdown::Write);
        if answered {
            m.requests += 1;
        } else {
            m.rejected += 1;
        }
    }

    /// The status and body for a route.
    fn answer(&self, route: Route, now: Instant) -> (u16, String) {
        let mut body = String::new();
        match route {
            Route::Metrics => {
                let listeners = self.listener_stats(now);
                stats::render_metrics(&mut body, &self.process_stats(now), &listeners);
                (200, body)
            }
            Route::Sessions => {
                stats::render_sessions(&mut body, self.session_views(now));
                (200, body)
            }
            Route::Healthz if self.drain_until.is_some() => (503, "stopping\n".into()),
            Route::Healthz => (200, "ok\n".into()),
            Route::NotFound => (
                404,
                "not found: try /metrics, /sessions or /healthz\n".into(),
            ),
            Route::MethodNotAllowed => (405, "only GET and HEAD\n".into()),
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
        match retry(|| s.conn.read(&mut buf[..want])) {
            // Every byte so far was parsed as it came: the head is incomplete and the
            // peer has stopped sending.
            Ok(0) => return Err(()),
            Ok(n) => {
                s.head.extend_from_slice(&buf[..n]);
                match http::parse(&s.head) {
                    Parsed::Incomplete => {}
                    parsed => return Ok(parsed),
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Parsed::Incomplete),
            Err(_) => return Err(()),
        }
    }
}

/// Writes what is left of the response. `Ok(true)` once all of it is out.
fn write_out(s: &mut Scrape) -> Result<bool, ()> {
    let Some(out) = &s.out else { return Ok(false) };
    while s.written < out.len() {
        match retry(|| s.conn.write(&out[s.written..])) {
            Ok(0) => return Err(()),
            Ok(n) => s.written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(_) => return Err(()),
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
