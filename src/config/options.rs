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
use super::typed::SecretFile;
use super::{
    Agent, Forward, Global, Listener, LogFormat, Relay, Service, TunnelOptions, MAX_BUFFER,
    MAX_POOL, MAX_SESSIONS,
};
use crate::core::handover::ResetPolicy;

use Fallback::{Absent, Derived, Required, Value};

const RELAY_AGENT: &[&str] = &["relay", "agent"];
const COUNT: Kind = Kind::Count {
    max: Bound::Fixed(MAX_SESSIONS),
};

/// A listener's name (config files only; on the command line the listener is named
/// after its mode). Read by the front ends themselves: errors name the listener by it.
pub const NAME: Meta = Meta::new(
    "name",
    Scope::Own(&super::MODES),
    Kind::Name,
    Required,
    "NAME",
    "Unique name of the listener: labels its log lines and metrics.",
)
.file_only();

// ---- process-wide settings ----

const BUFFER_SIZE: Opt<Global, usize> = Opt {
    meta: Meta::new(
        "buffer_size",
        Scope::Global,
        Kind::Size { max: MAX_BUFFER },
        Value("16KiB"),
        "SIZE",
        "Ring buffer per direction (B, KiB, MiB).",
    ),
    get: |g| Some(g.buffer_size),
    set: |g, v| g.buffer_size = v,
};

const MAX_SESSIONS_GLOBAL: Opt<Global, usize> = Opt {
    meta: Meta::new(
        "max_sessions",
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
        Scope::Global,
        Kind::Size { max: usize::MAX },
        Derived("2 x max-sessions x buffer-size"),
        "SIZE",
        "Most ring-buffer memory lent at once.",
    ),
    // The effective budget: buffers lent at once, each of `buffer_size` (read before).
    get: |g| Some(g.buffer_bound()),
    set: |g, v| g.pool_buffers = (v / g.buffer_size.max(1)).max(1),
};

const DRAIN_TIMEOUT: Opt<Global, Duration> = Opt {
    meta: Meta::new(
        "drain_timeout",
        Scope::Global,
        Kind::Duration,
        Value("10s"),
        "DURATION",
        "On SIGINT/SIGTERM, how long live sessions may take to finish.",
    ),
    get: |g| Some(g.drain_timeout),
    set: |g, v| g.drain_timeout = v,
};

const METRICS_LISTEN: Opt<Global, SocketAddr> = Opt {
    meta: Meta::new(
        "metrics_listen",
        Scope::Global,
        Kind::Address { listen: true },
        Absent,
        "ADDR",
        "Serve /metrics, /sessions, /config and /healthz over HTTP on this address, HOST:PORT.",
    ),
    get: |g| g.metrics_listen,
    set: |g, v| g.metrics_listen = Some(v),
};

