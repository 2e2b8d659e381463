//! The table of options: every option of tcpbridge, defined once.
//!
//! Each entry gives the key (the flag is the key with `-` for `_`), where it applies, how
//! it is written and bounded, its default, its help, and where its value lives in the
//! configuration. From this table the command line is built (the binary's `cli`), config
//! files are checked key by key (`file`), both are read by one builder (`build`), `check`
//! renders the effective configuration, and a reload lists the settings that need a
//! restart. Adding an option: an entry here (and in its list), the code that uses its
//! field, a test.
//!
//! Lists are in load order: an entry's setter may read entries listed before it, and a
//! secret file is read last, after every other mistake had its chance to be reported.

use std::net::SocketAddr;
use std::time::Duration;

use super::meta::{Bound, Fallback, Kind, Meta, Scope};
use super::setting::{Opt, Setting};
use super::sockets::{Keepalive, UserTimeout};
use super::{Global, Listener, LogFormat, MAX_BUFFER, MAX_SESSIONS};
use crate::core::handover::ResetPolicy;
use crate::core::pool::Splice;

use Fallback::{Absent, Derived, Required, Value};

mod dynamic;
mod groups;
mod modes;
mod proxy;
mod tls;

pub(crate) use dynamic::CREDENTIALS_FILE;
pub use dynamic::{CLIENT_ALLOW, DYNAMIC, DYNAMIC_LISTEN};
pub use groups::UPSTREAMS;
pub use proxy::{PROXY_ACCEPT, PROXY_PROTOCOL_ACCEPT, PROXY_PROTOCOL_TRUSTED};
pub use tls::{
    TUNNEL_TLS, TUNNEL_TLS_CA, TUNNEL_TLS_CERT, TUNNEL_TLS_KEY, TUNNEL_TLS_NAME, TUNNEL_TLS_PIN,
};

pub use modes::{AGENT, FORWARD, HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT, RELAY, TUNNEL};

const COUNT: Kind = Kind::Count {
    max: Bound::Fixed(MAX_SESSIONS),
};

/// A listener's name (config files only; on the command line the listener is named
/// after its mode). Read by the front ends themselves: errors name the listener by it.
pub const NAME: Meta = Meta::new(
    "name",
    "name",
    Scope::Own(&super::MODES),
    Kind::Name,
    Required,
    "NAME",
    "Unique name of the listener: labels its log lines and metrics.",
)
.file_only();

// ---- process-wide settings ----

/// The smallest ring class (read before `buffer_max` and `pool_budget`).
pub const BUFFER_SIZE: Opt<Global, usize> = Opt {
    meta: Meta::new(
        "buffer_size",
        "buffer-size",
        Scope::Global,
        Kind::Size { max: MAX_BUFFER },
        Value("16KiB"),
        "SIZE",
        "Smallest ring buffer per direction, for small messages (B, KiB, MiB).",
    ),
    get: |g| Some(g.buffer_size),
    set: |g, v| g.buffer_size = v,
};

/// The largest ring class and the kernel pipe size; at least `buffer_size` (checked by
/// the builder, read after it).
pub const BUFFER_MAX: Opt<Global, usize> = Opt {
    meta: Meta::new(
        "buffer_max",
        "buffer-max",
        Scope::Global,
        Kind::Size { max: MAX_BUFFER },
        Derived("256KiB, at least buffer-size"),
        "SIZE",
        "Largest ring buffer a direction moving bulk earns; also the kernel pipe size.",
    ),
    get: |g| Some(g.buffer_max),
    set: |g, v| g.buffer_max = v,
};

const MAX_SESSIONS_GLOBAL: Opt<Global, usize> = Opt {
    meta: Meta::new(
        "max_sessions",
        "max-sessions",
        Scope::Global,
        COUNT,
        Value("1024"),
        "N",
        "Most sessions alive at once; more clients wait in the listen backlog.",
    ),
    get: |g| Some(g.max_sessions),
    set: |g, v| g.max_sessions = v,
};

const POOL_BUDGET: Opt<Global, usize> = Opt {
    meta: Meta::new(
        "pool_budget",
        "pool-budget",
        Scope::Global,
        Kind::Size { max: usize::MAX },
        Derived("2 x max-sessions x buffer-size"),
        "SIZE",
        "Most memory lent at once to ring buffers and kernel pipes.",
    ),
    get: |g| Some(g.buffer_bound()),
    // At least one smallest buffer (`buffer_size` is read before).
    set: |g, v| g.pool_budget = v.max(g.buffer_size),
};

const SPLICE: Opt<Global, Splice> = Opt {
    meta: Meta::new(
        "splice",
        "splice",
        Scope::Global,
        Kind::Word(&["auto", "always", "off"]),
        Value("auto"),
        "MODE",
        "splice(2) through kernel pipes, no copy: auto (directions moving bulk), always, off.",
    ),
    get: |g| Some(g.splice),
    set: |g, v| g.splice = v,
};

