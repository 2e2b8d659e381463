//! Reading a PROXY header from the bytes received so far: v1 or v2 by its signature, the
//! header's length, and its addresses. Run again on a longer prefix, it gives the same
//! verdict once it has given one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Error, Header, Version, MAX_V1, MAX_V2_BODY, SIGNATURE};

/// What the bytes so far hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A prefix of a header that may still be valid: read on.
    Incomplete,
    /// A header of `len` bytes; the bytes after it are the client's.
    Header {
        /// What it says.
        header: Header,
        /// Its length.
        len: usize,
    },
    /// Not a valid header.
    Bad(Error),
}

/// Reads a header at the start of `buf` (everything received so far).
pub fn parse(buf: &[u8]) -> Parsed {
    const V1_SIGNATURE: &[u8] = b"PROXY ";
    let first = |sig: &[u8]| {
        let n = buf.len().min(sig.len());
        buf.get(..n) == sig.get(..n)
    };
    if first(V1_SIGNATURE) {
        if buf.len() < V1_SIGNATURE.len() {
            return Parsed::Incomplete;
        }
        v1(buf)
    } else if first(&SIGNATURE) {
        if buf.len() < SIGNATURE.len() {
            return Parsed::Incomplete;
        }
        v2(buf)
    } else {
        Parsed::Bad(Error::Signature)
    }
}

/// `PROXY <TCP4|TCP6> SRC DST SPORT DPORT\r\n` or `PROXY UNKNOWN...\r\n`. Checked in
/// the order the bytes come: the protocol word, the length, the line end, the fields.
fn v1(buf: &[u8]) -> Parsed {
    let window = &buf[..buf.len().min(MAX_V1)];
    // The line ends at the first CR or LF: it must be CR LF.
    let end = window.iter().position(|&b| b == b'\r' || b == b'\n');
    let line = &window[..end.unwrap_or(window.len())];
    if !protocol_may_be(line, end.is_some()) {
        return Parsed::Bad(Error::V1Protocol);
    }
    let Some(end) = end else {
        // 106 bytes without a line end cannot end within 107.
        return if buf.len() >= MAX_V1 - 1 {
            Parsed::Bad(Error::V1TooLong)
        } else {
            Parsed::Incomplete
        };
    };
    if end + 2 > MAX_V1 {
        return Parsed::Bad(Error::V1TooLong);
    }
    match (window.get(end), buf.get(end + 1)) {
        (Some(b'\r'), Some(b'\n')) => {}
        (Some(b'\r'), None) => return Parsed::Incomplete,
        _ => return Parsed::Bad(Error::V1LineEnd),
    }
    let len = end + 2;
    let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    match fields.get(1).copied() {
        Some(b"UNKNOWN") => Parsed::Header {
            header: Header {
                version: Version::V1,
                addresses: None,
            },
            len,
        },
        Some(proto) => match tcp_fields(proto == b"TCP4", &fields) {
            Some(addresses) => Parsed::Header {
                header: Header {
                    version: Version::V1,
                    addresses: Some(addresses),
                },
                len,
            },
            None => Parsed::Bad(Error::V1Field),
        },
        None => Parsed::Bad(Error::V1Protocol),
    }
}

/// Whether the protocol word of `line` (after `PROXY `) is, or may still become, TCP4,
/// TCP6 or UNKNOWN; `ended` when the line has ended.
fn protocol_may_be(line: &[u8], ended: bool) -> bool {
    let Some(rest) = line.get(6..) else {
        return true;
    };
    let word = rest.split(|&b| b == b' ').next().unwrap_or_default();
    let complete = ended || rest.len() > word.len();
    [&b"TCP4"[..], b"TCP6", b"UNKNOWN"].into_iter().any(|p| {
        if complete {
            word == p
        } else {
            p.starts_with(word)
        }
    })
}

