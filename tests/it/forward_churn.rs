//! Forward mode, churn (C5-lite): 1,000 short sessions, 50 at a time, each
//! with its own seeded payload and a random ending. Any cross-talk between
//! sessions (a reused slab slot, token, fd or timer reaching the wrong
//! session) shows as foreign bytes on one side or the other, or as a close
//! line with the wrong reason.

use crate::support::*;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const CHUNK: usize = 64 * 1024;
/// First byte of a churn session (anything but [`ECHO`]).
const CHURN: u8 = b'C';

/// How a churn session ends.
const HALF_CLOSE: u8 = 0;
const CLIENT_RESET: u8 = 1;
const UPSTREAM_RESET: u8 = 2;

/// One churn session: its own stream `seed` of `len` bytes, its ending, and
/// where the resetting side stops (`k` bytes).
#[derive(Debug)]
struct Plan {
    seed: u64,
    len: usize,
    ending: u8,
    k: usize,
}

impl Plan {
    fn new(id: u64) -> Plan {
        let mut rng = Rng::new(0xc4_0000 + id);
        let len = rng.range(2, 64 * 1024);
        let ending = [HALF_CLOSE, HALF_CLOSE, CLIENT_RESET, UPSTREAM_RESET][rng.range(0, 3)];
        let k = rng.range(1, len - 1);
        Plan {
            seed: 1000 + id,
            len,
            ending,
            k,
        }
    }

    /// The session's first bytes: mode, seed, len, ending, k.
    fn header(&self) -> Vec<u8> {
        let mut h = vec![CHURN];
        h.extend_from_slice(&self.seed.to_le_bytes());
        h.extend_from_slice(&(self.len as u32).to_le_bytes());
        h.push(self.ending);
        h.extend_from_slice(&(self.k as u32).to_le_bytes());
        h
    }

    /// Reads the header after the mode byte.
    fn read(s: &mut TcpStream) -> io::Result<Plan> {
        let mut h = [0u8; 17];
        s.read_exact(&mut h)?;
        let u32_at =
            |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes")) as usize;
        Ok(Plan {
            seed: u64::from_le_bytes(h[..8].try_into().expect("8 bytes")),
            len: u32_at(8),
            ending: h[12],
            k: u32_at(13),
        })
    }
}

/// Echoes until EOF or an error, keeping what was read; EOF is answered with
/// a half-close. A failed write after an RST counts as `Reset`.
fn echo_collect(s: &mut TcpStream) -> (Vec<u8>, End) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let (n, e) = match s.read(&mut buf) {
            Ok(0) => {
                let _ = s.shutdown(Shutdown::Write);
                return (got, End::Eof);
            }
            Ok(n) => (n, s.write_all(&buf[..n]).err()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => (0, Some(e)),
        };
        got.extend_from_slice(&buf[..n]);
        match e {
            None => {}
            Some(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ) =>
            {
                return (got, End::Reset)
            }
            Some(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                return (got, End::TimedOut)
            }
            Some(e) => return (got, End::Error(e)),
        }
    }
}

/// The upstream side of a churn session: checks that every byte it gets
/// belongs to the session's own stream and that it ends as planned.
fn churn_upstream(mut s: TcpStream) -> Result<(), String> {
    let plan = Plan::read(&mut s).map_err(|e| format!("header: {e}"))?;
    let want = pattern(plan.seed, plan.len);
    let fail = |what: String| Err(format!("upstream, {plan:?}: {what}"));
    if plan.ending == UPSTREAM_RESET {
        let mut got = vec![0u8; plan.k];
        if let Err(e) = s.read_exact(&mut got) {
            return fail(format!("reading {} bytes: {e}", plan.k));
        }
        if got != want[..plan.k] {
            return fail("bytes of another stream".into());
        }
        s.write_all(&got).map_err(|e| format!("echo: {e}"))?;
        wait_acked(&s, Duration::from_secs(5));
        reset(s);
        return Ok(());
    }
    let (got, end) = echo_collect(&mut s);
    if !want.starts_with(&got) {
        return fail(format!(
            "{} bytes that are not a prefix of its stream",
            got.len()
        ));
    }
    match (plan.ending, &end) {
        (HALF_CLOSE, End::Eof) if got.len() == plan.len => Ok(()),
        (CLIENT_RESET, End::Reset) if got.len() <= plan.k => Ok(()),
        _ => fail(format!("{} bytes then {end:?}", got.len())),
    }
}

