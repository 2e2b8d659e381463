//! The first bytes of a client that must not send a PROXY protocol header (an untrusted
//! source on a listener that accepts them): peeked on its first readable events, before
//! the session reads any. Its own bytes pass and the session goes on; a signature
//! closes the session with `proxy-header`, so a header is never relayed as data; a
//! prefix too short to tell waits for more (the session's idle timeout bounds it).

use crate::core::reason::{CloseReason, Side};
use crate::core::stream::{retry, Readiness};
use crate::proto::proxy::{signature, Signature, SIGNATURE};

use super::Entry;

/// The readiness to pass on for a guarded client's event, or the reason to refuse it.
pub(super) fn check(e: &mut Entry, ready: Readiness) -> Result<Readiness, CloseReason> {
    if !ready.readable {
        return Ok(ready);
    }
    let mut first = [0u8; SIGNATURE.len()];
    let client = e.session.stream(Side::Client);
    let seen = match retry(|| client.peek(&mut first)) {
        Ok(n) => first.get(..n).unwrap_or_default(),
        // Nothing to read yet, or an error the session itself will meet.
        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
            return Ok(Readiness {
                readable: false,
                ..ready
            })
        }
        Err(_) => &[],
    };
    match signature(seen) {
        Signature::Absent => {
            e.guarded = false;
            Ok(ready)
        }
        // A short prefix with the stream still open: wait for the next bytes' edge.
        Signature::Partial if !ready.read_closed => Ok(Readiness {
            readable: false,
            ..ready
        }),
        Signature::Partial => {
            e.guarded = false;
            Ok(ready)
        }
        Signature::Present => Err(CloseReason::ProxyHeader),
    }
}
