//! TLS 1.3 over a TCP connection, as a core [`Stream`]: the tunnel between agent and
//! relay (see `docs/tls.md`).
//!
//! A [`TlsStream`] owns a [`Conn`] and a rustls connection, which is sans-IO: records are
//! read from the socket with `read_tls`, decrypted with `process_new_packets`, and written
//! with `write_tls`, all non-blocking, in the readiness loop's rhythm. The pipe above
//! sees plaintext only. How the stream keeps the loop's edge-triggered rules:
//!
//! - **Reads** return plaintext, and fill the caller's buffers until they are full or
//!   the socket answers `WouldBlock`: a short read therefore still means "the socket is
//!   drained", as the pipe assumes. `Ok(0)` only after the peer's `close_notify`. A TCP
//!   FIN without `close_notify` is [`io::ErrorKind::ConnectionAborted`] (a reset to the
//!   core): the end is unauthenticated, so it may be an attacker's truncation, and the
//!   other side must not see a clean FIN for it. A TCP reset stays a reset. A bad
//!   record (forged, replayed, garbage) or the peer's alert is
//!   [`io::ErrorKind::InvalidData`], an error to the core; our alert goes out first, and
//!   plaintext decrypted in the same call from records before the bad one is dropped
//!   with the stream (the session closes on the error either way). While records
//!   stream in, ciphertext is read up to 64 KiB per system call (rustls alone reads one
//!   record per call), never more than the caller's room takes as plaintext, so nothing
//!   is left over between calls.
//! - **Writes** report only bytes whose records are all in the kernel. When the socket
//!   fills halfway through, the bytes rustls already took are held back (`WouldBlock`,
//!   or a short count for the ones before them) and reported by a later call once their
//!   records are out; that call must offer the same bytes first, as a pipe does (it
//!   retries from its ring; this is OpenSSL's `SSL_write` rule). So a pipe with nothing
//!   left in its ring never leaves records stranded in rustls, and `WouldBlock` always
//!   comes from the socket, whose next writable edge wakes the pipe.
//! - **`shutdown_write`** sends `close_notify`, then the TCP FIN once the alert is out.
//!   If the socket cannot take the alert now it answers `WouldBlock`, and the next call
//!   (on the next writable edge) finishes the job.
//! - **The handshake** is driven by [`TlsStream::handshake`] before the stream is handed
//!   to the tunnel code; reads and writes before it completes drive it too.
//!
//! Records rustls writes on its own after the handshake (an alert, a key update) go out
//! with the next read or write; none is needed for the peer to make progress.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};

use mio::net::TcpStream;
use rustls::server::Acceptor;
use rustls::Connection;

use super::net::Conn;
use crate::core::stream::{retry, Stream};

mod identity;

pub use identity::{AgentTls, Fingerprint, RelayTls, TlsError, Trust};

/// Bytes an agent may send before the relay's handshake completes: its ClientHello is
/// about 300 bytes and its second flight under 100, so this is generous, and it bounds
/// what a silent or hostile peer makes the relay hold (rustls alone allows 64 KiB per
/// handshake message).
pub const RELAY_HANDSHAKE_BYTES: usize = 16 * 1024;

/// The label of RFC 9266's `tls-exporter` channel binding.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

/// Where a handshake stands after [`TlsStream::handshake`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Complete, and every handshake byte of ours is in the kernel. Plaintext may already
    /// wait inside the stream: treat it as readable and writable from here on.
    Done,
    /// Waiting for the socket: call again on its next event.
    Pending,
}

/// Why a handshake failed.
#[derive(Debug)]
pub enum HandshakeError {
    /// The peer closed (FIN) before the handshake completed.
    Closed,
    /// The peer reset the connection.
    Reset,
    /// A TLS failure: garbage or a malformed record, a refused key or certificate, an
    /// alert from the peer. The alert for it, if any, has been sent.
    Tls(rustls::Error),
    /// Any other socket error.
    Io(io::Error),
}

impl HandshakeError {
    fn from_io(e: io::Error) -> HandshakeError {
        match crate::core::stream::classify_error(&e) {
            crate::core::stream::Io::Reset => HandshakeError::Reset,
            _ => HandshakeError::Io(e),
        }
    }

    /// The same failure as an `io::Error` (for reads and writes that drove it).
    pub fn into_io(self) -> io::Error {
        match self {
            HandshakeError::Closed => truncated(),
            HandshakeError::Reset => io::ErrorKind::ConnectionReset.into(),
            HandshakeError::Tls(e) => io::Error::new(io::ErrorKind::InvalidData, e),
            HandshakeError::Io(e) => e,
        }
    }
}

