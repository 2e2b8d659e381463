//! HTTP CONNECT requests (RFC 9110 §9.3.6) for a tunnel proxy, and its answers.
//!
//! [`parse`] is run on everything received so far and says whether the request head is
//! complete, and how long: bytes after it are tunnel data, sent on after the `200`.
//! The destination comes from the request target in authority form (`host:port`, an
//! IPv6 address in brackets, the port required), never from `Host`. Any other method is
//! answered `405`: this is a tunnel proxy, not an HTTP forward proxy. [`response`] builds
//! every answer; errors carry `Proxy-Status` (RFC 9209) and `Connection: close`.
//!
//! ```text
//! CONNECT example.com:443 HTTP/1.1\r\n        ─┐
//! Host: example.com:443\r\n                    │ head: at most 16 KiB, one deadline
//! Proxy-Authorization: Basic dXNlcjpwYXNz\r\n  │
//! \r\n                                        ─┘
//! <tunnel bytes the client sent early>           kept, sent after the 200
//! ```

use std::net::IpAddr;

mod base64;

/// Most bytes of a request head.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header lines.
const MAX_HEADERS: usize = 64;
/// Longest host name (RFC 1035).
const MAX_NAME: usize = 253;

/// Where the client asks to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A name, lower case, to be resolved (and checked) by the proxy.
    Name(String),
    /// An address literal.
    Ip(IpAddr),
}

/// A complete CONNECT request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The destination host.
    pub host: Host,
    /// Its port, 1-65535.
    pub port: u16,
    /// `Proxy-Authorization: Basic` credentials, decoded, if given.
    pub credentials: Option<(String, String)>,
    /// Bytes of the head; what follows is tunnel data.
    pub len: usize,
}

/// What the bytes received so far amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Valid so far; the head has not ended.
    Incomplete,
    /// A complete request.
    Request(Request),
    /// Refused: answer `status` and close; the reason is for the log line.
    Bad {
        /// 400, 405 or 431.
        status: Status,
        /// Why, in a few words.
        reason: &'static str,
    },
}

/// The answers of a tunnel proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 200: the tunnel is open.
    Established,
    /// 400: not a valid CONNECT request.
    BadRequest,
    /// 403: the destination is not allowed.
    Forbidden,
    /// 405: a method other than CONNECT.
    MethodNotAllowed,
    /// 407: credentials missing or wrong.
    AuthRequired,
    /// 431: the head is over 16 KiB.
    HeadTooLarge,
    /// 502: the destination refused, is unreachable, or its name does not resolve.
    BadGateway,
    /// 504: the connect or the name look-up timed out.
    GatewayTimeout,
}

impl Status {
    /// The code and reason phrase.
    pub fn line(self) -> (u16, &'static str) {
        match self {
            Status::Established => (200, "Connection established"),
            Status::BadRequest => (400, "Bad Request"),
            Status::Forbidden => (403, "Forbidden"),
            Status::MethodNotAllowed => (405, "Method Not Allowed"),
            Status::AuthRequired => (407, "Proxy Authentication Required"),
            Status::HeadTooLarge => (431, "Request Header Fields Too Large"),
            Status::BadGateway => (502, "Bad Gateway"),
            Status::GatewayTimeout => (504, "Gateway Timeout"),
        }
    }
}

/// Parses a CONNECT request head from everything received so far.
pub fn parse(buf: &[u8]) -> Parsed {
    let bounded = &buf[..buf.len().min(MAX_HEAD)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let bad = |status, reason| Parsed::Bad { status, reason };
    let len = match req.parse(bounded) {
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return bad(Status::HeadTooLarge, "request head over 16 KiB")
        }
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        Err(httparse::Error::TooManyHeaders) => {
            return bad(Status::HeadTooLarge, "too many header lines")
        }
        Err(_) => return bad(Status::BadRequest, "malformed request head"),
        Ok(httparse::Status::Complete(len)) => len,
    };
    if req.method != Some("CONNECT") {
        return bad(Status::MethodNotAllowed, "method other than CONNECT");
    }
    if !matches!(req.version, Some(0 | 1)) {
        return bad(Status::BadRequest, "HTTP version other than 1.0 or 1.1");
    }
    let Some((host, port)) = req.path.and_then(authority) else {
        return bad(Status::BadRequest, "target not HOST:PORT");
    };
    let mut credentials = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("proxy-authorization") {
            match basic(h.value) {
                Some(c) => credentials = Some(c),
                None => return bad(Status::BadRequest, "Proxy-Authorization not Basic"),
            }
        }
    }
    Parsed::Request(Request {
        host,
        port,
        credentials,
        len,
    })
}

