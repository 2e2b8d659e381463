//! Test payloads: a small deterministic PRNG, a position-dependent byte
//! pattern, sha256 digests and a full-duplex transfer helper used by both the
//! client and the upstream side of a test.

use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::OnceLock;
use std::thread;

use super::Gate;

/// xorshift64*: deterministic, dependency-free randomness for sizes and data.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

/// Length of the random pool the patterns are cut from; a prime-ish length so
/// chunk boundaries never line up with the pool's period.
const POOL_LEN: usize = (1 << 20) + 7;

fn pool() -> &'static [u8] {
    static POOL: OnceLock<Vec<u8>> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut rng = Rng::new(0x7cb_0001);
        let mut v = Vec::with_capacity(POOL_LEN + 8);
        while v.len() < POOL_LEN {
            v.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        v.truncate(POOL_LEN);
        v
    })
}

/// `len` bytes of the stream identified by `seed` (each seed starts at a
/// different pool offset, so the two directions carry different bytes).
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let p = pool();
    let mut off = (seed as usize).wrapping_mul(7919) % POOL_LEN;
    while out.len() < len {
        let take = (len - out.len()).min(POOL_LEN - off);
        out.extend_from_slice(&p[off..off + take]);
        off = (off + take) % POOL_LEN;
    }
    out
}

/// sha256 of a byte slice.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Short hex form of a digest for messages.
pub fn hex(d: &[u8; 32]) -> String {
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes stream `seed` in random chunk sizes (1..=`max_chunk`), possibly in
/// several steps, hashing what it wrote.
pub struct PatternWriter {
    rng: Rng,
    hash: Sha256,
    off: usize,
    max_chunk: usize,
}

impl PatternWriter {
    pub fn new(seed: u64, max_chunk: usize) -> PatternWriter {
        PatternWriter {
            rng: Rng::new(seed ^ 0x5eed),
            hash: Sha256::new(),
            off: (seed as usize).wrapping_mul(7919) % POOL_LEN,
            max_chunk,
        }
    }

    /// Writes the next `len` bytes of the stream.
    pub fn send(&mut self, w: &mut impl Write, len: u64) -> io::Result<()> {
        let p = pool();
        let mut left = len;
        while left > 0 {
            let n = self
                .rng
                .range(1, self.max_chunk)
                .min(left as usize)
                .min(POOL_LEN - self.off);
            let chunk = &p[self.off..self.off + n];
            w.write_all(chunk)?;
            self.hash.update(chunk);
            self.off = (self.off + n) % POOL_LEN;
            left -= n as u64;
        }
        Ok(())
    }

    /// sha256 of everything written.
    pub fn finish(self) -> [u8; 32] {
        self.hash.finalize().into()
    }
}

/// Writes `len` bytes of stream `seed` in random chunk sizes (1..=`max_chunk`)
/// and returns the sha256 of what was written (= `sha256(&pattern(seed, len))`).
pub fn send_pattern(
    w: &mut impl Write,
    seed: u64,
    len: u64,
    max_chunk: usize,
) -> io::Result<[u8; 32]> {
    let mut pw = PatternWriter::new(seed, max_chunk);
    pw.send(w, len)?;
    Ok(pw.finish())
}

/// How a read loop ended.
#[derive(Debug)]
pub enum End {
    /// `read` returned `Ok(0)`: FIN.
    Eof,
    /// `ConnectionReset`: RST.
    Reset,
    /// The read timeout expired first.
    TimedOut,
    /// Any other error.
    Error(io::Error),
}

impl End {
    fn from_err(e: io::Error) -> End {
        match e.kind() {
            io::ErrorKind::ConnectionReset => End::Reset,
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => End::TimedOut,
            _ => End::Error(e),
        }
    }
}

/// Reads until EOF or an error, with random read sizes; returns the byte count,
/// their sha256 and how it ended. Each read is bounded by the socket's read
/// timeout.
pub fn recv_hash(r: &mut impl Read, seed: u64) -> (u64, [u8; 32], End) {
    let mut rng = Rng::new(seed ^ 0x4ead);
    let mut buf = vec![0u8; 64 * 1024];
    let mut h = Sha256::new();
    let mut total = 0u64;
    loop {
        let n = rng.range(1, buf.len());
        match r.read(&mut buf[..n]) {
            Ok(0) => return (total, h.finalize().into(), End::Eof),
            Ok(k) => {
                h.update(&buf[..k]);
                total += k as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (total, h.finalize().into(), End::from_err(e)),
        }
    }
}

/// Reads until EOF or an error (at most `limit` bytes kept); returns the bytes
/// and how it ended.
pub fn recv_all(r: &mut impl Read, limit: usize) -> (Vec<u8>, End) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (out, End::Eof),
            Ok(k) => {
                out.extend_from_slice(&buf[..k]);
                assert!(out.len() <= limit, "received more than {limit} bytes");
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (out, End::from_err(e)),
        }
    }
}

