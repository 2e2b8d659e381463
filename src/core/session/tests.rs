//! Session scenarios over scripted streams and virtual time, grouped by phase.

use std::time::{Duration, Instant};

use super::*;
use crate::core::handover::RESET_RECHECK;
use crate::core::pipe::Bytes;
use crate::core::scripted::{failed, ReadStep, Scripted, WriteStep};

const BUDGET: usize = 1 << 20;

fn policy(reset_policy: ResetPolicy) -> Policy {
    Policy {
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(300),
        half_close_timeout: Duration::from_secs(60),
        reset_flush_timeout: Duration::from_secs(1),
        reset_policy,
    }
}

struct World {
    s: Session<Scripted>,
    pool: Pool,
    now: Instant,
    policy: Policy,
}

fn world(ring: usize) -> World {
    World {
        s: Session::new(Scripted::sink(), Scripted::sink(), Instant::now()),
        pool: Pool::new(ring, 8),
        now: Instant::now(),
        policy: policy(ResetPolicy::Mirror),
    }
}

const ALL: Readiness = Readiness {
    readable: true,
    writable: true,
    read_closed: false,
};

/// What the kernel would report for this peer: readable and writable, and "read
/// closed" once its FIN or RST has arrived.
fn event_for(peer: &Scripted) -> Readiness {
    Readiness {
        read_closed: peer.peer_closed(),
        ..ALL
    }
}

impl World {
    fn connected(ring: usize) -> World {
        let mut w = world(ring);
        w.s.on_event(Side::Upstream, ALL);
        let e = event_for(&w.s.client.stream);
        w.s.on_event(Side::Client, e);
        assert_eq!(w.drive(), Drive::Waiting);
        assert!(w.s.connected());
        w
    }

    fn drive(&mut self) -> Drive {
        self.s.drive(&mut self.pool, self.now, &self.policy, BUDGET)
    }

    fn wake(&mut self) -> Drive {
        self.s
            .on_event(Side::Client, event_for(&self.s.client.stream));
        self.s
            .on_event(Side::Upstream, event_for(&self.s.upstream.stream));
        self.drive()
    }

    fn advance(&mut self, d: Duration) -> Drive {
        self.now += d;
        self.s.expire(&mut self.pool, self.now, &self.policy)
    }
}

// ---- Connecting ----

#[test]
fn connect_completes_on_writable() {
    let mut w = world(16);
    assert_eq!(w.drive(), Drive::Waiting);
    assert_eq!(w.s.phase(), Some(Phase::Connecting));
    w.s.on_event(Side::Upstream, ALL);
    assert_eq!(w.drive(), Drive::Waiting);
    assert_eq!(w.s.phase(), Some(Phase::Relaying));
}

#[test]
fn spurious_writable_keeps_waiting() {
    let mut w = world(16);
    w.s.upstream
        .stream
        .connect
        .push_back(ConnectStatus::Pending);
    w.s.on_event(Side::Upstream, ALL);
    assert_eq!(w.drive(), Drive::Waiting);
    assert_eq!(w.s.phase(), Some(Phase::Connecting));
}

#[test]
fn refused_connect_is_reported_then_closes() {
    let mut w = world(16);
    w.s.upstream
        .stream
        .connect
        .push_back(failed(ConnectFailure::Refused));
    w.s.on_event(Side::Upstream, ALL);
    assert_eq!(w.drive(), Drive::ConnectFailed(ConnectFailure::Refused));
    let d = w.s.fail_connect(ConnectFailure::Refused, &mut w.pool);
    assert_eq!(d, Drive::Closed(CloseReason::ConnectRefused));
}

#[test]
fn connect_times_out_at_the_deadline() {
    let mut w = world(16);
    w.now = Instant::now();
    w.s = Session::new(Scripted::sink(), Scripted::sink(), w.now);
    assert_eq!(w.advance(Duration::from_millis(4999)), Drive::Waiting);
    assert_eq!(
        w.advance(Duration::from_millis(1)),
        Drive::ConnectFailed(ConnectFailure::Timeout)
    );
}

