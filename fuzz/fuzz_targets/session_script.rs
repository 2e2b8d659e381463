//! Fuzzes the relay core: one `core::session::Session` between two scripted in-memory
//! streams (`core::scripted::Scripted`), driven by an event script read from the input.
//!
//! Input: three header bytes (ring size, pool budget, flags: reset policy, dialed or
//! paired tunnel, protocol replies, redials), then two-byte steps (opcode, argument):
//! bytes or a `WouldBlock` from either peer, its FIN or RST, what its next write takes
//! (some bytes, nothing, an RST), readiness events, drives with a byte budget, clock
//! jumps to or past the deadline, buffers withheld from and given back to the pool,
//! connect results, the agent's status bytes on a paired tunnel, unacknowledged bytes, a
//! shutdown. After the script every write is accepted, every event is delivered and the
//! clock runs to each deadline until the session closes. Checked (the invariants of the
//! reliability design):
//! - each direction delivers a prefix of the bytes sent, all of them with a FIN right
//!   after on a clean close, never a byte after the FIN nor a FIN before the last byte
//!   read from the source;
//! - exactly one close reason, consistent with what the peers did; a closed session does
//!   no I/O and keeps no buffer; every state has a deadline (the session always closes);
//! - a paired tunnel gets ATTACH first; an agent's client gets READY before any byte, or
//!   at most REFUSED when the connect fails; a failed upstream saw no byte;
//! - under the fin policy an RST is sent only when owed bytes were lost; no stream is
//!   aborted twice. Debug assertions in the core (stalls, ring bounds) are on.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;

#[path = "session/check.rs"]
mod check;

use check::{check, Ending, Peer};
use tcpbridge::core::pool::Pool;
use tcpbridge::core::reason::{CloseReason, Side};
use tcpbridge::core::scripted::{ReadStep, Scripted, WriteStep};
use tcpbridge::core::handover::ResetPolicy;
use tcpbridge::core::pipe::Bytes;
use tcpbridge::core::session::{Drive, Phase, Policy, Preamble, Session};
use tcpbridge::core::stream::{ConnectFailure, ConnectStatus, Readiness};
use tcpbridge::core::tunnel::ready_reply;
use tcpbridge::proto::tunnel::{agent_frame, frame, AgentFrame};

/// The ATTACH stand-in a paired session writes first.
const ATTACH: &[u8] = b"\x20ATTACH";
/// The agent's replies to the relay.
const READY: &[u8] = &[frame::READY];
const REFUSED: &[u8] = &[frame::REFUSED];

/// The whole case: session, pool, clock and what the script did.
struct Case {
    s: Session<Scripted>,
    pool: Pool,
    policy: Policy,
    now: Instant,
    held: Vec<Box<[u8]>>,
    client: Peer,
    upstream: Peer,
    paired: bool,
    replies: bool,
    redials: u8,
    /// Paired: status bytes queued before READY (heartbeats and READY itself); `None`
    /// until the status is settled, then whether it was READY.
    status_len: usize,
    status_ready: Option<bool>,
    connect_failed: bool,
    /// The upstream was seen connected (an agent's READY reply is then owed).
    connected_seen: bool,
    closed: Option<CloseReason>,
}

impl Case {
    fn stream(&mut self, side: Side) -> &mut Scripted {
        match side {
            Side::Client => self.s.stream(Side::Client),
            Side::Upstream => self.s.stream(Side::Upstream),
        }
    }

    fn peer(&mut self, side: Side) -> &mut Peer {
        match side {
            Side::Client => &mut self.client,
            Side::Upstream => &mut self.upstream,
        }
    }

    /// Upstream bytes before a paired tunnel's READY would be read as status frames.
    fn may_send(&self, side: Side) -> bool {
        side == Side::Client || !self.paired || self.status_ready == Some(true)
    }

    fn send(&mut self, side: Side, n: usize) {
        if self.peer(side).ending != Ending::Open || !self.may_send(side) {
            return;
        }
        let bytes = self.peer(side).more(n);
        if !bytes.is_empty() {
            self.stream(side).send(&bytes);
        }
    }

    fn end(&mut self, side: Side, ending: Ending) {
        if self.peer(side).ending != Ending::Open {
            return;
        }
        self.peer(side).ending = ending;
        let step = if ending == Ending::Eof {
            ReadStep::Eof
        } else {
            ReadStep::Reset
        };
        self.stream(side).then(step);
    }