/// Result of one side of a full-duplex [`exchange`].
#[derive(Debug)]
pub struct Flow {
    pub sent: u64,
    pub sent_hash: [u8; 32],
    pub received: u64,
    pub received_hash: [u8; 32],
    /// How the receiving half ended (EOF expected).
    pub end: End,
    /// Error of the sending half, if any.
    pub send_error: Option<String>,
}

/// Full duplex on one socket: a thread sends `send_len` bytes of stream
/// `seed` in random chunk sizes and then half-closes (`shutdown(Write)`),
/// while this thread reads to EOF with random read sizes.
pub fn exchange(stream: TcpStream, seed: u64, send_len: u64, max_chunk: usize) -> Flow {
    exchange_with_pause(stream, seed, send_len, max_chunk, None)
}

/// [`exchange`] whose sender stops after `pause.0` bytes until `pause.1`
/// opens (bounded by [`super::IO_TIMEOUT`]), so the session is certainly
/// still in flight while the test does something (e.g. sends a signal).
pub fn exchange_with_pause(
    stream: TcpStream,
    seed: u64,
    send_len: u64,
    max_chunk: usize,
    pause: Option<(u64, Gate)>,
) -> Flow {
    let mut writer = stream.try_clone().expect("try_clone for the writer half");
    let sender = thread::spawn(move || {
        let mut pw = PatternWriter::new(seed, max_chunk);
        let first = pause
            .as_ref()
            .map_or(send_len, |(at, _)| (*at).min(send_len));
        pw.send(&mut writer, first)?;
        if let Some((_, gate)) = pause {
            if !gate.wait(super::IO_TIMEOUT) {
                return Err(io::Error::other("pause gate never opened"));
            }
        }
        pw.send(&mut writer, send_len - first)?;
        writer.shutdown(Shutdown::Write)?;
        Ok(pw.finish())
    });
    let mut reader = stream;
    let (received, received_hash, end) = recv_hash(&mut reader, seed);
    let sent = sender.join().expect("sender thread panicked");
    let (sent_hash, send_error) = match sent {
        Ok(h) => (h, None),
        Err(e) => ([0; 32], Some(e.to_string())),
    };
    Flow {
        sent: send_len,
        sent_hash,
        received,
        received_hash,
        end,
        send_error,
    }
}

/// Asserts that what `from` sent is exactly what `to` received, both ways.
pub fn assert_flows_match(client: &Flow, upstream: &Flow) {
    assert!(
        client.send_error.is_none(),
        "client send failed: {:?}",
        client.send_error
    );
    assert!(
        upstream.send_error.is_none(),
        "upstream send failed: {:?}",
        upstream.send_error
    );
    assert!(
        matches!(client.end, End::Eof),
        "client read ended with {:?}, want EOF",
        client.end
    );
    assert!(
        matches!(upstream.end, End::Eof),
        "upstream read ended with {:?}, want EOF",
        upstream.end
    );
    assert_eq!(upstream.received, client.sent, "bytes client -> upstream");
    assert_eq!(client.received, upstream.sent, "bytes upstream -> client");
    assert!(
        upstream.received_hash == client.sent_hash,
        "client -> upstream sha256 differs: sent {} received {}",
        hex(&client.sent_hash),
        hex(&upstream.received_hash)
    );
    assert!(
        client.received_hash == upstream.sent_hash,
        "upstream -> client sha256 differs: sent {} received {}",
        hex(&upstream.sent_hash),
        hex(&client.received_hash)
    );
}