#[test]
fn redial_starts_a_fresh_connect_clock() {
    let mut w = world(16);
    w.now += Duration::from_secs(4);
    let old = w.s.redial(Scripted::sink(), None, w.now);
    assert_eq!(old.written.len(), 0);
    assert_eq!(
        w.s.deadline(&w.policy),
        Some(w.now + Duration::from_secs(5))
    );
}

#[test]
fn client_bytes_read_while_connecting_are_delivered_after() {
    let mut w = world(16);
    w.s.client.stream.send(b"early");
    let e = event_for(&w.s.client.stream);
    w.s.on_event(Side::Client, e);
    assert_eq!(w.drive(), Drive::Waiting);
    assert!(w.s.upstream.stream.written.is_empty());
    w.s.on_event(Side::Upstream, ALL);
    w.drive();
    assert_eq!(w.s.upstream.stream.written, b"early");
}

#[test]
fn client_reset_while_connecting_with_nothing_owed_closes_at_once() {
    let mut w = world(16);
    w.s.client.stream.then(ReadStep::Reset);
    let e = event_for(&w.s.client.stream);
    w.s.on_event(Side::Client, e);
    assert_eq!(w.drive(), Drive::Closed(CloseReason::ClientReset));
    assert_eq!(
        w.s.upstream.stream.aborts, 1,
        "an upstream already connected sees RST"
    );
}

#[test]
fn client_reset_while_connecting_hands_owed_bytes_over_after_the_connect() {
    let mut w = world(16);
    w.s.client.stream.send(b"owed").then(ReadStep::Reset);
    let e = event_for(&w.s.client.stream);
    w.s.on_event(Side::Client, e);
    assert_eq!(w.drive(), Drive::Waiting);
    assert_eq!(w.s.phase(), Some(Phase::Connecting));
    w.s.on_event(Side::Upstream, ALL);
    assert_eq!(w.drive(), Drive::Closed(CloseReason::ClientReset));
    assert_eq!(w.s.upstream.stream.written, b"owed");
    assert_eq!(w.s.upstream.stream.aborts, 1);
}

#[test]
fn client_gone_and_connect_failed_closes_for_the_client() {
    let mut w = world(16);
    w.s.client.stream.send(b"owed").then(ReadStep::Reset);
    let e = event_for(&w.s.client.stream);
    w.s.on_event(Side::Client, e);
    w.drive();
    w.s.upstream
        .stream
        .connect
        .push_back(failed(ConnectFailure::Refused));
    w.s.on_event(Side::Upstream, ALL);
    assert_eq!(w.drive(), Drive::Closed(CloseReason::ClientReset));
    assert_eq!(w.pool.lent(), 0);
}

// ---- Relaying ----

#[test]
fn both_directions_flow() {
    let mut w = World::connected(4);
    w.s.client.stream.send(b"ping");
    w.s.upstream.stream.send(b"pong!");
    assert_eq!(w.wake(), Drive::Waiting);
    assert_eq!(w.s.upstream.stream.written, b"ping");
    assert_eq!(w.s.client.stream.written, b"pong!");
    assert_eq!(w.s.delivered(), (4, 5));
    assert_eq!(w.s.buffers_held(), 0, "an idle session holds no buffer");
}

#[test]
fn budget_yields_and_resumes() {
    let mut w = World::connected(4);
    w.s.client.stream.send(&[7u8; 64]);
    let e = event_for(&w.s.client.stream);
    w.s.on_event(Side::Client, e);
    assert_eq!(w.s.drive(&mut w.pool, w.now, &w.policy, 8), Drive::Yielded);
    assert!(w.s.upstream.stream.written.len() < 64);
    assert_eq!(w.drive(), Drive::Waiting);
    assert_eq!(w.s.upstream.stream.written.len(), 64);
}

