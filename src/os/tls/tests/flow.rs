//! Bytes and closes over TLS streams, driven by the pipe's readiness rules: a bit is set
//! by an event and cleared by `WouldBlock` or a short read or write, a held-back write is
//! offered again, and the FIN is retried when it blocks. A stream that breaks the
//! contract stalls here (no event for 10 s), as it would stall a session.

use std::io::{self, IoSlice, IoSliceMut};

use super::*;
use crate::core::stream::ConnectStatus;

/// One end of a transfer, driven as a pipe drives its source and destination.
struct End {
    stream: TlsStream,
    ready: Readiness,
    out: Vec<u8>,
    sent: usize,
    /// Bytes the last write held back: the next write offers at least these again.
    offer: usize,
    fin: bool,
    got: Vec<u8>,
    eof: bool,
    /// Writes that held bytes back (rustls took them, the socket did not).
    held: usize,
    /// Reads after which the stream read records ahead.
    ahead: usize,
}

impl End {
    /// After `Progress::Done` the stream counts as readable and writable.
    fn new(stream: TlsStream, out: Vec<u8>) -> End {
        End {
            stream,
            ready: Readiness {
                readable: true,
                writable: true,
                read_closed: false,
            },
            out,
            sent: 0,
            offer: 0,
            fin: false,
            got: Vec::new(),
            eof: false,
            held: 0,
            ahead: 0,
        }
    }

