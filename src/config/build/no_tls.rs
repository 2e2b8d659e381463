//! The TLS options in a build without the `tls` feature: they parse as in any build (so
//! `check` reads the same files and flags), but a relay or agent that names a TLS file,
//! or whose tunnels would be TLS (`tunnel_tls` on, the default), is refused with one
//! line. Tunnels are never made plain in TLS's place.

use super::{written, Meta, Result, Values, TUNNEL_TLS};
use super::{TUNNEL_TLS_CA, TUNNEL_TLS_CERT, TUNNEL_TLS_KEY, TUNNEL_TLS_NAME, TUNNEL_TLS_PIN};
use crate::config::setting::{Located, Origin};
use crate::config::{Agent, Relay, TunnelTls, WITHOUT_TLS};

/// The other way out, after [`WITHOUT_TLS`].
const REBUILD: &str = "or build with the default features";

/// A relay's TLS options.
pub(super) fn check_relay(values: &dyn Values, r: &Relay) -> Result<()> {
    let id = &r.identity;
    let files = [
        (id.cert.is_some(), &TUNNEL_TLS_CERT.meta),
        (id.key.is_some(), &TUNNEL_TLS_KEY.meta),
    ];
    refuse(values, r.tunnel.tls, &files)
}

/// An agent's TLS options.
pub(super) fn check_agent(values: &dyn Values, a: &Agent) -> Result<()> {
    let t = &a.trust;
    let files = [
        (t.pin.is_some(), &TUNNEL_TLS_PIN.meta),
        (t.ca.is_some(), &TUNNEL_TLS_CA.meta),
        (t.name.is_some(), &TUNNEL_TLS_NAME.meta),
    ];
    refuse(values, a.tunnel.tls, &files)
}

/// Refuses the first TLS option given (at its value), then `tunnel_tls` on (at its value,
/// or where the table starts when the default applies).
fn refuse(values: &dyn Values, tls: TunnelTls, given: &[(bool, &Meta)]) -> Result<()> {
    if let Some((_, meta)) = given.iter().find(|(given, _)| *given) {
        let (_, span, _) = written(values, meta)?;
        let name = values.name(meta);
        let problem = format!("{name}: {WITHOUT_TLS}; remove it, {REBUILD}");
        return Err(Located::new(span, problem));
    }
    if tls == TunnelTls::Off {
        return Ok(());
    }
    let meta = &TUNNEL_TLS.meta;
    let (text, span, origin) = written(values, meta)?;
    let name = values.name(meta);
    let default = match origin {
        Origin::Builtin => " (the default)",
        _ => "",
    };
    let problem =
        format!("{name} {text}{default}: {WITHOUT_TLS}; use {name} off on both ends, {REBUILD}");
    Err(Located::new(span, problem))
}
