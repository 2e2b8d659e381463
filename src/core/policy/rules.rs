//! The rules of `--allow` and `--deny`: a target (an address block or a host pattern)
//! and optionally the ports it applies to.
//!
//! ```text
//! rule    = target [":" ports]
//! target  = IPv4 ["/" prefix]              10.0.0.0/8   192.0.2.7
//!         | "[" IPv6 "]" ["/" prefix]      [::1]/128    [2001:db8::1]
//!         | IPv6 ["/" prefix]              fe80::/10    (no ports: every ":" is the address's)
//!         | name                           db.internal          exactly this name
//!         | "*." name | "." name           *.example.com        its subdomains, any depth
//! ports   = item *("," item)               443,8443   5432-5433   22
//! item    = port | port "-" port           1 to 65535, the range's first not after its last
//! ```
//!
//! Names are ASCII (an internationalised name is written in its `xn--` form), compared
//! without regard to case and without a final dot: labels of 1 to 63 letters, digits,
//! `-` (not first or last) or `_`, 253 bytes at most, the last label not all digits (so
//! a mistyped address such as `10.0.0.256` is refused rather than taken for a name). A
//! suffix pattern does **not** match the name itself (`*.example.com` does not match
//! `example.com`; unlike Squid's `.example.com`): add an exact rule for that. Blocks are
//! read as [`Cidr`] reads them (host bits cleared). A rule displays in the canonical
//! form: lowercase, `*.` for suffixes, ports sorted and merged, IPv6 in brackets when
//! ports follow; that form reads back to the same rule.

use std::fmt;
use std::str::FromStr;

use super::cidr::{Cidr, CidrError};

/// What a rule matches: addresses or the name the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every address in the block (each resolved address is checked).
    Block(Cidr),
    /// Exactly this name (lowercase, no final dot).
    Name(String),
    /// Every name ending in `.` and this (lowercase, no final dot), not this one.
    Suffix(String),
}

impl Target {
    /// True if the requested name (`None` when the client asked for an address) or the
    /// address is matched.
    pub fn matches(&self, host: Option<&str>, ip: std::net::IpAddr) -> bool {
        let host = host.map(|h| h.strip_suffix('.').unwrap_or(h));
        match (self, host) {
            (Target::Block(c), _) => c.contains(ip),
            (Target::Name(n), Some(h)) => h.eq_ignore_ascii_case(n),
            (Target::Suffix(s), Some(h)) => h
                .len()
                .checked_sub(s.len() + 1)
                .filter(|&i| i > 0)
                .and_then(|i| h.get(i..))
                .and_then(|tail| tail.strip_prefix('.'))
                .is_some_and(|tail| tail.eq_ignore_ascii_case(s)),
            (_, None) => false,
        }
    }
}

/// A set of ports: inclusive ranges, sorted, merged, never empty; port 0 is never read
/// and never contained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports(Vec<(u16, u16)>);

impl Ports {
    /// Every port, 1 to 65535.
    pub fn any() -> Ports {
        Ports(vec![(1, u16::MAX)])
    }

    /// One port (port 0 gives no port at all: it is never contained).
    pub fn one(port: u16) -> Ports {
        Ports(vec![(port, port)])
    }

    /// True if `port` is in the set.
    pub fn contains(&self, port: u16) -> bool {
        port != 0 && self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&port))
    }

    fn from_ranges(mut ranges: Vec<(u16, u16)>) -> Ports {
        ranges.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        Ports(merged)
    }
}

impl FromStr for Ports {
    type Err = RuleError;

    fn from_str(s: &str) -> Result<Ports, RuleError> {
        let port = |p: &str| {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(RuleError::BadPort);
            }
            match p.parse::<u16>() {
                Ok(0) => Err(RuleError::PortZero),
                Ok(n) => Ok(n),
                Err(_) => Err(RuleError::BadPort),
            }
        };
        let mut ranges = Vec::new();
        for item in s.split(',') {
            let (lo, hi) = match item.split_once('-') {
                Some((lo, hi)) => (port(lo)?, port(hi)?),
                None => (port(item)?, port(item)?),
            };
            if lo > hi {
                return Err(RuleError::PortsBackwards);
            }
            ranges.push((lo, hi));
        }
        Ok(Ports::from_ranges(ranges))
    }
}

impl fmt::Display for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(lo, hi)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

/// One `--allow` or `--deny` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// What it matches.
    pub target: Target,
    /// The ports it applies to; `None`: a deny rule applies to every port, an allow rule
    /// to the policy's default ports.
    pub ports: Option<Ports>,
}

