//! The internal ranges: addresses a forward proxy must not reach unless an address rule
//! allows them, from the IANA IPv4 and IPv6 Special-Purpose Address Registries
//! (<https://www.iana.org/assignments/iana-ipv4-special-registry>,
//! <https://www.iana.org/assignments/iana-ipv6-special-registry>; RFC 6890, RFC 8190),
//! the multicast registries (RFC 5771, RFC 4291 §2.7) and the IPv6 Address Space
//! registry (<https://www.iana.org/assignments/ipv6-address-space>).
//!
//! Every block the registries mark as not globally reachable is here, and so are the
//! blocks that hold a few globally reachable anycast addresses (`192.0.0.0/24` holds
//! PCP and TURN anycast; `2001::/23` holds AMT, AS112, ORCHIDv2 and drone identifiers):
//! they are denied whole, since no proxied client needs them, and an address rule
//! reopens one. IPv6 outside `2000::/3` and not named below is unassigned ("Reserved by
//! IETF") and denied as `reserved`.
//!
//! IPv6 forms that carry an IPv4 address are judged by the IPv4 addresses they carry
//! (checked before the table: an address of one of these forms is internal exactly when
//! one of its IPv4 addresses is, and the reason names that address's range). The one
//! exception is the local-use NAT64 prefix, which the registry marks not globally
//! reachable: where the site's translator puts the IPv4 address depends on a prefix
//! length only the site knows (RFC 6052 §2.2 allows /48 to /96 under it), so the whole
//! block is internal, as `nat64-local` unless its last 32 bits read as an internal IPv4
//! address (then that range is named):
//!
//! | form | block | IPv4 address |
//! |---|---|---|
//! | IPv4-mapped (RFC 4291 §2.5.5.2) | `::ffff:0:0/96` | the last 32 bits |
//! | IPv4-compatible, deprecated (RFC 4291 §2.5.5.1) | `::/96` but `::` and `::1` | the last 32 bits |
//! | IPv4-translated (RFC 2765 §2.1) | `::ffff:0:0:0/96` | the last 32 bits |
//! | NAT64 well-known prefix (RFC 6052) | `64:ff9b::/96` | the last 32 bits |
//! | NAT64 local-use prefix (RFC 8215) | `64:ff9b:1::/48` | the last 32 bits (a /96 under it); the block is internal anyway (`nat64-local`) |
//! | 6to4 (RFC 3056) | `2002::/16` | bits 16..48 |
//! | Teredo (RFC 4380 §4) | `2001::/32` | the server: bits 32..64; the client: the last 32 bits inverted |

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::cidr::{mask4, mask6};

/// IPv4 blocks, most specific first (a name is the first block's that matches).
const V4: &[(u32, u8, &str)] = &[
    // RFC 919 §7, RFC 8190: limited broadcast (inside 240.0.0.0/4).
    (0xffff_ffff, 32, "broadcast"),
    // RFC 791 §3.2, RFC 1122 §3.2.1.3: "this network" (0.0.0.0 is "this host").
    (0x0000_0000, 8, "unspecified"),
    // RFC 1918.
    (0x0a00_0000, 8, "private"),
    // RFC 6598: shared address space.
    (0x6440_0000, 10, "carrier-grade-nat"),
    // RFC 1122 §3.2.1.3.
    (0x7f00_0000, 8, "loopback"),
    // RFC 3927.
    (0xa9fe_0000, 16, "link-local"),
    // RFC 1918.
    (0xac10_0000, 12, "private"),
    // RFC 6890 §2.1: IETF protocol assignments (DS-Lite, NAT64 discovery, ...).
    (0xc000_0000, 24, "ietf-protocol"),
    // RFC 5737: TEST-NET-1.
    (0xc000_0200, 24, "documentation"),
    // RFC 7526: the deprecated 6to4 relay anycast.
    (0xc058_6300, 24, "6to4-relay"),
    // RFC 1918.
    (0xc0a8_0000, 16, "private"),
    // RFC 2544: benchmarking.
    (0xc612_0000, 15, "benchmarking"),
    // RFC 5737: TEST-NET-2.
    (0xc633_6400, 24, "documentation"),
    // RFC 5737: TEST-NET-3.
    (0xcb00_7100, 24, "documentation"),
    // RFC 5771.
    (0xe000_0000, 4, "multicast"),
    // RFC 1112 §4: reserved for future use.
    (0xf000_0000, 4, "reserved"),
];

/// IPv6 blocks, most specific first; the embedded forms are handled before.
const V6: &[(u128, u8, &str)] = &[
    // RFC 4291 §2.5.2.
    (0, 128, "unspecified"),
    // RFC 4291 §2.5.3.
    (1, 128, "loopback"),
    // RFC 6666: discard-only.
    (0x0100 << 112, 64, "discard"),
    // RFC 2928, RFC 6890 §2.2.2: IETF protocol assignments (Teredo is handled before).
    (0x2001 << 112, 23, "ietf-protocol"),
    // RFC 3849.
    ((0x2001 << 112) | (0x0db8 << 96), 32, "documentation"),
    // RFC 9637.
    (0x3fff << 112, 20, "documentation"),
    // RFC 9602: SRv6 segment identifiers.
    (0x5f00 << 112, 16, "segment-routing"),
    // RFC 4193.
    (0xfc00 << 112, 7, "unique-local"),
    // RFC 4291 §2.5.6.
    (0xfe80 << 112, 10, "link-local"),
    // RFC 3879: deprecated site-local.
    (0xfec0 << 112, 10, "site-local"),
    // RFC 4291 §2.7.
    (0xff00 << 112, 8, "multicast"),
];

