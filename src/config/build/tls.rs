//! The cross-checks of the TLS options, once a relay's or agent's options are read:
//! identity and trust options need `tunnel_tls = on`, a certificate needs its key, a CA
//! needs a server name (and the reverse), a pin and a CA exclude each other, and the
//! files must make a TLS configuration (the same one the server makes from them).

use super::{written, Meta, Result, Values, TUNNEL_TLS};
use super::{TUNNEL_TLS_CA, TUNNEL_TLS_CERT, TUNNEL_TLS_KEY, TUNNEL_TLS_NAME, TUNNEL_TLS_PIN};
use crate::config::setting::Located;
use crate::config::{Agent, Relay, TunnelTls};
use crate::os::tls::{AgentTls, TlsError};

/// An error at `meta`'s value: `invalid value 'TEXT' for NAME: problem`.
fn at(values: &dyn Values, meta: &Meta, problem: &str) -> Result<()> {
    let (text, span, _) = written(values, meta)?;
    let name = values.name(meta);
    Err(Located::new(
        span,
        format!("invalid value '{text}' for {name}: {problem}"),
    ))
}

/// Refuses `meta` (given) when tunnels are plain.
fn needs_tls(values: &dyn Values, meta: &Meta, tls: TunnelTls) -> Result<()> {
    if tls == TunnelTls::On {
        return Ok(());
    }
    let problem = format!("needs {} on", values.name(&TUNNEL_TLS.meta));
    at(values, meta, &problem)
}

/// A relay's certificate and key.
pub(super) fn check_relay(values: &dyn Values, r: &Relay) -> Result<()> {
    let (cert, key) = (&TUNNEL_TLS_CERT.meta, &TUNNEL_TLS_KEY.meta);
    let id = &r.identity;
    for (given, meta) in [(id.cert.is_some(), cert), (id.key.is_some(), key)] {
        if given {
            needs_tls(values, meta, r.tunnel.tls)?;
        }
    }
    if id.cert.is_some() && id.key.is_none() {
        return at(values, cert, &format!("needs {}", values.name(key)));
    }
    match id.load() {
        Some(Err(e @ TlsError::Pem("certificate"))) => at(values, cert, &e.to_string()),
        Some(Err(e)) => at(values, key, &e.to_string()),
        _ => Ok(()),
    }
}

/// An agent's pin, or CA and server name.
pub(super) fn check_agent(values: &dyn Values, a: &Agent) -> Result<()> {
    let (pin, ca, name) = (
        &TUNNEL_TLS_PIN.meta,
        &TUNNEL_TLS_CA.meta,
        &TUNNEL_TLS_NAME.meta,
    );
    let t = &a.trust;
    let given = [
        (t.pin.is_some(), pin),
        (t.ca.is_some(), ca),
        (t.name.is_some(), name),
    ];
    for (given, meta) in given {
        if given {
            needs_tls(values, meta, a.tunnel.tls)?;
        }
    }
    match (t.pin.is_some(), t.ca.is_some(), t.name.is_some()) {
        (true, true, _) => {
            let problem = format!("excludes {}: pin a key or verify a CA", values.name(pin));
            at(values, ca, &problem)
        }
        (_, true, false) => at(values, ca, &format!("needs {}", values.name(name))),
        (_, false, true) => at(values, name, &format!("needs {}", values.name(ca))),
        (_, true, true) => match AgentTls::new(t.trust()) {
            Ok(_) => Ok(()),
            Err(e) => at(values, ca, &e.to_string()),
        },
        _ => Ok(()),
    }
}
