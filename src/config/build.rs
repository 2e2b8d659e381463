//! The one builder: reads the table's options from a front end ([`Values`]) into the
//! configuration structs. The command line and config files differ only in how they
//! answer `Values`; every default, bound, parser and cross-check is here or in the table.

use super::meta::{Fallback, Kind, Meta};
use super::options::{
    AGENT, BUFFER_MAX, BUFFER_SIZE, FORWARD, GLOBAL, HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT,
    PROXY_ACCEPT, PROXY_PROTOCOL_ACCEPT, PROXY_PROTOCOL_TRUSTED, RELAY, SESSION, TUNNEL,
    TUNNEL_TLS, TUNNEL_TLS_CA, TUNNEL_TLS_CERT, TUNNEL_TLS_KEY, TUNNEL_TLS_NAME, TUNNEL_TLS_PIN,
    UPSTREAMS,
};
use super::parse::human_size;
use super::setting::{load_all, Cx, Located, Origin, Raw, Result, Taken, Values};
use super::{
    Agent, Forward, Global, Listener, Mode, ProxyAccept, Relay, TunnelOptions, MODES,
    RESET_FLUSH_TIMEOUT,
};
use crate::core::session::Policy;

mod dynamic;
#[cfg(not(feature = "tls"))]
mod no_tls;
#[cfg(feature = "tls")]
mod tls;
#[cfg(not(feature = "tls"))]
use no_tls as tls;

/// Reads the process-wide settings.
pub fn global(values: &dyn Values, taken: &mut Taken) -> Result<Global> {
    let mut cx = Cx {
        values,
        global: None,
        taken,
    };
    let mut g = Global::default();
    load_all(GLOBAL, |_| true, &mut cx, &mut g)?;
    // The derived defaults.
    if g.pool_budget == 0 {
        // Two smallest buffers per session: today's worst case, however large the
        // classes a bulk direction earns.
        g.pool_budget = g
            .max_sessions
            .saturating_mul(2)
            .saturating_mul(g.buffer_size);
    }
    if g.max_pipes == 0 {
        // HAProxy's `maxpipes` default: a quarter of the connection limit.
        g.max_pipes = (g.max_sessions / 4).max(1);
    }
    if g.buffer_max == 0 {
        g.buffer_max = DEFAULT_BUFFER_MAX.max(g.buffer_size);
    } else if g.buffer_max < g.buffer_size {
        let (text, span, _) = written(values, &BUFFER_MAX.meta)?;
        return Err(Located::new(
            span,
            format!(
                "invalid value '{text}' for {}: must be at least {} ({})",
                values.name(&BUFFER_MAX.meta),
                values.name(&BUFFER_SIZE.meta),
                human_size(g.buffer_size)
            ),
        ));
    }
    Ok(g)
}

/// The largest ring class when `buffer_max` is not given.
const DEFAULT_BUFFER_MAX: usize = 256 << 10;

/// Checks the per-listener options a config file's `[defaults]` holds, each on its own
/// (even those no listener uses).
pub fn defaults(values: &dyn Values, global: &Global, taken: &mut Taken) -> Result<()> {
    let mut cx = Cx {
        values,
        global: Some(global),
        taken,
    };
    let in_defaults = |m: &Meta| m.scope.in_defaults();
    load_all(SESSION, in_defaults, &mut cx, &mut blank(String::new()))?;
    let mut tunnel = TunnelOptions::default();
    load_all(TUNNEL, in_defaults, &mut cx, &mut tunnel)?;
    check_heartbeat(values, &tunnel)
}

/// Reads one listener of `mode` (one of [`MODES`]), named `name`.
pub fn listener(
    mode: &str,
    name: String,
    values: &dyn Values,
    global: &Global,
    taken: &mut Taken,
) -> Result<Listener> {
    let mut cx = Cx {
        values,
        global: Some(global),
        taken,
    };
    let mut l = blank(name);
    load_all(SESSION, |_| true, &mut cx, &mut l)?;
    l.policy.reset_flush_timeout = RESET_FLUSH_TIMEOUT;
    let all = |_: &Meta| true;
    l.mode = match mode {
        "forward" => {
            let mut f = Forward::default();
            load_all(FORWARD, all, &mut cx, &mut f)?;
            load_all(UPSTREAMS, all, &mut cx, &mut f.group)?;
            load_all(PROXY_ACCEPT, all, &mut cx, &mut f.proxy_accept)?;
            check_proxy_accept(values, &f.proxy_accept)?;
            Mode::Forward(f)
        }
        "relay" => {
            let mut r = Relay::default();
            load_all(RELAY, all, &mut cx, &mut r)?;
            load_all(PROXY_ACCEPT, all, &mut cx, &mut r.proxy_accept)?;
            check_proxy_accept(values, &r.proxy_accept)?;
            r.tunnel = tunnel(&mut cx)?;
            tls::check_relay(values, &r)?;
            Mode::Relay(r)
        }
        "connect" => Mode::Connect(dynamic::dynamic(mode, &mut cx)?),
        "socks" => Mode::Socks(dynamic::dynamic(mode, &mut cx)?),
        _ => {
            debug_assert_eq!(mode, MODES[2]);
            let mut a = Agent::default();
            load_all(AGENT, all, &mut cx, &mut a)?;
            load_all(UPSTREAMS, all, &mut cx, &mut a.group)?;
            a.tunnel = tunnel(&mut cx)?;
            tls::check_agent(values, &a)?;
            Mode::Agent(a)
        }
    };
    Ok(l)
}

