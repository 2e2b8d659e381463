//! A session's preamble: what a mode exchanges with the upstream before relaying,
//! reduced to bytes (written first) and a reply (read one byte at a time, so no relayed
//! byte is ever consumed). The session knows no protocol beyond this.

use std::io::IoSliceMut;

use crate::core::pipe::Bytes;
use crate::core::stream::{classify, retry, ConnectFailure, ConnectStatus, Io, Peer, Stream};

/// What one byte of the awaited reply means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Not the answer yet (a keep-alive): read on.
    Skip,
    /// The upstream accepts: relaying starts with the next byte.
    Accepted,
    /// The upstream refuses: a refused connect.
    Refused,
    /// Not a valid answer: a failed connect.
    Invalid,
}

/// Reads one byte of an awaited reply.
pub type ReplyCheck = fn(u8) -> Reply;

/// A mode's handshake with the upstream, as the session sees it.
#[derive(Debug, Clone, Default)]
pub struct Preamble {
    /// Written to the upstream before any client byte (as soon as it takes writes).
    pub to_upstream: Option<Bytes>,
    /// Read from the upstream, one byte at a time, before relaying: no relayed byte is
    /// ever consumed by it.
    pub reply: Option<ReplyCheck>,
    /// Written to the client before any upstream byte, once the upstream is connected.
    pub to_client: Option<Bytes>,
    /// Written to the client (best effort) before closing when the connect fails (a
    /// fixed frame or message).
    pub on_failure: Option<&'static [u8]>,
}

/// Reads the awaited reply from `upstream` one byte at a time while it is readable:
/// connected once `check` accepts a byte, failed when it refuses one or the stream ends,
/// pending until then.
pub(super) fn read_reply<S: Stream>(upstream: &mut Peer<S>, check: ReplyCheck) -> ConnectStatus {
    while upstream.ready.readable {
        let mut byte = [0u8; 1];
        let stream = &mut upstream.stream;
        let read = retry(|| stream.read_vectored(&mut [IoSliceMut::new(&mut byte)]));
        match classify(read) {
            Io::Moved(_) => match check(byte[0]) {
                Reply::Skip => continue,
                Reply::Accepted => return ConnectStatus::Connected,
                Reply::Refused => return ConnectStatus::Failed(ConnectFailure::Refused),
                Reply::Invalid => return ConnectStatus::Failed(ConnectFailure::Error),
            },
            Io::Blocked => upstream.ready.readable = false,
            Io::Eof | Io::Reset | Io::Error(_) => {
                return ConnectStatus::Failed(ConnectFailure::Error)
            }
        }
    }
    ConnectStatus::Pending
}
