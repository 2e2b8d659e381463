//! SOCKS5 (RFC 1928) with username/password authentication (RFC 1929), the server's side:
//! readers for the three client messages, each run on everything received so far, and
//! builders for the answers. The caller keeps which message is next:
//!
//! ```text
//! client                               proxy
//!   05 n methods...            ──▶     greeting()  ─▶ method_reply(choice)
//!   01 ulen user plen pass     ──▶     credentials() (only when 02 was chosen)
//!                                                   ─▶ auth_reply(ok)
//!   05 cmd 00 atyp addr port   ──▶     request()   ─▶ reply(code, bound address)
//!   <tunnel bytes>                     (bytes after a message are never read by it)
//! ```
//!
//! A first byte other than 5 (SOCKS4, HTTP, TLS) is refused without an answer. With
//! credentials configured only username/password is chosen, never "no authentication".

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::connect::{is_name, Host};

/// What a reader found in the bytes so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read<T> {
    /// The message has not ended.
    Incomplete,
    /// The message, and its length (bytes after it are the next message's or tunnel
    /// data).
    Done(T, usize),
    /// Refused: answer with `Some(reply)` (request messages) or close silently.
    Bad(Option<Reply>, &'static str),
}

/// The authentication methods this proxy offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `00`: none.
    NoAuth,
    /// `02`: username and password (RFC 1929).
    Password,
    /// `FF`: nothing the client offered fits; the proxy closes after saying so.
    NoneAcceptable,
}

/// Reads the greeting: `05 NMETHODS METHODS...`; chooses `02` when `password` (the
/// proxy has credentials), else `00`; `FF` when the client offered neither.
pub fn greeting(buf: &[u8], password: bool) -> Read<Method> {
    let Some(&ver) = buf.first() else {
        return Read::Incomplete;
    };
    if ver != 5 {
        return Read::Bad(None, "not SOCKS5");
    }
    let Some(&n) = buf.get(1) else {
        return Read::Incomplete;
    };
    if n == 0 {
        return Read::Bad(None, "no method offered");
    }
    let len = 2 + usize::from(n);
    let Some(methods) = buf.get(2..len) else {
        return Read::Incomplete;
    };
    let wanted = if password { 0x02 } else { 0x00 };
    let choice = match (methods.contains(&wanted), password) {
        (true, true) => Method::Password,
        (true, false) => Method::NoAuth,
        (false, _) => Method::NoneAcceptable,
    };
    Read::Done(choice, len)
}

/// The answer to a greeting.
pub fn method_reply(choice: Method) -> [u8; 2] {
    let m = match choice {
        Method::NoAuth => 0x00,
        Method::Password => 0x02,
        Method::NoneAcceptable => 0xFF,
    };
    [0x05, m]
}

/// Reads the RFC 1929 sub-negotiation: `01 ULEN USER PLEN PASS` (user 1-255 bytes,
/// password 0-255).
pub fn credentials(buf: &[u8]) -> Read<(Vec<u8>, Vec<u8>)> {
    let Some(&ver) = buf.first() else {
        return Read::Incomplete;
    };
    if ver != 1 {
        return Read::Bad(None, "username/password version not 1");
    }
    let Some(&ulen) = buf.get(1) else {
        return Read::Incomplete;
    };
    if ulen == 0 {
        return Read::Bad(None, "empty username");
    }
    let user_end = 2 + usize::from(ulen);
    let Some(&plen) = buf.get(user_end) else {
        return Read::Incomplete;
    };
    let len = user_end + 1 + usize::from(plen);
    let (Some(user), Some(pass)) = (buf.get(2..user_end), buf.get(user_end + 1..len)) else {
        return Read::Incomplete;
    };
    Read::Done((user.to_vec(), pass.to_vec()), len)
}

/// The answer to the sub-negotiation; a failure is followed by the close.
pub fn auth_reply(ok: bool) -> [u8; 2] {
    [0x01, if ok { 0x00 } else { 0x01 }]
}

/// A CONNECT request's destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The host: an address, or a name the proxy resolves.
    pub host: Host,
    /// The port (0 is refused by the policy, not here).
    pub port: u16,
}