/// `SRC DST SPORT DPORT` of a TCP4 or TCP6 line, each exactly as the spec writes it.
fn tcp_fields(v4: bool, fields: &[&[u8]]) -> Option<(SocketAddr, SocketAddr)> {
    let [_, _, src, dst, sport, dport] = fields else {
        return None;
    };
    let ip = |f: &[u8]| -> Option<IpAddr> {
        let text = std::str::from_utf8(f).ok()?;
        if v4 {
            text.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
        } else {
            text.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        }
    };
    let port = |f: &[u8]| -> Option<u16> {
        let digits = !f.is_empty() && f.len() <= 5 && f.iter().all(u8::is_ascii_digit);
        let leading_zero = f.len() > 1 && f.first() == Some(&b'0');
        if !digits || leading_zero {
            return None;
        }
        std::str::from_utf8(f).ok()?.parse().ok()
    };
    Some((
        SocketAddr::new(ip(src)?, port(sport)?),
        SocketAddr::new(ip(dst)?, port(dport)?),
    ))
}

/// The binary header, from its signature on.
fn v2(buf: &[u8]) -> Parsed {
    let Some(&ver_cmd) = buf.get(12) else {
        return Parsed::Incomplete;
    };
    if ver_cmd >> 4 != 2 {
        return Parsed::Bad(Error::V2Version);
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Parsed::Bad(Error::V2Command),
    };
    let Some(&fam) = buf.get(13) else {
        return Parsed::Incomplete;
    };
    let need = match fam >> 4 {
        1 => 12,
        2 => 36,
        _ if local => 0,
        _ => return Parsed::Bad(Error::V2Family),
    };
    if !local && fam & 0x0f != 1 {
        return Parsed::Bad(Error::V2Transport);
    }
    let (Some(&hi), Some(&lo)) = (buf.get(14), buf.get(15)) else {
        return Parsed::Incomplete;
    };
    let body_len = usize::from(u16::from_be_bytes([hi, lo]));
    if body_len > MAX_V2_BODY {
        return Parsed::Bad(Error::V2TooLong);
    }
    if !local && body_len < need {
        return Parsed::Bad(Error::V2Short);
    }
    let Some(body) = buf.get(16..16 + body_len) else {
        return Parsed::Incomplete;
    };
    let header = |addresses| Parsed::Header {
        header: Header {
            version: Version::V2,
            addresses,
        },
        len: 16 + body_len,
    };
    if local {
        // The endpoints are the connection's own; the block is skipped unread.
        return header(None);
    }
    let (addrs, tlvs) = body.split_at(need);
    if !tlvs_fit(tlvs) {
        return Parsed::Bad(Error::V2Tlv);
    }
    header(Some(addresses(addrs)))
}

/// The address block of an INET (12 bytes) or INET6 (36 bytes) header.
fn addresses(block: &[u8]) -> (SocketAddr, SocketAddr) {
    let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
    if block.len() == 12 {
        let ip = |at: usize| IpAddr::from([block[at], block[at + 1], block[at + 2], block[at + 3]]);
        (
            SocketAddr::new(ip(0), port(8)),
            SocketAddr::new(ip(4), port(10)),
        )
    } else {
        let ip = |at: usize| {
            let mut o = [0u8; 16];
            o.copy_from_slice(&block[at..at + 16]);
            IpAddr::from(o)
        };
        (
            SocketAddr::new(ip(0), port(32)),
            SocketAddr::new(ip(16), port(34)),
        )
    }
}

/// Whether the TLVs after the addresses (type, 16-bit length, value) end exactly at the
/// end of the header. Their contents are not needed here and are skipped.
fn tlvs_fit(mut rest: &[u8]) -> bool {
    while !rest.is_empty() {
        let Some(&[_, hi, lo]) = rest.get(..3).and_then(|h| <&[u8; 3]>::try_from(h).ok()) else {
            return false;
        };
        let len = 3 + usize::from(u16::from_be_bytes([hi, lo]));
        match rest.get(len..) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    true
}
