//! SOCKS5 clients (RFC 1928, RFC 1929): a greeting, credentials when the listener has
//! users (never "no authentication" then), and a CONNECT request. Messages may arrive
//! in any number of segments or coalesced: each step uses exactly its message.

use std::net::SocketAddr;

use super::step::{Failure, Step};
use crate::core::credentials::Credentials;
use crate::core::reason::CloseReason;
use crate::core::stream::ConnectFailure;
use crate::proto::socks::{
    auth_reply, credentials, greeting, method_reply, reply, request, Method, Read, Reply,
};

/// The longest message: credentials, `01 ULEN USER PLEN PASS`.
pub(super) const MAX_MESSAGE: usize = 3 + 255 + 255;

/// The message a client sends next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::server) enum Next {
    Greeting,
    Credentials,
    Request,
}

/// The step for the current message received so far; moves `next` on.
pub(super) fn step(next: &mut Next, buf: &[u8], users: &Credentials) -> Step {
    let refuse = |answer: Option<Reply>, reason, why| Step::Refuse {
        answer: answer.map(|r| reply(r, None)),
        reason,
        why,
    };
    match *next {
        Next::Greeting => match greeting(buf, !users.is_empty()) {
            Read::Incomplete => Step::More,
            Read::Bad(r, why) => refuse(r, CloseReason::Handshake, why),
            Read::Done(Method::NoneAcceptable, _) => Step::Refuse {
                answer: Some(method_reply(Method::NoneAcceptable).to_vec()),
                reason: CloseReason::Auth,
                why: "no acceptable method offered",
            },
            Read::Done(method, used) => {
                *next = match method {
                    Method::Password => Next::Credentials,
                    _ => Next::Request,
                };
                Step::Answer {
                    used,
                    answer: method_reply(method).to_vec(),
                }
            }
        },
        Next::Credentials => match credentials(buf) {
            Read::Incomplete => Step::More,
            Read::Bad(r, why) => refuse(r, CloseReason::Handshake, why),
            Read::Done((user, pass), used) => {
                if users.verify(&user, &pass) {
                    *next = Next::Request;
                    Step::Answer {
                        used,
                        answer: auth_reply(true).to_vec(),
                    }
                } else {
                    Step::Refuse {
                        answer: Some(failure(Failure::Auth)),
                        reason: CloseReason::Auth,
                        why: "wrong credentials",
                    }
                }
            }
        },
        Next::Request => match request(buf) {
            Read::Incomplete => Step::More,
            Read::Bad(r, why) => refuse(r, CloseReason::Handshake, why),
            Read::Done(r, used) => Step::Request {
                used,
                host: r.host,
                port: r.port,
            },
        },
    }
}

/// Reply `00` with the outbound socket's local address.
pub(super) fn success(bound: Option<SocketAddr>) -> Vec<u8> {
    reply(Reply::Succeeded, bound)
}

/// The reply code of a failure (a failed password gets the RFC 1929 answer).
pub(super) fn failure(failure: Failure) -> Vec<u8> {
    let code = match failure {
        Failure::Auth => return auth_reply(false).to_vec(),
        Failure::Denied => Reply::NotAllowed,
        Failure::NotFound => Reply::HostUnreachable,
        Failure::ResolveTimeout | Failure::Connect(ConnectFailure::Timeout) => Reply::TtlExpired,
        Failure::Connect(ConnectFailure::Refused) => Reply::ConnectionRefused,
        Failure::Connect(ConnectFailure::Error) => Reply::HostUnreachable,
        Failure::Unroutable => Reply::NetworkUnreachable,
    };
    reply(code, None)
}