/// `64:ff9b:1::/48`, the local-use NAT64 prefix (RFC 8215).
const NAT64_LOCAL: u128 = (0x64 << 112) | (0xff9b << 96) | (1 << 80);

/// How an IPv6 address carried the IPv4 address that was found internal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `::ffff:a.b.c.d`.
    Mapped,
    /// `::a.b.c.d`.
    Compatible,
    /// `::ffff:0:a.b.c.d`.
    Translated,
    /// `64:ff9b::a.b.c.d`.
    Nat64,
    /// Under `64:ff9b:1::/48`.
    Nat64Local,
    /// `2002:aabb:ccdd::/48`.
    SixToFour,
    /// A Teredo address's server.
    TeredoServer,
    /// A Teredo address's client (stored inverted).
    TeredoClient,
}

impl Form {
    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Form::Mapped => "IPv4-mapped",
            Form::Compatible => "IPv4-compatible",
            Form::Translated => "IPv4-translated",
            Form::Nat64 => "NAT64",
            Form::Nat64Local => "local NAT64",
            Form::SixToFour => "6to4",
            Form::TeredoServer => "Teredo server",
            Form::TeredoClient => "Teredo client",
        }
    }
}

/// An internal address: the range it is in, and the form that carried it if it was an
/// IPv4 address inside an IPv6 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Internal {
    /// The range's name: `loopback`, `private`, `documentation`...
    pub range: &'static str,
    /// How an IPv6 address carried the IPv4 address in `range`, if it did.
    pub form: Option<Form>,
}

impl fmt::Display for Internal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.form {
            None => write!(f, "{}", self.range),
            Some(form) => write!(f, "{} in {} form", self.range, form.as_str()),
        }
    }
}

fn v4(ip: Ipv4Addr) -> Option<&'static str> {
    let a = u32::from(ip);
    V4.iter()
        .find(|(net, prefix, _)| (a ^ net) & mask4(*prefix) == 0)
        .map(|(_, _, name)| *name)
}

fn from_bytes(b: [u8; 4]) -> Ipv4Addr {
    Ipv4Addr::from(b)
}

/// The IPv4 addresses an IPv6 address carries, with their form, and whether it is of
/// one of the forms at all.
fn embedded(ip: Ipv6Addr) -> ([Option<(Ipv4Addr, Form)>; 2], bool) {
    let o = ip.octets();
    let n = u128::from(ip);
    let last = from_bytes([o[12], o[13], o[14], o[15]]);
    let in_block = |net: u128, prefix: u8| (n ^ net) & mask6(prefix) == 0;
    let one = |form| ([Some((last, form)), None], true);
    if in_block(0xffff << 32, 96) {
        one(Form::Mapped)
    } else if n > 1 && in_block(0, 96) {
        one(Form::Compatible)
    } else if in_block(0xffff << 48, 96) {
        one(Form::Translated)
    } else if in_block((0x64 << 112) | (0xff9b << 96), 96) {
        one(Form::Nat64)
    } else if in_block(NAT64_LOCAL, 48) {
        one(Form::Nat64Local)
    } else if in_block(0x2002 << 112, 16) {
        let v4 = from_bytes([o[2], o[3], o[4], o[5]]);
        ([Some((v4, Form::SixToFour)), None], true)
    } else if in_block(0x2001 << 112, 32) {
        let server = from_bytes([o[4], o[5], o[6], o[7]]);
        let client = from_bytes([!o[12], !o[13], !o[14], !o[15]]);
        (
            [
                Some((server, Form::TeredoServer)),
                Some((client, Form::TeredoClient)),
            ],
            true,
        )
    } else {
        ([None; 2], false)
    }
}

/// The internal range `ip` is in, or `None` for an address the defaults let through.
pub fn internal(ip: IpAddr) -> Option<Internal> {
    let v6 = match ip {
        IpAddr::V4(a) => return v4(a).map(|range| Internal { range, form: None }),
        IpAddr::V6(a) => a,
    };
    let (carried, is_form) = embedded(v6);
    if is_form {
        let found = carried.iter().flatten().find_map(|&(a, form)| {
            v4(a).map(|range| Internal {
                range,
                form: Some(form),
            })
        });
        let local = (u128::from(v6) ^ NAT64_LOCAL) & mask6(48) == 0;
        return found.or(local.then_some(Internal {
            range: "nat64-local",
            form: None,
        }));
    }
    let n = u128::from(v6);
    let named = V6
        .iter()
        .find(|(net, prefix, _)| (n ^ net) & mask6(*prefix) == 0)
        .map(|(_, _, name)| *name);
    let global_unicast = (n >> 125) == 0b001;
    named
        .or((!global_unicast).then_some("reserved"))
        .map(|range| Internal { range, form: None })
}