const MAX_PIPES: Opt<Global, usize> = Opt {
    meta: Meta::new(
        "max_pipes",
        "max-pipes",
        Scope::Global,
        COUNT,
        Derived("max-sessions / 4"),
        "N",
        "Most kernel pipes open at once for splice (two descriptors each).",
    ),
    get: |g| Some(g.max_pipes),
    set: |g, v| g.max_pipes = v,
};

const DRAIN_TIMEOUT: Opt<Global, Duration> = Opt {
    meta: Meta::duration(
        "drain_timeout",
        "drain-timeout",
        Scope::Global,
        "10s",
        "On SIGINT/SIGTERM, how long live sessions may take to finish.",
    ),
    get: |g| Some(g.drain_timeout),
    set: |g, v| g.drain_timeout = v,
};

const METRICS_LISTEN: Opt<Global, SocketAddr> = Opt {
    meta: Meta::new(
        "metrics_listen",
        "metrics-listen",
        Scope::Global,
        Kind::Address { listen: true },
        Absent,
        "ADDR",
        "Serve /metrics, /sessions, /upstreams, /config and /healthz over HTTP on HOST:PORT.",
    ),
    get: |g| g.metrics_listen,
    set: |g, v| g.metrics_listen = Some(v),
};

const LOG_FORMAT: Opt<Global, LogFormat> = Opt {
    meta: Meta::new(
        "log_format",
        "log-format",
        Scope::Global,
        Kind::Word(&["human", "json"]),
        Value("human"),
        "FORMAT",
        "Log format: human (one line per event) or json (one object per line).",
    ),
    get: |g| Some(g.log_format),
    set: |g, v| g.log_format = v,
};

const LOG_RATE: Opt<Global, u32> = Opt {
    meta: Meta::new(
        "log_rate",
        "log-rate",
        Scope::Global,
        Kind::Rate,
        Value("100"),
        "N",
        "Log lines per second before lines are dropped and counted (0: no limit).",
    ),
    get: |g| Some(g.log_rate),
    set: |g, v| g.log_rate = v,
};

/// Process-wide settings (top-level keys; a change needs a restart).
pub const GLOBAL: &[&dyn Setting<Global>] = &[
    &BUFFER_SIZE,
    &BUFFER_MAX,
    &MAX_SESSIONS_GLOBAL,
    &POOL_BUDGET,
    &SPLICE,
    &MAX_PIPES,
    &DRAIN_TIMEOUT,
    &METRICS_LISTEN,
    &LOG_FORMAT,
    &LOG_RATE,
];

// ---- options of every listener ----

const CONNECT_TIMEOUT: Opt<Listener, Duration> = Opt {
    meta: Meta::duration(
        "connect_timeout",
        "connect-timeout",
        Scope::Listener,
        "5s",
        "Bound on one upstream connect attempt (relay: on the agent's answer).",
    ),
    get: |l| Some(l.policy.connect_timeout),
    set: |l, v| l.policy.connect_timeout = v,
};

const IDLE_TIMEOUT: Opt<Listener, Duration> = Opt {
    meta: Meta::duration(
        "idle_timeout",
        "idle-timeout",
        Scope::Listener,
        "5m",
        "Close a session when no byte has moved either way for this long.",
    ),
    get: |l| Some(l.policy.idle_timeout),
    set: |l, v| l.policy.idle_timeout = v,
};

const HALF_CLOSE_TIMEOUT: Opt<Listener, Duration> = Opt {
    meta: Meta::duration(
        "half_close_timeout",
        "half-close-timeout",
        Scope::Listener,
        "60s",
        "Inactivity limit once one direction has finished (FIN forwarded).",
    ),
    get: |l| Some(l.policy.half_close_timeout),
    set: |l, v| l.policy.half_close_timeout = v,
};

const RESET_POLICY: Opt<Listener, ResetPolicy> = Opt {
    meta: Meta::new(
        "reset_policy",
        "reset-policy",
        Scope::Listener,
        Kind::Word(&["mirror", "fin"]),
        Value("mirror"),
        "POLICY",
        "What the other side gets when one side resets: mirror (RST) or fin.",
    ),
    get: |l| Some(l.policy.reset_policy),
    set: |l, v| l.policy.reset_policy = v,
};

const MAX_SESSIONS_OWN: Opt<Listener, usize> = Opt {
    meta: Meta::new(
        "max_sessions",
        "max-sessions",
        Scope::Listener,
        Kind::Count {
            max: Bound::Sessions,
        },
        Absent,
        "N",
        "Most sessions of this listener alive at once (within the process-wide max_sessions).",
    )
    .file_only(),
    get: |l| l.max_sessions,
    set: |l, v| l.max_sessions = Some(v),
};