#[test]
fn starved_pool_is_reported_and_recovers() {
    let mut w = World::connected(4);
    let held: Vec<_> = std::iter::from_fn(|| w.pool.take(0)).collect();
    w.s.client.stream.send(b"abc");
    let e = event_for(&w.s.client.stream);
    w.s.on_event(Side::Client, e);
    assert_eq!(w.drive(), Drive::Starved);
    for b in held {
        w.pool.give(b);
    }
    assert_eq!(w.drive(), Drive::Waiting);
    assert_eq!(w.s.upstream.stream.written, b"abc");
}

// ---- half-close ----

#[test]
fn client_half_close_then_upstream_replies() {
    let mut w = World::connected(4);
    w.s.client.stream.send(b"request").then(ReadStep::Eof);
    w.wake();
    assert_eq!(w.s.upstream.stream.fin_at, Some(7));
    assert_eq!(w.s.phase(), Some(Phase::HalfClosed));
    w.s.upstream
        .stream
        .send(b"a long reply")
        .then(ReadStep::Eof);
    assert_eq!(w.wake(), Drive::Closed(CloseReason::ClientEof));
    assert_eq!(w.s.client.stream.written, b"a long reply");
    assert_eq!(w.s.client.stream.fin_at, Some(12));
}

#[test]
fn upstream_speaks_first_and_half_closes() {
    let mut w = World::connected(4);
    w.s.upstream.stream.send(b"banner").then(ReadStep::Eof);
    w.wake();
    assert_eq!(w.s.client.stream.fin_at, Some(6));
    w.s.client.stream.send(b"late data").then(ReadStep::Eof);
    assert_eq!(w.wake(), Drive::Closed(CloseReason::UpstreamEof));
    assert_eq!(w.s.upstream.stream.written, b"late data");
}

#[test]
fn half_close_timeout_replaces_idle_once_one_direction_finished() {
    let mut w = World::connected(4);
    w.s.client.stream.then(ReadStep::Eof);
    w.wake();
    assert_eq!(w.advance(Duration::from_secs(59)), Drive::Waiting);
    assert_eq!(
        w.advance(Duration::from_secs(1)),
        Drive::Closed(CloseReason::HalfCloseTimeout)
    );
}

#[test]
fn progress_while_half_closed_postpones_the_timeout() {
    let mut w = World::connected(4);
    w.s.client.stream.then(ReadStep::Eof);
    w.wake();
    w.now += Duration::from_secs(50);
    w.s.upstream.stream.send(b"x");
    w.wake();
    assert_eq!(w.advance(Duration::from_secs(50)), Drive::Waiting);
}

// ---- idle ----

#[test]
fn idle_session_closes_at_the_idle_timeout() {
    let mut w = World::connected(4);
    assert_eq!(w.advance(Duration::from_secs(299)), Drive::Waiting);
    assert_eq!(
        w.advance(Duration::from_secs(1)),
        Drive::Closed(CloseReason::IdleTimeout)
    );
}

#[test]
fn bytes_that_cannot_be_flushed_are_not_progress() {
    let mut w = World::connected(4);
    w.s.client.stream = Scripted::new(); // the client never takes a byte
    w.s.upstream.stream.send(&[1u8; 100]);
    w.now += Duration::from_secs(200);
    w.wake();
    assert_eq!(
        w.advance(Duration::from_secs(100)),
        Drive::Closed(CloseReason::IdleTimeout)
    );
}

#[test]
fn delivered_bytes_refresh_the_idle_timer() {
    let mut w = World::connected(4);
    w.now += Duration::from_secs(200);
    w.s.client.stream.send(b"keepalive");
    w.wake();
    assert_eq!(w.advance(Duration::from_secs(200)), Drive::Waiting);
}

// ---- resets ----

