//! Both ends of a soak session on one non-blocking socket each, driven by
//! `poll(2)` so that a peer sends and receives at once and never deadlocks on a
//! full buffer: the client (connects through the proxy, sends the header and its
//! payload) and the upstream (reads the header, derives the plan, answers with
//! its own payload). Each peer checks every byte it receives against the seeded
//! pool: a prefix for a reset ending, the whole payload then EOF for a FIN ending.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::SockRef;

use crate::plan::{Ending, Plan, HEADER_LEN};
use crate::tally::{Side, Tally};

/// A peer that sees no progress for this long gives the session up (a stall).
const STALL: Duration = Duration::from_secs(30);

/// How the receiving direction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Still open: the side that resets stops here.
    Open,
    Eof,
    Reset,
    Stalled,
}

/// What one peer saw of one session.
struct Seen {
    end: End,
    received: usize,
    sent: usize,
    /// A byte that differs from the pool, or more bytes than the payload.
    wrong: bool,
}

/// What a peer does with its socket.
struct Role<'a> {
    send: &'a [u8],
    /// Payload bytes to send before stopping (`send.len()` unless it resets).
    send_stop: usize,
    /// Reset (SO_LINGER 0) as soon as `send_stop` bytes are sent.
    reset_after_send: bool,
    /// `shutdown(WR)` as soon as everything is sent (the side that FINs first).
    fin_after_send: bool,
    expected: &'a [u8],
}

/// Sends and receives per `role` until the receiving direction has ended and
/// nothing is left to send (or the reset point is reached).
fn exchange(stream: &TcpStream, role: &Role) -> Seen {
    let fd = stream.as_raw_fd();
    let mut seen = Seen {
        end: End::Open,
        received: 0,
        sent: 0,
        wrong: false,
    };
    let mut read_done = false;
    let mut write_closed = false;
    let mut shut = false;
    let mut buf = [0u8; 64 * 1024];
    let mut reader = stream;
    let mut writer = stream;
    loop {
        let want_write = seen.sent < role.send_stop && !write_closed;
        if role.reset_after_send && !want_write {
            return seen;
        }
        if !want_write && role.fin_after_send && !shut && !write_closed {
            let _ = stream.shutdown(Shutdown::Write);
            shut = true;
        }
        if read_done && !want_write {
            return seen;
        }
        let mut events = 0;
        if !read_done {
            events |= libc::POLLIN;
        }
        if want_write {
            events |= libc::POLLOUT;
        }
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the length given.
        let ready = unsafe { libc::poll(&mut pfd, 1, STALL.as_millis() as libc::c_int) };
        if ready == 0 {
            seen.end = End::Stalled;
            return seen;
        }
        if ready < 0 {
            continue; // EINTR
        }
        let readable = pfd.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0;
        if !read_done && readable {
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => {
                        seen.end = End::Eof;
                        read_done = true;
                        break;
                    }
                    Ok(n) => {
                        let end = seen.received + n;
                        if end > role.expected.len()
                            || buf[..n] != role.expected[seen.received..end]
                        {
                            seen.wrong = true;
                        }
                        seen.received = end;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        seen.end = End::Reset;
                        read_done = true;
                        break;
                    }
                }
            }
        }
        if want_write && pfd.revents & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) != 0 {
            match writer.write(&role.send[seen.sent..role.send_stop]) {
                Ok(n) => seen.sent += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(_) => write_closed = true,
            }
        }
    }
}

/// Closes `stream` with an RST instead of a FIN.
fn abort(stream: TcpStream) {
    let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// Files what `side` saw against what the plan says it must see.
fn judge(tally: &Tally, side: Side, plan: &Plan, seen: &Seen, expected_len: usize) {
    tally.add_bytes(side, seen.received as u64, seen.sent as u64);
    if seen.wrong {
        tally.mismatch(side);
    }
    match seen.end {
        End::Stalled => tally.stall(side),
        // A FIN ending must deliver the whole payload, then EOF.
        End::Eof if !plan.ending.is_reset() && seen.received != expected_len => {
            tally.truncated(side)
        }
        End::Reset if !plan.ending.is_reset() => tally.unexpected_reset(side),
        End::Open | End::Eof | End::Reset => {}
    }
}

/// One whole session from the client's side: connect through `proxy`, send the
/// header and the payload, receive, end as planned.
pub fn client_session(proxy: SocketAddr, plan: &Plan, pool: &[u8], tally: &Tally) {
    let mut stream = match TcpStream::connect_timeout(&proxy, Duration::from_secs(10)) {
        Ok(stream) => stream,
        Err(_) => return tally.connect_error(),
    };
    let ready = stream
        .set_nodelay(true)
        .and_then(|()| stream.write_all(&Plan::header(plan.number)))
        .and_then(|()| stream.set_nonblocking(true));
    if ready.is_err() {
        return tally.connect_error();
    }
    let resets = plan.ending == Ending::ClientRst;
    let send = plan.up.bytes(pool);
    let expected = plan.down.bytes(pool);
    let role = Role {
        send,
        send_stop: if resets { plan.reset_at } else { send.len() },
        reset_after_send: resets,
        fin_after_send: plan.ending == Ending::ClientFin,
        expected,
    };
    let seen = exchange(&stream, &role);
    judge(tally, Side::Client, plan, &seen, expected.len());
    if resets || seen.end == End::Stalled {
        abort(stream);
    }
    tally.session_done(plan.ending);
}

/// Reads the header (exactly `HEADER_LEN` bytes, nothing more).
fn read_header(stream: &mut TcpStream) -> io::Result<Option<[u8; HEADER_LEN]>> {
    stream.set_read_timeout(Some(STALL))?;
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match stream.read(&mut header[got..]) {
            Ok(0) => return Ok(None),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(e)
            }
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(header))
}

/// One whole session from the upstream's side, on an accepted connection.
pub fn upstream_session(mut stream: TcpStream, seed: u64, pool: &[u8], tally: &Tally) {
    let header = match read_header(&mut stream) {
        Ok(Some(header)) => header,
        // Only a client that reset early may leave no header.
        Ok(None) => return tally.headerless(),
        Err(_) => return tally.stall(Side::Upstream),
    };
    let Some(number) = Plan::parse_header(&header) else {
        return tally.mismatch(Side::Upstream);
    };
    let plan = Plan::new(seed, number);
    if stream
        .set_nodelay(true)
        .and(stream.set_nonblocking(true))
        .is_err()
    {
        return tally.stall(Side::Upstream);
    }
    let resets = plan.ending == Ending::UpstreamRst;
    let send = plan.down.bytes(pool);
    let expected = plan.up.bytes(pool);
    let role = Role {
        send,
        send_stop: if resets { plan.reset_at } else { send.len() },
        reset_after_send: resets,
        fin_after_send: plan.ending == Ending::UpstreamFin,
        expected,
    };
    let seen = exchange(&stream, &role);
    judge(tally, Side::Upstream, &plan, &seen, expected.len());
    if resets || seen.end == End::Stalled {
        abort(stream);
    }
    tally.upstream_done();
}
