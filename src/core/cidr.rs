//! Address ranges written as CIDR blocks (`10.0.0.0/8`, `2001:db8::/32`, a bare address
//! for one host): who may send PROXY protocol headers, and later whom a proxy may reach.
//!
//! An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`, as a dual-stack socket reports an
//! IPv4 peer) is matched as its IPv4 form, so `10.0.0.0/8` covers it. A block with bits
//! set past its prefix (`10.1.2.3/8`) is refused rather than masked: it is a typo more
//! often than a shorthand.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// One block of addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a block does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// Not an IPv4 or IPv6 address.
    Address,
    /// Not a number from 0 to 32 (IPv4) or 128 (IPv6).
    Prefix,
    /// Bits set past the prefix; the block it likely means.
    HostBits(String),
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::Address => write!(f, "not an IP address"),
            CidrError::Prefix => {
                write!(f, "the prefix length must be 0-32 for IPv4, 0-128 for IPv6")
            }
            CidrError::HostBits(meant) => {
                write!(f, "bits are set past the prefix (did you mean {meant}?)")
            }
        }
    }
}

/// The address as 128 bits, and its family's width.
fn bits(addr: IpAddr) -> (u128, u8) {
    match addr {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

/// The mask of the first `prefix` bits of a `width`-bit address.
fn mask(prefix: u8, width: u8) -> u128 {
    let all = if width == 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    };
    match prefix {
        0 => 0,
        p => all & !((1u128 << (width - p)) - 1) & all,
    }
}

impl Cidr {
    /// Whether `ip` is in the block (IPv4-mapped IPv6 addresses as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let ((a, width), (b, _)) = (bits(ip), bits(self.addr));
        let m = mask(self.prefix, width);
        a & m == b & m
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let written: IpAddr = addr.parse().map_err(|_| CidrError::Address)?;
        let prefix = match prefix {
            None => None,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 3 => {
                Some(p.parse::<u8>().map_err(|_| CidrError::Prefix)?)
            }
            Some(_) => return Err(CidrError::Prefix),
        };
        // An IPv4-mapped block is kept as IPv4: its prefix counts from bit 96.
        let (addr, prefix) = match written {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => match prefix {
                    Some(p) if p < 96 => return Err(CidrError::Prefix),
                    p => (IpAddr::V4(v4), p.map(|p| p - 96)),
                },
                None => (written, prefix),
            },
            v4 => (v4, prefix),
        };
        let (value, width) = bits(addr);
        let prefix = prefix.unwrap_or(width);
        if prefix > width {
            return Err(CidrError::Prefix);
        }
        let m = mask(prefix, width);
        if value & !m != 0 {
            let base = match addr {
                IpAddr::V4(_) => IpAddr::V4(((value & m) as u32).into()),
                IpAddr::V6(_) => IpAddr::V6((value & m).into()),
            };
            return Err(CidrError::HostBits(format!("{base}/{prefix}")));
        }
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn blocks_contain_their_addresses() {
        let cases = [
            ("10.0.0.0/8", "10.255.255.255", true),
            ("10.0.0.0/8", "11.0.0.0", false),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("::/0", "2001:db8::1", true),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::", false),
            ("::1", "::1", true),
            ("::1/128", "127.0.0.1", false),
            ("::ffff:192.0.2.0/120", "192.0.2.7", true),
            ("172.16.0.0/12", "172.31.255.255", true),
            ("172.16.0.0/12", "172.32.0.0", false),
        ];
        for (block, addr, inside) in cases {
            assert_eq!(cidr(block).contains(ip(addr)), inside, "{block} {addr}");
        }
    }

    #[test]
    fn bad_blocks_say_why() {
        assert_eq!("10.0.0.0/33".parse::<Cidr>(), Err(CidrError::Prefix));
        assert_eq!("10.0.0.0/".parse::<Cidr>(), Err(CidrError::Prefix));
        assert_eq!("10.0.0.0/+8".parse::<Cidr>(), Err(CidrError::Prefix));
        assert_eq!("::/129".parse::<Cidr>(), Err(CidrError::Prefix));
        assert_eq!("10.0.0/8".parse::<Cidr>(), Err(CidrError::Address));
        assert_eq!("example.com".parse::<Cidr>(), Err(CidrError::Address));
        assert_eq!(
            "10.1.2.3/8".parse::<Cidr>(),
            Err(CidrError::HostBits("10.0.0.0/8".into()))
        );
        assert_eq!(
            "2001:db8::1/32".parse::<Cidr>(),
            Err(CidrError::HostBits("2001:db8::/32".into()))
        );
    }

    #[test]
    fn display_reads_back() {
        for s in [
            "10.0.0.0/8",
            "::1/128",
            "0.0.0.0/0",
            "2001:db8::/32",
            "127.0.0.1/32",
        ] {
            let c = cidr(s);
            assert_eq!(c.to_string(), s);
            assert_eq!(cidr(&c.to_string()), c);
        }
    }
}
