//! The value types of options: each is read through the parsers of `parse` (so both
//! front ends give the same words for the same mistake) and written back as TOML for
//! `check`, in a form that reads back to the same value.

use std::net::SocketAddr;
use std::time::Duration;

use super::meta::{Bound, Kind, Meta};
use super::parse::{
    check_host_port, parse_address, parse_count, parse_duration, parse_rate, parse_size,
    parse_word, quote, read_secret, render_duration, render_size, Word,
};
use super::setting::{located, Cx, Given, Located, Raw, Result, Text, Typed};
use super::sockets::{
    parse_keepalive, parse_user_timeout, render_keepalive, Keepalive, UserTimeout,
};
use super::{LogFormat, Service, TunnelTls, MAX_SESSIONS};
use crate::core::handover::ResetPolicy;
use crate::core::pool::Splice;
use crate::core::upstream::{Balance, HealthCheck};
use crate::proto::auth::Secret;
use crate::proto::tunnel::valid_service_name;

mod blocks;
mod credentials;
mod rules;
mod tls;
mod upstreams;

pub(crate) use credentials::CredentialsFile;
pub(super) use tls::ServerName;

/// The one text of a single-valued option.
fn one<'g>(meta: &Meta, given: &'g Given) -> Result<&'g Text> {
    match &given.raw {
        Raw::One(text) => Ok(text),
        _ => Err(Located::new(
            given.span.clone(),
            format!("invalid type for {}: expected one value", meta.key),
        )),
    }
}

impl Typed for Duration {
    fn parse(meta: &Meta, given: &Given, cx: &mut Cx<'_>) -> Result<Self> {
        let t = one(meta, given)?;
        parse_duration(&cx.values.name(meta), &t.text).map_err(located(&t.span))
    }

    fn render(&self, _: &Meta) -> String {
        quote(&render_duration(*self))
    }
}

impl Typed for Keepalive {
    fn parse(meta: &Meta, given: &Given, cx: &mut Cx<'_>) -> Result<Self> {
        let t = one(meta, given)?;
        parse_keepalive(&cx.values.name(meta), &t.text).map_err(located(&t.span))
    }

    fn render(&self, _: &Meta) -> String {
        quote(&render_keepalive(*self))
    }
}

impl Typed for UserTimeout {
    fn parse(meta: &Meta, given: &Given, cx: &mut Cx<'_>) -> Result<Self> {
        let t = one(meta, given)?;
        parse_user_timeout(&cx.values.name(meta), &t.text).map_err(located(&t.span))
    }

    fn render(&self, _: &Meta) -> String {
        match self {
            UserTimeout::After(d) => quote(&render_duration(*d)),
            UserTimeout::Off | UserTimeout::Derived => quote("off"),
        }
    }
}

impl Typed for usize {
    fn parse(meta: &Meta, given: &Given, cx: &mut Cx<'_>) -> Result<Self> {
        let t = one(meta, given)?;
        let name = cx.values.name(meta);
        match meta.kind {
            Kind::Size { max } => parse_size(&name, &t.text, max).map_err(located(&t.span)),
            Kind::Count { max } => {
                let max = match max {
                    Bound::Fixed(n) => n,
                    Bound::Sessions => cx.global.map_or(MAX_SESSIONS, |g| g.max_sessions),
                };
                parse_count(&name, &t.text, max).map_err(located(&t.span))
            }
            _ => Err(Located::new(
                t.span.clone(),
                format!("{name}: not a number"),
            )),
        }
    }

    fn render(&self, meta: &Meta) -> String {
        match meta.kind {
            Kind::Size { .. } => quote(&render_size(*self)),
            _ => self.to_string(),
        }
    }
}

impl Typed for u32 {
    fn parse(meta: &Meta, given: &Given, cx: &mut Cx<'_>) -> Result<Self> {
        let t = one(meta, given)?;
        parse_rate(&cx.values.name(meta), &t.text).map_err(located(&t.span))
    }

    fn render(&self, _: &Meta) -> String {
        self.to_string()
    }
}

/// Words: `reset_policy`, `log_format`.
macro_rules! typed_word {
    ($t:ty) => {
        impl Typed for $t {
            fn parse(meta: &Meta, given: &Given, cx: &mut Cx<'_>) -> Result<Self> {
                let t = one(meta, given)?;
                parse_word::<$t>(&cx.values.name(meta), &t.text).map_err(located(&t.span))
            }

            fn render(&self, _: &Meta) -> String {
                quote(self.word())
            }
        }
    };
}