const TCP_KEEPALIVE: Opt<Listener, Keepalive> = Opt {
    meta: Meta::new(
        "tcp_keepalive",
        "tcp-keepalive",
        Scope::Listener,
        Kind::Keepalive,
        Value("60s:15s:4"),
        "IDLE:INTERVAL:COUNT",
        "TCP keepalive on every connection: probes after IDLE, every INTERVAL, COUNT unanswered end it; or off.",
    ),
    get: |l| Some(l.sockets.keepalive),
    set: |l, v| l.sockets.keepalive = v,
};

const TCP_USER_TIMEOUT: Opt<Listener, UserTimeout> = Opt {
    meta: Meta::new(
        "tcp_user_timeout",
        "tcp-user-timeout",
        Scope::Listener,
        Kind::DurationOrOff,
        Derived("idle + interval x count of tcp-keepalive"),
        "DURATION",
        "TCP_USER_TIMEOUT: sent bytes unacknowledged this long end the connection; or off.",
    ),
    get: |l| (l.sockets.user_timeout != UserTimeout::Derived).then_some(l.sockets.user_timeout),
    set: |l, v| l.sockets.user_timeout = v,
};

/// Options of every listener's sessions.
pub const SESSION: &[&dyn Setting<Listener>] = &[
    &CONNECT_TIMEOUT,
    &IDLE_TIMEOUT,
    &HALF_CLOSE_TIMEOUT,
    &RESET_POLICY,
    &TCP_KEEPALIVE,
    &TCP_USER_TIMEOUT,
    &MAX_SESSIONS_OWN,
];

/// Every option's description, in table order: global, session, forward, relay, agent,
/// tunnel, upstream groups, accepted PROXY headers, connect and socks, then the
/// listener's name.
pub fn all() -> Vec<&'static Meta> {
    let mut metas: Vec<&'static Meta> = Vec::new();
    metas.extend(GLOBAL.iter().map(|s| s.meta()));
    metas.extend(SESSION.iter().map(|s| s.meta()));
    metas.extend(FORWARD.iter().map(|s| s.meta()));
    metas.extend(RELAY.iter().map(|s| s.meta()));
    metas.extend(AGENT.iter().map(|s| s.meta()));
    metas.extend(TUNNEL.iter().map(|s| s.meta()));
    metas.extend(UPSTREAMS.iter().map(|s| s.meta()));
    metas.extend(PROXY_ACCEPT.iter().map(|s| s.meta()));
    metas.extend(DYNAMIC.iter().map(|s| s.meta()));
    metas.push(&NAME);
    metas
}

/// The options a listener of `mode` has in its own table or on its subcommand, in the
/// order `check` renders them: its mode's, its sessions', its tunnels'.
pub fn of_mode(mode: &str) -> Vec<&'static Meta> {
    let own: Vec<&'static Meta> = match mode {
        "forward" => FORWARD.iter().map(|s| s.meta()).collect(),
        "relay" => RELAY.iter().map(|s| s.meta()).collect(),
        "connect" | "socks" => DYNAMIC.iter().map(|s| s.meta()).collect(),
        _ => AGENT.iter().map(|s| s.meta()).collect(),
    };
    let tunnel = TUNNEL.iter().map(|s| s.meta());
    let groups = UPSTREAMS.iter().map(|s| s.meta());
    let accept = PROXY_ACCEPT.iter().map(|s| s.meta());
    own.into_iter()
        .chain(groups.filter(|m| m.scope.applies_to(mode)))
        .chain(accept.filter(|m| m.scope.applies_to(mode)))
        .chain(SESSION.iter().map(|s| s.meta()))
        .chain(tunnel.filter(|m| m.scope.applies_to(mode)))
        .collect()
}

/// The modes whose listeners have the option `key`, in the order of [`MODES`].
///
/// [`MODES`]: super::MODES
pub fn modes_having(key: &str) -> Vec<&'static str> {
    super::MODES
        .into_iter()
        .filter(|mode| {
            all()
                .into_iter()
                .any(|m| m.key == key && m.scope.applies_to(mode))
        })
        .collect()
}

/// Why a listener of `mode` does not have the option `key`, if the table says.
pub fn reason_not_in(key: &str, mode: &str) -> Option<&'static str> {
    all()
        .into_iter()
        .filter(|m| m.key == key)
        .find_map(|m| m.reason_not_in(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_is_its_key_with_dashes() {
        for meta in all() {
            assert_eq!(meta.long, meta.key.replace('_', "-"), "{}", meta.key);
        }
    }

    #[test]
    fn a_key_is_defined_once_per_scope() {
        let metas = all();
        for (i, a) in metas.iter().enumerate() {
            for b in &metas[i + 1..] {
                assert!(
                    a.key != b.key || a.scope != b.scope,
                    "{} twice in {:?}",
                    a.key,
                    a.scope
                );
            }
        }
    }
}