    /// One write (or FIN) and one read, when the readiness cache allows; true if
    /// anything moved.
    fn step(&mut self, rng: &mut Rng, max_write: usize, max_read: usize) -> bool {
        let mut moved = false;
        let left = self.out.len() - self.sent;
        if self.ready.writable && left > 0 {
            let want = self.offer.max(rng.size(max_write)).min(left);
            let chunk = &self.out[self.sent..self.sent + want];
            // Two slices, as a ring that wraps gives them.
            let (one, two) = chunk.split_at(rng.size(want) - 1);
            match self
                .stream
                .write_vectored(&[IoSlice::new(one), IoSlice::new(two)])
            {
                Ok(n) => {
                    assert!(n > 0 && n <= want, "wrote {n} of {want}");
                    self.sent += n;
                    self.offer = want - n;
                    self.ready.writable &= n == want;
                    self.held += usize::from(self.stream.taken > 0);
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.offer = want;
                    self.ready.writable = false;
                    self.held += usize::from(self.stream.taken > 0);
                }
                Err(e) => panic!("write: {e}"),
            }
        } else if left == 0 && !self.fin {
            match self.stream.shutdown_write() {
                Ok(()) => {
                    self.fin = true;
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.ready.writable = false,
                Err(e) => panic!("shutdown: {e}"),
            }
        }
        if (self.ready.readable || self.ready.read_closed) && !self.eof {
            let room = rng.size(max_read);
            let mut buf = vec![0u8; room];
            let (one, two) = buf.split_at_mut(rng.size(room) - 1);
            let result = self
                .stream
                .read_vectored(&mut [IoSliceMut::new(one), IoSliceMut::new(two)]);
            match result {
                Ok(0) => {
                    self.eof = true;
                    moved = true;
                }
                Ok(n) => {
                    self.got.extend_from_slice(&buf[..n]);
                    self.ahead += usize::from(self.stream.bulk);
                    if n < room && !self.ready.read_closed {
                        self.ready.readable = false;
                    }
                    moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.ready.readable = false,
                Err(e) => panic!("read: {e}"),
            }
        }
        moved
    }

    fn done(&self) -> bool {
        self.fin && self.eof
    }
}

/// Moves both ends' bytes until both have sent FIN and read EOF.
fn transfer(net: &mut Net, ends: &mut [End; 2], seed: u64, max_write: usize, max_read: usize) {
    let mut rng = Rng(seed);
    loop {
        let mut moved = true;
        while moved {
            moved = false;
            for end in ends.iter_mut() {
                moved |= end.step(&mut rng, max_write, max_read);
            }
        }
        if ends.iter().all(End::done) {
            return;
        }
        let mut ready = [ends[0].ready, ends[1].ready];
        net.wait(&mut ready);
        ends[0].ready = ready[0];
        ends[1].ready = ready[1];
    }
}

fn pair(net: &mut Net) -> (TlsStream, TlsStream) {
    let relay = RelayTls::generate().expect("key");
    both(connect(net, &relay, &any()))
}

/// Sends `size` random bytes each way; returns how many writes held bytes back, and how
/// many reads left the stream reading ahead.
fn bulk(seed: u64, size: usize, max_write: usize, max_read: usize) -> (usize, usize) {
    let mut rng = Rng(seed);
    let (to_relay, to_agent) = (rng.bytes(size), rng.bytes(size));
    let mut net = Net::new();
    let (a, r) = pair(&mut net);
    let mut ends = [End::new(a, to_relay.clone()), End::new(r, to_agent.clone())];
    transfer(&mut net, &mut ends, seed, max_write, max_read);
    let [a, r] = ends;
    assert!(r.got == to_relay, "agent → relay differs");
    assert!(a.got == to_agent, "relay → agent differs");
    (a.held + r.held, a.ahead + r.ahead)
}

#[test]
fn four_mib_each_way_in_small_writes_and_reads_arrive_exactly() {
    bulk(1, 4 << 20, 3000, 5000);
}

#[test]
fn large_writes_and_reads_arrive_exactly() {
    let (held, ahead) = bulk(2, 4 << 20, 256 << 10, 256 << 10);
    assert!(held > 0, "the socket filled mid-write: bytes held back");
    assert!(ahead > 0, "large reads read records ahead");
}

/// Rooms around the read-ahead's threshold (one record of ciphertext beyond a record of
/// slack): reads go ahead, or not, from one call to the next.
#[test]
fn reads_around_the_read_ahead_threshold_arrive_exactly() {
    for seed in 4..8 {
        bulk(seed, 1 << 20, 64 << 10, 3 * super::stream::RECORD);
    }
}

#[test]
fn nothing_sent_is_a_clean_close_both_ways() {
    assert_eq!(bulk(3, 0, 1, 1), (0, 0));
}

/// Reads until `Ok(0)` or an error, waiting for events between reads.
fn read_to_end(net: &mut Net, stream: &mut TlsStream, token: usize) -> (Vec<u8>, io::Result<()>) {
    let mut got = Vec::new();
    let mut ready = [Readiness::default(); 2];
    loop {
        let mut buf = [0u8; 1000];
        match stream.read_vectored(&mut [IoSliceMut::new(&mut buf)]) {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                ready[token].readable = false;
                while !ready[token].readable && !ready[token].read_closed {
                    net.wait(&mut ready);
                }
            }
            Err(e) => return (got, Err(e)),
        }
    }
}

fn write_all(net: &mut Net, stream: &mut TlsStream, mut bytes: &[u8]) {
    let mut ready = [Readiness::default(); 2];
    while !bytes.is_empty() {
        match stream.write_vectored(&[IoSlice::new(bytes)]) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => net.wait(&mut ready),
            Err(e) => panic!("write: {e}"),
        }
    }
}

#[test]
fn close_notify_is_eof_and_the_other_direction_goes_on() {
    let mut net = Net::new();
    let (mut a, mut r) = pair(&mut net);
    write_all(&mut net, &mut a, b"ping");
    a.shutdown_write().expect("close_notify and FIN");
    assert_eq!(
        a.write_vectored(&[IoSlice::new(b"late")])
            .map_err(|e| e.kind()),
        Err(io::ErrorKind::BrokenPipe)
    );
    let (got, end) = read_to_end(&mut net, &mut r, 1);
    assert_eq!((got.as_slice(), end.is_ok()), (&b"ping"[..], true));
    let mut buf = [0u8; 8];
    assert_eq!(
        r.read_vectored(&mut [IoSliceMut::new(&mut buf)]).ok(),
        Some(0),
        "EOF stays"
    );
    // Half-closed: the relay still sends.
    write_all(&mut net, &mut r, b"pong");
    r.shutdown_write().expect("close_notify and FIN");
    let (got, end) = read_to_end(&mut net, &mut a, 0);
    assert_eq!((got.as_slice(), end.is_ok()), (&b"pong"[..], true));
}