/// `host:port` or `[v6]:port`, the port required and from 1.
fn authority(target: &str) -> Option<(Host, u16)> {
    let (host, port) = match target.strip_prefix('[') {
        Some(rest) => {
            let (v6, port) = rest.split_once("]:")?;
            (Host::Ip(IpAddr::V6(v6.parse().ok()?)), port)
        }
        None => {
            let (host, port) = target.rsplit_once(':')?;
            let host = match host.parse::<std::net::Ipv4Addr>() {
                Ok(v4) => Host::Ip(IpAddr::V4(v4)),
                Err(_) if is_name(host) => Host::Name(host.to_ascii_lowercase()),
                Err(_) => return None,
            };
            (host, port)
        }
    };
    let digits = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    if !digits {
        return None;
    }
    let port: u16 = port.parse().ok()?;
    (port != 0).then_some((host, port))
}

/// A host name: dot-separated labels of letters, digits and hyphens (not at either end
/// of a label), at most 253 bytes, the last label not all digits (a mistyped address).
pub(crate) fn is_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.split('.').all(label)
        && !name
            .rsplit('.')
            .next()
            .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
}

/// `Basic base64(user:pass)`.
fn basic(value: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64::decode(token.trim())?).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// The `Proxy-Status` error of an answer (RFC 9209 §2.3), if it is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// The request was not valid HTTP or not CONNECT.
    HttpRequestError,
    /// The policy denied the destination.
    DestinationIpProhibited,
    /// Credentials missing or wrong.
    HttpRequestDenied,
    /// The name did not resolve.
    DnsError,
    /// The name look-up timed out.
    DnsTimeout,
    /// The destination refused.
    ConnectionRefused,
    /// The destination did not answer in time.
    ConnectionTimeout,
    /// The destination is unreachable.
    DestinationUnavailable,
    /// No route to the destination's network.
    DestinationIpUnroutable,
}

impl ProxyError {
    fn token(self) -> &'static str {
        match self {
            ProxyError::HttpRequestError => "http_request_error",
            ProxyError::DestinationIpProhibited => "destination_ip_prohibited",
            ProxyError::HttpRequestDenied => "http_request_denied",
            ProxyError::DnsError => "dns_error",
            ProxyError::DnsTimeout => "dns_timeout",
            ProxyError::ConnectionRefused => "connection_refused",
            ProxyError::ConnectionTimeout => "connection_timeout",
            ProxyError::DestinationUnavailable => "destination_unavailable",
            ProxyError::DestinationIpUnroutable => "destination_ip_unroutable",
        }
    }
}

/// The whole answer: `200 Connection established` with no body and no length, or an
/// error with `Proxy-Status`, `Connection: close` and an empty body (`Allow: CONNECT`
/// with 405, `Proxy-Authenticate: Basic realm=...` with 407).
pub fn response(status: Status, error: Option<ProxyError>, realm: &str) -> Vec<u8> {
    let (code, phrase) = status.line();
    let mut out = format!("HTTP/1.1 {code} {phrase}\r\n");
    if status != Status::Established {
        if let Some(e) = error {
            out.push_str(&format!("Proxy-Status: tcpbridge; error={}\r\n", e.token()));
        }
        match status {
            Status::MethodNotAllowed => out.push_str("Allow: CONNECT\r\n"),
            Status::AuthRequired => out.push_str(&format!(
                "Proxy-Authenticate: Basic realm=\"{}\"\r\n",
                realm.replace(['"', '\\', '\r', '\n'], "")
            )),
            _ => {}
        }
        out.push_str("Connection: close\r\nContent-Length: 0\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests;