typed_word!(ResetPolicy);
typed_word!(LogFormat);
typed_word!(TunnelTls);
typed_word!(Splice);
typed_word!(Balance);
typed_word!(HealthCheck);

impl Typed for bool {
    fn parse(meta: &Meta, given: &Given, _: &mut Cx<'_>) -> Result<Self> {
        match &given.raw {
            Raw::Switch(on) => Ok(*on),
            // A fallback is written as text.
            Raw::One(t) => Ok(t.text == "true"),
            _ => Err(Located::new(
                given.span.clone(),
                format!("invalid type for {}: expected true or false", meta.key),
            )),
        }
    }

    fn render(&self, _: &Meta) -> String {
        self.to_string()
    }
}

/// Whether addresses of this option are listened on.
fn listens(meta: &Meta) -> bool {
    matches!(
        meta.kind,
        Kind::Address { listen: true }
            | Kind::Addresses { listen: true }
            | Kind::Services { listen: true }
    )
}

/// Resolves one address of `meta` (every address for `Addresses`), recording listen
/// addresses as taken.
fn addresses(meta: &Meta, name: &str, t: &Text, cx: &mut Cx<'_>) -> Result<Vec<SocketAddr>> {
    let listen = listens(meta);
    let mut addrs = parse_address(name, &t.text, listen).map_err(located(&t.span))?;
    addrs.dedup();
    if listen {
        for addr in &addrs {
            cx.taken.add(*addr, cx.values, meta, &t.span)?;
        }
    }
    Ok(addrs)
}

impl Typed for SocketAddr {
    fn parse(meta: &Meta, given: &Given, cx: &mut Cx<'_>) -> Result<Self> {
        let t = one(meta, given)?;
        let name = cx.values.name(meta);
        let listen = listens(meta);
        let first = parse_address(&name, &t.text, listen)
            .map_err(located(&t.span))?
            .into_iter()
            .next()
            .ok_or_else(|| {
                Located::new(
                    t.span.clone(),
                    format!("{name}: the name resolves to no address"),
                )
            })?;
        if listen {
            cx.taken.add(first, cx.values, meta, &t.span)?;
        }
        Ok(first)
    }

    fn render(&self, _: &Meta) -> String {
        quote(&self.to_string())
    }
}

/// The texts of an option that takes one or more values (a flag repeated, a string
/// or an array in a file); an empty array is refused, naming `what` it must hold.
fn one_or_more<'g>(meta: &Meta, given: &'g Given, what: &str) -> Result<&'g [Text]> {
    match &given.raw {
        Raw::One(t) => Ok(std::slice::from_ref(t)),
        Raw::Many(ts) if !ts.is_empty() => Ok(ts.as_slice()),
        _ => Err(Located::new(
            given.span.clone(),
            format!("{} must hold at least one {what}", meta.key),
        )),
    }
}

impl Typed for Vec<SocketAddr> {
    fn parse(meta: &Meta, given: &Given, cx: &mut Cx<'_>) -> Result<Self> {
        let texts = one_or_more(meta, given, "address")?;
        let name = cx.values.name(meta);
        let mut all = Vec::new();
        for t in texts {
            all.extend(addresses(meta, &name, t, cx)?);
        }
        Ok(all)
    }

    fn render(&self, _: &Meta) -> String {
        match self.as_slice() {
            [one] => quote(&one.to_string()),
            _ => {
                let items: Vec<String> = self.iter().map(|a| quote(&a.to_string())).collect();
                format!("[{}]", items.join(", "))
            }
        }
    }
}

