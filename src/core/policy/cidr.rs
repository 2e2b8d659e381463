//! Address blocks: [`Cidr`] (`10.0.0.0/8`, `::1/128`, a bare address) and [`CidrSet`].
//!
//! An IPv4 address and its IPv4-mapped IPv6 form (`::ffff:a.b.c.d`, what a dual-stack
//! socket reports for an IPv4 peer) are one address here: a block written in the mapped
//! form with a prefix of 96 or more is stored as the IPv4 block it covers, and an
//! address is matched in its IPv4 form. An IPv6 block shorter than /96 that covers the
//! mapped range (`::/0`) therefore covers every IPv4 address too.
//!
//! Host bits set under the prefix (`10.1.2.3/8`) are cleared, as HAProxy and nginx do:
//! the block is `10.0.0.0/8`, and it displays so.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A block of addresses: an address and the length of its fixed prefix, host bits clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a block was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CidrError {
    /// Nothing was given.
    Empty,
    /// The part before `/` is not an IPv4 or IPv6 address.
    NotAnAddress,
    /// The part after `/` is not a decimal number.
    BadPrefix,
    /// The prefix is longer than the address (32 for IPv4, 128 for IPv6).
    PrefixTooLong {
        /// The longest prefix of the address's family.
        max: u8,
    },
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::Empty => write!(f, "no address given"),
            CidrError::NotAnAddress => write!(f, "not an IPv4 or IPv6 address"),
            CidrError::BadPrefix => write!(f, "the prefix after `/` is not a number"),
            CidrError::PrefixTooLong { max } => {
                write!(f, "the prefix is longer than the address ({max} bits)")
            }
        }
    }
}

/// The IPv4 form of an IPv4-mapped IPv6 address; any other address unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The top `prefix` bits of 32 set.
pub(super) fn mask4(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

/// The top `prefix` bits of 128 set.
pub(super) fn mask6(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

impl Cidr {
    /// The block of `prefix` bits at `addr`: host bits cleared, an IPv4-mapped block of
    /// /96 or longer stored as IPv4.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, CidrError> {
        match addr {
            IpAddr::V4(v4) if prefix <= 32 => Ok(Cidr {
                addr: IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask4(prefix))),
                prefix,
            }),
            IpAddr::V4(_) => Err(CidrError::PrefixTooLong { max: 32 }),
            IpAddr::V6(_) if prefix > 128 => Err(CidrError::PrefixTooLong { max: 128 }),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if prefix >= 96 => Cidr::new(IpAddr::V4(v4), prefix - 96),
                _ => Ok(Cidr {
                    addr: IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask6(prefix))),
                    prefix,
                }),
            },
        }
    }

    /// The one address `ip` (/32 or /128).
    pub fn host(ip: IpAddr) -> Cidr {
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        Cidr::new(ip, prefix).unwrap_or(Cidr { addr: ip, prefix })
    }

    /// The first address of the block.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The length of the fixed prefix in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// True if `ip` is in the block; an IPv4-mapped address is matched as its IPv4 form
    /// (and an IPv4 address by an IPv6 block as its mapped form).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                (u32::from(net) ^ u32::from(a)) & mask4(self.prefix) == 0
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                (u128::from(net) ^ u128::from(a)) & mask6(self.prefix) == 0
            }
            (IpAddr::V6(net), IpAddr::V4(a)) => {
                (u128::from(net) ^ u128::from(a.to_ipv6_mapped())) & mask6(self.prefix) == 0
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `address` or `address/prefix`; a bare address is the one address (/32 or /128).
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        if s.is_empty() {
            return Err(CidrError::Empty);
        }
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| CidrError::NotAnAddress)?;
        match prefix {
            None => Ok(Cidr::host(addr)),
            Some(p) => {
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(CidrError::BadPrefix);
                }
                let max = if addr.is_ipv4() { 32 } else { 128 };
                let prefix: u8 = p.parse().map_err(|_| CidrError::PrefixTooLong { max })?;
                Cidr::new(addr, prefix)
            }
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A list of blocks (the trusted sources of PROXY headers, say). Empty contains nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrSet(Vec<Cidr>);

impl CidrSet {
    /// A set of these blocks.
    pub fn new(blocks: Vec<Cidr>) -> CidrSet {
        CidrSet(blocks)
    }

    /// True if any block contains `ip` (matched as [`Cidr::contains`] does).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The blocks, in the order given.
    pub fn blocks(&self) -> &[Cidr] {
        &self.0
    }
}

impl FromStr for CidrSet {
    type Err = CidrError;

    /// Blocks separated by commas, without spaces: `10.0.0.0/8,::1`.
    fn from_str(s: &str) -> Result<CidrSet, CidrError> {
        s.split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(CidrSet)
    }
}

impl fmt::Display for CidrSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}
