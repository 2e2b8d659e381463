//! Listener tables: the options every listener has (its own value, else `[defaults]`,
//! else the command line's default), and what each mode adds.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::build::Taken;
use super::keys::{home, listener_keys};
use super::value::{
    boolean, located, string, strings, table, text_of, Kind, Located, Result, Section, Span, Value,
};
use crate::config::{
    self as cfg, defaults as dflt, Agent, Forward, Global, Listener, Mode, Relay, Service,
};
use crate::core::session::Policy;
use crate::core::tunnel::TunnelPolicy;
use crate::proto::auth::Secret;
use crate::proto::tunnel::valid_service_name;

/// Where a value came from, nearest last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Origin {
    Builtin,
    Defaults,
    Own,
}

/// Where a listener's options are looked up: its own table, then `[defaults]`.
#[derive(Debug)]
pub(super) struct Layers<'s, 'a, 'i> {
    own: &'s Section<'a, 'i>,
    defaults: Option<&'s Section<'a, 'i>>,
    /// The table's header: where a missing key or a built-in default is reported.
    header: Span,
}

impl<'s, 'a, 'i> Layers<'s, 'a, 'i> {
    /// Looks in `own`, then in `defaults`.
    pub fn new(
        own: &'s Section<'a, 'i>,
        defaults: Option<&'s Section<'a, 'i>>,
        header: Span,
    ) -> Self {
        Layers {
            own,
            defaults,
            header,
        }
    }

    fn find(&self, key: &str) -> Option<(&'a Value<'i>, Origin)> {
        if let Some(v) = self.own.get(key) {
            return Some((v, Origin::Own));
        }
        self.defaults
            .and_then(|d| d.get(key))
            .map(|v| (v, Origin::Defaults))
    }

    fn traced(&self, key: &str, kind: Kind, default: &str) -> Result<(String, Span, Origin)> {
        match self.find(key) {
            Some((v, origin)) => Ok((text_of(key, v, kind)?, v.span(), origin)),
            None => Ok((default.to_string(), self.header.clone(), Origin::Builtin)),
        }
    }

    /// The text of `key` for its parser, and where it is written (the header when it is
    /// the built-in `default`).
    pub fn text(&self, key: &str, kind: Kind, default: &str) -> Result<(String, Span)> {
        let (text, span, _) = self.traced(key, kind, default)?;
        Ok((text, span))
    }

    /// The text of `key` and where it is, if given.
    pub fn optional(&self, key: &str, kind: Kind) -> Result<Option<(String, Span)>> {
        match self.find(key) {
            Some((v, _)) => Ok(Some((text_of(key, v, kind)?, v.span()))),
            None => Ok(None),
        }
    }

    /// The value of a key the table itself must hold.
    fn required(&self, key: &str) -> Result<&'a Value<'i>> {
        self.own.get(key).ok_or_else(|| {
            Located::new(
                self.header.clone(),
                format!("missing key '{key}' {}", self.own.place),
            )
        })
    }

    /// A duration.
    pub fn duration(&self, key: &str, default: &str) -> Result<Duration> {
        let (text, span) = self.text(key, Kind::Text, default)?;
        cfg::parse_duration(key, &text).map_err(located(&span))
    }

    /// A whole number within `1..=max`.
    fn count(&self, key: &str, default: &str, max: usize) -> Result<usize> {
        let (text, span) = self.text(key, Kind::Whole, default)?;
        cfg::parse_count(key, &text, max).map_err(located(&span))
    }
}

/// The session options and the per-listener session cap.
pub(super) fn options(l: &Layers<'_, '_, '_>, global: &Global) -> Result<(Policy, Option<usize>)> {
    let connect_timeout = l.duration("connect_timeout", dflt::CONNECT_TIMEOUT)?;
    let idle_timeout = l.duration("idle_timeout", dflt::IDLE_TIMEOUT)?;
    let half_close_timeout = l.duration("half_close_timeout", dflt::HALF_CLOSE_TIMEOUT)?;
    let (text, span) = l.text("reset_policy", Kind::Text, dflt::RESET_POLICY)?;
    let reset_policy = cfg::parse_reset_policy("reset_policy", &text).map_err(located(&span))?;
    let max_sessions = match l.optional("max_sessions", Kind::Whole)? {
        None => None,
        Some((text, span)) => Some(
            cfg::parse_count("max_sessions", &text, global.max_sessions).map_err(located(&span))?,
        ),
    };
    let policy = Policy {
        connect_timeout,
        idle_timeout,
        half_close_timeout,
        reset_flush_timeout: cfg::RESET_FLUSH_TIMEOUT,
        reset_policy,
    };
    Ok((policy, max_sessions))
}