/// A listener with nothing read yet.
fn blank(name: String) -> Listener {
    Listener {
        name,
        policy: Policy::default(),
        max_sessions: None,
        sockets: super::sockets::SocketOptions::default(),
        mode: Mode::Forward(Forward::default()),
    }
}

/// The tunnel options: timeouts, their cross-check, then the secret file (the file
/// system last, so every other mistake is reported first).
fn tunnel(cx: &mut Cx<'_>) -> Result<TunnelOptions> {
    let mut t = TunnelOptions::default();
    let secret = |m: &Meta| m.kind == Kind::SecretFile;
    load_all(TUNNEL, |m| !secret(m), cx, &mut t)?;
    check_heartbeat(cx.values, &t)?;
    load_all(TUNNEL, secret, cx, &mut t)?;
    Ok(t)
}

/// The heartbeat timeout must be longer than the interval. The error points at
/// whichever of the two is written nearest (own table over `[defaults]` over default).
fn check_heartbeat(values: &dyn Values, t: &TunnelOptions) -> Result<()> {
    if t.policy.heartbeat_timeout > t.policy.heartbeat_interval {
        return Ok(());
    }
    let (i_text, i_span, i_origin) = written(values, &HEARTBEAT_INTERVAL.meta)?;
    let (t_text, t_span, t_origin) = written(values, &HEARTBEAT_TIMEOUT.meta)?;
    let (i_name, t_name) = (
        values.name(&HEARTBEAT_INTERVAL.meta),
        values.name(&HEARTBEAT_TIMEOUT.meta),
    );
    Err(if t_origin >= i_origin {
        Located::new(
            t_span,
            format!(
                "invalid value '{t_text}' for {t_name}: must be longer than {i_name} ({i_text})"
            ),
        )
    } else {
        Located::new(
            i_span,
            format!(
                "invalid value '{i_text}' for {i_name}: must be shorter than {t_name} ({t_text})"
            ),
        )
    })
}

/// Accepting PROXY headers needs the sources trusted to send them, and trusted sources
/// mean nothing without accepting.
fn check_proxy_accept(values: &dyn Values, p: &ProxyAccept) -> Result<()> {
    let (accept, trusted) = (&PROXY_PROTOCOL_ACCEPT.meta, &PROXY_PROTOCOL_TRUSTED.meta);
    let (a_name, t_name) = (values.name(accept), values.name(trusted));
    match (p.accept, p.trusted.is_empty()) {
        (true, true) => {
            let (_, span, _) = written(values, accept)?;
            Err(Located::new(
                span,
                format!(
                    "{a_name} needs {t_name}: the sources (CIDR) allowed to send PROXY headers"
                ),
            ))
        }
        (false, false) => {
            let span = values.get(trusted)?.map(|g| g.span).unwrap_or_default();
            Err(Located::new(
                span,
                format!("{t_name} has no effect without {a_name}"),
            ))
        }
        _ => Ok(()),
    }
}

/// The text of a single-valued option as written (or its default), where, and from
/// which layer.
pub(super) fn written(
    values: &dyn Values,
    meta: &Meta,
) -> Result<(String, super::setting::Span, Origin)> {
    match values.get(meta)? {
        Some(given) => match given.raw {
            Raw::One(t) => Ok((t.text, t.span, given.origin)),
            _ => Ok((String::new(), given.span, given.origin)),
        },
        None => {
            let text = match meta.fallback {
                Fallback::Value(text) => text,
                _ => "",
            };
            Ok((text.to_string(), values.here(), Origin::Builtin))
        }
    }
}