    /// One status byte from the agent on a paired tunnel, before READY.
    fn status(&mut self, byte: u8) {
        if !self.paired || self.status_ready.is_some() || self.upstream.ending != Ending::Open {
            return;
        }
        self.s.stream(Side::Upstream).send(&[byte]);
        self.status_len += 1;
        match agent_frame(byte) {
            Ok(AgentFrame::Heartbeat) => {}
            Ok(AgentFrame::Ready) => self.status_ready = Some(true),
            Ok(AgentFrame::Refused) | Err(_) => self.status_ready = Some(false),
        }
    }

    fn handle(&mut self, d: Drive, pick: u8) {
        if !matches!(self.s.phase(), Some(Phase::Connecting) | None) {
            self.connected_seen = true;
        }
        match d {
            Drive::ConnectFailed(f) if !self.paired && self.redials > 0 && pick & 1 == 0 => {
                self.redials -= 1;
                let mut fresh = Scripted::new();
                let old = self.s.stream(Side::Upstream);
                fresh.reads = std::mem::take(&mut old.reads);
                fresh.writes = std::mem::take(&mut old.writes);
                fresh.connect = std::mem::take(&mut old.connect);
                fresh.accept_when_done = old.accept_when_done;
                fresh.unacked = old.unacked;
                let old = self.s.redial(fresh, None, self.now);
                assert!(old.written.is_empty(), "{f:?}: a failed upstream got bytes");
                assert_eq!(old.read_total, 0, "{f:?}: a failed upstream was read");
                assert_eq!(
                    old.shutdowns + old.aborts,
                    0,
                    "{f:?}: a failed upstream closed"
                );
            }
            Drive::ConnectFailed(f) => {
                self.connect_failed = true;
                match self.s.fail_connect(f, &mut self.pool) {
                    Drive::Closed(r) => self.closed = Some(r),
                    other => panic!("fail_connect returned {other:?}"),
                }
            }
            Drive::Closed(r) => self.closed = Some(r),
            Drive::Waiting | Drive::Yielded | Drive::Starved => {}
        }
    }

    fn event(&mut self, side: Side, readable: bool, writable: bool, closed: bool) {
        // The kernel reports "read closed" only once the peer's FIN or RST arrived.
        let read_closed = closed && self.stream(side).peer_closed();
        self.s.on_event(
            side,
            Readiness {
                readable,
                writable,
                read_closed,
            },
        );
    }

    fn drive(&mut self, budget: usize, pick: u8) {
        let d = self.s.drive(&mut self.pool, self.now, &self.policy, budget);
        self.handle(d, pick);
    }

    fn advance(&mut self, by: Option<Duration>, pick: u8) {
        match (by, self.s.deadline(&self.policy)) {
            (Some(by), _) => self.now += by,
            (None, Some(deadline)) => self.now = self.now.max(deadline),
            (None, None) => {}
        }
        let d = self.s.expire(&mut self.pool, self.now, &self.policy);
        self.handle(d, pick);
    }

    fn step(&mut self, op: u8, arg: u8) {
        let side = if arg & 1 == 0 {
            Side::Client
        } else {
            Side::Upstream
        };
        match op % 16 {
            0 => self.send(Side::Client, 1 + usize::from(arg)),
            1 => self.send(Side::Upstream, 1 + usize::from(arg)),
            2 => self.send(side, 64 * (1 + usize::from(arg >> 1))),
            3 => self.end(
                side,
                if arg & 2 == 0 {
                    Ending::Eof
                } else {
                    Ending::Reset
                },
            ),
            4 => {
                self.stream(side).then(ReadStep::Block);
            }
            5 => {
                let step = match (arg >> 1) & 3 {
                    0 => WriteStep::Block,
                    1 => WriteStep::Accept(1 + usize::from(arg >> 3)),
                    2 => WriteStep::Accept(usize::MAX),
                    _ if arg >> 3 == 0 => WriteStep::Reset,
                    _ => WriteStep::Accept(64 * usize::from(arg >> 3)),
                };
                self.stream(side).writes.push_back(step);
                if step == WriteStep::Reset {
                    // A write that finds the peer gone: the peer reset (maybe after its
                    // FIN, when it closed without reading).
                    self.peer(side).write_reset = true;
                    self.end(side, Ending::Reset);
                }
            }
            6 => self.event(side, arg & 2 != 0, arg & 4 != 0, arg & 8 != 0),
            7 => self.drive(1 + 32 * usize::from(arg), arg),
            8 => {
                self.event(side, arg & 2 != 0, arg & 4 != 0, arg & 8 != 0);
                self.drive(usize::MAX, arg >> 4);
            }
            9 => {
                let by = [1, 5, 10, 1_000, 5_000, 61_000, 301_000]
                    .get(usize::from(arg % 8))
                    .map(|&ms| Duration::from_millis(ms));
                self.advance(by, arg >> 3);
            }
            10 => {
                if let Some(buf) = self.pool.take(0) {
                    self.held.push(buf);
                }
            }
            11 => {
                if let Some(buf) = self.held.pop() {
                    self.pool.give(buf);
                }
            }
            12 => self.status(match arg % 4 {
                0 => frame::HEARTBEAT,
                1 | 2 => frame::READY,
                _ => arg,
            }),
            13 if !self.paired => self.s.stream(Side::Upstream).connect.push_back(match arg % 4 {
                0 => ConnectStatus::Pending,
                1 => ConnectStatus::Failed(ConnectFailure::Refused),
                2 => ConnectStatus::Failed(ConnectFailure::Timeout),
                _ => ConnectStatus::Failed(ConnectFailure::Error),
            }),
            14 => self.stream(side).unacked = usize::from(arg >> 1),
            15 if arg == 0xff => {
                let d = self.s.shut_down(&mut self.pool);
                self.handle(d, 1);
            }
            _ => {}
        }
    }

