//! HTTP CONNECT clients (RFC 9110 §9.3.6): one request head, then the tunnel. The
//! destination comes from the request target; credentials from `Proxy-Authorization:
//! Basic`. Every refusal has its status and `Proxy-Status` error (RFC 9209).

use super::step::{Failure, Step};
use crate::core::credentials::Credentials;
use crate::core::reason::CloseReason;
use crate::core::stream::ConnectFailure;
use crate::proto::connect::{parse, response, Parsed, ProxyError, Status};

/// The realm of `Proxy-Authenticate`.
const REALM: &str = "tcpbridge";

/// The step for the head received so far.
pub(super) fn step(buf: &[u8], users: &Credentials) -> Step {
    match parse(buf) {
        Parsed::Incomplete => Step::More,
        Parsed::Bad { status, reason } => Step::Refuse {
            answer: Some(response(status, Some(ProxyError::HttpRequestError), REALM)),
            reason: CloseReason::Handshake,
            why: reason,
        },
        Parsed::Request(r) => {
            let allowed = users.is_empty()
                || r.credentials
                    .as_ref()
                    .is_some_and(|(u, p)| users.verify(u.as_bytes(), p.as_bytes()));
            if allowed {
                Step::Request {
                    used: r.len,
                    host: r.host,
                    port: r.port,
                }
            } else {
                Step::Refuse {
                    answer: Some(failure(Failure::Auth)),
                    reason: CloseReason::Auth,
                    why: if r.credentials.is_some() {
                        "wrong credentials"
                    } else {
                        "no credentials"
                    },
                }
            }
        }
    }
}

/// `200 Connection established`.
pub(super) fn success() -> Vec<u8> {
    response(Status::Established, None, REALM)
}

/// The status and `Proxy-Status` error of a failure.
pub(super) fn failure(failure: Failure) -> Vec<u8> {
    let (status, error) = match failure {
        Failure::Auth => (Status::AuthRequired, ProxyError::HttpRequestDenied),
        Failure::Denied => (Status::Forbidden, ProxyError::DestinationIpProhibited),
        Failure::NotFound => (Status::BadGateway, ProxyError::DnsError),
        Failure::ResolveTimeout => (Status::GatewayTimeout, ProxyError::DnsTimeout),
        Failure::Connect(ConnectFailure::Refused) => {
            (Status::BadGateway, ProxyError::ConnectionRefused)
        }
        Failure::Connect(ConnectFailure::Timeout) => {
            (Status::GatewayTimeout, ProxyError::ConnectionTimeout)
        }
        Failure::Connect(ConnectFailure::Error) => {
            (Status::BadGateway, ProxyError::DestinationUnavailable)
        }
        Failure::Unroutable => (Status::BadGateway, ProxyError::DestinationIpUnroutable),
    };
    response(status, Some(error), REALM)
}