#[test]
fn upstream_reset_mirrors_after_owed_bytes() {
    let mut w = World::connected(64);
    w.s.upstream.stream.send(b"partial").then(ReadStep::Reset);
    assert_eq!(w.wake(), Drive::Closed(CloseReason::UpstreamReset));
    assert_eq!(w.s.client.stream.written, b"partial");
    assert_eq!(w.s.client.stream.aborts, 1);
    assert_eq!(w.s.client.stream.fin_at, None);
}

#[test]
fn upstream_reset_under_fin_policy_sends_fin_after_owed_bytes() {
    let mut w = World::connected(64);
    w.policy.reset_policy = ResetPolicy::Fin;
    w.s.upstream.stream.send(b"partial").then(ReadStep::Reset);
    assert_eq!(w.wake(), Drive::Closed(CloseReason::UpstreamReset));
    assert_eq!(w.s.client.stream.fin_at, Some(7));
    assert_eq!(w.s.client.stream.aborts, 0);
}

#[test]
fn reset_waits_for_owed_bytes_to_be_acknowledged() {
    let mut w = World::connected(64);
    w.s.client.stream.unacked = 7;
    w.s.upstream.stream.send(b"partial").then(ReadStep::Reset);
    assert_eq!(w.wake(), Drive::Waiting);
    assert_eq!(w.s.phase(), Some(Phase::Resetting));
    assert_eq!(w.s.client.stream.aborts, 0);
    w.s.client.stream.unacked = 0;
    assert_eq!(
        w.advance(RESET_RECHECK),
        Drive::Closed(CloseReason::UpstreamReset)
    );
    assert_eq!(w.s.client.stream.aborts, 1);
}

#[test]
fn reset_flush_is_bounded_when_the_peer_never_reads() {
    let mut w = World::connected(64);
    w.s.client.stream = Scripted::new();
    w.s.upstream.stream.send(b"owed").then(ReadStep::Reset);
    assert_eq!(w.wake(), Drive::Waiting);
    assert_eq!(
        w.advance(Duration::from_secs(1)),
        Drive::Closed(CloseReason::UpstreamReset)
    );
    assert_eq!(w.s.client.stream.aborts, 1);
    assert_eq!(w.pool.lent(), 0);
}

#[test]
fn client_gone_on_write_resets_the_upstream() {
    let mut w = World::connected(64);
    w.s.client.stream = Scripted::new();
    w.s.client.stream.writes.push_back(WriteStep::Reset);
    w.s.upstream.stream.send(b"data");
    assert_eq!(w.wake(), Drive::Closed(CloseReason::ClientReset));
    assert_eq!(w.s.upstream.stream.aborts, 1);
    assert_eq!(w.pool.lent(), 0);
}

#[test]
fn upstream_reset_found_on_write_still_delivers_its_last_bytes() {
    let mut w = World::connected(64);
    w.s.upstream.stream = Scripted::new();
    w.s.upstream.stream.writes.push_back(WriteStep::Reset);
    w.s.upstream
        .stream
        .send(b"last words")
        .then(ReadStep::Reset);
    w.s.upstream.ready = Readiness {
        readable: false, // its event has not been handled yet
        writable: true,
        read_closed: false,
    };
    w.s.client.stream.send(b"request");
    let e = event_for(&w.s.client.stream);
    w.s.on_event(Side::Client, e);
    assert_eq!(w.drive(), Drive::Closed(CloseReason::UpstreamReset));
    assert_eq!(w.s.client.stream.written, b"last words");
    assert_eq!(w.s.client.stream.aborts, 1);
}

#[test]
fn client_reset_hands_its_bytes_to_the_upstream_first() {
    let mut w = World::connected(64);
    w.s.client.stream.send(b"x").then(ReadStep::Reset);
    assert_eq!(w.wake(), Drive::Closed(CloseReason::ClientReset));
    assert_eq!(w.s.upstream.stream.written, b"x");
    assert_eq!(w.s.upstream.stream.aborts, 1);
}

// ---- shutdown ----

