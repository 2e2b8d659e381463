//! The PROXY protocol, versions 1 and 2 (HAProxy's `doc/proxy-protocol.txt`): the header
//! a proxy writes first on a connection to say whom it relays. Pure: [`parse`] reads a
//! header from the bytes received so far, the builders write one.
//!
//! ```text
//! v1:  "PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n"      at most 107 bytes
//!      "PROXY UNKNOWN ...\r\n"                                the rest of the line ignored
//!
//! v2:  0                    12       13        14      16               16+len
//!      ├── signature ───────┼ ver|cmd ┼ fam|proto┼ len ───┼ addresses, TLVs ┤
//!      \r\n\r\n\0\r\nQUIT\n    0x2|0/1   1|1, 2|1   u16 BE  ≤ 4096 bytes here
//!      INET:  src(4) dst(4) sport(2) dport(2)   INET6: src(16) dst(16) sport dport
//! ```
//!
//! The parser is run on everything received so far and says how long the header is, so
//! a caller that peeks (or buffers) consumes exactly the header: bytes after it, even in
//! the same segment, stay the client's. Its verdict on a prefix never changes with more
//! bytes, and a wrong first byte is refused at once.

mod parse;

use std::fmt;
use std::net::{IpAddr, SocketAddr};

pub use parse::{parse, Parsed};

/// The v2 signature.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 line, CRLF included.
pub const MAX_V1: usize = 107;
/// Most bytes of addresses and TLVs accepted after a v2 header's first 16.
pub const MAX_V2_BODY: usize = 4096;
/// Longest header accepted: what a caller needs to look at, at most.
pub const MAX_HEADER: usize = 16 + MAX_V2_BODY;

/// A header read: whom the proxy relays, or nothing (v2 LOCAL, v1 UNKNOWN: the
/// connection's own endpoints are the real ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The version it came in.
    pub version: Version,
    /// `(source, destination)`: the client and the address it connected to.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
}

/// A protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Text.
    V1,
    /// Binary.
    V2,
}

/// Why a header is refused. The connection is closed; [`as_str`](Error::as_str) names
/// the reason in logs and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Neither `PROXY ` nor the v2 signature.
    Signature,
    /// v1: no CRLF within 107 bytes.
    V1TooLong,
    /// v1: a CR not followed by LF, or an LF alone.
    V1LineEnd,
    /// v1: a protocol other than TCP4, TCP6 or UNKNOWN.
    V1Protocol,
    /// v1: an address, a port or a separator that is not as the protocol says.
    V1Field,
    /// v2: a version other than 2.
    V2Version,
    /// v2: a command other than LOCAL or PROXY.
    V2Command,
    /// v2: PROXY with a family other than INET or INET6.
    V2Family,
    /// v2: PROXY over a transport other than STREAM.
    V2Transport,
    /// v2: more than 4096 bytes of addresses and TLVs.
    V2TooLong,
    /// v2: fewer address bytes than the family needs.
    V2Short,
    /// v2: a TLV that runs past the header.
    V2Tlv,
}

impl Error {
    /// A short name for logs and counters.
    pub fn as_str(self) -> &'static str {
        match self {
            Error::Signature => "not a PROXY header",
            Error::V1TooLong => "v1 line over 107 bytes",
            Error::V1LineEnd => "v1 line not ended by CRLF",
            Error::V1Protocol => "v1 protocol not TCP4, TCP6 or UNKNOWN",
            Error::V1Field => "v1 bad address or port",
            Error::V2Version => "v2 bad version",
            Error::V2Command => "v2 bad command",
            Error::V2Family => "v2 family not INET or INET6",
            Error::V2Transport => "v2 transport not STREAM",
            Error::V2TooLong => "v2 header over 4 KiB",
            Error::V2Short => "v2 addresses shorter than the family",
            Error::V2Tlv => "v2 TLV past the end",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether bytes start like a PROXY header, for a client that must not send one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// They cannot: the client's own bytes.
    Absent,
    /// Too few bytes to tell (a prefix of `PROXY ` or of the v2 signature).
    Partial,
    /// A v1 or v2 signature.
    Present,
}

/// Whether `buf` (a client's first bytes) starts with a PROXY header's signature.
pub fn signature(buf: &[u8]) -> Signature {
    let starts = |sig: &[u8]| {
        let n = buf.len().min(sig.len());
        (buf.get(..n) == sig.get(..n), buf.len() >= sig.len())
    };
    match (starts(b"PROXY "), starts(&SIGNATURE)) {
        ((true, true), _) | (_, (true, true)) => Signature::Present,
        ((true, false), _) | (_, (true, false)) if !buf.is_empty() => Signature::Partial,
        _ => Signature::Absent,
    }
}

/// Both endpoints in one family: IPv4 when both are IPv4 (or IPv4-mapped IPv6, as a
/// dual-stack socket reports IPv4 peers), else IPv6 with IPv4 ones mapped, which keeps
/// the client's address where the spec's one-family headers cannot hold two families.
fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v4 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(ip) => Some(SocketAddr::new(IpAddr::V4(ip), a.port())),
        IpAddr::V6(ip) => ip
            .to_ipv4_mapped()
            .map(|ip| SocketAddr::new(IpAddr::V4(ip), a.port())),
    };
    let v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    match (v4(src), v4(dst)) {
        (Some(s), Some(d)) => (s, d),
        _ => (v6(src), v6(dst)),
    }
}

/// A v1 header for a connection from `src` to `dst`.
pub fn v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    let proto = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {proto} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

/// A v2 PROXY header for a connection from `src` to `dst` (no TLVs).
pub fn v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&SIGNATURE);
    out.push(0x21);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&[0x11, 0, 12]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let six = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                IpAddr::V6(v6) => v6.octets(),
            };
            out.extend_from_slice(&[0x21, 0, 36]);
            out.extend_from_slice(&six(s));
            out.extend_from_slice(&six(d));
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

/// The v1 line for a connection whose endpoints cannot be written (`PROXY UNKNOWN\r\n`,
/// its short form). The spec advises sending it only when a line cannot be filled in, as
/// some receivers refuse it; [`v1`] always can, so nothing here sends this today.
pub fn v1_unknown() -> Vec<u8> {
    b"PROXY UNKNOWN\r\n".to_vec()
}

/// A v2 LOCAL header (a health check: the connection is the proxy's own).
pub fn v2_local() -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.extend_from_slice(&[0x20, 0x00, 0, 0]);
    out
}

#[cfg(test)]
mod tests;