/// The client side of churn session `id`. An error comes with the client's
/// port, which names the session in the proxy's close line.
fn churn_client(addr: SocketAddr, id: u64) -> Result<(), (u16, String)> {
    let plan = Plan::new(id);
    let payload = pattern(plan.seed, plan.len);
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map(with_timeouts)
        .map_err(|e| (0, format!("client {id}: connect: {e}")))?;
    let port = c.local_addr().map_or(0, |a| a.port());
    let fail = |what: String| Err((port, format!("client {id}, {plan:?}: {what}")));
    if let Err(e) = c.write_all(&plan.header()) {
        return fail(format!("header: {e}"));
    }
    match plan.ending {
        CLIENT_RESET => {
            // Half the bytes, one echoed byte back (so the session is relaying,
            // not still connecting), the rest up to k, then the reset.
            let half = plan.k.div_ceil(2);
            let mut first = [0u8; 1];
            if let Err(e) = c
                .write_all(&payload[..half])
                .and_then(|()| c.read_exact(&mut first))
            {
                return fail(format!("before the reset: {e}"));
            }
            if first[0] != payload[0] {
                return fail("the first echoed byte is not its own".into());
            }
            let _ = c.write_all(&payload[half..plan.k]);
            reset(c);
            Ok(())
        }
        HALF_CLOSE => {
            if let Err(e) = c
                .write_all(&payload)
                .and_then(|()| c.shutdown(Shutdown::Write))
            {
                return fail(format!("send: {e}"));
            }
            match recv_all(&mut c, plan.len + CHUNK) {
                (got, End::Eof) if got == payload => Ok(()),
                (got, end) => fail(format!(
                    "{} bytes back ({}), then {end:?}; want its {} bytes, then EOF",
                    got.len(),
                    whose(&payload, &got),
                    plan.len
                )),
            }
        }
        _ => {
            // The upstream echoes k bytes and resets. Writing fails once the
            // RST is in; if that write took the error, the read sees EOF.
            let wrote = c.write_all(&payload);
            let took_reset = matches!(&wrote, Err(e) if e.kind() == io::ErrorKind::ConnectionReset);
            // Only a prefix of the k bytes is certain while the client sends:
            // see `upstream_reset_while_client_sends_still_delivers_its_last_bytes`.
            match recv_all(&mut c, plan.len + CHUNK) {
                (got, End::Reset) if payload[..plan.k].starts_with(&got) => Ok(()),
                (got, End::Eof) if took_reset && payload[..plan.k].starts_with(&got) => Ok(()),
                (got, end) => fail(format!(
                    "{} bytes back ({}), then {end:?} (write: {wrote:?}); want at most its \
                     first {} bytes, then RST",
                    got.len(),
                    whose(&payload, &got),
                    plan.k
                )),
            }
        }
    }
}

/// Whether `got` is a prefix of the session's own `payload`.
fn whose(payload: &[u8], got: &[u8]) -> &'static str {
    if payload.starts_with(got) {
        "its own"
    } else {
        "NOT its own"
    }
}

/// C5-lite: 1,000 sessions, 50 at a time, each with its own seeded payload
/// (2 B..64 KiB) through an echo upstream, ending at random: the client
/// half-closes and must read back exactly its own bytes then EOF; the client
/// resets mid-way (the upstream gets a prefix of that session's bytes, then
/// RST); or the upstream resets after echoing k bytes (the client gets a
/// prefix of those, then RST). Every session leaves one close line with the
/// matching reason; all within 30 s; the proxy ends quiescent and serving.
#[test]
fn churn_with_random_endings_has_no_cross_talk() {
    watchdog_for(Duration::from_secs(45), || {
        const SESSIONS: u64 = 1000;
        const PARALLEL: u64 = 50;
        let up_errors = Arc::new(Mutex::new(Vec::new()));
        let up_done = Arc::new(AtomicUsize::new(0));
        let (errors, done) = (Arc::clone(&up_errors), Arc::clone(&up_done));
        let up = dispatch_server(move |s| {
            if let Err(e) = churn_upstream(s) {
                errors.lock().expect("errors lock").push(e);
            }
            done.fetch_add(1, Ordering::SeqCst);
        });
        let mut proxy = Proxy::forward(&[up.addr], &[]);
        dispatch_echo_once(proxy.addr());
        let baseline = proxy.baseline();
        let addr = proxy.addr();

        let t0 = Instant::now();
        let workers: Vec<_> = (0..PARALLEL)
            .map(|w| {
                thread::spawn(move || {
                    (w..SESSIONS)
                        .step_by(PARALLEL as usize)
                        .filter_map(|id| churn_client(addr, id).err())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut failures: Vec<(u16, String)> = workers
            .into_iter()
            .flat_map(|t| t.join().expect("churn worker"))
            .collect();
        let took = t0.elapsed();
        proxy.assert_quiescent(baseline, Duration::from_secs(5));
        // The upstream's verdicts on reset sessions may trail the clients.
        let finished = || up_done.load(Ordering::SeqCst) as u64 >= SESSIONS;
        assert!(
            wait_for(IO_TIMEOUT, finished),
            "the upstream finished {} of {SESSIONS} sessions ({} accepted)",
            up_done.load(Ordering::SeqCst),
            up.accepted()
        );
        failures.extend(
            up_errors
                .lock()
                .expect("errors lock")
                .drain(..)
                .map(|e| (0, e)),
        );
        if !failures.is_empty() {
            let log = proxy.stderr();
            let shown: Vec<String> = failures
                .iter()
                .take(10)
                .map(|(port, e)| {
                    let needle = format!("client=127.0.0.1:{port} ");
                    let line = log.lines().find(|l| *port != 0 && l.contains(&needle));
                    format!("{e}\n    proxy: {}", line.unwrap_or("-"))
                })
                .collect();
            panic!(
                "{} of {SESSIONS} churn sessions went wrong, e.g.:\n  {}",
                failures.len(),
                shown.join("\n  ")
            );
        }
        assert!(
            took < Duration::from_secs(30),
            "1,000 sessions took {took:?}"
        );

        let want = |ending| {
            (0..SESSIONS)
                .filter(|&id| Plan::new(id).ending == ending)
                .count()
        };
        for (reason, n) in [
            ("reason=client-eof", want(HALF_CLOSE) + 1), // + the warm-up
            ("reason=client-reset", want(CLIENT_RESET)),
            ("reason=upstream-reset", want(UPSTREAM_RESET)),
        ] {
            let count = || proxy.stderr().matches(reason).count();
            assert!(
                wait_for(Duration::from_secs(2), || count() == n),
                "{} close lines with {reason}, want {n}",
                count()
            );
        }
        dispatch_echo_once(proxy.addr());
        proxy.assert_quiescent(baseline, Duration::from_secs(3));
        up.assert_no_handler_panics();
    });
}