/// Why a rule was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleError {
    /// Nothing was given.
    Empty,
    /// The address block is wrong.
    Block(CidrError),
    /// A `[` without its `]`, or something other than `/` or `:` after the `]`.
    Bracket,
    /// A `:` with nothing after it.
    NoPorts,
    /// A port that is not a decimal number of 1 to 65535.
    BadPort,
    /// Port 0.
    PortZero,
    /// A range whose first port is after its last.
    PortsBackwards,
    /// An empty label in a name (`a..b`, a leading dot in an exact name, `*.` alone).
    EmptyLabel,
    /// A label over 63 bytes.
    LongLabel,
    /// A name over 253 bytes.
    LongName,
    /// A byte other than a letter, a digit, `-` or `_` in a name, or `-` at a label's end.
    BadCharacter,
    /// A `*` anywhere but a leading `*.`.
    Wildcard,
    /// A name whose last label is all digits: a mistyped address.
    NumericName,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleError::Empty => write!(f, "empty rule"),
            RuleError::Block(e) => write!(f, "bad address block: {e}"),
            RuleError::Bracket => write!(
                f,
                "an IPv6 address in brackets is `[address]`, then `/prefix`, then `:ports`"
            ),
            RuleError::NoPorts => write!(f, "no ports after `:`"),
            RuleError::BadPort => write!(f, "a port is not a number from 1 to 65535"),
            RuleError::PortZero => write!(f, "port 0 is not a port"),
            RuleError::PortsBackwards => write!(f, "a port range ends before it starts"),
            RuleError::EmptyLabel => write!(f, "the name has an empty label"),
            RuleError::LongLabel => write!(f, "a label of the name is over 63 bytes"),
            RuleError::LongName => write!(f, "the name is over 253 bytes"),
            RuleError::BadCharacter => write!(
                f,
                "a name holds only letters, digits, `-` and `_` between dots \
                 (`-` not at a label's ends)"
            ),
            RuleError::Wildcard => write!(f, "`*` only as a leading `*.`"),
            RuleError::NumericName => write!(
                f,
                "neither an address nor a name (a name's last label is not all digits)"
            ),
        }
    }
}

/// Checks a name and gives it in lowercase without a final dot.
fn name(s: &str) -> Result<String, RuleError> {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.contains('*') {
        return Err(RuleError::Wildcard);
    }
    if s.len() > 253 {
        return Err(RuleError::LongName);
    }
    let mut last_numeric = false;
    for label in s.split('.') {
        let bytes = label.as_bytes();
        if bytes.is_empty() {
            return Err(RuleError::EmptyLabel);
        }
        if bytes.len() > 63 {
            return Err(RuleError::LongLabel);
        }
        let ok = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
        if !bytes.iter().all(ok) || bytes.first() == Some(&b'-') || bytes.last() == Some(&b'-') {
            return Err(RuleError::BadCharacter);
        }
        last_numeric = bytes.iter().all(u8::is_ascii_digit);
    }
    if last_numeric {
        return Err(RuleError::NumericName);
    }
    Ok(s.to_ascii_lowercase())
}

fn block(addr: &str, prefix: Option<&str>) -> Result<Cidr, RuleError> {
    let text;
    let s = match prefix {
        Some(p) => {
            text = format!("{addr}/{p}");
            &text
        }
        None => addr,
    };
    s.parse().map_err(RuleError::Block)
}

impl FromStr for Rule {
    type Err = RuleError;

    fn from_str(s: &str) -> Result<Rule, RuleError> {
        if s.is_empty() {
            return Err(RuleError::Empty);
        }
        let ports = |p: Option<&str>| match p {
            None => Ok(None),
            Some("") => Err(RuleError::NoPorts),
            Some(p) => p.parse().map(Some),
        };
        if let Some(rest) = s.strip_prefix('[') {
            let (addr, after) = rest.split_once(']').ok_or(RuleError::Bracket)?;
            let (prefix, port_text) = match after.strip_prefix('/') {
                Some(tail) => match tail.split_once(':') {
                    Some((p, ports)) => (Some(p), Some(ports)),
                    None => (Some(tail), None),
                },
                None if after.is_empty() => (None, None),
                None => (
                    None,
                    Some(after.strip_prefix(':').ok_or(RuleError::Bracket)?),
                ),
            };
            let target = Target::Block(block(addr, prefix)?);
            return Ok(Rule {
                target,
                ports: ports(port_text)?,
            });
        }
        if s.matches(':').nth(1).is_some() {
            let target = Target::Block(s.parse().map_err(RuleError::Block)?);
            return Ok(Rule {
                target,
                ports: None,
            });
        }
        let (target, port_text) = match s.split_once(':') {
            Some((t, p)) => (t, Some(p)),
            None => (s, None),
        };
        let ports = ports(port_text)?;
        let target = if target.contains('/') || target.parse::<std::net::Ipv4Addr>().is_ok() {
            Target::Block(target.parse().map_err(RuleError::Block)?)
        } else if let Some(suffix) = target.strip_prefix("*.").or(target.strip_prefix('.')) {
            Target::Suffix(name(suffix)?)
        } else if target.is_empty() {
            return Err(RuleError::Empty);
        } else {
            Target::Name(name(target)?)
        };
        Ok(Rule { target, ports })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.target, &self.ports) {
            (Target::Block(c), Some(_)) if !c.addr().is_ipv4() => {
                write!(f, "[{}]/{}", c.addr(), c.prefix())?
            }
            (Target::Block(c), _) => write!(f, "{c}")?,
            (Target::Name(n), _) => f.write_str(n)?,
            (Target::Suffix(s), _) => write!(f, "*.{s}")?,
        }
        match &self.ports {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}
