//! The TLS handshake of a tunnel connection in the loop, for relay and agent alike (with
//! the `tls` feature): the stream is driven on each event until its handshake is done,
//! then handed over as a [`Link`] with its channel (the exporter value the proofs are
//! bound to).

use mio::net::TcpStream;

use super::tls::note_first;
use crate::core::tunnel::TunnelEnd;
use crate::os::link::Link;
use crate::os::net::Conn;
use crate::os::tls::{HandshakeError, Progress, TlsStream};
use crate::proto::auth::Channel;

/// A TLS handshake under way.
#[derive(Debug)]
pub(super) struct Handshake {
    /// The stream; taken when the handshake is done.
    tls: Option<Box<TlsStream>>,
}

/// How a handshake failed: the tunnel's end and a line that says why.
#[derive(Debug)]
pub(super) struct Failed {
    pub(super) end: TunnelEnd,
    pub(super) why: String,
}

impl Handshake {
    pub(super) fn new(tls: TlsStream) -> Handshake {
        Handshake {
            tls: Some(Box::new(tls)),
        }
    }

    /// The TCP stream, for deregistration.
    pub(super) fn source(&mut self) -> Option<&mut TcpStream> {
        self.tls.as_mut().map(|t| t.source())
    }

    /// Bytes of the peer's handshake received so far.
    pub(super) fn received(&self) -> usize {
        self.tls.as_ref().map_or(0, |t| t.received())
    }

    /// The TCP connection (while the handshake is under way).
    pub(super) fn tcp(&self) -> Option<&Conn> {
        self.tls.as_ref().map(|t| t.tcp())
    }

    /// Moves the handshake on (noting the peer's first byte in `first`, once it has
    /// come): `Ok(None)` while it waits for the socket; when it is
    /// done, the stream as a link and its channel (treat it as readable and writable:
    /// plaintext may already wait inside it). A failure the peer caused (bytes that are
    /// not TLS, a bad record, an alert) is [`TunnelEnd::TlsFailed`]; a peer that closed
    /// or reset is [`TunnelEnd::Lost`].
    pub(super) fn drive(
        &mut self,
        first: &mut Option<u8>,
    ) -> Result<Option<(Link, Channel)>, Failed> {
        let Some(tls) = self.tls.as_mut() else {
            return Err(lost("no TLS stream".into()));
        };
        // Before the handshake reads it: what the peer's first byte was.
        note_first(first, Some(tls.tcp()));
        match tls.handshake() {
            Ok(Progress::Pending) => Ok(None),
            Ok(Progress::Done) => {
                let exporter = tls.exporter();
                match (self.tls.take(), exporter) {
                    (Some(tls), Some(exporter)) => {
                        Ok(Some((Link::Tls(tls), Channel::Tls(exporter))))
                    }
                    _ => Err(lost("no exporter value after the handshake".into())),
                }
            }
            Err(e @ HandshakeError::Tls(_)) => Err(Failed {
                end: TunnelEnd::TlsFailed,
                why: e.to_string(),
            }),
            Err(e) => Err(lost(e.to_string())),
        }
    }
}

fn lost(why: String) -> Failed {
    Failed {
        end: TunnelEnd::Lost,
        why,
    }
}
