//! Seeded random interleavings of the whole relay core.
//!
//! Each case scripts two peers (random payloads cut into random reads, `WouldBlock`s,
//! partial writes, EOF or RST at the end or none), then feeds the session random events
//! and clock jumps until it closes. It asserts: bytes out equal bytes in per direction
//! (a prefix when the session did not end cleanly), the FIN comes after the last byte,
//! exactly one close, no buffer or kernel pipe kept. Every seed runs in both data paths:
//! copying through rings of random size classes, and splicing through (scripted) kernel
//! pipes, some of which run out of slots while holding bytes. A failing case prints its
//! seed and path; replay it with `TCPBRIDGE_SEED=<seed> cargo test --lib <test name>`.
//! `TCPBRIDGE_CASES` sets the count.

use std::time::{Duration, Instant};

use super::*;
use crate::core::pipe::Bytes;
use crate::core::pool::{Classes, Pipes, Splice};
use crate::core::scripted::{ReadStep, Scripted, ScriptedPipe, WriteStep};
use crate::core::tunnel::ready_reply;
use crate::proto::tunnel::frame;

/// The ATTACH stand-in a paired session writes first.
const ATTACH: &[u8] = b"\x20ATTACH";

/// splitmix64: small, seedable, good enough to pick test steps.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Eof,
    Reset,
    Silent,
}

struct Peer {
    payload: Vec<u8>,
    ending: Ending,
}

fn peer(rng: &mut Rng) -> (Peer, Scripted) {
    let len = rng.below(3000) as usize;
    let payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    let mut s = Scripted::new();
    let mut at = 0;
    while at < len {
        let n = (1 + rng.below(700) as usize).min(len - at);
        s.send(&payload[at..at + n]);
        if rng.chance(30) {
            s.then(ReadStep::Block);
        }
        at += n;
    }
    let ending = match rng.below(10) {
        0..=5 => Ending::Eof,
        6..=7 => Ending::Reset,
        _ => Ending::Silent,
    };
    match ending {
        Ending::Eof => s.then(ReadStep::Eof),
        Ending::Reset => s.then(ReadStep::Reset),
        Ending::Silent => &mut s,
    };
    for _ in 0..rng.below(50) {
        s.writes.push_back(if rng.chance(40) {
            WriteStep::Block
        } else {
            WriteStep::Accept(1 + rng.below(900) as usize)
        });
    }
    s.accept_when_done = true;
    (Peer { payload, ending }, s)
}

/// A random event; "read closed" only once the peer's end is queued, as the kernel
/// reports EPOLLRDHUP only after the FIN or RST arrived.
fn event(rng: &mut Rng, peer: &Scripted) -> Readiness {
    Readiness {
        readable: rng.chance(60),
        writable: rng.chance(60),
        read_closed: peer.peer_closed() && rng.chance(60),
    }
}

/// The two data paths a seed runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Rings of random size classes.
    Copy,
    /// Kernel pipes (`auto` or `always`), rings when none is free.
    Splice,
}

/// A pool for `path`: a small budget (starvation) or a large one (large classes).
fn pool(rng: &mut Rng, path: Path) -> Pool {
    let ring = [1, 2, 3, 7, 16, 64, 4096][rng.below(7) as usize];
    let largest = ring * [1, 4, 16][rng.below(3) as usize];
    let mut budget = ring * [1, 2, 3, 64][rng.below(4) as usize];
    if path == Path::Copy {
        return Pool::with_classes(Classes::new(ring, largest), budget);
    }
    let mode = if rng.chance(50) {
        Splice::Always
    } else {
        Splice::Auto
    };
    let size = [1, 7, 64, 4096][rng.below(4) as usize];
    let slots_every = rng.below(4) as usize;
    let max = 1 + rng.below(2) as usize;
    if rng.chance(80) {
        // Room for the kernel pipes within half the budget; else rings only.
        budget += 2 * size * max;
    }
    Pool::with_classes(Classes::new(ring, largest), budget).with_pipes(Pipes::new(
        mode,
        max,
        size,
        ScriptedPipe::opener(size, slots_every),
    ))
}

