//! What a handshake's dialect says it must do next ([`Step`]), and why a handshake that
//! read its request ends without a tunnel ([`Failure`]): the words `dialect.rs`, its
//! dialects and the handshake share.

use crate::core::reason::CloseReason;
use crate::core::stream::ConnectFailure;
use crate::proto::connect::Host;

/// Why a handshake ends without a tunnel, as the client is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::server) enum Failure {
    /// Credentials missing or wrong.
    Auth,
    /// The policy refused every address of the destination.
    Denied,
    /// The name did not resolve.
    NotFound,
    /// The look-up did not answer in time.
    ResolveTimeout,
    /// The last connect failed.
    Connect(ConnectFailure),
    /// The last connect found no route to the destination's network (ENETUNREACH).
    Unroutable,
}

impl Failure {
    /// The close reason it is counted and logged as.
    pub(in crate::server) fn reason(self) -> CloseReason {
        match self {
            Failure::Auth => CloseReason::Auth,
            Failure::Denied => CloseReason::Denied,
            Failure::NotFound => CloseReason::Resolve,
            Failure::ResolveTimeout => CloseReason::ResolveTimeout,
            Failure::Connect(f) => CloseReason::connect(f),
            Failure::Unroutable => CloseReason::ConnectError,
        }
    }
}

/// What the bytes so far ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::server) enum Step {
    /// The message has not ended: wait for more bytes.
    More,
    /// Consume `used` bytes, write `answer`, and read the next message.
    Answer { used: usize, answer: Vec<u8> },
    /// The request, `used` bytes long: the destination to check, resolve and dial.
    Request { used: usize, host: Host, port: u16 },
    /// Write `answer` (if any) and close for `reason`; `why` is for the debug log.
    Refuse {
        answer: Option<Vec<u8>>,
        reason: CloseReason,
        why: &'static str,
    },
}