/// The tunnel options; the heartbeat timeout must be longer than the interval (the
/// error points at whichever of the two is written nearest).
pub(super) fn tunnel_options(l: &Layers<'_, '_, '_>) -> Result<TunnelPolicy> {
    let handshake_timeout = l.duration("handshake_timeout", dflt::HANDSHAKE_TIMEOUT)?;
    let (i_text, i_span, i_origin) =
        l.traced("heartbeat_interval", Kind::Text, dflt::HEARTBEAT_INTERVAL)?;
    let heartbeat_interval =
        cfg::parse_duration("heartbeat_interval", &i_text).map_err(located(&i_span))?;
    let (t_text, t_span, t_origin) =
        l.traced("heartbeat_timeout", Kind::Text, dflt::HEARTBEAT_TIMEOUT)?;
    let heartbeat_timeout =
        cfg::parse_duration("heartbeat_timeout", &t_text).map_err(located(&t_span))?;
    if heartbeat_timeout <= heartbeat_interval {
        let (span, problem) = if t_origin >= i_origin {
            let problem = format!(
                "invalid value '{t_text}' for heartbeat_timeout: \
                 must be longer than heartbeat_interval ({i_text})"
            );
            (t_span, problem)
        } else {
            let problem = format!(
                "invalid value '{i_text}' for heartbeat_interval: \
                 must be shorter than heartbeat_timeout ({t_text})"
            );
            (i_span, problem)
        };
        return Err(Located::new(span, problem));
    }
    Ok(TunnelPolicy {
        handshake_timeout,
        heartbeat_interval,
        heartbeat_timeout,
    })
}

/// One listener table of `mode`, named `name`.
pub(super) fn listener(
    mode: &str,
    name: String,
    l: &Layers<'_, '_, '_>,
    global: &Global,
    path: &Path,
    taken: &mut Taken<'_>,
) -> Result<Listener> {
    l.own
        .only(&listener_keys(mode), &|key| home(key, Some(mode)))?;
    let (policy, max_sessions) = options(l, global)?;
    let mode = match mode {
        "forward" => Mode::Forward(forward(l, taken)?),
        "relay" => Mode::Relay(relay(l, path, taken)?),
        _ => Mode::Agent(agent(l, path)?),
    };
    Ok(Listener {
        name,
        policy,
        max_sessions,
        mode,
    })
}

fn forward(l: &Layers<'_, '_, '_>, taken: &mut Taken<'_>) -> Result<Forward> {
    let mut listen: Vec<SocketAddr> = Vec::new();
    for (text, span) in strings("listen", l.required("listen")?)? {
        let mut addrs = cfg::parse_address("listen", text, true).map_err(located(&span))?;
        addrs.dedup();
        for addr in addrs {
            taken.add(addr, &span)?;
            listen.push(addr);
        }
    }
    let mut upstreams = Vec::new();
    for (text, span) in strings("upstream", l.required("upstream")?)? {
        upstreams.extend(cfg::parse_address("upstream", text, false).map_err(located(&span))?);
    }
    Ok(Forward { listen, upstreams })
}