impl std::error::Error for HandshakeError {}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Closed => write!(f, "closed during the TLS handshake"),
            HandshakeError::Reset => write!(f, "reset during the TLS handshake"),
            HandshakeError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            HandshakeError::Io(e) => write!(f, "TLS handshake failed: {e}"),
        }
    }
}

/// What is left of `room` after `n` more handshake bytes; an error once it is spent.
fn spend(room: usize, n: usize) -> Result<usize, HandshakeError> {
    match room.checked_sub(n) {
        Some(left) if left > 0 => Ok(left),
        _ => Err(HandshakeError::Tls(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::HandshakePayloadTooLarge,
        ))),
    }
}

/// The error of a TCP FIN that came without `close_notify`.
fn truncated() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "TLS stream truncated: TCP FIN without close_notify",
    )
}

enum State {
    /// The relay before the ClientHello: which configuration answers depends on it.
    Accepting(Box<Acceptor>, RelayTls),
    /// The handshake or the relayed bytes.
    Live(Box<Connection>),
    /// The handshake failed; nothing more is read or written.
    Failed,
}

/// A TLS 1.3 connection over TCP: client (agent) or server (relay).
pub struct TlsStream {
    conn: Conn,
    state: State,
    /// The relay presents a raw public key (for [`TlsStream::peer_fingerprint`]).
    raw: bool,
    /// Bytes the peer may still send before the handshake completes.
    hello_room: usize,
    /// Bytes of the peer's handshake received so far.
    received: usize,
    /// Plaintext bytes rustls took whose records are not all in the kernel yet: reported
    /// by the next write that finds them flushed.
    taken: usize,
    /// Record bytes waiting in rustls after the last flush that the socket refused.
    queued: usize,
    /// `close_notify` is queued.
    closing: bool,
    /// The TCP FIN is sent.
    fin_sent: bool,
    /// The last read of records brought half a record or more: the next ones read ahead
    /// (see `stream.rs`); a small read ends it.
    bulk: bool,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("conn", &self.conn)
            .field("taken", &self.taken)
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

/// The socket as `Read` and `Write` for rustls, retrying `Interrupted`.
struct Socket<'a>(&'a mut Conn);

impl Read for Socket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        retry(|| self.0.read_vectored(&mut [IoSliceMut::new(buf)]))
    }
}