const LOG_FORMAT: Opt<Global, LogFormat> = Opt {
    meta: Meta::new(
        "log_format",
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
    &MAX_SESSIONS_GLOBAL,
    &POOL_BUDGET,
    &DRAIN_TIMEOUT,
    &METRICS_LISTEN,
    &LOG_FORMAT,
    &LOG_RATE,
];

// ---- options of every listener ----

/// A per-listener duration option (`[defaults]` may set it).
const fn session_duration(key: &'static str, default: &'static str, help: &'static str) -> Meta {
    Meta::new(
        key,
        Scope::Listener,
        Kind::Duration,
        Value(default),
        "DURATION",
        help,
    )
}

const CONNECT_TIMEOUT: Opt<Listener, Duration> = Opt {
    meta: session_duration(
        "connect_timeout",
        "5s",
        "Bound on one upstream connect attempt (relay: on the agent's answer).",
    ),
    get: |l| Some(l.policy.connect_timeout),
    set: |l, v| l.policy.connect_timeout = v,
};

const IDLE_TIMEOUT: Opt<Listener, Duration> = Opt {
    meta: session_duration(
        "idle_timeout",
        "5m",
        "Close a session when no byte has moved either way for this long.",
    ),
    get: |l| Some(l.policy.idle_timeout),
    set: |l, v| l.policy.idle_timeout = v,
};

const HALF_CLOSE_TIMEOUT: Opt<Listener, Duration> = Opt {
    meta: session_duration(
        "half_close_timeout",
        "60s",
        "Inactivity limit once one direction has finished (FIN forwarded).",
    ),
    get: |l| Some(l.policy.half_close_timeout),
    set: |l, v| l.policy.half_close_timeout = v,
};

const RESET_POLICY: Opt<Listener, ResetPolicy> = Opt {
    meta: Meta::new(
        "reset_policy",
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

/// Options of every listener's sessions.
pub const SESSION: &[&dyn Setting<Listener>] = &[
    &CONNECT_TIMEOUT,
    &IDLE_TIMEOUT,
    &HALF_CLOSE_TIMEOUT,
    &RESET_POLICY,
    &MAX_SESSIONS_OWN,
];

// ---- forward ----

const LISTEN: Opt<Forward, Vec<SocketAddr>> = Opt {
    meta: Meta::new(
        "listen",
        Scope::Own(&["forward"]),
        Kind::Addresses { listen: true },
        Required,
        "ADDR",
        "Address to listen on, HOST:PORT (port 0: any free port). May repeat.",
    ),
    get: |f| Some(f.listen.clone()),
    set: |f, v| f.listen = v,
};

const UPSTREAM: Opt<Forward, Vec<SocketAddr>> = Opt {
    meta: Meta::new(
        "upstream",
        Scope::Own(&["forward"]),
        Kind::Addresses { listen: false },
        Required,
        "ADDR",
        "Upstream address, HOST:PORT. May repeat: tried in order when a connect fails.",
    ),
    get: |f| Some(f.upstreams.clone()),
    set: |f, v| f.upstreams = v,
};

/// A forward listener's own options.
pub const FORWARD: &[&dyn Setting<Forward>] = &[&LISTEN, &UPSTREAM];

// ---- relay ----

const TUNNEL_LISTEN: Opt<Relay, SocketAddr> = Opt {
    meta: Meta::new(
        "tunnel_listen",
        Scope::Own(&["relay"]),
        Kind::Address { listen: true },
        Required,
        "ADDR",
        "Where agents connect, HOST:PORT.",
    ),
    get: |r| Some(r.tunnel_listen),
    set: |r, v| r.tunnel_listen = v,
};

const PUBLIC: Opt<Relay, Vec<Service>> = Opt {
    meta: Meta::new(
        "public",
        Scope::Own(&["relay"]),
        Kind::Services { listen: true },
        Required,
        "NAME=ADDR",
        "A public listener for a service, NAME=HOST:PORT. May repeat.",
    ),
    get: |r| Some(r.public.clone()),
    set: |r, v| r.public = v,
};

const PAIR_TIMEOUT: Opt<Relay, Duration> = Opt {
    meta: Meta::new(
        "pair_timeout",
        Scope::Own(&["relay"]),
        Kind::Duration,
        Value("10s"),
        "DURATION",
        "How long a public client waits for an idle tunnel.",
    ),
    get: |r| Some(r.pair_timeout),
    set: |r, v| r.pair_timeout = v,
};

/// A relay's count option.
const fn relay_count(key: &'static str, help: &'static str) -> Meta {
    Meta::new(key, Scope::Own(&["relay"]), COUNT, Value("64"), "N", help)
}

const MAX_WAITING: Opt<Relay, usize> = Opt {
    meta: relay_count("max_waiting", "Most public clients waiting per service."),
    get: |r| Some(r.max_waiting),
    set: |r, v| r.max_waiting = v,
};

const MAX_IDLE_TUNNELS: Opt<Relay, usize> = Opt {
    meta: relay_count("max_idle_tunnels", "Most idle tunnels per service."),
    get: |r| Some(r.max_idle_tunnels),
    set: |r, v| r.max_idle_tunnels = v,
};

const MAX_HANDSHAKES: Opt<Relay, usize> = Opt {
    meta: relay_count(
        "max_handshakes",
        "Most tunnel connections in the handshake at once.",
    ),
    get: |r| Some(r.max_handshakes),
    set: |r, v| r.max_handshakes = v,
};

/// A relay listener's own options.
pub const RELAY: &[&dyn Setting<Relay>] = &[
    &TUNNEL_LISTEN,
    &PUBLIC,
    &PAIR_TIMEOUT,
    &MAX_WAITING,
    &MAX_IDLE_TUNNELS,
    &MAX_HANDSHAKES,
];

// ---- agent ----

const RELAY_ADDRESS: Opt<Agent, String> = Opt {
    meta: Meta::new(
        "relay",
        Scope::Own(&["agent"]),
        Kind::HostPort,
        Required,
        "ADDR",
        "The relay's tunnel address, HOST:PORT (the name is resolved again on reconnect).",
    ),
    get: |a| Some(a.relay.clone()),
    set: |a, v| a.relay = v,
};

const SERVICE: Opt<Agent, Vec<Service>> = Opt {
    meta: Meta::new(
        "service",
        Scope::Own(&["agent"]),
        Kind::Services { listen: false },
        Required,
        "NAME=ADDR",
        "A service the relay may reach, NAME=HOST:PORT (its upstream). May repeat.",
    ),
    get: |a| Some(a.services.clone()),
    set: |a, v| a.services = v,
};

const POOL: Opt<Agent, usize> = Opt {
    meta: Meta::new(
        "pool",
        Scope::Own(&["agent"]),
        Kind::Count {
            max: Bound::Fixed(MAX_POOL),
        },
        Value("4"),
        "N",
        "Idle tunnels kept open per service.",
    ),
    get: |a| Some(a.pool),
    set: |a, v| a.pool = v,
};

const EXIT_ON_DISCONNECT: Opt<Agent, bool> = Opt {
    meta: Meta::new(
        "exit_on_disconnect",
        Scope::Own(&["agent"]),
        Kind::Switch,
        Value("false"),
        "",
        "Exit (code 1) when a tunnel to the relay is lost or cannot be opened.",
    ),
    get: |a| Some(a.exit_on_disconnect),
    set: |a, v| a.exit_on_disconnect = v,
};

const BACKOFF_MAX: Opt<Agent, Duration> = Opt {
    meta: Meta::new(
        "backoff_max",
        Scope::Own(&["agent"]),
        Kind::Duration,
        Value("30s"),
        "DURATION",
        "Cap of the reconnect backoff (exponential from 100ms, with jitter).",
    ),
    get: |a| Some(a.backoff_max),
    set: |a, v| a.backoff_max = v,
};

/// An agent listener's own options.
pub const AGENT: &[&dyn Setting<Agent>] = &[
    &RELAY_ADDRESS,
    &SERVICE,
    &POOL,
    &EXIT_ON_DISCONNECT,
    &BACKOFF_MAX,
];

// ---- tunnels: relay and agent ----

/// A tunnel duration option (`[defaults]` may set it).
const fn tunnel_duration(key: &'static str, default: &'static str, help: &'static str) -> Meta {
    Meta::new(
        key,
        Scope::Tunnel,
        Kind::Duration,
        Value(default),
        "DURATION",
        help,
    )
}

/// Handshake timeout (absolute).
pub const HANDSHAKE_TIMEOUT: Opt<TunnelOptions, Duration> = Opt {
    meta: tunnel_duration(
        "handshake_timeout",
        "5s",
        "Absolute bound on a tunnel handshake.",
    ),
    get: |t| Some(t.policy.handshake_timeout),
    set: |t, v| t.policy.handshake_timeout = v,
};

/// Heartbeat interval; shorter than the heartbeat timeout.
pub const HEARTBEAT_INTERVAL: Opt<TunnelOptions, Duration> = Opt {
    meta: tunnel_duration(
        "heartbeat_interval",
        "20s",
        "An idle tunnel sends a heartbeat after this long without sending.",
    ),
    get: |t| Some(t.policy.heartbeat_interval),
    set: |t, v| t.policy.heartbeat_interval = v,
};

/// Heartbeat timeout; longer than the heartbeat interval.
pub const HEARTBEAT_TIMEOUT: Opt<TunnelOptions, Duration> = Opt {
    meta: tunnel_duration(
        "heartbeat_timeout",
        "60s",
        "An idle tunnel that heard nothing for this long is dead.",
    ),
    get: |t| Some(t.policy.heartbeat_timeout),
    set: |t, v| t.policy.heartbeat_timeout = v,
};

const SECRET_FILE: Opt<TunnelOptions, SecretFile> = Opt {
    meta: Meta::new(
        "secret_file",
        Scope::Own(RELAY_AGENT),
        Kind::SecretFile,
        Required,
        "PATH",
        "File holding the pre-shared secret (at least 32 bytes).",
    ),
    get: |t| {
        Some(SecretFile {
            path: t.secret_file.clone(),
            secret: t.secret.clone(),
        })
    },
    set: |t, v| {
        t.secret_file = v.path;
        t.secret = v.secret;
    },
};

/// The options relay and agent listeners share (the secret file last).
pub const TUNNEL: &[&dyn Setting<TunnelOptions>] = &[
    &HANDSHAKE_TIMEOUT,
    &HEARTBEAT_INTERVAL,
    &HEARTBEAT_TIMEOUT,
    &SECRET_FILE,
];

/// Every option's description, in table order: global, session, forward, relay, agent,
/// tunnel, then the listener's name.
pub fn all() -> Vec<&'static Meta> {
    let mut metas: Vec<&'static Meta> = Vec::new();
    metas.extend(GLOBAL.iter().map(|s| s.meta()));
    metas.extend(SESSION.iter().map(|s| s.meta()));
    metas.extend(FORWARD.iter().map(|s| s.meta()));
    metas.extend(RELAY.iter().map(|s| s.meta()));
    metas.extend(AGENT.iter().map(|s| s.meta()));
    metas.extend(TUNNEL.iter().map(|s| s.meta()));
    metas.push(&NAME);
    metas
}

/// The options a listener of `mode` has in its own table or on its subcommand, in the
/// order `check` renders them: its mode's, its sessions', its tunnels'.
pub fn of_mode(mode: &str) -> Vec<&'static Meta> {
    let own: Vec<&'static Meta> = match mode {
        "forward" => FORWARD.iter().map(|s| s.meta()).collect(),
        "relay" => RELAY.iter().map(|s| s.meta()).collect(),
        _ => AGENT.iter().map(|s| s.meta()).collect(),
    };
    let tunnel = TUNNEL.iter().map(|s| s.meta());
    own.into_iter()
        .chain(SESSION.iter().map(|s| s.meta()))
        .chain(tunnel.filter(|m| m.scope.applies_to(mode)))
        .collect()
}