#[test]
fn a_fin_without_close_notify_is_a_truncation_not_an_eof() {
    let mut net = Net::new();
    let (mut a, mut r) = pair(&mut net);
    write_all(&mut net, &mut a, b"last words");
    drop(a);
    let (got, end) = read_to_end(&mut net, &mut r, 1);
    assert_eq!(got, b"last words", "bytes before the FIN are delivered");
    let e = end.expect_err("truncated");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
    assert_eq!(
        crate::core::stream::classify_error(&e),
        crate::core::stream::Io::Reset,
        "the core treats it as a reset"
    );
}

#[test]
fn a_tcp_reset_is_a_reset() {
    let mut net = Net::new();
    let (mut a, mut r) = pair(&mut net);
    write_all(&mut net, &mut a, b"bye");
    a.abort();
    drop(a);
    let (_, end) = read_to_end(&mut net, &mut r, 1);
    let e = end.expect_err("reset");
    assert_eq!(
        crate::core::stream::classify_error(&e),
        crate::core::stream::Io::Reset,
        "{e}"
    );
}

#[test]
fn unacked_counts_what_the_kernel_holds() {
    let mut net = Net::new();
    let (mut a, _r) = pair(&mut net);
    assert!(a.unacked().is_ok());
    assert!(matches!(a.connect_status(), ConnectStatus::Connected));
    assert_eq!(a.splice_fd(), None, "TLS is never spliced");
}

#[test]
fn a_forged_record_breaks_the_stream_and_the_peer_hears_the_alert() {
    let mut net = Net::new();
    let (mut a, mut r) = pair(&mut net);
    write_all(&mut net, &mut a, b"genuine");
    let mut ready = [Readiness::default(); 2];
    let mut buf = [0u8; 7];
    while r.read_vectored(&mut [IoSliceMut::new(&mut buf)]).is_err() {
        net.wait(&mut ready);
    }
    assert_eq!(&buf, b"genuine");
    // An application-data record under no key of this connection, written under the
    // agent's TLS layer, as an on-path attacker would splice it in.
    let mut forged = vec![0x17, 0x03, 0x03, 0x00, 0x20];
    forged.extend(Rng(9).bytes(0x20));
    assert_eq!(
        a.conn.write_vectored(&[IoSlice::new(&forged)]).ok(),
        Some(forged.len())
    );
    let (got, end) = read_to_end(&mut net, &mut r, 1);
    assert_eq!(got, b"");
    let e = end.expect_err("forged record");
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    let (_, end) = read_to_end(&mut net, &mut a, 0);
    let e = end.expect_err("the relay's alert");
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
}

#[test]
fn a_close_notify_that_finds_no_room_goes_out_on_a_later_call() {
    let mut net = Net::new();
    let (mut a, mut r) = pair(&mut net);
    // Fill the socket (same bytes everywhere, so every retry offers the held ones).
    let chunk = vec![7u8; 64 << 10];
    let mut sent = 0;
    loop {
        match a.write_vectored(&[IoSlice::new(&chunk)]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    let held = a.taken;
    let e = a.shutdown_write().expect_err("no room for the alert");
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    assert!(a.unacked().expect("outq") > 0);
    // The relay drains; the agent calls again on its events until the FIN is out.
    let mut ready = [Readiness::default(); 2];
    let mut got = 0;
    let mut buf = vec![0u8; 64 << 10];
    let mut fin = false;
    let clean = loop {
        match r.read_vectored(&mut [IoSliceMut::new(&mut buf)]) {
            Ok(0) => break true,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !fin {
                    match a.shutdown_write() {
                        Ok(()) => fin = true,
                        Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
                    }
                }
                net.wait(&mut ready);
            }
            Err(e) => panic!("read: {e}"),
        }
    };
    assert!(clean && fin);
    assert_eq!(
        got,
        sent + held,
        "every byte rustls took arrived, then the EOF"
    );
}
