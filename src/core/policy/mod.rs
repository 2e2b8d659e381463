//! Where a `connect` or `socks` listener may connect to: the destination policy, as one
//! pure function ([`Policy::check`]) of the destination, so that a forward proxy is never
//! an open proxy into the networks it sits in. Also the address blocks ([`Cidr`],
//! [`CidrSet`]) that other parts of the configuration name (the trusted sources of
//! PROXY headers).
//!
//! - `cidr.rs`: [`Cidr`], [`CidrSet`], IPv4-mapped addresses matched as IPv4;
//! - `rules.rs`: the `--allow` / `--deny` syntax ([`Rule`], [`Target`], [`Ports`]);
//! - `ranges.rs`: the internal ranges from the IANA special-purpose registries, and the
//!   IPv6 forms that carry an IPv4 address ([`internal`]).
//!
//! # Precedence
//!
//! Allow rules only ever add, deny rules only ever remove, and the defaults sit between:
//! an explicit deny beats any allow, and an allow opens an exception to the default deny
//! of internal ranges or ports. The order is fixed, not the order the rules are written
//! in (Squid's access lists are first-match in written order, which makes an allow
//! written before a deny win). As in smokescreen, whose exceptions to its non-public
//! deny (`--allow-address`, `--allow-range`) take addresses and never names, only an
//! address rule opens an internal range; as Squid's usual `SSL_ports` rule, CONNECT
//! defaults to port 443. [`Policy::check`] takes the first row that applies:
//!
//! | # | when | verdict |
//! |---|---|---|
//! | 1 | the address and port are one of the proxy's own listeners ([`Own`]) | `Deny(OwnListener)`, whatever the rules say: a loop |
//! | 2 | a deny rule matches (its target, and its ports if it names any) | `Deny(DenyRule(i))`, `i` the first such rule's index |
//! | 3 | the address is internal (itself, or an IPv4 address it carries) and no **address** allow rule matches it and the port | `Deny(Internal(range))` |
//! | 4 | the port is not in `default_ports` and no allow rule (address or name) matches the target and the port | `Deny(Port)` |
//! | 5 | otherwise | `Allow` |
//!
//! An allow rule matches a port in its own ports, or in `default_ports` if it names
//! none: `--allow 10.0.0.0/8` under `connect` (default 443) opens 10/8 on 443 only. The
//! default ports are 443 for `connect` ([`Policy::connect`], as Squid's `SSL_ports`) and
//! every port for `socks` ([`Policy::socks`]).
//!
//! A **name** rule matches the name the client asked for ([`Dest::host`]); an **address**
//! rule matches the address about to be connected to. A name rule never opens an
//! internal range: whoever controls a name's DNS could point it at `127.0.0.1` (a suffix
//! rule like `*.example.com` covers names its zone's owner makes at will), so a name is
//! allowed only if the address actually connected to passes. To reach `db.internal` at
//! `10.0.0.5`, allow the address (`--allow 10.0.0.5:5432`); a name rule then narrows
//! nothing and only opens ports on public addresses. The caller checks every resolved
//! address it is about to connect to, each with the requested name, and connects only
//! to allowed ones. A name deny rule sees only names: a client that asks for the
//! address instead is judged by the address rules, so deny a service by its addresses
//! (or by both) when clients may ask for it by address.

mod cidr;
mod ranges;
mod rules;

use std::fmt;
use std::net::{IpAddr, SocketAddr};

pub use cidr::{canonical, Cidr, CidrError, CidrSet};
pub use ranges::{internal, Form, Internal};
pub use rules::{Ports, Rule, RuleError, Target};

/// A destination about to be connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dest<'a> {
    /// The name the client asked for (CONNECT's authority, SOCKS's domain name), any
    /// case, a final dot allowed; `None` when it asked for an address.
    pub host: Option<&'a str>,
    /// The address about to be connected to (one resolved address of `host`).
    pub ip: IpAddr,
    /// The port.
    pub port: u16,
}