/// A service's address and, for an agent's (`Kind::Services { listen: false }`), its
/// attributes: `HOST:PORT[,proxy=v1|v2]`.
fn service_target(
    meta: &Meta,
    item: &str,
    addr: &Text,
) -> Result<(Text, Option<crate::config::ProxyProtocol>)> {
    let agent = matches!(meta.kind, Kind::Services { listen: false });
    let Some((target, attrs)) = addr.text.split_once(',').filter(|_| agent) else {
        return Ok((addr.clone(), None));
    };
    let bad = |why: String| {
        Located::new(
            addr.span.clone(),
            format!("invalid value '{}' for {item}: {why}", addr.text.trim()),
        )
    };
    let mut proxy = None;
    for part in attrs.split(',').map(str::trim) {
        match part.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            Some(("proxy", _)) if proxy.is_some() => {
                return Err(bad("proxy is given twice".into()))
            }
            Some(("proxy", v)) => {
                let p = upstreams::proxy_protocol(v)
                    .ok_or_else(|| bad(format!("proxy must be v1 or v2, not '{v}'")))?;
                proxy = Some(p);
            }
            _ => {
                return Err(bad(format!(
                    "unknown attribute '{part}': a service takes proxy=v1|v2"
                )))
            }
        }
    }
    let target = Text {
        text: target.to_string(),
        span: addr.span.clone(),
    };
    Ok((target, proxy))
}

impl Typed for Vec<Service> {
    fn parse(meta: &Meta, given: &Given, cx: &mut Cx<'_>) -> Result<Self> {
        let key = cx.values.name(meta);
        let pairs = match &given.raw {
            Raw::Pairs(pairs) if !pairs.is_empty() => pairs,
            _ => {
                return Err(Located::new(
                    given.span.clone(),
                    format!(
                        "{key} must name at least one service, e.g. {} = {{ ssh = \"HOST:PORT\" }}",
                        meta.key
                    ),
                ))
            }
        };
        let mut services: Vec<Service> = Vec::with_capacity(pairs.len());
        for p in pairs {
            let name = p.name.text.as_str();
            if !valid_service_name(name) {
                return Err(Located::new(
                    p.name.span.clone(),
                    format!(
                        "invalid service name '{name}' in {key}: \
                         must be 1-64 characters of A-Z a-z 0-9 . _ -"
                    ),
                ));
            }
            if services.iter().any(|s| s.name == name) {
                return Err(Located::new(
                    p.name.span.clone(),
                    format!(
                        "invalid value '{}' for {key}: service '{name}' is given twice",
                        p.whole
                    ),
                ));
            }
            let item = cx.values.item(meta, name);
            let (target, proxy) = service_target(meta, &item, &p.addr)?;
            let addrs = addresses(meta, &item, &target, cx)?;
            let addr = addrs.first().copied().ok_or_else(|| {
                Located::new(
                    p.addr.span.clone(),
                    format!("{item}: the name resolves to no address"),
                )
            })?;
            services.push(Service {
                name: name.to_string(),
                addr,
                target: target.text.trim().to_string(),
                addrs,
                proxy,
            });
        }
        Ok(services)
    }

    fn render(&self, _: &Meta) -> String {
        let items: Vec<String> = self
            .iter()
            .map(|s| {
                let value = match s.proxy {
                    Some(p) => format!("{},proxy={}", s.target, p.as_str()),
                    None => s.target.clone(),
                };
                format!("{} = {}", key(&s.name), quote(&value))
            })
            .collect();
        format!("{{ {} }}", items.join(", "))
    }
}

/// An address kept as written (`HOST:PORT`), checked but resolved only when used.
impl Typed for String {
    fn parse(meta: &Meta, given: &Given, cx: &mut Cx<'_>) -> Result<Self> {
        let t = one(meta, given)?;
        check_host_port(&cx.values.name(meta), &t.text, false).map_err(located(&t.span))?;
        Ok(t.text.trim().to_string())
    }

    fn render(&self, _: &Meta) -> String {
        quote(self)
    }
}

/// A secret and the absolute path of the file it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SecretFile {
    pub(super) path: String,
    pub(super) secret: Secret,
}

impl Typed for SecretFile {
    fn parse(meta: &Meta, given: &Given, cx: &mut Cx<'_>) -> Result<Self> {
        let t = one(meta, given)?;
        let path = cx.values.path(&t.text).to_string_lossy().into_owned();
        let secret = read_secret(&cx.values.name(meta), &path).map_err(located(&t.span))?;
        Ok(SecretFile { path, secret })
    }

    fn render(&self, _: &Meta) -> String {
        quote(&self.path)
    }
}

/// A key: bare when it can be, quoted otherwise.
fn key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        name.to_string()
    } else {
        quote(name)
    }
}