#[test]
fn shut_down_closes_once_and_returns_buffers() {
    let mut w = World::connected(4);
    w.s.client.stream = Scripted::new();
    w.s.upstream.stream.send(b"stuck");
    w.wake();
    assert_eq!(w.s.buffers_held(), 1);
    assert_eq!(
        w.s.shut_down(&mut w.pool),
        Drive::Closed(CloseReason::Shutdown)
    );
    assert_eq!(w.pool.lent(), 0);
    assert_eq!(
        w.s.shut_down(&mut w.pool),
        Drive::Closed(CloseReason::Shutdown)
    );
    assert_eq!(w.s.deadline(&w.policy), None);
}

// ---- preambles: bytes before relaying, and an awaited reply ----

/// A stand-in for a mode's reply: 0x10 is a keep-alive, 0x21 accepts, 0x22 refuses.
fn reply(byte: u8) -> Reply {
    match byte {
        0x10 => Reply::Skip,
        0x21 => Reply::Accepted,
        0x22 => Reply::Refused,
        _ => Reply::Invalid,
    }
}

/// A relay-style session: the upstream is an established tunnel; "ATT" goes first, and
/// relaying waits for the reply.
fn paired(now: Instant) -> Session<Scripted> {
    Session::established(Scripted::sink(), Scripted::sink(), now).with_preamble(Preamble {
        to_upstream: Some(Bytes::Borrowed(b"ATT")),
        reply: Some(reply),
        ..Preamble::default()
    })
}

/// An agent-style session: "+" to the client once connected, "-" when the connect fails.
fn replies() -> Preamble {
    Preamble {
        to_client: Some(Bytes::Borrowed(b"+")),
        on_failure: Some(b"-"),
        ..Preamble::default()
    }
}

#[test]
fn paired_session_writes_attach_first_and_relays_after_ready() {
    let now = Instant::now();
    let mut w = world(16);
    w.s = paired(now);
    w.s.client.stream.send(b"hello");
    w.s.upstream.stream.send(&[0x10]); // a heartbeat sent before the agent saw ATTACH
    assert_eq!(w.wake(), Drive::Waiting);
    assert_eq!(
        w.s.upstream.stream.written, b"ATThello",
        "ATTACH, then client bytes"
    );
    assert_eq!(w.s.phase(), Some(Phase::Connecting));
    w.s.upstream.stream.send(&[0x21]).send(b"banner");
    assert_eq!(w.wake(), Drive::Waiting);
    assert_eq!(w.s.phase(), Some(Phase::Relaying));
    assert_eq!(
        w.s.client.stream.written, b"banner",
        "READY itself is not relayed"
    );
}

#[test]
fn refused_tunnel_is_a_refused_connect() {
    let now = Instant::now();
    let mut w = world(16);
    w.s = paired(now);
    w.s.upstream.stream.send(&[0x22]);
    assert_eq!(w.wake(), Drive::ConnectFailed(ConnectFailure::Refused));
}

#[test]
fn tunnel_lost_before_ready_is_a_connect_error() {
    let now = Instant::now();
    let mut w = world(16);
    w.s = paired(now);
    w.s.upstream.stream.then(ReadStep::Eof);
    assert_eq!(w.wake(), Drive::ConnectFailed(ConnectFailure::Error));
}

#[test]
fn ready_reply_precedes_upstream_bytes() {
    let mut w = world(16);
    w.s = Session::new(Scripted::sink(), Scripted::sink(), w.now).with_preamble(replies());
    w.s.upstream.stream.send(b"banner");
    w.wake();
    assert_eq!(w.s.client.stream.written, b"+banner");
}

#[test]
fn failed_reply_is_written_before_closing() {
    let mut w = world(16);
    w.s = Session::new(Scripted::sink(), Scripted::sink(), w.now).with_preamble(replies());
    assert_eq!(
        w.s.fail_connect(ConnectFailure::Refused, &mut w.pool),
        Drive::Closed(CloseReason::ConnectRefused)
    );
    assert_eq!(w.s.client.stream.written, b"-");
}