/// Why a destination is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The address is in an internal range and no address rule allows it.
    Internal(Internal),
    /// The port is not a default port and no allow rule names it for this target.
    Port,
    /// The deny rule of this index (in [`Policy::deny`], from 0) matches; displayed
    /// from 1, as an operator counts the rules.
    DenyRule(usize),
    /// The address and port are the proxy's own listener.
    OwnListener,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Internal(i) => write!(f, "internal address ({i})"),
            Reason::Port => write!(f, "port not allowed"),
            Reason::DenyRule(i) => write!(f, "deny rule {}", i + 1),
            Reason::OwnListener => write!(f, "the proxy's own listener"),
        }
    }
}

/// What [`Policy::check`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Connect.
    Allow,
    /// Refuse, for this reason.
    Deny(Reason),
}

/// The proxy's own listening addresses, so that a client cannot make it connect to
/// itself. A listener on an unspecified address (`0.0.0.0:P`, `[::]:P`) is reached on
/// port P at every local address: the caller passes its local addresses in `local`
/// (the interfaces' addresses, read by the server; loopback and unspecified addresses
/// always count as local here, whether listed or not). Either family's unspecified
/// listener counts for both (a dual-stack `[::]` takes IPv4 too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Own {
    /// The bound listening addresses, ports resolved (never port 0).
    pub listeners: Vec<SocketAddr>,
    /// This host's addresses.
    pub local: Vec<IpAddr>,
}

impl Own {
    /// True if connecting to `ip` and `port` reaches one of the listeners.
    pub fn contains(&self, ip: IpAddr, port: u16) -> bool {
        let ip = canonical(ip);
        let local = |a: IpAddr| {
            a.is_loopback() || a.is_unspecified() || self.local.iter().any(|&l| canonical(l) == a)
        };
        self.listeners.iter().any(|l| {
            let at = canonical(l.ip());
            l.port() == port
                && (at == ip
                    || (at.is_unspecified() && local(ip))
                    || (ip.is_unspecified() && local(at)))
        })
    }
}

/// A `connect` or `socks` listener's destination policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `--allow` rules, in the order given.
    pub allow: Vec<Rule>,
    /// `--deny` rules, in the order given.
    pub deny: Vec<Rule>,
    /// The ports allowed where no allow rule names ports.
    pub default_ports: Ports,
    /// The proxy's own listeners.
    pub own: Own,
}

impl Policy {
    /// The defaults of a `connect` listener: no rules, port 443 only.
    pub fn connect() -> Policy {
        Policy {
            allow: Vec::new(),
            deny: Vec::new(),
            default_ports: Ports::one(443),
            own: Own::default(),
        }
    }

    /// The defaults of a `socks` listener: no rules, every port.
    pub fn socks() -> Policy {
        Policy {
            default_ports: Ports::any(),
            ..Policy::connect()
        }
    }

    /// Allow or deny `dest`, by the precedence in the module's documentation.
    pub fn check(&self, dest: Dest<'_>) -> Verdict {
        if self.own.contains(dest.ip, dest.port) {
            return Verdict::Deny(Reason::OwnListener);
        }
        let target = |r: &Rule| r.target.matches(dest.host, dest.ip);
        let denied = self
            .deny
            .iter()
            .position(|r| target(r) && r.ports.as_ref().is_none_or(|p| p.contains(dest.port)));
        if let Some(i) = denied {
            return Verdict::Deny(Reason::DenyRule(i));
        }
        let opens = |r: &&Rule| {
            target(r)
                && r.ports
                    .as_ref()
                    .unwrap_or(&self.default_ports)
                    .contains(dest.port)
        };
        let mut allowed = self.allow.iter().filter(opens);
        if let Some(range) = internal(dest.ip) {
            let by_address = allowed
                .clone()
                .any(|r| matches!(r.target, Target::Block(_)));
            if !by_address {
                return Verdict::Deny(Reason::Internal(range));
            }
        }
        if !self.default_ports.contains(dest.port) && allowed.next().is_none() {
            return Verdict::Deny(Reason::Port);
        }
        Verdict::Allow
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_ranges;
#[cfg(test)]
mod tests_rules;