/// The reply codes of RFC 1928 §6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `00`.
    Succeeded,
    /// `01`.
    GeneralFailure,
    /// `02`: not allowed by the ruleset.
    NotAllowed,
    /// `03`.
    NetworkUnreachable,
    /// `04`: host unreachable, or the name not found.
    HostUnreachable,
    /// `05`.
    ConnectionRefused,
    /// `06`: TTL expired (a connect or look-up that timed out).
    TtlExpired,
    /// `07`: BIND, UDP ASSOCIATE or an unknown command.
    CommandNotSupported,
    /// `08`.
    AddressTypeNotSupported,
}

impl Reply {
    /// The code on the wire.
    pub fn code(self) -> u8 {
        match self {
            Reply::Succeeded => 0x00,
            Reply::GeneralFailure => 0x01,
            Reply::NotAllowed => 0x02,
            Reply::NetworkUnreachable => 0x03,
            Reply::HostUnreachable => 0x04,
            Reply::ConnectionRefused => 0x05,
            Reply::TtlExpired => 0x06,
            Reply::CommandNotSupported => 0x07,
            Reply::AddressTypeNotSupported => 0x08,
        }
    }
}

/// Reads a request: `05 CMD 00 ATYP ADDR PORT`. Only CONNECT is a request; BIND, UDP
/// ASSOCIATE and unknown commands are refused with `07` once the message is whole, an
/// unknown address type with `08` at its byte.
pub fn request(buf: &[u8]) -> Read<Request> {
    let Some(&ver) = buf.first() else {
        return Read::Incomplete;
    };
    if ver != 5 {
        return Read::Bad(None, "request version not 5");
    }
    let (Some(&cmd), Some(&rsv), Some(&atyp)) = (buf.get(1), buf.get(2), buf.get(3)) else {
        return Read::Incomplete;
    };
    if rsv != 0 {
        return Read::Bad(Some(Reply::GeneralFailure), "reserved byte not 0");
    }
    let addr_len = match atyp {
        0x01 => 4,
        0x04 => 16,
        0x03 => match buf.get(4) {
            None => return Read::Incomplete,
            Some(0) => return Read::Bad(Some(Reply::GeneralFailure), "empty name"),
            Some(&n) => 1 + usize::from(n),
        },
        _ => {
            return Read::Bad(
                Some(Reply::AddressTypeNotSupported),
                "address type not 1, 3 or 4",
            )
        }
    };
    let len = 4 + addr_len + 2;
    let Some(msg) = buf.get(..len) else {
        return Read::Incomplete;
    };
    if cmd != 0x01 {
        return Read::Bad(
            Some(Reply::CommandNotSupported),
            "command other than CONNECT",
        );
    }
    let port = u16::from_be_bytes([msg[len - 2], msg[len - 1]]);
    let addr = &msg[4..4 + addr_len];
    let host = match atyp {
        0x01 => Host::Ip(IpAddr::V4(Ipv4Addr::new(
            addr[0], addr[1], addr[2], addr[3],
        ))),
        0x04 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(addr);
            Host::Ip(IpAddr::V6(Ipv6Addr::from(o)))
        }
        // A name: an address literal written as one is that address.
        _ => match std::str::from_utf8(&addr[1..]).ok() {
            Some(t) => match t.parse::<IpAddr>() {
                Ok(ip) => Host::Ip(ip),
                Err(_) if is_name(t) => Host::Name(t.to_ascii_lowercase()),
                Err(_) => return Read::Bad(Some(Reply::HostUnreachable), "not a host name"),
            },
            None => return Read::Bad(Some(Reply::HostUnreachable), "not a host name"),
        },
    };
    Read::Done(Request { host, port }, len)
}

/// The answer to a request: the code and the address the proxy's outbound socket is
/// bound to (all zeros, IPv4, for a failure).
pub fn reply(code: Reply, bound: Option<SocketAddr>) -> Vec<u8> {
    let bound = bound.unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    let mut out = vec![0x05, code.code(), 0x00];
    match bound.ip() {
        IpAddr::V4(v4) => {
            out.push(0x01);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(0x04);
            out.extend_from_slice(&v6.octets());
        }
    }
    out.extend_from_slice(&bound.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests;