    /// Every write accepted, every event delivered, the clock run to each deadline once
    /// nothing moves.
    fn finish(&mut self) {
        while let Some(buf) = self.held.pop() {
            self.pool.give(buf);
        }
        for side in [Side::Client, Side::Upstream] {
            let st = self.stream(side);
            st.accept_when_done = true;
            st.reads.retain(|r| *r != ReadStep::Block);
            st.writes.retain(|w| *w != WriteStep::Block);
        }
        let mut moved = self.moved();
        for round in 0..10_000u32 {
            if self.closed.is_some() {
                return;
            }
            for side in [Side::Client, Side::Upstream] {
                self.event(side, true, true, true);
            }
            let d = self
                .s
                .drive(&mut self.pool, self.now, &self.policy, 1 << 20);
            let before = std::mem::replace(&mut moved, self.moved());
            match d {
                Drive::Waiting | Drive::Starved if before == moved => {
                    self.advance(None, round as u8)
                }
                _ => self.handle(d, round as u8),
            }
        }
        panic!("the session was never closed: a state without a deadline");
    }

    /// A measure of I/O done: bytes read and written, FINs and RSTs.
    fn moved(&mut self) -> usize {
        let mut total = 0;
        for side in [Side::Client, Side::Upstream] {
            let st = self.stream(side);
            total += st.read_total + st.written.len() + st.shutdowns + st.aborts;
        }
        total
    }
}

fuzz_target!(|data: &[u8]| {
    let [ring, budget, flags, script @ ..] = data else {
        return;
    };
    let ring = [1, 2, 3, 7, 16, 64, 4096, 16384][usize::from(ring % 8)];
    let paired = flags & 2 != 0;
    let policy = Policy {
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(300),
        half_close_timeout: Duration::from_secs(60),
        reset_flush_timeout: Duration::from_secs(1),
        reset_policy: if flags & 1 == 0 {
            ResetPolicy::Mirror
        } else {
            ResetPolicy::Fin
        },
    };
    let now = Instant::now();
    let (client, upstream) = (Scripted::new(), Scripted::new());
    let replies = !paired && flags & 4 != 0;
    let s = if paired {
        Session::established(client, upstream, now).with_preamble(Preamble {
            to_upstream: Some(Bytes::Borrowed(ATTACH)),
            reply: Some(ready_reply),
            ..Preamble::default()
        })
    } else if replies {
        Session::new(client, upstream, now).with_preamble(Preamble {
            to_client: Some(Bytes::Borrowed(READY)),
            on_failure: Some(REFUSED),
            ..Preamble::default()
        })
    } else {
        Session::new(client, upstream, now)
    };
    let mut c = Case {
        s,
        pool: Pool::new(ring, 1 + usize::from(budget % 3)),
        policy,
        now,
        held: Vec::new(),
        client: Peer::new(0x00C1_1E47),
        upstream: Peer::new(0x0075_7EA4 << 32),
        paired,
        replies,
        redials: (flags >> 3) & 3,
        status_len: 0,
        status_ready: None,
        connect_failed: false,
        connected_seen: false,
        closed: None,
    };
    for pair in script.chunks(2).take(4096) {
        if c.closed.is_some() {
            break;
        }
        c.step(pair[0], pair.get(1).copied().unwrap_or(0));
    }
    c.finish();
    check(c);
});