fn relay(l: &Layers<'_, '_, '_>, path: &Path, taken: &mut Taken<'_>) -> Result<Relay> {
    let value = l.required("tunnel_listen")?;
    let tunnel_listen = first_address("tunnel_listen", value, true)?;
    taken.add(tunnel_listen, &value.span())?;
    let public = services("public", l.required("public")?, true, Some(taken))?;
    let pair_timeout = l.duration("pair_timeout", dflt::PAIR_TIMEOUT)?;
    let max_waiting = l.count("max_waiting", dflt::MAX_WAITING, cfg::MAX_SESSIONS)?;
    let max_idle_tunnels = l.count(
        "max_idle_tunnels",
        dflt::MAX_IDLE_TUNNELS,
        cfg::MAX_SESSIONS,
    )?;
    let max_handshakes = l.count("max_handshakes", dflt::MAX_HANDSHAKES, cfg::MAX_SESSIONS)?;
    let tunnel = tunnel_options(l)?;
    // The file system last: every other mistake is reported first.
    let (secret, secret_file) = secret(l, path)?;
    Ok(Relay {
        tunnel_listen,
        public,
        secret,
        secret_file,
        pair_timeout,
        max_waiting,
        max_idle_tunnels,
        max_handshakes,
        tunnel,
    })
}

fn agent(l: &Layers<'_, '_, '_>, path: &Path) -> Result<Agent> {
    let value = l.required("relay")?;
    let relay = string("relay", value)?;
    cfg::check_host_port("relay", relay, false).map_err(located(&value.span()))?;
    let services = services("service", l.required("service")?, false, None)?;
    let pool = l.count("pool", dflt::POOL, dflt::MAX_POOL)?;
    let exit_on_disconnect = match l.own.get("exit_on_disconnect") {
        Some(v) => boolean("exit_on_disconnect", v)?,
        None => false,
    };
    let backoff_max = l.duration("backoff_max", dflt::BACKOFF_MAX)?;
    let tunnel = tunnel_options(l)?;
    let (secret, secret_file) = secret(l, path)?;
    Ok(Agent {
        relay: relay.trim().to_string(),
        services,
        secret,
        secret_file,
        pool,
        exit_on_disconnect,
        backoff_max,
        tunnel,
    })
}

/// The first address `value` resolves to.
fn first_address(key: &str, value: &Value<'_>, allow_port_zero: bool) -> Result<SocketAddr> {
    let span = value.span();
    let text = string(key, value)?;
    cfg::parse_address(key, text, allow_port_zero)
        .map_err(located(&span))?
        .into_iter()
        .next()
        .ok_or_else(|| Located::new(span, format!("{key}: the name resolves to no address")))
}

/// A table of service name -> address (a relay's `public`, an agent's `service`).
fn services(
    key: &str,
    value: &Value<'_>,
    allow_port_zero: bool,
    mut taken: Option<&mut Taken<'_>>,
) -> Result<Vec<Service>> {
    let entries = Section::new(table(key, value)?, "").entries();
    if entries.is_empty() {
        return Err(Located::new(
            value.span(),
            format!("{key} must name at least one service, e.g. {key} = {{ ssh = \"HOST:PORT\" }}"),
        ));
    }
    let mut services = Vec::with_capacity(entries.len());
    for (key_name, v) in entries {
        let name: &str = key_name.get_ref();
        if !valid_service_name(name) {
            return Err(Located::new(
                key_name.span(),
                format!(
                    "invalid service name '{name}' in {key}: must be 1-64 characters of A-Z a-z 0-9 . _ -"
                ),
            ));
        }
        let addr = first_address(&format!("{key}.{name}"), v, allow_port_zero)?;
        if let Some(t) = taken.as_deref_mut() {
            t.add(addr, &v.span())?;
        }
        services.push(Service {
            name: name.to_string(),
            addr,
        });
    }
    Ok(services)
}

/// The secret, read from `secret_file` (relative to the config file's directory), and
/// the absolute path it was read from (kept for reloads).
fn secret(l: &Layers<'_, '_, '_>, path: &Path) -> Result<(Secret, String)> {
    let value = l.required("secret_file")?;
    let given = Path::new(string("secret_file", value)?);
    let joined = if given.is_absolute() {
        given.to_path_buf()
    } else {
        path.parent().unwrap_or(Path::new("")).join(given)
    };
    let resolved = std::path::absolute(&joined).unwrap_or(joined);
    let resolved = resolved.to_string_lossy().into_owned();
    let secret = cfg::read_secret("secret_file", &resolved).map_err(located(&value.span()))?;
    Ok((secret, resolved))
}