/// Runs one case; `Ok(true)` when a kernel pipe was lent.
fn run_case(seed: u64, path: Path) -> Result<bool, String> {
    let mut rng = Rng(seed);
    let mut pool = pool(&mut rng, path);
    let policy = Policy {
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(300),
        half_close_timeout: Duration::from_secs(60),
        reset_flush_timeout: Duration::from_secs(1),
        reset_policy: if rng.chance(50) {
            ResetPolicy::Mirror
        } else {
            ResetPolicy::Fin
        },
    };
    let (client_peer, mut client) = peer(&mut rng);
    let (upstream_peer, mut upstream) = peer(&mut rng);
    // A fifth of the cases are relay sessions over a paired tunnel: ATTACH goes first,
    // the agent answers READY (maybe after a heartbeat) before its bytes.
    let paired = rng.chance(20);
    let mut status_bytes = 0;
    if paired {
        upstream
            .reads
            .push_front(ReadStep::Data(vec![frame::READY]));
        status_bytes = 1;
        if rng.chance(50) {
            upstream
                .reads
                .push_front(ReadStep::Data(vec![frame::HEARTBEAT]));
            status_bytes = 2;
        }
    }
    match rng.below(10) {
        _ if paired => {}
        0 => upstream.connect.push_back(ConnectStatus::Pending),
        1 => upstream
            .connect
            .push_back(ConnectStatus::Failed(ConnectFailure::Refused)),
        _ => {}
    }
    if path == Path::Splice && rng.chance(10) {
        // A stream that cannot be spliced: both directions copy.
        client.no_splice = true;
    }
    if rng.chance(20) {
        // A peer that never acknowledges: an RST toward it waits for the flush timeout.
        client.unacked = 1 + rng.below(100) as usize;
    }
    let mut now = Instant::now();
    let mut s = if paired {
        Session::established(client, upstream, now).with_preamble(Preamble {
            to_upstream: Some(Bytes::Borrowed(ATTACH)),
            reply: Some(ready_reply),
            ..Preamble::default()
        })
    } else {
        Session::new(client, upstream, now)
    };
    let mut reason = None;
    for step in 0..4000 {
        let d = if step > 3000 || rng.chance(10) {
            now += Duration::from_millis([1, 10, 1000, 61_000, 301_000][rng.below(5) as usize]);
            s.expire(&mut pool, now, &policy)
        } else {
            let side = if rng.chance(50) {
                Side::Client
            } else {
                Side::Upstream
            };
            let peer = match side {
                Side::Client => &s.client.stream,
                Side::Upstream => &s.upstream.stream,
            };
            let ready = event(&mut rng, peer);
            s.on_event(side, ready);
            s.drive(&mut pool, now, &policy, 1 + rng.below(5000) as usize)
        };
        match d {
            Drive::ConnectFailed(f) => {
                if let Drive::Closed(r) = s.fail_connect(f, &mut pool) {
                    reason = Some(r);
                    break;
                }
            }
            Drive::Closed(r) => {
                reason = Some(r);
                break;
            }
            Drive::Waiting | Drive::Yielded | Drive::Starved => {}
        }
    }
    let reason = reason.ok_or("the session was never closed: a state without a deadline")?;
    let calls =
        (s.client.stream.read_calls + s.client.stream.write_calls) + s.upstream.stream.read_calls;
    if s.drive(&mut pool, now, &policy, 1000) != Drive::Closed(reason) {
        return Err("a closed session changed its reason".into());
    }
    if calls
        != (s.client.stream.read_calls + s.client.stream.write_calls) + s.upstream.stream.read_calls
    {
        return Err("a closed session did I/O".into());
    }
    if pool.lent() != 0 || pool.pipes_lent() != 0 {
        return Err(format!(
            "{} buffers and {} kernel pipes kept after close",
            pool.lent(),
            pool.pipes_lent()
        ));
    }
    if paired {
        // ATTACH goes first; a session closed early may have sent only part of it.
        let sent = s.upstream.stream.written.len().min(ATTACH.len());
        if s.upstream.stream.written[..sent] != ATTACH[..sent] {
            return Err("a paired tunnel did not get ATTACH first".into());
        }
        if s.upstream.stream.fin_at.is_some_and(|at| at < ATTACH.len()) {
            return Err("a paired tunnel got FIN inside ATTACH".into());
        }
        s.upstream.stream.written.drain(..sent);
        s.upstream.stream.fin_at = s.upstream.stream.fin_at.map(|at| at - sent);
    }
    check_direction(
        "to_upstream",
        &client_peer,
        s.client.stream.read_total,
        &s.upstream.stream,
        reason,
    )?;
    // A paired tunnel's status bytes (READY, a heartbeat) are read but not relayed.
    let status = if paired { status_bytes } else { 0 };
    let relayed = s.upstream.stream.read_total.saturating_sub(status);
    check_direction(
        "to_client",
        &upstream_peer,
        relayed,
        &s.client.stream,
        reason,
    )?;
    let clean = matches!(reason, CloseReason::ClientEof | CloseReason::UpstreamEof);
    if clean && (client_peer.ending != Ending::Eof || upstream_peer.ending != Ending::Eof) {
        return Err(format!("{reason} without both peers sending FIN"));
    }
    // Under the fin policy an RST is sent only when owed bytes could not be handed over
    // (the other side took nothing for the whole flush timeout).
    let lost_to_upstream = s.upstream.stream.written.len() < s.client.stream.read_total;
    let lost_to_client = s.client.stream.written.len() < relayed;
    if policy.reset_policy == ResetPolicy::Fin
        && (s.upstream.stream.aborts > 0 && !lost_to_upstream
            || s.client.stream.aborts > 0 && !lost_to_client)
    {
        return Err("an RST was sent under the fin policy with nothing lost".into());
    }
    if s.client.stream.aborts > 1 || s.upstream.stream.aborts > 1 {
        return Err("a stream was aborted twice".into());
    }
    if reason == CloseReason::UpstreamReset && upstream_peer.ending != Ending::Reset {
        return Err("upstream-reset without an upstream RST".into());
    }
    if reason == CloseReason::ClientReset && client_peer.ending != Ending::Reset {
        return Err("client-reset without a client RST".into());
    }
    Ok(pool.pipe_lends() > 0)
}