impl Write for Socket<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        retry(|| self.0.write_vectored(&[IoSlice::new(buf)]))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        retry(|| self.0.write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsStream {
    /// The relay's side of an accepted connection.
    pub fn server(conn: Conn, relay: &RelayTls) -> TlsStream {
        let mut stream =
            TlsStream::with(conn, State::Accepting(Box::default(), relay.clone()), false);
        stream.hello_room = RELAY_HANDSHAKE_BYTES;
        stream
    }

    /// The agent's side of a connection whose connect has completed
    /// ([`Stream::connect_status`] said `Connected`).
    pub fn client(conn: Conn, agent: &AgentTls) -> Result<TlsStream, TlsError> {
        let tls = rustls::ClientConnection::new(agent.config.clone(), agent.name.clone())?;
        let state = State::Live(Box::new(Connection::Client(tls)));
        Ok(TlsStream::with(conn, state, agent.raw))
    }

    fn with(conn: Conn, state: State, raw: bool) -> TlsStream {
        TlsStream {
            conn,
            state,
            raw,
            hello_room: usize::MAX,
            received: 0,
            taken: 0,
            queued: 0,
            closing: false,
            fin_sent: false,
            bulk: false,
        }
    }

    /// Bytes of the peer's handshake received so far: how far a handshake got (the
    /// relay evicts the one that got least far when its slots are full).
    pub fn received(&self) -> usize {
        self.received
    }

    /// The TCP connection (socket options).
    pub fn tcp(&self) -> &Conn {
        &self.conn
    }

    /// The mio stream, for registration.
    pub fn source(&mut self) -> &mut TcpStream {
        self.conn.source()
    }

    /// Moves the handshake on as far as the socket allows, never blocking.
    pub fn handshake(&mut self) -> Result<Progress, HandshakeError> {
        if let State::Accepting(..) = self.state {
            if !self.accept()? {
                return Ok(Progress::Pending);
            }
        }
        let State::Live(tls) = &mut self.state else {
            return Err(HandshakeError::Tls(rustls::Error::HandshakeNotComplete));
        };
        let mut socket = Socket(&mut self.conn);
        loop {
            let mut moved = false;
            while tls.wants_write() {
                match tls.write_tls(&mut socket) {
                    Ok(0) => return Err(HandshakeError::Io(io::ErrorKind::WriteZero.into())),
                    Ok(_) => moved = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(HandshakeError::from_io(e)),
                }
            }
            if !tls.is_handshaking() {
                if !tls.wants_write() {
                    return Ok(Progress::Done);
                }
            } else {
                match tls.read_tls(&mut socket) {
                    Ok(0) => return Err(HandshakeError::Closed),
                    Ok(n) => {
                        moved = true;
                        self.received = self.received.saturating_add(n);
                        self.hello_room = spend(self.hello_room, n)?;
                        if let Err(e) = tls.process_new_packets() {
                            // Best effort: the alert rustls queued for it.
                            let _ = tls.write_tls(&mut socket);
                            return Err(HandshakeError::Tls(e));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(HandshakeError::from_io(e)),
                }
            }
            if !moved {
                return Ok(Progress::Pending);
            }
        }
    }

    /// Reads the ClientHello and picks the relay's configuration for it; `Ok(false)`
    /// while the hello is incomplete.
    fn accept(&mut self) -> Result<bool, HandshakeError> {
        let mut socket = Socket(&mut self.conn);
        loop {
            let State::Accepting(acceptor, _) = &mut self.state else {
                return Ok(true);
            };
            match acceptor.read_tls(&mut socket) {
                Ok(0) => return Err(HandshakeError::Closed),
                Ok(n) => {
                    self.received = self.received.saturating_add(n);
                    self.hello_room = spend(self.hello_room, n)?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(HandshakeError::from_io(e)),
            }
            let accepted = match acceptor.accept() {
                Ok(None) => continue,
                Ok(Some(accepted)) => accepted,
                Err((e, mut alert)) => {
                    self.state = State::Failed;
                    let _ = alert.write_all(&mut socket);
                    return Err(HandshakeError::Tls(e));
                }
            };
            let State::Accepting(_, relay) = std::mem::replace(&mut self.state, State::Failed)
            else {
                return Ok(true);
            };
            let config = relay.config_for(&accepted.client_hello());
            match accepted.into_connection(config) {
                Ok(tls) => {
                    self.state = State::Live(Box::new(Connection::Server(tls)));
                    return Ok(true);
                }
                Err((e, mut alert)) => {
                    let _ = alert.write_all(&mut socket);
                    return Err(HandshakeError::Tls(e));
                }
            }
        }
    }

    fn live(&self) -> Option<&Connection> {
        match &self.state {
            State::Live(tls) if !tls.is_handshaking() => Some(tls),
            _ => None,
        }
    }

    /// The key exchange the handshake agreed on.
    #[cfg(test)]
    fn kx_group(&self) -> Option<rustls::NamedGroup> {
        Some(self.live()?.negotiated_key_exchange_group()?.name())
    }

    /// The cipher suite the handshake agreed on.
    #[cfg(test)]
    fn suite(&self) -> Option<rustls::CipherSuite> {
        Some(self.live()?.negotiated_cipher_suite()?.suite())
    }

    /// RFC 9266 `tls-exporter`: 32 bytes exported under [`EXPORTER_LABEL`] with no
    /// context, the same on both ends of one TLS connection and different on any other.
    /// `None` before the handshake completes.
    pub fn exporter(&self) -> Option<[u8; 32]> {
        self.live()?
            .export_keying_material([0u8; 32], EXPORTER_LABEL, None)
            .ok()
    }

    /// The agent's record of the relay's key (see [`Fingerprint`]); `None` on the relay
    /// (agents present no key) and before the handshake completes.
    pub fn peer_fingerprint(&self) -> Option<Fingerprint> {
        let entry = self.live()?.peer_certificates()?.first()?;
        identity::presented_fingerprint(entry, self.raw)
    }

    /// The live connection after driving the handshake; `WouldBlock` while it is pending.
    fn ready(&mut self) -> io::Result<()> {
        if self.live().is_none() {
            match self.handshake() {
                Ok(Progress::Done) => {}
                Ok(Progress::Pending) => return Err(io::ErrorKind::WouldBlock.into()),
                Err(e) => return Err(e.into_io()),
            }
        }
        Ok(())
    }
}

mod stream;

#[cfg(test)]
mod tests;
