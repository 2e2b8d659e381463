//! A `connect` or `socks` listener's options, and the check that keeps it from being an
//! open proxy by default: on an address other than loopback it needs credentials or a
//! list of allowed clients.

use crate::config::meta::{Kind, Meta};
use crate::config::options::{CLIENT_ALLOW, CREDENTIALS_FILE, DYNAMIC, DYNAMIC_LISTEN};
use crate::config::parse::parse_address;
use crate::config::setting::{load_all, Cx, Located, Raw, Result, Span, Text, Values};
use crate::config::Dynamic;
use crate::core::policy::canonical;

/// Reads the options of a listener of `mode` (`connect` or `socks`): every option but
/// the credentials file, the open-proxy check, then the credentials file (the file
/// system last, so every other mistake is reported first).
pub(super) fn dynamic(mode: &str, cx: &mut Cx<'_>) -> Result<Dynamic> {
    let mut d = Dynamic::default();
    let file = |m: &Meta| m.kind == Kind::CredentialsFile;
    load_all(DYNAMIC, |m| !file(m), cx, &mut d)?;
    let authenticated = cx.values.get(&CREDENTIALS_FILE.meta)?.is_some();
    check_open(mode, cx.values, &d, authenticated)?;
    load_all(DYNAMIC, file, cx, &mut d)?;
    Ok(d)
}

/// Whether every address of `d` is a loopback address (an IPv4-mapped one included; the
/// unspecified address is not).
fn loopback_only(d: &Dynamic) -> bool {
    d.listen.iter().all(|a| canonical(a.ip()).is_loopback())
}

/// Refuses a listener reachable from other machines that anyone could use: one listening
/// on an address other than loopback with neither a credentials file nor allowed
/// clients. The error points at the first such address as written.
fn check_open(mode: &str, values: &dyn Values, d: &Dynamic, authenticated: bool) -> Result<()> {
    if authenticated || !d.client_allow.is_empty() || loopback_only(d) {
        return Ok(());
    }
    let meta = &DYNAMIC_LISTEN.meta;
    let name = values.name(meta);
    let (text, span) = open_text(values, meta, &name)?;
    Err(Located::new(
        span,
        format!(
            "{name} {text}: a {mode} listener on a non-loopback address needs {} or {} \
             (or listen on 127.0.0.1)",
            values.name(&CREDENTIALS_FILE.meta),
            values.name(&CLIENT_ALLOW.meta)
        ),
    ))
}

/// The first listen address as written that gives an address other than loopback, and
/// where (the whole value if none can be told apart).
fn open_text(values: &dyn Values, meta: &Meta, name: &str) -> Result<(String, Span)> {
    let Some(given) = values.get(meta)? else {
        return Ok((String::new(), values.here()));
    };
    let texts: Vec<Text> = match given.raw {
        Raw::One(t) => vec![t],
        Raw::Many(ts) => ts,
        _ => Vec::new(),
    };
    let open = |t: &Text| {
        parse_address(name, &t.text, true)
            .map(|addrs| addrs.iter().any(|a| !canonical(a.ip()).is_loopback()))
            .unwrap_or(false)
    };
    Ok(match texts.iter().find(|t| open(t)).or(texts.first()) {
        Some(t) => (t.text.trim().to_string(), t.span.clone()),
        None => (String::new(), given.span),
    })
}