/// The destination got a prefix of the source's payload; all of it with a FIN right after
/// on a clean close; never a FIN before the last byte read from the source.
fn check_direction(
    name: &str,
    source: &Peer,
    read_from_source: usize,
    destination: &Scripted,
    reason: CloseReason,
) -> Result<(), String> {
    let got = &destination.written;
    if !source.payload.starts_with(got) {
        return Err(format!("{name}: bytes delivered are not the bytes sent"));
    }
    if destination.shutdowns > 1 {
        return Err(format!("{name}: FIN sent twice"));
    }
    if let Some(at) = destination.fin_at {
        if at != source.payload.len() && source.ending == Ending::Eof {
            return Err(format!(
                "{name}: FIN after {at} of {} bytes",
                source.payload.len()
            ));
        }
        if at != got.len() {
            return Err(format!("{name}: bytes written after the FIN"));
        }
        if at != read_from_source {
            return Err(format!(
                "{name}: FIN after {at} bytes, but {read_from_source} were read from the source"
            ));
        }
    }
    let clean = matches!(reason, CloseReason::ClientEof | CloseReason::UpstreamEof);
    if clean && (got.len() != source.payload.len() || destination.fin_at.is_none()) {
        return Err(format!(
            "{name}: clean close after {} of {} bytes",
            got.len(),
            source.payload.len()
        ));
    }
    Ok(())
}

/// Runs every seed (or `TCPBRIDGE_SEED` alone) in `path`.
fn run_all(path: Path, test: &str) {
    if let Some(seed) = std::env::var("TCPBRIDGE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        if let Err(e) = run_case(seed, path) {
            panic!("seed {seed} ({path:?}): {e}");
        }
        return;
    }
    let cases: u64 = std::env::var("TCPBRIDGE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let base = 0x7CB_0000_0000u64;
    let mut spliced = 0;
    for i in 0..cases {
        let seed = base + i;
        let replay = format!("replay: TCPBRIDGE_SEED={seed} cargo test --lib {test}");
        match std::panic::catch_unwind(|| run_case(seed, path)) {
            Ok(Ok(pipe)) => spliced += u64::from(pipe),
            Ok(Err(e)) => panic!("seed {seed} ({path:?}): {e} ({replay})"),
            Err(_) => panic!("seed {seed} ({path:?}) panicked ({replay})"),
        }
    }
    match path {
        Path::Copy => assert_eq!(spliced, 0, "a copying pool lent a kernel pipe"),
        // Most splicing cases lend a kernel pipe (budget and count permitting).
        Path::Splice => assert!(
            spliced * 2 > cases,
            "kernel pipes lent in only {spliced} of {cases} cases"
        ),
    }
}

#[test]
fn random_interleavings_conserve_bytes_and_close_once_copying() {
    run_all(
        Path::Copy,
        "random_interleavings_conserve_bytes_and_close_once_copying",
    );
}

#[test]
fn random_interleavings_conserve_bytes_and_close_once_splicing() {
    run_all(
        Path::Splice,
        "random_interleavings_conserve_bytes_and_close_once_splicing",
    );
}
